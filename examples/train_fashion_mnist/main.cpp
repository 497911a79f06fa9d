// Train LeNet-300-100 and a LeNet-5-like CNN on Fashion-MNIST in fp32, then
// deploy both as int8 by post-training quantization (PTQ) and by
// quantization-aware training (QAT), and report test accuracy and parameter
// bytes of each.
//
//   train_fashion_mnist [--epochs N] [--cnn-epochs N] [--qat-epochs N]
//                       [--model mlp|cnn|both] [--quick] [--json FILE] [--seed S]
//                       [--precisions]
//
// --precisions instead trains each model three times from the same seed for
// the same epochs — fp32, fp16 mixed precision (fp32 master weights, fp16
// GEMM operands, dynamic loss scaling) and bf16 mixed precision — and reports
// the test accuracy of each, its deployment in its storage precision
// (`mixed_inference_network`: weight bytes and accuracy), the optimizer steps
// skipped by loss scaling and the training throughput (docs/precision.md).
//
// --quick trains on 6 000 images and tests on 2 000 for a couple of epochs
// (a smoke test that takes seconds); the default is the full 60 000 / 10 000.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "tinylarge/data/idx.hpp"
#include "tinylarge/nn/nn.hpp"
#include "../common/cli.hpp"

namespace nn = tl::nn;

namespace {

using lenet_300_100 = tl::sequential<tl::dense<784, 300>, tl::relu, tl::dense<300, 100>, tl::relu, tl::dense<100, 10>>;
// LeNet-5's topology (5×5 conv, pool, 5×5 conv, pool, 120, 84, 10) with twice
// its convolution channels (12 and 24 instead of 6 and 16): the 6/16 original
// reached 90.49% at best, just short of the 90.5% goal.
using lenet5 = tl::sequential<tl::input<28, 28, 1>, tl::conv2d<12, 5, 1, 2>, tl::relu, tl::max_pool2d<2>,
                              tl::conv2d<24, 5>, tl::relu, tl::max_pool2d<2>, tl::flatten, tl::dense<600, 120>,
                              tl::relu, tl::dense<120, 84>, tl::relu, tl::dense<84, 10>>;

static_assert(lenet_300_100::param_count == 266'610);
static_assert(lenet5::param_count == 90'670);

struct options {
  std::size_t epochs = 15, cnn_epochs = 10, qat_epochs = 2;
  std::string model = "both", json;
  bool quick = false, precisions = false;
  std::uint64_t seed = 1;
};

struct result {
  std::string name;
  std::size_t epochs = 0;
  double fp32 = 0, ptq = 0, qat = 0;
  std::size_t fp32_bytes = 0, int8_bytes = 0;
  double train_seconds = 0, samples_per_second = 0;
  std::size_t arena_bytes = 0;
  unsigned long long macs = 0;
};

template <class Q>
double int8_accuracy(Q& q, const nn::labelled_view<std::uint8_t>& test) {
  std::size_t hits = 0;
  for (std::size_t i = 0; i < test.count; ++i) hits += q.classify(test.x + i * test.features) == test.y[i] ? 1 : 0;
  return static_cast<double>(hits) / static_cast<double>(test.count);
}

template <class Model>
result run(const char* name, std::size_t epochs, const options& opt, const nn::labelled_view<std::uint8_t>& train,
           const nn::labelled_view<std::uint8_t>& test) {
  result r;
  r.name = name;
  r.epochs = epochs;
  r.macs = Model::macs;
  std::printf("== %s: %zu parameters, %zu MACs/sample, int8 arena %zu bytes\n", name, Model::param_count, Model::macs,
              Model::template arena_bytes<tl::int8_per_channel>);
  nn::network<Model> net;
  net.template initialize<nn::he_normal>(opt.seed);
  // Adam (lr 1e-3, ×0.85 per epoch): a robust default for both models.
  const nn::adam optimizer{.learning_rate = 1e-3f};
  nn::fit_options fo{.epochs = epochs, .batch_size = 64, .seed = opt.seed, .shuffle = true, .lr_decay = 0.85f};
  const auto history = nn::fit(net, optimizer, nn::softmax_cross_entropy{}, train, fo, &test, nn::progress_printer{.prefix = "  "});
  for (const auto& h : history) r.train_seconds += h.seconds;
  r.samples_per_second = static_cast<double>(train.count * history.size()) / r.train_seconds;
  r.fp32 = nn::evaluate(net, nn::softmax_cross_entropy{}, test).accuracy;
  r.fp32_bytes = Model::param_count * sizeof(float);

  // PTQ: calibrate on (up to) 2 000 training images.
  using qnet = nn::quantized_network<Model, tl::int8_per_channel, nn::heap_storage>;
  auto q = std::make_unique<qnet>();
  nn::quantize_post_training(net, train.x, std::min<std::size_t>(2000, train.count), *q);
  r.ptq = int8_accuracy(*q, test);
  r.int8_bytes = qnet::parameter_bytes;
  r.arena_bytes = qnet::arena_bytes;

  // QAT: fine-tune a copy with fake quantization, then convert with the tracked ranges.
  nn::network<Model> qat_net = net;
  qat_net.enable_fake_quant(true, /*per_channel=*/true);
  nn::fit_options qo{.epochs = opt.qat_epochs, .batch_size = 64, .seed = opt.seed + 1, .shuffle = true, .lr_decay = 0.5f};
  nn::fit(qat_net, nn::adam{.learning_rate = 1e-4f}, nn::softmax_cross_entropy{}, train, qo, &test,
          nn::progress_printer{.prefix = "  qat "});
  auto q2 = std::make_unique<qnet>();
  nn::convert(qat_net, qat_net.tracked_ranges(), *q2);
  r.qat = int8_accuracy(*q2, test);

  std::printf("  %s test accuracy: fp32 %.2f%% (%zu bytes) | int8 PTQ %.2f%% | int8 QAT %.2f%% (%zu bytes, arena %zu)\n",
              name, 100 * r.fp32, r.fp32_bytes, 100 * r.ptq, 100 * r.qat, r.int8_bytes, r.arena_bytes);
  return r;
}

/// Trains `Model` in precision P (same seed, epochs and optimizer as fp32)
/// and deploys it in P's storage type; prints one table row.
template <class Model, class P>
void run_precision(const char* name, std::size_t epochs, const options& opt, const nn::labelled_view<std::uint8_t>& train,
                   const nn::labelled_view<std::uint8_t>& test) {
  auto net = std::make_unique<nn::network<Model, nn::heap_storage, P>>();
  net->template initialize<nn::he_normal>(opt.seed);
  const nn::adam optimizer{.learning_rate = 1e-3f};
  nn::fit_options fo{.epochs = epochs, .batch_size = 64, .seed = opt.seed, .shuffle = true, .lr_decay = 0.85f};
  const auto history = nn::fit(*net, optimizer, nn::softmax_cross_entropy{}, train, fo);
  double secs = 0;
  std::size_t skipped = 0;
  for (const auto& h : history) {
    secs += h.seconds;
    skipped += h.skipped_steps;
  }
  const double acc = nn::evaluate(*net, nn::softmax_cross_entropy{}, test).accuracy;
  using deploy_t = nn::mixed_inference_network<Model, P>;
  auto deploy = std::make_unique<deploy_t>(*net);
  std::size_t hits = 0;
  for (std::size_t s = 0; s < test.count; s += 256) {
    const std::size_t b = std::min<std::size_t>(256, test.count - s);
    const float* y = deploy->forward(test.x + s * test.features, b);
    for (std::size_t i = 0; i < b; ++i) {
      std::size_t a = 0;
      for (std::size_t j = 1; j < Model::output_size; ++j) a = y[i * Model::output_size + j] > y[i * Model::output_size + a] ? j : a;
      hits += a == test.y[s + i] ? 1 : 0;
    }
  }
  const double deploy_acc = static_cast<double>(hits) / static_cast<double>(test.count);
  std::printf("| %s | %s | %zu | %.2f%% | %.2f%% | %zu | %zu | %zu | %.0f |\n", name, P::name(), epochs, 100 * acc,
              100 * deploy_acc, deploy_t::weight_bytes(), deploy_t::other_parameter_bytes(), skipped,
              static_cast<double>(train.count * history.size()) / secs);
  std::fflush(stdout);
}

template <class Model>
void run_precisions(const char* name, std::size_t epochs, const options& opt, const nn::labelled_view<std::uint8_t>& train,
                    const nn::labelled_view<std::uint8_t>& test) {
  run_precision<Model, tl::fp32>(name, epochs, opt, train, test);
  run_precision<Model, tl::fp16>(name, epochs, opt, train, test);
  run_precision<Model, tl::bf16>(name, epochs, opt, train, test);
}

}  // namespace

int main(int argc, char** argv) {
  options opt;
  examples::cli args(argc, argv,
                     "[--epochs N] [--cnn-epochs N] [--qat-epochs N] [--model mlp|cnn|both] [--quick] "
                     "[--json FILE] [--seed S] [--precisions]");
  while (args.next()) {
    if (args.is("--epochs")) opt.epochs = args.count();
    else if (args.is("--cnn-epochs")) opt.cnn_epochs = args.count();
    else if (args.is("--qat-epochs")) opt.qat_epochs = args.count();
    else if (args.is("--model")) opt.model = args.text();
    else if (args.is("--json")) opt.json = args.text();
    else if (args.is("--seed")) opt.seed = args.count<std::uint64_t>();
    else if (args.is("--quick")) opt.quick = true;
    else if (args.is("--precisions")) opt.precisions = true;
    else args.unknown();
  }
  if (opt.quick) {
    opt.epochs = std::min<std::size_t>(opt.epochs, 2);
    opt.cnn_epochs = std::min<std::size_t>(opt.cnn_epochs, 1);
    opt.qat_epochs = std::min<std::size_t>(opt.qat_epochs, 1);
  }
  try {
    const auto train_set = tl::data::load_fashion_mnist(tl::data::split::train);
    const auto test_set = tl::data::load_fashion_mnist(tl::data::split::test);
    nn::labelled_view<std::uint8_t> train{train_set.images.data(), train_set.labels.data(), train_set.count, 784};
    nn::labelled_view<std::uint8_t> test{test_set.images.data(), test_set.labels.data(), test_set.count, 784};
    if (opt.quick) {
      train.count = 6000;
      test.count = 2000;
    }
    std::printf("Fashion-MNIST: %zu training, %zu test images\n", train.count, test.count);
    if (opt.precisions) {
      std::printf("| model | precision | epochs | test accuracy (training network) | test accuracy (deployed in its "
                  "storage) | weight bytes | bias bytes | skipped steps | train samples/s |\n|---|---|---|---|---|---|---|---|---|\n");
      if (opt.model == "mlp" || opt.model == "both") run_precisions<lenet_300_100>("lenet_300_100", opt.epochs, opt, train, test);
      if (opt.model == "cnn" || opt.model == "both") run_precisions<lenet5>("lenet5_cnn", opt.cnn_epochs, opt, train, test);
      return 0;
    }
    std::vector<result> results;
    if (opt.model == "mlp" || opt.model == "both")
      results.push_back(run<lenet_300_100>("lenet_300_100", opt.epochs, opt, train, test));
    if (opt.model == "cnn" || opt.model == "both")
      results.push_back(run<lenet5>("lenet5_cnn", opt.cnn_epochs, opt, train, test));
    if (!opt.json.empty()) {
      std::FILE* f = std::fopen(opt.json.c_str(), "w");
      if (f == nullptr) {
        std::fprintf(stderr, "cannot write %s\n", opt.json.c_str());
        return 1;
      }
      std::fprintf(f, "{\n  \"train_images\": %zu,\n  \"test_images\": %zu,\n  \"models\": [\n", train.count, test.count);
      for (std::size_t i = 0; i < results.size(); ++i) {
        const result& r = results[i];
        std::fprintf(f,
                     "    {\"name\": \"%s\", \"epochs\": %zu, \"fp32_accuracy\": %.4f, \"int8_ptq_accuracy\": %.4f, "
                     "\"int8_qat_accuracy\": %.4f, \"fp32_parameter_bytes\": %zu, \"int8_parameter_bytes\": %zu, "
                     "\"int8_arena_bytes\": %zu, \"macs_per_sample\": %llu, \"train_seconds\": %.1f, "
                     "\"train_samples_per_second\": %.0f}%s\n",
                     r.name.c_str(), r.epochs, r.fp32, r.ptq, r.qat, r.fp32_bytes, r.int8_bytes, r.arena_bytes, r.macs,
                     r.train_seconds, r.samples_per_second, i + 1 < results.size() ? "," : "");
      }
      std::fprintf(f, "  ]\n}\n");
      std::fclose(f);
    }
  } catch (const tl::error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
