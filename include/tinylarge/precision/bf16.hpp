/// @file precision/bf16.hpp
/// @brief bfloat16 storage (`bfloat16`) and the `bf16` precision policy.
///
/// bfloat16 is the top half of an IEEE binary32: 1 sign bit, the same 8
/// exponent bits, 7 fraction bits (Kalamkar et al., "A Study of BFLOAT16 for
/// Deep Learning Training", 2019). It keeps fp32's range, so values that
/// overflow binary16 (e.g. gradients, optimizer moments) stay finite, at the
/// price of ~2–3 significant decimal digits.
///
/// float → bfloat16 rounds to nearest, ties to even, on the 16 dropped bits;
/// subnormals are rounded like any other value (not flushed to zero);
/// overflow of the rounding goes to ±inf; NaN stays NaN with the quiet bit set
/// and the top 6 payload bits kept (a NaN can never round into inf).
/// bfloat16 → float is exact. The functions are constexpr and portable
/// (freestanding-safe); `precision/convert.hpp` adds bulk conversions with
/// AVX2 / AVX-512 that give identical bits.
#pragma once

#include <bit>
#include <cstdint>

#include "concepts.hpp"

namespace tinylarge {

/// A bfloat16 value, stored as its 16 bits. Standard layout, 2 bytes.
struct bfloat16 {
  std::uint16_t bits = 0;
  friend constexpr bool operator==(bfloat16, bfloat16) = default;
};
static_assert(sizeof(bfloat16) == 2);

/// Exact conversion of a bfloat16 value to binary32.
constexpr float bfloat16_to_float(bfloat16 b) noexcept {
  return std::bit_cast<float>(static_cast<std::uint32_t>(b.bits) << 16);
}

/// binary32 → bfloat16, round to nearest, ties to even.
///
///     bits(b) = (bits(f) + 0x7FFF + lsb) >> 16,   lsb = bit 16 of bits(f)
///
/// which is exact RNE for every finite input including subnormals, and
/// carries into the exponent (up to inf) when the fraction overflows.
constexpr bfloat16 float_to_bfloat16(float f) noexcept {
  const std::uint32_t x = std::bit_cast<std::uint32_t>(f);
  if ((x & 0x7FFFFFFFu) > 0x7F800000u) {  // NaN: quiet it, keep the top payload bits
    return {static_cast<std::uint16_t>((x >> 16) | 0x0040u)};
  }
  const std::uint32_t lsb = (x >> 16) & 1u;
  return {static_cast<std::uint16_t>((x + 0x7FFFu + lsb) >> 16)};
}

/// bfloat16 storage, fp32 accumulation.
struct bf16 {
  using storage_type = bfloat16;
  using accumulator_type = float;
  static constexpr bool quantized = false;
  static constexpr unsigned storage_bits = 16;
  static constexpr const char* name() noexcept { return "bf16"; }
  static constexpr bfloat16 encode(float x) noexcept { return float_to_bfloat16(x); }
  static constexpr float decode(bfloat16 b) noexcept { return bfloat16_to_float(b); }
};
static_assert(float_precision<bf16>);

}  // namespace tinylarge
