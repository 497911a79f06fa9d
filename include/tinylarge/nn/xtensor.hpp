/// @file nn/xtensor.hpp
/// @brief Networks over xtensor: `forward` / `predict` / `evaluate` / `fit` on
///        any `xt::xexpression` batch, and every layer's parameters and
///        gradients as xtensor views that alias the network (host profile).
///
/// @code
///   using model = tl::sequential<tl::dense<784, 100>, tl::relu, tl::dense<100, 10>>;
///   tl::nn::network<model> net(42);
///   xt::xtensor<float, 2> x = ...;                      // N × 784 (or N × 28 × 28: flattened)
///   xt::xtensor<std::uint8_t, 1> y = ...;               // N labels
///   tl::nn::fit(net, tl::nn::sgd{0.05f, 0.9f}, tl::nn::softmax_cross_entropy{}, x, y, {.epochs = 3});
///   xt::xtensor<float, 2> logits = tl::nn::forward(net, xt::view(x, xt::range(0, 8)));
///   xt::xtensor<std::size_t, 1> cls = tl::nn::predict(net, x);
///   auto w0 = tl::nn::weights<0>(net);                  // 100 × 784 view of the network's own storage
///   w0 *= 0.5f;                                          // changes the network
/// @endcode
///
/// The views are `xt::adapt` over the network's flat parameter / gradient
/// arrays (no copy); they stay valid as long as the network object lives (its
/// storage is allocated once). Shapes are the layer's storage layout: dense
/// [Out, In]; conv2d [OutC, K, K, C] (NHWC kernels); depthwise_conv2d
/// [C·M, K·K]; biases [Out].
///
/// Everything here is generic over the network type: any `Net` with a
/// `model` typedef and `parameters()` / `gradients()` spans over the layout
/// of `Model::param_offset` (`network<Model, Storage>`), and `forward(const
/// float*, batch, training)` for the batch functions. Training is `nn::fit`
/// itself (train.hpp): these overloads only present xtensor batches to it as
/// `labelled_view`s (without a copy when the batch is already a contiguous
/// row-major float container).
///
/// Quantized weights of an int8 `quantized_network` are values + scale + zero
/// point (`quantized_weights<I>`), the int8 values a view of the network's own
/// storage.
#pragma once

#include <algorithm>
#include <array>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <type_traits>
#include <string>
#include <utility>
#include <vector>

#include <xtensor/xadapt.hpp>
#include <xtensor/xarray.hpp>
#include <xtensor/xbuilder.hpp>
#include <xtensor/xtensor.hpp>

#include "../core/error.hpp"
#include "layers.hpp"
#include "loss.hpp"
#include "network.hpp"
#include "optimizer.hpp"
#include "quantized_network.hpp"
#include "train.hpp"

namespace tinylarge::nn {

namespace detail {

/// A batch presented as contiguous row-major elements of type T: a pointer
/// into the expression itself when it is already such a container, else an
/// evaluated copy.
template <class T>
struct contiguous_batch {
  xt::xarray<T, xt::layout_type::row_major> owned;
  const T* data = nullptr;
  std::size_t rows = 0;
  std::size_t row_size = 0;
};

template <class E>
bool is_row_major_contiguous(const E& e) {
  if constexpr (xt::has_data_interface<E>::value) {
    if (e.layout() != xt::layout_type::row_major) return false;
    // strides of a dense row-major array (dimensions of size 1 may have any stride)
    std::size_t expect = 1;
    for (std::size_t d = e.dimension(); d-- > 0;) {
      if (e.shape()[d] != 1 && static_cast<std::size_t>(e.strides()[d]) != expect) return false;
      expect *= e.shape()[d];
    }
    return e.data_offset() == 0;
  } else {
    return false;
  }
}

/// `e` as rows of `row_size` values: a 1-D expression of exactly `row_size`
/// values is one row; otherwise the first dimension counts the rows and the
/// others (flattened) must hold `row_size` values.
template <class T, class E>
contiguous_batch<T> as_rows(const xt::xexpression<E>& expr, std::size_t row_size, const char* who) {
  const E& e = expr.derived_cast();
  contiguous_batch<T> b;
  b.row_size = row_size;
  const std::size_t dims = e.dimension();
  TINYLARGE_REQUIRE(dims >= 1, errc::shape_mismatch, std::string("tinylarge: ") + who + ": a 0-d array is no batch");
  if (dims == 1 && row_size != 1) {
    TINYLARGE_REQUIRE(e.size() == row_size, errc::shape_mismatch,
                      std::string("tinylarge: ") + who + ": a 1-D input must hold one sample of " +
                          std::to_string(row_size) + " values, it holds " + std::to_string(e.size()));
    b.rows = 1;
  } else {
    b.rows = e.shape()[0];
    const std::size_t per = b.rows == 0 ? 0 : e.size() / b.rows;
    TINYLARGE_REQUIRE(b.rows == 0 || per == row_size, errc::shape_mismatch,
                      std::string("tinylarge: ") + who + ": each sample must hold " + std::to_string(row_size) +
                          " values (the model's size), it holds " + std::to_string(per));
  }
  if constexpr (std::is_same_v<typename E::value_type, T> && xt::has_data_interface<E>::value) {
    if (is_row_major_contiguous(e)) {
      b.data = e.data();
      return b;
    }
  }
  b.owned = e;
  b.data = b.owned.data();
  return b;
}

/// Rank and shape of layer L's weights in storage order.
template <class L>
constexpr auto weight_shape() noexcept {
  if constexpr (L::kind == layer_kind::conv2d) {
    return std::array<std::size_t, 4>{L::out_channels, L::kernel, L::kernel, L::in_shape::c};
  } else if constexpr (L::kind == layer_kind::depthwise_conv2d) {
    return std::array<std::size_t, 2>{L::out_channels, L::kernel * L::kernel};
  } else {
    return std::array<std::size_t, 2>{L::out_channels, L::weight_count / L::out_channels};
  }
}

template <class Net, std::size_t I>
constexpr void require_weighted() noexcept {
  using L = typename Net::model::template layer<I>;
  static_assert(has_weights(L::kind), "tinylarge: weights<I> / biases<I>: layer I has no parameters");
}

template <class P, std::size_t N>
auto adapt_view(P* p, std::size_t n, const std::array<std::size_t, N>& shape) {
  return xt::adapt(p, n, xt::no_ownership(), shape);
}
}  // namespace detail

// ---------------------------------------------------------------------------
// Parameter and gradient views
// ---------------------------------------------------------------------------

/// All parameters of `net` (layer after layer, weights then biases) as a 1-D
/// view of its storage.
template <class Net>
auto parameters(Net& net) {
  auto p = net.parameters();
  return detail::adapt_view(p.data(), p.size(), std::array<std::size_t, 1>{p.size()});
}
/// All gradients of `net` (layout of `parameters`) as a 1-D view.
template <class Net>
auto gradients(Net& net) {
  auto g = net.gradients();
  return detail::adapt_view(g.data(), g.size(), std::array<std::size_t, 1>{g.size()});
}

namespace detail {
/// Layer I's weights within a flat array laid out as Model's parameters.
template <std::size_t I, class Net, class P>
auto weight_view(P* flat) {
  require_weighted<std::remove_const_t<Net>, I>();
  using Model = typename std::remove_const_t<Net>::model;
  using L = typename Model::template layer<I>;
  return adapt_view(flat + Model::template param_offset<I>, L::weight_count, weight_shape<L>());
}
/// Layer I's biases within such an array.
template <std::size_t I, class Net, class P>
auto bias_view(P* flat) {
  require_weighted<std::remove_const_t<Net>, I>();
  using Model = typename std::remove_const_t<Net>::model;
  using L = typename Model::template layer<I>;
  return adapt_view(flat + Model::template param_offset<I> + L::weight_count, L::bias_count,
                    std::array<std::size_t, 1>{L::bias_count});
}
}  // namespace detail

/// Layer I's weights as a view of `net`'s storage, shaped as the layer stores
/// them (see the file comment). Writing through it changes the network.
template <std::size_t I, class Net>
auto weights(Net& net) {
  return detail::weight_view<I, Net>(net.parameters().data());
}
/// Layer I's biases as a 1-D view of `net`'s storage.
template <std::size_t I, class Net>
auto biases(Net& net) {
  return detail::bias_view<I, Net>(net.parameters().data());
}
/// ∂loss/∂(layer I's weights), as accumulated by `backward`; shape of `weights<I>`.
template <std::size_t I, class Net>
auto weight_gradients(Net& net) {
  return detail::weight_view<I, Net>(net.gradients().data());
}
/// ∂loss/∂(layer I's biases), 1-D.
template <std::size_t I, class Net>
auto bias_gradients(Net& net) {
  return detail::bias_view<I, Net>(net.gradients().data());
}

/// Copy `values` (any xexpression of `param_count` values, in the layout of
/// `parameters`) into `net` — e.g. weights trained elsewhere.
/// @throws tl::shape_error when the element count differs.
template <class Net, class E>
void set_parameters(Net& net, const xt::xexpression<E>& values) {
  const auto& e = values.derived_cast();
  auto p = net.parameters();
  TINYLARGE_REQUIRE(e.size() == p.size(), errc::shape_mismatch,
                    "tinylarge: set_parameters: " + std::to_string(e.size()) + " values for a network of " +
                        std::to_string(p.size()) + " parameters");
  std::copy(e.begin(), e.end(), p.begin());
}

// ---------------------------------------------------------------------------
// Batches
// ---------------------------------------------------------------------------

/// Forward pass of a batch: `x` is N × input_size (or N × any shape holding
/// input_size values per sample; a 1-D array of input_size values is one
/// sample), any element type convertible to float.
/// @return N × output_size outputs (a copy: valid after the next call)
/// @throws tl::shape_error when a sample does not hold `input_size` values.
template <class Net, class E>
xt::xtensor<float, 2> forward(Net& net, const xt::xexpression<E>& x, bool training = false) {
  using Model = typename Net::model;
  const auto b = detail::as_rows<float>(x, Model::input_size, "forward");
  xt::xtensor<float, 2> out = xt::xtensor<float, 2>::from_shape({b.rows, Model::output_size});
  if (b.rows == 0) return out;
  const float* y = net.forward(b.data, b.rows, training);
  std::copy(y, y + b.rows * Model::output_size, out.data());
  return out;
}

/// The predicted class of each sample (argmax of the output, first on ties).
template <class Net, class E>
xt::xtensor<std::size_t, 1> predict(Net& net, const xt::xexpression<E>& x) {
  using Model = typename Net::model;
  const xt::xtensor<float, 2> out = forward(net, x, false);
  const std::size_t n = out.shape()[0];
  xt::xtensor<std::size_t, 1> cls = xt::xtensor<std::size_t, 1>::from_shape({n});
  for (std::size_t i = 0; i < n; ++i) {
    const float* o = out.data() + i * Model::output_size;
    std::size_t a = 0;
    for (std::size_t j = 1; j < Model::output_size; ++j) a = o[j] > o[a] ? j : a;
    cls(i) = a;
  }
  return cls;
}

namespace detail {
/// Targets per sample: 1 class label, or the output width for float targets.
template <class Loss, class Model>
constexpr std::size_t target_size() noexcept {
  return std::is_integral_v<typename Loss::target_type> ? 1 : Model::output_size;
}
}  // namespace detail

/// `nn::evaluate` on xtensor data: `x` as for `forward`, `y` the N targets
/// (class labels for cross-entropy, N × output_size for MSE).
/// @throws tl::shape_error when x and y disagree or do not fit the model.
template <class Net, loss_policy Loss, class EX, class EY>
evaluation evaluate(Net& net, Loss loss, const xt::xexpression<EX>& x, const xt::xexpression<EY>& y,
                    std::size_t batch = 256) {
  using Model = typename Net::model;
  using Target = typename Loss::target_type;
  const auto xb = detail::as_rows<float>(x, Model::input_size, "evaluate");
  const auto yb = detail::as_rows<Target>(y, detail::target_size<Loss, Model>(), "evaluate");
  TINYLARGE_REQUIRE(xb.rows == yb.rows && xb.rows > 0, errc::shape_mismatch,
                    "tinylarge: evaluate: " + std::to_string(xb.rows) + " samples but " + std::to_string(yb.rows) +
                        " targets (both must be positive and equal)");
  return evaluate(net, loss, labelled_view<Target>{xb.data, yb.data, xb.rows, Model::input_size, yb.row_size}, batch);
}

/// A callback of `fit` (train.hpp): `bool on_epoch_end(const epoch_report&, Net&)`.
template <class C, class Net>
concept fit_callback = requires(C& c, const epoch_report& r, Net& net) {
  { c.on_epoch_end(r, net) } -> std::convertible_to<bool>;
};

/// `nn::fit` on xtensor data (`x`, `y` as for `evaluate`); the training loop
/// is train.hpp's, unchanged.
template <class Net, optimizer_policy Opt, loss_policy Loss, class EX, class EY, fit_callback<Net>... Callbacks>
std::vector<epoch_report> fit(Net& net, const Opt& opt, Loss loss, const xt::xexpression<EX>& x,
                              const xt::xexpression<EY>& y, const fit_options& options = {},
                              Callbacks&&... callbacks) {
  using Model = typename Net::model;
  using Target = typename Loss::target_type;
  const auto xb = detail::as_rows<float>(x, Model::input_size, "fit");
  const auto yb = detail::as_rows<Target>(y, detail::target_size<Loss, Model>(), "fit");
  TINYLARGE_REQUIRE(xb.rows == yb.rows, errc::shape_mismatch,
                    "tinylarge: fit: " + std::to_string(xb.rows) + " samples but " + std::to_string(yb.rows) +
                        " targets");
  const labelled_view<Target> train{xb.data, yb.data, xb.rows, Model::input_size, yb.row_size};
  return fit(net, opt, loss, train, options, static_cast<const labelled_view<Target>*>(nullptr),
             std::forward<Callbacks>(callbacks)...);
}

/// `nn::fit` on xtensor data with a validation set (`x_val`, `y_val`)
/// evaluated after every epoch.
template <class Net, optimizer_policy Opt, loss_policy Loss, class EX, class EY, class EXV, class EYV,
          fit_callback<Net>... Callbacks>
std::vector<epoch_report> fit(Net& net, const Opt& opt, Loss loss, const xt::xexpression<EX>& x,
                              const xt::xexpression<EY>& y, const fit_options& options,
                              const xt::xexpression<EXV>& x_val, const xt::xexpression<EYV>& y_val,
                              Callbacks&&... callbacks) {
  using Model = typename Net::model;
  using Target = typename Loss::target_type;
  const auto xb = detail::as_rows<float>(x, Model::input_size, "fit");
  const auto yb = detail::as_rows<Target>(y, detail::target_size<Loss, Model>(), "fit");
  const auto xv = detail::as_rows<float>(x_val, Model::input_size, "fit (validation)");
  const auto yv = detail::as_rows<Target>(y_val, detail::target_size<Loss, Model>(), "fit (validation)");
  TINYLARGE_REQUIRE(xb.rows == yb.rows && xv.rows == yv.rows && xv.rows > 0, errc::shape_mismatch,
                    "tinylarge: fit: samples and targets differ in number (or the validation set is empty)");
  const labelled_view<Target> train{xb.data, yb.data, xb.rows, Model::input_size, yb.row_size};
  const labelled_view<Target> val{xv.data, yv.data, xv.rows, Model::input_size, yv.row_size};
  return fit(net, opt, loss, train, options, &val, std::forward<Callbacks>(callbacks)...);
}

// ---------------------------------------------------------------------------
// Quantized tensors
// ---------------------------------------------------------------------------

/// An affine-quantized tensor: the real value of code q is
/// scale[k] · (q − zero_point[k]), k = ⌊i / group_size⌋ for element i in C
/// order (a weight tensor: one scale per output channel, group_size = values
/// per channel; a client update: one per chunk). `Values` is an xtensor
/// container or a view of a network's int8 storage.
template <class Values>
struct quantized_tensor {
  Values values;                            ///< the int8 codes
  xt::xtensor<float, 1> scale;              ///< one per group
  xt::xtensor<std::int32_t, 1> zero_point;  ///< one per group
  std::size_t group_size = 0;               ///< codes per scale (0: size / scale count)

  /// The real values, shape of `values` (`tl::dequantize` per element).
  xt::xarray<float> dequantize() const {
    xt::xarray<float> out = xt::xarray<float>::from_shape(values.shape());
    const std::size_t n = values.size(), groups = scale.size();
    const std::size_t per = group_size != 0 ? group_size : (groups == 0 ? 1 : (n + groups - 1) / groups);
    TINYLARGE_REQUIRE(groups == zero_point.size() && (n == 0 || (n - 1) / per < groups), errc::shape_mismatch,
                      "tinylarge: quantized_tensor: too few scales or zero points for the values");
    std::size_t i = 0;
    for (auto it = values.begin(); it != values.end(); ++it, ++i) {
      const std::size_t k = i / per;
      out.data()[i] = tinylarge::dequantize(static_cast<std::int8_t>(*it), quant_params{scale(k), zero_point(k)});
    }
    return out;
  }
};

/// Layer I's int8 weights of a `quantized_network`: values as a view of its
/// storage (shape of `weights<I>`), the per-output-channel real scales, and
/// zero points 0 (weights are symmetric). Per-tensor policies hold the one
/// scale replicated per channel.
template <std::size_t I, class QNet>
auto quantized_weights(QNet& q) {
  using Model = typename QNet::model;
  using L = typename Model::template layer<I>;
  static_assert(has_weights(L::kind), "tinylarge: quantized_weights<I>: layer I has no weights");
  auto values = detail::adapt_view(q.weights() + QNet::layout.weight[I], L::weight_count, detail::weight_shape<L>());
  quantized_tensor<decltype(values)> t{std::move(values), xt::xtensor<float, 1>::from_shape({L::bias_count}),
                                       xt::zeros<std::int32_t>(std::array<std::size_t, 1>{L::bias_count}),
                                       L::weight_count / L::bias_count};
  const float* s = q.weight_scales() + QNet::layout.bias[I];
  std::copy(s, s + L::bias_count, t.scale.begin());
  return t;
}

}  // namespace tinylarge::nn
