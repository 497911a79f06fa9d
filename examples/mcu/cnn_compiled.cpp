// Minimal firmware of a convolutional model (docs/mcu.md, code-size target): the same
// `quantized_network<TL_MODEL, int8_per_channel, flash_storage>` as cnn_int8.cpp, with the
// parameters compiled into the firmware as const arrays in flash (<name>_compiled.h, written
// by make_cnn from the same quantized network as the model file) instead of a model file that
// is validated at boot: no reader, no CRC, no Huffman decoder — the build checks the sizes.
// Runs the embedded inputs, prints the logits in cnn_int8's format and compares them with the
// host's (exit 3 on a difference).
#include <cstddef>
#include <cstdint>
#include <new>

#if defined(__arm__) && !defined(__linux__) && !defined(TINYLARGE_FREESTANDING)
#define TINYLARGE_FREESTANDING 1
#endif
#include <tinylarge/kernels/backend.hpp>
#include <tinylarge/nn/quantized_network.hpp>

#include "cnn_models.hpp"

#define TL_STR2(x) #x
#define TL_STR(x) TL_STR2(x)

#if defined(__arm__) && !defined(__linux__)
#include "startup.hpp"
extern "C" std::uint32_t tl_stack_high_water();
namespace out = tl_mcu;
#define TL_WEIGHTS_SECTION __attribute__((section(".tl_weights")))
#define TINYLARGE_C_ALIGNAS(n) __attribute__((section(".tl_data"), aligned(n)))
#else
#include <cstdio>
namespace out {
inline void puts(const char* s) { std::fputs(s, stdout); }
inline void put_int(long v) { std::printf("%ld", v); }
}  // namespace out
#endif
#include TL_STR(TL_DATA_HEADER)
#include TL_STR(TL_COMPILED_HEADER)

#include "cnn_run.hpp"

namespace tl = tinylarge;
using mcu_cnn::put_line;
using model = mcu_cnn::TL_MODEL;
using network = tl::nn::quantized_network<model, tl::int8_per_channel, tl::nn::flash_storage>;

namespace {
alignas(network) unsigned char net_storage[sizeof(network)];  // .bss (see cnn_int8.cpp)

}  // namespace

int main() {
  network& net = *new (net_storage) network;
  std::size_t r = 0;
  // The nodes of the int8 graph: the model's layers, a residual block as its inner layers and its add.
  using graph = network::graph;
  graph::for_each_layer([&]<std::size_t I>() {
    using L = typename graph::template layer<I>;
    if constexpr (tl::nn::has_weights(L::kind)) net.template bind_layer<I>(tl_compiled::layers[r++]);
  });
  static_assert(sizeof(tl_compiled::tensor_scale) / sizeof(float) == graph::size + 1, "generated tensors do not match");
  static_assert(sizeof(tl_compiled::layers) / sizeof(tl_compiled::layers[0]) ==
                    [] {
                      std::size_t n = 0;
                      graph::for_each_layer([&]<std::size_t I>() { n += tl::nn::has_weights(graph::template layer<I>::kind); });
                      return n;
                    }(),
                "generated layers do not match the model");
  // (one unused entry when the model has no residual block)
  static_assert(sizeof(tl_compiled::adds) / sizeof(tl_compiled::adds[0]) ==
                    (network::residual_count > 0 ? network::residual_count : 1),
                "generated residual adds do not match the model");
  for (std::size_t a = 0, n = network::residual_count; a < n; ++a) net.residual_add(a) = tl_compiled::adds[a];
  auto& tq = net.tensor_quantization();
  for (std::size_t t = 0; t <= graph::size; ++t) tq[t] = {tl_compiled::tensor_scale[t], tl_compiled::tensor_zero_point[t]};

  constexpr std::size_t count = sizeof(tl_inputs) / model::input_size;
  const std::size_t differ = mcu_cnn::run_inputs<model>(net, tl_inputs, tl_expected, count);
#if defined(__arm__) && !defined(__linux__)
  put_line("device: stack high-water mark ", static_cast<long>(tl_stack_high_water()), " bytes\n");
#endif
  return differ == 0 ? 0 : 3;
}
