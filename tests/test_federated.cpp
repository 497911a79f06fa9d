// Tests of the federated workflows (workflow/federated.hpp) and of the fault /
// attack simulation (workflow/attacks.hpp), on small synthetic data: Gaussian
// blobs in 8 dimensions, 4 classes, split among clients by label (non-IID).
//
// References are independent of the workflow: FedSGD with C = 1 is checked
// against one full-batch gradient step computed here directly from the
// network's forward/backward; byte counts against the formulas of the
// encodings; rejection against the ids this test made misbehave.

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <span>
#include <utility>
#include <vector>

#include "tinylarge/aggregate/policy.hpp"
#include "tinylarge/aggregate/privacy.hpp"
#include "tinylarge/aggregate/robust.hpp"
#include "tinylarge/core/rng.hpp"
#include "tinylarge/nn/nn.hpp"
#include "tinylarge/workflow/attacks.hpp"
#include "tinylarge/workflow/channel.hpp"
#include "tinylarge/workflow/distill.hpp"
#include "tinylarge/workflow/federated.hpp"
#include "tinylarge/workflow/lora.hpp"
#include "tinylarge/workflow/reptile.hpp"
#include "tinylarge/workflow/transfer.hpp"

namespace wf = tl::workflow;
namespace nn = tl::nn;

namespace {

using small_model = tl::sequential<tl::dense<8, 16>, tl::relu, tl::dense<16, 4>>;
constexpr std::size_t P = small_model::param_count;  // 8*16+16 + 16*4+4 = 212
static_assert(P == 212);

template <class Aggregation = tl::fedavg, class Update = tl::fp32_update>
struct fleet {
  using model = small_model;
  using aggregation = Aggregation;
  using optimizer = nn::sgd;
  using update = Update;
};

// The same with a client selection policy (workflow/selection.hpp).
template <class Selection>
struct selecting_fleet : fleet<> {
  using selection = Selection;
};

// Four Gaussian blobs (centres ±2 on two axes), n samples per class.
struct blobs {
  std::vector<float> x;
  std::vector<std::uint8_t> y;
  std::size_t count = 0;
  blobs(std::size_t per_class, std::uint64_t seed) {
    tl::rng g(seed);
    for (std::uint8_t c = 0; c < 4; ++c) {
      for (std::size_t i = 0; i < per_class; ++i) {
        for (std::size_t j = 0; j < 8; ++j) {
          float centre = 0.0f;
          if (j == 0) centre = (c & 1) ? 2.0f : -2.0f;
          if (j == 1) centre = (c & 2) ? 2.0f : -2.0f;
          x.push_back(centre + 0.7f * g.normal());
        }
        y.push_back(c);
      }
    }
    count = y.size();
  }
  nn::labelled_view<std::uint8_t> view() const { return {x.data(), y.data(), count, 8, 1}; }
};

// `clients` clients holding 2 labels each (label shards, as McMahan et al.).
wf::federated_dataset make_clients(const blobs& b, std::size_t clients, std::uint64_t seed) {
  tl::rng r(seed);
  const auto parts = tl::data::partition_shards(std::span<const std::uint8_t>(b.y), clients, 2, r);
  return wf::make_federated_dataset(b.x.data(), b.y.data(), b.count, 8, parts);
}

const blobs& train_set() {
  static const blobs b(100, 11);  // 400 samples
  return b;
}
const blobs& test_set() {
  static const blobs b(50, 12);  // 200 samples
  return b;
}

bool all_finite(std::span<const float> w) {
  return std::all_of(w.begin(), w.end(), [](float v) { return std::isfinite(v); });
}

}  // namespace

TEST_CASE("FedAvg learns a non-IID problem and counts its traffic", "[federated]") {
  const auto fed = make_clients(train_set(), 20, 3);
  wf::federated_averaging<fleet<>> fl({.rounds = 15, .client_fraction = 0.25, .local_epochs = 2, .batch_size = 5, .seed = 7},
                                      tl::fedavg{}, nn::sgd{.learning_rate = 0.05f});
  fl.initialize(5);
  const double before = fl.evaluate(test_set().view());
  const wf::report rep = fl.run(fed.clients, test_set().view());
  REQUIRE(rep.workflow == "fedavg");
  REQUIRE(rep.rounds.size() == 15);
  CHECK(before < 0.6);
  CHECK(rep.final_accuracy() > 0.9);
  // m = ceil(0.25 * 20) = 5 clients per round; each downloads and uploads P fp32 values.
  const auto& r1 = rep.rounds[0];
  REQUIRE(r1.parties.size() == 6);  // 5 clients + server
  std::size_t clients_seen = 0;
  for (const auto& p : r1.parties) {
    if (p.role != "client") continue;
    ++clients_seen;
    CHECK(p.net.bytes_down == P * 4);
    CHECK(p.net.bytes_up == P * 4);
    CHECK(p.net.messages_up == 1);
    // 2 epochs over the client's samples, 3 x forward MACs per sample.
    CHECK(p.macs == 3ull * small_model::macs * 2 * fed.clients[p.id].count);
  }
  CHECK(clients_seen == 5);
  CHECK(r1.parties.back().role == "server");
  CHECK(r1.parties.back().net.bytes_up == 5 * P * 4);
  CHECK(r1.sequential_hops == 2);
  CHECK(r1.messages == 10);
  CHECK(r1.estimated_seconds > 0.0);
  CHECK(rep.total([](const wf::role_cost& p) { return p.net.bytes_up; }, "client") == 15 * 5 * P * 4);
  // The sampled clients of a round are distinct.
  for (const auto& lg : fl.log()) {
    auto s = lg.selected;
    std::sort(s.begin(), s.end());
    CHECK(std::adjacent_find(s.begin(), s.end()) == s.end());
    CHECK(lg.aggregation.accepted.size() == 5);
  }
}

TEST_CASE("FedSGD with C = 1 is one full-batch gradient step", "[federated]") {
  const auto fed = make_clients(train_set(), 8, 4);
  const float lr = 0.3f;
  wf::federated_averaging<fleet<>> fl(wf::federated_options::fedsgd(1, 1.0, 9), tl::fedavg{},
                                      nn::sgd{.learning_rate = lr});
  fl.initialize(21);
  std::vector<float> w0(fl.global().begin(), fl.global().end());
  const nn::labelled_view<std::uint8_t> none{};
  fl.run(fed.clients, none);
  REQUIRE(fl.result().workflow == "fedsgd");

  // Reference: gradient of the mean loss over the union of the clients' data,
  // Σ_k (n_k / n) ∇L_k = ∇ (1/n) Σ_i ℓ_i, computed in one batch.
  nn::network<small_model> ref;
  std::copy(w0.begin(), w0.end(), ref.parameters().begin());
  const auto& data = fed;  // contiguous: all clients' samples
  const std::size_t n = data.labels.size();
  const float* out = ref.forward(data.images.data(), n, true);
  std::vector<float> g(n * 4);
  (void)nn::softmax_cross_entropy::evaluate(out, data.labels.data(), n, 4, g.data());
  ref.zero_gradients();
  ref.backward(g.data());
  double max_err = 0.0, max_step = 0.0;
  for (std::size_t j = 0; j < P; ++j) {
    const double expect = static_cast<double>(w0[j]) - static_cast<double>(lr) * static_cast<double>(ref.gradients()[j]);
    max_err = std::max(max_err, std::fabs(expect - static_cast<double>(fl.global()[j])));
    max_step = std::max(max_step, std::fabs(static_cast<double>(lr * ref.gradients()[j])));
  }
  CHECK(max_step > 1e-3);  // the step is not trivially small
  CHECK(max_err < 1e-5);
  // FedSGD clients process their data once: MACs = 3 · macs · n in total.
  CHECK(fl.result().total([](const wf::role_cost& p) { return p.macs; }, "client") == 3ull * small_model::macs * n);
}

TEST_CASE("Runs repeat bit for bit with the same seed and differ with another", "[federated]") {
  const auto fed = make_clients(train_set(), 10, 5);
  auto run = [&](std::uint64_t seed) {
    wf::federated_averaging<fleet<>> fl({.rounds = 3, .client_fraction = 0.3, .local_epochs = 1, .batch_size = 8,
                                         .seed = seed, .dropout_probability = 0.2},
                                        tl::fedavg{}, nn::sgd{.learning_rate = 0.05f});
    fl.initialize(1);
    fl.run(fed.clients, test_set().view());
    return std::vector<float>(fl.global().begin(), fl.global().end());
  };
  const auto a = run(3), b = run(3), c = run(4);
  CHECK(a == b);
  CHECK(a != c);
}

TEST_CASE("NaN and wrong-length updates are rejected with a reason and never aggregated", "[federated][attacks]") {
  const auto fed = make_clients(train_set(), 10, 6);
  for (const auto kind : {wf::attack_kind::non_finite, wf::attack_kind::wrong_length}) {
    DYNAMIC_SECTION("attack " << wf::to_string(kind)) {
      wf::federated_options o{.rounds = 4, .client_fraction = 1.0, .local_epochs = 1, .batch_size = 10, .seed = 2};
      o.attack = {.kind = kind, .fraction = 0.3};
      wf::federated_averaging<fleet<>> fl(o, tl::fedavg{}, nn::sgd{.learning_rate = 0.05f});
      fl.initialize(2);
      fl.run(fed.clients, test_set().view());
      CHECK(all_finite(fl.global()));
      const auto expected = kind == wf::attack_kind::non_finite ? tl::rejection_reason::non_finite
                                                                 : tl::rejection_reason::wrong_length;
      for (const auto& lg : fl.log()) {
        REQUIRE(lg.byzantine.size() == 3);  // exactly 30% of 10
        REQUIRE(lg.aggregation.rejected.size() == 3);
        CHECK(lg.aggregation.updated());
        CHECK(lg.aggregation.accepted.size() == 7);
        for (const auto& rej : lg.aggregation.rejected) {
          CHECK(rej.reason == expected);
          CHECK(std::find(lg.byzantine.begin(), lg.byzantine.end(), rej.client_id) != lg.byzantine.end());
        }
      }
      CHECK(fl.result().final_accuracy() > 0.6);
    }
  }
}

TEST_CASE("A NaN int8 update is caught by its scale", "[federated][attacks]") {
  const auto fed = make_clients(train_set(), 10, 6);
  wf::federated_options o{.rounds = 2, .client_fraction = 1.0, .local_epochs = 1, .batch_size = 10, .seed = 2,
                          .int8_chunk = 64};
  o.attack = {.kind = wf::attack_kind::non_finite, .fraction = 0.2};
  wf::federated_averaging<fleet<tl::fedavg, tl::int8_update>> fl(o, tl::fedavg{}, nn::sgd{.learning_rate = 0.05f});
  fl.initialize(2);
  fl.run(fed.clients, test_set().view());
  CHECK(all_finite(fl.global()));
  for (const auto& lg : fl.log()) {
    REQUIRE(lg.aggregation.rejected.size() == 2);
    for (const auto& rej : lg.aggregation.rejected) CHECK(rej.reason == tl::rejection_reason::bad_encoding);
  }
}

TEST_CASE("fp16 and int8 uploads: bytes per encoding, accuracy close to fp32", "[federated]") {
  const auto fed = make_clients(train_set(), 10, 7);
  const wf::federated_options o{.rounds = 8, .client_fraction = 0.5, .local_epochs = 2, .batch_size = 5, .seed = 3,
                                .int8_chunk = 64};
  const nn::sgd opt{.learning_rate = 0.05f};
  wf::federated_averaging<fleet<tl::fedavg, tl::fp32_update>> f32(o, {}, opt);
  wf::federated_averaging<fleet<tl::fedavg, tl::fp16_update>> f16(o, {}, opt);
  wf::federated_averaging<fleet<tl::fedavg, tl::int8_update>> i8(o, {}, opt);
  f32.initialize(4);
  f16.initialize(4);
  i8.initialize(4);
  f32.run(fed.clients, test_set().view());
  f16.run(fed.clients, test_set().view());
  i8.run(fed.clients, test_set().view());
  auto up = [](const wf::report& r) { return r.total([](const wf::role_cost& p) { return p.net.bytes_up; }, "client"); };
  CHECK(up(f32.result()) == 8 * 5 * P * 4);
  CHECK(up(f16.result()) == 8 * 5 * P * 2);
  CHECK(up(i8.result()) == 8 * 5 * (P + 4 * ((P + 63) / 64)));
  // Different encodings give different (but close) models.
  double d16 = 0.0, d8 = 0.0;
  for (std::size_t j = 0; j < P; ++j) {
    d16 = std::max(d16, static_cast<double>(std::fabs(f16.global()[j] - f32.global()[j])));
    d8 = std::max(d8, static_cast<double>(std::fabs(i8.global()[j] - f32.global()[j])));
  }
  CHECK(d16 > 0.0);
  CHECK(d8 > d16);
  CHECK(d8 < 0.2);
  CHECK(i8.result().final_accuracy() > f32.result().final_accuracy() - 0.05);
}

TEST_CASE("Client dropout: proceed aggregates the rest, retry asks replacements", "[federated][faults]") {
  const auto fed = make_clients(train_set(), 20, 8);
  wf::federated_options o{.rounds = 6, .client_fraction = 0.25, .local_epochs = 1, .batch_size = 10, .seed = 4,
                          .dropout_probability = 0.4};
  wf::federated_averaging<fleet<>> proceed(o, {}, nn::sgd{.learning_rate = 0.05f});
  proceed.initialize(3);
  proceed.run(fed.clients, test_set().view());
  std::size_t dropped = 0;
  for (const auto& lg : proceed.log()) {
    dropped += lg.dropped.size();
    CHECK(lg.waves == 1);
    CHECK(lg.selected.size() == 5);
    CHECK(lg.aggregation.accepted.size() + lg.dropped.size() == 5);
  }
  CHECK(dropped > 0);
  // A dropped client downloaded the model but sent nothing.
  const auto& rec = proceed.result().rounds[0];
  const auto& lg0 = proceed.log()[0];
  for (const auto& p : rec.parties) {
    if (p.role != "client") continue;
    const bool was_dropped = std::find(lg0.dropped.begin(), lg0.dropped.end(), p.id) != lg0.dropped.end();
    CHECK(p.net.bytes_down == P * 4);
    CHECK(p.net.bytes_up == (was_dropped ? 0u : P * 4));
    CHECK((p.macs == 0) == was_dropped);
  }

  o.on_dropout = wf::dropout_policy::retry;
  o.max_retries = 10;
  wf::federated_averaging<fleet<>> retry(o, {}, nn::sgd{.learning_rate = 0.05f});
  retry.initialize(3);
  retry.run(fed.clients, test_set().view());
  bool some_retry = false;
  for (std::size_t i = 0; i < retry.log().size(); ++i) {
    const auto& lg = retry.log()[i];
    CHECK(lg.aggregation.accepted.size() == 5);  // replacements fill the round
    some_retry = some_retry || lg.waves > 1;
    CHECK(retry.result().rounds[i].sequential_hops == 2 * lg.waves);
    auto s = lg.selected;
    std::sort(s.begin(), s.end());
    CHECK(std::adjacent_find(s.begin(), s.end()) == s.end());  // nobody asked twice
  }
  CHECK(some_retry);
}

TEST_CASE("A round below the policy's min_clients fails and leaves the model unchanged", "[federated][faults]") {
  const auto fed = make_clients(train_set(), 10, 9);
  // Krum with f = 2 needs 7 updates; 5 clients per round cannot make it.
  wf::federated_averaging<fleet<tl::krum>> fl({.rounds = 1, .client_fraction = 0.5, .local_epochs = 1, .seed = 1},
                                              tl::krum{.num_malicious = 2}, nn::sgd{.learning_rate = 0.05f});
  fl.initialize(8);
  const std::vector<float> w0(fl.global().begin(), fl.global().end());
  fl.run(fed.clients, test_set().view());
  REQUIRE(fl.log().size() == 1);
  CHECK_FALSE(fl.log()[0].aggregation.updated());
  CHECK(fl.log()[0].aggregation.outcome.code == tl::errc::invalid_argument);
  CHECK(std::vector<float>(fl.global().begin(), fl.global().end()) == w0);
}

TEST_CASE("Poisson client sampling: each client independently with probability C", "[federated][dp]") {
  const auto fed = make_clients(train_set(), 40, 21);
  wf::federated_options o{.rounds = 60, .client_fraction = 0.25, .local_epochs = 1, .batch_size = 10, .seed = 9};
  o.poisson_sampling = true;
  wf::federated_averaging<fleet<>> fl(o, {}, nn::sgd{.learning_rate = 0.05f});
  fl.initialize(2);
  fl.run(fed.clients, nn::labelled_view<std::uint8_t>{});
  std::vector<std::size_t> per_client(40, 0);
  std::size_t total = 0, min_m = 1000, max_m = 0;
  for (const auto& lg : fl.log()) {
    auto sel = lg.selected;
    std::sort(sel.begin(), sel.end());
    CHECK(std::adjacent_find(sel.begin(), sel.end()) == sel.end());
    CHECK(lg.aggregation.accepted.size() == sel.size());
    for (const auto c : sel) ++per_client[c];
    total += sel.size();
    min_m = std::min(min_m, sel.size());
    max_m = std::max(max_m, sel.size());
  }
  // 60 rounds x 40 clients x 0.25 = 600 expected participations, sd = sqrt(2400 * 0.25 * 0.75) ≈ 21.
  INFO("participations " << total << ", clients per round in [" << min_m << ", " << max_m << "]");
  CHECK(total > 600 - 5 * 21);
  CHECK(total < 600 + 5 * 21);
  CHECK(min_m < 10);  // the count varies (binomial(40, 0.25): sd ≈ 2.7) …
  CHECK(max_m > 10);  // … unlike the fixed m = 10
  CHECK(*std::min_element(per_client.begin(), per_client.end()) > 0);
}

TEST_CASE("Sign flip under the robust rules and bucketing through the workflow", "[federated][attacks]") {
  // Non-IID (2 labels per client) with 30% sign flippers (w_t − Δ): every rule must still learn.
  const auto fed = make_clients(train_set(), 10, 31);
  wf::federated_options attacked{.rounds = 12, .client_fraction = 1.0, .local_epochs = 1, .batch_size = 10, .seed = 4};
  attacked.attack = {.kind = wf::attack_kind::sign_flip, .fraction = 0.3};
  const nn::sgd opt{.learning_rate = 0.05f};
  auto acc = [&](auto& fl) {
    fl.initialize(8);
    fl.run(fed.clients, test_set().view());
    for (const auto& lg : fl.log()) CHECK(lg.byzantine.size() == 3);
    return fl.result().final_accuracy();
  };
  wf::federated_averaging<fleet<tl::bucketing<tl::coordinate_median>>> bmed(
      attacked, tl::bucketing<tl::coordinate_median>{.bucket_size = 2}, opt);
  wf::federated_averaging<fleet<tl::bucketing<tl::trimmed_mean>>> btrim(
      attacked, tl::bucketing<tl::trimmed_mean>{.inner = {.beta = 0.2}, .bucket_size = 2}, opt);
  wf::federated_averaging<fleet<tl::coordinate_median>> med(attacked, {}, opt);
  wf::federated_averaging<fleet<tl::trimmed_mean>> trim(attacked, tl::trimmed_mean{.beta = 0.2}, opt);
  const double a_bmed = acc(bmed), a_btrim = acc(btrim), a_med = acc(med), a_trim = acc(trim);
  INFO("bucketed median " << a_bmed << ", bucketed trimmed mean " << a_btrim << ", median " << a_med
                          << ", trimmed mean " << a_trim);
  CHECK(a_bmed > 0.6);  // chance is 0.25
  CHECK(a_btrim > 0.6);
  CHECK(a_bmed > a_med);  // on 2-label clients the plain median discards honest information
  CHECK(bmed.server().state().buckets.size() == 5);
}

TEST_CASE("Sign-flip and scaling attackers: FedAvg suffers, median and trimmed mean hold", "[federated][attacks]") {
  // IID-ish split (8 labels among 10 clients would be too skewed for the robust rules on 400 samples).
  const auto& tr = train_set();
  tl::rng r(10);
  const auto parts = tl::data::partition_iid(tr.count, 10, r);
  const auto fed = wf::make_federated_dataset(tr.x.data(), tr.y.data(), tr.count, 8, parts);
  wf::federated_options clean{.rounds = 8, .client_fraction = 1.0, .local_epochs = 1, .batch_size = 10, .seed = 5};
  wf::federated_options attacked = clean;
  attacked.attack = {.kind = wf::attack_kind::scaling, .fraction = 0.3, .magnitude = -10.0f};  // flipped and boosted
  const nn::sgd opt{.learning_rate = 0.05f};
  auto acc = [&](auto& fl) {
    fl.initialize(6);
    fl.run(fed.clients, test_set().view());
    return fl.result().final_accuracy();
  };
  wf::federated_averaging<fleet<>> ref(clean, {}, opt);
  wf::federated_averaging<fleet<>> avg(attacked, {}, opt);
  wf::federated_averaging<fleet<tl::coordinate_median>> med(attacked, {}, opt);
  wf::federated_averaging<fleet<tl::trimmed_mean>> trim(attacked, tl::trimmed_mean{.beta = 0.3}, opt);
  wf::federated_averaging<fleet<tl::krum>> kr(attacked, tl::krum{.num_malicious = 3}, opt);
  const double a_ref = acc(ref), a_avg = acc(avg), a_med = acc(med), a_trim = acc(trim), a_krum = acc(kr);
  INFO("clean " << a_ref << " fedavg " << a_avg << " median " << a_med << " trimmed " << a_trim << " krum " << a_krum);
  CHECK(a_ref > 0.9);
  CHECK(a_avg < a_ref - 0.2);
  CHECK(a_med > a_ref - 0.05);
  CHECK(a_trim > a_ref - 0.05);
  CHECK(a_krum > a_ref - 0.1);
  for (const auto& lg : avg.log()) CHECK(lg.byzantine.size() == 3);
}

TEST_CASE("apply_attack formulas", "[attacks]") {
  std::vector<float> g{1.0f, 2.0f, -1.0f}, w{1.5f, 1.0f, -1.0f};
  tl::rng r(1);
  auto a = w;
  CHECK(wf::apply_attack({.kind = wf::attack_kind::sign_flip, .fraction = 1.0}, a, g, r) == 3);
  CHECK(a == std::vector<float>{0.5f, 3.0f, -1.0f});
  a = w;
  (void)wf::apply_attack({.kind = wf::attack_kind::scaling, .fraction = 1.0, .magnitude = 10.0f}, a, g, r);
  CHECK(a == std::vector<float>{6.0f, -8.0f, -1.0f});
  a = w;
  CHECK(wf::apply_attack({.kind = wf::attack_kind::wrong_length, .fraction = 1.0}, a, g, r) == 2);
  a = w;
  (void)wf::apply_attack({.kind = wf::attack_kind::gaussian_noise, .fraction = 1.0, .noise_stddev = 0.5f}, a, g, r);
  CHECK(a != w);
  const auto bad = wf::choose_attackers(10, 0.2, r);
  CHECK(std::count(bad.begin(), bad.end(), true) == 2);
}

TEST_CASE("FedProx clients are pulled towards the global model", "[federated]") {
  const auto fed = make_clients(train_set(), 10, 12);
  auto drift = [&](float mu) {
    wf::federated_averaging<fleet<tl::fedprox>> fl({.rounds = 1, .client_fraction = 1.0, .local_epochs = 5, .batch_size = 5,
                                                    .seed = 3},
                                                   tl::fedprox{.proximal_mu = mu}, nn::sgd{.learning_rate = 0.05f});
    fl.initialize(3);
    const std::vector<float> w0(fl.global().begin(), fl.global().end());
    fl.run(fed.clients, nn::labelled_view<std::uint8_t>{});
    double d = 0.0;
    for (std::size_t j = 0; j < P; ++j) d += std::pow(static_cast<double>(fl.global()[j] - w0[j]), 2);
    return std::sqrt(d);
  };
  const double free = drift(0.0f), prox = drift(2.0f);
  CHECK(prox < 0.8 * free);
}

TEST_CASE("DP-FedAvg runs through the workflow and adds noise", "[federated][dp]") {
  const auto fed = make_clients(train_set(), 10, 13);
  using dp = tl::dp_fixed_clipping<tl::fedavg>;
  const wf::federated_options o{.rounds = 3, .client_fraction = 1.0, .local_epochs = 1, .batch_size = 10, .seed = 3};
  wf::federated_averaging<fleet<dp>> noisy(o, dp{.noise_multiplier = 1.0f, .clipping_norm = 0.5f},
                                           nn::sgd{.learning_rate = 0.05f});
  wf::federated_averaging<fleet<dp>> quiet(o, dp{.noise_multiplier = 0.0f, .clipping_norm = 1e6f},
                                           nn::sgd{.learning_rate = 0.05f});
  wf::federated_averaging<fleet<>> plain(o, {}, nn::sgd{.learning_rate = 0.05f});
  noisy.initialize(1);
  quiet.initialize(1);
  plain.initialize(1);
  noisy.run(fed.clients, test_set().view());
  quiet.run(fed.clients, test_set().view());
  plain.run(fed.clients, test_set().view());
  double dq = 0.0, dn = 0.0;
  for (std::size_t j = 0; j < P; ++j) {
    dq = std::max(dq, static_cast<double>(std::fabs(quiet.global()[j] - plain.global()[j])));
    dn = std::max(dn, static_cast<double>(std::fabs(noisy.global()[j] - plain.global()[j])));
  }
  CHECK(dq < 1e-4);  // no clipping, no noise: FedAvg
  CHECK(dn > 1e-3);
  CHECK(noisy.server().state().noise_stddev == Approx(1.0 * 0.5 / 10));
}

TEST_CASE("train_locally keeps a frozen prefix bit-exact", "[federated][transfer]") {
  nn::network<small_model> net;
  net.initialize(3);
  const std::vector<float> w0(net.parameters().begin(), net.parameters().end());
  const std::size_t frozen = wf::frozen_parameter_count<small_model>(2);  // dense + relu
  CHECK(frozen == 8 * 16 + 16);
  tl::rng r(1);
  const auto res = wf::train_locally(net, nn::sgd{.learning_rate = 0.1f}, train_set().view(), 1, 10, r, {}, 0.0f, frozen);
  CHECK(res.steps == 40);
  CHECK(res.samples == 400);
  CHECK(std::equal(w0.begin(), w0.begin() + static_cast<std::ptrdiff_t>(frozen), net.parameters().begin()));
  CHECK_FALSE(std::equal(w0.begin() + static_cast<std::ptrdiff_t>(frozen), w0.end(),
                         net.parameters().begin() + static_cast<std::ptrdiff_t>(frozen)));
}

TEST_CASE("Federated transfer: pre-training helps, personalisation helps each client", "[federated][transfer]") {
  const auto fed = make_clients(train_set(), 10, 14);
  const blobs server(15, 99);  // 60 proxy samples on the server
  wf::federated_transfer<fleet<>> ftl({.pretrain_epochs = 5, .pretrain_batch = 10, .personalize_epochs = 3,
                                       .personalize_batch = 5, .frozen_layers = 2, .holdout_fraction = 0.25, .seed = 2},
                                      {.rounds = 3, .client_fraction = 0.5, .local_epochs = 1, .batch_size = 10, .seed = 2},
                                      tl::fedavg{}, nn::sgd{.learning_rate = 0.05f});
  const auto res = ftl.run(server.view(), fed.clients, test_set().view());
  INFO("pre " << res.pretrained_accuracy << " fed " << res.federated_accuracy << " global-on-clients "
              << res.global_on_clients << " personal " << res.personalized_on_clients);
  CHECK(res.pretrained_accuracy > 0.6);
  CHECK(res.federated_accuracy > 0.8);
  CHECK(res.personalized_on_clients >= res.global_on_clients);
  CHECK(res.personalized_on_clients > 0.9);
  REQUIRE(res.costs.rounds.size() == 5);  // pre-train, 3 rounds, personalisation
  CHECK(res.costs.rounds.front().parties.front().role == "server");
  CHECK(res.costs.rounds.back().parties.size() == 10);
  CHECK(res.costs.workflow == "federated_transfer");
}

TEST_CASE("Reptile: the server step, the federated run and few-shot adaptation", "[federated][reptile]") {
  // ε = 0.5: the global weights move half way to the clients' mean.
  tl::aggregator<wf::reptile_step> agg(wf::reptile_step{.epsilon = 0.5f}, 3);
  std::vector<float> g{0.0f, 2.0f, -4.0f};
  const std::vector<float> a{2.0f, 2.0f, 0.0f}, b{4.0f, 6.0f, 0.0f};
  std::vector<tl::client_result<tl::fp32_update>> res{{1, {a}, 1}, {2, {b}, 1}};
  REQUIRE(agg.round(std::span<float>(g), res).updated());
  CHECK(g == std::vector<float>{1.5f, 3.0f, -2.0f});

  const auto fed = make_clients(train_set(), 10, 15);
  wf::federated_reptile<fleet<>> meta({.rounds = 10, .client_fraction = 0.5, .local_epochs = 2, .batch_size = 5, .seed = 3,
                                       .name = "reptile"},
                                      wf::reptile_step{.epsilon = 0.5f}, nn::sgd{.learning_rate = 0.05f});
  meta.initialize(4);
  const auto rep = meta.run(fed.clients, test_set().view());
  CHECK(rep.workflow == "reptile");
  CHECK(rep.final_accuracy() > 0.7);
  // Few-shot: adapting on a task's support set helps on its query set (the client's 2 labels).
  const auto& task = fed.clients[0];
  const nn::labelled_view<std::uint8_t> support{task.x, task.y, task.count / 2, 8, 1};
  const nn::labelled_view<std::uint8_t> query{task.x + (task.count / 2) * 8, task.y + task.count / 2,
                                              task.count - task.count / 2, 8, 1};
  const double zero = wf::adapted_accuracy<small_model>(meta.global(), support, query, nn::sgd{.learning_rate = 0.05f}, 0, 5, 1);
  const double few = wf::adapted_accuracy<small_model>(meta.global(), support, query, nn::sgd{.learning_rate = 0.05f}, 3, 5, 1);
  INFO("zero-shot " << zero << " adapted " << few);
  CHECK(few >= zero);
  CHECK(few > 0.9);
}

TEST_CASE("Distillation: loss gradient, fp32 teacher to int8 student", "[distill]") {
  // Gradient of Hinton et al.'s loss against central differences.
  const std::vector<float> zs{0.3f, -1.2f, 0.8f, 0.1f, 1.0f, 0.2f, -0.5f, 0.0f}, zt{2.0f, -1.0f, 0.5f, 0.0f, -0.3f, 1.5f, 0.2f, 0.1f};
  const std::vector<std::uint8_t> y{0, 1};
  std::vector<float> g(8);
  (void)wf::distillation_loss(zs.data(), zt.data(), y.data(), 2, 4, 3.0f, 0.7f, g.data());
  for (std::size_t j = 0; j < 8; ++j) {
    auto p = zs, m = zs;
    p[j] += 1e-3f;
    m[j] -= 1e-3f;
    const double num = (wf::distillation_loss(p.data(), zt.data(), y.data(), 2, 4, 3.0f, 0.7f, nullptr) -
                        wf::distillation_loss(m.data(), zt.data(), y.data(), 2, 4, 3.0f, 0.7f, nullptr)) / 2e-3;
    CHECK(static_cast<double>(g[j]) == Approx(num).margin(2e-3));
  }

  struct kd_traits {
    using teacher = tl::sequential<tl::dense<8, 64>, tl::relu, tl::dense<64, 4>>;
    using student = tl::sequential<tl::dense<8, 6>, tl::relu, tl::dense<6, 4>>;
    using device = tl::int8_per_channel;
    using optimizer = nn::adam;
  };
  nn::network<kd_traits::teacher> teacher;
  teacher.initialize(1);
  tl::rng r(2);
  (void)wf::train_locally(teacher, nn::adam{.learning_rate = 1e-2f}, train_set().view(), 10, 20, r);
  wf::knowledge_distillation<kd_traits> kd({.temperature = 3.0f, .alpha = 0.8f, .epochs = 15, .batch_size = 20, .seed = 3,
                                            .calibration_samples = 200},
                                           nn::adam{.learning_rate = 1e-2f});
  const auto res = kd.run(teacher, train_set().view(), test_set().view());
  INFO("teacher " << res.teacher_accuracy << " student " << res.student_fp32_accuracy << " int8 " << res.student_int8_accuracy);
  CHECK(res.teacher_accuracy > 0.9);
  CHECK(res.student_fp32_accuracy > 0.85);
  CHECK(res.student_int8_accuracy > res.student_fp32_accuracy - 0.05);
  CHECK(res.student_int8_parameter_bytes < res.teacher_parameter_bytes / 10);
  CHECK(res.costs.rounds.back().parties.front().net.bytes_down == res.student_int8_parameter_bytes);
}

namespace {
/// FedLoRA traits with a compile-time capacity (`lora_rank`) below the default.
struct fleet_rank2 : fleet<> {
  static constexpr std::size_t lora_rank = 2;
};
}  // namespace

TEST_CASE("FedLoRA with heterogeneous ranks fine-tunes a frozen base", "[federated][lora]") {
  // Base model: trained on classes 0 and 1 only, so it fails on 2 and 3.
  const blobs& tr = train_set();
  std::vector<std::size_t> two;
  for (std::size_t i = 0; i < tr.count; ++i)
    if (tr.y[i] < 2) two.push_back(i);
  std::vector<float> x2;
  std::vector<std::uint8_t> y2;
  for (const std::size_t i : two) {
    x2.insert(x2.end(), tr.x.begin() + static_cast<std::ptrdiff_t>(i * 8), tr.x.begin() + static_cast<std::ptrdiff_t>(i * 8 + 8));
    y2.push_back(tr.y[i]);
  }
  nn::network<small_model> base;
  base.initialize(7);
  tl::rng r(3);
  (void)wf::train_locally(base, nn::sgd{.learning_rate = 0.05f}, {x2.data(), y2.data(), y2.size(), 8, 1}, 5, 10, r);
  const std::vector<float> w0(base.parameters().begin(), base.parameters().end());

  const auto fed = make_clients(tr, 6, 16);
  wf::lora_options lo{.max_rank = 4, .alpha = 4.0f, .learning_rate = 0.1f, .client_ranks = {1, 2, 4, 1, 2, 4},
                      .rounds = 20, .client_fraction = 1.0, .local_epochs = 2, .batch_size = 10, .seed = 5};
  wf::federated_lora<fleet<>> fl(lo);
  fl.set_base(w0);
  const double before = fl.evaluate(test_set().view());  // B = 0: the base model
  CHECK(before == Approx(nn::evaluate(base, nn::softmax_cross_entropy{}, test_set().view()).accuracy));
  const auto rep = fl.run(fed.clients, test_set().view());
  INFO("before " << before << " after " << rep.final_accuracy());
  CHECK(before < 0.6);
  CHECK(rep.final_accuracy() > before + 0.25);
  CHECK(rep.workflow == "fedlora");
  // A rank-r client trains r · Σ (In + Out) adapter values; it receives and sends the whole adapter
  // vector in the r_max layout (the FedAvg roles' model), 4 · Σ (In + Out) values.
  CHECK(fl.adapter_count(1) == (8 + 16) + (16 + 4));
  CHECK(fl.adapters().size() == fl.adapter_count(4));
  for (const auto& p : rep.rounds[0].parties)
    if (p.role == "client") CHECK((p.net.bytes_up == fl.adapters().size() * 4 && p.net.bytes_down == p.net.bytes_up));
  CHECK(fl.rejected_updates() == 0);

  // Only rank-1 clients: components beyond rank 1 are never touched (B's columns stay 0).
  wf::lora_options lo1 = lo;
  lo1.client_ranks.assign(6, 1);
  lo1.rounds = 2;
  wf::federated_lora<fleet<>> f1(lo1);
  f1.set_base(w0);
  f1.run(fed.clients, test_set().view());
  bool untouched = true;
  for (const auto& l : f1.layers())
    for (std::size_t o = 0; o < l.out; ++o)
      for (std::size_t k = 1; k < 4; ++k) untouched = untouched && f1.adapters()[l.b_offset + o * 4 + k] == 0.0f;
  CHECK(untouched);

  // The clients train nn::lora wrappers of capacity min(8, min(In, Out)) = 4: A and B only.
  using fl_t = wf::federated_lora<fleet<>>;
  STATIC_REQUIRE(fl_t::capacity == 4);
  STATIC_REQUIRE(fl_t::adapted_model::trainable_count == 4 * ((8 + 16) + (16 + 4)));
  STATIC_REQUIRE(std::is_same_v<tl::nn::merged_model_t<fl_t::adapted_model>, small_model>);
  STATIC_REQUIRE(wf::federated_lora<fleet_rank2>::capacity == 2);
  STATIC_REQUIRE(wf::federated_lora<fleet_rank2>::adapted_model::trainable_count == 2 * ((8 + 16) + (16 + 4)));

  // One client, one full-batch step from B = 0: the update is the chain rule through
  // W = W0 + s·B·A, dB = s·G·Aᵀ (dA = s·Bᵀ·G = 0), G being the plain dense layer's
  // weight gradient at W = W0 — the formula the merged implementation used, computed
  // here on a plain network. The wrapper never forms G; the two agree to fp32 rounding.
  wf::lora_options l1{.max_rank = 4, .alpha = 2.0f, .learning_rate = 0.1f, .rounds = 1, .client_fraction = 1.0,
                      .local_epochs = 1, .batch_size = 0, .seed = 9};
  fl_t one(l1);
  one.set_base(w0);
  const std::vector<float> ad0(one.adapters().begin(), one.adapters().end());
  const std::vector<nn::labelled_view<std::uint8_t>> first{fed.clients[0]};
  (void)one.run(first, nn::labelled_view<std::uint8_t>{});
  nn::network<small_model> plain;
  std::copy(w0.begin(), w0.end(), plain.parameters().begin());
  const auto& d0 = fed.clients[0];
  std::vector<float> dl(d0.count * 4);
  (void)nn::softmax_cross_entropy::evaluate(plain.forward(d0.x, d0.count, true), d0.y, d0.count, 4, dl.data());
  plain.zero_gradients();
  plain.backward(dl.data());
  const auto s = static_cast<float>(one.scale());
  double worst = 0.0, largest = 0.0;
  std::size_t a_moved = 0;
  for (const auto& l : one.layers()) {
    const float* g = plain.gradients().data() + l.weight_offset;
    for (std::size_t o = 0; o < l.out; ++o)
      for (std::size_t k = 0; k < 4; ++k) {
        double dot = 0.0;
        for (std::size_t i = 0; i < l.in; ++i) dot += static_cast<double>(g[o * l.in + i]) * ad0[l.a_offset + k * l.in + i];
        const double expect = -0.1 * s * dot;
        worst = std::max(worst, std::fabs(one.adapters()[l.b_offset + o * 4 + k] - expect));
        largest = std::max(largest, std::fabs(expect));
      }
    for (std::size_t j = 0; j < 4 * l.in; ++j) a_moved += one.adapters()[l.a_offset + j] != ad0[l.a_offset + j];
  }
  INFO("largest |B| " << largest << ", largest |B - chain rule| " << worst);
  CHECK(largest > 1e-4);
  CHECK(worst <= 1e-5 * largest);
  CHECK(a_moved == 0);

#if TINYLARGE_HAS_EXCEPTIONS
  wf::lora_options too_big = lo;
  too_big.max_rank = 5;  // above the capacity 4
  too_big.client_ranks.clear();
  CHECK_THROWS_WITH(fl_t(too_big), Catch::Contains("max_rank exceeds the capacity"));
#endif
}

#include <thread>

#include "tinylarge/transport/in_process.hpp"
#include "tinylarge/workflow/lora_deploy.hpp"

namespace {
/// FedLoRA's base model of the tests: trained on classes 0 and 1 only.
std::vector<float> lora_test_base() {
  const blobs& tr = train_set();
  std::vector<float> x2;
  std::vector<std::uint8_t> y2;
  for (std::size_t i = 0; i < tr.count; ++i)
    if (tr.y[i] < 2) {
      x2.insert(x2.end(), tr.x.begin() + static_cast<std::ptrdiff_t>(i * 8), tr.x.begin() + static_cast<std::ptrdiff_t>(i * 8 + 8));
      y2.push_back(tr.y[i]);
    }
  nn::network<small_model> base;
  base.initialize(7);
  tl::rng r(3);
  (void)wf::train_locally(base, nn::sgd{.learning_rate = 0.05f}, {x2.data(), y2.data(), y2.size(), 8, 1}, 5, 10, r);
  return {base.parameters().begin(), base.parameters().end()};
}
}  // namespace

TEST_CASE("FedLoRA as the FedAvg roles: over in_process threads the same bits as federated_lora::run; HetLoRA's "
          "mean; NaN updates rejected",
          "[federated][lora][deploy]") {
  const std::vector<float> w0 = lora_test_base();
  const auto fed = make_clients(train_set(), 6, 16);
  using fl_t = wf::federated_lora<fleet<>>;
  wf::lora_options lo{.max_rank = 4, .alpha = 4.0f, .learning_rate = 0.1f, .client_ranks = {1, 2, 4, 1, 2, 4},
                      .rounds = 3, .client_fraction = 0.5, .local_epochs = 1, .batch_size = 10, .seed = 13};
  const auto deployed = [&]<class Run>(const wf::lora_options& o, wf::federated_server_report& rep) {
    tl::in_process::hub hub(7);
    std::vector<std::thread> threads;
    for (std::uint32_t k = 1; k <= 6; ++k)
      threads.emplace_back([&, k] {
        tl::in_process ep(hub, k);
        Run mine(o);  // every party builds the same run and loads the same base W0
        mine.set_base(w0);
        wf::federated_client_options copt;
        copt.idle_timeout = std::chrono::milliseconds{20000};
        (void)wf::run_lora_client(ep, mine, fed.clients[k - 1], copt);
      });
    tl::in_process ep(hub, 0);
    Run server(o);
    server.set_base(w0);
    wf::federated_server_options sopt;
    sopt.round_timeout = std::chrono::milliseconds{20000};
    const tl::status s = wf::run_lora_server(ep, server, sopt, &rep);
    for (auto& t : threads) t.join();
    REQUIRE(s.ok());
    return std::vector<float>(server.adapters().begin(), server.adapters().end());
  };
  for (const bool heterogeneous : {true, false}) {
    wf::lora_options o = lo;
    if (!heterogeneous) {
      o.client_ranks.clear();
      o.client_fraction = 1.0;
    }
    INFO((heterogeneous ? "HetLoRA, ranks 1, 2, 4, 1, 2, 4, C = 0.5" : "FedLoRA, rank 4, C = 1"));
    fl_t sim(o);
    sim.set_base(w0);
    const std::vector<float> start(sim.adapters().begin(), sim.adapters().end());
    (void)sim.run(fed.clients, {});
    wf::federated_server_report rep;
    const std::vector<float> w = deployed.template operator()<fl_t>(o, rep);
    CHECK(rep.rounds_completed == 3);
    CHECK(rep.updates_per_round == std::vector<std::size_t>(3, heterogeneous ? 3 : 6));
    CHECK(!std::equal(w.begin(), w.end(), start.begin()));
    CHECK(std::equal(w.begin(), w.end(), sim.adapters().begin(), sim.adapters().end()));
  }
  {
    // fp16 updates (Traits::update): half the upload, the same bits in process and over the transport.
    using fl16_t = wf::federated_lora<fleet<tl::fedavg, tl::fp16_update>>;
    fl16_t sim(lo);
    sim.set_base(w0);
    const auto rep16 = sim.run(fed.clients, {});
    for (const auto& p : rep16.rounds[0].parties)
      if (p.role == "client") CHECK(p.net.bytes_up == sim.adapters().size() * 2);
    fl_t sim32(lo);
    sim32.set_base(w0);
    (void)sim32.run(fed.clients, {});
    CHECK(!std::equal(sim32.adapters().begin(), sim32.adapters().end(), sim.adapters().begin()));
    wf::federated_server_report rep;
    const std::vector<float> w = deployed.template operator()<fl16_t>(lo, rep);
    CHECK(std::equal(w.begin(), w.end(), sim.adapters().begin(), sim.adapters().end()));
  }

  // The server role's aggregation (hetlora_mean), by hand: client 0 has rank 1 and 10 examples, client 2
  // rank 4 and 30; a coordinate of both is their example-weighted mean, one of client 2's only is its value,
  // and an update holding a NaN (client 1) is rejected whole.
  fl_t fl(lo);
  fl.set_base(w0);
  auto& server = fl.server_program();
  const std::vector<float> before(fl.adapters().begin(), fl.adapters().end());
  const std::size_t dim = before.size();
  (void)server.begin_round(6);
  std::vector<float> u0(dim, 1.0f), u1(dim, 2.0f), u2(dim, 5.0f);
  u1[fl.layers()[0].a_offset + 3] = std::numeric_limits<float>::quiet_NaN();
  server.accept(2, tl::fp32_update{u2}, 30);
  server.accept(0, tl::fp32_update{u0}, 10);
  server.accept(1, tl::fp32_update{u1}, 20);
  const tl::round_report closed = server.close_round();
  REQUIRE(closed.updated());
  CHECK(closed.accepted == std::vector<std::uint64_t>{0, 2});
  REQUIRE(closed.rejected.size() == 1);
  CHECK((closed.rejected[0].client_id == 1 && closed.rejected[0].reason == tl::rejection_reason::non_finite));
  const auto& l0 = fl.layers()[0];
  CHECK(fl.adapters()[l0.a_offset] == static_cast<float>((10.0 * 1 + 30.0 * 5) / 40.0));  // row 0 of A: both
  CHECK(fl.adapters()[l0.a_offset + l0.in] == 5.0f);                                       // row 1: client 2's only
  CHECK(fl.adapters()[l0.b_offset] == static_cast<float>((10.0 * 1 + 30.0 * 5) / 40.0));  // column 0 of B: both
  CHECK(fl.adapters()[l0.b_offset + 3] == 5.0f);                                           // column 3: client 2's only
  // A round whose only update is non-finite leaves the adapters unchanged.
  const std::vector<float> kept(fl.adapters().begin(), fl.adapters().end());
  (void)server.begin_round(6);
  server.accept(1, tl::fp32_update{u1}, 20);
  CHECK(!server.close_round().updated());
  CHECK(std::equal(kept.begin(), kept.end(), fl.adapters().begin()));
#if TINYLARGE_HAS_EXCEPTIONS
  // A deployed client needs the base model, and an entry in the rank table.
  tl::in_process::hub hub(8);
  tl::in_process ep7(hub, 7), ep1(hub, 1);
  fl_t no_base(lo);
  CHECK(wf::run_lora_client(ep1, no_base, fed.clients[0]).code == tl::errc::invalid_argument);
  CHECK(wf::run_lora_client(ep7, fl, fed.clients[0]).code == tl::errc::invalid_argument);
#endif
}

#if TINYLARGE_HAS_EXCEPTIONS
TEST_CASE("Bad options and data raise clear errors", "[federated]") {
  using fl_t = wf::federated_averaging<fleet<>>;
  CHECK_THROWS_AS(fl_t({.client_fraction = 0.0}), tl::invalid_argument);
  CHECK_THROWS_AS(fl_t({.local_epochs = 0}), tl::invalid_argument);
  CHECK_THROWS_AS(fl_t({.dropout_probability = 1.0}), tl::invalid_argument);
  fl_t fl({.rounds = 1});
  const std::vector<float> wrong(P + 1, 0.0f);
  CHECK_THROWS_WITH(fl.set_global(wrong), Catch::Contains("wrong number of parameters"));
  std::vector<float> x(16, 0.0f);
  std::vector<std::uint8_t> y(2, 0);
  const std::vector<nn::labelled_view<std::uint8_t>> bad{{x.data(), y.data(), 2, 7, 1}};
  CHECK_THROWS_WITH(fl.run(bad, nn::labelled_view<std::uint8_t>{}), Catch::Contains("feature count"));
}
#endif

// ===========================================================================
// Wireless channel, devices and energy (workflow/channel.hpp)
// ===========================================================================
// Monte-Carlo checks use N = 200 000 seeded draws and a tolerance of 5 standard
// errors of the estimate (sample std / sqrt(N), or sqrt(p(1 - p) / N) for a
// probability): a correct sampler fails such a check with probability < 1e-6
// for a random seed, and the seeds are fixed.

TEST_CASE("Exponential integral E1 against 17-digit values", "[federated][channel]") {
  struct ref {
    double x, e1;
  };
  // mpmath.e1 at 17 significant digits.
  for (const ref& v : {ref{0.001, 6.331539364136149}, ref{0.01, 4.0379295765381142}, ref{0.1, 1.8229239584193906},
                       ref{0.5, 0.55977359477616084}, ref{1.0, 0.21938393439552029},
                       ref{2.0, 0.048900510708061118}, ref{5.0, 0.0011482955912753257},
                       ref{10.0, 4.1569689296853246e-6}, ref{50.0, 3.7832640295504591e-24}}) {
    INFO("x = " << v.x);
    CHECK(std::abs(tl::workflow::exponential_integral_e1(v.x) - v.e1) <= 1e-14 * v.e1);
  }
  // e^x E1(x) stays finite where e^x overflows: the asymptotic series 1/x (1 - 1/x + 2/x^2 - 6/x^3 ...).
  const double x = 1e4;
  CHECK(std::abs(tl::workflow::exp_e1(x) - (1 - 1 / x + 2 / (x * x) - 6 / (x * x * x)) / x) < 1e-13 / x);  // the next term, 24/x^4, is 2.4e-15 relative
  CHECK(tl::workflow::exp_e1(800.0) > 0.0);
  CHECK(std::isfinite(tl::workflow::exp_e1(800.0)));
#if TINYLARGE_HAS_EXCEPTIONS
  CHECK_THROWS_AS(tl::workflow::exp_e1(0.0), tl::invalid_argument);
  CHECK_THROWS_AS(tl::workflow::exp_e1(std::nan("")), tl::invalid_argument);
#endif
}

TEST_CASE("Rayleigh fading: ergodic capacity and outage match the closed forms", "[federated][channel]") {
  namespace w = tl::workflow;
  const int n = 200'000;
  tl::rng r(2026);
  const w::fading ray = w::fading::rayleigh();
  for (const double mean_snr : {1.0, 10.0, 100.0}) {
    const double th = 1.0;  // γ_th = 0 dB
    double sum = 0, sum2 = 0;
    int below = 0;
    for (int i = 0; i < n; ++i) {
      const double g = mean_snr * ray.power_gain(r);
      const double c = std::log2(1.0 + g);
      sum += c;
      sum2 += c * c;
      below += g < th;
    }
    const double mean = sum / n, sd = std::sqrt(sum2 / n - mean * mean);
    const double closed = w::rayleigh_ergodic_capacity(mean_snr);
    INFO("mean SNR " << mean_snr << ": Monte Carlo " << mean << " +- " << sd / std::sqrt(n) << ", closed form "
                     << closed);
    CHECK(std::abs(mean - closed) < 5 * sd / std::sqrt(static_cast<double>(n)));
    CHECK(closed < std::log2(1.0 + mean_snr));  // Jensen: fading costs capacity
    const double p = w::rayleigh_outage_probability(mean_snr, th);
    CHECK(p == Approx(1 - std::exp(-th / mean_snr)).epsilon(1e-12));  // expm1 vs 1 - exp: cancellation at small p
    CHECK(std::abs(static_cast<double>(below) / n - p) < 5 * std::sqrt(p * (1 - p) / n));
  }
  // A textbook figure: 10 dB mean SNR, log2(e) e^0.1 E1(0.1) = 2.9066 bit/s/Hz (vs 3.4594 without fading).
  CHECK(w::rayleigh_ergodic_capacity(10.0) == Approx(2.9066).margin(1e-4));
}

TEST_CASE("Rician fading: mean power 1 and variance (1 + 2K) / (K + 1)^2", "[federated][channel]") {
  namespace w = tl::workflow;
  const int n = 200'000;
  tl::rng r(7);
  for (const double k : {0.0, 1.0, 10.0}) {
    const w::fading f = w::fading::rician(k);
    double sum = 0, sum2 = 0;
    for (int i = 0; i < n; ++i) {
      const double g = f.power_gain(r);
      sum += g;
      sum2 += g * g;
    }
    const double mean = sum / n, var = sum2 / n - mean * mean;
    const double var_closed = (1 + 2 * k) / ((k + 1) * (k + 1));
    INFO("K = " << k << ": mean " << mean << ", variance " << var << " (closed form " << var_closed << ")");
    CHECK(std::abs(mean - 1.0) < 5 * std::sqrt(var_closed / n));
    // Standard error of a sample variance: sqrt((mu4 - sigma^4) / N); at K = 0 (Exp(1): mu4 = 9) it is
    // sqrt(8 / N), the largest over K >= 0.
    CHECK(std::abs(var - var_closed) < 5 * std::sqrt(8.0 / n));
  }
  tl::rng r2(1);
  CHECK(w::fading::none().power_gain(r2) == 1.0);
#if TINYLARGE_HAS_EXCEPTIONS
  CHECK_THROWS_WITH(w::fading::rician(-1.0).power_gain(r2), Catch::Contains("K factor"));
#endif
}

TEST_CASE("Path loss, link budget, rates, outage, time and energy of a round", "[federated][channel]") {
  namespace w = tl::workflow;
  const w::path_loss pl{};  // 2.4 GHz, n = 3, d0 = 1 m
  CHECK(pl.db(1.0) == Approx(40.0520).margin(1e-4));  // 20 log10(4 pi 2.4e9 / 299792458)
  CHECK(pl.db(10.0) - pl.db(1.0) == Approx(30.0).epsilon(1e-12));
  CHECK(pl.db(100.0) - pl.db(10.0) == Approx(30.0).epsilon(1e-12));
  // Link budget at 100 m: up 23 - 100.052 - (-174 + 70 + 7) = 19.948 dB on the whole band;
  // on a tenth of the band the noise is 10 dB lower (uplink +10 dB), the AP's power a tenth (downlink +0 dB).
  w::cell c{};
  const w::device_profile dev{};
  const w::mean_snr full = w::mean_snr_of(c, dev, 1.0), tenth = w::mean_snr_of(c, dev, 0.1);
  CHECK(w::to_db(full.up) == Approx(19.9480).margin(1e-4));
  CHECK(w::to_db(full.down) == Approx(26.9480).margin(1e-4));
  CHECK(w::to_db(tenth.up) == Approx(29.9480).margin(1e-4));
  CHECK(w::to_db(tenth.down) == Approx(26.9480).margin(1e-4));

  // No fading: the Shannon rate exactly, then time and energy by hand.
  w::device_profile fixed = dev;
  fixed.channel = w::fading::none();
  tl::rng r(3);
  const w::link_state l = w::draw_link(c, fixed, 0.1, r);
  CHECK(l.rate_up_bps == Approx(1e6 * std::log2(1 + tenth.up)).epsilon(1e-12));
  CHECK(l.rate_down_bps == Approx(1e6 * std::log2(1 + tenth.down)).epsilon(1e-12));
  CHECK_FALSE(l.outage);
  const w::client_cost k = w::cost_of_round(fixed, l, 5'000'000, 100'000, 200'000);
  CHECK(k.compute_s == Approx(0.1));  // 5e6 MACs at 50e6 MAC/s
  CHECK(k.up_s == Approx(8e5 / l.rate_up_bps));
  CHECK(k.down_s == Approx(1.6e6 / l.rate_down_bps));
  CHECK(k.seconds == Approx(k.down_s + k.compute_s + k.up_s));
  CHECK(k.compute_j == Approx(5e-3));                       // 5e6 x 1 nJ
  CHECK(k.tx_j == Approx(0.19952623 * k.up_s).epsilon(1e-6));  // 23 dBm = 199.5 mW
  CHECK(k.tx_j / 8e5 == Approx(0.19952623 / l.rate_up_bps).epsilon(1e-6));  // per bit: P_tx / R
  CHECK(k.rx_j == Approx(0.1 * k.down_s));
  CHECK(k.joules == Approx(k.compute_j + k.tx_j + k.rx_j));

  // Outage through draw_link: Rayleigh both ways, R_min = s B log2(1 + g_th) in each direction independently:
  // P(outage) = 1 - (1 - p_up)(1 - p_down), p = 1 - exp(-g_th / mean SNR).
  c.min_rate_bps = 0.1 * 10e6 * std::log2(1.0 + 100.0);  // g_th = 100 (20 dB)
  const double p_up = w::rayleigh_outage_probability(tenth.up, 100.0);
  const double p_down = w::rayleigh_outage_probability(tenth.down, 100.0);
  const double p = 1 - (1 - p_up) * (1 - p_down);
  const int n = 200'000;
  int out = 0;
  tl::rng r2(11);
  for (int i = 0; i < n; ++i) out += w::draw_link(c, dev, 0.1, r2).outage;
  INFO("outage: " << static_cast<double>(out) / n << " vs " << p);
  CHECK(std::abs(static_cast<double>(out) / n - p) < 5 * std::sqrt(p * (1 - p) / n));

  // A round: equal shares, seeded, the straggler is the far device; a client in outage costs nothing.
  c.min_rate_bps = 0;
  std::vector<w::device_profile> fleet(4, fixed);
  fleet[2].distance_m = 400;  // 18 dB more path loss: lowest rates
  fleet[1].macs_per_s = 100e6;
  tl::rng ra(5), rb(5);
  const std::vector<w::link_state> links = w::draw_links(c, fleet, ra);
  CHECK(links.size() == 4);
  CHECK(links[0].rate_up_bps == Approx(links[3].rate_up_bps));
  CHECK(links[2].rate_up_bps < links[0].rate_up_bps);
  CHECK(w::draw_links(c, fleet, rb)[2].snr_down == links[2].snr_down);
  std::vector<w::client_cost> costs;
  for (std::size_t i = 0; i < 4; ++i) costs.push_back(w::cost_of_round(fleet[i], links[i], 5'000'000, 400'000, 400'000));
  w::link_state dropped = links[3];
  dropped.outage = true;
  costs[3] = w::cost_of_round(fleet[3], dropped, 5'000'000, 400'000, 400'000);
  CHECK(costs[3].seconds == 0.0);
  CHECK(costs[3].joules == 0.0);
  const w::round_cost rc = w::critical_path(costs);
  CHECK(rc.straggler == 2);
  CHECK(rc.seconds == costs[2].seconds);
  CHECK(rc.outages == 1);
  CHECK(rc.joules == Approx(costs[0].joules + costs[1].joules + costs[2].joules));
  CHECK(costs[1].compute_s == Approx(costs[0].compute_s / 2));
  std::vector<w::client_cost> none(2);
  none[0].outage = none[1].outage = true;
  CHECK(w::critical_path(none).straggler == 2);
#if TINYLARGE_HAS_EXCEPTIONS
  CHECK_THROWS_WITH(pl.db(0.5), Catch::Contains("inside the reference distance"));
  CHECK_THROWS_WITH(w::mean_snr_of(c, dev, 0.0), Catch::Contains("share"));
  CHECK_THROWS_WITH(w::mean_snr_of(c, dev, 1.5), Catch::Contains("share"));
  w::device_profile bad = dev;
  bad.macs_per_s = 0;
  CHECK_THROWS_WITH(w::cost_of_round(bad, l, 1, 1, 1), Catch::Contains("macs_per_s"));
#endif
}

TEST_CASE("FedAvg over a wireless fleet: per-client time and energy, straggler, outage", "[federated][channel]") {
  namespace w = tl::workflow;
  const auto fed = make_clients(train_set(), 8, 3);
  wf::federated_options o{.rounds = 4, .client_fraction = 0.5, .local_epochs = 1, .batch_size = 5, .seed = 7};
  o.wireless.devices.assign(8, w::device_profile{});
  for (auto& d : o.wireless.devices) d.channel = w::fading::none();  // rates exactly from the link budget
  o.wireless.devices[5].distance_m = 1000;                          // 30 dB more path loss: the slowest link
  o.wireless.devices[6].macs_per_s = 1e3;                           // a very slow processor
  // Client 7 is out of range: 20 km; with a 1 Mbit/s floor it is always in outage.
  o.wireless.devices[7].distance_m = 20'000;
  o.wireless.access_point.min_rate_bps = 1e6;
  wf::federated_averaging<fleet<>> fl(o, tl::fedavg{}, nn::sgd{.learning_rate = 0.05f});
  fl.initialize(5);
  const wf::report rep = fl.run(fed.clients, test_set().view());
  REQUIRE(rep.rounds.size() == 4);
  std::size_t outages = 0, seen7 = 0;
  for (std::size_t t = 0; t < 4; ++t) {
    const wf::round_record& rec = rep.rounds[t];
    const wf::round_log& lg = fl.log()[t];
    double slowest = 0, energy = 0;
    long long straggler = -1;
    for (const wf::role_cost& p : rec.parties) {
      if (p.role != "client") continue;
      if (p.id == 7) {
        ++seen7;
        CHECK(p.seconds == 0.0);  // not reached: no time, no energy, nothing sent
        CHECK(p.joules == 0.0);
        CHECK(p.net.bytes_down == 0);
        CHECK(std::find(lg.outage.begin(), lg.outage.end(), 7u) != lg.outage.end());
        continue;
      }
      // Recompute the client's cost from its link (one share of 1/4 of the band, no fading).
      w::link_state l;
      const w::mean_snr m = w::mean_snr_of(o.wireless.access_point, o.wireless.devices[p.id], 0.25);
      l.rate_up_bps = 0.25 * 10e6 * std::log2(1 + m.up);
      l.rate_down_bps = 0.25 * 10e6 * std::log2(1 + m.down);
      const w::client_cost k = w::cost_of_round(o.wireless.devices[p.id], l, p.macs, p.net.bytes_up, p.net.bytes_down);
      CHECK(p.seconds == Approx(k.seconds).epsilon(1e-12));
      CHECK(p.joules == Approx(k.joules).epsilon(1e-12));
      CHECK(p.seconds > 0.0);
      energy += p.joules;
      if (p.seconds > slowest) {
        slowest = p.seconds;
        straggler = static_cast<long long>(p.id);
      }
    }
    outages += rec.outages;
    CHECK(rec.outages == lg.outage.size());
    CHECK(rec.straggler == straggler);
    CHECK(rec.energy_joules == Approx(energy).epsilon(1e-12));
    // One wave: 2 latencies + the straggler, then the server's aggregation.
    const double server_s = static_cast<double>(rec.parties.back().macs) / o.link.server_macs_per_s;
    CHECK(rec.estimated_seconds == Approx(2 * o.link.latency_s + slowest + server_s).epsilon(1e-12));
    // Client 6 (1 kMAC/s) is the straggler whenever it takes part.
    if (std::find(lg.selected.begin(), lg.selected.end(), 6u) != lg.selected.end()) CHECK(rec.straggler == 6);
    // The accepted updates exclude the client in outage.
    for (const auto id : lg.aggregation.accepted) CHECK(id != 7u);
  }
  CHECK(outages == seen7);
  CHECK(outages > 0);  // client 7 was selected in at least one of the 4 rounds (seed 7)
#if TINYLARGE_HAS_EXCEPTIONS
  wf::federated_options bad = o;
  bad.wireless.devices.resize(3);
  wf::federated_averaging<fleet<>> fb(bad, tl::fedavg{}, nn::sgd{.learning_rate = 0.05f});
  fb.initialize(5);
  CHECK_THROWS_WITH(fb.run(fed.clients, test_set().view()), Catch::Contains("3 devices for 8 clients"));
#endif
}

TEST_CASE("Uniform selection draws the clients it drew before selection was a policy", "[federated][selection]") {
  // Selections recorded on main before the selection axis existed (K = 10, C = 0.3, seed 3):
  // the default policy and an explicit uniform_selection give them, and the same weights.
  const auto fed = make_clients(train_set(), 10, 5);
  auto run = [&]<class F>(F, bool retry) {
    wf::federated_options o{.rounds = 5, .client_fraction = 0.3, .local_epochs = 1, .batch_size = 8, .seed = 3};
    if (retry) {
      o.dropout_probability = 0.3;
      o.on_dropout = wf::dropout_policy::retry;
    }
    wf::federated_averaging<F> fl(o, tl::fedavg{}, nn::sgd{.learning_rate = 0.05f});
    fl.initialize(1);
    fl.run(fed.clients, test_set().view());
    std::vector<std::vector<std::uint64_t>> sel;
    for (const auto& lg : fl.log()) sel.push_back(lg.selected);
    return std::pair(sel, std::vector<float>(fl.global().begin(), fl.global().end()));
  };
  using ids = std::vector<std::vector<std::uint64_t>>;
  const auto plain = run(fleet<>{}, false), expl = run(selecting_fleet<wf::uniform_selection>{}, false);
  CHECK(plain.first == ids{{0, 3, 4}, {0, 6, 9}, {3, 6, 7}, {4, 6, 8}, {0, 1, 6}});
  CHECK(expl.first == plain.first);
  CHECK(expl.second == plain.second);
  const auto retry = run(fleet<>{}, true);  // replacement waves draw from the same stream as before
  CHECK(retry.first == ids{{0, 3, 4, 7}, {1, 4, 6}, {4, 5, 7, 3, 6, 0}, {0, 4, 8, 3}, {3, 6, 8, 2}});
}

namespace {
// A fleet of 10 clients without fading (rates exactly from the link budget): client k at 20 + 60k m,
// compute 20 … 200 M MAC/s in a scrambled order, so that neither distance nor compute alone orders them.
wf::wireless_fleet selection_fleet(tl::workflow::fading f) {
  wf::wireless_fleet air;
  air.access_point.uplink_hz = air.access_point.downlink_hz = 1e6;
  for (std::size_t k = 0; k < 10; ++k) {
    wf::device_profile d;
    d.distance_m = 20.0 + 60.0 * static_cast<double>(k);
    d.macs_per_s = 20e6 * static_cast<double>(1 + (k * 7) % 10);
    d.channel = f;
    air.devices.push_back(d);
  }
  return air;
}

// Client k's predicted round on a share 1/m of the band (no fading): fp32 model down, E = 1 pass, fp32 update up.
double predicted_seconds(const wf::wireless_fleet& air, std::size_t k, std::size_t m, std::size_t samples) {
  const double share = 1.0 / static_cast<double>(m);
  const wf::link_state l = wf::link_on_share(air.access_point, air.devices[k], share, 1.0, 1.0);
  return wf::cost_of_round(air.devices[k], l, 3ull * small_model::macs * samples, 4 * P, 4 * P).seconds;
}

// `rounds` rounds of FedAvg (C = 0.3, E = 1, B = 8) over `selection_fleet(f)` with `selection`: the report and the log.
template <class Selection>
std::pair<wf::report, std::vector<wf::round_log>> run_selected(const wf::federated_dataset& fed, std::size_t rounds,
                                                               std::uint64_t seed, wf::fading f,
                                                               const Selection& selection = {}) {
  using traits = selecting_fleet<Selection>;
  wf::federated_options o{.rounds = rounds, .client_fraction = 0.3, .local_epochs = 1, .batch_size = 8, .seed = seed};
  o.wireless = selection_fleet(f);
  wf::federated_averaging<traits> fl(o, tl::fedavg{}, nn::sgd{.learning_rate = 0.05f}, selection);
  fl.initialize(1);
  wf::report rep = fl.run(fed.clients, test_set().view());
  return {std::move(rep), fl.log()};
}
}  // namespace

TEST_CASE("Channel-aware selection picks the m clients with the shortest predicted round", "[federated][selection]") {
  const auto fed = make_clients(train_set(), 10, 5);
  const auto [rep, log] = run_selected(fed, 3, 3, wf::fading::none(), wf::channel_aware_selection{});
  // Recompute every client's round from the link budget and rank them.
  const wf::wireless_fleet air = selection_fleet(wf::fading::none());
  std::vector<std::pair<double, std::uint64_t>> ranked;
  for (std::size_t k = 0; k < 10; ++k) ranked.emplace_back(predicted_seconds(air, k, 3, fed.clients[k].count), k);
  std::sort(ranked.begin(), ranked.end());
  std::vector<std::uint64_t> expect{ranked[0].second, ranked[1].second, ranked[2].second};
  std::sort(expect.begin(), expect.end());
  for (std::size_t t = 0; t < 3; ++t) {
    CHECK(log[t].selected == expect);
    // The round's straggler is the third fastest, at its predicted time.
    CHECK(rep.rounds[t].straggler == static_cast<long long>(ranked[2].second));
    double slowest = 0;
    for (const auto& p : rep.rounds[t].parties)
      if (p.role == "client") slowest = std::max(slowest, p.seconds);
    CHECK(slowest == Approx(ranked[2].first).epsilon(1e-12));
  }
}

TEST_CASE("Deadline-aware selection never picks a client over the deadline", "[federated][selection]") {
  const auto fed = make_clients(train_set(), 10, 5);
  std::vector<double> t3;  // predicted on a share 1/3, no fading
  for (std::size_t k = 0; k < 10; ++k) t3.push_back(predicted_seconds(selection_fleet(wf::fading::none()), k, 3, fed.clients[k].count));
  std::vector<double> sorted = t3;
  std::sort(sorted.begin(), sorted.end());
  SECTION("without fading: uniform among those that fit, fewer than m when not enough fit") {
    for (const std::size_t fit : {6u, 2u}) {
      const double deadline = 0.5 * (sorted[fit - 1] + sorted[fit]);
      const auto [rep, log] = run_selected(fed, 6, 3, wf::fading::none(), wf::deadline_aware_selection{deadline});
      std::vector<bool> seen(10, false);
      for (std::size_t t = 0; t < 6; ++t) {
        const auto& sel = log[t].selected;
        CHECK(sel.size() == std::min<std::size_t>(fit, 3));
        for (const auto c : sel) {
          CHECK(t3[c] <= deadline);
          seen[c] = true;
        }
        for (const auto& p : rep.rounds[t].parties)
          if (p.role == "client") CHECK(p.seconds <= deadline);
      }
      if (fit == 6) CHECK(std::count(seen.begin(), seen.end(), true) > 3);  // not always the same three
    }
  }
  SECTION("Rayleigh fading: every selected client finishes within the deadline") {
    const double deadline = sorted[4];
    const auto [rep, log] = run_selected(fed, 20, 4, wf::fading::rayleigh(), wf::deadline_aware_selection{deadline});
    std::size_t asked = 0;
    for (std::size_t t = 0; t < 20; ++t) {
      CHECK(log[t].selected.size() <= 3);
      asked += log[t].selected.size();
      for (const auto& p : rep.rounds[t].parties)
        if (p.role == "client") CHECK(p.seconds <= deadline);
    }
    CHECK(asked > 20);  // it does select
  }
}

TEST_CASE("A link-aware selection without links or with Poisson sampling is refused, naming it", "[federated][selection]") {
#if TINYLARGE_HAS_EXCEPTIONS
  using fl_t = wf::federated_averaging<selecting_fleet<wf::channel_aware_selection>>;
  CHECK_THROWS_WITH(fl_t({.rounds = 1}), Catch::Contains("selection policy channel_aware needs the clients' links"));
  wf::federated_options o{.rounds = 1, .poisson_sampling = true};
  o.wireless = selection_fleet(wf::fading::none());
  CHECK_THROWS_WITH(fl_t(o), Catch::Contains("channel_aware picks clients by their links and cannot be combined with "
                                             "Poisson sampling"));
  // The server role alone: select without links, select_poisson.
  wf::fedavg_server<tl::fedavg, tl::fp32_update, wf::deadline_aware_selection> server(tl::fedavg{}, 4, 1);
  (void)server.begin_round(10);
  CHECK_THROWS_WITH(server.select(3), Catch::Contains("selection policy deadline_aware needs every client's link"));
  CHECK_THROWS_WITH(server.select_poisson(0.3), Catch::Contains("deadline_aware picks clients by their links"));
  // A deadline that no client can meet by construction is an error, not a run of failed rounds.
  const auto fed = make_clients(train_set(), 10, 5);
  CHECK_THROWS_WITH(run_selected(fed, 1, 3, wf::fading::none(), wf::deadline_aware_selection{0.0}),
                    Catch::Contains("deadline_s must be positive"));
#endif
}

#if TINYLARGE_SECAGG_HAS_SODIUM
namespace {
// The fleet with secure aggregation (aggregate/secure.hpp): masked fixed-point updates, unmasked sum.
template <class Aggregation = tl::fedavg>
struct secure_fleet : fleet<Aggregation> {
  static constexpr bool secure_aggregation = true;
};
}  // namespace

TEST_CASE("Secure aggregation in the FedAvg round: the plain round's model within the fixed-point bound, "
          "clients dropped after masking recovered",
          "[federated][secagg]") {
  const auto fed = make_clients(train_set(), 10, 3);
  const auto compare = [&]<class Agg>(Agg policy, double dropout) {
    wf::federated_options o{.rounds = 1, .client_fraction = 0.7, .local_epochs = 1, .batch_size = 5, .seed = 21};
    o.dropout_probability = dropout;
    o.secure = {{16, 2.0f}, 0};
    wf::federated_averaging<fleet<Agg>> plain(o, policy, nn::sgd{.learning_rate = 0.05f});
    wf::federated_averaging<secure_fleet<Agg>> secure(o, policy, nn::sgd{.learning_rate = 0.05f});
    plain.initialize(4);
    secure.initialize(4);
    const std::vector<float> w0(plain.global().begin(), plain.global().end());
    plain.run_round(fed.clients, {});
    secure.run_round(fed.clients, {});
    const auto& lp = plain.log().back();
    const auto& ls = secure.log().back();
    REQUIRE(lp.aggregation.updated());
    REQUIRE(ls.aggregation.updated());
    // The same clients were asked, the same ones dropped (after the masks were set up), the same survivors summed.
    CHECK(ls.selected == lp.selected);
    CHECK(ls.dropped == lp.dropped);
    CHECK(ls.aggregation.accepted == lp.aggregation.accepted);
    // Bound per coordinate (FedAvg; server optimizers apply a 1-Lipschitz-per-coordinate step to the mean here,
    // see below): the lanes are rounded once each, |S| · 2^−f / (2N), plus float rounding of both means
    // ((|S| + 2) ulps of the largest weight).
    double n_total = 0.0, w_max = 1.0;
    for (const auto id : lp.aggregation.accepted) n_total += static_cast<double>(fed.clients[id].count);
    for (const float v : plain.global()) w_max = std::max(w_max, static_cast<double>(std::fabs(v)));
    const double s = static_cast<double>(lp.aggregation.accepted.size());
    const double bound = s * std::ldexp(0.5, -16) / n_total + (s + 2.0) * std::ldexp(w_max, -23);
    double worst = 0.0, moved = 0.0;
    for (std::size_t j = 0; j < P; ++j) {
      worst = std::max(worst, std::fabs(static_cast<double>(secure.global()[j]) - plain.global()[j]));
      moved = std::max(moved, std::fabs(static_cast<double>(plain.global()[j]) - w0[j]));
    }
    CHECK(worst <= bound);
    CHECK(moved > 100.0 * bound);  // the round did move the model: the comparison is not vacuous
    return lp;
  };
  SECTION("FedAvg, every client answers") {
    const auto lg = compare(tl::fedavg{}, 0.0);
    CHECK(lg.aggregation.accepted.size() == 7);
  }
  SECTION("FedAvg, clients drop after masking: FedAvg over the survivors") {
    const auto lg = compare(tl::fedavg{}, 0.3);
    CHECK(!lg.dropped.empty());
    CHECK(lg.aggregation.accepted.size() + lg.dropped.size() == 7);
  }
  SECTION("FedAvgM (a linear server optimizer) with a dropout") {
    const auto lg = compare(tl::fedavgm{}, 0.3);
    CHECK(!lg.dropped.empty());
  }
  SECTION("too many dropouts for the threshold: the round fails, the model is unchanged") {
    wf::federated_options o{.rounds = 1, .client_fraction = 0.4, .local_epochs = 1, .batch_size = 5, .seed = 21};
    o.dropout_probability = 0.9;
    o.secure = {{16, 2.0f}, 4};  // t = 4 of 4
    wf::federated_averaging<secure_fleet<>> secure(o, tl::fedavg{}, nn::sgd{.learning_rate = 0.05f});
    secure.initialize(4);
    const std::vector<float> w0(secure.global().begin(), secure.global().end());
    secure.run_round(fed.clients, {});
    REQUIRE(!secure.log().back().dropped.empty());
    CHECK_FALSE(secure.log().back().aggregation.updated());
    CHECK(std::equal(w0.begin(), w0.end(), secure.global().begin()));
  }
}

TEST_CASE("Secure FedAvg learns the non-IID problem and counts the protocol's traffic", "[federated][secagg]") {
  const auto fed = make_clients(train_set(), 20, 3);
  wf::federated_options o{.rounds = 15, .client_fraction = 0.25, .local_epochs = 2, .batch_size = 5, .seed = 7};
  o.secure = {{16, 2.0f}, 0};
  wf::federated_averaging<secure_fleet<>> fl(o, tl::fedavg{}, nn::sgd{.learning_rate = 0.05f});
  fl.initialize(5);
  const wf::report rep = fl.run(fed.clients, test_set().view());
  CHECK(rep.final_accuracy() > 0.9);
  // 5 clients: model + roster (5 advertisements) + 4 sealed shares down and 1 unmask request (5 ids);
  // advertisement + 4 sealed shares + P + 1 masked words + 5 self-mask shares up.
  const std::uint64_t box = tl::secagg::sealed_share::wire_bytes, ad = tl::secagg::advertisement::wire_bytes;
  const std::uint64_t share = 8 + 8 * tl::secagg::key_limbs;
  for (const auto& p : rep.rounds[0].parties) {
    if (p.role != "client") continue;
    CHECK(p.net.bytes_down == P * 4 + 5 * ad + 4 * box + 4 * 5);
    CHECK(p.net.bytes_up == ad + 4 * box + (P + 1) * 4 + 4 + 5 * share);
    CHECK(p.net.messages_up == 4);
    CHECK(p.net.messages_down == 4);
  }
#if TINYLARGE_HAS_EXCEPTIONS
  wf::federated_options retry = o;
  retry.on_dropout = wf::dropout_policy::retry;
  CHECK_THROWS_WITH(wf::federated_averaging<secure_fleet<>>(retry), Catch::Contains("dropout_policy::retry"));
#endif
}
#endif  // TINYLARGE_SECAGG_HAS_SODIUM

#if TINYLARGE_SECAGG_HAS_SODIUM
#include <thread>

#include "tinylarge/transport/in_process.hpp"
#include "tinylarge/workflow/federated_deploy.hpp"

TEST_CASE("Secure aggregation over a transport: the deployment drivers give the simulation's bits, and recover a "
          "client that leaves after sharing its keys",
          "[federated][secagg][deploy]") {
  const auto fed = make_clients(train_set(), 4, 3);
  wf::federated_options o{.rounds = 3, .client_fraction = 1.0, .local_epochs = 1, .batch_size = 5, .seed = 21};
  o.secure = {{16, 2.0f}, 0};
  const nn::sgd sgd{.learning_rate = 0.05f};
  wf::federated_averaging<secure_fleet<>> sim(o, tl::fedavg{}, sgd);
  sim.initialize(4);
  const std::vector<float> w0(sim.global().begin(), sim.global().end());
  (void)sim.run(fed.clients, {});

  // The same roles, server on endpoint 0 and 4 clients on threads; `leaver` (1-based endpoint, 0: none)
  // leaves before sending its masked update of round 2.
  const auto deploy = [&](std::uint32_t leaver, wf::federated_server_report& rep) {
    tl::in_process::hub hub(5);
    std::vector<std::thread> threads;
    for (std::uint32_t k = 1; k <= 4; ++k)
      threads.emplace_back([&, k] {
        tl::in_process ep(hub, k);
        wf::fedavg_training<secure_fleet<>> training(o, sgd, 0.0f, fed.clients);
        wf::fedavg_client<wf::fedavg_training<secure_fleet<>>> role(training);
        wf::federated_client_options copt;
        copt.idle_timeout = std::chrono::milliseconds{20000};
        copt.secure = wf::secure_deployment{o.secure};
        if (k == leaver)
          copt.on_secure_step = [](std::uint32_t r, tl::wire::secagg_step st) {
            return !(r == 2 && st == tl::wire::secagg_step::masked);
          };
        (void)wf::run_federated_client(ep, role, copt);
      });
    tl::in_process ep(hub, 0);
    wf::fedavg_server<tl::fedavg> server(tl::fedavg{}, P, o.seed);
    server.set_global(w0);
    wf::federated_server_options sopt;
    sopt.rounds = 3;
    sopt.round_timeout = std::chrono::milliseconds{leaver != 0 ? 1500 : 20000};
    sopt.secure = wf::secure_deployment{o.secure};
    const tl::status s = wf::run_federated_server(ep, server, sopt, &rep);
    for (auto& t : threads) t.join();
    REQUIRE(s.ok());
    return std::vector<float>(server.global().begin(), server.global().end());
  };
  SECTION("every client answers: bit-identical to federated_averaging") {
    wf::federated_server_report rep;
    const auto w = deploy(0, rep);
    CHECK(rep.updates_per_round == std::vector<std::size_t>{4, 4, 4});
    CHECK(std::equal(w.begin(), w.end(), sim.global().begin()));
  }
  SECTION("client 2 leaves after sharing its keys in round 2: its masks are removed, rounds of 4, 3, 3") {
    wf::federated_server_report rep;
    const auto w = deploy(2, rep);
    CHECK(rep.updates_per_round == std::vector<std::size_t>{4, 3, 3});
    CHECK(all_finite(w));
    CHECK(!std::equal(w.begin(), w.end(), sim.global().begin()));
  }
}
#endif  // TINYLARGE_SECAGG_HAS_SODIUM
