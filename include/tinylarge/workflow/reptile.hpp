/// @file workflow/reptile.hpp
/// @brief Federated meta-learning with Reptile: each client is a task, the
///        server moves the meta-model towards the clients' adapted weights.
///
/// Reptile (Nichol, Achiam and Schulman, "On First-Order Meta-Learning
/// Algorithms", 2018, Algorithm 2, batched version): with meta-weights φ,
/// tasks τ_1 … τ_m sampled per round and W_i = SGD_k(φ; τ_i) the weights
/// after k steps of local training on task i,
///
///     φ ← φ + ε · (1/m · Σ_i W_i − φ)
///
/// which is FedAvg (ε = 1) with a server step size ε < 1 (Nichol et al. §5
/// note the link to FedAvg; Jiang et al. 2019, "Improving Federated Learning
/// Personalization via Model Agnostic Meta Learning"). The meta-model is then
/// judged by how well it *adapts*: `adapted_accuracy` fine-tunes a copy for a
/// few steps on a task's support set and tests on its query set.
///
/// Deliberate difference from the paper: the mean over tasks is weighted by
/// the tasks' example counts (the aggregator's FedAvg mean); with equal-size
/// tasks, as in the paper, the two agree.
#pragma once

#include <algorithm>
#include <concepts>
#include <cstddef>
#include <span>

#include "../aggregate/policy.hpp"
#include "../core/error.hpp"
#include "../nn/train.hpp"
#include "federated.hpp"

namespace tinylarge::workflow {

/// The Reptile server step as a linear aggregation policy:
/// w ← w + ε · (mean − w). ε = 1 is FedAvg.
struct reptile_step {
  float epsilon = 0.5f;  ///< outer step size ε ∈ (0, 1]

  static constexpr const char* name() noexcept { return "reptile"; }
  static constexpr bool linear = true;
  std::size_t min_clients() const noexcept { return 1; }

  template <std::floating_point T>
  struct state {
    state(const reptile_step& /*policy*/, std::size_t /*dimension*/) noexcept {}
  };
  template <std::floating_point T>
  void apply(state<T>& /*st*/, std::span<T> global, std::span<const T> mean) const {
    TINYLARGE_REQUIRE(epsilon > 0.0f && epsilon <= 1.0f, errc::invalid_argument, "reptile: epsilon must be in (0, 1]");
    const T eps = static_cast<T>(epsilon);
    for (std::size_t j = 0; j < global.size(); ++j) global[j] += eps * (mean[j] - global[j]);
  }
};
static_assert(aggregation_policy<reptile_step>);

namespace detail {
template <class Traits>
struct reptile_traits : Traits {
  using aggregation = reptile_step;
};
}  // namespace detail

/// Federated Reptile over a traits struct (its `aggregation` is replaced by
/// `reptile_step`; `model`, `optimizer`, `update`, `transport` and
/// `precision` are kept: the inner loop trains in `Traits::precision`,
/// default fp32, and a precision that cannot train does not compile).
/// Local training is `federated_options::local_epochs` × batches of
/// `batch_size` (k = E · ⌈n_k / B⌉ inner steps).
///
/// @tparam Traits a `federated_traits` struct.
template <federated_traits Traits>
using federated_reptile = federated_averaging<detail::reptile_traits<Traits>>;

/// Adapt a meta-model to a task: copy `weights` into `net` and train it for
/// `epochs` passes over `support` (batch `batch_size`, 0 = full batch) with
/// `opt`, in the network's precision. `net` then holds the adapted weights.
/// @throws tl::shape_mismatch when `weights` has the wrong size.
template <nn::sequential_model Model, class Storage, class Precision, nn::optimizer_policy Opt>
void adapt_to_task(nn::network<Model, Storage, Precision>& net, std::span<const float> weights,
                   const nn::labelled_view<std::uint8_t>& support, const Opt& opt, std::size_t epochs,
                   std::size_t batch_size, std::uint64_t seed) {
  TINYLARGE_REQUIRE(weights.size() == Model::param_count, errc::shape_mismatch,
                    "adapt_to_task: the weights do not match the model's parameter count");
  std::copy(weights.begin(), weights.end(), net.parameters().begin());
  rng r(seed, 0xada'97ULL);
  if (epochs > 0) (void)train_locally(net, opt, support, epochs, batch_size, r);
}

/// Few-shot accuracy of a meta-model: `adapt_to_task` a copy of `weights` on
/// `support` and return the accuracy on `query`.
/// @tparam Precision the precision the adaptation trains in (default fp32;
///         pass `federated_reptile<Traits>::precision` to adapt as the
///         clients trained)
/// @throws tl::shape_mismatch when `weights` has the wrong size.
template <nn::sequential_model Model, class Precision = fp32, nn::optimizer_policy Opt>
double adapted_accuracy(std::span<const float> weights, const nn::labelled_view<std::uint8_t>& support,
                        const nn::labelled_view<std::uint8_t>& query, const Opt& opt, std::size_t epochs,
                        std::size_t batch_size, std::uint64_t seed) {
  TINYLARGE_REQUIRE(weights.size() == Model::param_count, errc::shape_mismatch,
                    "adapted_accuracy: the weights do not match the model's parameter count");
  static_assert(float_precision<Precision>,
                "adapted_accuracy: Precision must be a float_precision (fp32, fp16, bf16 or your own): the adaptation "
                "trains");
  nn::network<Model, nn::heap_storage, Precision> net;
  adapt_to_task(net, weights, support, opt, epochs, batch_size, seed);
  return nn::evaluate(net, nn::softmax_cross_entropy{}, query).accuracy;
}

}  // namespace tinylarge::workflow
