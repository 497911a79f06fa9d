// Cortex-M firmware for a searched model (docs/nas.md, scripts/nas_mcu.sh): the
// compile-time model type of the emitted header (NAS_MODEL_HEADER) sizes the int8
// activation arena, and the int8 network nas_deploy --mcu-out exported (nas_mcu.h) runs
// with the library's kernels::dense_s8 (SMLAD path on Cortex-M4), a pruned layer exported
// as CSR with kernels::sparse_dense_s8 (bit-identical to the dense kernel on its zeros). It classifies the 16
// embedded target test images (nas_mcu_images.h) and prints "index prediction: int8 logits" through
// semihosting, which must equal the host's quantized_network output
// (nas_mcu_expected.txt), then the arena and stack bytes used.
//
// With NAS_PROFILE defined it runs the first image only and calls the noinline
// `tl_layer_boundary` before and after every dense layer, for scripts/mcu_trace_count.sh
// (instructions executed per layer in a QEMU trace; QEMU is not cycle-accurate). The emitted header's fp32
// parameters are not referenced, so they are not linked.
//
// A model with a conv stem (nas_mcu.h defines NAS_CONV_NETWORK) runs as the library's
// quantized_network<model, int8_per_channel, sparse_flash_storage> bound to the exported arrays
// in flash (conv2d_s8, max pooling on the int8 grid, dense_s8; a pruned dense layer on its CSR);
// its arena is that network's arena_bytes, and NAS_PROFILE marks the whole inference as one region.
//
// Not part of the library; built by scripts/nas_mcu.sh with arm-none-eabi-g++ on the
// start-up code and linker script of tests/mcu.
#if defined(__arm__) && !defined(__linux__) && !defined(TINYLARGE_FREESTANDING)
#define TINYLARGE_FREESTANDING 1  // the device build is the freestanding profile
#endif
#include <cstddef>
#include <cstdint>
#include <new>

#include <tinylarge/kernels/backend.hpp>
#include <tinylarge/kernels/cortex_m.hpp>
#include <tinylarge/kernels/dense.hpp>
#include <tinylarge/kernels/sparse_s8.hpp>
#include <tinylarge/nn/layers.hpp>
#include <tinylarge/nn/quantized_network.hpp>
#include <tinylarge/nn/sequential.hpp>
#include <tinylarge/precision/int8.hpp>

#include "startup.hpp"

#include NAS_MODEL_HEADER

#define TINYLARGE_C_ALIGNAS(n) __attribute__((section(".tl_weights"), aligned(n)))
#include "nas_mcu.h"
#undef TINYLARGE_C_ALIGNAS
#define TINYLARGE_C_ALIGNAS(n) __attribute__((section(".tl_data"), aligned(n)))
#include "nas_mcu_images.h"
#undef TINYLARGE_C_ALIGNAS

extern "C" std::uint32_t tl_stack_high_water();

/// Profiling marker: a call the QEMU trace can see (not inlined, not removed).
extern "C" __attribute__((noinline)) void tl_layer_boundary(unsigned layer, bool begin) {
  __asm__ volatile("" : : "r"(layer), "r"(begin) : "memory");
}

namespace {

namespace k = tinylarge::kernels;
using model = nas_model::model;

/// Prints "index prediction: int8 logits" for one image.
void put_result(std::size_t s, const std::int8_t* y) {
  std::size_t best = 0;
  for (std::size_t j = 1; j < model::output_size; ++j) best = y[j] > y[best] ? j : best;
  tl_mcu::put_int(static_cast<long>(s));
  tl_mcu::puts(" ");
  tl_mcu::put_int(static_cast<long>(best));
  tl_mcu::puts(":");
  for (std::size_t j = 0; j < model::output_size; ++j) {
    tl_mcu::puts(" ");
    tl_mcu::put_int(y[j]);
  }
  tl_mcu::puts("\n");
}

#if defined(NAS_PROFILE)
constexpr std::size_t images = 1;
#else
constexpr std::size_t images = NAS_IMAGE_COUNT;
#endif

#if defined(NAS_CONV_NETWORK)
using qnet = tinylarge::nn::quantized_network<model, tinylarge::int8_per_channel, tinylarge::nn::sparse_flash_storage>;
static_assert(qnet::arena_bytes <= 64 * 1024, "the searched model's arena exceeds the Cortex-M4 profile's RAM");
alignas(qnet) unsigned char net_storage[sizeof(qnet)];  // .bss: pointers to the flash arrays and the arena

int run_conv_network() {
  qnet& net = *new (net_storage) qnet;
  std::size_t r = 0;
  qnet::graph::for_each_layer([&]<std::size_t I>() {
    if constexpr (tinylarge::nn::has_weights(qnet::graph::template layer<I>::kind)) {
      const nas_weighted_layer& l = nas_layers[r++];
      if (l.csr.row_ptr != nullptr) net.template bind_layer<I>(l.b, l.csr);
      else net.template bind_layer<I>(l.b);
    }
  });
  static_assert(sizeof(nas_tensor_scale) / sizeof(float) == qnet::tensor_count, "exported tensors do not match the model");
  static_assert(sizeof(nas_layers) / sizeof(nas_layers[0]) == NAS_LAYER_COUNT, "exported layers do not match");
  auto& tq = net.tensor_quantization();
  for (std::size_t t = 0; t < qnet::tensor_count; ++t) tq[t] = {nas_tensor_scale[t], nas_tensor_zero_point[t]};
  for (std::size_t s = 0; s < images; ++s) {
#if defined(NAS_PROFILE)
    tl_layer_boundary(0, true);
#endif
    const std::int8_t* y = net.forward(reinterpret_cast<const std::int8_t*>(nas_inputs) + s * model::input_size);
#if defined(NAS_PROFILE)
    tl_layer_boundary(0, false);
#endif
    put_result(s, y);
  }
  tl_mcu::puts("device: arena ");
  tl_mcu::put_int(static_cast<long>(qnet::arena_bytes));
  tl_mcu::puts(" B (quantized_network), stack high water ");
  tl_mcu::put_int(static_cast<long>(tl_stack_high_water()));
  tl_mcu::puts(" B\n");
  return 0;
}
#else

/// The arena is a constexpr of the searched model's type: max over dense layers of in + out bytes.
constexpr std::size_t arena_bytes = model::arena_bytes<tinylarge::int8_per_channel>;
static_assert(arena_bytes <= 64 * 1024, "the searched model's arena exceeds the Cortex-M4 profile's RAM");
alignas(4) std::int8_t arena[arena_bytes];

__attribute__((noinline)) void run(const nas_layer_desc& l, const std::int8_t* x, std::int8_t* y) {
  k::dense_s8_params p;
  p.input_zero_point = l.zx;
  p.output_zero_point = l.zy;
  p.multipliers = l.mult;
  p.shifts = l.shift;
  p.per_channel = true;
  p.bias = l.bias;
  p.act_min = static_cast<std::int8_t>(l.relu ? l.zy : -128);
  if (l.row_ptr != nullptr)
    k::sparse_dense_s8(1, k::csr_s8_matrix{l.n, l.k, l.row_ptr, l.gaps, reinterpret_cast<const std::int8_t*>(l.w)}, x, p, y);
  else
    k::dense_s8(k::default_backend{}, 1, l.n, l.k, x, reinterpret_cast<const std::int8_t*>(l.w), p, y);
}

#endif

}  // namespace

int main() {
#if defined(NAS_CONV_NETWORK)
  return run_conv_network();
#else
  static_assert(NAS_LAYER_COUNT >= 2, "an emitted model has at least one hidden layer and a head");
  for (std::size_t s = 0; s < images; ++s) {
    for (std::size_t i = 0; i < 784; ++i) arena[i] = static_cast<std::int8_t>(nas_inputs[s * 784 + i]);
    // Ping-pong: even layers read the front of the arena and write its back, odd layers the reverse.
    const std::int8_t* y = nullptr;
    for (std::size_t l = 0; l < NAS_LAYER_COUNT; ++l) {
      const nas_layer_desc& d = nas_layers[l];
      std::int8_t* front = arena;
      std::int8_t* back_in = arena + arena_bytes - d.k;
      std::int8_t* back_out = arena + arena_bytes - d.n;
#if defined(NAS_PROFILE)
      tl_layer_boundary(static_cast<unsigned>(l), true);
#endif
      if (l % 2 == 0) {
        run(d, front, back_out);
        y = back_out;
      } else {
        run(d, back_in, front);
        y = front;
      }
#if defined(NAS_PROFILE)
      tl_layer_boundary(static_cast<unsigned>(l), false);
#endif
    }
    put_result(s, y);
  }
  tl_mcu::puts("device: arena ");
  tl_mcu::put_int(static_cast<long>(arena_bytes));
  tl_mcu::puts(" B, stack high water ");
  tl_mcu::put_int(static_cast<long>(tl_stack_high_water()));
  tl_mcu::puts(" B\n");
  return 0;
#endif
}
