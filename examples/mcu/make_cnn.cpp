// Host generator of the convolutional firmware examples (docs/mcu.md, scripts/mcu_example.sh):
// trains the three models of cnn_models.hpp — the LeNet-5-like CNN on Fashion-MNIST, the
// DS-CNN and the residual CNN resnet_kws on synthetic spectrograms from a seeded generator —
// quantizes them to int8 after training (per-channel weights, calibration on training samples),
// writes each as an int8 model file (compress/int8_model.hpp; resnet_kws with an add record per
// residual block, format 1.4) and emits C headers for the firmware:
//
//   <name>_model.h     the model file (`tl_model`)             → flash, section .tl_weights
//   <name>_data.h      int8 test inputs and the logits the host computes with the very code the
//                      firmware runs (a flash_storage network bound to the same bytes)
//   <name>_compiled.h  the same int8 parameters as const arrays (cnn_compiled.cpp)
//   other_model.h      a model file of another shape (`tl_other_model`): must be rejected
//
// With --lenet5-sparsity S (> 0; or S1,...,S5, one per weighted layer) the int8 LeNet-5 is also
// pruned by magnitude to S zeros per weighted layer (no fine-tuning) and written with pruned int8 CSR records (weight format 8,
// run compressed by a sparse_flash_storage network): lenet5_sparse_model.h, lenet5_sparse_data.h
// (the same inputs, the pruned network's logits). Checked on the host: the CSR-bound network
// equals, bit for bit, the dense int8 network with the same zeroed weights.
//
// With --lenet5-clusters K (2..256) the int8 LeNet-5 is also weight-shared: each weighted
// layer's int8 weights clustered into K values (share_int8_weights, no fine-tuning) and written
// with int8 codebook records (weight format 9, ⌈log2 K⌉-bit indices, run compressed by a
// shared_flash_storage network): lenet5_shared_model.h, lenet5_shared_data.h. Checked on the
// host: the codebook-bound network equals, bit for bit, the dense int8 network whose weights
// are the codebook values. The same weight-shared network is also written with Huffman-coded
// indices (weight format 10, int8_huffman_codebook: one Huffman stream per layer with the bit
// offset of each output channel's codes; run by a huffman_shared_flash_storage network that
// decodes one output channel at a time): lenet5_huffman_model.h, lenet5_huffman_data.h, checked
// the same way; the log gives per layer the index bits, packed and Huffman-coded, and the
// entropy of the index histogram.
//
// --resnet-sparsity S|S1,...,S6 and --resnet-clusters K do the same for the residual CNN
// resnet_kws (resnet_kws_{sparse,shared,huffman}_{model,data}.h): compressed records inside its
// residual blocks, between the add records.
//
// Checks on the host (exit status 1 on failure): the bound network's logits equal the owning
// network's (the file round-trips exactly) and the scalar back end's (the SIMD kernels are
// bit-exact); a file of another shape and a file with one flipped bit are rejected.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "tinylarge/compress/c_export.hpp"
#include "tinylarge/compress/int8_model.hpp"
#include "tinylarge/compress/model_file.hpp"
#include "tinylarge/data/idx.hpp"
#include "tinylarge/nn/nn.hpp"

#include "../common/cli.hpp"
#include "cnn_models.hpp"

namespace tl = tinylarge;
namespace nn = tinylarge::nn;
namespace cz = tinylarge::compress;

namespace {

constexpr std::size_t embedded_inputs = 8;  // per model, in the firmware

/// 8-byte aligned copy of a model file (the reader's requirement; flash arrays are aligned).
struct aligned_bytes {
  std::vector<std::uint64_t> words;
  std::size_t size = 0;
  explicit aligned_bytes(const std::vector<std::uint8_t>& b) : words((b.size() + 7) / 8), size(b.size()) {
    std::memcpy(words.data(), b.data(), b.size());
  }
  const std::uint8_t* data() const { return reinterpret_cast<const std::uint8_t*>(words.data()); }
  std::uint8_t* data() { return reinterpret_cast<std::uint8_t*>(words.data()); }
};

/// Synthetic keyword-spotting spectrograms: 12 classes = 4 frequency bands × 3 sweeps
/// (falling, flat, rising) of a Gaussian ridge over 49 frames × 10 bins, with a random onset,
/// length, amplitude and Gaussian noise. Seeded: the same data on every run.
void make_spectrograms(std::uint64_t seed, std::size_t count, std::vector<float>& x, std::vector<std::uint8_t>& y) {
  tl::rng g(seed, 0x5bec);
  x.assign(count * 490, 0.0f);
  y.resize(count);
  for (std::size_t s = 0; s < count; ++s) {
    const auto c = static_cast<std::uint8_t>(g.uniform_int(12));
    y[s] = c;
    const float band = 1.5f + 2.0f * static_cast<float>(c % 4);
    const float slope = (static_cast<float>(c / 4) - 1.0f) * 0.12f;  // bins per frame
    const float onset = 4.0f + 12.0f * g.uniform(), length = 18.0f + 14.0f * g.uniform();
    const float amp = 0.7f + 0.6f * g.uniform();
    for (std::size_t t = 0; t < 49; ++t)
      for (std::size_t f = 0; f < 10; ++f) {
        const float tt = static_cast<float>(t) - onset;
        float v = 0.25f * g.normal();
        if (tt >= 0.0f && tt <= length) {
          const float centre = band + slope * (tt - 0.5f * length);
          const float d = static_cast<float>(f) - centre;
          v += amp * std::exp(-0.5f * d * d);
        }
        x[s * 490 + t * 10 + f] = v;
      }
  }
}

template <class Model>
using owning_net = nn::quantized_network<Model, tl::int8_per_channel, nn::heap_storage>;
template <class Model, class B = tl::kernels::default_backend>
using bound_net = nn::quantized_network<Model, tl::int8_per_channel, nn::flash_storage, B>;
template <class Model>
using sparse_net = nn::quantized_network<Model, tl::int8_per_channel, nn::sparse_flash_storage>;
template <class Model>
using shared_net = nn::quantized_network<Model, tl::int8_per_channel, nn::shared_flash_storage>;
template <class Model>
using huffman_net = nn::quantized_network<Model, tl::int8_per_channel, nn::huffman_shared_flash_storage>;

int failures = 0;
void check(bool ok, const std::string& what) {
  if (!ok) {
    std::fprintf(stderr, "make_cnn: check FAILED: %s\n", what.c_str());
    ++failures;
  }
}

/// `<name>_compiled.h`: the parameters of `q` as C++ arrays and a table of
/// `nn::int8_layer_binding`s, for cnn_compiled.cpp (the model compiled into the firmware,
/// no model file to parse). Floats with 9 significant digits: exact.
template <class Model>
void write_compiled_header(const std::string& path, const std::string& name, owning_net<Model>& q) {
  using net_type = owning_net<Model>;
  constexpr auto& lay = net_type::layout;
  std::string h = "// Generated by make_cnn: the int8 parameters of " + name +
                  " compiled into the firmware (cnn_compiled.cpp).\n#pragma once\n"
                  "#ifndef TL_WEIGHTS_SECTION\n#define TL_WEIGHTS_SECTION\n#endif\nnamespace tl_compiled {\n";
  auto array = [&](const char* type, const std::string& id, auto values, std::size_t n) {
    h += "TL_WEIGHTS_SECTION alignas(8) static const " + std::string(type) + " " + id + "[" + std::to_string(n) + "] = {";
    for (std::size_t i = 0; i < n; ++i) h += (i % 24 == 0 ? "\n" : "") + std::to_string(values[i]) + ",";
    h += "\n};\n";
  };
  std::string table;
  std::size_t r = 0;
  // The nodes of the int8 graph: the model's layers, a residual block as its inner layers and its add.
  net_type::graph::for_each_layer([&]<std::size_t I>() {
    using L = typename net_type::graph::template layer<I>;
    if constexpr (nn::has_weights(L::kind)) {
      const std::string k = std::to_string(r++);
      array("signed char", "w" + k, q.weights() + lay.weight[I], L::weight_count);
      array("std::int32_t", "b" + k, q.biases() + lay.bias[I], L::out_channels);
      array("std::int32_t", "m" + k, q.multipliers() + lay.bias[I], L::out_channels);
      array("int", "s" + k, q.shifts() + lay.bias[I], L::out_channels);
      table += "  {reinterpret_cast<const std::int8_t*>(w" + k + "), b" + k + ", m" + k + ", s" + k + ", true},\n";
    }
  });
  // The constants of each residual add (kernels::add_s8); one unused entry when there is none.
  h += "static const tinylarge::kernels::add_s8_params adds[] = {\n";
  for (std::size_t a = 0; a < net_type::residual_count; ++a) {
    const auto& p = q.residual_add(a);
    h += "  {.input1_offset = " + std::to_string(p.input1_offset) + ", .input2_offset = " +
         std::to_string(p.input2_offset) + ", .output_offset = " + std::to_string(p.output_offset) +
         ", .input1_multiplier = " + std::to_string(p.input1_multiplier) + ", .input2_multiplier = " +
         std::to_string(p.input2_multiplier) + ", .output_multiplier = " + std::to_string(p.output_multiplier) +
         ", .input1_shift = " + std::to_string(p.input1_shift) + ", .input2_shift = " + std::to_string(p.input2_shift) +
         ", .output_shift = " + std::to_string(p.output_shift) + ", .act_min = " + std::to_string(p.act_min) +
         ", .act_max = " + std::to_string(p.act_max) + "},\n";
  }
  if (net_type::residual_count == 0) h += "  {},\n";
  h += "};\n";
  h += "static const tinylarge::nn::int8_layer_binding layers[] = {\n" + table + "};\n";
  const auto& tq = q.tensor_quantization();
  h += "static const float tensor_scale[] = {";
  for (const auto& t : tq) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.9gf,", static_cast<double>(t.scale));
    h += buf;
  }
  h += "};\nstatic const std::int32_t tensor_zero_point[] = {";
  for (const auto& t : tq) h += std::to_string(t.zero_point) + ",";
  h += "};\n}  // namespace tl_compiled\n";
  tl::io::write_file(path, std::span<const std::uint8_t>(reinterpret_cast<const std::uint8_t*>(h.data()), h.size()));
}

/// Binds `file` (compressed records) to a `Net` and `dense_file` (the same weights as dense
/// int8 records) to a `flash_storage` network, checks on every test sample that the compressed
/// network's logits equal the dense network's and the owning `q`'s, and writes the firmware
/// headers `<name>_<suffix>_model.h` / `<name>_<suffix>_data.h`.
struct compressed_check {
  std::size_t hits = 0;        ///< test samples classified right by the compressed network
  std::size_t same_dense = 0;  ///< test samples whose logits equal the dense int8 network's
};
template <class Net, class Model>
compressed_check check_and_export(const std::string& name, const std::string& out, const std::string& suffix,
                             const std::string& what, const nn::labelled_view<std::uint8_t>& test, owning_net<Model>& q,
                             const std::vector<std::uint8_t>& file, const std::vector<std::uint8_t>& dense_file) {
  aligned_bytes fs(file), fd(dense_file);
  cz::model_file_reader rs, rd;
  raise_if_error(rs.open(fs.data(), fs.size));
  raise_if_error(rd.open(fd.data(), fd.size));
  static Net dev;
  static bound_net<Model> dense;
  raise_if_error(cz::bind_model_file(rs, dev));
  raise_if_error(cz::bind_model_file(rd, dense));
  std::vector<std::int8_t> xq(Model::input_size), inputs, expected;
  std::size_t hits = 0, same_dense = 0, same_owning = 0;
  for (std::size_t s = 0; s < test.count; ++s) {
    tl::kernels::quantize_s8(tl::arch::scalar{}, test.x + s * Model::input_size, Model::input_size, dev.input_params(),
                             tl::int8_per_channel::activation_range, xq.data());
    const std::int8_t* y = dev.forward(xq.data());
    const std::vector<std::int8_t> ys(y, y + Model::output_size);
    same_dense += std::equal(ys.begin(), ys.end(), dense.forward(xq.data()));
    same_owning += std::equal(ys.begin(), ys.end(), q.forward(xq.data()));
    hits += static_cast<std::size_t>(std::max_element(ys.begin(), ys.end()) - ys.begin()) == test.y[s];
    if (s < embedded_inputs) {
      inputs.insert(inputs.end(), xq.begin(), xq.end());
      expected.insert(expected.end(), ys.begin(), ys.end());
    }
  }
  check(same_dense == test.count, name + " " + what + ": the compressed network's logits differ from the dense int8 network's");
  check(same_owning == test.count, name + " " + what + ": the compressed network's logits differ from the owning network's");
  cz::write_c_header(out + "/" + name + "_" + suffix + "_model.h", file, "tl_model");
  cz::c_header_writer data("make_cnn: int8 inputs and the host's int8 logits of " + name + " " + what);
  data.add_int8("tl_inputs", inputs).add_int8("tl_expected", expected);
  data.write(out + "/" + name + "_" + suffix + "_data.h");
  return {hits, same_dense};
}

/// Prunes the int8 network `q` (in place) to `sparsity` zeros per weighted layer and exports
/// it with int8 CSR records as `<name>_sparse_model.h` / `<name>_sparse_data.h`.
template <class Model>
void build_pruned(const std::string& name, const std::string& out, const nn::labelled_view<std::uint8_t>& test,
                  owning_net<Model>& q, std::size_t dense_file_bytes, double acc_int8, const std::vector<double>& sparsity) {
  const std::size_t zeros_before = cz::prune_int8_weights(q, 0.0);
  const std::size_t zeros = cz::prune_int8_weights(q, std::span<const double>(sparsity));
  std::string per_layer;
  for (double v : sparsity) per_layer += (per_layer.empty() ? "" : ",") + std::to_string(v).substr(0, 4);
  cz::model_file_builder bs, bd;
  cz::add_int8_csr_layers(bs, q, 8, cz::int8_csr_layers::when_smaller);  // a layer not smaller as CSR stays dense
  cz::add_int8_layers(bd, q);  // the same zeroed weights, dense: the reference
  const std::vector<std::uint8_t> file = bs.bytes();
  const compressed_check r =
      check_and_export<sparse_net<Model>>(name, out, "sparse", "pruned (int8 CSR)", test, q, file, bd.bytes());
  std::printf("make_cnn: %s pruned to %s per weighted layer: %zu of %zu weights zero (%.1f %%; %zu before pruning), no "
              "fine-tuning; model file: int8 CSR %zu bytes, dense int8 %zu bytes; accuracy on %zu test samples: "
              "int8 %.2f %% -> pruned %.2f %%; CSR = dense int8 with the same zeros on %zu / %zu\n",
              name.c_str(), per_layer.c_str(), zeros, static_cast<std::size_t>(Model::weight_count),
              100.0 * static_cast<double>(zeros) / static_cast<double>(Model::weight_count), zeros_before, file.size(),
              dense_file_bytes, test.count, 100.0 * acc_int8,
              100.0 * static_cast<double>(r.hits) / static_cast<double>(test.count), r.same_dense, test.count);
}

/// Clusters the int8 weights of `q` into `clusters` values per weighted layer and exports it
/// with int8 codebook records as `<name>_shared_model.h` / `<name>_shared_data.h`; `q`'s
/// weights are restored afterwards.
template <class Model>
void build_shared(const std::string& name, const std::string& out, const nn::labelled_view<std::uint8_t>& test,
                  owning_net<Model>& q, std::size_t dense_file_bytes, double acc_int8, std::size_t clusters) {
  const std::vector<std::int8_t> saved(q.weights(), q.weights() + Model::weight_count);
  const std::size_t widest = cz::share_int8_weights(q, clusters);
  cz::model_file_builder bs, bd;
  cz::add_int8_codebook_layers(bs, q, cz::int8_csr_layers::when_smaller);  // a layer not smaller stays dense
  cz::add_int8_layers(bd, q);  // the same substituted weights, dense: the reference
  const std::vector<std::uint8_t> file = bs.bytes();
  const compressed_check r = check_and_export<shared_net<Model>>(name, out, "shared", "weight-shared (int8 codebook)",
                                                               test, q, file, bd.bytes());
  aligned_bytes fs(file);
  cz::model_file_reader rs;
  raise_if_error(rs.open(fs.data(), fs.size));
  std::size_t shared_layers = 0;
  for (std::size_t i = 0; i < rs.layer_count(); ++i) {
    cz::layer_view v;
    raise_if_error(rs.layer(i, v));
    shared_layers += v.format == cz::weight_format::int8_codebook;
  }
  std::printf("make_cnn: %s weight-shared to %zu int8 values per weighted layer (at most %zu used), no fine-tuning; "
              "%zu of %zu records int8 codebook; model file: int8 codebook %zu bytes, dense int8 %zu bytes; accuracy "
              "on %zu test samples: int8 %.2f %% -> shared %.2f %%; codebook = dense int8 with the codebook values on "
              "%zu / %zu\n",
              name.c_str(), clusters, widest, shared_layers, rs.layer_count(), file.size(), dense_file_bytes,
              test.count, 100.0 * acc_int8, 100.0 * static_cast<double>(r.hits) / static_cast<double>(test.count),
              r.same_dense, test.count);

  // The same weights with Huffman-coded indices, decoded one output channel at a time.
  cz::model_file_builder bh;
  cz::add_int8_huffman_codebook_layers(bh, q, cz::int8_csr_layers::when_smaller);
  const std::vector<std::uint8_t> hfile = bh.bytes();
  const compressed_check rh = check_and_export<huffman_net<Model>>(
      name, out, "huffman", "weight-shared, Huffman-coded indices (int8 Huffman codebook)", test, q, hfile, bd.bytes());
  aligned_bytes fh(hfile);
  cz::model_file_reader rhr;
  raise_if_error(rhr.open(fh.data(), fh.size));
  std::size_t packed_total = 0, huffman_total = 0;
  for (std::size_t i = 0; i < rs.layer_count() && i < rhr.layer_count(); ++i) {
    cz::layer_view v, h;
    raise_if_error(rs.layer(i, v));
    raise_if_error(rhr.layer(i, h));
    if (v.format != cz::weight_format::int8_codebook || h.format != cz::weight_format::int8_huffman_codebook) continue;
    const std::size_t n = v.rows * v.cols, packed = cz::packed_size(n, v.codebook_s8.bits);
    std::vector<std::uint64_t> counts(256, 0);
    for (std::size_t j = 0; j < n; ++j) ++counts[cz::packed_get(v.codebook_s8.packed, j, v.codebook_s8.bits)];
    const double entropy = cz::empirical_entropy_bits(counts.data(), 256);
    cz::huffman_stream_info info;
    raise_if_error(cz::huffman_parse_header(h.huffman_s8.stream, h.huffman_s8.stream_bytes, info));
    const std::size_t offsets = 4 * (h.rows + 1);
    packed_total += packed;
    huffman_total += h.huffman_s8.stream_bytes + offsets;
    std::printf("make_cnn: %s record %zu (%zux%zu, k %zu): indices packed %zu B (%u bits each); Huffman payload %zu B "
                "(%.3f bits each) + header %zu B + row offsets %zu B = %zu B; entropy of the index histogram %.3f "
                "bits each (%.0f B)\n",
                name.c_str(), i, v.rows, v.cols, h.huffman_s8.k, packed, v.codebook_s8.bits, info.payload_bytes,
                static_cast<double>(h.huffman_s8.row_bits[h.rows]) / static_cast<double>(n), info.header_bytes, offsets,
                h.huffman_s8.stream_bytes + offsets, entropy / static_cast<double>(n), entropy / 8.0);
  }
  std::printf("make_cnn: %s weight-shared with Huffman-coded indices: model file %zu bytes (packed codebook %zu bytes); "
              "indices %zu B Huffman-coded with row offsets against %zu B packed; accuracy %.2f %%; Huffman = dense int8 "
              "with the codebook values on %zu / %zu\n",
              name.c_str(), hfile.size(), file.size(), huffman_total, packed_total,
              100.0 * static_cast<double>(rh.hits) / static_cast<double>(test.count), rh.same_dense, test.count);
  std::copy(saved.begin(), saved.end(), q.weights());
}

/// Trains `Model` (He-normal start, Adam, `epochs` epochs of batch 32) and quantizes it
/// post-training on up to 500 training samples; `acc_fp32` receives the fp32 accuracy on `test`.
template <class Model>
std::unique_ptr<owning_net<Model>> train_and_quantize(const nn::labelled_view<std::uint8_t>& train,
                                                      const nn::labelled_view<std::uint8_t>& test, std::size_t epochs,
                                                      std::uint64_t seed, double& acc_fp32) {
  auto net = std::make_unique<nn::network<Model>>();
  net->template initialize<nn::he_normal>(seed);
  nn::fit(*net, nn::adam{.learning_rate = 2e-3f}, nn::softmax_cross_entropy{}, train,
          {.epochs = epochs, .batch_size = 32, .seed = seed, .shuffle = true, .lr_decay = 0.7f});
  acc_fp32 = nn::evaluate(*net, nn::softmax_cross_entropy{}, test).accuracy;
  auto q = std::make_unique<owning_net<Model>>();
  nn::quantize_post_training(*net, train.x, std::min<std::size_t>(train.count, 500), *q);
  return q;
}

/// Trains, quantizes and exports one model; returns the model file. `sparsity` > 0: also the
/// pruned model (`build_pruned`).
template <class Model>
std::vector<std::uint8_t> build(const std::string& name, const std::string& out, const nn::labelled_view<std::uint8_t>& train,
                                const nn::labelled_view<std::uint8_t>& test, std::size_t epochs, std::uint64_t seed,
                                const std::vector<double>& sparsity = {}, std::size_t clusters = 0) {
  double acc_fp32 = 0.0;
  const auto q = train_and_quantize<Model>(train, test, epochs, seed, acc_fp32);
  cz::model_file_builder b;
  cz::add_int8_layers(b, *q);
  const std::vector<std::uint8_t> file = b.bytes();

  // The firmware's code on the host: a flash_storage network bound to the file's bytes.
  aligned_bytes flash(file);
  cz::model_file_reader r;
  raise_if_error(r.open(flash.data(), flash.size));
  static bound_net<Model> dev;  // static: like the firmware's
  static bound_net<Model, tl::arch::scalar> ref;
  raise_if_error(cz::bind_model_file(r, dev));
  raise_if_error(cz::bind_model_file(r, ref));

  std::vector<std::int8_t> xq(Model::input_size), inputs, expected;
  std::size_t hits = 0, same_owning = 0, same_scalar = 0;
  for (std::size_t s = 0; s < test.count; ++s) {
    tl::kernels::quantize_s8(tl::arch::scalar{}, test.x + s * Model::input_size, Model::input_size, dev.input_params(),
                             tl::int8_per_channel::activation_range, xq.data());
    const std::int8_t* y = dev.forward(xq.data());
    const std::vector<std::int8_t> yd(y, y + Model::output_size);
    const std::int8_t* yo = q->forward(xq.data());
    const std::int8_t* ys = ref.forward(xq.data());
    same_owning += std::equal(yd.begin(), yd.end(), yo);
    same_scalar += std::equal(yd.begin(), yd.end(), ys);
    hits += static_cast<std::size_t>(std::max_element(yd.begin(), yd.end()) - yd.begin()) == test.y[s];
    if (s < embedded_inputs) {
      inputs.insert(inputs.end(), xq.begin(), xq.end());
      expected.insert(expected.end(), yd.begin(), yd.end());
    }
  }
  check(same_owning == test.count, name + ": the bound network's logits differ from the owning network's");
  check(same_scalar == test.count, name + ": the default back end's logits differ from the scalar back end's");

  // A flipped bit must be rejected by the reader (CRC-32).
  {
    aligned_bytes bad(file);
    bad.data()[file.size() / 2] ^= 0x10;
    cz::model_file_reader rb;
    check(rb.open(bad.data(), bad.size).code == tl::errc::checksum_mismatch, name + ": a flipped bit was not rejected");
  }

  constexpr std::size_t blocks = owning_net<Model>::residual_count;
  std::printf("make_cnn: %s: %zu parameters, %zu MACs%s, model file %zu bytes, arena %zu bytes; accuracy on %zu test "
              "samples: fp32 %.2f %%, int8 %.2f %%; bound = owning on %zu / %zu, = scalar on %zu / %zu\n",
              name.c_str(), static_cast<std::size_t>(Model::param_count), static_cast<std::size_t>(Model::macs),
              blocks > 0 ? (", " + std::to_string(blocks) + " residual blocks (an add record each)").c_str() : "",
              file.size(), bound_net<Model>::arena_bytes, test.count, 100.0 * acc_fp32,
              100.0 * static_cast<double>(hits) / static_cast<double>(test.count), same_owning, test.count, same_scalar,
              test.count);

  cz::write_c_header(out + "/" + name + "_model.h", file, "tl_model");
  write_compiled_header(out + "/" + name + "_compiled.h", name, *q);
  cz::c_header_writer data("make_cnn: int8 inputs and the host's int8 logits of " + name);
  data.add_int8("tl_inputs", inputs).add_int8("tl_expected", expected);
  data.write(out + "/" + name + "_data.h");
  if (clusters > 0)
    build_shared<Model>(name, out, test, *q, file.size(), static_cast<double>(hits) / static_cast<double>(test.count),
                        clusters);
  if (!sparsity.empty())
    build_pruned<Model>(name, out, test, *q, file.size(), static_cast<double>(hits) / static_cast<double>(test.count),
                        sparsity);
  return file;
}

/// Checks a --*-sparsity value list: one value in [0, 1) (expanded to every weighted layer)
/// or one per weighted layer; prints what is wrong and returns false otherwise.
bool valid_sparsity(const char* option, std::vector<double>& sparsity, std::size_t weighted) {
  if (sparsity.size() == 1) sparsity.assign(weighted, sparsity[0]);
  const bool in_range = std::all_of(sparsity.begin(), sparsity.end(), [](double v) { return v >= 0.0 && v < 1.0; });
  if (in_range && (sparsity.empty() || sparsity.size() == weighted)) return true;
  std::fprintf(stderr, "make_cnn: %s takes one value in [0, 1) or one per weighted layer (%zu)\n", option, weighted);
  return false;
}

/// Checks a --*-clusters value: 0 (no weight-shared file) or a value in [2, 256].
bool valid_clusters(const char* option, std::size_t clusters) {
  if (clusters != 1 && clusters <= 256) return true;
  std::fprintf(stderr, "make_cnn: %s takes a value in [2, 256]\n", option);
  return false;
}

}  // namespace

int main(int argc, char** argv) {
  std::string out;
  std::size_t train_n = 6000, epochs = 2, kws_n = 1500;
  std::uint64_t seed = 11;
  std::vector<double> lenet5_sparsity, resnet_sparsity;
  std::size_t lenet5_clusters = 0, resnet_clusters = 0;
  examples::cli args(argc, argv,
                     "--out DIR [--train N] [--kws N] [--epochs E] [--seed S] [--lenet5-sparsity S|S1,...,S5] "
                     "[--lenet5-clusters K] [--resnet-sparsity S|S1,...,S6] [--resnet-clusters K]");
  while (args.next()) {
    if (args.is("--out")) out = args.text();
    else if (args.is("--train")) train_n = args.count();
    else if (args.is("--kws")) kws_n = args.count();
    else if (args.is("--epochs")) epochs = args.count();
    else if (args.is("--seed")) seed = args.count<std::uint64_t>();
    else if (args.is("--lenet5-sparsity")) lenet5_sparsity = args.reals();
    else if (args.is("--lenet5-clusters")) lenet5_clusters = args.count();
    else if (args.is("--resnet-sparsity")) resnet_sparsity = args.reals();
    else if (args.is("--resnet-clusters")) resnet_clusters = args.count();
    else args.unknown();
  }
  if (out.empty()) {
    std::fprintf(stderr, "make_cnn: --out DIR is required\n");
    return 2;
  }
  try {
    std::filesystem::create_directories(out);
    // LeNet-5 on Fashion-MNIST.
    const auto train_set = tl::data::load_fashion_mnist(tl::data::split::train);
    const auto test_set = tl::data::load_fashion_mnist(tl::data::split::test);
    train_n = std::min(train_n, train_set.count);
    nn::labelled_view<std::uint8_t> train{train_set.images.data(), train_set.labels.data(), train_n, 784};
    nn::labelled_view<std::uint8_t> test{test_set.images.data(), test_set.labels.data(), 1000, 784};
    constexpr std::size_t lenet5_weighted = cz::weighted_layer_count<mcu_cnn::lenet5>;
    constexpr std::size_t resnet_weighted = cz::weighted_layer_count<mcu_cnn::resnet_kws>;
    if (!valid_sparsity("--lenet5-sparsity", lenet5_sparsity, lenet5_weighted) ||
        !valid_sparsity("--resnet-sparsity", resnet_sparsity, resnet_weighted) ||
        !valid_clusters("--lenet5-clusters", lenet5_clusters) || !valid_clusters("--resnet-clusters", resnet_clusters))
      return 2;
    const auto lenet_file =
        build<mcu_cnn::lenet5>("lenet5", out, train, test, epochs, seed, lenet5_sparsity, lenet5_clusters);

    // DS-CNN on synthetic spectrograms (training and test sets from different seeds).
    std::vector<float> kx, tx;
    std::vector<std::uint8_t> ky, ty;
    make_spectrograms(seed + 100, kws_n, kx, ky);
    make_spectrograms(seed + 200, 400, tx, ty);
    nn::labelled_view<std::uint8_t> ktrain{kx.data(), ky.data(), kws_n, 490};
    nn::labelled_view<std::uint8_t> ktest{tx.data(), ty.data(), 400, 490};
    const auto ds_file = build<mcu_cnn::ds_cnn>("ds_cnn", out, ktrain, ktest, epochs, seed + 1);
    // The residual CNN on the same spectrograms: a model file with an add record per block.
    const auto kws_file = build<mcu_cnn::resnet_kws>("resnet_kws", out, ktrain, ktest, epochs, seed + 3, resnet_sparsity,
                                                    resnet_clusters);

    // A model of another shape: its file is rejected by every compiled type; the two spectrogram
    // models (same input, one with add records) reject each other's files.
    {
      nn::network<mcu_cnn::other> other(seed + 2);
      auto q = std::make_unique<owning_net<mcu_cnn::other>>();
      nn::quantize_post_training(other, train.x, 64, *q);
      cz::model_file_builder b;
      cz::add_int8_layers(b, *q);
      const std::vector<std::uint8_t> file = b.bytes();
      aligned_bytes flash(file);
      cz::model_file_reader r;
      raise_if_error(r.open(flash.data(), flash.size));
      static bound_net<mcu_cnn::lenet5> a;
      static bound_net<mcu_cnn::ds_cnn> d;
      static bound_net<mcu_cnn::resnet_kws> k;
      check(cz::bind_model_file(r, a).code == tl::errc::shape_mismatch, "lenet5 accepted a file of another shape");
      check(cz::bind_model_file(r, d).code == tl::errc::shape_mismatch, "ds_cnn accepted a file of another shape");
      check(cz::bind_model_file(r, k).code == tl::errc::shape_mismatch, "resnet_kws accepted a file of another shape");
      aligned_bytes lf(lenet_file), df(ds_file), kf(kws_file);
      raise_if_error(r.open(lf.data(), lf.size));
      check(cz::bind_model_file(r, d).code == tl::errc::shape_mismatch, "ds_cnn accepted the lenet5 file");
      raise_if_error(r.open(df.data(), df.size));
      check(cz::bind_model_file(r, k).code == tl::errc::shape_mismatch, "resnet_kws accepted the ds_cnn file");
      raise_if_error(r.open(kf.data(), kf.size));
      check(cz::bind_model_file(r, d).code == tl::errc::shape_mismatch, "ds_cnn accepted the resnet_kws file");
      cz::write_c_header(out + "/other_model.h", file, "tl_other_model");
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "make_cnn: %s\n", e.what());
    return 1;
  }
  if (failures != 0) return 1;
  std::printf("make_cnn: all host checks passed\n");
  return 0;
}
