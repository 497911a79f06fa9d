// The federated-averaging demo over flat vectors, one program for every
// transport (so every run executes the same machine code and the results can
// be compared bit for bit). scripts/transport_test.sh drives it.
//
//   transport_fedavg_node inproc      --clients N [common] [--drop-client K --drop-round R]
//   mpirun -np N+1 transport_fedavg_node mpi [common]
//   transport_fedavg_node mqtt-server --port P --run NAME --clients N [common] [--checkpoint FILE]
//                                     [--crash-round R --crash-after U]
//   transport_fedavg_node mqtt-client --port P --run NAME --clients N --id K [common] [--die-round R]
//
// common: --rounds R --dim D --seed S --policy fedavg|fedavgm --out FILE
//         --min-clients M --round-timeout-ms T
//
// The server writes the final vector (raw little-endian fp32) to --out and
// prints one summary line. --crash-round/--crash-after make the server
// SIGKILL itself after U updates of round R (mid-round, after the checkpoint
// of round R-1); --die-round makes a client SIGKILL itself when the model of
// round R arrives (before it answers).
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include <unistd.h>

#include "tinylarge/aggregate/aggregator.hpp"
#include "tinylarge/aggregate/policy.hpp"
#include "tinylarge/io/file.hpp"
#include "tinylarge/transport/federated.hpp"
#include "tinylarge/transport/in_process.hpp"
#if defined(TINYLARGE_WITH_MPI)
#include "tinylarge/transport/mpi.hpp"
#endif
#if defined(TINYLARGE_WITH_MQTT)
#include "tinylarge/transport/mqtt.hpp"
#endif
#include "synthetic_task.hpp"

namespace {

struct args {
  std::string mode;
  std::uint32_t clients = 4, rounds = 5, id = 0;
  std::size_t dim = 64, min_clients = 1;
  std::uint64_t seed = 1;
  std::string policy = "fedavg", out, run = "demo", checkpoint;
  int port = 1883;
  std::uint32_t drop_client = 0, drop_round = 0, crash_round = 0, crash_after = 0, die_round = 0;
  long round_timeout_ms = 10000;
};

[[noreturn]] void usage(const char* msg) {
  std::fprintf(stderr, "transport_fedavg_node: %s (see the comment at the top of fedavg_node.cpp)\n", msg);
  std::exit(2);
}

args parse(int argc, char** argv) {
  args a;
  if (argc < 2) usage("missing mode");
  a.mode = argv[1];
  for (int i = 2; i < argc; ++i) {
    const std::string k = argv[i];
    if (i + 1 >= argc) usage(("missing value after " + k).c_str());
    const std::string v = argv[++i];
    const auto u = [&] { return static_cast<std::uint32_t>(std::stoul(v)); };
    if (k == "--clients") a.clients = u();
    else if (k == "--rounds") a.rounds = u();
    else if (k == "--id") a.id = u();
    else if (k == "--dim") a.dim = std::stoul(v);
    else if (k == "--min-clients") a.min_clients = std::stoul(v);
    else if (k == "--seed") a.seed = std::stoull(v);
    else if (k == "--policy") a.policy = v;
    else if (k == "--out") a.out = v;
    else if (k == "--run") a.run = v;
    else if (k == "--checkpoint") a.checkpoint = v;
    else if (k == "--port") a.port = std::stoi(v);
    else if (k == "--drop-client") a.drop_client = u();
    else if (k == "--drop-round") a.drop_round = u();
    else if (k == "--crash-round") a.crash_round = u();
    else if (k == "--crash-after") a.crash_after = u();
    else if (k == "--die-round") a.die_round = u();
    else if (k == "--round-timeout-ms") a.round_timeout_ms = std::stol(v);
    else usage(("unknown option " + k).c_str());
  }
  if (a.policy != "fedavg" && a.policy != "fedavgm") usage("--policy must be fedavg or fedavgm");
  return a;
}

tl_test::least_squares_task task_of(const args& a) {
  tl_test::least_squares_task t;
  t.dimension = a.dim;
  t.data_seed = a.seed * 1000 + 17;
  return t;
}

void write_result(const args& a, const std::vector<float>& w, const tl::federated_server_report& rep,
                  const tl::transport_stats& st, const char* transport) {
  if (!a.out.empty())
    tl::io::write_file(a.out, {reinterpret_cast<const std::uint8_t*>(w.data()), w.size() * sizeof(float)});
  std::string per_round;
  for (const auto n : rep.updates_per_round) per_round += std::to_string(n) + " ";
  std::printf("%s server: rounds %u..%u, updates per round [ %s], dropped frames %llu, wire rejects %llu, "
              "crc32(final) = %08x\n",
              transport, rep.first_round, rep.rounds_completed, per_round.c_str(),
              static_cast<unsigned long long>(rep.dropped_frames),
              static_cast<unsigned long long>(st.wire.total_rejected()),
              tl::crc32(w.data(), w.size() * sizeof(float)));
}

template <class Transport, class Policy>
int serve(Transport& net, const args& a, const Policy& policy) {
  std::vector<float> global = tl_test::initial_global(a.dim, a.seed);
  tl::aggregator<Policy> agg(policy, a.dim);
  tl::rng gen(a.seed, 21);
  tl::federated_server_options opt;
  opt.rounds = a.rounds;
  opt.min_clients = a.min_clients;
  opt.round_timeout = std::chrono::milliseconds{a.round_timeout_ms};
  opt.checkpoint_path = a.checkpoint;
  if (a.crash_round != 0) {
    opt.on_update = [&](std::uint32_t r, std::size_t n) {
      if (r == a.crash_round && n >= a.crash_after) {
        std::printf("server: SIGKILL to myself in round %u after %zu updates\n", r, n);
        std::fflush(stdout);
        ::kill(::getpid(), SIGKILL);
      }
    };
  }
  tl::federated_server_report rep;
  const tl::status s = tl::run_federated_server(net, agg, global, gen, opt, &rep);
  if (!s.ok()) {
    std::fprintf(stderr, "%s server: %s (%s)\n", Transport::name(), s.message, tl::to_string(s.code));
    return 1;
  }
  write_result(a, global, rep, net.stats(), Transport::name());
  return 0;
}

template <class Transport>
int serve_with_policy(Transport& net, const args& a) {
  if (a.policy == "fedavgm") return serve(net, a, tl::fedavgm{1.0f, 0.9f});
  return serve(net, a, tl::fedavg{});
}

template <class Transport>
int client(Transport& net, const args& a) {
  const auto task = task_of(a);
  const tl::endpoint_id k = net.id();
  tl::federated_client_options opt;
  opt.idle_timeout = std::chrono::milliseconds{std::max<long>(30000, 3 * a.round_timeout_ms)};
  if (a.die_round != 0) {
    opt.on_model = [&](std::uint32_t r) {
      if (r == a.die_round) {
        std::printf("client %u: SIGKILL to myself at the model of round %u\n", k, r);
        std::fflush(stdout);
        ::kill(::getpid(), SIGKILL);
      }
      return true;
    };
  }
  const tl::status s = tl::run_federated_client(
      net, [&](std::uint32_t, std::uint64_t seed, std::span<const float> g, std::span<float> o) { return task(k, seed, g, o); },
      opt);
  if (!s.ok()) {
    std::fprintf(stderr, "%s client %u: %s\n", Transport::name(), k, s.message);
    return 1;
  }
  return 0;
}

int run_inproc(const args& a) {
  tl::in_process::hub net(a.clients + 1);
  const auto task = task_of(a);
  std::vector<std::thread> threads;
  for (std::uint32_t k = 1; k <= a.clients; ++k) {
    threads.emplace_back([&, k] {
      tl::in_process ep(net, k);
      tl::federated_client_options opt;
      opt.idle_timeout = std::chrono::milliseconds{30000};
      // A dropped client leaves the run at the model of drop_round, as a killed process would.
      if (k == a.drop_client) opt.on_model = [&](std::uint32_t r) { return r < a.drop_round; };
      (void)tl::run_federated_client(
          ep, [&](std::uint32_t, std::uint64_t seed, std::span<const float> g, std::span<float> o) { return task(k, seed, g, o); },
          opt);
    });
  }
  tl::in_process server(net, 0);
  const int rc = serve_with_policy(server, a);
  for (auto& t : threads) t.join();
  return rc;
}

}  // namespace

int main(int argc, char** argv) {
  const args a = parse(argc, argv);
  if (a.mode == "inproc") return run_inproc(a);
#if defined(TINYLARGE_WITH_MPI)
  if (a.mode == "mpi") {
    MPI_Init(&argc, &argv);
    int rc = 0;
    {
      tl::mpi_transport net;
      rc = net.id() == 0 ? serve_with_policy(net, a) : client(net, a);
    }
    MPI_Finalize();
    return rc;
  }
#endif
#if defined(TINYLARGE_WITH_MQTT)
  if (a.mode == "mqtt-server" || a.mode == "mqtt-client") {
    tl::mqtt_options o;
    o.port = a.port;
    o.run = a.run;
    const tl::endpoint_id id = a.mode == "mqtt-server" ? 0 : a.id;
    tl::mqtt_transport net(id, a.clients + 1, o);
    const tl::status s = net.connect();
    if (!s.ok()) {
      std::fprintf(stderr, "mqtt endpoint %u: %s\n", id, s.message);
      return 1;
    }
    return id == 0 ? serve_with_policy(net, a) : client(net, a);
  }
#endif
  usage(("mode '" + a.mode + "' is not built in (inproc; mpi with TINYLARGE_WITH_MPI; mqtt-* with TINYLARGE_WITH_MQTT)").c_str());
}
