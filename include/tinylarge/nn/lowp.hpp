/// @file nn/lowp.hpp
/// @brief The low-precision pieces of `nn::network` (host profile): the
///        dense / conv passes on storage-type operands with fp32
///        accumulation and the dynamic loss scale of fp16 training (which
///        layer computes in which precision: `layer_precision.hpp`, shared
///        with the freestanding deployment). Users normally only name
///        `loss_scale_state`.
///
/// A weighted layer in a float precision P other than fp32 runs its GEMMs on
/// operands rounded to `P::storage_type`:
///  - forward:  Y = round_P(X)·round_P(W)ᵀ + b (conv: X is the im2col matrix);
///  - backward: dW += round_P(dY)ᵀ·round_P(X), dX = round_P(dY)·round_P(W),
///    db += Σ dY (fp32).
/// The products accumulate in fp32 (`kernels::gemm` / `kernels::dense` for
/// float, `half` and `bfloat16`; any other storage type, e.g. a user's fp8, is
/// widened to fp32 first — exact for the products of two narrow values).
#pragma once

#include <cstddef>
#include <span>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "../kernels/dense.hpp"
#include "../precision/bf16.hpp"
#include "../precision/concepts.hpp"
#include "../precision/convert.hpp"
#include "../precision/fp16.hpp"
#include "../precision/int8.hpp"
#include "layer_precision.hpp"
#include "layers.hpp"

namespace tinylarge::nn::lowp {

/// State of dynamic loss scaling (Micikevicius et al. 2018; PyTorch's
/// `GradScaler` defaults): the loss gradient is multiplied by `scale` before
/// the backward pass; an overflow halves it and skips the step, and
/// `growth_interval` accepted steps in a row double it (up to `max_scale`).
struct loss_scale_state {
  float scale = 65536.0f;
  std::size_t growth_interval = 2000;
  float max_scale = 16777216.0f;  ///< 2^24
  std::size_t good_steps = 0;     ///< accepted steps since the last change
  std::size_t skipped = 0;        ///< steps skipped because of an overflow, in total
};

/// Storage-type operands of one layer, kept from the forward to the backward pass.
template <class T>
struct layer_buffers {
  std::vector<T> w, x, dy;
  std::vector<T> t, u;  ///< a LoRA layer's rounded x·Aᵀ (forward to backward) and dy·B (nn/lora.hpp)
  std::vector<float> wa, wb;  ///< widened operands for storage types without a kernel
};

template <class Model, class Default, class Seq = std::make_index_sequence<Model::size>>
struct layer_buffers_of;
template <class Model, class Default, std::size_t... I>
struct layer_buffers_of<Model, Default, std::index_sequence<I...>> {
  template <std::size_t J>
  using storage_of = std::conditional_t<is_lowp_layer<typename Model::template layer<J>, Default>,
                                        typename layer_precision_t<typename Model::template layer<J>, Default>::storage_type,
                                        float>;
  using type = std::tuple<layer_buffers<storage_of<I>>...>;
};

/// dst[i] = P::encode(src[i]) for n values (the bulk SIMD conversions for fp16 and bf16).
template <float_precision P>
void encode(const float* src, std::size_t n, std::vector<typename P::storage_type>& dst) {
  using T = typename P::storage_type;
  dst.resize(n);
  if constexpr (std::is_same_v<T, half> || std::is_same_v<T, bfloat16>) {
    convert(std::span<const float>(src, n), std::span<T>(dst.data(), n));
  } else {
    for (std::size_t i = 0; i < n; ++i) dst[i] = P::encode(src[i]);
  }
}

template <float_precision P>
const float* widen(const std::vector<typename P::storage_type>& v, std::vector<float>& out) {
  out.resize(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) out[i] = P::decode(v[i]);
  return out.data();
}

/// C = alpha·op(A)·op(B) + beta·C on storage-type operands, fp32 accumulation.
template <float_precision P>
void gemm(kernels::transpose ta, kernels::transpose tb, std::size_t m, std::size_t n, std::size_t k,
          const std::vector<typename P::storage_type>& a, std::size_t lda,
          const std::vector<typename P::storage_type>& b, std::size_t ldb, float beta, float* c, std::size_t ldc,
          layer_buffers<typename P::storage_type>& buf) {
  using T = typename P::storage_type;
  if constexpr (kernels::kernel_float<T>) {
    (void)buf;
    kernels::gemm(ta, tb, m, n, k, 1.0f, a.data(), lda, b.data(), ldb, beta, c, ldc);
  } else {
    const float* fa = widen<P>(a, buf.wa);
    const float* fb = widen<P>(b, buf.wb);
    kernels::gemm(ta, tb, m, n, k, 1.0f, fa, lda, fb, ldb, beta, c, ldc);
  }
}

/// C = alpha·op(A)·op(B) + beta·C on the storage-type operands at `a[ao …]`
/// (`an` values) and `b[bo …]` (`bn` values), fp32 accumulation.
template <float_precision P>
void gemm_at(kernels::transpose ta, kernels::transpose tb, std::size_t m, std::size_t n, std::size_t k, float alpha,
             const std::vector<typename P::storage_type>& a, std::size_t ao, std::size_t an, std::size_t lda,
             const std::vector<typename P::storage_type>& b, std::size_t bo, std::size_t bn, std::size_t ldb,
             float beta, float* c, std::size_t ldc, layer_buffers<typename P::storage_type>& buf) {
  using T = typename P::storage_type;
  if constexpr (kernels::kernel_float<T>) {
    (void)an, (void)bn, (void)buf;
    kernels::gemm(ta, tb, m, n, k, alpha, a.data() + ao, lda, b.data() + bo, ldb, beta, c, ldc);
  } else {
    buf.wa.resize(an);
    buf.wb.resize(bn);
    for (std::size_t i = 0; i < an; ++i) buf.wa[i] = P::decode(a[ao + i]);
    for (std::size_t i = 0; i < bn; ++i) buf.wb[i] = P::decode(b[bo + i]);
    kernels::gemm(ta, tb, m, n, k, alpha, buf.wa.data(), lda, buf.wb.data(), ldb, beta, c, ldc);
  }
}

/// A LoRA layer (nn/lora.hpp) in float precision P: every GEMM of its fp32
/// pass runs on operands rounded to P (W₀, A, B, x, t = x·Aᵀ, dy, u = dy·B),
/// accumulating in fp32; b, s and the gradients stay fp32.
template <class L, float_precision P>
struct lora_ops {
  using T = typename P::storage_type;
  static constexpr std::size_t in = L::in_shape::size, out = L::out_channels, r = L::rank;

  static std::size_t forward(const float* p, const float* x, float* y, std::size_t batch, context& ctx,
                             layer_buffers<T>& buf) {
    using kernels::transpose;
    encode<P>(p, L::weight_count, buf.w);  // A, B, W₀
    encode<P>(x, batch * in, buf.x);
    const float s = p[L::scale_offset];
    float* t = ctx.saved != nullptr ? ctx.saved : ctx.workspace;
    // y = b + x·W₀ᵀ, t = x·Aᵀ, y += s·t·Bᵀ
    for (std::size_t i = 0; i < batch; ++i)
      for (std::size_t o = 0; o < out; ++o) y[i * out + o] = p[L::bias_offset + o];
    gemm_at<P>(transpose::no, transpose::yes, batch, out, in, 1.0f, buf.x, 0, batch * in, in, buf.w, L::w0_offset,
               out * in, in, 1.0f, y, out, buf);
    gemm_at<P>(transpose::no, transpose::yes, batch, r, in, 1.0f, buf.x, 0, batch * in, in, buf.w, L::a_offset, r * in,
               in, 0.0f, t, r, buf);
    encode<P>(t, batch * r, buf.t);
    gemm_at<P>(transpose::no, transpose::yes, batch, out, r, s, buf.t, 0, batch * r, r, buf.w, L::b_offset, out * r,
               r, 1.0f, y, out, buf);
    return batch * (in + r);
  }

  static void backward(const float* p, const float* dy, float* dx, float* dp, std::size_t batch, context& ctx,
                       layer_buffers<T>& buf) {
    using kernels::transpose;
    const float s = p[L::scale_offset];
    float* u = ctx.workspace;
    encode<P>(dy, batch * out, buf.dy);
    gemm_at<P>(transpose::no, transpose::no, batch, r, out, 1.0f, buf.dy, 0, batch * out, out, buf.w, L::b_offset,
               out * r, r, 0.0f, u, r, buf);
    encode<P>(u, batch * r, buf.u);
    gemm_at<P>(transpose::yes, transpose::no, out, r, batch, s, buf.dy, 0, batch * out, out, buf.t, 0, batch * r, r,
               1.0f, dp + L::b_offset, r, buf);
    gemm_at<P>(transpose::yes, transpose::no, r, in, batch, s, buf.u, 0, batch * r, r, buf.x, 0, batch * in, in, 1.0f,
               dp + L::a_offset, in, buf);
    if (dx == nullptr) return;
    gemm_at<P>(transpose::no, transpose::no, batch, in, out, 1.0f, buf.dy, 0, batch * out, out, buf.w, L::w0_offset,
               out * in, in, 0.0f, dx, in, buf);
    gemm_at<P>(transpose::no, transpose::no, batch, in, r, s, buf.u, 0, batch * r, r, buf.w, L::a_offset, r * in, in,
               1.0f, dx, in, buf);
  }
};

/// Forward and backward passes of a weighted layer L in float precision P.
template <class L, float_precision P>
struct layer_ops;

template <class L, float_precision P>
  requires(L::kind == layer_kind::lora)
struct layer_ops<L, P> : lora_ops<L, P> {};

template <class L, float_precision P>
struct layer_ops {
  static_assert(L::kind == layer_kind::dense || L::kind == layer_kind::conv2d,
                "tinylarge: nn::network: only dense, conv2d and lora layers have a low-precision path");
  using T = typename P::storage_type;
  static constexpr bool conv = L::kind == layer_kind::conv2d;
  static constexpr std::size_t out = L::out_channels;
  /// GEMM rows per sample and columns (im2col for conv).
  static constexpr std::size_t rows_per_sample = [] {
    if constexpr (conv) return L::ho * L::wo;
    else return std::size_t{1};
  }();
  static constexpr std::size_t k = [] {
    if constexpr (conv) return L::patch;
    else return L::in_shape::size;
  }();

  /// y = round(X)·round(W)ᵀ + b; keeps round(W), round(X) in `buf`.
  /// @return the number of elements converted (weights excluded)
  static std::size_t forward(const float* p, const float* x, float* y, std::size_t batch, context& ctx,
                             layer_buffers<T>& buf) {
    const std::size_t rows = batch * rows_per_sample;
    encode<P>(p, L::weight_count, buf.w);
    const float* xin = x;
    if constexpr (conv) {
      L::im2col(x, ctx.workspace, batch);
      xin = ctx.workspace;
    }
    encode<P>(xin, rows * k, buf.x);
    const float* bias = p + L::weight_count;
    if constexpr (kernels::kernel_float<T>) {
      kernels::dense(rows, out, k, buf.x.data(), buf.w.data(), bias, y);
    } else {
      kernels::dense(rows, out, k, widen<P>(buf.x, buf.wa), widen<P>(buf.w, buf.wb), bias, y);
    }
    return rows * k;
  }

  /// dW += round(dY)ᵀ·round(X), db += Σ dY, dX = round(dY)·round(W) (when dx is not null).
  static void backward(const float* p, const float* dy, float* dx, float* dp, std::size_t batch, context& ctx,
                       layer_buffers<T>& buf) {
    (void)p;
    using kernels::transpose;
    const std::size_t rows = batch * rows_per_sample;
    encode<P>(dy, rows * out, buf.dy);
    gemm<P>(transpose::yes, transpose::no, out, k, rows, buf.dy, out, buf.x, k, 1.0f, dp, k, buf);
    float* db = dp + L::weight_count;
    for (std::size_t r = 0; r < rows; ++r)
      for (std::size_t o = 0; o < out; ++o) db[o] += dy[r * out + o];
    if (dx == nullptr) return;
    if constexpr (conv) {
      float* dcols = ctx.workspace + rows * k;
      gemm<P>(transpose::no, transpose::no, rows, k, out, buf.dy, out, buf.w, k, 0.0f, dcols, k, buf);
      L::col2im(dcols, dx, batch);
    } else {
      gemm<P>(transpose::no, transpose::no, rows, k, out, buf.dy, out, buf.w, k, 0.0f, dx, k, buf);
    }
  }
};

}  // namespace tinylarge::nn::lowp
