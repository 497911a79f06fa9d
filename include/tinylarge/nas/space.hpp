/// @file nas/space.hpp
/// @brief The search space of the architecture search: a family of MLPs
///        (depth, width per hidden layer, precision and compression level per
///        layer) encoded as a genome, with uniform sampling, mutation and
///        uniform crossover.
///
/// A genome of `mlp_space` is the run-time description of the model
///
///     sequential<dense<inputs, w₁>, relu, …, dense<w_{d−1}, w_d>, relu, dense<w_d, outputs>>
///
/// with d ∈ [min_depth, max_depth] hidden layers, each width wᵢ taken from
/// `mlp_space::widths`, and a precision (`int8` or `fp32`) and a compression
/// level (magnitude-pruning sparsity in percent, from `mlp_space::sparsities`)
/// for each of the d + 1 dense layers (the last one is the classifier head).
/// `emit.hpp` writes the compile-time type of a genome.
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
  /// Compression level of each dense layer (size d + 1, or empty = every
  /// layer dense): the percentage of its weights (not biases) pruned by
  /// magnitude (`compress::prune_by_magnitude`, per layer) when the
  /// sub-network is evaluated and exported; 0 = dense.
  std::vector<std::uint8_t> sparsities{};
  /// Cut point for split deployment: the device runs the first `cut` hidden
  /// layers (dense + relu) and sends their output (the smashed data) to a
  /// server that runs the rest; 0 = no split (the device runs the whole
  /// model). In [0, depth].
  std::size_t cut = 0;

  /// Number of hidden layers.
  [[nodiscard]] std::size_t depth() const noexcept { return widths.size(); }
  /// Sparsity of dense layer l in percent (0 when `sparsities` is empty).
  [[nodiscard]] unsigned sparsity(std::size_t l) const noexcept { return l < sparsities.size() ? sparsities[l] : 0u; }
  /// `sparsities` made explicit: size d + 1 (zeros when it was empty).
  void normalize() {
    if (sparsities.empty()) sparsities.assign(precisions.size(), std::uint8_t{0});
  }
  /// A short unique text for the genome, e.g. "256i75-64f|i/c1" (width,
  /// precision and, when not 0, sparsity in percent per hidden layer, then
  /// the head's precision and sparsity, then "/c" and the cut when split).
  [[nodiscard]] std::string key() const {
    std::string s;
    for (std::size_t l = 0; l < widths.size(); ++l) {
      if (l > 0) s += '-';
      s += std::to_string(widths[l]);
      s += precisions[l] == layer_precision::int8 ? 'i' : 'f';
      if (sparsity(l) != 0) s += std::to_string(sparsity(l));
    }
    s += '|';
    s += precisions.empty() ? '?' : (precisions.back() == layer_precision::int8 ? 'i' : 'f');
    if (!precisions.empty() && sparsity(precisions.size() - 1) != 0) s += std::to_string(sparsity(precisions.size() - 1));
    if (cut != 0) s += "/c" + std::to_string(cut);
    return s;
  }
  /// Equal depth, widths, precisions, sparsities (an empty `sparsities`
  /// equals all zeros) and cut.
  friend bool operator==(const genome& a, const genome& b) {
    if (a.widths != b.widths || a.precisions != b.precisions || a.cut != b.cut) return false;
    for (std::size_t l = 0; l < a.precisions.size(); ++l)
      if (a.sparsity(l) != b.sparsity(l)) return false;
    return true;
  }
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
  /// Compression levels a layer may take: magnitude-pruning sparsity in
  /// percent, each in [0, 99]; {0} (the default) searches dense models only,
  /// e.g. {0, 50, 75, 90} adds pruning to the search.
  std::vector<std::uint8_t> sparsities{0};
  /// Whether the cut point for split deployment is searched (`genome::cut`
  /// in [0, depth]); false (the default): every genome runs whole on the device.
  bool split = false;

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
    TINYLARGE_REQUIRE(!sparsities.empty(), errc::invalid_argument, "nas::mlp_space: sparsities must be non-empty");
    for (std::uint8_t v : sparsities)
      TINYLARGE_REQUIRE(v <= 99, errc::invalid_argument, "nas::mlp_space: a sparsity must be a percentage in [0, 99]");
  }
  /// Whether `g` belongs to the space (depth, widths, precisions and
  /// sparsities allowed; an empty `g.sparsities` means 0 everywhere).
  [[nodiscard]] bool contains(const genome& g) const {
    if (g.depth() < min_depth || g.depth() > max_depth || g.precisions.size() != g.depth() + 1) return false;
    if (!g.sparsities.empty() && g.sparsities.size() != g.precisions.size()) return false;
    for (std::size_t w : g.widths)
      if (!allowed_width(w)) return false;
    for (layer_precision p : g.precisions)
      if (!allowed_precision(p)) return false;
    for (std::size_t l = 0; l < g.precisions.size(); ++l)
      if (!allowed_sparsity(g.sparsity(l))) return false;
    return g.cut <= (split ? g.depth() : 0);
  }
  /// Number of genomes in the space: Σ_d |widths|^d · (|precisions|·|sparsities|)^(d+1)
  /// (· (d + 1) cut points when `split`).
  [[nodiscard]] double size() const noexcept {
    double total = 0;
    for (std::size_t d = min_depth; d <= max_depth; ++d) {
      double n = 1;
      for (std::size_t l = 0; l < d; ++l) n *= static_cast<double>(widths.size());
      for (std::size_t l = 0; l <= d; ++l) n *= static_cast<double>(precisions.size() * sparsities.size());
      if (split) n *= static_cast<double>(d + 1);
      total += n;
    }
    return total;
  }
  /// The largest genome: max depth, max width everywhere, the first precision
  /// of `precisions` and the first sparsity of `sparsities` everywhere.
  [[nodiscard]] genome largest() const {
    return {std::vector<std::size_t>(max_depth, max_width()), std::vector<layer_precision>(max_depth + 1, precisions.front()),
            std::vector<std::uint8_t>(max_depth + 1, sparsities.front())};
  }
  /// The smallest genome: min depth, min width everywhere, the first precision and sparsity.
  [[nodiscard]] genome smallest() const {
    return {std::vector<std::size_t>(min_depth, min_width()), std::vector<layer_precision>(min_depth + 1, precisions.front()),
            std::vector<std::uint8_t>(min_depth + 1, sparsities.front())};
  }

  /// A genome drawn uniformly per decision: depth uniform in
  /// [min_depth, max_depth], then each width, precision and sparsity uniform,
  /// then (when `split`) the cut uniform in [0, d] (no draw for a decision
  /// with a single option, so a space with `sparsities == {0}` and no split
  /// draws exactly what it drew before sparsities and cuts existed).
  [[nodiscard]] genome sample(tinylarge::rng& g) const {
    genome out;
    const std::size_t d = min_depth + g.uniform_int(static_cast<std::uint32_t>(max_depth - min_depth + 1));
    for (std::size_t l = 0; l < d; ++l) out.widths.push_back(random_width(g));
    for (std::size_t l = 0; l <= d; ++l) out.precisions.push_back(random_precision(g));
    for (std::size_t l = 0; l <= d; ++l) out.sparsities.push_back(random_sparsity(g));
    if (split) out.cut = g.uniform_int(static_cast<std::uint32_t>(d + 1));
    return out;
  }

  /// One random edit of `parent` that yields a different genome of the space
  /// (Real et al. 2019 mutate one decision): change one hidden width, change
  /// one layer's precision, add a hidden layer (a random width, precision and
  /// sparsity, inserted at a random position; the cut keeps its count of
  /// device layers), remove one (a cut beyond the new depth moves to it), or
  /// (when the space has several sparsities) change one layer's sparsity, or
  /// (when `split`) move the cut. Edits that
  /// are impossible in the space (e.g. adding a layer at max depth) are
  /// redrawn; a space with a single genome returns the parent.
  [[nodiscard]] genome mutate(const genome& parent, tinylarge::rng& g) const {
    if (size() <= 1.0) return parent;
    for (;;) {
      genome c = parent;
      c.normalize();
      const std::uint32_t edits = 4u + (sparsities.size() > 1 ? 1u : 0u) + (split ? 1u : 0u);
      std::uint32_t edit = g.uniform_int(edits);
      if (edit == 4 && sparsities.size() < 2) edit = 5;
      switch (edit) {
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
          c.sparsities.insert(c.sparsities.begin() + static_cast<std::ptrdiff_t>(at), random_sparsity(g));
          break;
        }
        case 3: {  // remove a hidden layer
          if (c.depth() <= min_depth) continue;
          const std::size_t at = g.uniform_int(static_cast<std::uint32_t>(c.depth()));
          c.widths.erase(c.widths.begin() + static_cast<std::ptrdiff_t>(at));
          c.precisions.erase(c.precisions.begin() + static_cast<std::ptrdiff_t>(at));
          c.sparsities.erase(c.sparsities.begin() + static_cast<std::ptrdiff_t>(at));
          c.cut = c.cut > c.depth() ? c.depth() : c.cut;
          break;
        }
        case 4: {  // sparsity (only drawn when the space has several)
          const std::size_t l = g.uniform_int(static_cast<std::uint32_t>(c.sparsities.size()));
          c.sparsities[l] = random_sparsity(g);
          break;
        }
        default: {  // cut (only drawn when split)
          c.cut = g.uniform_int(static_cast<std::uint32_t>(c.depth() + 1));
          break;
        }
      }
      if (!(c == parent)) return c;
    }
  }

  /// Uniform crossover: the child's depth is one parent's (chosen at random);
  /// each hidden layer and the head take width, precision and sparsity from
  /// either parent's layer at the same position when it has one; when
  /// `split`, the cut is either parent's (at most the child's depth).
  [[nodiscard]] genome crossover(const genome& a, const genome& b, tinylarge::rng& g) const {
    const genome& base = g.uniform_int(2) == 0 ? a : b;
    const genome& other = &base == &a ? b : a;
    genome c = base;
    c.normalize();
    for (std::size_t l = 0; l < c.depth(); ++l) {
      if (l < other.depth() && g.uniform_int(2) == 1) {
        c.widths[l] = other.widths[l];
        c.precisions[l] = other.precisions[l];
        c.sparsities[l] = static_cast<std::uint8_t>(other.sparsity(l));
      }
    }
    if (g.uniform_int(2) == 1) {
      c.precisions.back() = other.precisions.back();
      c.sparsities.back() = static_cast<std::uint8_t>(other.sparsity(other.precisions.size() - 1));
    }
    if (split && g.uniform_int(2) == 1) c.cut = other.cut > c.depth() ? c.depth() : other.cut;
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
  bool allowed_sparsity(unsigned s) const noexcept {
    for (std::uint8_t v : sparsities)
      if (v == s) return true;
    return false;
  }
  std::uint8_t random_sparsity(tinylarge::rng& g) const {
    return sparsities.size() == 1 ? sparsities.front() : sparsities[g.uniform_int(static_cast<std::uint32_t>(sparsities.size()))];
  }
  std::size_t random_width(tinylarge::rng& g) const {
    return widths[g.uniform_int(static_cast<std::uint32_t>(widths.size()))];
  }
  layer_precision random_precision(tinylarge::rng& g) const {
    return precisions[g.uniform_int(static_cast<std::uint32_t>(precisions.size()))];
  }
};

}  // namespace tinylarge::nas
