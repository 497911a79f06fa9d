/// @file workflow/distill.hpp
/// @brief Knowledge distillation from a large fp32 teacher (server) to a tiny
///        student that is deployed as int8 on a device.
///
/// @code
///   struct kd_traits {
///     using teacher   = tl::sequential<tl::dense<784, 300>, tl::relu, tl::dense<300, 10>>;
///     using student   = tl::sequential<tl::dense<784, 32>, tl::relu, tl::dense<32, 10>>;
///     using device    = tl::int8_per_channel;      // the student's deployed precision
///     using optimizer = tl::nn::adam;              // the student's optimizer
///     using precision = tl::bf16;                  // what the student trains in (optional, default fp32)
///   };
///   tl::workflow::knowledge_distillation<kd_traits> kd({.temperature = 4, .alpha = 0.9f, .epochs = 5});
///   auto res = kd.run(trained_teacher, train, test);  // res.student_int8_accuracy, res.costs (report)
/// @endcode
///
/// Loss (Hinton, Vinyals and Dean, "Distilling the Knowledge in a Neural
/// Network", 2015, §2): with teacher logits v, student logits z, temperature
/// T, soft targets p = softmax(v / T), q = softmax(z / T),
///
///     L = α · T² · KL(p ‖ q) + (1 − α) · CE(softmax(z), y)
///     ∂L/∂z = α · T · (q − p) + (1 − α) · (softmax(z) − onehot(y))      (per sample, then / B)
///
/// (the T² keeps the soft-target gradients' magnitude independent of T, as
/// the paper recommends). The teacher's logits are computed once on the
/// server (its inference MACs are the server's cost); the student trains on
/// the server too and is then quantized by post-training calibration
/// (nn/quantize.hpp) and shipped to the device: down = the int8 student's
/// parameter bytes.
///
/// The student trains in `Traits::precision` (default fp32; fp16 / bf16 are
/// mixed-precision training with fp32 master weights, fp16 with dynamic loss
/// scaling — a step whose scaled gradients overflowed is skipped). The int8
/// deployment is calibrated and converted from the fp32 master weights. A
/// precision that cannot train (e.g. int8: that is `Traits::device`) does not
/// compile.
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <numeric>
#include <span>
#include <type_traits>
#include <vector>

#include "../core/error.hpp"
#include "../core/rng.hpp"
#include "../nn/loss.hpp"
#include "../nn/network.hpp"
#include "../nn/optimizer.hpp"
#include "../nn/quantize.hpp"
#include "../nn/quantized_network.hpp"
#include "../nn/train.hpp"
#include "../precision/int8.hpp"
#include "report.hpp"

namespace tinylarge::workflow {

/// Settings of a distillation run.
struct distillation_options {
  float temperature = 4.0f;            ///< T > 0
  float alpha = 0.9f;                  ///< weight α ∈ [0, 1] of the soft-target term
  std::size_t epochs = 5;
  std::size_t batch_size = 64;
  std::uint64_t seed = 1;              ///< student initialisation and shuffling
  std::size_t calibration_samples = 1000;  ///< for the int8 post-training quantization
};

/// Hinton et al.'s distillation loss of one batch; writes ∂L/∂z into `grad`
/// (batch × n) and returns the mean loss.
inline double distillation_loss(const float* student, const float* teacher, const std::uint8_t* labels,
                                std::size_t batch, std::size_t n, float temperature, float alpha, float* grad) {
  TINYLARGE_REQUIRE(temperature > 0.0f && alpha >= 0.0f && alpha <= 1.0f, errc::invalid_argument,
                    "distillation_loss: need T > 0 and alpha in [0, 1]");
  const double t = temperature, a = alpha;
  double total = 0.0;
  std::vector<double> p(n), q(n), s(n);
  auto softmax = [n](const float* z, double scale, std::vector<double>& out) {
    double m = static_cast<double>(z[0]) * scale;
    for (std::size_t j = 1; j < n; ++j) m = std::max(m, static_cast<double>(z[j]) * scale);
    double sum = 0.0;
    for (std::size_t j = 0; j < n; ++j) sum += (out[j] = std::exp(static_cast<double>(z[j]) * scale - m));
    for (std::size_t j = 0; j < n; ++j) out[j] /= sum;
  };
  for (std::size_t b = 0; b < batch; ++b) {
    const float* zs = student + b * n;
    const float* zt = teacher + b * n;
    softmax(zt, 1.0 / t, p);
    softmax(zs, 1.0 / t, q);
    softmax(zs, 1.0, s);
    double kl = 0.0;
    for (std::size_t j = 0; j < n; ++j)
      if (p[j] > 0.0) kl += p[j] * (std::log(p[j]) - std::log(std::max(q[j], 1e-300)));
    const double ce = -std::log(std::max(s[labels[b]], 1e-300));
    total += a * t * t * kl + (1.0 - a) * ce;
    if (grad != nullptr)
      for (std::size_t j = 0; j < n; ++j)
        grad[b * n + j] = static_cast<float>(
            (a * t * (q[j] - p[j]) + (1.0 - a) * (s[j] - (j == labels[b] ? 1.0 : 0.0))) / static_cast<double>(batch));
  }
  return total / static_cast<double>(batch);
}

/// What a distillation run measured.
struct distillation_result {
  double teacher_accuracy = 0.0;        ///< fp32 teacher on the test set
  double student_fp32_accuracy = 0.0;   ///< the distilled student before quantization, in `Traits::precision`
  double student_int8_accuracy = 0.0;   ///< the deployed int8 student
  std::size_t teacher_parameter_bytes = 0;
  std::size_t student_int8_parameter_bytes = 0;
  report costs;                         ///< one record per epoch ("server" trains, "device" receives)
};

/// Knowledge distillation over a traits struct with `teacher` and `student`
/// (`sequential<...>` models with the same input and output sizes), `device`
/// (the student's `int8_precision`, default `int8_per_channel`),
/// `optimizer` (default `nn::adam`) and `precision` (what the student trains
/// in, default `fp32`).
///
/// @tparam Traits the traits struct described above.
template <class Traits>
class knowledge_distillation {
  template <class T> struct device_of { using type = int8_per_channel; };
  template <class T> requires requires { typename T::device; }
  struct device_of<T> { using type = typename T::device; };
  template <class T> struct optimizer_of { using type = nn::adam; };
  template <class T> requires requires { typename T::optimizer; }
  struct optimizer_of<T> { using type = typename T::optimizer; };
  template <class T> struct precision_of { using type = fp32; };
  template <class T> requires requires { typename T::precision; }
  struct precision_of<T> { using type = typename T::precision; };

 public:
  using teacher = typename Traits::teacher;
  using student = typename Traits::student;
  using device = typename device_of<Traits>::type;
  using optimizer = typename optimizer_of<Traits>::type;
  /// The precision the student trains in (`Traits::precision`, default fp32).
  using precision = typename precision_of<Traits>::type;
  static_assert(float_precision<precision>,
                "knowledge_distillation: Traits::precision must be a float_precision (fp32, fp16, bf16 or your own): "
                "the student trains in it; its int8 deployment is Traits::device");
  /// The network the student trains in.
  using student_network_type = nn::network<student, nn::heap_storage, precision>;
  using student_int8 = nn::quantized_network<student, device, nn::heap_storage>;
  static_assert(nn::sequential_model<teacher> && nn::sequential_model<student>,
                "knowledge_distillation: Traits::teacher and Traits::student must be sequential<...> models");
  static_assert(teacher::input_size == student::input_size && teacher::output_size == student::output_size,
                "knowledge_distillation: teacher and student must have the same input and output sizes");

  explicit knowledge_distillation(const distillation_options& o = {}, const optimizer& opt = {})
      : options_(o), opt_(opt), int8_(std::make_unique<student_int8>()) {
    TINYLARGE_REQUIRE(o.temperature > 0.0f && o.alpha >= 0.0f && o.alpha <= 1.0f && o.batch_size > 0,
                      errc::invalid_argument, "knowledge_distillation: need T > 0, alpha in [0, 1], batch_size > 0");
  }

  student_network_type& student_network() noexcept { return student_; }
  const student_network_type& student_network() const noexcept { return student_; }

  /// Start the student from `w` (e.g. a small model trained elsewhere)
  /// instead of the seeded initialisation, in every following `run`.
  /// @throws tl::shape_mismatch when `w` does not hold `student::param_count` values.
  void set_initial_student(std::span<const float> w) {
    TINYLARGE_REQUIRE(w.size() == student::param_count, errc::shape_mismatch,
                      "knowledge_distillation::set_initial_student: wrong number of parameters");
    start_.assign(w.begin(), w.end());
  }
  student_int8& deployed() noexcept { return *int8_; }

  /// Distils `trained_teacher` into the student on `train`, quantizes it and
  /// evaluates all three on `test`.
  distillation_result run(nn::network<teacher>& trained_teacher, const nn::labelled_view<std::uint8_t>& train,
                          const nn::labelled_view<std::uint8_t>& test) {
    TINYLARGE_REQUIRE(train.features == student::input_size && train.count > 0, errc::shape_mismatch,
                      "knowledge_distillation: the training data do not match the models' input size");
    TINYLARGE_REQUIRE(train.target_size == 1, errc::shape_mismatch,
                      "knowledge_distillation: the training data must hold one class label per sample");
    constexpr std::size_t n_out = student::output_size;
    distillation_result res;
    res.costs.workflow = "distillation";
    res.teacher_accuracy = nn::evaluate(trained_teacher, nn::softmax_cross_entropy{}, test).accuracy;
    // Teacher logits, once (server inference).
    std::vector<float> soft(train.count * n_out);
    for (std::size_t s = 0; s < train.count; s += 256) {
      const std::size_t b = std::min<std::size_t>(256, train.count - s);
      const float* out = trained_teacher.forward(train.x + s * train.features, b, false);
      std::copy_n(out, b * n_out, soft.data() + s * n_out);
    }
    if (start_.empty())
      student_.initialize(options_.seed);
    else
      std::copy(start_.begin(), start_.end(), student_.parameters().begin());
    nn::trainable_state<optimizer, student> st(opt_);  // frozen parameters (nn::lora, batch norm statistics) are not stepped
    rng shuffler(options_.seed, 0xd157'111ULL);
    std::vector<std::uint32_t> order(train.count);
    std::iota(order.begin(), order.end(), 0u);
    const std::size_t bs = std::min(options_.batch_size, train.count);
    nn::batch_buffers<std::uint8_t> buf;
    std::vector<float> tb(bs * n_out);
    for (std::size_t e = 1; e <= options_.epochs; ++e) {
      shuffler.shuffle(order.data(), order.size());
      nn::epoch_totals totals;
      // The one training step with the distillation loss: the teacher's
      // soft targets of the batch's rows, gathered here.
      nn::train_epoch(
          student_, train, order, bs, buf, totals,
          [&](const float* z, const std::uint8_t* y, std::span<const std::uint32_t> rows, std::size_t b, float* grad) {
            for (std::size_t i = 0; i < b; ++i) std::copy_n(soft.data() + rows[i] * n_out, n_out, tb.data() + i * n_out);
            return distillation_loss(z, tb.data(), y, b, n_out, options_.temperature, options_.alpha, grad);
          },
          nn::optimizer_update<decltype(st)>{st}, nn::no_hooks{}, "knowledge_distillation: the loss became NaN or Inf");
      const double loss = totals.loss_sum;
      round_record rec;
      rec.round = e;
      rec.train_loss = loss / static_cast<double>(train.count);
      rec.test_accuracy = nn::evaluate(student_, nn::softmax_cross_entropy{}, test).accuracy;
      role_cost server{"server", 0, {}, 3ull * student::macs * train.count};
      if (e == 1) server.macs += static_cast<std::uint64_t>(teacher::macs) * train.count;
      rec.parties.push_back(server);
      rec.estimated_seconds = static_cast<double>(server.macs) / link_model{}.server_macs_per_s;
      res.costs.rounds.push_back(std::move(rec));
    }
    res.student_fp32_accuracy = nn::evaluate(student_, nn::softmax_cross_entropy{}, test).accuracy;
    if constexpr (std::is_same_v<precision, fp32>) {
      nn::quantize_post_training(student_, train.x, std::min(options_.calibration_samples, train.count), *int8_);
    } else {  // calibrate and convert from the fp32 master weights
      nn::network<student> master;
      std::copy(student_.parameters().begin(), student_.parameters().end(), master.parameters().begin());
      nn::quantize_post_training(master, train.x, std::min(options_.calibration_samples, train.count), *int8_);
    }
    std::size_t hits = 0;
    for (std::size_t i = 0; i < test.count; ++i)
      hits += int8_->classify(test.x + i * test.features) == test.y[i] ? 1 : 0;
    res.student_int8_accuracy = test.count ? static_cast<double>(hits) / static_cast<double>(test.count) : 0.0;
    res.teacher_parameter_bytes = teacher::param_count * sizeof(float);
    res.student_int8_parameter_bytes = student_int8::parameter_bytes;
    // Deployment: the int8 student goes down to the device once.
    round_record deploy;
    deploy.round = options_.epochs + 1;
    deploy.test_accuracy = res.student_int8_accuracy;
    role_cost dev{"device", 1, {}, 0};
    dev.net.bytes_down = student_int8::parameter_bytes;
    dev.net.messages_down = 1;
    deploy.parties.push_back(dev);
    deploy.sequential_hops = 1;
    deploy.messages = 1;
    const link_model lm{};
    deploy.estimated_seconds = lm.latency_s + static_cast<double>(dev.net.bytes_down) / lm.downlink_bytes_per_s;
    res.costs.rounds.push_back(std::move(deploy));
    return res;
  }

 private:
  distillation_options options_;
  optimizer opt_;
  student_network_type student_;
  std::unique_ptr<student_int8> int8_;
  std::vector<float> start_;  // given initial student weights (empty: seeded)
};

}  // namespace tinylarge::workflow
