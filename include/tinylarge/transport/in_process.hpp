/// @file transport/in_process.hpp
/// @brief `in_process`: the simulation transport and the trivial member of
///        the transport axis — same interface as MPI and MQTT, no bytes moved.
///
///     tl::in_process::hub net(1 + clients);          // one mailbox per endpoint
///     tl::in_process server(net, 0), client1(net, 1);
///     server.broadcast(h, tl::as_bytes_le(global), 1s);
///     tl::wire::message_view m;
///     if (client1.recv(m, 1s)) { ... m.payload is the server's buffer ... }
///
/// Zero-copy: `send` queues the header and the caller's span; `recv` returns
/// that span. **Lifetime rule**: the sender keeps the payload alive and
/// unchanged until the receiver has finished with it (round-synchronous
/// protocols do: the server changes the global model only after every update
/// of the round is in). Endpoints may live on different threads: each
/// mailbox is guarded by a mutex and `recv` waits on a condition variable
/// with a deadline. `send` never blocks (mailboxes are unbounded), so its
/// timeout is unused.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <span>
#include <vector>

#include "../core/config.hpp"
#include "../core/error.hpp"
#include "policy.hpp"
#include "wire.hpp"

#if TINYLARGE_FREESTANDING
#error "transport/in_process.hpp is for the host profile (threads, heap)"
#endif

namespace tinylarge {

/// One endpoint of an in-process simulation (see the file comment).
class in_process {
 public:
  /// The mailboxes of one simulation, shared by its endpoints.
  class hub {
   public:
    explicit hub(std::size_t endpoints) : boxes_(endpoints) {
      for (auto& b : boxes_) b = std::make_unique<mailbox>();
    }
    std::size_t endpoints() const noexcept { return boxes_.size(); }

   private:
    friend class in_process;
    struct entry {
      wire::message_header header;
      std::span<const std::uint8_t> payload;
    };
    struct mailbox {
      std::mutex mutex;
      std::condition_variable ready;
      std::deque<entry> queue;
    };
    std::vector<std::unique_ptr<mailbox>> boxes_;
  };

  static constexpr const char* name() noexcept { return "in_process"; }

  /// Endpoint `id` (0 = server) of `net`. `limits` are checked on send, so
  /// that a simulation refuses what a real transport would.
  in_process(hub& net, endpoint_id id, const wire::wire_limits& limits = {}) : net_(&net), id_(id), limits_(limits) {
    TINYLARGE_REQUIRE(id < net.endpoints(), errc::invalid_argument, "in_process: endpoint id outside the hub");
  }

  endpoint_id id() const noexcept { return id_; }
  std::size_t endpoints() const noexcept { return net_->endpoints(); }
  const transport_stats& stats() const noexcept { return stats_; }

  /// Queue `payload` (not copied) for `to`.
  status send(endpoint_id to, const wire::message_header& h, std::span<const std::uint8_t> payload,
              std::chrono::milliseconds /*timeout*/ = std::chrono::milliseconds{0}) {
    TINYLARGE_CHECK(to < net_->endpoints(), errc::invalid_argument, "in_process::send: no such endpoint");
    wire::message_header hh = h;
    hh.sender = id_;
    hh.sequence = sequence_++;
    hh.flags = 0;  // nothing is serialised, so there is no MAC (transport/auth.hpp is for MPI and MQTT)
    TINYLARGE_TRY(wire::check_header(hh, limits_));
    TINYLARGE_CHECK(payload.size() == std::size_t{hh.count} * wire::wire_itemsize(hh.dtype), errc::invalid_argument,
                    "in_process::send: payload size differs from count · itemsize(dtype)");
    auto& box = *net_->boxes_[to];
    {
      std::lock_guard<std::mutex> lock(box.mutex);
      box.queue.push_back({hh, payload});
    }
    box.ready.notify_one();
    ++stats_.frames_sent;
    return status::success();
  }

  /// Send to every endpoint but this one.
  status broadcast(const wire::message_header& h, std::span<const std::uint8_t> payload,
                   std::chrono::milliseconds timeout = std::chrono::milliseconds{0}) {
    for (endpoint_id e = 0; e < net_->endpoints(); ++e)
      if (e != id_) TINYLARGE_TRY(send(e, h, payload, timeout));
    return status::success();
  }

  /// The next message for this endpoint, or `timed_out`.
  status recv(wire::message_view& m, std::chrono::milliseconds timeout) {
    auto& box = *net_->boxes_[id_];
    std::unique_lock<std::mutex> lock(box.mutex);
    if (!box.ready.wait_for(lock, timeout, [&] { return !box.queue.empty(); }))
      return {errc::timed_out, "in_process::recv: no message before the deadline"};
    m.header = box.queue.front().header;
    m.payload = box.queue.front().payload;
    box.queue.pop_front();
    ++stats_.frames_received;
    return status::success();
  }

 private:
  hub* net_;
  endpoint_id id_;
  wire::wire_limits limits_;
  std::uint32_t sequence_ = 0;
  transport_stats stats_{};
};

static_assert(transport_policy<in_process>);

}  // namespace tinylarge
