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
/// final value fits in int32. For m ≥ 2 this is a packed GEMM with the
/// structure of the fp32 one (14×32 int32 register tile, 28 accumulators): B is
/// packed as [k/4][32 columns][4 bytes] so one aligned zmm load feeds 16
/// columns × 4 k, and A as [k/4][14 rows][4 bytes] for 32-bit broadcasts.
/// For m = 1 it is a GEMV (4 rows per pass, 64 bytes of k per instruction).
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
#include <utility>

#include "scratch.hpp"
#include "x86_common.hpp"  // transpose8x8

// GCC 12's AVX-512 intrinsics pass `_mm512_undefined_epi32()` (a
// self-initialised variable) as the pass-through operand, which -Wall reports
// as -Wmaybe-uninitialized at every inlined use (GCC bug 105593, fixed in 13).
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ < 13
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#define TINYLARGE_KERNELS_S8_POP_DIAGNOSTIC 1
#endif

namespace tinylarge::kernels::detail {

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

}  // namespace tinylarge::kernels::detail

namespace tinylarge::kernels {

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

}  // namespace tinylarge::kernels

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512DQ__) && defined(__AVX512VL__) && \
    defined(__AVX512VNNI__)

namespace tinylarge::kernels::detail {

/// Blocking of the VNNI int8 GEMM (k counted in groups of four bytes).
struct s8_vnni_blocking {
  static constexpr std::size_t mr = 14;    ///< register tile rows
  static constexpr std::size_t nr = 32;    ///< register tile columns (2 zmm of int32)
  static constexpr std::size_t kcq = 256;  ///< k block: 1024 bytes of k
  static constexpr std::size_t mc = 10 * mr;
  static constexpr std::size_t nc = 4096;
};

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

/// One register tile: C[0:R, 0:ncols] = Σ_kq dpbusd(Ã, B̃) + (init ? init[col] : C).
template <std::size_t R>
TINYLARGE_NOINLINE void s8_vnni_micro_kernel(std::size_t kcq, const std::uint32_t* TINYLARGE_RESTRICT pa,
                                             const std::int32_t* TINYLARGE_RESTRICT pb, std::int32_t* c,
                                             std::size_t ldc, std::size_t ncols, const std::int32_t* init) noexcept {
  __m512i c0[R], c1[R];
#pragma GCC unroll 16
  for (std::size_t r = 0; r < R; ++r) {
    c0[r] = _mm512_setzero_si512();
    c1[r] = _mm512_setzero_si512();
  }
  for (std::size_t q = 0; q < kcq; ++q) {
    const __m512i b0 = _mm512_load_si512(pb), b1 = _mm512_load_si512(pb + 16);
#pragma GCC unroll 16
    for (std::size_t r = 0; r < R; ++r) {
      const __m512i a = _mm512_set1_epi32(static_cast<int>(pa[r]));
      c0[r] = _mm512_dpbusd_epi32(c0[r], a, b0);
      c1[r] = _mm512_dpbusd_epi32(c1[r], a, b1);
    }
    pa += R;
    pb += 32;
  }
  // The tile goes through an aligned local buffer with plain stores: using
  // the accumulators directly in masked int32 intrinsics makes GCC 12 keep
  // the whole accumulator array in memory inside the k loop (5× slower).
  alignas(64) std::int32_t tile[R][32];
#pragma GCC unroll 16
  for (std::size_t r = 0; r < R; ++r) {
    _mm512_store_si512(tile[r], c0[r]);
    _mm512_store_si512(tile[r] + 16, c1[r]);
  }
  const std::size_t n0 = ncols < 16 ? ncols : 16, n1 = ncols - n0;
  const auto m0 = static_cast<__mmask16>((1u << n0) - 1u), m1 = static_cast<__mmask16>((1u << n1) - 1u);
  // The addend is the per-column init row (stride 0) on the first k block and
  // C itself afterwards.
  const std::int32_t* add = init != nullptr ? init : c;
  const std::size_t add_ld = init != nullptr ? 0 : ldc;
  for (std::size_t r = 0; r < R; ++r) {
    std::int32_t* cr = c + r * ldc;
    const std::int32_t* ar = add + r * add_ld;
    _mm512_mask_storeu_epi32(cr, m0, _mm512_add_epi32(_mm512_load_si512(tile[r]), _mm512_maskz_loadu_epi32(m0, ar)));
    _mm512_mask_storeu_epi32(cr + 16, m1,
                             _mm512_add_epi32(_mm512_load_si512(tile[r] + 16), _mm512_maskz_loadu_epi32(m1, ar + 16)));
  }
}

using s8_micro_kernel_fn = void (*)(std::size_t, const std::uint32_t*, const std::int32_t*, std::int32_t*,
                                    std::size_t, std::size_t, const std::int32_t*) noexcept;
template <std::size_t... I>
constexpr auto make_s8_kernel_table(std::index_sequence<I...>) noexcept {
  struct table {
    s8_micro_kernel_fn fn[sizeof...(I)];
  };
  return table{{&s8_vnni_micro_kernel<I + 1>...}};
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

/// Packs MR-row panels of u = x ^ 0x80 as words of 4 k-bytes: panel at
/// dst + ir·kcq holds kcq steps of R words; bytes past k are zero.
inline void s8_pack_a(std::uint32_t* TINYLARGE_RESTRICT dst, const std::int8_t* x, std::size_t k, std::size_t i0,
                      std::size_t mc, std::size_t q0, std::size_t kcq) noexcept {
  constexpr std::size_t MR = s8_vnni_blocking::mr;
  const std::size_t full = std::min(kcq, k / 4 > q0 ? k / 4 - q0 : 0);  // quads entirely inside k
  for (std::size_t ir = 0; ir < mc; ir += MR) {
    const std::size_t rows = std::min(MR, mc - ir);
    std::uint32_t* d = dst + ir * kcq;
    for (std::size_t r = 0; r < rows; ++r) {
      const std::int8_t* src = x + (i0 + ir + r) * k + 4 * q0;
      for (std::size_t q = 0; q < full; ++q) d[q * rows + r] = load_word(src + 4 * q) ^ 0x80808080u;
      for (std::size_t q = full; q < kcq; ++q) {
        const std::size_t at = 4 * (q0 + q);
        const std::size_t nb = at < k ? k - at : 0;  // < 4 here
        const std::uint32_t valid = nb == 0 ? 0u : (0xFFFFFFFFu >> (32 - 8 * nb));
        d[q * rows + r] = (load_word_partial(src + 4 * q, nb) ^ 0x80808080u) & valid;
      }
    }
  }
}

/// Packs NR-column panels of W (n×k int8, row stride k) as [kq][NR] words of
/// four consecutive k-bytes of one row; columns ≥ n and bytes past k are zero.
inline void s8_pack_b(std::int32_t* TINYLARGE_RESTRICT dst, const std::int8_t* w, std::size_t k, std::size_t j0,
                      std::size_t nc, std::size_t q0, std::size_t kcq) noexcept {
  constexpr std::size_t NR = s8_vnni_blocking::nr;
  const std::size_t full = std::min(kcq, k / 4 > q0 ? k / 4 - q0 : 0);
  for (std::size_t jr = 0; jr < nc; jr += NR) {
    const std::size_t cols = std::min(NR, nc - jr);
    float* d = reinterpret_cast<float*>(dst + jr * kcq);  // bit patterns only: 8×8 word transposes
    std::size_t jj = 0;
    for (; jj + 8 <= cols; jj += 8) {
      const std::int8_t* src = w + (j0 + jr + jj) * k + 4 * q0;
      std::size_t q = 0;
      for (; q + 8 <= full; q += 8) {
        __m256 r[8];
        for (std::size_t t = 0; t < 8; ++t)
          r[t] = _mm256_castsi256_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + t * k + 4 * q)));
        transpose8x8(r);
        for (std::size_t t = 0; t < 8; ++t) _mm256_storeu_ps(d + (q + t) * NR + jj, r[t]);
      }
      for (; q < full; ++q)
        for (std::size_t t = 0; t < 8; ++t)
          dst[jr * kcq + q * NR + jj + t] = static_cast<std::int32_t>(load_word(src + t * k + 4 * q));
    }
    for (; jj < cols; ++jj) {
      const std::int8_t* src = w + (j0 + jr + jj) * k + 4 * q0;
      for (std::size_t q = 0; q < full; ++q)
        dst[jr * kcq + q * NR + jj] = static_cast<std::int32_t>(load_word(src + 4 * q));
    }
    for (std::size_t q = full; q < kcq; ++q) {  // partial quad at the end of k
      const std::size_t at = 4 * (q0 + q);
      const std::size_t nb = at < k ? k - at : 0;
      for (std::size_t t = 0; t < cols; ++t)
        dst[jr * kcq + q * NR + t] =
            static_cast<std::int32_t>(load_word_partial(w + (j0 + jr + t) * k + at, nb));
    }
    for (std::size_t t = cols; t < NR; ++t)
      for (std::size_t q = 0; q < kcq; ++q) dst[jr * kcq + q * NR + t] = 0;
  }
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

/// Packed VNNI GEMM: acc (m×n, row stride ldc) = corr[o] + Σ_q u[i][q]·w[o][q].
inline void s8_vnni_gemm(std::size_t m, std::size_t n, std::size_t k, const std::int8_t* x, const std::int8_t* w,
                         const std::int32_t* corr, std::int32_t* acc, std::size_t ldc) noexcept {
  using B = s8_vnni_blocking;
  constexpr std::size_t MR = B::mr, NR = B::nr, KCQ = B::kcq, MC = B::mc, NC = B::nc;
  static constexpr auto kernels = make_s8_kernel_table(std::make_index_sequence<MR>{});
  const std::size_t kq = (k + 3) / 4;
  const std::size_t kblocks = kq == 0 ? 1 : (kq + KCQ - 1) / KCQ;
  const std::size_t kcb = kq == 0 ? 1 : (kq + kblocks - 1) / kblocks;
  const std::size_t ncb = std::min(NC, (n + NR - 1) / NR * NR);
  const std::size_t mcb = std::min(MC, (m + MR - 1) / MR * MR);
  auto* bbuf = thread_scratch<scratch_slot::pack_b>().get<std::int32_t>(kcb * ncb);
  auto* abuf = thread_scratch<scratch_slot::pack_a>().get<std::uint32_t>(kcb * mcb);
  for (std::size_t jc = 0; jc < n; jc += NC) {
    const std::size_t nc = std::min(NC, n - jc);
    for (std::size_t pc = 0; pc < std::max<std::size_t>(kq, 1); pc += kcb) {
      const std::size_t kc = kq == 0 ? 0 : std::min(kcb, kq - pc);
      s8_pack_b(bbuf, w, k, jc, nc, pc, kc);
      for (std::size_t ic = 0; ic < m; ic += MC) {
        const std::size_t mc = std::min(MC, m - ic);
        s8_pack_a(abuf, x, k, ic, mc, pc, kc);
        for (std::size_t jr = 0; jr < nc; jr += NR) {
          const std::size_t ncols = std::min(NR, nc - jr);
          const std::int32_t* init = pc == 0 ? corr + jc + jr : nullptr;
          for (std::size_t ir = 0; ir < mc; ir += MR) {
            const std::size_t rows = std::min(MR, mc - ir);
            kernels.fn[rows - 1](kc, abuf + ir * kc, bbuf + jr * kc, acc + (ic + ir) * ldc + jc + jr, ldc, ncols,
                                 init);
          }
        }
      }
    }
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
  for (; o + 4 <= n; o += 4) {
    __m512i acc[4], sw[4];
    for (std::size_t r = 0; r < 4; ++r) acc[r] = sw[r] = _mm512_setzero_si512();
    for (std::size_t q = 0; q < kfull; q += 64) {
      const __m512i uv = _mm512_load_si512(u + q);
#pragma GCC unroll 4
      for (std::size_t r = 0; r < 4; ++r) {
        const __m512i wv = _mm512_loadu_si512(w + (o + r) * k + q);
        acc[r] = _mm512_dpbusd_epi32(acc[r], uv, wv);
        if constexpr (!HaveRowSums) sw[r] = _mm512_dpbusd_epi32(sw[r], ones, wv);
      }
    }
    if (ktail != 0) {
      const __m512i uv = _mm512_load_si512(u + kfull);
      for (std::size_t r = 0; r < 4; ++r) {
        const __m512i wv = _mm512_maskz_loadu_epi8(tail_mask, w + (o + r) * k + kfull);
        acc[r] = _mm512_dpbusd_epi32(acc[r], uv, wv);
        if constexpr (!HaveRowSums) sw[r] = _mm512_dpbusd_epi32(sw[r], ones, wv);
      }
    }
    for (std::size_t r = 0; r < 4; ++r)
      finish(o + r, reduce_add_s32(acc[r]), HaveRowSums ? 0 : reduce_add_s32(sw[r]));
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
/// `multiply_by_quantized_multiplier` + zero point + clamp (requantize.hpp):
/// saturating left shift, SaturatingRoundingDoublingHighMul with 64-bit
/// products of the even and odd lanes (`vpmuldq`) and truncating division by
/// 2³¹, RoundingDivideByPOT with per-lane shifts. Shifts must be in [−31, 30]
/// (what `quantize_multiplier` produces), as for the scalar function.
struct requantize_avx512 {
  /// (p + nudge) / 2³¹ truncated toward zero, for the 64-bit products p.
  static TINYLARGE_ALWAYS_INLINE __m512i high_half(__m512i p) noexcept {
    const __m512i zero = _mm512_setzero_si512();
    const __mmask8 neg = _mm512_cmplt_epi64_mask(p, zero);
    __m512i x = _mm512_add_epi64(p, _mm512_mask_blend_epi64(neg, _mm512_set1_epi64(1LL << 30),
                                                            _mm512_set1_epi64(1 - (1LL << 30))));
    const __mmask8 xneg = _mm512_cmplt_epi64_mask(x, zero);
    x = _mm512_mask_add_epi64(x, xneg, x, _mm512_set1_epi64((1LL << 31) - 1));
    return _mm512_srai_epi64(x, 31);
  }

  /// clamp(zy + MultiplyByQuantizedMultiplier(acc, mult, shift), lo, hi).
  /// `any_left`: some lane may have shift > 0.
  template <bool AnyLeft>
  static TINYLARGE_ALWAYS_INLINE __m512i apply(__m512i acc, __m512i mult, __m512i shift, __m512i zy, __m512i lo,
                                               __m512i hi) noexcept {
    const __m512i zero = _mm512_setzero_si512(), one = _mm512_set1_epi32(1);
    const __m512i int_min = _mm512_set1_epi32(std::numeric_limits<std::int32_t>::min());
    const __m512i int_max = _mm512_set1_epi32(std::numeric_limits<std::int32_t>::max());
    __m512i a = acc;
    if constexpr (AnyLeft) {  // acc·2^left, saturated to int32
      const __m512i left = _mm512_max_epi32(shift, zero);
      const __m512i shifted = _mm512_sllv_epi32(acc, left);
      const __mmask16 overflow = _mm512_cmpneq_epi32_mask(_mm512_srav_epi32(shifted, left), acc);
      const __m512i saturated = _mm512_xor_si512(_mm512_srai_epi32(acc, 31), int_max);  // acc < 0 ? MIN : MAX
      a = _mm512_mask_mov_epi32(shifted, overflow, saturated);
    }
    const __m512i right = _mm512_max_epi32(_mm512_sub_epi32(zero, shift), zero);
    // SaturatingRoundingDoublingHighMul(a, mult): even lanes, then odd lanes.
    const __m512i even = high_half(_mm512_mul_epi32(a, mult));
    const __m512i odd = high_half(_mm512_mul_epi32(_mm512_srli_epi64(a, 32), _mm512_srli_epi64(mult, 32)));
    __m512i x = _mm512_mask_blend_epi32(0xAAAA, even, _mm512_slli_epi64(odd, 32));
    const __mmask16 both_min = _mm512_cmpeq_epi32_mask(a, int_min) & _mm512_cmpeq_epi32_mask(mult, int_min);
    x = _mm512_mask_mov_epi32(x, both_min, int_max);
    // RoundingDivideByPOT(x, right).
    const __m512i mask = _mm512_sub_epi32(_mm512_sllv_epi32(one, right), one);
    const __m512i remainder = _mm512_and_si512(x, mask);
    const __m512i threshold = _mm512_add_epi32(_mm512_srai_epi32(mask, 1), _mm512_srli_epi32(x, 31));
    __m512i v = _mm512_srav_epi32(x, right);
    v = _mm512_mask_add_epi32(v, _mm512_cmpgt_epi32_mask(remainder, threshold), v, one);
    v = _mm512_add_epi32(v, zy);
    return _mm512_min_epi32(_mm512_max_epi32(v, lo), hi);
  }

  template <bool AnyLeft>
  static void row_impl(const std::int32_t* acc, std::size_t n, const dense_s8_params& p, std::int8_t* y) noexcept {
    const __m512i zy = _mm512_set1_epi32(p.output_zero_point);
    const __m512i lo = _mm512_set1_epi32(p.act_min), hi = _mm512_set1_epi32(p.act_max);
    __m512i mult = _mm512_set1_epi32(p.multipliers[0]), shift = _mm512_set1_epi32(p.shifts[0]);
    std::size_t o = 0;
    for (; o + 16 <= n; o += 16) {
      if (p.per_channel) {
        mult = _mm512_loadu_si512(p.multipliers + o);
        shift = _mm512_loadu_si512(p.shifts + o);
      }
      _mm_storeu_si128(reinterpret_cast<__m128i*>(y + o),
                       _mm512_cvtepi32_epi8(apply<AnyLeft>(_mm512_loadu_si512(acc + o), mult, shift, zy, lo, hi)));
    }
    if (o < n) {
      const auto mk = static_cast<__mmask16>((1u << (n - o)) - 1u);
      if (p.per_channel) {
        mult = _mm512_maskz_loadu_epi32(mk, p.multipliers + o);
        shift = _mm512_maskz_loadu_epi32(mk, p.shifts + o);
      }
      _mm512_mask_cvtepi32_storeu_epi8(y + o, mk,
                                       apply<AnyLeft>(_mm512_maskz_loadu_epi32(mk, acc + o), mult, shift, zy, lo, hi));
    }
  }

  /// True when some channel has a left shift (real multiplier ≥ 1).
  static bool any_left_shift(std::size_t n, const dense_s8_params& p) noexcept {
    const std::size_t count = p.per_channel ? n : 1;
    for (std::size_t c = 0; c < count; ++c)
      if (p.shifts[c] > 0) return true;
    return false;
  }

  /// y[i][o] = requantize_s8(acc[i][o], o, p) for an m×n block.
  static void rows(const std::int32_t* acc, std::size_t m, std::size_t n, const dense_s8_params& p,
                   std::int8_t* y) noexcept {
    if (any_left_shift(n, p)) {
      for (std::size_t i = 0; i < m; ++i) row_impl<true>(acc + i * n, n, p, y + i * n);
    } else {
      for (std::size_t i = 0; i < m; ++i) row_impl<false>(acc + i * n, n, p, y + i * n);
    }
  }
};
static_assert(sizeof(int) == sizeof(std::int32_t), "shifts are loaded as int32 lanes");

/// VNNI driver: acc (m×n) = bias + Σ (x − zx)·w; GEMV for m = 1, packed GEMM
/// otherwise.
inline void s8_dense_vnni(std::size_t m, std::size_t n, std::size_t k, const std::int8_t* x, const std::int8_t* w,
                          const dense_s8_params& p, std::int32_t* acc) noexcept {
  if (m == 0 || n == 0) return;
  if (m == 1) {
    const std::size_t kpad = (k + 63) / 64 * 64;
    auto* u = thread_scratch<scratch_slot::vector>().get<std::uint8_t>(kpad == 0 ? 64 : kpad);
    for (std::size_t q = 0; q < k; ++q) u[q] = static_cast<std::uint8_t>(static_cast<std::uint8_t>(x[q]) ^ 0x80u);
    for (std::size_t q = k; q < kpad; ++q) u[q] = 0;
    auto st = [acc](std::size_t o, std::int32_t v) { acc[o] = v; };
    if (p.weight_row_sums != nullptr) {
      s8_vnni_gemv<true>(n, k, u, w, p, st);
    } else {
      s8_vnni_gemv<false>(n, k, u, w, p, st);
    }
    return;
  }
  auto* corr = thread_scratch<scratch_slot::column>().get<std::int32_t>(n);
  s8_vnni_correction(n, k, w, p, corr);
  s8_vnni_gemm(m, n, k, x, w, corr, acc, n);
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
    _mm512_mask_cvtepi32_storeu_epi8(y + o, mk, requantize_avx512::apply<AnyLeft>(a, mult, shift, zy, lo, hi));
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

}  // namespace tinylarge::kernels::detail

namespace tinylarge::kernels {

/// int32 accumulators bias[o] + Σ_q (x[i][q] − zx)·w[o][q], AVX-512 VNNI back
/// end (exact; see `dense_s8_max_k`).
inline void dense_s8_s32(arch::avx512_vnni, std::size_t m, std::size_t n, std::size_t k, const std::int8_t* x,
                         const std::int8_t* w, const dense_s8_params& p, std::int32_t* acc) noexcept {
  detail::s8_dense_vnni(m, n, k, x, w, p, acc);
}

/// int8 dense with fused requantize and clamp, AVX-512 VNNI back end;
/// bit-exact with the scalar back end (requantization in AVX-512, see
/// `detail::requantize_avx512`).
inline void dense_s8(arch::avx512_vnni, std::size_t m, std::size_t n, std::size_t k, const std::int8_t* x,
                     const std::int8_t* w, const dense_s8_params& p, std::int8_t* y) noexcept {
  if (m == 0 || n == 0) return;
  auto* acc = detail::thread_scratch<detail::scratch_slot::accum>().get<std::int32_t>(m * n);
  dense_s8_s32(arch::avx512_vnni{}, m, n, k, x, w, p, acc);
  detail::requantize_avx512::rows(acc, m, n, p, y);
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
}  // namespace tinylarge::kernels

#endif  // AVX-512 VNNI

#if defined(TINYLARGE_KERNELS_S8_POP_DIAGNOSTIC)
#pragma GCC diagnostic pop
#undef TINYLARGE_KERNELS_S8_POP_DIAGNOSTIC
#endif
#endif  // AVX2
