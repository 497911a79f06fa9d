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
/// nearest base that has an overload:
///
/// | tag            | gemm / gemm_f32 / dense / dense_f32 / dense_f16        | dense_s8 / dense_s8_s32        |
/// |----------------|--------------------------------------------------------|--------------------------------|
/// | `scalar`       | reference loops (this file)                            | reference loops (this file)    |
/// | `sse2`, `avx2`, `avx512`, `neon` | one xsimd source (`simd/f32.hpp`): packed GEMM, GEMV, pre-packed GEMV, zero skipping | `avx2`: 16-bit `vpmaddwd`; `neon`: `vmull_s8` (exact) |
/// | `avx512_vnni`  | (falls back to `avx512`)                               | packed GEMM, 6×64 `vpdpbusd`   |
/// | `avx512_bf16`  | `gemm<bfloat16>`, `dense<bfloat16, bfloat16>`: `vdpbf16ps` micro-kernel | (falls back to `avx512_vnni`) |
/// | `neon_dotprod` | (falls back to `neon`)                                 | SDOT                           |
/// | `dispatch`     | the tables of the CPU's best ISA (`dispatch.hpp`)      | the same                       |
///
/// Low precision: `gemm<T>` / `dense<TX, T>` take A, B, X, W stored as
/// `float`, `half` or `bfloat16` (any other type is a static_assert naming
/// it), form every product and sum in fp32 and write fp32; 16-bit operands
/// are widened exactly while packing (F16C, NEON `vcvt`, a shift for
/// bfloat16), or multiplied by `vdpbf16ps` on `avx512_bf16`.
///
/// Batch-1 inference has pre-packed forms (see `pack_dense_f32` /
/// `pack_dense_s8` below): fp32 on every xsimd back end, int8 on
/// `avx512_vnni`; elsewhere `dense_f32_packed_floats` /
/// `dense_s8_packed_bytes` are 0 and callers use the functions above.
///
/// The overloads without a tag use `kernels::default_backend` (`arch::best`,
/// the most capable back end the translation unit is compiled for; `scalar`
/// with `TINYLARGE_USE_XSIMD=0`; `dispatch`, chosen at run time, for a
/// baseline x86-64 build with `TINYLARGE_DISPATCH`). The SIMD back ends pack
/// operands into per-thread scratch buffers that are allocated once and
/// reused (`simd/scratch.hpp`); they are safe to call from several threads
/// at once.
///
/// Numerical contract of the SIMD back ends: fp32 results differ from the
/// exact value only by rounding in a different summation order (blocked,
/// vectorised, fused multiply-add), within the classical bound
/// |Δ| ≤ γ_k·(|alpha|·Σ_p |op(A)_ip|·|op(B)_pj| + |beta·C_ij|), γ_k ≈ k·2⁻²⁴;
/// the tests check every back end against a double-precision reference with
/// 2(k + 4)·2⁻²⁴ times that sum. int8 results are bit-exact with the scalar
/// back end (see `dense_s8_max_k` for the overflow bound). With alpha = 0 the
/// SIMD GEMMs do not read A and B (BLAS semantics), so NaN in A or B does not
/// reach C, whereas the scalar loop computes 0·NaN.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "../core/config.hpp"
#include <type_traits>

#include "../precision/bf16.hpp"
#include "../precision/fp16.hpp"
#include "../precision/int8.hpp"
#include "../precision/requantize.hpp"
#include "backend.hpp"

namespace tinylarge::kernels {

/// Whether a GEMM operand is read transposed.
enum class transpose : bool { no = false, yes = true };

#if !TINYLARGE_FREESTANDING
/// Zero skipping in the fp32 SIMD back ends (every xsimd one): a dense
/// forward pass (batch ≥ 2, with bias) whose X, or a weight-gradient product
/// dW += dYᵀ·X (`gemm_f32` with op(A) = Aᵀ, alpha = 1, beta = 1 or 0) whose X
/// has few enough nonzeros can skip the zero terms; in `automatic` mode each
/// back end skips only below the break-even measured for it (`f32_blocking`
/// in simd/f32.hpp: AVX-512 forward at ≤ 30 % nonzeros and never the weight
/// gradient, whose dense GEMM is faster there; AVX2 ≤ 70 % / ≤ 45 %). The
/// result is bit-identical
/// to the packed GEMM for finite W and dY (same nonzero terms, same order,
/// same FMAs and k blocks; see `simd/f32.hpp`). `never` / `always` force
/// one path on the calling thread (tests, benchmarks); other back ends
/// ignore it.
enum class zero_skip : unsigned char { automatic, never, always };
inline thread_local zero_skip zero_skip_mode = zero_skip::automatic;
#endif

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

/// Element types the float kernels read: `float`, `tinylarge::half` (IEEE
/// binary16) and `tinylarge::bfloat16`. Products are always formed and summed
/// in fp32 (every binary16 / bfloat16 value is exactly representable).
template <class T>
inline constexpr bool kernel_float =
    std::is_same_v<T, float> || std::is_same_v<T, half> || std::is_same_v<T, bfloat16>;

/// Exact widening of a kernel element to fp32.
TINYLARGE_ALWAYS_INLINE constexpr float to_float(float v) noexcept { return v; }
TINYLARGE_ALWAYS_INLINE constexpr float to_float(half v) noexcept { return half_to_float(v); }
TINYLARGE_ALWAYS_INLINE constexpr float to_float(bfloat16 v) noexcept { return bfloat16_to_float(v); }

/// C = alpha·op(A)·op(B) + beta·C, row-major; op(A) is m×k, op(B) is k×n, A
/// and B stored as T (`kernel_float`), products summed in fp32, C fp32.
/// When beta == 0, C is not read (it may hold NaN). The scalar reference.
template <class T>
void gemm(scalar, transpose ta, transpose tb, std::size_t m, std::size_t n, std::size_t k, float alpha,
          const T* a, std::size_t lda, const T* b, std::size_t ldb, float beta, float* c, std::size_t ldc) noexcept {
  static_assert(kernel_float<T>, "kernels::gemm<T>: T (the element type of A and B) must be float, "
                                 "tinylarge::half or tinylarge::bfloat16");
  for (std::size_t i = 0; i < m; ++i) {
    float* crow = c + i * ldc;
    if (beta == 0.0f) {
      for (std::size_t j = 0; j < n; ++j) crow[j] = 0.0f;
    } else if (beta != 1.0f) {
      for (std::size_t j = 0; j < n; ++j) crow[j] *= beta;
    }
    for (std::size_t p = 0; p < k; ++p) {
      const float aip = alpha * to_float(ta == transpose::no ? a[i * lda + p] : a[p * lda + i]);
      if (tb == transpose::no) {
        const T* brow = b + p * ldb;
        for (std::size_t j = 0; j < n; ++j) crow[j] += aip * to_float(brow[j]);
      } else {
        for (std::size_t j = 0; j < n; ++j) crow[j] += aip * to_float(b[j * ldb + p]);
      }
    }
  }
}

/// Y (m×n, fp32) = X·Wᵀ + bias (bias may be null); X is m×k stored as TX,
/// W is n×k stored as T (both `kernel_float`), fp32 accumulation. The scalar
/// reference.
template <class TX, class T>
void dense(scalar, std::size_t m, std::size_t n, std::size_t k, const TX* x, const T* w, const float* bias,
           float* y) noexcept {
  static_assert(kernel_float<TX>, "kernels::dense<TX, T>: TX (the element type of X) must be float, "
                                  "tinylarge::half or tinylarge::bfloat16");
  static_assert(kernel_float<T>, "kernels::dense<TX, T>: T (the element type of W) must be float, "
                                 "tinylarge::half or tinylarge::bfloat16");
  for (std::size_t i = 0; i < m; ++i) {
    const TX* xr = x + i * k;
    for (std::size_t o = 0; o < n; ++o) {
      const T* wr = w + o * k;
      float acc = 0.0f;
      for (std::size_t p = 0; p < k; ++p) acc += to_float(xr[p]) * to_float(wr[p]);
      y[i * n + o] = acc + (bias ? bias[o] : 0.0f);
    }
  }
}

/// `gemm<float>` (scalar back end).
inline void gemm_f32(scalar, transpose ta, transpose tb, std::size_t m, std::size_t n, std::size_t k,
                     float alpha, const float* a, std::size_t lda, const float* b, std::size_t ldb, float beta,
                     float* c, std::size_t ldc) noexcept {
  gemm(scalar{}, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

/// Y = X·Wᵀ + bias (bias may be null): `dense<float, float>` (scalar back end).
inline void dense_f32(scalar, std::size_t m, std::size_t n, std::size_t k, const float* x, const float* w,
                      const float* bias, float* y) noexcept {
  dense(scalar{}, m, n, k, x, w, bias, y);
}

/// Y = X·Wᵀ + bias with W stored as IEEE binary16, accumulated in fp32:
/// `dense<float, half>` (scalar back end).
inline void dense_f16(scalar, std::size_t m, std::size_t n, std::size_t k, const float* x, const half* w,
                      const float* bias, float* y) noexcept {
  dense(scalar{}, m, n, k, x, w, bias, y);
}

/// Largest k for which the int8 kernels are exact for every input: with
/// x, w ∈ [−128, 127] and input_zero_point ∈ [−128, 127], |x − zx| ≤ 255 and
/// |w| ≤ 128, so |Σ_q (x − zx)·w| ≤ k·32640; for k ≤ 2¹⁶ that is
/// ≤ 2 139 095 040 = 2³¹ − 2²³, which leaves room for any |bias| < 2²³. Within this bound the accumulator never overflows int32 on
/// any back end (the SIMD back ends wrap modulo 2³² internally, which is exact
/// whenever the final value fits).
inline constexpr std::size_t dense_s8_max_k = std::size_t{1} << 16;

/// int8 dense without requantization: the int32 accumulators
/// acc[i][o] = bias[o] + Σ_q (x[i][q] − input_zero_point)·w[o][q]
/// (only `input_zero_point` and `bias` of `p` are used). Row-major, acc is m×n.
/// Exact while k ≤ `dense_s8_max_k` and |bias| < 2²³.
inline void dense_s8_s32(scalar, std::size_t m, std::size_t n, std::size_t k, const std::int8_t* x,
                         const std::int8_t* w, const dense_s8_params& p, std::int32_t* acc) noexcept {
  for (std::size_t i = 0; i < m; ++i) {
    const std::int8_t* xr = x + i * k;
    for (std::size_t o = 0; o < n; ++o) {
      const std::int8_t* wr = w + o * k;
      std::int32_t a = p.bias ? p.bias[o] : 0;
      for (std::size_t q = 0; q < k; ++q)
        a += (static_cast<std::int32_t>(xr[q]) - p.input_zero_point) * static_cast<std::int32_t>(wr[q]);
      acc[i * n + o] = a;
    }
  }
}

/// int8 dense: y[i][o] = clamp(zy + M[o]·(bias[o] + Σ_q (x[i][q] − zx)·w[o][q]),
/// act_min, act_max), int32 accumulation, fused requantize (`requantize_s8`)
/// and clamp. Bit-exact reference for every back end; exact (no int32
/// overflow) while k ≤ `dense_s8_max_k` and |bias| < 2²³.
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

/// q[i] = tl::quantize(x[i], p, range) for i < n: the quantization of an fp32
/// input vector (round half away from zero, NaN → zero point, saturating).
/// SIMD back ends overload it bit-exactly (same IEEE division, same rounding).
inline void quantize_s8(scalar, const float* x, std::size_t n, quant_params p, quant_range range,
                        std::int8_t* q) noexcept {
  for (std::size_t i = 0; i < n; ++i) q[i] = quantize(x[i], p, range);
}

// ---------------------------------------------------------------------------
// Pre-packed batch-1 int8 dense (the inference GEMV)
//
// A back end that has a faster batch-1 layout for W overloads three functions:
//  - `dense_s8_packed_bytes(B{}, n, k)`: constexpr bytes of the packed form
//    (the scalar overload below returns 0: "no packed form, call dense_s8");
//  - `pack_dense_s8(B{}, n, k, w, p, dst)`: lay out W (n×k) once, with what
//    the kernel needs of `p` (input zero point, bias, shifts) folded in;
//  - `dense_s8_packed(B{}, n, k, x, packed, p, y)`: y = dense_s8(1, n, k, x,
//    W, p), bit-exact, reading only `packed` for W, bias and zero point.
// `dst` / `packed` must be 64-byte aligned. Callers (quantized_network)
// re-pack whenever W, the bias, the input zero point or the shifts change.
// ---------------------------------------------------------------------------

/// Bytes of the packed batch-1 form of an n×k int8 weight matrix; 0 when the
/// back end has none (the scalar back end, hence Cortex-M and NEON).
constexpr std::size_t dense_s8_packed_bytes(scalar, std::size_t, std::size_t) noexcept { return 0; }
/// Deleted for back ends without a packed layout (so that `requires` tests
/// and a wrong call both see "no packed form" instead of a missing name).
void pack_dense_s8(scalar, std::size_t, std::size_t, const std::int8_t*, const dense_s8_params&,
                   std::int8_t*) noexcept = delete;
void dense_s8_packed(scalar, std::size_t, std::size_t, const std::int8_t*, const std::int8_t*,
                     const dense_s8_params&, std::int8_t*) noexcept = delete;

/// Pre-packed int8 GEMM (any batch size), same scheme: `dense_s8_gemm_packed_bytes`
/// (0: none, call `dense_s8` / `dense_s8_s32`), `pack_dense_s8_gemm` (W, bias and
/// input zero point, once), then `dense_s8_gemm_packed` (requantized int8 out)
/// or `dense_s8_s32_gemm_packed` (int32 out); on `avx512_vnni`.
constexpr std::size_t dense_s8_gemm_packed_bytes(scalar, std::size_t, std::size_t) noexcept { return 0; }
void pack_dense_s8_gemm(scalar, std::size_t, std::size_t, const std::int8_t*, const dense_s8_params&,
                        std::int8_t*) noexcept = delete;
void dense_s8_gemm_packed(scalar, std::size_t, std::size_t, std::size_t, const std::int8_t*, const std::int8_t*,
                          const dense_s8_params&, std::int8_t*) noexcept = delete;
void dense_s8_s32_gemm_packed(scalar, std::size_t, std::size_t, std::size_t, const std::int8_t*,
                              const std::int8_t*, std::int32_t*) noexcept = delete;

/// Floats of the packed batch-1 form of an n×k fp32 weight matrix with its
/// bias (`pack_dense_f32` / `dense_f32_packed`, same scheme as the int8
/// functions above); 0 when the back end has none (call `dense_f32`).
constexpr std::size_t dense_f32_packed_floats(scalar, std::size_t, std::size_t) noexcept { return 0; }
void pack_dense_f32(scalar, std::size_t, std::size_t, const float*, const float*, float*) noexcept = delete;
void dense_f32_packed(scalar, std::size_t, std::size_t, const float*, const float*, fused_activation,
                      float*) noexcept = delete;

}  // namespace tinylarge::kernels

// ---------------------------------------------------------------------------
// SIMD back ends (host profile with xsimd only; each section is guarded by
// the feature macros of its instruction set, so this compiles on any target).
// ---------------------------------------------------------------------------
#define TINYLARGE_KERNELS_DENSE_SCALAR_DECLARED 1
#if TINYLARGE_USE_XSIMD
#include "simd/f32.hpp"
#include "simd/avx512_bf16.hpp"
#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__)
#include "simd/x86_s8.hpp"
#endif
#if defined(__ARM_NEON) || defined(__ARM_NEON__)
#include "simd/neon_s8.hpp"
#endif
#endif
#if TINYLARGE_USE_XSIMD && defined(TINYLARGE_DISPATCH) && (defined(__x86_64__) || defined(_M_X64))
#include "dispatch.hpp"
#endif

namespace tinylarge::kernels {

// ---------------------------------------------------------------------------
// Convenience overloads: the back end is `kernels::default_backend`.
//
// They are templates on the back end (defaulted) so that translation units
// compiled with different target flags (hence different `default_backend`s)
// instantiate differently named functions instead of violating the ODR.
// ---------------------------------------------------------------------------

/// `gemm_f32(Backend{}, …)`, by default on `default_backend`.
template <class Backend = default_backend>
inline void gemm_f32(transpose ta, transpose tb, std::size_t m, std::size_t n, std::size_t k, float alpha,
                     const float* a, std::size_t lda, const float* b, std::size_t ldb, float beta, float* c,
                     std::size_t ldc) noexcept {
  gemm_f32(Backend{}, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}
/// `dense_f32(Backend{}, …)`, by default on `default_backend`.
template <class Backend = default_backend>
inline void dense_f32(std::size_t m, std::size_t n, std::size_t k, const float* x, const float* w,
                      const float* bias, float* y) noexcept {
  dense_f32(Backend{}, m, n, k, x, w, bias, y);
}
/// `dense_f16(Backend{}, …)`, by default on `default_backend`.
template <class Backend = default_backend>
inline void dense_f16(std::size_t m, std::size_t n, std::size_t k, const float* x, const half* w,
                      const float* bias, float* y) noexcept {
  dense_f16(Backend{}, m, n, k, x, w, bias, y);
}
/// C = alpha·op(A)·op(B) + beta·C, row-major, A and B stored as T (float,
/// `half` or `bfloat16`), products summed in fp32, C fp32; by default on
/// `default_backend`. Any other T is a compile error naming T.
template <class Backend = default_backend, class T>
inline void gemm(transpose ta, transpose tb, std::size_t m, std::size_t n, std::size_t k, float alpha, const T* a,
                 std::size_t lda, const T* b, std::size_t ldb, float beta, float* c, std::size_t ldc) noexcept {
  static_assert(kernel_float<T>, "kernels::gemm<T>: T (the element type of A and B) must be float, "
                                 "tinylarge::half or tinylarge::bfloat16");
  if constexpr (kernel_float<T>) gemm(Backend{}, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}
/// Y (m×n, fp32) = X·Wᵀ + bias; X is m×k stored as TX (float or T), W is n×k
/// stored as T (float, `half` or `bfloat16`), fp32 accumulation; by default
/// on `default_backend`. Any other TX / T is a compile error naming it.
template <class Backend = default_backend, class TX, class T>
inline void dense(std::size_t m, std::size_t n, std::size_t k, const TX* x, const T* w, const float* bias,
                  float* y) noexcept {
  static_assert(kernel_float<TX>, "kernels::dense<TX, T>: TX (the element type of X) must be float, "
                                  "tinylarge::half or tinylarge::bfloat16");
  static_assert(kernel_float<T>, "kernels::dense<TX, T>: T (the element type of W) must be float, "
                                 "tinylarge::half or tinylarge::bfloat16");
  if constexpr (kernel_float<TX> && kernel_float<T>) dense(Backend{}, m, n, k, x, w, bias, y);
}
/// `dense_s8(Backend{}, …)`, by default on `default_backend`.
template <class Backend = default_backend>
inline void dense_s8(std::size_t m, std::size_t n, std::size_t k, const std::int8_t* x, const std::int8_t* w,
                     const dense_s8_params& p, std::int8_t* y) noexcept {
  dense_s8(Backend{}, m, n, k, x, w, p, y);
}
/// `dense_s8_s32(Backend{}, …)`, by default on `default_backend`.
template <class Backend = default_backend>
inline void dense_s8_s32(std::size_t m, std::size_t n, std::size_t k, const std::int8_t* x, const std::int8_t* w,
                         const dense_s8_params& p, std::int32_t* acc) noexcept {
  dense_s8_s32(Backend{}, m, n, k, x, w, p, acc);
}

}  // namespace tinylarge::kernels
