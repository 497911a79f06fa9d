// The heterogeneous FedAvg fleet of scripts/mcu_fleet.sh: host clients and Cortex-M4F
// devices (tests/mcu/serial_device.cpp under QEMU) in the same rounds, the devices joined
// through a serial gateway (transport/serial_gateway.hpp). Every client — host or device —
// runs the same computation, tests/mcu/serial_task.hpp's local round (the last-layer head
// of nn/device_finetune.hpp); the server and the host clients are the FedAvg roles run by
// their deployment drivers (workflow/federated_deploy.hpp), so the in-process run of the
// same fleet is the simulation the deployment is compared with, byte for byte.
//
//   fleet_node inproc      --clients N [common]                    the simulation (roles over in_process)
//   fleet_node mqtt-server --port P --run NAME --clients N [common] [--round-timeout-ms T]
//   fleet_node mqtt-client --port P --run NAME --clients N --id K [common]
//   fleet_node gateway     --port P --run NAME --clients N --devices K1,K2,… --port-dir DIR
//                          [--fault-per-mille M] [--accept-timeout-ms T] [common]
//   mpirun -np N+1 fleet_node mpi --clients N --devices K1,K2,… --port-dir DIR [--fault-per-mille M] [common]
//                          rank 0 the server, ranks K1, K2, … gateways of one device each, the others host clients
//
// common: --rounds R --seed S --out FILE (the server writes the final model, raw fp32 LE)
//         --update fp32|fp16|int8   the update encoding of the server and the host clients (the
//                                   devices are told theirs on their command line)
//
// The gateway listens on 127.0.0.1 for each device endpoint K (port 0: the system picks;
// written to DIR/port-K), accepts QEMU's `-serial tcp:` connection of the firmware
// started with `arg=K-1` (its client id), then acts as MQTT endpoint K for it, on its own
// thread. Bytes on each serial line are dropped, flipped or followed by garbage with
// probability M / 1000 in both directions (tests/transport/lossy_port.hpp). MQTT
// endpoints authenticate their frames when TL_RUN_KEY or TL_RUN_KEY_FILE is set.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "../mcu/serial_task.hpp"
#include "lossy_port.hpp"
#include "qemu_line.hpp"
#include "tinylarge/aggregate/policy.hpp"
#include "tinylarge/io/file.hpp"
#include "tinylarge/transport/in_process.hpp"
#include "tinylarge/workflow/federated_deploy.hpp"
#include "tinylarge/transport/serial_gateway.hpp"
#if defined(TINYLARGE_WITH_MQTT) || defined(TINYLARGE_WITH_MPI)
#include "tinylarge/transport/auth.hpp"
#endif
#if defined(TINYLARGE_WITH_MQTT)
#include "tinylarge/transport/mqtt.hpp"
#endif
#if defined(TINYLARGE_WITH_MPI)
#include "tinylarge/transport/mpi.hpp"
#endif

namespace {

namespace tl = tinylarge;
namespace wf = tl::workflow;

struct args {
  std::string mode, run = "fleet", out, port_dir, update = "fp32";
  std::uint32_t clients = 4, rounds = 4, id = 0, per_mille = 0;
  std::uint64_t seed = 1;
  int port = 1883;
  long round_timeout_ms = 20000, accept_timeout_ms = 20000;
  std::vector<std::uint32_t> devices;
};

[[noreturn]] void usage(const std::string& msg) {
  std::fprintf(stderr, "fleet_node: %s (see the comment at the top of fleet_node.cpp)\n", msg.c_str());
  std::exit(2);
}

args parse(int argc, char** argv) {
  args a;
  if (argc < 2) usage("missing mode");
  a.mode = argv[1];
  for (int i = 2; i < argc; i += 2) {
    const std::string k = argv[i];
    if (i + 1 >= argc) usage("missing value after " + k);
    const std::string v = argv[i + 1];
    const auto u = [&] { return static_cast<std::uint32_t>(std::stoul(v)); };
    if (k == "--clients") a.clients = u();
    else if (k == "--rounds") a.rounds = u();
    else if (k == "--id") a.id = u();
    else if (k == "--seed") a.seed = std::stoull(v);
    else if (k == "--out") a.out = v;
    else if (k == "--run") a.run = v;
    else if (k == "--port") a.port = std::stoi(v);
    else if (k == "--port-dir") a.port_dir = v;
    else if (k == "--update") a.update = v;
    else if (k == "--fault-per-mille") a.per_mille = u();
    else if (k == "--round-timeout-ms") a.round_timeout_ms = std::stol(v);
    else if (k == "--accept-timeout-ms") a.accept_timeout_ms = std::stol(v);
    else if (k == "--devices") {
      for (std::size_t p = 0; p < v.size();) {
        const std::size_t q = v.find(',', p);
        a.devices.push_back(static_cast<std::uint32_t>(std::stoul(v.substr(p, q - p))));
        p = q == std::string::npos ? v.size() : q + 1;
      }
    } else usage("unknown option " + k);
  }
  if (a.clients == 0 || a.rounds == 0) usage("--clients and --rounds must be > 0");
  if (a.per_mille > 100) usage("--fault-per-mille must be 0..100");
  if (a.update != "fp32" && a.update != "fp16" && a.update != "int8") usage("--update must be fp32, fp16 or int8");
  for (const auto k : a.devices)
    if (k == 0 || k > a.clients) usage("--devices: endpoints are 1..clients");
  return a;
}

/// Calls `f(U{})` with the update encoding named by --update.
template <class F>
auto with_update(const args& a, F&& f) {
  if (a.update == "fp16") return f(tl::fp16_update{});
  if (a.update == "int8") return f(tl::int8_update{});
  return f(tl::fp32_update{});
}

template <class U, class Transport>
int serve(Transport& net, const args& a) {
  wf::fedavg_server<tl::fedavg, U> server(tl::fedavg{}, serial_task::params, a.seed);
  std::vector<float> w0(serial_task::params);
  serial_task::initial_model(a.seed, w0.data());
  server.set_global(w0);
  wf::federated_server_options opt;
  opt.rounds = a.rounds;
  opt.min_clients = a.clients;  // a round without every client's update fails the run
  opt.round_timeout = std::chrono::milliseconds{a.round_timeout_ms};
  wf::federated_server_report rep;
  const tl::status s = wf::run_federated_server(net, server, opt, &rep);
  if (!s.ok()) {
    std::fprintf(stderr, "%s server: %s (%s)\n", Transport::name(), s.message, tl::to_string(s.code));
    return 1;
  }
  const std::span<const float> w = server.global();
  if (!a.out.empty()) tl::io::write_file(a.out, {reinterpret_cast<const std::uint8_t*>(w.data()), w.size() * 4});
  std::string per_round;
  for (const auto n : rep.updates_per_round) per_round += std::to_string(n) + " ";
  std::printf("%s server (%s updates): rounds %u..%u, updates per round [ %s], dropped frames %llu, rejected frames "
              "%llu, unauthenticated %llu, spoofed %llu, crc32(final) = %08x\n",
              Transport::name(), U::name(), rep.first_round, rep.rounds_completed, per_round.c_str(),
              static_cast<unsigned long long>(rep.dropped_frames), static_cast<unsigned long long>(rep.rejected_frames),
              static_cast<unsigned long long>(net.stats().unauthenticated),
              static_cast<unsigned long long>(net.stats().spoofed), tl::crc32(w.data(), w.size() * 4));
  return 0;
}

template <class U, class Transport>
tl::status client(Transport& net) {
  serial_task::host_computation comp;
  wf::fedavg_client<serial_task::host_computation, U> role(comp, serial_task::int8_chunk);
  wf::federated_client_options opt;
  opt.idle_timeout = std::chrono::milliseconds{60000};
  return wf::run_federated_client(net, role, opt);
}

int run_inproc(const args& a) {
  tl::in_process::hub net(a.clients + 1);
  std::vector<std::thread> threads;
  for (std::uint32_t k = 1; k <= a.clients; ++k) {
    threads.emplace_back([&, k] {
      tl::in_process ep(net, k);
      (void)with_update(a, [&]<class U>(U) { return client<U>(ep); });
    });
  }
  tl::in_process server(net, 0);
  const int rc = with_update(a, [&]<class U>(U) { return serve<U>(server, a); });
  for (auto& t : threads) t.join();
  return rc;
}

constexpr std::size_t max_frame = tl::wire::frame_size(serial_task::params * 4);

/// One device: accept its line on `listener`, then relay between it and fleet endpoint k
/// (`net`) until the server's stop reached it.
template <class Fleet>
int serve_device(const args& a, std::uint32_t k, int listener, Fleet& net) {
  const int fd = tl_test::accept_within(listener, a.accept_timeout_ms, ("gateway " + std::to_string(k)).c_str());
  if (fd < 0) return 1;
  // [gateway]
  // The device's line (here: QEMU's UART as a TCP socket, damaged on purpose), and the
  // fleet endpoint `net` of client k (an mqtt_transport(k, …) or rank k's mpi_transport).
  tl_test::lossy_port port{tl::serial::fd_port(fd), tl::rng(a.seed * 7919 + k), a.per_mille};
  tl::serial::steady_clock_ms clock;
  using gateway_t = tl::serial::serial_gateway<Fleet, tl_test::lossy_port, tl::serial::steady_clock_ms, max_frame>;
  auto gw = std::make_unique<gateway_t>(net, port, clock, tl::serial::link_config{100});
  const tl::status s = gw->run();  // until the server's stop reached the device
  // [gateway]
  const auto& g = gw->stats();
  const auto& l = gw->link_counters();
  std::printf("%s gateway %u: %s; to device %llu, to server %llu, refused from fleet %llu, from device %llu, too large "
              "%llu, device timeouts %llu; injected %llu dropped, %llu flipped, %llu garbage bytes; link: "
              "retransmissions %llu, duplicates %llu, corrupt %llu, oversized %llu; fleet: unauthenticated %llu\n",
              Fleet::name(), k, s.ok() ? "the device got the stop" : s.message, (unsigned long long)g.to_device,
              (unsigned long long)g.to_fleet, (unsigned long long)g.refused_from_fleet,
              (unsigned long long)g.refused_from_device, (unsigned long long)g.too_large,
              (unsigned long long)g.device_timeouts, (unsigned long long)port.dropped,
              (unsigned long long)port.flipped, (unsigned long long)port.garbage,
              (unsigned long long)l.retransmissions, (unsigned long long)l.duplicates, (unsigned long long)l.corrupt,
              (unsigned long long)l.oversized, (unsigned long long)net.stats().unauthenticated);
  std::fflush(stdout);
  // Stay on the line a little: the device lingers to re-ACK a stop whose ACK was lost.
  std::this_thread::sleep_for(std::chrono::milliseconds{200});
  ::close(fd);
  bool ok = s.ok();
  if (a.per_mille > 0 && port.dropped + port.flipped + port.garbage == 0) {
    std::fprintf(stderr, "gateway %u: no fault was injected: the test would prove nothing\n", k);
    ok = false;
  }
  return ok ? 0 : 1;
}

#if defined(TINYLARGE_WITH_MQTT)
tl::mqtt_options mqtt_of(const args& a) {
  tl::mqtt_options o;
  o.port = a.port;
  o.run = a.run;
  o.key = tl::frame_key::from_environment();
  o.limits.max_payload_bytes = static_cast<std::uint32_t>(4 * serial_task::params);
  return o;
}

int run_gateway(const args& a) {
  if (a.devices.empty() || a.port_dir.empty()) usage("gateway needs --devices and --port-dir");
  std::vector<int> listeners;
  for (const auto k : a.devices) {
    const int ls = tl_test::listen_loopback(a.port_dir + "/port-" + std::to_string(k));
    if (ls < 0) return std::perror("gateway: listen on 127.0.0.1"), 1;
    listeners.push_back(ls);
  }
  std::printf("mqtt gateway: frames %s\n", tl::frame_key::from_environment() ? "authenticated (run key)" : "NOT authenticated");
  std::vector<int> rc(a.devices.size(), 1);
  std::vector<std::thread> threads;
  for (std::size_t i = 0; i < a.devices.size(); ++i)
    threads.emplace_back([&, i] {
      tl::mqtt_transport net(a.devices[i], a.clients + 1, mqtt_of(a));
      const tl::status s = net.connect();
      if (!s.ok()) {
        std::fprintf(stderr, "gateway %u: %s\n", a.devices[i], s.message);
        return;
      }
      rc[i] = serve_device(a, a.devices[i], listeners[i], net);
    });
  for (auto& t : threads) t.join();
  for (const int ls : listeners) ::close(ls);
  for (const int r : rc)
    if (r != 0) return 1;
  return 0;
}
#endif

#if defined(TINYLARGE_WITH_MPI)
/// The fleet over MPI: rank 0 the server, the ranks of --devices gateways (one device each),
/// the others host clients.
int run_mpi(int argc, char** argv, const args& a) {
  MPI_Init(&argc, &argv);
  int rc = 0;
  {
    tl::wire::wire_limits limits;
    limits.max_payload_bytes = static_cast<std::uint32_t>(4 * serial_task::params);
    tl::mpi_transport net(MPI_COMM_WORLD, limits, tl::frame_key::from_environment());
    const tl::endpoint_id id = net.id();
    if (net.endpoints() != a.clients + 1) usage("mpi: run with --clients + 1 ranks");
    const bool device = std::find(a.devices.begin(), a.devices.end(), id) != a.devices.end();
    if (id == 0) {
      std::printf("mpi: frames %s\n", net.authenticated() ? "authenticated (run key)" : "NOT authenticated");
      rc = with_update(a, [&]<class U>(U) { return serve<U>(net, a); });
    } else if (device) {
      if (a.port_dir.empty()) usage("mpi: --devices needs --port-dir");
      const int ls = tl_test::listen_loopback(a.port_dir + "/port-" + std::to_string(id));
      if (ls < 0) {
        std::perror("gateway: listen on 127.0.0.1");
        rc = 1;
      } else {
        rc = serve_device(a, id, ls, net);
        ::close(ls);
      }
    } else {
      const tl::status c = with_update(a, [&]<class U>(U) { return client<U>(net); });
      std::printf("mpi client %u: %s\n", id, c.ok() ? "stopped by the server" : c.message);
      rc = c.ok() ? 0 : 1;
    }
  }
  MPI_Finalize();
  return rc;
}
#endif

}  // namespace

int main(int argc, char** argv) {
  const args a = parse(argc, argv);
  if (a.mode == "inproc") return run_inproc(a);
#if defined(TINYLARGE_WITH_MPI)
  if (a.mode == "mpi") return run_mpi(argc, argv, a);
#endif
#if defined(TINYLARGE_WITH_MQTT)
  if (a.mode == "gateway") return run_gateway(a);
  if (a.mode == "mqtt-server" || a.mode == "mqtt-client") {
    const tl::endpoint_id id = a.mode == "mqtt-server" ? 0 : a.id;
    if (id > a.clients) usage("--id must be 1..clients");
    tl::mqtt_transport net(id, a.clients + 1, mqtt_of(a));
    const tl::status s = net.connect();
    if (!s.ok()) {
      std::fprintf(stderr, "mqtt endpoint %u: %s\n", id, s.message);
      return 1;
    }
    if (id == 0) {
      std::printf("mqtt: frames %s\n", mqtt_of(a).key ? "authenticated (run key)" : "NOT authenticated");
      return with_update(a, [&]<class U>(U) { return serve<U>(net, a); });
    }
    const tl::status c = with_update(a, [&]<class U>(U) { return client<U>(net); });
    std::printf("mqtt client %u: %s\n", id, c.ok() ? "stopped by the server" : c.message);
    return c.ok() ? 0 : 1;
  }
#endif
  usage("mode '" + a.mode + "' is not built in (inproc; gateway and mqtt-* with TINYLARGE_WITH_MQTT; mpi with TINYLARGE_WITH_MPI)");
}
