/// @file aggregate/client.hpp
/// @brief Client-side helpers of the aggregation axis: the FedProx proximal
///        term and L2 clipping of a model update.
///
/// Freestanding-safe (no heap, no exceptions needed, no iostream): a device
/// that trains locally calls these on its own flat parameter vectors.
#pragma once

#include <cmath>
#include <cstddef>
#include <span>

#include "../core/config.hpp"
#include "../core/error.hpp"

namespace tinylarge {

/// FedProx proximal term (Li et al., "Federated Optimization in Heterogeneous
/// Networks", MLSys 2020, eq. 2): (μ/2) · ‖w − w_t‖², where w_t is the global
/// model the round started from. Accumulated in double.
inline double proximal_term(std::span<const float> w, std::span<const float> w_global, float mu) {
  TINYLARGE_REQUIRE(w.size() == w_global.size(), errc::shape_mismatch, "proximal_term: sizes differ");
  double s = 0.0;
  for (std::size_t i = 0; i < w.size(); ++i) {
    const double d = static_cast<double>(w[i]) - static_cast<double>(w_global[i]);
    s += d * d;
  }
  return 0.5 * static_cast<double>(mu) * s;
}

/// Adds the gradient of the proximal term to a local gradient:
/// g ← g + μ · (w − w_t). Call after the loss gradient, before the optimizer
/// step, in every local step of a FedProx client.
inline void add_proximal_gradient(std::span<float> grad, std::span<const float> w, std::span<const float> w_global,
                                  float mu) {
  TINYLARGE_REQUIRE(grad.size() == w.size() && w.size() == w_global.size(), errc::shape_mismatch,
                    "add_proximal_gradient: sizes differ");
  for (std::size_t i = 0; i < grad.size(); ++i) grad[i] += mu * (w[i] - w_global[i]);
}

/// Euclidean norm, accumulated in double.
inline double l2_norm(std::span<const float> x) noexcept {
  double s = 0.0;
  for (const float v : x) s += static_cast<double>(v) * static_cast<double>(v);
  return std::sqrt(s);
}

/// Scales `delta` in place so that ‖delta‖₂ ≤ clip (Abadi et al. 2016 /
/// McMahan et al. 2018): delta ← delta · min(1, C / ‖delta‖). Returns the
/// norm before clipping. `clip` must be > 0.
inline double clip_l2(std::span<float> delta, float clip) {
  TINYLARGE_REQUIRE(clip > 0.0f, errc::invalid_argument, "clip_l2: clip must be > 0");
  const double norm = l2_norm(delta);
  if (norm > static_cast<double>(clip)) {
    const auto f = static_cast<float>(static_cast<double>(clip) / norm);
    for (float& v : delta) v *= f;
  }
  return norm;
}

}  // namespace tinylarge
