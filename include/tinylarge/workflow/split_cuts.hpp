/// @file workflow/split_cuts.hpp
/// @brief Split learning with a cut point per device: every client trains the
///        layers its compute and its links can afford, the server runs the
///        rest (`tl::per_device_cuts<Traits, Scheme, Cuts...>`), and the cut
///        chosen for each device from its profile (`choose_cuts`).
///
/// @code
///   // LeNet-300-100: a device runs dense<784,300>+relu (cut<2>, 300 values up)
///   // or also dense<300,100>+relu (cut<4>, 100 values up, 13 % more MACs).
///   using run_t = tl::per_device_cuts<wearable_fleet, tl::split_scheme::splitfed_v1, tl::cut<2>, tl::cut<4>>;
///   run_t::options o{.rounds = 10, .batch_size = 16, .sync_every = 1};
///   o.wireless = fleet;                                   // one device_profile per client
///   const std::vector<std::size_t> cuts = run_t::choose_cuts(o, steps);  // index into <cut<2>, cut<4>> per client
///   // or run_t::choose_cuts(o, steps, tl::cut_goal::least_energy): no slower round, less energy
///   run_t run{o};
///   tl::workflow::report r = run.train(train, parts, cuts, &test);
/// @endcode
///
/// ## What runs
/// The clients that share a cut form a *group*; each group is the workflow
/// `split_learning<Traits with partition = Cut, Scheme>` over its clients
/// (one engine per candidate cut, so every group's segments, codecs, precision
/// and accounting are those of the ordinary workflow at that cut). All groups
/// start from the same seeded model and run each round side by side; at the
/// end of the round the server averages the groups' whole models (device
/// segment + server segments, the layout of `nn::network<model>::parameters()`),
/// weighted by the groups' sample counts, and every group continues from that
/// average. `Traits::aggregation` must be `fedavg`: a group's aggregate is
/// then a sample-weighted mean, and the weighted mean of those is FedAvg over
/// the groups' clients. With SplitFedV1 (every client on its own server copy,
/// everything averaged at the end of the round) a round is SplitFedV1's round
/// over all clients with each client's passes split at its own cut; with a
/// sequential scheme (VSL, SplitFedV2, EdgeSplit) each group runs its own
/// sequence and the groups' results are averaged — a hybrid of the scheme
/// and FedAvg, not the scheme over all clients. A single group is the plain
/// workflow, bit for bit (tested). The average
/// reaches the clients with the download that starts every round, so the
/// scheme must have one (`downloads_each_round`: not PSL / EPSL, whose
/// clients keep their segments between rounds — a static_assert says so).
///
/// ## The band and the round time
/// With a wireless fleet (`split_options::wireless`, one profile per client)
/// the cell's band is divided between the groups in proportion to their
/// client counts (each group's engine sees a cell of that bandwidth and that
/// share of the access point's power), so a client transmitting with all
/// the others still gets 1/N of the band, as in the single-cut workflow.
/// The groups run concurrently: a round lasts as long as the slowest group's
/// (`estimated_seconds` = max, hops = max, bytes / messages / energy summed).
/// The server's compute for all groups is charged to each group at the
/// server's full rate (with 200 G MAC/s against devices' 20–200 M MAC/s, it
/// is under 1 % of a round in the documented scenario).
///
/// ## Choosing a cut (`choose_cuts`)
/// For every device, among the candidate cuts whose training footprint fits
/// its `device_profile::memory_bytes` — 4·(3·P + b·A) bytes: weights,
/// gradients and one optimizer state per parameter P of its segment, and
/// the activations A per sample of the segment's layers kept for backward —
/// the one with the least expected round time (`cut_goal::fastest`), or the
/// least expected energy among those that finish within the round's
/// expected critical path (`cut_goal::least_energy`), from
/// `split_learning::expected_round_cost`: per iteration, compute at its
/// rate, the smashed data up and their gradients down; per synchronisation,
/// the device segment down and up; all at its mean-SNR rates on 1/N of the
/// band (fading lowers the mean rate below that: Jensen). A device that fits
/// none gets an error naming it. Each device's round time depends on its own
/// cut only, so `fastest` also minimises the slowest device's expected round
/// time over all assignments.
///
/// Not supported (static_asserts): compressed sides (their masks and
/// codebooks belong to one segment), multi-hop cuts (`cut<K1, K2>`), other
/// aggregation rules than `fedavg`.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <span>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "../aggregate/policy.hpp"
#include "../core/error.hpp"
#include "../data/partition.hpp"
#include "channel.hpp"
#include "report.hpp"
#include "split_engine.hpp"

namespace tinylarge {

/// What `per_device_cuts::choose_cuts` optimises.
enum class cut_goal {
  /// every device its least expected round time (which also minimises the
  /// slowest device's: each device's time depends on its own cut only)
  fastest,
  /// every device its least expected energy among the cuts that finish within
  /// the round's expected critical path — the slowest device's least time,
  /// T* = max over devices of their fastest round — so the round takes no
  /// longer than with `fastest`, and devices that would wait anyway spend less
  least_energy,
};

namespace split_detail {
/// Traits with the partition replaced by `Cut`.
template <class Traits, class Cut>
struct traits_at_cut : Traits {
  using partition = Cut;
};
/// Activations per sample of every layer of `Seg` (what backward keeps).
template <class Seg>
constexpr std::size_t activations_per_sample() noexcept {
  return []<std::size_t... I>(std::index_sequence<I...>) {
    return (std::size_t{0} + ... + Seg::template layer<I>::out_shape::size);
  }(std::make_index_sequence<Seg::size>{});
}
}  // namespace split_detail

/// Split learning with a cut point per device (see the file comment).
/// @tparam Traits as for `split_learning` (its `partition` is ignored)
/// @tparam Scheme a `split_scheme_policy` with `downloads_each_round`
/// @tparam Cuts the candidate cuts, each `cut<K>`
template <class Traits, class Scheme, class... Cuts>
class per_device_cuts {
  static_assert(sizeof...(Cuts) >= 1, "tinylarge: per_device_cuts: give at least one candidate cut (cut<K>)");
  static_assert(((Cuts::cuts == 1) && ...),
                "tinylarge: per_device_cuts: every candidate must be a single cut cut<K> (multi-hop cuts are not "
                "supported per device)");

 public:
  /// The workflow of the clients at candidate cut I.
  template <std::size_t I>
  using engine = split_learning<split_detail::traits_at_cut<Traits, std::tuple_element_t<I, std::tuple<Cuts...>>>, Scheme>;
  using first = engine<0>;
  using model = typename first::model;
  using options = typename first::options;
  static constexpr std::size_t candidates = sizeof...(Cuts);

  static_assert(std::is_same_v<typename first::aggregation, fedavg>,
                "tinylarge: per_device_cuts: Traits::aggregation must be fedavg (the groups' models are averaged "
                "by sample count, which is FedAvg over all clients only for FedAvg)");
  static_assert(Scheme::downloads_each_round,
                "tinylarge: per_device_cuts: Scheme must download the device segment every round "
                "(downloads_each_round): the groups' average reaches the clients with that download (not PSL / EPSL)");
  static_assert(!first::device_compressed && !first::server_compressed,
                "tinylarge: per_device_cuts: Traits::device / Traits::server: compressed sides are not supported "
                "(masks and codebooks belong to one segment)");

  /// Device segment's parameters P, activations per sample A and MACs per
  /// sample at candidate I.
  template <std::size_t I>
  static constexpr std::size_t device_params = engine<I>::device_model::param_count;
  template <std::size_t I>
  static constexpr std::size_t device_activations = split_detail::activations_per_sample<typename engine<I>::device_model>();
  /// Training footprint of a device at candidate I (see the file comment).
  template <std::size_t I>
  static constexpr std::uint64_t device_training_bytes(std::size_t b) noexcept {
    return 4 * (3 * static_cast<std::uint64_t>(device_params<I>) + static_cast<std::uint64_t>(b) * device_activations<I>);
  }

  explicit per_device_cuts(options opt = {}, Scheme s = {}) : opt_(std::move(opt)), scheme_(std::move(s)) {}

  /// Expected round cost of every device (rows) at every candidate
  /// (columns; `split_learning::expected_round_cost`), seconds and joules =
  /// infinity where the candidate's training footprint exceeds the device's memory.
  static std::vector<std::array<workflow::client_cost, candidates>> expected_costs(const options& o, std::size_t steps) {
    const workflow::wireless_fleet& air = o.wireless;
    TINYLARGE_REQUIRE(air.enabled(), errc::invalid_argument,
                      "per_device_cuts: choosing cuts needs the devices (split_options::wireless)");
    const std::size_t n = air.devices.size(), b = o.batch_size;
    std::vector<std::array<workflow::client_cost, candidates>> out(n);
    for (std::size_t c = 0; c < n; ++c) {
      const workflow::device_profile& dev = air.devices[c];
      [&]<std::size_t... I>(std::index_sequence<I...>) {
        ((out[c][I] = static_cast<double>(device_training_bytes<I>(b)) > dev.memory_bytes
                          ? workflow::client_cost{.seconds = std::numeric_limits<double>::infinity(),
                                                  .joules = std::numeric_limits<double>::infinity()}
                          : engine<I>::expected_round_cost(air.access_point, dev, n, b, steps, o.sync_every)),
         ...);
      }(std::make_index_sequence<candidates>{});
    }
    return out;
  }

  /// Per client (the fleet's devices, in order) the index of its cut among
  /// `Cuts...`, among the cuts whose training footprint fits its memory:
  /// the least expected round time (`cut_goal::fastest`), or the least
  /// expected energy within the round's expected critical path
  /// (`cut_goal::least_energy`; see `cut_goal`).
  /// @param steps iterations per round (`split_options::steps_per_round`, or
  ///        ⌈mean local samples / batch⌉ as the workflow computes it)
  /// @throws tl::invalid_argument without a fleet, or when a device fits no candidate
  static std::vector<std::size_t> choose_cuts(const options& o, std::size_t steps, cut_goal goal = cut_goal::fastest) {
    const auto costs = expected_costs(o, steps);
    const std::size_t n = costs.size();
    std::vector<std::size_t> fastest(n);
    double critical = 0.0;  // T*: the slowest device's least time
    for (std::size_t c = 0; c < n; ++c) {
      std::size_t pick = 0;
      for (std::size_t k = 1; k < candidates; ++k)
        if (costs[c][k].seconds < costs[c][pick].seconds) pick = k;
      TINYLARGE_REQUIRE(std::isfinite(costs[c][pick].seconds), errc::invalid_argument,
                        "per_device_cuts::choose_cuts: device " + std::to_string(c) + " (" +
                            std::to_string(o.wireless.devices[c].memory_bytes) +
                            " bytes) cannot hold any candidate segment for training");
      fastest[c] = pick;
      critical = std::max(critical, costs[c][pick].seconds);
    }
    if (goal == cut_goal::fastest) return fastest;
    std::vector<std::size_t> out = fastest;
    for (std::size_t c = 0; c < n; ++c)
      for (std::size_t k = 0; k < candidates; ++k)
        if (costs[c][k].seconds <= critical && costs[c][k].joules < costs[c][out[c]].joules) out[c] = k;
    return out;
  }

  /// Train on `train`, client c on `parts[c]` at cut `cut_of[c]` (an index
  /// into `Cuts...`), evaluating on `test` (optional).
  /// @return one record per round: every client (its own id), one "server"
  ///         and one "fed_server" per group (id = the cut index)
  /// @throws tl::invalid_argument for a cut index out of range, a fleet of
  ///         the wrong size, or as `split_learning::train`
  workflow::report train(const nn::labelled_view<std::uint8_t>& train, const data::partition_t& parts,
                         std::span<const std::size_t> cut_of, const nn::labelled_view<std::uint8_t>* test = nullptr) {
    const std::size_t n = parts.size();
    TINYLARGE_REQUIRE(cut_of.size() == n, errc::invalid_argument,
                      "per_device_cuts::train: give one cut index per client");
    TINYLARGE_REQUIRE(!opt_.wireless.enabled() || opt_.wireless.devices.size() == n, errc::invalid_argument,
                      "per_device_cuts::train: the wireless fleet has " + std::to_string(opt_.wireless.devices.size()) +
                          " devices for " + std::to_string(n) + " clients; give one per client");
    TINYLARGE_REQUIRE(opt_.fleet_ids.empty() || opt_.fleet_ids.size() == n, errc::invalid_argument,
                      "per_device_cuts::train: fleet_ids has " + std::to_string(opt_.fleet_ids.size()) + " ids for " +
                          std::to_string(n) + " clients; give one per client or none");
    for (std::size_t c = 0; c < n; ++c)
      TINYLARGE_REQUIRE(cut_of[c] < candidates, errc::invalid_argument,
                        "per_device_cuts::train: client " + std::to_string(c) + " has cut index " +
                            std::to_string(cut_of[c]) + ", there are " + std::to_string(candidates) + " candidates");
    // The groups: members (global ids), their data, their share of the band.
    members_ = {};
    parts_ = {};
    std::array<std::uint64_t, candidates> samples{};
    for (std::size_t c = 0; c < n; ++c) {
      members_[cut_of[c]].push_back(c);
      parts_[cut_of[c]].push_back(parts[c]);
      samples[cut_of[c]] += parts[c].size();
    }
    std::uint64_t total = 0;
    for (auto s : samples) total += s;
    [&]<std::size_t... I>(std::index_sequence<I...>) {
      ((std::get<I>(engines_).reset(members_[I].empty() ? nullptr : new engine<I>(group_options(I, n), scheme_))), ...);
      ((members_[I].empty() ? void() : std::get<I>(engines_)->begin(train, parts_[I])), ...);
    }(std::make_index_sequence<candidates>{});

    workflow::report rep;
    rep.workflow = std::string(Scheme::name()) + " per-device cuts";
    for (std::size_t r = 1; r <= opt_.rounds; ++r) {
      workflow::round_record rec;
      rec.round = r;
      double loss = 0.0;
      std::vector<double> sum(model::param_count, 0.0);
      [&]<std::size_t... I>(std::index_sequence<I...>) {
        ((members_[I].empty() ? void() : merge(I, *std::get<I>(engines_), samples[I], total, rec, loss, sum)), ...);
      }(std::make_index_sequence<candidates>{});
      rec.train_loss = loss;
      // The whole models' sample-weighted mean → every group.
      std::vector<float> w(model::param_count);
      for (std::size_t j = 0; j < w.size(); ++j) w[j] = static_cast<float>(sum[j] / static_cast<double>(total));
      [&]<std::size_t... I>(std::index_sequence<I...>) {
        ((members_[I].empty() ? void() : std::get<I>(engines_)->set_global_parameters(w)), ...);
      }(std::make_index_sequence<candidates>{});
      global_ = std::move(w);
      const bool eval = test != nullptr && (r == opt_.rounds || (opt_.evaluate_every != 0 && r % opt_.evaluate_every == 0));
      rec.test_accuracy = eval ? accuracy(*test) : std::numeric_limits<double>::quiet_NaN();
      if (opt_.wireless.enabled()) {
        double busiest = -1.0;
        for (const auto& p : rec.parties)
          if (p.role == "client" && p.seconds > busiest) {
            busiest = p.seconds;
            rec.straggler = static_cast<long long>(p.id);
          }
      }
      rep.rounds.push_back(std::move(rec));
    }
    return rep;
  }

  /// Test accuracy of the current global model (run by the first group's
  /// workflow: its device segment, uplink codec and server segments).
  double accuracy(const nn::labelled_view<std::uint8_t>& test) {
    double a = std::numeric_limits<double>::quiet_NaN();
    bool done = false;
    [&]<std::size_t... I>(std::index_sequence<I...>) {
      ((!done && !members_[I].empty() ? (a = std::get<I>(engines_)->accuracy(test), done = true) : false), ...);
    }(std::make_index_sequence<candidates>{});
    TINYLARGE_REQUIRE(done, errc::invalid_argument, "per_device_cuts::accuracy: no model yet (call train first)");
    return a;
  }

  /// The whole model after the last round (the groups' average).
  std::span<const float> global_parameters() const noexcept { return global_; }
  /// The clients of candidate cut I in the last `train` (global ids).
  std::span<const std::size_t> group(std::size_t i) const {
    TINYLARGE_REQUIRE(i < candidates, errc::invalid_argument, "per_device_cuts::group: no such candidate");
    return members_[i];
  }

 private:
  /// Group i's options: its devices and their fleet ids (a client's fading
  /// is the same in whichever group it runs), and a cell whose band and
  /// downlink power are the group's share (its client count over n) of the cell's.
  options group_options(std::size_t i, std::size_t n) const {
    options o = opt_;
    o.fleet_ids.clear();
    for (std::size_t c : members_[i]) o.fleet_ids.push_back(opt_.fleet_ids.empty() ? c : opt_.fleet_ids[c]);
    if (opt_.wireless.enabled()) {
      o.wireless.devices.clear();
      for (std::size_t c : members_[i]) o.wireless.devices.push_back(opt_.wireless.devices[c]);
      const double f = static_cast<double>(members_[i].size()) / static_cast<double>(n);
      o.wireless.access_point.uplink_hz *= f;
      o.wireless.access_point.downlink_hz *= f;
      o.wireless.access_point.ap_tx_power_dbm += workflow::to_db(f);
    }
    return o;
  }

  /// Runs group i's round and adds it to `rec`: parties (clients by their
  /// global id, the group's servers by i), bytes, hops, time, energy, the
  /// sample-weighted loss, and its whole model × its samples into `sum`.
  template <class E>
  void merge(std::size_t i, E& e, std::uint64_t samples, std::uint64_t total, workflow::round_record& rec,
             double& loss, std::vector<double>& sum) {
    workflow::round_record g = e.train_round(nullptr);
    for (auto p : g.parties) {
      if (p.role == "client")
        p.id = members_[i][p.id];
      else
        p.id = i;
      rec.parties.push_back(std::move(p));
    }
    rec.messages += g.messages;
    rec.sequential_hops = std::max(rec.sequential_hops, g.sequential_hops);
    rec.estimated_seconds = std::max(rec.estimated_seconds, g.estimated_seconds);
    rec.energy_joules += g.energy_joules;
    const double weight = static_cast<double>(samples) / static_cast<double>(total);
    loss += g.train_loss * weight;
    const std::vector<float> w = e.global_parameters();
    for (std::size_t j = 0; j < w.size(); ++j) sum[j] += static_cast<double>(w[j]) * static_cast<double>(samples);
  }

  template <class Seq>
  struct engines_of;
  template <std::size_t... I>
  struct engines_of<std::index_sequence<I...>> {
    using type = std::tuple<std::unique_ptr<engine<I>>...>;
  };

  options opt_;
  Scheme scheme_;
  typename engines_of<std::make_index_sequence<candidates>>::type engines_;  ///< null for an empty group
  std::array<std::vector<std::size_t>, candidates> members_;  ///< global client ids per candidate cut
  std::array<data::partition_t, candidates> parts_;           ///< their data
  std::vector<float> global_;                                  ///< the last round's average
};

}  // namespace tinylarge
