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
///
///     tl::workflow::client_round_state st;            // device: static
///     switch (tl::workflow::classify_server_frame(st, m.header)) {
///       case frame_verdict::stop:  …leave…
///       case frame_verdict::ignore: continue;
///       case frame_verdict::train:  st.enter(m.header); …read the model, train,
///                                   send update_header(m.header.round, fp32, P, n_k)…
///     }
///
/// A repeated model of the round already answered (QoS 1 redelivery, the
/// gateway's retransmission, a restarted server) is classified `train` again:
/// the computation is a pure function of (client, round, task seed, model),
/// so the answer is the same bytes and the server drops the duplicate.
#pragma once

#include <cstdint>

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

}  // namespace tinylarge::workflow
