/// @file workflow/lora.hpp
/// @brief Federated fine-tuning with LoRA adapters, with heterogeneous ranks
///        aggregated by zero-padding.
///
/// LoRA (Hu et al., "LoRA: Low-Rank Adaptation of Large Language Models",
/// ICLR 2022): every dense layer's weight W₀ ∈ ℝ^{Out×In} stays frozen and
/// learns a low-rank correction,
///
///     W = W₀ + s · B A,   A ∈ ℝ^{r×In} (init N(0, σ²)),  B ∈ ℝ^{Out×r} (init 0),  s = α / r_max
///
/// and only A and B are trained and communicated:
///     ∂L/∂B = s · G Aᵀ,   ∂L/∂A = s · Bᵀ G,   G = ∂L/∂W (the dense layer's weight gradient).
///
/// **Heterogeneous ranks** (HetLoRA, Cho et al., "Heterogeneous LoRA for
/// Federated Fine-tuning of On-Device Foundation Models", 2023): client k
/// trains rank r_k ≤ r_max — it receives the first r_k rows of every A and
/// the first r_k columns of every B, and sends them back. The server
/// zero-pads each update to r_max and takes the example-weighted mean per
/// coordinate. An update with a NaN/Inf value is rejected whole (counted in
/// `rejected_updates()`), never averaged. Deliberate choices, stated: the scale s = α/r_max
/// is the same for every client (so that padded components add up
/// consistently), and components beyond a client's rank are *not* part of
/// its update: they are averaged only over the clients that trained them
/// (otherwise zero-padding would shrink the high-rank components by the
/// fraction of low-rank clients in every round — the known dilution of naive
/// zero-padding).
///
/// Biases and non-dense layers stay frozen at the base model's values.
///
/// Precision: the clients' forward and backward passes through the merged
/// model W₀ + s·B A run in `Traits::precision` (default fp32; fp16 / bf16
/// are mixed precision, nn/network.hpp: the merged weights are rounded to P
/// in every forward pass, and fp16 uses dynamic loss scaling — a step whose
/// scaled gradients overflowed is skipped). The adapters A, B and their
/// update stay fp32 (the master weights). A precision that cannot train
/// (e.g. int8) does not compile.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <numeric>
#include <span>
#include <vector>

#include "../aggregate/aggregator.hpp"
#include "../aggregate/policy.hpp"
#include "../core/error.hpp"
#include "../core/rng.hpp"
#include "../nn/loss.hpp"
#include "../nn/network.hpp"
#include "../nn/train.hpp"
#include "federated.hpp"
#include "report.hpp"

namespace tinylarge::workflow {

/// Settings of a federated LoRA run.
struct lora_options {
  std::size_t max_rank = 8;             ///< r_max
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
/// @tparam Traits a `federated_traits` struct (only `model` and the optional
///         `precision` are used: the server step is the zero-padded FedAvg
///         described above).
template <federated_traits Traits>
class federated_lora {
 public:
  using model = typename Traits::model;
  /// The precision the clients train in (`Traits::precision`, default fp32).
  using precision = typename detail::precision_of<Traits>::type;
  static_assert(float_precision<precision>,
                "federated_lora: Traits::precision must be a float_precision (fp32, fp16, bf16 or your own): the "
                "clients train through the merged model");
  /// The network the merged model runs in.
  using network_type = nn::network<model, nn::heap_storage, precision>;
  static constexpr std::size_t param_count = model::param_count;

  /// One adapted dense layer: where its weights are, its shape, where its
  /// A and B live in the adapter vector.
  struct adapted_layer {
    std::size_t weight_offset, in, out, a_offset, b_offset;
  };

  explicit federated_lora(const lora_options& o) : opt_(o), rng_(o.seed, 0x10fa'0001ULL) {
    TINYLARGE_REQUIRE(o.max_rank > 0 && o.alpha > 0.0f, errc::invalid_argument,
                      "federated_lora: max_rank and alpha must be > 0");
    for (const std::size_t r : o.client_ranks)
      TINYLARGE_REQUIRE(r >= 1 && r <= o.max_rank, errc::invalid_argument,
                        "federated_lora: every client rank must be in [1, max_rank]");
    std::size_t off = 0;
    model::for_each_layer([&]<std::size_t I>() {
      using L = typename model::template layer<I>;
      if constexpr (L::kind == nn::layer_kind::dense) {
        const adapted_layer a{model::template param_offset<I>, L::fan_in, L::fan_out, off, off + o.max_rank * L::fan_in};
        off = a.b_offset + L::fan_out * o.max_rank;
        layers_.push_back(a);
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

  /// W₀ + s · B A (with the adapters truncated to rank r) into `net`.
  void merge(network_type& net, std::span<const float> ad, std::size_t r) const {
    std::copy(base_.begin(), base_.end(), net.parameters().begin());
    const auto s = static_cast<float>(scale());
    for (const auto& l : layers_) {
      float* w = net.parameters().data() + l.weight_offset;
      const float* a = ad.data() + l.a_offset;
      const float* b = ad.data() + l.b_offset;
      for (std::size_t o = 0; o < l.out; ++o)
        for (std::size_t k = 0; k < r; ++k) {
          const float bk = s * b[o * opt_.max_rank + k];
          if (bk == 0.0f) continue;
          const float* ak = a + k * l.in;
          float* wo = w + o * l.in;
          for (std::size_t i = 0; i < l.in; ++i) wo[i] += bk * ak[i];
        }
    }
  }

  /// Test accuracy of W₀ + s·B A at full rank.
  double evaluate(const nn::labelled_view<std::uint8_t>& test) {
    merge(net_, adapters_, opt_.max_rank);
    return nn::evaluate(net_, nn::softmax_cross_entropy{}, test).accuracy;
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
        rc.macs = 3ull * model::macs * lr.samples + lr.steps * merge_macs(r);
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
  std::uint64_t merge_macs(std::size_t r) const noexcept {
    std::uint64_t n = 0;
    for (const auto& l : layers_) n += 3ull * r * l.in * l.out;  // merge + the two adapter gradients
    return n;
  }

  local_training_result train_client(std::vector<float>& ad, std::size_t r, const nn::labelled_view<std::uint8_t>& data,
                                     std::size_t round, std::size_t client) {
    using Loss = nn::softmax_cross_entropy;
    TINYLARGE_REQUIRE(data.target_size == 1, errc::shape_mismatch,
                      "federated_lora: a client's data must hold one class label per sample");
    const std::size_t bs = opt_.batch_size == 0 ? data.count : std::min(opt_.batch_size, data.count);
    rng shuffle(opt_.seed ^ (0x9e3779b97f4a7c15ULL * round), client + 1);
    std::vector<std::uint32_t> order(data.count);
    std::iota(order.begin(), order.end(), 0u);
    std::vector<float> ga(ad.size());
    const auto s = static_cast<float>(scale());
    const std::size_t R = opt_.max_rank;
    // The base stays frozen: every step merges the adapters into it (hook
    // before the forward pass) and, instead of an optimizer step on the
    // weights, steps the adapters with the chain rule through W = W0 + s·B·A.
    struct merge_adapters {
      const federated_lora& self;
      const std::vector<float>& ad;
      std::size_t r;
      void before_forward(network_type& n) const { self.merge(n, ad, r); }
    } hooks{*this, ad, r};
    auto update_adapters = [&](network_type& n) {
      for (const auto& ly : layers_) {
        const float* g = n.gradients().data() + ly.weight_offset;  // Out × In
        const float* a = ad.data() + ly.a_offset;
        const float* bm = ad.data() + ly.b_offset;
        // dB[o][k] = s Σ_i G[o][i] A[k][i];  dA[k][i] = s Σ_o B[o][k] G[o][i]
        for (std::size_t o = 0; o < ly.out; ++o)
          for (std::size_t k = 0; k < r; ++k) {
            float acc = 0.0f;
            for (std::size_t i = 0; i < ly.in; ++i) acc += g[o * ly.in + i] * a[k * ly.in + i];
            ga[ly.b_offset + o * R + k] = s * acc;
          }
        for (std::size_t k = 0; k < r; ++k) {
          float* da = ga.data() + ly.a_offset + k * ly.in;
          std::fill(da, da + ly.in, 0.0f);
          for (std::size_t o = 0; o < ly.out; ++o) {
            const float bok = s * bm[o * R + k];
            if (bok == 0.0f) continue;
            for (std::size_t i = 0; i < ly.in; ++i) da[i] += bok * g[o * ly.in + i];
          }
        }
      }
      const float lr = opt_.learning_rate;
      for_each_active(r, [&](std::size_t j) { ad[j] -= lr * ga[j]; });
    };
    nn::batch_buffers<std::uint8_t> buf;
    nn::epoch_totals totals;  // an fp16 loss-scale overflow skips the adapter step (counted as a step, as before)
    for (std::size_t e = 0; e < opt_.local_epochs; ++e) {
      shuffle.shuffle(order.data(), order.size());
      nn::train_epoch(
          net_, data, order, bs, buf, totals,
          [](const float* out, const std::uint8_t* y, std::span<const std::uint32_t>, std::size_t b, float* grad) {
            return Loss::evaluate(out, y, b, model::output_size, grad);
          },
          update_adapters, hooks, "federated_lora: a client's loss became NaN or Inf");
    }
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
  std::size_t rejected_ = 0;
};

}  // namespace tinylarge::workflow
