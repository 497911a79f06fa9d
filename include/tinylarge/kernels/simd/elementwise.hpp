/// @file kernels/simd/elementwise.hpp
/// @brief The fp32 streaming elementwise kernels of every xsimd back end,
///        written once over `xsimd::batch<float, A>` (internal: include
///        `kernels/elementwise.hpp`, whose scalar overloads define the
///        contract of each function).
///
/// Each loop runs full batches with unaligned loads and stores, then hands
/// the tail (fewer than `lanes` elements) to the scalar overload, so the
/// tail is computed exactly as the reference does. The elementwise kernels
/// use separate multiply and add, in the scalar loop's order; the reductions
/// keep two vector accumulators (sum over lanes at the end), which is the
/// only difference from the scalar result (see kernels/elementwise.hpp).
#pragma once

#if !defined(TINYLARGE_KERNELS_ELEMENTWISE_SCALAR_DECLARED)
#error "internal header: include <tinylarge/kernels/elementwise.hpp> instead"
#endif

#include <xsimd/xsimd.hpp>

#include <cstddef>
#include <limits>
#include <type_traits>

namespace tinylarge::kernels {

namespace detail {
/// The fp32 batch of back end B.
template <class B>
using ew_batch = xsimd::batch<float, xsimd_arch_t<B>>;

/// Σ over i < n of term(i) (a batch of terms at i, full batches only) plus
/// tail(i) for the remaining elements from i; two accumulators.
template <class V, class Term, class Tail>
TINYLARGE_ALWAYS_INLINE float sum_terms(std::size_t n, Term term, Tail tail) noexcept {
  constexpr std::size_t L = V::size;
  V s0(0.0f), s1(0.0f);
  std::size_t i = 0;
  for (; i + 2 * L <= n; i += 2 * L) {
    s0 += term(i);
    s1 += term(i + L);
  }
  if (i + L <= n) {
    s0 += term(i);
    i += L;
  }
  return xsimd::hadd(s0 + s1) + tail(i);
}

/// √v, exact (IEEE), by overload on the xsimd architecture.
template <class A>
TINYLARGE_ALWAYS_INLINE xsimd::batch<float, A> sqrt_exact(xsimd::batch<float, A> v, xsimd::generic) noexcept {
  return xsimd::sqrt(v);
}
#if XSIMD_WITH_AVX512F
/// AVX-512: the zero-masked form, same result; xsimd's `_mm512_sqrt_ps`
/// trips GCC 12's -Wmaybe-uninitialized on `_mm512_undefined_ps` (PR 105593).
template <class A>
TINYLARGE_ALWAYS_INLINE xsimd::batch<float, A> sqrt_exact(xsimd::batch<float, A> v, xsimd::avx512f) noexcept {
  return _mm512_maskz_sqrt_ps(static_cast<__mmask16>(0xFFFF), v);
}
#endif
}  // namespace detail

/// y[i] += a · x[i] (xsimd back end).
template <xsimd_backend B>
void axpy(B, std::size_t n, float a, const float* TINYLARGE_RESTRICT x, float* TINYLARGE_RESTRICT y) noexcept {
  using V = detail::ew_batch<B>;
  const V av(a);
  std::size_t i = 0;
  for (; i + V::size <= n; i += V::size)
    (V::load_unaligned(y + i) + av * V::load_unaligned(x + i)).store_unaligned(y + i);
  axpy(scalar{}, n - i, a, x + i, y + i);
}

/// x[i] *= a (xsimd back end).
template <xsimd_backend B>
void scale(B, std::size_t n, float a, float* x) noexcept {
  using V = detail::ew_batch<B>;
  const V av(a);
  std::size_t i = 0;
  for (; i + V::size <= n; i += V::size) (V::load_unaligned(x + i) * av).store_unaligned(x + i);
  scale(scalar{}, n - i, a, x + i);
}

/// The weighted accumulation of G inputs (xsimd back end; contract in
/// kernels/elementwise.hpp).
template <std::size_t G, bool First, bool WithRef, xsimd_backend B>
void weighted_accumulate(B, std::size_t n, const float* const* x, const float* c, const float* TINYLARGE_RESTRICT r,
                         float* TINYLARGE_RESTRICT a) noexcept {
  static_assert(G == 1 || G == 4, "kernels::weighted_accumulate: G must be 1 or 4");
  using V = detail::ew_batch<B>;
  V cv[G];
  for (std::size_t g = 0; g < G; ++g) cv[g] = V(c[g]);
  std::size_t j = 0;
  for (; j + V::size <= n; j += V::size) {
    V rv(0.0f);
    if constexpr (WithRef) rv = V::load_unaligned(r + j);
    V s = WithRef ? cv[0] * (V::load_unaligned(x[0] + j) - rv) : cv[0] * V::load_unaligned(x[0] + j);
    for (std::size_t g = 1; g < G; ++g) {
      if constexpr (WithRef) {
        s = s + cv[g] * (V::load_unaligned(x[g] + j) - rv);
      } else {
        s = s + cv[g] * V::load_unaligned(x[g] + j);
      }
    }
    if constexpr (!First) s = V::load_unaligned(a + j) + s;
    s.store_unaligned(a + j);
  }
  if (j < n) {
    const float* xt[G];
    for (std::size_t g = 0; g < G; ++g) xt[g] = x[g] + j;
    weighted_accumulate<G, First, WithRef>(scalar{}, n - j, xt, c, WithRef ? r + j : r, a + j);
  }
}

/// Σ x[i]·y[i] in fp32 lanes (xsimd back end).
template <xsimd_backend B>
float dot(B, std::size_t n, const float* x, const float* y) noexcept {
  using V = detail::ew_batch<B>;
  return detail::sum_terms<V>(
      n, [&](std::size_t i) { return V::load_unaligned(x + i) * V::load_unaligned(y + i); },
      [&](std::size_t i) { return dot(scalar{}, n - i, x + i, y + i); });
}

/// Σ x[i]² in fp32 lanes (xsimd back end).
template <xsimd_backend B>
float squared_norm(B, std::size_t n, const float* x) noexcept {
  return dot(B{}, n, x, x);
}

/// Σ (x[i] − r[i])² in fp32 lanes (xsimd back end).
template <xsimd_backend B>
float squared_distance(B, std::size_t n, const float* x, const float* r) noexcept {
  using V = detail::ew_batch<B>;
  return detail::sum_terms<V>(
      n,
      [&](std::size_t i) {
        const V d = V::load_unaligned(x + i) - V::load_unaligned(r + i);
        return d * d;
      },
      [&](std::size_t i) { return squared_distance(scalar{}, n - i, x + i, r + i); });
}

/// Whether any x[i] is NaN or ±Inf (xsimd back end).
template <xsimd_backend B>
bool any_non_finite(B, std::size_t n, const float* x) noexcept {
  using V = detail::ew_batch<B>;
  const V big(std::numeric_limits<float>::max());
  auto bad = V(0.0f) != V(0.0f);  // all false
  std::size_t i = 0;
  for (; i + V::size <= n; i += V::size) bad = bad | !(xsimd::abs(V::load_unaligned(x + i)) <= big);
  return xsimd::any(bad) || any_non_finite(scalar{}, n - i, x + i);
}

namespace detail {
/// out[i] = f(V at a + i, V at b + i) over full batches, then tail(i).
template <class V, class F, class Tail>
TINYLARGE_ALWAYS_INLINE void map2(std::size_t n, const float* a, const float* b, float* out, F f,
                                  Tail tail) noexcept {
  std::size_t i = 0;
  for (; i + V::size <= n; i += V::size) f(V::load_unaligned(a + i), V::load_unaligned(b + i)).store_unaligned(out + i);
  tail(i);
}
}  // namespace detail

/// y[i] = max(x[i], 0), NaN → 0 (xsimd back end).
template <xsimd_backend B>
void relu(B, std::size_t n, const float* x, float* y) noexcept {
  using V = detail::ew_batch<B>;
  detail::map2<V>(
      n, x, x, y, [](V v, V) { return xsimd::select(v > V(0.0f), v, V(0.0f)); },
      [&](std::size_t i) { relu(scalar{}, n - i, x + i, y + i); });
}
/// dx[i] = dy[i] · (y[i] > 0 ? 1 : 0) (xsimd back end).
template <xsimd_backend B>
void relu_backward(B, std::size_t n, const float* y, const float* dy, float* dx) noexcept {
  using V = detail::ew_batch<B>;
  detail::map2<V>(
      n, y, dy, dx, [](V yv, V g) { return g * xsimd::select(yv > V(0.0f), V(1.0f), V(0.0f)); },
      [&](std::size_t i) { relu_backward(scalar{}, n - i, y + i, dy + i, dx + i); });
}
/// y[i] = min(max(x[i], 0), 6), NaN → 0 (xsimd back end).
template <xsimd_backend B>
void relu6(B, std::size_t n, const float* x, float* y) noexcept {
  using V = detail::ew_batch<B>;
  detail::map2<V>(
      n, x, x, y,
      [](V v, V) { return xsimd::select(v > V(0.0f), xsimd::select(v < V(6.0f), v, V(6.0f)), V(0.0f)); },
      [&](std::size_t i) { relu6(scalar{}, n - i, x + i, y + i); });
}
/// dx[i] = dy[i] · (0 < y[i] < 6 ? 1 : 0) (xsimd back end).
template <xsimd_backend B>
void relu6_backward(B, std::size_t n, const float* y, const float* dy, float* dx) noexcept {
  using V = detail::ew_batch<B>;
  detail::map2<V>(
      n, y, dy, dx,
      [](V yv, V g) { return g * xsimd::select((yv > V(0.0f)) && (yv < V(6.0f)), V(1.0f), V(0.0f)); },
      [&](std::size_t i) { relu6_backward(scalar{}, n - i, y + i, dy + i, dx + i); });
}
/// dx[i] = dy[i] · (y[i]·(1 − y[i])) (xsimd back end).
template <xsimd_backend B>
void sigmoid_backward(B, std::size_t n, const float* y, const float* dy, float* dx) noexcept {
  using V = detail::ew_batch<B>;
  detail::map2<V>(
      n, y, dy, dx, [](V yv, V g) { return g * (yv * (V(1.0f) - yv)); },
      [&](std::size_t i) { sigmoid_backward(scalar{}, n - i, y + i, dy + i, dx + i); });
}
/// dx[i] = dy[i] · (1 − y[i]²) (xsimd back end).
template <xsimd_backend B>
void tanh_backward(B, std::size_t n, const float* y, const float* dy, float* dx) noexcept {
  using V = detail::ew_batch<B>;
  detail::map2<V>(
      n, y, dy, dx, [](V yv, V g) { return g * (V(1.0f) - yv * yv); },
      [&](std::size_t i) { tanh_backward(scalar{}, n - i, y + i, dy + i, dx + i); });
}

/// One SGD step (xsimd back end; contract in kernels/elementwise.hpp).
template <xsimd_backend B>
void sgd_step(B, std::size_t n, const sgd_params<float>& p, float* TINYLARGE_RESTRICT w,
              const float* TINYLARGE_RESTRICT grad, float* TINYLARGE_RESTRICT v) noexcept {
  if (v == nullptr && p.weight_decay == 0.0f) {  // plain SGD: the update `sgd_gemm_tn_f32` fuses into its GEMM
    detail::sgd_update_f32<detail::f32_ops_of<B>>(n, p.learning_rate, w, grad);
    return;
  }
  using V = detail::ew_batch<B>;
  const V lr(p.learning_rate), mu(p.momentum), wd(p.weight_decay);
  std::size_t i = 0;
  auto run = [&](auto velocity, auto nesterov) {
    for (; i + V::size <= n; i += V::size) {
      const V wv = V::load_unaligned(w + i);
      V g = V::load_unaligned(grad + i) + wd * wv;
      if constexpr (decltype(velocity)::value) {
        const V vel = mu * V::load_unaligned(v + i) + g;
        vel.store_unaligned(v + i);
        g = decltype(nesterov)::value ? g + mu * vel : vel;
      }
      (wv - lr * g).store_unaligned(w + i);
    }
  };
  using yes = std::true_type;
  using no = std::false_type;
  if (v == nullptr) {
    run(no{}, no{});
  } else if (p.nesterov) {
    run(yes{}, yes{});
  } else {
    run(yes{}, no{});
  }
  sgd_step(scalar{}, n - i, p, w + i, grad + i, v == nullptr ? v : v + i);
}

/// One Adam step (xsimd back end; contract in kernels/elementwise.hpp).
template <xsimd_backend B>
void adam_step(B, std::size_t n, const adam_params<float>& p, float* TINYLARGE_RESTRICT w,
               const float* TINYLARGE_RESTRICT grad, float* TINYLARGE_RESTRICT m,
               float* TINYLARGE_RESTRICT v) noexcept {
  using V = detail::ew_batch<B>;
  const V step(p.step_size), eps(p.epsilon), b1(p.beta1), b2(p.beta2), wd(p.weight_decay);
  const V c1(1.0f - p.beta1), c2(1.0f - p.beta2);
  std::size_t i = 0;
  for (; i + V::size <= n; i += V::size) {
    const V wv = V::load_unaligned(w + i);
    const V g = V::load_unaligned(grad + i) + wd * wv;
    const V mv = b1 * V::load_unaligned(m + i) + c1 * g;
    const V vv = b2 * V::load_unaligned(v + i) + c2 * g * g;
    mv.store_unaligned(m + i);
    vv.store_unaligned(v + i);
    (wv - step * mv / (detail::sqrt_exact<typename V::arch_type>(vv, typename V::arch_type{}) + eps)).store_unaligned(w + i);
  }
  adam_step(scalar{}, n - i, p, w + i, grad + i, m + i, v + i);
}

}  // namespace tinylarge::kernels
