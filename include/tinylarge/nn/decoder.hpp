/// @file nn/decoder.hpp
/// @brief `incremental_decoder<Model>`: whole-model incremental decoding of a
///        causal token model, one position at a time, with a `kv_cache` per
///        attention layer (see docs/transformers.md, "Incremental decoding").
///
/// @code
///   using lm = tl::sequential<tl::input<1, 64, 1>, tl::embedding<96, 64>, tl::learned_positions<64, 64>,
///                             tl::residual<tl::layer_norm<64>, tl::multi_head_attention<64, 4, true>>,
///                             tl::residual<tl::layer_norm<64>, tl::conv2d<256, 1>, tl::gelu, tl::conv2d<64, 1>>,
///                             tl::layer_norm<64>, tl::conv2d<96, 1>>;     // logits of the next token per position
///   tl::nn::network<lm> net(1);                                           // … trained …
///   auto dec = std::make_unique<tl::nn::incremental_decoder<lm>>(net.parameters());
///   std::span<const float, 96> logits = dec->append(token);               // position dec->size() − 1
/// @endcode
///
/// A model the decoder takes is a `sequential<...>` whose every layer is
///  - position-wise: `layer_norm`, `rms_norm`, `gelu`, `silu`, `relu`,
///    `relu6`, `sigmoid`, `tanh_act`, `softmax` (over channels), `dropout`
///    (the identity at inference), `embedding`, `conv2d<Out, 1>` (stride 1,
///    no padding: the position-wise linear layer);
///  - a position table: `learned_positions`, `sinusoidal_positions`;
///  - causal attention, `multi_head_attention<Dim, Heads, true>`;
///  - or a `residual<...>` block of these (nested blocks too).
/// Anything else (a `flatten` + `dense` head, pooling, a convolution wider
/// than 1×1, non-causal attention) mixes positions or sees the future, and
/// fails to compile with "incremental_decoder<Model>: …".
///
/// Each position-wise layer runs its own `forward` bound to one position
/// (`Layer::bind<shape<1, 1, C>>`, the same parameters), attention runs
/// `kv_cache::append`, so there is one implementation of each layer. The
/// results equal the full causal forward pass's row up to fp32 rounding (the
/// GEMM kernel may sum a one-row product in another order than a T-row one;
/// tests/test_nn.cpp bounds the difference, figures in the docs).
///
/// No heap: the caches and row buffers are fixed-size members (K and V of T
/// positions per attention layer), so the object is large — put it on the
/// heap (`std::make_unique`) or in static storage. The parameters are read
/// where they are, not copied: keep them alive and unchanged while decoding
/// (`clear()` after changing them).
#pragma once

#include <cstddef>
#include <span>
#include <tuple>
#include <utility>

#include "../core/error.hpp"
#include "layers.hpp"
#include "sequential.hpp"
#include "shape.hpp"
#include "transformer.hpp"

namespace tinylarge::nn {

namespace detail {

/// True when bound layer B computes each position from that position's row
/// alone, so that it can run bound to one position.
template <class B>
constexpr bool decodes_row_wise() noexcept {
  constexpr layer_kind k = B::kind;
  if constexpr (k == layer_kind::conv2d) {
    return B::kernel == 1 && B::stride == 1 && B::pad == 0;
  } else {
    return k == layer_kind::layer_norm || k == layer_kind::rms_norm || k == layer_kind::gelu ||
           k == layer_kind::silu || k == layer_kind::relu || k == layer_kind::relu6 || k == layer_kind::sigmoid ||
           k == layer_kind::tanh || k == layer_kind::softmax || k == layer_kind::dropout ||
           k == layer_kind::embedding;
  }
}

template <class B>
constexpr bool decodable() noexcept;

template <class B, std::size_t... J>
constexpr bool residual_decodable(std::index_sequence<J...>) noexcept {
  return (decodable<typename B::template layer<J>>() && ...);
}

/// True when bound layer B is one the incremental decoder runs (see the file comment).
template <class B>
constexpr bool decodable() noexcept {
  constexpr layer_kind k = B::kind;
  if constexpr (k == layer_kind::multi_head_attention) {
    return B::descriptor::causal;
  } else if constexpr (k == layer_kind::residual) {
    return residual_decodable<B>(std::make_index_sequence<B::size>{});
  } else {
    return k == layer_kind::learned_positions || k == layer_kind::sinusoidal_positions || decodes_row_wise<B>();
  }
}

/// One check per top-level layer, so that the compiler names the layer (`Layer`) that does not fit.
template <class Layer>
struct decoder_layer_check {
  static_assert(decodable<Layer>(),
                "tinylarge: incremental_decoder<Model>: every layer must work position by position (norms, "
                "activations, dropout, embedding, conv2d<Out, 1>), add positions, be causal attention "
                "(multi_head_attention<Dim, Heads, true>) or a residual<...> block of these; `Layer` in "
                "decoder_layer_check<Layer> is not (a flatten + dense head or pooling mixes positions, non-causal "
                "attention sees later ones)");
  static constexpr bool value = decodable<Layer>();
};

/// What bound layer B keeps from position to position: nothing, except a
/// `kv_cache` for attention and the states of a residual block's inner layers.
template <class B>
struct decode_state {
  void clear() noexcept {}
};
/// The states of the layers `Chain::layer<J>` of a chain (a `sequential` model or a residual block), J in `Seq`.
template <class Chain, class Seq>
struct chain_decode_states;
template <class Chain, std::size_t... J>
struct chain_decode_states<Chain, std::index_sequence<J...>> {
  using type = std::tuple<decode_state<typename Chain::template layer<J>>...>;
};
template <class Tuple>
void clear_states(Tuple& states) noexcept {
  std::apply([](auto&... s) { (s.clear(), ...); }, states);
}
template <class B>
  requires(B::kind == layer_kind::multi_head_attention)
struct decode_state<B> {
  kv_cache<B> cache;
  void clear() noexcept { cache.clear(); }
};
template <class B>
  requires(B::kind == layer_kind::residual)
struct decode_state<B> {
  typename chain_decode_states<B, std::make_index_sequence<B::size>>::type inner;
  void clear() noexcept { clear_states(inner); }
};

/// The widest row (channels of one position) among the inner layers' outputs of B, B's input included.
template <class B>
constexpr std::size_t widest_row() noexcept {
  std::size_t w = B::in_shape::c > B::out_shape::c ? B::in_shape::c : B::out_shape::c;
  if constexpr (B::kind == layer_kind::residual) {
    [&]<std::size_t... J>(std::index_sequence<J...>) {
      ((w = widest_row<typename B::template layer<J>>() > w ? widest_row<typename B::template layer<J>>() : w), ...);
    }(std::make_index_sequence<B::size>{});
  }
  return w;
}

/// Position `t` through bound layer B: `x` its input row (B::in_shape::c
/// floats), `y` its output row (B::out_shape::c floats), `p` B's parameters.
template <class B>
void decode_row(const float* p, const float* x, float* y, std::size_t t, decode_state<B>& state) {
  constexpr std::size_t c = B::in_shape::c;
  if constexpr (B::kind == layer_kind::multi_head_attention) {
    state.cache.append(p, x, y);
  } else if constexpr (B::kind == layer_kind::residual) {
    // y = x + F(x), F the inner chain, as residual::bind::forward sums it.
    constexpr std::size_t w = widest_row<B>();
    float buf[2][w];
    const float* cur = x;
    [&]<std::size_t... J>(std::index_sequence<J...>) {
      ((decode_row<typename B::template layer<J>>(p + B::template param_offset<J>, cur, buf[J % 2], t,
                                                  std::get<J>(state.inner)),
        cur = buf[J % 2]),
       ...);
    }(std::make_index_sequence<B::size>{});
    for (std::size_t i = 0; i < c; ++i) y[i] = x[i] + cur[i];
  } else if constexpr (B::kind == layer_kind::learned_positions) {
    for (std::size_t i = 0; i < c; ++i) y[i] = x[i] + p[t * c + i];
  } else if constexpr (B::kind == layer_kind::sinusoidal_positions) {
    for (std::size_t i = 0; i < c; ++i) y[i] = x[i] + B::descriptor::value(t, i);
  } else {
    // The layer's own forward pass, bound to a single position (same parameter layout).
    using one = typename B::descriptor::template bind<shape<1, 1, c>>;
    static_assert(one::param_count == B::param_count && one::out_shape::c == B::out_shape::c,
                  "tinylarge: internal error: a position-wise layer bound to one position changed its parameters");
    float workspace[one::workspace_per_sample + 1];
    context ctx{workspace, nullptr, nullptr, false};
    one::forward(p, x, y, 1, ctx);
  }
}

}  // namespace detail

/// Incremental (autoregressive) decoding of a causal token model: `append`
/// feeds one position and returns the model's output row for it — for a
/// language model the logits of the next token — from the keys and values
/// the attention layers cached for the earlier positions, without
/// recomputing them. See the file comment for the layers it takes.
///
/// Errors (TINYLARGE_REQUIRE: on the host a `tl::error`), checked before
/// any layer runs, so a refused call changes nothing: parameters of the
/// wrong size (`errc::shape_mismatch`), an input row of the wrong width
/// (`errc::shape_mismatch`), a token id ≥ Vocab (`errc::invalid_argument`),
/// and a position past the model's sequence length, `capacity`
/// (`errc::capacity_exceeded`: `clear()` and feed a shorter context again
/// to go on). A row value that is not a token id is refused by the
/// embedding's own check when it runs (as layer 0: before anything else).
/// @tparam Model a `sequential<...>` over H×W positions (capacity H·W),
///         e.g. `input<1, T, 1>`, `embedding`, positions, pre-norm blocks
///         with causal attention, a final norm and `conv2d<Vocab, 1>`
template <sequential_model Model>
class incremental_decoder {
  // Each layer's check names it in its own static_assert; no second assertion here, and no states
  // (kv_caches) for a model that failed, so that one message is printed per layer that does not fit.
  static constexpr bool layers_ok = []<std::size_t... I>(std::index_sequence<I...>) {
    return (detail::decoder_layer_check<typename Model::template layer<I>>::value && ...);
  }(std::make_index_sequence<Model::size>{});

  using states = typename detail::chain_decode_states<Model, std::make_index_sequence<layers_ok ? Model::size : 0>>::type;

  static constexpr std::size_t widest = [] {
    std::size_t w = Model::input_shape::c;
    Model::for_each_layer([&]<std::size_t I>() {
      const std::size_t r = detail::widest_row<typename Model::template layer<I>>();
      w = r > w ? r : w;
    });
    return w;
  }();

 public:
  /// Positions a sequence may have (the model's H·W).
  static constexpr std::size_t capacity = Model::input_shape::h * Model::input_shape::w;
  /// Floats of one position's input (1 for token ids).
  static constexpr std::size_t input_width = Model::input_shape::c;
  /// Floats of one position's output (Vocab logits for a language model).
  static constexpr std::size_t output_width = Model::output_shape::c;
  /// True when layer 0 is an `embedding`: `append(token)` is available.
  static constexpr bool takes_tokens = Model::template layer<0>::kind == layer_kind::embedding;

  /// @param params the model's parameters (`network::parameters()`), read in
  ///        place: keep them alive and unchanged while decoding
  explicit incremental_decoder(std::span<const float> params) : params_(params.data()) {
    TINYLARGE_REQUIRE(params.size() == Model::param_count, errc::shape_mismatch,
                      "tinylarge: incremental_decoder: the parameter array's size differs from Model::param_count");
  }

  /// Positions fed since construction or the last `clear()`.
  std::size_t size() const noexcept { return n_; }
  /// Forget every position (start a new sequence).
  void clear() noexcept {
    detail::clear_states(states_);
    n_ = 0;
  }

  /// Feed position `size()` as a row of `input_width` floats (for a token
  /// model, the id as an exact float) and return its output row (valid until
  /// the next call).
  std::span<const float, output_width> append_row(std::span<const float> row) {
    TINYLARGE_REQUIRE(row.size() == input_width, errc::shape_mismatch,
                      "tinylarge: incremental_decoder::append_row: the row must have input_width floats (the "
                      "channels of one position of the model's input)");
    TINYLARGE_REQUIRE(n_ < capacity, errc::capacity_exceeded,
                      "tinylarge: incremental_decoder::append: the sequence is full (capacity = the model's "
                      "sequence length); clear() it and feed a shorter context to go on");
    for (std::size_t i = 0; i < input_width; ++i) row_[0][i] = row[i];
    const float* cur = row_[0];
    Model::for_each_layer([&]<std::size_t I>() {
      using B = typename Model::template layer<I>;
      float* out = row_[(I + 1) % 2];
      detail::decode_row<B>(params_ + Model::template param_offset<I>, cur, out, n_, std::get<I>(states_));
      cur = out;
    });
    ++n_;
    out_ = cur;
    return std::span<const float, output_width>(out_, output_width);
  }

  /// Feed token `token` at position `size()` and return the model's output
  /// row there (for a language model, the logits of the token after it).
  std::span<const float, output_width> append(std::size_t token)
    requires takes_tokens
  {
    TINYLARGE_REQUIRE(token < Model::template layer<0>::descriptor::vocab, errc::invalid_argument,
                      "tinylarge: incremental_decoder::append: the token id is out of range (>= Vocab of the "
                      "model's embedding)");
    const float id = static_cast<float>(token);
    return append_row(std::span<const float>(&id, 1));
  }

  /// The output row of the last position fed (empty before the first).
  std::span<const float> output() const noexcept {
    return n_ == 0 ? std::span<const float>() : std::span<const float>(out_, output_width);
  }

 private:
  const float* params_;
  states states_{};
  float row_[2][widest]{};
  const float* out_ = nullptr;
  std::size_t n_ = 0;
};

}  // namespace tinylarge::nn
