// The fleet of the split-learning serial test (scripts/mcu_split.sh), shared by the
// Cortex-M4F firmware (tests/mcu/split_device.cpp) and the host program
// (tests/transport/split_serial_host.cpp), so that both draw the same batches and run
// the same model: a 16-32-4 MLP cut after its first dense layer and ReLU (the device
// segment, dense<16, 32> + relu: 544 fp32 parameters), trained by the library's split
// deployment (workflow/split_deploy.hpp) with plain SGD on both sides.
#pragma once

#include <cstddef>
#include <cstdint>

#include "tinylarge/core/rng.hpp"
#include "tinylarge/nn/layers.hpp"
#include "tinylarge/nn/sequential.hpp"
#include "tinylarge/partition/cut.hpp"

namespace split_task {

namespace tl = tinylarge;

using model = tl::nn::sequential<tl::nn::dense<16, 32>, tl::nn::relu, tl::nn::dense<32, 4>>;
using partition = tl::cut<2>;
using device_model = partition::segment<model, 0>;
using server_model = partition::segment<model, 1>;
inline constexpr std::size_t features = 16;
inline constexpr std::size_t classes = 4;
inline constexpr std::size_t cut = partition::cut_size<model, 0>;
/// Rows of every step's batch (the deployment's max_batch).
inline constexpr std::size_t batch = 8;
/// SGD's learning rate on the device and on the server.
inline constexpr float learning_rate = 0.3f;
/// The device's aggregation weight (its "local examples").
inline constexpr std::int64_t examples = 64;
/// The seed of the device's data stream and of the initial model.
inline constexpr std::uint64_t seed = 19;

/// Batch `step` of `round`: `batch` rows of features uniform in [-1, 1); the label is
/// the group of 4 features with the largest sum (a task the MLP can learn). A function
/// of (round, step) only, as the deployment's batch function must be (a client that
/// redoes a round after a server restart asks for the same batches again).
inline std::size_t make_batch(std::uint32_t round, std::uint32_t step, float* x, std::uint8_t* y) {
  tl::rng g(seed, (std::uint64_t{round} << 32) | step);
  for (std::size_t s = 0; s < batch; ++s) {
    float best = -1e30f;
    for (std::size_t o = 0; o < classes; ++o) {
      float sum = 0.0f;
      for (std::size_t k = 0; k < features / classes; ++k) {
        const float v = g.uniform(-1.0f, 1.0f);
        x[s * features + o * (features / classes) + k] = v;
        sum += v;
      }
      if (sum > best) {
        best = sum;
        y[s] = static_cast<std::uint8_t>(o);
      }
    }
  }
  return batch;
}

}  // namespace split_task
