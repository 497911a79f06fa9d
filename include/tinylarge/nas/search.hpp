/// @file nas/search.hpp
/// @brief Search strategies over an `mlp_space`, seeded, with a budget in
///        evaluations: random search, regularised evolution and NSGA-II; and
///        the front and hypervolume of a search's history.
///
/// An evaluator is any callable `objectives(const genome&)`
/// (`transfer_evaluator`, or a synthetic function in tests). Each strategy
/// calls it exactly `budget` times and returns the history: every evaluated
/// candidate in evaluation order. With a deterministic evaluator a seed fixes
/// the history.
///
///  - `random_search`: `budget` genomes drawn by `mlp_space::sample`.
///  - `regularized_evolution` (Real, Aggarwal, Huang, Le, "Regularized
///    Evolution for Image Classifier Architecture Search", AAAI 2019,
///    Algorithm 1): a population of `population` random genomes; each cycle
///    draws `sample` members uniformly (without replacement), mutates the
///    fittest, evaluates the child, appends it and removes the *oldest*
///    member (aging). Fitness is single-objective: `fitness(objectives)` =
///    accuracy for a feasible candidate, −violation otherwise, so any
///    feasible candidate beats any infeasible one.
///  - `nsga2` (Deb et al. 2002): population N, binary tournament on (rank,
///    crowding distance), uniform crossover then one mutation, elitist
///    (μ + λ) survival by non-dominated fronts and crowding distance, with
///    Deb's constrained domination; objectives (1 − accuracy, flash bytes).
#pragma once

#include <algorithm>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <limits>
#include <vector>

#include "../core/error.hpp"
#include "../core/rng.hpp"
#include "pareto.hpp"
#include "profile.hpp"
#include "space.hpp"

namespace tinylarge::nas {

/// A callable that scores a genome.
template <class E>
concept evaluator = requires(E& e, const genome& g) {
  { e(g) } -> std::convertible_to<objectives>;
};

/// One evaluated genome.
struct candidate {
  genome g;        ///< the architecture
  objectives obj;  ///< its scores
};

/// Options of `random_search`.
struct random_search_options {
  std::size_t budget = 100;  ///< evaluations
  std::uint64_t seed = 1;    ///< sampling
};

/// Options of `regularized_evolution`.
struct evolution_options {
  std::size_t budget = 100;     ///< evaluations (the initial population included)
  std::size_t population = 20;  ///< P
  std::size_t sample = 5;       ///< S, tournament size (≤ P)
  std::uint64_t seed = 1;       ///< sampling and mutation
};

/// Options of `nsga2`.
struct nsga2_options {
  std::size_t budget = 100;      ///< evaluations (the initial population included)
  std::size_t population = 20;   ///< N
  double crossover_rate = 0.9;   ///< probability that a child is a crossover of two parents before its mutation
  std::uint64_t seed = 1;        ///< sampling, selection, variation
};

/// The scalar fitness of regularised evolution: accuracy when feasible,
/// −violation otherwise.
inline double fitness(const objectives& o) noexcept { return o.feasible() ? o.accuracy : -o.violation; }

/// The minimised objective vector of NSGA-II and of the fronts:
/// (1 − accuracy, flash bytes).
inline point accuracy_flash(const objectives& o) {
  return {1.0 - o.accuracy, static_cast<double>(o.flash_bytes)};
}

/// Random search: `opt.budget` uniform samples of the space.
template <evaluator E>
std::vector<candidate> random_search(const mlp_space& space, E&& eval, const random_search_options& opt) {
  tinylarge::rng g(opt.seed);
  std::vector<candidate> history;
  for (std::size_t i = 0; i < opt.budget; ++i) {
    genome x = space.sample(g);
    objectives o = eval(x);
    history.push_back({std::move(x), o});
  }
  return history;
}

/// Regularised (aging) evolution, Real et al. 2019, Algorithm 1 (see the file comment).
template <evaluator E>
std::vector<candidate> regularized_evolution(const mlp_space& space, E&& eval, const evolution_options& opt) {
  TINYLARGE_REQUIRE(opt.population > 0 && opt.sample > 0 && opt.sample <= opt.population, errc::invalid_argument,
                    "nas::regularized_evolution: need 0 < sample <= population");
  tinylarge::rng g(opt.seed);
  std::vector<candidate> history;
  std::deque<std::size_t> population;  // indices into history, oldest first
  while (history.size() < opt.budget && population.size() < opt.population) {
    genome x = space.sample(g);
    objectives o = eval(x);
    history.push_back({std::move(x), o});
    population.push_back(history.size() - 1);
  }
  std::vector<std::size_t> slots(population.size());
  while (history.size() < opt.budget) {
    // S distinct members, uniformly (partial Fisher-Yates over positions).
    for (std::size_t i = 0; i < slots.size(); ++i) slots[i] = i;
    std::size_t parent = population[0];
    double best = -std::numeric_limits<double>::infinity();
    for (std::size_t s = 0; s < opt.sample; ++s) {
      const std::size_t j = s + g.uniform_int(static_cast<std::uint32_t>(slots.size() - s));
      std::swap(slots[s], slots[j]);
      const std::size_t member = population[slots[s]];
      const double f = fitness(history[member].obj);
      if (f > best) {
        best = f;
        parent = member;
      }
    }
    genome child = space.mutate(history[parent].g, g);
    objectives o = eval(child);
    history.push_back({std::move(child), o});
    population.push_back(history.size() - 1);
    population.pop_front();  // aging: the oldest dies, not the worst
  }
  return history;
}

namespace detail {
/// Rank (front number, 0 = first) and crowding distance of each of `members`.
inline void rank_and_crowd(const std::vector<candidate>& history, const std::vector<std::size_t>& members,
                           std::vector<std::size_t>& rank, std::vector<double>& crowd,
                           std::vector<std::vector<std::size_t>>& fronts) {
  std::vector<point> pts;
  std::vector<double> viol;
  for (std::size_t m : members) {
    pts.push_back(accuracy_flash(history[m].obj));
    viol.push_back(history[m].obj.violation);
  }
  fronts = non_dominated_sort(pts, viol);
  rank.assign(members.size(), 0);
  crowd.assign(members.size(), 0.0);
  for (std::size_t f = 0; f < fronts.size(); ++f) {
    const std::vector<double> d = crowding_distance(pts, fronts[f]);
    for (std::size_t i = 0; i < fronts[f].size(); ++i) {
      rank[fronts[f][i]] = f;
      crowd[fronts[f][i]] = d[i];
    }
  }
}
}  // namespace detail

/// NSGA-II over (1 − accuracy, flash bytes) with constrained domination (see the file comment).
template <evaluator E>
std::vector<candidate> nsga2(const mlp_space& space, E&& eval, const nsga2_options& opt) {
  TINYLARGE_REQUIRE(opt.population >= 2, errc::invalid_argument, "nas::nsga2: the population must be >= 2");
  tinylarge::rng g(opt.seed);
  std::vector<candidate> history;
  std::vector<std::size_t> pop;  // indices into history
  while (history.size() < opt.budget && pop.size() < opt.population) {
    genome x = space.sample(g);
    objectives o = eval(x);
    history.push_back({std::move(x), o});
    pop.push_back(history.size() - 1);
  }
  std::vector<std::size_t> rank;
  std::vector<double> crowd;
  std::vector<std::vector<std::size_t>> fronts;
  while (history.size() < opt.budget) {
    detail::rank_and_crowd(history, pop, rank, crowd, fronts);
    auto tournament = [&]() {
      const std::size_t a = g.uniform_int(static_cast<std::uint32_t>(pop.size()));
      const std::size_t b = g.uniform_int(static_cast<std::uint32_t>(pop.size()));
      if (rank[a] != rank[b]) return rank[a] < rank[b] ? a : b;
      return crowd[b] > crowd[a] ? b : a;  // crowded-comparison operator
    };
    std::vector<std::size_t> next = pop;
    const std::size_t offspring = std::min(opt.population, opt.budget - history.size());
    for (std::size_t k = 0; k < offspring; ++k) {
      const genome& p1 = history[pop[tournament()]].g;
      genome child = p1;
      if (g.uniform() < opt.crossover_rate) child = space.crossover(p1, history[pop[tournament()]].g, g);
      child = space.mutate(child, g);
      objectives o = eval(child);
      history.push_back({std::move(child), o});
      next.push_back(history.size() - 1);
    }
    // (μ + λ) survival: whole fronts while they fit, then the least crowded of the next.
    detail::rank_and_crowd(history, next, rank, crowd, fronts);
    pop.clear();
    for (const auto& front : fronts) {
      if (pop.size() + front.size() <= opt.population) {
        for (std::size_t i : front) pop.push_back(next[i]);
        continue;
      }
      std::vector<std::size_t> order = front;
      std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return crowd[a] > crowd[b]; });
      for (std::size_t i = 0; pop.size() < opt.population; ++i) pop.push_back(next[order[i]]);
      break;
    }
  }
  return history;
}

/// Indices (into `history`) of its feasible candidates that no other feasible
/// candidate dominates on (1 − accuracy, flash), sorted by flash ascending.
/// Duplicated genomes appear once.
inline std::vector<std::size_t> feasible_front(const std::vector<candidate>& history) {
  std::vector<std::size_t> ids;
  std::vector<point> pts;
  for (std::size_t i = 0; i < history.size(); ++i) {
    if (!history[i].obj.feasible()) continue;
    bool seen = false;
    for (std::size_t j : ids) seen = seen || history[j].g == history[i].g;
    if (seen) continue;
    ids.push_back(i);
    pts.push_back(accuracy_flash(history[i].obj));
  }
  std::vector<std::size_t> front;
  for (std::size_t k : pareto_front(pts)) front.push_back(ids[k]);
  std::sort(front.begin(), front.end(), [&](std::size_t a, std::size_t b) {
    return history[a].obj.flash_bytes < history[b].obj.flash_bytes;
  });
  return front;
}

/// Hypervolume of the feasible (accuracy, flash) front of `history`, in the
/// normalised square: points (1 − accuracy, flash / flash_reference) against
/// the reference (1, 1). 1 would be a zero-byte model of accuracy 1.
inline double front_hypervolume(const std::vector<candidate>& history, std::size_t flash_reference) {
  TINYLARGE_REQUIRE(flash_reference > 0, errc::invalid_argument, "nas::front_hypervolume: flash_reference must be > 0");
  std::vector<point> pts;
  for (std::size_t i : feasible_front(history))
    pts.push_back({1.0 - history[i].obj.accuracy,
                   static_cast<double>(history[i].obj.flash_bytes) / static_cast<double>(flash_reference)});
  return hypervolume_2d(pts, {1.0, 1.0});
}

}  // namespace tinylarge::nas
