// tinylarge quickstart: one dense layer in four precisions.
//
// Builds a 256 → 128 dense layer with seeded random weights, runs a batch of
// 64 inputs through it in fp32 (the reference), with fp16 and bf16 weight
// storage, and in int8 (per-channel weights, per-tensor activations, integer-
// only requantization), and prints for each representation the parameter
// bytes and the max / mean absolute error of the outputs against fp32.
#include <tinylarge/tinylarge.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <span>
#include <vector>

namespace {

constexpr std::size_t batch = 64, in_features = 256, out_features = 128;

struct error_stats {
  double max_abs = 0.0, mean_abs = 0.0;
};

error_stats compare(const std::vector<float>& got, const std::vector<float>& want) {
  error_stats e;
  for (std::size_t i = 0; i < got.size(); ++i) {
    const double d = std::fabs(static_cast<double>(got[i]) - static_cast<double>(want[i]));
    e.max_abs = std::max(e.max_abs, d);
    e.mean_abs += d;
  }
  e.mean_abs /= static_cast<double>(got.size());
  return e;
}

void print_row(const char* name, std::size_t bytes, error_stats e) {
  std::printf("%-28s %10zu %14.3e %14.3e\n", name, bytes, e.max_abs, e.mean_abs);
}

}  // namespace

int main() {
  using backend = tl::kernels::default_backend;
  tl::rng gen(42);

  // Glorot-uniform weights, small biases, inputs like post-ReLU activations.
  const float limit = std::sqrt(6.0f / static_cast<float>(in_features + out_features));
  std::vector<float> w(out_features * in_features), b(out_features), x(batch * in_features);
  for (float& v : w) v = gen.uniform(-limit, limit);
  for (float& v : b) v = gen.uniform(-0.1f, 0.1f);
  for (float& v : x) v = std::max(0.0f, gen.normal());

  std::printf("tinylarge quickstart: dense %zu -> %zu, batch %zu, back end %s\n\n", in_features,
              out_features, batch, backend::name());
  std::printf("%-28s %10s %14s %14s\n", "representation", "param B", "max |err|", "mean |err|");

  // fp32 reference.
  std::vector<float> y_ref(batch * out_features);
  tl::kernels::dense_f32(backend{}, batch, out_features, in_features, x.data(), w.data(), b.data(),
                         y_ref.data());
  print_row("fp32", (w.size() + b.size()) * sizeof(float), {});

  // fp16 weight storage, fp32 accumulation.
  std::vector<tl::half> w16(w.size());
  tl::convert(std::span<const float>(w), std::span<tl::half>(w16));
  std::vector<float> y16(y_ref.size());
  tl::kernels::dense_f16(backend{}, batch, out_features, in_features, x.data(), w16.data(), b.data(),
                         y16.data());
  const error_stats e16 = compare(y16, y_ref);
  print_row("fp16 weights", w16.size() * sizeof(tl::half) + b.size() * sizeof(float), e16);

  // bf16 weight storage; there is no bf16 kernel yet, so the weights are
  // widened back to fp32 for the product (exact: every bf16 is a float).
  std::vector<tl::bfloat16> wbf(w.size());
  tl::convert(std::span<const float>(w), std::span<tl::bfloat16>(wbf));
  std::vector<float> wbf_wide(w.size()), ybf(y_ref.size());
  tl::convert(std::span<const tl::bfloat16>(wbf), std::span<float>(wbf_wide));
  tl::kernels::dense_f32(backend{}, batch, out_features, in_features, x.data(), wbf_wide.data(),
                         b.data(), ybf.data());
  print_row("bf16 weights", wbf.size() * sizeof(tl::bfloat16) + b.size() * sizeof(float),
            compare(ybf, y_ref));

  // int8: symmetric per-channel weights, asymmetric per-tensor activations,
  // int32 bias, Q31 requantization; the output range is calibrated on the
  // fp32 outputs (a real deployment calibrates on sample data).
  tl::minmax_observer in_obs, out_obs;
  in_obs.observe(x);
  out_obs.observe(y_ref);
  const tl::quant_params xq = in_obs.params<tl::asymmetric>(), yq = out_obs.params<tl::asymmetric>();
  std::vector<std::int8_t> w8(w.size()), x8(x.size()), y8(y_ref.size());
  std::vector<float> w_scales(out_features);
  tl::quantize_weights<tl::per_channel>(w, out_features, w8, w_scales);
  tl::quantize(std::span<const float>(x), xq, std::span<std::int8_t>(x8));
  std::vector<std::int32_t> b32(out_features), multipliers(out_features);
  std::vector<int> shifts(out_features);
  tl::quantize_bias(b, xq.scale, w_scales, b32);
  tl::requantization_multipliers(xq.scale, w_scales, yq.scale, multipliers, shifts);

  tl::kernels::dense_s8_params p;
  p.input_zero_point = xq.zero_point;
  p.output_zero_point = yq.zero_point;
  p.multipliers = multipliers.data();
  p.shifts = shifts.data();
  p.per_channel = true;
  p.bias = b32.data();
  tl::kernels::dense_s8(backend{}, batch, out_features, in_features, x8.data(), w8.data(), p, y8.data());
  std::vector<float> y8f(y8.size());
  tl::dequantize(std::span<const std::int8_t>(y8), yq, std::span<float>(y8f));
  const error_stats e8 = compare(y8f, y_ref);
  print_row("int8 per-channel", w8.size() + w_scales.size() * sizeof(float) + b32.size() * sizeof(std::int32_t),
            e8);
  std::printf("\nint8 output step (scale) = %.3e: errors are in units of that step.\n",
              static_cast<double>(yq.scale));

  // Sanity bounds, so that running the example is also a check: fp16 storage
  // keeps 11 significant bits (relative error 2^-11 per weight), int8 stays
  // within two output steps (rounding of inputs, weights and the output).
  if (e16.max_abs > 1e-2 || e8.max_abs > 2.0 * static_cast<double>(yq.scale)) {
    std::printf("quickstart: error larger than expected\n");
    return 1;
  }
  return 0;
}
