/// @file nn/vision.hpp
/// @brief Vision layers: `patch_embedding<H, W, C, P, D>` (a ViT's patchify
///        and linear projection) and `batch_norm<C>`, as layer descriptors of
///        `sequential<...>`, and `fold_batch_norms`, which folds every batch
///        norm into the dense / convolution layer before it so that the
///        result converts to int8 (see docs/transformers.md, "Vision layers").
///
///  - `patch_embedding<H, W, C, P, D>`: an H×W×C image cut into P×P
///    non-overlapping patches, each flattened (NHWC order: row, column,
///    channel) and projected to D features: the output is the
///    (H/P)×(W/P)×D grid of H/P·W/P tokens, in row-major order (what
///    `torch.nn.Conv2d(C, D, P, stride=P)` followed by `flatten(2).transpose(1,
///    2)` gives). It *is* `conv2d<D, P, P, 0>` on that image — the same bound
///    layer, im2col and `kernels::dense_f32` GEMM, weights [D][P][P][C] then
///    biases [D] (`Conv2d.weight` / `.bias` after the NCHW→NHWC permutation the
///    npz export applies) — with its shape checked: P must divide H and W,
///    and the input must be H×W×C. Being a conv2d, it trains in every float
///    precision, fake-quantizes, exports to npz and converts to int8.
///  - `batch_norm<C>` (Ioffe and Szegedy, 2015): per channel c of a
///    convolution's feature map (over batch × H × W) or per feature of a
///    dense layer's output (over the batch),
///    y = γ_c·(x − μ_c)/√(σ²_c + ε) + β_c with ε = 1e-5. Training uses the
///    batch's mean and biased variance and updates the running statistics
///    with momentum 0.1: μ̂ ← 0.9·μ̂ + 0.1·μ, σ̂² ← 0.9·σ̂² + 0.1·σ²·n/(n − 1)
///    (the unbiased variance, n values per channel; with n = 1 the running
///    variance is left as it is); inference uses μ̂ and σ̂². All of this is
///    `torch.nn.BatchNorm1d` / `BatchNorm2d` with their defaults.
///    Parameters: γ [C] (the weights), then β [C], running mean [C] and
///    running variance [C] (the "biases"); `initialize` sets 1, 0, 0, 1.
///    The running statistics live in the parameter vector, so checkpoints,
///    federated averaging and `fold_batch_norms` see them;
///    they are not trainable (`trainable_count` = 2C: `fit` and the other
///    loops on `nn::trainable_state` keep no optimizer state for them and
///    never decay them); their gradient is always zero, but a loop that
///    still steps every parameter with an L2 `weight_decay` (see
///    docs/transformers.md, "Not done yet") would pull them toward 0. A
///    training forward pass writes them through the parameter pointer (the
///    network's own, mutable parameters).
///
/// `batch_norm` computes in fp32 only (like nn/transformer.hpp's layers): a
/// network with another precision, fake quantization, int8 conversion or the
/// npz export refuse it at compile time; fold it first. This header needs no
/// heap and no exceptions (the layers build in the freestanding profile);
/// `fold_batch_norms` works on the host's `network`s.
#pragma once

#include <array>
#include <cmath>
#include <cstddef>
#include <type_traits>
#include <utility>

#include "layers.hpp"
#include "quantized_network.hpp"  // detail::concat_lists
#include "sequential.hpp"
#include "shape.hpp"

namespace tinylarge::nn {

namespace detail {
template <std::size_t H, std::size_t W, std::size_t C, std::size_t SH, std::size_t SW, std::size_t SC>
struct patch_embedding_input_check {
  static_assert(SH == H && SW == W && SC == C,
                "tinylarge: patch_embedding<H, W, C, P, D>: the input must be an H×W×C image: compare H, W, C with "
                "the output shape of the layer before (SH, SW, SC in patch_embedding_input_check below)");
  static constexpr bool value = SH == H && SW == W && SC == C;
};
template <std::size_t SC, std::size_t C>
struct batch_norm_channel_check {
  static_assert(SC == C,
                "tinylarge: batch_norm<C>: C must equal the channel extent of the input (the feature count of a dense "
                "output, the channels of a convolution's feature map)");
  static constexpr bool value = SC == C;
};
}  // namespace detail

// ---------------------------------------------------------------------------
// patch_embedding
// ---------------------------------------------------------------------------

/// ViT patch embedding (Dosovitskiy et al., ICLR 2021, eq. 1, without the
/// class token and positions): the H×W×C image becomes (H/P)·(W/P) tokens of
/// width D, token (i, j) = E·vec(patch (i, j)) + b. Exactly
/// `conv2d<D, P, P, 0>` (stride P, no padding) with the shapes checked, so
/// every path a conv2d has (training in any float precision, QAT, int8, npz
/// export as `Conv2d` weights) applies unchanged.
/// A leading `patch_embedding` implies `input<H, W, C>`.
/// @tparam H image height; P must divide it
/// @tparam W image width; P must divide it
/// @tparam C image channels
/// @tparam P patch size (P×P pixels per patch)
/// @tparam D token width (embedding dimension)
template <std::size_t H, std::size_t W, std::size_t C, std::size_t P, std::size_t D>
struct patch_embedding {
  static_assert(H > 0 && W > 0 && C > 0 && P > 0 && D > 0,
                "tinylarge: patch_embedding<H, W, C, P, D> needs positive H, W, C, P, D");
  static_assert(H % P == 0, "tinylarge: patch_embedding<H, W, C, P, D>: the patch size P must divide the image height H "
                            "(patches do not overlap and do not pad)");
  static_assert(W % P == 0, "tinylarge: patch_embedding<H, W, C, P, D>: the patch size P must divide the image width W "
                            "(patches do not overlap and do not pad)");
  using implied_input = input<H, W, C>;
  using conv_type = conv2d<D, P, P, 0>;  ///< the convolution this layer is
  static constexpr std::size_t grid_h = H / P;
  static constexpr std::size_t grid_w = W / P;
  static constexpr std::size_t tokens = grid_h * grid_w;
  static constexpr std::size_t patch_size = P;
  static constexpr const char* name() noexcept { return "patch_embedding"; }
  template <class S>
  static constexpr bool accepts = S::h == H && S::w == W && S::c == C;
  template <class S>
  using diagnose = detail::patch_embedding_input_check<H, W, C, S::h, S::w, S::c>;

  /// The bound `conv2d<D, P, P, 0>` (kind `conv2d`, output shape<H/P, W/P, D>).
  template <class S>
  struct bind : conv_type::template bind<S> {
    using descriptor = patch_embedding;
    static constexpr std::size_t tokens = H / P * (W / P);
  };
};

// ---------------------------------------------------------------------------
// batch_norm
// ---------------------------------------------------------------------------

/// Batch normalisation over the channel axis (see the file comment for the
/// formulas, the parameter layout and the running statistics).
///
/// The forward pass saves the μ and 1/√(σ² + ε) it used and whether they were
/// the batch's (training) or the running ones (inference); backward is exact
/// for either. With the batch's statistics, per channel over its n values and
/// with x̂ = (x − μ)·r, r = 1/√(σ² + ε):
/// dγ += Σ dy·x̂, dβ += Σ dy, dx = γ·r·(dy − mean(dy) − x̂·mean(dy·x̂));
/// with the running ones dx = γ·r·dy. The running statistics get no gradient.
/// @tparam C channels (features); must equal the input's channel extent
template <std::size_t C>
struct batch_norm {
  static_assert(C > 0, "tinylarge: batch_norm<C> needs C > 0");
  static constexpr const char* name() noexcept { return "batch_norm"; }
  static constexpr float eps = 1e-5f;      ///< PyTorch's default
  static constexpr float momentum = 0.1f;  ///< PyTorch's default
  template <class S>
  static constexpr bool accepts = S::c == C;
  template <class S>
  using diagnose = detail::batch_norm_channel_check<S::c, C>;

  template <class S>
  struct bind : detail::layer_base<batch_norm, S, S, layer_kind::batch_norm> {
    static constexpr std::size_t rows_per_sample = S::h * S::w;
    static constexpr std::size_t channels = C;
    static constexpr std::size_t weight_count = C;     // γ
    static constexpr std::size_t bias_count = 3 * C;   // β, running mean, running variance
    static constexpr std::size_t param_count = 4 * C;
    /// γ and β only: the running statistics are not trained (no optimizer
    /// state, no weight decay where the loop steps `trainable_ranges`).
    static constexpr std::size_t trainable_count = 2 * C;
    static constexpr std::size_t macs = rows_per_sample * C * 2;
    static constexpr std::size_t fan_in = 1;
    static constexpr std::size_t fan_out = 1;
    /// μ [C], 1/√(σ² + ε) [C] and a flag (1: batch statistics); needs one sample's worth.
    static constexpr std::size_t saved_per_sample = 2 * C + 1;
    /// Per-channel sums (backward), or μ and r when there is no saved area (inference).
    static constexpr std::size_t workspace_per_sample = 2 * C;

    static const float* gamma(const float* p) noexcept { return p; }
    static const float* beta(const float* p) noexcept { return p + C; }
    static const float* running_mean(const float* p) noexcept { return p + 2 * C; }
    static const float* running_var(const float* p) noexcept { return p + 3 * C; }

    /// γ = 1, β = 0, running mean 0, running variance 1 (as `nn.BatchNorm2d`),
    /// whatever the initializer.
    template <class Init, class G>
    static void initialize(float* p, G&) noexcept {
      for (std::size_t c = 0; c < C; ++c) {
        p[c] = 1.0f;
        p[C + c] = 0.0f;
        p[2 * C + c] = 0.0f;
        p[3 * C + c] = 1.0f;
      }
    }

    static void forward(const float* p, const float* x, float* y, std::size_t batch, context& ctx) noexcept {
      const std::size_t n = batch * rows_per_sample;
      float* mean = ctx.saved != nullptr ? ctx.saved : ctx.workspace;
      float* rstd = mean + C;
      if (ctx.training) {
        for (std::size_t c = 0; c < C; ++c) mean[c] = rstd[c] = 0.0f;
        for (std::size_t r = 0; r < n; ++r)
          for (std::size_t c = 0; c < C; ++c) mean[c] += x[r * C + c];
        const float inv_n = 1.0f / static_cast<float>(n);
        for (std::size_t c = 0; c < C; ++c) mean[c] *= inv_n;
        for (std::size_t r = 0; r < n; ++r)
          for (std::size_t c = 0; c < C; ++c) {
            const float d = x[r * C + c] - mean[c];
            rstd[c] += d * d;
          }
        // The running statistics are parameters that no gradient touches: the
        // training pass updates them in place (the network's own parameters).
        float* run_mean = const_cast<float*>(p) + 2 * C;
        float* run_var = const_cast<float*>(p) + 3 * C;
        for (std::size_t c = 0; c < C; ++c) {
          const float var = rstd[c] * inv_n;
          run_mean[c] = (1.0f - momentum) * run_mean[c] + momentum * mean[c];
          if (n > 1)
            run_var[c] = (1.0f - momentum) * run_var[c] +
                         momentum * (rstd[c] / static_cast<float>(n - 1));  // unbiased
          rstd[c] = 1.0f / std::sqrt(var + eps);
        }
      } else {
        for (std::size_t c = 0; c < C; ++c) {
          mean[c] = running_mean(p)[c];
          rstd[c] = 1.0f / std::sqrt(running_var(p)[c] + eps);
        }
      }
      if (ctx.saved != nullptr) ctx.saved[2 * C] = ctx.training ? 1.0f : 0.0f;
      const float* g = gamma(p);
      const float* b = beta(p);
      for (std::size_t r = 0; r < n; ++r)
        for (std::size_t c = 0; c < C; ++c) y[r * C + c] = g[c] * ((x[r * C + c] - mean[c]) * rstd[c]) + b[c];
    }

    static void backward(const float* p, const float* x, const float*, const float* dy, float* dx, float* dp,
                         std::size_t batch, context& ctx) noexcept {
      const std::size_t n = batch * rows_per_sample;
      const float* mean = ctx.saved;
      const float* rstd = ctx.saved + C;
      const bool batch_stats = ctx.saved[2 * C] != 0.0f;
      float* sum_dy = ctx.workspace;
      float* sum_dy_xh = ctx.workspace + C;
      for (std::size_t c = 0; c < C; ++c) sum_dy[c] = sum_dy_xh[c] = 0.0f;
      for (std::size_t r = 0; r < n; ++r)
        for (std::size_t c = 0; c < C; ++c) {
          const float xh = (x[r * C + c] - mean[c]) * rstd[c];
          sum_dy[c] += dy[r * C + c];
          sum_dy_xh[c] += dy[r * C + c] * xh;
        }
      for (std::size_t c = 0; c < C; ++c) {
        dp[c] += sum_dy_xh[c];
        dp[C + c] += sum_dy[c];
      }
      if (dx == nullptr) return;
      const float* g = gamma(p);
      if (!batch_stats) {
        for (std::size_t r = 0; r < n; ++r)
          for (std::size_t c = 0; c < C; ++c) dx[r * C + c] = g[c] * rstd[c] * dy[r * C + c];
        return;
      }
      const float inv_n = 1.0f / static_cast<float>(n);
      for (std::size_t r = 0; r < n; ++r)
        for (std::size_t c = 0; c < C; ++c) {
          const float xh = (x[r * C + c] - mean[c]) * rstd[c];
          dx[r * C + c] = g[c] * rstd[c] * (dy[r * C + c] - sum_dy[c] * inv_n - xh * sum_dy_xh[c] * inv_n);
        }
    }
  };
};

// ---------------------------------------------------------------------------
// folding batch norms into the layer before
// ---------------------------------------------------------------------------

/// Folds one batch norm into the weighted layer before it (one weight row per
/// output channel, `rows` channels of `row_len` weights): with
/// s_c = γ_c/√(σ̂²_c + ε), W'_c = s_c·W_c and b'_c = (b_c − μ̂_c)·s_c + β_c, so
/// that W'·x + b' equals batch_norm(W·x + b) at inference. `bn` is the batch
/// norm's parameters (γ, β, running mean, running variance); `w_out` / `b_out`
/// may alias `w` / `b`.
inline void fold_batch_norm(const float* w, const float* b, const float* bn, std::size_t rows, std::size_t row_len,
                            float eps, float* w_out, float* b_out) noexcept {
  for (std::size_t c = 0; c < rows; ++c) {
    const float s = bn[c] / std::sqrt(bn[3 * rows + c] + eps);
    for (std::size_t i = 0; i < row_len; ++i) w_out[c * row_len + i] = w[c * row_len + i] * s;
    b_out[c] = (b[c] - bn[2 * rows + c]) * s + bn[rows + c];
  }
}

namespace detail {
/// Layer I of Model is a batch norm right after a dense / conv2d /
/// depthwise_conv2d (or patch_embedding) layer: it folds away.
template <class Model, std::size_t I>
constexpr bool folds_away() noexcept {
  if constexpr (I == 0) {
    return false;
  } else {
    return Model::template layer<I>::kind == layer_kind::batch_norm &&
           has_weights(Model::template layer<I - 1>::kind);
  }
}

template <class Model, class Seq>
struct folded_model;
template <class Model, std::size_t... I>
struct folded_model<Model, std::index_sequence<I...>> {
  using S = typename Model::input_shape;
  using list = typename concat_lists<
      type_list<input<S::h, S::w, S::c>>,
      std::conditional_t<folds_away<Model, I>(), type_list<>,
                         type_list<typename Model::template layer<I>::descriptor>>...>::type;
  template <class List>
  struct to_sequential;
  template <class... L>
  struct to_sequential<type_list<L...>> {
    using type = sequential<L...>;
  };
  using type = typename to_sequential<list>::type;
};

template <class Model>
struct all_batch_norms_fold {
  static constexpr bool value = [] {
    bool ok = true;
    Model::for_each_layer([&]<std::size_t I>() {
      if (Model::template layer<I>::kind == layer_kind::batch_norm && !folds_away<Model, I>()) ok = false;
    });
    return ok;
  }();
  static_assert(value,
                "tinylarge: fold_batch_norms: every batch_norm must directly follow a dense, conv2d, "
                "depthwise_conv2d or patch_embedding layer of the model (not an activation, a pooling layer or the "
                "input; batch norms inside residual<...> blocks are not folded)");
};
}  // namespace detail

/// `Model` with every batch norm that follows a weighted layer removed (the
/// model `fold_batch_norms` writes).
template <sequential_model Model>
using batch_norm_folded_t = typename detail::folded_model<Model, std::make_index_sequence<Model::size>>::type;

/// Folds every batch norm of `from` into the dense / convolution layer before
/// it (`fold_batch_norm`), writing the parameters of `batch_norm_folded_t<Model>`
/// into `to`: `to.forward(x, n)` equals `from.forward(x, n)` at inference up to
/// fp32 rounding, and `to` converts to int8 as any model of dense and
/// convolution layers does (`quantize_post_training`, QAT), with no batch norm
/// left to run. Every batch norm must directly follow a weighted layer (a
/// static_assert says so otherwise).
/// @tparam From a `network<Model, …>` (any storage and precision)
/// @tparam To a `network<batch_norm_folded_t<Model>, …>`
template <class From, class To>
void fold_batch_norms(const From& from, To& to) {
  using Model = typename From::model;
  using Folded = batch_norm_folded_t<Model>;
  static_assert(std::is_same_v<typename To::model, Folded>,
                "tinylarge: fold_batch_norms(from, to): `to` must be a network of batch_norm_folded_t<Model>, the "
                "model of `from` without its batch norms");
  static_assert(detail::all_batch_norms_fold<Model>::value);
  // Index of the layer of Model that each layer of Folded comes from.
  constexpr auto source = [] {
    std::array<std::size_t, Folded::size + 1> src{};
    std::size_t j = 0;
    Model::for_each_layer([&]<std::size_t I>() {
      if (!detail::folds_away<Model, I>()) src[j++] = I;
    });
    return src;
  }();
  const auto in = from.parameters();
  auto out = to.parameters();
  Folded::for_each_layer([&]<std::size_t J>() {
    constexpr std::size_t I = source[J];
    using L = typename Model::template layer<I>;
    static_assert(L::param_count == Folded::template layer<J>::param_count,
                  "tinylarge: internal error: fold_batch_norms maps a layer to one of another size");
    const float* src = in.data() + Model::template param_offset<I>;
    float* dst = out.data() + Folded::template param_offset<J>;
    if constexpr (I + 1 < Model::size) {
      if constexpr (detail::folds_away<Model, I + 1>()) {
        using B = typename Model::template layer<I + 1>;
        static_assert(B::channels == L::out_channels);
        fold_batch_norm(src, src + L::weight_count, in.data() + Model::template param_offset<I + 1>, L::out_channels,
                        L::weight_count / L::out_channels, B::descriptor::eps, dst, dst + L::weight_count);
        return;
      }
    }
    for (std::size_t k = 0; k < L::param_count; ++k) dst[k] = src[k];
  });
}

}  // namespace tinylarge::nn
