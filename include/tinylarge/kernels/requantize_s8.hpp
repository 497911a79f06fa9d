/// @file kernels/requantize_s8.hpp
/// @brief `requantize_s8_32`: the int8 output stage of the convolution and
///        Cortex-M kernels, written for 32-bit cores.
///
/// The same integer function as `kernels::requantize_s8` (TFLite's
/// MultiplyByQuantizedMultiplier, then the zero point and the clamp) — equal
/// for every input, checked by tests/test_model_file.cpp — but with one
/// 32×32→64 multiply (SMULL) and no 64-bit shifts on the usual path (a
/// multiplier below 1, shift ≤ 0): about 25 instructions on a Cortex-M4
/// instead of about 55, which matters where an output has few MACs
/// (depthwise 3×3: 9). It relies on what the model file reader and
/// `quantize_multiplier` guarantee: multipliers 0 or in [2^30, 2^31), so the
/// doubling high multiply cannot overflow, and shifts in [−31, 30].
#pragma once

#include <cstddef>
#include <cstdint>

#include "../core/config.hpp"
#include "dense.hpp"

namespace tinylarge::kernels {

/// The requantization constants of one output channel, read once per channel
/// by kernels that produce many outputs of a channel (depthwise).
struct requant_channel {
  std::int32_t multiplier = 0;
  int left = 0, right = 0;  ///< shift > 0: left = shift; else right = −shift
  std::int32_t zero_point = 0, lo = -128, hi = 127;
};

/// The constants of output channel `o` of `p`.
TINYLARGE_ALWAYS_INLINE requant_channel requant_channel_of(std::size_t o, const dense_s8_params& p) noexcept {
  const std::size_t c = p.per_channel ? o : 0;
  const int shift = p.shifts[c];
  return {p.multipliers[c], shift > 0 ? shift : 0, shift > 0 ? 0 : -shift, p.output_zero_point, p.act_min, p.act_max};
}

/// MultiplyByQuantizedMultiplier(acc, M, shift) of TFLite with the constants of one channel
/// (`multiplier`, `left`, `right`; the zero point and the clamp are not applied): saturating
/// left shift, saturating rounding doubling high multiply, rounding divide by 2^right.
TINYLARGE_ALWAYS_INLINE std::int32_t scale_s32(std::int32_t acc, const requant_channel& q) noexcept {
  if (TINYLARGE_UNLIKELY(q.left > 0)) {  // real multiplier ≥ 1: saturating left shift first
    const std::int64_t s = static_cast<std::int64_t>(acc) * (std::int64_t{1} << q.left);
    acc = s > INT32_MAX ? INT32_MAX : (s < INT32_MIN ? INT32_MIN : static_cast<std::int32_t>(s));
  }
  // Saturating rounding doubling high multiply: (a·m + nudge) / 2^31, truncated toward zero.
#if defined(__arm__) && !defined(__aarch64__) && defined(__thumb2__)
  std::int32_t lo32, hi32;
  __asm__("smull %0, %1, %2, %3" : "=&r"(lo32), "=&r"(hi32) : "r"(acc), "r"(q.multiplier));
  const std::int64_t ab = static_cast<std::int64_t>(static_cast<std::uint64_t>(static_cast<std::uint32_t>(hi32)) << 32 |
                                                    static_cast<std::uint32_t>(lo32));
#else
  const std::int64_t ab = static_cast<std::int64_t>(acc) * q.multiplier;
#endif
  const std::int64_t t = ab + (ab >= 0 ? (std::int64_t{1} << 30) : (1 - (std::int64_t{1} << 30)));
  std::int32_t x = static_cast<std::int32_t>((t + (t < 0 ? (std::int64_t{1} << 31) - 1 : 0)) >> 31);
  // Rounding divide by 2^right, ties away from zero.
  const auto mask = static_cast<std::int32_t>((std::uint32_t{1} << q.right) - 1u);
  const std::int32_t remainder = x & mask;
  const std::int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
  return (x >> q.right) + (remainder > threshold ? 1 : 0);
}

/// y = clamp(zy + MultiplyByQuantizedMultiplier(acc, M, shift), lo, hi) with the constants of one channel.
TINYLARGE_ALWAYS_INLINE std::int8_t requantize_s8_32(std::int32_t acc, const requant_channel& q) noexcept {
  std::int32_t x = scale_s32(acc, q);
  // Added modulo 2^32 (no undefined behaviour; the reference's int32 sum is undefined only
  // where this wraps: a real multiplier ≥ 1 on a saturated accumulator).
  x = static_cast<std::int32_t>(static_cast<std::uint32_t>(x) + static_cast<std::uint32_t>(q.zero_point));
  x = x < q.lo ? q.lo : x;
  x = x > q.hi ? q.hi : x;
  return static_cast<std::int8_t>(x);
}

/// y = clamp(zy + MultiplyByQuantizedMultiplier(acc, M[o], shift[o]), act_min, act_max).
TINYLARGE_ALWAYS_INLINE std::int8_t requantize_s8_32(std::int32_t acc, std::size_t o,
                                                     const dense_s8_params& p) noexcept {
  return requantize_s8_32(acc, requant_channel_of(o, p));
}

}  // namespace tinylarge::kernels
