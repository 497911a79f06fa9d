/// @file precision/simd/f16c.hpp
/// @brief x86 bulk conversions fp32 ↔ binary16 / bfloat16 for the `arch::avx2`
///        and `arch::avx512` back ends. Included by precision/convert.hpp.
///
///  - binary16 uses the F16C instructions (VCVTPS2PH with an explicit
///    round-to-nearest-even immediate, so MXCSR is not consulted, and
///    VCVTPH2PS), 8 lanes with AVX2 and 16 with AVX-512 (masked tails).
///  - bfloat16 uses integer arithmetic, the same formula as the scalar
///    `float_to_bfloat16`: (bits + 0x7FFF + lsb) >> 16, NaN quieted. The
///    AVX512_BF16 instruction VCVTNEPS2BF16 is deliberately not used: it
///    flushes subnormal inputs to zero, so it would not give the scalar bits.
///
/// Each overload exists only when the translation unit is compiled for it
/// (`-mavx2 -mfma -mf16c`, `-mavx512f -mavx512bw -mavx512dq -mavx512vl`,
/// `-march=native`, …): the back end is a compile-time choice.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "../../core/arch.hpp"
#include "../../core/config.hpp"
#include "../bf16.hpp"
#include "../fp16.hpp"

#if defined(__AVX2__) && defined(__F16C__)
#include <immintrin.h>
#endif

namespace tinylarge {

namespace detail {
/// dst[j] = f(src[j]) for j in [first, size): the scalar tail after a vector body.
/// (Raw pointers and a count, so that GCC does not warn about an impossible
/// 2^62-iteration loop after inlining a known size.)
template <class From, class To, class F>
TINYLARGE_ALWAYS_INLINE void convert_tail(std::span<const From> src, std::span<To> dst, std::size_t first,
                                          F f) noexcept {
  const From* s = src.data() + first;
  To* d = dst.data() + first;
  for (std::size_t r = src.size() - first; r != 0; --r) *d++ = f(*s++);
}
}  // namespace detail

#if defined(__AVX2__) && defined(__F16C__)

inline void convert(arch::avx2, std::span<const float> src, std::span<half> dst) noexcept {
  const std::size_t n = src.size();
  std::size_t i = 0;
  for (; n - i >= 8; i += 8) {
    const __m256 v = _mm256_loadu_ps(src.data() + i);
    const __m128i h = _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst.data() + i), h);
  }
  detail::convert_tail(src, dst, i, [](auto v) { return float_to_half(v); });
}

inline void convert(arch::avx2, std::span<const half> src, std::span<float> dst) noexcept {
  const std::size_t n = src.size();
  std::size_t i = 0;
  for (; n - i >= 8; i += 8) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src.data() + i));
    _mm256_storeu_ps(dst.data() + i, _mm256_cvtph_ps(h));
  }
  detail::convert_tail(src, dst, i, [](auto v) { return half_to_float(v); });
}

namespace detail {
/// Eight floats (as int32 bits) → their bfloat16 bits in the low 16 bits of
/// each lane; RNE, NaN quieted. Same arithmetic as `float_to_bfloat16`.
TINYLARGE_ALWAYS_INLINE __m256i bf16_round_avx2(__m256i x) noexcept {
  const __m256i magnitude = _mm256_and_si256(x, _mm256_set1_epi32(0x7FFFFFFF));
  const __m256i is_nan = _mm256_cmpgt_epi32(magnitude, _mm256_set1_epi32(0x7F800000));
  const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(x, 16), _mm256_set1_epi32(1));
  const __m256i rounded = _mm256_add_epi32(_mm256_add_epi32(x, _mm256_set1_epi32(0x7FFF)), lsb);
  const __m256i quiet = _mm256_or_si256(x, _mm256_set1_epi32(0x00400000));
  return _mm256_srli_epi32(_mm256_blendv_epi8(rounded, quiet, is_nan), 16);
}
}  // namespace detail

inline void convert(arch::avx2, std::span<const float> src, std::span<bfloat16> dst) noexcept {
  const std::size_t n = src.size();
  std::size_t i = 0;
  for (; n - i >= 16; i += 16) {
    const __m256i a = detail::bf16_round_avx2(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(src.data() + i)));
    const __m256i b =
        detail::bf16_round_avx2(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(src.data() + i + 8)));
    // packus interleaves 128-bit lanes: [a0..3 b0..3 a4..7 b4..7] → reorder quadwords 0,2,1,3.
    const __m256i packed = _mm256_permute4x64_epi64(_mm256_packus_epi32(a, b), 0xD8);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst.data() + i), packed);
  }
  detail::convert_tail(src, dst, i, [](auto v) { return float_to_bfloat16(v); });
}

inline void convert(arch::avx2, std::span<const bfloat16> src, std::span<float> dst) noexcept {
  const std::size_t n = src.size();
  std::size_t i = 0;
  for (; n - i >= 8; i += 8) {
    const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src.data() + i));
    const __m256i w = _mm256_slli_epi32(_mm256_cvtepu16_epi32(b), 16);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst.data() + i), w);
  }
  detail::convert_tail(src, dst, i, [](auto v) { return bfloat16_to_float(v); });
}

#endif  // AVX2 && F16C

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && defined(__F16C__)

// GCC 12's AVX-512 intrinsics start from `_mm512_undefined_*()`, which
// -Wmaybe-uninitialized reports once inlined (GCC PR 105593, fixed in 13).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

namespace detail {
/// Lane mask selecting the first `r` (< 16) of 16 lanes.
TINYLARGE_ALWAYS_INLINE __mmask16 first_lanes(std::size_t r) noexcept {
  return static_cast<__mmask16>((1u << r) - 1u);
}
}  // namespace detail

inline void convert(arch::avx512, std::span<const float> src, std::span<half> dst) noexcept {
  const std::size_t n = src.size();
  std::size_t i = 0;
  constexpr int rne = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
  for (; n - i >= 16; i += 16) {
    const __m256i h = _mm512_cvtps_ph(_mm512_loadu_ps(src.data() + i), rne);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst.data() + i), h);
  }
  if (i < n) {
    const __mmask16 m = detail::first_lanes(n - i);
    const __m256i h = _mm512_cvtps_ph(_mm512_maskz_loadu_ps(m, src.data() + i), rne);
    _mm256_mask_storeu_epi16(dst.data() + i, m, h);
  }
}

inline void convert(arch::avx512, std::span<const half> src, std::span<float> dst) noexcept {
  const std::size_t n = src.size();
  std::size_t i = 0;
  for (; n - i >= 16; i += 16) {
    const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src.data() + i));
    _mm512_storeu_ps(dst.data() + i, _mm512_cvtph_ps(h));
  }
  if (i < n) {
    const __mmask16 m = detail::first_lanes(n - i);
    _mm512_mask_storeu_ps(dst.data() + i, m, _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, src.data() + i)));
  }
}

namespace detail {
TINYLARGE_ALWAYS_INLINE __m256i bf16_round_avx512(__m512i x) noexcept {
  const __m512i magnitude = _mm512_and_si512(x, _mm512_set1_epi32(0x7FFFFFFF));
  const __mmask16 is_nan = _mm512_cmpgt_epi32_mask(magnitude, _mm512_set1_epi32(0x7F800000));
  const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(x, 16), _mm512_set1_epi32(1));
  __m512i r = _mm512_add_epi32(_mm512_add_epi32(x, _mm512_set1_epi32(0x7FFF)), lsb);
  r = _mm512_mask_or_epi32(r, is_nan, x, _mm512_set1_epi32(0x00400000));
  return _mm512_cvtepi32_epi16(_mm512_srli_epi32(r, 16));  // VPMOVDW: keep the low 16 bits
}
}  // namespace detail

inline void convert(arch::avx512, std::span<const float> src, std::span<bfloat16> dst) noexcept {
  const std::size_t n = src.size();
  std::size_t i = 0;
  for (; n - i >= 16; i += 16) {
    const __m256i b = detail::bf16_round_avx512(_mm512_loadu_si512(src.data() + i));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst.data() + i), b);
  }
  if (i < n) {
    const __mmask16 m = detail::first_lanes(n - i);
    const __m256i b = detail::bf16_round_avx512(_mm512_maskz_loadu_epi32(m, src.data() + i));
    _mm256_mask_storeu_epi16(dst.data() + i, m, b);
  }
}

inline void convert(arch::avx512, std::span<const bfloat16> src, std::span<float> dst) noexcept {
  const std::size_t n = src.size();
  std::size_t i = 0;
  for (; n - i >= 16; i += 16) {
    const __m256i b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src.data() + i));
    _mm512_storeu_si512(dst.data() + i, _mm512_slli_epi32(_mm512_cvtepu16_epi32(b), 16));
  }
  if (i < n) {
    const __mmask16 m = detail::first_lanes(n - i);
    const __m512i w = _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, src.data() + i)), 16);
    _mm512_mask_storeu_epi32(dst.data() + i, m, w);
  }
}

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

#endif  // AVX-512 F/BW/VL && F16C

}  // namespace tinylarge
