/// @file kernels/elementwise.hpp
/// @brief Streaming elementwise kernels: axpy, scale, the weighted
///        accumulation of the aggregation rules, dot products and squared
///        norms, ReLU-family activations and their gradients, and the SGD /
///        Adam parameter updates; and `add_s8`, the int8 elementwise add of
///        TFLite / CMSIS-NN (residual blocks of `quantized_network`).
///
/// Every function takes the back end tag first, like `kernels::dense_f32`.
/// The overloads in this file are the `scalar` back end: templated on the
/// floating-point type, no heap, no exceptions, so they serve the
/// freestanding profile too. With `TINYLARGE_USE_XSIMD` the fp32 overloads of
/// every xsimd back end (`simd/elementwise.hpp`) are written once over
/// `xsimd::batch<float, A>`; a tag that has none (`cortex_m_dsp`) falls back
/// to `scalar` by inheritance (except `add_s8`, which has overloads for
/// `cortex_m_dsp` and `cortex_m_mve`). `arch::dispatch` runs the `sse2` overloads:
/// these loops are bound by memory bandwidth, not by vector width, so they
/// are not worth an indirect call.
///
/// Numerics. The elementwise kernels (everything except the reductions)
/// evaluate each element with the same operations in the same order as the
/// scalar loop, with separate multiply and add in the vector code. So a
/// vector back end gives the scalar result bit for bit when the compiler does
/// not contract the scalar loop into FMAs (g++ in ISO C++ mode does not;
/// clang++ 14 does by default, `-ffp-contract=on`), else they differ by one
/// rounding per contracted multiply-add. Kernels with no multiply-add (ReLU,
/// ReLU6 and their gradients, `scale`) are always bit-exact (tested).
/// The reductions (`dot`, `squared_norm`, `squared_distance`) sum in fp32
/// lanes and then across lanes, so they differ from the sequential sum by
/// reassociation only: at most about (n + lanes)·2⁻²⁴ times Σ|terms|
/// (Higham, "Accuracy and Stability of Numerical Algorithms", §4.2). Callers
/// that need more keep n small (the aggregation sums ≤ 4 KiB chunks) and add
/// the chunk results in double.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>

#include "../core/config.hpp"
#include "dense.hpp"
#include "mve.hpp"
#include "requantize_s8.hpp"

namespace tinylarge::kernels {

/// y[i] += a · x[i].
template <class T>
void axpy(scalar, std::size_t n, T a, const T* TINYLARGE_RESTRICT x, T* TINYLARGE_RESTRICT y) noexcept {
  for (std::size_t i = 0; i < n; ++i) y[i] += a * x[i];
}

/// x[i] *= a.
template <class T>
void scale(scalar, std::size_t n, T a, T* x) noexcept {
  for (std::size_t i = 0; i < n; ++i) x[i] *= a;
}

/// The weighted accumulation of G inputs (G = 1 or 4), the inner loop of
/// FedAvg and every linear aggregation rule:
///   s = c[0]·(x[0][j] − r[j]) + … + c[G−1]·(x[G−1][j] − r[j])  (left to right),
///   a[j] = s (First) or a[j] += s.
/// Without `WithRef` the subtraction is skipped (r may be null).
/// a must not alias an input.
template <std::size_t G, bool First, bool WithRef, class T>
void weighted_accumulate(scalar, std::size_t n, const T* const* x, const T* c, const T* TINYLARGE_RESTRICT r,
                         T* TINYLARGE_RESTRICT a) noexcept {
  static_assert(G == 1 || G == 4, "kernels::weighted_accumulate: G must be 1 or 4");
  // Written out per G so that the pointers are distinct restrict locals and the loop vectorises.
  if constexpr (G == 4) {
    const T* TINYLARGE_RESTRICT x0 = x[0];
    const T* TINYLARGE_RESTRICT x1 = x[1];
    const T* TINYLARGE_RESTRICT x2 = x[2];
    const T* TINYLARGE_RESTRICT x3 = x[3];
    const T c0 = c[0], c1 = c[1], c2 = c[2], c3 = c[3];
    for (std::size_t j = 0; j < n; ++j) {
      T s;
      if constexpr (WithRef) {
        s = c0 * (x0[j] - r[j]) + c1 * (x1[j] - r[j]) + c2 * (x2[j] - r[j]) + c3 * (x3[j] - r[j]);
      } else {
        s = c0 * x0[j] + c1 * x1[j] + c2 * x2[j] + c3 * x3[j];
      }
      if constexpr (First) {
        a[j] = s;
      } else {
        a[j] += s;
      }
    }
  } else {
    const T* TINYLARGE_RESTRICT x0 = x[0];
    const T c0 = c[0];
    for (std::size_t j = 0; j < n; ++j) {
      T s;
      if constexpr (WithRef) {
        s = c0 * (x0[j] - r[j]);
      } else {
        s = c0 * x0[j];
      }
      if constexpr (First) {
        a[j] = s;
      } else {
        a[j] += s;
      }
    }
  }
}

/// Σ x[i]·y[i], summed in T.
template <class T>
T dot(scalar, std::size_t n, const T* x, const T* y) noexcept {
  T s = T(0);
  for (std::size_t i = 0; i < n; ++i) s += x[i] * y[i];
  return s;
}

/// Σ x[i]², summed in T.
template <class T>
T squared_norm(scalar, std::size_t n, const T* x) noexcept {
  T s = T(0);
  for (std::size_t i = 0; i < n; ++i) s += x[i] * x[i];
  return s;
}

/// Σ (x[i] − r[i])², summed in T.
template <class T>
T squared_distance(scalar, std::size_t n, const T* x, const T* r) noexcept {
  T s = T(0);
  for (std::size_t i = 0; i < n; ++i) {
    const T d = x[i] - r[i];
    s += d * d;
  }
  return s;
}

/// Whether any x[i] is NaN or ±Inf.
template <class T>
bool any_non_finite(scalar, std::size_t n, const T* x) noexcept {
  unsigned bad = 0;  // integer OR reduction: vectorises without -ffast-math
  for (std::size_t i = 0; i < n; ++i) bad |= (std::fabs(x[i]) <= std::numeric_limits<T>::max()) ? 0u : 1u;
  return bad != 0;
}

/// y[i] = max(x[i], 0) (NaN → 0; x and y may be the same array).
template <class T>
void relu(scalar, std::size_t n, const T* x, T* y) noexcept {
  for (std::size_t i = 0; i < n; ++i) y[i] = x[i] > T(0) ? x[i] : T(0);
}
/// dx[i] = dy[i] · (y[i] > 0 ? 1 : 0), y the ReLU output.
template <class T>
void relu_backward(scalar, std::size_t n, const T* y, const T* dy, T* dx) noexcept {
  for (std::size_t i = 0; i < n; ++i) dx[i] = dy[i] * (y[i] > T(0) ? T(1) : T(0));
}
/// y[i] = min(max(x[i], 0), 6) (NaN → 0).
template <class T>
void relu6(scalar, std::size_t n, const T* x, T* y) noexcept {
  for (std::size_t i = 0; i < n; ++i) y[i] = x[i] > T(0) ? (x[i] < T(6) ? x[i] : T(6)) : T(0);
}
/// dx[i] = dy[i] · (0 < y[i] < 6 ? 1 : 0), y the ReLU6 output.
template <class T>
void relu6_backward(scalar, std::size_t n, const T* y, const T* dy, T* dx) noexcept {
  for (std::size_t i = 0; i < n; ++i) dx[i] = dy[i] * ((y[i] > T(0) && y[i] < T(6)) ? T(1) : T(0));
}
/// dx[i] = dy[i] · (y[i]·(1 − y[i])), y the sigmoid output.
template <class T>
void sigmoid_backward(scalar, std::size_t n, const T* y, const T* dy, T* dx) noexcept {
  for (std::size_t i = 0; i < n; ++i) dx[i] = dy[i] * (y[i] * (T(1) - y[i]));
}
/// dx[i] = dy[i] · (1 − y[i]²), y the tanh output.
template <class T>
void tanh_backward(scalar, std::size_t n, const T* y, const T* dy, T* dx) noexcept {
  for (std::size_t i = 0; i < n; ++i) dx[i] = dy[i] * (T(1) - y[i] * y[i]);
}

/// The constants of one int8 elementwise add (TFLite's ADD, CMSIS-NN's
/// `arm_elementwise_add_s8`): offsets (the negated zero points of the inputs,
/// the zero point of the output), one (multiplier, shift) per input and one for
/// the output, and the output clamp. Host code fills them from the three scales
/// (`nn::residual_add_params`): with s = 2·max(s₁, s₂), input k gets sₖ/s (≤ ½,
/// shift ≤ 0) and the output s/(2^20·s_y).
struct add_s8_params {
  static constexpr int left_shift = 20;  ///< TFLite's headroom for 8-bit inputs
  std::int32_t input1_offset = 0, input2_offset = 0, output_offset = 0;
  std::int32_t input1_multiplier = 0, input2_multiplier = 0, output_multiplier = 0;
  int input1_shift = 0, input2_shift = 0, output_shift = 0;
  std::int32_t act_min = -128, act_max = 127;
};

/// y[i] = clamp(zy + MBQM(MBQM((x1[i] + o1)·2^20, M1, e1) + MBQM((x2[i] + o2)·2^20, M2, e2), My, ey), lo, hi),
/// MBQM being MultiplyByQuantizedMultiplier (`scale_s32`: doubling high multiply with
/// rounding, then a rounding divide by a power of two). Integer only, no heap, no
/// exceptions. y may be x1 or x2 (each output reads only its own inputs).
inline void add_s8(scalar, std::size_t n, const std::int8_t* x1, const std::int8_t* x2, const add_s8_params& p,
                   std::int8_t* y) noexcept {
  const auto channel = [](std::int32_t m, int shift) noexcept {
    requant_channel q;
    q.multiplier = m;
    q.left = shift > 0 ? shift : 0;
    q.right = shift > 0 ? 0 : -shift;
    return q;
  };
  const requant_channel q1 = channel(p.input1_multiplier, p.input1_shift);
  const requant_channel q2 = channel(p.input2_multiplier, p.input2_shift);
  requant_channel qy = channel(p.output_multiplier, p.output_shift);
  qy.zero_point = p.output_offset;
  qy.lo = p.act_min;
  qy.hi = p.act_max;
  for (std::size_t i = 0; i < n; ++i) {
    // |x + offset| ≤ 255, so the shifted values stay below 2^28 and their scaled sum below 2^28.
    const std::int32_t a = (static_cast<std::int32_t>(x1[i]) + p.input1_offset) * (1 << add_s8_params::left_shift);
    const std::int32_t b = (static_cast<std::int32_t>(x2[i]) + p.input2_offset) * (1 << add_s8_params::left_shift);
    y[i] = requantize_s8_32(scale_s32(a, q1) + scale_s32(b, q2), qy);
  }
}

#if defined(__ARM_FEATURE_DSP) && !defined(__ARM_NEON)
/// int8 add on the Cortex-M4 / M7 DSP extension (`arch::cortex_m_dsp`): the same function as
/// the scalar kernel with one SMMULR per rescale instead of a 64-bit multiply and a 64-bit
/// rounding. Exact because every value rescaled here is below 2^28 in magnitude (the inputs
/// plus offsets, shifted by 20; their rescaled sum): for |a| < 2^28, TFLite's
/// SaturatingRoundingDoublingHighMul(a, m) = ⌊(a·m + 2^30)/2^31⌋ = ⌊(2a·m + 2^31)/2^32⌋ =
/// SMMULR(2a, m), with no saturation case; the rounding right shift (ties away from zero) is
/// (x + 2^(r−1) − [x < 0]) >> r for r > 0, computed on 2x for every r ≥ 0. A multiplier ≥ 1
/// (a left shift, which could leave that range) or a right shift above 30 sends the whole call
/// to the scalar kernel. Bit-identical to `add_s8(scalar, …)`
/// (tests/mcu/mac_count_edges.cpp on the device); y may be x1 or x2.
inline void add_s8(arch::cortex_m_dsp, std::size_t n, const std::int8_t* x1, const std::int8_t* x2,
                   const add_s8_params& p, std::int8_t* y) noexcept {
  const auto in_range = [](int shift) noexcept { return shift <= 0 && shift >= -30; };
  if (!in_range(p.input1_shift) || !in_range(p.input2_shift) || !in_range(p.output_shift)) {
    add_s8(arch::scalar{}, n, x1, x2, p, y);
    return;
  }
  // Rounding right shift by r with ties away from zero, h < 2^28 in magnitude, computed on 2h:
  // (2h + 2^r + [h < 0 ? −1 : 0]) >> (r + 1) — equal to (h + 2^(r−1) − [h < 0]) >> r for r > 0
  // and to h for r = 0, so one form serves both (three instructions on the M4).
  struct rescale {
    std::int32_t m, half;  // multiplier; 2^r
    int r1;                // r + 1
    TINYLARGE_ALWAYS_INLINE std::int32_t operator()(std::int32_t twice) const noexcept {
      std::int32_t h;
      __asm__("smmulr %0, %1, %2" : "=r"(h) : "r"(twice), "r"(m));
      return (h * 2 + half + (h >> 31)) >> r1;
    }
  };
  const auto make = [](std::int32_t m, int shift) noexcept {
    return rescale{m, std::int32_t{1} << -shift, 1 - shift};
  };
  // Locals, not reads through `p`: the int8 stores may alias anything.
  const rescale s1 = make(p.input1_multiplier, p.input1_shift), s2 = make(p.input2_multiplier, p.input2_shift);
  const rescale sy = make(p.output_multiplier, p.output_shift);
  constexpr std::int32_t doubled = std::int32_t{1} << (add_s8_params::left_shift + 1);  // (x + o)·2^20, doubled
  std::int32_t o1 = p.input1_offset * doubled, o2 = p.input2_offset * doubled;  // for SMMULR
  __asm__("" : "+r"(o1), "+r"(o2));  // opaque: else GCC refactors x·2^21 + o·2^21 into (x + o)·2^21
  const std::int32_t zy = p.output_offset, lo = p.act_min, hi = p.act_max;
  for (std::size_t i = 0; i < n; ++i) {
    const std::int32_t a = static_cast<std::int32_t>(x1[i]) * doubled + o1;  // one ADD with a shifted operand
    const std::int32_t b = static_cast<std::int32_t>(x2[i]) * doubled + o2;
    std::int32_t v = sy((s1(a) + s2(b)) * 2) + zy;
    v = v < lo ? lo : v;
    y[i] = static_cast<std::int8_t>(v > hi ? hi : v);
  }
}
#endif

#if defined(__ARM_FEATURE_MVE) && (__ARM_FEATURE_MVE & 1)
/// int8 add with Helium (`arch::cortex_m_mve`): four elements per vector in int32 lanes
/// (VLDRB.S32), the offsets and the 2^20 headroom as in the scalar kernel, each input and the
/// sum scaled by `scale_s32x4` (mve.hpp), the zero point and the clamp; the last n mod 4
/// elements tail-predicated (VCTP32). Bit-identical to `add_s8(scalar, …)`; y may be x1 or x2.
inline void add_s8(arch::cortex_m_mve, std::size_t n, const std::int8_t* x1, const std::int8_t* x2,
                   const add_s8_params& p, std::int8_t* y) noexcept {
  const int32x4_t zero = vdupq_n_s32(0);
  const auto left = [&](int shift) noexcept { return vmaxq_s32(vdupq_n_s32(shift), zero); };
  const auto neg_right = [&](int shift) noexcept { return vminq_s32(vdupq_n_s32(shift), zero); };
  const int32x4_t o1 = vdupq_n_s32(p.input1_offset), o2 = vdupq_n_s32(p.input2_offset);
  const int32x4_t m1 = vdupq_n_s32(p.input1_multiplier), l1 = left(p.input1_shift), r1 = neg_right(p.input1_shift);
  const int32x4_t m2 = vdupq_n_s32(p.input2_multiplier), l2 = left(p.input2_shift), r2 = neg_right(p.input2_shift);
  const int32x4_t my = vdupq_n_s32(p.output_multiplier), ly = left(p.output_shift), ry = neg_right(p.output_shift);
  const int32x4_t zy = vdupq_n_s32(p.output_offset), lo = vdupq_n_s32(p.act_min), hi = vdupq_n_s32(p.act_max);
  const auto four = [&](int32x4_t a, int32x4_t b) noexcept {
    // |x + offset| ≤ 255: the shifted values stay below 2^28, as in the scalar kernel.
    a = vshlq_n_s32(vaddq_s32(a, o1), add_s8_params::left_shift);
    b = vshlq_n_s32(vaddq_s32(b, o2), add_s8_params::left_shift);
    const int32x4_t sum = vaddq_s32(scale_s32x4(a, l1, m1, r1), scale_s32x4(b, l2, m2, r2));
    return vminq_s32(vmaxq_s32(vaddq_s32(scale_s32x4(sum, ly, my, ry), zy), lo), hi);
  };
  std::size_t i = 0;
  for (; i + 4 <= n; i += 4) vstrbq_s32(y + i, four(vldrbq_s32(x1 + i), vldrbq_s32(x2 + i)));
  if (i < n) {
    const mve_pred16_t pr = vctp32q(static_cast<std::uint32_t>(n - i));
    vstrbq_p_s32(y + i, four(vldrbq_z_s32(x1 + i, pr), vldrbq_z_s32(x2 + i, pr)), pr);
  }
}
#endif

/// Hyperparameters of one SGD step (`sgd_step`).
template <class T>
struct sgd_params {
  T learning_rate;  ///< η
  T momentum;       ///< μ (ignored when there is no velocity buffer)
  T weight_decay;   ///< λ
  bool nesterov;
};

/// One SGD step, PyTorch's formulation: g = ∇ + λ·w; with a velocity buffer
/// v (may be null: plain SGD) v ← μ·v + g and g ← g + μ·v (Nesterov) or v;
/// then w ← w − η·g.
template <class T>
void sgd_step(scalar, std::size_t n, const sgd_params<T>& p, T* TINYLARGE_RESTRICT w,
              const T* TINYLARGE_RESTRICT grad, T* TINYLARGE_RESTRICT v) noexcept {
  for (std::size_t i = 0; i < n; ++i) {
    T g = grad[i] + p.weight_decay * w[i];
    if (v != nullptr) {
      v[i] = p.momentum * v[i] + g;
      g = p.nesterov ? g + p.momentum * v[i] : v[i];
    }
    w[i] -= p.learning_rate * g;
  }
}

/// W (m×n, row stride ldw) ← W − η·(Aᵀ·B), with A (k×m, row stride lda) and
/// B (k×n, row stride ldb): the plain SGD step (μ = λ = 0) on a dense layer's
/// weight gradient dYᵀ·X (A = dY, B = X), bit for bit
/// `gemm_f32(transpose::yes, transpose::no, m, n, k, 1, a, lda, b, ldb, 0, g, n)`
/// followed by `sgd_step(n, {η, 0, 0, false}, w + r·ldw, g + r·n, nullptr)`
/// for every row r, on the same back end. That is what this overload does;
/// the SIMD back ends fuse the update into the GEMM's epilogue when k fits
/// one k block, so that the gradient never goes to memory
/// (`nn::network::backward_sgd`).
/// @param g workspace of m×n floats; unspecified afterwards
inline void sgd_gemm_tn_f32(scalar, std::size_t m, std::size_t n, std::size_t k, float lr, const float* a,
                            std::size_t lda, const float* b, std::size_t ldb, float* w, std::size_t ldw,
                            float* g) noexcept {
  gemm_f32(scalar{}, transpose::yes, transpose::no, m, n, k, 1.0f, a, lda, b, ldb, 0.0f, g, n);
  const sgd_params<float> p{lr, 0.0f, 0.0f, false};
  for (std::size_t r = 0; r < m; ++r) sgd_step(scalar{}, n, p, w + r * ldw, g + r * n, static_cast<float*>(nullptr));
}

/// Hyperparameters of one Adam step (`adam_step`), the bias corrections
/// folded in by the caller (Kingma & Ba, §2, last paragraph).
template <class T>
struct adam_params {
  T step_size;     ///< η·√(1 − β₂ᵗ)/(1 − β₁ᵗ)
  T epsilon;       ///< ε·√(1 − β₂ᵗ)
  T beta1;         ///< β₁
  T beta2;         ///< β₂
  T weight_decay;  ///< λ
};

/// One Adam step: g = ∇ + λ·w, m ← β₁m + (1−β₁)g, v ← β₂v + (1−β₂)g²,
/// w ← w − step_size·m / (√v + epsilon).
template <class T>
void adam_step(scalar, std::size_t n, const adam_params<T>& p, T* TINYLARGE_RESTRICT w,
               const T* TINYLARGE_RESTRICT grad, T* TINYLARGE_RESTRICT m, T* TINYLARGE_RESTRICT v) noexcept {
  for (std::size_t i = 0; i < n; ++i) {
    const T g = grad[i] + p.weight_decay * w[i];
    m[i] = p.beta1 * m[i] + (T(1) - p.beta1) * g;
    v[i] = p.beta2 * v[i] + (T(1) - p.beta2) * g * g;
    w[i] -= p.step_size * m[i] / (std::sqrt(v[i]) + p.epsilon);
  }
}

}  // namespace tinylarge::kernels

#define TINYLARGE_KERNELS_ELEMENTWISE_SCALAR_DECLARED 1
#if TINYLARGE_USE_XSIMD
#include "simd/elementwise.hpp"
#endif
