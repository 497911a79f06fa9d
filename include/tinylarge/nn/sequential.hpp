/// @file nn/sequential.hpp
/// @brief `sequential<Layers...>`: a model as a type, with shapes checked and
///        sizes computed at compile time.
///
/// @code
///   using lenet_300_100 = tl::sequential<tl::dense<784, 300>, tl::relu,
///                                        tl::dense<300, 100>, tl::relu,
///                                        tl::dense<100, 10>>;
///   static_assert(lenet_300_100::param_count == 266'610);
///   static std::array<std::int8_t, lenet_300_100::arena_bytes<tl::int8_per_channel>> arena;
/// @endcode
///
/// The first element may be `input<N>` or `input<H, W, C>`; a leading
/// `dense<In, …>` implies `input<In>`. Each descriptor is bound to the output
/// shape of its predecessor through `check_compatible<Prev, Next, Shape>`, so
/// `sequential<dense<784, 300>, dense<100, 10>>` fails to compile with a
/// static_assert whose instantiation context names both layers.
///
/// The model type is pure description: parameters live in a `network`
/// (fp32, trainable) or a `quantized_network` (int8, inference), whose
/// storage and precision are policies.
#pragma once

#include <array>
#include <cstddef>
#include <initializer_list>
#include <type_traits>
#include <utility>

#include "layers.hpp"
#include "shape.hpp"

namespace tinylarge::nn {

namespace detail {
/// A descriptor may explain a rejection itself: `Next::diagnose<Shape>` is a
/// class whose static_assert names the template parameter that does not fit
/// (`accepts` must stay a plain bool: concepts probe it with any shape).
template <class L, class S>
constexpr bool diagnose_shape() noexcept {
  if constexpr (requires { typename L::template diagnose<S>; }) (void)L::template diagnose<S>::value;
  return true;
}
}  // namespace detail

/// Checks that layer `Next` accepts `Shape`, the output shape of layer `Prev`.
/// On failure the compiler's instantiation context prints
/// `check_compatible<Prev, Next, Shape>`: the two layers and the shape (and
/// the layer's own message when it has a `diagnose<Shape>`).
template <class Prev, class Next, class Shape>
struct check_compatible {
  static_assert(detail::diagnose_shape<Next, Shape>());
  static constexpr bool value = Next::template accepts<Shape>;
  static_assert(value,
                "tinylarge: incompatible consecutive layers in sequential<...>: layer `Next` does not accept "
                "`Shape`, the output shape of layer `Prev` (read the template arguments of "
                "check_compatible<Prev, Next, Shape> in the instantiation context below)");
};

namespace detail {

template <class... T>
struct type_list {};

template <class T, class List>
struct prepend;
template <class T, class... Ts>
struct prepend<T, type_list<Ts...>> {
  using type = type_list<T, Ts...>;
};

/// Stand-in for a layer that failed `check_compatible`, so that one error is
/// reported instead of a cascade.
template <class S>
struct invalid_layer : layer_base<invalid_layer<S>, S, S, layer_kind::flatten> {};

template <class Shape, class Prev, class... Ls>
struct bind_chain {
  using type = type_list<>;
  using out_shape = Shape;
};
template <class Shape, class Prev, class L, class... Rest>
struct bind_chain<Shape, Prev, L, Rest...> {
  static_assert(layer_descriptor<L>,
                "tinylarge: every element of sequential<...> after the first must be a layer descriptor "
                "(dense, conv2d, relu, ...)");
  static constexpr bool ok = check_compatible<Prev, L, Shape>::value;
  using bound = std::conditional_t<ok, typename L::template bind<Shape>, invalid_layer<Shape>>;
  using next = bind_chain<typename bound::out_shape, L, Rest...>;
  using type = typename prepend<bound, typename next::type>::type;
  using out_shape = typename next::out_shape;
};

template <class T>
concept has_implied_input = requires { typename T::implied_input; };

/// Splits `First, Rest...` into the input marker and the layer descriptors.
template <class First, class... Rest>
struct model_head {
  static_assert(has_implied_input<First>,
                "tinylarge: sequential<...> cannot infer the input shape of its first layer: start the model "
                "with tl::input<N> or tl::input<H, W, C>");
  using input_marker = typename First::implied_input;
  using chain = bind_chain<typename input_marker::shape_type, input_marker, First, Rest...>;
};
template <class First, class... Rest>
  requires is_input<First>::value
struct model_head<First, Rest...> {
  using input_marker = First;
  using chain = bind_chain<typename First::shape_type, First, Rest...>;
};

template <std::size_t I, class List>
struct type_at;
template <std::size_t I, class T, class... Ts>
struct type_at<I, type_list<T, Ts...>> : type_at<I - 1, type_list<Ts...>> {};
template <class T, class... Ts>
struct type_at<0, type_list<T, Ts...>> {
  using type = T;
};

/// True for layers that the batch-1 inference path runs in place (or skips):
/// they need no second activation buffer.
constexpr bool runs_in_place(layer_kind k) noexcept {
  return k == layer_kind::relu || k == layer_kind::relu6 || k == layer_kind::sigmoid || k == layer_kind::tanh ||
         k == layer_kind::softmax || k == layer_kind::flatten || k == layer_kind::dropout;
}

/// Arena elements layer B needs at batch 1: its input, plus (unless it runs
/// in place) its output and scratch.
template <class B>
constexpr std::size_t arena_need() noexcept {
  return runs_in_place(B::kind) ? B::in_shape::size
                                : B::in_shape::size + B::out_shape::size + B::inference_scratch;
}

constexpr std::size_t max_of(std::initializer_list<std::size_t> v) noexcept {
  std::size_t m = 0;
  for (std::size_t x : v) m = x > m ? x : m;
  return m;
}

template <class List>
struct model_facts;
template <class... B>
struct model_facts<type_list<B...>> {
  static_assert((bound_layer<B> && ...), "tinylarge: internal error: a bound layer misses a required member");
  static constexpr std::size_t size = sizeof...(B);
  static constexpr std::size_t param_count = (std::size_t{0} + ... + B::param_count);
  static constexpr std::size_t weight_count = (std::size_t{0} + ... + B::weight_count);
  static constexpr std::size_t bias_count = (std::size_t{0} + ... + B::bias_count);
  static constexpr std::size_t macs = (std::size_t{0} + ... + B::macs);
  static constexpr std::size_t max_output = max_of({B::out_shape::size...});
  static constexpr std::size_t max_workspace_per_sample = max_of({B::workspace_per_sample...});
  static constexpr std::size_t arena_elements = max_of({arena_need<B>()...});
};

/// Calls `f(offset, count)` for every run of trainable parameters of bound
/// layer L (a layer with frozen parameters, `nn::lora`, declares
/// `trainable_count` and stores its trainable parameters first; a block of
/// inner layers, `residual<...>`, has its inner layers' runs; every other
/// layer trains all of its `param_count`), `offset` counted from `base` (one run per layer, one per inner
/// layer of a block).
template <class L, class F>
constexpr void for_each_trainable_run(std::size_t base, F&& f) {
  if constexpr (requires { L::trainable_count; }) {
    f(base, std::size_t{L::trainable_count});
  } else if constexpr (requires { typename L::layer_list; L::size; }) {
    [&]<std::size_t... J>(std::index_sequence<J...>) {
      (for_each_trainable_run<typename L::template layer<J>>(base + L::template param_offset<J>, f), ...);
    }(std::make_index_sequence<L::size>{});
  } else {
    f(base, std::size_t{L::param_count});
  }
}

}  // namespace detail

/// A run of consecutive parameters in the flat parameter array.
struct param_range {
  std::size_t offset = 0;
  std::size_t count = 0;
};

/// A feed-forward model: a compile-time list of layers bound to their shapes.
///
/// All members are compile-time constants or types; a `sequential` has no
/// data. Parameters are laid out layer after layer, each layer's weights
/// followed by its biases (`param_offset<I>`).
/// @tparam Layers an optional `input<...>` followed by layer descriptors
template <class... Layers>
struct sequential {
  static_assert(sizeof...(Layers) > 0, "tinylarge: sequential<> needs at least one layer");

 private:
  using head = detail::model_head<Layers...>;
  using chain = typename head::chain;
  using facts = detail::model_facts<typename chain::type>;

 public:
  using layer_list = typename chain::type;
  using input_shape = typename head::input_marker::shape_type;
  using output_shape = typename chain::out_shape;

  /// Number of layers (the `input<>` marker is not one).
  static constexpr std::size_t size = facts::size;
  /// The I-th bound layer.
  template <std::size_t I>
  using layer = typename detail::type_at<I, layer_list>::type;

  static constexpr std::size_t input_size = input_shape::size;    ///< features per input sample
  static constexpr std::size_t output_size = output_shape::size;  ///< values per output sample
  static constexpr std::size_t param_count = facts::param_count;  ///< all parameters, frozen ones included
  static constexpr std::size_t weight_count = facts::weight_count;
  static constexpr std::size_t bias_count = facts::bias_count;
  /// Multiply-accumulates of one forward pass of one sample (pooling counts
  /// one operation per window element).
  static constexpr std::size_t macs = facts::macs;
  /// Largest activation (input included), in elements per sample.
  static constexpr std::size_t max_activation =
      facts::max_output > input_size ? facts::max_output : input_size;
  /// fp32 scratch per sample that training needs (im2col of the widest conv).
  static constexpr std::size_t max_workspace_per_sample = facts::max_workspace_per_sample;

  /// Elements of the batch-1 inference arena: two ping-pong activation
  /// buffers placed at the two ends of one array, plus the scratch of the
  /// layer between them — max over layers of (in + out + scratch); layers
  /// that run in place (activations, flatten, dropout) count only their input.
  static constexpr std::size_t arena_elements = facts::arena_elements;
  /// Bytes of the batch-1 inference arena for a precision policy (int8: one
  /// byte per element). `quantized_network` uses this much for a model of
  /// dense layers and activations; with conv layers it adds the int8 kernels'
  /// im2col scratch (`quantized_network::arena_bytes`).
  /// @tparam P a precision policy (`tl::fp32`, `tl::int8_per_channel`, …)
  template <class P>
  static constexpr std::size_t arena_bytes = arena_elements * (P::storage_bits / 8);

  /// Offset of layer I's parameters in the flat parameter array.
  template <std::size_t I>
  static constexpr std::size_t param_offset = [] {
    std::size_t off = 0;
    [&]<std::size_t... J>(std::index_sequence<J...>) { ((off += layer<J>::param_count), ...); }(
        std::make_index_sequence<I>{});
    return off;
  }();

  /// True when layer I is a relu / relu6 that the int8 path fuses into the
  /// dense or convolution layer before it (as the requantization clamp).
  template <std::size_t I>
  static constexpr bool fused_into_previous = [] {
    if constexpr (I == 0) {
      return false;
    } else {
      constexpr layer_kind k = layer<I>::kind;
      return (k == layer_kind::relu || k == layer_kind::relu6) && has_weights(layer<I - 1>::kind);
    }
  }();

  /// Calls `f.template operator()<I>()` for I = 0 … size−1, in order.
  template <class F>
  static constexpr void for_each_layer(F&& f) {
    [&]<std::size_t... I>(std::index_sequence<I...>) { (f.template operator()<I>(), ...); }(
        std::make_index_sequence<size>{});
  }
  /// Calls `f.template operator()<I>()` for I = size−1 … 0 (the backward order).
  template <class F>
  static constexpr void for_each_layer_reverse(F&& f) {
    [&]<std::size_t... I>(std::index_sequence<I...>) { (f.template operator()<size - 1 - I>(), ...); }(
        std::make_index_sequence<size>{});
  }

  /// The trainable runs of the parameter array, adjacent runs joined: one
  /// run [0, param_count) unless a layer has frozen parameters (`nn::lora`).
  /// Optimizers step only these (`nn::trainable_state`) and
  /// `network::zero_gradients` zeroes only these.
  static constexpr auto trainable_ranges = [] {
    constexpr std::size_t runs = [] {
      std::size_t n = 0, end = ~std::size_t{0};
      for_each_layer([&]<std::size_t I>() {
        detail::for_each_trainable_run<layer<I>>(param_offset<I>, [&](std::size_t o, std::size_t c) {
          if (c == 0) return;
          if (o != end) ++n;
          end = o + c;
        });
      });
      return n;
    }();
    std::array<param_range, runs> r{};
    std::size_t n = 0, end = ~std::size_t{0};
    for_each_layer([&]<std::size_t I>() {
      detail::for_each_trainable_run<layer<I>>(param_offset<I>, [&](std::size_t o, std::size_t c) {
        if (c == 0) return;
        if (o == end) {
          r[n - 1].count += c;
        } else {
          r[n++] = {o, c};
        }
        end = o + c;
      });
    });
    return r;
  }();
  /// Parameters that training updates (`param_count` minus the frozen ones).
  static constexpr std::size_t trainable_count = [] {
    std::size_t n = 0;
    for (const param_range& r : trainable_ranges) n += r.count;
    return n;
  }();
};

namespace detail {
template <class T>
struct is_sequential : std::false_type {};
template <class... L>
struct is_sequential<sequential<L...>> : std::true_type {};
}  // namespace detail

/// A `sequential<...>` model type.
template <class M>
concept sequential_model = detail::is_sequential<M>::value;

}  // namespace tinylarge::nn
