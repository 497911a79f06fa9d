// Generator of the firmware example's data (examples/mcu, docs/mcu.md), run on the host at
// build time by scripts/mcu_example.sh:
//
//   make_model --out DIR [--train N] [--epochs E] [--prune-epochs P] [--share-epochs S] [--seed S]
//
// 1. Trains LeNet-300-100 on the first N Fashion-MNIST training images (fixed seed) and
//    compresses it with Deep Compression (compress/network.hpp: gradual pruning to
//    6 % / 7 % / 25 % of the weights, 5-bit k-means weight sharing with centroid fine-tuning,
//    Huffman coding), as examples/compress_fashion_mnist does, in a small budget.
// 2. Writes the model file (compress/model_file.hpp, gap and index streams Huffman-coded)
//    and calibrates the int8 activation scales on 2 000 training images.
// 3. Runs the firmware's own inference code (compressed_lenet.hpp) on the whole test set and
//    reports its accuracy, and the expected int8 logits of the embedded test images.
// 4. Quantizes the same weights to plain dense int8 (per channel) for the minimal firmware
//    lenet_int8_min (the "runtime ≤ 4 KiB" target) and writes its expected output, computed
//    with the host's kernels::dense_s8.
// 5. Per-layer mixed precision (firmware lenet_mixed, mixed_lenet.hpp): the fp32 weights of
//    step 1 in `network<lenet_mixed>` (layers 0 and 4 int8), fine-tuned with quantization-aware
//    training for one epoch on 4 000 images, deployed with the host's mixed_inference_network
//    (heap storage) on the scalar back end (the fp32 kernel a Cortex-M runs); writes its
//    parameters and the logits of the embedded test images (IEEE bit patterns).
//
// DIR receives: model_data.h (model file + activation quantization), images.h (test images,
// expected logits, fine-tuning samples), dense_int8.h (dense int8 weights), min_expected.txt,
// mixed_model.h (mixed-precision parameters), mixed_expected.h and mixed_expected.txt (its logits).
#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "tinylarge/compress/c_export.hpp"
#include "tinylarge/compress/model_file.hpp"
#include "tinylarge/compress/network.hpp"
#include "tinylarge/data/idx.hpp"
#include "tinylarge/nn/device_finetune.hpp"
#include "tinylarge/nn/nn.hpp"

#include "compressed_lenet.hpp"
#include "finetune_setting.hpp"
#include "mixed_lenet.hpp"
#include "../common/cli.hpp"

namespace nn = tl::nn;
namespace cz = tl::compress;
using mcu_example::lenet_300_100;

namespace {

constexpr std::size_t n_test_images = 16;

std::vector<std::uint8_t> to_pixels(const float* x, std::size_t n) {
  std::vector<std::uint8_t> p(n);
  for (std::size_t i = 0; i < n; ++i) p[i] = static_cast<std::uint8_t>(std::lround(std::clamp(x[i], 0.0f, 1.0f) * 255.0f));
  return p;
}

/// `static const <type> name[n]` (int32_t or int) in the style of compress/c_export.hpp.
std::string int_array(const char* type, const std::string& name, const std::vector<std::int32_t>& v) {
  std::string s = "\nTINYLARGE_C_ALIGNAS(8) static const " + std::string(type) + " " + name + "[" + std::to_string(v.size()) + "] = {";
  for (std::size_t i = 0; i < v.size(); ++i) s += (i % 12 == 0 ? "\n  " : " ") + std::to_string(v[i]) + ",";
  return s + "\n};\n";
}

/// Host unit tests of the two freestanding headers the firmware adds (run on every
/// generation): compress/sparse_s8.hpp against the dense int8 kernel on the expanded matrix,
/// and nn/device_finetune.hpp's exponential and SGD. Returns the number of failures.
int unit_tests(const mcu_example::compressed_lenet& dev, const std::vector<std::uint8_t>& pixels, std::size_t images) {
  int failures = 0;
  auto check = [&](bool ok, const char* what) {
    if (!ok) {
      std::fprintf(stderr, "make_model: unit test FAILED: %s\n", what);
      ++failures;
    }
  };
  // sparse_dense_s8 == kernels::dense_s8 on the same int8 weights expanded to a dense matrix.
  {
    const auto& l = dev.layer(0);
    std::vector<std::int8_t> dense(l.w.rows * l.w.cols, 0);
    for (std::size_t o = 0; o < l.w.rows; ++o) {
      std::size_t col = 0;
      for (std::size_t j = l.w.row_ptr[o]; j < l.w.row_ptr[o + 1]; ++j) {
        col += l.w.gaps[j];
        dense[o * l.w.cols + col] = l.w.centroids[l.w.indices[j]];
        ++col;
      }
    }
    std::vector<std::int8_t> x(images * 784), a(images * l.w.rows), b(images * l.w.rows);
    for (std::size_t i = 0; i < x.size(); ++i) x[i] = static_cast<std::int8_t>(pixels[i] - 128);
    const tl::kernels::dense_s8_params p = l.params();
    cz::sparse_dense_s8(tl::arch::scalar{}, images, l.w, x.data(), p, a.data());
    tl::kernels::dense_s8(tl::arch::scalar{}, images, l.w.rows, l.w.cols, x.data(), dense.data(), p, b.data());
    check(a == b, "sparse_dense_s8 differs from dense_s8 on the expanded matrix");
    std::size_t nonzero = 0;
    for (std::int8_t v : a) nonzero += v != l.output.zero_point;
    check(nonzero > 0, "layer 0 output is all zero points");
  }
  // finetune_exp: relative error against std::exp.
  {
    double worst = 0.0;
    for (float x = -80.0f; x <= 0.0f; x += 0.013f) {
      const double e = std::exp(static_cast<double>(x));
      worst = std::max(worst, std::fabs(static_cast<double>(tl::nn::finetune_exp(x)) - e) / e);
    }
    check(worst < 2e-6, "finetune_exp: relative error above 2e-6");
    check(tl::nn::finetune_exp(-100.0f) == 0.0f && tl::nn::finetune_exp(0.0f) == 1.0f, "finetune_exp: ends");
  }
  // SGD on a separable 3-class toy problem: accuracy reaches 100 %, and the true-label
  // probability grows.
  {
    static tl::nn::last_layer_finetuner<4, 3> h;
    const float f[6 * 4] = {1, 0, 0, 0.5f, 0.9f, 0.1f, 0, 0.4f, 0, 1, 0, 0.5f, 0.1f, 0.9f, 0, 0.3f, 0, 0, 1, 0.5f, 0, 0.1f, 0.9f, 0.6f};
    const std::uint8_t y[6] = {0, 0, 1, 1, 2, 2};
    const float zero[12] = {};
    h.load(zero, nullptr);
    check(h.correct(f, y, 6) < 6, "toy problem already solved at the start");
    const float p0 = h.train(f, y, 6, 1, 0.5f);
    const float p1 = h.train(f, y, 6, 50, 0.5f);
    check(h.correct(f, y, 6) == 6 && p1 > p0 && p1 > 0.8f, "SGD does not fit a separable toy problem");
  }
  return failures;
}

void write_text(const std::string& path, const std::string& text) {
  tl::io::write_file(path, std::span<const std::uint8_t>(reinterpret_cast<const std::uint8_t*>(text.data()), text.size()));
}

}  // namespace

int main(int argc, char** argv) {
  std::string out;
  std::size_t train_n = 10000, epochs = 2, prune_epochs = 2, share_epochs = 1;
  std::uint64_t seed = 7;
  examples::cli args(argc, argv, "--out DIR [--train N] [--epochs E] [--prune-epochs P] [--share-epochs S] [--seed S]");
  while (args.next()) {
    if (args.is("--out")) out = args.text();
    else if (args.is("--train")) train_n = args.count();
    else if (args.is("--epochs")) epochs = args.count();
    else if (args.is("--prune-epochs")) prune_epochs = args.count();
    else if (args.is("--share-epochs")) share_epochs = args.count();
    else if (args.is("--seed")) seed = args.count<std::uint64_t>();
    else args.unknown();
  }
  if (out.empty()) {
    std::fprintf(stderr, "make_model: --out DIR is required\n");
    return 2;
  }
  try {
    std::filesystem::create_directories(out);
    const auto train_set = tl::data::load_fashion_mnist(tl::data::split::train);
    const auto test_set = tl::data::load_fashion_mnist(tl::data::split::test);
    train_n = std::min(train_n, train_set.count);
    nn::labelled_view<std::uint8_t> train{train_set.images.data(), train_set.labels.data(), train_n, 784};
    nn::labelled_view<std::uint8_t> test{test_set.images.data(), test_set.labels.data(), test_set.count, 784};
    nn::labelled_view<std::uint8_t> val{test_set.images.data(), test_set.labels.data(), 2000, 784};

    // --- 1. train and compress (Deep Compression, small budget)
    auto net = std::make_unique<nn::network<lenet_300_100>>();
    net->initialize<nn::he_normal>(seed);
    nn::fit(*net, nn::adam{.learning_rate = 1e-3f}, nn::softmax_cross_entropy{}, train,
            {.epochs = epochs, .batch_size = 64, .seed = seed, .shuffle = true, .lr_decay = 0.85f}, &val,
            nn::progress_printer{.prefix = "  fp32 "});
    const double acc_fp32 = nn::evaluate(*net, nn::softmax_cross_entropy{}, test).accuracy;
    const std::vector<float> fp32_params(net->parameters().begin(), net->parameters().end());  // for step 5

    using P = cz::deep_compression<cz::polynomial_decay, 5>;
    cz::network_compressor<lenet_300_100, P, P, P> c;
    const double keep[3] = {0.06, 0.07, 0.25};
    const std::size_t batch = 64;
    const auto steps = static_cast<std::int64_t>((train.count + batch - 1) / batch);
    const std::int64_t end = std::max<std::int64_t>(1, steps * static_cast<std::int64_t>(prune_epochs) * 2 / 3);
    auto set = [&](auto& schedule, double k) {
      schedule.initial_sparsity = 0.0;
      schedule.final_sparsity = 1.0 - k;
      schedule.begin_step = 0;
      schedule.end_step = end;
      schedule.power = 3.0;
      schedule.frequency = std::max<std::int64_t>(1, steps / 10);
    };
    set(std::get<0>(c.policy<0>().stages).schedule, keep[0]);
    set(std::get<0>(c.policy<1>().stages).schedule, keep[1]);
    set(std::get<0>(c.policy<2>().stages).schedule, keep[2]);
    c.begin_gradual_pruning();
    nn::fit(*net, cz::fine_tuning(nn::adam{.learning_rate = 5e-4f}, c), nn::softmax_cross_entropy{}, train,
            {.epochs = prune_epochs, .batch_size = batch, .seed = seed + 10, .shuffle = true, .lr_decay = 0.8f}, &val,
            nn::progress_printer{.prefix = "  prune "});
    c.gradual_pruning = false;
    c.apply(*net, cz::stage_kind::quantization);
    nn::fit(*net, cz::fine_tuning(nn::adam{.learning_rate = 1e-4f}, c), nn::softmax_cross_entropy{}, train,
            {.epochs = share_epochs, .batch_size = batch, .seed = seed + 20, .shuffle = true, .lr_decay = 0.7f}, &val,
            nn::progress_printer{.prefix = "  share "});
    const cz::encoded_network enc = c.encode(*net);
    cz::compressed_network<lenet_300_100> inf(enc);

    // --- 2. the model file, as the firmware embeds it
    cz::model_file_builder b;
    for (std::size_t j = 0; j < 3; ++j) {
      TINYLARGE_REQUIRE(inf.form(j) == cz::layer_form::sparse_codebook && inf.rows(j) == mcu_example::widths[j + 1] &&
                            inf.cols(j) == mcu_example::widths[j],
                        tl::errc::invalid_argument, "make_model: expected full-shape CSR-codebook layers");
      cz::layer_options lo;
      lo.activation = j < 2 ? cz::activation_kind::relu : cz::activation_kind::none;
      lo.gaps = cz::symbol_encoding::huffman;
      lo.indices = cz::symbol_encoding::huffman;
      b.add_csr(inf.csr_codebook(j), enc.layers[j].index_bits, inf.bias(j), lo);
    }
    const std::vector<std::uint8_t> file = b.bytes();
    const cz::model_file mf = cz::model_file::from_bytes(file);  // validates and decodes, like the device
    std::size_t decode_total = 0, entries = 0;
    {
      cz::model_file_reader r;
      std::vector<std::uint64_t> aligned((file.size() + 7) / 8);
      std::memcpy(aligned.data(), file.data(), file.size());
      raise_if_error(r.open(reinterpret_cast<const std::uint8_t*>(aligned.data()), file.size()));
      for (std::size_t j = 0; j < 3; ++j) {
        cz::layer_view v;
        raise_if_error(r.layer(j, v));
        decode_total += v.decode_bytes;
        entries += mf.layer(j).csr_codebook.entries();
      }
    }

    // Activation ranges of the fp32 compressed model on 2 000 training images.
    float max1 = 0.0f, max2 = 0.0f, lo3 = 0.0f, hi3 = 0.0f;
    {
      std::vector<float> h1(300), h2(100), y(10);
      for (std::size_t s = 0; s < 2000; ++s) {
        const float* x = train_set.images.data() + s * 784;
        cz::sparse_dense_f32(tl::arch::scalar{}, 1, mf.layer(0).csr_codebook, x, mf.layer(0).bias, h1.data());
        for (float& v : h1) max1 = std::max(max1, v = std::max(v, 0.0f));
        cz::sparse_dense_f32(tl::arch::scalar{}, 1, mf.layer(1).csr_codebook, h1.data(), mf.layer(1).bias, h2.data());
        for (float& v : h2) max2 = std::max(max2, v = std::max(v, 0.0f));
        cz::sparse_dense_f32(tl::arch::scalar{}, 1, mf.layer(2).csr_codebook, h2.data(), mf.layer(2).bias, y.data());
        for (float v : y) lo3 = std::min(lo3, v), hi3 = std::max(hi3, v);
      }
    }
    const tl::quant_params q[4] = {{1.0f / 255.0f, -128},
                                   tl::choose_quant_params<tl::asymmetric>(0.0f, max1),
                                   tl::choose_quant_params<tl::asymmetric>(0.0f, max2),
                                   tl::choose_quant_params<tl::asymmetric>(lo3, hi3)};
    const float scales[4] = {q[0].scale, q[1].scale, q[2].scale, q[3].scale};
    const std::int32_t zeros[4] = {q[0].zero_point, q[1].zero_point, q[2].zero_point, q[3].zero_point};

    // --- 3. the firmware's inference code on the host: accuracy on the whole test set
    auto dev = std::make_unique<mcu_example::compressed_lenet>();
    std::vector<std::uint64_t> flash((file.size() + 7) / 8);
    std::memcpy(flash.data(), file.data(), file.size());
    std::vector<std::uint8_t> decode(decode_total);
    raise_if_error(dev->load(reinterpret_cast<const std::uint8_t*>(flash.data()), file.size(), scales, zeros,
                             decode.data(), decode.size()));
    std::size_t hits_int8 = 0, hits_f32 = 0;
    std::vector<std::int8_t> expected(n_test_images * 10);
    std::vector<std::uint8_t> test_pixels, test_labels;
    for (std::size_t s = 0; s < test.count; ++s) {
      const std::vector<std::uint8_t> px = to_pixels(test.x + s * 784, 784);
      const std::int8_t* y = dev->forward(px.data());
      std::size_t a = 0;
      for (std::size_t j = 1; j < 10; ++j) a = y[j] > y[a] ? j : a;
      hits_int8 += a == test.y[s];
      if (s < n_test_images) {
        std::copy(y, y + 10, expected.begin() + static_cast<std::ptrdiff_t>(s * 10));
        test_pixels.insert(test_pixels.end(), px.begin(), px.end());
        test_labels.push_back(test.y[s]);
      }
    }
    for (std::size_t s = 0; s < test.count; s += 500) {
      const float* y = inf.forward(test.x + s * 784, 500);
      for (std::size_t i = 0; i < 500; ++i) {
        std::size_t a = 0;
        for (std::size_t j = 1; j < 10; ++j) a = y[i * 10 + j] > y[i * 10 + a] ? j : a;
        hits_f32 += a == test.y[s + i];
      }
    }

    if (unit_tests(*dev, test_pixels, n_test_images) != 0) return 1;
    std::printf("make_model: unit tests of compress/sparse_s8.hpp and nn/device_finetune.hpp passed\n");

    // Fine-tuning samples (finetune_setting.hpp): training images the model never saw, and
    // held-out test images after the first 1 000, of the chosen classes, with the shift applied.
    std::vector<std::uint8_t> ft_pixels, ft_labels, ho_pixels, ho_labels;
    for (std::size_t s = train_n; s < train_set.count && ft_labels.size() < mcu_example::ft_train_count; ++s)
      if (mcu_example::ft_class_used(train_set.labels[s])) {
        std::vector<std::uint8_t> px = to_pixels(train_set.images.data() + s * 784, 784);
        mcu_example::ft_shift(px.data());
        ft_pixels.insert(ft_pixels.end(), px.begin(), px.end());
        ft_labels.push_back(train_set.labels[s]);
      }
    for (std::size_t s = 1000; s < test.count && ho_labels.size() < mcu_example::ft_heldout_count; ++s)
      if (mcu_example::ft_class_used(test.y[s])) {
        std::vector<std::uint8_t> px = to_pixels(test.x + s * 784, 784);
        mcu_example::ft_shift(px.data());
        ho_pixels.insert(ho_pixels.end(), px.begin(), px.end());
        ho_labels.push_back(test.y[s]);
      }

    // --- 4. plain dense int8 (per channel) of the same weights, for lenet_int8_min
    std::string dense_h;
    std::string min_expected = "lenet_int8_min: " + std::to_string(n_test_images) + " images\n";
    std::vector<std::vector<std::int8_t>> wq(3);
    std::vector<std::vector<std::int32_t>> bq(3), mult(3), shift(3);
    for (std::size_t j = 0; j < 3; ++j) {
      const auto& v = mf.layer(j).csr_codebook;
      const std::size_t rows = v.rows, cols = v.cols;
      std::vector<float> w(rows * cols, 0.0f);
      for (std::size_t o = 0; o < rows; ++o) {
        std::size_t col = 0;
        for (std::size_t e = v.row_ptr[o]; e < v.row_ptr[o + 1]; ++e) {
          col += v.gaps[e];
          w[o * cols + col] = v.values(e);
          ++col;
        }
      }
      wq[j].resize(rows * cols);
      bq[j].resize(rows);
      mult[j].resize(rows);
      shift[j].resize(rows);
      for (std::size_t o = 0; o < rows; ++o) {
        float m = 0.0f;
        for (std::size_t i = 0; i < cols; ++i) m = std::max(m, std::fabs(w[o * cols + i]));
        const float sw = m > 0.0f ? m / 127.0f : 1.0f;
        for (std::size_t i = 0; i < cols; ++i) wq[j][o * cols + i] = tl::quantize(w[o * cols + i], {sw, 0}, tl::int8_weight_range);
        const double bs = static_cast<double>(q[j].scale) * sw;
        bq[j][o] = static_cast<std::int32_t>(std::lround(static_cast<double>(mf.layer(j).bias[o]) / bs));
        const tl::quantized_multiplier qm = tl::quantize_multiplier(bs / static_cast<double>(q[j + 1].scale));
        mult[j][o] = qm.multiplier;
        shift[j][o] = qm.shift;
      }
    }
    std::size_t hits_dense = 0;
    {
      std::vector<std::int8_t> a(mcu_example::arena_bytes);
      std::vector<int> sh[3];
      for (std::size_t j = 0; j < 3; ++j) sh[j].assign(shift[j].begin(), shift[j].end());
      for (std::size_t s = 0; s < test.count; ++s) {
        const std::vector<std::uint8_t> px = to_pixels(test.x + s * 784, 784);
        for (std::size_t i = 0; i < 784; ++i) a[i] = static_cast<std::int8_t>(px[i] - 128);
        std::int8_t* io[4] = {a.data(), a.data() + a.size() - 300, a.data(), a.data() + a.size() - 10};
        for (std::size_t j = 0; j < 3; ++j) {
          tl::kernels::dense_s8_params p;
          p.input_zero_point = zeros[j];
          p.output_zero_point = zeros[j + 1];
          p.multipliers = mult[j].data();
          p.shifts = sh[j].data();
          p.per_channel = true;
          p.bias = bq[j].data();
          p.act_min = static_cast<std::int8_t>(j < 2 ? zeros[j + 1] : -128);
          tl::kernels::dense_s8(tl::kernels::default_backend{}, 1, mcu_example::widths[j + 1], mcu_example::widths[j],
                                io[j], wq[j].data(), p, io[j + 1]);
        }
        const std::int8_t* y = io[3];
        std::size_t best = 0;
        for (std::size_t k = 1; k < 10; ++k) best = y[k] > y[best] ? k : best;
        hits_dense += best == test.y[s];
        if (s < n_test_images) {
          min_expected += std::to_string(s) + " " + std::to_string(best) + ":";
          for (std::size_t k = 0; k < 10; ++k) min_expected += " " + std::to_string(y[k]);
          min_expected += "\n";
        }
      }
    }

    // --- 5. per-layer mixed precision: int8 | fp32 | int8
    using mcu_example::lenet_mixed;
    auto mnet = std::make_unique<nn::network<lenet_mixed>>();
    std::copy(fp32_params.begin(), fp32_params.end(), mnet->parameters().begin());
    const nn::labelled_view<std::uint8_t> qat{train.x, train.y, std::min<std::size_t>(train.count, 4000), 784};
    nn::fit(*mnet, nn::adam{.learning_rate = 1e-4f}, nn::softmax_cross_entropy{}, qat,
            {.epochs = 1, .batch_size = 64, .seed = seed + 30, .shuffle = true}, &val,
            nn::progress_printer{.prefix = "  mixed QAT "});
    // The reference: the host class on the scalar back end (the firmware's fp32 kernel); and the
    // same class on this build's default (SIMD) back end, for accuracy and for the size of the
    // difference a different fp32 summation order makes.
    using mixed_ref_t = nn::mixed_inference_network<lenet_mixed, tl::fp32, nn::heap_storage, tl::arch::scalar>;
    using mixed_simd_t = nn::mixed_inference_network<lenet_mixed>;
    const auto mref = std::make_unique<mixed_ref_t>(*mnet);
    const auto msimd = std::make_unique<mixed_simd_t>(*mnet);
    std::size_t hits_mixed = 0;
    for (std::size_t s = 0; s < test.count; s += 500) {
      const float* y = msimd->forward(test.x + s * 784, 500);
      for (std::size_t i = 0; i < 500; ++i) {
        std::size_t a = 0;
        for (std::size_t j = 1; j < 10; ++j) a = y[i * 10 + j] > y[i * 10 + a] ? j : a;
        hits_mixed += a == test.y[s + i];
      }
    }
    // Layers 0–2 alone: the fp32 layer's output (checked on the device through a hash of its bits).
    using body_ref_t = nn::mixed_inference_network<mcu_example::lenet_mixed_body, tl::fp32, nn::heap_storage, tl::arch::scalar>;
    using body_simd_t = nn::mixed_inference_network<mcu_example::lenet_mixed_body>;
    const tl::quant_params body_inputs[3] = {mref->layer_parameters<0>().input, {}, {}};
    const auto body_ref = std::make_unique<body_ref_t>();
    const auto body_simd = std::make_unique<body_simd_t>();
    body_ref->load(mnet->parameters().data(), body_inputs);
    body_simd->load(mnet->parameters().data(), body_inputs);
    std::size_t hidden_differ = 0;
    std::string mixed_expected = "lenet_mixed: " + std::to_string(mcu_example::mixed_images) + " images, int8 | fp32 | int8\n";
    std::vector<std::int32_t> mixed_bits;
    std::size_t mixed_correct = 0, simd_agree = 0;
    double simd_worst = 0.0, logit_max = 0.0;
    for (std::size_t s = 0; s < mcu_example::mixed_images; ++s) {
      std::vector<float> x(784);
      for (std::size_t i = 0; i < 784; ++i) x[i] = static_cast<float>(test_pixels[s * 784 + i]) / 255.0f;
      const float* yp = mref->forward(x.data());
      const std::vector<float> yr(yp, yp + 10);
      const float* ys = msimd->forward(x.data());
      std::size_t best = 0, best_simd = 0;
      for (std::size_t j = 1; j < 10; ++j) {
        best = yr[j] > yr[best] ? j : best;
        best_simd = ys[j] > ys[best_simd] ? j : best_simd;
      }
      mixed_correct += best == test_labels[s];
      simd_agree += best == best_simd;
      mixed_expected += std::to_string(s) + " " + std::to_string(best) + ":";
      for (std::size_t j = 0; j < 10; ++j) {
        const auto bits = std::bit_cast<std::uint32_t>(yr[j]);
        char hex[16];
        std::snprintf(hex, sizeof hex, " 0x%08x", static_cast<unsigned>(bits));
        mixed_expected += hex;
        mixed_bits.push_back(static_cast<std::int32_t>(bits));
        simd_worst = std::max(simd_worst, static_cast<double>(std::fabs(yr[j] - ys[j])));
        logit_max = std::max(logit_max, static_cast<double>(std::fabs(yr[j])));
      }
      const float* h = body_ref->forward(x.data());
      const float* hs = body_simd->forward(x.data());
      for (std::size_t j = 0; j < 100; ++j) hidden_differ += std::bit_cast<std::uint32_t>(h[j]) != std::bit_cast<std::uint32_t>(hs[j]);
      char hash[32];
      std::snprintf(hash, sizeof hash, " | fp32 layer 0x%08x", static_cast<unsigned>(mcu_example::fnv1a_bits(h, 100)));
      mixed_expected += hash;
      mixed_expected += "\n";
    }
    mixed_expected += "correct: " + std::to_string(mixed_correct) + " of " + std::to_string(mcu_example::mixed_images) + "\n";

    // --- headers
    const std::string gen = "Generated by examples/mcu/make_model (seed " + std::to_string(seed) + ", " +
                            std::to_string(train_n) + " training images).";
    {
      cz::c_header_writer h(gen);
      h.add_bytes("tl_model", file);
      h.add_floats("tl_act_scale", std::span<const float>(scales, 4));
      const std::int8_t z8[4] = {static_cast<std::int8_t>(zeros[0]), static_cast<std::int8_t>(zeros[1]),
                                 static_cast<std::int8_t>(zeros[2]), static_cast<std::int8_t>(zeros[3])};
      h.add_int8("tl_act_zero", std::span<const std::int8_t>(z8, 4));
      write_text(out + "/model_data.h", h.str() + "\n#define TL_MODEL_DECODE_BYTES " + std::to_string(decode_total) + "u\n");
    }
    {
      cz::c_header_writer h(gen);
      h.add_bytes("tl_test_images", test_pixels, 4);
      h.add_bytes("tl_test_labels", test_labels, 4);
      h.add_int8("tl_expected_logits", expected, 4);
      h.add_bytes("tl_ft_images", ft_pixels, 4);
      h.add_bytes("tl_ft_labels", ft_labels, 4);
      h.add_bytes("tl_heldout_images", ho_pixels, 4);
      h.add_bytes("tl_heldout_labels", ho_labels, 4);
      write_text(out + "/images.h", h.str());
    }
    {
      cz::c_header_writer h(gen);
      h.add_int8("tl_w0", wq[0]).add_int8("tl_w1", wq[1]).add_int8("tl_w2", wq[2]);
      std::string s = h.str() + "#include <stdint.h>\n";
      for (std::size_t j = 0; j < 3; ++j) {
        s += int_array("int32_t", "tl_b" + std::to_string(j), bq[j]);
        s += int_array("int32_t", "tl_m" + std::to_string(j), mult[j]);
        s += int_array("int", "tl_s" + std::to_string(j), shift[j]);
      }
      s += "#define TL_ZP0 " + std::to_string(zeros[0]) + "\n#define TL_ZP1 " + std::to_string(zeros[1]) +
           "\n#define TL_ZP2 " + std::to_string(zeros[2]) + "\n#define TL_ZP3 " + std::to_string(zeros[3]) + "\n";
      write_text(out + "/dense_int8.h", s);
    }
    write_text(out + "/min_expected.txt", min_expected);
    {
      cz::c_header_writer h(gen + " Mixed-precision LeNet-300-100 (mixed_lenet.hpp): int8 | fp32 | int8.");
      const auto p0 = mref->layer_parameters<0>();
      const auto p2 = mref->layer_parameters<2>();
      const auto p4 = mref->layer_parameters<4>();
      h.add_int8("tl_mx_w0", {p0.weights, 784 * 300}).add_floats("tl_mx_b0", {p0.bias, 300}).add_floats("tl_mx_s0", {p0.weight_scales, 300});
      h.add_floats("tl_mx_p2", {p2.weights, 300 * 100 + 100});
      h.add_int8("tl_mx_w4", {p4.weights, 100 * 10}).add_floats("tl_mx_b4", {p4.bias, 10}).add_floats("tl_mx_s4", {p4.weight_scales, 10});
      const float in_scale[2] = {p0.input.scale, p4.input.scale};
      h.add_floats("tl_mx_in_scale", std::span<const float>(in_scale, 2));
      write_text(out + "/mixed_model.h", h.str() + "#define TL_MX_IN_ZP0 " + std::to_string(p0.input.zero_point) +
                                             "\n#define TL_MX_IN_ZP4 " + std::to_string(p4.input.zero_point) + "\n");
      cz::c_header_writer e(gen + " Logits of mixed_inference_network (IEEE bit patterns) on the embedded images.");
      write_text(out + "/mixed_expected.h", e.str() + "#include <stdint.h>\n" + int_array("int32_t", "tl_mx_expected_bits", mixed_bits));
    }
    write_text(out + "/mixed_expected.txt", mixed_expected);

    const double n = static_cast<double>(test.count);
    std::printf("make_model: model file %zu bytes (%zu CSR entries, %zu bytes to decode at boot)\n", file.size(), entries,
                decode_total);
    std::printf("make_model: activation scales %.6g/%d %.6g/%d %.6g/%d %.6g/%d\n", static_cast<double>(scales[0]), zeros[0],
                static_cast<double>(scales[1]), zeros[1], static_cast<double>(scales[2]), zeros[2],
                static_cast<double>(scales[3]), zeros[3]);
    std::printf("make_model: test accuracy (%zu images): fp32 before compression %.2f%%, fp32 compressed %.2f%%, "
                "int8 compressed (firmware code) %.2f%%, dense int8 per channel (lenet_int8_min) %.2f%%\n",
                test.count, 100 * acc_fp32, 100 * static_cast<double>(hits_f32) / n,
                100 * static_cast<double>(hits_int8) / n, 100 * static_cast<double>(hits_dense) / n);
    std::printf("make_model: mixed int8 | fp32 | int8 (lenet_mixed): test accuracy %.2f%% (training network %.2f%%), "
                "weights %zu B + %zu B biases and scales; on the %zu embedded images the scalar reference and this "
                "build's SIMD back end agree on %zu predictions, logits max |diff| %.3g (largest |logit| %.3g); "
                "fp32 layer outputs with other bits %zu of %zu\n",
                100 * static_cast<double>(hits_mixed) / n, 100 * nn::evaluate(*mnet, nn::softmax_cross_entropy{}, test).accuracy,
                mixed_ref_t::weight_bytes(), mixed_ref_t::other_parameter_bytes(), mcu_example::mixed_images, simd_agree,
                simd_worst, logit_max, hidden_differ, 100 * mcu_example::mixed_images);
    std::printf("make_model: fine-tuning samples %zu, held-out %zu; wrote %s/{model_data.h,images.h,dense_int8.h,min_expected.txt,mixed_model.h,mixed_expected.{h,txt}}\n",
                ft_labels.size(), ho_labels.size(), out.c_str());
    if (ft_labels.size() != mcu_example::ft_train_count || ho_labels.size() != mcu_example::ft_heldout_count) return 1;
  } catch (const tl::error& e) {
    std::fprintf(stderr, "make_model: %s\n", e.what());
    return 1;
  }
  return 0;
}
