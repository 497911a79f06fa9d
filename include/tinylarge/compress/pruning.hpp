/// @file compress/pruning.hpp
/// @brief Pruning of weight matrices: unstructured magnitude (per layer and global),
///        structured (rows / output neurons by L1 or L2 norm), N:M (2:4); masks, schedules
///        and the pruning policies of the compression axis.
///
/// All functions work on raw row-major out×in fp32 arrays so that any layer can call them.
/// A *mask* has one byte per weight: 1 = kept, 0 = pruned. Fine-tuning after pruning
/// (Han et al. 2015, "Learning both Weights and Connections for Efficient Neural
/// Networks"; Deep Compression §2) keeps the mask and re-applies it after every optimiser
/// step with `apply_mask`, so pruned weights stay exactly zero.
///
/// Counts are exact: pruning n weights to sparsity s removes exactly
/// `prune_count(n, s)` = round(s·n) of them, chosen by rank (|w| ascending, ties broken by
/// position), never by a threshold comparison that could remove more or fewer on ties.
///
/// Host profile (uses the heap for the ranking); the compressed forms are consumed by the
/// freestanding kernels in compress/kernels.hpp.
#pragma once

#include <algorithm>
#include <cmath>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <numeric>
#include <span>
#include <vector>

#include "../core/error.hpp"
#include "concepts.hpp"

namespace tinylarge::compress {

// ---------------------------------------------------------------------------
// Masks
// ---------------------------------------------------------------------------

/// Number of weights pruned when `n` weights are pruned to sparsity `s` ∈ [0, 1]:
/// round-half-up(s·n), computed in double so that it is exact for n < 2^52.
inline std::size_t prune_count(std::size_t n, double sparsity) {
  TINYLARGE_REQUIRE(sparsity >= 0.0 && sparsity <= 1.0, errc::invalid_argument,
                    "pruning: sparsity must be in [0, 1]");
  const double k = std::floor(sparsity * static_cast<double>(n) + 0.5);
  return std::min(n, static_cast<std::size_t>(k));
}

/// w[i] = 0 where mask[i] == 0 (a select, so a NaN gradient at a pruned position is cleared
/// too). Use after every optimiser step of a fine-tuning with a mask, on weights and, if
/// wanted, on their gradients.
inline void apply_mask(std::span<float> w, std::span<const std::uint8_t> mask) {
  TINYLARGE_REQUIRE(w.size() == mask.size(), errc::shape_mismatch,
                    "apply_mask: the mask must have one entry per weight");
  for (std::size_t i = 0; i < w.size(); ++i)
    if (mask[i] == 0) w[i] = 0.0f;
}

/// Fraction of zero entries of a mask.
inline double mask_sparsity(std::span<const std::uint8_t> mask) noexcept {
  if (mask.empty()) return 0.0;
  std::size_t zeros = 0;
  for (auto m : mask) zeros += (m == 0);
  return static_cast<double>(zeros) / static_cast<double>(mask.size());
}

namespace detail {
inline void require_finite(std::span<const float> w, [[maybe_unused]] const char* msg) {
  for (float v : w) TINYLARGE_REQUIRE(std::isfinite(v), errc::non_finite, msg);
}
}  // namespace detail

// ---------------------------------------------------------------------------
// Unstructured magnitude pruning
// ---------------------------------------------------------------------------

/// Mask of per-layer magnitude pruning: the `prune_count(n, sparsity)` weights of smallest
/// |w| (ties: lower position first) get 0, all others 1.
/// @return the pruning threshold: the largest pruned magnitude (0 when nothing is pruned).
inline float magnitude_mask(std::span<const float> w, double sparsity, std::span<std::uint8_t> mask) {
  TINYLARGE_REQUIRE(w.size() == mask.size(), errc::shape_mismatch,
                    "magnitude_mask: the mask must have one entry per weight");
  detail::require_finite(w, "magnitude_mask: weights must be finite");
  const std::size_t k = prune_count(w.size(), sparsity);
  std::fill(mask.begin(), mask.end(), std::uint8_t{1});
  if (k == 0) return 0.0f;
  TINYLARGE_REQUIRE(w.size() <= 0xFFFFFFFFu, errc::too_large, "magnitude_mask: more than 2^32 weights");
  std::vector<std::uint32_t> order(w.size());
  std::iota(order.begin(), order.end(), std::uint32_t{0});
  const auto less = [&](std::uint32_t a, std::uint32_t b) {
    const float fa = std::fabs(w[a]), fb = std::fabs(w[b]);
    return fa < fb || (fa == fb && a < b);
  };
  std::nth_element(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(k - 1), order.end(), less);
  float threshold = 0.0f;
  for (std::size_t i = 0; i < k; ++i) {
    mask[order[i]] = 0;
    threshold = std::max(threshold, std::fabs(w[order[i]]));
  }
  return threshold;
}

/// Per-layer magnitude pruning in place: computes the mask and zeroes the pruned weights.
/// @return the threshold (see `magnitude_mask`).
inline float prune_by_magnitude(std::span<float> w, double sparsity, std::span<std::uint8_t> mask) {
  const float t = magnitude_mask(std::span<const float>(w), sparsity, mask);
  apply_mask(w, mask);
  return t;
}

/// Global magnitude pruning: one ranking across several arrays (layers), so that exactly
/// `prune_count(Σ nᵢ, sparsity)` weights are pruned in total and layers with many small
/// weights lose more (as in Deep Compression's per-network threshold). Ties: lower layer,
/// then lower position first. `masks[i]` must have the size of `layers[i]`.
/// @return the global threshold (largest pruned magnitude).
inline float global_magnitude_mask(std::span<const std::span<const float>> layers, double sparsity,
                                   std::span<const std::span<std::uint8_t>> masks) {
  TINYLARGE_REQUIRE(layers.size() == masks.size(), errc::shape_mismatch,
                    "global_magnitude_mask: one mask per layer is required");
  std::size_t total = 0;
  for (std::size_t l = 0; l < layers.size(); ++l) {
    TINYLARGE_REQUIRE(layers[l].size() == masks[l].size(), errc::shape_mismatch,
                      "global_magnitude_mask: a mask must have one entry per weight of its layer");
    detail::require_finite(layers[l], "global_magnitude_mask: weights must be finite");
    std::fill(masks[l].begin(), masks[l].end(), std::uint8_t{1});
    total += layers[l].size();
  }
  const std::size_t k = prune_count(total, sparsity);
  if (k == 0) return 0.0f;
  // (magnitude, layer, position) packed as (float, 64-bit global position).
  struct entry {
    float mag;
    std::uint64_t pos;  // layer << 40 | index (layers < 2^24, weights per layer < 2^40)
  };
  TINYLARGE_REQUIRE(layers.size() < (std::size_t{1} << 24), errc::too_large,
                    "global_magnitude_mask: too many layers");
  std::vector<entry> all;
  all.reserve(total);
  for (std::size_t l = 0; l < layers.size(); ++l)
    for (std::size_t i = 0; i < layers[l].size(); ++i)
      all.push_back({std::fabs(layers[l][i]), (std::uint64_t{l} << 40) | std::uint64_t{i}});
  std::nth_element(all.begin(), all.begin() + static_cast<std::ptrdiff_t>(k - 1), all.end(),
                   [](const entry& a, const entry& b) { return a.mag < b.mag || (a.mag == b.mag && a.pos < b.pos); });
  float threshold = 0.0f;
  const std::uint64_t low = (std::uint64_t{1} << 40) - 1;
  for (std::size_t i = 0; i < k; ++i) {
    masks[all[i].pos >> 40][all[i].pos & low] = 0;
    threshold = std::max(threshold, all[i].mag);
  }
  return threshold;
}

// ---------------------------------------------------------------------------
// Structured pruning (rows = output neurons)
// ---------------------------------------------------------------------------

/// The norm that ranks rows in structured pruning.
enum class row_norm : std::uint8_t {
  l1,  ///< Σ|w| (Li et al. 2017, "Pruning Filters for Efficient ConvNets")
  l2,  ///< √Σw²
};

/// Norm of every row of a row-major rows×cols matrix (in double).
inline std::vector<double> row_norms(matrix_ref<const float> w, row_norm norm) {
  std::vector<double> n(w.rows, 0.0);
  for (std::size_t r = 0; r < w.rows; ++r) {
    const float* p = w.row(r);
    double acc = 0.0;
    if (norm == row_norm::l1)
      for (std::size_t c = 0; c < w.cols; ++c) acc += std::fabs(static_cast<double>(p[c]));
    else
      for (std::size_t c = 0; c < w.cols; ++c) acc += static_cast<double>(p[c]) * p[c];
    n[r] = norm == row_norm::l1 ? acc : std::sqrt(acc);
  }
  return n;
}

/// Structured pruning: the `keep` rows of largest norm (ties: lower row first), returned
/// in ascending order so that the layer can be shrunk with `gather_rows` and the next
/// layer's inputs with `gather_columns`.
inline std::vector<std::size_t> structured_keep_rows(matrix_ref<const float> w, std::size_t keep,
                                                     row_norm norm = row_norm::l2) {
  TINYLARGE_REQUIRE(keep >= 1 && keep <= w.rows, errc::invalid_argument,
                    "structured_keep_rows: keep must be in [1, rows]");
  detail::require_finite(std::span<const float>(w.data, w.size()), "structured_keep_rows: weights must be finite");
  const std::vector<double> n = row_norms(w, norm);
  std::vector<std::size_t> order(w.rows);
  std::iota(order.begin(), order.end(), std::size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return n[a] > n[b]; });
  order.resize(keep);
  std::sort(order.begin(), order.end());
  return order;
}

/// out (kept.size()×cols) = the rows `kept` of w (rows×cols).
inline void gather_rows(matrix_ref<const float> w, std::span<const std::size_t> kept, float* out) {
  for (std::size_t i = 0; i < kept.size(); ++i) {
    TINYLARGE_REQUIRE(kept[i] < w.rows, errc::invalid_argument, "gather_rows: row index out of range");
    std::copy_n(w.row(kept[i]), w.cols, out + i * w.cols);
  }
}

/// out (rows×kept.size()) = the columns `kept` of w (rows×cols): shrinks the inputs of the
/// layer that follows a structurally pruned one.
inline void gather_columns(matrix_ref<const float> w, std::span<const std::size_t> kept, float* out) {
  for (std::size_t c : kept)
    TINYLARGE_REQUIRE(c < w.cols, errc::invalid_argument, "gather_columns: column index out of range");
  for (std::size_t r = 0; r < w.rows; ++r)
    for (std::size_t i = 0; i < kept.size(); ++i) out[r * kept.size() + i] = w.row(r)[kept[i]];
}

/// Mask (rows×cols) that keeps exactly the rows `kept`.
inline void rows_mask(std::size_t rows, std::size_t cols, std::span<const std::size_t> kept,
                      std::span<std::uint8_t> mask) {
  TINYLARGE_REQUIRE(mask.size() == rows * cols, errc::shape_mismatch, "rows_mask: mask size must be rows*cols");
  std::fill(mask.begin(), mask.end(), std::uint8_t{0});
  for (std::size_t r : kept) {
    TINYLARGE_REQUIRE(r < rows, errc::invalid_argument, "rows_mask: row index out of range");
    std::fill_n(mask.begin() + static_cast<std::ptrdiff_t>(r * cols), cols, std::uint8_t{1});
  }
}

// ---------------------------------------------------------------------------
// N:M pruning
// ---------------------------------------------------------------------------

/// N:M mask along the input dimension: in every group of M consecutive inputs of a row, the
/// N of largest |w| are kept (ties: lower position first); 2:4 is NVIDIA's Ampere sparse
/// tensor-core format (Mishra et al. 2021, "Accelerating Sparse Deep Neural Networks").
/// `cols` must be a multiple of M.
inline void nm_mask(matrix_ref<const float> w, std::size_t n, std::size_t m, std::span<std::uint8_t> mask) {
  TINYLARGE_REQUIRE(m >= 1 && m <= 64 && n <= m, errc::invalid_argument, "nm_mask: need 0 <= N <= M <= 64");
  TINYLARGE_REQUIRE(w.cols % m == 0, errc::shape_mismatch,
                    "nm_mask: the input dimension (cols) must be a multiple of M");
  TINYLARGE_REQUIRE(mask.size() == w.size(), errc::shape_mismatch, "nm_mask: mask size must be rows*cols");
  detail::require_finite(std::span<const float>(w.data, w.size()), "nm_mask: weights must be finite");
  std::uint8_t idx[64];
  for (std::size_t r = 0; r < w.rows; ++r) {
    const float* p = w.row(r);
    for (std::size_t g = 0; g < w.cols; g += m) {
      for (std::size_t j = 0; j < m; ++j) idx[j] = static_cast<std::uint8_t>(j);
      // Partial selection sort of the group by |w| descending (M is small).
      for (std::size_t a = 0; a < n; ++a) {
        std::size_t best = a;
        for (std::size_t b = a + 1; b < m; ++b) {
          const float fb = std::fabs(p[g + idx[b]]), fbest = std::fabs(p[g + idx[best]]);
          if (fb > fbest || (fb == fbest && idx[b] < idx[best])) best = b;
        }
        std::swap(idx[a], idx[best]);
      }
      std::uint8_t* mk = mask.data() + r * w.cols + g;
      for (std::size_t j = 0; j < m; ++j) mk[j] = 0;
      for (std::size_t a = 0; a < n; ++a) mk[idx[a]] = 1;
    }
  }
}

// ---------------------------------------------------------------------------
// Schedules (TensorFlow Model Optimization semantics)
// ---------------------------------------------------------------------------

/// A pruning schedule: whether to (re)compute the mask at a training step, and the sparsity
/// to prune to then. `target()` is the sparsity at the end of the schedule.
template <class S>
concept pruning_schedule = requires(const S& s, std::int64_t step) {
  { s.should_prune(step) } -> std::convertible_to<bool>;
  { s.sparsity(step) } -> std::convertible_to<double>;
  { s.target() } -> std::convertible_to<double>;
};

namespace detail {
/// TFMOT `_should_prune_in_step`: begin ≤ step, (end = −1 or step ≤ end), and
/// (step − begin) divisible by frequency.
constexpr bool should_prune_in_step(std::int64_t step, std::int64_t begin, std::int64_t end,
                                    std::int64_t frequency) noexcept {
  const bool in_range = step >= begin && (end == -1 || step <= end);
  return in_range && frequency > 0 && (step - begin) % frequency == 0;
}
}  // namespace detail

/// Constant sparsity (TFMOT `ConstantSparsity`): prune to `target_sparsity` at steps
/// begin_step, begin_step + frequency, … up to end_step (−1: no end).
struct constant_sparsity {
  double target_sparsity = 0.5;
  std::int64_t begin_step = 0;
  std::int64_t end_step = -1;
  std::int64_t frequency = 100;

  constexpr bool should_prune(std::int64_t step) const noexcept {
    return detail::should_prune_in_step(step, begin_step, end_step, frequency);
  }
  constexpr double sparsity(std::int64_t) const noexcept { return target_sparsity; }
  constexpr double target() const noexcept { return target_sparsity; }
};

/// Polynomial decay (TFMOT `PolynomialDecay`, after Zhu & Gupta 2017, "To prune, or not to
/// prune"): sparsity rises from s_i to s_f between begin_step t0 and end_step t1,
///
///   s_t = s_f + (s_i − s_f)·(1 − (t − t0)/(t1 − t0))^p,   with t clamped to [t0, t1],
///
/// and the mask is recomputed at t0, t0 + frequency, … ≤ t1. Requires t1 > t0.
struct polynomial_decay {
  double initial_sparsity = 0.0;
  double final_sparsity = 0.9;
  std::int64_t begin_step = 0;
  std::int64_t end_step = 1000;
  double power = 3.0;
  std::int64_t frequency = 100;

  constexpr bool should_prune(std::int64_t step) const noexcept {
    return detail::should_prune_in_step(step, begin_step, end_step, frequency);
  }
  double sparsity(std::int64_t step) const {
    TINYLARGE_REQUIRE(end_step > begin_step, errc::invalid_argument,
                      "polynomial_decay: end_step must be greater than begin_step");
    const std::int64_t t = std::clamp(step, begin_step, end_step);
    const double p = static_cast<double>(t - begin_step) / static_cast<double>(end_step - begin_step);
    return final_sparsity + (initial_sparsity - final_sparsity) * std::pow(1.0 - p, power);
  }
  constexpr double target() const noexcept { return final_sparsity; }
};

static_assert(pruning_schedule<constant_sparsity>);
static_assert(pruning_schedule<polynomial_decay>);

// ---------------------------------------------------------------------------
// Policies
// ---------------------------------------------------------------------------

/// Unstructured magnitude pruning (Han et al. 2015; Deep Compression stage 1).
/// `apply` prunes to `schedule.target()`; `step` follows the schedule during training.
/// @tparam Schedule a `pruning_schedule` (`constant_sparsity`, `polynomial_decay`)
template <pruning_schedule Schedule = constant_sparsity>
struct magnitude_prune {
  Schedule schedule{};

  static constexpr const char* name() noexcept { return "magnitude_prune"; }
  static constexpr stage_kind kind = stage_kind::pruning;
  static constexpr representation produces = representation::sparse;
  static constexpr bool lossless = false;
  static constexpr bool needs_mask = true;
  static constexpr bool emits_symbols = true;  // column gaps

  /// The mask of one layer (empty until the first prune).
  template <class T>
  struct state {
    std::vector<std::uint8_t> mask;
  };

  /// Prune to the schedule's final sparsity.
  void apply(state<float>& s, matrix_ref<float> w) const {
    s.mask.resize(w.size());
    prune_by_magnitude(std::span<float>(w.data, w.size()), schedule.target(), s.mask);
  }

  /// One training step of gradual pruning: recompute the mask when the schedule says so
  /// (pruned weights are zero, so they stay pruned), then re-apply the mask.
  void step(state<float>& s, matrix_ref<float> w, std::int64_t training_step) const {
    if (s.mask.size() != w.size()) s.mask.assign(w.size(), std::uint8_t{1});
    if (schedule.should_prune(training_step))
      magnitude_mask(std::span<const float>(w.data, w.size()), schedule.sparsity(training_step), s.mask);
    apply_mask(std::span<float>(w.data, w.size()), s.mask);
  }
};

/// Structured pruning of whole rows (output neurons) by norm. `apply` zeroes the removed
/// rows in the fp32 form and records the kept rows; an exporter shrinks the layer with
/// `gather_rows` (and the next layer with `gather_columns`).
/// @tparam Norm the row norm that ranks neurons
template <row_norm Norm = row_norm::l2>
struct structured_prune {
  double sparsity = 0.5;  ///< fraction of rows removed; at least one row is always kept

  static constexpr const char* name() noexcept { return "structured_prune"; }
  static constexpr stage_kind kind = stage_kind::pruning;
  static constexpr representation produces = representation::dense_shrunk;
  static constexpr bool lossless = false;
  static constexpr bool needs_mask = true;
  static constexpr bool emits_symbols = false;

  template <class T>
  struct state {
    std::vector<std::size_t> kept_rows;
    std::vector<std::uint8_t> mask;
  };

  void apply(state<float>& s, matrix_ref<float> w) const {
    const std::size_t removed = std::min(prune_count(w.rows, sparsity), w.rows - 1);
    s.kept_rows = structured_keep_rows({w.data, w.rows, w.cols}, w.rows - removed, Norm);
    s.mask.resize(w.size());
    rows_mask(w.rows, w.cols, s.kept_rows, s.mask);
    apply_mask(std::span<float>(w.data, w.size()), s.mask);
  }
};

/// N:M pruning along the input dimension (2:4 by default).
/// @tparam N weights kept per group
/// @tparam M group size (consecutive inputs); the layer's input count must be a multiple
template <std::size_t N = 2, std::size_t M = 4>
struct nm_prune {
  static_assert(M >= 1 && M <= 64 && N >= 1 && N < M, "nm_prune<N, M>: need 1 <= N < M <= 64");

  static constexpr const char* name() noexcept { return "nm_prune"; }
  static constexpr stage_kind kind = stage_kind::pruning;
  static constexpr representation produces = representation::sparse;
  static constexpr bool lossless = false;
  static constexpr bool needs_mask = true;
  static constexpr bool emits_symbols = true;

  template <class T>
  struct state {
    std::vector<std::uint8_t> mask;
  };

  void apply(state<float>& s, matrix_ref<float> w) const {
    s.mask.resize(w.size());
    nm_mask({w.data, w.rows, w.cols}, N, M, s.mask);
    apply_mask(std::span<float>(w.data, w.size()), s.mask);
  }
};

static_assert(compression_policy<magnitude_prune<>>);
static_assert(compression_policy<magnitude_prune<polynomial_decay>>);
static_assert(compression_policy<structured_prune<>>);
static_assert(compression_policy<nm_prune<>>);

}  // namespace tinylarge::compress
