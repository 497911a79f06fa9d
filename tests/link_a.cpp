// Link test, translation unit A. Together with link_b.cpp this checks that
// every public header can be included in two translation units of one program
// without "multiple definition" errors (non-template functions and variables
// in headers must be `inline`; frugally-deep #377 is the cautionary tale).
//
// A includes the umbrella first, then every header one by one; B does the
// reverse, so a header that only compiles after some other header is caught
// in one of the two orders.
#include <tinylarge/tinylarge.hpp>
#include <tinylarge_all_headers.hpp>

#include <catch2/catch.hpp>

#include <cstdint>
#include <string_view>

namespace link_test {
// Defined in link_b.cpp.
std::uint32_t first_output_in_b(std::uint64_t seed, std::uint64_t stream);
const char* best_arch_name_in_b();
const char* error_name_in_b(tl::errc code);
bool has_exceptions_in_b();
}  // namespace link_test

TEST_CASE("two translation units including every header agree", "[link]") {
  // The same inline function, instantiated in both TUs, must give one answer.
  tl::rng here(2026, 7);
  CHECK(link_test::first_output_in_b(2026, 7) == here());
  CHECK(std::string_view(link_test::best_arch_name_in_b()) == tl::arch::best::name());
  CHECK(std::string_view(link_test::error_name_in_b(tl::errc::corrupt)) == tl::to_string(tl::errc::corrupt));
  CHECK(link_test::has_exceptions_in_b() == tl::has_exceptions);
}
