// Compiles an emitted model header (NAS_MODEL_HEADER, written by
// nas_transfer --header or, by default, by nas_emit_demo at build time),
// instantiates its compile-time model with the emitted weights, and deploys
// it as int8 by the library's post-training quantization: prints the
// model's flash and arena bytes and, when Fashion-MNIST is found, its fp32
// and int8 accuracy on the target task (test images of classes 5-9, labels
// 0-4), calibrating on the first 50 training images of each target class
// (the rows the search calibrated on).
//
// A model with a conv stem (conv2d, relu, max_pool2d<2> layers, flatten, then dense layers) is
// exported for the firmware's quantized_network instead (NAS_CONV_NETWORK in nas_mcu.h): every
// weighted layer's int8 arrays as int8_layer_binding / int8_csr_binding and every tensor's
// quantization, so that the firmware runs the library's int8 network on the bound arrays.
//
// --mcu-out DIR also writes the int8 network for the Cortex-M firmware
// (firmware.cpp, scripts/nas_mcu.sh): DIR/nas_mcu.h holds each dense layer's
// int8 weights, int32 biases, multipliers, shifts and zero points as the
// library's quantized_network computed them — a layer the search pruned
// (layer_sparsity_percent > 0) whose relative-index CSR (gaps of 8 bits, the
// form of compress::model_file_builder::add_int8_csr) is smaller than its
// dense int8 matrix as its CSR row offsets, gaps and non-zero values, run by
// kernels::sparse_dense_s8 —, DIR/nas_mcu_images.h 16 quantized
// target test images, and DIR/nas_mcu_expected.txt holds the host's int8 logits and
// predictions for them (quantized_network::forward), which the firmware
// must reproduce bit for bit.
//
//   nas_deploy [--data DIR] [--mcu-out DIR]
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "tinylarge/compress/c_export.hpp"
#include "tinylarge/compress/sparse.hpp"
#include "tinylarge/data/idx.hpp"
#include "tinylarge/nn/nn.hpp"
#include "../common/cli.hpp"

#include NAS_MODEL_HEADER

namespace nn = tl::nn;

namespace {

using model = nas_model::model;
using qnet = nn::quantized_network<model, tl::int8_per_channel, nn::heap_storage>;

/// Whether model layer I + 1 exists and is a relu (fused into layer I's requantization clamp).
template <std::size_t I>
constexpr bool followed_by_relu() {
  if constexpr (I + 1 < model::size)
    return model::template layer<I + 1>::kind == tl::nn::layer_kind::relu;
  else
    return false;
}

template <class T>
std::string int_array(const char* type, const std::string& name, const T* v, std::size_t n) {
  std::string s = "TINYLARGE_C_ALIGNAS(4) static const " + std::string(type) + " " + name + "[" + std::to_string(n) + "] = {";
  for (std::size_t i = 0; i < n; ++i) {
    s += i % 16 == 0 ? "\n  " : " ";
    s += std::to_string(v[i]);
    s += ',';
  }
  return s + "\n};\n";
}

/// Whether the emitted model has a convolutional stem (its first layer is a conv2d).
constexpr bool has_conv_stem = model::template layer<0>::kind == tl::nn::layer_kind::conv2d;

/// The CSR of layer I's int8 weights (as `add_int8_csr` stores them) when the search pruned it
/// (sparsity > 0) and the CSR is smaller than the dense int8 matrix; else an empty one.
template <std::size_t I>
tl::compress::relative_csr<std::int8_t> pruned_csr(qnet& q, std::size_t sparsity) {
  using L = typename model::template layer<I>;
  const std::size_t n = L::out_channels, k = L::weight_count / L::out_channels;
  const std::int8_t* w = q.template layer_weights<I>();
  const std::vector<float> wf(w, w + n * k);  // exact; the CSR keeps the non-zero columns
  auto csr = tl::compress::detail::build_relative_csr<std::int8_t>(
      tl::compress::matrix_ref<const float>{wf.data(), n, k}, 8, [&](std::size_t i) { return w[i]; });
  if (sparsity == 0 || csr.storage_bits() / 8 >= n * k) return {};
  return csr;
}

/// The int8 network of a model with a conv stem, for the firmware's `quantized_network<model,
/// int8_per_channel, sparse_flash_storage>` (NAS_CONV_NETWORK): per weighted layer (conv and dense,
/// in model order) its int8 weights — a pruned dense layer as CSR when smaller —, int32 biases,
/// multipliers and shifts as `int8_layer_binding`s, and every tensor's scale and zero point.
/// (A template: only instantiated for a model with a conv stem.)
template <class Net>
std::string conv_network_header(Net& q, std::size_t& weighted, std::size_t& total_macs) {
  std::string h = "#define NAS_CONV_NETWORK 1\n";
  std::string table = "static const struct nas_weighted_layer nas_layers[] = {\n";
  std::size_t dense = 0;
  model::for_each_layer([&]<std::size_t I>() {
    using L = typename model::template layer<I>;
    if constexpr (tl::nn::has_weights(L::kind)) {
      const std::string j = std::to_string(weighted++);
      const std::size_t n = L::out_channels;
      std::size_t macs = L::macs;
      std::string csr_binding = "{0, 0, 0}";
      tl::compress::relative_csr<std::int8_t> csr;
      if constexpr (L::kind == tl::nn::layer_kind::dense) csr = pruned_csr<I>(q, nas_model::layer_sparsity_percent[dense++]);
      if (csr.entries() > 0) {
        h += int_array("signed char", "nas_w" + j, csr.values.data(), csr.values.size());
        h += int_array("uint32_t", "nas_r" + j, csr.row_ptr.data(), csr.row_ptr.size());
        h += int_array("uint8_t", "nas_g" + j, csr.gaps.data(), csr.gaps.size());
        csr_binding = "{nas_r" + j + ", nas_g" + j + ", reinterpret_cast<const std::int8_t*>(nas_w" + j + ")}";
        macs = csr.entries();
        std::printf("layer %s: pruned, int8 CSR: %zu entries, %zu bytes (dense %zu)\n", j.c_str(), csr.entries(),
                    csr.storage_bits() / 8, L::weight_count);
      } else {
        h += int_array("signed char", "nas_w" + j, q.template layer_weights<I>(), L::weight_count);
      }
      total_macs += macs;
      h += int_array("int32_t", "nas_b" + j, q.biases() + qnet::layout.bias[I], n);
      h += int_array("int32_t", "nas_m" + j, q.multipliers() + qnet::layout.bias[I], n);
      h += int_array("int", "nas_s" + j, q.shifts() + qnet::layout.bias[I], n);
      table += "  {{reinterpret_cast<const std::int8_t*>(nas_w" + j + "), nas_b" + j + ", nas_m" + j + ", nas_s" + j + ", true}, " +
               csr_binding + "},\n";
    } else {
      total_macs += L::macs;  // the pools' comparisons, as model::macs counts them
    }
  });
  h += "struct nas_weighted_layer { tinylarge::nn::int8_layer_binding b; tinylarge::nn::int8_csr_binding csr; };\n" + table + "};\n";
  std::vector<float> scale;
  std::vector<std::int32_t> zero;
  for (const auto& t : q.tensor_quantization()) {
    scale.push_back(t.scale);
    zero.push_back(t.zero_point);
  }
  h += "TINYLARGE_C_ALIGNAS(4) static const float nas_tensor_scale[" + std::to_string(scale.size()) + "] = {";
  for (const float v : scale) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.9gf,", static_cast<double>(v));
    h += buf;
  }
  h += "};\n" + int_array("int32_t", "nas_tensor_zero_point", zero.data(), zero.size());
  // One profiling region (the whole inference) and its MACs, in the "{n, k, macs" form scripts/nas_mcu.sh reads.
  h += "struct nas_region { unsigned n, k, macs; };\n[[maybe_unused]] static const struct nas_region nas_regions[] = {\n  {" +
       std::to_string(model::input_size) + ", " + std::to_string(model::output_size) + ", " + std::to_string(total_macs) + "},\n};\n";
  return h;
}

/// Writes DIR/nas_mcu.h and DIR/nas_mcu_expected.txt (see the file comment).
void write_mcu(const std::string& dir, qnet& q, const std::vector<const float*>& images) {
  tl::compress::c_header_writer h("Written by nas_deploy --mcu-out: the int8 network of " NAS_MODEL_HEADER);
  std::vector<std::int8_t> inputs;
  std::string expected;
  for (std::size_t s = 0; s < images.size(); ++s) {
    std::vector<std::int8_t> x(784);
    for (std::size_t i = 0; i < 784; ++i) x[i] = tl::quantize(images[s][i], q.input_params());
    inputs.insert(inputs.end(), x.begin(), x.end());
    const std::int8_t* y = q.forward(x.data());
    std::size_t best = 0;
    for (std::size_t j = 1; j < model::output_size; ++j) best = y[j] > y[best] ? j : best;
    expected += std::to_string(s);
    expected += ' ';
    expected += std::to_string(best);
    expected += ':';
    for (std::size_t j = 0; j < model::output_size; ++j) {
      expected += ' ';
      expected += std::to_string(y[j]);
    }
    expected += '\n';
  }
  // w: the n×k int8 matrix, or with row_ptr the CSR values; macs: n·k, or the CSR entries.
  if constexpr (has_conv_stem) {
    std::size_t weighted = 0, total_macs = 0;
    const std::string net = conv_network_header(q, weighted, total_macs);
    tl::compress::c_header_writer images_h("Written by nas_deploy --mcu-out: quantized target test images");
    images_h.add_int8("nas_inputs", inputs);
    std::ofstream(dir + "/nas_mcu_images.h") << images_h.str();
    std::ofstream(dir + "/nas_mcu.h") << h.str() + "#include <stdint.h>\n" + net + "#define NAS_LAYER_COUNT " +
                                             std::to_string(weighted) + "\n#define NAS_IMAGE_COUNT " +
                                             std::to_string(images.size()) + "\n";
    std::ofstream(dir + "/nas_mcu_expected.txt") << expected;
    std::printf("wrote %s/nas_mcu.h, nas_mcu_images.h and nas_mcu_expected.txt (conv stem: %zu weighted layers run by "
                "quantized_network, %zu MACs, %zu images)\n", dir.c_str(), weighted, total_macs, images.size());
    return;
  }
  std::string layers = "struct nas_layer_desc { unsigned n, k, macs; const signed char* w; const uint32_t* row_ptr; "
                       "const uint8_t* gaps; const int32_t* bias; const int32_t* mult; const int* shift; int32_t zx, zy; "
                       "int relu; };\n";
  std::string table = "static const struct nas_layer_desc nas_layers[] = {\n";
  std::size_t count = 0;
  model::for_each_layer([&]<std::size_t I>() {
    using L = typename model::template layer<I>;
    if constexpr (L::kind == tl::nn::layer_kind::dense) {
      constexpr bool relu = followed_by_relu<I>();
      if constexpr (relu)  // quantized_network fuses the relu: its output tensor has the dense layer's parameters
        if (!(q.tensor_params(I + 2) == q.tensor_params(I + 1))) throw std::runtime_error("relu tensor parameters differ");
      const std::size_t n = L::out_channels, k = L::in_shape::size;
      const std::size_t sparsity = nas_model::layer_sparsity_percent[count];
      const std::string j = std::to_string(count++);
      const std::int8_t* w = q.template layer_weights<I>();
      const std::vector<float> wf(w, w + n * k);  // exact; the CSR keeps the non-zero columns
      const auto csr = tl::compress::detail::build_relative_csr<std::int8_t>(
          tl::compress::matrix_ref<const float>{wf.data(), n, k}, 8, [&](std::size_t i) { return w[i]; });
      const bool sparse = sparsity > 0 && csr.storage_bits() / 8 < n * k;
      std::string csr_arrays = "0, 0";
      if (sparse) {
        h.add_int8("nas_w" + j, std::span<const std::int8_t>(csr.values));
        layers += int_array("uint32_t", "nas_r" + j, csr.row_ptr.data(), csr.row_ptr.size());
        layers += int_array("uint8_t", "nas_g" + j, csr.gaps.data(), csr.gaps.size());
        csr_arrays = "nas_r" + j + ", nas_g" + j;
        std::printf("layer %s: %zu %% pruned, int8 CSR: %zu entries, %zu bytes (dense %zu)\n", j.c_str(), sparsity,
                    csr.entries(), csr.storage_bits() / 8, n * k);
      } else {
        h.add_int8("nas_w" + j, std::span<const std::int8_t>(w, n * k));
      }
      layers += int_array("int32_t", "nas_b" + j, q.biases() + qnet::layout.bias[I], n);
      layers += int_array("int32_t", "nas_m" + j, q.multipliers() + qnet::layout.bias[I], n);
      layers += int_array("int", "nas_s" + j, q.shifts() + qnet::layout.bias[I], n);
      table += "  {" + std::to_string(n) + ", " + std::to_string(k) + ", " + std::to_string(sparse ? csr.entries() : n * k) +
               ", nas_w" + j + ", " + csr_arrays + ", nas_b" + j + ", nas_m" + j + ", nas_s" + j + ", " + std::to_string(q.tensor_params(I).zero_point) + ", " +
               std::to_string(q.tensor_params(I + 1).zero_point) + ", " + (relu ? "1" : "0") + "},\n";
    }
  });
  tl::compress::c_header_writer images_h("Written by nas_deploy --mcu-out: quantized target test images");
  images_h.add_int8("nas_inputs", inputs);
  std::ofstream(dir + "/nas_mcu_images.h") << images_h.str();
  std::string text = h.str() + "#include <stdint.h>\n" + layers + table + "};\n";
  text += "#define NAS_LAYER_COUNT " + std::to_string(count) + "\n#define NAS_IMAGE_COUNT " + std::to_string(images.size()) + "\n";
  std::ofstream(dir + "/nas_mcu.h") << text;
  std::ofstream(dir + "/nas_mcu_expected.txt") << expected;
  std::printf("wrote %s/nas_mcu.h, nas_mcu_images.h and nas_mcu_expected.txt (%zu dense layers, %zu images)\n", dir.c_str(), count,
              images.size());
}

}  // namespace

int main(int argc, char** argv) {
  std::string data = "/usr/share/datasets/fashion-mnist", mcu_out;
  examples::cli args(argc, argv, "[--data DIR] [--mcu-out DIR]");
  while (args.next()) {
    if (args.is("--data")) data = args.text();
    else if (args.is("--mcu-out")) mcu_out = args.text();
    else args.unknown();
  }
  auto net = std::make_unique<nn::network<model>>();
  std::copy(std::begin(nas_model::parameters), std::end(nas_model::parameters), net->parameters().begin());
  std::printf("emitted model: %zu parameters, %zu MACs; int8: %zu flash bytes, %zu arena bytes; precisions:", model::param_count,
              model::macs, qnet::parameter_bytes, qnet::arena_bytes);
  for (const char* p : nas_model::layer_precisions) std::printf(" %s", p);
  std::printf("; sparsity %%:");
  for (const unsigned p : nas_model::layer_sparsity_percent) std::printf(" %u", p);
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
    std::vector<const float*> firmware_images;
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
      if (firmware_images.size() < 16) firmware_images.push_back(x);
    }
    if (!mcu_out.empty()) write_mcu(mcu_out, *q, firmware_images);
    std::printf("target test (%zu images): fp32 %.4f, int8 (library PTQ, quantized_network) %.4f\n", n,
                static_cast<double>(hits32) / static_cast<double>(n), static_cast<double>(hits8) / static_cast<double>(n));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "nas_deploy: %s\n", e.what());
    return 1;
  }
  return 0;
}
