/// @file io/file.hpp
/// @brief Whole-file binary reads and atomic writes for the host profile.
///
/// Every reader in tinylarge (IDX, .npy, .npz, model files) first loads the
/// whole file into memory and then parses the bytes with a non-throwing
/// `tl::status` parser. These helpers do the loading. Errors name the file and
/// the operating-system reason, e.g.
///
///     tinylarge: cannot open 'w.npz' for reading: No such file or directory
///
/// Host profile only: they use `std::vector`, `std::string` and `<cstdio>`.
#pragma once

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <span>
#include <string>
#include <vector>

#include "../core/config.hpp"
#include "../core/error.hpp"

#if TINYLARGE_FREESTANDING
#error "tinylarge/io/file.hpp is part of the host profile (it uses <cstdio> and the heap)"
#endif

namespace tinylarge::io {

/// Largest file `read_file` accepts by default (4 GiB): a guard against
/// reading a device or a mistaken path into memory.
inline constexpr std::size_t default_max_file_bytes = sizeof(std::size_t) > 4
                                                          ? std::size_t(std::uint64_t{1} << 32)
                                                          : SIZE_MAX;

namespace detail {
/// `"'path'"`, the way every message quotes a file name.
inline std::string quoted(const std::string& path) { return "'" + path + "'"; }

/// The text of `errno` (captured by the caller right after the failing call).
inline std::string os_reason(int err) {
  return err != 0 ? std::string(std::strerror(err)) : std::string("unknown reason");
}

/// Closes a FILE* on every exit path.
struct file_closer {
  std::FILE* f = nullptr;
  file_closer(const file_closer&) = delete;
  file_closer& operator=(const file_closer&) = delete;
  explicit file_closer(std::FILE* file) noexcept : f(file) {}
  ~file_closer() {
    if (f != nullptr) std::fclose(f);
  }
};
}  // namespace detail

/// Whether `path` can be opened for reading.
inline bool file_readable(const std::string& path) noexcept {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) return false;
  std::fclose(f);
  return true;
}

/// Read the whole file at `path`.
///
/// @param path       file to read
/// @param max_bytes  refuse files larger than this (raises `too_large`)
/// @throws tl::io_error when the file cannot be opened or read,
///         tl::format_error when it is larger than `max_bytes`.
inline std::vector<std::uint8_t> read_file(const std::string& path,
                                           std::size_t max_bytes = default_max_file_bytes) {
  errno = 0;
  detail::file_closer file(std::fopen(path.c_str(), "rb"));
  if (file.f == nullptr) {
    [[maybe_unused]] const int err = errno;
    TINYLARGE_RAISE(errc::io_error, "tinylarge: cannot open " + detail::quoted(path) +
                                        " for reading: " + detail::os_reason(err));
  }
  std::vector<std::uint8_t> bytes;
  // Read in chunks rather than trusting ftell: works for pipes and refuses
  // oversize files before they exhaust memory.
  constexpr std::size_t chunk = std::size_t{1} << 20;
  if (std::fseek(file.f, 0, SEEK_END) == 0) {
    const long end = std::ftell(file.f);
    if (end > 0 && static_cast<unsigned long>(end) <= max_bytes)
      bytes.reserve(static_cast<std::size_t>(end));
    std::rewind(file.f);
  }
  for (;;) {
    const std::size_t old = bytes.size();
    if (old >= max_bytes) {
      // One more byte would exceed the limit: probe whether the file ends here.
      if (std::fgetc(file.f) == EOF && !std::ferror(file.f)) break;
      TINYLARGE_RAISE(errc::too_large, "tinylarge: " + detail::quoted(path) + " is larger than " +
                                           std::to_string(max_bytes) +
                                           " bytes, the limit given to read_file");
    }
    const std::size_t want = std::min(chunk, max_bytes - old);
    bytes.resize(old + want);
    errno = 0;
    const std::size_t got = std::fread(bytes.data() + old, 1, want, file.f);
    bytes.resize(old + got);
    if (got < want) {
      if (std::ferror(file.f)) {
        [[maybe_unused]] const int err = errno;
        TINYLARGE_RAISE(errc::io_error, "tinylarge: cannot read " + detail::quoted(path) + ": " +
                                            detail::os_reason(err));
      }
      break;  // end of file
    }
  }
  return bytes;
}

/// Write `bytes` to `path` atomically: the data goes to `path + ".tmp"`,
/// which is renamed over `path` only after a successful flush and close, so a
/// crash never leaves a half-written file under the final name.
///
/// @throws tl::io_error when the file cannot be created, written or renamed.
inline void write_file(const std::string& path, std::span<const std::uint8_t> bytes) {
  const std::string tmp = path + ".tmp";
  errno = 0;
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  if (f == nullptr) {
    [[maybe_unused]] const int err = errno;
    TINYLARGE_RAISE(errc::io_error, "tinylarge: cannot create " + detail::quoted(tmp) +
                                        " (to write " + detail::quoted(path) +
                                        "): " + detail::os_reason(err));
  }
  errno = 0;
  const std::size_t put = bytes.empty() ? 0 : std::fwrite(bytes.data(), 1, bytes.size(), f);
  int err = errno;
  const bool flushed = std::fflush(f) == 0;
  if (!flushed && err == 0) err = errno;
  const bool closed = std::fclose(f) == 0;
  if (!closed && err == 0) err = errno;
  if (put != bytes.size() || !flushed || !closed) {
    std::remove(tmp.c_str());
    TINYLARGE_RAISE(errc::io_error, "tinylarge: cannot write " + detail::quoted(path) + ": " +
                                        detail::os_reason(err));
  }
  errno = 0;
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    err = errno;
    std::remove(tmp.c_str());
    TINYLARGE_RAISE(errc::io_error, "tinylarge: cannot rename " + detail::quoted(tmp) + " to " +
                                        detail::quoted(path) + ": " + detail::os_reason(err));
  }
}

}  // namespace tinylarge::io
