/// @file workflow/federated.hpp
/// @brief Federated learning workflows: FedAvg with client sampling (C, E, B)
///        and FedSGD as its E = 1, B = ∞ special case, with simulated client
///        dropout and Byzantine clients, over one traits struct.
///
/// @code
///   struct phone_fleet {
///     using model       = tl::sequential<tl::dense<784, 200>, tl::relu, tl::dense<200, 10>>;
///     using aggregation = tl::fedavg;           // or tl::krum, tl::dp_fixed_clipping<>, …
///     using optimizer   = tl::nn::sgd;           // the clients' local optimizer
///     using update      = tl::fp16_update;       // what a client uploads (fp32 / fp16 / int8)
///     using precision   = tl::bf16;              // what clients train in (optional, default fp32)
///     using transport   = tl::workflow::in_memory;
///   };
///   tl::workflow::federated_averaging<phone_fleet> fl(
///       {.rounds = 50, .client_fraction = 0.1, .local_epochs = 5, .batch_size = 10},
///       tl::fedavg{}, tl::nn::sgd{.learning_rate = 0.05f});
///   fl.initialize(42);
///   tl::workflow::report r = fl.run(fed.clients, test);   // fed = make_federated_dataset(train, partition)
/// @endcode
///
/// **Algorithm** (McMahan et al., "Communication-Efficient Learning of Deep
/// Networks from Decentralized Data", AISTATS 2017, Algorithm 1). With K
/// clients, n_k examples on client k and n = Σ n_k, each round t:
///
///     m  = max(⌈C · K⌉, 1);   S_t = m clients sampled without replacement
///     for k ∈ S_t (in parallel):  w_k ← ClientUpdate(k, w_t)
///         — E epochs of minibatch SGD with batch B over the local data,
///           w ← w − η ∇ℓ(w; b)   (B = ∞: the whole local set is one batch)
///     w_{t+1} ← Aggregate({(w_k, n_k)})     — FedAvg: Σ_k n_k w_k / Σ_k n_k
///
/// FedSGD is E = 1, B = ∞ (`federated_options::fedsgd`): every client takes
/// one full-batch gradient step, so the example-weighted average of the new
/// weights is one step of (large-batch) SGD with the average gradient — the
/// baseline of McMahan et al.'s Table 2. `Aggregate` is any
/// `aggregation_policy` (aggregate/): robust rules and DP wrappers work
/// unchanged. With `tl::fedprox` the clients add the proximal gradient
/// μ(w − w_t) in every local step (Li et al. 2020).
///
/// **Untrusted updates.** Every client result goes through
/// `tl::aggregator::round`: wrong-length, NaN/Inf, invalid int8 metadata and
/// duplicate updates are rejected with a reason (kept in `log()`), never
/// aggregated; the round completes from the rest, or fails — leaving the
/// global model unchanged — when fewer than the policy's `min_clients()`
/// remain.
///
/// **Faults** (simulation, workflow/attacks.hpp): each selected client drops
/// out mid-round (after downloading the model, before uploading) with
/// probability `dropout_probability`; `dropout_policy::proceed` aggregates the
/// rest, `dropout_policy::retry` samples replacements among the clients not
/// yet asked (up to `max_retries` waves, each costing another round trip).
/// Byzantine clients are configured with `federated_options::attack`.
///
/// **Roles.** The round is written once as the programs of its two roles,
/// `fedavg_server` and `fedavg_client` (federated_roles.hpp);
/// `federated_averaging` is their in-process driver (zero copy: the server
/// aggregates views of the clients' upload buffers), and
/// `run_federated_server` / `run_federated_client` (federated_deploy.hpp) run
/// the same roles over MPI, MQTT or `in_process` threads with the same bits.
///
/// **Accounting** (workflow/report.hpp): per round, each selected client has
/// down = the fp32 global model (4·P bytes), up = its encoded update (4·P fp32,
/// 2·P fp16, P + 4·⌈P / chunk⌉ int8), MACs = 3 · MACs(forward) per training
/// sample processed (forward + backward ≈ 3× forward); the server role holds
/// the sums of its traffic and n·P MACs for the weighted sum. The critical
/// path is 2 sequential hops per wave (model down, update up); estimated time
/// = Σ_waves (2 · latency + 4P / downlink + max_k local MACs / device rate +
/// max_k up bytes / uplink) + server MACs / server rate.
#pragma once

#include <algorithm>
#include <cmath>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "../aggregate/aggregator.hpp"
#include "../aggregate/client.hpp"
#include "../aggregate/policy.hpp"
#include "../aggregate/update.hpp"
#include "../core/config.hpp"
#include "../core/error.hpp"
#include "../core/rng.hpp"
#include "../data/idx.hpp"
#include "../data/partition.hpp"
#include "../nn/loss.hpp"
#include "../nn/network.hpp"
#include "../nn/optimizer.hpp"
#include "../nn/train.hpp"
#include "../precision/convert.hpp"
#include "attacks.hpp"
#include "channel.hpp"
#include "federated_roles.hpp"
#include "report.hpp"
#include "selection.hpp"

namespace tinylarge::workflow {

// ---------------------------------------------------------------------------
// Traits
// ---------------------------------------------------------------------------

/// The trivial transport of the workflows: updates are handed over in memory
/// (zero-copy spans); only the bytes the chosen encoding *would* put on the
/// wire are counted in the report. The same server and client roles
/// (federated_roles.hpp) run over MPI or MQTT through the drivers of
/// federated_deploy.hpp; the driver one calls is the transport choice.
struct in_memory {
  static constexpr const char* name() noexcept { return "in_memory"; }
};

/// What a federated traits struct must provide: `model`, a `sequential<...>`.
/// Optional members (with defaults): `aggregation` (`tl::fedavg`), `optimizer`
/// (the clients' local optimizer, `tl::nn::sgd`), `update` (the upload
/// encoding: `tl::fp32_update`, `tl::fp16_update` or `tl::int8_update`;
/// `fp32_update` by default), `selection` (the client selection policy,
/// workflow/selection.hpp: `uniform_selection` by default), `transport` (`in_memory`),
/// `static constexpr bool secure_aggregation` (false by default: true masks
/// the uploads, aggregate/secure.hpp; settings in `federated_options::secure`).
template <class T>
concept federated_traits = requires { typename T::model; } && nn::sequential_model<typename T::model>;

namespace detail {
template <class T> struct aggregation_of { using type = fedavg; };
template <class T> requires requires { typename T::aggregation; }
struct aggregation_of<T> { using type = typename T::aggregation; };
template <class T> struct optimizer_of { using type = nn::sgd; };
template <class T> requires requires { typename T::optimizer; }
struct optimizer_of<T> { using type = typename T::optimizer; };
template <class T> struct update_of { using type = fp32_update; };
template <class T> requires requires { typename T::update; }
struct update_of<T> { using type = typename T::update; };
template <class T> struct precision_of { using type = fp32; };
template <class T> requires requires { typename T::precision; }
struct precision_of<T> { using type = typename T::precision; };
template <class T> struct selection_of { using type = uniform_selection; };
template <class T> requires requires { typename T::selection; }
struct selection_of<T> { using type = typename T::selection; };
/// `Traits::secure_aggregation` (a static constexpr bool), false when absent.
template <class T> struct secure_of : std::false_type {};
template <class T> requires requires { T::secure_aggregation; }
struct secure_of<T> : std::bool_constant<static_cast<bool>(T::secure_aggregation)> {};
/// Secure aggregation's check of the rule, a class template so that the
/// compiler's message names the offending `Rule`.
template <class Rule, bool Secure>
struct secure_aggregation_rule {
  static_assert(!Secure || linear_aggregation<Rule>,
                "federated_averaging: Traits::secure_aggregation composes only with a linear Traits::aggregation "
                "(fedavg, fedavgm, fedprox, fedadam, fedyogi, fedadagrad): the server sees only the masked sum, and "
                "this Rule (a robust rule or a DP wrapper) reads individual updates");
  static constexpr bool ok = true;
};
template <class T> struct transport_of { using type = in_memory; };
template <class T> requires requires { typename T::transport; }
struct transport_of<T> { using type = typename T::transport; };
}  // namespace detail

// ---------------------------------------------------------------------------
// Client data
// ---------------------------------------------------------------------------

/// The clients' local data sets, stored contiguously client after client (one
/// copy of the training images, reordered), with a `labelled_view` per client.
struct federated_dataset {
  std::vector<float> images;
  std::vector<std::uint8_t> labels;
  std::vector<nn::labelled_view<std::uint8_t>> clients;  ///< views into images / labels
  std::size_t features = 0;

  federated_dataset() = default;
  federated_dataset(const federated_dataset&) = delete;  // the views point into this object
  federated_dataset& operator=(const federated_dataset&) = delete;
  federated_dataset(federated_dataset&&) noexcept = default;  // vector moves keep the buffers
  federated_dataset& operator=(federated_dataset&&) noexcept = default;
};

/// Builds the clients' data sets from a labelled data set and a partition
/// (data/partition.hpp: `partition_iid`, `partition_shards`, …).
/// @throws tl::invalid_argument when an index is out of range or a client is empty.
inline federated_dataset make_federated_dataset(const float* x, const std::uint8_t* y, std::size_t count,
                                                std::size_t features, const data::partition_t& parts) {
  federated_dataset fd;
  fd.features = features;
  std::size_t total = 0;
  for (const auto& p : parts) {
    TINYLARGE_REQUIRE(!p.empty(), errc::invalid_argument, "make_federated_dataset: a client has no samples");
    total += p.size();
  }
  fd.images.resize(total * features);
  fd.labels.resize(total);
  std::size_t row = 0;
  for (const auto& p : parts) {
    for (const std::size_t i : p) {
      TINYLARGE_REQUIRE(i < count, errc::invalid_argument, "make_federated_dataset: sample index out of range");
      std::copy_n(x + i * features, features, fd.images.data() + row * features);
      fd.labels[row] = y[i];
      ++row;
    }
  }
  row = 0;
  for (const auto& p : parts) {
    fd.clients.push_back({fd.images.data() + row * features, fd.labels.data() + row, p.size(), features, 1});
    row += p.size();
  }
  return fd;
}

/// Overload for a loaded IDX data set (`tl::data::load_fashion_mnist`).
inline federated_dataset make_federated_dataset(const data::dataset& ds, const data::partition_t& parts) {
  return make_federated_dataset(ds.images.data(), ds.labels.data(), ds.count, ds.rows * ds.cols, parts);
}

// ---------------------------------------------------------------------------
// Local training (ClientUpdate)
// ---------------------------------------------------------------------------

/// ClientUpdate of McMahan et al. (Algorithm 1): `epochs` passes of minibatch
/// training over `data` in a seeded random order, starting from the weights
/// already in `net`. `batch_size` 0 means B = ∞ (one batch per epoch).
/// With `proximal_mu` > 0 the FedProx gradient μ(w − anchor) is added in every
/// step (`anchor` = the round's global weights, same size as the parameters).
/// The first `frozen_prefix` parameters (a frozen backbone: leading layers'
/// weights and biases, see `frozen_parameter_count`) are restored after every
/// step, so they do not change at all.
///
/// @tparam Net  an `nn::network<Model>`
/// @tparam Opt  an `nn::optimizer_policy` (its state is fresh each call, as a
///              client that keeps no optimizer state between rounds)
/// @tparam Loss an `nn::loss_policy` (softmax cross-entropy by default)
/// @throws tl::non_finite when the loss becomes NaN or Inf (diverged client).
template <class Net, nn::optimizer_policy Opt, nn::loss_policy Loss = nn::softmax_cross_entropy>
local_training_result train_locally(Net& net, const Opt& opt, const nn::labelled_view<typename Loss::target_type>& data,
                                    std::size_t epochs, std::size_t batch_size, rng& shuffle_rng,
                                    std::span<const float> anchor = {}, float proximal_mu = 0.0f,
                                    std::size_t frozen_prefix = 0) {
  using Model = typename Net::model;
  using Target = typename Loss::target_type;
  TINYLARGE_REQUIRE(data.features == Model::input_size, errc::shape_mismatch,
                    "train_locally: the client's feature count differs from the model's input size");
  TINYLARGE_REQUIRE(data.count > 0, errc::invalid_argument, "train_locally: the client has no samples");
  TINYLARGE_REQUIRE(proximal_mu == 0.0f || anchor.size() == Net::param_count, errc::shape_mismatch,
                    "train_locally: the proximal anchor must have the model's parameter count");
  const std::size_t bs = batch_size == 0 ? data.count : std::min(batch_size, data.count);
  nn::trainable_state<Opt, Model> state(opt);  // frozen parameters (nn::lora, batch norm statistics) are not stepped
  std::vector<std::uint32_t> order(data.count);
  for (std::size_t i = 0; i < data.count; ++i) order[i] = static_cast<std::uint32_t>(i);
  TINYLARGE_REQUIRE(frozen_prefix <= Net::param_count, errc::invalid_argument,
                    "train_locally: frozen_prefix exceeds the parameter count");
  // FedProx's proximal term and the frozen prefix: hooks of the one training step (nn::train_epoch).
  struct client_hooks {
    std::span<const float> anchor;
    float mu;
    std::vector<float> frozen;
    void adjust_gradients(Net& n) const {
      if (mu > 0.0f) add_proximal_gradient(n.gradients(), n.parameters(), anchor, mu);
    }
    void after_step(Net& n) const {
      if (!frozen.empty()) std::copy(frozen.begin(), frozen.end(), n.parameters().begin());
    }
  } hooks{anchor, proximal_mu,
          std::vector<float>(net.parameters().begin(), net.parameters().begin() + static_cast<std::ptrdiff_t>(frozen_prefix))};
  nn::batch_buffers<Target> buf;
  nn::epoch_totals totals;
  for (std::size_t e = 0; e < epochs; ++e) {
    shuffle_rng.shuffle(order.data(), order.size());
    nn::train_epoch(
        net, data, order, bs, buf, totals,
        [](const float* out, const Target* y, std::span<const std::uint32_t>, std::size_t b, float* grad) {
          return Loss::evaluate(out, y, b, Model::output_size, grad);
        },
        nn::optimizer_update<decltype(state)>{state}, hooks,
        "train_locally: the client's loss became NaN or Inf (learning rate too high?)");
  }
  local_training_result res;
  res.steps = totals.steps;
  res.samples = totals.samples;
  res.mean_loss = res.samples > 0 ? totals.loss_sum / static_cast<double>(res.samples) : 0.0;
  return res;
}

/// Parameters of the first `layers` layers of `Model` (weights and biases):
/// the `frozen_prefix` that freezes them in `train_locally`.
/// @throws tl::invalid_argument when `layers` > Model::size.
template <nn::sequential_model Model>
std::size_t frozen_parameter_count(std::size_t layers) {
  TINYLARGE_REQUIRE(layers <= Model::size, errc::invalid_argument,
                    "frozen_parameter_count: more layers than the model has");
  std::size_t n = 0;
  Model::for_each_layer([&]<std::size_t I>() {
    if (I < layers) n += Model::template layer<I>::param_count;
  });
  return n;
}

// ---------------------------------------------------------------------------
// Options and logs
// ---------------------------------------------------------------------------

/// What a round does when selected clients drop out mid-round.
enum class dropout_policy : std::uint8_t {
  proceed,  ///< aggregate the updates that arrived (fail the round below min_clients)
  retry,    ///< ask replacement clients, up to `max_retries` more waves
};

/// Run-time settings of a federated run (McMahan et al.'s C, E, B and the
/// simulation knobs). Designated initialisers make call sites self-describing.
struct federated_options {
  std::size_t rounds = 100;             ///< communication rounds T
  double client_fraction = 0.1;         ///< C ∈ (0, 1]: m = max(⌈C·K⌉, 1) clients per round
  /// Poisson sampling: each client takes part independently with probability
  /// C (a random number of clients per round, possibly none: the round then
  /// fails, model unchanged), the sampling the client-level DP accountant
  /// assumes (aggregate/privacy.hpp). false: exactly m clients. Dropout
  /// retries are not used with Poisson sampling.
  bool poisson_sampling = false;
  std::size_t local_epochs = 5;         ///< E
  std::size_t batch_size = 10;          ///< B; 0 = ∞ (the whole local set is one batch)
  std::uint64_t seed = 1;               ///< client sampling, local shuffling, faults
  std::size_t eval_every = 1;           ///< evaluate every n rounds (and after the last); 0 = only the last
  double target_accuracy = 0.0;         ///< > 0: stop after the first evaluated round that reaches it
  float client_lr_decay = 1.0f;         ///< client learning rate × this after every round
  double dropout_probability = 0.0;     ///< per selected client and wave
  dropout_policy on_dropout = dropout_policy::proceed;
  std::size_t max_retries = 2;          ///< extra waves with `dropout_policy::retry`
  byzantine attack{};                   ///< simulated Byzantine / faulty clients
  std::size_t int8_chunk = 256;         ///< values per scale of int8 updates
  link_model link{};                    ///< for the estimated round time
  /// Per-client wireless links and devices (workflow/channel.hpp). When it has
  /// devices (one per client), each wave's clients share the band equally,
  /// their links are drawn afresh every round (seeded by `seed`), a client in
  /// outage misses the round (not sent the model, like a dropout without the
  /// download), and a wave lasts 2·latency + its slowest client's download +
  /// compute + upload, in place of the `link` figures for clients; the record
  /// gives each client's seconds and joules, the straggler and the outages.
  wireless_fleet wireless{};
  /// Secure aggregation's settings (fixed point: clip of |w_k − w_t| and
  /// resolution 2^−f; threshold t), used when the traits ask for it
  /// (`static constexpr bool secure_aggregation = true;`, aggregate/secure.hpp).
  secagg::settings secure{};
  std::string name{};                   ///< report's workflow name; empty: "fedavg", or "fedsgd" for E = 1, B = ∞

  /// McMahan et al.'s FedSGD baseline: E = 1, B = ∞.
  static federated_options fedsgd(std::size_t rounds, double client_fraction = 0.1, std::uint64_t seed = 1) {
    federated_options o;
    o.rounds = rounds;
    o.client_fraction = client_fraction;
    o.local_epochs = 1;
    o.batch_size = 0;
    o.seed = seed;
    return o;
  }
};

/// What happened to the clients of one round (beyond the report's costs).
struct round_log {
  std::size_t round = 0;
  std::vector<std::uint64_t> selected;   ///< clients asked, every wave, in order
  std::vector<std::uint64_t> dropped;    ///< clients that dropped out mid-round
  std::vector<std::uint64_t> outage;     ///< clients whose link rate was below the threshold (wireless fleet)
  std::vector<std::uint64_t> byzantine;  ///< clients whose update was replaced by an attack
  std::size_t waves = 1;                 ///< 1 + retries used
  round_report aggregation;              ///< accepted ids, rejected ids with reasons, outcome
};

namespace detail {

/// Learning rate member of a client optimizer (all nn optimizers have one).
template <class Opt>
void scale_learning_rate(Opt& opt, float factor) {
  if constexpr (requires { opt.learning_rate; }) opt.learning_rate *= factor;
}

template <class P>
float proximal_mu_of(const P& p) {
  if constexpr (requires { p.proximal_mu; }) return p.proximal_mu;
  else return 0.0f;
}

}  // namespace detail

// ---------------------------------------------------------------------------
// The client computation of the FedAvg family
// ---------------------------------------------------------------------------

/// ClientUpdate of the FedAvg family (McMahan et al., Algorithm 1) as a
/// `client_computation`: client k copies w_t into its network, trains E
/// epochs of minibatch steps over its own data with `train_locally` (local
/// RNG `rng(task_seed, k + 1)`, learning rate lr₀ · decay^(r−1), FedProx's
/// μ(w − w_t) when μ > 0) and returns its new weights. A pure function of
/// (k, r, task seed, w_t): every transport gets the same bits.
///
/// @tparam Traits a `federated_traits` struct (model, optimizer, precision)
template <federated_traits Traits>
class fedavg_training {
 public:
  using model = typename Traits::model;
  using optimizer = typename detail::optimizer_of<Traits>::type;
  using precision = typename detail::precision_of<Traits>::type;
  using network_type = nn::network<model, nn::heap_storage, precision>;
  static constexpr std::size_t param_count = model::param_count;

  /// @param clients one labelled data set per client id (a deployed client
  ///        may pass only its own, at its index, and empty views elsewhere)
  fedavg_training(const federated_options& options, const optimizer& client_optimizer, float proximal_mu,
                  std::span<const nn::labelled_view<std::uint8_t>> clients = {})
      : epochs_(options.local_epochs), batch_(options.batch_size), decay_(options.client_lr_decay),
        mu_(proximal_mu), optimizer_(client_optimizer), clients_(clients) {}

  void set_clients(std::span<const nn::labelled_view<std::uint8_t>> clients) noexcept { clients_ = clients; }
  std::span<const nn::labelled_view<std::uint8_t>> clients() const noexcept { return clients_; }
  network_type& network() noexcept { return net_; }

  /// The client optimizer of round r (lr₀ · decay^(r−1), one multiplication per round).
  optimizer optimizer_of_round(std::uint32_t round) const {
    optimizer o = optimizer_;
    for (std::uint32_t r = 1; r < round; ++r) detail::scale_learning_rate(o, decay_);
    return o;
  }

  /// @throws tl::invalid_argument for an unknown client, tl::shape_mismatch
  ///         for a model of another size, tl::non_finite when training diverges.
  client_output compute(std::uint64_t client, const model_message& m) {
    TINYLARGE_REQUIRE(client < clients_.size(), errc::invalid_argument, "fedavg_training: no data for this client id");
    TINYLARGE_REQUIRE(m.global.size() == param_count, errc::shape_mismatch,
                      "fedavg_training: the model has another number of parameters");
    std::copy(m.global.begin(), m.global.end(), net_.parameters().begin());
    rng local(m.task_seed, client + 1);
    const nn::labelled_view<std::uint8_t>& data = clients_[static_cast<std::size_t>(client)];
    client_output out;
    out.training = train_locally(net_, optimizer_of_round(m.round), data, epochs_, batch_, local, m.global, mu_);
    out.weights = net_.parameters();
    out.examples = static_cast<std::int64_t>(data.count);
    return out;
  }

 private:
  std::size_t epochs_;
  std::size_t batch_;
  float decay_;
  float mu_;
  optimizer optimizer_;
  std::span<const nn::labelled_view<std::uint8_t>> clients_;
  network_type net_;
};

// ---------------------------------------------------------------------------
// The workflow: the in-process driver of the two roles
// ---------------------------------------------------------------------------

/// FedAvg-style federated learning over a traits struct (see the file
/// comment): the in-process driver of `fedavg_server` and `fedavg_client`
/// (workflow/federated_roles.hpp). All clients run in this process, one
/// after the other, on one network; updates reach the server as views of
/// the clients' upload buffers (zero copy). The same roles run over MPI and
/// MQTT with `run_federated_server` / `run_federated_client`
/// (workflow/federated_deploy.hpp) and give the same bits.
///
/// Simulation-only faults (`dropout_probability`, retry waves, `attack`) are
/// drawn from the server role's RNG here, between the roles' steps.
///
/// @tparam Traits a `federated_traits` struct: `model` (required),
///         `aggregation` (an `aggregation_policy`, default `tl::fedavg`),
///         `optimizer` (the clients' `nn::optimizer_policy`, default
///         `tl::nn::sgd`), `update` (the upload `update_encoding`, default
///         `tl::fp32_update`), `transport` (default `in_memory`: this driver).
template <federated_traits Traits>
class federated_averaging {
 public:
  using traits = Traits;
  using model = typename Traits::model;
  using aggregation = typename detail::aggregation_of<Traits>::type;
  using optimizer = typename detail::optimizer_of<Traits>::type;
  using update = typename detail::update_of<Traits>::type;
  using transport = typename detail::transport_of<Traits>::type;
  /// Who takes part in a round (`Traits::selection`, default `uniform_selection`).
  using selection = typename detail::selection_of<Traits>::type;
  /// The precision the clients train in (`Traits::precision`, default fp32):
  /// fp16 / bf16 are mixed-precision training (nn/network.hpp).
  using precision = typename detail::precision_of<Traits>::type;
  static_assert(float_precision<precision>,
                "federated_averaging: Traits::precision must be a float_precision (fp32, fp16, bf16 or your own); the "
                "upload's precision is Traits::update");
  using network_type = nn::network<model, nn::heap_storage, precision>;
  static constexpr std::size_t param_count = model::param_count;
  /// Secure aggregation (`Traits::secure_aggregation`, default false): the
  /// clients send masked fixed-point updates, the server unmasks only their
  /// sum (aggregate/secure.hpp; settings in `federated_options::secure`).
  static constexpr bool secure = detail::secure_of<Traits>::value;

  static_assert(aggregation_policy<aggregation>,
                "federated_averaging: Traits::aggregation must satisfy tl::aggregation_policy");
  static_assert(!secure || TINYLARGE_SECAGG_HAS_SODIUM,
                "federated_averaging: Traits::secure_aggregation needs libsodium for X25519 key agreement and "
                "ChaCha20 masks (link tinylarge::secagg, tinylarge::mpi or tinylarge::mqtt: "
                "TINYLARGE_SECAGG_HAS_SODIUM=1; Debian libsodium-dev); there is no insecure fallback");
  static_assert(detail::secure_aggregation_rule<aggregation, secure>::ok);
  static_assert(!secure || std::same_as<update, fp32_update>,
                "federated_averaging: with Traits::secure_aggregation the upload is the masked fixed-point words "
                "(aggregate/secure.hpp); leave Traits::update at fp32_update");
  static_assert(nn::optimizer_policy<optimizer>,
                "federated_averaging: Traits::optimizer must satisfy tl::nn::optimizer_policy");
  static_assert(update_encoding<update>, "federated_averaging: Traits::update must satisfy tl::update_encoding");
  static_assert(selection_policy<selection>,
                "federated_averaging: Traits::selection must satisfy tl::workflow::selection_policy");

  /// The two roles this driver runs.
  using server_role = fedavg_server<aggregation, update, selection>;
  using computation = fedavg_training<Traits>;
  using client_role = fedavg_client<computation, update>;

  /// @param options run settings (C, E, B, rounds, faults, …)
  /// @param policy  the server's aggregation rule with its hyperparameters
  /// @param client_optimizer the clients' local optimizer (learning rate, …)
  /// @param select  the client selection policy with its hyperparameters (e.g. a deadline)
  /// @throws tl::invalid_argument for options out of range, and for a
  ///         link-aware `selection` without a wireless fleet or with Poisson sampling.
  explicit federated_averaging(const federated_options& options, const aggregation& policy = {},
                               const optimizer& client_optimizer = {}, const selection& select = {})
      : options_(options), server_(policy, param_count, options.seed, select),
        training_(options, client_optimizer, detail::proximal_mu_of(policy)),
        channel_rng_(options.seed, 0xc4a7'7e11'0001ULL) {
    TINYLARGE_REQUIRE(options.rounds > 0, errc::invalid_argument, "federated_averaging: rounds must be > 0");
    TINYLARGE_REQUIRE(options.local_epochs > 0, errc::invalid_argument,
                      "federated_averaging: local_epochs E must be > 0");
    TINYLARGE_REQUIRE(options.dropout_probability >= 0.0 && options.dropout_probability < 1.0,
                      errc::invalid_argument, "federated_averaging: dropout_probability must be in [0, 1)");
    TINYLARGE_REQUIRE(options.attack.fraction >= 0.0 && options.attack.fraction <= 1.0, errc::invalid_argument,
                      "federated_averaging: the Byzantine fraction must be in [0, 1]");
    TINYLARGE_REQUIRE(options.client_fraction > 0.0 && options.client_fraction <= 1.0, errc::invalid_argument,
                      "federated_averaging: client_fraction C must be in (0, 1]");
    if constexpr (secure)
      TINYLARGE_REQUIRE(options.on_dropout == dropout_policy::proceed, errc::invalid_argument,
                        "federated_averaging: secure aggregation sets its masks up among one wave of clients; "
                        "dropout_policy::retry is not supported with it (dropped clients are recovered instead)");
    if constexpr (selection::needs_links) {
      TINYLARGE_REQUIRE(options.wireless.enabled(), errc::invalid_argument,
                        std::string("federated_averaging: the selection policy ") + selection::name() +
                            " needs the clients' links: configure a wireless fleet (federated_options::wireless)");
      TINYLARGE_REQUIRE(!options.poisson_sampling, errc::invalid_argument,
                        std::string("federated_averaging: the selection policy ") + selection::name() +
                            " picks clients by their links and cannot be combined with Poisson sampling");
    }
  }

  /// Random initial global model (He-normal, seeded).
  void initialize(std::uint64_t seed) {
    network_type& net = training_.network();
    net.initialize(seed);
    server_.set_global(net.parameters());
  }
  /// Starts from given weights (e.g. a server pre-trained model: federated
  /// transfer learning).
  /// @throws tl::shape_mismatch when `w` does not have `param_count` values.
  void set_global(std::span<const float> w) {
    TINYLARGE_REQUIRE(w.size() == param_count, errc::shape_mismatch,
                      "federated_averaging::set_global: wrong number of parameters");
    server_.set_global(w);
  }
  /// The global model w_t.
  std::span<const float> global() const noexcept { return server_.global(); }
  /// A network holding the global weights (for evaluation or deployment).
  network_type& global_network() {
    network_type& net = training_.network();
    std::copy(server_.global().begin(), server_.global().end(), net.parameters().begin());
    return net;
  }
  const federated_options& options() const noexcept { return options_; }
  tinylarge::aggregator<aggregation>& server() noexcept { return server_.aggregation(); }
  /// The server role (its global model, policy state and client RNG).
  server_role& server_program() noexcept { return server_; }
  /// The clients' computation (local training; a deployed client gives it
  /// its own data with `set_clients` and wraps it in a `client_role`).
  computation& client_computation() noexcept { return training_; }
  /// One entry per completed round: who was asked, dropped, attacked, rejected.
  const std::vector<round_log>& log() const noexcept { return log_; }
  /// The first evaluated round whose test accuracy reached `target`.
  std::optional<std::size_t> rounds_to_target(double target) const {
    for (const auto& r : report_.rounds)
      if (!std::isnan(r.test_accuracy) && r.test_accuracy >= target) return r.round;
    return std::nullopt;
  }
  const report& result() const noexcept { return report_; }

  /// Test accuracy of the global model.
  double evaluate(const nn::labelled_view<std::uint8_t>& test) {
    return nn::evaluate(global_network(), nn::softmax_cross_entropy{}, test).accuracy;
  }

  /// Runs `options().rounds` rounds (or until `target_accuracy`).
  /// @param clients one labelled data set per client (K = clients.size())
  /// @param test    evaluated every `eval_every` rounds (may have count 0: no evaluation)
  report run(std::span<const nn::labelled_view<std::uint8_t>> clients, const nn::labelled_view<std::uint8_t>& test) {
    for (std::size_t t = 0; t < options_.rounds; ++t) {
      const round_record& rec = run_round(clients, test, t + 1 == options_.rounds);
      if (options_.target_accuracy > 0.0 && !std::isnan(rec.test_accuracy) &&
          rec.test_accuracy >= options_.target_accuracy)
        break;
    }
    return report_;
  }
  report run(const std::vector<nn::labelled_view<std::uint8_t>>& clients, const nn::labelled_view<std::uint8_t>& test) {
    return run(std::span<const nn::labelled_view<std::uint8_t>>(clients), test);
  }

  /// One communication round. Evaluates on `test` when the round number is a
  /// multiple of `eval_every`, or when `force_eval`.
  const round_record& run_round(std::span<const nn::labelled_view<std::uint8_t>> clients,
                                const nn::labelled_view<std::uint8_t>& test, bool force_eval = false) {
    const std::size_t k_total = clients.size();
    TINYLARGE_REQUIRE(k_total > 0, errc::invalid_argument, "federated_averaging: no clients");
    for (const auto& c : clients)
      TINYLARGE_REQUIRE(c.features == model::input_size, errc::shape_mismatch,
                        "federated_averaging: a client's feature count differs from the model's input size");
    rng& faults = server_.generator();  // simulation faults draw from the server's stream, as they always did
    if (options_.attack.active() && options_.attack.who == byzantine::selection::fixed_clients &&
        fixed_attackers_.size() != k_total) {
      rng pick(options_.seed, 0xbad0'c1ea'0001ULL);
      fixed_attackers_ = choose_attackers(k_total, options_.attack.fraction, pick);
    }
    const std::size_t m = detail::clients_per_round(options_.client_fraction, k_total);
    const wireless_fleet& air = options_.wireless;
    TINYLARGE_REQUIRE(!air.enabled() || air.devices.size() == k_total, errc::invalid_argument,
                      "federated_averaging: the wireless fleet has " + std::to_string(air.devices.size()) +
                          " devices for " + std::to_string(k_total) + " clients; give one per client");

    // Server: open the round (model message w_t, round task seed).
    const model_message msg = server_.begin_round(k_total);
    const std::size_t round = msg.round;
    training_.set_clients(clients);
    client_role client(training_, options_.int8_chunk);

    round_log lg;
    lg.round = round;
    round_record rec;
    rec.round = round;

    uploads_.clear();
#if TINYLARGE_SECAGG_HAS_SODIUM
    masked_.clear();
#endif
    std::vector<role_cost> client_costs;
    double loss_sum = 0.0;
    std::uint64_t loss_samples = 0;
    double seconds = 0.0, longest_wave = 0.0;
    std::uint64_t server_down = 0, server_up = 0, msgs_down = 0, msgs_up = 0;

    // A link-aware selection: every client's fading drawn once for the round, its predicted cost on a
    // share 1/m of the band; the same draws give the links of the clients sent the model below.
    std::vector<candidate_link> candidates;
    if constexpr (selection::needs_links) candidates = predict_links(clients, m);

    // Server: select the round's clients.
    std::vector<std::uint32_t> wave = options_.poisson_sampling ? server_.select_poisson(options_.client_fraction)
                                                                : server_.select(m, candidates);
#if TINYLARGE_SECAGG_HAS_SODIUM
    // Secure aggregation: the round's sessions (one per client that got the model) and the protocol's status.
    std::vector<std::pair<std::uint32_t, std::unique_ptr<secagg::client_session>>> sessions;
    status secure_status = status::success();
    if constexpr (secure) server_.begin_secure(options_.secure);
#endif
    std::size_t waves = 0;
    while (!wave.empty()) {
      ++waves;
      lg.selected.insert(lg.selected.end(), wave.begin(), wave.end());
      // Wireless fleet: this wave's links on equal shares of the band; outage: misses the round.
      std::vector<link_state> links;
      if (air.enabled())
        for (const std::uint32_t c : wave) {
          const double share = 1.0 / static_cast<double>(wave.size());
          if constexpr (selection::needs_links)
            links.push_back(link_on_share(air.access_point, air.devices[c], share, candidates[c].link.gain_up,
                                          candidates[c].link.gain_down));
          else
            links.push_back(draw_link(air.access_point, air.devices[c], share, channel_rng_));
        }
      // Simulation: who drops out of this wave, who attacks.
      std::vector<std::uint32_t> alive;
      for (std::size_t wi = 0; wi < wave.size(); ++wi) {
        const std::uint32_t c = wave[wi];
        if (air.enabled() && links[wi].outage) {
          lg.outage.push_back(c);
          continue;
        }
        const bool drop = options_.dropout_probability > 0.0 &&
                          static_cast<double>(faults.uniform()) < options_.dropout_probability;
        if (drop) lg.dropped.push_back(c);
        else alive.push_back(c);
      }
      std::vector<bool> attacks(alive.size(), false);
      if (options_.attack.active()) {
        if (options_.attack.who == byzantine::selection::per_round) {
          attacks = choose_attackers(alive.size(), options_.attack.fraction, faults);
        } else {
          for (std::size_t i = 0; i < alive.size(); ++i) attacks[i] = fixed_attackers_[alive[i]];
        }
      }
#if TINYLARGE_SECAGG_HAS_SODIUM
      // Secure aggregation, steps 0–1, among every client reached (those that will drop included: they
      // drop after the masks are set up, and the survivors' shares recover them).
      if constexpr (secure) {
        std::vector<std::uint32_t> reached;
        for (std::size_t wi = 0; wi < wave.size(); ++wi)
          if (!(air.enabled() && links[wi].outage)) reached.push_back(wave[wi]);
        secure_status = secure_setup(reached, static_cast<std::uint32_t>(round), sessions);
      }
#endif
      double wave_compute = 0.0, wave_client_seconds = 0.0;
      long long wave_straggler = -1;
      std::uint64_t wave_up = 0;
      for (std::size_t wi = 0; wi < wave.size(); ++wi) {
        const std::uint32_t c = wave[wi];
        role_cost rc;
        rc.role = "client";
        rc.id = c;
        if (air.enabled() && links[wi].outage) {  // not reached: nothing sent, no time, no energy
          ++rec.outages;
          client_costs.push_back(std::move(rc));
          continue;
        }
        rc.net.bytes_down = param_count * sizeof(float);
        rc.net.messages_down = 1;
#if TINYLARGE_SECAGG_HAS_SODIUM
        if constexpr (secure) {  // steps 0–1: advertisement and sealed shares up; roster and boxes down
          rc.net.bytes_up = secure_setup_bytes_up(sessions.size());
          rc.net.bytes_down += secure_setup_bytes_down(sessions.size());
          rc.net.messages_up = 2;
          rc.net.messages_down += 2;
          server_up += rc.net.bytes_up;
          msgs_up += 2;
        }
#endif
        server_down += rc.net.bytes_down;
        msgs_down += rc.net.messages_down;
        const auto it = std::find(alive.begin(), alive.end(), c);
        if (it != alive.end()) {
          const std::size_t ai = static_cast<std::size_t>(it - alive.begin());
          // Client: ClientUpdate(k, w_t).
          const client_output out = client.train(c, msg);
          loss_sum += out.training.mean_loss * static_cast<double>(out.training.samples);
          loss_samples += out.training.samples;
          rc.macs = training_macs_per_sample * out.training.samples;
          wave_compute = std::max(wave_compute, static_cast<double>(rc.macs) / options_.link.device_macs_per_s);
          std::size_t length = param_count;
          if (attacks[ai]) {
            lg.byzantine.push_back(c);
            length = apply_attack(options_.attack, out.weights, server_.global(), faults);
          }
          if constexpr (secure) {
#if TINYLARGE_SECAGG_HAS_SODIUM
            // Client: mask Δ = w_k − w_t (and n_k); server: keep the masked words. A client whose attack
            // changed the update's length sends nothing (it counts as dropped).
            if (secure_status.ok() && length == param_count) {
              masked_.emplace_back();
              raise_if_error(client.mask(*session_of(sessions, c), out, msg, masked_.back()));
              raise_if_error(server_.secure_session().receive_masked(c, masked_.back()));
              rc.net.bytes_up += masked_.back().size() * sizeof(std::uint32_t);
              ++rc.net.messages_up;
              server_up += masked_.back().size() * sizeof(std::uint32_t);
              ++msgs_up;
            }
#endif
          } else {
            // Client: encode the update; server: accept it (a view of the client's buffer).
            uploads_.emplace_back();
            client.encode(std::span<const float>(out.weights.data(), length), uploads_.back());
            server_.accept(c, uploads_.back().view(), out.examples);
            rc.net.bytes_up = uploads_.back().bytes();
            rc.net.messages_up = 1;
            server_up += rc.net.bytes_up;
            ++msgs_up;
          }
          wave_up = std::max(wave_up, rc.net.bytes_up);
        }
        if (air.enabled()) {  // a dropout downloaded, then left: its download only
          const client_cost k = cost_of_round(air.devices[c], links[wi], rc.macs, rc.net.bytes_up, rc.net.bytes_down);
          rc.seconds = k.seconds;
          rc.joules = k.joules;
          rec.energy_joules += k.joules;
          if (wave_straggler < 0 || k.seconds > wave_client_seconds) {
            wave_client_seconds = k.seconds;
            wave_straggler = static_cast<long long>(c);
          }
        }
        client_costs.push_back(std::move(rc));
      }
      if (air.enabled()) {
        seconds += 2.0 * options_.link.latency_s + wave_client_seconds;
        if (wave_straggler >= 0 && (rec.straggler < 0 || wave_client_seconds > longest_wave)) {
          longest_wave = wave_client_seconds;
          rec.straggler = wave_straggler;
        }
      } else {
        seconds += 2.0 * options_.link.latency_s +
                   static_cast<double>(param_count * sizeof(float)) / options_.link.downlink_bytes_per_s +
                   wave_compute + static_cast<double>(wave_up) / options_.link.uplink_bytes_per_s;
      }
      rec.sequential_hops += 2;
      // Retry: replace the dropped clients of this wave with fresh ones.
      const std::size_t missing = wave.size() - alive.size();
      wave.clear();
      if (missing > 0 && options_.on_dropout == dropout_policy::retry && waves <= options_.max_retries)
        wave = server_.select(missing, candidates);
    }
    lg.waves = waves;

    // Server: close the round (validation + policy).
    std::size_t received = server_.accepted();
#if TINYLARGE_SECAGG_HAS_SODIUM
    if constexpr (secure) received = masked_.size();
#endif
    if constexpr (secure) {
#if TINYLARGE_SECAGG_HAS_SODIUM
      // Secure aggregation, step 3: the survivors release their shares, the server unmasks the sum.
      secagg::server_session& ss = server_.secure_session();
      secagg::unmask_request req;
      if (secure_status.ok()) secure_status = ss.close_masked(req);
      if (secure_status.ok()) {
        for (const std::uint32_t c : req.survivors) {
          secagg::unmask_response resp;
          raise_if_error(session_of(sessions, c)->respond(req, resp));
          raise_if_error(ss.receive_response(resp));
          const std::uint64_t up = 4 + (resp.b_shares.size() + resp.sk_shares.size()) * (8 + 8 * secagg::key_limbs);
          const std::uint64_t down = 4 * (req.survivors.size() + req.dropped.size());
          for (role_cost& rc : client_costs)
            if (rc.id == c) {
              rc.net.bytes_up += up;
              rc.net.bytes_down += down;
              ++rc.net.messages_up;
              ++rc.net.messages_down;
            }
          server_up += up;
          server_down += down;
          ++msgs_up;
          ++msgs_down;
        }
        seconds += 2.0 * options_.link.latency_s;  // the unmask request and the responses
        rec.sequential_hops += 2;
      }
      lg.aggregation = server_.close_round_secure(secure_status);
#endif
    } else {
      lg.aggregation = server_.close_round();
    }

    role_cost server;
    server.role = "server";
    server.id = 0;
    server.net.bytes_down = server_down;  // what it sent (down the tree)
    server.net.bytes_up = server_up;      // what it received
    server.net.messages_down = msgs_down;
    server.net.messages_up = msgs_up;
    server.macs = static_cast<std::uint64_t>(received) * param_count;
    seconds += static_cast<double>(server.macs) / options_.link.server_macs_per_s;
    rec.parties = std::move(client_costs);
    rec.parties.push_back(server);
    rec.messages = msgs_down + msgs_up;
    rec.estimated_seconds = seconds;
    rec.train_loss = loss_samples > 0 ? loss_sum / static_cast<double>(loss_samples) : 0.0;
    const bool eval = test.count > 0 && (force_eval || (options_.eval_every > 0 && round % options_.eval_every == 0));
    rec.test_accuracy = eval ? evaluate(test) : std::numeric_limits<double>::quiet_NaN();

    if (report_.workflow.empty())
      report_.workflow = !options_.name.empty() ? options_.name
                         : options_.batch_size == 0 && options_.local_epochs == 1 ? "fedsgd"
                                                                                  : "fedavg";
    report_.rounds.push_back(std::move(rec));
    log_.push_back(std::move(lg));
    return report_.rounds.back();
  }
  const round_record& run_round(const std::vector<nn::labelled_view<std::uint8_t>>& clients,
                                const nn::labelled_view<std::uint8_t>& test, bool force_eval = false) {
    return run_round(std::span<const nn::labelled_view<std::uint8_t>>(clients), test, force_eval);
  }

 private:
  /// MACs of one training sample on a client: forward, and backward for the
  /// input and the weight gradients (2 × forward) — charged in the accounting
  /// and predicted by `predict_links`.
  static constexpr std::uint64_t training_macs_per_sample = 3ull * model::macs;

  /// Every client's link this round (one fading draw per direction, in id
  /// order from the fleet's stream) on an equal share 1/m of the band, and
  /// its predicted cost: the fp32 model down, E passes over its data
  /// (3 · MACs per sample), its encoded update up.
  std::vector<candidate_link> predict_links(std::span<const nn::labelled_view<std::uint8_t>> clients, std::size_t m) {
    const wireless_fleet& air = options_.wireless;  // one device per client: checked by run_round
    const double share = 1.0 / static_cast<double>(m);
    const std::uint64_t up = update_buffer<update>::encoded_bytes(param_count, options_.int8_chunk);
    std::vector<candidate_link> out(clients.size());
    for (std::size_t c = 0; c < clients.size(); ++c) {
      const device_profile& dev = air.devices[c];
      const double gain_up = dev.channel.power_gain(channel_rng_);
      const double gain_down = dev.channel.power_gain(channel_rng_);
      out[c].link = link_on_share(air.access_point, dev, share, gain_up, gain_down);
      const std::uint64_t macs = training_macs_per_sample * options_.local_epochs * clients[c].count;
      out[c].cost = cost_of_round(dev, out[c].link, macs, up, param_count * sizeof(float));
    }
    return out;
  }

#if TINYLARGE_SECAGG_HAS_SODIUM
  using session_list = std::vector<std::pair<std::uint32_t, std::unique_ptr<secagg::client_session>>>;
  static secagg::client_session* session_of(session_list& sessions, std::uint32_t c) {
    for (auto& [id, s] : sessions)
      if (id == c) return s.get();
    TINYLARGE_RAISE(errc::invalid_argument, "federated_averaging: a client without a secure-aggregation session");
  }
  /// Bytes of steps 0–1 for one client among n: its advertisement and n − 1
  /// sealed shares up; the roster and n − 1 boxes for it down.
  static std::uint64_t secure_setup_bytes_up(std::size_t n) noexcept {
    return secagg::advertisement::wire_bytes + (n - 1) * secagg::sealed_share::wire_bytes;
  }
  static std::uint64_t secure_setup_bytes_down(std::size_t n) noexcept {
    return n * secagg::advertisement::wire_bytes +
           (n - 1) * secagg::sealed_share::wire_bytes;
  }
  /// Secure aggregation, steps 0 (advertise keys, relay the roster) and 1
  /// (seal shares, forward them) for the clients `reached`. Keys are derived
  /// from (seed, round, client) — the simulation's deterministic source
  /// (secagg::derived_round_seed), not for deployment.
  status secure_setup(const std::vector<std::uint32_t>& reached, std::uint32_t round, session_list& sessions) {
    secagg::server_session& ss = server_.secure_session();
    sessions.clear();
    for (const std::uint32_t c : reached) {
      sessions.emplace_back(c, std::make_unique<secagg::client_session>(
                                   c, round, secagg::derived_round_seed(options_.seed, round, c), options_.secure));
      TINYLARGE_TRY(ss.receive_advertisement(sessions.back().second->advertise()));
    }
    TINYLARGE_TRY(ss.close_roster());
    for (auto& [c, s] : sessions) TINYLARGE_TRY(ss.receive_shares(c, s->share_keys(ss.roster())));
    for (auto& [c, s] : sessions) TINYLARGE_TRY(s->receive_shares(ss.shares_for(c)));
    return status::success();
  }
  std::vector<std::vector<std::uint32_t>> masked_;  ///< the round's masked inputs (secure aggregation)
#endif

  federated_options options_;
  server_role server_;
  computation training_;
  std::vector<update_buffer<update>> uploads_;
  std::vector<bool> fixed_attackers_;
  std::vector<round_log> log_;
  report report_;
  rng channel_rng_;  ///< the wireless fleet's fading draws (its own stream: the other draws are unchanged)
};

}  // namespace tinylarge::workflow
