/// @file precision/fp16.hpp
/// @brief IEEE 754 binary16 storage (`half`) and the `fp16` precision policy.
///
/// Conversion float → half rounds to nearest, ties to even; handles
/// subnormals, ±0, ±inf; overflow goes to ±inf; NaN stays NaN (quiet) with the
/// top 10 payload bits kept. half → float is exact. The scalar functions here
/// are constexpr and portable (freestanding-safe); `precision/simd/f16c.hpp`
/// adds bulk conversions with F16C / AVX-512 that give identical bits.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>

#include "concepts.hpp"

namespace tinylarge {

/// An IEEE binary16 value, stored as its 16 bits. Standard layout, 2 bytes.
struct half {
  std::uint16_t bits = 0;
  friend constexpr bool operator==(half, half) = default;
};
static_assert(sizeof(half) == 2);

/// Exact conversion of a binary16 value to binary32.
constexpr float half_to_float(half h) noexcept {
  const std::uint32_t sign = static_cast<std::uint32_t>(h.bits & 0x8000u) << 16;
  const std::uint32_t exp = (h.bits >> 10) & 0x1Fu;
  std::uint32_t mant = h.bits & 0x3FFu;
  std::uint32_t out;
  if (exp == 0x1F) {  // inf or NaN: keep the payload, make NaN quiet
    out = sign | 0x7F800000u | (mant << 13) | (mant ? 0x00400000u : 0u);
  } else if (exp != 0) {  // normal
    out = sign | ((exp + 112u) << 23) | (mant << 13);
  } else if (mant == 0) {  // ±0
    out = sign;
  } else {  // subnormal: normalise
    int e = 113;  // 127 - 15 + 1
    while ((mant & 0x400u) == 0) {
      mant <<= 1;
      --e;
    }
    mant &= 0x3FFu;
    out = sign | (static_cast<std::uint32_t>(e) << 23) | (mant << 13);
  }
  return std::bit_cast<float>(out);
}

/// binary32 → binary16, round to nearest even.
constexpr half float_to_half(float f) noexcept {
  const std::uint32_t x = std::bit_cast<std::uint32_t>(f);
  const std::uint16_t sign = static_cast<std::uint16_t>((x >> 16) & 0x8000u);
  const std::uint32_t abs = x & 0x7FFFFFFFu;
  if (abs >= 0x7F800000u) {  // inf or NaN
    if (abs == 0x7F800000u) return {static_cast<std::uint16_t>(sign | 0x7C00u)};
    // NaN: quiet bit set, top payload bits kept
    return {static_cast<std::uint16_t>(sign | 0x7E00u | ((abs >> 13) & 0x3FFu))};
  }
  if (abs >= 0x477FF000u) {  // rounds to >= 65520 → inf
    return {static_cast<std::uint16_t>(sign | 0x7C00u)};
  }
  if (abs >= 0x38800000u) {  // normal half range (>= 2^-14)
    const std::uint32_t mant_odd = (abs >> 13) & 1u;
    const std::uint32_t rounded = abs + 0xFFFu + mant_odd;  // RNE on the 13 dropped bits
    return {static_cast<std::uint16_t>(sign | ((rounded - 0x38000000u) >> 13))};
  }
  if (abs < 0x33000000u) {  // < 2^-25: rounds to ±0 (2^-25 exactly ties to 0)
    return {sign};
  }
  // Subnormal half: value = mant · 2^-24.
  const std::uint32_t e = abs >> 23;                       // biased float exponent, 102..112
  const std::uint32_t m = (abs & 0x7FFFFFu) | 0x800000u;  // 24-bit significand
  const std::uint32_t shift = 126u - e;                    // 14..24
  const std::uint32_t q = m >> shift;
  const std::uint32_t rem = m & ((1u << shift) - 1u);
  const std::uint32_t halfway = 1u << (shift - 1u);
  const std::uint32_t r = q + ((rem > halfway || (rem == halfway && (q & 1u))) ? 1u : 0u);
  return {static_cast<std::uint16_t>(sign | r)};
}

/// IEEE binary16 storage, fp32 accumulation.
struct fp16 {
  using storage_type = half;
  using accumulator_type = float;
  static constexpr bool quantized = false;
  static constexpr unsigned storage_bits = 16;
  /// Mixed-precision training scales the loss (see `uses_loss_scaling`).
  static constexpr bool loss_scaling = true;
  static constexpr const char* name() noexcept { return "fp16"; }
  static constexpr half encode(float x) noexcept { return float_to_half(x); }
  static constexpr float decode(half h) noexcept { return half_to_float(h); }
};
static_assert(float_precision<fp16> && uses_loss_scaling<fp16>);

}  // namespace tinylarge
