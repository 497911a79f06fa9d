/// @file workflow/pipeline.hpp
/// @brief Pipeline-parallel inference of a partitioned model over any
///        `transport_policy`: segment s of `cut<K1, …>` runs on endpoint s,
///        micro-batches flow through the stages, so that the stages work
///        concurrently (`pipeline_inference<Model, Cut>`).
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
#include <utility>
#include <vector>

#include "../core/error.hpp"
#include "../nn/network.hpp"
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

  template <transport_policy T>
  static status send_values(T& net, endpoint_id to, std::uint64_t t, std::span<const float> v,
                            std::chrono::milliseconds timeout) {
    wire::message_header h{};
    h.type = wire::message_type::smashed;
    h.dtype = wire::wire_dtype::fp32;
    h.round = 1;
    h.aux = t;
    h.count = static_cast<std::uint32_t>(v.size());
    return net.send(to, h, std::span<const std::uint8_t>(reinterpret_cast<const std::uint8_t*>(v.data()), 4 * v.size()),
                    timeout);
  }

  /// The next frame from `from`: a smashed frame with index t, fp32, a whole
  /// number (1 … max_rows) of rows of `width` values, all finite; its rows.
  template <transport_policy T>
  static std::size_t receive(T& net, endpoint_id from, std::uint64_t t, std::size_t width, std::size_t max_rows,
                             std::vector<float>& into, std::chrono::milliseconds timeout, bool& stop) {
    wire::message_view m{};
    const status st = net.recv(m, timeout);
    TINYLARGE_REQUIRE(st.ok(), st.code, st.message);
    if (m.header.type == wire::message_type::control && m.header.sender == server_endpoint &&
        m.header.aux == static_cast<std::uint64_t>(wire::control_command::stop) && net.id() != server_endpoint) {
      stop = true;  // the head's stop, after the last output came back
      return 0;
    }
    TINYLARGE_REQUIRE(m.header.sender == from && m.header.type == wire::message_type::smashed, errc::corrupt,
                      "pipeline_inference: a frame that is not the predecessor's activations");
    TINYLARGE_REQUIRE(m.header.aux == t, errc::corrupt, "pipeline_inference: a micro-batch out of order");
    TINYLARGE_REQUIRE(m.header.dtype == wire::wire_dtype::fp32, errc::corrupt, "pipeline_inference: activations must be fp32");
    const std::size_t n = m.header.count;
    TINYLARGE_REQUIRE(n > 0 && n % width == 0 && n / width <= max_rows, errc::shape_mismatch,
                      "pipeline_inference: the activations are not 1 ... micro_batch rows of the stage's input");
    into.resize(n);
    std::memcpy(into.data(), m.payload.data(), 4 * n);
    bool finite = true;
    for (const float v : into) finite = finite && std::isfinite(v);
    TINYLARGE_REQUIRE(finite, errc::non_finite, "pipeline_inference: a NaN or infinite activation");
    return n / width;
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
          const status st = send_values(net, 1, sent, msg, opt.timeout);
          TINYLARGE_REQUIRE(st.ok(), st.code, st.message);
          ++sent;
          continue;
        }
        const std::size_t got = receive(net, static_cast<endpoint_id>(stages - 1), done, Model::output_size, mb, in,
                                        opt.timeout, stop);
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
        const std::size_t n = receive(net, static_cast<endpoint_id>(S - 1), t, Seg::input_size, mb, in, opt.timeout, stop);
        if (stop) break;
        const float* y = forward(in.data(), n);
        std::vector<float>& msg = ring[t % window];
        msg.assign(y, y + n * Seg::output_size);
        const status st = send_values(net, next, t, msg, opt.timeout);
        TINYLARGE_REQUIRE(st.ok(), st.code, st.message);
      }
    }
    rep.seconds = std::chrono::duration<double>(clock::now() - t0).count();
    return rep;
  }
};

}  // namespace tinylarge::workflow
