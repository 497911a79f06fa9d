// Tests of the aggregation axis: FedAvg and the Flower family, the robust
// rules, update validation, the DP wrappers and accountant, and secure
// aggregation.
//
// References are independent of the code under test: each rule is recomputed
// here from its formula, in double, by the most direct means (full sorts
// instead of selection, naive loops over all pairs, numerical integration for
// the sampled-Gaussian RDP), on small hand-checkable inputs and on random ones.

#include <catch2/catch.hpp>

#include <algorithm>
#include <array>
#include <memory>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <span>
#include <tuple>
#include <vector>

#include "tinylarge/aggregate/aggregator.hpp"
#include "tinylarge/aggregate/client.hpp"
#include "tinylarge/aggregate/policy.hpp"
#include "tinylarge/aggregate/privacy.hpp"
#include "tinylarge/aggregate/robust.hpp"
#include "tinylarge/aggregate/secure.hpp"
#include "tinylarge/core/rng.hpp"
#include "tinylarge/precision/fp16.hpp"

namespace {

using vecf = std::vector<float>;
using vecd = std::vector<double>;
using fp32_results = std::vector<tl::client_result<tl::fp32_update>>;

// n random client weight vectors of length d around `center` (normal, stddev s).
std::vector<vecf> random_clients(std::size_t n, std::size_t d, std::uint64_t seed, float s = 1.0f, float center = 0.0f) {
  tl::rng g(seed);
  std::vector<vecf> w(n, vecf(d));
  for (auto& v : w)
    for (auto& x : v) x = center + s * g.normal();
  return w;
}

fp32_results as_results(const std::vector<vecf>& w, const std::vector<std::int64_t>& n) {
  fp32_results r;
  for (std::size_t i = 0; i < w.size(); ++i) r.push_back({100 + i, tl::fp32_update{w[i]}, n[i]});
  return r;
}

std::vector<std::int64_t> ones(std::size_t n) { return std::vector<std::int64_t>(n, 1); }

// Reference: Σ n_i w_i / Σ n_i in double.
vecd ref_fedavg(const std::vector<vecf>& w, const std::vector<std::int64_t>& n) {
  vecd out(w[0].size(), 0.0);
  double tot = 0;
  for (std::size_t i = 0; i < w.size(); ++i) {
    tot += static_cast<double>(n[i]);
    for (std::size_t j = 0; j < out.size(); ++j) out[j] += static_cast<double>(n[i]) * w[i][j];
  }
  for (auto& x : out) x /= tot;
  return out;
}

// Reference coordinate statistics via a full sort of each column.
vecd column(const std::vector<vecf>& w, std::size_t j) {
  vecd c;
  for (const auto& v : w) c.push_back(v[j]);
  std::sort(c.begin(), c.end());
  return c;
}
double ref_median(vecd c) {
  std::sort(c.begin(), c.end());
  const std::size_t n = c.size();
  return n % 2 ? c[n / 2] : 0.5 * (c[n / 2 - 1] + c[n / 2]);
}
double ref_trimmed(const vecd& sorted, std::size_t k) {
  double s = 0;
  for (std::size_t i = k; i < sorted.size() - k; ++i) s += sorted[i];
  return s / static_cast<double>(sorted.size() - 2 * k);
}

double sqdist(const vecf& a, const vecf& b) {
  double s = 0;
  for (std::size_t j = 0; j < a.size(); ++j) s += (static_cast<double>(a[j]) - b[j]) * (static_cast<double>(a[j]) - b[j]);
  return s;
}

// Reference Krum scores on the subset `alive` of w: sum of the
// max(1, |alive| − f − 2) smallest distances to the others (full sort).
vecd ref_krum_scores(const std::vector<vecf>& w, const std::vector<std::size_t>& alive, std::size_t f) {
  const std::size_t m = alive.size();
  const std::size_t c = m >= f + 3 ? m - f - 2 : 1;
  vecd s;
  for (std::size_t a : alive) {
    vecd d;
    for (std::size_t b : alive)
      if (b != a) d.push_back(sqdist(w[a], w[b]));
    std::sort(d.begin(), d.end());
    s.push_back(std::accumulate(d.begin(), d.begin() + static_cast<long>(c), 0.0));
  }
  return s;
}

template <class A, class B>
void require_close(const A& got, const B& want, double rel = 1e-5, double abs_tol = 1e-6) {
  REQUIRE(got.size() == want.size());
  for (std::size_t j = 0; j < got.size(); ++j) {
    const double g = static_cast<double>(got[j]), w = static_cast<double>(want[j]);
    INFO("index " << j << ": got " << g << ", want " << w);
    REQUIRE(std::fabs(g - w) <= abs_tol + rel * std::fabs(w));
  }
}

}  // namespace

// ===========================================================================
// The concept
// ===========================================================================

namespace {
struct not_a_policy {
  static constexpr const char* name() noexcept { return "x"; }
};
struct linear_without_apply {
  static constexpr const char* name() noexcept { return "y"; }
  static constexpr bool linear = true;
  std::size_t min_clients() const noexcept { return 1; }
  template <class T>
  struct state {
    state(const linear_without_apply&, std::size_t) {}
  };
};
}  // namespace

TEST_CASE("aggregation_policy concept accepts the library's policies and rejects others", "[aggregate]") {
  STATIC_REQUIRE(tl::aggregation_policy<tl::fedavg>);
  STATIC_REQUIRE(tl::linear_aggregation<tl::fedadam>);
  STATIC_REQUIRE(tl::general_aggregation<tl::krum>);
  STATIC_REQUIRE(!tl::linear_aggregation<tl::krum>);
  STATIC_REQUIRE(tl::aggregation_policy<tl::dp_fixed_clipping<tl::fedyogi>>);
  STATIC_REQUIRE(!tl::aggregation_policy<not_a_policy>);
  STATIC_REQUIRE(!tl::aggregation_policy<linear_without_apply>);
  STATIC_REQUIRE(!tl::aggregation_policy<int>);
}

// ===========================================================================
// FedAvg and the server optimizers
// ===========================================================================

TEST_CASE("fedavg weights client weights by num_examples", "[aggregate][fedavg]") {
  SECTION("hand-checkable") {
    vecf a{1.0f, 2.0f}, b{3.0f, 6.0f};
    fp32_results r{{1, {a}, 1}, {2, {b}, 3}};
    vecf g(2, 0.0f);
    tl::aggregator<tl::fedavg> agg(tl::fedavg{}, 2);
    const auto rep = agg.round(std::span<float>(g), r);
    REQUIRE(rep.updated());
    REQUIRE(rep.accepted == std::vector<std::uint64_t>{1, 2});
    CHECK(g[0] == 2.5f);  // (1·1 + 3·3) / 4
    CHECK(g[1] == 5.0f);  // (2 + 18) / 4
  }
  SECTION("random, dimension not a multiple of any block, several block sizes") {
    const std::size_t n = 9, d = 5003;
    auto w = random_clients(n, d, 42);
    std::vector<std::int64_t> ex{5, 1, 300, 7, 7, 64, 2, 9, 1000};
    const auto want = ref_fedavg(w, ex);
    for (std::size_t block : {std::size_t{1}, std::size_t{7}, std::size_t{4096}, std::size_t{1} << 20}) {
      vecf g(d);
      tl::aggregator<tl::fedavg> agg(tl::fedavg{}, d);
      agg.set_sum_block(block);
      REQUIRE(agg.round(std::span<float>(g), as_results(w, ex)).updated());
      require_close(g, want, 1e-5, 1e-6);
    }
  }
}

TEST_CASE("fedprox: server is fedavg, client gradient gains mu (w - w_t)", "[aggregate][fedprox]") {
  auto w = random_clients(4, 33, 7);
  std::vector<std::int64_t> ex{1, 2, 3, 4};
  vecf g1(33), g2(33);
  tl::aggregator<tl::fedprox> p(tl::fedprox{0.5f}, 33);
  tl::aggregator<tl::fedavg> a(tl::fedavg{}, 33);
  REQUIRE(p.round(std::span<float>(g1), as_results(w, ex)).updated());
  REQUIRE(a.round(std::span<float>(g2), as_results(w, ex)).updated());
  REQUIRE(g1 == g2);

  // The proximal gradient is the derivative of the proximal term (central differences).
  const float mu = 0.3f;
  vecf x = w[0], wt = w[1], grad(33, 0.25f), grad0 = grad;
  tl::add_proximal_gradient(grad, x, wt, mu);
  for (std::size_t j = 0; j < x.size(); j += 5) {
    vecf xp = x, xm = x;
    const float h = 1e-2f;
    xp[j] += h;
    xm[j] -= h;
    const double fd = (tl::proximal_term(xp, wt, mu) - tl::proximal_term(xm, wt, mu)) / (static_cast<double>(xp[j]) - xm[j]);
    CHECK(grad[j] - grad0[j] == Approx(fd).epsilon(1e-3));
  }
}

TEST_CASE("fedavgm: server momentum over two rounds", "[aggregate][fedavgm]") {
  const std::size_t d = 257;
  const float eta = 0.7f, beta = 0.9f;
  auto w0 = random_clients(1, d, 1)[0];
  vecf g = w0;
  vecd ref(w0.begin(), w0.end()), mom(d, 0.0);
  tl::aggregator<tl::fedavgm> agg(tl::fedavgm{eta, beta}, d);
  for (int round = 0; round < 2; ++round) {
    auto w = random_clients(3, d, 100 + static_cast<std::uint64_t>(round), 0.5f, 1.0f);
    std::vector<std::int64_t> ex{3, 1, 2};
    const auto avg = ref_fedavg(w, ex);
    for (std::size_t j = 0; j < d; ++j) {
      const double pg = ref[j] - avg[j];                       // pseudo-gradient w_t − avg
      mom[j] = round == 0 ? pg : static_cast<double>(beta) * mom[j] + pg;
      ref[j] -= static_cast<double>(eta) * mom[j];
    }
    REQUIRE(agg.round(std::span<float>(g), as_results(w, ex)).updated());
    require_close(g, ref, 1e-5, 1e-5);
  }
  SECTION("eta = 1, beta = 0 is fedavg") {
    auto w = random_clients(3, d, 5);
    vecf a(d, 0.3f), b(d, 0.3f);
    tl::aggregator<tl::fedavgm> m(tl::fedavgm{}, d);
    tl::aggregator<tl::fedavg> f(tl::fedavg{}, d);
    REQUIRE(m.round(std::span<float>(a), as_results(w, ones(3))).updated());
    REQUIRE(f.round(std::span<float>(b), as_results(w, ones(3))).updated());
    require_close(a, b, 1e-6, 1e-6);
  }
}

namespace {
// Independent FedOpt reference in double. kind: 0 adam, 1 yogi, 2 adagrad.
struct fedopt_ref {
  int kind;
  double eta, b1, b2, tau;
  int bias;  // 0 none, 1 kingma, 2 flower
  vecd m, v;
  int t = 0;
  void step(vecd& w, const vecd& avg) {
    ++t;
    if (m.empty()) m.assign(w.size(), 0.0), v.assign(w.size(), 0.0);
    double eta_t = eta;
    if (kind == 0 && bias != 0) {
      const double e = bias == 2 ? t + 1.0 : t;
      eta_t = eta * std::sqrt(1 - std::pow(b2, e)) / (1 - std::pow(b1, e));
    }
    for (std::size_t j = 0; j < w.size(); ++j) {
      const double dl = avg[j] - w[j];
      m[j] = b1 * m[j] + (1 - b1) * dl;
      if (kind == 0) v[j] = b2 * v[j] + (1 - b2) * dl * dl;
      if (kind == 1) v[j] = v[j] - (1 - b2) * dl * dl * ((v[j] - dl * dl) > 0 ? 1 : ((v[j] - dl * dl) < 0 ? -1 : 0));
      if (kind == 2) v[j] = v[j] + dl * dl;
      w[j] += eta_t * m[j] / (std::sqrt(v[j]) + tau);
    }
  }
};

template <class Policy>
void check_fedopt(const Policy& pol, fedopt_ref ref, int rounds) {
  const std::size_t d = 301;
  vecf g = random_clients(1, d, 9)[0];
  vecd rw(g.begin(), g.end());
  tl::aggregator<Policy> agg(pol, d);
  for (int r = 0; r < rounds; ++r) {
    auto w = random_clients(4, d, 50 + static_cast<std::uint64_t>(r), 0.3f, 0.5f);
    std::vector<std::int64_t> ex{1, 4, 2, 8};
    ref.step(rw, ref_fedavg(w, ex));
    REQUIRE(agg.round(std::span<float>(g), as_results(w, ex)).updated());
    require_close(g, rw, 2e-5, 2e-5);
  }
}
}  // namespace

TEST_CASE("fedadam / fedyogi / fedadagrad follow Reddi et al. with Flower's defaults", "[aggregate][fedopt]") {
  SECTION("Flower's default hyperparameters") {
    const tl::fedadam a{};
    CHECK(a.eta == 0.1f);
    CHECK(a.eta_l == 0.1f);
    CHECK(a.beta_1 == 0.9f);
    CHECK(a.beta_2 == 0.99f);
    CHECK(a.tau == 1e-9f);
    const tl::fedyogi y{};
    CHECK(y.eta == 0.01f);
    CHECK(y.eta_l == 0.0316f);
    CHECK(y.tau == 1e-3f);
    const tl::fedadagrad g{};
    CHECK(g.eta == 0.1f);
    CHECK(g.tau == 1e-9f);
    CHECK(g.beta_1 == 0.0f);
  }
  SECTION("fedadam, Flower bias correction, one and three rounds") {
    check_fedopt(tl::fedadam{}, fedopt_ref{0, 0.1f, 0.9f, 0.99f, 1e-9f, 2, {}, {}}, 1);
    check_fedopt(tl::fedadam{}, fedopt_ref{0, 0.1f, 0.9f, 0.99f, 1e-9f, 2, {}, {}}, 3);
  }
  SECTION("fedadam without / with Kingma-Ba bias correction") {
    tl::fedadam p{};
    p.bias_correction = tl::adam_bias_correction::none;
    check_fedopt(p, fedopt_ref{0, 0.1f, 0.9f, 0.99f, 1e-9f, 0, {}, {}}, 2);
    p.bias_correction = tl::adam_bias_correction::kingma_ba;
    check_fedopt(p, fedopt_ref{0, 0.1f, 0.9f, 0.99f, 1e-9f, 1, {}, {}}, 2);
  }
  SECTION("fedyogi") { check_fedopt(tl::fedyogi{}, fedopt_ref{1, 0.01f, 0.9f, 0.99f, 1e-3f, 0, {}, {}}, 3); }
  SECTION("fedadagrad") { check_fedopt(tl::fedadagrad{}, fedopt_ref{2, 0.1f, 0.0f, 0.0f, 1e-9f, 0, {}, {}}, 3); }
  SECTION("one fedadam step by hand") {
    // w = 0, avg = 1: Δ = 1, m = 0.1, v = 0.01, η₁ = 0.1·√(1−0.99²)/(1−0.9²)
    vecf w1{1.0f}, g{0.0f};
    fp32_results r{{1, {w1}, 5}};
    tl::aggregator<tl::fedadam> agg(tl::fedadam{}, 1);
    REQUIRE(agg.round(std::span<float>(g), r).updated());
    const double eta1 = 0.1 * std::sqrt(1 - 0.99 * 0.99) / (1 - 0.9 * 0.9);
    CHECK(g[0] == Approx(eta1 * 0.1 / (0.1 + 1e-9)).epsilon(1e-5));
  }
}

// ===========================================================================
// Robust rules
// ===========================================================================

TEST_CASE("coordinate median, odd and even n", "[aggregate][median]") {
  SECTION("hand-checkable") {
    vecf a{5, 0}, b{1, 10}, c{3, -4}, d{2, 7};
    vecf g(2);
    tl::aggregator<tl::coordinate_median> med(tl::coordinate_median{}, 2);
    fp32_results odd{{1, {a}, 1}, {2, {b}, 100}, {3, {c}, 1}};
    REQUIRE(med.round(std::span<float>(g), odd).updated());
    CHECK(g[0] == 3.0f);  // median{5,1,3}; weights are ignored
    CHECK(g[1] == 0.0f);  // median{0,10,−4}
    fp32_results even{{1, {a}, 1}, {2, {b}, 1}, {3, {c}, 1}, {4, {d}, 1}};
    REQUIRE(med.round(std::span<float>(g), even).updated());
    CHECK(g[0] == 2.5f);  // (2 + 3) / 2
    CHECK(g[1] == 3.5f);  // (0 + 7) / 2
  }
  SECTION("random against a full sort") {
    for (std::size_t n : {std::size_t{1}, std::size_t{6}, std::size_t{11}}) {
      const std::size_t d = 2500;
      auto w = random_clients(n, d, 77 + n);
      vecf g(d);
      tl::aggregator<tl::coordinate_median> med(tl::coordinate_median{}, d);
      REQUIRE(med.round(std::span<float>(g), as_results(w, ones(n))).updated());
      for (std::size_t j = 0; j < d; ++j) REQUIRE(g[j] == static_cast<float>(ref_median(column(w, j))));
    }
  }
}

TEST_CASE("trimmed mean cuts floor(beta n) from each tail", "[aggregate][trimmed]") {
  SECTION("cut counts (as Python's int(beta * n))") {
    CHECK(tl::trimmed_mean{0.2}.cut(10) == 2);
    CHECK(tl::trimmed_mean{0.2}.cut(4) == 0);
    CHECK(tl::trimmed_mean{0.1}.cut(30) == 3);
    CHECK(tl::trimmed_mean{0.3}.cut(10) == 3);
    CHECK(tl::trimmed_mean{0.45}.cut(9) == 4);
    CHECK(tl::trimmed_mean{0.0}.cut(9) == 0);
  }
  SECTION("hand-checkable") {
    vecf a{10}, b{1}, c{2}, d{3}, e{-100};
    fp32_results r{{1, {a}, 1}, {2, {b}, 1}, {3, {c}, 1}, {4, {d}, 1}, {5, {e}, 1}};
    vecf g(1);
    tl::aggregator<tl::trimmed_mean> tm(tl::trimmed_mean{0.2}, 1);
    REQUIRE(tm.round(std::span<float>(g), r).updated());
    CHECK(g[0] == 2.0f);  // cut 1 each side: mean(1, 2, 3)
  }
  SECTION("random against a full sort") {
    for (double beta : {0.0, 0.1, 0.25, 0.45}) {
      const std::size_t n = 13, d = 1500;
      auto w = random_clients(n, d, 5);
      const std::size_t k = static_cast<std::size_t>(beta * static_cast<double>(n));
      vecf g(d);
      tl::aggregator<tl::trimmed_mean> tm(tl::trimmed_mean{beta}, d);
      REQUIRE(tm.round(std::span<float>(g), as_results(w, ones(n))).updated());
      vecd want(d);
      for (std::size_t j = 0; j < d; ++j) want[j] = ref_trimmed(column(w, j), k);
      require_close(g, want, 1e-6, 1e-6);
    }
  }
  SECTION("beta >= 0.5 fails the round and leaves the weights untouched") {
    auto w = random_clients(4, 8, 1);
    vecf g(8, 7.0f);
    tl::aggregator<tl::trimmed_mean> tm(tl::trimmed_mean{0.5}, 8);
    const auto rep = tm.round(std::span<float>(g), as_results(w, ones(4)));
    CHECK_FALSE(rep.updated());
    CHECK(g == vecf(8, 7.0f));
  }
}

TEST_CASE("krum picks an honest client when f attackers are far; scores match the definition", "[aggregate][krum]") {
  const std::size_t honest = 8, f = 2, n = honest + f, d = 64;
  auto w = random_clients(honest, d, 3, 0.1f, 1.0f);
  auto bad = random_clients(f, d, 4, 0.1f, -50.0f);  // far away
  w.insert(w.end(), bad.begin(), bad.end());
  std::vector<std::size_t> all(n);
  std::iota(all.begin(), all.end(), 0);
  const auto want_scores = ref_krum_scores(w, all, f);
  const auto best = static_cast<std::size_t>(std::min_element(want_scores.begin(), want_scores.end()) - want_scores.begin());
  REQUIRE(best < honest);

  SECTION("krum returns exactly the best client's weights") {
    vecf g(d);
    tl::aggregator<tl::krum> k(tl::krum{f, 0}, d);
    REQUIRE(k.round(std::span<float>(g), as_results(w, ones(n))).updated());
    REQUIRE(k.state().selected == std::vector<std::size_t>{best});
    REQUIRE(g == w[best]);
  }
  SECTION("krum_scores against the naive definition") {
    vecd dist(n * n);
    for (std::size_t i = 0; i < n; ++i)
      for (std::size_t j = 0; j < n; ++j) dist[i * n + j] = sqdist(w[i], w[j]);
    vecd s(n);
    tl::krum_scores(dist, n, all, f, s);
    require_close(s, want_scores, 1e-12, 0);
  }
  SECTION("multi-krum averages the m best, weighted by examples (Flower)") {
    std::vector<std::int64_t> ex{1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
    std::vector<std::size_t> order(n);
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](auto a, auto b) { return want_scores[a] < want_scores[b]; });
    std::vector<vecf> kept;
    std::vector<std::int64_t> kex;
    for (std::size_t k = 0; k < 5; ++k) kept.push_back(w[order[k]]), kex.push_back(ex[order[k]]);
    vecf g(d);
    tl::aggregator<tl::krum> k(tl::krum{f, 5}, d);
    REQUIRE(k.round(std::span<float>(g), as_results(w, ex)).updated());
    for (auto i : k.state().selected) CHECK(i < honest);
    require_close(g, ref_fedavg(kept, kex), 1e-5, 1e-6);
  }
  SECTION("n < 2f + 3 fails the round") {
    vecf g(d, 1.0f);
    tl::aggregator<tl::krum> k(tl::krum{4, 0}, d);  // needs 11
    const auto rep = k.round(std::span<float>(g), as_results(w, ones(n)));
    CHECK_FALSE(rep.updated());
    CHECK(rep.outcome.code == tl::errc::invalid_argument);
    CHECK(g == vecf(d, 1.0f));
  }
}

namespace {
// Independent Bulyan: recursive Krum by naive scores, then per coordinate the
// mean of the beta values closest to the median (full sort by distance).
vecd ref_bulyan(const std::vector<vecf>& w, std::size_t f, std::vector<std::size_t>* sel_out) {
  const std::size_t n = w.size(), theta = n - 2 * f, beta = theta - 2 * f;
  std::vector<std::size_t> rem(n), sel;
  std::iota(rem.begin(), rem.end(), 0);
  while (sel.size() < theta) {
    const auto s = ref_krum_scores(w, rem, f);
    const auto b = static_cast<std::size_t>(std::min_element(s.begin(), s.end()) - s.begin());
    sel.push_back(rem[b]);
    rem.erase(rem.begin() + static_cast<long>(b));
  }
  if (sel_out) *sel_out = sel;
  vecd out(w[0].size());
  for (std::size_t j = 0; j < out.size(); ++j) {
    vecd c;
    for (auto i : sel) c.push_back(w[i][j]);
    const double med = ref_median(c);
    std::vector<std::pair<double, double>> byd;
    for (double x : c) byd.push_back({std::fabs(x - med), x});
    std::sort(byd.begin(), byd.end());
    double s = 0;
    for (std::size_t k = 0; k < beta; ++k) s += byd[k].second;
    out[j] = s / static_cast<double>(beta);
  }
  return out;
}
}  // namespace

TEST_CASE("bulyan: n >= 4f + 3, recursive krum then trimmed mean around the median", "[aggregate][bulyan]") {
  const std::size_t f = 2, d = 40;
  SECTION("n = 4f + 2 is refused, global untouched") {
    auto w = random_clients(4 * f + 2, d, 8);
    vecf g(d, -1.0f);
    tl::aggregator<tl::bulyan> b(tl::bulyan{f}, d);
    const auto rep = b.round(std::span<float>(g), as_results(w, ones(w.size())));
    CHECK_FALSE(rep.updated());
    CHECK(std::string(rep.outcome.message).find("min_clients") != std::string::npos);
    CHECK(g == vecf(d, -1.0f));
  }
  SECTION("n = 4f + 3 with f far attackers: matches the reference, attackers never selected") {
    auto w = random_clients(4 * f + 1, d, 11, 0.2f, 0.5f);
    auto bad = random_clients(f, d, 12, 0.2f, 30.0f);
    w.insert(w.end(), bad.begin(), bad.end());
    std::vector<std::size_t> want_sel;
    const auto want = ref_bulyan(w, f, &want_sel);
    vecf g(d);
    tl::aggregator<tl::bulyan> b(tl::bulyan{f}, d);
    REQUIRE(b.round(std::span<float>(g), as_results(w, ones(w.size()))).updated());
    REQUIRE(b.state().selected == want_sel);
    for (auto i : want_sel) CHECK(i < 4 * f + 1);
    require_close(g, want, 1e-6, 1e-6);
  }
  SECTION("random clients, no attackers") {
    auto w = random_clients(15, d, 99);
    vecf g(d);
    tl::aggregator<tl::bulyan> b(tl::bulyan{3}, d);
    REQUIRE(b.round(std::span<float>(g), as_results(w, ones(15))).updated());
    require_close(g, ref_bulyan(w, 3, nullptr), 1e-6, 1e-6);
  }
}

// ===========================================================================
// fp16 and int8 updates give the fp32 result of the decoded values
// ===========================================================================

namespace {
struct encoded_fleet {
  std::vector<std::vector<tl::half>> h;
  std::vector<std::vector<std::int8_t>> q;
  std::vector<vecf> scales;
  std::vector<vecf> h_dec, q_dec;  // decoded values, by independent scalar code
};
encoded_fleet encode_fleet(const std::vector<vecf>& w, std::size_t chunk) {
  encoded_fleet e;
  for (const auto& v : w) {
    std::vector<tl::half> h(v.size());
    vecf hd(v.size());
    for (std::size_t j = 0; j < v.size(); ++j) h[j] = tl::float_to_half(v[j]), hd[j] = tl::half_to_float(h[j]);
    std::vector<std::int8_t> q(v.size());
    vecf s((v.size() + chunk - 1) / chunk), qd(v.size());
    tl::encode_int8_update(v, chunk, q, s);
    for (std::size_t j = 0; j < v.size(); ++j) qd[j] = s[j / chunk] * static_cast<float>(q[j]);
    e.h.push_back(h), e.q.push_back(q), e.scales.push_back(s), e.h_dec.push_back(hd), e.q_dec.push_back(qd);
  }
  return e;
}
template <class Policy>
void check_encodings(const Policy& pol, const std::vector<vecf>& w, const std::vector<std::int64_t>& ex, double rel) {
  const std::size_t d = w[0].size(), chunk = 300;
  auto e = encode_fleet(w, chunk);
  std::vector<tl::client_result<tl::fp16_update>> rh;
  std::vector<tl::client_result<tl::int8_update>> rq;
  for (std::size_t i = 0; i < w.size(); ++i) {
    rh.push_back({i, tl::fp16_update{e.h[i]}, ex[i]});
    rq.push_back({i, tl::int8_update{e.q[i], e.scales[i], {}, chunk}, ex[i]});
  }
  vecf gh(d), gq(d), rh_ref(d), rq_ref(d);
  tl::aggregator<Policy> a1(pol, d), a2(pol, d), a3(pol, d), a4(pol, d);
  REQUIRE(a1.round(std::span<float>(gh), rh).updated());
  REQUIRE(a2.round(std::span<float>(gq), rq).updated());
  REQUIRE(a3.round(std::span<float>(rh_ref), as_results(e.h_dec, ex)).updated());
  REQUIRE(a4.round(std::span<float>(rq_ref), as_results(e.q_dec, ex)).updated());
  require_close(gh, rh_ref, rel, 1e-7);
  require_close(gq, rq_ref, rel, 1e-7);
}
}  // namespace

TEST_CASE("bucketing: random buckets of s, plain means, then the inner rule", "[aggregate][bucketing]") {
  const std::size_t d = 1500;
  SECTION("buckets partition the clients; result = median of the bucket means") {
    for (std::size_t n : {std::size_t{7}, std::size_t{10}}) {
      for (std::size_t s : {std::size_t{2}, std::size_t{3}}) {
        auto w = random_clients(n, d, 900 + n * 10 + s);
        std::vector<std::int64_t> ex(n);
        for (std::size_t i = 0; i < n; ++i) ex[i] = static_cast<std::int64_t>(1 + 13 * i);
        vecf g(d);
        tl::aggregator<tl::bucketing<tl::coordinate_median>> agg(tl::bucketing<tl::coordinate_median>{.bucket_size = s}, d);
        for (int round = 0; round < 2; ++round) {  // a fresh shuffle every round
          REQUIRE(agg.round(std::span<float>(g), as_results(w, ex)).updated());
          const auto& buckets = agg.state().buckets;
          REQUIRE(buckets.size() == (n + s - 1) / s);
          std::vector<int> seen(n, 0);
          for (std::size_t b = 0; b < buckets.size(); ++b) {
            CHECK(buckets[b].size() == (b + 1 < buckets.size() ? s : n - s * (buckets.size() - 1)));
            for (const std::size_t i : buckets[b]) ++seen[i];
          }
          for (const int c : seen) REQUIRE(c == 1);
          std::vector<vecf> means;
          for (const auto& bk : buckets) {
            vecf m(d, 0.0f);
            for (std::size_t j = 0; j < d; ++j) {
              double acc = 0;
              for (const std::size_t i : bk) acc += w[i][j];
              m[j] = static_cast<float>(acc / static_cast<double>(bk.size()));  // unweighted
            }
            means.push_back(std::move(m));
          }
          vecd want(d);
          for (std::size_t j = 0; j < d; ++j) want[j] = ref_median(column(means, j));
          require_close(g, want, 1e-5, 1e-6);
        }
      }
    }
  }
  SECTION("s = 1 is the inner rule itself") {
    const std::size_t n = 9;
    auto w = random_clients(n, d, 4242);
    vecf g1(d), g2(d);
    tl::aggregator<tl::bucketing<tl::trimmed_mean>> b1(tl::bucketing<tl::trimmed_mean>{.inner = {.beta = 0.2}, .bucket_size = 1}, d);
    tl::aggregator<tl::trimmed_mean> t(tl::trimmed_mean{.beta = 0.2}, d);
    REQUIRE(b1.round(std::span<float>(g1), as_results(w, ones(n))).updated());
    REQUIRE(t.round(std::span<float>(g2), as_results(w, ones(n))).updated());
    require_close(g1, g2, 1e-6, 1e-7);
  }
  SECTION("too few buckets for Krum's 2f + 3: round fails, weights untouched") {
    tl::bucketing<tl::krum> pol{.inner = {.num_malicious = 2}, .bucket_size = 2};
    CHECK(pol.min_clients() == 13);  // ⌈13 / 2⌉ = 7 = 2f + 3
    auto w = random_clients(12, d, 5);
    vecf g(d, 0.5f);
    tl::aggregator<tl::bucketing<tl::krum>> agg(pol, d);
    CHECK_FALSE(agg.round(std::span<float>(g), as_results(w, ones(12))).updated());
    for (const float x : g) REQUIRE(x == 0.5f);
    auto w13 = random_clients(13, d, 6);
    CHECK(agg.round(std::span<float>(g), as_results(w13, ones(13))).updated());
  }
  SECTION("heterogeneous honest clients: bucketing narrows the spread the rule sees") {
    // Two honest groups far apart (+1 / −1, as 2-class clients pulling different ways), interleaved:
    // the plain median lands on one group's edge, the bucketed median near their centre.
    const std::size_t n = 10;
    std::vector<vecf> w(n, vecf(d));
    tl::rng r(99);
    for (std::size_t i = 0; i < n; ++i)
      for (auto& x : w[i]) x = (i % 2 ? 1.0f : -1.0f) + 0.05f * r.normal();
    w[0].assign(d, 0.6f);  // move one −1 client to +0.6: the honest groups are now 6 vs 4
    vecf plain(d), bucketed(d);
    tl::aggregator<tl::coordinate_median> m(tl::coordinate_median{}, d);
    tl::aggregator<tl::bucketing<tl::coordinate_median>> bm(tl::bucketing<tl::coordinate_median>{.bucket_size = 2}, d);
    REQUIRE(m.round(std::span<float>(plain), as_results(w, ones(n))).updated());
    double mean_plain = 0, centre = 0;
    for (std::size_t j = 0; j < d; ++j) {
      mean_plain += plain[j] / static_cast<double>(d);
      for (std::size_t i = 0; i < n; ++i) centre += w[i][j] / static_cast<double>(d * n);
    }
    // Averaged over 40 rounds (40 random bucketings): one unlucky bucketing can be as far as the plain median.
    double err_bucketed = 0;
    for (int round = 0; round < 40; ++round) {
      REQUIRE(bm.round(std::span<float>(bucketed), as_results(w, ones(n))).updated());
      double mb = 0;
      for (std::size_t j = 0; j < d; ++j) mb += bucketed[j] / static_cast<double>(d);
      err_bucketed += std::fabs(mb - centre) / 40;
    }
    INFO("plain median " << mean_plain << ", bucketed error " << err_bucketed << ", mean " << centre);
    CHECK(std::fabs(mean_plain - 0.8) < 0.05);  // the 5th and 6th values: 0.6 and +1
    CHECK(err_bucketed < 0.75 * std::fabs(mean_plain - centre));
  }
}

namespace {
// Reference NNM (Allouah et al. 2023), written out plainly: distances in double, a full sort of the
// others by (distance, position), N_i = {i} + the n − f − 1 nearest others, y_i = their mean.
struct ref_nnm_result {
  std::vector<std::vector<std::size_t>> neighbours;
  std::vector<vecf> mixed;
};
ref_nnm_result ref_nnm(const std::vector<vecf>& w, std::size_t f) {
  const std::size_t n = w.size(), d = w[0].size(), k = n - f;
  ref_nnm_result r;
  for (std::size_t i = 0; i < n; ++i) {
    std::vector<std::pair<double, std::size_t>> others;
    for (std::size_t j = 0; j < n; ++j)
      if (j != i) others.push_back({sqdist(w[i], w[j]), j});
    std::sort(others.begin(), others.end());
    std::vector<std::size_t> nb{i};
    for (std::size_t q = 0; q + 1 < k; ++q) nb.push_back(others[q].second);
    vecf y(d);
    for (std::size_t j = 0; j < d; ++j) {
      double acc = 0;
      for (const std::size_t c : nb) acc += w[c][j];
      y[j] = static_cast<float>(acc / static_cast<double>(k));
    }
    r.neighbours.push_back(std::move(nb));
    r.mixed.push_back(std::move(y));
  }
  return r;
}
// Heterogeneous clients at random points of a random plane (x_i = a_i·u + b_i·v + small noise): points in
// general position, so clients have different nearest neighbours, and the mixed vectors (means of different
// subsets) are well apart — no near-ties for Krum's argmin.
std::vector<vecf> spread_clients(std::size_t n, std::size_t d, std::uint64_t seed) {
  tl::rng g(seed);
  vecf u(d), v(d);
  for (auto& x : u) x = g.normal();
  for (auto& x : v) x = g.normal();
  std::vector<vecf> w(n, vecf(d));
  for (std::size_t i = 0; i < n; ++i) {
    const float a = 2.0f * g.normal(), b = 2.0f * g.normal();
    for (std::size_t j = 0; j < d; ++j) w[i][j] = a * u[j] + b * v[j] + 0.05f * g.normal();
  }
  return w;
}
}  // namespace

TEST_CASE("nearest-neighbor mixing: means of the n - f nearest, then the inner rule", "[aggregate][nnm]") {
  const std::size_t d = 1500;
  SECTION("matches a reference implementation, fp32 updates (median, trimmed mean, Krum, Bulyan)") {
    const std::size_t n = 11, f = 2;
    auto w = spread_clients(n, d, 1234);
    std::vector<std::int64_t> ex(n);
    for (std::size_t i = 0; i < n; ++i) ex[i] = static_cast<std::int64_t>(2 + 7 * i);
    const ref_nnm_result ref = ref_nnm(w, f);
    // The neighbourhoods really differ between clients (otherwise the test would not see a wrong N_i).
    std::size_t distinct = 0;
    for (std::size_t i = 1; i < n; ++i) {
      auto a = ref.neighbours[i], b = ref.neighbours[0];
      std::sort(a.begin(), a.end()), std::sort(b.begin(), b.end());
      distinct += a != b ? 1 : 0;
    }
    REQUIRE(distinct >= n / 2);

    using nnm_median = tl::nearest_neighbor_mixing<tl::coordinate_median>;
    tl::aggregator<nnm_median> agg(nnm_median{.num_malicious = f}, d);
    vecf g(d);
    REQUIRE(agg.round(std::span<float>(g), as_results(w, ex)).updated());
    REQUIRE(agg.state().neighbours == ref.neighbours);
    REQUIRE(agg.state().mixed.size() == n);
    for (std::size_t i = 0; i < n; ++i) require_close(agg.state().mixed[i], ref.mixed[i], 1e-5, 1e-6);
    vecd want(d);
    for (std::size_t j = 0; j < d; ++j) want[j] = ref_median(column(ref.mixed, j));
    require_close(g, want, 1e-5, 1e-6);

    // Other inner rules: the mixed vectors match the reference, and NNM ∘ rule is exactly the rule applied to
    // them (with the clients' example counts, in client order). Not against the reference mixed vectors
    // themselves: clients whose N_i are the same set have mixed vectors equal up to rounding, and Krum's /
    // Bulyan's argmin among such near-duplicates depends on that rounding.
    auto same_as_inner = [&]<class Inner>(const Inner& inner) {
      using P = tl::nearest_neighbor_mixing<Inner>;
      tl::aggregator<P> a(P{.inner = inner, .num_malicious = f}, d);
      tl::aggregator<Inner> b(inner, d);
      vecf g1(d), g2(d);
      REQUIRE(a.round(std::span<float>(g1), as_results(w, ex)).updated());
      INFO("inner rule " << Inner::name());
      REQUIRE(a.state().neighbours == ref.neighbours);
      for (std::size_t i = 0; i < n; ++i) require_close(a.state().mixed[i], ref.mixed[i], 1e-5, 1e-6);
      REQUIRE(b.round(std::span<float>(g2), as_results(a.state().mixed, ex)).updated());
      require_close(g1, g2, 0.0, 0.0);
    };
    same_as_inner(tl::trimmed_mean{.beta = 0.2});
    same_as_inner(tl::krum{.num_malicious = f});
    same_as_inner(tl::krum{.num_malicious = f, .num_to_keep = 5});  // Multi-Krum: example-weighted
    same_as_inner(tl::bulyan{.num_malicious = f});                  // n = 11 = 4f + 3
  }
  SECTION("int8 and fp16 updates: the reference on the decoded values") {
    const std::size_t n = 9, f = 3, dd = 3001, chunk = 300;
    auto w = spread_clients(n, dd, 77);
    auto e = encode_fleet(w, chunk);
    std::vector<tl::client_result<tl::int8_update>> rq;
    std::vector<tl::client_result<tl::fp16_update>> rh;
    for (std::size_t i = 0; i < n; ++i) {
      rq.push_back({i, tl::int8_update{e.q[i], e.scales[i], {}, chunk}, 1});
      rh.push_back({i, tl::fp16_update{e.h[i]}, 1});
    }
    using P = tl::nearest_neighbor_mixing<tl::trimmed_mean>;
    const P pol{.inner = {.beta = 0.2}, .num_malicious = f};
    tl::aggregator<P> aq(pol, dd), ah(pol, dd);
    vecf gq(dd), gh(dd);
    REQUIRE(aq.round(std::span<float>(gq), rq).updated());
    REQUIRE(ah.round(std::span<float>(gh), rh).updated());
    for (const auto& [agg, dec, got] : {std::tuple{&aq, &e.q_dec, &gq}, std::tuple{&ah, &e.h_dec, &gh}}) {
      const ref_nnm_result ref = ref_nnm(*dec, f);
      REQUIRE(agg->state().neighbours == ref.neighbours);
      for (std::size_t i = 0; i < n; ++i) require_close(agg->state().mixed[i], ref.mixed[i], 1e-5, 1e-6);
      vecd want(dd);
      for (std::size_t j = 0; j < dd; ++j) want[j] = ref_trimmed(column(ref.mixed, j), 1);  // ⌊0.2 · 9⌋ = 1
      require_close(*got, want, 1e-5, 1e-6);
    }
  }
  SECTION("f = 0: every mixed vector is the plain mean, so NNM o median = the mean") {
    const std::size_t n = 8;
    auto w = spread_clients(n, d, 555);
    const vecd mean = ref_fedavg(w, ones(n));
    using P = tl::nearest_neighbor_mixing<tl::coordinate_median>;
    tl::aggregator<P> agg(P{}, d);
    vecf g(d);
    REQUIRE(agg.round(std::span<float>(g), as_results(w, ones(n))).updated());
    for (std::size_t i = 0; i < n; ++i) {
      REQUIRE(agg.state().neighbours[i].size() == n);
      require_close(agg.state().mixed[i], mean, 1e-5, 1e-6);
    }
    require_close(g, mean, 1e-5, 1e-6);
  }
  SECTION("far outliers never enter an honest neighbourhood; the result is the honest mean") {
    const std::size_t n = 10, f = 2;
    auto w = spread_clients(n, d, 31337);  // heterogeneous honest clients
    w[3].assign(d, 1000.0f);                     // two attackers far away, on opposite sides
    w[8].assign(d, -400.0f);
    std::vector<vecf> honest;
    for (std::size_t i = 0; i < n; ++i)
      if (i != 3 && i != 8) honest.push_back(w[i]);
    const vecd honest_mean = ref_fedavg(honest, ones(honest.size()));
    using P = tl::nearest_neighbor_mixing<tl::coordinate_median>;
    tl::aggregator<P> agg(P{.num_malicious = f}, d);
    vecf g(d);
    REQUIRE(agg.round(std::span<float>(g), as_results(w, ones(n))).updated());
    for (std::size_t i = 0; i < n; ++i) {
      if (i == 3 || i == 8) continue;
      const auto& nb = agg.state().neighbours[i];
      REQUIRE(nb.size() == n - f);
      CHECK(nb[0] == i);
      CHECK(std::find(nb.begin(), nb.end(), std::size_t{3}) == nb.end());
      CHECK(std::find(nb.begin(), nb.end(), std::size_t{8}) == nb.end());
      require_close(agg.state().mixed[i], honest_mean, 1e-5, 1e-6);  // N_i = the 8 honest clients
    }
    // 8 of the 10 mixed vectors are the honest mean, so the median is too; the plain median is not.
    require_close(g, honest_mean, 1e-5, 1e-5);
    tl::aggregator<tl::coordinate_median> plain(tl::coordinate_median{}, d);
    vecf gp(d);
    REQUIRE(plain.round(std::span<float>(gp), as_results(w, ones(n))).updated());
    double err = 0;
    for (std::size_t j = 0; j < d; ++j) err = std::max(err, std::fabs(gp[j] - honest_mean[j]));
    CHECK(err > 0.1);
  }
  SECTION("deterministic tie-break: x_i first, then equal distances by position") {
    const std::size_t n = 6;
    std::vector<vecf> w(n, vecf(d, 0.25f));  // all identical: every distance is 0
    using P = tl::nearest_neighbor_mixing<tl::coordinate_median>;
    tl::aggregator<P> agg(P{.num_malicious = 2}, d);
    vecf g(d);
    REQUIRE(agg.round(std::span<float>(g), as_results(w, ones(n))).updated());
    using nbv = std::vector<std::size_t>;
    CHECK(agg.state().neighbours[0] == nbv{0, 1, 2, 3});
    CHECK(agg.state().neighbours[2] == nbv{2, 0, 1, 3});
    CHECK(agg.state().neighbours[5] == nbv{5, 0, 1, 2});
    for (const float x : g) REQUIRE(x == 0.25f);
  }
  SECTION("errors: f >= n, or fewer updates than the inner rule needs") {
    using PK = tl::nearest_neighbor_mixing<tl::krum>;
    const PK pk{.inner = {.num_malicious = 2}, .num_malicious = 2};
    CHECK(pk.min_clients() == 7);  // Krum's 2f + 3
    using PM = tl::nearest_neighbor_mixing<tl::coordinate_median>;
    CHECK(PM{.num_malicious = 5}.min_clients() == 6);  // f < n
    auto w6 = random_clients(6, d, 8);
    auto r6 = as_results(w6, ones(6));
    // Through the aggregator: the round fails, the weights are untouched.
    vecf g(d, 0.5f);
    tl::aggregator<PK> ak(pk, d);
    CHECK_FALSE(ak.round(std::span<float>(g), r6).updated());
    tl::aggregator<PM> am(PM{.num_malicious = 6}, d);
    CHECK_FALSE(am.round(std::span<float>(g), r6).updated());
    for (const float x : g) REQUIRE(x == 0.5f);
    // Called directly (past the aggregator's min_clients check): a clear error status, no crash.
    std::vector<const tl::client_result<tl::fp32_update>*> ptrs;
    for (const auto& r : r6) ptrs.push_back(&r);
    const tl::update_set<tl::fp32_update> set(std::span<const tl::client_result<tl::fp32_update>* const>(ptrs), d);
    PK::state<float> sk(pk, d);
    const tl::status s1 = pk.aggregate(sk, std::span<float>(g), set);
    CHECK(s1.code == tl::errc::invalid_argument);
    const PM pm6{.num_malicious = 6}, pm9{.num_malicious = 9};
    PM::state<float> sm(pm6, d);
    CHECK(pm6.aggregate(sm, std::span<float>(g), set).code == tl::errc::invalid_argument);
    CHECK(pm9.aggregate(sm, std::span<float>(g), set).code == tl::errc::invalid_argument);
    for (const float x : g) REQUIRE(x == 0.5f);
    // n = 7 is enough for Krum with f = 2.
    auto w7 = random_clients(7, d, 9);
    CHECK(ak.round(std::span<float>(g), as_results(w7, ones(7))).updated());
  }
}

TEST_CASE("fp16 and int8 updates aggregate like fp32 of their decoded values", "[aggregate][encoding]") {
  const std::size_t n = 11, d = 3001;  // not a multiple of the 4 KiB decode chunk nor of the int8 chunk
  auto w = random_clients(n, d, 2024, 0.5f);
  std::vector<std::int64_t> ex{3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5};
  SECTION("fedavg") { check_encodings(tl::fedavg{}, w, ex, 1e-6); }
  SECTION("fedadam") { check_encodings(tl::fedadam{}, w, ex, 1e-5); }
  SECTION("median") { check_encodings(tl::coordinate_median{}, w, ex, 0); }
  SECTION("trimmed mean") { check_encodings(tl::trimmed_mean{0.2}, w, ex, 1e-6); }
  SECTION("krum") { check_encodings(tl::krum{2, 0}, w, ex, 0); }
  SECTION("bulyan") { check_encodings(tl::bulyan{2}, w, ex, 1e-6); }
  SECTION("nnm median") { check_encodings(tl::nearest_neighbor_mixing<tl::coordinate_median>{.num_malicious = 3}, w, ex, 1e-6); }
  SECTION("dp fixed clipping, z = 0 (weighted sum against a reference)") {
    tl::dp_fixed_clipping<> p;
    p.noise_multiplier = 0.0f;
    p.clipping_norm = 20.0f;  // norms ≈ 0.5·√3001 ≈ 27: all clipped
    check_encodings(p, w, ex, 1e-5);
  }
  SECTION("int8 with zero points decodes s (q - z)") {
    std::vector<std::int8_t> q{-128, 0, 127, 5};
    vecf s{0.5f, 2.0f};
    std::vector<std::int32_t> z{-128, 3};
    tl::int8_update u{q, s, z, 2};
    REQUIRE(u.check_encoding().ok());
    vecf out(3);
    u.decode(1, std::span<float>(out));
    CHECK(out[0] == 0.5f * 128.0f);
    CHECK(out[1] == 2.0f * 124.0f);
    CHECK(out[2] == 2.0f * 2.0f);
  }
}

// ===========================================================================
// Validation
// ===========================================================================

TEST_CASE("invalid updates are rejected with a reason and never aggregated", "[aggregate][validation]") {
  const std::size_t d = 50;
  auto w = random_clients(4, d, 31);
  vecf nan_w = w[0], inf_w = w[1], short_w(d - 1, 0.0f);
  nan_w[17] = std::numeric_limits<float>::quiet_NaN();
  inf_w[d - 1] = -std::numeric_limits<float>::infinity();
  fp32_results r{{1, {w[0]}, 10},   {2, {nan_w}, 10}, {3, {w[1]}, 20},   {4, {inf_w}, 5},
                 {5, {short_w}, 5}, {6, {w[2]}, 0},   {7, {w[3]}, -3},  {3, {w[2]}, 4}};
  const std::vector<vecf> good{w[0], w[1]};
  const std::vector<std::int64_t> good_n{10, 20};

  auto check_report = [](const tl::round_report& rep) {
    REQUIRE(rep.updated());
    CHECK(rep.accepted == std::vector<std::uint64_t>{1, 3});
    std::vector<std::pair<std::uint64_t, tl::rejection_reason>> got;
    for (auto& x : rep.rejected) got.push_back({x.client_id, x.reason});
    std::sort(got.begin(), got.end());
    const std::vector<std::pair<std::uint64_t, tl::rejection_reason>> want{
        {2, tl::rejection_reason::non_finite},        {3, tl::rejection_reason::duplicate_client},
        {4, tl::rejection_reason::non_finite},        {5, tl::rejection_reason::wrong_length},
        {6, tl::rejection_reason::bad_example_count}, {7, tl::rejection_reason::bad_example_count}};
    CHECK(got == want);
  };
  SECTION("linear policy (fused NaN detection)") {
    vecf g(d);
    tl::aggregator<tl::fedavg> agg(tl::fedavg{}, d);
    const auto rep = agg.round(std::span<float>(g), r);
    check_report(rep);
    require_close(g, ref_fedavg(good, good_n), 1e-6, 1e-7);
  }
  SECTION("general policy (scan before aggregating)") {
    vecf g(d);
    tl::aggregator<tl::coordinate_median> agg(tl::coordinate_median{}, d);
    const auto rep = agg.round(std::span<float>(g), r);
    check_report(rep);
    for (std::size_t j = 0; j < d; ++j) CHECK(g[j] == static_cast<float>(0.5 * (static_cast<double>(w[0][j]) + w[1][j])));
  }
  SECTION("fp16 infinity and bad int8 scales") {
    std::vector<tl::half> h(d, tl::float_to_half(1.0f)), hbad = h;
    hbad[3] = tl::half{0x7C00};  // +inf
    std::vector<tl::client_result<tl::fp16_update>> rh{{1, {h}, 1}, {2, {hbad}, 1}};
    vecf g(d);
    tl::aggregator<tl::fedavg> agg(tl::fedavg{}, d);
    const auto rep = agg.round(std::span<float>(g), rh);
    REQUIRE(rep.rejected.size() == 1);
    CHECK(rep.rejected[0].reason == tl::rejection_reason::non_finite);
    CHECK(g == vecf(d, 1.0f));

    std::vector<std::int8_t> q(d, 1);
    vecf s_ok{0.5f}, s_nan{std::numeric_limits<float>::quiet_NaN()}, s_neg{-1.0f}, s_two{1.0f, 1.0f};
    std::vector<tl::client_result<tl::int8_update>> rq{
        {1, {q, s_ok, {}, 0}, 1}, {2, {q, s_nan, {}, 0}, 1}, {3, {q, s_neg, {}, 0}, 1}, {4, {q, s_two, {}, 0}, 1}};
    const auto rep2 = agg.round(std::span<float>(g), rq);
    CHECK(rep2.accepted == std::vector<std::uint64_t>{1});
    REQUIRE(rep2.rejected.size() == 3);
    for (auto& x : rep2.rejected) CHECK(x.reason == tl::rejection_reason::bad_encoding);
    CHECK(g == vecf(d, 0.5f));
  }
  SECTION("too few valid updates: round fails, global untouched") {
    vecf g(d, 3.0f);
    tl::aggregator<tl::krum> agg(tl::krum{0, 0}, d);  // needs 3
    const auto rep = agg.round(std::span<float>(g), r);
    CHECK_FALSE(rep.updated());
    CHECK(rep.accepted.size() == 2);
    CHECK(g == vecf(d, 3.0f));
  }
  SECTION("every update invalid: round fails, global untouched") {
    vecf g(d, 2.0f);
    fp32_results bad{{2, {nan_w}, 10}, {4, {inf_w}, 5}};
    tl::aggregator<tl::fedadam> agg(tl::fedadam{}, d);
    const auto rep = agg.round(std::span<float>(g), bad);
    CHECK_FALSE(rep.updated());
    CHECK(rep.accepted.empty());
    CHECK(rep.rejected.size() == 2);
    CHECK(g == vecf(d, 2.0f));
    CHECK(agg.state().rounds == 0);  // the optimizer state did not advance
  }
}

// ===========================================================================
// Differential privacy
// ===========================================================================

TEST_CASE("dp fixed clipping: clipped deltas, uniform weights, noise sigma = zC/m", "[aggregate][dp]") {
  const std::size_t d = 20;
  vecf wt(d, 1.0f);
  // Deltas with norms 0.5, 2 and 8 along different directions.
  std::vector<vecf> w(3, wt);
  w[0][0] += 0.5f;
  w[1][1] += 2.0f;
  for (std::size_t j = 0; j < 16; ++j) w[2][j] += 2.0f;  // norm √(16·4) = 8
  SECTION("z = 0: exact clipped mean") {
    tl::dp_fixed_clipping<> p;
    p.noise_multiplier = 0.0f;
    p.clipping_norm = 1.0f;
    vecf g = wt;
    tl::aggregator<tl::dp_fixed_clipping<>> agg(p, d);
    REQUIRE(agg.round(std::span<float>(g), as_results(w, {1, 100, 1000})).updated());  // examples ignored
    require_close(agg.state().norms, vecd{0.5, 2.0, 8.0}, 1e-6, 0);
    CHECK(agg.state().unclipped == 1);
    vecd want(d, 1.0);
    want[0] += 0.5 / 3;
    want[1] += 1.0 / 3;
    for (std::size_t j = 0; j < 16; ++j) want[j] += (2.0 / 8.0) / 3;
    require_close(g, want, 1e-6, 1e-6);
  }
  SECTION("z = 0, random clients (groups of four and a remainder), against a direct reference") {
    const std::size_t n = 11, dd = 2001;
    auto base = random_clients(1, dd, 600, 1.0f)[0];
    std::vector<vecf> cw;
    for (std::size_t i = 0; i < n; ++i) {
      auto delta = random_clients(1, dd, 700 + i, 0.02f * static_cast<float>(i + 1))[0];
      vecf x(dd);
      for (std::size_t j = 0; j < dd; ++j) x[j] = base[j] + delta[j];
      cw.push_back(x);
    }
    tl::dp_fixed_clipping<> p;
    p.noise_multiplier = 0.0f;
    p.clipping_norm = 3.0f;  // norms ≈ 0.89 · (i + 1): three unclipped
    vecf g = base;
    tl::aggregator<tl::dp_fixed_clipping<>> agg(p, dd);
    REQUIRE(agg.round(std::span<float>(g), as_results(cw, ones(n))).updated());
    vecd want(base.begin(), base.end());
    std::size_t unclipped = 0;
    for (std::size_t i = 0; i < n; ++i) {
      const double norm = std::sqrt(sqdist(cw[i], base));
      CHECK(agg.state().norms[i] == Approx(norm).epsilon(1e-5));
      unclipped += norm <= 3.0;
      const double f = std::min(1.0, 3.0 / norm) / static_cast<double>(n);
      for (std::size_t j = 0; j < dd; ++j) want[j] += f * (static_cast<double>(cw[i][j]) - base[j]);
    }
    CHECK(agg.state().unclipped == unclipped);
    CHECK(unclipped > 0);
    CHECK(unclipped < n);
    require_close(g, want, 1e-5, 1e-6);
  }
  SECTION("noise statistics over many coordinates") {
    const std::size_t big = 200000;
    vecf base(big, 0.0f);
    std::vector<vecf> same(4, base);  // all deltas zero: the output is pure noise
    tl::dp_fixed_clipping<> p;
    p.noise_multiplier = 1.3f;
    p.clipping_norm = 2.0f;
    p.num_sampled_clients = 5;  // fixed denominator m = 5
    vecf g = base;
    tl::aggregator<tl::dp_fixed_clipping<>> agg(p, big);
    REQUIRE(agg.round(std::span<float>(g), as_results(same, ones(4))).updated());
    const double sigma = 1.3 * 2.0 / 5.0;
    CHECK(agg.state().noise_stddev == Approx(sigma));
    double mean = 0, sq = 0;
    for (float x : g) mean += x, sq += static_cast<double>(x) * x;
    mean /= big;
    const double sd = std::sqrt(sq / big - mean * mean);
    CHECK(std::fabs(mean) < 4 * sigma / std::sqrt(static_cast<double>(big)));
    CHECK(sd == Approx(sigma).epsilon(0.01));
    // Same seed, same noise: runs repeat exactly.
    vecf g2 = base;
    tl::aggregator<tl::dp_fixed_clipping<>> agg2(p, big);
    REQUIRE(agg2.round(std::span<float>(g2), as_results(same, ones(4))).updated());
    CHECK(g == g2);
  }
  SECTION("clip_l2 on the client") {
    vecf x{3.0f, 4.0f};
    CHECK(tl::clip_l2(x, 1.0f) == Approx(5.0));
    CHECK(tl::l2_norm(x) == Approx(1.0));
    CHECK(x[0] == Approx(0.6f));
  }
}

TEST_CASE("dp adaptive clipping follows Andrew et al.'s geometric update", "[aggregate][dp]") {
  const std::size_t d = 10;
  vecf wt(d, 0.0f);
  std::vector<vecf> w(4, wt);
  const float norm[4] = {0.05f, 0.08f, 0.15f, 0.2f};
  for (std::size_t i = 0; i < 4; ++i) w[i][i] = norm[i];
  tl::dp_adaptive_clipping<> p;
  p.noise_multiplier = 0.0f;
  p.clipped_count_stddev = 0.0f;  // deterministic count
  tl::aggregator<tl::dp_adaptive_clipping<>> agg(p, d);
  vecf g = wt;
  REQUIRE(agg.round(std::span<float>(g), as_results(w, ones(4))).updated());
  // C0 = 0.1: two updates unclipped (0.05, 0.08) → b/m = 0.5 = γ → C unchanged.
  CHECK(agg.state().unclipped == 2);
  CHECK(agg.state().clipping_norm == Approx(0.1));
  // Next round, norms all 0.05: b/m = 1 → C ← 0.1·exp(−0.2·0.5).
  std::vector<vecf> w2(4, g);
  for (std::size_t i = 0; i < 4; ++i) w2[i][9] += 0.05f;
  REQUIRE(agg.round(std::span<float>(g), as_results(w2, ones(4))).updated());
  CHECK(agg.state().clipping_norm == Approx(0.1 * std::exp(-0.2 * 0.5)));

  SECTION("noise multiplier split between count and update") {
    tl::dp_adaptive_clipping<> q;
    q.noise_multiplier = 1.0f;
    CHECK(q.count_stddev(100) == Approx(5.0));
    CHECK(q.update_noise_multiplier(100) == Approx(1.0 / std::sqrt(1.0 - 1.0 / 100.0)));
    CHECK(std::isnan(q.update_noise_multiplier(10)));  // z = 1 ≥ 2·(10/20)
    tl::aggregator<tl::dp_adaptive_clipping<>> bad(q, d);
    vecf h(d, 0.0f);
    CHECK_FALSE(bad.round(std::span<float>(h), as_results(w, ones(4))).updated());
  }
}

TEST_CASE("rdp accountant", "[aggregate][dp][accountant]") {
  SECTION("full participation: R alpha / (2 z^2) per order, epsilon near the continuous optimum") {
    for (double z : {0.8, 1.0, 2.5}) {
      for (std::size_t R : {std::size_t{1}, std::size_t{10}, std::size_t{300}}) {
        tl::rdp_accountant acc;
        acc.compose(z, 1.0, R);
        for (std::size_t k = 0; k < acc.orders().size(); ++k)
          REQUIRE(acc.rdp()[k] == Approx(static_cast<double>(R) * acc.orders()[k] / (2 * z * z)));
        const double delta = 1e-5, L = std::log(1 / delta);
        // min over real α > 1 of Rα/(2z²) + L/(α−1) is R/(2z²) + √(2RL)/z at α* = 1 + z√(2L/R).
        const double best = static_cast<double>(R) / (2 * z * z) + std::sqrt(2 * static_cast<double>(R) * L) / z;
        const double eps = acc.epsilon(delta, tl::rdp_conversion::mironov2017);
        CHECK(acc.epsilon(delta) <= eps);  // the Balle et al. conversion is never looser
        const double a_star = 1 + z * std::sqrt(2 * L / static_cast<double>(R));
        INFO("z " << z << " R " << R << " eps " << eps << " bound " << best << " alpha* " << a_star);
        CHECK(eps >= best * (1 - 1e-12));
        if (a_star <= 256) CHECK(eps <= best * 1.02);  // the order grid is fine enough
      }
    }
    // A worked value: z = 1, one round, δ = 1e−5: 0.5 + √(2 ln 1e5) = 5.2985.
    tl::rdp_accountant one;
    one.compose(1.0);
    CHECK(one.epsilon(1e-5, tl::rdp_conversion::mironov2017) == Approx(0.5 + std::sqrt(2 * std::log(1e5))).epsilon(0.01));
  }
  SECTION("published reference values (Google dp_accounting's RDP accountant tests)") {
    // q = 0.01, z = 2.5, 50 steps: total RDP at orders 5, 50, 100 (rdp_privacy_accountant_test.py,
    // test_compute_rdp_poisson_sampled_gaussian, rtol 1e-4 there).
    const std::pair<std::size_t, double> want[] = {{5, 2.18075656e-03}, {50, 2.38460375e-02}, {100, 1.67416308e02}};
    for (const auto& [a, v] : want)
      CHECK(50 * tl::rdp_accountant::sampled_gaussian_rdp(0.01, 2.5, a) == Approx(v).epsilon(1e-4));
    // The conversion: a constant RDP of 1.1 at orders 2 … 32, δ = 1e−5 → ε = 1.32783806176 at order 32
    // (test_compute_epsilon_delta_pure_dp).
    std::vector<double> orders, rdp;
    for (int a = 2; a <= 32; ++a) {
      orders.push_back(a);
      rdp.push_back(1.1);
    }
    const auto [eps, order] = tl::rdp_accountant::epsilon_from_rdp(orders, rdp, 1e-5);
    CHECK(eps == Approx(1.32783806176).epsilon(1e-9));
    CHECK(order == 32.0);
  }
  SECTION("end-to-end epsilon against an independent computation") {
    // ε at δ = 1e−5 on this accountant's order grid (fractional orders rounded up), with RDP from
    // scipy numerical integration of E_mu0[(mu/mu0)^alpha] (not the binomial series used here):
    // {q, z, rounds, ε balle2020, ε mironov2017}.
    struct ref { double q, z; std::size_t rounds; double balle, mironov; };
    for (const ref& r : {ref{0.01, 1.1, 10000, 5.654308000, 6.279811030}, ref{0.1, 1.0, 200, 11.144151541, 12.098922793},
                         ref{0.1, 2.0, 100, 2.586652178, 3.017246648}}) {
      tl::rdp_accountant acc;
      acc.compose(r.z, r.q, r.rounds);
      INFO("q " << r.q << " z " << r.z << " rounds " << r.rounds);
      CHECK(acc.epsilon(1e-5) == Approx(r.balle).epsilon(1e-6));
      CHECK(acc.epsilon(1e-5, tl::rdp_conversion::mironov2017) == Approx(r.mironov).epsilon(1e-6));
    }
  }
  SECTION("sampled Gaussian: q = 1 reduces to alpha / (2 z^2); alpha = 2 closed form") {
    CHECK(tl::rdp_accountant::sampled_gaussian_rdp(1.0, 1.7, 7) == Approx(7 / (2 * 1.7 * 1.7)));
    for (double q : {0.001, 0.01, 0.2, 0.9}) {
      for (double z : {0.7, 1.1, 4.0}) {
        const double want = std::log1p(q * q * std::expm1(1 / (z * z)));
        CHECK(tl::rdp_accountant::sampled_gaussian_rdp(q, z, 2) == Approx(want).epsilon(1e-9));
      }
    }
  }
  SECTION("sampled Gaussian against numerical integration of E_mu0[(mu/mu0)^alpha]") {
    // μ0 = N(0, z²), μ = (1−q) μ0 + q N(1, z²): μ/μ0 = 1 − q + q·exp((2x − 1)/(2z²)).
    for (double q : {0.01, 0.1}) {
      for (double z : {0.9, 2.0}) {
        for (std::size_t a : {std::size_t{3}, std::size_t{6}, std::size_t{12}}) {
          const double lo = -30 * z, hi = 30 * z + 30;
          const int steps = 200000;
          const double h = (hi - lo) / steps;
          double s = 0;
          for (int i = 0; i <= steps; ++i) {
            const double x = lo + i * h;
            const double log_p0 = -x * x / (2 * z * z) - std::log(z * std::sqrt(2 * 3.14159265358979323846));
            const double ratio = 1 - q + q * std::exp((2 * x - 1) / (2 * z * z));
            const double wgt = (i == 0 || i == steps) ? 1 : (i % 2 ? 4 : 2);
            s += wgt * std::exp(log_p0 + static_cast<double>(a) * std::log(ratio));
          }
          s *= h / 3;
          const double want = std::log(s) / (static_cast<double>(a) - 1);
          INFO("q " << q << " z " << z << " alpha " << a);
          CHECK(tl::rdp_accountant::sampled_gaussian_rdp(q, z, a) == Approx(want).epsilon(1e-6));
        }
      }
    }
  }
  SECTION("subsampling and fewer rounds give smaller epsilon; more noise too") {
    tl::rdp_accountant full, sampled, fewer, noisier;
    full.compose(1.1, 1.0, 100);
    sampled.compose(1.1, 0.1, 100);
    fewer.compose(1.1, 0.1, 50);
    noisier.compose(2.0, 0.1, 100);
    CHECK(sampled.epsilon(1e-5) < full.epsilon(1e-5));
    CHECK(fewer.epsilon(1e-5) < sampled.epsilon(1e-5));
    CHECK(noisier.epsilon(1e-5) < sampled.epsilon(1e-5));
  }
}

// ===========================================================================
// Secure aggregation
// ===========================================================================

TEST_CASE("secure aggregation: fixed-point encoding", "[aggregate][secagg]") {
  const tl::secagg::fixed_point fp{16, 8.0f};
  CHECK(fp.max_clients() == static_cast<std::size_t>(2147483647.0 / (8.0 * 65536 + 1)));
  std::vector<std::uint32_t> q(3);
  vecf x{100.0f, -0.5f, std::ldexp(1.0f, -17)};
  tl::secagg::encode(x, fp, q);
  CHECK(static_cast<std::int32_t>(q[0]) == 8 * 65536);  // clamped to clip
  CHECK(static_cast<std::int32_t>(q[1]) == -32768);
  CHECK(static_cast<std::int32_t>(q[2]) == 1);  // 0.5 rounds away from zero
  vecf back(3);
  tl::secagg::decode_sum(q, fp, back);
  CHECK(back[0] == 8.0f);
  CHECK(back[1] == -0.5f);
}

TEST_CASE("shamir secret sharing over GF(2^61 - 1)", "[aggregate][secagg][shamir]") {
  namespace sa = tl::secagg;
  SECTION("field multiplication against shift-and-add (no 128-bit type: runs on 32-bit armhf too)") {
    constexpr std::uint64_t p = sa::detail::field_p;
    const auto slow_mul = [](std::uint64_t a, std::uint64_t b) {  // Σ a·2^i over the set bits of b, mod p
      std::uint64_t r = 0;
      for (; b != 0; b >>= 1) {
        if (b & 1u) r = (r + a) % p;
        a = (a << 1) % p;  // a < p < 2^61: no overflow
      }
      return r;
    };
    tl::rng g(77);
    for (int i = 0; i < 2000; ++i) {
      std::uint64_t a = sa::detail::field_random(g), b = sa::detail::field_random(g);
      if (i < 3) a = p - 1 - static_cast<std::uint64_t>(i), b = p - 1;  // the largest products
      REQUIRE(sa::detail::fmul(a, b) == slow_mul(a, b));
      if (a != 0) REQUIRE(sa::detail::fmul(a, sa::detail::finv(a)) == 1);
    }
  }
  SECTION("any t of n shares rebuild the secret, t - 1 do not") {
    tl::rng g(5);
    const std::vector<std::uint32_t> holders{3, 9, 10, 11, 40};
    const std::uint64_t secret = 0x0123456789abcdeULL;
    const auto sh = sa::shamir_split(secret, 3, holders, g);
    for (std::size_t a = 0; a < 5; ++a)
      for (std::size_t b = a + 1; b < 5; ++b)
        for (std::size_t c = b + 1; c < 5; ++c) {
          const std::vector<sa::shamir_share> pick{sh[a], sh[b], sh[c]};
          REQUIRE(sa::shamir_combine(pick) == secret);
          const std::vector<sa::shamir_share> two{sh[a], sh[c]};
          REQUIRE(sa::shamir_combine(two) != secret);
        }
    REQUIRE(sa::shamir_combine(sh) == secret);
  }
}

#if TINYLARGE_SECAGG_HAS_SODIUM
TEST_CASE("secure aggregation primitives: X25519 pair keys, ChaCha20 masks, shared 32-byte keys",
          "[aggregate][secagg][sodium]") {
  namespace sa = tl::secagg;
  SECTION("the pair key is symmetric, and differs between pairs") {
    std::array<sa::key32, 3> pk{}, sk{};
    for (std::size_t i = 0; i < 3; ++i) {
      const sa::key32 seed = sa::derived_round_seed(7, 1, static_cast<std::uint32_t>(i));
      REQUIRE(crypto_box_seed_keypair(pk[i].data(), sk[i].data(), seed.data()) == 0);
    }
    sa::key32 k01{}, k10{}, k02{};
    REQUIRE(sa::pair_key(0, sk[0], pk[0], 1, pk[1], k01).ok());
    REQUIRE(sa::pair_key(1, sk[1], pk[1], 0, pk[0], k10).ok());
    REQUIRE(sa::pair_key(0, sk[0], pk[0], 2, pk[2], k02).ok());
    CHECK(k01 == k10);
    CHECK(k01 != k02);
    const sa::key32 low_order{};  // the all-zero point: no shared secret
    CHECK_FALSE(sa::pair_key(0, sk[0], pk[0], 1, low_order, k01).ok());
  }
  SECTION("the mask is the ChaCha20 (IETF) keystream as little-endian uint32 lanes") {
    const sa::key32 key = sa::derived_round_seed(1, 2, 3);
    const std::size_t d = 2500;  // crosses the 1024-lane blocks of apply_mask
    std::vector<std::uint32_t> v(d, 5u);
    sa::apply_mask(v, key, false);
    std::vector<std::uint8_t> ks(4 * d);
    const std::array<std::uint8_t, crypto_stream_chacha20_ietf_NONCEBYTES> nonce{};
    REQUIRE(crypto_stream_chacha20_ietf(ks.data(), ks.size(), nonce.data(), key.data()) == 0);
    for (std::size_t i = 0; i < d; ++i) {
      const std::uint32_t m = ks[4 * i] | (ks[4 * i + 1] << 8) | (ks[4 * i + 2] << 16) |
                              (static_cast<std::uint32_t>(ks[4 * i + 3]) << 24);
      REQUIRE(v[i] == 5u + m);
    }
    sa::apply_mask(v, key, true);
    CHECK(v == std::vector<std::uint32_t>(d, 5u));
  }
  SECTION("t of n shares rebuild a 32-byte key, t - 1 do not") {
    sa::chacha_generator g(sa::derived_round_seed(9, 9, 9));
    const sa::key32 secret = g.next_key();
    const std::vector<std::uint32_t> holders{0, 1, 2, 3, 4};
    const auto sh = sa::share_key(secret, 3, holders, g);
    sa::key32 back{};
    const std::vector<sa::key_share> three{sh[4], sh[0], sh[2]}, two{sh[1], sh[3]};
    REQUIRE(sa::combine_key(three, back).ok());
    CHECK(back == secret);
    const tl::status s = sa::combine_key(two, back);
    CHECK((!s.ok() || back != secret));
  }
  SECTION("round seeds: derived ones repeat, random ones differ") {
    CHECK(sa::derived_round_seed(1, 2, 3) == sa::derived_round_seed(1, 2, 3));
    CHECK(sa::derived_round_seed(1, 2, 3) != sa::derived_round_seed(1, 2, 4));
    CHECK(sa::derived_round_seed(1, 2, 3) != sa::derived_round_seed(1, 3, 3));
    CHECK(sa::random_round_seed() != sa::random_round_seed());
  }
}

namespace {
/// One secure-aggregation round among n clients (ids 10, 13, 16, …) of
/// P-parameter updates; the clients in `drop` share their keys, then never
/// send a masked input.
struct secagg_fleet {
  std::size_t n, p;
  tl::secagg::settings set;
  std::vector<std::uint32_t> ids;
  std::vector<std::unique_ptr<tl::secagg::client_session>> clients;
  tl::secagg::server_session server;
  std::vector<vecf> delta;
  std::vector<std::int64_t> examples;
  std::vector<std::vector<std::uint32_t>> plain, masked;

  secagg_fleet(std::size_t n_, std::size_t p_, tl::secagg::settings s)
      : n(n_), p(p_), set(s), server(1, s, p_), delta(random_clients(n_, p_, 31, 0.5f)) {
    for (std::size_t i = 0; i < n; ++i) {
      ids.push_back(static_cast<std::uint32_t>(10 + 3 * i));
      clients.push_back(std::make_unique<tl::secagg::client_session>(ids[i], 1, tl::secagg::derived_round_seed(5, 1, ids[i]), s));
      examples.push_back(static_cast<std::int64_t>(20 + 7 * i));
      REQUIRE(server.receive_advertisement(clients[i]->advertise()).ok());
    }
    REQUIRE(server.close_roster().ok());
    for (std::size_t i = 0; i < n; ++i) REQUIRE(server.receive_shares(ids[i], clients[i]->share_keys(server.roster())).ok());
    for (std::size_t i = 0; i < n; ++i) REQUIRE(clients[i]->receive_shares(server.shares_for(ids[i])).ok());
    plain.assign(n, std::vector<std::uint32_t>(p + 1));
    masked = plain;
    for (std::size_t i = 0; i < n; ++i) {
      clients[i]->encode_input(delta[i], examples[i], plain[i]);
      REQUIRE(clients[i]->mask(delta[i], examples[i], masked[i]).ok());
    }
  }
  /// Survivors upload and answer; returns the unmask status, sum in `sum`.
  tl::status run(const std::vector<std::size_t>& drop, std::vector<std::uint32_t>& sum) {
    for (std::size_t i = 0; i < n; ++i)
      if (std::find(drop.begin(), drop.end(), i) == drop.end()) REQUIRE(server.receive_masked(ids[i], masked[i]).ok());
    tl::secagg::unmask_request req;
    TINYLARGE_TRY(server.close_masked(req));
    for (std::size_t i = 0; i < n; ++i) {
      if (std::find(drop.begin(), drop.end(), i) != drop.end()) continue;
      tl::secagg::unmask_response r;
      REQUIRE(clients[i]->respond(req, r).ok());
      REQUIRE(server.receive_response(r).ok());
    }
    sum.assign(p + 1, 0u);
    return server.unmask(sum);
  }
  std::uint32_t plain_sum(const std::vector<std::size_t>& drop, std::size_t j) const {
    std::uint32_t s = 0;
    for (std::size_t i = 0; i < n; ++i)
      if (std::find(drop.begin(), drop.end(), i) == drop.end()) s += plain[i][j];
    return s;
  }
};
}  // namespace

TEST_CASE("secure aggregation round: masks cancel, dropped clients are recovered", "[aggregate][secagg][sodium]") {
  namespace sa = tl::secagg;
  const std::size_t n = 7, p = 1500;
  const sa::settings set{{16, 4.0f}, 4};  // |Δ| ≤ 0.5 · 8 σ: nothing is clipped
  secagg_fleet f(n, p, set);
  REQUIRE(f.server.threshold() == 4);

  SECTION("no dropouts: the unmasked sum is the plain sum, and decodes to FedAvg within the bound") {
    std::vector<std::uint32_t> sum;
    REQUIRE(f.run({}, sum).ok());
    for (std::size_t j = 0; j <= p; ++j) REQUIRE(sum[j] == f.plain_sum({}, j));
    const vecf global(p, 0.25f);
    vecf mean(p);
    REQUIRE(sa::decode_mean(sum, global, set.fp, mean).ok());
    double nt = 0;
    for (auto e : f.examples) nt += static_cast<double>(e);
    // |mean − (w_t + Σ n_k Δ_k / N)| ≤ n · 2^−f / (2N) + float rounding of w_t + … (|·| < 1: 2^−24).
    const double bound = static_cast<double>(n) * std::ldexp(0.5, -16) / nt + std::ldexp(1.0, -24);
    for (std::size_t j = 0; j < p; ++j) {
      for (std::size_t i = 0; i < n; ++i) REQUIRE(std::fabs(f.delta[i][j]) <= set.fp.clip);
      double exact = 0;
      for (std::size_t i = 0; i < n; ++i) exact += static_cast<double>(f.examples[i]) * f.delta[i][j];
      REQUIRE(std::fabs(mean[j] - (0.25 + exact / nt)) <= bound);
    }
  }
  SECTION("three clients drop after the masks were set up (n - t): the sum over the survivors is exact") {
    const std::vector<std::size_t> drop{0, 3, 6};
    std::vector<std::uint32_t> sum;
    REQUIRE(f.run(drop, sum).ok());
    for (std::size_t j = 0; j <= p; ++j) REQUIRE(sum[j] == f.plain_sum(drop, j));
    CHECK(f.server.request().dropped == std::vector<std::uint32_t>{f.ids[0], f.ids[3], f.ids[6]});
  }
  SECTION("more than n - t dropouts cannot be recovered") {
    std::vector<std::uint32_t> sum;
    CHECK_FALSE(f.run({0, 1, 2, 3}, sum).ok());
  }
  SECTION("the server sees masked inputs only: uniform words, uncorrelated with the input") {
    for (std::size_t i = 0; i < n; ++i) REQUIRE(f.server.receive_masked(f.ids[i], f.masked[i]).ok());
    for (std::size_t i = 0; i < n; ++i) {
      const auto y = f.server.masked_of(f.ids[i]);
      const auto& x = f.plain[i];
      REQUIRE(y.size() == p + 1);
      std::size_t same = 0;
      double mean = 0, mx = 0, my = 0, cxy = 0, vx = 0, vy = 0;
      for (std::size_t j = 0; j < p; ++j) {
        same += x[j] == y[j];
        mean += static_cast<double>(y[j]) / 4294967296.0;
        mx += static_cast<std::int32_t>(x[j]);
        my += static_cast<std::int32_t>(y[j]);
      }
      mx /= p, my /= p;
      for (std::size_t j = 0; j < p; ++j) {
        const double a = static_cast<std::int32_t>(x[j]) - mx, b = static_cast<std::int32_t>(y[j]) - my;
        cxy += a * b, vx += a * a, vy += b * b;
      }
      CHECK(same < 3);
      CHECK(y[p] != x[p]);  // the example count is masked too
      CHECK(mean / p == Approx(0.5).margin(0.03));
      CHECK(std::fabs(cxy / std::sqrt(vx * vy)) < 0.1);
    }
  }
  SECTION("a dropped client's late input stays hidden behind its self mask") {
    const std::vector<std::size_t> drop{3};
    std::vector<std::uint32_t> sum;
    REQUIRE(f.run(drop, sum).ok());
    // The server rebuilt s_sk of client 3 (it checks it against the public key) and can strip every
    // pairwise mask from a late y_3: what is left, x_3 + PRG(b_3), is still not x_3.
    auto y = f.masked[3];
    for (std::size_t i = 0; i < n; ++i) {
      if (i == 3) continue;
      sa::key32 k{};
      const auto ad3 = f.clients[3]->advertise(), adi = f.clients[i]->advertise();
      REQUIRE(sa::pair_key(f.ids[3], f.clients[3]->mask_secret_key(), ad3.s_pk, f.ids[i], adi.s_pk, k).ok());
      sa::apply_mask(y, k, /*subtract=*/f.ids[3] < f.ids[i]);
    }
    std::size_t same = 0;
    for (std::size_t j = 0; j <= p; ++j) same += y[j] == f.plain[3][j];
    CHECK(same < 3);
    sa::apply_mask(y, f.clients[3]->self_mask_seed(), true);  // b_3, never released, would reveal it
    CHECK(y == f.plain[3]);
  }
  SECTION("a client answers one unmask request, never for a client both surviving and dropped") {
    sa::unmask_response r;
    const sa::unmask_request both{{f.ids[0], f.ids[1]}, {f.ids[1]}};
    CHECK_FALSE(f.clients[0]->respond(both, r).ok());
    const sa::unmask_request ok{{f.ids[0], f.ids[1]}, {f.ids[2]}};
    CHECK(f.clients[0]->respond(ok, r).ok());
    CHECK(r.b_shares.size() == 2);
    CHECK(r.sk_shares.size() == 1);
    CHECK_FALSE(f.clients[0]->respond(ok, r).ok());
  }
}

TEST_CASE("secure aggregation round: forged or misrouted shares are refused", "[aggregate][secagg][sodium]") {
  namespace sa = tl::secagg;
  const sa::settings set{{16, 1.0f}, 0};
  sa::server_session server(2, set, 10);
  std::vector<std::unique_ptr<sa::client_session>> c;
  for (std::uint32_t i = 0; i < 3; ++i) {
    c.push_back(std::make_unique<sa::client_session>(i, 2, sa::derived_round_seed(1, 2, i), set));
    REQUIRE(server.receive_advertisement(c[i]->advertise()).ok());
  }
  CHECK_FALSE(server.receive_advertisement(c[0]->advertise()).ok());  // twice
  REQUIRE(server.close_roster().ok());
  CHECK(server.threshold() == 2);  // ⌊3/2⌋ + 1
  auto s0 = c[0]->share_keys(server.roster());
  REQUIRE(s0.size() == 2);
  SECTION("a flipped bit in a box") {
    s0[0].box[5] ^= 1;
    CHECK_FALSE(c[s0[0].to]->receive_shares(std::span<const sa::sealed_share>(&s0[0], 1)).ok());
  }
  SECTION("a box delivered to another client") {
    sa::sealed_share wrong = s0[0];
    wrong.to = s0[1].to;
    CHECK_FALSE(c[wrong.to]->receive_shares(std::span<const sa::sealed_share>(&wrong, 1)).ok());
  }
  SECTION("the server wants one box per other member") {
    auto twice = s0;
    twice[1].to = twice[0].to;
    CHECK_FALSE(server.receive_shares(0, twice).ok());
    s0.pop_back();
    CHECK_FALSE(server.receive_shares(0, s0).ok());
  }
  SECTION("a masked input from a client that did not share") {
    const std::vector<std::uint32_t> y(11, 0u);
    CHECK_FALSE(server.receive_masked(1, y).ok());
  }
}

TEST_CASE("secure aggregation payloads: round trips, and sizes checked before reading", "[aggregate][secagg][sodium]") {
  namespace sa = tl::secagg;
  const sa::settings set{{16, 4.0f}, 3};
  secagg_fleet f(4, 50, set);
  // advertise, roster
  const auto ad = f.clients[1]->advertise();
  sa::advertisement back;
  REQUIRE(sa::decode_keys(ad.id, sa::encode_keys(ad), back).ok());
  CHECK((back.c_pk == ad.c_pk && back.s_pk == ad.s_pk));
  auto keys = sa::encode_keys(ad);
  keys.pop_back();
  CHECK_FALSE(sa::decode_keys(ad.id, keys, back).ok());
  std::vector<sa::advertisement> roster;
  const auto rbytes = sa::encode_roster(f.server.roster());
  REQUIRE(rbytes.size() == 4 * sa::advertisement::wire_bytes);
  REQUIRE(sa::decode_roster(rbytes, f.ids[2], roster).ok());
  REQUIRE(roster.size() == 4);
  for (std::size_t i = 0; i < 4; ++i) CHECK((roster[i].id == f.ids[i] && roster[i].s_pk == f.server.roster()[i].s_pk));
  CHECK_FALSE(sa::decode_roster(rbytes, 999, roster).ok());  // not in it
  CHECK_FALSE(sa::decode_roster(std::span<const std::uint8_t>(rbytes.data(), rbytes.size() - 1), f.ids[2], roster).ok());
  // shares / boxes: a forwarded box still opens after the trip
  const auto boxes = f.server.shares_for(f.ids[0]);
  std::vector<sa::sealed_share> sb;
  REQUIRE(sa::decode_shares(sa::encode_shares(boxes), sb).ok());
  REQUIRE(sb.size() == 3);
  for (std::size_t i = 0; i < 3; ++i) CHECK((sb[i].from == boxes[i].from && sb[i].to == boxes[i].to && sb[i].box == boxes[i].box));
  auto sbytes = sa::encode_shares(boxes);
  sbytes.push_back(0);
  CHECK_FALSE(sa::decode_shares(sbytes, sb).ok());
  // masked
  std::vector<std::uint32_t> y;
  REQUIRE(sa::decode_masked(sa::encode_masked(f.masked[2]), 51, y).ok());
  CHECK(y == f.masked[2]);
  CHECK_FALSE(sa::decode_masked(sa::encode_masked(f.masked[2]), 50, y).ok());
  // request, response
  const sa::unmask_request req{{f.ids[0], f.ids[1], f.ids[3]}, {f.ids[2]}};
  sa::unmask_request rq;
  REQUIRE(sa::decode_request(sa::encode_request(req), rq).ok());
  CHECK((rq.survivors == req.survivors && rq.dropped == req.dropped));
  auto qbytes = sa::encode_request(req);
  qbytes[0] = 200;  // claims 200 survivors
  CHECK_FALSE(sa::decode_request(qbytes, rq).ok());
  sa::unmask_response resp, rb;
  REQUIRE(f.clients[0]->respond(req, resp).ok());
  REQUIRE(sa::decode_response(resp.from, sa::encode_response(resp), rb).ok());
  REQUIRE((rb.b_shares.size() == 3 && rb.sk_shares.size() == 1));
  CHECK((rb.sk_shares[0].first == f.ids[2] && rb.sk_shares[0].second.y == resp.sk_shares[0].second.y &&
         rb.sk_shares[0].second.holder == resp.sk_shares[0].second.holder));
  auto pbytes = sa::encode_response(resp);
  pbytes.resize(pbytes.size() - 8);
  CHECK_FALSE(sa::decode_response(resp.from, pbytes, rb).ok());
}
#endif  // TINYLARGE_SECAGG_HAS_SODIUM
