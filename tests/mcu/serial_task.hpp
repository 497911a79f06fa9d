// The computation of the serial-link test (scripts/mcu_serial.sh), shared by the
// Cortex-M4F firmware (tests/mcu/serial_device.cpp) and the host program
// (tests/transport/serial_host.cpp), so that both run the same code: a federated
// client's local round on the fp32 head of nn/device_finetune.hpp. The model frame
// carries the head (W then b, fp32) and, in `aux`, the seed of the device's local data.
#pragma once

#include <cstddef>
#include <cstdint>

#include "tinylarge/core/rng.hpp"
#include "tinylarge/nn/device_finetune.hpp"

namespace serial_task {

inline constexpr std::size_t features = 16;
inline constexpr std::size_t classes = 4;
inline constexpr std::size_t samples = 24;
/// Parameters in a model or update frame: W (classes × features) then b.
inline constexpr std::size_t params = classes * features + classes;
inline constexpr float learning_rate = 0.1f;

using head_t = tinylarge::nn::last_layer_finetuner<features, classes>;

/// Everything a local round needs (static storage on the device: 1.9 KiB).
struct workspace {
  head_t head;
  float x[samples * features];
  std::uint8_t y[samples];
};

/// The device's local data for `seed`: features uniform in [-1, 1); the label is the
/// group of 4 features with the largest sum (a task the head can learn).
inline void make_data(std::uint64_t seed, workspace& w) {
  tinylarge::rng g(seed);
  for (std::size_t s = 0; s < samples; ++s) {
    float best = -1e30f;
    for (std::size_t o = 0; o < classes; ++o) {
      float sum = 0.0f;
      for (std::size_t k = 0; k < features / classes; ++k) {
        const float v = g.uniform(-1.0f, 1.0f);
        w.x[s * features + o * (features / classes) + k] = v;
        sum += v;
      }
      if (sum > best) {
        best = sum;
        w.y[s] = static_cast<std::uint8_t>(o);
      }
    }
  }
}

/// One local round: load `model` (params floats), one epoch of SGD on the data of
/// `seed`, write the new parameters to `update` (params floats).
/// @return the mean probability of the true labels during the epoch
inline float local_round(const float* model, std::uint64_t seed, workspace& w, float* update) {
  make_data(seed, w);
  w.head.load(model, model + classes * features);
  const float p = w.head.train(w.x, w.y, samples, 1, learning_rate);
  for (std::size_t i = 0; i < classes * features; ++i) update[i] = w.head.weights()[i];
  for (std::size_t o = 0; o < classes; ++o) update[classes * features + o] = w.head.bias()[o];
  return p;
}

}  // namespace serial_task
