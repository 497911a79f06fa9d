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
///  4. after the last round the server broadcasts `control`/`stop`; with
///     `final_model_to_clients` the stop carries the final global model
///     (payload fp32, `round` = the last round), which the client hands to
///     `federated_client_options::on_final` (a personalisation phase, e.g.
///     federated transfer learning's: workflow/transfer_deploy.hpp).
///
/// Secure aggregation (`federated_server_options::secure` and
/// `federated_client_options::secure`, aggregate/secure.hpp; linear policies,
/// fp32 updates): step 2 becomes the masked protocol — the client answers the
/// model with its public keys (`secagg` frame, step advertise), the server
/// relays the roster, the clients' sealed Shamir shares and the boxes, the
/// clients send masked updates (P + 1 words), the server asks the survivors
/// for the shares that remove the masks and closes the round from the
/// unmasked sum (`close_round_secure`). Each collection step waits for the
/// live clients it expects, at most `round_timeout`; fewer than t answers
/// end the run with `timed_out`. Keys are drawn from `randombytes_buf`.
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
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <optional>
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
#include "federated_client_step.hpp"
#include "federated_roles.hpp"

namespace tinylarge::workflow {

/// The secure-aggregation option of a deployed FedAvg round
/// (`federated_server_options::secure`, `federated_client_options::secure`;
/// aggregate/secure.hpp). Constructing one without libsodium is a compile
/// error: there is no insecure fallback.
template <bool Available = TINYLARGE_SECAGG_HAS_SODIUM>
struct basic_secure_deployment {
  secagg::settings settings{};
  basic_secure_deployment() : basic_secure_deployment(secagg::settings{}) {}
  explicit basic_secure_deployment(const secagg::settings& s) : settings(s) {
    static_assert(Available,
                  "secure_deployment: secure aggregation needs libsodium for X25519 and ChaCha20 (link tinylarge::secagg, "
                  "tinylarge::mpi or tinylarge::mqtt: TINYLARGE_SECAGG_HAS_SODIUM=1); there is no insecure fallback");
  }
};
using secure_deployment = basic_secure_deployment<>;

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
  /// Secure aggregation (linear policies, fp32 updates): every round runs the
  /// masked protocol of aggregate/secure.hpp; the clients must be given the
  /// same settings. Each of its four collection steps has `round_timeout`.
  std::optional<secure_deployment> secure;
  /// The stop frame after the last round carries w_R, the final global model
  /// (fp32), to every client; false: an empty stop (the clients never see the
  /// result of the last aggregation).
  bool final_model_to_clients = false;
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

namespace detail {

/// A round as the server opened it: the model message and the clients drawn.
struct opened_round {
  model_message msg;
  std::vector<std::uint32_t> selected;
};

/// Opens the next round (both round drivers, plain and secure, start here):
/// `begin_round`, the clients drawn by `select` / `select_poisson`, and the
/// model frame {round r, aux = task seed, fp32 w_t} — broadcast when every
/// client is selected (MQTT: retained), else sent to each selected client.
template <transport_policy Transport, class Server>
status open_round(Transport& net, Server& server, const federated_server_options& opt, std::size_t k_total,
                  opened_round& out) {
  out.msg = server.begin_round(k_total);
  out.selected = opt.poisson_sampling ? server.select_poisson(opt.client_fraction)
                                      : server.select(clients_per_round(opt.client_fraction, k_total));
  wire::message_header h;
  h.type = wire::message_type::model;
  h.dtype = wire::wire_dtype::fp32;
  h.round = out.msg.round;
  h.count = static_cast<std::uint32_t>(server.dimension());
  h.aux = out.msg.task_seed;
  const auto model_bytes = as_bytes_le(out.msg.global);
  if (out.selected.size() == k_total) {
    TINYLARGE_TRY(net.broadcast(h, model_bytes, opt.send_timeout));
  } else {
    for (const std::uint32_t c : out.selected) TINYLARGE_TRY(net.send(c + 1, h, model_bytes, opt.send_timeout));
  }
  return status::success();
}

/// Ends the run (both round drivers): `control`/`stop` to every client, with
/// the final global model w as fp32 payload when `final_model_to_clients`.
template <transport_policy Transport>
status send_stop(Transport& net, std::span<const float> w, const federated_server_options& opt) {
  wire::message_header stop;
  stop.type = wire::message_type::control;
  stop.aux = static_cast<std::uint64_t>(wire::control_command::stop);
  stop.round = opt.rounds;
  if (!opt.final_model_to_clients) return net.broadcast(stop, {}, opt.send_timeout);
  stop.dtype = wire::wire_dtype::fp32;
  stop.count = static_cast<std::uint32_t>(w.size());
  return net.broadcast(stop, as_bytes_le(w), opt.send_timeout);
}

}  // namespace detail

#if TINYLARGE_SECAGG_HAS_SODIUM
namespace detail {

/// Sends a `secagg` frame of `step` in round r to client c.
template <transport_policy Transport>
status send_secagg(Transport& net, std::uint32_t c_endpoint, std::uint32_t r, wire::secagg_step step,
                   std::span<const std::uint8_t> payload, std::chrono::milliseconds timeout) {
  wire::message_header h;
  h.type = wire::message_type::secagg;
  h.dtype = wire::wire_dtype::bytes;
  h.round = r;
  h.count = static_cast<std::uint32_t>(payload.size());
  h.aux = static_cast<std::uint64_t>(step);
  return net.send(c_endpoint, h, payload, timeout);
}

/// One collection step of a secure round at the server: `secagg` frames of
/// `step` in round r from the clients flagged in `expect`, one each, until
/// every live one answered or `round_timeout` expires. `take(c, payload)`
/// checks and stores a frame (not ok: counted in `rejected_frames`, the
/// client may still send a good one); anything else counts in
/// `dropped_frames`. Clients that miss the deadline are marked not live.
template <transport_policy Transport, class Take>
status collect_secagg(Transport& net, std::uint32_t r, wire::secagg_step step, const std::vector<bool>& expect,
                      std::vector<bool>& live, const federated_server_options& opt, federated_server_report& rep,
                      Take&& take) {
  const std::size_t k_total = expect.size();
  std::vector<bool> have(k_total, false);
  std::size_t waiting = 0;
  for (std::size_t c = 0; c < k_total; ++c) waiting += expect[c] && live[c] ? 1 : 0;
  const auto deadline = std::chrono::steady_clock::now() + opt.round_timeout;
  while (waiting > 0) {
    wire::message_view m;
    const status s = recv_before(net, m, deadline);
    if (s.code == errc::timed_out) break;
    TINYLARGE_TRY(s);
    const std::uint32_t k = m.header.sender;
    if (m.header.type != wire::message_type::secagg || m.header.aux != static_cast<std::uint64_t>(step) ||
        m.header.round != r || k == 0 || k > k_total || !expect[k - 1] || have[k - 1] ||
        m.header.dtype != wire::wire_dtype::bytes) {
      ++rep.dropped_frames;
      continue;
    }
    if (!take(k - 1, m.payload).ok()) {
      ++rep.rejected_frames;
      continue;
    }
    have[k - 1] = true;
    if (live[k - 1]) --waiting;
    live[k - 1] = true;
  }
  for (std::size_t c = 0; c < k_total; ++c)
    if (expect[c] && !have[c]) live[c] = false;
  return status::success();
}

/// One round of the FedAvg family with secure aggregation at the server
/// (docs/deployment.md has the message sequence): model → advertisements →
/// roster → sealed shares → boxes → masked updates → unmask request →
/// responses → unmasked sum, mean, policy.
/// The server's outgoing secure-aggregation payloads of the current round:
/// `in_process` endpoints queue views, not copies, so they must outlive the
/// round (the zero-copy caveat of the file comment).
struct secure_outbox {
  std::vector<std::uint8_t> roster, request;
  std::vector<std::vector<std::uint8_t>> boxes;
};

template <transport_policy Transport, aggregation_policy Policy, update_encoding U, selection_policy Selection>
status secure_round(Transport& net, fedavg_server<Policy, U, Selection>& server, const federated_server_options& opt,
                    federated_server_report& rep, std::vector<bool>& live, secure_outbox& out) {
  using wire::secagg_step;
  const std::size_t k_total = net.endpoints() - 1;
  const std::size_t dim = server.dimension();
  opened_round opened;
  TINYLARGE_TRY(open_round(net, server, opt, k_total, opened));
  const std::uint32_t r = opened.msg.round;
  const std::vector<std::uint32_t>& sel = opened.selected;
  secagg::server_session& ss = server.begin_secure(opt.secure->settings);
  std::vector<bool> expect(k_total, false);
  for (const std::uint32_t c : sel) expect[c] = true;
  const auto flags = [&](auto&& ids) {
    std::vector<bool> f(k_total, false);
    for (const auto c : ids) f[c] = true;
    return f;
  };
  const status too_few{errc::timed_out, "secure federated round: fewer clients answered a step before the deadline "
                                        "than the threshold t (or min_clients)"};
  // Step 0: advertisements → roster.
  const auto take_keys = [&](std::uint32_t c, std::span<const std::uint8_t> p) -> status {
    secagg::advertisement a;
    TINYLARGE_TRY(secagg::decode_keys(c, p, a));
    return ss.receive_advertisement(a);
  };
  TINYLARGE_TRY(collect_secagg(net, r, secagg_step::advertise, expect, live, opt, rep, take_keys));
  if (!ss.close_roster().ok()) return too_few;
  std::vector<std::uint32_t> u1;
  for (const auto& a : ss.roster()) u1.push_back(a.id);
  out.roster = secagg::encode_roster(ss.roster());
  for (const std::uint32_t c : u1)
    TINYLARGE_TRY(send_secagg(net, c + 1, r, secagg_step::roster, out.roster, opt.send_timeout));
  // Step 1: sealed shares → each client's boxes.
  std::vector<secagg::sealed_share> shares;
  const auto take_shares = [&](std::uint32_t c, std::span<const std::uint8_t> p) -> status {
    TINYLARGE_TRY(secagg::decode_shares(p, shares));
    return ss.receive_shares(c, shares);
  };
  TINYLARGE_TRY(collect_secagg(net, r, secagg_step::shares, flags(u1), live, opt, rep, take_shares));
  const std::vector<std::uint32_t> u2(ss.sharers().begin(), ss.sharers().end());
  if (u2.size() < ss.threshold()) return too_few;
  out.boxes.assign(u2.size(), {});
  for (std::size_t i = 0; i < u2.size(); ++i) {
    out.boxes[i] = secagg::encode_shares(ss.shares_for(u2[i]));
    TINYLARGE_TRY(send_secagg(net, u2[i] + 1, r, secagg_step::boxes, out.boxes[i], opt.send_timeout));
  }
  // Step 2: masked updates.
  std::vector<std::uint32_t> y;
  std::size_t got = 0;
  const auto take_masked = [&](std::uint32_t c, std::span<const std::uint8_t> p) -> status {
    TINYLARGE_TRY(secagg::decode_masked(p, dim + 1, y));
    TINYLARGE_TRY(ss.receive_masked(c, y));
    if (opt.on_update) opt.on_update(r, ++got);
    return status::success();
  };
  TINYLARGE_TRY(collect_secagg(net, r, secagg_step::masked, flags(u2), live, opt, rep, take_masked));
  secagg::unmask_request req;
  if (!ss.close_masked(req).ok() || req.survivors.size() < opt.min_clients) return too_few;
  // Step 3: the survivors release their shares.
  out.request = secagg::encode_request(req);
  for (const std::uint32_t c : req.survivors)
    TINYLARGE_TRY(send_secagg(net, c + 1, r, secagg_step::unmask_request, out.request, opt.send_timeout));
  const auto take_response = [&](std::uint32_t c, std::span<const std::uint8_t> p) -> status {
    secagg::unmask_response resp;
    TINYLARGE_TRY(secagg::decode_response(c, p, resp));
    return ss.receive_response(resp);
  };
  TINYLARGE_TRY(collect_secagg(net, r, secagg_step::unmask_response, flags(req.survivors), live, opt, rep, take_response));
  const round_report rr = server.close_round_secure();
  TINYLARGE_TRY(rr.outcome);
  rep.updates_per_round.push_back(rr.accepted.size());
  rep.rounds_completed = r;
  if (!opt.checkpoint_path.empty()) {
    const server_checkpoint c = checkpoint_of(server);
    TINYLARGE_TRY(tinylarge::detail::save_checkpoint_status([&] { save_server_checkpoint(opt.checkpoint_path, c); }));
  }
  return status::success();
}

}  // namespace detail
#endif

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
#if TINYLARGE_SECAGG_HAS_SODIUM
  if (opt.secure.has_value()) {
    if constexpr (linear_aggregation<Policy> && std::is_same_v<U, fp32_update>) {
      detail::secure_outbox outbox;
      while (server.round() < opt.rounds) TINYLARGE_TRY(detail::secure_round(net, server, opt, rep, live, outbox));
      return detail::send_stop(net, server.global(), opt);
    } else {
      return {errc::invalid_argument,
              "run_federated_server: secure aggregation needs a linear policy (fedavg, fedavgm, fedprox, fedadam, "
              "fedyogi, fedadagrad) and fp32 updates"};
    }
  }
#endif
  std::vector<update_buffer<U>> received(k_total);
  std::vector<std::int64_t> examples(k_total, 0);

  while (server.round() < opt.rounds) {
    detail::opened_round opened;
    TINYLARGE_TRY(detail::open_round(net, server, opt, k_total, opened));
    const std::uint32_t r = opened.msg.round;
    const std::vector<std::uint32_t>& sel = opened.selected;

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
        const bounded_report b = bound_report(opt.bounds, std::span<float>(received[c].values), opened.msg.global, n);
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
  return detail::send_stop(net, server.global(), opt);
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
  /// Secure aggregation (must match the server's): the client answers a
  /// model with its keys, not its update, and takes part in the masked
  /// protocol (aggregate/secure.hpp); its keys are drawn from the operating
  /// system each round (`secagg::random_round_seed`).
  std::optional<secure_deployment> secure;
  /// Secure aggregation: called before the client sends the message of a
  /// step (`wire::secagg_step`: shares, masked, unmask_response) of a round;
  /// returning false makes it leave the run (a simulated failure: tests kill
  /// the process here to drop a client after the masks were set up).
  std::function<bool(std::uint32_t, wire::secagg_step)> on_secure_step;
  /// Called with the final global model when the server's stop carries it
  /// (`federated_server_options::final_model_to_clients`), before
  /// `run_federated_client` returns: (last round, w_R). A stop whose model has
  /// another size than the run's models, or is not fp32, ends the run with
  /// `shape_mismatch` / `corrupt` instead; an empty stop never calls it.
  std::function<void(std::uint32_t, std::span<const float>)> on_final;
};

/// Runs the client role on endpoint k + 1 of `net` (client id k) until the
/// server says stop.
/// @return success on `stop`, `timed_out` when the server went silent.
template <transport_policy Transport, client_computation C, update_encoding U>
status run_federated_client(Transport& net, fedavg_client<C, U>& client, const federated_client_options& opt = {}) {
  TINYLARGE_CHECK(net.id() != server_endpoint, errc::invalid_argument, "run_federated_client: endpoint 0 is the server");
  const std::uint64_t id = net.id() - 1;
  // Which server frames start a round, and the update header: the freestanding
  // piece a device firmware shares (workflow/federated_client_step.hpp).
  client_round_state state;
  state.max_round_skip = opt.max_round_skip;
  state.max_round = opt.max_round;
  std::vector<float> global;
  update_buffer<U> upload;
#if TINYLARGE_SECAGG_HAS_SODIUM
  // Secure aggregation: this round's session, training result and progress.
  std::unique_ptr<secagg::client_session> session;
  client_output trained{};
  std::vector<std::uint32_t> masked;
  std::vector<std::uint8_t> out_keys, out_shares, out_masked, out_response;  // in_process sends views: keep them
  bool shared = false, sent_masked = false, responded = false;
  const auto step_allowed = [&](std::uint32_t r, wire::secagg_step st) {
    return !opt.on_secure_step || opt.on_secure_step(r, st);
  };
#endif
  for (;;) {
    wire::message_view m;
    TINYLARGE_TRY(net.recv(m, opt.idle_timeout));
    if (m.header.sender != server_endpoint) continue;
    if (classify_server_frame(state, m.header) == frame_verdict::stop) {
      if (m.header.count == 0) return status::success();
      // The final model (`final_model_to_clients`): the run's size, fp32, finite.
      TINYLARGE_CHECK(m.header.dtype == wire::wire_dtype::fp32, errc::corrupt,
                      "run_federated_client: the stop carries a final model that is not fp32");
      TINYLARGE_CHECK(global.empty() || m.header.count == global.size(), errc::shape_mismatch,
                      "run_federated_client: the final model has another size than the run's models");
      global.resize(m.header.count);
      TINYLARGE_TRY(wire::read_fp32(m, global));
      for (const float v : global)
        TINYLARGE_CHECK(std::isfinite(v), errc::non_finite, "run_federated_client: the final model holds NaN or Inf");
      if (opt.on_final) opt.on_final(m.header.round, std::span<const float>(global));
      return status::success();
    }
#if TINYLARGE_SECAGG_HAS_SODIUM
    if (opt.secure.has_value() && m.header.type == wire::message_type::secagg) {
      // A step of the open round; anything malformed, repeated or of another round is ignored.
      if (session == nullptr || m.header.round != state.last_round || m.header.dtype != wire::wire_dtype::bytes) continue;
      const std::uint32_t r = state.last_round;
      const auto step = static_cast<wire::secagg_step>(m.header.aux);
      if (step == wire::secagg_step::roster && !shared) {
        std::vector<secagg::advertisement> roster;
        if (!secagg::decode_roster(m.payload, static_cast<std::uint32_t>(id), roster).ok()) continue;
        const std::vector<secagg::sealed_share> out = session->share_keys(roster);
        if (!step_allowed(r, wire::secagg_step::shares)) return status::success();
        shared = true;
        out_shares = secagg::encode_shares(out);
        TINYLARGE_TRY(detail::send_secagg(net, server_endpoint, r, wire::secagg_step::shares, out_shares, opt.send_timeout));
      } else if (step == wire::secagg_step::boxes && shared && !sent_masked) {
        std::vector<secagg::sealed_share> boxes;
        if (!secagg::decode_shares(m.payload, boxes).ok() || !session->receive_shares(boxes).ok()) continue;
        TINYLARGE_TRY(client.mask(*session, trained, model_message{r, 0, std::span<const float>(global)}, masked));
        if (!step_allowed(r, wire::secagg_step::masked)) return status::success();
        sent_masked = true;
        out_masked = secagg::encode_masked(masked);
        TINYLARGE_TRY(detail::send_secagg(net, server_endpoint, r, wire::secagg_step::masked, out_masked, opt.send_timeout));
      } else if (step == wire::secagg_step::unmask_request && sent_masked && !responded) {
        secagg::unmask_request req;
        secagg::unmask_response resp;
        if (!secagg::decode_request(m.payload, req).ok() || !session->respond(req, resp).ok()) continue;
        if (!step_allowed(r, wire::secagg_step::unmask_response)) return status::success();
        responded = true;
        out_response = secagg::encode_response(resp);
        TINYLARGE_TRY(detail::send_secagg(net, server_endpoint, r, wire::secagg_step::unmask_response, out_response,
                                          opt.send_timeout));
      }
      continue;
    }
#endif
    if (classify_server_frame(state, m.header) != frame_verdict::train) continue;
    if (state.is_new_round(m.header) && opt.on_model && !opt.on_model(m.header.round)) return status::success();
    state.enter(m.header);
    global.resize(m.header.count);
    TINYLARGE_TRY(wire::read_fp32(m, global));
#if TINYLARGE_SECAGG_HAS_SODIUM
    if (opt.secure.has_value()) {
      // Secure aggregation, step 0: fresh keys for a new round (the same ones again for a repeated
      // model of this round), train, advertise.
      if (session == nullptr || session->round() != m.header.round) {
        session = std::make_unique<secagg::client_session>(static_cast<std::uint32_t>(id), m.header.round,
                                                           secagg::random_round_seed(), opt.secure->settings);
        trained = client.train(id, model_message{m.header.round, m.header.aux, std::span<const float>(global)});
        shared = sent_masked = responded = false;
      }
      out_keys = secagg::encode_keys(session->advertise());
      TINYLARGE_TRY(detail::send_secagg(net, server_endpoint, m.header.round, wire::secagg_step::advertise, out_keys,
                                        opt.send_timeout));
      continue;
    }
#endif
    const client_output out =
        client.on_model(id, model_message{m.header.round, m.header.aux, std::span<const float>(global)}, upload);
    const std::span<const std::uint8_t> payload = upload.payload();
    const wire::message_header h = update_header(
        m.header.round, update_buffer<U>::dtype,
        static_cast<std::uint32_t>(payload.size() / wire::wire_itemsize(update_buffer<U>::dtype)),
        static_cast<std::uint64_t>(out.examples));
    TINYLARGE_TRY(net.send(server_endpoint, h, payload, opt.send_timeout));
  }
}

}  // namespace tinylarge::workflow
