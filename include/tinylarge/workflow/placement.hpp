/// @file workflow/placement.hpp
/// @brief Placement of a layer chain on a chain of servers: the cut points
///        that minimise a pipeline's bottleneck stage, by exact dynamic
///        programming (`place_pipeline`), with the cost model stated below.
///
/// A model of L layers (a `sequential`, or any chain described by
/// `layer_cost`s) runs as a pipeline on K servers in a fixed order (device →
/// edge → … → cloud): server s runs a contiguous, non-empty range of layers,
/// and sends its last layer's output to server s + 1 over link s. The result
/// is the K − 1 cut points, i.e. the `cut<K1, …>` of partition/cut.hpp.
///
/// ## Cost model (per micro-batch of m samples)
///  - compute of server s running layers (i, j]:  m · Σ MACs / `macs_per_second`
///    + `overhead_seconds` (a fixed cost per micro-batch: dispatch, framing);
///  - link s (after server s, s < K − 1): `latency_seconds` + m · (values per
///    sample at the cut) · `bytes_per_value` / `bytes_per_second`;
///  - memory of server s: its parameters × `bytes_per_parameter` + the largest
///    layer output of its range × m × 4 bytes (ping-pong activations) must fit
///    `memory_bytes` (0: no limit), else the range is not allowed there.
///
/// With `overlap` (the default: a server computes micro-batch t + 1 while its
/// link carries t, as in GPipe-style pipelines with a separate network
/// engine) every compute and every link is a stage of its own and the
/// pipeline's period — the time between two finished micro-batches in the
/// steady state, the reciprocal of its throughput — is the largest of them.
/// Without overlap, server s's stage is its compute plus its outgoing link.
/// The latency of one micro-batch through an empty pipeline is the sum of
/// all computes and links. `place_pipeline` minimises the period and, among
/// placements with the same period, the latency.
///
/// ## The algorithm
/// period(s, j) = the least period of layers [0, j) on servers 0 … s with
/// server s ending at layer j = min over i < j of max(period(s − 1, i),
/// stage(s, [i, j))), where stage is server s's compute and outgoing link.
/// A second pass of the same shape finds, among the placements whose every
/// stage is within the least period P*, the least latency (latency adds up
/// over the servers; a lexicographic (period, latency) pass would not be
/// exact). O(K · L²) stage evaluations per pass, O(K · L) memory; exact for this cost model (tested
/// against enumeration of every placement). What it does not model: stages
/// that share a physical link or a CPU, memory of the optimizer state when
/// training (pass it in `bytes_per_parameter`), the bubble of a finite
/// number of micro-batches (period × (M + K − 1) for M micro-batches, to
/// first order).
///
/// Host only (std::vector). Errors: `tl::invalid_argument` for K = 0, more
/// servers than layers, or a non-positive speed / bandwidth;
/// `tl::invalid_argument` with code `errc::capacity_exceeded` when no
/// placement fits the servers' memory.
#pragma once

#include <algorithm>
#include <cstddef>
#include <limits>
#include <span>
#include <utility>
#include <vector>

#include "../core/error.hpp"

namespace tinylarge::workflow {

/// One layer of the chain, as the placement sees it.
struct layer_cost {
  double macs = 0.0;              ///< multiply-accumulates per sample
  std::size_t out_values = 0;     ///< values per sample of its output (what a cut after it sends)
  std::size_t parameters = 0;     ///< trainable and frozen parameters it stores
};

/// One server of the chain, and the link to the next one.
struct server_profile {
  double macs_per_second = 1e9;   ///< sustained compute
  double overhead_seconds = 0.0;  ///< fixed cost per micro-batch (dispatch, framing)
  double memory_bytes = 0.0;      ///< what the stage may use (0: unlimited)
  double bytes_per_second = 1e8;  ///< the link to the next server (ignored for the last one)
  double latency_seconds = 0.0;   ///< of that link
};

/// Settings of the cost model.
struct placement_options {
  std::size_t micro_batch = 1;        ///< m, samples per micro-batch
  double bytes_per_value = 4.0;       ///< on the links (4 fp32, 2 fp16, ≈1 int8)
  double bytes_per_parameter = 4.0;   ///< in a server's memory (add optimizer state for training)
  bool overlap = true;                ///< links and computes are separate stages (see the file comment)
};

/// A placement and its predicted costs.
struct placement {
  std::vector<std::size_t> cuts;        ///< K − 1 layer indices: server s runs [cuts[s−1], cuts[s])
  std::vector<double> compute_seconds;  ///< per server, per micro-batch
  std::vector<double> link_seconds;     ///< per link (K − 1), per micro-batch
  double period_seconds = 0.0;          ///< the bottleneck stage: 1 / throughput in micro-batches
  double latency_seconds = 0.0;         ///< one micro-batch through the empty pipeline
};

/// The per-layer costs of a compile-time model (`sequential<…>`): MACs,
/// output values and parameters of every layer, from the bound layers' facts.
template <class Model>
std::vector<layer_cost> layer_costs() {
  std::vector<layer_cost> out;
  out.reserve(Model::size);
  [&]<std::size_t... I>(std::index_sequence<I...>) {
    (out.push_back({static_cast<double>(Model::template layer<I>::macs), Model::template layer<I>::out_shape::size,
                    Model::template layer<I>::param_count}),
     ...);
  }(std::make_index_sequence<Model::size>{});
  return out;
}

namespace detail {

/// The cost model of `place_pipeline`, with prefix sums over the layers.
class placement_costs {
 public:
  placement_costs(std::span<const layer_cost> layers, std::span<const server_profile> servers,
                  const placement_options& opt)
      : layers_(layers), servers_(servers), opt_(opt), macs_(layers.size() + 1, 0.0), params_(layers.size() + 1, 0.0) {
    for (std::size_t l = 0; l < layers.size(); ++l) {
      macs_[l + 1] = macs_[l] + layers[l].macs;
      params_[l + 1] = params_[l] + static_cast<double>(layers[l].parameters);
    }
  }
  /// Compute seconds of server s on layers [i, j) per micro-batch; +inf when they do not fit its memory.
  double compute(std::size_t s, std::size_t i, std::size_t j) const {
    const server_profile& p = servers_[s];
    const double m = static_cast<double>(opt_.micro_batch);
    if (p.memory_bytes > 0.0) {
      std::size_t widest = 0;
      for (std::size_t l = i; l < j; ++l) widest = std::max(widest, layers_[l].out_values);
      if (i > 0) widest = std::max(widest, layers_[i - 1].out_values);  // its input
      const double need = (params_[j] - params_[i]) * opt_.bytes_per_parameter + 2.0 * m * 4.0 * static_cast<double>(widest);
      if (need > p.memory_bytes) return std::numeric_limits<double>::infinity();
    }
    return m * (macs_[j] - macs_[i]) / p.macs_per_second + p.overhead_seconds;
  }
  /// Seconds of link s (server s → s + 1) carrying a cut after layer j − 1.
  double link(std::size_t s, std::size_t j) const {
    const server_profile& p = servers_[s];
    return p.latency_seconds + static_cast<double>(opt_.micro_batch) * static_cast<double>(layers_[j - 1].out_values) *
                                   opt_.bytes_per_value / p.bytes_per_second;
  }
  /// The stage cost of server s on [i, j) and, when s is not the last, its outgoing link.
  double stage(std::size_t s, std::size_t i, std::size_t j) const {
    const double c = compute(s, i, j);
    if (s + 1 == servers_.size()) return c;
    const double l = link(s, j);
    return opt_.overlap ? std::max(c, l) : c + l;
  }
  double latency(std::size_t s, std::size_t i, std::size_t j) const {
    return compute(s, i, j) + (s + 1 == servers_.size() ? 0.0 : link(s, j));
  }

 private:
  std::span<const layer_cost> layers_;
  std::span<const server_profile> servers_;
  placement_options opt_;
  std::vector<double> macs_, params_;
};

}  // namespace detail

/// The placement of `layers` (in order) on `servers` (in order, each given a
/// non-empty range) with the least pipeline period, ties broken by the least
/// latency (see the file comment for the cost model and the algorithm).
/// @throws tl::invalid_argument no servers, more servers than layers, a
///         non-positive speed / bandwidth or micro-batch
/// @throws tl::invalid_argument (code `errc::capacity_exceeded`) when no
///         placement fits every server's memory
inline placement place_pipeline(std::span<const layer_cost> layers, std::span<const server_profile> servers,
                                const placement_options& opt = {}) {
  const std::size_t L = layers.size(), K = servers.size();
  TINYLARGE_REQUIRE(K > 0, errc::invalid_argument, "place_pipeline: no servers");
  TINYLARGE_REQUIRE(K <= L, errc::invalid_argument,
                    "place_pipeline: more servers than layers (every server needs at least one layer)");
  TINYLARGE_REQUIRE(opt.micro_batch > 0, errc::invalid_argument, "place_pipeline: micro_batch must be positive");
  for (const server_profile& p : servers)
    TINYLARGE_REQUIRE(p.macs_per_second > 0.0 && p.bytes_per_second > 0.0 && p.latency_seconds >= 0.0 &&
                          p.overhead_seconds >= 0.0 && p.memory_bytes >= 0.0,
                      errc::invalid_argument,
                      "place_pipeline: a server needs positive macs_per_second and bytes_per_second, and "
                      "non-negative latency, overhead and memory");
  const detail::placement_costs cost(layers, servers, opt);
  constexpr double inf = std::numeric_limits<double>::infinity();
  // Pass 1: period(s, j), the least period of layers [0, j) on servers 0 … s, server s ending at j.
  std::vector<std::vector<double>> period(K, std::vector<double>(L + 1, inf));
  for (std::size_t j = 1; j <= L - (K - 1); ++j) period[0][j] = cost.stage(0, 0, j);
  for (std::size_t s = 1; s < K; ++s)
    for (std::size_t j = s + 1; j <= L - (K - 1 - s); ++j)
      for (std::size_t i = s; i < j; ++i)
        if (period[s - 1][i] != inf) period[s][j] = std::min(period[s][j], std::max(period[s - 1][i], cost.stage(s, i, j)));
  const double best_period = period[K - 1][L];
  TINYLARGE_REQUIRE(best_period != inf, errc::capacity_exceeded,
                    "place_pipeline: no placement fits every server's memory_bytes");
  // Pass 2: the least latency among placements whose every stage is within the best period
  // (latency adds up over the servers, so this is exact; the period is one of the stage
  // costs, computed by the same function, so the comparison is exact too).
  struct dp_cell {
    double latency = inf;
    std::size_t from = 0;  // where server s begins
  };
  std::vector<std::vector<dp_cell>> best(K, std::vector<dp_cell>(L + 1));
  for (std::size_t j = 1; j <= L - (K - 1); ++j)
    if (cost.stage(0, 0, j) <= best_period) best[0][j] = {cost.latency(0, 0, j), 0};
  for (std::size_t s = 1; s < K; ++s) {
    for (std::size_t j = s + 1; j <= L - (K - 1 - s); ++j) {
      dp_cell& c = best[s][j];
      for (std::size_t i = s; i < j; ++i) {
        if (best[s - 1][i].latency == inf || cost.stage(s, i, j) > best_period) continue;
        const double l = best[s - 1][i].latency + cost.latency(s, i, j);
        if (l < c.latency) c = {l, i};
      }
    }
  }
  const dp_cell& end = best[K - 1][L];
  placement out;
  out.period_seconds = best_period;
  out.latency_seconds = end.latency;
  out.cuts.assign(K - 1, 0);
  std::vector<std::size_t> begin(K + 1, 0);
  begin[K] = L;
  for (std::size_t s = K - 1, j = L;; --s) {
    begin[s] = best[s][j].from;
    j = begin[s];
    if (s == 0) break;
  }
  for (std::size_t s = 1; s < K; ++s) out.cuts[s - 1] = begin[s];
  for (std::size_t s = 0; s < K; ++s) {
    out.compute_seconds.push_back(cost.compute(s, begin[s], begin[s + 1]));
    if (s + 1 < K) out.link_seconds.push_back(cost.link(s, begin[s + 1]));
  }
  return out;
}

/// `place_pipeline` on the layers of a compile-time model.
template <class Model>
placement place_pipeline(std::span<const server_profile> servers, const placement_options& opt = {}) {
  const std::vector<layer_cost> layers = layer_costs<Model>();
  return place_pipeline(layers, servers, opt);
}

}  // namespace tinylarge::workflow
