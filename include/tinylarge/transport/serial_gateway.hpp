/// @file transport/serial_gateway.hpp
/// @brief `serial_gateway`: a device on a serial link (transport/serial.hpp)
///        as one endpoint of a networked fleet (MQTT, MPI): the gateway holds
///        the fleet endpoint of client k and relays wire frames between it
///        and the device, so the server cannot tell the device from a host
///        client.
///
///     server ──MQTT/MPI── gateway endpoint k ══serial link══ device (client k)
///
/// What it relays (one frame at a time each way; docs/deployment.md):
///  - **fleet → device**: every frame whose `sender` is the server (endpoint
///    0) — models, stops, any other control — re-encoded for the link: the
///    fleet's MAC (transport/auth.hpp), checked by the fleet transport on
///    arrival, is taken off (`flags` = 0: the point-to-point line carries no
///    MAC, the link's CRC-32 guards it), `sender` stays 0 (the server end of
///    the link), `sequence` is the gateway's own counter. A frame whose
///    payload exceeds the link's `MaxWireFrame` is dropped and counted
///    (`too_large`); anything not from the server is dropped (`refused_from_fleet`).
///  - **device → fleet**: every frame the device sends as the device end of the
///    link (`sender` 1) except `model` frames (only a server sends models) is
///    sent to the server; the fleet transport stamps the client's endpoint id
///    as `sender`, its own sequence number and the run key's MAC. Other frames
///    are dropped and counted (`refused_from_device`).
///
/// Reliability: the link retransmits lost or damaged frames and delivers each
/// data frame once (stop-and-wait: `send` returns when the device ACKed); the
/// fleet side is as reliable as its transport (MQTT QoS 1 may deliver a model
/// twice: the device answers both, with the same bytes, and the server drops
/// the second update — workflow/federated_deploy.hpp). `run` returns after it
/// delivered the server's `control`/`stop` to the device.
///
/// Bounded memory: the link's three receive buffers and one transmit buffer of
/// `MaxWireFrame` bytes, all members (no allocation after construction); the
/// fleet side's queue is the transport's own, bounded (`mqtt_options::
/// max_queued_frames`, `max_queued_bytes`).
///
/// Threads: `run` serves one device; a gateway for several devices runs one
/// `serial_gateway` per device, each on its own thread with its own fleet
/// endpoint (tests/transport/fleet_node.cpp). `step` (one poll of both sides)
/// is public for a caller that multiplexes devices itself, but note that a
/// forward to the device blocks until the device ACKs it.
///
/// `Fleet` must copy a frame's payload in `send` (MPI and MQTT do): a device's
/// frame lives in the link's buffer only until the next poll. `in_process`
/// hands views over and is not a valid `Fleet`. Host profile only.
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <span>

#include "../core/config.hpp"
#include "../core/error.hpp"
#include "policy.hpp"
#include "serial.hpp"
#include "wire.hpp"

#if TINYLARGE_FREESTANDING
#error "tinylarge/transport/serial_gateway.hpp is host-only (the device side is transport/serial.hpp's link)"
#endif

namespace tinylarge::serial {

/// Timing of a `serial_gateway`.
struct gateway_options {
  /// How long each side is waited on per poll (keeps both sides served).
  std::chrono::milliseconds poll{2};
  /// Deadline of each forwarded frame: the device's ACK, or the fleet's send.
  std::chrono::milliseconds send_timeout{10000};
  /// `run` gives up (`timed_out`) when neither side sent anything for this long.
  std::chrono::milliseconds idle_timeout{60000};
};

/// What a gateway relayed and refused.
struct gateway_stats {
  std::uint64_t to_device = 0;            ///< server frames delivered to the device (ACKed by it)
  std::uint64_t to_fleet = 0;             ///< device frames sent to the server
  std::uint64_t refused_from_fleet = 0;   ///< frames on the fleet side not from the server
  std::uint64_t refused_from_device = 0;  ///< device frames not relayed (a model, or not from the device end)
  std::uint64_t too_large = 0;            ///< server frames longer than the link's MaxWireFrame
  std::uint64_t device_timeouts = 0;      ///< server frames the device did not ACK in time (dropped)
};

/// The gateway of one serial device (see the file comment).
/// @tparam Fleet        the fleet's `transport_policy` endpoint acting as client k
/// @tparam Port, Clock  the serial line (`byte_port`) and its `ms_clock`
/// @tparam MaxWireFrame the largest wire frame on the link (the device's buffers)
template <transport_policy Fleet, byte_port Port, ms_clock Clock, std::size_t MaxWireFrame>
class serial_gateway {
 public:
  using link_type = link<Port, Clock, MaxWireFrame>;

  /// `fleet`, `port` and `clock` must outlive the gateway.
  /// @throws tl::invalid_argument when `fleet` is the server's endpoint.
  serial_gateway(Fleet& fleet, Port& port, Clock& clock, link_config link_cfg = {}, gateway_options opt = {})
      : fleet_(fleet), clock_(clock), link_(port, clock, link_cfg), opt_(opt) {
    TINYLARGE_REQUIRE(fleet.id() != server_endpoint, errc::invalid_argument,
                      "serial_gateway: the fleet endpoint must be a client's (the gateway acts for a device)");
  }
  serial_gateway(const serial_gateway&) = delete;
  serial_gateway& operator=(const serial_gateway&) = delete;

  /// Relay until the server's stop reached the device.
  /// @return success after the stop; `timed_out` after `idle_timeout` of
  ///         silence on both sides; a transport or port error as reported
  [[nodiscard]] status run() {
    std::uint32_t last_activity = clock_.now_ms();
    const auto idle_ms = static_cast<std::uint32_t>(opt_.idle_timeout.count());
    while (!stopped_) {
      bool active = false;
      TINYLARGE_TRY(step(active));
      if (active) last_activity = clock_.now_ms();
      else if (clock_.now_ms() - last_activity >= idle_ms)
        return {errc::timed_out, "serial_gateway: neither the server nor the device sent anything before the idle timeout"};
    }
    return status::success();
  }

  /// One poll of each side: a frame from the server is forwarded to the
  /// device (waiting for its ACK), a frame from the device to the server.
  /// @param active set when a frame was relayed or refused
  [[nodiscard]] status step(bool& active) {
    active = false;
    wire::message_view m;
    status s = fleet_.recv(m, opt_.poll);
    if (s.ok()) {
      active = true;
      TINYLARGE_TRY(to_device(m));
    } else if (s.code != errc::timed_out) {
      return s;
    }
    s = link_.recv(m, static_cast<std::uint32_t>(opt_.poll.count()));
    if (s.ok()) {
      active = true;
      TINYLARGE_TRY(to_fleet(m));
    } else if (s.code != errc::timed_out) {
      return s;
    }
    return status::success();
  }

  /// Whether the server's stop was delivered to the device.
  bool stopped() const noexcept { return stopped_; }
  const gateway_stats& stats() const noexcept { return stats_; }
  /// The serial link's counters (retransmissions, corrupt frames, …).
  const link_stats& link_counters() const noexcept { return link_.stats(); }

 private:
  static constexpr wire::wire_limits limits() noexcept {
    return wire::wire_limits{static_cast<std::uint32_t>(MaxWireFrame - wire::wire_overhead_bytes)};
  }

  status to_device(const wire::message_view& m) {
    if (m.header.sender != server_endpoint) {
      ++stats_.refused_from_fleet;
      return status::success();
    }
    if (m.payload.size() > MaxWireFrame - wire::wire_overhead_bytes) {
      ++stats_.too_large;
      return status::success();
    }
    wire::message_header h = m.header;
    h.flags = 0;  // the fleet's MAC was checked on arrival; the line has its CRC
    h.sequence = ++sequence_;
    std::size_t written = 0;
    TINYLARGE_TRY(wire::encode(h, m.payload, std::span<std::uint8_t>(tx_), written, limits()));
    const status s = link_.send(std::span<const std::uint8_t>(tx_.data(), written),
                                static_cast<std::uint32_t>(opt_.send_timeout.count()));
    if (s.code == errc::timed_out) {
      ++stats_.device_timeouts;  // the device is gone or too slow: the server's round deadline decides
      return status::success();
    }
    TINYLARGE_TRY(s);
    ++stats_.to_device;
    if (h.type == wire::message_type::control && h.aux == static_cast<std::uint64_t>(wire::control_command::stop))
      stopped_ = true;
    return status::success();
  }

  status to_fleet(const wire::message_view& m) {
    if (m.header.sender != 1 || m.header.type == wire::message_type::model) {
      ++stats_.refused_from_device;
      return status::success();
    }
    wire::message_header h = m.header;
    h.flags = 0;             // the fleet transport seals with the run key
    h.sender = fleet_.id();  // and stamps the client's id (done here too, for transports that trust the header)
    TINYLARGE_TRY(fleet_.send(server_endpoint, h, m.payload, opt_.send_timeout));
    ++stats_.to_fleet;
    return status::success();
  }

  Fleet& fleet_;
  Clock& clock_;
  link_type link_;
  gateway_options opt_;
  std::array<std::uint8_t, MaxWireFrame> tx_{};
  std::uint32_t sequence_ = 0;
  bool stopped_ = false;
  gateway_stats stats_{};
};

}  // namespace tinylarge::serial
