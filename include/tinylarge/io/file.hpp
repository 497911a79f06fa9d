/// @file io/file.hpp
/// @brief Whole-file binary reads (bounded) and atomic, durable writes for the
///        host profile.
///
/// Every reader in tinylarge (IDX, .npy, .npz, model files, checkpoints)
/// first loads the whole file into memory, bounded by a size limit, and then
/// parses the bytes with a non-throwing `tl::status` parser. Every writer
/// replaces its file atomically and durably (`write_file`). These helpers do
/// the loading and the writing. Errors name the file and
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

#if defined(__unix__) || defined(__APPLE__)
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
/// 1 where POSIX `fstat`, `fsync` and `open` are available (durable writes,
/// directory detection); elsewhere `io/file.hpp` falls back to `<cstdio>`.
#define TINYLARGE_IO_POSIX 1
#else
#define TINYLARGE_IO_POSIX 0
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
/// Memory stays bounded by `max_bytes` whatever the file is: a regular file
/// larger than the limit is refused before anything is read; a pipe, a
/// character device (`/dev/zero`) or a file that grows while it is read is
/// read in 1 MiB chunks and refused as soon as it passes the limit. The
/// buffer is allocated once at its final size (no doubling), so the peak
/// resident memory of a refused input is about `max_bytes`.
///
/// @param path       file to read
/// @param max_bytes  refuse files larger than this (raises `too_large`)
/// @throws tl::io_error when the file cannot be opened or read, or is a
///         directory; tl::format_error (`errc::too_large`) when it is larger
///         than `max_bytes`.
inline std::vector<std::uint8_t> read_file(const std::string& path,
                                           std::size_t max_bytes = default_max_file_bytes) {
  errno = 0;
  detail::file_closer file(std::fopen(path.c_str(), "rb"));
  if (file.f == nullptr) {
    [[maybe_unused]] const int err = errno;
    TINYLARGE_RAISE(errc::io_error, "tinylarge: cannot open " + detail::quoted(path) +
                                        " for reading: " + detail::os_reason(err));
  }
  const auto too_large = [&]() {
    TINYLARGE_RAISE(errc::too_large, "tinylarge: " + detail::quoted(path) + " is larger than " +
                                         std::to_string(max_bytes) +
                                         " bytes, the limit of this reader");
  };
  std::size_t expected = 0;  // size of a regular file, 0 when unknown
#if TINYLARGE_IO_POSIX
  struct stat st {};
  if (::fstat(::fileno(file.f), &st) == 0) {
    if (S_ISDIR(st.st_mode))
      TINYLARGE_RAISE(errc::io_error, "tinylarge: cannot read " + detail::quoted(path) +
                                          ": it is a directory, not a file");
    if (S_ISREG(st.st_mode) && st.st_size > 0) {
      if (static_cast<std::uint64_t>(st.st_size) > max_bytes) too_large();
      expected = static_cast<std::size_t>(st.st_size);
    }
  }
#endif
  constexpr std::size_t chunk = std::size_t{1} << 20;
  // The expected bytes go straight into `bytes`; anything beyond (unknown
  // size, or a growing file) into 1 MiB chunks, joined at the end.
  std::vector<std::uint8_t> bytes;
  std::vector<std::vector<std::uint8_t>> extra;
  std::size_t total = 0;
  bytes.resize(expected);
  for (;;) {
    std::uint8_t* dst = nullptr;
    std::size_t want = 0;
    const bool in_chunk = total >= expected;
    if (!in_chunk) {
      dst = bytes.data() + total;
      want = expected - total;
    } else {
      if (total >= max_bytes) {
        // One more byte would exceed the limit: probe whether the file ends here.
        if (std::fgetc(file.f) == EOF && !std::ferror(file.f)) break;
        too_large();
      }
      if (extra.empty() || extra.back().size() == chunk) {
        extra.emplace_back();
        extra.back().reserve(chunk);
      }
      std::vector<std::uint8_t>& c = extra.back();
      want = std::min(chunk - c.size(), max_bytes - total);
      c.resize(c.size() + want);
      dst = c.data() + c.size() - want;
    }
    errno = 0;
    const std::size_t got = std::fread(dst, 1, want, file.f);
    total += got;
    if (in_chunk) extra.back().resize(extra.back().size() - (want - got));
    if (got < want) {
      if (std::ferror(file.f)) {
        [[maybe_unused]] const int err = errno;
        TINYLARGE_RAISE(errc::io_error, "tinylarge: cannot read " + detail::quoted(path) + ": " +
                                            detail::os_reason(err));
      }
      break;  // end of file
    }
  }
  if (total < expected) {
    bytes.resize(total);  // the file shrank while it was read
  } else if (!extra.empty()) {
    // Join without holding two copies of the data: each chunk is freed once copied.
    std::vector<std::uint8_t> joined;
    joined.reserve(total);
    joined.insert(joined.end(), bytes.begin(), bytes.end());
    bytes = std::vector<std::uint8_t>();
    for (auto& c : extra) {
      joined.insert(joined.end(), c.begin(), c.end());
      c = std::vector<std::uint8_t>();
    }
    bytes = std::move(joined);
  }
  return bytes;
}

/// Write `bytes` to `path` atomically and durably — the one function every
/// tinylarge writer that replaces a user's file goes through (checkpoints,
/// `.npy`, `.npz`, model files, exported C sources):
///
///  1. the data goes to `path + ".tmp"` in the same directory;
///  2. it is flushed and `fsync`ed, so the bytes are on the disk;
///  3. it is renamed over `path` (atomic on POSIX file systems);
///  4. the directory is `fsync`ed, so the rename itself survives a power loss.
///
/// Until step 3 the previous file at `path` is untouched: a crash or
/// `kill -9` at any moment leaves either the complete old file or the
/// complete new one under the final name (at worst a stale `.tmp` beside it,
/// replaced by the next write). On systems without POSIX `fsync` (steps 2
/// and 4 skipped) the write is atomic but not durable.
///
/// @throws tl::io_error when the file cannot be created, written, synced or
///         renamed (the temporary file is removed).
inline void write_file(const std::string& path, std::span<const std::uint8_t> bytes) {
  const std::string tmp = path + ".tmp";
  const auto fail = [&]([[maybe_unused]] const std::string& what, [[maybe_unused]] int err) {
    std::remove(tmp.c_str());
    TINYLARGE_RAISE(errc::io_error, "tinylarge: " + what + ": " + detail::os_reason(err));
  };
#if TINYLARGE_IO_POSIX
  errno = 0;
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
  if (fd < 0) {
    [[maybe_unused]] const int err = errno;
    TINYLARGE_RAISE(errc::io_error, "tinylarge: cannot create " + detail::quoted(tmp) +
                                        " (to write " + detail::quoted(path) +
                                        "): " + detail::os_reason(err));
  }
  std::size_t done = 0;
  while (done < bytes.size()) {
    const ::ssize_t n = ::write(fd, bytes.data() + done, std::min<std::size_t>(bytes.size() - done, std::size_t{1} << 30));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int err = n < 0 ? errno : ENOSPC;
      ::close(fd);
      fail("cannot write " + detail::quoted(path), err);
    }
    done += static_cast<std::size_t>(n);
  }
  if (::fsync(fd) != 0) {
    const int err = errno;
    ::close(fd);
    fail("cannot sync " + detail::quoted(tmp) + " to disk", err);
  }
  if (::close(fd) != 0) fail("cannot write " + detail::quoted(path), errno);
#else
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
  if (put != bytes.size() || !flushed || !closed) fail("cannot write " + detail::quoted(path), err);
#endif
  errno = 0;
  if (std::rename(tmp.c_str(), path.c_str()) != 0)
    fail("cannot rename " + detail::quoted(tmp) + " to " + detail::quoted(path), errno);
#if TINYLARGE_IO_POSIX
  // The rename is durable only once the directory entry is on disk.
  const std::size_t slash = path.find_last_of('/');
  const std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) {
    [[maybe_unused]] const int derr = errno;
    TINYLARGE_RAISE(errc::io_error, "tinylarge: wrote " + detail::quoted(path) +
                                        " but cannot open its directory to sync it: " +
                                        detail::os_reason(derr));
  }
  const int synced = ::fsync(dfd);
  const int derr = errno;
  ::close(dfd);
  // Some file systems cannot sync a directory (EINVAL): the rename is then as
  // durable as that file system makes it.
  if (synced != 0 && derr != EINVAL)
    TINYLARGE_RAISE(errc::io_error, "tinylarge: wrote " + detail::quoted(path) +
                                        " but cannot sync its directory: " + detail::os_reason(derr));
#endif
}

}  // namespace tinylarge::io
