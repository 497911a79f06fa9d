// Host end of the split-learning serial test (scripts/mcu_split.sh): the library's
// SplitFedV1 or PSL deployment *server* (workflow/split_deploy.hpp, unchanged) over
// `serial::serial_transport` on a TCP socket, to which QEMU connects the Cortex-M4F
// firmware tests/mcu/split_device.cpp (`-serial tcp:127.0.0.1:PORT`): one device, its
// segment dense<16, 32> + relu of the 16-32-4 MLP of tests/mcu/split_task.hpp, the
// server segment dense<32, 4> here. Bytes in both directions are dropped, flipped or
// followed by garbage with probability --fault-per-100k / 100000 each (a seeded
// generator; frames here are 1-2 KB, so a rate per byte of 0.03 % damages a third of
// them); the link layer recovers them.
//
// Then the same fleet runs in process: the same server and the deployment's own host
// client (`split_deployment<…>::client`, the library's nn::network and nn::sgd)
// over `in_process` endpoints, with the same batches (split_task::make_batch). The final
// device and server segments of the two runs must be equal bit for bit, and so must the
// server's loss per round: the firmware runs the same device functions
// (workflow/split_device.hpp) on the same scalar fp32 kernels (this program is built
// with TINYLARGE_USE_XSIMD=0, so the host's GEMMs sum in the scalar kernels' order as
// the Cortex-M4's do, and both sides with -ffp-contract=off).
//
// With --checkpoint, the server is killed (simulated: an exception out of its run) after
// --crash-after steps of round --crash-round and a new server object resumes from the
// checkpoint over the same link: the firmware sees a model of the same round with a greater
// restart epoch and redoes the round from step 0 (the deployment's client rule), and the final
// segments must still equal the uninterrupted in-process run bit for bit.
//
//   split_serial_host --port-file F [--rounds 3] [--steps 6] [--uplink fp32|int8] [--scheme splitfed_v1|psl]
//                     [--fault-per-100k 30] [--ack-timeout-ms 400] [--seed 1] [--accept-timeout-ms 30000]
//                     [--checkpoint FILE --crash-round R --crash-after N]
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "../mcu/split_task.hpp"
#include "lossy_port.hpp"
#include "qemu_line.hpp"
#include "tinylarge/aggregate/policy.hpp"
#include "tinylarge/core/crc32.hpp"
#include "tinylarge/core/rng.hpp"
#include "tinylarge/nn/network.hpp"
#include "tinylarge/nn/optimizer.hpp"
#include "tinylarge/transport/in_process.hpp"
#include "tinylarge/transport/serial.hpp"
#include "tinylarge/workflow/split_deploy.hpp"

namespace tl = tinylarge;
namespace wf = tinylarge::workflow;
using namespace std::chrono_literals;

#if TINYLARGE_USE_XSIMD
#error "split_serial_host: build with -DTINYLARGE_USE_XSIMD=0 (the scalar kernels' summation order, as on the Cortex-M4)"
#endif

namespace {

using tl_test::lossy_port;

struct args {
  std::string port_file;
  std::uint32_t rounds = 3, steps = 6, per_100k = 30, accept_ms = 30000, ack_ms = 400;
  std::uint64_t seed = 1;
  std::string uplink = "fp32";
  std::string scheme = "splitfed_v1";  ///< or psl (one server segment; with one device: no lockstep waits)
  /// With a checkpoint file: the server "crashes" (an exception out of its run) after
  /// `crash_after` steps of round `crash_round` and a new server object resumes from the
  /// checkpoint over the same link (restart epoch 1): the firmware must redo the round.
  std::string checkpoint;
  std::uint32_t crash_round = 0, crash_after = 0;
};

/// The in-process stand-in for a killed server (as tests/transport/nn_node.cpp's).
struct simulated_crash {};

/// What a server run ended with.
struct outcome {
  tl::status status;
  std::vector<float> device, server;
  wf::splitfed_server_report report;
};

std::uint32_t crc_of(const std::vector<float>& v) { return tl::crc32(v.data(), v.size() * sizeof(float)); }

/// The deployment: SplitFedV1 or PSL with plain SGD on both sides, the uplink codec Up, fp32 gradients.
template <class Scheme, class Up>
using protocol = wf::split_deployment<Scheme, split_task::model, split_task::partition, tl::nn::sgd, tl::fedavg, Up,
                                            tl::codec::fp32>;

template <class P, class Transport>
outcome serve(Transport& ep, const args& a, bool crash = false) {
  tl::nn::network<split_task::model> full;
  full.initialize(split_task::seed);
  const auto w = full.parameters();
  constexpr std::size_t nd = P::device_model::param_count;
  const std::vector<float> dev(w.begin(), w.begin() + nd), srv(w.begin() + nd, w.end());
  wf::splitfed_server_options o;
  o.rounds = a.rounds;
  o.steps_per_round = a.steps;
  o.max_batch = split_task::batch;
  o.round_timeout = 30s;
  o.send_timeout = 20s;
  outcome out;
  if (crash) {
    std::remove(a.checkpoint.c_str());
    o.checkpoint_path = a.checkpoint;
    o.on_step = [&](std::uint32_t r, std::uint64_t n) {
      if (r == a.crash_round && n == a.crash_after) throw simulated_crash{};
    };
    try {
      typename P::server doomed(tl::nn::sgd{.learning_rate = split_task::learning_rate}, tl::fedavg{}, dev, srv);
      out.status = doomed.run(ep, o);
      out.status = {tl::errc::invalid_argument, "the server did not reach its crash point"};
      return out;
    } catch (const simulated_crash&) {
      std::printf("split_serial_host: simulated server crash in round %u after %u steps; a new server resumes "
                  "from the checkpoint\n", a.crash_round, a.crash_after);
    }
    o.on_step = nullptr;
  }
  // (A resumed server starts from the initial segments: the checkpoint replaces them.)
  typename P::server server(tl::nn::sgd{.learning_rate = split_task::learning_rate}, tl::fedavg{}, dev, srv);
  out.status = server.run(ep, o, &out.report);
  out.device.assign(server.device_parameters().begin(), server.device_parameters().end());
  out.server.assign(server.server_parameters().begin(), server.server_parameters().end());
  return out;
}

/// The same fleet in process: the deployment's server and its host client over in_process endpoints.
template <class P>
outcome in_process_run(const args& a) {
  tl::in_process::hub hub(2);
  tl::status client_status;
  std::thread device([&] {
    tl::in_process ep(hub, 1);
    typename P::client c(tl::nn::sgd{.learning_rate = split_task::learning_rate}, split_task::examples,
                         split_task::batch);
    client_status = c.run(ep, split_task::make_batch);
  });
  tl::in_process ep(hub, 0);
  outcome out = serve<P>(ep, a);
  device.join();
  if (out.status.ok() && !client_status.ok()) out.status = client_status;
  return out;
}

template <class P>
int run(const args& a, int fd) {
  constexpr std::size_t max_payload = std::max(P::device_model::param_count * 4, P::smashed_bytes(split_task::batch));
  constexpr std::size_t max_frame = tl::wire::frame_size(max_payload);
  lossy_port port{tl::serial::fd_port(fd), tl::rng(a.seed), a.per_100k, 100000};
  tl::serial::steady_clock_ms clock;
  using transport = tl::serial::serial_transport<lossy_port, tl::serial::steady_clock_ms, max_frame>;
  static_assert(tl::transport_policy<transport>);
  transport ep(port, clock, 0, {a.ack_ms});
  const auto t0 = std::chrono::steady_clock::now();
  const bool crash = !a.checkpoint.empty();
  const outcome serial = serve<P>(ep, a, crash);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (!serial.status.ok()) {
    std::fprintf(stderr, "split_serial_host: the server over the serial link: %s (%s)\n", serial.status.message,
                 tl::to_string(serial.status.code));
    return 1;
  }
  // Exactly once: nothing may arrive after the stop (retransmissions are ACKed, not delivered).
  tl::wire::message_view extra;
  const tl::status tail = ep.recv(extra, 300ms);
  const bool quiet = tail.code == tl::errc::timed_out || tail.code == tl::errc::io_error;  // the device exits

  const outcome ref = in_process_run<P>(a);
  if (!ref.status.ok()) {
    std::fprintf(stderr, "split_serial_host: the in-process run: %s\n", ref.status.message);
    return 1;
  }
  const auto& r = serial.report;
  std::string loss;
  for (const double l : r.train_loss) loss += std::to_string(l).substr(0, 6) + " ";
  std::printf("split_serial_host: %s over the serial link (uplink %s, downlink fp32): %u rounds of %u steps "
              "(batch %zu, cut %zu) in %.2f s, steps served %llu, server loss per round [ %s], smashed bytes %llu, "
              "gradient bytes %llu\n",
              P::server_copies ? "SplitFedV1" : "PSL", P::uplink_codec::name(), a.rounds, a.steps, split_task::batch,
              P::cut, seconds,
              static_cast<unsigned long long>(r.steps_served), loss.c_str(),
              static_cast<unsigned long long>(r.smashed_bytes), static_cast<unsigned long long>(r.gradient_bytes));
  const bool same_dev = serial.device == ref.device &&
                        std::memcmp(serial.device.data(), ref.device.data(), serial.device.size() * 4) == 0;
  const bool same_srv = serial.server == ref.server &&
                        std::memcmp(serial.server.data(), ref.server.data(), serial.server.size() * 4) == 0;
  // (A resumed server reports the rounds it ran: the last ones of the uninterrupted run.)
  const bool same_loss = r.train_loss.size() <= ref.report.train_loss.size() &&
                         std::equal(r.train_loss.begin(), r.train_loss.end(),
                                    ref.report.train_loss.end() - static_cast<std::ptrdiff_t>(r.train_loss.size()));
  std::printf("split_serial_host: device segment (Cortex-M4F via the server) crc32 %08x, in process %08x: %s\n",
              crc_of(serial.device), crc_of(ref.device), same_dev ? "bit-identical" : "DIFFERENT");
  std::printf("split_serial_host: server segment crc32 %08x, in process %08x: %s; loss per round %s\n",
              crc_of(serial.server), crc_of(ref.server), same_srv ? "bit-identical" : "DIFFERENT",
              same_loss ? "identical" : "DIFFERENT");
  const auto& st = ep.link_counters();
  std::printf("split_serial_host: injected %llu dropped, %llu flipped, %llu garbage bytes; link: sent %llu, delivered "
              "%llu, retransmissions %llu, duplicates %llu, corrupt %llu, oversized %llu, stale acks %llu, bytes sent "
              "%llu, received %llu; server dropped frames %llu, rejected %llu\n",
              (unsigned long long)port.dropped, (unsigned long long)port.flipped, (unsigned long long)port.garbage,
              (unsigned long long)st.frames_sent, (unsigned long long)st.delivered,
              (unsigned long long)st.retransmissions, (unsigned long long)st.duplicates,
              (unsigned long long)st.corrupt, (unsigned long long)st.oversized, (unsigned long long)st.stale_acks,
              (unsigned long long)st.bytes_sent, (unsigned long long)st.bytes_received,
              (unsigned long long)r.dropped_frames, (unsigned long long)r.rejected_frames);
  // Every smashed frame and every update delivered once; every model, gradient and the stop sent once.
  // After a crash: the resumed server ran from round crash_round in restart epoch 1 (the frames the
  // device sent to the dead server are dropped, the round's first steps served twice).
  const std::uint64_t steps = std::uint64_t{a.rounds} * a.steps;
  bool ok = same_dev && same_srv && same_loss && quiet && r.rejected_frames == 0;
  if (!crash) {
    ok = ok && r.train_loss.size() == a.rounds && r.steps_served == steps && r.rounds_completed == a.rounds && st.delivered == steps + a.rounds &&
         st.frames_sent == a.rounds + steps + 1 && r.dropped_frames == 0;
  } else {
    std::printf("split_serial_host: resumed at round %u in restart epoch %u, %llu frames of the dead server's epoch "
                "dropped, %llu steps served after the restart\n",
                r.first_round, r.restarts, static_cast<unsigned long long>(r.dropped_frames),
                static_cast<unsigned long long>(r.steps_served));
    ok = ok && r.first_round == a.crash_round && r.restarts == 1 && r.rounds_completed == a.rounds &&
         r.steps_served == std::uint64_t{a.rounds - a.crash_round + 1} * a.steps;
  }
  if (!quiet) std::fprintf(stderr, "split_serial_host: a frame arrived after the stop\n");
  if (a.per_100k > 0 && (port.dropped == 0 || port.flipped == 0 || port.garbage == 0)) {
    // (scripts/mcu_split.sh's seeds draw each kind among their first faults)
    std::fprintf(stderr, "split_serial_host: not every kind of fault (drop, flip, garbage) was injected\n");
    ok = false;
  }
  std::printf("split_serial_host: %s\n", ok ? "PASS" : "FAIL");
  return ok ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  args a;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i];
    const char* v = argv[i + 1];
    if (k == "--port-file") a.port_file = v;
    else if (k == "--rounds") a.rounds = static_cast<std::uint32_t>(std::strtoul(v, nullptr, 10));
    else if (k == "--steps") a.steps = static_cast<std::uint32_t>(std::strtoul(v, nullptr, 10));
    else if (k == "--uplink") a.uplink = v;
    else if (k == "--scheme") a.scheme = v;
    else if (k == "--fault-per-100k") a.per_100k = static_cast<std::uint32_t>(std::strtoul(v, nullptr, 10));
    else if (k == "--ack-timeout-ms") a.ack_ms = static_cast<std::uint32_t>(std::strtoul(v, nullptr, 10));
    else if (k == "--checkpoint") a.checkpoint = v;
    else if (k == "--crash-round") a.crash_round = static_cast<std::uint32_t>(std::strtoul(v, nullptr, 10));
    else if (k == "--crash-after") a.crash_after = static_cast<std::uint32_t>(std::strtoul(v, nullptr, 10));
    else if (k == "--seed") a.seed = std::strtoull(v, nullptr, 10);
    else if (k == "--accept-timeout-ms") a.accept_ms = static_cast<std::uint32_t>(std::strtoul(v, nullptr, 10));
    else {
      std::fprintf(stderr, "split_serial_host: unknown option %s\n", k.c_str());
      return 2;
    }
  }
  if (a.port_file.empty() || a.rounds == 0 || a.steps == 0 || a.per_100k > 1000 ||
      (a.uplink != "fp32" && a.uplink != "int8") || (a.scheme != "splitfed_v1" && a.scheme != "psl") ||
      (!a.checkpoint.empty() && (a.crash_round < 2 || a.crash_round > a.rounds || a.crash_after == 0 ||
                                 a.crash_after >= a.steps))) {
    std::fprintf(stderr, "usage: split_serial_host --port-file F [--rounds N>0] [--steps S>0] [--uplink fp32|int8] "
                         "[--scheme splitfed_v1|psl] [--fault-per-100k 0..1000] [--ack-timeout-ms T] [--seed S] "
                         "[--checkpoint F --crash-round 2..N "
                         "--crash-after 1..S-1]\n");
    return 2;
  }

  const int ls = tl_test::listen_loopback(a.port_file);
  if (ls < 0) return std::perror("split_serial_host: listen on 127.0.0.1"), 1;
  const int fd = tl_test::accept_within(ls, static_cast<long>(a.accept_ms), "split_serial_host");
  if (fd < 0) return 1;
  using v1 = tl::split_scheme::splitfed_v1;
  using psl = tl::split_scheme::parallel;
  const bool int8 = a.uplink == "int8";
  const int rc = a.scheme == "psl" ? (int8 ? run<protocol<psl, tl::codec::int8>>(a, fd) : run<protocol<psl, tl::codec::fp32>>(a, fd))
                                   : (int8 ? run<protocol<v1, tl::codec::int8>>(a, fd) : run<protocol<v1, tl::codec::fp32>>(a, fd));
  ::close(fd);
  ::close(ls);
  return rc;
}
