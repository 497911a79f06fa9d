/// @file nas/space.hpp
/// @brief The search space of the architecture search: a family of MLPs
///        (depth, width per hidden layer, precision per layer) encoded as a
///        genome, with uniform sampling, mutation and uniform crossover.
///
/// A genome of `mlp_space` is the run-time description of the model
///
///     sequential<dense<inputs, w₁>, relu, …, dense<w_{d−1}, w_d>, relu, dense<w_d, outputs>>
///
/// with d ∈ [min_depth, max_depth] hidden layers, each width wᵢ taken from
/// `mlp_space::widths`, and a precision (`int8` or `fp32`) for each of the
/// d + 1 dense layers (the last one is the classifier head). `emit.hpp`
/// writes the compile-time type of a genome.
///
/// All randomness comes from a caller's seeded `tl::rng`, so a seed fixes
/// every sample and every mutation.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "../core/error.hpp"
#include "../core/rng.hpp"

namespace tinylarge::nas {

/// Storage and compute precision of one dense layer of a candidate.
///  - `fp32`: fp32 weights, biases and activations.
///  - `int8`: int8 weights (symmetric, per output channel), int8 input and
///    output activations (asymmetric, per tensor), int32 biases and one Q31
///    multiplier + shift per output channel: the TFLite int8 scheme of
///    `nn::quantized_network<…, int8_per_channel>`.
enum class layer_precision : std::uint8_t { fp32, int8 };

/// "fp32" or "int8".
inline const char* to_string(layer_precision p) noexcept { return p == layer_precision::int8 ? "int8" : "fp32"; }

/// One candidate architecture of an `mlp_space`.
struct genome {
  /// Width (units) of each hidden layer; its size is the depth d.
  std::vector<std::size_t> widths;
  /// Precision of each dense layer: d hidden layers then the head (size d + 1).
  std::vector<layer_precision> precisions;

  /// Number of hidden layers.
  [[nodiscard]] std::size_t depth() const noexcept { return widths.size(); }
  /// A short unique text for the genome, e.g. "256i-64f|i" (width and
  /// precision per hidden layer, then the head's precision).
  [[nodiscard]] std::string key() const {
    std::string s;
    for (std::size_t l = 0; l < widths.size(); ++l) {
      if (l > 0) s += '-';
      s += std::to_string(widths[l]);
      s += precisions[l] == layer_precision::int8 ? 'i' : 'f';
    }
    s += '|';
    s += precisions.empty() ? '?' : (precisions.back() == layer_precision::int8 ? 'i' : 'f');
    return s;
  }
  /// Equal depth, widths and precisions.
  friend bool operator==(const genome&, const genome&) = default;
};

/// The MLP search space: hidden depth, the widths a hidden layer may take, and
/// whether the precision of each layer is searched.
struct mlp_space {
  std::size_t inputs = 784;  ///< input features (Fashion-MNIST: 28·28)
  std::size_t outputs = 5;   ///< classes of the head
  std::vector<std::size_t> widths{32, 64, 128, 256, 300};  ///< allowed hidden widths (distinct, > 0)
  std::size_t min_depth = 1;  ///< fewest hidden layers (≥ 1)
  std::size_t max_depth = 3;  ///< most hidden layers
  /// Precisions a layer may take; {int8} or {fp32} fixes the precision.
  std::vector<layer_precision> precisions{layer_precision::int8, layer_precision::fp32};

  /// The widest allowed hidden layer (the supernet's width).
  [[nodiscard]] std::size_t max_width() const noexcept {
    std::size_t m = 0;
    for (std::size_t w : widths) m = w > m ? w : m;
    return m;
  }
  /// The narrowest allowed hidden layer.
  [[nodiscard]] std::size_t min_width() const noexcept {
    std::size_t m = widths.empty() ? 0 : widths.front();
    for (std::size_t w : widths) m = w < m ? w : m;
    return m;
  }
  /// Raises `errc::invalid_argument` unless the space is well formed.
  void validate() const {
    TINYLARGE_REQUIRE(inputs > 0 && outputs > 0, errc::invalid_argument, "nas::mlp_space: inputs and outputs must be > 0");
    TINYLARGE_REQUIRE(!widths.empty() && min_width() > 0, errc::invalid_argument,
                      "nas::mlp_space: widths must be non-empty and positive");
    TINYLARGE_REQUIRE(min_depth >= 1 && min_depth <= max_depth, errc::invalid_argument,
                      "nas::mlp_space: need 1 <= min_depth <= max_depth");
    TINYLARGE_REQUIRE(!precisions.empty(), errc::invalid_argument, "nas::mlp_space: precisions must be non-empty");
  }
  /// Whether `g` belongs to the space (depth, widths and precisions allowed).
  [[nodiscard]] bool contains(const genome& g) const {
    if (g.depth() < min_depth || g.depth() > max_depth || g.precisions.size() != g.depth() + 1) return false;
    for (std::size_t w : g.widths)
      if (!allowed_width(w)) return false;
    for (layer_precision p : g.precisions)
      if (!allowed_precision(p)) return false;
    return true;
  }
  /// Number of genomes in the space: Σ_d |widths|^d · |precisions|^(d+1).
  [[nodiscard]] double size() const noexcept {
    double total = 0;
    for (std::size_t d = min_depth; d <= max_depth; ++d) {
      double n = 1;
      for (std::size_t l = 0; l < d; ++l) n *= static_cast<double>(widths.size());
      for (std::size_t l = 0; l <= d; ++l) n *= static_cast<double>(precisions.size());
      total += n;
    }
    return total;
  }
  /// The largest genome: max depth, max width everywhere, the first precision
  /// of `precisions` everywhere.
  [[nodiscard]] genome largest() const {
    return {std::vector<std::size_t>(max_depth, max_width()), std::vector<layer_precision>(max_depth + 1, precisions.front())};
  }
  /// The smallest genome: min depth, min width everywhere, the first precision.
  [[nodiscard]] genome smallest() const {
    return {std::vector<std::size_t>(min_depth, min_width()), std::vector<layer_precision>(min_depth + 1, precisions.front())};
  }

  /// A genome drawn uniformly per decision: depth uniform in
  /// [min_depth, max_depth], then each width and precision uniform.
  [[nodiscard]] genome sample(tinylarge::rng& g) const {
    genome out;
    const std::size_t d = min_depth + g.uniform_int(static_cast<std::uint32_t>(max_depth - min_depth + 1));
    for (std::size_t l = 0; l < d; ++l) out.widths.push_back(random_width(g));
    for (std::size_t l = 0; l <= d; ++l) out.precisions.push_back(random_precision(g));
    return out;
  }

  /// One random edit of `parent` that yields a different genome of the space
  /// (Real et al. 2019 mutate one decision): change one hidden width, change
  /// one layer's precision, add a hidden layer (a random width, inserted at a
  /// random position), or remove one. Edits that are impossible in the space
  /// (e.g. adding a layer at max depth) are redrawn; a space with a single
  /// genome returns the parent.
  [[nodiscard]] genome mutate(const genome& parent, tinylarge::rng& g) const {
    if (size() <= 1.0) return parent;
    for (;;) {
      genome c = parent;
      switch (g.uniform_int(4)) {
        case 0: {  // width
          if (widths.size() < 2) continue;
          const std::size_t l = g.uniform_int(static_cast<std::uint32_t>(c.depth()));
          c.widths[l] = random_width(g);
          break;
        }
        case 1: {  // precision
          if (precisions.size() < 2) continue;
          const std::size_t l = g.uniform_int(static_cast<std::uint32_t>(c.precisions.size()));
          c.precisions[l] = random_precision(g);
          break;
        }
        case 2: {  // insert a hidden layer
          if (c.depth() >= max_depth) continue;
          const std::size_t at = g.uniform_int(static_cast<std::uint32_t>(c.depth() + 1));
          c.widths.insert(c.widths.begin() + static_cast<std::ptrdiff_t>(at), random_width(g));
          c.precisions.insert(c.precisions.begin() + static_cast<std::ptrdiff_t>(at), random_precision(g));
          break;
        }
        default: {  // remove a hidden layer
          if (c.depth() <= min_depth) continue;
          const std::size_t at = g.uniform_int(static_cast<std::uint32_t>(c.depth()));
          c.widths.erase(c.widths.begin() + static_cast<std::ptrdiff_t>(at));
          c.precisions.erase(c.precisions.begin() + static_cast<std::ptrdiff_t>(at));
          break;
        }
      }
      if (!(c == parent)) return c;
    }
  }

  /// Uniform crossover: the child's depth is one parent's (chosen at random);
  /// each hidden layer and the head take width and precision from either
  /// parent's layer at the same position when it has one.
  [[nodiscard]] genome crossover(const genome& a, const genome& b, tinylarge::rng& g) const {
    const genome& base = g.uniform_int(2) == 0 ? a : b;
    const genome& other = &base == &a ? b : a;
    genome c = base;
    for (std::size_t l = 0; l < c.depth(); ++l) {
      if (l < other.depth() && g.uniform_int(2) == 1) {
        c.widths[l] = other.widths[l];
        c.precisions[l] = other.precisions[l];
      }
    }
    if (g.uniform_int(2) == 1) c.precisions.back() = other.precisions.back();
    return c;
  }

 private:
  bool allowed_width(std::size_t w) const noexcept {
    for (std::size_t v : widths)
      if (v == w) return true;
    return false;
  }
  bool allowed_precision(layer_precision p) const noexcept {
    for (layer_precision v : precisions)
      if (v == p) return true;
    return false;
  }
  std::size_t random_width(tinylarge::rng& g) const {
    return widths[g.uniform_int(static_cast<std::uint32_t>(widths.size()))];
  }
  layer_precision random_precision(tinylarge::rng& g) const {
    return precisions[g.uniform_int(static_cast<std::uint32_t>(precisions.size()))];
  }
};

}  // namespace tinylarge::nas
