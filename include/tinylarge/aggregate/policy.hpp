/// @file aggregate/policy.hpp
/// @brief The aggregation axis: the `aggregation_policy` concept, FedAvg and
///        the server-optimizer family (FedAvgM, FedProx, FedAdam, FedYogi,
///        FedAdagrad).
///
/// Available policies (semantics of Flower's strategies of the same name; any
/// deliberate difference is stated at the policy):
///
/// | policy | what the server does with the accepted updates | header |
/// |---|---|---|
/// | `fedavg` | example-weighted mean of the client weights (the trivial member) | here |
/// | `fedavgm` | FedAvg + server learning rate and momentum | here |
/// | `fedprox` | FedAvg on the server; clients add μ(w − w_t) to their gradient | here, client.hpp |
/// | `fedadam`, `fedyogi`, `fedadagrad` | adaptive server optimizers on Δ = avg(w_i) − w_t | here |
/// | `coordinate_median`, `trimmed_mean` | coordinate-wise robust statistics | robust.hpp |
/// | `krum` (and Multi-Krum), `bulyan` | Byzantine-robust selection | robust.hpp |
/// | `bucketing<Rule>` | means of random buckets of s updates, then a robust rule (non-IID clients) | robust.hpp |
/// | `nearest_neighbor_mixing<Rule>` | each update → mean of its n − f nearest, then a robust rule (non-IID clients) | robust.hpp |
/// | `dp_fixed_clipping<P>`, `dp_adaptive_clipping<P>` | central DP wrappers | privacy.hpp |
///
/// When to use which: `fedavg` for honest IID-ish fleets; `fedavgm` /
/// `fedadam` / `fedyogi` when non-IID data makes FedAvg oscillate (Hsu et al.
/// 2019; Reddi et al. 2021); `fedprox` with stragglers doing different amounts
/// of local work; the robust rules when some clients may be Byzantine; the DP
/// wrappers when the aggregate itself must not reveal one client's data.
///
/// **The interface** (read `fedavg` as its documentation). A policy is a
/// copyable struct whose data members are its hyperparameters, with
///  - `static const char* name()` and `std::size_t min_clients() const`: the
///    fewest accepted updates the rule needs (the aggregator fails the round
///    with a clear error below it);
///  - a nested `template <std::floating_point T> struct state`, constructible
///    from `(const Policy&, std::size_t dimension)`, holding everything that
///    persists between rounds (momentum, Adam moments, clip norm, RNG) — the
///    ensmallen pattern: hyperparameters in the policy, per-run state apart;
///  - and one of two aggregation members:
///      * a **linear** policy (`static constexpr bool linear = true`) has
///        `void apply(state<T>&, std::span<T> global, std::span<const T> mean) const`:
///        the aggregator computes the example-weighted mean of the client
///        weights, mean = Σ n_i w_i / Σ n_i, in one streaming pass, and the
///        policy turns it into the new global weights;
///      * a **general** policy has
///        `status aggregate(state<T>&, std::span<T> global, const update_set<U>&) const`
///        (a template over the update encoding `U`) and reads the updates
///        itself through the `update_set` kernels.
///
/// Use them through `tl::aggregator<Policy>` (aggregate/aggregator.hpp),
/// which validates each round's updates first.
#pragma once

#include <algorithm>
#include <cmath>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <vector>

#include "../core/config.hpp"
#include "../core/error.hpp"
#include "client.hpp"
#include "update.hpp"
#include "update_set.hpp"

namespace tinylarge {

/// A policy whose server step only needs the example-weighted mean.
template <class P>
concept linear_aggregation =
    requires { requires P::linear; } &&
    requires(const P& p, typename P::template state<float>& st, std::span<float> global, std::span<const float> mean) {
      p.apply(st, global, mean);
    };

/// A policy that reads the individual updates (robust rules, DP wrappers).
template <class P>
concept general_aggregation =
    requires(const P& p, typename P::template state<float>& st, std::span<float> global,
             const update_set<fp32_update>& set) {
      { p.aggregate(st, global, set) } -> std::same_as<status>;
    };

/// Requirements of every member of the aggregation axis (see the file comment).
template <class P>
concept aggregation_policy =
    std::copy_constructible<P> &&
    requires(const P& p) {
      { P::name() } -> std::convertible_to<const char*>;
      { p.min_clients() } -> std::convertible_to<std::size_t>;
    } &&
    std::constructible_from<typename P::template state<float>, const P&, std::size_t> &&
    (linear_aggregation<P> || general_aggregation<P>);

// ---------------------------------------------------------------------------
// FedAvg — the trivial member
// ---------------------------------------------------------------------------

/// Federated Averaging (McMahan et al., "Communication-Efficient Learning of
/// Deep Networks from Decentralized Data", AISTATS 2017):
///
///     w_{t+1} = Σ_i n_i · w_i / Σ_i n_i
///
/// where w_i are the clients' new weights and n_i their example counts
/// (Flower's `FedAvg` / `aggregate`). This is the trivial member of the
/// aggregation axis: copy it to write your own linear policy.
struct fedavg {
  static constexpr const char* name() noexcept { return "fedavg"; }
  /// The aggregator computes the weighted mean and calls `apply`.
  static constexpr bool linear = true;
  /// FedAvg can average a single update.
  std::size_t min_clients() const noexcept { return 1; }

  /// Per-run state: none. A policy with momentum keeps it here.
  /// @tparam T the element type of the global weights.
  template <std::floating_point T>
  struct state {
    state(const fedavg& /*policy*/, std::size_t /*dimension*/) noexcept {}
  };

  /// New global weights = the weighted mean.
  template <std::floating_point T>
  void apply(state<T>& /*st*/, std::span<T> global, std::span<const T> mean) const noexcept {
    std::copy(mean.begin(), mean.end(), global.begin());
  }
};

// ---------------------------------------------------------------------------
// FedAvgM
// ---------------------------------------------------------------------------

/// FedAvg with server momentum (Hsu et al., "Measuring the Effects of
/// Non-Identical Data Distribution for Federated Visual Classification",
/// 2019), as Flower's `FedAvgM`:
///
///     g_t = w_t − avg_t                  (pseudo-gradient; note the sign)
///     m_t = β · m_{t−1} + g_t            (m_0 = g_1 on the first round)
///     w_{t+1} = w_t − η · m_t
///
/// With η = 1, β = 0 (Flower's defaults) this is FedAvg.
struct fedavgm {
  float server_learning_rate = 1.0f;  ///< η
  float server_momentum = 0.0f;       ///< β

  static constexpr const char* name() noexcept { return "fedavgm"; }
  static constexpr bool linear = true;
  std::size_t min_clients() const noexcept { return 1; }

  /// @tparam T element type of the global weights.
  template <std::floating_point T>
  struct state {
    std::vector<T> momentum;  ///< m_t
    std::size_t rounds = 0;   ///< completed rounds
    state(const fedavgm& /*policy*/, std::size_t dimension) : momentum(dimension, T(0)) {}
  };

  template <std::floating_point T>
  void apply(state<T>& st, std::span<T> global, std::span<const T> mean) const {
    TINYLARGE_REQUIRE(st.momentum.size() == global.size(), errc::shape_mismatch, "fedavgm: state size");
    const T eta = static_cast<T>(server_learning_rate);
    const T beta = static_cast<T>(server_momentum);
    const bool first = st.rounds == 0;
    for (std::size_t j = 0; j < global.size(); ++j) {
      const T g = global[j] - mean[j];
      const T m = first ? g : beta * st.momentum[j] + g;
      st.momentum[j] = m;
      global[j] -= eta * m;
    }
    ++st.rounds;
  }
};

// ---------------------------------------------------------------------------
// FedProx
// ---------------------------------------------------------------------------

/// FedProx (Li et al., "Federated Optimization in Heterogeneous Networks",
/// MLSys 2020). The server step is FedAvg (as in Flower's `FedProx`); the
/// difference is on the clients, whose local objective gains (μ/2)‖w − w_t‖²:
/// they call `add_proximal_gradient(grad, w, w_global, policy.proximal_mu)`
/// (aggregate/client.hpp) in every local step. The workflow reads
/// `proximal_mu` from the policy and sends it to the clients, as Flower puts
/// it in the fit config.
struct fedprox {
  float proximal_mu = 0.01f;  ///< μ ≥ 0 (Flower requires it explicitly; 0 is FedAvg)

  static constexpr const char* name() noexcept { return "fedprox"; }
  static constexpr bool linear = true;
  std::size_t min_clients() const noexcept { return 1; }

  template <std::floating_point T>
  struct state {
    state(const fedprox& /*policy*/, std::size_t /*dimension*/) noexcept {}
  };

  template <std::floating_point T>
  void apply(state<T>& /*st*/, std::span<T> global, std::span<const T> mean) const noexcept {
    std::copy(mean.begin(), mean.end(), global.begin());
  }
};

// ---------------------------------------------------------------------------
// FedOpt family: FedAdam, FedYogi, FedAdagrad
// ---------------------------------------------------------------------------

/// Bias correction of FedAdam's step size.
enum class adam_bias_correction : std::uint8_t {
  none,       ///< η_t = η (Reddi et al. 2021, Algorithm 2)
  kingma_ba,  ///< η_t = η · √(1 − β2^t) / (1 − β1^t), t = 1, 2, … (Kingma & Ba 2015)
  flower,     ///< η_t = η · √(1 − β2^(t+1)) / (1 − β1^(t+1)): Flower's `FedAdam` (exponent is round + 1)
};

namespace detail {
/// Shared FedOpt step: Δ = mean − w, m ← β1 m + (1 − β1) Δ, v ← rule(v, Δ²),
/// w ← w + η_t · m / (√v + τ).
template <std::floating_point T, class VRule>
void fedopt_step(std::span<T> global, std::span<const T> mean, std::vector<T>& m, std::vector<T>& v, T beta_1,
                 T eta_t, T tau, VRule rule) {
  TINYLARGE_REQUIRE(m.size() == global.size() && v.size() == global.size() && mean.size() == global.size(),
                    errc::shape_mismatch, "fedopt: state size");
  for (std::size_t j = 0; j < global.size(); ++j) {
    const T delta = mean[j] - global[j];
    const T mj = beta_1 * m[j] + (T(1) - beta_1) * delta;
    const T vj = rule(v[j], delta * delta);
    m[j] = mj;
    v[j] = vj;
    global[j] += eta_t * mj / (std::sqrt(vj) + tau);
  }
}

/// Moments of the FedOpt policies.
template <std::floating_point T>
struct fedopt_state {
  std::vector<T> m;        ///< first moment m_t (zeros before round 1)
  std::vector<T> v;        ///< second moment v_t (zeros before round 1, as in Flower)
  std::size_t rounds = 0;  ///< completed rounds t
  explicit fedopt_state(std::size_t dimension) : m(dimension, T(0)), v(dimension, T(0)) {}
};
}  // namespace detail

/// FedAdam (Reddi et al., "Adaptive Federated Optimization", ICLR 2021,
/// Algorithm 2), as Flower's `FedAdam`:
///
///     Δ_t = avg_t − w_t
///     m_t = β1 · m_{t−1} + (1 − β1) · Δ_t
///     v_t = β2 · v_{t−1} + (1 − β2) · Δ_t²
///     w_{t+1} = w_t + η_t · m_t / (√v_t + τ)
///
/// with η_t per `bias_correction` (Flower's form by default). Defaults are
/// Flower's: η = 0.1, η_l = 0.1, β1 = 0.9, β2 = 0.99, τ = 1e−9.
struct fedadam {
  float eta = 1e-1f;     ///< server learning rate η
  float eta_l = 1e-1f;   ///< client learning rate η_l (read by the workflow, unused by the server)
  float beta_1 = 0.9f;   ///< β1
  float beta_2 = 0.99f;  ///< β2
  float tau = 1e-9f;     ///< τ, adaptivity
  adam_bias_correction bias_correction = adam_bias_correction::flower;

  static constexpr const char* name() noexcept { return "fedadam"; }
  static constexpr bool linear = true;
  std::size_t min_clients() const noexcept { return 1; }

  template <std::floating_point T>
  struct state : detail::fedopt_state<T> {
    state(const fedadam& /*policy*/, std::size_t dimension) : detail::fedopt_state<T>(dimension) {}
  };

  /// η_t for round t = 1, 2, … (double precision).
  double step_size(std::size_t t) const noexcept {
    const double b1 = beta_1, b2 = beta_2;
    const auto e = static_cast<double>(t) + (bias_correction == adam_bias_correction::flower ? 1.0 : 0.0);
    if (bias_correction == adam_bias_correction::none) return eta;
    return static_cast<double>(eta) * std::sqrt(1.0 - std::pow(b2, e)) / (1.0 - std::pow(b1, e));
  }

  template <std::floating_point T>
  void apply(state<T>& st, std::span<T> global, std::span<const T> mean) const {
    const T b2 = static_cast<T>(beta_2);
    const T eta_t = static_cast<T>(step_size(st.rounds + 1));
    detail::fedopt_step(global, mean, st.m, st.v, static_cast<T>(beta_1), eta_t, static_cast<T>(tau),
                        [b2](T v, T d2) { return b2 * v + (T(1) - b2) * d2; });
    ++st.rounds;
  }
};

/// FedYogi (Reddi et al. 2021, Algorithm 2), as Flower's `FedYogi`:
///
///     Δ_t = avg_t − w_t
///     m_t = β1 · m_{t−1} + (1 − β1) · Δ_t
///     v_t = v_{t−1} − (1 − β2) · Δ_t² · sign(v_{t−1} − Δ_t²)
///     w_{t+1} = w_t + η · m_t / (√v_t + τ)
///
/// Defaults are Flower's: η = 0.01, η_l = 0.0316, β1 = 0.9, β2 = 0.99,
/// τ = 1e−3. v starts at 0 (Flower); the paper suggests v_{−1} ≥ τ².
struct fedyogi {
  float eta = 1e-2f;
  float eta_l = 0.0316f;  ///< client learning rate (for the workflow)
  float beta_1 = 0.9f;
  float beta_2 = 0.99f;
  float tau = 1e-3f;

  static constexpr const char* name() noexcept { return "fedyogi"; }
  static constexpr bool linear = true;
  std::size_t min_clients() const noexcept { return 1; }

  template <std::floating_point T>
  struct state : detail::fedopt_state<T> {
    state(const fedyogi& /*policy*/, std::size_t dimension) : detail::fedopt_state<T>(dimension) {}
  };

  template <std::floating_point T>
  void apply(state<T>& st, std::span<T> global, std::span<const T> mean) const {
    const T b2 = static_cast<T>(beta_2);
    detail::fedopt_step(global, mean, st.m, st.v, static_cast<T>(beta_1), static_cast<T>(eta), static_cast<T>(tau),
                        [b2](T v, T d2) {
                          const T diff = v - d2;
                          const T sign = diff > T(0) ? T(1) : (diff < T(0) ? T(-1) : T(0));
                          return v - (T(1) - b2) * d2 * sign;
                        });
    ++st.rounds;
  }
};

/// FedAdagrad (Reddi et al. 2021, Algorithm 2), as Flower's `FedAdagrad`:
///
///     Δ_t = avg_t − w_t
///     m_t = β1 · m_{t−1} + (1 − β1) · Δ_t     (Flower fixes β1 = 0: m_t = Δ_t)
///     v_t = v_{t−1} + Δ_t²
///     w_{t+1} = w_t + η · m_t / (√v_t + τ)
///
/// Defaults are Flower's: η = 0.1, η_l = 0.1, τ = 1e−9, β1 = 0.
struct fedadagrad {
  float eta = 1e-1f;
  float eta_l = 1e-1f;  ///< client learning rate (for the workflow)
  float beta_1 = 0.0f;  ///< the paper allows momentum; Flower uses 0
  float tau = 1e-9f;

  static constexpr const char* name() noexcept { return "fedadagrad"; }
  static constexpr bool linear = true;
  std::size_t min_clients() const noexcept { return 1; }

  template <std::floating_point T>
  struct state : detail::fedopt_state<T> {
    state(const fedadagrad& /*policy*/, std::size_t dimension) : detail::fedopt_state<T>(dimension) {}
  };

  template <std::floating_point T>
  void apply(state<T>& st, std::span<T> global, std::span<const T> mean) const {
    detail::fedopt_step(global, mean, st.m, st.v, static_cast<T>(beta_1), static_cast<T>(eta), static_cast<T>(tau),
                        [](T v, T d2) { return v + d2; });
    ++st.rounds;
  }
};

// ---------------------------------------------------------------------------
// Bounded trust in client reports
// ---------------------------------------------------------------------------

/// How much a server believes of what one client reports, applied to each
/// update before it is weighted (workflow/federated_deploy.hpp, workflow/split_deploy.hpp):
///
///  - **example count** n_i: clipped to `max_examples` (a count is the
///    client's own claim; set the cap to the largest honest local data set,
///    which the server usually knows, so that a client claiming 2³² weighs
///    no more than the largest honest one);
///  - **update norm** (norm bounding, Sun et al., "Can You Really Backdoor
///    Federated Learning?", 2019): with Δ_i = w_i − w_t,
///
///        w_i ← w_t + Δ_i · min(1, C / ‖Δ_i‖₂),     C = `max_update_norm`,
///
///    computed in double (an update of FLT_MAX values has ‖Δ‖ ≈ 1.8e38·√d,
///    finite in double, and is scaled back onto the ball).
///
/// Guarantee for the linear policies (FedAvg and its server optimisers see
/// the weighted mean): every bounded update lies in the ball B(w_t, C), so
/// the mean does too — ‖avg_t − w_t‖ ≤ C whatever the clients send — and a
/// client with count share s = n_max / (n_max + Σ honest n_i) moves the mean
/// at most 2·s·C away from the mean of the honest clients alone. The defaults
/// (count 2³¹−1, C = +∞) bound nothing but the count's type: set both for a
/// deployment. An update within the bounds is left bit for bit as it came.
struct report_bounds {
  std::int64_t max_examples = 0x7FFFFFFF;                            ///< counts above are clipped to it
  double max_update_norm = std::numeric_limits<double>::infinity();  ///< C; +∞: no norm bound
};

/// What `bound_report` did to one client's report.
struct bounded_report {
  std::int64_t examples = 0;   ///< the count to weight with (≤ max_examples)
  double norm = 0.0;           ///< ‖Δ_i‖₂ as received (NaN/∞ for non-finite updates, which are left alone)
  bool count_clipped = false;
  bool norm_clipped = false;
};

/// Applies `b` to one update (in place) and its count; `global` is w_t.
/// Non-finite updates are returned untouched (the aggregator rejects them).
template <std::floating_point T>
bounded_report bound_report(const report_bounds& b, std::span<T> update, std::span<const T> global,
                            std::int64_t examples) {
  TINYLARGE_REQUIRE(update.size() == global.size(), errc::shape_mismatch, "bound_report: update and model differ in size");
  TINYLARGE_REQUIRE(b.max_examples >= 1 && b.max_update_norm > 0.0, errc::invalid_argument,
                    "report_bounds: max_examples must be ≥ 1 and max_update_norm > 0");
  bounded_report r;
  r.examples = examples;
  if (examples > b.max_examples) {
    r.examples = b.max_examples;
    r.count_clipped = true;
  }
  if (b.max_update_norm == std::numeric_limits<double>::infinity()) return r;
  double sq = 0.0;
  for (std::size_t j = 0; j < update.size(); ++j) {
    const double d = static_cast<double>(update[j]) - static_cast<double>(global[j]);
    sq += d * d;
  }
  r.norm = std::sqrt(sq);
  if (!(r.norm > b.max_update_norm) || !std::isfinite(r.norm)) return r;  // within the ball, or non-finite
  const double scale = b.max_update_norm / r.norm;
  for (std::size_t j = 0; j < update.size(); ++j) {
    const double w = static_cast<double>(global[j]);
    update[j] = static_cast<T>(w + (static_cast<double>(update[j]) - w) * scale);
  }
  r.norm_clipped = true;
  return r;
}

static_assert(aggregation_policy<fedavg> && aggregation_policy<fedavgm> && aggregation_policy<fedprox>);
static_assert(aggregation_policy<fedadam> && aggregation_policy<fedyogi> && aggregation_policy<fedadagrad>);

}  // namespace tinylarge
