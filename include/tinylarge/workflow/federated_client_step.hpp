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

#include <bit>
#include <concepts>
#include <type_traits>
#include <cstddef>
#include <cstdint>
#include <span>

#include "../aggregate/update.hpp"
#include "../core/arch.hpp"
#include "../core/config.hpp"
#include "../core/error.hpp"
#include "../precision/convert.hpp"
#include "../precision/fp16.hpp"
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

// ---------------------------------------------------------------------------
// Update payloads without the heap: the wire layout of `update_buffer<U>`
// (workflow/federated_roles.hpp) written into a caller's buffer
// ---------------------------------------------------------------------------

/// The wire dtype of an `update` frame carrying an update encoded as U.
template <update_encoding U>
inline constexpr wire::wire_dtype update_wire_dtype = std::is_same_v<U, fp32_update>   ? wire::wire_dtype::fp32
                                                      : std::is_same_v<U, fp16_update> ? wire::wire_dtype::fp16
                                                                                       : wire::wire_dtype::bytes;

/// Values per scale of an int8 update of `p` values asked for `chunk` (0 or
/// more than p: one scale for all), as `update_buffer<int8_update>` encodes.
constexpr std::size_t int8_chunk_of(std::size_t p, std::size_t chunk) noexcept {
  return chunk == 0 || chunk > p ? (p > 0 ? p : 1) : chunk;
}

/// Payload bytes of an update of `p` values encoded as U: 4p (fp32), 2p
/// (fp16), 4 + 4·⌈p/c⌉ + p (int8: chunk size, scales, values).
template <update_encoding U>
constexpr std::size_t update_payload_bytes(std::size_t p, std::size_t chunk) noexcept {
  if constexpr (std::is_same_v<U, fp32_update>) return 4 * p;
  else if constexpr (std::is_same_v<U, fp16_update>) return 2 * p;
  else {
    static_assert(std::is_same_v<U, int8_update>, "update_payload_bytes: U must be fp32_update, fp16_update or int8_update");
    const std::size_t c = int8_chunk_of(p, chunk);
    return 4 + 4 * ((p + c - 1) / c) + p;
  }
}

/// Encode `w` as U into `out`, in the layout `update_buffer<U>::read` takes
/// (federated_roles.hpp): fp32 and fp16 little-endian (fp16 by `convert`,
/// round to nearest even); int8 with `encode_int8_update` per chunk of
/// `int8_chunk_of(w.size(), chunk)` values (symmetric, one fp32 scale each).
/// @return `capacity_exceeded` when `out` is shorter than
///         `update_payload_bytes<U>`; `non_finite` when `w` holds NaN or Inf
///         (fp16 / int8 cannot carry them)
template <update_encoding U>
[[nodiscard]] status encode_update_payload(std::span<const float> w, std::size_t chunk, std::span<std::uint8_t> out,
                                           std::size_t& written) {
  written = 0;
  const std::size_t n = update_payload_bytes<U>(w.size(), chunk);
  TINYLARGE_CHECK(out.size() >= n, errc::capacity_exceeded, "encode_update_payload: output buffer too small");
  if constexpr (std::is_same_v<U, fp32_update>) {
    for (std::size_t i = 0; i < w.size(); ++i) wire::detail::wire_put32(out.data() + 4 * i, std::bit_cast<std::uint32_t>(w[i]));
  } else {
    TINYLARGE_CHECK(first_non_finite(w.data(), w.size()) == w.size(), errc::non_finite,
                    "encode_update_payload: NaN or Inf in an fp16 / int8 update");
    if constexpr (std::is_same_v<U, fp16_update>) {
      half h[16];
      for (std::size_t lo = 0; lo < w.size(); lo += 16) {
        const std::size_t k = w.size() - lo < 16 ? w.size() - lo : 16;
        convert(arch::best{}, w.subspan(lo, k), std::span<half>(h, k));
        for (std::size_t i = 0; i < k; ++i) {
          out[2 * (lo + i)] = static_cast<std::uint8_t>(h[i].bits & 0xFFu);
          out[2 * (lo + i) + 1] = static_cast<std::uint8_t>(h[i].bits >> 8);
        }
      }
    } else {
      const std::size_t c = int8_chunk_of(w.size(), chunk);
      const std::size_t scales = (w.size() + c - 1) / c;
      wire::detail::wire_put32(out.data(), static_cast<std::uint32_t>(c));
      auto* q = reinterpret_cast<std::int8_t*>(out.data() + 4 + 4 * scales);
      for (std::size_t k = 0; k < scales; ++k) {
        const std::size_t lo = k * c, len = w.size() - lo < c ? w.size() - lo : c;
        float s = 0.0f;
        encode_int8_update(w.subspan(lo, len), len, std::span<std::int8_t>(q + lo, len), std::span<float>(&s, 1));
        wire::detail::wire_put32(out.data() + 4 + 4 * k, std::bit_cast<std::uint32_t>(s));
      }
    }
  }
  written = n;
  return status::success();
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
  std::size_t int8_chunk = 256;           ///< values per scale of int8 updates (as `fedavg_client`'s)
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
/// `run_federated_client` (workflow/federated_deploy.hpp), without the heap.
/// On each model frame of the current or a later round
/// (`classify_server_frame`) of `model.size()` finite values it calls
/// `compute(device_round)` — which fills `round.update` and returns n_k > 0
/// — and sends the update {round r, aux = n_k, payload encoded as U:
/// `encode_update_payload<U>`} with sender 1 (the device end of the link; a
/// gateway re-stamps the fleet's client id), encoded in `tx` (at least
/// `wire::frame_size(update_payload_bytes<U>(P, opt.int8_chunk))` bytes).
/// @tparam U `fp32_update` (default), `fp16_update` or `int8_update`: the
///           server's update encoding
/// Returns after the server's stop (and the linger).
/// @return success after the stop; `timed_out` when the server went silent
///         for `idle_timeout_ms`; a link error or an encoding error as reported;
///         `invalid_argument` when the computation returned n_k ≤ 0; `corrupt`
///         when a new frame arrived during the linger after the stop
template <update_encoding U = fp32_update, device_link Link, class Compute>
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
    // The payload in place behind the header's bytes, then the header and CRC around it.
    constexpr wire::wire_dtype dtype = update_wire_dtype<U>;
    TINYLARGE_CHECK(tx.size() > wire::wire_overhead_bytes, errc::capacity_exceeded,
                    "run_device_client: the transmit buffer cannot hold a frame");
    std::size_t payload = 0;
    TINYLARGE_TRY(encode_update_payload<U>(std::span<const float>(update), opt.int8_chunk,
                                           tx.subspan(wire::wire_header_bytes, tx.size() - wire::wire_overhead_bytes),
                                           payload));
    wire::message_header h = update_header(m.header.round, dtype,
                                           static_cast<std::uint32_t>(payload / wire::wire_itemsize(dtype)),
                                           static_cast<std::uint64_t>(n));
    h.sender = 1;
    h.sequence = ++rep.answers;
    TINYLARGE_TRY(wire::encode_header(h, payload, tx));
    std::uint8_t* const body = tx.data() + wire::wire_header_bytes;
    wire::detail::wire_put32(body + payload, wire::detail::wire_crc32(body, payload));
    TINYLARGE_TRY(link.send(std::span<const std::uint8_t>(tx.data(), wire::frame_size(payload)), opt.send_timeout_ms));
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
