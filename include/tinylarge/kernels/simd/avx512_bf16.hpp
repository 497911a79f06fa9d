/// @file kernels/simd/avx512_bf16.hpp
/// @brief bfloat16 GEMM / dense on AVX512-BF16 (`arch::avx512_bf16`):
///        `vdpbf16ps` in the micro-kernel of the fp32 blocked GEMM.
///        Internal: include `kernels/dense.hpp`.
///
/// `vdpbf16ps` multiplies 16 pairs of bfloat16 values and adds both products
/// of each pair to one fp32 lane: twice the multiply-adds of an fp32 FMA per
/// instruction. The GEMM is the driver of `simd/f32.hpp` (`gemm_blocked`,
/// same blocking, 14×32 tile, 28 zmm accumulators, same epilogue
/// `store_tile`) with operands packed as k pairs: a panel step of A is MR
/// 32-bit words {A[i][2p], A[i][2p+1]} (broadcast per row), a step of B is
/// NR words {B[2p][j], B[2p+1][j]} (two zmm loads). An odd k is padded with a
/// zero pair half. The GEMV (m = 1 with op(B) = Bᵀ, and batch-1
/// `dense<bfloat16, bfloat16>`) runs `vdpbf16ps` on 32 k-elements of 8 rows of
/// W at a time against one chunk of x (`bf16_gemv_rows`).
///
/// Numerics: each bfloat16 product is exact in fp32 and is added with one
/// round-to-nearest-even step, so the error is the fp32 summation bound of
/// the other back ends; but `vdpbf16ps` treats subnormal inputs and results
/// as zero (DAZ/FTZ), an extra absolute error of at most 2⁻¹²⁶ per addition,
/// k·2⁻¹²⁶ per output (tests/test_kernels.cpp checks 2(k+4)·2⁻²⁴·Σ|terms| +
/// k·2⁻¹²⁰). The `dense<float, bfloat16>` forms (an fp32 X is not rounded to
/// bfloat16) and `gemm<bfloat16>` with m = 1 and op(B) = B keep the widening
/// kernels of `arch::avx512`.
#pragma once

#if !defined(TINYLARGE_KERNELS_DENSE_SCALAR_DECLARED)
#error "internal header: include <tinylarge/kernels/dense.hpp> instead"
#endif

#if defined(__AVX512BF16__) && XSIMD_WITH_AVX512BW && defined(__AVX512VL__) && defined(__F16C__)

#include <immintrin.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <utility>

namespace tinylarge::kernels::detail::inline TINYLARGE_KERNELS_ISA {

using bf16_ops = f32_ops<xsimd::avx512bw>;

/// The bf16-pair micro-kernel: C[0:R, 0:ncols] = alpha·Σ_steps Ã·B̃ + beta·C;
/// Ã: ks steps of R words, B̃: ks steps of NR = 32 words (64-byte aligned).
template <std::size_t R>
TINYLARGE_NOINLINE void bf16_micro_kernel(std::size_t ks, const std::uint32_t* TINYLARGE_RESTRICT pa,
                                          const std::uint32_t* TINYLARGE_RESTRICT pb, float* c, std::size_t ldc,
                                          std::size_t ncols, float alpha, float beta) noexcept {
  using V = bf16_ops;
  typename V::reg c0[R], c1[R];
  __m512 a0[R], a1[R];
#pragma GCC unroll 16
  for (std::size_t r = 0; r < R; ++r) {
    a0[r] = _mm512_setzero_ps();
    a1[r] = _mm512_setzero_ps();
  }
  for (std::size_t p = 0; p < ks; ++p) {
    const __m512bh b0 = (__m512bh)_mm512_load_si512(pb), b1 = (__m512bh)_mm512_load_si512(pb + 16);
#pragma GCC unroll 16
    for (std::size_t r = 0; r < R; ++r) {
      const __m512bh a = (__m512bh)_mm512_set1_epi32(static_cast<int>(pa[r]));
      a0[r] = _mm512_dpbf16_ps(a0[r], a, b0);
      a1[r] = _mm512_dpbf16_ps(a1[r], a, b1);
    }
    pa += R;
    pb += 32;
  }
#pragma GCC unroll 16
  for (std::size_t r = 0; r < R; ++r) {
    c0[r] = a0[r];
    c1[r] = a1[r];
  }
  store_tile<V, R>(c0, c1, c, ldc, ncols, alpha, beta);
}

template <std::size_t... I>
constexpr auto make_bf16_micro_kernels(std::index_sequence<I...>) noexcept {
  struct table {
    gemm_micro_kernel_fn<std::uint32_t> fn[sizeof...(I)];
  };
  return table{{&bf16_micro_kernel<I + 1>...}};
}
/// The bf16-pair micro-kernels as `gemm_blocked` sees them (k pairs per step).
struct bf16_micro_kernels {
  using elem = std::uint32_t;
  static constexpr std::size_t kstep = 2;
  static constexpr auto table = make_bf16_micro_kernels(std::make_index_sequence<bf16_ops::mr>{});
};
static_assert(bf16_ops::nr == 32);

/// The word {v[2p], v[2p+1]} of a row of k bfloat16 at stride `step` (the
/// second half zero when 2p + 1 = k).
TINYLARGE_ALWAYS_INLINE std::uint32_t bf16_pair(const bfloat16* v, std::size_t step, std::size_t p2,
                                                std::size_t k) noexcept {
  const std::uint32_t lo = v[2 * p2 * step].bits;
  const std::uint32_t hi = 2 * p2 + 1 < k ? v[(2 * p2 + 1) * step].bits : 0u;
  return lo | (hi << 16);
}

/// Packs MR-row panels of op(A) as k pairs: panel at dst + ir·ks.
struct pack_a_bf16 {
  const bfloat16* a;
  std::size_t lda;
  bool trans;
  void operator()(std::uint32_t* TINYLARGE_RESTRICT dst, std::size_t i0, std::size_t mc, std::size_t p0,
                  std::size_t kc) const noexcept {
    constexpr std::size_t MR = bf16_ops::mr;
    const std::size_t ks = (kc + 1) / 2;
    for (std::size_t ir = 0; ir < mc; ir += MR) {
      const std::size_t rows = std::min(MR, mc - ir);
      std::uint32_t* d = dst + ir * ks;
      for (std::size_t r = 0; r < rows; ++r) {
        const std::size_t i = i0 + ir + r;
        const bfloat16* row = trans ? a + p0 * lda + i : a + i * lda + p0;  // op(A)[i][p0 + q] = row[q·step]
        const std::size_t step = trans ? lda : 1;
        for (std::size_t p2 = 0; p2 < ks; ++p2) d[p2 * rows + r] = bf16_pair(row, step, p2, kc);
      }
    }
  }
};

/// Packs NR-column panels of op(B) as k pairs: panel at dst + jr·ks, zero
/// beyond column n.
struct pack_b_bf16 {
  const bfloat16* b;
  std::size_t ldb;
  bool trans;
  void operator()(std::uint32_t* TINYLARGE_RESTRICT dst, std::size_t j0, std::size_t nc, std::size_t p0,
                  std::size_t kc) const noexcept {
    constexpr std::size_t NR = bf16_ops::nr;
    const std::size_t ks = (kc + 1) / 2;
    for (std::size_t jr = 0; jr < nc; jr += NR) {
      const std::size_t cols = std::min(NR, nc - jr);
      std::uint32_t* d = dst + jr * ks;
      if (trans) {  // op(B)[p][j] = b[j·ldb + p]: a pair is one 32-bit word of row j
        for (std::size_t j = 0; j < cols; ++j) {
          const bfloat16* row = b + (j0 + jr + j) * ldb + p0;
          const std::size_t full = kc / 2;
          for (std::size_t p2 = 0; p2 < full; ++p2) {
            std::uint32_t wv;
            std::memcpy(&wv, row + 2 * p2, sizeof wv);
            d[p2 * NR + j] = wv;
          }
          if (full < ks) d[full * NR + j] = row[2 * full].bits;
        }
      } else {  // op(B)[p][j] = b[p·ldb + j]: interleave two rows
        for (std::size_t p2 = 0; p2 < ks; ++p2) {
          const bfloat16* r0 = b + (p0 + 2 * p2) * ldb + j0 + jr;
          const bfloat16* r1 = 2 * p2 + 1 < kc ? r0 + ldb : nullptr;
          for (std::size_t j = 0; j < cols; ++j)
            d[p2 * NR + j] = r0[j].bits | (r1 != nullptr ? static_cast<std::uint32_t>(r1[j].bits) << 16 : 0u);
        }
      }
      for (std::size_t p2 = 0; p2 < ks; ++p2)
        for (std::size_t j = cols; j < NR; ++j) d[p2 * NR + j] = 0u;
    }
  }
};

/// GEMV over the rows of W with `vdpbf16ps`: store(j, Σ_p x[p]·W[j][p]) for
/// j < n, W row j at w + j·ldw; 8 rows per pass share each 32-element chunk
/// of x; the k tail is a zero-masked load (zero pairs add nothing).
template <class Store>
void bf16_gemv_rows(std::size_t n, std::size_t k, const bfloat16* x, const bfloat16* w, std::size_t ldw,
                    Store&& store) noexcept {
  const std::size_t kfull = k / 32 * 32, ktail = k - kfull;
  const __mmask32 tail = static_cast<__mmask32>((std::uint64_t{1} << ktail) - 1u);
  auto chunk = [](const bfloat16* p) noexcept { return (__m512bh)_mm512_loadu_si512(p); };
  auto chunk_n = [tail](const bfloat16* p) noexcept { return (__m512bh)_mm512_maskz_loadu_epi16(tail, p); };
  std::size_t j = 0;
  for (; j + 8 <= n; j += 8) {
    __m512 acc[8];
#pragma GCC unroll 8
    for (std::size_t r = 0; r < 8; ++r) acc[r] = _mm512_setzero_ps();
    for (std::size_t p = 0; p < kfull; p += 32) {
      const __m512bh xv = chunk(x + p);
#pragma GCC unroll 8
      for (std::size_t r = 0; r < 8; ++r) acc[r] = _mm512_dpbf16_ps(acc[r], chunk(w + (j + r) * ldw + p), xv);
    }
    if (ktail != 0) {
      const __m512bh xv = chunk_n(x + kfull);
#pragma GCC unroll 8
      for (std::size_t r = 0; r < 8; ++r) acc[r] = _mm512_dpbf16_ps(acc[r], chunk_n(w + (j + r) * ldw + kfull), xv);
    }
    fbatch<xsimd::avx512bw> accb[8];
    for (std::size_t r = 0; r < 8; ++r) accb[r] = acc[r];
    alignas(64) float sums[8];
    hsum8<xsimd::avx512bw>(accb, sums, xsimd::avx512bw{});
    for (std::size_t r = 0; r < 8; ++r) store(j + r, sums[r]);
  }
  for (; j < n; ++j) {
    __m512 acc = _mm512_setzero_ps();
    for (std::size_t p = 0; p < kfull; p += 32) acc = _mm512_dpbf16_ps(acc, chunk(w + j * ldw + p), chunk(x + p));
    if (ktail != 0) acc = _mm512_dpbf16_ps(acc, chunk_n(w + j * ldw + kfull), chunk_n(x + kfull));
    store(j, xsimd::hadd(fbatch<xsimd::avx512bw>(acc)));
  }
}

}  // namespace tinylarge::kernels::detail::TINYLARGE_KERNELS_ISA

namespace tinylarge::kernels::inline TINYLARGE_KERNELS_ISA {

/// gemm<bfloat16> on AVX512-BF16: `vdpbf16ps` micro-kernel (m ≥ 2) and GEMV
/// (m = 1, op(B) = Bᵀ); m = 1 with op(B) = B widens as `arch::avx512`.
inline void gemm(arch::avx512_bf16, transpose ta, transpose tb, std::size_t m, std::size_t n, std::size_t k,
                 float alpha, const bfloat16* a, std::size_t lda, const bfloat16* b, std::size_t ldb, float beta,
                 float* c, std::size_t ldc) noexcept {
  using V = detail::bf16_ops;
  if (m == 1 && tb == transpose::yes && k != 0 && alpha != 0.0f) {
    // c[j] = alpha·Σ_p op(A)[0][p]·b[j·ldb + p] + beta·c[j]: the vdpbf16ps GEMV.
    const bfloat16* xrow = a;
    if (ta == transpose::yes && lda != 1) {
      auto* t = detail::thread_scratch<detail::scratch_slot::widen_a>().get<bfloat16>(k);
      for (std::size_t p = 0; p < k; ++p) t[p] = a[p * lda];
      xrow = t;
    }
    if (beta == 0.0f) {
      detail::bf16_gemv_rows(n, k, xrow, b, ldb, [&](std::size_t j, float s) { c[j] = alpha * s; });
    } else {
      detail::bf16_gemv_rows(n, k, xrow, b, ldb, [&](std::size_t j, float s) { c[j] = alpha * s + beta * c[j]; });
    }
    return;
  }
  if (m == 1) {
    gemm(arch::avx512{}, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    return;
  }
  detail::gemm_blocked<V, detail::pack_a_bf16, detail::pack_b_bf16, detail::bf16_micro_kernels>(
      m, n, k, alpha, detail::pack_a_bf16{a, lda, ta == transpose::yes},
      detail::pack_b_bf16{b, ldb, tb == transpose::yes}, beta, c, ldc);
}

/// dense<bfloat16, bfloat16> on AVX512-BF16: Y = bias + X·Wᵀ with the
/// `vdpbf16ps` GEMV (m = 1) or GEMM (m ≥ 2); other forms as `arch::avx512`.
template <class TX, class T>
void dense(arch::avx512_bf16, std::size_t m, std::size_t n, std::size_t k, const TX* x, const T* w,
           const float* bias, float* y) noexcept {
  if constexpr (std::is_same_v<TX, bfloat16> && std::is_same_v<T, bfloat16>) {
    if (m == 1 && n != 0) {
      if (bias != nullptr) {
        detail::bf16_gemv_rows(n, k, x, w, k, [&](std::size_t j, float s) { y[j] = s + bias[j]; });
      } else {
        detail::bf16_gemv_rows(n, k, x, w, k, [&](std::size_t j, float s) { y[j] = s; });
      }
      return;
    }
    if (m >= 2 && n != 0) {
      float beta = 0.0f;
      if (bias != nullptr) {
        for (std::size_t i = 0; i < m; ++i) std::memcpy(y + i * n, bias, n * sizeof(float));
        beta = 1.0f;
      }
      gemm(arch::avx512_bf16{}, transpose::no, transpose::yes, m, n, k, 1.0f, x, k, w, k, beta, y, n);
      return;
    }
  }
  dense(arch::avx512{}, m, n, k, x, w, bias, y);
}

}  // namespace tinylarge::kernels::TINYLARGE_KERNELS_ISA

#endif  // AVX512-BF16
