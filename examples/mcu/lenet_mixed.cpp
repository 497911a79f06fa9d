// Firmware example (docs/mcu.md, docs/precision.md#per-layer): the per-layer mixed-precision
// LeNet-300-100 of mixed_lenet.hpp — int8 | fp32 | int8 — on a Cortex-M4F / Cortex-M3, with
// the library's `mixed_inference_network` (the host deployment class) on `flash_storage`:
// the parameters are the const arrays make_model wrote (mixed_model.h, in flash), the
// activations static buffers of `activation_bytes` bytes. No heap, no exceptions.
//
// It classifies the embedded test images and prints, per image, the prediction, the ten
// fp32 logits as IEEE bit patterns and an FNV-1a hash of the bits of the fp32 layer's 100
// outputs (computed by a second network of layers 0-2 on the same flash arrays: the int8 last
// layer re-quantizes them, which would hide a last-bit difference). scripts/mcu_example.sh
// compares that with what the host's `mixed_inference_network` (heap storage, the scalar fp32
// kernel the Cortex-M uses) computed in make_model (mixed_expected.txt). The firmware also compares the bits with the copy in
// mixed_expected.h itself: exit status 3 on any difference.
//
// The same source builds for the host (the script runs it as a check of the comparison).
#define TINYLARGE_FREESTANDING 1
#include <cstddef>
#include <cstdint>
#include <cstring>

#include <tinylarge/kernels/cortex_m.hpp>
#include <tinylarge/nn/mixed_network.hpp>

#include "mixed_lenet.hpp"

#if defined(__arm__) && !defined(__linux__)
#define TL_ON_DEVICE 1
#include "startup.hpp"
extern "C" std::uint32_t tl_stack_high_water();
namespace out = tl_mcu;
#define TINYLARGE_C_ALIGNAS(n) __attribute__((section(".tl_weights"), aligned(n)))
#include "mixed_model.h"
#undef TINYLARGE_C_ALIGNAS
#define TINYLARGE_C_ALIGNAS(n) __attribute__((section(".tl_data"), aligned(n)))
#include "images.h"
#include "mixed_expected.h"
#undef TINYLARGE_C_ALIGNAS
#else
#define TL_ON_DEVICE 0
#include <cstdio>
namespace out {
inline void puts(const char* s) { std::fputs(s, stdout); }
inline void put_int(long v) { std::printf("%ld", v); }
}  // namespace out
#include "mixed_model.h"
#include "images.h"
#include "mixed_expected.h"
#endif

namespace {

namespace nn = tinylarge::nn;
using mcu_example::lenet_mixed;

// The fp32 layer runs the scalar kernel on every Cortex-M (no fp32 SIMD there); the int8
// layers use the core's int8 paths (SMLAD on the M4). The host build names the scalar back end
// so that its fp32 sums are formed in the same order.
#if TL_ON_DEVICE
using backend = tinylarge::kernels::default_backend;
#else
using backend = tinylarge::arch::scalar;
#endif
using net_t = nn::mixed_inference_network<lenet_mixed, tinylarge::fp32, nn::flash_storage, backend>;
// Layers 0–2 on the same flash arrays: the fp32 layer's own output, for the bit-for-bit check.
using body_t = nn::mixed_inference_network<mcu_example::lenet_mixed_body, tinylarge::fp32, nn::flash_storage, backend>;

// Static storage: the activations (two fp32 buffers of 300, 784 quantized input bytes, 300
// int32 accumulators) and the parameter views.
net_t net;
body_t body;
float input[784];

void put_hex(std::uint32_t v) {
  char buf[11] = "0x00000000";
  for (int i = 0; i < 8; ++i) buf[9 - i] = "0123456789abcdef"[(v >> (4 * i)) & 0xFu];
  out::puts(buf);
}

void bind() {
  net_t::binding<0> l0;
  l0.weights = reinterpret_cast<const std::int8_t*>(tl_mx_w0);
  l0.bias = tl_mx_b0;
  l0.weight_scales = tl_mx_s0;
  l0.input = {tl_mx_in_scale[0], TL_MX_IN_ZP0};
  net.bind_layer<0>(l0);
  net_t::binding<2> l2;
  l2.weights = tl_mx_p2;  // fp32: weights then biases
  net.bind_layer<2>(l2);
  net_t::binding<4> l4;
  l4.weights = reinterpret_cast<const std::int8_t*>(tl_mx_w4);
  l4.bias = tl_mx_b4;
  l4.weight_scales = tl_mx_s4;
  l4.input = {tl_mx_in_scale[1], TL_MX_IN_ZP4};
  net.bind_layer<4>(l4);
  body.bind_layer<0>(l0);
  body.bind_layer<2>(l2);
}

}  // namespace

int main() {
  static_assert(tl_mx_w0_size == 784 * 300 && tl_mx_p2_size == 300 * 100 + 100 && tl_mx_w4_size == 100 * 10,
                "mixed_model.h does not match mixed_lenet.hpp");
  bind();
  constexpr std::size_t n_images = mcu_example::mixed_images;
  out::puts("lenet_mixed: ");
  out::put_int(static_cast<long>(n_images));
  out::puts(" images, int8 | fp32 | int8\n");
  std::size_t correct = 0, differ = 0;
  for (std::size_t s = 0; s < n_images; ++s) {
    const unsigned char* px = tl_test_images + s * 784;
    for (std::size_t i = 0; i < 784; ++i) input[i] = static_cast<float>(px[i]) / 255.0f;
    const float* y = net.forward(input);
    std::size_t best = 0;
    for (std::size_t j = 1; j < 10; ++j) best = y[j] > y[best] ? j : best;
    correct += best == tl_test_labels[s] ? 1 : 0;
    out::put_int(static_cast<long>(s));
    out::puts(" ");
    out::put_int(static_cast<long>(best));
    out::puts(":");
    for (std::size_t j = 0; j < 10; ++j) {
      std::uint32_t bits;
      std::memcpy(&bits, &y[j], 4);
      out::puts(" ");
      put_hex(bits);
      differ += bits != static_cast<std::uint32_t>(tl_mx_expected_bits[s * 10 + j]) ? 1 : 0;
    }
    out::puts(" | fp32 layer ");
    put_hex(mcu_example::fnv1a_bits(body.forward(input), 100));
    out::puts("\n");
  }
  out::puts("correct: ");
  out::put_int(static_cast<long>(correct));
  out::puts(" of ");
  out::put_int(static_cast<long>(n_images));
  out::puts("\n");
  out::puts("device: logits differing from the host's (mixed_expected.h): ");
  out::put_int(static_cast<long>(differ));
  out::puts("\ndevice: RAM of the network object ");
  out::put_int(static_cast<long>(sizeof(net)));
  out::puts(" bytes (activations ");
  out::put_int(static_cast<long>(net_t::activation_bytes));
  out::puts("), of the layer 0-2 check network ");
  out::put_int(static_cast<long>(sizeof(body)));
  out::puts(" bytes, input buffer ");
  out::put_int(static_cast<long>(sizeof(input)));
  out::puts(" bytes\n");
#if TL_ON_DEVICE
  out::puts("device: stack high-water mark ");
  out::put_int(static_cast<long>(tl_stack_high_water()));
  out::puts(" bytes\n");
#endif
  return differ == 0 ? 0 : 3;
}
