// Tests of the transport layer: the wire format (round trips, every
// truncation and every single-bit flip rejected, each rejection reason
// reachable and counted, size limits checked before any allocation), the
// `transport_policy` concept, `in_process`, server checkpoints (FedAvg and
// split server), and the federated round over in_process threads against an
// independent reference.
//
// MPI and MQTT runs are end-to-end programs (tests/transport/), driven by
// scripts/transport_test.sh.

#include <catch2/catch.hpp>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <limits>
#include <new>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include <sys/socket.h>
#include <unistd.h>

#include "tinylarge/aggregate/aggregator.hpp"
#include "tinylarge/aggregate/policy.hpp"
#include "tinylarge/core/crc32.hpp"
#include "tinylarge/core/rng.hpp"
#include "tinylarge/io/file.hpp"
#include "tinylarge/nn/nn.hpp"
#include "tinylarge/transport/checkpoint.hpp"
#include "tinylarge/transport/in_process.hpp"
#include "tinylarge/transport/policy.hpp"
#include "tinylarge/transport/serial.hpp"
#include "tinylarge/transport/serial_gateway.hpp"
#include "tinylarge/transport/wire.hpp"
#include "tinylarge/aggregate/privacy.hpp"
#include "tinylarge/aggregate/robust.hpp"
#include "tinylarge/workflow/federated.hpp"
#include "tinylarge/workflow/reptile.hpp"
#include "tinylarge/workflow/federated_deploy.hpp"
#include "tinylarge/workflow/pipeline.hpp"
#include "tinylarge/workflow/split_deploy.hpp"
#include "tinylarge/workflow/split_roles.hpp"
#include "tinylarge/workflow/transfer_deploy.hpp"
#include "mcu/serial_task.hpp"
#include "transport/synthetic_task.hpp"
#if TINYLARGE_TEST_SODIUM
#include "tinylarge/transport/auth.hpp"
#endif

// Allocation counter: proves the decoder never allocates (it must not: it is
// the freestanding code path), also not for a frame that declares 4 GiB.
namespace {
std::atomic<std::size_t> g_allocations{0};
}
// Every non-aligned form is replaced, so that allocation and deallocation
// always pair malloc with free (AddressSanitizer checks the pairing). GCC's
// -Wmismatched-new-delete cannot see that new and delete are both replaced.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif
namespace {
void* counted_alloc(std::size_t n) noexcept {
  ++g_allocations;
  return std::malloc(n == 0 ? 1 : n);
}
}  // namespace
void* operator new(std::size_t n) {
  if (void* p = counted_alloc(n)) return p;
#if TINYLARGE_HAS_EXCEPTIONS
  throw std::bad_alloc();
#else
  std::abort();
#endif
}
void* operator new[](std::size_t n) { return operator new(n); }
void* operator new(std::size_t n, const std::nothrow_t&) noexcept { return counted_alloc(n); }
void* operator new[](std::size_t n, const std::nothrow_t&) noexcept { return counted_alloc(n); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { std::free(p); }
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

namespace {

using namespace std::chrono_literals;
namespace wire = tl::wire;
namespace wf = tl::workflow;
using bytes = std::vector<std::uint8_t>;

bytes make_frame(const wire::message_header& h, std::span<const std::uint8_t> payload) {
  bytes out(wire::frame_size(payload.size()));
  std::size_t written = 0;
  const tl::status s = wire::encode(h, payload, out, written);
  REQUIRE(s.ok());
  REQUIRE(written == out.size());
  return out;
}

// A few representative frames: an fp32 update, an int8 model with a zero
// point, an fp16 gradient, an empty control frame.
std::vector<bytes> sample_frames() {
  std::vector<bytes> frames;
  {
    std::vector<float> v = {1.0f, -2.5f, 3.25f, 0.0f, 1e-30f};
    wire::message_header h;
    h.type = wire::message_type::update;
    h.dtype = wire::wire_dtype::fp32;
    h.sender = 3;
    h.round = 7;
    h.sequence = 12;
    h.count = 5;
    h.aux = 40;
    frames.push_back(make_frame(h, tl::as_bytes_le(std::span<const float>(v))));
  }
  {
    bytes q = {0, 1, 2, 0x7F, 0x80, 0xFF, 9, 10, 11, 12, 13};
    wire::message_header h;
    h.type = wire::message_type::model;
    h.dtype = wire::wire_dtype::int8;
    h.round = 1;
    h.count = static_cast<std::uint32_t>(q.size());
    h.scale = 0.125f;
    h.zero_point = -3;
    frames.push_back(make_frame(h, q));
  }
  {
    bytes half_bits = {0x00, 0x3C, 0x00, 0xC0};  // 1.0, -2.0
    wire::message_header h;
    h.type = wire::message_type::gradient;
    h.dtype = wire::wire_dtype::fp16;
    h.sender = 0;
    h.count = 2;
    frames.push_back(make_frame(h, half_bits));
  }
  {
    wire::message_header h;
    h.type = wire::message_type::control;
    h.aux = static_cast<std::uint64_t>(wire::control_command::stop);
    frames.push_back(make_frame(h, {}));
  }
  return frames;
}

// A header with a valid header CRC but arbitrary fields (to reach each check).
bytes raw_header(std::uint8_t type, std::uint8_t dtype, std::uint8_t flags, std::uint32_t count, std::uint32_t len,
                 std::uint32_t scale_bits = 0, std::uint32_t zp = 0, std::uint8_t version = wire::wire_version) {
  bytes b(wire::wire_header_bytes, 0);
  wire::detail::wire_put32(b.data(), wire::wire_magic);
  b[4] = version;
  b[5] = type;
  b[6] = dtype;
  b[7] = flags;
  wire::detail::wire_put32(b.data() + 20, count);
  wire::detail::wire_put32(b.data() + 32, scale_bits);
  wire::detail::wire_put32(b.data() + 36, zp);
  wire::detail::wire_put32(b.data() + 40, len);
  wire::detail::wire_put32(b.data() + 44, tl::crc32(b.data(), 44));
  return b;
}

// The wire format is usable in constant expressions (and hence without a
// heap or exceptions): encode then decode at compile time.
constexpr bool constexpr_round_trip() {
  std::uint8_t payload[3] = {1, 2, 3};
  std::uint8_t buf[wire::frame_size(3)] = {};
  wire::message_header h;
  h.type = wire::message_type::smashed;
  h.dtype = wire::wire_dtype::int8;
  h.count = 3;
  h.scale = 0.5f;
  h.zero_point = 1;
  h.sender = 9;
  std::size_t n = 0;
  if (!wire::encode(h, payload, buf, n).ok()) return false;
  wire::message_view m;
  if (!wire::decode(std::span<const std::uint8_t>(buf, n), m).ok()) return false;
  return m.header.sender == 9 && m.header.scale == 0.5f && m.payload.size() == 3 && m.payload[2] == 3;
}
static_assert(constexpr_round_trip());

}  // namespace

TEST_CASE("wire: round trip preserves every field", "[transport][wire]") {
  std::vector<float> v(1000);
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = static_cast<float>(i) * 0.37f - 100.0f;
  wire::message_header h;
  h.type = wire::message_type::update;
  h.sender = 0xDEADBEEF;
  h.round = 0x01020304;
  h.sequence = 99;
  h.aux = 0x1122334455667788ULL;
  bytes out(wire::frame_size(v.size() * 4));
  std::size_t written = 0;
  REQUIRE(wire::encode_fp32(h, v, out, written).ok());
  REQUIRE(written == wire::wire_overhead_bytes + 4000);
  // Little-endian on the wire, whatever the host: check two bytes by hand.
  CHECK(out[0] == 'T');
  CHECK(out[1] == 'L');
  CHECK(out[2] == 'W');
  CHECK(out[3] == 'M');
  CHECK(out[8] == 0xEF);
  CHECK(out[11] == 0xDE);
  wire::message_view m;
  wire::wire_stats st;
  REQUIRE(wire::decode(out, m, {}, &st).ok());
  CHECK(st.accepted == 1);
  CHECK(m.header.type == wire::message_type::update);
  CHECK(m.header.dtype == wire::wire_dtype::fp32);
  CHECK(m.header.sender == 0xDEADBEEF);
  CHECK(m.header.round == 0x01020304);
  CHECK(m.header.sequence == 99);
  CHECK(m.header.count == 1000);
  CHECK(m.header.aux == 0x1122334455667788ULL);
  CHECK(m.payload.data() == out.data() + wire::wire_header_bytes);  // zero-copy view
  std::vector<float> back(1000);
  REQUIRE(wire::read_fp32(m, back).ok());
  CHECK(back == v);
  std::vector<float> wrong(999);
  CHECK(wire::read_fp32(m, wrong).code == tl::errc::shape_mismatch);
}

TEST_CASE("wire: the slicing-by-8 CRC-32 equals core/crc32.hpp", "[transport][wire]") {
  tl::rng g(11);
  std::vector<std::uint8_t> buf(400);
  for (auto& b : buf) b = static_cast<std::uint8_t>(g.next_u32());
  for (std::size_t off = 0; off < 8; ++off)
    for (std::size_t n = 0; off + n <= 300; ++n)
      REQUIRE(wire::detail::wire_crc32(buf.data() + off, n) == tl::crc32(buf.data() + off, n));
}

TEST_CASE("wire: every truncation and every single-bit flip is rejected", "[transport][wire]") {
  for (const bytes& frame : sample_frames()) {
    wire::message_view m;
    REQUIRE(wire::decode(frame, m).ok());
    wire::wire_stats st;
    for (std::size_t n = 0; n < frame.size(); ++n) {
      const tl::status s = wire::decode(std::span<const std::uint8_t>(frame.data(), n), m, {}, &st);
      CHECK_FALSE(s.ok());
      CHECK(s.code == tl::errc::truncated);
    }
    CHECK(st[wire::wire_reject::truncated] == frame.size());
    std::size_t flips = 0;
    for (std::size_t i = 0; i < frame.size(); ++i) {
      for (int bit = 0; bit < 8; ++bit) {
        bytes bad = frame;
        bad[i] = static_cast<std::uint8_t>(bad[i] ^ (1u << bit));
        const tl::status s = wire::decode(bad, m, {}, &st);
        if (s.ok()) FAIL("bit flip accepted: byte " << i << " bit " << bit);
        ++flips;
      }
    }
    CHECK(st.total_rejected() == frame.size() + flips);
    CHECK(st.accepted == 0);
    // A trailing byte is rejected too.
    bytes longer = frame;
    longer.push_back(0);
    CHECK(wire::decode(longer, m, {}, &st).code == tl::errc::corrupt);
    CHECK(st[wire::wire_reject::trailing_bytes] == 1);
  }
}

TEST_CASE("wire: each rejection reason is reachable and counted", "[transport][wire]") {
  wire::wire_stats st;
  wire::message_header h;
  std::size_t total = 0;
  auto reason = [&](const bytes& b) {
    const wire::wire_stats before = st;
    const tl::status s = wire::decode_header(b, h, total, {}, &st);
    CHECK_FALSE(s.ok());
    for (std::size_t r = 0; r < wire::wire_reject_count; ++r)
      if (st.rejected[r] != before.rejected[r]) return static_cast<wire::wire_reject>(r);
    FAIL("no reason counted");
    return wire::wire_reject::truncated;
  };
  bytes b = raw_header(5, 0, 0, 0, 0);
  b[0] = 'X';
  CHECK(reason(b) == wire::wire_reject::bad_magic);
  CHECK(reason(raw_header(5, 0, 0, 0, 0, 0, 0, 1)) == wire::wire_reject::bad_version);  // version 1: no MAC flag yet
  b = raw_header(5, 0, 0, 0, 0);
  b[44] ^= 1;
  CHECK(reason(b) == wire::wire_reject::header_crc);
  CHECK(reason(raw_header(0, 0, 0, 0, 0)) == wire::wire_reject::bad_type);
  CHECK(reason(raw_header(static_cast<std::uint8_t>(wire::message_type_max + 1), 0, 0, 0, 0)) == wire::wire_reject::bad_type);  // one past the last type (7 secagg)
  CHECK(reason(raw_header(1, 4, 0, 0, 0)) == wire::wire_reject::bad_dtype);
  CHECK(reason(raw_header(1, 1, 2, 0, 0)) == wire::wire_reject::bad_flags);  // bit 0 is wire_flag_mac, bit 1 unknown
  CHECK(reason(raw_header(1, 3, 0, 4, 4, 0 /*scale 0*/)) == wire::wire_reject::bad_quantization);
  CHECK(reason(raw_header(1, 3, 0, 4, 4, 0x7FC00000u /*NaN*/)) == wire::wire_reject::bad_quantization);
  CHECK(reason(raw_header(1, 3, 0, 4, 4, 0x3F800000u, 128)) == wire::wire_reject::bad_quantization);
  CHECK(reason(raw_header(1, 1, 0, 4, 16, 0x3F800000u)) == wire::wire_reject::bad_quantization);
  CHECK(reason(raw_header(1, 1, 0, 4, 15)) == wire::wire_reject::length_mismatch);
  CHECK(reason(raw_header(1, 1, 0, 0x40000000u, 0)) == wire::wire_reject::length_mismatch);  // 4·2^30 wraps in u32
  CHECK(reason(raw_header(1, 0, 0, 0xFFFFFFFFu, 0xFFFFFFFFu)) == wire::wire_reject::too_large);
  CHECK(st.total_rejected() == 14);

  // Payload CRC (header intact).
  bytes f = sample_frames()[0];
  f[wire::wire_header_bytes + 2] ^= 0x10;
  wire::message_view m;
  CHECK(wire::decode(f, m, {}, &st).code == tl::errc::checksum_mismatch);
  CHECK(st[wire::wire_reject::payload_crc] == 1);
  for (std::size_t r = 0; r < wire::wire_reject_count; ++r)
    CHECK(std::string(wire::to_string(static_cast<wire::wire_reject>(r))) != "unknown");
}

TEST_CASE("wire: oversized declared lengths are rejected from the header, without allocating", "[transport][wire]") {
  wire::wire_limits limits;
  limits.max_payload_bytes = 1024;
  // 4 GiB - 1 declared in a 48-byte buffer: the decision is made on the header alone.
  const bytes huge = raw_header(2, 0, 0, 0xFFFFFFFFu, 0xFFFFFFFFu);
  const bytes big = raw_header(2, 1, 0, 257, 1028);  // 1028 > 1024
  const bytes fits = raw_header(2, 1, 0, 256, 1024);
  wire::message_header h;
  std::size_t total = 0;
  wire::message_view m;
  const std::size_t before = g_allocations.load();
  const tl::status s1 = wire::decode_header(huge, h, total, limits);
  const tl::status s2 = wire::decode(huge, m, limits);
  const tl::status s3 = wire::decode_header(big, h, total, limits);
  const tl::status s4 = wire::decode_header(fits, h, total, limits);
  const std::size_t after = g_allocations.load();
  CHECK(after == before);
  CHECK(s1.code == tl::errc::too_large);
  CHECK(s2.code == tl::errc::too_large);
  CHECK(s3.code == tl::errc::too_large);
  REQUIRE(s4.ok());
  CHECK(total == 1024 + wire::wire_overhead_bytes);
  CHECK(std::string(s1.message).find("max_payload_bytes") != std::string::npos);

  // The encoder refuses the same, and reports a too-small output buffer.
  std::vector<float> v(300);
  bytes out(wire::frame_size(1200));
  std::size_t written = 0;
  wire::message_header e;
  e.type = wire::message_type::update;
  CHECK(wire::encode_fp32(e, v, out, written, limits).code == tl::errc::too_large);
  bytes small(100);
  CHECK(wire::encode_fp32(e, v, small, written).code == tl::errc::capacity_exceeded);
  wire::message_header bad;
  bad.type = wire::message_type::model;
  bad.dtype = wire::wire_dtype::int8;
  bad.count = 1;
  std::uint8_t one = 1;
  CHECK(wire::encode(bad, std::span<const std::uint8_t>(&one, 1), out, written).code == tl::errc::invalid_argument);
}

namespace {
struct not_a_transport {  // no recv: must not satisfy the concept
  static const char* name() { return "x"; }
  tl::endpoint_id id() const { return 0; }
  std::size_t endpoints() const { return 1; }
};
}  // namespace
static_assert(tl::transport_policy<tl::in_process>);
static_assert(!tl::transport_policy<not_a_transport>);

TEST_CASE("in_process: hands over spans, stamps the sender, times out", "[transport][in_process]") {
  tl::in_process::hub net(3);
  tl::in_process server(net, 0), c1(net, 1), c2(net, 2);
  std::vector<float> g = {1, 2, 3};
  wire::message_header h;
  h.type = wire::message_type::model;
  h.dtype = wire::wire_dtype::fp32;
  h.count = 3;
  h.sender = 77;  // ignored: the transport stamps its own id
  REQUIRE(server.broadcast(h, tl::as_bytes_le(std::span<const float>(g))).ok());
  wire::message_view m;
  REQUIRE(c2.recv(m, 100ms).ok());
  CHECK(m.header.sender == 0);
  CHECK(m.payload.data() == reinterpret_cast<const std::uint8_t*>(g.data()));  // zero-copy
  REQUIRE(c1.recv(m, 100ms).ok());
  const auto t0 = std::chrono::steady_clock::now();
  const tl::status s = c1.recv(m, 50ms);
  CHECK(s.code == tl::errc::timed_out);
  CHECK(std::chrono::steady_clock::now() - t0 >= 45ms);
  CHECK(server.recv(m, 1ms).code == tl::errc::timed_out);  // broadcast does not loop back
  CHECK(c1.send(9, h, {}).code == tl::errc::invalid_argument);
  CHECK(c1.send(0, h, {}).code == tl::errc::invalid_argument);  // count 3 but no payload
}

namespace {

// FedAvg of the synthetic task computed directly, in double, without the
// transport or the aggregator: the independent reference.
std::vector<double> reference_fedavg(const tl_test::least_squares_task& task, std::vector<float> w, std::uint32_t rounds,
                                     std::uint32_t clients, std::uint64_t server_seed, std::uint32_t drop_client = 0,
                                     std::uint32_t drop_round = 0) {
  std::vector<double> out(w.size());
  for (std::uint32_t r = 1; r <= rounds; ++r) {
    const std::uint64_t seed = wf::round_task_seed(server_seed, r);  // what the server role sends with round r
    std::vector<double> acc(w.size(), 0.0);
    double total = 0.0;
    std::vector<float> local(w.size());
    for (std::uint32_t k = 1; k <= clients; ++k) {
      if (k == drop_client && r >= drop_round) continue;
      const auto n = static_cast<double>(task(k, seed, w, local));
      for (std::size_t j = 0; j < w.size(); ++j) acc[j] += n * local[j];
      total += n;
    }
    for (std::size_t j = 0; j < w.size(); ++j) {
      out[j] = acc[j] / total;
      w[j] = static_cast<float>(out[j]);
    }
  }
  return out;
}

struct inproc_run {
  std::vector<float> global;
  wf::federated_server_report report;
  tl::status outcome;
};

template <class Policy = tl::fedavg>
inproc_run run_inproc(const tl_test::least_squares_task& task, std::uint32_t rounds, std::uint32_t clients,
                      std::uint64_t seed, std::uint32_t drop_client = 0, std::uint32_t drop_round = 0,
                      const std::string& checkpoint = "", Policy policy = {}) {
  tl::in_process::hub net(clients + 1);
  std::vector<std::thread> threads;
  for (std::uint32_t k = 1; k <= clients; ++k) {
    threads.emplace_back([&, k] {
      tl::in_process ep(net, k);
      if (k != drop_client) {
        wf::federated_client_options copt;
        copt.idle_timeout = 5s;
        (void)tl_test::run_client(
            ep,
            [&](std::uint32_t kk, std::uint32_t, std::uint64_t s, std::span<const float> g, std::span<float> o) {
              return task(kk, s, g, o);
            },
            copt);
        return;
      }
      // The dropped client answers like the client role until drop_round, then stays silent.
      std::vector<float> g, o;
      for (;;) {
        wire::message_view m;
        if (!ep.recv(m, 5s).ok() || m.header.type == wire::message_type::control) return;
        if (m.header.round >= drop_round) continue;
        g.resize(m.header.count);
        o.resize(m.header.count);
        if (!wire::read_fp32(m, g).ok()) return;
        wire::message_header h;
        h.type = wire::message_type::update;
        h.dtype = wire::wire_dtype::fp32;
        h.round = m.header.round;
        h.count = m.header.count;
        h.aux = static_cast<std::uint64_t>(task(k, m.header.aux, g, o));
        if (!ep.send(0, h, tl::as_bytes_le(std::span<const float>(o))).ok()) return;
      }
    });
  }
  inproc_run run;
  tl::in_process server(net, 0);
  wf::fedavg_server<Policy> role(policy, task.dimension, seed);
  role.set_global(tl_test::initial_global(task.dimension, 5));
  wf::federated_server_options opt;
  opt.rounds = rounds;
  opt.min_clients = 2;
  opt.round_timeout = drop_client != 0 ? 2s : 20s;  // only the dropped client's round waits it out
  opt.checkpoint_path = checkpoint;
  run.outcome = wf::run_federated_server(server, role, opt, &run.report);
  run.global.assign(role.global().begin(), role.global().end());
  if (!run.outcome.ok()) {  // release the clients
    wire::message_header stop;
    stop.type = wire::message_type::control;
    (void)server.broadcast(stop, {});
  }
  for (auto& t : threads) t.join();
  return run;
}

}  // namespace

TEST_CASE("federated round over in_process matches a direct FedAvg", "[transport][federated]") {
  tl_test::least_squares_task task;
  task.dimension = 32;
  const inproc_run run = run_inproc(task, 5, 4, 1234);
  REQUIRE(run.outcome.ok());
  CHECK(run.report.rounds_completed == 5);
  CHECK(run.report.updates_per_round == std::vector<std::size_t>(5, 4));
  const auto ref = reference_fedavg(task, tl_test::initial_global(32, 5), 5, 4, 1234);
  double max_err = 0.0;
  for (std::size_t j = 0; j < ref.size(); ++j) max_err = std::max(max_err, std::fabs(ref[j] - run.global[j]));
  CHECK(max_err < 1e-5);
  // The parameters moved: the run is not vacuous.
  const auto w0 = tl_test::initial_global(32, 5);
  double moved = 0.0;
  for (std::size_t j = 0; j < w0.size(); ++j) moved += std::fabs(w0[j] - run.global[j]);
  CHECK(moved > 0.1);
  // Deterministic: a second run gives the same bits.
  CHECK(run_inproc(task, 5, 4, 1234).global == run.global);
  // Another server seed gives other local steps.
  CHECK(run_inproc(task, 5, 4, 99).global != run.global);
}

TEST_CASE("federated round completes without a client that stops answering", "[transport][federated][faults]") {
  tl_test::least_squares_task task;
  task.dimension = 16;
  const inproc_run run = run_inproc(task, 4, 4, 77, /*drop_client*/ 3, /*drop_round*/ 2);
  REQUIRE(run.outcome.ok());
  CHECK(run.report.updates_per_round == std::vector<std::size_t>{4, 3, 3, 3});
  const auto ref = reference_fedavg(task, tl_test::initial_global(16, 5), 4, 4, 77, 3, 2);
  for (std::size_t j = 0; j < ref.size(); ++j) CHECK(std::fabs(ref[j] - run.global[j]) < 1e-5);
}

namespace {
// The FedAvg family's roles run by the simulation (federated_averaging) and by
// the deployment drivers over in_process endpoints on threads: same bits.
using roles_model = tl::sequential<tl::dense<12, 8>, tl::relu, tl::dense<8, 3>>;
template <class Policy, class U>
struct roles_traits {
  using model = roles_model;
  using aggregation = Policy;
  using update = U;
};
struct roles_data {
  std::vector<float> x;
  std::vector<std::uint8_t> y;
  wf::federated_dataset fd;
  explicit roles_data(std::size_t clients) {
    tl::rng r(17, 3);
    const std::size_t n = 40 * clients;
    x.resize(n * 12);
    y.resize(n);
    tl::data::partition_t parts(clients);
    for (std::size_t i = 0; i < n; ++i) {
      y[i] = static_cast<std::uint8_t>(r.uniform_int(3));
      for (std::size_t j = 0; j < 12; ++j) x[i * 12 + j] = r.uniform(-1.0f, 1.0f) + (j % 3 == y[i] ? 1.0f : 0.0f);
      parts[(i * 7 + i / 5) % clients].push_back(i);  // unequal client sizes
    }
    fd = wf::make_federated_dataset(x.data(), y.data(), n, 12, parts);
  }
};

/// A serial line (transport/serial.hpp) over a socket, damaging `per_10000` / 10000 of the
/// bytes it writes (dropped or one bit flipped; a seeded generator per end).
struct damaging_fd_port {
  tl::serial::fd_port fd;
  tl::rng g;
  std::uint32_t per_10000;
  std::uint64_t damaged = 0;
  tl::status write(std::span<const std::uint8_t> out) {
    std::vector<std::uint8_t> d;
    for (const std::uint8_t b : out) {
      if (g.uniform_int(10000) >= per_10000) {
        d.push_back(b);
        continue;
      }
      ++damaged;
      if (g.uniform_int(2) == 0) d.push_back(static_cast<std::uint8_t>(b ^ (1u << g.uniform_int(8))));
    }
    return fd.write(d);
  }
  tl::status read(std::span<std::uint8_t> in, std::size_t& got) { return fd.read(in, got); }
};
using serial_roles_transport = tl::serial::serial_transport<damaging_fd_port, tl::serial::steady_clock_ms, 1024>;
static_assert(tl::transport_policy<serial_roles_transport>);

/// Final global model of `rounds` rounds, simulated (threads = false) or deployed over
/// in_process endpoints (threads = true), or, with `over_serial`, over one serial link on
/// a socket pair with 0.2 % of the bytes damaged each way (one client: with frames of
/// ~600 bytes, ~70 % of the transmissions are damaged and repeated); client `drop`
/// (1-based endpoint, 0 = none) leaves at round `drop_round` in the in_process run.
template <class Policy, class U>
std::vector<float> roles_run(const Policy& policy, bool threads, double fraction, std::uint32_t drop = 0,
                             std::uint32_t drop_round = 0, std::size_t clients = 4, bool over_serial = false) {
  const roles_data data(clients);
  wf::federated_options o;
  o.rounds = 3;
  o.client_fraction = fraction;
  o.local_epochs = 2;
  o.batch_size = 8;
  o.seed = 23;
  o.eval_every = 0;
  o.client_lr_decay = 0.9f;
  o.int8_chunk = 16;
  const tl::nn::sgd sgd{.learning_rate = 0.1f};
  using fl_type = wf::federated_averaging<roles_traits<Policy, U>>;
  if (!threads) {
    fl_type fl(o, policy, sgd);
    fl.initialize(4);
    (void)fl.run(data.fd.clients, tl::nn::labelled_view<std::uint8_t>{nullptr, nullptr, 0, 12});
    return {fl.global().begin(), fl.global().end()};
  }
  // The two roles of the deployment, over any transport endpoint.
  const auto client_run = [&](auto& ep, const wf::federated_client_options& co) {
    typename fl_type::computation training(o, sgd, wf::detail::proximal_mu_of(policy), data.fd.clients);
    typename fl_type::client_role role(training, o.int8_chunk);
    return wf::run_federated_client(ep, role, co);
  };
  const auto server_run = [&](auto& ep, std::chrono::milliseconds round_timeout) {
    typename fl_type::network_type init;
    init.initialize(4);
    typename fl_type::server_role server(policy, fl_type::param_count, o.seed);
    server.set_global(init.parameters());
    wf::federated_server_options so;
    so.rounds = 3;
    so.client_fraction = fraction;
    so.round_timeout = round_timeout;
    const tl::status st = wf::run_federated_server(ep, server, so);
    return std::make_pair(st, std::vector<float>(server.global().begin(), server.global().end()));
  };
  wf::federated_client_options co;
  co.idle_timeout = 20s;
  if (over_serial) {
    REQUIRE(clients == 1);
    int sv[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    tl::serial::steady_clock_ms clock;
    damaging_fd_port server_port{tl::serial::fd_port(sv[0]), tl::rng(1), 20}, client_port{tl::serial::fd_port(sv[1]), tl::rng(2), 20};
    tl::status client_status;
    std::uint64_t client_retransmissions = 0;
    std::thread client([&] {
      serial_roles_transport ep(client_port, clock, 1, {50});
      client_status = client_run(ep, co);
      // Stay on the line for 6 ACK timeouts: if the ACK of the stop frame was lost, the
      // server's retransmission is ACKed again (and not delivered: recv times out).
      wire::message_view extra;
      if (client_status.ok() && ep.recv(extra, 300ms).code != tl::errc::timed_out)
        client_status = {tl::errc::corrupt, "a frame after stop"};
      client_retransmissions = ep.link_counters().retransmissions;
    });
    serial_roles_transport ep(server_port, clock, 0, {50});
    const auto [st, global] = server_run(ep, 20s);
    client.join();
    ::close(sv[0]);
    ::close(sv[1]);
    REQUIRE(st.ok());
    REQUIRE(client_status.ok());
    CHECK(server_port.damaged + client_port.damaged > 0);
    CHECK(ep.link_counters().retransmissions + client_retransmissions > 0);
    CHECK(ep.link_counters().delivered == 3);  // one update per round, each once
    CHECK(ep.stats().frames_received == 3);
    CHECK(ep.stats().frames_sent == 4);  // three models and the stop
    return global;
  }
  tl::in_process::hub net(clients + 1);
  std::vector<std::thread> th;
  for (std::uint32_t k = 1; k <= clients; ++k) {
    th.emplace_back([&, k] {
      tl::in_process ep(net, k);
      wf::federated_client_options ko = co;
      if (k == drop) ko.on_model = [&](std::uint32_t r) { return r < drop_round; };
      (void)client_run(ep, ko);
    });
  }
  tl::in_process ep(net, 0);
  const auto [st, global] = server_run(ep, drop != 0 ? 1500ms : 20s);
  for (auto& t : th) t.join();
  REQUIRE(st.ok());
  return global;
}
}  // namespace

TEST_CASE("FedAvg-family roles: simulation and deployment drivers give the same bits", "[transport][federated][roles]") {
  const auto same = [](const auto& policy, auto update, double fraction) {
    using P = std::decay_t<decltype(policy)>;
    using U = decltype(update);
    const auto sim = roles_run<P, U>(policy, false, fraction);
    const auto dep = roles_run<P, U>(policy, true, fraction);
    CHECK(sim == dep);
    return sim;
  };
  const auto avg = same(tl::fedavg{}, tl::fp32_update{}, 1.0);
  CHECK(same(tl::fedadam{.eta = 0.02f}, tl::fp32_update{}, 1.0) != avg);
  CHECK(same(tl::coordinate_median{}, tl::fp32_update{}, 1.0) != avg);
  CHECK(same(tl::dp_fixed_clipping<tl::fedavg>{.noise_multiplier = 0.2f, .clipping_norm = 2.0f}, tl::fp32_update{}, 1.0) !=
        avg);
  CHECK(same(tl::fedprox{.proximal_mu = 0.5f}, tl::fp32_update{}, 1.0) != avg);
  CHECK(same(tl::fedavg{}, tl::fp16_update{}, 1.0) != avg);  // fp16 and int8 updates on the wire
  CHECK(same(tl::fedavg{}, tl::int8_update{}, 0.5) != avg);  // and 2 of 4 clients per round, drawn by the server
  // Federated Reptile is federated_averaging with the reptile_step server rule: the same roles.
  CHECK(same(wf::reptile_step{.epsilon = 0.5f}, tl::fp32_update{}, 1.0) != avg);
}

TEST_CASE("FedAvg-family roles over a damaged serial link (one device): the simulation's bits",
          "[transport][federated][roles][serial]") {
  const auto sim = roles_run<tl::fedavg, tl::fp32_update>(tl::fedavg{}, false, 1.0, 0, 0, 1);
  const auto ser = roles_run<tl::fedavg, tl::fp32_update>(tl::fedavg{}, true, 1.0, 0, 0, 1, true);
  CHECK(sim == ser);
  const auto sim8 = roles_run<tl::fedavg, tl::int8_update>(tl::fedavg{}, false, 1.0, 0, 0, 1);
  CHECK(sim8 == roles_run<tl::fedavg, tl::int8_update>(tl::fedavg{}, true, 1.0, 0, 0, 1, true));
  CHECK(sim8 != sim);
}

TEST_CASE("FedAvg-family roles: a client that leaves is waited for once, then the rounds go on", "[transport][federated][roles]") {
  // Client endpoint 2 leaves at the model of round 2: round 2 closes at the deadline with 3 updates.
  const auto left = roles_run<tl::fedavg, tl::fp32_update>(tl::fedavg{}, true, 1.0, 2, 2);
  CHECK(left != roles_run<tl::fedavg, tl::fp32_update>(tl::fedavg{}, false, 1.0));
  CHECK(left == roles_run<tl::fedavg, tl::fp32_update>(tl::fedavg{}, true, 1.0, 2, 2));  // and deterministically so
}

TEST_CASE("federated transfer roles: the deployment's global and personal models are federated_transfer::run's",
          "[transport][federated][roles][transfer]") {
  constexpr std::size_t clients = 3;
  const roles_data data(clients);
  const roles_data proxy(1);  // the server's own data (phase 1)
  wf::federated_options fo;
  fo.rounds = 2;
  fo.local_epochs = 1;
  fo.batch_size = 8;
  fo.seed = 29;
  fo.eval_every = 0;
  const wf::transfer_options to{.pretrain_epochs = 2, .pretrain_batch = 8, .personalize_epochs = 2,
                                .personalize_batch = 8, .frozen_layers = 1, .holdout_fraction = 0.25, .seed = 31};
  const tl::nn::sgd sgd{.learning_rate = 0.1f};
  using ftl_type = wf::federated_transfer<roles_traits<tl::fedavg, tl::fp32_update>>;
  const tl::nn::labelled_view<std::uint8_t> none{nullptr, nullptr, 0, 12};

  // In process: the three phases in this thread.
  ftl_type sim(to, fo, {}, sgd);
  std::vector<std::vector<float>> sim_personal(clients);
  const wf::transfer_result res = sim.run(proxy.fd.clients[0], data.fd.clients, none,
                                          [&](std::size_t k, std::span<const float> w) {
                                            sim_personal[k].assign(w.begin(), w.end());
                                          });
  REQUIRE(res.costs.rounds.size() == fo.rounds + 2);

  // Deployed: the server's and the clients' programs on in_process endpoints, one thread each.
  tl::in_process::hub net(clients + 1);
  std::vector<std::vector<float>> dep_personal(clients);
  std::vector<ftl_type::personalization> measured(clients);
  std::vector<tl::status> client_status(clients);
  std::vector<std::thread> th;
  for (std::uint32_t k = 1; k <= clients; ++k) {
    th.emplace_back([&, k] {
      tl::in_process ep(net, k);
      ftl_type party(to, fo, {}, sgd);  // every process builds the same object from the same settings
      ftl_type::network_type personal;
      wf::federated_client_options co;
      co.idle_timeout = 20s;
      client_status[k - 1] = wf::run_transfer_client(ep, party, data.fd.clients[k - 1], personal, &measured[k - 1], co);
      dep_personal[k - 1].assign(personal.parameters().begin(), personal.parameters().end());
    });
  }
  tl::in_process ep(net, 0);
  ftl_type server(to, fo, {}, sgd);
  wf::federated_server_options so;
  so.rounds = static_cast<std::uint32_t>(fo.rounds);
  so.round_timeout = 20s;
  const tl::status st = wf::run_transfer_server(ep, server, proxy.fd.clients[0], so);
  for (auto& t : th) t.join();
  REQUIRE(st.ok());
  for (const auto& cs : client_status) REQUIRE(cs.ok());

  CHECK(std::ranges::equal(server.pretrained(), sim.pretrained()));
  CHECK(std::ranges::equal(server.federated().global(), sim.federated().global()));
  CHECK(!std::ranges::equal(server.pretrained(), server.federated().global()));
  double personal_mean = 0.0;
  for (std::size_t k = 0; k < clients; ++k) {
    CHECK(dep_personal[k] == sim_personal[k]);
    CHECK(!std::ranges::equal(dep_personal[k], server.federated().global()));  // it did fine-tune
    personal_mean += measured[k].personal_accuracy / clients;
  }
  CHECK(std::abs(personal_mean - res.personalized_on_clients) < 1e-12);

  // A client whose server sends no final model says so instead of returning a model it never got.
  tl::in_process::hub net2(2);
  tl::status lone;
  std::thread c([&] {
    tl::in_process cep(net2, 1);
    ftl_type party(to, fo, {}, sgd);
    ftl_type::network_type personal;
    wf::federated_client_options co;
    co.idle_timeout = 20s;
    lone = wf::run_transfer_client(cep, party, data.fd.clients[0], personal, nullptr, co);
  });
  tl::in_process sep(net2, 0);
  ftl_type plain(to, fo, {}, sgd);
  plain.federated().set_global(sim.pretrained());
  wf::federated_server_options po;
  po.rounds = 1;
  po.round_timeout = 20s;
  REQUIRE(wf::run_federated_server(sep, plain.federated().server_program(), po).ok());
  c.join();
  CHECK(lone.code == tl::errc::invalid_argument);
}

TEST_CASE("server checkpoints: round trip, corruption detected, resume is bit-identical", "[transport][checkpoint]") {
  tl::server_checkpoint c;
  c.rounds_completed = 3;
  c.global = {1.0f, -2.0f, 0.5f};
  c.state = {{0.1f, 0.2f, 0.3f}};
  c.state_steps = 3;
  c.generator = tl::rng(5);
  (void)c.generator.next_u32();
  const bytes f = tl::encode_server_checkpoint(c);
  tl::server_checkpoint d;
  REQUIRE(tl::decode_server_checkpoint(f, d).ok());
  CHECK(d.rounds_completed == 3);
  CHECK(d.global == c.global);
  CHECK(d.state == c.state);
  CHECK(d.state_steps == 3);
  CHECK(d.generator.next_u32() == c.generator.next_u32());
  for (std::size_t i = 0; i < f.size(); ++i) {
    bytes bad = f;
    bad[i] ^= 0x04;
    CHECK_FALSE(tl::decode_server_checkpoint(bad, d).ok());
  }

  // Resume: 3 rounds with checkpoints, then a new server (as after a crash)
  // runs to 6 from the checkpoint; FedAvgM so that optimizer state matters.
  tl_test::least_squares_task task;
  task.dimension = 16;
  const tl::fedavgm momentum{1.0f, 0.9f};
  const std::string path = "test_transport_checkpoint.bin";
  std::remove(path.c_str());
  const inproc_run straight = run_inproc(task, 6, 3, 5, 0, 0, "", momentum);
  REQUIRE(straight.outcome.ok());
  const inproc_run first = run_inproc(task, 3, 3, 5, 0, 0, path, momentum);
  REQUIRE(first.outcome.ok());
  const inproc_run resumed = run_inproc(task, 6, 3, 5, 0, 0, path, momentum);
  REQUIRE(resumed.outcome.ok());
  CHECK(resumed.report.first_round == 4);
  CHECK(resumed.global == straight.global);
  // Without the momentum state the result differs: the state is what resumes.
  const inproc_run plain = run_inproc(task, 6, 3, 5, 0, 0, "", tl::fedavgm{1.0f, 0.0f});
  CHECK(plain.global != straight.global);
  std::remove(path.c_str());
#if TINYLARGE_HAS_EXCEPTIONS
  {
    bytes bad = f;
    bad[60] ^= 1;
    tl::io::write_file(path, bad);
    tl::server_checkpoint e;
    CHECK_THROWS_AS(tl::load_server_checkpoint(path, e), tl::format_error);
    std::remove(path.c_str());
  }
#endif
}

namespace {
/// A small split checkpoint: two segments, a momentum vector per policy, two copies with Adam state.
tl::split_checkpoint sample_split_checkpoint() {
  tl::split_checkpoint c;
  c.rounds_completed = 2;
  c.restarts = 1;
  c.device = {1.0f, -2.0f, 0.5f, 4.0f, -0.25f};
  c.server = {3.0f, 0.125f, -7.0f};
  c.device_state = {{0.1f, 0.2f, 0.3f, 0.4f, 0.5f}};
  c.server_state = {{-0.1f, -0.2f, -0.3f}};
  c.device_state_steps = 2;
  c.server_state_steps = 2;
  c.copies = {{{{0.5f, 0.25f, 0.0f}, {1.0f, 2.0f, 3.0f}}, 32}, {{{-0.5f, 0.75f, 1.0f}, {4.0f, 5.0f, 6.0f}}, 31}};
  return c;
}
/// `payload` wrapped in a checkpoint frame with valid CRCs (the payload checks are what is tested).
bytes split_frame(const bytes& payload, std::uint64_t aux = tl::split_checkpoint_tag) {
  wire::message_header h;
  h.type = wire::message_type::checkpoint;
  h.dtype = wire::wire_dtype::bytes;
  h.round = 2;
  h.aux = aux;
  h.count = static_cast<std::uint32_t>(payload.size());
  bytes f(wire::frame_size(payload.size()));
  std::size_t written = 0;
  REQUIRE(wire::encode(h, payload, f, written).ok());
  return f;
}
}  // namespace

TEST_CASE("split checkpoints: round trip, every truncation, bit flip and bad size refused", "[transport][checkpoint][split]") {
  const tl::split_checkpoint c = sample_split_checkpoint();
  const bytes f = tl::encode_split_checkpoint(c);
  tl::split_checkpoint d;
  REQUIRE(tl::decode_split_checkpoint(f, d).ok());
  CHECK(d.rounds_completed == 2);
  CHECK(d.restarts == 1);
  CHECK(d.device == c.device);
  CHECK(d.server == c.server);
  CHECK(d.device_state == c.device_state);
  CHECK(d.server_state == c.server_state);
  CHECK(d.device_state_steps == 2);
  CHECK(d.server_state_steps == 2);
  REQUIRE(d.copies.size() == 2);
  CHECK(d.copies[0].vectors == c.copies[0].vectors);
  CHECK(d.copies[1].vectors == c.copies[1].vectors);
  CHECK(d.copies[0].steps == 32);
  CHECK(d.copies[1].steps == 31);
  CHECK(tl::encode_split_checkpoint(d) == f);  // canonical
  // Every truncation and every single-bit flip is refused.
  std::size_t refused = 0, tried = 0;
  for (std::size_t n = 0; n < f.size(); ++n, ++tried)
    refused += tl::decode_split_checkpoint(std::span<const std::uint8_t>(f).first(n), d).ok() ? 0 : 1;
  for (std::size_t i = 0; i < f.size(); ++i)
    for (int bit = 0; bit < 8; ++bit, ++tried) {
      bytes bad = f;
      bad[i] ^= static_cast<std::uint8_t>(1u << bit);
      refused += tl::decode_split_checkpoint(bad, d).ok() ? 0 : 1;
    }
  CHECK(refused == tried);

  // Behind valid CRCs: each size and field of the payload is checked.
  const bytes p(f.begin() + wire::wire_header_bytes, f.end() - wire::wire_trailer_bytes);
  REQUIRE(tl::decode_split_checkpoint(split_frame(p), d).ok());
  auto with = [&](std::size_t off, std::uint32_t v) {
    bytes q = p;
    wire::detail::wire_put32(q.data() + off, v);
    return split_frame(q);
  };
  const std::size_t first_array = 48 + 8 * 2;  // after the preamble and the two copies' step counters
  struct bad_case {
    bytes frame;
    tl::errc code;
    const char* what;
  };
  const bad_case cases[] = {
      {with(0, 0x12345678u), tl::errc::corrupt, "magic"},
      {with(4, 2), tl::errc::unsupported_version, "layout version"},
      {with(12, 0xFFFFFFFFu), tl::errc::corrupt, "copy count beyond the payload"},
      {with(12, 3), tl::errc::corrupt, "one copy too many"},
      {with(16, 17), tl::errc::corrupt, "17 device-policy state vectors"},
      {with(24, 3), tl::errc::truncated, "three optimizer vectors per copy (the payload ends first)"},
      {with(28, 1), tl::errc::corrupt, "reserved field"},
      {with(first_array, 0x40000000u), tl::errc::corrupt, "an array longer than the payload"},
      {with(first_array, 6), tl::errc::corrupt, "an array one element longer"},
      {with(first_array, 4), tl::errc::corrupt, "an array one element shorter"},
      {split_frame(bytes(p.begin(), p.end() - 4)), tl::errc::corrupt, "the last 4 bytes cut (the last array runs past the end)"},
      {split_frame([&] { bytes q = p; q.push_back(0); return q; }()), tl::errc::corrupt, "one trailing byte"},
      {split_frame(bytes(p.begin(), p.begin() + 40)), tl::errc::truncated, "a payload shorter than the preamble"},
      {split_frame(p, 7), tl::errc::corrupt, "another checkpoint kind"},
  };
  for (const auto& bc : cases) {
    INFO(bc.what);
    const tl::status st = tl::decode_split_checkpoint(bc.frame, d);
    INFO(st.message);
    CHECK(st.code == bc.code);
  }

  // FedAvg and split checkpoints are told apart, both ways.
  tl::server_checkpoint fc;
  fc.global = {1.0f, 2.0f};
  const tl::status as_split = tl::decode_split_checkpoint(tl::encode_server_checkpoint(fc), d);
  CHECK(as_split.code == tl::errc::corrupt);
  CHECK(std::string(as_split.message).find("FedAvg") != std::string::npos);
  CHECK_FALSE(tl::decode_server_checkpoint(f, fc).ok());
}

namespace {
/// Final (device, server) segments of a split deployment P with one client and plain SGD: over
/// in_process endpoints, or over one serial link on a socket pair with 0.2 % of the bytes damaged
/// each way (`serial_roles_transport`: the server of workflow/split_deploy.hpp on a 2-endpoint transport).
template <class P>
std::pair<std::vector<float>, std::vector<float>> split_serial_run(bool over_serial) {
  constexpr std::size_t nd = P::device_model::param_count, ns = P::server_model::param_count;
  tl::rng init(5);
  std::vector<float> dev(nd), srv(ns);
  for (float& v : dev) v = init.uniform(-0.5f, 0.5f);
  for (float& v : srv) v = init.uniform(-0.5f, 0.5f);
  const tl::nn::sgd opt{.learning_rate = 0.2f};
  const auto batch = [](std::uint32_t r, std::uint32_t t, float* x, std::uint8_t* y) -> std::size_t {
    tl::rng g(r * 100 + t);
    for (std::size_t i = 0; i < 4; ++i) {
      y[i] = static_cast<std::uint8_t>(g.uniform_int(3));
      for (std::size_t j = 0; j < 8; ++j) x[i * 8 + j] = g.uniform(-1.0f, 1.0f) + (j % 3 == y[i] ? 1.0f : 0.0f);
    }
    return 4;
  };
  tl::workflow::splitfed_server_options o;
  o.rounds = 2;
  o.steps_per_round = 3;
  o.max_batch = 4;
  o.round_timeout = 20s;
  o.send_timeout = 10s;
  typename P::server server(opt, tl::fedavg{}, dev, srv);
  tl::workflow::splitfed_client_options co;
  co.idle_timeout = 20s;
  tl::status client_status, server_status;
  if (over_serial) {
    int sv[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    tl::serial::steady_clock_ms clock;
    damaging_fd_port server_port{tl::serial::fd_port(sv[0]), tl::rng(3), 20}, client_port{tl::serial::fd_port(sv[1]), tl::rng(4), 20};
    std::thread device([&] {
      serial_roles_transport ep(client_port, clock, 1, {50});
      typename P::client c(opt, 12, 4);
      client_status = c.run(ep, batch, co);
      tl::wire::message_view extra;  // stay on the line: the stop's ACK may have been lost
      if (client_status.ok() && ep.recv(extra, 300ms).code != tl::errc::timed_out)
        client_status = {tl::errc::corrupt, "a frame after stop"};
    });
    serial_roles_transport ep(server_port, clock, 0, {50});
    tl::workflow::splitfed_server_report rep;
    server_status = server.run(ep, o, &rep);
    device.join();
    ::close(sv[0]);
    ::close(sv[1]);
    CHECK(server_port.damaged + client_port.damaged > 0);
    CHECK(rep.steps_served == 6);
    CHECK(rep.dropped_frames == 0);
    CHECK(ep.link_counters().delivered == 6 + 2);  // every smashed frame and update once
  } else {
    tl::in_process::hub net(2);
    std::thread device([&] {
      tl::in_process ep(net, 1);
      typename P::client c(opt, 12, 4);
      client_status = c.run(ep, batch, co);
    });
    tl::in_process ep(net, 0);
    server_status = server.run(ep, o);
    device.join();
  }
  REQUIRE(server_status.ok());
  REQUIRE(client_status.ok());
  return {std::vector<float>(server.device_parameters().begin(), server.device_parameters().end()),
          std::vector<float>(server.server_parameters().begin(), server.server_parameters().end())};
}
}  // namespace

TEST_CASE("split deployment servers over a damaged serial link (one device): the in-process bits",
          "[transport][split][serial]") {
  using model = tl::sequential<tl::dense<8, 6>, tl::relu, tl::dense<6, 3>>;
  using v1 = tl::workflow::splitfed_v1_deployment<model, tl::cut<2>, tl::nn::sgd, tl::fedavg>;
  using psl8 = tl::workflow::psl_deployment<model, tl::cut<2>, tl::nn::sgd, tl::fedavg, tl::codec::int8>;
  const auto a = split_serial_run<v1>(false);
  CHECK(split_serial_run<v1>(true) == a);
  const auto b = split_serial_run<psl8>(false);
  CHECK(split_serial_run<psl8>(true) == b);
  CHECK(b != a);  // the int8 smashed data changed the run
}

namespace {
/// A split deployment P with 3 clients over in_process endpoints on threads (2 rounds of 3
/// steps, b = 4, each client its own batches); returns both final segments and the report.
/// Multi-hop P (`cut<K1, K2>`): the edge is the server and a cloud runs on a thread of its own;
/// the segments after the device's are drawn as one (the one-cut server's), then split.
template <class P>
std::pair<std::vector<float>, tl::workflow::splitfed_server_report> split_threads_run(float phi, std::size_t clusters = 2) {
  constexpr std::size_t nd = P::device_model::param_count, ns = P::server_model::param_count;
  tl::rng init(5);
  std::vector<float> dev(nd), rest(P::model::param_count - nd);
  for (float& v : dev) v = init.uniform(-0.5f, 0.5f);
  for (float& v : rest) v = init.uniform(-0.5f, 0.5f);
  const std::vector<float> srv(rest.begin(), rest.begin() + ns);
  const tl::nn::sgd opt{.learning_rate = 0.2f};
  tl::workflow::splitfed_server_options o;
  o.rounds = 2;
  o.steps_per_round = 3;
  o.max_batch = 4;
  o.round_timeout = 20s;
  o.phi = phi;
  o.clusters = clusters;
  typename P::server server(opt, tl::fedavg{}, dev, srv);
  tl::workflow::splitfed_client_options co;
  co.idle_timeout = 20s;
  constexpr std::size_t n = 3;
  tl::in_process::hub net(n + 1);
  std::vector<tl::status> client_status(n + 1);
  std::vector<std::thread> clients;
  for (std::size_t k = 1; k <= n; ++k)
    clients.emplace_back([&, k] {
      tl::in_process ep(net, static_cast<tl::endpoint_id>(k));
      typename P::client c(opt, 12, 4);
      client_status[k] = c.run(
          ep,
          [k](std::uint32_t r, std::uint32_t t, float* x, std::uint8_t* y) -> std::size_t {
            tl::rng g(k * 1000 + r * 100 + t);
            for (std::size_t i = 0; i < 4; ++i) {
              y[i] = static_cast<std::uint8_t>(g.uniform_int(3));
              for (std::size_t j = 0; j < 8; ++j) x[i * 8 + j] = g.uniform(-1.0f, 1.0f) + (j % 3 == y[i] ? 1.0f : 0.0f);
            }
            return 4;
          },
          co);
    });
  tl::in_process ep(net, 0);
  tl::workflow::splitfed_server_report rep;
  tl::status server_status;
  std::vector<float> cloud_segment;
  if constexpr (P::multi_hop) {
    tl::in_process::hub link(2);
    typename P::cloud cloud(opt, std::span<const float>(rest).subspan(ns));
    tl::workflow::split_cloud_report crep;
    tl::status cloud_status;
    std::thread th([&] {
      tl::in_process c(link, 0);
      cloud_status = cloud.run(c, {.max_rows = n * 4}, &crep);
    });
    tl::in_process up(link, 1);
    server_status = server.run(ep, up, o, &rep);
    th.join();
    REQUIRE(cloud_status.ok());
    if constexpr (std::is_same_v<typename P::scheme, tl::split_scheme::parallel>)
      CHECK(crep.steps_served == rep.steps_served / n);  // one cloud step per lockstep step of the n clients
    else if constexpr (P::sequential || P::hand_over)
      CHECK(crep.steps_served == rep.steps_served);  // one client a step
    CHECK(crep.train_loss.size() == o.rounds);
    CHECK(crep.dropped_frames == 0);
    CHECK(std::equal(cloud.parameters().begin(), cloud.parameters().end(), server.cloud_parameters().begin(),
                     server.cloud_parameters().end()));
    cloud_segment.assign(server.cloud_parameters().begin(), server.cloud_parameters().end());
    rep.train_loss = crep.train_loss;  // the edge does not see the loss (NaN in its report)
  } else {
    server_status = server.run(ep, o, &rep);
  }
  for (auto& t : clients) t.join();
  REQUIRE(server_status.ok());
  for (std::size_t k = 1; k <= n; ++k) REQUIRE(client_status[k].ok());
  std::vector<float> all(server.device_parameters().begin(), server.device_parameters().end());
  all.insert(all.end(), server.server_parameters().begin(), server.server_parameters().end());
  all.insert(all.end(), cloud_segment.begin(), cloud_segment.end());
  return {all, rep};
}
}  // namespace

TEST_CASE("EPSL deployment over in_process threads: phi = 0 is PSL's bits, phi > 0 differs, phi outside [0, 1] "
          "is refused", "[transport][split][epsl]") {
  using model = tl::sequential<tl::dense<8, 6>, tl::relu, tl::dense<6, 3>>;
  using psl = tl::workflow::psl_deployment<model, tl::cut<2>, tl::nn::sgd, tl::fedavg>;
  using epsl = tl::workflow::epsl_deployment<model, tl::cut<2>, tl::nn::sgd, tl::fedavg>;
  static_assert(std::is_same_v<epsl::scheme, tl::split_scheme::epsl> && !epsl::server_copies && !epsl::sequential);
  const auto [wp, rp] = split_threads_run<psl>(0.5f);  // PSL ignores phi
  const auto [w0, r0] = split_threads_run<epsl>(0.0f);
  const auto [w1, r1] = split_threads_run<epsl>(0.5f);
  CHECK(w0 == wp);
  CHECK(r0.train_loss == rp.train_loss);
  CHECK(w1 != wp);
  CHECK(r1.steps_served == 3 * 2 * 3);
  CHECK(r1.clients_per_round == std::vector<std::size_t>{3, 3});
  CHECK(split_threads_run<epsl>(0.5f).first == w1);  // arrival order changes no bit
  // phi outside [0, 1]: the server refuses to start.
  tl::in_process::hub net(2);
  tl::in_process ep(net, 0);
  std::vector<float> dev(epsl::device_model::param_count), srv(epsl::server_model::param_count);
  epsl::server server(tl::nn::sgd{}, tl::fedavg{}, dev, srv);
  tl::workflow::splitfed_server_options o;
  o.phi = 1.5f;
  const tl::status s = server.run(ep, o);
  CHECK(s.code == tl::errc::invalid_argument);
  CHECK(std::string(s.message).find("phi must lie in [0, 1]") != std::string::npos);
}

TEST_CASE("VSL and EdgeSplit deployments over in_process threads: turns, hand-overs and clusters",
          "[transport][split][vsl][edge_split]") {
  using model = tl::sequential<tl::dense<8, 6>, tl::relu, tl::dense<6, 3>>;
  using psl = tl::workflow::psl_deployment<model, tl::cut<2>, tl::nn::sgd, tl::fedavg>;
  using v2 = tl::workflow::splitfed_v2_deployment<model, tl::cut<2>, tl::nn::sgd, tl::fedavg>;
  using vsl = tl::workflow::vsl_deployment<model, tl::cut<2>, tl::nn::sgd, tl::fedavg>;
  using edge = tl::workflow::edge_split_deployment<model, tl::cut<2>, tl::nn::sgd, tl::fedavg>;
  static_assert(vsl::hand_over && vsl::in_turns && !vsl::sequential && edge::clustered && edge::in_turns);
  const auto wp = split_threads_run<psl>(0.0f).first;
  // EdgeSplit with one cluster is PSL (every client in one lockstep turn, averaged at its end).
  CHECK(split_threads_run<edge>(0.0f, 1).first == wp);
  // Two clusters (clients 1 | 2, 3): another model; every step served, every segment averaged.
  const auto [we, re] = split_threads_run<edge>(0.0f, 2);
  CHECK(we != wp);
  CHECK(re.steps_served == 3 * 2 * 3);
  CHECK(re.clients_per_round == std::vector<std::size_t>{3, 3});
  CHECK(split_threads_run<edge>(0.0f, 2).first == we);
  // VSL: the segment handed from client to client — not SplitFedV2's average of the turns.
  const auto [wv, rv] = split_threads_run<vsl>(0.0f);
  CHECK(wv != split_threads_run<v2>(0.0f).first);
  CHECK(rv.steps_served == 3 * 2 * 3);
  CHECK(rv.clients_per_round == std::vector<std::size_t>{3, 3});
  CHECK(rv.rejected.empty());
  CHECK(split_threads_run<vsl>(0.0f).first == wv);
  // EdgeSplit with no cluster: refused.
  tl::in_process::hub net(2);
  tl::in_process ep(net, 0);
  std::vector<float> dev(edge::device_model::param_count), srv(edge::server_model::param_count);
  edge::server server(tl::nn::sgd{}, tl::fedavg{}, dev, srv);
  tl::workflow::splitfed_server_options o;
  o.clusters = 0;
  const tl::status s = server.run(ep, o);
  CHECK(s.code == tl::errc::invalid_argument);
  CHECK(std::string(s.message).find("at least one cluster") != std::string::npos);
}

TEST_CASE("multi-hop deployment (device -> edge -> cloud) over in_process threads: one server's bits with fp32 "
          "codecs; bad frames, sizes and NaN refused at both hops", "[transport][split][multihop]") {
  using model = tl::sequential<tl::dense<8, 6>, tl::relu, tl::dense<6, 5>, tl::relu, tl::dense<5, 3>>;
  using psl = tl::workflow::psl_deployment<model, tl::cut<2>, tl::nn::sgd, tl::fedavg>;
  using mh = tl::workflow::psl_deployment<model, tl::cut<2, 4>, tl::nn::sgd, tl::fedavg>;
  using mh8 = tl::workflow::psl_deployment<model, tl::cut<2, 4>, tl::nn::sgd, tl::fedavg, tl::codec::int8>;
  static_assert(mh::multi_hop && !psl::multi_hop && mh::cut == 6 && mh::upper_cut == 5);
  constexpr std::size_t nc = mh::cloud_model::param_count;
  // With fp32 codecs the hop changes no value: the edge and the cloud compute what one server
  // holding both segments computes, bit for bit (and the cloud's loss is that server's).
  const auto [w1, r1] = split_threads_run<psl>(0.0f);
  const auto [wm, rm] = split_threads_run<mh>(0.0f);
  CHECK(wm == w1);
  CHECK(rm.train_loss == r1.train_loss);
  CHECK(rm.steps_served == r1.steps_served);
  CHECK(rm.clients_per_round == std::vector<std::size_t>{3, 3});
  CHECK(split_threads_run<mh>(0.0f).first == wm);
  CHECK(split_threads_run<mh8>(0.0f).first != wm);  // int8 smashed data at both cuts: another run
  // The other schemes with one server segment: their turns, each step through the cloud.
  using v2 = tl::workflow::splitfed_v2_deployment<model, tl::cut<2>, tl::nn::sgd, tl::fedavg>;
  using v2h = tl::workflow::splitfed_v2_deployment<model, tl::cut<2, 4>, tl::nn::sgd, tl::fedavg>;
  using vsl = tl::workflow::vsl_deployment<model, tl::cut<2>, tl::nn::sgd, tl::fedavg>;
  using vslh = tl::workflow::vsl_deployment<model, tl::cut<2, 4>, tl::nn::sgd, tl::fedavg>;
  using es = tl::workflow::edge_split_deployment<model, tl::cut<2>, tl::nn::sgd, tl::fedavg>;
  using esh = tl::workflow::edge_split_deployment<model, tl::cut<2, 4>, tl::nn::sgd, tl::fedavg>;
  CHECK(split_threads_run<v2h>(0.0f).first == split_threads_run<v2>(0.0f).first);
  CHECK(split_threads_run<vslh>(0.0f).first == split_threads_run<vsl>(0.0f).first);
  CHECK(split_threads_run<esh>(0.0f, 2).first == split_threads_run<es>(0.0f, 2).first);

  // A fake edge against the real cloud: a duplicate step is dropped; a NaN activation, a frame of
  // no row count's size and a label out of range stop the cloud with the reason.
  const std::vector<float> cinit(nc, 0.1f);
  for (int variant = 0; variant < 4; ++variant) {
    INFO("cloud variant " << variant);
    tl::in_process::hub link(2);
    mh::cloud cloud(tl::nn::sgd{}, cinit);
    tl::workflow::split_cloud_report crep;
    tl::status cs;
    std::thread th([&] {
      tl::in_process c(link, 0);
      cs = cloud.run(c, {.max_rows = 8, .idle_timeout = 10s}, &crep);
    });
    tl::in_process edge(link, 1);
    tl::wire::message_view m;
    REQUIRE(edge.recv(m, 10s).ok());
    CHECK((m.header.type == tl::wire::message_type::model && m.header.count == nc));  // the hello
    std::vector<float> act(2 * 5, 0.5f);
    std::array<std::uint8_t, 2> labels{0, 2};
    if (variant == 1) act[3] = std::nanf("");
    if (variant == 3) labels[1] = 3;
    std::vector<std::vector<std::byte>> msgs(3);
    const auto send_step = [&](std::vector<std::byte>& msg, std::uint32_t step, std::size_t extra) {
      tl::workflow::encode_smashed<tl::codec::fp32>(act, labels.data(), 2, msg);
      msg.resize(msg.size() + extra);
      (void)edge.send(0, tl::workflow::split_smashed_header(1, step, 0, msg.size()),
                      {reinterpret_cast<const std::uint8_t*>(msg.data()), msg.size()});
    };
    send_step(msgs[0], 0, variant == 2 ? 1 : 0);
    if (variant == 0) {
      REQUIRE(edge.recv(m, 10s).ok());
      CHECK(tl::workflow::split_gradient_for(m.header, 1, 0, 0));
      CHECK(m.header.count == 4 * 2 * 5);
      send_step(msgs[1], 0, 0);  // the same step again (a QoS 1 redelivery): dropped
      tl::wire::message_header stop;
      stop.type = tl::wire::message_type::control;
      stop.aux = static_cast<std::uint64_t>(tl::wire::control_command::stop);
      stop.round = 1;
      (void)edge.send(0, stop, {});
      REQUIRE(edge.recv(m, 10s).ok());
      CHECK((m.header.type == tl::wire::message_type::update && m.header.count == nc));
    }
    th.join();
    INFO(cs.message);
    const tl::errc want[] = {tl::errc::ok, tl::errc::non_finite, tl::errc::shape_mismatch, tl::errc::invalid_argument};
    CHECK(cs.code == want[variant]);
    CHECK(crep.steps_served == (variant == 0 ? 1u : 0u));
    CHECK(crep.dropped_frames == (variant == 0 ? 1u : 0u));
  }

  // A fake cloud against the real edge: a cloud of another segment size, a NaN gradient and a
  // gradient of the wrong size stop the edge with the reason; so does a checkpoint path.
  for (int variant = 0; variant < 4; ++variant) {
    INFO("edge variant " << variant);
    tl::in_process::hub net(2), link(2);
    tl::rng init(5);
    std::vector<float> dev(mh::device_model::param_count), srv(mh::server_model::param_count);
    for (float& v : dev) v = init.uniform(-0.5f, 0.5f);
    for (float& v : srv) v = init.uniform(-0.5f, 0.5f);
    mh::server server(tl::nn::sgd{}, tl::fedavg{}, dev, srv);
    std::thread device([&] {
      tl::in_process ep(net, 1);
      mh::client c(tl::nn::sgd{}, 12, 4);
      (void)c.run(ep, [](std::uint32_t, std::uint32_t, float* x, std::uint8_t* y) -> std::size_t {
            std::fill_n(x, 4 * 8, 0.25f);
            std::fill_n(y, 4, std::uint8_t{1});
            return 4;
          }, {.idle_timeout = 1s});
    });
    std::vector<float> hello(variant == 0 ? nc - 1 : nc, 0.0f), grad;
    std::thread fake([&] {
      tl::in_process c(link, 0);
      tl::wire::message_header h;
      h.type = tl::wire::message_type::model;
      h.dtype = tl::wire::wire_dtype::fp32;
      h.count = static_cast<std::uint32_t>(hello.size());
      (void)c.broadcast(h, tl::as_bytes_le(std::span<const float>(hello)), 1s);
      tl::wire::message_view m;
      if (variant == 0 || variant == 3 || !c.recv(m, 5s).ok() || m.header.type != tl::wire::message_type::smashed)
        return;
      const std::size_t rows = m.header.count / (4 * 5 + 1);  // fp32 codec: 4 bytes a value, 1 a label
      grad.assign(rows * 5 + (variant == 2 ? 1 : 0), 0.01f);
      if (variant == 1) grad[2] = std::numeric_limits<float>::infinity();
      const auto g = tl::workflow::split_gradient_header(m.header.round, static_cast<std::uint32_t>(m.header.aux), 0,
                                                         4 * grad.size());
      (void)c.send(1, g, tl::as_bytes_le(std::span<const float>(grad)), 1s);
      (void)c.recv(m, 3s);  // the edge's stop
    });
    tl::workflow::splitfed_server_options o;
    o.rounds = 1;
    o.steps_per_round = 2;
    o.max_batch = 4;
    o.round_timeout = 5s;
    if (variant == 3) o.checkpoint_path = "unused.ckpt";
    tl::in_process ep(net, 0), up(link, 1);
    const tl::status s = server.run(ep, up, o);
    device.join();
    fake.join();
    INFO(s.message);
    const tl::errc want[] = {tl::errc::shape_mismatch, tl::errc::non_finite, tl::errc::corrupt, tl::errc::invalid_argument};
    CHECK(s.code == want[variant]);
  }
}

TEST_CASE("split server refuses a checkpoint of another model, client count, or a damaged one", "[transport][checkpoint][split]") {
  using model = tl::sequential<tl::dense<8, 6>, tl::relu, tl::dense<6, 3>>;
  using protocol = tl::workflow::splitfed_v1_deployment<model, tl::cut<2>, tl::nn::adam, tl::fedavg>;
  constexpr std::size_t nd = protocol::device_model::param_count, ns = protocol::server_model::param_count;
  const std::vector<float> dev(nd, 0.5f), srv(ns, -0.5f);
  const std::string path = "test_transport_split_checkpoint.bin";
  // One client: the checkpoint a server of this model writes on start (round 0) …
  auto run_with = [&](std::size_t clients, std::uint32_t rounds) {
    tl::in_process::hub net(clients + 1);
    tl::in_process ep(net, 0);
    protocol::server server(tl::nn::adam{}, tl::fedavg{}, dev, srv);
    tl::workflow::splitfed_server_options o;
    o.rounds = rounds;
    o.checkpoint_path = path;
    o.send_timeout = 100ms;
    tl::workflow::splitfed_server_report rep;
    const tl::status st = server.run(ep, o, &rep);
    return std::pair{st, rep};
  };
  std::remove(path.c_str());
  auto [fresh, fresh_rep] = run_with(1, 0);  // 0 rounds: writes the round-0 checkpoint and stops
  REQUIRE(fresh.ok());
  CHECK(fresh_rep.first_round == 1);
  CHECK(fresh_rep.restarts == 0);
  const bytes good = tl::io::read_file(path);
  tl::split_checkpoint c;
  REQUIRE(tl::decode_split_checkpoint(good, c).ok());
  CHECK(c.rounds_completed == 0);
  CHECK(c.device == dev);
  CHECK(c.server == std::vector<float>(srv));
  REQUIRE(c.copies.size() == 1);
  CHECK(c.copies[0].vectors.size() == 2);  // Adam: m and v of the server copy
  // … is resumed with the next restart epoch, which is saved at once.
  auto [again, again_rep] = run_with(1, 0);
  REQUIRE(again.ok());
  CHECK(again_rep.restarts == 1);
  REQUIRE(tl::decode_split_checkpoint(tl::io::read_file(path), c).ok());
  CHECK(c.restarts == 1);
  // Another number of clients.
  auto [clients, clients_rep] = run_with(2, 0);
  CHECK(clients.code == tl::errc::shape_mismatch);
  // Another model (segment sizes).
  {
    tl::split_checkpoint other = c;
    other.device.push_back(1.0f);
    tl::io::write_file(path, tl::encode_split_checkpoint(other));
    auto [st, r] = run_with(1, 0);
    CHECK(st.code == tl::errc::shape_mismatch);
    CHECK(std::string(st.message).find("another model") != std::string::npos);
  }
  // Another optimizer state shape (sgd-like: one vector).
  {
    tl::split_checkpoint other = c;
    other.copies[0].vectors.pop_back();
    tl::io::write_file(path, tl::encode_split_checkpoint(other));
    CHECK(run_with(1, 0).first.code == tl::errc::corrupt);
  }
  // A bit flip, a truncation: refused, and the file is left as it was (not overwritten).
  {
    bytes bad = good;
    bad[bad.size() / 2] ^= 0x10;
    tl::io::write_file(path, bad);
    CHECK(run_with(1, 0).first.code == tl::errc::checksum_mismatch);
    CHECK(tl::io::read_file(path) == bad);
    tl::io::write_file(path, std::span<const std::uint8_t>(good).first(good.size() - 9));
    CHECK(run_with(1, 0).first.code == tl::errc::truncated);
  }
  std::remove(path.c_str());
  std::remove((path + ".tmp").c_str());
}

TEST_CASE("split roles at the cut: decode_smashed / decode_gradient refuse bad sizes, codec payloads, NaN and labels",
          "[transport][split]") {
  namespace wf = tl::workflow;
  // Messages of b rows, cut 2: the codec's message of b·2 activations, then b label bytes (classes 3).
  std::size_t rows = 99;
  std::vector<float> x;
  std::vector<std::uint8_t> y;
  const std::vector<float> act{0.5f, -1.0f, 2.0f, 0.0f};  // b = 2
  const std::uint8_t labels[2] = {2, 0};
  std::vector<std::byte> msg;
  auto with_floats = [](std::vector<std::byte> m, const std::vector<float>& v) {  // m with its first values replaced
    std::memcpy(m.data(), v.data(), 4 * v.size());
    return m;
  };
  // fp32: 4n + b bytes, lossless.
  REQUIRE(wf::encode_smashed<tl::codec::fp32>(act, labels, 2, msg) == 4 * 4 + 2);
  CHECK(wf::smashed_message_bytes<tl::codec::fp32>(2, 2) == 18);
  REQUIRE(wf::decode_smashed<tl::codec::fp32>(msg, 2, 3, 4, rows, x, y).ok());
  CHECK(rows == 2);
  CHECK(x == act);
  CHECK(y == std::vector<std::uint8_t>{2, 0});
  auto code32 = [&](const std::vector<std::byte>& m, std::size_t max_rows = 4) {
    return wf::decode_smashed<tl::codec::fp32>(m, 2, 3, max_rows, rows, x, y).code;
  };
  CHECK(code32(std::vector<std::byte>(msg.begin(), msg.end() - 1)) == tl::errc::shape_mismatch);  // no b fits
  CHECK(code32({}) == tl::errc::shape_mismatch);                                                  // b = 0
  CHECK(code32(msg, 1) == tl::errc::shape_mismatch);                                              // b > max_batch
  CHECK(code32(with_floats(msg, {0.5f, std::nanf("")})) == tl::errc::non_finite);
  CHECK(code32(with_floats(msg, {0.5f, -1.0f, std::numeric_limits<float>::infinity()})) == tl::errc::non_finite);
  std::vector<std::byte> bad_label = msg;
  bad_label[17] = std::byte{3};  // label = classes
  CHECK(code32(bad_label) == tl::errc::invalid_argument);
  // int8: n + 8 + b bytes; a scale that is not a positive finite number is refused before any value is used.
  REQUIRE(wf::encode_smashed<tl::codec::int8>(act, labels, 2, msg) == 4 + 8 + 2);
  REQUIRE(wf::decode_smashed<tl::codec::int8>(msg, 2, 3, 4, rows, x, y).ok());
  CHECK(rows == 2);
  CHECK(std::abs(x[2] - 2.0f) < 0.01f);
  for (const float scale : {0.0f, -1.0f, std::nanf(""), std::numeric_limits<float>::infinity()}) {
    std::vector<std::byte> m = msg;
    std::memcpy(m.data(), &scale, 4);
    CHECK(wf::decode_smashed<tl::codec::int8>(m, 2, 3, 4, rows, x, y).code == tl::errc::corrupt);
  }
  CHECK(wf::decode_smashed<tl::codec::int8>(std::vector<std::byte>(msg.begin(), msg.end() - 1), 2, 3, 4, rows, x, y).code ==
        tl::errc::shape_mismatch);
  // fp16: 2n + b bytes; a NaN or Inf half is refused as a non-finite activation.
  REQUIRE(wf::encode_smashed<tl::codec::fp16>(act, labels, 2, msg) == 2 * 4 + 2);
  REQUIRE(wf::decode_smashed<tl::codec::fp16>(msg, 2, 3, 4, rows, x, y).ok());
  CHECK(x == act);  // exact in binary16
  for (const std::uint16_t h : {std::uint16_t{0x7E00}, std::uint16_t{0x7C00}}) {  // NaN, +Inf
    std::vector<std::byte> m = msg;
    std::memcpy(m.data() + 2, &h, 2);
    CHECK(wf::decode_smashed<tl::codec::fp16>(m, 2, 3, 4, rows, x, y).code == tl::errc::non_finite);
  }
  // top_k<fp32, 500>: 4 + 4k + 4k + b bytes (k = 2 of 4); an index out of range or repeated is refused.
  using topk = tl::codec::top_k<tl::codec::fp32, 500>;
  REQUIRE(wf::encode_smashed<topk>(act, labels, 2, msg) == 4 + 8 + 8 + 2);
  REQUIRE(wf::decode_smashed<topk>(msg, 2, 3, 4, rows, x, y).ok());
  CHECK(x == std::vector<float>{0.0f, -1.0f, 2.0f, 0.0f});
  for (const std::uint32_t second : {std::uint32_t{4}, std::uint32_t{1}}) {  // out of range; the same as the first
    std::vector<std::byte> m = msg;
    std::memcpy(m.data() + 8, &second, 4);
    CHECK(wf::decode_smashed<topk>(m, 2, 3, 4, rows, x, y).code == tl::errc::corrupt);
  }
  // The gradient (device side): exactly the codec's size for the batch, a payload it accepts, finite values.
  std::vector<float> g(4);
  const std::vector<float> grad{1.0f, -2.0f, 0.25f, 0.0f};
  REQUIRE(wf::encode_at_cut<tl::codec::fp16>(grad, msg) == 8);
  REQUIRE(wf::decode_gradient<tl::codec::fp16>(msg, g).ok());
  CHECK(g == grad);
  CHECK(wf::decode_gradient<tl::codec::fp16>(std::span<const std::byte>(msg).first(6), g).code == tl::errc::corrupt);
  const std::uint16_t nan16 = 0x7E00;
  std::memcpy(msg.data(), &nan16, 2);
  CHECK(wf::decode_gradient<tl::codec::fp16>(msg, g).code == tl::errc::non_finite);
  REQUIRE(wf::encode_at_cut<tl::codec::int8>(grad, msg) == 12);
  const float zero = 0.0f;
  std::memcpy(msg.data(), &zero, 4);
  CHECK(wf::decode_gradient<tl::codec::int8>(msg, g).code == tl::errc::corrupt);
  CHECK(wf::check_gradient(std::vector<float>{1.0f, -2.0f}).ok());
}

TEST_CASE("split client: a duplicate model is ignored, a restarted server's model redoes the round", "[transport][split]") {
  using model = tl::sequential<tl::dense<8, 6>, tl::relu, tl::dense<6, 3>>;
  using protocol = tl::workflow::splitfed_v1_deployment<model, tl::cut<2>, tl::nn::adam, tl::fedavg>;
  constexpr std::size_t nd = protocol::device_model::param_count, s = protocol::cut, b = 2;
  std::vector<float> dev(nd);
  for (std::size_t i = 0; i < nd; ++i) dev[i] = 0.05f * static_cast<float>(static_cast<int>(i % 11) - 5);
  std::vector<float> grad(b * s);
  for (std::size_t i = 0; i < grad.size(); ++i) grad[i] = 0.1f * static_cast<float>(static_cast<int>(i % 7) - 3);
  // One client, two steps per round; `restart`: the fake server sends a duplicate of the
  // model after step 0's smashed frame, then (after step 0's gradient) the model again with epoch 1.
  struct outcome {
    std::vector<std::uint64_t> smashed_aux;  // aux of every smashed frame, in order
    std::vector<float> first_smashed, redone_smashed, update;
    std::uint64_t update_aux = 0;
    int restarts = 0;
    tl::status client;
  };
  auto scenario = [&](bool restart) {
    outcome out;
    tl::in_process::hub net(2);
    std::thread th([&] {
      tl::in_process ep(net, 1);
      protocol::client c(tl::nn::adam{}, 10, b);
      tl::workflow::splitfed_client_options o;
      o.idle_timeout = 5s;
      o.on_restart = [&](std::uint32_t) { ++out.restarts; };
      out.client = c.run(
          ep,
          [](std::uint32_t r, std::uint32_t t, float* x, std::uint8_t* y) {
            constexpr std::size_t rows = 2;  // = b
            for (std::size_t i = 0; i < rows * 8; ++i) x[i] = 0.01f * static_cast<float>((i * 7 + t * 3 + r) % 13);
            y[0] = static_cast<std::uint8_t>(t % 3);
            y[1] = 2;
            return rows;
          },
          o);
    });
    tl::in_process ep(net, 0);
    auto send = [&](wire::message_type type, std::uint64_t aux, const std::vector<float>& v) {
      wire::message_header h;
      h.type = type;
      // a model is fp32; a gradient is the fp32 codec's message (dtype bytes, 4 bytes a value)
      h.dtype = type == wire::message_type::gradient ? wire::wire_dtype::bytes : wire::wire_dtype::fp32;
      h.round = 1;
      h.aux = aux;
      h.count = static_cast<std::uint32_t>(type == wire::message_type::gradient ? 4 * v.size() : v.size());
      (void)ep.send(1, h, tl::as_bytes_le(std::span<const float>(v)));
    };
    auto next = [&](std::vector<float>* keep) {  // the next frame from the client: its aux (0 on timeout)
      wire::message_view m;
      if (!ep.recv(m, 5s).ok()) return std::uint64_t{0xDEAD};
      if (m.header.type == wire::message_type::smashed) out.smashed_aux.push_back(m.header.aux);
      if (keep != nullptr && m.header.type == wire::message_type::smashed) {
        std::size_t rows = 0;
        std::vector<std::uint8_t> labels;
        (void)tl::workflow::decode_smashed<tl::codec::fp32>(std::as_bytes(m.payload), s, 3, b, rows, *keep, labels);
      } else if (keep != nullptr) {
        keep->resize(m.header.count);
        (void)wire::read_fp32(m, *keep);
      }
      if (m.header.type == wire::message_type::update) out.update_aux = m.header.aux;
      return m.header.aux;
    };
    constexpr std::uint64_t e1 = std::uint64_t{1} << 32;
    send(wire::message_type::model, 2, dev);  // round 1, S = 2, epoch 0
    next(&out.first_smashed);                 // smashed step 0
    std::uint64_t tag = 0;
    if (restart) {
      send(wire::message_type::model, 2, dev);  // a QoS 1 duplicate: must not restart the round
      send(wire::message_type::gradient, 0, grad);
      next(nullptr);                            // smashed step 1 (epoch 0)
      send(wire::message_type::model, 2 | e1, dev);  // the server restarted: epoch 1
      next(&out.redone_smashed);                // smashed step 0 again, epoch 1
      send(wire::message_type::gradient, 1, grad);   // a gradient of the dead epoch: ignored
      tag = e1;
    }
    send(wire::message_type::gradient, 0 | tag, grad);
    next(nullptr);  // smashed step 1
    send(wire::message_type::gradient, 1 | tag, grad);
    next(&out.update);  // the update
    wire::message_header stop;
    stop.type = wire::message_type::control;
    stop.aux = static_cast<std::uint64_t>(wire::control_command::stop);
    (void)ep.send(1, stop, {});
    th.join();
    return out;
  };
  const outcome straight = scenario(false);
  REQUIRE(straight.client.ok());
  CHECK(straight.smashed_aux == std::vector<std::uint64_t>{0, 1});
  CHECK(straight.update_aux == 10);
  const outcome redone = scenario(true);
  REQUIRE(redone.client.ok());
  constexpr std::uint64_t e1 = std::uint64_t{1} << 32;
  // Step 0, step 1 (the duplicate model did not restart the round), then the redo in epoch 1.
  CHECK(redone.smashed_aux == std::vector<std::uint64_t>{0, 1, 0 | e1, 1 | e1});
  CHECK(redone.restarts == 1);
  CHECK(redone.redone_smashed == redone.first_smashed);  // the same model and batch: the same activations
  CHECK(redone.update_aux == (10 | e1));
  // The optimizer was rolled back to the round's start: the redone round ends with the same bits.
  REQUIRE(redone.update.size() == nd);
  CHECK(redone.update == straight.update);
  CHECK(straight.update != dev);  // the steps did move the segment
}

// ---- hostile networks (issue 25): MAC framing, bounded reports, canonical checkpoints, no throws ----------

TEST_CASE("wire v2: the MAC trailer is framed and covered", "[transport][wire][auth]") {
  const float v[3] = {1.0f, 2.0f, 3.0f};
  wire::message_header h;
  h.type = wire::message_type::update;
  h.flags = wire::wire_flag_mac;
  h.round = 7;
  bytes f(wire::frame_size(12, wire::wire_flag_mac));
  CHECK(f.size() == wire::wire_overhead_bytes + 12 + wire::wire_mac_bytes);
  std::size_t n = 0;
  REQUIRE(wire::encode_fp32(h, v, f, n).ok());
  REQUIRE(n == f.size());
  wire::message_view m;
  REQUIRE(wire::decode(f, m).ok());
  CHECK(m.header.flags == wire::wire_flag_mac);
  CHECK(m.payload.size() == 12);
  CHECK(m.authenticated.size() == wire::frame_size(12));
  CHECK(m.mac.size() == wire::wire_mac_bytes);
  CHECK(m.mac.data() == f.data() + wire::frame_size(12));
  // A frame without the flag has no MAC spans; a truncated MAC is a truncated frame.
  bytes g(wire::frame_size(12));
  h.flags = 0;
  REQUIRE(wire::encode_fp32(h, v, g, n).ok());
  REQUIRE(wire::decode(g, m).ok());
  CHECK((m.mac.empty() && m.authenticated.empty()));
  CHECK(wire::decode(std::span<const std::uint8_t>(f.data(), f.size() - 1), m).code == tl::errc::truncated);
  h.flags = 0x80;
  CHECK(wire::encode_fp32(h, v, g, n).code == tl::errc::invalid_argument);
}

#if TINYLARGE_TEST_SODIUM
TEST_CASE("auth: only frames with the run key's MAC are authentic", "[transport][auth]") {
  const auto key = tl::frame_key::from_hex("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n");
  const auto other = tl::frame_key::from_hex(std::string(64, 'a'));
  const std::optional<tl::frame_key> k(key), none;
  std::vector<float> v(100, 0.25f);
  wire::message_header h;
  h.type = wire::message_type::model;
  h.dtype = wire::wire_dtype::fp32;
  h.count = 100;
  h.round = 3;
  bytes f;
  std::size_t n = 0;
  REQUIRE(tl::seal(k, h, tl::as_bytes_le(std::span<const float>(v)), f, n, {}).ok());
  REQUIRE(n == f.size());
  wire::message_view m;
  REQUIRE(wire::decode(f, m).ok());
  CHECK(tl::authentic(k, m));
  CHECK_FALSE(tl::authentic(std::optional<tl::frame_key>(other), m));
  CHECK_FALSE(tl::authentic(none, m));  // a receiver without the key cannot check it: refused
  // What an outsider can do: rewrite a field and fix both CRCs. The MAC then fails.
  for (const std::size_t off : {std::size_t{12} /*round*/, std::size_t{8} /*sender*/, std::size_t{24} /*aux*/,
                                wire::wire_header_bytes + 40 /*payload*/}) {
    bytes g = f;
    g[off] ^= 0x01;
    wire::detail::wire_put32(g.data() + 44, wire::detail::wire_crc32(g.data(), 44));
    wire::detail::wire_put32(g.data() + wire::wire_header_bytes + 400,
                             wire::detail::wire_crc32(g.data() + wire::wire_header_bytes, 400));
    REQUIRE(wire::decode(g, m).ok());
    CHECK_FALSE(tl::authentic(k, m));
  }
  bytes g = f;
  g.back() ^= 0x80;  // the MAC itself
  REQUIRE(wire::decode(g, m).ok());
  CHECK_FALSE(tl::authentic(k, m));
  // A keyless frame is refused by a keyed receiver, accepted by a keyless one.
  REQUIRE(tl::seal(none, h, tl::as_bytes_le(std::span<const float>(v)), g, n, {}).ok());
  REQUIRE(wire::decode(g, m).ok());
  CHECK_FALSE(tl::authentic(k, m));
  CHECK(tl::authentic(none, m));
  // Keys: 64 hex characters or 32 raw bytes; anything else is an error.
#if TINYLARGE_HAS_EXCEPTIONS
  CHECK_THROWS_AS(tl::frame_key::from_hex("abcd"), tl::error);
  CHECK_THROWS_AS(tl::frame_key::from_hex(std::string(64, 'z')), tl::error);
#endif
  const std::string raw = "tl_test_run.key";
  bytes kb(32);
  for (std::size_t i = 0; i < 32; ++i) kb[i] = static_cast<std::uint8_t>(i);
  tl::io::write_file(raw, kb);
  const tl::frame_key from_file = tl::frame_key::from_file(raw);
  std::remove(raw.c_str());
  REQUIRE(tl::seal(std::optional<tl::frame_key>(from_file), h, tl::as_bytes_le(std::span<const float>(v)), g, n, {}).ok());
  CHECK(g == f);  // the same key from a raw file gives the same MAC
}
#endif

TEST_CASE("report bounds: a count of 2^32 and an update of FLT_MAX cannot replace the global model",
          "[transport][aggregate][bounds]") {
  // 3 honest clients near w_t, one attacker; FedAvg.
  const std::size_t d = 256;
  std::vector<float> w(d, 0.0f);
  tl::rng g(11);
  for (float& x : w) x = g.uniform(-1.0f, 1.0f);
  std::vector<std::vector<float>> honest(3, w);
  const std::int64_t honest_n[3] = {100, 120, 140};
  for (auto& u : honest)
    for (float& x : u) x += 0.01f * g.uniform(-1.0f, 1.0f);
  auto run_round = [&](const std::vector<float>& attack, std::int64_t attack_n, const tl::report_bounds& b,
                       std::vector<float>& out, bool with_attacker) {
    out = w;
    std::vector<std::vector<float>> ups = honest;
    if (with_attacker) ups.push_back(attack);
    std::vector<tl::client_result<tl::fp32_update>> rs;
    for (std::size_t i = 0; i < ups.size(); ++i) {
      const std::int64_t n = i < 3 ? honest_n[i] : attack_n;
      const auto br = tl::bound_report(b, std::span<float>(ups[i]), std::span<const float>(w), n);
      rs.push_back({i + 1, tl::fp32_update{ups[i]}, br.examples});
    }
    tl::aggregator<tl::fedavg> agg(tl::fedavg{}, d);
    return agg.round(std::span<float>(out), rs).outcome;
  };
  auto dist = [](const std::vector<float>& a, const std::vector<float>& b) {
    double s2 = 0.0;
    for (std::size_t j = 0; j < a.size(); ++j) s2 += (double(a[j]) - b[j]) * (double(a[j]) - b[j]);
    return std::sqrt(s2);
  };
  std::vector<float> clean, attacked;
  REQUIRE(run_round({}, 0, {}, clean, false).ok());
  std::vector<float> target(d, 5.0f);  // what the attacker wants the model to be
  const double to_target = dist(w, target);

  // Unbounded (count cap at the int32 limit only, no norm bound): count 2^32 is clipped to 2^31-1,
  // which still makes the attacker's model the global one.
  REQUIRE(run_round(target, std::int64_t{1} << 32, {}, attacked, true).ok());
  const double unbounded = dist(attacked, target);
  CHECK(unbounded < 1e-3 * to_target);
  // An update of FLT_MAX values without a norm bound: the round fails (the mean overflows) or the model explodes.
  std::vector<float> huge(d, std::numeric_limits<float>::max());
  const tl::status flt = run_round(huge, 140, {}, attacked, true);
  bool exploded = !flt.ok();
  for (const float x : attacked) exploded = exploded || !(std::fabs(x) < 1e30f);
  CHECK(exploded);

  // Bounded: counts capped at the largest honest count, update norms clipped to C.
  tl::report_bounds b;
  b.max_examples = 140;
  b.max_update_norm = 1.0;
  const double s = 140.0 / (140.0 + 100.0 + 120.0 + 140.0);  // the attacker's largest weight share
  for (const auto& attack : {target, huge}) {
    REQUIRE(run_round(attack, std::int64_t{1} << 32, b, attacked, true).ok());
    const double moved = dist(attacked, w), off = dist(attacked, clean);
    std::printf("report bounds (C = 1, cap 140): attacker %s -> |w' - w| = %.4f (bound C = 1), "
                "|w' - w_clean| = %.4f (bound 2sC = %.4f)\n",
                attack[0] == 5.0f ? "target model, count 2^32" : "FLT_MAX, count 2^32", moved, off, 2 * s);
    CHECK(moved <= 1.0 + 1e-5);
    CHECK(off <= 2 * s * 1.0 + 1e-5);
    for (const float x : attacked) CHECK(std::isfinite(x));
  }
  // Within the bounds nothing changes, bit for bit.
  std::vector<float> same;
  b.max_update_norm = 1e3;
  REQUIRE(run_round({}, 0, b, same, false).ok());
  CHECK(same == clean);
  const auto r = tl::bound_report(b, std::span<float>(honest[0]), std::span<const float>(w), 100);
  CHECK((!r.count_clipped && !r.norm_clipped && r.examples == 100));
}

TEST_CASE("federated server: bad frames on a client's topic do not cost it its round", "[transport][federated][hostile]") {
  // Endpoint 1 is honest; a spoofer holds a second endpoint with id 1 on the same hub (what an
  // unauthenticated network allows) and sends, before each real update, updates with a NaN, an Inf,
  // a count of 2^63, a count of 0 — all refused, the real update still counted: the run is bit-identical.
  tl_test::least_squares_task task;
  task.dimension = 24;
  auto run = [&](bool attack) {
    tl::in_process::hub net(4);
    std::vector<float> nan(24, 0.5f), inf(24, 0.5f), fine(24, 0.5f);
    nan[3] = std::numeric_limits<float>::quiet_NaN();
    inf[5] = std::numeric_limits<float>::infinity();
    std::vector<std::thread> th;
    for (std::uint32_t k = 1; k <= 3; ++k) {
      th.emplace_back([&, k] {
        tl::in_process ep(net, k), spoofer(net, k);
        wf::federated_client_options o;
        o.idle_timeout = 10s;
        (void)tl_test::run_client(
            ep,
            [&](std::uint32_t, std::uint32_t r, std::uint64_t seed, std::span<const float> g, std::span<float> out) {
              if (attack && k == 1) {
                wire::message_header h;
                h.type = wire::message_type::update;
                h.dtype = wire::wire_dtype::fp32;
                h.round = r;
                h.count = 24;
                h.aux = 30;
                (void)spoofer.send(0, h, tl::as_bytes_le(std::span<const float>(nan)));
                (void)spoofer.send(0, h, tl::as_bytes_le(std::span<const float>(inf)));
                h.aux = std::uint64_t{1} << 63;
                (void)spoofer.send(0, h, tl::as_bytes_le(std::span<const float>(fine)));
                h.aux = 0;
                (void)spoofer.send(0, h, tl::as_bytes_le(std::span<const float>(fine)));
              }
              return task(k, seed, g, out);
            },
            o);
      });
    }
    tl::in_process server(net, 0);
    wf::fedavg_server<tl::fedavg> role(tl::fedavg{}, 24, 31);
    role.set_global(tl_test::initial_global(24, 5));
    wf::federated_server_options opt;
    opt.rounds = 3;
    opt.min_clients = 3;
    opt.round_timeout = 10s;
    wf::federated_server_report rep;
    const tl::status st = wf::run_federated_server(server, role, opt, &rep);
    for (auto& t : th) t.join();
    CHECK(st.ok());
    CHECK(rep.updates_per_round == std::vector<std::size_t>{3, 3, 3});
    CHECK(rep.rejected_frames == (attack ? 12u : 0u));
    return std::vector<float>(role.global().begin(), role.global().end());
  };
  CHECK(run(true) == run(false));
}

// Without exceptions a directory or unreadable file ends in on_fatal_error (by design), so this
// case is about the exception-enabled build.
#if TINYLARGE_HAS_EXCEPTIONS
TEST_CASE("servers return a status, never throw, on bad checkpoint files", "[transport][checkpoint][hostile]") {
  tl_test::least_squares_task task;
  task.dimension = 8;
  auto serve = [&](const std::string& path) {
    tl::in_process::hub net(2);
    tl::in_process server(net, 0);
    wf::fedavg_server<tl::fedavg> role(tl::fedavg{}, 8, 1);
    wf::federated_server_options opt;
    opt.rounds = 1;
    opt.round_timeout = 100ms;
    opt.checkpoint_path = path;
    return wf::run_federated_server(server, role, opt);
  };
  const std::string dir = "tl_test_ckpt_dir";
  std::remove(dir.c_str());
  REQUIRE(std::system(("mkdir -p " + dir).c_str()) == 0);
  tl::status s;
  CHECK_NOTHROW(s = serve(dir));  // a directory
  CHECK_FALSE(s.ok());
  tl::split_checkpoint sc;
  bool found = false;
  CHECK_NOTHROW(s = tl::read_split_checkpoint(dir, sc, found));
  CHECK_FALSE(s.ok());
  // Corrupt files: random bytes, a truncated checkpoint, a bit flip.
  tl::server_checkpoint c;
  c.rounds_completed = 1;
  c.global.assign(8, 0.5f);
  const bytes good = tl::encode_server_checkpoint(c);
  const std::string file = "tl_test_ckpt.bin";
  for (int variant = 0; variant < 3; ++variant) {
    bytes b = good;
    if (variant == 0) b.assign(100, 0x17);
    if (variant == 1) b.resize(b.size() / 2);
    if (variant == 2) b[wire::wire_header_bytes + 3] ^= 0x04;
    tl::io::write_file(file, b);
    CHECK_NOTHROW(s = serve(file));
    CHECK_FALSE(s.ok());
  }
  std::remove(file.c_str());
  // A checkpoint that cannot be written (its directory does not exist) is a status too.
  CHECK_NOTHROW(s = serve(dir + "/missing/ckpt.bin"));
  CHECK_FALSE(s.ok());
  std::remove(dir.c_str());
}
#endif  // TINYLARGE_HAS_EXCEPTIONS

TEST_CASE("checkpoint decoders accept only canonical frames (sender, sequence, flags = 0)", "[transport][checkpoint]") {
  tl::server_checkpoint c;
  c.rounds_completed = 2;
  c.global = {1.0f, 2.0f};
  tl::split_checkpoint sc;
  sc.device = {1.0f};
  sc.server = {2.0f};
  for (const bytes& good : {tl::encode_server_checkpoint(c), tl::encode_split_checkpoint(sc)}) {
    wire::message_view m;
    REQUIRE(wire::decode(good, m).ok());
    for (int field = 0; field < 3; ++field) {
      wire::message_header h = m.header;
      if (field == 0) h.sender = 1;
      if (field == 1) h.sequence = 5;
      if (field == 2) h.flags = wire::wire_flag_mac;
      bytes f(wire::frame_size(m.payload.size(), h.flags));
      std::size_t n = 0;
      wire::wire_limits lim;
      lim.max_payload_bytes = 0xFFFFFFFFu;
      REQUIRE(wire::encode(h, m.payload, f, n, lim).ok());
      tl::server_checkpoint c2;
      tl::split_checkpoint s2;
      const tl::status st = good.size() == tl::encode_server_checkpoint(c).size() && good == tl::encode_server_checkpoint(c)
                                ? tl::decode_server_checkpoint(f, c2)
                                : tl::decode_split_checkpoint(f, s2);
      CHECK(st.code == tl::errc::corrupt);
    }
  }
}

TEST_CASE("federated client: rounds move forward within a bound, the model keeps its size", "[transport][federated][hostile]") {
  tl::in_process::hub net(2);
  std::vector<std::uint32_t> answered;
  tl::status client_status;
  std::thread th([&] {
    tl::in_process ep(net, 1);
    wf::federated_client_options o;
    o.idle_timeout = 10s;
    o.max_round_skip = 10;
    o.max_round = 100;
    client_status = tl_test::run_client(
        ep,
        [&](std::uint32_t, std::uint32_t r, std::uint64_t, std::span<const float> g, std::span<float> out) {
          answered.push_back(r);
          std::copy(g.begin(), g.end(), out.begin());
          return std::int64_t{1};
        },
        o);
  });
  tl::in_process server(net, 0);
  std::vector<float> w(6, 1.0f), w_big(7, 1.0f);
  auto model = [&](std::uint32_t round, const std::vector<float>& v) {
    wire::message_header h;
    h.type = wire::message_type::model;
    h.dtype = wire::wire_dtype::fp32;
    h.round = round;
    h.count = static_cast<std::uint32_t>(v.size());
    REQUIRE(server.send(1, h, tl::as_bytes_le(std::span<const float>(v))).ok());
    wire::message_view m;
    return server.recv(m, 300ms).ok() && m.header.round == round;  // did the client answer?
  };
  CHECK(model(1, w));
  CHECK_FALSE(model(1u + 11u, w));  // more than max_round_skip ahead
  CHECK_FALSE(model(0xFFFFFFFFu, w));  // beyond max_round
  CHECK_FALSE(model(2, w_big));     // another model size
  CHECK(model(11, w));              // within the bound
  wire::message_header stop;
  stop.type = wire::message_type::control;
  stop.aux = static_cast<std::uint64_t>(wire::control_command::stop);
  REQUIRE(server.send(1, stop, {}).ok());
  th.join();
  CHECK(client_status.ok());
  CHECK(answered == std::vector<std::uint32_t>{1, 11});
}

TEST_CASE("federated client: a final model on the stop is checked before on_final sees it", "[transport][federated][hostile]") {
  // (payload, dtype) of the stop → the client's status and whether on_final ran.
  const auto stop_with = [](const std::vector<float>& payload, wire::wire_dtype dtype, std::vector<float>* seen) {
    tl::in_process::hub net(2);
    tl::status client_status;
    bool called = false;
    std::thread th([&] {
      tl::in_process ep(net, 1);
      wf::federated_client_options o;
      o.idle_timeout = 10s;
      o.on_final = [&](std::uint32_t r, std::span<const float> w) {
        called = r == 3;
        if (seen != nullptr) seen->assign(w.begin(), w.end());
      };
      client_status = tl_test::run_client(
          ep,
          [&](std::uint32_t, std::uint32_t, std::uint64_t, std::span<const float> g, std::span<float> out) {
            std::copy(g.begin(), g.end(), out.begin());
            return std::int64_t{1};
          },
          o);
    });
    tl::in_process server(net, 0);
    const std::vector<float> w(6, 1.0f);
    wire::message_header h;
    h.type = wire::message_type::model;
    h.dtype = wire::wire_dtype::fp32;
    h.round = 1;
    h.count = 6;
    REQUIRE(server.send(1, h, tl::as_bytes_le(std::span<const float>(w))).ok());
    wire::message_view m;
    REQUIRE(server.recv(m, 5s).ok());  // its update: it knows the model's size now
    wire::message_header stop;
    stop.type = wire::message_type::control;
    stop.aux = static_cast<std::uint64_t>(wire::control_command::stop);
    stop.round = 3;
    stop.dtype = dtype;
    stop.count = static_cast<std::uint32_t>(payload.size());
    REQUIRE(server.send(1, stop, tl::as_bytes_le(std::span<const float>(payload))).ok());
    th.join();
    return std::make_pair(client_status.code, called);
  };
  std::vector<float> seen;
  const std::vector<float> final_model{0.5f, -1.0f, 2.0f, 0.0f, 3.0f, 4.0f};
  CHECK(stop_with(final_model, wire::wire_dtype::fp32, &seen) == std::make_pair(tl::errc::ok, true));
  CHECK(seen == final_model);
  CHECK(stop_with(std::vector<float>(7, 1.0f), wire::wire_dtype::fp32, nullptr) ==
        std::make_pair(tl::errc::shape_mismatch, false));
  std::vector<float> with_nan = final_model;
  with_nan[4] = std::numeric_limits<float>::quiet_NaN();
  CHECK(stop_with(with_nan, wire::wire_dtype::fp32, nullptr) == std::make_pair(tl::errc::non_finite, false));
  CHECK(stop_with(std::vector<float>{}, wire::wire_dtype::bytes, nullptr) == std::make_pair(tl::errc::ok, false));
}

// ---------------------------------------------------------------------------
// Serial link (transport/serial.hpp): COBS framing, the resynchronising decoder,
// stop-and-wait with retransmission and duplicate suppression. Two links in one
// thread over in-memory byte queues: a read that finds its queue empty lets the
// peer link process its own input (so a blocking send is answered) and advances
// a fake clock by 1 ms, so every run is deterministic. Faults are injected by
// the queues' writer: byte number k of one direction dropped, flipped or
// followed by garbage.
namespace serial_test {
namespace ser = tl::serial;

struct fake_clock {
  std::uint32_t t = 0;
  std::uint32_t now_ms() const noexcept { return t; }
};

struct fault {
  enum kind_t { none, drop, flip, garbage } kind = none;
  std::size_t at = 0;        ///< index of the byte in its direction's stream
  std::uint8_t mask = 0x01;  ///< flip: XOR mask
};

struct endpoint;
struct wire_pair;

/// The port of one end: reads from `in`, writes (with the fault) to the peer's queue.
struct mem_port {
  wire_pair* pair = nullptr;
  int side = 0;  // 0 = a, 1 = b
  tl::status write(std::span<const std::uint8_t> out);
  tl::status read(std::span<std::uint8_t> in, std::size_t& got);
};
static_assert(ser::byte_port<mem_port>);
static_assert(ser::ms_clock<fake_clock>);

constexpr std::size_t max_frame = 256;
using link_t = ser::link<mem_port, fake_clock, max_frame>;

struct wire_pair {
  fake_clock clock;
  std::vector<std::uint8_t> queue[2];  // queue[s]: bytes waiting for side s
  std::size_t read_pos[2] = {0, 0};
  std::size_t written[2] = {0, 0};     // bytes written by side s so far
  fault faults[2];                     // faults[s]: on the bytes side s writes
  std::function<void()> pump[2];       // run side s's link once (set by the test)
  bool in_pump = false;
  bool peer_alive[2] = {true, true};
};

tl::status mem_port::write(std::span<const std::uint8_t> out) {
  auto& q = pair->queue[1 - side];
  for (const std::uint8_t b : out) {
    const std::size_t k = pair->written[side]++;
    const fault& f = pair->faults[side];
    if (f.kind != fault::none && f.at == k) {
      if (f.kind == fault::drop) continue;
      if (f.kind == fault::flip) {
        q.push_back(static_cast<std::uint8_t>(b ^ f.mask));
        continue;
      }
      q.push_back(b);
      for (const int g : {0x17, 0x00, 0x42, 0x99, 0x01}) q.push_back(static_cast<std::uint8_t>(g));
      continue;
    }
    q.push_back(b);
  }
  return tl::status::success();
}

tl::status mem_port::read(std::span<std::uint8_t> in, std::size_t& got) {
  got = 0;
  auto& q = pair->queue[side];
  auto& pos = pair->read_pos[side];
  if (pos == q.size() && !pair->in_pump && pair->pump[1 - side] && pair->peer_alive[1 - side]) {
    pair->in_pump = true;  // the peer answers; it does not call back into us
    pair->pump[1 - side]();
    pair->in_pump = false;
  }
  while (got < in.size() && pos < q.size()) in[got++] = q[pos++];
  if (got == 0) ++pair->clock.t;
  return tl::status::success();
}

struct duo {
  wire_pair pair;
  mem_port pa{&pair, 0}, pb{&pair, 1};
  link_t a{pa, pair.clock}, b{pb, pair.clock};
  duo() {
    pair.pump[0] = [this] { REQUIRE(a.pump().ok()); };
    pair.pump[1] = [this] { REQUIRE(b.pump().ok()); };
  }
};

/// A wire frame with `n` bytes of payload derived from `seed` (zeros included).
std::vector<std::uint8_t> make_frame(std::uint32_t seed, std::size_t n, std::uint32_t seq = 0) {
  std::vector<std::uint8_t> payload(n);
  tl::rng g(seed);
  for (auto& v : payload) v = static_cast<std::uint8_t>(g.uniform_int(4) == 0 ? 0 : g.next_u32());
  wire::message_header h;
  h.type = wire::message_type::model;
  h.round = seed;
  h.sequence = seq;
  h.count = static_cast<std::uint32_t>(n);
  std::vector<std::uint8_t> f(wire::frame_size(n));
  std::size_t w = 0;
  REQUIRE(wire::encode(h, payload, f, w).ok());
  return f;
}

/// Bytes of the frame `m` came from (header, payload, CRC).
std::vector<std::uint8_t> frame_of(const wire::message_view& m) {
  const std::uint8_t* start = m.payload.data() - wire::wire_header_bytes;
  return {start, m.payload.data() + m.payload.size() + wire::wire_trailer_bytes};
}
}  // namespace serial_test

TEST_CASE("serial: COBS round trip, no zero inside, bounded overhead", "[transport][serial]") {
  namespace ser = tl::serial;
  tl::rng g(5);
  for (const std::size_t n : {0u, 1u, 2u, 253u, 254u, 255u, 256u, 507u, 508u, 509u, 1000u}) {
    for (int pattern = 0; pattern < 4; ++pattern) {
      std::vector<std::uint8_t> in(n);
      for (std::size_t i = 0; i < n; ++i)
        in[i] = pattern == 0 ? 0 : pattern == 1 ? 0xFF : static_cast<std::uint8_t>(pattern == 2 ? g.next_u32() : (i % 255 == 7 ? 0 : i + 1));
      std::vector<std::uint8_t> enc(ser::cobs_max_encoded(n));
      std::size_t w = 0;
      REQUIRE(ser::cobs_encode(in, enc, w).ok());
      REQUIRE(w <= ser::cobs_max_encoded(n));
      for (std::size_t i = 0; i < w; ++i) REQUIRE(enc[i] != 0);
      std::vector<std::uint8_t> buf(n + 1);
      ser::cobs_decoder d(buf);
      for (std::size_t i = 0; i < w; ++i) REQUIRE(d.feed(enc[i]) == ser::cobs_decoder::event::none);
      REQUIRE(d.feed(0) == ser::cobs_decoder::event::frame);
      CHECK(std::vector<std::uint8_t>(d.frame().begin(), d.frame().end()) == in);
      if (w > 0) {  // an output buffer one byte short is refused
        std::vector<std::uint8_t> small(w - 1);
        CHECK(ser::cobs_encode(in, small, w).code == tl::errc::capacity_exceeded);
        CHECK(w == 0);
      }
    }
  }
}

TEST_CASE("serial: the decoder reports overflow and corrupt groups, then resynchronises", "[transport][serial]") {
  namespace ser = tl::serial;
  using ev = ser::cobs_decoder::event;
  std::uint8_t buf[8];
  ser::cobs_decoder d(buf);
  // 12 non-zero bytes do not fit in 8: overflow once, the rest skipped up to the 0x00.
  const std::vector<std::uint8_t> big(12, 0x33);
  std::vector<std::uint8_t> enc(ser::cobs_max_encoded(big.size()));
  std::size_t w = 0;
  REQUIRE(ser::cobs_encode(big, enc, w).ok());
  int overflows = 0;
  for (std::size_t i = 0; i < w; ++i) overflows += d.feed(enc[i]) == ev::overflow;
  CHECK(overflows == 1);
  CHECK(d.feed(0) == ev::none);
  // A group cut short by a 0x00 (bytes lost) is corrupt.
  CHECK(d.feed(0x05) == ev::none);
  CHECK(d.feed(0x11) == ev::none);
  CHECK(d.feed(0) == ev::corrupt);
  // Empty frames (delimiter runs) are nothing; the next frame decodes.
  CHECK(d.feed(0) == ev::none);
  const std::uint8_t ok[] = {0x03, 0x41, 0x42, 0x02, 0x43};  // 41 42 00 43
  for (const std::uint8_t b : ok) CHECK(d.feed(b) == ev::none);
  REQUIRE(d.feed(0) == ev::frame);
  CHECK(std::vector<std::uint8_t>(d.frame().begin(), d.frame().end()) == std::vector<std::uint8_t>{0x41, 0x42, 0, 0x43});
}

TEST_CASE("serial: link round trip both ways, counters", "[transport][serial]") {
  using namespace serial_test;
  duo d;
  const auto f1 = make_frame(1, 100), f2 = make_frame(2, 37);
  REQUIRE(d.a.send(f1, 5000).ok());
  wire::message_view m;
  REQUIRE(d.b.recv(m, 5000).ok());
  CHECK(frame_of(m) == f1);
  CHECK(m.header.round == 1);
  REQUIRE(d.b.send(f2, 5000).ok());
  REQUIRE(d.a.recv(m, 5000).ok());
  CHECK(frame_of(m) == f2);
  CHECK(d.a.stats().frames_sent == 1);
  CHECK(d.a.stats().retransmissions == 0);
  CHECK(d.b.stats().delivered == 1);
  CHECK(d.b.stats().acks_sent == 1);
  CHECK(d.a.stats().bytes_sent == d.b.stats().bytes_received + d.pair.queue[1].size() - d.pair.read_pos[1]);
  // Nothing more arrives: recv times out on the fake clock, with a message.
  const tl::status s = d.a.recv(m, 50);
  CHECK(s.code == tl::errc::timed_out);
  CHECK(std::string(s.message).find("serial recv") != std::string::npos);
}

TEST_CASE("serial: every byte of a frame or its ACK dropped, flipped or followed by garbage: delivered exactly once",
          "[transport][serial][faults]") {
  using namespace serial_test;
  const auto f1 = make_frame(7, 40), f2 = make_frame(8, 3);
  // Bytes on the line of the first transmission (a → b) and of one ACK (b → a).
  std::size_t data_line = 0, ack_line = 0;
  {
    duo d;
    REQUIRE(d.a.send(f1, 5000).ok());
    data_line = d.a.stats().bytes_sent;
    ack_line = d.b.stats().bytes_sent;
    REQUIRE(data_line > f1.size() + tl::serial::link_overhead_bytes);
    REQUIRE(ack_line >= 8);
  }
  std::size_t cases = 0, recovered_by_retransmission = 0, duplicates_seen = 0;
  for (const int side : {0, 1}) {
    const std::size_t line = side == 0 ? data_line : ack_line;
    for (const auto kind : {fault::drop, fault::flip, fault::garbage}) {
      for (std::size_t k = 0; k < line; ++k) {
        for (const std::uint8_t mask : {std::uint8_t{0x01}, std::uint8_t{0x80}}) {
          if (kind != fault::flip && mask != 0x01) continue;
          INFO("side " << side << " fault " << int(kind) << " at byte " << k << " mask " << int(mask));
          duo d;
          d.pair.faults[side] = fault{kind, k, mask};
          REQUIRE(d.a.send(f1, 10000).ok());
          wire::message_view m;
          REQUIRE(d.b.recv(m, 10000).ok());
          CHECK(frame_of(m) == f1);
          // The reply crosses the same damaged pair; then nothing else may arrive.
          REQUIRE(d.b.send(f2, 10000).ok());
          REQUIRE(d.a.recv(m, 10000).ok());
          CHECK(frame_of(m) == f2);
          CHECK(d.b.recv(m, 500).code == tl::errc::timed_out);
          CHECK(d.a.recv(m, 500).code == tl::errc::timed_out);
          CHECK(d.b.stats().delivered == 1);
          CHECK(d.a.stats().delivered == 1);
          // The one duplicate a lost ACK causes is ACKed again, not delivered.
          CHECK(d.b.stats().duplicates <= d.a.stats().retransmissions);
          ++cases;
          recovered_by_retransmission += d.a.stats().retransmissions > 0;
          duplicates_seen += d.b.stats().duplicates;
        }
      }
    }
  }
  // The faults did bite: most needed a retransmission, and lost ACKs produced duplicates.
  CHECK(recovered_by_retransmission > cases / 2);
  CHECK(duplicates_seen > 0);
}

TEST_CASE("serial: 600 frames with 1% of bytes damaged both ways arrive in order, each once",
          "[transport][serial][faults]") {
  using namespace serial_test;
  duo d;
  tl::rng g(99);
  // Random faults: re-armed after each one fires.
  const auto arm = [&](int side) {
    d.pair.faults[side] = fault{static_cast<fault::kind_t>(1 + g.uniform_int(3)), d.pair.written[side] + 1 + g.uniform_int(200),
                                static_cast<std::uint8_t>(1u << g.uniform_int(8))};
  };
  arm(0);
  arm(1);
  for (std::uint32_t i = 0; i < 600; ++i) {
    const auto f = make_frame(1000 + i, i % 120, i);
    link_t& tx = i % 3 == 0 ? d.b : d.a;
    link_t& rx = i % 3 == 0 ? d.a : d.b;
    REQUIRE(tx.send(f, 20000).ok());
    wire::message_view m;
    REQUIRE(rx.recv(m, 20000).ok());
    REQUIRE(frame_of(m) == f);
    for (const int s : {0, 1})
      if (d.pair.written[s] > d.pair.faults[s].at) arm(s);
  }
  wire::message_view m;
  CHECK(d.a.recv(m, 500).code == tl::errc::timed_out);
  CHECK(d.b.recv(m, 500).code == tl::errc::timed_out);
  CHECK(d.a.stats().delivered + d.b.stats().delivered == 600);
  CHECK(d.a.stats().retransmissions + d.b.stats().retransmissions > 10);
  CHECK(d.a.stats().corrupt + d.b.stats().corrupt > 10);
}

TEST_CASE("serial: buffer bounds and a silent peer give clear errors; the link recovers", "[transport][serial][faults]") {
  using namespace serial_test;
  // A frame above MaxWireFrame is refused before anything is written.
  {
    duo d;
    const auto big = make_frame(3, serial_test::max_frame);  // 52 bytes too long
    const tl::status s = d.a.send(big, 1000);
    CHECK(s.code == tl::errc::capacity_exceeded);
    CHECK(d.a.stats().bytes_sent == 0);
  }
  // A receiver with a smaller buffer skips the long frame (no ACK): the sender times
  // out with a message; the next, short frame goes through.
  {
    wire_pair pair;
    mem_port pa{&pair, 0}, pb{&pair, 1};
    tl::serial::link<mem_port, fake_clock, 256> a{pa, pair.clock, {50}};
    tl::serial::link<mem_port, fake_clock, 64> b{pb, pair.clock, {50}};
    pair.pump[0] = [&] { REQUIRE(a.pump().ok()); };
    pair.pump[1] = [&] { REQUIRE(b.pump().ok()); };
    const tl::status s = a.send(make_frame(4, 100), 1000);
    CHECK(s.code == tl::errc::timed_out);
    CHECK(std::string(s.message).find("no ACK") != std::string::npos);
    CHECK(b.stats().oversized >= 2);  // the first transmission and the retransmissions
    CHECK(a.stats().retransmissions >= 10);
    CHECK(a.stats().send_failures == 1);
    const auto small = make_frame(5, 8);
    REQUIRE(a.send(small, 1000).ok());
    wire::message_view m;
    REQUIRE(b.recv(m, 1000).ok());
    CHECK(frame_of(m) == small);
    CHECK(b.stats().delivered == 1);
  }
  // A data frame intact on the link but not a valid wire frame is ACKed (resending would
  // not help), counted, and not delivered; the reason is in the wire counters.
  {
    duo d;
    auto f = make_frame(6, 20);
    f[wire::wire_header_bytes + 3] ^= 0x10;  // payload CRC now wrong
    REQUIRE(d.a.send(f, 1000).ok());
    wire::message_view m;
    CHECK(d.b.recv(m, 200).code == tl::errc::timed_out);
    CHECK(d.b.stats().wire_rejected == 1);
    CHECK(d.b.stats().wire[wire::wire_reject::payload_crc] == 1);
    CHECK(d.b.stats().delivered == 0);
    const auto good = make_frame(7, 20);
    REQUIRE(d.a.send(good, 1000).ok());
    REQUIRE(d.b.recv(m, 1000).ok());
    CHECK(frame_of(m) == good);
  }
  // The receiver holds the frame `recv` returned and one delivered frame waiting for
  // `recv`; a third is not ACKed (counted busy) and neither stored frame is overwritten.
  // Its sender is told (timed_out); the next send has a new sequence number and is
  // delivered once.
  {
    duo d;
    const auto f1 = make_frame(8, 10), f2 = make_frame(9, 10), f3 = make_frame(10, 10), f4 = make_frame(11, 10);
    REQUIRE(d.a.send(f1, 1000).ok());
    wire::message_view m1;
    REQUIRE(d.b.recv(m1, 1000).ok());
    REQUIRE(d.a.send(f2, 1000).ok());  // ACKed, waits in b
    CHECK(d.a.send(f3, 1000).code == tl::errc::timed_out);
    CHECK(d.b.stats().busy >= 2);
    CHECK(frame_of(m1) == f1);
    wire::message_view m;
    REQUIRE(d.b.recv(m, 200).ok());
    CHECK(frame_of(m) == f2);
    CHECK(d.b.recv(m, 200).code == tl::errc::timed_out);
    REQUIRE(d.a.send(f4, 1000).ok());
    REQUIRE(d.b.recv(m, 1000).ok());
    CHECK(frame_of(m) == f4);
    CHECK(d.b.stats().delivered == 3);
  }
}

TEST_CASE("serial: fd_port carries the link over a socket pair", "[transport][serial]") {
  namespace ser = tl::serial;
  int sv[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
  ser::steady_clock_ms clock;
  ser::fd_port pa(sv[0]), pb(sv[1]);
  ser::link<ser::fd_port, ser::steady_clock_ms, 512> a(pa, clock, {100});
  const auto f = serial_test::make_frame(12, 300);
  const auto reply = serial_test::make_frame(13, 60);
  std::thread peer([&] {
    ser::link<ser::fd_port, ser::steady_clock_ms, 512> b(pb, clock, {100});
    wire::message_view m;
    if (!b.recv(m, 5000).ok() || serial_test::frame_of(m) != f) return;
    (void)b.send(reply, 5000);
  });
  REQUIRE(a.send(f, 5000).ok());
  wire::message_view m;
  REQUIRE(a.recv(m, 5000).ok());
  CHECK(serial_test::frame_of(m) == reply);
  peer.join();
  ::close(sv[1]);
  // The peer closed: reading reports it.
  const tl::status s = a.recv(m, 1000);
  CHECK(s.code == tl::errc::io_error);
  CHECK(std::string(s.message).find("closed") != std::string::npos);
  // Writing to it is an io_error, not a SIGPIPE that kills the process.
  CHECK(a.send(f, 1000).code == tl::errc::io_error);
  ::close(sv[0]);
  // A pipe is not a socket: fd_port falls back to write(2).
  int pp[2];
  REQUIRE(::pipe(pp) == 0);
  ser::fd_port w(pp[1]), r(pp[0]);
  const std::uint8_t msg[] = {1, 0, 2, 3};
  REQUIRE(w.write(msg).ok());
  std::uint8_t back[8];
  std::size_t got = 0;
  REQUIRE(r.read(back, got).ok());
  CHECK(got == 4);
  CHECK(std::memcmp(back, msg, 4) == 0);
  ::close(pp[0]);
  ::close(pp[1]);
}

// ---------------------------------------------------------------------------
// A device in a FedAvg fleet: the client's freestanding frame logic
// (workflow/federated_client_step.hpp), the device client loop over a serial
// link, and the gateway that makes it client k of a networked fleet
// (transport/serial_gateway.hpp).

TEST_CASE("federated client step: which server frames start a round", "[transport][federated][serial]") {
  namespace wf = tl::workflow;
  wf::client_round_state st;
  st.max_round_skip = 3;
  st.max_round = 10;
  wire::message_header m;
  m.type = wire::message_type::model;
  m.dtype = wire::wire_dtype::fp32;
  m.count = 8;
  m.round = 2;
  CHECK(wf::classify_server_frame(st, m) == wf::frame_verdict::train);
  CHECK(st.is_new_round(m));
  st.enter(m);
  CHECK(wf::classify_server_frame(st, m) == wf::frame_verdict::train);  // a repetition: answered again
  CHECK_FALSE(st.is_new_round(m));
  wire::message_header x = m;
  x.round = 1;
  CHECK(wf::classify_server_frame(st, x) == wf::frame_verdict::ignore);  // stale
  x.round = 6;
  CHECK(wf::classify_server_frame(st, x) == wf::frame_verdict::ignore);  // more than max_round_skip ahead
  x.round = 5;
  CHECK(wf::classify_server_frame(st, x) == wf::frame_verdict::train);
  x.count = 9;
  CHECK(wf::classify_server_frame(st, x) == wf::frame_verdict::ignore);  // another size
  x = m;
  x.dtype = wire::wire_dtype::fp16;
  CHECK(wf::classify_server_frame(st, x) == wf::frame_verdict::ignore);  // models are fp32
  x = m;
  x.type = wire::message_type::update;
  CHECK(wf::classify_server_frame(st, x) == wf::frame_verdict::ignore);
  wire::message_header stop;
  stop.type = wire::message_type::control;
  stop.aux = static_cast<std::uint64_t>(wire::control_command::stop);
  CHECK(wf::classify_server_frame(st, stop) == wf::frame_verdict::stop);
  wf::client_round_state fresh;
  fresh.max_round = 10;
  x = m;
  x.round = 11;
  CHECK(wf::classify_server_frame(fresh, x) == wf::frame_verdict::ignore);  // beyond the run's last round
  const wire::message_header u = wf::update_header(4, wire::wire_dtype::int8, 100, 24);
  CHECK((u.type == wire::message_type::update && u.round == 4 && u.count == 100 && u.aux == 24 &&
         u.dtype == wire::wire_dtype::int8));
}

namespace gateway_test {

/// An in_process endpoint that copies what it sends (in_process hands views over, and a
/// gateway's frame lives in the serial link's buffer only until its next poll): a fleet
/// transport with the copying behaviour of MPI and MQTT, for a test in one process.
struct copying_endpoint {
  tl::in_process ep;
  std::vector<std::vector<std::uint8_t>> kept;
  static const char* name() { return "in_process (copying)"; }
  tl::endpoint_id id() const { return ep.id(); }
  std::size_t endpoints() const { return ep.endpoints(); }
  tl::status send(tl::endpoint_id to, const wire::message_header& h, std::span<const std::uint8_t> p,
                  std::chrono::milliseconds t) {
    kept.emplace_back(p.begin(), p.end());
    return ep.send(to, h, kept.back(), t);
  }
  tl::status broadcast(const wire::message_header& h, std::span<const std::uint8_t> p, std::chrono::milliseconds t) {
    kept.emplace_back(p.begin(), p.end());
    return ep.broadcast(h, kept.back(), t);
  }
  tl::status recv(wire::message_view& m, std::chrono::milliseconds t) { return ep.recv(m, t); }
  const tl::transport_stats& stats() const { return ep.stats(); }
};
static_assert(tl::transport_policy<copying_endpoint>);

constexpr std::size_t params = serial_task::params;
constexpr std::size_t max_frame = wire::frame_size(params * 4);

/// Final model of a 3-client FedAvg run of serial_task.hpp's local round (the devices'
/// computation): all clients in_process, or client endpoint 3 a device (run_device_client on
/// its own thread) on a serial link with 0.2 % of the bytes damaged each way, joined to the
/// in_process fleet through a serial_gateway.
template <class U>
std::vector<float> fleet_run(bool with_device, wf::federated_server_report& rep) {
  constexpr std::uint32_t clients = 3, rounds = 3;
  tl::in_process::hub net(clients + 1);
  std::vector<std::thread> th;
  std::vector<tl::status> host_status(clients + 1);
  for (std::uint32_t k = 1; k <= (with_device ? clients - 1 : clients); ++k)
    th.emplace_back([&net, &host_status, k] {
      tl::in_process ep(net, k);
      serial_task::host_computation comp;
      wf::fedavg_client<serial_task::host_computation, U> role(comp, serial_task::int8_chunk);
      host_status[k] = wf::run_federated_client(ep, role);
    });
  int sv[2] = {-1, -1};
  tl::serial::steady_clock_ms clock;
  damaging_fd_port gw_port{tl::serial::fd_port(sv[0]), tl::rng(3), 20}, dev_port{tl::serial::fd_port(sv[1]), tl::rng(4), 20};
  tl::status gw_status, dev_status;
  tl::serial::gateway_stats gw_stats;
  tl::workflow::device_client_report dev;
  if (with_device) {
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    gw_port.fd = tl::serial::fd_port(sv[0]);
    dev_port.fd = tl::serial::fd_port(sv[1]);
    th.emplace_back([&] {
      copying_endpoint fleet{tl::in_process(net, clients), {}};
      auto gw = std::make_unique<tl::serial::serial_gateway<copying_endpoint, damaging_fd_port,
                                                             tl::serial::steady_clock_ms, max_frame>>(
          fleet, gw_port, clock, tl::serial::link_config{50});
      gw_status = gw->run();
      gw_stats = gw->stats();
    });
    th.emplace_back([&] {
      auto link = std::make_unique<tl::serial::link<damaging_fd_port, tl::serial::steady_clock_ms, max_frame>>(
          dev_port, clock, tl::serial::link_config{50});
      static serial_task::workspace work;
      std::vector<float> model(params), update(params);
      std::vector<std::uint8_t> tx(max_frame);
      tl::workflow::device_client_options o;
      o.linger_ms = 300;
      o.int8_chunk = serial_task::int8_chunk;
      dev_status = tl::workflow::run_device_client<U>(
          *link,
          [](const tl::workflow::device_round& r) -> std::int64_t {
            (void)serial_task::local_round(r.model.data(), r.task_seed, clients - 1, work, r.update.data());
            return static_cast<std::int64_t>(serial_task::samples);
          },
          std::span<float>(model), std::span<float>(update), std::span<std::uint8_t>(tx), o, dev);
    });
  }
  tl::in_process ep(net, 0);
  wf::fedavg_server<tl::fedavg, U> server(tl::fedavg{}, params, 7);
  std::vector<float> w0(params);
  serial_task::initial_model(7, w0.data());
  server.set_global(w0);
  wf::federated_server_options so;
  so.rounds = rounds;
  so.min_clients = clients;  // a lost update fails the round
  so.round_timeout = 20s;
  const tl::status st = wf::run_federated_server(ep, server, so, &rep);
  for (auto& t : th) t.join();
  REQUIRE(st.ok());
  for (const tl::status& h : host_status) CHECK(h.ok());
  if (with_device) {
    ::close(sv[0]);
    ::close(sv[1]);
    REQUIRE(gw_status.ok());
    REQUIRE(dev_status.ok());
    CHECK(gw_port.damaged + dev_port.damaged > 0);
    CHECK(gw_stats.to_device == rounds + 1);  // the models and the stop, each delivered once
    CHECK(gw_stats.to_fleet == rounds);       // one update per round
    CHECK(gw_stats.refused_from_device + gw_stats.refused_from_fleet + gw_stats.too_large == 0);
    CHECK(dev.rounds == rounds);
    CHECK(dev.answers == rounds);
    CHECK(dev.ignored == 0);
  }
  return {server.global().begin(), server.global().end()};
}

}  // namespace gateway_test

TEST_CASE("serial_gateway: a device on a damaged serial line is client 3 of a FedAvg fleet: the simulation's bits",
          "[transport][federated][serial][gateway]") {
  const auto same = [](auto update) {
    using U = decltype(update);
    wf::federated_server_report sim_rep, dep_rep;
    const auto sim = gateway_test::fleet_run<U>(false, sim_rep);
    const auto dep = gateway_test::fleet_run<U>(true, dep_rep);
    CHECK(sim == dep);
    CHECK(dep_rep.updates_per_round == std::vector<std::size_t>{3, 3, 3});
    CHECK(dep_rep.dropped_frames == 0);
    CHECK(dep_rep.rejected_frames == 0);
    return sim;
  };
  const auto fp32 = same(tl::fp32_update{});
  CHECK(fp32 != std::vector<float>(gateway_test::params, 0.0f));
  CHECK(same(tl::int8_update{}) != fp32);  // the device's int8 update is the host clients' encoding
}

TEST_CASE("encode_update_payload: update_buffer's wire bytes without the heap", "[transport][federated][serial]") {
  tl::rng g(11);
  for (const std::size_t p : {1u, 16u, 68u, 300u}) {
    std::vector<float> w(p);
    for (auto& v : w) v = g.uniform_int(5) == 0 ? 0.0f : g.uniform(-3.0f, 3.0f);
    const auto check = [&](auto update, std::size_t chunk) {
      using U = decltype(update);
      wf::update_buffer<U> host;
      host.encode(w, chunk);
      const auto expected = host.payload();
      std::vector<std::uint8_t> out(wf::update_payload_bytes<U>(p, chunk) + 3, 0xEE);
      std::size_t written = 0;
      REQUIRE(wf::encode_update_payload<U>(w, chunk, out, written).ok());
      CHECK(written == expected.size());
      CHECK(std::equal(expected.begin(), expected.end(), out.begin()));
      CHECK(wf::update_wire_dtype<U> == wf::update_buffer<U>::dtype);
      // Too small a buffer is refused; NaN cannot be carried by fp16 / int8.
      std::vector<std::uint8_t> small(written - 1);
      CHECK(wf::encode_update_payload<U>(w, chunk, small, written).code == tl::errc::capacity_exceeded);
      if constexpr (!std::is_same_v<U, tl::fp32_update>) {
        std::vector<float> bad = w;
        bad[p / 2] = std::numeric_limits<float>::quiet_NaN();
        CHECK(wf::encode_update_payload<U>(bad, chunk, out, written).code == tl::errc::non_finite);
      }
    };
    check(tl::fp32_update{}, 0);
    check(tl::fp16_update{}, 0);
    for (const std::size_t chunk : {std::size_t{0}, std::size_t{5}, std::size_t{17}, p, p + 1}) check(tl::int8_update{}, chunk);
  }
}

TEST_CASE("serial_gateway: refuses a fleet endpoint of the server and what a device may not send",
          "[transport][serial][gateway]") {
  using gateway_test::copying_endpoint;
  tl::in_process::hub net(2);
  int sv[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
  tl::serial::steady_clock_ms clock;
  tl::serial::fd_port gw_port(sv[0]), dev_port(sv[1]);
  using gw_t = tl::serial::serial_gateway<copying_endpoint, tl::serial::fd_port, tl::serial::steady_clock_ms, 256>;
#if TINYLARGE_HAS_EXCEPTIONS
  copying_endpoint server_side{tl::in_process(net, 0), {}};
  CHECK_THROWS_AS(gw_t(server_side, gw_port, clock), tl::invalid_argument);
#endif
  copying_endpoint fleet{tl::in_process(net, 1), {}};
  tl::in_process server(net, 0);
  auto gw = std::make_unique<gw_t>(fleet, gw_port, clock, tl::serial::link_config{50});
  tl::serial::link<tl::serial::fd_port, tl::serial::steady_clock_ms, 256> dev(dev_port, clock, {50});
  // The device sends a model (only a server may) and an update claiming another sender; then its real update.
  const auto frame = [](wire::message_type t, std::uint32_t sender) {
    wire::message_header h;
    h.type = t;
    h.sender = sender;
    h.round = 1;
    h.aux = 5;
    h.count = 4;
    std::vector<std::uint8_t> f(wire::frame_size(4));
    std::size_t w = 0;
    const std::uint8_t payload[4] = {1, 2, 3, 4};
    REQUIRE(wire::encode(h, payload, f, w).ok());
    return f;
  };
  const auto model = frame(wire::message_type::model, 1), forged = frame(wire::message_type::update, 7),
             update = frame(wire::message_type::update, 1);
  bool sent = false;
  std::thread device([&] {
    sent = dev.send(model, 5000).ok() && dev.send(forged, 5000).ok() && dev.send(update, 5000).ok();
  });
  bool active = false;
  for (int i = 0; i < 2000 && gw->stats().to_fleet == 0; ++i) REQUIRE(gw->step(active).ok());
  device.join();
  CHECK(sent);
  CHECK(gw->stats().refused_from_device == 2);
  CHECK(gw->stats().to_fleet == 1);
  wire::message_view m;
  REQUIRE(server.recv(m, 1000ms).ok());
  CHECK(m.header.type == wire::message_type::update);
  CHECK(m.header.sender == 1);  // re-stamped: the fleet's client id
  CHECK(m.header.aux == 5);
  CHECK(server.recv(m, 10ms).code == tl::errc::timed_out);
  ::close(sv[0]);
  ::close(sv[1]);
}


// ---------------------------------------------------------------------------
// Pipeline-parallel inference (workflow/pipeline.hpp): three stages on three
// in_process endpoints (threads) give the single-process model's outputs, bit
// for bit, whatever the micro-batch size and window; a bad frame stops a stage.
// ---------------------------------------------------------------------------
TEST_CASE("pipeline_inference: three stages over in_process threads equal the whole model", "[transport][pipeline]") {
  using lenet = tl::sequential<tl::dense<784, 300>, tl::relu, tl::dense<300, 100>, tl::relu, tl::dense<100, 10>>;
  using pipe = tl::workflow::pipeline_inference<lenet, tl::cut<2, 4>>;
  static_assert(pipe::stages == 3);
  tl::nn::network<lenet> whole(11);
  const std::size_t rows = 37;
  std::vector<float> x(rows * 784);
  tl::rng g(5);
  for (float& v : x) v = g.uniform();
  const float* ref = whole.forward(x.data(), rows);
  const std::vector<float> want(ref, ref + rows * 10);
  for (const auto& [mb, window] : {std::pair<std::size_t, std::size_t>{5, 0}, {1, 1}, {16, 2}, {37, 0}, {64, 5}, {4, 3}}) {
    tl::in_process::hub hub(3);
    std::vector<float> out(rows * 10, -1.0f);
    tl::workflow::pipeline_options o{.micro_batch = mb, .window = window, .timeout = std::chrono::seconds(20)};
    std::vector<tl::workflow::pipeline_report> reps(3);
    std::vector<std::thread> th;
    for (tl::endpoint_id e = 1; e < 3; ++e)
      th.emplace_back([&, e] {
        tl::in_process ep(hub, e);
        reps[e] = pipe::run(ep, whole.parameters(), {}, {}, 0, o);
      });
    tl::in_process head(hub, 0);
    reps[0] = pipe::run(head, whole.parameters(), x, out, rows, o);
    for (auto& t : th) t.join();
    INFO("micro-batch " << mb << " window " << window);
    // The whole model on the same micro-batches, in one process: the same bits.
    std::vector<float> chunked(rows * 10);
    bool all_multi_row = true;
    for (std::size_t r0 = 0; r0 < rows; r0 += mb) {
      const std::size_t n = std::min(mb, rows - r0);
      all_multi_row = all_multi_row && n >= 2;
      const float* y = whole.forward(x.data() + r0 * 784, n);
      std::copy(y, y + n * 10, chunked.begin() + static_cast<std::ptrdiff_t>(r0 * 10));
    }
    REQUIRE(std::memcmp(out.data(), chunked.data(), 4 * chunked.size()) == 0);
    // With micro-batches of two rows or more, also the whole batch's bits (a GEMM row does not
    // depend on the other rows; one row takes the batch-1 GEMV, which sums in another order).
    if (all_multi_row) REQUIRE(std::memcmp(out.data(), want.data(), 4 * want.size()) == 0);
    const std::size_t count = (rows + mb - 1) / mb;
    for (const auto& r : reps) REQUIRE(r.micro_batches == count);
  }
#if TINYLARGE_HAS_EXCEPTIONS
  // A stage refuses a frame that is not a whole number of its input rows.
  tl::in_process::hub hub(3);
  tl::in_process fake_head(hub, 0);
  std::vector<float> bad(301, 0.5f);
  tl::wire::message_header h{};
  h.type = tl::wire::message_type::smashed;
  h.dtype = tl::wire::wire_dtype::fp32;
  h.round = 1;
  h.aux = 0;
  h.count = static_cast<std::uint32_t>(bad.size());
  REQUIRE(fake_head.send(1, h, std::span<const std::uint8_t>(reinterpret_cast<const std::uint8_t*>(bad.data()), 4 * bad.size()),
                         std::chrono::seconds(1)).ok());
  tl::in_process stage1(hub, 1);
  REQUIRE_THROWS_WITH(pipe::run(stage1, whole.parameters(), {}, {}, 0, {.micro_batch = 4}),
                      Catch::Contains("rows of the stage's input"));
  // … and a NaN activation.
  bad.assign(300, 0.5f);
  bad[7] = std::numeric_limits<float>::quiet_NaN();
  h.count = 300;
  REQUIRE(fake_head.send(1, h, std::span<const std::uint8_t>(reinterpret_cast<const std::uint8_t*>(bad.data()), 4 * bad.size()),
                         std::chrono::seconds(1)).ok());
  REQUIRE_THROWS_WITH(pipe::run(stage1, whole.parameters(), {}, {}, 0, {.micro_batch = 4}), Catch::Contains("NaN"));
  tl::in_process stage5(hub, 2);
  REQUIRE_THROWS_WITH(pipe::run(stage5, std::span<const float>(whole.parameters()).first(10), {}, {}, 0),
                      Catch::Contains("whole model's parameters"));
#endif
}

TEST_CASE("pipeline_training: two stages over in_process threads train the whole model's bits", "[transport][pipeline]") {
  using mlp = tl::sequential<tl::dense<20, 16>, tl::relu, tl::dense<16, 12>, tl::relu, tl::dense<12, 3>>;
  using pipe = tl::workflow::pipeline_training<mlp, tl::cut<2>>;
  const std::size_t rows = 45, batch = 16, mb = 6;  // micro-batches 6, 6, 4 per batch; a last batch of 13
  std::vector<float> x(rows * 20);
  std::vector<std::uint8_t> y(rows);
  tl::rng g(9);
  for (float& v : x) v = g.uniform() - 0.5f;
  for (auto& l : y) l = static_cast<std::uint8_t>(g.uniform() * 3.0f) % 3;
  const tl::nn::adam opt{.learning_rate = 0.01f};
  const tl::nn::softmax_cross_entropy loss{};
  // The whole model in one process on the same batches and micro-batches.
  tl::nn::network<mlp> whole(4);
  const auto w0 = whole.parameters();
  const std::vector<float> init(w0.begin(), w0.end());
  tl::nn::trainable_state<tl::nn::adam, mlp> state(opt);
  tl::nn::optimizer_update<tl::nn::trainable_state<tl::nn::adam, mlp>> update{state};
  std::vector<float> grad(mb * 3);
  double ref_loss = 0.0;
  for (std::size_t r0 = 0; r0 < rows; r0 += batch) {
    const std::size_t brows = std::min(batch, rows - r0);
    whole.zero_gradients();
    double bl = 0.0;
    for (std::size_t t = 0; t < brows; t += mb) {
      const std::size_t n = std::min(mb, brows - t);
      const float* z = whole.forward(x.data() + (r0 + t) * 20, n, true);
      bl += pipe::micro_batch_gradient(loss, z, y.data() + r0 + t, n, brows, grad.data()) * static_cast<double>(n);
      whole.backward(grad.data());
    }
    tl::nn::finish_step(whole, update);
    ref_loss += bl / static_cast<double>(brows);
  }
  // The pipeline: stage 0 on the head, stage 1 (with the labels) on a thread.
  tl::in_process::hub hub(2);
  std::vector<float> params = init, params1 = init;
  const tl::workflow::pipeline_options o{.micro_batch = mb, .timeout = std::chrono::seconds(20)};
  tl::workflow::pipeline_training_report r1;
  std::thread stage1([&] {
    tl::in_process ep(hub, 1);
    r1 = pipe::run(ep, params1, opt, loss, {}, y, rows, batch, o);
  });
  tl::in_process head(hub, 0);
  const tl::workflow::pipeline_training_report r0 = pipe::run(head, params, opt, loss, x, {}, rows, batch, o);
  stage1.join();
  const auto trained = whole.parameters();
  REQUIRE(std::memcmp(params.data(), trained.data(), 4 * params.size()) == 0);
  REQUIRE(std::memcmp(params.data(), init.data(), 4 * params.size()) != 0);  // it did train
  REQUIRE(r0.batches == 3);
  REQUIRE(r1.batches == 3);
  REQUIRE(r1.loss_sum == ref_loss);
  REQUIRE(r0.micro_batches == 9);  // forward passes: micro-batches of 6, 6, 4 | 6, 6, 4 | 6, 6, 1 rows
#if TINYLARGE_HAS_EXCEPTIONS
  // A stage refuses a gradient of the wrong width, and labels of the wrong count.
  tl::in_process::hub hub2(2);
  tl::in_process fake_last(hub2, 1);
  std::vector<float> bad(5 * 7, 0.25f);  // not a whole number of 16-value rows
  tl::in_process head2(hub2, 0);
  std::thread liar([&] {
    tl::wire::message_view m{};
    REQUIRE(fake_last.recv(m, std::chrono::seconds(20)).ok());  // the head's first activations
    tl::wire::message_header h{};
    h.type = tl::wire::message_type::gradient;
    h.dtype = tl::wire::wire_dtype::fp32;
    h.round = 1;
    h.aux = 0;
    h.count = static_cast<std::uint32_t>(bad.size());
    (void)fake_last.send(0, h, std::span<const std::uint8_t>(reinterpret_cast<const std::uint8_t*>(bad.data()), 4 * bad.size()),
                         std::chrono::seconds(1));
  });
  REQUIRE_THROWS_WITH(pipe::run(head2, params, opt, loss, x, {}, rows, batch, {.micro_batch = rows, .timeout = std::chrono::seconds(20)}),
                      Catch::Contains("rows of the stage's input"));
  liar.join();
  REQUIRE_THROWS_WITH(pipe::run(fake_last, params, opt, loss, {}, std::span<const std::uint8_t>(y).first(3), rows, batch, o),
                      Catch::Contains("targets must hold rows targets"));
#endif
}
