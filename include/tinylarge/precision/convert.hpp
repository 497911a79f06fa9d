/// @file precision/convert.hpp
/// @brief Bulk conversions between fp32 and the 16-bit storage formats
///        (`half`, `bfloat16`), one overload set per back end.
///
/// Every back end gives the same bits as the scalar reference functions
/// `float_to_half` / `half_to_float` (precision/fp16.hpp) and
/// `float_to_bfloat16` / `bfloat16_to_float` (precision/bf16.hpp): round to
/// nearest even, subnormals kept, NaN quieted with its top payload bits.
///
///     tl::convert(src, dst);                 // arch::best for this build
///     tl::convert(tl::arch::scalar{}, src, dst);
///
/// The scalar overloads here are freestanding-safe. On x86 builds with F16C
/// and AVX2 (or AVX-512 F/BW/VL), `precision/simd/f16c.hpp` adds overloads for
/// `arch::avx2` and `arch::avx512`; a derived tag such as `arch::avx512_vnni`
/// resolves to the nearest base that has one.
#pragma once

#include <cstddef>
#include <span>

#include "../core/arch.hpp"
#include "../core/error.hpp"
#include "bf16.hpp"
#include "fp16.hpp"

namespace tinylarge {

// ---------------------------------------------------------------------------
// Scalar back end (the reference). Callers guarantee src.size() == dst.size().
// ---------------------------------------------------------------------------

inline void convert(arch::scalar, std::span<const float> src, std::span<half> dst) noexcept {
  for (std::size_t i = 0; i < src.size(); ++i) dst[i] = float_to_half(src[i]);
}
inline void convert(arch::scalar, std::span<const half> src, std::span<float> dst) noexcept {
  for (std::size_t i = 0; i < src.size(); ++i) dst[i] = half_to_float(src[i]);
}
inline void convert(arch::scalar, std::span<const float> src, std::span<bfloat16> dst) noexcept {
  for (std::size_t i = 0; i < src.size(); ++i) dst[i] = float_to_bfloat16(src[i]);
}
inline void convert(arch::scalar, std::span<const bfloat16> src, std::span<float> dst) noexcept {
  for (std::size_t i = 0; i < src.size(); ++i) dst[i] = bfloat16_to_float(src[i]);
}

}  // namespace tinylarge

#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__)
#include "simd/f16c.hpp"
#endif

namespace tinylarge {

namespace detail {
template <class Backend, class From, class To>
void checked_convert(Backend b, std::span<const From> src, std::span<To> dst) {
  TINYLARGE_REQUIRE(src.size() == dst.size(), errc::shape_mismatch,
                    "convert: source and destination sizes differ");
  convert(b, src, dst);
}
}  // namespace detail

/// fp32 → binary16 with the best back end of this build. Sizes must match.
inline void convert(std::span<const float> src, std::span<half> dst) {
  detail::checked_convert(arch::best{}, src, dst);
}
/// binary16 → fp32 (exact) with the best back end of this build.
inline void convert(std::span<const half> src, std::span<float> dst) {
  detail::checked_convert(arch::best{}, src, dst);
}
/// fp32 → bfloat16 with the best back end of this build. Sizes must match.
inline void convert(std::span<const float> src, std::span<bfloat16> dst) {
  detail::checked_convert(arch::best{}, src, dst);
}
/// bfloat16 → fp32 (exact) with the best back end of this build.
inline void convert(std::span<const bfloat16> src, std::span<float> dst) {
  detail::checked_convert(arch::best{}, src, dst);
}

}  // namespace tinylarge
