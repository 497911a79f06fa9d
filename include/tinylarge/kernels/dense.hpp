/// @file kernels/dense.hpp
/// @brief Dense (fully connected) and GEMM kernels: the portable scalar back end
///        and the public entry points every back end overloads.
///
/// Layout is row-major throughout:
///  - `X` is m×k (m = batch), `W` is n×k (one row per output), `Y` is m×n;
///  - dense:   Y = X·Wᵀ + b;
///  - backward products: dX = dY·W (m×k), dW = dYᵀ·X (n×k).
///
/// Every function takes the back end tag first: `dense_f32(kernels::scalar{},
/// …)`. The scalar overloads here use no heap and no exceptions and build in
/// the freestanding profile; SIMD back ends add overloads for their own tags
/// in `kernels/simd/`, and a call with a derived tag falls back to the
/// nearest base that has an overload.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "../core/config.hpp"
#include "../precision/fp16.hpp"
#include "../precision/requantize.hpp"
#include "backend.hpp"

namespace tinylarge::kernels {

/// Whether a GEMM operand is read transposed.
enum class transpose : bool { no = false, yes = true };

/// Parameters of the int8 dense kernel (TFLite int8 spec).
///
/// real(x) = x_scale·(x − input_zero_point), real(w) = w_scale[o]·w (symmetric),
/// bias is int32 with scale x_scale·w_scale[o], and
/// y = clamp(output_zero_point + MultiplyByQuantizedMultiplier(acc, M[o]), act_min, act_max)
/// with M[o] = x_scale·w_scale[o]/y_scale.
struct dense_s8_params {
  std::int32_t input_zero_point = 0;
  std::int32_t output_zero_point = 0;
  /// Per-output-channel multipliers and shifts (size n) when `per_channel`,
  /// else a single entry.
  const std::int32_t* multipliers = nullptr;
  const int* shifts = nullptr;
  bool per_channel = false;
  const std::int32_t* bias = nullptr;  ///< size n, may be null
  /// Optional Σ_i W[o][i] per row (size n); back ends that need the row sums
  /// compute them when this is null.
  const std::int32_t* weight_row_sums = nullptr;
  std::int8_t act_min = -128;  ///< fused activation clamp (relu: output_zero_point)
  std::int8_t act_max = 127;
};

/// Requantize one int32 accumulator of output channel `o`.
TINYLARGE_ALWAYS_INLINE std::int8_t requantize_s8(std::int32_t acc, std::size_t o,
                                                  const dense_s8_params& p) noexcept {
  const std::size_t c = p.per_channel ? o : 0;
  std::int32_t v = multiply_by_quantized_multiplier(acc, p.multipliers[c], p.shifts[c]);
  v += p.output_zero_point;
  v = std::max<std::int32_t>(v, p.act_min);
  v = std::min<std::int32_t>(v, p.act_max);
  return static_cast<std::int8_t>(v);
}

// ---------------------------------------------------------------------------
// Scalar back end
// ---------------------------------------------------------------------------

/// C = alpha·op(A)·op(B) + beta·C, row-major; op(A) is m×k, op(B) is k×n.
/// When beta == 0, C is not read (it may hold NaN).
inline void gemm_f32(scalar, transpose ta, transpose tb, std::size_t m, std::size_t n,
                     std::size_t k, float alpha, const float* a, std::size_t lda, const float* b,
                     std::size_t ldb, float beta, float* c, std::size_t ldc) noexcept {
  for (std::size_t i = 0; i < m; ++i) {
    float* crow = c + i * ldc;
    if (beta == 0.0f) {
      for (std::size_t j = 0; j < n; ++j) crow[j] = 0.0f;
    } else if (beta != 1.0f) {
      for (std::size_t j = 0; j < n; ++j) crow[j] *= beta;
    }
    for (std::size_t p = 0; p < k; ++p) {
      const float aip = alpha * (ta == transpose::no ? a[i * lda + p] : a[p * lda + i]);
      if (tb == transpose::no) {
        const float* brow = b + p * ldb;
        for (std::size_t j = 0; j < n; ++j) crow[j] += aip * brow[j];
      } else {
        for (std::size_t j = 0; j < n; ++j) crow[j] += aip * b[j * ldb + p];
      }
    }
  }
}

/// Y = X·Wᵀ + bias (bias may be null).
inline void dense_f32(scalar, std::size_t m, std::size_t n, std::size_t k, const float* x,
                      const float* w, const float* bias, float* y) noexcept {
  for (std::size_t i = 0; i < m; ++i) {
    const float* xr = x + i * k;
    for (std::size_t o = 0; o < n; ++o) {
      const float* wr = w + o * k;
      float acc = 0.0f;
      for (std::size_t p = 0; p < k; ++p) acc += xr[p] * wr[p];
      y[i * n + o] = acc + (bias ? bias[o] : 0.0f);
    }
  }
}

/// Y = X·Wᵀ + bias with W stored as IEEE binary16, accumulated in fp32.
inline void dense_f16(scalar, std::size_t m, std::size_t n, std::size_t k, const float* x,
                      const half* w, const float* bias, float* y) noexcept {
  for (std::size_t i = 0; i < m; ++i) {
    const float* xr = x + i * k;
    for (std::size_t o = 0; o < n; ++o) {
      const half* wr = w + o * k;
      float acc = 0.0f;
      for (std::size_t p = 0; p < k; ++p) acc += xr[p] * half_to_float(wr[p]);
      y[i * n + o] = acc + (bias ? bias[o] : 0.0f);
    }
  }
}

/// int8 dense: int32 accumulation of (x − zx)·w, + bias, fused requantize and
/// clamp. Bit-exact reference for every back end.
inline void dense_s8(scalar, std::size_t m, std::size_t n, std::size_t k, const std::int8_t* x,
                     const std::int8_t* w, const dense_s8_params& p, std::int8_t* y) noexcept {
  for (std::size_t i = 0; i < m; ++i) {
    const std::int8_t* xr = x + i * k;
    for (std::size_t o = 0; o < n; ++o) {
      const std::int8_t* wr = w + o * k;
      std::int32_t acc = p.bias ? p.bias[o] : 0;
      for (std::size_t q = 0; q < k; ++q)
        acc += (static_cast<std::int32_t>(xr[q]) - p.input_zero_point) * static_cast<std::int32_t>(wr[q]);
      y[i * n + o] = requantize_s8(acc, o, p);
    }
  }
}

}  // namespace tinylarge::kernels
