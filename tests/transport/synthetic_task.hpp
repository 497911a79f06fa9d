// The deterministic "local training" of the transport tests and demos: a few
// seeded SGD steps on a synthetic least-squares problem that belongs to one
// client. A pure function of (client, round seed, global vector): the same
// inputs give the same bits in every process, which is what lets the MPI and
// MQTT runs be compared bit for bit with the in-process run.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <utility>
#include <vector>

#include "tinylarge/core/rng.hpp"
#include "tinylarge/workflow/federated_deploy.hpp"

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

/// A client computation (workflow/federated_roles.hpp) from a function
/// f(endpoint k, round, task seed, global, out) → examples: what the transport
/// tests run as the FedAvg client role's local step.
template <class F>
struct function_computation {
  F f;
  std::vector<float> out{};
  tl::workflow::client_output compute(std::uint64_t id, const tl::workflow::model_message& m) {
    out.resize(m.global.size());
    const std::int64_t n = f(static_cast<std::uint32_t>(id + 1), m.round, m.task_seed, m.global, std::span<float>(out));
    return {std::span<float>(out), n, {}};
  }
};

/// Runs the FedAvg client role on `net` with the computation `f` (see
/// `function_computation`).
template <class Transport, class F>
tl::status run_client(Transport& net, F f, const tl::workflow::federated_client_options& opt = {}) {
  function_computation<F> c{std::move(f)};
  tl::workflow::fedavg_client<function_computation<F>> role(c);
  return tl::workflow::run_federated_client(net, role, opt);
}

/// The initial global vector w_0.
inline std::vector<float> initial_global(std::size_t d, std::uint64_t seed) {
  tl::rng g(seed, 3);
  std::vector<float> w(d);
  for (float& x : w) x = g.uniform(-0.5f, 0.5f);
  return w;
}

}  // namespace tl_test
