/// @file io/gzip.hpp
/// @brief gzip and raw-DEFLATE decompression of untrusted bytes, with zlib.
///
/// Both functions return a `tl::status` and never throw (except
/// `std::bad_alloc` from the output vector): compressed input is untrusted, so
/// every failure — truncated stream, corrupt data, wrong CRC, trailing
/// garbage, output larger than the caller's limit (a "zip bomb") — is an error
/// code with a static message. `decompression_budget` computes the limit the
/// readers use: a size cap and a ratio to the compressed size.
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

/// Default of the `max_ratio` limits (`idx_limits`, `npy_limits`): at most
/// 256 bytes of output per compressed input byte. Real data sets and weights
/// compress 1.1–10:1; DEFLATE's ceiling is 1032:1, reached only by runs of
/// one byte value, as decompression bombs are built.
inline constexpr std::size_t default_max_ratio = 256;
/// Default of the `ratio_floor` limits: outputs up to 64 MiB are exempt from
/// the ratio (a small file of zeros is harmless).
inline constexpr std::size_t default_ratio_floor = std::size_t{1} << 26;

/// The most bytes a decompressor may produce from `compressed` input bytes:
/// at most `max_bytes`, and at most `max_ratio` × `compressed` unless that is
/// below `ratio_floor` (then `ratio_floor`). `max_ratio` = 0 disables the
/// ratio. Saturates instead of overflowing.
constexpr std::size_t decompression_budget(std::size_t compressed, std::size_t max_bytes,
                                           std::size_t max_ratio,
                                           std::size_t ratio_floor) noexcept {
  if (max_ratio == 0) return max_bytes;
  const std::size_t by_ratio =
      compressed > SIZE_MAX / max_ratio ? SIZE_MAX : compressed * max_ratio;
  return std::min(max_bytes, std::max(by_ratio, ratio_floor));
}

/// Largest compressed file worth reading for at most `max_output` bytes of
/// decompressed content: DEFLATE's worst-case expansion of incompressible
/// data (5 bytes per 64 KiB block) plus 16 MiB for container headers (gzip
/// name and extra fields, ZIP local headers and central directory).
constexpr std::size_t compressed_file_limit(std::size_t max_output) noexcept {
  const std::size_t slack = max_output / 1024 + (std::size_t{1} << 24);
  return max_output > SIZE_MAX - slack ? SIZE_MAX : max_output + slack;
}

namespace detail {

/// One inflation of a (possibly multi-member) gzip stream. With `dst` null
/// the output is counted, not kept (into a small scratch buffer); otherwise
/// it is written to `dst`, which has room for `limit` bytes. More than
/// `limit` bytes of output is `too_large`.
[[nodiscard]] inline status gunzip_pass(std::span<const std::uint8_t> in, std::uint8_t* dst,
                                        std::size_t limit, std::size_t& produced) {
  produced = 0;
  inflater inf(15 + 16);
  TINYLARGE_CHECK(inf.ok(), errc::io_error, "zlib inflateInit2 failed (out of memory?)");
  z_stream& z = inf.stream();
  std::size_t consumed = 0;  // input bytes consumed so far
  std::uint8_t scratch[std::size_t{1} << 14];
  std::uint8_t spare = 0;    // one byte of room past the limit detects overflow
  for (;;) {
    // At the limit, inflate into the spare byte: the stream may still end
    // (its trailer needs no output space); any further output is too much.
    const std::size_t room = limit - produced;
    const bool at_limit = room == 0;
    std::uint8_t* out = at_limit ? &spare : dst != nullptr ? dst + produced : scratch;
    const std::size_t avail = at_limit ? 1 : dst != nullptr ? room : std::min(room, sizeof scratch);
    z.next_in = const_cast<Bytef*>(in.data() + consumed);
    z.avail_in = clamp_uint(in.size() - consumed);
    z.next_out = out;
    z.avail_out = clamp_uint(avail);
    const uInt avail_in = z.avail_in, avail_out = z.avail_out;
    const int rc = inflate(&z, Z_NO_FLUSH);
    consumed += avail_in - z.avail_in;
    const std::size_t step = avail_out - z.avail_out;
    TINYLARGE_CHECK(!(at_limit && step > 0), errc::too_large,
                    "gzip stream decompresses to more bytes than the configured limit "
                    "(the size cap, or the ratio to the compressed size)");
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
  return status::success();
}

/// Inflate only the first `dst.size()` bytes of a gzip stream's first
/// member into `dst` (a header peek: nothing is checked past them, not the
/// CRC-32 nor the trailer). Returns how many bytes were produced — fewer
/// when the member is shorter, 0 when the stream is not valid gzip as far as
/// it was read. Costs O(`dst.size()`) output work whatever the stream holds.
inline std::size_t gunzip_head(std::span<const std::uint8_t> in,
                               std::span<std::uint8_t> dst) noexcept {
  if (!is_gzip(in) || dst.empty()) return 0;
  inflater inf(15 + 16);
  if (!inf.ok()) return 0;
  z_stream& z = inf.stream();
  std::size_t consumed = 0, produced = 0;
  while (produced < dst.size()) {
    z.next_in = const_cast<Bytef*>(in.data() + consumed);
    z.avail_in = clamp_uint(in.size() - consumed);
    z.next_out = dst.data() + produced;
    z.avail_out = clamp_uint(dst.size() - produced);
    const uInt avail_in = z.avail_in, avail_out = z.avail_out;
    const int rc = inflate(&z, Z_NO_FLUSH);
    consumed += avail_in - z.avail_in;
    produced += avail_out - z.avail_out;
    if (rc == Z_STREAM_END) break;
    if (rc != Z_OK) return rc == Z_BUF_ERROR ? produced : 0;
    if (avail_in == z.avail_in && avail_out == z.avail_out) break;  // no progress
  }
  return produced;
}

}  // namespace detail

/// Decompress a gzip stream (RFC 1952), including several concatenated
/// members as `gzip -c a b` produces.
///
/// Memory: the stream is inflated twice — first only counting its output
/// (stopping with `too_large` as soon as it passes `max_output`, having
/// allocated nothing), then into a buffer allocated once at the exact size.
/// A decompression bomb therefore costs CPU time up to `max_output` bytes of
/// inflation but no memory, and a valid stream holds no slack: the peak is
/// the input plus the output. (Callers bound `max_output` by a cap and a
/// ratio to the input size with `decompression_budget`.)
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
  std::size_t size = 0;
  TINYLARGE_TRY(detail::gunzip_pass(in, nullptr, max_output, size));
  out.resize(size);
  std::size_t again = 0;
  TINYLARGE_TRY(detail::gunzip_pass(in, out.data(), size, again));
  TINYLARGE_CHECK(again == size, errc::corrupt, "gzip stream inflated to two different sizes");
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
