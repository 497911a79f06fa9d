// Transport benchmark (issue 8): messages/s and MB/s per transport on
// loopback for 1 KiB, 64 KiB and 4 MiB payloads, and the wire format's
// encode + decode cost against a raw memcpy of the payload.
//
//   bench_transport wire                       encode+decode vs memcpy
//   bench_transport inproc                     in_process, two threads
//   mpirun -np 2 bench_transport mpi           rank 1 → rank 0 (needs TINYLARGE_WITH_MPI)
//   bench_transport mqtt --port P              client 1 → server through a broker on
//                                              127.0.0.1:P (needs TINYLARGE_WITH_MQTT)
//
// One-way streams: the sender sends M frames of one size, the receiver
// receives (and validates) all M; time is measured on the receiver from the
// first frame to the last. MQTT sends are QoS 1 and each waits for its PUBACK,
// so its rate is bounded by the broker's round trip, not by bandwidth.
// The in_process sender reuses one buffer: legal here because the receiver
// copies each payload before the content could matter (it is never modified).
// Output: one line per size, `transport size msgs/s MB/s` (MB = 10^6 bytes of payload).
#include <chrono>
#include <ctime>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "tinylarge/core/crc32.hpp"
#include "tinylarge/transport/in_process.hpp"
#include "tinylarge/transport/wire.hpp"
#if defined(TINYLARGE_WITH_MPI)
#include "tinylarge/transport/mpi.hpp"
#endif
#if defined(TINYLARGE_WITH_MQTT)
#include "tinylarge/transport/mqtt.hpp"
#endif

namespace {

using clock_type = std::chrono::steady_clock;
using namespace std::chrono_literals;
namespace wire = tl::wire;

constexpr std::size_t sizes[] = {1024, 64 * 1024, 4 * 1024 * 1024};

std::size_t messages_for(std::size_t bytes, double scale) {
  const double target = 256.0 * 1024 * 1024 * scale;  // bytes per measurement
  const auto n = static_cast<std::size_t>(target / static_cast<double>(bytes));
  return std::max<std::size_t>(20, std::min<std::size_t>(n, static_cast<std::size_t>(20000 * scale) + 20));
}

double seconds_since(clock_type::time_point t0) {
  return std::chrono::duration<double>(clock_type::now() - t0).count();
}

void report(const char* transport, std::size_t bytes, std::size_t n, double s) {
  std::printf("%-8s %8zu B  %10.0f msgs/s  %9.1f MB/s  (%zu messages, %.3f s)\n", transport, bytes,
              static_cast<double>(n) / s, static_cast<double>(n) * static_cast<double>(bytes) / s / 1e6, n, s);
  std::fflush(stdout);
}

wire::message_header update_header(std::size_t bytes) {
  wire::message_header h;
  h.type = wire::message_type::update;
  h.dtype = wire::wire_dtype::bytes;
  h.count = static_cast<std::uint32_t>(bytes);
  return h;
}

std::vector<std::uint8_t> payload_of(std::size_t bytes) {
  std::vector<std::uint8_t> p(bytes);
  for (std::size_t i = 0; i < bytes; ++i) p[i] = static_cast<std::uint8_t>(i * 131 + 7);
  return p;
}

// CPU time of this thread: the machines that run this are shared, and the
// wire-format cost is pure computation.
double thread_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

int bench_wire() {
  std::printf("wire format: encode + decode (two CRC-32 passes, header checks) vs memcpy of the payload "
              "(thread CPU time)\n");
  for (const std::size_t bytes : sizes) {
    const auto payload = payload_of(bytes);
    std::vector<std::uint8_t> frame(wire::frame_size(bytes)), copy(bytes);
    const std::size_t n = messages_for(bytes, 0.25);
    double t0 = thread_seconds();
    for (std::size_t i = 0; i < n; ++i) {
      std::memcpy(copy.data(), payload.data(), bytes);
      asm volatile("" ::"r"(copy.data()) : "memory");
    }
    const double t_copy = (thread_seconds() - t0);
    std::size_t ok = 0, written = 0;
    t0 = thread_seconds();
    for (std::size_t i = 0; i < n; ++i) {
      if (!wire::encode(update_header(bytes), payload, frame, written).ok()) return 1;
      wire::message_view m;
      ok += wire::decode(frame, m).ok() ? 1 : 0;
      asm volatile("" ::"r"(frame.data()) : "memory");
    }
    const double t_wire = (thread_seconds() - t0);
    if (ok != n) return 1;
    t0 = thread_seconds();
    std::uint32_t c = 0;
    for (std::size_t i = 0; i < n; ++i) c ^= wire::detail::wire_crc32(payload.data(), bytes);
    const double t_crc = (thread_seconds() - t0);
    t0 = thread_seconds();
    for (std::size_t i = 0; i < n; ++i) c ^= tl::crc32(payload.data(), bytes);
    const double t_crc1 = (thread_seconds() - t0);
    const auto rate = [&](double t) { return static_cast<double>(n * bytes) / t / 1e9; };
    std::printf("%8zu B  memcpy %6.2f GB/s | encode+decode %5.2f GB/s = %5.1fx memcpy time | CRC-32 slicing-by-8 %5.2f GB/s, "
                "byte-wise %5.2f GB/s%s\n",
                bytes, rate(t_copy), rate(t_wire), t_wire / t_copy, rate(t_crc), rate(t_crc1), c == 1 ? " " : "");
  }
  return 0;
}

// The receiver copies every payload out (as the federated server does with
// wire::read_fp32), so that in_process, which moves no bytes, is measured
// doing the same work as the others.
template <class Transport>
int receive_stream(Transport& net, const char* name, std::size_t bytes, std::size_t n) {
  wire::message_view m;
  std::vector<std::uint8_t> sink(bytes);
  if (!net.recv(m, 30s).ok()) return 1;  // first frame starts the clock
  const auto t0 = clock_type::now();
  for (std::size_t i = 1; i < n; ++i) {
    const tl::status s = net.recv(m, 30s);
    if (!s.ok()) {
      std::fprintf(stderr, "%s receive: %s\n", name, s.message);
      return 1;
    }
    if (m.payload.size() != bytes) return 1;
    std::memcpy(sink.data(), m.payload.data(), bytes);
    asm volatile("" ::"r"(sink.data()) : "memory");
  }
  report(name, bytes, n - 1, seconds_since(t0));
  return 0;
}

// `payload` must outlive the receiver's use of it (in_process hands over the span).
template <class Transport>
int send_stream(Transport& net, const std::vector<std::uint8_t>& payload, std::size_t n) {
  const std::size_t bytes = payload.size();
  for (std::size_t i = 0; i < n; ++i) {
    const tl::status s = net.send(0, update_header(bytes), payload, 30s);
    if (!s.ok()) {
      std::fprintf(stderr, "send: %s\n", s.message);
      return 1;
    }
  }
  return 0;
}

int bench_inproc() {
  for (const std::size_t bytes : sizes) {
    const std::size_t n = messages_for(bytes, 1.0);
    tl::in_process::hub hub(2);
    tl::in_process server(hub, 0), client(hub, 1);
    const auto payload = payload_of(bytes);
    std::thread t([&] { (void)send_stream(client, payload, n); });
    const int rc = receive_stream(server, "inproc", bytes, n);
    t.join();
    if (rc != 0) return rc;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "wire";
  if (mode == "wire") return bench_wire();
  if (mode == "inproc") return bench_inproc();
#if defined(TINYLARGE_WITH_MPI)
  if (mode == "mpi") {
    MPI_Init(&argc, &argv);
    int rc = 0;
    {
      tl::wire::wire_limits lim;
      tl::mpi_transport net(MPI_COMM_WORLD, lim);
      for (const std::size_t bytes : sizes) {
        const std::size_t n = messages_for(bytes, 1.0);
        if (net.id() == 0) rc |= receive_stream(net, "mpi", bytes, n);
        if (net.id() == 1) rc |= send_stream(net, payload_of(bytes), n);
        MPI_Barrier(MPI_COMM_WORLD);
      }
    }
    MPI_Finalize();
    return rc;
  }
#endif
#if defined(TINYLARGE_WITH_MQTT)
  if (mode == "mqtt") {
    int port = 1883;
    for (int i = 2; i + 1 < argc; i += 2)
      if (std::string(argv[i]) == "--port") port = std::atoi(argv[i + 1]);
    tl::mqtt_options o;
    o.port = port;
    o.run = "bench";
    tl::mqtt_transport server(0, 2, o), client(1, 2, o);
    if (!server.connect().ok() || !client.connect().ok()) {
      std::fprintf(stderr, "mqtt: cannot connect to 127.0.0.1:%d\n", port);
      return 1;
    }
    for (const std::size_t bytes : sizes) {
      const std::size_t n = std::min<std::size_t>(messages_for(bytes, 0.25), 2000);
      const auto payload = payload_of(bytes);
      std::thread t([&] { (void)send_stream(client, payload, n); });
      const int rc = receive_stream(server, "mqtt", bytes, n);
      t.join();
      if (rc != 0) return rc;
    }
    return 0;
  }
#endif
  std::fprintf(stderr, "bench_transport: mode '%s' unknown or not built (wire, inproc, mpi, mqtt)\n", mode.c_str());
  return 2;
}
