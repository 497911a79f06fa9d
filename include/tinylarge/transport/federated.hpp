/// @file transport/federated.hpp
/// @brief A federated round over flat parameter vectors, written once for
///        every `transport_policy`: the server loop (broadcast, collect with
///        a deadline, aggregate, checkpoint) and the client loop.
///
/// This is the transport layer's reference protocol; the workflows of
/// `workflow/` replace the flat vector and the local-update callback with a
/// model. Protocol (one round r = 1, 2, …):
///
///  1. server: `task_seed = rng()`; broadcast `model` {round r, aux = task_seed,
///     payload = global parameters (fp32)};
///  2. client k: on a `model` frame of round r ≥ its last round, compute its
///     new parameters `w_k = local(r, task_seed, global)` and send `update`
///     {round r, aux = num_examples, payload = w_k}; a repeated model frame
///     (QoS 1 redelivery, a restarted server) is answered again, with the
///     same bytes, since the local step is a pure function of its inputs;
///  3. server: accept the first *valid* update of round r from each client
///     (others — stale rounds, duplicates, wrong sizes — are counted and
///     dropped; an update with a NaN/Inf value or an example count outside
///     1 … 2⁶³−1 is counted in `rejected_frames` and dropped **without**
///     costing the client its round: its real update may still come) until
///     every live client has answered or `round_timeout` expires; clients
///     that missed the deadline are marked absent and no longer waited for
///     (they rejoin when an update of theirs arrives in time). With at least
///     `min_clients` updates the round is aggregated — in client-id order, so
///     that the result does not depend on arrival order — and a checkpoint is
///     written; with fewer the server stops with `errc::timed_out`. Before
///     weighting, each update is bounded by `federated_server_options::bounds`
///     (aggregate/policy.hpp `report_bounds`: count cap, update-norm clip);
///  4. after the last round the server broadcasts `control`/`stop`.
///
/// Hostile networks: over MPI and MQTT give the transports a run key
/// (transport/auth.hpp) so that only the run's parties can produce frames;
/// the client also refuses models that jump more than `max_round_skip` rounds
/// ahead or change the model's size. No exception escapes the two functions
/// for a bad checkpoint file or a failed checkpoint write: they return a status.
///
/// Zero-copy caveat (`in_process`): the model frame is a view of `global`,
/// which changes after the round; a simulated client that misses the deadline
/// must leave the run (as `on_model` returning false does), not read the
/// model late. Serialising transports have no such constraint.
///
/// Crash recovery: when `checkpoint_path` names an existing checkpoint, the
/// server resumes after its round with the saved parameters, policy state and
/// RNG, so the run ends with the same bits as an uninterrupted one.
#pragma once

#include <algorithm>
#include <bit>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "../aggregate/aggregator.hpp"
#include "../aggregate/policy.hpp"
#include "../core/config.hpp"
#include "../core/error.hpp"
#include "../core/rng.hpp"
#include "checkpoint.hpp"
#include "policy.hpp"
#include "wire.hpp"

namespace tinylarge {

/// Settings of `run_federated_server`.
struct federated_server_options {
  std::uint32_t rounds = 10;                                  ///< rounds to complete in total
  std::size_t min_clients = 1;                                ///< fewest updates that make a round
  std::chrono::milliseconds round_timeout{10000};             ///< deadline for collecting one round
  std::chrono::milliseconds send_timeout{10000};              ///< deadline for each send
  std::string checkpoint_path;                                ///< empty: no checkpoints
  report_bounds bounds{};                                     ///< trust in client counts and update norms
  /// Called after each accepted update (round, updates so far): a hook for
  /// tests (e.g. to kill the server mid-round) and progress logs.
  std::function<void(std::uint32_t, std::size_t)> on_update;
};

/// What a server run did.
struct federated_server_report {
  std::uint32_t first_round = 1;     ///< 1, or the round after the checkpoint resumed from
  std::uint32_t rounds_completed = 0;
  std::vector<std::size_t> updates_per_round;  ///< accepted updates, per round run
  std::uint64_t dropped_frames = 0;            ///< stale, duplicate, malformed or unexpected frames
  std::uint64_t rejected_frames = 0;           ///< updates with NaN/Inf or a count outside 1 … 2⁶³−1 (client not excluded)
  std::uint64_t clipped_counts = 0;            ///< example counts clipped to `bounds.max_examples`
  std::uint64_t clipped_norms = 0;             ///< updates scaled back to `bounds.max_update_norm`
  std::vector<rejection> rejected;             ///< updates the aggregator refused
};

namespace detail {
/// Whether every value of an fp32 frame is finite (read without copying).
inline bool fp32_payload_finite(const wire::message_view& m) noexcept {
  bool ok = true;
  for (std::size_t i = 0; i + 4 <= m.payload.size(); i += 4) {
    const float v = std::bit_cast<float>(wire::detail::wire_get32(m.payload.data() + i));
    ok = ok && std::isfinite(v);
  }
  return ok;
}
}  // namespace detail

/// Run the server side of the protocol over `net` until `opt.rounds` rounds
/// are complete.
///
/// @tparam Transport a `transport_policy` endpoint with id 0
/// @tparam Policy    an `aggregation_policy` (its state is checkpointed)
/// @param global     the parameters w_0 on entry (replaced by the checkpoint's
///                   when resuming), w_R on success
/// @param generator  the server RNG (task seeds); replaced when resuming
template <transport_policy Transport, aggregation_policy Policy>
status run_federated_server(Transport& net, aggregator<Policy>& agg, std::vector<float>& global, rng& generator,
                            const federated_server_options& opt, federated_server_report* report = nullptr) {
  using clock = std::chrono::steady_clock;
  federated_server_report local_report;
  federated_server_report& rep = report != nullptr ? *report : local_report;
  TINYLARGE_CHECK(net.id() == server_endpoint, errc::invalid_argument, "run_federated_server: endpoint is not 0");
  TINYLARGE_CHECK(global.size() == agg.dimension(), errc::shape_mismatch,
                  "run_federated_server: parameters and aggregator differ in size");
  const std::size_t n_clients = net.endpoints() - 1;
  std::uint32_t done = 0;
  if (!opt.checkpoint_path.empty()) {
    server_checkpoint c;
    bool found = false;
    TINYLARGE_TRY(read_server_checkpoint(opt.checkpoint_path, c, found));
    if (found) {
      TINYLARGE_CHECK(c.global.size() == global.size(), errc::shape_mismatch,
                      "run_federated_server: the checkpoint holds parameters of another size");
      TINYLARGE_TRY(restore_state(agg.state(), c.state, c.state_steps));
      global = c.global;
      generator = c.generator;
      done = c.rounds_completed;
    }
  }
  rep.first_round = done + 1;
  std::vector<bool> live(n_clients + 1, true);
  std::vector<std::vector<float>> received(n_clients + 1);
  std::vector<std::int64_t> examples(n_clients + 1, 0);
  std::vector<bool> have(n_clients + 1, false);

  for (std::uint32_t r = done + 1; r <= opt.rounds; ++r) {
    const std::uint32_t task_seed = generator.next_u32();
    wire::message_header h;
    h.type = wire::message_type::model;
    h.dtype = wire::wire_dtype::fp32;
    h.round = r;
    h.count = static_cast<std::uint32_t>(global.size());
    h.aux = task_seed;
    TINYLARGE_TRY(net.broadcast(h, as_bytes_le(std::span<const float>(global)), opt.send_timeout));

    std::fill(have.begin(), have.end(), false);
    std::size_t got = 0, live_answered = 0;
    const std::size_t live_count = static_cast<std::size_t>(std::count(live.begin() + 1, live.end(), true));
    const auto deadline = clock::now() + opt.round_timeout;
    while (live_answered < live_count) {
      wire::message_view m;
      const status s = recv_before(net, m, deadline);
      if (s.code == errc::timed_out) break;
      TINYLARGE_TRY(s);
      const auto k = m.header.sender;
      if (m.header.type != wire::message_type::update || m.header.round != r || k == 0 || k > n_clients ||
          have[k] || m.header.dtype != wire::wire_dtype::fp32 || m.header.count != global.size()) {
        ++rep.dropped_frames;  // stale round, duplicate (QoS 1), or not an update of this model
        continue;
      }
      // Checked before any state of client k changes: a bad frame (forged on an
      // unauthenticated network, or a client's bug) is dropped, the client's real
      // update of this round is still taken.
      if (m.header.aux == 0 || m.header.aux > 0x7FFFFFFFFFFFFFFFull || !detail::fp32_payload_finite(m)) {
        ++rep.rejected_frames;
        continue;
      }
      received[k].resize(global.size());
      TINYLARGE_TRY(wire::read_fp32(m, received[k]));
      const bounded_report b = bound_report(opt.bounds, std::span<float>(received[k]), std::span<const float>(global),
                                            static_cast<std::int64_t>(m.header.aux));
      rep.clipped_counts += b.count_clipped ? 1 : 0;
      rep.clipped_norms += b.norm_clipped ? 1 : 0;
      examples[k] = b.examples;
      have[k] = true;
      ++got;
      if (live[k]) ++live_answered;
      live[k] = true;
      if (opt.on_update) opt.on_update(r, got);
    }
    for (std::size_t k = 1; k <= n_clients; ++k)
      if (!have[k]) live[k] = false;  // missed the deadline: do not wait for it again
    if (got < opt.min_clients || got == 0)
      return {errc::timed_out, "federated round: fewer clients answered before the deadline than min_clients"};

    std::vector<client_result<fp32_update>> results;
    for (std::size_t k = 1; k <= n_clients; ++k)  // client-id order: independent of arrival order
      if (have[k]) results.push_back({k, fp32_update{received[k]}, examples[k]});
    const round_report rr = agg.round(std::span<float>(global), results);
    for (const auto& rej : rr.rejected) rep.rejected.push_back(rej);
    TINYLARGE_TRY(rr.outcome);
    rep.updates_per_round.push_back(rr.accepted.size());
    rep.rounds_completed = r;
    if (!opt.checkpoint_path.empty()) {
      server_checkpoint c;
      c.rounds_completed = r;
      c.global = global;
      checkpoint_state(agg.state(), c.state, c.state_steps);
      c.generator = generator;
      TINYLARGE_TRY(detail::save_checkpoint_status([&] { save_server_checkpoint(opt.checkpoint_path, c); }));
    }
  }
  wire::message_header stop;
  stop.type = wire::message_type::control;
  stop.aux = static_cast<std::uint64_t>(wire::control_command::stop);
  stop.round = opt.rounds;
  return net.broadcast(stop, {}, opt.send_timeout);
}

/// The local step of a client: writes the new parameters into `out` (sized
/// like `global`) and returns the number of local examples (> 0).
using local_update_fn =
    std::function<std::int64_t(std::uint32_t round, std::uint64_t task_seed, std::span<const float> global,
                               std::span<float> out)>;

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

/// Run the client side of the protocol until the server says stop.
/// @return success on `stop`, `timed_out` when the server went silent.
template <transport_policy Transport>
status run_federated_client(Transport& net, const local_update_fn& local, const federated_client_options& opt = {}) {
  std::uint32_t last_round = 0;
  std::vector<float> global, mine;
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
    mine.resize(global.size());
    const std::int64_t n = local(m.header.round, m.header.aux, global, mine);
    wire::message_header h;
    h.type = wire::message_type::update;
    h.dtype = wire::wire_dtype::fp32;
    h.round = m.header.round;
    h.count = static_cast<std::uint32_t>(mine.size());
    h.aux = static_cast<std::uint64_t>(n);
    TINYLARGE_TRY(net.send(server_endpoint, h, as_bytes_le(std::span<const float>(mine)), opt.send_timeout));
  }
}

}  // namespace tinylarge
