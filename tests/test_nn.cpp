// Tests of include/tinylarge/nn: compile-time shapes and sizes, gradients of
// every layer against central finite differences, losses, optimizers,
// learning, reproducibility, checkpoints, and int8 PTQ / QAT against fp32.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include "tinylarge/nn/nn.hpp"

namespace nn = tl::nn;

namespace {

using lenet_300_100 = tl::sequential<tl::dense<784, 300>, tl::relu, tl::dense<300, 100>, tl::relu, tl::dense<100, 10>>;
using lenet5 = tl::sequential<tl::input<28, 28, 1>, tl::conv2d<6, 5, 1, 2>, tl::relu, tl::max_pool2d<2>,
                              tl::conv2d<16, 5>, tl::relu, tl::max_pool2d<2>, tl::flatten, tl::dense<400, 120>,
                              tl::relu, tl::dense<120, 84>, tl::relu, tl::dense<84, 10>>;

// ---------------------------------------------------------------------------
// Gradient check: f(θ, x) = Σ r ⊙ forward(x), analytic ∂f/∂θ and ∂f/∂x from
// backward(r) against (f(v + ε) − f(v − ε)) / 2ε for every parameter and
// every input element. The loss is summed in double; ε is chosen per layer
// so that no kink (relu, max) lies within ±ε of the random points.
// ---------------------------------------------------------------------------
struct grad_errors {
  double params = 0.0;
  double inputs = 0.0;
  std::size_t checked = 0;
  std::size_t kinks = 0;  ///< coordinates skipped because ±ε straddles a kink
};

/// With `ids_below` > 0 the inputs are token ids (integers in [0, ids_below),
/// for a model that starts with an embedding): they are not perturbed, and
/// their gradient must be exactly zero.
template <class Model>
grad_errors gradient_check(std::uint64_t seed, std::size_t batch, float eps, float input_scale, double kink_slope,
                           std::uint32_t ids_below = 0) {
  nn::network<Model> net(seed);
  tl::rng g(seed + 101);
  for (float& p : net.parameters()) p += 0.1f * g.normal();  // non-zero biases too
  std::vector<float> x(batch * Model::input_size), r(batch * Model::output_size), dx(x.size());
  for (float& v : x) v = ids_below > 0 ? static_cast<float>(g.uniform_int(ids_below)) : input_scale * g.normal();
  for (float& v : r) v = g.normal();
  const tl::rng dropout_state = net.generator();
  auto f = [&] {
    net.generator() = dropout_state;  // the same dropout mask on every evaluation
    const float* y = net.forward(x.data(), batch, /*training=*/true);
    double s = 0.0;
    for (std::size_t i = 0; i < r.size(); ++i) s += static_cast<double>(r[i]) * static_cast<double>(y[i]);
    return s;
  };
  const double f0 = f();
  net.zero_gradients();
  net.backward(r.data(), dx.data());
  const std::vector<float> analytic(net.gradients().begin(), net.gradients().end());
  grad_errors e;
  auto check = [&](float& v, double a, double& worst) {
    const float old = v;
    v = old + eps;
    const double fp = f();
    v = old - eps;
    const double fm = f();
    v = old;
    ++e.checked;
    // Piecewise-linear models (relu, max pool) have kinks. Away from them the
    // one-sided slopes (f(v+ε) − f(v))/ε and (f(v) − f(v−ε))/ε agree up to
    // rounding; where [v − ε, v + ε] straddles a kink they differ, and the
    // central difference is off by at most half that gap. Coordinates whose
    // gap exceeds `kink_slope` are counted, not compared (0 = compare all).
    const double scale = std::max({1.0, std::abs(a)});
    if (kink_slope > 0.0 && std::abs(fp - 2.0 * f0 + fm) / static_cast<double>(eps) > kink_slope * scale) {
      ++e.kinks;
      return;
    }
    const double numeric = (fp - fm) / (2.0 * static_cast<double>(eps));
    const double err = std::abs(numeric - a) / std::max({1.0, std::abs(numeric), std::abs(a)});
    worst = std::max(worst, err);
  };
  for (std::size_t i = 0; i < Model::param_count; ++i) check(net.parameters()[i], analytic[i], e.params);
  if (ids_below > 0) {
    for (const float v : dx) e.inputs = std::max(e.inputs, static_cast<double>(std::abs(v)));
    e.checked += x.size();
  } else {
    for (std::size_t i = 0; i < x.size(); ++i) check(x[i], dx[i], e.inputs);
  }
  return e;
}

/// Smooth models: every coordinate is compared.
template <class Model>
void require_gradients(std::uint64_t seed, std::size_t batch, float eps, double tol, float input_scale = 1.0f) {
  const grad_errors e = gradient_check<Model>(seed, batch, eps, input_scale, 0.0);
  INFO("worst relative error: parameters " << e.params << ", inputs " << e.inputs);
  REQUIRE(e.checked == Model::param_count + batch * Model::input_size);
  REQUIRE(e.kinks == 0);
  CHECK(e.params < tol);
  CHECK(e.inputs < tol);
}

/// A model that starts with an embedding: every parameter compared, the ids'
/// gradient must be zero.
template <class Model>
void require_gradients_ids(std::uint64_t seed, std::size_t batch, std::uint32_t vocab, float eps, double tol) {
  const grad_errors e = gradient_check<Model>(seed, batch, eps, 1.0f, 0.0, vocab);
  INFO("worst relative error: parameters " << e.params << "; largest |d/d id| " << e.inputs);
  REQUIRE(e.checked == Model::param_count + batch * Model::input_size);
  CHECK(e.params < tol);
  CHECK(e.inputs == 0.0);
}

/// Piecewise-linear models: coordinates whose ±ε straddles a kink are skipped.
/// Kink detection uses only function values, never the analytic gradient, so
/// skipping cannot hide a backward bug; it only shrinks the sample, which must
/// stay at ≥ 75 % of all coordinates.
template <class Model>
void require_gradients_piecewise(std::uint64_t seed, std::size_t batch, float eps, double tol, float input_scale = 1.0f) {
  const grad_errors e = gradient_check<Model>(seed, batch, eps, input_scale, 2.0 * tol);
  INFO("worst relative error: parameters " << e.params << ", inputs " << e.inputs << "; " << e.kinks << " of "
                                           << e.checked << " coordinates straddle a kink");
  REQUIRE(e.checked == Model::param_count + batch * Model::input_size);
  CHECK(e.kinks * 4 <= e.checked);  // at most 25 % skipped
  CHECK(e.params < tol);
  CHECK(e.inputs < tol);
}

/// Two Gaussian blobs per class in 2-D arranged as XOR: not linearly separable.
struct xor_data {
  std::vector<float> x;
  std::vector<std::uint8_t> y;
  std::vector<float> y_float;
  explicit xor_data(std::size_t n, std::uint64_t seed) : x(2 * n), y(n), y_float(n) {
    tl::rng g(seed);
    for (std::size_t i = 0; i < n; ++i) {
      const bool a = g.uniform() < 0.5f, b = g.uniform() < 0.5f;
      x[2 * i] = (a ? 1.0f : -1.0f) + 0.25f * g.normal();
      x[2 * i + 1] = (b ? 1.0f : -1.0f) + 0.25f * g.normal();
      y[i] = static_cast<std::uint8_t>(a != b);
      y_float[i] = a != b ? 1.0f : 0.0f;
    }
  }
};

/// A separable synthetic image set: class c has a bright c-th horizontal band
/// plus noise, so a small CNN or MLP learns it within an epoch or two.
struct band_images {
  static constexpr std::size_t h = 8, w = 8, classes = 4;
  std::vector<float> x;
  std::vector<std::uint8_t> y;
  band_images(std::size_t n, std::uint64_t seed) : x(n * h * w), y(n) {
    tl::rng g(seed);
    for (std::size_t i = 0; i < n; ++i) {
      const auto c = static_cast<std::uint8_t>(g.uniform_int(classes));
      y[i] = c;
      for (std::size_t py = 0; py < h; ++py)
        for (std::size_t px = 0; px < w; ++px)
          x[i * h * w + py * w + px] = 0.3f * g.uniform() + (py / 2 == c ? 0.7f : 0.0f);
    }
  }
};

}  // namespace

// ---------------------------------------------------------------------------
TEST_CASE("sequential: shapes, sizes and offsets are compile-time constants", "[nn][shape]") {
  static_assert(lenet_300_100::size == 5);
  static_assert(lenet_300_100::param_count == 784 * 300 + 300 + 300 * 100 + 100 + 100 * 10 + 10);
  static_assert(lenet_300_100::macs == 784 * 300 + 300 * 100 + 100 * 10);
  static_assert(lenet_300_100::max_activation == 784);
  static_assert(lenet_300_100::param_offset<2> == 784 * 300 + 300);
  // arena at batch 1: the widest non-in-place layer, dense<784,300>: 784 + 300
  static_assert(lenet_300_100::arena_elements == 1084);
  static_assert(lenet_300_100::arena_bytes<tl::int8_per_channel> == 1084);
  static_assert(lenet_300_100::arena_bytes<tl::fp32> == 4 * 1084);
  static_assert(lenet_300_100::fused_into_previous<1> && lenet_300_100::fused_into_previous<3>);
  static_assert(!lenet_300_100::fused_into_previous<2>);

  // LeNet-5: 28×28×1 →conv5 pad2→ 28×28×6 →pool→ 14×14×6 →conv5→ 10×10×16 →pool→ 5×5×16 → 400
  static_assert(std::is_same_v<lenet5::layer<0>::out_shape, nn::shape<28, 28, 6>>);
  static_assert(std::is_same_v<lenet5::layer<2>::out_shape, nn::shape<14, 14, 6>>);
  static_assert(std::is_same_v<lenet5::layer<3>::out_shape, nn::shape<10, 10, 16>>);
  static_assert(std::is_same_v<lenet5::layer<6>::out_shape, nn::shape<1, 1, 400>>);
  static_assert(lenet5::param_count == (6 * 25 + 6) + (16 * 150 + 16) + (400 * 120 + 120) + (120 * 84 + 84) + (84 * 10 + 10));
  static_assert(lenet5::layer<0>::macs == 28 * 28 * 6 * 25);
  static_assert(lenet5::layer<3>::macs == 10 * 10 * 16 * 150);
  // widest step: max pool 28×28×6 → 14×14×6 needs 4704 + 1176
  static_assert(lenet5::arena_elements == 4704 + 1176);
  static_assert(lenet5::max_activation == 4704);

  // stride and padding arithmetic: ⌊(7 + 2 − 3)/2⌋ + 1 = 4
  using strided = tl::sequential<tl::input<7, 7, 3>, tl::conv2d<5, 3, 2, 1>, tl::depthwise_conv2d<3, 1, 1, 2>,
                                 tl::avg_pool2d<2, 1>>;
  static_assert(std::is_same_v<strided::layer<0>::out_shape, nn::shape<4, 4, 5>>);
  static_assert(std::is_same_v<strided::layer<1>::out_shape, nn::shape<4, 4, 10>>);
  static_assert(std::is_same_v<strided::layer<2>::out_shape, nn::shape<3, 3, 10>>);
  static_assert(strided::layer<1>::param_count == 10 * 9 + 10);

  // input<N> and a leading dense<In, …> give the same model
  static_assert(std::is_same_v<tl::sequential<tl::input<784>, tl::dense<784, 10>>::layer_list,
                               tl::sequential<tl::dense<784, 10>>::layer_list>);
  static_assert(nn::sequential_model<lenet5> && !nn::sequential_model<int>);

  // the int8 network's footprint follows from the same constants
  using q = nn::quantized_network<lenet_300_100, tl::int8_per_channel, nn::static_storage>;
  static_assert(q::arena_bytes == 1084);
  // LeNet-5 in int8: the widest step is conv<16, 5> on 14×14×6: 1176 in + 2·150 im2col + 1600 out, below
  // max pool 28×28×6 → 14×14×6 (4704 + 1176); a chain has its own graph (no residual block)
  static_assert(nn::quantized_network<lenet5, tl::int8_per_channel, nn::static_storage>::arena_bytes == 5880);
  static_assert(std::is_same_v<q::graph::layer<2>, lenet_300_100::layer<2>> && q::graph::size == lenet_300_100::size);
  static_assert(q::parameter_bytes == 266'200 + 12 * 410);
  STATIC_REQUIRE(noexcept(std::declval<q&>().forward()));
  SUCCEED();
}

TEST_CASE("gradients of every layer agree with central finite differences", "[nn][gradient]") {
  SECTION("dense") { require_gradients<tl::sequential<tl::dense<5, 4>>>(1, 3, 1e-2f, 1e-3); }
  SECTION("conv2d, stride 2, padding 1") {
    require_gradients<tl::sequential<tl::input<6, 5, 2>, tl::conv2d<3, 3, 2, 1>>>(2, 2, 1e-2f, 1e-3);
  }
  SECTION("conv2d, no padding") { require_gradients<tl::sequential<tl::input<5, 5, 3>, tl::conv2d<2, 2>>>(12, 2, 1e-2f, 1e-3); }
  SECTION("depthwise_conv2d, multiplier 2") {
    require_gradients<tl::sequential<tl::input<6, 5, 2>, tl::depthwise_conv2d<3, 1, 1, 2>>>(3, 2, 1e-2f, 1e-3);
  }
  SECTION("max_pool2d") { require_gradients_piecewise<tl::sequential<tl::input<6, 6, 2>, tl::max_pool2d<2>>>(4, 2, 1e-2f, 1e-3); }
  SECTION("avg_pool2d, overlapping") { require_gradients<tl::sequential<tl::input<6, 6, 2>, tl::avg_pool2d<3, 2>>>(4, 2, 1e-2f, 1e-3); }
  SECTION("flatten") { require_gradients<tl::sequential<tl::input<2, 3, 4>, tl::flatten, tl::dense<24, 3>>>(5, 3, 1e-2f, 1e-3); }
  SECTION("relu") { require_gradients_piecewise<tl::sequential<tl::input<7>, tl::relu>>(5, 3, 1e-2f, 1e-3); }
  SECTION("relu6") {
    // inputs ~ N(0, 5²): both the 0 and the 6 kink are exercised
    require_gradients_piecewise<tl::sequential<tl::input<9>, tl::relu6>>(6, 4, 1e-2f, 1e-3, 5.0f);
  }
  SECTION("sigmoid") { require_gradients<tl::sequential<tl::input<7>, tl::sigmoid>>(5, 3, 1e-2f, 1e-3); }
  SECTION("tanh") { require_gradients<tl::sequential<tl::input<7>, tl::tanh_act>>(5, 3, 1e-2f, 1e-3); }
  SECTION("softmax over channels of every pixel") {
    require_gradients<tl::sequential<tl::input<2, 1, 4>, tl::softmax>>(5, 3, 1e-2f, 1e-3);
  }
  SECTION("dropout (same mask in every evaluation)") {
    require_gradients<tl::sequential<tl::input<20>, tl::dropout<30>, tl::dense<20, 3>>>(5, 3, 1e-2f, 1e-3);
  }
  SECTION("a whole piecewise-linear CNN: conv, relu, max pool, flatten, dense") {
    require_gradients_piecewise<tl::sequential<tl::input<8, 8, 1>, tl::conv2d<3, 3, 1, 1>, tl::relu, tl::max_pool2d<2>,
                                               tl::flatten, tl::dense<48, 5>, tl::relu, tl::dense<5, 3>>>(7, 2, 1e-2f, 2e-3);
  }
  SECTION("a whole smooth CNN: conv, tanh, avg pool, depthwise, sigmoid, dense, softmax") {
    require_gradients<tl::sequential<tl::input<8, 8, 2>, tl::conv2d<3, 3, 1, 1>, tl::tanh_act, tl::avg_pool2d<2>,
                                     tl::depthwise_conv2d<3, 1, 1, 2>, tl::sigmoid, tl::flatten, tl::dense<96, 5>,
                                     tl::softmax>>(8, 2, 1e-2f, 2e-3);
  }
}

// ---------------------------------------------------------------------------
// nn/transformer.hpp
// ---------------------------------------------------------------------------
TEST_CASE("transformer layers: gradients agree with central finite differences", "[nn][gradient][transformer]") {
  SECTION("layer_norm") { require_gradients<tl::sequential<tl::input<1, 3, 6>, tl::layer_norm<6>>>(21, 2, 1e-2f, 1e-3); }
  SECTION("gelu") { require_gradients<tl::sequential<tl::input<9>, tl::gelu>>(22, 3, 1e-2f, 1e-3, 2.0f); }
  SECTION("multi_head_attention, 2 heads") {
    require_gradients<tl::sequential<tl::input<1, 4, 6>, tl::multi_head_attention<6, 2>>>(23, 2, 1e-2f, 1e-3);
  }
  SECTION("multi_head_attention, causal, over a 2×2 grid of tokens") {
    require_gradients<tl::sequential<tl::input<2, 2, 4>, tl::multi_head_attention<4, 2, true>>>(24, 2, 1e-2f, 1e-3);
  }
  SECTION("a pre-norm transformer block: residual attention and residual GELU MLP, then flatten and dense") {
    // Two layer norms of 4 features make this function strongly curved: the
    // central difference's truncation error (∝ ε²) measured 7e-3 at ε = 1e-2
    // and 8e-4 at ε = 3e-3, where fp32 rounding does not dominate yet.
    require_gradients<tl::sequential<tl::input<1, 3, 4>,
                                     tl::residual<tl::layer_norm<4>, tl::multi_head_attention<4, 2, true>>,
                                     tl::residual<tl::layer_norm<4>, tl::conv2d<8, 1>, tl::gelu, tl::conv2d<4, 1>>,
                                     tl::flatten, tl::dense<12, 3>>>(25, 2, 3e-3f, 2e-3);
  }
  SECTION("rms_norm") { require_gradients<tl::sequential<tl::input<1, 3, 6>, tl::rms_norm<6>>>(26, 2, 1e-2f, 1e-3); }
  SECTION("silu") { require_gradients<tl::sequential<tl::input<9>, tl::silu>>(27, 3, 1e-2f, 1e-3, 2.0f); }
  SECTION("learned_positions, then rms_norm") {
    require_gradients<tl::sequential<tl::input<1, 3, 4>, tl::learned_positions<3, 4>, tl::rms_norm<4>>>(28, 2, 1e-2f,
                                                                                                       1e-3);
  }
  SECTION("sinusoidal_positions over a 2×2 grid, then silu (no parameters)") {
    require_gradients<tl::sequential<tl::input<2, 2, 4>, tl::sinusoidal_positions<4, 4>, tl::silu>>(29, 2, 1e-2f,
                                                                                                    1e-3);
  }
  SECTION("embedding (8 ids from a vocabulary of 5: repeats scatter-add), positions, rms_norm, dense head") {
    require_gradients_ids<tl::sequential<tl::input<1, 4, 1>, tl::embedding<5, 3>, tl::learned_positions<4, 3>,
                                         tl::rms_norm<3>, tl::flatten, tl::dense<12, 2>>>(30, 2, 5, 1e-2f, 1e-3);
  }
}

TEST_CASE("transformer layers: forward passes equal hand-computed values", "[nn][transformer]") {
  SECTION("layer_norm: (x − mean)/sqrt(var + 1e-5), times the gain, plus the bias; initialize sets gain 1") {
    using model = tl::sequential<tl::input<1, 2, 4>, tl::layer_norm<4>>;
    nn::network<model> net(3);
    const auto p = net.parameters();
    for (std::size_t i = 0; i < 4; ++i) {
      CHECK(p[i] == 1.0f);
      CHECK(p[4 + i] == 0.0f);
    }
    const float gain[4] = {1.0f, 2.0f, -1.0f, 0.5f}, bias[4] = {0.0f, 1.0f, 0.5f, -2.0f};
    for (std::size_t i = 0; i < 4; ++i) {
      p[i] = gain[i];
      p[4 + i] = bias[i];
    }
    const float x[8] = {1, 2, 3, 4, 5, 5, 5, 5};  // second token: zero variance
    const float* y = net.forward(x, 1);
    const double rstd = 1.0 / std::sqrt(1.25 + 1e-5);  // mean 2.5, variance (2.25 + 0.25 + 0.25 + 2.25)/4
    for (std::size_t i = 0; i < 4; ++i) {
      CHECK(y[i] == Approx(gain[i] * (x[i] - 2.5) * rstd + bias[i]).margin(1e-6));
      CHECK(y[4 + i] == Approx(bias[i]).margin(1e-6));
    }
  }
  SECTION("gelu: x·Φ(x)") {
    using model = tl::sequential<tl::input<4>, tl::gelu>;
    nn::network<model> net(1);
    const float x[4] = {-1.0f, 0.0f, 1.0f, 2.0f};
    const float* y = net.forward(x, 1);
    const double expect[4] = {-0.15865525393145707, 0.0, 0.8413447460685429, 1.9544997361036416};  // x·Φ(x)
    for (std::size_t i = 0; i < 4; ++i) CHECK(y[i] == Approx(expect[i]).margin(1e-6));
  }
  SECTION("multi_head_attention: two tokens, identity projections, PyTorch's Q/K/V row order") {
    // in_proj_weight rows: Q = I, K = I, V = 2·I; out_proj = I with bias (0.5, −0.5).
    // Tokens e0, e1: scores QKᵀ/√2 = I/√2, so each token attends to itself with
    // p = e^{1/√2}/(1 + e^{1/√2}) and to the other with 1 − p; with the causal
    // mask token 0 sees only itself.
    const auto run = [](auto tag) {
      using model = tl::sequential<tl::input<1, 2, 2>, tl::multi_head_attention<2, 1, decltype(tag)::value>>;
      nn::network<model> net(1);
      const auto p = net.parameters();
      REQUIRE(p.size() == 4 * 4 + 4 * 2);
      for (float& v : p) v = 0.0f;
      const float w_in[12] = {1, 0, 0, 1, 1, 0, 0, 1, 2, 0, 0, 2};
      for (std::size_t i = 0; i < 12; ++i) p[i] = w_in[i];
      p[12] = 1.0f;  // out_proj.weight = I
      p[15] = 1.0f;
      p[16 + 6] = 0.5f;  // out_proj.bias after in_proj_bias
      p[16 + 7] = -0.5f;
      const float x[4] = {1, 0, 0, 1};
      const float* y = net.forward(x, 1);
      return std::vector<float>(y, y + 4);
    };
    const double e = std::exp(1.0 / std::sqrt(2.0)), pself = e / (1.0 + e);
    const auto full = run(std::false_type{});
    CHECK(full[0] == Approx(2 * pself + 0.5).margin(1e-6));
    CHECK(full[1] == Approx(2 * (1 - pself) - 0.5).margin(1e-6));
    CHECK(full[2] == Approx(2 * (1 - pself) + 0.5).margin(1e-6));
    CHECK(full[3] == Approx(2 * pself - 0.5).margin(1e-6));
    const auto causal = run(std::true_type{});
    CHECK(causal[0] == Approx(2.5).margin(1e-6));
    CHECK(causal[1] == Approx(-0.5).margin(1e-6));
    CHECK(causal[2] == Approx(full[2]).margin(1e-6));
    CHECK(causal[3] == Approx(full[3]).margin(1e-6));
  }
  SECTION("residual: x + F(x); the batch-1 inference path computes what network::forward does") {
    using block = tl::sequential<tl::input<1, 1, 3>, tl::residual<tl::gelu>>;
    nn::network<block> b(1);
    const float x[3] = {-1.0f, 1.0f, 2.0f};
    const float* y = b.forward(x, 1);
    CHECK(y[0] == Approx(-1.0 - 0.15865525393145707).margin(1e-6));
    CHECK(y[1] == Approx(1.0 + 0.8413447460685429).margin(1e-6));
    CHECK(y[2] == Approx(2.0 + 1.9544997361036416).margin(1e-6));

    // [transformer-block]
    // 4 tokens of width 8; a pre-norm block: causal self-attention with 2 heads,
    // then a GELU MLP whose position-wise linear layers are 1×1 convolutions.
    using model = tl::sequential<tl::input<1, 4, 8>,
                                 tl::residual<tl::layer_norm<8>, tl::multi_head_attention<8, 2, true>>,
                                 tl::residual<tl::layer_norm<8>, tl::conv2d<16, 1>, tl::gelu, tl::conv2d<8, 1>>,
                                 tl::flatten, tl::dense<32, 3>>;
    // [transformer-block]
    static_assert(model::param_count == 2 * (2 * 8) + (4 * 64 + 4 * 8) + (16 * 8 + 16) + (8 * 16 + 8) + 32 * 3 + 3);
    nn::network<model> net(7);
    tl::rng g(8);
    std::vector<float> in(model::input_size);
    for (float& v : in) v = g.normal();
    const float* ref = net.forward(in.data(), 1);
    const std::vector<float> expect(ref, ref + model::output_size);
    auto fast = std::make_unique<nn::inference_network<model>>(net);
    const float* got = fast->forward(in.data());
    for (std::size_t i = 0; i < model::output_size; ++i) CHECK(got[i] == Approx(expect[i]).margin(1e-5));
  }
  SECTION("rms_norm: x/sqrt(mean(x²) + 2⁻²³), times the gain; initialize sets gain 1") {
    using model = tl::sequential<tl::input<1, 2, 4>, tl::rms_norm<4>>;
    nn::network<model> net(3);
    const auto p = net.parameters();
    REQUIRE(p.size() == 4);
    for (std::size_t i = 0; i < 4; ++i) CHECK(p[i] == 1.0f);
    const float gain[4] = {1.0f, 2.0f, -1.0f, 0.5f};
    for (std::size_t i = 0; i < 4; ++i) p[i] = gain[i];
    const float x[8] = {1, 2, 3, 4, 0, 0, 0, 0};  // second token: all zero, ε keeps it finite
    const float* y = net.forward(x, 1);
    const double r = 1.0 / std::sqrt(7.5 + 1.1920928955078125e-7);  // mean of 1, 4, 9, 16
    for (std::size_t i = 0; i < 4; ++i) {
      CHECK(y[i] == Approx(gain[i] * x[i] * r).margin(1e-6));
      CHECK(y[4 + i] == 0.0f);
    }
  }
  SECTION("silu: x·σ(x)") {
    using model = tl::sequential<tl::input<4>, tl::silu>;
    nn::network<model> net(1);
    const float x[4] = {-1.0f, 0.0f, 1.0f, 2.0f};
    const float* y = net.forward(x, 1);
    const double expect[4] = {-0.2689414213699951, 0.0, 0.7310585786300049, 1.7615941559557649};
    for (std::size_t i = 0; i < 4; ++i) CHECK(y[i] == Approx(expect[i]).margin(1e-6));
  }
  SECTION("sinusoidal_positions: x + sin / cos of t / 10000^(2i/Dim)") {
    using model = tl::sequential<tl::input<1, 3, 4>, tl::sinusoidal_positions<3, 4>>;
    static_assert(model::param_count == 0);
    nn::network<model> net(1);
    std::vector<float> x(12, 1.0f);
    const float* y = net.forward(x.data(), 1);
    for (std::size_t t = 0; t < 3; ++t) {
      const double a0 = static_cast<double>(t), a1 = static_cast<double>(t) / 100.0;  // 10000^(2/4) = 100
      CHECK(y[t * 4 + 0] == Approx(1.0 + std::sin(a0)).margin(1e-6));
      CHECK(y[t * 4 + 1] == Approx(1.0 + std::cos(a0)).margin(1e-6));
      CHECK(y[t * 4 + 2] == Approx(1.0 + std::sin(a1)).margin(1e-6));
      CHECK(y[t * 4 + 3] == Approx(1.0 + std::cos(a1)).margin(1e-6));
    }
  }
  SECTION("embedding: ids pick table rows; a value that is not an id is an error, in training and inference") {
    // [embedding]
    // 3 token ids per sample, as exact integers in float, from a vocabulary of 4.
    using model = tl::sequential<tl::input<1, 3, 1>, tl::embedding<4, 2>, tl::learned_positions<3, 2>>;
    // [embedding]
    static_assert(std::is_same_v<model::layer<0>::out_shape, nn::shape<1, 3, 2>>);
    static_assert(model::param_count == 4 * 2 + 3 * 2);
    nn::network<model> net(1);
    const auto p = net.parameters();
    for (std::size_t i = 0; i < 8; ++i) p[i] = static_cast<float>(10 * (i / 2) + i % 2);  // row v = (10v, 10v + 1)
    for (std::size_t i = 0; i < 6; ++i) p[8 + i] = 0.5f * static_cast<float>(i);         // position table
    const float ids[3] = {2, 0, 2};
    const float* y = net.forward(ids, 1);
    const float expect[6] = {20.0f, 21.5f, 1.0f, 2.5f, 22.0f, 23.5f};
    for (std::size_t i = 0; i < 6; ++i) CHECK(y[i] == expect[i]);
    // backward: the repeated id 2 receives the sum of its two rows of dy
    const float dy[6] = {1, 2, 3, 4, 5, 6};
    net.zero_gradients();
    net.backward(dy, nullptr);
    const auto gr = net.gradients();
    const float expect_grad[8] = {3, 4, 0, 0, 1 + 5, 2 + 6, 0, 0};
    for (std::size_t i = 0; i < 8; ++i) CHECK(gr[i] == expect_grad[i]);
    for (std::size_t i = 0; i < 6; ++i) CHECK(gr[8 + i] == dy[i]);

    nn::inference_network<model> fast(net);
    static_assert(!noexcept(fast.forward(ids)));
    static_assert(noexcept(std::declval<nn::inference_network<lenet_300_100>&>().forward(nullptr)));
    const float* yf = fast.forward(ids);
    for (std::size_t i = 0; i < 6; ++i) CHECK(yf[i] == expect[i]);
#if TINYLARGE_HAS_EXCEPTIONS  // without exceptions a bad id calls the fatal-error hook (traps)
    for (const float bad : {1.5f, -1.0f, 4.0f, 1e9f, std::nanf("")}) {
      const float in[3] = {0, bad, 1};
      INFO("id " << bad);
      CHECK_THROWS_WITH(net.forward(in, 1), Catch::Contains("embedding<Vocab, Dim>: an input value is not a token id"));
      CHECK_THROWS_AS(fast.forward(in), tl::invalid_argument);
    }
#endif
  }
}

TEST_CASE("kv_cache: incremental causal decoding equals the full-sequence forward pass", "[nn][transformer]") {
  constexpr std::size_t T = 7, D = 8;
  using model = tl::sequential<tl::input<1, T, D>, tl::multi_head_attention<D, 2, true>>;
  nn::network<model> net(11);
  tl::rng g(12);
  for (float& v : net.parameters()) v += 0.1f * g.normal();  // non-zero biases
  std::vector<float> x(T * D);
  for (float& v : x) v = g.normal();
  const float* full = net.forward(x.data(), 1);
  const std::vector<float> expect(full, full + T * D);

  // [kv-cache]
  nn::kv_cache<model::layer<0>> cache;  // capacity: the layer's T positions, K and V held in the object
  const float* attention_params = net.parameters().data() + model::param_offset<0>;
  float y[D];
  // [kv-cache]
  static_assert(decltype(cache)::capacity == T);
  static_assert(sizeof(cache) >= T * 2 * D * sizeof(float));  // the cache holds K and V itself
  double worst = 0.0;
  for (int round = 0; round < 2; ++round) {  // the second round after clear()
    cache.clear();
    for (std::size_t t = 0; t < T; ++t) {
      cache.append(attention_params, x.data() + t * D, y);  // position t's row in, its output row out
      REQUIRE(cache.size() == t + 1);
      for (std::size_t i = 0; i < D; ++i)
        worst = std::max(worst, static_cast<double>(std::abs(y[i] - expect[t * D + i])) /
                                    std::max(1.0, static_cast<double>(std::abs(expect[t * D + i]))));
    }
  }
  INFO("worst difference from the full forward pass: " << worst);
  CHECK(worst <= 1e-6);
#if TINYLARGE_HAS_EXCEPTIONS
  // A cache that is full refuses one more position.
  try {
    cache.append(net.parameters().data(), x.data(), y);
    FAIL("append on a full cache did not raise");
  } catch (const tl::error& e) {
    CHECK(e.code() == tl::errc::capacity_exceeded);
  }
#endif
  // The causal prefix: the first 3 outputs do not depend on later positions.
  std::vector<float> x2 = x;
  for (std::size_t i = 3 * D; i < T * D; ++i) x2[i] = 5.0f * g.normal();
  cache.clear();
  for (std::size_t t = 0; t < 3; ++t) {
    cache.append(net.parameters().data(), x2.data() + t * D, y);
    for (std::size_t i = 0; i < D; ++i) CHECK(y[i] == Approx(expect[t * D + i]).margin(1e-6));
  }
}

TEST_CASE("incremental_decoder: whole-model decoding equals the full causal forward pass", "[nn][transformer]") {
  constexpr std::size_t T = 9, D = 8, V = 11;
  // Every kind of layer the decoder takes: embedding, both position tables, pre-norm blocks with causal
  // attention (2 and 4 heads), an MLP of 1×1 convolutions with dropout (the identity at inference), a nested
  // residual block, and a position-wise head of V logits.
  using lm = tl::sequential<tl::input<1, T, 1>, tl::embedding<V, D>, tl::learned_positions<T, D>,
                            tl::sinusoidal_positions<T, D>,
                            tl::residual<tl::layer_norm<D>, tl::multi_head_attention<D, 2, true>>,
                            tl::residual<tl::rms_norm<D>, tl::conv2d<2 * D, 1>, tl::gelu, tl::dropout<10>,
                                         tl::conv2d<D, 1>>,
                            tl::residual<tl::layer_norm<D>, tl::multi_head_attention<D, 4, true>,
                                         tl::residual<tl::silu>>,
                            tl::layer_norm<D>, tl::conv2d<V, 1>>;
  using decoder = nn::incremental_decoder<lm>;
  static_assert(decoder::capacity == T && decoder::input_width == 1 && decoder::output_width == V);
  nn::network<lm> net(21);
  tl::rng g(22);
  for (float& v : net.parameters()) v += 0.1f * g.normal();  // non-zero biases, gains other than 1
  std::vector<float> ids(T);
  for (float& v : ids) v = static_cast<float>(g.uniform_int(V));
  const float* full = net.forward(ids.data(), 1);
  const std::vector<float> expect(full, full + T * V);

  auto dec = std::make_unique<decoder>(net.parameters());
  std::vector<float> first(T * V);
  double worst = 0.0;
  for (int round = 0; round < 2; ++round) {  // the second round after clear(): the same bits
    dec->clear();
    CHECK(dec->output().empty());
    for (std::size_t t = 0; t < T; ++t) {
      const std::span<const float, V> logits = dec->append(static_cast<std::size_t>(ids[t]));
      REQUIRE(dec->size() == t + 1);
      REQUIRE(dec->output().data() == logits.data());
      for (std::size_t j = 0; j < V; ++j) {
        const float e = expect[t * V + j];
        worst = std::max(worst, static_cast<double>(std::abs(logits[j] - e)) / std::max(1.0, double{std::abs(e)}));
        if (round == 0) first[t * V + j] = logits[j];
        else CHECK(logits[j] == first[t * V + j]);
      }
    }
  }
  INFO("worst difference of the incremental logits from the full forward pass: " << worst);
  CHECK(worst <= 1e-5);
  // append_row takes the id as a float row, as the network's input holds it.
  dec->clear();
  const float id0 = ids[0];
  const auto row = dec->append_row(std::span<const float>(&id0, 1));
  for (std::size_t j = 0; j < V; ++j) CHECK(row[j] == first[j]);
#if TINYLARGE_HAS_EXCEPTIONS
  const auto code_of = [](auto&& f) {
    try {
      f();
    } catch (const tl::error& e) {
      return e.code();
    }
    return tl::errc::ok;
  };
  CHECK(code_of([&] { (void)dec->append(V); }) == tl::errc::invalid_argument);  // id = Vocab
  CHECK_THROWS_WITH(dec->append(V), Catch::Contains("token id is out of range"));
  const float two[2] = {0, 1};
  CHECK(code_of([&] { (void)dec->append_row(std::span<const float>(two, 2)); }) == tl::errc::shape_mismatch);
  const float bad = 0.5f;  // not an id: the embedding's own check
  CHECK(code_of([&] { (void)dec->append_row(std::span<const float>(&bad, 1)); }) == tl::errc::invalid_argument);
  CHECK(dec->size() == 1);  // the refused positions changed nothing
  for (std::size_t t = 1; t < T; ++t) (void)dec->append(static_cast<std::size_t>(ids[t]));
  CHECK(code_of([&] { (void)dec->append(0); }) == tl::errc::capacity_exceeded);
  CHECK_THROWS_WITH(dec->append(0), Catch::Contains("the sequence is full"));
  CHECK(dec->size() == T);
  const std::vector<float> short_params(lm::param_count - 1);
  CHECK(code_of([&] { decoder d(short_params); }) == tl::errc::shape_mismatch);
#endif
}

TEST_CASE("fit: one label per position trains a causal sequence model; the decoder continues the pattern",
          "[nn][transformer]") {
  // Sequences of the cycle 0 1 2 3 0 1 … from a random start: the label of position t is the token at t + 1.
  constexpr std::size_t T = 8, V = 4, D = 16, n = 192;
  using lm = tl::sequential<tl::input<1, T, 1>, tl::embedding<V, D>, tl::learned_positions<T, D>,
                            tl::residual<tl::layer_norm<D>, tl::multi_head_attention<D, 2, true>>,
                            tl::residual<tl::layer_norm<D>, tl::conv2d<2 * D, 1>, tl::gelu, tl::conv2d<D, 1>>,
                            tl::layer_norm<D>, tl::conv2d<V, 1>>;
  tl::rng g(5);
  std::vector<float> x(n * T);
  std::vector<std::uint8_t> y(n * T);
  for (std::size_t i = 0; i < n; ++i) {
    const std::size_t start = g.uniform_int(V);
    for (std::size_t t = 0; t < T; ++t) {
      x[i * T + t] = static_cast<float>((start + t) % V);
      y[i * T + t] = static_cast<std::uint8_t>((start + t + 1) % V);
    }
  }
  // [sequence-fit]
  // x: n samples of T token ids; y: n × T labels, the next token at each position.
  const nn::labelled_view<std::uint8_t> data{x.data(), y.data(), n, T, /*target_size=*/T};
  nn::network<lm> net(6);
  // [sequence-fit]
  // evaluate: the mean over the n·T positions of the cross-entropy of V logits.
  const float* out = net.forward(x.data(), n);
  double manual = 0.0;
  for (std::size_t r = 0; r < n * T; ++r) manual += nn::softmax_cross_entropy::evaluate(out + r * V, &y[r], 1, V, nullptr);
  const nn::evaluation before = nn::evaluate(net, nn::softmax_cross_entropy{}, data, 50);
  CHECK(before.loss == Approx(manual / (n * T)).epsilon(1e-9));
  const auto hist = nn::fit(net, nn::adam{.learning_rate = 1e-2f}, nn::softmax_cross_entropy{}, data,
                            {.epochs = 15, .batch_size = 16}, &data);
  INFO("loss before " << before.loss << ", after " << hist.back().val_loss);
  CHECK(hist.back().val_loss < 0.05 * before.loss);
  CHECK(hist.back().val_accuracy == 1.0);
#if TINYLARGE_HAS_EXCEPTIONS
  // A target count that does not divide the output (T·V = 32 logits, 3 labels) is refused.
  const nn::labelled_view<std::uint8_t> wrong{x.data(), y.data(), n, T, 3};
  CHECK_THROWS_AS(nn::evaluate(net, nn::softmax_cross_entropy{}, wrong), tl::shape_error);
  CHECK_THROWS_AS(nn::fit(net, nn::adam{}, nn::softmax_cross_entropy{}, wrong), tl::shape_error);
#endif
  // Greedy decoding from token 2 continues the cycle.
  std::size_t token = 2;
  // [decoder]
  auto dec = std::make_unique<nn::incremental_decoder<lm>>(net.parameters());  // K, V of every attention layer
  for (std::size_t t = 0; t < T; ++t) {
    const std::span<const float, V> logits = dec->append(token);  // position t in, the next token's logits out
    // [decoder]
    const std::size_t next = static_cast<std::size_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
    CHECK(next == (token + 1) % V);
    token = next;
  }
}

TEST_CASE("losses: values and gradients", "[nn][loss]") {
  tl::rng g(11);
  constexpr std::size_t b = 3, n = 5;
  std::vector<float> z(b * n), grad(b * n), t(b * n);
  for (float& v : z) v = 3.0f * g.normal();
  for (float& v : t) v = g.normal();
  const std::uint8_t labels[b] = {0, 4, 2};

  SECTION("cross-entropy equals −log softmax of the label, gradient by finite differences") {
    const double l = nn::softmax_cross_entropy::evaluate(z.data(), labels, b, n, grad.data());
    double expect = 0.0;
    for (std::size_t i = 0; i < b; ++i) {
      double s = 0.0;
      for (std::size_t j = 0; j < n; ++j) s += std::exp(static_cast<double>(z[i * n + j]));
      expect += -std::log(std::exp(static_cast<double>(z[i * n + labels[i]])) / s);
    }
    CHECK(l == Approx(expect / b).epsilon(1e-6));
    for (std::size_t k = 0; k < z.size(); ++k) {
      std::vector<float> zp = z, zm = z;
      zp[k] += 1e-2f;
      zm[k] -= 1e-2f;
      const double num = (nn::softmax_cross_entropy::evaluate(zp.data(), labels, b, n, nullptr) -
                          nn::softmax_cross_entropy::evaluate(zm.data(), labels, b, n, nullptr)) / 2e-2;
      CHECK(grad[k] == Approx(num).margin(1e-4));
    }
  }
  SECTION("cross-entropy is stable for huge logits") {
    std::vector<float> big = {1000.0f, -1000.0f, 0.0f};
    const std::uint8_t lab[1] = {0};
    const double l = nn::softmax_cross_entropy::evaluate(big.data(), lab, 1, 3, grad.data());
    CHECK(std::isfinite(l));
    CHECK(l == Approx(0.0).margin(1e-12));
  }
  SECTION("mse") {
    const double l = nn::mse::evaluate(z.data(), t.data(), b, n, grad.data());
    double expect = 0.0;
    for (std::size_t k = 0; k < z.size(); ++k) expect += std::pow(static_cast<double>(z[k] - t[k]), 2.0);
    CHECK(l == Approx(expect / (b * n)).epsilon(1e-6));
    for (std::size_t k = 0; k < z.size(); ++k) CHECK(grad[k] == Approx(2.0 * (z[k] - t[k]) / (b * n)).epsilon(1e-5));
  }
}

TEST_CASE("optimizers follow their update rules", "[nn][optimizer]") {
  const float g0[3] = {0.5f, -1.0f, 2.0f};
  SECTION("plain SGD with weight decay: w ← w − η(g + λw)") {
    float w[3] = {1.0f, 2.0f, -3.0f};
    nn::sgd::state<float> s(nn::sgd{.learning_rate = 0.1f, .weight_decay = 0.01f}, 3);
    s.step(w, g0);
    CHECK(w[0] == Approx(1.0 - 0.1 * (0.5 + 0.01 * 1.0)));
    CHECK(w[2] == Approx(-3.0 - 0.1 * (2.0 - 0.03)));
  }
  SECTION("heavy-ball and Nesterov momentum over two steps") {
    float wh[3] = {0, 0, 0}, wn[3] = {0, 0, 0};
    nn::sgd::state<float> h(nn::sgd{.learning_rate = 0.1f, .momentum = 0.9f}, 3);
    nn::sgd::state<float> n(nn::sgd{.learning_rate = 0.1f, .momentum = 0.9f, .nesterov = true}, 3);
    h.step(wh, g0);
    h.step(wh, g0);
    n.step(wn, g0);
    n.step(wn, g0);
    // heavy ball: v1 = g, v2 = 1.9g → w = −0.1·2.9g; Nesterov: steps g + 0.9v → −0.1·(1.9g + 2.71g)
    CHECK(wh[1] == Approx(0.1 * 2.9));
    CHECK(wn[1] == Approx(0.1 * (1.9 + 2.71)));
  }
  SECTION("Adam: the first step has magnitude η in every coordinate") {
    float w[3] = {0, 0, 0};
    nn::adam::state<float> s(nn::adam{.learning_rate = 0.01f}, 3);
    s.step(w, g0);
    for (int i = 0; i < 3; ++i) CHECK(std::abs(w[i]) == Approx(0.01).epsilon(1e-4));
    CHECK(w[1] > 0.0f);  // against the gradient's sign
  }
}

TEST_CASE("initializers have the variance they promise", "[nn][init]") {
  tl::rng g(5);
  double s2 = 0.0, u2 = 0.0;
  constexpr int n = 200000;
  for (int i = 0; i < n; ++i) {
    const double a = nn::he_normal::sample(g, 50, 10), b = nn::glorot_uniform::sample(g, 50, 10);
    s2 += a * a;
    u2 += b * b;
  }
  CHECK(s2 / n == Approx(2.0 / 50).epsilon(0.02));
  CHECK(u2 / n == Approx(2.0 / 60).epsilon(0.02));  // U(−a, a): a²/3 = 2/(fan_in + fan_out)
}

TEST_CASE("a small network learns XOR (cross-entropy and MSE)", "[nn][train]") {
  const xor_data d(512, 21);
  SECTION("tanh hidden layer, softmax cross-entropy, SGD with momentum") {
    using model = tl::sequential<tl::dense<2, 16>, tl::tanh_act, tl::dense<16, 2>>;
    nn::network<model> net;
    net.initialize<nn::glorot_uniform>(3);
    const nn::labelled_view<std::uint8_t> data{d.x.data(), d.y.data(), 512, 2};
    const double before = nn::evaluate(net, nn::softmax_cross_entropy{}, data).loss;
    const auto hist = nn::fit(net, nn::sgd{.learning_rate = 0.1f, .momentum = 0.9f}, nn::softmax_cross_entropy{}, data,
                              {.epochs = 30, .batch_size = 16});
    REQUIRE(hist.size() == 30);
    const auto e = nn::evaluate(net, nn::softmax_cross_entropy{}, data);
    CHECK(e.accuracy > 0.98);
    CHECK(e.loss < 0.2 * before);
  }
  SECTION("relu hidden layer, sigmoid output, MSE, Adam") {
    using model = tl::sequential<tl::dense<2, 16>, tl::relu, tl::dense<16, 1>, tl::sigmoid>;
    nn::network<model> net(4);
    const nn::labelled_view<float> data{d.x.data(), d.y_float.data(), 512, 2, 1};
    nn::fit(net, nn::adam{.learning_rate = 0.02f}, nn::mse{}, data, {.epochs = 40, .batch_size = 32});
    CHECK(nn::evaluate(net, nn::mse{}, data).accuracy > 0.98);
  }
}

TEST_CASE("training is reproducible bit for bit from the seed", "[nn][train][reproducibility]") {
  using model = tl::sequential<tl::input<8, 8, 1>, tl::conv2d<4, 3, 1, 1>, tl::relu, tl::max_pool2d<2>, tl::flatten,
                               tl::dropout<20>, tl::dense<64, 4>>;
  const band_images d(256, 8);
  const nn::labelled_view<std::uint8_t> data{d.x.data(), d.y.data(), 256, 64};
  auto train = [&](std::uint64_t seed) {
    auto net = std::make_unique<nn::network<model>>(seed);
    nn::fit(*net, nn::sgd{.learning_rate = 0.05f, .momentum = 0.9f, .nesterov = true}, nn::softmax_cross_entropy{}, data,
            {.epochs = 2, .batch_size = 32, .seed = seed});
    return std::vector<float>(net->parameters().begin(), net->parameters().end());
  };
  const auto a = train(42), b = train(42), c = train(43);
  REQUIRE(a.size() == model::param_count);
  CHECK(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
  CHECK(std::memcmp(a.data(), c.data(), a.size() * sizeof(float)) != 0);
}

// The fused SGD step (network::backward_sgd, issue 24): backward and the plain
// SGD update in one pass must give the bits of zero_gradients + backward +
// the optimizer's step, on dense layers (the update in the weight-gradient
// GEMM's epilogue) and on layers without a fused form (conv2d: gradient block
// zeroed, backward, step), including the input gradient; batches of 50 and
// 30 (micro-tile and k-block tails) and one of 300 (k beyond one k block).
// fit takes the fused path for plain SGD and the unfused one with momentum.
TEST_CASE("fused SGD step: backward_sgd equals zero_gradients + backward + sgd bit for bit", "[nn][train][sgd]") {
  auto same = [](std::span<const float> a, std::span<const float> b) {
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
  };
  auto check = [&]<class Model>(std::size_t features, std::uint64_t seed) {
    nn::network<Model> fused(seed), plain(seed);
    nn::trainable_state<nn::sgd, Model> state(nn::sgd{.learning_rate = 0.05f});
    float lr = 0.0f;
    REQUIRE(nn::optimizer_update<decltype(state)>{state}.plain_sgd(lr));
    CHECK(lr == 0.05f);
    tl::rng g(seed);
    for (const std::size_t batch : {std::size_t{50}, std::size_t{30}, std::size_t{300}}) {
      std::vector<float> x(batch * features), dy(batch * Model::output_size), dx1(x.size()), dx2(x.size());
      for (float& v : x) v = g.uniform() < 0.5f ? 0.0f : g.uniform();
      for (float& v : dy) v = g.uniform() - 0.5f;
      fused.forward(x.data(), batch, true);
      REQUIRE(fused.backward_sgd(dy.data(), lr, dx1.data()));
      plain.forward(x.data(), batch, true);
      plain.zero_gradients();
      plain.backward(dy.data(), dx2.data());
      state.step(plain.parameters().data(), plain.gradients().data());
      INFO("batch " << batch);
      CHECK(same(fused.parameters(), plain.parameters()));
      CHECK(same(dx1, dx2));
    }
  };
  check.template operator()<lenet_300_100>(784, 5);
  using cnn = tl::sequential<tl::input<8, 8, 1>, tl::conv2d<4, 3, 1, 1>, tl::relu, tl::max_pool2d<2>, tl::flatten,
                             tl::dense<64, 4>>;
  check.template operator()<cnn>(64, 6);

  // fit: plain SGD (fused) and the same steps unfused (a hook that adjusts no gradient still turns fusion off).
  const band_images d(200, 9);
  const nn::labelled_view<std::uint8_t> data{d.x.data(), d.y.data(), 200, 64};
  nn::network<cnn> a(3), b(3);
  nn::fit(a, nn::sgd{.learning_rate = 0.05f}, nn::softmax_cross_entropy{}, data, {.epochs = 2, .batch_size = 32});
  {
    nn::trainable_state<nn::sgd, cnn> st(nn::sgd{.learning_rate = 0.05f});
    struct identity_hook {
      void adjust_gradients(nn::network<cnn>&) {}
    };
    tinylarge::rng shuffler(1, 0x5e9017ULL);
    std::vector<std::uint32_t> order(200);
    std::iota(order.begin(), order.end(), 0u);
    nn::batch_buffers<std::uint8_t> buf;
    nn::epoch_totals totals;
    for (int e = 0; e < 2; ++e) {  // fit's order of shuffles and batches
      shuffler.shuffle(order.data(), order.size());
      nn::train_epoch(b, data, std::span<const std::uint32_t>(order), 32, buf, totals,
                      [](const float* out, const std::uint8_t* y, std::span<const std::uint32_t>, std::size_t rows,
                         float* grad) { return nn::softmax_cross_entropy::evaluate(out, y, rows, 4, grad); },
                      nn::optimizer_update<decltype(st)>{st}, identity_hook{});
    }
  }
  CHECK(same(a.parameters(), b.parameters()));
  // With momentum there is no fused step.
  nn::trainable_state<nn::sgd, cnn> momentum(nn::sgd{.learning_rate = 0.05f, .momentum = 0.9f});
  float lr = 0.0f;
  CHECK_FALSE(nn::optimizer_update<decltype(momentum)>{momentum}.plain_sgd(lr));
}

// Zero skipping (kernels::zero_skip): the SIMD fp32 back ends skip the exact
// zeros of a sparse input in the dense forward pass and the weight gradient.
// That must give the same bits as the packed GEMM, so training LeNet-300-100
// with the skipping path and with it disabled must end with identical
// parameters. The inputs are ~60 % zeros (as Fashion-MNIST), with all-zero
// rows, −0 entries and a few negative values; batch 50 and a last batch of 30
// are not multiples of the micro-tile (14 or 5 rows) or of the k blocks.
// 130 samples: two full batches and the short one per epoch (230 samples
// covered nothing more).
TEST_CASE("zero skipping trains LeNet-300-100 to bit-identical parameters", "[nn][train][zero_skip]") {
  constexpr std::size_t count = 130;
  std::vector<float> x(count * 784);
  std::vector<std::uint8_t> y(count);
  tl::rng g(2026);
  for (std::size_t i = 0; i < count; ++i) {
    y[i] = static_cast<std::uint8_t>(g.uniform() * 10.0f) % 10;
    if (i % 17 == 3) continue;  // blank image
    for (std::size_t p = 0; p < 784; ++p) {
      const float u = g.uniform();
      float v = u < 0.6f ? 0.0f : (u - 0.6f) * 2.5f;
      if (u < 0.02f) v = -0.0f;
      if (u > 0.995f) v = -v;
      x[i * 784 + p] = v;
    }
  }
  std::size_t zeros = 0;
  for (float v : x) zeros += v == 0.0f ? 1 : 0;
  REQUIRE(zeros * 2 >= x.size());
  const nn::labelled_view<std::uint8_t> data{x.data(), y.data(), count, 784};
  auto train = [&](tl::kernels::zero_skip mode) {
    const tl::kernels::zero_skip saved = tl::kernels::zero_skip_mode;
    tl::kernels::zero_skip_mode = mode;
    auto net = std::make_unique<nn::network<lenet_300_100>>(7);
    nn::fit(*net, nn::sgd{.learning_rate = 0.05f}, nn::softmax_cross_entropy{}, data,
            {.epochs = 2, .batch_size = 50, .seed = 3});
    tl::kernels::zero_skip_mode = saved;
    return std::vector<float>(net->parameters().begin(), net->parameters().end());
  };
  const auto dense = train(tl::kernels::zero_skip::never);
  const auto skipping = train(tl::kernels::zero_skip::always);
  const auto automatic = train(tl::kernels::zero_skip::automatic);
  REQUIRE(dense.size() == lenet_300_100::param_count);
  CHECK(std::memcmp(dense.data(), skipping.data(), dense.size() * sizeof(float)) == 0);
  CHECK(std::memcmp(dense.data(), automatic.data(), dense.size() * sizeof(float)) == 0);
  std::size_t differ = 0;
  for (std::size_t i = 0; i < dense.size(); ++i) differ += std::memcmp(&dense[i], &skipping[i], sizeof(float)) != 0;
  CHECK(differ == 0);
}

// The layer-level products on edge cases: −0 in the bias and in the gradient
// accumulator (where only the sign of a zero term could tell the paths
// apart), exact zeros and negative weights, all-zero rows and columns,
// several k blocks (k = 600 > 256) and a batch that exceeds the packing
// block; and a check that the skipping path is really the one taken.
TEST_CASE("zero skipping: dense forward and weight gradient are bit-identical", "[nn][zero_skip]") {
  namespace k = tl::kernels;
  constexpr std::size_t m = 150, n = 37, kk = 600;
  tl::rng g(11);
  std::vector<float> x(m * kk), w(n * kk), bias(n), dy(m * n);
  for (std::size_t i = 0; i < m; ++i)
    for (std::size_t p = 0; p < kk; ++p) {
      const float u = g.uniform();
      x[i * kk + p] = (i % 9 == 4 || p % 50 == 7) ? 0.0f : u < 0.55f ? (u < 0.1f ? -0.0f : 0.0f) : u - 0.7f;
      // Columns whose only nonzeros are the smallest subnormal in the
      // otherwise blank rows: those products round to ±0, so a tile can be
      // −0 with the zeros skipped and +0 without them.
      if (p % 50 == 21) x[i * kk + p] = i % 9 == 4 ? 0x1p-149f : 0.0f;
    }
  for (std::size_t j = 0; j < n * kk; ++j) w[j] = g.uniform() < 0.3f ? (g.uniform() < 0.5f ? 0.0f : -0.0f) : g.uniform() - 0.5f;
  for (std::size_t j = 0; j < n; ++j) bias[j] = j % 3 == 0 ? -0.0f : j % 3 == 1 ? 0.0f : g.uniform();
  for (float& v : dy) v = g.uniform() - 0.5f;  // |dy| < 0.5: dy·2⁻¹⁴⁹ rounds to ±0
  const k::zero_skip saved = k::zero_skip_mode;
  // One back end: never vs always skipping, bit for bit.
  auto check = [&](auto tag) {
    using tag_t = decltype(tag);
    INFO("back end " << tag_t::name());
    // dw: accumulated into (beta 1, over −0 / +0 / 0.25); dwz: written (beta 0, over NaN, not read).
    auto run = [&](k::zero_skip mode, std::vector<float>& out, std::vector<float>& dw, std::vector<float>& dwz) {
      k::zero_skip_mode = mode;
      out.assign(m * n, 1.0f);
      k::dense_f32(tag, m, n, kk, x.data(), w.data(), bias.data(), out.data());
      dw.assign(n * kk, 0.0f);
      for (std::size_t j = 0; j < dw.size(); j += 3) dw[j] = -0.0f;
      for (std::size_t j = 1; j < dw.size(); j += 7) dw[j] = 0.25f;
      k::gemm_f32(tag, k::transpose::yes, k::transpose::no, n, kk, m, 1.0f, dy.data(), n, x.data(), kk, 1.0f,
                  dw.data(), kk);
      dwz.assign(n * kk, std::numeric_limits<float>::quiet_NaN());
      k::gemm_f32(tag, k::transpose::yes, k::transpose::no, n, kk, m, 1.0f, dy.data(), n, x.data(), kk, 0.0f,
                  dwz.data(), kk);
      // beta 0 gives the bits of beta 1 over +0 (what nn::network relies on after zero_gradients)
      std::vector<float> dwp(n * kk, 0.0f);
      k::gemm_f32(tag, k::transpose::yes, k::transpose::no, n, kk, m, 1.0f, dy.data(), n, x.data(), kk, 1.0f,
                  dwp.data(), kk);
      CHECK(std::memcmp(dwp.data(), dwz.data(), 4 * dwp.size()) == 0);
      k::zero_skip_mode = saved;
    };
    std::vector<float> y0, dw0, dwz0, y1, dw1, dwz1;
    run(k::zero_skip::never, y0, dw0, dwz0);
    run(k::zero_skip::always, y1, dw1, dwz1);
    std::size_t y_differ = 0, dw_differ = 0, dwz_differ = 0, dwz_nan = 0;
    for (std::size_t e = 0; e < y0.size(); ++e) y_differ += std::memcmp(&y0[e], &y1[e], sizeof(float)) != 0;
    for (std::size_t e = 0; e < dw0.size(); ++e) dw_differ += std::memcmp(&dw0[e], &dw1[e], sizeof(float)) != 0;
    for (std::size_t e = 0; e < dwz0.size(); ++e) {
      dwz_differ += std::memcmp(&dwz0[e], &dwz1[e], sizeof(float)) != 0;
      dwz_nan += std::isnan(dwz0[e]) || std::isnan(dwz1[e]) ? 1 : 0;
    }
    CHECK(y_differ == 0);
    CHECK(dw_differ == 0);
    CHECK(dwz_differ == 0);
    CHECK(dwz_nan == 0);
    std::size_t sign_cases = 0;  // −0 + (±0): where only the sign of a zero tile decides
    for (std::size_t j = 0; j < dw0.size(); j += 3) sign_cases += dw0[j] == 0.0f ? 1 : 0;
    for (std::size_t i = 0; i < m; ++i)
      for (std::size_t j = 0; j < n; j += 3) sign_cases += y0[i * n + j] == 0.0f ? 1 : 0;
    CHECK(sign_cases > 0);
#if TINYLARGE_USE_XSIMD
    // Path check: an infinite weight meeting only zero inputs gives NaN (0·∞)
    // in the GEMM and is skipped by the zero-skipping kernels.
    auto w_inf = w;
    w_inf[5 * kk + 7] = INFINITY;  // x[i][7] = 0 for every i
    std::vector<float> ya(m * n), yb(m * n);
    k::zero_skip_mode = k::zero_skip::never;
    k::dense_f32(tag, m, n, kk, x.data(), w_inf.data(), bias.data(), ya.data());
    k::zero_skip_mode = k::zero_skip::always;
    k::dense_f32(tag, m, n, kk, x.data(), w_inf.data(), bias.data(), yb.data());
    k::zero_skip_mode = saved;
    CHECK(std::isnan(ya[5]));
    CHECK(std::isfinite(yb[5]));
#endif
  };
  check(k::default_backend{});
#if TINYLARGE_USE_XSIMD
  // Every SIMD back end the build supports: the fp32 kernels are one source
  // over xsimd, but the vector operations (and so the roundings) differ per
  // architecture, and each must agree with its own zero-skipping kernels.
  auto each = [&](auto tag) {
    if constexpr (decltype(tag)::supported()) check(tag);
  };
  each(tl::arch::sse2{});
  each(tl::arch::dispatch{});
  each(tl::arch::avx2{});
  each(tl::arch::avx512{});
  each(tl::arch::avx512_vnni{});
  each(tl::arch::avx512_bf16{});
  each(tl::arch::neon{});
  each(tl::arch::neon_dotprod{});
#endif
}

TEST_CASE("callbacks: early stopping stops and restores the best parameters", "[nn][train]") {
  const xor_data d(64, 2);
  using model = tl::sequential<tl::dense<2, 4>, tl::relu, tl::dense<4, 2>>;
  nn::network<model> net(1);
  const nn::labelled_view<std::uint8_t> data{d.x.data(), d.y.data(), 64, 2};
  // learning rate 0: the loss never improves after the first epoch
  nn::early_stopping stop{.patience = 2};
  const auto hist = nn::fit(net, nn::sgd{.learning_rate = 0.0f}, nn::softmax_cross_entropy{}, data, {.epochs = 10}, &data, stop);
  CHECK(hist.size() == 3);
  CHECK(stop.best_epoch == 1);
  CHECK(hist[0].samples_per_second > 0.0);
  CHECK(hist[0].val_accuracy == Approx(nn::evaluate(net, nn::softmax_cross_entropy{}, data).accuracy));
}

TEST_CASE("fit: warm-up, cosine and step-decay schedules; on_epoch_begin runs before every epoch", "[nn][train]") {
  // The schedule itself.
  const nn::fit_options cos{.epochs = 6, .warmup_epochs = 2, .cosine = true};
  const double pi = 3.14159265358979323846;
  CHECK(nn::scheduled_learning_rate(0.3f, cos, 1) == Approx(0.1));
  CHECK(nn::scheduled_learning_rate(0.3f, cos, 2) == Approx(0.2));
  CHECK(nn::scheduled_learning_rate(0.3f, cos, 3) == Approx(0.3));
  CHECK(nn::scheduled_learning_rate(0.3f, cos, 4) == Approx(0.15 * (1 + std::cos(pi / 4))));
  CHECK(nn::scheduled_learning_rate(0.3f, cos, 6) == Approx(0.15 * (1 + std::cos(3 * pi / 4))));
  const nn::fit_options step{.epochs = 4, .lr_decay = 0.5f};
  CHECK(nn::scheduled_learning_rate(0.8f, step, 1) == 0.8f);
  CHECK(nn::scheduled_learning_rate(0.8f, step, 3) == 0.2f);

  // fit reports the rate each epoch ran at and calls on_epoch_begin(e) before epoch e.
  const xor_data d(64, 2);
  using model = tl::sequential<tl::dense<2, 4>, tl::relu, tl::dense<4, 2>>;
  nn::network<model> net(1);
  std::vector<float> x = d.x;
  const nn::labelled_view<std::uint8_t> data{x.data(), d.y.data(), 64, 2};
  struct recorder {
    std::vector<std::size_t> begun;
    void on_epoch_begin(std::size_t e, nn::network<model>&) { begun.push_back(e); }
    bool on_epoch_end(const nn::epoch_report&, nn::network<model>&) { return true; }
  } rec;
  const auto hist = nn::fit(net, nn::sgd{.learning_rate = 0.3f}, nn::softmax_cross_entropy{}, data, cos, nullptr, rec);
  REQUIRE(hist.size() == 6);
  CHECK(rec.begun == std::vector<std::size_t>{1, 2, 3, 4, 5, 6});
  for (std::size_t e = 1; e <= 6; ++e) CHECK(hist[e - 1].learning_rate == nn::scheduled_learning_rate(0.3f, cos, e));
#if TINYLARGE_HAS_EXCEPTIONS
  // The rows the callback rewrites are the ones trained on: a NaN written before epoch 3 stops epoch 3
  // (a linear model, so that no relu turns the NaN into 0).
  using linear = tl::sequential<tl::dense<2, 2>>;
  nn::network<linear> lin(1);
  struct poisoner {
    std::vector<std::size_t> begun;
    std::vector<float>* rows;
    void on_epoch_begin(std::size_t e, nn::network<linear>&) {
      begun.push_back(e);
      if (e == 3) (*rows)[5] = std::numeric_limits<float>::quiet_NaN();
    }
    bool on_epoch_end(const nn::epoch_report&, nn::network<linear>&) { return true; }
  } poison{{}, &x};
  CHECK_THROWS_AS(nn::fit(lin, nn::sgd{.learning_rate = 0.3f}, nn::softmax_cross_entropy{}, data, cos, nullptr, poison),
                  tl::numeric_error);
  CHECK(poison.begun == std::vector<std::size_t>{1, 2, 3});
#endif
}

TEST_CASE("checkpoints round-trip and reject damaged or foreign files", "[nn][checkpoint]") {
  using model = tl::sequential<tl::dense<6, 5>, tl::relu, tl::dense<5, 3>>;
  nn::network<model> a(7), b(8);
  std::vector<std::uint8_t> bytes = nn::encode_checkpoint(a);
  REQUIRE(bytes.size() == 20 + model::size + 4 * model::param_count + 4);
  REQUIRE(nn::decode_checkpoint(bytes, b).ok());
  CHECK(std::memcmp(a.parameters().data(), b.parameters().data(), 4 * model::param_count) == 0);

  nn::network<model> c(9);
  const std::vector<float> before(c.parameters().begin(), c.parameters().end());
  auto flipped = bytes;
  flipped[40] ^= 0x10;
  CHECK(nn::decode_checkpoint(flipped, c).code == tl::errc::checksum_mismatch);
  auto truncated = bytes;
  truncated.resize(bytes.size() - 9);
  CHECK(nn::decode_checkpoint(truncated, c).code == tl::errc::truncated);
  auto version = bytes;
  version[4] = 9;
  CHECK(nn::decode_checkpoint(version, c).code == tl::errc::unsupported_version);
  CHECK(nn::decode_checkpoint(std::span<const std::uint8_t>(bytes.data(), 3), c).code == tl::errc::truncated);
  nn::network<tl::sequential<tl::dense<6, 5>, tl::sigmoid, tl::dense<5, 3>>> other(1);
  CHECK(nn::decode_checkpoint(bytes, other).code == tl::errc::shape_mismatch);
  CHECK(std::memcmp(before.data(), c.parameters().data(), 4 * model::param_count) == 0);  // untouched

  const std::string path = "test_nn_checkpoint.bin";
  nn::save_checkpoint(path, a);
  nn::network<model> d(10);
  nn::load_checkpoint(path, d);
  CHECK(std::memcmp(a.parameters().data(), d.parameters().data(), 4 * model::param_count) == 0);
  std::remove(path.c_str());
#if TINYLARGE_HAS_EXCEPTIONS
  CHECK_THROWS_AS(nn::load_checkpoint("does/not/exist.bin", d), tl::io_error);
#endif
}

#if TINYLARGE_HAS_EXCEPTIONS
namespace {
/// A scratch directory unique to this process.
std::string nn_scratch(const std::string& name) {
  const auto dir = std::filesystem::temp_directory_path() / ("tinylarge_test_nn_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  return (dir / name).string();
}
}  // namespace

TEST_CASE("checkpoints: NaN / Inf refused unless allowed; directories and endless files are library errors",
          "[nn][checkpoint][hostile]") {
  using model = tl::sequential<tl::dense<6, 5>, tl::relu, tl::dense<5, 3>>;
  nn::network<model> bad(7);
  for (const float poison : {std::nanf(""), std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity()}) {
    bad.parameters()[11] = poison;
    const auto bytes = nn::encode_checkpoint(bad);  // CRC-valid
    nn::network<model> c(9);
    const std::vector<float> before(c.parameters().begin(), c.parameters().end());
    CHECK(nn::decode_checkpoint(bytes, c).code == tl::errc::non_finite);
    CHECK(std::memcmp(before.data(), c.parameters().data(), 4 * model::param_count) == 0);  // untouched
    REQUIRE(nn::decode_checkpoint(bytes, c, tl::non_finite_policy::allow).ok());
    CHECK(std::memcmp(&c.parameters()[11], &poison, 4) == 0);
    const std::string path = nn_scratch("poisoned.ck");
    nn::save_checkpoint(path, bad);
    CHECK_THROWS_AS(nn::load_checkpoint(path, c), tl::numeric_error);
    CHECK_NOTHROW(nn::load_checkpoint(path, c, tl::non_finite_policy::allow));
  }
  nn::network<model> d(1);
  const std::string dir = nn_scratch("a_directory");
  std::filesystem::create_directories(dir);
  try {
    nn::load_checkpoint(dir, d);
    FAIL("a directory loaded as a checkpoint");
  } catch (const tl::io_error& e) {
    CHECK(std::string(e.what()).find("directory") != std::string::npos);
  }
  CHECK_THROWS_AS(nn::load_npz(dir, d), tl::io_error);
  if (tl::io::file_readable("/dev/zero")) {
    try {
      nn::load_checkpoint("/dev/zero", d);  // refused after one byte more than a checkpoint
      FAIL("/dev/zero loaded as a checkpoint");
    } catch (const tl::format_error& e) {
      CHECK(e.code() == tl::errc::too_large);
    }
  }
}

TEST_CASE("load_npz refuses NaN, Inf and float64 values beyond float, unless allowed", "[nn][npz][hostile]") {
  using model = tl::sequential<tl::dense<4, 3>, tl::relu, tl::dense<3, 2>>;
  nn::network<model> a(3);
  const auto sd = nn::to_state_dict(a);
  const std::string path = nn_scratch("poisoned.npz");
  auto check_refused = [&](const char* what) {
    INFO(what);
    nn::network<model> b(4);
    const std::vector<float> before(b.parameters().begin(), b.parameters().end());
    try {
      nn::load_npz(path, b);
      FAIL("non-finite parameters were loaded");
    } catch (const tl::numeric_error& e) {
      CHECK(e.code() == tl::errc::non_finite);
      CHECK(std::string(e.what()).find("'2.bias'") != std::string::npos);
    }
    CHECK(std::memcmp(before.data(), b.parameters().data(), 4 * model::param_count) == 0);  // untouched
    CHECK_NOTHROW(nn::load_npz(path, b, tl::non_finite_policy::allow));
    CHECK_FALSE(std::isfinite(b.biases<2>()[1]));
  };
  for (const float poison : {std::nanf(""), std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity()}) {
    auto p = sd;
    p.at("2.bias").data[1] = poison;
    tl::io::save_npz(path, p);
    check_refused("float32 NaN / Inf");
  }
  // float64 1e300 converts to +Inf in float: refused as well.
  std::map<std::string, tl::io::basic_npy_array<double>> d;
  for (const auto& [name, arr] : sd) d[name] = {arr.shape, std::vector<double>(arr.data.begin(), arr.data.end())};
  d.at("2.bias").data[1] = 1e300;
  tl::io::save_npz(path, d);
  check_refused("float64 1e300");
  // The clean file still loads.
  tl::io::save_npz(path, sd);
  nn::network<model> c(5);
  nn::load_npz(path, c);
  CHECK(std::memcmp(a.parameters().data(), c.parameters().data(), 4 * model::param_count) == 0);
}

TEST_CASE("kill -9 during save_checkpoint never loses the previous checkpoint (20 trials)",
          "[nn][checkpoint][hostile]") {
  using model = lenet_300_100;  // 266 610 parameters: a 1 MB file
  const std::string path = nn_scratch("killed.ck");
  auto fill = [](nn::network<model>& n, float v) { std::fill(n.parameters().begin(), n.parameters().end(), v); };
  // Time one save, so that the kills fall over several saves (encode, write, fsync,
  // rename, directory fsync) whatever the disk's speed.
  long save_us = 0;
  {
    auto first = std::make_unique<nn::network<model>>(1);
    fill(*first, -1.0f);
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < 3; ++i) nn::save_checkpoint(path, *first);
    save_us = std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - t0).count() / 3;
  }
  std::mt19937 gen(20261204);
  std::uniform_int_distribution<long> delay_us(0, 4 * save_us + 1000);
  float previous = -1.0f;
  int stale_tmp = 0, advanced = 0;
  long saves = 0;
  for (int trial = 0; trial < 20; ++trial) {
    const float base = static_cast<float>(trial * 100000);
    int ready[2];
    REQUIRE(::pipe(ready) == 0);
    const pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {  // saves value base + 1, base + 2, ... until killed
      auto c = std::make_unique<nn::network<model>>(1);
      [[maybe_unused]] const auto n = ::write(ready[1], "r", 1);
      for (int i = 1;; ++i) {
        fill(*c, base + static_cast<float>(i));
        nn::save_checkpoint(path, *c);
      }
    }
    char r = 0;
    ::close(ready[1]);
    REQUIRE(::read(ready[0], &r, 1) == 1);  // the child is about to save
    ::close(ready[0]);
    ::usleep(static_cast<useconds_t>(delay_us(gen)));
    ::kill(pid, SIGKILL);
    int st = 0;
    ::waitpid(pid, &st, 0);
    REQUIRE(WIFSIGNALED(st));
    if (std::filesystem::exists(path + ".tmp")) ++stale_tmp;  // killed during a write
    auto back = std::make_unique<nn::network<model>>(2);
    INFO("trial " << trial);
    REQUIRE_NOTHROW(nn::load_checkpoint(path, *back));  // a complete, CRC-valid checkpoint
    const float v = back->parameters()[0];
    bool uniform = true;
    for (const float x : back->parameters()) uniform = uniform && x == v;
    CHECK(uniform);  // one save's values, not a mix
    // Either the previous trial's last checkpoint or one written in this trial.
    CHECK((v == previous || (v > base && v < base + 100000.0f)));
    if (v != previous) {
      ++advanced;
      saves += static_cast<long>(v - base);
    }
    previous = v;
  }
  std::printf("kill -9 during save_checkpoint (one save: %ld us): 20/20 trials left a valid checkpoint; "
              "%d killed mid-write (stale .tmp), %d advanced, %ld saves completed in all\n",
              save_us, stale_tmp, advanced, saves);
  std::filesystem::remove_all(std::filesystem::path(path).parent_path());
}
#endif

TEST_CASE("state dicts in PyTorch layout round-trip, with NHWC/NCHW permutations", "[nn][npz]") {
  using model = tl::sequential<tl::input<4, 3, 2>, tl::conv2d<3, 2>, tl::relu, tl::flatten, tl::dense<18, 4>,
                               tl::dense<4, 2>>;
  nn::network<model> a(3), b(4);
  const auto sd = nn::to_state_dict(a);
  REQUIRE(sd.size() == 6);
  CHECK(sd.at("0.weight").shape == std::vector<std::size_t>{3, 2, 2, 2});  // [OutC][C][K][K]
  CHECK(sd.at("3.weight").shape == std::vector<std::size_t>{4, 18});
  // conv: ours [o][ky][kx][c] → torch [o][c][ky][kx]
  const auto cw = a.weights<0>();
  CHECK(sd.at("0.weight").data[((2 * 2 + 1) * 2 + 0) * 2 + 1] == cw[((2 * 2 + 0) * 2 + 1) * 2 + 1]);  // o2 c1 ky0 kx1
  // dense after flatten of 3×2×3 (NHWC): our column (h, w, c) is torch column (c, h, w)
  const auto dw = a.weights<3>();
  const std::size_t h = 2, w = 1, c = 2, o = 3;
  CHECK(sd.at("3.weight").data[o * 18 + c * 6 + h * 2 + w] == dw[o * 18 + (h * 2 + w) * 3 + c]);
  // the last dense is not after a flatten of an image: no permutation
  CHECK(sd.at("4.weight").data[5] == a.weights<4>()[5]);
  nn::from_state_dict(sd, b);
  CHECK(std::memcmp(a.parameters().data(), b.parameters().data(), 4 * model::param_count) == 0);
#if TINYLARGE_HAS_EXCEPTIONS
  auto bad = sd;
  bad.at("3.weight").shape = {18, 4};
  CHECK_THROWS_WITH(nn::from_state_dict(bad, b), Catch::Contains("'3.weight' has the wrong shape"));
  bad = sd;
  bad.erase("4.bias");
  CHECK_THROWS_WITH(nn::from_state_dict(bad, b), Catch::Contains("no '4.bias'"));
#endif
}

namespace {
/// Fraction of samples where int8 and fp32 agree on the argmax, and the
/// largest |int8 − fp32| output relative to the largest |fp32| output.
template <class Model, class Q>
std::pair<double, double> int8_vs_fp32(nn::network<Model>& net, Q& q, const float* x, std::size_t n) {
  std::size_t agree = 0;
  double err = 0.0, mag = 0.0;
  std::vector<float> yq(Model::output_size);
  for (std::size_t i = 0; i < n; ++i) {
    const float* y = net.forward(x + i * Model::input_size, 1);
    q.predict(x + i * Model::input_size, yq.data());
    std::size_t a = 0, b = 0;
    for (std::size_t j = 0; j < Model::output_size; ++j) {
      err = std::max(err, static_cast<double>(std::abs(y[j] - yq[j])));
      mag = std::max(mag, static_cast<double>(std::abs(y[j])));
      a = y[j] > y[a] ? j : a;
      b = yq[j] > yq[b] ? j : b;
    }
    agree += a == b ? 1 : 0;
  }
  return {static_cast<double>(agree) / static_cast<double>(n), err / mag};
}
}  // namespace

TEST_CASE("int8 post-training quantization agrees with fp32", "[nn][int8][ptq]") {
  const band_images d(600, 31);
  const nn::labelled_view<std::uint8_t> data{d.x.data(), d.y.data(), 600, 64};

  SECTION("CNN with conv, depthwise, relu6, both poolings, tanh") {
    using model = tl::sequential<tl::input<8, 8, 1>, tl::conv2d<4, 3, 1, 1>, tl::relu, tl::max_pool2d<2>,
                                 tl::depthwise_conv2d<3, 1, 1, 2>, tl::relu6, tl::avg_pool2d<2>, tl::flatten,
                                 tl::dense<32, 8>, tl::tanh_act, tl::dense<8, 4>>;
    nn::network<model> net(3);
    nn::fit(net, nn::adam{.learning_rate = 3e-3f}, nn::softmax_cross_entropy{}, data, {.epochs = 4, .batch_size = 32});
    const double fp32_acc = nn::evaluate(net, nn::softmax_cross_entropy{}, data).accuracy;
    REQUIRE(fp32_acc > 0.95);
    nn::quantized_network<model, tl::int8_per_channel, nn::static_storage> q;
    nn::quantize_post_training(net, d.x.data(), 200, q);
    const auto [agree, rel_err] = int8_vs_fp32(net, q, d.x.data(), 600);
    INFO("argmax agreement " << agree << ", max logit error / max |logit| " << rel_err);
    CHECK(agree >= 0.98);
    CHECK(rel_err < 0.1);
  }
  SECTION("MLP, per-tensor weights, sigmoid and a final softmax (integer tables)") {
    using model = tl::sequential<tl::dense<64, 16>, tl::sigmoid, tl::dense<16, 4>, tl::softmax>;
    nn::network<model> net(5);
    // train the logits with cross-entropy on a copy without the softmax, then copy the weights
    using logits = tl::sequential<tl::dense<64, 16>, tl::sigmoid, tl::dense<16, 4>>;
    nn::network<logits> lnet(5);
    nn::fit(lnet, nn::adam{.learning_rate = 1e-2f}, nn::softmax_cross_entropy{}, data, {.epochs = 4, .batch_size = 32});
    std::copy(lnet.parameters().begin(), lnet.parameters().end(), net.parameters().begin());
    nn::quantized_network<model, tl::int8_per_tensor, nn::heap_storage> q;
    nn::quantize_post_training(net, d.x.data(), 200, q);
    const auto [agree, abs_err] = int8_vs_fp32(net, q, d.x.data(), 600);
    INFO("argmax agreement " << agree << ", max probability error (relative) " << abs_err);
    CHECK(agree >= 0.97);
    CHECK(abs_err < 0.05);
    CHECK(q.output_params().scale == 1.0f / 256.0f);
  }
}

TEST_CASE("int8 residual blocks: a small ResNet-style CNN agrees with fp32, skip tensor kept live in the arena",
          "[nn][int8][residual]") {
  using block = tl::residual<tl::conv2d<8, 3, 1, 1>, tl::relu, tl::conv2d<8, 3, 1, 1>>;
  using model = tl::sequential<tl::input<8, 8, 1>, tl::conv2d<8, 3, 1, 1>, tl::relu, block, tl::relu,
                               tl::max_pool2d<2>, block, tl::relu, tl::flatten, tl::dense<128, 4>>;
  using q_t = nn::quantized_network<model, tl::int8_per_channel, nn::static_storage>;
  // The int8 graph: conv, relu, [conv, relu, conv, add], relu, pool, [conv, relu, conv, add], relu, flatten, dense.
  static_assert(q_t::graph::size == 15 && q_t::residual_count == 2 && q_t::tensor_count == 16);
  static_assert(q_t::graph::layer<5>::kind == nn::layer_kind::residual && q_t::graph::fused_into_previous<6>);
  static_assert(q_t::graph::fused_into_previous<3> && !q_t::graph::fused_into_previous<8>);
  // Arena by hand: the widest step is the second conv of the first block, while the skip tensor (8×8×8 = 512)
  // stays live: 512 skip + 512 in + 2·72 im2col + 512 out = 1680 (a chain would need 1168).
  static_assert(q_t::arena_bytes == 512 + 512 + 2 * 72 + 512);

  const band_images d(600, 37);
  const nn::labelled_view<std::uint8_t> data{d.x.data(), d.y.data(), 600, 64};
  nn::network<model> net(9);
  nn::fit(net, nn::adam{.learning_rate = 3e-3f}, nn::softmax_cross_entropy{}, data, {.epochs = 4, .batch_size = 32});
  const double fp32_acc = nn::evaluate(net, nn::softmax_cross_entropy{}, data).accuracy;
  REQUIRE(fp32_acc > 0.95);
  static q_t q;
  nn::quantize_post_training(net, d.x.data(), 200, q);
  const auto [agree, rel_err] = int8_vs_fp32(net, q, d.x.data(), 600);
  std::printf("int8 residual CNN: fp32 accuracy %.4f, argmax agreement %.4f over 600 images, max logit error / max "
              "|logit| %.4f, arena %zu B\n",
              fp32_acc, agree, rel_err, q_t::arena_bytes);
  INFO("argmax agreement " << agree << ", max logit error / max |logit| " << rel_err);
  CHECK(agree >= 0.98);
  CHECK(rel_err < 0.1);
  // The add's constants follow TFLite's ADD: inputs rescaled by at most ½ (shift ≤ 0), a fused relu's clamp.
  for (std::size_t r = 0; r < q_t::residual_count; ++r) {
    CHECK(q.residual_add(r).input1_shift <= 0);
    CHECK(q.residual_add(r).input2_shift <= 0);
    CHECK(q.residual_add(r).act_min == q.tensor_params(r == 0 ? 7 : 13).zero_point);
  }
}

TEST_CASE("quantization-aware training: the int8 network computes what fake quantization simulated",
          "[nn][int8][qat]") {
  const band_images d(600, 41);
  const nn::labelled_view<std::uint8_t> data{d.x.data(), d.y.data(), 600, 64};
  using model = tl::sequential<tl::input<8, 8, 1>, tl::conv2d<4, 3, 1, 1>, tl::relu, tl::max_pool2d<2>, tl::flatten,
                               tl::dense<64, 16>, tl::relu, tl::dense<16, 4>>;
  nn::network<model> net(13);
  nn::fit(net, nn::adam{.learning_rate = 3e-3f}, nn::softmax_cross_entropy{}, data, {.epochs = 2, .batch_size = 32});
  net.enable_fake_quant(true);
  nn::fit(net, nn::adam{.learning_rate = 1e-3f}, nn::softmax_cross_entropy{}, data, {.epochs = 2, .batch_size = 32});
  // The tracked ranges cover the observed tensors; the fused pre-activations have none.
  CHECK(net.tracked_ranges()[0].seen);
  CHECK(!net.tracked_ranges()[1].seen);
  CHECK(net.tracked_ranges()[2].seen);
  CHECK(net.tracked_ranges()[2].lo >= 0.0f);  // post-relu

  auto q = std::make_unique<nn::quantized_network<model>>();
  nn::convert(net, net.tracked_ranges(), *q);
  // With fake quantization on, the fp32 forward sees the int8 grid: int8 outputs
  // must match it to within a few output quantization steps.
  const float step = q->output_params().scale;
  double worst = 0.0;
  std::size_t agree = 0;
  std::vector<float> yq(4);
  for (std::size_t i = 0; i < 600; ++i) {
    const float* y = net.forward(d.x.data() + i * 64, 1, false);
    q->predict(d.x.data() + i * 64, yq.data());
    std::size_t a = 0, b = 0;
    for (std::size_t j = 0; j < 4; ++j) {
      worst = std::max(worst, static_cast<double>(std::abs(y[j] - yq[j]) / step));
      a = y[j] > y[a] ? j : a;
      b = yq[j] > yq[b] ? j : b;
    }
    agree += a == b ? 1 : 0;
  }
  INFO("worst |int8 − fake-quant fp32| in output steps: " << worst);
  CHECK(worst <= 4.0);
  CHECK(agree >= 594);  // ≥ 99%
  net.enable_fake_quant(false);
  CHECK(nn::evaluate(net, nn::softmax_cross_entropy{}, data).accuracy > 0.95);
}

// ---------------------------------------------------------------------------
// nn/vision.hpp: patch_embedding, batch_norm, fold_batch_norms
// ---------------------------------------------------------------------------
namespace vision_shapes {
using pe = tl::patch_embedding<28, 28, 1, 7, 64>;
using vit_in = tl::sequential<pe>;  // a leading patch_embedding implies input<28, 28, 1>
static_assert(std::is_same_v<vit_in::input_shape, nn::shape<28, 28, 1>>);
static_assert(std::is_same_v<vit_in::output_shape, nn::shape<4, 4, 64>> && pe::tokens == 16);
static_assert(vit_in::param_count == 64 * 49 + 64 && vit_in::macs == 16 * 64 * 49);
static_assert(vit_in::layer<0>::kind == nn::layer_kind::conv2d);  // it is conv2d<64, 7, 7>: int8 and npz apply
static_assert(!pe::accepts<nn::shape<28, 28, 3>> && !pe::accepts<nn::shape<28, 21, 1>>);
static_assert(tl::batch_norm<8>::accepts<nn::shape<4, 4, 8>> && tl::batch_norm<8>::accepts<nn::shape<1, 1, 8>> &&
              !tl::batch_norm<8>::accepts<nn::shape<1, 1, 9>>);
using bn_mlp = tl::sequential<tl::dense<5, 4>, tl::batch_norm<4>, tl::relu, tl::dense<4, 2>>;
static_assert(bn_mlp::param_count == 24 + 16 + 10 && bn_mlp::layer<1>::weight_count == 4 &&
              bn_mlp::layer<1>::bias_count == 12);
static_assert(std::is_same_v<nn::batch_norm_folded_t<bn_mlp>,
                             tl::sequential<tl::input<1, 1, 5>, tl::dense<5, 4>, tl::relu, tl::dense<4, 2>>>);
}  // namespace vision_shapes

TEST_CASE("vision layers: gradients agree with central finite differences", "[nn][gradient][vision]") {
  SECTION("patch_embedding, 2×2 patches of a 6×4×2 image") {
    require_gradients<tl::sequential<tl::patch_embedding<6, 4, 2, 2, 3>>>(41, 2, 1e-2f, 1e-3);
  }
  SECTION("batch_norm over the channels of a conv feature map (batch statistics)") {
    require_gradients<tl::sequential<tl::input<3, 3, 2>, tl::conv2d<3, 2>, tl::batch_norm<3>, tl::tanh_act>>(
        42, 3, 1e-2f, 1e-3);
  }
  SECTION("batch_norm over the features of a dense output (batch statistics)") {
    require_gradients<tl::sequential<tl::dense<5, 4>, tl::batch_norm<4>, tl::sigmoid, tl::dense<4, 3>>>(43, 4, 1e-2f,
                                                                                                       1e-3);
  }
  SECTION("a small ViT: patches, positions, pre-norm attention block, mean over tokens, head") {
    require_gradients<tl::sequential<tl::patch_embedding<4, 4, 1, 2, 4>, tl::learned_positions<4, 4>,
                                     tl::residual<tl::layer_norm<4>, tl::multi_head_attention<4, 2>>,
                                     tl::residual<tl::layer_norm<4>, tl::conv2d<8, 1>, tl::gelu, tl::conv2d<4, 1>>,
                                     tl::layer_norm<4>, tl::avg_pool2d<2>, tl::flatten, tl::dense<4, 3>>>(44, 2, 3e-3f,
                                                                                                         2e-3);
  }
  SECTION("batch_norm at inference (running statistics): input gradient by finite differences") {
    using model = tl::sequential<tl::input<2, 2, 3>, tl::batch_norm<3>>;
    nn::network<model> net(45);
    tl::rng g(46);
    for (float& p : net.parameters()) p += 0.3f * g.normal();
    for (std::size_t c = 0; c < 3; ++c) net.parameters()[9 + c] = 0.5f + 0.25f * static_cast<float>(c);  // σ̂² > 0
    std::vector<float> x(2 * 12), r(x.size()), dx(x.size());
    for (float& v : x) v = g.normal();
    for (float& v : r) v = g.normal();
    const std::vector<float> before(net.parameters().begin(), net.parameters().end());
    auto f = [&] {
      const float* y = net.forward(x.data(), 2, /*training=*/false);
      double s = 0.0;
      for (std::size_t i = 0; i < r.size(); ++i) s += static_cast<double>(r[i]) * y[i];
      return s;
    };
    f();
    net.zero_gradients();
    net.backward(r.data(), dx.data());
    double worst = 0.0;
    for (std::size_t i = 0; i < x.size(); ++i) {
      const float old = x[i];
      x[i] = old + 1e-2f;
      const double fp = f();
      x[i] = old - 1e-2f;
      const double fm = f();
      x[i] = old;
      worst = std::max(worst, std::abs((fp - fm) / 2e-2 - dx[i]) / std::max(1.0, std::abs(static_cast<double>(dx[i]))));
    }
    CHECK(worst < 1e-3);
    // Inference never moves the running statistics, and they never get a gradient.
    CHECK(std::equal(before.begin(), before.end(), net.parameters().begin()));
    for (std::size_t i = 6; i < 12; ++i) CHECK(net.gradients()[i] == 0.0f);
  }
}

TEST_CASE("vision layers: forward passes equal hand-computed values", "[nn][vision]") {
  SECTION("batch_norm's running statistics are parameters but not trainable") {
    using model = tl::sequential<tl::dense<4, 3>, tl::batch_norm<3>>;
    static_assert(model::param_count == 15 + 12);
    static_assert(model::trainable_count == 15 + 6);  // dense, then γ and β: one run; the statistics are not in it
    REQUIRE(model::trainable_ranges.size() == 1);
    REQUIRE(model::trainable_ranges[0].offset == 0);
    REQUIRE(model::trainable_ranges[0].count == 21);
    // fit with Adam and weight decay: γ, β and the dense layer move; the running statistics
    // change only through the training forward passes (as torch's do), not through the optimizer.
    nn::network<model> net(3);
    std::vector<float> x(32 * 4);
    std::vector<std::uint8_t> y(32);
    tl::rng g(4);
    for (float& v : x) v = g.normal();
    for (std::size_t i = 0; i < y.size(); ++i) y[i] = static_cast<std::uint8_t>(i % 3);
    const nn::labelled_view<std::uint8_t> data{x.data(), y.data(), 32, 4};
    nn::fit(net, nn::adam{.learning_rate = 0.01f, .weight_decay = 0.5f}, nn::softmax_cross_entropy{}, data,
            {.epochs = 1, .batch_size = 32});
    // One training batch: running mean = 0.9·0 + 0.1·μ_batch, variance = 0.9·1 + 0.1·σ²_batch (unbiased),
    // from the dense outputs of that forward pass, which ran before the step.
    nn::network<model> fresh(3);
    const float* h = nullptr;
    {
      nn::network<tl::sequential<tl::dense<4, 3>>> d(3);
      std::copy_n(fresh.parameters().begin(), 15, d.parameters().begin());
      h = d.forward(x.data(), 32);
      const float* stats = net.parameters().data() + 15 + 6;
      for (std::size_t c = 0; c < 3; ++c) {
        double mu = 0, var = 0;
        for (std::size_t i = 0; i < 32; ++i) mu += h[i * 3 + c];
        mu /= 32;
        for (std::size_t i = 0; i < 32; ++i) var += (h[i * 3 + c] - mu) * (h[i * 3 + c] - mu);
        var /= 31;
        CHECK(stats[c] == Approx(0.1 * mu).margin(1e-6));
        CHECK(stats[3 + c] == Approx(0.9 + 0.1 * var).margin(1e-5));
      }
    }
  }
  SECTION("patch_embedding: token (i, j) is W·vec(patch (i, j)) + b, tokens row-major") {
    using model = tl::sequential<tl::patch_embedding<4, 6, 2, 2, 3>>;
    nn::network<model> net(47);
    tl::rng g(48);
    for (float& p : net.parameters()) p = g.normal();
    std::vector<float> x(model::input_size);
    for (float& v : x) v = g.normal();
    const float* y = net.forward(x.data(), 1);
    const auto p = net.parameters();
    double worst = 0.0;
    for (std::size_t i = 0; i < 2; ++i)
      for (std::size_t j = 0; j < 3; ++j)
        for (std::size_t d = 0; d < 3; ++d) {
          double s = p[3 * 8 + d];  // bias
          for (std::size_t ky = 0; ky < 2; ++ky)
            for (std::size_t kx = 0; kx < 2; ++kx)
              for (std::size_t c = 0; c < 2; ++c)
                s += static_cast<double>(p[d * 8 + (ky * 2 + kx) * 2 + c]) *
                     x[((2 * i + ky) * 6 + (2 * j + kx)) * 2 + c];
          worst = std::max(worst, std::abs(s - y[(i * 3 + j) * 3 + d]));
        }
    CHECK(worst < 1e-5);
  }
  SECTION("batch_norm: batch statistics, running statistics (momentum 0.1, unbiased variance), inference") {
    using model = tl::sequential<tl::input<2>, tl::batch_norm<2>>;
    nn::network<model> net(49);
    const float x[4] = {1, 2, 3, 6};  // channel 0: 1, 3 (μ 2, σ² 1); channel 1: 2, 6 (μ 4, σ² 4)
    const float* y = net.forward(x, 2, /*training=*/true);
    CHECK(y[0] == Approx(-1.0 / std::sqrt(1.0 + 1e-5)));
    CHECK(y[1] == Approx(-2.0 / std::sqrt(4.0 + 1e-5)));
    CHECK(y[2] == Approx(1.0 / std::sqrt(1.0 + 1e-5)));
    CHECK(y[3] == Approx(2.0 / std::sqrt(4.0 + 1e-5)));
    const auto p = net.parameters();  // γ, β, running mean, running variance
    CHECK(p[4] == Approx(0.2));
    CHECK(p[5] == Approx(0.4));
    CHECK(p[6] == Approx(0.9 + 0.1 * 2.0));  // unbiased σ² = 2
    CHECK(p[7] == Approx(0.9 + 0.1 * 8.0));  // unbiased σ² = 8
    net.parameters()[0] = 2.0f;                     // γ₀
    net.parameters()[3] = -1.0f;                    // β₁
    const float* z = net.forward(x, 2, /*training=*/false);
    CHECK(z[0] == Approx(2.0 * (1.0 - 0.2) / std::sqrt(1.1 + 1e-5)));
    CHECK(z[3] == Approx((6.0 - 0.4) / std::sqrt(1.7 + 1e-5) - 1.0));
    CHECK(p[4] == Approx(0.2));  // unchanged by inference
  }
}

TEST_CASE("fold_batch_norms: a trained batch-normed CNN folds to conv/dense layers that match it and run in int8",
          "[nn][vision][int8]") {
  const band_images d(600, 51);
  const nn::labelled_view<std::uint8_t> data{d.x.data(), d.y.data(), 600, 64};
  using model = tl::sequential<tl::input<8, 8, 1>, tl::conv2d<4, 3, 1, 1>, tl::batch_norm<4>, tl::relu,
                               tl::max_pool2d<2>, tl::depthwise_conv2d<3, 1, 1, 2>, tl::batch_norm<8>, tl::relu6,
                               tl::flatten, tl::dense<128, 16>, tl::batch_norm<16>, tl::relu, tl::dense<16, 4>>;
  using folded = nn::batch_norm_folded_t<model>;
  static_assert(folded::size == model::size - 3 && folded::param_count == model::param_count - 4 * (4 + 8 + 16));
  nn::network<model> net(52);
  nn::fit(net, nn::adam{.learning_rate = 3e-3f}, nn::softmax_cross_entropy{}, data, {.epochs = 3, .batch_size = 32});
  const double acc = nn::evaluate(net, nn::softmax_cross_entropy{}, data).accuracy;
  REQUIRE(acc > 0.95);
  // Training moved the running statistics away from (0, 1).
  CHECK(net.parameters()[model::param_offset<1> + 8] != 0.0f);
  CHECK(net.parameters()[model::param_offset<1> + 12] != 1.0f);

  nn::network<folded> fnet;
  nn::fold_batch_norms(net, fnet);
  const float* y = net.forward(d.x.data(), 600, /*training=*/false);
  const std::vector<float> y_bn(y, y + 600 * 4);
  const float* yf = fnet.forward(d.x.data(), 600);
  double err = 0.0, mag = 0.0;
  for (std::size_t i = 0; i < y_bn.size(); ++i) {
    err = std::max(err, static_cast<double>(std::abs(y_bn[i] - yf[i])));
    mag = std::max(mag, static_cast<double>(std::abs(y_bn[i])));
  }
  INFO("max |folded − batch-normed| / max |logit| = " << err / mag);
  CHECK(err / mag < 1e-5);

  nn::quantized_network<folded, tl::int8_per_channel, nn::static_storage> q;
  nn::quantize_post_training(fnet, d.x.data(), 200, q);
  const auto [agree, rel_err] = int8_vs_fp32(fnet, q, d.x.data(), 600);
  INFO("int8 of the folded model: argmax agreement " << agree << ", max logit error / max |logit| " << rel_err);
  CHECK(agree >= 0.97);
  CHECK(rel_err < 0.1);
}

#if TINYLARGE_HAS_EXCEPTIONS
TEST_CASE("errors name what is wrong", "[nn][errors]") {
  using model = tl::sequential<tl::dense<4, 2>>;
  nn::network<model> net(1);
  std::vector<float> x(8);
  const std::uint8_t y[2] = {0, 1};
  CHECK_THROWS_AS(net.forward(x.data(), 0), tl::invalid_argument);
  const nn::labelled_view<std::uint8_t> wrong{x.data(), y, 2, 3};
  CHECK_THROWS_WITH(nn::fit(net, nn::sgd{}, nn::softmax_cross_entropy{}, wrong),
                    Catch::Contains("feature count differs"));
  auto q = std::make_unique<nn::quantized_network<model>>();
  std::array<nn::tensor_range, model::size + 1> none{};
  CHECK_THROWS_WITH(nn::convert(net, none, *q), Catch::Contains("no observed range"));
}
#endif

TEST_CASE("inference_network: the packed batch-1 fp32 path computes what network::forward does", "[nn][inference]") {
  tl::rng g(21);
  SECTION("LeNet-300-100, inputs with blank pixels, fused relu") {
    nn::network<lenet_300_100> net(4);
    for (float& b : net.parameters()) b += 0.01f * g.normal();  // non-zero biases too
    auto fast = std::make_unique<nn::inference_network<lenet_300_100>>(net);
    std::vector<float> x(784);
    double worst = 0.0;
    for (int s = 0; s < 20; ++s) {
      for (std::size_t i = 0; i < 784; ++i) x[i] = (i % 28 < 6 || g.uniform() < 0.3f) ? 0.0f : g.uniform();
      const float* ref = net.forward(x.data(), 1);
      std::vector<float> r(ref, ref + 10);
      const float* y = fast->forward(x.data());
      for (std::size_t j = 0; j < 10; ++j)
        worst = std::max(worst, static_cast<double>(std::abs(y[j] - r[j])) / (1.0 + std::abs(r[j])));
      CHECK(fast->classify(x.data()) == static_cast<std::size_t>(std::max_element(r.begin(), r.end()) - r.begin()));
    }
    INFO("worst relative difference " << worst);
    CHECK(worst < 1e-5);
    // A snapshot: training the network further does not change it until load().
    const std::vector<float> before(fast->forward(x.data()), fast->forward(x.data()) + 10);
    net.biases<4>()[0] += 1.0f;
    CHECK(std::vector<float>(fast->forward(x.data()), fast->forward(x.data()) + 10) == before);
    fast->load(net);
    const float* after = fast->forward(x.data());
    CHECK(after[0] == Approx(before[0] + 1.0f).epsilon(1e-5));
    // Copies re-pack for their own buffers and give the same outputs.
    const nn::inference_network<lenet_300_100> copy(*fast);
    auto copy2 = std::make_unique<nn::inference_network<lenet_300_100>>(copy);
    const std::vector<float> a(fast->forward(x.data()), fast->forward(x.data()) + 10);
    CHECK(std::vector<float>(copy2->forward(x.data()), copy2->forward(x.data()) + 10) == a);
  }
  SECTION("a CNN: conv, pools, relu6, flatten, dropout (identity at inference), static storage") {
    using model = tl::sequential<tl::input<8, 8, 2>, tl::conv2d<4, 3, 1, 1>, tl::relu6, tl::max_pool2d<2>, tl::flatten,
                                 tl::dense<64, 20>, tl::relu, tl::dropout<30>, tl::dense<20, 7>, tl::relu6,
                                 tl::dense<7, 3>>;
    nn::network<model> net(9);
    static nn::inference_network<model, nn::static_storage> fast;  // static: no heap
    fast.load(net);
    std::vector<float> x(128);
    for (int s = 0; s < 20; ++s) {
      for (float& v : x) v = g.uniform() < 0.4f ? 0.0f : g.normal();
      const float* ref = net.forward(x.data(), 1);
      const std::vector<float> r(ref, ref + 3);
      const float* y = fast.forward(x.data());
      for (std::size_t j = 0; j < 3; ++j) CHECK(y[j] == Approx(r[j]).epsilon(1e-5).margin(1e-5));
    }
  }
}

TEST_CASE("quantized_network: the packed batch-1 path is bit-exact with the scalar back end", "[nn][int8][packed]") {
  using model = tl::sequential<tl::dense<100, 40>, tl::relu, tl::dense<40, 33>, tl::dense<33, 17>, tl::relu6,
                               tl::dense<17, 5>>;
  nn::network<model> net(17);
  tl::rng g(5);
  std::vector<float> calib(100 * 64);
  for (std::size_t i = 0; i < calib.size(); ++i) calib[i] = (i % 100 < 30) ? 0.0f : g.uniform();
  auto fast = std::make_unique<nn::quantized_network<model, tl::int8_per_channel, nn::heap_storage>>();
  using scalar_net = nn::quantized_network<model, tl::int8_per_channel, nn::heap_storage, tl::kernels::scalar>;
  auto ref = std::make_unique<scalar_net>();
  nn::quantize_post_training(net, calib.data(), 64, *fast);
  nn::quantize_post_training(net, calib.data(), 64, *ref);
  INFO("packed bytes on this back end: " << fast->packed_bytes);
  auto same_outputs = [&](auto& a, auto& b) {
    std::size_t differ = 0;
    std::vector<std::int8_t> x(100);
    tl::rng r(77);
    for (int s = 0; s < 50; ++s) {
      for (auto& v : x) v = static_cast<std::int8_t>(static_cast<int>(r.uniform_int(256)) - 128);
      const std::int8_t* ya = a.forward(x.data());
      const std::vector<std::int8_t> va(ya, ya + 5);
      const std::int8_t* yb = b.forward(x.data());
      differ += std::equal(va.begin(), va.end(), yb) ? 0 : 1;
      differ += a.classify(calib.data() + 100 * (s % 64)) == b.classify(calib.data() + 100 * (s % 64)) ? 0 : 1;
    }
    return differ;
  };
  CHECK(same_outputs(*fast, *ref) == 0);
  // Writing parameters through the raw accessors re-packs before the next run.
  fast->weights()[7] = static_cast<std::int8_t>(-fast->weights()[7] - 1);
  ref->weights()[7] = static_cast<std::int8_t>(-ref->weights()[7] - 1);
  fast->biases()[3] += 1000;
  ref->biases()[3] += 1000;
  fast->tensor_quantization()[0].zero_point = 5;
  ref->tensor_quantization()[0].zero_point = 5;
  CHECK(same_outputs(*fast, *ref) == 0);
  // A raw pointer kept across forward(): parameters_changed() declares the write.
  std::int32_t* bias = fast->biases();
  std::int32_t* rbias = ref->biases();
  (void)same_outputs(*fast, *ref);
  bias[0] -= 5000;
  rbias[0] -= 5000;
  fast->parameters_changed();
  CHECK(same_outputs(*fast, *ref) == 0);
  // Copies (new buffers, new alignment) re-pack.
  auto copy = std::make_unique<nn::quantized_network<model, tl::int8_per_channel, nn::heap_storage>>(*fast);
  CHECK(same_outputs(*copy, *ref) == 0);
}

TEST_CASE("LoRA wrapper: gradients reach A, B and x only, W0 stays frozen, merge_lora computes the same outputs",
          "[nn][lora]") {
  using plain = tl::sequential<tl::dense<6, 5>, nn::tanh, tl::dense<5, 3>>;
  using adapted = tl::sequential<nn::lora<tl::dense<6, 5>, 2, 4>, nn::tanh, nn::lora<tl::dense<5, 3>, 3>>;
  using L0 = adapted::layer<0>;
  using L2 = adapted::layer<2>;
  STATIC_REQUIRE(std::is_same_v<nn::merged_model_t<adapted>, plain>);
  STATIC_REQUIRE(std::is_same_v<nn::lora_model_t<plain, 2>,
                                tl::sequential<nn::lora<tl::dense<6, 5>, 2>, nn::tanh, nn::lora<tl::dense<5, 3>, 2>>>);
  STATIC_REQUIRE(adapted::trainable_count == 2 * (6 + 5) + 3 * (5 + 3));
  STATIC_REQUIRE(adapted::param_count == plain::param_count + adapted::trainable_count + 2);  // + one scale per layer
  STATIC_REQUIRE(adapted::trainable_ranges.size() == 2);
  STATIC_REQUIRE(adapted::trainable_ranges[1].offset == adapted::param_offset<2>);
  STATIC_REQUIRE(plain::trainable_ranges.size() == 1);
  STATIC_REQUIRE(plain::trainable_count == plain::param_count);

  nn::network<adapted> net(5);
  auto p = net.parameters();
  CHECK(p[adapted::param_offset<0> + L0::scale_offset] == 2.0f);  // s = Alpha / Rank = 4 / 2
  CHECK(p[adapted::param_offset<2> + L2::scale_offset] == 1.0f);
  bool b_zero = true;
  for (std::size_t i = 0; i < 5 * 2; ++i) b_zero = b_zero && p[adapted::param_offset<0> + L0::b_offset + i] == 0.0f;
  CHECK(b_zero);  // B = 0: the adapted layer starts as its base
  // A non-zero B, so that dA is not zero either.
  tl::rng g(8);
  for (std::size_t i = 0; i < 5 * 2; ++i) p[adapted::param_offset<0> + L0::b_offset + i] = g.normal(0.0f, 0.5f);
  for (std::size_t i = 0; i < 3 * 3; ++i) p[adapted::param_offset<2> + L2::b_offset + i] = g.normal(0.0f, 0.5f);

  // Loss Σ c ⊙ y, so that ∂loss/∂y = c.
  const std::size_t batch = 3;
  std::vector<float> x(batch * 6), c(batch * 3), dx(batch * 6);
  for (auto& v : x) v = g.normal();
  for (auto& v : c) v = g.normal();
  auto loss = [&] {
    const float* y = net.forward(x.data(), batch, false);
    double s = 0.0;
    for (std::size_t i = 0; i < batch * 3; ++i) s += static_cast<double>(c[i]) * y[i];
    return s;
  };
  (void)net.forward(x.data(), batch, true);
  net.zero_gradients();
  net.backward(c.data(), dx.data());
  const std::vector<float> grad(net.gradients().begin(), net.gradients().end());

  // The frozen W0, b and s get no gradient: backward never writes their slots.
  std::size_t frozen_written = 0;
  for (std::size_t i = L0::trainable_count; i < L0::param_count; ++i) frozen_written += grad[i] != 0.0f;
  for (std::size_t i = L2::trainable_count; i < L2::param_count; ++i)
    frozen_written += grad[adapted::param_offset<2> + i] != 0.0f;
  CHECK(frozen_written == 0);

  // Central differences, h = 4e-3: the truncation error h²·f'''/6 stays below 3e-4
  // here (1.4e-3 with h = 1e-2) and the fp32 rounding of the loss adds about
  // 1e-6 / h = 3e-4; allow 2e-3 + 1 %.
  const float h = 4e-3f;
  std::size_t bad = 0, checked = 0;
  double worst = 0.0;
  auto compare = [&](float& v, double analytic) {
    const float orig = v;
    v = orig + h;
    const double lp = loss();
    v = orig - h;
    const double lm = loss();
    v = orig;
    const double numeric = (lp - lm) / (2.0 * static_cast<double>(h));
    const double err = std::fabs(numeric - analytic);
    worst = std::max(worst, err);
    bad += err > 2e-3 + 1e-2 * std::fabs(analytic);
    ++checked;
  };
  for (const nn::param_range& r : adapted::trainable_ranges)
    for (std::size_t i = r.offset; i < r.offset + r.count; ++i) compare(p[i], grad[i]);
  for (std::size_t i = 0; i < x.size(); ++i) compare(x[i], dx[i]);
  INFO("largest |numeric - analytic| " << worst << " over " << checked << " derivatives");
  CHECK(checked == adapted::trainable_count + x.size());
  CHECK(bad == 0);

  // merge_lora: W = W0 + s·B·A is rounded to fp32 once per weight and the
  // products are summed in another order, so the outputs agree to fp32
  // rounding: |Δy| ≤ 1e-5 · (1 + |y|).
  std::vector<float> xs(16 * 6);
  for (auto& v : xs) v = g.normal();
  const auto merged = nn::merge_lora(net);
  STATIC_REQUIRE(std::is_same_v<std::remove_cvref_t<decltype(merged)>::model, plain>);
  auto merged_copy = merged;
  const std::vector<float> y_lora(net.forward(xs.data(), 16, false), net.forward(xs.data(), 16, false) + 16 * 3);
  const float* y_plain = merged_copy.forward(xs.data(), 16, false);
  double merge_err = 0.0;
  for (std::size_t i = 0; i < 16 * 3; ++i)
    merge_err = std::max(merge_err, std::fabs(static_cast<double>(y_lora[i]) - y_plain[i]) / (1.0 + std::fabs(y_lora[i])));
  INFO("merge: largest |Δy| / (1 + |y|) = " << merge_err);
  CHECK(merge_err <= 1e-5);

  // Training: Adam with weight decay would move every parameter it steps; W0, b
  // and s stay bit for bit, the adapters move and the loss falls.
  std::vector<float> tx(96 * 6);
  std::vector<std::uint8_t> ty(96);
  for (std::size_t i = 0; i < 96; ++i) {
    for (std::size_t j = 0; j < 6; ++j) tx[i * 6 + j] = g.normal();
    ty[i] = static_cast<std::uint8_t>(tx[i * 6] > 0.0f ? 0 : (tx[i * 6 + 1] > 0.0f ? 1 : 2));
  }
  const std::vector<float> before(p.begin(), p.end());
  const auto hist = nn::fit(net, nn::adam{.learning_rate = 0.02f, .weight_decay = 0.1f}, nn::softmax_cross_entropy{},
                            nn::labelled_view<std::uint8_t>{tx.data(), ty.data(), 96, 6}, {.epochs = 8, .batch_size = 16});
  std::size_t frozen_moved = 0, adapters_moved = 0;
  for (std::size_t i = 0; i < adapted::param_count; ++i) {
    const bool trainable = i < L0::trainable_count ||
                           (i >= adapted::param_offset<2> && i < adapted::param_offset<2> + L2::trainable_count);
    if (trainable) adapters_moved += p[i] != before[i];
    else frozen_moved += p[i] != before[i];
  }
  CHECK(frozen_moved == 0);
  CHECK(adapters_moved == adapted::trainable_count);
  CHECK(hist.back().train_loss < hist.front().train_loss);
  // The optimizer state covers the adapters only (Adam: m and v per trainable parameter).
  const nn::trainable_state<nn::adam, adapted> st(nn::adam{});
  std::size_t moments = 0;
  for (const auto& s : st.states()) moments += s.first_moment().size() + s.second_moment().size();
  CHECK(moments == 2 * adapted::trainable_count);

  // load_lora_base: a trained plain network becomes the frozen base; with B = 0
  // (a fresh adapter) the adapted network computes exactly what the base does.
  nn::network<plain> base(11);
  nn::network<adapted> fresh(12);
  nn::load_lora_base(fresh, base);
  const std::vector<float> y_base(base.forward(xs.data(), 16, false), base.forward(xs.data(), 16, false) + 16 * 3);
  const float* y_fresh = fresh.forward(xs.data(), 16, false);
  CHECK(std::equal(y_base.begin(), y_base.end(), y_fresh));

  // Inside a residual block: the runs, merge and base loading recurse.
  using res_adapted = tl::sequential<tl::input<5>, nn::residual<nn::lora<tl::dense<5, 5>, 2>, nn::tanh>, tl::dense<5, 2>>;
  using res_plain = tl::sequential<tl::input<5>, nn::residual<tl::dense<5, 5>, nn::tanh>, tl::dense<5, 2>>;
  STATIC_REQUIRE(std::is_same_v<nn::merged_model_t<res_adapted>, res_plain>);
  STATIC_REQUIRE(res_adapted::trainable_ranges.size() == 2);
  STATIC_REQUIRE(res_adapted::trainable_count == 2 * (5 + 5) + 5 * 2 + 2);
  nn::network<res_adapted> rn(3);
  nn::network<res_plain> rbase(4);
  nn::load_lora_base(rn, rbase);
  const std::vector<float> yr_base(rbase.forward(xs.data(), 16, false), rbase.forward(xs.data(), 16, false) + 16 * 2);
  const std::vector<float> yr0(rn.forward(xs.data(), 16, false), rn.forward(xs.data(), 16, false) + 16 * 2);
  CHECK(yr0 == yr_base);  // B = 0, every other parameter loaded from the base
  using inner = res_adapted::layer<0>::layer<0>;
  for (std::size_t i = 0; i < 5 * 2; ++i) rn.parameters()[inner::b_offset + i] = g.normal(0.0f, 0.5f);
  const std::vector<float> yr(rn.forward(xs.data(), 16, false), rn.forward(xs.data(), 16, false) + 16 * 2);
  auto rmerged = nn::merge_lora(rn);
  const float* yr_merged = rmerged.forward(xs.data(), 16, false);
  double rerr = 0.0;
  for (std::size_t i = 0; i < 16 * 2; ++i)
    rerr = std::max(rerr, std::fabs(static_cast<double>(yr[i]) - yr_merged[i]) / (1.0 + std::fabs(yr[i])));
  CHECK(rerr <= 1e-5);
}
