// Minimal firmware for the code-size target of docs/mcu.md: plain dense int8 LeNet-300-100
// (784 → 300 → 100 → 10, per-channel weights, relu fused into the requantization clamp) with
// the library's kernels::dense_s8 — the SMLAD path on Cortex-M4, the plain path on M3 —
// in an arena of lenet_300_100::arena_bytes<int8> bytes. It classifies the 16 embedded test
// images and prints "index prediction: logits" through semihosting; scripts/mcu_example.sh
// compares that with the host's kernels::dense_s8 (make_model's min_expected.txt).
//
// Weights, biases and requantization parameters are in section .tl_weights and the images
// in .tl_data (tests/mcu/mps2.ld), so that the size report separates them from the code.
#include <cstddef>
#include <cstdint>

#include <tinylarge/kernels/backend.hpp>
#include <tinylarge/kernels/cortex_m.hpp>
#include <tinylarge/kernels/dense.hpp>
#include <tinylarge/nn/sequential.hpp>
#include <tinylarge/precision/int8.hpp>

#include "startup.hpp"

#define TINYLARGE_C_ALIGNAS(n) __attribute__((section(".tl_weights"), aligned(n)))
#include "dense_int8.h"
#undef TINYLARGE_C_ALIGNAS
#define TINYLARGE_C_ALIGNAS(n) __attribute__((section(".tl_data"), aligned(n)))
#include "images.h"
#undef TINYLARGE_C_ALIGNAS

extern "C" std::uint32_t tl_stack_high_water();

namespace {

namespace k = tinylarge::kernels;

using lenet_300_100 = tinylarge::nn::sequential<tinylarge::nn::dense<784, 300>, tinylarge::nn::relu,
                                                tinylarge::nn::dense<300, 100>, tinylarge::nn::relu,
                                                tinylarge::nn::dense<100, 10>>;
/// The arena is a constexpr of the model type: max over layers of in + out = 784 + 300.
constexpr std::size_t arena_bytes = lenet_300_100::arena_bytes<tinylarge::int8_per_channel>;
static_assert(arena_bytes == 784 + 300);
alignas(4) std::int8_t arena[arena_bytes];

struct layer {
  std::size_t n, k;
  const signed char* w;
  const std::int32_t* bias;
  const std::int32_t* mult;
  const int* shift;
  std::int32_t zx, zy;
  bool relu;
};

const layer layers[3] = {
    {300, 784, tl_w0, tl_b0, tl_m0, tl_s0, TL_ZP0, TL_ZP1, true},
    {100, 300, tl_w1, tl_b1, tl_m1, tl_s1, TL_ZP1, TL_ZP2, true},
    {10, 100, tl_w2, tl_b2, tl_m2, tl_s2, TL_ZP2, TL_ZP3, false},
};

__attribute__((noinline)) void run(const layer& l, const std::int8_t* x, std::int8_t* y) {
  k::dense_s8_params p;
  p.input_zero_point = l.zx;
  p.output_zero_point = l.zy;
  p.multipliers = l.mult;
  p.shifts = l.shift;
  p.per_channel = true;
  p.bias = l.bias;
  p.act_min = static_cast<std::int8_t>(l.relu ? l.zy : -128);
  k::dense_s8(k::default_backend{}, 1, l.n, l.k, x, reinterpret_cast<const std::int8_t*>(l.w), p, y);
}

}  // namespace

int main() {
  tl_mcu::puts("lenet_int8_min: ");
  tl_mcu::put_int(static_cast<long>(tl_test_labels_size));
  tl_mcu::puts(" images\n");
  for (std::size_t s = 0; s < tl_test_labels_size; ++s) {
    const unsigned char* px = tl_test_images + s * 784;
    for (std::size_t i = 0; i < 784; ++i) arena[i] = static_cast<std::int8_t>(px[i] - 128);
    std::int8_t* h1 = arena + arena_bytes - 300;
    std::int8_t* y = arena + arena_bytes - 10;
    run(layers[0], arena, h1);
    run(layers[1], h1, arena);
    run(layers[2], arena, y);
    std::size_t best = 0;
    for (std::size_t j = 1; j < 10; ++j) best = y[j] > y[best] ? j : best;
    tl_mcu::put_int(static_cast<long>(s));
    tl_mcu::puts(" ");
    tl_mcu::put_int(static_cast<long>(best));
    tl_mcu::puts(":");
    for (std::size_t j = 0; j < 10; ++j) {
      tl_mcu::puts(" ");
      tl_mcu::put_int(y[j]);
    }
    tl_mcu::puts("\n");
  }
  tl_mcu::puts("device: stack high-water mark ");
  tl_mcu::put_int(static_cast<long>(tl_stack_high_water()));
  tl_mcu::puts(" bytes\n");
  return 0;
}
