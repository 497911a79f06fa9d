/// @file workflow/split_engine.hpp
/// @brief The split-learning engine: `split_learning<Traits, Scheme>` runs
///        any `split_scheme_policy` (workflow/split_schemes.hpp) over the
///        parties of one traits struct — segments, optimizers, per-side
///        precision and compression, codecs, the server chain — and counts
///        every party's bytes, messages, hops, MACs and time.
///
/// The schemes, the accounting and the per-side precision / compression
/// rules are documented in workflow/split.hpp (include that header: it also
/// defines the aliases `tl::psl<Traits>` …).
#pragma once

#include <algorithm>
#include <array>
#include <concepts>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <span>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "../aggregate/aggregator.hpp"
#include "../aggregate/policy.hpp"
#include "../compress/network.hpp"
#include "../core/error.hpp"
#include "../core/rng.hpp"
#include "../data/partition.hpp"
#include "../nn/loss.hpp"
#include "../nn/network.hpp"
#include "../nn/nn.hpp"
#include "../nn/optimizer.hpp"
#include "../nn/train.hpp"
#include "../partition/codec.hpp"
#include "../partition/cut.hpp"
#include "../precision/concepts.hpp"
#include "report.hpp"
#include "split_roles.hpp"
#include "split_schemes.hpp"

namespace tinylarge {

/// Which split-learning workflow `split_learning` runs (see the file comment).

namespace split_detail {
template <class T> concept has_device = requires { typename T::device; };
template <class T> concept has_server = requires { typename T::server; };
template <class T> concept has_codec = requires { typename T::codec; };
template <class T> concept has_uplink = requires { typename T::uplink_codec; };
template <class T> concept has_downlink = requires { typename T::downlink_codec; };
template <class T> concept has_aggregation = requires { typename T::aggregation; };
template <class T> concept has_optimizer = requires { typename T::optimizer; };

template <class T> struct device_of { using type = side<fp32>; };
template <has_device T> struct device_of<T> { using type = typename T::device; };
template <class T> struct server_of { using type = side<fp32>; };
template <has_server T> struct server_of<T> { using type = typename T::server; };
template <class T> struct uplink_of { using type = codec::fp32; };
template <has_codec T> struct uplink_of<T> { using type = typename T::codec; };
template <has_uplink T> struct uplink_of<T> { using type = typename T::uplink_codec; };
template <class T> struct downlink_of { using type = codec::fp32; };
template <has_codec T> struct downlink_of<T> { using type = typename T::codec; };
template <has_downlink T> struct downlink_of<T> { using type = typename T::downlink_codec; };
template <class T> struct aggregation_of { using type = fedavg; };
template <has_aggregation T> struct aggregation_of<T> { using type = typename T::aggregation; };
template <class T> struct optimizer_of { using type = nn::adam; };
template <has_optimizer T> struct optimizer_of<T> { using type = typename T::optimizer; };

/// Sends x through codec C: the sending side of the cut encodes into `wire`,
/// the receiving side decodes into y (workflow/split_roles.hpp, the functions
/// the deployment's frames carry). Returns the message bytes.
template <smashed_codec C>
std::size_t transmit(std::span<const float> x, std::span<float> y, std::vector<std::byte>& wire) {
  const std::size_t n = workflow::encode_at_cut<C>(x, wire);
  raise_if_error(workflow::decode_at_cut<C>(std::span<const std::byte>(wire.data(), n), y));
  return n;
}

/// `network_compressor<Seg, C, C, …>`: the policy C on every weighted layer of a segment.
template <class Seg, class C, class Seq = std::make_index_sequence<compress::detail::weighted_layer_count<Seg>()>>
struct segment_compressor;
template <class Seg, class C, std::size_t... I>
struct segment_compressor<Seg, C, std::index_sequence<I...>> {
  template <std::size_t>
  using same = C;
  using type = compress::network_compressor<Seg, same<I>...>;
  static type make(const C& c) { return type(((void)I, c)...); }
};

/// The precision a side's segment network computes in: the side's float
/// precision, or fp32 for an int8 side (which trains with fake quantization).
template <class Side>
using network_precision_of =
    std::conditional_t<float_precision<typename Side::precision>, typename Side::precision, fp32>;

/// One party's segment and its optimizer state (no compression: the optimizer alone).
/// @tparam Precision the `float_precision` the segment computes in (mixed-precision
///         training for fp16 / bf16: fp32 master weights, see `nn::network`)
template <class Seg, class Opt, class Compression = compress::none, class Precision = fp32>
struct party {
  nn::network<Seg, nn::heap_storage, Precision> net;
  typename Opt::template state<float> opt;
  explicit party(const Opt& o, const Compression& = {}) : opt(o, Seg::param_count) {}
  static constexpr bool compressed = false;
  bool constrained() const noexcept { return false; }
  /// After backward: false when the step must be skipped (fp16 loss-scale overflow).
  bool accept() { return nn::accept_gradients(net); }
  void step() { opt.step(net.parameters().data(), net.gradients().data()); }
};

/// A party whose segment is trained under a compression policy. Until
/// `constrain` is called it trains like the uncompressed party (warm-up);
/// afterwards each step is the step of `compress::fine_tuning` — masked
/// gradients, the inner optimizer, the masks re-applied, for shared layers
/// the centroids stepped (one inner-optimizer state per codebook) and the
/// weights re-snapped — with one difference: a centroid's gradient is the
/// MEAN of its n_k weights' gradients, not their sum (Deep Compression's
/// ∂L/∂c_k). The step is then the dense step projected onto the codebook
/// (labels fixed: a centroid moves by the mean of its weights' steps), the
/// same projection the fed server applies after averaging; with SGD the sum
/// is an n_k× larger step (n_k ≈ 760 in the flagship's device segment),
/// which diverged there (9.70% test accuracy), while Adam is nearly
/// invariant to the scale. Masks and labels never change once set: they are
/// the canonical segment's, shared by every copy.
template <class Seg, class Opt, class Compression>
  requires(!std::is_same_v<Compression, compress::none>)
struct party<Seg, Opt, Compression, fp32> {
  using compressor = typename segment_compressor<Seg, Compression>::type;
  nn::network<Seg> net;
  typename Opt::template state<float> opt;
  compressor comp;
  Opt settings;
  bool active = false;  ///< the compression constraint holds (after `constrain`)
  std::vector<typename Opt::template state<float>> centroid_opt;
  std::vector<std::size_t> centroid_of;  ///< weighted layer → its centroid optimizer (npos: not shared)
  std::vector<std::vector<float>> members;  ///< per weighted layer and centroid: 1 / (weights with that label)
  std::vector<float> g, cg_mean;

  explicit party(const Opt& o, const Compression& c)
      : opt(o, Seg::param_count), comp(segment_compressor<Seg, Compression>::make(c)), settings(o) {}
  static constexpr bool compressed = true;
  bool constrained() const noexcept { return active; }
  bool accept() { return true; }  // fp32: nothing to check

  /// From now on, train under the constraints recorded in `comp` (masks, codebooks).
  void constrain() {
    active = true;
    centroid_opt.clear();
    centroid_of.assign(compressor::layer_count, std::numeric_limits<std::size_t>::max());
    members.assign(compressor::layer_count, {});
    for (std::size_t j = 0; j < compressor::layer_count; ++j) {
      const compress::layer_state& r = comp.layer(j);
      if (!r.shared()) continue;
      centroid_of[j] = centroid_opt.size();
      centroid_opt.emplace_back(settings, r.centroids.size());
      std::vector<std::size_t> n(r.centroids.size(), 0);
      for (std::uint8_t l : r.labels) ++n[l];
      members[j].resize(n.size());
      for (std::size_t k = 0; k < n.size(); ++k) members[j][k] = n[k] > 0 ? 1.0f / static_cast<float>(n[k]) : 0.0f;
    }
  }

  void step() {
    float* w = net.parameters().data();
    if (!active) {
      opt.step(w, net.gradients().data());
      return;
    }
    const auto grads = net.gradients();
    g.assign(grads.begin(), grads.end());
    comp.mask_gradients(g.data());
    opt.step(w, g.data());
    comp.after_step(w, g.data(), [&](std::size_t j, std::span<float> centroids, std::span<const float> cg) {
      cg_mean.resize(cg.size());
      for (std::size_t k = 0; k < cg.size(); ++k) cg_mean[k] = cg[k] * members[j][k];
      centroid_opt[centroid_of[j]].step(centroids.data(), cg_mean.data());
    });
  }

  /// Projects the parameters back onto the recorded constraints after they
  /// were replaced by an aggregate: pruned weights (and removed neurons'
  /// biases) set to 0; for a shared layer every centroid becomes the mean of
  /// the weights that carry its label (computed in double, so a layer whose
  /// weights already equal their centroids is left bit for bit unchanged),
  /// centroid 0 stays 0 when it is reserved, and the weights are re-snapped.
  void project() {
    float* params = net.parameters().data();
    for (std::size_t j = 0; j < compressor::layer_count; ++j) {
      compress::layer_state& r = comp.layer(j);
      const std::span<float> w(params + r.offset, r.rows * r.cols);
      if (r.pruned()) compress::apply_mask(w, r.mask);
      if (!r.kept_rows.empty() && r.biases == r.rows) {
        std::vector<std::uint8_t> keep(r.rows, 0);
        for (std::size_t k : r.kept_rows) keep[k] = 1;
        for (std::size_t o = 0; o < r.rows; ++o)
          if (keep[o] == 0) params[r.offset + r.rows * r.cols + o] = 0.0f;
      }
      if (r.shared()) {
        std::vector<double> sum(r.centroids.size(), 0.0);
        std::vector<std::size_t> count(r.centroids.size(), 0);
        for (std::size_t i = 0; i < w.size(); ++i) {
          sum[r.labels[i]] += static_cast<double>(w[i]);
          ++count[r.labels[i]];
        }
        for (std::size_t k = 0; k < r.centroids.size(); ++k)
          if (count[k] > 0) r.centroids[k] = static_cast<float>(sum[k] / static_cast<double>(count[k]));
        if (r.fixed_zero) r.centroids[0] = 0.0f;
        compress::snap_to_centroids(r.labels, r.centroids, w);
      }
    }
  }
};

/// Copies a party's parameters (and, when compressed, its masks and codebook)
/// into another; the receiver starts training under the constraint if the
/// sender does. Optimizer states stay the receiver's own.
template <class P>
void copy_segment(const P& from, P& to) {
  const auto src = from.net.parameters();
  std::copy(src.begin(), src.end(), to.net.parameters().begin());
  if constexpr (P::compressed) {
    if (from.constrained()) {
      to.comp = from.comp;
      if (!to.constrained()) to.constrain();
    }
  }
}
}  // namespace split_detail

/// Compression policies a split workflow can train under: every
/// `compression_policy` whose result fine-tuning can keep — masks (pruning),
/// codebooks (weight sharing) and entropy coding — but not `low_rank`, whose
/// factors a dense fine-tuning step would not keep (factorize the model
/// instead, compress/network.hpp).
template <class C>
concept split_compression_policy =
    compress::compression_policy<C> && !compress::detail::has_stage_kind<C>(compress::stage_kind::low_rank);

/// A split-learning workflow over a traits struct (see the file comment).
/// @tparam Traits a struct with `model` (a `sequential`) and `partition`
///         (`cut<K...>` with at least one cut), and optionally `device`,
///         `server` (`side<Precision, Compression>`, see "Per-side compression"
///         in the file comment), `codec` or `uplink_codec`/`downlink_codec`
///         (`smashed_codec`s), `aggregation` (an `aggregation_policy`) and
///         `optimizer` (an `optimizer_policy`)
/// @tparam Scheme a `split_scheme_policy`: who runs in parallel, what is
///         aggregated and when (`split_scheme::vanilla` … or your own type)
template <class Traits, class Scheme>
class split_learning {
  static_assert(split_detail::scheme_has_name<Scheme>,
                "tinylarge: split_learning: Scheme must have static constexpr const char* name()");
  static_assert(split_detail::scheme_has_server_copies<Scheme>,
                "tinylarge: split_learning: Scheme must have static constexpr bool server_copies");
  static_assert(split_detail::scheme_has_downloads_each_round<Scheme>,
                "tinylarge: split_learning: Scheme must have static constexpr bool downloads_each_round");
  static_assert(split_detail::scheme_has_aggregated_rows<Scheme>,
                "tinylarge: split_learning: Scheme must have template <class Options> std::size_t "
                "aggregated_rows(const Options&, std::size_t group, std::size_t batch) const");
  static_assert(split_detail::scheme_has_validate<Scheme>,
                "tinylarge: split_learning: Scheme must have template <class Options> void validate(const Options&) const");
  static_assert(split_detail::scheme_has_run_round<Scheme>,
                "tinylarge: split_learning: Scheme must have template <class Round> void run_round(Round&) const");
  static_assert(std::copy_constructible<Scheme> && std::default_initializable<Scheme>,
                "tinylarge: split_learning: Scheme must be copy-constructible and default-constructible (split_scheme_policy)");

 public:
  using model = typename Traits::model;
  using partition = typename Traits::partition;
  static_assert(nn::sequential_model<model>, "tinylarge: split_learning: Traits::model must be a tl::sequential<...>");
  static_assert(partition_policy_for<partition, model>,
                "tinylarge: split_learning: Traits::partition must satisfy partition_policy_for<Model> "
                "(cut<K...> with every cut point inside the model)");
  static_assert(partition::cuts >= 1,
                "tinylarge: split_learning needs at least one cut (cut<K>): cut<> leaves nothing to split");
  using device_side = typename split_detail::device_of<Traits>::type;
  using server_side = typename split_detail::server_of<Traits>::type;
  using uplink_codec = typename split_detail::uplink_of<Traits>::type;
  using downlink_codec = typename split_detail::downlink_of<Traits>::type;
  using aggregation = typename split_detail::aggregation_of<Traits>::type;
  using optimizer = typename split_detail::optimizer_of<Traits>::type;
  static_assert(smashed_codec<uplink_codec> && smashed_codec<downlink_codec>,
                "tinylarge: split_learning: the codecs must satisfy smashed_codec");
  static_assert(aggregation_policy<aggregation>,
                "tinylarge: split_learning: Traits::aggregation must satisfy aggregation_policy");
  static_assert(nn::optimizer_policy<optimizer>,
                "tinylarge: split_learning: Traits::optimizer must satisfy optimizer_policy");
  static_assert(float_precision<typename server_side::precision>,
                "tinylarge: split_learning: Traits::server must have a float precision (side<fp32>, side<fp16>, "
                "side<bf16> or your own float_precision): the server segments train without fake quantization");
  static_assert(float_precision<typename device_side::precision> || int8_precision<typename device_side::precision>,
                "tinylarge: split_learning: Traits::device must have a float precision (trained in it) or an int8 "
                "precision (trained with fake quantization)");
  using device_compression = typename device_side::compression;
  using server_compression = typename server_side::compression;
  static_assert(std::is_same_v<device_compression, compress::none> ||
                    std::is_same_v<split_detail::network_precision_of<device_side>, fp32>,
                "tinylarge: split_learning: Traits::device: a compressed side trains in fp32 or int8 only "
                "(side<fp16|bf16, Compression> is not supported: the compressors work on fp32 networks)");
  static_assert(std::is_same_v<server_compression, compress::none> ||
                    std::is_same_v<split_detail::network_precision_of<server_side>, fp32>,
                "tinylarge: split_learning: Traits::server: a compressed side trains in fp32 only "
                "(side<fp16|bf16, Compression> is not supported: the compressors work on fp32 networks)");
  static_assert(split_compression_policy<device_compression> && split_compression_policy<server_compression>,
                "tinylarge: split_learning: a side's compression must satisfy split_compression_policy — low_rank "
                "(alone or in a pipeline) is not kept by fine-tuning; factorize the model type instead");
  /// True when the device (server) side has a compression policy other than `compress::none`.
  static constexpr bool device_compressed = !std::is_same_v<device_compression, compress::none>;
  static constexpr bool server_compressed = !std::is_same_v<server_compression, compress::none>;
  static_assert(!device_compressed || compress::detail::weighted_layer_count<typename partition::template segment<model, 0>>() > 0,
                "tinylarge: split_learning: the device side has a compression policy but its segment has no "
                "weighted layer to compress");

  /// The scheme (`split_scheme_policy`).
  using scheme = Scheme;
  /// Cuts on the path = servers in the chain (1: device + server).
  static constexpr std::size_t K = partition::cuts;
  using device_model = typename partition::template segment<model, 0>;
  template <std::size_t S>
  using server_model = typename partition::template segment<model, S + 1>;
  /// Activations per sample crossing cut c.
  template <std::size_t C>
  static constexpr std::size_t cut_size = partition::template cut_size<model, C>;
  static constexpr bool device_fake_quant = !float_precision<typename device_side::precision>;
  static_assert(!device_fake_quant ||
                    !nn::lowp::model_is_mixed<device_model, split_detail::network_precision_of<device_side>>,
                "tinylarge: split_learning: Traits::device: an int8 side trains the whole device segment with fake "
                "quantization; its layers cannot carry with_precision<...> of their own");
  /// The precision the device (server) segments compute in.
  using device_precision = split_detail::network_precision_of<device_side>;
  using server_precision = split_detail::network_precision_of<server_side>;

  using options = split_options<optimizer, aggregation, device_compression, server_compression>;
  using loss = nn::softmax_cross_entropy;

 private:
  using device_party = split_detail::party<device_model, optimizer, device_compression, device_precision>;
  template <class Seq>
  struct chain_of;
  template <std::size_t... S>
  struct chain_of<std::index_sequence<S...>> {
    using type = std::tuple<split_detail::party<server_model<S>, optimizer, server_compression, server_precision>...>;
  };
  using chain = typename chain_of<std::make_index_sequence<K>>::type;

 public:
  /// @param opt the options (every scheme reads its hyperparameters there)
  /// @param s the scheme object (its own hyperparameters, if it has any)
  explicit split_learning(options opt = {}, Scheme s = {}) : opt_(std::move(opt)), scheme_(std::move(s)) {
    TINYLARGE_REQUIRE(opt_.batch_size > 0, errc::invalid_argument, "split_learning: batch_size must be positive");
    TINYLARGE_REQUIRE(opt_.phi >= 0.0f && opt_.phi <= 1.0f, errc::invalid_argument,
                      "split_learning: EPSL's phi must lie in [0, 1]");
    scheme_.validate(opt_);
  }

  const options& settings() const noexcept { return opt_; }
  const Scheme& scheme_object() const noexcept { return scheme_; }

  /// What a scheme's `run_round` drives (the round interface of
  /// workflow/split_schemes.hpp): every call trains and counts for real.
  class round_context {
   public:
    std::size_t clients() const noexcept { return e_.all_.size(); }
    std::size_t steps() const noexcept { return e_.steps_; }
    std::span<const std::size_t> all() const noexcept { return e_.all_; }
    /// The clients ordered by expected iteration time under the wireless
    /// fleet (fastest first); 0 … N−1 without one.
    std::span<const std::size_t> by_capability() const noexcept { return e_.by_capability_; }
    const options& settings() const noexcept { return e_.opt_; }
    /// One iteration of the clients of `group` in parallel on the global server segments.
    void step(std::span<const std::size_t> group) {
      e_.round_.estimated_seconds += e_.step(group, *e_.global_chain_).seconds;
    }
    /// One iteration of every client of `group` against its own server copy,
    /// in parallel: it costs the slowest client's path plus the server's total work.
    void step_each(std::span<const std::size_t> group)
      requires(Scheme::server_copies)
    {
      double client_path = 0.0, server_work = 0.0;
      bool first = true;
      for (std::size_t c : group) {
        const step_time st = e_.step({&c, 1}, *e_.server_copies_[c], /*count_hops=*/first, group.size());
        first = false;
        client_path = std::max(client_path, st.seconds - st.server_seconds);
        server_work += st.server_seconds;
      }
      e_.round_.estimated_seconds += client_path + server_work;
    }
    void broadcast(std::span<const std::size_t> group) { e_.broadcast(group); }
    void collect(std::span<const std::size_t> group) { e_.collect(group); }
    void synchronise(std::span<const std::size_t> group) {
      e_.collect(group);
      e_.broadcast(group);
    }
    void hand_over_download(std::size_t c) { e_.broadcast({&c, 1}); }
    void hand_over_upload(std::size_t c) { e_.handover_upload(c); }
    /// Every server copy ← the global server segments (parameters only).
    void reset_server_copies()
      requires(Scheme::server_copies)
    {
      for (auto& copy : e_.server_copies_) copy_chain_parameters(*e_.global_chain_, *copy);
    }
    /// The global server segments ← the aggregate of the copies (`Traits::aggregation`).
    void average_server_copies()
      requires(Scheme::server_copies)
    {
      e_.average_server_copies(e_.server_copies_.size());
    }

   private:
    friend class split_learning;
    explicit round_context(split_learning& e) noexcept : e_(e) {}
    split_learning& e_;
  };

  /// Train on `train`, split over clients by `parts` (client → sample
  /// indices), evaluating on `test` (optional).
  /// @return the report: one record per round
  workflow::report train(const nn::labelled_view<std::uint8_t>& train, const data::partition_t& parts,
                         const nn::labelled_view<std::uint8_t>* test = nullptr) {
    begin(train, parts);
    workflow::report rep;
    rep.workflow = Scheme::name();
    for (std::size_t r = 1; r <= opt_.rounds; ++r) rep.rounds.push_back(train_round(test));
    return rep;
  }

  /// Round by round (what `train` does): `begin` sets the run up — checks,
  /// the seeded (or `set_initial_parameters`) model, the clients' copies —
  /// and each `train_round` runs the next round and returns its record
  /// (evaluated on `test` as `train` would). `train` = `begin` + `rounds` ×
  /// `train_round`. `train` and `parts` must outlive the rounds.
  void begin(const nn::labelled_view<std::uint8_t>& train, const data::partition_t& parts) {
    TINYLARGE_REQUIRE(train.features == model::input_size, errc::shape_mismatch,
                      "split_learning::train: the data's feature count differs from the model's input size");
    TINYLARGE_REQUIRE(!parts.empty(), errc::invalid_argument, "split_learning::train: no clients in the partition");
    std::size_t total = 0;
    for (const auto& p : parts) {
      TINYLARGE_REQUIRE(!p.empty(), errc::invalid_argument, "split_learning::train: a client has no samples");
      for (std::size_t i : p)
        TINYLARGE_REQUIRE(i < train.count, errc::invalid_argument,
                          "split_learning::train: a partition index is outside the training set");
      total += p.size();
    }
    const workflow::wireless_fleet& air = opt_.wireless;
    TINYLARGE_REQUIRE(!air.enabled() || air.devices.size() == parts.size(), errc::invalid_argument,
                      "split_learning::train: the wireless fleet has " + std::to_string(air.devices.size()) +
                          " devices for " + std::to_string(parts.size()) + " clients; give one per client");
    TINYLARGE_REQUIRE(opt_.fleet_ids.empty() || opt_.fleet_ids.size() == parts.size(), errc::invalid_argument,
                      "split_learning::train: fleet_ids has " + std::to_string(opt_.fleet_ids.size()) + " ids for " +
                          std::to_string(parts.size()) + " clients; give one per client or none");
    TINYLARGE_REQUIRE(!air.enabled() || air.access_point.min_rate_bps == 0.0, errc::invalid_argument,
                      "split_learning::train: a split client cannot miss a round; set the cell's min_rate_bps to 0 "
                      "(no outages) for a split workflow");
    data_ = &train;
    parts_ = &parts;
    const std::size_t n = parts.size();
    steps_ = opt_.steps_per_round != 0 ? opt_.steps_per_round
                                       : std::max<std::size_t>(1, (total / n + opt_.batch_size - 1) / opt_.batch_size);
    initialise(n);
    rank_by_capability(n);
    round_number_ = 0;
  }

  /// The next round of the run `begin` set up (see `begin`).
  workflow::round_record train_round(const nn::labelled_view<std::uint8_t>* test = nullptr) {
    TINYLARGE_REQUIRE(global_device_ != nullptr && parts_ != nullptr, errc::invalid_argument,
                      "split_learning::train_round: call begin (or train) first");
    const std::size_t n = parts_->size(), r = ++round_number_;
    begin_round(r, n);
    if (r == opt_.compress_after + 1) compress_segments(n);
    run_round(n);
    round_.round = r;
    round_.train_loss = loss_count_ > 0 ? loss_sum_ / static_cast<double>(loss_count_) : 0.0;
    const bool eval = test != nullptr && (r == opt_.rounds || (opt_.evaluate_every != 0 && r % opt_.evaluate_every == 0));
    round_.test_accuracy = eval ? accuracy(*test) : std::numeric_limits<double>::quiet_NaN();
    return std::move(round_);
  }

  /// Replace the global model (the canonical device segment and the server
  /// segments: parameters only, optimizer states stay) by whole-model
  /// parameters `w` between rounds; the clients receive it with the next
  /// download of the device segment, SplitFedV1's copies with the next reset.
  /// @throws tl::invalid_argument before `begin`; tl::shape_mismatch when `w`
  ///         is not `model::param_count` long
  void set_global_parameters(std::span<const float> w) {
    TINYLARGE_REQUIRE(global_device_ != nullptr, errc::invalid_argument,
                      "split_learning::set_global_parameters: no model yet (call begin or train first)");
    TINYLARGE_REQUIRE(w.size() == model::param_count, errc::shape_mismatch,
                      "split_learning::set_global_parameters: wrong number of parameters");
    std::copy_n(w.data(), device_model::param_count, global_device_->net.parameters().data());
    [&]<std::size_t... S>(std::index_sequence<S...>) {
      ((std::copy_n(w.data() + segment_param_begin<partition, model, S + 1>, server_model<S>::param_count,
                    std::get<S>(*global_chain_).net.parameters().data())),
       ...);
    }(std::make_index_sequence<K>{});
  }

  /// Test accuracy of the current global model: the global device segment,
  /// the uplink codec, the server chain (inference mode).
  double accuracy(const nn::labelled_view<std::uint8_t>& test, std::size_t batch = 256) {
    TINYLARGE_REQUIRE(global_device_ != nullptr, errc::invalid_argument,
                      "split_learning::accuracy: no model yet (call train first)");
    TINYLARGE_REQUIRE(test.features == model::input_size && batch > 0, errc::shape_mismatch,
                      "split_learning::accuracy: the test data's feature count differs from the model's input size");
    std::size_t hits = 0;
    std::vector<float> smashed;
    for (std::size_t s = 0; s < test.count; s += batch) {
      const std::size_t b = std::min(batch, test.count - s);
      const float* d = global_device_->net.forward(test.x + s * test.features, b, false);
      smashed.resize(b * cut_size<0>);
      split_detail::transmit<uplink_codec>({d, b * cut_size<0>}, smashed, wire_);
      const float* out = chain_forward<0>(*global_chain_, smashed.data(), b, false, nullptr);
      for (std::size_t i = 0; i < b; ++i) {
        const float* o = out + i * model::output_size;
        std::size_t a = 0;
        for (std::size_t j = 1; j < model::output_size; ++j) a = o[j] > o[a] ? j : a;
        hits += a == test.y[s + i] ? 1 : 0;
      }
    }
    return test.count == 0 ? 0.0 : static_cast<double>(hits) / static_cast<double>(test.count);
  }

  /// The whole model's parameters as one flat vector (global device segment,
  /// then the server segments): what the unsplit model would hold.
  std::vector<float> global_parameters() const {
    TINYLARGE_REQUIRE(global_device_ != nullptr, errc::invalid_argument,
                      "split_learning::global_parameters: no model yet (call train first)");
    std::vector<float> w;
    w.reserve(model::param_count);
    const auto d = global_device_->net.parameters();
    w.insert(w.end(), d.begin(), d.end());
    [&]<std::size_t... S>(std::index_sequence<S...>) {
      (([&] {
         const auto p = std::get<S>(*global_chain_).net.parameters();
         w.insert(w.end(), p.begin(), p.end());
       }()),
       ...);
    }(std::make_index_sequence<K>{});
    return w;
  }

  /// Iterations per round of the last `train` call.
  std::size_t steps_per_round() const noexcept { return steps_; }

  /// Bytes of one device segment uncompressed: 4·P.
  static constexpr std::uint64_t dense_segment_bytes = std::uint64_t{4} * device_model::param_count;
  /// Bytes of one transfer of the device segment as the workflow counts it
  /// now: the size of its compressed encoding (`compress::network_compressor::
  /// encode`: per weighted layer a 16-byte descriptor, fp32 biases and the
  /// weights in CSR / codebook / Huffman form) once the device side has been
  /// compressed, `dense_segment_bytes` before and without compression. With
  /// the masks and labels fixed, the size no longer changes.
  std::uint64_t device_segment_bytes() const noexcept { return segment_bytes(); }

  /// The canonical (global) device segment's parameters.
  std::span<const float> device_parameters() const {
    TINYLARGE_REQUIRE(global_device_ != nullptr, errc::invalid_argument,
                      "split_learning::device_parameters: no model yet (call train first)");
    return global_device_->net.parameters();
  }
  /// The canonical device segment's network (`nn::network<device_model,
  /// heap_storage, device_precision>`: fp32 master weights, computing in the
  /// device side's precision).
  const auto& device_network() const {
    TINYLARGE_REQUIRE(global_device_ != nullptr, errc::invalid_argument,
                      "split_learning::device_network: no model yet (call train first)");
    return global_device_->net;
  }
  /// Client c's copy of the device segment (as it was left by the last round).
  std::span<const float> client_parameters(std::size_t c) const {
    TINYLARGE_REQUIRE(c < devices_.size(), errc::invalid_argument,
                      "split_learning::client_parameters: no such client (call train first)");
    return devices_[c]->net.parameters();
  }

  /// Start the next `train` from these whole-model parameters (the layout of
  /// `nn::network<model>::parameters()`: a network trained elsewhere, weights
  /// loaded from .npz) instead of the seeded initialisation; empty: seeded again.
  /// @throws tl::shape_mismatch when `w` is neither empty nor `model::param_count` long.
  void set_initial_parameters(std::span<const float> w) {
    TINYLARGE_REQUIRE(w.empty() || w.size() == model::param_count, errc::shape_mismatch,
                      "split_learning::set_initial_parameters: wrong number of parameters");
    initial_.assign(w.begin(), w.end());
  }

  /// Smashed data of `count` samples `x` (count × input_size) as the first
  /// server receives it: the canonical device segment (inference mode), then
  /// the uplink codec. `out` holds count × cut_size<0> values.
  void smashed_data(const float* x, std::size_t count, std::span<float> out) {
    TINYLARGE_REQUIRE(global_device_ != nullptr && count > 0 && out.size() == count * cut_size<0>,
                      errc::shape_mismatch, "split_learning::smashed_data: no model yet, or wrong sizes");
    const float* d = global_device_->net.forward(x, count, false);
    split_detail::transmit<uplink_codec>({d, count * cut_size<0>}, out, wire_);
  }
  /// Outputs of the server chain (inference mode; inter-server cuts through
  /// the uplink codec) for `count` rows of smashed data; `out`: count × output_size.
  void server_forward(const float* smashed, std::size_t count, std::span<float> out) {
    TINYLARGE_REQUIRE(global_chain_ != nullptr && count > 0 && out.size() == count * model::output_size,
                      errc::shape_mismatch, "split_learning::server_forward: no model yet, or wrong sizes");
    const float* y = chain_forward<0>(*global_chain_, smashed, count, false, nullptr);
    std::copy_n(y, out.size(), out.data());
  }

  /// The deployment of the canonical device segment in its compressed form
  /// (what the byte counts charge per transfer; `compressed_network` runs it).
  compress::encoded_network encode_device() const
    requires device_compressed
  {
    TINYLARGE_REQUIRE(device_constrained(), errc::invalid_argument,
                      "split_learning::encode_device: the device segment is not compressed yet (train for more than "
                      "compress_after rounds)");
    return global_device_->comp.encode(global_device_->net);
  }
  /// The canonical device segment's compressor (masks, codebooks), once compressed.
  const auto& device_compressor() const
    requires device_compressed
  {
    TINYLARGE_REQUIRE(device_constrained(), errc::invalid_argument,
                      "split_learning::device_compressor: the device segment is not compressed yet");
    return global_device_->comp;
  }

 private:
  // ---- set-up ---------------------------------------------------------------

  void initialise(std::size_t n) {
    // One initialisation of the whole model, cut into segments: the split
    // model starts from exactly the parameters the unsplit model would.
    nn::network<model> full;
    if (initial_.empty())
      full.initialize(opt_.seed);
    else
      std::copy(initial_.begin(), initial_.end(), full.parameters().begin());
    const auto w = full.parameters();
    global_device_ = std::make_unique<device_party>(opt_.optimizer, opt_.device_compression);
    std::copy_n(w.data(), device_model::param_count, global_device_->net.parameters().data());
    global_chain_ = std::make_unique<chain>(make_chain());
    [&]<std::size_t... S>(std::index_sequence<S...>) {
      ((std::copy_n(w.data() + segment_param_begin<partition, model, S + 1>, server_model<S>::param_count,
                    std::get<S>(*global_chain_).net.parameters().data())),
       ...);
    }(std::make_index_sequence<K>{});
    if constexpr (device_fake_quant) global_device_->net.enable_fake_quant(true, per_channel_device());
    devices_.clear();
    for (std::size_t c = 0; c < n; ++c) {
      devices_.push_back(std::make_unique<device_party>(*global_device_));
      devices_.back()->net.generator().seed_with(opt_.seed + c, 0xc11e57ULL);
    }
    if constexpr (Scheme::server_copies) {
      server_copies_.clear();
      for (std::size_t c = 0; c < n; ++c) server_copies_.push_back(std::make_unique<chain>(*global_chain_));
    }
    all_.resize(n);
    for (std::size_t c = 0; c < n; ++c) all_[c] = c;
    cursor_.assign(n, 0);
    order_.assign(n, {});
    for (std::size_t c = 0; c < n; ++c) {
      order_[c] = (*parts_)[c];
      tinylarge::rng g(opt_.seed, 0x5a17ULL + c);
      g.shuffle(order_[c].data(), order_[c].size());
    }
  }

  static constexpr bool per_channel_device() noexcept {
    if constexpr (requires { device_side::precision::is_per_channel; })
      return device_side::precision::is_per_channel;
    else
      return true;
  }

  chain make_chain() const {
    return [&]<std::size_t... S>(std::index_sequence<S...>) {
      return chain{split_detail::party<server_model<S>, optimizer, server_compression, server_precision>(
          opt_.optimizer, opt_.server_compression)...};
    }(std::make_index_sequence<K>{});
  }

  void begin_round(std::size_t r, std::size_t n) {
    round_ = {};
    if (opt_.wireless.enabled()) {
      // This round's fading, one draw per direction per client, each client
      // from a stream of its own keyed by its fleet id and the round.
      gain_up_.resize(n);
      gain_down_.resize(n);
      for (std::size_t c = 0; c < n; ++c) {
        const std::uint64_t id = opt_.fleet_ids.empty() ? c : opt_.fleet_ids[c];
        tinylarge::rng g(opt_.seed, (std::uint64_t{r} << 32) ^ (0xf1ee7ULL << 20) ^ id);
        gain_up_[c] = opt_.wireless.devices[c].channel.power_gain(g);
        gain_down_[c] = opt_.wireless.devices[c].channel.power_gain(g);
      }
    }
    loss_sum_ = 0.0;
    loss_count_ = 0;
    clients_.assign(n, {});
    for (std::size_t c = 0; c < n; ++c) clients_[c] = {"client", c, {}, 0};
    servers_.assign(K, {});
    for (std::size_t s = 0; s < K; ++s) servers_[s] = {s + 1 < K ? "edge" : "server", s, {}, 0};
    fed_ = {"fed_server", 0, {}, 0};
  }

  void end_round_parties() {
    if (opt_.wireless.enabled()) {
      round_.energy_joules = 0.0;
      round_.straggler = -1;
      double busiest = -1.0;
      for (const auto& p : clients_) {
        round_.energy_joules += p.joules;
        if (p.seconds > busiest) {
          busiest = p.seconds;
          round_.straggler = static_cast<long long>(p.id);
        }
      }
    }
    for (auto& p : clients_) round_.parties.push_back(p);
    for (auto& p : servers_) round_.parties.push_back(p);
    if (fed_.net.messages_up + fed_.net.messages_down > 0) round_.parties.push_back(fed_);
    round_.messages = 0;
    for (const auto& p : round_.parties)
      if (p.role == "client") round_.messages += p.net.messages_up + p.net.messages_down;
    // Messages between the servers of a chain: those received from below by
    // servers 1 … K−1 and those they sent below.
    for (std::size_t s = 1; s < K; ++s) round_.messages += servers_[s].net.messages_up + servers_[s].net.messages_down;
  }

  // ---- one round ------------------------------------------------------------

  void run_round(std::size_t) {
    round_context r(*this);
    scheme_.run_round(r);
    end_round_parties();
  }

  // ---- one iteration --------------------------------------------------------

  struct step_time {
    double seconds = 0.0;
    double server_seconds = 0.0;
  };

  /// One iteration of the clients in `group` against `ch`, in parallel with
  /// `concurrent` clients in all (they share the band; 0: the group).
  step_time step(std::span<const std::size_t> group, chain& ch, bool count_hops = true, std::size_t concurrent = 0) {
    const std::size_t g = group.size(), b = opt_.batch_size;
    if (concurrent == 0) concurrent = g;
    client_up_.assign(g, 0);
    constexpr std::size_t S0 = cut_size<0>;
    const workflow::link_model& L = opt_.link;
    xb_.resize(b * model::input_size);
    yb_.resize(g * b);
    smashed_.resize(g * b * S0);
    std::uint64_t up_bytes = 0;
    // 1. client forward, smashed data up
    for (std::size_t i = 0; i < g; ++i) {
      const std::size_t c = group[i];
      next_batch(c, xb_.data(), yb_.data() + i * b);
      const float* d = workflow::device_forward(devices_[c]->net, xb_.data(), b);
      const std::size_t bytes = split_detail::transmit<uplink_codec>({d, b * S0}, {smashed_.data() + i * b * S0, b * S0}, wire_);
      up_bytes = bytes + b;
      client_up_[i] = bytes + b;
      clients_[c].net.bytes_up += bytes + b;
      clients_[c].net.messages_up += 1;
      clients_[c].macs += static_cast<std::uint64_t>(b) * device_model::macs;
      servers_[0].net.bytes_up += bytes + b;
      servers_[0].net.messages_up += 1;
    }
    // 2. servers
    const std::size_t rows = g * b;
    const std::size_t m = scheme_.aggregated_rows(opt_, g, b);
    TINYLARGE_REQUIRE(m <= b, errc::invalid_argument, "split_learning: the scheme aggregates more rows than a batch holds");
    dy_.resize(rows * model::output_size);
    dsmashed_.resize(rows * S0);
    std::uint64_t server_macs = 0;
    bool server_ok = true;  // false: a server's loss-scaled gradients overflowed, the iteration is skipped
    if (m == 0) {
      // The server role's step (workflow/split_roles.hpp) on the concatenated rows.
      chain_program prog{*this, ch, &server_macs};
      const workflow::server_step_result sr =
          workflow::server_step(prog, smashed_.data(), yb_.data(), rows, model::output_size, dy_.data(), dsmashed_.data());
      loss_sum_ += sr.loss * static_cast<double>(rows);
      loss_count_ += rows;
      server_ok = sr.stepped;
      // each client's gradient of its own mean loss
      const auto scale = static_cast<float>(g);
      if (g != 1)
        for (float& v : dsmashed_) v *= scale;
    } else {
      // EPSL: logits of every sample, then one backward over g(b − m) + m rows
      // (the server role's aggregated step, workflow/split_roles.hpp).
      rows_of_.assign(g, b);
      chain_program prog{*this, ch, &server_macs};
      const workflow::server_step_result sr = workflow::server_step_aggregated(
          prog, smashed_.data(), yb_.data(), rows_of_, m, S0, model::output_size, epsl_, dsmashed_.data());
      loss_sum_ += sr.loss * static_cast<double>(rows);
      loss_count_ += rows;
      server_ok = sr.stepped;
    }
    // 3. gradients down, client backward
    std::uint64_t down_bytes = 0;
    double client_path = 0.0;  // wireless fleet: the slowest client's compute and transfers
    for (std::size_t i = 0; i < g; ++i) {
      const std::size_t c = group[i];
      grad_.resize(b * S0);
      const std::size_t bytes =
          split_detail::transmit<downlink_codec>({dsmashed_.data() + i * b * S0, b * S0}, grad_, wire_);
      down_bytes = bytes;
      clients_[c].net.bytes_down += bytes;
      clients_[c].net.messages_down += 1;
      servers_[0].net.bytes_down += bytes;
      servers_[0].net.messages_down += 1;
      // The device role's second half (workflow/split_roles.hpp), with the
      // party's update (its optimizer, or compress::fine_tuning's masked
      // step); skipped when the servers skipped.
      auto& dev = *devices_[c];
      workflow::device_backward(dev.net, grad_.data(), [&dev](auto&) { dev.step(); }, server_ok);
      clients_[c].macs += static_cast<std::uint64_t>(b) * device_model::macs;
      if (opt_.wireless.enabled())
        client_path = std::max(client_path, charge(c, 2 * static_cast<std::uint64_t>(b) * device_model::macs,
                                                   client_up_[i], bytes, concurrent));
    }
    if (count_hops) round_.sequential_hops += 2 * K;
    // time: device fwd, K hops up, server compute, K hops down, device bwd
    step_time t;
    const double dev = static_cast<double>(b * device_model::macs) / L.device_macs_per_s;
    t.server_seconds = last_server_seconds_;
    if (opt_.wireless.enabled())
      t.seconds = client_path + t.server_seconds + L.latency_s * static_cast<double>(2 * K) + inter_server_seconds_;
    else
      t.seconds = 2.0 * dev + t.server_seconds + L.latency_s * static_cast<double>(2 * K) +
                  static_cast<double>(up_bytes) / L.uplink_bytes_per_s +
                  static_cast<double>(down_bytes) / L.downlink_bytes_per_s + inter_server_seconds_;
    last_server_seconds_ = 0.0;
    inter_server_seconds_ = 0.0;
    return t;
  }

  // ---- the server chain -----------------------------------------------------

  /// The chain `ch` as the server role drives it (`workflow::split_server_chain`):
  /// the hops' codecs and the accounting of MACs, bytes and time stay here.
  struct chain_program {
    split_learning& e;
    chain& ch;
    std::uint64_t* macs;
    const float* forward(const float* x, std::size_t rows) { return e.template chain_forward<0>(ch, x, rows, true, macs); }
    const float* infer(const float* x, std::size_t rows) { return e.template chain_forward<0>(ch, x, rows, false, macs); }
    void zero_gradients() { chain_zero(ch); }
    void backward(const float* dy, float* dx, std::size_t rows) { e.template chain_backward<K - 1>(ch, dy, dx, rows, macs); }
    bool step() { return chain_step(ch); }
  };

  static double rate_of(std::size_t s, const workflow::link_model& L) noexcept {
    return s + 1 < K ? L.edge_macs_per_s : L.server_macs_per_s;
  }

  template <std::size_t S>
  const float* chain_forward(chain& ch, const float* x, std::size_t rows, bool training, std::uint64_t* macs) {
    auto& p = std::get<S>(ch);
    const float* y = p.net.forward(x, rows, training);
    if (macs != nullptr) {
      const std::uint64_t f = static_cast<std::uint64_t>(rows) * server_model<S>::macs;
      servers_[S].macs += f;
      *macs += f;
      last_server_seconds_ += static_cast<double>(f) / rate_of(S, opt_.link);
    }
    if constexpr (S + 1 < K) {
      constexpr std::size_t n = cut_size<S + 1>;
      auto& buf = hop_[S];
      buf.resize(rows * n);
      const std::size_t bytes = split_detail::transmit<uplink_codec>({y, rows * n}, buf, wire_);
      if (macs != nullptr) {
        servers_[S + 1].net.bytes_up += bytes;
        servers_[S + 1].net.messages_up += 1;
        inter_server_seconds_ += opt_.link.latency_s + static_cast<double>(bytes) / opt_.link.uplink_bytes_per_s;
      }
      return chain_forward<S + 1>(ch, buf.data(), rows, training, macs);
    } else {
      return y;
    }
  }

  template <std::size_t S>
  void chain_backward(chain& ch, const float* dy, float* dx, std::size_t rows, std::uint64_t* macs) {
    auto& p = std::get<S>(ch);
    const std::uint64_t bw = 2 * static_cast<std::uint64_t>(rows) * server_model<S>::macs;
    servers_[S].macs += bw;
    *macs += bw;
    last_server_seconds_ += static_cast<double>(bw) / rate_of(S, opt_.link);
    if constexpr (S == 0) {
      p.net.backward(dy, dx);
    } else {
      constexpr std::size_t n = cut_size<S>;
      tmp_[S].resize(rows * n);
      p.net.backward(dy, tmp_[S].data());
      auto& buf = hop_[S - 1];
      buf.resize(rows * n);
      const std::size_t bytes = split_detail::transmit<downlink_codec>(tmp_[S], buf, wire_);
      servers_[S].net.bytes_down += bytes;
      servers_[S].net.messages_down += 1;
      inter_server_seconds_ += opt_.link.latency_s + static_cast<double>(bytes) / opt_.link.downlink_bytes_per_s;
      chain_backward<S - 1>(ch, buf.data(), dx, rows, macs);
    }
  }

  static void chain_zero(chain& ch) {
    std::apply([](auto&... p) { (p.net.zero_gradients(), ...); }, ch);
  }
  /// Steps every server segment, or none when one of them must skip the
  /// step (fp16 loss-scale overflow); every party's loss scale is updated.
  static bool chain_step(chain& ch) {
    bool ok = true;
    std::apply([&](auto&... p) { ((ok = p.accept() && ok), ...); }, ch);
    if (ok) std::apply([](auto&... p) { (p.step(), ...); }, ch);
    return ok;
  }

  // ---- data -----------------------------------------------------------------

  void next_batch(std::size_t c, float* x, std::uint8_t* y) {
    const auto& ord = order_[c];
    for (std::size_t i = 0; i < opt_.batch_size; ++i) {
      if (cursor_[c] == ord.size()) {
        cursor_[c] = 0;
        tinylarge::rng g(opt_.seed + 1 + reshuffles_++, 0x5a17ULL + c);
        g.shuffle(order_[c].data(), order_[c].size());
      }
      const std::size_t r = ord[cursor_[c]++];
      std::copy_n(data_->x + r * model::input_size, model::input_size, x + i * model::input_size);
      y[i] = data_->y[r];
    }
  }

  // ---- the wireless fleet ----------------------------------------------------

  /// Client c computes `macs` and moves `up` / `down` bytes on its links of
  /// this round, on a 1/`concurrent` share of the band: its seconds and
  /// joules are charged to it; returns the seconds.
  double charge(std::size_t c, std::uint64_t macs, std::uint64_t up, std::uint64_t down, std::size_t concurrent) {
    const workflow::device_profile& dev = opt_.wireless.devices[c];
    const workflow::link_state link = workflow::link_on_share(
        opt_.wireless.access_point, dev, 1.0 / static_cast<double>(concurrent), gain_up_[c], gain_down_[c]);
    const workflow::client_cost k = workflow::cost_of_round(dev, link, macs, up, down);
    clients_[c].seconds += k.seconds;
    clients_[c].joules += k.joules;
    return k.seconds;
  }

  /// Time of every client of `group` sending (`up`) or receiving `bytes` at
  /// once: the slowest one's with a wireless fleet, else the `link` figure.
  double segment_transfer_seconds(std::span<const std::size_t> group, std::uint64_t bytes, bool up) {
    if (!opt_.wireless.enabled())
      return static_cast<double>(bytes) / (up ? opt_.link.uplink_bytes_per_s : opt_.link.downlink_bytes_per_s);
    double slowest = 0.0;
    for (std::size_t c : group)
      slowest = std::max(slowest, charge(c, 0, up ? bytes : 0, up ? 0 : bytes, group.size()));
    return slowest;
  }

  /// `by_capability_`: the clients by expected iteration time (fastest
  /// first, ties by id) — compute at their rate, the smashed data up and the
  /// gradients down at their mean-SNR rates on an equal share of the band;
  /// 0 … N−1 without a fleet.
  void rank_by_capability(std::size_t n) {
    by_capability_ = all_;
    if (!opt_.wireless.enabled()) return;
    std::vector<double> t(n);
    for (std::size_t c = 0; c < n; ++c)
      t[c] = expected_iteration_seconds(opt_.wireless.access_point, opt_.wireless.devices[c], n, opt_.batch_size);
    std::stable_sort(by_capability_.begin(), by_capability_.end(),
                     [&t](std::size_t a, std::size_t b) { return t[a] < t[b]; });
  }

 public:
  /// A device's expected time for one iteration of this workflow (batch b)
  /// on a 1/`concurrent` share of `cell`'s band at its mean SNR (no fading):
  /// forward and backward through the device segment at its compute rate,
  /// the smashed data up (the uplink codec's bound for b·s₀ values, and the
  /// b labels) and their gradients down (the downlink codec's bound). What
  /// `r.by_capability()` sorts by and what a per-device cut is chosen by.
  static double expected_iteration_seconds(const workflow::cell& cell, const workflow::device_profile& dev,
                                           std::size_t concurrent, std::size_t b) {
    const workflow::link_state mean =
        workflow::link_on_share(cell, dev, 1.0 / static_cast<double>(concurrent), 1.0, 1.0);
    return workflow::cost_of_round(dev, mean, 2 * static_cast<std::uint64_t>(b) * device_model::macs,
                                   uplink_codec::max_encoded_bytes(b * cut_size<0>) + b,
                                   downlink_codec::max_encoded_bytes(b * cut_size<0>))
        .seconds;
  }
  /// A device's expected time and energy for one round of a scheme that
  /// downloads the device segment at the start of the round
  /// (`downloads_each_round`) and uploads it at the end: `steps` iterations
  /// (as `expected_iteration_seconds`) and 1 + ⌊(steps − 1) / sync_every⌋ (1
  /// when `sync_every` = 0) downloads and uploads of the uncompressed
  /// segment, 4·P bytes each, on the same share of the band at the mean SNR.
  /// What `per_device_cuts::choose_cuts` compares.
  static workflow::client_cost expected_round_cost(const workflow::cell& cell, const workflow::device_profile& dev,
                                                   std::size_t concurrent, std::size_t b, std::size_t steps,
                                                   std::size_t sync_every) {
    const workflow::link_state mean =
        workflow::link_on_share(cell, dev, 1.0 / static_cast<double>(concurrent), 1.0, 1.0);
    const std::uint64_t syncs = 1 + (sync_every == 0 || steps == 0 ? 0 : (steps - 1) / sync_every);
    const std::uint64_t i = steps;
    return workflow::cost_of_round(
        dev, mean, i * 2 * static_cast<std::uint64_t>(b) * device_model::macs,
        i * (uplink_codec::max_encoded_bytes(b * cut_size<0>) + b) + syncs * dense_segment_bytes,
        i * downlink_codec::max_encoded_bytes(b * cut_size<0>) + syncs * dense_segment_bytes);
  }

 private:
  // ---- client-segment synchronisation ----------------------------------------

  /// Bytes of one transfer of a device segment: its compressed encoding once
  /// the device side is compressed, 4·P before (and without compression).
  std::uint64_t segment_bytes() const noexcept { return device_constrained() ? encoded_bytes_ : dense_segment_bytes; }
  bool device_constrained() const noexcept { return global_device_ != nullptr && global_device_->constrained(); }

  /// Compresses the canonical segments once (masks, codebooks computed on
  /// them) and makes every copy train under that constraint. The device
  /// copies receive it with the next transfer of the segment; PSL and EPSL,
  /// whose rounds do not begin with one, get a broadcast here (counted).
  void compress_segments(std::size_t n) {
    if constexpr (device_compressed) {
      global_device_->comp.apply_all(global_device_->net);
      global_device_->constrain();
      encoded_bytes_ = global_device_->comp.encode(global_device_->net).bytes();
      if constexpr (!Scheme::downloads_each_round) {
        std::vector<std::size_t> all(n);
        for (std::size_t c = 0; c < n; ++c) all[c] = c;
        broadcast(all);
      }
    }
    if constexpr (server_compressed) {
      std::apply(
          [](auto&... p) {
            ((p.comp.apply_all(p.net), p.constrain()), ...);
          },
          *global_chain_);
      // SplitFedV1's copies receive the constraint with the next copy of the global segments.
    }
    (void)n;
  }

  /// Every client in `group` downloads the global device segment.
  void broadcast(std::span<const std::size_t> group) {
    const std::uint64_t device_bytes = segment_bytes();
    for (std::size_t c : group) {
      copy_device(*global_device_, *devices_[c]);
      clients_[c].net.bytes_down += device_bytes;
      clients_[c].net.messages_down += 1;
      fed_.net.bytes_down += device_bytes;
      fed_.net.messages_down += 1;
    }
    round_.sequential_hops += 1;
    round_.estimated_seconds += opt_.link.latency_s + segment_transfer_seconds(group, device_bytes, false);
  }

  /// Every client in `group` uploads its device segment; the fed server
  /// aggregates them (weighted by local sample counts) into the global one.
  void collect(std::span<const std::size_t> group) {
    const std::uint64_t device_bytes = segment_bytes();
    std::vector<client_result<fp32_update>> results;
    for (std::size_t c : group) {
      clients_[c].net.bytes_up += device_bytes;
      clients_[c].net.messages_up += 1;
      fed_.net.bytes_up += device_bytes;
      fed_.net.messages_up += 1;
      results.push_back({c, fp32_update{devices_[c]->net.parameters()},
                         static_cast<std::int64_t>((*parts_)[c].size())});
    }
    round_.sequential_hops += 1;
    round_.estimated_seconds += opt_.link.latency_s + segment_transfer_seconds(group, device_bytes, true);
    aggregator<aggregation> agg(opt_.aggregation, device_model::param_count);
    const round_report rr = agg.round(global_device_->net.parameters(), results);
    TINYLARGE_REQUIRE(rr.updated(), errc::non_finite,
                      "split_learning: the aggregation of the client segments failed (all updates rejected)");
    // The canonical segment stays compressed: the clients share its masks and
    // labels, so their mean already is (FedAvg); a robust or noisy aggregate
    // is projected back (masks, label-wise centroid means, re-snap).
    if constexpr (device_compressed)
      if (global_device_->constrained()) global_device_->project();
    if constexpr (device_fake_quant) {
      // The int8 deployment's activation ranges: the mean of the clients' tracked ranges.
      auto& gr = global_device_->net.tracked_ranges();
      for (std::size_t t = 0; t < gr.size(); ++t) {
        double lo = 0, hi = 0;
        std::size_t seen = 0;
        for (std::size_t c : group) {
          const auto& r = devices_[c]->net.tracked_ranges()[t];
          if (r.seen) {
            lo += r.lo;
            hi += r.hi;
            ++seen;
          }
        }
        if (seen > 0) gr[t] = {static_cast<float>(lo / static_cast<double>(seen)), static_cast<float>(hi / static_cast<double>(seen)), true};
      }
    }
  }

  void handover_upload(std::size_t c) {
    const std::uint64_t device_bytes = segment_bytes();
    clients_[c].net.bytes_up += device_bytes;
    clients_[c].net.messages_up += 1;
    fed_.net.bytes_up += device_bytes;
    fed_.net.messages_up += 1;
    round_.sequential_hops += 1;
    round_.estimated_seconds += opt_.link.latency_s + segment_transfer_seconds({&c, 1}, device_bytes, true);
    copy_device(*devices_[c], *global_device_);
  }

  static void copy_device(const device_party& from, device_party& to) {
    split_detail::copy_segment(from, to);
    if constexpr (device_fake_quant) {
      if (!to.net.fake_quant_enabled()) to.net.enable_fake_quant(true, per_channel_device());
      to.net.tracked_ranges() = from.net.tracked_ranges();
    }
  }

  static void copy_chain_parameters(const chain& from, chain& to) {
    [&]<std::size_t... S>(std::index_sequence<S...>) {
      (split_detail::copy_segment(std::get<S>(from), std::get<S>(to)), ...);
    }(std::make_index_sequence<K>{});
  }

  void average_server_copies(std::size_t n) {
    [&]<std::size_t... S>(std::index_sequence<S...>) {
      (([&] {
         std::vector<client_result<fp32_update>> results;
         for (std::size_t c = 0; c < n; ++c)
           results.push_back({c, fp32_update{std::get<S>(*server_copies_[c]).net.parameters()},
                              static_cast<std::int64_t>((*parts_)[c].size())});
         aggregator<aggregation> agg(opt_.aggregation, server_model<S>::param_count);
         const round_report rr = agg.round(std::get<S>(*global_chain_).net.parameters(), results);
         TINYLARGE_REQUIRE(rr.updated(), errc::non_finite,
                           "splitfed_v1: the aggregation of the server copies failed (all updates rejected)");
         if constexpr (server_compressed)
           if (std::get<S>(*global_chain_).constrained()) std::get<S>(*global_chain_).project();
       }()),
       ...);
    }(std::make_index_sequence<K>{});
  }

  options opt_;
  Scheme scheme_;
  std::vector<std::size_t> all_;  ///< 0 … N−1
  std::vector<std::size_t> by_capability_;  ///< `round_context::by_capability`
  std::vector<double> gain_up_, gain_down_;  ///< this round's fading power gains per client (wireless fleet)
  std::vector<std::uint64_t> client_up_;     ///< bytes each client of a step sent up
  const nn::labelled_view<std::uint8_t>* data_ = nullptr;
  const data::partition_t* parts_ = nullptr;
  std::size_t steps_ = 0;
  std::size_t round_number_ = 0;  ///< rounds run since `begin`
  std::unique_ptr<device_party> global_device_;
  std::unique_ptr<chain> global_chain_;
  std::vector<std::unique_ptr<device_party>> devices_;
  std::vector<std::unique_ptr<chain>> server_copies_;
  std::vector<std::size_t> cursor_;
  std::vector<std::vector<std::size_t>> order_;
  std::uint64_t reshuffles_ = 0;
  workflow::round_record round_;
  std::vector<workflow::role_cost> clients_, servers_;
  workflow::role_cost fed_;
  double loss_sum_ = 0.0;
  std::size_t loss_count_ = 0;
  double last_server_seconds_ = 0.0, inter_server_seconds_ = 0.0;
  std::vector<float> xb_, smashed_, dy_, dsmashed_, grad_;
  workflow::aggregated_step_buffers epsl_;  ///< EPSL's reduced batch (server_step_aggregated)
  std::vector<std::size_t> rows_of_;        ///< EPSL: the rows of each client of a step
  std::vector<std::uint8_t> yb_;
  std::array<std::vector<float>, K> hop_, tmp_;
  std::vector<std::byte> wire_;
  std::vector<float> initial_;  ///< set_initial_parameters (empty: seeded initialisation)
  std::uint64_t encoded_bytes_ = 0;  ///< the compressed device segment's encoded size (constant once compressed)
};

}  // namespace tinylarge
