// Training and inference speed of LeNet-300-100 on Fashion-MNIST, single
// thread: one epoch of SGD (batch 64) in samples/s, and batch-1 inference
// latency over the 10 000 test images in fp32 and int8.
// benchmarks/bench_training_torch.py runs this binary and the same
// measurements in PyTorch in one run and prints both with the ratios.
//
// Batch-1 latency is measured three ways in fp32: `inference_network::forward`
// (the packed batch-1 path: the fp32 deployment form, as `quantized_network`
// is the int8 one), `network::forward(x, 1)` (the training object), and the
// packed path on dense random inputs (no zero pixel to skip: its worst case).
// int8 is `quantized_network::classify` (input quantization included). Each
// figure is the best of `repeats` passes, in wall-clock time and in the
// process's CPU time (less disturbed on a shared machine; the training epoch
// is reported both ways too).
//
// --width W (100, 300 or 1000; default 300) sets the first hidden layer: 784-W-100-10, LeNet-300-100
// at 300 (issue 24 compares training at the three widths).
//
//   bench_training [--repeats N] [--width W]      prints one JSON object
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <memory>
#include <string>
#include <vector>

#include "tinylarge/data/idx.hpp"
#include "tinylarge/nn/nn.hpp"

namespace nn = tl::nn;
/// LeNet-300-100 with W units in the first hidden layer (W = 300: LeNet-300-100 itself).
template <std::size_t W>
using lenet_w_100 = tl::sequential<tl::dense<784, W>, tl::relu, tl::dense<W, 100>, tl::relu, tl::dense<100, 10>>;

namespace {
double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}
double cpu_seconds() {
  timespec t{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + 1e-9 * static_cast<double>(t.tv_nsec);
}

/// Best per-call time of `pass` (which makes `calls` calls) over `repeats`
/// passes: {wall, process CPU} seconds per call.
struct latency {
  double wall = 1e30, cpu = 1e30;
};
template <class F>
latency best_of(int repeats, std::size_t calls, F&& pass) {
  latency l;
  for (int r = 0; r < repeats; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    const double c0 = cpu_seconds();
    pass();
    l.cpu = std::min(l.cpu, (cpu_seconds() - c0) / static_cast<double>(calls));
    l.wall = std::min(l.wall, seconds_since(t0) / static_cast<double>(calls));
  }
  return l;
}
}  // namespace

template <std::size_t Width>
int run(int repeats) {
  using lenet_300_100 = lenet_w_100<Width>;
  const auto train = tl::data::load_fashion_mnist(tl::data::split::train);
  const auto test = tl::data::load_fashion_mnist(tl::data::split::test);
  const nn::labelled_view<std::uint8_t> tv{train.images.data(), train.labels.data(), train.count, 784};

  // One epoch of plain SGD, batch 64 (best of `repeats` epochs, each from the same initial weights).
  double best_epoch = 1e30, best_epoch_cpu = 1e30;
  double accuracy = 0.0;
  for (int r = 0; r < repeats; ++r) {
    nn::network<lenet_300_100> net(1);
    const auto t0 = std::chrono::steady_clock::now();
    const double c0 = cpu_seconds();
    nn::fit(net, nn::sgd{.learning_rate = 0.01f}, nn::softmax_cross_entropy{}, tv, {.epochs = 1, .batch_size = 64});
    best_epoch_cpu = std::min(best_epoch_cpu, cpu_seconds() - c0);
    best_epoch = std::min(best_epoch, seconds_since(t0));
    accuracy = nn::evaluate(net, nn::softmax_cross_entropy{},
                            nn::labelled_view<std::uint8_t>{test.images.data(), test.labels.data(), test.count, 784})
                   .accuracy;
  }

  // Batch-1 inference over the test set, fp32 and int8 (PTQ).
  nn::network<lenet_300_100> net(1);
  nn::fit(net, nn::sgd{.learning_rate = 0.01f}, nn::softmax_cross_entropy{}, tv, {.epochs = 1, .batch_size = 64});
  auto fast = std::make_unique<nn::inference_network<lenet_300_100>>(net);
  auto q = std::make_unique<nn::quantized_network<lenet_300_100, tl::int8_per_channel, nn::heap_storage>>();
  nn::quantize_post_training(net, train.images.data(), 2000, *q);
  std::vector<float> dense_inputs(784 * 100);  // uniform in (0, 1): no zero to skip
  tl::rng g(7);
  for (float& v : dense_inputs) v = 0.001f + 0.999f * g.uniform();
  volatile float sink = 0.0f;
  const std::size_t n = test.count;
  const latency fp32 = best_of(repeats, n, [&] {
    for (std::size_t i = 0; i < n; ++i) sink = sink + fast->forward(test.image(i))[0];
  });
  const latency fp32_net = best_of(repeats, n, [&] {
    for (std::size_t i = 0; i < n; ++i) sink = sink + net.forward(test.image(i), 1)[0];
  });
  const latency fp32_dense = best_of(repeats, n, [&] {
    for (std::size_t i = 0; i < n; ++i) sink = sink + fast->forward(dense_inputs.data() + 784 * (i % 100))[0];
  });
  const latency int8 = best_of(repeats, n, [&] {
    std::size_t s = 0;
    for (std::size_t i = 0; i < n; ++i) s += q->classify(test.image(i));
    sink = sink + static_cast<float>(s);
  });
  std::printf(
      "{\"impl\": \"tinylarge\", \"backend\": \"%s\", \"width\": %zu, \"epoch_seconds\": %.3f, \"train_samples_per_second\": %.0f, "
      "\"epoch_cpu_seconds\": %.3f, \"train_samples_per_cpu_second\": %.0f, "
      "\"test_accuracy_after_one_epoch\": %.4f, \"latency_images\": %zu, "
      "\"fp32_batch1_us\": %.2f, \"fp32_batch1_cpu_us\": %.2f, "
      "\"fp32_network_forward_batch1_us\": %.2f, \"fp32_network_forward_batch1_cpu_us\": %.2f, "
      "\"fp32_batch1_dense_input_us\": %.2f, \"fp32_batch1_dense_input_cpu_us\": %.2f, "
      "\"int8_batch1_us\": %.2f, \"int8_batch1_cpu_us\": %.2f}\n",
      tl::kernels::default_backend::name(), Width, best_epoch, static_cast<double>(train.count) / best_epoch, best_epoch_cpu,
      static_cast<double>(train.count) / best_epoch_cpu, accuracy, n,
      1e6 * fp32.wall, 1e6 * fp32.cpu, 1e6 * fp32_net.wall, 1e6 * fp32_net.cpu, 1e6 * fp32_dense.wall,
      1e6 * fp32_dense.cpu, 1e6 * int8.wall, 1e6 * int8.cpu);
  return 0;
}

int main(int argc, char** argv) {
  int repeats = 3;
  std::size_t width = 300;
  for (int i = 1; i + 1 < argc; ++i) {
    if (std::string(argv[i]) == "--repeats") repeats = std::max(1, std::stoi(argv[i + 1]));
    if (std::string(argv[i]) == "--width") width = static_cast<std::size_t>(std::stoul(argv[i + 1]));
  }
  switch (width) {
    case 100: return run<100>(repeats);
    case 300: return run<300>(repeats);
    case 1000: return run<1000>(repeats);
    default:
      std::fprintf(stderr, "bench_training: --width takes 100, 300 or 1000 (got %zu)\n", width);
      return 2;
  }
}
