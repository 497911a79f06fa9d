/// @file workflow/federated_client_step.hpp
/// @brief The FedAvg client's frame logic, freestanding: which server frame
///        starts a local round, which is a repetition, which ends the run,
///        and the header of the update it answers with. Written once and used
///        by the host driver `run_federated_client` (workflow/federated_deploy.hpp)
///        and by a Cortex-M firmware that takes part in the same rounds
///        through a serial gateway (tests/mcu/serial_device.cpp,
///        transport/serial_gateway.hpp).
///
/// No heap, no exceptions, no `std::vector`: a device keeps one
/// `client_round_state` and its own fixed buffers for the model and the update.
/// `run_device_client` is the whole client loop of a device over a
/// point-to-point link (transport/serial.hpp's `link`, whose far end is the
/// server or a gateway acting for it: transport/serial_gateway.hpp):
///
///     static float model[P], update[P];
///     static std::uint8_t tx[wire::frame_size(4 * P)];
///     tl::workflow::device_client_report rep;
///     status s = tl::workflow::run_device_client(link,
///         [](const device_round& r) -> std::int64_t { …train on r.model, write r.update…; return n_k; },
///         model, update, tx, {}, rep);
///
/// A repeated model of the round already answered (QoS 1 redelivery, the
/// gateway's retransmission, a restarted server) is classified `train` again:
/// the computation is a pure function of (client, round, task seed, model),
/// so the answer is the same bytes and the server drops the duplicate.
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <span>

#include "../core/config.hpp"
#include "../core/error.hpp"
#include "../transport/wire.hpp"

namespace tinylarge::workflow {

/// What a client does with a frame from the server.
enum class frame_verdict : std::uint8_t {
  ignore,  ///< not for the client's protocol state: a stale round, a jump too far, another size, another type
  stop,    ///< `control`/`stop`: the run ends (its payload, if any, is the final model)
  train,   ///< a `model` of the current or a later round: run the local round and answer with an update
};

/// The client's protocol state between frames: the last round it trained on
/// and the size of the run's models, with the bounds on what it accepts.
struct client_round_state {
  std::uint32_t last_round = 0;             ///< 0 before the first model
  std::uint32_t count = 0;                  ///< parameters of the run's models (fixed by the first)
  std::uint32_t max_round_skip = 1024;      ///< models more than this many rounds ahead are ignored
  std::uint32_t max_round = 0xFFFFFFFFu;    ///< models of later rounds are ignored

  /// Whether `h` (a `train` frame) opens a round the client has not seen.
  constexpr bool is_new_round(const wire::message_header& h) const noexcept { return h.round > last_round; }
  /// Record a `train` frame as the current round.
  constexpr void enter(const wire::message_header& h) noexcept {
    last_round = h.round;
    count = h.count;
  }
};

/// Classify a frame that came from the server (the caller checked the sender).
/// A model must be fp32, of round ≥ the last one, ≤ `max_round`, at most
/// `max_round_skip` rounds ahead and of the run's size once one was seen.
constexpr frame_verdict classify_server_frame(const client_round_state& s, const wire::message_header& h) noexcept {
  if (h.type == wire::message_type::control && h.aux == static_cast<std::uint64_t>(wire::control_command::stop))
    return frame_verdict::stop;
  if (h.type != wire::message_type::model || h.dtype != wire::wire_dtype::fp32 || h.round < s.last_round ||
      h.round > s.max_round)
    return frame_verdict::ignore;
  if (s.last_round != 0 && (h.round - s.last_round > s.max_round_skip || h.count != s.count))
    return frame_verdict::ignore;
  return frame_verdict::train;
}

/// The header of client k's answer to the model of `round`: an `update` of
/// `count` elements of `dtype` (the update encoding's wire dtype), aux = n_k
/// examples. The transport stamps sender, sequence and MAC.
constexpr wire::message_header update_header(std::uint32_t round, wire::wire_dtype dtype, std::uint32_t count,
                                             std::uint64_t examples) noexcept {
  wire::message_header h;
  h.type = wire::message_type::update;
  h.dtype = dtype;
  h.round = round;
  h.count = count;
  h.aux = examples;
  return h;
}

/// A point-to-point frame link as a device sees it (transport/serial.hpp's
/// `link`): `send` delivers one encoded wire frame (blocking until the peer
/// has it), `recv` returns the next decoded one; times in milliseconds.
template <class L>
concept device_link = requires(L& l, std::span<const std::uint8_t> frame, wire::message_view& m, std::uint32_t ms) {
  { l.send(frame, ms) } -> std::same_as<status>;
  { l.recv(m, ms) } -> std::same_as<status>;
};

/// One local round as a device's computation sees it.
struct device_round {
  std::uint32_t round = 0;               ///< r = 1, 2, … (the model frame's)
  std::uint64_t task_seed = 0;           ///< the model frame's aux: `round_task_seed(seed, r)`
  bool repeated = false;                 ///< a repetition of the round already answered
  std::span<const float> model{};        ///< w_t, as received (finite)
  std::span<float> update{};             ///< to be filled with the client's new parameters
};

/// Settings of `run_device_client`.
struct device_client_options {
  std::uint32_t idle_timeout_ms = 30000;  ///< longest wait for the next model or stop
  std::uint32_t send_timeout_ms = 30000;  ///< deadline of each update (the link retransmits meanwhile)
  /// After the stop, stay this long on the link, so that a stop whose ACK was
  /// lost is ACKed again (transport/serial.hpp, "Limits").
  std::uint32_t linger_ms = 1000;
  std::uint32_t max_round_skip = 1024;    ///< as `federated_client_options::max_round_skip`
  std::uint32_t max_round = 0xFFFFFFFFu;  ///< as `federated_client_options::max_round`
};

/// What a device client did.
struct device_client_report {
  std::uint32_t rounds = 0;       ///< distinct rounds trained
  std::uint32_t answers = 0;      ///< updates sent (rounds + answers to repeated models)
  std::uint32_t ignored = 0;      ///< server frames ignored (stale, other size, NaN/Inf model, other type)
  std::uint32_t after_stop = 0;   ///< new frames delivered during the linger (an error)
};

/// The FedAvg client of a device over a point-to-point `Link` whose far end
/// is the server (or a gateway acting for it): the protocol of
/// `run_federated_client` (workflow/federated_deploy.hpp) with fp32 updates,
/// without the heap. On each model frame of the current or a later round
/// (`classify_server_frame`) of `model.size()` finite values it calls
/// `compute(device_round)` — which fills `round.update` and returns n_k > 0
/// — and sends the update {round r, aux = n_k, fp32} with sender 1 (the
/// device end of the link; a gateway re-stamps the fleet's client id),
/// encoded in `tx` (at least `wire::frame_size(4 · update.size())` bytes).
/// Returns after the server's stop (and the linger).
/// @return success after the stop; `timed_out` when the server went silent
///         for `idle_timeout_ms`; a link error or an encoding error as reported;
///         `invalid_argument` when the computation returned n_k ≤ 0; `corrupt`
///         when a new frame arrived during the linger after the stop
template <device_link Link, class Compute>
[[nodiscard]] status run_device_client(Link& link, Compute&& compute, std::span<float> model, std::span<float> update,
                                       std::span<std::uint8_t> tx, const device_client_options& opt,
                                       device_client_report& rep) {
  TINYLARGE_CHECK(model.size() == update.size() && !model.empty(), errc::shape_mismatch,
                  "run_device_client: the model and the update buffers must have the same, non-zero size");
  client_round_state state;
  state.max_round_skip = opt.max_round_skip;
  state.max_round = opt.max_round;
  for (;;) {
    wire::message_view m;
    TINYLARGE_TRY(link.recv(m, opt.idle_timeout_ms));
    const frame_verdict v =
        m.header.sender == 0 ? classify_server_frame(state, m.header) : frame_verdict::ignore;
    if (v == frame_verdict::stop) break;
    if (v == frame_verdict::ignore || m.header.count != model.size() || !wire::read_fp32(m, model).ok() ||
        first_non_finite(model.data(), model.size()) != model.size()) {
      ++rep.ignored;
      continue;
    }
    const bool repeated = !state.is_new_round(m.header) && state.last_round != 0;
    state.enter(m.header);
    const std::int64_t n = compute(device_round{m.header.round, m.header.aux, repeated, model, update});
    TINYLARGE_CHECK(n > 0, errc::invalid_argument, "run_device_client: the computation returned no examples");
    wire::message_header h = update_header(m.header.round, wire::wire_dtype::fp32,
                                           static_cast<std::uint32_t>(update.size()), static_cast<std::uint64_t>(n));
    h.sender = 1;
    h.sequence = ++rep.answers;
    std::size_t written = 0;
    TINYLARGE_TRY(wire::encode_fp32(h, std::span<const float>(update), tx, written));
    TINYLARGE_TRY(link.send(std::span<const std::uint8_t>(tx.data(), written), opt.send_timeout_ms));
    rep.rounds += repeated ? 0 : 1;
  }
  // Nothing but retransmissions (ACKed by the link, not delivered) may follow the stop.
  wire::message_view extra;
  const status s = link.recv(extra, opt.linger_ms);
  if (s.code == errc::timed_out) return status::success();
  TINYLARGE_TRY(s);
  ++rep.after_stop;
  return {errc::corrupt, "run_device_client: a new frame from the server after its stop"};
}

}  // namespace tinylarge::workflow
