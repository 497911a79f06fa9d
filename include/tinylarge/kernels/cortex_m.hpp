/// @file kernels/cortex_m.hpp
/// @brief int8 kernels for Cortex-M4/M7 with the DSP extension (`arch::cortex_m_dsp`).
///
/// The inner product uses the dual 16-bit multiply-accumulate SMLAD: four int8
/// weights are loaded as one word and split into two pairs of sign-extended
/// halfwords with SXTB16 (bytes 0,2) and SXTB16 of the word rotated by 8
/// (bytes 1,3); the inputs are split the same way with SXTAB16, which also adds
/// the negated input zero point, so `(x − zx)` is formed in 16-bit lanes (it
/// lies in [−255, 255]). Two output rows share each loaded input word. The
/// products are exact and summed in int32 in the same order-independent way as
/// the scalar kernel, so outputs are bit-identical to `arch::scalar`.
///
/// No heap, no exceptions. Only compiled when `__ARM_FEATURE_DSP` is defined;
/// elsewhere the tag falls back to the scalar kernels.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "dense.hpp"

#if defined(__ARM_FEATURE_DSP) && !defined(__ARM_NEON)
#include <arm_acle.h>

namespace tinylarge::kernels {

namespace detail {
/// Four int8 values as one word (one LDR; Cortex-M3/M4 allow unaligned LDR).
TINYLARGE_ALWAYS_INLINE std::int32_t load4(const std::int8_t* p) noexcept {
  std::int32_t v;
  std::memcpy(&v, p, 4);
  return v;
}
/// Rotate right by 8 bits (folds into the ROR operand of SXTB16/SXTAB16).
TINYLARGE_ALWAYS_INLINE std::int32_t ror8(std::int32_t v) noexcept {
  const auto u = static_cast<std::uint32_t>(v);
  return static_cast<std::int32_t>((u >> 8) | (u << 24));
}
}  // namespace detail

/// int8 dense with SMLAD; bit-exact with the scalar back end.
inline void dense_s8(arch::cortex_m_dsp, std::size_t m, std::size_t n, std::size_t k,
                     const std::int8_t* x, const std::int8_t* w, const dense_s8_params& p,
                     std::int8_t* y) noexcept {
  // −zx replicated in both halfword lanes, added by SXTAB16.
  const auto neg_zx = static_cast<std::uint32_t>(static_cast<std::uint16_t>(-p.input_zero_point));
  const auto offset2 = static_cast<std::int32_t>(neg_zx | (neg_zx << 16));
  const std::size_t k4 = k & ~static_cast<std::size_t>(3);
  for (std::size_t i = 0; i < m; ++i) {
    const std::int8_t* xr = x + i * k;
    std::size_t o = 0;
    for (; o + 2 <= n; o += 2) {
      const std::int8_t* w0 = w + o * k;
      const std::int8_t* w1 = w0 + k;
      std::int32_t acc0 = p.bias ? p.bias[o] : 0;
      std::int32_t acc1 = p.bias ? p.bias[o + 1] : 0;
      std::size_t q = 0;
      for (; q < k4; q += 4) {
        const std::int32_t xv = detail::load4(xr + q);
        const int16x2_t x02 = __sxtab16(offset2, xv);
        const int16x2_t x13 = __sxtab16(offset2, detail::ror8(xv));
        const std::int32_t a = detail::load4(w0 + q);
        const std::int32_t b = detail::load4(w1 + q);
        acc0 = __smlad(__sxtb16(a), x02, acc0);
        acc0 = __smlad(__sxtb16(detail::ror8(a)), x13, acc0);
        acc1 = __smlad(__sxtb16(b), x02, acc1);
        acc1 = __smlad(__sxtb16(detail::ror8(b)), x13, acc1);
      }
      for (; q < k; ++q) {
        const std::int32_t xq = static_cast<std::int32_t>(xr[q]) - p.input_zero_point;
        acc0 += xq * w0[q];
        acc1 += xq * w1[q];
      }
      y[i * n + o] = requantize_s8(acc0, o, p);
      y[i * n + o + 1] = requantize_s8(acc1, o + 1, p);
    }
    for (; o < n; ++o) {
      const std::int8_t* w0 = w + o * k;
      std::int32_t acc0 = p.bias ? p.bias[o] : 0;
      std::size_t q = 0;
      for (; q < k4; q += 4) {
        const std::int32_t xv = detail::load4(xr + q);
        const std::int32_t a = detail::load4(w0 + q);
        acc0 = __smlad(__sxtb16(a), __sxtab16(offset2, xv), acc0);
        acc0 = __smlad(__sxtb16(detail::ror8(a)), __sxtab16(offset2, detail::ror8(xv)), acc0);
      }
      for (; q < k; ++q) acc0 += (static_cast<std::int32_t>(xr[q]) - p.input_zero_point) * w0[q];
      y[i * n + o] = requantize_s8(acc0, o, p);
    }
  }
}

}  // namespace tinylarge::kernels
#endif
