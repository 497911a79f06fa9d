// Firmware example (docs/mcu.md): the Deep-Compressed Fashion-MNIST LeNet-300-100 on a
// Cortex-M4F / Cortex-M3, from its model file in flash.
//
//  1. Boot: validate the model file (header and section CRC-32s, structure), decode its
//     Huffman-coded gap and index streams into a static buffer, quantize the codebooks to int8.
//  2. Classify 16 embedded test images with integer-only inference in an arena of
//     lenet_300_100::arena_bytes<int8> bytes; print predictions and int8 logits; compare the
//     logits with the ones the host computed (make_model).
//  3. Personalise: fine-tune the last dense layer in fp32 on 32 labelled samples of a shifted
//     domain (finetune_setting.hpp) and report held-out accuracy before and after.
//  4. Report RAM: arena, decode buffer, fine-tuning state, stack high-water mark.
//
// Exit status: 0 all good; 2 the model file is invalid (e.g. a CRC mismatch); 3 a logit
// differs from the host's; 4 fine-tuning did not improve the held-out accuracy.
//
// The same source builds for the host (scripts/mcu_example.sh): its output must equal the
// firmware's on both cores, apart from the lines starting with "device:".
#include <cstddef>
#include <cstdint>

#include <tinylarge/nn/device_finetune.hpp>

#include "compressed_lenet.hpp"
#include "finetune_setting.hpp"

#if defined(__arm__) && !defined(__linux__)
#define TL_ON_DEVICE 1
#include "startup.hpp"
extern "C" std::uint32_t tl_stack_high_water();
extern "C" std::uint32_t _data_start, _bss_end;
namespace out = tl_mcu;
// Weights (the model file) and data (images) in their own flash sections (tests/mcu/mps2.ld),
// so that the size report can split code from weights.
#define TINYLARGE_C_ALIGNAS(n) __attribute__((section(".tl_weights"), aligned(n)))
#include "model_data.h"
#undef TINYLARGE_C_ALIGNAS
#define TINYLARGE_C_ALIGNAS(n) __attribute__((section(".tl_data"), aligned(n)))
#include "images.h"
#undef TINYLARGE_C_ALIGNAS
#else
#define TL_ON_DEVICE 0
#include <cstdio>
#include <cstdlib>
#include <cstring>
namespace out {
inline void puts(const char* s) { std::fputs(s, stdout); }
inline void put_int(long v) { std::printf("%ld", v); }
}  // namespace out
#include "model_data.h"
#include "images.h"
#endif

namespace {

using mcu_example::classes;
using mcu_example::hidden;
using head_t = tl::nn::last_layer_finetuner<hidden, classes>;

void put_line(const char* a, long v, const char* b = "\n") {
  out::puts(a);
  out::put_int(v);
  out::puts(b);
}

void put_hex(std::uint32_t v) {
  char buf[11] = "0x00000000";
  for (int i = 0; i < 8; ++i) buf[9 - i] = "0123456789abcdef"[(v >> (4 * i)) & 0xFu];
  out::puts(buf);
}

std::size_t argmax(const std::int8_t* y) {
  std::size_t a = 0;
  for (std::size_t j = 1; j < classes; ++j) a = y[j] > y[a] ? j : a;
  return a;
}

// Static storage: nothing on the heap, and the sizes below are all the RAM there is.
mcu_example::compressed_lenet net;
std::uint8_t decode_buffer[TL_MODEL_DECODE_BYTES];
head_t head;
std::int8_t ft_features[mcu_example::ft_train_count * hidden];
std::int8_t ho_features[mcu_example::ft_heldout_count * hidden];

/// Features (the penultimate int8 activations) of `n` images.
void features_of(const unsigned char* images, std::size_t n, std::int8_t* f) {
  for (std::size_t s = 0; s < n; ++s) {
    net.forward(images + s * mcu_example::input_size);
    for (std::size_t i = 0; i < hidden; ++i) f[s * hidden + i] = net.features()[i];
  }
}

std::size_t int8_correct(const unsigned char* images, const unsigned char* labels, std::size_t n) {
  std::size_t hits = 0;
  for (std::size_t s = 0; s < n; ++s) hits += argmax(net.forward(images + s * mcu_example::input_size)) == labels[s];
  return hits;
}

}  // namespace

#if TL_ON_DEVICE
int main() {
  const std::uint8_t* model = tl_model;
#else
// Host only: `--corrupt-byte N` flips one bit of model byte N first (the load must then fail
// with exit status 2: scripts/mcu_example.sh checks that the CRC check can fail).
alignas(8) static unsigned char model_copy[sizeof tl_model];
int main(int argc, char** argv) {
  const std::uint8_t* model = tl_model;
  if (argc == 3 && std::strcmp(argv[1], "--corrupt-byte") == 0) {
    std::memcpy(model_copy, tl_model, sizeof tl_model);
    const std::size_t at = static_cast<std::size_t>(std::strtoul(argv[2], nullptr, 10)) % sizeof tl_model;
    model_copy[at] ^= 0x01u;
    model = model_copy;
    std::printf("host: bit 0 of model byte %zu flipped\n", at);
  }
#endif
  out::puts("tinylarge mcu example: Deep-Compressed LeNet-300-100, Fashion-MNIST\n");
  out::puts("device: backend ");
  out::puts(tl::kernels::default_backend::name());
  out::puts("\n");

  // 1. Boot: validate, decode, quantize.
  float scales[4];
  std::int32_t zeros[4];
  for (int t = 0; t < 4; ++t) {
    scales[t] = tl_act_scale[t];
    zeros[t] = tl_act_zero[t];
  }
  if (const tl::status s = net.load(model, tl_model_size, scales, zeros, decode_buffer, sizeof decode_buffer); !s) {
    out::puts("model file rejected: ");
    out::puts(s.message);
    out::puts("\n");
    return 2;
  }
  put_line("model file: ", static_cast<long>(tl_model_size), " bytes in flash, 3 layers, CRC-32 ok\n");
#if TL_ON_DEVICE
  put_line("device: stack high-water mark after boot ", static_cast<long>(tl_stack_high_water()), " bytes\n");
#endif
  for (std::size_t i = 0; i < mcu_example::layer_count; ++i) {
    const auto& l = net.layer(i);
    put_line("layer ", static_cast<long>(i), ": ");
    put_line("", static_cast<long>(l.w.rows), "x");
    put_line("", static_cast<long>(l.w.cols), " CSR codebook, k=");
    put_line("", static_cast<long>(net.codebook_size(i)), ", entries ");
    put_line("", static_cast<long>(net.entries(i)), ", decoded ");
    put_line("", static_cast<long>(net.decode_bytes(i)), " bytes, int8 M=");
    put_line("", static_cast<long>(l.multiplier), " shift ");
    put_line("", static_cast<long>(l.shift));
  }
  put_line("RAM: activation arena ", static_cast<long>(mcu_example::arena_bytes),
           " bytes (lenet_300_100::arena_bytes<int8_per_channel>)\n");
  put_line("RAM: decode buffer ", static_cast<long>(sizeof decode_buffer), " bytes");
  put_line(" (used ", static_cast<long>(net.decode_used()), ")\n");
  put_line("device: RAM of the network object ", static_cast<long>(sizeof net),
           " bytes (arena, int8 codebooks, int32 biases, views)\n");

  // 2. Classify the embedded test images.
  int status = 0;
  const std::size_t n_images = tl_test_labels_size;
  std::size_t hits = 0, mismatches = 0;
  for (std::size_t s = 0; s < n_images; ++s) {
    const std::int8_t* y = net.forward(tl_test_images + s * mcu_example::input_size);
    const std::size_t pred = argmax(y);
    hits += pred == tl_test_labels[s];
    put_line("image ", static_cast<long>(s), ": label ");
    put_line("", tl_test_labels[s], " pred ");
    put_line("", static_cast<long>(pred), " logits");
    for (std::size_t j = 0; j < classes; ++j) {
      put_line(" ", y[j], "");
      mismatches += y[j] != tl_expected_logits[s * classes + j];
    }
    out::puts("\n");
  }
  put_line("accuracy: ", static_cast<long>(hits), "/");
  put_line("", static_cast<long>(n_images), "\n");
  if (mismatches == 0) {
    out::puts("logits: all equal to the host's (make_model)\n");
  } else {
    put_line("logits: ", static_cast<long>(mismatches), " differ from the host's (make_model)\n");
    status = 3;
  }

  // 3. On-device personalisation of the last dense layer (fp32 master weights).
  out::puts("fine-tuning: ");
  out::puts(mcu_example::ft_description);
  out::puts("\n");
  net.last_layer_f32(head.weights(), head.bias());
  const tl::quant_params fq = net.feature_params();
  features_of(tl_ft_images, mcu_example::ft_train_count, ft_features);
  features_of(tl_heldout_images, mcu_example::ft_heldout_count, ho_features);
  const std::size_t n_ho = mcu_example::ft_heldout_count;
  const std::size_t before_int8 = int8_correct(tl_heldout_images, tl_heldout_labels, n_ho);
  const std::size_t before = head.correct(ho_features, fq, tl_heldout_labels, n_ho);
  const std::size_t train_before = head.correct(ft_features, fq, tl_ft_labels, mcu_example::ft_train_count);
  head.train(ft_features, fq, tl_ft_labels, mcu_example::ft_train_count, mcu_example::ft_epochs,
             mcu_example::ft_learning_rate, mcu_example::ft_decay);
  const std::size_t after = head.correct(ho_features, fq, tl_heldout_labels, n_ho);
  const std::size_t train_after = head.correct(ft_features, fq, tl_ft_labels, mcu_example::ft_train_count);
  put_line("fine-tuning: held-out before ", static_cast<long>(before), "/");
  put_line("", static_cast<long>(n_ho), " (int8 path ");
  put_line("", static_cast<long>(before_int8), "/");
  put_line("", static_cast<long>(n_ho), "), after ");
  put_line("", static_cast<long>(after), "/");
  put_line("", static_cast<long>(n_ho), "\n");
  put_line("fine-tuning: training samples before ", static_cast<long>(train_before), "/");
  put_line("", static_cast<long>(mcu_example::ft_train_count), ", after ");
  put_line("", static_cast<long>(train_after), "/");
  put_line("", static_cast<long>(mcu_example::ft_train_count), "; ");
  put_line("", static_cast<long>(mcu_example::ft_epochs), " epochs of SGD; weights checksum ");
  put_hex(head.checksum());
  out::puts("\n");
  put_line("RAM: fine-tuning head ", static_cast<long>(head_t::state_bytes), " bytes, int8 features ");
  put_line("", static_cast<long>(sizeof ft_features + sizeof ho_features), " bytes\n");
  if (after <= before && status == 0) status = 4;

#if TL_ON_DEVICE
  put_line("device: static RAM (.data + .bss) ",
           static_cast<long>(reinterpret_cast<std::uintptr_t>(&_bss_end) - reinterpret_cast<std::uintptr_t>(&_data_start)),
           " bytes\n");
  put_line("device: stack high-water mark ", static_cast<long>(tl_stack_high_water()), " bytes\n");
#endif
  put_line("exit status ", status);
  return status;
}
