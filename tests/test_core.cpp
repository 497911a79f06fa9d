// Tests of core/: configuration, the error model, architecture tags and the RNG.
//
// The reference values of the RNG tests were computed independently of this
// library, with a 30-line Python re-implementation of pcg_basic.c
// (pcg32_srandom_r / pcg32_random_r, O'Neill, pcg-random.org) and of Lemire's
// "nearly divisionless" bounded integer method (Lemire 2019, "Fast Random
// Integer Generation in an Interval", ACM TOMACS 29(1)). The first six outputs
// for seed 42, stream 54 are also the ones printed by PCG's own pcg32-demo.

#include <cstdlib>

// Replace the trap of a fatal error (no exceptions) with an exit code we can
// observe from a forked child: 40 + the error code. Defined before any
// tinylarge header, and only in this test executable.
#define TINYLARGE_USER_FATAL_ERROR(code, msg) ::std::_Exit(40 + static_cast<int>(code))

#include <tinylarge/core/arch.hpp>
#include <tinylarge/core/config.hpp>
#include <tinylarge/core/error.hpp>
#include <tinylarge/core/rng.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <map>
#include <numeric>
#include <set>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#if TINYLARGE_HAS_EXCEPTIONS
#include <stdexcept>
#include <typeinfo>
#endif

#if defined(__unix__) || defined(__APPLE__)
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>
#define TINYLARGE_TEST_HAVE_FORK 1
#else
#define TINYLARGE_TEST_HAVE_FORK 0
#endif

using tl::errc;

namespace {

constexpr std::array<errc, 11> all_codes{
    errc::ok,         errc::invalid_argument,    errc::shape_mismatch, errc::truncated,
    errc::corrupt,    errc::checksum_mismatch,   errc::unsupported_version,
    errc::too_large,  errc::non_finite,          errc::io_error,       errc::capacity_exceeded};

// --- Functions in the style of an untrusted-input parser ---------------------
constexpr tl::status check_length(int length) {
  TINYLARGE_CHECK(length >= 0, errc::corrupt, "negative length");
  TINYLARGE_CHECK(length <= 100, errc::too_large, "length above limit");
  return tl::status::success();
}

constexpr tl::status check_two(int a, int b, int& reached) {
  TINYLARGE_TRY(check_length(a));
  reached = 1;
  TINYLARGE_TRY(check_length(b));
  reached = 2;
  return {};
}

// The macros must behave as one statement (if/else without braces).
constexpr tl::status check_branch(bool first) {
  if (first)
    TINYLARGE_CHECK(false, errc::truncated, "first");
  else
    TINYLARGE_CHECK(false, errc::checksum_mismatch, "second");
  return {};
}

#if TINYLARGE_TEST_HAVE_FORK
// Run `body` in a child process; return its exit code, or -signal if killed.
template <class F>
int exit_code_of(F body) {
  std::fflush(nullptr);
  const pid_t pid = fork();
  if (pid == 0) {
    body();
    std::_Exit(0);
  }
  int wstatus = 0;
  if (pid < 0 || waitpid(pid, &wstatus, 0) != pid) return -1000;
  if (WIFEXITED(wstatus)) return WEXITSTATUS(wstatus);
  return -WTERMSIG(wstatus);
}
constexpr int fatal_exit(errc c) { return 40 + static_cast<int>(c); }
#endif

}  // namespace

// =============================================================================
// config
// =============================================================================
TEST_CASE("config: profile and exception flags match the compiler", "[core][config]") {
  STATIC_REQUIRE_FALSE(tl::freestanding);  // this is a host test
#if defined(__cpp_exceptions)
  STATIC_REQUIRE(tl::has_exceptions);
#else
  STATIC_REQUIRE_FALSE(tl::has_exceptions);
#endif
}

#if defined(TINYLARGE_TEST_PROJECT_VERSION)
TEST_CASE("config: header version equals the CMake project version", "[core][config]") {
  const std::string header = std::to_string(TINYLARGE_VERSION_MAJOR) + "." +
                             std::to_string(TINYLARGE_VERSION_MINOR) + "." +
                             std::to_string(TINYLARGE_VERSION_PATCH);
  CHECK(header == TINYLARGE_TEST_PROJECT_VERSION);
}
#endif

// =============================================================================
// error model
// =============================================================================
TEST_CASE("status: success and failure", "[core][error]") {
  constexpr tl::status ok{};
  STATIC_REQUIRE(ok.ok());
  STATIC_REQUIRE(ok.code == errc::ok);
  STATIC_REQUIRE(tl::status::success().ok());
  STATIC_REQUIRE(static_cast<bool>(ok));

  const char* const msg = "bad magic";
  const tl::status bad{errc::corrupt, msg};
  CHECK_FALSE(bad.ok());
  CHECK_FALSE(static_cast<bool>(bad));
  CHECK(bad.code == errc::corrupt);
  CHECK(bad.message == msg);  // the static string itself, never a copy

  // Contextual conversion only: a status never silently becomes an int/bool.
  STATIC_REQUIRE_FALSE(std::is_convertible_v<tl::status, bool>);
  STATIC_REQUIRE(std::is_constructible_v<bool, tl::status>);
  STATIC_REQUIRE(std::is_trivially_copyable_v<tl::status>);
}

TEST_CASE("to_string: every code has its own name", "[core][error]") {
  std::set<std::string> names;
  for (const errc c : all_codes) {
    const std::string name = tl::to_string(c);
    INFO("code " << static_cast<int>(c) << " -> " << name);
    CHECK_FALSE(name.empty());
    CHECK(name != "unknown error");
    names.insert(name);
  }
  CHECK(names.size() == all_codes.size());
  CHECK(std::string_view(tl::to_string(static_cast<errc>(200))) == "unknown error");
  STATIC_REQUIRE(std::string_view(tl::to_string(errc::ok)) == "ok");
  STATIC_REQUIRE(std::string_view(tl::to_string(errc::checksum_mismatch)) == "checksum mismatch");
}

TEST_CASE("TINYLARGE_CHECK returns the first failed condition", "[core][error]") {
  STATIC_REQUIRE(check_length(5).ok());
  STATIC_REQUIRE(check_length(-1).code == errc::corrupt);
  STATIC_REQUIRE(check_length(101).code == errc::too_large);
  CHECK(std::string_view(check_length(-1).message) == "negative length");
  CHECK(std::string_view(check_length(1000).message) == "length above limit");

  CHECK(check_branch(true).code == errc::truncated);
  CHECK(check_branch(false).code == errc::checksum_mismatch);

  SECTION("the condition is evaluated exactly once") {
    int evaluations = 0;
    auto once = [&]() -> tl::status {
      TINYLARGE_CHECK(++evaluations > 0, errc::corrupt, "never");
      return {};
    };
    CHECK(once().ok());
    CHECK(evaluations == 1);
  }
}

TEST_CASE("TINYLARGE_TRY propagates the first failure and stops there", "[core][error]") {
  int reached = 0;
  CHECK(check_two(1, 2, reached).ok());
  CHECK(reached == 2);

  reached = 0;
  const tl::status first = check_two(-1, 2, reached);
  CHECK(first.code == errc::corrupt);
  CHECK(reached == 0);  // nothing after the failed TRY ran

  reached = 0;
  const tl::status second = check_two(1, 500, reached);
  CHECK(second.code == errc::too_large);
  CHECK(std::string_view(second.message) == "length above limit");
  CHECK(reached == 1);
}

#if TINYLARGE_HAS_EXCEPTIONS
namespace {
// Raise `c` and check that exactly `Expected` (not a base, not a sibling) is
// thrown, carrying the code and the message.
template <class Expected>
void require_raises_exactly(errc c, const std::string& msg) {
  INFO("raising " << tl::to_string(c));
  bool thrown = false;
  try {
    TINYLARGE_RAISE(c, msg);
  } catch (const tl::error& e) {
    thrown = true;
    CHECK(typeid(e) == typeid(Expected));
    CHECK(e.code() == c);
    CHECK(std::string(e.what()) == (msg.empty() ? std::string(tl::to_string(c)) : msg));
  }
  CHECK(thrown);
}
}  // namespace

TEST_CASE("exceptions: hierarchy", "[core][error][exceptions]") {
  STATIC_REQUIRE(std::is_base_of_v<std::runtime_error, tl::error>);
  STATIC_REQUIRE(std::is_base_of_v<tl::error, tl::shape_error>);
  STATIC_REQUIRE(std::is_base_of_v<tl::error, tl::format_error>);
  STATIC_REQUIRE(std::is_base_of_v<tl::error, tl::numeric_error>);
  STATIC_REQUIRE(std::is_base_of_v<tl::error, tl::io_error>);
  STATIC_REQUIRE(std::is_base_of_v<tl::error, tl::invalid_argument>);
  // Siblings are distinct: catching one never catches another.
  STATIC_REQUIRE_FALSE(std::is_base_of_v<tl::format_error, tl::shape_error>);
  STATIC_REQUIRE_FALSE(std::is_base_of_v<tl::shape_error, tl::format_error>);
}

TEST_CASE("exceptions: each code raises its class with code and message", "[core][error][exceptions]") {
  require_raises_exactly<tl::invalid_argument>(errc::invalid_argument, "negative rank");
  require_raises_exactly<tl::shape_error>(errc::shape_mismatch, "784 != 785");
  require_raises_exactly<tl::format_error>(errc::truncated, "file ends early");
  require_raises_exactly<tl::format_error>(errc::corrupt, "bad magic");
  require_raises_exactly<tl::format_error>(errc::checksum_mismatch, "crc");
  require_raises_exactly<tl::format_error>(errc::unsupported_version, "v9");
  require_raises_exactly<tl::format_error>(errc::too_large, "2^40 elements");
  require_raises_exactly<tl::numeric_error>(errc::non_finite, "NaN in update");
  require_raises_exactly<tl::io_error>(errc::io_error, "ENOENT");
  require_raises_exactly<tl::invalid_argument>(errc::capacity_exceeded, "arena full");
  // An empty message falls back to the name of the code.
  require_raises_exactly<tl::format_error>(errc::corrupt, "");
}

TEST_CASE("exceptions: TINYLARGE_REQUIRE and raise_if_error", "[core][error][exceptions]") {
  int evaluations = 0;
  CHECK_NOTHROW([&] { TINYLARGE_REQUIRE(++evaluations == 1, errc::invalid_argument, "x"); }());
  CHECK(evaluations == 1);
  CHECK_THROWS_AS([] { TINYLARGE_REQUIRE(1 + 1 == 3, errc::shape_mismatch, "shapes"); }(), tl::shape_error);

  CHECK_NOTHROW(tl::raise_if_error(tl::status::success()));
  try {
    tl::raise_if_error(tl::status{errc::unsupported_version, "model file v7"});
    FAIL("raise_if_error did not throw");
  } catch (const tl::format_error& e) {
    CHECK(e.code() == errc::unsupported_version);
    CHECK(std::string(e.what()) == "model file v7");
  }
  // Everything is catchable as std::exception too.
  CHECK_THROWS_AS(tl::raise_if_error(tl::status{errc::non_finite, "inf"}), std::exception);
}
#endif  // TINYLARGE_HAS_EXCEPTIONS

#if TINYLARGE_TEST_HAVE_FORK
TEST_CASE("fatal errors: the user hook receives the code", "[core][error][fatal]") {
  CHECK(exit_code_of([] { tl::on_fatal_error(errc::checksum_mismatch, "crc"); }) ==
        fatal_exit(errc::checksum_mismatch));
  CHECK(exit_code_of([] { tl::on_fatal_error(errc::capacity_exceeded, "arena"); }) ==
        fatal_exit(errc::capacity_exceeded));
  // The harness itself can tell a normal exit from a fatal one.
  CHECK(exit_code_of([] {}) == 0);
}

#if !TINYLARGE_HAS_EXCEPTIONS
TEST_CASE("fatal errors: without exceptions every raise ends in the hook", "[core][error][fatal]") {
  CHECK(exit_code_of([] { TINYLARGE_RAISE(errc::truncated, "short"); }) == fatal_exit(errc::truncated));
  CHECK(exit_code_of([] { TINYLARGE_REQUIRE(2 + 2 == 5, errc::shape_mismatch, "s"); }) ==
        fatal_exit(errc::shape_mismatch));
  CHECK(exit_code_of([] { TINYLARGE_REQUIRE(2 + 2 == 4, errc::shape_mismatch, "s"); }) == 0);
  CHECK(exit_code_of([] { tl::raise_if_error(tl::status{errc::non_finite, "nan"}); }) ==
        fatal_exit(errc::non_finite));
  CHECK(exit_code_of([] { tl::raise_if_error(tl::status::success()); }) == 0);
}
#endif
#endif  // TINYLARGE_TEST_HAVE_FORK

// =============================================================================
// architecture tags
// =============================================================================
namespace {
// A "kernel" overloaded on some tags: calls resolve to the nearest base.
constexpr int which_kernel(tl::arch::scalar) { return 0; }
constexpr int which_kernel(tl::arch::avx2) { return 2; }
constexpr int which_kernel(tl::arch::neon) { return 5; }

template <class Derived, class Base>
constexpr bool support_implies_base() {
  return !Derived::supported() || Base::supported();
}
}  // namespace

TEST_CASE("arch: inheritance chains", "[core][arch]") {
  using namespace tl::arch;
  STATIC_REQUIRE(std::is_base_of_v<scalar, avx2>);
  STATIC_REQUIRE(std::is_base_of_v<avx2, avx512>);
  STATIC_REQUIRE(std::is_base_of_v<avx512, avx512_vnni>);
  STATIC_REQUIRE(std::is_base_of_v<scalar, neon>);
  STATIC_REQUIRE(std::is_base_of_v<neon, neon_dotprod>);
  STATIC_REQUIRE(std::is_base_of_v<scalar, cortex_m_dsp>);
  STATIC_REQUIRE_FALSE(std::is_base_of_v<avx2, neon>);
  STATIC_REQUIRE_FALSE(std::is_base_of_v<neon, cortex_m_dsp>);
  STATIC_REQUIRE(std::is_empty_v<avx512_vnni>);

  // Overload resolution falls back along the chain.
  STATIC_REQUIRE(which_kernel(avx512_vnni{}) == 2);
  STATIC_REQUIRE(which_kernel(avx512{}) == 2);
  STATIC_REQUIRE(which_kernel(neon_dotprod{}) == 5);
  STATIC_REQUIRE(which_kernel(cortex_m_dsp{}) == 0);
  STATIC_REQUIRE(which_kernel(scalar{}) == 0);
}

TEST_CASE("arch: support is consistent and best is supported", "[core][arch]") {
  using namespace tl::arch;
  STATIC_REQUIRE(scalar::supported());
  STATIC_REQUIRE(best::supported());
  // A tag can only be supported when its base is.
  STATIC_REQUIRE(support_implies_base<avx2, scalar>());
  STATIC_REQUIRE(support_implies_base<avx512, avx2>());
  STATIC_REQUIRE(support_implies_base<avx512_vnni, avx512>());
  STATIC_REQUIRE(support_implies_base<avx512_bf16, avx512_vnni>());
  STATIC_REQUIRE(support_implies_base<avx2, sse2>());
  STATIC_REQUIRE(support_implies_base<neon_dotprod, neon>());

  // best is the most derived supported tag for this compilation target.
#if defined(__x86_64__) || defined(__i386__)
  STATIC_REQUIRE_FALSE(neon::supported());
  STATIC_REQUIRE_FALSE(cortex_m_dsp::supported());
#if !TINYLARGE_USE_XSIMD
  STATIC_REQUIRE(std::is_same_v<best, scalar>);  // TINYLARGE_USE_XSIMD=OFF: the host back ends are off
#elif defined(__AVX512BF16__) && defined(__AVX512VNNI__) && defined(__AVX512F__) && defined(__AVX512BW__) && \
    defined(__AVX512DQ__) && defined(__AVX512VL__) && defined(__FMA__) && defined(__F16C__)
  STATIC_REQUIRE(std::is_same_v<best, avx512_bf16>);
#elif defined(__AVX512VNNI__) && defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512DQ__) && \
    defined(__AVX512VL__) && defined(__FMA__) && defined(__F16C__)
  STATIC_REQUIRE(std::is_same_v<best, avx512_vnni>);
#elif defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512DQ__) && defined(__AVX512VL__) && \
    defined(__FMA__) && defined(__F16C__)
  STATIC_REQUIRE(std::is_same_v<best, avx512>);
#elif defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
  STATIC_REQUIRE(std::is_same_v<best, avx2>);
#elif defined(TINYLARGE_DISPATCH) && defined(__x86_64__)
  STATIC_REQUIRE(std::is_same_v<best, dispatch>);  // baseline build with run-time dispatch
#elif defined(__x86_64__)
  STATIC_REQUIRE(std::is_same_v<best, sse2>);  // baseline x86-64: xsimd's SSE2 kernels
#else
  STATIC_REQUIRE(std::is_same_v<best, scalar>);
#endif
#elif defined(__aarch64__) && defined(__ARM_FEATURE_DOTPROD)
  STATIC_REQUIRE(std::is_same_v<best, neon_dotprod>);
#elif defined(__ARM_NEON)
  STATIC_REQUIRE(std::is_same_v<best, neon>);
#endif

  const std::set<std::string_view> names{scalar::name(),      sse2::name(),        dispatch::name(),
                                         avx2::name(),        avx512::name(),      avx512_vnni::name(),
                                         avx512_bf16::name(), neon::name(),        neon_dotprod::name(),
                                         cortex_m_dsp::name()};
  CHECK(names.size() == 10);
}

// =============================================================================
// rng
// =============================================================================
namespace {
constexpr std::uint32_t first_output(std::uint64_t seed, std::uint64_t stream) {
  tl::rng r(seed, stream);
  return r();
}
}  // namespace

TEST_CASE("rng: PCG32 reference outputs", "[core][rng]") {
  // Computed at compile time: the generator is constexpr.
  STATIC_REQUIRE(first_output(42, 54) == 0xa15c02b7u);

  tl::rng r(42, 54);
  const std::array<std::uint32_t, 6> expected{0xa15c02b7u, 0x7b47f409u, 0xba1d3330u,
                                              0x83d2f293u, 0xbfa4784bu, 0xcbed606eu};
  for (const std::uint32_t e : expected) CHECK(r() == e);

  tl::rng d;  // default seed and stream
  const std::array<std::uint32_t, 4> expected_default{0x1bbeb4f2u, 0xe82e89e9u, 0x681cfdebu, 0xe00fa2ecu};
  for (const std::uint32_t e : expected_default) CHECK(d.next_u32() == e);
}

TEST_CASE("rng: reseeding, copies and streams", "[core][rng]") {
  tl::rng a(42, 54);
  for (int i = 0; i < 17; ++i) (void)a();
  tl::rng copy = a;
  for (int i = 0; i < 100; ++i) REQUIRE(copy() == a());

  a.seed_with(42, 54);
  CHECK(a() == 0xa15c02b7u);

  // Same seed, another stream: a different sequence.
  tl::rng s54(42, 54), s55(42, 55);
  int equal = 0;
  for (int i = 0; i < 64; ++i) equal += (s54() == s55()) ? 1 : 0;
  CHECK(equal < 2);
}

TEST_CASE("rng: uniform_int matches Lemire's method and stays in bounds", "[core][rng]") {
  SECTION("reference values") {
    tl::rng r(42, 54);
    const std::array<std::uint32_t, 10> expected{6, 4, 7, 5, 7, 7, 7, 5, 8, 9};
    for (const std::uint32_t e : expected) CHECK(r.uniform_int(10) == e);
  }
  SECTION("rejection path: 5 draws below 3e9 consume 7 raw outputs") {
    tl::rng r(7, 1);
    const std::array<std::uint32_t, 5> expected{1547497592u, 220062708u, 1263320192u, 1236839702u,
                                                1184086711u};
    for (const std::uint32_t e : expected) CHECK(r.uniform_int(3000000000u) == e);
    CHECK(r() == 2592056079u);  // the 8th raw output of PCG32(7, 1): 2 draws were rejected
  }
  SECTION("bounds") {
    tl::rng r(123);
    CHECK(r.uniform_int(0) == 0);
    for (const std::uint32_t bound : {1u, 2u, 3u, 7u, 1000u, 0x80000001u, 0xFFFFFFFFu}) {
      INFO("bound " << bound);
      std::uint32_t hi = 0;
      for (int i = 0; i < 20000; ++i) {
        const std::uint32_t v = r.uniform_int(bound);
        REQUIRE(v < bound);
        hi = std::max(hi, v);
      }
      // The top of the range is reached (for small bounds exactly, for large within 0.1%).
      CHECK(hi >= bound - 1 - bound / 1000);
    }
  }
  SECTION("every value of a small range is about equally likely") {
    tl::rng r(99);
    std::array<int, 7> counts{};
    for (int i = 0; i < 7000; ++i) ++counts[r.uniform_int(7)];
    for (const int c : counts) {  // expected 1000 each, standard deviation ~29
      CHECK(c > 880);
      CHECK(c < 1120);
    }
  }
}

TEST_CASE("rng: uniform and normal floats", "[core][rng]") {
  tl::rng r(2026);
  CHECK(r.uniform() == 6297025.0f * 0x1.0p-24f);
  CHECK(r.uniform() == 11512466.0f * 0x1.0p-24f);
  CHECK(r.uniform() == 342949.0f * 0x1.0p-24f);

  double sum = 0;
  for (int i = 0; i < 10000; ++i) {
    const float u = r.uniform();
    REQUIRE(u >= 0.0f);
    REQUIRE(u < 1.0f);
    const float v = r.uniform(-3.0f, 5.0f);
    REQUIRE(v >= -3.0f);
    REQUIRE(v < 5.0f);
    sum += u;
  }
  CHECK(std::abs(sum / 10000 - 0.5) < 0.02);

  tl::rng g(5);
  const int n = 40000;
  double mean = 0, sq = 0;
  int beyond_3sigma = 0;
  for (int i = 0; i < n; ++i) {
    const double x = g.normal();
    REQUIRE(std::isfinite(x));
    mean += x;
    sq += x * x;
    beyond_3sigma += std::abs(x) > 3.0 ? 1 : 0;
  }
  mean /= n;
  const double var = sq / n - mean * mean;
  CHECK(std::abs(mean) < 0.03);
  CHECK(std::abs(var - 1.0) < 0.05);
  CHECK(beyond_3sigma > 40);  // expected 0.27% of 40000 = 108
  CHECK(beyond_3sigma < 200);

  tl::rng h(5);
  double scaled = 0;
  for (int i = 0; i < 1000; ++i) scaled += h.normal(10.0f, 0.5f);
  CHECK(std::abs(scaled / 1000 - 10.0) < 0.1);
}

TEST_CASE("rng: shuffle is a seeded uniform permutation", "[core][rng]") {
  SECTION("reference permutation") {
    std::array<int, 10> a{};
    std::iota(a.begin(), a.end(), 0);
    tl::rng r(1, 1);
    r.shuffle(a.data(), a.size());
    CHECK(a == std::array<int, 10>{3, 5, 1, 8, 2, 9, 4, 6, 0, 7});
  }
  SECTION("a permutation, reproducible, seed-dependent") {
    std::vector<int> v(1000), w(1000), x(1000);
    std::iota(v.begin(), v.end(), 0);
    w = v;
    x = v;
    tl::rng(77).shuffle(v.data(), v.size());
    tl::rng(77).shuffle(w.data(), w.size());
    tl::rng(78).shuffle(x.data(), x.size());
    CHECK(v == w);
    CHECK(v != x);
    int fixed_points = 0;
    for (int i = 0; i < 1000; ++i) fixed_points += v[static_cast<std::size_t>(i)] == i ? 1 : 0;
    CHECK(fixed_points < 10);  // a random permutation has ~1
    std::sort(v.begin(), v.end());
    std::vector<int> identity(1000);
    std::iota(identity.begin(), identity.end(), 0);
    CHECK(v == identity);
  }
  SECTION("empty and single-element ranges are left alone") {
    tl::rng r(3);
    int one = 42;
    r.shuffle(&one, 1);
    CHECK(one == 42);
    r.shuffle(static_cast<int*>(nullptr), 0);
  }
  SECTION("all 6 orders of 3 elements are equally likely") {
    // A classic Fisher–Yates bug (j drawn from [0, n) instead of [0, i)) makes
    // some orders 1.5x more likely than others.
    tl::rng r(11);
    std::map<std::array<int, 3>, int> seen;
    for (int i = 0; i < 6000; ++i) {
      std::array<int, 3> a{0, 1, 2};
      r.shuffle(a.data(), a.size());
      ++seen[a];
    }
    CHECK(seen.size() == 6);
    for (const auto& [order, count] : seen) {  // expected 1000, sd ~29
      CHECK(count > 880);
      CHECK(count < 1120);
    }
  }
}
