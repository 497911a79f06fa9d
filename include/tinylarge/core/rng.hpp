/// @file core/rng.hpp
/// @brief A small, seeded, portable random number generator.
///
/// `tl::rng` is PCG32 (O'Neill 2014, "PCG: A Family of Simple Fast
/// Space-Efficient Statistically Good Algorithms for Random Number
/// Generation"): 64-bit state, 32-bit output, with independent streams. All
/// derived distributions are computed with integer and IEEE arithmetic only,
/// so a seed gives the same sequence on every platform and compiler, and a run
/// is reproducible bit for bit. Standard-library distributions are avoided on
/// purpose: their output differs between implementations.
#pragma once

#include "config.hpp"

#include <cmath>
#include <cstddef>
#include <cstdint>

namespace tinylarge {

/// PCG32 (XSH-RR): seeded, copyable, freestanding-safe.
class rng {
 public:
  using result_type = std::uint32_t;

  constexpr explicit rng(std::uint64_t seed = 0x853c49e6748fea9bULL,
                         std::uint64_t stream = 0xda3e39cb94b95bdbULL) noexcept {
    seed_with(seed, stream);
  }

  constexpr void seed_with(std::uint64_t seed, std::uint64_t stream = 0xda3e39cb94b95bdbULL) noexcept {
    state_ = 0;
    inc_ = (stream << 1u) | 1u;
    next_u32();
    state_ += seed;
    next_u32();
  }

  static constexpr result_type min() noexcept { return 0; }
  static constexpr result_type max() noexcept { return 0xFFFFFFFFu; }
  constexpr result_type operator()() noexcept { return next_u32(); }

  constexpr std::uint32_t next_u32() noexcept {
    const std::uint64_t old = state_;
    state_ = old * 6364136223846793005ULL + inc_;
    const auto xorshifted = static_cast<std::uint32_t>(((old >> 18u) ^ old) >> 27u);
    const auto rot = static_cast<std::uint32_t>(old >> 59u);
    return (xorshifted >> rot) | (xorshifted << ((32u - rot) & 31u));
  }

  /// Uniform integer in [0, bound) without modulo bias (Lemire's method).
  constexpr std::uint32_t uniform_int(std::uint32_t bound) noexcept {
    if (bound == 0) return 0;
    std::uint64_t m = static_cast<std::uint64_t>(next_u32()) * bound;
    auto low = static_cast<std::uint32_t>(m);
    if (low < bound) {
      const std::uint32_t threshold = (0u - bound) % bound;
      while (low < threshold) {
        m = static_cast<std::uint64_t>(next_u32()) * bound;
        low = static_cast<std::uint32_t>(m);
      }
    }
    return static_cast<std::uint32_t>(m >> 32);
  }

  /// Uniform float in [0, 1) with 24 random bits.
  constexpr float uniform() noexcept { return static_cast<float>(next_u32() >> 8) * 0x1.0p-24f; }

  /// Uniform float in [lo, hi).
  ///
  /// Computed in double, where the product of two floats is exact, so that a
  /// compiler contracting `lo + w·u` into a fused multiply-add (as it may with
  /// `-march=native`) cannot change the result: the same seed gives the same
  /// floats in every build.
  constexpr float uniform(float lo, float hi) noexcept {
    return static_cast<float>(static_cast<double>(lo) +
                              static_cast<double>(hi - lo) * static_cast<double>(uniform()));
  }

  /// Standard normal sample (Box–Muller, cached pair).
  float normal() noexcept {
    if (has_spare_) {
      has_spare_ = false;
      return spare_;
    }
    // u1 in (0, 1] so that log(u1) is finite.
    const double u1 = (static_cast<double>(next_u32()) + 1.0) * 0x1.0p-32;
    const double u2 = static_cast<double>(next_u32()) * 0x1.0p-32;
    const double r = std::sqrt(-2.0 * std::log(u1));
    const double t = 6.283185307179586476925 * u2;
    spare_ = static_cast<float>(r * std::sin(t));
    has_spare_ = true;
    return static_cast<float>(r * std::cos(t));
  }

  /// Normal sample with the given mean and standard deviation (computed in
  /// double for the same reason as `uniform(lo, hi)`).
  float normal(float mean, float stddev) noexcept {
    return static_cast<float>(static_cast<double>(mean) +
                              static_cast<double>(stddev) * static_cast<double>(normal()));
  }

  /// Fisher–Yates shuffle of [first, first + n).
  template <class T>
  constexpr void shuffle(T* first, std::size_t n) noexcept {
    for (std::size_t i = n; i > 1; --i) {
      const std::size_t j = uniform_int(static_cast<std::uint32_t>(i));
      T tmp = first[i - 1];
      first[i - 1] = first[j];
      first[j] = tmp;
    }
  }

 private:
  std::uint64_t state_ = 0;
  std::uint64_t inc_ = 0;
  float spare_ = 0.0f;
  bool has_spare_ = false;
};

}  // namespace tinylarge
