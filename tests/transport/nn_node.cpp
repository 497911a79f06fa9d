// FedAvg and SplitFedV1 of a real model (784-64-10 MLP) on a seeded
// Fashion-MNIST subset, over every transport. One program, so that every run
// executes the same machine code and the final models can be compared bit for
// bit. scripts/transport_test.sh drives it.
//
//   transport_nn_node prepare --data-dir D --dir W [--train N --test M --seed S]
//       writes a seeded subset (raw IDX) to W: the other modes read it
//   transport_nn_node WF inproc      --dir W [common] [--drop-client K --drop-round R --drop-step T]
//   transport_nn_node fedavg threads --dir W [common] [--drop-client K --drop-round R]
//       (the deployment drivers over in_process endpoints on threads; inproc is federated_averaging)
//   mpirun -np N+1 transport_nn_node WF mpi --dir W [common]
//   transport_nn_node WF mqtt-server --dir W --port P --run NAME [common]
//   transport_nn_node WF mqtt-client --dir W --port P --run NAME --id K [common] [--die-round R --die-step T]
//   transport_nn_node splitfed workflow --dir W [common]   (workflow/split.hpp's in-process SplitFedV1)
//   transport_nn_node splitfed hostile --dir W [common]    (malformed split traffic both ways: see split_hostile)
//   splitfed server (inproc, mqtt-server): [--checkpoint FILE [--crash-round R --crash-after N]]
//   transfer (inproc, mpi, mqtt-*): --personal PREFIX  client k writes its personal model to PREFIX.k
//   fedlora threads --dir W [common]   (run_lora_server / run_lora_client over in_process endpoints on threads)
//   fedlora (inproc, threads, mpi, mqtt-*): --lora-ranks R1,R2,...  client k's rank (HetLoRA; default: 4 for all)
//
// WF: fedavg | splitfed | transfer | fedlora.
// common: --clients N --rounds R --seed S --batch B --out FILE --min-clients M --round-timeout-ms T
//         [--dirichlet ALPHA]  (Dirichlet label skew, unequal client sizes, instead of 4 shards per client)
// splitfed: --codecs fp32|int8-fp16                        (the cut's uplink-downlink codecs, partition/codec.hpp)
//           --scheme splitfed_v1|psl|epsl|splitfed_v2|vsl|edge_split   (PSL: one server segment, every client's step t in
//                                                            one batch; EPSL: PSL whose server aggregates the last-layer
//                                                            gradients of round(phi*b) rows per batch; SplitFedV2: the
//                                                            clients one after another on one server segment; VSL:
//                                                            the same order, the device segment handed from client
//                                                            to client; EdgeSplit: clusters of clients in turn, PSL
//                                                            within one; mode workflow runs workflow/split.hpp's)
//           --phi F                                         (EPSL's aggregation ratio in [0, 1]; default 0.5)
//           --clusters C                                    (EdgeSplit's clusters; default 2)
//           --cuts 2                                        (multi-hop PSL, device → edge → cloud, of the
//                                                            784-64-32-10 MLP model3 cut at <2, 4>: the server
//                                                            process is the edge, a cloud runs the last segment —
//                                                            a thread in process, rank N+1 under mpirun -np N+2
//                                                            (edge rank 0, devices 1..N), mode mqtt-cloud over MQTT
//                                                            (run NAME-cloud); mode workflow runs split_learning
//                                                            with cut<2, 4>)
// fedavg: --policy fedavg|fedavgm|fedprox|fedadam|median|dp|reptile   (the server's aggregation rule)
//         --secure                                          (secure aggregation, linear policies: masked updates,
//                                                            X25519 + ChaCha20, aggregate/secure.hpp)
//         --die-secure-step shares|masked|response          (with --die-round R: leave before that secure step)
//         --update fp32|fp16|int8                           (what a client uploads; fp16 / int8 with fedavg)
//         --fraction C                                      (clients per round: ⌈C·N⌉, drawn by the server)
//
// Data: the training subset is split over the clients non-IID (partition_shards,
// 4 shards of sorted labels per client, so each client sees about 4 classes).
// FedAvg: the FedAvg family's roles (workflow/federated_roles.hpp): one local
// epoch of SGD (momentum 0.9, fresh every round) from the global model, in
// `fedavg_training` (train_locally), shuffled by the round's task seed; mode
// inproc is `federated_averaging` (the simulation), mpi / mqtt-* / threads run
// the same roles with the deployment drivers (workflow/federated_deploy.hpp). SplitFedV1: cut after the
// first dense + relu (64 activations cross the cut), Adam on every party,
// one pass over the mean local data per round, batches drawn exactly as
// workflow/split.hpp draws them (see split_batches), so that the `workflow`
// mode must give the same bits.
// transfer: federated transfer learning (workflow/transfer.hpp): the server
// pre-trains 2 epochs on the first half of the test subset (its own data),
// FedAvg rounds as above on the first 3/4 of each client's data, then each
// client fine-tunes the final model (first layer frozen, 2 epochs) and
// evaluates it on its last 1/4; mode inproc is `federated_transfer::run`,
// mpi / mqtt-* the roles of workflow/transfer_deploy.hpp. Test accuracy on
// the second half of the test subset.
// fedlora: federated LoRA fine-tuning (workflow/lora.hpp): every process
// pre-trains the same base W0 (2 epochs of SGD on the first half of the test
// subset, seeded: the same bits in each), the clients train rank-r_k adapters
// (r_max 4, s = 8/4) on W0 frozen, 1 local epoch per round; the server averages
// each adapter coordinate over the clients that trained it (hetlora_mean).
// Mode inproc is `federated_lora::run`, threads / mpi / mqtt-* the FedAvg roles
// of workflow/lora_deploy.hpp; only the adapters cross the wire. The server
// writes the final adapter vector to --out.
//
// The server writes the final parameters (raw little-endian fp32; SplitFed:
// device segment then server segment) to --out and prints one line with the
// test accuracy and the CRC-32 of the parameters. --die-* / --drop-* make a
// client leave at step T of round R (SIGKILL over MQTT, a thread that returns
// in process). SplitFed --checkpoint: the server checkpoints every round and
// resumes from FILE if it exists; --crash-round/--crash-after make it die in
// round R after serving N steps of that round: SIGKILL over MQTT (the test
// restarts it); in process the first server object stops (an exception out of
// its on_step hook, kept alive for the payloads the clients still hold) and a
// new one resumes from FILE with the same clients.
#include <array>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <future>
#include <limits>
#include <cmath>
#include <memory>
#include <string>
#include <type_traits>
#include <thread>
#include <vector>

#include <unistd.h>

#include "tinylarge/aggregate/aggregator.hpp"
#include "tinylarge/aggregate/policy.hpp"
#include "tinylarge/core/crc32.hpp"
#include "tinylarge/data/idx.hpp"
#include "tinylarge/data/partition.hpp"
#include "tinylarge/io/file.hpp"
#include "tinylarge/nn/nn.hpp"
#include "tinylarge/nn/train.hpp"
#include "tinylarge/partition/cut.hpp"
#include "tinylarge/aggregate/privacy.hpp"
#include "tinylarge/aggregate/robust.hpp"
#include "tinylarge/transport/in_process.hpp"
#include "tinylarge/workflow/split_deploy.hpp"
#include "tinylarge/workflow/federated.hpp"
#include "tinylarge/workflow/federated_deploy.hpp"
#include "tinylarge/workflow/lora_deploy.hpp"
#include "tinylarge/workflow/reptile.hpp"
#include "tinylarge/workflow/split.hpp"
#include "tinylarge/workflow/transfer_deploy.hpp"
#if defined(TINYLARGE_WITH_MPI)
#include "tinylarge/transport/mpi.hpp"
#endif
#if defined(TINYLARGE_WITH_MQTT)
#include "tinylarge/transport/mqtt.hpp"
#endif

namespace {

namespace wf = tl::workflow;

using model = tl::sequential<tl::dense<784, 64>, tl::relu, tl::dense<64, 10>>;
using partition = tl::cut<2>;
template <class Up, class Down>
using split_protocol = tl::workflow::splitfed_v1_deployment<model, partition, tl::nn::adam, tl::fedavg, Up, Down>;
/// --scheme psl: parallel split learning (one server segment, lockstep steps).
template <class Up, class Down>
using psl_protocol = tl::workflow::psl_deployment<model, partition, tl::nn::adam, tl::fedavg, Up, Down>;
/// --scheme epsl: PSL with the last-layer gradients of round(φ·b) rows per batch aggregated.
template <class Up, class Down>
using epsl_protocol = tl::workflow::epsl_deployment<model, partition, tl::nn::adam, tl::fedavg, Up, Down>;
/// --scheme vsl: the clients one after another, the device segment handed from client to client.
template <class Up, class Down>
using vsl_protocol = tl::workflow::vsl_deployment<model, partition, tl::nn::adam, tl::fedavg, Up, Down>;
/// --scheme edge_split: clusters one after another, PSL within a cluster.
template <class Up, class Down>
using edge_split_protocol = tl::workflow::edge_split_deployment<model, partition, tl::nn::adam, tl::fedavg, Up, Down>;
/// --scheme splitfed_v2: the clients one after another on one server segment.
template <class Up, class Down>
using v2_protocol = tl::workflow::splitfed_v2_deployment<model, partition, tl::nn::adam, tl::fedavg, Up, Down>;
using protocol = split_protocol<tl::codec::fp32, tl::codec::fp32>;
/// --cuts 2: multi-hop PSL (device → edge → cloud) of a deeper MLP, cut after each dense + relu
/// (64 activations cross the device → edge cut, 32 the edge → cloud cut).
using model3 = tl::sequential<tl::dense<784, 64>, tl::relu, tl::dense<64, 32>, tl::relu, tl::dense<32, 10>>;
template <class Up, class Down>
using multihop_protocol = tl::workflow::psl_deployment<model3, tl::cut<2, 4>, tl::nn::adam, tl::fedavg, Up, Down>;

struct args {
  std::string workflow, mode, dir, data_dir = "/usr/share/datasets/fashion-mnist", out, run = "nn", checkpoint;
  std::uint32_t clients = 4, rounds = 3, id = 0, batch = 32;
  std::size_t train = 2000, test = 1000, min_clients = 1;
  std::uint64_t seed = 1;
  int port = 1883;
  std::uint32_t die_round = 0, die_step = 0, drop_client = 0, crash_round = 0, crash_after = 0;
  long round_timeout_ms = 30000;
  double dirichlet = 0.0;  ///< > 0: Dirichlet(α) label skew (unequal client sizes) instead of shards
  std::string policy = "fedavg", update = "fp32", codecs = "fp32";
  double fraction = 1.0;
  bool secure = false;          ///< FedAvg with secure aggregation (aggregate/secure.hpp)
  std::string die_secure_step;  ///< with --die-round: leave before sending this secure step (shares, masked, response)
  std::string personal;         ///< transfer: client k writes its personal model to personal + "." + k
  std::string scheme = "splitfed_v1";  ///< splitfed: the split scheme, splitfed_v1, psl, epsl, splitfed_v2, vsl or edge_split
  std::size_t clusters = 2;             ///< --scheme edge_split: the clusters
  float phi = 0.5f;                     ///< --scheme epsl: the aggregation ratio φ
  std::uint32_t cuts = 1;               ///< splitfed: 2 = multi-hop (device → edge → cloud, model3)
  std::vector<std::size_t> lora_ranks;  ///< fedlora: r_k per client (empty: r_max for all)
};

[[noreturn]] void usage(const char* msg) {
  std::fprintf(stderr, "transport_nn_node: %s (see the comment at the top of nn_node.cpp)\n", msg);
  std::exit(2);
}

args parse(int argc, char** argv) {
  args a;
  int i = 1;
  if (argc < 2) usage("missing workflow");
  a.workflow = argv[i++];
  if (a.workflow != "prepare") {
    if (argc < 3) usage("missing mode");
    a.mode = argv[i++];
  }
  for (; i < argc; ++i) {
    const std::string k = argv[i];
    if (k == "--secure") {  // a flag: no value
      a.secure = true;
      continue;
    }
    if (i + 1 >= argc) usage(("missing value after " + k).c_str());
    const std::string v = argv[++i];
    const auto u = [&] { return static_cast<std::uint32_t>(std::stoul(v)); };
    if (k == "--clients") a.clients = u();
    else if (k == "--rounds") a.rounds = u();
    else if (k == "--id") a.id = u();
    else if (k == "--batch") a.batch = u();
    else if (k == "--train") a.train = std::stoul(v);
    else if (k == "--test") a.test = std::stoul(v);
    else if (k == "--min-clients") a.min_clients = std::stoul(v);
    else if (k == "--seed") a.seed = std::stoull(v);
    else if (k == "--dir") a.dir = v;
    else if (k == "--data-dir") a.data_dir = v;
    else if (k == "--out") a.out = v;
    else if (k == "--run") a.run = v;
    else if (k == "--port") a.port = std::stoi(v);
    else if (k == "--die-round" || k == "--drop-round") a.die_round = u();
    else if (k == "--die-step" || k == "--drop-step") a.die_step = u();
    else if (k == "--drop-client") a.drop_client = u();
    else if (k == "--round-timeout-ms") a.round_timeout_ms = std::stol(v);
    else if (k == "--dirichlet") a.dirichlet = std::stod(v);
    else if (k == "--checkpoint") a.checkpoint = v;
    else if (k == "--crash-round") a.crash_round = u();
    else if (k == "--crash-after") a.crash_after = u();
    else if (k == "--policy") a.policy = v;
    else if (k == "--update") a.update = v;
    else if (k == "--fraction") a.fraction = std::stod(v);
    else if (k == "--codecs") a.codecs = v;
    else if (k == "--die-secure-step") a.die_secure_step = v;
    else if (k == "--personal") a.personal = v;
    else if (k == "--scheme") a.scheme = v;
    else if (k == "--phi") a.phi = std::stof(v);
    else if (k == "--clusters") a.clusters = std::stoul(v);
    else if (k == "--cuts") a.cuts = u();
    else if (k == "--lora-ranks") {
      a.lora_ranks.clear();
      for (std::size_t p = 0; p <= v.size();) {
        const std::size_t q = std::min(v.find(',', p), v.size());
        a.lora_ranks.push_back(std::stoul(v.substr(p, q - p)));
        p = q + 1;
      }
    }
    else usage(("unknown option " + k).c_str());
  }
  if (a.workflow != "prepare" && a.workflow != "fedavg" && a.workflow != "splitfed" && a.workflow != "transfer" &&
      a.workflow != "fedlora")
    usage("workflow must be fedavg, splitfed, transfer or fedlora");
  if (a.workflow == "fedlora" && (a.mode == "workflow" || a.mode == "hostile"))
    usage("fedlora runs in the modes inproc, threads, mpi, mqtt-server and mqtt-client");
  if (!a.lora_ranks.empty() && (a.workflow != "fedlora" || a.lora_ranks.size() != a.clients))
    usage("--lora-ranks is an option of fedlora, with one rank per client");
  if (a.workflow == "transfer" && (a.mode == "threads" || a.mode == "workflow" || a.mode == "hostile"))
    usage("transfer runs in the modes inproc, mpi, mqtt-server and mqtt-client");
  if (a.dir.empty()) usage("--dir is required");
  if (a.clients == 0 || a.batch == 0 || a.rounds == 0) usage("--clients, --batch and --rounds must be positive");
  if ((!a.checkpoint.empty() || a.crash_round != 0) && a.workflow != "splitfed")
    usage("--checkpoint and --crash-* are options of the splitfed server (fedavg_node has FedAvg's)");
  if (a.crash_round != 0 && a.checkpoint.empty()) usage("--crash-round needs --checkpoint");
  if (a.codecs != "fp32" && a.codecs != "int8-fp16") usage("--codecs must be fp32 or int8-fp16");
  if (a.scheme != "splitfed_v1" && a.scheme != "psl" && a.scheme != "epsl" && a.scheme != "splitfed_v2" &&
      a.scheme != "vsl" && a.scheme != "edge_split")
    usage("--scheme must be splitfed_v1, psl, epsl, splitfed_v2, vsl or edge_split");
  if (a.clusters == 0) usage("--clusters must be positive");
  if (!(a.phi >= 0.0f && a.phi <= 1.0f)) usage("--phi must lie in [0, 1]");
  if (a.scheme != "splitfed_v1" && (a.workflow != "splitfed" || a.mode == "hostile"))
    usage("--scheme is an option of the splitfed workflow (not of its hostile mode)");
  if (a.cuts != 1 && a.cuts != 2) usage("--cuts must be 1 or 2");
  if (a.cuts == 2 && (a.workflow != "splitfed" || a.scheme != "psl" || a.mode == "hostile" || a.mode == "threads" ||
                      !a.checkpoint.empty()))
    usage("--cuts 2 (multi-hop) is an option of splitfed --scheme psl, without --checkpoint, not in mode hostile");
  if (a.mode == "mqtt-cloud" && a.cuts != 2) usage("mode mqtt-cloud is the cloud of --cuts 2");
  if (a.secure && (a.workflow != "fedavg" || a.update != "fp32" ||
                   (a.policy != "fedavg" && a.policy != "fedavgm" && a.policy != "fedprox" && a.policy != "fedadam")))
    usage("--secure is for fedavg with a linear --policy (fedavg, fedavgm, fedprox, fedadam) and fp32 updates");
  if (!a.die_secure_step.empty() && (!a.secure || (a.die_secure_step != "shares" && a.die_secure_step != "masked" &&
                                                   a.die_secure_step != "response")))
    usage("--die-secure-step (shares, masked or response) needs --secure");
  return a;
}

// ---- data --------------------------------------------------------------------

void put_be32(std::vector<std::uint8_t>& b, std::uint32_t v) {
  for (int s = 24; s >= 0; s -= 8) b.push_back(static_cast<std::uint8_t>(v >> s));
}

/// Write `idx` rows of `ds` as a raw IDX image file and label file.
void write_subset(const tl::data::dataset& ds, const std::vector<std::size_t>& idx, const std::string& prefix) {
  std::vector<std::uint8_t> img, lab;
  put_be32(img, 0x00000803u);
  put_be32(img, static_cast<std::uint32_t>(idx.size()));
  put_be32(img, 28);
  put_be32(img, 28);
  put_be32(lab, 0x00000801u);
  put_be32(lab, static_cast<std::uint32_t>(idx.size()));
  for (const std::size_t i : idx) {
    const float* p = ds.image(i);
    for (std::size_t j = 0; j < ds.features(); ++j) img.push_back(static_cast<std::uint8_t>(std::lround(p[j] * 255.0f)));
    lab.push_back(ds.labels[i]);
  }
  tl::io::write_file(prefix + "-images-idx3-ubyte", img);
  tl::io::write_file(prefix + "-labels-idx1-ubyte", lab);
}

int prepare(const args& a) {
  for (const auto s : {tl::data::split::train, tl::data::split::test}) {
    const auto ds = tl::data::load_fashion_mnist(s, a.data_dir);
    const std::size_t want = s == tl::data::split::train ? a.train : a.test;
    if (want > ds.count) usage("--train/--test larger than the data set");
    std::vector<std::size_t> idx(ds.count);
    for (std::size_t i = 0; i < idx.size(); ++i) idx[i] = i;
    tl::rng g(a.seed, s == tl::data::split::train ? 0x7a1 : 0x7e57);
    g.shuffle(idx.data(), idx.size());
    idx.resize(want);
    write_subset(ds, idx, a.dir + (s == tl::data::split::train ? "/train" : "/t10k"));
  }
  std::printf("prepare: %zu training and %zu test images of Fashion-MNIST (seed %llu) in %s\n", a.train, a.test,
              static_cast<unsigned long long>(a.seed), a.dir.c_str());
  return 0;
}

struct task_data {
  tl::data::dataset train, test;
  tl::data::partition_t parts;
  tl::nn::labelled_view<std::uint8_t> train_view() const { return {train.images.data(), train.labels.data(), train.count, 784}; }
  tl::nn::labelled_view<std::uint8_t> test_view() const { return {test.images.data(), test.labels.data(), test.count, 784}; }
};

task_data load(const args& a) {
  task_data d;
  d.train = tl::data::load_idx(a.dir + "/train-images-idx3-ubyte", a.dir + "/train-labels-idx1-ubyte");
  d.test = tl::data::load_idx(a.dir + "/t10k-images-idx3-ubyte", a.dir + "/t10k-labels-idx1-ubyte");
  tl::rng g(a.seed, 0x5a4d);
  if (a.dirichlet > 0.0)
    d.parts = tl::data::partition_dirichlet(d.train.labels, a.clients, a.dirichlet, g, 50);
  else
    d.parts = tl::data::partition_shards(d.train.labels, a.clients, 4, g);
  return d;
}

std::uint32_t crc_of(std::span<const float> w) { return tl::crc32(w.data(), w.size() * sizeof(float)); }

void write_out(const args& a, const std::vector<float>& w) {
  if (!a.out.empty())
    tl::io::write_file(a.out, {reinterpret_cast<const std::uint8_t*>(w.data()), w.size() * sizeof(float)});
}

/// A client that leaves: SIGKILL for a process (MPI/MQTT), a plain return for a thread.
[[noreturn]] void die(std::uint32_t k, std::uint32_t r, std::uint32_t t) {
  std::printf("client %u: SIGKILL to myself at round %u step %u\n", k, r, t);
  std::fflush(stdout);
  ::kill(::getpid(), SIGKILL);
  std::abort();
}

// ---- FedAvg family (workflow/federated_roles.hpp) ----------------------------

template <class Policy, class U>
struct fed_traits {
  using model = ::model;
  using aggregation = Policy;
  using optimizer = tl::nn::sgd;
  using update = U;
};

/// The same with secure aggregation (masked updates; aggregate/secure.hpp).
template <class Policy>
struct fed_traits_secure : fed_traits<Policy, tl::fp32_update> {
  static constexpr bool secure_aggregation = true;
};

/// --secure: 16 fractional bits, |w_k − w_t| clipped at 8 (N · 8 · 2^16 < 2^31 for N ≤ 4095
/// examples), t = ⌊n/2⌋ + 1 of the n clients that advertised keys.
constexpr tl::secagg::settings secure_settings{{16, 8.0f}, 0};

wf::federated_options fed_options(const args& a) {
  wf::federated_options o;
  o.rounds = a.rounds;
  o.client_fraction = a.fraction;
  o.local_epochs = 1;
  o.batch_size = a.batch;
  o.seed = a.seed;
  o.eval_every = 0;
  o.secure = secure_settings;
  return o;
}
const tl::nn::sgd client_sgd{0.05f, 0.9f};

/// Calls f(policy, update encoding) for --policy and --update.
template <class F>
int with_fed_policy(const args& a, F&& f) {
  // fp16 / int8 uploads with FedAvg only (each combination is compiled into this program).
  auto with_update = [&](auto policy) {
    if (a.update != "fp32") usage("--update fp16 and int8 go with --policy fedavg");
    return f(policy, tl::fp32_update{});
  };
  if (a.policy == "fedavg") {
    if (a.update == "fp16") return f(tl::fedavg{}, tl::fp16_update{});
    if (a.update == "int8") return f(tl::fedavg{}, tl::int8_update{});
    if (a.update != "fp32") usage("--update must be fp32, fp16 or int8");
    return f(tl::fedavg{}, tl::fp32_update{});
  }
  if (a.policy == "fedavgm") return with_update(tl::fedavgm{1.0f, 0.9f});
  if (a.policy == "fedprox") return with_update(tl::fedprox{.proximal_mu = 0.1f});
  if (a.policy == "fedadam") return with_update(tl::fedadam{.eta = 0.01f});
  if (a.policy == "median") return with_update(tl::coordinate_median{});
  if (a.policy == "dp") return with_update(tl::dp_fixed_clipping<tl::fedavg>{.noise_multiplier = 0.1f, .clipping_norm = 5.0f});
  if (a.policy == "reptile") return with_update(wf::reptile_step{.epsilon = 0.5f});  // federated_reptile's server step
  usage("--policy must be fedavg, fedavgm, fedprox, fedadam, median, dp or reptile");
}

void fed_summary(const char* who, const args& a, const task_data& d, std::span<const float> global,
                 const std::vector<std::size_t>& per_round) {
  std::vector<float> w(global.begin(), global.end());
  tl::nn::network<model> net;
  std::copy(w.begin(), w.end(), net.parameters().begin());
  const auto e = tl::nn::evaluate(net, tl::nn::softmax_cross_entropy{}, d.test_view());
  write_out(a, w);
  std::string rounds;
  for (const auto n : per_round) rounds += std::to_string(n) + " ";
  std::printf("%s fedavg (%s, %s updates) server: %zu rounds, updates per round [ %s], test accuracy %.2f%% (%zu test "
              "images), crc32(final) = %08x\n",
              who, a.policy.c_str(), a.update.c_str(), per_round.size(), rounds.c_str(), 100.0 * e.accuracy,
              d.test.count, crc_of(w));
}

/// The in-process simulation: federated_averaging, every role in this thread.
int fedavg_simulate(const args& a, const task_data& d) {
  return with_fed_policy(a, [&]<class Policy, class U>(const Policy& policy, U) {
    const auto run = [&]<class Traits>() {
      const wf::federated_dataset fd = wf::make_federated_dataset(d.train, d.parts);
      wf::federated_averaging<Traits> fl(fed_options(a), policy, client_sgd);
      fl.initialize(a.seed);
      (void)fl.run(fd.clients, tl::nn::labelled_view<std::uint8_t>{nullptr, nullptr, 0, 784});
      std::vector<std::size_t> per_round;
      for (const auto& l : fl.log()) per_round.push_back(l.aggregation.updated() ? l.aggregation.accepted.size() : 0);
      fed_summary(a.secure ? "in_process (federated_averaging, secure aggregation)" : "in_process (federated_averaging)",
                  a, d, fl.global(), per_round);
      return 0;
    };
    if constexpr (tl::linear_aggregation<Policy> && std::is_same_v<U, tl::fp32_update>)
      if (a.secure) return run.template operator()<fed_traits_secure<Policy>>();
    return run.template operator()<fed_traits<Policy, U>>();
  });
}

template <class Transport>
int fedavg_serve(Transport& net, const args& a, const task_data& d) {
  return with_fed_policy(a, [&]<class Policy, class U>(const Policy& policy, U) {
    using fl_type = wf::federated_averaging<fed_traits<Policy, U>>;
    typename fl_type::network_type init;
    init.initialize(a.seed);
    wf::fedavg_server<Policy, U> server(policy, fl_type::param_count, a.seed);
    server.set_global(init.parameters());
    wf::federated_server_options opt;
    opt.rounds = a.rounds;
    opt.client_fraction = a.fraction;
    opt.min_clients = a.min_clients;
    opt.round_timeout = std::chrono::milliseconds{a.round_timeout_ms};
    if (a.secure) opt.secure = wf::secure_deployment{secure_settings};
    wf::federated_server_report rep;
    const tl::status s = wf::run_federated_server(net, server, opt, &rep);
    if (!s.ok()) {
      std::fprintf(stderr, "%s fedavg server: %s (%s)\n", Transport::name(), s.message, tl::to_string(s.code));
      return 1;
    }
    fed_summary(Transport::name(), a, d, server.global(), rep.updates_per_round);
    return 0;
  });
}

/// A FedAvg client; --die-round R (with --drop-client K: only client K) makes it leave at the model of
/// round R, or with --die-secure-step S before it sends secure step S of round R: SIGKILL for a process,
/// a return for a thread (`thread_mode`, where only --drop-client K leaves).
template <class Transport>
int fedavg_client(Transport& net, const args& a, const task_data& d, bool thread_mode = false) {
  const tl::endpoint_id k = net.id();
  wf::federated_client_options opt;
  opt.idle_timeout = std::chrono::milliseconds{std::max<long>(30000, 3 * a.round_timeout_ms)};
  if (a.secure) opt.secure = wf::secure_deployment{secure_settings};
  const bool leaves = a.die_round != 0 && (thread_mode ? a.drop_client == k : (a.drop_client == 0 || a.drop_client == k));
  if (leaves && a.die_secure_step.empty())
    opt.on_model = [&](std::uint32_t r) {
      if (r == a.die_round && !thread_mode) die(k, r, 0);
      return r != a.die_round;
    };
  if (leaves && !a.die_secure_step.empty())
    opt.on_secure_step = [&](std::uint32_t r, tl::wire::secagg_step st) {
      const tl::wire::secagg_step at = a.die_secure_step == "shares"   ? tl::wire::secagg_step::shares
                                       : a.die_secure_step == "masked" ? tl::wire::secagg_step::masked
                                                                       : tl::wire::secagg_step::unmask_response;
      if (r != a.die_round || st != at) return true;
      std::printf("client %u: leaving before secure step %s of round %u\n", k, a.die_secure_step.c_str(), r);
      std::fflush(stdout);
      if (!thread_mode) die(k, r, 0);
      return false;
    };
  return with_fed_policy(a, [&]<class Policy, class U>(const Policy& policy, U) {
    const wf::federated_dataset fd = wf::make_federated_dataset(d.train, d.parts);
    wf::fedavg_training<fed_traits<Policy, U>> training(fed_options(a), client_sgd, wf::detail::proximal_mu_of(policy),
                                                        fd.clients);
    wf::fedavg_client<wf::fedavg_training<fed_traits<Policy, U>>, U> role(training, fed_options(a).int8_chunk);
    const tl::status s = wf::run_federated_client(net, role, opt);
    if (!s.ok()) {
      std::fprintf(stderr, "%s fedavg client %u: %s\n", Transport::name(), k, s.message);
      return 1;
    }
    return 0;
  });
}

// ---- Federated transfer learning (workflow/transfer.hpp, workflow/transfer_deploy.hpp) ----

using transfer_type = wf::federated_transfer<fed_traits<tl::fedavg, tl::fp32_update>>;

transfer_type make_transfer(const args& a) {
  const wf::transfer_options to{.pretrain_epochs = 2, .pretrain_batch = a.batch, .personalize_epochs = 2,
                                .personalize_batch = a.batch, .frozen_layers = 1, .holdout_fraction = 0.25,
                                .seed = a.seed};
  return transfer_type(to, fed_options(a), {}, client_sgd);
}
/// The server's own data (first half of the test subset) and the test set (second half).
tl::nn::labelled_view<std::uint8_t> transfer_server_data(const task_data& d) {
  return {d.test.images.data(), d.test.labels.data(), d.test.count / 2, 784};
}
tl::nn::labelled_view<std::uint8_t> transfer_test(const task_data& d) {
  const std::size_t h = d.test.count / 2;
  return {d.test.images.data() + h * 784, d.test.labels.data() + h, d.test.count - h, 784};
}
void write_personal(const args& a, std::size_t k, std::span<const float> w, double before, double after) {
  if (!a.personal.empty())
    tl::io::write_file(a.personal + "." + std::to_string(k + 1),
                       {reinterpret_cast<const std::uint8_t*>(w.data()), w.size() * sizeof(float)});
  std::printf("transfer client %zu: holdout accuracy %.2f%% global -> %.2f%% personal, crc32(personal) = %08x\n", k + 1,
              100.0 * before, 100.0 * after, crc_of(w));
}
void transfer_summary(const char* who, const args& a, const task_data& d, std::span<const float> pretrained,
                      std::span<const float> global) {
  std::vector<float> w(global.begin(), global.end());
  tl::nn::network<model> net;
  std::copy(pretrained.begin(), pretrained.end(), net.parameters().begin());
  const double pre = tl::nn::evaluate(net, tl::nn::softmax_cross_entropy{}, transfer_test(d)).accuracy;
  std::copy(w.begin(), w.end(), net.parameters().begin());
  const double fed = tl::nn::evaluate(net, tl::nn::softmax_cross_entropy{}, transfer_test(d)).accuracy;
  write_out(a, w);
  std::printf("%s transfer server: test accuracy %.2f%% pre-trained -> %.2f%% after %u rounds, crc32(pre-trained) = "
              "%08x, crc32(final) = %08x\n",
              who, 100.0 * pre, 100.0 * fed, a.rounds, crc_of(pretrained), crc_of(w));
}

/// The simulation: federated_transfer::run, every role in this thread.
int transfer_simulate(const args& a, const task_data& d) {
  transfer_type ftl = make_transfer(a);
  const wf::federated_dataset fd = wf::make_federated_dataset(d.train, d.parts);
  std::vector<std::vector<float>> personal(fd.clients.size());
  const wf::transfer_result r = ftl.run(transfer_server_data(d), fd.clients, transfer_test(d),
                                        [&](std::size_t k, std::span<const float> w) { personal[k].assign(w.begin(), w.end()); });
  transfer_summary("in_process (federated_transfer::run)", a, d, ftl.pretrained(), ftl.federated().global());
  // Each client's holdout accuracies again, from its own model (run reports the means).
  for (std::size_t k = 0; k < personal.size(); ++k) {
    const transfer_type::client_split part = ftl.split(fd.clients[k]);
    tl::nn::network<model> net;
    std::copy(ftl.federated().global().begin(), ftl.federated().global().end(), net.parameters().begin());
    const double before = tl::nn::evaluate(net, tl::nn::softmax_cross_entropy{}, part.holdout).accuracy;
    std::copy(personal[k].begin(), personal[k].end(), net.parameters().begin());
    const double after = tl::nn::evaluate(net, tl::nn::softmax_cross_entropy{}, part.holdout).accuracy;
    write_personal(a, k, personal[k], before, after);
  }
  std::printf("transfer: mean holdout accuracy %.2f%% global -> %.2f%% personal\n", 100.0 * r.global_on_clients,
              100.0 * r.personalized_on_clients);
  return 0;
}

template <class Transport>
int transfer_serve(Transport& net, const args& a, const task_data& d) {
  transfer_type ftl = make_transfer(a);
  wf::federated_server_options opt;
  opt.min_clients = a.min_clients;
  opt.round_timeout = std::chrono::milliseconds{a.round_timeout_ms};
  const tl::status s = wf::run_transfer_server(net, ftl, transfer_server_data(d), opt);
  if (!s.ok()) {
    std::fprintf(stderr, "%s transfer server: %s (%s)\n", Transport::name(), s.message, tl::to_string(s.code));
    return 1;
  }
  transfer_summary(Transport::name(), a, d, ftl.pretrained(), ftl.federated().global());
  return 0;
}

template <class Transport>
int transfer_client(Transport& net, const args& a, const task_data& d) {
  const std::size_t k = net.id() - 1;
  transfer_type ftl = make_transfer(a);
  const wf::federated_dataset fd = wf::make_federated_dataset(d.train, d.parts);
  transfer_type::network_type personal;
  transfer_type::personalization p;
  wf::federated_client_options opt;
  opt.idle_timeout = std::chrono::milliseconds{std::max<long>(30000, 3 * a.round_timeout_ms)};
  const tl::status s = wf::run_transfer_client(net, ftl, fd.clients[k], personal, &p, opt);
  if (!s.ok()) {
    std::fprintf(stderr, "%s transfer client %zu: %s\n", Transport::name(), k + 1, s.message);
    return 1;
  }
  write_personal(a, k, personal.parameters(), p.global_accuracy, p.personal_accuracy);
  return 0;
}

// ---- Federated LoRA (workflow/lora.hpp, workflow/lora_deploy.hpp) ---------------

using lora_type = wf::federated_lora<fed_traits<tl::fedavg, tl::fp32_update>>;

/// The run every party builds.
wf::lora_options lora_options_of(const args& a) {
  return {.max_rank = 4, .alpha = 8.0f, .learning_rate = 0.05f, .client_ranks = a.lora_ranks, .rounds = a.rounds,
          .client_fraction = a.fraction, .local_epochs = 1, .batch_size = a.batch, .seed = a.seed};
}
/// The base W0, pre-trained by every party the same way (seeded: the same bits in each process).
void load_lora_base(lora_type& fl, const args& a, const task_data& d) {
  tl::nn::network<model> base;
  base.initialize(a.seed);
  tl::rng r(a.seed, 0xba5e);
  (void)wf::train_locally(base, client_sgd, transfer_server_data(d), 2, a.batch, r);
  fl.set_base(base.parameters());
}
void lora_summary(const char* who, const args& a, const task_data& d, lora_type& fl, std::size_t rejected) {
  const std::vector<float> w(fl.adapters().begin(), fl.adapters().end());
  std::vector<float> none(w.size(), 0.0f);  // B = 0: the base model
  lora_type::merged_network_type net;
  fl.merge(net, none, fl.options().max_rank);
  const double base = tl::nn::evaluate(net, tl::nn::softmax_cross_entropy{}, transfer_test(d)).accuracy;
  const double tuned = fl.evaluate(transfer_test(d));
  write_out(a, w);
  std::string ranks;
  for (const std::size_t r : fl.options().client_ranks) ranks += std::to_string(r) + " ";
  std::printf("%s fedlora server: ranks [ %s], %u rounds, %zu adapter values (%zu base parameters frozen), test "
              "accuracy %.2f%% base -> %.2f%% adapted, %zu updates rejected, crc32(adapters) = %08x\n",
              who, ranks.empty() ? "4 for all " : ranks.c_str(), a.rounds, w.size(), lora_type::param_count,
              100.0 * base, 100.0 * tuned, rejected, crc_of(w));
}

/// The simulation: federated_lora::run, every role in this thread.
int lora_simulate(const args& a, const task_data& d) {
  lora_type fl(lora_options_of(a));
  load_lora_base(fl, a, d);
  const wf::federated_dataset fd = wf::make_federated_dataset(d.train, d.parts);
  (void)fl.run(fd.clients, {});
  lora_summary("in_process (federated_lora::run)", a, d, fl, fl.rejected_updates());
  return 0;
}

template <class Transport>
int lora_serve(Transport& net, const args& a, const task_data& d) {
  lora_type fl(lora_options_of(a));
  load_lora_base(fl, a, d);
  wf::federated_server_options opt;
  opt.min_clients = a.min_clients;
  opt.round_timeout = std::chrono::milliseconds{a.round_timeout_ms};
  wf::federated_server_report rep;
  const tl::status s = wf::run_lora_server(net, fl, opt, &rep);
  if (!s.ok()) {
    std::fprintf(stderr, "%s fedlora server: %s (%s)\n", Transport::name(), s.message, tl::to_string(s.code));
    return 1;
  }
  lora_summary(Transport::name(), a, d, fl, static_cast<std::size_t>(rep.rejected_frames));
  return 0;
}

template <class Transport>
int lora_client(Transport& net, const args& a, const task_data& d) {
  const std::size_t k = net.id() - 1;
  lora_type fl(lora_options_of(a));
  load_lora_base(fl, a, d);
  const wf::federated_dataset fd = wf::make_federated_dataset(d.train, d.parts);
  wf::federated_client_options opt;
  opt.idle_timeout = std::chrono::milliseconds{std::max<long>(30000, 3 * a.round_timeout_ms)};
  const tl::status s = wf::run_lora_client(net, fl, fd.clients[k], opt);
  if (!s.ok()) {
    std::fprintf(stderr, "%s fedlora client %zu: %s\n", Transport::name(), k + 1, s.message);
    return 1;
  }
  return 0;
}

// ---- SplitFedV1 ----------------------------------------------------------------

/// workflow/split.hpp's SplitFedV1 iterations per round: ⌈(n_total / clients) / b⌉.
std::uint32_t split_steps(const args& a, const task_data& d) {
  std::size_t total = 0;
  for (const auto& p : d.parts) total += p.size();
  return static_cast<std::uint32_t>(std::max<std::size_t>(1, (total / d.parts.size() + a.batch - 1) / a.batch));
}

/// The batches of client c (0-based), drawn as workflow/split.hpp draws them:
/// the client's samples shuffled by rng(seed, 0x5a17 + c); when a client runs
/// out, it reshuffles with rng(seed + 1 + j, 0x5a17 + c), where j counts the
/// reshuffles of *all* clients in the simulation's order (SplitFedV1, PSL and EPSL:
/// rounds, then steps, then clients — step t of every client before step
/// t + 1; SplitFedV2 and VSL: rounds, then clients, then steps; EdgeSplit: rounds, then
/// clusters, then steps, then the cluster's clients). Every process computes j for its client from the
/// (seeded, shared) partition sizes, so a distributed client draws the same
/// batches as the simulated one.
///
/// Replayable: the first call for step 0 of a round records the position; a
/// second call for step 0 of the same round (the client redoes the round
/// after a server restart) rewinds to it, so the same (round, step) gives the
/// same batch. Calls out of that order raise.
class split_batches {
 public:
  split_batches(const args& a, const task_data& d, std::size_t c, std::uint32_t steps) : d_(&d), c_(c) {
    const std::size_t n = d.parts.size();
    std::vector<std::size_t> cur(n, 0);
    std::uint64_t counter = 0;
    const auto draw = [&](std::size_t cc) {
      for (std::size_t i = 0; i < a.batch; ++i) {
        if (cur[cc] == d.parts[cc].size()) {
          cur[cc] = 0;
          if (cc == c) reshuffle_ids_.push_back(counter);
          ++counter;
        }
        ++cur[cc];
      }
    };
    for (std::uint32_t r = 0; r < a.rounds; ++r) {
      if (a.scheme == "splitfed_v2" || a.scheme == "vsl") {
        for (std::size_t cc = 0; cc < n; ++cc)
          for (std::uint32_t t = 0; t < steps; ++t) draw(cc);
      } else if (a.scheme == "edge_split") {
        const std::size_t groups = std::min(a.clusters, n);
        for (std::size_t g = 0; g < groups; ++g)
          for (std::uint32_t t = 0; t < steps; ++t)
            for (std::size_t cc = g * n / groups; cc < (g + 1) * n / groups; ++cc) draw(cc);
      } else {
        for (std::uint32_t t = 0; t < steps; ++t)
          for (std::size_t cc = 0; cc < n; ++cc) draw(cc);
      }
    }
    seed_ = a.seed;
    batch_ = a.batch;
    order_ = d.parts[c];
    tl::rng g(a.seed, 0x5a17ULL + c);
    g.shuffle(order_.data(), order_.size());
  }
  std::size_t operator()(std::uint32_t round, std::uint32_t step, float* x, std::uint8_t* y) {
    if (step == 0 && started_ && round == round_) {  // the round again, from its start
      cursor_ = start_cursor_;
      next_ = start_next_;
      order_ = start_order_;
      ++rewinds_;
    } else if (step == 0) {
      TINYLARGE_REQUIRE(!started_ || round > round_, tl::errc::invalid_argument, "split_batches: a round went backwards");
      round_ = round;
      start_cursor_ = cursor_;
      start_next_ = next_;
      start_order_ = order_;
      started_ = true;
    } else {
      TINYLARGE_REQUIRE(started_ && round == round_ && step == step_ + 1, tl::errc::invalid_argument,
                        "split_batches: batch requested out of order");
    }
    step_ = step;
    for (std::size_t i = 0; i < batch_; ++i) {
      if (cursor_ == order_.size()) {
        cursor_ = 0;
        TINYLARGE_REQUIRE(next_ < reshuffle_ids_.size(), tl::errc::invalid_argument,
                          "split_batches: more batches than the schedule was computed for");
        tl::rng g(seed_ + 1 + reshuffle_ids_[next_++], 0x5a17ULL + c_);
        g.shuffle(order_.data(), order_.size());
      }
      const std::size_t r = order_[cursor_++];
      std::copy_n(d_->train.image(r), 784, x + i * 784);
      y[i] = d_->train.labels[r];
    }
    return batch_;
  }
  /// How often a round was replayed from its start.
  std::uint32_t rewinds() const noexcept { return rewinds_; }

 private:
  const task_data* d_;
  std::size_t c_;
  std::uint64_t seed_ = 0;
  std::size_t batch_ = 0, cursor_ = 0, next_ = 0;
  std::vector<std::size_t> order_;
  std::vector<std::uint64_t> reshuffle_ids_;
  bool started_ = false;
  std::uint32_t round_ = 0, step_ = 0, rewinds_ = 0;
  std::size_t start_cursor_ = 0, start_next_ = 0;
  std::vector<std::size_t> start_order_;
};

/// The whole model of the deployment P initialised from the seed (its segments, in order).
template <class P>
std::vector<float> split_initial(const args& a) {
  tl::nn::network<typename P::model> full;
  full.initialize(a.seed);
  return {full.parameters().begin(), full.parameters().end()};
}

/// The one-cut model's initial segments (the hostile peers' server).
void split_init(const args& a, std::vector<float>& dev, std::vector<float>& srv) {
  const std::vector<float> w = split_initial<protocol>(a);
  constexpr std::size_t nd = protocol::device_model::param_count;
  dev.assign(w.begin(), w.begin() + nd);
  srv.assign(w.begin() + nd, w.end());
}

std::string hex_of(std::uint32_t v) {
  char buf[9];
  std::snprintf(buf, sizeof buf, "%08x", v);
  return buf;
}

/// Accuracy of the whole model P::model with parameters `all` (its segments in order) on the
/// test set, and the printout: the CRC-32 of each segment and of the whole.
template <class P>
int split_report(const args& a, const task_data& d, const char* transport, std::span<const float> all,
                 const std::string& extra) {
  tl::nn::network<typename P::model> net;
  TINYLARGE_REQUIRE(all.size() == net.parameters().size(), tl::errc::shape_mismatch, "split_report: wrong size");
  std::copy(all.begin(), all.end(), net.parameters().begin());
  std::size_t hits = 0;
  for (std::size_t s = 0; s < d.test.count; s += 256) {
    const std::size_t b = std::min<std::size_t>(256, d.test.count - s);
    const float* o = net.forward(d.test.image(s), b, false);
    for (std::size_t i = 0; i < b; ++i) {
      std::size_t best = 0;
      for (std::size_t j = 1; j < 10; ++j) best = o[i * 10 + j] > o[i * 10 + best] ? j : best;
      hits += best == d.test.labels[s + i] ? 1 : 0;
    }
  }
  write_out(a, std::vector<float>(all.begin(), all.end()));
  constexpr std::size_t nd = P::device_model::param_count, ns = P::server_model::param_count;
  std::string segs = "crc32(device) = " + hex_of(crc_of(all.first(nd)));
  if constexpr (P::multi_hop)
    segs += ", crc32(edge) = " + hex_of(crc_of(all.subspan(nd, ns))) + ", crc32(cloud) = " + hex_of(crc_of(all.subspan(nd + ns)));
  else
    segs += ", crc32(server) = " + hex_of(crc_of(all.subspan(nd)));
  std::printf("%s splitfed (%s%s): %s test accuracy %.2f%% (%zu test images), %s, crc32(final) = %08x\n", transport,
              a.scheme.c_str(), P::multi_hop ? ", multi-hop" : "", extra.c_str(),
              100.0 * static_cast<double>(hits) / static_cast<double>(d.test.count), d.test.count, segs.c_str(),
              crc_of(all));
  return 0;
}

/// The in-process stand-in for a SIGKILL of the split server (see --crash-round).
struct simulated_crash {};

/// Calls f.template operator()<P>() with the SplitFedV1 deployment P of the
/// --codecs (uplink-downlink) choice.
template <class F>
int with_split_codecs(const args& a, F&& f) {
  if (a.cuts == 2) {  // multi-hop PSL (parse allows no other scheme)
    if (a.codecs == "int8-fp16") return f.template operator()<multihop_protocol<tl::codec::int8, tl::codec::fp16>>();
    return f.template operator()<multihop_protocol<tl::codec::fp32, tl::codec::fp32>>();
  }
  if (a.scheme == "splitfed_v2") {
    // (fp32 only: the codecs run through the same functions for every scheme, and each
    // deployment type compiled into this ASan build costs the transport step ~25 s of CPU.)
    if (a.codecs != "fp32") usage("--scheme splitfed_v2 runs with --codecs fp32 in this test program");
    return f.template operator()<v2_protocol<tl::codec::fp32, tl::codec::fp32>>();
  }
  if (a.scheme == "psl") {
    if (a.codecs == "int8-fp16") return f.template operator()<psl_protocol<tl::codec::int8, tl::codec::fp16>>();
    return f.template operator()<psl_protocol<tl::codec::fp32, tl::codec::fp32>>();
  }
  if (a.scheme == "edge_split") {
    if (a.codecs != "fp32") usage("--scheme edge_split runs with --codecs fp32 in this test program");
    return f.template operator()<edge_split_protocol<tl::codec::fp32, tl::codec::fp32>>();
  }
  if (a.scheme == "vsl") {
    if (a.codecs != "fp32") usage("--scheme vsl runs with --codecs fp32 in this test program");
    return f.template operator()<vsl_protocol<tl::codec::fp32, tl::codec::fp32>>();
  }
  if (a.scheme == "epsl") {
    // (fp32 only, as splitfed_v2: the codecs' functions are the other schemes'.)
    if (a.codecs != "fp32") usage("--scheme epsl runs with --codecs fp32 in this test program");
    return f.template operator()<epsl_protocol<tl::codec::fp32, tl::codec::fp32>>();
  }
  if (a.codecs == "int8-fp16") return f.template operator()<split_protocol<tl::codec::int8, tl::codec::fp16>>();
  return f.template operator()<protocol>();
}

/// A codec's message size for n values as partition/codec.hpp documents it
/// (written out here, not taken from the codec: the test of the wire bytes).
std::size_t documented_bytes(const char* codec, std::size_t n) {
  const std::string c = codec;
  if (c == "fp32") return 4 * n;
  if (c == "fp16") return 2 * n;
  if (c == "int8") return n + 8;
  usage("documented_bytes: a codec this test does not know");
}

/// The split server (the edge when P is multi-hop: `link` is then its link to the cloud).
template <class P, class Transport, class Upstream>
int split_serve(Transport& net, Upstream* link, const args& a, const task_data& d) {
  const std::vector<float> init = split_initial<P>(a);
  constexpr std::size_t nd = P::device_model::param_count, ns = P::server_model::param_count;
  const std::vector<float> dev(init.begin(), init.begin() + nd), srv(init.begin() + nd, init.begin() + nd + ns);
  tl::workflow::splitfed_server_options o;
  o.rounds = a.rounds;
  o.steps_per_round = split_steps(a, d);
  o.max_batch = a.batch;
  o.min_clients = a.min_clients;
  o.round_timeout = std::chrono::milliseconds{a.round_timeout_ms};
  o.checkpoint_path = a.checkpoint;
  o.phi = a.phi;
  o.clusters = a.clusters;
  constexpr bool in_process = std::is_same_v<Transport, tl::in_process>;
  std::unique_ptr<typename P::server> crashed;  // in process: kept alive, the clients may still hold its payloads
  if (a.crash_round != 0) {
    o.on_step = [&](std::uint32_t r, std::uint64_t n) {
      if (r != a.crash_round || n < a.crash_after) return;
      std::printf("%s splitfed server: %s in round %u after %llu steps\n", Transport::name(),
                  in_process ? "simulated crash" : "SIGKILL to myself", r, static_cast<unsigned long long>(n));
      std::fflush(stdout);
      if constexpr (in_process) throw simulated_crash{};
      ::kill(::getpid(), SIGKILL);
      std::abort();
    };
    if constexpr (in_process && !P::multi_hop) {  // (--crash-round needs --checkpoint: not with --cuts 2)
      crashed = std::make_unique<typename P::server>(tl::nn::adam{}, tl::fedavg{}, dev, srv);
      try {
        const tl::status s = crashed->run(net, o);
        std::fprintf(stderr, "splitfed server: did not reach the crash point (%s)\n", s.message);
        return 1;
      } catch (const simulated_crash&) {
      }
      o.on_step = nullptr;  // the restarted server runs to the end
    }
  }
  // A restarted server starts from the initial segments: the checkpoint replaces them.
  typename P::server server(tl::nn::adam{}, tl::fedavg{}, dev, srv);
  tl::workflow::splitfed_server_report rep;
  tl::status s;
  if constexpr (P::multi_hop) {
    if (link == nullptr) usage("--cuts 2: the edge has no link to the cloud");
    s = server.run(net, *link, o, &rep);
  } else {
    (void)link;
    s = server.run(net, o, &rep);
  }
  if (!s.ok()) {
    std::fprintf(stderr, "%s splitfed server: %s (%s)\n", Transport::name(), s.message, tl::to_string(s.code));
    return 1;
  }
  // The wire bytes of a step: the codecs' documented sizes for b·cut values (+ b label bytes up).
  const std::size_t values = a.batch * P::cut;
  const std::size_t up = documented_bytes(P::uplink_codec::name(), values) + a.batch;
  const std::size_t down = documented_bytes(P::downlink_codec::name(), values);
  std::printf("%s splitfed wire bytes per step (batch %u, cut %zu): smashed %s %zu + 52 frame, gradient %s %zu + 52 frame\n",
              Transport::name(), a.batch, P::cut, P::uplink_codec::name(), up,
              P::downlink_codec::name(), down);
  if (rep.steps_served == 0 || rep.smashed_bytes != rep.steps_served * up || rep.gradient_bytes != rep.steps_served * down) {
    std::fprintf(stderr, "splitfed server: payload bytes %llu up / %llu down over %llu steps differ from the codecs' sizes\n",
                 static_cast<unsigned long long>(rep.smashed_bytes), static_cast<unsigned long long>(rep.gradient_bytes),
                 static_cast<unsigned long long>(rep.steps_served));
    return 1;
  }
  std::string per_round, loss;
  for (const auto n : rep.clients_per_round) per_round += std::to_string(n) + " ";
  for (const double l : rep.train_loss) loss += std::to_string(l).substr(0, 6) + " ";
  const std::string resumed = rep.first_round > 1 || rep.restarts > 0
                                  ? "resumed at round " + std::to_string(rep.first_round) + " (restart epoch " +
                                        std::to_string(rep.restarts) + "; frames dropped " +
                                        std::to_string(rep.dropped_frames) + "), "
                                  : "";
  std::vector<float> all(server.device_parameters().begin(), server.device_parameters().end());
  all.insert(all.end(), server.server_parameters().begin(), server.server_parameters().end());
  if constexpr (P::multi_hop) all.insert(all.end(), server.cloud_parameters().begin(), server.cloud_parameters().end());
  return split_report<P>(a, d, Transport::name(), all,
                      resumed + std::to_string(rep.rounds_completed) + " rounds of " + std::to_string(o.steps_per_round) +
                          " steps, clients per round [ " + per_round + "], server loss per round [ " + loss +
                          "], steps served " + std::to_string(rep.steps_served) + ",");
}

template <class P, class Transport>
int split_client(Transport& net, const args& a, const task_data& d, bool thread_mode = false) {
  const tl::endpoint_id k = net.id();
  const std::uint32_t steps = split_steps(a, d);
  typename P::client c(tl::nn::adam{}, static_cast<std::int64_t>(d.parts[k - 1].size()), a.batch);
  split_batches batches(a, d, k - 1, steps);
  tl::workflow::splitfed_client_options o;
  o.idle_timeout = std::chrono::milliseconds{std::max<long>(30000, 3 * a.round_timeout_ms)};
  const bool dies = a.die_round != 0 && (a.drop_client == 0 || a.drop_client == k);
  if (dies)
    o.on_step = [&](std::uint32_t r, std::uint32_t t) {
      if (r == a.die_round && t == a.die_step) {
        if (thread_mode) return false;  // in process: the thread leaves, sends nothing more
        die(k, r, t);
      }
      return true;
    };
  o.on_restart = [&](std::uint32_t r) {
    std::printf("%s splitfed client %u: the server restarted, redoing round %u from step 0\n", Transport::name(), k, r);
    std::fflush(stdout);
  };
  const tl::status s =
      c.run(net, [&](std::uint32_t r, std::uint32_t t, float* x, std::uint8_t* y) { return batches(r, t, x, y); }, o);
  if (!s.ok()) {
    std::fprintf(stderr, "%s splitfed client %u: %s\n", Transport::name(), k, s.message);
    return 1;
  }
  return 0;
}

/// Multi-hop: the cloud (segment 2 of model3), the edge's one client.
/// `linger` runs before the cloud object ends (in process: until the edge has read the final
/// segment, a zero-copy payload of the cloud's).
template <class P, class Transport>
int split_cloud(Transport& net, const args& a, const std::function<void()>& linger) {
  const std::vector<float> init = split_initial<P>(a);
  constexpr std::size_t nd = P::device_model::param_count, ns = P::server_model::param_count;
  typename P::cloud cloud(tl::nn::adam{}, std::span<const float>(init).subspan(nd + ns));
  tl::workflow::split_cloud_options o;
  o.max_rows = static_cast<std::size_t>(a.clients) * a.batch;
  o.idle_timeout = std::chrono::milliseconds{std::max<long>(30000, 3 * a.round_timeout_ms)};
  tl::workflow::split_cloud_report rep;
  const tl::status s = cloud.run(net, o, &rep);
  if (linger) linger();
  if (!s.ok()) {
    std::fprintf(stderr, "%s split cloud: %s (%s)\n", Transport::name(), s.message, tl::to_string(s.code));
    return 1;
  }
  std::string loss;
  for (const double l : rep.train_loss) loss += std::to_string(l).substr(0, 6) + " ";
  std::printf("%s split cloud: steps served %llu, frames dropped %llu, loss per round [ %s], crc32(cloud) = %08x\n",
              Transport::name(), static_cast<unsigned long long>(rep.steps_served),
              static_cast<unsigned long long>(rep.dropped_frames), loss.c_str(), crc_of(cloud.parameters()));
  return 0;
}

/// The traits of workflow/split.hpp's in-process engine with the model, cuts and codecs of the deployment `Protocol`.
template <class Protocol>
struct split_traits {
  using model = typename Protocol::model;
  using partition = typename Protocol::partition;
  using optimizer = tl::nn::adam;
  using aggregation = tl::fedavg;
  using uplink_codec = typename Protocol::uplink_codec;
  using downlink_codec = typename Protocol::downlink_codec;
};

/// workflow/split.hpp's in-process engine of the deployment's scheme (SplitFedV1, PSL, EPSL,
/// SplitFedV2) with the same model, data, seeds and codecs.
template <class Protocol>
int split_workflow(const args& a, const task_data& d) {
  using traits = split_traits<Protocol>;
  using engine = tl::split_learning<traits, typename Protocol::scheme>;
  constexpr bool epsl = std::is_same_v<typename Protocol::scheme, tl::split_scheme::epsl>;
  engine run{{.rounds = a.rounds,
              .batch_size = a.batch,
              .phi = epsl ? a.phi : 0.0f,
              .clusters = a.clusters,
              .seed = a.seed,
              .evaluate_every = 0}};
  const auto train = d.train_view();
  const auto test = d.test_view();
  const auto rep = run.train(train, d.parts, &test);
  std::string sizes;
  for (const auto& p : d.parts) sizes += std::to_string(p.size()) + " ";
  std::printf("workflow/split.hpp: client sizes [ %s]\n", sizes.c_str());
  const auto w = run.global_parameters();
  return split_report<Protocol>(a, d, "workflow/split.hpp", w,
                      std::to_string(rep.rounds.size()) + " rounds of " + std::to_string(run.steps_per_round()) +
                          " steps,");
}

// ---- hostile peers (in process) ------------------------------------------------

int failures = 0;
void expect(bool ok, const char* what) {
  std::printf("  %s: %s\n", ok ? "ok  " : "FAIL", what);
  if (!ok) ++failures;
}

/// Malformed split traffic in both directions, in process:
///  (1) endpoint 4 is hostile: every round it sends a smashed frame of a
///      wrong size, one for a step out of order, an update before its steps,
///      then a frame with a bad value (round 1: label 10, round 2: a NaN
///      activation, round 3: label 2.5): the server drops the first three,
///      rejects the last and excludes endpoint 4 from the round; in round 4
///      it runs every step correctly and then sends a NaN update, which the
///      aggregation refuses (its server copy is left out too); the rounds
///      complete from clients 1..3 and the model stays finite;
///  (2) a fake server answers a real client with a gradient of the wrong size
///      and then with a NaN gradient: the client stops with `corrupt` and
///      `non_finite` and a message that says why.
int split_hostile(const args& a, const task_data& d) {
  constexpr std::size_t s = protocol::cut;
  std::printf("splitfed hostile peers:\n");
  {
    tl::in_process::hub net(5);
    std::vector<std::thread> threads;
    args b = a;
    b.die_round = 0;
    b.rounds = 4;  // the server below runs 4 rounds
    for (std::uint32_t k = 1; k <= 3; ++k)
      threads.emplace_back([&, k] {
        tl::in_process ep(net, k);
        (void)split_client<protocol>(ep, b, d, true);
      });
    threads.emplace_back([&] {
      tl::in_process ep(net, 4);
      std::vector<std::vector<float>> bufs;  // zero-copy: keep every payload alive
      std::vector<std::vector<std::byte>> msgs;
      bufs.reserve(64);
      msgs.reserve(64);
      auto send = [&](tl::wire::message_type t, std::uint32_t r, std::uint64_t aux, std::vector<float> v) {
        bufs.push_back(std::move(v));
        tl::wire::message_header h;
        h.type = t;
        h.dtype = tl::wire::wire_dtype::fp32;
        h.round = r;
        h.aux = aux;
        h.count = static_cast<std::uint32_t>(bufs.back().size());
        (void)ep.send(0, h, tl::as_bytes_le(std::span<const float>(bufs.back())));
      };
      // A smashed frame: the fp32 codec's message of 2 rows of activations, 2 label bytes, `extra` bytes more.
      auto send_smashed = [&](std::uint32_t r, std::uint64_t aux, const std::vector<float>& act,
                              std::array<std::uint8_t, 2> labels, std::size_t extra = 0) {
        msgs.emplace_back();
        tl::workflow::encode_smashed<tl::codec::fp32>(act, labels.data(), 2, msgs.back());
        msgs.back().resize(msgs.back().size() + extra);
        tl::wire::message_header h;
        h.type = tl::wire::message_type::smashed;
        h.dtype = tl::wire::wire_dtype::bytes;
        h.round = r;
        h.aux = aux;
        h.count = static_cast<std::uint32_t>(msgs.back().size());
        (void)ep.send(0, h, {reinterpret_cast<const std::uint8_t*>(msgs.back().data()), msgs.back().size()});
      };
      for (;;) {
        tl::wire::message_view m;
        if (!ep.recv(m, std::chrono::milliseconds{20000}).ok()) return;
        if (m.header.type == tl::wire::message_type::control) return;
        if (m.header.type != tl::wire::message_type::model) continue;
        const std::uint32_t r = m.header.round;
        const auto steps = static_cast<std::uint32_t>(m.header.aux);
        const std::vector<float> good(2 * s, 0.5f);
        const std::array<std::uint8_t, 2> labels{1, 3};
        if (r == 4) {  // every step by the book, then a NaN update
          for (std::uint32_t t = 0; t < steps; ++t) {
            send_smashed(r, t, good, labels);
            tl::wire::message_view g;
            if (!ep.recv(g, std::chrono::milliseconds{20000}).ok() || g.header.type != tl::wire::message_type::gradient)
              return;
          }
          send(tl::wire::message_type::update, r, 10,
               std::vector<float>(protocol::device_model::param_count, std::nanf("")));
          continue;
        }
        send_smashed(r, 0, good, labels, 1);  // size: no row count fits
        send_smashed(r, 1, good, labels);     // step 1 first
        send(tl::wire::message_type::update, r, 10, std::vector<float>(protocol::device_model::param_count, 0.0f));
        std::vector<float> bad = good;
        std::array<std::uint8_t, 2> bad_labels = labels;
        if (r == 1) bad_labels[0] = 10;                                   // label out of range
        else if (r == 2) bad[7] = std::nanf("");                          // NaN activation
        else bad[2 * s - 1] = -std::numeric_limits<float>::infinity();    // infinite activation
        send_smashed(r, 0, bad, bad_labels);
      }
    });
    std::vector<float> dev, srv;
    split_init(a, dev, srv);
    protocol::server server(tl::nn::adam{}, tl::fedavg{}, dev, srv);
    tl::workflow::splitfed_server_options o;
    o.rounds = 4;
    o.steps_per_round = split_steps(a, d);
    o.max_batch = a.batch;
    o.min_clients = 3;
    o.round_timeout = std::chrono::milliseconds{20000};
    tl::workflow::splitfed_server_report rep;
    tl::in_process ep0(net, 0);
    const auto t0 = std::chrono::steady_clock::now();
    const tl::status st = server.run(ep0, o, &rep);
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    for (auto& t : threads) t.join();
    expect(st.ok(), "the server completes 4 rounds next to a hostile client");
    expect(rep.clients_per_round == std::vector<std::size_t>{3, 3, 3, 3}, "each round averages clients 1..3 only");
    expect(rep.rejected_frames == 3, "rounds 1-3: a bad label, a NaN activation, an infinite one: 3 frames rejected");
    expect(rep.dropped_frames == 9, "rounds 1-3: wrong size, out-of-order step, early update: 3 frames dropped per round");
    expect(rep.rejected.size() == 1 && rep.rejected[0].client_id == 4,
           "round 4: all steps served, then the NaN update is refused by the aggregation");
    expect(rep.steps_served == 4 * (3 * o.steps_per_round) + o.steps_per_round,
           "every honest step and the hostile client's round-4 steps were served");
    expect(secs < 15.0, "the excluded client is not waited for (no round runs into its deadline)");
    bool finite = true;
    for (const float v : server.device_parameters()) finite = finite && std::isfinite(v);
    for (const float v : server.server_parameters()) finite = finite && std::isfinite(v);
    expect(finite, "the global segments stay finite");
  }
  for (int variant = 0; variant < 2; ++variant) {
    tl::in_process::hub net(2);
    tl::status client_status;
    std::thread th([&] {
      tl::in_process ep(net, 1);
      protocol::client c(tl::nn::adam{}, 100, a.batch);
      split_batches batches(a, d, 0, split_steps(a, d));
      tl::workflow::splitfed_client_options o;
      o.idle_timeout = std::chrono::milliseconds{10000};
      client_status = c.run(ep, [&](std::uint32_t r, std::uint32_t t, float* x, std::uint8_t* y) { return batches(r, t, x, y); }, o);
    });
    tl::in_process fake(net, 0);
    std::vector<float> dev, srv;
    split_init(a, dev, srv);
    tl::wire::message_header h;
    h.type = tl::wire::message_type::model;
    h.dtype = tl::wire::wire_dtype::fp32;
    h.round = 1;
    h.aux = 2;
    h.count = static_cast<std::uint32_t>(dev.size());
    (void)fake.send(1, h, tl::as_bytes_le(std::span<const float>(dev)));
    tl::wire::message_view m;
    const bool got = fake.recv(m, std::chrono::milliseconds{10000}).ok() && m.header.type == tl::wire::message_type::smashed;
    const std::size_t bsz = got ? m.header.count / (4 * s + 1) : 1;  // the fp32 codec: 4 bytes a value, 1 a label
    std::vector<float> g(variant == 0 ? bsz * s + 1 : bsz * s, 0.0f);
    if (variant == 1) g[3] = std::numeric_limits<float>::infinity();
    tl::wire::message_header gh;
    gh.type = tl::wire::message_type::gradient;
    gh.dtype = tl::wire::wire_dtype::bytes;  // the fp32 codec's message
    gh.round = 1;
    gh.aux = 0;
    gh.count = static_cast<std::uint32_t>(4 * g.size());
    (void)fake.send(1, gh, tl::as_bytes_le(std::span<const float>(g)));
    th.join();
    const tl::errc want = variant == 0 ? tl::errc::corrupt : tl::errc::non_finite;
    std::printf("  client's verdict on a %s gradient: %s\n", variant == 0 ? "wrong-size" : "non-finite",
                client_status.message);
    expect(got && client_status.code == want,
           variant == 0 ? "a gradient of the wrong size stops the client with errc::corrupt"
                        : "a non-finite gradient stops the client with errc::non_finite");
  }
  std::printf("splitfed hostile peers: %s\n", failures == 0 ? "all checks passed" : "FAILED");
  return failures == 0 ? 0 : 1;
}

// ---- drivers -------------------------------------------------------------------

/// The server; with --cuts 2 the edge, `up` its link to the cloud.
template <class Transport, class Upstream = Transport>
int serve(Transport& net, const args& a, const task_data& d, Upstream* up = nullptr) {
  if (a.workflow == "transfer") return transfer_serve(net, a, d);
  if (a.workflow == "fedlora") return lora_serve(net, a, d);
  return a.workflow == "fedavg" ? fedavg_serve(net, a, d)
                                : with_split_codecs(a, [&]<class P>() { return split_serve<P>(net, up, a, d); });
}
/// --cuts 2: the cloud (endpoint 0 of its link with the edge).
template <class Transport>
int cloud(Transport& net, const args& a, const std::function<void()>& linger = {}) {
  return with_split_codecs(a, [&]<class P>() -> int {
    if constexpr (P::multi_hop)
      return split_cloud<P>(net, a, linger);
    else
      usage("the cloud is a process of --cuts 2");
  });
}
template <class Transport>
int client(Transport& net, const args& a, const task_data& d, bool thread_mode = false) {
  if (a.workflow == "transfer") return transfer_client(net, a, d);
  if (a.workflow == "fedlora") return lora_client(net, a, d);
  return a.workflow == "fedavg" ? fedavg_client(net, a, d, thread_mode)
                                : with_split_codecs(a, [&]<class P>() { return split_client<P>(net, a, d, thread_mode); });
}

int run_inproc(const args& a, const task_data& d) {
  tl::in_process::hub net(a.clients + 1);
  std::vector<std::thread> threads;
  for (std::uint32_t k = 1; k <= a.clients; ++k) {
    threads.emplace_back([&, k] {
      tl::in_process ep(net, k);
      if (a.workflow == "fedavg") {
        // FedAvg: the dropped client (--drop-client) leaves as a killed process would.
        (void)fedavg_client(ep, a, d, /*thread_mode=*/true);
        return;
      }
      if (a.die_round != 0 && a.drop_client != k) {
        args b = a;
        b.die_round = 0;
        (void)client(ep, b, d, true);
      } else {
        (void)client(ep, a, d, true);
      }
    });
  }
  tl::in_process server(net, 0);
  int rc = 0;
  if (a.cuts == 2) {  // multi-hop: the cloud on a thread of its own, on a link of two endpoints with the edge
    tl::in_process::hub link(2);
    int cloud_rc = 1;
    std::promise<void> edge_done;
    std::thread cloud_thread([&] {
      tl::in_process ep(link, 0);
      cloud_rc = cloud(ep, a, [f = edge_done.get_future().share()] { f.wait(); });
    });
    tl::in_process up(link, 1);
    rc = serve(server, a, d, &up);
    edge_done.set_value();
    cloud_thread.join();
    rc = rc != 0 ? rc : cloud_rc;
  } else {
    rc = serve(server, a, d);
  }
  for (auto& t : threads) t.join();
  return rc;
}

}  // namespace

int main(int argc, char** argv) try {
  const args a = parse(argc, argv);
  if (a.workflow == "prepare") return prepare(a);
  const task_data d = load(a);
  if (a.mode == "inproc")
    return a.workflow == "fedavg"     ? fedavg_simulate(a, d)
           : a.workflow == "transfer" ? transfer_simulate(a, d)
           : a.workflow == "fedlora"  ? lora_simulate(a, d)
                                      : run_inproc(a, d);
  if (a.mode == "threads") {
    if (a.workflow != "fedavg" && a.workflow != "fedlora") usage("mode 'threads' is for fedavg and fedlora");
    return run_inproc(a, d);
  }
  if (a.mode == "workflow" || a.mode == "hostile") {
    if (a.workflow != "splitfed") usage("modes 'workflow' and 'hostile' are for splitfed");
    if (a.mode == "hostile" && a.codecs != "fp32") usage("mode 'hostile' sends fp32 frames: no --codecs");
    return a.mode == "workflow" ? with_split_codecs(a, [&]<class P>() { return split_workflow<P>(a, d); })
                                : split_hostile(a, d);
  }
#if defined(TINYLARGE_WITH_MPI)
  if (a.mode == "mpi") {
    MPI_Init(&argc, &argv);
    int rc = 0;
    {
      if (a.cuts == 2) {
        // Multi-hop: world rank 0 is the edge, 1..N the devices, N+1 the cloud. Two communicators:
        // the edge and the devices (ranks as in the one-cut run), the cloud (0) and the edge (1).
        int rank = 0, size = 0;
        MPI_Comm_rank(MPI_COMM_WORLD, &rank);
        MPI_Comm_size(MPI_COMM_WORLD, &size);
        if (static_cast<std::uint32_t>(size) != a.clients + 2) usage("--cuts 2: mpirun -np must be --clients + 2");
        const int cloud_rank = size - 1;
        MPI_Comm fleet = MPI_COMM_NULL, link = MPI_COMM_NULL;
        MPI_Comm_split(MPI_COMM_WORLD, rank == cloud_rank ? MPI_UNDEFINED : 0, rank, &fleet);
        MPI_Comm_split(MPI_COMM_WORLD, rank == 0 || rank == cloud_rank ? 0 : MPI_UNDEFINED, rank == cloud_rank ? 0 : 1, &link);
        {
          const auto key = tl::frame_key::from_environment();  // TL_RUN_KEY(_FILE): authenticated
          if (rank == cloud_rank) {
            tl::mpi_transport up(link, {}, key);
            rc = cloud(up, a);
          } else if (rank == 0) {
            tl::mpi_transport net(fleet, {}, key);
            tl::mpi_transport up(link, {}, key);
            rc = serve(net, a, d, &up);
          } else {
            tl::mpi_transport net(fleet, {}, key);
            rc = client(net, a, d);
          }
        }
        if (fleet != MPI_COMM_NULL) MPI_Comm_free(&fleet);
        if (link != MPI_COMM_NULL) MPI_Comm_free(&link);
      } else {
        tl::mpi_transport net(MPI_COMM_WORLD, {}, tl::frame_key::from_environment());  // TL_RUN_KEY(_FILE): authenticated
        if (net.endpoints() != a.clients + 1) usage("mpirun -np must be --clients + 1");
        rc = net.id() == 0 ? serve(net, a, d) : client(net, a, d);
      }
    }
    MPI_Finalize();
    return rc;
  }
#endif
#if defined(TINYLARGE_WITH_MQTT)
  if (a.mode == "mqtt-cloud" || (a.mode == "mqtt-server" && a.cuts == 2)) {
    // Multi-hop: the cloud and the edge meet on the run NAME-cloud (cloud 0, edge 1); the edge
    // serves the devices on the run NAME as the one-cut server does.
    tl::mqtt_options o;
    o.port = a.port;
    o.run = a.run + "-cloud";
    o.key = tl::frame_key::from_environment();
    const bool is_cloud = a.mode == "mqtt-cloud";
    tl::mqtt_transport link(is_cloud ? 0 : 1, 2, o);
    const tl::status s = link.connect();
    if (!s.ok()) {
      std::fprintf(stderr, "mqtt %s: %s\n", is_cloud ? "cloud" : "edge", s.message);
      return 1;
    }
    if (is_cloud) return cloud(link, a);
    o.run = a.run;
    tl::mqtt_transport net(0, a.clients + 1, o);
    const tl::status f = net.connect();
    if (!f.ok()) {
      std::fprintf(stderr, "mqtt edge: %s\n", f.message);
      return 1;
    }
    return serve(net, a, d, &link);
  }
  if (a.mode == "mqtt-server" || a.mode == "mqtt-client") {
    tl::mqtt_options o;
    o.port = a.port;
    o.run = a.run;
    o.key = tl::frame_key::from_environment();  // TL_RUN_KEY(_FILE): authenticated frames
    const tl::endpoint_id id = a.mode == "mqtt-server" ? 0 : a.id;
    if (id > a.clients || (a.mode == "mqtt-client" && id == 0)) usage("--id must be in 1..clients");
    tl::mqtt_transport net(id, a.clients + 1, o);
    const tl::status s = net.connect();
    if (!s.ok()) {
      std::fprintf(stderr, "mqtt endpoint %u: %s\n", id, s.message);
      return 1;
    }
    return id == 0 ? serve(net, a, d) : client(net, a, d);
  }
#endif
  usage(("mode '" + a.mode + "' is not built in (inproc, workflow; mpi with TINYLARGE_WITH_MPI; mqtt-* with TINYLARGE_WITH_MQTT)").c_str());
} catch (const std::exception& e) {
  std::fprintf(stderr, "transport_nn_node: %s\n", e.what());
  return 1;
}
