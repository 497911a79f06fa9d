/// @file transport/serial.hpp
/// @brief Wire frames over a byte stream (a UART, a serial line, a pipe, a TCP
///        socket): COBS framing, a resynchronising streaming decoder with a
///        bounded buffer, and a stop-and-wait link layer (sequence numbers,
///        ACK, retransmission on timeout, duplicate suppression).
///
/// Freestanding-safe: no heap, no exceptions, no iostream. The buffers are
/// members of fixed size (template parameters); a Cortex-M firmware gives the
/// link static storage. The POSIX part at the end (`fd_port`,
/// `steady_clock_ms`) is compiled only in the host profile.
///
/// **Line format** (docs/wire-format.md, "Serial framing"). One *link frame*
///
///     offset size field
///      0     1   kind      1 = data, 2 = ack
///      1     1   seq       link sequence number (mod 256)
///      2     n   body      data: one wire frame (transport/wire.hpp); ack: empty
///      2+n   4   crc       CRC-32 of bytes [0, 2+n), little-endian
///
/// is COBS-encoded (Cheshire & Baker 1999: no 0x00 inside, at most one byte
/// added per 254) and sent as `0x00 · COBS(link frame) · 0x00`. The 0x00
/// delimiters make every frame boundary visible in the stream: after dropped,
/// inserted or flipped bytes the decoder discards at most the frame it is in
/// and resynchronises at the next 0x00. COBS rather than SLIP because its
/// worst-case overhead is bounded and tiny (0.4 %, against 100 % for SLIP on a
/// payload of 0xC0/0xDB bytes, which int8 weights can be), so a bound on the
/// decoded size gives a bound on the bytes on the line.
///
/// **Reliability** (`link`): stop-and-wait. `send` transmits a data frame with
/// the next sequence number and waits for the ACK carrying that number,
/// retransmitting every `link_config::ack_timeout_ms` until the ACK arrives or
/// its timeout passes. The receiver ACKs a data frame whose link CRC is good
/// and delivers it exactly once: a frame with the sequence number of the last
/// one delivered is a retransmission (its ACK was lost) — it is ACKed again and
/// dropped, counted in `link_stats::duplicates`. A corrupted frame is not
/// ACKed, so its sender retransmits it. Time comes from an injected clock
/// (`ms_clock`): a tick counter on a device, a fake clock in tests.
///
///     // device: a CMSDK UART and SysTick (see tests/mcu/serial_device.cpp)
///     static tl::serial::link<uart_port, systick_clock, 512> link{uart, clock};
///     tl::wire::message_view m;
///     TINYLARGE_TRY(link.recv(m, 5000));           // the model
///     TINYLARGE_TRY(link.send(update_frame, 5000)); // the update, ACKed
///
/// Limits: one link joins two ends that start together (both with no frame
/// delivered yet); a restarted end must be met by a restarted peer. A failed
/// `send` (timed out) may or may not have been delivered; the next `send`
/// uses a new sequence number, so the link stays usable. There is no closing
/// handshake: the ACK of the last frame of a run can be lost, so its receiver
/// stays on the line (`recv` for a few `ack_timeout_ms`) before it leaves, to
/// ACK the retransmission (tests/mcu/serial_device.cpp does).
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <span>

#include "../core/config.hpp"
#include "../core/error.hpp"
#include "wire.hpp"

namespace tinylarge::serial {

/// Link frame kinds (byte 0 of a link frame).
inline constexpr std::uint8_t kind_data = 1;
inline constexpr std::uint8_t kind_ack = 2;
/// Bytes a link frame adds around its body: kind, seq, CRC-32.
inline constexpr std::size_t link_overhead_bytes = 6;

/// Largest COBS encoding of `n` bytes (without delimiters).
constexpr std::size_t cobs_max_encoded(std::size_t n) noexcept { return n + n / 254 + 1; }
/// Largest number of bytes on the line for a link frame of `n` bytes: the two
/// 0x00 delimiters and its COBS encoding.
constexpr std::size_t line_bytes(std::size_t n) noexcept { return cobs_max_encoded(n) + 2; }

/// COBS-encode `in` — any byte sequence with `size()` and `operator[]`, such
/// as a span — without delimiters, handing each output byte to `put`
/// (callable as `status put(std::uint8_t)`); stops at the first failed put.
template <class Seq, class Put>
constexpr status cobs_encode(const Seq& in, Put&& put) {
  std::size_t i = 0;
  for (;;) {
    // The group that starts at i: up to 254 non-zero bytes, then a zero or the end.
    std::size_t run = 0;
    while (run < 254 && i + run < in.size() && in[i + run] != 0) ++run;
    TINYLARGE_TRY(put(static_cast<std::uint8_t>(run + 1)));
    for (std::size_t k = 0; k < run; ++k) TINYLARGE_TRY(put(static_cast<std::uint8_t>(in[i + k])));
    i += run;
    if (i == in.size()) return status::success();  // the decoder drops the phantom zero of the last group
    if (run < 254) ++i;  // the zero this group's code stands for (a code 0xFF group has none)
  }
}

/// COBS-encode `in` into `out` (no delimiters).
/// @param written set to the encoded size on success
/// @return `capacity_exceeded` when `out` holds fewer than the encoding needs
constexpr status cobs_encode(std::span<const std::uint8_t> in, std::span<std::uint8_t> out, std::size_t& written) {
  written = 0;
  std::size_t n = 0;
  const status s = cobs_encode(in, [&](std::uint8_t b) -> status {
    TINYLARGE_CHECK(n < out.size(), errc::capacity_exceeded, "cobs_encode: output buffer too small");
    out[n++] = b;
    return status::success();
  });
  if (s.ok()) written = n;
  return s;
}

/// Streaming COBS decoder into a caller buffer: feed it the bytes of the line
/// one at a time; it reports each complete frame, each malformed one and each
/// one longer than the buffer (the rest of which it skips up to the next
/// 0x00). Holds no heap; the buffer bounds the decoded frame size.
class cobs_decoder {
 public:
  /// What a byte completed.
  enum class event : std::uint8_t {
    none,      ///< nothing yet (also: an empty frame, i.e. two 0x00 in a row)
    frame,     ///< a frame of `size()` bytes is in the buffer (valid until the next `feed`)
    corrupt,   ///< a 0x00 arrived inside a COBS group: bytes were lost or flipped
    overflow,  ///< the frame is longer than the buffer; skipped up to the next 0x00
  };

  constexpr explicit cobs_decoder(std::span<std::uint8_t> buffer) noexcept : buf_(buffer) {}

  /// Decode into `buffer` from now on (after an `event::frame`, to keep the
  /// completed frame where it is). Drops any partial frame.
  constexpr void retarget(std::span<std::uint8_t> buffer) noexcept {
    buf_ = buffer;
    restart();
  }

  /// Feed one byte from the line.
  constexpr event feed(std::uint8_t b) noexcept {
    if (b == 0) {
      const bool skipping = skipping_;
      const bool empty = code_ == 0;
      const bool complete = left_ == 0;
      size_ = n_;
      restart();
      if (skipping || empty) return event::none;
      return complete ? event::frame : event::corrupt;
    }
    if (skipping_) return event::none;
    if (left_ == 0) {  // a code byte
      if (code_ != 0 && code_ != 0xFF && !push(0)) return event::overflow;
      code_ = b;
      left_ = static_cast<std::uint8_t>(b - 1);
      return event::none;
    }
    --left_;
    return push(b) ? event::none : event::overflow;
  }

  /// Bytes of the last complete frame.
  constexpr std::size_t size() const noexcept { return size_; }
  /// The last complete frame (valid until the next `feed` or `retarget`).
  constexpr std::span<const std::uint8_t> frame() const noexcept { return buf_.first(size_); }
  /// The buffer's capacity: the largest frame accepted.
  constexpr std::size_t capacity() const noexcept { return buf_.size(); }

 private:
  constexpr bool push(std::uint8_t b) noexcept {
    if (n_ == buf_.size()) {
      skipping_ = true;
      return false;
    }
    buf_[n_++] = b;
    return true;
  }
  constexpr void restart() noexcept {
    n_ = 0;
    code_ = 0;
    left_ = 0;
    skipping_ = false;
  }

  std::span<std::uint8_t> buf_;
  std::size_t n_ = 0;
  std::size_t size_ = 0;
  std::uint8_t code_ = 0;  ///< code byte of the current group; 0 before the first
  std::uint8_t left_ = 0;  ///< data bytes left in the current group
  bool skipping_ = false;  ///< after an overflow, until the next 0x00
};

/// What a link sent, received, refused and repeated.
struct link_stats {
  std::uint64_t frames_sent = 0;      ///< data frames ACKed by the peer
  std::uint64_t transmissions = 0;    ///< data frames written, first tries and retransmissions
  std::uint64_t retransmissions = 0;  ///< data frames written again after an ACK timeout
  std::uint64_t send_failures = 0;    ///< sends that timed out without an ACK
  std::uint64_t acks_sent = 0;
  std::uint64_t acks_received = 0;    ///< ACKs of the frame being sent
  std::uint64_t stale_acks = 0;       ///< ACKs of another sequence number (late duplicates)
  std::uint64_t delivered = 0;        ///< data frames handed to `recv`, each once
  std::uint64_t duplicates = 0;       ///< retransmitted data frames ACKed again and dropped
  std::uint64_t busy = 0;             ///< data frames dropped unACKed because the receive slot was full
  std::uint64_t corrupt = 0;          ///< frames with a COBS error, a bad link CRC, or an unknown kind / size
  std::uint64_t oversized = 0;        ///< frames longer than the receive buffer (skipped)
  std::uint64_t wire_rejected = 0;    ///< data frames whose body failed wire::decode (ACKed, not delivered)
  std::uint64_t bytes_sent = 0;       ///< on the line, delimiters included
  std::uint64_t bytes_received = 0;
  wire::wire_stats wire;              ///< the reasons of `wire_rejected`
};

/// Timing of a link.
struct link_config {
  /// Time to wait for an ACK before retransmitting (must exceed the round
  /// trip of the largest frame: on a 115200-baud UART 1 KiB takes ~90 ms).
  std::uint32_t ack_timeout_ms = 200;
};

/// A byte stream: `write` sends every byte or fails; `read` returns what is
/// available now (it may wait briefly), `got == 0` when nothing came.
template <class P>
concept byte_port = requires(P& p, std::span<const std::uint8_t> out, std::span<std::uint8_t> in, std::size_t& got) {
  { p.write(out) } -> std::same_as<status>;
  { p.read(in, got) } -> std::same_as<status>;
};

/// A millisecond clock (wraps modulo 2^32; only differences are used).
template <class C>
concept ms_clock = requires(C& c) {
  { c.now_ms() } -> std::same_as<std::uint32_t>;
};

/// Stop-and-wait link over `Port` carrying wire frames of at most
/// `MaxWireFrame` bytes (see the file comment for the protocol).
///
/// RAM: three receive buffers of `MaxWireFrame + link_overhead_bytes` bytes
/// (one being decoded, one holding a delivered frame that waits for `recv`,
/// one holding the frame `recv` returned last) plus a few words; nothing is buffered for sending: `send` COBS-encodes the caller's
/// frame to the port in chunks of `tx_chunk` bytes and blocks until it is
/// ACKed, so the caller's bytes serve the retransmissions.
template <byte_port Port, ms_clock Clock, std::size_t MaxWireFrame>
class link {
  static_assert(MaxWireFrame >= wire::wire_overhead_bytes,
                "serial::link: MaxWireFrame must hold at least an empty wire frame (52 bytes)");

 public:
  /// Bytes of a link frame carrying the largest wire frame.
  static constexpr std::size_t max_link_frame = MaxWireFrame + link_overhead_bytes;
  /// Bytes handed to `Port::write` at a time.
  static constexpr std::size_t tx_chunk = 64;

  /// The port and the clock must outlive the link.
  link(Port& port, Clock& clock, link_config config = {}) noexcept
      : port_(port), clock_(clock), config_(config), dec_(std::span<std::uint8_t>(rx_[0])) {}
  link(const link&) = delete;
  link& operator=(const link&) = delete;

  /// Send one wire frame and wait until the peer ACKs it, retransmitting every
  /// `ack_timeout_ms`; a data frame that arrives meanwhile is ACKed and kept
  /// for `recv` (one: a further one is left unACKed, counted `busy`, and
  /// arrives with its sender's retransmission after the next `recv`).
  /// @return `capacity_exceeded` if `frame` is longer than `MaxWireFrame`;
  ///         `timed_out` if no ACK came within `timeout_ms` (the frame may or
  ///         may not have arrived); a port error as the port reported it
  [[nodiscard]] status send(std::span<const std::uint8_t> frame, std::uint32_t timeout_ms) {
    TINYLARGE_CHECK(frame.size() <= MaxWireFrame, errc::capacity_exceeded,
                    "serial send: frame longer than the link's MaxWireFrame");
    const std::uint8_t seq = tx_seq_++;
    const std::uint32_t start = clock_.now_ms();
    for (bool first = true;; first = false) {
      if (!first) ++stats_.retransmissions;
      ++stats_.transmissions;
      TINYLARGE_TRY(write_frame(kind_data, seq, frame));
      awaiting_ = true;
      acked_ = false;
      awaited_seq_ = seq;
      const std::uint32_t sent_at = clock_.now_ms();
      for (;;) {
        const status s = pump();
        if (!s.ok()) {
          awaiting_ = false;
          return s;
        }
        if (acked_) {
          awaiting_ = false;
          ++stats_.frames_sent;
          return status::success();
        }
        const std::uint32_t now = clock_.now_ms();
        if (now - start >= timeout_ms) {
          awaiting_ = false;
          ++stats_.send_failures;
          return {errc::timed_out, "serial send: no ACK from the peer before the timeout"};
        }
        if (now - sent_at >= config_.ack_timeout_ms) break;  // retransmit
      }
    }
  }

  /// Wait up to `timeout_ms` for the next data frame that is new (not a
  /// retransmission) and a valid wire frame. `m.payload` points into the
  /// link's buffer and stays valid until the next `recv`.
  /// @return `timed_out` when none arrived; a port error as the port reported it
  [[nodiscard]] status recv(wire::message_view& m, std::uint32_t timeout_ms) {
    m = wire::message_view{};
    held_ = false;  // the frame returned last time may be overwritten from now on
    const std::uint32_t start = clock_.now_ms();
    for (;;) {
      if (!pending_) TINYLARGE_TRY(pump());  // at least once, also with a timeout of 0
      if (pending_) {
        pending_ = false;
        held_ = true;
        held_buf_ = pending_buf_;
        m = pending_view_;
        return status::success();
      }
      if (clock_.now_ms() - start >= timeout_ms)
        return {errc::timed_out, "serial recv: no frame from the peer before the timeout"};
    }
  }

  /// Read what the port has now and process it (ACKs, data frames, garbage).
  /// `send` and `recv` call it; a caller may call it to answer the peer while
  /// doing something else.
  [[nodiscard]] status pump() {
    std::uint8_t chunk[64];
    std::size_t got = 0;
    TINYLARGE_TRY(port_.read(std::span<std::uint8_t>(chunk), got));
    stats_.bytes_received += got;
    for (std::size_t i = 0; i < got; ++i) {
      switch (dec_.feed(chunk[i])) {
        case cobs_decoder::event::none: break;
        case cobs_decoder::event::frame: TINYLARGE_TRY(on_frame(dec_.frame())); break;
        case cobs_decoder::event::corrupt: ++stats_.corrupt; break;
        case cobs_decoder::event::overflow: ++stats_.oversized; break;
      }
    }
    return status::success();
  }

  /// Counters since construction.
  const link_stats& stats() const noexcept { return stats_; }

 private:
  static constexpr wire::wire_limits limits() noexcept {
    return wire::wire_limits{static_cast<std::uint32_t>(MaxWireFrame - wire::wire_overhead_bytes)};
  }

  /// Write `0x00 · COBS(kind seq body crc) · 0x00` to the port.
  status write_frame(std::uint8_t kind, std::uint8_t seq, std::span<const std::uint8_t> body) {
    std::uint8_t head[2] = {kind, seq};
    std::uint32_t crc = tinylarge::crc32(head, 2);
    if (!body.empty()) crc = tinylarge::crc32(body.data(), body.size(), crc);
    std::uint8_t tail[4];
    wire::detail::wire_put32(tail, crc);
    std::uint8_t out[tx_chunk];
    std::size_t n = 0;
    const auto flush = [&]() -> status {
      if (n == 0) return status::success();
      stats_.bytes_sent += n;
      const std::size_t k = n;
      n = 0;
      return port_.write(std::span<const std::uint8_t>(out, k));
    };
    const auto put = [&](std::uint8_t b) -> status {
      out[n++] = b;
      return n == tx_chunk ? flush() : status::success();
    };
    // COBS runs over head · body · tail, read in place (no copy of the body).
    TINYLARGE_TRY(put(0));
    TINYLARGE_TRY(cobs_encode(joined{head, body, tail}, put));
    TINYLARGE_TRY(put(0));
    return flush();
  }

  /// The concatenation of three byte spans, indexable (what `cobs_encode` reads).
  struct joined {
    std::span<const std::uint8_t> a, b, c;
    std::size_t size() const noexcept { return a.size() + b.size() + c.size(); }
    std::uint8_t operator[](std::size_t i) const noexcept {
      if (i < a.size()) return a[i];
      i -= a.size();
      return i < b.size() ? b[i] : c[i - b.size()];
    }
  };

  status on_frame(std::span<const std::uint8_t> f) {
    if (f.size() < link_overhead_bytes) {
      ++stats_.corrupt;
      return status::success();
    }
    const std::size_t body_len = f.size() - link_overhead_bytes;
    const std::uint32_t crc = tinylarge::crc32(f.data(), f.size() - 4);
    if (wire::detail::wire_get32(f.data() + f.size() - 4) != crc) {
      ++stats_.corrupt;
      return status::success();
    }
    const std::uint8_t kind = f[0], seq = f[1];
    if (kind == kind_ack && body_len == 0) {
      if (awaiting_ && seq == awaited_seq_ && !acked_) {
        acked_ = true;
        ++stats_.acks_received;
      } else {
        ++stats_.stale_acks;
      }
      return status::success();
    }
    if (kind != kind_data) {
      ++stats_.corrupt;
      return status::success();
    }
    if (have_delivered_ && seq == last_delivered_) {  // a retransmission: our ACK was lost
      ++stats_.duplicates;
      return ack(seq);
    }
    if (pending_) {  // no room: leave it to the sender's retransmission
      ++stats_.busy;
      return status::success();
    }
    have_delivered_ = true;
    last_delivered_ = seq;
    wire::message_view v{};
    if (!wire::decode(f.subspan(2, body_len), v, limits(), &stats_.wire).ok()) {
      ++stats_.wire_rejected;  // the link carried it intact; retransmitting would not help
      return ack(seq);
    }
    // Keep the frame where it is: decode into the buffer neither pending nor held.
    pending_buf_ = cur_;
    cur_ = 0;
    while (cur_ == pending_buf_ || (held_ && cur_ == held_buf_)) ++cur_;
    dec_.retarget(std::span<std::uint8_t>(rx_[cur_]));
    pending_ = true;
    pending_view_ = v;
    ++stats_.delivered;
    return ack(seq);
  }

  status ack(std::uint8_t seq) {
    ++stats_.acks_sent;
    return write_frame(kind_ack, seq, {});
  }

  Port& port_;
  Clock& clock_;
  link_config config_;
  std::uint8_t rx_[3][max_link_frame];
  cobs_decoder dec_;
  unsigned cur_ = 0;          ///< buffer being decoded into
  unsigned pending_buf_ = 0;  ///< with `pending_`: the delivered frame waiting for `recv`
  unsigned held_buf_ = 0;     ///< with `held_`: the frame `recv` returned; released at the next `recv`
  bool pending_ = false;
  bool held_ = false;
  wire::message_view pending_view_{};
  std::uint8_t tx_seq_ = 0;
  std::uint8_t awaited_seq_ = 0;
  bool awaiting_ = false;
  bool acked_ = false;
  bool have_delivered_ = false;
  std::uint8_t last_delivered_ = 0;
  link_stats stats_{};
};

}  // namespace tinylarge::serial

#if !TINYLARGE_FREESTANDING && __has_include(<poll.h>) && __has_include(<unistd.h>)
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <memory>

#include "policy.hpp"

namespace tinylarge::serial {

/// A `byte_port` over a POSIX file descriptor: a connected TCP socket (QEMU's
/// `-serial tcp:`), a pipe, a pty or a tty. Does not own the descriptor.
class fd_port {
 public:
  /// @param wait_ms how long `read` waits for the first byte (keeps the link's
  ///        loops from spinning; 0 polls)
  explicit fd_port(int fd, int wait_ms = 1) noexcept : fd_(fd), wait_ms_(wait_ms) {}

  /// Write every byte (retrying short writes and EINTR). On a socket whose peer
  /// has gone this is an `io_error`, not a SIGPIPE (`MSG_NOSIGNAL`).
  [[nodiscard]] status write(std::span<const std::uint8_t> out) {
    std::size_t done = 0;
    while (done < out.size()) {
      ::ssize_t k = socket_ ? ::send(fd_, out.data() + done, out.size() - done, MSG_NOSIGNAL) : -1;
      if (k < 0 && (!socket_ || errno == ENOTSOCK)) {
        socket_ = false;  // a pipe, pty or tty
        k = ::write(fd_, out.data() + done, out.size() - done);
      }
      if (k < 0 && errno == EINTR) continue;
      if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        ::pollfd p{fd_, POLLOUT, 0};
        (void)::poll(&p, 1, 10);
        continue;
      }
      TINYLARGE_CHECK(k > 0, errc::io_error, "serial fd_port: write failed (the peer closed the connection?)");
      done += static_cast<std::size_t>(k);
    }
    return status::success();
  }

  /// Read what is available, waiting up to `wait_ms` for it.
  [[nodiscard]] status read(std::span<std::uint8_t> in, std::size_t& got) {
    got = 0;
    ::pollfd p{fd_, POLLIN, 0};
    const int r = ::poll(&p, 1, wait_ms_);
    if (r < 0 && errno == EINTR) return status::success();
    TINYLARGE_CHECK(r >= 0, errc::io_error, "serial fd_port: poll failed");
    if (r == 0) return status::success();
    const ::ssize_t k = ::read(fd_, in.data(), in.size());
    if (k < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)) return status::success();
    TINYLARGE_CHECK(k >= 0, errc::io_error, "serial fd_port: read failed");
    TINYLARGE_CHECK(k > 0, errc::io_error, "serial fd_port: the peer closed the connection");
    got = static_cast<std::size_t>(k);
    return status::success();
  }

  int fd() const noexcept { return fd_; }

 private:
  int fd_;
  int wait_ms_;
  bool socket_ = true;  ///< until `send` says otherwise
};

/// An `ms_clock` reading `std::chrono::steady_clock`.
struct steady_clock_ms {
  std::uint32_t now_ms() const noexcept {
    return static_cast<std::uint32_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                          std::chrono::steady_clock::now().time_since_epoch())
                                          .count());
  }
};

/// A `transport_policy` endpoint over one serial link: the two ends of a
/// point-to-point line, the server (endpoint 0) and one device (endpoint 1),
/// so `endpoints()` is 2 — the server roles of workflow/ run over it
/// unchanged, with one client. (Several devices in one fleet: each joins through
/// its own `serial_gateway`, transport/serial_gateway.hpp.) Host profile only (the
/// concept's timeouts are `std::chrono`); a device uses `link` directly.
///
/// `send` stamps `sender` (this end's id) and `sequence` (a per-endpoint
/// counter), encodes the frame (the buffers live on the heap: one object per
/// link) and sends it with `link::send`. `recv` returns the next frame whose
/// `sender` is the peer; others are dropped and counted `spoofed`. Frames
/// carrying a MAC are refused (`unauthenticated`): this transport does not
/// authenticate (a point-to-point wire; transport/auth.hpp is for networks).
template <byte_port Port, ms_clock Clock, std::size_t MaxWireFrame>
class serial_transport {
 public:
  static const char* name() { return "serial"; }

  /// @param self 0 (the server end) or 1 (the device end)
  serial_transport(Port& port, Clock& clock, endpoint_id self, link_config config = {})
      : self_(self), link_(std::make_unique<link_type>(port, clock, config)), clock_(clock) {
    TINYLARGE_REQUIRE(self <= 1, errc::invalid_argument, "serial_transport: the endpoint id must be 0 or 1");
  }

  endpoint_id id() const { return self_; }
  std::size_t endpoints() const { return 2; }

  status send(endpoint_id to, const wire::message_header& h, std::span<const std::uint8_t> payload,
              std::chrono::milliseconds timeout) {
    TINYLARGE_CHECK(to == 1 - self_, errc::invalid_argument, "serial_transport: the only peer is endpoint 1 - id()");
    wire::message_header stamped = h;
    stamped.sender = self_;
    stamped.sequence = ++sequence_;
    stamped.flags = 0;
    std::size_t written = 0;
    TINYLARGE_TRY(wire::encode(stamped, payload, std::span<std::uint8_t>(tx_.get(), MaxWireFrame), written, limits()));
    TINYLARGE_TRY(link_->send(std::span<const std::uint8_t>(tx_.get(), written), to_ms(timeout)));
    refresh();
    return status::success();
  }

  status broadcast(const wire::message_header& h, std::span<const std::uint8_t> payload,
                   std::chrono::milliseconds timeout) {
    return send(1 - self_, h, payload, timeout);
  }

  status recv(wire::message_view& m, std::chrono::milliseconds timeout) {
    const std::uint32_t start = clock_.now_ms(), total = to_ms(timeout);
    for (;;) {
      const std::uint32_t spent = clock_.now_ms() - start;
      if (spent >= total) return {errc::timed_out, "serial_transport recv: nothing from the peer before the timeout"};
      const status s = link_->recv(m, total - spent);
      refresh();
      TINYLARGE_TRY(s);
      if ((m.header.flags & wire::wire_flag_mac) != 0) {
        ++stats_.unauthenticated;
        continue;
      }
      if (m.header.sender != 1 - self_) {
        ++stats_.spoofed;
        continue;
      }
      ++stats_.frames_received;
      stats_.bytes_received += m.payload.size() + wire::wire_overhead_bytes;
      return status::success();
    }
  }

  const transport_stats& stats() const { return stats_; }
  /// The link's own counters (retransmissions, duplicates, corrupt frames, …).
  const link_stats& link_counters() const { return link_->stats(); }

 private:
  using link_type = link<Port, Clock, MaxWireFrame>;
  static constexpr wire::wire_limits limits() noexcept {
    return wire::wire_limits{static_cast<std::uint32_t>(MaxWireFrame - wire::wire_overhead_bytes)};
  }
  static std::uint32_t to_ms(std::chrono::milliseconds t) noexcept {
    return t.count() <= 0 ? 0u : t.count() >= 0x7FFFFFFF ? 0x7FFFFFFFu : static_cast<std::uint32_t>(t.count());
  }
  void refresh() {
    const link_stats& l = link_->stats();
    stats_.frames_sent = l.frames_sent;
    stats_.bytes_sent = l.bytes_sent;
    stats_.wire = l.wire;
  }

  endpoint_id self_;
  std::unique_ptr<link_type> link_;
  Clock& clock_;
  std::unique_ptr<std::uint8_t[]> tx_ = std::make_unique<std::uint8_t[]>(MaxWireFrame);
  std::uint32_t sequence_ = 0;
  transport_stats stats_{};
};

}  // namespace tinylarge::serial
#endif
