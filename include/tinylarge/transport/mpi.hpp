/// @file transport/mpi.hpp
/// @brief `mpi_transport`: wire frames over MPI point-to-point messages.
///        Ranks are endpoints: rank 0 is the server, ranks 1..N the clients.
///
///     MPI_Init(&argc, &argv);
///     {
///       tl::mpi_transport net;                     // MPI_COMM_WORLD
///       if (net.id() == 0) run_server(net); else run_client(net);
///     }                                            // frees its communicator
///     MPI_Finalize();
///
/// Every message is one wire frame (transport/wire.hpp) sent as `MPI_BYTE`s
/// with one tag on a private duplicate of the communicator (so the library's
/// traffic never matches the application's receives), whose error handler is
/// `MPI_ERRORS_RETURN`: MPI failures become statuses, not aborts.
///
/// Waits never block forever:
///  - `send`/`broadcast` post `MPI_Isend`s and poll `MPI_Test` until done or
///    the deadline (then `MPI_Cancel` and `errc::timed_out`);
///  - `recv` polls `MPI_Iprobe(MPI_ANY_SOURCE)` — back to back for 200 µs,
///    then sleeping with back-off up to 250 µs (hosts may be oversubscribed) —
///    until the deadline. The size
///    reported by the probe is checked against `wire_limits` **before** a
///    buffer is allocated; an oversized message is counted as `too_large`,
///    left unreceived (MPI cannot discard it without a buffer of its size),
///    and its sender is cut off (`cut_off(rank)`).
/// A frame whose `sender` differs from the MPI source rank is dropped and
/// counted in `stats().spoofed`.
///
/// Authentication (transport/auth.hpp): constructed with a run key, every
/// frame sent carries a MAC and every frame received must carry a valid one
/// (else it is dropped and counted in `stats().unauthenticated`); without a
/// key, frames carry no MAC and frames with one are refused.
///
/// Optional dependency: link `tinylarge::mpi` (CMake `-DTINYLARGE_WITH_MPI=ON`;
/// it links MPI and libsodium).
#pragma once

#if !__has_include(<mpi.h>)
#error "tinylarge/transport/mpi.hpp is an optional dependency header: it needs MPI's <mpi.h> (configure with -DTINYLARGE_WITH_MPI=ON and link tinylarge::mpi)"
#endif

// The C API only: the MPI-2 C++ bindings are deprecated and not needed.
#ifndef OMPI_SKIP_MPICXX
#define OMPI_SKIP_MPICXX 1
#endif
#ifndef MPICH_SKIP_MPICXX
#define MPICH_SKIP_MPICXX 1
#endif
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <thread>
#include <vector>

#include "../core/config.hpp"
#include "../core/error.hpp"
#include "auth.hpp"
#include "policy.hpp"
#include "wire.hpp"

namespace tinylarge {

/// One MPI rank as a transport endpoint (see the file comment).
class mpi_transport {
 public:
  static constexpr const char* name() noexcept { return "mpi"; }
  /// The tag of every frame on the private communicator.
  static constexpr int frame_tag = 0x544C;

  /// Duplicates `comm` (collective: every rank of `comm` constructs one).
  /// @param key the run key (transport/auth.hpp); `std::nullopt`: frames are
  ///            not authenticated (a trusted cluster only)
  explicit mpi_transport(MPI_Comm comm = MPI_COMM_WORLD, const wire::wire_limits& limits = {},
                         std::optional<frame_key> key = std::nullopt)
      : limits_(limits), key_(std::move(key)) {
    TINYLARGE_REQUIRE(MPI_Comm_dup(comm, &comm_) == MPI_SUCCESS, errc::io_error, "mpi_transport: MPI_Comm_dup failed");
    MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN);
    int rank = 0, size = 0;
    MPI_Comm_rank(comm_, &rank);
    MPI_Comm_size(comm_, &size);
    rank_ = static_cast<endpoint_id>(rank);
    size_ = static_cast<std::size_t>(size);
    cut_off_.assign(size_, false);
  }
  mpi_transport(const mpi_transport&) = delete;
  mpi_transport& operator=(const mpi_transport&) = delete;
  ~mpi_transport() {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized) MPI_Comm_free(&comm_);
  }

  endpoint_id id() const noexcept { return rank_; }
  std::size_t endpoints() const noexcept { return size_; }
  const transport_stats& stats() const noexcept { return stats_; }
  MPI_Comm communicator() const noexcept { return comm_; }
  /// Whether frames are authenticated (a run key was given).
  bool authenticated() const noexcept { return key_.has_value(); }

  /// Encode and send one frame to rank `to`; waits for local completion
  /// (the buffer is reusable) at most `timeout`.
  status send(endpoint_id to, const wire::message_header& h, std::span<const std::uint8_t> payload,
              std::chrono::milliseconds timeout) {
    TINYLARGE_CHECK(to < size_ && to != rank_, errc::invalid_argument, "mpi_transport::send: no such peer rank");
    const endpoint_id peers[1] = {to};
    return send_to(peers, h, payload, timeout);
  }

  /// From the server: the same frame to every client. From a client: to the server.
  status broadcast(const wire::message_header& h, std::span<const std::uint8_t> payload,
                   std::chrono::milliseconds timeout) {
    std::vector<endpoint_id> peers;
    if (rank_ == server_endpoint) {
      for (endpoint_id e = 1; e < size_; ++e) peers.push_back(e);
    } else {
      peers.push_back(server_endpoint);
    }
    return send_to(peers, h, payload, timeout);
  }

  /// Whether rank `r` was cut off for sending a message above the limit.
  bool cut_off(endpoint_id r) const noexcept { return r < size_ && cut_off_[r]; }

  /// The next valid frame from any rank, or `timed_out`.
  status recv(wire::message_view& m, std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    poller wait;
    for (;;) {
      int flag = 0;
      MPI_Status st;
      TINYLARGE_TRY(probe(flag, st));
      if (flag) {
        int count = 0;
        MPI_Get_count(&st, MPI_BYTE, &count);
        const auto n = static_cast<std::size_t>(count < 0 ? 0 : count);
        if (n > wire::frame_size(limits_.max_payload_bytes, wire::wire_flag_mac)) {
          // MPI cannot discard a message without a buffer of its size (and a
          // truncating receive is not safe: OpenMPI 4.1 over shared memory
          // writes past the buffer). So the message stays unreceived and its
          // sender is cut off: no further frame from that rank is received.
          cut_off_[static_cast<std::size_t>(st.MPI_SOURCE)] = true;
          any_cut_off_ = true;
          stats_.wire.count(wire::wire_reject::too_large);
          continue;
        }
        buffer_.resize(n);
        if (MPI_Recv(buffer_.data(), count, MPI_BYTE, st.MPI_SOURCE, frame_tag, comm_, MPI_STATUS_IGNORE) !=
            MPI_SUCCESS)
          return {errc::io_error, "mpi_transport::recv: MPI_Recv failed"};
        stats_.bytes_received += n;
        if (!wire::decode(buffer_, m, limits_, &stats_.wire).ok()) continue;  // counted by reason
        if (!authentic(key_, m)) {
          ++stats_.unauthenticated;
          continue;
        }
        if (m.header.sender != static_cast<endpoint_id>(st.MPI_SOURCE)) {
          ++stats_.spoofed;
          continue;
        }
        ++stats_.frames_received;
        return status::success();
      }
      if (std::chrono::steady_clock::now() >= deadline)
        return {errc::timed_out, "mpi_transport::recv: no message before the deadline"};
      wait.pause();
    }
  }

 private:
  /// Waiting between polls: poll back to back for the first 200 µs (low
  /// latency while a message is in flight), then sleep with exponential
  /// back-off from 20 µs up to 250 µs, so that an idle rank does not burn a
  /// core of an oversubscribed host. (Not sched_yield: under load a yield
  /// gives away a whole time slice.)
  struct poller {
    std::chrono::steady_clock::time_point start = std::chrono::steady_clock::now();
    std::chrono::microseconds sleep{20};
    void pause() {
      if (std::chrono::steady_clock::now() - start < std::chrono::microseconds{200}) return;
      std::this_thread::sleep_for(sleep);
      sleep = std::min(sleep * 2, std::chrono::microseconds{250});
    }
  };

  /// Probe for a frame from any rank that is not cut off (round robin over
  /// the ranks once one is, so that its pending message cannot starve the others).
  status probe(int& flag, MPI_Status& st) {
    flag = 0;
    if (!any_cut_off_) {
      if (MPI_Iprobe(MPI_ANY_SOURCE, frame_tag, comm_, &flag, &st) != MPI_SUCCESS)
        return {errc::io_error, "mpi_transport::recv: MPI_Iprobe failed"};
      return status::success();
    }
    for (std::size_t i = 0; i < size_ && !flag; ++i) {
      const std::size_t r = (next_probe_ + i) % size_;
      if (r == rank_ || cut_off_[r]) continue;
      if (MPI_Iprobe(static_cast<int>(r), frame_tag, comm_, &flag, &st) != MPI_SUCCESS)
        return {errc::io_error, "mpi_transport::recv: MPI_Iprobe failed"};
      if (flag) next_probe_ = r + 1;
    }
    return status::success();
  }

  status send_to(std::span<const endpoint_id> peers, const wire::message_header& h,
                 std::span<const std::uint8_t> payload, std::chrono::milliseconds timeout) {
    wire::message_header hh = h;
    hh.sender = rank_;
    hh.sequence = sequence_++;
    std::size_t written = 0;
    TINYLARGE_TRY(seal(key_, hh, payload, out_, written, limits_));
    TINYLARGE_CHECK(written <= 0x7FFFFFFFu, errc::too_large, "mpi_transport: frame above INT_MAX bytes");
    std::vector<MPI_Request> reqs(peers.size(), MPI_REQUEST_NULL);
    for (std::size_t i = 0; i < peers.size(); ++i) {
      if (MPI_Isend(out_.data(), static_cast<int>(written), MPI_BYTE, static_cast<int>(peers[i]), frame_tag, comm_,
                    &reqs[i]) != MPI_SUCCESS)
        return {errc::io_error, "mpi_transport::send: MPI_Isend failed"};
    }
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    poller wait;
    for (;;) {
      int done = 0;
      if (MPI_Testall(static_cast<int>(reqs.size()), reqs.data(), &done, MPI_STATUSES_IGNORE) != MPI_SUCCESS)
        return {errc::io_error, "mpi_transport::send: MPI_Testall failed"};
      if (done) break;
      if (std::chrono::steady_clock::now() >= deadline) {
        for (auto& r : reqs) {
          if (r != MPI_REQUEST_NULL) {
            MPI_Cancel(&r);
            MPI_Request_free(&r);
          }
        }
        return {errc::timed_out, "mpi_transport::send: the peer did not take the message before the deadline"};
      }
      wait.pause();
    }
    stats_.frames_sent += peers.size();
    stats_.bytes_sent += written * peers.size();
    return status::success();
  }

  MPI_Comm comm_ = MPI_COMM_NULL;
  endpoint_id rank_ = 0;
  std::size_t size_ = 0;
  std::uint32_t sequence_ = 0;
  wire::wire_limits limits_;
  std::optional<frame_key> key_;
  std::vector<std::uint8_t> out_;
  std::vector<std::uint8_t> buffer_;
  std::vector<bool> cut_off_;
  bool any_cut_off_ = false;
  std::size_t next_probe_ = 0;
  transport_stats stats_{};
};

static_assert(transport_policy<mpi_transport>);

}  // namespace tinylarge
