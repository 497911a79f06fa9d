// The deterministic "local training" of the transport tests and demos: a few
// seeded SGD steps on a synthetic least-squares problem that belongs to one
// client. A pure function of (client, round seed, global vector): the same
// inputs give the same bits in every process, which is what lets the MPI and
// MQTT runs be compared bit for bit with the in-process run.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "tinylarge/core/rng.hpp"

namespace tl_test {

struct least_squares_task {
  std::size_t dimension = 64;
  std::uint64_t data_seed = 42;
  int steps = 8;
  float learning_rate = 0.05f;

  /// Rows of client k's data set.
  static std::size_t rows(std::uint32_t client) { return 16 + 8 * std::size_t{client}; }

  /// Client k's new parameters after `steps` SGD steps from `global`.
  std::int64_t operator()(std::uint32_t client, std::uint64_t task_seed, std::span<const float> global,
                          std::span<float> out) const {
    const std::size_t m = rows(client), d = dimension;
    tl::rng truth(data_seed, 7);
    std::vector<float> w_star(d);
    for (float& x : w_star) x = truth.uniform(-1.0f, 1.0f);
    tl::rng data(data_seed + client, 11);
    std::vector<float> a(m * d), b(m);
    for (std::size_t i = 0; i < m; ++i) {
      float dot = 0.0f;
      for (std::size_t j = 0; j < d; ++j) {
        a[i * d + j] = data.uniform(-1.0f, 1.0f);
        dot += a[i * d + j] * w_star[j];
      }
      b[i] = dot + 0.1f * static_cast<float>(client) * data.uniform(-1.0f, 1.0f);  // client-specific bias
    }
    for (std::size_t j = 0; j < d; ++j) out[j] = global[j];
    tl::rng pick(task_seed ^ (std::uint64_t{client} << 32), client);
    for (int s = 0; s < steps; ++s) {
      const std::size_t i = pick.uniform_int(static_cast<std::uint32_t>(m));
      float r = -b[i];
      for (std::size_t j = 0; j < d; ++j) r += a[i * d + j] * out[j];
      for (std::size_t j = 0; j < d; ++j) out[j] -= learning_rate * r * a[i * d + j];
    }
    return static_cast<std::int64_t>(m);
  }
};

/// The initial global vector w_0.
inline std::vector<float> initial_global(std::size_t d, std::uint64_t seed) {
  tl::rng g(seed, 3);
  std::vector<float> w(d);
  for (float& x : w) x = g.uniform(-0.5f, 0.5f);
  return w;
}

}  // namespace tl_test
