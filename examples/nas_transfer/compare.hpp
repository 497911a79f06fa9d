// The part of the architecture-search examples that is the same for every task
// (nas_transfer on Fashion-MNIST, nas_traffic on the traffic task): random search,
// regularised evolution and NSGA-II at one budget for several seeds, their
// hypervolumes, and the union Pareto front with test accuracies after transfer.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <stdexcept>
#include <set>
#include <string>
#include <vector>

#include "tinylarge/nas/nas.hpp"

namespace examples::nas_compare {

namespace nas = tinylarge::nas;

struct settings {
  std::size_t budget = 60, seeds = 3, population = 16, sample = 4;
  bool latency = false;
};

struct run {
  std::string strategy;
  std::uint64_t seed;
  double hv, seconds, best_acc;
  std::vector<nas::candidate> history;
};

/// Writes `text` to `path`; throws when the file cannot be written (an
/// ofstream to a missing directory fails silently otherwise).
inline void write_file(const std::string& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary);
  f << text;
  f.close();
  if (!f) throw std::runtime_error("cannot write " + path);
}

/// The device profile of a --profile argument (exits with a message on an unknown name).
inline nas::device_profile profile_named(const std::string& name) {
  if (name == "phone") return nas::phone();
  if (name == "edge_server") return nas::edge_server();
  if (name != "cortex_m4") {
    std::fprintf(stderr, "unknown profile %s (cortex_m4, phone, edge_server)\n", name.c_str());
    std::exit(2);
  }
  return nas::cortex_m4();
}

inline double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

/// Runs the three strategies for seeds 1…s.seeds and prints one table row per
/// run, the mean hypervolumes and on how many seeds evolution beat random.
inline std::vector<run> strategies(const nas::mlp_space& space, nas::transfer_evaluator& eval, const settings& s,
                                   std::size_t flash_ref) {
  std::vector<run> runs;
  std::printf("\n| strategy | seed | evaluations | distinct genomes | feasible front size | hypervolume | best val accuracy "
              "(feasible) | front flash range (bytes) | seconds |\n|---|---|---|---|---|---|---|---|---|\n");
  for (std::uint64_t seed = 1; seed <= s.seeds; ++seed) {
    for (const char* name : {"random", "evolution", "nsga2"}) {
      const auto t0 = std::chrono::steady_clock::now();
      const std::size_t distinct_before = eval.distinct();
      std::vector<nas::candidate> h;
      const std::string n = name;
      if (n == "random") h = nas::random_search(space, eval, {.budget = s.budget, .seed = seed});
      else if (n == "evolution")
        h = nas::regularized_evolution(space, eval,
                                       {.budget = s.budget, .population = s.population, .sample = s.sample, .seed = seed});
      else h = nas::nsga2(space, eval, {.budget = s.budget, .population = s.population, .seed = seed});
      double best = 0;
      for (const auto& c : h)
        if (c.obj.feasible()) best = std::max(best, c.obj.accuracy);
      const double hv = nas::front_hypervolume(h, flash_ref);
      const double secs = seconds_since(t0);
      std::set<std::string> keys;
      for (const auto& c : h) keys.insert(c.g.key());
      const auto front = nas::feasible_front(h);
      const std::size_t lo = front.empty() ? 0 : h[front.front()].obj.flash_bytes;
      const std::size_t hi = front.empty() ? 0 : h[front.back()].obj.flash_bytes;
      std::printf("| %s | %llu | %zu | %zu (%zu new) | %zu | %.4f | %.4f | %zu-%zu | %.1f |\n", name,
                  static_cast<unsigned long long>(seed), h.size(), keys.size(), eval.distinct() - distinct_before,
                  front.size(), hv, best, lo, hi, secs);
      std::fflush(stdout);
      runs.push_back({n, seed, hv, secs, best, std::move(h)});
    }
  }
  std::printf("\n| strategy | mean hypervolume | per seed |\n|---|---|---|\n");
  for (const char* name : {"random", "evolution", "nsga2"}) {
    double sum = 0;
    std::string per;
    for (const auto& r : runs)
      if (r.strategy == name) {
        sum += r.hv;
        char b[32];
        std::snprintf(b, sizeof b, "%s%.4f", per.empty() ? "" : ", ", r.hv);
        per += b;
      }
    std::printf("| %s | %.4f | %s |\n", name, sum / static_cast<double>(s.seeds), per.c_str());
  }
  for (const char* name : {"evolution", "nsga2"}) {
    std::size_t wins = 0;
    for (std::uint64_t seed = 1; seed <= s.seeds; ++seed) {
      double hr = 0, h = 0;
      for (const auto& r : runs) {
        if (r.seed != seed) continue;
        if (r.strategy == "random") hr = r.hv;
        if (r.strategy == name) h = r.hv;
      }
      wins += h > hr ? 1 : 0;
    }
    std::printf("%s beats random search on %zu of %zu seeds (hypervolume)\n",
                std::string(name) == "nsga2" ? "NSGA-II" : "regularised evolution", wins, s.seeds);
  }
  return runs;
}

/// Every candidate of every run, in run order.
inline std::vector<nas::candidate> union_of(const std::vector<run>& runs) {
  std::vector<nas::candidate> all;
  for (const auto& r : runs) all.insert(all.end(), r.history.begin(), r.history.end());
  return all;
}

/// Prints the union's feasible front with test accuracies after transfer;
/// returns the index (in `all`) of its member with the best validation accuracy.
inline std::size_t print_front(const std::vector<nas::candidate>& all, const nas::transfer_evaluator& eval,
                               const nas::labelled_data& test, bool latency) {
  const auto front = nas::feasible_front(all);
  bool split = false;  // a split member: flash, arena, MACs and energy are its device segment's
  for (std::size_t i : front) split = split || all[i].g.cut > 0;
  std::printf("\nunion feasible front (%zu models): test accuracy after transfer%s\n", front.size(),
              split ? " (split genomes /cK: device segment's costs)" : "");
  std::printf("| genome | val accuracy | test accuracy | flash bytes | arena bytes | MACs | energy µJ (est.) |%s%s\n",
              latency ? " host latency µs |" : "", split ? " smashed bytes per sample | server flash bytes |" : "");
  std::printf("|---|---|---|---|---|---|---|%s%s\n", latency ? "---|" : "", split ? "---|---|" : "");
  std::size_t best = front.front();
  for (std::size_t i : front) {
    const auto& c = all[i];
    const double test_acc = eval.transfer(c.g, test).accuracy;
    std::printf("| %s | %.4f | %.4f | %zu | %zu | %zu | %.2f |", c.g.key().c_str(), c.obj.accuracy, test_acc,
                c.obj.flash_bytes, c.obj.arena_bytes, c.obj.macs, c.obj.energy_uj);
    if (latency) std::printf(" %.1f |", c.obj.latency_us);
    if (split) std::printf(" %zu | %zu |", c.obj.smashed_bytes, c.obj.server_flash_bytes);
    std::printf("\n");
    if (c.obj.accuracy > all[best].obj.accuracy) best = i;
  }
  return best;
}

}  // namespace examples::nas_compare
