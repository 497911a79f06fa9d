/// @file tests/blobs.hpp
/// @brief The tests' small synthetic classification task: four Gaussian blobs in
///        16-D, seeded (tests/test_split.cpp, tests/test_custom_policies.cpp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "tinylarge/core/rng.hpp"
#include "tinylarge/nn/train.hpp"

namespace tl_test {

/// n samples of 16 features and a label in 0..3.
struct blobs {
  std::vector<float> x;
  std::vector<std::uint8_t> y;
  tinylarge::nn::labelled_view<std::uint8_t> view() const { return {x.data(), y.data(), y.size(), 16}; }
};

/// Class c lifts features f with f % 4 == c by 1 and f / 4 == c by 0.5, over uniform noise in [-0.5, 0.5).
inline blobs make_blobs(std::size_t n, std::uint64_t seed) {
  tinylarge::rng g(seed);
  blobs b;
  b.x.resize(n * 16);
  b.y.resize(n);
  for (std::size_t i = 0; i < n; ++i) {
    const auto c = static_cast<std::uint8_t>(g.uniform_int(4));
    b.y[i] = c;
    for (std::size_t f = 0; f < 16; ++f)
      b.x[i * 16 + f] = g.uniform(-0.5f, 0.5f) + ((f % 4) == c ? 1.0f : 0.0f) + (f / 4 == c ? 0.5f : 0.0f);
  }
  return b;
}

}  // namespace tl_test
