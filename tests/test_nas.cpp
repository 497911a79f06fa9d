// Tests of include/tinylarge/nas: the search space, the cost model against
// the library's compile-time models, Pareto tools against brute force and
// hand-computed values, the supernet's gradients and weight sharing, the
// simulated int8 path against the library's int8 network, transfer, the
// strategies' determinism, the emitted header / JSON, and transfer on the
// traffic task (data/traffic.hpp).
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "tinylarge/data/traffic.hpp"
#include "tinylarge/nas/nas.hpp"
#include "tinylarge/nn/nn.hpp"

namespace nas = tl::nas;
namespace nn = tl::nn;

namespace {

using i8 = nas::layer_precision;

nas::genome make(std::vector<std::size_t> w, std::vector<i8> p) { return {std::move(w), std::move(p)}; }

// A small synthetic classification task: class c has its mean at a random
// point, samples add Gaussian noise (values roughly in [0, 1]).
struct blobs {
  std::vector<float> x;
  std::vector<std::uint8_t> y;
  std::size_t count = 0, features = 0;
  blobs(std::size_t n, std::size_t f, std::size_t classes, std::uint64_t seed, float noise = 0.15f) : count(n), features(f) {
    tl::rng g(7);  // the class means are the same for every seed
    std::vector<float> means(classes * f);
    for (float& m : means) m = g.uniform();
    tl::rng s(seed);
    for (std::size_t i = 0; i < n; ++i) {
      const auto c = static_cast<std::uint8_t>(s.uniform_int(static_cast<std::uint32_t>(classes)));
      y.push_back(c);
      for (std::size_t j = 0; j < f; ++j) x.push_back(means[c * f + j] + s.normal(0.0f, noise));
    }
  }
  nas::labelled_data view() const { return {x.data(), y.data(), count, features}; }
};

// The largest distance of a weight row (one output channel) from the int8 symmetric grid of its scale
// amax/127, in grid steps; 1 (off every grid) for an all-zero row.
double per_channel_grid_error(const float* row, std::size_t n) {
  float amax = 0.0f;
  for (std::size_t i = 0; i < n; ++i) amax = std::max(amax, std::fabs(row[i]));
  if (amax == 0.0f) return 1.0;
  double worst = 0.0;
  for (std::size_t i = 0; i < n; ++i) {
    const double k = static_cast<double>(row[i]) * 127.0 / static_cast<double>(amax);
    worst = std::max(worst, std::abs(k - std::round(k)));
  }
  return worst;
}

// Checks ∂L/∂θ_i of sub-network `g` (`accumulate_gradient` on `batch` rows) against central differences for
// each i in `indices`. A parameter with zero gradient and zero difference is outside the sub-network; one
// whose difference quotient depends on ε sits within ±ε of a relu kink and is skipped (counted).
struct gradient_check {
  std::size_t checked = 0, kinks = 0;
  std::set<std::size_t> outside;
};
gradient_check check_gradient(nas::mlp_supernet& net, const nas::genome& g, const float* x, const std::uint8_t* y,
                              std::size_t batch, const std::vector<std::size_t>& indices) {
  std::vector<float> grad(net.parameters().size(), 0.0f), dummy(grad.size());
  net.accumulate_gradient(g, x, y, batch, grad);
  auto central = [&](std::size_t i, float eps) {
    const float keep = net.parameters()[i];
    net.parameters()[i] = keep + eps;
    const double up = net.accumulate_gradient(g, x, y, batch, dummy);
    net.parameters()[i] = keep - eps;
    const double down = net.accumulate_gradient(g, x, y, batch, dummy);
    net.parameters()[i] = keep;
    return (up - down) / (2.0 * static_cast<double>(eps));
  };
  gradient_check c;
  for (const std::size_t i : indices) {
    const double fd = central(i, 1e-3f);
    if (fd == 0.0 && grad[i] == 0.0f) {
      c.outside.insert(i);
      continue;
    }
    if (std::abs(fd - central(i, 2.5e-4f)) > 0.05 * std::abs(fd) + 5e-4) {
      ++c.kinks;
      continue;
    }
    INFO("genome " << g.key() << " parameter " << i);
    CHECK(static_cast<double>(grad[i]) == Approx(fd).margin(1e-3).epsilon(2e-2));
    ++c.checked;
  }
  return c;
}

}  // namespace

// ---------------------------------------------------------------------------
// Space
// ---------------------------------------------------------------------------

TEST_CASE("nas space: size, sampling, mutation and crossover stay in the space", "[nas]") {
  nas::mlp_space s{.inputs = 10, .outputs = 3, .widths = {4, 8}, .min_depth = 1, .max_depth = 2};
  CHECK(s.size() == 2.0 * 4 + 4.0 * 8);  // d = 1: 2 widths · 2² precisions; d = 2: 2² · 2³
  // Enumerate by sampling: every genome of the 40 appears, none outside.
  tl::rng g(3);
  std::set<std::string> seen;
  for (int i = 0; i < 4000; ++i) {
    const nas::genome x = s.sample(g);
    REQUIRE(s.contains(x));
    seen.insert(x.key());
    const nas::genome m = s.mutate(x, g);
    REQUIRE(s.contains(m));
    REQUIRE_FALSE(m == x);
    REQUIRE(s.contains(s.crossover(x, m, g)));
  }
  CHECK(seen.size() == 40);
  CHECK(s.largest() == make({8, 8}, {i8::int8, i8::int8, i8::int8}));
  CHECK(s.smallest() == make({4}, {i8::int8, i8::int8}));
  CHECK_FALSE(s.contains(make({5}, {i8::int8, i8::int8})));
  CHECK_FALSE(s.contains(make({4}, {i8::int8})));
  CHECK(make({256, 64}, {i8::int8, i8::fp32, i8::int8}).key() == "256i-64f|i");
}

// ---------------------------------------------------------------------------
// Cost model against the compile-time models
// ---------------------------------------------------------------------------

TEST_CASE("nas costs: flash, arena and MACs equal the library's compile-time figures", "[nas]") {
  const nas::mlp_space s{};  // 784 → … → 5
  using m3 = tl::sequential<tl::dense<784, 256>, tl::relu, tl::dense<256, 64>, tl::relu, tl::dense<64, 5>>;
  using q3 = nn::quantized_network<m3, tl::int8_per_channel, nn::heap_storage>;
  const nas::genome all8 = make({256, 64}, {i8::int8, i8::int8, i8::int8});
  const nas::genome all32 = make({256, 64}, {i8::fp32, i8::fp32, i8::fp32});
  CHECK(nas::flash_bytes(s, all8) == q3::parameter_bytes);
  CHECK(nas::arena_bytes(s, all8) == m3::arena_bytes<tl::int8_per_channel>);
  CHECK(nas::arena_bytes(s, all8) == q3::arena_bytes);
  CHECK(nas::flash_bytes(s, all32) == m3::param_count * 4);
  CHECK(nas::arena_bytes(s, all32) == m3::arena_bytes<tl::fp32>);
  CHECK(nas::macs(s, all8) == m3::macs);
  CHECK(nas::parameter_count(s, all8) == m3::param_count);

  using lenet = tl::sequential<tl::dense<784, 300>, tl::relu, tl::dense<300, 100>, tl::relu, tl::dense<100, 5>>;
  const nas::genome l8 = make({300, 100}, {i8::int8, i8::int8, i8::int8});
  CHECK(nas::flash_bytes(s, l8) == nn::quantized_network<lenet, tl::int8_per_channel, nn::heap_storage>::parameter_bytes);

  // Mixed: fp32 first layer (fp32 input, fp32 output), int8 rest.
  const nas::genome mixed = make({256, 64}, {i8::fp32, i8::int8, i8::int8});
  CHECK(nas::flash_bytes(s, mixed) == 4 * (784 * 256 + 256) + (256 * 64 + 12 * 64) + (64 * 5 + 12 * 5));
  CHECK(nas::arena_bytes(s, mixed) == 4 * 784 + 4 * 256);

  // Constraints: LeNet-300-100 int8 (270 560 bytes) does not fit 256 KiB.
  nas::objectives o;
  nas::apply_costs(s, l8, nas::cortex_m4(), o);
  CHECK(o.flash_bytes == 270'560);
  CHECK_FALSE(o.feasible());
  CHECK(o.violation == Approx(270'560.0 / 262'144.0 - 1.0));
  nas::apply_costs(s, all8, nas::cortex_m4(), o);
  CHECK(o.feasible());
  const nas::device_profile d = nas::cortex_m4();
  const double moved = static_cast<double>(q3::parameter_bytes + (784 + 256) + (256 + 64) + (64 + 5));
  CHECK(o.energy_uj == Approx((static_cast<double>(m3::macs) * d.pj_per_mac + moved * d.pj_per_byte) * 1e-6));
}

// ---------------------------------------------------------------------------
// Pareto tools
// ---------------------------------------------------------------------------

TEST_CASE("nas non-dominated sorting equals brute-force peeling on random points", "[nas]") {
  tl::rng g(11);
  for (int trial = 0; trial < 30; ++trial) {
    const std::size_t n = 1 + g.uniform_int(40), m = 2 + g.uniform_int(2);
    std::vector<nas::point> pts(n, nas::point(m));
    std::vector<double> viol(n, 0.0);
    for (auto& p : pts)
      for (double& v : p) v = static_cast<double>(g.uniform_int(6));  // small grid: many ties
    const bool constrained = trial % 2 == 1;
    if (constrained)
      for (double& v : viol) v = g.uniform_int(3) == 0 ? static_cast<double>(g.uniform_int(3)) : 0.0;
    const auto fronts = nas::non_dominated_sort(pts, constrained ? viol : std::vector<double>{});
    // Brute force: repeatedly remove the set of points no remaining point dominates.
    auto dom = [&](std::size_t a, std::size_t b) {
      return constrained ? nas::constrained_dominates(pts[a], viol[a], pts[b], viol[b]) : nas::dominates(pts[a], pts[b]);
    };
    std::vector<std::size_t> left(n);
    for (std::size_t i = 0; i < n; ++i) left[i] = i;
    std::size_t f = 0;
    while (!left.empty()) {
      std::vector<std::size_t> front, rest;
      for (std::size_t p : left) {
        bool d = false;
        for (std::size_t q : left) d = d || dom(q, p);
        (d ? rest : front).push_back(p);
      }
      REQUIRE(f < fronts.size());
      CHECK(fronts[f] == front);
      left = rest;
      ++f;
    }
    CHECK(f == fronts.size());
  }
}

TEST_CASE("nas crowding distance on a hand-checked front", "[nas]") {
  // Front (minimise both): (0,4) (1,2) (2,1) (4,0). Ranges 4 and 4.
  // (1,2): (2−0)/4 + (4−1)/4 = 1.25; (2,1): (4−1)/4 + (2−0)/4 = 1.25; extremes ∞.
  const std::vector<nas::point> pts{{2, 1}, {0, 4}, {4, 0}, {1, 2}};
  const auto d = nas::crowding_distance(pts, {0, 1, 2, 3});
  CHECK(d[0] == Approx(1.25));
  CHECK(std::isinf(d[1]));
  CHECK(std::isinf(d[2]));
  CHECK(d[3] == Approx(1.25));
  // Uneven spacing: (0,3) (1,2.5) (3,0): the middle gets 3/3 + 3/3 = 2.
  const std::vector<nas::point> q{{0, 3}, {1, 2.5}, {3, 0}};
  CHECK(nas::crowding_distance(q, {0, 1, 2})[1] == Approx(2.0));
  CHECK(nas::pareto_front({{1, 1}, {0, 2}, {2, 2}, {1, 1}}) == std::vector<std::size_t>{0, 1, 3});
}

TEST_CASE("nas 2-D hypervolume: hand-computed value and a Monte-Carlo estimate", "[nas]") {
  // Points (1,3) (2,2) (3,1), dominated (3,3), outside (5,0.5); reference (4,4):
  // staircase area = (2−1)·(4−3) + (3−2)·(4−2) + (4−3)·(4−1) = 1 + 2 + 3 = 6.
  const std::vector<nas::point> pts{{3, 1}, {1, 3}, {2, 2}, {3, 3}, {5, 0.5}};
  CHECK(nas::hypervolume_2d(pts, {4, 4}) == Approx(6.0));
  CHECK(nas::hypervolume_2d({}, {4, 4}) == 0.0);
  CHECK(nas::hypervolume_2d({{0, 0}}, {2, 3}) == Approx(6.0));

  tl::rng g(5);
  for (int trial = 0; trial < 3; ++trial) {
    std::vector<nas::point> r;
    for (int i = 0; i < 12; ++i) r.push_back({g.uniform(), g.uniform()});
    const double hv = nas::hypervolume_2d(r, {1, 1});
    std::size_t in = 0;
    const std::size_t samples = 200'000;
    for (std::size_t s = 0; s < samples; ++s) {
      const double x = g.uniform(), y = g.uniform();
      bool covered = false;
      for (const auto& p : r) covered = covered || (p[0] <= x && p[1] <= y);
      in += covered ? 1 : 0;
    }
    const double mc = static_cast<double>(in) / static_cast<double>(samples);
    CHECK(std::abs(mc - hv) < 4.0 * std::sqrt(hv * (1 - hv) / static_cast<double>(samples)) + 1e-3);
  }
}

// ---------------------------------------------------------------------------
// Supernet
// ---------------------------------------------------------------------------

TEST_CASE("nas supernet: gradients of sub-networks against finite differences", "[nas]") {
  const nas::mlp_space s{.inputs = 6, .outputs = 3, .widths = {3, 5}, .min_depth = 1, .max_depth = 3};
  nas::mlp_supernet net(s, 2);
  // Zero-mean inputs, so that the narrow sub-networks have live relu units.
  std::vector<float> x(16 * 6);
  std::vector<std::uint8_t> y(16);
  tl::rng r(9);
  for (float& v : x) v = r.normal(0.0f, 1.0f);
  for (auto& v : y) v = static_cast<std::uint8_t>(r.uniform_int(3));
  // Nonzero biases: with zero biases a unit whose inputs are all zero sits exactly on the relu kink.
  for (float& p : net.parameters()) p += r.normal(0.0f, 0.1f);
  for (const nas::genome& g : {make({5, 3}, {i8::fp32, i8::fp32, i8::fp32}), make({3}, {i8::fp32, i8::fp32}),
                               make({5, 5, 3}, {i8::fp32, i8::fp32, i8::fp32, i8::fp32})}) {
    std::vector<std::size_t> all(net.parameters().size());
    for (std::size_t i = 0; i < all.size(); ++i) all[i] = i;
    const gradient_check c = check_gradient(net, g, x.data(), y.data(), 16, all);
    CHECK(c.kinks <= 3);
    CHECK(c.checked > 15);           // the sub-network's parameters
    CHECK(c.outside.size() > 10);    // the rest of the supernet: no gradient, no effect
  }
}

TEST_CASE("nas supernet: the distillation gradient against finite differences", "[nas]") {
  const nas::mlp_space s{.inputs = 5, .outputs = 4, .widths = {3, 6}, .min_depth = 1, .max_depth = 2};
  nas::mlp_supernet net(s, 3);
  tl::rng r(4);
  std::vector<float> x(8 * 5), teacher(8 * 4);
  for (float& v : x) v = r.normal(0.0f, 1.0f);
  for (std::size_t b = 0; b < 8; ++b) {  // a random probability vector per row
    float sum = 0;
    for (std::size_t j = 0; j < 4; ++j) sum += teacher[b * 4 + j] = r.uniform() + 0.05f;
    for (std::size_t j = 0; j < 4; ++j) teacher[b * 4 + j] /= sum;
  }
  for (float& p : net.parameters()) p += r.normal(0.0f, 0.1f);
  const nas::genome g = make({6, 3}, {i8::fp32, i8::fp32, i8::fp32});
  std::vector<float> grad(net.parameters().size(), 0.0f), dummy(grad.size());
  net.accumulate_distillation_gradient(g, x.data(), teacher.data(), 8, grad);
  auto central = [&](std::size_t i, float eps) {
    const float keep = net.parameters()[i];
    net.parameters()[i] = keep + eps;
    const double up = net.accumulate_distillation_gradient(g, x.data(), teacher.data(), 8, dummy);
    net.parameters()[i] = keep - eps;
    const double down = net.accumulate_distillation_gradient(g, x.data(), teacher.data(), 8, dummy);
    net.parameters()[i] = keep;
    return (up - down) / (2.0 * static_cast<double>(eps));
  };
  std::size_t checked = 0, kinks = 0;
  for (std::size_t i = 0; i < grad.size(); ++i) {
    const double fd = central(i, 1e-3f);
    if (fd == 0.0 && grad[i] == 0.0f) continue;
    if (std::abs(fd - central(i, 2.5e-4f)) > 0.05 * std::abs(fd) + 5e-4) {
      ++kinks;
      continue;
    }
    INFO("parameter " << i);
    CHECK(static_cast<double>(grad[i]) == Approx(fd).margin(1e-3).epsilon(2e-2));
    ++checked;
  }
  CHECK(checked > 30);
  CHECK(kinks <= 3);
  // Soft targets equal to one-hot labels give the labelled loss and gradient.
  std::vector<std::uint8_t> y(8);
  std::vector<float> onehot(8 * 4, 0.0f);
  for (std::size_t b = 0; b < 8; ++b) onehot[b * 4 + (y[b] = static_cast<std::uint8_t>(b % 4))] = 1.0f;
  std::vector<float> g1(grad.size(), 0.0f), g2(grad.size(), 0.0f);
  const double l1 = net.accumulate_gradient(g, x.data(), y.data(), 8, g1);
  const double l2 = net.accumulate_distillation_gradient(g, x.data(), onehot.data(), 8, g2);
  CHECK(l1 == Approx(l2).epsilon(1e-6));
  for (std::size_t i = 0; i < g1.size(); ++i) CHECK(g1[i] == Approx(g2[i]).margin(1e-6));
}

TEST_CASE("nas supernet: a sub-network is the first units of each shared layer", "[nas]") {
  const nas::mlp_space s{.inputs = 7, .outputs = 3, .widths = {2, 4, 6}, .min_depth = 1, .max_depth = 2};
  nas::mlp_supernet net(s, 4);
  const blobs data(5, 7, 3, 1);
  const nas::genome g = make({4, 2}, {i8::fp32, i8::fp32, i8::fp32});
  std::vector<float> z(5 * 3);
  net.logits(g, data.x.data(), 5, z.data());
  // Naive loops over the shared matrices: layer l uses rows [0, w_l) and columns [0, w_{l−1}).
  const auto p = net.parameters();
  for (std::size_t r = 0; r < 5; ++r) {
    std::vector<double> a(data.x.begin() + static_cast<std::ptrdiff_t>(r * 7), data.x.begin() + static_cast<std::ptrdiff_t>(r * 7 + 7));
    for (std::size_t l = 0; l < 3; ++l) {
      const std::size_t L = l == 2 ? s.max_depth : l;  // the head is supernet layer max_depth
      const std::size_t out = l == 2 ? 3 : g.widths[l];
      std::vector<double> b(out);
      for (std::size_t o = 0; o < out; ++o) {
        double acc = p[net.weight_offset(L) + net.rows(L) * net.cols(L) + o];
        for (std::size_t i = 0; i < a.size(); ++i) acc += static_cast<double>(p[net.weight_offset(L) + o * net.cols(L) + i]) * a[i];
        b[o] = l == 2 ? acc : std::max(acc, 0.0);
      }
      a = b;
    }
    for (std::size_t j = 0; j < 3; ++j) CHECK(z[r * 3 + j] == Approx(a[j]).margin(1e-5));
  }
  // The inference path (compact copies, dense_f32) gives the same hidden output.
  const std::vector<float> f = net.body_features(g, data.x.data(), 5, 5);
  std::vector<float> w, b;
  net.hidden_layer(g, 1, w, b);
  CHECK(f.size() == 5 * 2);
  CHECK(w.size() == 2 * 4);
}

TEST_CASE("nas supernet: sandwich training teaches small and large sub-networks", "[nas]") {
  const nas::mlp_space s{.inputs = 12, .outputs = 4, .widths = {4, 16, 32}, .min_depth = 1, .max_depth = 2};
  nas::mlp_supernet net(s, 1);
  const blobs train(800, 12, 4, 1, 0.25f), test(400, 12, 4, 2, 0.25f);
  auto accuracy = [&](const nas::genome& g) {
    std::vector<float> z(test.count * 4);
    net.logits(g, test.x.data(), test.count, z.data());
    std::size_t hits = 0;
    for (std::size_t i = 0; i < test.count; ++i) {
      const auto* zi = z.data() + i * 4;
      hits += static_cast<std::size_t>(std::max_element(zi, zi + 4) - zi) == test.y[i] ? 1 : 0;
    }
    return static_cast<double>(hits) / static_cast<double>(test.count);
  };
  const double before = accuracy(s.smallest());
  const auto history = net.train(train.view(), {.epochs = 20, .batch_size = 32, .learning_rate = 3e-3f, .seed = 3});
  REQUIRE(history.size() == 20);
  CHECK(history.back() < history.front());
  CHECK(accuracy(s.smallest()) > 0.6);  // chance is 0.25
  CHECK(accuracy(s.largest()) > 0.8);
  CHECK(accuracy(make({16, 4}, {i8::fp32, i8::fp32, i8::fp32})) > 0.8);
  CHECK(accuracy(s.smallest()) > before);
  // Reproducible: the same seeds give the same weights bit for bit (two fresh runs of 3 epochs;
  // the 20-epoch run above is not repeated: under the sanitizers it is most of this file's time).
  nas::mlp_supernet once(s, 1), again(s, 1);
  once.train(train.view(), {.epochs = 3, .batch_size = 32, .learning_rate = 3e-3f, .seed = 3});
  again.train(train.view(), {.epochs = 3, .batch_size = 32, .learning_rate = 3e-3f, .seed = 3});
  CHECK(std::equal(once.parameters().begin(), once.parameters().end(), again.parameters().begin()));
  CHECK_FALSE(std::equal(once.parameters().begin(), once.parameters().end(), net.parameters().begin()));
  // In-place distillation trains them as well (and changes the weights).
  nas::mlp_supernet distilled(s, 1);
  distilled.train(train.view(), {.epochs = 20, .batch_size = 32, .learning_rate = 3e-3f, .seed = 3, .inplace_distillation = true});
  CHECK_FALSE(std::equal(net.parameters().begin(), net.parameters().end(), distilled.parameters().begin()));
  std::swap(net, distilled);
  CHECK(accuracy(s.smallest()) > 0.6);
  CHECK(accuracy(s.largest()) > 0.8);
}

TEST_CASE("nas simulated int8 agrees with the library's int8 network", "[nas]") {
  // A trained sub-network, all int8, against nn::quantized_network of the
  // same sequential<> type with the same weights after PTQ on the same rows.
  const nas::mlp_space s{.inputs = 12, .outputs = 4, .widths = {16, 32}, .min_depth = 1, .max_depth = 1};
  nas::mlp_supernet net(s, 1);
  const blobs train(600, 12, 4, 1, 0.25f), test(300, 12, 4, 2, 0.25f);
  net.train(train.view(), {.epochs = 6, .batch_size = 32, .learning_rate = 3e-3f, .seed = 3});
  const blobs target(60, 12, 4, 5, 0.25f);
  nas::transfer_evaluator ev(net, nas::cortex_m4(), target.view(), test.view());
  const nas::genome g8 = make({16}, {i8::int8, i8::int8});
  const nas::genome g32 = make({16}, {i8::fp32, i8::fp32});
  const nas::transferred_model m8 = ev.transfer(g8, test.view());
  const nas::transferred_model m32 = ev.transfer(g32, test.view());
  CHECK(m32.accuracy > 0.8);
  CHECK(std::abs(m8.accuracy - m32.accuracy) < 0.05);
  // The fp32 transferred parameters in the compile-time network, quantized by the library.
  using model = tl::sequential<tl::dense<12, 16>, tl::relu, tl::dense<16, 4>>;
  REQUIRE(m32.parameters.size() == model::param_count);
  nn::network<model> fp;
  std::copy(m32.parameters.begin(), m32.parameters.end(), fp.parameters().begin());
  auto q = std::make_unique<nn::quantized_network<model, tl::int8_per_channel, nn::heap_storage>>();
  nn::quantize_post_training(fp, target.x.data(), target.count, *q);
  std::size_t hits = 0;
  for (std::size_t i = 0; i < test.count; ++i) hits += q->classify(test.x.data() + i * 12) == test.y[i] ? 1 : 0;
  const double library_int8 = static_cast<double>(hits) / static_cast<double>(test.count);
  // The simulated int8 (which also re-trains the head on int8 features) is within 5 points of the library's PTQ.
  CHECK(std::abs(m8.accuracy - library_int8) < 0.05);
  // An int8 layer's weights are integer multiples of its row's scale amax/127 (per-channel symmetric).
  for (std::size_t o = 0; o < 16; ++o) CHECK(per_channel_grid_error(m8.parameters.data() + o * 12, 12) < 1e-3);
  // … whereas the fp32 genome's are not.
  std::size_t off_grid = 0;
  for (std::size_t o = 0; o < 16; ++o) {
    const float* row = m32.parameters.data() + o * 12;
    float amax = 0.0f;
    for (std::size_t i = 0; i < 12; ++i) amax = std::max(amax, std::fabs(row[i]));
    for (std::size_t i = 0; i < 12; ++i) {
      const double k = static_cast<double>(row[i]) * 127.0 / static_cast<double>(amax);
      off_grid += std::abs(k - std::round(k)) > 1e-2 ? 1 : 0;
    }
  }
  CHECK(off_grid > 100);
}

// ---------------------------------------------------------------------------
// Transfer evaluator and strategies
// ---------------------------------------------------------------------------

namespace {
// A deterministic synthetic evaluator: accuracy rises with log-width and
// depth, flash from the real cost model.
struct synthetic {
  nas::mlp_space space;
  nas::device_profile device;
  std::size_t calls = 0;
  nas::objectives operator()(const nas::genome& g) {
    ++calls;
    nas::objectives o;
    nas::apply_costs(space, g, device, o);
    double a = 0.5;
    for (std::size_t l = 0; l < g.depth(); ++l) a += 0.05 * std::log2(static_cast<double>(g.widths[l])) / static_cast<double>(l + 1);
    for (i8 p : g.precisions) a -= p == i8::int8 ? 0.005 : 0.0;
    o.accuracy = std::min(a, 0.99);
    return o;
  }
};
bool same(const std::vector<nas::candidate>& a, const std::vector<nas::candidate>& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (!(a[i].g == b[i].g)) return false;
  return true;
}
}  // namespace

TEST_CASE("nas strategies: exact budgets, deterministic for a seed, different across seeds", "[nas]") {
  const nas::mlp_space s{};
  synthetic ev{s, nas::cortex_m4()};
  const auto r1 = nas::random_search(s, ev, {.budget = 60, .seed = 1});
  const auto r2 = nas::random_search(s, ev, {.budget = 60, .seed = 1});
  const auto r3 = nas::random_search(s, ev, {.budget = 60, .seed = 2});
  CHECK(r1.size() == 60);
  CHECK(same(r1, r2));
  CHECK_FALSE(same(r1, r3));
  ev.calls = 0;
  const auto e1 = nas::regularized_evolution(s, ev, {.budget = 80, .population = 10, .sample = 3, .seed = 1});
  CHECK(ev.calls == 80);
  const auto e2 = nas::regularized_evolution(s, ev, {.budget = 80, .population = 10, .sample = 3, .seed = 1});
  const auto e3 = nas::regularized_evolution(s, ev, {.budget = 80, .population = 10, .sample = 3, .seed = 9});
  CHECK(same(e1, e2));
  CHECK_FALSE(same(e1, e3));
  // After the initial population every genome is a one-edit mutation of an earlier one.
  for (std::size_t i = 10; i < e1.size(); ++i) {
    bool parent = false;
    for (std::size_t j = 0; j < i && !parent; ++j) {
      const auto& a = e1[i].g;
      const auto& b = e1[j].g;
      std::size_t diff = 0;
      if (a.depth() == b.depth()) {
        for (std::size_t l = 0; l < a.depth(); ++l) diff += a.widths[l] != b.widths[l] || a.precisions[l] != b.precisions[l];
        diff += a.precisions.back() != b.precisions.back();
        parent = diff == 1;
      } else {
        parent = a.depth() + 1 == b.depth() || b.depth() + 1 == a.depth();  // an insertion or a removal
      }
    }
    CHECK(parent);
  }
  ev.calls = 0;
  const auto n1 = nas::nsga2(s, ev, {.budget = 70, .population = 10, .seed = 1});
  CHECK(ev.calls == 70);
  CHECK(same(n1, nas::nsga2(s, ev, {.budget = 70, .population = 10, .seed = 1})));
  CHECK_FALSE(same(n1, nas::nsga2(s, ev, {.budget = 70, .population = 10, .seed = 4})));
  // Fronts are feasible, non-dominated and sorted by flash; hypervolumes lie in [0, 1].
  for (const auto* h : {&r1, &e1, &n1}) {
    const auto front = nas::feasible_front(*h);
    REQUIRE_FALSE(front.empty());
    for (std::size_t k = 0; k < front.size(); ++k) {
      CHECK((*h)[front[k]].obj.feasible());
      if (k > 0) CHECK((*h)[front[k - 1]].obj.flash_bytes <= (*h)[front[k]].obj.flash_bytes);
      for (const auto& c : *h)
        if (c.obj.feasible()) CHECK_FALSE(nas::dominates(nas::accuracy_flash(c.obj), nas::accuracy_flash((*h)[front[k]].obj)));
    }
    const double hv = nas::front_hypervolume(*h, s.inputs * 1000);
    CHECK(hv > 0.0);
    CHECK(hv < 1.0);
  }
}

TEST_CASE("nas transfer evaluator: caching, costs, and the emitted header, JSON and plot", "[nas]") {
  const nas::mlp_space s{.inputs = 12, .outputs = 4, .widths = {8, 16}, .min_depth = 1, .max_depth = 2};
  nas::mlp_supernet net(s, 1);
  const blobs src(400, 12, 4, 1, 0.25f), tgt(40, 12, 4, 2, 0.25f), val(200, 12, 4, 3, 0.25f);
  net.train(src.view(), {.epochs = 3, .batch_size = 32, .learning_rate = 3e-3f, .seed = 1});
  nas::transfer_evaluator ev(net, nas::cortex_m4(), tgt.view(), val.view(), {}, /*measure_latency=*/true);
  const nas::genome g = make({16, 8}, {i8::int8, i8::fp32, i8::int8});
  const nas::objectives a = ev(g);
  const nas::objectives b = ev(g);
  CHECK(ev.calls() == 2);
  CHECK(ev.distinct() == 1);
  CHECK(a.accuracy == b.accuracy);
  CHECK(a.accuracy > 0.5);
  CHECK(a.latency_us > 0.0);
  CHECK(a.flash_bytes == nas::flash_bytes(s, g));
  const auto history = nas::random_search(s, ev, {.budget = 12, .seed = 2});
  // The transfer of the evaluator's genome on its own rows reproduces its accuracy.
  CHECK(ev.transfer(g, val.view()).accuracy == a.accuracy);

  // Fine-tuning: zero epochs is the plain transfer; epochs fit the target rows at least as well and change the body.
  const nas::transferred_model t0 = ev.transfer(g, tgt.view());
  const nas::transferred_model f0 = ev.fine_tune(g, tgt.view(), {.epochs = 0});
  CHECK(f0.accuracy == t0.accuracy);
  CHECK(f0.parameters == t0.parameters);
  const nas::transferred_model f30 = ev.fine_tune(g, tgt.view(), {.epochs = 30, .batch_size = 8, .learning_rate = 1e-3f});
  CHECK(f30.accuracy >= t0.accuracy);
  CHECK_FALSE(std::equal(f30.parameters.begin(), f30.parameters.begin() + 16 * 12, t0.parameters.begin()));
  CHECK(ev.fine_tune(g, val.view(), {.epochs = 30, .batch_size = 8, .learning_rate = 1e-3f}).accuracy > 0.5);

  const nas::transferred_model m = ev.transfer(g, val.view());
  const std::string h = nas::emit_header(s, m, "chosen");
  CHECK(h.find("using model = ::tinylarge::nn::sequential<::tinylarge::nn::dense<12, 16>, ::tinylarge::nn::relu, "
               "::tinylarge::nn::dense<16, 8>, ::tinylarge::nn::relu, ::tinylarge::nn::dense<8, 4>>;") != std::string::npos);
  CHECK(h.find("{\"int8\", \"fp32\", \"int8\"}") != std::string::npos);
  CHECK(std::count(h.begin(), h.end(), ',') >= static_cast<std::ptrdiff_t>(nas::parameter_count(s, g)));
  const std::string j = nas::front_json(history, ev.device(), 262'144, "random");
  CHECK(j.find("\"strategy\": \"random\"") != std::string::npos);
  CHECK(j.find("\"front\": [\n    {\"genome\"") != std::string::npos);
  // The plot: one grey dot per feasible evaluation, a cross per infeasible one, a blue dot and a
  // label per front member, the title escaped.
  const std::string svg = nas::front_svg(history, ev.device(), "a <plot> & its front");
  auto count = [&](const std::string& needle) {
    std::size_t n = 0;
    for (std::size_t at = svg.find(needle); at != std::string::npos; at = svg.find(needle, at + 1)) ++n;
    return n;
  };
  const auto front = nas::feasible_front(history);
  const auto feasible = static_cast<std::size_t>(
      std::count_if(history.begin(), history.end(), [](const nas::candidate& c) { return c.obj.feasible(); }));
  CHECK(svg.rfind("<svg xmlns=\"http://www.w3.org/2000/svg\"", 0) == 0);
  CHECK(svg.size() > 7);
  CHECK(svg.substr(svg.size() - 7) == "</svg>\n");
  CHECK(count("<circle") == feasible + front.size());
  CHECK(count("l6 6m0 -6l-6 6") == history.size() - feasible);
  CHECK(count("<svg") == count("</svg>"));
  CHECK(count("<g") == count("</g>"));
  CHECK(svg.find("a &lt;plot&gt; &amp; its front") != std::string::npos);
  for (std::size_t i : front) CHECK(svg.find(">" + history[i].g.key() + "</text>") != std::string::npos);
#if TINYLARGE_HAS_EXCEPTIONS
  CHECK_THROWS_AS(nas::front_svg({}, ev.device(), "empty"), tl::invalid_argument);
#endif
  nas::transferred_model bad = m;
  bad.parameters.pop_back();
#if TINYLARGE_HAS_EXCEPTIONS
  CHECK_THROWS_AS(nas::emit_header(s, bad, "x"), tl::error);
#endif
}

TEST_CASE("nas on the traffic task: the source supernet's features transfer across the domain shift", "[nas][traffic]") {
  // Source: campus flows; target: 10 labelled cellular flows per class. A head on the
  // transferred features must beat the same head trained on the raw features of those
  // 60 flows (what a device without a source model could do) on 1 000 other target flows.
  namespace td = tl::data;
  constexpr std::size_t F = td::traffic_features, C = td::traffic_classes;
  const auto src = td::generate_traffic(td::campus_wired(), {.flows = 6000, .seed = 11});
  const auto pool = td::generate_traffic(td::cellular_edge(), {.flows = 2000, .seed = 12});
  std::vector<float> tx, vx;
  std::vector<std::uint8_t> ty, vy;
  std::vector<std::size_t> per(C, 0);
  for (std::size_t i = 0; i < pool.count; ++i) {
    const bool train = per[pool.y[i]] < 10;
    per[pool.y[i]] += train ? 1 : 0;
    auto& x = train ? tx : vx;
    auto& y = train ? ty : vy;
    if (!train && vy.size() == 1000) continue;
    x.insert(x.end(), pool.x.begin() + static_cast<std::ptrdiff_t>(i * F), pool.x.begin() + static_cast<std::ptrdiff_t>((i + 1) * F));
    y.push_back(pool.y[i]);
  }
  REQUIRE(ty.size() == 60);
  REQUIRE(vy.size() == 1000);
  const nas::labelled_data tgt{tx.data(), ty.data(), ty.size(), F}, val{vx.data(), vy.data(), vy.size(), F};

  const nas::mlp_space s{.inputs = F, .outputs = C, .widths = {32, 64}, .min_depth = 1, .max_depth = 2};
  nas::mlp_supernet net(s, 3);
  net.train({src.x.data(), src.y.data(), src.count, F}, {.epochs = 8, .batch_size = 64, .learning_rate = 1e-3f, .seed = 3});
  nas::transfer_evaluator ev(net, nas::cortex_m4(), tgt, val);
  const nas::objectives transferred = ev(make({64, 32}, {i8::fp32, i8::fp32, i8::fp32}));
  const nas::head raw = nas::train_head(tx.data(), ty.data(), ty.size(), F, C, {}, false, 0.0f);
  const double raw_acc = nas::head_accuracy(raw, vx.data(), vy.data(), vy.size());
  INFO("transferred " << transferred.accuracy << ", head on raw features " << raw_acc);
  CHECK(transferred.accuracy > raw_acc + 0.05);
  CHECK(transferred.accuracy > 0.85);
}

// ---------------------------------------------------------------------------
// Compression level per layer (magnitude-pruning sparsity)
// ---------------------------------------------------------------------------

TEST_CASE("nas compression: sparsity per layer in sampling, mutation, crossover and the key", "[nas]") {
  nas::mlp_space s{.inputs = 10, .outputs = 3, .widths = {4, 8}, .min_depth = 1, .max_depth = 2};
  s.sparsities = {0, 50, 75, 90};
  // d = 1: 2 widths · (2 precisions · 4 sparsities)²; d = 2: 2² · 8³
  CHECK(s.size() == 2.0 * 64 + 4.0 * 512);
  tl::rng g(5);
  std::set<std::string> seen;
  std::set<unsigned> mutated_sparsities;
  for (int i = 0; i < 60000; ++i) {
    const nas::genome x = s.sample(g);
    REQUIRE(s.contains(x));
    seen.insert(x.key());
    const nas::genome m = s.mutate(x, g);
    REQUIRE(s.contains(m));
    REQUIRE_FALSE(m == x);
    if (m.widths == x.widths && m.precisions == x.precisions)  // a sparsity edit: exactly one layer changed
      for (std::size_t l = 0; l <= m.depth(); ++l)
        if (m.sparsity(l) != x.sparsity(l)) mutated_sparsities.insert(m.sparsity(l));
    const nas::genome c = s.crossover(x, m, g);
    REQUIRE(s.contains(c));
    // Every layer's sparsity comes from a parent's layer at the same position (the head from a head).
    const auto from = [&](const nas::genome& p, std::size_t l, bool head) {
      return head ? c.sparsity(l) == p.sparsity(p.depth()) : l < p.depth() && c.sparsity(l) == p.sparsity(l);
    };
    for (std::size_t l = 0; l <= c.depth(); ++l) REQUIRE((from(x, l, l == c.depth()) || from(m, l, l == c.depth())));
  }
  CHECK(seen.size() == 2176);  // every genome of the space was drawn
  CHECK(mutated_sparsities == std::set<unsigned>{0, 50, 75, 90});
  // The key shows a non-zero sparsity after the precision; an empty sparsity list is all zeros.
  const nas::genome p{{256, 64}, {i8::int8, i8::fp32, i8::int8}, {75, 0, 50}};
  CHECK(p.key() == "256i75-64f|i50");
  CHECK(make({256, 64}, {i8::int8, i8::fp32, i8::int8}) == nas::genome{{256, 64}, {i8::int8, i8::fp32, i8::int8}, {0, 0, 0}});
  CHECK_FALSE(p == make({256, 64}, {i8::int8, i8::fp32, i8::int8}));
  CHECK(s.contains(nas::genome{{8}, {i8::int8, i8::fp32}, {90, 50}}));
  CHECK_FALSE(s.contains(nas::genome{{8}, {i8::int8, i8::fp32}, {60, 50}}));  // 60 % is not a level of the space
  CHECK_FALSE(s.contains(nas::genome{{8}, {i8::int8, i8::fp32}, {90}}));      // one sparsity per dense layer
  // The default space searches dense models only and rejects pruned genomes.
  CHECK_FALSE(nas::mlp_space{}.contains(nas::genome{{256}, {i8::int8, i8::int8}, {50, 0}}));
  CHECK(nas::mlp_space{}.contains(nas::genome{{256}, {i8::int8, i8::int8}, {0, 0}}));
#if TINYLARGE_HAS_EXCEPTIONS
  nas::mlp_space bad = s;
  bad.sparsities = {0, 100};
  CHECK_THROWS_AS(bad.validate(), tl::invalid_argument);
  bad.sparsities = {};
  CHECK_THROWS_AS(bad.validate(), tl::invalid_argument);
#endif
}

TEST_CASE("nas compression: flash and MACs of pruned layers are the library's CSR storage", "[nas]") {
  const nas::mlp_space s{};  // 784 → … → 5
  const nas::genome dense = make({256, 64}, {i8::int8, i8::int8, i8::int8});
  const nas::genome g75{{256, 64}, {i8::int8, i8::int8, i8::int8}, {75, 0, 0}};
  // 784·256 = 200 704 weights, 75 %: 150 528 pruned, 50 176 kept; CSR: a value and a gap byte per kept
  // weight and 257 u32 row offsets instead of 200 704 dense int8 bytes (the 12·256 bytes of biases and
  // requantization arrays are the same in both forms).
  CHECK(nas::flash_bytes(s, dense) - nas::flash_bytes(s, g75) == 200'704 - (2 * 50'176 + 4 * 257));
  CHECK(nas::macs(s, dense) - nas::macs(s, g75) == 150'528);
  CHECK(nas::layer_storage_of(s, g75, 0).csr);
  CHECK_FALSE(nas::layer_storage_of(s, g75, 1).csr);
  // 50 % of an int8 layer: the CSR (2 bytes per kept weight + row offsets) is larger than dense, so the
  // layer stays dense.
  const nas::genome g50{{256, 64}, {i8::int8, i8::int8, i8::int8}, {50, 0, 0}};
  CHECK_FALSE(nas::layer_storage_of(s, g50, 0).csr);
  CHECK(nas::flash_bytes(s, g50) == nas::flash_bytes(s, dense));
  // fp32 at 90 %: round(0.9 · 200 704) = 180 634 pruned, 20 070 kept at 4 + 1 bytes.
  const nas::genome f32{{256, 64}, {i8::fp32, i8::int8, i8::int8}, {0, 0, 0}};
  const nas::genome f90{{256, 64}, {i8::fp32, i8::int8, i8::int8}, {90, 0, 0}};
  CHECK(nas::flash_bytes(s, f32) - nas::flash_bytes(s, f90) == 4 * 200'704 - (5 * 20'070 + 4 * 257));

  // The count without weights is relative_csr::storage_bits of the library's CSR of magnitude-pruned
  // weights (rows shorter than 256 columns: no fillers); with the weights it is built from them.
  const nas::mlp_space small{.inputs = 100, .outputs = 3, .widths = {64}, .min_depth = 1, .max_depth = 1};
  for (const i8 prec : {i8::fp32, i8::int8}) {
    const nas::genome q{{64}, {prec, i8::fp32}, {75, 0}};
    std::vector<float> w(64 * 100);
    tl::rng r(3);
    for (float& v : w) v = r.normal(0.0f, 1.0f);
    std::vector<std::uint8_t> mask(w.size());
    tl::compress::prune_by_magnitude(std::span<float>(w), 0.75, mask);
    const tl::compress::matrix_ref<const float> wm{w.data(), 64, 100};
    const auto csr = tl::compress::to_relative_csr(wm, 8);
    REQUIRE(csr.fillers == 0);
    REQUIRE(csr.entries() == 1600);
    const std::size_t bits =
        prec == i8::fp32 ? csr.storage_bits()
                         : tl::compress::detail::build_relative_csr<std::int8_t>(wm, 8, [&](std::size_t k) {
                             return static_cast<std::int8_t>(w[k] > 0 ? 1 : -1);
                           }).storage_bits();
    const std::size_t value_bytes = prec == i8::int8 ? 1 : 4, extra = prec == i8::int8 ? 12 * 64 : 4 * 64;
    const std::size_t library = bits / 8 + extra;
    CHECK(library == 1600 * (value_bytes + 1) + 65 * 4 + extra);
    CHECK(nas::layer_storage_of(small, q, 0).bytes == library);
    CHECK(nas::layer_storage_of(small, q, 0, w).bytes == library);
    CHECK(nas::layer_storage_of(small, q, 0, w).entries == 1600);
  }
  // Fillers: a row of 784 inputs with only its last weight non-zero needs ⌊783 / 256⌋ = 3 of them.
  const nas::mlp_space wide{.inputs = 784, .outputs = 3, .widths = {4}, .min_depth = 1, .max_depth = 1};
  const nas::genome q{{4}, {i8::int8, i8::fp32}, {99, 0}};
  std::vector<float> w(4 * 784, 0.0f);
  for (std::size_t o = 0; o < 4; ++o) w[o * 784 + 783] = 1.0f;
  const nas::layer_storage st = nas::layer_storage_of(wide, q, 0, w);
  CHECK(st.entries == 4 * (1 + 3));
  CHECK(st.bytes == 2 * 16 + 4 * 5 + 12 * 4);
#if TINYLARGE_HAS_EXCEPTIONS
  CHECK_THROWS_AS(nas::layer_storage_of(wide, q, 0, std::vector<float>(10)), tl::error);
#endif
}

TEST_CASE("nas compression: evaluated and exported sub-networks are pruned by magnitude", "[nas]") {
  nas::mlp_space s{.inputs = 12, .outputs = 4, .widths = {8, 16}, .min_depth = 1, .max_depth = 2};
  s.sparsities = {0, 50, 75, 90};
  nas::mlp_supernet net(s, 1);
  const blobs src(400, 12, 4, 1, 0.25f), tgt(40, 12, 4, 2, 0.25f), val(200, 12, 4, 3, 0.25f);
  net.train(src.view(), {.epochs = 3, .batch_size = 32, .learning_rate = 3e-3f, .seed = 1});
  nas::transfer_evaluator ev(net, nas::cortex_m4(), tgt.view(), val.view());
  const nas::genome g{{16, 8}, {i8::fp32, i8::fp32, i8::fp32}, {75, 50, 90}};
  const nas::genome q{{16, 8}, {i8::int8, i8::int8, i8::int8}, {75, 50, 90}};
  const nas::transferred_model m = ev.transfer(g, val.view()), mq = ev.transfer(q, val.view());
  REQUIRE(m.parameters.size() == nas::parameter_count(s, g));
  const std::size_t in[3] = {12, 16, 8}, out[3] = {16, 8, 4};
  std::size_t at = 0;
  for (std::size_t l = 0; l < 3; ++l) {
    const std::size_t n = in[l] * out[l];
    const auto zeros = [&](const std::vector<float>& p) {
      return static_cast<std::size_t>(std::count(p.begin() + static_cast<std::ptrdiff_t>(at),
                                                 p.begin() + static_cast<std::ptrdiff_t>(at + n), 0.0f));
    };
    const std::size_t pruned = tl::compress::prune_count(n, g.sparsity(l) / 100.0);
    CHECK(zeros(m.parameters) == pruned);   // fp32: exactly the claimed fraction
    CHECK(zeros(mq.parameters) >= pruned);  // int8: rounding may zero a few more
    at += n + out[l];
  }
  // Hidden layer 0 (fp32) keeps the supernet's weights of largest magnitude, unchanged.
  const auto shared = net.parameters();
  float smallest_kept = 1e30f, largest_pruned = 0.0f;
  for (std::size_t o = 0; o < 16; ++o)
    for (std::size_t i = 0; i < 12; ++i) {
      const float w = m.parameters[o * 12 + i], sw = shared[net.weight_offset(0) + o * net.cols(0) + i];
      if (w == 0.0f) {
        largest_pruned = std::max(largest_pruned, std::fabs(sw));
      } else {
        CHECK(w == sw);
        smallest_kept = std::min(smallest_kept, std::fabs(sw));
      }
    }
  CHECK(largest_pruned <= smallest_kept);
  // The objectives count the CSR of the exported weights (no fillers, no extra zeros for fp32: the
  // count without weights); pruning moderately keeps the task learnable.
  const nas::objectives o = ev(g);
  CHECK(o.flash_bytes == nas::flash_bytes(s, g, m.parameters));
  CHECK(o.flash_bytes == nas::flash_bytes(s, g));
  CHECK(o.flash_bytes < nas::flash_bytes(s, make({16, 8}, {i8::fp32, i8::fp32, i8::fp32})));
  CHECK(ev(q).flash_bytes == nas::flash_bytes(s, q, mq.parameters));
  CHECK(ev(q).flash_bytes <= nas::flash_bytes(s, q));
  CHECK(ev(nas::genome{{16, 8}, {i8::fp32, i8::fp32, i8::fp32}, {50, 0, 0}}).accuracy > 0.5);
  // The same genome twice gives the same model (deterministic).
  CHECK(ev.transfer(g, val.view()).parameters == m.parameters);
  // Fine-tuning a pruned genome retrains with the masks: the sparsities hold, and it fits the target
  // rows at least as well as the transfer.
  const nas::transferred_model t = ev.transfer(g, tgt.view());
  const nas::transferred_model f = ev.fine_tune(g, tgt.view(), {.epochs = 30, .batch_size = 8, .learning_rate = 1e-3f});
  CHECK(f.accuracy >= t.accuracy);
  CHECK_FALSE(f.parameters == t.parameters);
  at = 0;
  for (std::size_t l = 0; l < 3; ++l) {
    const std::size_t n = in[l] * out[l];
    CHECK(static_cast<std::size_t>(std::count(f.parameters.begin() + static_cast<std::ptrdiff_t>(at),
                                              f.parameters.begin() + static_cast<std::ptrdiff_t>(at + n), 0.0f)) ==
          tl::compress::prune_count(n, g.sparsity(l) / 100.0));
    at += n + out[l];
  }

  // The emitted header states the sparsities; the JSON lists them per front member.
  const std::string h = nas::emit_header(s, m, "chosen");
  CHECK(h.find("// genome 16f75-8f50|f90,") != std::string::npos);
  CHECK(h.find("inline constexpr unsigned layer_sparsity_percent[] = {75, 50, 90};") != std::string::npos);
  CHECK(h.find("144 of 192 weights pruned; 64 of 128 weights pruned; 29 of 32 weights pruned") != std::string::npos);
  const auto history = nas::random_search(s, ev, {.budget = 10, .seed = 3});
  CHECK(nas::front_json(history, ev.device(), 262'144, "random").find("\"sparsity_percent\": [") != std::string::npos);
}

TEST_CASE("nas compression: the supernet trains the same whichever sparsities the space searches", "[nas]") {
  nas::mlp_space dense{.inputs = 12, .outputs = 4, .widths = {8, 16}, .min_depth = 1, .max_depth = 2};
  nas::mlp_space pruned = dense;
  pruned.sparsities = {0, 50, 75, 90};
  const blobs src(200, 12, 4, 1, 0.25f);
  nas::mlp_supernet a(dense, 1), b(pruned, 1);
  a.train(src.view(), {.epochs = 2, .batch_size = 32, .learning_rate = 3e-3f, .seed = 1});
  b.train(src.view(), {.epochs = 2, .batch_size = 32, .learning_rate = 3e-3f, .seed = 1});
  CHECK(std::equal(a.parameters().begin(), a.parameters().end(), b.parameters().begin(), b.parameters().end()));
  // Pruning changes the features of a sub-network, not the shared weights.
  const nas::genome g{{16}, {i8::fp32, i8::fp32}, {90, 0}};
  const std::vector<float> fd = b.body_features(make({16}, {i8::fp32, i8::fp32}), src.x.data(), 20, 20);
  const std::vector<float> fp = b.body_features(g, src.x.data(), 20, 20);
  CHECK_FALSE(fd == fp);
  CHECK(std::equal(a.parameters().begin(), a.parameters().end(), b.parameters().begin(), b.parameters().end()));
}

TEST_CASE("nas compression: strategies over a space with sparsities are deterministic for a seed", "[nas]") {
  nas::mlp_space s{};
  s.sparsities = {0, 50, 75, 90};
  synthetic ev{s, nas::cortex_m4()};
  const auto r1 = nas::random_search(s, ev, {.budget = 40, .seed = 1});
  CHECK(same(r1, nas::random_search(s, ev, {.budget = 40, .seed = 1})));
  CHECK_FALSE(same(r1, nas::random_search(s, ev, {.budget = 40, .seed = 2})));
  const auto e1 = nas::regularized_evolution(s, ev, {.budget = 60, .population = 10, .sample = 3, .seed = 1});
  CHECK(same(e1, nas::regularized_evolution(s, ev, {.budget = 60, .population = 10, .sample = 3, .seed = 1})));
  const auto n1 = nas::nsga2(s, ev, {.budget = 60, .population = 10, .seed = 1});
  CHECK(same(n1, nas::nsga2(s, ev, {.budget = 60, .population = 10, .seed = 1})));
  bool pruned = false;
  for (const auto* h : {&r1, &e1, &n1})
    for (const auto& c : *h) {
      REQUIRE(s.contains(c.g));
      for (std::size_t l = 0; l <= c.g.depth(); ++l) pruned = pruned || c.g.sparsity(l) != 0;
    }
  CHECK(pruned);
  // Pruning lowers the synthetic evaluator's flash (its accuracy ignores sparsity), so the NSGA-II front
  // holds pruned genomes.
  bool pruned_on_front = false;
  for (std::size_t i : nas::feasible_front(n1))
    for (std::size_t l = 0; l <= n1[i].g.depth(); ++l) pruned_on_front = pruned_on_front || n1[i].g.sparsity(l) >= 75;
  CHECK(pruned_on_front);
}

// ---------------------------------------------------------------------------
// Cut point for split deployment
// ---------------------------------------------------------------------------

TEST_CASE("nas split deployment: the cut point in sampling, mutation, crossover and the key", "[nas]") {
  nas::mlp_space s{.inputs = 10, .outputs = 3, .widths = {4, 8}, .min_depth = 1, .max_depth = 2};
  s.split = true;
  CHECK(s.size() == 2.0 * 4 * 2 + 4.0 * 8 * 3);  // d = 1: 2 widths · 2² precisions · 2 cuts; d = 2: 2² · 2³ · 3 cuts
  tl::rng g(8);
  std::set<std::string> seen;
  std::set<std::size_t> mutated_cuts;
  for (int i = 0; i < 6000; ++i) {
    const nas::genome x = s.sample(g);
    REQUIRE(s.contains(x));
    seen.insert(x.key());
    const nas::genome m = s.mutate(x, g);
    REQUIRE(s.contains(m));
    REQUIRE_FALSE(m == x);
    if (m.widths == x.widths && m.precisions == x.precisions && m.cut != x.cut) mutated_cuts.insert(m.cut);
    const nas::genome c = s.crossover(x, m, g);
    REQUIRE(s.contains(c));
    REQUIRE((c.cut == std::min(x.cut, c.depth()) || c.cut == std::min(m.cut, c.depth())));
  }
  CHECK(seen.size() == 112);
  CHECK(mutated_cuts == std::set<std::size_t>{0, 1, 2});
  nas::genome p{{256, 64}, {i8::int8, i8::fp32, i8::int8}, {75, 0, 0}, 1};
  CHECK(p.key() == "256i75-64f|i/c1");
  CHECK_FALSE(p == nas::genome{{256, 64}, {i8::int8, i8::fp32, i8::int8}, {75, 0, 0}, 2});
  CHECK_FALSE(s.contains(nas::genome{{8}, {i8::int8, i8::int8}, {}, 2}));  // beyond the depth
  CHECK(s.contains(nas::genome{{8}, {i8::int8, i8::int8}, {}, 1}));
  nas::mlp_space whole = s;
  whole.split = false;
  CHECK_FALSE(whole.contains(nas::genome{{8}, {i8::int8, i8::int8}, {}, 1}));  // no cut in a space without split
}

TEST_CASE("nas split deployment: budgets apply to the device segment; smashed bytes at the cut", "[nas]") {
  const nas::mlp_space s{};
  const nas::device_profile m4 = nas::cortex_m4();
  // LeNet-300-100 int8 (270 560 B) does not fit 256 KiB whole; cut after its first hidden layer the device
  // keeps 784·300 + 12·300 = 238 800 B and sends 300 int8 activations per sample.
  nas::genome l8 = make({300, 100}, {i8::int8, i8::int8, i8::int8});
  nas::objectives o;
  nas::apply_costs(s, l8, m4, o);
  CHECK_FALSE(o.feasible());
  CHECK(o.smashed_bytes == 0);
  CHECK(o.server_flash_bytes == 0);
  l8.cut = 1;
  nas::apply_costs(s, l8, m4, o);
  CHECK(o.flash_bytes == 238'800);
  CHECK(o.server_flash_bytes == 270'560 - 238'800);
  CHECK(o.smashed_bytes == 300);
  CHECK(o.arena_bytes == 784 + 300);
  CHECK(o.macs == 784 * 300);
  CHECK(o.energy_uj == Approx((784.0 * 300 * m4.pj_per_mac + (238'800.0 + 784 + 300) * m4.pj_per_byte) * 1e-6));
  CHECK(o.feasible());
  l8.cut = 2;  // the device keeps both hidden layers: 270 000 B, over the budget again; 100 bytes cross
  nas::apply_costs(s, l8, m4, o);
  CHECK(o.flash_bytes == 270'000);
  CHECK(o.smashed_bytes == 100);
  CHECK_FALSE(o.feasible());
  // An fp32 layer at the cut sends 4 bytes per unit.
  nas::genome f{{256, 64}, {i8::int8, i8::fp32, i8::int8}, {}, 2};
  nas::apply_costs(s, f, m4, o);
  CHECK(o.smashed_bytes == 4 * 64);
  CHECK(o.flash_bytes + o.server_flash_bytes == nas::flash_bytes(s, f));
#if TINYLARGE_HAS_EXCEPTIONS
  f.cut = 3;
  CHECK_THROWS_AS(nas::apply_costs(s, f, m4, o), tl::invalid_argument);
#endif

  // The emitted header names the cut as a layer index of the sequential type; the JSON has the metric.
  const nas::genome g{{16, 8}, {i8::int8, i8::int8, i8::int8}, {}, 1};
  const nas::mlp_space small{.inputs = 12, .outputs = 4, .widths = {8, 16}, .min_depth = 1, .max_depth = 2, .split = true};
  const nas::transferred_model m{g, std::vector<float>(nas::parameter_count(small, g), 0.5f), 0.75};
  const std::string h = nas::emit_header(small, m, "split");
  CHECK(h.find("inline constexpr unsigned cut_layer = 2;") != std::string::npos);
  CHECK(h.find("16 bytes per sample cross the cut") != std::string::npos);
  CHECK(nas::emit_header(small, {make({16, 8}, {i8::int8, i8::int8, i8::int8}), m.parameters, 0.75}, "whole")
            .find("inline constexpr unsigned cut_layer = 0;") != std::string::npos);
  nas::objectives og;
  nas::apply_costs(small, g, m4, og);
  og.accuracy = 0.75;
  const std::string j = nas::front_json({{g, og}}, m4, 262'144, "one");
  CHECK(j.find("\"cut\": 1, \"smashed_bytes\": 16, \"server_flash_bytes\": " + std::to_string(og.server_flash_bytes)) !=
        std::string::npos);
}

TEST_CASE("nas split deployment: strategies stay deterministic; the supernet ignores the cut", "[nas]") {
  nas::mlp_space s{};
  s.split = true;
  synthetic ev{s, nas::cortex_m4()};
  const auto e1 = nas::regularized_evolution(s, ev, {.budget = 60, .population = 10, .sample = 3, .seed = 1});
  CHECK(same(e1, nas::regularized_evolution(s, ev, {.budget = 60, .population = 10, .sample = 3, .seed = 1})));
  const auto n1 = nas::nsga2(s, ev, {.budget = 60, .population = 10, .seed = 1});
  CHECK(same(n1, nas::nsga2(s, ev, {.budget = 60, .population = 10, .seed = 1})));
  bool split = false;
  for (const auto* h : {&e1, &n1})
    for (const auto& c : *h) {
      REQUIRE(s.contains(c.g));
      split = split || c.g.cut > 0;
    }
  CHECK(split);
  nas::mlp_space a{.inputs = 12, .outputs = 4, .widths = {8, 16}, .min_depth = 1, .max_depth = 2};
  nas::mlp_space b = a;
  b.split = true;
  const blobs src(200, 12, 4, 1, 0.25f);
  nas::mlp_supernet na(a, 1), nb(b, 1);
  na.train(src.view(), {.epochs = 2, .batch_size = 32, .learning_rate = 3e-3f, .seed = 1});
  nb.train(src.view(), {.epochs = 2, .batch_size = 32, .learning_rate = 3e-3f, .seed = 1});
  CHECK(std::equal(na.parameters().begin(), na.parameters().end(), nb.parameters().begin(), nb.parameters().end()));
}

// ---------------------------------------------------------------------------
// Convolutional stem (kernel sizes and channels in the space)
// ---------------------------------------------------------------------------

namespace {
// An 8×8×1 image space: 0–2 conv layers (kernel 3 or 5, 2 or 4 channels), one hidden dense layer of 4 or 8.
nas::mlp_space conv_space(std::vector<i8> precisions = {i8::fp32}) {
  nas::mlp_space s{.inputs = 64, .outputs = 3, .widths = {4, 8}, .min_depth = 1, .max_depth = 1, .precisions = precisions};
  s.image_height = 8;
  s.image_width = 8;
  s.image_channels = 1;
  s.max_convs = 2;
  s.conv_kernels = {3, 5};
  s.conv_channels = {2, 4};
  return s;
}
nas::genome with_stem(nas::genome g, std::vector<nas::conv_gene> convs) {
  g.convs = std::move(convs);
  return g;
}
}  // namespace

TEST_CASE("nas conv stem: size, sampling, mutation, crossover, key and validation", "[nas]") {
  const nas::mlp_space s = conv_space();
  // Stems: 1 + 4 + 16 (kernel × channels per layer, one precision); MLPs: 2 widths.
  CHECK(s.size() == 42.0);
  tl::rng g(3);
  std::set<std::string> seen;
  for (int i = 0; i < 3000; ++i) {
    const nas::genome x = s.sample(g);
    REQUIRE(s.contains(x));
    seen.insert(x.key());
  }
  CHECK(seen.size() == 42);
  std::set<std::size_t> stem_sizes;
  for (int i = 0; i < 2000; ++i) {
    const nas::genome a = s.sample(g), b = s.sample(g);
    const nas::genome m = s.mutate(a, g);
    REQUIRE(s.contains(m));
    CHECK_FALSE(m == a);
    stem_sizes.insert(m.convs.size());
    const nas::genome c = s.crossover(a, b, g);
    REQUIRE(s.contains(c));
    CHECK((c.convs.size() == a.convs.size() || c.convs.size() == b.convs.size()));
    for (std::size_t j = 0; j < c.convs.size(); ++j)
      CHECK(((j < a.convs.size() && c.convs[j] == a.convs[j]) || (j < b.convs.size() && c.convs[j] == b.convs[j])));
  }
  CHECK(stem_sizes == std::set<std::size_t>{0, 1, 2});
  const nas::genome k = with_stem(make({8}, {i8::fp32, i8::fp32}), {{5, 4, i8::fp32}, {3, 2, i8::fp32}});
  CHECK(k.key() == "k5c4f-k3c2f_8f|f");
  CHECK(s.contains(k));
  CHECK_FALSE(s.contains(with_stem(k, {{7, 4, i8::fp32}})));                  // kernel not in the space
  CHECK_FALSE(s.contains(with_stem(k, {{3, 3, i8::fp32}})));                  // channels not in the space
  CHECK_FALSE(s.contains(with_stem(k, {{3, 2, i8::int8}})));                  // precision not in the space
  CHECK_FALSE(s.contains(with_stem(k, {{3, 2, i8::fp32}, {3, 2, i8::fp32}, {3, 2, i8::fp32}})));  // three conv layers
  CHECK(s.largest().convs == std::vector<nas::conv_gene>(2, nas::conv_gene{5, 4, i8::fp32}));
  CHECK(s.smallest().convs.empty());
  // A stem needs the image geometry and odd kernels.
#if TINYLARGE_HAS_EXCEPTIONS
  nas::mlp_space bad = s;
  bad.inputs = 63;
  CHECK_THROWS_AS(bad.validate(), tl::invalid_argument);
  bad = s;
  bad.conv_kernels = {3, 4};
  CHECK_THROWS_AS(bad.validate(), tl::invalid_argument);
  bad = s;
  bad.max_convs = 4;  // 8 / 2⁴ = 0
  CHECK_THROWS_AS(bad.validate(), tl::invalid_argument);
#endif
  // Without a stem nothing changes: the MLP space draws the same genomes as before stems existed.
  nas::mlp_space mlp = s;
  mlp.max_convs = 0;
  tl::rng g1(5), g2(5);
  nas::mlp_space plain{.inputs = 64, .outputs = 3, .widths = {4, 8}, .min_depth = 1, .max_depth = 1, .precisions = {i8::fp32}};
  for (int i = 0; i < 50; ++i) CHECK(mlp.sample(g1) == plain.sample(g2));
}

TEST_CASE("nas conv stem: costs equal the library's compile-time figures", "[nas]") {
  nas::mlp_space s{};  // 28×28×1 → … → 5
  s.max_convs = 2;
  s.conv_kernels = {3, 5};
  s.conv_channels = {4, 8, 16};
  using model = tl::sequential<tl::input<28, 28, 1>, tl::conv2d<8, 5, 1, 2>, tl::relu, tl::max_pool2d<2>,
                               tl::conv2d<16, 3, 1, 1>, tl::relu, tl::max_pool2d<2>, tl::flatten, tl::dense<784, 64>, tl::relu,
                               tl::dense<64, 5>>;
  using qnet = nn::quantized_network<model, tl::int8_per_channel, nn::heap_storage>;
  const nas::genome all8 = with_stem(make({64}, {i8::int8, i8::int8}), {{5, 8, i8::int8}, {3, 16, i8::int8}});
  const nas::genome all32 = with_stem(make({64}, {i8::fp32, i8::fp32}), {{5, 8, i8::fp32}, {3, 16, i8::fp32}});
  REQUIRE(s.contains(all8));
  CHECK(nas::parameter_count(s, all8) == model::param_count);
  CHECK(nas::flash_bytes(s, all8) == qnet::parameter_bytes);  // int8 weights, int32 biases, Q31 multipliers and shifts
  CHECK(nas::arena_bytes(s, all8) == qnet::arena_bytes);      // with the int8 conv's im2col scratch
  CHECK(nas::macs(s, all8) == model::macs);                   // conv MACs and the pools' comparisons
  CHECK(nas::flash_bytes(s, all32) == model::param_count * 4);
  CHECK(nas::arena_bytes(s, all32) == model::arena_bytes<tl::fp32>);
  CHECK(nas::stem_flash_bytes(s, all8) == (8 * 25 + 12 * 8) + (16 * 9 * 8 + 12 * 16));
  CHECK(nas::sequential_type(s, all8) ==
        "::tinylarge::nn::sequential<::tinylarge::nn::input<28, 28, 1>, ::tinylarge::nn::conv2d<8, 5, 1, 2>, "
        "::tinylarge::nn::relu, ::tinylarge::nn::max_pool2d<2>, ::tinylarge::nn::conv2d<16, 3, 1, 1>, ::tinylarge::nn::relu, "
        "::tinylarge::nn::max_pool2d<2>, ::tinylarge::nn::flatten, ::tinylarge::nn::dense<784, 64>, ::tinylarge::nn::relu, "
        "::tinylarge::nn::dense<64, 5>>");
  // One conv layer: the first dense layer reads 14·14·4.
  using model1 = tl::sequential<tl::input<28, 28, 1>, tl::conv2d<4, 3, 1, 1>, tl::relu, tl::max_pool2d<2>, tl::flatten,
                                tl::dense<784, 32>, tl::relu, tl::dense<32, 5>>;
  const nas::genome one8 = with_stem(make({32}, {i8::int8, i8::int8}), {{3, 4, i8::int8}});
  CHECK(nas::flash_bytes(s, one8) == nn::quantized_network<model1, tl::int8_per_channel, nn::heap_storage>::parameter_bytes);
  CHECK(nas::arena_bytes(s, one8) == nn::quantized_network<model1, tl::int8_per_channel, nn::heap_storage>::arena_bytes);
  CHECK(nas::macs(s, one8) == model1::macs);
  // Energy: MACs and bytes moved (flash, each conv's input + output + pooled output, each dense layer's input + output).
  nas::objectives o;
  const nas::device_profile d = nas::cortex_m4();
  nas::apply_costs(s, all8, d, o);
  CHECK(o.feasible());
  CHECK(o.flash_bytes == qnet::parameter_bytes);
  const double moved = static_cast<double>(qnet::parameter_bytes + (784 + 6272 + 1568) + (1568 + 3136 + 784) + (784 + 64) + (64 + 5));
  CHECK(o.energy_uj == Approx((static_cast<double>(model::macs) * d.pj_per_mac + moved * d.pj_per_byte) * 1e-6));
}

TEST_CASE("nas conv stem: gradients against finite differences, none outside the sub-network", "[nas]") {
  nas::mlp_supernet net(conv_space(), 2);
  std::vector<float> x(6 * 64);
  std::vector<std::uint8_t> y(6);
  tl::rng r(9);
  for (float& v : x) v = r.normal(0.0f, 1.0f);
  for (auto& v : y) v = static_cast<std::uint8_t>(r.uniform_int(3));
  for (float& p : net.parameters()) p += r.normal(0.0f, 0.1f);
  const nas::genome g = with_stem(make({4}, {i8::fp32, i8::fp32}), {{3, 2, i8::fp32}, {5, 4, i8::fp32}});
  // Every weight of the first conv layer's supernet kernel (4 filters of 5×5): the sub-network uses the
  // centre 3×3 of the first 2 filters; the rest must have no gradient and no effect.
  std::set<std::size_t> inside;
  for (std::size_t o = 0; o < 2; ++o)
    for (std::size_t ky = 0; ky < 3; ++ky)
      for (std::size_t kx = 0; kx < 3; ++kx) inside.insert(net.conv_weight_index(g, 0, o, ky, kx, 0));
  const std::size_t first = net.conv_weight_index(g, 0, 0, 0, 0, 0) - (1 * 5 + 1);  // kernel [0][0][0][0] of the supernet
  std::vector<std::size_t> probe;
  for (std::size_t i = first; i < first + 4 * 25; ++i) probe.push_back(i);
  for (std::size_t o = 0; o < 4; ++o) probe.push_back(net.conv_bias_index(1, o));
  for (std::size_t k = 0; k < 40; ++k) probe.push_back(net.conv_weight_index(g, 1, k % 4, (k / 4) % 5, (k / 20) % 5, k % 2));
  for (std::size_t k = 0; k < 30; ++k) probe.push_back(net.dense_weight_index(g, 0, k % 4, (k * 7) % 16));
  const gradient_check c = check_gradient(net, g, x.data(), y.data(), 6, probe);
  for (const std::size_t i : c.outside) CHECK(inside.count(i) == 0);
  const std::size_t outside = c.outside.size(), kinks = c.kinks, checked = c.checked;
  CHECK(outside >= 100 - 18);  // the supernet kernel outside the sub-kernel
  CHECK(kinks <= 4);
  CHECK(checked > 60);
}

TEST_CASE("nas conv stem: a sub-network equals the library network with the sliced weights, bit for bit", "[nas]") {
  const nas::mlp_space s = conv_space();
  nas::mlp_supernet net(s, 6);
  tl::rng r(4);
  for (float& p : net.parameters()) p += r.normal(0.0f, 0.05f);
  const blobs data(5, 64, 3, 1);
  const nas::genome g = with_stem(make({4}, {i8::fp32, i8::fp32}), {{3, 2, i8::fp32}, {5, 4, i8::fp32}});
  using model = tl::sequential<tl::input<8, 8, 1>, tl::conv2d<2, 3, 1, 1>, tl::relu, tl::max_pool2d<2>,
                               tl::conv2d<4, 5, 1, 2>, tl::relu, tl::max_pool2d<2>, tl::flatten, tl::dense<16, 4>, tl::relu,
                               tl::dense<4, 3>>;
  REQUIRE(nas::sequential_type(s, g) ==
          "::tinylarge::nn::sequential<::tinylarge::nn::input<8, 8, 1>, ::tinylarge::nn::conv2d<2, 3, 1, 1>, "
          "::tinylarge::nn::relu, ::tinylarge::nn::max_pool2d<2>, ::tinylarge::nn::conv2d<4, 5, 1, 2>, ::tinylarge::nn::relu, "
          "::tinylarge::nn::max_pool2d<2>, ::tinylarge::nn::flatten, ::tinylarge::nn::dense<16, 4>, ::tinylarge::nn::relu, "
          "::tinylarge::nn::dense<4, 3>>");
  // The weights sliced by hand from the documented layout: the MLP's layers (784-input layer 0 and the
  // head), then per conv layer [4][5][5][C_in,max] + 4 biases, then one first dense layer per stem depth
  // (8 rows × (pixels · 4 channels) + 8 biases).
  const auto p = net.parameters();
  const std::size_t h = s.max_depth;
  const std::size_t conv0 = net.weight_offset(h) + net.rows(h) * net.cols(h) + net.rows(h);
  const std::size_t conv1 = conv0 + 4 * 25 * 1 + 4;
  const std::size_t dense1 = conv1 + 4 * 25 * 4 + 4;              // after a stem of one layer: 4·4·4 columns
  const std::size_t dense2 = dense1 + 8 * 64 + 8;                  // after two: 2·2·4 columns
  REQUIRE(dense2 + 8 * 16 + 8 == p.size());
  std::vector<float> sliced;
  for (std::size_t o = 0; o < 2; ++o)  // conv 0: centre 3×3 (offset 1) of filter o, 1 input channel
    for (std::size_t ky = 0; ky < 3; ++ky)
      for (std::size_t kx = 0; kx < 3; ++kx) sliced.push_back(p[conv0 + (o * 5 + ky + 1) * 5 + kx + 1]);
  for (std::size_t o = 0; o < 2; ++o) sliced.push_back(p[conv0 + 100 + o]);
  for (std::size_t o = 0; o < 4; ++o)  // conv 1: whole 5×5, first 2 of 4 input channels
    for (std::size_t ky = 0; ky < 5; ++ky)
      for (std::size_t kx = 0; kx < 5; ++kx)
        for (std::size_t c = 0; c < 2; ++c) sliced.push_back(p[conv1 + ((o * 5 + ky) * 5 + kx) * 4 + c]);
  for (std::size_t o = 0; o < 4; ++o) sliced.push_back(p[conv1 + 400 + o]);
  for (std::size_t o = 0; o < 4; ++o)  // dense after two conv layers: rows 0..3, per pixel the first 4 of 4 channels
    for (std::size_t i = 0; i < 16; ++i) sliced.push_back(p[dense2 + o * 16 + i]);
  for (std::size_t o = 0; o < 4; ++o) sliced.push_back(p[dense2 + 128 + o]);
  for (std::size_t o = 0; o < 3; ++o)  // the shared head's first 4 columns
    for (std::size_t i = 0; i < 4; ++i) sliced.push_back(p[net.weight_offset(h) + o * net.cols(h) + i]);
  for (std::size_t o = 0; o < 3; ++o) sliced.push_back(p[net.weight_offset(h) + net.rows(h) * net.cols(h) + o]);
  REQUIRE(sliced.size() == model::param_count);
  REQUIRE(nas::parameter_count(s, g) == model::param_count);
  nn::network<model> lib;
  std::copy(sliced.begin(), sliced.end(), lib.parameters().begin());
  const float* z_lib = lib.forward(data.x.data(), 5);
  // The supernet's inference path: body features, then the head on the same kernel.
  const std::vector<float> f = net.body_features(g, data.x.data(), 5, 5);
  REQUIRE(f.size() == 5 * 4);
  std::vector<float> z(5 * 3);
  const float* head = sliced.data() + model::param_count - (3 * 4 + 3);
  tl::kernels::dense_f32(5, 3, 4, f.data(), head, head + 12, z.data());
  for (std::size_t i = 0; i < z.size(); ++i) CHECK(z[i] == z_lib[i]);  // bit for bit
  // The training path (strided GEMMs) agrees to rounding.
  std::vector<float> zt(5 * 3);
  net.logits(g, data.x.data(), 5, zt.data());
  for (std::size_t i = 0; i < z.size(); ++i) CHECK(zt[i] == Approx(z_lib[i]).margin(1e-5));
  // Another sub-network of the same stem depth reads the same matrices: a narrower second conv layer uses
  // the first 2 filters and the first 2 channel columns of each pixel.
  const nas::genome narrow = with_stem(make({4}, {i8::fp32, i8::fp32}), {{3, 2, i8::fp32}, {3, 2, i8::fp32}});
  std::vector<float> w, b;
  net.stem_layer(narrow, 1, w, b);
  REQUIRE(w.size() == 2 * 9 * 2);
  CHECK(w[(1 * 9 + 4) * 2 + 1] == p[conv1 + ((1 * 5 + 2) * 5 + 2) * 4 + 1]);  // filter 1, centre tap, channel 1
  net.hidden_layer(narrow, 0, w, b);
  REQUIRE(w.size() == 4 * 8);
  CHECK(w[3 * 8 + 5] == p[dense2 + 3 * 16 + 2 * 4 + 1]);  // row 3, pixel 2, channel 1
}

TEST_CASE("nas conv stem: training, transfer, emitted parameters and int8 against the library", "[nas]") {
  // Two classes of 8×8 images: a horizontal or a vertical bar at a random position, with noise.
  auto bars = [](std::size_t n, std::uint64_t seed) {
    blobs b(0, 64, 2, seed);
    tl::rng g(seed);
    for (std::size_t i = 0; i < n; ++i) {
      const auto c = static_cast<std::uint8_t>(g.uniform_int(2));
      const std::size_t at = 1 + g.uniform_int(6);
      for (std::size_t yy = 0; yy < 8; ++yy)
        for (std::size_t xx = 0; xx < 8; ++xx) b.x.push_back(((c == 0 ? yy : xx) == at ? 1.0f : 0.0f) + g.normal(0.0f, 0.1f));
      b.y.push_back(c);
    }
    b.count = n;
    return b;
  };
  nas::mlp_space s = conv_space({i8::int8, i8::fp32});
  s.outputs = 2;
  s.min_convs = 1;
  nas::mlp_supernet net(s, 1);
  const blobs train = bars(400, 1), target = bars(40, 2), test = bars(300, 3);
  const auto loss = net.train(train.view(), {.epochs = 4, .batch_size = 32, .learning_rate = 3e-3f, .seed = 2});
  CHECK(loss.back() < loss.front());
  nas::transfer_evaluator ev(net, nas::cortex_m4(), target.view(), test.view());
  const nas::genome g32 = with_stem(make({8}, {i8::fp32, i8::fp32}), {{5, 4, i8::fp32}});
  const nas::genome g8 = with_stem(make({8}, {i8::int8, i8::int8}), {{5, 4, i8::int8}});
  const nas::transferred_model m32 = ev.transfer(g32, test.view()), m8 = ev.transfer(g8, test.view());
  CHECK(m32.accuracy > 0.9);
  CHECK(std::abs(m8.accuracy - m32.accuracy) < 0.05);
  // The evaluator's costs include the stem; the parameters are in the library layout.
  const nas::objectives o = ev(g8);
  CHECK(o.flash_bytes == nas::flash_bytes(s, g8));
  CHECK(o.macs == nas::macs(s, g8));
  using model = tl::sequential<tl::input<8, 8, 1>, tl::conv2d<4, 5, 1, 2>, tl::relu, tl::max_pool2d<2>, tl::flatten,
                               tl::dense<64, 8>, tl::relu, tl::dense<8, 2>>;
  REQUIRE(m32.parameters.size() == model::param_count);
  nn::network<model> fp;
  std::copy(m32.parameters.begin(), m32.parameters.end(), fp.parameters().begin());
  std::size_t hits = 0;
  for (std::size_t i = 0; i < test.count; ++i) {
    const float* zz = fp.forward(test.x.data() + i * 64, 1);
    hits += (zz[1] > zz[0] ? 1u : 0u) == test.y[i] ? 1 : 0;
  }
  CHECK(static_cast<double>(hits) / static_cast<double>(test.count) == Approx(m32.accuracy).margin(1e-9));
  // The library's int8 network (PTQ) of the same type within 5 points of the simulated int8 path.
  auto q = std::make_unique<nn::quantized_network<model, tl::int8_per_channel, nn::heap_storage>>();
  nn::quantize_post_training(fp, target.x.data(), target.count, *q);
  hits = 0;
  for (std::size_t i = 0; i < test.count; ++i) hits += q->classify(test.x.data() + i * 64) == test.y[i] ? 1 : 0;
  CHECK(std::abs(static_cast<double>(hits) / static_cast<double>(test.count) - m8.accuracy) < 0.05);
  // int8 conv weights lie on their per-filter grid.
  for (std::size_t f = 0; f < 4; ++f) CHECK(per_channel_grid_error(m8.parameters.data() + f * 25, 25) < 1e-3);
  // Fine-tuning works through the stem: 0 epochs equals transfer, 10 change the stem weights.
  const nas::transferred_model t0 = ev.fine_tune(g32, test.view(), {.epochs = 0});
  CHECK(t0.parameters == m32.parameters);
  const nas::transferred_model t10 = ev.fine_tune(g32, test.view(), {.epochs = 10, .learning_rate = 1e-3f});
  CHECK_FALSE(std::equal(t10.parameters.begin(), t10.parameters.begin() + 100, m32.parameters.begin()));
  // The emitted header: the type, the stem's precisions, the parameters; the JSON lists the stem.
  const std::string hdr = nas::emit_header(s, m8, "conv_model");
  CHECK(hdr.find("using model = " + nas::sequential_type(s, g8) + ";") != std::string::npos);
  CHECK(hdr.find("inline constexpr unsigned conv_layers = 1;") != std::string::npos);
  CHECK(hdr.find("conv_precisions[] = {\"int8\"}") != std::string::npos);
  const std::vector<nas::candidate> hist{{g8, o}};
  const std::string js = nas::front_json(hist, nas::cortex_m4(), 1 << 18, "t");
  CHECK(js.find("\"convs\": [{\"kernel\": 5, \"channels\": 4, \"precision\": \"int8\"}]") != std::string::npos);
  // Strategies over a space with a stem are deterministic for a seed and search the stem.
  const auto h1 = nas::regularized_evolution(s, ev, {.budget = 12, .population = 6, .sample = 3, .seed = 4});
  const auto h2 = nas::regularized_evolution(s, ev, {.budget = 12, .population = 6, .sample = 3, .seed = 4});
  CHECK(same(h1, h2));
}
