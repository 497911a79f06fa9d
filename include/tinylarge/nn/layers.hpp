/// @file nn/layers.hpp
/// @brief Layer descriptors with compile-time shapes, and their fp32 forward
///        and backward passes.
///
/// Available layers (descriptor → what `bind<In>` requires of the input):
///  - `dense<In, Out>`: a flat vector of `In` features; y = W·x + b, W is Out×In.
///  - `conv2d<OutC, K, Stride, Pad>`: an H×W×C image with H+2·Pad ≥ K; square
///    K×K kernels, zero padding, NHWC; weights [OutC][K][K][C] (TFLite order).
///  - `depthwise_conv2d<K, Stride, Pad, Mult>`: an H×W×C image; output channel
///    c·Mult + m filters input channel c; weights [C·Mult][K][K].
///  - `max_pool2d<K, S>`, `avg_pool2d<K, S>`: an image with H, W ≥ K; no padding.
///  - `flatten`: anything; H×W×C → 1×1×(H·W·C) (NHWC makes this a no-op in memory).
///  - `relu`, `relu6`, `sigmoid`, `tanh_act` (alias `tanh`), `softmax` (over
///    the channel axis), `dropout<Percent>` (inverted dropout): any shape.
///  - `with_precision<Layer, P>`: `Layer` computing in precision P whatever the
///    network's (per-layer mixed precision, see nn/lowp.hpp).
///
/// Every bound layer has static `forward` and `backward` functions on fp32
/// batches (row-major `batch × in_shape::size`); `backward` *accumulates* the
/// parameter gradient into `dparams` and writes the input gradient into `dx`
/// when `dx` is not null. Dense and convolution layers run on the public
/// kernels (`kernels::dense_f32`, `kernels::gemm_f32`): a SIMD back end that
/// overloads them speeds up training without a change here.
///
/// Nothing in this file allocates or throws: the fp32 forward passes build in
/// the freestanding profile.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "../core/config.hpp"
#include "../core/rng.hpp"
#include "../kernels/backend.hpp"
#include "../kernels/dense.hpp"
#include "../kernels/elementwise.hpp"
#include "../precision/concepts.hpp"
#include "shape.hpp"

namespace tinylarge::nn {

using context = layer_context<tinylarge::rng>;

namespace detail {

/// Defaults of a bound layer without parameters; layers override what differs.
template <class Descriptor, class In, class Out, layer_kind Kind>
struct layer_base {
  using descriptor = Descriptor;
  using in_shape = In;
  using out_shape = Out;
  static constexpr layer_kind kind = Kind;
  static constexpr std::size_t weight_count = 0;
  static constexpr std::size_t bias_count = 0;
  static constexpr std::size_t param_count = 0;
  static constexpr std::size_t macs = 0;
  static constexpr std::size_t fan_in = 0;
  static constexpr std::size_t fan_out = 0;
  static constexpr std::size_t workspace_per_sample = 0;
  static constexpr std::size_t saved_per_sample = 0;
  /// Bytes of scratch the int8 inference path needs besides input and output.
  static constexpr std::size_t inference_scratch = 0;
  static constexpr const char* name() noexcept { return to_string(Kind); }
};

/// Output extent of a convolution or pooling window along one axis:
/// ⌊(n + 2·pad − k) / stride⌋ + 1.
constexpr std::size_t window_out(std::size_t n, std::size_t k, std::size_t stride, std::size_t pad) noexcept {
  return (n + 2 * pad - k) / stride + 1;
}

inline void copy(const float* x, float* y, std::size_t n) noexcept {
  for (std::size_t i = 0; i < n; ++i) y[i] = x[i];
}

/// Geometry of a K×K convolution over an NHWC image (run-time form of a
/// bound `conv2d`; the architecture search's supernet uses it for
/// sub-networks whose shapes are known only at run time).
struct conv_geometry {
  std::size_t h, w, c;        ///< input height, width, channels
  std::size_t k, stride, pad; ///< kernel, stride, zero padding on every border
  std::size_t ho, wo;         ///< output height and width (`window_out`)
  [[nodiscard]] constexpr std::size_t patch() const noexcept { return k * k * c; }
};

/// im2col: cols[(b·ho·wo + r)·patch + (ky·K + kx)·C + c] = x(b, oy·S + ky − P, ox·S + kx − P, c), 0 outside.
inline void im2col(const conv_geometry& g, const float* x, float* cols, std::size_t batch) noexcept {
  const std::size_t patch = g.patch(), size = g.h * g.w * g.c;
  for (std::size_t b = 0; b < batch; ++b) {
    const float* xs = x + b * size;
    for (std::size_t oy = 0; oy < g.ho; ++oy)
      for (std::size_t ox = 0; ox < g.wo; ++ox) {
        float* row = cols + ((b * g.ho + oy) * g.wo + ox) * patch;
        for (std::size_t ky = 0; ky < g.k; ++ky) {
          const std::size_t iy = oy * g.stride + ky;  // offset by pad
          for (std::size_t kx = 0; kx < g.k; ++kx) {
            const std::size_t ix = ox * g.stride + kx;
            float* dst = row + (ky * g.k + kx) * g.c;
            const bool inside = iy >= g.pad && iy < g.h + g.pad && ix >= g.pad && ix < g.w + g.pad;
            if (inside) {
              const float* src = xs + ((iy - g.pad) * g.w + (ix - g.pad)) * g.c;
              for (std::size_t c = 0; c < g.c; ++c) dst[c] = src[c];
            } else {
              for (std::size_t c = 0; c < g.c; ++c) dst[c] = 0.0f;
            }
          }
        }
      }
  }
}
/// The adjoint of `im2col`: dx = Σ over the rows that read each input element.
inline void col2im(const conv_geometry& g, const float* cols, float* dx, std::size_t batch) noexcept {
  const std::size_t patch = g.patch(), size = g.h * g.w * g.c;
  for (std::size_t i = 0; i < batch * size; ++i) dx[i] = 0.0f;
  for (std::size_t b = 0; b < batch; ++b) {
    float* xs = dx + b * size;
    for (std::size_t oy = 0; oy < g.ho; ++oy)
      for (std::size_t ox = 0; ox < g.wo; ++ox) {
        const float* row = cols + ((b * g.ho + oy) * g.wo + ox) * patch;
        for (std::size_t ky = 0; ky < g.k; ++ky) {
          const std::size_t iy = oy * g.stride + ky;
          if (iy < g.pad || iy >= g.h + g.pad) continue;
          for (std::size_t kx = 0; kx < g.k; ++kx) {
            const std::size_t ix = ox * g.stride + kx;
            if (ix < g.pad || ix >= g.w + g.pad) continue;
            float* dst = xs + ((iy - g.pad) * g.w + (ix - g.pad)) * g.c;
            const float* src = row + (ky * g.k + kx) * g.c;
            for (std::size_t c = 0; c < g.c; ++c) dst[c] += src[c];
          }
        }
      }
  }
}

/// Elementwise activation F: `F::forward(n, x, y)` computes y = f(x) and
/// `F::backward(n, y, dy, dx)` dx = dy · f'(x) expressed in the output y, so
/// the backward pass needs no copy of the input.
template <class Descriptor, class In, layer_kind Kind, class F>
struct elementwise_layer : layer_base<Descriptor, In, In, Kind> {
  static void forward(const float*, const float* x, float* y, std::size_t batch, context&) noexcept {
    F::forward(batch * In::size, x, y);
  }
  static void backward(const float*, const float*, const float* y, const float* dy, float* dx, float*,
                       std::size_t batch, context&) noexcept {
    if (dx == nullptr) return;
    F::backward(batch * In::size, y, dy, dx);
  }
};

}  // namespace detail

namespace detail {
/// Initialise one bound layer's parameters at `p`: its own
/// `initialize<Init>(p, g)` when it has one (layer norm's unit gain, the inner
/// layers of a residual block), else weights drawn from `Init` with the
/// layer's fan-in and fan-out and zero biases.
template <class L, class Init, class G>
void initialize_layer(float* p, G& g) {
  if constexpr (requires { L::template initialize<Init>(p, g); }) {
    L::template initialize<Init>(p, g);
  } else {
    for (std::size_t i = 0; i < L::weight_count; ++i) p[i] = Init::sample(g, L::fan_in, L::fan_out);
    for (std::size_t i = 0; i < L::bias_count; ++i) p[L::weight_count + i] = 0.0f;
  }
}
}  // namespace detail

// ---------------------------------------------------------------------------
// dense
// ---------------------------------------------------------------------------

/// Fully connected layer: y = W·x + b, W ∈ ℝ^{Out×In} row-major, b ∈ ℝ^{Out}.
///
/// Backward (for a batch X ∈ ℝ^{B×In}, dY ∈ ℝ^{B×Out}):
/// dX = dY·W, dW += dYᵀ·X, db += Σ_rows dY.
/// @tparam In  input features; a leading `dense<In, …>` implies `input<In>`
/// @tparam Out output features
template <std::size_t In, std::size_t Out>
struct dense {
  static_assert(In > 0 && Out > 0, "tinylarge: dense<In, Out> needs In > 0 and Out > 0");
  using implied_input = input<In>;
  static constexpr const char* name() noexcept { return "dense"; }
  template <class S>
  static constexpr bool accepts = S::flat && S::c == In;

  template <class S>
  struct bind : detail::layer_base<dense, S, shape<1, 1, Out>, layer_kind::dense> {
    static constexpr std::size_t out_channels = Out;
    static constexpr std::size_t weight_count = In * Out;
    static constexpr std::size_t bias_count = Out;
    static constexpr std::size_t param_count = weight_count + bias_count;
    static constexpr std::size_t macs = In * Out;
    static constexpr std::size_t fan_in = In;
    static constexpr std::size_t fan_out = Out;

    static void forward(const float* p, const float* x, float* y, std::size_t batch, context&) noexcept {
      kernels::dense_f32(kernels::default_backend{}, batch, Out, In, x, p, p + weight_count, y);
    }
    static void backward(const float* p, const float* x, const float*, const float* dy, float* dx, float* dp,
                         std::size_t batch, context& ctx) noexcept {
      using kernels::transpose;
      // dW (Out×In) += dYᵀ (Out×B) · X (B×In); = when the block holds zeros (not read)
      kernels::gemm_f32(kernels::default_backend{}, transpose::yes, transpose::no, Out, In, batch, 1.0f, dy, Out,
                        x, In, ctx.gradients_zero ? 0.0f : 1.0f, dp, In);
      float* db = dp + weight_count;
      for (std::size_t i = 0; i < batch; ++i)
        for (std::size_t o = 0; o < Out; ++o) db[o] += dy[i * Out + o];
      // dX (B×In) = dY (B×Out) · W (Out×In)
      if (dx != nullptr)
        kernels::gemm_f32(kernels::default_backend{}, transpose::no, transpose::no, batch, In, Out, 1.0f, dy, Out,
                          p, In, 0.0f, dx, In);
    }
    /// `backward` into a zeroed block g followed by the plain SGD step
    /// (`kernels::sgd_step`, μ = λ = 0) on W and b, bit for bit: dX first (it
    /// needs the old W), then W ← W − η·dYᵀX fused into the GEMM
    /// (`kernels::sgd_gemm_tn_f32`) and b ← b − η·Σ dY. g: workspace
    /// (`param_count` floats). `network::backward_sgd` calls this.
    static void backward_sgd(float* p, const float* x, const float*, const float* dy, float* dx, float* g, float lr,
                             std::size_t batch, context&) noexcept {
      using kernels::transpose;
      if (dx != nullptr)
        kernels::gemm_f32(kernels::default_backend{}, transpose::no, transpose::no, batch, In, Out, 1.0f, dy, Out,
                          p, In, 0.0f, dx, In);
      kernels::sgd_gemm_tn_f32(kernels::default_backend{}, Out, In, batch, lr, dy, Out, x, In, p, In, g);
      float* db = g + weight_count;
      for (std::size_t o = 0; o < Out; ++o) db[o] = 0.0f;
      for (std::size_t i = 0; i < batch; ++i)
        for (std::size_t o = 0; o < Out; ++o) db[o] += dy[i * Out + o];
      kernels::sgd_step(kernels::default_backend{}, Out, kernels::sgd_params<float>{lr, 0.0f, 0.0f, false},
                        p + weight_count, db, static_cast<float*>(nullptr));
    }
  };
};

// ---------------------------------------------------------------------------
// conv2d
// ---------------------------------------------------------------------------

/// 2-D convolution, NHWC, square K×K kernel, zero padding `Pad` on each side.
///
/// Implemented as im2col + GEMM (Chellapilla et al., "High Performance
/// Convolutional Neural Networks for Document Processing", 2006): each output
/// pixel's K·K·C receptive field becomes one row of a matrix `cols`, so that
/// Y = cols·Wᵀ + b is one `dense_f32` call and the backward products are
/// dW += dYᵀ·cols and dcols = dY·W followed by col2im.
/// @tparam OutC output channels (filters)
/// @tparam K kernel size
/// @tparam Stride stride in both directions
/// @tparam Pad zero padding on every border
template <std::size_t OutC, std::size_t K, std::size_t Stride = 1, std::size_t Pad = 0>
struct conv2d {
  static_assert(OutC > 0 && K > 0 && Stride > 0, "tinylarge: conv2d<OutC, K, Stride, Pad> needs OutC, K, Stride > 0");
  static constexpr const char* name() noexcept { return "conv2d"; }
  template <class S>
  static constexpr bool accepts = S::h + 2 * Pad >= K && S::w + 2 * Pad >= K;

  template <class S>
  struct bind : detail::layer_base<conv2d, S,
                                   shape<detail::window_out(S::h, K, Stride, Pad),
                                         detail::window_out(S::w, K, Stride, Pad), OutC>,
                                   layer_kind::conv2d> {
    static constexpr std::size_t ho = detail::window_out(S::h, K, Stride, Pad);
    static constexpr std::size_t wo = detail::window_out(S::w, K, Stride, Pad);
    static constexpr std::size_t patch = K * K * S::c;  ///< one row of the im2col matrix
    static constexpr std::size_t kernel = K, stride = Stride, pad = Pad;
    static constexpr std::size_t out_channels = OutC;
    static constexpr std::size_t weight_count = OutC * patch;
    static constexpr std::size_t bias_count = OutC;
    static constexpr std::size_t param_count = weight_count + bias_count;
    static constexpr std::size_t macs = ho * wo * OutC * patch;
    static constexpr std::size_t fan_in = patch;
    static constexpr std::size_t fan_out = K * K * OutC;
    static constexpr std::size_t workspace_per_sample = 2 * ho * wo * patch;  // cols and dcols
    static constexpr std::size_t inference_scratch = patch;                        // one receptive field

    static constexpr detail::conv_geometry geometry{S::h, S::w, S::c, K, Stride, Pad, ho, wo};
    /// cols[(b·ho·wo + r)·patch + (ky·K + kx)·C + c] = x(b, oy·S + ky − P, ox·S + kx − P, c), 0 outside.
    static void im2col(const float* x, float* cols, std::size_t batch) noexcept { detail::im2col(geometry, x, cols, batch); }
    /// The adjoint of im2col: dx = Σ over the rows that read each input element.
    static void col2im(const float* cols, float* dx, std::size_t batch) noexcept { detail::col2im(geometry, cols, dx, batch); }
    static void forward(const float* p, const float* x, float* y, std::size_t batch, context& ctx) noexcept {
      float* cols = ctx.workspace;
      im2col(x, cols, batch);
      kernels::dense_f32(kernels::default_backend{}, batch * ho * wo, OutC, patch, cols, p, p + weight_count, y);
    }
    static void backward(const float* p, const float* x, const float*, const float* dy, float* dx, float* dp,
                         std::size_t batch, context& ctx) noexcept {
      using kernels::transpose;
      const std::size_t rows = batch * ho * wo;
      float* cols = ctx.workspace;
      float* dcols = ctx.workspace + rows * patch;
      im2col(x, cols, batch);
      kernels::gemm_f32(kernels::default_backend{}, transpose::yes, transpose::no, OutC, patch, rows, 1.0f, dy, OutC,
                        cols, patch, ctx.gradients_zero ? 0.0f : 1.0f, dp, patch);
      float* db = dp + weight_count;
      for (std::size_t r = 0; r < rows; ++r)
        for (std::size_t o = 0; o < OutC; ++o) db[o] += dy[r * OutC + o];
      if (dx != nullptr) {
        kernels::gemm_f32(kernels::default_backend{}, transpose::no, transpose::no, rows, patch, OutC, 1.0f, dy, OutC,
                          p, patch, 0.0f, dcols, patch);
        col2im(dcols, dx, batch);
      }
    }
  };
};

// ---------------------------------------------------------------------------
// depthwise_conv2d
// ---------------------------------------------------------------------------

/// Depthwise 2-D convolution (Howard et al., "MobileNets", 2017): each input
/// channel c is convolved with `Mult` K×K filters of its own, giving output
/// channels c·Mult + m. Weights are stored one row per output channel,
/// [C·Mult][K·K], so that per-channel quantization treats them like dense rows.
/// @tparam K kernel size
/// @tparam Stride stride in both directions
/// @tparam Pad zero padding on every border
/// @tparam Mult depth multiplier
template <std::size_t K, std::size_t Stride = 1, std::size_t Pad = 0, std::size_t Mult = 1>
struct depthwise_conv2d {
  static_assert(K > 0 && Stride > 0 && Mult > 0, "tinylarge: depthwise_conv2d<K, Stride, Pad, Mult> needs K, Stride, Mult > 0");
  static constexpr const char* name() noexcept { return "depthwise_conv2d"; }
  template <class S>
  static constexpr bool accepts = S::h + 2 * Pad >= K && S::w + 2 * Pad >= K;

  template <class S>
  struct bind : detail::layer_base<depthwise_conv2d, S,
                                   shape<detail::window_out(S::h, K, Stride, Pad),
                                         detail::window_out(S::w, K, Stride, Pad), S::c * Mult>,
                                   layer_kind::depthwise_conv2d> {
    static constexpr std::size_t ho = detail::window_out(S::h, K, Stride, Pad);
    static constexpr std::size_t wo = detail::window_out(S::w, K, Stride, Pad);
    static constexpr std::size_t oc = S::c * Mult;
    static constexpr std::size_t kernel = K, stride = Stride, pad = Pad, multiplier = Mult;
    static constexpr std::size_t out_channels = oc;
    static constexpr std::size_t weight_count = oc * K * K;
    static constexpr std::size_t bias_count = oc;
    static constexpr std::size_t param_count = weight_count + bias_count;
    static constexpr std::size_t macs = ho * wo * oc * K * K;
    static constexpr std::size_t fan_in = K * K;
    static constexpr std::size_t fan_out = K * K * Mult;

    /// Calls f(oy, ox, ky, kx, input pixel offset) for every tap inside the image.
    template <class F>
    static void for_each_tap(F&& f) noexcept {
      for (std::size_t oy = 0; oy < ho; ++oy)
        for (std::size_t ox = 0; ox < wo; ++ox)
          for (std::size_t ky = 0; ky < K; ++ky) {
            const std::size_t iy = oy * Stride + ky;
            if (iy < Pad || iy >= S::h + Pad) continue;
            for (std::size_t kx = 0; kx < K; ++kx) {
              const std::size_t ix = ox * Stride + kx;
              if (ix < Pad || ix >= S::w + Pad) continue;
              f(oy * wo + ox, ky * K + kx, ((iy - Pad) * S::w + (ix - Pad)) * S::c);
            }
          }
    }
    static void forward(const float* p, const float* x, float* y, std::size_t batch, context&) noexcept {
      const float* bias = p + weight_count;
      for (std::size_t b = 0; b < batch; ++b) {
        const float* xs = x + b * S::size;
        float* ys = y + b * ho * wo * oc;
        for (std::size_t pix = 0; pix < ho * wo; ++pix)
          for (std::size_t o = 0; o < oc; ++o) ys[pix * oc + o] = bias[o];
        for_each_tap([&](std::size_t pix, std::size_t tap, std::size_t in_off) {
          for (std::size_t c = 0; c < S::c; ++c)
            for (std::size_t m = 0; m < Mult; ++m) {
              const std::size_t o = c * Mult + m;
              ys[pix * oc + o] += p[o * K * K + tap] * xs[in_off + c];
            }
        });
      }
    }
    static void backward(const float* p, const float* x, const float*, const float* dy, float* dx, float* dp,
                         std::size_t batch, context&) noexcept {
      float* db = dp + weight_count;
      if (dx != nullptr)
        for (std::size_t i = 0; i < batch * S::size; ++i) dx[i] = 0.0f;
      for (std::size_t b = 0; b < batch; ++b) {
        const float* xs = x + b * S::size;
        const float* dys = dy + b * ho * wo * oc;
        float* dxs = dx != nullptr ? dx + b * S::size : nullptr;
        for (std::size_t pix = 0; pix < ho * wo; ++pix)
          for (std::size_t o = 0; o < oc; ++o) db[o] += dys[pix * oc + o];
        for_each_tap([&](std::size_t pix, std::size_t tap, std::size_t in_off) {
          for (std::size_t c = 0; c < S::c; ++c)
            for (std::size_t m = 0; m < Mult; ++m) {
              const std::size_t o = c * Mult + m;
              const float g = dys[pix * oc + o];
              dp[o * K * K + tap] += g * xs[in_off + c];
              if (dxs != nullptr) dxs[in_off + c] += g * p[o * K * K + tap];
            }
        });
      }
    }
  };
};

// ---------------------------------------------------------------------------
// pooling
// ---------------------------------------------------------------------------

namespace detail {
/// Shared shape logic of the two pooling layers (no padding).
template <class Descriptor, class S, std::size_t K, std::size_t Stride, layer_kind Kind>
struct pool_base : layer_base<Descriptor, S, shape<window_out(S::h, K, Stride, 0), window_out(S::w, K, Stride, 0), S::c>,
                              Kind> {
  static constexpr std::size_t ho = window_out(S::h, K, Stride, 0);
  static constexpr std::size_t wo = window_out(S::w, K, Stride, 0);
  static constexpr std::size_t kernel = K, stride = Stride;
  static constexpr std::size_t macs = ho * wo * S::c * K * K;  // comparisons or additions
  /// Offset of window element (ky, kx) of output pixel (oy, ox), channel 0.
  static constexpr std::size_t at(std::size_t oy, std::size_t ox, std::size_t ky, std::size_t kx) noexcept {
    return ((oy * Stride + ky) * S::w + (ox * Stride + kx)) * S::c;
  }
};
}  // namespace detail

/// Max pooling over K×K windows with stride S (no padding). The backward pass
/// routes each output gradient to the first maximum of its window.
/// @tparam K window size
/// @tparam S stride (default: K, non-overlapping windows)
template <std::size_t K, std::size_t S = K>
struct max_pool2d {
  static_assert(K > 0 && S > 0, "tinylarge: max_pool2d<K, S> needs K, S > 0");
  static constexpr const char* name() noexcept { return "max_pool2d"; }
  template <class In>
  static constexpr bool accepts = In::h >= K && In::w >= K;

  template <class In>
  struct bind : detail::pool_base<max_pool2d, In, K, S, layer_kind::max_pool2d> {
    using base = detail::pool_base<max_pool2d, In, K, S, layer_kind::max_pool2d>;
    /// Offset (within the sample) of the first maximum of window (oy, ox), channel c.
    static std::size_t argmax(const float* xs, std::size_t oy, std::size_t ox, std::size_t c) noexcept {
      std::size_t best = base::at(oy, ox, 0, 0) + c;
      for (std::size_t ky = 0; ky < K; ++ky)
        for (std::size_t kx = 0; kx < K; ++kx) {
          const std::size_t i = base::at(oy, ox, ky, kx) + c;
          if (xs[i] > xs[best]) best = i;
        }
      return best;
    }
    static void forward(const float*, const float* x, float* y, std::size_t batch, context&) noexcept {
      using O = typename base::out_shape;
      for (std::size_t b = 0; b < batch; ++b)
        for (std::size_t oy = 0; oy < base::ho; ++oy)
          for (std::size_t ox = 0; ox < base::wo; ++ox)
            for (std::size_t c = 0; c < In::c; ++c)
              y[b * O::size + (oy * base::wo + ox) * In::c + c] = x[b * In::size + argmax(x + b * In::size, oy, ox, c)];
    }
    static void backward(const float*, const float* x, const float*, const float* dy, float* dx, float*,
                         std::size_t batch, context&) noexcept {
      using O = typename base::out_shape;
      if (dx == nullptr) return;
      for (std::size_t i = 0; i < batch * In::size; ++i) dx[i] = 0.0f;
      for (std::size_t b = 0; b < batch; ++b)
        for (std::size_t oy = 0; oy < base::ho; ++oy)
          for (std::size_t ox = 0; ox < base::wo; ++ox)
            for (std::size_t c = 0; c < In::c; ++c)
              dx[b * In::size + argmax(x + b * In::size, oy, ox, c)] += dy[b * O::size + (oy * base::wo + ox) * In::c + c];
    }
  };
};

/// Average pooling over K×K windows with stride S (no padding).
/// @tparam K window size
/// @tparam S stride (default: K)
template <std::size_t K, std::size_t S = K>
struct avg_pool2d {
  static_assert(K > 0 && S > 0, "tinylarge: avg_pool2d<K, S> needs K, S > 0");
  static constexpr const char* name() noexcept { return "avg_pool2d"; }
  template <class In>
  static constexpr bool accepts = In::h >= K && In::w >= K;

  template <class In>
  struct bind : detail::pool_base<avg_pool2d, In, K, S, layer_kind::avg_pool2d> {
    using base = detail::pool_base<avg_pool2d, In, K, S, layer_kind::avg_pool2d>;
    static constexpr float inv_area = 1.0f / static_cast<float>(K * K);
    static void forward(const float*, const float* x, float* y, std::size_t batch, context&) noexcept {
      using O = typename base::out_shape;
      for (std::size_t b = 0; b < batch; ++b)
        for (std::size_t oy = 0; oy < base::ho; ++oy)
          for (std::size_t ox = 0; ox < base::wo; ++ox)
            for (std::size_t c = 0; c < In::c; ++c) {
              float s = 0.0f;
              for (std::size_t ky = 0; ky < K; ++ky)
                for (std::size_t kx = 0; kx < K; ++kx) s += x[b * In::size + base::at(oy, ox, ky, kx) + c];
              y[b * O::size + (oy * base::wo + ox) * In::c + c] = s * inv_area;
            }
    }
    static void backward(const float*, const float*, const float*, const float* dy, float* dx, float*,
                         std::size_t batch, context&) noexcept {
      using O = typename base::out_shape;
      if (dx == nullptr) return;
      for (std::size_t i = 0; i < batch * In::size; ++i) dx[i] = 0.0f;
      for (std::size_t b = 0; b < batch; ++b)
        for (std::size_t oy = 0; oy < base::ho; ++oy)
          for (std::size_t ox = 0; ox < base::wo; ++ox)
            for (std::size_t c = 0; c < In::c; ++c) {
              const float g = dy[b * O::size + (oy * base::wo + ox) * In::c + c] * inv_area;
              for (std::size_t ky = 0; ky < K; ++ky)
                for (std::size_t kx = 0; kx < K; ++kx) dx[b * In::size + base::at(oy, ox, ky, kx) + c] += g;
            }
    }
  };
};

// ---------------------------------------------------------------------------
// flatten and dropout
// ---------------------------------------------------------------------------

/// H×W×C → 1×1×(H·W·C). With NHWC layout the data does not move.
struct flatten {
  static constexpr const char* name() noexcept { return "flatten"; }
  template <class In>
  static constexpr bool accepts = true;
  template <class In>
  struct bind : detail::layer_base<flatten, In, shape<1, 1, In::size>, layer_kind::flatten> {
    static void forward(const float*, const float* x, float* y, std::size_t batch, context&) noexcept {
      detail::copy(x, y, batch * In::size);
    }
    static void backward(const float*, const float*, const float*, const float* dy, float* dx, float*,
                         std::size_t batch, context&) noexcept {
      if (dx != nullptr) detail::copy(dy, dx, batch * In::size);
    }
  };
};

/// Inverted dropout (Srivastava et al., JMLR 2014): while training each
/// element is zeroed with probability p = Percent/100 and the survivors are
/// scaled by 1/(1 − p); at inference it is the identity. The mask comes from
/// the network's seeded `tl::rng`, so runs repeat bit for bit.
/// @tparam Percent drop probability in percent, 0 ≤ Percent < 100 (an integer:
///         clang 14 has no floating-point template arguments)
template <unsigned Percent>
struct dropout {
  static_assert(Percent < 100, "tinylarge: dropout<Percent> needs 0 <= Percent < 100");
  static constexpr const char* name() noexcept { return "dropout"; }
  static constexpr float rate = static_cast<float>(Percent) / 100.0f;
  template <class In>
  static constexpr bool accepts = true;
  template <class In>
  struct bind : detail::layer_base<dropout, In, In, layer_kind::dropout> {
    static constexpr std::size_t saved_per_sample = In::size;  // the scale of each element (0 or 1/(1−p))
    static void forward(const float*, const float* x, float* y, std::size_t batch, context& ctx) noexcept {
      const std::size_t n = batch * In::size;
      if (!ctx.training || Percent == 0 || ctx.rng == nullptr) {
        detail::copy(x, y, n);
        if (ctx.saved != nullptr)
          for (std::size_t i = 0; i < n; ++i) ctx.saved[i] = 1.0f;
        return;
      }
      const float keep_scale = 1.0f / (1.0f - rate);
      for (std::size_t i = 0; i < n; ++i) {
        const float s = ctx.rng->uniform() < rate ? 0.0f : keep_scale;
        ctx.saved[i] = s;
        y[i] = x[i] * s;
      }
    }
    static void backward(const float*, const float*, const float*, const float* dy, float* dx, float*,
                         std::size_t batch, context& ctx) noexcept {
      if (dx == nullptr) return;
      for (std::size_t i = 0; i < batch * In::size; ++i) dx[i] = dy[i] * ctx.saved[i];
    }
  };
};

// ---------------------------------------------------------------------------
// activations
// ---------------------------------------------------------------------------

namespace detail {
// The streaming kernels of kernels/elementwise.hpp on the default back end.
struct relu_fn {
  static void forward(std::size_t n, const float* x, float* y) noexcept {
    kernels::relu(kernels::default_backend{}, n, x, y);
  }
  static void backward(std::size_t n, const float* y, const float* dy, float* dx) noexcept {
    kernels::relu_backward(kernels::default_backend{}, n, y, dy, dx);
  }
};
struct relu6_fn {
  static void forward(std::size_t n, const float* x, float* y) noexcept {
    kernels::relu6(kernels::default_backend{}, n, x, y);
  }
  static void backward(std::size_t n, const float* y, const float* dy, float* dx) noexcept {
    kernels::relu6_backward(kernels::default_backend{}, n, y, dy, dx);
  }
};
struct sigmoid_fn {
  /// σ(x) = 1 / (1 + e^{−x}), evaluated without overflow for large |x|.
  static float value(float x) noexcept {
    if (x >= 0.0f) return 1.0f / (1.0f + std::exp(-x));
    const float e = std::exp(x);
    return e / (1.0f + e);
  }
  static void forward(std::size_t n, const float* x, float* y) noexcept {
    for (std::size_t i = 0; i < n; ++i) y[i] = value(x[i]);
  }
  /// σ' = σ(1 − σ)
  static void backward(std::size_t n, const float* y, const float* dy, float* dx) noexcept {
    kernels::sigmoid_backward(kernels::default_backend{}, n, y, dy, dx);
  }
};
struct tanh_fn {
  static void forward(std::size_t n, const float* x, float* y) noexcept {
    for (std::size_t i = 0; i < n; ++i) y[i] = std::tanh(x[i]);
  }
  /// tanh' = 1 − tanh²
  static void backward(std::size_t n, const float* y, const float* dy, float* dx) noexcept {
    kernels::tanh_backward(kernels::default_backend{}, n, y, dy, dx);
  }
};
}  // namespace detail

/// Rectified linear unit, y = max(x, 0). After a dense or conv layer the int8
/// path fuses it into the requantization clamp.
struct relu {
  static constexpr const char* name() noexcept { return "relu"; }
  template <class In>
  static constexpr bool accepts = true;
  template <class In>
  using bind = detail::elementwise_layer<relu, In, layer_kind::relu, detail::relu_fn>;
};

/// y = min(max(x, 0), 6) (MobileNet's ReLU6); fused like `relu` in int8.
struct relu6 {
  static constexpr const char* name() noexcept { return "relu6"; }
  template <class In>
  static constexpr bool accepts = true;
  template <class In>
  using bind = detail::elementwise_layer<relu6, In, layer_kind::relu6, detail::relu6_fn>;
};

/// Logistic sigmoid σ(x) = 1/(1 + e^{−x}); int8 via a 256-entry table.
struct sigmoid {
  static constexpr const char* name() noexcept { return "sigmoid"; }
  template <class In>
  static constexpr bool accepts = true;
  template <class In>
  using bind = detail::elementwise_layer<sigmoid, In, layer_kind::sigmoid, detail::sigmoid_fn>;
};

/// Hyperbolic tangent; int8 via a 256-entry table. Named `tanh_act` so that it
/// never hides `std::tanh`; `nn::tanh` is an alias.
struct tanh_act {
  static constexpr const char* name() noexcept { return "tanh"; }
  template <class In>
  static constexpr bool accepts = true;
  template <class In>
  using bind = detail::elementwise_layer<tanh_act, In, layer_kind::tanh, detail::tanh_fn>;
};
using tanh = tanh_act;

/// Softmax over the channel axis of every pixel (over all features of a flat
/// vector): y_i = e^{x_i − max x} / Σ_j e^{x_j − max x}.
/// Backward: dx_i = y_i·(dy_i − Σ_j dy_j·y_j). For classification prefer a
/// model that ends in logits with the fused `softmax_cross_entropy` loss.
struct softmax {
  static constexpr const char* name() noexcept { return "softmax"; }
  template <class In>
  static constexpr bool accepts = true;
  template <class In>
  struct bind : detail::layer_base<softmax, In, In, layer_kind::softmax> {
    static constexpr std::size_t rows_per_sample = In::h * In::w;
    static void forward(const float*, const float* x, float* y, std::size_t batch, context&) noexcept {
      for (std::size_t r = 0; r < batch * rows_per_sample; ++r) {
        const float* xr = x + r * In::c;
        float* yr = y + r * In::c;
        float m = xr[0];
        for (std::size_t i = 1; i < In::c; ++i) m = xr[i] > m ? xr[i] : m;
        float sum = 0.0f;
        for (std::size_t i = 0; i < In::c; ++i) {
          yr[i] = std::exp(xr[i] - m);
          sum += yr[i];
        }
        const float inv = 1.0f / sum;
        for (std::size_t i = 0; i < In::c; ++i) yr[i] *= inv;
      }
    }
    static void backward(const float*, const float*, const float* y, const float* dy, float* dx, float*,
                         std::size_t batch, context&) noexcept {
      if (dx == nullptr) return;
      for (std::size_t r = 0; r < batch * rows_per_sample; ++r) {
        const float* yr = y + r * In::c;
        const float* gr = dy + r * In::c;
        float dot = 0.0f;
        for (std::size_t i = 0; i < In::c; ++i) dot += gr[i] * yr[i];
        for (std::size_t i = 0; i < In::c; ++i) dx[r * In::c + i] = yr[i] * (gr[i] - dot);
      }
    }
  };
};

// ---------------------------------------------------------------------------
// per-layer precision
// ---------------------------------------------------------------------------

namespace detail {
template <class Layer>
struct implied_input_of {};
template <class Layer>
  requires requires { typename Layer::implied_input; }
struct implied_input_of<Layer> {
  using implied_input = typename Layer::implied_input;
};
}  // namespace detail

/// Runs `Layer` in precision `P`, whatever the precision of the rest of the
/// network: `sequential<with_precision<dense<784, 300>, int8_per_channel>, relu,
/// dense<300, 100>, relu, with_precision<dense<100, 10>, int8_per_channel>>`
/// in an `nn::network<…, fp16>` has int8 first and last layers around an fp16
/// middle layer. The bound layer is `Layer`'s, with `precision = P` added;
/// shapes, parameter counts and layouts do not change, and a cut
/// (`partition::cut`) keeps the wrapper in its segment. Only weighted layers
/// (dense, conv2d) have a precision of their own; on other layers the wrapper
/// is accepted and changes nothing. See docs/precision.md, "Per-layer precision".
/// @tparam Layer a layer descriptor
/// @tparam P a `precision_policy`
template <class Layer, precision_policy P>
struct with_precision : detail::implied_input_of<Layer> {
  static_assert(layer_descriptor<Layer>, "tinylarge: with_precision<Layer, P>: Layer must be a layer descriptor");
  using layer_type = Layer;
  using precision = P;
  static constexpr const char* name() noexcept { return Layer::name(); }
  template <class S>
  static constexpr bool accepts = Layer::template accepts<S>;
  template <class S>
  struct bind : Layer::template bind<S> {
    using descriptor = with_precision;
    using precision = P;
  };
};

namespace detail {
template <class L, class Default>
struct precision_of {
  using type = Default;
};
template <class L, class Default>
  requires requires { typename L::precision; }
struct precision_of<L, Default> {
  using type = typename L::precision;
};
}  // namespace detail

/// The precision bound layer `L` runs in: its `with_precision` if it has one,
/// else `Default` (the network's precision).
template <class L, class Default>
using layer_precision_t = typename detail::precision_of<L, Default>::type;

}  // namespace tinylarge::nn
