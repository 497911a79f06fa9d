/// @file aggregate/aggregator.hpp
/// @brief `aggregator<Policy>`: validates one round of client updates and
///        applies an aggregation policy to the global weights.
///
///     tl::aggregator<tl::fedadam> agg(tl::fedadam{.eta = 0.05f}, model_size);
///     std::vector<tl::client_result<tl::fp16_update>> results = ...;
///     tl::round_report r = agg.round(global_weights, results);
///     if (!r.updated()) log(r.outcome.message);
///     for (auto& rej : r.rejected) log(rej.client_id, tl::to_string(rej.reason));
///
/// Validation (client updates are untrusted). An update is rejected, with
/// the reason recorded, and never aggregated when
///  - its client id already appeared in this round (`duplicate_client`; the
///    first result counts),
///  - its length differs from the model's (`wrong_length`),
///  - num_examples ≤ 0 (`bad_example_count`),
///  - its int8 metadata is invalid (`bad_encoding`),
///  - it holds a NaN or ±Inf (`non_finite`).
/// The round then completes from the rest, or — when fewer than the policy's
/// `min_clients()` remain — fails with `outcome` = errc::invalid_argument and
/// leaves the global weights untouched.
///
/// For linear policies the NaN/Inf check costs no extra pass: the weighted
/// mean is computed first and any non-finite input makes its coordinate of the
/// mean non-finite (the coefficients are finite and positive); only then are
/// the updates scanned one by one, the offenders rejected and the mean
/// recomputed. A mean that overflows from finite inputs fails the round with
/// errc::non_finite. General policies scan each update before aggregating.
#pragma once

#include <algorithm>
#include <cmath>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <unordered_set>
#include <vector>

#include "../core/config.hpp"
#include "../core/error.hpp"
#include "policy.hpp"
#include "update.hpp"
#include "update_set.hpp"

namespace tinylarge {

/// What happened to one round.
struct round_report {
  std::size_t round = 0;                  ///< 1 for the first call of `aggregator::round`
  std::vector<std::uint64_t> accepted;    ///< client ids aggregated, in input order
  std::vector<rejection> rejected;        ///< client ids left out, with the reason
  status outcome;                         ///< ok when the global weights were updated
  bool updated() const noexcept { return outcome.ok(); }
};

/// Holds a policy, its per-run state and scratch buffers, and runs rounds.
///
/// @tparam Policy an `aggregation_policy` (`fedavg`, `fedadam`, `krum`, …).
/// @tparam T      element type of the global weights (float on the server).
template <aggregation_policy Policy, std::floating_point T = float>
class aggregator {
 public:
  using policy_type = Policy;
  using state_type = typename Policy::template state<T>;

  aggregator(const Policy& policy, std::size_t dimension)
      : policy_(policy), dimension_(dimension), state_(policy_, dimension) {}

  const Policy& policy() const noexcept { return policy_; }
  state_type& state() noexcept { return state_; }
  const state_type& state() const noexcept { return state_; }
  std::size_t dimension() const noexcept { return dimension_; }
  std::size_t rounds() const noexcept { return rounds_; }

  /// Parameters per block of the weighted-mean kernel (tuning knob).
  void set_sum_block(std::size_t elems) noexcept { sum_block_ = std::max<std::size_t>(elems, 1); }

  /// Validates `results`, aggregates the accepted ones into `global` (the
  /// model w_t on entry, w_{t+1} on success; untouched on failure).
  template <update_encoding U>
  round_report round(std::span<T> global, std::span<const client_result<U>> results) {
    TINYLARGE_REQUIRE(global.size() == dimension_, errc::shape_mismatch,
                      "aggregator::round: global weights have the wrong size");
    round_report report;
    report.round = ++rounds_;
    std::vector<const client_result<U>*> ok;
    ok.reserve(results.size());
    std::unordered_set<std::uint64_t> seen;
    for (const client_result<U>& r : results) {
      if (!seen.insert(r.client_id).second) {
        report.rejected.push_back({r.client_id, rejection_reason::duplicate_client});
      } else if (r.update.size() != dimension_) {
        report.rejected.push_back({r.client_id, rejection_reason::wrong_length});
      } else if (r.num_examples <= 0) {
        report.rejected.push_back({r.client_id, rejection_reason::bad_example_count});
      } else if (!r.update.check_encoding().ok()) {
        report.rejected.push_back({r.client_id, rejection_reason::bad_encoding});
      } else {
        ok.push_back(&r);
      }
    }

    if constexpr (linear_aggregation<Policy>) {
      report.outcome = linear_round(global, ok, report);
    } else {
      drop_non_finite(ok, report);
      report.outcome = enough(ok.size());
      if (report.outcome.ok()) {
        const update_set<U> set(ok, dimension_);
        report.outcome = policy_.aggregate(state_, global, set);
      }
    }
    report.accepted.reserve(ok.size());
    for (const auto* r : ok) report.accepted.push_back(r->client_id);
    return report;
  }

  /// Convenience overload for a vector of results.
  template <update_encoding U>
  round_report round(std::span<T> global, const std::vector<client_result<U>>& results) {
    return round(global, std::span<const client_result<U>>(results));
  }

 private:
  status enough(std::size_t n) const noexcept {
    TINYLARGE_CHECK(n >= policy_.min_clients() && n > 0, errc::invalid_argument,
                    "aggregation round: fewer valid updates than the policy's min_clients()");
    return status::success();
  }

  template <update_encoding U>
  void drop_non_finite(std::vector<const client_result<U>*>& ok, round_report& report) const {
    if constexpr (U::may_be_non_finite) {
      const update_set<U> all(ok, dimension_);
      std::vector<const client_result<U>*> kept;
      kept.reserve(ok.size());
      for (std::size_t i = 0; i < ok.size(); ++i) {
        if (all.has_non_finite(i)) {
          report.rejected.push_back({ok[i]->client_id, rejection_reason::non_finite});
        } else {
          kept.push_back(ok[i]);
        }
      }
      ok.swap(kept);
    } else {
      (void)ok;
      (void)report;
    }
  }

  template <update_encoding U>
  void weighted_mean(const std::vector<const client_result<U>*>& ok) {
    double total = 0.0;
    for (const auto* r : ok) total += static_cast<double>(r->num_examples);
    coef_.resize(ok.size());
    for (std::size_t i = 0; i < ok.size(); ++i) coef_[i] = static_cast<T>(static_cast<double>(ok[i]->num_examples) / total);
    const update_set<U> set(ok, dimension_);
    set.weighted_sum(std::span<const T>(coef_), std::span<T>(mean_), {}, {}, sum_block_);
  }

  bool mean_is_finite() const noexcept {
    unsigned bad = 0;
    for (const T v : mean_) bad |= (std::fabs(v) <= std::numeric_limits<T>::max()) ? 0u : 1u;
    return bad == 0;
  }

  template <update_encoding U>
  status linear_round(std::span<T> global, std::vector<const client_result<U>*>& ok, round_report& report) {
    TINYLARGE_TRY(enough(ok.size()));
    mean_.resize(dimension_);
    weighted_mean(ok);
    if (!mean_is_finite()) {
      drop_non_finite(ok, report);  // rare path: find the offenders, then redo
      TINYLARGE_TRY(enough(ok.size()));
      weighted_mean(ok);
      TINYLARGE_CHECK(mean_is_finite(), errc::non_finite, "aggregation round: weighted mean overflowed");
    }
    policy_.apply(state_, global, std::span<const T>(mean_));
    return status::success();
  }

  Policy policy_;
  std::size_t dimension_ = 0;
  state_type state_;
  std::size_t rounds_ = 0;
  std::size_t sum_block_ = default_sum_block;
  std::vector<T> mean_;
  std::vector<T> coef_;
};

}  // namespace tinylarge
