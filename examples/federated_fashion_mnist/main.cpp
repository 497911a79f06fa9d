// Federated learning on Fashion-MNIST in McMahan et al.'s pathological non-IID
// setting: 100 clients, 200 label-sorted shards of 300 images, 2 shards per
// client, C = 0.1, E = 5, B = 10.
//
//   federated_fashion_mnist [--full] [--rounds N] [--fedsgd-rounds N] [--robust-rounds N]
//                           [--target ACC] [--lr X] [--fedsgd-lr X] [--skip-robust] [--skip-dp]
//                           [--partition shards|iid] [--flip-magnitude L] [--json FILE] [--seed S]
//
// Prints
//  1. rounds to reach the target test accuracy for FedSGD (E = 1, B = ∞) and
//     FedAvg (E = 5, B = 10) — McMahan et al. 2017, Table 2;
//  2. a robustness table: 20% of each round's clients send sign-flipped
//     updates (w_t − Δ); FedAvg, coordinate median, trimmed mean (β = 0.2),
//     Krum, Multi-Krum and Bulyan (f = 20% of the clients per round) against
//     the clean FedAvg run. C = 0.2 here (20 clients per round, 4 attackers):
//     Bulyan needs n ≥ 4f + 3;
//  3. a DP row: DP-FedAvg with fixed clipping (McMahan et al. 2018), the ε of
//     the RDP accountant at δ = 1e-5 for the rounds run, and the accuracy.
//
// The default is sized to finish in a few minutes on 2 cores: a 784-100-10
// MLP (79 510 parameters). `--full` uses McMahan et al.'s 2NN
// (784-200-200-10, 199 210 parameters) and more rounds.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
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

namespace wf = tl::workflow;
namespace nn = tl::nn;

namespace {

using mlp_small = tl::sequential<tl::dense<784, 100>, tl::relu, tl::dense<100, 10>>;
using mlp_2nn = tl::sequential<tl::dense<784, 200>, tl::relu, tl::dense<200, 200>, tl::relu, tl::dense<200, 10>>;

template <class Model, class Aggregation>
struct fleet {
  using model = Model;
  using aggregation = Aggregation;
  using optimizer = tl::nn::sgd;
  using update = tl::fp32_update;
  using transport = wf::in_memory;
};

struct options {
  bool full = false;
  std::size_t rounds = 0, fedsgd_rounds = 0, robust_rounds = 0;
  double target = 0.0;
  float lr = 0.05f, fedsgd_lr = 0.5f;
  float magnitude = 1.0f;  // λ of the sign flip: attackers send w_t − λΔ
  bool robust = true, dp = true;
  std::string json, partition = "shards";
  std::uint64_t seed = 1;
};

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
  std::vector<double> curve;
};

template <class Fleet>
run_result run(const char* name, const wf::federated_options& fo, const typename Fleet::aggregation& policy, float lr,
               const std::vector<nn::labelled_view<std::uint8_t>>& clients, const nn::labelled_view<std::uint8_t>& test,
               double target, std::uint64_t seed) {
  wf::federated_averaging<Fleet> fl(fo, policy, nn::sgd{.learning_rate = lr});
  fl.initialize(seed);
  const auto t0 = std::chrono::steady_clock::now();
  run_result r;
  r.name = name;
  std::size_t printed = 0;
  for (std::size_t t = 0; t < fo.rounds; ++t) {
    const auto& rec = fl.run_round(clients, test, t + 1 == fo.rounds);
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
  if (r.epsilon >= 0.0) std::fprintf(f, ", \"epsilon\": %.3f", r.epsilon);
  std::fprintf(f, ", \"accuracy_per_round\": [");
  for (std::size_t i = 0; i < r.curve.size(); ++i) std::fprintf(f, "%s%.4f", i ? ", " : "", r.curve[i]);
  std::fprintf(f, "]}%s\n", last ? "" : ",");
}

template <class Model>
int experiment(const options& opt, const std::vector<nn::labelled_view<std::uint8_t>>& clients,
               const nn::labelled_view<std::uint8_t>& test) {
  std::printf("model: %zu parameters, %zu MACs per sample forward\n", Model::param_count, Model::macs);
  std::vector<run_result> speed, robust, privacy;

  // 1. FedSGD vs FedAvg, rounds to target.
  wf::federated_options sgd_o = wf::federated_options::fedsgd(opt.fedsgd_rounds, 0.1, opt.seed);
  wf::federated_options avg_o{.rounds = opt.rounds, .client_fraction = 0.1, .local_epochs = 5, .batch_size = 10,
                              .seed = opt.seed};
  std::printf("\n== 1. FedSGD (E = 1, B = inf, lr %.2f) vs FedAvg (E = 5, B = 10, lr %.3f), C = 0.1, target %.1f%%\n",
              static_cast<double>(opt.fedsgd_lr), static_cast<double>(opt.lr), 100 * opt.target);
  speed.push_back(run<fleet<Model, tl::fedavg>>("FedSGD", sgd_o, {}, opt.fedsgd_lr, clients, test, opt.target, opt.seed));
  speed.push_back(run<fleet<Model, tl::fedavg>>("FedAvg", avg_o, {}, opt.lr, clients, test, opt.target, opt.seed));
  std::printf("\n  %-8s %8s %16s %12s %14s\n", "", "rounds", "rounds-to-target", "final acc", "best acc");
  for (const auto& r : speed) {
    char rt[32];
    if (r.rounds_to_target >= 0) std::snprintf(rt, sizeof rt, "%ld", r.rounds_to_target);
    else std::snprintf(rt, sizeof rt, "> %zu", r.rounds);
    std::printf("  %-8s %8zu %16s %11.2f%% %13.2f%%\n", r.name.c_str(), r.rounds, rt, 100 * r.final_accuracy,
                100 * r.best_accuracy);
  }
  if (speed[0].rounds_to_target > 0 && speed[1].rounds_to_target > 0)
    std::printf("  FedAvg needs %.1fx fewer rounds than FedSGD\n",
                static_cast<double>(speed[0].rounds_to_target) / static_cast<double>(speed[1].rounds_to_target));
  else if (speed[1].rounds_to_target > 0)
    std::printf("  FedAvg needs >= %.1fx fewer rounds than FedSGD (FedSGD did not reach the target)\n",
                static_cast<double>(speed[0].rounds) / static_cast<double>(speed[1].rounds_to_target));

  // 2. Robustness: 20% sign-flip attackers per round, C = 0.2 (20 clients, f = 4).
  if (opt.robust) {
    std::printf("\n== 2. Robustness: 20%% sign-flip attackers (w_t - %.0f x delta) per round (C = 0.2: 20 clients, f = 4), "
                "%zu rounds\n", static_cast<double>(opt.magnitude), opt.robust_rounds);
    wf::federated_options clean{.rounds = opt.robust_rounds, .client_fraction = 0.2, .local_epochs = 5,
                                .batch_size = 10, .seed = opt.seed};
    wf::federated_options attacked = clean;
    attacked.attack = wf::byzantine{.kind = wf::attack_kind::sign_flip, .fraction = 0.2, .magnitude = opt.magnitude};
    const std::size_t f = 4;
    robust.push_back(run<fleet<Model, tl::fedavg>>("clean FedAvg", clean, {}, opt.lr, clients, test, 0, opt.seed));
    robust.push_back(run<fleet<Model, tl::fedavg>>("FedAvg", attacked, {}, opt.lr, clients, test, 0, opt.seed));
    robust.push_back(run<fleet<Model, tl::coordinate_median>>("median", attacked, {}, opt.lr, clients, test, 0, opt.seed));
    robust.push_back(run<fleet<Model, tl::trimmed_mean>>("trimmed mean", attacked, tl::trimmed_mean{.beta = 0.2}, opt.lr,
                                                         clients, test, 0, opt.seed));
    robust.push_back(run<fleet<Model, tl::krum>>("Krum", attacked, tl::krum{.num_malicious = f}, opt.lr, clients, test,
                                                 0, opt.seed));
    robust.push_back(run<fleet<Model, tl::krum>>("Multi-Krum", attacked, tl::krum{.num_malicious = f, .num_to_keep = 20 - f},
                                                 opt.lr, clients, test, 0, opt.seed));
    robust.push_back(run<fleet<Model, tl::bulyan>>("Bulyan", attacked, tl::bulyan{.num_malicious = f}, opt.lr, clients,
                                                   test, 0, opt.seed));
    const double ref = robust[0].last5_accuracy;
    std::printf("\n  %-14s %12s %14s %12s\n", "rule", "final acc", "last-5 mean", "vs clean");
    for (const auto& r : robust)
      std::printf("  %-14s %11.2f%% %13.2f%% %+10.2f pp\n", r.name.c_str(), 100 * r.final_accuracy,
                  100 * r.last5_accuracy, 100 * (r.last5_accuracy - ref));
  }

  // 3. DP-FedAvg with fixed clipping.
  if (opt.dp) {
    const float z = 0.1f, clip = 2.0f;
    std::printf("\n== 3. DP-FedAvg, fixed clipping C = %.1f, noise multiplier z = %.2f, C = 0.1, %zu rounds\n",
                static_cast<double>(clip), static_cast<double>(z), opt.rounds);
    using dp = tl::dp_fixed_clipping<tl::fedavg>;
    wf::federated_options o = avg_o;
    privacy.push_back(run<fleet<Model, dp>>("DP-FedAvg", o, dp{.noise_multiplier = z, .clipping_norm = clip}, opt.lr,
                                            clients, test, 0, opt.seed));
    tl::rdp_accountant acc;
    acc.compose(z, 0.1, privacy.back().rounds);
    privacy.back().epsilon = acc.epsilon(1e-5);
    std::printf("  DP-FedAvg: epsilon %.3g at delta 1e-5 after %zu rounds (q = 0.1), accuracy %.2f%% (last-5 %.2f%%)\n",
                privacy.back().epsilon, privacy.back().rounds, 100 * privacy.back().final_accuracy,
                100 * privacy.back().last5_accuracy);
  }

  if (!opt.json.empty()) {
    std::FILE* f = std::fopen(opt.json.c_str(), "w");
    if (f == nullptr) {
      std::fprintf(stderr, "cannot write %s\n", opt.json.c_str());
      return 1;
    }
    std::fprintf(f,
                 "{\n  \"setting\": {\"clients\": 100, \"partition\": \"%s\", \"shards_per_client\": 2, \"shard_size\": 300, \"C\": 0.1, "
                 "\"E\": 5, \"B\": 10, \"parameters\": %zu, \"target\": %.4f, \"lr\": %.4f, \"fedsgd_lr\": %.4f, "
                 "\"seed\": %llu, \"full\": %s},\n",
                 opt.partition.c_str(), Model::param_count, opt.target, static_cast<double>(opt.lr), static_cast<double>(opt.fedsgd_lr),
                 static_cast<unsigned long long>(opt.seed), opt.full ? "true" : "false");
    std::fprintf(f, "  \"rounds_to_target\": [\n");
    for (std::size_t i = 0; i < speed.size(); ++i) print_json_run(f, speed[i], i + 1 == speed.size());
    std::fprintf(f, "  ],\n  \"robustness\": {\"attack\": \"sign_flip\", \"magnitude\": %.2f, \"fraction\": 0.2, \"C\": 0.2, \"runs\": [\n",
                 static_cast<double>(opt.magnitude));
    for (std::size_t i = 0; i < robust.size(); ++i) print_json_run(f, robust[i], i + 1 == robust.size());
    std::fprintf(f, "  ]},\n  \"dp\": [\n");
    for (std::size_t i = 0; i < privacy.size(); ++i) print_json_run(f, privacy[i], i + 1 == privacy.size());
    std::fprintf(f, "  ]\n}\n");
    std::fclose(f);
    std::printf("\nwrote %s\n", opt.json.c_str());
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  options opt;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "%s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--full") opt.full = true;
    else if (a == "--rounds") opt.rounds = std::stoul(next());
    else if (a == "--fedsgd-rounds") opt.fedsgd_rounds = std::stoul(next());
    else if (a == "--robust-rounds") opt.robust_rounds = std::stoul(next());
    else if (a == "--target") opt.target = std::stod(next());
    else if (a == "--lr") opt.lr = std::stof(next());
    else if (a == "--fedsgd-lr") opt.fedsgd_lr = std::stof(next());
    else if (a == "--skip-robust") opt.robust = false;
    else if (a == "--skip-dp") opt.dp = false;
    else if (a == "--partition") opt.partition = next();
    else if (a == "--flip-magnitude") opt.magnitude = std::stof(next());
    else if (a == "--json") opt.json = next();
    else if (a == "--seed") opt.seed = std::stoull(next());
    else {
      std::fprintf(stderr,
                   "usage: %s [--full] [--rounds N] [--fedsgd-rounds N] [--robust-rounds N] [--target ACC] [--lr X] "
                   "[--fedsgd-lr X] [--skip-robust] [--skip-dp] [--partition shards|iid] [--flip-magnitude L] [--json FILE] [--seed S]\n",
                   argv[0]);
      return 2;
    }
  }
  if (opt.rounds == 0) opt.rounds = opt.full ? 200 : 30;
  if (opt.fedsgd_rounds == 0) opt.fedsgd_rounds = opt.full ? 1000 : 300;
  if (opt.robust_rounds == 0) opt.robust_rounds = opt.full ? 100 : 20;
  if (opt.target == 0.0) opt.target = opt.full ? 0.85 : 0.70;
  try {
    const auto train = tl::data::load_fashion_mnist(tl::data::split::train);
    const auto test_set = tl::data::load_fashion_mnist(tl::data::split::test);
    tl::rng part_rng(opt.seed, 0x5a4d'0001ULL);
    // McMahan et al.: sort by label, 200 shards of 300, 2 shards per client.
    if (opt.partition != "shards" && opt.partition != "iid") {
      std::fprintf(stderr, "--partition must be shards or iid\n");
      return 2;
    }
    const auto parts = opt.partition == "iid" ? tl::data::partition_iid(train.count, 100, part_rng)
                                              : tl::data::partition_shards(train.labels, 100, 2, part_rng);
    const wf::federated_dataset fed = wf::make_federated_dataset(train, parts);
    const nn::labelled_view<std::uint8_t> test{test_set.images.data(), test_set.labels.data(), test_set.count, 784};
    std::printf("Fashion-MNIST: %zu clients (%s), %zu test images\n", fed.clients.size(),
                opt.partition == "iid" ? "IID, 600 each" : "shard non-IID, 2 x 300", test.count);
    return opt.full ? experiment<mlp_2nn>(opt, fed.clients, test) : experiment<mlp_small>(opt, fed.clients, test);
  } catch (const tl::error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
