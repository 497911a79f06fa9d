/// @file nn/optimizer.hpp
/// @brief Optimizers as policies, in the ensmallen style: hyperparameters in
///        the policy, per-parameter state in a nested template.
///
/// Available policies:
///  - `sgd` — stochastic gradient descent with optional (heavy-ball or
///    Nesterov) momentum and L2 weight decay. With the defaults it is plain
///    SGD: the trivial member, read it as the interface's documentation.
///  - `adam` — Adam (Kingma & Ba, "Adam: A Method for Stochastic
///    Optimization", ICLR 2015), with L2 weight decay added to the gradient.
///
/// A policy `O` has a nested `template <class T> class state` built from
/// `(const O&, std::size_t n)` with `void step(T* params, const T* grads)`;
/// `O::state<float>` is instantiated by the training loop once it knows the
/// parameter count, so that an optimizer serves any element type.
#pragma once

#include <cmath>
#include <concepts>
#include <cstddef>
#include <vector>

#include "../kernels/elementwise.hpp"

namespace tinylarge::nn {

/// Requirements of an optimizer policy.
template <class O>
concept optimizer_policy = requires(const O& o, typename O::template state<float>& s, float* p, const float* g) {
  typename O::template state<float>;
  { typename O::template state<float>(o, std::size_t{1}) };
  { s.step(p, g) };
  { O::name() } -> std::convertible_to<const char*>;
};

/// SGD, PyTorch's formulation. With g = ∇ + λ·w:
///   v ← μ·v + g;   w ← w − η·(g + μ·v) (Nesterov)  or  w ← w − η·v (heavy ball);
/// μ = 0 is plain SGD: w ← w − η·g.
/// (Sutskever et al., "On the importance of initialization and momentum in
/// deep learning", ICML 2013.)
struct sgd {
  float learning_rate = 0.01f;  ///< η
  float momentum = 0.0f;        ///< μ ∈ [0, 1)
  float weight_decay = 0.0f;    ///< λ (L2)
  bool nesterov = false;
  static constexpr const char* name() noexcept { return "sgd"; }

  /// Per-parameter state (the momentum buffer), created by the training loop.
  template <class T>
  class state;
};

/// Adam. With g = ∇ + λ·w and step t = 1, 2, …:
///   m ← β₁m + (1−β₁)g,  v ← β₂v + (1−β₂)g²,
///   w ← w − η·m̂ / (√v̂ + ε),  m̂ = m/(1−β₁ᵗ), v̂ = v/(1−β₂ᵗ).
struct adam {
  float learning_rate = 1e-3f;  ///< η
  float beta1 = 0.9f;           ///< β₁
  float beta2 = 0.999f;         ///< β₂
  float epsilon = 1e-8f;        ///< ε
  float weight_decay = 0.0f;    ///< λ (L2, as torch.optim.Adam)
  static constexpr const char* name() noexcept { return "adam"; }

  /// Per-parameter state (first and second moments, step count).
  template <class T>
  class state;
};

template <class T>
class sgd::state {
 public:
  state(const sgd& o, std::size_t n) : opt_(o), velocity_(o.momentum != 0.0f ? n : 0, T(0)), n_(n) {}
  void step(T* w, const T* grad) noexcept {
    const kernels::sgd_params<T> p{static_cast<T>(opt_.learning_rate), static_cast<T>(opt_.momentum),
                                   static_cast<T>(opt_.weight_decay), opt_.nesterov};
    kernels::sgd_step(kernels::default_backend{}, n_, p, w, grad, velocity_.empty() ? nullptr : velocity_.data());
  }
  void set_learning_rate(float lr) noexcept { opt_.learning_rate = lr; }
  /// True, with η in `lr`, when a step is w ← w − η·g (μ = 0, λ = 0): the
  /// step a network can fuse into its backward pass (nn/step.hpp).
  bool plain_sgd(float& lr) const noexcept {
    lr = opt_.learning_rate;
    return velocity_.empty() && opt_.weight_decay == 0.0f;
  }
  /// For checkpoints (workflow/split_deploy.hpp): the momentum buffer (empty when μ = 0) …
  const std::vector<T>& velocity() const noexcept { return velocity_; }
  /// … and its restore; false (state unchanged) when the size differs.
  bool restore(const std::vector<T>& v) {
    if (v.size() != velocity_.size()) return false;
    velocity_ = v;
    return true;
  }

 private:
  sgd opt_;
  std::vector<T> velocity_;
  std::size_t n_;
};

template <class T>
class adam::state {
 public:
  state(const adam& o, std::size_t n) : opt_(o), m_(n, T(0)), v_(n, T(0)) {}
  void step(T* w, const T* grad) noexcept {
    ++t_;
    const double b1t = 1.0 - std::pow(static_cast<double>(opt_.beta1), static_cast<double>(t_));
    const double b2t = 1.0 - std::pow(static_cast<double>(opt_.beta2), static_cast<double>(t_));
    // Fold the bias corrections into the step size (Kingma & Ba, §2, last paragraph).
    const auto lr_t = static_cast<T>(static_cast<double>(opt_.learning_rate) * std::sqrt(b2t) / b1t);
    const auto eps_t = static_cast<T>(static_cast<double>(opt_.epsilon) * std::sqrt(b2t));
    const kernels::adam_params<T> p{lr_t, eps_t, static_cast<T>(opt_.beta1), static_cast<T>(opt_.beta2),
                                    static_cast<T>(opt_.weight_decay)};
    kernels::adam_step(kernels::default_backend{}, m_.size(), p, w, grad, m_.data(), v_.data());
  }
  void set_learning_rate(float lr) noexcept { opt_.learning_rate = lr; }
  /// For checkpoints (workflow/split_deploy.hpp): the moments m, v and the step count t …
  const std::vector<T>& first_moment() const noexcept { return m_; }
  const std::vector<T>& second_moment() const noexcept { return v_; }
  unsigned long long steps() const noexcept { return t_; }
  /// … and their restore; false (state unchanged) when a size differs.
  bool restore(const std::vector<T>& m, const std::vector<T>& v, unsigned long long t) {
    if (m.size() != m_.size() || v.size() != v_.size()) return false;
    m_ = m;
    v_ = v;
    t_ = t;
    return true;
  }

 private:
  adam opt_;
  std::vector<T> m_, v_;
  unsigned long long t_ = 0;
};

static_assert(optimizer_policy<sgd> && optimizer_policy<adam>);

}  // namespace tinylarge::nn
