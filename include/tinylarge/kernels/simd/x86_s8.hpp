/// @file kernels/simd/x86_s8.hpp
/// @brief int8 dense kernels for the x86 back ends `arch::avx2` and
///        `arch::avx512_vnni` (internal: include `kernels/dense.hpp`).
///
/// Both compute the exact int32 accumulator of the scalar reference,
///
///     acc[i][o] = bias[o] + Σ_q (x[i][q] − zx)·w[o][q],
///
/// and requantize it with the arithmetic of `requantize_s8` (the AVX2 back
/// end calls it; the VNNI back end runs the same integer steps 16 lanes at a
/// time, `requantize_avx512`), so `dense_s8` is bit-exact with the scalar
/// back end. Preconditions as for the scalar kernel: input_zero_point in
/// [−128, 127], k ≤ `dense_s8_max_k`, |bias| < 2²³, shifts in [−31, 30].
///
/// **AVX2** (`arch::avx2`, also used by `arch::avx512`): x − zx is formed once
/// per row in 16 bit (|x − zx| ≤ 255), w is sign-extended to 16 bit
/// (`vpmovsxbw`), and `vpmaddwd` adds pairs of 16×16-bit products into int32
/// lanes. A pair is at most 2·255·128 = 65 280 in magnitude, so nothing
/// saturates (unlike `vpmaddubsw`, which saturates to int16 and is avoided).
/// Four rows of W per pass share each x chunk.
///
/// **AVX-512 VNNI** (`arch::avx512_vnni`): `vpdpbusd` multiplies unsigned by
/// signed bytes and adds groups of four products to int32 lanes without
/// saturation. x is made unsigned by u = x + 128 (a sign-bit flip, x ^ 0x80),
/// and the offset is removed per output row with the row sums of W:
///
///     Σ_q (x − zx)·w = Σ_q u·w − (128 + zx)·Σ_q w.
///
/// The row sums come from `dense_s8_params::weight_row_sums` when given and are
/// computed otherwise. Each |u·w| ≤ 255·128 and the sum over k ≤ 2¹⁶ stays
/// below 2³¹, so the lanes never wrap within the documented bound
/// (`dense_s8_max_k`); all further adds are modulo 2³², exact whenever the
/// final value fits in int32. For m ≥ 2 the roles swap: W, packed once
/// (`pack_dense_s8_gemm`, or into scratch per call), is the unsigned operand
/// w + 128 and X the signed one, read unpacked by a 6×64 register tile
/// (`detail::s8_gemm_layout`, `detail::s8_gemm_tile`), with the
/// corrections −128·Σ_q x per row and bias − zx·Σ_q w per output and the
/// requantization fused in the epilogue (`detail::s8_gemm_epilogue`).
/// For m = 1 it is a GEMV (4 rows per pass, 64 bytes of k per instruction)
/// whose int32 results are requantized 16 at a time (`s8_requantize_avx512`).
/// The pre-packed batch-1 form (`pack_dense_s8` / `dense_s8_packed`, what
/// `nn::quantized_network` runs) stores W as [k/4][16 outputs][4 bytes]
/// panels with the correction term precomputed (`detail::s8_gemv_layout`):
/// one broadcast of 4 input bytes feeds 16 outputs per `vpdpbusd`, and the
/// requantization works on whole registers.
///
/// `quantize_s8` (AVX2 / AVX-512) is `tl::quantize` on 8 / 16 floats at a
/// time, bit-exact (the same IEEE division and rounding steps).
#pragma once

#if !defined(TINYLARGE_KERNELS_DENSE_SCALAR_DECLARED)
#error "internal header: include <tinylarge/kernels/dense.hpp> instead"
#endif

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)

#include <immintrin.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>
#include <utility>

#include "scratch.hpp"
#include "x86_common.hpp"  // transpose8x8, TINYLARGE_KERNELS_X86_AVX512

// GCC 12's AVX-512 intrinsics pass `_mm512_undefined_epi32()` (a
// self-initialised variable) as the pass-through operand, which -Wall reports
// as -Wmaybe-uninitialized at every inlined use (GCC bug 105593, fixed in 13).
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ < 13
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#define TINYLARGE_KERNELS_S8_POP_DIAGNOSTIC 1
#endif

namespace tinylarge::kernels::detail::inline TINYLARGE_KERNELS_ISA {

/// a + b modulo 2³² (no signed-overflow UB).
TINYLARGE_ALWAYS_INLINE std::int32_t wrap_add(std::int32_t a, std::int32_t b) noexcept {
  return static_cast<std::int32_t>(static_cast<std::uint32_t>(a) + static_cast<std::uint32_t>(b));
}

/// Row sums Σ_q w[o][q] for o < n (exact: |Σ| ≤ 128·k).
inline void s8_row_sums(std::size_t n, std::size_t k, const std::int8_t* w, std::int32_t* sums) noexcept {
  for (std::size_t o = 0; o < n; ++o) {
    const std::int8_t* wr = w + o * k;
    std::int32_t s = 0;
    for (std::size_t q = 0; q < k; ++q) s += wr[q];
    sums[o] = s;
  }
}

/// AVX2: int32 accumulators of one input row against all rows of W:
/// store(o, bias[o] + Σ_q xs[q]·w[o][q]) where xs = x − zx in int16, zero
/// padded to a multiple of 16.
template <class Store>
TINYLARGE_ALWAYS_INLINE void s8_row_avx2(std::size_t n, std::size_t k, const std::int16_t* xs,
                                         const std::int8_t* w, const std::int32_t* bias, Store&& store) noexcept {
  const std::size_t kfull = k / 16 * 16, ktail = k - kfull;
  std::size_t o = 0;
  for (; o + 4 <= n; o += 4) {
    __m256i acc[4];
    for (std::size_t r = 0; r < 4; ++r) acc[r] = _mm256_setzero_si256();
    for (std::size_t q = 0; q < kfull; q += 16) {
      const __m256i xv = _mm256_load_si256(reinterpret_cast<const __m256i*>(xs + q));
#pragma GCC unroll 4
      for (std::size_t r = 0; r < 4; ++r) {
        const __m256i wv =
            _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w + (o + r) * k + q)));
        acc[r] = _mm256_add_epi32(acc[r], _mm256_madd_epi16(xv, wv));
      }
    }
    if (ktail != 0) {
      const __m256i xv = _mm256_load_si256(reinterpret_cast<const __m256i*>(xs + kfull));
      for (std::size_t r = 0; r < 4; ++r) {
        alignas(16) std::int8_t tail[16] = {};
        std::memcpy(tail, w + (o + r) * k + kfull, ktail);
        const __m256i wv = _mm256_cvtepi8_epi16(_mm_load_si128(reinterpret_cast<const __m128i*>(tail)));
        acc[r] = _mm256_add_epi32(acc[r], _mm256_madd_epi16(xv, wv));
      }
    }
    // Four horizontal sums: lane r of s = Σ acc[r].
    const __m256i t0 = _mm256_hadd_epi32(acc[0], acc[1]), t1 = _mm256_hadd_epi32(acc[2], acc[3]);
    const __m256i u = _mm256_hadd_epi32(t0, t1);
    const __m128i s = _mm_add_epi32(_mm256_castsi256_si128(u), _mm256_extracti128_si256(u, 1));
    alignas(16) std::int32_t sums[4];
    _mm_store_si128(reinterpret_cast<__m128i*>(sums), s);
    for (std::size_t r = 0; r < 4; ++r) store(o + r, wrap_add(bias ? bias[o + r] : 0, sums[r]));
  }
  for (; o < n; ++o) {
    const std::int8_t* wr = w + o * k;
    std::int32_t s = bias ? bias[o] : 0;
    for (std::size_t q = 0; q < k; ++q) s = wrap_add(s, static_cast<std::int32_t>(xs[q]) * wr[q]);
    store(o, s);
  }
}

/// AVX2 driver: for each input row i, store(i, o, acc[i][o]).
template <class Store>
void s8_dense_avx2(std::size_t m, std::size_t n, std::size_t k, const std::int8_t* x, const std::int8_t* w,
                   const dense_s8_params& p, Store&& store) noexcept {
  const std::size_t kpad = (k + 15) / 16 * 16;
  std::int16_t* xs = thread_scratch<scratch_slot::vector>().get<std::int16_t>(kpad);
  for (std::size_t i = 0; i < m; ++i) {
    const std::int8_t* xr = x + i * k;
    for (std::size_t q = 0; q < k; ++q)
      xs[q] = static_cast<std::int16_t>(static_cast<std::int32_t>(xr[q]) - p.input_zero_point);
    for (std::size_t q = k; q < kpad; ++q) xs[q] = 0;
    s8_row_avx2(n, k, xs, w, p.bias, [&](std::size_t o, std::int32_t acc) { store(i, o, acc); });
  }
}

}  // namespace tinylarge::kernels::detail::TINYLARGE_KERNELS_ISA

namespace tinylarge::kernels::inline TINYLARGE_KERNELS_ISA {

/// int32 accumulators bias[o] + Σ_q (x[i][q] − zx)·w[o][q], AVX2 back end
/// (exact; see `dense_s8_max_k`).
inline void dense_s8_s32(arch::avx2, std::size_t m, std::size_t n, std::size_t k, const std::int8_t* x,
                         const std::int8_t* w, const dense_s8_params& p, std::int32_t* acc) noexcept {
  detail::s8_dense_avx2(m, n, k, x, w, p,
                        [&](std::size_t i, std::size_t o, std::int32_t v) { acc[i * n + o] = v; });
}

/// int8 dense with fused requantize and clamp, AVX2 back end; bit-exact with
/// the scalar back end.
inline void dense_s8(arch::avx2, std::size_t m, std::size_t n, std::size_t k, const std::int8_t* x,
                     const std::int8_t* w, const dense_s8_params& p, std::int8_t* y) noexcept {
  detail::s8_dense_avx2(m, n, k, x, w, p,
                        [&](std::size_t i, std::size_t o, std::int32_t v) { y[i * n + o] = requantize_s8(v, o, p); });
}

/// q[i] = tl::quantize(x[i], p, range), 8 lanes at a time; bit-exact with
/// the scalar function (IEEE division, truncation, exact fraction test).
inline void quantize_s8(arch::avx2, const float* x, std::size_t n, quant_params p, quant_range range,
                        std::int8_t* q) noexcept {
  const __m256 scale = _mm256_set1_ps(p.scale), half = _mm256_set1_ps(0.5f), mhalf = _mm256_set1_ps(-0.5f);
  const __m256 lim = _mm256_set1_ps(1073741824.0f), mlim = _mm256_set1_ps(-1073741824.0f);
  const __m256i zp = _mm256_set1_epi32(p.zero_point), lo = _mm256_set1_epi32(range.min),
                hi = _mm256_set1_epi32(range.max);
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256 v = _mm256_div_ps(_mm256_loadu_ps(x + i), scale);
    v = _mm256_and_ps(v, _mm256_cmp_ps(v, v, _CMP_ORD_Q));  // NaN → +0
    v = _mm256_min_ps(_mm256_max_ps(v, mlim), lim);
    const __m256i t = _mm256_cvttps_epi32(v);
    const __m256 frac = _mm256_sub_ps(v, _mm256_cvtepi32_ps(t));
    // compare masks are −1 where true: r = t − (frac ≥ ½) + (frac ≤ −½)
    __m256i r = _mm256_sub_epi32(t, _mm256_castps_si256(_mm256_cmp_ps(frac, half, _CMP_GE_OQ)));
    r = _mm256_add_epi32(r, _mm256_castps_si256(_mm256_cmp_ps(frac, mhalf, _CMP_LE_OQ)));
    r = _mm256_min_epi32(_mm256_max_epi32(_mm256_add_epi32(r, zp), lo), hi);
    alignas(32) std::int32_t out[8];
    _mm256_store_si256(reinterpret_cast<__m256i*>(out), r);
    for (std::size_t j = 0; j < 8; ++j) q[i + j] = static_cast<std::int8_t>(out[j]);
  }
  for (; i < n; ++i) q[i] = quantize(x[i], p, range);
}

#if defined(TINYLARGE_KERNELS_X86_AVX512)
/// q[i] = tl::quantize(x[i], p, range), 16 lanes at a time; bit-exact.
inline void quantize_s8(arch::avx512, const float* x, std::size_t n, quant_params p, quant_range range,
                        std::int8_t* q) noexcept {
  const __m512 scale = _mm512_set1_ps(p.scale), half = _mm512_set1_ps(0.5f), mhalf = _mm512_set1_ps(-0.5f);
  const __m512 lim = _mm512_set1_ps(1073741824.0f), mlim = _mm512_set1_ps(-1073741824.0f);
  const __m512i zp = _mm512_set1_epi32(p.zero_point), lo = _mm512_set1_epi32(range.min),
                hi = _mm512_set1_epi32(range.max), one = _mm512_set1_epi32(1);
  for (std::size_t i = 0; i < n; i += 16) {
    const auto mk = static_cast<__mmask16>(n - i >= 16 ? 0xFFFFu : (1u << (n - i)) - 1u);
    // (zero-masked forms with a full mask: GCC 12's -Wmaybe-uninitialized, see above)
    __m512 v = _mm512_maskz_div_ps(0xFFFF, _mm512_maskz_loadu_ps(mk, x + i), scale);
    v = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(v, v, _CMP_ORD_Q), v);  // NaN → 0
    v = _mm512_maskz_min_ps(0xFFFF, _mm512_maskz_max_ps(0xFFFF, v, mlim), lim);
    const __m512i t = _mm512_maskz_cvttps_epi32(0xFFFF, v);
    const __m512 frac = _mm512_sub_ps(v, _mm512_maskz_cvtepi32_ps(0xFFFF, t));
    __m512i r = _mm512_mask_add_epi32(t, _mm512_cmp_ps_mask(frac, half, _CMP_GE_OQ), t, one);
    r = _mm512_mask_sub_epi32(r, _mm512_cmp_ps_mask(frac, mhalf, _CMP_LE_OQ), r, one);
    r = _mm512_min_epi32(_mm512_max_epi32(_mm512_add_epi32(r, zp), lo), hi);
    _mm512_mask_cvtepi32_storeu_epi8(q + i, mk, r);
  }
}
#endif

}  // namespace tinylarge::kernels::TINYLARGE_KERNELS_ISA

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512DQ__) && defined(__AVX512VL__) && \
    defined(__AVX512VNNI__)

namespace tinylarge::kernels::detail::inline TINYLARGE_KERNELS_ISA {

/// 4 bytes at p as a 32-bit word (unaligned, no aliasing issues).
TINYLARGE_ALWAYS_INLINE std::uint32_t load_word(const std::int8_t* p) noexcept {
  std::uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}
/// The bytes p[0..n) (n < 4) as a word, zero above.
TINYLARGE_ALWAYS_INLINE std::uint32_t load_word_partial(const std::int8_t* p, std::size_t n) noexcept {
  std::uint32_t v = 0;
  std::memcpy(&v, p, n);
  return v;
}

/// Σ of the 16 int32 lanes (mod 2³²); zero-masked extracts avoid GCC 12's
/// false -Wmaybe-uninitialized in `_mm512_reduce_add_epi32`.
TINYLARGE_ALWAYS_INLINE std::int32_t reduce_add_s32(__m512i v) noexcept {
  const __m256i s8 = _mm256_add_epi32(_mm512_maskz_extracti32x8_epi32(0xFF, v, 0),
                                      _mm512_maskz_extracti32x8_epi32(0xFF, v, 1));
  __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(s8), _mm256_extracti128_si256(s8, 1));
  s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, _MM_SHUFFLE(1, 0, 3, 2)));
  s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, _MM_SHUFFLE(2, 3, 0, 1)));
  return _mm_cvtsi128_si32(s4);
}

/// acc += Σ of 4 products u8(u)·s8(s) per int32 lane (`vpdpbusd`). GCC 12
/// compiles the intrinsic with a copy of the accumulator in and out of
/// another register (and spills a register tile of 24 accumulators to the
/// stack on every step); the asm statement ties the accumulator in place.
TINYLARGE_ALWAYS_INLINE void dpbusd_acc(__m512i& acc, __m512i u, __m512i s) noexcept {
#if defined(__GNUC__) && !defined(__clang__)
  __asm__("vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(u), "v"(s));
#else
  acc = _mm512_dpbusd_epi32(acc, u, s);
#endif
}

/// corr[o] = bias[o] − (128 + zx)·Σ_q w[o][q] (mod 2³²).
inline void s8_vnni_correction(std::size_t n, std::size_t k, const std::int8_t* w, const dense_s8_params& p,
                               std::int32_t* corr) noexcept {
  const std::int32_t* sums = p.weight_row_sums;
  if (sums == nullptr) {
    s8_row_sums(n, k, w, corr);
    sums = corr;
  }
  const auto offset = static_cast<std::uint32_t>(128 + p.input_zero_point);
  for (std::size_t o = 0; o < n; ++o) {
    const std::uint32_t b = p.bias ? static_cast<std::uint32_t>(p.bias[o]) : 0u;
    corr[o] = static_cast<std::int32_t>(b - offset * static_cast<std::uint32_t>(sums[o]));
  }
}

/// VNNI GEMV (m = 1): store(o, Σ_q u[q]·w[o][q] − (128 + zx)·Σ_q w[o][q] + bias[o]).
/// `u` is x ^ 0x80, zero padded to a multiple of 64 bytes.
template <bool HaveRowSums, class Store>
TINYLARGE_ALWAYS_INLINE void s8_vnni_gemv(std::size_t n, std::size_t k, const std::uint8_t* u, const std::int8_t* w,
                                          const dense_s8_params& p, Store&& store) noexcept {
  const std::size_t kfull = k / 64 * 64, ktail = k - kfull;
  const __mmask64 tail_mask = ktail == 0 ? 0 : (~0ULL >> (64 - ktail));
  const __m512i ones = _mm512_set1_epi8(1);
  const auto offset = static_cast<std::uint32_t>(128 + p.input_zero_point);
  auto finish = [&](std::size_t o, std::int32_t dot, std::int32_t sw) {
    const std::uint32_t b = p.bias ? static_cast<std::uint32_t>(p.bias[o]) : 0u;
    const std::uint32_t s = HaveRowSums ? static_cast<std::uint32_t>(p.weight_row_sums[o]) : static_cast<std::uint32_t>(sw);
    store(o, static_cast<std::int32_t>(b + static_cast<std::uint32_t>(dot) - offset * s));
  };
  std::size_t o = 0;
  // Four rows per pass in named accumulators, each updated in place by
  // `dpbusd_acc` (with arrays and the intrinsic, GCC 12 copied every
  // accumulator in and out of another register on each step).
  for (; o + 4 <= n; o += 4) {
    const std::int8_t* w0 = w + o * k;
    const std::int8_t *w1 = w0 + k, *w2 = w1 + k, *w3 = w2 + k;
    __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0, s0 = a0, s1 = a0, s2 = a0, s3 = a0;
    auto step = [&](__m512i uv, __m512i v0, __m512i v1, __m512i v2, __m512i v3) {
      dpbusd_acc(a0, uv, v0);
      dpbusd_acc(a1, uv, v1);
      dpbusd_acc(a2, uv, v2);
      dpbusd_acc(a3, uv, v3);
      if constexpr (!HaveRowSums) {
        dpbusd_acc(s0, ones, v0);
        dpbusd_acc(s1, ones, v1);
        dpbusd_acc(s2, ones, v2);
        dpbusd_acc(s3, ones, v3);
      }
    };
    for (std::size_t q = 0; q < kfull; q += 64)
      step(_mm512_load_si512(u + q), _mm512_loadu_si512(w0 + q), _mm512_loadu_si512(w1 + q),
           _mm512_loadu_si512(w2 + q), _mm512_loadu_si512(w3 + q));
    if (ktail != 0)
      step(_mm512_load_si512(u + kfull), _mm512_maskz_loadu_epi8(tail_mask, w0 + kfull),
           _mm512_maskz_loadu_epi8(tail_mask, w1 + kfull), _mm512_maskz_loadu_epi8(tail_mask, w2 + kfull),
           _mm512_maskz_loadu_epi8(tail_mask, w3 + kfull));
    finish(o, reduce_add_s32(a0), HaveRowSums ? 0 : reduce_add_s32(s0));
    finish(o + 1, reduce_add_s32(a1), HaveRowSums ? 0 : reduce_add_s32(s1));
    finish(o + 2, reduce_add_s32(a2), HaveRowSums ? 0 : reduce_add_s32(s2));
    finish(o + 3, reduce_add_s32(a3), HaveRowSums ? 0 : reduce_add_s32(s3));
  }
  for (; o < n; ++o) {
    __m512i acc = _mm512_setzero_si512(), s = _mm512_setzero_si512();
    for (std::size_t q = 0; q < k; q += 64) {
      const __mmask64 mk = q + 64 <= k ? ~0ULL : tail_mask;
      const __m512i wv = _mm512_maskz_loadu_epi8(mk, w + o * k + q);
      acc = _mm512_dpbusd_epi32(acc, _mm512_load_si512(u + q), wv);
      if constexpr (!HaveRowSums) s = _mm512_dpbusd_epi32(s, ones, wv);
    }
    finish(o, reduce_add_s32(acc), HaveRowSums ? 0 : reduce_add_s32(s));
  }
}

/// Requantization of 16 int32 accumulators, lane for lane identical to
/// `multiply_by_quantized_multiplier` + zero point + clamp (requantize.hpp).
///
/// The two roundings of the reference fold into one arithmetic shift of a
/// 64-bit product. With p = a·m (`vpmuldq`, even and odd lanes) and the right
/// shift e = max(−shift, 0):
///  - SaturatingRoundingDoublingHighMul truncates (p + nudge)/2³¹ toward zero
///    with nudge = ±2³⁰; for every p that is x = ⌊(p + 2³⁰)/2³¹⌋;
///  - RoundingDivideByPOT(x, e) rounds x/2ᵉ half away from zero, which is
///    ⌊(x + 2ᵉ⁻¹)/2ᵉ⌋ for x ≥ 0 and ⌊(x + 2ᵉ⁻¹ − 1)/2ᵉ⌋ for x < 0 (e ≥ 1);
///  - ⌊(⌊y/A⌋ + c)/B⌋ = ⌊(y + c·A)/(A·B)⌋ for integers c and A, B > 0, and
///    x < 0 exactly when y = p + 2³⁰ < 0, so the result is
///        (y + [e ≥ 1]·(2³⁰⁺ᵉ − [y < 0]·2³¹)) >> (31 + e).
/// The one saturating case of the reference, a = m = −2³¹ (p = 2⁶²), differs
/// only for e = 0, where the shift gives 2³¹ and the reference 2³¹ − 1: the
/// 64-bit result is capped at 2³¹ − 1. The left shift (shift > 0) saturates
/// to int32 first, as in the reference. Shifts in [−31, 30] (what
/// `quantize_multiplier` produces), as for the scalar function.
struct requantize_avx512 {
  /// Per-lane constants of one half (even or odd int32 lanes, as 64-bit lanes):
  /// the multiplier, K = 2³⁰ + [e ≥ 1]·2³⁰⁺ᵉ, the shift 31 + e and e ≥ 1.
  struct half_lanes {
    __m512i m, k, sh;
    __mmask8 has_e;
    TINYLARGE_ALWAYS_INLINE half_lanes(__m512i m64, __m512i e64) noexcept : m(m64) {
      has_e = _mm512_cmpgt_epi64_mask(e64, _mm512_setzero_si512());
      k = _mm512_add_epi64(_mm512_maskz_sllv_epi64(has_e, _mm512_set1_epi64(1),
                                                   _mm512_add_epi64(e64, _mm512_set1_epi64(30))),
                           _mm512_set1_epi64(1LL << 30));
      sh = _mm512_add_epi64(e64, _mm512_set1_epi64(31));
    }
    /// (p + K − [e ≥ 1 ∧ p + 2³⁰ < 0]·2³¹) >> (31 + e), capped at 2³¹ − 1
    /// when `Cap` (only a multiplier of −2³¹ needs it), for the products p of
    /// the even int32 lanes of a with m.
    template <bool Cap>
    TINYLARGE_ALWAYS_INLINE __m512i apply(__m512i a) const noexcept {
      const __m512i p = _mm512_mul_epi32(a, m);
      const __mmask8 neg = _mm512_mask_cmplt_epi64_mask(has_e, p, _mm512_set1_epi64(-(1LL << 30)));
      __m512i t = _mm512_add_epi64(p, k);
      t = _mm512_mask_sub_epi64(t, neg, t, _mm512_set1_epi64(1LL << 31));
      const __m512i r = _mm512_srav_epi64(t, sh);
      if constexpr (Cap) return _mm512_min_epi64(r, _mm512_set1_epi64(std::numeric_limits<std::int32_t>::max()));
      return r;
    }
  };

  __m512i shift, zy, lo, hi;
  half_lanes even, odd;

  /// The constants of 16 output channels (multipliers, shifts) and of the
  /// output (zero point, clamp); built once per column block.
  TINYLARGE_ALWAYS_INLINE requantize_avx512(__m512i mult, __m512i shift_, __m512i zy_, __m512i lo_,
                                            __m512i hi_) noexcept
      : shift(shift_), zy(zy_), lo(lo_), hi(hi_),
        even(mult, _mm512_and_si512(right(shift_), _mm512_set1_epi64(0xFFFFFFFFLL))),
        odd(_mm512_srli_epi64(mult, 32), _mm512_srli_epi64(right(shift_), 32)) {}

  static TINYLARGE_ALWAYS_INLINE __m512i right(__m512i shift) noexcept {
    const __m512i zero = _mm512_setzero_si512();
    return _mm512_max_epi32(_mm512_sub_epi32(zero, shift), zero);
  }

  /// clamp(zy + MultiplyByQuantizedMultiplier(acc, mult, shift), lo, hi).
  /// `AnyLeft`: some lane may have shift > 0; `Cap`: some multiplier may be
  /// −2³¹ (see `any_min_multiplier`).
  template <bool AnyLeft, bool Cap = true>
  TINYLARGE_ALWAYS_INLINE __m512i apply(__m512i acc) const noexcept {
    __m512i a = acc;
    if constexpr (AnyLeft) {  // acc·2^left, saturated to int32
      const __m512i int_max = _mm512_set1_epi32(std::numeric_limits<std::int32_t>::max());
      const __m512i left = _mm512_max_epi32(shift, _mm512_setzero_si512());
      const __m512i shifted = _mm512_sllv_epi32(acc, left);
      const __mmask16 overflow = _mm512_cmpneq_epi32_mask(_mm512_srav_epi32(shifted, left), acc);
      const __m512i saturated = _mm512_xor_si512(_mm512_srai_epi32(acc, 31), int_max);  // acc < 0 ? MIN : MAX
      a = _mm512_mask_mov_epi32(shifted, overflow, saturated);
    }
    const __m512i v =
        _mm512_add_epi32(_mm512_mask_blend_epi32(0xAAAA, even.apply<Cap>(a),
                                                 _mm512_slli_epi64(odd.apply<Cap>(_mm512_srli_epi64(a, 32)), 32)),
                         zy);
    return _mm512_min_epi32(_mm512_max_epi32(v, lo), hi);
  }

  /// True when some channel's multiplier is −2³¹ (never from `quantize_multiplier`).
  static bool any_min_multiplier(std::size_t n, const dense_s8_params& p) noexcept {
    const std::size_t count = p.per_channel ? n : 1;
    for (std::size_t c = 0; c < count; ++c)
      if (p.multipliers[c] == std::numeric_limits<std::int32_t>::min()) return true;
    return false;
  }

  /// True when some channel has a left shift (real multiplier ≥ 1).
  static bool any_left_shift(std::size_t n, const dense_s8_params& p) noexcept {
    const std::size_t count = p.per_channel ? n : 1;
    for (std::size_t c = 0; c < count; ++c)
      if (p.shifts[c] > 0) return true;
    return false;
  }
};
static_assert(sizeof(int) == sizeof(std::int32_t), "shifts are loaded as int32 lanes");

// ---------------------------------------------------------------------------
// Packed GEMM (AVX-512 VNNI), W pre-packed once
// ---------------------------------------------------------------------------

/// Layout of the packed GEMM form of W (n×k int8, row-major) for `vpdpbusd`
/// with W as the unsigned operand and X, unpacked, as the signed one:
///
///     [colcorr: np·64 int32, colcorr[o] = bias[o] − zx·Σ_q w[o][q], 0 for o ≥ n]
///     [panels: np panels of 64 outputs; panel j is kq steps of
///      64 outputs × 4 consecutive k-bytes of w ^ 0x80 (= w + 128 as u8),
///      zero bytes for o ≥ n and past k]
///
/// with np = ⌈n/64⌉ and kq = ⌈k/4⌉. Then
///
///     Σ_q (x − zx)·w = Σ_q (w + 128)·x − 128·Σ_q x − zx·Σ_q w,
///
/// where the first sum is what `vpdpbusd(acc, w + 128, x)` accumulates (each
/// |(w + 128)·x| ≤ 255·128, so a lane cannot wrap for k ≤ 2¹⁶, as in the
/// GEMV), the second is a per-row term computed once per call (one
/// `vpdpbusd` against ones per 64 bytes of X) and the third is folded into
/// colcorr at pack time. X needs no packing at all: the micro-kernel
/// broadcasts 4 bytes of a row of X straight from memory.
struct s8_gemm_layout {
  static constexpr std::size_t nr = 64;    ///< outputs per panel (4 zmm of int32)
  static constexpr std::size_t mr_max = 6;  ///< rows per register tile (24 accumulators)
  static constexpr std::size_t panels(std::size_t n) noexcept { return (n + nr - 1) / nr; }
  static constexpr std::size_t quads(std::size_t k) noexcept { return (k + 3) / 4; }
  static constexpr std::size_t weights_offset(std::size_t n) noexcept { return panels(n) * nr * 4; }
  static constexpr std::size_t panel_bytes(std::size_t k) noexcept { return quads(k) * nr * 4; }
  static constexpr std::size_t bytes(std::size_t n, std::size_t k) noexcept {
    return n == 0 ? 0 : weights_offset(n) + panels(n) * panel_bytes(k);
  }
};

/// Packs W (n×k) into `dst` (`s8_gemm_layout`, 64-byte aligned) with the
/// column corrections of `p` (bias, input zero point, optional row sums).
inline void s8_gemm_pack(std::size_t n, std::size_t k, const std::int8_t* w, const dense_s8_params& p,
                         std::int8_t* dst) noexcept {
  using L = s8_gemm_layout;
  if (n == 0) return;
  auto* colcorr = reinterpret_cast<std::int32_t*>(dst);
  const auto zx = static_cast<std::uint32_t>(p.input_zero_point);
  for (std::size_t o = 0; o < L::panels(n) * L::nr; ++o) {
    std::uint32_t c = 0;
    if (o < n) {
      std::uint32_t sw = 0;
      if (p.weight_row_sums != nullptr) {
        sw = static_cast<std::uint32_t>(p.weight_row_sums[o]);
      } else {
        for (std::size_t q = 0; q < k; ++q) sw += static_cast<std::uint32_t>(static_cast<std::int32_t>(w[o * k + q]));
      }
      c = (p.bias ? static_cast<std::uint32_t>(p.bias[o]) : 0u) - zx * sw;
    }
    colcorr[o] = static_cast<std::int32_t>(c);
  }
  const std::size_t kq = L::quads(k), kfull = k / 4;
  const __m512i flip = _mm512_set1_epi32(static_cast<int>(0x80808080u));
  // Row offsets of 16 consecutive outputs, for one gather of their words.
  const __m512i rows = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                          _mm512_set1_epi32(static_cast<int>(k)));
  std::int8_t* pw = dst + L::weights_offset(n);
  for (std::size_t jp = 0; jp < L::panels(n); ++jp) {
    for (std::size_t v = 0; v < L::nr / 16; ++v) {
      const std::size_t o0 = jp * L::nr + 16 * v;
      const std::size_t cols = o0 >= n ? 0 : std::min<std::size_t>(16, n - o0);
      const auto mk = static_cast<__mmask16>(cols >= 16 ? 0xFFFFu : (1u << cols) - 1u);
      std::int8_t* d = pw + 64 * v;
      for (std::size_t q = 0; q < kfull; ++q) {
        __m512i g = _mm512_setzero_si512();
        if (cols != 0) g = _mm512_mask_i32gather_epi32(g, mk, rows, w + o0 * k + 4 * q, 1);
        _mm512_store_si512(d + q * L::nr * 4, _mm512_maskz_xor_epi32(mk, g, flip));
      }
      for (std::size_t q = kfull; q < kq; ++q) {  // the partial quad past k: zero bytes beyond it
        alignas(64) std::uint32_t words[16] = {};
        for (std::size_t c = 0; c < cols; ++c)
          words[c] = (load_word_partial(w + (o0 + c) * k + 4 * q, k - 4 * q) ^ 0x80808080u) &
                     (0xFFFFFFFFu >> (32 - 8 * (k - 4 * q)));
        std::memcpy(d + q * L::nr * 4, words, 64);
      }
    }
    pw += L::panel_bytes(k);
  }
}

/// rowcorr[i] = −128·Σ_q x[i][q] (mod 2³²) for i < m.
inline void s8_gemm_row_corrections(std::size_t m, std::size_t k, const std::int8_t* x,
                                    std::int32_t* rowcorr) noexcept {
  const __m512i ones = _mm512_set1_epi8(1);
  const std::size_t kfull = k / 64 * 64;
  const __mmask64 tail = k == kfull ? 0 : (~0ULL >> (64 - (k - kfull)));
  for (std::size_t i = 0; i < m; ++i) {
    const std::int8_t* xr = x + i * k;
    __m512i s0 = _mm512_setzero_si512(), s1 = _mm512_setzero_si512();
    std::size_t q = 0;
    for (; q + 128 <= kfull; q += 128) {
      s0 = _mm512_dpbusd_epi32(s0, ones, _mm512_loadu_si512(xr + q));
      s1 = _mm512_dpbusd_epi32(s1, ones, _mm512_loadu_si512(xr + q + 64));
    }
    if (q < kfull) s0 = _mm512_dpbusd_epi32(s0, ones, _mm512_loadu_si512(xr + q));
    if (tail != 0) s1 = _mm512_dpbusd_epi32(s1, ones, _mm512_maskz_loadu_epi8(tail, xr + kfull));
    const auto sum = static_cast<std::uint32_t>(reduce_add_s32(_mm512_add_epi32(s0, s1)));
    rowcorr[i] = static_cast<std::int32_t>(0u - 128u * sum);
  }
}


// One k step of a register tile: acc_j[r] += (w + 128)·word(x row r) for
// the NB vectors b of one step of a panel (internal macro, undefined below).
// The accumulators are four separate 1-D arrays rather than one 2-D array,
// which GCC 12 is less inclined to keep in memory.
#define TINYLARGE_S8_GEMM_STEP(WORD)                                                         \
  do {                                                                                       \
    const __m512i b0 = _mm512_load_si512(wq);                                                \
    const __m512i b1 = NB > 1 ? _mm512_load_si512(wq + 64) : b0;                             \
    const __m512i b2 = NB > 2 ? _mm512_load_si512(wq + 128) : b0;                            \
    const __m512i b3 = NB > 3 ? _mm512_load_si512(wq + 192) : b0;                            \
    _Pragma("GCC unroll 16") for (std::size_t r = 0; r < R; ++r) {                           \
      const __m512i a = _mm512_set1_epi32(static_cast<int>(WORD));                           \
      dpbusd_acc(acc0[r], b0, a);                                         \
      if constexpr (NB > 1) dpbusd_acc(acc1[r], b1, a);                   \
      if constexpr (NB > 2) dpbusd_acc(acc2[r], b2, a);                   \
      if constexpr (NB > 3) dpbusd_acc(acc3[r], b3, a);                   \
    }                                                                                        \
  } while (false)

/// One register tile: tile[r][c] = Σ_q (w[c] + 128)·x[r][q] for R rows of X
/// (row stride ldx) and 16·NB outputs of one panel (`pw` at the first of
/// them; one k step is 256 bytes). Written to an aligned local buffer, so
/// that the accumulators stay in registers (GCC 12 keeps them in memory
/// when they also feed masked stores).
template <std::size_t R, std::size_t NB>
TINYLARGE_NOINLINE void s8_gemm_tile(std::size_t k, const std::int8_t* TINYLARGE_RESTRICT x, std::size_t ldx,
                                     const std::int8_t* TINYLARGE_RESTRICT pw,
                                     std::int32_t* TINYLARGE_RESTRICT tile) noexcept {
  static_assert(NB >= 1 && NB <= 4, "a panel is 4 vectors wide");
  constexpr std::size_t step = s8_gemm_layout::nr * 4;
  __m512i acc0[R], acc1[R], acc2[R], acc3[R];
#pragma GCC unroll 16
  for (std::size_t r = 0; r < R; ++r) acc0[r] = acc1[r] = acc2[r] = acc3[r] = _mm512_setzero_si512();
  const std::size_t kfull = k / 4;
  const std::int8_t* wq = pw;
  for (std::size_t q = 0; q < kfull; ++q, wq += step) TINYLARGE_S8_GEMM_STEP(load_word(x + r * ldx + 4 * q));
  if (k != 4 * kfull)  // the partial quad: x bytes past k read as zero
    TINYLARGE_S8_GEMM_STEP(load_word_partial(x + r * ldx + 4 * kfull, k - 4 * kfull));
#pragma GCC unroll 16
  for (std::size_t r = 0; r < R; ++r) {
    std::int32_t* t = tile + r * s8_gemm_layout::nr;
    _mm512_store_si512(t, acc0[r]);
    if constexpr (NB > 1) _mm512_store_si512(t + 16, acc1[r]);
    if constexpr (NB > 2) _mm512_store_si512(t + 32, acc2[r]);
    if constexpr (NB > 3) _mm512_store_si512(t + 48, acc3[r]);
  }
}
#undef TINYLARGE_S8_GEMM_STEP

using s8_gemm_tile_fn = void (*)(std::size_t, const std::int8_t*, std::size_t, const std::int8_t*,
                                 std::int32_t*) noexcept;
template <std::size_t NB, std::size_t... R>
constexpr auto make_s8_gemm_row(std::index_sequence<R...>) noexcept {
  struct row {
    s8_gemm_tile_fn fn[sizeof...(R)];
  };
  return row{{&s8_gemm_tile<R + 1, NB>...}};
}

/// Epilogue of one tile: v = tile + colcorr[o] + rowcorr[i], stored as int32
/// (`S8` false) or requantized to int8 (`S8` true) for `rows` × `cols`
/// outputs at out (row stride ldo).
template <bool S8, bool AnyLeft, bool Cap, class Out>
TINYLARGE_ALWAYS_INLINE void s8_gemm_epilogue(std::size_t rows, std::size_t cols, std::size_t o0,
                                              const std::int32_t* tile, const std::int32_t* colcorr,
                                              const std::int32_t* rowcorr, const dense_s8_params* p, Out* out,
                                              std::size_t ldo) noexcept {
  for (std::size_t j = 0; j * 16 < cols; ++j) {
    const std::size_t o = o0 + 16 * j;
    const auto mk = static_cast<__mmask16>(cols - 16 * j >= 16 ? 0xFFFFu : (1u << (cols - 16 * j)) - 1u);
    const __m512i cc = _mm512_load_si512(colcorr + 16 * j);
    if constexpr (S8) {
      const requantize_avx512 rq(
          p->per_channel ? _mm512_maskz_loadu_epi32(mk, p->multipliers + o) : _mm512_set1_epi32(p->multipliers[0]),
          p->per_channel ? _mm512_maskz_loadu_epi32(mk, p->shifts + o) : _mm512_set1_epi32(p->shifts[0]),
          _mm512_set1_epi32(p->output_zero_point), _mm512_set1_epi32(p->act_min), _mm512_set1_epi32(p->act_max));
      for (std::size_t r = 0; r < rows; ++r) {
        const __m512i a = _mm512_add_epi32(_mm512_add_epi32(_mm512_load_si512(tile + r * s8_gemm_layout::nr + 16 * j), cc),
                                           _mm512_set1_epi32(rowcorr[r]));
        _mm_mask_storeu_epi8(out + r * ldo + o, mk, _mm512_cvtepi32_epi8(rq.apply<AnyLeft, Cap>(a)));
      }
    } else {
      for (std::size_t r = 0; r < rows; ++r) {
        const __m512i a = _mm512_add_epi32(_mm512_add_epi32(_mm512_load_si512(tile + r * s8_gemm_layout::nr + 16 * j), cc),
                                           _mm512_set1_epi32(rowcorr[r]));
        _mm512_mask_storeu_epi32(out + r * ldo + o, mk, a);
      }
    }
  }
}

/// out (m×n) = X·W from the packed W: int32 accumulators (Out = int32) or
/// requantized int8 (Out = int8). Panels outer (one panel of W, ≤ 64·k bytes,
/// stays in L1/L2 while every row block of X streams past it), row blocks
/// inner, split evenly into blocks of at most `mr_max` rows.
template <bool AnyLeft, bool Cap, class Out>
void s8_gemm_packed(std::size_t m, std::size_t n, std::size_t k, const std::int8_t* x, const std::int8_t* packed,
                    const dense_s8_params* p, Out* out) noexcept {
  using L = s8_gemm_layout;
  constexpr bool s8 = std::is_same_v<Out, std::int8_t>;
  if (m == 0 || n == 0) return;
  static constexpr auto nb1 = make_s8_gemm_row<1>(std::make_index_sequence<L::mr_max>{});
  static constexpr auto nb2 = make_s8_gemm_row<2>(std::make_index_sequence<L::mr_max>{});
  static constexpr auto nb3 = make_s8_gemm_row<3>(std::make_index_sequence<L::mr_max>{});
  static constexpr auto nb4 = make_s8_gemm_row<4>(std::make_index_sequence<L::mr_max>{});
  static constexpr const s8_gemm_tile_fn* table[4] = {nb1.fn, nb2.fn, nb3.fn, nb4.fn};
  auto* rowcorr = thread_scratch<scratch_slot::pack_a>().get<std::int32_t>(m);
  s8_gemm_row_corrections(m, k, x, rowcorr);
  const auto* colcorr = reinterpret_cast<const std::int32_t*>(packed);
  const std::int8_t* pw = packed + L::weights_offset(n);
  const std::size_t blocks = (m + L::mr_max - 1) / L::mr_max, base = m / blocks, extra = m % blocks;
  alignas(64) std::int32_t tile[L::mr_max * L::nr];
  for (std::size_t jp = 0; jp < L::panels(n); ++jp, pw += L::panel_bytes(k)) {
    const std::size_t o0 = jp * L::nr, cols = std::min(L::nr, n - o0), nb = (cols + 15) / 16;
    std::size_t i = 0;
    for (std::size_t blk = 0; blk < blocks; ++blk) {
      const std::size_t rows = base + (blk < extra ? 1 : 0);
      table[nb - 1][rows - 1](k, x + i * k, k, pw, tile);
      s8_gemm_epilogue<s8, AnyLeft, Cap>(rows, cols, o0, tile, colcorr + o0, rowcorr + i, p, out + i * n, n);
      i += rows;
    }
  }
}
/// `s8_gemm_packed` with the requantization variant `p` needs (int8 out) or
/// none (int32 out, p may be null).
template <class Out>
void s8_gemm_packed_dispatch(std::size_t m, std::size_t n, std::size_t k, const std::int8_t* x,
                             const std::int8_t* packed, const dense_s8_params* p, Out* out) noexcept {
  if constexpr (std::is_same_v<Out, std::int8_t>) {
    const bool left = requantize_avx512::any_left_shift(n, *p), cap = requantize_avx512::any_min_multiplier(n, *p);
    if (left) {
      cap ? s8_gemm_packed<true, true>(m, n, k, x, packed, p, out) : s8_gemm_packed<true, false>(m, n, k, x, packed, p, out);
    } else {
      cap ? s8_gemm_packed<false, true>(m, n, k, x, packed, p, out)
          : s8_gemm_packed<false, false>(m, n, k, x, packed, p, out);
    }
  } else {
    s8_gemm_packed<false, false>(m, n, k, x, packed, p, out);
  }
}

/// y[o] = requantize_s8(acc[o], o, p) for o < n, 16 outputs per step with
/// `requantize_avx512` (bit-exact with the scalar function; the general
/// variant: left shifts and a multiplier of −2³¹ allowed in any lane).
inline void s8_requantize_avx512(std::size_t n, const std::int32_t* acc, const dense_s8_params& p,
                                 std::int8_t* y) noexcept {
  const __m512i zy = _mm512_set1_epi32(p.output_zero_point);
  const __m512i lo = _mm512_set1_epi32(p.act_min), hi = _mm512_set1_epi32(p.act_max);
  for (std::size_t o = 0; o < n; o += 16) {
    const auto mk = static_cast<__mmask16>(n - o >= 16 ? 0xFFFFu : (1u << (n - o)) - 1u);
    const __m512i mult =
        p.per_channel ? _mm512_maskz_loadu_epi32(mk, p.multipliers + o) : _mm512_set1_epi32(p.multipliers[0]);
    const __m512i shift = p.per_channel ? _mm512_maskz_loadu_epi32(mk, p.shifts + o) : _mm512_set1_epi32(p.shifts[0]);
    _mm512_mask_cvtepi32_storeu_epi8(
        y + o, mk, requantize_avx512(mult, shift, zy, lo, hi).apply<true>(_mm512_maskz_loadu_epi32(mk, acc + o)));
  }
}

/// Where the batch-1 GEMV writes its int32 accumulators: straight into `out`
/// for int32 output, into per-thread scratch (then requantized) for int8.
template <class Out>
TINYLARGE_ALWAYS_INLINE std::int32_t* out_acc(Out* out, std::size_t n) noexcept {
  if constexpr (std::is_same_v<Out, std::int8_t>) {
    return thread_scratch<scratch_slot::accum>().get<std::int32_t>(n);
  } else {
    return out;
  }
}

/// VNNI driver: out (m×n) = bias + Σ (x − zx)·w as int32, or requantized
/// to int8 (`p` then also gives the requantization); GEMV for m = 1, the
/// packed GEMM (W packed into per-thread scratch) otherwise.
template <class Out>
void s8_dense_vnni(std::size_t m, std::size_t n, std::size_t k, const std::int8_t* x, const std::int8_t* w,
                   const dense_s8_params& p, Out* out) noexcept {
  if (m == 0 || n == 0) return;
  if (m == 1) {
    const std::size_t kpad = (k + 63) / 64 * 64;
    auto* u = thread_scratch<scratch_slot::vector>().get<std::uint8_t>(kpad == 0 ? 64 : kpad);
    for (std::size_t q = 0; q < k; ++q) u[q] = static_cast<std::uint8_t>(static_cast<std::uint8_t>(x[q]) ^ 0x80u);
    for (std::size_t q = k; q < kpad; ++q) u[q] = 0;
    // int8 out: the accumulators go to scratch and are requantized 16 at a
    // time (`s8_requantize_avx512`), not one by one with the scalar
    // `requantize_s8` (which was half of the batch-1 time at 784×256).
    std::int32_t* acc = out_acc<Out>(out, n);
    auto st = [acc](std::size_t o, std::int32_t v) { acc[o] = v; };
    if (p.weight_row_sums != nullptr) {
      s8_vnni_gemv<true>(n, k, u, w, p, st);
    } else {
      s8_vnni_gemv<false>(n, k, u, w, p, st);
    }
    if constexpr (std::is_same_v<Out, std::int8_t>) s8_requantize_avx512(n, acc, p, out);
    return;
  }
  auto* packed = thread_scratch<scratch_slot::pack_b>().get<std::int8_t>(s8_gemm_layout::bytes(n, k));
  s8_gemm_pack(n, k, w, p, packed);
  s8_gemm_packed_dispatch(m, n, k, x, packed, &p, out);
}

// ---------------------------------------------------------------------------
// Pre-packed batch-1 GEMV (AVX-512 VNNI)
// ---------------------------------------------------------------------------

/// Layout of the packed batch-1 form of W (n×k int8) for `vpdpbusd`:
///
///     [64-byte header: int32 "some shift > 0"]
///     [corr: nb·16 int32, corr[o] = bias[o] − (128 + zx)·Σ_q w[o][q], 0 for o ≥ n]
///     [weights: chunk after chunk; chunk c (blocks b0..b0+B) is kq steps of
///      B·64 bytes: for each block, 16 outputs × 4 consecutive k-bytes]
///
/// with nb = ⌈n/16⌉ blocks of 16 outputs, kq = ⌈k/4⌉ and zeros past n and k.
/// One chunk holds at most 8 blocks (128 outputs, 8 zmm accumulators) and the
/// blocks are spread evenly over the chunks. The kernel then reads one
/// contiguous stream per chunk, broadcasts 4 bytes of u = x ^ 0x80 per step
/// and issues B `vpdpbusd`: no horizontal sums, and 16 outputs per register
/// go straight into the vector requantization.
struct s8_gemv_layout {
  static constexpr std::size_t max_blocks = 8;
  static constexpr std::size_t header = 64;
  static constexpr std::size_t blocks(std::size_t n) noexcept { return (n + 15) / 16; }
  static constexpr std::size_t quads(std::size_t k) noexcept { return (k + 3) / 4; }
  static constexpr std::size_t chunks(std::size_t n) noexcept { return (blocks(n) + max_blocks - 1) / max_blocks; }
  /// First block and block count of chunk c.
  static constexpr std::size_t chunk_first(std::size_t n, std::size_t c) noexcept {
    const std::size_t nb = blocks(n), ch = chunks(n), base = nb / ch, extra = nb % ch;
    return c * base + (c < extra ? c : extra);
  }
  static constexpr std::size_t chunk_blocks(std::size_t n, std::size_t c) noexcept {
    const std::size_t nb = blocks(n), ch = chunks(n);
    return nb / ch + (c < nb % ch ? 1 : 0);
  }
  static constexpr std::size_t weights_offset(std::size_t n) noexcept { return header + blocks(n) * 64; }
  static constexpr std::size_t bytes(std::size_t n, std::size_t k) noexcept {
    return n == 0 || k == 0 ? 0 : weights_offset(n) + blocks(n) * 64 * quads(k);
  }
};

/// One chunk of B blocks: y[o] = requantize(corr[o] + Σ_q u_q·w[o][q]) for the
/// 16·B outputs starting at o0 (stored only below n).
template <std::size_t B, bool AnyLeft>
TINYLARGE_NOINLINE void s8_gemv_chunk(std::size_t k, const std::int8_t* x, const std::int8_t* TINYLARGE_RESTRICT pw,
                                      const std::int32_t* corr, std::size_t o0, std::size_t n,
                                      const dense_s8_params& p, std::int8_t* y) noexcept {
  // Fewer than 4 blocks cannot hide the vpdpbusd latency: two accumulator sets
  // (even and odd k steps), added at the end (sums mod 2³², order-free).
  constexpr std::size_t S = B < 4 ? 2 : 1;
  __m512i acc[S][B];
#pragma GCC unroll 16
  for (std::size_t b = 0; b < B; ++b)
    for (std::size_t s = 0; s < S; ++s) acc[s][b] = _mm512_setzero_si512();
  const std::size_t kfull = k / 4;
  std::size_t q = 0;
  for (; q + S <= kfull; q += S) {
#pragma GCC unroll 2
    for (std::size_t s = 0; s < S; ++s) {
      const __m512i u = _mm512_set1_epi32(static_cast<int>(load_word(x + 4 * (q + s)) ^ 0x80808080u));
#pragma GCC unroll 16
      for (std::size_t b = 0; b < B; ++b)
        acc[s][b] = _mm512_dpbusd_epi32(acc[s][b], u, _mm512_load_si512(pw + ((q + s) * B + b) * 64));
    }
  }
  for (; q < (k + 3) / 4; ++q) {  // odd last full quad and / or the partial quad past k
    const std::size_t nb = k - 4 * q < 4 ? k - 4 * q : 4;
    const std::uint32_t valid = 0xFFFFFFFFu >> (32 - 8 * nb);
    const std::uint32_t word = (nb == 4 ? load_word(x + 4 * q) : load_word_partial(x + 4 * q, nb)) ^ 0x80808080u;
    const __m512i u = _mm512_set1_epi32(static_cast<int>(word & valid));
#pragma GCC unroll 16
    for (std::size_t b = 0; b < B; ++b)
      acc[0][b] = _mm512_dpbusd_epi32(acc[0][b], u, _mm512_load_si512(pw + (q * B + b) * 64));
  }
  const __m512i zy = _mm512_set1_epi32(p.output_zero_point);
  const __m512i lo = _mm512_set1_epi32(p.act_min), hi = _mm512_set1_epi32(p.act_max);
#pragma GCC unroll 16
  for (std::size_t b = 0; b < B; ++b) {
    const std::size_t o = o0 + 16 * b;
    if (o >= n) break;
    __m512i a = acc[0][b];
    if constexpr (S == 2) a = _mm512_add_epi32(a, acc[1][b]);
    a = _mm512_add_epi32(a, _mm512_load_si512(corr + o));
    const auto mk = static_cast<__mmask16>(n - o >= 16 ? 0xFFFFu : (1u << (n - o)) - 1u);
    const __m512i mult =
        p.per_channel ? _mm512_maskz_loadu_epi32(mk, p.multipliers + o) : _mm512_set1_epi32(p.multipliers[0]);
    const __m512i shift = p.per_channel ? _mm512_maskz_loadu_epi32(mk, p.shifts + o) : _mm512_set1_epi32(p.shifts[0]);
    _mm512_mask_cvtepi32_storeu_epi8(y + o, mk, requantize_avx512(mult, shift, zy, lo, hi).apply<AnyLeft>(a));
  }
}

using s8_gemv_chunk_fn = void (*)(std::size_t, const std::int8_t*, const std::int8_t*, const std::int32_t*,
                                  std::size_t, std::size_t, const dense_s8_params&, std::int8_t*) noexcept;
template <bool AnyLeft, std::size_t... I>
constexpr auto make_s8_gemv_table(std::index_sequence<I...>) noexcept {
  struct table {
    s8_gemv_chunk_fn fn[sizeof...(I)];
  };
  return table{{&s8_gemv_chunk<I + 1, AnyLeft>...}};
}

}  // namespace tinylarge::kernels::detail::TINYLARGE_KERNELS_ISA

namespace tinylarge::kernels::inline TINYLARGE_KERNELS_ISA {

/// int32 accumulators bias[o] + Σ_q (x[i][q] − zx)·w[o][q], AVX-512 VNNI back
/// end (exact; see `dense_s8_max_k`).
inline void dense_s8_s32(arch::avx512_vnni, std::size_t m, std::size_t n, std::size_t k, const std::int8_t* x,
                         const std::int8_t* w, const dense_s8_params& p, std::int32_t* acc) noexcept {
  detail::s8_dense_vnni(m, n, k, x, w, p, acc);
}

/// int8 dense with fused requantize and clamp, AVX-512 VNNI back end;
/// bit-exact with the scalar back end (requantization in AVX-512 in the GEMM
/// epilogue, see `detail::requantize_avx512`).
inline void dense_s8(arch::avx512_vnni, std::size_t m, std::size_t n, std::size_t k, const std::int8_t* x,
                     const std::int8_t* w, const dense_s8_params& p, std::int8_t* y) noexcept {
  detail::s8_dense_vnni(m, n, k, x, w, p, y);
}

/// Bytes of the packed GEMM form of an n×k int8 W (`detail::s8_gemm_layout`).
constexpr std::size_t dense_s8_gemm_packed_bytes(arch::avx512_vnni, std::size_t n, std::size_t k) noexcept {
  return detail::s8_gemm_layout::bytes(n, k);
}

/// Lay out W (n×k, row-major) once for `dense_s8_gemm_packed` /
/// `dense_s8_s32_gemm_packed` (any batch size), folding in the bias and the
/// input zero point of `p` (and its `weight_row_sums` when given). `dst`:
/// 64-byte aligned, `dense_s8_gemm_packed_bytes(…, n, k)` bytes.
inline void pack_dense_s8_gemm(arch::avx512_vnni, std::size_t n, std::size_t k, const std::int8_t* w,
                               const dense_s8_params& p, std::int8_t* dst) noexcept {
  detail::s8_gemm_pack(n, k, w, p, dst);
}

/// y (m×n) = dense_s8(m, n, k, x, W, p) from the packed W of
/// `pack_dense_s8_gemm` (same bias and input zero point; the requantization
/// and clamp are read from `p` here): bit-exact with the scalar back end.
inline void dense_s8_gemm_packed(arch::avx512_vnni, std::size_t m, std::size_t n, std::size_t k,
                                 const std::int8_t* x, const std::int8_t* packed, const dense_s8_params& p,
                                 std::int8_t* y) noexcept {
  detail::s8_gemm_packed_dispatch(m, n, k, x, packed, &p, y);
}

/// acc (m×n) = dense_s8_s32(m, n, k, x, W, p) from the packed W of
/// `pack_dense_s8_gemm` (bias and input zero point were folded in there).
inline void dense_s8_s32_gemm_packed(arch::avx512_vnni, std::size_t m, std::size_t n, std::size_t k,
                                     const std::int8_t* x, const std::int8_t* packed, std::int32_t* acc) noexcept {
  detail::s8_gemm_packed_dispatch(m, n, k, x, packed, static_cast<const dense_s8_params*>(nullptr), acc);
}

/// Bytes of the packed batch-1 form of an n×k int8 W (`detail::s8_gemv_layout`).
constexpr std::size_t dense_s8_packed_bytes(arch::avx512_vnni, std::size_t n, std::size_t k) noexcept {
  return detail::s8_gemv_layout::bytes(n, k);
}

/// Lay out W (n×k, row-major) for `dense_s8_packed`, folding in the input zero
/// point and bias of `p` (corr[o] = bias[o] − (128 + zx)·Σ_q w[o][q]) and
/// whether any shift is positive. `dst`: 64-byte aligned,
/// `dense_s8_packed_bytes(…, n, k)` bytes.
inline void pack_dense_s8(arch::avx512_vnni, std::size_t n, std::size_t k, const std::int8_t* w,
                          const dense_s8_params& p, std::int8_t* dst) noexcept {
  using L = detail::s8_gemv_layout;
  if (n == 0 || k == 0) return;
  const std::size_t nb = L::blocks(n), kq = L::quads(k);
  const std::int32_t any_left = detail::requantize_avx512::any_left_shift(n, p) ? 1 : 0;
  std::memcpy(dst, &any_left, sizeof any_left);
  auto* corr = reinterpret_cast<std::int32_t*>(dst + L::header);
  detail::s8_vnni_correction(n, k, w, p, corr);
  for (std::size_t o = n; o < nb * 16; ++o) corr[o] = 0;
  std::int8_t* pw = dst + L::weights_offset(n);
  for (std::size_t c = 0; c < L::chunks(n); ++c) {
    const std::size_t b0 = L::chunk_first(n, c), cb = L::chunk_blocks(n, c);
    for (std::size_t q = 0; q < kq; ++q)
      for (std::size_t b = 0; b < cb; ++b)
        for (std::size_t lane = 0; lane < 16; ++lane)
          for (std::size_t j = 0; j < 4; ++j) {
            const std::size_t o = (b0 + b) * 16 + lane, at = 4 * q + j;
            *pw++ = o < n && at < k ? w[o * k + at] : std::int8_t{0};
          }
  }
}

/// y = dense_s8(1, n, k, x, W, p, y) from the packed W of `pack_dense_s8`
/// (same p, apart from multipliers, output zero point and clamp, which are
/// read here): bit-exact with the scalar back end.
inline void dense_s8_packed(arch::avx512_vnni, std::size_t n, std::size_t k, const std::int8_t* x,
                            const std::int8_t* packed, const dense_s8_params& p, std::int8_t* y) noexcept {
  using L = detail::s8_gemv_layout;
  if (n == 0) return;
  if (k == 0) {  // y = requantize(bias)
    for (std::size_t o = 0; o < n; ++o) y[o] = requantize_s8(p.bias ? p.bias[o] : 0, o, p);
    return;
  }
  static constexpr auto left = detail::make_s8_gemv_table<true>(std::make_index_sequence<L::max_blocks>{});
  static constexpr auto right = detail::make_s8_gemv_table<false>(std::make_index_sequence<L::max_blocks>{});
  std::int32_t any_left = 0;
  std::memcpy(&any_left, packed, sizeof any_left);
  const detail::s8_gemv_chunk_fn* table = any_left != 0 ? left.fn : right.fn;
  const auto* corr = reinterpret_cast<const std::int32_t*>(packed + L::header);
  const std::int8_t* pw = packed + L::weights_offset(n);
  const std::size_t kq = L::quads(k);
  for (std::size_t c = 0; c < L::chunks(n); ++c) {
    const std::size_t b0 = L::chunk_first(n, c), cb = L::chunk_blocks(n, c);
    table[cb - 1](k, x, pw, corr, 16 * b0, n, p, y);
    pw += cb * 64 * kq;
  }
}
}  // namespace tinylarge::kernels::TINYLARGE_KERNELS_ISA

#endif  // AVX-512 VNNI

#if defined(TINYLARGE_KERNELS_S8_POP_DIAGNOSTIC)
#pragma GCC diagnostic pop
#undef TINYLARGE_KERNELS_S8_POP_DIAGNOSTIC
#endif
#endif  // AVX2
