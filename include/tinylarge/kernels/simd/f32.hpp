/// @file kernels/simd/f32.hpp
/// @brief The fp32 host kernels, written once over `xsimd::batch<float, A>`
///        for every xsimd architecture A of the build (internal: include
///        `kernels/dense.hpp`): GEMM (every transpose case), dense, the
///        batch-1 GEMV and its pre-packed form, the zero-skipping paths, and
///        the low-precision (binary16 / bfloat16) operands widened to fp32.
///
/// **GEMM** (C = alpha·op(A)·op(B) + beta·C, row-major) follows Goto & van de
/// Geijn, "Anatomy of High-Performance Matrix Multiplication" (ACM TOMS 2008)
/// and BLIS (Van Zee & van de Geijn, 2015):
///
///     for jc in n step NC:              B block   KC×NC  → packed, L3/L2
///       for pc in k step KC:            (balanced: all k blocks nearly equal)
///         pack op(B)[pc:pc+KC, jc:jc+NC] into NR-wide row panels
///         for ic in m step MC:          A block   MC×KC  → packed, L2
///           pack op(A)[ic:ic+MC, pc:pc+KC] into MR-tall column panels
///           for jr in NC step NR:       B micro-panel KC×NR, L1
///             for ir in MC step MR:     micro-kernel: MR×NR tile in registers
///
/// The transpose flags only change the packing, so NN, NT, TN and TT run the
/// same micro-kernel. The micro-kernel keeps an MR×NR tile of C in registers
/// and performs, per k step, 2 aligned loads of the B panel, MR broadcasts of
/// A and 2·MR FMAs. The register tile per architecture (`f32_blocking<A>`):
///
///   | xsimd arch       | lanes | tile MR×NR | accumulators |
///   |------------------|-------|------------|--------------|
///   | `fma3<avx2>`     | 8     | 5×16       | 10 ymm (6×16 made GCC 12 spill) |
///   | `avx512bw`       | 16    | 14×32      | 28 zmm       |
///   | `neon64`         | 4     | 8×8        | 16 q         |
///   | others (`sse2`…`sse4_2`, `neon`) | 4 | 4×8 | 8    |
///
/// Row tails (m mod MR) use a micro-kernel instantiated for exactly that many
/// rows; column tails (n mod NR) are zero-padded in the packed B panel and
/// stored with masks. beta is applied on the first k block only (beta = 0
/// never reads C, so C may hold NaN); alpha = 0 never reads A or B.
///
/// **Batch-1 dense** (and GEMM with m = 1, op(B) = Bᵀ) is a GEMV over the rows
/// of W: 8 rows per pass with one vector accumulator each, the x chunk loaded
/// once per 8 rows, the k tail a masked load. A binary16 / bfloat16 W is
/// widened in the loop at the full register width (16-lane `vcvtph2ps` on
/// AVX-512, 8-lane F16C on AVX2). Measured on this project's Zen 5 EPYC
/// (family 26, g++ 12, 1×784→256, loaded machine): fp16 W in a median 0.57×
/// the time of the fp32 GEMV with 16 lanes, 0.66× with 8 (docs/precision.md).
/// (An earlier note, CPU reported as Zen 4, had 4.6 µs with 8 lanes against
/// 7.0 µs with 16; not reproduced here.)
/// **Pre-packed batch-1 dense** (`pack_dense_f32` /
/// `dense_f32_packed`, what `nn::inference_network` runs): W is laid out once
/// as Wᵀ in column panels with the bias in front (`detail::f32_gemv_layout`),
/// and the kernel broadcasts each nonzero x[p] against one contiguous row of
/// the panel: no horizontal sums, bias and relu / relu6 fused, zero inputs
/// skipped.
///
/// **Low-precision operands** (`gemm<half / bfloat16>`, `dense<TX, T>`):
/// widened to fp32 exactly while packing (F16C `vcvtph2ps` / NEON `vcvt` for
/// binary16, a 16-bit shift for bfloat16), so the fp32 micro-kernel runs.
///
/// **What xsimd 8.1 lacks** stays as intrinsics in small overloads on the
/// architecture tag, xsimd's own pattern (the generic overload takes
/// `xsimd::generic`, the most derived matching tag wins): masked tail loads
/// and stores (`load_n` / `store_n`), half / bfloat16 widening (`widen`,
/// `widen_n`), 8×8 transposes in the packing (`transpose8_block`), the
/// horizontal sums of 8 rows (`hsum8`), the compress of nonzero positions
/// (`nonzero_positions_impl`). The generic overloads are portable loops, so a
/// new xsimd architecture runs everything correctly before it is tuned.
///
/// Scratch: the packing buffers come from per-thread reused aligned buffers
/// (`simd/scratch.hpp`), at most KC·(MC + min(n, NC) rounded up to NR) floats.
/// A failed allocation terminates (the functions are noexcept).
///
/// 32-bit ARM note: ARMv7 NEON arithmetic flushes subnormal inputs and
/// results to zero, so a product or partial sum below 2⁻¹²⁶ may become 0 (an
/// extra absolute error of at most k·2⁻¹²⁶ per output); AArch64 is IEEE.
#pragma once

#if !defined(TINYLARGE_KERNELS_DENSE_SCALAR_DECLARED)
#error "internal header: include <tinylarge/kernels/dense.hpp> instead"
#endif

#include <xsimd/xsimd.hpp>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <utility>

#include "scratch.hpp"
#if XSIMD_WITH_AVX2
#include "x86_common.hpp"
#endif
#if XSIMD_WITH_SSE2 && defined(__FMA__)
#include <immintrin.h>
#endif
#if XSIMD_WITH_NEON
#include <arm_neon.h>
#endif

// binary16 → fp32 in NEON: always on AArch64; on 32-bit ARM only with the
// half-precision extension and the IEEE format selected.
#if defined(__aarch64__) || \
    (defined(__ARM_NEON_FP) && (__ARM_NEON_FP & 0x2) != 0 && defined(__ARM_FP16_FORMAT_IEEE))
#define TINYLARGE_KERNELS_NEON_F16_CONVERT 1
#else
#define TINYLARGE_KERNELS_NEON_F16_CONVERT 0
#endif

namespace tinylarge::kernels::detail::inline TINYLARGE_KERNELS_ISA {

template <class A>
using fbatch = xsimd::batch<float, A>;

TINYLARGE_ALWAYS_INLINE float to_f32(float v) noexcept { return v; }
TINYLARGE_ALWAYS_INLINE float to_f32(half v) noexcept { return half_to_float(v); }
TINYLARGE_ALWAYS_INLINE float to_f32(bfloat16 v) noexcept { return bfloat16_to_float(v); }

// ---------------------------------------------------------------------------
// Architecture overloads: generic first, then what xsimd 8.1 lacks.
// ---------------------------------------------------------------------------

/// The first n (< lanes) floats at p, the rest zero; never reads past p[n − 1].
template <class A, class T>
TINYLARGE_ALWAYS_INLINE fbatch<A> widen_n(const T* p, std::size_t n, xsimd::generic) noexcept {
  alignas(64) float t[fbatch<A>::size] = {};
  for (std::size_t i = 0; i < n; ++i) t[i] = to_f32(p[i]);
  return fbatch<A>::load_aligned(t);
}
/// v[0..n) to p[0..n) (n < lanes); never writes past p[n − 1].
template <class A>
TINYLARGE_ALWAYS_INLINE void store_n(float* p, fbatch<A> v, std::size_t n, xsimd::generic) noexcept {
  alignas(64) float t[fbatch<A>::size];
  v.store_aligned(t);
  for (std::size_t i = 0; i < n; ++i) p[i] = t[i];
}
/// `lanes` consecutive elements at p as fp32 (exact).
template <class A>
TINYLARGE_ALWAYS_INLINE fbatch<A> widen(const float* p, xsimd::generic) noexcept {
  return fbatch<A>::load_unaligned(p);
}
template <class A, class T>
TINYLARGE_ALWAYS_INLINE fbatch<A> widen(const T* p, xsimd::generic) noexcept {
  alignas(64) float t[fbatch<A>::size];
  for (std::size_t i = 0; i < fbatch<A>::size; ++i) t[i] = to_f32(p[i]);
  return fbatch<A>::load_aligned(t);
}
/// d[q·ldd + r] = src[r·ld + q] for r, q < 8 (an 8×8 block of op(A) or Wᵀ).
template <class A, class T>
TINYLARGE_ALWAYS_INLINE void transpose8_block(const T* src, std::size_t ld, float* d, std::size_t ldd,
                                              xsimd::generic) noexcept {
  for (std::size_t r = 0; r < 8; ++r)
    for (std::size_t q = 0; q < 8; ++q) d[q * ldd + r] = to_f32(src[r * ld + q]);
}
/// out[r] = Σ_lanes acc[r] for r < 8.
template <class A>
TINYLARGE_ALWAYS_INLINE void hsum8(const fbatch<A>* acc, float* out, xsimd::generic) noexcept {
  if constexpr (fbatch<A>::size == 8) {
    xsimd::haddp(acc).store_unaligned(out);
  } else {
    for (std::size_t r = 0; r < 8; ++r) out[r] = xsimd::hadd(acc[r]);
  }
}
/// a·b + c lane by lane: one rounding (a fused multiply-add) wherever the
/// translation unit's target has FMA instructions, two (multiply, then add)
/// only where it has none. xsimd 8.1's `fma` is fused for `fma3<…>` and NEON
/// with FMA but is a plain `x * y + z` for `sse2`…`avx` and `avx512f`, which
/// GCC contracts into FMAs where it can (-ffp-contract=fast) and Clang does
/// not: the overloads below make the operation the same in every kernel and
/// with every compiler (the zero-skipping kernels rely on it).
template <class A>
TINYLARGE_ALWAYS_INLINE fbatch<A> fmadd(fbatch<A> a, fbatch<A> b, fbatch<A> c, xsimd::generic) noexcept {
  return xsimd::fma(a, b, c);
}
/// Whether any of the first n (≤ 8) floats at p is nonzero (NaN counts).
template <class A>
TINYLARGE_ALWAYS_INLINE bool any_nonzero_n(const float* p, std::size_t n, xsimd::generic) noexcept {
  bool any = false;
  for (std::size_t i = 0; i < n; ++i) any |= p[i] != 0.0f;
  return any;
}
/// The positions p < k where any of `rows` rows at x (stride ld) is nonzero,
/// in order, into idx (room for k + 16); returns their count. Branch-free.
template <class A>
TINYLARGE_ALWAYS_INLINE std::size_t nonzero_positions_impl(const float* x, std::size_t ld, std::size_t rows,
                                                           std::size_t k, std::uint32_t* idx,
                                                           xsimd::generic) noexcept {
  std::size_t count = 0;
  for (std::size_t p = 0; p < k; ++p) {
    bool any = false;
    for (std::size_t r = 0; r < rows; ++r) any |= x[r * ld + p] != 0.0f;
    idx[count] = static_cast<std::uint32_t>(p);
    count += any ? 1 : 0;
  }
  return count;
}

#if XSIMD_WITH_SSE2 && defined(__FMA__)
// The SSE tags (and `avx`, which derives from them) in a translation unit
// built with FMA (-mfma, -march=haswell…): the fused instruction.
template <class A>
TINYLARGE_ALWAYS_INLINE fbatch<A> fmadd(fbatch<A> a, fbatch<A> b, fbatch<A> c, xsimd::sse2) noexcept {
  if constexpr (fbatch<A>::size == 4) {
    return _mm_fmadd_ps(a, b, c);
  } else {
    static_assert(fbatch<A>::size == 8, "fmadd: unexpected x86 register width");
    return _mm256_fmadd_ps(a, b, c);
  }
}
#endif  // XSIMD_WITH_SSE2 && __FMA__

#if XSIMD_WITH_AVX2
template <class A>
TINYLARGE_ALWAYS_INLINE fbatch<A> widen_n(const float* p, std::size_t n, xsimd::avx2) noexcept {
  return _mm256_maskload_ps(p, avx2_lane_mask(n));
}
template <class A>
TINYLARGE_ALWAYS_INLINE void store_n(float* p, fbatch<A> v, std::size_t n, xsimd::avx2) noexcept {
  _mm256_maskstore_ps(p, avx2_lane_mask(n), v);
}
#if defined(__F16C__)
template <class A>
TINYLARGE_ALWAYS_INLINE fbatch<A> widen(const half* p, xsimd::avx2) noexcept {
  return load8_as_f32(p);
}
#endif
template <class A>
TINYLARGE_ALWAYS_INLINE fbatch<A> widen(const bfloat16* p, xsimd::avx2) noexcept {
  return load8_as_f32(p);
}
template <class A, class T>
TINYLARGE_ALWAYS_INLINE void transpose8_block(const T* src, std::size_t ld, float* d, std::size_t ldd,
                                              xsimd::avx2) noexcept {
  if constexpr (std::is_same_v<T, half> && !x86_f16c) {
    transpose8_block<A>(src, ld, d, ldd, xsimd::generic{});
  } else {
    __m256 v[8];
    for (std::size_t q = 0; q < 8; ++q) v[q] = load8_as_f32(src + q * ld);
    transpose8x8(v);
    for (std::size_t q = 0; q < 8; ++q) _mm256_storeu_ps(d + q * ldd, v[q]);
  }
}
template <class A>
TINYLARGE_ALWAYS_INLINE void hsum8(const fbatch<A>* acc, float* out, xsimd::avx2) noexcept {
  __m256 h[8];
  for (std::size_t r = 0; r < 8; ++r) h[r] = acc[r];
  _mm256_storeu_ps(out, reduce8(h));
}
template <class A>
TINYLARGE_ALWAYS_INLINE bool any_nonzero_n(const float* p, std::size_t n, xsimd::avx2) noexcept {
  const __m256 v = _mm256_maskload_ps(p, avx2_lane_mask(n));
  return _mm256_movemask_ps(_mm256_cmp_ps(v, _mm256_setzero_ps(), _CMP_NEQ_UQ)) != 0;
}
#endif  // XSIMD_WITH_AVX2

#if XSIMD_WITH_AVX512BW
template <class A>
TINYLARGE_ALWAYS_INLINE fbatch<A> fmadd(fbatch<A> a, fbatch<A> b, fbatch<A> c, xsimd::avx512f) noexcept {
  return _mm512_fmadd_ps(a, b, c);
}
template <class A>
TINYLARGE_ALWAYS_INLINE fbatch<A> widen_n(const float* p, std::size_t n, xsimd::avx512f) noexcept {
  return _mm512_maskz_loadu_ps(first_lanes16(n), p);
}
template <class A>
TINYLARGE_ALWAYS_INLINE fbatch<A> widen_n(const half* p, std::size_t n, xsimd::avx512f) noexcept {
  return _mm512_maskz_cvtph_ps(0xFFFF, _mm256_maskz_loadu_epi16(first_lanes16(n), p));
}
template <class A>
TINYLARGE_ALWAYS_INLINE fbatch<A> widen_n(const bfloat16* p, std::size_t n, xsimd::avx512f) noexcept {
  return _mm512_castsi512_ps(
      _mm512_maskz_slli_epi32(0xFFFF, _mm512_maskz_cvtepu16_epi32(0xFFFF, _mm256_maskz_loadu_epi16(first_lanes16(n), p)), 16));
}
template <class A>
TINYLARGE_ALWAYS_INLINE void store_n(float* p, fbatch<A> v, std::size_t n, xsimd::avx512f) noexcept {
  _mm512_mask_storeu_ps(p, first_lanes16(n), v);
}
// The zero-masked forms with an all-ones mask compile to the plain
// instructions; they avoid GCC 12's false -Wmaybe-uninitialized on the
// `_mm512_undefined_*` pass-through operand of the unmasked intrinsics.
template <class A>
TINYLARGE_ALWAYS_INLINE fbatch<A> widen(const half* p, xsimd::avx512f) noexcept {
  return _mm512_maskz_cvtph_ps(0xFFFF, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}
template <class A>
TINYLARGE_ALWAYS_INLINE fbatch<A> widen(const bfloat16* p, xsimd::avx512f) noexcept {
  return _mm512_castsi512_ps(_mm512_maskz_slli_epi32(
      0xFFFF, _mm512_maskz_cvtepu16_epi32(0xFFFF, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))), 16));
}
template <class A, class T>
TINYLARGE_ALWAYS_INLINE void transpose8_block(const T* src, std::size_t ld, float* d, std::size_t ldd,
                                              xsimd::avx512f) noexcept {
  transpose8_block<A>(src, ld, d, ldd, xsimd::avx2{});
}
template <class A>
TINYLARGE_ALWAYS_INLINE void hsum8(const fbatch<A>* acc, float* out, xsimd::avx512f) noexcept {
  __m256 h[8];
  for (std::size_t r = 0; r < 8; ++r)
    h[r] = _mm256_add_ps(_mm512_maskz_extractf32x8_ps(0xFF, acc[r], 0), _mm512_maskz_extractf32x8_ps(0xFF, acc[r], 1));
  _mm256_storeu_ps(out, reduce8(h));
}
template <class A>
TINYLARGE_ALWAYS_INLINE bool any_nonzero_n(const float* p, std::size_t n, xsimd::avx512f) noexcept {
  return any_nonzero_n<A>(p, n, xsimd::avx2{});
}
template <class A>
TINYLARGE_ALWAYS_INLINE std::size_t nonzero_positions_impl(const float* x, std::size_t ld, std::size_t rows,
                                                           std::size_t k, std::uint32_t* idx,
                                                           xsimd::avx512f) noexcept {
  std::size_t count = 0;
  const __m512i step = _mm512_set1_epi32(16);
  __m512i pos = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  for (std::size_t p = 0; p < k; p += 16) {
    const __mmask16 valid = first_lanes16(k - p >= 16 ? 16 : k - p);
    __mmask16 nz = 0;
    for (std::size_t r = 0; r < rows; ++r)
      nz |= _mm512_mask_cmp_ps_mask(valid, _mm512_maskz_loadu_ps(valid, x + r * ld + p), _mm512_setzero_ps(),
                                    _CMP_NEQ_UQ);
    // Register compress + full store (idx has 16 slack entries): the memory
    // form of vpcompressd is microcoded and slow on Zen 4.
    _mm512_storeu_si512(idx + count, _mm512_maskz_compress_epi32(nz, pos));
    count += static_cast<std::size_t>(__builtin_popcount(nz));
    pos = _mm512_add_epi32(pos, step);
  }
  return count;
}
#endif  // XSIMD_WITH_AVX512BW

#if XSIMD_WITH_NEON
template <class A>
TINYLARGE_ALWAYS_INLINE fbatch<A> widen(const bfloat16* p, xsimd::neon) noexcept {
  return vreinterpretq_f32_u32(vshll_n_u16(vld1_u16(&p->bits), 16));
}
#if TINYLARGE_KERNELS_NEON_F16_CONVERT
template <class A>
TINYLARGE_ALWAYS_INLINE fbatch<A> widen(const half* p, xsimd::neon) noexcept {
  return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(&p->bits)));
}
#endif
#endif  // XSIMD_WITH_NEON

// ---------------------------------------------------------------------------
// Vector traits over xsimd::batch<float, A>: one definition for every arch.
// ---------------------------------------------------------------------------

/// Register blocking of the fp32 kernels for xsimd architecture A (see the
/// table in the file comment). The primary template serves 4-lane targets.
template <class A>
struct f32_blocking {
  static constexpr std::size_t mr = 4;
  static constexpr std::size_t mc = 16 * mr;
  static constexpr std::size_t sparse_rows = 2, sparse_regs = 5, sparse_fwd_rows = 2, sparse_fwd_regs = 4;
  /// Zero skipping in automatic mode: at most this % of X nonzero (forward,
  /// weight gradient). Not measured on 4-lane targets: the AVX2 values.
  static constexpr std::size_t sparse_fwd_max_pct = 70, sparse_wgrad_max_pct = 45;
  static constexpr std::size_t gemv_max_blocks = 12;
};
#if XSIMD_WITH_FMA3_AVX2
/// AVX2 + FMA: 5×16 leaves room in the 16 ymm and still has 10 independent
/// FMA chains, enough for 2 FMAs per cycle at latency 4.
template <>
struct f32_blocking<xsimd::fma3<xsimd::avx2>> {
  static constexpr std::size_t mr = 5;
  static constexpr std::size_t mc = 16 * mr;  ///< A block 80×256 = 80 KiB (L2)
  static constexpr std::size_t sparse_rows = 2, sparse_regs = 5, sparse_fwd_rows = 2, sparse_fwd_regs = 4;
  /// Break-even on AMD family 26 built for AVX2 (LeNet shapes, batch 64):
  /// forward 1.06–1.09× the dense GEMM at 49 % nonzeros, weight gradient
  /// 0.94–0.99× at 49 %, 1.14–1.17× at 35 %.
  static constexpr std::size_t sparse_fwd_max_pct = 70, sparse_wgrad_max_pct = 45;
  static constexpr std::size_t gemv_max_blocks = 12;
};
#endif
#if XSIMD_WITH_AVX512BW
/// AVX-512: 14×32, 28 of the 32 zmm. Zero-skipping blocking measured on Zen 4
/// (LeNet-300-100 training): forward 3×8 and weight gradient 4×6 beat 1×20,
/// 2×12, 4×6 / 8×2, 8×3.
template <>
struct f32_blocking<xsimd::avx512bw> {
  static constexpr std::size_t mr = 14;
  static constexpr std::size_t mc = 10 * mr;  ///< A block 140×256 = 140 KiB (L2)
  static constexpr std::size_t sparse_rows = 4, sparse_regs = 6, sparse_fwd_rows = 3, sparse_fwd_regs = 8;
  /// Break-even on AMD family 26 (Zen 5: two full-width FMA pipes, where the
  /// dense GEMM runs ~1.7× its AVX2 speed and the zero-skipping tiles are
  /// bound by loads), LeNet shapes, batch 64: the forward's tiles 1.22–1.37×
  /// the dense GEMM at 18 % nonzeros, 0.92–1.15× at 35 %, 0.80–1.05× at 49 %
  /// (Fashion-MNIST); the weight gradient's kernel never beat the dense GEMM
  /// there (0.56–0.94× at 3–49 % nonzeros): off in automatic mode.
  static constexpr std::size_t sparse_fwd_max_pct = 30, sparse_wgrad_max_pct = 0;
  static constexpr std::size_t gemv_max_blocks = 16;
};
#endif
#if XSIMD_WITH_NEON64
/// AArch64: 8×8, 16 of the 32 q registers.
template <>
struct f32_blocking<xsimd::neon64> {
  static constexpr std::size_t mr = 8;
  static constexpr std::size_t mc = 16 * mr;  ///< A block ≤ 128×256 floats = 128 KiB (L2)
  static constexpr std::size_t sparse_rows = 2, sparse_regs = 5, sparse_fwd_rows = 2, sparse_fwd_regs = 4;
  static constexpr std::size_t sparse_fwd_max_pct = 70, sparse_wgrad_max_pct = 45;  ///< not measured: the AVX2 values
  static constexpr std::size_t gemv_max_blocks = 12;
};
#endif

/// The vector operations the kernels use, for xsimd architecture A.
template <class A>
struct f32_ops {
  using arch = A;
  using reg = fbatch<A>;
  static constexpr std::size_t lanes = reg::size;
  static constexpr std::size_t mr = f32_blocking<A>::mr;  ///< micro-tile rows
  static constexpr std::size_t nr = 2 * lanes;            ///< micro-tile columns
  static constexpr std::size_t kc = 256;                  ///< k block
  static constexpr std::size_t mc = f32_blocking<A>::mc;  ///< A block rows
  static constexpr std::size_t nc = 4096;                 ///< B block ≤ 256×4096 floats

  static TINYLARGE_ALWAYS_INLINE reg zero() noexcept { return reg(0.0f); }
  static TINYLARGE_ALWAYS_INLINE reg set1(float v) noexcept { return reg(v); }
  static TINYLARGE_ALWAYS_INLINE reg load(const float* p) noexcept { return reg::load_aligned(p); }
  /// `load` of a vector that feeds several FMAs, kept in one register: GCC 12
  /// otherwise folds the load into each FMA's memory operand (three loads of
  /// one vector in the zero-skipping 3×8 tile, measured 1.3–1.5× slower than
  /// clang's code); the empty asm makes the value opaque. Clang needs none.
  static TINYLARGE_ALWAYS_INLINE reg load_shared(const float* p) noexcept {
    reg v = reg::load_aligned(p);
#if defined(__GNUC__) && !defined(__clang__) && (defined(__x86_64__) || defined(__i386__))
    auto r = static_cast<typename reg::register_type>(v);
    asm("" : "+v"(r));
    v = reg(r);
#endif
    return v;
  }
  static TINYLARGE_ALWAYS_INLINE void store(float* p, reg v) noexcept { v.store_aligned(p); }
  static TINYLARGE_ALWAYS_INLINE reg loadu(const float* p) noexcept { return reg::load_unaligned(p); }
  static TINYLARGE_ALWAYS_INLINE void storeu(float* p, reg v) noexcept { v.store_unaligned(p); }
  static TINYLARGE_ALWAYS_INLINE reg bcast(const float* p) noexcept { return reg(*p); }
  /// a·b + c: fused where the target has FMA, multiply then add otherwise
  /// (the `fmadd` overloads above); the same operation in every kernel.
  static TINYLARGE_ALWAYS_INLINE reg fmadd(reg a, reg b, reg c) noexcept { return detail::fmadd<A>(a, b, c, A{}); }
  /// `fmadd` on one float (lane 0 of the vector operation: the same rounding
  /// and, on 32-bit ARM, the same flushing of subnormals).
  static TINYLARGE_ALWAYS_INLINE float fmadd1(float a, float b, float c) noexcept {
    return fmadd(reg(a), reg(b), reg(c)).get(0);
  }
  static TINYLARGE_ALWAYS_INLINE reg mul(reg a, reg b) noexcept { return a * b; }
  static TINYLARGE_ALWAYS_INLINE reg add(reg a, reg b) noexcept { return a + b; }
  /// max(NaN, 0) = 0 (the second operand when unordered, as the scalar relu).
  static TINYLARGE_ALWAYS_INLINE reg max(reg a, reg b) noexcept { return xsimd::select(a > b, a, b); }
  static TINYLARGE_ALWAYS_INLINE reg min(reg a, reg b) noexcept { return xsimd::select(a < b, a, b); }
  static TINYLARGE_ALWAYS_INLINE reg loadu_n(const float* p, std::size_t n) noexcept { return widen_n<A>(p, n, A{}); }
  static TINYLARGE_ALWAYS_INLINE void storeu_n(float* p, reg v, std::size_t n) noexcept { store_n<A>(p, v, n, A{}); }
  /// A weight chunk of `lanes` elements (float, half or bfloat16) as fp32.
  template <class T>
  static TINYLARGE_ALWAYS_INLINE reg load_w(const T* p) noexcept {
    return widen<A>(p, A{});
  }
  template <class T>
  static TINYLARGE_ALWAYS_INLINE reg load_w_n(const T* p, std::size_t n) noexcept {
    return widen_n<A>(p, n, A{});
  }
};

// ---------------------------------------------------------------------------
// Micro-kernel and blocked driver
// ---------------------------------------------------------------------------

/// C[0:R, 0:ncols] = alpha·tile + beta·C for one R×2L register tile held in
/// c0 / c1; columns beyond ncols are not written. beta == 0: C is not read,
/// and the result is +0 + alpha·tile (the bits beta = 1 gives over a C of +0).
/// beta == 1: one `fmadd`, C + alpha·tile rounded once — for alpha = 1 the
/// bits of an add; for alpha = −η the plain SGD update of `sgd_update_f32`,
/// which `sgd_gemm_tn_impl` fuses into the weight-gradient GEMM this way.
template <class V, std::size_t R>
TINYLARGE_ALWAYS_INLINE void store_tile(const typename V::reg (&c0)[R], const typename V::reg (&c1)[R], float* c,
                                        std::size_t ldc, std::size_t ncols, float alpha, float beta) noexcept {
  using reg = typename V::reg;
  constexpr std::size_t L = V::lanes;
  // The tile leaves the registers through plain aligned stores to a local
  // buffer: using the accumulators directly in the (masked) epilogue makes
  // GCC 12 keep them in memory inside the k loop (2× slower on AVX2).
  alignas(64) float tile[R][2 * L];
#pragma GCC unroll 16
  for (std::size_t r = 0; r < R; ++r) {
    V::store(tile[r], c0[r]);
    V::store(tile[r] + L, c1[r]);
  }
  const reg va = V::set1(alpha), vb = V::set1(beta);
  // One output vector: t (the tile's lanes) and, unless beta == 0, c (C's).
  auto out = [&](reg t, auto load_c) {
    if (beta == 1.0f) return V::fmadd(va, t, load_c());
    if (beta != 0.0f) return V::fmadd(vb, load_c(), V::mul(va, t));
    return V::add(V::zero(), V::mul(va, t));  // +0 + x: a −0 becomes +0, as beta = 1 over a C of +0
  };
  if (ncols == 2 * L) {
    for (std::size_t r = 0; r < R; ++r) {
      float* cr = c + r * ldc;
      const reg o0 = out(V::load(tile[r]), [&] { return V::loadu(cr); });
      const reg o1 = out(V::load(tile[r] + L), [&] { return V::loadu(cr + L); });
      V::storeu(cr, o0);
      V::storeu(cr + L, o1);
    }
  } else {
    const std::size_t n0 = ncols < L ? ncols : L, n1 = ncols - n0;
    for (std::size_t r = 0; r < R; ++r) {
      float* cr = c + r * ldc;
      V::storeu_n(cr, out(V::load(tile[r]), [&] { return V::loadu_n(cr, n0); }), n0);
      if (n1 != 0) V::storeu_n(cr + L, out(V::load(tile[r] + L), [&] { return V::loadu_n(cr + L, n1); }), n1);
    }
  }
}

/// C[0:R, 0:ncols] = alpha·(Ã·B̃) + beta·C for one register tile, where Ã is an
/// R-row packed micro-panel (kc steps of R floats) and B̃ an NR-column packed
/// micro-panel (kc steps of NR floats, 64-byte aligned). beta == 0: C not read.
template <class V, std::size_t R>
TINYLARGE_NOINLINE void gemm_micro_kernel(std::size_t kc, const float* TINYLARGE_RESTRICT pa,
                                          const float* TINYLARGE_RESTRICT pb, float* c, std::size_t ldc,
                                          std::size_t ncols, float alpha, float beta) noexcept {
  using reg = typename V::reg;
  constexpr std::size_t L = V::lanes;
  reg c0[R], c1[R];
#pragma GCC unroll 16
  for (std::size_t r = 0; r < R; ++r) {
    c0[r] = V::zero();
    c1[r] = V::zero();
  }
  for (std::size_t p = 0; p < kc; ++p) {
    const reg b0 = V::load(pb), b1 = V::load(pb + L);
#pragma GCC unroll 16
    for (std::size_t r = 0; r < R; ++r) {
      const reg a = V::bcast(pa + r);
      c0[r] = V::fmadd(a, b0, c0[r]);
      c1[r] = V::fmadd(a, b1, c1[r]);
    }
    pa += R;
    pb += 2 * L;
  }
  store_tile<V, R>(c0, c1, c, ldc, ncols, alpha, beta);
}

template <class Elem>
using gemm_micro_kernel_fn = void (*)(std::size_t, const Elem*, const Elem*, float*, std::size_t, std::size_t,
                                      float, float) noexcept;

/// The fp32 micro-kernel as the driver sees it: packed elements are floats,
/// one k step per element, micro-kernels for 1..MR rows (fn[rows − 1]).
template <class V>
struct f32_micro_kernels {
  using elem = float;
  static constexpr std::size_t kstep = 1;
  template <std::size_t... I>
  static constexpr auto make(std::index_sequence<I...>) noexcept {
    struct table {
      gemm_micro_kernel_fn<float> fn[sizeof...(I)];
    };
    return table{{&gemm_micro_kernel<V, I + 1>...}};
  }
  static constexpr auto table = make(std::make_index_sequence<V::mr>{});
};

/// C = beta·C on an m×n block (beta == 0 writes zeros without reading C).
inline void scale_c(std::size_t m, std::size_t n, float beta, float* c, std::size_t ldc) noexcept {
  for (std::size_t i = 0; i < m; ++i) {
    float* cr = c + i * ldc;
    if (beta == 0.0f) {
      for (std::size_t j = 0; j < n; ++j) cr[j] = 0.0f;
    } else if (beta != 1.0f) {
      for (std::size_t j = 0; j < n; ++j) cr[j] *= beta;
    }
  }
}

/// Packs MR-row panels of op(A) (stored as T, packed as fp32): panel at
/// dst + ir·kc holds kc steps of R = min(MR, mc − ir) consecutive row values.
template <class Arch, std::size_t MR, class T = float>
struct pack_a_f32 {
  const T* a;
  std::size_t lda;
  bool trans;

  void operator()(float* TINYLARGE_RESTRICT dst, std::size_t i0, std::size_t mc, std::size_t p0,
                  std::size_t kc) const noexcept {
    for (std::size_t ir = 0; ir < mc; ir += MR) {
      const std::size_t rows = std::min(MR, mc - ir);
      float* d = dst + ir * kc;
      if (!trans) {  // op(A)[i][p] = a[i·lda + p]
        std::size_t p = 0;
        if (rows >= 8) {
          // 8×8 transposes of row groups starting at 0, 8, …, and rows − 8
          // (the last group may overlap the previous one: same values).
          for (; p + 8 <= kc; p += 8) {
            for (std::size_t r0 = 0; r0 < rows; r0 += 8) {
              const std::size_t rs = r0 + 8 <= rows ? r0 : rows - 8;
              const T* src = a + (i0 + ir + rs) * lda + p0 + p;
              transpose8_block<Arch>(src, lda, d + p * rows + rs, rows, Arch{});
            }
          }
        }
        for (std::size_t r = 0; r < rows; ++r) {
          const T* src = a + (i0 + ir + r) * lda + p0;
          for (std::size_t pp = p; pp < kc; ++pp) d[pp * rows + r] = to_f32(src[pp]);
        }
      } else {  // op(A)[i][p] = a[p·lda + i]
        for (std::size_t p = 0; p < kc; ++p) {
          const T* src = a + (p0 + p) * lda + i0 + ir;
          for (std::size_t r = 0; r < rows; ++r) d[p * rows + r] = to_f32(src[r]);
        }
      }
    }
  }
};

/// Packs NR-column panels of op(B) where op(B)[p][j] = b[j·ldb + p] (B stored
/// transposed: the weight matrix of a dense layer), converting T → fp32.
/// Panel at dst + jr·kc holds kc rows of NR values, zero beyond column n.
template <class Arch, std::size_t NR, class T>
TINYLARGE_ALWAYS_INLINE void pack_b_transposed(float* TINYLARGE_RESTRICT dst, const T* b, std::size_t ldb,
                                               std::size_t j0, std::size_t nc, std::size_t p0,
                                               std::size_t kc) noexcept {
  for (std::size_t jr = 0; jr < nc; jr += NR) {
    const std::size_t cols = std::min(NR, nc - jr);
    float* d = dst + jr * kc;
    std::size_t jj = 0;
    // k8: the transposed part as a bound of its own; a `p + 8 <= kc` loop
    // followed by `p < kc` made GCC 12 warn (-Waggressive-loop-optimizations)
    // about an impossible 2⁶² iteration after inlining a constant kc.
    const std::size_t k8 = kc / 8 * 8;
    for (; jj + 8 <= cols; jj += 8) {  // 8 rows of B at a time, 8×8 transposes
      const T* src = b + (j0 + jr + jj) * ldb + p0;
      for (std::size_t p = 0; p < k8; p += 8) transpose8_block<Arch>(src + p, ldb, d + p * NR + jj, NR, Arch{});
      for (std::size_t p = k8; p < kc; ++p)
        for (std::size_t q = 0; q < 8; ++q) d[p * NR + jj + q] = to_f32(src[q * ldb + p]);
    }
    for (; jj < cols; ++jj) {
      const T* src = b + (j0 + jr + jj) * ldb + p0;
      for (std::size_t p = 0; p < kc; ++p) d[p * NR + jj] = to_f32(src[p]);
    }
    for (; jj < NR; ++jj)
      for (std::size_t p = 0; p < kc; ++p) d[p * NR + jj] = 0.0f;
  }
}

/// Packs NR-column panels of op(B) (stored as T, packed as fp32; either
/// orientation).
template <class Arch, std::size_t NR, class T = float>
struct pack_b_f32 {
  const T* b;
  std::size_t ldb;
  bool trans;

  void operator()(float* TINYLARGE_RESTRICT dst, std::size_t j0, std::size_t nc, std::size_t p0,
                  std::size_t kc) const noexcept {
    if (trans) {
      pack_b_transposed<Arch, NR>(dst, b, ldb, j0, nc, p0, kc);
      return;
    }
    for (std::size_t jr = 0; jr < nc; jr += NR) {  // op(B)[p][j] = b[p·ldb + j]
      const std::size_t cols = std::min(NR, nc - jr);
      float* d = dst + jr * kc;
      for (std::size_t p = 0; p < kc; ++p) {
        const T* src = b + (p0 + p) * ldb + j0 + jr;
        float* dp = d + p * NR;
        if (cols == NR) {
          constexpr std::size_t L = fbatch<Arch>::size;
          for (std::size_t j = 0; j < NR; j += L) widen<Arch>(src + j, Arch{}).store_aligned(dp + j);
        } else {
          std::size_t j = 0;
          for (; j < cols; ++j) dp[j] = to_f32(src[j]);
          for (; j < NR; ++j) dp[j] = 0.0f;
        }
      }
    }
  }
};

/// The blocked GEMM driver: C = alpha·Ã·B̃ + beta·C with the packing functors
/// defining Ã = op(A) (m×k) and B̃ = op(B) (k×n).
///
/// MK: the micro-kernels and their packed element type (`f32_micro_kernels`;
/// the AVX512-BF16 ones pack k pairs, kstep = 2). The pack functors write
/// ⌈kc/kstep⌉ steps per panel.
template <class V, class PackA, class PackB, class MK = f32_micro_kernels<V>>
void gemm_blocked(std::size_t m, std::size_t n, std::size_t k, float alpha, const PackA& pack_a,
                  const PackB& pack_b, float beta, float* c, std::size_t ldc) noexcept {
  constexpr std::size_t MR = V::mr, NR = V::nr, KC = V::kc, MC = V::mc, NC = V::nc, KS = MK::kstep;
  using elem = typename MK::elem;
  if (m == 0 || n == 0) return;
  if (k == 0 || alpha == 0.0f) {
    scale_c(m, n, beta, c, ldc);
    return;
  }
  const std::size_t kblocks = (k + KC - 1) / KC;
  const std::size_t kcb = ((k + kblocks - 1) / kblocks + KS - 1) / KS * KS;  // balanced k blocks, ≤ KC
  const std::size_t ncb = std::min(NC, (n + NR - 1) / NR * NR);
  const std::size_t mcb = std::min(MC, (m + MR - 1) / MR * MR);
  elem* bbuf = thread_scratch<scratch_slot::pack_b>().get<elem>(kcb / KS * ncb);
  elem* abuf = thread_scratch<scratch_slot::pack_a>().get<elem>(kcb / KS * mcb);

  for (std::size_t jc = 0; jc < n; jc += NC) {
    const std::size_t nc = std::min(NC, n - jc);
    for (std::size_t pc = 0; pc < k; pc += kcb) {
      const std::size_t kc = std::min(kcb, k - pc);
      const float beta_block = pc == 0 ? beta : 1.0f;
      pack_b(bbuf, jc, nc, pc, kc);
      const std::size_t ks = (kc + KS - 1) / KS;  // packed steps
      for (std::size_t ic = 0; ic < m; ic += MC) {
        const std::size_t mc = std::min(MC, m - ic);
        pack_a(abuf, ic, mc, pc, kc);
        for (std::size_t jr = 0; jr < nc; jr += NR) {
          const std::size_t ncols = std::min(NR, nc - jr);
          const elem* pb = bbuf + jr * ks;
          for (std::size_t ir = 0; ir < mc; ir += MR) {
            const std::size_t rows = std::min(MR, mc - ir);
            MK::table.fn[rows - 1](ks, abuf + ir * ks, pb, c + (ic + ir) * ldc + jc + jr, ldc, ncols, alpha,
                                   beta_block);
          }
        }
      }
    }
  }
}

/// GEMV over the rows of W: calls store(j, Σ_p x[p]·W[j][p]) for j < n, with
/// W row j at w + j·ldw (T = float or half). Eight rows per pass.
template <class V, class T, class Store>
TINYLARGE_ALWAYS_INLINE void gemv_rows(std::size_t n, std::size_t k, const float* x, const T* w,
                                       std::size_t ldw, Store&& store) noexcept {
  using reg = typename V::reg;
  constexpr std::size_t L = V::lanes;
  const std::size_t kfull = k / L * L, ktail = k - kfull;
  const std::size_t n8 = n / 8 * 8;
  for (std::size_t j = 0; j < n8; j += 8) {
    reg acc[8];
    const T* wr[8];
#pragma GCC unroll 8
    for (std::size_t r = 0; r < 8; ++r) {
      acc[r] = V::zero();
      wr[r] = w + (j + r) * ldw;
    }
    for (std::size_t p = 0; p < kfull; p += L) {
      const reg xv = V::loadu(x + p);
#pragma GCC unroll 8
      for (std::size_t r = 0; r < 8; ++r) acc[r] = V::fmadd(V::load_w(wr[r] + p), xv, acc[r]);
    }
    if (ktail != 0) {
      const reg xv = V::loadu_n(x + kfull, ktail);
#pragma GCC unroll 8
      for (std::size_t r = 0; r < 8; ++r) acc[r] = V::fmadd(V::load_w_n(wr[r] + kfull, ktail), xv, acc[r]);
    }
    alignas(64) float sums[8];
    hsum8<typename V::arch>(acc, sums, typename V::arch{});
    for (std::size_t r = 0; r < 8; ++r) store(j + r, sums[r]);
  }
  for (std::size_t j = n8; j < n; ++j) {
    const T* wr = w + j * ldw;
    reg acc = V::zero();
    for (std::size_t p = 0; p < kfull; p += L) acc = V::fmadd(V::load_w(wr + p), V::loadu(x + p), acc);
    if (ktail != 0) acc = V::fmadd(V::load_w_n(wr + kfull, ktail), V::loadu_n(x + kfull, ktail), acc);
    store(j, xsimd::hadd(acc));
  }
}

/// Zero-skipping paths for a mostly-zero operand (defined at the end of this
/// namespace); each returns false, having done nothing, when it does not apply.
template <class V, class T, class PackW>
bool dense_sparse_x(std::size_t m, std::size_t n, std::size_t k, const float* x, const T* w, const float* bias,
                    float* y, const PackW& pack_w) noexcept;
template <class V>
bool gemm_tn_sparse_b(std::size_t m, std::size_t n, std::size_t k, const float* a, std::size_t lda, const float* b,
                      std::size_t ldb, float* c, std::size_t ldc, bool overwrite) noexcept;

/// gemm<T> for vector traits V (A and B stored as T, packed as fp32).
template <class V, class T>
void gemm_f32_impl(transpose ta, transpose tb, std::size_t m, std::size_t n, std::size_t k, float alpha,
                   const T* a, std::size_t lda, const T* b, std::size_t ldb, float beta, float* c,
                   std::size_t ldc) noexcept {
  if (m == 1 && tb == transpose::yes && k != 0 && alpha != 0.0f) {
    // c[j] = alpha·Σ_p a[p·sa]·b[j·ldb + p] + beta·c[j]: a GEMV over the rows of B.
    // op(A) is one row; with ta = yes its elements are lda apart.
    const float* xrow = nullptr;
    if constexpr (std::is_same_v<T, float>) xrow = a;
    if (!std::is_same_v<T, float> || (ta == transpose::yes && lda != 1)) {
      const std::size_t sa = ta == transpose::yes ? lda : 1;
      float* tmp = thread_scratch<scratch_slot::vector>().get<float>(k);
      for (std::size_t p = 0; p < k; ++p) tmp[p] = to_f32(a[p * sa]);
      xrow = tmp;
    }
    if (beta == 0.0f) {
      gemv_rows<V>(n, k, xrow, b, ldb, [&](std::size_t j, float s) { c[j] = alpha * s; });
    } else {
      gemv_rows<V>(n, k, xrow, b, ldb, [&](std::size_t j, float s) { c[j] = alpha * s + beta * c[j]; });
    }
    return;
  }
  // dW += dYᵀ·X (or dW = dYᵀ·X: beta 0) of a dense layer whose input X (= B) is mostly zeros.
  if constexpr (std::is_same_v<T, float>) {
    if (ta == transpose::yes && tb == transpose::no && alpha == 1.0f && (beta == 1.0f || beta == 0.0f) &&
        gemm_tn_sparse_b<V>(m, n, k, a, lda, b, ldb, c, ldc, beta == 0.0f))
      return;
  }
  using Arch = typename V::arch;
  gemm_blocked<V>(m, n, k, alpha, pack_a_f32<Arch, V::mr, T>{a, lda, ta == transpose::yes},
                  pack_b_f32<Arch, V::nr, T>{b, ldb, tb == transpose::yes}, beta, c, ldc);
}

/// w[i] ← w[i] − η·g[i] for i < n: the plain SGD update (`sgd_step` with
/// μ = λ = 0 on this back end), one `fmadd` (−η, g, w) per element, the tail
/// through masked loads and stores so that every element gets the same
/// operation wherever the vector starts.
template <class V>
void sgd_update_f32(std::size_t n, float lr, float* TINYLARGE_RESTRICT w, const float* TINYLARGE_RESTRICT g) noexcept {
  constexpr std::size_t L = V::lanes;
  const typename V::reg nl = V::set1(-lr);
  std::size_t i = 0;
  for (; i + L <= n; i += L) V::storeu(w + i, V::fmadd(nl, V::loadu(g + i), V::loadu(w + i)));
  if (i < n) V::storeu_n(w + i, V::fmadd(nl, V::loadu_n(g + i, n - i), V::loadu_n(w + i, n - i)), n - i);
}

/// W (m×n, row stride ldw) ← W − η·(Ãᵀ·B), Ã = a (k×m, row stride lda),
/// B = b (k×n, row stride ldb): the plain SGD step on a dense layer's weight
/// gradient dYᵀ·X. With k ≤ kc (one k block) and η ≠ 0 the update is the
/// GEMM's epilogue (`store_tile` with alpha = −η, beta = 1): the gradient
/// never reaches memory. Otherwise the gradient goes to g (m×n floats) and
/// `sgd_update_f32` follows. Either way the bits are those of
/// `gemm_f32_impl` (alpha 1, beta 0) into g followed by `sgd_update_f32`: an
/// accumulator tile starts at +0, so it is never −0 and +0 + tile = tile.
template <class V>
void sgd_gemm_tn_impl(std::size_t m, std::size_t n, std::size_t k, float lr, const float* a, std::size_t lda,
                      const float* b, std::size_t ldb, float* w, std::size_t ldw, float* g) noexcept {
  if (m == 0 || n == 0) return;
  if (k != 0 && k <= V::kc && lr != 0.0f) {
    using Arch = typename V::arch;
    gemm_blocked<V>(m, n, k, -lr, pack_a_f32<Arch, V::mr>{a, lda, true}, pack_b_f32<Arch, V::nr, float>{b, ldb, false},
                    1.0f, w, ldw);
    return;
  }
  gemm_f32_impl<V, float>(transpose::yes, transpose::no, m, n, k, 1.0f, a, lda, b, ldb, 0.0f, g, n);
  for (std::size_t r = 0; r < m; ++r) sgd_update_f32<V>(n, lr, w + r * ldw, g + r * n);
}

/// Y = X·Wᵀ + bias for vector traits V (GEMM and batch-1 GEMV), X stored
/// as TX, weight type T (float, half or bfloat16). A low-precision X is
/// widened to fp32 once (exact), then the fp32 kernels run.
template <class V, class TX, class T, class PackW>
void dense_impl(std::size_t m, std::size_t n, std::size_t k, const TX* xs, const T* w, const float* bias,
                float* y, const PackW& pack_w) noexcept {
  if (m == 0 || n == 0) return;
  const float* x = nullptr;
  if constexpr (std::is_same_v<TX, float>) {
    x = xs;
  } else {
    float* tmp = thread_scratch<scratch_slot::vector>().get<float>(m * k);
    for (std::size_t e = 0; e < m * k; ++e) tmp[e] = to_f32(xs[e]);
    x = tmp;
  }
  if (m == 1) {
    if (bias != nullptr) {
      gemv_rows<V>(n, k, x, w, k, [&](std::size_t j, float s) { y[j] = s + bias[j]; });
    } else {
      gemv_rows<V>(n, k, x, w, k, [&](std::size_t j, float s) { y[j] = s; });
    }
    return;
  }
  float beta = 0.0f;
  if (bias != nullptr) {
    for (std::size_t i = 0; i < m; ++i) std::memcpy(y + i * n, bias, n * sizeof(float));
    beta = 1.0f;
    if (dense_sparse_x<V>(m, n, k, x, w, bias, y, pack_w)) return;
  }
  gemm_blocked<V>(m, n, k, 1.0f, pack_a_f32<typename V::arch, V::mr>{x, k, false}, pack_w, beta, y, n);
}

// ---------------------------------------------------------------------------
// Pre-packed batch-1 dense (inference GEMV)
// ---------------------------------------------------------------------------

/// Layout of the packed batch-1 form of W (n×k) and its bias for vector
/// traits V (L = V::lanes):
///
///     [bias: nb·L floats, 0 for o ≥ n]
///     [weights: chunk after chunk; chunk c (B blocks) is k rows of B·L
///      floats: row p holds W[o][p] for the chunk's outputs o]
///
/// with nb = ⌈n/L⌉ blocks of L outputs and at most `max_blocks` blocks (16
/// zmm / 12 ymm accumulators) per chunk, spread evenly. This is Wᵀ in
/// column panels: the kernel broadcasts x[p] and issues B FMAs on one
/// contiguous row, so there is no horizontal sum, the bias is the initial
/// accumulator and the activation clamps whole registers. Rows whose x[p] is
/// zero are skipped (their FMAs cannot change a sum when W is finite):
/// images with a blank background and the outputs of a relu have many.
template <class V>
struct f32_gemv_layout {
  static constexpr std::size_t lanes = V::lanes;
  static constexpr std::size_t max_blocks = f32_blocking<typename V::arch>::gemv_max_blocks;
  static constexpr std::size_t blocks(std::size_t n) noexcept { return (n + lanes - 1) / lanes; }
  static constexpr std::size_t chunks(std::size_t n) noexcept { return (blocks(n) + max_blocks - 1) / max_blocks; }
  static constexpr std::size_t chunk_first(std::size_t n, std::size_t c) noexcept {
    const std::size_t nb = blocks(n), ch = chunks(n), base = nb / ch, extra = nb % ch;
    return c * base + (c < extra ? c : extra);
  }
  static constexpr std::size_t chunk_blocks(std::size_t n, std::size_t c) noexcept {
    const std::size_t nb = blocks(n), ch = chunks(n);
    return nb / ch + (c < nb % ch ? 1 : 0);
  }
  static constexpr std::size_t floats(std::size_t n, std::size_t k) noexcept {
    return n == 0 ? 0 : blocks(n) * lanes * (k + 1);
  }
};

/// idx[0..count) = the positions p < k with x[p] != 0 (in order); returns
/// count. idx must have room for k + 16 entries.
template <class V>
TINYLARGE_ALWAYS_INLINE std::size_t nonzero_positions(const float* x, std::size_t k, std::uint32_t* idx) noexcept {
  return nonzero_positions_impl<typename V::arch>(x, k, 1, k, idx, typename V::arch{});
}

/// One chunk of B blocks: y[o] = act(bias[o] + Σ_{i<nnz} x[idx[i]]·W[o][idx[i]])
/// for the B·L outputs from o0 (stored only below n). act: 0 none, 1 relu, 2 relu6.
template <class V, std::size_t B>
TINYLARGE_NOINLINE void f32_gemv_chunk(std::size_t nnz, const std::uint32_t* idx, const float* x,
                                       const float* TINYLARGE_RESTRICT pw, const float* bias, int act,
                                       std::size_t o0, std::size_t n, float* y) noexcept {
  using reg = typename V::reg;
  constexpr std::size_t L = V::lanes, row = B * L;
  // Fewer than 4 blocks cannot hide the FMA latency: S accumulator sets
  // (consecutive nonzero positions rotate over them), added at the end.
  constexpr std::size_t S = B == 1 ? 4 : (B < 4 ? 2 : 1);
  reg acc[S][B];
#pragma GCC unroll 16
  for (std::size_t b = 0; b < B; ++b) {
    acc[0][b] = V::load(bias + o0 + b * L);
#pragma GCC unroll 4
    for (std::size_t s = 1; s < S; ++s) acc[s][b] = V::zero();
  }
  std::size_t i = 0;
  for (; i + S <= nnz; i += S) {
#pragma GCC unroll 4
    for (std::size_t s = 0; s < S; ++s) {
      const std::size_t p = idx[i + s];
      const reg xv = V::bcast(x + p);
      const float* wr = pw + p * row;
#pragma GCC unroll 16
      for (std::size_t b = 0; b < B; ++b) acc[s][b] = V::fmadd(xv, V::load(wr + b * L), acc[s][b]);
    }
  }
  for (; i < nnz; ++i) {
    const std::size_t p = idx[i];
    const reg xv = V::bcast(x + p);
#pragma GCC unroll 16
    for (std::size_t b = 0; b < B; ++b) acc[0][b] = V::fmadd(xv, V::load(pw + p * row + b * L), acc[0][b]);
  }
  const reg zero = V::zero(), six = V::set1(6.0f);
#pragma GCC unroll 16
  for (std::size_t b = 0; b < B; ++b) {
    reg v = acc[0][b];
#pragma GCC unroll 4
    for (std::size_t s = 1; s < S; ++s) v = V::add(v, acc[s][b]);
    if (act != 0) v = V::max(v, zero);  // max(NaN, 0) = 0, as the scalar relu
    if (act == 2) v = V::min(v, six);
    const std::size_t o = o0 + b * L;
    if (n - o >= L) {
      V::storeu(y + o, v);
    } else {
      V::storeu_n(y + o, v, n - o);
    }
  }
}

template <class V>
using f32_gemv_chunk_fn = void (*)(std::size_t, const std::uint32_t*, const float*, const float*, const float*, int,
                                   std::size_t, std::size_t, float*) noexcept;
template <class V, std::size_t... I>
constexpr auto make_f32_gemv_table(std::index_sequence<I...>) noexcept {
  struct table {
    f32_gemv_chunk_fn<V> fn[sizeof...(I)];
  };
  return table{{&f32_gemv_chunk<V, I + 1>...}};
}

template <class V>
void pack_dense_f32_impl(std::size_t n, std::size_t k, const float* w, const float* bias, float* dst) noexcept {
  using Lay = f32_gemv_layout<V>;
  constexpr std::size_t L = V::lanes;
  if (n == 0) return;
  const std::size_t nb = Lay::blocks(n);
  for (std::size_t o = 0; o < nb * L; ++o) dst[o] = o < n && bias != nullptr ? bias[o] : 0.0f;
  float* pw = dst + nb * L;
  for (std::size_t c = 0; c < Lay::chunks(n); ++c) {
    const std::size_t o0 = Lay::chunk_first(n, c) * L, width = Lay::chunk_blocks(n, c) * L;
    for (std::size_t p = 0; p < k; ++p)
      for (std::size_t j = 0; j < width; ++j) *pw++ = o0 + j < n ? w[(o0 + j) * k + p] : 0.0f;
  }
}

template <class V>
void dense_f32_packed_impl(std::size_t n, std::size_t k, const float* x, const float* packed, fused_activation act,
                           float* y) noexcept {
  using Lay = f32_gemv_layout<V>;
  constexpr std::size_t L = V::lanes;
  if (n == 0) return;
  static constexpr auto table = make_f32_gemv_table<V>(std::make_index_sequence<Lay::max_blocks>{});
  auto* idx = thread_scratch<scratch_slot::column>().get<std::uint32_t>(k + 16);
  const std::size_t nnz = nonzero_positions<V>(x, k, idx);
  const std::size_t nb = Lay::blocks(n);
  const float* pw = packed + nb * L;
  const int a = act == fused_activation::relu ? 1 : act == fused_activation::relu6 ? 2 : 0;
  for (std::size_t c = 0; c < Lay::chunks(n); ++c) {
    const std::size_t b0 = Lay::chunk_first(n, c), cb = Lay::chunk_blocks(n, c);
    table.fn[cb - 1](nnz, idx, x, pw, packed, a, b0 * L, n, y);
    pw += cb * L * k;
  }
}

// ---------------------------------------------------------------------------
// Zero skipping for a mostly-zero X (training on images with a blank
// background): bit-identical to the packed GEMM above.
//
// The GEMM computes every C element as: for each k block (the balanced blocks
// of `gemm_blocked`, in order) tile = +0, tile = V::fmadd(a_p, b_p, tile) for
// p in the block in increasing order, then C = V::fmadd(beta, C, alpha·tile),
// i.e. with alpha = beta = 1, C = C + tile. V::fmadd is one operation per
// architecture (fused where the target has FMA, multiply then add where it
// has none; see `fmadd`), used by every kernel here, so the argument holds
// for both roundings. A term whose factor is an exact zero adds
// ±0 (the other factor finite): it leaves a nonzero accumulator unchanged and
// can only change the sign of a zero one. So the kernels below visit the
// nonzero terms of each block in the same order with the same FMA (plus the
// zero terms of rows processed together with a row that is nonzero there,
// which are harmless for the same reason), and the
// tiles they add equal the GEMM's up to the sign of a zero; C + tile then
// differs only when C is −0 and the tile is zero. C is checked for −0 before
// each add and such elements are computed with every term, in the same
// order, with `V::fmadd1` (lane 0 of V::fmadd: std::fma would round once
// where the vector kernels round twice). Hence the results are the same bits for finite W / dY.
// ---------------------------------------------------------------------------

TINYLARGE_ALWAYS_INLINE bool is_negative_zero(float v) noexcept { return std::bit_cast<std::uint32_t>(v) == 0x80000000u; }
/// Whether any lane of v is −0.0f.
template <class A>
TINYLARGE_ALWAYS_INLINE bool any_negative_zero(fbatch<A> v) noexcept {
  using ubatch = xsimd::batch<std::uint32_t, A>;
  return xsimd::any(xsimd::bitwise_cast<ubatch>(v) == ubatch(0x80000000u));
}
/// Whether any of p[0..n) is −0.0f.
template <class A>
inline bool any_negative_zero(const float* p, std::size_t n) noexcept {
  using ubatch = xsimd::batch<std::uint32_t, A>;
  constexpr std::size_t L = ubatch::size;
  const ubatch neg(0x80000000u);
  auto acc = ubatch(0u) != ubatch(0u);  // all false
  std::size_t j = 0;
  for (; j + L <= n; j += L) acc = acc || (xsimd::bitwise_cast<ubatch>(fbatch<A>::load_unaligned(p + j)) == neg);
  bool any = xsimd::any(acc);
  // A count down rather than j < n: after inlining a constant n, GCC 12 for
  // 32-bit ARM warned about an impossible 2³⁰-iteration tail.
  for (std::size_t r = n - j; r != 0; --r) any |= is_negative_zero(p[n - r]);
  return any;
}

/// Whether the rows×cols block at x (row stride ld) has few enough nonzeros
/// (at most max_pct % of its elements; `f32_blocking`'s break-even of the
/// kernel, 0: never in automatic mode) for a zero-skipping kernel to pay
/// off, or the mode forces it.
inline bool worth_skipping_zeros(const float* x, std::size_t rows, std::size_t cols, std::size_t ld,
                                 std::size_t max_pct) noexcept {
  const zero_skip mode = zero_skip_mode;
  if (mode != zero_skip::automatic) return mode == zero_skip::always;
  if (max_pct == 0) return false;
  std::size_t nnz = 0;
  for (std::size_t i = 0; i < rows; ++i) {
    const float* xr = x + i * ld;
    std::uint32_t row = 0;
    for (std::size_t j = 0; j < cols; ++j) row += xr[j] != 0.0f ? 1u : 0u;
    nnz += row;
  }
  return nnz * 100 <= rows * cols * max_pct;
}

/// Register blocking of the zero-skipping kernels: R rows (samples, or
/// columns of B) share each loaded weight vector and A accumulators each
/// (R·A + R + 1 registers); see `f32_blocking`.
template <class V>
inline constexpr std::size_t sparse_rows = f32_blocking<typename V::arch>::sparse_rows;  ///< weight gradient: columns of X
template <class V>
inline constexpr std::size_t sparse_regs = f32_blocking<typename V::arch>::sparse_regs;
template <class V>
inline constexpr std::size_t sparse_fwd_rows = f32_blocking<typename V::arch>::sparse_fwd_rows;  ///< forward: samples
template <class V>
inline constexpr std::size_t sparse_fwd_regs = f32_blocking<typename V::arch>::sparse_fwd_regs;

/// t[r][a·L + l] = Σ_{u<cnt} xs[s·sx + r·sr]·w̃[s][a·L + l] for r < R, a < A,
/// s = list[u] in order, from +0; w̃ register a of step s at
/// w + s·sw + (a / 2)·pstride + (a % 2)·L (aligned). The steps are the
/// positions where any of the R rows is nonzero: the extra terms are exact
/// zeros of the other rows (see above: they change at most zero signs).
template <class V, std::size_t R, std::size_t A>
TINYLARGE_NOINLINE void sparse_tile(std::size_t cnt, const std::uint32_t* list, const float* xs, std::size_t sx,
                                    std::size_t sr, const float* TINYLARGE_RESTRICT w, std::size_t sw,
                                    std::size_t pstride, float* t, std::size_t ldt) noexcept {
  using reg = typename V::reg;
  constexpr std::size_t L = V::lanes;
  reg acc[R][A];
#pragma GCC unroll 8
  for (std::size_t r = 0; r < R; ++r)
#pragma GCC unroll 8
    for (std::size_t a = 0; a < A; ++a) acc[r][a] = V::zero();
  for (std::size_t u = 0; u < cnt; ++u) {
    const std::size_t s = list[u];
    reg xv[R];
#pragma GCC unroll 8
    for (std::size_t r = 0; r < R; ++r) xv[r] = V::bcast(xs + s * sx + r * sr);
    const float* wr = w + s * sw;
#pragma GCC unroll 8
    for (std::size_t a = 0; a < A; ++a) {
      const reg wv = V::load_shared(wr + (a / 2) * pstride + (a % 2) * L);
#pragma GCC unroll 8
      for (std::size_t r = 0; r < R; ++r) acc[r][a] = V::fmadd(xv[r], wv, acc[r][a]);
    }
  }
#pragma GCC unroll 8
  for (std::size_t r = 0; r < R; ++r)
#pragma GCC unroll 8
    for (std::size_t a = 0; a < A; ++a) V::store(t + r * ldt + a * L, acc[r][a]);
}

template <class V>
using sparse_tile_fn = void (*)(std::size_t, const std::uint32_t*, const float*, std::size_t, std::size_t,
                                const float*, std::size_t, std::size_t, float*, std::size_t) noexcept;
template <class V, std::size_t RM, std::size_t AM>
struct sparse_tile_table {
  sparse_tile_fn<V> fn[RM][AM];  ///< sparse_tile<V, R, A> at fn[R − 1][A − 1]
};
template <class V, std::size_t R, std::size_t... I>
constexpr void fill_sparse_tile_row(sparse_tile_fn<V>* row, std::index_sequence<I...>) noexcept {
  ((row[I] = &sparse_tile<V, R, I + 1>), ...);
}
template <class V, std::size_t AM, std::size_t... R>
constexpr sparse_tile_table<V, sizeof...(R), AM> make_sparse_tile_table(std::index_sequence<R...>) noexcept {
  sparse_tile_table<V, sizeof...(R), AM> t{};
  (fill_sparse_tile_row<V, R + 1>(t.fn[R], std::make_index_sequence<AM>{}), ...);
  return t;
}

/// The positions p < k where any of the `rows` rows at x (row stride ld) is
/// nonzero, into idx (room for k + 16); returns their count.
template <class V>
TINYLARGE_ALWAYS_INLINE std::size_t union_nonzero_positions(const float* x, std::size_t ld, std::size_t rows,
                                                            std::size_t k, std::uint32_t* idx) noexcept {
  return nonzero_positions_impl<typename V::arch>(x, ld, rows, k, idx, typename V::arch{});
}

/// Y = X·Wᵀ + Y (Y already holds the bias) skipping the zeros of X, as
/// `gemm_blocked` with beta = 1 would compute it. m ≥ 2.
template <class V, class T, class PackW>
bool dense_sparse_x(std::size_t m, std::size_t n, std::size_t k, const float* x, const T* w, const float* bias,
                    float* y, const PackW& pack_w) noexcept {
  constexpr std::size_t KC = V::kc, NR = V::nr, L = V::lanes, RB = sparse_fwd_rows<V>, PA = sparse_fwd_regs<V> / 2;
  if (k == 0 || bias == nullptr ||
      !worth_skipping_zeros(x, m, k, k, f32_blocking<typename V::arch>::sparse_fwd_max_pct))
    return false;
  static constexpr auto table = make_sparse_tile_table<V, 2 * PA>(std::make_index_sequence<RB>{});
  const std::size_t kblocks = (k + KC - 1) / KC;
  const std::size_t kcb = (k + kblocks - 1) / kblocks;  // the k blocks of gemm_blocked
  const std::size_t panels = (n + NR - 1) / NR, chunks = (panels + PA - 1) / PA;
  float* wt = thread_scratch<scratch_slot::pack_b>().get<float>(panels * NR * k);
  auto* idx = thread_scratch<scratch_slot::column>().get<std::uint32_t>(kcb + 16);
  auto* negs = thread_scratch<scratch_slot::accum>().get<std::uint32_t>(RB * n);
  alignas(64) float t[RB * 2 * PA * L];
  pack_w(wt, 0, n, 0, k);  // panel q: k rows of NR values of Wᵀ at wt + q·NR·k
  for (std::size_t pc = 0; pc < k; pc += kcb) {
    const std::size_t kc = std::min(kcb, k - pc);
    for (std::size_t i0 = 0; i0 < m; i0 += RB) {
      const std::size_t rb = std::min(RB, m - i0);
      const float* xr = x + i0 * k + pc;
      float* cr = y + i0 * n;
      const bool neg_zero = any_negative_zero<typename V::arch>(cr, rb * n);
      std::size_t nneg = 0;
      if (TINYLARGE_UNLIKELY(neg_zero))
        for (std::size_t j = 0; j < rb * n; ++j)
          if (is_negative_zero(cr[j])) negs[nneg++] = static_cast<std::uint32_t>(j);
      const std::size_t nnz = union_nonzero_positions<V>(xr, k, rb, kc, idx);
      if (nnz != 0) {  // else C + (±0) = C for C ≠ −0
        for (std::size_t ch = 0, q0 = 0; ch < chunks; ++ch) {
          const std::size_t np = panels / chunks + (ch < panels % chunks ? 1 : 0);
          const std::size_t a = std::min(2 * np, (n - q0 * NR + L - 1) / L);  // registers with outputs
          table.fn[rb - 1][a - 1](nnz, idx, xr, 1, k, wt + q0 * NR * k + pc * NR, NR, NR * k, t, a * L);
          const std::size_t ncols = std::min(n - q0 * NR, a * L);
          for (std::size_t r = 0; r < rb; ++r) {
            float* c = cr + r * n + q0 * NR;
            const float* tr = t + r * a * L;
            for (std::size_t o = 0; o < ncols; o += L) {
              if (ncols - o >= L) {
                V::storeu(c + o, V::add(V::loadu(c + o), V::load(tr + o)));
              } else {
                V::storeu_n(c + o, V::add(V::loadu_n(c + o, ncols - o), V::load(tr + o)), ncols - o);
              }
            }
          }
          q0 += np;
        }
      }
      for (std::size_t u = 0; u < nneg; ++u) {  // C was −0: every term, in order (see above)
        const std::size_t r = negs[u] / n, j = negs[u] % n;
        float acc = 0.0f;
        for (std::size_t p = 0; p < kc; ++p) acc = V::fmadd1(xr[r * k + p], to_f32(w[j * k + pc + p]), acc);
        cr[r * n + j] = -0.0f + acc;
      }
    }
  }
  return true;
}

/// C (m×n) += Ãᵀ·B with Ã = a (k×m, row stride lda) and B (k×n, row stride
/// ldb) mostly zero, skipping the zeros of B, as `gemm_blocked` with
/// alpha = beta = 1 would compute it (the weight gradient of a dense layer).
template <class V>
bool gemm_tn_sparse_b(std::size_t m, std::size_t n, std::size_t k, const float* a, std::size_t lda, const float* b,
                      std::size_t ldb, float* c, std::size_t ldc, bool overwrite) noexcept {
  constexpr std::size_t KC = V::kc, L = V::lanes, RB = sparse_rows<V>, AM = sparse_regs<V>, G = 8;
  static_assert(G % RB == 0);
  if (m == 0 || n == 0 || k == 0 ||
      !worth_skipping_zeros(b, k, n, ldb, f32_blocking<typename V::arch>::sparse_wgrad_max_pct))
    return false;
  if (overwrite)  // beta = 0: C is not read; the accumulation below starts from +0
    for (std::size_t r = 0; r < m; ++r) std::fill_n(c + r * ldc, n, 0.0f);
  static constexpr auto table = make_sparse_tile_table<V, AM>(std::make_index_sequence<RB>{});
  const std::size_t kblocks = (k + KC - 1) / KC;
  const std::size_t kcb = (k + kblocks - 1) / kblocks;  // the k blocks of gemm_blocked
  const std::size_t nregs = (m + L - 1) / L, mpad = nregs * L, chunks = (nregs + AM - 1) / AM;
  float* ap = thread_scratch<scratch_slot::pack_b>().get<float>(kcb * mpad);
  float* t = thread_scratch<scratch_slot::accum>().get<float>(G * mpad);
  auto* rows = thread_scratch<scratch_slot::column>().get<std::uint32_t>(kcb + 16);
  for (std::size_t pc = 0; pc < k; pc += kcb) {
    const std::size_t kc = std::min(kcb, k - pc);
    const float* bb = b + pc * ldb;
    for (std::size_t i = 0; i < kc; ++i) {  // Ã rows padded to mpad
      std::memcpy(ap + i * mpad, a + (pc + i) * lda, m * sizeof(float));
      for (std::size_t o = m; o < mpad; ++o) ap[i * mpad + o] = 0.0f;
    }
    auto dense_term = [&](std::size_t o, std::size_t p) noexcept {  // every term, in order
      float acc = 0.0f;
      for (std::size_t i = 0; i < kc; ++i) acc = V::fmadd1(ap[i * mpad + o], bb[i * ldb + p], acc);
      return acc;
    };
    for (std::size_t p0 = 0; p0 < n; p0 += G) {
      const std::size_t g = std::min(G, n - p0);
      for (std::size_t q0 = 0; q0 < g; q0 += RB) {
        const std::size_t rb = std::min(RB, g - q0);
        const float* bp = bb + p0 + q0;
        std::size_t cnt = 0;  // rows i where any of the rb columns is nonzero
        for (std::size_t i = 0; i < kc; ++i) {
          rows[cnt] = static_cast<std::uint32_t>(i);
          cnt += any_nonzero_n<typename V::arch>(bp + i * ldb, rb, typename V::arch{}) ? 1 : 0;
        }
        for (std::size_t ch = 0, r0 = 0; ch < chunks; ++ch) {
          const std::size_t na = nregs / chunks + (ch < nregs % chunks ? 1 : 0);
          table.fn[rb - 1][na - 1](cnt, rows, bp, ldb, 1, ap + r0 * L, mpad, 2 * L, t + q0 * mpad + r0 * L, mpad);
          r0 += na;
        }
      }
      // C[o][p0 + q] += t[q][o], through 8×8 transposes.
      std::size_t o = 0;
      if (g == G) {
        alignas(64) float tt[8 * 8];
        for (; o + 8 <= m; o += 8) {
          transpose8_block<typename V::arch>(t + o, mpad, tt, 8, typename V::arch{});  // tt[j][q] = t[q][o + j]
          for (std::size_t j = 0; j < 8; ++j) {
            float* cr = c + (o + j) * ldc + p0;
            if (TINYLARGE_UNLIKELY(any_negative_zero<typename V::arch>(cr, 8))) {
              for (std::size_t q = 0; q < 8; ++q)
                cr[q] = cr[q] + (is_negative_zero(cr[q]) ? dense_term(o + j, p0 + q) : tt[j * 8 + q]);
            } else {
              if constexpr (L <= 8) {
                for (std::size_t q = 0; q < 8; q += L) V::storeu(cr + q, V::add(V::loadu(cr + q), V::loadu(tt + j * 8 + q)));
              } else {
                V::storeu_n(cr, V::add(V::loadu_n(cr, 8), V::loadu_n(tt + j * 8, 8)), 8);
              }
            }
          }
        }
      }
      for (; o < m; ++o) {
        float* cr = c + o * ldc + p0;
        for (std::size_t q = 0; q < g; ++q)
          cr[q] = cr[q] + (is_negative_zero(cr[q]) ? dense_term(o, p0 + q) : t[q * mpad + o]);
      }
    }
  }
  return true;
}

}  // namespace tinylarge::kernels::detail::TINYLARGE_KERNELS_ISA

namespace tinylarge::kernels::detail::inline TINYLARGE_KERNELS_ISA {
/// The xsimd architecture that implements back end tag B, by overload on the
/// tag (the nearest base with an overload wins); `void` for none (`scalar`,
/// `cortex_m_dsp`).
void xsimd_arch_of(scalar) noexcept;
#if XSIMD_WITH_SSE2
xsimd::sse2 xsimd_arch_of(arch::sse2) noexcept;
#endif
#if XSIMD_WITH_FMA3_AVX2 && defined(__F16C__)
xsimd::fma3<xsimd::avx2> xsimd_arch_of(arch::avx2) noexcept;
#endif
#if XSIMD_WITH_AVX512BW && XSIMD_WITH_AVX512DQ && defined(__AVX512VL__) && XSIMD_WITH_FMA3_AVX2 && defined(__F16C__)
xsimd::avx512bw xsimd_arch_of(arch::avx512) noexcept;
#endif
#if XSIMD_WITH_NEON64
xsimd::neon64 xsimd_arch_of(arch::neon) noexcept;
#elif XSIMD_WITH_NEON
xsimd::neon xsimd_arch_of(arch::neon) noexcept;
#endif
template <class B>
using xsimd_arch_t = decltype(xsimd_arch_of(B{}));
/// The vector operations of back end B.
template <class B>
using f32_ops_of = f32_ops<xsimd_arch_t<B>>;
}  // namespace tinylarge::kernels::detail::TINYLARGE_KERNELS_ISA

namespace tinylarge::kernels::inline TINYLARGE_KERNELS_ISA {

/// A back end tag whose fp32 kernels are the xsimd ones of this file.
template <class B>
concept xsimd_backend = std::is_base_of_v<scalar, B> && !std::is_void_v<detail::xsimd_arch_t<B>>;

/// gemm<T> (A, B stored as float / half / bfloat16; fp32 products and sums)
/// on an xsimd back end: 16-bit operands are widened to fp32 while packing,
/// then the fp32 micro-kernel runs. Same contract as the scalar overload.
template <xsimd_backend B, class T>
void gemm(B, transpose ta, transpose tb, std::size_t m, std::size_t n, std::size_t k, float alpha, const T* a,
          std::size_t lda, const T* b, std::size_t ldb, float beta, float* c, std::size_t ldc) noexcept {
  static_assert(kernel_float<T>, "kernels::gemm<T>: T must be float, tinylarge::half or tinylarge::bfloat16");
  detail::gemm_f32_impl<detail::f32_ops_of<B>>(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

/// dense<TX, T> on an xsimd back end: GEMV for m = 1, packed GEMM otherwise
/// (W widened while packing / in the GEMV loop, a 16-bit X widened once).
template <xsimd_backend B, class TX, class T>
void dense(B, std::size_t m, std::size_t n, std::size_t k, const TX* x, const T* w, const float* bias,
           float* y) noexcept {
  static_assert(kernel_float<TX> && kernel_float<T>, "kernels::dense<TX, T>: TX and T must be float, "
                                                     "tinylarge::half or tinylarge::bfloat16");
  using V = detail::f32_ops_of<B>;
  using Arch = typename V::arch;
  detail::dense_impl<V>(m, n, k, x, w, bias, y, detail::pack_b_f32<Arch, V::nr, T>{w, k, true});
}

/// C = alpha·op(A)·op(B) + beta·C on an xsimd back end: `gemm<float>`.
template <xsimd_backend B>
void gemm_f32(B, transpose ta, transpose tb, std::size_t m, std::size_t n, std::size_t k, float alpha,
              const float* a, std::size_t lda, const float* b, std::size_t ldb, float beta, float* c,
              std::size_t ldc) noexcept {
  gemm(B{}, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}
/// W ← W − η·(Aᵀ·B) on an xsimd back end (contract: the scalar overload in
/// kernels/elementwise.hpp); the update is fused into the GEMM's epilogue
/// when k ≤ the k block (`detail::sgd_gemm_tn_impl`).
template <xsimd_backend B>
void sgd_gemm_tn_f32(B, std::size_t m, std::size_t n, std::size_t k, float lr, const float* a, std::size_t lda,
                     const float* b, std::size_t ldb, float* w, std::size_t ldw, float* g) noexcept {
  detail::sgd_gemm_tn_impl<detail::f32_ops_of<B>>(m, n, k, lr, a, lda, b, ldb, w, ldw, g);
}
/// Y = X·Wᵀ + bias on an xsimd back end: `dense<float, float>`.
template <xsimd_backend B>
void dense_f32(B, std::size_t m, std::size_t n, std::size_t k, const float* x, const float* w, const float* bias,
               float* y) noexcept {
  dense(B{}, m, n, k, x, w, bias, y);
}
/// Y = X·Wᵀ + bias with binary16 W on an xsimd back end: `dense<float, half>`.
template <xsimd_backend B>
void dense_f16(B, std::size_t m, std::size_t n, std::size_t k, const float* x, const half* w, const float* bias,
               float* y) noexcept {
  dense(B{}, m, n, k, x, w, bias, y);
}

/// Floats of the packed batch-1 form of an n×k W and bias (`detail::f32_gemv_layout`).
template <xsimd_backend B>
constexpr std::size_t dense_f32_packed_floats(B, std::size_t n, std::size_t k) noexcept {
  return detail::f32_gemv_layout<detail::f32_ops_of<B>>::floats(n, k);
}
/// Lay out W (n×k, row-major) and bias (may be null) for `dense_f32_packed`;
/// `dst`: 64-byte aligned, `dense_f32_packed_floats` floats.
template <xsimd_backend B>
void pack_dense_f32(B, std::size_t n, std::size_t k, const float* w, const float* bias, float* dst) noexcept {
  detail::pack_dense_f32_impl<detail::f32_ops_of<B>>(n, k, w, bias, dst);
}
/// y = act(W·x + bias) for one sample from the packed W, skipping zero x[p];
/// equal to `dense_f32` + activation up to the summation order (for finite W).
template <xsimd_backend B>
void dense_f32_packed(B, std::size_t n, std::size_t k, const float* x, const float* packed, fused_activation act,
                      float* y) noexcept {
  detail::dense_f32_packed_impl<detail::f32_ops_of<B>>(n, k, x, packed, act, y);
}

}  // namespace tinylarge::kernels::TINYLARGE_KERNELS_ISA

#undef TINYLARGE_KERNELS_NEON_F16_CONVERT
