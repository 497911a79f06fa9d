/// @file nn/mixed_network.hpp
/// @brief `mixed_inference_network<Model, Precision>`: the deployment form of a
///        trained `network<Model, S, Precision>` whose weights are held in
///        each layer's storage type — half the fp32 bytes in fp16 / bf16, a
///        quarter in int8 — with fp32 accumulation (host profile).
///
/// @code
///   using model = tl::sequential<tl::nn::with_precision<tl::nn::dense<784, 300>, tl::int8_per_channel>, tl::nn::relu,
///                                tl::nn::dense<300, 100>, tl::nn::relu,
///                                tl::nn::with_precision<tl::nn::dense<100, 10>, tl::int8_per_channel>>;
///   tl::nn::network<model, tl::nn::heap_storage, tl::fp16> net(1);   // train (fit) …
///   tl::nn::mixed_inference_network<model, tl::fp16> deploy(net);    // int8 | fp16 | int8
///   deploy.weight_bytes();                                           // 784·300 + 2·300·100 + 100·10
///   const float* logits = deploy.forward(x, batch);
/// @endcode
///
/// Per weighted layer, by its precision P (the layer's `with_precision`, else
/// the network's):
///  - fp32: the fp32 layer (`kernels::dense_f32`, im2col + GEMM);
///  - another float precision: W in `P::storage_type`, fp32 input and bias,
///    `kernels::dense<Backend, float, T>` (conv: on the im2col rows; storage
///    types without a kernel are widened to fp32 per call);
///  - int8: W quantized per channel (or per tensor) symmetric, the input
///    quantized with the asymmetric parameters of the range the network
///    tracked while training (`kernels::quantize_s8`), int32 accumulation
///    (`kernels::dense_s8_s32`) and the result brought back to fp32 as
///    acc·s_x·s_w[o] + b[o]: two conversions at the layer's boundaries, counted
///    in `converted_elements()`.
/// Activations between layers are fp32; layers without weights run their fp32
/// pass.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "../core/error.hpp"
#include "../kernels/dense.hpp"
#include "../precision/int8.hpp"
#include "lowp.hpp"
#include "network.hpp"

namespace tinylarge::nn {

namespace mixed_detail {
/// What one weighted layer of the deployment holds.
template <class L, class P>
struct layer_store {
  static constexpr bool weighted = has_weights(L::kind);
  static constexpr bool int8 = weighted && int8_precision<P>;
  static constexpr bool lowp = weighted && !int8 && !std::is_same_v<P, fp32>;
  using weight_type = std::conditional_t<int8, std::int8_t, std::conditional_t<lowp, typename P::storage_type, float>>;
  std::vector<weight_type> w;  ///< fp32 layers: weights then biases (the layer's own layout)
  std::vector<float> bias, w_scales, widened;
  quant_params x_params{};  ///< int8: the input's quantization
  std::vector<std::int8_t> xq;
  std::vector<std::int32_t> acc;
};

template <class Model, class Default, class Seq = std::make_index_sequence<Model::size>>
struct stores_of;
template <class Model, class Default, std::size_t... I>
struct stores_of<Model, Default, std::index_sequence<I...>> {
  using type = std::tuple<layer_store<typename Model::template layer<I>,
                                      layer_precision_t<typename Model::template layer<I>, Default>>...>;
};
}  // namespace mixed_detail

/// Inference in each layer's storage precision (see the file comment).
/// @tparam Model a `sequential<...>` type (with `with_precision` layers or not)
/// @tparam Precision the default precision of its weighted layers
template <sequential_model Model, precision_policy Precision = fp32>
class mixed_inference_network {
  static_assert(float_precision<Precision>,
                "tinylarge: mixed_inference_network<Model, Precision>: Precision must be a float_precision; "
                "for a whole-int8 network use quantized_network");
  static_assert(lowp::check_layer_precisions<Model, Precision>());

 public:
  using model = Model;
  using precision = Precision;

  mixed_inference_network() = default;
  /// Converts the parameters of `net` (and, for int8 layers, its tracked input ranges).
  template <class S>
  explicit mixed_inference_network(const network<Model, S, Precision>& net) {
    load(net);
  }

  /// Converts the parameters of `net` into each layer's storage type.
  /// @throws tinylarge::invalid_argument if an int8 layer's input range was never observed
  template <class S>
  void load(const network<Model, S, Precision>& net) {
    const auto params = net.parameters();
    Model::for_each_layer([&]<std::size_t I>() {
      using L = typename Model::template layer<I>;
      using P = layer_precision_t<L, Precision>;
      auto& st = std::get<I>(stores_);
      using St = std::remove_reference_t<decltype(st)>;
      const float* p = params.data() + Model::template param_offset<I>;
      if constexpr (St::int8) {
        static_assert(L::kind != layer_kind::depthwise_conv2d,
                      "tinylarge: mixed_inference_network: an int8 depthwise_conv2d layer is not supported; use "
                      "quantized_network for whole-int8 models");
        const tensor_range r = net.tracked_ranges()[I];
        TINYLARGE_REQUIRE(r.seen, errc::invalid_argument,
                          "mixed_inference_network::load: an int8 layer's input range was never observed (train "
                          "the network first)");
        st.x_params = choose_quant_params<asymmetric>(r.lo, r.hi);
        st.w.resize(L::weight_count);
        st.w_scales.resize(P::is_per_channel ? L::out_channels : 1);
        if constexpr (P::is_per_channel) {
          quantize_weights<per_channel>({p, L::weight_count}, L::out_channels, st.w, st.w_scales);
        } else {
          quantize_weights<per_tensor>({p, L::weight_count}, L::out_channels, st.w, st.w_scales);
        }
        st.bias.assign(p + L::weight_count, p + L::param_count);
      } else if constexpr (St::lowp) {
        lowp::encode<P>(p, L::weight_count, st.w);
        st.bias.assign(p + L::weight_count, p + L::param_count);
      } else if constexpr (L::param_count > 0) {
        st.w.assign(p, p + L::param_count);
      }
    });
  }

  /// Runs `batch` samples (batch × Model::input_size floats).
  /// @return batch × Model::output_size floats, valid until the next call
  const float* forward(const float* x, std::size_t batch) {
    TINYLARGE_REQUIRE(batch > 0, errc::invalid_argument, "mixed_inference_network::forward: batch must be positive");
    buf_[0].resize(batch * Model::max_activation);
    buf_[1].resize(batch * Model::max_activation);
    workspace_.resize(batch * Model::max_workspace_per_sample + 1);
    converted_ = 0;
    const float* cur = x;
    std::size_t slot = 0;
    Model::for_each_layer([&]<std::size_t I>() {
      using L = typename Model::template layer<I>;
      using P = layer_precision_t<L, Precision>;
      auto& st = std::get<I>(stores_);
      using St = std::remove_reference_t<decltype(st)>;
      float* out = buf_[slot].data();
      context ctx{workspace_.data(), nullptr, nullptr, false};
      if constexpr (St::int8 || St::lowp) {
        constexpr bool conv = L::kind == layer_kind::conv2d;
        constexpr std::size_t rps = lowp::layer_ops<L, fp32>::rows_per_sample, k = lowp::layer_ops<L, fp32>::k;
        constexpr std::size_t n = L::out_channels;
        const std::size_t rows = batch * rps;
        const float* xin = cur;
        if constexpr (conv) {
          L::im2col(cur, workspace_.data(), batch);
          xin = workspace_.data();
        }
        if constexpr (St::int8) {
          st.xq.resize(rows * k);
          st.acc.resize(rows * n);
          kernels::quantize_s8(kernels::default_backend{}, xin, rows * k, st.x_params, int8_activation_range,
                               st.xq.data());
          kernels::dense_s8_params dp{};
          dp.input_zero_point = st.x_params.zero_point;
          kernels::dense_s8_s32(rows, n, k, st.xq.data(), st.w.data(), dp, st.acc.data());
          for (std::size_t r = 0; r < rows; ++r)
            for (std::size_t o = 0; o < n; ++o)
              out[r * n + o] = static_cast<float>(st.acc[r * n + o]) * (st.x_params.scale * st.w_scales[P::is_per_channel ? o : 0]) +
                               st.bias[o];
          converted_ += rows * k + rows * n;
        } else if constexpr (kernels::kernel_float<typename P::storage_type>) {
          kernels::dense(rows, n, k, xin, st.w.data(), st.bias.data(), out);
        } else {
          st.widened.resize(st.w.size());
          for (std::size_t i = 0; i < st.w.size(); ++i) st.widened[i] = P::decode(st.w[i]);
          kernels::dense(rows, n, k, xin, st.widened.data(), st.bias.data(), out);
        }
      } else {
        L::forward(st.w.data(), cur, out, batch, ctx);
      }
      cur = out;
      slot ^= 1;
    });
    return cur;
  }

  /// Bytes of the weights as stored (each layer's storage type).
  static constexpr std::size_t weight_bytes() noexcept {
    std::size_t b = 0;
    Model::for_each_layer([&]<std::size_t I>() {
      using L = typename Model::template layer<I>;
      using St = mixed_detail::layer_store<L, layer_precision_t<L, Precision>>;
      b += L::weight_count * sizeof(typename St::weight_type);
    });
    return b;
  }
  /// Bytes of everything else the layers keep: fp32 biases and int8 weight scales.
  static constexpr std::size_t other_parameter_bytes() noexcept {
    std::size_t b = 0;
    Model::for_each_layer([&]<std::size_t I>() {
      using L = typename Model::template layer<I>;
      using P = layer_precision_t<L, Precision>;
      b += L::bias_count * sizeof(float);
      if constexpr (has_weights(L::kind) && int8_precision<P>)
        b += (P::is_per_channel ? L::out_channels : 1) * sizeof(float);
    });
    return b;
  }
  /// Elements converted between precisions by the last `forward` (int8 layers: input quantization and output
  /// dequantization).
  std::size_t converted_elements() const noexcept { return converted_; }

 private:
  typename mixed_detail::stores_of<Model, Precision>::type stores_{};
  std::array<std::vector<float>, 2> buf_;
  std::vector<float> workspace_;
  std::size_t converted_ = 0;
};

}  // namespace tinylarge::nn
