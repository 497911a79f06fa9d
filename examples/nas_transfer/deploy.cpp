// Compiles an emitted model header (NAS_MODEL_HEADER, written by
// nas_transfer --header or, by default, by nas_emit_demo at build time),
// instantiates its compile-time model with the emitted weights, and deploys
// it as int8 by the library's post-training quantization: prints the
// model's flash and arena bytes and, when Fashion-MNIST is found, its fp32
// and int8 accuracy on the target task (test images of classes 5-9, labels
// 0-4), calibrating on the first 50 training images of each target class
// (the rows the search calibrated on).
//
//   nas_deploy [--data DIR]
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "tinylarge/data/idx.hpp"
#include "tinylarge/nn/nn.hpp"
#include "../common/cli.hpp"

#include NAS_MODEL_HEADER

namespace nn = tl::nn;

int main(int argc, char** argv) {
  std::string data = "/usr/share/datasets/fashion-mnist";
  examples::cli args(argc, argv, "[--data DIR]");
  while (args.next()) {
    if (args.is("--data")) data = args.text();
    else args.unknown();
  }
  using model = nas_model::model;
  using qnet = nn::quantized_network<model, tl::int8_per_channel, nn::heap_storage>;
  auto net = std::make_unique<nn::network<model>>();
  std::copy(std::begin(nas_model::parameters), std::end(nas_model::parameters), net->parameters().begin());
  std::printf("emitted model: %zu parameters, %zu MACs; int8: %zu flash bytes, %zu arena bytes; precisions:", model::param_count,
              model::macs, qnet::parameter_bytes, qnet::arena_bytes);
  for (const char* p : nas_model::layer_precisions) std::printf(" %s", p);
  std::printf("\n");
  if (!std::filesystem::exists(data + "/t10k-images-idx3-ubyte.gz")) {
    std::printf("no Fashion-MNIST under %s: accuracy not measured\n", data.c_str());
    return 0;
  }
  try {
    const auto train = tl::data::load_fashion_mnist(tl::data::split::train, data);
    const auto test = tl::data::load_fashion_mnist(tl::data::split::test, data);
    std::vector<float> calib;
    std::vector<std::size_t> per_class(10, 0);
    for (std::size_t i = 0; i < train.count; ++i)
      if (train.labels[i] >= 5 && per_class[train.labels[i]]++ < 50)
        calib.insert(calib.end(), train.images.begin() + static_cast<std::ptrdiff_t>(i * 784),
                     train.images.begin() + static_cast<std::ptrdiff_t>((i + 1) * 784));
    auto q = std::make_unique<qnet>();
    nn::quantize_post_training(*net, calib.data(), calib.size() / 784, *q);
    std::size_t n = 0, hits32 = 0, hits8 = 0;
    for (std::size_t i = 0; i < test.count; ++i) {
      if (test.labels[i] < 5) continue;
      const float* x = test.images.data() + i * 784;
      const std::size_t label = test.labels[i] - 5u;
      const float* z = net->forward(x, 1);
      std::size_t a = 0;
      for (std::size_t j = 1; j < model::output_size; ++j) a = z[j] > z[a] ? j : a;
      hits32 += a == label ? 1 : 0;
      hits8 += q->classify(x) == label ? 1 : 0;
      ++n;
    }
    std::printf("target test (%zu images): fp32 %.4f, int8 (library PTQ, quantized_network) %.4f\n", n,
                static_cast<double>(hits32) / static_cast<double>(n), static_cast<double>(hits8) / static_cast<double>(n));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "nas_deploy: %s\n", e.what());
    return 1;
  }
  return 0;
}
