/// @file compress/weight_sharing.hpp
/// @brief Weight sharing: 1-D k-means codebooks, centroid fine-tuning, and the
///        `weight_sharing` policy (Deep Compression stage 2).
///
/// Han, Mao & Dally 2016 ("Deep Compression", §3) cluster the weights of each layer into
/// k = 2^b clusters, store b-bit indices and a k-entry codebook of fp32 centroids, and
/// fine-tune the centroids: the gradient of centroid c_k is the sum of the gradients of the
/// weights that share it,  ∂L/∂c_k = Σ_{i : idx_i = k} ∂L/∂w_i.  They compared three
/// initialisations — random (Forgy), density-based and linear — and found linear best,
/// because it keeps the few large weights that matter most; k-means++ (Arthur & Vassilvitskii
/// 2007) is offered as well.
///
/// The 1-D k-means here is exact Lloyd iteration made fast by the order of the real line:
/// the values are sorted once (LSD radix sort on the IEEE bit pattern, O(n)); with sorted
/// centroids c₁ ≤ … ≤ c_k each cluster is a contiguous run of the sorted values, bounded by
/// the midpoints (c_j + c_{j+1})/2, so one iteration is k−1 binary searches and k means from
/// a prefix sum — O(k log n) instead of O(nk). Iteration stops when no boundary moves (the
/// assignment is then a fixed point, every centroid is the mean of its members) or after
/// `max_iterations`. Points exactly on a midpoint join the lower cluster. An empty cluster
/// is relocated into the run of largest squared error, which is split at its median
/// (`kmeans_options::relocate_empty`); without relocation it keeps its centroid (the order
/// of the centroids is preserved, see the proof in the code).
///
/// Host profile (heap). The codebook kernels are in compress/kernels.hpp.
#pragma once

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <vector>

#include "../core/error.hpp"
#include "../core/rng.hpp"
#include "concepts.hpp"

namespace tinylarge::compress {

/// How the k-means centroids are initialised (Deep Compression §3.2).
enum class centroid_init : std::uint8_t {
  linear,            ///< c_j = min + (max − min)·j/(k − 1): equally spaced over the range (best in Han et al.)
  density,           ///< c_j = the ((j + ½)/k)-quantile: equally spaced on the CDF
  kmeans_plus_plus,  ///< D² sampling (Arthur & Vassilvitskii 2007), seeded by `kmeans_options::seed`
};

/// Options of `kmeans_1d`.
struct kmeans_options {
  std::size_t clusters = 16;           ///< k ∈ [1, 256] (indices are bytes)
  centroid_init init = centroid_init::linear;
  std::size_t max_iterations = 1000;
  /// 0 (default): iterate to the exact fixed point. Iterations cost O(k log n), so this is
  /// cheap even when 10⁶ Gaussian values need ~500 of them, each moving a boundary by a
  /// few points. > 0: stop when Σ_j Δc_j² ≤ tolerance·var(x) (scikit-learn's rule; its
  /// default 1e-4 stops at ~1 % higher inertia on such data).
  double tolerance = 0.0;
  std::uint64_t seed = 0;              ///< used by `kmeans_plus_plus` only
  /// Move the centroid of an empty cluster into the cluster of largest squared error,
  /// splitting it at its median (as scikit-learn relocates empty clusters). Matters after
  /// pruning: linear initialisation puts centroids in the gap around zero, whose clusters
  /// stay empty in plain Lloyd iteration and waste codebook entries.
  bool relocate_empty = true;
};

/// Result of `kmeans_1d`.
struct kmeans_result {
  std::vector<float> centroids;      ///< k centroids, ascending
  std::vector<std::uint8_t> labels;  ///< per input value: its centroid's index
  std::size_t iterations = 0;        ///< Lloyd iterations run
  bool converged = false;            ///< no boundary moved in the last iteration
  double inertia = 0.0;              ///< Σ (x − c_label)²
};

namespace detail {

/// Order-preserving map of a finite float to an unsigned key.
TINYLARGE_ALWAYS_INLINE std::uint32_t float_key(float f) noexcept {
  const std::uint32_t u = std::bit_cast<std::uint32_t>(f);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}
TINYLARGE_ALWAYS_INLINE float key_float(std::uint32_t k) noexcept {
  return std::bit_cast<float>((k & 0x80000000u) ? (k & 0x7FFFFFFFu) : ~k);
}

/// Ascending sort of finite floats: LSD radix sort, 3 passes of 11/11/10 bits, the three
/// histograms counted in one read of the input.
inline std::vector<float> radix_sorted(std::span<const float> v) {
  const std::size_t n = v.size();
  std::vector<std::uint32_t> a(n), b(n);
  std::vector<std::uint32_t> count(3 * 2048, 0);
  for (std::size_t i = 0; i < n; ++i) {
    const std::uint32_t k = float_key(v[i]);
    a[i] = k;
    ++count[k & 2047u];
    ++count[2048 + ((k >> 11) & 2047u)];
    ++count[4096 + (k >> 22)];
  }
  constexpr unsigned shifts[3] = {0, 11, 22};
  for (unsigned pass = 0; pass < 3; ++pass) {
    const unsigned sh = shifts[pass];
    std::uint32_t* cnt = count.data() + 2048 * pass;
    if (cnt[(a[0] >> sh) & 2047u] == n) continue;  // all keys share this digit
    std::uint32_t sum = 0;
    for (std::size_t d = 0; d < 2048; ++d) {
      const std::uint32_t t = cnt[d];
      cnt[d] = sum;
      sum += t;
    }
    for (std::size_t i = 0; i < n; ++i) b[cnt[(a[i] >> sh) & 2047u]++] = a[i];
    a.swap(b);
  }
  std::vector<float> out(n);
  for (std::size_t i = 0; i < n; ++i) out[i] = key_float(a[i]);
  return out;
}

/// Uniform double in [0, 1) with 53 random bits.
inline double uniform_double(rng& g) noexcept {
  const std::uint64_t hi = g.next_u32() >> 5, lo = g.next_u32() >> 6;  // 27 + 26 bits
  return static_cast<double>((hi << 26) | lo) * 0x1.0p-53;
}

/// Largest float ≤ d: for a float x, x > d ⇔ x > float_below(d).
inline float float_below(double d) noexcept {
  float f = static_cast<float>(d);
  if (static_cast<double>(f) > d) f = std::nextafter(f, -std::numeric_limits<float>::infinity());
  return f;
}

/// Branch-free cluster lookup: the number of midpoints strictly below x, with the k − 1
/// midpoints rounded down to float (exact, see `float_below`) and padded with +inf to a
/// power of two; log2(k) conditional moves per value.
class midpoint_search {
 public:
  explicit midpoint_search(const std::vector<double>& mid, std::size_t nmid) {
    width_ = 1;
    while (width_ < nmid + 1) width_ *= 2;
    m_.assign(width_, std::numeric_limits<float>::infinity());
    for (std::size_t j = 0; j < nmid; ++j) m_[j] = float_below(mid[j]);
  }
  TINYLARGE_ALWAYS_INLINE std::size_t operator()(float x) const noexcept {
    std::size_t idx = 0;
    for (std::size_t step = width_ / 2; step > 0; step /= 2) idx += (x > m_[idx + step - 1]) ? step : 0;
    return idx;
  }

 private:
  std::vector<float> m_;
  std::size_t width_ = 1;
};

}  // namespace detail

/// Exact 1-D k-means (Lloyd) of `values` (see the file comment for the algorithm).
/// Throws `numeric_error` on NaN/Inf, `invalid_argument` on k ∉ [1, 256] or empty input.
inline kmeans_result kmeans_1d(std::span<const float> values, const kmeans_options& opt = {}) {
  const std::size_t n = values.size(), k = opt.clusters;
  TINYLARGE_REQUIRE(k >= 1 && k <= 256, errc::invalid_argument, "kmeans_1d: clusters must be in [1, 256]");
  TINYLARGE_REQUIRE(n >= 1, errc::invalid_argument, "kmeans_1d: no values to cluster");
  for (float v : values) TINYLARGE_REQUIRE(std::isfinite(v), errc::non_finite, "kmeans_1d: values must be finite");

  const std::vector<float> x = detail::radix_sorted(values);
  std::vector<double> prefix(n + 1), prefix2(opt.relocate_empty ? n + 1 : 0);
  prefix[0] = 0.0;
  for (std::size_t i = 0; i < n; ++i) prefix[i + 1] = prefix[i] + static_cast<double>(x[i]);
  if (opt.relocate_empty) {
    prefix2[0] = 0.0;
    for (std::size_t i = 0; i < n; ++i) prefix2[i + 1] = prefix2[i] + static_cast<double>(x[i]) * x[i];
  }
  // Squared error of the sorted run x[s, e) about its mean.
  const auto sse = [&](std::size_t s0, std::size_t e0) {
    if (e0 <= s0 + 1) return 0.0;
    const double sum = prefix[e0] - prefix[s0];
    return std::max(0.0, prefix2[e0] - prefix2[s0] - sum * sum / static_cast<double>(e0 - s0));
  };

  // --- initial centroids (double, ascending)
  std::vector<double> c(k);
  const double lo = x.front(), hi = x.back();
  switch (opt.init) {
    case centroid_init::linear:
      for (std::size_t j = 0; j < k; ++j)
        c[j] = k == 1 ? 0.5 * (lo + hi) : lo + (hi - lo) * static_cast<double>(j) / static_cast<double>(k - 1);
      break;
    case centroid_init::density:
      for (std::size_t j = 0; j < k; ++j) {
        const double q = (static_cast<double>(j) + 0.5) / static_cast<double>(k);
        const auto i = static_cast<std::size_t>(q * static_cast<double>(n));
        c[j] = x[std::min(i, n - 1)];
      }
      break;
    case centroid_init::kmeans_plus_plus: {
      rng g(opt.seed);
      std::vector<double> d2(n, std::numeric_limits<double>::infinity());
      double chosen = x[g.uniform_int(static_cast<std::uint32_t>(std::min<std::size_t>(n, 0xFFFFFFFFu)))];
      c[0] = chosen;
      for (std::size_t j = 1; j < k; ++j) {
        double total = 0.0;
        for (std::size_t i = 0; i < n; ++i) {
          const double d = static_cast<double>(x[i]) - chosen;
          d2[i] = std::min(d2[i], d * d);
          total += d2[i];
        }
        if (total <= 0.0) {  // fewer distinct values than clusters: repeat the last centroid
          c[j] = chosen;
          continue;
        }
        const double u = detail::uniform_double(g) * total;
        double run = 0.0;
        std::size_t pick = n - 1;
        for (std::size_t i = 0; i < n; ++i) {
          run += d2[i];
          if (run > u) {
            pick = i;
            break;
          }
        }
        chosen = x[pick];
        c[j] = chosen;
      }
      std::sort(c.begin(), c.end());
      break;
    }
  }

  // --- Lloyd iterations on the sorted values. Cluster j is x[end[j−1], end[j]).
  // Order invariant: cluster j lies in [mid_{j−1}, mid_j], so its mean does too, and an
  // empty cluster keeps c_j ∈ [mid_{j−1}, mid_j]: the centroids stay sorted.
  const double mean = prefix[n] / static_cast<double>(n);
  double var = 0.0;
  for (std::size_t i = 0; i < n; i += 1 + n / 65536) var += (x[i] - mean) * (x[i] - mean);  // sampled
  var /= static_cast<double>((n + n / 65536) / (1 + n / 65536));
  const double tol_shift = opt.tolerance * var;
  std::vector<std::size_t> end(k, n), prev_end(k, n + 1);
  std::vector<double> mid(k > 1 ? k - 1 : 1);
  kmeans_result r;
  for (r.iterations = 0; r.iterations < opt.max_iterations; ++r.iterations) {
    for (std::size_t j = 0; j + 1 < k; ++j) {
      mid[j] = 0.5 * (c[j] + c[j + 1]);
      // count of x ≤ mid (x on the midpoint joins the lower cluster)
      end[j] = static_cast<std::size_t>(std::upper_bound(x.begin(), x.end(), mid[j],
                                                         [](double m, float v) { return m < static_cast<double>(v); }) -
                                        x.begin());
    }
    end[k - 1] = n;
    if (end == prev_end) {
      r.converged = true;
      break;
    }
    prev_end = end;
    std::size_t s = 0;
    bool any_empty = false;
    double shift = 0.0;
    for (std::size_t j = 0; j < k; ++j) {
      if (end[j] > s) {
        const double cj = (prefix[end[j]] - prefix[s]) / static_cast<double>(end[j] - s);
        shift += (cj - c[j]) * (cj - c[j]);
        c[j] = cj;
      } else {
        any_empty = true;
      }
      s = end[j];
    }
    if (!any_empty && opt.tolerance > 0.0 && shift <= tol_shift) {
      r.converged = true;
      ++r.iterations;
      break;
    }
    if (any_empty && opt.relocate_empty) {
      // Runs [first, last) of the current clusters; split the worst run for each empty one.
      std::vector<std::size_t> first(k), last(k);
      for (std::size_t j = 0, s0 = 0; j < k; s0 = end[j], ++j) {
        first[j] = s0;
        last[j] = end[j];
      }
      bool moved = false;
      for (std::size_t j = 0; j < k; ++j) {
        if (last[j] > first[j]) continue;
        std::size_t worst = k;
        double worst_sse = 0.0;
        for (std::size_t t = 0; t < k; ++t)
          if (last[t] > first[t] + 1 && x[first[t]] != x[last[t] - 1] && sse(first[t], last[t]) > worst_sse) {
            worst_sse = sse(first[t], last[t]);
            worst = t;
          }
        if (worst == k) break;  // no run with two distinct values left
        const std::size_t a = first[worst], b = last[worst];
        std::size_t split = a + (b - a) / 2;
        while (split > a && x[split - 1] == x[split]) --split;  // equal values stay together
        if (split == a) {
          split = a + (b - a) / 2;
          while (split < b && x[split - 1] == x[split]) ++split;
        }
        c[worst] = (prefix[split] - prefix[a]) / static_cast<double>(split - a);
        c[j] = (prefix[b] - prefix[split]) / static_cast<double>(b - split);
        last[worst] = split;
        first[j] = split;
        last[j] = b;
        moved = true;
      }
      if (moved) {
        std::sort(c.begin(), c.end());
        std::fill(prev_end.begin(), prev_end.end(), n + 1);  // the assignment must be recomputed
      }
    }
  }
  // Final assignment by the midpoints of the final centroids, and the centroids made the
  // means of exactly these members (a no-op at an exact fixed point; after a tolerance stop
  // the labels are the nearest centroid up to that tolerance).
  for (std::size_t j = 0; j + 1 < k; ++j) mid[j] = 0.5 * (c[j] + c[j + 1]);
  {
    std::size_t s = 0;
    for (std::size_t j = 0; j < k; ++j) {
      const std::size_t e = j + 1 < k ? static_cast<std::size_t>(
                                            std::upper_bound(x.begin(), x.end(), mid[j],
                                                             [](double m, float v) { return m < static_cast<double>(v); }) -
                                            x.begin())
                                      : n;
      if (e > s) c[j] = (prefix[e] - prefix[s]) / static_cast<double>(e - s);
      s = std::max(s, e);
    }
  }
  r.centroids.resize(k);
  for (std::size_t j = 0; j < k; ++j) r.centroids[j] = static_cast<float>(c[j]);
  r.labels.resize(n);
  const detail::midpoint_search find(mid, k - 1);
  for (std::size_t i = 0; i < n; ++i) r.labels[i] = static_cast<std::uint8_t>(find(values[i]));
  // Inertia from the sorted runs: Σ_j Σ (x − c_j)² = Σ x² − 2 c_j Σx + n_j c_j².
  double inertia = 0.0;
  {
    std::size_t s = 0;
    for (std::size_t j = 0; j < k; ++j) {
      const std::size_t e = j + 1 < k ? static_cast<std::size_t>(
                                            std::upper_bound(x.begin(), x.end(), mid[j],
                                                             [](double m, float v) { return m < static_cast<double>(v); }) -
                                            x.begin())
                                      : n;
      for (std::size_t i = s; i < e; ++i) inertia += (x[i] - c[j]) * (x[i] - c[j]);
      s = std::max(s, e);
    }
  }
  r.inertia = inertia;
  return r;
}

/// Index of the nearest of the ascending `centroids` for each weight (ties: lower index).
inline void assign_to_centroids(std::span<const float> w, std::span<const float> centroids,
                                std::span<std::uint8_t> labels) {
  TINYLARGE_REQUIRE(w.size() == labels.size(), errc::shape_mismatch, "assign_to_centroids: one label per weight");
  TINYLARGE_REQUIRE(!centroids.empty() && centroids.size() <= 256, errc::invalid_argument,
                    "assign_to_centroids: 1 to 256 centroids");
  TINYLARGE_REQUIRE(std::is_sorted(centroids.begin(), centroids.end()), errc::invalid_argument,
                    "assign_to_centroids: centroids must be ascending");
  std::vector<double> mid(centroids.size());
  for (std::size_t j = 0; j + 1 < centroids.size(); ++j)
    mid[j] = 0.5 * (static_cast<double>(centroids[j]) + centroids[j + 1]);
  const detail::midpoint_search find(mid, centroids.size() - 1);
  for (std::size_t i = 0; i < w.size(); ++i) labels[i] = static_cast<std::uint8_t>(find(w[i]));
}

/// w[i] = centroids[labels[i]]: the fp32 form of a shared-weight layer.
inline void snap_to_centroids(std::span<const std::uint8_t> labels, std::span<const float> centroids,
                              std::span<float> w) {
  TINYLARGE_REQUIRE(w.size() == labels.size(), errc::shape_mismatch, "snap_to_centroids: one label per weight");
  for (std::size_t i = 0; i < w.size(); ++i) {
    TINYLARGE_REQUIRE(labels[i] < centroids.size(), errc::invalid_argument, "snap_to_centroids: label out of range");
    w[i] = centroids[labels[i]];
  }
}

/// Centroid gradients of Deep Compression's fine-tuning: ∂L/∂c_k = Σ_{i : labels_i = k} ∂L/∂w_i
/// (summed in double). `centroid_grad` is overwritten; its size is the number of centroids.
inline void centroid_gradients(std::span<const std::uint8_t> labels, std::span<const float> weight_grad,
                               std::span<float> centroid_grad) {
  TINYLARGE_REQUIRE(labels.size() == weight_grad.size(), errc::shape_mismatch,
                    "centroid_gradients: one label per weight gradient");
  TINYLARGE_REQUIRE(centroid_grad.size() <= 256, errc::invalid_argument, "centroid_gradients: at most 256 centroids");
  double acc[256] = {};
  for (std::size_t i = 0; i < labels.size(); ++i) {
    TINYLARGE_REQUIRE(labels[i] < centroid_grad.size(), errc::invalid_argument,
                      "centroid_gradients: label out of range");
    acc[labels[i]] += weight_grad[i];
  }
  for (std::size_t j = 0; j < centroid_grad.size(); ++j) centroid_grad[j] = static_cast<float>(acc[j]);
}

/// One SGD step of Deep Compression's centroid fine-tuning: c_k ← c_k − lr·Σ_{i:idx_i=k} ∂L/∂w_i,
/// then w_i ← c_{idx_i} so the fp32 weights stay shared. With `fixed_zero` (codebooks made
/// with `reserve_zero`) centroid 0 stays exactly 0, so pruned weights stay pruned.
inline void centroid_sgd_step(std::span<const std::uint8_t> labels, std::span<const float> weight_grad,
                              std::span<float> centroids, float learning_rate, bool fixed_zero,
                              std::span<float> w) {
  TINYLARGE_REQUIRE(centroids.size() >= 1 && centroids.size() <= 256, errc::invalid_argument,
                    "centroid_sgd_step: 1 to 256 centroids");
  float grad[256];
  centroid_gradients(labels, weight_grad, std::span<float>(grad, centroids.size()));
  for (std::size_t j = fixed_zero ? 1 : 0; j < centroids.size(); ++j) centroids[j] -= learning_rate * grad[j];
  snap_to_centroids(labels, centroids, w);
}

/// Weight sharing with a k-means codebook of 2^Bits entries (Deep Compression stage 2).
///
/// With `reserve_zero` (the default), entry 0 of the codebook is exactly 0, exact-zero
/// weights (pruned ones) take index 0 and keep their value, and the other weights are
/// clustered into 2^Bits − 1 centroids — as in EIE (Han et al. 2016), where index 0 is zero
/// so that the filler entries of the relative-index CSR format decode to 0.
/// @tparam Bits index width in bits, 1–8 (Deep Compression: 8 for conv, 5 for fc layers)
/// @tparam Init centroid initialisation (`linear` is what Han et al. found best)
template <unsigned Bits = 5, centroid_init Init = centroid_init::linear>
struct weight_sharing {
  static_assert(Bits >= 1 && Bits <= 8, "weight_sharing<Bits>: index width must be 1 to 8 bits");
  static constexpr unsigned bits = Bits;
  static constexpr std::size_t codebook_size = std::size_t{1} << Bits;

  bool reserve_zero = true;
  std::size_t max_iterations = 1000;
  std::uint64_t seed = 0;

  static constexpr const char* name() noexcept { return "weight_sharing"; }
  static constexpr stage_kind kind = stage_kind::quantization;
  static constexpr representation produces = representation::codebook;
  static constexpr bool lossless = false;
  static constexpr bool needs_mask = false;
  static constexpr bool emits_symbols = true;  // the indices

  /// Codebook and one index per weight. With `reserve_zero`, `centroids[0]` is 0 and
  /// `centroids[1..]` are ascending; otherwise all are ascending.
  template <class T>
  struct state {
    std::vector<T> centroids;
    std::vector<std::uint8_t> labels;
  };

  void apply(state<float>& s, matrix_ref<float> w) const {
    std::span<float> all(w.data, w.size());
    s.labels.assign(w.size(), std::uint8_t{0});
    kmeans_options opt;
    opt.init = Init;
    opt.max_iterations = max_iterations;
    opt.seed = seed;
    if (!reserve_zero) {
      opt.clusters = codebook_size;
      kmeans_result r = kmeans_1d(all, opt);
      s.centroids = std::move(r.centroids);
      s.labels = std::move(r.labels);
    } else {
      std::vector<float> nz;
      std::vector<std::size_t> pos;
      for (std::size_t i = 0; i < all.size(); ++i)
        if (all[i] != 0.0f) {
          nz.push_back(all[i]);
          pos.push_back(i);
        }
      s.centroids.assign(codebook_size, 0.0f);
      if (!nz.empty() && codebook_size > 1) {
        opt.clusters = codebook_size - 1;
        const kmeans_result r = kmeans_1d(nz, opt);
        std::copy(r.centroids.begin(), r.centroids.end(), s.centroids.begin() + 1);
        for (std::size_t i = 0; i < pos.size(); ++i) s.labels[pos[i]] = static_cast<std::uint8_t>(r.labels[i] + 1);
      }
    }
    snap_to_centroids(s.labels, s.centroids, all);
  }
};

static_assert(compression_policy<weight_sharing<>>);

}  // namespace tinylarge::compress
