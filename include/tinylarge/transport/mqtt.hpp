/// @file transport/mqtt.hpp
/// @brief `mqtt_transport`: wire frames over an MQTT 3.1.1 broker
///        (libmosquitto client; tested with the Mosquitto broker), QoS 1,
///        per-client topics, the global model published retained.
///
/// Topic layout (`<run>` names one training run; `<k>` is a client id 1..N):
///
/// | topic | direction | retained | carries |
/// |---|---|---|---|
/// | `tl/<run>/model` | server → all clients | yes | the latest `model` frame: a client that (re)connects gets it at once |
/// | `tl/<run>/control` | server → all clients | no | `control` frames (stop, …) and other server broadcasts |
/// | `tl/<run>/to/<k>` | server → client k | `model` frames | any frame for one client: the model of a round that selects k (retained: a client that subscribes after it was sent gets it at once), split-learning gradients |
/// | `tl/<run>/<type>/<k>` | client k → server | no | `update`, `smashed`, `gradient`, `control` or `secagg` (secure aggregation) frames of client k |
///
/// Every publication is QoS 1 (at least once): receivers must tolerate
/// duplicates (the federated protocol does: workflow/federated_deploy.hpp). Each
/// `send` waits for the broker's PUBACK, at most its timeout. The server
/// connects with a persistent session (`clean_session = false`, client id
/// `tl-<run>-server`): when it is killed and restarted, the broker hands it
/// the QoS 1 updates that arrived while it was down.
///
/// Authenticity: with `mqtt_options::key` (a per-run key, transport/auth.hpp)
/// every frame carries a MAC and a frame without a valid one is dropped
/// (`stats().unauthenticated`): nobody without the key can stop the clients,
/// push them a model, or fill a client's topic. A frame's `sender` must match
/// the client id in its topic (and be 0 on server topics), otherwise it is
/// dropped and counted in `stats().spoofed`; the broker's ACLs are what bind
/// a topic to a device (docs/transport.md, "Deploying over MQTT").
/// Size: the endpoint connects with MQTT 5 and announces a *Maximum Packet
/// Size* of one largest frame (`frame_size(max_payload_bytes, wire_flag_mac)`
/// plus the publication's header): the broker discards larger publications
/// instead of sending them, so junk never reaches the endpoint's socket, its
/// memory or its deadlines. Set the broker's `message_size_limit` to the same
/// so that the broker does not store them either; frames above the limit
/// that still arrive are refused before they are copied.
///
/// Threads: libmosquitto's network thread (`mosquitto_loop_start`) checks
/// every publication as it arrives — size, frame, MAC, sender ↔ topic — and
/// queues only the frames that pass (bounded by `max_queued_frames` and
/// `max_queued_bytes`), so junk never occupies the queue or the caller's
/// deadline. Its counts reach `stats()` at the caller's next `recv`.
///
/// Optional dependency: link `tinylarge::mqtt` (CMake `-DTINYLARGE_WITH_MQTT=ON`).
#pragma once

#if !__has_include(<mosquitto.h>)
#error "tinylarge/transport/mqtt.hpp is an optional dependency header: it needs libmosquitto's <mosquitto.h> (configure with -DTINYLARGE_WITH_MQTT=ON and link tinylarge::mqtt)"
#endif

#include <mosquitto.h>
#include <mqtt_protocol.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <deque>
#include <mutex>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <vector>

#include "../core/config.hpp"
#include "../core/error.hpp"
#include "auth.hpp"
#include "policy.hpp"
#include "wire.hpp"

namespace tinylarge {

/// MQTT 5 packet bytes beyond the frame: fixed header, topic, packet id, properties.
inline constexpr std::size_t mqtt_packet_overhead = 1024;

/// Connection settings of an `mqtt_transport`.
struct mqtt_options {
  std::string host = "127.0.0.1";
  int port = 1883;
  std::string run = "default";  ///< the `<run>` level of every topic
  int keepalive_seconds = 30;
  std::chrono::milliseconds connect_timeout{5000};
  wire::wire_limits limits{};
  std::size_t max_queued_frames = 4096;  ///< frames beyond this are dropped (counted in `overflow`)
  std::size_t max_queued_bytes = std::size_t{256} << 20;  ///< and bytes beyond this (a frame larger than it still fits alone)
  /// Broker login (bound to topics by the broker's ACLs); empty: anonymous.
  std::string username, password;
  /// TLS: the CA certificate file that signed the broker's certificate;
  /// empty: plain TCP. Optionally this endpoint's certificate and key
  /// (brokers with `require_certificate true`).
  std::string tls_ca_file, tls_cert_file, tls_key_file;
  /// The run key (transport/auth.hpp), e.g. `frame_key::from_environment()`;
  /// `std::nullopt`: frames are not authenticated (tests on a private broker only).
  std::optional<frame_key> key;
};

/// One MQTT client as a transport endpoint (see the file comment).
class mqtt_transport {
 public:
  static constexpr const char* name() noexcept { return "mqtt"; }

  /// Endpoint `id` (0 = server) of a run with `endpoints` = clients + 1.
  /// Call `connect()` before anything else.
  mqtt_transport(endpoint_id id, std::size_t endpoints, mqtt_options opt)
      : id_(id), endpoints_(endpoints), opt_(std::move(opt)) {
    TINYLARGE_REQUIRE(id < endpoints, errc::invalid_argument, "mqtt_transport: id must be below endpoints");
    static const int init = mosquitto_lib_init();
    (void)init;
    const std::string client_id =
        "tl-" + opt_.run + (id_ == server_endpoint ? std::string("-server") : "-client-" + std::to_string(id_));
    const bool clean_session = id_ != server_endpoint;
    mosq_ = mosquitto_new(client_id.c_str(), clean_session, this);
    TINYLARGE_REQUIRE(mosq_ != nullptr, errc::io_error, "mqtt_transport: mosquitto_new failed (out of memory?)");
    mosquitto_int_option(mosq_, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V5);
    mosquitto_connect_callback_set(mosq_, &on_connect);
    mosquitto_subscribe_callback_set(mosq_, &on_subscribe);
    mosquitto_message_callback_set(mosq_, &on_message);
    mosquitto_publish_callback_set(mosq_, &on_publish);
  }
  mqtt_transport(const mqtt_transport&) = delete;
  mqtt_transport& operator=(const mqtt_transport&) = delete;
  ~mqtt_transport() {
    if (started_) {
      mosquitto_disconnect(mosq_);
      mosquitto_loop_stop(mosq_, false);
    }
    mosquitto_destroy(mosq_);
  }

  /// Connect to the broker, subscribe, and wait for the SUBACK (at most
  /// `connect_timeout`).
  status connect() {
    if (!opt_.username.empty() &&
        mosquitto_username_pw_set(mosq_, opt_.username.c_str(), opt_.password.empty() ? nullptr : opt_.password.c_str()) !=
            MOSQ_ERR_SUCCESS)
      return {errc::invalid_argument, "mqtt_transport: username or password refused by libmosquitto"};
    if (!opt_.tls_ca_file.empty() &&
        mosquitto_tls_set(mosq_, opt_.tls_ca_file.c_str(), nullptr,
                          opt_.tls_cert_file.empty() ? nullptr : opt_.tls_cert_file.c_str(),
                          opt_.tls_key_file.empty() ? nullptr : opt_.tls_key_file.c_str(), nullptr) != MOSQ_ERR_SUCCESS)
      return {errc::invalid_argument, "mqtt_transport: TLS set-up failed (CA / certificate / key file?)"};
    // MQTT 5 CONNECT properties: the largest packet this endpoint accepts (the
    // broker drops larger publications for it), and for the server's persistent
    // session an expiry, so that the broker keeps its queued updates while it is down.
    mosquitto_property* props = nullptr;
    const std::uint64_t max_packet =
        wire::frame_size(opt_.limits.max_payload_bytes, wire::wire_flag_mac) + mqtt_packet_overhead;
    mosquitto_property_add_int32(&props, MQTT_PROP_MAXIMUM_PACKET_SIZE,
                                 static_cast<std::uint32_t>(std::min<std::uint64_t>(max_packet, 268435455u)));
    if (id_ == server_endpoint) mosquitto_property_add_int32(&props, MQTT_PROP_SESSION_EXPIRY_INTERVAL, 0xFFFFFFFFu);
    const int rc = mosquitto_connect_bind_v5(mosq_, opt_.host.c_str(), opt_.port, opt_.keepalive_seconds, nullptr, props);
    mosquitto_property_free_all(&props);
    if (rc != MOSQ_ERR_SUCCESS) return {errc::io_error, "mqtt_transport: cannot connect to the broker (host, port?)"};
    TINYLARGE_CHECK(mosquitto_loop_start(mosq_) == MOSQ_ERR_SUCCESS, errc::io_error,
                    "mqtt_transport: mosquitto_loop_start failed (libmosquitto without threads?)");
    started_ = true;
    std::unique_lock<std::mutex> lock(mutex_);
    if (!ready_.wait_for(lock, opt_.connect_timeout, [&] { return subscribed_ || connect_failed_; }))
      return {errc::timed_out, "mqtt_transport: no CONNACK/SUBACK from the broker before the deadline"};
    TINYLARGE_CHECK(!connect_failed_, errc::io_error, "mqtt_transport: the broker refused the connection");
    return status::success();
  }

  endpoint_id id() const noexcept { return id_; }
  std::size_t endpoints() const noexcept { return endpoints_; }
  const transport_stats& stats() const noexcept { return stats_; }
  /// Frames dropped because the receive queue was full.
  std::uint64_t overflow() const noexcept {
    std::lock_guard<std::mutex> lock(mutex_);
    return overflow_;
  }
  /// Whether frames are authenticated (a run key was given).
  bool authenticated() const noexcept { return opt_.key.has_value(); }

  /// The topic on which this endpoint publishes a frame of type `t` for `to`.
  std::string topic_for(endpoint_id to, wire::message_type t) const {
    const std::string base = "tl/" + opt_.run + "/";
    if (id_ == server_endpoint) return base + "to/" + std::to_string(to);
    return base + wire::to_string(t) + "/" + std::to_string(id_);
  }

  /// Publish one frame for `to` (server → client k, or client → server) and
  /// wait for the broker's PUBACK. A `model` frame for client k is published
  /// retained, as the broadcast model is: a device that comes up (or
  /// reconnects) after the server sent it still receives the round's model —
  /// without it, a round that selects clients which are not yet subscribed
  /// waits out its whole deadline. A stale retained model (of an earlier
  /// round) leads to an update of that round, which the server drops.
  status send(endpoint_id to, const wire::message_header& h, std::span<const std::uint8_t> payload,
              std::chrono::milliseconds timeout) {
    TINYLARGE_CHECK(to < endpoints_ && to != id_, errc::invalid_argument, "mqtt_transport::send: no such endpoint");
    TINYLARGE_CHECK(id_ == server_endpoint || to == server_endpoint, errc::invalid_argument,
                    "mqtt_transport::send: clients talk to the server only");
    TINYLARGE_CHECK(id_ == server_endpoint || h.type != wire::message_type::model, errc::invalid_argument,
                    "mqtt_transport::send: a client cannot publish a model frame");
    const bool retain = id_ == server_endpoint && h.type == wire::message_type::model;
    return publish(topic_for(to, h.type), h, payload, retain, timeout);
  }

  /// Server: a `model` frame is published retained on `tl/<run>/model`,
  /// anything else on `tl/<run>/control`. Client: same as `send` to the server.
  status broadcast(const wire::message_header& h, std::span<const std::uint8_t> payload,
                   std::chrono::milliseconds timeout) {
    if (id_ != server_endpoint) return send(server_endpoint, h, payload, timeout);
    const bool model = h.type == wire::message_type::model;
    return publish("tl/" + opt_.run + (model ? "/model" : "/control"), h, payload, model, timeout);
  }

  /// The next valid frame, or `timed_out`.
  status recv(wire::message_view& m, std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    std::unique_lock<std::mutex> lock(mutex_);
    const bool got = ready_.wait_until(lock, deadline, [&] { return !queue_.empty(); });
    merge_pending();
    if (!got) return {errc::timed_out, "mqtt_transport::recv: no message before the deadline"};
    current_ = std::move(queue_.front());
    queue_.pop_front();
    queued_bytes_ -= current_.size();
    lock.unlock();
    // Checked in full by the network thread; decoded again here for the view (CRC only, no MAC).
    TINYLARGE_TRY(wire::decode(current_, m, opt_.limits));
    stats_.bytes_received += current_.size();
    ++stats_.frames_received;
    ++stats_.wire.accepted;
    return status::success();
  }

 private:
  /// Counts of the network thread, moved into `stats_` by `recv` (mutex held).
  void merge_pending() {
    stats_.bytes_received += pending_.bytes_received;
    stats_.spoofed += pending_.spoofed;
    stats_.unauthenticated += pending_.unauthenticated;
    for (std::size_t r = 0; r < wire::wire_reject_count; ++r) stats_.wire.rejected[r] += pending_.wire.rejected[r];
    pending_ = transport_stats{};
  }

  status publish(const std::string& topic, const wire::message_header& h, std::span<const std::uint8_t> payload,
                 bool retain, std::chrono::milliseconds timeout) {
    wire::message_header hh = h;
    hh.sender = id_;
    hh.sequence = sequence_++;
    std::size_t written = 0;
    TINYLARGE_TRY(seal(opt_.key, hh, payload, out_, written, opt_.limits));
    int mid = 0;
    const int rc = mosquitto_publish(mosq_, &mid, topic.c_str(), static_cast<int>(written), out_.data(), 1, retain);
    TINYLARGE_CHECK(rc == MOSQ_ERR_SUCCESS, errc::io_error, "mqtt_transport: mosquitto_publish failed (disconnected?)");
    std::unique_lock<std::mutex> lock(mutex_);
    if (!ready_.wait_for(lock, timeout, [&] { return acked_.count(mid) != 0; }))
      return {errc::timed_out, "mqtt_transport::send: no PUBACK from the broker before the deadline"};
    acked_.erase(mid);
    ++stats_.frames_sent;
    stats_.bytes_sent += written;
    return status::success();
  }

  /// The endpoint a topic says a frame comes from, or -1 for a topic that
  /// is not ours.
  long sender_of(const char* topic) const {
    const std::string t(topic);
    const std::string base = "tl/" + opt_.run + "/";
    if (t.compare(0, base.size(), base) != 0) return -1;
    const std::string rest = t.substr(base.size());
    if (id_ != server_endpoint) return server_endpoint;  // model, control, to/<id>: all from the server
    const auto slash = rest.find('/');
    if (slash == std::string::npos) return -1;
    const std::string k = rest.substr(slash + 1);
    if (k.empty() || k.size() > 9 || k.find_first_not_of("0123456789") != std::string::npos) return -1;
    const long v = std::stol(k);
    return (v >= 1 && static_cast<std::size_t>(v) < endpoints_) ? v : -1;
  }

  static void on_connect(struct mosquitto* m, void* self_ptr, int rc) {
    auto* self = static_cast<mqtt_transport*>(self_ptr);
    if (rc != 0) {
      std::lock_guard<std::mutex> lock(self->mutex_);
      self->connect_failed_ = true;
      self->ready_.notify_all();
      return;
    }
    const std::string base = "tl/" + self->opt_.run + "/";
    std::vector<std::string> topics;
    if (self->id_ == server_endpoint) {
      for (const char* t : {"update", "smashed", "gradient", "control", "secagg"}) topics.push_back(base + t + "/+");
    } else {
      topics = {base + "model", base + "control", base + "to/" + std::to_string(self->id_)};
    }
    std::vector<char*> ptrs;
    for (auto& t : topics) ptrs.push_back(t.data());
    mosquitto_subscribe_multiple(m, &self->sub_mid_, static_cast<int>(ptrs.size()), ptrs.data(), 1, 0, nullptr);
  }

  static void on_subscribe(struct mosquitto*, void* self_ptr, int mid, int, const int*) {
    auto* self = static_cast<mqtt_transport*>(self_ptr);
    std::lock_guard<std::mutex> lock(self->mutex_);
    if (mid == self->sub_mid_) self->subscribed_ = true;
    self->ready_.notify_all();
  }

  static void on_publish(struct mosquitto*, void* self_ptr, int mid) {
    auto* self = static_cast<mqtt_transport*>(self_ptr);
    std::lock_guard<std::mutex> lock(self->mutex_);
    self->acked_.insert(mid);
    self->ready_.notify_all();
  }

  /// The network thread: every check happens here, before anything is
  /// copied or queued (size, frame, MAC, sender ↔ topic).
  static void on_message(struct mosquitto*, void* self_ptr, const struct mosquitto_message* msg) {
    auto* self = static_cast<mqtt_transport*>(self_ptr);
    const long sender = self->sender_of(msg->topic);
    if (sender < 0 || msg->payloadlen < 0) return;  // not one of ours
    const auto n = static_cast<std::size_t>(msg->payloadlen);
    const std::span<const std::uint8_t> bytes(static_cast<const std::uint8_t*>(msg->payload), n);
    wire::wire_stats ws;
    wire::message_view m;
    bool accepted = false;
    enum { ok, unauthenticated, spoofed, rejected } verdict = rejected;
    if (n > wire::frame_size(self->opt_.limits.max_payload_bytes, wire::wire_flag_mac)) {
      ws.count(wire::wire_reject::too_large);  // refused before copying
    } else if (wire::decode(bytes, m, self->opt_.limits, &ws).ok()) {
      if (!authentic(self->opt_.key, m)) verdict = unauthenticated;
      else if (m.header.sender != static_cast<endpoint_id>(sender)) verdict = spoofed;
      else verdict = ok;
      accepted = verdict == ok;
    }
    std::vector<std::uint8_t> f;
    if (accepted) f.assign(bytes.begin(), bytes.end());
    std::lock_guard<std::mutex> lock(self->mutex_);
    for (std::size_t r = 0; r < wire::wire_reject_count; ++r) self->pending_.wire.rejected[r] += ws.rejected[r];
    if (verdict == unauthenticated) ++self->pending_.unauthenticated;
    if (verdict == spoofed) ++self->pending_.spoofed;
    if (!accepted) return;
    if (self->queue_.size() >= self->opt_.max_queued_frames ||
        (!self->queue_.empty() && self->queued_bytes_ + f.size() > self->opt_.max_queued_bytes)) {
      ++self->overflow_;
      return;
    }
    self->queued_bytes_ += f.size();
    self->queue_.push_back(std::move(f));
    self->ready_.notify_all();
  }

  endpoint_id id_;
  std::size_t endpoints_;
  mqtt_options opt_;
  struct mosquitto* mosq_ = nullptr;
  bool started_ = false;
  std::uint32_t sequence_ = 0;
  std::vector<std::uint8_t> out_;
  std::vector<std::uint8_t> current_;
  transport_stats stats_{};

  mutable std::mutex mutex_;  // guards everything below (shared with the network thread)
  std::condition_variable ready_;
  std::deque<std::vector<std::uint8_t>> queue_;
  std::size_t queued_bytes_ = 0;
  transport_stats pending_{};  // the network thread's counts, not yet in stats_
  std::set<int> acked_;
  int sub_mid_ = -1;
  bool subscribed_ = false;
  bool connect_failed_ = false;
  std::uint64_t overflow_ = 0;
};

static_assert(transport_policy<mqtt_transport>);

}  // namespace tinylarge
