/// @file kernels/codebook_s8.hpp
/// @brief int8 dense, conv2d and depthwise layers computed on weight-shared
///        (codebook) int8 weights — the `int8_codebook` records of the model
///        file — with exactly the requantization of the dense int8 kernels.
///
/// A weight-shared int8 matrix W (out_channels × fan-in, the row-major order of
/// `dense_s8` / `conv2d_s8` / `depthwise_conv2d_s8`) is kept as a codebook of
/// k ≤ 256 int8 values and one index per weight, bit-packed with `bits` bits
/// per index (compress/bitpack.hpp layout: index i in bits [i·bits, (i+1)·bits)
/// of the stream, least significant bit first):
///     W[o][c] = codebook[index(o·cols + c)]
/// Per output
///     acc_o = bias_o + Σ_c (x[c] − z_x)·W[o][c]
///     y_o   = requantize_s8(acc_o, o, p)
/// The sum is exact in int32 (as the dense kernels', for fan-in ≤
/// `dense_s8_max_k` and |bias| < 2²³), so the outputs are bit-identical to the
/// dense int8 kernels on the matrix whose weights are the codebook values, on
/// every back end (these loops are scalar: each weight is an index lookup; rows read the
/// index stream sequentially, depthwise taps by position).
///
/// - `codebook_dense_s8`: batch of m rows.
/// - `codebook_conv2d_s8`: im2col of one output pixel into `scratch` (the same
///   `detail::gather_patch_s8` as `conv2d_s8`, padding with z_x, which adds
///   0), then one codebook row per output channel; scratch: `s.patch()` bytes.
/// - `codebook_depthwise_conv2d_s8`: channel by channel; taps in the padding
///   are skipped (they would add (z_x − z_x)·w = 0). No scratch.
///
/// The views are trusted: they come from `compress::model_file_reader`, which
/// checks the stream length, the width and every index below k before handing
/// them out. Freestanding: no heap, no exceptions.
#pragma once

#include <cstddef>
#include <cstdint>

#include "../compress/bitpack.hpp"
#include "../core/config.hpp"
#include "conv.hpp"
#include "dense.hpp"

namespace tinylarge::kernels {

/// A weight-shared int8 matrix (rows × cols): k int8 codebook values and rows·cols
/// bit-packed indices; arrays not owned.
struct codebook_s8_matrix {
  std::size_t rows = 0;
  std::size_t cols = 0;
  unsigned bits = 0;                     ///< index width, 1..8
  const std::uint8_t* packed = nullptr;  ///< ⌈rows·cols·bits/8⌉ bytes
  const std::int8_t* codebook = nullptr;  ///< k values, every index below k
};

namespace detail {
/// acc + Σ_{c < n} (x[c] − zx)·codebook[index(first + c)]: the one row loop of
/// `codebook_dense_s8` and `codebook_conv2d_s8`. The indices are read as a stream (a bit
/// buffer refilled a byte at a time, only with bytes that hold indices of the row); 4-bit
/// indices starting on a byte take two per byte.
TINYLARGE_ALWAYS_INLINE std::int32_t codebook_row_dot_s8(std::int32_t acc, const codebook_s8_matrix& w,
                                                         std::size_t first, std::size_t n, const std::int8_t* x,
                                                         std::int32_t zx) noexcept {
  if (n == 0) return acc;
  const unsigned bits = w.bits;
  const std::size_t pos = first * bits;
  const std::uint8_t* p = w.packed + (pos >> 3);
  const std::int8_t* cb = w.codebook;
  if (bits == 4 && (pos & 7u) == 0) {
    std::size_t c = 0;
    for (; c + 2 <= n; c += 2) {
      const unsigned b = p[c >> 1];
      acc += (static_cast<std::int32_t>(x[c]) - zx) * static_cast<std::int32_t>(cb[b & 15u]) +
             (static_cast<std::int32_t>(x[c + 1]) - zx) * static_cast<std::int32_t>(cb[b >> 4]);
    }
    if (c < n) acc += (static_cast<std::int32_t>(x[c]) - zx) * static_cast<std::int32_t>(cb[p[c >> 1] & 15u]);
    return acc;
  }
  const std::uint32_t mask = (1u << bits) - 1u;
  std::uint32_t buf = static_cast<std::uint32_t>(*p++) >> (pos & 7u);
  unsigned have = 8u - static_cast<unsigned>(pos & 7u);  // valid bits in buf
  for (std::size_t c = 0; c < n; ++c) {
    if (have < bits) {
      buf |= static_cast<std::uint32_t>(*p++) << have;
      have += 8u;
    }
    acc += (static_cast<std::int32_t>(x[c]) - zx) * static_cast<std::int32_t>(cb[buf & mask]);
    buf >>= bits;
    have -= bits;
  }
  return acc;
}
}  // namespace detail

/// Y (m × w.rows) = requantize(bias + (X − z_x)·Wᵀ), W weight-shared; `p` as for `dense_s8`.
inline void codebook_dense_s8(std::size_t m, const codebook_s8_matrix& w, const std::int8_t* x,
                              const dense_s8_params& p, std::int8_t* y) noexcept {
  for (std::size_t i = 0; i < m; ++i) {
    const std::int8_t* xr = x + i * w.cols;
    std::int8_t* yr = y + i * w.rows;
    for (std::size_t o = 0; o < w.rows; ++o) {
      const std::int32_t acc =
          detail::codebook_row_dot_s8(p.bias ? p.bias[o] : 0, w, o * w.cols, w.cols, xr, p.input_zero_point);
      yr[o] = requantize_s8(acc, o, p);
    }
  }
}

/// int8 conv2d (NHWC, weights [out_c][K][K][C] as `conv2d_s8`) on weight-shared
/// weights (w.rows = s.out_c, w.cols = s.patch()). `scratch`: s.patch() bytes.
inline void codebook_conv2d_s8(const conv_s8_shape& s, const codebook_s8_matrix& w, const std::int8_t* x,
                               const dense_s8_params& p, std::int8_t* y, std::int8_t* scratch) noexcept {
  const std::size_t pixels = s.ho * s.wo;
  const auto pad_code = static_cast<std::int8_t>(p.input_zero_point);
  for (std::size_t pix = 0; pix < pixels; ++pix) {
    detail::gather_patch_s8(s, pix, x, pad_code, scratch);
    std::int8_t* yp = y + pix * s.out_c;
    for (std::size_t o = 0; o < s.out_c; ++o) {
      const std::int32_t acc =
          detail::codebook_row_dot_s8(p.bias ? p.bias[o] : 0, w, o * w.cols, w.cols, scratch, p.input_zero_point);
      yp[o] = requantize_s8(acc, o, p);
    }
  }
}

namespace detail {
/// Output channel `o` of an int8 depthwise conv2d with depth multiplier `mult` (channel o
/// filters input channel o / mult), its K·K weights given by `weight(tap)`, tap = ky·K + kx:
/// the one tap loop of `codebook_depthwise_conv2d_s8` and `huffman_depthwise_conv2d_s8`
/// (kernels/huffman_s8.hpp). Taps in the padding are skipped (they would add (z_x − z_x)·w = 0).
template <class Weight>
TINYLARGE_ALWAYS_INLINE void depthwise_channel_s8(const conv_s8_shape& s, std::size_t mult, std::size_t o,
                                                  const std::int8_t* x, const dense_s8_params& p, std::int8_t* y,
                                                  Weight&& weight) noexcept {
  const std::size_t K = s.kernel, C = s.c, oc = s.out_c, row = s.w * s.c;
  const std::int32_t zx = p.input_zero_point;
  const std::int8_t* xc = x + o / mult;
  const std::int32_t bias = p.bias ? p.bias[o] : 0;
  for (std::size_t oy = 0; oy < s.ho; ++oy)
    for (std::size_t ox = 0; ox < s.wo; ++ox) {
      std::int32_t acc = bias;
      for (std::size_t ky = 0; ky < K; ++ky) {
        const std::size_t iy = oy * s.stride + ky;  // offset by pad
        if (iy < s.pad || iy >= s.h + s.pad) continue;
        for (std::size_t kx = 0; kx < K; ++kx) {
          const std::size_t ix = ox * s.stride + kx;
          if (ix < s.pad || ix >= s.w + s.pad) continue;
          acc += (static_cast<std::int32_t>(xc[(iy - s.pad) * row + (ix - s.pad) * C]) - zx) *
                 static_cast<std::int32_t>(weight(ky * K + kx));
        }
      }
      y[(oy * s.wo + ox) * oc + o] = requantize_s8(acc, o, p);
    }
}
}  // namespace detail

/// int8 depthwise conv2d with depth multiplier `mult` (output channel o = c·mult + m
/// filters input channel c, weights [o][K][K] as `depthwise_conv2d_s8`) on
/// weight-shared weights (w.rows = s.out_c, w.cols = K·K). No scratch.
inline void codebook_depthwise_conv2d_s8(const conv_s8_shape& s, std::size_t mult, const codebook_s8_matrix& w,
                                         const std::int8_t* x, const dense_s8_params& p, std::int8_t* y) noexcept {
  const std::size_t KK = s.kernel * s.kernel;
  for (std::size_t o = 0; o < s.out_c; ++o)
    detail::depthwise_channel_s8(s, mult, o, x, p, y, [&](std::size_t tap) {
      return w.codebook[compress::packed_get(w.packed, o * KK + tap, w.bits)];
    });
}

}  // namespace tinylarge::kernels
