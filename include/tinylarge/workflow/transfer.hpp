/// @file workflow/transfer.hpp
/// @brief Federated transfer learning: the server pre-trains on its own data,
///        federated learning continues from that start, and each client
///        personalises the result with a frozen backbone.
///
/// Three phases (the survey's FTL pipeline; Yang et al., "Federated Machine
/// Learning: Concept and Applications", ACM TIST 2019, §2.3, and the
/// fine-tuning personalisation of Wang et al. 2019, "Federated Evaluation of
/// On-device Personalization"):
///
///  1. **pre-train** on the server's (proxy) data: `pretrain_epochs` of
///     minibatch training, cost on the "server" role;
///  2. **federate**: `federated_averaging<Traits>` from the pre-trained
///     weights (the model is downloaded by every selected client as usual);
///  3. **personalise**: every client fine-tunes its own copy of the global
///     model on the first (1 − holdout) of its data for `personalize_epochs`,
///     with the first `frozen_layers` layers frozen (their parameters do not
///     change), and is evaluated on the remaining holdout part of its data.
///     The personal models never leave the device.
///
/// All three phases train in `Traits::precision` (default fp32; fp16 / bf16
/// are mixed-precision training with fp32 master weights, fp16 with dynamic
/// loss scaling, nn/network.hpp): the server's pre-training network, the
/// federated clients (federated_averaging) and the personal models are all
/// `network_type`. A precision that cannot train (e.g. int8) does not compile.
///
/// `transfer_result` reports the accuracy after each phase, the mean
/// per-client holdout accuracy of the global model before and after
/// personalisation, and the costs of all three phases in one report (round
/// 0 = pre-training, 1 … R = federated rounds, R + 1 = personalisation).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
#include <span>
#include <vector>

#include "../core/error.hpp"
#include "../core/rng.hpp"
#include "../nn/train.hpp"
#include "federated.hpp"

namespace tinylarge::workflow {

/// Settings of the pre-training and personalisation phases.
struct transfer_options {
  std::size_t pretrain_epochs = 3;
  std::size_t pretrain_batch = 32;
  std::size_t personalize_epochs = 2;
  std::size_t personalize_batch = 10;
  std::size_t frozen_layers = 0;    ///< leading layers frozen during personalisation (0: none)
  double holdout_fraction = 0.25;   ///< of each client's data, for the personalised evaluation
  std::uint64_t seed = 1;
};

/// What a federated transfer run measured.
struct transfer_result {
  double pretrained_accuracy = 0.0;    ///< server model on the test set after phase 1
  double federated_accuracy = 0.0;     ///< global model on the test set after phase 2
  double global_on_clients = 0.0;      ///< mean over clients of the global model's holdout accuracy
  double personalized_on_clients = 0.0;  ///< mean over clients of the personal models' holdout accuracy
  report costs;
};

/// Federated transfer learning over a traits struct (see federated.hpp for
/// the members).
/// @tparam Traits a `federated_traits` struct.
template <federated_traits Traits>
class federated_transfer {
  static_assert(float_precision<typename detail::precision_of<Traits>::type>,
                "federated_transfer: Traits::precision must be a float_precision (fp32, fp16, bf16 or your own): "
                "pre-training, federation and personalisation all train in it");

 public:
  using fl_type = federated_averaging<Traits>;
  using model = typename fl_type::model;
  using optimizer = typename fl_type::optimizer;
  using aggregation = typename fl_type::aggregation;
  /// The precision every phase trains in (`Traits::precision`, default fp32).
  using precision = typename fl_type::precision;
  /// The network the server pre-trains and each client personalises.
  using network_type = typename fl_type::network_type;

  federated_transfer(const transfer_options& t, const federated_options& f, const aggregation& policy = {},
                     const optimizer& opt = {})
      : topt_(t), fl_(f, policy, opt), opt_(opt) {
    TINYLARGE_REQUIRE(t.holdout_fraction > 0.0 && t.holdout_fraction < 1.0, errc::invalid_argument,
                      "federated_transfer: holdout_fraction must be in (0, 1)");
    TINYLARGE_REQUIRE(t.frozen_layers < model::size, errc::invalid_argument,
                      "federated_transfer: frozen_layers must leave at least one layer trainable");
  }

  fl_type& federated() noexcept { return fl_; }
  const fl_type& federated() const noexcept { return fl_; }

  /// Start pre-training from `w` (a model trained elsewhere) instead of the
  /// seeded initialisation; `pretrain_epochs = 0` then uses `w` as it is.
  /// @throws tl::shape_mismatch when `w` does not hold `model::param_count` values.
  void set_initial_parameters(std::span<const float> w) {
    TINYLARGE_REQUIRE(w.size() == model::param_count, errc::shape_mismatch,
                      "federated_transfer::set_initial_parameters: wrong number of parameters");
    start_.assign(w.begin(), w.end());
  }
  /// The server's model after pre-training (empty before `run`).
  std::span<const float> pretrained() const noexcept { return pretrained_; }

  /// A client's data split for phase 3: the first (1 − holdout_fraction)
  /// trains (federated rounds and personalisation), the rest evaluates.
  struct client_split {
    nn::labelled_view<std::uint8_t> train, holdout;
  };
  /// What one client's personalisation measured.
  struct personalization {
    double global_accuracy = 0.0;    ///< the global model on the client's holdout part
    double personal_accuracy = 0.0;  ///< its personal model on the same part
    std::size_t samples = 0;         ///< samples it fine-tuned on (all epochs)
  };

  /// Splits a client's data as every phase sees it (`holdout_fraction`).
  /// @throws tl::invalid_argument when a part would be empty.
  client_split split(const nn::labelled_view<std::uint8_t>& c) const {
    const auto keep =
        static_cast<std::size_t>(std::floor(static_cast<double>(c.count) * (1.0 - topt_.holdout_fraction)));
    TINYLARGE_REQUIRE(keep > 0 && keep < c.count, errc::invalid_argument,
                      "federated_transfer: a client has too few samples for the holdout split");
    return {{c.x, c.y, keep, c.features, c.target_size},
            {c.x + keep * c.features, c.y + keep * c.target_size, c.count - keep, c.features, c.target_size}};
  }

  /// Phase 1, the server's role: `pretrain_epochs` on `server_data` from the
  /// given or seeded start; the result is `pretrained()`.
  local_training_result pretrain(const nn::labelled_view<std::uint8_t>& server_data) {
    network_type net;
    if (start_.empty())
      net.initialize(topt_.seed);
    else
      std::copy(start_.begin(), start_.end(), net.parameters().begin());
    rng r(topt_.seed, 0x7a45'f001ULL);
    const local_training_result pre =
        train_locally(net, opt_, server_data, topt_.pretrain_epochs, topt_.pretrain_batch, r);
    pretrained_.assign(net.parameters().begin(), net.parameters().end());
    return pre;
  }

  /// Phase 3, client k's role: fine-tunes `net` from the global model
  /// `global` on the training part of its data, the first `frozen_layers`
  /// frozen, and evaluates the global and the personal model on its holdout
  /// part; `net` holds the personal model afterwards (it never leaves the
  /// device). Client k's randomness is its own stream of the seed.
  personalization personalize(std::size_t k, std::span<const float> global, const client_split& data,
                              network_type& net) const {
    TINYLARGE_REQUIRE(global.size() == model::param_count, errc::shape_mismatch,
                      "federated_transfer::personalize: the global model has the wrong number of parameters");
    std::copy(global.begin(), global.end(), net.parameters().begin());
    personalization p;
    p.global_accuracy = nn::evaluate(net, nn::softmax_cross_entropy{}, data.holdout).accuracy;
    rng rk(topt_.seed ^ 0x9e3779b97f4a7c15ULL, k + 1);
    const local_training_result lr =
        train_locally(net, opt_, data.train, topt_.personalize_epochs, topt_.personalize_batch, rk, {}, 0.0f,
                      frozen_parameter_count<model>(topt_.frozen_layers));
    p.personal_accuracy = nn::evaluate(net, nn::softmax_cross_entropy{}, data.holdout).accuracy;
    p.samples = lr.samples;
    return p;
  }

  /// The three phases in this process (the simulation; the roles over a
  /// transport: workflow/transfer_deploy.hpp).
  /// @param server_data the server's own labelled data (pre-training)
  /// @param clients     each client's data; the last `holdout_fraction` of it
  ///                    is kept out of federated training and personalisation
  /// @param test        global test set
  /// @param on_personal called with (k, client k's personal model) after its
  ///                    personalisation, if set
  transfer_result run(const nn::labelled_view<std::uint8_t>& server_data,
                      const std::vector<nn::labelled_view<std::uint8_t>>& clients,
                      const nn::labelled_view<std::uint8_t>& test,
                      const std::function<void(std::size_t, std::span<const float>)>& on_personal = {}) {
    transfer_result res;
    // 1. Pre-train on the server.
    const local_training_result pre = pretrain(server_data);
    network_type net;
    std::copy(pretrained_.begin(), pretrained_.end(), net.parameters().begin());
    res.pretrained_accuracy = test.count ? nn::evaluate(net, nn::softmax_cross_entropy{}, test).accuracy : 0.0;
    round_record r0;
    r0.round = 0;
    r0.train_loss = pre.mean_loss;
    r0.test_accuracy = res.pretrained_accuracy;
    r0.parties.push_back({"server", 0, {}, 3ull * model::macs * pre.samples});
    r0.estimated_seconds = static_cast<double>(r0.parties.back().macs) / fl_.options().link.server_macs_per_s;

    // Split every client into a training part and a holdout part.
    std::vector<client_split> parts;
    std::vector<nn::labelled_view<std::uint8_t>> train_part;
    for (const auto& c : clients) {
      parts.push_back(split(c));
      train_part.push_back(parts.back().train);
    }

    // 2. Federated learning from the pre-trained start.
    fl_.set_global(pretrained_);
    report fed = fl_.run(train_part, test);
    res.federated_accuracy = test.count ? fl_.evaluate(test) : 0.0;

    // 3. Personalisation: each client fine-tunes its own copy.
    round_record rp;
    rp.round = fed.rounds.size() + 1;
    double before = 0.0, after = 0.0, worst = 0.0;
    for (std::size_t k = 0; k < clients.size(); ++k) {
      network_type personal;  // its own network, as on its device (fp16: its own loss scale)
      const personalization p = personalize(k, fl_.global(), parts[k], personal);
      if (on_personal) on_personal(k, personal.parameters());
      before += p.global_accuracy;
      after += p.personal_accuracy;
      role_cost c{"client", k, {}, 3ull * model::macs * p.samples};
      worst = std::max(worst, static_cast<double>(c.macs) / fl_.options().link.device_macs_per_s);
      rp.parties.push_back(std::move(c));
    }
    const auto kc = static_cast<double>(clients.size());
    res.global_on_clients = before / kc;
    res.personalized_on_clients = after / kc;
    rp.test_accuracy = std::numeric_limits<double>::quiet_NaN();
    rp.estimated_seconds = worst;

    res.costs.workflow = "federated_transfer";
    res.costs.rounds.push_back(std::move(r0));
    for (auto& rr : fed.rounds) res.costs.rounds.push_back(std::move(rr));
    res.costs.rounds.push_back(std::move(rp));
    return res;
  }

  /// The transfer and federated settings.
  const transfer_options& transfer_settings() const noexcept { return topt_; }
  /// Every party's local optimizer.
  const optimizer& local_optimizer() const noexcept { return opt_; }

 private:
  transfer_options topt_;
  fl_type fl_;
  optimizer opt_;
  std::vector<float> start_;       // given initial weights (empty: seeded)
  std::vector<float> pretrained_;  // after phase 1
};

}  // namespace tinylarge::workflow
