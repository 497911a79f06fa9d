/// @file workflow/selection.hpp
/// @brief The client-selection axis of the federated workflows: the
///        `selection_policy` concept, `uniform_selection` (the trivial member,
///        McMahan et al.'s m clients without replacement), and two link-aware
///        policies over a wireless fleet (workflow/channel.hpp):
///        `channel_aware_selection` and `deadline_aware_selection`.
///
/// A policy is chosen in the traits struct (`using selection = …;`, default
/// `uniform_selection`) and, when it has hyperparameters, passed by value to
/// the workflow's constructor, like `aggregation`. It runs inside the server
/// role's `fedavg_server::select` (workflow/federated_roles.hpp), the one
/// selection path of the in-process simulation and of the deployments.
///
/// The interface (all members are checked by `selection_policy`):
///  - `static constexpr const char* name()`;
///  - `static constexpr bool needs_links`: true when `choose` reads this
///    round's links and predicted costs. Such a policy needs a wireless fleet
///    (`federated_options::wireless`) and fixed-size sampling (not Poisson);
///    the deployment drivers have no link model and refuse it at compile time;
///  - `std::size_t choose(std::span<std::uint32_t> pool, std::size_t m,
///    std::span<const candidate_link> links, rng& r) const`: `pool` holds the
///    ids of the clients not yet asked this round; the policy moves the ones
///    it picks (at most m) to the front, in any order, and returns how many.
///    `links[k]` is client k's link and predicted round cost (indexed by
///    client id, empty when `needs_links` is false). Randomness comes from `r`
///    only (the server's seeded stream), so a seed repeats the selection.
///
/// **Bias.** A link-aware policy is not a uniform sample: clients near the
/// access point, with fast processors or few examples, are asked more often,
/// and under label skew their labels are over-represented in the global
/// model (docs/federated.md gives the measured figures: clients never
/// selected and the total-variation distance of the selected labels).
#pragma once

#include <algorithm>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <string>
#include <tuple>

#include "../core/error.hpp"
#include "../core/rng.hpp"
#include "channel.hpp"

namespace tinylarge::workflow {

/// What a link-aware selection sees of one client this round: its links
/// (fading drawn once for the round; the same draw is then charged in the
/// accounting, on the band share of the wave actually sent) and its
/// predicted cost on an equal share 1/m of the band.
struct candidate_link {
  link_state link{};
  client_cost cost{};  ///< predicted time and energy (`cost.outage`: it cannot be reached)
};

/// The client-selection axis (see the file comment).
template <class S>
concept selection_policy =
    std::copy_constructible<S> &&
    requires { { S::name() } -> std::convertible_to<const char*>; } &&
    requires { { std::bool_constant<S::needs_links>{} }; } &&
    requires(const S& s, std::span<std::uint32_t> pool, std::size_t m, std::span<const candidate_link> links, rng& r) {
      { s.choose(pool, m, links, r) } -> std::convertible_to<std::size_t>;
    };

/// Uniform sampling without replacement (McMahan et al., Algorithm 1): a
/// partial Fisher–Yates shuffle of the pool. The trivial member of the axis
/// and the default.
struct uniform_selection {
  static constexpr const char* name() noexcept { return "uniform"; }
  static constexpr bool needs_links = false;
  std::size_t choose(std::span<std::uint32_t> pool, std::size_t m, std::span<const candidate_link> /*links*/,
                     rng& r) const {
    const std::size_t n = std::min(m, pool.size());
    for (std::size_t i = 0; i < n; ++i)
      std::swap(pool[i], pool[i + r.uniform_int(static_cast<std::uint32_t>(pool.size() - i))]);
    return n;
  }
};

namespace detail {
/// A candidate's predicted round time, +∞ when it is in outage.
inline double predicted_seconds(const candidate_link& c) noexcept {
  return c.cost.outage ? std::numeric_limits<double>::infinity() : c.cost.seconds;
}
}  // namespace detail

/// The m clients with the shortest predicted round time this round
/// (download + compute + upload on this round's fading, equal shares 1/m),
/// ties broken by client id; no randomness. It minimises the straggler's
/// time of the round it selects, at the price of a biased sample.
struct channel_aware_selection {
  static constexpr const char* name() noexcept { return "channel_aware"; }
  static constexpr bool needs_links = true;
  std::size_t choose(std::span<std::uint32_t> pool, std::size_t m, std::span<const candidate_link> links,
                     rng& /*r*/) const {
    const std::size_t n = std::min(m, pool.size());
    std::partial_sort(pool.begin(), pool.begin() + static_cast<std::ptrdiff_t>(n), pool.end(),
                      [&](std::uint32_t a, std::uint32_t b) {
                        return std::tuple(detail::predicted_seconds(links[a]), a) <
                               std::tuple(detail::predicted_seconds(links[b]), b);
                      });
    return n;
  }
};

/// Uniform among the clients whose predicted round time fits `deadline_s`
/// (not in outage); fewer than m when not enough fit, none when none does
/// (the round then fails and the model is unchanged). The wave actually sent
/// shares the band among fewer clients than predicted or as many, so no
/// selected client's time exceeds its prediction.
struct deadline_aware_selection {
  double deadline_s = 1.0;  ///< seconds a client has for download + compute + upload
  static constexpr const char* name() noexcept { return "deadline_aware"; }
  static constexpr bool needs_links = true;
  /// @throws tl::invalid_argument when the deadline is not positive (NaN included).
  std::size_t choose(std::span<std::uint32_t> pool, std::size_t m, std::span<const candidate_link> links,
                     rng& r) const {
    TINYLARGE_REQUIRE(deadline_s > 0.0, errc::invalid_argument,
                      "deadline_aware_selection: deadline_s must be positive, got " + std::to_string(deadline_s));
    const auto fits = std::stable_partition(pool.begin(), pool.end(), [&](std::uint32_t c) {
      return detail::predicted_seconds(links[c]) <= deadline_s;
    });
    const auto count = static_cast<std::size_t>(fits - pool.begin());
    return uniform_selection{}.choose(pool.first(count), m, links, r);
  }
};

static_assert(selection_policy<uniform_selection>);
static_assert(selection_policy<channel_aware_selection>);
static_assert(selection_policy<deadline_aware_selection>);

}  // namespace tinylarge::workflow
