/// @file kernels/conv.hpp
/// @brief int8 convolution kernels (NHWC, square kernels, TFLite int8 arithmetic):
///        `conv2d_s8` and `depthwise_conv2d_s8`, one implementation each for
///        every back end.
///
/// - `conv2d_s8` gathers the receptive fields of two output pixels at a time
///   into `scratch` (im2col, padding with the input zero point, which stands
///   for 0.0) and multiplies them with the weights by `dense_s8(B{}, 2, …)`:
///   the back end's dense kernel is the inner loop (scalar, Cortex-M DSP
///   SMLAD 2×2 blocks, Cortex-M55 Helium VMLADAVA), so there is no second copy
///   of the convolution per core. Scratch: `conv2d_s8_scratch_bytes(patch)`.
/// - `depthwise_conv2d_s8` runs channel by channel with the channel's K×K
///   weights held in registers and the interior pixels (no padding) on a
///   branch-free path (3×3 stride 1: a sliding window in registers); padded
///   taps contribute (zx − zx)·w = 0 and are skipped. Cortex-M55 Helium has
///   its own overload (end of this file): four channels per vector, with the
///   requantization vectorised bit-exactly.
///
/// Outputs are bit-identical to the scalar reference on every back end (exact
/// int32 accumulation while the patch is at most `dense_s8_max_k`, then the
/// same `requantize_s8`). No heap, no exceptions: freestanding.
#pragma once

#include <cstddef>
#include <cstdint>

#include "../core/config.hpp"
#include "dense.hpp"
#include "requantize_s8.hpp"
// The back ends' dense_s8 overloads must be declared before the templates below.
#include "cortex_m.hpp"
#include "mve.hpp"

namespace tinylarge::kernels {

/// Geometry of an int8 NHWC convolution with a square K×K kernel.
struct conv_s8_shape {
  std::size_t h = 0, w = 0, c = 0;       ///< input extent
  std::size_t kernel = 1, stride = 1, pad = 0;
  std::size_t ho = 0, wo = 0;            ///< output extent
  std::size_t out_c = 0;                 ///< output channels
  constexpr std::size_t patch() const noexcept { return kernel * kernel * c; }
};

/// Bytes of scratch `conv2d_s8` needs for a receptive field of `patch` bytes
/// (two im2col rows).
constexpr std::size_t conv2d_s8_scratch_bytes(std::size_t patch) noexcept { return 2 * patch; }

namespace detail {
/// im2col of output pixel `pix`: its K×K×C receptive field into `dst`.
TINYLARGE_ALWAYS_INLINE void gather_patch_s8(const conv_s8_shape& s, std::size_t pix, const std::int8_t* x,
                                             std::int8_t pad_code, std::int8_t* dst) noexcept {
  const std::size_t oy = pix / s.wo, ox = pix % s.wo;
  const std::size_t row_bytes = s.kernel * s.c;
  for (std::size_t ky = 0; ky < s.kernel; ++ky, dst += row_bytes) {
    const std::size_t iy = oy * s.stride + ky;  // offset by pad
    const std::size_t ix0 = ox * s.stride;
    if (iy < s.pad || iy >= s.h + s.pad) {
      for (std::size_t i = 0; i < row_bytes; ++i) dst[i] = pad_code;
      continue;
    }
    const std::int8_t* src_row = x + (iy - s.pad) * s.w * s.c;
    if (ix0 >= s.pad && ix0 + s.kernel <= s.w + s.pad) {  // the whole kernel row is inside
      const std::int8_t* src = src_row + (ix0 - s.pad) * s.c;
      for (std::size_t i = 0; i < row_bytes; ++i) dst[i] = src[i];
      continue;
    }
    for (std::size_t kx = 0; kx < s.kernel; ++kx) {
      const std::size_t ix = ix0 + kx;
      std::int8_t* d = dst + kx * s.c;
      if (ix < s.pad || ix >= s.w + s.pad) {
        for (std::size_t c = 0; c < s.c; ++c) d[c] = pad_code;
      } else {
        const std::int8_t* src = src_row + (ix - s.pad) * s.c;
        for (std::size_t c = 0; c < s.c; ++c) d[c] = src[c];
      }
    }
  }
}
}  // namespace detail

/// int8 2-D convolution: y[pix][o] = requantize(bias[o] + Σ_{ky,kx,c} (x − zx)·w[o][ky][kx][c]),
/// NHWC, weights [out_c][K][K][C] (TFLite order), zero padding. `scratch` holds
/// `conv2d_s8_scratch_bytes(s.patch())` bytes. The inner product is the back
/// end's `dense_s8` on two im2col rows at a time.
template <class Backend>
inline void conv2d_s8(Backend, const conv_s8_shape& s, const std::int8_t* x, const std::int8_t* w,
                      const dense_s8_params& p, std::int8_t* y, std::int8_t* scratch) noexcept {
  const std::size_t patch = s.patch(), pixels = s.ho * s.wo;
  const auto pad_code = static_cast<std::int8_t>(p.input_zero_point);
  std::size_t pix = 0;
  for (; pix + 2 <= pixels; pix += 2) {
    detail::gather_patch_s8(s, pix, x, pad_code, scratch);
    detail::gather_patch_s8(s, pix + 1, x, pad_code, scratch + patch);
    dense_s8(Backend{}, 2, s.out_c, patch, scratch, w, p, y + pix * s.out_c);
  }
  if (pix < pixels) {
    detail::gather_patch_s8(s, pix, x, pad_code, scratch);
    dense_s8(Backend{}, 1, s.out_c, patch, scratch, w, p, y + pix * s.out_c);
  }
}

/// int8 depthwise convolution with depth multiplier `mult`: output channel
/// o = c·mult + m filters input channel c with weights w[o][K][K];
/// `s.out_c` = `s.c`·mult. No scratch.
///
/// Channel by channel: Σ (x − zx)·w = Σ x·w − zx·Σ w with Σ w folded into the
/// bias once per channel. A 3×3, stride-1 layer with padding 0 or 1 slides a
/// window of 3×3 inputs in registers along each row — border pixels included:
/// a padded row gets zero weights, a padded column reads zx — so each output
/// loads one new column (3 bytes) and does 9 multiply-adds. Other geometries
/// run interior pixels branch-free and border pixels with the padded taps
/// skipped (they would contribute (zx − zx)·w = 0).
template <class Backend>
inline void depthwise_conv2d_s8(Backend, const conv_s8_shape& s, std::size_t mult, const std::int8_t* x,
                                const std::int8_t* w, const dense_s8_params& p, std::int8_t* y) noexcept {
  const std::size_t K = s.kernel, KK = K * K, oc = s.out_c, C = s.c, row = s.w * s.c;
  const std::int32_t zx = p.input_zero_point;
  // Output rows / columns whose whole window lies inside the image: [lo, hi).
  const std::size_t lo = (s.pad + s.stride - 1) / s.stride;
  const std::size_t y_hi = s.h + s.pad >= K ? (s.h + s.pad - K) / s.stride + 1 : 0;
  const std::size_t x_hi = s.w + s.pad >= K ? (s.w + s.pad - K) / s.stride + 1 : 0;
  // 3×3, stride 1, padding 0 or 1 (MobileNet, DS-CNN): a sliding window in registers.
  const bool slide3 = K == 3 && s.stride == 1 && s.pad <= 1;
  for (std::size_t o = 0; o < oc; ++o) {
    const std::size_t c = o / mult;
    const std::int8_t* wo = w + o * KK;
    const std::int32_t bias = p.bias ? p.bias[o] : 0;
    std::int32_t wsum = 0;
    for (std::size_t t = 0; t < KK; ++t) wsum += wo[t];
    const std::int32_t inner_base = bias - zx * wsum;  // Σ (x − zx)·w = Σ x·w − zx·Σw
    const requant_channel rq = requant_channel_of(o, p);
    const std::int8_t* xc = x + c;
    // Any pixel: taps outside the image skipped.
    auto general = [&](std::size_t oy, std::size_t ox) noexcept {
      std::int32_t acc = bias;
      for (std::size_t ky = 0; ky < K; ++ky) {
        const std::size_t iy = oy * s.stride + ky;
        if (iy < s.pad || iy >= s.h + s.pad) continue;
        for (std::size_t kx = 0; kx < K; ++kx) {
          const std::size_t ix = ox * s.stride + kx;
          if (ix < s.pad || ix >= s.w + s.pad) continue;
          const std::int32_t xv = xc[(iy - s.pad) * row + (ix - s.pad) * C];
          acc += (xv - zx) * static_cast<std::int32_t>(wo[ky * K + kx]);
        }
      }
      y[(oy * s.wo + ox) * oc + o] = requantize_s8_32(acc, rq);
    };
    if (slide3) {
      // Every pixel on one path: a padded row gets zero weights (and leaves Σ w), a padded
      // column reads zx, whose product zx·w the −zx·Σ w of the base cancels.
      for (std::size_t oy = 0; oy < s.ho; ++oy) {
        std::int32_t wr[9];
        const std::int8_t* rp[3];
        std::int32_t used = 0;
        for (std::size_t r = 0; r < 3; ++r) {
          const std::size_t iy = oy + r;  // offset by pad
          const bool inside = iy >= s.pad && iy < s.h + s.pad;
          rp[r] = inside ? xc + (iy - s.pad) * row : xc;
          for (std::size_t k = 0; k < 3; ++k) {
            wr[3 * r + k] = inside ? wo[3 * r + k] : 0;
            used += wr[3 * r + k];
          }
        }
        const std::int32_t base = bias - zx * used;
        const std::int32_t w0 = wr[0], w1 = wr[1], w2 = wr[2], w3 = wr[3], w4 = wr[4], w5 = wr[5], w6 = wr[6],
                           w7 = wr[7], w8 = wr[8];
        const std::int8_t *r0 = rp[0], *r1 = rp[1], *r2 = rp[2];
        // Column ix of the window (ix offset by pad): zx outside the image.
        auto col = [&](std::size_t ix, std::int32_t& c0, std::int32_t& c1, std::int32_t& c2) noexcept {
          if (ix >= s.pad && ix < s.w + s.pad) {
            const std::size_t at = (ix - s.pad) * C;
            c0 = r0[at], c1 = r1[at], c2 = r2[at];
          } else {
            c0 = c1 = c2 = zx;
          }
        };
        std::int32_t a0, a1, a2, b0, b1, b2, c0, c1, c2;
        col(0, a0, a1, a2);
        col(1, b0, b1, b2);
        std::int8_t* yp = y + oy * s.wo * oc + o;
        // Interior columns load without a check; the last column may be padding.
        const std::size_t last = s.wo - 1;
        const std::int8_t *p0 = r0 + (2 - s.pad) * C, *p1 = r1 + (2 - s.pad) * C, *p2 = r2 + (2 - s.pad) * C;
        for (std::size_t ox = 0; ox < last; ++ox, p0 += C, p1 += C, p2 += C, yp += oc) {
          c0 = *p0, c1 = *p1, c2 = *p2;
          const std::int32_t acc =
              base + w0 * a0 + w1 * b0 + w2 * c0 + w3 * a1 + w4 * b1 + w5 * c1 + w6 * a2 + w7 * b2 + w8 * c2;
          *yp = requantize_s8_32(acc, rq);
          a0 = b0, b0 = c0, a1 = b1, b1 = c1, a2 = b2, b2 = c2;
        }
        col(last + 2, c0, c1, c2);
        *yp = requantize_s8_32(base + w0 * a0 + w1 * b0 + w2 * c0 + w3 * a1 + w4 * b1 + w5 * c1 + w6 * a2 + w7 * b2 +
                                   w8 * c2,
                               rq);
      }
      continue;
    }
    for (std::size_t oy = 0; oy < s.ho; ++oy) {
      if (oy < lo || oy >= y_hi || x_hi <= lo) {
        for (std::size_t ox = 0; ox < s.wo; ++ox) general(oy, ox);
        continue;
      }
      for (std::size_t ox = 0; ox < lo; ++ox) general(oy, ox);
      const std::int8_t* r0 = xc + (oy * s.stride - s.pad) * row + (lo * s.stride - s.pad) * C;
      std::int8_t* yp = y + (oy * s.wo + lo) * oc + o;
      for (std::size_t ox = lo; ox < x_hi; ++ox, r0 += s.stride * C, yp += oc) {
        std::int32_t acc = inner_base;
        const std::int8_t* xp = r0;
        const std::int8_t* wp = wo;
        for (std::size_t ky = 0; ky < K; ++ky, xp += row, wp += K)
          for (std::size_t kx = 0; kx < K; ++kx)
            acc += static_cast<std::int32_t>(xp[kx * C]) * static_cast<std::int32_t>(wp[kx]);
        *yp = requantize_s8_32(acc, rq);
      }
      for (std::size_t ox = x_hi; ox < s.wo; ++ox) general(oy, ox);
    }
  }
}

#if defined(__ARM_FEATURE_MVE) && (__ARM_FEATURE_MVE & 1)
/// int8 depthwise convolution with Helium (`arch::cortex_m_mve`), depth
/// multiplier 1: four channels per vector, int32 lanes. Per tap one widening
/// load of four input bytes (VLDRB.S32), one gather of the four channels'
/// weights (stride K·K, VLDRB.S32 with offsets), VMUL and VADD (MVE's VMLA
/// takes a scalar operand only); padded taps add zx·w (VMLA by the scalar zx), which the base bias − zx·Σw cancels, as in the
/// portable kernel. The requantization is vectorised exactly: `scale_s32x4`
/// (mve.hpp), the zero point (wrapping add) and the clamp — bit-identical to
/// `requantize_s8_32`. A channel count that is not a multiple
/// of 4 runs its last block tail-predicated (VCTP32). Depth multipliers other
/// than 1 take the portable kernel.
inline void depthwise_conv2d_s8(arch::cortex_m_mve, const conv_s8_shape& s, std::size_t mult,
                                const std::int8_t* x_in, const std::int8_t* w, const dense_s8_params& p_in,
                                std::int8_t* y_in) noexcept {
  if (mult != 1) {
    depthwise_conv2d_s8(arch::cortex_m_dsp{}, s, mult, x_in, w, p_in, y_in);
    return;
  }
  const dense_s8_params p = p_in;
  const int32x4_t zy = vdupq_n_s32(p.output_zero_point), lo_v = vdupq_n_s32(p.act_min), hi_v = vdupq_n_s32(p.act_max);
  // Output rows / columns whose whole window lies inside the image: [lo, hi).
  const std::size_t lo_ = (s.pad + s.stride - 1) / s.stride;
  const std::size_t y_hi_ = s.h + s.pad >= s.kernel ? (s.h + s.pad - s.kernel) / s.stride + 1 : 0;
  const std::size_t x_hi_ = s.w + s.pad >= s.kernel ? (s.w + s.pad - s.kernel) / s.stride + 1 : 0;
  // One block of four channels; Pred: the last, partial block (tail-predicated loads and
  // stores); KT: the kernel size as a constant (3) or 0 (s.kernel at run time).
  auto block = [&]<bool Pred, std::size_t KT>(std::size_t c) noexcept {
    // Locals, not captures: the int8 stores may alias anything reached through the closure.
    const std::size_t K = KT != 0 ? KT : s.kernel, KK = K * K, C = s.c, row = s.w * C, stride = s.stride;
    const std::ptrdiff_t H = static_cast<std::ptrdiff_t>(s.h), W = static_cast<std::ptrdiff_t>(s.w);
    const std::size_t pad = s.pad, ho = s.ho, wo = s.wo, lo = lo_, x_hi = x_hi_, y_hi = y_hi_;
    const std::int32_t zx = p.input_zero_point;
    const std::int8_t* const x = x_in;
    std::int8_t* const y = y_in;
    const mve_pred16_t pr = vctp32q(static_cast<std::uint32_t>(C - c));
    const uint32x4_t woff = vmulq_n_u32(vidupq_n_u32(0u, 1), static_cast<std::uint32_t>(KK));  // {0, KK, 2KK, 3KK}
    auto load_x = [&](const std::int8_t* q) noexcept {
      if constexpr (Pred)
        return vldrbq_z_s32(q, pr);
      else
        return vldrbq_s32(q);
    };
    auto load_w = [&](const std::int8_t* q) noexcept {
      if constexpr (Pred)
        return vldrbq_gather_offset_z_s32(q, woff, pr);
      else
        return vldrbq_gather_offset_s32(q, woff);
    };
    const std::int8_t* wc = w + c * KK;
    int32x4_t wsum = vdupq_n_s32(0);
    for (std::size_t t = 0; t < KK; ++t) wsum = vaddq_s32(wsum, load_w(wc + t));
    int32x4_t base = vdupq_n_s32(0);
    if (p.bias) base = Pred ? vldrwq_z_s32(p.bias + c, pr) : vldrwq_s32(p.bias + c);
    base = vsubq_s32(base, vmulq_n_s32(wsum, zx));  // Σ (x − zx)·w = Σ x·w − zx·Σw
    // Requantization constants of the four channels (lanes past C are never stored).
    std::int32_t m4[4], sh4[4];
    for (std::size_t j = 0; j < 4; ++j) {
      const std::size_t ch = p.per_channel ? (c + j < C ? c + j : c) : 0;
      m4[j] = p.multipliers[ch];
      sh4[j] = p.shifts[ch];
    }
    const int32x4_t mv = vldrwq_s32(m4), shv = vldrwq_s32(sh4);
    const int32x4_t left = vmaxq_s32(shv, vdupq_n_s32(0)), neg_right = vminq_s32(shv, vdupq_n_s32(0));
    for (std::size_t oy = 0; oy < ho; ++oy) {
      const bool rows_inside = oy >= lo && oy < y_hi;
      const std::ptrdiff_t iy0 = static_cast<std::ptrdiff_t>(oy * stride) - static_cast<std::ptrdiff_t>(pad);
      std::int8_t* out = y + oy * wo * C + c;
      for (std::size_t ox = 0; ox < wo; ++ox, out += C) {
        const std::ptrdiff_t ix0 = static_cast<std::ptrdiff_t>(ox * stride) - static_cast<std::ptrdiff_t>(pad);
        int32x4_t acc = base;
        if (rows_inside && ox >= lo && ox < x_hi) {  // the window lies inside the image
          const std::int8_t* xp = x + static_cast<std::size_t>(iy0) * row + static_cast<std::size_t>(ix0) * C + c;
          const std::int8_t* wt = wc;
          if constexpr (KT == 3) {  // the 9 taps unrolled (GCC -O2 keeps the loops)
            for (std::size_t ky = 0; ky < 3; ++ky, xp += row, wt += 3) {
              const std::int8_t *x1 = xp + C, *x2 = x1 + C;
              acc = vaddq_s32(acc, vmulq_s32(load_x(xp), load_w(wt)));
              acc = vaddq_s32(acc, vmulq_s32(load_x(x1), load_w(wt + 1)));
              acc = vaddq_s32(acc, vmulq_s32(load_x(x2), load_w(wt + 2)));
            }
          } else {
            for (std::size_t ky = 0; ky < K; ++ky, xp += row, wt += K)
              for (std::size_t kx = 0; kx < K; ++kx)
                acc = vaddq_s32(acc, vmulq_s32(load_x(xp + kx * C), load_w(wt + kx)));
          }
        } else {  // padded taps add zx·w (VMLA by the scalar zx), which the base cancels
          for (std::size_t ky = 0; ky < K; ++ky) {
            const std::ptrdiff_t iy = iy0 + static_cast<std::ptrdiff_t>(ky);
            const bool row_ok = iy >= 0 && iy < H;
            for (std::size_t kx = 0; kx < K; ++kx) {
              const std::ptrdiff_t ix = ix0 + static_cast<std::ptrdiff_t>(kx);
              const int32x4_t wv = load_w(wc + ky * K + kx);
              if (row_ok && ix >= 0 && ix < W)
                acc = vaddq_s32(acc, vmulq_s32(load_x(x + static_cast<std::size_t>(iy) * row +
                                                      static_cast<std::size_t>(ix) * C + c),
                                               wv));
              else
                acc = vmlaq_n_s32(acc, wv, zx);
            }
          }
        }
        // requantize_s8_32, four lanes at a time.
        const int32x4_t v = vminq_s32(vmaxq_s32(vaddq_s32(scale_s32x4(acc, left, mv, neg_right), zy), lo_v), hi_v);
        if constexpr (Pred)
          vstrbq_p_s32(out, v, pr);
        else
          vstrbq_s32(out, v);
      }
    }
  };
  std::size_t c = 0;
  if (s.kernel == 3) {
    for (; c + 4 <= s.c; c += 4) block.template operator()<false, 3>(c);
    if (c < s.c) block.template operator()<true, 3>(c);
  } else {
    for (; c + 4 <= s.c; c += 4) block.template operator()<false, 0>(c);
    if (c < s.c) block.template operator()<true, 0>(c);
  }
}
#endif

}  // namespace tinylarge::kernels
