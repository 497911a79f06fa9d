// Host end of the serial-link test (scripts/mcu_serial.sh): a FedAvg-style server for one
// device (the frames of run_federated_server) over transport/serial.hpp on a TCP socket. It listens on 127.0.0.1 (port 0: the
// system picks one, written to --port-file), accepts QEMU's `-serial tcp:` connection to
// the Cortex-M4F firmware tests/mcu/serial_device.cpp, and for each round sends the model
// frame, receives the device's update frame and checks that it equals, bit for bit, the
// same local round (tests/mcu/serial_task.hpp) computed here; the update is the next
// round's model. Bytes in both directions are dropped, flipped or followed by garbage
// with probability --fault-per-mille / 1000 each (a seeded generator): the run must end
// with every update received exactly once, and with the faults recovered by the link.
//
//   serial_host --port-file F [--rounds 4] [--fault-per-mille 5] [--seed 1] [--client-id 0]
//               [--accept-timeout-ms 30000]   (--client-id: the K of the firmware's `arg=K`)
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <span>
#include <string>
#include <vector>

#include "../mcu/serial_task.hpp"
#include "lossy_port.hpp"
#include "qemu_line.hpp"
#include "tinylarge/core/rng.hpp"
#include "tinylarge/transport/serial.hpp"
#include "tinylarge/transport/wire.hpp"

namespace tl = tinylarge;

namespace {

using tl_test::lossy_port;

int die(const char* what, const tl::status& s) {
  std::fprintf(stderr, "serial_host: %s: %s (%s)\n", what, s.message, tl::to_string(s.code));
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  std::string port_file;
  std::uint32_t rounds = 4, per_mille = 5, accept_ms = 30000;
  std::uint64_t seed = 1, client = 0;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    const char* v = argv[i + 1];
    if (a == "--port-file") port_file = v;
    else if (a == "--rounds") rounds = static_cast<std::uint32_t>(std::strtoul(v, nullptr, 10));
    else if (a == "--fault-per-mille") per_mille = static_cast<std::uint32_t>(std::strtoul(v, nullptr, 10));
    else if (a == "--seed") seed = std::strtoull(v, nullptr, 10);
    else if (a == "--client-id") client = std::strtoull(v, nullptr, 10);
    else if (a == "--accept-timeout-ms") accept_ms = static_cast<std::uint32_t>(std::strtoul(v, nullptr, 10));
    else {
      std::fprintf(stderr, "serial_host: unknown option %s\n", a.c_str());
      return 2;
    }
  }
  if (port_file.empty() || rounds == 0 || per_mille > 100) {
    std::fprintf(stderr, "usage: serial_host --port-file F [--rounds N>0] [--fault-per-mille 0..100] [--seed S] [--client-id K]\n");
    return 2;
  }

  const int ls = tl_test::listen_loopback(port_file);
  if (ls < 0) return std::perror("serial_host: listen on 127.0.0.1"), 1;
  const int fd = tl_test::accept_within(ls, static_cast<long>(accept_ms), "serial_host");
  if (fd < 0) return 1;

  lossy_port port{tl::serial::fd_port(fd), tl::rng(seed), per_mille};
  tl::serial::steady_clock_ms clock;
  constexpr std::size_t max_frame = tl::wire::frame_size(serial_task::params * 4);
  tl::serial::link<lossy_port, tl::serial::steady_clock_ms, max_frame> link(port, clock, {100});

  // The initial model of the run (serial_task.hpp), then per round the frames of
  // run_federated_server: model {round r = 1, 2, …, aux = task seed, fp32 W·b}; the device
  // answers with the update header of workflow/federated_client_step.hpp. In round 2 the
  // model is sent twice (as QoS 1 may deliver it): the device must answer both, with the
  // same bytes.
  std::vector<float> model(serial_task::params), expected(serial_task::params), got(serial_task::params);
  serial_task::initial_model(seed, model.data());
  static serial_task::workspace work;
  std::vector<std::uint8_t> frame(max_frame);
  int mismatches = 0;
  std::uint32_t answers = 0;
  for (std::uint32_t r = 1; r <= rounds; ++r) {
    tl::wire::message_header h;
    h.type = tl::wire::message_type::model;
    h.round = r;
    h.sequence = r;
    h.aux = seed * 1000003u + r;  // the round's task seed
    std::size_t written = 0;
    tl::status s = tl::wire::encode_fp32(h, model, frame, written);
    if (!s.ok()) return die("encoding the model", s);
    const float p_host = serial_task::local_round(model.data(), h.aux, client, work, expected.data());
    for (int copy = 0; copy < (r == 2 ? 2 : 1); ++copy) {
      s = link.send(std::span<const std::uint8_t>(frame.data(), written), 20000);
      if (!s.ok()) return die("sending the model", s);
      tl::wire::message_view m;
      s = link.recv(m, 20000);
      if (!s.ok()) return die("waiting for the update", s);
      if (m.header.type != tl::wire::message_type::update || m.header.round != r || m.header.sender != 1 ||
          m.header.aux != serial_task::samples || m.header.count != serial_task::params) {
        std::fprintf(stderr, "serial_host: round %u: not the update of this round\n", r);
        return 1;
      }
      ++answers;
      s = tl::wire::read_fp32(m, got);
      if (!s.ok()) return die("reading the update", s);
      const bool same = std::memcmp(got.data(), expected.data(), got.size() * sizeof(float)) == 0;
      mismatches += !same;
      std::printf("serial_host: round %u%s: update from device client %llu %s the host's local round (mean p(label) %.4f)\n",
                  r, copy == 0 ? "" : " (model repeated)", (unsigned long long)client,
                  same ? "equals bit for bit" : "DIFFERS from", static_cast<double>(p_host));
    }
    model = got;
  }
  tl::wire::message_header stop;
  stop.type = tl::wire::message_type::control;
  stop.aux = static_cast<std::uint64_t>(tl::wire::control_command::stop);
  std::size_t written = 0;
  tl::status s = tl::wire::encode(stop, {}, frame, written);
  if (s.ok()) s = link.send(std::span<const std::uint8_t>(frame.data(), written), 20000);
  if (!s.ok()) return die("sending stop", s);
  // Exactly once: no further update may arrive (retransmissions are ACKed, not delivered).
  tl::wire::message_view extra;
  const tl::status tail = link.recv(extra, 300);
  const bool quiet = tail.code == tl::errc::timed_out || tail.code == tl::errc::io_error;  // the device exits

  const auto& st = link.stats();
  std::printf("serial_host: injected %llu dropped, %llu flipped, %llu garbage bytes; link: sent %llu, delivered %llu, "
              "retransmissions %llu, duplicates %llu, corrupt %llu, oversized %llu, stale acks %llu, bytes sent %llu, "
              "received %llu\n",
              (unsigned long long)port.dropped, (unsigned long long)port.flipped, (unsigned long long)port.garbage,
              (unsigned long long)st.frames_sent, (unsigned long long)st.delivered,
              (unsigned long long)st.retransmissions, (unsigned long long)st.duplicates,
              (unsigned long long)st.corrupt, (unsigned long long)st.oversized, (unsigned long long)st.stale_acks,
              (unsigned long long)st.bytes_sent, (unsigned long long)st.bytes_received);
  ::close(fd);
  ::close(ls);
  bool ok = mismatches == 0 && quiet && st.delivered == answers && st.frames_sent == answers + 1;
  if (per_mille > 0 && port.dropped + port.flipped + port.garbage == 0) {
    std::fprintf(stderr, "serial_host: no fault was injected: the test would prove nothing\n");
    ok = false;
  }
  std::printf("serial_host: %s\n", ok ? "PASS" : "FAIL");
  return ok ? 0 : 1;
}
