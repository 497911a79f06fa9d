// Self-test of the freestanding profile. The same source runs on Cortex-M under
// qemu-system-arm and on the host; both print one line per check with the
// values computed, and scripts compare the two outputs byte for byte. It
// exits non-zero on the first failed check.
#include <tinylarge/freestanding.hpp>

#include <cstdint>

#if defined(__arm__) && !defined(__linux__)
#include "startup.hpp"
namespace out = tl_mcu;
#else
#include <cstdio>
#include <cstdlib>
namespace out {
inline void puts(const char* s) { std::fputs(s, stdout); }
inline void put_int(long v) { std::printf("%ld", v); }
}  // namespace out
#endif

#if TINYLARGE_HAS_EXCEPTIONS || defined(__cpp_rtti) || defined(__GXX_RTTI)
#if defined(__arm__) && !defined(__linux__)
#error "the freestanding self-test must be built with -fno-exceptions -fno-rtti"
#endif
#endif

namespace {

int failures = 0;

void check(const char* what, long got, long want) {
  out::puts(what);
  out::puts(" = ");
  out::put_int(got);
  if (got != want) {
    out::puts("  FAILED, expected ");
    out::put_int(want);
    ++failures;
  }
  out::puts("\n");
}

// A fixed int8 dense layer, 40 inputs → 12 outputs, weights from the seeded RNG.
constexpr std::size_t in_features = 40, out_features = 12, batch = 3;
std::int8_t weights[out_features * in_features];
std::int32_t bias[out_features];
std::int8_t inputs[batch * in_features];
std::int8_t outputs[batch * out_features];
std::int32_t multipliers[out_features];
int shifts[out_features];

}  // namespace

int main() {
  // fp16: exact values and rounding cases.
  check("fp16(1.0)", tl::float_to_half(1.0f).bits, 0x3C00);
  check("fp16(65504)", tl::float_to_half(65504.0f).bits, 0x7BFF);
  check("fp16(65520)->inf", tl::float_to_half(65520.0f).bits, 0x7C00);
  check("fp16(2^-24)", tl::float_to_half(0x1.0p-24f).bits, 0x0001);
  check("fp16(2^-25) ties to 0", tl::float_to_half(0x1.0p-25f).bits, 0x0000);
  long sum = 0;
  for (std::uint32_t h = 0; h < 0x7C00u; h += 7) {
    const tl::half v{static_cast<std::uint16_t>(h)};
    sum += (tl::float_to_half(tl::half_to_float(v)) == v) ? 1 : 0;
  }
  check("fp16 round trips (finite, step 7)", sum, (0x7C00 + 6) / 7);

  // Requantization: gemmlowp semantics.
  check("srdhm(INT32_MIN, INT32_MIN)",
        tl::saturating_rounding_doubling_high_mul(INT32_MIN, INT32_MIN), INT32_MAX);
  check("rdbpot(-3, 1)", tl::rounding_divide_by_pot(-3, 1), -2);
  check("rdbpot(5, 1)", tl::rounding_divide_by_pot(5, 1), 3);
  const tl::quantized_multiplier qm = tl::quantize_multiplier(0.0037);
  check("quantize_multiplier(0.0037).shift", qm.shift, -8);
  check("mbqm(100000, 0.0037)", tl::multiply_by_quantized_multiplier(100000, qm), 370);

  // int8 dense on the best back end this target has, against the scalar
  // reference on the same target, for shapes with and without tails.
  out::puts("int8 dense backend: ");
  out::puts(tl::kernels::default_backend::name());
  out::puts("\n");
  // FNV-1a over the output bytes: identical on 32- and 64-bit targets.
  auto fnv1a = [](const std::int8_t* v, std::size_t n) {
    std::uint32_t h = 2166136261u;
    for (std::size_t i = 0; i < n; ++i) h = (h ^ static_cast<std::uint8_t>(v[i])) * 16777619u;
    return static_cast<long>(h & 0x7FFFFFFFu);
  };
  tl::rng gen(2024);
  // m = 1 and m = 3 end in the GEMV path (three weight rows per block: n % 3 = 0, 1, 2 all occur);
  // the last two run per-tensor, without bias.
  struct shape { std::size_t m, n, k; std::int32_t zx; bool per_channel = true, bias = true; };
  const shape shapes[] = {{3, 12, 40, -3}, {2, 5, 37, 7},           {1, 1, 3, -128},
                          {3, 11, 39, 127}, {1, 7, 22, 4, false, false}, {2, 10, 40, -1, false, false}};
  for (const shape& s : shapes) {
    for (auto& w : weights) w = static_cast<std::int8_t>(static_cast<int>(gen.uniform_int(255)) - 127);
    for (auto& x : inputs) x = static_cast<std::int8_t>(static_cast<int>(gen.uniform_int(256)) - 128);
    for (std::size_t o = 0; o < out_features; ++o) {
      bias[o] = static_cast<std::int32_t>(gen.uniform_int(2001)) - 1000;
      const tl::quantized_multiplier m = tl::quantize_multiplier(0.0005 + 0.0001 * static_cast<double>(o));
      multipliers[o] = m.multiplier;
      shifts[o] = m.shift;
    }
    tl::kernels::dense_s8_params p;
    p.input_zero_point = s.zx;
    p.output_zero_point = 5;
    p.multipliers = multipliers;
    p.shifts = shifts;
    p.per_channel = s.per_channel;
    p.bias = s.bias ? bias : nullptr;
    p.act_min = 5;  // fused relu
    std::int8_t reference[batch * out_features];
    tl::kernels::dense_s8(tl::kernels::default_backend{}, s.m, s.n, s.k, inputs, weights, p, outputs);
    tl::kernels::dense_s8(tl::arch::scalar{}, s.m, s.n, s.k, inputs, weights, p, reference);
    const long got = fnv1a(outputs, s.m * s.n);
    check("int8 dense checksum", got, fnv1a(reference, s.m * s.n));
    // The int32 sums without requantization (the int8 layers of mixed_inference_network).
    std::int32_t sums[batch * out_features], sums_ref[batch * out_features];
    tl::kernels::dense_s8_s32(tl::kernels::default_backend{}, s.m, s.n, s.k, inputs, weights, p, sums);
    tl::kernels::dense_s8_s32(tl::arch::scalar{}, s.m, s.n, s.k, inputs, weights, p, sums_ref);
    check("int32 dense checksum", fnv1a(reinterpret_cast<const std::int8_t*>(sums), 4 * s.m * s.n),
          fnv1a(reinterpret_cast<const std::int8_t*>(sums_ref), 4 * s.m * s.n));
  }

  out::puts(failures == 0 ? "selftest: all checks passed\n" : "selftest: FAILED\n");
  return failures == 0 ? 0 : 1;
}
