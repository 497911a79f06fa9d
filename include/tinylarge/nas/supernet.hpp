/// @file nas/supernet.hpp
/// @brief A weight-sharing MLP supernet (once-for-all style) over an
///        `mlp_space`, trained once with the sandwich rule, and the
///        sub-network forward pass with simulated int8 layers.
///
/// The supernet is the largest genome of the space: `max_depth` hidden dense
/// layers of `max_width` units and one head of `outputs` units. A genome
/// (w₁, …, w_d) selects the sub-network that uses, in hidden layer l, the
/// first w_l units and the first w_{l−1} inputs (w₀ = inputs), and the head's
/// first w_d input columns: weights W_l[0:w_l, 0:w_{l−1}] of the shared
/// max-size matrices (elastic width and depth of Cai et al., "Once-for-All:
/// Train One Network and Specialize it for Efficient Deployment", ICLR 2020).
///
/// **Convolutional stem** (a space with `max_convs` > 0): conv layer j of the
/// supernet holds `max_channels` filters of the largest kernel K_max over
/// C_in,max input channels (the image's for j = 0, `max_channels` after). A
/// sub-network's conv layer j of kernel k and c channels uses the centre
/// k×k slice of the first c filters over the first c_{j−1} input channels:
/// W_j[0:c, o:o+k, o:o+k, 0:c_{j−1}], o = (K_max − k)/2 (the elastic kernel
/// and width of once-for-all, without its kernel transformation matrices).
/// The first dense layer after a stem of n conv layers reads ⌊H/2ⁿ⌋·⌊W/2ⁿ⌋
/// pixels of c_n channels: the supernet keeps one such matrix per stem depth
/// n (max_width rows, one column per pixel and channel of the widest stem,
/// NHWC), and a sub-network uses its first w₁ rows and, of each pixel, the
/// first c_n channel columns. Depth 0 (no stem) is the MLP's first layer.
/// Conv layers run as the library's im2col (`nn::detail::im2col`, which
/// `nn::conv2d` runs) + `kernels::dense_f32` / `kernels::gemm_f32` (so a sub-network's forward pass is
/// the library network's, bit for bit), then relu and 2×2 max pooling
/// (first maximum of each window, as `nn::max_pool2d`).
///
/// **Training** (`train`): for every minibatch the gradients of several
/// sub-networks are summed before one optimizer step — the largest, the
/// smallest and `random_subnets` sampled ones (the sandwich rule of Yu &
/// Huang, "Universally Slimmable Networks and Improved Training Techniques",
/// ICCV 2019). The sub-networks have run-time shapes, so the compile-time
/// `nn::network` cannot run them: the forward and backward passes here are
/// written on the library's strided GEMM entry point (`kernels::gemm_f32`,
/// whose leading dimensions select the sub-block without a copy), the loss
/// is `nn::softmax_cross_entropy` and the optimizer is `nn::adam`'s state
/// over the one flat parameter array. Training is fp32 (no quantization-aware
/// training).
///
/// **Inference** (`body_features`): the sub-network's weights are copied to
/// compact row-major matrices and run by `kernels::dense_f32`. A layer whose
/// genome precision is int8 is *simulated* in fp32 with the rounding of the
/// library's int8 scheme (`tl::fake_quantize`): its input tensor is
/// quantized per tensor (asymmetric, range calibrated by min/max on the
/// calibration rows), its weights per output channel (symmetric, range
/// [−127, 127]), its bias to int32 at scale s_x·s_w[o], and its relu output
/// per tensor. The integer kernels are not run during the search (the
/// requantization of the int32 accumulator adds at most one more rounding
/// per output; see docs/nas.md).
///
/// **Compression**: a layer whose genome sparsity is s % has its copied
/// weights pruned by magnitude to s % (`compress::prune_by_magnitude`, one
/// ranking per layer, exactly `compress::prune_count` weights zeroed; biases
/// are kept) before the int8 simulation — one-shot pruning of the shared
/// weights, no retraining of the body (the head of a transfer is retrained
/// with its mask, see transfer.hpp). Training ignores sparsities (and
/// precisions): the supernet is trained dense.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <vector>

#include "../compress/pruning.hpp"
#include "../core/error.hpp"
#include "../core/rng.hpp"
#include "../kernels/backend.hpp"
#include "../kernels/dense.hpp"
#include "../nn/init.hpp"
#include "../nn/layers.hpp"
#include "../nn/loss.hpp"
#include "../nn/optimizer.hpp"
#include "../precision/int8.hpp"
#include "profile.hpp"
#include "space.hpp"

namespace tinylarge::nas {

/// A labelled data set as the search reads it: `count` rows of `features`
/// floats and one class label per row.
struct labelled_data {
  const float* x = nullptr;         ///< count × features, row-major
  const std::uint8_t* y = nullptr;  ///< count labels
  std::size_t count = 0;            ///< rows
  std::size_t features = 0;         ///< floats per row
};

/// Options of `mlp_supernet::train`.
struct supernet_options {
  std::size_t epochs = 2;          ///< passes over the training data
  std::size_t batch_size = 64;     ///< rows per minibatch
  float learning_rate = 1e-3f;     ///< Adam's η
  float lr_decay = 1.0f;           ///< learning-rate factor after each epoch
  std::size_t random_subnets = 2;  ///< sampled sub-networks per minibatch besides the largest and smallest
  std::uint64_t seed = 1;          ///< shuffling and sub-network sampling
  /// In-place distillation (Yu et al., "BigNAS", ECCV 2020; Cai et al. 2020 §3.2 distil from the
  /// largest network): the largest sub-network learns from the labels, every other one from the
  /// largest's softmax on the same minibatch (soft cross-entropy, the teacher's output treated as
  /// a constant). false: every sub-network learns from the labels.
  bool inplace_distillation = false;
};

namespace detail {
/// int8 parameters (asymmetric, per tensor) of the range of x[0, n): min/max calibration.
inline quant_params activation_params(const float* x, std::size_t n) {
  float lo = 0.0f, hi = 0.0f;
  for (std::size_t i = 0; i < n; ++i) {
    lo = x[i] < lo ? x[i] : lo;
    hi = x[i] > hi ? x[i] : hi;
  }
  return choose_quant_params<asymmetric>(lo, hi, int8_activation_range);
}
inline void fake_quantize_all(float* x, std::size_t n, quant_params p) noexcept {
  for (std::size_t i = 0; i < n; ++i) x[i] = fake_quantize(x[i], p, int8_activation_range);
}
/// Fake-quantizes a dense layer (out × in weights, out biases) in place as the
/// int8 scheme stores it: weights per output channel, symmetric; biases to
/// int32 at scale s_x·s_w[o].
inline void fake_quantize_dense(float* w, float* b, std::size_t out, std::size_t in, float input_scale) {
  for (std::size_t o = 0; o < out; ++o) {
    float* row = w + o * in;
    float amax = 0.0f;
    for (std::size_t i = 0; i < in; ++i) amax = std::max(amax, std::fabs(row[i]));
    const quant_params p = choose_quant_params<symmetric>(-amax, amax, int8_weight_range);
    for (std::size_t i = 0; i < in; ++i) row[i] = fake_quantize(row[i], p, int8_weight_range);
    const double bs = static_cast<double>(input_scale) * static_cast<double>(p.scale);
    if (bs > 0) b[o] = static_cast<float>(std::round(static_cast<double>(b[o]) / bs) * bs);
  }
}
/// Magnitude pruning of one layer's weights to `percent` % in place (nothing for 0).
inline void prune_weights(std::vector<float>& w, unsigned percent) {
  if (percent == 0) return;
  std::vector<std::uint8_t> mask(w.size());
  compress::prune_by_magnitude(std::span<float>(w), percent / 100.0, mask);
}
inline void relu_inplace(float* x, std::size_t n) noexcept {
  for (std::size_t i = 0; i < n; ++i) x[i] = x[i] > 0.0f ? x[i] : 0.0f;
}
inline void add_bias(float* y, const float* b, std::size_t rows, std::size_t n) noexcept {
  for (std::size_t r = 0; r < rows; ++r)
    for (std::size_t j = 0; j < n; ++j) y[r * n + j] += b[j];
}
inline void column_sums(const float* dy, std::size_t rows, std::size_t n, float* out) noexcept {
  for (std::size_t r = 0; r < rows; ++r)
    for (std::size_t j = 0; j < n; ++j) out[j] += dy[r * n + j];
}
/// The run-time geometry of conv layer `s` for the library's im2col / col2im
/// (`nn::detail::im2col`, what `nn::conv2d` runs): stride 1, "same" padding K/2.
inline nn::detail::conv_geometry geometry_of(const conv_shape& s) noexcept {
  return {s.h, s.w, s.c_in, s.k, 1, s.k / 2, s.h, s.w};
}
/// z = conv(x) + b for `batch` images (no activation): im2col into `cols`,
/// then one `kernels::dense_f32` call, as `nn::conv2d` computes it.
inline void conv_forward(const conv_shape& s, const float* x, std::size_t batch, const float* w, const float* b,
                         std::vector<float>& cols, float* z) {
  cols.resize(batch * s.h * s.w * s.patch());
  nn::detail::im2col(geometry_of(s), x, cols.data(), batch);
  kernels::dense_f32(batch * s.h * s.w, s.c_out, s.patch(), cols.data(), w, b, z);
}
/// 2×2 max pooling, stride 2, of the h × w × c_out conv output `z` (the first
/// maximum of each window, as `nn::max_pool2d`); `argmax` (when not null)
/// gets the index in `z` of each output's maximum.
inline void max_pool2(const conv_shape& s, const float* z, std::size_t batch, float* y, std::size_t* argmax) noexcept {
  const std::size_t ho = s.h / 2, wo = s.w / 2, c_n = s.c_out;
  for (std::size_t b = 0; b < batch; ++b)
    for (std::size_t oy = 0; oy < ho; ++oy)
      for (std::size_t ox = 0; ox < wo; ++ox)
        for (std::size_t c = 0; c < c_n; ++c) {
          std::size_t best = ((b * s.h + 2 * oy) * s.w + 2 * ox) * c_n + c;
          for (std::size_t ky = 0; ky < 2; ++ky)
            for (std::size_t kx = 0; kx < 2; ++kx) {
              const std::size_t i = ((b * s.h + 2 * oy + ky) * s.w + 2 * ox + kx) * c_n + c;
              if (z[i] > z[best]) best = i;
            }
          const std::size_t o = ((b * ho + oy) * wo + ox) * c_n + c;
          y[o] = z[best];
          if (argmax != nullptr) argmax[o] = best;
        }
}
}  // namespace detail

/// The shared-weight MLP supernet of an `mlp_space`.
///
/// Parameters are one flat fp32 array; layer l ∈ [0, max_depth] (l =
/// max_depth is the head) holds its `rows(l) × cols(l)` weights row-major at
/// `weight_offset(l)` followed by `rows(l)` biases.
class mlp_supernet {
 public:
  /// He-normal weights (fan-in of the full layer), zero biases.
  /// @param space the space (validated); its largest genome is the supernet
  /// @param seed  seeds the initialisation
  explicit mlp_supernet(mlp_space space, std::uint64_t seed = 1) : space_(std::move(space)) {
    space_.validate();
    const std::size_t layers = space_.max_depth + 1;
    offset_.resize(layers + 1, 0);
    for (std::size_t l = 0; l < layers; ++l) offset_[l + 1] = offset_[l] + rows(l) * cols(l) + rows(l);
    // The conv stem (after the MLP, so that a space without a stem keeps its layout and initial weights).
    std::size_t end = offset_[layers];
    const std::size_t km = space_.max_kernel(), cm = space_.max_channels();
    for (std::size_t j = 0; j < space_.max_convs; ++j) {
      conv_offset_.push_back(end);
      end += cm * km * km * conv_in_channels(j) + cm;
    }
    stem_dense_offset_.assign(space_.max_convs + 1, 0);
    for (std::size_t n = std::max<std::size_t>(1, space_.min_convs); n <= space_.max_convs; ++n) {
      stem_dense_offset_[n] = end;
      end += space_.max_width() * stem_dense_cols(n) + space_.max_width();
    }
    params_.assign(end, 0.0f);
    tinylarge::rng g(seed);
    for (std::size_t l = 0; l < layers; ++l) {
      float* w = params_.data() + offset_[l];
      for (std::size_t i = 0; i < rows(l) * cols(l); ++i) w[i] = nn::he_normal::sample(g, cols(l), rows(l));
    }
    for (std::size_t j = 0; j < space_.max_convs; ++j) {
      float* w = params_.data() + conv_offset_[j];
      const std::size_t fan_in = km * km * conv_in_channels(j);
      for (std::size_t i = 0; i < cm * fan_in; ++i) w[i] = nn::he_normal::sample(g, fan_in, km * km * cm);
    }
    for (std::size_t n = std::max<std::size_t>(1, space_.min_convs); n <= space_.max_convs; ++n) {
      float* w = params_.data() + stem_dense_offset_[n];
      for (std::size_t i = 0; i < space_.max_width() * stem_dense_cols(n); ++i)
        w[i] = nn::he_normal::sample(g, stem_dense_cols(n), space_.max_width());
    }
  }

  /// The search space.
  [[nodiscard]] const mlp_space& space() const noexcept { return space_; }
  /// Output units of supernet layer l (the head for l = max_depth).
  [[nodiscard]] std::size_t rows(std::size_t l) const noexcept {
    return l == space_.max_depth ? space_.outputs : space_.max_width();
  }
  /// Input columns (row stride) of supernet layer l.
  [[nodiscard]] std::size_t cols(std::size_t l) const noexcept { return l == 0 ? space_.inputs : space_.max_width(); }
  /// Offset of layer l's weights in `parameters()`; its biases follow them.
  [[nodiscard]] std::size_t weight_offset(std::size_t l) const noexcept { return offset_[l]; }
  /// Input channels of supernet conv layer j: the image's for j = 0, `max_channels` after.
  [[nodiscard]] std::size_t conv_in_channels(std::size_t j) const noexcept {
    return j == 0 ? space_.image_channels : space_.max_channels();
  }
  /// Columns of the supernet's first dense layer after a stem of n ≥ 1 conv layers.
  [[nodiscard]] std::size_t stem_dense_cols(std::size_t n) const noexcept {
    return space_.stem_height(n) * space_.stem_width(n) * space_.max_channels();
  }
  /// Index in `parameters()` of weight [o][ky][kx][c] of conv layer j of
  /// sub-network `g` (its k×k kernel: the centre of the supernet's), and of bias o.
  [[nodiscard]] std::size_t conv_weight_index(const genome& g, std::size_t j, std::size_t o, std::size_t ky, std::size_t kx,
                                              std::size_t c) const noexcept {
    const std::size_t km = space_.max_kernel(), off = (km - g.convs[j].kernel) / 2;
    return conv_offset_[j] + ((o * km + ky + off) * km + kx + off) * conv_in_channels(j) + c;
  }
  [[nodiscard]] std::size_t conv_bias_index(std::size_t j, std::size_t o) const noexcept {
    const std::size_t km = space_.max_kernel();
    return conv_offset_[j] + space_.max_channels() * km * km * conv_in_channels(j) + o;
  }
  /// Index in `parameters()` of weight (o, i) of dense layer l of sub-network
  /// `g` (i counts the compact inputs of the sub-network's layer), and of bias o.
  [[nodiscard]] std::size_t dense_weight_index(const genome& g, std::size_t l, std::size_t o, std::size_t i) const noexcept {
    if (l == 0 && !g.convs.empty()) {
      const std::size_t n = g.convs.size(), c = g.convs.back().channels;
      return stem_dense_offset_[n] + o * stem_dense_cols(n) + (i / c) * space_.max_channels() + i % c;
    }
    return offset_[l] + o * cols(l) + i;
  }
  [[nodiscard]] std::size_t dense_bias_index(const genome& g, std::size_t l, std::size_t o) const noexcept {
    if (l == 0 && !g.convs.empty()) {
      const std::size_t n = g.convs.size();
      return stem_dense_offset_[n] + space_.max_width() * stem_dense_cols(n) + o;
    }
    return offset_[l] + rows(l) * cols(l) + o;
  }
  /// All parameters (fp32).
  [[nodiscard]] std::span<float> parameters() noexcept { return params_; }
  /// All parameters (fp32), read-only.
  [[nodiscard]] std::span<const float> parameters() const noexcept { return params_; }

  /// Adds ∂L/∂θ of sub-network `g` with the shared head (source task) on one
  /// minibatch to `grad` (size `parameters().size()`; entries outside the
  /// sub-network are untouched) and returns the mean softmax cross-entropy
  /// L. fp32 throughout (precisions of `g` are ignored).
  double accumulate_gradient(const genome& g, const float* x, const std::uint8_t* y, std::size_t batch,
                             std::span<float> grad) {
    check_genome(g);
    TINYLARGE_REQUIRE(grad.size() == params_.size(), errc::shape_mismatch,
                      "nas::mlp_supernet::accumulate_gradient: grad must have one entry per parameter");
    forward_train(g, x, batch);
    dlogits_.resize(batch * space_.outputs);
    const double loss =
        nn::softmax_cross_entropy::evaluate(acts_[g.depth() + 1].data(), y, batch, space_.outputs, dlogits_.data());
    backward_train(g, x, batch, grad);
    return loss;
  }

  /// As `accumulate_gradient`, with soft targets: `teacher` holds a probability
  /// vector per row (batch × outputs) and the loss is the soft cross-entropy
  /// L = −(1/B) Σ_b Σ_j t_bj·log softmax(z_b)_j, ∂L/∂z_bj = (softmax(z_b)_j − t_bj)/B.
  double accumulate_distillation_gradient(const genome& g, const float* x, const float* teacher, std::size_t batch,
                                          std::span<float> grad) {
    check_genome(g);
    TINYLARGE_REQUIRE(grad.size() == params_.size(), errc::shape_mismatch,
                      "nas::mlp_supernet::accumulate_distillation_gradient: grad must have one entry per parameter");
    forward_train(g, x, batch);
    const std::size_t outs = space_.outputs;
    dlogits_.resize(batch * outs);
    const float* z = acts_[g.depth() + 1].data();
    double total = 0;
    for (std::size_t b = 0; b < batch; ++b) {
      const float* zb = z + b * outs;
      float m = zb[0];
      for (std::size_t j = 1; j < outs; ++j) m = zb[j] > m ? zb[j] : m;
      double sum = 0;
      for (std::size_t j = 0; j < outs; ++j) sum += std::exp(static_cast<double>(zb[j] - m));
      const double lse = static_cast<double>(m) + std::log(sum);
      for (std::size_t j = 0; j < outs; ++j) {
        const double t = teacher[b * outs + j];
        total -= t * (static_cast<double>(zb[j]) - lse);
        dlogits_[b * outs + j] =
            static_cast<float>((std::exp(static_cast<double>(zb[j]) - lse) - t) / static_cast<double>(batch));
      }
    }
    backward_train(g, x, batch, grad);
    return total / static_cast<double>(batch);
  }

  /// Source-task logits (batch × outputs, fp32) of sub-network `g` with the
  /// shared head, on the training path (strided sub-blocks, no copies).
  void logits(const genome& g, const float* x, std::size_t batch, float* out) {
    check_genome(g);
    forward_train(g, x, batch);
    std::copy(acts_[g.depth() + 1].begin(), acts_[g.depth() + 1].begin() + static_cast<std::ptrdiff_t>(batch * space_.outputs),
              out);
  }

  /// Trains the supernet on `data` with the sandwich rule (see the file
  /// comment): per minibatch the summed gradients of the largest, the
  /// smallest and `opt.random_subnets` sampled sub-networks, one Adam step.
  /// With `opt.inplace_distillation` the sub-networks other than the largest
  /// learn from the largest's softmax instead of the labels.
  /// @return the mean loss of the largest sub-network in each epoch
  std::vector<double> train(const labelled_data& data, const supernet_options& opt) {
    TINYLARGE_REQUIRE(data.features == space_.inputs, errc::shape_mismatch,
                      "nas::mlp_supernet::train: the data's feature count differs from the space's inputs");
    TINYLARGE_REQUIRE(opt.batch_size > 0, errc::invalid_argument, "nas::mlp_supernet::train: batch_size must be > 0");
    tinylarge::rng g(opt.seed);
    nn::adam adam{.learning_rate = opt.learning_rate};
    nn::adam::state<float> state(adam, params_.size());
    std::vector<float> grad(params_.size());
    std::vector<std::size_t> order(data.count);
    for (std::size_t i = 0; i < data.count; ++i) order[i] = i;
    std::vector<float> bx(opt.batch_size * space_.inputs);
    std::vector<std::uint8_t> by(opt.batch_size);
    std::vector<float> teacher;
    const genome big = space_.largest(), small = space_.smallest();
    // Training ignores sparsities and cuts: sample sub-networks of one sparsity and no cut, so the supernet
    // (and its random stream) is the same whichever compression levels and cut points the space searches.
    mlp_space arch = space_;
    arch.sparsities = {space_.sparsities.front()};
    arch.split = false;
    std::vector<double> history;
    float lr = opt.learning_rate;
    for (std::size_t e = 0; e < opt.epochs; ++e) {
      for (std::size_t i = data.count; i > 1; --i) std::swap(order[i - 1], order[g.uniform_int(static_cast<std::uint32_t>(i))]);
      double loss_sum = 0;
      std::size_t batches = 0;
      for (std::size_t s = 0; s < data.count; s += opt.batch_size) {
        const std::size_t b = std::min(opt.batch_size, data.count - s);
        for (std::size_t r = 0; r < b; ++r) {
          std::copy(data.x + order[s + r] * space_.inputs, data.x + (order[s + r] + 1) * space_.inputs,
                    bx.data() + r * space_.inputs);
          by[r] = data.y[order[s + r]];
        }
        std::fill(grad.begin(), grad.end(), 0.0f);
        loss_sum += accumulate_gradient(big, bx.data(), by.data(), b, grad);
        if (opt.inplace_distillation) {
          // The largest's softmax, computed before the step (its logits are in acts_ until the next forward).
          teacher.resize(b * space_.outputs);
          const float* z = acts_[big.depth() + 1].data();
          for (std::size_t r = 0; r < b; ++r) {
            const float* zr = z + r * space_.outputs;
            float m = zr[0];
            for (std::size_t j = 1; j < space_.outputs; ++j) m = zr[j] > m ? zr[j] : m;
            double sum = 0;
            for (std::size_t j = 0; j < space_.outputs; ++j) sum += std::exp(static_cast<double>(zr[j] - m));
            for (std::size_t j = 0; j < space_.outputs; ++j)
              teacher[r * space_.outputs + j] = static_cast<float>(std::exp(static_cast<double>(zr[j] - m)) / sum);
          }
        }
        auto learn = [&](const genome& sub) {
          if (opt.inplace_distillation) accumulate_distillation_gradient(sub, bx.data(), teacher.data(), b, grad);
          else accumulate_gradient(sub, bx.data(), by.data(), b, grad);
        };
        learn(small);
        for (std::size_t k = 0; k < opt.random_subnets; ++k) learn(arch.sample(g));
        state.step(params_.data(), grad.data());
        ++batches;
      }
      history.push_back(batches ? loss_sum / static_cast<double>(batches) : 0.0);
      lr *= opt.lr_decay;
      state.set_learning_rate(lr);
    }
    return history;
  }

  /// The weights (out × in, row-major, compact) and biases of hidden layer l
  /// of sub-network `g`, copied out of the shared matrices, the weights
  /// pruned by magnitude to the layer's sparsity in `g` (see the file comment).
  void hidden_layer(const genome& g, std::size_t l, std::vector<float>& w, std::vector<float>& b) const {
    gather_dense(g, l, w, b);
    detail::prune_weights(w, g.sparsity(l));
  }

  /// The weights (c_out × K·K·c_in, row-major in `nn::conv2d`'s [o][ky][kx][c]
  /// order, compact) and biases of conv layer j of sub-network `g`, copied
  /// out of the shared kernels (see the file comment).
  void stem_layer(const genome& g, std::size_t j, std::vector<float>& w, std::vector<float>& b) const {
    const detail::conv_shape c = detail::conv_shape_of(space_, g, j);
    w.resize(c.weights());
    b.resize(c.c_out);
    for (std::size_t o = 0; o < c.c_out; ++o) {
      for (std::size_t ky = 0; ky < c.k; ++ky)
        for (std::size_t kx = 0; kx < c.k; ++kx)
          for (std::size_t ci = 0; ci < c.c_in; ++ci)
            w[o * c.patch() + (ky * c.k + kx) * c.c_in + ci] = params_[conv_weight_index(g, j, o, ky, kx, ci)];
      b[o] = params_[conv_bias_index(j, o)];
    }
  }

  /// The output of the first `layers` (≤ the stem's) conv layers (conv, relu,
  /// pool) of sub-network `g` for `n` rows of `x` (rows × ⌊H/2^layers⌋ ·
  /// ⌊W/2^layers⌋ · channels, NHWC), int8 conv layers simulated as the dense
  /// ones are in `body_features` (input per tensor, weights per output
  /// channel, bias at s_x·s_w, relu output per tensor; pooling keeps the
  /// grid); `layers` = 0 gives the input rows.
  [[nodiscard]] std::vector<float> stem_features(const genome& g, std::size_t layers, const float* x, std::size_t n,
                                                 std::size_t calibration_rows) const {
    check_genome(g);
    TINYLARGE_REQUIRE(layers <= g.convs.size(), errc::invalid_argument,
                      "nas::mlp_supernet::stem_features: more conv layers than the genome's stem");
    TINYLARGE_REQUIRE(calibration_rows > 0 && calibration_rows <= n, errc::invalid_argument,
                      "nas::mlp_supernet::stem_features: need 0 < calibration_rows <= rows");
    std::vector<float> a(x, x + n * space_.inputs), w, b, cols, z;
    for (std::size_t j = 0; j < layers; ++j) {
      const detail::conv_shape c = detail::conv_shape_of(space_, g, j);
      stem_layer(g, j, w, b);
      const bool int8 = g.convs[j].precision == layer_precision::int8;
      if (int8) {
        const quant_params px = detail::activation_params(a.data(), calibration_rows * c.in_elems());
        detail::fake_quantize_all(a.data(), a.size(), px);
        detail::fake_quantize_dense(w.data(), b.data(), c.c_out, c.patch(), px.scale);
      }
      z.resize(n * c.out_elems());
      detail::conv_forward(c, a.data(), n, w.data(), b.data(), cols, z.data());
      detail::relu_inplace(z.data(), z.size());
      if (int8) detail::fake_quantize_all(z.data(), z.size(), detail::activation_params(z.data(), calibration_rows * c.out_elems()));
      a.resize(n * c.pooled_elems());
      detail::max_pool2(c, z.data(), n, a.data(), nullptr);
    }
    return a;
  }

  /// Prunes the hidden layers of sub-network `g` in the shared weights, in
  /// place: in each hidden layer l of sparsity s > 0, the magnitude mask
  /// (`compress::magnitude_mask`) of its compact w_l × w_{l−1} block zeroes
  /// the `compress::prune_count` smallest weights. Returns the masks (one per
  /// hidden layer, empty for a dense one; 1 = kept) for `apply_masks`. For
  /// fine-tuning a pruned sub-network (prune, then retrain with the mask).
  std::vector<std::vector<std::uint8_t>> prune_hidden(const genome& g) {
    check_genome(g);
    std::vector<std::vector<std::uint8_t>> masks(g.depth());
    std::vector<float> w, b;
    for (std::size_t l = 0; l < g.depth(); ++l) {
      if (g.sparsity(l) == 0) continue;
      const std::size_t out = g.widths[l], in = dense_in(g, l);
      gather_dense(g, l, w, b);
      masks[l].resize(out * in);
      compress::magnitude_mask(std::span<const float>(w), g.sparsity(l) / 100.0, masks[l]);
    }
    apply_masks(g, masks);
    return masks;
  }

  /// Zeroes, in the shared weights of each hidden layer of `g`, the entries
  /// whose mask (from `prune_hidden`) is 0; call after every optimizer step
  /// of a fine-tuning so that pruned weights stay zero.
  void apply_masks(const genome& g, const std::vector<std::vector<std::uint8_t>>& masks) {
    TINYLARGE_REQUIRE(masks.size() == g.depth(), errc::shape_mismatch,
                      "nas::mlp_supernet::apply_masks: one mask per hidden layer of the genome");
    for (std::size_t l = 0; l < g.depth(); ++l) {
      if (masks[l].empty()) continue;
      const std::size_t out = g.widths[l], in = dense_in(g, l);
      TINYLARGE_REQUIRE(masks[l].size() == out * in, errc::shape_mismatch,
                        "nas::mlp_supernet::apply_masks: a mask must have one entry per weight of its layer");
      for (std::size_t o = 0; o < out; ++o)
        for (std::size_t i = 0; i < in; ++i)
          if (masks[l][o * in + i] == 0) params_[dense_weight_index(g, l, o, i)] = 0.0f;
    }
  }

  /// The head input of sub-network `g` for `rows` rows of `x`: the output of
  /// its last hidden layer (rows × w_d), with the int8 layers of `g`
  /// simulated (see the file comment). Activation ranges are calibrated on
  /// the first `calibration_rows` rows; when the head is int8 the returned
  /// features are quantized as its input (calibrated the same way).
  [[nodiscard]] std::vector<float> body_features(const genome& g, const float* x, std::size_t n,
                                                 std::size_t calibration_rows) const {
    std::vector<float> a = hidden_features(g, g.depth(), x, n, calibration_rows);
    const std::size_t in = g.widths.back();
    if (g.precisions.back() == layer_precision::int8)
      detail::fake_quantize_all(a.data(), a.size(), detail::activation_params(a.data(), calibration_rows * in));
    return a;
  }

  /// The output of the conv stem and the first `layers` (≤ depth) hidden
  /// layers of sub-network `g` for `n` rows of `x` (rows × w_layers),
  /// simulated as in `body_features` but without the head's input
  /// quantization; `layers` = 0 gives the stem's output (the input rows
  /// without a stem).
  [[nodiscard]] std::vector<float> hidden_features(const genome& g, std::size_t layers, const float* x, std::size_t n,
                                                   std::size_t calibration_rows) const {
    check_genome(g);
    TINYLARGE_REQUIRE(layers <= g.depth(), errc::invalid_argument,
                      "nas::mlp_supernet::hidden_features: more layers than the genome's depth");
    TINYLARGE_REQUIRE(calibration_rows > 0 && calibration_rows <= n, errc::invalid_argument,
                      "nas::mlp_supernet::body_features: need 0 < calibration_rows <= rows");
    std::vector<float> a = g.convs.empty() ? std::vector<float>(x, x + n * space_.inputs)
                                           : stem_features(g, g.convs.size(), x, n, calibration_rows);
    std::vector<float> out, w, b;
    std::size_t in = space_.dense_inputs(g);
    for (std::size_t l = 0; l < layers; ++l) {
      const std::size_t width = g.widths[l];
      hidden_layer(g, l, w, b);
      if (g.precisions[l] == layer_precision::int8) {
        const quant_params px = detail::activation_params(a.data(), calibration_rows * in);
        detail::fake_quantize_all(a.data(), a.size(), px);
        detail::fake_quantize_dense(w.data(), b.data(), width, in, px.scale);
      }
      out.resize(n * width);
      kernels::dense_f32(n, width, in, a.data(), w.data(), b.data(), out.data());
      detail::relu_inplace(out.data(), out.size());
      if (g.precisions[l] == layer_precision::int8)
        detail::fake_quantize_all(out.data(), out.size(), detail::activation_params(out.data(), calibration_rows * width));
      a.swap(out);
      in = width;
    }
    return a;
  }

 private:
  void check_genome(const genome& g) const {
    TINYLARGE_REQUIRE(space_.contains(g), errc::invalid_argument, "nas::mlp_supernet: the genome is not in the space");
  }
  std::size_t dense_in(const genome& g, std::size_t l) const noexcept { return l == 0 ? space_.dense_inputs(g) : g.widths[l - 1]; }
  /// Compact copy (out × in, biases) of hidden dense layer l of `g`, unpruned.
  void gather_dense(const genome& g, std::size_t l, std::vector<float>& w, std::vector<float>& b) const {
    const std::size_t out = g.widths[l], in = dense_in(g, l);
    w.resize(out * in);
    b.resize(out);
    for (std::size_t o = 0; o < out; ++o) {
      for (std::size_t i = 0; i < in; ++i) w[o * in + i] = params_[dense_weight_index(g, l, o, i)];
      b[o] = params_[dense_bias_index(g, l, o)];
    }
  }
  /// Backward pass of sub-network `g` from `dlogits_` (after `forward_train` on the same rows):
  /// adds ∂L/∂θ to `grad`.
  void backward_train(const genome& g, const float* x, std::size_t batch, std::span<float> grad) {
    const std::size_t d = g.depth();
    const std::size_t outs = space_.outputs;
    // Head (supernet layer max_depth) reads the first w_d columns.
    const std::size_t h = space_.max_depth;
    const float* hin = acts_[d].data();
    const std::size_t wd = g.widths[d - 1];
    float* gw = grad.data() + offset_[h];
    kernels::gemm_f32(kernels::transpose::yes, kernels::transpose::no, outs, wd, batch, 1.0f, dlogits_.data(), outs, hin, wd,
                      1.0f, gw, cols(h));
    detail::column_sums(dlogits_.data(), batch, outs, gw + rows(h) * cols(h));
    // dH_d = dZ · W_h[:, 0:w_d]
    delta_.resize(batch * wd);
    kernels::gemm_f32(kernels::transpose::no, kernels::transpose::no, batch, wd, outs, 1.0f, dlogits_.data(), outs,
                      params_.data() + offset_[h], cols(h), 0.0f, delta_.data(), wd);
    for (std::size_t l = d; l-- > 0;) {
      const std::size_t out = g.widths[l];
      const std::size_t in = l == 0 ? space_.inputs : g.widths[l - 1];
      const float* a_out = acts_[l + 1].data();
      for (std::size_t i = 0; i < batch * out; ++i) delta_[i] = a_out[i] > 0.0f ? delta_[i] : 0.0f;  // relu'
      if (l == 0 && !g.convs.empty()) {
        backward_stem(g, batch, grad);
        break;
      }
      const float* a_in = l == 0 ? x : acts_[l].data();
      float* gwl = grad.data() + offset_[l];
      kernels::gemm_f32(kernels::transpose::yes, kernels::transpose::no, out, in, batch, 1.0f, delta_.data(), out, a_in, in,
                        1.0f, gwl, cols(l));
      detail::column_sums(delta_.data(), batch, out, gwl + rows(l) * cols(l));
      if (l == 0) break;
      delta_prev_.resize(batch * in);
      kernels::gemm_f32(kernels::transpose::no, kernels::transpose::no, batch, in, out, 1.0f, delta_.data(), out,
                        params_.data() + offset_[l], cols(l), 0.0f, delta_prev_.data(), in);
      delta_.swap(delta_prev_);
    }
  }
  void forward_train(const genome& g, const float* x, std::size_t batch) {
    const std::size_t d = g.depth();
    acts_.resize(d + 2);
    const float* in_ptr = x;
    std::size_t in = space_.inputs;
    const std::size_t nc = g.convs.size();
    if (nc > 0) {  // the conv stem on compact copies of its shared kernels
      stem_.resize(nc);
      const float* a = x;
      for (std::size_t j = 0; j < nc; ++j) {
        const detail::conv_shape c = detail::conv_shape_of(space_, g, j);
        stem_scratch& t = stem_[j];
        stem_layer(g, j, t.w, t.b);
        t.z.resize(batch * c.out_elems());
        detail::conv_forward(c, a, batch, t.w.data(), t.b.data(), t.cols, t.z.data());
        detail::relu_inplace(t.z.data(), t.z.size());
        t.pooled.resize(batch * c.pooled_elems());
        t.argmax.resize(t.pooled.size());
        detail::max_pool2(c, t.z.data(), batch, t.pooled.data(), t.argmax.data());
        a = t.pooled.data();
      }
      in_ptr = a;
      in = space_.dense_inputs(g);
      gather_dense(g, 0, w0_, b0_);
    }
    for (std::size_t l = 0; l < d; ++l) {
      const std::size_t out = g.widths[l];
      acts_[l + 1].resize(batch * out);
      const bool compact = l == 0 && nc > 0;
      const float* w = compact ? w0_.data() : params_.data() + offset_[l];
      kernels::gemm_f32(kernels::transpose::no, kernels::transpose::yes, batch, out, in, 1.0f, in_ptr, in, w,
                        compact ? in : cols(l), 0.0f, acts_[l + 1].data(), out);
      detail::add_bias(acts_[l + 1].data(), compact ? b0_.data() : w + rows(l) * cols(l), batch, out);
      detail::relu_inplace(acts_[l + 1].data(), batch * out);
      in_ptr = acts_[l + 1].data();
      in = out;
    }
    const std::size_t h = space_.max_depth, outs = space_.outputs;
    acts_[d + 1].resize(batch * outs);
    const float* wh = params_.data() + offset_[h];
    kernels::gemm_f32(kernels::transpose::no, kernels::transpose::yes, batch, outs, in, 1.0f, in_ptr, in, wh, cols(h), 0.0f,
                      acts_[d + 1].data(), outs);
    detail::add_bias(acts_[d + 1].data(), wh + rows(h) * cols(h), batch, outs);
  }

  /// Backward through the first dense layer after a stem and the stem itself
  /// (`delta_` holds ∂L/∂z of dense layer 0, after relu'): compact gradients
  /// scattered into `grad` at the shared weights' indices.
  void backward_stem(const genome& g, std::size_t batch, std::span<float> grad) {
    const std::size_t nc = g.convs.size(), out = g.widths[0], in = space_.dense_inputs(g);
    const float* a_in = stem_[nc - 1].pooled.data();
    gw_.resize(out * in);
    kernels::gemm_f32(kernels::transpose::yes, kernels::transpose::no, out, in, batch, 1.0f, delta_.data(), out, a_in, in, 0.0f,
                      gw_.data(), in);
    for (std::size_t o = 0; o < out; ++o)
      for (std::size_t i = 0; i < in; ++i) grad[dense_weight_index(g, 0, o, i)] += gw_[o * in + i];
    gb_.assign(out, 0.0f);
    detail::column_sums(delta_.data(), batch, out, gb_.data());
    for (std::size_t o = 0; o < out; ++o) grad[dense_bias_index(g, 0, o)] += gb_[o];
    // ∂L/∂(stem output) = δ · W₀
    delta_prev_.resize(batch * in);
    kernels::gemm_f32(kernels::transpose::no, kernels::transpose::no, batch, in, out, 1.0f, delta_.data(), out, w0_.data(), in,
                      0.0f, delta_prev_.data(), in);
    for (std::size_t j = nc; j-- > 0;) {
      const detail::conv_shape c = detail::conv_shape_of(space_, g, j);
      stem_scratch& t = stem_[j];
      // Max pool: route each output gradient to its window's maximum; relu'.
      dz_.assign(batch * c.out_elems(), 0.0f);
      for (std::size_t i = 0; i < t.pooled.size(); ++i) dz_[t.argmax[i]] += delta_prev_[i];
      for (std::size_t i = 0; i < dz_.size(); ++i) dz_[i] = t.z[i] > 0.0f ? dz_[i] : 0.0f;
      const std::size_t rows_n = batch * c.h * c.w;
      gw_.resize(c.weights());
      kernels::gemm_f32(kernels::transpose::yes, kernels::transpose::no, c.c_out, c.patch(), rows_n, 1.0f, dz_.data(), c.c_out,
                        t.cols.data(), c.patch(), 0.0f, gw_.data(), c.patch());
      gb_.assign(c.c_out, 0.0f);
      detail::column_sums(dz_.data(), rows_n, c.c_out, gb_.data());
      for (std::size_t o = 0; o < c.c_out; ++o) {
        for (std::size_t ky = 0; ky < c.k; ++ky)
          for (std::size_t kx = 0; kx < c.k; ++kx)
            for (std::size_t ci = 0; ci < c.c_in; ++ci)
              grad[conv_weight_index(g, j, o, ky, kx, ci)] += gw_[o * c.patch() + (ky * c.k + kx) * c.c_in + ci];
        grad[conv_bias_index(j, o)] += gb_[o];
      }
      if (j == 0) break;
      dcols_.resize(rows_n * c.patch());
      kernels::gemm_f32(kernels::transpose::no, kernels::transpose::no, rows_n, c.patch(), c.c_out, 1.0f, dz_.data(), c.c_out,
                        t.w.data(), c.patch(), 0.0f, dcols_.data(), c.patch());
      delta_prev_.resize(batch * c.in_elems());
      nn::detail::col2im(detail::geometry_of(c), dcols_.data(), delta_prev_.data(), batch);
    }
  }

  /// Scratch of one conv layer of the training path: its compact weights, im2col rows, relu output, pooled output.
  struct stem_scratch {
    std::vector<float> w, b, cols, z, pooled;
    std::vector<std::size_t> argmax;
  };

  mlp_space space_;
  std::vector<std::size_t> offset_;
  std::vector<float> params_;
  // Scratch of the training path (kept between calls).
  std::vector<std::vector<float>> acts_;
  std::vector<float> dlogits_, delta_, delta_prev_;
  std::vector<stem_scratch> stem_;
  std::vector<float> w0_, b0_, gw_, gb_, dz_, dcols_;
  // Layout of the conv stem's shared parameters (after the MLP's).
  std::vector<std::size_t> conv_offset_, stem_dense_offset_;
};

}  // namespace tinylarge::nas
