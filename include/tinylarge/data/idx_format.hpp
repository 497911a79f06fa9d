/// @file data/idx_format.hpp
/// @brief Non-allocating, non-throwing parser of the IDX format (MNIST,
///        Fashion-MNIST), safe for untrusted bytes and for the freestanding
///        profile.
///
/// IDX (LeCun et al., <http://yann.lecun.com/exdb/mnist/>) is a big-endian
/// header followed by the raw array:
///
///     offset  size  field
///     0       2     0x00 0x00
///     2       1     element type (0x08 = unsigned byte; 0x09 i8, 0x0B i16,
///                   0x0C i32, 0x0D f32, 0x0E f64 are not supported here)
///     3       1     number of dimensions d
///     4       4·d   each dimension, big-endian uint32
///     4+4·d   ...   the elements in row-major order
///
/// Image files are `0x00000803` (count × rows × cols), label files
/// `0x00000801` (count). The parser checks, before anything is allocated or
/// read past the header: the magic number, the element type, the number of
/// dimensions, each dimension against `idx_limits`, and that the file holds
/// exactly the declared number of bytes (no truncation, no trailing bytes).
///
/// The host loader `tinylarge/data/idx.hpp` builds on this.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "../core/config.hpp"
#include "../core/error.hpp"

namespace tinylarge::data {

/// Limits applied to IDX headers before anything is allocated. The defaults
/// admit every IDX data set in common use (MNIST, Fashion-MNIST, EMNIST,
/// KMNIST: at most 814 255 images of 28 × 28) with a wide margin.
struct idx_limits {
  std::size_t max_count = 100'000'000;  ///< samples per file
  std::size_t max_rows = 4096;          ///< image height
  std::size_t max_cols = 4096;          ///< image width
  /// Largest payload (count·rows·cols bytes). A gzip file may decompress to
  /// at most this plus the IDX header (8 or 16 bytes); a raw file is refused
  /// when it is larger than that, before it is read.
  std::size_t max_bytes = sizeof(std::size_t) > 4 ? std::size_t(std::uint64_t{1} << 32) : SIZE_MAX;
  /// A gzip file may decompress to at most `max_ratio` times its own size
  /// (0: no ratio limit) ...
  std::size_t max_ratio = 256;
  /// ... unless the output is at most `ratio_floor` bytes (64 MiB).
  std::size_t ratio_floor = std::size_t{1} << 26;
};

/// IDX magic number of an image file (unsigned bytes, 3 dimensions).
inline constexpr std::uint32_t idx_images_magic = 0x00000803u;
/// IDX magic number of a label file (unsigned bytes, 1 dimension).
inline constexpr std::uint32_t idx_labels_magic = 0x00000801u;

/// The header of a parsed IDX file and a view of its payload.
///
/// Fields are filled as far as parsing got, so that an error message can
/// report the declared dimensions even when the payload is truncated.
struct idx_view {
  std::uint32_t magic = 0;                ///< first four bytes, big-endian
  std::uint8_t ndim = 0;                  ///< number of dimensions
  std::uint32_t dims[3] = {0, 0, 0};      ///< declared dimensions (count first)
  std::size_t header_bytes = 0;           ///< 4 + 4·ndim
  std::size_t payload_bytes = 0;          ///< product of dims (declared)
  std::size_t available_bytes = 0;        ///< bytes actually after the header
  const std::uint8_t* payload = nullptr;  ///< first element (on success)

  /// Number of samples: the first dimension.
  constexpr std::size_t count() const noexcept { return dims[0]; }
};

namespace detail {
constexpr std::uint32_t load_be32(const std::uint8_t* p) noexcept {
  return static_cast<std::uint32_t>(p[0]) << 24 | static_cast<std::uint32_t>(p[1]) << 16 |
         static_cast<std::uint32_t>(p[2]) << 8 | static_cast<std::uint32_t>(p[3]);
}

/// Parse an IDX file of unsigned bytes with exactly `ndim` dimensions.
[[nodiscard]] constexpr status parse_idx_u8(std::span<const std::uint8_t> bytes, std::uint8_t ndim,
                                            idx_view& out, const idx_limits& limits) noexcept {
  out = idx_view{};
  TINYLARGE_CHECK(bytes.size() >= 4, errc::truncated,
                  "IDX file is shorter than its 4-byte magic number");
  out.magic = load_be32(bytes.data());
  TINYLARGE_CHECK(!(bytes[0] == 0x1f && bytes[1] == 0x8b), errc::corrupt,
                  "IDX data is still gzip-compressed; decompress it first");
  TINYLARGE_CHECK(bytes[0] == 0 && bytes[1] == 0, errc::corrupt,
                  "not an IDX file: the magic number does not start with two zero bytes");
  TINYLARGE_CHECK(
      bytes[2] == 0x08 || !(bytes[2] == 0x09 || (bytes[2] >= 0x0B && bytes[2] <= 0x0E)),
      errc::unsupported_version,
      "IDX element type is not unsigned byte (0x08); only 8-bit IDX files are supported");
  TINYLARGE_CHECK(bytes[2] == 0x08, errc::corrupt,
                  "not an IDX file: unknown element type in the magic number");
  out.ndim = bytes[3];
  TINYLARGE_CHECK(out.ndim == ndim, errc::corrupt,
                  ndim == 3 ? "IDX file is not an image file: magic number is not 0x00000803 "
                              "(unsigned bytes, 3 dimensions)"
                            : "IDX file is not a label file: magic number is not 0x00000801 "
                              "(unsigned bytes, 1 dimension)");
  out.header_bytes = 4 + 4 * std::size_t{ndim};
  TINYLARGE_CHECK(bytes.size() >= out.header_bytes, errc::truncated,
                  "IDX header is truncated: the file ends inside the dimension sizes");
  for (std::size_t d = 0; d < ndim; ++d) out.dims[d] = load_be32(bytes.data() + 4 + 4 * d);
  for (std::size_t d = ndim; d < 3; ++d) out.dims[d] = 1;
  TINYLARGE_CHECK(out.dims[0] <= limits.max_count, errc::too_large,
                  "IDX sample count exceeds the configured limit (idx_limits::max_count)");
  if (ndim == 3) {
    TINYLARGE_CHECK(out.dims[1] != 0 && out.dims[2] != 0, errc::corrupt,
                    "IDX image file declares zero rows or columns");
    TINYLARGE_CHECK(out.dims[1] <= limits.max_rows && out.dims[2] <= limits.max_cols,
                    errc::too_large,
                    "IDX image size exceeds the configured limit (idx_limits::max_rows/max_cols)");
  }
  // No overflow: each factor is bounded by a size_t limit and checked in turn.
  const std::size_t image_bytes = std::size_t{out.dims[1]} * out.dims[2];
  TINYLARGE_CHECK(out.dims[0] == 0 || image_bytes <= limits.max_bytes / out.dims[0],
                  errc::too_large,
                  "IDX payload exceeds the configured limit (idx_limits::max_bytes)");
  out.payload_bytes = std::size_t{out.dims[0]} * image_bytes;
  out.available_bytes = bytes.size() - out.header_bytes;
  TINYLARGE_CHECK(out.available_bytes >= out.payload_bytes, errc::truncated,
                  "IDX file is truncated: it holds fewer bytes than its header declares");
  TINYLARGE_CHECK(out.available_bytes == out.payload_bytes, errc::corrupt,
                  "IDX file has trailing bytes after the data its header declares");
  out.payload = bytes.data() + out.header_bytes;
  return status::success();
}
}  // namespace detail

/// Parse an IDX image file (magic 0x00000803): count × rows × cols bytes.
///
/// @param bytes   the whole (decompressed) file; untrusted
/// @param out     header fields and a view of the pixels (points into `bytes`)
/// @param limits  size limits checked before the payload is touched
[[nodiscard]] constexpr status parse_idx_images(std::span<const std::uint8_t> bytes, idx_view& out,
                                                const idx_limits& limits = {}) noexcept {
  return detail::parse_idx_u8(bytes, 3, out, limits);
}

/// Parse an IDX label file (magic 0x00000801): count bytes.
[[nodiscard]] constexpr status parse_idx_labels(std::span<const std::uint8_t> bytes, idx_view& out,
                                                const idx_limits& limits = {}) noexcept {
  return detail::parse_idx_u8(bytes, 1, out, limits);
}

}  // namespace tinylarge::data
