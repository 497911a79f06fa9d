/// @file nn/lora.hpp
/// @brief `lora<dense<In, Out>, Rank, Alpha>`: a dense layer with a frozen
///        weight W₀ and a trained low-rank correction (LoRA), and
///        `merge_lora` / `load_lora_base` between it and the plain model.
///
/// LoRA (Hu et al., "LoRA: Low-Rank Adaptation of Large Language Models",
/// ICLR 2022): the pre-trained W₀ ∈ ℝ^{Out×In} and bias b stay frozen and
/// the layer learns A ∈ ℝ^{r×In}, B ∈ ℝ^{Out×r}:
///
///     y = x·W₀ᵀ + b + s·(x·Aᵀ)·Bᵀ,   s = Alpha / Rank,
///
/// computed as it is written — one GEMM with W₀ and two thin GEMMs through
/// the r-wide t = x·Aᵀ (the library's `kernels::dense_f32` / `gemm_f32`) —
/// never as x·(W₀ + s·B A)ᵀ. Backward, with u = dy·B (B × r):
///
///     dx = dy·W₀ + s·u·A,   dA += s·uᵀ·x,   dB += s·dyᵀ·t
///
/// so a step costs the forward GEMM, the dx GEMM and O(r·(In + Out)) per
/// sample — no Out×In weight gradient, no W₀ + s·B A (the network's gradient
/// slots of W₀, b and s are never written).
///
/// Parameter layout (the trainable ones first, `trainable_count` of them):
/// A [Rank][In], B [Out][Rank], then the frozen W₀ [Out][In], b [Out] and the
/// scale s (one value, `Alpha / Rank` after `initialize`; a workflow with a
/// run-time α writes its own). Optimizers see only A and B
/// (`sequential::trainable_ranges`, `nn::trainable_state`, used by `fit`).
/// `initialize` draws A from N(0, σ²) with σ = 1/√In unless
/// `InitStddevPerMille` is given, sets B = 0 (so the layer starts as the base),
/// and initialises W₀ and b as the wrapped dense layer would; load a
/// pre-trained base with `load_lora_base`.
///
/// Precision: in an fp16 / bf16 network (or `with_precision<lora<…>, P>`)
/// every GEMM above runs on operands rounded to P with fp32 accumulation, as
/// dense layers do (nn/lowp.hpp, `lora_ops`); A, B and their gradients stay
/// fp32 master values. An int8 precision, fake quantization, int8
/// conversion and npz export refuse the wrapper at compile time
/// (`fp32_only(layer_kind::lora)`): `merge_lora` gives the plain model,
/// W = W₀ + s·B A, to deploy in any precision.
///
/// Not wrapped (yet): `multi_head_attention`'s Q/K/V/O projections (they are
/// inside that layer, not separate dense layers: wrapping them needs the
/// attention layer to take its projections as a policy) and `conv2d` (a
/// transformer's position-wise MLP). See docs/transformers.md, "LoRA".
#pragma once

#include <cmath>
#include <cstddef>
#include <type_traits>
#include <utility>

#include "../kernels/backend.hpp"
#include "../kernels/dense.hpp"
#include "layers.hpp"
#include "network.hpp"
#include "sequential.hpp"
#include "shape.hpp"

namespace tinylarge::nn {

namespace detail {
template <class Layer>
struct lora_layer_check {
  static_assert(sizeof(Layer) == 0,
                "tinylarge: lora<Layer, Rank, Alpha>: Layer must be a dense<In, Out> (conv2d and attention projections "
                "are not wrapped yet)");
};
template <std::size_t In, std::size_t Out, std::size_t Rank>
struct lora_rank_check {
  static_assert(Rank > 0, "tinylarge: lora<dense<In, Out>, Rank, Alpha>: Rank must be > 0");
  static_assert(Rank <= (In < Out ? In : Out),
                "tinylarge: lora<dense<In, Out>, Rank, Alpha>: Rank must be <= min(In, Out) (a larger B·A has no "
                "more expressive power than the full matrix and costs more)");
  static constexpr bool value = true;
};
}  // namespace detail

/// LoRA adapter around a dense layer; see the file comment.
/// @tparam Layer the wrapped layer, `dense<In, Out>`
/// @tparam Rank r, 1 ≤ r ≤ min(In, Out)
/// @tparam Alpha α, the scale being s = α / r (an integer: clang 14 has no
///         floating-point template arguments; the default α = r gives s = 1)
/// @tparam InitStddevPerMille σ of A's N(0, σ²) initialisation in thousandths
///         (0: 1/√In)
template <class Layer, std::size_t Rank, std::size_t Alpha = Rank, std::size_t InitStddevPerMille = 0>
struct lora : detail::lora_layer_check<Layer> {};

template <std::size_t In, std::size_t Out, std::size_t Rank, std::size_t Alpha, std::size_t InitStddevPerMille>
struct lora<dense<In, Out>, Rank, Alpha, InitStddevPerMille> {
  static_assert(detail::lora_rank_check<In, Out, Rank>::value);
  using wrapped = dense<In, Out>;
  using implied_input = input<In>;
  static constexpr std::size_t rank = Rank;
  static constexpr float default_scale = static_cast<float>(Alpha) / static_cast<float>(Rank);
  static constexpr const char* name() noexcept { return "lora"; }
  template <class S>
  static constexpr bool accepts = dense<In, Out>::template accepts<S>;

  template <class S>
  struct bind : detail::layer_base<lora, S, shape<1, 1, Out>, layer_kind::lora> {
    using wrapped_bind = typename dense<In, Out>::template bind<S>;
    static constexpr std::size_t rank = Rank;
    static constexpr std::size_t out_channels = Out;
    static constexpr std::size_t a_offset = 0;                 ///< A [Rank][In]
    static constexpr std::size_t b_offset = Rank * In;         ///< B [Out][Rank]
    static constexpr std::size_t w0_offset = b_offset + Out * Rank;  ///< W₀ [Out][In] (frozen)
    static constexpr std::size_t bias_offset = w0_offset + Out * In;  ///< b [Out] (frozen)
    static constexpr std::size_t scale_offset = bias_offset + Out;    ///< s (frozen)
    static constexpr std::size_t trainable_count = Rank * (In + Out);
    static constexpr std::size_t weight_count = trainable_count + Out * In;
    static constexpr std::size_t bias_count = Out + 1;  // b and s
    static constexpr std::size_t param_count = weight_count + bias_count;
    static constexpr std::size_t macs = In * Out + Rank * (In + Out);
    static constexpr std::size_t fan_in = In;
    static constexpr std::size_t fan_out = Out;
    /// t = x·Aᵀ, kept for dB.
    static constexpr std::size_t saved_per_sample = Rank;
    /// u = dy·B in backward (t at inference, without a saved area).
    static constexpr std::size_t workspace_per_sample = Rank;

    /// W₀ and b as `dense<In, Out>` would be initialised, A ~ N(0, σ²), B = 0, s = Alpha / Rank.
    template <class Init, class G>
    static void initialize(float* p, G& g) {
      detail::initialize_layer<wrapped_bind, Init>(p + w0_offset, g);
      const float sigma = InitStddevPerMille == 0 ? 1.0f / std::sqrt(static_cast<float>(In))
                                                  : static_cast<float>(InitStddevPerMille) / 1000.0f;
      for (std::size_t i = 0; i < Rank * In; ++i) p[a_offset + i] = g.normal(0.0f, sigma);
      for (std::size_t i = 0; i < Out * Rank; ++i) p[b_offset + i] = 0.0f;
      p[scale_offset] = default_scale;
    }

    static void forward(const float* p, const float* x, float* y, std::size_t batch, context& ctx) noexcept {
      using kernels::transpose;
      float* t = ctx.saved != nullptr ? ctx.saved : ctx.workspace;
      const float s = p[scale_offset];
      // y = x·W₀ᵀ + b
      kernels::dense_f32(kernels::default_backend{}, batch, Out, In, x, p + w0_offset, p + bias_offset, y);
      // t (B×r) = x (B×In) · Aᵀ;  y += s · t · Bᵀ
      kernels::gemm_f32(kernels::default_backend{}, transpose::no, transpose::yes, batch, Rank, In, 1.0f, x, In,
                        p + a_offset, In, 0.0f, t, Rank);
      kernels::gemm_f32(kernels::default_backend{}, transpose::no, transpose::yes, batch, Out, Rank, s, t, Rank,
                        p + b_offset, Rank, 1.0f, y, Out);
    }

    static void backward(const float* p, const float* x, const float*, const float* dy, float* dx, float* dp,
                         std::size_t batch, context& ctx) noexcept {
      using kernels::transpose;
      const float* t = ctx.saved;
      float* u = ctx.workspace;
      const float s = p[scale_offset];
      // u (B×r) = dy (B×Out) · B (Out×r)
      kernels::gemm_f32(kernels::default_backend{}, transpose::no, transpose::no, batch, Rank, Out, 1.0f, dy, Out,
                        p + b_offset, Rank, 0.0f, u, Rank);
      // dB (Out×r) += s · dyᵀ · t;  dA (r×In) += s · uᵀ · x
      kernels::gemm_f32(kernels::default_backend{}, transpose::yes, transpose::no, Out, Rank, batch, s, dy, Out, t,
                        Rank, 1.0f, dp + b_offset, Rank);
      kernels::gemm_f32(kernels::default_backend{}, transpose::yes, transpose::no, Rank, In, batch, s, u, Rank, x, In,
                        1.0f, dp + a_offset, In);
      if (dx == nullptr) return;
      // dx (B×In) = dy · W₀ + s · u · A
      kernels::gemm_f32(kernels::default_backend{}, transpose::no, transpose::no, batch, In, Out, 1.0f, dy, Out,
                        p + w0_offset, In, 0.0f, dx, In);
      kernels::gemm_f32(kernels::default_backend{}, transpose::no, transpose::no, batch, In, Rank, s, u, Rank,
                        p + a_offset, In, 1.0f, dx, In);
    }

    /// The plain dense layer's parameters (W = W₀ + s·B A, then b) into `dense_p`
    /// (In·Out + Out floats). For inference only: training never forms W.
    static void merge(const float* p, float* dense_p) noexcept {
      using kernels::transpose;
      for (std::size_t i = 0; i < Out * In; ++i) dense_p[i] = p[w0_offset + i];
      kernels::gemm_f32(kernels::default_backend{}, transpose::no, transpose::no, Out, In, Rank, p[scale_offset],
                        p + b_offset, Rank, p + a_offset, In, 1.0f, dense_p, In);
      for (std::size_t o = 0; o < Out; ++o) dense_p[Out * In + o] = p[bias_offset + o];
    }
    /// W₀ and b from a plain dense layer's parameters (`dense_p`: W then b); A, B and s unchanged.
    static void load_base(const float* dense_p, float* p) noexcept {
      for (std::size_t i = 0; i < Out * In + Out; ++i) p[w0_offset + i] = dense_p[i];
    }
  };
};

// ---------------------------------------------------------------------------
// between the adapted and the plain model
// ---------------------------------------------------------------------------

namespace detail {
template <class D>
struct merged_descriptor {
  using type = D;
};
template <std::size_t In, std::size_t Out, std::size_t R, std::size_t A, std::size_t S>
struct merged_descriptor<lora<dense<In, Out>, R, A, S>> {
  using type = dense<In, Out>;
};
template <template <class...> class Block, class... Ls>
  requires requires { Block<Ls...>::name(); }
struct merged_descriptor<Block<Ls...>> {
  using type = Block<typename merged_descriptor<Ls>::type...>;
};

template <class D, std::size_t Rank, std::size_t Alpha>
struct adapted_descriptor {
  using type = D;
};
template <std::size_t In, std::size_t Out, std::size_t Rank, std::size_t Alpha>
struct adapted_descriptor<dense<In, Out>, Rank, Alpha> {
  using type = lora<dense<In, Out>, Rank, Alpha>;
};

template <class M>
struct merged_model;
template <class... Ls>
struct merged_model<sequential<Ls...>> {
  using type = sequential<typename merged_descriptor<Ls>::type...>;
};
template <class M, std::size_t Rank, std::size_t Alpha>
struct adapted_model;
template <class... Ls, std::size_t Rank, std::size_t Alpha>
struct adapted_model<sequential<Ls...>, Rank, Alpha> {
  using type = sequential<typename adapted_descriptor<Ls, Rank, Alpha>::type...>;
};

/// Walks bound layer L (adapted) and its plain counterpart P side by side.
template <class L, class P, bool ToPlain>
void convert_layer(const float* src, float* dst) {
  if constexpr (L::kind == layer_kind::lora) {
    if constexpr (ToPlain) L::merge(src, dst);
    else L::load_base(src, dst);
  } else if constexpr (requires { typename L::layer_list; L::size; }) {
    [&]<std::size_t... J>(std::index_sequence<J...>) {
      (convert_layer<typename L::template layer<J>, typename P::template layer<J>, ToPlain>(
           src + (ToPlain ? L::template param_offset<J> : P::template param_offset<J>),
           dst + (ToPlain ? P::template param_offset<J> : L::template param_offset<J>)),
       ...);
    }(std::make_index_sequence<L::size>{});
  } else {
    for (std::size_t i = 0; i < L::param_count; ++i) dst[i] = src[i];
  }
}
}  // namespace detail

/// The plain model of an adapted one: every `lora<dense<In, Out>, …>` becomes
/// `dense<In, Out>` (inside `residual<...>` blocks too).
template <sequential_model Model>
using merged_model_t = typename detail::merged_model<Model>::type;

/// The adapted model of a plain one: every top-level `dense<In, Out>` becomes
/// `lora<dense<In, Out>, Rank, Alpha>` (each must have min(In, Out) ≥ Rank).
template <sequential_model Model, std::size_t Rank, std::size_t Alpha = Rank>
using lora_model_t = typename detail::adapted_model<Model, Rank, Alpha>::type;

/// The parameters of the merged plain model (`merged_model_t<Model>`'s layout)
/// from an adapted model's: W = W₀ + s·B A per adapted layer, everything else copied.
template <sequential_model Model>
void merge_lora(const float* adapted, float* plain) {
  using Plain = merged_model_t<Model>;
  Model::for_each_layer([&]<std::size_t I>() {
    detail::convert_layer<typename Model::template layer<I>, typename Plain::template layer<I>, true>(
        adapted + Model::template param_offset<I>, plain + Plain::template param_offset<I>);
  });
}

/// The frozen base of an adapted model from the plain model's parameters
/// (`merged_model_t<Model>`'s layout): W₀ and b of every adapted layer and
/// all other layers' parameters; the adapters A, B and the scale stay.
template <sequential_model Model>
void load_lora_base(const float* plain, float* adapted) {
  using Plain = merged_model_t<Model>;
  Model::for_each_layer([&]<std::size_t I>() {
    detail::convert_layer<typename Model::template layer<I>, typename Plain::template layer<I>, false>(
        plain + Plain::template param_offset<I>, adapted + Model::template param_offset<I>);
  });
}

/// The merged plain network of an adapted one (for inference, or export).
template <class Net>
auto merge_lora(const Net& adapted) {
  using Model = typename Net::model;
  network<merged_model_t<Model>, typename Net::storage> plain;
  merge_lora<Model>(adapted.parameters().data(), plain.parameters().data());
  return plain;
}

/// Load the frozen base of `adapted` from a trained plain network.
template <class Net, class PlainNet>
void load_lora_base(Net& adapted, const PlainNet& plain) {
  using Model = typename Net::model;
  static_assert(std::is_same_v<typename PlainNet::model, merged_model_t<Model>>,
                "tinylarge: load_lora_base(adapted, plain): plain must be a network of merged_model_t<adapted's model>");
  load_lora_base<Model>(plain.parameters().data(), adapted.parameters().data());
}

}  // namespace tinylarge::nn
