/// @file kernels/mve.hpp
/// @brief int8 kernels for Cortex-M55 / M85 Helium (`arch::cortex_m_mve`,
///        integer M-profile Vector Extension).
///
/// `dense_s8` takes 16 bytes of k per vector: VMLADAVA accumulates the 16
/// products x·w of one row into a scalar int32, and VADDVA sums the 16
/// weights, so that Σ (x − zx)·w = Σ x·w − zx·Σ w needs no widening of x.
/// Two input rows (the im2col rows of `conv2d_s8`) × two weight rows share
/// every loaded vector (4 VMLADAVA per 4 loads). The k tail is one
/// predicated iteration (VCTP8, zeroing loads), never a scalar loop. int32
/// arithmetic wraps modulo 2³² inside the sums, which is exact whenever the
/// final value fits (k ≤ `dense_s8_max_k`), so outputs are bit-identical to
/// `arch::scalar`; the four outputs of each 2×2 block are requantized together by
/// `scale_s32x4`, bit-identical to `requantize_s8_32`.
///
/// `scale_s32x4` is `scale_s32` (TFLite's MultiplyByQuantizedMultiplier) on four int32 lanes,
/// bit-identical: VQSHL (the saturating left shift of a multiplier ≥ 1), VQRDMULH (which
/// equals TFLite's SaturatingRoundingDoublingHighMul: ⌊(a·m + 2^30)/2^31⌋ either way), then
/// the rounding right shift with ties away from zero as gemmlowp's vector RoundingDivideByPOT
/// does it (x − 1 for negative x when the shift is non-zero, VQADD, then VRSHL). The Helium
/// depthwise convolution (conv.hpp) and int8 add (elementwise.hpp) requantize with it.
///
/// No heap, no exceptions. Only compiled when integer MVE is available;
/// elsewhere the tag falls back to `cortex_m_dsp` / `scalar`.
#pragma once

#include <cstddef>
#include <cstdint>

#include "dense.hpp"
#include "requantize_s8.hpp"

#if defined(__ARM_FEATURE_MVE) && (__ARM_FEATURE_MVE & 1)
#include <arm_mve.h>

namespace tinylarge::kernels {

/// `scale_s32` on four lanes: `left` = max(shift, 0), `neg_right` = min(shift, 0) per lane,
/// `m` the multipliers (see the file comment).
TINYLARGE_ALWAYS_INLINE int32x4_t scale_s32x4(int32x4_t acc, int32x4_t left, int32x4_t m,
                                              int32x4_t neg_right) noexcept {
  int32x4_t v = vqrdmulhq_s32(vqshlq_s32(acc, left), m);
  v = vqaddq_s32(v, vshrq_n_s32(vandq_s32(v, neg_right), 31));
  return vrshlq_s32(v, neg_right);
}

/// int8 dense with Helium VMLADAVA; bit-exact with the scalar back end.
inline void dense_s8(arch::cortex_m_mve, std::size_t m, std::size_t n, std::size_t k, const std::int8_t* x,
                     const std::int8_t* w, const dense_s8_params& p, std::int8_t* y) noexcept {
  const std::int32_t zx = p.input_zero_point;
  const int32x4_t zero = vdupq_n_s32(0), zy = vdupq_n_s32(p.output_zero_point);
  const int32x4_t lo = vdupq_n_s32(p.act_min), hi = vdupq_n_s32(p.act_max);
  const std::size_t k16 = k & ~static_cast<std::size_t>(15);
  const std::size_t tail = k - k16;
  const mve_pred16_t tail_pred = vctp8q(static_cast<std::uint32_t>(tail));
  for (std::size_t i = 0; i < m; i += 2) {
    const bool two = i + 1 < m;
    const std::int8_t* x0 = x + i * k;
    const std::int8_t* x1 = two ? x0 + k : x0;  // a single last row is computed twice, stored once
    std::size_t o = 0;
    for (; o < n; o += 2) {
      const bool pair = o + 1 < n;
      const std::int8_t* w0 = w + o * k;
      const std::int8_t* w1 = pair ? w0 + k : w0;
      std::int32_t d00 = 0, d01 = 0, d10 = 0, d11 = 0, s0 = 0, s1 = 0;
      std::size_t q = 0;
      for (; q < k16; q += 16) {
        const int8x16_t u = vld1q_s8(x0 + q), v = vld1q_s8(x1 + q);
        const int8x16_t a = vld1q_s8(w0 + q), b = vld1q_s8(w1 + q);
        d00 = vmladavaq_s8(d00, u, a);
        d10 = vmladavaq_s8(d10, v, a);
        d01 = vmladavaq_s8(d01, u, b);
        d11 = vmladavaq_s8(d11, v, b);
        s0 = vaddvaq_s8(s0, a);
        s1 = vaddvaq_s8(s1, b);
      }
      if (tail != 0) {
        const int8x16_t u = vld1q_z_s8(x0 + q, tail_pred), v = vld1q_z_s8(x1 + q, tail_pred);
        const int8x16_t a = vld1q_z_s8(w0 + q, tail_pred), b = vld1q_z_s8(w1 + q, tail_pred);
        d00 = vmladavaq_s8(d00, u, a);
        d10 = vmladavaq_s8(d10, v, a);
        d01 = vmladavaq_s8(d01, u, b);
        d11 = vmladavaq_s8(d11, v, b);
        s0 = vaddvaq_s8(s0, a);
        s1 = vaddvaq_s8(s1, b);
      }
      // The 2×2 block requantized as one vector, lanes {(i, o), (i, o + 1), (i + 1, o), (i + 1, o + 1)}
      // (a missing row or column repeats its neighbour and is not stored).
      const std::size_t o1 = pair ? o + 1 : o;
      const std::int32_t b0 = (p.bias ? p.bias[o] : 0) - zx * s0, b1 = (p.bias ? p.bias[o1] : 0) - zx * s1;
      const std::size_t c0 = p.per_channel ? o : 0, c1 = p.per_channel ? o1 : 0;
      int32x4_t acc = vdupq_n_s32(b0 + d00), mv = vdupq_n_s32(p.multipliers[c0]), sh = vdupq_n_s32(p.shifts[c0]);
      acc = vsetq_lane_s32(b1 + d01, acc, 1);
      acc = vsetq_lane_s32(b0 + d10, acc, 2);
      acc = vsetq_lane_s32(b1 + d11, acc, 3);
      mv = vsetq_lane_s32(p.multipliers[c1], vsetq_lane_s32(p.multipliers[c1], mv, 1), 3);
      sh = vsetq_lane_s32(p.shifts[c1], vsetq_lane_s32(p.shifts[c1], sh, 1), 3);
      const int32x4_t r = vminq_s32(
          vmaxq_s32(vaddq_s32(scale_s32x4(acc, vmaxq_s32(sh, zero), mv, vminq_s32(sh, zero)), zy), lo), hi);
      std::int8_t* const y0 = y + i * n + o;
      y0[0] = static_cast<std::int8_t>(vgetq_lane_s32(r, 0));
      if (pair) y0[1] = static_cast<std::int8_t>(vgetq_lane_s32(r, 1));
      if (two) {
        y0[n] = static_cast<std::int8_t>(vgetq_lane_s32(r, 2));
        if (pair) y0[n + 1] = static_cast<std::int8_t>(vgetq_lane_s32(r, 3));
      }
    }
  }
}

}  // namespace tinylarge::kernels
#endif
