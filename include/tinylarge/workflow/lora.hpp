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

/// Federated LoRA fine-tuning of a pre-trained `Traits::model`.
/// @tparam Traits a `federated_traits` struct (only `model`, the optional
///         `precision` and the optional `lora_rank` — the capacity — are
///         used: the server step is the zero-padded FedAvg described above).
template <federated_traits Traits>
class federated_lora {
 public:
  using model = typename Traits::model;
  /// The precision the clients train in (`Traits::precision`, default fp32).
  using precision = typename detail::precision_of<Traits>::type;
  static_assert(float_precision<precision>,
                "federated_lora: Traits::precision must be a float_precision (fp32, fp16, bf16 or your own): the "
                "clients train the adapters in it");
  /// The rank of the wrapped layers (see "Capacity" above).
  static constexpr std::size_t capacity = detail::lora_capacity<Traits>();
  /// The model the clients train: every dense layer of `model` as `nn::lora<…, capacity>`.
  using adapted_model = nn::lora_model_t<model, capacity>;
  /// The network the clients train in.
  using network_type = nn::network<adapted_model, nn::heap_storage, precision>;
  /// The merged (plain) model's network, for inference.
  using merged_network_type = nn::network<model, nn::heap_storage, precision>;
  static constexpr std::size_t param_count = model::param_count;

  /// One adapted dense layer: where its weights are (in `model`'s layout), its
  /// shape, where its A and B live in the adapter vector, where its wrapper's
  /// parameters are in `adapted_model`'s layout.
  struct adapted_layer {
    std::size_t weight_offset, in, out, a_offset, b_offset, net_offset;
  };

  explicit federated_lora(const lora_options& o) : opt_(o), rng_(o.seed, 0x10fa'0001ULL) {
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
        const adapted_layer a{model::template param_offset<I>,  L::fan_in, L::fan_out, off,
                              off + o.max_rank * L::fan_in,     adapted_model::template param_offset<I>};
        off = a.b_offset + L::fan_out * o.max_rank;
        layers_.push_back(a);
        // s = α / r_max in every wrapper (its frozen scale).
        net_.parameters()[a.net_offset + L::scale_offset] = static_cast<float>(scale());
      }
    });
    TINYLARGE_REQUIRE(!layers_.empty(), errc::invalid_argument, "federated_lora: the model has no dense layer");
    adapters_.assign(off, 0.0f);
    rng init(o.seed, 0x10fa'0002ULL);
    for (const auto& l : layers_)
      for (std::size_t i = 0; i < o.max_rank * l.in; ++i) adapters_[l.a_offset + i] = init.normal(0.0f, o.init_stddev);
  }

  /// The frozen base model W₀ (a pre-trained model's parameters).
  /// @throws tl::shape_mismatch when `w` does not have the model's parameter count.
  void set_base(std::span<const float> w) {
    TINYLARGE_REQUIRE(w.size() == param_count, errc::shape_mismatch,
                      "federated_lora::set_base: wrong number of parameters");
    base_.assign(w.begin(), w.end());
    nn::load_lora_base<adapted_model>(base_.data(), net_.parameters().data());
  }
  std::span<const float> adapters() const noexcept { return adapters_; }
  const std::vector<adapted_layer>& layers() const noexcept { return layers_; }
  double scale() const noexcept { return static_cast<double>(opt_.alpha) / static_cast<double>(opt_.max_rank); }

  /// Adapter values a client of rank r trains and sends.
  std::size_t adapter_count(std::size_t r) const noexcept {
    std::size_t n = 0;
    for (const auto& l : layers_) n += r * (l.in + l.out);
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
    for (const auto& l : layers_)  // W (Out×In) += s · B (Out×r, row stride r_max) · A (r×In)
      kernels::gemm_f32(kernels::default_backend{}, transpose::no, transpose::no, l.out, l.in, r, s,
                        ad.data() + l.b_offset, opt_.max_rank, ad.data() + l.a_offset, l.in, 1.0f,
                        net.parameters().data() + l.weight_offset, l.in);
  }

  /// Test accuracy of the merged model W₀ + s·B A at full rank.
  double evaluate(const nn::labelled_view<std::uint8_t>& test) {
    merge(merged_, adapters_, opt_.max_rank);
    return nn::evaluate(merged_, nn::softmax_cross_entropy{}, test).accuracy;
  }

  /// Runs `rounds` rounds over the clients' data.
  report run(const std::vector<nn::labelled_view<std::uint8_t>>& clients, const nn::labelled_view<std::uint8_t>& test) {
    TINYLARGE_REQUIRE(base_.size() == param_count, errc::invalid_argument,
                      "federated_lora::run: call set_base with the pre-trained weights first");
    TINYLARGE_REQUIRE(opt_.client_ranks.empty() || opt_.client_ranks.size() == clients.size(), errc::invalid_argument,
                      "federated_lora::run: client_ranks must have one entry per client");
    report rep;
    rep.workflow = "fedlora";
    const std::size_t k_total = clients.size();
    const std::size_t m = detail::clients_per_round(opt_.client_fraction, k_total);
    const std::size_t dim = adapters_.size();
    for (std::size_t t = 1; t <= opt_.rounds; ++t) {
      std::vector<std::uint32_t> pool(k_total);
      std::iota(pool.begin(), pool.end(), 0u);
      rng_.shuffle(pool.data(), pool.size());
      pool.resize(m);
      std::sort(pool.begin(), pool.end());
      round_record rec;
      rec.round = t;
      // Per coordinate: Σ n_k · value and Σ n_k over the clients that trained it.
      std::vector<double> num(dim, 0.0), den(dim, 0.0);
      double loss = 0.0;
      std::uint64_t seen = 0;
      std::uint64_t worst_up = 0;
      double worst_compute = 0.0;
      for (const std::uint32_t c : pool) {
        const std::size_t r = opt_.client_ranks.empty() ? opt_.max_rank : opt_.client_ranks[c];
        std::vector<float> ad = adapters_;
        const local_training_result lr = train_client(ad, r, clients[c], t, c);
        loss += lr.mean_loss * static_cast<double>(lr.samples);
        seen += lr.samples;
        const auto n = static_cast<double>(clients[c].count);
        bool finite = true;
        for_each_active(r, [&](std::size_t j) { finite = finite && std::isfinite(ad[j]); });
        if (finite) {
          for_each_active(r, [&](std::size_t j) {
            num[j] += n * static_cast<double>(ad[j]);
            den[j] += n;
          });
        } else {
          ++rejected_;
        }
        role_cost rc{"client", c, {}, 0};
        rc.net.bytes_down = rc.net.bytes_up = adapter_count(r) * sizeof(float);
        rc.net.messages_down = rc.net.messages_up = 1;
        rc.macs = sample_macs(r) * lr.samples;
        worst_up = std::max(worst_up, rc.net.bytes_up);
        worst_compute = std::max(worst_compute, static_cast<double>(rc.macs) / opt_.link.device_macs_per_s);
        rec.parties.push_back(rc);
      }
      for (std::size_t j = 0; j < dim; ++j)
        if (den[j] > 0.0) adapters_[j] = static_cast<float>(num[j] / den[j]);
      role_cost server{"server", 0, {}, static_cast<std::uint64_t>(m) * dim};
      for (const auto& p : rec.parties) {
        server.net.bytes_up += p.net.bytes_up;
        server.net.bytes_down += p.net.bytes_down;
      }
      server.net.messages_up = server.net.messages_down = m;
      rec.parties.push_back(server);
      rec.sequential_hops = 2;
      rec.messages = 2 * m;
      rec.train_loss = seen ? loss / static_cast<double>(seen) : 0.0;
      rec.estimated_seconds = 2 * opt_.link.latency_s + static_cast<double>(worst_up) / opt_.link.downlink_bytes_per_s +
                              worst_compute + static_cast<double>(worst_up) / opt_.link.uplink_bytes_per_s;
      rec.test_accuracy = test.count ? evaluate(test) : std::numeric_limits<double>::quiet_NaN();
      rep.rounds.push_back(std::move(rec));
    }
    return rep;
  }

  /// Client updates rejected because they held NaN or Inf.
  std::size_t rejected_updates() const noexcept { return rejected_; }

 private:
  template <class F>
  void for_each_active(std::size_t r, F&& f) const {
    for (const auto& l : layers_) {
      for (std::size_t j = 0; j < r * l.in; ++j) f(l.a_offset + j);
      for (std::size_t o = 0; o < l.out; ++o)
        for (std::size_t k = 0; k < r; ++k) f(l.b_offset + o * opt_.max_rank + k);
    }
  }
  /// Multiply-accumulates of one client sample at rank r: the forward pass
  /// and the input-gradient GEMMs (at most twice the model's MACs: the first
  /// layer has no input gradient) plus the six thin adapter GEMMs of every
  /// wrapped layer (x·Aᵀ, t·Bᵀ, dy·B, dB, dA, u·A: 3·r·(In + Out)) — the
  /// Out×In weight-gradient GEMM of full fine-tuning is gone. (Counted at the
  /// client's rank r, not at the zero-padded capacity the simulation computes.)
  std::uint64_t sample_macs(std::size_t r) const noexcept {
    std::uint64_t n = 2ull * model::macs;
    for (const auto& l : layers_) n += 3ull * r * (l.in + l.out);
    return n;
  }

  /// The adapters `ad` truncated to rank r into the wrappers of `net_` (zero beyond r), or back.
  void load_adapters(const std::vector<float>& ad, std::size_t r) {
    const std::size_t R = opt_.max_rank;
    float* p = net_.parameters().data();
    for (const auto& l : layers_) {
      float* a = p + l.net_offset;                // A [capacity][In]
      float* b = a + capacity * l.in;             // B [Out][capacity]
      for (std::size_t k = 0; k < capacity; ++k)
        for (std::size_t i = 0; i < l.in; ++i) a[k * l.in + i] = k < r ? ad[l.a_offset + k * l.in + i] : 0.0f;
      for (std::size_t o = 0; o < l.out; ++o)
        for (std::size_t k = 0; k < capacity; ++k) b[o * capacity + k] = k < r ? ad[l.b_offset + o * R + k] : 0.0f;
    }
  }
  void store_adapters(std::vector<float>& ad, std::size_t r) const {
    const std::size_t R = opt_.max_rank;
    const float* p = net_.parameters().data();
    for (const auto& l : layers_) {
      const float* a = p + l.net_offset;
      const float* b = a + capacity * l.in;
      for (std::size_t j = 0; j < r * l.in; ++j) ad[l.a_offset + j] = a[j];
      for (std::size_t o = 0; o < l.out; ++o)
        for (std::size_t k = 0; k < r; ++k) ad[l.b_offset + o * R + k] = b[o * capacity + k];
    }
  }

  /// One client's local training: its rank-r adapters into the wrappers,
  /// `local_epochs` passes of the library's training step (`nn::train_epoch`)
  /// with plain SGD on the adapters only (`nn::trainable_state`), the adapters back.
  local_training_result train_client(std::vector<float>& ad, std::size_t r, const nn::labelled_view<std::uint8_t>& data,
                                     std::size_t round, std::size_t client) {
    using Loss = nn::softmax_cross_entropy;
    TINYLARGE_REQUIRE(data.target_size == 1, errc::shape_mismatch,
                      "federated_lora: a client's data must hold one class label per sample");
    TINYLARGE_REQUIRE(data.features == model::input_size, errc::shape_mismatch,
                      "federated_lora: a client's feature count differs from the model's input size");
    const std::size_t bs = opt_.batch_size == 0 ? data.count : std::min(opt_.batch_size, data.count);
    rng shuffle(opt_.seed ^ (0x9e3779b97f4a7c15ULL * round), client + 1);
    std::vector<std::uint32_t> order(data.count);
    std::iota(order.begin(), order.end(), 0u);
    load_adapters(ad, r);
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
    store_adapters(ad, r);
    local_training_result res;
    res.steps = totals.steps;
    res.samples = totals.samples;
    res.mean_loss = res.samples ? totals.loss_sum / static_cast<double>(res.samples) : 0.0;
    return res;
  }

  lora_options opt_;
  rng rng_;
  std::vector<adapted_layer> layers_;
  std::vector<float> adapters_;
  std::vector<float> base_;
  network_type net_;
  merged_network_type merged_;
  std::size_t rejected_ = 0;
};

}  // namespace tinylarge::workflow
