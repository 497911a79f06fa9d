// The int8 CNN that the model-file fuzzer binds accepted files to (compress/int8_model.hpp),
// and a valid model file of it for the seed corpus.
#pragma once

#include <cstdint>
#include <vector>

#include "tinylarge/compress/int8_model.hpp"
#include "tinylarge/nn/layers.hpp"
#include "tinylarge/nn/sequential.hpp"
#include "tinylarge/nn/transformer.hpp"

namespace int8_model_sample {
namespace nn = tinylarge::nn;
/// Small, with every kind bind_model_file checks: conv (padded, fused relu), pooling,
/// depthwise with multiplier 2 (fused relu6), flatten, dense.
using model = nn::sequential<nn::input<6, 6, 2>, nn::conv2d<3, 3, 1, 1>, nn::relu, nn::max_pool2d<2>,
                             nn::depthwise_conv2d<3, 1, 1, 2>, nn::relu6, nn::flatten, nn::dense<54, 4>>;
using bound = nn::quantized_network<model, tinylarge::int8_per_channel, nn::flash_storage, tinylarge::arch::scalar>;
/// The same type with pruned int8 CSR and weight-shared int8 codebook records allowed (int8_csr,
/// int8_codebook, run compressed).
using bound_sparse =
    nn::quantized_network<model, tinylarge::int8_per_channel, nn::pruned_or_shared_flash_storage, tinylarge::arch::scalar>;
/// The same type with Huffman-coded weight-shared records allowed (int8_huffman_codebook, decoded
/// one output channel at a time).
using bound_huffman =
    nn::quantized_network<model, tinylarge::int8_per_channel, nn::huffman_shared_flash_storage, tinylarge::arch::scalar>;
/// A residual CNN (file version 1.4: an add record closes the block, its relu fused).
using residual_model = nn::sequential<nn::input<4, 4, 2>, nn::conv2d<3, 3, 1, 1>, nn::relu,
                                      nn::residual<nn::conv2d<3, 3, 1, 1>, nn::relu, nn::conv2d<3, 3, 1, 1>>, nn::relu,
                                      nn::flatten, nn::dense<48, 4>>;
using bound_residual =
    nn::quantized_network<residual_model, tinylarge::int8_per_channel, nn::flash_storage, tinylarge::arch::scalar>;
}  // namespace int8_model_sample

#if !TINYLARGE_FREESTANDING && defined(TINYLARGE_INT8_MODEL_SAMPLE_WRITER)
#include <memory>

#include "tinylarge/core/rng.hpp"
#include "tinylarge/nn/network.hpp"
#include "tinylarge/nn/quantize.hpp"

namespace int8_model_sample {
/// A PTQ-quantized `Model`: random weights, calibrated on 8 random inputs.
template <class Model>
auto quantized(std::uint64_t seed) {
  nn::network<Model> net(seed);
  tinylarge::rng g(seed + 1);
  std::vector<float> xs(8 * Model::input_size);
  for (auto& v : xs) v = g.uniform(-1.0f, 1.0f);
  auto q = std::make_unique<nn::quantized_network<Model, tinylarge::int8_per_channel, nn::heap_storage>>();
  nn::quantize_post_training(net, xs.data(), 8, *q);
  return q;
}

/// A valid model file of `model` (random weights, calibrated on random inputs); with
/// `sparsity` > 0 the weights are pruned to it and stored as int8 CSR records; with
/// `clusters` > 0 they are clustered into that many values per layer and stored as int8
/// codebook records (with `huffman`, as int8 Huffman codebook records).
inline std::vector<std::uint8_t> file(std::uint64_t seed = 1, double sparsity = 0.0, std::size_t clusters = 0,
                                      bool huffman = false) {
  const auto q = quantized<model>(seed);
  tinylarge::compress::model_file_builder b;
  if (clusters > 0) {
    (void)tinylarge::compress::share_int8_weights(*q, clusters);
    if (huffman)
      tinylarge::compress::add_int8_huffman_codebook_layers(b, *q);
    else
      tinylarge::compress::add_int8_codebook_layers(b, *q);
  } else if (sparsity > 0.0) {
    (void)tinylarge::compress::prune_int8_weights(*q, sparsity);
    tinylarge::compress::add_int8_csr_layers(b, *q);
  } else {
    tinylarge::compress::add_int8_layers(b, *q);
  }
  return b.bytes();
}

/// A valid model file of `residual_model` (random weights, calibrated on random inputs): int8
/// records and one add record (file version 1.4).
inline std::vector<std::uint8_t> residual_file(std::uint64_t seed = 1) {
  tinylarge::compress::model_file_builder b;
  tinylarge::compress::add_int8_layers(b, *quantized<residual_model>(seed));
  return b.bytes();
}
}  // namespace int8_model_sample
#endif
