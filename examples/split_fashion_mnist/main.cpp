// The flagship: every split-learning workflow on Fashion-MNIST.
//
// LeNet-300-100 cut after its first hidden layer (dense 784→300 + relu on the
// device, the rest on the server); 10 clients with McMahan's shard non-IID
// split (sorted by label, 2 shards per client; --partition iid, dirichlet:ALPHA,
// quantity:BETA or shards:K picks another, data/partition.hpp); the device segment trains with
// int8 fake quantization (it deploys as an int8 network) and sends int8
// smashed data (one scale per batch); the server runs fp32. Prints one table
// — final test accuracy, rounds, bytes up/down per client, server MACs,
// sequential hops, estimated time from the link model — and the two checks of
// issue 5: the centralised baseline for the same passes over the data, and
// int8 against fp32 smashed data (uplink bytes, accuracy). One more row,
// "psl, int8 + deep compr.", compresses the device segment as well: after a
// warm-up of --compress-after rounds (default: half of the rounds, rounded
// down) the canonical device segment is pruned to 90% sparsity and its weights
// shared in a 5-bit codebook (Deep Compression's fc setting, Huffman-coded),
// and PSL fine-tunes under that constraint; every transfer of the segment
// then costs its compressed encoding instead of 4·P bytes. Two precision rows
// (issue 16): "psl, fp16 device" trains the device segment in fp16 mixed
// precision (fp32 master weights, fp16 GEMM operands, dynamic loss scaling)
// with fp16 smashed data, and "psl, int8 dev + bf16 srv" keeps the int8 device
// and trains the server segment on bf16 operands.
//
// --fleet runs a different section instead (issue 23): the same model over a
// seeded wireless fleet (make_fleet: 10 devices at 10–200 m from one access
// point, a --band HZ uplink and downlink, default 1 MHz, Rayleigh fading per
// round, 20–200 M MAC/s, 3.0–4.5 MB of RAM, or no limit with --unlimited-ram) — SplitFedV1 with every device
// at cut<2>, every device at cut<4> (marked when some devices lack the RAM to
// train it), each device at the cut `per_device_cuts::choose_cuts` gives it
// (fastest, and frugal = least energy within the round's critical path), and
// EdgeSplit with clusters by client id and by capability; it prints each
// device's expected round time and energy per cut, then time, busy time and
// energy per round. Segments are averaged once per round there (--sync-every
// 0 unless given; with SGD the lr is then divided by N, as for VSL).
//
//   split_fashion_mnist [--full] [--rounds N] [--train N] [--test N] [--batch B]
//                       [--phi F] [--seed S] [--sync-every I] [--adam] [--lr LR]
//                       [--compress-after R] [--only NAME] [--partition SPEC]
//                       [--fleet] [--band HZ] [--unlimited-ram] [--json FILE]
//
// Default (a few minutes on 2 cores): 12 000 training images (1 200 per client),
// 2 000 test images, 5 rounds (= 5 passes over the training data). --full: all
// 60 000 / 10 000 images, 10 rounds. PSL, EPSL, EdgeSplit and SplitFedV1
// average the client segments (V1: and the server copies) every --sync-every
// iterations (default 1; 0 = end of round).
//
// Every party trains with SGD + heavy-ball momentum (lr 0.05, μ 0.9) by
// default: momentum is linear in the gradients, so averaging the clients'
// parameters every iteration is exactly one optimizer on the mean gradient,
// and PSL / SplitFedV1 reproduce centralised training with batch N·b. Adam
// (--adam) normalises each client's gradient by its own second moments before
// the average, which does not commute with averaging: on shard non-IID data,
// at the default size, it costs PSL about 6 pp and SplitFedV1 about 10 pp
// against centralised Adam (docs/split-learning.md).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include "tinylarge/data/batch.hpp"
#include "tinylarge/data/idx.hpp"
#include "tinylarge/data/partition.hpp"
#include "tinylarge/nn/nn.hpp"
#include "tinylarge/workflow/split.hpp"
#include "../common/cli.hpp"

namespace {

using lenet_300_100 = tl::sequential<tl::dense<784, 300>, tl::relu, tl::dense<300, 100>, tl::relu, tl::dense<100, 10>>;

/// The deployment: int8 device segment and smashed data, fp32 server.
/// Every party trains with `Opt` (default: SGD with heavy-ball momentum, see
/// below; --adam: Adam).
template <class Opt>
struct wearable_fleet {
  using model = lenet_300_100;
  using partition = tl::cut<2>;                      // device: dense<784,300> + relu
  using device = tl::side<tl::int8_per_channel>;     // QAT: deploys as int8
  using server = tl::side<tl::fp32>;
  using uplink_codec = tl::codec::int8;              // smashed data, one scale per batch
  using downlink_codec = tl::codec::fp32;            // their gradients
  using aggregation = tl::fedavg;
  using optimizer = Opt;
};
/// The same with fp32 smashed data (for the int8-vs-fp32 comparison).
template <class Opt>
struct wearable_fleet_fp32_smashed : wearable_fleet<Opt> {
  using uplink_codec = tl::codec::fp32;
};
/// The device segment compressed as well: prune → share (5 bits) → Huffman.
using device_compression = tl::compress::deep_compression<tl::compress::constant_sparsity, 5>;
template <class Opt>
struct wearable_fleet_compressed : wearable_fleet<Opt> {
  using device = tl::side<tl::int8_per_channel, device_compression>;
};
/// Precision rows: an fp16 device (mixed-precision training: fp32 master
/// weights, fp16 GEMM operands, dynamic loss scaling) sending fp16 smashed data.
template <class Opt>
struct wearable_fleet_fp16_device : wearable_fleet<Opt> {
  using device = tl::side<tl::fp16>;
  using uplink_codec = tl::codec::fp16;
};
/// int8 device (QAT) and a bf16 server segment (bf16 GEMM operands, no loss scaling).
template <class Opt>
struct wearable_fleet_bf16_server : wearable_fleet<Opt> {
  using server = tl::side<tl::bf16>;
};
/// Multi-hop: device → edge (dense<300,100> + relu) → cloud (dense<100,10>).
template <class Opt>
struct wearable_fleet_multihop : wearable_fleet<Opt> {
  using partition = tl::cut<2, 4>;
};

struct options {
  std::size_t rounds = 5, train = 12000, test = 2000, batch = 16, clients = 10;
  float phi = 0.5f;
  std::uint64_t seed = 1;
  std::size_t sync_every = 1;  // --fleet: 0 unless given (a 0.94 MB segment each way per iteration would swamp a 1 MHz cell)
  bool sync_every_given = false;
  std::size_t compress_after = 0;
  bool compress_after_given = false;
  double sparsity = 0.9;  // of the compressed device segment (Deep Compression keeps 8% of LeNet-300-100's first layer)
  float lr = 0.05f, momentum = 0.9f;  // SGD; --adam sets lr 1e-3 unless --lr is given
  bool adam = false, lr_given = false;
  std::string json, only;
  bool full = false;
  bool fleet = false;
  double band_hz = 1e6;  // --band: the --fleet cell's uplink and downlink bandwidth
  bool unlimited_ram = false;  // --unlimited-ram: the --fleet devices have no memory limit  // --fleet: per-device cuts and capability clusters over a wireless fleet only
  tl::data::partition_spec partition = tl::data::parse_partition_spec("shards:2");
};

struct row {
  std::string name;
  double accuracy = 0;
  std::size_t rounds = 0;
  double up_per_client = 0, down_per_client = 0;  // bytes, mean over clients
  double smashed_up_per_client = 0;                // up minus the device-segment uploads
  double server_macs = 0, client_macs = 0;
  std::uint64_t hops = 0, messages = 0;
  double estimated_seconds = 0, wall_seconds = 0;
  double device_segment_bytes = 0;  // one transfer of the device segment at the end of training
};

/// --only PREFIX: run only the workflows whose name starts with PREFIX.
std::string only_prefix;  // NOLINT: set once in main
bool selected(const std::string& name) { return only_prefix.empty() || name.rfind(only_prefix, 0) == 0; }

row summarise(const std::string& name, const tl::workflow::report& r, std::size_t clients, std::size_t steps,
              double wall) {
  using tl::workflow::role_cost;
  row x;
  x.name = name;
  x.accuracy = r.final_accuracy();
  x.rounds = r.rounds.size();
  const auto n = static_cast<double>(clients);
  x.up_per_client = static_cast<double>(r.total([](const role_cost& p) { return p.net.bytes_up; }, "client")) / n;
  // Every client message up is either one iteration's smashed data + labels or
  // a device-segment upload (4 bytes per parameter).
  const double uploads =
      static_cast<double>(r.total([](const role_cost& p) { return p.net.messages_up; }, "client")) / n -
      static_cast<double>(steps * r.rounds.size());
  x.smashed_up_per_client =
      x.up_per_client - uploads * 4.0 * static_cast<double>(tl::cut<2>::segment<lenet_300_100, 0>::param_count);
  x.down_per_client = static_cast<double>(r.total([](const role_cost& p) { return p.net.bytes_down; }, "client")) / n;
  x.server_macs = static_cast<double>(r.total([](const role_cost& p) { return p.macs; }, "server") +
                                      r.total([](const role_cost& p) { return p.macs; }, "edge"));
  x.client_macs = static_cast<double>(r.total([](const role_cost& p) { return p.macs; }, "client")) / n;
  for (const auto& rr : r.rounds) {
    x.hops += rr.sequential_hops;
    x.messages += rr.messages;
  }
  x.estimated_seconds = r.total_seconds();
  x.wall_seconds = wall;
  return x;
}

template <class Run>
row run_one(const char* name, const typename Run::options& o, const tl::nn::labelled_view<std::uint8_t>& train,
            const tl::data::partition_t& parts, const tl::nn::labelled_view<std::uint8_t>& test,
            double* sparsity = nullptr) {
  if (!selected(name)) {
    row skipped;
    skipped.name = name;
    skipped.accuracy = std::nan("");
    return skipped;
  }
  std::printf("  %-22s ...", name);
  std::fflush(stdout);
  const auto t0 = std::chrono::steady_clock::now();
  auto run = std::make_unique<Run>(o);
  const tl::workflow::report r = run->train(train, parts, &test);
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf(" %.2f%% (%.1f s)\n", 100 * r.final_accuracy(), wall);
  // SplitFedV2 and VSL: every client's iterations run once per round too.
  row x = summarise(name, r, parts.size(), run->steps_per_round(), wall);
  x.device_segment_bytes = static_cast<double>(run->device_segment_bytes());
  if constexpr (Run::device_compressed) {
    // Uploads of the device segment were 4·P during the warm-up and the encoded size after.
    x.smashed_up_per_client = std::nan("");
    if (sparsity != nullptr) *sparsity = run->device_segment_bytes() < Run::dense_segment_bytes
                                             ? run->device_compressor().sparsity()
                                             : 0.0;
  }
  return x;
}

/// Every workflow, then the two centralised baselines, all with optimizer `o`.
template <class Opt>
void run_all(const options& opt, const Opt& o_opt, const tl::nn::labelled_view<std::uint8_t>& train,
             const tl::data::partition_t& parts, const tl::nn::labelled_view<std::uint8_t>& test, std::vector<row>& rows,
             double& central, double& central_nb, double& central_wall, double& compressed_sparsity) {
  using opts = tl::split_options<Opt, tl::fedavg>;
  const opts o{.rounds = opt.rounds, .batch_size = opt.batch, .phi = opt.phi, .clusters = 2, .sync_every = opt.sync_every,
               .seed = opt.seed, .evaluate_every = opt.rounds, .optimizer = o_opt};
  // The schemes whose server steps on one client's batch (VSL, SplitFedV2)
  // and the centralised batch-b baseline take N times more SGD steps per pass
  // on N times smaller batches: with SGD they use lr / N (the linear scaling
  // rule, Goyal et al. 2017), chosen by that rule, not tuned. Adam keeps one lr.
  opts o_seq = o;
  if constexpr (std::is_same_v<Opt, tl::nn::sgd>) o_seq.optimizer.learning_rate = o_opt.learning_rate / static_cast<float>(opt.clients);
  using F = wearable_fleet<Opt>;
  rows.push_back(run_one<tl::vanilla_split<F>>("vsl", o_seq, train, parts, test));
  rows.push_back(run_one<tl::psl<F>>("psl", o, train, parts, test));
  rows.push_back(run_one<tl::epsl<F>>("epsl", o, train, parts, test));
  rows.push_back(run_one<tl::edge_split<F>>("edge_split (2 clusters)", o, train, parts, test));
  rows.push_back(run_one<tl::splitfed_v1<F>>("splitfed_v1", o, train, parts, test));
  rows.push_back(run_one<tl::splitfed_v2<F>>("splitfed_v2", o_seq, train, parts, test));
  rows.push_back(run_one<tl::psl<wearable_fleet_multihop<Opt>>>("psl multi-hop (K=2)", o, train, parts, test));
  rows.push_back(run_one<tl::psl<wearable_fleet_fp32_smashed<Opt>>>("psl, fp32 smashed", o, train, parts, test));
  {
    // PSL with the device segment compressed after a warm-up (see the file comment).
    using FC = wearable_fleet_compressed<Opt>;
    device_compression dc;
    std::get<0>(dc.stages).schedule.target_sparsity = opt.sparsity;
    const typename tl::psl<FC>::options oc{.rounds = opt.rounds, .batch_size = opt.batch, .phi = opt.phi, .clusters = 2,
                                           .sync_every = opt.sync_every, .seed = opt.seed,
                                           .evaluate_every = opt.rounds, .optimizer = o_opt,
                                           .compress_after = opt.compress_after, .device_compression = dc};
    rows.push_back(run_one<tl::psl<FC>>("psl, int8 + deep compr.", oc, train, parts, test, &compressed_sparsity));
  }
  rows.push_back(run_one<tl::psl<wearable_fleet_fp16_device<Opt>>>("psl, fp16 device", o, train, parts, test));
  rows.push_back(run_one<tl::psl<wearable_fleet_bf16_server<Opt>>>("psl, int8 dev + bf16 srv", o, train, parts, test));

  // Centralised baselines: the same model, optimizer and initialisation, the
  // same number of passes over the same images, one party — with the batch a
  // PSL / SplitFedV1 iteration sees (N·b: the same number of optimizer steps;
  // with SGD + momentum and sync every iteration, PSL and SplitFedV1 ARE this
  // training on client-stratified batches, tests/test_split.cpp), and with the
  // per-client batch b (N× more steps; with SGD at lr / N, see above).
  auto centralised = [&](std::size_t batch, const Opt& optimizer, double& wall) {
    wall = 0;
    if (!selected("centralised")) return std::nan("");
    std::printf("  %-22s ...", ("centralised, batch " + std::to_string(batch)).c_str());
    std::fflush(stdout);
    const auto t0 = std::chrono::steady_clock::now();
    tl::nn::network<lenet_300_100> net(opt.seed);
    tl::nn::fit(net, optimizer, tl::nn::softmax_cross_entropy{}, train,
                tl::nn::fit_options{.epochs = opt.rounds, .batch_size = batch, .seed = opt.seed});
    const double acc = tl::nn::evaluate(net, tl::nn::softmax_cross_entropy{}, test).accuracy;
    wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf(" %.2f%% (%.1f s)\n", 100 * acc, wall);
    return acc;
  };
  double wall_b = 0, wall_nb = 0;
  central = centralised(opt.batch, o_seq.optimizer, wall_b);
  central_nb = centralised(opt.batch * opt.clients, o_opt, wall_nb);
  central_wall = wall_b + wall_nb;
  std::printf("\n");
}

// ---- --fleet: per-device cut points and capability clusters over a wireless fleet ----

namespace wf = tl::workflow;

/// The wireless scenario of --fleet (the federated example's section 4, plus
/// memory): N devices at 10–200 m from one access point with a 1 MHz uplink
/// and a 1 MHz downlink, Rayleigh fading redrawn every round, 20–200 M MAC/s,
/// 1 nJ per MAC, 23 dBm, and 3.0–4.5 MB of RAM for training (uniform, seeded).
wf::wireless_fleet make_fleet(std::size_t clients, std::uint64_t seed, double band_hz, bool unlimited_ram) {
  wf::wireless_fleet air;
  air.access_point.uplink_hz = air.access_point.downlink_hz = band_hz;
  tl::rng r(seed, 0xf1ee'7001ULL);
  for (std::size_t k = 0; k < clients; ++k) {
    wf::device_profile d;
    d.distance_m = 10.0 + 190.0 * tl::data::uniform_open01(r);
    d.macs_per_s = 20e6 + 180e6 * tl::data::uniform_open01(r);
    d.memory_bytes = 3.0e6 + 1.5e6 * tl::data::uniform_open01(r);
    if (unlimited_ram) d.memory_bytes = std::numeric_limits<double>::infinity();  // the same draws otherwise
    air.devices.push_back(d);
  }
  return air;
}

/// A number as JSON: null when not finite (JSON has no infinity or NaN).
std::string json_number(double v) {
  if (!std::isfinite(v)) return "null";
  char b[32];
  std::snprintf(b, sizeof b, "%.6g", v);
  return b;
}

struct fleet_row {
  std::string name;
  double accuracy = 0, seconds_per_round = 0, joules_per_round = 0;
  double busy_per_round = 0;  // mean over clients of their compute + transfer seconds per round
  double up_per_client = 0, down_per_client = 0;
  std::size_t at_second_cut = 0;  // clients at cut<4>
  std::vector<std::size_t> straggler_rounds;  // per client: rounds it was the straggler
  double wall = 0;
};

fleet_row fleet_summary(const std::string& name, const wf::report& r, std::size_t clients, double wall) {
  fleet_row x;
  x.name = name;
  x.accuracy = r.final_accuracy();
  const auto rounds = static_cast<double>(r.rounds.size());
  x.seconds_per_round = r.total_seconds() / rounds;
  for (const auto& rr : r.rounds) {
    x.joules_per_round += rr.energy_joules / rounds;
    for (const auto& p : rr.parties)
      if (p.role == "client") x.busy_per_round += p.seconds / rounds / static_cast<double>(clients);
    x.straggler_rounds.resize(clients);
    if (rr.straggler >= 0) ++x.straggler_rounds[static_cast<std::size_t>(rr.straggler)];
  }
  const auto n = static_cast<double>(clients);
  x.up_per_client = static_cast<double>(r.total([](const wf::role_cost& p) { return p.net.bytes_up; }, "client")) / n;
  x.down_per_client = static_cast<double>(r.total([](const wf::role_cost& p) { return p.net.bytes_down; }, "client")) / n;
  x.wall = wall;
  return x;
}

/// SplitFedV1 with every device at cut<2>, every device at cut<4>, and each
/// at the cut `choose_cuts` gives it; EdgeSplit with clusters by client id and
/// by capability. Prints a table; writes JSON when --json is given.
template <class Opt>
int run_fleet(const options& opt, const Opt& o_opt, const tl::nn::labelled_view<std::uint8_t>& train,
              const tl::data::partition_t& parts, const tl::nn::labelled_view<std::uint8_t>& test) {
  using F = wearable_fleet<Opt>;
  using cuts = tl::per_device_cuts<F, tl::split_scheme::splitfed_v1, tl::cut<2>, tl::cut<4>>;
  typename cuts::options o{.rounds = opt.rounds, .batch_size = opt.batch, .clusters = 2, .sync_every = opt.sync_every,
                           .seed = opt.seed, .evaluate_every = opt.rounds, .optimizer = o_opt};
  o.wireless = make_fleet(opt.clients, opt.seed, opt.band_hz, opt.unlimited_ram);
  // Iterations per round as the workflow computes them: one pass over the mean local data set.
  const std::size_t steps = (train.count / opt.clients + opt.batch - 1) / opt.batch;
  const std::vector<std::size_t> chosen = cuts::choose_cuts(o, steps);
  const std::vector<std::size_t> frugal = cuts::choose_cuts(o, steps, tl::cut_goal::least_energy);
  const auto costs = cuts::expected_costs(o, steps);
  std::printf("wireless fleet: %zu devices, %g MHz up / %g MHz down, Rayleigh fading per round\n", opt.clients,
              opt.band_hz / 1e6, opt.band_hz / 1e6);
  std::printf("  %-6s %10s %12s %10s %20s %20s %8s %8s\n", "client", "distance", "compute", "memory",
              "round at cut<2>", "round at cut<4>", "fastest", "frugal");
  std::size_t fits_first_only = 0;
  for (std::size_t c = 0; c < opt.clients; ++c) {
    const auto& d = o.wireless.devices[c];
    const bool fits1 = std::isfinite(costs[c][1].seconds);
    fits_first_only += fits1 ? 0 : 1;
    char at4[32] = "   (needs more RAM)";
    if (fits1) std::snprintf(at4, sizeof at4, "%7.2f s %7.2f J", costs[c][1].seconds, costs[c][1].joules);
    std::printf("  %-6zu %8.0f m %7.0f MMAC/s %7.2f MB %9.2f s %7.2f J %20s %8s %8s\n", c, d.distance_m,
                d.macs_per_s / 1e6, d.memory_bytes / 1e6, costs[c][0].seconds, costs[c][0].joules, at4,
                chosen[c] == 0 ? "cut<2>" : "cut<4>", frugal[c] == 0 ? "cut<2>" : "cut<4>");
  }
  std::printf("  (cut<4> needs %.2f MB to train, cut<2> %.2f MB; expected round of %zu iterations and %s at the mean SNR on "
              "1/%zu of the band)\n\n",
              static_cast<double>(cuts::template device_training_bytes<1>(opt.batch)) / 1e6,
              static_cast<double>(cuts::template device_training_bytes<0>(opt.batch)) / 1e6, steps,
              o.sync_every == 0 ? "one segment download + upload" : "a segment download + upload per synchronisation",
              opt.clients);

  // What the cost model expects of each assignment (mean SNR, no fading): the
  // round's critical path (the slowest device) and all devices' energy.
  struct expectation {
    const char* name;
    std::vector<std::size_t> cut_of;
    double seconds = 0, joules = 0;
  };
  std::vector<expectation> expected = {{"every device cut<2>", std::vector<std::size_t>(opt.clients, 0)},
                                       {"every device cut<4>", std::vector<std::size_t>(opt.clients, 1)},
                                       {"per-device (fastest)", chosen},
                                       {"per-device (frugal)", frugal}};
  std::printf("  expected per round (cost model, mean SNR):");
  for (auto& e : expected) {
    for (std::size_t c = 0; c < opt.clients; ++c) {
      e.seconds = std::max(e.seconds, costs[c][e.cut_of[c]].seconds);
      e.joules += costs[c][e.cut_of[c]].joules;
    }
    std::printf("%s %s %.2f s, %.2f J", &e == expected.data() ? "" : ";", e.name, e.seconds, e.joules);
  }
  std::printf("%s\n\n", fits_first_only > 0 ? " (cut<4> everywhere: infinite = a device lacks the RAM)" : "");

  std::vector<fleet_row> rows;
  auto run_cuts = [&](const char* name, const std::vector<std::size_t>& cut_of) {
    std::printf("  %-32s ...", name);
    std::fflush(stdout);
    const auto t0 = std::chrono::steady_clock::now();
    cuts run{o};
    const wf::report r = run.train(train, parts, cut_of, &test);
    const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf(" %.2f%% (%.1f s)\n", 100 * r.final_accuracy(), wall);
    fleet_row x = fleet_summary(name, r, opt.clients, wall);
    x.at_second_cut = static_cast<std::size_t>(std::count(cut_of.begin(), cut_of.end(), std::size_t{1}));
    rows.push_back(std::move(x));
  };
  auto run_edge = [&](const char* name, bool by_capability) {
    std::printf("  %-32s ...", name);
    std::fflush(stdout);
    const auto t0 = std::chrono::steady_clock::now();
    typename tl::edge_split<F>::options oe = o;
    oe.cluster_by_capability = by_capability;
    tl::edge_split<F> run{oe};
    const wf::report r = run.train(train, parts, &test);
    const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf(" %.2f%% (%.1f s)\n", 100 * r.final_accuracy(), wall);
    rows.push_back(fleet_summary(name, r, opt.clients, wall));
  };
  const std::string uniform4 = "splitfed_v1, every device cut<4>" + std::string(fits_first_only > 0 ? " (*)" : "");
  if (selected("splitfed_v1")) {
    run_cuts("splitfed_v1, every device cut<2>", std::vector<std::size_t>(opt.clients, 0));
    run_cuts(uniform4.c_str(), std::vector<std::size_t>(opt.clients, 1));
    run_cuts("splitfed_v1, per-device cuts", chosen);
    run_cuts("splitfed_v1, per-device, frugal", frugal);
  }
  if (selected("edge_split")) {
    run_edge("edge_split, clusters by id", false);
    run_edge("edge_split, clusters by capability", true);
  }
  std::printf("\n| %-36s | %8s | %11s | %13s | %10s | %12s | %12s | %7s |\n", "workflow", "test acc", "s / round",
              "busy s/client", "J / round", "up/client", "down/client", "cut<4>");
  std::printf("|--------------------------------------|----------|-------------|---------------|------------|--------------|"
              "--------------|---------|\n");
  for (const fleet_row& r : rows)
    std::printf("| %-36s | %7.2f%% | %9.2f s | %11.2f s | %8.2f J | %9.2f MB | %9.2f MB | %7zu |\n", r.name.c_str(),
                100 * r.accuracy, r.seconds_per_round, r.busy_per_round, r.joules_per_round, r.up_per_client / 1e6,
                r.down_per_client / 1e6, r.at_second_cut);
  if (fits_first_only > 0)
    std::printf("(*) %zu of the %zu devices lack the memory to train cut<4>: shown for comparison, not deployable\n",
                fits_first_only, opt.clients);

  if (!opt.json.empty()) {
    std::FILE* f = std::fopen(opt.json.c_str(), "w");
    if (f == nullptr) {
      std::fprintf(stderr, "cannot write %s\n", opt.json.c_str());
      return 1;
    }
    std::fprintf(f, "{\n  \"dataset\": \"fashion-mnist\", \"model\": \"lenet_300_100\", \"candidate_cuts\": [2, 4],\n");
    std::fprintf(f, "  \"clients\": %zu, \"partition\": \"%s\", \"train_images\": %zu, \"test_images\": %zu, "
                    "\"rounds\": %zu, \"batch_size\": %zu, \"sync_every\": %zu, \"seed\": %llu, "
                    "\"optimizer\": \"%s\", \"learning_rate\": %g,\n",
                 opt.clients, opt.partition.text().c_str(), train.count, test.count, opt.rounds, opt.batch,
                 opt.sync_every, static_cast<unsigned long long>(opt.seed), opt.adam ? "adam" : "sgd",
                 static_cast<double>(opt.lr));
    std::fprintf(f, "  \"fleet\": {\"uplink_hz\": %g, \"downlink_hz\": %g, \"fading\": \"rayleigh\", "
                    "\"unlimited_ram\": %s, \"devices\": [\n", opt.band_hz, opt.band_hz, opt.unlimited_ram ? "true" : "false");
    for (std::size_t c = 0; c < opt.clients; ++c) {
      const auto& d = o.wireless.devices[c];
      std::fprintf(f,
                   "    {\"distance_m\": %.1f, \"macs_per_s\": %.4g, \"memory_bytes\": %s, \"fastest_cut\": %d, "
                   "\"frugal_cut\": %d, \"expected_round_s\": [%.3f, %s], \"expected_round_j\": [%.3f, %s]}%s\n",
                   d.distance_m, d.macs_per_s, json_number(d.memory_bytes).c_str(), chosen[c] == 0 ? 2 : 4,
                   frugal[c] == 0 ? 2 : 4, costs[c][0].seconds, json_number(costs[c][1].seconds).c_str(),
                   costs[c][0].joules, json_number(std::isfinite(costs[c][1].seconds) ? costs[c][1].joules : costs[c][1].seconds).c_str(),
                   c + 1 < opt.clients ? "," : "");
    }
    std::fprintf(f, "  ]},\n  \"expected\": [\n");
    for (std::size_t i = 0; i < expected.size(); ++i)
      std::fprintf(f, "    {\"assignment\": \"%s\", \"critical_path_s\": %s, \"joules\": %s}%s\n", expected[i].name,
                   json_number(expected[i].seconds).c_str(), json_number(expected[i].joules).c_str(),
                   i + 1 < expected.size() ? "," : "");
    std::fprintf(f, "  ],\n  \"workflows\": [\n");
    for (std::size_t i = 0; i < rows.size(); ++i) {
      const fleet_row& r = rows[i];
      std::string st;
      for (std::size_t c = 0; c < r.straggler_rounds.size(); ++c) st += (c ? ", " : "") + std::to_string(r.straggler_rounds[c]);
      std::fprintf(f,
                   "    {\"workflow\": \"%s\", \"test_accuracy\": %.4f, \"seconds_per_round\": %.4f, "
                   "\"busy_seconds_per_client_round\": %.4f, \"joules_per_round\": %.4f, \"bytes_up_per_client\": %.0f, "
                   "\"bytes_down_per_client\": %.0f, "
                   "\"clients_at_cut4\": %zu, \"straggler_rounds\": [%s], \"wall_seconds\": %.1f}%s\n",
                   r.name.c_str(), r.accuracy, r.seconds_per_round, r.busy_per_round, r.joules_per_round, r.up_per_client,
                   r.down_per_client, r.at_second_cut, st.c_str(), r.wall, i + 1 < rows.size() ? "," : "");
    }
    std::fprintf(f, "  ]\n}\n");
    std::fclose(f);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  options opt;
  examples::cli args(argc, argv,
                     "[--full] [--rounds N] [--train N] [--test N] [--batch B] [--phi F] [--seed S] "
                     "[--sync-every I] [--adam] [--lr LR] [--compress-after R] [--only NAME] "
                     "[--partition iid|shards:K|dirichlet:A|quantity:B] [--fleet] [--band HZ] [--unlimited-ram] [--json FILE]");
  while (args.next()) {
    if (args.is("--full")) {
      opt.full = true;
      opt.rounds = 10;
      opt.train = 60000;
      opt.test = 10000;
    } else if (args.is("--rounds")) opt.rounds = args.count();
    else if (args.is("--train")) opt.train = args.count();
    else if (args.is("--test")) opt.test = args.count();
    else if (args.is("--batch")) opt.batch = args.count();
    else if (args.is("--phi")) opt.phi = args.real<float>();
    else if (args.is("--seed")) opt.seed = args.count<std::uint64_t>();
    else if (args.is("--json")) opt.json = args.text();
    else if (args.is("--only")) opt.only = args.text();
    else if (args.is("--sync-every")) { opt.sync_every = args.count(); opt.sync_every_given = true; }
    else if (args.is("--compress-after")) { opt.compress_after = args.count(); opt.compress_after_given = true; }
    else if (args.is("--adam")) opt.adam = true;
    else if (args.is("--fleet")) opt.fleet = true;
    else if (args.is("--band")) opt.band_hz = args.real<double>();
    else if (args.is("--unlimited-ram")) opt.unlimited_ram = true;
    else if (args.is("--lr")) { opt.lr = args.real<float>(); opt.lr_given = true; }
    else if (args.is("--partition")) {
      try {
        opt.partition = tl::data::parse_partition_spec(args.text());
      } catch (const tl::invalid_argument& e) {
        args.error(e.what());
      }
    }
    else args.unknown();
  }
  only_prefix = opt.only;
  if (opt.fleet && !opt.sync_every_given) opt.sync_every = 0;
  // Each copy steps on its own batch b between synchronisations: with SGD, lr / N (the linear scaling rule, as for
  // VSL and SplitFedV2 below), unless --lr is given.
  if (opt.fleet && opt.sync_every == 0 && !opt.adam && !opt.lr_given) opt.lr /= static_cast<float>(opt.clients);
  if (!opt.compress_after_given) opt.compress_after = opt.rounds / 2;
  if (opt.adam && !opt.lr_given) opt.lr = 1e-3f;
  try {
    const auto train_set = tl::data::load_fashion_mnist(tl::data::split::train);
    const auto test_set = tl::data::load_fashion_mnist(tl::data::split::test);
    // A seeded IID subsample of the training set, then the --partition split over it (default: shards:2).
    tl::rng g(opt.seed, 0xf1a9ULL);
    std::vector<std::size_t> pick(train_set.count);
    for (std::size_t i = 0; i < pick.size(); ++i) pick[i] = i;
    g.shuffle(pick.data(), pick.size());
    opt.train = std::min(opt.train, train_set.count);
    pick.resize(opt.train);
    const tl::data::dataset sub = tl::data::subset(train_set, pick);
    const tl::nn::labelled_view<std::uint8_t> train{sub.images.data(), sub.labels.data(), sub.count, 784};
    const tl::nn::labelled_view<std::uint8_t> test{test_set.images.data(), test_set.labels.data(),
                                                   std::min(opt.test, test_set.count), 784};
    const tl::data::partition_t parts = opt.partition(sub.labels, opt.clients, g);
    std::size_t smallest = sub.count, largest = 0;
    for (const auto& p : parts) {
      smallest = std::min(smallest, p.size());
      largest = std::max(largest, p.size());
    }

    if (opt.fleet) {
      std::printf("split learning on Fashion-MNIST over a wireless fleet: LeNet-300-100, %zu clients (%s), %zu rounds, "
                  "batch %zu, %s lr %g, segments averaged %s\n",
                  opt.clients, opt.partition.text().c_str(), opt.rounds, opt.batch, opt.adam ? "Adam" : "SGD",
                  static_cast<double>(opt.lr), opt.sync_every == 0 ? "once per round" : "every --sync-every iterations");
      if (opt.adam) return run_fleet(opt, tl::nn::adam{.learning_rate = opt.lr}, train, parts, test);
      return run_fleet(opt, tl::nn::sgd{.learning_rate = opt.lr, .momentum = opt.momentum}, train, parts, test);
    }
    std::printf("split learning on Fashion-MNIST: LeNet-300-100 cut after the first hidden layer\n");
    std::printf("  %zu clients (%s: %s; %zu to %zu images each), %zu training / %zu test images, %zu rounds, batch %zu\n",
                opt.clients, opt.partition.text().c_str(), opt.partition.description().c_str(), smallest, largest,
                train.count, test.count, opt.rounds, opt.batch);
    if (opt.adam)
      std::printf("  optimizer: Adam (lr %g) for every party; client segments", static_cast<double>(opt.lr));
    else
      std::printf("  optimizer: SGD (lr %g, momentum %g) for every party; client segments", static_cast<double>(opt.lr),
                  static_cast<double>(opt.momentum));
    if (opt.sync_every == 0)
      std::printf(" (and SplitFedV1's server copies) averaged once per round\n");
    else
      std::printf(" (and SplitFedV1's server copies) averaged every %zu iteration(s)\n", opt.sync_every);
    std::printf("  device: int8 QAT segment (%zu params, %zu MACs/sample), int8 smashed data (%zu values/sample); "
                "server: fp32 (%zu params)\n\n",
                tl::cut<2>::segment<lenet_300_100, 0>::param_count, tl::cut<2>::segment<lenet_300_100, 0>::macs,
                tl::cut<2>::cut_size<lenet_300_100, 0>, tl::cut<2>::segment<lenet_300_100, 1>::param_count);

    std::vector<row> rows;
    double central = 0, central_nb = 0, central_wall = 0, compressed_sparsity = 0;
    if (opt.adam)
      run_all(opt, tl::nn::adam{.learning_rate = opt.lr}, train, parts, test, rows, central, central_nb, central_wall,
              compressed_sparsity);
    else
      run_all(opt, tl::nn::sgd{.learning_rate = opt.lr, .momentum = opt.momentum}, train, parts, test, rows, central,
              central_nb, central_wall, compressed_sparsity);

    std::printf("| %-23s | %8s | %6s | %12s | %12s | %11s | %8s | %12s |\n", "workflow", "test acc", "rounds",
                "up/client", "down/client", "server MACs", "hops", "est. time");
    std::printf("|-------------------------|----------|--------|--------------|--------------|-------------|----------|--------------|\n");
    // With --only, a workflow that did not run has a NaN accuracy: its row and the checks that need it are
    // left out (printing them would show zeros and NaNs as if measured).
    const auto measured = [](double accuracy) { return !std::isnan(accuracy); };
    for (const row& r : rows)
      if (measured(r.accuracy))
        std::printf("| %-23s | %7.2f%% | %6zu | %9.2f MB | %9.2f MB | %9.2f G | %8llu | %10.1f s |\n", r.name.c_str(),
                    100 * r.accuracy, r.rounds, r.up_per_client / 1e6, r.down_per_client / 1e6, r.server_macs / 1e9,
                    static_cast<unsigned long long>(r.hops), r.estimated_seconds);
    if (measured(central)) {
      std::printf("| %-23s | %7.2f%% | %6zu | %12s | %12s | %11s | %8s | %12s |\n", "centralised, batch b",
                  100 * central, opt.rounds, "-", "-", "-", "-", "-");
      std::printf("| %-23s | %7.2f%% | %6zu | %12s | %12s | %11s | %8s | %12s |\n", "centralised, batch N*b",
                  100 * central_nb, opt.rounds, "-", "-", "-", "-", "-");
    }

    const row& psl = rows[1];
    const row& sfv1 = rows[4];
    const row& psl32 = rows[7];
    const row& pslc = rows[8];
    constexpr double dense_segment = 4.0 * tl::cut<2>::segment<lenet_300_100, 0>::param_count;
    const double smashed_ratio = psl32.up_per_client / psl.up_per_client;
    const double smashed_only_ratio = psl32.smashed_up_per_client / psl.smashed_up_per_client;
    const bool all_ran = measured(central) && std::all_of(rows.begin(), rows.end(), [&](const row& r) {
      return measured(r.accuracy);
    });
    if (!all_ran) {
      std::printf("\nchecks (issue 5): not printed, --only ran a subset of the workflows\n");
    } else {
      std::printf("\nchecks (issue 5):\n");
      std::printf("  PSL vs centralised:         %+.2f pp (batch b), %+.2f pp (batch N*b) (target: within 1.5 pp)\n",
                  100 * (psl.accuracy - central), 100 * (psl.accuracy - central_nb));
      std::printf("  SplitFedV1 vs centralised:  %+.2f pp (batch b), %+.2f pp (batch N*b) (target: within 1.5 pp)\n",
                  100 * (sfv1.accuracy - central), 100 * (sfv1.accuracy - central_nb));
      std::printf("  int8 vs fp32 smashed data:  smashed-data uplink %.2fx fewer bytes (%.2fx with the model uploads), "
                  "accuracy %+.2f pp (targets: >= 3.9x, loss <= 0.5 pp)\n",
                  smashed_only_ratio, smashed_ratio, 100 * (psl.accuracy - psl32.accuracy));
      std::printf("  compressed device segment:  %.0f B -> %.0f B per transfer (%.1fx; %.1f%% of the weights pruned, "
                  "5-bit codebook, Huffman; compressed after %zu of %zu rounds), accuracy %+.2f pp against PSL, "
                  "client up+down %.1fx fewer bytes\n",
                  dense_segment, pslc.device_segment_bytes, dense_segment / pslc.device_segment_bytes,
                  100 * compressed_sparsity, std::min(opt.compress_after, opt.rounds), opt.rounds,
                  100 * (pslc.accuracy - psl.accuracy),
                  (psl.up_per_client + psl.down_per_client) / (pslc.up_per_client + pslc.down_per_client));
      {
        // Precision rows (issue 16): the device segment deployed in its storage precision.
        using dev_seg = tl::cut<2>::segment<lenet_300_100, 0>;
        using fp16_dev = tl::nn::mixed_inference_network<dev_seg, tl::fp16>;
        constexpr double int8_weights = dev_seg::weight_count;                       // 1 byte per weight
        constexpr double int8_other = 8.0 * dev_seg::bias_count;  // int32 bias and an fp32 scale per output channel
        const row& p16 = rows[9];
        const row& pbf = rows[10];
        std::printf("  fp16 device:                accuracy %+.2f pp against PSL (int8 device), deployed device weights "
                    "%zu B (+%zu B fp32 bias) vs %.0f B fp32; smashed-data uplink %.2f MB/client (fp16) vs %.2f MB (int8)\n",
                    100 * (p16.accuracy - psl.accuracy), fp16_dev::weight_bytes(), fp16_dev::other_parameter_bytes(),
                    4.0 * dev_seg::weight_count, p16.smashed_up_per_client / 1e6, psl.smashed_up_per_client / 1e6);
        std::printf("  int8 device + bf16 server:  accuracy %+.2f pp against PSL (fp32 server); device weights %.0f B "
                    "(+%.0f B bias and scales), server GEMMs on bf16 operands\n",
                    100 * (pbf.accuracy - psl.accuracy), int8_weights, int8_other);
      }
    }
    std::printf("  wall time of the workflows: %.1f s\n", [&] {
      double s = central_wall;
      for (const row& r : rows) s += r.wall_seconds;
      return s;
    }());

    if (!opt.json.empty()) {
      std::FILE* f = std::fopen(opt.json.c_str(), "w");
      if (f == nullptr) {
        std::fprintf(stderr, "cannot write %s\n", opt.json.c_str());
        return 1;
      }
      std::string command = "split_fashion_mnist";
      for (int i = 1; i < argc; ++i) {
        const bool quote = std::string(argv[i]).find(' ') != std::string::npos;
        command += quote ? " '" : " ";
        for (const char* c = argv[i]; *c != '\0'; ++c) {
          if (*c == '"' || *c == '\\') command += '\\';
          command += *c;
        }
        if (quote) command += '\'';
      }
      std::fprintf(f, "{\n  \"command\": \"%s\",\n", command.c_str());
      std::fprintf(f, "  \"dataset\": \"fashion-mnist\", \"model\": \"lenet_300_100\", \"cut\": 2,\n");
      std::fprintf(f, "  \"clients\": %zu, \"partition\": \"%s\", \"train_images\": %zu, \"test_images\": %zu,\n",
                   opt.clients, opt.partition.text().c_str(), train.count, test.count);
      std::fprintf(f, "  \"rounds\": %zu, \"batch_size\": %zu, \"phi\": %.3f, \"seed\": %llu,\n", opt.rounds, opt.batch,
                   static_cast<double>(opt.phi), static_cast<unsigned long long>(opt.seed));
      std::fprintf(f,
                   "  \"optimizer\": \"%s\", \"learning_rate\": %g, \"learning_rate_vsl_v2_batch_b\": %g, "
                   "\"momentum\": %g, \"sync_every\": %zu,\n",
                   opt.adam ? "adam" : "sgd", static_cast<double>(opt.lr),
                   opt.adam ? static_cast<double>(opt.lr) : static_cast<double>(opt.lr) / static_cast<double>(opt.clients),
                   opt.adam ? 0.0 : static_cast<double>(opt.momentum), opt.sync_every);
      // JSON has no NaN: a figure not measured (--only) is written as null.
      const auto num = [](double v) {
        if (!std::isfinite(v)) return std::string("null");
        char b[32];
        std::snprintf(b, sizeof b, "%.4f", v);
        return std::string(b);
      };
      std::fprintf(f, "  \"centralised_accuracy\": %s, \"centralised_accuracy_batch_nb\": %s,\n"
                      "  \"int8_vs_fp32_smashed\": {\"uplink_ratio_smashed\": %s, "
                      "\"uplink_ratio_total\": %s, \"accuracy_delta\": %s},\n",
                   num(central).c_str(), num(central_nb).c_str(), num(smashed_only_ratio).c_str(),
                   num(smashed_ratio).c_str(), num(psl.accuracy - psl32.accuracy).c_str());
      std::fprintf(f,
                   "  \"compressed_device\": {\"policy\": \"deep_compression<constant_sparsity, 5>\", "
                   "\"target_sparsity\": %.3f, \"sparsity\": %s, \"compress_after\": %zu, "
                   "\"segment_bytes_dense\": %.0f, \"segment_bytes_compressed\": %s, \"accuracy_delta_vs_psl\": %s},\n",
                   opt.sparsity, num(measured(pslc.accuracy) ? compressed_sparsity : std::nan("")).c_str(),
                   opt.compress_after, dense_segment,
                   num(measured(pslc.accuracy) ? pslc.device_segment_bytes : std::nan("")).c_str(),
                   num(pslc.accuracy - psl.accuracy).c_str());
      // Only the workflows that ran (--only) are listed.
      std::vector<const row*> ran;
      for (const row& r : rows)
        if (measured(r.accuracy)) ran.push_back(&r);
      std::fprintf(f, "  \"workflows\": [\n");
      for (std::size_t i = 0; i < ran.size(); ++i) {
        const row& r = *ran[i];
        std::fprintf(f,
                     "    {\"workflow\": \"%s\", \"test_accuracy\": %s, \"rounds\": %zu, \"bytes_up_per_client\": %.0f, "
                     "\"bytes_down_per_client\": %.0f, \"server_macs\": %.0f, \"client_macs\": %.0f, "
                     "\"sequential_hops\": %llu, \"messages\": %llu, \"estimated_seconds\": %.3f, "
                     "\"wall_seconds\": %.2f, \"device_segment_bytes\": %.0f}%s\n",
                     r.name.c_str(), num(r.accuracy).c_str(), r.rounds, r.up_per_client, r.down_per_client, r.server_macs,
                     r.client_macs, static_cast<unsigned long long>(r.hops),
                     static_cast<unsigned long long>(r.messages), r.estimated_seconds, r.wall_seconds,
                     r.device_segment_bytes, i + 1 < ran.size() ? "," : "");
      }
      std::fprintf(f, "  ]\n}\n");
      std::fclose(f);
    }
  } catch (const tl::error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
