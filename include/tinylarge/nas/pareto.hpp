/// @file nas/pareto.hpp
/// @brief Multi-objective tools: Pareto dominance (with Deb's constraint
///        handling), fast non-dominated sorting, crowding distance and the
///        2-D hypervolume.
///
/// Every objective is **minimised** (maximise accuracy by minimising
/// 1 − accuracy). References: Deb, Pratap, Agarwal, Meyarivan, "A fast and
/// elitist multiobjective genetic algorithm: NSGA-II", IEEE TEC 6(2), 2002
/// (§III-A fast non-dominated sort, §III-B crowding distance, §VI
/// constrained domination); Zitzler & Thiele 1998 (hypervolume, the
/// "S-metric").
#pragma once

#include <algorithm>
#include <cstddef>
#include <limits>
#include <numeric>
#include <utility>
#include <vector>

#include "../core/error.hpp"

namespace tinylarge::nas {

/// A point in objective space (every coordinate minimised).
using point = std::vector<double>;

/// Pareto dominance: a ≤ b in every objective and a < b in at least one.
inline bool dominates(const point& a, const point& b) noexcept {
  bool strictly = false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (a[i] > b[i]) return false;
    if (a[i] < b[i]) strictly = true;
  }
  return strictly;
}

/// Deb's constrained domination (NSGA-II §VI): with violations va, vb ≥ 0
/// (0 = feasible), a dominates b when a is feasible and b is not, or both are
/// infeasible and va < vb, or both are feasible and `dominates(a, b)`.
inline bool constrained_dominates(const point& a, double va, const point& b, double vb) noexcept {
  const bool fa = va <= 0, fb = vb <= 0;
  if (fa && !fb) return true;
  if (!fa && !fb) return va < vb;
  if (!fa && fb) return false;
  return dominates(a, b);
}

/// Fast non-dominated sorting (NSGA-II §III-A), O(M·N²): the fronts F₁, F₂, …
/// as lists of indices into `pts`; F₁ holds the points no other point
/// dominates, Fₖ₊₁ those dominated only by points of F₁ … Fₖ. Indices
/// within a front are increasing. `violation` (empty = all feasible, else
/// one value per point) switches to `constrained_dominates`.
inline std::vector<std::vector<std::size_t>> non_dominated_sort(const std::vector<point>& pts,
                                                                 const std::vector<double>& violation = {}) {
  const std::size_t n = pts.size();
  TINYLARGE_REQUIRE(violation.empty() || violation.size() == n, errc::shape_mismatch,
                    "nas::non_dominated_sort: one violation per point");
  auto dom = [&](std::size_t a, std::size_t b) {
    return violation.empty() ? dominates(pts[a], pts[b]) : constrained_dominates(pts[a], violation[a], pts[b], violation[b]);
  };
  std::vector<std::vector<std::size_t>> dominated(n);  // S_p
  std::vector<std::size_t> count(n, 0);                // n_p
  std::vector<std::vector<std::size_t>> fronts;
  std::vector<std::size_t> current;
  for (std::size_t p = 0; p < n; ++p) {
    for (std::size_t q = 0; q < n; ++q) {
      if (p == q) continue;
      if (dom(p, q)) dominated[p].push_back(q);
      else if (dom(q, p)) ++count[p];
    }
    if (count[p] == 0) current.push_back(p);
  }
  while (!current.empty()) {
    fronts.push_back(current);
    std::vector<std::size_t> next;
    for (std::size_t p : current)
      for (std::size_t q : dominated[p])
        if (--count[q] == 0) next.push_back(q);
    std::sort(next.begin(), next.end());
    current = std::move(next);
  }
  return fronts;
}

/// Crowding distance of each member of one front (NSGA-II §III-B): for each
/// objective m, sort the front by m; the two extremes get +∞ and an interior
/// member i gets += (f_m[next] − f_m[prev]) / (f_m^max − f_m^min) (an
/// objective with f_m^max = f_m^min adds nothing). Returned in the order of
/// `front`.
inline std::vector<double> crowding_distance(const std::vector<point>& pts, const std::vector<std::size_t>& front) {
  const std::size_t n = front.size();
  std::vector<double> d(n, 0.0);
  if (n == 0) return d;
  const double inf = std::numeric_limits<double>::infinity();
  if (n <= 2) {
    std::fill(d.begin(), d.end(), inf);
    return d;
  }
  const std::size_t m = pts[front[0]].size();
  std::vector<std::size_t> order(n);
  for (std::size_t k = 0; k < m; ++k) {
    std::iota(order.begin(), order.end(), std::size_t{0});
    std::stable_sort(order.begin(), order.end(),
                     [&](std::size_t a, std::size_t b) { return pts[front[a]][k] < pts[front[b]][k]; });
    const double lo = pts[front[order.front()]][k], hi = pts[front[order.back()]][k];
    d[order.front()] = inf;
    d[order.back()] = inf;
    if (hi - lo <= 0) continue;
    for (std::size_t i = 1; i + 1 < n; ++i)
      d[order[i]] += (pts[front[order[i + 1]]][k] - pts[front[order[i - 1]]][k]) / (hi - lo);
  }
  return d;
}

/// Indices of the non-dominated points of `pts` (the first front), increasing.
inline std::vector<std::size_t> pareto_front(const std::vector<point>& pts) {
  std::vector<std::size_t> front;
  for (std::size_t p = 0; p < pts.size(); ++p) {
    bool dominated = false;
    for (std::size_t q = 0; q < pts.size() && !dominated; ++q) dominated = q != p && dominates(pts[q], pts[p]);
    if (!dominated) front.push_back(p);
  }
  return front;
}

/// Hypervolume of a set of 2-D points (both minimised) with respect to the
/// reference point (r₀, r₁): the area of the union of the boxes
/// [x₀, r₀] × [x₁, r₁] over the points that strictly dominate the reference
/// (others add nothing). Sweep: sort the non-dominated points by x₀
/// ascending (so x₁ descends) and sum (next x₀ − x₀)·(r₁ − x₁), with the
/// last "next x₀" being r₀.
inline double hypervolume_2d(const std::vector<point>& pts, const point& reference) {
  TINYLARGE_REQUIRE(reference.size() == 2, errc::shape_mismatch, "nas::hypervolume_2d: the reference must be 2-D");
  std::vector<std::pair<double, double>> inside;
  for (const point& p : pts) {
    TINYLARGE_REQUIRE(p.size() == 2, errc::shape_mismatch, "nas::hypervolume_2d: points must be 2-D");
    if (p[0] < reference[0] && p[1] < reference[1]) inside.emplace_back(p[0], p[1]);
  }
  std::sort(inside.begin(), inside.end());
  // Keep the staircase: each kept point has a strictly smaller x₁ than all before it.
  std::vector<std::pair<double, double>> stairs;
  for (const auto& p : inside)
    if (stairs.empty() || p.second < stairs.back().second) stairs.push_back(p);
  double hv = 0;
  for (std::size_t i = 0; i < stairs.size(); ++i) {
    const double next_x = i + 1 < stairs.size() ? stairs[i + 1].first : reference[0];
    hv += (next_x - stairs[i].first) * (reference[1] - stairs[i].second);
  }
  return hv;
}

}  // namespace tinylarge::nas
