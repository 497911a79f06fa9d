// The on-device personalisation setting of examples/mcu (docs/mcu.md), shared by the
// generator (which picks and shifts the samples) and the firmware (which fine-tunes).
//
// A device whose camera delivers washed-out images: low contrast on a grey background
// (every pixel p becomes p/2 + 40), all ten classes. The frozen int8 body still computes
// useful features, but the head trained on clean images misreads them. The last dense layer
// (100 → 10) is fine-tuned in fp32 on 32 such samples (training images the model never saw)
// and evaluated on 64 held-out test images of the same kind, before and after.
#pragma once

#include <cstddef>
#include <cstdint>

namespace mcu_example {

inline constexpr std::size_t ft_train_count = 32;
inline constexpr std::size_t ft_heldout_count = 64;
inline constexpr std::size_t ft_epochs = 10;
inline constexpr float ft_learning_rate = 0.001f;
inline constexpr float ft_decay = 0.9f;
inline constexpr const char* ft_description =
    "washed-out camera, every pixel p -> p/2 + 40, all ten classes";

constexpr bool ft_class_used(std::uint8_t label) noexcept { return label < 10; }

/// The domain shift applied to a 28×28 image in place.
inline void ft_shift(std::uint8_t* pixels) noexcept {
  for (std::size_t i = 0; i < 784; ++i) pixels[i] = static_cast<std::uint8_t>(pixels[i] / 2 + 40);
}

}  // namespace mcu_example
