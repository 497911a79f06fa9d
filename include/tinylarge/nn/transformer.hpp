/// @file nn/transformer.hpp
/// @brief Transformer layers: `layer_norm<Dim>`, `rms_norm<Dim>`, `gelu`,
///        `silu`, `multi_head_attention<Dim, Heads, Causal>`,
///        `residual<Layers...>`, `embedding<Vocab, Dim>`,
///        `learned_positions<Seq, Dim>`, `sinusoidal_positions<Seq, Dim>`, as
///        layer descriptors of `sequential<...>` with fp32 forward and
///        backward passes, and `kv_cache<Bound>` for incremental causal
///        decoding (see docs/transformers.md).
///
/// A sequence of T tokens of width D is an H×W×D activation with H·W = T
/// (write `input<1, T, D>`; a W×W grid of ViT patches is `shape<W, W, D>`):
/// every layer here works on the rows of the channel axis, and attention runs
/// over all H·W positions of a sample, in row-major order. A position-wise
/// linear layer (the transformer's MLP) is `conv2d<Out, 1>` on that shape.
/// Token ids enter as `input<1, T, 1>`, one exact integer per float, and
/// `embedding<Vocab, D>` turns them into `shape<1, T, D>`.
///
/// Parameter layouts (each layer's weights, then its biases, as for `dense`):
///  - `layer_norm<Dim>`: gain [Dim], then bias [Dim] (`nn.LayerNorm`'s
///    `weight`, `bias`); `initialize` sets gain 1 and bias 0.
///  - `rms_norm<Dim>`: gain [Dim] (`nn.RMSNorm`'s `weight`); starts at 1.
///  - `multi_head_attention<Dim, Heads, Causal>`: weights `in_proj_weight`
///    [3·Dim][Dim] (rows of Q, then K, then V) and `out_proj.weight`
///    [Dim][Dim], then biases `in_proj_bias` [3·Dim] and `out_proj.bias` [Dim]:
///    `nn.MultiheadAttention(Dim, Heads, batch_first=True)`'s layout.
///  - `residual<Layers...>`: the parameters of its inner layers, one after the
///    other (`bind<S>::param_offset<J>` locates inner layer J).
///  - `embedding<Vocab, Dim>`: table [Vocab][Dim] (`nn.Embedding`'s `weight`).
///  - `learned_positions<Seq, Dim>`: table [Seq][Dim].
///
/// These layers compute in fp32 only: a network with another precision, fake
/// quantization, int8 conversion and the npz export refuse them at compile
/// time — except `residual<...>` of int8 layers (dense, conv, pooling,
/// activations), which `quantized_network` runs in int8 (one add per block,
/// `kernels::add_s8`; see docs/mcu.md, "Residual blocks in int8"). Nothing here allocates; only `embedding`'s forward pass (a value
/// that is not a token id) and `kv_cache::append` (a full cache) raise.
#pragma once

#include <cmath>
#include <cstddef>
#include <type_traits>
#include <utility>

#include "../core/error.hpp"
#include "../kernels/backend.hpp"
#include "../kernels/dense.hpp"
#include "layers.hpp"
#include "sequential.hpp"
#include "shape.hpp"

namespace tinylarge::nn {

namespace detail {
// One check per layer, so that the static_assert message names the parameter.
template <std::size_t C, std::size_t Dim>
struct layer_norm_dim_check {
  static_assert(C == Dim,
                "tinylarge: layer_norm<Dim>: Dim must equal the channel extent of the input (the width of each token)");
  static constexpr bool value = C == Dim;
};
template <std::size_t C, std::size_t Dim>
struct attention_dim_check {
  static_assert(C == Dim,
                "tinylarge: multi_head_attention<Dim, Heads, Causal>: Dim must equal the channel extent of the input "
                "(the width of each token)");
  static constexpr bool value = C == Dim;
};
/// Per-inner-layer offsets of a residual block: parameters, inner outputs and
/// inner saved areas (the last two per sample), with a final total.
template <std::size_t N>
struct residual_layout {
  std::size_t param[N + 1]{};
  std::size_t act[N + 1]{};
  std::size_t saved[N + 1]{};
};
template <class... B>
constexpr residual_layout<sizeof...(B)> residual_offsets(type_list<B...>) noexcept {
  residual_layout<sizeof...(B)> o{};
  std::size_t j = 0;
  ((o.param[j + 1] = o.param[j] + B::param_count, o.act[j + 1] = o.act[j] + B::out_shape::size,
    o.saved[j + 1] = o.saved[j] + B::saved_per_sample, ++j),
   ...);
  return o;
}
/// True when the chain `Ls...` binds to `S` and gives back `S`; only asks
/// each layer's `accepts`, so it never fails to compile.
template <class S, class... Ls>
struct chain_fits_from {
  static constexpr bool value = true;
  using out_shape = S;
};
template <class S, class L, class... Rest>
struct chain_fits_from<S, L, Rest...> {
  static constexpr bool ok = L::template accepts<S>;
  using next = chain_fits_from<typename std::conditional_t<ok, typename L::template bind<S>, invalid_layer<S>>::out_shape,
                               Rest...>;
  static constexpr bool value = ok && next::value;
  using out_shape = typename next::out_shape;
};
template <class S, class... Ls>
struct chain_fits {
  static constexpr bool value = chain_fits_from<S, Ls...>::value &&
                                std::is_same_v<S, typename chain_fits_from<S, Ls...>::out_shape>;
};
template <class In, class Out>
struct residual_shape_check {
  static_assert(std::is_same_v<In, Out>,
                "tinylarge: residual<Layers...>: the inner Layers must give back the shape of their input (y = x + "
                "F(x)); compare `In` and `Out` in residual_shape_check<In, Out> below");
  static constexpr bool value = std::is_same_v<In, Out>;
};
}  // namespace detail

// ---------------------------------------------------------------------------
// layer_norm
// ---------------------------------------------------------------------------

/// Layer normalisation (Ba, Kiros and Hinton, 2016) of every token:
/// y = g ⊙ (x − μ)/√(σ² + ε) + b with μ, σ² the mean and biased variance of
/// the token's Dim features and ε = 1e-5 (PyTorch's default).
///
/// Backward, with x̂ = (x − μ)·r and r = 1/√(σ² + ε):
/// dg += Σ dy ⊙ x̂, db += Σ dy, dx = r·(ĝ − mean(ĝ) − x̂·mean(ĝ ⊙ x̂)) with ĝ = dy ⊙ g.
/// μ and r are recomputed from x in the backward pass (nothing is saved).
/// @tparam Dim features per token; must equal the input's channel extent
template <std::size_t Dim>
struct layer_norm {
  static_assert(Dim > 0, "tinylarge: layer_norm<Dim> needs Dim > 0");
  static constexpr const char* name() noexcept { return "layer_norm"; }
  static constexpr float eps = 1e-5f;
  template <class S>
  static constexpr bool accepts = S::c == Dim;
  template <class S>
  using diagnose = detail::layer_norm_dim_check<S::c, Dim>;

  template <class S>
  struct bind : detail::layer_base<layer_norm, S, S, layer_kind::layer_norm> {
    static constexpr std::size_t rows_per_sample = S::h * S::w;
    static constexpr std::size_t weight_count = Dim;  // gain
    static constexpr std::size_t bias_count = Dim;
    static constexpr std::size_t param_count = 2 * Dim;
    static constexpr std::size_t macs = rows_per_sample * Dim * 4;
    static constexpr std::size_t fan_in = Dim;
    static constexpr std::size_t fan_out = Dim;

    /// Gain 1, bias 0 (what `nn.LayerNorm` starts from), whatever the initializer.
    template <class Init, class G>
    static void initialize(float* p, G&) noexcept {
      for (std::size_t i = 0; i < Dim; ++i) p[i] = 1.0f;
      for (std::size_t i = 0; i < Dim; ++i) p[Dim + i] = 0.0f;
    }
    /// Mean and 1/√(σ² + ε) of one token.
    static void moments(const float* x, float& mean, float& rstd) noexcept {
      float s = 0.0f;
      for (std::size_t i = 0; i < Dim; ++i) s += x[i];
      mean = s / static_cast<float>(Dim);
      float v = 0.0f;
      for (std::size_t i = 0; i < Dim; ++i) v += (x[i] - mean) * (x[i] - mean);
      rstd = 1.0f / std::sqrt(v / static_cast<float>(Dim) + eps);
    }
    static void forward(const float* p, const float* x, float* y, std::size_t batch, context&) noexcept {
      const float* g = p;
      const float* b = p + Dim;
      for (std::size_t r = 0; r < batch * rows_per_sample; ++r) {
        const float* xr = x + r * Dim;
        float* yr = y + r * Dim;
        float mean = 0.0f, rstd = 0.0f;
        moments(xr, mean, rstd);
        for (std::size_t i = 0; i < Dim; ++i) yr[i] = g[i] * ((xr[i] - mean) * rstd) + b[i];
      }
    }
    static void backward(const float* p, const float* x, const float*, const float* dy, float* dx, float* dp,
                         std::size_t batch, context&) noexcept {
      const float* g = p;
      float* dg = dp;
      float* db = dp + Dim;
      for (std::size_t r = 0; r < batch * rows_per_sample; ++r) {
        const float* xr = x + r * Dim;
        const float* gr = dy + r * Dim;
        float mean = 0.0f, rstd = 0.0f;
        moments(xr, mean, rstd);
        float sum_g = 0.0f, sum_gx = 0.0f;
        for (std::size_t i = 0; i < Dim; ++i) {
          const float xh = (xr[i] - mean) * rstd;
          dg[i] += gr[i] * xh;
          db[i] += gr[i];
          const float gh = gr[i] * g[i];
          sum_g += gh;
          sum_gx += gh * xh;
        }
        if (dx == nullptr) continue;
        const float mg = sum_g / static_cast<float>(Dim), mgx = sum_gx / static_cast<float>(Dim);
        for (std::size_t i = 0; i < Dim; ++i) {
          const float xh = (xr[i] - mean) * rstd;
          dx[r * Dim + i] = rstd * (gr[i] * g[i] - mg - xh * mgx);
        }
      }
    }
  };
};

// ---------------------------------------------------------------------------
// gelu
// ---------------------------------------------------------------------------

/// Gaussian error linear unit, exact form (Hendrycks and Gimpel, 2016; as
/// `torch.nn.GELU()`): y = x·Φ(x) = ½·x·(1 + erf(x/√2)).
/// Backward: dx = dy·(Φ(x) + x·φ(x)), φ(x) = e^{−x²/2}/√(2π) (from the input:
/// GELU is not invertible, so unlike relu it cannot work from y).
struct gelu {
  static constexpr const char* name() noexcept { return "gelu"; }
  template <class In>
  static constexpr bool accepts = true;
  template <class In>
  struct bind : detail::layer_base<gelu, In, In, layer_kind::gelu> {
    static constexpr float inv_sqrt2 = 0.70710678118654752f;
    static constexpr float inv_sqrt_2pi = 0.39894228040143268f;
    static void forward(const float*, const float* x, float* y, std::size_t batch, context&) noexcept {
      for (std::size_t i = 0; i < batch * In::size; ++i) y[i] = 0.5f * x[i] * (1.0f + std::erf(x[i] * inv_sqrt2));
    }
    static void backward(const float*, const float* x, const float*, const float* dy, float* dx, float*,
                         std::size_t batch, context&) noexcept {
      if (dx == nullptr) return;
      for (std::size_t i = 0; i < batch * In::size; ++i) {
        const float cdf = 0.5f * (1.0f + std::erf(x[i] * inv_sqrt2));
        const float pdf = std::exp(-0.5f * x[i] * x[i]) * inv_sqrt_2pi;
        dx[i] = dy[i] * (cdf + x[i] * pdf);
      }
    }
  };
};

// ---------------------------------------------------------------------------
// multi_head_attention
// ---------------------------------------------------------------------------

/// Multi-head scaled dot-product self-attention (Vaswani et al., 2017) over
/// the T = H·W tokens of each sample:
/// [Q K V] = X·W_inᵀ + b_in; per head h (d = Dim/Heads columns each)
/// P_h = softmax(Q_h·K_hᵀ/√d) with the row maximum subtracted (and, when
/// `Causal`, token t attending to tokens u ≤ t only); O_h = P_h·V_h;
/// Y = [O_1 … O_Heads]·W_outᵀ + b_out. No dropout on P.
///
/// The forward pass keeps Q, K, V, P and O for the backward pass (in the
/// network's saved area; in the workspace when there is none, at inference):
/// `saved_per_sample` = 4·T·Dim + Heads·T². Backward: dW_out += dYᵀ·O,
/// dO = dY·W_out; per head dP = dO·Vᵀ, dV = Pᵀ·dO,
/// dS = P ⊙ (dP − rowsum(P ⊙ dP)), dQ = dS·K/√d, dK = dSᵀ·Q/√d; then
/// dW_in += d[Q K V]ᵀ·X and dX = d[Q K V]·W_in.
/// @tparam Dim token width (embedding dimension); must equal the input's channels
/// @tparam Heads number of heads; must divide Dim
/// @tparam Causal mask out future tokens (decoder self-attention)
template <std::size_t Dim, std::size_t Heads, bool Causal = false>
struct multi_head_attention {
  static_assert(Dim > 0 && Heads > 0, "tinylarge: multi_head_attention<Dim, Heads, Causal> needs Dim, Heads > 0");
  static_assert(Dim % Heads == 0, "tinylarge: multi_head_attention<Dim, Heads, Causal>: Heads must divide Dim");
  static constexpr const char* name() noexcept { return "multi_head_attention"; }
  static constexpr std::size_t head_dim = Dim / Heads;
  static constexpr bool causal = Causal;
  template <class S>
  static constexpr bool accepts = S::c == Dim;
  template <class S>
  using diagnose = detail::attention_dim_check<S::c, Dim>;

  template <class S>
  struct bind : detail::layer_base<multi_head_attention, S, S, layer_kind::multi_head_attention> {
    static constexpr std::size_t tokens = S::h * S::w;
    static constexpr std::size_t heads = Heads;
    static constexpr std::size_t in_proj_weights = 3 * Dim * Dim;
    static constexpr std::size_t weight_count = 4 * Dim * Dim;  // in_proj_weight, out_proj.weight
    static constexpr std::size_t bias_count = 4 * Dim;          // in_proj_bias, out_proj.bias
    static constexpr std::size_t param_count = weight_count + bias_count;
    static constexpr std::size_t macs = tokens * 4 * Dim * Dim + 2 * tokens * tokens * Dim;
    static constexpr std::size_t fan_in = Dim;
    static constexpr std::size_t fan_out = Dim;
    /// Q, K, V (T × 3·Dim), O (T × Dim), P (Heads × T × T).
    static constexpr std::size_t saved_per_sample = 4 * tokens * Dim + Heads * tokens * tokens;
    /// At inference the saved tensors; in backward dO, d[Q K V] and one row of dP.
    static constexpr std::size_t workspace_per_sample = saved_per_sample + tokens;

    static const float* w_in(const float* p) noexcept { return p; }
    static const float* w_out(const float* p) noexcept { return p + in_proj_weights; }
    static const float* b_in(const float* p) noexcept { return p + weight_count; }
    static const float* b_out(const float* p) noexcept { return p + weight_count + 3 * Dim; }

    /// One query row of one head: scores s_u = q·k_u·scale for the `visible`
    /// keys (rows `stride` floats apart), p = softmax(s) with the maximum
    /// subtracted (written to `pr`), out = Σ_u p_u·v_u (head_dim floats).
    /// The full-sequence forward pass and kv_cache::append both call this, so
    /// they sum in the same order.
    static void attend_row(const float* q, const float* k, const float* v, std::size_t stride, std::size_t visible,
                           float scale, float* pr, float* out) noexcept {
      float m = 0.0f;
      for (std::size_t u = 0; u < visible; ++u) {
        float s = 0.0f;
        for (std::size_t i = 0; i < head_dim; ++i) s += q[i] * k[u * stride + i];
        pr[u] = s * scale;
        m = u == 0 || pr[u] > m ? pr[u] : m;
      }
      float sum = 0.0f;
      for (std::size_t u = 0; u < visible; ++u) {
        pr[u] = std::exp(pr[u] - m);
        sum += pr[u];
      }
      const float inv = 1.0f / sum;
      for (std::size_t u = 0; u < visible; ++u) pr[u] *= inv;
      for (std::size_t i = 0; i < head_dim; ++i) out[i] = 0.0f;
      for (std::size_t u = 0; u < visible; ++u)
        for (std::size_t i = 0; i < head_dim; ++i) out[i] += pr[u] * v[u * stride + i];
    }

    static void forward(const float* p, const float* x, float* y, std::size_t batch, context& ctx) noexcept {
      float* keep = ctx.saved != nullptr ? ctx.saved : ctx.workspace;
      float* qkv = keep;
      float* o = keep + batch * tokens * 3 * Dim;
      float* prob = keep + batch * tokens * 4 * Dim;
      const std::size_t rows = batch * tokens;
      kernels::dense_f32(kernels::default_backend{}, rows, 3 * Dim, Dim, x, w_in(p), b_in(p), qkv);
      const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
      for (std::size_t b = 0; b < batch; ++b)
        for (std::size_t h = 0; h < Heads; ++h) {
          const float* q = qkv + b * tokens * 3 * Dim + h * head_dim;
          const float* k = q + Dim;
          const float* v = q + 2 * Dim;
          float* ph = prob + (b * Heads + h) * tokens * tokens;
          for (std::size_t t = 0; t < tokens; ++t) {
            float* pr = ph + t * tokens;
            const std::size_t visible = Causal ? t + 1 : tokens;
            attend_row(q + t * 3 * Dim, k, v, 3 * Dim, visible, scale, pr, o + (b * tokens + t) * Dim + h * head_dim);
            for (std::size_t u = visible; u < tokens; ++u) pr[u] = 0.0f;
          }
        }
      kernels::dense_f32(kernels::default_backend{}, rows, Dim, Dim, o, w_out(p), b_out(p), y);
    }

    static void backward(const float* p, const float* x, const float*, const float* dy, float* dx, float* dp,
                         std::size_t batch, context& ctx) noexcept {
      using kernels::transpose;
      const std::size_t rows = batch * tokens;
      const float* qkv = ctx.saved;
      const float* o = ctx.saved + batch * tokens * 3 * Dim;
      const float* prob = ctx.saved + batch * tokens * 4 * Dim;
      float* dqkv = ctx.workspace;               // rows × 3·Dim
      float* d_o = ctx.workspace + rows * 3 * Dim;  // rows × Dim
      float* dprow = d_o + rows * Dim;              // one row of dP
      float* dw_in = dp;
      float* dw_out = dp + in_proj_weights;
      float* db_in = dp + weight_count;
      float* db_out = dp + weight_count + 3 * Dim;
      // Output projection: dW_out += dYᵀ·O, db_out += Σ dY, dO = dY·W_out.
      kernels::gemm_f32(kernels::default_backend{}, transpose::yes, transpose::no, Dim, Dim, rows, 1.0f, dy, Dim, o,
                        Dim, 1.0f, dw_out, Dim);
      for (std::size_t r = 0; r < rows; ++r)
        for (std::size_t i = 0; i < Dim; ++i) db_out[i] += dy[r * Dim + i];
      kernels::gemm_f32(kernels::default_backend{}, transpose::no, transpose::no, rows, Dim, Dim, 1.0f, dy, Dim,
                        w_out(p), Dim, 0.0f, d_o, Dim);
      for (std::size_t i = 0; i < rows * 3 * Dim; ++i) dqkv[i] = 0.0f;
      const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
      for (std::size_t b = 0; b < batch; ++b)
        for (std::size_t h = 0; h < Heads; ++h) {
          const std::size_t base = b * tokens * 3 * Dim + h * head_dim;
          const float* q = qkv + base;
          const float* k = q + Dim;
          const float* v = q + 2 * Dim;
          float* dq = dqkv + base;
          float* dk = dq + Dim;
          float* dv = dq + 2 * Dim;
          const float* ph = prob + (b * Heads + h) * tokens * tokens;
          for (std::size_t t = 0; t < tokens; ++t) {
            const float* pr = ph + t * tokens;
            const float* dorow = d_o + (b * tokens + t) * Dim + h * head_dim;
            const std::size_t visible = Causal ? t + 1 : tokens;
            float dot = 0.0f;  // Σ_u P·dP
            for (std::size_t u = 0; u < visible; ++u) {
              float s = 0.0f;
              for (std::size_t i = 0; i < head_dim; ++i) {
                s += dorow[i] * v[u * 3 * Dim + i];
                dv[u * 3 * Dim + i] += pr[u] * dorow[i];
              }
              dprow[u] = s;
              dot += pr[u] * s;
            }
            for (std::size_t u = 0; u < visible; ++u) {
              const float ds = pr[u] * (dprow[u] - dot) * scale;
              for (std::size_t i = 0; i < head_dim; ++i) {
                dq[t * 3 * Dim + i] += ds * k[u * 3 * Dim + i];
                dk[u * 3 * Dim + i] += ds * q[t * 3 * Dim + i];
              }
            }
          }
        }
      // Input projection: dW_in += d[QKV]ᵀ·X, db_in += Σ d[QKV], dX = d[QKV]·W_in.
      kernels::gemm_f32(kernels::default_backend{}, transpose::yes, transpose::no, 3 * Dim, Dim, rows, 1.0f, dqkv,
                        3 * Dim, x, Dim, 1.0f, dw_in, Dim);
      for (std::size_t r = 0; r < rows; ++r)
        for (std::size_t i = 0; i < 3 * Dim; ++i) db_in[i] += dqkv[r * 3 * Dim + i];
      if (dx != nullptr)
        kernels::gemm_f32(kernels::default_backend{}, transpose::no, transpose::no, rows, Dim, 3 * Dim, 1.0f, dqkv,
                          3 * Dim, w_in(p), Dim, 0.0f, dx, Dim);
    }
  };
};

// ---------------------------------------------------------------------------
// residual
// ---------------------------------------------------------------------------

/// A residual block y = x + F(x), F being the chain `Layers...` (Ba et al.'s
/// pre-norm transformer block is `residual<layer_norm<D>, multi_head_attention<D, H>>`
/// followed by `residual<layer_norm<D>, conv2d<4·D, 1>, gelu, conv2d<D, 1>>`).
/// The inner layers are bound as in `sequential` (their shapes are checked
/// the same way) and F must give back the input's shape.
///
/// The forward pass keeps every inner activation for the backward pass
/// (`saved_per_sample` = Σ inner outputs + Σ inner saved); the workspace holds
/// the widest inner workspace, two gradient buffers and, at inference, the
/// inner activations. Backward runs the inner chain backwards from dy and
/// adds dy to dx (the identity path).
/// @tparam Layers layer descriptors, at least one
template <class... Layers>
struct residual {
  static_assert(sizeof...(Layers) > 0, "tinylarge: residual<Layers...> needs at least one layer");
  static_assert((layer_descriptor<Layers> && ...),
                "tinylarge: residual<Layers...>: every element of Layers must be a layer descriptor");
  static constexpr const char* name() noexcept { return "residual"; }
  template <class S>
  using chain = detail::bind_chain<S, residual, Layers...>;
  template <class S>
  static constexpr bool accepts = detail::chain_fits<S, Layers...>::value;
  /// Binds the inner chain (check_compatible names a misfit inside), then
  /// checks that it gives back the input's shape.
  template <class S>
  using diagnose = detail::residual_shape_check<S, typename chain<S>::out_shape>;

  template <class S>
  struct bind : detail::layer_base<residual, S, S, layer_kind::residual> {
    using layer_list = typename chain<S>::type;
    using facts = detail::model_facts<layer_list>;
    static constexpr std::size_t size = facts::size;
    template <std::size_t J>
    using layer = typename detail::type_at<J, layer_list>::type;

    static constexpr std::size_t weight_count = facts::weight_count;
    static constexpr std::size_t bias_count = facts::bias_count;
    static constexpr std::size_t param_count = facts::param_count;
    static constexpr std::size_t macs = facts::macs + S::size;

   private:
    template <class F>
    static constexpr void each(F&& f) {
      [&]<std::size_t... J>(std::index_sequence<J...>) { (f.template operator()<J>(), ...); }(
          std::make_index_sequence<size>{});
    }
    template <class F>
    static constexpr void each_reverse(F&& f) {
      [&]<std::size_t... J>(std::index_sequence<J...>) { (f.template operator()<size - 1 - J>(), ...); }(
          std::make_index_sequence<size>{});
    }
    static constexpr auto off = detail::residual_offsets(layer_list{});

   public:
    /// Offset of inner layer J's parameters within this block's.
    template <std::size_t J>
    static constexpr std::size_t param_offset = off.param[J];
    static constexpr std::size_t saved_per_sample = off.act[size] + off.saved[size];
    static constexpr std::size_t workspace_per_sample =
        facts::max_workspace_per_sample + 2 * facts::max_output + saved_per_sample;

    /// Each inner layer as `network::initialize` would initialise it.
    template <class Init, class G>
    static void initialize(float* p, G& g) {
      each([&]<std::size_t J>() { detail::initialize_layer<layer<J>, Init>(p + off.param[J], g); });
    }

    static void forward(const float* p, const float* x, float* y, std::size_t batch, context& ctx) noexcept {
      float* keep = ctx.saved != nullptr
                        ? ctx.saved
                        : ctx.workspace + batch * (facts::max_workspace_per_sample + 2 * facts::max_output);
      const float* cur = x;
      each([&]<std::size_t J>() {
        float* out = keep + batch * off.act[J];
        context inner{ctx.workspace, keep + batch * (off.act[size] + off.saved[J]), ctx.rng, ctx.training};
        layer<J>::forward(p + off.param[J], cur, out, batch, inner);
        cur = out;
      });
      for (std::size_t i = 0; i < batch * S::size; ++i) y[i] = x[i] + cur[i];
    }

    static void backward(const float* p, const float* x, const float*, const float* dy, float* dx, float* dp,
                         std::size_t batch, context& ctx) noexcept {
      float* keep = ctx.saved;
      float* grad[2] = {ctx.workspace + batch * facts::max_workspace_per_sample,
                        ctx.workspace + batch * (facts::max_workspace_per_sample + facts::max_output)};
      const float* g = dy;
      each_reverse([&]<std::size_t J>() {
        const float* in = x;
        float* out = dx;
        if constexpr (J > 0) {
          in = keep + batch * off.act[J - 1];
          out = grad[J % 2];
        }
        context inner{ctx.workspace, keep + batch * (off.act[size] + off.saved[J]), ctx.rng, ctx.training,
                      ctx.gradients_zero};
        layer<J>::backward(p + off.param[J], in, keep + batch * off.act[J], g, out, dp + off.param[J], batch,
                           inner);
        g = out;
      });
      if (dx != nullptr)
        for (std::size_t i = 0; i < batch * S::size; ++i) dx[i] += dy[i];
    }
  };
};

// ---------------------------------------------------------------------------
// rms_norm
// ---------------------------------------------------------------------------

namespace detail {
template <std::size_t C, std::size_t Dim>
struct rms_norm_dim_check {
  static_assert(C == Dim, "tinylarge: rms_norm<Dim>: Dim must equal the channel extent of the input (the width of "
                          "each token)");
  static constexpr bool value = C == Dim;
};
template <std::size_t C>
struct embedding_input_check {
  static_assert(C == 1, "tinylarge: embedding<Vocab, Dim>: the input must have one channel (one token id per "
                        "position: write input<1, T, 1>)");
  static constexpr bool value = C == 1;
};
template <std::size_t Tokens, std::size_t Seq, std::size_t C, std::size_t Dim>
struct positions_shape_check {
  static_assert(Tokens == Seq, "tinylarge: learned_positions<Seq, Dim> / sinusoidal_positions<Seq, Dim>: Seq must "
                               "equal the number of positions H·W of the input");
  static_assert(C == Dim, "tinylarge: learned_positions<Seq, Dim> / sinusoidal_positions<Seq, Dim>: Dim must equal "
                          "the channel extent of the input (the width of each token)");
  static constexpr bool value = Tokens == Seq && C == Dim;
};
}  // namespace detail

/// Root-mean-square normalisation (Zhang and Sennrich, 2019) of every token:
/// y = g ⊙ x/√(mean(x²) + ε), no centring and no bias, with ε = 2⁻²³ ≈ 1.19e-7
/// (`torch.nn.RMSNorm(Dim)`'s default, `torch.finfo(torch.float32).eps`).
///
/// Backward, with r = 1/√(mean(x²) + ε) and x̂ = x·r: dg += Σ dy ⊙ x̂,
/// dx = r·(ĝ − x̂·mean(ĝ ⊙ x̂)) with ĝ = dy ⊙ g (r recomputed from x).
/// @tparam Dim features per token; must equal the input's channel extent
template <std::size_t Dim>
struct rms_norm {
  static_assert(Dim > 0, "tinylarge: rms_norm<Dim> needs Dim > 0");
  static constexpr const char* name() noexcept { return "rms_norm"; }
  static constexpr float eps = 1.1920928955078125e-7f;  // 2^-23
  template <class S>
  static constexpr bool accepts = S::c == Dim;
  template <class S>
  using diagnose = detail::rms_norm_dim_check<S::c, Dim>;

  template <class S>
  struct bind : detail::layer_base<rms_norm, S, S, layer_kind::rms_norm> {
    static constexpr std::size_t rows_per_sample = S::h * S::w;
    static constexpr std::size_t weight_count = Dim;  // gain
    static constexpr std::size_t param_count = Dim;
    static constexpr std::size_t macs = rows_per_sample * Dim * 3;
    static constexpr std::size_t fan_in = Dim;
    static constexpr std::size_t fan_out = Dim;

    /// Gain 1 (what `nn.RMSNorm` starts from), whatever the initializer.
    template <class Init, class G>
    static void initialize(float* p, G&) noexcept {
      for (std::size_t i = 0; i < Dim; ++i) p[i] = 1.0f;
    }
    /// 1/√(mean(x²) + ε) of one token.
    static float rrms(const float* x) noexcept {
      float s = 0.0f;
      for (std::size_t i = 0; i < Dim; ++i) s += x[i] * x[i];
      return 1.0f / std::sqrt(s / static_cast<float>(Dim) + eps);
    }
    static void forward(const float* p, const float* x, float* y, std::size_t batch, context&) noexcept {
      for (std::size_t r = 0; r < batch * rows_per_sample; ++r) {
        const float* xr = x + r * Dim;
        const float rs = rrms(xr);
        for (std::size_t i = 0; i < Dim; ++i) y[r * Dim + i] = p[i] * (xr[i] * rs);
      }
    }
    static void backward(const float* p, const float* x, const float*, const float* dy, float* dx, float* dp,
                         std::size_t batch, context&) noexcept {
      for (std::size_t r = 0; r < batch * rows_per_sample; ++r) {
        const float* xr = x + r * Dim;
        const float* gr = dy + r * Dim;
        const float rs = rrms(xr);
        float sum_gx = 0.0f;
        for (std::size_t i = 0; i < Dim; ++i) {
          const float xh = xr[i] * rs;
          dp[i] += gr[i] * xh;
          sum_gx += gr[i] * p[i] * xh;
        }
        if (dx == nullptr) continue;
        const float mgx = sum_gx / static_cast<float>(Dim);
        for (std::size_t i = 0; i < Dim; ++i) dx[r * Dim + i] = rs * (gr[i] * p[i] - xr[i] * rs * mgx);
      }
    }
  };
};

// ---------------------------------------------------------------------------
// silu
// ---------------------------------------------------------------------------

/// Sigmoid linear unit (Elfwing et al., 2018; "swish", as `torch.nn.SiLU()`):
/// y = x·σ(x). Backward: dx = dy·σ(x)·(1 + x·(1 − σ(x))), from the input.
struct silu {
  static constexpr const char* name() noexcept { return "silu"; }
  template <class In>
  static constexpr bool accepts = true;
  template <class In>
  struct bind : detail::layer_base<silu, In, In, layer_kind::silu> {
    static float sigma(float x) noexcept { return 1.0f / (1.0f + std::exp(-x)); }
    static void forward(const float*, const float* x, float* y, std::size_t batch, context&) noexcept {
      for (std::size_t i = 0; i < batch * In::size; ++i) y[i] = x[i] * sigma(x[i]);
    }
    static void backward(const float*, const float* x, const float*, const float* dy, float* dx, float*,
                         std::size_t batch, context&) noexcept {
      if (dx == nullptr) return;
      for (std::size_t i = 0; i < batch * In::size; ++i) {
        const float s = sigma(x[i]);
        dx[i] = dy[i] * s * (1.0f + x[i] * (1.0f - s));
      }
    }
  };
};

// ---------------------------------------------------------------------------
// embedding
// ---------------------------------------------------------------------------

/// Token embedding: each position of an H×W×1 input holds a token id, and
/// becomes row `id` of a [Vocab][Dim] table (`torch.nn.Embedding(Vocab,
/// Dim).weight`); the output is H×W×Dim.
///
/// **Ids in the float activation buffer.** A token id travels as its exact
/// value in a float (0.0f, 1.0f, …; every integer up to 2²⁴ is exact, hence
/// Vocab ≤ 2²⁴). The forward pass checks every id before it writes anything:
/// a NaN, a fraction, a negative value or an id ≥ Vocab raises
/// `errc::invalid_argument` (on the host a `tl::invalid_argument` exception
/// naming the layer; without exceptions the fatal-error hook). Write ids with
/// `static_cast<float>(id)`.
///
/// Backward scatter-adds dy into the rows of the ids seen (a repeated id
/// accumulates); the input gradient is zero (ids are not differentiable).
/// `initialize` draws the table from N(0, 1), as `nn.Embedding` does.
/// @tparam Vocab number of token ids (table rows), 1 … 2²⁴
/// @tparam Dim width of each embedding vector
template <std::size_t Vocab, std::size_t Dim>
struct embedding {
  static_assert(Vocab > 0 && Dim > 0, "tinylarge: embedding<Vocab, Dim> needs Vocab, Dim > 0");
  static_assert(Vocab <= (std::size_t{1} << 24),
                "tinylarge: embedding<Vocab, Dim>: ids travel as exact integers in float, so Vocab ≤ 2^24");
  static constexpr const char* name() noexcept { return "embedding"; }
  static constexpr std::size_t vocab = Vocab;
  template <class S>
  static constexpr bool accepts = S::c == 1;
  template <class S>
  using diagnose = detail::embedding_input_check<S::c>;

  template <class S>
  struct bind : detail::layer_base<embedding, S, shape<S::h, S::w, Dim>, layer_kind::embedding> {
    static constexpr std::size_t tokens = S::h * S::w;
    static constexpr std::size_t weight_count = Vocab * Dim;
    static constexpr std::size_t param_count = Vocab * Dim;
    static constexpr std::size_t fan_in = Dim;
    static constexpr std::size_t fan_out = Dim;
    /// The forward pass may raise (a bad id): `inference_network::forward`
    /// is not noexcept for a model with this layer.
    static constexpr bool validates_input = true;

    /// N(0, 1), as `nn.Embedding`, whatever the initializer.
    template <class Init, class G>
    static void initialize(float* p, G& g) {
      for (std::size_t i = 0; i < weight_count; ++i) p[i] = g.normal();
    }
    /// True when `v` is an integer in [0, Vocab) (false for NaN).
    static constexpr bool valid_id(float v) noexcept {
      return v >= 0.0f && v < static_cast<float>(Vocab) && static_cast<float>(static_cast<std::size_t>(v)) == v;
    }
    static void forward(const float* p, const float* x, float* y, std::size_t batch, context&) {
      for (std::size_t r = 0; r < batch * tokens; ++r)
        TINYLARGE_REQUIRE(valid_id(x[r]), errc::invalid_argument,
                          "tinylarge: embedding<Vocab, Dim>: an input value is not a token id (an integer in "
                          "[0, Vocab) stored exactly in a float): NaN, a fraction, a negative value or an id >= Vocab");
      for (std::size_t r = 0; r < batch * tokens; ++r) {
        const float* row = p + static_cast<std::size_t>(x[r]) * Dim;
        for (std::size_t i = 0; i < Dim; ++i) y[r * Dim + i] = row[i];
      }
    }
    static void backward(const float*, const float* x, const float*, const float* dy, float* dx, float* dp,
                         std::size_t batch, context&) noexcept {
      for (std::size_t r = 0; r < batch * tokens; ++r) {
        float* row = dp + static_cast<std::size_t>(x[r]) * Dim;  // ids were checked by forward
        for (std::size_t i = 0; i < Dim; ++i) row[i] += dy[r * Dim + i];
      }
      if (dx != nullptr)
        for (std::size_t r = 0; r < batch * tokens; ++r) dx[r] = 0.0f;
    }
  };
};

// ---------------------------------------------------------------------------
// positions
// ---------------------------------------------------------------------------

/// Learned absolute positions: y[t] = x[t] + P[t] for the Seq = H·W positions
/// of a sample, P a trained [Seq][Dim] table (as `nn.Embedding(Seq,
/// Dim).weight` indexed by 0 … Seq−1, or a GPT-style `nn.Parameter`).
/// Backward: dP += Σ over the batch of dy, dx = dy. `initialize` draws P from
/// N(0, 1), as `nn.Embedding` does.
/// @tparam Seq positions per sample; must equal the input's H·W
/// @tparam Dim token width; must equal the input's channel extent
template <std::size_t Seq, std::size_t Dim>
struct learned_positions {
  static_assert(Seq > 0 && Dim > 0, "tinylarge: learned_positions<Seq, Dim> needs Seq, Dim > 0");
  static constexpr const char* name() noexcept { return "learned_positions"; }
  template <class S>
  static constexpr bool accepts = S::h * S::w == Seq && S::c == Dim;
  template <class S>
  using diagnose = detail::positions_shape_check<S::h * S::w, Seq, S::c, Dim>;

  template <class S>
  struct bind : detail::layer_base<learned_positions, S, S, layer_kind::learned_positions> {
    static constexpr std::size_t weight_count = Seq * Dim;
    static constexpr std::size_t param_count = Seq * Dim;
    static constexpr std::size_t macs = Seq * Dim;
    static constexpr std::size_t fan_in = Dim;
    static constexpr std::size_t fan_out = Dim;
    /// N(0, 1), as `nn.Embedding`, whatever the initializer.
    template <class Init, class G>
    static void initialize(float* p, G& g) {
      for (std::size_t i = 0; i < weight_count; ++i) p[i] = g.normal();
    }
    static void forward(const float* p, const float* x, float* y, std::size_t batch, context&) noexcept {
      for (std::size_t b = 0; b < batch; ++b)
        for (std::size_t i = 0; i < Seq * Dim; ++i) y[b * Seq * Dim + i] = x[b * Seq * Dim + i] + p[i];
    }
    static void backward(const float*, const float*, const float*, const float* dy, float* dx, float* dp,
                         std::size_t batch, context&) noexcept {
      for (std::size_t b = 0; b < batch; ++b)
        for (std::size_t i = 0; i < Seq * Dim; ++i) dp[i] += dy[b * Seq * Dim + i];
      if (dx != nullptr) detail::copy(dy, dx, batch * Seq * Dim);
    }
  };
};

/// Fixed sinusoidal positions (Vaswani et al., 2017, §3.5): y[t] = x[t] + PE[t]
/// with PE[t][2i] = sin(t / 10000^(2i/Dim)) and PE[t][2i+1] = cos(t /
/// 10000^(2i/Dim)), t = 0 … Seq−1 (an odd Dim ends with a sine). The angle is
/// computed in double, then rounded to float. No parameters; dx = dy.
/// @tparam Seq positions per sample; must equal the input's H·W
/// @tparam Dim token width; must equal the input's channel extent
template <std::size_t Seq, std::size_t Dim>
struct sinusoidal_positions {
  static_assert(Seq > 0 && Dim > 0, "tinylarge: sinusoidal_positions<Seq, Dim> needs Seq, Dim > 0");
  static constexpr const char* name() noexcept { return "sinusoidal_positions"; }
  template <class S>
  static constexpr bool accepts = S::h * S::w == Seq && S::c == Dim;
  template <class S>
  using diagnose = detail::positions_shape_check<S::h * S::w, Seq, S::c, Dim>;

  /// PE[t][j].
  static float value(std::size_t t, std::size_t j) noexcept {
    const double freq = std::pow(10000.0, -static_cast<double>(j - j % 2) / static_cast<double>(Dim));
    const double a = static_cast<double>(t) * freq;
    return static_cast<float>(j % 2 == 0 ? std::sin(a) : std::cos(a));
  }

  template <class S>
  struct bind : detail::layer_base<sinusoidal_positions, S, S, layer_kind::sinusoidal_positions> {
    static constexpr std::size_t macs = Seq * Dim;
    static void forward(const float*, const float* x, float* y, std::size_t batch, context&) noexcept {
      for (std::size_t t = 0; t < Seq; ++t)
        for (std::size_t j = 0; j < Dim; ++j) {
          const float pe = value(t, j);
          for (std::size_t b = 0; b < batch; ++b) y[(b * Seq + t) * Dim + j] = x[(b * Seq + t) * Dim + j] + pe;
        }
    }
    static void backward(const float*, const float*, const float*, const float* dy, float* dx, float*,
                         std::size_t batch, context&) noexcept {
      if (dx != nullptr) detail::copy(dy, dx, batch * Seq * Dim);
    }
  };
};

// ---------------------------------------------------------------------------
// KV cache
// ---------------------------------------------------------------------------

/// Incremental decoding through one causal `multi_head_attention`: the keys
/// and values of the positions seen so far stay in the cache, and `append`
/// computes the layer's output for one new position from them, without
/// recomputing the earlier ones.
///
/// `append` on positions 0, 1, …, t−1 gives, for each, the output row of the
/// full-sequence forward pass (causal: row t never sees later rows) up to
/// fp32 rounding: the per-row attention is the same function (`attend_row`),
/// so scores, softmax and P·V sum in the same order, but the Q/K/V and output
/// projections run `kernels::dense_f32` on one row instead of T, and with the
/// default back end the results are not bit-identical (tests/test_nn.cpp
/// asserts a relative difference ≤ 1e-6; figures in docs/transformers.md).
///
/// Capacity is the bound layer's sequence length (H·W of its input); the
/// cache holds fixed-size member arrays ((2T + 4)·Dim + T floats), never on
/// the heap. `append` on a full cache raises `errc::capacity_exceeded`;
/// `clear()` starts a new sequence.
/// @tparam Bound a bound causal attention layer, e.g. `Model::layer<I>` (or
///         `Model::layer<I>::layer<J>` inside a residual block)
template <class Bound>
class kv_cache {
  static_assert(Bound::kind == layer_kind::multi_head_attention,
                "tinylarge: kv_cache<Bound>: Bound must be a bound multi_head_attention layer (Model::layer<I>)");
  static_assert(Bound::descriptor::causal,
                "tinylarge: kv_cache<Bound>: the attention must be causal (multi_head_attention<Dim, Heads, true>): "
                "a non-causal layer's earlier outputs change with every new position");
  static constexpr std::size_t dim = Bound::in_shape::c;
  static constexpr std::size_t head_dim = Bound::descriptor::head_dim;

 public:
  /// Positions the cache holds (the layer's sequence length).
  static constexpr std::size_t capacity = Bound::tokens;

  /// Positions appended since construction or the last `clear()`.
  std::size_t size() const noexcept { return n_; }
  void clear() noexcept { n_ = 0; }

  /// Feed position `size()`: `x` is its input row (Dim floats), `y` receives
  /// the layer's output row (Dim floats); `params` points at the layer's
  /// parameters (`net.parameters().data() + Model::param_offset<I>`).
  void append(const float* params, const float* x, float* y) {
    TINYLARGE_REQUIRE(n_ < capacity, errc::capacity_exceeded,
                      "tinylarge: kv_cache::append: the cache is full (capacity = the layer's sequence length); "
                      "clear() it to start a new sequence");
    kernels::dense_f32(kernels::default_backend{}, 1, 3 * dim, dim, x, Bound::w_in(params), Bound::b_in(params),
                       qkv_);
    for (std::size_t i = 0; i < 2 * dim; ++i) kv_[n_ * 2 * dim + i] = qkv_[dim + i];
    const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
    for (std::size_t h = 0; h < Bound::heads; ++h)
      Bound::attend_row(qkv_ + h * head_dim, kv_ + h * head_dim, kv_ + dim + h * head_dim, 2 * dim, n_ + 1, scale,
                        prob_, o_ + h * head_dim);
    kernels::dense_f32(kernels::default_backend{}, 1, dim, dim, o_, Bound::w_out(params), Bound::b_out(params), y);
    ++n_;
  }

 private:
  float kv_[capacity * 2 * dim]{};  // per position: K row, then V row
  float qkv_[3 * dim]{};
  float o_[dim]{};
  float prob_[capacity]{};
  std::size_t n_ = 0;
};

}  // namespace tinylarge::nn
