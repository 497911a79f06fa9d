/// @file nn/train.hpp
/// @brief The training loop: seeded mini-batch SGD over a labelled set, with
///        evaluation and callbacks (host profile).
///
/// @code
///   tl::nn::labelled_view<std::uint8_t> train{x.data(), y.data(), n, 784};
///   auto history = tl::nn::fit(net, tl::nn::sgd{0.05f, 0.9f}, tl::nn::softmax_cross_entropy{}, train,
///                              {.epochs = 10, .batch_size = 64, .seed = 1}, &test,
///                              tl::nn::progress_printer{}, tl::nn::early_stopping{.patience = 3});
/// @endcode
///
/// Reproducibility: the only randomness is the seeded `tl::rng` (shuffling
/// here, initialisation and dropout in the network) and every reduction runs
/// in a fixed order, so the same seed gives the same weights bit for bit on
/// one machine and build.
///
/// A callback is any object with `bool on_epoch_end(const epoch_report&, Net&)`;
/// returning false stops training after that epoch.
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <numeric>
#include <vector>

#include "../core/error.hpp"
#include "../core/rng.hpp"
#include "loss.hpp"
#include "network.hpp"
#include "optimizer.hpp"

namespace tinylarge::nn {

/// A borrowed labelled data set: `count` rows of `features` floats and, per
/// row, `target_size` targets (1 class label for cross-entropy, the output
/// width for MSE).
template <class Target>
struct labelled_view {
  const float* x = nullptr;
  const Target* y = nullptr;
  std::size_t count = 0;
  std::size_t features = 0;
  std::size_t target_size = 1;
};

/// Options of `fit`.
struct fit_options {
  std::size_t epochs = 10;
  std::size_t batch_size = 64;
  std::uint64_t seed = 1;  ///< seeds the shuffling
  bool shuffle = true;
  /// Learning-rate factor applied after every epoch (1 = constant).
  float lr_decay = 1.0f;
};

/// What one epoch did. Accuracy is argmax agreement (classification) or, for
/// MSE, agreement of the argmax of output and target (of the sign of
/// output − 0.5 for a single output).
struct epoch_report {
  std::size_t epoch = 0;  ///< 1-based
  double train_loss = 0.0;
  double train_accuracy = 0.0;
  double val_loss = std::numeric_limits<double>::quiet_NaN();      ///< NaN without validation data
  double val_accuracy = std::numeric_limits<double>::quiet_NaN();  ///< NaN without validation data
  double seconds = 0.0;             ///< wall time of the training part of the epoch
  double samples_per_second = 0.0;  ///< training samples / seconds
  float learning_rate = 0.0f;
  /// Optimizer steps skipped because the loss-scaled gradients overflowed
  /// (fp16 mixed precision, `network::accept_gradients`); 0 otherwise.
  std::size_t skipped_steps = 0;
};

/// Loss and accuracy of a whole data set.
struct evaluation {
  double loss = 0.0;
  double accuracy = 0.0;
};

/// After `net.backward`: whether the optimizer step should be taken. A
/// network with dynamic loss scaling (`network<…, fp16>`) says no after an
/// overflow (and adjusts its scale); every other network says yes. Every
/// training loop calls this between `backward` and the optimizer step.
template <class Net>
bool accept_gradients(Net& net) {
  if constexpr (requires { { net.accept_gradients() } -> std::convertible_to<bool>; }) {
    return net.accept_gradients();
  } else {
    return true;
  }
}

namespace detail {
template <class Target>
bool correct(const float* out, const Target* t, std::size_t n) noexcept {
  std::size_t a = 0;
  for (std::size_t j = 1; j < n; ++j) a = out[j] > out[a] ? j : a;
  if constexpr (std::is_integral_v<Target>) {
    return a == static_cast<std::size_t>(t[0]);
  } else {
    if (n == 1) return (out[0] > 0.5f) == (t[0] > 0.5f);
    std::size_t b = 0;
    for (std::size_t j = 1; j < n; ++j) b = t[j] > t[b] ? j : b;
    return a == b;
  }
}
}  // namespace detail

/// Mean loss and accuracy of `net` on `data` (inference mode, batches of `batch`).
template <class Net, loss_policy Loss>
evaluation evaluate(Net& net, Loss, const labelled_view<typename Loss::target_type>& data, std::size_t batch = 256) {
  using Model = typename Net::model;
  TINYLARGE_REQUIRE(data.features == Model::input_size, errc::shape_mismatch,
                    "evaluate: the data's feature count differs from the model's input size");
  double loss = 0.0;
  std::size_t hits = 0;
  for (std::size_t s = 0; s < data.count; s += batch) {
    const std::size_t b = std::min(batch, data.count - s);
    const float* out = net.forward(data.x + s * data.features, b, false);
    const auto* t = data.y + s * data.target_size;
    loss += Loss::evaluate(out, t, b, Model::output_size, nullptr) * static_cast<double>(b);
    for (std::size_t i = 0; i < b; ++i)
      hits += detail::correct(out + i * Model::output_size, t + i * data.target_size, Model::output_size) ? 1 : 0;
  }
  const auto n = static_cast<double>(data.count);
  return {loss / n, static_cast<double>(hits) / n};
}

/// Train `net` with optimizer policy `opt` and loss `Loss` on `train`.
/// @param val optional validation set, evaluated after every epoch
/// @param callbacks objects with `bool on_epoch_end(const epoch_report&, Net&)`
/// @return one report per epoch run
template <class Net, optimizer_policy Opt, loss_policy Loss, class... Callbacks>
std::vector<epoch_report> fit(Net& net, const Opt& opt, Loss loss, const labelled_view<typename Loss::target_type>& train,
                              const fit_options& options = {},
                              const labelled_view<typename Loss::target_type>* val = nullptr,
                              Callbacks&&... callbacks) {
  using Model = typename Net::model;
  using Target = typename Loss::target_type;
  TINYLARGE_REQUIRE(train.features == Model::input_size, errc::shape_mismatch,
                    "fit: the training data's feature count differs from the model's input size");
  TINYLARGE_REQUIRE(train.target_size == (std::is_integral_v<Target> ? 1 : Model::output_size), errc::shape_mismatch,
                    "fit: targets per sample must be 1 (class labels) or the output size (MSE)");
  TINYLARGE_REQUIRE(train.count > 0 && options.batch_size > 0, errc::invalid_argument,
                    "fit: needs at least one sample and a positive batch size");
  typename Opt::template state<float> state(opt, Net::param_count);
  tinylarge::rng shuffler(options.seed, 0x5e9017ULL);
  std::vector<std::uint32_t> order(train.count);
  std::iota(order.begin(), order.end(), 0u);
  const std::size_t bs = options.batch_size;
  std::vector<float> xb(bs * Model::input_size), grad(bs * Model::output_size);
  std::vector<Target> yb(bs * train.target_size);
  std::vector<epoch_report> history;
  float lr = opt.learning_rate;
  for (std::size_t epoch = 1; epoch <= options.epochs; ++epoch) {
    if (options.shuffle) shuffler.shuffle(order.data(), order.size());
    const auto t0 = std::chrono::steady_clock::now();
    double loss_sum = 0.0;
    std::size_t hits = 0, skipped = 0;
    for (std::size_t s = 0; s < train.count; s += bs) {
      const std::size_t b = std::min(bs, train.count - s);
      for (std::size_t i = 0; i < b; ++i) {
        const std::size_t r = order[s + i];
        std::copy_n(train.x + r * Model::input_size, Model::input_size, xb.data() + i * Model::input_size);
        std::copy_n(train.y + r * train.target_size, train.target_size, yb.data() + i * train.target_size);
      }
      const float* out = net.forward(xb.data(), b, true);
      for (std::size_t i = 0; i < b; ++i)
        hits += detail::correct(out + i * Model::output_size, yb.data() + i * train.target_size, Model::output_size);
      const double l = Loss::evaluate(out, yb.data(), b, Model::output_size, grad.data());
      TINYLARGE_REQUIRE(std::isfinite(l), errc::non_finite,
                        "fit: the loss became NaN or Inf (learning rate too high?)");
      loss_sum += l * static_cast<double>(b);
      net.zero_gradients();
      net.backward(grad.data());
      if (accept_gradients(net)) {
        state.step(net.parameters().data(), net.gradients().data());
      } else {
        ++skipped;
      }
    }
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    epoch_report rep;
    rep.epoch = epoch;
    rep.train_loss = loss_sum / static_cast<double>(train.count);
    rep.train_accuracy = static_cast<double>(hits) / static_cast<double>(train.count);
    rep.seconds = secs;
    rep.samples_per_second = secs > 0.0 ? static_cast<double>(train.count) / secs : 0.0;
    rep.learning_rate = lr;
    rep.skipped_steps = skipped;
    if (val != nullptr) {
      const evaluation e = evaluate(net, loss, *val);
      rep.val_loss = e.loss;
      rep.val_accuracy = e.accuracy;
    }
    history.push_back(rep);
    bool go_on = true;
    ((go_on = callbacks.on_epoch_end(rep, net) && go_on), ...);
    if (!go_on) break;
    if (options.lr_decay != 1.0f) {
      lr *= options.lr_decay;
      state.set_learning_rate(lr);
    }
  }
  return history;
}

/// Prints one line per epoch: loss, accuracy, validation figures, samples/s.
struct progress_printer {
  std::FILE* out = stdout;
  const char* prefix = "";
  template <class Net>
  bool on_epoch_end(const epoch_report& r, Net&) const {
    std::fprintf(out, "%sepoch %2zu  loss %.4f  acc %.2f%%", prefix, r.epoch, r.train_loss, 100.0 * r.train_accuracy);
    if (!std::isnan(r.val_accuracy)) std::fprintf(out, "  val_loss %.4f  val_acc %.2f%%", r.val_loss, 100.0 * r.val_accuracy);
    std::fprintf(out, "  %.0f samples/s  (%.1f s)\n", r.samples_per_second, r.seconds);
    std::fflush(out);
    return true;
  }
};

/// Stops when the validation loss (training loss without validation data)
/// has not improved by more than `min_delta` for `patience` epochs, and
/// restores the best parameters seen when `restore_best`.
struct early_stopping {
  std::size_t patience = 3;
  double min_delta = 0.0;
  bool restore_best = true;
  double best = std::numeric_limits<double>::infinity();
  std::size_t best_epoch = 0;
  std::size_t bad_epochs = 0;
  std::vector<float> best_params{};

  template <class Net>
  bool on_epoch_end(const epoch_report& r, Net& net) {
    const double v = std::isnan(r.val_loss) ? r.train_loss : r.val_loss;
    if (v < best - min_delta) {
      best = v;
      best_epoch = r.epoch;
      bad_epochs = 0;
      if (restore_best) best_params.assign(net.parameters().begin(), net.parameters().end());
      return true;
    }
    if (++bad_epochs < patience) return true;
    if (restore_best && !best_params.empty()) std::copy(best_params.begin(), best_params.end(), net.parameters().begin());
    return false;
  }
};

}  // namespace tinylarge::nn
