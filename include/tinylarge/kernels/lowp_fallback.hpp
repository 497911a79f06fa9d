/// @file kernels/lowp_fallback.hpp
/// @brief TEMPORARY stand-in for the low-precision entry points of
///        kernels/dense.hpp (`kernels::gemm<Backend, T>`, `kernels::dense<Backend, TX, T>`)
///        until branch `xsimd` provides them: the operands are widened to fp32
///        and the fp32 kernels of the back end run. Same signatures, same
///        numerics up to the summation order (a product of two fp16 or bf16
///        values is exact in fp32). Deleted when `xsimd` is merged.
#pragma once

#include <cstddef>
#include <span>
#include <type_traits>
#include <vector>

#include "../precision/bf16.hpp"
#include "../precision/convert.hpp"
#include "../precision/fp16.hpp"
#include "backend.hpp"
#include "dense.hpp"

namespace tinylarge::kernels {

namespace lowp_fallback_detail {
/// The first `n` elements of `p` as fp32 (p itself when T is float).
template <class T>
const float* as_f32(const T* p, std::size_t n, std::vector<float>& buf) {
  if constexpr (std::is_same_v<T, float>) {
    (void)n;
    (void)buf;
    return p;
  } else {
    buf.resize(n);
    convert(std::span<const T>(p, n), std::span<float>(buf.data(), n));  // bulk (F16C / AVX2 when built for it)
    return buf.data();
  }
}
/// Elements a row-major operand of `rows` × `cols` with leading dimension `ld` spans.
inline std::size_t extent(std::size_t rows, std::size_t cols, std::size_t ld) noexcept {
  return rows == 0 || cols == 0 ? 0 : (rows - 1) * ld + cols;
}
}  // namespace lowp_fallback_detail

/// C = alpha·op(A)·op(B) + beta·C with A, B in T (float, half or bfloat16), C in fp32.
template <class Backend = default_backend, class T>
void gemm(transpose ta, transpose tb, std::size_t m, std::size_t n, std::size_t k, float alpha, const T* a,
          std::size_t lda, const T* b, std::size_t ldb, float beta, float* c, std::size_t ldc) {
  using namespace lowp_fallback_detail;
  thread_local std::vector<float> fa, fb;
  const std::size_t ea = ta == transpose::no ? extent(m, k, lda) : extent(k, m, lda);
  const std::size_t eb = tb == transpose::no ? extent(k, n, ldb) : extent(n, k, ldb);
  gemm_f32(Backend{}, ta, tb, m, n, k, alpha, as_f32(a, ea, fa), lda, as_f32(b, eb, fb), ldb, beta, c, ldc);
}

/// Y = X·Wᵀ + bias with X in TX (float or T) and W in T; fp32 accumulation and output.
template <class Backend = default_backend, class TX, class T>
void dense(std::size_t m, std::size_t n, std::size_t k, const TX* x, const T* w, const float* bias, float* y) {
  using namespace lowp_fallback_detail;
  thread_local std::vector<float> fx, fw;
  dense_f32(Backend{}, m, n, k, as_f32(x, m * k, fx), as_f32(w, n * k, fw), bias, y);
}

}  // namespace tinylarge::kernels
