/// @file nn/network.hpp
/// @brief `network<Model, Storage>`: the fp32 parameters of a `sequential`
///        model, with batched forward and backward passes (host profile).
///
/// @code
///   using model = tl::sequential<tl::dense<784, 300>, tl::relu, tl::dense<300, 10>>;
///   tl::nn::network<model> net;            // heap_storage: parameters allocated once
///   net.initialize<tl::nn::he_normal>(42);  // seeded: same seed, same bits
///   const float* logits = net.forward(x, batch, /*training=*/true);
///   net.zero_gradients();
///   net.backward(dlogits);                  // fills net.gradients()
/// @endcode
///
/// Parameters are one flat array (`Model::param_offset<I>` locates layer I:
/// its weights, then its biases), so that optimizers, checkpoints, federated
/// averaging and weight export see a single vector. Activations of the last
/// batch are kept for the backward pass and resized only when the batch size
/// grows.
///
/// Quantization-aware training (Jacob et al., CVPR 2018, §3): with
/// `enable_fake_quant`, the forward pass uses weights fake-quantized to
/// symmetric int8 (per channel or per tensor) and fake-quantizes every
/// activation that the int8 network materialises, tracking its range with an
/// exponential moving average; the backward pass is the straight-through
/// estimator (Bengio et al. 2013: gradients flow as if quantization were the
/// identity) and updates the fp32 "shadow" weights.
/// `quantize.hpp` turns the result into an int8 `quantized_network`.
///
/// For serving one sample at a time, `inference_network<Model>` (below) is the
/// fp32 deployment form: a snapshot of the parameters with each dense layer
/// pre-packed for a batch-1 GEMV (docs/precision.md, "Batch-1 inference").
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "../core/error.hpp"
#include "../core/rng.hpp"
#include "../precision/int8.hpp"
#include "init.hpp"
#include "layers.hpp"
#include "sequential.hpp"
#include "storage.hpp"

namespace tinylarge::nn {

/// Observed real range [lo, hi] of one activation tensor.
struct tensor_range {
  float lo = 0.0f;
  float hi = 0.0f;
  bool seen = false;
};

namespace detail {
/// Per-sample offsets of the Model::size + 1 activation tensors (input first).
template <class Model>
constexpr auto tensor_offsets() noexcept {
  std::array<std::size_t, Model::size + 2> off{};
  off[0] = 0;
  off[1] = Model::input_size;
  Model::for_each_layer([&]<std::size_t I>() {
    off[I + 2] = off[I + 1] + Model::template layer<I>::out_shape::size;
  });
  return off;
}
template <class Model>
constexpr auto saved_offsets() noexcept {
  std::array<std::size_t, Model::size + 1> off{};
  Model::for_each_layer([&]<std::size_t I>() {
    off[I + 1] = off[I] + Model::template layer<I>::saved_per_sample;
  });
  return off;
}

/// How the int8 network represents tensor t (0 = input, I+1 = output of layer I).
enum class tensor_quant : unsigned char {
  observed,      ///< own scale and zero point from an observed range
  same_as_input, ///< keeps the grid of its input (max pool, flatten, dropout, avg pool, standalone relu)
  not_materialised,  ///< the pre-activation of a fused dense/conv + relu pair
  fixed_sigmoid,     ///< scale 1/256, zero point −128 (TFLite's fixed output of logistic/softmax)
  fixed_tanh,        ///< scale 1/128, zero point 0
};

template <class Model, std::size_t T>
constexpr tensor_quant tensor_quant_of() noexcept {
  if constexpr (T == 0) {
    return tensor_quant::observed;
  } else {
    constexpr std::size_t I = T - 1;
    constexpr layer_kind k = Model::template layer<I>::kind;
    if constexpr (I + 1 < Model::size) {
      if constexpr (Model::template fused_into_previous<I + 1>) return tensor_quant::not_materialised;
    }
    if constexpr (Model::template fused_into_previous<I>) return tensor_quant::observed;
    switch (k) {
      case layer_kind::dense:
      case layer_kind::conv2d:
      case layer_kind::depthwise_conv2d: return tensor_quant::observed;
      case layer_kind::sigmoid:
      case layer_kind::softmax: return tensor_quant::fixed_sigmoid;
      case layer_kind::tanh: return tensor_quant::fixed_tanh;
      default: return tensor_quant::same_as_input;
    }
  }
}
/// tensor_quant_of for every tensor, as a run-time table.
template <class Model>
constexpr std::array<tensor_quant, Model::size + 1> tensor_quant_table() noexcept {
  return []<std::size_t... T>(std::index_sequence<T...>) {
    return std::array<tensor_quant, Model::size + 1>{tensor_quant_of<Model, T>()...};
  }(std::make_index_sequence<Model::size + 1>{});
}

/// Elements per sample of every tensor (input first).
template <class Model>
constexpr std::array<std::size_t, Model::size + 1> tensor_sizes() noexcept {
  std::array<std::size_t, Model::size + 1> s{};
  s[0] = Model::input_size;
  Model::for_each_layer([&]<std::size_t I>() { s[I + 1] = Model::template layer<I>::out_shape::size; });
  return s;
}
}  // namespace detail

/// The fp32, trainable instance of a `sequential` model.
/// @tparam Model a `sequential<...>` type
/// @tparam Storage where the parameter and gradient arrays live
///         (`heap_storage` by default; `static_storage` for no heap)
template <sequential_model Model, storage_policy Storage = heap_storage>
class network {
 public:
  using model = Model;
  using storage = Storage;
  static constexpr std::size_t param_count = Model::param_count;
  static constexpr std::size_t tensor_count = Model::size + 1;  ///< input + one per layer

  network() = default;
  /// Initialise with `he_normal` weights from `seed`.
  explicit network(std::uint64_t seed) { initialize(seed); }

  /// Draw all weights from `Init` with a generator seeded by `seed`; biases
  /// become 0. Also reseeds the generator that dropout uses.
  /// @tparam Init an `initializer` (`he_normal`, `glorot_uniform`, …)
  template <initializer Init = he_normal>
  void initialize(std::uint64_t seed) {
    tinylarge::rng g(seed);
    Model::for_each_layer([&]<std::size_t I>() {
      using L = typename Model::template layer<I>;
      float* p = params_.data() + Model::template param_offset<I>;
      for (std::size_t i = 0; i < L::weight_count; ++i) p[i] = Init::sample(g, L::fan_in, L::fan_out);
      for (std::size_t i = 0; i < L::bias_count; ++i) p[L::weight_count + i] = 0.0f;
    });
    rng_.seed_with(seed, 0x5eedd509ULL);
  }

  /// All parameters, layer after layer (weights then biases).
  std::span<float, param_count> parameters() noexcept { return std::span<float, param_count>(params_.data(), param_count); }
  std::span<const float, param_count> parameters() const noexcept {
    return std::span<const float, param_count>(params_.data(), param_count);
  }
  /// Gradients accumulated by `backward`, same layout as `parameters()`.
  std::span<float, param_count> gradients() noexcept { return std::span<float, param_count>(grads_.data(), param_count); }
  std::span<const float, param_count> gradients() const noexcept {
    return std::span<const float, param_count>(grads_.data(), param_count);
  }
  /// Layer I's weights (row-major, one row per output channel).
  template <std::size_t I>
  std::span<float> weights() noexcept {
    return {params_.data() + Model::template param_offset<I>, Model::template layer<I>::weight_count};
  }
  template <std::size_t I>
  std::span<const float> weights() const noexcept {
    return {params_.data() + Model::template param_offset<I>, Model::template layer<I>::weight_count};
  }
  /// Layer I's biases.
  template <std::size_t I>
  std::span<float> biases() noexcept {
    using L = typename Model::template layer<I>;
    return {params_.data() + Model::template param_offset<I> + L::weight_count, L::bias_count};
  }
  template <std::size_t I>
  std::span<const float> biases() const noexcept {
    using L = typename Model::template layer<I>;
    return {params_.data() + Model::template param_offset<I> + L::weight_count, L::bias_count};
  }

  void zero_gradients() noexcept {
    for (std::size_t i = 0; i < param_count; ++i) grads_[i] = 0.0f;
  }

  /// Forward pass of `batch` samples (row-major, batch × Model::input_size).
  /// With `training`, dropout is active and fake-quant ranges are updated.
  /// @return the output, batch × Model::output_size, valid until the next call
  const float* forward(const float* x, std::size_t batch, bool training = false) {
    TINYLARGE_REQUIRE(batch > 0, errc::invalid_argument, "network::forward: batch must be positive");
    reserve(batch);
    batch_ = batch;
    detail::copy(x, act(0), batch * Model::input_size);
    const float* p = params_.data();
    if (fake_quant_) {
      refresh_fake_quant_weights();
      p = fq_params_.data();
      fake_quantize_tensor<0>(training);
    }
    Model::for_each_layer([&]<std::size_t I>() {
      using L = typename Model::template layer<I>;
      context ctx{workspace_.data(), saved_.data() + saved_off[I] * batch, &rng_, training};
      L::forward(p + Model::template param_offset<I>, act(I), act(I + 1), batch, ctx);
      if (fake_quant_) fake_quantize_tensor<I + 1>(training);
    });
    return act(Model::size);
  }

  /// Backward pass of the last `forward`: `dy` is ∂loss/∂output (batch ×
  /// output_size). Adds ∂loss/∂parameters to `gradients()`. With fake
  /// quantization on, this is the straight-through estimator: the gradient
  /// is computed at the fake-quantized weights and applied to the fp32 ones.
  /// @param dx optional: receives ∂loss/∂input (batch × input_size)
  void backward(const float* dy, float* dx = nullptr) {
    TINYLARGE_REQUIRE(batch_ > 0, errc::invalid_argument, "network::backward called before forward");
    const std::size_t batch = batch_;
    const float* p = fake_quant_ ? fq_params_.data() : params_.data();
    const float* g = dy;
    Model::for_each_layer_reverse([&]<std::size_t I>() {
      using L = typename Model::template layer<I>;
      context ctx{workspace_.data(), saved_.data() + saved_off[I] * batch, &rng_, true};
      float* out = I == 0 ? dx : grad_buf_[I % 2].data();
      L::backward(p + Model::template param_offset<I>, act(I), act(I + 1), g, out, grads_.data() + Model::template param_offset<I>,
                  batch, ctx);
      g = out;
    });
  }

  /// Activation tensor t of the last forward (0 = input, I+1 = output of layer I).
  const float* activation(std::size_t t) const noexcept { return acts_.data() + tensor_off[t] * batch_; }
  std::size_t last_batch() const noexcept { return batch_; }

  // ---- quantization-aware training -----------------------------------------

  /// Turn fake quantization on or off (see the file comment). Ranges start
  /// from the next training forward pass; `ema` is the averaging constant c
  /// of lo ← lo + c·(min − lo). `per_channel` picks the weight granularity the
  /// int8 network will use.
  void enable_fake_quant(bool on, bool per_channel = true, float ema = 0.01f) {
    fake_quant_ = on;
    fq_per_channel_ = per_channel;
    ema_ = ema;
    if (on) fq_params_.assign(param_count, 0.0f);
  }
  bool fake_quant_enabled() const noexcept { return fake_quant_; }
  /// The activation ranges (per tensor) tracked during quantization-aware training.
  const std::array<tensor_range, tensor_count>& tracked_ranges() const noexcept { return ranges_; }
  std::array<tensor_range, tensor_count>& tracked_ranges() noexcept { return ranges_; }

  /// Generator used by dropout (seeded by `initialize`).
  tinylarge::rng& generator() noexcept { return rng_; }

 private:
  static constexpr auto tensor_off = detail::tensor_offsets<Model>();
  static constexpr auto saved_off = detail::saved_offsets<Model>();

  float* act(std::size_t t) noexcept { return acts_.data() + tensor_off[t] * batch_; }

  void reserve(std::size_t batch) {
    if (batch <= capacity_) return;
    acts_.assign(tensor_off[Model::size + 1] * batch, 0.0f);
    saved_.assign(saved_off[Model::size] * batch + 1, 0.0f);
    workspace_.assign(Model::max_workspace_per_sample * batch + 1, 0.0f);
    for (auto& b : grad_buf_) b.assign(Model::max_activation * batch, 0.0f);
    capacity_ = batch;
  }

  void refresh_fake_quant_weights() {
    for (std::size_t i = 0; i < param_count; ++i) fq_params_[i] = params_[i];
    Model::for_each_layer([&]<std::size_t I>() {
      using L = typename Model::template layer<I>;
      if constexpr (has_weights(L::kind)) {
        constexpr std::size_t channels = L::out_channels;
        std::array<float, channels> scales{};
        std::vector<std::int8_t> q(L::weight_count);
        const std::span<const float> w(params_.data() + Model::template param_offset<I>, L::weight_count);
        const std::span<float> out(fq_params_.data() + Model::template param_offset<I>, L::weight_count);
        if (fq_per_channel_) {
          quantize_weights<per_channel>(w, channels, q, scales);
          dequantize_weights(q, channels, scales, out);
        } else {
          quantize_weights<per_tensor>(w, channels, q, std::span<float>(scales.data(), 1));
          dequantize_weights(q, channels, std::span<const float>(scales.data(), 1), out);
        }
      }
    });
  }

  template <std::size_t T>
  void fake_quantize_tensor(bool training) {
    constexpr detail::tensor_quant how = detail::tensor_quant_of<Model, T>();
    float* x = act(T);
    const std::size_t n = batch_ * (tensor_off[T + 1] - tensor_off[T]);
    quant_params qp{};
    if constexpr (how == detail::tensor_quant::not_materialised) {
      return;
    } else if constexpr (how == detail::tensor_quant::fixed_sigmoid) {
      qp = {1.0f / 256.0f, -128};
    } else if constexpr (how == detail::tensor_quant::fixed_tanh) {
      qp = {1.0f / 128.0f, 0};
    } else if constexpr (how == detail::tensor_quant::same_as_input) {
      // The int8 layer keeps its input's grid: max pool / flatten / dropout /
      // relu already produce values on it; avg pool rounds onto it.
      if constexpr (Model::template layer<T - 1>::kind != layer_kind::avg_pool2d) return;
      qp = current_params(source_tensor<T>());
    } else {
      tensor_range& r = ranges_[T];
      if (training) {
        minmax_observer batch_obs;
        batch_obs.observe(std::span<const float>(x, n));
        if (!batch_obs.empty()) {
          if (!r.seen) {
            r = {batch_obs.lo, batch_obs.hi, true};
          } else {
            r.lo += ema_ * (batch_obs.lo - r.lo);
            r.hi += ema_ * (batch_obs.hi - r.hi);
          }
        }
      }
      if (!r.seen) return;
      qp = current_params(T);
    }
    for (std::size_t i = 0; i < n; ++i) x[i] = fake_quantize(x[i], qp);
  }

  /// The tensor whose grid tensor T shares (walks back through same-grid layers).
  template <std::size_t T>
  static constexpr std::size_t source_tensor() noexcept {
    if constexpr (T == 0) {
      return 0;
    } else if constexpr (detail::tensor_quant_of<Model, T>() == detail::tensor_quant::same_as_input) {
      return source_tensor<T - 1>();
    } else {
      return T;
    }
  }

  quant_params current_params(std::size_t t) const {
    const tensor_range& r = ranges_[t];
    return r.seen ? choose_quant_params<asymmetric>(r.lo, r.hi) : quant_params{};
  }

  typename Storage::template buffer<float, param_count> params_{};
  typename Storage::template buffer<float, param_count> grads_{};
  std::vector<float> acts_, saved_, workspace_, fq_params_;
  std::array<std::vector<float>, 2> grad_buf_;
  std::array<tensor_range, tensor_count> ranges_{};
  std::size_t capacity_ = 0, batch_ = 0;
  tinylarge::rng rng_{};
  bool fake_quant_ = false, fq_per_channel_ = true;
  float ema_ = 0.01f;
};

/// The fp32 batch-1 inference form of a trained `network`: a snapshot of its
/// parameters with every dense layer re-laid-out for the back end's packed
/// GEMV (`kernels::pack_dense_f32`), the bias as the accumulators' initial
/// value and a following relu / relu6 fused into the store; two ping-pong
/// activation buffers and the conv scratch are sized from the model's
/// constexprs at construction, so `forward` never allocates. Zero inputs of a
/// dense layer are skipped (blank pixels, relu zeros). What `network::forward`
/// is to training, this is to serving one request at a time; the same idea as
/// `quantized_network`, in fp32.
///
/// A snapshot: after the network trains further, call `load(net)` again.
/// Outputs equal `network::forward(x, 1)` up to the summation order of fp32
/// (the tests check the bound of kernels/dense.hpp), for finite weights.
/// @tparam Model a `sequential<...>` type
/// @tparam Storage where parameters and buffers live (`heap_storage` default)
/// @tparam Backend kernel back end (`kernels::default_backend`); one without a
///         packed layout (scalar, NEON) runs `kernels::dense_f32` on the
///         snapshot instead
template <sequential_model Model, storage_policy Storage = heap_storage, class Backend = kernels::default_backend>
class inference_network {
 public:
  using model = Model;
  static constexpr std::size_t param_count = Model::param_count;

  inference_network() = default;
  /// Snapshot and pack the parameters of `net`.
  template <class S>
  explicit inference_network(const network<Model, S>& net) {
    load(net);
  }

  // Copies re-pack: the packed data sits at an alignment offset that depends
  // on the buffer's address.
  inference_network(const inference_network& o) : params_(o.params_) { pack(); }
  inference_network& operator=(const inference_network& o) {
    if (this != &o) {
      params_ = o.params_;
      pack();
    }
    return *this;
  }

  /// Snapshot and pack the parameters of `net` (call again after it changed).
  template <class S>
  void load(const network<Model, S>& net) noexcept {
    const auto src = net.parameters();
    for (std::size_t i = 0; i < param_count; ++i) params_[i] = src[i];
    pack();
  }

  /// Run one sample (Model::input_size floats).
  /// @return Model::output_size floats, valid until the next call
  const float* forward(const float* x) noexcept {
    const float* cur = x;
    std::size_t slot = 0;
    Model::for_each_layer([&]<std::size_t I>() {
      using L = typename Model::template layer<I>;
      if constexpr (fused_into_packed<I>()) {
        // applied by the packed dense layer before it
      } else {
        float* out = buffer_[slot].data();
        if constexpr (is_packed(I)) {
          // Unqualified (with a using-declaration): clang rejects a qualified
          // call whose only visible overload is deleted (the scalar one) even
          // in a discarded branch; this one is resolved when instantiated.
          using kernels::dense_f32_packed;
          dense_f32_packed(Backend{}, L::out_channels, L::in_shape::size, cur, packed_base() + packed_off[I],
                           fused_after<I>(), out);
        } else {
          context ctx{workspace_.data(), nullptr, nullptr, false};
          L::forward(params_.data() + Model::template param_offset<I>, cur, out, 1, ctx);
        }
        cur = out;
        slot ^= 1;
      }
    });
    return cur;
  }

  /// Argmax of the output (the predicted class).
  std::size_t classify(const float* x) noexcept {
    const float* y = forward(x);
    std::size_t best = 0;
    for (std::size_t i = 1; i < Model::output_size; ++i) best = y[i] > y[best] ? i : best;
    return best;
  }

  /// The parameter snapshot (layout of `network::parameters()`).
  std::span<const float, param_count> parameters() const noexcept {
    return std::span<const float, param_count>(params_.data(), param_count);
  }

 private:
  /// Float offsets of each dense layer's packed form (multiples of 16 floats).
  static constexpr auto packed_off = [] {
    std::array<std::size_t, Model::size + 1> off{};
    Model::for_each_layer([&]<std::size_t I>() {
      using L = typename Model::template layer<I>;
      std::size_t f = 0;
      if constexpr (L::kind == layer_kind::dense)
        f = kernels::dense_f32_packed_floats(Backend{}, L::out_channels, L::in_shape::size);
      off[I + 1] = off[I] + (f + 15) / 16 * 16;
    });
    return off;
  }();
  static constexpr std::size_t packed_floats = packed_off[Model::size];
  static constexpr bool is_packed(std::size_t i) noexcept { return packed_off[i + 1] > packed_off[i]; }
  /// Layer I is a relu / relu6 that the packed dense layer before it applies.
  template <std::size_t I>
  static constexpr bool fused_into_packed() noexcept {
    if constexpr (I == 0) {
      return false;
    } else {
      return Model::template fused_into_previous<I> && is_packed(I - 1);
    }
  }

  void pack() noexcept {
    float* packed = packed_base();
    Model::for_each_layer([&]<std::size_t I>() {
      using L = typename Model::template layer<I>;
      if constexpr (is_packed(I)) {
        const float* p = params_.data() + Model::template param_offset<I>;
        using kernels::pack_dense_f32;  // unqualified: see forward()
        pack_dense_f32(Backend{}, L::out_channels, L::in_shape::size, p, p + L::weight_count, packed + packed_off[I]);
      }
    });
  }

  /// The activation fused into packed dense layer I (the relu / relu6 after it).
  template <std::size_t I>
  static constexpr fused_activation fused_after() noexcept {
    if constexpr (I + 1 < Model::size) {
      if constexpr (Model::template fused_into_previous<I + 1>)
        return Model::template layer<I + 1>::kind == layer_kind::relu ? fused_activation::relu
                                                                      : fused_activation::relu6;
    }
    return fused_activation::none;
  }

  /// 64-byte aligned start of the packed weights (the buffer has 16 floats of slack).
  float* packed_base() noexcept {
    const auto addr = reinterpret_cast<std::uintptr_t>(packed_.data());
    return packed_.data() + ((64 - addr % 64) % 64) / sizeof(float);
  }

  typename Storage::template buffer<float, param_count> params_{};
  typename Storage::template buffer<float, (packed_floats > 0 ? packed_floats + 16 : 0)> packed_{};
  std::array<typename Storage::template buffer<float, Model::max_activation>, 2> buffer_{};
  typename Storage::template buffer<float, Model::max_workspace_per_sample> workspace_{};
};

}  // namespace tinylarge::nn
