// Valid model files with every weight format and symbol encoding, built from seeded random
// matrices. Shared by tests/test_model_file.cpp (round trips, golden MCU header) and the
// fuzz corpus generator (tests/fuzz/make_model_file_corpus.cpp). Host only.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "tinylarge/compress/low_rank.hpp"
#include "tinylarge/compress/model_file.hpp"
#include "tinylarge/compress/sparse.hpp"
#include "tinylarge/compress/weight_sharing.hpp"
#include "tinylarge/core/rng.hpp"
#include "tinylarge/precision/int8.hpp"

namespace model_file_samples {

namespace c = tinylarge::compress;

/// Gaussian matrix.
inline std::vector<float> gaussian(std::size_t n, std::uint64_t seed, float sd = 1.0f) {
  tinylarge::rng g(seed);
  std::vector<float> v(n);
  for (auto& x : v) x = g.normal(0.0f, sd);
  return v;
}

/// Keeps about `keep` of the entries (the rest exactly zero), with long zero runs so that
/// the relative-index CSR needs filler entries.
inline std::vector<float> sparse(std::size_t rows, std::size_t cols, double keep, std::uint64_t seed) {
  tinylarge::rng g(seed);
  std::vector<float> w(rows * cols, 0.0f);
  for (auto& x : w)
    if (g.uniform() < keep) x = g.normal();
  return w;
}

/// A layer's original (fp32) matrix and the labels/codebook used to compress it.
struct shared_matrix {
  std::vector<float> w;  ///< snapped to the codebook (what the compressed layer computes)
  std::vector<std::uint8_t> labels;
  std::vector<float> centroids;
};

/// Weight sharing with `bits`-bit indices and a zero centroid 0 (pruned weights).
inline shared_matrix share(std::vector<float> w, std::size_t rows, std::size_t cols, unsigned bits) {
  shared_matrix s;
  std::vector<float> nz;
  for (float x : w)
    if (x != 0.0f) nz.push_back(x);
  c::kmeans_options opt;
  opt.clusters = (std::size_t{1} << bits) - 1;
  const c::kmeans_result r = c::kmeans_1d(nz, opt);
  s.centroids.assign(std::size_t{1} << bits, 0.0f);
  std::copy(r.centroids.begin(), r.centroids.end(), s.centroids.begin() + 1);
  s.labels.assign(rows * cols, 0);
  for (std::size_t i = 0, j = 0; i < w.size(); ++i)
    if (w[i] != 0.0f) s.labels[i] = static_cast<std::uint8_t>(r.labels[j++] + 1);
  for (std::size_t i = 0; i < w.size(); ++i) w[i] = s.centroids[s.labels[i]];
  s.w = std::move(w);
  return s;
}

/// int8 per-channel quantization of a matrix (symmetric weights in [−127, 127]).
struct int8_matrix {
  std::vector<std::int8_t> q;
  std::vector<float> scales;
  std::vector<std::int32_t> bias;
  tinylarge::quant_params input{0.05f, -3}, output{0.1f, 5};
};

inline int8_matrix quantize_rows(const std::vector<float>& w, std::size_t rows, std::size_t cols, std::uint64_t seed) {
  int8_matrix m;
  m.q.resize(rows * cols);
  m.scales.resize(rows);
  m.bias.resize(rows);
  tinylarge::rng g(seed);
  for (std::size_t o = 0; o < rows; ++o) {
    float amax = 0.0f;
    for (std::size_t i = 0; i < cols; ++i) amax = std::max(amax, std::abs(w[o * cols + i]));
    const tinylarge::quant_params p{amax > 0 ? amax / 127.0f : 1.0f, 0};
    m.scales[o] = p.scale;
    for (std::size_t i = 0; i < cols; ++i)
      m.q[o * cols + i] = tinylarge::quantize(w[o * cols + i], p, tinylarge::int8_weight_range);
    m.bias[o] = static_cast<std::int32_t>(g.uniform_int(2001)) - 1000;
  }
  return m;
}

/// A file and, per layer, the fp32 matrix it represents (what the dense kernel should
/// compute with), and the int8 layer's quantized form.
struct sample {
  std::vector<std::uint8_t> bytes;
  std::vector<std::vector<float>> dense;  ///< rows×cols per layer (empty for the int8 layer)
  std::vector<std::vector<float>> bias;   ///< per layer (empty: none)
  int8_matrix int8;
};

/// Every weight format and encoding, one layer each (13 layers, ~17 KB). Deterministic.
inline sample every_format() {
  sample s;
  c::model_file_builder b;
  const std::size_t R = 12, C = 40;
  const auto bias = gaussian(R, 99, 0.1f);
  c::layer_options o;
  // 0: dense fp32, relu
  o.activation = c::activation_kind::relu;
  s.dense.push_back(gaussian(R * C, 1));
  s.bias.push_back(bias);
  b.add_dense_f32(R, C, s.dense.back(), bias, o);
  // 1: dense fp16, no bias; the reference is the fp16-rounded matrix
  auto w1 = gaussian(R * C, 2);
  b.add_dense_f16(R, C, w1, {}, {});
  for (auto& x : w1) x = tinylarge::half_to_float(tinylarge::float_to_half(x));
  s.dense.push_back(w1);
  s.bias.push_back({});
  // 2: int8 per channel, relu6
  o.activation = c::activation_kind::relu6;
  s.int8 = quantize_rows(gaussian(R * C, 3), R, C, 3);
  b.add_int8(R, C, s.int8.q, s.int8.scales, s.int8.input, s.int8.output, s.int8.bias, o);
  s.dense.push_back({});
  s.bias.push_back({});
  // 3: CSR fp32, gaps as bytes (in place); 4: the same with bit-packed gaps
  const auto sp = sparse(R, C, 0.15, 4);
  const auto csr = c::to_relative_csr({sp.data(), R, C}, 3);
  b.add_csr(csr, bias, {});
  c::layer_options packed;
  packed.gaps = c::symbol_encoding::packed;
  b.add_csr(csr, {}, packed);
  s.dense.push_back(sp);
  s.bias.push_back(bias);
  s.dense.push_back(sp);
  s.bias.push_back({});
  // 5: CSR codebook, Huffman gaps and Huffman indices (Deep Compression's final form)
  const auto sh = share(sparse(R, C, 0.3, 5), R, C, 4);
  const auto csr_cb = c::to_relative_csr({sh.w.data(), R, C}, sh.labels, sh.centroids, 4);
  c::layer_options huff;
  huff.gaps = c::symbol_encoding::huffman;
  huff.indices = c::symbol_encoding::huffman;
  b.add_csr(csr_cb, 4, bias, huff);
  s.dense.push_back(sh.w);
  s.bias.push_back(bias);
  // 6: CSR codebook in place (gaps and indices one byte each)
  b.add_csr(csr_cb, 4, {}, {});
  s.dense.push_back(sh.w);
  s.bias.push_back({});
  // 7: codebook, packed 3-bit (in place); 8: Huffman-coded indices
  const auto sh2 = share(gaussian(R * C, 6), R, C, 3);
  const auto cb = c::to_codebook_matrix(R, C, sh2.labels, sh2.centroids, 3);
  b.add_codebook(cb, bias, {});
  b.add_codebook(cb, {}, huff);
  s.dense.push_back(sh2.w);
  s.bias.push_back(bias);
  s.dense.push_back(sh2.w);
  s.bias.push_back({});
  // 9: factored rank 3; the reference is left·right
  const auto w9 = gaussian(R * C, 7);
  const auto f = c::truncated_svd({w9.data(), R, C}, 3);
  b.add_factored(f, bias, {});
  std::vector<float> r9(R * C);
  c::reconstruct(f, r9.data());
  s.dense.push_back(r9);
  s.bias.push_back(bias);
  // 10: conv2d record, 4 output channels, 2 input channels, 3×3 kernel, dense fp32
  c::layer_options conv;
  conv.kind = c::layer_kind::conv2d;
  conv.conv = {2, 3, 3, 1, 1, 1, 1, 1};
  s.dense.push_back(gaussian(4 * 18, 8));
  s.bias.push_back({});
  b.add_dense_f32(4, 18, s.dense.back(), {}, conv);
  // 11: CSR codebook, gaps and indices bit-packed (decoded at load)
  c::layer_options packed_all;
  packed_all.gaps = c::symbol_encoding::packed;
  packed_all.indices = c::symbol_encoding::packed;
  b.add_csr(csr_cb, 4, bias, packed_all);
  s.dense.push_back(sh.w);
  s.bias.push_back(bias);
  // 12: CSR codebook, gaps in place, indices Huffman-coded (decoded at load)
  c::layer_options huff_idx;
  huff_idx.indices = c::symbol_encoding::huffman;
  b.add_csr(csr_cb, 4, {}, huff_idx);
  s.dense.push_back(sh.w);
  s.bias.push_back({});
  s.bytes = b.bytes();
  return s;
}

/// A small three-layer file (CSR codebook Huffman, codebook, int8): the robustness tests
/// flip every bit of it and cut it at every length.
inline std::vector<std::uint8_t> small() {
  c::model_file_builder b;
  const std::size_t R = 3, C = 10;
  const auto sh = share(sparse(R, C, 0.4, 11), R, C, 2);
  const auto csr = c::to_relative_csr({sh.w.data(), R, C}, sh.labels, sh.centroids, 2);
  c::layer_options huff;
  huff.gaps = c::symbol_encoding::huffman;
  huff.indices = c::symbol_encoding::huffman;
  huff.activation = c::activation_kind::relu;
  b.add_csr(csr, 2, gaussian(R, 12), huff);
  const auto cb = c::to_codebook_matrix(R, C, sh.labels, sh.centroids, 2);
  b.add_codebook(cb, {}, {});
  const auto q = quantize_rows(gaussian(R * C, 13), R, C, 13);
  b.add_int8(R, C, q.q, q.scales, q.input, q.output, q.bias, {});
  return b.bytes();
}

}  // namespace model_file_samples
