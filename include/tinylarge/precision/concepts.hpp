/// @file precision/concepts.hpp
/// @brief The precision axis: how numbers are stored and computed.
///
/// Available policies (see docs/precision.md for when to use which):
///  - `fp32`  — IEEE binary32 storage and compute. The trivial member: read it
///              as the documentation of the interface.
///  - `fp16`  — IEEE binary16 storage, fp32 accumulation.
///  - `bf16`  — bfloat16 storage, fp32 accumulation.
///  - `int8<per_tensor|per_channel>` — affine int8 (TFLite int8 spec), int32
///              accumulation, integer-only requantization.
///
/// A *float-like* precision (`quantized == false`) converts single values with
/// `encode(float)` / `decode(storage_type)`. A *quantized* precision
/// (`quantized == true`) converts whole tensors with quantization parameters;
/// see `precision/int8.hpp`.
#pragma once

#include <concepts>
#include <cstdint>

#include "../core/config.hpp"

namespace tinylarge {

/// Requirements every precision policy meets.
template <class P>
concept precision_policy = requires {
  typename P::storage_type;      // what one stored parameter is
  typename P::accumulator_type;  // what products are summed in
  { P::name() } -> std::convertible_to<const char*>;
  { P::quantized } -> std::convertible_to<bool>;
  { P::storage_bits } -> std::convertible_to<unsigned>;
};

/// A precision that stores each value independently of the others.
template <class P>
concept float_precision =
    precision_policy<P> && (!P::quantized) &&
    requires(float f, typename P::storage_type s) {
      { P::encode(f) } -> std::same_as<typename P::storage_type>;
      { P::decode(s) } -> std::same_as<float>;
    };

/// A precision whose values need quantization parameters (scale, zero point).
template <class P>
concept quantized_precision = precision_policy<P> && P::quantized;

/// IEEE binary32 storage and compute.
///
/// This is the trivial member of the precision axis and the template for your
/// own: a float-like policy names its storage and accumulator types, says how
/// many bits one stored value takes, and converts one value each way.
struct fp32 {
  using storage_type = float;
  using accumulator_type = float;
  static constexpr bool quantized = false;
  static constexpr unsigned storage_bits = 32;
  static constexpr const char* name() noexcept { return "fp32"; }
  static constexpr float encode(float x) noexcept { return x; }
  static constexpr float decode(float x) noexcept { return x; }
};

static_assert(float_precision<fp32>);

/// Whether low-precision training in `P` uses dynamic loss scaling
/// (Micikevicius et al., "Mixed Precision Training", ICLR 2018): the optional
/// member `static constexpr bool loss_scaling` of a float precision; false
/// when absent. `fp16` sets it (its smallest subnormal is 2^-24, where small
/// gradients vanish); `bf16` does not (it has fp32's exponent range).
template <class P>
inline constexpr bool uses_loss_scaling = [] {
  if constexpr (requires { P::loss_scaling; }) {
    return static_cast<bool>(P::loss_scaling);
  } else {
    return false;
  }
}();

static_assert(!uses_loss_scaling<fp32>);

}  // namespace tinylarge
