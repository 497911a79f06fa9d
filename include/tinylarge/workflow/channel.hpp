/// @file workflow/channel.hpp
/// @brief A wireless fleet: log-distance path loss, Rayleigh / Rician block
///        fading redrawn per round, SNR → Shannon rate on a bandwidth share,
///        outage, and each device's compute rate and energy per MAC and per
///        transmitted bit (host profile).
///
/// The model of one round, for client k at distance d_k from the access point:
///
/// | quantity | formula | source |
/// |---|---|---|
/// | path loss (dB) | PL(d) = 20·log10(4π·d0·f/c) + 10·n·log10(d/d0), d ≥ d0 | log-distance model with a free-space (Friis) reference at d0: Rappaport, *Wireless Communications*, 2nd ed., §4.9 |
/// | mean SNR | γ̄ = P_tx − PL(d) − (N0 + 10·log10(s·B) + NF) (dB) | thermal noise N0 = −174 dBm/Hz (290 K) |
/// | fading | γ = γ̄·\|h\|², h = √(K/(K+1)) + CN(0, 1/(K+1)), E\|h\|² = 1; K = 0 Rayleigh, K = ∞ none | Goldsmith, *Wireless Communications*, §3.2.1 (Rician K factor) |
/// | rate (bit/s) | R = s·B·log2(1 + γ) | Shannon |
/// | outage | R < R_min: the client misses the round | Goldsmith §4.2.2 |
/// | time (s) | t = bits_down/R_down + MACs/(MAC/s) + bits_up/R_up | download, train, upload in sequence |
/// | energy (J) | E = MACs·e_MAC + P_tx·bits_up/R_up + P_rx·bits_down/R_down | per transmitted bit P_tx/R_up |
///
/// `h` is drawn once per client per round and direction (block fading: constant
/// within a round, independent across rounds and between uplink and downlink,
/// as in FDD); s is the client's share of the band (equal shares: 1/k for k
/// scheduled clients). All randomness comes from `tl::rng`, so a seed repeats
/// the same channels.
///
/// For Rayleigh fading the ergodic rate and the outage probability have closed
/// forms (`rayleigh_ergodic_capacity`, `rayleigh_outage_probability`), which
/// the unit tests check the sampler against:
///   E[log2(1 + γ)] = log2(e)·e^{1/γ̄}·E1(1/γ̄),   P(γ < γ_th) = 1 − e^{−γ_th/γ̄}
/// (Alouini and Goldsmith 1999, "Capacity of Rayleigh fading channels under
/// different adaptive transmission and diversity-combining techniques", eq. 7).
///
/// Errors are `tl::invalid_argument` (a distance inside the reference distance,
/// a share outside (0, 1], a rate or power that is not positive and finite).
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <string>
#include <vector>

#include "../core/error.hpp"
#include "../core/rng.hpp"
#include "../data/partition.hpp"  // uniform_open01, normal_double: the one double-precision sampler

namespace tinylarge::workflow {

// ---------------------------------------------------------------------------
// Special functions and closed forms
// ---------------------------------------------------------------------------

/// e^x·E1(x) for x > 0, where E1(x) = ∫_x^∞ e^{−t}/t dt is the exponential
/// integral. Computed without forming e^x (finite for every x > 0): for
/// x ≤ 1 the series E1(x) = −γ_E − ln x − Σ_{k≥1} (−x)^k/(k·k!) times e^x;
/// for x > 1 the continued fraction e^x·E1(x) = 1/(x + 1 − 1/(x + 3 − 4/(x + 5 − …)))
/// evaluated by the modified Lentz method (Numerical Recipes, 3rd ed., §6.3).
/// Relative error below 1e-14 (tests: against values to 17 digits).
/// @throws tl::invalid_argument when x is not positive and finite.
inline double exp_e1(double x) {
  TINYLARGE_REQUIRE(x > 0.0 && std::isfinite(x), errc::invalid_argument,
                    "tinylarge: exp_e1: x must be positive and finite, got " + std::to_string(x));
  constexpr double eps = 1e-16;
  if (x <= 1.0) {
    constexpr double euler_gamma = 0.57721566490153286061;
    double sum = 0.0, term = 1.0;  // term = (−x)^k / k!
    for (int k = 1; k < 100; ++k) {
      term *= -x / k;
      const double add = term / k;
      sum += add;
      if (std::fabs(add) < eps * std::fabs(sum)) break;
    }
    return std::exp(x) * (-euler_gamma - std::log(x) - sum);
  }
  constexpr double tiny = 1e-300;
  double b = x + 1.0, c = 1.0 / tiny, d = 1.0 / b, h = d;
  for (int i = 1; i < 1000; ++i) {
    const double an = -static_cast<double>(i) * i;
    b += 2.0;
    d = 1.0 / (an * d + b);
    c = b + an / c;
    const double del = c * d;
    h *= del;
    if (std::fabs(del - 1.0) < eps) break;
  }
  return h;
}

/// The exponential integral E1(x) = e^{−x}·`exp_e1`(x), x > 0 (underflows to 0 past x ≈ 740).
/// @throws tl::invalid_argument when x is not positive and finite.
inline double exponential_integral_e1(double x) { return std::exp(-x) * exp_e1(x); }

/// Ergodic capacity of a Rayleigh channel with mean SNR γ̄ (linear), in
/// bit/s/Hz: E[log2(1 + γ)], γ ~ Exp(mean γ̄), = log2(e)·e^{1/γ̄}·E1(1/γ̄).
/// @throws tl::invalid_argument when γ̄ is not positive and finite.
inline double rayleigh_ergodic_capacity(double mean_snr) {
  TINYLARGE_REQUIRE(mean_snr > 0.0 && std::isfinite(mean_snr), errc::invalid_argument,
                    "tinylarge: rayleigh_ergodic_capacity: the mean SNR must be positive and finite");
  return exp_e1(1.0 / mean_snr) / std::log(2.0);
}

/// Outage probability of a Rayleigh channel: P(γ < γ_th) = 1 − e^{−γ_th/γ̄}.
/// @throws tl::invalid_argument when γ̄ is not positive and finite or γ_th is negative.
inline double rayleigh_outage_probability(double mean_snr, double threshold_snr) {
  TINYLARGE_REQUIRE(mean_snr > 0.0 && std::isfinite(mean_snr) && threshold_snr >= 0.0, errc::invalid_argument,
                    "tinylarge: rayleigh_outage_probability: need a positive finite mean SNR and a threshold >= 0");
  return -std::expm1(-threshold_snr / mean_snr);
}

/// dB → linear power ratio.
inline double from_db(double db) noexcept { return std::pow(10.0, db / 10.0); }
/// Linear power ratio → dB.
inline double to_db(double ratio) noexcept { return 10.0 * std::log10(ratio); }

// ---------------------------------------------------------------------------
// Propagation
// ---------------------------------------------------------------------------

/// Log-distance path loss with a free-space reference (Rappaport §4.9):
/// PL(d) = 20·log10(4π·d0·f/c) + 10·n·log10(d/d0) dB, for d ≥ d0.
///
/// Defaults: f = 2.4 GHz (PL(1 m) = 40.05 dB), n = 3 (Rappaport's Table 4.2
/// gives 2.7–3.5 for urban cellular radio, 2 for free space), d0 = 1 m.
struct path_loss {
  double carrier_hz = 2.4e9;   ///< f
  double exponent = 3.0;       ///< n
  double reference_m = 1.0;    ///< d0

  /// PL(d) in dB.
  /// @throws tl::invalid_argument when d < d0 or a parameter is not positive and finite.
  double db(double distance_m) const {
    TINYLARGE_REQUIRE(carrier_hz > 0.0 && std::isfinite(carrier_hz) && exponent > 0.0 && std::isfinite(exponent) &&
                          reference_m > 0.0 && std::isfinite(reference_m),
                      errc::invalid_argument,
                      "tinylarge: path_loss: carrier, exponent and reference distance must be positive and finite");
    TINYLARGE_REQUIRE(distance_m >= reference_m && std::isfinite(distance_m), errc::invalid_argument,
                      "tinylarge: path_loss: distance " + std::to_string(distance_m) +
                          " m is inside the reference distance " + std::to_string(reference_m) +
                          " m, where the log-distance model does not hold");
    constexpr double c = 299'792'458.0, pi = 3.14159265358979323846;
    return 20.0 * std::log10(4.0 * pi * reference_m * carrier_hz / c) +
           10.0 * exponent * std::log10(distance_m / reference_m);
  }
};

/// Block fading with Rician factor K (power of the line-of-sight path over
/// the scattered power): h = √(K/(K+1)) + √(1/(2(K+1)))·(x + i·y), x, y ~ N(0, 1),
/// so E|h|² = 1 for every K. K = 0 is Rayleigh fading (|h|² ~ Exp(1)), K = ∞
/// no fading (|h|² = 1).
struct fading {
  double rician_k = 0.0;  ///< K ≥ 0 (linear, not dB); infinity: no fading

  /// Rayleigh fading (no line of sight).
  static constexpr fading rayleigh() noexcept { return {0.0}; }
  /// Rician fading with factor K (linear).
  static constexpr fading rician(double k) noexcept { return {k}; }
  /// A constant channel, |h|² = 1.
  static constexpr fading none() noexcept { return {std::numeric_limits<double>::infinity()}; }

  /// One draw of the power gain |h|² (mean 1).
  /// @throws tl::invalid_argument when K is negative or NaN.
  double power_gain(rng& r) const {
    TINYLARGE_REQUIRE(rician_k >= 0.0, errc::invalid_argument,
                      "tinylarge: fading: the Rician K factor must be >= 0 (0: Rayleigh, infinity: no fading)");
    if (std::isinf(rician_k)) return 1.0;
    const double los = std::sqrt(rician_k / (rician_k + 1.0));
    const double s = std::sqrt(0.5 / (rician_k + 1.0));
    const double re = los + s * data::normal_double(r), im = s * data::normal_double(r);
    return re * re + im * im;
  }
};

// ---------------------------------------------------------------------------
// Devices, the cell, one round's links and costs
// ---------------------------------------------------------------------------

/// One device: where it is, how fast it computes, what it spends.
///
/// The defaults are a Cortex-M7-class wearable: 50 M MAC/s (as
/// `link_model::device_macs_per_s`), 1 nJ per MAC (an order-of-magnitude
/// figure for a 200–400 MHz MCU at ~100 mW, one MAC per cycle; replace it with
/// a measurement of the part), 23 dBm transmit power (3GPP UE power class 3,
/// 200 mW radiated), 0.1 W while receiving.
struct device_profile {
  double distance_m = 100.0;     ///< to the access point
  double macs_per_s = 50e6;      ///< training / inference compute rate
  double joules_per_mac = 1e-9;  ///< compute energy
  double tx_power_dbm = 23.0;    ///< uplink transmit power
  double rx_power_w = 0.1;       ///< power drawn while receiving
  fading channel = fading::rayleigh();
  /// RAM available for training, bytes (what a split workflow's per-device
  /// cut must fit, `per_device_cuts::choose_cuts`); infinity: unconstrained.
  double memory_bytes = std::numeric_limits<double>::infinity();
};

/// The access point and its band, shared by the clients scheduled in a round.
///
/// Defaults: 2.4 GHz, n = 3, 10 MHz up and 10 MHz down, 30 dBm downlink power
/// (a small cell, spread over the band: a client on a share s of the band
/// gets the same power spectral density), thermal noise −174 dBm/Hz, 7 dB
/// receiver noise figure, no rate threshold (no outage).
struct cell {
  path_loss loss{};
  double uplink_hz = 10e6;
  double downlink_hz = 10e6;
  double ap_tx_power_dbm = 30.0;       ///< over the whole downlink band
  double noise_dbm_per_hz = -174.0;    ///< N0 (290 K)
  double noise_figure_db = 7.0;        ///< NF of either receiver
  double min_rate_bps = 0.0;           ///< outage below this rate, either direction
};

/// Mean (fading-free) uplink and downlink SNR, linear, of a device on a share
/// of the band. Uplink: the device's full power on s·B; downlink: the access
/// point's power spread evenly, s of it on s·B.
struct mean_snr {
  double up = 0.0;
  double down = 0.0;
};

/// γ̄ up and down for `dev` on a `share` ∈ (0, 1] of each band.
/// @throws tl::invalid_argument when the share is outside (0, 1] or as `path_loss::db`.
inline mean_snr mean_snr_of(const cell& c, const device_profile& dev, double share) {
  TINYLARGE_REQUIRE(share > 0.0 && share <= 1.0, errc::invalid_argument,
                    "tinylarge: channel: a bandwidth share must be in (0, 1], got " + std::to_string(share));
  TINYLARGE_REQUIRE(c.uplink_hz > 0.0 && c.downlink_hz > 0.0 && std::isfinite(c.uplink_hz) &&
                        std::isfinite(c.downlink_hz),
                    errc::invalid_argument, "tinylarge: channel: the cell's bandwidths must be positive and finite");
  const double pl = c.loss.db(dev.distance_m);
  const double noise_up = c.noise_dbm_per_hz + to_db(share * c.uplink_hz) + c.noise_figure_db;
  const double noise_down = c.noise_dbm_per_hz + to_db(share * c.downlink_hz) + c.noise_figure_db;
  return {from_db(dev.tx_power_dbm - pl - noise_up), from_db(c.ap_tx_power_dbm + to_db(share) - pl - noise_down)};
}

/// One client's links in one round (one fading draw per direction).
struct link_state {
  double gain_up = 1.0, gain_down = 1.0;  ///< |h|²
  double snr_up = 0.0, snr_down = 0.0;    ///< γ = γ̄·|h|², linear
  double rate_up_bps = 0.0, rate_down_bps = 0.0;
  bool outage = false;                    ///< a rate below `cell::min_rate_bps`: misses the round
};

/// `dev`'s links on a `share` of each band for given fading power gains |h|²
/// (up, down): the rates of a round whose fading was drawn already, e.g.
/// once for client selection and again for the band share actually used.
/// @throws tl::invalid_argument as `mean_snr_of`.
inline link_state link_on_share(const cell& c, const device_profile& dev, double share, double gain_up,
                                double gain_down) {
  const mean_snr m = mean_snr_of(c, dev, share);
  link_state s;
  s.gain_up = gain_up;
  s.gain_down = gain_down;
  s.snr_up = m.up * s.gain_up;
  s.snr_down = m.down * s.gain_down;
  s.rate_up_bps = share * c.uplink_hz * std::log2(1.0 + s.snr_up);
  s.rate_down_bps = share * c.downlink_hz * std::log2(1.0 + s.snr_down);
  s.outage = s.rate_up_bps < c.min_rate_bps || s.rate_down_bps < c.min_rate_bps;
  return s;
}

/// Draw `dev`'s links for one round on a `share` of each band: uplink fading,
/// then downlink fading, from `r`.
/// @throws tl::invalid_argument as `mean_snr_of`, `fading::power_gain`.
inline link_state draw_link(const cell& c, const device_profile& dev, double share, rng& r) {
  const double up = dev.channel.power_gain(r);
  const double down = dev.channel.power_gain(r);
  return link_on_share(c, dev, share, up, down);
}

/// The links of every device of a round, each on an equal share 1/k of the
/// band (k = devices.size()), drawn in device order from `r`.
inline std::vector<link_state> draw_links(const cell& c, std::span<const device_profile> devices, rng& r) {
  std::vector<link_state> out;
  out.reserve(devices.size());
  const double share = 1.0 / static_cast<double>(devices.size());
  for (const device_profile& d : devices) out.push_back(draw_link(c, d, share, r));
  return out;
}

/// Time and energy of one client in one round.
struct client_cost {
  double down_s = 0.0, compute_s = 0.0, up_s = 0.0;
  double seconds = 0.0;  ///< down + compute + up (in sequence)
  double compute_j = 0.0, tx_j = 0.0, rx_j = 0.0;
  double joules = 0.0;   ///< compute + tx + rx
  bool outage = false;   ///< not scheduled: no time, no energy
};

/// The cost of a round in which `dev` receives `bytes_down`, executes `macs`
/// and sends `bytes_up` over `link`. A client in outage misses the round and
/// costs nothing (its time and energy are 0).
/// @throws tl::invalid_argument when the device's compute rate or MAC energy
///         is not positive and finite, or a rate needed is 0.
inline client_cost cost_of_round(const device_profile& dev, const link_state& link, std::uint64_t macs,
                                 std::uint64_t bytes_up, std::uint64_t bytes_down) {
  TINYLARGE_REQUIRE(dev.macs_per_s > 0.0 && std::isfinite(dev.macs_per_s) && dev.joules_per_mac >= 0.0 &&
                        std::isfinite(dev.joules_per_mac) && dev.rx_power_w >= 0.0 && std::isfinite(dev.rx_power_w),
                    errc::invalid_argument,
                    "tinylarge: device_profile: macs_per_s must be positive, joules_per_mac and rx_power_w >= 0, "
                    "all finite");
  client_cost k;
  if (link.outage) {
    k.outage = true;
    return k;
  }
  TINYLARGE_REQUIRE((bytes_up == 0 || link.rate_up_bps > 0.0) && (bytes_down == 0 || link.rate_down_bps > 0.0),
                    errc::invalid_argument, "tinylarge: cost_of_round: a link with rate 0 must be in outage");
  const double bits_up = 8.0 * static_cast<double>(bytes_up), bits_down = 8.0 * static_cast<double>(bytes_down);
  k.down_s = bytes_down == 0 ? 0.0 : bits_down / link.rate_down_bps;
  k.up_s = bytes_up == 0 ? 0.0 : bits_up / link.rate_up_bps;
  k.compute_s = static_cast<double>(macs) / dev.macs_per_s;
  k.seconds = k.down_s + k.compute_s + k.up_s;
  k.compute_j = static_cast<double>(macs) * dev.joules_per_mac;
  k.tx_j = from_db(dev.tx_power_dbm - 30.0) * k.up_s;  // W × s: P_tx / R_up per bit
  k.rx_j = dev.rx_power_w * k.down_s;
  k.joules = k.compute_j + k.tx_j + k.rx_j;
  return k;
}

/// A synchronous round: it lasts as long as its slowest scheduled client.
struct round_cost {
  double seconds = 0.0;        ///< the straggler's time (0 when every client is in outage)
  double joules = 0.0;         ///< all clients' energy
  std::size_t straggler = 0;   ///< index of the slowest scheduled client (the critical path); size() if none
  std::size_t outages = 0;     ///< clients that missed the round
};

/// Critical path and total energy of one round's client costs.
inline round_cost critical_path(std::span<const client_cost> clients) noexcept {
  round_cost r;
  r.straggler = clients.size();
  for (std::size_t i = 0; i < clients.size(); ++i) {
    const client_cost& k = clients[i];
    r.joules += k.joules;
    if (k.outage) {
      ++r.outages;
      continue;
    }
    if (r.straggler == clients.size() || k.seconds > r.seconds) {
      r.seconds = k.seconds;
      r.straggler = i;
    }
  }
  return r;
}

/// A fleet of devices in one cell, one `device_profile` per client (index =
/// client id), for a workflow's per-client time and energy
/// (`federated_options::wireless`). Empty `devices`: not modelled.
struct wireless_fleet {
  cell access_point{};
  std::vector<device_profile> devices;

  /// Whether the fleet is modelled (`devices` is not empty).
  bool enabled() const noexcept { return !devices.empty(); }
};

}  // namespace tinylarge::workflow
