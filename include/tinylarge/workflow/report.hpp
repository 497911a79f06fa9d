/// @file workflow/report.hpp
/// @brief What every workflow returns: accuracy per round, bytes and messages
///        up and down per role, MACs per role, hops, and an estimated round
///        time from a link model.
///
/// All split-learning and federated workflows fill the same `report`, so that
/// their costs can be compared in one table (examples/split_fashion_mnist,
/// examples/federated_fashion_mnist) and written as JSON.
///
/// Accounting conventions:
///  - "up" is towards the server (device → edge → cloud), "down" away from it;
///  - bytes are payload bytes as encoded by the codec in use (fp32, fp16, int8
///    + scale, …), plus any fixed per-message metadata the codec sends;
///  - a *message* is one transfer between two parties; a *sequential hop* is a
///    transfer that must finish before the next computation can start (the
///    critical path), which is what the link model turns into wall time.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace tinylarge::workflow {

/// Traffic of one party in one round.
struct traffic {
  std::uint64_t bytes_up = 0;
  std::uint64_t bytes_down = 0;
  std::uint64_t messages_up = 0;
  std::uint64_t messages_down = 0;

  traffic& operator+=(const traffic& o) noexcept {
    bytes_up += o.bytes_up;
    bytes_down += o.bytes_down;
    messages_up += o.messages_up;
    messages_down += o.messages_down;
    return *this;
  }
};

/// One party (a client, an edge server, the server) in one round.
struct role_cost {
  std::string role;       ///< "client", "edge", "server", "fed_server"
  std::size_t id = 0;     ///< client or server index
  traffic net;            ///< what it sent (up) and received (down)
  std::uint64_t macs = 0; ///< multiply-accumulates it executed (forward + backward)
  double seconds = 0.0;   ///< its download + compute + upload time (wireless fleet model, channel.hpp; else 0)
  double joules = 0.0;    ///< its energy (wireless fleet model; else 0)
};

/// Link and compute model used to estimate wall time (all rates > 0).
struct link_model {
  double uplink_bytes_per_s = 1.25e6;    ///< device → server per hop (10 Mbit/s)
  double downlink_bytes_per_s = 2.5e6;   ///< server → device per hop (20 Mbit/s)
  double latency_s = 0.02;               ///< per message, per hop
  double device_macs_per_s = 50e6;       ///< a Cortex-M7-class device
  double edge_macs_per_s = 5e9;          ///< an edge gateway
  double server_macs_per_s = 200e9;      ///< a server
};

/// Everything measured in one round.
struct round_record {
  std::size_t round = 0;
  double train_loss = 0.0;
  double test_accuracy = 0.0;         ///< in [0, 1]; NaN when not evaluated this round
  std::vector<role_cost> parties;     ///< every client, edge server and server
  std::uint64_t sequential_hops = 0;  ///< transfers on the critical path
  std::uint64_t messages = 0;         ///< all transfers
  double estimated_seconds = 0.0;     ///< wall time from the link model
  // With a wireless fleet model (federated_options::wireless):
  long long straggler = -1;           ///< client on the critical path (the slowest of the longest wave); -1: none
  std::size_t outages = 0;            ///< clients that missed the round for a rate below the threshold
  double energy_joules = 0.0;         ///< all clients' energy
};

/// The result of running a workflow.
struct report {
  std::string workflow;               ///< e.g. "psl", "splitfed_v1", "fedavg"
  std::vector<round_record> rounds;

  double final_accuracy() const noexcept { return rounds.empty() ? 0.0 : rounds.back().test_accuracy; }

  /// Sum of one field over all rounds and all parties with the given role
  /// (empty role: every party).
  template <class F>
  std::uint64_t total(F field, const std::string& role = {}) const {
    std::uint64_t sum = 0;
    for (const auto& r : rounds)
      for (const auto& p : r.parties)
        if (role.empty() || p.role == role) sum += field(p);
    return sum;
  }
  double total_seconds() const noexcept {
    double s = 0.0;
    for (const auto& r : rounds) s += r.estimated_seconds;
    return s;
  }
};

}  // namespace tinylarge::workflow
