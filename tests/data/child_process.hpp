// Test helper: run a function in a forked child and report how it ended and the
// child's peak resident memory (getrusage ru_maxrss via wait4), so that memory bounds
// of the readers can be measured without the test process's own allocations.
#pragma once

#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>

#include "tinylarge/core/config.hpp"
#include "tinylarge/core/error.hpp"

#if TINYLARGE_HAS_EXCEPTIONS
namespace test_child {

/// True when a sanitizer's shadow memory and quarantine inflate RSS figures.
#if defined(__SANITIZE_ADDRESS__)
inline constexpr bool rss_meaningful = false;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(memory_sanitizer)
inline constexpr bool rss_meaningful = false;
#else
inline constexpr bool rss_meaningful = true;
#endif
#else
inline constexpr bool rss_meaningful = true;
#endif

/// How a child ended.
struct outcome {
  enum kind { returned, tinylarge_error, other_exception, crashed } how = crashed;
  tinylarge::errc code = tinylarge::errc::ok;  ///< for tinylarge_error
  std::string what;                            ///< the exception's message (first 300 bytes)
  double peak_rss_mib = 0;                     ///< the child's peak resident set
};

/// Resident set of this process now, in MiB (VmRSS of /proc/self/status).
inline double current_rss_mib() {
  std::FILE* f = std::fopen("/proc/self/status", "r");
  if (f == nullptr) return 0;
  char line[256];
  long kib = 0;
  while (std::fgets(line, sizeof line, f) != nullptr)
    if (std::strncmp(line, "VmRSS:", 6) == 0) kib = std::strtol(line + 6, nullptr, 10);
  std::fclose(f);
  return static_cast<double>(kib) / 1024.0;
}

/// Run `f` in a forked child; the child reports a thrown `tinylarge::error` (code and
/// message) or success through a pipe and exits with `_exit` (no test-framework state).
template <class F>
outcome run(F&& f) {
  int fds[2];
  if (::pipe(fds) != 0) return {};
  const pid_t pid = ::fork();
  if (pid < 0) return {};
  if (pid == 0) {
    ::close(fds[0]);
    char msg[302] = {};
    try {
      f();
      msg[0] = 'R';
    } catch (const tinylarge::error& e) {
      msg[0] = 'E';
      msg[1] = static_cast<char>(e.code());
      std::strncpy(msg + 2, e.what(), 299);
    } catch (const std::exception& e) {
      msg[0] = 'X';
      std::strncpy(msg + 2, e.what(), 299);
    }
    [[maybe_unused]] const auto n = ::write(fds[1], msg, sizeof msg);
    ::_exit(0);
  }
  ::close(fds[1]);
  char msg[302] = {};
  std::size_t got = 0;
  while (got < sizeof msg) {
    const auto n = ::read(fds[0], msg + got, sizeof msg - got);
    if (n <= 0) break;
    got += static_cast<std::size_t>(n);
  }
  ::close(fds[0]);
  int st = 0;
  struct rusage ru {};
  ::wait4(pid, &st, 0, &ru);
  outcome o;
  o.peak_rss_mib = static_cast<double>(ru.ru_maxrss) / 1024.0;  // Linux: KiB
  if (got == sizeof msg && msg[0] == 'R') o.how = outcome::returned;
  if (got == sizeof msg && msg[0] == 'E') {
    o.how = outcome::tinylarge_error;
    o.code = static_cast<tinylarge::errc>(msg[1]);
  }
  if (got == sizeof msg && msg[0] == 'X') o.how = outcome::other_exception;
  msg[301] = '\0';
  o.what = msg + 2;
  return o;
}

}  // namespace test_child
#endif  // TINYLARGE_HAS_EXCEPTIONS
