// Cortex-M4F (mps2-an386) FedAvg client over transport/serial.hpp on the board's CMSDK
// UART0, which QEMU connects by TCP (`-serial tcp:127.0.0.1:PORT`) to a host program:
// tests/transport/serial_host.cpp (scripts/mcu_serial.sh: one device, one host) or the
// serial gateway of tests/transport/fleet_node.cpp (scripts/mcu_fleet.sh: the device is
// client k of a FedAvg fleet over MQTT, beside host clients). The frames are those of
// run_federated_server / run_federated_client (workflow/federated_deploy.hpp), and what
// to do with each one is decided by the same freestanding piece the host client uses
// (workflow/federated_client_step.hpp, whose run_device_client is this firmware's client
// loop): a model of the current or a later round is trained on (serial_task.hpp's local
// round; a repeated model is answered again with the same bytes), a stop ends the run,
// anything else is ignored. The client id k
// (its local data) and the update encoding come from the semihosting command line:
// `arg=serial_device,arg=K[,arg=fp16|int8]`.
// The link's time source is SysTick. Logs and the exit code go through semihosting.
// No heap: the link's buffers, the model, the update and the workspace are static.
#include <cstddef>
#include <cstdint>
#include <span>

#include "tinylarge/freestanding.hpp"
#include "serial_task.hpp"
#include "mps2_uart.hpp"
#include "startup.hpp"
#include "tinylarge/transport/serial.hpp"
#include "tinylarge/transport/wire.hpp"
#include "tinylarge/workflow/federated_client_step.hpp"

extern "C" std::uint32_t tl_stack_high_water();

namespace {

namespace tl = tinylarge;

using tl_mcu::uart_port;
using tl_mcu::systick_clock;

constexpr std::size_t max_frame = tl::wire::frame_size(serial_task::params * 4);
using link_t = tl::serial::link<uart_port, systick_clock, max_frame>;

uart_port uart;
systick_clock clock_ms;
link_t serial_link{uart, clock_ms, {100}};
serial_task::workspace work;
float model[serial_task::params];
float update[serial_task::params];
std::uint8_t tx[max_frame];

[[noreturn]] void fail(const char* what, const tl::status& s) {
  tl_mcu::puts("serial_device: ");
  tl_mcu::puts(what);
  tl_mcu::puts(": ");
  tl_mcu::puts(s.message);
  tl_mcu::puts("\n");
  tl_mcu::exit(2);
}

/// What the semihosting command line (SYS_GET_CMDLINE) asks for: `… K [fp16|int8]` —
/// the client id K (0 when absent) and the update encoding (fp32 when absent).
struct settings {
  std::uint64_t client = 0;
  enum class encoding { fp32, fp16, int8 } update = encoding::fp32;
};

settings settings_from_cmdline() {
  static char line[80];
  struct {
    char* buf;
    int len;
  } block{line, static_cast<int>(sizeof line) - 1};
  settings out;
  if (tl_mcu::semihost(0x15, &block) != 0 || block.len <= 0) return out;
  line[block.len] = '\0';
  for (int i = 0; line[i] != '\0';) {  // each word
    while (line[i] == ' ') ++i;
    const int start = i;
    bool digits = line[i] != '\0';
    std::uint64_t v = 0;
    for (; line[i] != '\0' && line[i] != ' '; ++i) {
      digits = digits && line[i] >= '0' && line[i] <= '9';
      v = v * 10 + static_cast<std::uint64_t>(line[i] - '0');
    }
    const int len = i - start;
    const auto is = [&](const char* w) {
      for (int k = 0; k < len; ++k)
        if (w[k] != line[start + k]) return false;
      return w[len] == '\0';
    };
    if (len > 0 && digits) out.client = v;
    else if (is("fp16")) out.update = settings::encoding::fp16;
    else if (is("int8")) out.update = settings::encoding::int8;
  }
  return out;
}

}  // namespace

int main() {
  uart.init();
  clock_ms.init();
  const settings cfg = settings_from_cmdline();
  const std::uint64_t client = cfg.client;
  const char* const encoding = cfg.update == settings::encoding::fp16   ? "fp16"
                               : cfg.update == settings::encoding::int8 ? "int8"
                                                                        : "fp32";
  tl_mcu::puts("serial_device: FedAvg client ");
  tl_mcu::put_int(static_cast<long>(client));
  tl_mcu::puts(", ");
  tl_mcu::puts(encoding);
  tl_mcu::puts(" updates\n");
  const auto compute = [client](const tl::workflow::device_round& r) -> std::int64_t {
    const float p = serial_task::local_round(r.model.data(), r.task_seed, client, work, r.update.data());
    tl_mcu::puts(r.repeated ? "serial_device: repeated model of round " : "serial_device: round ");
    tl_mcu::put_int(static_cast<long>(r.round));
    tl_mcu::puts(" mean p(label) x1000 ");
    tl_mcu::put_int(static_cast<long>(p * 1000.0f));
    tl_mcu::puts("\n");
    return static_cast<std::int64_t>(serial_task::samples);
  };
  // [device-client]
  tl::workflow::device_client_report rep;
  tl::workflow::device_client_options opt;
  opt.int8_chunk = serial_task::int8_chunk;
  const auto run = [&]<class U>(U) {  // U: the fleet's update encoding
    return tl::workflow::run_device_client<U>(serial_link, compute, std::span<float>(model), std::span<float>(update),
                                              std::span<std::uint8_t>(tx), opt, rep);
  };
  // [device-client]
  const tl::status s = cfg.update == settings::encoding::fp16   ? run(tl::fp16_update{})
                       : cfg.update == settings::encoding::int8 ? run(tl::int8_update{})
                                                                : run(tl::fp32_update{});
  if (!s.ok()) fail("FedAvg client", s);
  const auto& st = serial_link.stats();
  tl_mcu::puts("serial_device: rounds ");
  tl_mcu::put_int(static_cast<long>(rep.rounds));
  tl_mcu::put_stat("answers", rep.answers);
  tl_mcu::put_stat("ignored", rep.ignored);
  tl_mcu::put_link_stats(st);
  tl_mcu::puts("\nserial_device: stack bytes ");
  tl_mcu::put_int(static_cast<long>(tl_stack_high_water()));
  tl_mcu::puts("\n");
  return 0;
}
