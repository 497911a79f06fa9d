/// @file transport/policy.hpp
/// @brief The transport axis: the `transport_policy` concept, endpoint ids
///        and per-endpoint counters.
///
/// Available policies (each an endpoint object — one per server or client):
///
/// | policy | what moves the bytes | when to use | header |
/// |---|---|---|---|
/// | `in_process` | nothing: spans are handed over, zero-copy (the trivial member) | simulation, tests, one machine | in_process.hpp |
/// | `mpi_transport` | framed messages over MPI point-to-point (ranks: server 0, clients 1..N) | clusters, `mpirun` | mpi.hpp (option TINYLARGE_WITH_MPI) |
/// | `mqtt_transport` | framed messages over an MQTT broker, QoS 1, the model retained | device fleets, gateways | mqtt.hpp (option TINYLARGE_WITH_MQTT) |
/// | `serial::serial_transport` | COBS-framed messages over one byte stream (UART, pipe, TCP socket), ACK and retransmission; two endpoints: server 0 and one device 1 | a microcontroller on a serial line | serial.hpp (POSIX `fd_port` on the host; a device supplies its UART port) |
///
/// **The interface** (read `in_process` as its documentation). An endpoint
///  - `static const char* name()`;
///  - `endpoint_id id() const` — 0 is the server, 1..N the clients;
///  - `std::size_t endpoints() const` — N + 1;
///  - `status send(endpoint_id to, const wire::message_header&, std::span<const std::uint8_t> payload, std::chrono::milliseconds timeout)`
///    — the payload is little-endian bytes (`count · itemsize(dtype)` of them);
///    the transport fills in `sender` (its own id) and `sequence` (its own
///    counter), so a peer cannot be impersonated through the header;
///  - `status broadcast(header, payload, timeout)` — to every client (the
///    server's model push; MQTT publishes it once, retained);
///  - `status recv(wire::message_view& m, std::chrono::milliseconds timeout)`
///    — the next message from anyone; `m.payload` stays valid until the next
///    `recv` on this endpoint (zero-copy transports: see their lifetime rule);
///    `errc::timed_out` when nothing valid arrived before the deadline;
///    frames that fail validation are dropped, counted in `stats().wire`, and
///    the wait goes on;
///  - `const transport_stats& stats() const`.
///
/// Every wait takes a timeout and returns a status; nothing blocks forever.
#pragma once

#include <bit>
#include <chrono>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <span>

#include "../core/config.hpp"
#include "../core/error.hpp"
#include "wire.hpp"

namespace tinylarge {

/// Who a message is for or from: 0 is the server, 1..N the clients.
using endpoint_id = std::uint32_t;
/// The server's endpoint id.
inline constexpr endpoint_id server_endpoint = 0;

/// What an endpoint sent, received and refused.
struct transport_stats {
  std::uint64_t frames_sent = 0;
  std::uint64_t bytes_sent = 0;       ///< including framing (0 for in_process: nothing is serialised)
  std::uint64_t frames_received = 0;  ///< accepted frames
  std::uint64_t bytes_received = 0;
  std::uint64_t spoofed = 0;          ///< valid frames whose `sender` disagrees with where they came from
  std::uint64_t unauthenticated = 0;  ///< well-formed frames whose MAC is missing or wrong (transport/auth.hpp)
  wire::wire_stats wire;              ///< frames rejected by the decoder, by reason
};

/// Requirements of every member of the transport axis (see the file comment).
template <class T>
concept transport_policy =
    requires(T& t, const T& ct, endpoint_id to, const wire::message_header& h, std::span<const std::uint8_t> payload,
             wire::message_view& m, std::chrono::milliseconds timeout) {
      { T::name() } -> std::convertible_to<const char*>;
      { ct.id() } -> std::same_as<endpoint_id>;
      { ct.endpoints() } -> std::same_as<std::size_t>;
      { t.send(to, h, payload, timeout) } -> std::same_as<status>;
      { t.broadcast(h, payload, timeout) } -> std::same_as<status>;
      { t.recv(m, timeout) } -> std::same_as<status>;
      { ct.stats() } -> std::convertible_to<const transport_stats&>;
    };

/// Waits on `net` for the next message until `deadline`: `errc::timed_out` once
/// it has passed (the servers' one way to wait for a round's answers).
template <transport_policy T>
status recv_before(T& net, wire::message_view& m, std::chrono::steady_clock::time_point deadline) {
  const auto now = std::chrono::steady_clock::now();
  if (now >= deadline) return {errc::timed_out, "recv_before: the deadline has passed"};
  return net.recv(m, std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now) +
                        std::chrono::milliseconds{1});
}

/// The bytes of a float span (the payload of an fp32 message on a
/// little-endian host; `in_process` hands them over as they are).
inline std::span<const std::uint8_t> as_bytes_le(std::span<const float> v) noexcept {
  static_assert(std::endian::native == std::endian::little,
                "as_bytes_le: big-endian hosts must encode with wire::encode_fp32");
  return {reinterpret_cast<const std::uint8_t*>(v.data()), v.size_bytes()};
}

}  // namespace tinylarge
