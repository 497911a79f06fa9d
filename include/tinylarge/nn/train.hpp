/// @file nn/train.hpp
/// @brief The training loop: the library's one minibatch step
///        (`train_step` / `train_epoch`, with hooks) and `fit`, seeded
///        mini-batch training over a labelled set with evaluation and
///        callbacks (host profile).
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
///
/// One training step: every minibatch loop of the library — `fit`, the
/// federated clients (`workflow::train_locally`: FedProx's proximal term and
/// frozen layers as hooks), FedLoRA's clients (`nn::lora` wrappers, adapters-only update),
/// distillation (its loss) and the split devices (`backward_step` with the
/// server's gradient) — runs `train_step` / `train_epoch` /
/// `backward_step` below, with its hooks.
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
#include <span>
#include <type_traits>
#include <vector>

#include "../core/error.hpp"
#include "../core/rng.hpp"
#include "loss.hpp"
#include "network.hpp"
#include "optimizer.hpp"
#include "step.hpp"

namespace tinylarge::nn {

/// A borrowed labelled data set: `count` rows of `features` floats and, per
/// row, `target_size` targets: for cross-entropy 1 class label, or one label
/// per position of a sequence model (the output is `target_size` positions of
/// `output_size / target_size` logits each, e.g. a language model's T×Vocab
/// next-token logits against its T next tokens); for MSE the output width.
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
  /// Epochs of linear warm-up: epoch e ≤ W runs at η·e/(W + 1).
  std::size_t warmup_epochs = 0;
  /// Cosine decay after the warm-up instead of `lr_decay`: epoch e > W runs
  /// at η·½·(1 + cos(π·(e − W − 1)/(E − W))) (E = `epochs`), from η down
  /// towards 0 (Loshchilov & Hutter 2017, without restarts; per epoch).
  bool cosine = false;
};

/// The learning rate of epoch `epoch` (1-based) under `o`'s schedule, for
/// the optimizer's base rate `lr`: warm-up, then cosine or `lr_decay`^(e−W−1).
inline float scheduled_learning_rate(float lr, const fit_options& o, std::size_t epoch) noexcept {
  const std::size_t w = o.warmup_epochs;
  if (epoch <= w) return lr * static_cast<float>(epoch) / static_cast<float>(w + 1);
  const std::size_t k = epoch - w - 1;  // epochs since the warm-up
  if (o.cosine) {
    const std::size_t span = o.epochs > w ? o.epochs - w : 1;
    const double c = 0.5 * (1.0 + std::cos(3.14159265358979323846 * static_cast<double>(k) / static_cast<double>(span)));
    return static_cast<float>(static_cast<double>(lr) * c);
  }
  float f = lr;
  for (std::size_t i = 0; i < k; ++i) f *= o.lr_decay;
  return f;
}

/// What one epoch did. Accuracy is argmax agreement (classification; per
/// position with one label per position) or, for
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

namespace detail {
/// Rows of the loss per sample: one, or for class labels `target_size`
/// positions of a sequence model (each `output_size / target_size` logits
/// against one label). Checks that the targets fit the model's output.
template <class Model, class Target>
std::size_t loss_rows_per_sample(std::size_t target_size, const char* msg) {
  if constexpr (std::is_integral_v<Target>) {
    TINYLARGE_REQUIRE(target_size > 0 && Model::output_size % target_size == 0, errc::shape_mismatch, msg);
    return target_size;
  } else {
    TINYLARGE_REQUIRE(target_size == Model::output_size, errc::shape_mismatch, msg);
    return 1;
  }
}

/// Loss (mean over the b·rows rows) and argmax hits of b samples' outputs against their targets.
template <class Model, loss_policy Loss>
double loss_and_hits(const float* out, const typename Loss::target_type* t, std::size_t b, std::size_t rows,
                     float* grad, std::size_t& hits) {
  const std::size_t width = Model::output_size / rows, per_row = std::is_integral_v<typename Loss::target_type> ? 1 : width;
  for (std::size_t r = 0; r < b * rows; ++r) hits += correct(out + r * width, t + r * per_row, width) ? 1 : 0;
  return Loss::evaluate(out, t, b * rows, width, grad);
}
}  // namespace detail

/// Mean loss and accuracy of `net` on `data` (inference mode, batches of
/// `batch`); with one label per position (`target_size` > 1, class labels)
/// both are means over the positions.
template <class Net, loss_policy Loss>
evaluation evaluate(Net& net, Loss, const labelled_view<typename Loss::target_type>& data, std::size_t batch = 256) {
  using Model = typename Net::model;
  TINYLARGE_REQUIRE(data.features == Model::input_size, errc::shape_mismatch,
                    "evaluate: the data's feature count differs from the model's input size");
  const std::size_t rows = detail::loss_rows_per_sample<Model, typename Loss::target_type>(
      data.target_size,
      "evaluate: targets per sample must be 1 or one label per position (class labels), or the output size (MSE)");
  double loss = 0.0;
  std::size_t hits = 0;
  for (std::size_t s = 0; s < data.count; s += batch) {
    const std::size_t b = std::min(batch, data.count - s);
    const float* out = net.forward(data.x + s * data.features, b, false);
    const auto* t = data.y + s * data.target_size;
    loss += detail::loss_and_hits<Model, Loss>(out, t, b, rows, nullptr, hits) * static_cast<double>(b);
  }
  const auto n = static_cast<double>(data.count);
  return {loss / n, static_cast<double>(hits) / (n * static_cast<double>(rows))};
}

// ---------------------------------------------------------------------------
// The local training step — the one minibatch loop of the library
// (its backward half, `backward_step`, with `no_hooks`, `optimizer_update` and
// `accept_gradients`: nn/step.hpp)
// ---------------------------------------------------------------------------

/// The optimizer state of the trainable parameters of `Model`: one
/// `Opt::state<float>` per run of `Model::trainable_ranges` (one run, the
/// whole parameter vector, unless a layer has frozen parameters — `nn::lora`,
/// whose frozen W₀ then gets no momentum or moment buffers and no update).
/// It is a state itself (`step(params, grads)` on the whole vectors,
/// `set_learning_rate`), so `optimizer_update` takes it.
template <optimizer_policy Opt, sequential_model Model>
class trainable_state {
 public:
  using state_type = typename Opt::template state<float>;
  explicit trainable_state(const Opt& opt) {
    states_.reserve(Model::trainable_ranges.size());
    for (const param_range& r : Model::trainable_ranges) states_.emplace_back(opt, r.count);
  }
  void step(float* w, const float* grad) {
    for (std::size_t i = 0; i < states_.size(); ++i) {
      const std::size_t o = Model::trainable_ranges[i].offset;
      states_[i].step(w + o, grad + o);
    }
  }
  void set_learning_rate(float lr) {
    for (auto& s : states_) s.set_learning_rate(lr);
  }
  /// True, with η in `lr`, when a step is the plain SGD step on every
  /// parameter (one run, `nn::sgd` without momentum or weight decay).
  bool plain_sgd(float& lr) const noexcept {
    if constexpr (requires(const state_type& s) { { s.plain_sgd(lr) } -> std::convertible_to<bool>; }) {
      return states_.size() == 1 && Model::trainable_count == Model::param_count && states_[0].plain_sgd(lr);
    } else {
      return false;
    }
  }
  /// One state per trainable run, in the order of `Model::trainable_ranges`.
  const std::vector<state_type>& states() const noexcept { return states_; }

 private:
  std::vector<state_type> states_;
};

/// What `train_step` did: the batch loss and whether the update ran.
struct step_outcome {
  double loss = 0.0;
  bool stepped = false;
};

/// One minibatch step on `rows` samples `x`: `before_forward`, forward
/// (training mode), the batch loss `loss(out, grad)` (its mean over the
/// rows; it writes ∂/∂out into `grad`), then `backward_step`.
/// @param non_finite the error message when the loss is NaN or Inf
/// @throws tl::non_finite when the loss is NaN or Inf
template <class Net, class LossFn, class Update, class Hooks = no_hooks>
step_outcome train_step(Net& net, const float* x, std::size_t rows, LossFn&& loss, float* grad, Update&& update,
                        Hooks&& hooks = {}, const char* non_finite = "train_step: the loss became NaN or Inf") {
  if constexpr (requires { hooks.before_forward(net); }) hooks.before_forward(net);
  const float* out = net.forward(x, rows, true);
  const double l = loss(out, grad);
  TINYLARGE_REQUIRE(std::isfinite(l), errc::non_finite, non_finite);
  const bool stepped = backward_step(net, grad, update, hooks);
  return {l, stepped};
}

/// What `train_epoch` did.
struct epoch_totals {
  double loss_sum = 0.0;    ///< Σ over batches of the batch loss × its rows
  std::size_t samples = 0;  ///< rows trained on
  std::size_t steps = 0;    ///< minibatches (stepped or skipped)
  std::size_t skipped = 0;  ///< minibatches whose update did not run (fp16 loss-scale overflow)
};

/// The buffers of one minibatch, reused from epoch to epoch.
template <class Target>
struct batch_buffers {
  std::vector<float> x, grad;
  std::vector<Target> y;
};

/// One pass over `data` in the order `order` (its row indices; shuffled by
/// the caller) in minibatches of `batch_size` rows (the last one smaller):
/// each batch is gathered into `buf` and trained with `train_step`. The
/// loss is `loss(out, y, rows, b, grad)` with `y` the batch's targets
/// (`target_size` per row) and `rows` its indices into `data` (for per-row
/// data of the caller's, e.g. a teacher's soft targets). The figures are
/// added to `totals` (a caller summing over several epochs passes the same
/// object: the sums run in one order, batch after batch).
/// @return `totals`
/// @throws tl::invalid_argument for a zero batch size; tl::non_finite (`non_finite`) for a NaN / Inf loss
template <class Net, class Target, class LossFn, class Update, class Hooks = no_hooks>
epoch_totals& train_epoch(Net& net, const labelled_view<Target>& data, std::span<const std::uint32_t> order,
                          std::size_t batch_size, batch_buffers<Target>& buf, epoch_totals& totals, LossFn&& loss,
                          Update&& update, Hooks&& hooks = {},
                          const char* non_finite = "train_epoch: the loss became NaN or Inf") {
  using Model = typename std::remove_cvref_t<Net>::model;
  TINYLARGE_REQUIRE(batch_size > 0, errc::invalid_argument, "train_epoch: the batch size must be positive");
  const std::size_t ts = data.target_size;
  buf.x.resize(batch_size * Model::input_size);
  buf.grad.resize(batch_size * Model::output_size);
  buf.y.resize(batch_size * ts);
  epoch_totals& t = totals;
  for (std::size_t s = 0; s < order.size(); s += batch_size) {
    const std::size_t b = std::min(batch_size, order.size() - s);
    const std::span<const std::uint32_t> rows = order.subspan(s, b);
    for (std::size_t i = 0; i < b; ++i) {
      const std::size_t r = rows[i];
      std::copy_n(data.x + r * Model::input_size, Model::input_size, buf.x.data() + i * Model::input_size);
      std::copy_n(data.y + r * ts, ts, buf.y.data() + i * ts);
    }
    const step_outcome o = train_step(
        net, buf.x.data(), b, [&](const float* out, float* grad) { return loss(out, buf.y.data(), rows, b, grad); },
        buf.grad.data(), update, hooks, non_finite);
    t.loss_sum += o.loss * static_cast<double>(b);
    t.samples += b;
    ++t.steps;
    if (!o.stepped) ++t.skipped;
  }
  return totals;
}

/// Train `net` with optimizer policy `opt` and loss `Loss` on `train`.
/// @param val optional validation set, evaluated after every epoch
/// @param callbacks objects with `bool on_epoch_end(const epoch_report&, Net&)`
///        (false stops training) and, optionally, `void on_epoch_begin(std::size_t epoch, Net&)`
///        (called before epoch `epoch`'s shuffle: it may rewrite the rows `train` points to)
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
  const std::size_t rows = detail::loss_rows_per_sample<Model, Target>(
      train.target_size,
      "fit: targets per sample must be 1 or one label per position (class labels), or the output size (MSE)");
  TINYLARGE_REQUIRE(train.count > 0 && options.batch_size > 0, errc::invalid_argument,
                    "fit: needs at least one sample and a positive batch size");
  trainable_state<Opt, Model> state(opt);
  tinylarge::rng shuffler(options.seed, 0x5e9017ULL);
  std::vector<std::uint32_t> order(train.count);
  std::iota(order.begin(), order.end(), 0u);
  batch_buffers<Target> buf;
  std::vector<epoch_report> history;
  float lr = opt.learning_rate;
  for (std::size_t epoch = 1; epoch <= options.epochs; ++epoch) {
    const float scheduled = scheduled_learning_rate(opt.learning_rate, options, epoch);
    if (scheduled != lr) {
      lr = scheduled;
      state.set_learning_rate(lr);
    }
    // A callback may refresh the training rows the view points to (e.g. a new augmentation).
    ((
         [&] {
           if constexpr (requires { callbacks.on_epoch_begin(epoch, net); }) callbacks.on_epoch_begin(epoch, net);
         }()),
     ...);
    if (options.shuffle) shuffler.shuffle(order.data(), order.size());
    const auto t0 = std::chrono::steady_clock::now();
    std::size_t hits = 0;
    epoch_totals totals;
    train_epoch(
        net, train, order, options.batch_size, buf, totals,
        [&](const float* out, const Target* y, std::span<const std::uint32_t>, std::size_t b, float* grad) {
          return detail::loss_and_hits<Model, Loss>(out, y, b, rows, grad, hits);
        },
        optimizer_update<decltype(state)>{state}, no_hooks{}, "fit: the loss became NaN or Inf (learning rate too high?)");
    const double loss_sum = totals.loss_sum;
    const std::size_t skipped = totals.skipped;
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    epoch_report rep;
    rep.epoch = epoch;
    rep.train_loss = loss_sum / static_cast<double>(train.count);
    rep.train_accuracy = static_cast<double>(hits) / static_cast<double>(train.count * rows);
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
