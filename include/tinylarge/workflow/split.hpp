/// @file workflow/split.hpp
/// @brief Split-learning workflows over one traits struct: vanilla split
///        learning (VSL), multi-hop SL, parallel SL (PSL), EPSL, EdgeSplit /
///        cluster-based PSL, SplitFedV1 and SplitFedV2 — with per-party
///        traffic, MACs, sequential hops and a link-model time estimate.
///
/// @code
///   struct wearable_fleet {
///     using model       = tl::sequential<tl::dense<784, 300>, tl::relu, tl::dense<300, 100>, tl::relu, tl::dense<100, 10>>;
///     using partition   = tl::cut<2>;                      // device: dense + relu; server: the rest
///     using device      = tl::side<tl::int8_per_channel>;  // trained with fake quantization (QAT)
///     using server      = tl::side<tl::fp32>;              // or side<tl::bf16>: trained on bf16 operands
///     using uplink_codec   = tl::codec::int8;              // smashed data
///     using downlink_codec = tl::codec::fp32;              // their gradients
///     using aggregation = tl::fedavg;                      // client segments (and SplitFedV1's server copies)
///     using optimizer   = tl::nn::sgd;                     // every party's local optimizer (linear:
///                                                          // averaging commutes with it, see sync_every)
///   };
///   tl::splitfed_v1<wearable_fleet> run{{.rounds = 5, .batch_size = 16, .sync_every = 1,
///                                         .optimizer = {.learning_rate = 0.05f, .momentum = 0.9f}}};
///   tl::workflow::report r = run.train(train, parts, &test);
/// @endcode
///
/// Every member of the traits struct except `model` and `partition` is
/// optional (defaults: `side<fp32>`, `codec::fp32` both ways, `fedavg`,
/// `nn::adam`). `transport` is accepted and ignored: these workflows are an
/// in-process simulation whose messages are really encoded and decoded by the
/// codecs, so the byte counts are those of real payloads.
///
/// ## What one round is
/// Every client runs `steps_per_round` iterations (default: one pass over its
/// local data, ⌈n̄/b⌉ with n̄ the mean local sample count); an *iteration* is
/// one mini-batch of b samples per participating client:
///  1. the client runs its segment forward and sends the smashed data
///     (`uplink_codec`) and its b labels (1 byte each) to the first server;
///  2. the servers run their segments forward along the chain (each inter-
///     server cut re-encoded with `uplink_codec`), the last computes the
///     softmax cross-entropy, and the gradients run back (`downlink_codec`);
///  3. the client back-propagates and steps its optimizer.
/// The server of a parallel scheme concatenates the clients' batches and
/// minimises their mean loss; each client receives the gradient of its own
/// mean loss (the server's ∂L/∂x scaled by the number of clients g).
///
/// ## The workflows (`split_scheme`)
/// | scheme | client order | server segments | client segments | paper |
/// |---|---|---|---|---|
/// | `vanilla` | round robin, one client at a time; the device weights pass from client to client through the server | one | handed over | Vepakomma et al. 2018 (Gupta & Raskar 2018) |
/// | `parallel` | all clients each iteration, one concatenated batch | one | FedAvg every `sync_every` iterations (0: end of round) | Jeon & Kim 2020 |
/// | `epsl` | as `parallel`, with last-layer gradient aggregation over a fraction φ of each batch | one | as `parallel` | Lin et al. 2023 |
/// | `edge_split` | clusters one after another; the clients of a cluster in parallel | one | FedAvg within the cluster, handed to the next | Wu et al. 2023 (CPSL) |
/// | `splitfed_v1` | all clients in parallel, each with its own server copy | one copy per client; the main server averages them (FedAvg) and redistributes the mean to every copy every `sync_every` iterations (0: at round end) | FedAvg at the same points | Thapa et al. 2022 |
/// | `splitfed_v2` | one client after another on one server segment | one, updated client by client | FedAvg at round end | Thapa et al. 2022 |
///
/// Multi-hop split learning is any of these with `cut<K1, K2, …>`: K = cuts
/// servers in a chain (edge … cloud).
///
/// ## EPSL (φ ∈ [0, 1])
/// With m = round(φ·b), the server forwards all g·b samples to obtain the
/// logits and the per-sample last-layer gradients G. For the first m rows of
/// each client's batch, it sums the gradients over the g clients,
/// Ḡ_j = Σ_c G_{c,j}, and back-propagates that ONE row through the server
/// segments, linearised at the clients' mean smashed data x̄_j = (1/g)Σ_c x_{c,j};
/// the other b − m rows of every client are back-propagated individually. The
/// server's backward batch is g(b − m) + m rows: with φ = 1 it is b, O(1) in
/// the number of clients g, where PSL's is g·b, O(g). Every client receives
/// the shared gradient rows (Ḡ's ∂/∂x̄, which is the per-client share scaled by g)
/// and its own individual rows. φ = 0 is exactly PSL (tested bit for bit).
/// (Linearising at x̄ is this library's reading of "aggregating the last-layer
/// activations' gradients" for segments deeper than one layer; for a one-layer
/// server segment it is exact for the weight gradient of the shared rows.)
///
/// ## Accounting (per round, in `report::rounds`)
/// With N clients, K cuts, I iterations, b the batch, s_k the cut sizes,
/// U(n)/D(n) the uplink/downlink codec bytes for n values, P the device
/// segment's parameter count:
///  - client bytes up per iteration: U(b·s₀) + b (labels); down: D(b·s₀);
///  - a synchronisation of client segments: P·4 bytes up and down per client
///    (E, the compressed encoding, once a compressed device side is compressed),
///    2 sequential hops (upload to the fed server, broadcast); SplitFedV1's
///    server copies live on the main server, so averaging them costs no hop;
///  - sequential hops per iteration: 2K for a parallel step (all clients at
///    once), so VSL = 2·N·K per inner iteration (each of N clients in turn),
///    parallel schemes 2K (+2 when `sync_every` = 1: 2K + 2, independent of N;
///    SplitFedV1 likewise: its round starts with a broadcast and ends with a
///    collection, so it is I·(2K + 2) hops with `sync_every` = 1, 2K·I + 2 with 0);
///  - MACs: device forward b·M_dev, backward b·M_dev (weight gradients only:
///    the device needs no ∂/∂input); server forward rows·M_s, backward
///    2·rows·M_s (weights and input) — rows as described for EPSL;
///  - time: per iteration, the slowest client's forward + Σ over hops of
///    (latency + bytes / bandwidth) + the servers' MACs / their rate + the
///    client's backward; sequential phases add, parallel clients overlap.
/// Roles: "client" (id = client), "edge" (K > 1: servers 0 … K−2), "server"
/// (the last), "fed_server" (aggregation of client segments). For a server,
/// `bytes_up` counts what it received from below, `bytes_down` what it sent below.
///
/// ## Per-side precision (`side<Precision, …>`)
/// The device segments compute in `device_side::precision`, the server
/// segments in `server_side::precision` (`device_precision` / `server_precision`):
/// a float precision other than fp32 is mixed-precision training
/// (`nn::network<Seg, heap_storage, P>`: fp32 master weights — what is
/// averaged, handed over and counted at 4·P bytes —, GEMM operands rounded to
/// P, fp32 accumulation; dynamic loss scaling for fp16). An int8 device side
/// trains its fp32 segment with fake quantization. When a server's
/// loss-scaled gradients overflow, every server segment and every client of
/// that iteration skips its step (the scales adapt); a client whose own
/// backward pass overflows skips its step. Cannot run, and fail to compile
/// naming the member: an int8 (or any non-float) `Traits::server`, a quantized
/// `Traits::device` that is not int8, a compressed fp16 / bf16 side, an int8
/// device segment with `with_precision` layers.
///
/// ## Per-side compression (`side<Precision, Compression>`)
/// A side whose compression is not `compress::none` trains under it:
///  - **when**: at the start of round `compress_after` + 1 (option; 0 = the
///    initial weights) the *canonical* segment — the fed server's global device
///    segment, the global server segments — is compressed once with the policy
///    object `split_options::device_compression` (`server_compression`) on every
///    weighted layer, all stages at once (`network_compressor::apply_all`); a
///    warm-up of W rounds is Deep Compression's "train, then prune and
///    fine-tune". Gradual pruning schedules are not followed: the schedule's
///    target is applied at that point.
///  - **who computes the mask / codebook**: only the canonical segment. Every
///    copy (client device segments, SplitFedV1's server copies) receives the
///    masks and labels with the next transfer of the segment — the round's
///    broadcast, VSL's hand-over, EdgeSplit's cluster download; PSL and EPSL,
///    whose rounds start without one, get one extra broadcast (1 hop, counted)
///    — so all copies prune the same positions and share the same labels.
///  - **training**: each copy steps as `compress::fine_tuning` does (masked
///    gradients, masks re-applied after each step, centroids stepped and the
///    weights re-snapped; a centroid's gradient is the mean of its weights',
///    see `split_detail::party`); its fp32 weights are at all times what the
///    compressed form decodes to. After every aggregation the canonical segment
///    is projected back onto the constraint (masks; each centroid = the mean of
///    its weights, which for FedAvg of copies with shared labels is the
///    average centroid exactly) — a no-op for FedAvg, a correction for robust
///    or noisy aggregates.
///  - **bytes**: every transfer of a device segment (broadcast, collection,
///    hand-over) counts `device_segment_bytes()` = the size of the segment's
///    compressed encoding (`network_compressor::encode`: per weighted layer a
///    16-byte descriptor, fp32 biases, CSR / codebook / Huffman streams), 4·P
///    before compression; it is computed once on the canonical segment (the
///    masks and labels fix it). `encode_device()` is that encoding (the
///    deployment). Server segments never travel: their compression changes
///    their training, not the bytes.
///  - **limits**: `low_rank` is rejected at compile time (`split_compression_policy`:
///    a dense step does not keep the factors); encoding needs dense weighted
///    layers (a static_assert in `encode` says so for convolutions). The
///    transport version of SplitFedV1 (transport/split.hpp) is fp32-only.
#pragma once

#include <algorithm>
#include <array>
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

namespace tinylarge {

/// Which split-learning workflow `split_learning` runs (see the file comment).
enum class split_scheme : unsigned char { vanilla, parallel, epsl, edge_split, splitfed_v1, splitfed_v2 };

constexpr const char* to_string(split_scheme s) noexcept {
  switch (s) {
    case split_scheme::vanilla: return "vsl";
    case split_scheme::parallel: return "psl";
    case split_scheme::epsl: return "epsl";
    case split_scheme::edge_split: return "edge_split";
    case split_scheme::splitfed_v1: return "splitfed_v1";
    case split_scheme::splitfed_v2: return "splitfed_v2";
  }
  return "?";
}

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

/// Sends x through codec C: encode into `wire`, decode into y. Returns the message bytes.
template <smashed_codec C>
std::size_t transmit(std::span<const float> x, std::span<float> y, std::vector<std::byte>& wire) {
  wire.resize(C::max_encoded_bytes(x.size()));
  const std::size_t n = C::encode(x, wire);
  raise_if_error(C::decode(std::span<const std::byte>(wire.data(), n), y));
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

/// Options of a split-learning run (hyperparameters of the schemes).
/// @tparam Optimizer every party's `optimizer_policy`
/// @tparam Aggregation the `aggregation_policy` of the client segments
/// @tparam DeviceCompression the device side's compression policy type (`side::compression`)
/// @tparam ServerCompression the server sides' compression policy type
template <class Optimizer, class Aggregation, class DeviceCompression = compress::none,
          class ServerCompression = compress::none>
struct split_options {
  std::size_t rounds = 1;             ///< communication rounds
  std::size_t batch_size = 32;        ///< b, per client and iteration
  std::size_t steps_per_round = 0;    ///< I; 0 = one pass over the mean local data set, ⌈n̄/b⌉
  float phi = 0.0f;                   ///< EPSL aggregation ratio φ ∈ [0, 1]
  std::size_t clusters = 2;           ///< EdgeSplit: clusters (contiguous client ranges)
  /// PSL / EPSL / EdgeSplit (within a cluster) / SplitFedV1: iterations between
  /// FedAvg synchronisations of the client segments (SplitFedV1: and of the
  /// per-client server copies, at the same points); 0 = once, at the end of the
  /// round (or of the cluster's turn). Under non-IID data, frequent
  /// synchronisation keeps the segments from drifting apart. With a linear
  /// optimizer (SGD, with or without heavy-ball momentum) and `sync_every` = 1,
  /// PSL and SplitFedV1 compute centralised training on the union of the
  /// clients' batches (tested); Adam's per-party normalisation does not
  /// commute with the average (see docs/split-learning.md).
  std::size_t sync_every = 0;
  std::uint64_t seed = 1;             ///< initialisation and local shuffling
  std::size_t evaluate_every = 1;     ///< evaluate on the test set every this many rounds (and after the last)
  workflow::link_model link{};        ///< for the time estimate
  Optimizer optimizer{};              ///< every party's local optimizer
  Aggregation aggregation{};          ///< client-segment (and SplitFedV1 server-copy) aggregation
  /// Rounds of uncompressed training (warm-up) before a side with a
  /// compression policy is compressed: at the start of round
  /// `compress_after` + 1 the canonical (global) segment is compressed once —
  /// masks and codebooks computed on it — and every copy trains under that
  /// constraint from then on. 0 = from the start (the initial weights are
  /// compressed); ≥ `rounds` = never. Deep Compression prunes a trained model
  /// and fine-tunes: a warm-up of one or more rounds is that.
  std::size_t compress_after = 0;
  DeviceCompression device_compression{};  ///< the device side's policy object (its hyperparameters)
  ServerCompression server_compression{};  ///< the server sides' policy object (every server segment)
};

/// A split-learning workflow over a traits struct (see the file comment).
/// @tparam Traits a struct with `model` (a `sequential`) and `partition`
///         (`cut<K...>` with at least one cut), and optionally `device`,
///         `server` (`side<Precision, Compression>`, see "Per-side compression"
///         in the file comment), `codec` or `uplink_codec`/`downlink_codec`
///         (`smashed_codec`s), `aggregation` (an `aggregation_policy`) and
///         `optimizer` (an `optimizer_policy`)
/// @tparam Scheme which workflow (`split_scheme`)
template <class Traits, split_scheme Scheme>
class split_learning {
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

  static constexpr split_scheme scheme = Scheme;
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
  explicit split_learning(options opt = {}) : opt_(std::move(opt)) {
    TINYLARGE_REQUIRE(opt_.batch_size > 0, errc::invalid_argument, "split_learning: batch_size must be positive");
    TINYLARGE_REQUIRE(opt_.phi >= 0.0f && opt_.phi <= 1.0f, errc::invalid_argument,
                      "split_learning: EPSL's phi must lie in [0, 1]");
    TINYLARGE_REQUIRE(Scheme != split_scheme::edge_split || opt_.clusters > 0, errc::invalid_argument,
                      "split_learning: EdgeSplit needs at least one cluster");
  }

  const options& settings() const noexcept { return opt_; }

  /// Train on `train`, split over clients by `parts` (client → sample
  /// indices), evaluating on `test` (optional).
  /// @return the report: one record per round
  workflow::report train(const nn::labelled_view<std::uint8_t>& train, const data::partition_t& parts,
                         const nn::labelled_view<std::uint8_t>* test = nullptr) {
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
    data_ = &train;
    parts_ = &parts;
    const std::size_t n = parts.size();
    steps_ = opt_.steps_per_round != 0 ? opt_.steps_per_round
                                       : std::max<std::size_t>(1, (total / n + opt_.batch_size - 1) / opt_.batch_size);
    initialise(n);
    workflow::report rep;
    rep.workflow = to_string(Scheme);
    for (std::size_t r = 1; r <= opt_.rounds; ++r) {
      begin_round(r, n);
      if (r == opt_.compress_after + 1) compress_segments(n);
      run_round(n);
      round_.round = r;
      round_.train_loss = loss_count_ > 0 ? loss_sum_ / static_cast<double>(loss_count_) : 0.0;
      const bool eval = test != nullptr && (r == opt_.rounds || (opt_.evaluate_every != 0 && r % opt_.evaluate_every == 0));
      round_.test_accuracy = eval ? accuracy(*test) : std::numeric_limits<double>::quiet_NaN();
      rep.rounds.push_back(std::move(round_));
    }
    return rep;
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
    if constexpr (Scheme == split_scheme::splitfed_v1) {
      server_copies_.clear();
      for (std::size_t c = 0; c < n; ++c) server_copies_.push_back(std::make_unique<chain>(*global_chain_));
    }
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

  void begin_round(std::size_t, std::size_t n) {
    round_ = {};
    loss_sum_ = 0.0;
    loss_count_ = 0;
    clients_.assign(n, {});
    for (std::size_t c = 0; c < n; ++c) clients_[c] = {"client", c, {}, 0};
    servers_.assign(K, {});
    for (std::size_t s = 0; s < K; ++s) servers_[s] = {s + 1 < K ? "edge" : "server", s, {}, 0};
    fed_ = {"fed_server", 0, {}, 0};
  }

  void end_round_parties() {
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

  // ---- the schemes ----------------------------------------------------------

  void run_round(std::size_t n) {
    std::vector<std::size_t> all(n);
    for (std::size_t c = 0; c < n; ++c) all[c] = c;
    if constexpr (Scheme == split_scheme::vanilla) {
      // Round robin: client c downloads the device segment left by c−1, trains, uploads it.
      for (std::size_t c = 0; c < n; ++c) {
        handover_download(c);
        for (std::size_t t = 0; t < steps_; ++t) round_.estimated_seconds += step({&c, 1}, *global_chain_).seconds;
        handover_upload(c);
      }
    } else if constexpr (Scheme == split_scheme::parallel || Scheme == split_scheme::epsl) {
      for (std::size_t t = 0; t < steps_; ++t) {
        round_.estimated_seconds += step(all, *global_chain_).seconds;
        if (opt_.sync_every != 0 && (t + 1) % opt_.sync_every == 0) synchronise(all);
      }
      if (opt_.sync_every == 0 || steps_ % opt_.sync_every != 0) synchronise(all);
    } else if constexpr (Scheme == split_scheme::edge_split) {
      const std::size_t clusters = std::min(opt_.clusters, n);
      for (std::size_t k = 0; k < clusters; ++k) {
        std::vector<std::size_t> members;
        for (std::size_t c = k * n / clusters; c < (k + 1) * n / clusters; ++c) members.push_back(c);
        broadcast(members);
        for (std::size_t t = 0; t < steps_; ++t) {
          round_.estimated_seconds += step(members, *global_chain_).seconds;
          if (opt_.sync_every != 0 && (t + 1) % opt_.sync_every == 0 && t + 1 < steps_) synchronise(members);
        }
        collect(members);
      }
    } else if constexpr (Scheme == split_scheme::splitfed_v1) {
      broadcast(all);
      // Each server copy starts from the global server segments (parameters
      // only: its optimizer state stays its own, as a client's does).
      for (std::size_t c = 0; c < n; ++c) copy_chain_parameters(*global_chain_, *server_copies_[c]);
      // Clients run in parallel, each against its own server copy: an
      // iteration costs the slowest client's path plus the server's total work.
      // Every `sync_every` iterations (0: at the end of the round) the main
      // server averages the copies and redistributes the result to every copy,
      // and the fed server averages the client segments — both at the same
      // points, so clients and server copies never drift apart for longer.
      for (std::size_t t = 0; t < steps_; ++t) {
        double client_path = 0.0, server_work = 0.0;
        for (std::size_t c = 0; c < n; ++c) {
          const step_time st = step({&c, 1}, *server_copies_[c], /*count_hops=*/c == 0);
          client_path = std::max(client_path, st.seconds - st.server_seconds);
          server_work += st.server_seconds;
        }
        round_.estimated_seconds += client_path + server_work;
        if (opt_.sync_every != 0 && (t + 1) % opt_.sync_every == 0 && t + 1 < steps_) {
          collect(all);
          average_server_copies(n);
          broadcast(all);
          for (std::size_t c = 0; c < n; ++c) copy_chain_parameters(*global_chain_, *server_copies_[c]);
        }
      }
      collect(all);
      average_server_copies(n);
    } else {  // splitfed_v2
      broadcast(all);
      for (std::size_t c = 0; c < n; ++c)
        for (std::size_t t = 0; t < steps_; ++t) round_.estimated_seconds += step({&c, 1}, *global_chain_).seconds;
      collect(all);
    }
    end_round_parties();
  }

  // ---- one iteration --------------------------------------------------------

  struct step_time {
    double seconds = 0.0;
    double server_seconds = 0.0;
  };

  /// One iteration of the clients in `group` against `ch`, in parallel.
  step_time step(std::span<const std::size_t> group, chain& ch, bool count_hops = true) {
    const std::size_t g = group.size(), b = opt_.batch_size;
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
      const float* d = devices_[c]->net.forward(xb_.data(), b, true);
      const std::size_t bytes = split_detail::transmit<uplink_codec>({d, b * S0}, {smashed_.data() + i * b * S0, b * S0}, wire_);
      up_bytes = bytes + b;
      clients_[c].net.bytes_up += bytes + b;
      clients_[c].net.messages_up += 1;
      clients_[c].macs += static_cast<std::uint64_t>(b) * device_model::macs;
      servers_[0].net.bytes_up += bytes + b;
      servers_[0].net.messages_up += 1;
    }
    // 2. servers
    const std::size_t rows = g * b;
    const std::size_t m = Scheme == split_scheme::epsl && g > 1
                              ? static_cast<std::size_t>(std::floor(static_cast<double>(opt_.phi) * static_cast<double>(b) + 0.5))
                              : 0;
    dy_.resize(rows * model::output_size);
    dsmashed_.resize(rows * S0);
    std::uint64_t server_macs = 0;
    bool server_ok = true;  // false: a server's loss-scaled gradients overflowed, the iteration is skipped
    if (m == 0) {
      const float* out = chain_forward<0>(ch, smashed_.data(), rows, true, &server_macs);
      loss_sum_ += loss::evaluate(out, yb_.data(), rows, model::output_size, dy_.data()) * static_cast<double>(rows);
      loss_count_ += rows;
      chain_zero(ch);
      chain_backward<K - 1>(ch, dy_.data(), dsmashed_.data(), rows, &server_macs);
      server_ok = chain_step(ch);
      // each client's gradient of its own mean loss
      const auto scale = static_cast<float>(g);
      if (g != 1)
        for (float& v : dsmashed_) v *= scale;
    } else {
      // EPSL: logits of every sample, then one backward over g(b − m) + m rows.
      const float* out = chain_forward<0>(ch, smashed_.data(), rows, false, &server_macs);
      loss_sum_ += loss::evaluate(out, yb_.data(), rows, model::output_size, dy_.data()) * static_cast<double>(rows);
      loss_count_ += rows;
      const std::size_t red = g * (b - m) + m;
      xred_.assign(red * S0, 0.0f);
      dyred_.assign(red * model::output_size, 0.0f);
      for (std::size_t i = 0; i < g; ++i) {
        for (std::size_t j = m; j < b; ++j) {
          const std::size_t dst = i * (b - m) + (j - m), src = i * b + j;
          std::copy_n(smashed_.data() + src * S0, S0, xred_.data() + dst * S0);
          std::copy_n(dy_.data() + src * model::output_size, model::output_size, dyred_.data() + dst * model::output_size);
        }
        for (std::size_t j = 0; j < m; ++j) {
          const std::size_t dst = g * (b - m) + j, src = i * b + j;
          for (std::size_t f = 0; f < S0; ++f) xred_[dst * S0 + f] += smashed_[src * S0 + f] / static_cast<float>(g);
          for (std::size_t f = 0; f < model::output_size; ++f)
            dyred_[dst * model::output_size + f] += dy_[src * model::output_size + f];
        }
      }
      chain_forward<0>(ch, xred_.data(), red, true, &server_macs);
      chain_zero(ch);
      dxred_.resize(red * S0);
      chain_backward<K - 1>(ch, dyred_.data(), dxred_.data(), red, &server_macs);
      server_ok = chain_step(ch);
      const auto scale = static_cast<float>(g);
      for (std::size_t i = 0; i < g; ++i) {
        for (std::size_t j = 0; j < b; ++j) {
          float* dst = dsmashed_.data() + (i * b + j) * S0;
          if (j < m) {
            std::copy_n(dxred_.data() + (g * (b - m) + j) * S0, S0, dst);
          } else {
            const float* src = dxred_.data() + (i * (b - m) + (j - m)) * S0;
            for (std::size_t f = 0; f < S0; ++f) dst[f] = src[f] * scale;
          }
        }
      }
    }
    // 3. gradients down, client backward
    std::uint64_t down_bytes = 0;
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
      auto& dev = *devices_[c];
      dev.net.zero_gradients();
      dev.net.backward(grad_.data(), nullptr);
      if (dev.accept() && server_ok) dev.step();
      clients_[c].macs += static_cast<std::uint64_t>(b) * device_model::macs;
    }
    if (count_hops) round_.sequential_hops += 2 * K;
    // time: device fwd, K hops up, server compute, K hops down, device bwd
    step_time t;
    const double dev = static_cast<double>(b * device_model::macs) / L.device_macs_per_s;
    t.server_seconds = last_server_seconds_;
    t.seconds = 2.0 * dev + t.server_seconds + L.latency_s * static_cast<double>(2 * K) +
                static_cast<double>(up_bytes) / L.uplink_bytes_per_s + static_cast<double>(down_bytes) / L.downlink_bytes_per_s +
                inter_server_seconds_;
    last_server_seconds_ = 0.0;
    inter_server_seconds_ = 0.0;
    return t;
  }

  // ---- the server chain -----------------------------------------------------

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
      if constexpr (Scheme == split_scheme::parallel || Scheme == split_scheme::epsl) {
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
    round_.estimated_seconds += opt_.link.latency_s + static_cast<double>(device_bytes) / opt_.link.downlink_bytes_per_s;
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
    round_.estimated_seconds += opt_.link.latency_s + static_cast<double>(device_bytes) / opt_.link.uplink_bytes_per_s;
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

  void synchronise(std::span<const std::size_t> group) {
    collect(group);
    broadcast(group);
  }

  void handover_download(std::size_t c) { broadcast({&c, 1}); }
  void handover_upload(std::size_t c) {
    const std::uint64_t device_bytes = segment_bytes();
    clients_[c].net.bytes_up += device_bytes;
    clients_[c].net.messages_up += 1;
    fed_.net.bytes_up += device_bytes;
    fed_.net.messages_up += 1;
    round_.sequential_hops += 1;
    round_.estimated_seconds += opt_.link.latency_s + static_cast<double>(device_bytes) / opt_.link.uplink_bytes_per_s;
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
  const nn::labelled_view<std::uint8_t>* data_ = nullptr;
  const data::partition_t* parts_ = nullptr;
  std::size_t steps_ = 0;
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
  std::vector<float> xb_, smashed_, dy_, dsmashed_, xred_, dyred_, dxred_, grad_;
  std::vector<std::uint8_t> yb_;
  std::array<std::vector<float>, K> hop_, tmp_;
  std::vector<std::byte> wire_;
  std::vector<float> initial_;  ///< set_initial_parameters (empty: seeded initialisation)
  std::uint64_t encoded_bytes_ = 0;  ///< the compressed device segment's encoded size (constant once compressed)
};

/// Vanilla split learning (Vepakomma et al. 2018): clients in round robin.
template <class Traits>
using vanilla_split = split_learning<Traits, split_scheme::vanilla>;
/// Parallel split learning (Jeon & Kim 2020).
template <class Traits>
using psl = split_learning<Traits, split_scheme::parallel>;
/// Efficient parallel split learning (Lin et al. 2023): PSL + last-layer gradient aggregation with ratio φ.
template <class Traits>
using epsl = split_learning<Traits, split_scheme::epsl>;
/// EdgeSplit / cluster-based PSL (Wu et al. 2023): PSL within clusters, clusters in sequence.
template <class Traits>
using edge_split = split_learning<Traits, split_scheme::edge_split>;
/// SplitFedV1 (Thapa et al. 2022): per-client server copies averaged each round.
template <class Traits>
using splitfed_v1 = split_learning<Traits, split_scheme::splitfed_v1>;
/// SplitFedV2 (Thapa et al. 2022): one server segment, updated client by client.
template <class Traits>
using splitfed_v2 = split_learning<Traits, split_scheme::splitfed_v2>;

}  // namespace tinylarge
