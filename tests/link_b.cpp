// Link test, translation unit B (see link_a.cpp). Every header one by one,
// then the umbrella.
#include <tinylarge_all_headers.hpp>
#include <tinylarge/tinylarge.hpp>

#include <cstdint>

namespace link_test {
std::uint32_t first_output_in_b(std::uint64_t seed, std::uint64_t stream) {
  tl::rng r(seed, stream);
  return r();
}
const char* best_arch_name_in_b() { return tl::arch::best::name(); }
const char* error_name_in_b(tl::errc code) { return tl::to_string(code); }
bool has_exceptions_in_b() { return tl::has_exceptions; }
}  // namespace link_test
