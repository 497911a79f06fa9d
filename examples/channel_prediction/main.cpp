// Channel prediction on an air interface (the example the "Edge large AI models"
// issue asks for; docs/transformers.md, "Channel prediction"): a small transformer
// predicts the next coefficient of a time-varying Rayleigh fading channel from its
// last `history` noisy observations, against two linear predictors:
//
//  - Wiener: the linear MMSE predictor for Clarke's autocorrelation J0(2π·ν·τ) and
//    the known noise power (a = (R + σ²I)⁻¹ r), the best linear predictor for the
//    channel ensemble, computed from the model, not from data;
//  - LS: a linear predictor (real 2·history → 2, with bias) fitted by ridge least
//    squares on the transformer's training rows.
//
// Data: include/tinylarge/data/fading.hpp (sum of 16 sinusoids per realisation).
// For each normalised Doppler ν = f_D·T_s the models are trained on realisations
// of that ν and tested on fresh ones; then one transformer is trained on the mix
// of all ν and tested on each (a device does not know its Doppler), beside one LS
// predictor fitted on that mix.
//
//   channel_prediction [--doppler 0.01,0.05,0.1] [--history 16] [--horizon 1] [--snr-db 20]
//                      [--train-realisations 400] [--test-realisations 200] [--epochs 30] [--seed S] [--quick]
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <memory>
#include <numbers>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "tinylarge/data/fading.hpp"
#include "tinylarge/nn/nn.hpp"
#include "../common/cli.hpp"

namespace nn = tl::nn;
namespace td = tl::data;

namespace {

constexpr std::size_t history = 16, dim = 32, heads = 4, hidden = 64;

/// Tokens are the `history` observations (Re, Im), embedded to `dim` by a 1×1
/// patch embedding, learned positions, two pre-norm transformer blocks, a final
/// layer norm, and a dense read-out of the next (Re, Im) from all tokens.
using block_attention = tl::residual<tl::layer_norm<dim>, tl::multi_head_attention<dim, heads>>;
using block_mlp = tl::residual<tl::layer_norm<dim>, tl::conv2d<hidden, 1>, tl::gelu, tl::conv2d<dim, 1>>;
using predictor = tl::sequential<tl::patch_embedding<history, 1, 2, 1, dim>, tl::learned_positions<history, dim>,
                                 block_attention, block_mlp, block_attention, block_mlp, tl::layer_norm<dim>,
                                 tl::flatten, tl::dense<history * dim, 2>>;

struct options {
  std::vector<double> dopplers{0.01, 0.05, 0.1};
  std::size_t horizon = 1, train = 400, test = 200, epochs = 30;
  double snr_db = 20;
  std::uint64_t seed = 1;
  bool quick = false;
};

std::vector<double> parse_list(const std::string& s) {
  std::vector<double> v;
  std::stringstream in(s);
  std::string item;
  while (std::getline(in, item, ',')) v.push_back(std::stod(item));
  return v;
}

/// Solves the symmetric positive definite system A x = b in place (Cholesky).
std::vector<double> solve_spd(std::vector<double> A, std::vector<double> b, std::size_t n) {
  for (std::size_t j = 0; j < n; ++j) {
    double d = A[j * n + j];
    for (std::size_t k = 0; k < j; ++k) d -= A[j * n + k] * A[j * n + k];
    if (!(d > 0)) throw std::runtime_error("solve_spd: the matrix is not positive definite");
    A[j * n + j] = std::sqrt(d);
    for (std::size_t i = j + 1; i < n; ++i) {
      double s = A[i * n + j];
      for (std::size_t k = 0; k < j; ++k) s -= A[i * n + k] * A[j * n + k];
      A[i * n + j] = s / A[j * n + j];
    }
  }
  for (std::size_t i = 0; i < n; ++i) {  // L y = b
    for (std::size_t k = 0; k < i; ++k) b[i] -= A[i * n + k] * b[k];
    b[i] /= A[i * n + i];
  }
  for (std::size_t i = n; i-- > 0;) {  // Lᵀ x = y
    for (std::size_t k = i + 1; k < n; ++k) b[i] -= A[k * n + i] * b[k];
    b[i] /= A[i * n + i];
  }
  return b;
}

/// The Wiener predictor of h[k + horizon] from ĥ[k − history + 1 … k] for Clarke's
/// autocorrelation and noise power σ²: one real weight per observation, applied to
/// the complex observations.
std::vector<float> wiener_predict(const td::prediction_set& s, double doppler, std::size_t horizon, double snr_db) {
  const double sigma2 = std::isinf(snr_db) ? 0 : std::pow(10.0, -snr_db / 10);
  const auto rho = [&](double tau) { return std::cyl_bessel_j(0.0, 2 * std::numbers::pi * doppler * tau); };
  std::vector<double> R(history * history), r(history);
  for (std::size_t i = 0; i < history; ++i) {
    for (std::size_t j = 0; j < history; ++j)
      R[i * history + j] = rho(std::abs(static_cast<double>(i) - static_cast<double>(j))) + (i == j ? sigma2 + 1e-9 : 0);
    r[i] = rho(static_cast<double>(history - 1 - i + horizon));  // observation i is history-1-i steps before k
  }
  const std::vector<double> a = solve_spd(R, r, history);
  std::vector<float> pred(2 * s.count);
  for (std::size_t n = 0; n < s.count; ++n) {
    double re = 0, im = 0;
    for (std::size_t i = 0; i < history; ++i) {
      re += a[i] * s.x[n * 2 * history + 2 * i];
      im += a[i] * s.x[n * 2 * history + 2 * i + 1];
    }
    pred[2 * n] = static_cast<float>(re);
    pred[2 * n + 1] = static_cast<float>(im);
  }
  return pred;
}

/// Ridge least squares of the targets on [x, 1] (2·history + 1 real inputs, 2 outputs).
struct linear_ls {
  std::size_t n = 2 * history + 1;
  std::vector<double> w[2];
  explicit linear_ls(const td::prediction_set& s, double ridge = 1e-6) {
    std::vector<double> A(n * n, 0.0), b[2] = {std::vector<double>(n, 0.0), std::vector<double>(n, 0.0)};
    std::vector<double> z(n);
    for (std::size_t r = 0; r < s.count; ++r) {
      for (std::size_t i = 0; i + 1 < n; ++i) z[i] = s.x[r * (n - 1) + i];
      z[n - 1] = 1;
      for (std::size_t i = 0; i < n; ++i) {
        for (std::size_t j = 0; j < n; ++j) A[i * n + j] += z[i] * z[j];
        b[0][i] += z[i] * s.y[2 * r];
        b[1][i] += z[i] * s.y[2 * r + 1];
      }
    }
    for (std::size_t i = 0; i < n; ++i) A[i * n + i] += ridge * static_cast<double>(s.count);
    w[0] = solve_spd(A, b[0], n);
    w[1] = solve_spd(A, b[1], n);
  }
  [[nodiscard]] std::vector<float> predict(const td::prediction_set& s) const {
    std::vector<float> p(2 * s.count);
    for (std::size_t r = 0; r < s.count; ++r)
      for (std::size_t o = 0; o < 2; ++o) {
        double v = w[o][n - 1];
        for (std::size_t i = 0; i + 1 < n; ++i) v += w[o][i] * s.x[r * (n - 1) + i];
        p[2 * r + o] = static_cast<float>(v);
      }
    return p;
  }
};

using network = nn::network<predictor>;

std::unique_ptr<network> train_transformer(const td::prediction_set& s, const options& opt) {
  auto net = std::make_unique<network>();
  net->initialize<nn::he_normal>(opt.seed);
  const nn::labelled_view<float> v{s.x.data(), s.y.data(), s.count, s.features(), 2};
  nn::fit(*net, nn::adam{.learning_rate = 1e-3f}, nn::mse{}, v,
          {.epochs = opt.epochs, .batch_size = 64, .seed = opt.seed, .shuffle = true, .lr_decay = 0.93f});
  return net;
}

std::vector<float> transformer_predict(network& net, const td::prediction_set& s) {
  std::vector<float> p(2 * s.count);
  constexpr std::size_t chunk = 256;
  for (std::size_t r = 0; r < s.count; r += chunk) {
    const std::size_t b = std::min(chunk, s.count - r);
    const float* out = net.forward(s.x.data() + r * s.features(), b, false);
    std::copy(out, out + 2 * b, p.begin() + static_cast<std::ptrdiff_t>(2 * r));
  }
  return p;
}

td::prediction_set windows(double doppler, std::size_t realisations, std::uint64_t seed, const options& opt) {
  return td::channel_prediction_windows({.doppler = doppler, .sinusoids = 16},
                                        {.history = history, .horizon = opt.horizon, .realisations = realisations,
                                         .windows = 20, .snr_db = opt.snr_db, .seed = seed});
}

}  // namespace

int main(int argc, char** argv) {
  options opt;
  examples::cli args(argc, argv,
                     "[--doppler LIST] [--horizon N] [--snr-db DB] [--train-realisations N] [--test-realisations N] "
                     "[--epochs N] [--seed S] [--quick]");
  while (args.next()) {
    if (args.is("--doppler")) opt.dopplers = parse_list(args.text());
    else if (args.is("--horizon")) opt.horizon = args.count();
    else if (args.is("--snr-db")) opt.snr_db = std::stod(args.text());
    else if (args.is("--train-realisations")) opt.train = args.count();
    else if (args.is("--test-realisations")) opt.test = args.count();
    else if (args.is("--epochs")) opt.epochs = args.count();
    else if (args.is("--seed")) opt.seed = args.count<std::uint64_t>();
    else if (args.is("--quick")) opt.quick = true;
    else args.unknown();
  }
  if (opt.quick) {
    opt.train = 40;
    opt.test = 20;
    opt.epochs = 2;
  }
  try {
    std::printf("channel prediction: Rayleigh fading, 16 sinusoids, history %zu, horizon %zu, observation SNR %.1f dB; "
                "%zu training / %zu test realisations x 20 windows per Doppler; transformer %zu parameters\n",
                history, opt.horizon, opt.snr_db, opt.train, opt.test, predictor::param_count);
    std::printf("\n| nu = f_D T_s | Wiener (J0 of this nu, known noise) | LS linear (this nu) | transformer (this nu) | "
                "LS linear (all nu) | transformer (all nu) |\n|---|---|---|---|---|---|\n");
    // One transformer per Doppler, and one on the mix.
    td::prediction_set mix;
    mix.history = history;
    std::vector<td::prediction_set> tests;
    std::vector<std::vector<double>> rows;
    for (std::size_t d = 0; d < opt.dopplers.size(); ++d) {
      const double nu = opt.dopplers[d];
      const auto train = windows(nu, opt.train, opt.seed * 1000 + d, opt);
      tests.push_back(windows(nu, opt.test, opt.seed * 1000 + 500 + d, opt));
      const auto& test = tests.back();
      mix.x.insert(mix.x.end(), train.x.begin(), train.x.end());
      mix.y.insert(mix.y.end(), train.y.begin(), train.y.end());
      mix.count += train.count;
      const double wiener = td::nmse_db(test, wiener_predict(test, nu, opt.horizon, opt.snr_db));
      const double ls = td::nmse_db(test, linear_ls(train).predict(test));
      auto net = train_transformer(train, opt);
      const double tf = td::nmse_db(test, transformer_predict(*net, test));
      rows.push_back({nu, wiener, ls, tf});
    }
    const linear_ls shared_ls(mix);
    auto shared = train_transformer(mix, opt);
    for (std::size_t d = 0; d < rows.size(); ++d)
      std::printf("| %.3f | %.2f dB | %.2f dB | %.2f dB | %.2f dB | %.2f dB |\n", rows[d][0], rows[d][1], rows[d][2],
                  rows[d][3], td::nmse_db(tests[d], shared_ls.predict(tests[d])),
                  td::nmse_db(tests[d], transformer_predict(*shared, tests[d])));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "channel_prediction: %s\n", e.what());
    return 1;
  }
  return 0;
}
