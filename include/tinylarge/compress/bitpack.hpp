/// @file compress/bitpack.hpp
/// @brief Bit-packing of 1–8-bit indices (codebook indices, masks, column gaps).
///
/// Layout: value i occupies bits [i·b, (i+1)·b) of the byte stream, least significant bit
/// first (value i's bit j is bit (i·b + j) mod 8 of byte ⌊(i·b + j)/8⌋). Unused high bits of
/// the last byte are zero. This is the layout of a little-endian bit stream, so for b = 4 the
/// first value is the low nibble of byte 0.
///
/// Freestanding-safe: no heap, no exceptions; untrusted sizes and values give a `status`.
#pragma once

#include <cstddef>
#include <cstdint>

#include "../core/config.hpp"
#include "../core/error.hpp"

namespace tinylarge::compress {

/// Bytes needed for `n` values of `bits` bits: ⌈n·bits/8⌉.
constexpr std::size_t packed_size(std::size_t n, unsigned bits) noexcept {
  return (n * bits + 7u) / 8u;
}

/// Value `i` of a packed stream of `bits`-bit values (caller guarantees the stream holds it).
TINYLARGE_ALWAYS_INLINE std::uint8_t packed_get(const std::uint8_t* packed, std::size_t i, unsigned bits) noexcept {
  const std::size_t pos = i * bits;
  const std::size_t byte = pos >> 3;
  const unsigned shift = static_cast<unsigned>(pos & 7u);
  unsigned v = static_cast<unsigned>(packed[byte]) >> shift;
  if (shift + bits > 8u) v |= static_cast<unsigned>(packed[byte + 1]) << (8u - shift);
  return static_cast<std::uint8_t>(v & ((1u << bits) - 1u));
}

/// Packs `n` values of `bits` ∈ [1, 8] bits into `out` (capacity `out_size` bytes, at least
/// `packed_size(n, bits)`). Fails with `invalid_argument` when a value does not fit in
/// `bits` bits, `capacity_exceeded` when `out` is too small.
[[nodiscard]] inline status pack_bits(const std::uint8_t* values, std::size_t n, unsigned bits, std::uint8_t* out,
                                      std::size_t out_size) noexcept {
  TINYLARGE_CHECK(bits >= 1 && bits <= 8, errc::invalid_argument, "pack_bits: bits must be in [1, 8]");
  const std::size_t bytes = packed_size(n, bits);
  TINYLARGE_CHECK(out_size >= bytes, errc::capacity_exceeded, "pack_bits: output buffer too small");
  const unsigned limit = 1u << bits;
  for (std::size_t i = 0; i < bytes; ++i) out[i] = 0;
  std::uint32_t acc = 0;  // pending bits, LSB first
  unsigned nacc = 0;
  std::size_t o = 0;
  for (std::size_t i = 0; i < n; ++i) {
    TINYLARGE_CHECK(values[i] < limit, errc::invalid_argument, "pack_bits: a value does not fit in the bit width");
    acc |= static_cast<std::uint32_t>(values[i]) << nacc;
    nacc += bits;
    while (nacc >= 8) {
      out[o++] = static_cast<std::uint8_t>(acc & 0xFFu);
      acc >>= 8;
      nacc -= 8;
    }
  }
  if (nacc > 0) out[o] = static_cast<std::uint8_t>(acc & 0xFFu);
  return status::success();
}

/// Unpacks `n` values of `bits` ∈ [1, 8] bits from `packed` (`packed_size` bytes) into
/// `out`. Fails with `truncated` when the input is shorter than `packed_size(n, bits)` and
/// with `corrupt` when the unused high bits of the last byte are not zero.
[[nodiscard]] inline status unpack_bits(const std::uint8_t* packed, std::size_t packed_bytes, std::size_t n,
                                        unsigned bits, std::uint8_t* out) noexcept {
  TINYLARGE_CHECK(bits >= 1 && bits <= 8, errc::invalid_argument, "unpack_bits: bits must be in [1, 8]");
  const std::size_t bytes = packed_size(n, bits);
  TINYLARGE_CHECK(packed_bytes >= bytes, errc::truncated, "unpack_bits: packed stream is truncated");
  const unsigned tail = static_cast<unsigned>((n * bits) & 7u);
  if (tail != 0)
    TINYLARGE_CHECK((packed[bytes - 1] >> tail) == 0, errc::corrupt, "unpack_bits: padding bits are not zero");
  const unsigned mask = (1u << bits) - 1u;
  std::uint32_t acc = 0;
  unsigned nacc = 0;
  std::size_t in = 0;
  for (std::size_t i = 0; i < n; ++i) {
    if (nacc < bits) {
      acc |= static_cast<std::uint32_t>(packed[in++]) << nacc;
      nacc += 8;
    }
    out[i] = static_cast<std::uint8_t>(acc & mask);
    acc >>= bits;
    nacc -= bits;
  }
  return status::success();
}

}  // namespace tinylarge::compress
