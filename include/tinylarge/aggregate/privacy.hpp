/// @file aggregate/privacy.hpp
/// @brief Central differential privacy for federated averaging: per-update L2
///        clipping (fixed, or adaptive to a target quantile), Gaussian noise on
///        the average, and an RDP accountant.
///
/// Available wrappers (general policies around a *linear* inner policy):
///  - `dp_fixed_clipping<Inner>` — DP-FedAvg with a fixed clip norm C
///    (McMahan et al., "Learning Differentially Private Recurrent Language
///    Models", ICLR 2018).
///  - `dp_adaptive_clipping<Inner>` — the clip norm follows a target quantile
///    of the update norms, itself estimated privately (Andrew et al.,
///    "Differentially Private Learning with Adaptive Clipping", NeurIPS 2021).
///
/// Mechanism, for the m updates of a round (m = `num_sampled_clients`, or the
/// number accepted when that is 0) and the current global weights w_t:
///
///     Δ_i  = w_i − w_t
///     Δ̄    = (1/m) Σ_i Δ_i · min(1, C / ‖Δ_i‖₂)  +  N(0, σ² I),   σ = z · C / m
///     mean = w_t + Δ̄          → handed to Inner::apply (FedAvg: w_{t+1} = mean)
///
/// Replacing one client's data changes Σ_i clip(Δ_i) by at most C in L2, so
/// each round is the Gaussian mechanism with noise multiplier z on that sum;
/// `rdp_accountant` turns z, the client sampling rate and the number of
/// rounds into (ε, δ). Everything after the noise (the inner server
/// optimizer) is post-processing.
///
/// Deliberate differences from Flower's `DifferentialPrivacyServerSide*`
/// wrappers:
///  - the clipped updates are averaged with equal weights 1/m (a fixed
///    denominator), not by example counts: an example-weighted average has
///    sensitivity max_i(n_i)/Σn_i · C, not C/m, and Flower's σ = zC/m would
///    then under-noise. `num_examples` is ignored by these wrappers;
///  - noise is added to the mean before the inner policy's server step (for
///    FedAvg the result is the same; for FedAdam & co. the noise goes through
///    the optimizer, as in Andrew et al.);
///  - adaptive clipping noises this round's average with the clip norm that
///    clipped it (Flower updates the norm first and uses the new one);
///  - the inner policy must be linear (FedAvg, FedAvgM, FedProx, FedAdam,
///    FedYogi, FedAdagrad): a robust rule has no C/m sensitivity bound.
/// All noise comes from the seeded `tl::rng`, so runs repeat exactly.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <limits>
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
/// Δ̄ = (1/m) Σ clip_C(w_i − w_t) + N(0, σ²) written as weights w_t + Δ̄ into
/// `out`; `norms[i]` gets ‖w_i − w_t‖. Returns the number of unclipped updates
/// (‖Δ_i‖ ≤ C).
template <std::floating_point T, update_encoding U>
std::size_t dp_noisy_mean(const update_set<U>& set, std::span<const T> global, double clip, double m,
                          double sigma, rng& noise, std::vector<T>& out, std::vector<double>& norms) {
  const std::size_t n = set.size();
  norms.resize(n);
  std::vector<T> coef(n);
  std::size_t unclipped = 0;
  for (std::size_t i = 0; i < n; ++i) {
    norms[i] = std::sqrt(set.squared_distance(i, global));
    const double f = norms[i] > clip ? clip / norms[i] : 1.0;
    if (norms[i] <= clip) ++unclipped;
    coef[i] = static_cast<T>(f / m);
  }
  out.resize(global.size());
  set.weighted_sum(std::span<const T>(coef), std::span<T>(out), global);
  const auto s = static_cast<T>(sigma);
  for (std::size_t j = 0; j < out.size(); ++j) {
    const T z = sigma > 0.0 ? s * static_cast<T>(noise.normal()) : T(0);
    out[j] = global[j] + (out[j] + z);
  }
  return unclipped;
}
}  // namespace detail

/// DP-FedAvg with fixed clipping (McMahan et al. 2018), Flower's
/// `DifferentialPrivacyServerSideFixedClipping` up to the differences listed
/// in the file comment.
///
/// @tparam Inner the linear server policy that receives the noisy mean
///         (`fedavg` by default).
template <linear_aggregation Inner = fedavg>
struct dp_fixed_clipping {
  Inner inner{};                        ///< server step applied to the noisy mean
  float noise_multiplier = 1.0f;        ///< z ≥ 0
  float clipping_norm = 1.0f;           ///< C > 0
  std::size_t num_sampled_clients = 0;  ///< m; 0 = the number of accepted updates
  std::uint64_t seed = 0x5eedULL;       ///< noise RNG seed

  static constexpr const char* name() noexcept { return "dp_fixed_clipping"; }
  std::size_t min_clients() const noexcept { return std::max<std::size_t>(1, inner.min_clients()); }

  /// @tparam T element type of the global weights.
  template <std::floating_point T>
  struct state {
    typename Inner::template state<T> inner;
    rng noise;
    std::vector<T> mean;
    std::vector<double> norms;         ///< ‖Δ_i‖ of the last round
    std::size_t unclipped = 0;         ///< updates of the last round with ‖Δ_i‖ ≤ C
    double noise_stddev = 0.0;         ///< σ used in the last round
    state(const dp_fixed_clipping& p, std::size_t dimension)
        : inner(p.inner, dimension), noise(p.seed, 0xd1ff'e4e7'1a15ULL) {}
  };

  /// σ = z · C / m.
  double noise_stddev(std::size_t m) const noexcept {
    return static_cast<double>(noise_multiplier) * static_cast<double>(clipping_norm) / static_cast<double>(m);
  }

  template <std::floating_point T, update_encoding U>
  status aggregate(state<T>& st, std::span<T> global, const update_set<U>& set) const {
    TINYLARGE_CHECK(clipping_norm > 0.0f && noise_multiplier >= 0.0f, errc::invalid_argument,
                    "dp_fixed_clipping: need C > 0 and z >= 0");
    TINYLARGE_CHECK(set.size() >= 1, errc::invalid_argument, "dp_fixed_clipping: no updates");
    const std::size_t m = num_sampled_clients != 0 ? num_sampled_clients : set.size();
    st.noise_stddev = noise_stddev(m);
    st.unclipped = detail::dp_noisy_mean(set, std::span<const T>(global), static_cast<double>(clipping_norm),
                                         static_cast<double>(m), st.noise_stddev, st.noise, st.mean, st.norms);
    inner.apply(st.inner, global, std::span<const T>(st.mean));
    return status::success();
  }
};

/// DP-FedAvg with adaptive clipping (Andrew et al. 2021, Algorithm 1), as
/// Flower's `DifferentialPrivacyServerSideAdaptiveClipping` up to the
/// differences listed in the file comment. Each round, with b_i = 1 when
/// ‖Δ_i‖ ≤ C_t:
///
///     b̃     = Σ_i b_i + N(0, σ_b²)
///     C_{t+1} = C_t · exp(−η_C · (b̃ / m − γ))
///
/// and the update itself is noised with z_Δ = (z⁻² − (2σ_b)⁻²)^(−1/2), so that
/// the two releases together are a Gaussian mechanism with noise multiplier z
/// (Andrew et al., Theorem 1). Requires z < 2σ_b. Defaults are Flower's (and
/// the paper's): C_0 = 0.1, γ = 0.5, η_C = 0.2, σ_b = m/20.
///
/// @tparam Inner the linear server policy that receives the noisy mean.
template <linear_aggregation Inner = fedavg>
struct dp_adaptive_clipping {
  Inner inner{};
  float noise_multiplier = 1.0f;         ///< z, the effective noise multiplier
  std::size_t num_sampled_clients = 0;   ///< m; 0 = the number of accepted updates
  float initial_clipping_norm = 0.1f;    ///< C_0
  float target_clipped_quantile = 0.5f;  ///< γ: fraction of updates meant to be *unclipped*
  float clip_norm_lr = 0.2f;             ///< η_C
  float clipped_count_stddev = -1.0f;    ///< σ_b; negative = m / 20
  std::uint64_t seed = 0x5eedULL;

  static constexpr const char* name() noexcept { return "dp_adaptive_clipping"; }
  std::size_t min_clients() const noexcept { return std::max<std::size_t>(1, inner.min_clients()); }

  template <std::floating_point T>
  struct state {
    typename Inner::template state<T> inner;
    rng noise;
    double clipping_norm;              ///< C_t for the next round
    std::vector<T> mean;
    std::vector<double> norms;
    std::size_t unclipped = 0;         ///< Σ b_i of the last round
    double noise_stddev = 0.0;         ///< σ = z_Δ · C_t / m of the last round
    state(const dp_adaptive_clipping& p, std::size_t dimension)
        : inner(p.inner, dimension), noise(p.seed, 0xada9'71fe'c11bULL), clipping_norm(p.initial_clipping_norm) {}
  };

  /// σ_b for m sampled clients.
  double count_stddev(std::size_t m) const noexcept {
    return clipped_count_stddev >= 0.0f ? static_cast<double>(clipped_count_stddev) : static_cast<double>(m) / 20.0;
  }
  /// z_Δ = (z⁻² − (2σ_b)⁻²)^(−1/2); 0 when z = 0; NaN when z ≥ 2σ_b.
  double update_noise_multiplier(std::size_t m) const noexcept {
    const double z = noise_multiplier;
    if (z <= 0.0) return 0.0;
    const double sb2 = 2.0 * count_stddev(m);
    if (z >= sb2) return std::numeric_limits<double>::quiet_NaN();
    return 1.0 / std::sqrt(1.0 / (z * z) - 1.0 / (sb2 * sb2));
  }

  template <std::floating_point T, update_encoding U>
  status aggregate(state<T>& st, std::span<T> global, const update_set<U>& set) const {
    TINYLARGE_CHECK(set.size() >= 1, errc::invalid_argument, "dp_adaptive_clipping: no updates");
    TINYLARGE_CHECK(noise_multiplier >= 0.0f && initial_clipping_norm > 0.0f && clip_norm_lr > 0.0f &&
                        target_clipped_quantile >= 0.0f && target_clipped_quantile <= 1.0f,
                    errc::invalid_argument, "dp_adaptive_clipping: hyperparameter out of range");
    const std::size_t m = num_sampled_clients != 0 ? num_sampled_clients : set.size();
    const double z_delta = update_noise_multiplier(m);
    TINYLARGE_CHECK(!std::isnan(z_delta), errc::invalid_argument,
                    "dp_adaptive_clipping: noise_multiplier must be < 2 * clipped_count_stddev");
    const double c = st.clipping_norm;
    st.noise_stddev = z_delta * c / static_cast<double>(m);
    st.unclipped = detail::dp_noisy_mean(set, std::span<const T>(global), c, static_cast<double>(m), st.noise_stddev,
                                         st.noise, st.mean, st.norms);
    const double sb = count_stddev(m);
    const double noised = static_cast<double>(st.unclipped) + (sb > 0.0 ? sb * static_cast<double>(st.noise.normal()) : 0.0);
    st.clipping_norm = c * std::exp(-static_cast<double>(clip_norm_lr) *
                                    (noised / static_cast<double>(m) - static_cast<double>(target_clipped_quantile)));
    inner.apply(st.inner, global, std::span<const T>(st.mean));
    return status::success();
  }
};

static_assert(aggregation_policy<dp_fixed_clipping<>> && aggregation_policy<dp_adaptive_clipping<>>);

// ---------------------------------------------------------------------------
// RDP accountant
// ---------------------------------------------------------------------------

/// How `rdp_accountant` converts RDP to (ε, δ) (see `rdp_accountant`).
enum class rdp_conversion : std::uint8_t {
  balle2020,    ///< Balle et al. 2020, Thm. 21 (dp_accounting, Opacus): the tighter one
  mironov2017,  ///< Mironov 2017, Prop. 3: ε(α) + log(1/δ)/(α − 1)
};

/// Rényi-DP accountant for the (Poisson-subsampled) Gaussian mechanism.
///
/// What it implements:
///  - full participation (q = 1): the Gaussian mechanism with noise
///    multiplier z has RDP ε(α) = α / (2z²) for every order α > 1 (Mironov,
///    "Rényi Differential Privacy", CSF 2017, Prop. 7);
///  - Poisson sampling with rate q < 1: the exact expression for integer
///    orders α ≥ 2 of Mironov, Talwar & Zhang, "Rényi Differential Privacy
///    of the Sampled Gaussian Mechanism" (2019), Sec. 3.3:
///        A_α = Σ_{k=0}^{α} C(α,k) (1−q)^{α−k} q^k exp((k² − k) / (2z²)),
///        ε(α) = log(A_α) / (α − 1),
///    evaluated in log space; for a fractional order the value at ⌈α⌉ is
///    used, a valid upper bound since ε(α) is non-decreasing in α;
///  - composition over rounds: RDP adds up per order;
///   - conversion to (ε, δ), minimised over the orders (`rdp_conversion`):
///      * `balle2020` (default): ε = ε_total(α) + log((α − 1)/α) − (log δ + log α)/(α − 1)
///        (Balle et al., "Hypothesis Testing Interpretations and Rényi
///        Differential Privacy", AISTATS 2020, Thm. 21; the conversion of
///        Google's dp_accounting and of Opacus);
///      * `mironov2017`: ε = ε_total(α) + log(1/δ)/(α − 1) (Mironov 2017,
///        Prop. 3), looser by up to ~10–15% at the usual δ.
///    Both are valid upper bounds. Checked against dp_accounting's published
///    test values (q = 0.01, z = 2.5, 50 steps) and an independent numerical
///    integration (tests/test_aggregate.cpp).
/// Client-level DP for FL (McMahan et al. 2018): one "step" is one round, q
/// the probability that a client takes part, z the noise multiplier of the DP
/// wrapper. The bound assumes Poisson sampling (each client independently
/// with probability q: `federated_options::poisson_sampling`) and the
/// add/remove-one-client neighbouring relation, with the fixed denominator
/// m = q·K (`num_sampled_clients`) so that one client moves the noised mean by
/// at most C/m. Sampling exactly m clients without replacement is a
/// different mechanism that this accountant does not cover.
class rdp_accountant {
 public:
  /// Orders used: 1.125 … 4.875 in steps of 1/8, the integers 5 … 64, then
  /// 80, 96, 128, 192, 256.
  static constexpr std::size_t num_orders = 31 + 60 + 5;

  rdp_accountant() noexcept {
    std::size_t k = 0;
    for (int i = 1; i <= 31; ++i) orders_[k++] = 1.0 + i / 8.0;
    for (int a = 5; a <= 64; ++a) orders_[k++] = a;
    for (const double a : {80.0, 96.0, 128.0, 192.0, 256.0}) orders_[k++] = a;
    rdp_.fill(0.0);
  }

  /// RDP of the Gaussian mechanism, order α: α / (2z²).
  static double gaussian_rdp(double noise_multiplier, double alpha) noexcept {
    return alpha / (2.0 * noise_multiplier * noise_multiplier);
  }

  /// RDP of the Poisson-subsampled Gaussian mechanism at integer order α ≥ 2.
  static double sampled_gaussian_rdp(double q, double noise_multiplier, std::size_t alpha) noexcept {
    if (q <= 0.0) return 0.0;
    const auto a = static_cast<double>(alpha);
    if (q >= 1.0) return gaussian_rdp(noise_multiplier, a);
    const double inv2z2 = 1.0 / (2.0 * noise_multiplier * noise_multiplier);
    const double lq = std::log(q), l1q = std::log1p(-q);
    double log_a = -std::numeric_limits<double>::infinity();
    for (std::size_t k = 0; k <= alpha; ++k) {
      const auto kd = static_cast<double>(k);
      const double log_binom = std::lgamma(a + 1.0) - std::lgamma(kd + 1.0) - std::lgamma(a - kd + 1.0);
      const double term = log_binom + kd * lq + (a - kd) * l1q + (kd * kd - kd) * inv2z2;
      const double hi = std::max(log_a, term), lo = std::min(log_a, term);
      log_a = hi + std::log1p(std::exp(lo - hi));  // log(e^log_a + e^term)
    }
    return log_a / (a - 1.0);
  }

  /// RDP at order α of one round with sampling rate q and noise multiplier z.
  static double round_rdp(double q, double noise_multiplier, double alpha) noexcept {
    if (q >= 1.0) return gaussian_rdp(noise_multiplier, alpha);
    return sampled_gaussian_rdp(q, noise_multiplier, static_cast<std::size_t>(std::ceil(alpha)));
  }

  /// Adds `rounds` rounds of the (sampled) Gaussian mechanism.
  void compose(double noise_multiplier, double sampling_rate = 1.0, std::size_t rounds = 1) {
    TINYLARGE_REQUIRE(noise_multiplier > 0.0 && sampling_rate > 0.0 && sampling_rate <= 1.0, errc::invalid_argument,
                      "rdp_accountant: need z > 0 and 0 < q <= 1");
    for (std::size_t k = 0; k < num_orders; ++k)
      rdp_[k] += static_cast<double>(rounds) * round_rdp(sampling_rate, noise_multiplier, orders_[k]);
  }

  /// ε for the given δ ∈ (0, 1) after everything composed so far.
  double epsilon(double delta, rdp_conversion conv = rdp_conversion::balle2020) const { return best(delta, conv).first; }
  /// The order α that attains `epsilon(delta)`.
  double best_order(double delta, rdp_conversion conv = rdp_conversion::balle2020) const {
    return best(delta, conv).second;
  }

  /// ε at δ of an RDP curve `rdp` (total RDP at `orders`, every order > 1),
  /// minimised over the orders; returns {ε, best order}.
  /// @throws tl::invalid_argument when δ ∉ (0, 1) or the sizes differ.
  static std::pair<double, double> epsilon_from_rdp(std::span<const double> orders, std::span<const double> rdp,
                                                    double delta, rdp_conversion conv = rdp_conversion::balle2020) {
    TINYLARGE_REQUIRE(delta > 0.0 && delta < 1.0, errc::invalid_argument, "rdp_accountant: delta must be in (0, 1)");
    TINYLARGE_REQUIRE(orders.size() == rdp.size(), errc::invalid_argument, "rdp_accountant: orders and rdp sizes differ");
    double eps = std::numeric_limits<double>::infinity(), order = 0.0;
    for (std::size_t k = 0; k < orders.size(); ++k) {
      const double a = orders[k];
      TINYLARGE_REQUIRE(a > 1.0, errc::invalid_argument, "rdp_accountant: orders must be > 1");
      const double e = conv == rdp_conversion::mironov2017
                           ? rdp[k] + std::log(1.0 / delta) / (a - 1.0)
                           : rdp[k] + std::log1p(-1.0 / a) - (std::log(delta) + std::log(a)) / (a - 1.0);
      if (e < eps) {
        eps = e;
        order = a;
      }
    }
    return {std::max(eps, 0.0), order};
  }

  std::span<const double> orders() const noexcept { return orders_; }
  std::span<const double> rdp() const noexcept { return rdp_; }

 private:
  std::pair<double, double> best(double delta, rdp_conversion conv) const {
    return epsilon_from_rdp(orders_, rdp_, delta, conv);
  }

  std::array<double, num_orders> orders_{};
  std::array<double, num_orders> rdp_{};
};

}  // namespace tinylarge
