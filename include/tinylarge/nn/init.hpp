/// @file nn/init.hpp
/// @brief Weight initialisers as policies. Biases always start at zero.
///
/// Available policies (fan_in / fan_out are the layer's, e.g. K·K·C for a conv):
///  - `he_normal`      — N(0, 2/fan_in) (He et al., "Delving Deep into
///                       Rectifiers", ICCV 2015): for relu networks. Default.
///  - `he_uniform`     — U(−√(6/fan_in), √(6/fan_in)), same variance.
///  - `glorot_uniform` — U(−√(6/(fan_in+fan_out)), +…) (Glorot & Bengio,
///                       AISTATS 2010): for tanh / sigmoid networks.
///  - `glorot_normal`  — N(0, 2/(fan_in+fan_out)).
///
/// An initialiser is a type with `static float sample(tl::rng&, fan_in, fan_out)`;
/// all randomness comes from the seeded `tl::rng`, so a seed fixes the weights
/// bit for bit.
#pragma once

#include <cmath>
#include <concepts>
#include <cstddef>

#include "../core/rng.hpp"

namespace tinylarge::nn {

/// Requirements of a weight initialiser.
template <class I>
concept initializer = requires(tinylarge::rng& g, std::size_t fan) {
  { I::sample(g, fan, fan) } -> std::same_as<float>;
};

/// He (Kaiming) normal: w ~ N(0, 2 / fan_in).
struct he_normal {
  static float sample(tinylarge::rng& g, std::size_t fan_in, std::size_t) noexcept {
    return g.normal(0.0f, std::sqrt(2.0f / static_cast<float>(fan_in)));
  }
};
/// He uniform: w ~ U(−a, a), a = √(6 / fan_in).
struct he_uniform {
  static float sample(tinylarge::rng& g, std::size_t fan_in, std::size_t) noexcept {
    const float a = std::sqrt(6.0f / static_cast<float>(fan_in));
    return g.uniform(-a, a);
  }
};
/// Glorot (Xavier) uniform: w ~ U(−a, a), a = √(6 / (fan_in + fan_out)).
struct glorot_uniform {
  static float sample(tinylarge::rng& g, std::size_t fan_in, std::size_t fan_out) noexcept {
    const float a = std::sqrt(6.0f / static_cast<float>(fan_in + fan_out));
    return g.uniform(-a, a);
  }
};
/// Glorot (Xavier) normal: w ~ N(0, 2 / (fan_in + fan_out)).
struct glorot_normal {
  static float sample(tinylarge::rng& g, std::size_t fan_in, std::size_t fan_out) noexcept {
    return g.normal(0.0f, std::sqrt(2.0f / static_cast<float>(fan_in + fan_out)));
  }
};

static_assert(initializer<he_normal> && initializer<glorot_uniform>);

}  // namespace tinylarge::nn
