// fmnist_int8_parity: the int8 inference of a trained Fashion-MNIST model gives
// the same int8 outputs on every architecture (issue 10, point 4).
//
//   fmnist_int8_parity train MODEL_FILE [--data DIR] [--train-images N] [--epochs E] [--seed S]
//   fmnist_int8_parity infer MODEL_FILE [--data DIR] [--images N] [--min-accuracy A] [--flip-weight I|effective]
//
// fp32 training is not bit-reproducible across architectures (FMA contraction
// and summation order differ), so the model is trained once, on the host, and
// only its int8 form travels:
//
//  - `train` (run on x86-64): trains LeNet-300-100 (784-300-100-10, Adam, seeded)
//    on the first N training images for E epochs, quantizes it post-training
//    (per-channel int8, calibrated on 2 000 training images) and writes it as a
//    model file (compress/model_file.hpp: one int8 record per dense layer with
//    its int8 weights, int32 biases, scales, zero points, Q31 multipliers and
//    shifts). It then loads the file back and requires that every array of the
//    loaded network equals the in-memory one and that both give the same int8
//    logits on the whole test set (the file round-trips the network exactly).
//  - `infer` (run on x86-64 and under qemu-aarch64 / qemu-arm): loads the model
//    file into a `nn::quantized_network`, runs integer-only inference of the
//    test images and prints, on stdout, CRC-32s of the quantized inputs, of all
//    int8 logits and of the predicted labels, and the accuracy. That output
//    must be byte-identical on every target (scripts/arm_linux_test.sh
//    compares it); the back end goes to stderr. Exit status 1 when the accuracy
//    is below --min-accuracy (default 0.80: an untrained or broken model cannot
//    pass) or on any error.
//
// `--flip-weight I` negates int8 weight I (of the flat weight array) after
// loading; `--flip-weight effective` the first output-layer weight whose
// negation changes the int8 logits of test image 0 (an arbitrary weight may
// change nothing: it can sit on a relu unit that never fires or on an
// always-background pixel). The script runs it once to show that the
// comparison catches a single changed weight.
//
// Compiled with -ffp-contract=off: the only floating point on the inference
// path is the quantization of the input pixels (p/255 divided by the input
// scale, both correctly rounded), which is then identical everywhere.
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "tinylarge/compress/model_file.hpp"
#include "tinylarge/core/crc32.hpp"
#include "tinylarge/data/idx.hpp"
#include "tinylarge/nn/nn.hpp"

namespace {

namespace nn = tl::nn;
namespace mf = tl::compress;

using lenet_300_100 = tl::sequential<tl::dense<784, 300>, tl::relu, tl::dense<300, 100>, tl::relu, tl::dense<100, 10>>;
using qnet = nn::quantized_network<lenet_300_100, tl::int8_per_channel, nn::heap_storage>;
using model = lenet_300_100;

const char* const usage =
    "usage: fmnist_int8_parity train MODEL_FILE [--data DIR] [--train-images N] [--epochs E] [--seed S]\n"
    "       fmnist_int8_parity infer MODEL_FILE [--data DIR] [--images N] [--min-accuracy A]\n"
    "                                [--flip-weight I|effective]\n";

struct options {
  std::string mode, path, data = "/usr/share/datasets/fashion-mnist";
  std::size_t train_images = 20000, epochs = 2, images = 10000;
  std::uint64_t seed = 1;
  double min_accuracy = 0.80;
  long long flip_weight = -1;  ///< -1: none; -2: `first_effective_weight`
};

[[noreturn]] void bad_usage(const std::string& why) {
  std::fprintf(stderr, "fmnist_int8_parity: %s\n%s", why.c_str(), usage);
  std::exit(2);
}

unsigned long long parse_count(const std::string& flag, const char* s) {
  char* end = nullptr;
  errno = 0;
  const unsigned long long v = std::strtoull(s, &end, 10);
  if (*s == '\0' || *s == '-' || *end != '\0' || errno != 0) bad_usage(flag + " needs a non-negative integer, got '" + s + "'");
  return v;
}

/// A count in [0, max] (the bounds below keep it within a 32-bit size_t).
std::size_t parse_size(const std::string& flag, const char* s, unsigned long long max) {
  const unsigned long long v = parse_count(flag, s);
  if (v > max) bad_usage(flag + " must be at most " + std::to_string(max));
  return static_cast<std::size_t>(v);
}

options parse(int argc, char** argv) {
  if (argc < 3) bad_usage("need a mode and a model file");
  options o;
  o.mode = argv[1];
  o.path = argv[2];
  if (o.mode != "train" && o.mode != "infer") bad_usage("unknown mode '" + o.mode + "'");
  for (int i = 3; i < argc; ++i) {
    const std::string a = argv[i];
    if (i + 1 >= argc) bad_usage(a + " needs a value");
    const char* v = argv[++i];
    if (a == "--data") o.data = v;
    else if (a == "--train-images" && o.mode == "train") o.train_images = parse_size(a, v, 60000);
    else if (a == "--epochs" && o.mode == "train") o.epochs = parse_size(a, v, 1000);
    else if (a == "--seed" && o.mode == "train") o.seed = parse_count(a, v);
    else if (a == "--images" && o.mode == "infer") o.images = parse_size(a, v, 10000);
    else if (a == "--flip-weight" && o.mode == "infer")
      o.flip_weight = std::string(v) == "effective" ? -2 : static_cast<long long>(parse_size(a, v, model::weight_count - 1));
    else if (a == "--min-accuracy" && o.mode == "infer") {
      char* end = nullptr;
      o.min_accuracy = std::strtod(v, &end);
      if (*v == '\0' || *end != '\0' || !(o.min_accuracy >= 0.0 && o.min_accuracy <= 1.0))
        bad_usage("--min-accuracy needs a number in [0, 1], got '" + std::string(v) + "'");
    } else {
      bad_usage("unknown option '" + a + "' for mode " + o.mode);
    }
  }
  if (o.mode == "train" && (o.train_images == 0 || o.train_images > 60000 || o.epochs == 0))
    bad_usage("--train-images must be in [1, 60000] and --epochs positive");
  if (o.mode == "infer" && (o.images == 0 || o.images > 10000)) bad_usage("--images must be in [1, 10000]");
  return o;
}

// ---- the int8 network <-> model file --------------------------------------

/// One int8 record per dense layer (relu fused as the record's activation).
std::vector<std::uint8_t> to_model_file(qnet& q) {
  mf::model_file_builder b;
  model::for_each_layer([&]<std::size_t I>() {
    using L = typename model::template layer<I>;
    if constexpr (L::kind == nn::layer_kind::dense) {
      constexpr std::size_t rows = L::out_channels, cols = L::in_shape::size;
      constexpr auto& lay = qnet::layout;
      mf::layer_options lo;
      if constexpr (I + 1 < model::size) {
        static_assert(model::template layer<I + 1>::kind == nn::layer_kind::relu, "dense layers are followed by relu");
        lo.activation = mf::activation_kind::relu;
      }
      b.add_int8(rows, cols, std::span<const std::int8_t>(q.weights() + lay.weight[I], rows * cols),
                 std::span<const float>(q.weight_scales() + lay.bias[I], rows), q.tensor_params(I),
                 q.tensor_params(I + 1), std::span<const std::int32_t>(q.biases() + lay.bias[I], rows), lo);
    } else {
      static_assert(L::kind == nn::layer_kind::relu, "this program handles dense and relu layers only");
    }
  });
  return b.bytes();
}

/// The inverse of `to_model_file`; a file of another shape is a clear error.
void from_model_file(const mf::model_file& f, const std::string& name, qnet& q) {
  auto fail = [&](const std::string& why) {
    TINYLARGE_RAISE(tl::errc::shape_mismatch, "fmnist_int8_parity: model file '" + name + "': " + why +
                                                  " (expected LeNet-300-100 as written by 'fmnist_int8_parity train')");
  };
  if (f.layer_count() != 3) fail(std::to_string(f.layer_count()) + " layer records, not 3");
  auto& tq = q.tensor_quantization();
  std::size_t record = 0;
  model::for_each_layer([&]<std::size_t I>() {
    using L = typename model::template layer<I>;
    if constexpr (L::kind == nn::layer_kind::dense) {
      constexpr std::size_t rows = L::out_channels, cols = L::in_shape::size;
      constexpr auto& lay = qnet::layout;
      const mf::layer_view& v = f.layer(record);
      const std::string at = "layer " + std::to_string(record) + ": ";
      if (v.kind != mf::layer_kind::dense || v.format != mf::weight_format::int8) fail(at + "not an int8 dense record");
      if (v.rows != rows || v.cols != cols)
        fail(at + std::to_string(v.rows) + "x" + std::to_string(v.cols) + ", not " + std::to_string(rows) + "x" +
             std::to_string(cols));
      if (v.int8.scale_count != rows) fail(at + "weights are not quantized per channel");
      if (v.bias_s32 == nullptr) fail(at + "no int32 bias");
      constexpr bool relu = I + 1 < model::size;
      if (v.activation != (relu ? mf::activation_kind::relu : mf::activation_kind::none))
        fail(at + "unexpected activation");
      const tl::quant_params in{v.int8.input_scale, v.int8.input_zero_point};
      const tl::quant_params out{v.int8.output_scale, v.int8.output_zero_point};
      if (I == 0) {
        tq[0] = in;
      } else if (tq[I].scale != in.scale || tq[I].zero_point != in.zero_point) {
        fail(at + "its input quantization differs from the previous layer's output");
      }
      tq[I + 1] = out;
      if constexpr (relu) tq[I + 2] = out;  // the fused relu keeps the grid
      std::memcpy(q.weights() + lay.weight[I], v.int8.weights, rows * cols);
      for (std::size_t o = 0; o < rows; ++o) {
        q.biases()[lay.bias[I] + o] = v.bias_s32[o];
        q.multipliers()[lay.bias[I] + o] = v.int8.multipliers[o];
        q.shifts()[lay.bias[I] + o] = v.int8.shifts[o];
        q.weight_scales()[lay.bias[I] + o] = v.int8.weight_scales[o];
      }
      ++record;
    }
  });
}

/// Whether two int8 networks hold the same parameters, bit for bit.
bool same_parameters(qnet& a, qnet& b) {
  auto same = [](const auto* x, const auto* y, std::size_t n) { return std::memcmp(x, y, n * sizeof(*x)) == 0; };
  bool ok = same(a.weights(), b.weights(), model::weight_count) && same(a.biases(), b.biases(), model::bias_count) &&
            same(a.multipliers(), b.multipliers(), model::bias_count) &&
            same(a.shifts(), b.shifts(), model::bias_count) &&
            same(a.weight_scales(), b.weight_scales(), model::bias_count);
  for (std::size_t t = 0; t < qnet::tensor_count; ++t)
    ok = ok && a.tensor_params(t).scale == b.tensor_params(t).scale &&
         a.tensor_params(t).zero_point == b.tensor_params(t).zero_point;
  return ok;
}

// ---- int8 inference of the test set ----------------------------------------

struct inference {
  std::uint32_t inputs_crc = 0, logits_crc = 0, labels_crc = 0;
  std::size_t hits = 0, count = 0;
};

inference run(qnet& q, const tl::data::dataset& test, std::size_t count) {
  inference r;
  r.count = count;
  const tl::quant_params in = q.input_params();
  std::vector<std::uint8_t> labels(count);
  for (std::size_t i = 0; i < count; ++i) {
    const float* x = test.image(i);
    std::int8_t* buf = q.input_buffer();
    for (std::size_t j = 0; j < model::input_size; ++j) buf[j] = tl::quantize(x[j], in, tl::int8_per_channel::activation_range);
    r.inputs_crc = tl::crc32(buf, model::input_size, r.inputs_crc);
    const std::int8_t* y = q.forward();
    r.logits_crc = tl::crc32(y, model::output_size, r.logits_crc);
    std::size_t best = 0;  // first maximum, as quantized_network::classify
    for (std::size_t c = 1; c < model::output_size; ++c) best = y[c] > y[best] ? c : best;
    labels[i] = static_cast<std::uint8_t>(best);
    r.hits += best == test.labels[i] ? 1 : 0;
  }
  r.labels_crc = tl::crc32(labels.data(), labels.size());
  return r;
}

/// The lines every target must print identically.
void print(const inference& r, std::uint32_t model_crc) {
  std::printf("fmnist_int8 model_file_crc32 %08x\n", static_cast<unsigned>(model_crc));
  std::printf("fmnist_int8 test_images %zu\n", r.count);
  std::printf("fmnist_int8 inputs_crc32 %08x\n", static_cast<unsigned>(r.inputs_crc));
  std::printf("fmnist_int8 logits_crc32 %08x\n", static_cast<unsigned>(r.logits_crc));
  std::printf("fmnist_int8 labels_crc32 %08x\n", static_cast<unsigned>(r.labels_crc));
  std::printf("fmnist_int8 accuracy %zu/%zu = %.2f%%\n", r.hits, r.count,
              100.0 * static_cast<double>(r.hits) / static_cast<double>(r.count));
}

int train(const options& o) {
  const auto train_set = tl::data::load_fashion_mnist(tl::data::split::train, o.data);
  const auto test_set = tl::data::load_fashion_mnist(tl::data::split::test, o.data);
  const nn::labelled_view<std::uint8_t> tr{train_set.images.data(), train_set.labels.data(), o.train_images, 784};
  const nn::labelled_view<std::uint8_t> te{test_set.images.data(), test_set.labels.data(), test_set.count, 784};
  auto net = std::make_unique<nn::network<model>>();
  net->initialize<nn::he_normal>(o.seed);
  const nn::fit_options fo{.epochs = o.epochs, .batch_size = 64, .seed = o.seed, .shuffle = true, .lr_decay = 0.85f};
  nn::fit(*net, nn::adam{.learning_rate = 1e-3f}, nn::softmax_cross_entropy{}, tr, fo, nullptr,
          nn::progress_printer{.out = stderr, .prefix = "train: "});
  const double fp32 = nn::evaluate(*net, nn::softmax_cross_entropy{}, te).accuracy;
  auto q = std::make_unique<qnet>();
  nn::quantize_post_training(*net, tr.x, std::min<std::size_t>(2000, tr.count), *q);

  const std::vector<std::uint8_t> bytes = to_model_file(*q);
  tl::io::write_file(o.path, bytes);
  const mf::model_file f = mf::load_model_file(o.path);
  auto loaded = std::make_unique<qnet>();
  from_model_file(f, o.path, *loaded);
  const inference a = run(*q, test_set, test_set.count), b = run(*loaded, test_set, test_set.count);
  std::fprintf(stderr, "train: %zu images x %zu epochs; test accuracy fp32 %.2f%%, int8 %.2f%%; wrote %s (%zu bytes)\n",
               o.train_images, o.epochs, 100.0 * fp32, 100.0 * static_cast<double>(a.hits) / static_cast<double>(a.count),
               o.path.c_str(), bytes.size());
  const bool params = same_parameters(*q, *loaded);
  const bool outputs = a.inputs_crc == b.inputs_crc && a.logits_crc == b.logits_crc && a.labels_crc == b.labels_crc;
  if (!params || !outputs) {
    std::fprintf(stderr, "fmnist_int8_parity: the model file does not round-trip the int8 network (%s differ)\n",
                 !params ? "parameters" : "int8 outputs");
    return 1;
  }
  std::fprintf(stderr, "train: the model file round-trips the int8 network (parameters and outputs identical)\n");
  print(b, tl::crc32(bytes.data(), bytes.size()));
  return 0;
}

/// The first weight of the output layer whose negation changes the int8
/// logits of test image 0. (Not every weight does: with per-channel scales
/// every row holds a ±127, and a weight on a relu unit that never fires, or
/// on an always-background pixel, changes nothing.)
long long first_effective_weight(qnet& q, const tl::data::dataset& test) {
  auto logits0 = [&] {
    std::vector<std::int8_t> y(model::output_size);
    std::int8_t* buf = q.input_buffer();
    for (std::size_t j = 0; j < model::input_size; ++j)
      buf[j] = tl::quantize(test.image(0)[j], q.input_params(), tl::int8_per_channel::activation_range);
    const std::int8_t* out = q.forward();
    y.assign(out, out + model::output_size);
    return y;
  };
  const std::vector<std::int8_t> ref = logits0();
  for (std::size_t i = qnet::layout.weight[model::size - 1]; i < model::weight_count; ++i) {
    // Every write goes through a fresh weights() call: no reference is kept
    // across a forward() (a back end may cache a packed copy of the weights).
    const std::int8_t keep = q.weights()[i];
    q.weights()[i] = static_cast<std::int8_t>(keep == 0 ? 1 : -keep);
    const bool changed = logits0() != ref;
    q.weights()[i] = keep;
    if (changed) return static_cast<long long>(i);
  }
  TINYLARGE_RAISE(tl::errc::invalid_argument,
                  "fmnist_int8_parity: no single output-layer weight changes the logits of test image 0");
}

int infer(options o) {
  const mf::model_file f = mf::load_model_file(o.path);
  auto q = std::make_unique<qnet>();
  from_model_file(f, o.path, *q);
  const auto test_set = tl::data::load_fashion_mnist(tl::data::split::test, o.data);
  if (o.flip_weight == -2) o.flip_weight = first_effective_weight(*q, test_set);
  if (o.flip_weight >= 0) {
    if (static_cast<unsigned long long>(o.flip_weight) >= model::weight_count)
      bad_usage("--flip-weight must be below " + std::to_string(model::weight_count));
    std::int8_t& w = q->weights()[o.flip_weight];
    w = static_cast<std::int8_t>(w == 0 ? 1 : -w);  // weights are in [-127, 127]
    std::fprintf(stderr, "infer: weight %lld changed to %d (the output must now differ)\n", o.flip_weight, w);
  }
  std::fprintf(stderr, "fmnist_int8_parity: default_backend = %s\n", tl::kernels::default_backend::name());
  const inference r = run(*q, test_set, o.images);
  print(r, tl::crc32(f.bytes().data(), f.bytes().size()));
  const double acc = static_cast<double>(r.hits) / static_cast<double>(r.count);
  if (acc < o.min_accuracy) {
    std::fprintf(stderr, "fmnist_int8_parity: int8 accuracy %.2f%% is below the required %.2f%%\n", 100.0 * acc,
                 100.0 * o.min_accuracy);
    return 1;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const options o = parse(argc, argv);
  try {
    return o.mode == "train" ? train(o) : infer(o);
  } catch (const tl::error& e) {
    std::fprintf(stderr, "fmnist_int8_parity: %s\n", e.what());
    return 1;
  }
}
