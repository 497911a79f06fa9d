// arm_kernel_count: runs one int8 (or fp32) dense kernel call `reps` times on a
// named back end, for counting guest instructions / QEMU time per call
// (scripts/arm_kernel_count.sh). Not a test: the workload is fixed, the
// result is printed so that the call cannot be optimised away.
//
//   arm_kernel_count <s8|f32> <scalar|neon|neon_dotprod> <m> <n> <k> <reps>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string_view>
#include <vector>

#include "tinylarge/core/rng.hpp"
#include "tinylarge/kernels/dense.hpp"

namespace {

namespace k = tinylarge::kernels;

template <class Tag>
std::uint32_t run_s8(std::size_t m, std::size_t n, std::size_t kk, long reps) {
  tinylarge::rng g(1);
  std::vector<std::int8_t> x(m * kk), w(n * kk), y(m * n);
  for (auto& v : x) v = static_cast<std::int8_t>(static_cast<int>(g.uniform_int(256)) - 128);
  for (auto& v : w) v = static_cast<std::int8_t>(static_cast<int>(g.uniform_int(255)) - 127);
  std::vector<std::int32_t> bias(n, 100), mult(n, 1 << 30);
  std::vector<int> shift(n, -10);
  k::dense_s8_params p;
  p.input_zero_point = -7;
  p.multipliers = mult.data();
  p.shifts = shift.data();
  p.per_channel = true;
  p.bias = bias.data();
  std::uint32_t h = 0;
  for (long r = 0; r < reps; ++r) {
    k::dense_s8(Tag{}, m, n, kk, x.data(), w.data(), p, y.data());
    for (auto v : y) h = h * 31u + static_cast<std::uint8_t>(v);
  }
  return h;
}

template <class Tag>
std::uint32_t run_f32(std::size_t m, std::size_t n, std::size_t kk, long reps) {
  tinylarge::rng g(1);
  std::vector<float> x(m * kk), w(n * kk), b(n), y(m * n);
  for (auto& v : x) v = g.uniform(-1.0f, 1.0f);
  for (auto& v : w) v = g.uniform(-1.0f, 1.0f);
  for (auto& v : b) v = g.uniform(-1.0f, 1.0f);
  std::uint32_t h = 0;
  for (long r = 0; r < reps; ++r) {
    k::dense_f32(Tag{}, m, n, kk, x.data(), w.data(), b.data(), y.data());
    std::uint32_t bits;
    std::memcpy(&bits, &y[0], 4);
    h = h * 31u + bits;
  }
  return h;
}

template <class Tag>
std::uint32_t run(const char* kind, std::size_t m, std::size_t n, std::size_t kk, long reps) {
  return std::strcmp(kind, "s8") == 0 ? run_s8<Tag>(m, n, kk, reps) : run_f32<Tag>(m, n, kk, reps);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 7) {
    std::fprintf(stderr, "usage: %s <s8|f32> <scalar|neon|neon_dotprod> m n k reps\n", argv[0]);
    return 2;
  }
  const auto m = std::strtoul(argv[3], nullptr, 10), n = std::strtoul(argv[4], nullptr, 10),
             kk = std::strtoul(argv[5], nullptr, 10);
  const long reps = std::strtol(argv[6], nullptr, 10);
  const std::string_view tag = argv[2];
  std::uint32_t h = 0;
  if (tag == "scalar") {
    h = run<tinylarge::arch::scalar>(argv[1], m, n, kk, reps);
  } else if (tag == "neon") {
    h = run<tinylarge::arch::neon>(argv[1], m, n, kk, reps);
  } else if (tag == "neon_dotprod" && tinylarge::arch::neon_dotprod::supported()) {
    h = run<tinylarge::arch::neon_dotprod>(argv[1], m, n, kk, reps);
  } else {
    std::fprintf(stderr, "back end %s not available in this build\n", argv[2]);
    return 2;
  }
  std::printf("%08x\n", h);
  return 0;
}
