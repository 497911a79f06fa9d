/// @file nas/transfer.hpp
/// @brief Transfer of a supernet's sub-network to a target task (frozen
///        backbone, new head trained on the few target samples) and the
///        evaluator the search strategies call: genome → objectives.
///
/// For a genome g the evaluator (1) runs the source-trained body of g on the
/// target's training rows and on the evaluation rows (`mlp_supernet::
/// body_features`, int8 layers simulated, ranges calibrated on the target
/// training rows), (2) trains a new softmax head from zero weights on the
/// training features by full-batch Adam (`head_options`), fake-quantizing it
/// afterwards when the head is int8 (a pruned head: trained, pruned by
/// magnitude, retrained with its mask), (3) measures the accuracy on the
/// evaluation rows, and (4) adds the costs of `profile.hpp` (pruned layers
/// counted from the CSR of the exported weights) and, optionally, the
/// measured host latency. Everything but the latency is a
/// deterministic function of the genome, so repeated genomes are served from
/// a cache (they still count against a search's budget).
///
/// `transfer_evaluator::fine_tune` goes further for a chosen genome: body and
/// head trained together on the target rows (a copy of the supernet's
/// weights), then evaluated the same way.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "../compress/pruning.hpp"
#include "../kernels/dense.hpp"
#include "../nn/loss.hpp"
#include "../nn/optimizer.hpp"
#include "profile.hpp"
#include "supernet.hpp"

namespace tinylarge::nas {

/// How the new head is trained on the target features.
struct head_options {
  std::size_t steps = 300;     ///< full-batch Adam steps
  float learning_rate = 0.01f; ///< Adam's η
};

/// How `transfer_evaluator::fine_tune` trains the whole sub-network on the target rows.
struct finetune_options {
  std::size_t epochs = 20;      ///< passes over the target training rows
  std::size_t batch_size = 32;  ///< rows per minibatch
  float learning_rate = 1e-4f;  ///< Adam's η
  std::uint64_t seed = 1;       ///< shuffling
};

/// A trained head: `outputs × inputs` weights row-major, then `outputs` biases.
struct head {
  std::size_t inputs = 0;     ///< features in (w_d)
  std::size_t outputs = 0;    ///< classes
  std::vector<float> params;  ///< weights then biases
};

/// Trains a softmax head (zero start, full-batch Adam) on `features`
/// (n × inputs) with labels `y`; with `sparsity_percent` > 0 then prunes its
/// weights by magnitude (`compress::magnitude_mask`) and trains `opt.steps`
/// more steps with the mask re-applied after each (Han et al. 2015's
/// prune-retrain; biases are not pruned); when `int8`, fake-quantizes its
/// weights and biases afterwards (input scale `input_scale`, see
/// `body_features`).
inline head train_head(const float* features, const std::uint8_t* y, std::size_t n, std::size_t inputs,
                       std::size_t outputs, const head_options& opt, bool int8, float input_scale,
                       unsigned sparsity_percent = 0) {
  head h{inputs, outputs, std::vector<float>(outputs * inputs + outputs, 0.0f)};
  nn::adam adam{.learning_rate = opt.learning_rate};
  nn::adam::state<float> state(adam, h.params.size());
  std::vector<float> z(n * outputs), dz(n * outputs), grad(h.params.size());
  float* w = h.params.data();
  float* b = w + outputs * inputs;
  const std::span<float> weights(w, outputs * inputs);
  std::vector<std::uint8_t> mask;
  const std::size_t total = sparsity_percent > 0 ? 2 * opt.steps : opt.steps;
  for (std::size_t s = 0; s < total; ++s) {
    if (sparsity_percent > 0 && s == opt.steps) {  // prune, then retrain with the mask
      mask.resize(weights.size());
      compress::prune_by_magnitude(weights, sparsity_percent / 100.0, mask);
    }
    kernels::dense_f32(n, outputs, inputs, features, w, b, z.data());
    nn::softmax_cross_entropy::evaluate(z.data(), y, n, outputs, dz.data());
    kernels::gemm_f32(kernels::transpose::yes, kernels::transpose::no, outputs, inputs, n, 1.0f, dz.data(), outputs, features,
                      inputs, 0.0f, grad.data(), inputs);
    std::fill(grad.begin() + static_cast<std::ptrdiff_t>(outputs * inputs), grad.end(), 0.0f);
    detail::column_sums(dz.data(), n, outputs, grad.data() + outputs * inputs);
    state.step(h.params.data(), grad.data());
    if (!mask.empty()) compress::apply_mask(weights, mask);
  }
  if (int8) detail::fake_quantize_dense(w, b, outputs, inputs, input_scale);
  return h;
}

/// Accuracy of `h` on `features` (n × h.inputs) against `y`.
inline double head_accuracy(const head& h, const float* features, const std::uint8_t* y, std::size_t n) {
  std::vector<float> z(n * h.outputs);
  kernels::dense_f32(n, h.outputs, h.inputs, features, h.params.data(), h.params.data() + h.outputs * h.inputs, z.data());
  std::size_t hits = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const float* zi = z.data() + i * h.outputs;
    std::size_t a = 0;
    for (std::size_t j = 1; j < h.outputs; ++j) a = zi[j] > zi[a] ? j : a;
    hits += a == y[i] ? 1 : 0;
  }
  return n ? static_cast<double>(hits) / static_cast<double>(n) : 0.0;
}

/// A transferred sub-network: its body and new head as one flat fp32
/// parameter array in the layout of `nn::network<Model>::parameters()` for
/// the genome's `sequential<…>` (per dense layer: out × in weights row-major,
/// then out biases). int8 layers hold their fake-quantized values (exactly
/// representable by the int8 scheme up to the calibration of a deployment).
struct transferred_model {
  genome g;                       ///< the architecture
  std::vector<float> parameters;  ///< library layout, fp32
  double accuracy = 0;            ///< on the rows it was evaluated on
};

/// The evaluator of a search: genome → `objectives` on a device profile,
/// accuracy after transfer to the target task (see the file comment).
class transfer_evaluator {
 public:
  /// @param net            the source-trained supernet (kept by reference)
  /// @param device         budgets and energy costs
  /// @param target_train   the few labelled target rows (head training, calibration)
  /// @param target_eval    the rows whose accuracy is the search objective
  /// @param opt            head training
  /// @param measure_latency time the fp32 body + head, batch 1, on the host
  transfer_evaluator(const mlp_supernet& net, device_profile device, labelled_data target_train,
                     labelled_data target_eval, head_options opt = {}, bool measure_latency = false)
      : net_(net), device_(std::move(device)), train_(target_train), eval_(target_eval), opt_(opt),
        latency_(measure_latency) {
    TINYLARGE_REQUIRE(train_.count > 0 && eval_.count > 0, errc::invalid_argument,
                      "nas::transfer_evaluator: the target training and evaluation sets must be non-empty");
    TINYLARGE_REQUIRE(train_.features == net.space().inputs && eval_.features == net.space().inputs, errc::shape_mismatch,
                      "nas::transfer_evaluator: the data's feature count differs from the space's inputs");
  }

  /// The objectives of `g` (cached by genome; latency measured once).
  objectives operator()(const genome& g) {
    ++calls_;
    const std::string k = g.key();
    if (auto it = cache_.find(k); it != cache_.end()) return it->second;
    objectives o;
    const transferred_model m = transfer(g, eval_);
    apply_costs(net_.space(), g, device_, o, m.parameters);
    o.accuracy = m.accuracy;
    if (latency_) o.latency_us = measure_latency(g);
    cache_.emplace(k, o);
    return o;
  }

  /// Transfers `g` (new head on the target training rows) and returns the
  /// deployable parameters with the accuracy on `data` (any rows of the
  /// target task, e.g. its test set).
  transferred_model transfer(const genome& g, const labelled_data& data) const { return assemble(net_, g, data, nullptr); }

  /// Fine-tunes the whole sub-network `g` (body and head) on the target
  /// training rows, then evaluates it on `data` like `transfer`. The head
  /// starts as `transfer` trains it (fp32, pruned to its sparsity); then
  /// `opt.epochs` of minibatch Adam on softmax cross-entropy update a copy of
  /// the supernet's weights that `g` uses (fp32; int8 layers are simulated
  /// again afterwards, with ranges re-calibrated on the training rows).
  /// Pruned layers are pruned before the first step (`prune_hidden`) and
  /// their masks re-applied after every step (prune, then retrain), so the
  /// fine-tuned model has the genome's sparsities. The evaluator's supernet
  /// is not changed.
  transferred_model fine_tune(const genome& g, const labelled_data& data, const finetune_options& opt) const {
    TINYLARGE_REQUIRE(opt.batch_size > 0, errc::invalid_argument, "nas::transfer_evaluator::fine_tune: batch_size must be > 0");
    mlp_supernet copy = net_;
    const std::size_t wd = g.widths.back(), outs = net_.space().outputs, hl = net_.space().max_depth;
    const std::vector<std::vector<std::uint8_t>> masks = copy.prune_hidden(g);
    std::vector<std::uint8_t> head_mask;
    float* const ph = copy.parameters().data() + copy.weight_offset(hl);
    {  // The starting head, installed in the first w_d columns of the copy's shared head.
      const std::vector<float> f = copy.body_features(g, train_.x, train_.count, train_.count);
      const head h0 = train_head(f.data(), train_.y, train_.count, wd, outs, opt_, false, 0.0f, g.sparsity(g.depth()));
      if (g.sparsity(g.depth()) > 0) {  // its pruned weights (the zeros train_head left) stay zero
        head_mask.resize(outs * wd);
        compress::magnitude_mask(std::span<const float>(h0.params.data(), outs * wd), g.sparsity(g.depth()) / 100.0, head_mask);
      }
      for (std::size_t o = 0; o < outs; ++o)
        for (std::size_t i = 0; i < wd; ++i) ph[o * copy.cols(hl) + i] = h0.params[o * wd + i];
      for (std::size_t o = 0; o < outs; ++o) ph[copy.rows(hl) * copy.cols(hl) + o] = h0.params[outs * wd + o];
    }
    nn::adam adam{.learning_rate = opt.learning_rate};
    nn::adam::state<float> state(adam, copy.parameters().size());
    std::vector<float> grad(copy.parameters().size()), bx(opt.batch_size * train_.features);
    std::vector<std::uint8_t> by(opt.batch_size);
    std::vector<std::size_t> order(train_.count);
    for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
    tinylarge::rng r(opt.seed);
    for (std::size_t e = 0; e < opt.epochs; ++e) {
      for (std::size_t i = order.size(); i > 1; --i) std::swap(order[i - 1], order[r.uniform_int(static_cast<std::uint32_t>(i))]);
      for (std::size_t s = 0; s < train_.count; s += opt.batch_size) {
        const std::size_t b = std::min(opt.batch_size, train_.count - s);
        for (std::size_t k = 0; k < b; ++k) {
          std::copy(train_.x + order[s + k] * train_.features, train_.x + (order[s + k] + 1) * train_.features,
                    bx.data() + k * train_.features);
          by[k] = train_.y[order[s + k]];
        }
        std::fill(grad.begin(), grad.end(), 0.0f);
        copy.accumulate_gradient(g, bx.data(), by.data(), b, grad);
        state.step(copy.parameters().data(), grad.data());
        copy.apply_masks(g, masks);
        if (!head_mask.empty())
          for (std::size_t o = 0; o < outs; ++o)
            for (std::size_t i = 0; i < wd; ++i)
              if (head_mask[o * wd + i] == 0) ph[o * copy.cols(hl) + i] = 0.0f;
      }
    }
    head h{wd, outs, std::vector<float>(outs * wd + outs)};
    for (std::size_t o = 0; o < outs; ++o)
      for (std::size_t i = 0; i < wd; ++i) h.params[o * wd + i] = ph[o * copy.cols(hl) + i];
    for (std::size_t o = 0; o < outs; ++o) h.params[outs * wd + o] = ph[copy.rows(hl) * copy.cols(hl) + o];
    return assemble(copy, g, data, &h);
  }

  /// Genomes evaluated (including cache hits).
  [[nodiscard]] std::size_t calls() const noexcept { return calls_; }
  /// Distinct genomes evaluated.
  [[nodiscard]] std::size_t distinct() const noexcept { return cache_.size(); }
  /// The device profile.
  [[nodiscard]] const device_profile& device() const noexcept { return device_; }

 private:
  /// The transferred model of `g` on `net`'s body: the new head trained by
  /// `train_head`, or `fixed` (fp32; pruned one-shot to the head's sparsity
  /// and fake-quantized here when the head is int8); accuracy on `data`;
  /// parameters in the library layout (pruned weights are zeros).
  transferred_model assemble(const mlp_supernet& net, const genome& g, const labelled_data& data, const head* fixed) const {
    std::vector<float> all(train_.x, train_.x + train_.count * train_.features);
    all.insert(all.end(), data.x, data.x + data.count * data.features);
    const std::size_t n = train_.count + data.count;
    const std::vector<float> f = net.body_features(g, all.data(), n, train_.count);
    const std::size_t wd = g.widths.back();
    const bool head_int8 = g.precisions.back() == layer_precision::int8;
    const float scale = head_int8 ? detail::activation_params(f.data(), train_.count * wd).scale : 0.0f;
    head h;
    if (fixed == nullptr) {
      h = train_head(f.data(), train_.y, train_.count, wd, net.space().outputs, opt_, head_int8, scale,
                     g.sparsity(g.depth()));
    } else {
      h = *fixed;
      if (g.sparsity(g.depth()) > 0) {
        std::vector<std::uint8_t> mask(h.outputs * h.inputs);
        compress::prune_by_magnitude(std::span<float>(h.params.data(), mask.size()), g.sparsity(g.depth()) / 100.0, mask);
      }
      if (head_int8) detail::fake_quantize_dense(h.params.data(), h.params.data() + h.outputs * h.inputs, h.outputs, h.inputs, scale);
    }
    transferred_model m{g, {}, head_accuracy(h, f.data() + train_.count * wd, data.y, data.count)};
    std::vector<float> w, b;
    for (std::size_t j = 0; j < g.convs.size(); ++j) {  // the conv stem first, as in nn::network<Model>::parameters()
      net.stem_layer(g, j, w, b);
      if (g.convs[j].precision == layer_precision::int8) {
        const detail::conv_shape c = detail::conv_shape_of(net.space(), g, j);
        const std::vector<float> in = net.stem_features(g, j, train_.x, train_.count, train_.count);
        detail::fake_quantize_dense(w.data(), b.data(), c.c_out, c.patch(), detail::activation_params(in.data(), in.size()).scale);
      }
      m.parameters.insert(m.parameters.end(), w.begin(), w.end());
      m.parameters.insert(m.parameters.end(), b.begin(), b.end());
    }
    for (std::size_t l = 0; l < g.depth(); ++l) {
      net.hidden_layer(g, l, w, b);
      if (g.precisions[l] == layer_precision::int8) {
        // The same quantization body_features applied: input range from the training rows.
        const std::vector<float> in = l == 0 && g.convs.empty()
                                          ? std::vector<float>(train_.x, train_.x + train_.count * train_.features)
                                          : layer_input(net, g, l);
        detail::fake_quantize_dense(w.data(), b.data(), g.widths[l], l == 0 ? net.space().dense_inputs(g) : g.widths[l - 1],
                                    detail::activation_params(in.data(), in.size()).scale);
      }
      m.parameters.insert(m.parameters.end(), w.begin(), w.end());
      m.parameters.insert(m.parameters.end(), b.begin(), b.end());
    }
    m.parameters.insert(m.parameters.end(), h.params.begin(), h.params.end());
    return m;
  }

  /// Input of hidden layer l on the training rows, as `body_features` computes it (l = 0: the stem's output).
  std::vector<float> layer_input(const mlp_supernet& net, const genome& g, std::size_t l) const {
    return net.hidden_features(g, l, train_.x, train_.count, train_.count);
  }

  /// Median over 5 repeats of the mean time of 32 batch-1 fp32 forward passes.
  double measure_latency(const genome& g) const {
    std::vector<std::vector<float>> ws(g.depth()), bs(g.depth()), cw(g.convs.size()), cb(g.convs.size());
    for (std::size_t l = 0; l < g.depth(); ++l) net_.hidden_layer(g, l, ws[l], bs[l]);
    std::size_t largest = net_.space().max_width() + net_.space().inputs;
    for (std::size_t j = 0; j < g.convs.size(); ++j) {
      net_.stem_layer(g, j, cw[j], cb[j]);
      largest = std::max(largest, detail::conv_shape_of(net_.space(), g, j).out_elems());
    }
    const std::size_t outs = net_.space().outputs, wd = g.widths.back();
    const std::vector<float> hw(outs * wd + outs, 0.01f);
    std::vector<float> a(largest), c(a.size()), z(largest), cols;
    std::vector<double> times;
    volatile float sink = 0;
    for (int rep = 0; rep < 5; ++rep) {
      const auto t0 = std::chrono::steady_clock::now();
      for (std::size_t s = 0; s < 32; ++s) {
        const float* x = eval_.x + (s % eval_.count) * eval_.features;
        std::size_t in = net_.space().inputs;
        std::copy(x, x + in, a.data());
        for (std::size_t j = 0; j < g.convs.size(); ++j) {
          const detail::conv_shape cs = detail::conv_shape_of(net_.space(), g, j);
          detail::conv_forward(cs, a.data(), 1, cw[j].data(), cb[j].data(), cols, z.data());
          detail::relu_inplace(z.data(), cs.out_elems());
          detail::max_pool2(cs, z.data(), 1, a.data(), nullptr);
          in = cs.pooled_elems();
        }
        for (std::size_t l = 0; l < g.depth(); ++l) {
          kernels::dense_f32(1, g.widths[l], in, a.data(), ws[l].data(), bs[l].data(), c.data());
          detail::relu_inplace(c.data(), g.widths[l]);
          a.swap(c);
          in = g.widths[l];
        }
        kernels::dense_f32(1, outs, wd, a.data(), hw.data(), hw.data() + outs * wd, c.data());
        sink = sink + c[0];
      }
      times.push_back(std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count() / 32.0);
    }
    std::sort(times.begin(), times.end());
    return times[times.size() / 2];
  }

  const mlp_supernet& net_;
  device_profile device_;
  labelled_data train_, eval_;
  head_options opt_;
  bool latency_;
  std::map<std::string, objectives> cache_;
  std::size_t calls_ = 0;
};

}  // namespace tinylarge::nas
