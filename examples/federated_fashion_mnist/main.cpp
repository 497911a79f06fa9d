// Federated learning on Fashion-MNIST in McMahan et al.'s pathological non-IID
// setting: 100 clients, 200 label-sorted shards of 300 images, 2 shards per
// client, C = 0.1, E = 5, B = 10. `--partition SPEC` picks another split of the
// 60 000 images among the 100 clients: iid, shards:K, dirichlet:ALPHA (label
// skew) or quantity:BETA (size skew), seeded by --seed (data/partition.hpp).
//
//   federated_fashion_mnist [--full] [--rounds N] [--fedsgd-rounds N] [--target ACC] [--lr X] [--lr-decay X]
//                           [--fedsgd-lr X] [--skip-fedsgd] [--skip-fedavg] [--server-momentum B --server-lr E]
//                           [--robust-rounds N] [--robust-lr X] [--robust-rules LIST] [--robust-attacked-only]
//                           [--flip-magnitude L] [--dp-rounds N] [--dp-clip C] [--dp-noise LIST]
//                           [--skip-robust] [--skip-dp] [--partition SPEC] [--model small|2nn|cnn]
//                           [--local-epochs E] [--select uniform|channel|deadline:S[,...]] [--json FILE] [--seed S]
//
// Prints
//  1. rounds to reach the target test accuracy for FedSGD (E = 1, B = ∞) and
//     FedAvg (E = 5, B = 10) — McMahan et al. 2017, Table 2 — evaluated on
//     the global model after every round; with --server-momentum B also
//     FedAvgM (Hsu et al. 2019) on the same clients;
//  2. a robustness table: 20% of each round's clients (exactly 4 of the 20
//     sampled, C = 0.2) send sign-flipped updates w_t − λΔ; FedAvg,
//     coordinate median, trimmed mean (β = 0.2, cuts 4 per tail), Krum,
//     Multi-Krum (m = n − f = 16) and Bulyan (f = 4; needs n ≥ 4f + 3), and
//     bucketing (s = 2, Karimireddy et al. 2022) in front of median, trimmed
//     mean and Multi-Krum, nearest-neighbor mixing (f = 4, Allouah et al.
//     2023) in front of median, trimmed mean, Krum and Bulyan ("NNM median",
//     "NNM trimmed mean", "NNM Krum", "NNM Bulyan"), and the two NNM variations
//     of docs/federated.md ("bucketed NNM median", "bucketed NNM trimmed mean",
//     "NNM f_mix=2 median", "NNM f_mix=2 Krum"; these four only when named in
//     --robust-rules) — each attacked and, unless
//     --robust-attacked-only, also clean (the rule's own cost on 2-class clients);
//  3. client-level DP-FedAvg (McMahan et al. 2018): Poisson client sampling
//     q = 0.1, fixed denominator m = qK = 10, clip C, noise σ = zC/m, for each
//     z of --dp-noise, with ε at δ = 1e-5 from the RDP accountant over the
//     rounds run;
//  4. with --select, client selection over a wireless fleet (FedAvg, C = 0.1,
//     E = --local-epochs, B = 10, --rounds rounds), one run per policy of the
//     comma-separated list: uniform, channel (the m clients with the shortest
//     predicted round this round) or deadline:S (uniform among the clients
//     whose predicted round fits S seconds). The fleet, seeded by --seed:
//     client k at a distance uniform in [10, 200] m, computing at a rate
//     uniform in [20, 200] M MAC/s, 1 nJ/MAC, 23 dBm, Rayleigh block fading
//     redrawn per round, 1 MHz up and 1 MHz down shared equally by a round's
//     clients, no outage threshold (workflow/channel.hpp defaults otherwise).
//     Reports the mean round time and energy, the clients never selected and
//     the total-variation distance between the labels of the selected
//     clients' examples (counted per selection) and those of the population,
//     and the mean distance and compute rate of the selected clients against
//     all clients'.
//
// The default model is a 784-100-10 MLP (79 510 parameters): sections 1 and 3
// take a few CPU minutes, section 2 runs 13 rules attacked and clean for 50
// rounds each (about 1.5 CPU hours on a 2020s x86 core) — pick rules with
// --robust-rules or leave it out with --skip-robust. `--full` uses McMahan et al.'s 2NN (784-200-200-10, 199 210
// parameters), 560 FedAvg rounds, client lr 0.1 × 0.995 per round.
// `--model small|2nn|cnn` picks the model apart from the schedule (the default
// is 2nn with --full, small otherwise); cnn is the LeNet-5-like CNN of
// examples/train_fashion_mnist (conv 12@5×5 pad 2, pool, conv 24@5×5, pool,
// 600-120-84-10; 90 670 parameters).
// `--robust-rules` and `--dp-noise` take comma-separated lists (rule names as
// printed in the table).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <string>
#include <vector>

#include "tinylarge/aggregate/aggregator.hpp"
#include "tinylarge/aggregate/policy.hpp"
#include "tinylarge/aggregate/privacy.hpp"
#include "tinylarge/aggregate/robust.hpp"
#include "tinylarge/data/idx.hpp"
#include "tinylarge/data/partition.hpp"
#include "tinylarge/nn/nn.hpp"
#include "tinylarge/workflow/federated.hpp"
#include "tinylarge/workflow/selection.hpp"
#include "../common/cli.hpp"

namespace wf = tl::workflow;
namespace nn = tl::nn;

namespace {

using mlp_small = tl::sequential<tl::dense<784, 100>, tl::relu, tl::dense<100, 10>>;
using mlp_2nn = tl::sequential<tl::dense<784, 200>, tl::relu, tl::dense<200, 200>, tl::relu, tl::dense<200, 10>>;
// The LeNet-5-like CNN of examples/train_fashion_mnist (91.0% centralised; 90 670 parameters).
using cnn_lenet5 = tl::sequential<tl::input<28, 28, 1>, tl::conv2d<12, 5, 1, 2>, tl::relu, tl::max_pool2d<2>,
                                  tl::conv2d<24, 5>, tl::relu, tl::max_pool2d<2>, tl::flatten, tl::dense<600, 120>,
                                  tl::relu, tl::dense<120, 84>, tl::relu, tl::dense<84, 10>>;
static_assert(cnn_lenet5::param_count == 90'670);

template <class Model, class Aggregation, class Selection = wf::uniform_selection>
struct fleet {
  using model = Model;
  using aggregation = Aggregation;
  using selection = Selection;
  using optimizer = tl::nn::sgd;
  using update = tl::fp32_update;
  using transport = wf::in_memory;
};

struct options {
  bool full = false;
  std::size_t rounds = 0, fedsgd_rounds = 0, robust_rounds = 0;
  double target = 0.0;
  float lr = 0.0f, fedsgd_lr = 0.5f;  // lr 0: 0.05, or 0.1 with --full
  float lr_decay = 0.0f;   // client learning rate × this after every round (FedAvg runs); 0: 1, or 0.995 with --full
  bool fedsgd = true, fedavg = true;
  float server_momentum = 0.0f, server_lr = 1.0f;  // > 0: also a FedAvgM run
  float magnitude = 1.0f;  // λ of the sign flip: attackers send w_t − λΔ
  bool robust = true, dp = true;
  bool robust_clean = true;         // also run every robust rule without attackers
  float robust_lr = 0.05f;
  std::vector<std::string> rules;   // robust rules to run (empty: all)
  std::size_t dp_rounds = 0;
  float dp_clip = 1.0f;
  std::vector<float> dp_noise{0.1f, 0.5f, 1.0f};
  bool wants(const std::string& rule) const {
    return rules.empty() || std::find(rules.begin(), rules.end(), rule) != rules.end();
  }
  std::string json;
  tl::data::partition_spec partition = tl::data::parse_partition_spec("shards:2");
  std::string model;  // small | 2nn | cnn; empty: 2nn with --full, small otherwise
  std::size_t local_epochs = 5;      // E of the FedAvg runs
  std::vector<std::string> select;   // section 4: uniform | channel | deadline:S
  std::uint64_t seed = 1;
};

/// The deadline of a `deadline:S` selection, or -1 when `spec` is not one.
double deadline_of(const std::string& spec) {
  if (spec.rfind("deadline:", 0) != 0) return -1.0;
  char* end = nullptr;
  const double s = std::strtod(spec.c_str() + 9, &end);
  return spec.size() > 9 && *end == '\0' && std::isfinite(s) && s > 0.0 ? s : -1.0;
}

/// Section 4's wireless fleet (see the file comment), seeded.
wf::wireless_fleet make_fleet(std::size_t clients, std::uint64_t seed) {
  wf::wireless_fleet air;
  air.access_point.uplink_hz = air.access_point.downlink_hz = 1e6;
  tl::rng r(seed, 0xf1ee'7001ULL);
  for (std::size_t k = 0; k < clients; ++k) {
    wf::device_profile d;
    d.distance_m = 10.0 + 190.0 * tl::data::uniform_open01(r);
    d.macs_per_s = 20e6 + 180e6 * tl::data::uniform_open01(r);
    d.joules_per_mac = 1e-9;
    d.tx_power_dbm = 23.0;
    d.channel = wf::fading::rayleigh();
    air.devices.push_back(d);
  }
  return air;
}

struct run_result {
  std::string name;
  std::size_t rounds = 0;
  double final_accuracy = 0.0;
  double last5_accuracy = 0.0;  // mean test accuracy of the last 5 evaluated rounds
  double best_accuracy = 0.0;
  long rounds_to_target = -1;   // -1: not reached
  std::size_t rejected = 0, failed_rounds = 0;
  unsigned long long bytes_up = 0, bytes_down = 0, client_macs = 0;
  double seconds_model = 0.0, wall = 0.0;
  double epsilon = -1.0;
  float noise_multiplier = 0.0f;
  double unclipped_fraction = -1.0;  // DP runs: share of updates with norm <= C
  double mean_update_norm = 0.0;     // DP runs: mean ||w_i - w_t|| before clipping
  bool attacked = false;
  std::vector<double> curve;
  // Wireless fleet runs (section 4): per round means, and the selection's bias.
  std::string selection;
  double mean_round_seconds = 0.0, mean_round_joules = 0.0, mean_selected = 0.0;
  std::size_t never_selected = 0;
  double label_tv = 0.0;  // TV distance: labels of the selected clients' examples vs all clients' examples
  // Mean distance (m) and compute rate (M MAC/s) of the selected clients (per selection) and of all clients.
  double selected_distance = 0.0, population_distance = 0.0, selected_mmacs = 0.0, population_mmacs = 0.0;
  std::vector<double> seconds_curve;  // each round's estimated seconds
};

template <class Fleet>
run_result run(const char* name, const wf::federated_options& fo, const typename Fleet::aggregation& policy, float lr,
               const std::vector<nn::labelled_view<std::uint8_t>>& clients, const nn::labelled_view<std::uint8_t>& test,
               double target, std::uint64_t seed,
               const typename wf::federated_averaging<Fleet>::selection& selection = {}) {
  wf::federated_averaging<Fleet> fl(fo, policy, nn::sgd{.learning_rate = lr}, selection);
  fl.initialize(seed);
  const auto t0 = std::chrono::steady_clock::now();
  run_result r;
  r.name = name;
  std::size_t printed = 0;
  std::size_t unclipped = 0, updates = 0;
  double norm_sum = 0.0;
  for (std::size_t t = 0; t < fo.rounds; ++t) {
    const auto& rec = fl.run_round(clients, test, t + 1 == fo.rounds);
    if constexpr (requires { fl.server().state().unclipped; }) {
      if (fl.log().back().aggregation.updated()) {
        unclipped += fl.server().state().unclipped;
        updates += fl.server().state().norms.size();
        for (const double nrm : fl.server().state().norms) norm_sum += nrm;
      }
    }
    if (!std::isnan(rec.test_accuracy)) {
      r.curve.push_back(rec.test_accuracy);
      if (rec.round % 10 == 0 || t + 1 == fo.rounds) {
        std::printf("    %-14s round %4zu  test acc %.2f%%  loss %.3f\n", name, rec.round, 100 * rec.test_accuracy,
                    rec.train_loss);
        std::fflush(stdout);
        ++printed;
      }
    }
  }
  r.wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const wf::report& rep = fl.result();
  r.rounds = rep.rounds.size();
  r.final_accuracy = rep.final_accuracy();
  const std::size_t k = std::min<std::size_t>(5, r.curve.size());
  for (std::size_t i = r.curve.size() - k; i < r.curve.size(); ++i) r.last5_accuracy += r.curve[i] / static_cast<double>(k);
  for (const double a : r.curve) r.best_accuracy = std::max(r.best_accuracy, a);
  if (target > 0.0)
    if (const auto rt = fl.rounds_to_target(target)) r.rounds_to_target = static_cast<long>(*rt);
  for (const auto& lg : fl.log()) {
    r.rejected += lg.aggregation.rejected.size();
    r.failed_rounds += lg.aggregation.updated() ? 0 : 1;
  }
  r.bytes_up = rep.total([](const wf::role_cost& p) { return p.net.bytes_up; }, "client");
  r.bytes_down = rep.total([](const wf::role_cost& p) { return p.net.bytes_down; }, "client");
  r.client_macs = rep.total([](const wf::role_cost& p) { return p.macs; }, "client");
  r.seconds_model = rep.total_seconds();
  if (fo.wireless.enabled()) {  // the selection's cost and bias
    r.selection = Fleet::selection::name();
    std::vector<std::size_t> times(clients.size(), 0);
    std::vector<double> population(10, 0.0), chosen(10, 0.0);
    for (const auto& c : clients)
      for (std::size_t i = 0; i < c.count; ++i) population[c.y[i]] += 1.0;
    for (const auto& lg : fl.log())
      for (const auto c : lg.selected) {
        ++times[c];
        for (std::size_t i = 0; i < clients[c].count; ++i) chosen[clients[c].y[i]] += 1.0;
      }
    double np = 0.0, nc = 0.0;
    for (std::size_t l = 0; l < 10; ++l) np += population[l], nc += chosen[l];
    for (std::size_t l = 0; l < 10; ++l) r.label_tv += 0.5 * std::fabs(population[l] / np - (nc > 0 ? chosen[l] / nc : 0.0));
    r.never_selected = static_cast<std::size_t>(std::count(times.begin(), times.end(), 0u));
    for (const auto& rec : rep.rounds) {
      r.seconds_curve.push_back(rec.estimated_seconds);
      r.mean_round_seconds += rec.estimated_seconds / static_cast<double>(r.rounds);
      r.mean_round_joules += rec.energy_joules / static_cast<double>(r.rounds);
    }
    for (const auto& lg : fl.log()) r.mean_selected += static_cast<double>(lg.selected.size()) / static_cast<double>(r.rounds);
    const auto& devices = fo.wireless.devices;
    double asked = 0.0;
    for (std::size_t c = 0; c < devices.size(); ++c) {
      const double n = static_cast<double>(times[c]), all = static_cast<double>(devices.size());
      r.population_distance += devices[c].distance_m / all;
      r.population_mmacs += devices[c].macs_per_s / 1e6 / all;
      r.selected_distance += n * devices[c].distance_m;
      r.selected_mmacs += n * devices[c].macs_per_s / 1e6;
      asked += n;
    }
    if (asked > 0) r.selected_distance /= asked, r.selected_mmacs /= asked;
  }
  if (updates > 0) {
    r.unclipped_fraction = static_cast<double>(unclipped) / static_cast<double>(updates);
    r.mean_update_norm = norm_sum / static_cast<double>(updates);
  }
  (void)printed;
  return r;
}

void print_json_run(std::FILE* f, const run_result& r, bool last) {
  std::fprintf(f,
               "    {\"name\": \"%s\", \"rounds\": %zu, \"final_accuracy\": %.4f, \"last5_accuracy\": %.4f, "
               "\"best_accuracy\": %.4f, \"rounds_to_target\": %ld, \"rejected_updates\": %zu, \"failed_rounds\": %zu, "
               "\"client_bytes_up\": %llu, \"client_bytes_down\": %llu, \"client_macs\": %llu, "
               "\"estimated_seconds\": %.1f, \"wall_seconds\": %.1f",
               r.name.c_str(), r.rounds, r.final_accuracy, r.last5_accuracy, r.best_accuracy, r.rounds_to_target,
               r.rejected, r.failed_rounds, r.bytes_up, r.bytes_down, r.client_macs, r.seconds_model, r.wall);
  std::fprintf(f, ", \"attacked\": %s", r.attacked ? "true" : "false");
  if (!r.selection.empty())
    std::fprintf(f,
                 ", \"selection\": \"%s\", \"mean_round_seconds\": %.4f, \"mean_round_joules\": %.4f, "
                 "\"mean_selected\": %.2f, \"never_selected\": %zu, \"selected_label_tv\": %.4f, "
                 "\"selected_mean_distance_m\": %.1f, \"population_mean_distance_m\": %.1f, "
                 "\"selected_mean_mmacs_per_s\": %.1f, \"population_mean_mmacs_per_s\": %.1f",
                 r.selection.c_str(), r.mean_round_seconds, r.mean_round_joules, r.mean_selected, r.never_selected,
                 r.label_tv, r.selected_distance, r.population_distance, r.selected_mmacs, r.population_mmacs);
  if (r.epsilon >= 0.0) {
    if (std::isfinite(r.epsilon)) std::fprintf(f, ", \"epsilon\": %.4f, \"delta\": 1e-5", r.epsilon);
    else std::fprintf(f, ", \"epsilon\": null");
    std::fprintf(f, ", \"noise_multiplier\": %.3f", static_cast<double>(r.noise_multiplier));
  }
  if (r.unclipped_fraction >= 0.0)
    std::fprintf(f, ", \"unclipped_fraction\": %.4f, \"mean_update_norm\": %.4f", r.unclipped_fraction,
                 r.mean_update_norm);
  if (!r.seconds_curve.empty()) {
    std::fprintf(f, ", \"seconds_per_round\": [");
    for (std::size_t i = 0; i < r.seconds_curve.size(); ++i) std::fprintf(f, "%s%.4f", i ? ", " : "", r.seconds_curve[i]);
    std::fprintf(f, "]");
  }
  std::fprintf(f, ", \"accuracy_per_round\": [");
  for (std::size_t i = 0; i < r.curve.size(); ++i) std::fprintf(f, "%s%.4f", i ? ", " : "", r.curve[i]);
  std::fprintf(f, "]}%s\n", last ? "" : ",");
}

template <class Model>
int experiment(const options& opt, const std::vector<nn::labelled_view<std::uint8_t>>& clients,
               const nn::labelled_view<std::uint8_t>& test) {
  std::printf("model: %zu parameters, %zu MACs per sample forward\n", Model::param_count, Model::macs);
  std::vector<run_result> speed, robust, privacy, selection;

  // 1. FedSGD vs FedAvg, rounds to target.
  wf::federated_options sgd_o = wf::federated_options::fedsgd(opt.fedsgd_rounds, 0.1, opt.seed);
  wf::federated_options avg_o{.rounds = opt.rounds, .client_fraction = 0.1, .local_epochs = opt.local_epochs, .batch_size = 10,
                              .seed = opt.seed, .client_lr_decay = opt.lr_decay};
  std::printf("\n== 1. FedSGD (E = 1, B = inf, lr %.2f) vs FedAvg (E = %zu, B = 10, lr %.3f), C = 0.1, target %.1f%%\n",
              static_cast<double>(opt.fedsgd_lr), opt.local_epochs, static_cast<double>(opt.lr), 100 * opt.target);
  if (opt.fedsgd) speed.push_back(run<fleet<Model, tl::fedavg>>("FedSGD", sgd_o, {}, opt.fedsgd_lr, clients, test, opt.target, opt.seed));
  if (opt.fedavg) speed.push_back(run<fleet<Model, tl::fedavg>>("FedAvg", avg_o, {}, opt.lr, clients, test, opt.target, opt.seed));
  // FedAvgM (Hsu et al. 2019): the same clients, server momentum beta with server lr eta; with
  // eta = 1 - beta the steady-state step equals FedAvg's, averaged over ~1/(1 - beta) rounds.
  if (opt.server_momentum > 0.0f)
    speed.push_back(run<fleet<Model, tl::fedavgm>>(
        "FedAvgM", avg_o, tl::fedavgm{.server_learning_rate = opt.server_lr, .server_momentum = opt.server_momentum},
        opt.lr, clients, test, opt.target, opt.seed));
  std::printf("\n  %-8s %8s %16s %12s %14s\n", "", "rounds", "rounds-to-target", "final acc", "best acc");
  for (const auto& r : speed) {
    char rt[32];
    if (r.rounds_to_target >= 0) std::snprintf(rt, sizeof rt, "%ld", r.rounds_to_target);
    else std::snprintf(rt, sizeof rt, "> %zu", r.rounds);
    std::printf("  %-8s %8zu %16s %11.2f%% %13.2f%%\n", r.name.c_str(), r.rounds, rt, 100 * r.final_accuracy,
                100 * r.best_accuracy);
  }
  if (!opt.fedsgd || !opt.fedavg) {
  } else if (speed[0].rounds_to_target > 0 && speed[1].rounds_to_target > 0)
    std::printf("  FedAvg needs %.1fx fewer rounds than FedSGD\n",
                static_cast<double>(speed[0].rounds_to_target) / static_cast<double>(speed[1].rounds_to_target));
  else if (speed[1].rounds_to_target > 0)
    std::printf("  FedAvg needs >= %.1fx fewer rounds than FedSGD (FedSGD did not reach the target)\n",
                static_cast<double>(speed[0].rounds) / static_cast<double>(speed[1].rounds_to_target));

  // 2. Robustness: 20% sign-flip attackers per round, C = 0.2 (20 clients, f = 4).
  if (opt.robust) {
    std::printf("\n== 2. Robustness: 20%% sign-flip attackers (w_t - %.0f x delta) per round (C = 0.2: 20 clients, f = 4), "
                "%zu rounds, lr %.3f x %.4f per round\n",
                static_cast<double>(opt.magnitude), opt.robust_rounds, static_cast<double>(opt.robust_lr),
                static_cast<double>(opt.lr_decay));
    wf::federated_options clean{.rounds = opt.robust_rounds, .client_fraction = 0.2, .local_epochs = 5,
                                .batch_size = 10, .seed = opt.seed, .client_lr_decay = opt.lr_decay};
    wf::federated_options attacked = clean;
    attacked.attack = wf::byzantine{.kind = wf::attack_kind::sign_flip, .fraction = 0.2, .magnitude = opt.magnitude};
    const std::size_t f = 4, n = 20;
    const float lr = opt.robust_lr;
    // Each rule attacked and (with --robust-clean) also without attackers: the rule's own cost on
    // 2-class clients, apart from the attack's.
    // Rows with by_default = false run only when named in --robust-rules.
    auto both = [&]<class Policy>(const char* name, const Policy& policy, bool by_default = true) {
      if (opt.rules.empty() ? !by_default : !opt.wants(name)) return;
      robust.push_back(run<fleet<Model, Policy>>(name, attacked, policy, lr, clients, test, 0, opt.seed));
      robust.back().attacked = true;
      if (opt.robust_clean || std::string(name) == "FedAvg") {
        robust.push_back(run<fleet<Model, Policy>>(name, clean, policy, lr, clients, test, 0, opt.seed));
        robust.back().attacked = false;
      }
    };
    both("FedAvg", tl::fedavg{});
    both("median", tl::coordinate_median{});
    both("trimmed mean", tl::trimmed_mean{.beta = 0.2});
    both("Krum", tl::krum{.num_malicious = f});
    both("Multi-Krum", tl::krum{.num_malicious = f, .num_to_keep = n - f});
    both("Bulyan", tl::bulyan{.num_malicious = f});
    // Bucketing (Karimireddy et al. 2022), s = 2: 10 bucket means, of which at most 4 hold an attacker.
    both("bucketed median", tl::bucketing<tl::coordinate_median>{.bucket_size = 2});
    both("bucketed trimmed mean", tl::bucketing<tl::trimmed_mean>{.inner = {.beta = 0.2}, .bucket_size = 2});
    both("bucketed Multi-Krum", tl::bucketing<tl::krum>{.inner = {.num_malicious = 3, .num_to_keep = 6}, .bucket_size = 2});
    // Nearest-neighbor mixing (Allouah et al. 2023): each update -> mean of its n - f = 16 nearest, then the rule.
    both("NNM median", tl::nearest_neighbor_mixing<tl::coordinate_median>{.num_malicious = f});
    both("NNM trimmed mean", tl::nearest_neighbor_mixing<tl::trimmed_mean>{.inner = {.beta = 0.2}, .num_malicious = f});
    both("NNM Krum", tl::nearest_neighbor_mixing<tl::krum>{.inner = {.num_malicious = f}, .num_malicious = f});
    both("NNM Bulyan", tl::nearest_neighbor_mixing<tl::bulyan>{.inner = {.num_malicious = f}, .num_malicious = f});
    // The two variations tried (docs/federated.md): NNM after bucketing (s = 2: 10 bucket means, at most 4 of
    // them contaminated, each mixed with its 6 nearest), and a mixing f = 2 below the real 4 (18 neighbours).
    both("bucketed NNM median",
         tl::bucketing<tl::nearest_neighbor_mixing<tl::coordinate_median>>{.inner = {.num_malicious = f}, .bucket_size = 2},
         false);
    both("bucketed NNM trimmed mean",
         tl::bucketing<tl::nearest_neighbor_mixing<tl::trimmed_mean>>{.inner = {.inner = {.beta = 0.2}, .num_malicious = f},
                                                                      .bucket_size = 2},
         false);
    both("NNM f_mix=2 median", tl::nearest_neighbor_mixing<tl::coordinate_median>{.num_malicious = 2}, false);
    both("NNM f_mix=2 Krum", tl::nearest_neighbor_mixing<tl::krum>{.inner = {.num_malicious = f}, .num_malicious = 2}, false);
    double ref = -1.0;
    for (const auto& r : robust)
      if (r.name == "FedAvg" && !r.attacked) ref = r.last5_accuracy;
    std::printf("\n  %-26s %8s %10s %12s %16s %14s\n", "rule", "attacked", "final acc", "last-5 mean", "vs clean FedAvg",
                "vs own clean");
    for (const auto& r : robust) {
      char vs[32] = "(no clean FedAvg)", own[32] = "";
      if (ref >= 0) std::snprintf(vs, sizeof vs, "%+.2f pp", 100 * (r.last5_accuracy - ref));
      for (const auto& c : robust)  // the cost of the attack: attacked − the same rule's clean run
        if (r.attacked && !c.attacked && c.name == r.name)
          std::snprintf(own, sizeof own, "%+.2f pp", 100 * (r.last5_accuracy - c.last5_accuracy));
      std::printf("  %-26s %8s %9.2f%% %11.2f%% %16s %14s\n", r.name.c_str(), r.attacked ? "yes" : "no",
                  100 * r.final_accuracy, 100 * r.last5_accuracy, vs, own);
    }
  }

  // 3. Client-level DP-FedAvg (McMahan et al. 2018): Poisson sampling with q = 0.1, fixed denominator
  //    m = qK = 10, fixed clipping, noise sigma = z C / m on the mean; epsilon from the RDP accountant.
  if (opt.dp) {
    wf::federated_options o = avg_o;
    o.rounds = opt.dp_rounds;
    o.poisson_sampling = true;
    const double q = o.client_fraction, delta = 1e-5;
    using dp = tl::dp_fixed_clipping<tl::fedavg>;
    std::printf("\n== 3. DP-FedAvg (client-level): Poisson sampling q = %.2f, m = qK = 10, clip C = %.2f, %zu rounds, "
                "delta = %.0e\n", q, static_cast<double>(opt.dp_clip), opt.dp_rounds, delta);
    for (const float z : opt.dp_noise) {
      char name[64];
      std::snprintf(name, sizeof name, "DP-FedAvg z=%.2f", static_cast<double>(z));
      privacy.push_back(run<fleet<Model, dp>>(
          name, o, dp{.noise_multiplier = z, .clipping_norm = opt.dp_clip, .num_sampled_clients = 10}, opt.lr, clients,
          test, 0, opt.seed));
      run_result& r = privacy.back();
      r.noise_multiplier = z;
      if (z > 0.0f) {
        tl::rdp_accountant acc;
        acc.compose(z, q, r.rounds);  // every round is one release, also one that failed for lack of clients
        r.epsilon = acc.epsilon(delta);
      } else {
        r.epsilon = std::numeric_limits<double>::infinity();
      }
    }
    std::printf("\n  %-18s %8s %14s %12s %14s %12s %12s\n", "run", "z", "eps (d=1e-5)", "final acc", "last-5 mean",
                "unclipped", "mean |delta|");
    for (const auto& r : privacy)
      std::printf("  %-18s %8.2f %14.3g %11.2f%% %13.2f%% %11.0f%% %12.2f\n", r.name.c_str(),
                  static_cast<double>(r.noise_multiplier), r.epsilon, 100 * r.final_accuracy, 100 * r.last5_accuracy,
                  100 * r.unclipped_fraction, r.mean_update_norm);
  }

  // 4. Client selection over a wireless fleet (see the file comment).
  if (!opt.select.empty()) {
    wf::federated_options o = avg_o;
    o.wireless = make_fleet(clients.size(), opt.seed);
    std::printf("\n== 4. Client selection over a wireless fleet: %zu clients at 10-200 m, 20-200 M MAC/s, 1 nJ/MAC, "
                "23 dBm, Rayleigh, 1 MHz up / down; C = 0.1, E = %zu, B = 10, %zu rounds, lr %.3f\n",
                clients.size(), opt.local_epochs, opt.rounds, static_cast<double>(opt.lr));
    for (const std::string& spec : opt.select) {
      if (spec == "uniform")
        selection.push_back(run<fleet<Model, tl::fedavg>>("uniform", o, {}, opt.lr, clients, test, 0, opt.seed));
      else if (spec == "channel")
        selection.push_back(run<fleet<Model, tl::fedavg, wf::channel_aware_selection>>("channel", o, {}, opt.lr,
                                                                                        clients, test, 0, opt.seed));
      else
        selection.push_back(run<fleet<Model, tl::fedavg, wf::deadline_aware_selection>>(
            spec.c_str(), o, {}, opt.lr, clients, test, 0, opt.seed,
            wf::deadline_aware_selection{.deadline_s = deadline_of(spec)}));
    }
    std::printf("\n  %-14s %12s %12s %10s %10s %15s %10s %16s %16s\n", "selection", "round time", "energy/round",
                "clients", "final acc", "never selected", "label TV", "distance sel/all", "MMAC/s sel/all");
    for (const auto& r : selection)
      std::printf("  %-14s %10.2f s %10.2f J %10.2f %9.2f%% %15zu %10.4f %8.0f / %3.0f m %10.0f / %3.0f\n",
                  r.name.c_str(), r.mean_round_seconds, r.mean_round_joules, r.mean_selected, 100 * r.final_accuracy,
                  r.never_selected, r.label_tv, r.selected_distance, r.population_distance, r.selected_mmacs,
                  r.population_mmacs);
  }

  if (!opt.json.empty()) {
    std::FILE* f = std::fopen(opt.json.c_str(), "w");
    if (f == nullptr) {
      std::fprintf(stderr, "cannot write %s\n", opt.json.c_str());
      return 1;
    }
    std::fprintf(f,
                 "{\n  \"setting\": {\"clients\": 100, \"partition\": \"%s\", \"C\": 0.1, "
                 "\"E\": %zu, \"B\": 10, \"parameters\": %zu, \"target\": %.4f, \"lr\": %.4f, \"lr_decay\": %.4f, \"fedsgd_lr\": %.4f, "
                 "\"seed\": %llu, \"full\": %s, \"model\": \"%s\"},\n",
                 opt.partition.text().c_str(), opt.local_epochs, Model::param_count, opt.target, static_cast<double>(opt.lr), static_cast<double>(opt.lr_decay), static_cast<double>(opt.fedsgd_lr),
                 static_cast<unsigned long long>(opt.seed), opt.full ? "true" : "false", opt.model.c_str());
    std::fprintf(f, "  \"rounds_to_target\": [\n");
    for (std::size_t i = 0; i < speed.size(); ++i) print_json_run(f, speed[i], i + 1 == speed.size());
    std::fprintf(f, "  ],\n  \"robustness\": {\"attack\": \"sign_flip\", \"magnitude\": %.2f, \"fraction\": 0.2, \"C\": 0.2, \"runs\": [\n",
                 static_cast<double>(opt.magnitude));
    for (std::size_t i = 0; i < robust.size(); ++i) print_json_run(f, robust[i], i + 1 == robust.size());
    std::fprintf(f, "  ]},\n  \"dp\": [\n");
    for (std::size_t i = 0; i < privacy.size(); ++i) print_json_run(f, privacy[i], i + 1 == privacy.size());
    std::fprintf(f, "  ],\n  \"selection\": {\"fleet\": {\"distance_m\": [10, 200], \"macs_per_s\": [20e6, 200e6], "
                    "\"joules_per_mac\": 1e-9, \"tx_power_dbm\": 23, \"fading\": \"rayleigh\", \"uplink_hz\": 1e6, "
                    "\"downlink_hz\": 1e6, \"min_rate_bps\": 0}, \"runs\": [\n");
    for (std::size_t i = 0; i < selection.size(); ++i) print_json_run(f, selection[i], i + 1 == selection.size());
    std::fprintf(f, "  ]}\n}\n");
    std::fclose(f);
    std::printf("\nwrote %s\n", opt.json.c_str());
  }
  return 0;
}

std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (start <= s.size()) {
    const std::size_t comma = s.find(',', start);
    const std::size_t end = comma == std::string::npos ? s.size() : comma;
    if (end > start) out.push_back(s.substr(start, end - start));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  options opt;
  examples::cli args(argc, argv,
                     "[--full] [--rounds N] [--fedsgd-rounds N] [--target ACC] [--lr X] [--lr-decay X] "
                     "[--fedsgd-lr X] [--skip-fedsgd] [--skip-fedavg] [--server-momentum B --server-lr E] "
                     "[--robust-rounds N] [--robust-lr X] [--robust-rules LIST] [--robust-attacked-only] "
                     "[--flip-magnitude L] [--dp-rounds N] [--dp-clip C] [--dp-noise LIST] [--skip-robust] "
                     "[--skip-dp] [--partition iid|shards:K|dirichlet:A|quantity:B] [--model small|2nn|cnn] "
                     "[--local-epochs E] [--select uniform|channel|deadline:S[,...]] [--json FILE] [--seed S]");
  while (args.next()) {
    if (args.is("--full")) opt.full = true;
    else if (args.is("--rounds")) opt.rounds = args.count();
    else if (args.is("--fedsgd-rounds")) opt.fedsgd_rounds = args.count();
    else if (args.is("--robust-rounds")) opt.robust_rounds = args.count();
    else if (args.is("--target")) opt.target = args.real();
    else if (args.is("--lr")) opt.lr = args.real<float>();
    else if (args.is("--fedsgd-lr")) opt.fedsgd_lr = args.real<float>();
    else if (args.is("--lr-decay")) opt.lr_decay = args.real<float>();
    else if (args.is("--skip-fedsgd")) opt.fedsgd = false;
    else if (args.is("--skip-fedavg")) opt.fedavg = false;
    else if (args.is("--server-momentum")) opt.server_momentum = args.real<float>();
    else if (args.is("--server-lr")) opt.server_lr = args.real<float>();
    else if (args.is("--skip-robust")) opt.robust = false;
    else if (args.is("--robust-attacked-only")) opt.robust_clean = false;
    else if (args.is("--robust-lr")) opt.robust_lr = args.real<float>();
    else if (args.is("--robust-rules")) opt.rules = split_list(args.text());
    else if (args.is("--dp-rounds")) opt.dp_rounds = args.count();
    else if (args.is("--dp-clip")) opt.dp_clip = args.real<float>();
    else if (args.is("--dp-noise")) opt.dp_noise = args.reals<float>();
    else if (args.is("--skip-dp")) opt.dp = false;
    else if (args.is("--partition")) {
      try {
        opt.partition = tl::data::parse_partition_spec(args.text());
      } catch (const tl::invalid_argument& e) {
        args.error(e.what());
      }
    }
    else if (args.is("--flip-magnitude")) opt.magnitude = args.real<float>();
    else if (args.is("--json")) opt.json = args.text();
    else if (args.is("--seed")) opt.seed = args.count<std::uint64_t>();
    else if (args.is("--model")) opt.model = args.text();
    else if (args.is("--local-epochs")) {
      opt.local_epochs = args.count();
      if (opt.local_epochs == 0) args.error("E must be at least 1");
    } else if (args.is("--select")) {
      opt.select = split_list(args.text());
      for (const std::string& s : opt.select)
        if (s != "uniform" && s != "channel" && deadline_of(s) < 0.0)
          args.error("each entry must be uniform, channel or deadline:S with S > 0 seconds");
      if (opt.select.empty()) args.error("needs uniform, channel or deadline:S");
    }
    else args.unknown();
  }
  if (opt.rounds == 0) opt.rounds = opt.full ? 560 : 30;
  if (opt.lr == 0.0f) opt.lr = opt.full ? 0.1f : 0.05f;
  if (opt.lr_decay == 0.0f) opt.lr_decay = opt.full ? 0.995f : 1.0f;
  if (opt.fedsgd_rounds == 0) opt.fedsgd_rounds = opt.full ? 1000 : 300;
  if (opt.robust_rounds == 0) opt.robust_rounds = opt.full ? 100 : 50;
  if (opt.dp_rounds == 0) opt.dp_rounds = opt.full ? 100 : 50;
  if (opt.target == 0.0) opt.target = opt.full ? 0.85 : 0.70;
  if (opt.model.empty()) opt.model = opt.full ? "2nn" : "small";
  if (opt.model != "small" && opt.model != "2nn" && opt.model != "cnn") {
    std::fprintf(stderr, "--model must be small, 2nn or cnn\n");
    return 2;
  }
  try {
    const auto train = tl::data::load_fashion_mnist(tl::data::split::train);
    const auto test_set = tl::data::load_fashion_mnist(tl::data::split::test);
    tl::rng part_rng(opt.seed, 0x5a4d'0001ULL);
    // Default, McMahan et al.: sort by label, 200 shards of 300, 2 shards per client.
    const tl::data::partition_t parts = opt.partition(train.labels, 100, part_rng);
    const wf::federated_dataset fed = wf::make_federated_dataset(train, parts);
    const nn::labelled_view<std::uint8_t> test{test_set.images.data(), test_set.labels.data(), test_set.count, 784};
    std::size_t smallest = train.count, largest = 0;
    for (const auto& p : parts) {
      smallest = std::min(smallest, p.size());
      largest = std::max(largest, p.size());
    }
    std::printf("Fashion-MNIST: %zu clients (%s: %s; %zu to %zu images each), %zu test images\n", fed.clients.size(),
                opt.partition.text().c_str(), opt.partition.description().c_str(), smallest, largest, test.count);
    if (opt.model == "cnn") return experiment<cnn_lenet5>(opt, fed.clients, test);
    return opt.model == "2nn" ? experiment<mlp_2nn>(opt, fed.clients, test) : experiment<mlp_small>(opt, fed.clients, test);
  } catch (const tl::error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
