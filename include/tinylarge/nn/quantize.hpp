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

/// Observed activation ranges of every tensor (0 = input, I + 1 = output of
/// layer I) over `count` samples, from fp32 inference in batches.
template <class Model, class S>
std::array<tensor_range, Model::size + 1> calibrate(network<Model, S>& net, const float* x, std::size_t count,
                                                    std::size_t batch = 256) {
  TINYLARGE_REQUIRE(count > 0, errc::invalid_argument, "calibrate: needs at least one sample");
  TINYLARGE_REQUIRE(!net.fake_quant_enabled(), errc::invalid_argument,
                    "calibrate: turn fake quantization off first (or convert with tracked_ranges())");
  std::array<minmax_observer, Model::size + 1> obs{};
  for (std::size_t start = 0; start < count; start += batch) {
    const std::size_t b = std::min(batch, count - start);
    net.forward(x + start * Model::input_size, b, false);
    for (std::size_t t = 0; t <= Model::size; ++t) {
      const std::size_t n = b * detail::tensor_sizes<Model>()[t];
      obs[t].observe(std::span<const float>(net.activation(t), n));
    }
  }
  std::array<tensor_range, Model::size + 1> r{};
  for (std::size_t t = 0; t <= Model::size; ++t) {
    TINYLARGE_REQUIRE(obs[t].non_finite == 0, errc::non_finite,
                      "calibrate: the fp32 network produced NaN or Inf on the calibration data");
    r[t] = {obs[t].lo, obs[t].hi, !obs[t].empty()};
  }
  return r;
}


/// Fill `q` from the fp32 parameters of `net` and per-tensor real ranges.
///
/// Tensor parameters follow the int8 graph: observed tensors get
/// `P::activation_params(lo, hi)`; pooling, flatten, dropout and standalone
/// relu keep their input's; sigmoid / softmax outputs use (1/256, −128) and
/// tanh (1/128, 0); the pre-activation of a fused dense/conv + relu pair takes
/// the parameters of the relu's output. Then per weighted layer: symmetric
/// int8 weights (`P::quantize_weights`), int32 biases (`quantize_bias`) and
/// Q31 multipliers M[o] = s_x·s_w[o]/s_y (`requantization_multipliers`).
/// @throws tl::invalid_argument when an observed tensor has no range
template <class Model, class S, int8_precision P, class S2, class B>
void convert(const network<Model, S>& net, const std::array<tensor_range, Model::size + 1>& ranges,
             quantized_network<Model, P, S2, B>& q) {
  auto& tq = q.tensor_quantization();
  // 1. tensor parameters, in graph order
  [&]<std::size_t... T>(std::index_sequence<T...>) {
    (
        [&] {
          using detail::tensor_quant;
          constexpr tensor_quant how = detail::tensor_quant_of<Model, T>();
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
  }(std::make_index_sequence<Model::size + 1>{});
  constexpr auto kinds = detail::tensor_quant_table<Model>();
  for (std::size_t t = Model::size; t-- > 0;) {
    // not_materialised tensors (pre-activations of fused pairs) take the next one's
    if (kinds[t] == detail::tensor_quant::not_materialised) tq[t] = tq[t + 1];
  }
  // 2. weights, biases, multipliers; 3. tables
  Model::for_each_layer([&]<std::size_t I>() {
    using L = typename Model::template layer<I>;
    constexpr auto& lay = quantized_network<Model, P, S2, B>::layout;
    if constexpr (has_weights(L::kind)) {
      constexpr std::size_t ch = L::out_channels;
      constexpr std::size_t ns = P::weight_scale_count(ch);
      std::array<float, ns> scales{};
      std::array<std::int32_t, ns> mult{};
      std::array<int, ns> shift{};
      P::quantize_weights(net.template weights<I>(), ch, std::span<std::int8_t>(q.weights() + lay.weight[I], L::weight_count),
                          scales);
      quantize_bias(net.template biases<I>(), tq[I].scale, scales, std::span<std::int32_t>(q.biases() + lay.bias[I], ch));
      requantization_multipliers(tq[I].scale, scales, tq[I + 1].scale, mult, shift);
      for (std::size_t o = 0; o < ch; ++o) {
        q.multipliers()[lay.bias[I] + o] = mult[ns == 1 ? 0 : o];
        q.shifts()[lay.bias[I] + o] = shift[ns == 1 ? 0 : o];
        q.weight_scales()[lay.bias[I] + o] = scales[ns == 1 ? 0 : o];
      }
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
