/// @file workflow/split.hpp
/// @brief Split-learning workflows over one traits struct: vanilla split
///        learning (VSL), multi-hop SL, parallel SL (PSL), EPSL, EdgeSplit /
///        cluster-based PSL, SplitFedV1 and SplitFedV2 — with per-party
///        traffic, MACs, sequential hops and a link-model time estimate.
///
/// The header is the umbrella of two: workflow/split_schemes.hpp (the
/// `split_scheme_policy` concept, one type per scheme, `split_options`) and
/// workflow/split_engine.hpp (`split_learning<Traits, Scheme>`, generic over
/// the concept); it adds the aliases `tl::vanilla_split<Traits>`,
/// `tl::psl<Traits>`, `tl::epsl<Traits>`, `tl::edge_split<Traits>`,
/// `tl::splitfed_v1<Traits>` and `tl::splitfed_v2<Traits>`.
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
/// ## The workflows (`split_scheme::…`, workflow/split_schemes.hpp)
/// | scheme | client order | server segments | client segments | paper |
/// |---|---|---|---|---|
/// | `vanilla` (the trivial member) | round robin, one client at a time; the device weights pass from client to client through the server | one | handed over | Vepakomma et al. 2018 (Gupta & Raskar 2018) |
/// | `parallel` | all clients each iteration, one concatenated batch | one | FedAvg every `sync_every` iterations (0: end of round) | Jeon & Kim 2020 |
/// | `epsl` | as `parallel`, with last-layer gradient aggregation over a fraction φ of each batch | one | as `parallel` | Lin et al. 2023 |
/// | `edge_split` | clusters one after another; the clients of a cluster in parallel | one | FedAvg within the cluster, handed to the next | Wu et al. 2023 (CPSL) |
/// | `splitfed_v1` | all clients in parallel, each with its own server copy | one copy per client; the main server averages them (FedAvg) and redistributes the mean to every copy every `sync_every` iterations (0: at round end) | FedAvg at the same points | Thapa et al. 2022 |
/// | `splitfed_v2` | one client after another on one server segment | one, updated client by client | FedAvg at round end | Thapa et al. 2022 |
///
/// Each scheme is a type modelling `split_scheme_policy`: its `run_round`
/// says who runs in parallel and when what is aggregated, written against
/// the engine's round interface (`step`, `step_each`, `broadcast`,
/// `collect`, hand-overs, server copies); a scheme of your own is a struct
/// with the same six members, `tl::split_learning<Traits, my_scheme>`.
///
/// Multi-hop split learning is any of these with `cut<K1, K2, …>`: K = cuts
/// servers in a chain (edge … cloud).
///
/// Over a wireless fleet (`split_options::wireless`, workflow/channel.hpp)
/// every client computes and transmits at its own rates, with energy per
/// client and round; EdgeSplit can form its clusters by capability
/// (`split_options::cluster_by_capability`); and `tl::per_device_cuts<Traits,
/// Scheme, Cuts...>` (workflow/split_cuts.hpp) runs each client at its own
/// cut, chosen from its compute, links and memory (`choose_cuts`).
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
///    transport version of SplitFedV1 (workflow/split_deploy.hpp) is fp32-only.
#pragma once

#include "split_cuts.hpp"
#include "split_engine.hpp"
#include "split_schemes.hpp"

namespace tinylarge {

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
