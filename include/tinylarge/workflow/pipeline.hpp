/// @file workflow/pipeline.hpp
/// @brief Pipeline-parallel inference and training of a partitioned model
///        over any `transport_policy`: segment s of `cut<K1, …>` runs on
///        endpoint s, micro-batches flow through the stages, so that the
///        stages work concurrently (`pipeline_inference<Model, Cut>`,
///        `pipeline_training<Model, Cut>`; training is described at its class).
///
/// Endpoint 0 is the head: it holds the requests (rows of model inputs),
/// runs segment 0 on each micro-batch and sends its activations to endpoint
/// 1; endpoint s (0 < s < K − 1) receives from s − 1, runs segment s and
/// sends to s + 1; the last endpoint sends the model's outputs back to 0.
/// The head keeps at most `window` micro-batches in flight (default K): it
/// sends micro-batch t + window only after output t came back. This bounds
/// every stage's buffers (a ring of `window` messages: a zero-copy
/// transport's payload stays valid until its receiver is done with it) and
/// rules out a cycle of blocked sends (stage K − 1 → 0 while 0 sends to 1).
///
/// ## Messages (wire frames, docs/wire-format.md)
///  - `smashed` {round = 1, aux = micro-batch index t, fp32 payload = rows ×
///    cut values}: endpoint s → s + 1, and the last endpoint → 0 (the
///    outputs, rows × Model::output_size);
///  - `control` / `stop`: endpoint 0 → every other endpoint after the last output.
/// A stage checks every frame: the sender is its predecessor, t is the next
/// index it expects (the transports keep one sender's frames in order), the
/// payload is fp32 and a whole number of rows of its input (at most
/// `micro_batch` rows), every value finite; anything else stops the run
/// with an error naming the check (`shape_mismatch`, `corrupt`,
/// `non_finite`). Every wait has `timeout`.
///
/// Outputs equal the single-process model's on the same micro-batches, bit
/// for bit: each stage runs the same segment kernels on the same rows as
/// `nn::network<Model>`, and fp32 crosses the links unchanged. With
/// micro-batches of two rows or more they also equal the whole batch run at
/// once (a GEMM row does not depend on the other rows); a one-row
/// micro-batch takes the batch-1 GEMV, which sums in another order. Transports: `in_process` (threads) and `mpi_transport`
/// (rank s = stage s). MQTT's topics are a star (clients talk to the server
/// only), so a chain of stages does not run over it.
#pragma once

#include <algorithm>
#include <bit>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <type_traits>
#include <utility>
#include <vector>

#include "../core/error.hpp"
#include "../nn/network.hpp"
#include "../nn/step.hpp"
#include "../nn/train.hpp"
#include "../partition/cut.hpp"
#include "../transport/policy.hpp"
#include "../transport/wire.hpp"

namespace tinylarge::workflow {

/// Settings of a pipeline run (the same on every endpoint).
struct pipeline_options {
  std::size_t micro_batch = 8;                     ///< rows per micro-batch (the last one may have fewer)
  std::size_t window = 0;                          ///< micro-batches in flight; 0 = the number of stages
  std::chrono::milliseconds timeout{30000};        ///< every wait
};

/// What one endpoint did.
struct pipeline_report {
  std::size_t micro_batches = 0;  ///< micro-batches this endpoint's segment ran
  double seconds = 0.0;           ///< wall time of the endpoint's program
  double compute_seconds = 0.0;   ///< of which in its segment's forward passes
};

/// The frames between pipeline stages (inference and training): fp32 rows
/// in a `smashed` (activations) or `gradient` frame, `round` and `aux`
/// naming the batch and the micro-batch; every received frame checked.
struct pipeline_link {
  template <transport_policy T>
  static status send(T& net, endpoint_id to, wire::message_type type, std::uint32_t round, std::uint64_t t,
                     std::span<const float> v, std::chrono::milliseconds timeout) {
    wire::message_header h{};
    h.type = type;
    h.dtype = wire::wire_dtype::fp32;
    h.round = round;
    h.aux = t;
    h.count = static_cast<std::uint32_t>(v.size());
    return net.send(to, h, std::span<const std::uint8_t>(reinterpret_cast<const std::uint8_t*>(v.data()), 4 * v.size()),
                    timeout);
  }

  /// No other frame is expected (see `receive`).
  struct no_other {
    bool operator()(const wire::message_view&) const noexcept { return false; }
  };

  /// The next frame from `from`: a `type` frame of batch `round` with index
  /// t, fp32, a whole number (1 … max_rows) of rows of `width` values, all
  /// finite; its rows. A `stop` from endpoint 0 sets `stop` and returns 0.
  /// A frame for which `other(frame)` returns true was taken by the caller
  /// (it copies what it needs) and the wait goes on.
  template <transport_policy T, class Other = no_other>
  static std::size_t receive(T& net, endpoint_id from, wire::message_type type, std::uint32_t round, std::uint64_t t,
                             std::size_t width, std::size_t max_rows, std::vector<float>& into,
                             std::chrono::milliseconds timeout, bool& stop, Other&& other = {}) {
    wire::message_view m{};
    do {
      const status st = net.recv(m, timeout);
      TINYLARGE_REQUIRE(st.ok(), st.code, st.message);
    } while (other(m));
    if (m.header.type == wire::message_type::control && m.header.sender == server_endpoint &&
        m.header.aux == static_cast<std::uint64_t>(wire::control_command::stop) && net.id() != server_endpoint) {
      stop = true;  // the head's stop, after the last output came back
      return 0;
    }
    TINYLARGE_REQUIRE(m.header.sender == from && m.header.type == type, errc::corrupt,
                      type == wire::message_type::smashed ? "pipeline: a frame that is not the predecessor's activations"
                                                          : "pipeline: a frame that is not the successor's gradient");
    TINYLARGE_REQUIRE(m.header.round == round && m.header.aux == t, errc::corrupt, "pipeline: a micro-batch out of order");
    TINYLARGE_REQUIRE(m.header.dtype == wire::wire_dtype::fp32, errc::corrupt, "pipeline: activations and gradients must be fp32");
    const std::size_t n = m.header.count;
    TINYLARGE_REQUIRE(n > 0 && n % width == 0 && n / width <= max_rows && m.payload.size() == 4 * n,
                      errc::shape_mismatch, "pipeline: the frame does not hold 1 ... micro_batch rows of the stage's input (or output gradient)");
    into.resize(n);
    std::memcpy(into.data(), m.payload.data(), 4 * n);
    bool finite = true;
    for (const float v : into) finite = finite && std::isfinite(v);
    TINYLARGE_REQUIRE(finite, errc::non_finite, "pipeline: a NaN or infinite activation or gradient");
    return n / width;
  }
};

/// Pipeline inference of `Model` cut by `Cut` (see the file comment).
/// @tparam Model a `sequential<...>`
/// @tparam Cut   a `cut<K1, …>` with at least one cut point (K = Cut::segments stages)
template <class Model, class Cut>
class pipeline_inference {
  static_assert(std::endian::native == std::endian::little,
                "tinylarge: pipeline_inference sends fp32 in host order: big-endian hosts are not supported");

 public:
  static constexpr std::size_t stages = Cut::segments;
  static_assert(stages >= 2, "tinylarge: pipeline_inference: Cut must have at least one cut point (two stages)");
  static_assert(Cut::template fits<Model>, "tinylarge: pipeline_inference: a cut point lies beyond the model's layers");

  /// The program of endpoint `net.id()` (< stages). `params` is the whole
  /// model's parameter vector (`nn::network<Model>::parameters()` layout);
  /// each stage copies its segment's range. On endpoint 0, `inputs` holds
  /// `rows` × Model::input_size values and `outputs` receives rows ×
  /// Model::output_size; other endpoints pass empty spans and rows = 0.
  template <transport_policy T>
  static pipeline_report run(T& net, std::span<const float> params, std::span<const float> inputs,
                             std::span<float> outputs, std::size_t rows, const pipeline_options& opt = {}) {
    TINYLARGE_REQUIRE(net.endpoints() >= stages, errc::invalid_argument,
                      "pipeline_inference: the transport has fewer endpoints than the cut has stages");
    TINYLARGE_REQUIRE(params.size() == Model::param_count, errc::shape_mismatch,
                      "pipeline_inference: params must hold the whole model's parameters");
    TINYLARGE_REQUIRE(opt.micro_batch > 0, errc::invalid_argument, "pipeline_inference: micro_batch must be positive");
    TINYLARGE_REQUIRE(net.id() < stages, errc::invalid_argument,
                      "pipeline_inference: this endpoint has no stage (endpoint id >= stages)");
    pipeline_report rep;
    [&]<std::size_t... S>(std::index_sequence<S...>) {
      ((net.id() == S ? (rep = stage<S>(net, params, inputs, outputs, rows, opt), 0) : 0), ...);
    }(std::make_index_sequence<stages>{});
    return rep;
  }

 private:
  template <std::size_t S>
  using segment = typename Cut::template segment<Model, S>;
  using clock = std::chrono::steady_clock;

  static std::size_t window_of(const pipeline_options& opt) { return opt.window == 0 ? stages : opt.window; }

  template <std::size_t S>
  static nn::network<segment<S>> make_stage(std::span<const float> params) {
    nn::network<segment<S>> seg(1);
    constexpr std::size_t begin = segment_param_begin<Cut, Model, S>;
    std::copy_n(params.begin() + static_cast<std::ptrdiff_t>(begin), segment<S>::param_count, seg.parameters().begin());
    return seg;
  }

  template <std::size_t S, transport_policy T>
  static pipeline_report stage(T& net, std::span<const float> params, std::span<const float> inputs,
                               std::span<float> outputs, std::size_t rows, const pipeline_options& opt) {
    using Seg = segment<S>;
    const auto t0 = clock::now();
    pipeline_report rep;
    nn::network<Seg> seg = make_stage<S>(params);
    const std::size_t mb = opt.micro_batch, window = window_of(opt);
    // A ring of `window` outgoing messages (zero-copy transports hand the span over).
    std::vector<std::vector<float>> ring(window);
    auto forward = [&](const float* x, std::size_t n) {
      const auto c0 = clock::now();
      const float* y = seg.forward(x, n, false);
      rep.compute_seconds += std::chrono::duration<double>(clock::now() - c0).count();
      ++rep.micro_batches;
      return y;
    };
    if constexpr (S == 0) {
      TINYLARGE_REQUIRE(inputs.size() == rows * Model::input_size && outputs.size() == rows * Model::output_size,
                        errc::shape_mismatch, "pipeline_inference: inputs / outputs do not hold rows samples");
      const std::size_t count = (rows + mb - 1) / mb;
      std::vector<float> in;
      std::size_t sent = 0, done = 0;
      bool stop = false;
      while (done < count) {
        if (sent < count && sent - done < window) {
          const std::size_t r0 = sent * mb, n = std::min(mb, rows - r0);
          const float* y = forward(inputs.data() + r0 * Model::input_size, n);
          std::vector<float>& msg = ring[sent % window];
          msg.assign(y, y + n * Seg::output_size);
          const status st = pipeline_link::send(net, 1, wire::message_type::smashed, 1, sent, msg, opt.timeout);
          TINYLARGE_REQUIRE(st.ok(), st.code, st.message);
          ++sent;
          continue;
        }
        const std::size_t got = pipeline_link::receive(net, static_cast<endpoint_id>(stages - 1), wire::message_type::smashed,
                                                       1, done, Model::output_size, mb, in, opt.timeout, stop);
        TINYLARGE_REQUIRE(!stop, errc::corrupt, "pipeline_inference: a stop frame at the head");
        TINYLARGE_REQUIRE(got == std::min(mb, rows - done * mb), errc::shape_mismatch,
                          "pipeline_inference: an output micro-batch of the wrong size");
        std::copy(in.begin(), in.end(), outputs.begin() + static_cast<std::ptrdiff_t>(done * mb * Model::output_size));
        ++done;
      }
      wire::message_header h{};
      h.type = wire::message_type::control;
      h.round = 1;
      h.aux = static_cast<std::uint64_t>(wire::control_command::stop);
      for (endpoint_id e = 1; e < stages; ++e) {
        const status st = net.send(e, h, {}, opt.timeout);
        TINYLARGE_REQUIRE(st.ok(), st.code, st.message);
      }
    } else {
      const endpoint_id next = S + 1 == stages ? server_endpoint : static_cast<endpoint_id>(S + 1);
      std::vector<float> in;
      bool stop = false;
      for (std::uint64_t t = 0;; ++t) {
        const std::size_t n = pipeline_link::receive(net, static_cast<endpoint_id>(S - 1), wire::message_type::smashed, 1, t,
                                                     Seg::input_size, mb, in, opt.timeout, stop);
        if (stop) break;
        const float* y = forward(in.data(), n);
        std::vector<float>& msg = ring[t % window];
        msg.assign(y, y + n * Seg::output_size);
        const status st = pipeline_link::send(net, next, wire::message_type::smashed, 1, t, msg, opt.timeout);
        TINYLARGE_REQUIRE(st.ok(), st.code, st.message);
      }
    }
    rep.seconds = std::chrono::duration<double>(clock::now() - t0).count();
    return rep;
  }
};


/// What one endpoint of a pipeline training run did.
struct pipeline_training_report {
  std::size_t batches = 0;         ///< optimizer steps (batches) this endpoint's segment took
  std::size_t micro_batches = 0;   ///< forward passes of its segment (backward re-runs counted apart)
  double loss_sum = 0.0;          ///< last endpoint: Σ over batches of the batch's mean loss (0 elsewhere)
  double seconds = 0.0;            ///< wall time of the endpoint's program
  double compute_seconds = 0.0;    ///< of which in its segment's forward and backward passes
};

/// Pipeline-parallel training of `Model` cut by `Cut` (GPipe schedule with
/// re-materialisation): segment s on endpoint s, each batch of `batch` rows
/// cut into micro-batches of `micro_batch` rows.
///
/// Per batch b (round = b + 1 in every frame), with M micro-batches:
///  1. forward phase, t = 0 … M − 1: endpoint 0 runs segment 0 on
///     micro-batch t of `inputs` and sends `smashed` {round, aux = t, fp32
///     rows × cut values} to endpoint 1; endpoint s receives from s − 1,
///     runs its segment and sends to s + 1; the last endpoint keeps its
///     inputs. Each endpoint keeps the input of every micro-batch (not its
///     activations: the network holds one forward pass).
///  2. backward phase, t = 0 … M − 1: the last endpoint re-runs its forward
///     pass on micro-batch t, evaluates the loss on the rows' `targets`
///     (`micro_batch_gradient`: the micro-batch's mean-loss gradient ×
///     rows / batch rows, so the M gradients add up to the batch mean's),
///     back-propagates and sends `gradient` {round, aux = t, fp32 rows ×
///     cut values} to s − 1; endpoint s receives it, re-runs its forward
///     pass on its kept input, back-propagates it and sends its input
///     gradient on; endpoint 0 back-propagates without an input gradient.
///     The gradients of the M micro-batches accumulate in the segment's
///     `gradients()` in order t = 0 … M − 1.
///  3. every endpoint takes its optimizer step (`nn::finish_step` with the
///     segment's `trainable_state`): the stages step concurrently.
/// After the last batch, endpoint s > 0 sends its segment's parameters
/// (`model` {round = batches + 1, fp32}) to endpoint 0, which returns the
/// whole trained model in `params` and then sends `control`/`stop` to every
/// stage (a stage returns only after it: a zero-copy transport reads the
/// segment from the stage's memory).
///
/// **Bit-identical** to training `nn::network<Model>` in one process on the
/// same batches and micro-batches (zero the gradients, forward +
/// `micro_batch_gradient` + backward per micro-batch in order, one step per
/// batch): each stage runs the same layer kernels on the same rows, the
/// re-run forward pass recomputes the same activations, fp32 crosses the
/// links unchanged, and an element-wise optimizer on a segment is the whole
/// model's on that range. Needs a model without dropout (the re-run would
/// draw new masks) and an optimizer without cross-parameter state (all of
/// nn/optimizer.hpp's are element-wise).
///
/// Why this schedule: all forwards of a batch before its backwards means
/// every send goes downstream in the first phase and upstream in the
/// second, so no two endpoints can block sending to each other (a
/// rendezvous send of MPI included); re-running the forward pass costs one
/// extra forward per micro-batch (GPipe's re-materialisation) instead of M
/// copies of every activation. Frames are checked as in inference (sender,
/// type, batch, index, fp32, whole rows, finite; errors name the check);
/// every wait has `timeout`.
template <class Model, class Cut>
class pipeline_training {
  static_assert(std::endian::native == std::endian::little,
                "tinylarge: pipeline_training sends fp32 in host order: big-endian hosts are not supported");

 public:
  static constexpr std::size_t stages = Cut::segments;
  static_assert(stages >= 2, "tinylarge: pipeline_training: Cut must have at least one cut point (two stages)");
  static_assert(stages <= 64, "tinylarge: pipeline_training: at most 64 stages");
  static_assert(Cut::template fits<Model>, "tinylarge: pipeline_training: a cut point lies beyond the model's layers");

  /// Target values per row for a loss: one label (`uint8_t` targets) or
  /// Model::output_size values.
  template <class Loss>
  static constexpr std::size_t target_width =
      std::is_same_v<typename Loss::target_type, std::uint8_t> ? 1 : Model::output_size;

  /// ∂(batch mean loss)/∂z restricted to the `rows` rows of one micro-batch
  /// of a batch of `batch_rows` rows: the micro-batch's own mean-loss
  /// gradient × rows / batch_rows (exact when that ratio is a power of two).
  /// @return the micro-batch's mean loss
  template <class Loss>
  static double micro_batch_gradient(const Loss& loss, const float* z, const typename Loss::target_type* targets,
                                     std::size_t rows, std::size_t batch_rows, float* grad) {
    const double l = loss.evaluate(z, targets, rows, Model::output_size, grad);
    TINYLARGE_REQUIRE(std::isfinite(l), errc::non_finite, "pipeline_training: the loss became NaN or Inf");
    const float f = static_cast<float>(rows) / static_cast<float>(batch_rows);
    for (std::size_t i = 0; i < rows * Model::output_size; ++i) grad[i] *= f;
    return l;
  }

  /// The program of endpoint `net.id()` (< stages). `params`: the whole
  /// model's parameter vector (`nn::network<Model>::parameters()` layout) on
  /// every endpoint; each stage trains its segment's range, and endpoint 0
  /// returns the whole trained model in it (other endpoints: their range).
  /// `inputs` (rows × Model::input_size) on endpoint 0, `targets` (rows ×
  /// `target_width<Loss>`) on the last endpoint; empty spans elsewhere.
  /// `rows` and `batch` (rows per optimizer step) are the same everywhere.
  template <transport_policy T, nn::optimizer_policy Opt, class Loss>
  static pipeline_training_report run(T& net, std::span<float> params, const Opt& opt, const Loss& loss,
                                      std::span<const float> inputs,
                                      std::span<const typename Loss::target_type> targets, std::size_t rows,
                                      std::size_t batch, const pipeline_options& o = {}) {
    TINYLARGE_REQUIRE(net.endpoints() >= stages, errc::invalid_argument,
                      "pipeline_training: the transport has fewer endpoints than the cut has stages");
    TINYLARGE_REQUIRE(params.size() == Model::param_count, errc::shape_mismatch,
                      "pipeline_training: params must hold the whole model's parameters");
    TINYLARGE_REQUIRE(o.micro_batch > 0 && batch > 0 && rows > 0, errc::invalid_argument,
                      "pipeline_training: rows, batch and micro_batch must be positive");
    TINYLARGE_REQUIRE(rows / batch < 0xFFFFFFFEu, errc::invalid_argument,
                      "pipeline_training: more batches than a frame's 32-bit round can number");
    TINYLARGE_REQUIRE(net.id() < stages, errc::invalid_argument,
                      "pipeline_training: this endpoint has no stage (endpoint id >= stages)");
    pipeline_training_report rep;
    [&]<std::size_t... S>(std::index_sequence<S...>) {
      ((net.id() == S ? (rep = stage<S>(net, params, opt, loss, inputs, targets, rows, batch, o), 0) : 0), ...);
    }(std::make_index_sequence<stages>{});
    return rep;
  }

 private:
  template <std::size_t S>
  using segment = typename Cut::template segment<Model, S>;
  template <std::size_t S>
  static constexpr std::size_t param_begin = segment_param_begin<Cut, Model, S>;
  using clock = std::chrono::steady_clock;

  template <std::size_t S, transport_policy T, class Opt, class Loss>
  static pipeline_training_report stage(T& net, std::span<float> params, const Opt& opt, const Loss& loss,
                                        std::span<const float> inputs,
                                        std::span<const typename Loss::target_type> targets, std::size_t rows,
                                        std::size_t batch, const pipeline_options& o) {
    using Seg = segment<S>;
    constexpr bool head = S == 0, last = S + 1 == stages;
    constexpr std::size_t tw = target_width<Loss>;
    if constexpr (head)
      TINYLARGE_REQUIRE(inputs.size() == rows * Model::input_size, errc::shape_mismatch,
                        "pipeline_training: inputs must hold rows samples on endpoint 0");
    if constexpr (last)
      TINYLARGE_REQUIRE(targets.size() == rows * tw, errc::shape_mismatch,
                        "pipeline_training: targets must hold rows targets on the last endpoint");
    const auto t0 = clock::now();
    pipeline_training_report rep;
    nn::network<Seg> seg(1);
    std::copy_n(params.begin() + static_cast<std::ptrdiff_t>(param_begin<S>), Seg::param_count,
                seg.parameters().begin());
    nn::trainable_state<Opt, Seg> state(opt);
    nn::optimizer_update<nn::trainable_state<Opt, Seg>> update{state};
    const std::size_t mb = o.micro_batch, batches = (rows + batch - 1) / batch;
    std::vector<std::vector<float>> kept;  // inputs of the batch's micro-batches (not on endpoint 0)
    // Outgoing frames, one per micro-batch and direction: a zero-copy transport's receiver reads the
    // sender's buffer, and the batch's schedule guarantees it has done so before the next batch
    // reuses it (the activations before the gradients come back, the gradients before the next
    // batch's activations arrive).
    std::vector<std::vector<float>> sent_fwd, sent_bwd;
    std::vector<float> in, grad;
    bool stop = false;
    const auto final_round = static_cast<std::uint32_t>(batches + 1);
    std::uint64_t placed = 1;  // endpoint 0: bit e set when segment e is in params
    auto timed = [&](auto&& f) {
      const auto c0 = clock::now();
      f();
      rep.compute_seconds += std::chrono::duration<double>(clock::now() - c0).count();
    };
    for (std::size_t b = 0; b < batches; ++b) {
      const auto round = static_cast<std::uint32_t>(b + 1);
      const std::size_t r0 = b * batch, brows = std::min(batch, rows - r0), m = (brows + mb - 1) / mb;
      auto rows_of = [&](std::size_t t) { return std::min(mb, brows - t * mb); };
      if constexpr (!head) kept.resize(std::max(kept.size(), m));
      sent_fwd.resize(std::max(sent_fwd.size(), m));
      sent_bwd.resize(std::max(sent_bwd.size(), m));
      // 1. forward phase
      for (std::size_t t = 0; t < m; ++t) {
        const std::size_t n = rows_of(t);
        const float* x = nullptr;
        if constexpr (head) {
          x = inputs.data() + (r0 + t * mb) * Model::input_size;
        } else {
          const std::size_t got = pipeline_link::receive(net, static_cast<endpoint_id>(S - 1), wire::message_type::smashed,
                                                         round, t, Seg::input_size, mb, kept[t], o.timeout, stop);
          TINYLARGE_REQUIRE(!stop && got == n, errc::shape_mismatch, "pipeline_training: a micro-batch of the wrong size");
          x = kept[t].data();
        }
        if constexpr (!last) {
          const float* y = nullptr;
          timed([&] { y = seg.forward(x, n, true); });
          ++rep.micro_batches;
          sent_fwd[t].assign(y, y + n * Seg::output_size);
          const status st = pipeline_link::send(net, static_cast<endpoint_id>(S + 1), wire::message_type::smashed, round, t,
                                                sent_fwd[t], o.timeout);
          TINYLARGE_REQUIRE(st.ok(), st.code, st.message);
        }
      }
      // 2. backward phase, micro-batches in order; the gradients accumulate
      seg.zero_gradients();
      double batch_loss = 0.0;
      for (std::size_t t = 0; t < m; ++t) {
        const std::size_t n = rows_of(t);
        const float* x = head ? inputs.data() + (r0 + t * mb) * Model::input_size : kept[t].data();
        const float* dy = nullptr;
        if constexpr (last) {
          grad.resize(n * Model::output_size);
          timed([&] {
            const float* z = seg.forward(x, n, true);
            batch_loss += micro_batch_gradient(loss, z, targets.data() + (r0 + t * mb) * tw, n, brows, grad.data()) *
                          static_cast<double>(n);
          });
          ++rep.micro_batches;
          dy = grad.data();
        } else {
          // At the head, the other stages' trained segments of the last batch may come first.
          auto segment_frame = [&](const wire::message_view& f) {
            if (!head || f.header.type != wire::message_type::model) return false;
            place_segment(f, params, final_round, placed);
            return true;
          };
          const std::size_t got = pipeline_link::receive(net, static_cast<endpoint_id>(S + 1), wire::message_type::gradient,
                                                         round, t, Seg::output_size, mb, in, o.timeout, stop, segment_frame);
          TINYLARGE_REQUIRE(!stop && got == n, errc::shape_mismatch, "pipeline_training: a gradient of the wrong size");
          timed([&] { seg.forward(x, n, true); });  // re-materialise the activations of micro-batch t
          dy = in.data();
        }
        if constexpr (head) {
          timed([&] { seg.backward(dy); });
        } else {
          std::vector<float>& dx = sent_bwd[t];
          dx.resize(n * Seg::input_size);
          timed([&] { seg.backward(dy, dx.data()); });
          const status st = pipeline_link::send(net, static_cast<endpoint_id>(S - 1), wire::message_type::gradient, round, t,
                                                dx, o.timeout);
          TINYLARGE_REQUIRE(st.ok(), st.code, st.message);
        }
      }
      // 3. the optimizer step of this segment
      timed([&] { nn::finish_step(seg, update); });
      ++rep.batches;
      if constexpr (last) rep.loss_sum += batch_loss / static_cast<double>(brows);
    }
    // The trained segments, assembled at endpoint 0.
    const auto mine = seg.parameters();
    std::copy(mine.begin(), mine.end(), params.begin() + static_cast<std::ptrdiff_t>(param_begin<S>));
    if constexpr (head) {
      const std::uint64_t all = stages == 64 ? ~std::uint64_t{0} : (std::uint64_t{1} << stages) - 1;
      while (placed != all) {
        wire::message_view m{};
        const status st = net.recv(m, o.timeout);
        TINYLARGE_REQUIRE(st.ok(), st.code, st.message);
        place_segment(m, params, final_round, placed);
      }
      wire::message_header h{};  // the stages may now release their segments
      h.type = wire::message_type::control;
      h.round = final_round;
      h.aux = static_cast<std::uint64_t>(wire::control_command::stop);
      for (endpoint_id e = 1; e < stages; ++e) {
        const status st = net.send(e, h, {}, o.timeout);
        TINYLARGE_REQUIRE(st.ok(), st.code, st.message);
      }
    } else {
      wire::message_header h{};
      h.type = wire::message_type::model;
      h.dtype = wire::wire_dtype::fp32;
      h.round = final_round;
      h.count = static_cast<std::uint32_t>(Seg::param_count);
      const status st = net.send(
          server_endpoint, h,
          std::span<const std::uint8_t>(reinterpret_cast<const std::uint8_t*>(mine.data()), 4 * Seg::param_count),
          o.timeout);
      TINYLARGE_REQUIRE(st.ok(), st.code, st.message);
      // The segment's buffer stays alive until the head has it (zero-copy transports): wait for its stop.
      pipeline_link::receive(net, server_endpoint, wire::message_type::model, final_round, 0, 1, 1, in, o.timeout, stop);
      TINYLARGE_REQUIRE(stop, errc::corrupt, "pipeline_training: a frame after the last batch that is not the head's stop");
    }
    rep.seconds = std::chrono::duration<double>(clock::now() - t0).count();
    return rep;
  }

  /// Endpoint 0: a stage's trained segment (the stages' frames may come in
  /// any order, and before the head's last gradients; each once), checked
  /// and placed into `params`.
  static void place_segment(const wire::message_view& m, std::span<float> params, std::uint32_t round,
                            std::uint64_t& placed) {
    const std::size_t e = m.header.sender;
    TINYLARGE_REQUIRE(m.header.type == wire::message_type::model && m.header.round == round && e > 0 && e < stages &&
                          (placed >> e & 1u) == 0 && m.header.dtype == wire::wire_dtype::fp32,
                      errc::corrupt, "pipeline_training: a frame that is not a stage's trained segment");
    const std::size_t begin = segment_begin(e), count = segment_end(e) - begin;
    TINYLARGE_REQUIRE(m.header.count == count && m.payload.size() == 4 * count, errc::shape_mismatch,
                      "pipeline_training: a trained segment of the wrong size");
    std::vector<float> v(count);
    std::memcpy(v.data(), m.payload.data(), 4 * count);
    for (const float x : v)
      TINYLARGE_REQUIRE(std::isfinite(x), errc::non_finite, "pipeline_training: a NaN or infinite trained parameter");
    std::copy(v.begin(), v.end(), params.begin() + static_cast<std::ptrdiff_t>(begin));
    placed |= std::uint64_t{1} << e;
  }

  static std::size_t segment_begin(std::size_t e) {
    std::size_t v = 0;
    [&]<std::size_t... S>(std::index_sequence<S...>) { ((e == S ? (v = param_begin<S>, 0) : 0), ...); }(
        std::make_index_sequence<stages>{});
    return v;
  }
  static std::size_t segment_end(std::size_t e) { return e + 1 == stages ? Model::param_count : segment_begin(e + 1); }
};

}  // namespace tinylarge::workflow
