/// @file nn/loss.hpp
/// @brief Loss functions as policies: value and gradient in one pass.
///
/// Available policies:
///  - `softmax_cross_entropy` — integer class labels, applied to logits;
///    softmax and log are fused for stability (log-sum-exp with the maximum
///    subtracted), and the gradient is the well-known (softmax(z) − onehot)/B.
///  - `mse` — float targets, mean over batch and outputs of (y − t)².
///
/// A loss has `target_type` and
/// `static double evaluate(const float* out, const target_type* t, std::size_t batch, std::size_t n, float* grad)`
/// which returns the mean loss over the batch and writes ∂loss/∂out into
/// `grad` (batch × n; may be null to skip the gradient).
#pragma once

#include <cmath>
#include <concepts>
#include <cstddef>
#include <cstdint>

namespace tinylarge::nn {

/// Requirements of a loss policy.
template <class L>
concept loss_policy = requires(const float* out, const typename L::target_type* t, std::size_t n, float* g) {
  typename L::target_type;
  { L::evaluate(out, t, n, n, g) } -> std::same_as<double>;
  { L::name() } -> std::convertible_to<const char*>;
};

/// Softmax cross-entropy on logits z with integer labels y:
/// L = (1/B) Σ_b [log Σ_j e^{z_bj} − z_{b,y_b}],  ∂L/∂z_bj = (softmax(z_b)_j − [j = y_b]) / B.
struct softmax_cross_entropy {
  using target_type = std::uint8_t;
  static constexpr const char* name() noexcept { return "softmax_cross_entropy"; }
  static double evaluate(const float* z, const std::uint8_t* labels, std::size_t batch, std::size_t n,
                         float* grad) noexcept {
    double total = 0.0;
    const float inv_b = 1.0f / static_cast<float>(batch);
    for (std::size_t b = 0; b < batch; ++b) {
      const float* zb = z + b * n;
      float m = zb[0];
      for (std::size_t j = 1; j < n; ++j) m = zb[j] > m ? zb[j] : m;
      double sum = 0.0;
      for (std::size_t j = 0; j < n; ++j) sum += std::exp(static_cast<double>(zb[j] - m));
      const double lse = static_cast<double>(m) + std::log(sum);
      total += lse - static_cast<double>(zb[labels[b]]);
      if (grad != nullptr) {
        for (std::size_t j = 0; j < n; ++j) {
          const auto p = static_cast<float>(std::exp(static_cast<double>(zb[j]) - lse));
          grad[b * n + j] = (p - (j == labels[b] ? 1.0f : 0.0f)) * inv_b;
        }
      }
    }
    return total / static_cast<double>(batch);
  }
};

/// Mean squared error: L = (1/(B·n)) Σ (y − t)²,  ∂L/∂y = 2(y − t)/(B·n).
struct mse {
  using target_type = float;
  static constexpr const char* name() noexcept { return "mse"; }
  static double evaluate(const float* y, const float* t, std::size_t batch, std::size_t n, float* grad) noexcept {
    double total = 0.0;
    const float scale = 2.0f / static_cast<float>(batch * n);
    for (std::size_t i = 0; i < batch * n; ++i) {
      const float d = y[i] - t[i];
      total += static_cast<double>(d) * static_cast<double>(d);
      if (grad != nullptr) grad[i] = scale * d;
    }
    return total / static_cast<double>(batch * n);
  }
};

static_assert(loss_policy<softmax_cross_entropy> && loss_policy<mse>);

}  // namespace tinylarge::nn
