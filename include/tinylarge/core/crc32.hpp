/// @file core/crc32.hpp
/// @brief CRC-32 (ISO-HDLC: zlib, gzip, ZIP, PNG), table-driven, `constexpr`,
///        freestanding-safe.
///
/// Polynomial 0x04C11DB7 reflected (0xEDB88320), initial value and final XOR
/// 0xFFFFFFFF; the check value of "123456789" is 0xCBF43926. The 1 KiB table
/// is computed at compile time. Used by the .npz writer and reader, and by the
/// model-file and wire formats to detect corrupt bytes.
///
/// Incremental use: `crc32(b, nb, crc32(a, na))` equals the CRC of `a` then `b`.
#pragma once

#include <cstddef>
#include <cstdint>

namespace tinylarge {

namespace detail {
/// The 256-entry table of the reflected CRC-32 polynomial 0xEDB88320.
struct crc32_table_t {
  std::uint32_t v[256];
};

constexpr crc32_table_t make_crc32_table() noexcept {
  crc32_table_t t{};
  for (std::uint32_t i = 0; i < 256; ++i) {
    std::uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1u) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
    t.v[i] = c;
  }
  return t;
}

inline constexpr crc32_table_t crc32_table = make_crc32_table();
}  // namespace detail

/// CRC-32 of `n` bytes at `data`, continuing from `crc` (the CRC of the bytes
/// before; 0 to start).
constexpr std::uint32_t crc32(const std::uint8_t* data, std::size_t n,
                              std::uint32_t crc = 0) noexcept {
  std::uint32_t c = crc ^ 0xFFFFFFFFu;
  for (std::size_t i = 0; i < n; ++i) c = detail::crc32_table.v[(c ^ data[i]) & 0xFFu] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

/// CRC-32 of `n` bytes of any object representation (not `constexpr`).
inline std::uint32_t crc32(const void* data, std::size_t n, std::uint32_t crc = 0) noexcept {
  return crc32(static_cast<const std::uint8_t*>(data), n, crc);
}

static_assert(detail::crc32_table.v[1] == 0x77073096u, "CRC-32 table");
static_assert(
    [] {
      constexpr std::uint8_t check[] = {'1', '2', '3', '4', '5', '6', '7', '8', '9'};
      return crc32(check, 9);
    }() == 0xCBF43926u,
    "CRC-32 check value of \"123456789\"");

}  // namespace tinylarge
