// A minimal user-written member of each policy axis (precision, compression,
// partition, aggregation, transport, workflow), checked against its concept
// and used in a real computation.
//
// The regions between `// [custom-…]` marker lines are quoted verbatim by
// docs/concepts/*.md; scripts/check_doc_snippets.py (the `docs` step of
// scripts/test.sh) fails when a page and this file disagree. Edit the code
// here, then paste the region into the page.
#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <deque>
#include <memory>
#include <mutex>
#include <span>
#include <thread>
#include <type_traits>
#include <vector>

#include "tinylarge/tinylarge.hpp"

#include "blobs.hpp"

namespace {

// ============================================================================
// Precision
// ============================================================================

// [custom-precision]
/// Signed 16-bit fixed point with 8 fraction bits (Q7.8): range [-128, 128),
/// step 1/256, rounding half away from zero, saturating.
struct q7_8 {
  using storage_type = std::int16_t;
  using accumulator_type = float;
  static constexpr bool quantized = false;  // each value on its own: encode / decode
  static constexpr unsigned storage_bits = 16;
  static constexpr const char* name() noexcept { return "q7_8"; }

  static constexpr std::int16_t encode(float x) noexcept {
    if (!(x == x)) return 0;  // NaN
    const float s = x * 256.0f;
    const float r = s < 0.0f ? s - 0.5f : s + 0.5f;
    return static_cast<std::int16_t>(std::clamp(r, -32768.0f, 32767.0f));
  }
  static constexpr float decode(std::int16_t q) noexcept { return static_cast<float>(q) / 256.0f; }
};

static_assert(tl::float_precision<q7_8>);
static_assert(!tl::quantized_precision<q7_8>);
// [custom-precision]

// ============================================================================
// Compression
// ============================================================================

// [custom-compression]
/// Prunes every weight with |w| < threshold (a fixed magnitude, unlike
/// magnitude_prune's target sparsity). Remembers the mask for fine-tuning.
struct threshold_prune {
  float threshold = 0.05f;  // hyperparameters are data members

  static constexpr const char* name() noexcept { return "threshold_prune"; }
  static constexpr tl::compress::stage_kind kind = tl::compress::stage_kind::pruning;
  static constexpr tl::compress::representation produces = tl::compress::representation::sparse;
  static constexpr bool lossless = false;
  static constexpr bool needs_mask = true;
  static constexpr bool emits_symbols = true;  // the CSR column gaps

  template <class T>
  struct state {
    std::vector<std::uint8_t> mask;  // 1 = kept
    std::size_t kept = 0;
  };

  void apply(state<float>& s, tl::compress::matrix_ref<float> w) const {
    s.mask.assign(w.size(), 0);
    s.kept = 0;
    for (std::size_t i = 0; i < w.size(); ++i) {
      if (std::fabs(w.data[i]) < threshold) {
        w.data[i] = 0.0f;
      } else {
        s.mask[i] = 1;
        ++s.kept;
      }
    }
  }
};

static_assert(tl::compress::compression_policy<threshold_prune>);
// A user stage takes part in the pipeline rules through its `kind`:
static_assert(tl::compress::valid_pipeline<threshold_prune, tl::compress::weight_sharing<4>, tl::compress::huffman>);
static_assert(!tl::compress::valid_pipeline<tl::compress::weight_sharing<4>, threshold_prune>);
// [custom-compression]

// ============================================================================
// Partition
// ============================================================================

// [custom-partition]
/// One cut in the middle of whatever model it is given: the device runs the
/// first size/2 layers, the server the rest. Built on cut<K>, whose K it
/// computes from the model.
struct middle_cut {
  static constexpr std::size_t cuts = 1;
  static constexpr std::size_t segments = 2;

  template <class Model>
  using as_cut = tl::cut<Model::size / 2>;

  template <class Model>
  static constexpr bool fits = Model::size >= 2;

  template <class Model, std::size_t S>
  using segment = typename as_cut<Model>::template segment<Model, S>;

  template <class Model, std::size_t C>
  static constexpr std::size_t cut_size = as_cut<Model>::template cut_size<Model, C>;
};

using mlp = tl::sequential<tl::dense<16, 12>, tl::relu, tl::dense<12, 8>, tl::relu, tl::dense<8, 4>>;
static_assert(tl::partition_policy<middle_cut> && tl::partition_policy_for<middle_cut, mlp>);
static_assert(std::is_same_v<middle_cut::segment<mlp, 0>, tl::sequential<tl::input<16>, tl::dense<16, 12>, tl::relu>>);
static_assert(middle_cut::cut_size<mlp, 0> == 12);
// [custom-partition]

// ============================================================================
// Aggregation
// ============================================================================

// [custom-aggregation]
/// Server-side exponential moving average of FedAvg: w ← (1 − α)·w + α·mean.
/// α = 1 is FedAvg; a smaller α damps oscillations between rounds.
struct ema_fedavg {
  float alpha = 0.5f;

  static constexpr const char* name() noexcept { return "ema_fedavg"; }
  static constexpr bool linear = true;  // the aggregator computes the weighted mean
  std::size_t min_clients() const noexcept { return 1; }

  template <std::floating_point T>
  struct state {
    std::size_t rounds = 0;
    state(const ema_fedavg&, std::size_t /*dimension*/) noexcept {}
  };

  template <std::floating_point T>
  void apply(state<T>& st, std::span<T> global, std::span<const T> mean) const noexcept {
    const T a = static_cast<T>(alpha);
    for (std::size_t j = 0; j < global.size(); ++j) global[j] = (T(1) - a) * global[j] + a * mean[j];
    ++st.rounds;
  }
};

static_assert(tl::aggregation_policy<ema_fedavg> && tl::linear_aggregation<ema_fedavg>);
// [custom-aggregation]

// ============================================================================
// Client selection
// ============================================================================

// [custom-selection]
/// Energy-aware selection: the m clients whose predicted round costs the
/// least energy (link-aware: it reads each candidate's predicted cost).
struct least_energy_selection {
  static constexpr const char* name() noexcept { return "least_energy"; }
  static constexpr bool needs_links = true;
  std::size_t choose(std::span<std::uint32_t> pool, std::size_t m,
                     std::span<const tl::workflow::candidate_link> links, tl::rng& /*r*/) const {
    const std::size_t n = std::min(m, pool.size());
    std::partial_sort(pool.begin(), pool.begin() + static_cast<std::ptrdiff_t>(n), pool.end(),
                      [&](std::uint32_t a, std::uint32_t b) { return links[a].cost.joules < links[b].cost.joules; });
    return n;
  }
};
static_assert(tl::workflow::selection_policy<least_energy_selection>);
// [custom-selection]

// ============================================================================
// Transport
// ============================================================================

// [custom-transport]
/// A serialising loopback: every message is encoded into a wire frame
/// (header, payload, CRC) on send and decoded and validated on receive, so it
/// behaves like a network transport (copies, framing, rejection counts) inside
/// one process. One `loopback` object per endpoint, all sharing one `hub`.
class loopback {
 public:
  class hub {
   public:
    explicit hub(std::size_t endpoints) : boxes_(endpoints) {
      for (auto& b : boxes_) b = std::make_unique<box>();
    }
    std::size_t endpoints() const noexcept { return boxes_.size(); }

   private:
    friend class loopback;
    struct box {
      std::mutex mutex;
      std::condition_variable ready;
      std::deque<std::vector<std::uint8_t>> frames;
    };
    std::vector<std::unique_ptr<box>> boxes_;
  };

  loopback(hub& net, tl::endpoint_id id) : net_(&net), id_(id) {}

  static constexpr const char* name() noexcept { return "loopback"; }
  tl::endpoint_id id() const noexcept { return id_; }
  std::size_t endpoints() const noexcept { return net_->endpoints(); }
  const tl::transport_stats& stats() const noexcept { return stats_; }

  tl::status send(tl::endpoint_id to, const tl::wire::message_header& h, std::span<const std::uint8_t> payload,
                  std::chrono::milliseconds /*timeout*/ = std::chrono::milliseconds{0}) {
    if (to >= endpoints()) return {tl::errc::invalid_argument, "loopback::send: no such endpoint"};
    tl::wire::message_header hh = h;
    hh.sender = id_;  // the transport, not the caller, says who sends
    hh.sequence = sequence_++;
    std::vector<std::uint8_t> frame(tl::wire::frame_size(payload.size()));
    std::size_t written = 0;
    TINYLARGE_TRY(tl::wire::encode(hh, payload, frame, written));
    frame.resize(written);
    stats_.frames_sent += 1;
    stats_.bytes_sent += written;
    auto& b = *net_->boxes_[to];
    {
      std::lock_guard<std::mutex> lock(b.mutex);
      b.frames.push_back(std::move(frame));
    }
    b.ready.notify_one();
    return tl::status::success();
  }

  tl::status broadcast(const tl::wire::message_header& h, std::span<const std::uint8_t> payload,
                       std::chrono::milliseconds timeout = std::chrono::milliseconds{0}) {
    for (tl::endpoint_id e = 0; e < endpoints(); ++e)
      if (e != id_) TINYLARGE_TRY(send(e, h, payload, timeout));
    return tl::status::success();
  }

  /// `m.payload` points into this endpoint's last frame: valid until the next recv.
  tl::status recv(tl::wire::message_view& m, std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    auto& b = *net_->boxes_[id_];
    for (;;) {
      {
        std::unique_lock<std::mutex> lock(b.mutex);
        if (!b.ready.wait_until(lock, deadline, [&] { return !b.frames.empty(); }))
          return {tl::errc::timed_out, "loopback::recv: no message before the deadline"};
        last_ = std::move(b.frames.front());
        b.frames.pop_front();
      }
      if (tl::wire::decode(last_, m, {}, &stats_.wire).ok()) {
        stats_.frames_received += 1;
        stats_.bytes_received += last_.size();
        return tl::status::success();
      }  // a frame that fails validation is dropped (and counted); wait on
    }
  }

 private:
  hub* net_;
  tl::endpoint_id id_;
  std::uint32_t sequence_ = 0;
  std::vector<std::uint8_t> last_;
  tl::transport_stats stats_{};
};

static_assert(tl::transport_policy<loopback>);
// [custom-transport]

// ============================================================================
// Workflow
// ============================================================================

// [custom-workflow]
/// A smashed-data codec for split learning: bfloat16, 2 bytes per value
/// (fp32's exponent range, 8 significant bits).
struct bf16_codec {
  static constexpr const char* name() noexcept { return "bf16"; }
  static constexpr std::size_t max_encoded_bytes(std::size_t n) noexcept { return 2 * n; }
  static std::size_t encode(std::span<const float> x, std::span<std::byte> out) {
    TINYLARGE_REQUIRE(out.size() >= 2 * x.size(), tl::errc::capacity_exceeded, "bf16_codec: output too small");
    for (std::size_t i = 0; i < x.size(); ++i) {
      const tl::bfloat16 b = tl::float_to_bfloat16(x[i]);
      std::memcpy(out.data() + 2 * i, &b, 2);
    }
    return 2 * x.size();
  }
  static tl::status decode(std::span<const std::byte> in, std::span<float> y) noexcept {
    if (in.size() != 2 * y.size()) return {tl::errc::truncated, "bf16_codec: not 2 bytes per value"};
    for (std::size_t i = 0; i < y.size(); ++i) {
      tl::bfloat16 b{};
      std::memcpy(&b, in.data() + 2 * i, 2);
      y[i] = tl::bfloat16_to_float(b);
    }
    return tl::status::success();
  }
};
static_assert(tl::smashed_codec<bf16_codec>);

/// The workflow's traits: the model, where it is cut, and the policies of
/// each party. Everything but `model` and `partition` has a default.
struct wearable_bf16 {
  using model = tl::sequential<tl::dense<16, 12>, tl::relu, tl::dense<12, 8>, tl::relu, tl::dense<8, 4>>;
  using partition = tl::cut<2>;
  using device = tl::side<tl::fp32>;
  using uplink_codec = bf16_codec;      // smashed data up
  using downlink_codec = bf16_codec;    // their gradients down
  using aggregation = ema_fedavg;       // device segments, synchronised between clients
  using optimizer = tl::nn::sgd;
};
// [custom-workflow]

// Four Gaussian blobs in 16-D (the synthetic task of tests/test_split.cpp).
using tl_test::blobs;
using tl_test::make_blobs;

}  // namespace

TEST_CASE("custom precision: Q7.8 weights in a dense layer", "[custom][precision]") {
  // [custom-precision-use]
  constexpr std::size_t n = 8, k = 32, m = 4;  // outputs, inputs, batch
  tl::rng g(7);
  std::vector<float> w(n * k), x(m * k), bias(n, 0.25f), y(m * n), yq(m * n);
  for (float& v : w) v = g.uniform(-1.0f, 1.0f);
  for (float& v : x) v = g.uniform(-1.0f, 1.0f);

  // Store the weights as Q7.8 (2 bytes each), decode them for the fp32 kernel.
  std::vector<q7_8::storage_type> stored(w.size());
  std::vector<float> wq(w.size());
  for (std::size_t i = 0; i < w.size(); ++i) stored[i] = q7_8::encode(w[i]);
  for (std::size_t i = 0; i < w.size(); ++i) wq[i] = q7_8::decode(stored[i]);

  tl::kernels::dense_f32(m, n, k, x.data(), w.data(), bias.data(), y.data());
  tl::kernels::dense_f32(m, n, k, x.data(), wq.data(), bias.data(), yq.data());
  for (std::size_t r = 0; r < m; ++r) {
    float l1 = 0.0f;  // |Δy| ≤ Σ|x|·(step/2) + fp32 rounding
    for (std::size_t i = 0; i < k; ++i) l1 += std::fabs(x[r * k + i]);
    for (std::size_t o = 0; o < n; ++o)
      REQUIRE(std::fabs(y[r * n + o] - yq[r * n + o]) <= l1 / 512.0f + 1e-5f);
  }
  // [custom-precision-use]
  CHECK(sizeof(q7_8::storage_type) * 8 == q7_8::storage_bits);
  CHECK(q7_8::encode(1000.0f) == 32767);   // saturates
  CHECK(q7_8::encode(-1000.0f) == -32768);
  CHECK(q7_8::encode(0.5f / 256.0f) == 1);  // half away from zero
  CHECK(q7_8::encode(-0.5f / 256.0f) == -1);
  CHECK(q7_8::decode(q7_8::encode(-1.25f)) == -1.25f);  // representable: exact
  CHECK(std::is_same_v<tl::side<q7_8>::precision, q7_8>);  // usable as a party's precision
}

TEST_CASE("custom compression: threshold pruning inside a pipeline", "[custom][compression]") {
  // [custom-compression-use]
  tl::compress::pipeline<threshold_prune, tl::compress::weight_sharing<4>> policy;
  std::get<0>(policy.stages).threshold = 0.3f;

  constexpr std::size_t rows = 20, cols = 30;
  tl::rng g(3);
  std::vector<float> w(rows * cols);
  for (float& v : w) v = g.uniform(-1.0f, 1.0f);
  const std::vector<float> original = w;

  decltype(policy)::state<float> st;
  policy.apply(st, {w.data(), rows, cols});

  const auto& mask = std::get<0>(st.stages).mask;
  std::size_t zeros = 0;
  for (std::size_t i = 0; i < w.size(); ++i) {
    REQUIRE((mask[i] == 1) == (std::fabs(original[i]) >= 0.3f));
    if (mask[i] == 0) REQUIRE(w[i] == 0.0f);  // pruned entries stay exactly zero
    zeros += w[i] == 0.0f ? 1 : 0;
  }
  REQUIRE(zeros == w.size() - std::get<0>(st.stages).kept);
  // weight sharing then snapped the kept weights to 15 centroids (+ the zero entry)
  std::vector<float> distinct(w);
  std::sort(distinct.begin(), distinct.end());
  distinct.erase(std::unique(distinct.begin(), distinct.end()), distinct.end());
  REQUIRE(distinct.size() <= 16);
  // [custom-compression-use]
  CHECK(zeros > w.size() / 5);  // U(-1, 1): 30 % below 0.3 in magnitude
  CHECK(zeros < w.size() / 2);
  CHECK(decltype(policy)::produces == tl::compress::representation::sparse_codebook);
}

TEST_CASE("custom partition: the middle cut, segments chained equal the whole model", "[custom][partition]") {
  // [custom-partition-use]
  using device = middle_cut::segment<mlp, 0>;
  using server = middle_cut::segment<mlp, 1>;
  static_assert(device::param_count + server::param_count == mlp::param_count);

  tl::nn::network<mlp> whole(5);
  tl::nn::network<device> dev;
  tl::nn::network<server> srv;
  // The whole model's parameters are the device's followed by the server's.
  const auto p = whole.parameters();
  std::copy_n(p.begin(), device::param_count, dev.parameters().begin());
  std::copy_n(p.begin() + device::param_count, server::param_count, srv.parameters().begin());

  const blobs d = make_blobs(8, 1);
  const float* smashed = dev.forward(d.x.data(), 8);  // 8 × cut_size values cross the cut
  const float* split_out = srv.forward(smashed, 8);
  const float* whole_out = whole.forward(d.x.data(), 8);
  for (std::size_t i = 0; i < 8 * mlp::output_size; ++i) REQUIRE(split_out[i] == whole_out[i]);
  // [custom-partition-use]
}

TEST_CASE("custom aggregation: EMA of FedAvg through tl::aggregator", "[custom][aggregation]") {
  // [custom-aggregation-use]
  std::vector<float> a{1.0f, 2.0f}, b{3.0f, 6.0f};
  std::vector<tl::client_result<tl::fp32_update>> round{{1, {a}, 1}, {2, {b}, 3}};  // mean: (2.5, 5)
  std::vector<float> global{0.5f, 1.0f};

  tl::aggregator<ema_fedavg> agg(ema_fedavg{.alpha = 0.5f}, global.size());
  const tl::round_report r = agg.round(std::span<float>(global), round);
  REQUIRE(r.updated());
  REQUIRE(global[0] == 1.5f);  // 0.5·0.5 + 0.5·2.5
  REQUIRE(global[1] == 3.0f);  // 0.5·1   + 0.5·5
  REQUIRE(agg.state().rounds == 1);

  // Validation comes with the aggregator: a NaN update is refused, the round goes on.
  std::vector<float> bad{std::nanf(""), 0.0f};
  round.push_back({3, {bad}, 10});
  REQUIRE(agg.round(std::span<float>(global), round).rejected.size() == 1);
  REQUIRE(global[0] == 2.0f);  // 0.5·1.5 + 0.5·2.5
  // [custom-aggregation-use]
}

TEST_CASE("custom transport: FedAvg over the serialising loopback", "[custom][transport]") {
  // [custom-transport-use]
  constexpr std::uint32_t clients = 2, rounds = 3;
  // client k (endpoint k + 1): w_k = global + (k + 1), from k + 1 examples
  struct shift_computation {
    std::vector<float> out;
    tl::workflow::client_output compute(std::uint64_t k, const tl::workflow::model_message& m) {
      out.resize(m.global.size());
      for (std::size_t i = 0; i < out.size(); ++i) out[i] = m.global[i] + static_cast<float>(k + 1);
      return {std::span<float>(out), static_cast<std::int64_t>(k + 1), {}};
    }
  };
  loopback::hub net(clients + 1);
  std::vector<std::thread> threads;
  for (std::uint32_t k = 1; k <= clients; ++k) {
    threads.emplace_back([&net, k] {
      loopback ep(net, k);
      shift_computation c;
      tl::workflow::fedavg_client<shift_computation> role(c);
      (void)tl::workflow::run_federated_client(ep, role);
    });
  }
  loopback server(net, tl::server_endpoint);
  tl::workflow::fedavg_server<tl::fedavg> role(tl::fedavg{}, 5, /*seed*/ 1);  // w_0 = 0
  tl::workflow::federated_server_options opt;
  opt.rounds = rounds;
  opt.min_clients = clients;
  tl::workflow::federated_server_report rep;
  const tl::status s = tl::workflow::run_federated_server(server, role, opt, &rep);
  for (auto& t : threads) t.join();

  REQUIRE(s.ok());
  REQUIRE(rep.rounds_completed == rounds);
  for (float v : role.global()) REQUIRE(v == Approx(rounds * (1.0 * 1 + 2.0 * 2) / 3.0));  // + 5/3 per round
  // every model, update and stop frame went through encode → decode
  REQUIRE(server.stats().frames_received == clients * rounds);
  REQUIRE(server.stats().bytes_received == clients * rounds * tl::wire::frame_size(4 * role.global().size()));
  REQUIRE(server.stats().wire.total_rejected() == 0);
  // [custom-transport-use]
}

TEST_CASE("custom selection: the least-energy clients of a wireless fleet", "[custom][selection]") {
  namespace wf = tl::workflow;
  struct fleet {
    using model = tl::sequential<tl::dense<16, 8>, tl::relu, tl::dense<8, 4>>;
    using selection = least_energy_selection;
  };
  const blobs train = make_blobs(400, 1), test = make_blobs(100, 2);
  tl::rng pr(3);
  const auto parts = tl::data::partition_iid(train.y.size(), 8, pr);
  const wf::federated_dataset fed = wf::make_federated_dataset(train.x.data(), train.y.data(), train.y.size(), 16, parts);
  wf::federated_options o{.rounds = 3, .client_fraction = 0.25, .local_epochs = 1, .batch_size = 10, .seed = 5};
  o.wireless.devices.assign(8, wf::device_profile{});
  for (std::size_t k = 0; k < 8; ++k) {
    o.wireless.devices[k].channel = wf::fading::none();
    o.wireless.devices[k].joules_per_mac = 1e-9 * static_cast<double>(8 - k);  // client 7 spends least per MAC
  }
  wf::federated_averaging<fleet> fl(o, tl::fedavg{}, tl::nn::sgd{.learning_rate = 0.1f});
  fl.initialize(1);
  const wf::report rep = fl.run(fed.clients, test.view());
  REQUIRE(rep.rounds.size() == 3);
  for (const auto& lg : fl.log()) REQUIRE(lg.selected == std::vector<std::uint64_t>{6, 7});
  REQUIRE(rep.final_accuracy() > 0.5);
}

TEST_CASE("custom workflow: PSL with a bf16 codec and the EMA aggregation", "[custom][workflow]") {
  // [custom-workflow-use]
  constexpr std::size_t N = 4, b = 8, I = 10, S0 = 12;  // clients, batch, iterations, cut size
  const blobs train = make_blobs(400, 2), test = make_blobs(200, 9);
  tl::data::partition_t parts(N);
  for (std::size_t c = 0; c < N; ++c)
    for (std::size_t i = 0; i < 100; ++i) parts[c].push_back(c * 100 + i);

  tl::psl<wearable_bf16> run{{.rounds = 4, .batch_size = b, .steps_per_round = I,
                              .optimizer = tl::nn::sgd{.learning_rate = 0.1f}}};
  const auto test_view = test.view();
  const tl::workflow::report r = run.train(train.view(), parts, &test_view);

  REQUIRE(r.workflow == "psl");
  REQUIRE(r.final_accuracy() > 0.8);  // 4 classes: chance is 0.25
  // Per round and client: I uplinks of b·S0 bf16 values + b labels, I downlinks,
  // and one synchronisation of the device segment (4·P bytes each way).
  constexpr std::uint64_t P = tl::psl<wearable_bf16>::device_model::param_count;
  for (const auto& round : r.rounds) {
    for (const auto& party : round.parties) {
      if (party.role != "client") continue;
      REQUIRE(party.net.bytes_up == I * (2 * b * S0 + b) + 4 * P);
      REQUIRE(party.net.bytes_down == I * 2 * b * S0 + 4 * P);
    }
  }
  // [custom-workflow-use]
}
