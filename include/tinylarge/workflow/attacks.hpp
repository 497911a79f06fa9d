/// @file workflow/attacks.hpp
/// @brief Simulated faults and Byzantine clients for the federated workflows:
///        which clients misbehave in a round, and what they send instead of
///        their honest update.
///
/// Available attacks (`attack_kind`), applied to a client's honest new
/// weights w_i after local training from the global model w_t, with the
/// honest update Δ_i = w_i − w_t:
///
/// | kind | what the client sends | what should happen on the server |
/// |---|---|---|
/// | `none` | w_i | aggregated |
/// | `sign_flip` | w_t − λ·Δ_i (λ = `magnitude`, 1 by default: the pure sign flip of Fang et al. 2020 / Li et al. 2019 RSA) | robust rules resist it; FedAvg shifts towards −Δ |
/// | `scaling` | w_t + λ·Δ_i (λ = `magnitude`; use 10 for the usual ×10 boosting attack, Bhagoji et al. 2019) | FedAvg is dragged; median / Krum resist |
/// | `gaussian_noise` | w_i + N(0, σ²) per coordinate (σ = `noise_stddev`; Blanchard et al. 2017's "Gaussian Byzantine") | Krum / median resist |
/// | `non_finite` | w_i with NaN in the first coordinate (a fp16/fp32 update) or a NaN scale (an int8 update) | rejected by the aggregator (`non_finite` / `bad_encoding`), never aggregated |
/// | `wrong_length` | w_i without its last coordinate | rejected (`wrong_length`), never aggregated |
///
/// Who attacks (`byzantine::selection`):
///  - `per_round` (default): in every round exactly ⌊fraction · m⌋ of the m
///    clients that report are Byzantine (chosen at random among them). This is
///    the setting of the robustness literature, where the server's rule is
///    configured for a known f (Krum's and Bulyan's `num_malicious`).
///  - `fixed_clients`: ⌊fraction · K⌋ of the K clients are Byzantine for the
///    whole run; the count per round then varies with the sampling.
///
/// All randomness comes from the `tl::rng` the workflow passes in, so an
/// attacked run repeats bit for bit.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <vector>

#include "../core/config.hpp"
#include "../core/error.hpp"
#include "../core/rng.hpp"

namespace tinylarge::workflow {

/// What a Byzantine or faulty client sends (see the file comment).
enum class attack_kind : std::uint8_t { none, sign_flip, scaling, gaussian_noise, non_finite, wrong_length };

/// Name of an attack, for tables and JSON.
constexpr const char* to_string(attack_kind k) noexcept {
  switch (k) {
    case attack_kind::none: return "none";
    case attack_kind::sign_flip: return "sign_flip";
    case attack_kind::scaling: return "scaling";
    case attack_kind::gaussian_noise: return "gaussian_noise";
    case attack_kind::non_finite: return "non_finite";
    case attack_kind::wrong_length: return "wrong_length";
  }
  return "unknown";
}

/// Configuration of the simulated Byzantine clients of a run.
struct byzantine {
  /// How the attackers are chosen.
  enum class selection : std::uint8_t {
    per_round,      ///< exactly ⌊fraction · m⌋ of each round's m reporting clients
    fixed_clients,  ///< ⌊fraction · K⌋ clients, the same for the whole run
  };
  attack_kind kind = attack_kind::none;
  double fraction = 0.0;          ///< in [0, 1]
  selection who = selection::per_round;
  float magnitude = 1.0f;         ///< λ of sign_flip and scaling
  float noise_stddev = 1.0f;      ///< σ of gaussian_noise

  bool active() const noexcept { return kind != attack_kind::none && fraction > 0.0; }
};

/// Marks the attackers among `count` clients (true = Byzantine): exactly
/// ⌊fraction · count⌋ of them, chosen uniformly at random with `r`.
/// @throws tl::invalid_argument when fraction is outside [0, 1].
inline std::vector<bool> choose_attackers(std::size_t count, double fraction, rng& r) {
  TINYLARGE_REQUIRE(fraction >= 0.0 && fraction <= 1.0, errc::invalid_argument,
                    "choose_attackers: the Byzantine fraction must be in [0, 1]");
  const auto k = static_cast<std::size_t>(std::floor(fraction * static_cast<double>(count) + 1e-9));
  std::vector<std::uint32_t> order(count);
  for (std::size_t i = 0; i < count; ++i) order[i] = static_cast<std::uint32_t>(i);
  r.shuffle(order.data(), order.size());
  std::vector<bool> bad(count, false);
  for (std::size_t i = 0; i < k; ++i) bad[order[i]] = true;
  return bad;
}

/// Replaces the honest weights `w` (trained from `global`) in place by what
/// the attack sends. For `wrong_length` the caller sends `w` without its last
/// element (this function leaves `w` unchanged and returns the length to
/// send); for `non_finite` on an int8 update the caller corrupts the scale
/// instead (see the file comment). Returns the number of elements to send.
/// @throws tl::shape_mismatch when `w` and `global` differ in size.
inline std::size_t apply_attack(const byzantine& b, std::span<float> w, std::span<const float> global, rng& r) {
  TINYLARGE_REQUIRE(w.size() == global.size(), errc::shape_mismatch,
                    "apply_attack: the client's weights and the global weights differ in size");
  switch (b.kind) {
    case attack_kind::none: break;
    case attack_kind::sign_flip:
      for (std::size_t j = 0; j < w.size(); ++j) w[j] = global[j] - b.magnitude * (w[j] - global[j]);
      break;
    case attack_kind::scaling:
      for (std::size_t j = 0; j < w.size(); ++j) w[j] = global[j] + b.magnitude * (w[j] - global[j]);
      break;
    case attack_kind::gaussian_noise:
      for (float& v : w) v += r.normal(0.0f, b.noise_stddev);
      break;
    case attack_kind::non_finite:
      if (!w.empty()) w[0] = std::numeric_limits<float>::quiet_NaN();
      break;
    case attack_kind::wrong_length: return w.empty() ? 0 : w.size() - 1;
  }
  return w.size();
}

}  // namespace tinylarge::workflow
