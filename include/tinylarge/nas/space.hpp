/// @file nas/space.hpp
/// @brief The search space of the architecture search: a family of MLPs
///        (depth, width per hidden layer, precision and compression level per
///        layer) with an optional convolutional stem (number of conv layers,
///        kernel size, channels and precision per conv layer), encoded as a
///        genome, with uniform sampling, mutation and uniform crossover.
///
/// A genome of `mlp_space` is the run-time description of the model
///
///     sequential<dense<inputs, w₁>, relu, …, dense<w_{d−1}, w_d>, relu, dense<w_d, outputs>>
///
/// with d ∈ [min_depth, max_depth] hidden layers, each width wᵢ taken from
/// `mlp_space::widths`, and a precision (`int8` or `fp32`) and a compression
/// level (magnitude-pruning sparsity in percent, from `mlp_space::sparsities`)
/// for each of the d + 1 dense layers (the last one is the classifier head).
///
/// With `mlp_space::max_convs` > 0 a genome may start with a **convolutional
/// stem** of n ∈ [min_convs, max_convs] conv layers on the H×W×C input image,
/// each `conv2d<channels, kernel, 1, kernel/2>` ("same" zero padding, stride
/// 1), relu and `max_pool2d<2>` (the image halves), then `flatten`; the first
/// dense layer reads the ⌊H/2ⁿ⌋·⌊W/2ⁿ⌋·channels features of the last pool
/// (NHWC order). Kernel sizes come from `conv_kernels` (odd), channels from
/// `conv_channels`, a precision per conv layer from `precisions`; conv layers
/// are not pruned. `max_convs` = 0 (the default) is the MLP space exactly.
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

/// One conv layer of a genome's convolutional stem: `conv2d<channels, kernel,
/// 1, kernel/2>`, relu, `max_pool2d<2>`.
struct conv_gene {
  std::size_t kernel = 3;                            ///< K of the K×K kernel (odd)
  std::size_t channels = 8;                          ///< output channels
  layer_precision precision = layer_precision::int8;  ///< storage and compute precision of the conv layer
  friend bool operator==(const conv_gene&, const conv_gene&) = default;
};

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
  /// The convolutional stem, in order (empty: the MLP reads the input directly).
  std::vector<conv_gene> convs{};

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
  /// the head's precision and sparsity, then "/c" and the cut when split);
  /// a conv stem comes first, each conv layer as "k" kernel "c" channels and
  /// its precision, then "_": "k5c8i-k3c16f_64i|i".
  [[nodiscard]] std::string key() const {
    std::string s;
    for (std::size_t j = 0; j < convs.size(); ++j) {
      if (j > 0) s += '-';
      s += 'k' + std::to_string(convs[j].kernel) + 'c' + std::to_string(convs[j].channels);
      s += convs[j].precision == layer_precision::int8 ? 'i' : 'f';
    }
    if (!convs.empty()) s += '_';
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
  /// Equal conv stem, depth, widths, precisions, sparsities (an empty
  /// `sparsities` equals all zeros) and cut.
  friend bool operator==(const genome& a, const genome& b) {
    if (a.widths != b.widths || a.precisions != b.precisions || a.cut != b.cut || a.convs != b.convs) return false;
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
  /// Geometry of the input image (`inputs` = height·width·channels when the
  /// space has a conv stem); the MLP-only space ignores it.
  std::size_t image_height = 28, image_width = 28, image_channels = 1;
  /// Fewest and most conv layers of the stem; `max_convs` = 0 (the default): no conv stem.
  std::size_t min_convs = 0, max_convs = 0;
  /// Kernel sizes a conv layer may take (odd, "same" padding kernel/2).
  std::vector<std::size_t> conv_kernels{3, 5};
  /// Output channels a conv layer may take (> 0).
  std::vector<std::size_t> conv_channels{4, 8, 16};

  /// The largest allowed kernel (the conv supernet's kernel).
  [[nodiscard]] std::size_t max_kernel() const noexcept {
    std::size_t m = 0;
    for (std::size_t k : conv_kernels) m = k > m ? k : m;
    return m;
  }
  /// The most allowed conv channels (the conv supernet's channels).
  [[nodiscard]] std::size_t max_channels() const noexcept {
    std::size_t m = 0;
    for (std::size_t c : conv_channels) m = c > m ? c : m;
    return m;
  }
  /// Height, width and channels of the output of the first `n` conv layers
  /// (conv, relu, max_pool2d<2> each) of a stem whose last layer has `channels`
  /// channels; n = 0: the input image.
  [[nodiscard]] std::size_t stem_height(std::size_t n) const noexcept { return image_height >> n; }
  [[nodiscard]] std::size_t stem_width(std::size_t n) const noexcept { return image_width >> n; }
  /// Features the first dense layer of `g` reads: `inputs` without a stem,
  /// else the flattened output of the stem's last pool.
  [[nodiscard]] std::size_t dense_inputs(const genome& g) const noexcept {
    if (g.convs.empty()) return inputs;
    return stem_height(g.convs.size()) * stem_width(g.convs.size()) * g.convs.back().channels;
  }

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
    TINYLARGE_REQUIRE(min_convs <= max_convs, errc::invalid_argument, "nas::mlp_space: need min_convs <= max_convs");
    if (max_convs > 0) {
      TINYLARGE_REQUIRE(image_height * image_width * image_channels == inputs && image_channels > 0, errc::invalid_argument,
                        "nas::mlp_space: with a conv stem, inputs must equal image_height·image_width·image_channels");
      TINYLARGE_REQUIRE(!conv_kernels.empty() && !conv_channels.empty(), errc::invalid_argument,
                        "nas::mlp_space: with a conv stem, conv_kernels and conv_channels must be non-empty");
      for (std::size_t k : conv_kernels)
        TINYLARGE_REQUIRE(k % 2 == 1, errc::invalid_argument, "nas::mlp_space: a conv kernel size must be odd (same padding)");
      for (std::size_t c : conv_channels)
        TINYLARGE_REQUIRE(c > 0, errc::invalid_argument, "nas::mlp_space: conv channels must be > 0");
      TINYLARGE_REQUIRE(stem_height(max_convs) >= 1 && stem_width(max_convs) >= 1, errc::invalid_argument,
                        "nas::mlp_space: the image is too small for max_convs poolings by 2");
    }
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
    if (g.convs.size() < min_convs || g.convs.size() > max_convs) return false;
    for (const conv_gene& c : g.convs)
      if (!contains_value(conv_kernels, c.kernel) || !contains_value(conv_channels, c.channels) || !allowed_precision(c.precision))
        return false;
    return g.cut <= (split ? g.depth() : 0);
  }
  /// Number of genomes in the space: Σ_d |widths|^d · (|precisions|·|sparsities|)^(d+1)
  /// (· (d + 1) cut points when `split`), times the number of stems
  /// Σ_{n = min_convs}^{max_convs} (|conv_kernels|·|conv_channels|·|precisions|)^n.
  [[nodiscard]] double size() const noexcept {
    double stems = 0;
    for (std::size_t n = min_convs; n <= max_convs; ++n) {
      double m = 1;
      for (std::size_t j = 0; j < n; ++j) m *= static_cast<double>(conv_kernels.size() * conv_channels.size() * precisions.size());
      stems += m;
    }
    return stems * mlp_size();
  }

 private:
  double mlp_size() const noexcept {
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
 public:
  /// The largest genome: max depth, max width everywhere, the first precision
  /// of `precisions` and the first sparsity of `sparsities` everywhere; a
  /// stem of `max_convs` layers of the largest kernel and channels.
  [[nodiscard]] genome largest() const {
    genome g{std::vector<std::size_t>(max_depth, max_width()), std::vector<layer_precision>(max_depth + 1, precisions.front()),
             std::vector<std::uint8_t>(max_depth + 1, sparsities.front())};
    g.convs.assign(max_convs, conv_gene{max_kernel(), max_channels(), precisions.front()});
    return g;
  }
  /// The smallest genome: min depth, min width everywhere, the first precision and sparsity;
  /// a stem of `min_convs` layers of the smallest kernel and channels.
  [[nodiscard]] genome smallest() const {
    genome g{std::vector<std::size_t>(min_depth, min_width()), std::vector<layer_precision>(min_depth + 1, precisions.front()),
             std::vector<std::uint8_t>(min_depth + 1, sparsities.front())};
    if (min_convs > 0) g.convs.assign(min_convs, conv_gene{min_value(conv_kernels), min_value(conv_channels), precisions.front()});
    return g;
  }

  /// A genome drawn uniformly per decision: depth uniform in
  /// [min_depth, max_depth], then each width, precision and sparsity uniform,
  /// then (when `split`) the cut uniform in [0, d], then (when the space has
  /// a conv stem) the number of conv layers uniform in [min_convs,
  /// max_convs] and each one's kernel, channels and precision uniform (no
  /// draw for a decision with a single option, so a space with
  /// `sparsities == {0}`, no split and no stem draws exactly what it drew
  /// before sparsities, cuts and stems existed).
  [[nodiscard]] genome sample(tinylarge::rng& g) const {
    genome out;
    const std::size_t d = min_depth + g.uniform_int(static_cast<std::uint32_t>(max_depth - min_depth + 1));
    for (std::size_t l = 0; l < d; ++l) out.widths.push_back(random_width(g));
    for (std::size_t l = 0; l <= d; ++l) out.precisions.push_back(random_precision(g));
    for (std::size_t l = 0; l <= d; ++l) out.sparsities.push_back(random_sparsity(g));
    if (split) out.cut = g.uniform_int(static_cast<std::uint32_t>(d + 1));
    if (max_convs > 0) {
      const std::size_t n = min_convs + g.uniform_int(static_cast<std::uint32_t>(max_convs - min_convs + 1));
      for (std::size_t j = 0; j < n; ++j) out.convs.push_back(random_conv(g));
    }
    return out;
  }

  /// One random edit of `parent` that yields a different genome of the space
  /// (Real et al. 2019 mutate one decision): change one hidden width, change
  /// one layer's precision, add a hidden layer (a random width, precision and
  /// sparsity, inserted at a random position; the cut keeps its count of
  /// device layers), remove one (a cut beyond the new depth moves to it), or
  /// (when the space has several sparsities) change one layer's sparsity, or
  /// (when `split`) move the cut, or (with a conv stem) redraw one decision
  /// of one conv layer (kernel, channels or precision), insert a conv layer
  /// (random kernel, channels, precision) or remove one. Edits that
  /// are impossible in the space (e.g. adding a layer at max depth) are
  /// redrawn; a space with a single genome returns the parent.
  [[nodiscard]] genome mutate(const genome& parent, tinylarge::rng& g) const {
    if (size() <= 1.0) return parent;
    // The kinds of edit this space allows (the first four always; an MLP-only space draws as before stems existed).
    std::uint32_t kinds[9] = {0, 1, 2, 3}, edits = 4;
    if (sparsities.size() > 1) kinds[edits++] = 4;
    if (split) kinds[edits++] = 5;
    if (max_convs > 0) {
      kinds[edits++] = 6;
      if (min_convs < max_convs) {
        kinds[edits++] = 7;
        kinds[edits++] = 8;
      }
    }
    for (;;) {
      genome c = parent;
      c.normalize();
      const std::uint32_t edit = kinds[g.uniform_int(edits)];
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
        case 5: {  // cut (only drawn when split)
          c.cut = g.uniform_int(static_cast<std::uint32_t>(c.depth() + 1));
          break;
        }
        case 6: {  // one decision of one conv layer
          if (c.convs.empty()) continue;
          conv_gene& v = c.convs[g.uniform_int(static_cast<std::uint32_t>(c.convs.size()))];
          switch (g.uniform_int(3)) {
            case 0: v.kernel = conv_kernels[g.uniform_int(static_cast<std::uint32_t>(conv_kernels.size()))]; break;
            case 1: v.channels = conv_channels[g.uniform_int(static_cast<std::uint32_t>(conv_channels.size()))]; break;
            default: v.precision = random_precision(g); break;
          }
          break;
        }
        case 7: {  // insert a conv layer
          if (c.convs.size() >= max_convs) continue;
          const std::size_t at = g.uniform_int(static_cast<std::uint32_t>(c.convs.size() + 1));
          c.convs.insert(c.convs.begin() + static_cast<std::ptrdiff_t>(at), random_conv(g));
          break;
        }
        default: {  // remove a conv layer
          if (c.convs.size() <= min_convs) continue;
          c.convs.erase(c.convs.begin() + static_cast<std::ptrdiff_t>(g.uniform_int(static_cast<std::uint32_t>(c.convs.size()))));
          break;
        }
      }
      if (!(c == parent)) return c;
    }
  }

  /// Uniform crossover: the child's depth is one parent's (chosen at random);
  /// each hidden layer and the head take width, precision and sparsity from
  /// either parent's layer at the same position when it has one; when
  /// `split`, the cut is either parent's (at most the child's depth); with a
  /// conv stem, the number of conv layers is one parent's (chosen at random)
  /// and each conv layer is taken whole from either parent's layer at the
  /// same position when it has one.
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
    if (max_convs > 0) {
      const genome& stem = g.uniform_int(2) == 0 ? a : b;
      const genome& stem_other = &stem == &a ? b : a;
      c.convs = stem.convs;
      for (std::size_t j = 0; j < c.convs.size(); ++j)
        if (j < stem_other.convs.size() && g.uniform_int(2) == 1) c.convs[j] = stem_other.convs[j];
    }
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
  static bool contains_value(const std::vector<std::size_t>& v, std::size_t x) noexcept {
    for (std::size_t e : v)
      if (e == x) return true;
    return false;
  }
  static std::size_t min_value(const std::vector<std::size_t>& v) noexcept {
    std::size_t m = v.empty() ? 0 : v.front();
    for (std::size_t e : v) m = e < m ? e : m;
    return m;
  }
  conv_gene random_conv(tinylarge::rng& g) const {
    conv_gene c;
    c.kernel = conv_kernels.size() == 1 ? conv_kernels.front() : conv_kernels[g.uniform_int(static_cast<std::uint32_t>(conv_kernels.size()))];
    c.channels =
        conv_channels.size() == 1 ? conv_channels.front() : conv_channels[g.uniform_int(static_cast<std::uint32_t>(conv_channels.size()))];
    c.precision = precisions.size() == 1 ? precisions.front() : random_precision(g);
    return c;
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
