// The federated-averaging demo over flat vectors, one program for every
// transport (so every run executes the same machine code and the results can
// be compared bit for bit). scripts/transport_test.sh drives it. The server and
// client are the FedAvg family's roles (workflow/federated_roles.hpp) run by
// their deployment drivers (workflow/federated_deploy.hpp); the client's
// computation is a synthetic least-squares step (synthetic_task.hpp).
//
//   transport_fedavg_node inproc      --clients N [common] [--drop-client K --drop-round R]
//   mpirun -np N+1 transport_fedavg_node mpi [common]
//   transport_fedavg_node mqtt-server --port P --run NAME --clients N [common] [--checkpoint FILE]
//                                     [--crash-round R --crash-after U]
//   transport_fedavg_node mqtt-client --port P --run NAME --clients N --id K [common] [--die-round R]
//
// common: --rounds R --dim D --seed S --policy fedavg|fedavgm --out FILE
//         --min-clients M --round-timeout-ms T
//         --max-examples N --max-norm C      the server's report_bounds (count cap, update-norm clip)
//         --hostile K        client K is hostile: before each real update it sends an update with a
//                            NaN, one with an Inf and one with example count 2^63 (all refused; its
//                            real update still counts), and under MPI a stop and a model of round r+1
//                            with sender 0 to rank 1 over raw MPI (refused: not from rank 0)
//         --claim-count N    client K (of --hostile) reports N examples in its real update
//         --flt-max          client K (of --hostile) sends FLT_MAX in every coordinate of its real update
//         --slow-ms T        every client sleeps T ms in its local step (keeps a run going while it is attacked)
// mqtt-*: --user U --password P --ca FILE   broker login and TLS (the CA of the broker's certificate)
//
// MPI and MQTT endpoints authenticate their frames when TL_RUN_KEY or
// TL_RUN_KEY_FILE is set (transport/auth.hpp), and print whether they do.
//
// The server writes the final vector (raw little-endian fp32) to --out and
// prints one summary line. --crash-round/--crash-after make the server
// SIGKILL itself after U updates of round R (mid-round, after the checkpoint
// of round R-1); --die-round makes a client SIGKILL itself when the model of
// round R arrives (before it answers).
#include <chrono>
#include <cmath>
#include <csignal>
#include <limits>
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
#include "tinylarge/transport/in_process.hpp"
#include "tinylarge/workflow/federated_deploy.hpp"
#if defined(TINYLARGE_WITH_MPI) || defined(TINYLARGE_WITH_MQTT)
#include "tinylarge/transport/auth.hpp"
#endif
#if defined(TINYLARGE_WITH_MPI)
#include "tinylarge/transport/mpi.hpp"
#endif
#if defined(TINYLARGE_WITH_MQTT)
#include "tinylarge/transport/mqtt.hpp"
#endif
#include "synthetic_task.hpp"

namespace {

namespace wf = tl::workflow;

struct args {
  std::string mode;
  std::uint32_t clients = 4, rounds = 5, id = 0;
  std::size_t dim = 64, min_clients = 1;
  std::uint64_t seed = 1;
  std::string policy = "fedavg", out, run = "demo", checkpoint;
  int port = 1883;
  std::uint32_t drop_client = 0, drop_round = 0, crash_round = 0, crash_after = 0, die_round = 0;
  long round_timeout_ms = 10000;
  std::int64_t max_examples = 0x7FFFFFFF;
  double max_norm = std::numeric_limits<double>::infinity();
  std::uint32_t hostile = 0;
  std::uint64_t claim_count = 0;
  bool flt_max = false;
  long slow_ms = 0;
  std::string user, password, ca;
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
    if (k == "--flt-max") {
      a.flt_max = true;
      continue;
    }
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
    else if (k == "--max-examples") a.max_examples = std::stoll(v);
    else if (k == "--max-norm") a.max_norm = std::stod(v);
    else if (k == "--hostile") a.hostile = u();
    else if (k == "--claim-count") a.claim_count = std::stoull(v);
    else if (k == "--slow-ms") a.slow_ms = std::stol(v);
    else if (k == "--user") a.user = v;
    else if (k == "--password") a.password = v;
    else if (k == "--ca") a.ca = v;
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

void write_result(const args& a, const std::vector<float>& w, const wf::federated_server_report& rep,
                  const tl::transport_stats& st, const char* transport) {
  if (!a.out.empty())
    tl::io::write_file(a.out, {reinterpret_cast<const std::uint8_t*>(w.data()), w.size() * sizeof(float)});
  std::string per_round;
  for (const auto n : rep.updates_per_round) per_round += std::to_string(n) + " ";
  std::printf("%s server: rounds %u..%u, updates per round [ %s], dropped frames %llu, rejected frames %llu, "
              "clipped counts %llu, clipped norms %llu, wire rejects %llu, unauthenticated %llu, spoofed %llu, "
              "crc32(final) = %08x\n",
              transport, rep.first_round, rep.rounds_completed, per_round.c_str(),
              static_cast<unsigned long long>(rep.dropped_frames), static_cast<unsigned long long>(rep.rejected_frames),
              static_cast<unsigned long long>(rep.clipped_counts), static_cast<unsigned long long>(rep.clipped_norms),
              static_cast<unsigned long long>(st.wire.total_rejected()),
              static_cast<unsigned long long>(st.unauthenticated), static_cast<unsigned long long>(st.spoofed),
              tl::crc32(w.data(), w.size() * sizeof(float)));
}

/// A client pretending to be the server towards client 1 (MPI only: raw MPI
/// on the transport's communicator, a frame MAC'd with the run key but
/// stamped sender 0): a stop and a model of round r + 1. Rank binding refuses both.
// Plus an update without a MAC to the server (refused when the run has a key).
template <class Transport>
void spoof_server(Transport&, std::uint32_t, std::size_t) {}
#if defined(TINYLARGE_WITH_MPI)
void spoof_server(tl::mpi_transport& net, std::uint32_t r, std::size_t d) {
  if (net.id() == 1) return;
  const auto key = tl::frame_key::from_environment();
  std::vector<std::uint8_t> out;
  std::size_t w = 0;
  tl::wire::message_header stop;
  stop.type = tl::wire::message_type::control;
  stop.aux = static_cast<std::uint64_t>(tl::wire::control_command::stop);
  stop.sender = 0;
  if (tl::seal(key, stop, {}, out, w, {}).ok())
    MPI_Send(out.data(), static_cast<int>(w), MPI_BYTE, 1, tl::mpi_transport::frame_tag, net.communicator());
  std::vector<float> poison(d, 1000.0f);
  tl::wire::message_header model;
  model.type = tl::wire::message_type::model;
  model.dtype = tl::wire::wire_dtype::fp32;
  model.round = r + 1;
  model.count = static_cast<std::uint32_t>(d);
  model.sender = 0;
  if (tl::seal(key, model, tl::as_bytes_le(std::span<const float>(poison)), out, w, {}).ok())
    MPI_Send(out.data(), static_cast<int>(w), MPI_BYTE, 1, tl::mpi_transport::frame_tag, net.communicator());
  // And an update of this round without a MAC, to the server: refused as unauthenticated when the run has a key.
  tl::wire::message_header u = model;
  u.type = tl::wire::message_type::update;
  u.round = r;
  u.aux = 1;
  u.sender = net.id();
  if (tl::seal(std::nullopt, u, tl::as_bytes_le(std::span<const float>(poison)), out, w, {}).ok())
    MPI_Send(out.data(), static_cast<int>(w), MPI_BYTE, 0, tl::mpi_transport::frame_tag, net.communicator());
}
#endif

/// What a hostile client (--hostile K) sends besides its real update. The
/// payloads live as long as the client (in_process hands spans over).
struct hostile_frames {
  std::vector<float> nan_update, inf_update, good_values;
  /// Before the real update of `round`: three updates the server must refuse
  /// without excluding this client.
  template <class Transport>
  void before_update(Transport& net, std::uint32_t round, std::span<const float> real) {
    nan_update.assign(real.begin(), real.end());
    inf_update.assign(real.begin(), real.end());
    good_values.assign(real.begin(), real.end());
    nan_update[0] = std::numeric_limits<float>::quiet_NaN();
    inf_update[inf_update.size() / 2] = -std::numeric_limits<float>::infinity();
    tl::wire::message_header h;
    h.type = tl::wire::message_type::update;
    h.dtype = tl::wire::wire_dtype::fp32;
    h.round = round;
    h.count = static_cast<std::uint32_t>(real.size());
    h.aux = 24;
    (void)net.send(0, h, tl::as_bytes_le(std::span<const float>(nan_update)), std::chrono::milliseconds{5000});
    (void)net.send(0, h, tl::as_bytes_le(std::span<const float>(inf_update)), std::chrono::milliseconds{5000});
    h.aux = std::uint64_t{1} << 63;  // 2^63: negative as an int64
    (void)net.send(0, h, tl::as_bytes_le(std::span<const float>(good_values)), std::chrono::milliseconds{5000});
  }
};

template <class Transport, class Policy>
int serve(Transport& net, const args& a, const Policy& policy) {
  wf::fedavg_server<Policy> server(policy, a.dim, a.seed);
  server.set_global(tl_test::initial_global(a.dim, a.seed));
  wf::federated_server_options opt;
  opt.rounds = a.rounds;
  opt.min_clients = a.min_clients;
  opt.round_timeout = std::chrono::milliseconds{a.round_timeout_ms};
  opt.checkpoint_path = a.checkpoint;
  opt.bounds.max_examples = a.max_examples;
  opt.bounds.max_update_norm = a.max_norm;
  if (a.crash_round != 0) {
    opt.on_update = [&](std::uint32_t r, std::size_t n) {
      if (r == a.crash_round && n >= a.crash_after) {
        std::printf("server: SIGKILL to myself in round %u after %zu updates\n", r, n);
        std::fflush(stdout);
        ::kill(::getpid(), SIGKILL);
      }
    };
  }
  wf::federated_server_report rep;
  const tl::status s = wf::run_federated_server(net, server, opt, &rep);
  if (!s.ok()) {
    std::fprintf(stderr, "%s server: %s (%s)\n", Transport::name(), s.message, tl::to_string(s.code));
    return 1;
  }
  const std::vector<float> global(server.global().begin(), server.global().end());
  write_result(a, global, rep, net.stats(), Transport::name());
  return 0;
}

template <class Transport>
int serve_with_policy(Transport& net, const args& a) {
  if (a.policy == "fedavgm") return serve(net, a, tl::fedavgm{1.0f, 0.9f});
  return serve(net, a, tl::fedavg{});
}

/// The client computation of this demo: the least-squares step of client
/// endpoint k = id + 1; a hostile client (--hostile k) first sends its bad
/// frames, and may claim a huge count or send FLT_MAX values.
template <class Transport>
struct demo_computation {
  Transport* net;
  const args* a;
  tl_test::least_squares_task task;
  hostile_frames bad;
  std::vector<float> out;

  wf::client_output compute(std::uint64_t id, const wf::model_message& m) {
    const auto k = static_cast<tl::endpoint_id>(id + 1);
    out.resize(m.global.size());
    std::int64_t n = task(k, m.task_seed, m.global, out);
    if (a->slow_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds{a->slow_ms});
    if (k == a->hostile) {
      bad.before_update(*net, m.round, out);
      spoof_server(*net, m.round, out.size());
      if (a->flt_max)
        for (float& v : out) v = std::numeric_limits<float>::max();
      if (a->claim_count != 0) n = static_cast<std::int64_t>(a->claim_count);
    }
    return {std::span<float>(out), n, {}};
  }
};

template <class Transport>
int client(Transport& net, const args& a) {
  const tl::endpoint_id k = net.id();
  wf::federated_client_options opt;
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
  demo_computation<Transport> comp{&net, &a, task_of(a), {}, {}};
  wf::fedavg_client<demo_computation<Transport>> role(comp);
  const tl::status s = wf::run_federated_client(net, role, opt);
  std::printf("%s client %u: %s; spoofed %llu, unauthenticated %llu, wire rejects %llu\n", Transport::name(), k,
              s.ok() ? "stopped by the server" : s.message, static_cast<unsigned long long>(net.stats().spoofed),
              static_cast<unsigned long long>(net.stats().unauthenticated),
              static_cast<unsigned long long>(net.stats().wire.total_rejected()));
  return s.ok() ? 0 : 1;
}

int run_inproc(const args& a) {
  tl::in_process::hub net(a.clients + 1);
  std::vector<std::thread> threads;
  for (std::uint32_t k = 1; k <= a.clients; ++k) {
    threads.emplace_back([&, k] {
      tl::in_process ep(net, k);
      wf::federated_client_options opt;
      opt.idle_timeout = std::chrono::milliseconds{30000};
      // A dropped client leaves the run at the model of drop_round, as a killed process would.
      if (k == a.drop_client) opt.on_model = [&](std::uint32_t r) { return r < a.drop_round; };
      demo_computation<tl::in_process> comp{&ep, &a, task_of(a), {}, {}};
      wf::fedavg_client<demo_computation<tl::in_process>> role(comp);
      (void)wf::run_federated_client(ep, role, opt);
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
      tl::mpi_transport net(MPI_COMM_WORLD, {}, tl::frame_key::from_environment());
      if (net.id() == 0) std::printf("mpi: frames %s\n", net.authenticated() ? "authenticated (run key)" : "NOT authenticated");
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
    o.key = tl::frame_key::from_environment();
    o.username = a.user;
    o.password = a.password;
    o.tls_ca_file = a.ca;
    // Frames of this demo are at most 4·dim bytes of payload: nothing larger is copied.
    o.limits.max_payload_bytes = static_cast<std::uint32_t>(4 * a.dim);
    const tl::endpoint_id id = a.mode == "mqtt-server" ? 0 : a.id;
    if (id == 0) std::printf("mqtt: frames %s\n", o.key ? "authenticated (run key)" : "NOT authenticated");
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
