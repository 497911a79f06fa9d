/// @file aggregate/robust.hpp
/// @brief Byzantine-robust aggregation rules: coordinate-wise median, trimmed
///        mean, Krum / Multi-Krum and Bulyan (Flower semantics).
///
/// Plus two pre-aggregation wrappers for heterogeneous (non-IID) clients:
/// `bucketing<Rule>` (Karimireddy et al. 2022), which averages random buckets
/// of s updates before the rule, and `nearest_neighbor_mixing<Rule>` (NNM,
/// Allouah et al. 2023), which replaces each update by the mean of its n − f
/// nearest updates before the rule.
///
/// All four are *general* policies (see aggregate/policy.hpp): they read the
/// individual updates through `update_set`, block by block, never holding
/// more than one block of decoded coordinates per client. They ignore
/// `num_examples` except Multi-Krum, which (as Flower) example-weights the
/// average of the clients it keeps.
///
/// Cost for n clients and d parameters: median and trimmed mean O(n·d)
/// (selection per coordinate); Krum and Bulyan O(n²·d) for the pairwise
/// distances, computed in one streaming pass.
#pragma once

#include <algorithm>
#include <cmath>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <numeric>
#include <span>
#include <utility>
#include <vector>

#include "../core/config.hpp"
#include "../core/error.hpp"
#include "../core/rng.hpp"
#include "policy.hpp"
#include "update.hpp"
#include "update_set.hpp"

namespace tinylarge {

namespace detail {
/// Median of v[0..n) (reorders v): the middle value for odd n, the mean of
/// the two middle values for even n (numpy.median). Computed in double.
template <std::floating_point T>
double median_inplace(T* v, std::size_t n) noexcept {
  const std::size_t k = n / 2;
  std::nth_element(v, v + k, v + n);
  const double hi = static_cast<double>(v[k]);
  if (n % 2 == 1) return hi;
  const double lo = static_cast<double>(*std::max_element(v, v + k));
  return 0.5 * (lo + hi);
}
}  // namespace detail

// ---------------------------------------------------------------------------
// Coordinate-wise median
// ---------------------------------------------------------------------------

/// Coordinate-wise median (Yin et al., "Byzantine-Robust Distributed Learning:
/// Towards Optimal Statistical Rates", ICML 2018), as Flower's `FedMedian`:
///
///     w_{t+1}[j] = median_i w_i[j]
///
/// unweighted; for even n the mean of the two middle values (numpy.median;
/// here computed in double and rounded once, where numpy rounds a + b first,
/// so the last bit can differ).
struct coordinate_median {
  static constexpr const char* name() noexcept { return "median"; }
  std::size_t min_clients() const noexcept { return 1; }

  template <std::floating_point T>
  struct state {
    state(const coordinate_median& /*policy*/, std::size_t /*dimension*/) noexcept {}
  };

  template <std::floating_point T, update_encoding U>
  status aggregate(state<T>& /*st*/, std::span<T> global, const update_set<U>& set) const {
    const std::size_t n = set.size();
    TINYLARGE_CHECK(n >= min_clients(), errc::invalid_argument, "median: no updates");
    constexpr std::size_t chunk = update_set<U>::template decode_chunk<T>;
    std::vector<T> cols(n * chunk), tmp(chunk);
    for (std::size_t off = 0; off < set.dimension(); off += chunk) {
      const std::size_t len = std::min(chunk, set.dimension() - off);
      set.gather_block(off, len, {}, cols.data(), tmp.data());
      for (std::size_t j = 0; j < len; ++j) global[off + j] = static_cast<T>(detail::median_inplace(cols.data() + j * n, n));
    }
    return status::success();
  }
};

// ---------------------------------------------------------------------------
// Trimmed mean
// ---------------------------------------------------------------------------

/// Coordinate-wise trimmed mean (Yin et al. 2018), as Flower's
/// `FedTrimmedAvg` (scipy.stats.trim_mean):
///
///     k = ⌊β · n⌋,   w_{t+1}[j] = mean of the values ranked k+1 … n−k of {w_i[j]}
///
/// i.e. the k smallest and the k largest values of each coordinate are cut.
/// Unweighted. β is a double so that ⌊β·n⌋ is the same count Python computes.
/// Deliberate difference: Flower accepts k = n/2 (an empty mean, NaN); here
/// at least one value must remain (min_clients grows with β).
struct trimmed_mean {
  double beta = 0.2;  ///< fraction cut from each tail, in [0, 0.5) (Flower's default 0.2)

  static constexpr const char* name() noexcept { return "trimmed_mean"; }
  /// Values cut from each tail for n clients.
  std::size_t cut(std::size_t n) const noexcept { return static_cast<std::size_t>(beta * static_cast<double>(n)); }
  std::size_t min_clients() const noexcept { return 1; }

  template <std::floating_point T>
  struct state {
    state(const trimmed_mean& /*policy*/, std::size_t /*dimension*/) noexcept {}
  };

  template <std::floating_point T, update_encoding U>
  status aggregate(state<T>& /*st*/, std::span<T> global, const update_set<U>& set) const {
    TINYLARGE_CHECK(beta >= 0.0 && beta < 0.5, errc::invalid_argument, "trimmed_mean: beta must be in [0, 0.5)");
    const std::size_t n = set.size();
    const std::size_t k = cut(n);
    TINYLARGE_CHECK(n >= 1 && n > 2 * k, errc::invalid_argument, "trimmed_mean: nothing left after trimming");
    constexpr std::size_t chunk = update_set<U>::template decode_chunk<T>;
    std::vector<T> cols(n * chunk), tmp(chunk);
    const double inv = 1.0 / static_cast<double>(n - 2 * k);
    for (std::size_t off = 0; off < set.dimension(); off += chunk) {
      const std::size_t len = std::min(chunk, set.dimension() - off);
      set.gather_block(off, len, {}, cols.data(), tmp.data());
      for (std::size_t j = 0; j < len; ++j) {
        T* v = cols.data() + j * n;
        if (k > 0) {
          std::nth_element(v, v + k, v + n);              // v[0..k) are the k smallest
          std::nth_element(v + k, v + (n - k - 1), v + n);  // v[n−k..n) are the k largest
        }
        double s = 0.0;
        for (std::size_t i = k; i < n - k; ++i) s += static_cast<double>(v[i]);
        global[off + j] = static_cast<T>(s * inv);
      }
    }
    return status::success();
  }
};

// ---------------------------------------------------------------------------
// Krum and Multi-Krum
// ---------------------------------------------------------------------------

/// Krum scores (Blanchard et al., "Machine Learning with Adversaries:
/// Byzantine Tolerant Gradient Descent", NeurIPS 2017): for each client i of
/// the set `alive` (indices into the n × n matrix `dist` of squared
/// distances), the sum of its squared distances to its
/// max(1, |alive| − f − 2) nearest other clients in `alive` (Flower's
/// `aggregate_krum`). `scores[k]` is the score of `alive[k]`.
inline void krum_scores(std::span<const double> dist, std::size_t n, std::span<const std::size_t> alive,
                        std::size_t num_malicious, std::span<double> scores) {
  TINYLARGE_REQUIRE(dist.size() == n * n && scores.size() == alive.size(), errc::shape_mismatch, "krum_scores: sizes");
  const std::size_t m = alive.size();
  const std::size_t closest = m > num_malicious + 3 ? m - num_malicious - 2 : 1;
  std::vector<double> row;
  row.reserve(m);
  for (std::size_t a = 0; a < m; ++a) {
    row.clear();
    for (std::size_t b = 0; b < m; ++b)
      if (b != a) row.push_back(dist[alive[a] * n + alive[b]]);
    const std::size_t c = std::min(closest, row.size());
    std::partial_sort(row.begin(), row.begin() + static_cast<std::ptrdiff_t>(c), row.end());
    scores[a] = std::accumulate(row.begin(), row.begin() + static_cast<std::ptrdiff_t>(c), 0.0);
  }
}

/// Krum and Multi-Krum (Blanchard et al. 2017; El Mhamdi et al. 2018), as
/// Flower's `Krum`:
///
///     s(i) = Σ_{j ∈ N_i} ‖w_i − w_j‖²,   N_i = the n − f − 2 clients nearest to i
///     Krum:       w_{t+1} = w_{i*},  i* = argmin_i s(i)
///     Multi-Krum: w_{t+1} = Σ_{i ∈ S} n_i w_i / Σ_{i ∈ S} n_i,  S = the m lowest scores
///
/// Ties go to the lower client position. Deliberate difference: Flower runs
/// with any n; here n ≥ 2f + 3 (the paper's condition n > 2f + 2), so the
/// round fails instead of silently losing the guarantee.
struct krum {
  std::size_t num_malicious = 0;  ///< f, the number of Byzantine clients tolerated
  std::size_t num_to_keep = 0;    ///< m; 0 is Krum, m > 0 is Multi-Krum

  static constexpr const char* name() noexcept { return "krum"; }
  std::size_t min_clients() const noexcept { return std::max<std::size_t>(2 * num_malicious + 3, num_to_keep); }

  template <std::floating_point T>
  struct state {
    std::vector<std::size_t> selected;  ///< clients used last round, as indices into round_report::accepted
    state(const krum& /*policy*/, std::size_t /*dimension*/) noexcept {}
  };

  template <std::floating_point T, update_encoding U>
  status aggregate(state<T>& st, std::span<T> global, const update_set<U>& set) const {
    const std::size_t n = set.size();
    TINYLARGE_CHECK(n >= min_clients(), errc::invalid_argument, "krum: fewer than 2f + 3 updates (or than m)");
    std::vector<double> dist(n * n), scores(n);
    set.pairwise_squared_distances(dist);
    std::vector<std::size_t> all(n);
    std::iota(all.begin(), all.end(), std::size_t{0});
    krum_scores(dist, n, all, num_malicious, scores);
    std::vector<std::size_t> order(all);
    std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return scores[a] < scores[b]; });
    const std::size_t keep = num_to_keep == 0 ? 1 : num_to_keep;
    st.selected.assign(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(keep));
    double total = 0.0;
    for (const std::size_t i : st.selected) total += static_cast<double>(set.num_examples(i));
    std::vector<T> coef(keep);
    for (std::size_t k = 0; k < keep; ++k)
      coef[k] = static_cast<T>(num_to_keep == 0 ? 1.0 : static_cast<double>(set.num_examples(st.selected[k])) / total);
    set.weighted_sum(std::span<const T>(coef), global, {}, st.selected);
    return status::success();
  }
};

// ---------------------------------------------------------------------------
// Bulyan
// ---------------------------------------------------------------------------

/// Bulyan (El Mhamdi et al., "The Hidden Vulnerability of Distributed
/// Learning in Byzantium", ICML 2018), as Flower's `Bulyan` with Krum as the
/// first stage:
///
///  1. requires n ≥ 4f + 3;
///  2. selection: θ = n − 2f times, run Krum on the clients not yet selected
///     (scores over the max(1, r − f − 2) nearest of the r remaining) and move
///     the winner to S — the recursive Krum of the paper, which is not the
///     same as keeping the θ best scores of a single Multi-Krum pass;
///  3. aggregation, per coordinate j: with med_j the median of {w_i[j], i ∈ S},
///     w_{t+1}[j] = mean of the β = θ − 2f values of S closest to med_j.
///
/// Unweighted. Ties go to the lower client position.
struct bulyan {
  std::size_t num_malicious = 0;  ///< f

  static constexpr const char* name() noexcept { return "bulyan"; }
  std::size_t min_clients() const noexcept { return 4 * num_malicious + 3; }

  template <std::floating_point T>
  struct state {
    std::vector<std::size_t> selected;  ///< S of the last round (indices into round_report::accepted), in selection order
    state(const bulyan& /*policy*/, std::size_t /*dimension*/) noexcept {}
  };

  /// Step 2 alone: the θ positions selected by recursive Krum.
  static std::vector<std::size_t> select(std::span<const double> dist, std::size_t n, std::size_t f) {
    const std::size_t theta = n - 2 * f;
    std::vector<std::size_t> remaining(n), selected;
    std::iota(remaining.begin(), remaining.end(), std::size_t{0});
    std::vector<double> scores;
    while (selected.size() < theta) {
      scores.assign(remaining.size(), 0.0);
      krum_scores(dist, n, remaining, f, scores);
      const auto best = static_cast<std::size_t>(std::min_element(scores.begin(), scores.end()) - scores.begin());
      selected.push_back(remaining[best]);
      remaining.erase(remaining.begin() + static_cast<std::ptrdiff_t>(best));
    }
    return selected;
  }

  template <std::floating_point T, update_encoding U>
  status aggregate(state<T>& st, std::span<T> global, const update_set<U>& set) const {
    const std::size_t n = set.size();
    TINYLARGE_CHECK(n >= min_clients(), errc::invalid_argument, "bulyan: requires n >= 4f + 3 updates");
    std::vector<double> dist(n * n);
    set.pairwise_squared_distances(dist);
    st.selected = select(dist, n, num_malicious);
    const std::size_t theta = st.selected.size();
    const std::size_t beta = theta - 2 * num_malicious;
    constexpr std::size_t chunk = update_set<U>::template decode_chunk<T>;
    std::vector<T> cols(theta * chunk), tmp(chunk), work(theta);
    std::vector<std::pair<double, std::size_t>> near(theta);
    for (std::size_t off = 0; off < set.dimension(); off += chunk) {
      const std::size_t len = std::min(chunk, set.dimension() - off);
      set.gather_block(off, len, st.selected, cols.data(), tmp.data());
      for (std::size_t j = 0; j < len; ++j) {
        const T* v = cols.data() + j * theta;
        std::copy(v, v + theta, work.begin());
        const double med = detail::median_inplace(work.data(), theta);
        for (std::size_t k = 0; k < theta; ++k) near[k] = {std::fabs(static_cast<double>(v[k]) - med), k};
        std::nth_element(near.begin(), near.begin() + static_cast<std::ptrdiff_t>(beta - 1), near.end());
        double s = 0.0;
        for (std::size_t k = 0; k < beta; ++k) s += static_cast<double>(v[near[k].second]);
        global[off + j] = static_cast<T>(s / static_cast<double>(beta));
      }
    }
    return status::success();
  }
};

// ---------------------------------------------------------------------------
// Bucketing (a wrapper for heterogeneous clients)
// ---------------------------------------------------------------------------

/// Bucketing (Karimireddy, He & Jaggi, "Byzantine-Robust Learning on
/// Heterogeneous Datasets via Bucketing", ICLR 2022, Algorithm 1): each
/// round, the n updates are shuffled at random, split into ⌈n/s⌉ buckets of
/// s (the last may be smaller), each bucket is replaced by the plain mean of
/// its updates, and the robust rule `Inner` aggregates the bucket means.
///
/// Why: a robust rule treats any update far from the others as suspect. With
/// non-IID clients (McMahan's 2-class shards) honest updates are themselves
/// far apart, so median / Krum discard honest information and learn slowly
/// or not at all even without an attack. Averaging s updates first shrinks the
/// honest spread by ~√s while at most f buckets hold an attacker; the rule's
/// `num_malicious` should then be the number of *buckets* that can be
/// contaminated (≤ f), and Krum / Bulyan need ⌈n/s⌉ ≥ 2f + 3 / 4f + 3.
/// Not in Flower. Unweighted (as in the paper); the bucket's example count is
/// the sum of its clients' (for Multi-Krum's weighting).
///
/// @tparam Inner a general (robust) policy: `coordinate_median`,
///         `trimmed_mean`, `krum`, `bulyan`.
template <class Inner>
  requires general_aggregation<Inner>
struct bucketing {
  Inner inner{};
  std::size_t bucket_size = 2;      ///< s ≥ 1 (1: no bucketing, only a shuffle)
  std::uint64_t seed = 0xb0c4e7ULL;  ///< shuffle RNG seed

  static constexpr const char* name() noexcept { return "bucketing"; }
  /// Enough updates that ⌈n/s⌉ ≥ inner.min_clients().
  std::size_t min_clients() const noexcept {
    const std::size_t s = std::max<std::size_t>(bucket_size, 1);
    return (std::max<std::size_t>(inner.min_clients(), 1) - 1) * s + 1;
  }

  template <std::floating_point T>
  struct state {
    typename Inner::template state<T> inner;
    rng shuffle;
    std::vector<std::vector<std::size_t>> buckets;  ///< last round's buckets (positions in the update set)
    std::vector<std::vector<float>> means;
    state(const bucketing& p, std::size_t dimension) : inner(p.inner, dimension), shuffle(p.seed, 0xb0c4'e7ed'0001ULL) {}
  };

  template <std::floating_point T, update_encoding U>
  status aggregate(state<T>& st, std::span<T> global, const update_set<U>& set) const {
    TINYLARGE_CHECK(bucket_size >= 1, errc::invalid_argument, "bucketing: bucket_size must be >= 1");
    const std::size_t n = set.size();
    TINYLARGE_CHECK(n >= min_clients(), errc::invalid_argument, "bucketing: too few updates for the inner rule");
    std::vector<std::uint32_t> order(n);
    for (std::size_t i = 0; i < n; ++i) order[i] = static_cast<std::uint32_t>(i);
    st.shuffle.shuffle(order.data(), order.size());
    const std::size_t nb = (n + bucket_size - 1) / bucket_size;
    st.buckets.assign(nb, {});
    st.means.resize(nb);
    std::vector<client_result<fp32_update>> results(nb);
    std::vector<const client_result<fp32_update>*> ptrs(nb);
    for (std::size_t b = 0; b < nb; ++b) {
      std::vector<std::size_t>& sel = st.buckets[b];
      std::int64_t examples = 0;
      for (std::size_t k = b * bucket_size; k < std::min(n, (b + 1) * bucket_size); ++k) {
        sel.push_back(order[k]);
        examples += set.num_examples(order[k]);
      }
      const std::vector<float> coef(sel.size(), 1.0f / static_cast<float>(sel.size()));
      st.means[b].resize(set.dimension());
      set.weighted_sum(std::span<const float>(coef), std::span<float>(st.means[b]), {}, sel);
      results[b] = {b, fp32_update{std::span<const float>(st.means[b])}, std::max<std::int64_t>(examples, 1)};
      ptrs[b] = &results[b];
    }
    const update_set<fp32_update> bucket_set(std::span<const client_result<fp32_update>* const>(ptrs), set.dimension());
    return inner.aggregate(st.inner, global, bucket_set);
  }
};

// ---------------------------------------------------------------------------
// Nearest-neighbor mixing (a pre-aggregation for heterogeneous clients)
// ---------------------------------------------------------------------------

/// Nearest-neighbor mixing, NNM (Allouah, Farhadkhani, Guerraoui, Gupta,
/// Pinot & Stephan, "Fixing by Mixing: A Recipe for Optimal Byzantine ML
/// under Heterogeneity", AISTATS 2023, Algorithm 1): each update is replaced
/// by the mean of its n − f nearest updates, itself included, and the robust
/// rule `Inner` aggregates the n mixed vectors:
///
///     N_i = the n − f updates nearest to x_i in Euclidean distance (x_i ∈ N_i)
///     y_i = (1 / (n − f)) Σ_{j ∈ N_i} x_j,      w_{t+1} = Inner(y_1, …, y_n)
///
/// Why: with non-IID clients honest updates are far apart, so a robust rule
/// alone discards honest information (see `bucketing`). Every N_i holds at
/// least n − 2f honest updates, so the mixed vectors of honest clients are
/// all close to the honest mean, and the paper proves that NNM ∘ {Krum,
/// coordinate median, trimmed mean, geometric median, …} reaches the optimal
/// order of error under (G, B)-gradient dissimilarity (a floor that grows
/// with f/n · G² for any robust rule). Deterministic (unlike bucketing's
/// random buckets). Not in Flower. Measured on 2-class Fashion-MNIST shards
/// (docs/federated.md, "2. Robustness"), 20% sign flips: median / trimmed
/// mean / Krum after NNM lose 2.1–2.4 pp to their own clean run on average
/// over 3 seeds (single seeds −4.8 … +0.8 pp) and stay 8.7–9.3 pp below clean
/// FedAvg.
///
/// Tie-break (deterministic): x_i itself is always in N_i (also when another
/// update is identical to it); the other n − f − 1 are the nearest by squared
/// distance, equal distances going to the lower position in the update set.
/// The mixed vector y_i keeps client i's example count (for Multi-Krum's
/// weighting). Unweighted mean, as in the paper. `num_malicious` is the f of
/// the mixing; the inner rule's own f (Krum, Bulyan) is set on `inner` and
/// is normally the same.
///
/// Cost for n clients and P parameters: the pairwise distances O(n²P) (one
/// streaming pass, as Krum), the n means O(n(n − f)P), then the inner rule on
/// n fp32 vectors; memory n × P fp32 for the mixed vectors (kept in the
/// state between rounds, like bucketing's means), whatever the update
/// encoding (fp32, fp16 or int8 updates are decoded block by block).
///
/// @tparam Inner a general (robust) policy: `coordinate_median`,
///         `trimmed_mean`, `krum`, `bulyan`.
template <class Inner>
  requires general_aggregation<Inner>
struct nearest_neighbor_mixing {
  Inner inner{};
  std::size_t num_malicious = 0;  ///< f of the mixing: each y_i averages n − f updates (f = 0: all, the plain mean)

  static constexpr const char* name() noexcept { return "nnm"; }
  /// n ≥ inner.min_clients() and n > f.
  std::size_t min_clients() const noexcept { return std::max<std::size_t>(inner.min_clients(), num_malicious + 1); }

  template <std::floating_point T>
  struct state {
    typename Inner::template state<T> inner;
    std::vector<std::vector<std::size_t>> neighbours;  ///< last round's N_i (positions in the update set), x_i first
    std::vector<std::vector<float>> mixed;             ///< last round's y_i (n × P fp32)
    state(const nearest_neighbor_mixing& p, std::size_t dimension) : inner(p.inner, dimension) {}
  };

  /// N_i for every i from the n × n squared distances, with the tie-break above.
  static void neighbourhoods(std::span<const double> dist, std::size_t n, std::size_t f,
                             std::vector<std::vector<std::size_t>>& out) {
    TINYLARGE_REQUIRE(dist.size() == n * n && f < n, errc::invalid_argument, "nnm: distances / f");
    const std::size_t k = n - f;
    out.assign(n, {});
    std::vector<std::size_t> others;
    for (std::size_t i = 0; i < n; ++i) {
      others.clear();
      for (std::size_t j = 0; j < n; ++j)
        if (j != i) others.push_back(j);
      const double* row = dist.data() + i * n;
      const auto nearer = [row](std::size_t a, std::size_t b) { return row[a] < row[b] || (row[a] == row[b] && a < b); };
      std::partial_sort(others.begin(), others.begin() + static_cast<std::ptrdiff_t>(k - 1), others.end(), nearer);
      out[i].reserve(k);
      out[i].push_back(i);
      out[i].insert(out[i].end(), others.begin(), others.begin() + static_cast<std::ptrdiff_t>(k - 1));
    }
  }

  template <std::floating_point T, update_encoding U>
  status aggregate(state<T>& st, std::span<T> global, const update_set<U>& set) const {
    const std::size_t n = set.size();
    TINYLARGE_CHECK(num_malicious < n, errc::invalid_argument, "nnm: f must be smaller than the number of updates");
    TINYLARGE_CHECK(n >= inner.min_clients(), errc::invalid_argument, "nnm: too few updates for the inner rule");
    std::vector<double> dist(n * n);
    set.pairwise_squared_distances(dist);
    neighbourhoods(dist, n, num_malicious, st.neighbours);
    const std::size_t k = n - num_malicious;
    const std::vector<float> coef(k, 1.0f / static_cast<float>(k));
    st.mixed.resize(n);
    std::vector<client_result<fp32_update>> results(n);
    std::vector<const client_result<fp32_update>*> ptrs(n);
    for (std::size_t i = 0; i < n; ++i) {
      st.mixed[i].resize(set.dimension());
      set.weighted_sum(std::span<const float>(coef), std::span<float>(st.mixed[i]), {}, st.neighbours[i]);
      results[i] = {set.client_id(i), fp32_update{std::span<const float>(st.mixed[i])}, set.num_examples(i)};
      ptrs[i] = &results[i];
    }
    const update_set<fp32_update> mixed_set(std::span<const client_result<fp32_update>* const>(ptrs), set.dimension());
    return inner.aggregate(st.inner, global, mixed_set);
  }
};

static_assert(aggregation_policy<coordinate_median> && aggregation_policy<trimmed_mean>);
static_assert(aggregation_policy<krum> && aggregation_policy<bulyan>);
static_assert(aggregation_policy<bucketing<coordinate_median>> && aggregation_policy<bucketing<krum>>);
static_assert(aggregation_policy<nearest_neighbor_mixing<coordinate_median>> &&
              aggregation_policy<nearest_neighbor_mixing<trimmed_mean>> && aggregation_policy<nearest_neighbor_mixing<krum>> &&
              aggregation_policy<nearest_neighbor_mixing<bulyan>>);

}  // namespace tinylarge
