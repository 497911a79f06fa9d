// Self-test of the precision layer on the freestanding profile: on-device
// post-training quantization of a float dense layer (calibration, per-channel
// weights, int32 bias, fixed-point multipliers), integer-only inference, and
// the 16-bit storage formats. The same source runs on Cortex-M under
// qemu-system-arm and on the host; every value printed must be identical:
// the quantization math is IEEE single/double arithmetic without
// multiply-adds that a compiler could fuse, and its only libm calls (frexp,
// llround) are exact. Exits non-zero on the first failed check.
#include <tinylarge/freestanding.hpp>

#include <bit>
#include <cstdint>

#if defined(__arm__) && !defined(__linux__)
#include "startup.hpp"
namespace out = tl_mcu;
#else
#include <cstdio>
namespace out {
inline void puts(const char* s) { std::fputs(s, stdout); }
inline void put_int(long v) { std::printf("%ld", v); }
}  // namespace out
#endif

namespace {

int failures = 0;

void report(const char* what, long got) {
  out::puts(what);
  out::puts(" = ");
  out::put_int(got);
  out::puts("\n");
}

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

long float_bits(float f) { return static_cast<long>(std::bit_cast<std::uint32_t>(f) & 0x7FFFFFFFu) * (f < 0 ? -1 : 1); }

// FNV-1a of a byte range: identical on 32- and 64-bit targets.
template <class T>
long fnv1a(const T* v, std::size_t n) {
  const auto* bytes = reinterpret_cast<const unsigned char*>(v);
  std::uint32_t h = 2166136261u;
  for (std::size_t i = 0; i < n * sizeof(T); ++i) h = (h ^ bytes[i]) * 16777619u;
  return static_cast<long>(h & 0x7FFFFFFFu);
}

constexpr std::size_t batch = 4, in_features = 48, out_features = 10;
float x[batch * in_features];
float w[out_features * in_features];
float b[out_features];
float y[batch * out_features];
std::int8_t xq[batch * in_features];
std::int8_t wq[out_features * in_features];
float wscale[out_features];
std::int32_t bq[out_features];
std::int32_t mult[out_features];
int shift[out_features];
std::int8_t yq[batch * out_features];
tl::half h[batch * in_features];
tl::bfloat16 bf[batch * in_features];
float back[batch * in_features];

}  // namespace

int main() {
  using P = tl::int8_per_channel;
  // Dyadic inputs (small integers times powers of two): every product and sum
  // of the fp32 reference is exact, so it is the same with or without FMA
  // contraction (GCC contracts by default on Cortex-M4F, not on x86-64 or M3).
  tl::rng gen(77);
  auto integer_in = [&](int lo, int hi) {
    return static_cast<float>(static_cast<int>(gen.uniform_int(static_cast<std::uint32_t>(hi - lo + 1))) + lo);
  };
  for (auto& v : x) v = integer_in(-16, 96) * 0x1.0p-6f;
  for (std::size_t o = 0; o < out_features; ++o) {
    const int r = 20 * static_cast<int>(o + 1);
    for (std::size_t i = 0; i < in_features; ++i) w[o * in_features + i] = integer_in(-r, r) * 0x1.0p-10f;
    b[o] = integer_in(-100, 100) * 0x1.0p-10f;
  }
  tl::kernels::dense_f32(tl::kernels::scalar{}, batch, out_features, in_features, x, w, b, y);

  // Calibrate and quantize, all on the device.
  tl::minmax_observer ox, oy;
  ox.observe(x);
  oy.observe(y);
  const tl::quant_params px = P::activation_params(ox.lo, ox.hi);
  const tl::quant_params py = P::activation_params(oy.lo, oy.hi);
  report("input scale bits", float_bits(px.scale));
  report("input zero point", px.zero_point);
  report("output scale bits", float_bits(py.scale));
  report("output zero point", py.zero_point);
  tl::quantize(x, px, xq, P::activation_range);
  P::quantize_weights(w, out_features, wq, wscale);
  tl::quantize_bias(b, px.scale, wscale, bq);
  tl::requantization_multipliers(px.scale, wscale, py.scale, mult, shift);
  report("weight codes fnv1a", fnv1a(wq, out_features * in_features));
  report("weight scales fnv1a", fnv1a(wscale, out_features));
  report("bias fnv1a", fnv1a(bq, out_features));
  report("multipliers fnv1a", fnv1a(mult, out_features));
  report("shifts fnv1a", fnv1a(shift, out_features));

  // Integer-only inference on the best back end of this target.
  tl::kernels::dense_s8_params kp;
  kp.input_zero_point = px.zero_point;
  kp.output_zero_point = py.zero_point;
  kp.multipliers = mult;
  kp.shifts = shift;
  kp.per_channel = true;
  kp.bias = bq;
  tl::kernels::dense_s8(tl::kernels::default_backend{}, batch, out_features, in_features, xq, wq, kp, yq);
  report("int8 outputs fnv1a", fnv1a(yq, batch * out_features));
  // Accuracy against fp32, in output steps (x1000): the bound is one step.
  long worst = 0;
  for (std::size_t j = 0; j < batch * out_features; ++j) {
    float d = tl::dequantize(yq[j], py) - y[j];
    d = d < 0 ? -d : d;
    const auto milli_steps = static_cast<long>(d / py.scale * 1000.0f);
    worst = milli_steps > worst ? milli_steps : worst;
  }
  check("worst int8 error <= 1 step", worst <= 1000 ? 1 : 0, 1);
  report("worst int8 error (milli-steps)", worst);

  // 16-bit storage formats: bulk conversion on this target's back end.
  tl::convert(tl::arch::best{}, x, h);
  tl::convert(tl::arch::best{}, x, bf);
  report("fp16 codes fnv1a", fnv1a(h, batch * in_features));
  report("bf16 codes fnv1a", fnv1a(bf, batch * in_features));
  tl::convert(tl::arch::best{}, h, back);
  long max_rel = 0;  // relative error x 2^20: fp16 rounding bound is 2^-11 = 512
  for (std::size_t i = 0; i < batch * in_features; ++i) {
    const float e = (back[i] - x[i]) / x[i];
    const auto r = static_cast<long>((e < 0 ? -e : e) * 1048576.0f);
    max_rel = r > max_rel ? r : max_rel;
  }
  check("fp16 relative error <= 2^-11", max_rel <= 512 ? 1 : 0, 1);
  check("bf16(1/3)", tl::float_to_bfloat16(1.0f / 3.0f).bits, 0x3EAB);
  check("bf16(-0)", tl::float_to_bfloat16(-0.0f).bits, 0x8000);
  check("quantize(NaN) = zero point", tl::quantize(__builtin_nanf(""), px), px.zero_point);

  out::puts(failures == 0 ? "precision selftest: all checks passed\n" : "precision selftest: FAILED\n");
  return failures == 0 ? 0 : 1;
}
