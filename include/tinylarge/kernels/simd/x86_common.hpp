/// @file kernels/simd/x86_common.hpp
/// @brief Small x86 intrinsic helpers shared by the fp32 kernels
///        (`simd/f32.hpp`, for what xsimd 8.1 lacks) and the int8 kernels
///        (`simd/x86_s8.hpp`). Internal: include `kernels/dense.hpp`.
#pragma once

#if !defined(TINYLARGE_KERNELS_DENSE_SCALAR_DECLARED)
#error "internal header: include <tinylarge/kernels/dense.hpp> instead"
#endif

#include <immintrin.h>

#include <cstddef>

#include "../../core/config.hpp"
#include "../../precision/bf16.hpp"
#include "../../precision/fp16.hpp"

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__) && defined(__AVX512F__) && defined(__AVX512BW__) && \
    defined(__AVX512DQ__) && defined(__AVX512VL__)
#define TINYLARGE_KERNELS_X86_AVX512 1
#endif

namespace tinylarge::kernels::detail::inline TINYLARGE_KERNELS_ISA {

/// Whether binary16 ↔ fp32 conversions (F16C) are available to this translation unit.
#if defined(__F16C__)
inline constexpr bool x86_f16c = true;
#else
inline constexpr bool x86_f16c = false;
#endif

/// Transpose the 8×8 fp32 block held in r[0..7] (row i → column i).
TINYLARGE_ALWAYS_INLINE void transpose8x8(__m256 r[8]) noexcept {
  const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
  const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
  const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
  const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
  const __m256 s0 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(1, 0, 1, 0));
  const __m256 s1 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(3, 2, 3, 2));
  const __m256 s2 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(1, 0, 1, 0));
  const __m256 s3 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(3, 2, 3, 2));
  const __m256 s4 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(1, 0, 1, 0));
  const __m256 s5 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(3, 2, 3, 2));
  const __m256 s6 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(1, 0, 1, 0));
  const __m256 s7 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(3, 2, 3, 2));
  r[0] = _mm256_permute2f128_ps(s0, s4, 0x20);
  r[1] = _mm256_permute2f128_ps(s1, s5, 0x20);
  r[2] = _mm256_permute2f128_ps(s2, s6, 0x20);
  r[3] = _mm256_permute2f128_ps(s3, s7, 0x20);
  r[4] = _mm256_permute2f128_ps(s0, s4, 0x31);
  r[5] = _mm256_permute2f128_ps(s1, s5, 0x31);
  r[6] = _mm256_permute2f128_ps(s2, s6, 0x31);
  r[7] = _mm256_permute2f128_ps(s3, s7, 0x31);
}

/// Sum of each of the eight vectors a[0..7]: result lane j = Σ_lanes a[j].
TINYLARGE_ALWAYS_INLINE __m256 reduce8(const __m256 a[8]) noexcept {
  const __m256 t0 = _mm256_hadd_ps(a[0], a[1]), t1 = _mm256_hadd_ps(a[2], a[3]);
  const __m256 t2 = _mm256_hadd_ps(a[4], a[5]), t3 = _mm256_hadd_ps(a[6], a[7]);
  const __m256 u0 = _mm256_hadd_ps(t0, t1), u1 = _mm256_hadd_ps(t2, t3);
  return _mm256_add_ps(_mm256_permute2f128_ps(u0, u1, 0x20), _mm256_permute2f128_ps(u0, u1, 0x31));
}

/// Lane mask with the first `n` (0..8) lanes set, for AVX2 masked moves.
TINYLARGE_ALWAYS_INLINE __m256i avx2_lane_mask(std::size_t n) noexcept {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/// Eight consecutive elements as fp32 (exact widening).
TINYLARGE_ALWAYS_INLINE __m256 load8_as_f32(const float* p) noexcept { return _mm256_loadu_ps(p); }
#if defined(__F16C__)
TINYLARGE_ALWAYS_INLINE __m256 load8_as_f32(const half* p) noexcept {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}
#endif
TINYLARGE_ALWAYS_INLINE __m256 load8_as_f32(const bfloat16* p) noexcept {
  return _mm256_castsi256_ps(
      _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))), 16));
}

#if defined(__AVX512F__)
/// Mask of the first `n` (≤ 16) of 16 lanes.
TINYLARGE_ALWAYS_INLINE __mmask16 first_lanes16(std::size_t n) noexcept {
  return static_cast<__mmask16>((1u << n) - 1u);
}
#endif

}  // namespace tinylarge::kernels::detail::TINYLARGE_KERNELS_ISA
