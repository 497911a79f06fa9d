/// @file nn/shape.hpp
/// @brief Compile-time tensor shapes, the `input<>` marker and the layer concepts.
///
/// Every activation of a `sequential<...>` model has a shape known at compile
/// time. Shapes are NHWC per sample (height, width, channels); a flat vector of
/// N features is `shape<1, 1, N>`. The batch dimension is never part of the
/// type: training runs on any batch size, inference on the microcontroller on
/// batch 1.
///
/// A *layer descriptor* (`dense<784, 300>`, `relu`, …) is what the user writes;
/// it does not know its input shape. `sequential` binds each descriptor to the
/// output shape of the layer before it (`Descriptor::bind<InShape>`), giving a
/// *bound layer* that has both shapes, its parameter and MAC counts, and its
/// fp32 forward and backward functions.
#pragma once

#include <concepts>
#include <cstddef>
#include <type_traits>

#include "../core/config.hpp"

namespace tinylarge::nn {

/// A per-sample NHWC tensor shape, H × W × C, as a type.
/// @tparam H height (1 for flat vectors)
/// @tparam W width (1 for flat vectors)
/// @tparam C channels (the feature count of flat vectors)
template <std::size_t H, std::size_t W, std::size_t C>
struct shape {
  static constexpr std::size_t h = H;
  static constexpr std::size_t w = W;
  static constexpr std::size_t c = C;
  static constexpr std::size_t size = H * W * C;  ///< elements per sample
  static constexpr bool flat = H == 1 && W == 1;
};

/// True for `shape<H, W, C>`.
template <class S>
concept tensor_shape = requires {
  { S::h } -> std::convertible_to<std::size_t>;
  { S::w } -> std::convertible_to<std::size_t>;
  { S::c } -> std::convertible_to<std::size_t>;
  { S::size } -> std::convertible_to<std::size_t>;
};

/// Marks the input of a `sequential` model: `input<N>` is a flat vector of N
/// features, `input<H, W, C>` an NHWC image.
template <std::size_t... Dims>
struct input {
  static_assert(sizeof...(Dims) == 1 || sizeof...(Dims) == 3,
                "tinylarge: input<> takes one extent (input<N>, a flat vector) or three (input<H, W, C>)");
};
template <std::size_t N>
struct input<N> {
  static_assert(N > 0, "tinylarge: input<N> needs N > 0");
  using shape_type = shape<1, 1, N>;
};
template <std::size_t H, std::size_t W, std::size_t C>
struct input<H, W, C> {
  static_assert(H > 0 && W > 0 && C > 0, "tinylarge: input<H, W, C> needs positive extents");
  using shape_type = shape<H, W, C>;
};

namespace detail {
template <class T>
struct is_input : std::false_type {};
template <std::size_t... D>
struct is_input<input<D...>> : std::true_type {};
}  // namespace detail

/// What each layer is; lets the int8 converter and `sequential` reason about a
/// layer (fusion of relu into the preceding dense/conv, parameter layouts)
/// without knowing its type.
enum class layer_kind : unsigned char {
  dense,
  conv2d,
  depthwise_conv2d,
  max_pool2d,
  avg_pool2d,
  flatten,
  relu,
  relu6,
  sigmoid,
  tanh,
  softmax,
  dropout,
  // nn/transformer.hpp (fp32 only: see `fp32_only`)
  layer_norm,
  gelu,
  multi_head_attention,
  residual,
  rms_norm,
  silu,
  embedding,
  learned_positions,
  sinusoidal_positions,
  // nn/lora.hpp (fp32 only)
  lora,
  // nn/vision.hpp (fp32 only; fold it into the layer before it for int8)
  batch_norm,
};

/// Human-readable name of a layer kind.
constexpr const char* to_string(layer_kind k) noexcept {
  switch (k) {
    case layer_kind::dense: return "dense";
    case layer_kind::conv2d: return "conv2d";
    case layer_kind::depthwise_conv2d: return "depthwise_conv2d";
    case layer_kind::max_pool2d: return "max_pool2d";
    case layer_kind::avg_pool2d: return "avg_pool2d";
    case layer_kind::flatten: return "flatten";
    case layer_kind::relu: return "relu";
    case layer_kind::relu6: return "relu6";
    case layer_kind::sigmoid: return "sigmoid";
    case layer_kind::tanh: return "tanh";
    case layer_kind::softmax: return "softmax";
    case layer_kind::dropout: return "dropout";
    case layer_kind::layer_norm: return "layer_norm";
    case layer_kind::gelu: return "gelu";
    case layer_kind::multi_head_attention: return "multi_head_attention";
    case layer_kind::residual: return "residual";
    case layer_kind::rms_norm: return "rms_norm";
    case layer_kind::silu: return "silu";
    case layer_kind::embedding: return "embedding";
    case layer_kind::learned_positions: return "learned_positions";
    case layer_kind::sinusoidal_positions: return "sinusoidal_positions";
    case layer_kind::lora: return "lora";
    case layer_kind::batch_norm: return "batch_norm";
  }
  return "?";
}

/// True for kinds that own a weight matrix with one row per output channel
/// (the layers that are quantized per channel and into which a following
/// relu / relu6 is fused).
constexpr bool has_weights(layer_kind k) noexcept {
  return k == layer_kind::dense || k == layer_kind::conv2d || k == layer_kind::depthwise_conv2d;
}

/// True for the kinds of nn/transformer.hpp and `batch_norm` (nn/vision.hpp),
/// which have only an fp32 path (no fp16/bf16 GEMM, fake quantization, int8
/// conversion or npz export yet; `fold_batch_norms` removes batch norms), and
/// for nn/lora.hpp's adapter wrapper, which also trains in fp16 / bf16 but has
/// no fake-quantization, int8 or export path (deploy `merge_lora`'s plain
/// dense layers).
constexpr bool fp32_only(layer_kind k) noexcept {
  return k == layer_kind::layer_norm || k == layer_kind::gelu || k == layer_kind::multi_head_attention ||
         k == layer_kind::residual || k == layer_kind::rms_norm || k == layer_kind::silu ||
         k == layer_kind::embedding || k == layer_kind::learned_positions || k == layer_kind::sinusoidal_positions ||
         k == layer_kind::lora || k == layer_kind::batch_norm;
}

/// State shared by the fp32 forward and backward functions of one layer.
///
/// `workspace` is scratch that the network sizes from the layer's
/// `workspace_per_sample` (valid during one call only); `saved` persists from
/// the forward to the backward of the same batch (`saved_per_sample`, e.g. the
/// dropout mask); `rng` is the network's seeded generator.
/// `gradients_zero` (backward only) says that the layer's gradient block
/// holds zeros — the first backward pass after `zero_gradients()` — so a
/// layer may write its gradients instead of adding to them (a GEMM with
/// beta = 0 does not read its output: at width 1000 the weight gradient of
/// LeNet's first layer took 1.56× as long with beta = 1). Writing gives the
/// bits that adding to +0 gives (the GEMM's beta = 0 stores +0 + x).
template <class Rng>
struct layer_context {
  float* workspace = nullptr;
  float* saved = nullptr;
  Rng* rng = nullptr;
  bool training = false;
  bool gradients_zero = false;
};

/// A layer descriptor: a type the user writes in `sequential<...>`. It tells
/// which input shapes it accepts and binds to one of them.
template <class L>
concept layer_descriptor = requires {
  { L::template accepts<shape<1, 1, 1>> } -> std::convertible_to<bool>;
  { L::name() } -> std::convertible_to<const char*>;
};

/// A layer bound to its input shape: both shapes, parameter counts and costs
/// are compile-time constants.
template <class B>
concept bound_layer = requires {
  typename B::descriptor;
  typename B::in_shape;
  typename B::out_shape;
  { B::kind } -> std::convertible_to<layer_kind>;
  { B::weight_count } -> std::convertible_to<std::size_t>;
  { B::bias_count } -> std::convertible_to<std::size_t>;
  { B::param_count } -> std::convertible_to<std::size_t>;
  { B::macs } -> std::convertible_to<std::size_t>;
  { B::workspace_per_sample } -> std::convertible_to<std::size_t>;
  { B::saved_per_sample } -> std::convertible_to<std::size_t>;
  { B::inference_scratch } -> std::convertible_to<std::size_t>;
};

}  // namespace tinylarge::nn
