/// @file workflow/xtensor.hpp
/// @brief Workflows over xtensor: client data sets, global models, client
///        updates, aggregated models, smashed data and split segments as
///        xtensor arrays in and out; starting a workflow from a network
///        trained elsewhere (host profile).
///
/// @code
///   auto train = tl::data::load_fashion_mnist_set(tl::data::split::train);
///   tl::rng r(1);
///   auto clients = tl::data::split_shards(train, 100, 2, r);           // std::vector<labelled_set>
///   tl::workflow::federated_averaging<phone_fleet> fl(options);
///   tl::workflow::start_from(fl, pretrained);                          // a network trained elsewhere
///   fl.run(tl::workflow::client_views(clients), tl::workflow::as_view(test));
///   xt::xtensor<float, 1> w = tl::workflow::global_tensor(fl);
///
///   tl::psl<fleet> run(options);
///   tl::workflow::start_from(run, pretrained);
///   run.train(tl::workflow::as_view(train), parts);
///   xt::xtensor<float, 2> s = tl::workflow::smashed_data(run, xt::view(test.x, xt::range(0, 16)));
///   xt::xtensor<float, 2> logits = tl::workflow::server_forward(run, s);
/// @endcode
///
/// Transfer learning, Reptile, FedLoRA and distillation: `start_from` /
/// `set_initial_parameters` / `set_base` / `set_initial_student` take the
/// starting weights as xtensor (or a trained network); pre-trained models,
/// adapted parameters, LoRA adapters and student weights come out as xtensor.
///
/// These are adaptors: the workflows run exactly as with spans (the same
/// classes, the same `aggregator::round`); views returned here alias the
/// workflow's storage where it has one (`global_tensor` copies, since the
/// global model of a federated run changes every round).
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include <xtensor/xadapt.hpp>
#include <xtensor/xarray.hpp>
#include <xtensor/xbuilder.hpp>
#include <xtensor/xeval.hpp>
#include <xtensor/xmanipulation.hpp>
#include <xtensor/xtensor.hpp>
#include <xtensor/xview.hpp>

#include "../aggregate/aggregator.hpp"
#include "../aggregate/update.hpp"
#include "../core/error.hpp"
#include "../data/xtensor.hpp"
#include "../nn/train.hpp"
#include "../nn/xtensor.hpp"
#include "../partition/cut.hpp"
#include "distill.hpp"
#include "federated.hpp"
#include "lora.hpp"
#include "reptile.hpp"
#include "split.hpp"
#include "transfer.hpp"

namespace tinylarge::workflow {

// ---------------------------------------------------------------------------
// Data
// ---------------------------------------------------------------------------

/// A `labelled_set` as the `labelled_view` the workflows take (aliases `s`,
/// which must outlive the view).
inline nn::labelled_view<std::uint8_t> as_view(const data::labelled_set& s) {
  return {s.x.data(), s.y.data(), s.size(), s.features(), 1};
}

/// One view per client set (each aliases its set).
inline std::vector<nn::labelled_view<std::uint8_t>> client_views(const std::vector<data::labelled_set>& clients) {
  std::vector<nn::labelled_view<std::uint8_t>> v;
  v.reserve(clients.size());
  for (const auto& c : clients) v.push_back(as_view(c));
  return v;
}

/// `make_federated_dataset` of a `labelled_set` and a partition.
inline federated_dataset make_federated_dataset(const data::labelled_set& s, const data::partition_t& parts) {
  return make_federated_dataset(s.x.data(), s.y.data(), s.size(), s.features(), parts);
}

// ---------------------------------------------------------------------------
// Federated: global model, client updates, aggregation
// ---------------------------------------------------------------------------

/// The global model w_t of a federated run, as a 1-D xtensor (a copy).
template <class Traits>
xt::xtensor<float, 1> global_tensor(const federated_averaging<Traits>& fl) {
  const std::span<const float> g = fl.global();
  return xt::adapt(g.data(), g.size(), xt::no_ownership(), std::array<std::size_t, 1>{g.size()});
}

/// Start a federated run from the weights in `w` (any xexpression of
/// `param_count` values).
/// @throws tl::shape_error when the count differs.
template <class Traits, class E>
void set_global(federated_averaging<Traits>& fl, const xt::xexpression<E>& w) {
  const xt::xtensor<float, 1> flat = xt::flatten(xt::eval(w.derived_cast()));
  fl.set_global(std::span<const float>(flat.data(), flat.size()));
}

/// Start a federated run from a network trained elsewhere (same model type).
template <class Traits, class Net>
  requires requires(const Net& n) { n.parameters(); }
void start_from(federated_averaging<Traits>& fl, const Net& net) {
  static_assert(std::is_same_v<typename Net::model, typename Traits::model>,
                "tinylarge: start_from: the network's model differs from the workflow's");
  fl.set_global(std::span<const float>(net.parameters().data(), net.parameters().size()));
}

/// One client's fp32 update (its weights after local training) with its
/// example count, held in an xtensor.
struct client_update {
  std::uint64_t client_id = 0;
  xt::xtensor<float, 1> weights;
  std::int64_t num_examples = 0;

  /// The `client_result` the aggregator takes (aliases `weights`).
  client_result<fp32_update> result() const {
    return {client_id, fp32_update{std::span<const float>(weights.data(), weights.size())}, num_examples};
  }
};

/// A client's int8 update: per-chunk symmetric codes with their scales.
struct quantized_update {
  std::uint64_t client_id = 0;
  nn::quantized_tensor<xt::xtensor<std::int8_t, 1>> weights;
  std::int64_t num_examples = 0;

  /// The `client_result` the aggregator takes (aliases `weights`).
  client_result<int8_update> result() const {
    int8_update u;
    u.values = std::span<const std::int8_t>(weights.values.data(), weights.values.size());
    u.scales = std::span<const float>(weights.scale.data(), weights.scale.size());
    u.chunk_size = weights.group_size;
    return {client_id, u, num_examples};
  }
};

/// Symmetric per-chunk int8 quantization of `w` (flattened, C order) with
/// `encode_int8_update`: codes, one scale per `chunk_size` values (0: one for
/// all), zero points 0.
/// @throws tl::non_finite on NaN / Inf.
template <class E>
nn::quantized_tensor<xt::xtensor<std::int8_t, 1>> quantize_update(const xt::xexpression<E>& w,
                                                                  std::size_t chunk_size = 0) {
  const xt::xtensor<float, 1> flat = xt::flatten(xt::eval(w.derived_cast()));
  const std::size_t n = flat.size();
  const std::size_t c = (chunk_size == 0 || chunk_size > n) ? std::max<std::size_t>(n, 1) : chunk_size;
  const std::size_t groups = (n + c - 1) / c;
  nn::quantized_tensor<xt::xtensor<std::int8_t, 1>> q{xt::xtensor<std::int8_t, 1>::from_shape({n}),
                                                      xt::xtensor<float, 1>::from_shape({groups}),
                                                      xt::zeros<std::int32_t>(std::array<std::size_t, 1>{groups}), c};
  encode_int8_update(std::span<const float>(flat.data(), n), chunk_size, std::span<std::int8_t>(q.values.data(), n),
                     std::span<float>(q.scale.data(), groups));
  return q;
}

/// The result of one aggregation round over xtensor updates.
struct aggregated_model {
  xt::xtensor<float, 1> weights;  ///< w_{t+1} (unchanged from w_t when the round failed)
  round_report report;            ///< accepted / rejected updates and why
};

/// One round of `agg` (any aggregation policy, its validation of untrusted
/// updates included) starting from global model `global`, over client
/// updates held in xtensors (`client_update` or `quantized_update`).
template <class Policy, class E, class Update>
aggregated_model aggregate(aggregator<Policy>& agg, const xt::xexpression<E>& global,
                           const std::vector<Update>& updates) {
  aggregated_model out{xt::flatten(xt::eval(global.derived_cast())), {}};
  using R = decltype(updates.front().result());
  std::vector<R> results;
  results.reserve(updates.size());
  for (const auto& u : updates) results.push_back(u.result());
  out.report = agg.round(std::span<float>(out.weights.data(), out.weights.size()),
                         std::span<const R>(results.data(), results.size()));
  return out;
}

// ---------------------------------------------------------------------------
// Split learning: initial model, segments, smashed data
// ---------------------------------------------------------------------------

/// Start a split-learning run from whole-model weights `w` (any xexpression
/// of `model::param_count` values; e.g. `tl::nn::parameters(net)` of a
/// network trained elsewhere, or weights loaded from .npz into one).
template <class Traits, class S, class E>
void set_initial_parameters(split_learning<Traits, S>& run, const xt::xexpression<E>& w) {
  const xt::xtensor<float, 1> flat = xt::flatten(xt::eval(w.derived_cast()));
  run.set_initial_parameters(std::span<const float>(flat.data(), flat.size()));
}

/// Start a split-learning run from a network trained elsewhere (same model type).
template <class Traits, class S, class Net>
  requires requires(const Net& n) { n.parameters(); }
void start_from(split_learning<Traits, S>& run, const Net& net) {
  static_assert(std::is_same_v<typename Net::model, typename Traits::model>,
                "tinylarge: start_from: the network's model differs from the workflow's");
  run.set_initial_parameters(std::span<const float>(net.parameters().data(), net.parameters().size()));
}

/// The whole model's parameters after training (device segment, then the servers).
template <class Traits, class S>
xt::xtensor<float, 1> global_parameters(const split_learning<Traits, S>& run) {
  const std::vector<float> w = run.global_parameters();
  return xt::adapt(w.data(), w.size(), xt::no_ownership(), std::array<std::size_t, 1>{w.size()});
}

/// The canonical device segment's parameters, a read-only view of the run's storage.
template <class Traits, class S>
auto device_parameters(const split_learning<Traits, S>& run) {
  const std::span<const float> p = run.device_parameters();
  return xt::adapt(p.data(), p.size(), xt::no_ownership(), std::array<std::size_t, 1>{p.size()});
}

/// Client c's device segment, a read-only view of the run's storage.
template <class Traits, class S>
auto client_parameters(const split_learning<Traits, S>& run, std::size_t c) {
  const std::span<const float> p = run.client_parameters(c);
  return xt::adapt(p.data(), p.size(), xt::no_ownership(), std::array<std::size_t, 1>{p.size()});
}

/// Smashed data of a batch `x` (N × input_size, any xexpression) as the
/// first server receives it: N × cut_size<0>.
template <class Traits, class S, class E>
xt::xtensor<float, 2> smashed_data(split_learning<Traits, S>& run, const xt::xexpression<E>& x) {
  using Run = split_learning<Traits, S>;
  const auto b = nn::detail::as_rows<float>(x, Run::model::input_size, "smashed_data");
  constexpr std::size_t width = Run::template cut_size<0>;
  xt::xtensor<float, 2> out = xt::xtensor<float, 2>::from_shape({b.rows, width});
  if (b.rows > 0) run.smashed_data(b.data, b.rows, std::span<float>(out.data(), out.size()));
  return out;
}

/// Outputs of the server chain for smashed data (N × cut_size<0>): N × output_size.
template <class Traits, class S, class E>
xt::xtensor<float, 2> server_forward(split_learning<Traits, S>& run, const xt::xexpression<E>& smashed) {
  using Run = split_learning<Traits, S>;
  const auto b = nn::detail::as_rows<float>(smashed, Run::template cut_size<0>, "server_forward");
  xt::xtensor<float, 2> out = xt::xtensor<float, 2>::from_shape({b.rows, Run::model::output_size});
  if (b.rows > 0) run.server_forward(b.data, b.rows, std::span<float>(out.data(), out.size()));
  return out;
}

/// Whole-model parameters `w` (layout of `network<Model>::parameters()`) cut
/// into the segments of `Partition`: element s holds segment s's parameters
/// (0 = device, then the servers), each in that segment network's layout.
/// @throws tl::shape_error when `w` does not hold `Model::param_count` values.
template <class Partition, class Model, class E>
std::vector<xt::xtensor<float, 1>> split_parameters(const xt::xexpression<E>& w) {
  const xt::xtensor<float, 1> flat = xt::flatten(xt::eval(w.derived_cast()));
  TINYLARGE_REQUIRE(flat.size() == Model::param_count, errc::shape_mismatch,
                    "tinylarge: split_parameters: " + std::to_string(flat.size()) + " values for a model of " +
                        std::to_string(Model::param_count) + " parameters");
  std::vector<xt::xtensor<float, 1>> out;
  [&]<std::size_t... Seg>(std::index_sequence<Seg...>) {
    ((out.push_back(xt::view(flat, xt::range(segment_param_begin<Partition, Model, Seg>,
                                             segment_param_begin<Partition, Model, Seg> +
                                                 Partition::template segment<Model, Seg>::param_count)))),
     ...);
  }(std::make_index_sequence<Partition::segments>{});
  return out;
}

// ---------------------------------------------------------------------------
// Federated transfer learning
// ---------------------------------------------------------------------------

namespace detail {
template <class E>
xt::xtensor<float, 1> flat_copy(const xt::xexpression<E>& w) {
  return xt::flatten(xt::eval(w.derived_cast()));
}
inline xt::xtensor<float, 1> to_tensor(std::span<const float> p) {
  return xt::adapt(p.data(), p.size(), xt::no_ownership(), std::array<std::size_t, 1>{p.size()});
}
template <class P>
auto read_only_view(std::span<P> p) {
  return xt::adapt(p.data(), p.size(), xt::no_ownership(), std::array<std::size_t, 1>{p.size()});
}
/// `f(span)` over `w` flattened to contiguous floats (a copy while `f` runs).
template <class E, class F>
void with_flat(const xt::xexpression<E>& w, F&& f) {
  const xt::xtensor<float, 1> flat = flat_copy(w);
  f(std::span<const float>(flat.data(), flat.size()));
}
/// A trained network's parameters, checked at compile time to be of `Model`.
template <class Model, class Net>
std::span<const float> parameters_of(const Net& net) {
  static_assert(std::is_same_v<typename Net::model, Model>,
                "tinylarge: start_from: the network's model differs from the workflow's");
  return {net.parameters().data(), net.parameters().size()};
}
}  // namespace detail

/// Pre-train a transfer run from the weights in `w` (any xexpression of
/// `param_count` values) instead of its seed.
/// @throws tl::shape_error when the count differs.
template <class Traits, class E>
void set_initial_parameters(federated_transfer<Traits>& ft, const xt::xexpression<E>& w) {
  detail::with_flat(w, [&](std::span<const float> f) { ft.set_initial_parameters(f); });
}

/// Start a transfer run from a network trained elsewhere (same model type).
template <class Traits, class Net>
  requires requires(const Net& n) { n.parameters(); }
void start_from(federated_transfer<Traits>& ft, const Net& net) {
  ft.set_initial_parameters(detail::parameters_of<typename Traits::model>(net));
}

/// The server's model after pre-training (phase 1), a copy; empty before `run`.
template <class Traits>
xt::xtensor<float, 1> pretrained_tensor(const federated_transfer<Traits>& ft) {
  return detail::to_tensor(ft.pretrained());
}

/// The global model after federated training (phase 2), a copy.
template <class Traits>
xt::xtensor<float, 1> global_tensor(const federated_transfer<Traits>& ft) {
  return global_tensor(ft.federated());
}

// ---------------------------------------------------------------------------
// Reptile (federated_reptile is a federated_averaging: start_from,
// set_global and global_tensor above apply to it)
// ---------------------------------------------------------------------------

/// A meta-model `w` (any xexpression of `Model::param_count` values) adapted
/// to a task: `adapt_to_task` on `support`, the adapted weights out.
/// @throws tl::shape_error when `w` has the wrong size.
/// @tparam Precision the precision the adaptation trains in (default fp32).
template <nn::sequential_model Model, class Precision = fp32, nn::optimizer_policy Opt, class E>
xt::xtensor<float, 1> adapt_parameters(const xt::xexpression<E>& w, const data::labelled_set& support, const Opt& opt,
                                       std::size_t epochs, std::size_t batch_size, std::uint64_t seed) {
  static_assert(float_precision<Precision>,
                "adapt_parameters: Precision must be a float_precision (fp32, fp16, bf16 or your own): the adaptation "
                "trains");
  nn::network<Model, nn::heap_storage, Precision> net;
  detail::with_flat(
      w, [&](std::span<const float> f) { adapt_to_task(net, f, as_view(support), opt, epochs, batch_size, seed); });
  return detail::to_tensor(std::span<const float>(net.parameters().data(), net.parameters().size()));
}

/// `adapted_accuracy` of a meta-model held in an xexpression, on labelled sets.
/// @throws tl::shape_error when `w` has the wrong size.
template <nn::sequential_model Model, class Precision = fp32, nn::optimizer_policy Opt, class E>
double adapted_accuracy(const xt::xexpression<E>& w, const data::labelled_set& support,
                        const data::labelled_set& query, const Opt& opt, std::size_t epochs, std::size_t batch_size,
                        std::uint64_t seed) {
  double acc = 0.0;
  detail::with_flat(w, [&](std::span<const float> f) {
    acc = adapted_accuracy<Model, Precision>(f, as_view(support), as_view(query), opt, epochs, batch_size, seed);
  });
  return acc;
}

// ---------------------------------------------------------------------------
// Federated LoRA
// ---------------------------------------------------------------------------

/// The frozen base model W₀ of a LoRA run from any xexpression of `param_count` values.
/// @throws tl::shape_error when the count differs.
template <class Traits, class E>
void set_base(federated_lora<Traits>& run, const xt::xexpression<E>& w) {
  detail::with_flat(w, [&](std::span<const float> f) { run.set_base(f); });
}

/// A LoRA run's base model from a network trained elsewhere (same model type).
template <class Traits, class Net>
  requires requires(const Net& n) { n.parameters(); }
void start_from(federated_lora<Traits>& run, const Net& net) {
  run.set_base(detail::parameters_of<typename Traits::model>(net));
}

/// All adapters (every adapted layer's A then B, at r_max), a read-only
/// 1-D view of the run's storage.
template <class Traits>
auto adapters_tensor(const federated_lora<Traits>& run) {
  return detail::read_only_view(run.adapters());
}

/// Adapted dense layer `k`'s factors as read-only views of the run's
/// storage: A (r_max × In) and B (Out × r_max), W = W₀ + s · B A.
/// @throws tl::invalid_argument when `k` is not an adapted layer.
template <class Traits>
auto lora_factors(const federated_lora<Traits>& run, std::size_t k) {
  TINYLARGE_REQUIRE(k < run.layers().size(), errc::invalid_argument,
                    "tinylarge: lora_factors: layer " + std::to_string(k) + " of " +
                        std::to_string(run.layers().size()) + " adapted layers");
  const auto& l = run.layers()[k];
  const std::size_t r = (l.b_offset - l.a_offset) / l.in;
  const float* base = run.adapters().data();
  auto a = xt::adapt(base + l.a_offset, r * l.in, xt::no_ownership(), std::array<std::size_t, 2>{r, l.in});
  auto b = xt::adapt(base + l.b_offset, l.out * r, xt::no_ownership(), std::array<std::size_t, 2>{l.out, r});
  return std::make_pair(a, b);
}

/// The merged model W₀ + s · B A (adapters truncated to `rank`; 0: r_max),
/// in the layout of `network<model>::parameters()`, a copy. Needs the base.
template <class Traits>
xt::xtensor<float, 1> merged_parameters(const federated_lora<Traits>& run, std::size_t rank = 0) {
  using model = typename federated_lora<Traits>::model;
  const auto& l = run.layers().front();
  const std::size_t r_max = (l.b_offset - l.a_offset) / l.in;
  TINYLARGE_REQUIRE(rank <= r_max, errc::invalid_argument, "tinylarge: merged_parameters: rank above max_rank");
  nn::network<model> net;
  run.merge(net, run.adapters(), rank == 0 ? r_max : rank);
  return detail::to_tensor(std::span<const float>(net.parameters().data(), net.parameters().size()));
}

// ---------------------------------------------------------------------------
// Knowledge distillation
// ---------------------------------------------------------------------------

/// Start a distillation's student from the weights in `w` (any xexpression
/// of `student::param_count` values) instead of its seed.
/// @throws tl::shape_error when the count differs.
template <class Traits, class E>
void set_initial_student(knowledge_distillation<Traits>& kd, const xt::xexpression<E>& w) {
  detail::with_flat(w, [&](std::span<const float> f) { kd.set_initial_student(f); });
}

/// Start a distillation's student from a network trained elsewhere (the student's model type).
template <class Traits, class Net>
  requires requires(const Net& n) { n.parameters(); }
void start_from(knowledge_distillation<Traits>& kd, const Net& student) {
  kd.set_initial_student(detail::parameters_of<typename knowledge_distillation<Traits>::student>(student));
}

/// The distilled fp32 student's parameters, a 1-D view of its storage.
template <class Traits>
auto student_parameters(knowledge_distillation<Traits>& kd) {
  return nn::parameters(kd.student_network());
}

}  // namespace tinylarge::workflow
