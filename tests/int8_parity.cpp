// int8_parity: the int8 outputs of this build, as hashes that must be the same
// on every architecture (scripts/arm_linux_test.sh runs it on x86-64 and under
// qemu-aarch64 / qemu-arm and compares the output byte for byte).
//
// It also checks, in-process, that `kernels::default_backend` (AVX2/VNNI,
// NEON, NEON+SDOT, …) gives exactly the bytes of `arch::scalar`, and exits
// with status 1 if not — so as a CTest test it fails on its own.
//
// Two workloads:
//  - "kernel": int8 operands drawn with integer-only RNG calls (no floating
//    point anywhere), shapes for the GEMV (m = 1) and GEMM paths and their
//    tails, every zero-point/clamp/per-channel variant. Identical inputs on
//    every target, so identical outputs are the kernels' claim.
//  - "quickstart": the int8 pipeline of examples/quickstart (256 → 128 dense,
//    batch 64, per-channel weights, calibrated activations). Its inputs come
//    from float code (Box–Muller normals, calibration, rounding); the output
//    calibration uses the scalar fp32 kernel and this file is compiled with
//    -ffp-contract=off, so the quantized operands are identical wherever libm
//    gives the same log/cos results. Their hash is printed separately
//    ("inputs"), so a difference in the float front end is told apart from a
//    difference in the int8 kernel ("int8_out").
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <span>
#include <vector>

#include "tinylarge/core/rng.hpp"
#include "tinylarge/kernels/dense.hpp"
#include "tinylarge/precision/int8.hpp"

namespace {

namespace k = tinylarge::kernels;
using backend = k::default_backend;

/// FNV-1a, 64 bit, over the bytes of a buffer (little-endian ints on every
/// target this runs on).
struct fnv1a {
  std::uint64_t h = 0xcbf29ce484222325ULL;
  template <class T>
  fnv1a& add(const std::vector<T>& v) {
    const auto* b = reinterpret_cast<const unsigned char*>(v.data());
    for (std::size_t i = 0; i < v.size() * sizeof(T); ++i) h = (h ^ b[i]) * 0x100000001b3ULL;
    return *this;
  }
  template <class T>
  fnv1a& add_value(T v) {
    return add(std::vector<T>{v});
  }
};

int failures = 0;

void report(const char* what, const std::vector<std::int8_t>& y, const std::vector<std::int8_t>& y_scalar) {
  const bool same = y == y_scalar;
  if (!same) ++failures;
  std::printf("%-44s int8_out=%016llx%s\n", what, static_cast<unsigned long long>(fnv1a{}.add(y).h),
              same ? "" : "  MISMATCH: default back end differs from arch::scalar");
}

std::vector<std::int8_t> random_s8(tinylarge::rng& g, std::size_t n) {
  std::vector<std::int8_t> v(n);
  for (auto& x : v) x = static_cast<std::int8_t>(static_cast<int>(g.uniform_int(256)) - 128);
  return v;
}

void kernel_workload(std::size_t m, std::size_t n, std::size_t kk, std::int32_t zx, bool per_channel,
                     tinylarge::rng& g) {
  const auto x = random_s8(g, m * kk), w = random_s8(g, n * kk);
  std::vector<std::int32_t> bias(n), mult(n);
  std::vector<int> shift(n);
  for (std::size_t o = 0; o < n; ++o) {
    bias[o] = static_cast<std::int32_t>(g.uniform_int(1u << 16)) - (1 << 15);
    // Q31 multipliers in [2³⁰, 2³¹) and right shifts 8 … 15: integers only.
    mult[o] = static_cast<std::int32_t>((1u << 30) + g.uniform_int(1u << 30));
    shift[o] = -8 - static_cast<int>(g.uniform_int(8));
  }
  k::dense_s8_params p;
  p.input_zero_point = zx;
  p.output_zero_point = -3;
  p.multipliers = mult.data();
  p.shifts = shift.data();
  p.per_channel = per_channel;
  p.bias = bias.data();
  p.act_min = -120;
  p.act_max = 125;
  std::vector<std::int8_t> y(m * n), ys(m * n);
  k::dense_s8(backend{}, m, n, kk, x.data(), w.data(), p, y.data());
  k::dense_s8(tinylarge::arch::scalar{}, m, n, kk, x.data(), w.data(), p, ys.data());
  char what[96];
  std::snprintf(what, sizeof what, "kernel m=%zu n=%zu k=%zu zx=%d%s", m, n, kk, static_cast<int>(zx),
                per_channel ? " per-channel" : "");
  report(what, y, ys);
}

void quickstart_workload() {
  // As examples/quickstart/quickstart.cpp (same seed and draws).
  constexpr std::size_t batch = 64, in_features = 256, out_features = 128;
  tinylarge::rng gen(42);
  const float limit = std::sqrt(6.0f / static_cast<float>(in_features + out_features));
  std::vector<float> w(out_features * in_features), b(out_features), x(batch * in_features);
  for (float& v : w) v = gen.uniform(-limit, limit);
  for (float& v : b) v = gen.uniform(-0.1f, 0.1f);
  for (float& v : x) v = std::max(0.0f, gen.normal());
  std::vector<float> y_ref(batch * out_features);
  k::dense_f32(tinylarge::arch::scalar{}, batch, out_features, in_features, x.data(), w.data(), b.data(),
               y_ref.data());

  tinylarge::minmax_observer in_obs, out_obs;
  in_obs.observe(x);
  out_obs.observe(y_ref);
  const tinylarge::quant_params xq = in_obs.params<tinylarge::asymmetric>(), yq = out_obs.params<tinylarge::asymmetric>();
  std::vector<std::int8_t> w8(w.size()), x8(x.size());
  std::vector<float> w_scales(out_features);
  tinylarge::quantize_weights<tinylarge::per_channel>(w, out_features, w8, w_scales);
  tinylarge::quantize(std::span<const float>(x), xq, std::span<std::int8_t>(x8));
  std::vector<std::int32_t> b32(out_features), multipliers(out_features);
  std::vector<int> shifts(out_features);
  tinylarge::quantize_bias(b, xq.scale, w_scales, b32);
  tinylarge::requantization_multipliers(xq.scale, w_scales, yq.scale, multipliers, shifts);

  k::dense_s8_params p;
  p.input_zero_point = xq.zero_point;
  p.output_zero_point = yq.zero_point;
  p.multipliers = multipliers.data();
  p.shifts = shifts.data();
  p.per_channel = true;
  p.bias = b32.data();
  std::vector<std::int8_t> y8(batch * out_features), y8s(y8.size());
  k::dense_s8(backend{}, batch, out_features, in_features, x8.data(), w8.data(), p, y8.data());
  k::dense_s8(tinylarge::arch::scalar{}, batch, out_features, in_features, x8.data(), w8.data(), p, y8s.data());

  fnv1a in;
  in.add(x8).add(w8).add(b32).add(multipliers).add(shifts).add_value(p.input_zero_point).add_value(p.output_zero_point);
  std::printf("%-44s inputs=%016llx\n", "quickstart 64x256->128 quantized operands",
              static_cast<unsigned long long>(in.h));
  report("quickstart 64x256->128", y8, y8s);
}

}  // namespace

int main() {
  // The back end is deliberately not printed: the output must be identical
  // on every target (it goes to stderr for the log).
  std::fprintf(stderr, "int8_parity: default_backend = %s\n", backend::name());
  tinylarge::rng g(2024);
  kernel_workload(1, 256, 784, -128, true, g);
  kernel_workload(1, 10, 300, 5, false, g);
  kernel_workload(7, 33, 100, 0, true, g);
  kernel_workload(64, 256, 784, 17, true, g);
  kernel_workload(3, 5, 4100, 127, false, g);
  quickstart_workload();
  if (failures != 0) std::printf("%d workload(s) differ from arch::scalar\n", failures);
  return failures == 0 ? 0 : 1;
}
