/// @file io/gzip.hpp
/// @brief gzip and raw-DEFLATE decompression of untrusted bytes, with zlib.
///
/// Both functions return a `tl::status` and never throw (except
/// `std::bad_alloc` from the output vector): compressed input is untrusted, so
/// every failure — truncated stream, corrupt data, wrong CRC, trailing
/// garbage, output larger than the caller's limit (a "zip bomb") — is an error
/// code with a static message.
///
/// Host profile only (links zlib, uses `std::vector`).
#pragma once

#include <zlib.h>

#include <algorithm>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "../core/config.hpp"
#include "../core/error.hpp"

#if TINYLARGE_FREESTANDING
#error "tinylarge/io/gzip.hpp is part of the host profile (it needs zlib and the heap)"
#endif

namespace tinylarge::io {

/// True when `bytes` starts with the gzip magic number 1f 8b.
inline bool is_gzip(std::span<const std::uint8_t> bytes) noexcept {
  return bytes.size() >= 2 && bytes[0] == 0x1f && bytes[1] == 0x8b;
}

namespace detail {

/// RAII owner of an initialised `z_stream` for inflation.
class inflater {
 public:
  /// @param window_bits 15 + 16 for gzip, −15 for raw DEFLATE (zlib's convention).
  explicit inflater(int window_bits) noexcept { ok_ = inflateInit2(&z_, window_bits) == Z_OK; }
  inflater(const inflater&) = delete;
  inflater& operator=(const inflater&) = delete;
  ~inflater() {
    if (ok_) inflateEnd(&z_);
  }
  bool ok() const noexcept { return ok_; }
  z_stream& stream() noexcept { return z_; }

 private:
  z_stream z_{};
  bool ok_ = false;
};

/// Feed at most `UINT_MAX` bytes at a time: zlib counts in `uInt`.
inline uInt clamp_uint(std::size_t n) noexcept {
  return static_cast<uInt>(std::min<std::size_t>(n, UINT_MAX));
}

}  // namespace detail

/// Decompress a gzip stream (RFC 1952), including several concatenated
/// members as `gzip -c a b` produces.
///
/// @param in         the compressed bytes (untrusted)
/// @param out        receives the decompressed bytes (replaced)
/// @param max_output refuse output larger than this many bytes
/// @return `corrupt` (not gzip, bad deflate data, CRC-32 or length trailer
///         mismatch, trailing garbage), `truncated` (stream ends early),
///         `too_large` (output exceeds `max_output`) or success.
[[nodiscard]] inline status gunzip(std::span<const std::uint8_t> in, std::vector<std::uint8_t>& out,
                                   std::size_t max_output) {
  out.clear();
  TINYLARGE_CHECK(is_gzip(in), errc::corrupt, "not a gzip stream (missing magic number 1f 8b)");
  // The trailer's ISIZE (size mod 2^32) is only a hint for the first
  // allocation; it is untrusted and bounded by max_output.
  if (in.size() >= 18) {
    const std::size_t n = in.size();
    const std::uint32_t isize =
        static_cast<std::uint32_t>(in[n - 4]) | static_cast<std::uint32_t>(in[n - 3]) << 8 |
        static_cast<std::uint32_t>(in[n - 2]) << 16 | static_cast<std::uint32_t>(in[n - 1]) << 24;
    // DEFLATE expands at most ~1032:1, so a larger claim is not believed.
    const std::size_t plausible = in.size() > SIZE_MAX / 1032 ? SIZE_MAX : in.size() * 1032;
    out.reserve(std::min({std::size_t{isize}, max_output, plausible}));
  }
  detail::inflater inf(15 + 16);
  TINYLARGE_CHECK(inf.ok(), errc::io_error, "zlib inflateInit2 failed (out of memory?)");
  z_stream& z = inf.stream();
  std::size_t consumed = 0;  // input bytes consumed so far
  std::size_t produced = 0;  // output bytes produced so far
  std::uint8_t spare = 0;    // one byte of room past the limit detects overflow
  for (;;) {
    if (produced == out.size() && out.size() < max_output) {
      const std::size_t grow = std::max<std::size_t>(out.size(), std::size_t{1} << 16);
      out.resize(out.size() + std::min(max_output - out.size(), grow));
    }
    // At the limit, inflate into the spare byte: the stream may still end
    // (its trailer needs no output space); any further output is too much.
    const bool at_limit = produced == out.size();
    z.next_in = const_cast<Bytef*>(in.data() + consumed);
    z.avail_in = detail::clamp_uint(in.size() - consumed);
    z.next_out = at_limit ? &spare : out.data() + produced;
    z.avail_out = at_limit ? 1u : detail::clamp_uint(out.size() - produced);
    const uInt avail_in = z.avail_in, avail_out = z.avail_out;
    const int rc = inflate(&z, Z_NO_FLUSH);
    consumed += avail_in - z.avail_in;
    const std::size_t step = avail_out - z.avail_out;
    TINYLARGE_CHECK(!(at_limit && step > 0), errc::too_large,
                    "gzip stream decompresses to more bytes than the configured limit");
    produced += step;
    if (rc == Z_STREAM_END) {
      if (consumed == in.size()) break;
      // Another gzip member may follow; anything else is garbage.
      TINYLARGE_CHECK(is_gzip(in.subspan(consumed)), errc::corrupt,
                      "trailing bytes after the end of the gzip stream");
      TINYLARGE_CHECK(inflateReset(&z) == Z_OK, errc::corrupt, "zlib inflateReset failed");
      continue;
    }
    if (rc == Z_DATA_ERROR) {
      // zlib reports checksum and length trailer failures as data errors.
      return {errc::corrupt, "corrupt gzip data (bad deflate stream, CRC-32 or length trailer)"};
    }
    TINYLARGE_CHECK(rc != Z_MEM_ERROR, errc::io_error, "zlib ran out of memory while inflating");
    TINYLARGE_CHECK(rc == Z_OK || rc == Z_BUF_ERROR, errc::corrupt, "zlib inflate failed");
    // Input exhausted with output space left: the stream stops early.
    if (consumed == in.size() && z.avail_out > 0)
      return {errc::truncated, "gzip stream is truncated (ends before its trailer)"};
    TINYLARGE_CHECK(avail_in != z.avail_in || step > 0, errc::corrupt,
                    "zlib inflate made no progress");
  }
  out.resize(produced);
  return status::success();
}

/// Inflate a raw DEFLATE stream (RFC 1951, as stored in ZIP members) whose
/// decompressed size is known in advance.
///
/// @param in   compressed bytes (untrusted)
/// @param out  exactly the expected decompressed size
/// @return `truncated`, `corrupt` (bad data, or a size different from
///         `out.size()`, or unused input after the end of the stream) or success.
[[nodiscard]] inline status inflate_raw(std::span<const std::uint8_t> in,
                                        std::span<std::uint8_t> out) {
  detail::inflater inf(-15);
  TINYLARGE_CHECK(inf.ok(), errc::io_error, "zlib inflateInit2 failed (out of memory?)");
  z_stream& z = inf.stream();
  std::size_t consumed = 0, produced = 0;
  // One spare byte of output space detects a stream longer than declared.
  std::uint8_t spare = 0;
  for (;;) {
    z.next_in = const_cast<Bytef*>(in.data() + consumed);
    z.avail_in = detail::clamp_uint(in.size() - consumed);
    const bool in_spare = produced == out.size();
    z.next_out = in_spare ? &spare : out.data() + produced;
    z.avail_out = in_spare ? 1u : detail::clamp_uint(out.size() - produced);
    const uInt avail_in = z.avail_in, avail_out = z.avail_out;
    const int rc = inflate(&z, Z_NO_FLUSH);
    consumed += avail_in - z.avail_in;
    const std::size_t step = avail_out - z.avail_out;
    TINYLARGE_CHECK(!(in_spare && step > 0), errc::corrupt,
                    "deflate stream is longer than its declared uncompressed size");
    produced += step;
    if (rc == Z_STREAM_END) break;
    TINYLARGE_CHECK(rc != Z_DATA_ERROR, errc::corrupt, "corrupt deflate data");
    TINYLARGE_CHECK(rc != Z_MEM_ERROR, errc::io_error, "zlib ran out of memory while inflating");
    TINYLARGE_CHECK(rc == Z_OK || rc == Z_BUF_ERROR, errc::corrupt, "zlib inflate failed");
    if (consumed == in.size() && (avail_in - z.avail_in) == 0 && step == 0)
      return {errc::truncated, "deflate stream is truncated"};
  }
  TINYLARGE_CHECK(produced == out.size(), errc::corrupt,
                  "deflate stream is shorter than its declared uncompressed size");
  TINYLARGE_CHECK(consumed == in.size(), errc::corrupt,
                  "unused bytes after the end of the deflate stream");
  return status::success();
}

}  // namespace tinylarge::io
