/// @file data/fading.hpp
/// @brief Time-varying Rayleigh fading channels (Clarke / Jakes model by a sum
///        of sinusoids) and the windows of a channel-prediction task: the next
///        coefficient from the last few, optionally observed in noise.
///
/// **The channel.** One realisation is the complex gain sequence
///
///     h[k] = (1/√M) · Σ_{n=1..M} exp( j·(2π·ν·k·cos αₙ + φₙ) ),
///     αₙ = (2π·n − π + θ) / M,      θ, φ₁…φ_M ~ U[−π, π) independent,
///
/// with ν = f_D·T_s the Doppler frequency normalised by the sampling rate.
/// Each path arrives from angle αₙ (evenly spread with a random rotation θ,
/// as in the sum-of-sinusoids models of Pop & Beaulieu 2001 and Zheng & Xiao
/// 2003); E|h|² = 1 and, as M grows, h is complex Gaussian with Clarke's
/// autocorrelation E[h[k]·h*[k+τ]] = J₀(2π·ν·τ) (Clarke 1968; Jakes 1974).
/// `tests/test_data.cpp` checks the sample autocorrelation against J₀.
///
/// **The task.** From `history` past observations ĥ[k−history+1 … k] of one
/// realisation, predict h[k + horizon]. An observation is the coefficient
/// plus complex white Gaussian noise of power 10^(−snr_db/10) (pilot-based
/// estimation error; `snr_db` = +∞ is noise-free); the target is the
/// noise-free coefficient. A row holds the history as
/// (Re ĥ, Im ĥ) pairs, oldest first (2·history floats), and the target as
/// (Re h, Im h). Windows of one realisation do not overlap their targets.
///
/// All randomness comes from `tl::rng` (realisation r uses stream r), so a seed
/// repeats the data set on one platform (`std::sin` / `cos` / `exp` / `log`
/// are used: another libm may change last bits). Host profile (`std::vector`);
/// errors are `tl::invalid_argument`.
#pragma once

#include <cmath>
#include <complex>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <numbers>
#include <vector>

#include "../core/error.hpp"
#include "../core/rng.hpp"

namespace tinylarge::data {

/// One Rayleigh fading process (see the file comment).
struct fading_options {
  double doppler = 0.05;      ///< ν = f_D·T_s, in (0, 0.5]
  std::size_t sinusoids = 16; ///< M paths (≥ 1; ≥ 8 for a near-Gaussian h)
};

/// `n` samples h[0 … n−1] of one realisation drawn with `g`.
/// @throws tl::invalid_argument when the options are out of range.
inline std::vector<std::complex<double>> fading_sequence(const fading_options& o, std::size_t n, rng& g) {
  TINYLARGE_REQUIRE(std::isfinite(o.doppler) && o.doppler > 0 && o.doppler <= 0.5 && o.sinusoids >= 1,
                    errc::invalid_argument, "data::fading_sequence: doppler must be in (0, 0.5] and sinusoids >= 1");
  constexpr double pi = std::numbers::pi;
  const std::size_t M = o.sinusoids;
  const double theta = (2 * static_cast<double>(g.uniform()) - 1) * pi;
  std::vector<double> w(M), phi(M);
  for (std::size_t m = 0; m < M; ++m) {
    const double alpha = (2 * pi * static_cast<double>(m + 1) - pi + theta) / static_cast<double>(M);
    w[m] = 2 * pi * o.doppler * std::cos(alpha);
    phi[m] = (2 * static_cast<double>(g.uniform()) - 1) * pi;
  }
  const double scale = 1 / std::sqrt(static_cast<double>(M));
  std::vector<std::complex<double>> h(n);
  for (std::size_t k = 0; k < n; ++k) {
    double re = 0, im = 0;
    for (std::size_t m = 0; m < M; ++m) {
      const double a = w[m] * static_cast<double>(k) + phi[m];
      re += std::cos(a);
      im += std::sin(a);
    }
    h[k] = {re * scale, im * scale};
  }
  return h;
}

/// What `channel_prediction_windows` cuts.
struct prediction_options {
  std::size_t history = 16;       ///< past observations per row
  std::size_t horizon = 1;        ///< predict h[k + horizon] from ĥ[…k]
  std::size_t realisations = 100; ///< independent channels
  std::size_t windows = 20;       ///< rows per realisation
  double snr_db = std::numeric_limits<double>::infinity();  ///< observation SNR (+∞: noise-free)
  std::uint64_t seed = 1;
};

/// Rows of a channel-prediction task: `count` × (2·history) inputs and
/// `count` × 2 targets (see the file comment).
struct prediction_set {
  std::vector<float> x;
  std::vector<float> y;
  std::size_t count = 0;
  std::size_t history = 0;
  [[nodiscard]] std::size_t features() const noexcept { return 2 * history; }
};

/// `p.realisations` × `p.windows` rows of fading process `f`.
/// @throws tl::invalid_argument when the options are out of range.
inline prediction_set channel_prediction_windows(const fading_options& f, const prediction_options& p) {
  TINYLARGE_REQUIRE(p.history >= 1 && p.horizon >= 1 && p.windows >= 1 && !std::isnan(p.snr_db), errc::invalid_argument,
                    "data::channel_prediction_windows: history, horizon and windows must be >= 1 and snr_db not NaN");
  prediction_set s;
  s.history = p.history;
  s.count = p.realisations * p.windows;
  s.x.reserve(s.count * 2 * p.history);
  s.y.reserve(s.count * 2);
  const std::size_t stride = p.history + p.horizon;  // one window's span: targets never overlap
  const double noise = std::isinf(p.snr_db) && p.snr_db > 0 ? 0 : std::sqrt(std::pow(10.0, -p.snr_db / 10) / 2);
  for (std::size_t r = 0; r < p.realisations; ++r) {
    rng g(p.seed, r);
    const auto h = fading_sequence(f, p.windows * stride, g);
    for (std::size_t w = 0; w < p.windows; ++w) {
      const std::size_t k0 = w * stride;
      for (std::size_t t = 0; t < p.history; ++t) {
        const std::complex<double> v = h[k0 + t];
        const double nr = noise > 0 ? noise * static_cast<double>(g.normal()) : 0;
        const double ni = noise > 0 ? noise * static_cast<double>(g.normal()) : 0;
        s.x.push_back(static_cast<float>(v.real() + nr));
        s.x.push_back(static_cast<float>(v.imag() + ni));
      }
      const std::complex<double> target = h[k0 + p.history - 1 + p.horizon];
      s.y.push_back(static_cast<float>(target.real()));
      s.y.push_back(static_cast<float>(target.imag()));
    }
  }
  return s;
}

/// Normalised mean squared error of predictions `pred` against the targets of
/// `s` (both count × 2): Σ|y − ŷ|² / Σ|y|², in dB (10·log10).
/// @throws tl::invalid_argument when `pred` does not hold count × 2 values.
inline double nmse_db(const prediction_set& s, const std::vector<float>& pred) {
  TINYLARGE_REQUIRE(pred.size() == s.y.size() && !s.y.empty(), errc::invalid_argument,
                    "data::nmse_db: the predictions must have one (re, im) pair per row");
  double err = 0, pow = 0;
  for (std::size_t i = 0; i < s.y.size(); ++i) {
    const double d = static_cast<double>(s.y[i]) - static_cast<double>(pred[i]);
    err += d * d;
    pow += static_cast<double>(s.y[i]) * static_cast<double>(s.y[i]);
  }
  return 10 * std::log10(err / pow);
}

}  // namespace tinylarge::data
