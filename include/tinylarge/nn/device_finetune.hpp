/// @file nn/device_finetune.hpp
/// @brief On-device personalisation: fine-tune the last dense layer of a classifier in fp32
///        from a few labelled samples, on the features the (int8) network computes for them.
///
/// The transfer-learning device step: the body of the network stays frozen (int8, in flash),
/// its penultimate activations are dequantized to fp32 features, and only the head
/// y = W·f + b (Out×In) is trained, with fp32 master weights in RAM, by plain SGD on the
/// softmax cross-entropy:
///
///     p = softmax(W·f + b),  g_o = p_o − [o = label],  W_o −= lr·g_o·f,  b_o −= lr·g_o
///
/// one sample at a time in a fixed order, so that the result is deterministic. The
/// exponential is this header's own (`finetune_exp`: range reduction and a degree-7
/// polynomial, no libm), so that the host and a Cortex-M — hard float or soft float —
/// compute identical bits when built without fused multiply-adds (`-ffp-contract=off`).
///
/// Freestanding: no heap (Out·In + Out floats inside the object; give it static storage on a
/// microcontroller), no exceptions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "../precision/int8.hpp"

namespace tinylarge::nn {

/// e^x for x ≤ 0 (relative error below 1e-6 down to −87; 0 below). Deterministic: only
/// IEEE additions and multiplications and an exponent insertion.
inline float finetune_exp(float x) noexcept {
  if (!(x > -87.0f)) return 0.0f;  // also NaN
  if (x > 0.0f) x = 0.0f;
  constexpr float log2e = 1.44269504f, ln2_hi = 0.693145752f, ln2_lo = 1.42860677e-06f;
  const float t = x * log2e;
  // n = round(t), t ≤ 0
  const auto n = static_cast<std::int32_t>(t - 0.5f);
  const float nf = static_cast<float>(n);
  const float r = (x - nf * ln2_hi) - nf * ln2_lo;  // |r| ≤ ln2/2 (plus rounding)
  float p = 1.0f / 5040.0f;
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  // 2^n for n in [−126, 0]
  const std::uint32_t bits = static_cast<std::uint32_t>(n + 127) << 23;
  float two_n;
  std::memcpy(&two_n, &bits, 4);
  return p * two_n;
}

/// Dequantize `n` int8 activations to fp32 features: f_i = s·(q_i − z).
inline void dequantize_features(const std::int8_t* q, std::size_t n, quant_params p, float* f) noexcept {
  for (std::size_t i = 0; i < n; ++i) f[i] = dequantize(q[i], p);
}

/// The trainable fp32 head (last dense layer) of a classifier.
/// @tparam In features (width of the penultimate layer)
/// @tparam Out classes
template <std::size_t In, std::size_t Out>
class last_layer_finetuner {
  static_assert(In >= 1 && Out >= 2, "last_layer_finetuner: needs at least one feature and two classes");

 public:
  static constexpr std::size_t in_features = In;
  static constexpr std::size_t classes = Out;
  /// RAM the head needs (master weights and biases).
  static constexpr std::size_t state_bytes = (Out * In + Out) * sizeof(float);

  /// Start from given weights (Out×In, row-major) and biases (Out, may be null: zeros).
  void load(const float* weights, const float* bias) noexcept {
    for (std::size_t i = 0; i < Out * In; ++i) w_[i] = weights[i];
    for (std::size_t o = 0; o < Out; ++o) b_[o] = bias ? bias[o] : 0.0f;
  }

  /// Logits W·f + b, summed in increasing feature order.
  void logits(const float* f, float* y) const noexcept {
    for (std::size_t o = 0; o < Out; ++o) {
      const float* w = w_ + o * In;
      float acc = 0.0f;
      for (std::size_t i = 0; i < In; ++i) acc += w[i] * f[i];
      y[o] = acc + b_[o];
    }
  }

  /// The predicted class (first maximum of the logits).
  std::size_t predict(const float* f) const noexcept {
    float y[Out];
    logits(f, y);
    std::size_t best = 0;
    for (std::size_t o = 1; o < Out; ++o) best = y[o] > y[best] ? o : best;
    return best;
  }

  /// One SGD step on the softmax cross-entropy of one sample.
  /// @return the probability the head gave the true label before the step
  float sgd_step(const float* f, std::size_t label, float lr) noexcept {
    float y[Out];
    logits(f, y);
    float mx = y[0];
    for (std::size_t o = 1; o < Out; ++o) mx = y[o] > mx ? y[o] : mx;
    float sum = 0.0f;
    for (std::size_t o = 0; o < Out; ++o) {
      y[o] = finetune_exp(y[o] - mx);
      sum += y[o];
    }
    const float inv = 1.0f / sum;
    const float p_label = label < Out ? y[label] * inv : 0.0f;
    for (std::size_t o = 0; o < Out; ++o) {
      const float g = y[o] * inv - (o == label ? 1.0f : 0.0f);
      const float step = lr * g;
      float* w = w_ + o * In;
      for (std::size_t i = 0; i < In; ++i) w[i] -= step * f[i];
      b_[o] -= step;
    }
    return p_label;
  }

  /// `epochs` passes of SGD over `n` samples (features n×In, row-major), in order, the
  /// learning rate multiplied by `decay` after each pass.
  /// @return the mean probability of the true labels in the last pass
  float train(const float* features, const std::uint8_t* labels, std::size_t n, std::size_t epochs, float lr,
              float decay = 1.0f) noexcept {
    float mean = 0.0f;
    for (std::size_t e = 0; e < epochs; ++e) {
      float sum = 0.0f;
      for (std::size_t s = 0; s < n; ++s) sum += sgd_step(features + s * In, labels[s], lr);
      mean = n ? sum / static_cast<float>(n) : 0.0f;
      lr *= decay;
    }
    return mean;
  }

  /// As `train`, on int8 features (n×In, quantized with `p`), dequantized one sample at a
  /// time: In bytes per sample in RAM instead of 4·In.
  float train(const std::int8_t* features, quant_params p, const std::uint8_t* labels, std::size_t n,
              std::size_t epochs, float lr, float decay = 1.0f) noexcept {
    float mean = 0.0f;
    float f[In];
    for (std::size_t e = 0; e < epochs; ++e) {
      float sum = 0.0f;
      for (std::size_t s = 0; s < n; ++s) {
        dequantize_features(features + s * In, In, p, f);
        sum += sgd_step(f, labels[s], lr);
      }
      mean = n ? sum / static_cast<float>(n) : 0.0f;
      lr *= decay;
    }
    return mean;
  }

  /// Correct predictions on `n` samples.
  std::size_t correct(const float* features, const std::uint8_t* labels, std::size_t n) const noexcept {
    std::size_t hits = 0;
    for (std::size_t s = 0; s < n; ++s) hits += predict(features + s * In) == labels[s];
    return hits;
  }

  /// Correct predictions on `n` int8 feature rows (quantized with `p`).
  std::size_t correct(const std::int8_t* features, quant_params p, const std::uint8_t* labels,
                      std::size_t n) const noexcept {
    std::size_t hits = 0;
    float f[In];
    for (std::size_t s = 0; s < n; ++s) {
      dequantize_features(features + s * In, In, p, f);
      hits += predict(f) == labels[s];
    }
    return hits;
  }

  /// The master weights (Out×In, row-major) and biases, e.g. to fill them in place.
  float* weights() noexcept { return w_; }
  float* bias() noexcept { return b_; }
  const float* weights() const noexcept { return w_; }
  const float* bias() const noexcept { return b_; }

  /// A checksum of the bits of the weights and biases (to compare two targets exactly).
  std::uint32_t checksum() const noexcept {
    std::uint32_t h = 2166136261u;  // FNV-1a over the words
    const auto mix = [&](float v) {
      std::uint32_t b;
      std::memcpy(&b, &v, 4);
      h = (h ^ b) * 16777619u;
    };
    for (std::size_t i = 0; i < Out * In; ++i) mix(w_[i]);
    for (std::size_t o = 0; o < Out; ++o) mix(b_[o]);
    return h;
  }

 private:
  float w_[Out * In]{};
  float b_[Out]{};
};

}  // namespace tinylarge::nn
