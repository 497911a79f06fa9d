// The computation of the serial-link and fleet tests (scripts/mcu_serial.sh,
// scripts/mcu_fleet.sh), shared by the Cortex-M4F firmware (tests/mcu/serial_device.cpp)
// and the host programs (tests/transport/serial_host.cpp, tests/transport/fleet_node.cpp),
// so that devices and host clients run the same code: a FedAvg client's local round on
// the fp32 head of nn/device_finetune.hpp. The model frame is the one
// run_federated_server sends (workflow/federated_deploy.hpp): the head (W then b, fp32)
// and, in `aux`, the round's task seed; client k's local data of that round are drawn
// from rng(task seed, k + 1), as workflow/federated_roles.hpp prescribes.
#pragma once

#include <cstddef>
#include <cstdint>

#include "tinylarge/core/config.hpp"
#include "tinylarge/core/rng.hpp"
#include "tinylarge/nn/device_finetune.hpp"
#if !TINYLARGE_FREESTANDING
#include <span>
#include <vector>

#include "tinylarge/core/error.hpp"
#include "tinylarge/workflow/federated_roles.hpp"
#endif

namespace serial_task {

inline constexpr std::size_t features = 16;
inline constexpr std::size_t classes = 4;
inline constexpr std::size_t samples = 24;
/// Parameters in a model or update frame: W (classes × features) then b.
inline constexpr std::size_t params = classes * features + classes;
inline constexpr float learning_rate = 0.1f;
/// Values per scale of int8 updates (4 scales for the 68 parameters).
inline constexpr std::size_t int8_chunk = 17;

using head_t = tinylarge::nn::last_layer_finetuner<features, classes>;

/// Everything a local round needs (static storage on the device: 1.9 KiB).
struct workspace {
  head_t head;
  float x[samples * features];
  std::uint8_t y[samples];
};

/// Client `client`'s local data of the round with task seed `seed`: features uniform
/// in [-1, 1) from rng(seed, client + 1); the label is the group of 4 features with the
/// largest sum (a task the head can learn).
inline void make_data(std::uint64_t seed, std::uint64_t client, workspace& w) {
  tinylarge::rng g(seed, client + 1);
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

/// Client `client`'s local round: load `model` (params floats), one epoch of SGD on
/// its data of the round with task seed `seed`, write the new parameters to `update`
/// (params floats). A pure function of its inputs (a repeated model gets the same bits).
/// @return the mean probability of the true labels during the epoch
inline float local_round(const float* model, std::uint64_t seed, std::uint64_t client, workspace& w, float* update) {
  make_data(seed, client, w);
  w.head.load(model, model + classes * features);
  const float p = w.head.train(w.x, w.y, samples, 1, learning_rate);
  for (std::size_t i = 0; i < classes * features; ++i) update[i] = w.head.weights()[i];
  for (std::size_t o = 0; o < classes; ++o) update[classes * features + o] = w.head.bias()[o];
  return p;
}

}  // namespace serial_task

namespace serial_task {

/// The run's initial model: small weights from `seed`, zero biases (params floats).
inline void initial_model(std::uint64_t seed, float* out) {
  tinylarge::rng g(seed + 1000);
  for (std::size_t i = 0; i < classes * features; ++i) out[i] = g.uniform(-0.1f, 0.1f);
  for (std::size_t o = 0; o < classes; ++o) out[classes * features + o] = 0.0f;
}

}  // namespace serial_task

#if !TINYLARGE_FREESTANDING
namespace serial_task {

/// A host client's `client_computation` (workflow/federated_roles.hpp) running the
/// devices' local round: host clients and devices of one fleet compute the same thing.
struct host_computation {
  workspace work{};
  std::vector<float> out = std::vector<float>(params);
  tinylarge::workflow::client_output compute(std::uint64_t client, const tinylarge::workflow::model_message& m) {
    TINYLARGE_REQUIRE(m.global.size() == params, tinylarge::errc::shape_mismatch,
                      "serial_task: the model is not the head of serial_task.hpp (features 16, classes 4)");
    (void)local_round(m.global.data(), m.task_seed, client, work, out.data());
    return {std::span<float>(out), static_cast<std::int64_t>(samples), {}};
  }
};

}  // namespace serial_task
#endif
