/// @file kernels/sparse_s8.hpp
/// @brief int8 dense, conv2d and depthwise layers computed on pruned weights in
///        relative-index CSR form (the `int8_csr` records of the model file),
///        with exactly the requantization of the dense int8 kernels.
///
/// A pruned int8 weight matrix W (out_channels × fan-in, the row-major order of
/// `dense_s8` / `conv2d_s8` / `depthwise_conv2d_s8`) is kept as its non-zero
/// entries: row o holds entries row_ptr[o] ≤ j < row_ptr[o+1], each with an
/// int8 value and a gap (the zero columns skipped before it), so that
///     col_j = col_{j−1} + 1 + gap_j   (col_{−1} = −1 at the start of a row);
/// a run of zeros longer than a gap can hold is bridged by filler entries of
/// value 0 (compress/kernels.hpp describes the format). Per output
///     acc_o = bias_o + Σ_{entries j of row o} (x[col_j] − z_x)·value_j
///     y_o   = requantize_s8(acc_o, o, p)
/// The sum is exact in int32 (as the dense kernels', for fan-in ≤
/// `dense_s8_max_k` and |bias| < 2²³) and the zero weights the dense kernels
/// multiply add nothing, so the outputs are bit-identical to the dense int8
/// kernels on the matrix with the same zeros, on every back end (these loops
/// are scalar: the column indices are irregular).
///
/// - `sparse_dense_s8`: batch of m rows.
/// - `sparse_conv2d_s8`: im2col of one output pixel into `scratch` (the same
///   `detail::gather_patch_s8` as `conv2d_s8`, padding with z_x, which adds
///   0), then one sparse row per output channel; scratch: `s.patch()` bytes.
/// - `sparse_depthwise_conv2d_s8`: channel by channel, the column of an entry
///   walked as (ky, kx); taps in the padding are skipped (they would add
///   (z_x − z_x)·w = 0). No scratch.
///
/// The views are trusted: they come from `compress::model_file_reader`, which
/// checks row offsets, entry counts and every column before handing them out.
/// Freestanding: no heap, no exceptions.
#pragma once

#include <cstddef>
#include <cstdint>

#include "../core/config.hpp"
#include "conv.hpp"
#include "dense.hpp"

namespace tinylarge::kernels {

/// A pruned int8 matrix (rows × cols) in relative-index CSR form; arrays not owned.
struct csr_s8_matrix {
  std::size_t rows = 0;
  std::size_t cols = 0;
  const std::uint32_t* row_ptr = nullptr;  ///< rows + 1 offsets, row_ptr[0] = 0
  const std::uint8_t* gaps = nullptr;      ///< one per entry
  const std::int8_t* values = nullptr;     ///< one per entry (fillers: 0)
};

namespace detail {
/// acc + Σ_{begin ≤ j < end} (x[col_j] − zx)·value(j), columns walked from the gaps.
/// The one row loop of every int8 CSR kernel (`value` gives int8 values or
/// int8 codebook entries).
template <class Value>
TINYLARGE_ALWAYS_INLINE std::int32_t csr_row_dot_s8(std::int32_t acc, std::size_t begin, std::size_t end,
                                                    const std::uint8_t* gaps, const Value& value,
                                                    const std::int8_t* x, std::int32_t zx) noexcept {
  std::size_t col = 0;
  for (std::size_t j = begin; j < end; ++j) {
    col += gaps[j];
    acc += (static_cast<std::int32_t>(x[col]) - zx) * static_cast<std::int32_t>(value(j));
    ++col;
  }
  return acc;
}
}  // namespace detail

/// Y (m × w.rows) = requantize(bias + (X − z_x)·Wᵀ), W pruned in CSR form; `p` as
/// for `dense_s8`.
inline void sparse_dense_s8(std::size_t m, const csr_s8_matrix& w, const std::int8_t* x, const dense_s8_params& p,
                            std::int8_t* y) noexcept {
  const auto value = [&](std::size_t j) noexcept { return w.values[j]; };
  for (std::size_t i = 0; i < m; ++i) {
    const std::int8_t* xr = x + i * w.cols;
    std::int8_t* yr = y + i * w.rows;
    for (std::size_t o = 0; o < w.rows; ++o) {
      const std::int32_t acc = detail::csr_row_dot_s8(p.bias ? p.bias[o] : 0, w.row_ptr[o], w.row_ptr[o + 1], w.gaps,
                                                      value, xr, p.input_zero_point);
      yr[o] = requantize_s8(acc, o, p);
    }
  }
}

/// int8 conv2d (NHWC, weights [out_c][K][K][C] as `conv2d_s8`) on pruned CSR
/// weights (w.rows = s.out_c, w.cols = s.patch()). `scratch`: s.patch() bytes.
inline void sparse_conv2d_s8(const conv_s8_shape& s, const csr_s8_matrix& w, const std::int8_t* x,
                             const dense_s8_params& p, std::int8_t* y, std::int8_t* scratch) noexcept {
  const std::size_t pixels = s.ho * s.wo;
  const auto pad_code = static_cast<std::int8_t>(p.input_zero_point);
  const auto value = [&](std::size_t j) noexcept { return w.values[j]; };
  for (std::size_t pix = 0; pix < pixels; ++pix) {
    detail::gather_patch_s8(s, pix, x, pad_code, scratch);
    std::int8_t* yp = y + pix * s.out_c;
    for (std::size_t o = 0; o < s.out_c; ++o) {
      const std::int32_t acc = detail::csr_row_dot_s8(p.bias ? p.bias[o] : 0, w.row_ptr[o], w.row_ptr[o + 1], w.gaps,
                                                      value, scratch, p.input_zero_point);
      yp[o] = requantize_s8(acc, o, p);
    }
  }
}

/// int8 depthwise conv2d with depth multiplier `mult` (output channel o = c·mult + m
/// filters input channel c, weights [o][K][K] as `depthwise_conv2d_s8`) on pruned CSR
/// weights (w.rows = s.out_c, w.cols = K·K). No scratch.
inline void sparse_depthwise_conv2d_s8(const conv_s8_shape& s, std::size_t mult, const csr_s8_matrix& w,
                                       const std::int8_t* x, const dense_s8_params& p, std::int8_t* y) noexcept {
  const std::size_t K = s.kernel, C = s.c, oc = s.out_c, row = s.w * s.c;
  const std::int32_t zx = p.input_zero_point;
  for (std::size_t o = 0; o < oc; ++o) {
    const std::int8_t* xc = x + o / mult;
    const std::int32_t bias = p.bias ? p.bias[o] : 0;
    const std::size_t begin = w.row_ptr[o], end = w.row_ptr[o + 1];
    for (std::size_t oy = 0; oy < s.ho; ++oy)
      for (std::size_t ox = 0; ox < s.wo; ++ox) {
        std::int32_t acc = bias;
        std::size_t ky = 0, kx = 0;  // the column of the next entry before its gap, as (ky, kx)
        for (std::size_t j = begin; j < end; ++j) {
          kx += w.gaps[j];
          while (kx >= K) {
            kx -= K;
            ++ky;
          }
          const std::size_t iy = oy * s.stride + ky, ix = ox * s.stride + kx;  // offset by pad
          if (iy >= s.pad && iy < s.h + s.pad && ix >= s.pad && ix < s.w + s.pad)
            acc += (static_cast<std::int32_t>(xc[(iy - s.pad) * row + (ix - s.pad) * C]) - zx) *
                   static_cast<std::int32_t>(w.values[j]);
          if (++kx == K) {
            kx = 0;
            ++ky;
          }
        }
        y[(oy * s.wo + ox) * oc + o] = requantize_s8(acc, o, p);
      }
  }
}

}  // namespace tinylarge::kernels
