/// @file precision/requantize.hpp
/// @brief Integer-only fixed-point requantization, bit-exact on every target.
///
/// A real multiplier M in (0, 1) ∪ [1, 2^31) is represented as a Q31 integer
/// m ∈ [2^30, 2^31) and a power-of-two exponent e so that M ≈ m · 2^(e − 31)
/// (`quantize_multiplier`). An int32 accumulator `acc` is rescaled with
///
///   y = RoundingDivideByPOT(SaturatingRoundingDoublingHighMul(acc · 2^max(e,0), m), max(−e,0))
///
/// which is the arithmetic of TFLite's `MultiplyByQuantizedMultiplier` and of
/// gemmlowp (Jacob et al., "Quantization and Training of Neural Networks for
/// Efficient Integer-Arithmetic-Only Inference", CVPR 2018). Only integer
/// operations are used, so results are identical on x86, ARM and Cortex-M.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>

namespace tinylarge {

/// A real multiplier in fixed point: value ≈ multiplier · 2^(shift − 31).
struct quantized_multiplier {
  std::int32_t multiplier = 0;  ///< Q31 mantissa in [2^30, 2^31), or 0
  int shift = 0;                ///< power-of-two exponent; > 0 means left shift
};

/// Decompose a non-negative real multiplier into Q31 mantissa and exponent.
/// Values below 2^-31 (after rounding) become zero.
inline quantized_multiplier quantize_multiplier(double real) noexcept {
  if (!(real > 0.0) || !std::isfinite(real)) return {0, 0};
  int exponent = 0;
  const double q = std::frexp(real, &exponent);  // real = q · 2^exponent, q ∈ [0.5, 1)
  auto q_fixed = static_cast<std::int64_t>(std::llround(q * static_cast<double>(1LL << 31)));
  if (q_fixed == (1LL << 31)) {
    q_fixed /= 2;
    ++exponent;
  }
  if (exponent < -31) return {0, 0};
  if (exponent > 30) return {std::numeric_limits<std::int32_t>::max(), 30};
  return {static_cast<std::int32_t>(q_fixed), exponent};
}

/// The multipliers of TFLite's int8 ADD y = x₁ + x₂ (`kernels::add_s8`): with
/// s = 2·max(s₁, s₂), input k is rescaled by sₖ/s (≤ ½, so shift ≤ 0) and the sum, whose
/// inputs were shifted left by `left_shift` bits, by s/(2^left_shift·s_y).
struct add_multipliers {
  quantized_multiplier input1, input2, output;
};
inline add_multipliers quantize_add_multipliers(double s1, double s2, double sy, int left_shift) noexcept {
  const double twice_max = 2.0 * (s1 > s2 ? s1 : s2);
  return {quantize_multiplier(s1 / twice_max), quantize_multiplier(s2 / twice_max),
          quantize_multiplier(twice_max / (std::ldexp(1.0, left_shift) * sy))};
}

/// (a · b · 2) / 2^32 rounded to nearest, saturating the single overflow case
/// a = b = INT32_MIN. gemmlowp's SaturatingRoundingDoublingHighMul.
constexpr std::int32_t saturating_rounding_doubling_high_mul(std::int32_t a,
                                                             std::int32_t b) noexcept {
  const bool overflow = a == b && a == std::numeric_limits<std::int32_t>::min();
  const std::int64_t ab = static_cast<std::int64_t>(a) * static_cast<std::int64_t>(b);
  const std::int64_t nudge = ab >= 0 ? (1LL << 30) : (1 - (1LL << 30));
  // Division truncates toward zero, as gemmlowp does.
  const auto high = static_cast<std::int32_t>((ab + nudge) / (1LL << 31));
  return overflow ? std::numeric_limits<std::int32_t>::max() : high;
}

/// x / 2^exponent rounded to nearest, ties away from zero. gemmlowp's
/// RoundingDivideByPOT; `exponent` in [0, 31].
constexpr std::int32_t rounding_divide_by_pot(std::int32_t x, int exponent) noexcept {
  const std::int32_t mask = static_cast<std::int32_t>((1LL << exponent) - 1);
  const std::int32_t remainder = x & mask;
  const std::int32_t threshold = (mask >> 1) + ((x < 0) ? 1 : 0);
  return (x >> exponent) + ((remainder > threshold) ? 1 : 0);
}

/// acc · M with M given by (multiplier, shift): TFLite's
/// MultiplyByQuantizedMultiplier.
///
/// For M ≥ 1 (shift > 0) the pre-shifted accumulator saturates at ±2^31, so
/// results with |acc·M| ≳ 2^30 come out near ±2^30 rather than exact; int8 and
/// int16 outputs clamp far below that, so their results are unaffected.
constexpr std::int32_t multiply_by_quantized_multiplier(std::int32_t acc, std::int32_t multiplier,
                                                        int shift) noexcept {
  const int left = shift > 0 ? shift : 0;
  const int right = shift > 0 ? 0 : -shift;
  // Left shift in 64 bits then saturate, so large positive shifts cannot
  // overflow into undefined behaviour.
  std::int64_t shifted = static_cast<std::int64_t>(acc) * (std::int64_t{1} << left);
  if (shifted > std::numeric_limits<std::int32_t>::max()) shifted = std::numeric_limits<std::int32_t>::max();
  if (shifted < std::numeric_limits<std::int32_t>::min()) shifted = std::numeric_limits<std::int32_t>::min();
  return rounding_divide_by_pot(
      saturating_rounding_doubling_high_mul(static_cast<std::int32_t>(shifted), multiplier), right);
}

constexpr std::int32_t multiply_by_quantized_multiplier(std::int32_t acc,
                                                        quantized_multiplier m) noexcept {
  return multiply_by_quantized_multiplier(acc, m.multiplier, m.shift);
}

}  // namespace tinylarge
