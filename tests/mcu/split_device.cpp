// Cortex-M4F (mps2-an386) split-learning device of scripts/mcu_split.sh: the client of
// the library's split deployment (workflow/split_deploy.hpp, SplitFedV1 with one client)
// over transport/serial.hpp on the board's CMSDK UART0, which QEMU connects to the host
// program tests/transport/split_serial_host.cpp by TCP (`-serial tcp:127.0.0.1:PORT`);
// the host runs the deployment's *server* over `serial::serial_transport` unchanged.
//
// The device runs split learning's device role from workflow/split_device.hpp — the
// functions the host deployment's client runs: per step it draws its batch
// (tests/mcu/split_task.hpp), runs its segment forward (`device_forward`), sends the
// smashed frame {Up(activations) ‖ labels} (`encode_smashed`, `split_smashed_header`),
// waits for the gradient frame (`split_gradient_for`), checks it (`decode_gradient`:
// the codec's size, finite values), back-propagates it and steps (`device_backward`
// with `sgd_update`); at the end of a round it sends its segment (`split_update_header`);
// a stop frame ends the run. Its segment is an `nn::network` with
// `static_training_storage<8>`: fp32 master weights, gradients and the activations of
// 8 rows in static RAM; no heap (the link fails if anything allocates: mps2.ld).
//
// Built twice: with the fp32 uplink codec (split_device.elf) and, with
// TL_SPLIT_UPLINK_INT8, with the int8 one (split_device_int8.elf); gradients come back
// fp32 either way. Logs and the exit code go through semihosting.
#include <bit>
#include <cstddef>
#include <cstdint>
#include <span>

#include "tinylarge/freestanding.hpp"  // first: selects the freestanding profile
#include "mps2_uart.hpp"
#include "split_task.hpp"
#include "startup.hpp"
#include "tinylarge/nn/network.hpp"
#include "tinylarge/transport/serial.hpp"
#include "tinylarge/transport/wire.hpp"
#include "tinylarge/workflow/split_device.hpp"

extern "C" std::uint32_t tl_stack_high_water();

namespace {

namespace tl = tinylarge;
namespace wf = tinylarge::workflow;

#if defined(TL_SPLIT_UPLINK_INT8)
using uplink = tl::codec::int8;
#else
using uplink = tl::codec::fp32;
#endif
using downlink = tl::codec::fp32;

constexpr std::uint32_t server = 0;  // the server's endpoint id (transport/policy.hpp's server_endpoint)
constexpr std::size_t params = split_task::device_model::param_count;
constexpr std::size_t cut = split_task::cut;
constexpr std::size_t rows = split_task::batch;
constexpr std::size_t up_bytes = wf::smashed_message_bytes<uplink>(rows, cut);
constexpr std::size_t max_payload = params * 4 > up_bytes ? params * 4 : up_bytes;
constexpr std::size_t max_frame = tl::wire::frame_size(max_payload);
/// Longer than a round trip of the largest frame (2.2 KB) through QEMU's emulated UART.
constexpr std::uint32_t ack_timeout_ms = 400;
using link_t = tl::serial::link<tl_mcu::uart_port, tl_mcu::systick_clock, max_frame>;
using segment_t = tl::nn::network<split_task::device_model, tl::nn::static_training_storage<rows>>;

tl_mcu::uart_port uart;
tl_mcu::systick_clock clock_ms;
link_t serial_link{uart, clock_ms, {ack_timeout_ms}};
segment_t segment;
float x[rows * split_task::features];
std::uint8_t y[rows];
float grad[rows * cut];
std::byte up[up_bytes];
std::uint8_t tx[max_frame];
std::uint32_t sequence = 0;

[[noreturn]] void fail(const char* what, const tl::status& s) {
  tl_mcu::puts("split_device: ");
  tl_mcu::puts(what);
  tl_mcu::puts(": ");
  tl_mcu::puts(s.message);
  tl_mcu::puts("\n");
  tl_mcu::exit(2);
}

void check(const char* what, const tl::status& s) {
  if (!s.ok()) fail(what, s);
}

/// Stamp the header as the host's serial_transport does (sender 1, the next sequence
/// number), encode it with its payload and send it over the link (ACKed).
void send_frame(tl::wire::message_header h, std::span<const std::uint8_t> payload, const char* what) {
  h.sender = 1;
  h.sequence = ++sequence;
  std::size_t written = 0;
  check(what, tl::wire::encode(h, payload, std::span<std::uint8_t>(tx), written));
  check(what, serial_link.send(std::span<const std::uint8_t>(tx, written), 30000));
}

}  // namespace

int main() {
  uart.init();
  clock_ms.init();
  std::uint32_t round = 0, epoch = 0, rounds = 0, steps_done = 0, restarts = 0;
  tl::wire::message_view m;
  bool pending = false;  // m holds a model frame that arrived while waiting for a gradient
  for (;;) {
    if (!pending) check("waiting for a model", serial_link.recv(m, 30000));
    pending = false;
    if (m.header.sender != server) continue;
    if (wf::split_is_stop(m.header)) break;
    if (!wf::split_model_is_newer(m.header, round, epoch)) continue;
    if (m.header.dtype != tl::wire::wire_dtype::fp32 || m.header.count != params)
      fail("model frame", {tl::errc::corrupt, "the model frame does not hold this device segment"});
    check("model frame", tl::wire::read_fp32(m, std::span<float>(segment.parameters())));
    // A model of the round it is in, from a restarted server (a greater epoch): redo the round
    // from step 0 with the same batches (plain SGD has no optimizer state to roll back).
    if (m.header.round == round) {
      tl_mcu::puts("split_device: the server restarted (epoch ");
      tl_mcu::put_int(static_cast<long>(wf::split_epoch(m.header)));
      tl_mcu::puts("): redoing round ");
      tl_mcu::put_int(static_cast<long>(round));
      tl_mcu::puts(" from step 0\n");
      ++restarts;
    }
    round = m.header.round;
    epoch = wf::split_epoch(m.header);
    const std::uint32_t steps = wf::split_model_steps(m.header);
    float loss_proxy = 0.0f;  // mean |gradient| of the round's last step, for the log
    bool abandoned = false;
    for (std::uint32_t t = 0; t < steps && !abandoned; ++t) {
      const std::size_t b = split_task::make_batch(round, t, x, y);
      const float* act = wf::device_forward(segment, x, b);
      const std::size_t n = wf::encode_smashed<uplink>({act, b * cut}, y, b, std::span<std::byte>(up));
      send_frame(wf::split_smashed_header(round, t, epoch, n),
                 std::span<const std::uint8_t>(reinterpret_cast<const std::uint8_t*>(up), n), "sending smashed data");
      for (;;) {  // the gradient of this step; a newer model means the server moved on or restarted
        check("waiting for a gradient", serial_link.recv(m, 30000));
        if (m.header.sender != server) continue;
        if (wf::split_is_stop(m.header)) fail("stop", {tl::errc::corrupt, "stopped in the middle of a round"});
        if (wf::split_model_is_newer(m.header, round, epoch)) {
          pending = true;
          abandoned = true;
          break;
        }
        if (!wf::split_gradient_for(m.header, round, t, epoch)) continue;
        if (m.header.dtype != tl::wire::wire_dtype::bytes)
          fail("gradient frame", {tl::errc::corrupt, "the gradient frame does not hold a codec message"});
        const std::span<float> g(grad, b * cut);
        check("gradient frame", wf::decode_gradient<downlink>(std::as_bytes(m.payload), g));
        wf::device_backward(segment, grad, wf::sgd_update{split_task::learning_rate});
        loss_proxy = 0.0f;
        for (const float v : g) loss_proxy += v < 0.0f ? -v : v;
        loss_proxy /= static_cast<float>(g.size());
        ++steps_done;
        break;
      }
    }
    if (abandoned) continue;
    const tl::wire::message_header u = wf::split_update_header(round, epoch, split_task::examples, params);
    static_assert(std::endian::native == std::endian::little, "fp32 payloads are little-endian on the wire");
    send_frame(u, std::span<const std::uint8_t>(reinterpret_cast<const std::uint8_t*>(segment.parameters().data()), params * 4),
               "sending the update");
    ++rounds;
    tl_mcu::puts("split_device: round ");
    tl_mcu::put_int(static_cast<long>(round));
    tl_mcu::puts(" done, ");
    tl_mcu::put_int(static_cast<long>(steps));
    tl_mcu::puts(" steps, mean |dL/da| of the last x1e6 ");
    tl_mcu::put_int(static_cast<long>(loss_proxy * 1e6f));
    tl_mcu::puts("\n");
  }
  // Stay on the line for a while, so that a lost ACK of the stop frame is given again.
  tl::wire::message_view extra;
  const tl::status linger = serial_link.recv(extra, 1000);
  const auto& st = serial_link.stats();
  tl_mcu::puts("split_device: uplink ");
  tl_mcu::puts(uplink::name());
  tl_mcu::puts(", rounds ");
  tl_mcu::put_int(static_cast<long>(rounds));
  tl_mcu::put_stat("steps", steps_done);
  tl_mcu::put_stat("restarts", restarts);
  tl_mcu::put_link_stats(st);
  tl_mcu::puts("\nsplit_device: segment object bytes ");
  tl_mcu::put_int(static_cast<long>(sizeof(segment_t)));
  tl_mcu::puts(", link object bytes ");
  tl_mcu::put_int(static_cast<long>(sizeof(link_t)));
  tl_mcu::puts(", stack bytes ");
  tl_mcu::put_int(static_cast<long>(tl_stack_high_water()));
  tl_mcu::puts("\n");
  // Nothing but retransmissions may follow the stop frame.
  return linger.code == tl::errc::timed_out ? 0 : 3;
}
