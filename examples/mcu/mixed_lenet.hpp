// The mixed-precision LeNet-300-100 of the firmware example lenet_mixed (docs/mcu.md): the
// first and last dense layers in int8 (per-channel weights, input quantized with the range
// tracked in training, int32 accumulation), the middle one in fp32. Shared by the host
// generator (make_model) and the firmware.
#pragma once

#include <tinylarge/nn/layers.hpp>
#include <tinylarge/nn/sequential.hpp>
#include <tinylarge/precision/int8.hpp>

namespace mcu_example {

using lenet_mixed = ::tinylarge::nn::sequential<
    ::tinylarge::nn::with_precision<::tinylarge::nn::dense<784, 300>, ::tinylarge::int8_per_channel>,
    ::tinylarge::nn::relu, ::tinylarge::nn::dense<300, 100>, ::tinylarge::nn::relu,
    ::tinylarge::nn::with_precision<::tinylarge::nn::dense<100, 10>, ::tinylarge::int8_per_channel>>;

/// Images the firmware classifies (the first ones of images.h).
inline constexpr std::size_t mixed_images = 16;

}  // namespace mcu_example
