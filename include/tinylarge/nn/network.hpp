/// @file nn/network.hpp
/// @brief `network<Model, Storage, Precision>`: the parameters of a
///        `sequential` model (fp32 master weights), with batched forward and
///        backward passes in fp32 or, for `fp16` / `bf16` / a user's float
///        precision and per-layer `with_precision`, mixed precision (host profile).
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
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "../core/error.hpp"
#include "../core/rng.hpp"
#include "../precision/int8.hpp"
#include "lowp.hpp"
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

/// How the int8 network represents tensor t (0 = input, I+1 = output of layer I; `Model`
/// may also be the int8 graph of a model with residual blocks, `int8_graph`).
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
      case layer_kind::depthwise_conv2d:
      case layer_kind::residual: return tensor_quant::observed;  // the add of a residual block (int8 graph)
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

/// The trainable instance of a `sequential` model, in a float precision.
///
/// The parameters are fp32 *master* weights whatever the precision (what
/// optimizers, checkpoints, averaging and export see); `Precision` (and a
/// layer's `with_precision<…, P>`) says in what the weighted layers compute.
/// For `fp32` nothing changes. For another float precision P (`fp16`, `bf16`,
/// your own) this is mixed-precision training as Micikevicius et al. (ICLR
/// 2018) do it: every forward pass rounds a dense / conv layer's weights and
/// its input to `P::storage_type` and runs the GEMM on those operands with
/// fp32 accumulation (`kernels::dense` / `kernels::gemm` for float, half and
/// bfloat16; other storage types are widened to fp32 for the GEMM, which is
/// exact for the products); the backward pass rounds ∂L/∂y to P and runs the
/// dW and dX GEMMs on P operands, accumulating into the fp32 gradients. When
/// `uses_loss_scaling<P>` (fp16), the loss gradient is multiplied by a dynamic
/// scale S before the backward pass and the gradients divided by S after it;
/// a non-finite gradient skips the step (`accept_gradients()` returns false)
/// and halves S, and S doubles after `loss_scale_state::growth_interval`
/// accepted steps. bf16 needs no scaling. Activations between layers stay
/// fp32 (the accumulator type). A layer `with_precision<L, int8<…>>` trains
/// with fake quantization of its weights and of its input (QAT, the
/// straight-through estimator) and deploys in int8 (`mixed_inference_network`).
/// @tparam Model a `sequential<...>` type
/// @tparam Storage where the parameter and gradient arrays live
///         (`heap_storage` by default; `static_storage` for no heap in the
///         parameters); `static_training_storage<B>` keeps the activations
///         and backward scratch of up to B rows in the object as well, so
///         training allocates nothing (the freestanding profile)
/// @tparam Precision a `float_precision` (default `fp32`): the precision of the
///         weighted layers without a `with_precision` of their own
template <sequential_model Model, storage_policy Storage = default_storage, precision_policy Precision = fp32>
class network {
  static_assert(float_precision<Precision>,
                "tinylarge: nn::network<Model, Storage, Precision>: Precision must be a float_precision (fp32, fp16, "
                "bf16 or your own with encode/decode); for an int8 network train in fp32 with enable_fake_quant and "
                "convert (nn/quantize.hpp), or mark single layers with with_precision<Layer, int8_...>");

 public:
  using model = Model;
  using storage = Storage;
  using precision = Precision;
  static constexpr std::size_t param_count = Model::param_count;
  static constexpr std::size_t tensor_count = Model::size + 1;  ///< input + one per layer
  /// The precision layer I computes in.
  template <std::size_t I>
  using layer_precision = layer_precision_t<typename Model::template layer<I>, Precision>;
  /// Layer I is a weighted layer computing in a float precision other than fp32.
  template <std::size_t I>
  static constexpr bool lowp_layer = lowp::is_lowp_layer<typename Model::template layer<I>, Precision>;
  /// Layer I is a weighted layer trained with int8 fake quantization (`with_precision<L, int8<…>>`).
  template <std::size_t I>
  static constexpr bool int8_layer = lowp::is_int8_layer<typename Model::template layer<I>, Precision>;
  /// Some weighted layer does not compute in fp32.
  static constexpr bool mixed = lowp::model_is_mixed<Model, Precision>;
  /// Some layer's precision uses dynamic loss scaling.
  static constexpr bool loss_scaled = lowp::model_uses_loss_scaling<Model, Precision>;
  static constexpr bool has_int8_layers = lowp::model_has_int8_layers<Model, Precision>;
  /// Places where the activations change precision along the chain (fp32 in,
  /// fp32 out; see docs/precision.md, "Per-layer precision").
  static constexpr std::size_t precision_boundaries = lowp::precision_boundaries<Model, Precision>();
  static_assert(lowp::check_layer_precisions<Model, Precision>());
  /// The largest batch of a `forward` with `static_training_storage<B>` (B);
  /// 0: unbounded (the activations grow on the heap to the largest batch seen).
  static constexpr std::size_t max_batch = detail::storage_max_batch<Storage>();
  static_assert(max_batch == 0 || (!mixed && !has_int8_layers),
                "tinylarge: nn::network with static_training_storage: fp32 layers only (fake quantization and "
                "low-precision layers keep host scratch)");
  static_assert(!TINYLARGE_FREESTANDING || max_batch != 0,
                "tinylarge: nn::network in the freestanding profile needs Storage = static_training_storage<MaxBatch> "
                "(the activations of up to MaxBatch rows in the object: no heap)");
  /// Some layer is one of nn/transformer.hpp's, which compute in fp32 only.
  static constexpr bool model_has_fp32_only_layers = [] {
    bool any = false;
    Model::for_each_layer([&]<std::size_t I>() { any = any || fp32_only(Model::template layer<I>::kind); });
    return any;
  }();

  network() = default;
  /// Initialise with `he_normal` weights from `seed`.
  explicit network(std::uint64_t seed) { initialize(seed); }

  /// Draw all weights from `Init` with a generator seeded by `seed`; biases
  /// become 0 (a layer with an `initialize` of its own uses it: layer_norm's
  /// gain becomes 1). Also reseeds the generator that dropout uses.
  /// @tparam Init an `initializer` (`he_normal`, `glorot_uniform`, …)
  template <initializer Init = he_normal>
  void initialize(std::uint64_t seed) {
    tinylarge::rng g(seed);
    Model::for_each_layer([&]<std::size_t I>() {
      detail::initialize_layer<typename Model::template layer<I>, Init>(params_.data() + Model::template param_offset<I>,
                                                                        g);
    });
    rng_.seed_with(seed, 0x5eedd509ULL);
  }

  /// All parameters, layer after layer (weights then biases).
  std::span<float, param_count> parameters() noexcept { return std::span<float, param_count>(params_.data(), param_count); }
  std::span<const float, param_count> parameters() const noexcept {
    return std::span<const float, param_count>(params_.data(), param_count);
  }
  /// Gradients accumulated by `backward`, same layout as `parameters()`.
  /// The gradients (mutable: writing through the span is allowed, so the
  /// next `backward` adds to what is there).
  std::span<float, param_count> gradients() noexcept {
    gradients_zero_ = false;
    return std::span<float, param_count>(grads_.data(), param_count);
  }
  std::span<const float, param_count> gradients() const noexcept {
    return std::span<const float, param_count>(grads_.data(), param_count);
  }
  /// Layer I's weights (row-major, one row per output channel). Not for a
  /// `residual<...>` block, whose inner layers' weights and biases alternate
  /// (locate them with `Model::layer<I>::param_offset<J>`).
  template <std::size_t I>
  std::span<float> weights() noexcept {
    static_assert(Model::template layer<I>::kind != layer_kind::residual,
                  "tinylarge: network::weights<I>: layer I is a residual<...>: use Model::layer<I>::param_offset<J>");
    return {params_.data() + Model::template param_offset<I>, Model::template layer<I>::weight_count};
  }
  template <std::size_t I>
  std::span<const float> weights() const noexcept {
    static_assert(Model::template layer<I>::kind != layer_kind::residual,
                  "tinylarge: network::weights<I>: layer I is a residual<...>: use Model::layer<I>::param_offset<J>");
    return {params_.data() + Model::template param_offset<I>, Model::template layer<I>::weight_count};
  }
  /// Layer I's biases.
  template <std::size_t I>
  std::span<float> biases() noexcept {
    using L = typename Model::template layer<I>;
    static_assert(L::kind != layer_kind::residual,
                  "tinylarge: network::biases<I>: layer I is a residual<...>: use Model::layer<I>::param_offset<J>");
    return {params_.data() + Model::template param_offset<I> + L::weight_count, L::bias_count};
  }
  template <std::size_t I>
  std::span<const float> biases() const noexcept {
    using L = typename Model::template layer<I>;
    static_assert(L::kind != layer_kind::residual,
                  "tinylarge: network::biases<I>: layer I is a residual<...>: use Model::layer<I>::param_offset<J>");
    return {params_.data() + Model::template param_offset<I> + L::weight_count, L::bias_count};
  }

  /// Zeroes the gradients of the trainable parameters (`Model::trainable_ranges`;
  /// a frozen parameter's gradient is never written and stays 0).
  void zero_gradients() noexcept {
    for (const param_range& r : Model::trainable_ranges)
      for (std::size_t i = 0; i < r.count; ++i) grads_[r.offset + i] = 0.0f;
    gradients_zero_ = true;  // the next backward's layers may write instead of add (layer_context)
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
    if constexpr (max_batch == 0)
      if (fake_quant_ || has_int8_layers) refresh_fake_quant_weights();
    if (fake_quant_) {
      p = fq_params_.data();
      fake_quantize_tensor<0>(training);
    }
    converted_ = 0;
    Model::for_each_layer([&]<std::size_t I>() {
      using L = typename Model::template layer<I>;
      context ctx{workspace_.data(), saved_.data() + saved_off[I] * batch, &rng_, training};
      if constexpr (int8_layer<I>) {
        if (!fake_quant_) fake_quantize_input<I>(training);
        L::forward(fq_params_.data() + Model::template param_offset<I>, act(I), act(I + 1), batch, ctx);
      } else if constexpr (lowp_layer<I>) {
        converted_ += lowp::layer_ops<L, layer_precision<I>>::forward(
            params_.data() + Model::template param_offset<I>, act(I), act(I + 1), batch, ctx, std::get<I>(lowp_));
      } else {
        L::forward(p + Model::template param_offset<I>, act(I), act(I + 1), batch, ctx);
      }
      if (fake_quant_) fake_quantize_tensor<I + 1>(training);
    });
    return act(Model::size);
  }

  /// Backward pass of the last `forward`: `dy` is ∂loss/∂output (batch ×
  /// output_size). Adds ∂loss/∂parameters to `gradients()`. With fake
  /// quantization on, this is the straight-through estimator: the gradient
  /// is computed at the fake-quantized weights and applied to the fp32 ones.
  /// With loss scaling (`loss_scaled`), the pass runs on S·dy; if a scaled
  /// gradient is not finite, `gradients()` is left unchanged, `dx` is zeroed
  /// and the next `accept_gradients()` returns false (the step must be skipped).
  /// @param dx optional: receives ∂loss/∂input (batch × input_size)
  void backward(const float* dy, float* dx = nullptr) {
    TINYLARGE_REQUIRE(batch_ > 0, errc::invalid_argument, "network::backward called before forward");
    const std::size_t batch = batch_;
    const float* p = fake_quant_ ? fq_params_.data() : params_.data();
    const float* g = dy;
    float* acc = grads_.data();
    bool acc_zero = gradients_zero_;  // acc holds zeros: layers may overwrite their blocks
    gradients_zero_ = false;
    [[maybe_unused]] float scale = 1.0f;
    if constexpr (loss_scaled) {
      scale = loss_scale_.scale;
      const std::size_t n = batch * Model::output_size;
      scaled_dy_.resize(n);
      for (std::size_t i = 0; i < n; ++i) scaled_dy_[i] = dy[i] * scale;
      g = scaled_dy_.data();
      scaled_grads_.assign(param_count, 0.0f);
      acc = scaled_grads_.data();
      acc_zero = true;
    }
    Model::for_each_layer_reverse([&]<std::size_t I>() {
      using L = typename Model::template layer<I>;
      context ctx{workspace_.data(), saved_.data() + saved_off[I] * batch, &rng_, true, acc_zero};
      float* out = I == 0 ? dx : grad_buf_[I % 2].data();
      float* dp = acc + Model::template param_offset<I>;
      if constexpr (int8_layer<I>) {
        L::backward(fq_params_.data() + Model::template param_offset<I>, act(I), act(I + 1), g, out, dp, batch, ctx);
      } else if constexpr (lowp_layer<I>) {
        lowp::layer_ops<L, layer_precision<I>>::backward(params_.data() + Model::template param_offset<I>, g, out, dp,
                                                         batch, ctx, std::get<I>(lowp_));
      } else {
        L::backward(p + Model::template param_offset<I>, act(I), act(I + 1), g, out, dp, batch, ctx);
      }
      g = out;
    });
    if constexpr (loss_scaled) {
      const std::size_t nx = dx != nullptr ? batch * Model::input_size : 0;
      bool finite = true;
      for (std::size_t i = 0; i < param_count && finite; ++i) finite = std::isfinite(scaled_grads_[i]);
      for (std::size_t i = 0; i < nx && finite; ++i) finite = std::isfinite(dx[i]);
      if (finite) {
        const float inv = 1.0f / scale;  // a power of two: exact
        for (std::size_t i = 0; i < param_count; ++i) grads_[i] += scaled_grads_[i] * inv;
        for (std::size_t i = 0; i < nx; ++i) dx[i] *= inv;
      } else {
        overflow_ = true;
        for (std::size_t i = 0; i < nx; ++i) dx[i] = 0.0f;
      }
    }
  }

  /// Whether `backward_sgd` can run here: every parameter trainable, every
  /// layer in fp32 without loss scaling (fake quantization is checked at run time).
  static constexpr bool fused_sgd_model = !mixed && !loss_scaled && !has_int8_layers && param_count > 0 &&
                                          Model::trainable_count == param_count;

  /// `zero_gradients()`, `backward(dy, dx)` and the plain SGD step
  /// w ← w − η·∇ (no momentum, no weight decay) over `parameters()` in one
  /// pass, with the same bits on the same back end: each `dense` layer's
  /// weight update is the epilogue of its weight-gradient GEMM
  /// (`kernels::sgd_gemm_tn_f32`, after its input gradient, which needs the
  /// old weights), so the weight gradient does not go through memory and
  /// nothing is zeroed first; any other layer gets its gradient block zeroed,
  /// its `backward` and the step on its block. `backward_step` (nn/step.hpp)
  /// takes this path for a plain `nn::sgd` update without gradient hooks.
  /// Afterwards `gradients()` holds unspecified values.
  /// @return false, having done nothing, when this network has no fused step:
  ///         not `fused_sgd_model` (frozen parameters, a layer not in fp32,
  ///         loss scaling) or fake quantization on
  bool backward_sgd(const float* dy, float learning_rate, float* dx = nullptr) {
    if constexpr (!fused_sgd_model) {
      return false;
    } else {
      if (fake_quant_) return false;
      TINYLARGE_REQUIRE(batch_ > 0, errc::invalid_argument, "network::backward_sgd called before forward");
      const std::size_t batch = batch_;
      const float* g = dy;
      const kernels::sgd_params<float> plain{learning_rate, 0.0f, 0.0f, false};
      Model::for_each_layer_reverse([&]<std::size_t I>() {
        using L = typename Model::template layer<I>;
        context ctx{workspace_.data(), saved_.data() + saved_off[I] * batch, &rng_, true, true};
        float* out = I == 0 ? dx : grad_buf_[I % 2].data();
        float* p = params_.data() + Model::template param_offset<I>;
        float* gp = grads_.data() + Model::template param_offset<I>;
        if constexpr (requires { L::backward_sgd(p, act(I), act(I + 1), g, out, gp, learning_rate, batch, ctx); }) {
          L::backward_sgd(p, act(I), act(I + 1), g, out, gp, learning_rate, batch, ctx);
        } else {
          for (std::size_t i = 0; i < L::param_count; ++i) gp[i] = 0.0f;
          L::backward(p, act(I), act(I + 1), g, out, gp, batch, ctx);
          if constexpr (L::param_count > 0)
            kernels::sgd_step(kernels::default_backend{}, L::param_count, plain, p, gp, static_cast<float*>(nullptr));
        }
        g = out;
      });
      gradients_zero_ = false;
      return true;
    }
  }

  // ---- mixed precision -------------------------------------------------------

  /// Call after `backward` and before the optimizer step: true when the step
  /// should be taken. Always true without loss scaling. With it, false after
  /// a backward pass whose scaled gradients overflowed (the scale is halved,
  /// down to 1); otherwise true, and the scale doubles after
  /// `growth_interval` consecutive accepted steps (PyTorch's `GradScaler`
  /// defaults: 2^16, ×2 every 2000, ÷2 on overflow).
  bool accept_gradients() noexcept {
    if constexpr (!loss_scaled) {
      return true;
    } else {
      if (overflow_) {
        overflow_ = false;
        loss_scale_.scale = loss_scale_.scale > 1.0f ? loss_scale_.scale * 0.5f : 1.0f;
        loss_scale_.good_steps = 0;
        ++loss_scale_.skipped;
        return false;
      }
      if (++loss_scale_.good_steps >= loss_scale_.growth_interval) {
        loss_scale_.good_steps = 0;
        if (loss_scale_.scale < loss_scale_.max_scale) loss_scale_.scale *= 2.0f;
      }
      return true;
    }
  }
  /// The dynamic loss scale (meaningful when `loss_scaled`).
  lowp::loss_scale_state& loss_scale() noexcept { return loss_scale_; }
  const lowp::loss_scale_state& loss_scale() const noexcept { return loss_scale_; }
  /// Elements converted to a storage type (activations, im2col rows) by the last forward pass.
  std::size_t converted_elements() const noexcept { return converted_; }

  /// Activation tensor t of the last forward (0 = input, I+1 = output of layer I).
  const float* activation(std::size_t t) const noexcept { return acts_.data() + tensor_off[t] * batch_; }
  /// Layer I's saved area of the last forward pass (batch × `saved_per_sample` values): a
  /// `residual<...>` block keeps its inner activations there, inner output J at batch ×
  /// (Σ out sizes of inner layers before J) (read by `calibrate`).
  const float* saved_area(std::size_t I) const noexcept { return saved_.data() + saved_off[I] * batch_; }
  std::size_t last_batch() const noexcept { return batch_; }

  // ---- quantization-aware training -----------------------------------------

  /// Turn fake quantization on or off (see the file comment). Ranges start
  /// from the next training forward pass; `ema` is the averaging constant c
  /// of lo ← lo + c·(min − lo). `per_channel` picks the weight granularity the
  /// int8 network will use.
  void enable_fake_quant(bool on, bool per_channel = true, float ema = 0.01f)
    requires(!mixed && max_batch == 0)
  {
    static_assert(!model_has_fp32_only_layers,
                  "tinylarge: network::enable_fake_quant: the layers of nn/transformer.hpp have no "
                  "int8 path yet (nn/transformer.hpp computes in fp32 only)");
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
    if constexpr (max_batch != 0) {
      TINYLARGE_REQUIRE(batch <= max_batch, errc::capacity_exceeded,
                        "network::forward: a batch larger than the storage's max_batch (static_training_storage<B>)");
      // the buffers are members, zero-initialised
    } else {
      if (batch <= capacity_) return;
      acts_.assign(tensor_off[Model::size + 1] * batch, 0.0f);
      saved_.assign(saved_off[Model::size] * batch + 1, 0.0f);
      workspace_.assign(Model::max_workspace_per_sample * batch + 1, 0.0f);
      for (auto& b : grad_buf_) b.assign(Model::max_activation * batch, 0.0f);
      capacity_ = batch;
    }
  }

  void refresh_fake_quant_weights() {
    if (fq_params_.size() != param_count) fq_params_.assign(param_count, 0.0f);
    for (std::size_t i = 0; i < param_count; ++i) fq_params_[i] = params_[i];
    Model::for_each_layer([&]<std::size_t I>() {
      using L = typename Model::template layer<I>;
      if constexpr (has_weights(L::kind)) {
        if (!fake_quant_ && !int8_layer<I>) return;
        bool per_channel = fq_per_channel_;
        if constexpr (int8_layer<I>) per_channel = layer_precision<I>::is_per_channel;
        constexpr std::size_t channels = L::out_channels;
        std::array<float, channels> scales{};
        std::vector<std::int8_t> q(L::weight_count);
        const std::span<const float> w(params_.data() + Model::template param_offset<I>, L::weight_count);
        const std::span<float> out(fq_params_.data() + Model::template param_offset<I>, L::weight_count);
        if (per_channel) {
          quantize_weights<tinylarge::per_channel>(w, channels, q, scales);
          dequantize_weights(q, channels, scales, out);
        } else {
          quantize_weights<tinylarge::per_tensor>(w, channels, q, std::span<float>(scales.data(), 1));
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
      const tensor_range& r = ranges_[T];
      if (training) track_range(ranges_[T], x, n);
      if (!r.seen) return;
      qp = current_params(T);
    }
    for (std::size_t i = 0; i < n; ++i) x[i] = fake_quantize(x[i], qp);
  }

  /// The EMA range update of QAT: the first batch sets [lo, hi], later ones
  /// move it by ema·(batch − current).
  void track_range(tensor_range& r, const float* x, std::size_t n) const {
    minmax_observer batch_obs;
    batch_obs.observe(std::span<const float>(x, n));
    if (batch_obs.empty()) return;
    if (!r.seen) {
      r = {batch_obs.lo, batch_obs.hi, true};
    } else {
      r.lo += ema_ * (batch_obs.lo - r.lo);
      r.hi += ema_ * (batch_obs.hi - r.hi);
    }
  }

  /// Per-layer int8 (`with_precision<L, int8<…>>`): fake-quantize layer I's
  /// input on the grid of its EMA-tracked range (asymmetric int8), as the
  /// int8 deployment quantizes it.
  template <std::size_t I>
  void fake_quantize_input(bool training) {
    float* x = act(I);
    const std::size_t n = batch_ * (tensor_off[I + 1] - tensor_off[I]);
    const tensor_range& r = ranges_[I];
    if (training) track_range(ranges_[I], x, n);
    if (!r.seen) return;
    const quant_params qp = current_params(I);
    for (std::size_t i = 0; i < n; ++i) x[i] = fake_quantize(x[i], qp);
    converted_ += n;
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
  bool gradients_zero_ = false;  ///< grads_ is all zeros since `zero_gradients` (no backward or write since)
  /// A scratch buffer: a vector grown to the largest batch seen, or, with
  /// `static_training_storage<B>`, a member of N floats (sized for B rows).
  template <std::size_t N>
  using scratch = std::conditional_t<max_batch == 0, std::vector<float>, typename Storage::template buffer<float, N>>;
  scratch<tensor_off[Model::size + 1] * max_batch> acts_{};
  scratch<saved_off[Model::size] * max_batch + 1> saved_{};
  scratch<Model::max_workspace_per_sample * max_batch + 1> workspace_{};
  scratch<0> fq_params_{};  // fake quantization: host only
  std::array<scratch<Model::max_activation * max_batch>, 2> grad_buf_{};
  std::array<tensor_range, tensor_count> ranges_{};
  std::size_t capacity_ = 0, batch_ = 0;
  tinylarge::rng rng_{};
  bool fake_quant_ = false, fq_per_channel_ = true;
  float ema_ = 0.01f;
  // mixed precision: per-layer storage-type operands, the loss scale
  std::conditional_t<max_batch == 0, typename lowp::layer_buffers_of<Model, Precision>::type, std::tuple<>> lowp_{};
  scratch<0> scaled_dy_{}, scaled_grads_{};  // fp16 loss scaling: host only
  lowp::loss_scale_state loss_scale_{};
  bool overflow_ = false;
  std::size_t converted_ = 0;
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
template <sequential_model Model, storage_policy Storage = default_storage, class Backend = kernels::default_backend>
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

  /// True when a layer checks its input and may raise (`embedding`: a value
  /// that is not a token id); `forward` and `classify` are noexcept otherwise.
  static constexpr bool forward_may_raise = [] {
    bool any = false;
    Model::for_each_layer([&]<std::size_t I>() {
      if constexpr (requires { Model::template layer<I>::validates_input; })
        any = any || Model::template layer<I>::validates_input;
    });
    return any;
  }();

  /// Run one sample (Model::input_size floats).
  /// @return Model::output_size floats, valid until the next call
  const float* forward(const float* x) noexcept(!forward_may_raise) {
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
  std::size_t classify(const float* x) noexcept(!forward_may_raise) {
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
