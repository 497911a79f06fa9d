/// @file compress/sparse_s8.hpp
/// @brief int8 inference straight from Deep Compression's final form: relative-index CSR
///        whose values are indices into a per-layer codebook, with the codebook quantized to
///        int8 (symmetric, one scale per layer) and int8 activations (TFLite int8 arithmetic).
///
/// A microcontroller keeps the model file (compress/model_file.hpp) in flash, decodes the
/// Huffman-coded gap and index streams once at boot into a static buffer
/// (`model_file_reader::decode_layer`), and turns each fp32 codebook layer into a
/// `csr_codebook_s8_layer` with `quantize_csr_codebook`: k ≤ 256 centroids become int8, the
/// fp32 biases int32 (scale s_x·s_w), and the output rescale one Q31 multiplier. Inference
/// is then integer only:
///
///     acc_o = bias_o + Σ_{entries j of row o} (x[col_j] − z_x) · c[idx_j]
///     y_o   = clamp(z_y + MultiplyByQuantizedMultiplier(acc_o, M), act_min, act_max)
///
/// Filler entries (index 0, centroid 0 — see compress/kernels.hpp) add nothing. The
/// arithmetic is exact in int32 (|x − z_x| ≤ 255, |c| ≤ 127, at most `cols` entries per
/// row), so every target computes the same bits; the boot-time quantization is plain IEEE
/// float/double arithmetic without fused multiply-adds (build with `-ffp-contract=off` when
/// bit-identical parameters across targets matter) and `quantize_multiplier`.
///
/// Freestanding: no heap, no exceptions, views over caller-owned memory.
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>

#include "../core/arch.hpp"
#include "../core/error.hpp"
#include "../kernels/dense.hpp"
#include "../kernels/sparse_s8.hpp"
#include "../precision/int8.hpp"
#include "../precision/requantize.hpp"
#include "kernels.hpp"

namespace tinylarge::compress {

/// A rows×cols relative-index CSR matrix with int8 codebook values.
struct csr_codebook_s8_view {
  std::size_t rows = 0;
  std::size_t cols = 0;
  const std::uint32_t* row_ptr = nullptr;  ///< rows + 1 offsets
  const std::uint8_t* gaps = nullptr;      ///< one per entry (decoded, one byte each)
  const std::uint8_t* indices = nullptr;   ///< one codebook index per entry
  const std::int8_t* centroids = nullptr;  ///< the int8 codebook
};

/// Y (m×rows, int8) = requantize(bias + (X − z_x)·Wᵀ), W given as int8 CSR codebook.
/// `p` as for `kernels::dense_s8` (per-tensor or per-channel multipliers, optional bias,
/// fused activation clamp). Every back end runs this scalar loop (the column indices are
/// irregular; there is no dual-MAC pattern to exploit): the row loop of kernels/sparse_s8.hpp
/// with codebook values (pruned int8 weights without a codebook: `kernels::sparse_dense_s8`).
template <class Backend>
  requires std::derived_from<Backend, arch::scalar>
void sparse_dense_s8(Backend, std::size_t m, const csr_codebook_s8_view& w, const std::int8_t* x,
                     const kernels::dense_s8_params& p, std::int8_t* y) noexcept {
  const auto value = [&](std::size_t j) noexcept { return w.centroids[w.indices[j]]; };
  for (std::size_t i = 0; i < m; ++i) {
    const std::int8_t* xr = x + i * w.cols;
    std::int8_t* yr = y + i * w.rows;
    for (std::size_t o = 0; o < w.rows; ++o) {
      const std::int32_t acc = kernels::detail::csr_row_dot_s8(p.bias ? p.bias[o] : 0, w.row_ptr[o], w.row_ptr[o + 1],
                                                               w.gaps, value, xr, p.input_zero_point);
      yr[o] = kernels::requantize_s8(acc, o, p);
    }
  }
}

/// One int8 CSR-codebook layer and the parameters of its requantization (no pointers to
/// the outside except the CSR arrays and the caller's bias buffer). Not copyable: `params()`
/// points into the object.
struct csr_codebook_s8_layer {
  csr_codebook_s8_view w{};
  std::int8_t centroids[256]{};
  const std::int32_t* bias = nullptr;  ///< rows entries, or null
  quant_params input{}, output{};
  float weight_scale = 1.0f;  ///< s_w of the int8 codebook
  std::int32_t multiplier = 0;
  int shift = 0;
  std::int8_t act_min = -128, act_max = 127;

  csr_codebook_s8_layer() = default;
  csr_codebook_s8_layer(const csr_codebook_s8_layer&) = delete;
  csr_codebook_s8_layer& operator=(const csr_codebook_s8_layer&) = delete;

  /// Parameters for `sparse_dense_s8` (per tensor).
  kernels::dense_s8_params params() const noexcept {
    kernels::dense_s8_params p;
    p.input_zero_point = input.zero_point;
    p.output_zero_point = output.zero_point;
    p.multipliers = &multiplier;
    p.shifts = &shift;
    p.per_channel = false;
    p.bias = bias;
    p.act_min = act_min;
    p.act_max = act_max;
    return p;
  }

  /// Runs the layer on `m` int8 rows.
  template <class Backend = kernels::default_backend>
  void forward(std::size_t m, const std::int8_t* x, std::int8_t* y) const noexcept {
    sparse_dense_s8(Backend{}, m, w, x, params(), y);
  }
};

/// Quantizes a validated fp32 CSR-codebook layer (e.g. from `model_file_reader::decode_layer`)
/// for int8 inference between activations `in` and `out`: centroids symmetric per layer
/// (s_w = max|c|/127), biases round(b/(s_x·s_w)) into `bias_out` (rows entries; `bias` may
/// be null), M = s_x·s_w/s_y. `relu` clamps the output at its zero point. The CSR arrays
/// are referenced, not copied: they must outlive `layer`.
[[nodiscard]] inline status quantize_csr_codebook(const relative_csr_view<csr_codebook_values>& v, const float* bias,
                                                  quant_params in, quant_params out, bool relu,
                                                  std::int32_t* bias_out, csr_codebook_s8_layer& layer) noexcept {
  TINYLARGE_CHECK(v.row_ptr != nullptr && v.gaps != nullptr && v.values.indices != nullptr &&
                      v.values.centroids != nullptr,
                  errc::invalid_argument, "sparse_s8: the CSR view is incomplete (decode the layer first)");
  TINYLARGE_CHECK(v.values.codebook_size >= 1 && v.values.codebook_size <= 256, errc::invalid_argument,
                  "sparse_s8: the codebook must have 1..256 entries");
  TINYLARGE_CHECK(in.scale > 0.0f && out.scale > 0.0f, errc::invalid_argument,
                  "sparse_s8: activation scales must be positive");
  TINYLARGE_CHECK(in.zero_point >= -128 && in.zero_point <= 127 && out.zero_point >= -128 && out.zero_point <= 127,
                  errc::invalid_argument, "sparse_s8: zero points must be in [-128, 127]");
  TINYLARGE_CHECK(bias == nullptr || bias_out != nullptr, errc::invalid_argument,
                  "sparse_s8: a bias needs an int32 output buffer");
  float maxabs = 0.0f;
  for (std::size_t c = 0; c < v.values.codebook_size; ++c) {
    const float a = ::tinylarge::detail::abs_value(v.values.centroids[c]);
    TINYLARGE_CHECK(::tinylarge::detail::is_finite(a), errc::non_finite, "sparse_s8: a centroid is not finite");
    maxabs = a > maxabs ? a : maxabs;
  }
  const float sw = maxabs > 0.0f ? maxabs / 127.0f : 1.0f;
  for (std::size_t c = 0; c < 256; ++c)
    layer.centroids[c] =
        c < v.values.codebook_size ? ::tinylarge::quantize(v.values.centroids[c], quant_params{sw, 0}, int8_weight_range) : 0;
  const double bias_scale = static_cast<double>(in.scale) * static_cast<double>(sw);
  if (bias != nullptr) {
    for (std::size_t o = 0; o < v.rows; ++o) {
      TINYLARGE_CHECK(::tinylarge::detail::is_finite(bias[o]), errc::non_finite, "sparse_s8: a bias is not finite");
      double q = ::tinylarge::detail::round_half_away(static_cast<double>(bias[o]) / bias_scale);
      constexpr double lim = 1073741824.0;  // 2^30: far beyond any useful int8 bias
      q = q < -lim ? -lim : (q > lim ? lim : q);
      bias_out[o] = static_cast<std::int32_t>(q);
    }
  }
  const quantized_multiplier m = ::tinylarge::quantize_multiplier(bias_scale / static_cast<double>(out.scale));
  layer.w = {v.rows, v.cols, v.row_ptr, v.gaps, v.values.indices, layer.centroids};
  layer.bias = bias != nullptr ? bias_out : nullptr;
  layer.input = in;
  layer.output = out;
  layer.weight_scale = sw;
  layer.multiplier = m.multiplier;
  layer.shift = m.shift;
  layer.act_min = static_cast<std::int8_t>(relu ? out.zero_point : -128);
  layer.act_max = 127;
  return status::success();
}

}  // namespace tinylarge::compress
