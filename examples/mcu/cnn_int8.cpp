// Firmware example (docs/mcu.md): a convolutional model of cnn_models.hpp — the type named by
// TL_MODEL (lenet5, ds_cnn or resnet_kws) — compiled for Cortex-M3 / M4F / M55 into its int8 inference
// program, `quantized_network<TL_MODEL, int8_per_channel, flash_storage>`: the weights stay in
// the model file in flash, RAM holds the compile-time planned activation arena.
//
//  1. A model file of another shape (other_model.h) must be rejected by bind_model_file with
//     errc::shape_mismatch, never run.
//  2. The model file (<name>_model.h) is validated (CRC-32s, structure, value ranges) and bound
//     (layer count, kinds, shapes, conv geometry, fused activations, chained zero points; for
//     resnet_kws also the add record that closes each residual block and its constants).
//  3. The embedded int8 inputs run through the network; the logits are printed and compared
//     with the ones the host computed with the same code (make_cnn).
//
// Exit status: 0 all good; 2 the model file was rejected; 3 a logit differs from the host's;
// 5 the file of another shape was accepted.
//
// With TL_SPARSE defined, the network is `quantized_network<TL_MODEL, int8_per_channel,
// sparse_flash_storage>` and the model file (make_cnn --lenet5-sparsity / --resnet-sparsity) holds pruned int8 CSR
// records: each layer runs on its non-zero weights, in place in flash (kernels/sparse_s8.hpp).
//
// With TL_SHARED defined, the network's storage is `shared_flash_storage` and the model file
// (make_cnn --lenet5-clusters) holds weight-shared int8 codebook records: each layer reads its
// bit-packed indices and int8 codebook in place in flash (kernels/codebook_s8.hpp).
//
// With TL_HUFFMAN defined, the storage is `huffman_shared_flash_storage` and the model file
// holds the same weight-shared records with Huffman-coded indices (int8_huffman_codebook): each
// layer decodes one output channel's indices at a time into the arena's scratch and runs the
// dense int8 back end on that row (kernels/huffman_s8.hpp).
//
// With TL_PROFILE defined, the program runs one inference and calls the noinline
// `tl_layer_boundary` before and after every layer (node of the int8 graph):
// scripts/mcu_cnn_cost.sh counts the instructions executed between consecutive calls (callees
// included) in a QEMU trace.
//
// The same source builds for the host (scripts/mcu_example.sh): its output must equal the
// firmware's, apart from the lines starting with "device:".
#include <cstddef>
#include <cstdint>
#include <new>

#if defined(__arm__) && !defined(__linux__) && !defined(TINYLARGE_FREESTANDING)
#define TINYLARGE_FREESTANDING 1  // the device build is the freestanding profile
#endif
#include <tinylarge/compress/int8_model.hpp>

#include "cnn_models.hpp"

#define TL_STR2(x) #x
#define TL_STR(x) TL_STR2(x)
#ifndef TL_MODEL
#error "define TL_MODEL as lenet5, ds_cnn or resnet_kws"
#endif

#if defined(__arm__) && !defined(__linux__)
#define TL_ON_DEVICE 1
#include "startup.hpp"
extern "C" std::uint32_t tl_stack_high_water();
extern "C" std::uint32_t _data_start, _bss_end;
namespace out = tl_mcu;
// The model files in .tl_weights, the test inputs and expected logits in .tl_data
// (tests/mcu/mps2.ld), so that the size report splits runtime code from weights.
#define TINYLARGE_C_ALIGNAS(n) __attribute__((section(".tl_weights"), aligned(n)))
#include TL_STR(TL_MODEL_HEADER)
#include "other_model.h"
#undef TINYLARGE_C_ALIGNAS
#define TINYLARGE_C_ALIGNAS(n) __attribute__((section(".tl_data"), aligned(n)))
#include TL_STR(TL_DATA_HEADER)
#undef TINYLARGE_C_ALIGNAS
#else
#define TL_ON_DEVICE 0
#include <cstdio>
#include <cstdlib>
namespace out {
inline void puts(const char* s) { std::fputs(s, stdout); }
inline void put_int(long v) { std::printf("%ld", v); }
[[noreturn]] inline void exit(int c) { std::exit(c); }
}  // namespace out
#include TL_STR(TL_MODEL_HEADER)
#include TL_STR(TL_DATA_HEADER)
#include "other_model.h"
#endif

#include "cnn_run.hpp"

namespace tl = tinylarge;
using mcu_cnn::put_line;
using model = mcu_cnn::TL_MODEL;
#if defined(TL_SPARSE)
using network = tl::nn::quantized_network<model, tl::int8_per_channel, tl::nn::sparse_flash_storage>;
#define TL_VARIANT " (pruned, int8 CSR records)"
#elif defined(TL_SHARED)
using network = tl::nn::quantized_network<model, tl::int8_per_channel, tl::nn::shared_flash_storage>;
#define TL_VARIANT " (weight-shared, int8 codebook records)"
#elif defined(TL_HUFFMAN)
using network = tl::nn::quantized_network<model, tl::int8_per_channel, tl::nn::huffman_shared_flash_storage>;
#define TL_VARIANT " (weight-shared, Huffman-coded int8 codebook records)"
#else
using network = tl::nn::quantized_network<model, tl::int8_per_channel, tl::nn::flash_storage>;
#define TL_VARIANT ""
#endif

/// Profiling marker: a call the QEMU trace can see (not inlined, not removed).
extern "C" __attribute__((noinline)) void tl_layer_boundary(unsigned layer, bool begin) {
  __asm__ volatile("" : : "r"(layer), "r"(begin) : "memory");
}

namespace {

// Static storage: the arena, the per-tensor quantization and the weight views, nothing else.
// Constructed into a zero-initialised buffer (.bss) at start-up: a plain static `network` would
// land in .data (its scales default to 1.0f), costing its whole size again in flash.
alignas(network) unsigned char net_storage[sizeof(network)];
network& net = *new (net_storage) network;


bool open_and_bind(const unsigned char* bytes, std::size_t size, tl::status& s) {
  static tl::compress::model_file_reader reader;  // static: reused, and off the stack
  s = reader.open(bytes, size);
  if (s.ok()) s = tl::compress::bind_model_file(reader, net);
  return s.ok();
}

}  // namespace

int main() {
  constexpr std::size_t in_n = model::input_size, out_n = model::output_size;
  constexpr std::size_t count = sizeof(tl_inputs) / in_n;
  static_assert(sizeof(tl_expected) == count * out_n, "generated data does not match the model type");
  out::puts("cnn_int8: model " TL_STR(TL_MODEL) TL_VARIANT "\n");
  put_line("layers ", static_cast<long>(model::size), "");
  put_line(", weighted ", static_cast<long>(tl::compress::weighted_layer_count<model>), "");
  put_line(", MACs per inference ", static_cast<long>(model::macs));
  put_line("device: activation arena ", static_cast<long>(network::arena_bytes), " bytes (planned at compile time)\n");
  out::puts("device: back end ");
  out::puts(tl::kernels::default_backend::name());
  out::puts("\n");

  tl::status s;
  // 1. a file of another shape is refused
  if (open_and_bind(tl_other_model, tl_other_model_size, s) || s.code != tl::errc::shape_mismatch) {
    out::puts("model of another shape: NOT rejected\n");
    out::exit(5);
  }
  out::puts("model of another shape: rejected (");
  out::puts(s.message);
  out::puts(")\n");
  // 2. the model itself
  if (!open_and_bind(tl_model, tl_model_size, s)) {
    out::puts("model file rejected: ");
    out::puts(s.message);
    out::puts("\n");
    out::exit(2);
  }
  put_line("model file: ", static_cast<long>(tl_model_size), " bytes, validated and bound in place\n");

#if defined(TL_PROFILE)
  // The nodes of the int8 graph (forward_observed's indices): a residual block is its inner
  // layers and its add; a model without blocks is its own graph.
  using graph = network::graph;
  graph::for_each_layer([&]<std::size_t I>() {
    using L = typename graph::template layer<I>;
    put_line("profile: layer ", static_cast<long>(I), " ");
    out::puts(L::name());
    put_line(" ", static_cast<long>(L::macs));
  });
  net.forward_observed([](std::size_t layer, bool begin) { tl_layer_boundary(static_cast<unsigned>(layer), begin); });
  (void)count;
  return 0;
#else
  // 3. inference on the embedded inputs
  const std::size_t differ = mcu_cnn::run_inputs<model>(net, tl_inputs, tl_expected, count);
#if TL_ON_DEVICE
  put_line("device: static RAM (.data + .bss) ",
           static_cast<long>(reinterpret_cast<std::uintptr_t>(&_bss_end) - reinterpret_cast<std::uintptr_t>(&_data_start)),
           " bytes\n");
  put_line("device: stack high-water mark ", static_cast<long>(tl_stack_high_water()), " bytes\n");
#endif
  return differ == 0 ? 0 : 3;
#endif
}
