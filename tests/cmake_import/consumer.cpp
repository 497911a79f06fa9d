// A program that uses tinylarge the way an outside project does: through the
// tinylarge::tinylarge target only. Exits non-zero when something is off.
#include <tinylarge/tinylarge.hpp>

#include <cstdio>
#include <cstring>

int main() {
  int failures = 0;
  auto expect = [&](bool ok, const char* what) {
    if (!ok) {
      std::fprintf(stderr, "consumer: FAILED: %s\n", what);
      ++failures;
    }
  };

  // The headers that were found belong to the package version that was found.
  char version[32];
  std::snprintf(version, sizeof version, "%d.%d.%d", TINYLARGE_VERSION_MAJOR, TINYLARGE_VERSION_MINOR,
                TINYLARGE_VERSION_PATCH);
  expect(std::strcmp(version, EXPECTED_VERSION) == 0, "header version == CMake package version");

  tl::rng r(42, 54);
  expect(r() == 0xa15c02b7u, "PCG32(42, 54) first output");
  expect(tl::arch::best::supported(), "arch::best is supported");
  expect(std::strcmp(tl::to_string(tl::errc::corrupt), "corrupt input") == 0, "to_string(errc)");

#if TINYLARGE_HAS_EXCEPTIONS
  bool caught = false;
  try {
    tl::raise_if_error(tl::status{tl::errc::corrupt, "bad magic"});
  } catch (const tl::format_error& e) {
    caught = e.code() == tl::errc::corrupt;
  }
  expect(caught, "raise_if_error throws format_error");
#endif

  std::printf("consumer: tinylarge %s, arch %s: %s\n", version, tl::arch::best::name(),
              failures == 0 ? "OK" : "FAILED");
  return failures == 0 ? 0 : 1;
}
