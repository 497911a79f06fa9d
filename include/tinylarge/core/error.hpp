/// @file error.hpp
/// @brief One error model for both profiles.
///
/// Every failure has an `errc` code and a static message. How it is reported
/// is chosen once, by the profile, in `TINYLARGE_RAISE`:
///  - host with exceptions: throws a type derived from `tinylarge::error`
///    (`shape_error`, `format_error`, `numeric_error`, `io_error`,
///    `invalid_argument`), each carrying the code;
///  - without exceptions (freestanding, or `-fno-exceptions`): calls the
///    failure hook `tinylarge::on_fatal_error` which by default traps. Define
///    `TINYLARGE_USER_FATAL_ERROR(code, msg)` to replace it.
///
/// Code that parses untrusted bytes (model files, wire messages, client
/// updates) never raises: it returns a `[[nodiscard]] status`, so that the
/// freestanding profile can handle a corrupt input without aborting. The host
/// API turns a failed status into an exception with `raise_if_error`.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "config.hpp"

#if TINYLARGE_HAS_EXCEPTIONS
#include <stdexcept>
#include <string>
#endif

namespace tinylarge {

/// Error codes shared by both profiles.
enum class errc : std::uint8_t {
  ok = 0,
  invalid_argument,     ///< a parameter is out of its documented domain
  shape_mismatch,       ///< tensor shapes or sizes disagree
  truncated,            ///< input ended before a declared length
  corrupt,              ///< input is structurally wrong (bad magic, bad field)
  checksum_mismatch,    ///< CRC-32 or other integrity check failed
  unsupported_version,  ///< a format version this build cannot read
  too_large,            ///< a declared size exceeds a configured limit
  non_finite,           ///< NaN or Inf where finite values are required
  io_error,             ///< the operating system reported an I/O failure
  capacity_exceeded,    ///< a fixed-size buffer is too small
  timed_out,            ///< a wait (transport receive, send) reached its deadline
};

/// Human-readable name of an error code.
constexpr const char* to_string(errc c) noexcept {
  switch (c) {
    case errc::ok: return "ok";
    case errc::invalid_argument: return "invalid argument";
    case errc::shape_mismatch: return "shape mismatch";
    case errc::truncated: return "truncated input";
    case errc::corrupt: return "corrupt input";
    case errc::checksum_mismatch: return "checksum mismatch";
    case errc::unsupported_version: return "unsupported version";
    case errc::too_large: return "size limit exceeded";
    case errc::non_finite: return "non-finite value";
    case errc::io_error: return "I/O error";
    case errc::capacity_exceeded: return "capacity exceeded";
    case errc::timed_out: return "timed out";
  }
  return "unknown error";
}

/// Result of an operation on untrusted input. Contextually true on success.
struct [[nodiscard]] status {
  errc code = errc::ok;
  const char* message = "";  ///< static string; never owned

  constexpr status() noexcept = default;
  constexpr status(errc c, const char* msg) noexcept : code(c), message(msg) {}
  static constexpr status success() noexcept { return {}; }
  constexpr bool ok() const noexcept { return code == errc::ok; }
  constexpr explicit operator bool() const noexcept { return ok(); }
};

/// What a parameter or checkpoint loader does with NaN / ±Inf values it
/// reads: `reject` (the default everywhere) fails with `errc::non_finite`
/// before anything is overwritten; `allow` loads them as they are (an
/// explicit opt-in, e.g. to inspect a diverged run).
enum class non_finite_policy : std::uint8_t { reject, allow };

/// Index of the first NaN or ±Inf among `n` floats at `p`, or `n` when all
/// are finite. Tests the exponent bits, so it holds under -ffast-math too.
inline std::size_t first_non_finite(const float* p, std::size_t n) noexcept {
  for (std::size_t i = 0; i < n; ++i) {
    std::uint32_t bits;
    std::memcpy(&bits, p + i, sizeof bits);
    if ((bits & 0x7F800000u) == 0x7F800000u) return i;
  }
  return n;
}

#if TINYLARGE_HAS_EXCEPTIONS
/// Base of every exception thrown by tinylarge.
class error : public std::runtime_error {
 public:
  error(errc code, const std::string& what) : std::runtime_error(what), code_(code) {}
  errc code() const noexcept { return code_; }

 private:
  errc code_;
};
/// Wrong tensor shapes or sizes.
class shape_error : public error { using error::error; };
/// Malformed, truncated, corrupt or unsupported serialized data.
class format_error : public error { using error::error; };
/// NaN/Inf where finite numbers are required.
class numeric_error : public error { using error::error; };
/// The operating system failed to read or write.
class io_error : public error { using error::error; };
/// A parameter outside its documented domain.
class invalid_argument : public error { using error::error; };

namespace detail {
[[noreturn]] inline void throw_error(errc c, const std::string& msg) {
  const std::string what = msg.empty() ? std::string(to_string(c)) : msg;
  switch (c) {
    case errc::shape_mismatch: throw shape_error(c, what);
    case errc::truncated:
    case errc::corrupt:
    case errc::checksum_mismatch:
    case errc::unsupported_version:
    case errc::too_large: throw format_error(c, what);
    case errc::non_finite: throw numeric_error(c, what);
    case errc::io_error:
    case errc::timed_out: throw io_error(c, what);
    default: throw invalid_argument(c, what);
  }
}
}  // namespace detail
#endif

/// Called when an error is raised without exceptions. Never returns.
[[noreturn]] inline void on_fatal_error([[maybe_unused]] errc code,
                                        [[maybe_unused]] const char* msg) noexcept {
#if defined(TINYLARGE_USER_FATAL_ERROR)
  TINYLARGE_USER_FATAL_ERROR(code, msg);
#endif
  __builtin_trap();
}

}  // namespace tinylarge

/// Raise an error with code `code` (an `errc`) and message `msg` (a string).
/// With exceptions: throws the matching `tinylarge::error` subclass.
/// Without: calls `tinylarge::on_fatal_error`, which does not return.
#if TINYLARGE_HAS_EXCEPTIONS
#define TINYLARGE_RAISE(code, msg) ::tinylarge::detail::throw_error((code), (msg))
#else
#define TINYLARGE_RAISE(code, msg) ::tinylarge::on_fatal_error((code), "tinylarge error")
#endif

/// Check a precondition; raise `code` with `msg` when it does not hold.
#define TINYLARGE_REQUIRE(cond, code, msg)                    \
  do {                                                        \
    if (TINYLARGE_UNLIKELY(!(cond))) TINYLARGE_RAISE(code, msg); \
  } while (0)

/// In a function returning `tinylarge::status`: return an error status when
/// `cond` does not hold. Used on every untrusted-input path.
#define TINYLARGE_CHECK(cond, code, msg)                                   \
  do {                                                                     \
    if (TINYLARGE_UNLIKELY(!(cond))) return ::tinylarge::status{(code), (msg)}; \
  } while (0)

/// Propagate a failed `tinylarge::status`.
#define TINYLARGE_TRY(expr)                          \
  do {                                               \
    ::tinylarge::status tinylarge_status_ = (expr);  \
    if (!tinylarge_status_.ok()) return tinylarge_status_; \
  } while (0)

namespace tinylarge {
/// Host convenience: raise (throw, or trap without exceptions) on failure.
inline void raise_if_error(status s) {
  if (!s.ok()) TINYLARGE_RAISE(s.code, s.message);
}
}  // namespace tinylarge
