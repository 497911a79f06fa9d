/// @file workflow/federated_deploy.hpp
/// @brief The deployment drivers of the FedAvg family's two roles
///        (workflow/federated_roles.hpp) over any `transport_policy`:
///        `run_federated_server` runs a `fedavg_server` on endpoint 0,
///        `run_federated_client` a `fedavg_client` on endpoint k + 1 (client
///        id k). Over MPI rank 0 is the server; over MQTT the server topics
///        (docs/deployment.md has the layout and the message sequence).
///
/// Protocol (round r = 1, 2, …; the in-process driver `federated_averaging`
/// runs the same role steps without frames):
///
///  1. server: `begin_round(K)`, select the round's clients (⌈C·K⌉ without
///     replacement, or Poisson with q = C) from its seeded RNG; send `model`
///     {round r, aux = round_task_seed(seed, r), payload = w_t as fp32} —
///     broadcast (retained over MQTT) when every client is selected, else to
///     each selected client;
///  2. client k: on a `model` frame of round r ≥ its last round, run its
///     computation (`fedavg_training`: local training) and send `update`
///     {round r, aux = n_k, payload = its new weights encoded as U: fp32,
///     fp16 or int8 — see `update_buffer`}; a repeated model frame (QoS 1
///     redelivery, a restarted server) is answered again with the same bytes,
///     since the computation is a pure function of its inputs;
///  3. server: accept the first *valid* update of round r from each selected
///     client (stale rounds, duplicates, unselected senders, wrong dtypes or
///     sizes are counted in `dropped_frames`; an update with a NaN/Inf value,
///     invalid int8 scales or an example count outside 1 … 2⁶³−1 is counted
///     in `rejected_frames` and dropped **without** costing the client its
///     round: its real update may still come) until every live selected
///     client has answered or `round_timeout` expires; clients that missed
///     the deadline are marked absent and no longer waited for (they rejoin
///     when an update of theirs arrives in time). Each update is bounded by
///     `bounds` (aggregate/policy.hpp `report_bounds`: count cap; update-norm
///     clip for fp32 updates). With at least `min_clients` updates the round
///     is closed — `close_round` aggregates in client-id order, so the result
///     does not depend on arrival order — and a checkpoint is written; with
///     fewer the server stops with `errc::timed_out`;
///  4. after the last round the server broadcasts `control`/`stop`.
///
/// Hostile networks: over MPI and MQTT give the transports a run key
/// (transport/auth.hpp) so that only the run's parties can produce frames;
/// the client also refuses models that jump more than `max_round_skip` rounds
/// ahead or change the model's size. No exception escapes the drivers for a
/// bad checkpoint file or a failed checkpoint write: they return a status.
///
/// Crash recovery: when `checkpoint_path` names an existing checkpoint, the
/// server resumes after its round with the saved parameters, policy state
/// (FedAvgM momentum, FedOpt moments; not the noise RNG of the DP wrappers)
/// and client RNG, so the run ends with the same bits as an uninterrupted one.
///
/// Zero-copy caveat (`in_process` endpoints on threads): the model frame is
/// a view of the server's w_t, which changes when the round closes; a
/// simulated client that misses the deadline must leave the run (as
/// `on_model` returning false does), not read the model late.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "../aggregate/aggregator.hpp"
#include "../aggregate/policy.hpp"
#include "../core/config.hpp"
#include "../core/error.hpp"
#include "../transport/checkpoint.hpp"
#include "../transport/policy.hpp"
#include "../transport/wire.hpp"
#include "federated_roles.hpp"

namespace tinylarge::workflow {

/// Settings of `run_federated_server`.
struct federated_server_options {
  std::uint32_t rounds = 10;                       ///< rounds to complete in total
  double client_fraction = 1.0;                    ///< C: ⌈C·K⌉ clients per round (K = endpoints − 1)
  bool poisson_sampling = false;                   ///< each client with probability C instead
  std::size_t min_clients = 1;                     ///< fewest updates that make a round
  std::chrono::milliseconds round_timeout{10000};  ///< deadline for collecting one round
  std::chrono::milliseconds send_timeout{10000};   ///< deadline for each send
  std::string checkpoint_path;                     ///< empty: no checkpoints
  report_bounds bounds{};                          ///< trust in client counts and update norms
  /// Called after each accepted update (round, updates so far): a hook for
  /// tests (e.g. to kill the server mid-round) and progress logs.
  std::function<void(std::uint32_t, std::size_t)> on_update;
};

/// What a server run did.
struct federated_server_report {
  std::uint32_t first_round = 1;               ///< 1, or the round after the checkpoint resumed from
  std::uint32_t rounds_completed = 0;
  std::vector<std::size_t> updates_per_round;  ///< updates aggregated, per round run
  std::uint64_t dropped_frames = 0;            ///< stale, duplicate, malformed or unexpected frames
  std::uint64_t rejected_frames = 0;           ///< NaN/Inf, bad int8 scales or a count outside 1 … 2⁶³−1 (client not excluded)
  std::uint64_t clipped_counts = 0;            ///< example counts clipped to `bounds.max_examples`
  std::uint64_t clipped_norms = 0;             ///< updates scaled back to `bounds.max_update_norm`
  std::vector<rejection> rejected;             ///< updates the aggregator refused
};

/// The server role's resumable state as a checkpoint.
template <aggregation_policy Policy, update_encoding U, selection_policy S>
server_checkpoint checkpoint_of(const fedavg_server<Policy, U, S>& s) {
  server_checkpoint c;
  c.rounds_completed = s.round();
  c.global.assign(s.global().begin(), s.global().end());
  checkpoint_state(s.aggregation().state(), c.state, c.state_steps);
  c.generator = s.generator();
  return c;
}

/// Restores what `checkpoint_of` saved.
template <aggregation_policy Policy, update_encoding U, selection_policy S>
[[nodiscard]] status restore(fedavg_server<Policy, U, S>& s, const server_checkpoint& c) {
  TINYLARGE_CHECK(c.global.size() == s.dimension(), errc::shape_mismatch,
                  "federated server: the checkpoint holds parameters of another size");
  TINYLARGE_TRY(restore_state(s.aggregation().state(), c.state, c.state_steps));
  std::copy(c.global.begin(), c.global.end(), s.global().begin());
  s.generator() = c.generator;
  s.set_round(c.rounds_completed);
  return status::success();
}

/// Runs the server role on endpoint 0 of `net` until `opt.rounds` rounds are
/// complete; the clients are endpoints 1 … K (client ids 0 … K−1).
///
/// @tparam Transport a `transport_policy` endpoint with id 0
/// @param server     the role: w_0 on entry (replaced by the checkpoint's when
///                   resuming), w_R on success. Its selection policy must not
///                   need links (`Selection::needs_links`): a deployment has no
///                   link model to predict a client's round from.
template <transport_policy Transport, aggregation_policy Policy, update_encoding U, selection_policy Selection>
status run_federated_server(Transport& net, fedavg_server<Policy, U, Selection>& server,
                            const federated_server_options& opt, federated_server_report* report = nullptr) {
  static_assert(!Selection::needs_links,
                "run_federated_server: Selection::needs_links is true, but a deployment has no link model to "
                "predict the clients' rounds from: use a selection policy without links (uniform_selection)");
  using clock = std::chrono::steady_clock;
  federated_server_report local_report;
  federated_server_report& rep = report != nullptr ? *report : local_report;
  TINYLARGE_CHECK(net.id() == server_endpoint, errc::invalid_argument, "run_federated_server: endpoint is not 0");
  TINYLARGE_CHECK(net.endpoints() >= 2, errc::invalid_argument, "run_federated_server: no client endpoints");
  TINYLARGE_CHECK(opt.client_fraction > 0.0 && opt.client_fraction <= 1.0, errc::invalid_argument,
                  "run_federated_server: client_fraction C must be in (0, 1]");
  TINYLARGE_CHECK(opt.bounds.max_examples >= 1 && opt.bounds.max_update_norm > 0.0, errc::invalid_argument,
                  "run_federated_server: report_bounds: max_examples must be >= 1 and max_update_norm > 0");
  constexpr bool fp32_updates = std::is_same_v<U, fp32_update>;
  TINYLARGE_CHECK(fp32_updates || opt.bounds.max_update_norm == std::numeric_limits<double>::infinity(),
                  errc::invalid_argument, "run_federated_server: an update-norm bound needs fp32 updates");
  const std::size_t k_total = net.endpoints() - 1;
  const std::size_t dim = server.dimension();
  if (!opt.checkpoint_path.empty()) {
    server_checkpoint c;
    bool found = false;
    TINYLARGE_TRY(read_server_checkpoint(opt.checkpoint_path, c, found));
    if (found) TINYLARGE_TRY(restore(server, c));
  }
  rep.first_round = server.round() + 1;
  std::vector<bool> live(k_total, true), selected(k_total, false), have(k_total, false);
  std::vector<update_buffer<U>> received(k_total);
  std::vector<std::int64_t> examples(k_total, 0);

  while (server.round() < opt.rounds) {
    const model_message msg = server.begin_round(k_total);
    const std::uint32_t r = msg.round;
    const std::vector<std::uint32_t> sel =
        opt.poisson_sampling ? server.select_poisson(opt.client_fraction)
                             : server.select(detail::clients_per_round(opt.client_fraction, k_total));
    wire::message_header h;
    h.type = wire::message_type::model;
    h.dtype = wire::wire_dtype::fp32;
    h.round = r;
    h.count = static_cast<std::uint32_t>(dim);
    h.aux = msg.task_seed;
    const auto model_bytes = as_bytes_le(msg.global);
    if (sel.size() == k_total) {
      TINYLARGE_TRY(net.broadcast(h, model_bytes, opt.send_timeout));
    } else {
      for (const std::uint32_t c : sel) TINYLARGE_TRY(net.send(c + 1, h, model_bytes, opt.send_timeout));
    }

    std::fill(selected.begin(), selected.end(), false);
    std::fill(have.begin(), have.end(), false);
    std::size_t live_count = 0;
    for (const std::uint32_t c : sel) {
      selected[c] = true;
      live_count += live[c] ? 1 : 0;
    }
    std::size_t got = 0, live_answered = 0;
    const auto deadline = clock::now() + opt.round_timeout;
    while (live_answered < live_count) {
      wire::message_view m;
      const status s = recv_before(net, m, deadline);
      if (s.code == errc::timed_out) break;
      TINYLARGE_TRY(s);
      const std::uint32_t k = m.header.sender;
      if (m.header.type != wire::message_type::update || m.header.round != r || k == 0 || k > k_total ||
          !selected[k - 1] || have[k - 1] || m.header.dtype != update_buffer<U>::dtype ||
          (update_buffer<U>::dtype != wire::wire_dtype::bytes && m.header.count != dim)) {
        ++rep.dropped_frames;  // stale round, duplicate (QoS 1), unselected, or not an update of this model
        continue;
      }
      const std::uint32_t c = k - 1;
      // Checked before any state of client c changes: a bad frame (forged on an
      // unauthenticated network, or a client's bug) is dropped, the client's real
      // update of this round is still taken.
      if (m.header.aux == 0 || m.header.aux > 0x7FFFFFFFFFFFFFFFull) {
        ++rep.rejected_frames;
        continue;
      }
      const status rs = received[c].read(m.payload, dim);
      if (rs.code == errc::non_finite) {
        ++rep.rejected_frames;
        continue;
      }
      if (!rs.ok()) {
        ++rep.dropped_frames;
        continue;
      }
      auto n = static_cast<std::int64_t>(m.header.aux);
      if constexpr (fp32_updates) {
        const bounded_report b = bound_report(opt.bounds, std::span<float>(received[c].values), msg.global, n);
        rep.clipped_counts += b.count_clipped ? 1 : 0;
        rep.clipped_norms += b.norm_clipped ? 1 : 0;
        n = b.examples;
      } else if (n > opt.bounds.max_examples) {
        n = opt.bounds.max_examples;
        ++rep.clipped_counts;
      }
      examples[c] = n;
      have[c] = true;
      ++got;
      if (live[c]) ++live_answered;
      live[c] = true;
      if (opt.on_update) opt.on_update(r, got);
    }
    for (const std::uint32_t c : sel)
      if (!have[c]) live[c] = false;  // missed the deadline: do not wait for it again
    if (!sel.empty() && (got < opt.min_clients || got == 0))
      return {errc::timed_out, "federated round: fewer clients answered before the deadline than min_clients"};

    for (std::uint32_t c = 0; c < k_total; ++c)
      if (have[c]) server.accept(c, received[c].view(), examples[c]);
    const round_report rr = server.close_round();
    for (const auto& rej : rr.rejected) rep.rejected.push_back(rej);
    if (!sel.empty()) TINYLARGE_TRY(rr.outcome);  // an empty Poisson draw leaves w_t unchanged
    rep.updates_per_round.push_back(rr.outcome.ok() ? rr.accepted.size() : 0);
    rep.rounds_completed = r;
    if (!opt.checkpoint_path.empty()) {
      const server_checkpoint c = checkpoint_of(server);
      TINYLARGE_TRY(tinylarge::detail::save_checkpoint_status([&] { save_server_checkpoint(opt.checkpoint_path, c); }));
    }
  }
  wire::message_header stop;
  stop.type = wire::message_type::control;
  stop.aux = static_cast<std::uint64_t>(wire::control_command::stop);
  stop.round = opt.rounds;
  return net.broadcast(stop, {}, opt.send_timeout);
}

/// Settings of `run_federated_client`.
struct federated_client_options {
  std::chrono::milliseconds idle_timeout{30000};  ///< longest wait for the next model or stop
  std::chrono::milliseconds send_timeout{10000};
  /// Rounds may only move forward within a bound: once in round r the client
  /// ignores models of rounds above r + `max_round_skip` (a client absent for
  /// longer must restart), and models whose size differs from the first.
  std::uint32_t max_round_skip = 1024;
  /// The last round of the run, if the client knows it: models of later
  /// rounds are ignored (also by a client that just joined).
  std::uint32_t max_round = 0xFFFFFFFFu;
  /// Called when a model of a new round arrives, before the local step;
  /// returning false makes the client leave the run without answering (a
  /// simulated device failure; tests also kill the process here).
  std::function<bool(std::uint32_t)> on_model;
};

/// Runs the client role on endpoint k + 1 of `net` (client id k) until the
/// server says stop.
/// @return success on `stop`, `timed_out` when the server went silent.
template <transport_policy Transport, client_computation C, update_encoding U>
status run_federated_client(Transport& net, fedavg_client<C, U>& client, const federated_client_options& opt = {}) {
  TINYLARGE_CHECK(net.id() != server_endpoint, errc::invalid_argument, "run_federated_client: endpoint 0 is the server");
  const std::uint64_t id = net.id() - 1;
  std::uint32_t last_round = 0;
  std::vector<float> global;
  update_buffer<U> upload;
  for (;;) {
    wire::message_view m;
    TINYLARGE_TRY(net.recv(m, opt.idle_timeout));
    if (m.header.sender != server_endpoint) continue;
    if (m.header.type == wire::message_type::control &&
        m.header.aux == static_cast<std::uint64_t>(wire::control_command::stop))
      return status::success();
    if (m.header.type != wire::message_type::model || m.header.round < last_round ||
        m.header.dtype != wire::wire_dtype::fp32 || m.header.round > opt.max_round ||
        (last_round != 0 && (m.header.round - last_round > opt.max_round_skip || m.header.count != global.size())))
      continue;
    if (m.header.round > last_round && opt.on_model && !opt.on_model(m.header.round)) return status::success();
    last_round = m.header.round;
    global.resize(m.header.count);
    TINYLARGE_TRY(wire::read_fp32(m, global));
    const client_output out =
        client.on_model(id, model_message{m.header.round, m.header.aux, std::span<const float>(global)}, upload);
    const std::span<const std::uint8_t> payload = upload.payload();
    wire::message_header h;
    h.type = wire::message_type::update;
    h.dtype = update_buffer<U>::dtype;
    h.round = m.header.round;
    h.count = static_cast<std::uint32_t>(payload.size() / wire::wire_itemsize(h.dtype));
    h.aux = static_cast<std::uint64_t>(out.examples);
    TINYLARGE_TRY(net.send(server_endpoint, h, payload, opt.send_timeout));
  }
}

}  // namespace tinylarge::workflow
