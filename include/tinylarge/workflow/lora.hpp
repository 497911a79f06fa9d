/// @file workflow/lora.hpp
/// @brief Federated fine-tuning with LoRA adapters, with heterogeneous ranks
///        aggregated by zero-padding, on the `nn::lora` layer wrapper.
///
/// LoRA (Hu et al., "LoRA: Low-Rank Adaptation of Large Language Models",
/// ICLR 2022): every dense layer's weight W₀ ∈ ℝ^{Out×In} (and bias) stays
/// frozen and learns a low-rank correction,
///
///     W = W₀ + s · B A,   A ∈ ℝ^{r×In} (init N(0, σ²)),  B ∈ ℝ^{Out×r} (init 0),  s = α / r_max
///
/// and only A and B are trained and communicated. The clients train the
/// adapted model `nn::lora_model_t<model, capacity>` (every dense layer
/// wrapped in `nn::lora`, nn/lora.hpp): forward x·W₀ᵀ + b + s·(x·Aᵀ)·Bᵀ,
/// gradients for A and B only, through the library's training step
/// (`nn::train_epoch`) with an SGD state over the adapters only
/// (`nn::trainable_state`) — W₀ + s·B A and the Out×In weight gradient are
/// never formed during training. The merged model W₀ + s·B A is built for
/// inference only (`evaluate`, `merge`).
///
/// **Heterogeneous ranks** (HetLoRA, Cho et al., "Heterogeneous LoRA for
/// Federated Fine-tuning of On-Device Foundation Models", 2023): client k
/// trains rank r_k ≤ r_max — it receives the first r_k rows of every A and
/// the first r_k columns of every B, and sends them back; in its network the
/// components beyond r_k are zero-padded (a zero row of A and column of B
/// get zero gradients, so they stay zero). The server zero-pads each update
/// to r_max and takes the example-weighted mean per coordinate. An update
/// with a NaN/Inf value is rejected whole (counted in `rejected_updates()`),
/// never averaged. Deliberate choices, stated: the scale s = α/r_max is the
/// same for every client (so that padded components add up consistently),
/// and components beyond a client's rank are *not* part of its update: they
/// are averaged only over the clients that trained them (otherwise
/// zero-padding would shrink the high-rank components by the fraction of
/// low-rank clients in every round — the known dilution of naive
/// zero-padding).
///
/// **Capacity.** The wrapper's rank is a compile-time constant: `capacity`
/// is `Traits::lora_rank` when the traits define it, else min(8, min over
/// the dense layers of min(In, Out)); `lora_options::max_rank` must not
/// exceed it, and the components in [max_rank, capacity) are zero-padded in
/// every client (define `lora_rank = max_rank` to compute no more than needed).
///
/// **Roles.** The round is the FedAvg family's (workflow/federated_roles.hpp),
/// written once: the adapter vector is "the model" of the round. The client
/// is `lora_training<Traits>`, a `client_computation` (load the global
/// adapters truncated to r_k into the wrappers, train, return the adapter
/// vector); the server is `fedavg_server<hetlora_mean, U>`, whose
/// aggregation policy `hetlora_mean` is the per-coordinate mean above (it
/// knows every client's rank from the rank table both sides hold: the
/// client id in the update selects it). With equal ranks it is plain
/// example-weighted FedAvg over the adapter vector. `federated_lora::run` is
/// the in-process driver of these two roles; `run_lora_server` /
/// `run_lora_client` (workflow/lora_deploy.hpp) run the same roles over MPI,
/// MQTT or `in_process` threads with the same bits. On the wire (and in the
/// report) a client receives and sends the whole adapter vector in the
/// r_max layout, Σ r_max·(In + Out) values: the components beyond r_k are
/// the global ones it received, which the server ignores (a compact rank-r_k
/// encoding is not implemented).
///
/// Biases and non-dense layers stay frozen at the base model's values.
///
/// Precision: the clients' forward and backward passes run in
/// `Traits::precision` (default fp32; fp16 / bf16 are mixed precision: every
/// GEMM of the wrapper — with W₀, A, B — runs on operands rounded to P with
/// fp32 accumulation, nn/lowp.hpp, and fp16 uses dynamic loss scaling — a
/// step whose scaled gradients overflowed is skipped). The adapters A, B and
/// their update stay fp32 (the master weights). A precision that cannot
/// train (e.g. int8) does not compile.
#pragma once

#include <algorithm>
#include <cmath>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <numeric>
#include <span>
#include <type_traits>
#include <vector>

#include "../aggregate/aggregator.hpp"
#include "../aggregate/policy.hpp"
#include "../core/error.hpp"
#include "../core/rng.hpp"
#include "../kernels/backend.hpp"
#include "../kernels/dense.hpp"
#include "../nn/lora.hpp"
#include "../nn/loss.hpp"
#include "../nn/network.hpp"
#include "../nn/optimizer.hpp"
#include "../nn/train.hpp"
#include "federated.hpp"
#include "federated_roles.hpp"
#include "report.hpp"

namespace tinylarge::workflow {

namespace detail {
/// The compile-time rank of a LoRA run's wrapped layers: `Traits::lora_rank`
/// when defined, else min(8, min over the dense layers of min(In, Out)).
template <class Traits>
constexpr std::size_t lora_capacity() noexcept {
  if constexpr (requires { Traits::lora_rank; }) {
    return Traits::lora_rank;
  } else {
    using M = typename Traits::model;
    std::size_t cap = 8;
    M::for_each_layer([&]<std::size_t I>() {
      using L = typename M::template layer<I>;
      if constexpr (L::kind == nn::layer_kind::dense) {
        cap = L::fan_in < cap ? L::fan_in : cap;
        cap = L::fan_out < cap ? L::fan_out : cap;
      }
    });
    return cap;
  }
}
}  // namespace detail

/// Settings of a federated LoRA run.
struct lora_options {
  std::size_t max_rank = 8;             ///< r_max (≤ federated_lora::capacity)
  float alpha = 8.0f;                   ///< s = α / r_max
  float init_stddev = 0.02f;            ///< σ of A's initialisation
  float learning_rate = 0.05f;          ///< clients' SGD step on A and B
  std::vector<std::size_t> client_ranks{};  ///< r_k per client (empty: r_max for all); 1 ≤ r_k ≤ r_max
  std::size_t rounds = 10;
  double client_fraction = 0.1;
  std::size_t local_epochs = 1;
  std::size_t batch_size = 10;
  std::uint64_t seed = 1;
  link_model link{};
};

/// One adapted dense layer: where its weights are (in the plain model's
/// layout), its shape, where its A (r_max × In, row-major) and B (Out ×
/// r_max, row-major) live in the adapter vector, where its wrapper's
/// parameters are in the adapted model's layout.
struct lora_layer {
  std::size_t weight_offset, in, out, a_offset, b_offset, net_offset;
};

/// HetLoRA's server step as an aggregation policy (general: it reads the
/// individual updates): for every coordinate j of the adapter vector,
///
///     w_{t+1}[j] = Σ_{k trained j} n_k · w_k[j] / Σ_{k trained j} n_k
///
/// (accumulated in double, in the order of the round's updates — client id
/// order in the FedAvg server role), and w_t[j] where no client of the round
/// trained j. Client k trained the first r_k rows of every A and the first
/// r_k columns of every B; r_k comes from the rank table (`ranks`, indexed
/// by client id; empty: r_max for every client). With equal ranks this is
/// FedAvg's example-weighted mean over the whole vector.
struct hetlora_mean {
  std::vector<lora_layer> layers{};      ///< the adapter vector's layout
  std::size_t max_rank = 1;              ///< r_max: A's rows and B's row stride
  std::vector<std::size_t> ranks{};      ///< r_k per client id (empty: r_max for all)

  static constexpr const char* name() noexcept { return "hetlora"; }
  std::size_t min_clients() const noexcept { return 1; }

  template <std::floating_point T>
  struct state {
    state(const hetlora_mean& /*policy*/, std::size_t /*dimension*/) noexcept {}
  };

  /// The rank client `client` trains.
  /// @throws tl::invalid_argument for a client id outside the rank table.
  std::size_t rank_of(std::uint64_t client) const {
    if (ranks.empty()) return max_rank;
    TINYLARGE_REQUIRE(client < ranks.size(), errc::invalid_argument,
                      "hetlora_mean: a client id outside the rank table (lora_options::client_ranks)");
    return ranks[static_cast<std::size_t>(client)];
  }

  /// Calls f(j) for every coordinate j a rank-r client trains, layer by layer (A, then B).
  template <class F>
  void for_each_active(std::size_t r, F&& f) const {
    for (const lora_layer& l : layers) {
      for (std::size_t j = 0; j < r * l.in; ++j) f(l.a_offset + j);
      for (std::size_t o = 0; o < l.out; ++o)
        for (std::size_t k = 0; k < r; ++k) f(l.b_offset + o * max_rank + k);
    }
  }

  template <std::floating_point T, update_encoding U>
  status aggregate(state<T>& /*st*/, std::span<T> global, const update_set<U>& set) const {
    const std::size_t dim = set.dimension();
    TINYLARGE_CHECK(set.size() >= min_clients(), errc::invalid_argument, "hetlora: no updates");
    TINYLARGE_CHECK(global.size() == dim, errc::shape_mismatch, "hetlora: the model and the updates differ in size");
    for (std::size_t i = 0; i < set.size(); ++i)
      TINYLARGE_CHECK(ranks.empty() || set.client_id(i) < ranks.size(), errc::invalid_argument,
                      "hetlora: an update from a client id outside the rank table");
    std::vector<double> num(dim, 0.0), den(dim, 0.0);
    std::vector<T> buf(dim);
    for (std::size_t i = 0; i < set.size(); ++i) {
      const T* x = set.template block<T>(i, 0, dim, buf.data());
      const auto n = static_cast<double>(set[i].num_examples);
      for_each_active(rank_of(set.client_id(i)), [&](std::size_t j) {
        num[j] += n * static_cast<double>(x[j]);
        den[j] += n;
      });
    }
    for (std::size_t j = 0; j < dim; ++j)
      if (den[j] > 0.0) global[j] = static_cast<T>(num[j] / den[j]);
    return status::success();
  }
};

/// FedLoRA's ClientUpdate as a `client_computation`: client k loads the
/// global adapter vector truncated to its rank r_k into the `nn::lora`
/// wrappers of its network (zero beyond r_k; the frozen base W₀ loaded once
/// by `set_base`), runs `local_epochs` passes of the library's training step
/// (`nn::train_epoch`) with plain SGD on the adapters only
/// (`nn::trainable_state`), shuffled by `rng(task_seed, k + 1)`, and returns
/// the adapter vector: its trained components, and the global ones beyond
/// r_k. A pure function of (k, task seed, global): every transport gets the
/// same bits.
///
/// @tparam Traits a `federated_traits` struct (`model`, optional `precision`, `lora_rank`)
template <federated_traits Traits>
class lora_training {
 public:
  using model = typename Traits::model;
  using precision = typename detail::precision_of<Traits>::type;
  static_assert(float_precision<precision>,
                "federated_lora: Traits::precision must be a float_precision (fp32, fp16, bf16 or your own): the "
                "clients train the adapters in it");
  static constexpr std::size_t capacity = detail::lora_capacity<Traits>();
  using adapted_model = nn::lora_model_t<model, capacity>;
  using network_type = nn::network<adapted_model, nn::heap_storage, precision>;

  /// @param clients one labelled data set per client id (a deployed client
  ///        may pass only its own, at its index, and empty views elsewhere)
  /// @throws tl::invalid_argument for max_rank outside [1, capacity] or alpha ≤ 0
  explicit lora_training(const lora_options& o, std::span<const nn::labelled_view<std::uint8_t>> clients = {})
      : opt_(o), clients_(clients) {
    TINYLARGE_REQUIRE(o.max_rank > 0 && o.alpha > 0.0f, errc::invalid_argument,
                      "federated_lora: max_rank and alpha must be > 0");
    TINYLARGE_REQUIRE(o.max_rank <= capacity, errc::invalid_argument,
                      "federated_lora: max_rank exceeds the capacity of the wrapped layers (Traits::lora_rank, by "
                      "default min(8, min(In, Out) of every dense layer))");
    for (const std::size_t r : o.client_ranks)
      TINYLARGE_REQUIRE(r >= 1 && r <= o.max_rank, errc::invalid_argument,
                        "federated_lora: every client rank must be in [1, max_rank]");
    std::size_t off = 0;
    adapted_model::for_each_layer([&]<std::size_t I>() {
      using L = typename adapted_model::template layer<I>;
      if constexpr (L::kind == nn::layer_kind::lora) {
        const lora_layer a{model::template param_offset<I>, L::fan_in, L::fan_out, off,
                           off + o.max_rank * L::fan_in,    adapted_model::template param_offset<I>};
        off = a.b_offset + L::fan_out * o.max_rank;
        layers_.push_back(a);
        // s = α / r_max in every wrapper (its frozen scale).
        net_.parameters()[a.net_offset + L::scale_offset] = static_cast<float>(scale());
      }
    });
    TINYLARGE_REQUIRE(!layers_.empty(), errc::invalid_argument, "federated_lora: the model has no dense layer");
    dimension_ = off;
  }

  const lora_options& options() const noexcept { return opt_; }
  const std::vector<lora_layer>& layers() const noexcept { return layers_; }
  /// Values of the adapter vector (the round's model): Σ r_max · (In + Out).
  std::size_t dimension() const noexcept { return dimension_; }
  double scale() const noexcept { return static_cast<double>(opt_.alpha) / static_cast<double>(opt_.max_rank); }
  /// The rank client `client` trains.
  std::size_t rank_of(std::uint64_t client) const {
    if (opt_.client_ranks.empty()) return opt_.max_rank;
    TINYLARGE_REQUIRE(client < opt_.client_ranks.size(), errc::invalid_argument,
                      "federated_lora: a client id outside lora_options::client_ranks");
    return opt_.client_ranks[static_cast<std::size_t>(client)];
  }
  /// The server's aggregation policy of this layout and rank table.
  hetlora_mean aggregation() const { return hetlora_mean{layers_, opt_.max_rank, opt_.client_ranks}; }

  /// The frozen base model W₀ into the wrappers (every party loads the same one).
  /// @throws tl::shape_mismatch when `w` does not have the model's parameter count.
  void set_base(std::span<const float> w) {
    TINYLARGE_REQUIRE(w.size() == model::param_count, errc::shape_mismatch,
                      "federated_lora::set_base: wrong number of parameters");
    nn::load_lora_base<adapted_model>(w.data(), net_.parameters().data());
    has_base_ = true;
  }
  bool has_base() const noexcept { return has_base_; }
  void set_clients(std::span<const nn::labelled_view<std::uint8_t>> clients) noexcept { clients_ = clients; }
  std::span<const nn::labelled_view<std::uint8_t>> clients() const noexcept { return clients_; }

  /// @throws tl::invalid_argument for an unknown client or no base model,
  ///         tl::shape_mismatch for a model of another size or bad data,
  ///         tl::non_finite when training diverges.
  client_output compute(std::uint64_t client, const model_message& m) {
    TINYLARGE_REQUIRE(has_base_, errc::invalid_argument, "federated_lora: call set_base with the pre-trained weights first");
    TINYLARGE_REQUIRE(client < clients_.size(), errc::invalid_argument, "federated_lora: no data for this client id");
    TINYLARGE_REQUIRE(m.global.size() == dimension_, errc::shape_mismatch,
                      "federated_lora: the adapter vector has another size than this run's");
    const std::size_t r = rank_of(client);
    ad_.assign(m.global.begin(), m.global.end());
    const nn::labelled_view<std::uint8_t>& data = clients_[static_cast<std::size_t>(client)];
    client_output out;
    out.training = train(r, data, m.task_seed, client);
    out.weights = ad_;
    out.examples = static_cast<std::int64_t>(data.count);
    return out;
  }

 private:
  /// The adapters `ad_` truncated to rank r into the wrappers of `net_` (zero beyond r), or back.
  void load_adapters(std::size_t r) {
    const std::size_t R = opt_.max_rank;
    float* p = net_.parameters().data();
    for (const auto& l : layers_) {
      float* a = p + l.net_offset;                // A [capacity][In]
      float* b = a + capacity * l.in;             // B [Out][capacity]
      for (std::size_t k = 0; k < capacity; ++k)
        for (std::size_t i = 0; i < l.in; ++i) a[k * l.in + i] = k < r ? ad_[l.a_offset + k * l.in + i] : 0.0f;
      for (std::size_t o = 0; o < l.out; ++o)
        for (std::size_t k = 0; k < capacity; ++k) b[o * capacity + k] = k < r ? ad_[l.b_offset + o * R + k] : 0.0f;
    }
  }
  void store_adapters(std::size_t r) {
    const std::size_t R = opt_.max_rank;
    const float* p = net_.parameters().data();
    for (const auto& l : layers_) {
      const float* a = p + l.net_offset;
      const float* b = a + capacity * l.in;
      for (std::size_t j = 0; j < r * l.in; ++j) ad_[l.a_offset + j] = a[j];
      for (std::size_t o = 0; o < l.out; ++o)
        for (std::size_t k = 0; k < r; ++k) ad_[l.b_offset + o * R + k] = b[o * capacity + k];
    }
  }

  /// `local_epochs` passes of `nn::train_epoch` on the rank-r adapters.
  local_training_result train(std::size_t r, const nn::labelled_view<std::uint8_t>& data, std::uint64_t task_seed,
                              std::uint64_t client) {
    using Loss = nn::softmax_cross_entropy;
    TINYLARGE_REQUIRE(data.target_size == 1, errc::shape_mismatch,
                      "federated_lora: a client's data must hold one class label per sample");
    TINYLARGE_REQUIRE(data.features == model::input_size, errc::shape_mismatch,
                      "federated_lora: a client's feature count differs from the model's input size");
    const std::size_t bs = opt_.batch_size == 0 ? data.count : std::min(opt_.batch_size, data.count);
    rng shuffle(task_seed, client + 1);
    std::vector<std::uint32_t> order(data.count);
    std::iota(order.begin(), order.end(), 0u);
    load_adapters(r);
    nn::trainable_state<nn::sgd, adapted_model> state(nn::sgd{.learning_rate = opt_.learning_rate});
    nn::batch_buffers<std::uint8_t> buf;
    nn::epoch_totals totals;  // an fp16 loss-scale overflow skips the step (counted as a step)
    for (std::size_t e = 0; e < opt_.local_epochs; ++e) {
      shuffle.shuffle(order.data(), order.size());
      nn::train_epoch(
          net_, data, order, bs, buf, totals,
          [](const float* out, const std::uint8_t* y, std::span<const std::uint32_t>, std::size_t b, float* grad) {
            return Loss::evaluate(out, y, b, model::output_size, grad);
          },
          nn::optimizer_update<decltype(state)>{state}, nn::no_hooks{},
          "federated_lora: a client's loss became NaN or Inf");
    }
    store_adapters(r);
    local_training_result res;
    res.steps = totals.steps;
    res.samples = totals.samples;
    res.mean_loss = res.samples ? totals.loss_sum / static_cast<double>(res.samples) : 0.0;
    return res;
  }

  lora_options opt_;
  std::span<const nn::labelled_view<std::uint8_t>> clients_;
  std::vector<lora_layer> layers_;
  std::size_t dimension_ = 0;
  std::vector<float> ad_;
  network_type net_;
  bool has_base_ = false;
};

/// Federated LoRA fine-tuning of a pre-trained `Traits::model`: the
/// in-process driver of the FedAvg roles with `lora_training` as the client
/// and `hetlora_mean` as the server's aggregation (see the file comment).
/// @tparam Traits a `federated_traits` struct (only `model`, the optional
///         `precision`, the optional `update` — what a client uploads, fp32 by
///         default — and the optional `lora_rank` — the capacity — are used)
template <federated_traits Traits>
class federated_lora {
 public:
  using model = typename Traits::model;
  using computation = lora_training<Traits>;
  /// The precision the clients train in (`Traits::precision`, default fp32).
  using precision = typename computation::precision;
  /// What a client uploads (`Traits::update`, default `fp32_update`).
  using update = typename detail::update_of<Traits>::type;
  /// The rank of the wrapped layers (see "Capacity" above).
  static constexpr std::size_t capacity = computation::capacity;
  /// The model the clients train: every dense layer of `model` as `nn::lora<…, capacity>`.
  using adapted_model = typename computation::adapted_model;
  /// The network the clients train in.
  using network_type = typename computation::network_type;
  /// The merged (plain) model's network, for inference.
  using merged_network_type = nn::network<model, nn::heap_storage, precision>;
  static constexpr std::size_t param_count = model::param_count;
  using adapted_layer = lora_layer;
  /// The two roles (workflow/federated_roles.hpp).
  using server_role = fedavg_server<hetlora_mean, update, uniform_selection>;
  using client_role = fedavg_client<computation, update>;

  /// @throws tl::invalid_argument for bad options (see `lora_training`)
  explicit federated_lora(const lora_options& o)
      : opt_(o), training_(o), server_(training_.aggregation(), training_.dimension(), o.seed) {
    (void)detail::clients_per_round(o.client_fraction, 1);  // C in (0, 1]
    std::vector<float> init(training_.dimension(), 0.0f);
    rng g(o.seed, 0x10fa'0002ULL);
    for (const auto& l : training_.layers())
      for (std::size_t i = 0; i < o.max_rank * l.in; ++i) init[l.a_offset + i] = g.normal(0.0f, o.init_stddev);
    server_.set_global(init);
  }

  /// The frozen base model W₀ (a pre-trained model's parameters).
  /// @throws tl::shape_mismatch when `w` does not have the model's parameter count.
  void set_base(std::span<const float> w) {
    training_.set_base(w);
    base_.assign(w.begin(), w.end());
  }
  /// The global adapter vector (the server's model).
  std::span<const float> adapters() const noexcept { return server_.global(); }
  const std::vector<adapted_layer>& layers() const noexcept { return training_.layers(); }
  double scale() const noexcept { return training_.scale(); }
  const lora_options& options() const noexcept { return opt_; }
  /// The server role (its global model is the adapter vector).
  server_role& server_program() noexcept { return server_; }
  /// The client computation (a deployed client points it at its own data).
  computation& client_computation() noexcept { return training_; }

  /// Adapter values a client of rank r trains.
  std::size_t adapter_count(std::size_t r) const noexcept {
    std::size_t n = 0;
    for (const auto& l : layers()) n += r * (l.in + l.out);
    return n;
  }

  /// The merged model W₀ + s · B A (the adapters `ad` truncated to rank r)
  /// into `net`, a network of `model` — for inference: training never forms it.
  template <class Net>
    requires std::is_same_v<typename Net::model, model>
  void merge(Net& net, std::span<const float> ad, std::size_t r) const {
    using kernels::transpose;
    std::copy(base_.begin(), base_.end(), net.parameters().begin());
    const auto s = static_cast<float>(scale());
    for (const auto& l : layers())  // W (Out×In) += s · B (Out×r, row stride r_max) · A (r×In)
      kernels::gemm_f32(kernels::default_backend{}, transpose::no, transpose::no, l.out, l.in, r, s,
                        ad.data() + l.b_offset, opt_.max_rank, ad.data() + l.a_offset, l.in, 1.0f,
                        net.parameters().data() + l.weight_offset, l.in);
  }

  /// Test accuracy of the merged model W₀ + s·B A at full rank.
  double evaluate(const nn::labelled_view<std::uint8_t>& test) {
    merge(merged_, adapters(), opt_.max_rank);
    return nn::evaluate(merged_, nn::softmax_cross_entropy{}, test).accuracy;
  }

  /// Runs `rounds` rounds over the clients' data: per round, the server
  /// opens the round and selects ⌈C·K⌉ clients, each selected client runs
  /// the client role on the global adapters, the server accepts the
  /// uploads (views of the clients' buffers) and closes the round.
  report run(const std::vector<nn::labelled_view<std::uint8_t>>& clients, const nn::labelled_view<std::uint8_t>& test) {
    TINYLARGE_REQUIRE(base_.size() == param_count, errc::invalid_argument,
                      "federated_lora::run: call set_base with the pre-trained weights first");
    TINYLARGE_REQUIRE(opt_.client_ranks.empty() || opt_.client_ranks.size() == clients.size(), errc::invalid_argument,
                      "federated_lora::run: client_ranks must have one entry per client");
    TINYLARGE_REQUIRE(!clients.empty(), errc::invalid_argument, "federated_lora::run: no clients");
    report rep;
    rep.workflow = "fedlora";
    const std::size_t k_total = clients.size();
    const std::size_t m = detail::clients_per_round(opt_.client_fraction, k_total);
    const std::size_t dim = training_.dimension();
    training_.set_clients(clients);
    client_role client(training_);
    std::vector<update_buffer<update>> uploads;
    for (std::size_t t = 1; t <= opt_.rounds; ++t) {
      // Server: open the round, select its clients.
      const model_message msg = server_.begin_round(k_total);
      const std::vector<std::uint32_t> wave = server_.select(m);
      round_record rec;
      rec.round = t;
      uploads.assign(wave.size(), {});
      double loss = 0.0;
      std::uint64_t seen = 0, worst_up = 0, server_up = 0;
      double worst_compute = 0.0;
      for (std::size_t i = 0; i < wave.size(); ++i) {
        const std::uint32_t c = wave[i];
        // Client: ClientUpdate(k, adapters) and its upload; server: accept it (a view of the buffer).
        const client_output out = client.on_model(c, msg, uploads[i]);
        server_.accept(c, uploads[i].view(), out.examples);
        loss += out.training.mean_loss * static_cast<double>(out.training.samples);
        seen += out.training.samples;
        role_cost rc{"client", c, {}, 0};
        rc.net.bytes_down = dim * sizeof(float);
        rc.net.bytes_up = uploads[i].bytes();
        rc.net.messages_down = rc.net.messages_up = 1;
        rc.macs = sample_macs(training_.rank_of(c)) * out.training.samples;
        worst_up = std::max(worst_up, rc.net.bytes_up);
        server_up += rc.net.bytes_up;
        worst_compute = std::max(worst_compute, static_cast<double>(rc.macs) / opt_.link.device_macs_per_s);
        rec.parties.push_back(rc);
      }
      // Server: w_{t+1} from the valid uploads (NaN / Inf ones rejected).
      const round_report closed = server_.close_round();
      for (const rejection& rj : closed.rejected) rejected_ += rj.reason == rejection_reason::non_finite ? 1 : 0;
      role_cost server{"server", 0, {}, static_cast<std::uint64_t>(m) * dim};
      server.net.bytes_up = server_up;
      server.net.bytes_down = static_cast<std::uint64_t>(wave.size()) * dim * sizeof(float);
      server.net.messages_up = server.net.messages_down = wave.size();
      rec.parties.push_back(server);
      rec.sequential_hops = 2;
      rec.messages = 2 * wave.size();
      rec.train_loss = seen ? loss / static_cast<double>(seen) : 0.0;
      rec.estimated_seconds = 2 * opt_.link.latency_s +
                              static_cast<double>(dim * sizeof(float)) / opt_.link.downlink_bytes_per_s +
                              worst_compute + static_cast<double>(worst_up) / opt_.link.uplink_bytes_per_s;
      rec.test_accuracy = test.count ? evaluate(test) : std::numeric_limits<double>::quiet_NaN();
      rep.rounds.push_back(std::move(rec));
    }
    training_.set_clients({});  // `clients` ends with this call
    return rep;
  }

  /// Client updates rejected because they held NaN or Inf.
  std::size_t rejected_updates() const noexcept { return rejected_; }

 private:
  /// Multiply-accumulates of one client sample at rank r: the forward pass
  /// and the input-gradient GEMMs (at most twice the model's MACs: the first
  /// layer has no input gradient) plus the six thin adapter GEMMs of every
  /// wrapped layer (x·Aᵀ, t·Bᵀ, dy·B, dB, dA, u·A: 3·r·(In + Out)) — the
  /// Out×In weight-gradient GEMM of full fine-tuning is gone. (Counted at the
  /// client's rank r, not at the zero-padded capacity the simulation computes.)
  std::uint64_t sample_macs(std::size_t r) const noexcept {
    std::uint64_t n = 2ull * model::macs;
    for (const auto& l : layers()) n += 3ull * r * (l.in + l.out);
    return n;
  }

  lora_options opt_;
  computation training_;
  server_role server_;
  std::vector<float> base_;
  merged_network_type merged_;
  std::size_t rejected_ = 0;
};

}  // namespace tinylarge::workflow
