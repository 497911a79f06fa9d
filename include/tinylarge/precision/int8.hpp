/// @file precision/int8.hpp
/// @brief Affine int8 quantization (TFLite int8 spec) and the `int8` precision policy.
///
/// A real value r is represented by an integer q through a scale s > 0 and a
/// zero point z (Jacob et al., "Quantization and Training of Neural Networks
/// for Efficient Integer-Arithmetic-Only Inference", CVPR 2018, eq. 1):
///
///     r = s · (q − z),        q = clamp(round(r / s) + z, q_min, q_max)
///
/// with round-half-away-from-zero, as TFLite's reference `AffineQuantize`.
/// The TFLite int8 quantization specification
/// (https://www.tensorflow.org/lite/performance/quantization_spec) fixes:
///  - activations: int8 in [−128, 127], asymmetric (z ∈ [−128, 127]),
///    one scale per tensor;
///  - weights: int8 in [−127, 127], symmetric (z = 0), one scale per tensor or
///    one per output channel;
///  - bias: int32, z = 0, scale s_x · s_w[o];
///  - products accumulate in int32 and are rescaled to the output by the
///    integer-only multiplier M[o] = s_x · s_w[o] / s_y (`precision/requantize.hpp`).
///
/// Everything here uses no heap and no exceptions on the freestanding profile;
/// violated preconditions go through `TINYLARGE_REQUIRE`.
///
/// Available policies:
///  - `int8<per_tensor>` (`int8_per_tensor`): one weight scale per layer;
///    smallest metadata, what Cortex-M kernels of older toolchains expect.
///  - `int8<per_channel>` (`int8_per_channel`): one weight scale per output
///    channel; the TFLite default for dense and conv weights, markedly less
///    error when channel ranges differ.
///  - the second parameter picks the activation scheme: `asymmetric` (the
///    TFLite default, uses all 256 levels of a one-sided range such as ReLU
///    output) or `symmetric` (z = 0, range [−127, 127], cheaper kernels).
#pragma once

#include <cmath>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>

#include "../core/config.hpp"
#include "../core/error.hpp"
#include "concepts.hpp"
#include "requantize.hpp"

namespace tinylarge {

// ---------------------------------------------------------------------------
// Granularity and symmetry: the two knobs of the int8 policy
// ---------------------------------------------------------------------------

/// One quantization scale for a whole weight tensor.
struct per_tensor {
  static constexpr bool is_per_channel = false;
  static constexpr const char* name() noexcept { return "per_tensor"; }
  /// Number of scales for a tensor with `channels` output channels.
  static constexpr std::size_t scale_count(std::size_t /*channels*/) noexcept { return 1; }
};

/// One quantization scale per output channel (row of a row-major n×k weight).
struct per_channel {
  static constexpr bool is_per_channel = true;
  static constexpr const char* name() noexcept { return "per_channel"; }
  static constexpr std::size_t scale_count(std::size_t channels) noexcept { return channels; }
};

/// Requirements of a weight-scale granularity (`per_tensor`, `per_channel`).
template <class G>
concept quantization_granularity = requires(std::size_t channels) {
  { G::is_per_channel } -> std::convertible_to<bool>;
  { G::name() } -> std::convertible_to<const char*>;
  { G::scale_count(channels) } -> std::same_as<std::size_t>;
};

/// Zero point fixed at 0, range symmetric around it: r = s · q.
struct symmetric {
  static constexpr bool is_symmetric = true;
  static constexpr const char* name() noexcept { return "symmetric"; }
};

/// Free zero point: the integer range covers [min(r_min, 0), max(r_max, 0)].
struct asymmetric {
  static constexpr bool is_symmetric = false;
  static constexpr const char* name() noexcept { return "asymmetric"; }
};

/// Requirements of a quantization scheme (`symmetric`, `asymmetric`).
template <class S>
concept quantization_symmetry = requires {
  { S::is_symmetric } -> std::convertible_to<bool>;
  { S::name() } -> std::convertible_to<const char*>;
};

// ---------------------------------------------------------------------------
// Quantization parameters and scalar conversion
// ---------------------------------------------------------------------------

/// Scale and zero point of an affine quantization: r = scale · (q − zero_point).
struct quant_params {
  float scale = 1.0f;           ///< > 0 and finite
  std::int32_t zero_point = 0;  ///< inside the `quant_range` it is used with
  friend constexpr bool operator==(const quant_params&, const quant_params&) = default;
};

/// An inclusive range [min, max] of int8 codes (a sub-range of [−128, 127]:
/// the weight range, a symmetric activation range, or a fused-activation clamp).
struct quant_range {
  std::int32_t min = -128;
  std::int32_t max = 127;
  friend constexpr bool operator==(const quant_range&, const quant_range&) = default;
};

/// TFLite int8 activation range.
inline constexpr quant_range int8_activation_range{-128, 127};
/// TFLite int8 weight range: symmetric, −128 is never used.
inline constexpr quant_range int8_weight_range{-127, 127};

/// Smallest scale `choose_quant_params` returns. Below it 1/scale overflows
/// float; ranges that small are stored as exact zeros.
inline constexpr float min_quant_scale = std::numeric_limits<float>::min();

namespace detail {

constexpr float abs_value(float x) noexcept { return x < 0.0f ? -x : x; }

/// Round half away from zero, as std::round, but constexpr. Exact for every
/// finite float; ±inf is returned unchanged. (The tempting `int(a + 0.5f)` is
/// wrong for a = 0.49999997f, where the addition itself rounds up to 1.)
constexpr float round_half_away(float v) noexcept {
  const float a = abs_value(v);
  if (!(a < 8388608.0f)) return v;  // ≥ 2^23: already an integer (or inf/NaN)
  const auto t = static_cast<float>(static_cast<std::int32_t>(a));  // trunc, exact
  const float r = (a - t >= 0.5f) ? t + 1.0f : t;                   // a − t is exact
  return v < 0.0f ? -r : r;
}

constexpr double round_half_away(double v) noexcept {
  const double a = v < 0.0 ? -v : v;
  if (!(a < 4503599627370496.0)) return v;  // ≥ 2^52
  const auto t = static_cast<double>(static_cast<std::int64_t>(a));
  const double r = (a - t >= 0.5) ? t + 1.0 : t;
  return v < 0.0 ? -r : r;
}

constexpr bool is_finite(float x) noexcept { return x == x && abs_value(x) <= std::numeric_limits<float>::max(); }

}  // namespace detail

/// Quantize one value: clamp(round(x / scale) + zero_point, range).
///
/// Rounds half away from zero (TFLite's `AffineQuantize`); ±inf saturates to
/// the range ends; NaN maps to the zero point (the code of 0.0), so no
/// undefined float → int conversion can happen.
constexpr std::int8_t quantize(float x, quant_params p, quant_range range = int8_activation_range) noexcept {
  // Branch-free so that bulk loops vectorise and random data does not
  // mispredict: the float is first limited to ±2^30 (so that the conversion
  // to int32 is defined; NaN → 0), rounded, then clamped as an integer.
  constexpr float limit = 1073741824.0f;
  float v = x / p.scale;
  v = (v == v) ? v : 0.0f;
  v = v < -limit ? -limit : v;
  v = v > limit ? limit : v;
  const auto t = static_cast<std::int32_t>(v);   // toward zero
  const float frac = v - static_cast<float>(t);  // exact
  std::int32_t r = t + static_cast<std::int32_t>(frac >= 0.5f) - static_cast<std::int32_t>(frac <= -0.5f);
  r += p.zero_point;
  r = r < range.min ? range.min : r;
  r = r > range.max ? range.max : r;
  return static_cast<std::int8_t>(r);
}

/// The real value a code stands for: scale · (q − zero_point). Exact in float
/// up to one rounding of the product.
constexpr float dequantize(std::int8_t q, quant_params p) noexcept {
  return p.scale * static_cast<float>(static_cast<std::int32_t>(q) - p.zero_point);
}

/// Quantize then dequantize ("fake quantization", used for quantization-aware
/// training): the float the int8 model will actually see for `x`.
constexpr float fake_quantize(float x, quant_params p, quant_range range = int8_activation_range) noexcept {
  return dequantize(quantize(x, p, range), p);
}

/// Straight-through estimator of fake quantization (Bengio et al. 2013;
/// Jacob et al. 2018 §3): the gradient passes (1) where x lies inside the
/// representable interval [s·(q_min − z), s·(q_max − z)] and is cut (0) where
/// the forward pass clamped.
constexpr bool fake_quantize_passes_gradient(float x, quant_params p,
                                             quant_range range = int8_activation_range) noexcept {
  const float lo = p.scale * static_cast<float>(range.min - p.zero_point);
  const float hi = p.scale * static_cast<float>(range.max - p.zero_point);
  return x >= lo && x <= hi;
}

/// Choose scale and zero point so that [lo, hi] ∪ {0} maps onto `range`.
///
/// - `symmetric`: s = max(|lo|, |hi|) / range.max, z = 0 (TFLite weights).
/// - `asymmetric`: s = (max(hi,0) − min(lo,0)) / (q_max − q_min) and the
///   zero point is the nudged one of TFLite's `ChooseQuantizationParams`:
///   from whichever end gives the smaller rounding error, rounded and clamped
///   into the range, so that 0.0 is exactly representable.
///
/// A range of width 0 (all zeros) gets scale 1; scales never go below
/// `min_quant_scale`. `lo` and `hi` must be finite and `lo <= hi`; otherwise
/// raises `errc::non_finite` / `errc::invalid_argument`.
/// @tparam S `symmetric` or `asymmetric`
template <quantization_symmetry S>
quant_params choose_quant_params(float lo, float hi, quant_range range = int8_activation_range) {
  TINYLARGE_REQUIRE(detail::is_finite(lo) && detail::is_finite(hi), errc::non_finite,
                    "choose_quant_params: the observed range [lo, hi] contains NaN or Inf");
  TINYLARGE_REQUIRE(lo <= hi, errc::invalid_argument, "choose_quant_params: lo > hi");
  TINYLARGE_REQUIRE(range.min < 0 && range.max > 0, errc::invalid_argument,
                    "choose_quant_params: the integer range must contain 0 strictly inside");
  const double rmin = lo < 0.0f ? static_cast<double>(lo) : 0.0;
  const double rmax = hi > 0.0f ? static_cast<double>(hi) : 0.0;
  const auto qmin = static_cast<double>(range.min);
  const auto qmax = static_cast<double>(range.max);
  if constexpr (S::is_symmetric) {
    const double amax = -rmin > rmax ? -rmin : rmax;
    if (amax == 0.0) return {1.0f, 0};
    const auto s = static_cast<float>(amax / qmax);
    return {s < min_quant_scale ? min_quant_scale : s, 0};
  } else {
    if (rmax - rmin == 0.0) return {1.0f, 0};
    auto s = static_cast<float>((rmax - rmin) / (qmax - qmin));
    if (s < min_quant_scale) s = min_quant_scale;
    const double sd = s;
    const double z_from_min = qmin - rmin / sd;
    const double z_from_max = qmax - rmax / sd;
    const double err_min = std::abs(qmin) + std::abs(rmin / sd);
    const double err_max = std::abs(qmax) + std::abs(rmax / sd);
    const double z = err_min < err_max ? z_from_min : z_from_max;
    std::int32_t zp;
    if (z < qmin) zp = range.min;
    else if (z > qmax) zp = range.max;
    else zp = static_cast<std::int32_t>(detail::round_half_away(z));
    return {s, zp};
  }
}

// ---------------------------------------------------------------------------
// Range observers (calibration)
// ---------------------------------------------------------------------------

/// Running minimum and maximum of everything observed (PyTorch's
/// `MinMaxObserver`, TFLite's calibration). Non-finite values are skipped and
/// counted in `non_finite`, so one diverged batch cannot poison the range;
/// check the count before trusting the result.
struct minmax_observer {
  float lo = std::numeric_limits<float>::infinity();
  float hi = -std::numeric_limits<float>::infinity();
  std::size_t count = 0;       ///< finite values seen
  std::size_t non_finite = 0;  ///< NaN / Inf values skipped

  constexpr void observe(std::span<const float> x) noexcept {
    for (const float v : x) {
      if (!detail::is_finite(v)) {
        ++non_finite;
        continue;
      }
      lo = v < lo ? v : lo;
      hi = v > hi ? v : hi;
      ++count;
    }
  }
  constexpr bool empty() const noexcept { return count == 0; }

  /// Parameters for the range seen so far; an observer that saw nothing
  /// yields scale 1, zero point 0.
  /// @tparam S `symmetric` or `asymmetric`
  template <quantization_symmetry S>
  quant_params params(quant_range range = int8_activation_range) const {
    return empty() ? quant_params{} : choose_quant_params<S>(lo, hi, range);
  }
};

/// Exponential moving average of per-batch minima and maxima (PyTorch's
/// `MovingAverageMinMaxObserver`, the range tracker of quantization-aware
/// training in Jacob et al. 2018 §3.1):
///
///     lo ← lo + c · (min(batch) − lo),   hi ← hi + c · (max(batch) − hi)
///
/// The first non-empty batch sets the range directly.
struct moving_average_minmax_observer {
  float averaging_constant = 0.01f;  ///< c ∈ (0, 1]
  float lo = 0.0f;
  float hi = 0.0f;
  std::size_t batches = 0;  ///< batches with at least one finite value
  std::size_t non_finite = 0;

  constexpr void observe(std::span<const float> x) noexcept {
    minmax_observer batch;
    batch.observe(x);
    non_finite += batch.non_finite;
    if (batch.empty()) return;
    if (batches == 0) {
      lo = batch.lo;
      hi = batch.hi;
    } else {
      lo = ema_step(lo, batch.lo);
      hi = ema_step(hi, batch.hi);
    }
    ++batches;
  }
  constexpr bool empty() const noexcept { return batches == 0; }

  /// One EMA step, the same bits on every target: the float × float product
  /// is exact in double, so a compiler that fuses the multiply-add (GCC's
  /// default -ffp-contract=fast on FMA hardware) cannot change the result.
  constexpr float ema_step(float current, float observed) const noexcept {
    const double product = static_cast<double>(averaging_constant) * static_cast<double>(observed - current);
    return static_cast<float>(static_cast<double>(current) + product);
  }

  /// @tparam S `symmetric` or `asymmetric`
  template <quantization_symmetry S>
  quant_params params(quant_range range = int8_activation_range) const {
    return empty() ? quant_params{} : choose_quant_params<S>(lo, hi, range);
  }
};

// ---------------------------------------------------------------------------
// Tensors
// ---------------------------------------------------------------------------

namespace detail {
/// The bulk loop, with restrict-qualified parameters so that compilers
/// vectorise it without a run-time aliasing check.
inline void quantize_n(const float* TINYLARGE_RESTRICT x, std::size_t n, quant_params p, quant_range range,
                       std::int8_t* TINYLARGE_RESTRICT q) noexcept {
  for (std::size_t i = 0; i < n; ++i) q[i] = quantize(x[i], p, range);
}
}  // namespace detail

/// q[i] = quantize(x[i], p, range). Sizes must match.
inline void quantize(std::span<const float> x, quant_params p, std::span<std::int8_t> q,
                     quant_range range = int8_activation_range) {
  TINYLARGE_REQUIRE(x.size() == q.size(), errc::shape_mismatch,
                    "quantize: input and output sizes differ");
  detail::quantize_n(x.data(), x.size(), p, range, q.data());
}

/// x[i] = dequantize(q[i], p). Sizes must match.
inline void dequantize(std::span<const std::int8_t> q, quant_params p, std::span<float> x) {
  TINYLARGE_REQUIRE(x.size() == q.size(), errc::shape_mismatch,
                    "dequantize: input and output sizes differ");
  for (std::size_t i = 0; i < q.size(); ++i) x[i] = dequantize(q[i], p);
}

/// Symmetric weight quantization of a row-major `channels`×k matrix (one row
/// per output channel, the layout of `kernels::dense_*`).
///
/// Per tensor: one scale s = max|w| / 127. Per channel: s[o] = max_i |w[o][i]| / 127.
/// Codes are in [−127, 127] (TFLite int8 weights), zero point 0; an all-zero
/// channel gets scale 1. Raises `errc::non_finite` on NaN/Inf weights and
/// `errc::shape_mismatch` on inconsistent sizes.
/// @tparam G `per_tensor` or `per_channel`
/// @param w        `channels`·k weights
/// @param channels number of output channels (rows), > 0
/// @param q        output codes, same size as `w`
/// @param scales   output scales, `G::scale_count(channels)` of them
template <quantization_granularity G>
void quantize_weights(std::span<const float> w, std::size_t channels, std::span<std::int8_t> q,
                      std::span<float> scales) {
  TINYLARGE_REQUIRE(channels > 0 && w.size() % channels == 0, errc::shape_mismatch,
                    "quantize_weights: weight count is not a multiple of the channel count");
  TINYLARGE_REQUIRE(q.size() == w.size(), errc::shape_mismatch,
                    "quantize_weights: code buffer size differs from the weight count");
  TINYLARGE_REQUIRE(scales.size() == G::scale_count(channels), errc::shape_mismatch,
                    "quantize_weights: scale buffer must hold 1 (per_tensor) or `channels` (per_channel) scales");
  const std::size_t k = w.size() / channels;
  const std::size_t rows_per_scale = G::is_per_channel ? 1 : channels;
  for (std::size_t c = 0; c < scales.size(); ++c) {
    const std::span<const float> block = w.subspan(c * rows_per_scale * k, rows_per_scale * k);
    minmax_observer obs;
    obs.observe(block);
    TINYLARGE_REQUIRE(obs.non_finite == 0, errc::non_finite,
                      "quantize_weights: weights contain NaN or Inf");
    const quant_params p =
        obs.empty() ? quant_params{} : choose_quant_params<symmetric>(obs.lo, obs.hi, int8_weight_range);
    scales[c] = p.scale;
    quantize(block, p, q.subspan(c * rows_per_scale * k, rows_per_scale * k), int8_weight_range);
  }
}

/// Real weights of a symmetric int8 matrix: w[o][i] = s[o or 0] · q[o][i].
/// `scales` holds 1 scale (per tensor) or `channels` scales (per channel).
inline void dequantize_weights(std::span<const std::int8_t> q, std::size_t channels,
                               std::span<const float> scales, std::span<float> w) {
  TINYLARGE_REQUIRE(channels > 0 && q.size() % channels == 0 && w.size() == q.size(),
                    errc::shape_mismatch, "dequantize_weights: inconsistent sizes");
  TINYLARGE_REQUIRE(scales.size() == 1 || scales.size() == channels, errc::shape_mismatch,
                    "dequantize_weights: need 1 or `channels` scales");
  const std::size_t k = q.size() / channels;
  for (std::size_t o = 0; o < channels; ++o) {
    const float s = scales[scales.size() == 1 ? 0 : o];
    for (std::size_t i = 0; i < k; ++i) w[o * k + i] = s * static_cast<float>(q[o * k + i]);
  }
}

/// int32 bias of a quantized layer: b_q[o] = round(b[o] / (s_x · s_w[o])),
/// saturated to int32 (TFLite: bias scale = input scale × weight scale, zero
/// point 0). Computed in double so tiny scales do not underflow.
/// `weight_scales` holds 1 or `bias.size()` scales.
inline void quantize_bias(std::span<const float> bias, float input_scale,
                          std::span<const float> weight_scales, std::span<std::int32_t> out) {
  TINYLARGE_REQUIRE(out.size() == bias.size(), errc::shape_mismatch,
                    "quantize_bias: output size differs from the bias size");
  TINYLARGE_REQUIRE(weight_scales.size() == 1 || weight_scales.size() == bias.size(), errc::shape_mismatch,
                    "quantize_bias: need 1 or bias.size() weight scales");
  TINYLARGE_REQUIRE(input_scale > 0.0f && detail::is_finite(input_scale), errc::invalid_argument,
                    "quantize_bias: input scale must be positive and finite");
  constexpr double lim_hi = std::numeric_limits<std::int32_t>::max();
  constexpr double lim_lo = std::numeric_limits<std::int32_t>::min();
  for (std::size_t o = 0; o < bias.size(); ++o) {
    const double s = static_cast<double>(input_scale) *
                     static_cast<double>(weight_scales[weight_scales.size() == 1 ? 0 : o]);
    TINYLARGE_REQUIRE(detail::is_finite(bias[o]), errc::non_finite, "quantize_bias: bias contains NaN or Inf");
    double r = detail::round_half_away(static_cast<double>(bias[o]) / s);
    r = r < lim_lo ? lim_lo : (r > lim_hi ? lim_hi : r);
    out[o] = static_cast<std::int32_t>(r);
  }
}

/// Fixed-point output multipliers M[o] = s_x · s_w[o] / s_y of a quantized
/// dense or conv layer, each as a Q31 mantissa and a shift
/// (`quantize_multiplier`), ready for `kernels::dense_s8_params`.
/// `weight_scales`, `multipliers` and `shifts` all hold 1 (per tensor) or n
/// (per channel) entries.
inline void requantization_multipliers(float input_scale, std::span<const float> weight_scales,
                                       float output_scale, std::span<std::int32_t> multipliers,
                                       std::span<int> shifts) {
  TINYLARGE_REQUIRE(multipliers.size() == weight_scales.size() && shifts.size() == weight_scales.size(),
                    errc::shape_mismatch,
                    "requantization_multipliers: weight_scales, multipliers and shifts must have one size");
  TINYLARGE_REQUIRE(input_scale > 0.0f && output_scale > 0.0f && detail::is_finite(input_scale) &&
                        detail::is_finite(output_scale),
                    errc::invalid_argument, "requantization_multipliers: scales must be positive and finite");
  for (std::size_t o = 0; o < weight_scales.size(); ++o) {
    TINYLARGE_REQUIRE(weight_scales[o] > 0.0f && detail::is_finite(weight_scales[o]), errc::invalid_argument,
                      "requantization_multipliers: weight scales must be positive and finite");
    const double m = static_cast<double>(input_scale) * static_cast<double>(weight_scales[o]) /
                     static_cast<double>(output_scale);
    const quantized_multiplier qm = quantize_multiplier(m);
    multipliers[o] = qm.multiplier;
    shifts[o] = qm.shift;
  }
}

/// Fused activation of a quantized layer, applied as a clamp on the codes.
enum class fused_activation : std::uint8_t { none, relu, relu6 };

/// The int8 clamp [min, max] that realises `act` on outputs quantized with
/// `out` (TFLite's `CalculateActivationRangeQuantized`): relu clamps below at
/// the code of 0.0, relu6 also above at the code of 6.0.
constexpr quant_range fused_activation_range(fused_activation act, quant_params out,
                                       quant_range range = int8_activation_range) noexcept {
  const std::int32_t zero = quantize(0.0f, out, range);
  switch (act) {
    case fused_activation::relu: return {zero > range.min ? zero : range.min, range.max};
    case fused_activation::relu6: {
      const std::int32_t six = quantize(6.0f, out, range);
      return {zero > range.min ? zero : range.min, six < range.max ? six : range.max};
    }
    case fused_activation::none: break;
  }
  return range;
}

// ---------------------------------------------------------------------------
// The precision policy
// ---------------------------------------------------------------------------

/// Affine int8 storage with int32 accumulation and integer-only
/// requantization, following the TFLite int8 specification.
///
/// Weights are always symmetric int8 in [−127, 127] (the spec, and what
/// `kernels::dense_s8` computes: it has no weight zero point).
/// @tparam Granularity `per_tensor` or `per_channel`: one weight scale per
///         layer or one per output channel.
/// @tparam ActivationScheme `asymmetric` (TFLite default, codes [−128, 127])
///         or `symmetric` (zero point 0, codes [−127, 127]).
template <quantization_granularity Granularity = per_tensor,
          quantization_symmetry ActivationScheme = asymmetric>
struct int8 {
  using storage_type = std::int8_t;
  using accumulator_type = std::int32_t;
  using granularity = Granularity;
  using activation_scheme = ActivationScheme;
  static constexpr bool quantized = true;
  static constexpr unsigned storage_bits = 8;
  static constexpr bool is_per_channel = Granularity::is_per_channel;
  static constexpr quant_range weight_range = int8_weight_range;
  static constexpr quant_range activation_range =
      ActivationScheme::is_symmetric ? quant_range{-127, 127} : int8_activation_range;

  static constexpr const char* name() noexcept {
    if constexpr (is_per_channel) return ActivationScheme::is_symmetric ? "int8_per_channel_symmetric" : "int8_per_channel";
    else return ActivationScheme::is_symmetric ? "int8_per_tensor_symmetric" : "int8_per_tensor";
  }

  /// Number of weight scales of a layer with `channels` outputs.
  static constexpr std::size_t weight_scale_count(std::size_t channels) noexcept {
    return Granularity::scale_count(channels);
  }

  /// Activation parameters for an observed range [lo, hi].
  static quant_params activation_params(float lo, float hi) {
    return choose_quant_params<ActivationScheme>(lo, hi, activation_range);
  }

  /// Quantize a row-major `channels`×k weight matrix; see `tl::quantize_weights`.
  static void quantize_weights(std::span<const float> w, std::size_t channels, std::span<std::int8_t> q,
                               std::span<float> scales) {
    tinylarge::quantize_weights<Granularity>(w, channels, q, scales);
  }
};

/// An int8 precision policy: quantized, with a granularity and an activation scheme.
template <class P>
concept int8_precision = quantized_precision<P> && requires {
  typename P::granularity;
  typename P::activation_scheme;
  requires quantization_granularity<typename P::granularity>;
  requires quantization_symmetry<typename P::activation_scheme>;
  requires std::same_as<typename P::storage_type, std::int8_t>;
  requires std::same_as<typename P::accumulator_type, std::int32_t>;
};

/// TFLite int8 with one weight scale per layer.
using int8_per_tensor = int8<per_tensor>;
/// TFLite int8 with one weight scale per output channel (the TFLite default).
using int8_per_channel = int8<per_channel>;

static_assert(int8_precision<int8_per_tensor> && int8_precision<int8_per_channel>);
static_assert(!float_precision<int8_per_channel>);

}  // namespace tinylarge
