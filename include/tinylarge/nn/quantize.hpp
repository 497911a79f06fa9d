/// @file nn/quantize.hpp
/// @brief From a trained fp32 `network` to an int8 `quantized_network`:
///        post-training quantization (PTQ) with calibration, and conversion
///        after quantization-aware training (QAT). Host profile.
///
/// @code
///   tl::nn::network<model> net;  /* … trained … */
///   static tl::nn::quantized_network<model, tl::int8_per_channel> q;   // no heap
///   tl::nn::quantize_post_training(net, calibration_images, 1000, q);
///   std::size_t cls = q.classify(image);                                 // integer-only
///
///   // QAT: fine-tune with fake quantization, then convert with the tracked ranges
///   net.enable_fake_quant(true);  /* … a few epochs of fit() … */
///   tl::nn::convert(net, net.tracked_ranges(), q);
/// @endcode
///
/// Activation ranges come from A's observers (`tl::minmax_observer` for PTQ,
/// the moving average tracked by `network` for QAT); scales, zero points,
/// weight codes, int32 biases and Q31 multipliers from `precision/int8.hpp`,
/// so that this file only decides *which* tensor gets which parameters.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "../core/error.hpp"
#include "../precision/int8.hpp"
#include "layers.hpp"
#include "network.hpp"
#include "quantized_network.hpp"
#include "sequential.hpp"

namespace tinylarge::nn {

/// Observed activation ranges of every tensor of the int8 graph (0 = input,
/// N + 1 = output of node N of `quantized_network<Model>::graph`: the model's
/// layers, each residual block as its inner layers and its add) over `count`
/// samples, from fp32 inference in batches. Without residual blocks node N is
/// layer N.
template <class Model, class S>
std::array<tensor_range, detail::int8_graph<Model>::size + 1> calibrate(network<Model, S>& net, const float* x,
                                                                       std::size_t count, std::size_t batch = 256) {
  using G = detail::int8_graph<Model>;
  TINYLARGE_REQUIRE(count > 0, errc::invalid_argument, "calibrate: needs at least one sample");
  TINYLARGE_REQUIRE(!net.fake_quant_enabled(), errc::invalid_argument,
                    "calibrate: turn fake quantization off first (or convert with tracked_ranges())");
  std::array<minmax_observer, G::size + 1> obs{};
  for (std::size_t start = 0; start < count; start += batch) {
    const std::size_t b = std::min(batch, count - start);
    net.forward(x + start * Model::input_size, b, false);
    obs[0].observe(std::span<const float>(net.activation(0), b * Model::input_size));
    G::for_each_layer([&]<std::size_t N>() {
      using Nd = typename G::template node<N>;
      const float* t = net.activation(Nd::top + 1);  // a layer of the model, or the add of a block
      if constexpr (Nd::inner != detail::not_inner && Nd::layer::kind != layer_kind::residual) {
        // inner layer J of a block: its output in the block's saved area, after those of layers 0 … J−1
        std::size_t before = 0;
        [&]<std::size_t... J>(std::index_sequence<J...>) {
          ((before += G::template layer<N - Nd::inner + J>::out_shape::size), ...);
        }(std::make_index_sequence<Nd::inner>{});
        t = net.saved_area(Nd::top) + b * before;
      }
      obs[N + 1].observe(std::span<const float>(t, b * Nd::layer::out_shape::size));
    });
  }
  std::array<tensor_range, G::size + 1> r{};
  for (std::size_t t = 0; t <= G::size; ++t) {
    TINYLARGE_REQUIRE(obs[t].non_finite == 0, errc::non_finite,
                      "calibrate: the fp32 network produced NaN or Inf on the calibration data");
    r[t] = {obs[t].lo, obs[t].hi, !obs[t].empty()};
  }
  return r;
}

/// The constants of the int8 add y = x₁ + x₂ (`kernels::add_s8`) from the
/// tensors' parameters, as TFLite prepares its ADD: with s = 2·max(s₁, s₂),
/// input k is rescaled by sₖ/s and the sum by s/(2^20·s_y); `clamp` is the
/// output range (a fused relu / relu6, or the full int8 range).
/// @throws tl::invalid_argument when a scale is not positive and finite
inline kernels::add_s8_params residual_add_params(quant_params x1, quant_params x2, quant_params y, quant_range clamp) {
  TINYLARGE_REQUIRE(x1.scale > 0.0f && x2.scale > 0.0f && y.scale > 0.0f && std::isfinite(x1.scale) &&
                        std::isfinite(x2.scale) && std::isfinite(y.scale),
                    errc::invalid_argument, "residual_add_params: scales must be positive and finite");
  const add_multipliers m = quantize_add_multipliers(x1.scale, x2.scale, y.scale, kernels::add_s8_params::left_shift);
  const quantized_multiplier m1 = m.input1, m2 = m.input2, my = m.output;
  kernels::add_s8_params p;
  p.input1_offset = -x1.zero_point;
  p.input2_offset = -x2.zero_point;
  p.output_offset = y.zero_point;
  p.input1_multiplier = m1.multiplier;
  p.input1_shift = m1.shift;
  p.input2_multiplier = m2.multiplier;
  p.input2_shift = m2.shift;
  p.output_multiplier = my.multiplier;
  p.output_shift = my.shift;
  p.act_min = clamp.min;
  p.act_max = clamp.max;
  return p;
}

/// Fill `q` from the fp32 parameters of `net` and per-tensor real ranges (one
/// per tensor of the int8 graph, as `calibrate` returns them).
///
/// Tensor parameters follow the int8 graph: observed tensors get
/// `P::activation_params(lo, hi)`; pooling, flatten, dropout and standalone
/// relu keep their input's; sigmoid / softmax outputs use (1/256, −128) and
/// tanh (1/128, 0); the pre-activation of a fused dense/conv + relu pair (or
/// residual add + relu) takes the parameters of the relu's output. Then per
/// weighted layer (inner layers of residual blocks included): symmetric int8
/// weights (`P::quantize_weights`), int32 biases (`quantize_bias`) and Q31
/// multipliers M[o] = s_x·s_w[o]/s_y (`requantization_multipliers`); per
/// residual add the constants of `residual_add_params`.
/// @throws tl::invalid_argument when an observed tensor has no range
template <class Model, class S, int8_precision P, class S2, class B>
void convert(const network<Model, S>& net, const std::array<tensor_range, detail::int8_graph<Model>::size + 1>& ranges,
             quantized_network<Model, P, S2, B>& q) {
  using G = detail::int8_graph<Model>;
  auto& tq = q.tensor_quantization();
  // 1. tensor parameters, in graph order
  [&]<std::size_t... T>(std::index_sequence<T...>) {
    (
        [&] {
          using detail::tensor_quant;
          constexpr tensor_quant how = detail::tensor_quant_of<G, T>();
          if constexpr (how == tensor_quant::observed) {
            TINYLARGE_REQUIRE(ranges[T].seen, errc::invalid_argument,
                              "convert: an activation tensor has no observed range (calibrate first, or train "
                              "with fake quantization for at least one batch)");
            tq[T] = P::activation_params(ranges[T].lo, ranges[T].hi);
          } else if constexpr (how == tensor_quant::fixed_sigmoid) {
            tq[T] = {1.0f / 256.0f, -128};
          } else if constexpr (how == tensor_quant::fixed_tanh) {
            tq[T] = {1.0f / 128.0f, 0};
          } else if constexpr (how == tensor_quant::same_as_input) {
            tq[T] = tq[T - 1];
          }
        }(),
        ...);
  }(std::make_index_sequence<G::size + 1>{});
  constexpr auto kinds = detail::tensor_quant_table<G>();
  for (std::size_t t = G::size; t-- > 0;) {
    // not_materialised tensors (pre-activations of fused pairs) take the next one's
    if (kinds[t] == detail::tensor_quant::not_materialised) tq[t] = tq[t + 1];
  }
  // 2. weights, biases, multipliers; residual adds; 3. tables
  G::for_each_layer([&]<std::size_t I>() {
    using Nd = typename G::template node<I>;
    using L = typename Nd::layer;
    constexpr auto& lay = quantized_network<Model, P, S2, B>::layout;
    if constexpr (has_weights(L::kind)) {
      // the layer's fp32 weights and biases: a layer of the model, or inner layer J of a block
      const float* w = net.parameters().data() + Model::template param_offset<Nd::top>;
      if constexpr (Nd::inner != detail::not_inner) w += Model::template layer<Nd::top>::template param_offset<Nd::inner>;
      constexpr std::size_t ch = L::out_channels;
      constexpr std::size_t ns = P::weight_scale_count(ch);
      std::array<float, ns> scales{};
      std::array<std::int32_t, ns> mult{};
      std::array<int, ns> shift{};
      P::quantize_weights(std::span<const float>(w, L::weight_count), ch,
                          std::span<std::int8_t>(q.weights() + lay.weight[I], L::weight_count), scales);
      quantize_bias(std::span<const float>(w + L::weight_count, L::bias_count), tq[I].scale, scales,
                    std::span<std::int32_t>(q.biases() + lay.bias[I], ch));
      requantization_multipliers(tq[I].scale, scales, tq[I + 1].scale, mult, shift);
      for (std::size_t o = 0; o < ch; ++o) {
        q.multipliers()[lay.bias[I] + o] = mult[ns == 1 ? 0 : o];
        q.shifts()[lay.bias[I] + o] = shift[ns == 1 ? 0 : o];
        q.weight_scales()[lay.bias[I] + o] = scales[ns == 1 ? 0 : o];
      }
    } else if constexpr (L::kind == layer_kind::residual) {
      // y = x + F(x): x is the input of the block's first inner layer, F(x) this node's input
      q.residual_add(G::template add_index<I>) = residual_add_params(
          tq[I - L::inner_layers], tq[I], tq[I + 1], detail::output_clamp<G, I>(tq[I + 1], P::activation_range));
    } else if constexpr (L::kind == layer_kind::sigmoid || L::kind == layer_kind::tanh) {
      std::int32_t* t = q.tables() + lay.lut[I];
      for (int c = -128; c < 128; ++c) {
        const float xr = dequantize(static_cast<std::int8_t>(c), tq[I]);
        const float yr = L::kind == layer_kind::sigmoid ? 1.0f / (1.0f + std::exp(-xr)) : std::tanh(xr);
        t[c + 128] = quantize(yr, tq[I + 1], P::activation_range);
      }
    } else if constexpr (L::kind == layer_kind::softmax) {
      std::int32_t* t = q.tables() + lay.lut[I];
      for (int d = 0; d < 256; ++d)
        t[d] = static_cast<std::int32_t>(std::lround(65536.0 * std::exp(-static_cast<double>(d) * tq[I].scale)));
    }
  });
}

/// Post-training quantization: calibrate on `count` samples of `x` (a sample
/// of the training set), then `convert`.
template <class Model, class S, int8_precision P, class S2, class B>
void quantize_post_training(network<Model, S>& net, const float* x, std::size_t count,
                            quantized_network<Model, P, S2, B>& q) {
  convert(net, calibrate(net, x, count), q);
}

}  // namespace tinylarge::nn
