/// @file workflow/split_schemes.hpp
/// @brief The split-scheme axis: the `split_scheme_policy` concept, the
///        options every scheme reads (`split_options`) and the schemes of
///        the survey — VSL, PSL, EPSL, EdgeSplit / CPSL, SplitFedV1 and
///        SplitFedV2 — as one type each in `tl::split_scheme`.
///
/// Available schemes (the engine, `split_learning<Traits, Scheme>`, is in
/// workflow/split_engine.hpp; the aliases `tl::psl<Traits>` … in workflow/split.hpp):
///
/// | scheme | who runs in parallel | what is aggregated, and when | paper |
/// |---|---|---|---|
/// | `split_scheme::vanilla` (the trivial member) | nobody: clients in round robin, the device segment handed from client to client | nothing | Vepakomma et al. 2018 |
/// | `split_scheme::parallel` | all clients, one concatenated batch on one server segment | client segments: FedAvg every `sync_every` iterations (0: round end) | Jeon & Kim 2020 |
/// | `split_scheme::epsl` | as `parallel` | as `parallel`, and the last-layer gradients of round(φ·b) rows per batch, summed over the clients | Lin et al. 2023 |
/// | `split_scheme::edge_split` | the clients of one cluster; clusters one after another | client segments within the cluster (every `sync_every`, and at the end of its turn) | Wu et al. 2023 (CPSL) |
/// | `split_scheme::splitfed_v1` | all clients, each on its own server copy | client segments and server copies, at the same points (every `sync_every`, and at round end) | Thapa et al. 2022 |
/// | `split_scheme::splitfed_v2` | nobody: clients one after another on one server segment | client segments at round end | Thapa et al. 2022 |
///
/// When to use which: VSL needs no aggregation and the least server memory
/// but its round time grows with the number of clients; PSL / EPSL make an
/// iteration's hops independent of it (EPSL also the server's backward
/// pass); EdgeSplit bounds the server's batch by the cluster size;
/// SplitFedV1 trades server memory (one copy per client) for per-client
/// server state; SplitFedV2 is the sequential variant with FedAvg.
///
/// **The interface** (read `split_scheme::vanilla` as its documentation). A
/// scheme is a copyable, default-constructible struct (its data members are
/// its own hyperparameters, if any; the shared ones are in `split_options`) with
///  - `static constexpr const char* name()`: the report's `workflow` string;
///  - `static constexpr bool server_copies`: true when every client trains
///    against its own copy of the server segments (SplitFedV1), which the
///    round averages with `average_server_copies()`;
///  - `static constexpr bool downloads_each_round`: true when every client
///    receives the device segment at the start of its turn in each round
///    (broadcast, hand-over). A compressed device side's masks and labels
///    travel with that download; for a scheme without one (PSL, EPSL) the
///    engine adds one counted broadcast when the segment is compressed;
///  - `template <class Options> std::size_t aggregated_rows(const Options&, std::size_t group, std::size_t batch) const`:
///    how many rows of each client's batch the server aggregates in one
///    iteration of `group` clients (EPSL's round(φ·b)); 0: none, every row
///    is back-propagated on its own;
///  - `template <class Options> void validate(const Options&) const`: throws
///    `tl::invalid_argument` for options the scheme cannot run with (called
///    by the engine's constructor);
///  - `template <class Round> void run_round(Round& r) const`: one
///    communication round, written against the round interface below.
///
/// **The round interface** (what `run_round` may call; every call does the
/// real training and counts its bytes, messages, hops, MACs and time):
///  - `r.clients()`, `r.steps()` (I, iterations per round), `r.all()` (the
///    span 0 … N−1), `r.by_capability()` (the clients ordered by expected
///    iteration time under `split_options::wireless`, fastest first: compute
///    and mean channel; 0 … N−1 without a fleet), `r.settings()` (the `split_options`);
///  - `r.step(group)`: one iteration of the clients of `group` in parallel on
///    the global server segments (one concatenated batch);
///  - `r.step_each(group)` (only when `server_copies`): one iteration of each
///    client of `group` against its own server copy, all in parallel;
///  - `r.broadcast(group)`, `r.collect(group)` (the fed server aggregates
///    the uploaded device segments with `Traits::aggregation`),
///    `r.synchronise(group)` (= collect, then broadcast);
///  - `r.hand_over_download(c)`, `r.hand_over_upload(c)`: client c receives
///    the global device segment / sends its own back (it becomes the global one);
///  - `r.reset_server_copies()`, `r.average_server_copies()` (only when
///    `server_copies`): every copy ← the global server segments; the global
///    server segments ← the aggregate of the copies.
///
/// A scheme of your own is a struct with these six members (tests/test_split.cpp
/// defines one). A type that lacks one fails to compile with a message naming
/// the member.
#pragma once

#include <algorithm>
#include <cmath>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "../aggregate/policy.hpp"
#include "../compress/concepts.hpp"
#include "../core/error.hpp"
#include "../nn/optimizer.hpp"
#include "channel.hpp"
#include "report.hpp"

namespace tinylarge {

/// Options of a split-learning run (hyperparameters of the schemes).
/// @tparam Optimizer every party's `optimizer_policy`
/// @tparam Aggregation the `aggregation_policy` of the client segments
/// @tparam DeviceCompression the device side's compression policy type (`side::compression`)
/// @tparam ServerCompression the server sides' compression policy type
template <class Optimizer, class Aggregation, class DeviceCompression = compress::none,
          class ServerCompression = compress::none>
struct split_options {
  std::size_t rounds = 1;             ///< communication rounds
  std::size_t batch_size = 32;        ///< b, per client and iteration
  std::size_t steps_per_round = 0;    ///< I; 0 = one pass over the mean local data set, ⌈n̄/b⌉
  float phi = 0.0f;                   ///< EPSL aggregation ratio φ ∈ [0, 1]
  std::size_t clusters = 2;           ///< EdgeSplit: clusters (contiguous ranges of `r.by_capability()` or of client ids)
  /// EdgeSplit: form the clusters from the clients ordered by their expected
  /// iteration time under `wireless` (compute and channel, fastest first:
  /// `r.by_capability()`), so that a cluster's clients wait for a straggler of
  /// their own speed, instead of contiguous ranges of client ids (false).
  bool cluster_by_capability = false;
  /// PSL / EPSL / EdgeSplit (within a cluster) / SplitFedV1: iterations between
  /// FedAvg synchronisations of the client segments (SplitFedV1: and of the
  /// per-client server copies, at the same points); 0 = once, at the end of the
  /// round (or of the cluster's turn). Under non-IID data, frequent
  /// synchronisation keeps the segments from drifting apart. With a linear
  /// optimizer (SGD, with or without heavy-ball momentum) and `sync_every` = 1,
  /// PSL and SplitFedV1 compute centralised training on the union of the
  /// clients' batches (tested); Adam's per-party normalisation does not
  /// commute with the average (see docs/split-learning.md).
  std::size_t sync_every = 0;
  std::uint64_t seed = 1;             ///< initialisation and local shuffling
  std::size_t evaluate_every = 1;     ///< evaluate on the test set every this many rounds (and after the last)
  workflow::link_model link{};        ///< for the time estimate
  /// Per-client devices and wireless links (workflow/channel.hpp). When it has
  /// devices (one per client), a client's compute runs at its own
  /// `macs_per_s`, its transfers at the rates of its links — fading drawn
  /// afresh every round (seeded by `seed`), the band shared equally by the
  /// clients that transmit at the same time (a parallel step, a broadcast,
  /// a collection; a lone client has it all) — in place of the `link` figures
  /// for clients (`link` still gives the latency and the servers' rates); the
  /// record gives every client's seconds and joules, the straggler (the client
  /// with the most busy seconds) and the energy. A split client cannot miss a
  /// round: a cell with `min_rate_bps` > 0 (outages) is refused.
  workflow::wireless_fleet wireless{};
  /// With `wireless`: each client's id in the whole fleet, which keys its
  /// fading draws (one stream per client and round), so that a client's
  /// channel does not depend on which workflow or group it runs in;
  /// empty: 0 … N−1. `per_device_cuts` sets it for its groups.
  std::vector<std::size_t> fleet_ids{};
  Optimizer optimizer{};              ///< every party's local optimizer
  Aggregation aggregation{};          ///< client-segment (and SplitFedV1 server-copy) aggregation
  /// Rounds of uncompressed training (warm-up) before a side with a
  /// compression policy is compressed: at the start of round
  /// `compress_after` + 1 the canonical (global) segment is compressed once —
  /// masks and codebooks computed on it — and every copy trains under that
  /// constraint from then on. 0 = from the start (the initial weights are
  /// compressed); ≥ `rounds` = never. Deep Compression prunes a trained model
  /// and fine-tunes: a warm-up of one or more rounds is that.
  std::size_t compress_after = 0;
  DeviceCompression device_compression{};  ///< the device side's policy object (its hyperparameters)
  ServerCompression server_compression{};  ///< the server sides' policy object (every server segment)
};

namespace split_detail {
/// The round interface as the concept checks it: declared, never defined.
struct round_archetype {
  using options = split_options<nn::sgd, fedavg>;
  std::size_t clients() const;
  std::size_t steps() const;
  std::span<const std::size_t> all() const;
  std::span<const std::size_t> by_capability() const;
  const options& settings() const;
  void step(std::span<const std::size_t>);
  void step_each(std::span<const std::size_t>);
  void broadcast(std::span<const std::size_t>);
  void collect(std::span<const std::size_t>);
  void synchronise(std::span<const std::size_t>);
  void hand_over_download(std::size_t);
  void hand_over_upload(std::size_t);
  void reset_server_copies();
  void average_server_copies();
};

// One named piece per member: the engine's static_asserts name the missing one.
template <class S>
concept scheme_has_name = requires {
  { S::name() } -> std::convertible_to<const char*>;
};
template <class S>
concept scheme_has_server_copies = requires {
  { S::server_copies } -> std::convertible_to<bool>;
};
template <class S>
concept scheme_has_downloads_each_round = requires {
  { S::downloads_each_round } -> std::convertible_to<bool>;
};
template <class S>
concept scheme_has_aggregated_rows = requires(const S& s, const round_archetype::options& o, std::size_t n) {
  { s.aggregated_rows(o, n, n) } -> std::convertible_to<std::size_t>;
};
template <class S>
concept scheme_has_validate = requires(const S& s, const round_archetype::options& o) { s.validate(o); };
template <class S>
concept scheme_has_run_round = requires(const S& s, round_archetype& r) { s.run_round(r); };
}  // namespace split_detail

/// Requirements of every member of the split-scheme axis (see the file comment).
template <class S>
concept split_scheme_policy =
    std::copy_constructible<S> && std::default_initializable<S> && split_detail::scheme_has_name<S> &&
    split_detail::scheme_has_server_copies<S> && split_detail::scheme_has_downloads_each_round<S> &&
    split_detail::scheme_has_aggregated_rows<S> && split_detail::scheme_has_validate<S> &&
    split_detail::scheme_has_run_round<S>;

/// The schemes of the survey, one type each (`split_learning<Traits, split_scheme::epsl>`).
namespace split_scheme {

/// Vanilla split learning (Vepakomma et al., "Split learning for health",
/// 2018; Gupta & Raskar 2018): clients in round robin; client c downloads
/// the device segment left by client c − 1, runs its I iterations alone on
/// the server segments and uploads it. Nothing is aggregated.
///
/// The trivial member of the axis: copy it to write your own scheme.
struct vanilla {
  static constexpr const char* name() noexcept { return "vsl"; }
  /// One set of server segments, shared by every client.
  static constexpr bool server_copies = false;
  /// Every client receives the device segment at the start of its turn (the hand-over).
  static constexpr bool downloads_each_round = true;
  /// No last-layer aggregation: every row is back-propagated on its own.
  template <class Options>
  std::size_t aggregated_rows(const Options&, std::size_t /*group*/, std::size_t /*batch*/) const noexcept {
    return 0;
  }
  /// Every option is valid.
  template <class Options>
  void validate(const Options&) const noexcept {}
  /// One round: each client in turn downloads, trains I iterations, uploads.
  template <class Round>
  void run_round(Round& r) const {
    for (std::size_t c = 0; c < r.clients(); ++c) {
      r.hand_over_download(c);
      for (std::size_t t = 0; t < r.steps(); ++t) r.step({&c, 1});
      r.hand_over_upload(c);
    }
  }
};

/// Parallel split learning (Jeon & Kim, "Privacy-sensitive parallel split
/// learning", ICOIN 2020): every iteration, all clients at once on one
/// server segment (their batches concatenated); the fed server averages the
/// client segments every `sync_every` iterations (0: at the end of the round).
struct parallel {
  static constexpr const char* name() noexcept { return "psl"; }
  static constexpr bool server_copies = false;
  /// The clients keep their segments from round to round (synchronised at its end).
  static constexpr bool downloads_each_round = false;
  template <class Options>
  std::size_t aggregated_rows(const Options&, std::size_t, std::size_t) const noexcept {
    return 0;
  }
  template <class Options>
  void validate(const Options&) const noexcept {}
  template <class Round>
  void run_round(Round& r) const {
    const std::size_t every = r.settings().sync_every, steps = r.steps();
    for (std::size_t t = 0; t < steps; ++t) {
      r.step(r.all());
      if (every != 0 && (t + 1) % every == 0) r.synchronise(r.all());
    }
    if (every == 0 || steps % every != 0) r.synchronise(r.all());
  }
};

/// Efficient parallel split learning (Lin et al., "Efficient Parallel Split
/// Learning over Resource-constrained Wireless Edge Networks", IEEE TMC
/// 2024): PSL whose server sums the last-layer gradients of m = round(φ·b)
/// rows of each client's batch over the g clients and back-propagates that
/// one row (see "EPSL" in workflow/split.hpp); φ = 0, or one client, is PSL.
struct epsl : parallel {
  static constexpr const char* name() noexcept { return "epsl"; }
  template <class Options>
  std::size_t aggregated_rows(const Options& o, std::size_t group, std::size_t batch) const noexcept {
    return group > 1 ? static_cast<std::size_t>(std::floor(static_cast<double>(o.phi) * static_cast<double>(batch) + 0.5))
                     : 0;
  }
};

/// EdgeSplit / cluster-based PSL (Wu et al., "Split Learning over Wireless
/// Networks: Parallel Design and Resource Management", IEEE JSAC 2023): the
/// clients form `clusters` contiguous ranges; the clusters take turns, the
/// clients of a cluster run in parallel (PSL) and hand the averaged device
/// segment to the next cluster.
struct edge_split {
  static constexpr const char* name() noexcept { return "edge_split"; }
  static constexpr bool server_copies = false;
  static constexpr bool downloads_each_round = true;
  template <class Options>
  std::size_t aggregated_rows(const Options&, std::size_t, std::size_t) const noexcept {
    return 0;
  }
  template <class Options>
  void validate(const Options& o) const {
    TINYLARGE_REQUIRE(o.clusters > 0, errc::invalid_argument, "split_learning: EdgeSplit needs at least one cluster");
  }
  template <class Round>
  void run_round(Round& r) const {
    const std::size_t n = r.clients(), clusters = std::min(r.settings().clusters, n), steps = r.steps();
    const std::size_t every = r.settings().sync_every;
    const std::span<const std::size_t> order = r.settings().cluster_by_capability ? r.by_capability() : r.all();
    for (std::size_t k = 0; k < clusters; ++k) {
      std::vector<std::size_t> members;
      for (std::size_t i = k * n / clusters; i < (k + 1) * n / clusters; ++i) members.push_back(order[i]);
      r.broadcast(members);
      for (std::size_t t = 0; t < steps; ++t) {
        r.step(members);
        if (every != 0 && (t + 1) % every == 0 && t + 1 < steps) r.synchronise(members);
      }
      r.collect(members);
    }
  }
};

/// SplitFedV1 (Thapa et al., "SplitFed: When Federated Learning Meets Split
/// Learning", AAAI 2022): all clients in parallel, each against its own copy
/// of the server segments. Every `sync_every` iterations (0: at the end of
/// the round) the main server averages the copies and redistributes the
/// mean, and the fed server averages the client segments — at the same
/// points, so clients and server copies never drift apart for longer.
struct splitfed_v1 {
  static constexpr const char* name() noexcept { return "splitfed_v1"; }
  static constexpr bool server_copies = true;
  static constexpr bool downloads_each_round = true;
  template <class Options>
  std::size_t aggregated_rows(const Options&, std::size_t, std::size_t) const noexcept {
    return 0;
  }
  template <class Options>
  void validate(const Options&) const noexcept {}
  template <class Round>
  void run_round(Round& r) const {
    const std::size_t every = r.settings().sync_every, steps = r.steps();
    r.broadcast(r.all());
    // Each server copy starts from the global server segments (parameters
    // only: its optimizer state stays its own, as a client's does).
    r.reset_server_copies();
    for (std::size_t t = 0; t < steps; ++t) {
      r.step_each(r.all());
      if (every != 0 && (t + 1) % every == 0 && t + 1 < steps) {
        r.collect(r.all());
        r.average_server_copies();
        r.broadcast(r.all());
        r.reset_server_copies();
      }
    }
    r.collect(r.all());
    r.average_server_copies();
  }
};

/// SplitFedV2 (Thapa et al. 2022): one server segment, updated client by
/// client (each client runs its I iterations in turn); the fed server
/// averages the client segments at the end of the round.
struct splitfed_v2 {
  static constexpr const char* name() noexcept { return "splitfed_v2"; }
  static constexpr bool server_copies = false;
  static constexpr bool downloads_each_round = true;
  template <class Options>
  std::size_t aggregated_rows(const Options&, std::size_t, std::size_t) const noexcept {
    return 0;
  }
  template <class Options>
  void validate(const Options&) const noexcept {}
  template <class Round>
  void run_round(Round& r) const {
    r.broadcast(r.all());
    for (std::size_t c = 0; c < r.clients(); ++c)
      for (std::size_t t = 0; t < r.steps(); ++t) r.step({&c, 1});
    r.collect(r.all());
  }
};

}  // namespace split_scheme

static_assert(split_scheme_policy<split_scheme::vanilla> && split_scheme_policy<split_scheme::parallel> &&
              split_scheme_policy<split_scheme::epsl> && split_scheme_policy<split_scheme::edge_split> &&
              split_scheme_policy<split_scheme::splitfed_v1> && split_scheme_policy<split_scheme::splitfed_v2>);

}  // namespace tinylarge
