/// @file nn/layer_precision.hpp
/// @brief Which layers of a `sequential` model compute in which precision:
///        compile-time traits of per-layer mixed precision (`with_precision`),
///        shared by `nn::network` (training, host) and
///        `mixed_inference_network` (deployment, host and freestanding).
///        Nothing here allocates: freestanding-safe.
#pragma once

#include <cstddef>
#include <string_view>
#include <type_traits>
#include <utility>

#include "../precision/concepts.hpp"
#include "../precision/int8.hpp"
#include "layers.hpp"

namespace tinylarge::nn::lowp {

/// Layer L is weighted and computes in a float precision other than fp32.
template <class L, class Default>
inline constexpr bool is_lowp_layer = [] {
  using P = layer_precision_t<L, Default>;
  if constexpr ((has_weights(L::kind) || L::kind == layer_kind::lora) && float_precision<P>) {
    return !std::is_same_v<P, fp32>;
  } else {
    return false;
  }
}();

/// Layer L is weighted and trained with int8 fake quantization.
template <class L, class Default>
inline constexpr bool is_int8_layer = has_weights(L::kind) && int8_precision<layer_precision_t<L, Default>>;

namespace detail {
template <class Model, class F>
constexpr bool any_layer(F f) {
  return [&]<std::size_t... I>(std::index_sequence<I...>) {
    return (f.template operator()<typename Model::template layer<I>>() || ...);
  }(std::make_index_sequence<Model::size>{});
}
}  // namespace detail

template <class Model, class Default>
inline constexpr bool model_is_mixed = detail::any_layer<Model>([]<class L>() {
  return is_lowp_layer<L, Default> || is_int8_layer<L, Default>;
});
template <class Model, class Default>
inline constexpr bool model_has_int8_layers = detail::any_layer<Model>([]<class L>() { return is_int8_layer<L, Default>; });
template <class Model, class Default>
inline constexpr bool model_uses_loss_scaling = detail::any_layer<Model>([]<class L>() {
  if constexpr (is_lowp_layer<L, Default>) {
    return uses_loss_scaling<layer_precision_t<L, Default>>;
  } else {
    return false;
  }
});

/// Number of places where the precision of the data a weighted layer
/// computes on changes along the chain, starting and ending in fp32: each is
/// a conversion the model type inserts (e.g. int8 | fp16 | int8 between fp32
/// input and output: 4).
template <class Model, class Default>
constexpr std::size_t precision_boundaries() {
  std::size_t n = 0;
  const char* current = fp32::name();
  Model::for_each_layer([&]<std::size_t I>() {
    using L = typename Model::template layer<I>;
    if constexpr (has_weights(L::kind) || L::kind == layer_kind::lora) {
      using P = layer_precision_t<L, Default>;
      const char* name = is_lowp_layer<L, Default> || is_int8_layer<L, Default> ? P::name() : fp32::name();
      if (std::string_view(name) != std::string_view(current)) ++n;
      current = name;
    }
  });
  if (std::string_view(current) != std::string_view(fp32::name())) ++n;
  return n;
}

/// Compile-time check of one layer's precision (the message names the layer kind).
template <class L, class Default>
struct layer_precision_check {
  using P = layer_precision_t<L, Default>;
  static_assert(float_precision<P> || int8_precision<P>,
                "tinylarge: nn::network: a layer's precision (with_precision<Layer, P> or the network's) must be a "
                "float_precision (fp32, fp16, bf16, your own with encode/decode) or an int8<Granularity, Scheme>");
  static_assert(L::kind != layer_kind::depthwise_conv2d || std::is_same_v<P, fp32> || int8_precision<P>,
                "tinylarge: nn::network: depthwise_conv2d has no fp16/bf16 path (it is not a GEMM); wrap it as "
                "with_precision<depthwise_conv2d<...>, fp32>");
  static_assert(!fp32_only(L::kind) || L::kind == layer_kind::lora || std::is_same_v<P, fp32>,
                "tinylarge: nn::network: the layers of nn/transformer.hpp (layer_norm, rms_norm, gelu, silu, "
                "multi_head_attention, residual, embedding, positions) compute in fp32 only "
                "(no fp16/bf16/int8 path yet): use an fp32 network, or wrap them as with_precision<..., fp32>");
  static_assert(L::kind != layer_kind::lora || float_precision<P>,
                "tinylarge: nn::network: lora<Layer, Rank, Alpha> trains in a float precision only (fp32, fp16, bf16): "
                "deploy merge_lora's plain dense layers in int8");
  static constexpr bool value = true;
};
template <class Model, class Default>
constexpr bool check_layer_precisions() {
  return [&]<std::size_t... I>(std::index_sequence<I...>) {
    return (layer_precision_check<typename Model::template layer<I>, Default>::value && ...);
  }(std::make_index_sequence<Model::size>{});
}

}  // namespace tinylarge::nn::lowp
