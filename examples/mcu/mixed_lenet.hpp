// The mixed-precision LeNet-300-100 of the firmware example lenet_mixed (docs/mcu.md): the
// first and last dense layers in int8 (per-channel weights, input quantized with the range
// tracked in training, int32 accumulation), the middle one in fp32. Shared by the host
// generator (make_model) and the firmware.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#include <tinylarge/nn/layers.hpp>
#include <tinylarge/nn/sequential.hpp>
#include <tinylarge/precision/int8.hpp>

namespace mcu_example {

using lenet_mixed = ::tinylarge::nn::sequential<
    ::tinylarge::nn::with_precision<::tinylarge::nn::dense<784, 300>, ::tinylarge::int8_per_channel>,
    ::tinylarge::nn::relu, ::tinylarge::nn::dense<300, 100>, ::tinylarge::nn::relu,
    ::tinylarge::nn::with_precision<::tinylarge::nn::dense<100, 10>, ::tinylarge::int8_per_channel>>;

/// Layers 0–2 of `lenet_mixed` (int8 dense, relu, fp32 dense): its output is the fp32 layer's,
/// which the firmware checks bit for bit as well (the int8 last layer quantizes it again, which
/// would hide a last-bit difference). Same parameter layout as the first three layers.
using lenet_mixed_body = ::tinylarge::nn::sequential<
    ::tinylarge::nn::with_precision<::tinylarge::nn::dense<784, 300>, ::tinylarge::int8_per_channel>,
    ::tinylarge::nn::relu, ::tinylarge::nn::dense<300, 100>>;

/// FNV-1a of the bit patterns of n floats (the same on 32- and 64-bit targets).
inline std::uint32_t fnv1a_bits(const float* v, std::size_t n) {
  std::uint32_t h = 2166136261u;
  for (std::size_t i = 0; i < n; ++i) {
    std::uint32_t b;
    std::memcpy(&b, &v[i], 4);
    for (int k = 0; k < 4; ++k) h = (h ^ ((b >> (8 * k)) & 0xFFu)) * 16777619u;
  }
  return h;
}

/// Images the firmware classifies (the first ones of images.h).
inline constexpr std::size_t mixed_images = 16;

}  // namespace mcu_example
