/// @file data/partition.hpp
/// @brief Splitting a data set among federated clients: IID, label shards
///        (pathological non-IID), Dirichlet label skew and quantity skew, and
///        `partition_spec`, the text form (`iid`, `shards:2`, `dirichlet:0.5`,
///        `quantity:0.5`) that examples take on their command line.
///
/// Each partitioner returns `std::vector<std::vector<std::size_t>>`: for
/// every client, the indices of its samples. The lists are disjoint, together
/// they cover every sample exactly once, and each list is sorted. All
/// randomness comes from the `tl::rng` passed in, so the same seed gives the
/// same partition: `partition_iid` and `partition_shards` use integer
/// arithmetic only and agree on every platform; `partition_dirichlet` and
/// `partition_quantity` also use `std::log`/`exp`/`cos`, so they repeat
/// exactly on one platform (a different libm may, rarely, move a sample
/// across a cut point).
///
/// | partitioner | heterogeneity | reference |
/// |---|---|---|
/// | `partition_iid` | none: uniform random, equal sizes | — |
/// | `partition_shards` | each client sees few labels (2 with the defaults) | McMahan et al. 2017,
/// "Communication-Efficient Learning of Deep Networks from Decentralized Data", §3 | |
/// `partition_dirichlet` | label proportions per client ~ Dir(α): α → 0 one label per client, α → ∞
/// IID | Hsu, Qi and Brown 2019, "Measuring the Effects of Non-Identical Data Distribution…"; the
/// procedure of Li et al. 2022 (NIID-Bench) |
/// | `partition_quantity` | IID labels, client sizes ∝ q ~ Dir(β): β → 0 a few clients hold most
/// samples, β → ∞ equal sizes | Li, Diao, Chen and He 2022, "Federated Learning on Non-IID Data
/// Silos: An Experimental Study" (NIID-Bench), §4.3 "quantity skew" |
///
/// Host profile (uses `std::vector`); errors are `tl::invalid_argument`.
/// Overloads on xtensor labels, and splits of a `labelled_set` into one set per
/// client (`split_iid`, `split_shards`, `split_dirichlet`), are in `data/xtensor.hpp`.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <numeric>
#include <charconv>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "../core/config.hpp"
#include "../core/error.hpp"
#include "../core/rng.hpp"

namespace tinylarge::data {

/// Client → sample indices.
using partition_t = std::vector<std::vector<std::size_t>>;

// ---------------------------------------------------------------------------
// Gamma and Dirichlet sampling on tl::rng
// ---------------------------------------------------------------------------

/// Uniform double in the open interval (0, 1) with 53 random bits.
inline double uniform_open01(rng& r) noexcept {
  const std::uint64_t hi = r.next_u32() >> 5, lo = r.next_u32() >> 6;  // 27 + 26 bits
  return (static_cast<double>(hi * 67108864ULL + lo) + 0.5) * 0x1.0p-53;
}

/// Standard normal double (Box–Muller, one value per call).
inline double normal_double(rng& r) noexcept {
  const double u1 = uniform_open01(r), u2 = uniform_open01(r);
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586476925 * u2);
}

/// Natural logarithm of a Gamma(α, 1) sample.
///
/// Marsaglia and Tsang 2000, "A Simple Method for Generating Gamma
/// Variables": for α ≥ 1, with d = α − 1/3 and c = 1/√(9d), draw x ~ N(0,1),
/// v = (1 + c·x)³, accept d·v when log U < x²/2 + d − d·v + d·log v. For
/// α < 1, G(α) = G(α + 1)·U^{1/α}; in logs, log G(α+1) + log(U)/α, which
/// stays finite where U^{1/α} would underflow (α = 0.001 is fine).
///
/// @pre α > 0 and finite.
inline double sample_log_gamma(double alpha, rng& r) noexcept {
  if (alpha < 1.0) {
    const double boost = std::log(uniform_open01(r)) / alpha;
    return sample_log_gamma(alpha + 1.0, r) + boost;
  }
  const double d = alpha - 1.0 / 3.0;
  const double c = 1.0 / std::sqrt(9.0 * d);
  for (;;) {
    double x = 0.0, v = 0.0;
    do {
      x = normal_double(r);
      v = 1.0 + c * x;
    } while (v <= 0.0);
    v = v * v * v;
    const double u = uniform_open01(r);
    const double x2 = x * x;
    if (u < 1.0 - 0.0331 * x2 * x2) return std::log(d * v);
    if (std::log(u) < 0.5 * x2 + d * (1.0 - v + std::log(v))) return std::log(d * v);
  }
}

/// A Gamma(α, 1) sample (Marsaglia–Tsang). May underflow to 0 for tiny α;
/// use `sample_log_gamma` there.
inline double sample_gamma(double alpha, rng& r) noexcept {
  return std::exp(sample_log_gamma(alpha, r));
}

/// Fill `p` with a sample of the symmetric Dirichlet(α, …, α) distribution:
/// p_j = G_j / Σ G, G_j ~ Gamma(α, 1), normalised in log space so that small
/// α gives a valid (very sparse) vector instead of 0/0.
inline void sample_dirichlet(double alpha, std::span<double> p, rng& r) noexcept {
  if (p.empty()) return;
  double m = -HUGE_VAL;
  for (double& x : p) {
    x = sample_log_gamma(alpha, r);
    m = std::max(m, x);
  }
  double sum = 0.0;
  for (double& x : p) sum += (x = std::exp(x - m));  // the largest is exactly 1
  for (double& x : p) x /= sum;
}

// ---------------------------------------------------------------------------
// Partitioners
// ---------------------------------------------------------------------------

namespace detail {
inline void require_clients(std::size_t n, std::size_t clients, [[maybe_unused]] const char* who) {
  TINYLARGE_REQUIRE(
      clients > 0, errc::invalid_argument,
      std::string("tinylarge: ") + who + ": the number of clients must be at least 1");
  TINYLARGE_REQUIRE(clients <= n, errc::invalid_argument,
                    std::string("tinylarge: ") + who + ": " + std::to_string(clients) +
                        " clients but only " + std::to_string(n) +
                        " samples; every client needs at least one");
}
/// The argument checks of the two Dirichlet partitioners (`param` names the concentration).
inline void require_dirichlet_args(std::size_t n, std::size_t clients, double concentration,
                                   std::size_t min_size, std::size_t max_attempts,
                                   [[maybe_unused]] const std::string& who,
                                   [[maybe_unused]] const char* param) {
  require_clients(n, clients, who.c_str());
  TINYLARGE_REQUIRE(concentration > 0.0 && std::isfinite(concentration), errc::invalid_argument,
                    "tinylarge: " + who + ": " + param + " must be positive and finite, got " +
                        std::to_string(concentration));
  TINYLARGE_REQUIRE(min_size <= n / clients, errc::invalid_argument,
                    "tinylarge: " + who + ": min_size " + std::to_string(min_size) + " x " +
                        std::to_string(clients) + " clients exceeds the " + std::to_string(n) +
                        " samples");
  TINYLARGE_REQUIRE(max_attempts > 0, errc::invalid_argument,
                    "tinylarge: " + who + ": max_attempts must be at least 1");
}
/// The error when every draw left a client below `min_size`.
[[noreturn]] inline void raise_too_small([[maybe_unused]] const std::string& who,
                                         [[maybe_unused]] const char* param,
                                         [[maybe_unused]] double concentration,
                                         [[maybe_unused]] std::size_t clients,
                                         [[maybe_unused]] std::size_t min_size,
                                         [[maybe_unused]] std::size_t max_attempts,
                                         [[maybe_unused]] std::size_t best_min) {
  TINYLARGE_RAISE(errc::invalid_argument,
                  "tinylarge: " + who + ": after " + std::to_string(max_attempts) + " draws with " + param +
                      " " + std::to_string(concentration) + " some client of " + std::to_string(clients) +
                      " still had fewer than min_size " + std::to_string(min_size) +
                      " samples (best draw: " + std::to_string(best_min) + "); increase " + param +
                      ", lower min_size, use fewer clients or allow more attempts");
}
/// Start of part `i` when `n` items are cut into `parts` near-equal parts.
constexpr std::size_t part_begin(std::size_t n, std::size_t parts, std::size_t i) noexcept {
  return i * (n / parts) + std::min(i, n % parts);
}
}  // namespace detail

/// IID partition: a seeded random permutation of 0..n−1 cut into `clients`
/// parts whose sizes differ by at most one.
/// @throws tl::invalid_argument when `clients` is 0 or exceeds `n`.
inline partition_t partition_iid(std::size_t n, std::size_t clients, rng& r) {
  detail::require_clients(n, clients, "partition_iid");
  std::vector<std::size_t> perm(n);
  std::iota(perm.begin(), perm.end(), std::size_t{0});
  r.shuffle(perm.data(), perm.size());
  partition_t parts(clients);
  for (std::size_t c = 0; c < clients; ++c) {
    const auto b = perm.begin() + static_cast<std::ptrdiff_t>(detail::part_begin(n, clients, c));
    const auto e =
        perm.begin() + static_cast<std::ptrdiff_t>(detail::part_begin(n, clients, c + 1));
    parts[c].assign(b, e);
    std::sort(parts[c].begin(), parts[c].end());
  }
  return parts;
}

/// Pathological non-IID partition by label shards (McMahan et al. 2017):
/// sort the samples by label (stable, so ties keep index order), cut the
/// sorted list into `clients · shards_per_client` shards of equal size (±1),
/// and give each client `shards_per_client` shards chosen at random.
///
/// With Fashion-MNIST (6000 images per class), 100 clients and 2 shards per
/// client, each shard holds 300 images of one class and each client sees at
/// most 2 classes.
///
/// @throws tl::invalid_argument when `clients` or `shards_per_client` is 0,
///         or there are fewer samples than shards.
inline partition_t partition_shards(std::span<const std::uint8_t> labels, std::size_t clients,
                                    std::size_t shards_per_client, rng& r) {
  const std::size_t n = labels.size();
  detail::require_clients(n, clients, "partition_shards");
  TINYLARGE_REQUIRE(shards_per_client > 0, errc::invalid_argument,
                    "tinylarge: partition_shards: shards_per_client must be at least 1");
  const std::size_t shards = clients * shards_per_client;
  TINYLARGE_REQUIRE(shards / clients == shards_per_client && shards <= n, errc::invalid_argument,
                    "tinylarge: partition_shards: " + std::to_string(clients) + " clients x " +
                        std::to_string(shards_per_client) +
                        " shards need at least as many samples, " + "but there are " +
                        std::to_string(n));
  std::vector<std::size_t> sorted(n);
  std::iota(sorted.begin(), sorted.end(), std::size_t{0});
  std::stable_sort(sorted.begin(), sorted.end(),
                   [&](std::size_t a, std::size_t b) { return labels[a] < labels[b]; });
  std::vector<std::size_t> shard_ids(shards);
  std::iota(shard_ids.begin(), shard_ids.end(), std::size_t{0});
  r.shuffle(shard_ids.data(), shard_ids.size());
  partition_t parts(clients);
  for (std::size_t c = 0; c < clients; ++c) {
    for (std::size_t k = 0; k < shards_per_client; ++k) {
      const std::size_t s = shard_ids[c * shards_per_client + k];
      const std::size_t b = detail::part_begin(n, shards, s),
                        e = detail::part_begin(n, shards, s + 1);
      parts[c].insert(parts[c].end(), sorted.begin() + static_cast<std::ptrdiff_t>(b),
                      sorted.begin() + static_cast<std::ptrdiff_t>(e));
    }
    std::sort(parts[c].begin(), parts[c].end());
  }
  return parts;
}

/// Non-IID partition with Dirichlet label skew (the procedure of NIID-Bench,
/// Li et al. 2022, after Yurochkin et al. 2019 and Hsu et al. 2019).
///
/// For each class k, shuffle its samples and draw p ~ Dir(α·1) over the
/// clients; clients that already hold n/clients samples or more get p_j = 0
/// (this keeps sizes from running away); renormalise and hand out the
/// class's samples in proportions p (cut points ⌊N_k·Σ_{i≤j} p_i⌋). Repeat
/// the whole draw until every client holds at least `min_size` samples.
///
/// Smaller α gives more skew: α = 0.1 leaves most clients with one or two
/// dominant classes, α = 100 is close to IID.
///
/// @param labels        class of each sample
/// @param clients       number of clients (≥ 1)
/// @param alpha         Dirichlet concentration (> 0, finite)
/// @param r             the random source
/// @param min_size      fewest samples any client may hold
/// @param max_attempts  redraws allowed before giving up
/// @throws tl::invalid_argument when the arguments are out of range, or when
///         `max_attempts` draws all left some client below `min_size` (the
///         message gives the smallest client size seen and what to change).
inline partition_t partition_dirichlet(std::span<const std::uint8_t> labels, std::size_t clients,
                                       double alpha, rng& r, std::size_t min_size = 10,
                                       std::size_t max_attempts = 1000) {
  const std::size_t n = labels.size();
  detail::require_dirichlet_args(n, clients, alpha, min_size, max_attempts, "partition_dirichlet", "alpha");
  // Samples of each class, in index order.
  std::vector<std::vector<std::size_t>> by_class(256);
  for (std::size_t i = 0; i < n; ++i) by_class[labels[i]].push_back(i);
  const double cap = static_cast<double>(n) / static_cast<double>(clients);
  std::vector<double> p(clients);
  std::size_t best_min = 0;
  for (std::size_t attempt = 0; attempt < max_attempts; ++attempt) {
    partition_t parts(clients);
    for (std::vector<std::size_t> idx : by_class) {  // a copy: shuffled below
      if (idx.empty()) continue;
      r.shuffle(idx.data(), idx.size());
      sample_dirichlet(alpha, p, r);
      double sum = 0.0;
      for (std::size_t j = 0; j < clients; ++j) {
        if (static_cast<double>(parts[j].size()) >= cap) p[j] = 0.0;
        sum += p[j];
      }
      if (!(sum > 0.0)) {  // every open client drew ~0: spread evenly over them
        sum = 0.0;
        for (std::size_t j = 0; j < clients; ++j) {
          p[j] = static_cast<double>(parts[j].size()) < cap ? 1.0 : 0.0;
          sum += p[j];
        }
        if (sum == 0.0) {
          std::fill(p.begin(), p.end(), 1.0);
          sum = static_cast<double>(clients);
        }
      }
      const double nk = static_cast<double>(idx.size());
      double acc = 0.0;
      std::size_t begin = 0;
      for (std::size_t j = 0; j < clients; ++j) {
        acc += p[j] / sum;
        std::size_t end =
            j + 1 == clients ? idx.size() : static_cast<std::size_t>(std::floor(acc * nk));
        end = std::clamp(end, begin, idx.size());
        parts[j].insert(parts[j].end(), idx.begin() + static_cast<std::ptrdiff_t>(begin),
                        idx.begin() + static_cast<std::ptrdiff_t>(end));
        begin = end;
      }
    }
    std::size_t smallest = n;
    for (const auto& part : parts) smallest = std::min(smallest, part.size());
    best_min = std::max(best_min, smallest);
    if (smallest >= min_size) {
      for (auto& part : parts) std::sort(part.begin(), part.end());
      return parts;
    }
  }
  detail::raise_too_small("partition_dirichlet", "alpha", alpha, clients, min_size, max_attempts, best_min);
}

/// Quantity skew (NIID-Bench, Li et al. 2022, §4.3): the labels stay IID but
/// the client sizes do not. Draw q ~ Dir(β·1) over the clients and give
/// client j a q_j share of a seeded random permutation of the samples (cut
/// points ⌊n·Σ_{i≤j} q_i⌋, as NIID-Bench's `iid-diff-quantity`); redraw q
/// until every client holds at least `min_size` samples.
///
/// Smaller β gives more unequal sizes: the coefficient of variation of a
/// client's share is √((K−1)/(Kβ+1)) for K clients before the `min_size`
/// redraws (β = 0.5, K = 10: 1.22; β = 100: 0.09).
///
/// @param n             number of samples
/// @param clients       number of clients (≥ 1)
/// @param beta          Dirichlet concentration (> 0, finite)
/// @param r             the random source
/// @param min_size      fewest samples any client may hold
/// @param max_attempts  draws of q allowed before giving up
/// @throws tl::invalid_argument when the arguments are out of range, or when
///         `max_attempts` draws all left some client below `min_size`.
inline partition_t partition_quantity(std::size_t n, std::size_t clients, double beta, rng& r,
                                      std::size_t min_size = 10, std::size_t max_attempts = 1000) {
  detail::require_dirichlet_args(n, clients, beta, min_size, max_attempts, "partition_quantity", "beta");
  std::vector<std::size_t> perm(n);
  std::iota(perm.begin(), perm.end(), std::size_t{0});
  r.shuffle(perm.data(), perm.size());
  std::vector<double> q(clients);
  std::vector<std::size_t> cuts(clients + 1, 0);
  std::size_t best_min = 0;
  for (std::size_t attempt = 0; attempt < max_attempts; ++attempt) {
    sample_dirichlet(beta, q, r);
    double acc = 0.0;
    std::size_t smallest = n;
    for (std::size_t j = 0; j < clients; ++j) {
      acc += q[j];
      cuts[j + 1] = j + 1 == clients
                        ? n
                        : std::clamp(static_cast<std::size_t>(std::floor(acc * static_cast<double>(n))),
                                     cuts[j], n);
      smallest = std::min(smallest, cuts[j + 1] - cuts[j]);
    }
    best_min = std::max(best_min, smallest);
    if (smallest < min_size) continue;
    partition_t parts(clients);
    for (std::size_t j = 0; j < clients; ++j) {
      parts[j].assign(perm.begin() + static_cast<std::ptrdiff_t>(cuts[j]),
                      perm.begin() + static_cast<std::ptrdiff_t>(cuts[j + 1]));
      std::sort(parts[j].begin(), parts[j].end());
    }
    return parts;
  }
  detail::raise_too_small("partition_quantity", "beta", beta, clients, min_size, max_attempts, best_min);
}

/// Samples of each class held by each client: `counts[c][k]`.
inline std::vector<std::vector<std::size_t>> partition_label_counts(
    const partition_t& parts, std::span<const std::uint8_t> labels) {
  std::size_t classes = 0;
  for (const std::uint8_t y : labels) classes = std::max<std::size_t>(classes, y + std::size_t{1});
  std::vector<std::vector<std::size_t>> counts(parts.size(), std::vector<std::size_t>(classes, 0));
  for (std::size_t c = 0; c < parts.size(); ++c)
    for (const std::size_t i : parts[c]) ++counts[c][labels[i]];
  return counts;
}

// ---------------------------------------------------------------------------
// A partition named by a short text: iid | shards:K | dirichlet:ALPHA | quantity:BETA
// ---------------------------------------------------------------------------

/// One of the partitioners above with its parameter, as parsed from text by
/// `parse_partition_spec` (an example's `--partition` option). Call it on the
/// labels to partition; `text()` gives the canonical spec back (for a results
/// file), `description()` a sentence for a log.
///
/// @code
///   const tl::data::partition_spec spec = tl::data::parse_partition_spec("dirichlet:0.5");
///   tl::rng r(seed);
///   const tl::data::partition_t parts = spec(train.labels, 100, r);
///   std::printf("%s\n", spec.description().c_str());  // Dirichlet label skew, alpha = 0.5 (…)
/// @endcode
struct partition_spec {
  /// Which partitioner.
  enum class scheme { iid, shards, dirichlet, quantity };
  scheme kind = scheme::iid;
  std::size_t shards_per_client = 2;  ///< `shards`: shards per client
  double concentration = 0.5;         ///< `dirichlet`: α, `quantity`: β
  std::size_t min_size = 10;          ///< `dirichlet`, `quantity`: fewest samples per client

  /// The canonical text: `iid`, `shards:2`, `dirichlet:0.5`, `quantity:0.5`
  /// (the number in its shortest round-trip form); parses back to an equal spec.
  std::string text() const {
    switch (kind) {
      case scheme::iid: return "iid";
      case scheme::shards: return "shards:" + std::to_string(shards_per_client);
      case scheme::dirichlet: return "dirichlet:" + real_text(concentration);
      case scheme::quantity: return "quantity:" + real_text(concentration);
    }
    return {};
  }

  /// One line for a log: the scheme, its parameter and its source.
  std::string description() const {
    switch (kind) {
      case scheme::iid: return "IID, equal sizes";
      case scheme::shards:
        return "label shards, " + std::to_string(shards_per_client) +
               " per client (McMahan et al. 2017)";
      case scheme::dirichlet:
        return "Dirichlet label skew, alpha = " + real_text(concentration) +
               " (Hsu et al. 2019; NIID-Bench)";
      case scheme::quantity:
        return "quantity skew, sizes ~ Dir(beta = " + real_text(concentration) +
               "), IID labels (NIID-Bench)";
    }
    return {};
  }

  /// Partition `labels` among `clients` with this scheme (`partition_iid`,
  /// `partition_shards`, `partition_dirichlet` or `partition_quantity`).
  /// @throws tl::invalid_argument as the partitioner it calls.
  partition_t operator()(std::span<const std::uint8_t> labels, std::size_t clients, rng& r) const {
    switch (kind) {
      case scheme::iid: return partition_iid(labels.size(), clients, r);
      case scheme::shards: return partition_shards(labels, clients, shards_per_client, r);
      case scheme::dirichlet: return partition_dirichlet(labels, clients, concentration, r, min_size);
      case scheme::quantity: return partition_quantity(labels.size(), clients, concentration, r, min_size);
    }
    return {};
  }

  friend bool operator==(const partition_spec&, const partition_spec&) = default;

 private:
  static std::string real_text(double x) {
    char buf[32];
    const auto res = std::to_chars(buf, buf + sizeof buf, x);
    return std::string(buf, res.ptr);
  }
};

/// Parse a partition spec: `iid`, `shards:K` (K ≥ 1 an integer),
/// `dirichlet:ALPHA` or `quantity:BETA` (a positive finite number). The whole
/// text must be consumed: no spaces, signs, suffixes or missing parameters.
/// @throws tl::invalid_argument naming the text and the accepted forms.
inline partition_spec parse_partition_spec(std::string_view text) {
  const auto fail = [&]([[maybe_unused]] const std::string& why) {
    TINYLARGE_RAISE(errc::invalid_argument,
                    "tinylarge: partition spec '" + std::string(text) + "': " + why +
                        "; expected iid | shards:K | dirichlet:ALPHA | quantity:BETA "
                        "(e.g. shards:2, dirichlet:0.5)");
  };
  const std::size_t colon = text.find(':');
  const std::string_view name = text.substr(0, colon);
  const bool has_value = colon != std::string_view::npos;
  const std::string_view value = has_value ? text.substr(colon + 1) : std::string_view{};
  partition_spec s;
  if (name == "iid") {
    if (has_value) fail("iid takes no parameter");
    s.kind = partition_spec::scheme::iid;
    return s;
  }
  if (name == "shards") {
    s.kind = partition_spec::scheme::shards;
    const auto res = std::from_chars(value.data(), value.data() + value.size(), s.shards_per_client);
    if (value.empty() || res.ec != std::errc{} ||
        res.ptr != value.data() + value.size() || s.shards_per_client == 0)
      fail("shards needs a whole number of shards per client >= 1 after the colon");
    return s;
  }
  if (name == "dirichlet" || name == "quantity") {
    s.kind = name == "dirichlet" ? partition_spec::scheme::dirichlet : partition_spec::scheme::quantity;
    const auto res = std::from_chars(value.data(), value.data() + value.size(), s.concentration,
                                     std::chars_format::general);
    if (value.empty() || res.ec != std::errc{} || res.ptr != value.data() + value.size() ||
        !(s.concentration > 0.0) || !std::isfinite(s.concentration))
      fail(std::string(name) + " needs a positive finite concentration after the colon (" +
           (name == "dirichlet" ? "alpha" : "beta") + "; smaller is more skewed)");
    return s;
  }
  fail("unknown scheme '" + std::string(name) + "'");
  return s;  // not reached: fail throws (or stops, without exceptions)
}

}  // namespace tinylarge::data
