// Training and inference speed of LeNet-300-100 on Fashion-MNIST, single
// thread: one epoch of SGD (batch 64) in samples/s, and batch-1 inference
// latency in fp32 and int8. benchmarks/bench_training_torch.py runs this
// binary and the same measurements in PyTorch in one run and prints both.
//
//   bench_training [--repeats N]      prints one JSON object
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "tinylarge/data/idx.hpp"
#include "tinylarge/nn/nn.hpp"

namespace nn = tl::nn;
using lenet_300_100 = tl::sequential<tl::dense<784, 300>, tl::relu, tl::dense<300, 100>, tl::relu, tl::dense<100, 10>>;

namespace {
double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}
}  // namespace

int main(int argc, char** argv) {
  int repeats = 3;
  for (int i = 1; i + 1 < argc; ++i)
    if (std::string(argv[i]) == "--repeats") repeats = std::max(1, std::stoi(argv[i + 1]));
  const auto train = tl::data::load_fashion_mnist(tl::data::split::train);
  const auto test = tl::data::load_fashion_mnist(tl::data::split::test);
  const nn::labelled_view<std::uint8_t> tv{train.images.data(), train.labels.data(), train.count, 784};

  // One epoch of plain SGD, batch 64 (best of `repeats` epochs, each from the same initial weights).
  double best_epoch = 1e30;
  double accuracy = 0.0;
  for (int r = 0; r < repeats; ++r) {
    nn::network<lenet_300_100> net(1);
    const auto t0 = std::chrono::steady_clock::now();
    nn::fit(net, nn::sgd{.learning_rate = 0.01f}, nn::softmax_cross_entropy{}, tv, {.epochs = 1, .batch_size = 64});
    best_epoch = std::min(best_epoch, seconds_since(t0));
    accuracy = nn::evaluate(net, nn::softmax_cross_entropy{},
                            nn::labelled_view<std::uint8_t>{test.images.data(), test.labels.data(), test.count, 784})
                   .accuracy;
  }

  // Batch-1 inference over the test set, fp32 and int8 (PTQ).
  nn::network<lenet_300_100> net(1);
  nn::fit(net, nn::sgd{.learning_rate = 0.01f}, nn::softmax_cross_entropy{}, tv, {.epochs = 1, .batch_size = 64});
  auto q = std::make_unique<nn::quantized_network<lenet_300_100, tl::int8_per_channel, nn::heap_storage>>();
  nn::quantize_post_training(net, train.images.data(), 2000, *q);
  volatile float sink = 0.0f;
  double best_fp32 = 1e30, best_int8 = 1e30;
  for (int r = 0; r < repeats; ++r) {
    auto t0 = std::chrono::steady_clock::now();
    for (std::size_t i = 0; i < test.count; ++i) sink = sink + net.forward(test.image(i), 1)[0];
    best_fp32 = std::min(best_fp32, seconds_since(t0) / static_cast<double>(test.count));
    t0 = std::chrono::steady_clock::now();
    std::size_t s = 0;
    for (std::size_t i = 0; i < test.count; ++i) s += q->classify(test.image(i));
    best_int8 = std::min(best_int8, seconds_since(t0) / static_cast<double>(test.count));
    sink = sink + static_cast<float>(s);
  }
  std::printf(
      "{\"impl\": \"tinylarge\", \"backend\": \"%s\", \"epoch_seconds\": %.3f, \"train_samples_per_second\": %.0f, "
      "\"test_accuracy_after_one_epoch\": %.4f, \"fp32_batch1_us\": %.2f, \"int8_batch1_us\": %.2f}\n",
      tl::kernels::default_backend::name(), best_epoch, static_cast<double>(train.count) / best_epoch, accuracy,
      1e6 * best_fp32, 1e6 * best_int8);
  return 0;
}
