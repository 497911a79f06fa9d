/// @file kernels/cortex_m.hpp
/// @brief int8 kernels for Cortex-M4/M7 with the DSP extension (`arch::cortex_m_dsp`).
///
/// The inner product uses the dual 16-bit multiply-accumulate SMLAD: four int8
/// weights are loaded as one word and split into two pairs of sign-extended
/// halfwords with SXTB16 (bytes 0,2) and SXTB16 of the word rotated by 8
/// (bytes 1,3); the inputs are split the same way with SXTAB16, which also adds
/// the negated input zero point, so `(x − zx)` is formed in 16-bit lanes (it
/// lies in [−255, 255]). Two or three output rows share each loaded input word. The
/// products are exact and summed in int32 in the same order-independent way as
/// the scalar kernel, so outputs are bit-identical to `arch::scalar`.
///
/// The convolution kernels (`kernels/conv.hpp`) reach this code through
/// `dense_s8(B{}, 2, …)` on two im2col rows. `dense_s8_s32` (the int32 sums
/// without requantization, for the int8 layers of `mixed_inference_network`)
/// shares the batch-1 inner loop (`detail::gemv_dsp`).
///
/// No heap, no exceptions. Only compiled when `__ARM_FEATURE_DSP` is defined;
/// elsewhere the tag falls back to the scalar kernels.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "dense.hpp"
#include "requantize_s8.hpp"

#if defined(__ARM_FEATURE_DSP) && !defined(__ARM_NEON)
#include <arm_acle.h>

namespace tinylarge::kernels {

namespace detail {
/// Four int8 values as one word (one LDR; Cortex-M3/M4/M55 allow unaligned LDR).
TINYLARGE_ALWAYS_INLINE std::int32_t load4(const std::int8_t* p) noexcept {
  std::int32_t v;
  std::memcpy(&v, p, 4);
  return v;
}
/// SXTB16 with the operand rotated by 8: bytes 1 and 3 as two sign-extended
/// halfwords, one instruction (GCC 12 does not fold a separate rotation into
/// the ACLE intrinsic).
TINYLARGE_ALWAYS_INLINE std::int32_t sxtb16_ror8(std::int32_t v) noexcept {
  std::int32_t r;
  __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(v));
  return r;
}
/// SXTAB16 with the byte operand rotated by 8: a + (bytes 1, 3 of v), per halfword.
TINYLARGE_ALWAYS_INLINE std::int32_t sxtab16_ror8(std::int32_t a, std::int32_t v) noexcept {
  std::int32_t r;
  __asm__("sxtab16 %0, %1, %2, ror #8" : "=r"(r) : "r"(a), "r"(v));
  return r;
}
/// Σ over [xp, xe) of (x[q] − zx)·w[q] added to `acc` for three weight rows
/// (xe − xp a multiple of 4): per 4 bytes one load of x, split into two pairs
/// of halfwords with the offset added (SXTAB16, SXTAB16 ror 8) and shared by
/// the three rows, one load per weight row split by SXTB16 / SXTB16 ror 8,
/// six SMLAD — 20 instructions for 12 MACs with the loop's compare and branch.
TINYLARGE_ALWAYS_INLINE void dot_1x3_dsp(const std::int8_t* xp, const std::int8_t* xe, const std::int8_t* w0,
                                         const std::int8_t* w1, const std::int8_t* w2, std::int32_t offset2,
                                         std::int32_t& acc0, std::int32_t& acc1, std::int32_t& acc2) noexcept {
  std::int32_t a0 = acc0, a1 = acc1, a2 = acc2;
  for (; xp != xe; xp += 4, w0 += 4, w1 += 4, w2 += 4) {
    const std::int32_t xv = load4(xp);
    const std::int32_t x02 = __sxtab16(offset2, xv);
    const std::int32_t x13 = sxtab16_ror8(offset2, xv);
    std::int32_t t = load4(w0);
    a0 = __smlad(__sxtb16(t), x02, a0);
    a0 = __smlad(sxtb16_ror8(t), x13, a0);
    t = load4(w1);
    a1 = __smlad(__sxtb16(t), x02, a1);
    a1 = __smlad(sxtb16_ror8(t), x13, a1);
    t = load4(w2);
    a2 = __smlad(__sxtb16(t), x02, a2);
    a2 = __smlad(sxtb16_ror8(t), x13, a2);
  }
  acc0 = a0;
  acc1 = a1;
  acc2 = a2;
}

/// One input row (the batch-1 GEMV) against all weight rows, three weight
/// rows per loaded input word (`dot_1x3_dsp`); a last block of one or two
/// rows repeats its last row (computed again, stored once). `store(o, acc)`
/// receives each row's int32 sum (bias included): requantized by `dense_s8`,
/// kept by `dense_s8_s32`. The parameters are copied into locals first: the
/// int8 stores to `y` may alias anything, and reading `p` through the
/// reference would reload every field after each output.
template <class Store>
TINYLARGE_ALWAYS_INLINE void gemv_dsp(std::size_t n, std::size_t k, const std::int8_t* x, const std::int8_t* w,
                                      std::int32_t zx, const std::int32_t* bias, Store&& store) noexcept {
  const auto neg_zx = static_cast<std::uint32_t>(static_cast<std::uint16_t>(-zx));
  const auto offset2 = static_cast<std::int32_t>(neg_zx | (neg_zx << 16));
  const std::size_t k4 = k & ~static_cast<std::size_t>(3);
  const std::int8_t* const x_end = x + k4;
  for (std::size_t o = 0; o < n; o += 3) {
    const std::size_t o1 = o + 1 < n ? o + 1 : o, o2 = o + 2 < n ? o + 2 : o1;
    const std::int8_t *w0 = w + o * k, *w1 = w + o1 * k, *w2 = w + o2 * k;
    std::int32_t acc0 = 0, acc1 = 0, acc2 = 0;
    if (bias) acc0 = bias[o], acc1 = bias[o1], acc2 = bias[o2];
    dot_1x3_dsp(x, x_end, w0, w1, w2, offset2, acc0, acc1, acc2);
    for (std::size_t q = k4; q < k; ++q) {
      const std::int32_t xq = static_cast<std::int32_t>(x[q]) - zx;
      acc0 += xq * w0[q];
      acc1 += xq * w1[q];
      acc2 += xq * w2[q];
    }
    store(o, acc0);
    store(o1, acc1);
    store(o2, acc2);
  }
}

/// `gemv_dsp` with the requantization of `dense_s8`.
TINYLARGE_ALWAYS_INLINE void gemv_s8_dsp(std::size_t n, std::size_t k, const std::int8_t* x, const std::int8_t* w,
                                         const dense_s8_params& p_in, std::int8_t* y) noexcept {
  const dense_s8_params p = p_in;
  gemv_dsp(n, k, x, w, p.input_zero_point, p.bias,
           [&](std::size_t o, std::int32_t acc) __attribute__((always_inline)) { y[o] = requantize_s8_32(acc, o, p); });
}
}  // namespace detail

/// int8 dense with SMLAD; bit-exact with the scalar back end.
///
/// Rows of X are taken two at a time when m ≥ 2 (the two im2col rows of
/// `conv2d_s8`): a 2×2 block of (x row, weight row) shares every loaded word
/// twice (4 accumulators, 8 SMLAD per 4 bytes of k). A single row (the
/// batch-1 GEMV) runs three weight rows per input word (`detail::gemv_s8_dsp`).
inline void dense_s8(arch::cortex_m_dsp, std::size_t m, std::size_t n, std::size_t k, const std::int8_t* x,
                     const std::int8_t* w, const dense_s8_params& p_in, std::int8_t* y) noexcept {
  const dense_s8_params p = p_in;  // locals: the int8 stores to y would force reloads through a reference
  // −zx replicated in both halfword lanes, added by SXTAB16.
  const auto neg_zx = static_cast<std::uint32_t>(static_cast<std::uint16_t>(-p.input_zero_point));
  const auto offset2 = static_cast<std::int32_t>(neg_zx | (neg_zx << 16));
  const std::size_t k4 = k & ~static_cast<std::size_t>(3);
  const std::int32_t zx = p.input_zero_point;
  std::size_t i = 0;
  for (; i + 2 <= m; i += 2) {
    const std::int8_t* xr0 = x + i * k;
    const std::int8_t* xr1 = xr0 + k;
    std::int8_t* y0 = y + i * n;
    std::int8_t* y1 = y0 + n;
    std::size_t o = 0;
    for (; o + 2 <= n; o += 2) {
      const std::int8_t* w0 = w + o * k;
      const std::int8_t* w1 = w0 + k;
      std::int32_t b0 = p.bias ? p.bias[o] : 0, b1 = p.bias ? p.bias[o + 1] : 0;
      std::int32_t a00 = b0, a01 = b1, a10 = b0, a11 = b1;
      const std::int8_t* xp0 = xr0;
      const std::int8_t* xp1 = xr1;
      const std::int8_t* const xe0 = xr0 + k4;
      const std::int8_t* wp0 = w0;
      const std::int8_t* wp1 = w1;
      for (; xp0 != xe0; xp0 += 4, xp1 += 4, wp0 += 4, wp1 += 4) {
        const std::int32_t u = detail::load4(xp0);
        const std::int32_t v = detail::load4(xp1);
        const std::int32_t a = detail::load4(wp0);
        const std::int32_t b = detail::load4(wp1);
        const std::int32_t u02 = __sxtab16(offset2, u), u13 = detail::sxtab16_ror8(offset2, u);
        const std::int32_t v02 = __sxtab16(offset2, v), v13 = detail::sxtab16_ror8(offset2, v);
        const std::int32_t a02 = __sxtb16(a), a13 = detail::sxtb16_ror8(a);
        a00 = __smlad(a02, u02, a00);
        a00 = __smlad(a13, u13, a00);
        a10 = __smlad(a02, v02, a10);
        a10 = __smlad(a13, v13, a10);
        const std::int32_t b02 = __sxtb16(b), b13 = detail::sxtb16_ror8(b);
        a01 = __smlad(b02, u02, a01);
        a01 = __smlad(b13, u13, a01);
        a11 = __smlad(b02, v02, a11);
        a11 = __smlad(b13, v13, a11);
      }
      for (std::size_t q = k4; q < k; ++q) {
        const std::int32_t u = static_cast<std::int32_t>(xr0[q]) - zx, v = static_cast<std::int32_t>(xr1[q]) - zx;
        a00 += u * w0[q];
        a01 += u * w1[q];
        a10 += v * w0[q];
        a11 += v * w1[q];
      }
      y0[o] = requantize_s8_32(a00, o, p);
      y0[o + 1] = requantize_s8_32(a01, o + 1, p);
      y1[o] = requantize_s8_32(a10, o, p);
      y1[o + 1] = requantize_s8_32(a11, o + 1, p);
    }
    for (; o < n; ++o) {  // odd last weight row: one row at a time
      const std::int8_t* w0 = w + o * k;
      std::int32_t c0 = p.bias ? p.bias[o] : 0, c1 = c0;
      for (std::size_t q = 0; q < k; ++q) {
        c0 += (static_cast<std::int32_t>(xr0[q]) - zx) * w0[q];
        c1 += (static_cast<std::int32_t>(xr1[q]) - zx) * w0[q];
      }
      y0[o] = requantize_s8_32(c0, o, p);
      y1[o] = requantize_s8_32(c1, o, p);
    }
  }
  for (; i < m; ++i) detail::gemv_s8_dsp(n, k, x + i * k, w, p, y + i * n);
}

/// int8 dense without requantization (the int32 sums, bias included; see the
/// scalar `dense_s8_s32`) with SMLAD, one row of X at a time (`detail::gemv_dsp`);
/// bit-exact with the scalar back end.
inline void dense_s8_s32(arch::cortex_m_dsp, std::size_t m, std::size_t n, std::size_t k, const std::int8_t* x,
                         const std::int8_t* w, const dense_s8_params& p, std::int32_t* acc) noexcept {
  const std::int32_t zx = p.input_zero_point;
  const std::int32_t* const bias = p.bias;
  for (std::size_t i = 0; i < m; ++i) {
    std::int32_t* const row = acc + i * n;
    detail::gemv_dsp(n, k, x + i * k, w, zx, bias,
                     [row](std::size_t o, std::int32_t a) __attribute__((always_inline)) { row[o] = a; });
  }
}

}  // namespace tinylarge::kernels
#endif
