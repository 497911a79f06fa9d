/// @file examples/common/cli.hpp
/// @brief The examples' command-line reader: `--name value` options, with a clear
///        message and exit status 2 for anything it cannot take.
///
/// Not part of the library (examples only). Each example keeps its options in one
/// chain of `if`s, so the option list reads like its usage line:
///
/// @code
///   examples::cli args(argc, argv, "[--epochs N] [--lr X] [--json FILE]");
///   while (args.next()) {
///     if (args.is("--epochs")) opt.epochs = args.count();
///     else if (args.is("--lr")) opt.lr = args.real<float>();
///     else if (args.is("--json")) opt.json = args.text();
///     else args.unknown();
///   }
/// @endcode
///
/// `--help` (or `-h`) prints the usage line and exits with status 0.
///
/// Numbers must be the whole argument (`--epochs 5x`, `--epochs -1` and `--lr abc`
/// are refused, where `std::stoul` would throw or wrap around), and a missing value
/// is reported with the option's name.
#pragma once

#include <cerrno>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

namespace examples {

class cli {
 public:
  /// @param usage the options part of the usage line (printed after the program name)
  cli(int argc, char** argv, const char* usage) : argc_(argc), argv_(argv), usage_(usage) {}

  /// Moves to the next option; false when none is left. `--help` or `-h` prints the
  /// usage line to standard output and exits with status 0.
  bool next() {
    opt_ = i_ = i_ + 1;
    if (opt_ < argc_ && (std::strcmp(argv_[opt_], "--help") == 0 || std::strcmp(argv_[opt_], "-h") == 0)) {
      std::printf("usage: %s %s\n", argv_[0], usage_);
      std::exit(0);
    }
    return opt_ < argc_;
  }

  /// Whether the current option is `name`.
  [[nodiscard]] bool is(const char* name) const { return std::strcmp(argv_[opt_], name) == 0; }

  /// The current option's value, as text.
  std::string text() { return value(); }

  /// The current option's value as a non-negative integer (a count, a size, a seed) of type `Int`.
  template <class Int = std::size_t>
  Int count() {
    const std::string v = value();
    if (v.empty() || v[0] < '0' || v[0] > '9') fail(v, "a non-negative integer");
    errno = 0;
    char* end = nullptr;
    const unsigned long long n = std::strtoull(v.c_str(), &end, 10);
    if (errno == ERANGE || *end != '\0' || n > static_cast<unsigned long long>(std::numeric_limits<Int>::max()))
      fail(v, "a non-negative integer in range");
    return static_cast<Int>(n);
  }

  /// The current option's value as a finite real number.
  template <class Real = double>
  Real real() {
    return to_real<Real>(value());
  }

  /// The current option's value as a comma-separated list of finite real numbers (at least one).
  template <class Real = double>
  std::vector<Real> reals() {
    const std::string v = value();
    std::vector<Real> out;
    std::size_t from = 0;
    for (;;) {
      const std::size_t comma = v.find(',', from);
      out.push_back(to_real<Real>(v.substr(from, comma - from)));
      if (comma == std::string::npos) return out;
      from = comma + 1;
    }
  }

  /// Refuses the current option (not one of this program's) and exits with status 2.
  [[noreturn]] void unknown() const {
    std::fprintf(stderr, "%s: unknown option '%s'\nusage: %s %s\n", argv_[0], argv_[opt_], argv_[0], usage_);
    std::exit(2);
  }

  /// Refuses the command line with a reason of the program's own; exits with status 2.
  [[noreturn]] void error(const char* why) const {
    std::fprintf(stderr, "%s: %s: %s\nusage: %s %s\n", argv_[0], argv_[opt_], why, argv_[0], usage_);
    std::exit(2);
  }

 private:
  std::string value() {
    if (i_ + 1 >= argc_) error("needs a value");
    ++i_;
    return argv_[i_];
  }

  template <class Real>
  Real to_real(const std::string& v) const {
    errno = 0;
    char* end = nullptr;
    const double x = std::strtod(v.c_str(), &end);
    if (v.empty() || errno == ERANGE || *end != '\0' || !std::isfinite(x) ||
        std::fabs(x) > static_cast<double>(std::numeric_limits<Real>::max()))
      fail(v, "a finite number");
    return static_cast<Real>(x);
  }

  [[noreturn]] void fail(const std::string& v, const char* what) const {
    std::fprintf(stderr, "%s: %s: '%s' is not %s\nusage: %s %s\n", argv_[0], argv_[opt_], v.c_str(), what,
                 argv_[0], usage_);
    std::exit(2);
  }

  int argc_;
  char** argv_;
  const char* usage_;
  int opt_ = 0;  ///< index of the current option
  int i_ = 0;    ///< index of the last argument consumed
};

}  // namespace examples
