/// @file workflow/split_deploy.hpp
/// @brief The deployment of SplitFedV1 and SplitFedV2 (Thapa et al. 2022), of
///        parallel split learning (PSL, Jeon & Kim 2020), of EPSL (Lin et al.
///        2023), of vanilla split learning (VSL, Vepakomma et al. 2018) and of
///        EdgeSplit / CPSL (Wu et al. 2023) over any `transport_policy`:
///        `split_deployment<Scheme, …>`, aliased `splitfed_v1_deployment<…>`,
///        `psl_deployment<…>`, `epsl_deployment<…>`, `splitfed_v2_deployment<…>`,
///        `vsl_deployment<…>` and `edge_split_deployment<…>` — with one cut,
///        or two (`cut<K1, K2>`: device → edge → cloud, "Multi-hop" below). SplitFedV1's `server` is the main
///        server — one copy of the server segment per client — and the fed
///        server, which averages the client segments) and `splitfed_v1_deployment<…>::client`, the
///        drivers that run split learning's two roles
///        (workflow/split_roles.hpp: `device_forward` / `encode_smashed` /
///        `decode_gradient` / `device_backward`, `decode_smashed` /
///        `server_step` / `encode_at_cut`) over wire frames — the same role
///        and codec functions the in-process engine (workflow/split_engine.hpp)
///        runs, so the protocol's arithmetic exists once. Over MPI rank 0 is the
///        server; over MQTT the server topics (docs/transport.md has the layout);
///        over `serial::serial_transport` the server and one device — a
///        microcontroller whose firmware runs the client's device functions and
///        frame rules (workflow/split_device.hpp: `split_model_is_newer`,
///        `split_smashed_header`, `split_gradient_for`, `split_update_header`,
///        the ones `client` below runs; tests/mcu/split_device.cpp).
///
/// One cut (`cut<K>`: device segment + server segment). What crosses it is
/// encoded by the `Uplink` codec (smashed data) and the `Downlink` codec
/// (gradients) of partition/codec.hpp — fp32, fp16, int8, top_k — as in the
/// in-process engine's `uplink_codec` / `downlink_codec`; Up(n) and Down(n)
/// below are their message sizes for n values (4n, 2n, n + 8, …). The
/// codecs must encode n values in exactly `max_encoded_bytes(n)` bytes (all
/// of codec.hpp's do): the server finds b from the frame's length. Endpoint 0 plays both
/// server roles of the paper — the *main server* (forward/backward of the
/// server segment) and the *fed server* (FedAvg of the client segments) —
/// because both run at the same synchronisation point; clients are 1..N.
///
/// ## Message sequence of round r (S = `steps_per_round`, b ≤ `max_batch`, s = cut size)
/// (every `aux` below also carries the restart epoch e in its upper 32 bits:
/// see "Crash recovery"; e = 0 in a run whose server never restarted)
///  1. server → all: `model` {round r, aux = S, fp32 payload = the global
///     device segment}. The server sets copy k of the server segment to the
///     global server segment (each copy keeps its own optimizer state, as
///     each client keeps its own).
///  2. for t = 0 … S−1, client k:
///     - runs its segment forward on its batch t and sends `smashed`
///       {round r, aux = t, bytes payload = Up(b·s activations) followed by
///       the b labels, one byte each: Up(b·s) + b bytes} (**labels travel
///       with the smashed data**: the label-sharing variant of SplitFed, one
///       frame per step);
///     - the server checks the frame (round, t = the next step of client k;
///       then `decode_smashed`: the length is Up(b·s) + b for one
///       1 ≤ b ≤ max_batch, the codec accepts the payload — int8 scale
///       positive and finite, top_k indices in range and ascending —, finite
///       activations, labels in [0, classes)), runs `server_step` on
///       copy k (forward, the softmax cross-entropy, backward and its
///       optimizer step), and sends
///       `gradient` {round r, aux = t, bytes payload = Down(∂loss/∂activations,
///       b·s values)} to client k;
///     - client k checks the gradient (`decode_gradient`: exactly Down(b·s)
///       bytes, a payload the codec accepts, finite values), back-propagates
///       it through its segment and steps its optimizer (`device_backward`).
///  3. client k → server: `update` {round r, aux = local examples, fp32
///     payload = its device segment}.
///  4. when every live client has sent its update (or `round_timeout`
///     expired): the fed server averages the device segments, the main server
///     the server copies, **of the same clients** (those whose update arrived
///     and was accepted by the aggregation — not NaN/Inf: a client that died
///     mid-round contributes neither its half-trained copy nor its segment),
///     weighted by their example counts (1 … 2³¹−1, else the update is
///     dropped), in client-id order (arrival order cannot change a bit).
///     Fewer than `min_clients` such clients: the server stops with
///     `errc::timed_out`. A gradient that cannot be sent before
///     `send_timeout` excludes its client from the round.
///  5. after the last round: `control`/`stop` to all.
///
/// Frames that do not fit (stale round, duplicate step from a QoS 1
/// redelivery, wrong size) are dropped and counted; a smashed frame with
/// a codec payload the codec refuses, non-finite values (also a NaN half of
/// an fp16 payload) or invalid labels excludes its client from the round
/// (counted in `rejected_frames`; the client then times out on its gradient).
/// Every wait has a deadline. Deadline policy for dead clients: as
/// the FedAvg deployment server (workflow/federated_deploy.hpp) — a client that missed a round's deadline is not
/// waited for in the next rounds unless it answers in time.
///
/// Zero-copy note (`in_process`): every payload stays unchanged until its
/// receiver has used it — the server keeps one gradient buffer per client,
/// a client changes its smashed buffer only after the gradient came back,
/// and the model buffer only changes after every update of the round is in.
///
/// ## Crash recovery (`checkpoint_path`)
/// With `checkpoint_path` set the server writes a `split_checkpoint`
/// (transport/checkpoint.hpp; atomic, CRC-checked) when it starts and after
/// every round: both global segments, both aggregators' policy states, the
/// optimizer state of every server copy (a copy's Adam moments carry over
/// from round to round, as each client's do) and the round number. A server
/// started on an existing checkpoint resumes at the round after it
/// (`report.first_round`); a checkpoint of another model, cut or number of
/// clients is refused (`shape_mismatch`), a damaged one too (`corrupt`,
/// `checksum_mismatch`, `truncated`): never silently ignored.
///
/// **Restart epoch.** Each resume increments the checkpoint's `restarts`
/// count and saves it at once (two crashes in one round: two epochs). The
/// epoch e rides in the upper 32 bits of every `aux` of the round — model
/// S | e≪32, smashed and gradient t | e≪32, update examples | e≪32 — so a
/// run that never restarted sends the same frames as without checkpoints.
/// The server drops frames of another epoch (e.g. the smashed frames the dead
/// server's MQTT session kept), the client gradients of another epoch.
///
/// **Client rule.** A client acts on a model frame only if its (round, epoch)
/// is lexicographically greater than the (round, epoch) it is in:
///  - a later round starts that round; the client first keeps a copy of its
///    optimizer state (the state at the start of the round);
///  - the same round with a greater epoch means the server restarted: the
///    client drops what it was doing (waiting for a gradient, or for the next
///    model after its update), restores the optimizer copy of the round's
///    start, loads the model (the same bits as before: the checkpoint's) and
///    redoes the round from step 0 (`on_restart` is called);
///  - anything else is ignored: a QoS 1 duplicate of the model it works on
///    (same round, same epoch) never restarts a round, an older one neither.
/// The redo asks `next_batch` again for steps 0, 1, …: it must return the
/// same batch for the same (round, step). Then the redone round computes the
/// bits the interrupted one would have, and the run ends with the same model
/// as an uninterrupted one (scripts/transport_test.sh nn-split-server-killed).
/// In process, the gradient buffers belong to the server object, so a
/// simulated crash (an exception thrown by `on_step`) leaves every payload a
/// client may still hold valid while that object lives.
///
/// ## PSL (`psl_deployment`, `Scheme` = `split_scheme::parallel`)
/// The client and every frame are SplitFedV1's above. The server holds one
/// server segment with one optimizer state instead of copies, and serves in
/// lockstep: it keeps client k's smashed frame of step t until every client
/// the step waits for (live, not excluded, not done) has sent its own, or
/// `round_timeout` has passed since the previous step (the missing clients
/// sit the round out), then runs `server_step` once on the rows of all of
/// them concatenated in client-id order — the in-process engine's `step` of
/// the whole group — and sends each client its rows of ∂L/∂a multiplied by
/// rows ÷ b_k, the gradient of that client's own mean loss (the engine's ×g).
/// At the end of the round the fed server averages the device segments; the
/// server segment was trained by the steps themselves (`sync_every` = 0).
/// The checkpoint holds the one server optimizer state (`copies` of size 1).
///
/// ## SplitFedV2 (`splitfed_v2_deployment`, `split_scheme::splitfed_v2`)
/// As PSL (one server segment, the same client and frames), but sequential:
/// the server serves only the client whose turn it is — the lowest id that
/// still owes steps this round — and keeps the other clients' first smashed
/// frames until their turn; a client whose turn passes `round_timeout`
/// without a frame sits the round out and the next one goes on. Each client
/// uploads its segment when its S steps are done; the fed server averages
/// them at the end of the round, as the engine's `collect`.
///
/// ## EPSL (`epsl_deployment`, `split_scheme::epsl`)
/// PSL above — the same client, frames, lockstep, deadlines, averaging and
/// checkpoint — except the server's step: with g clients in the step and m =
/// `split_scheme::epsl::aggregated_rows(o, g, b)` = round(φ·b) (φ =
/// `splitfed_server_options::phi`, b the smallest batch of the step; m = 0 for a
/// lone client) it runs `server_step_aggregated` (workflow/split_roles.hpp, the
/// function the engine's EPSL step runs) instead of `server_step`: the logits
/// of every row, then one backward over the rows j ≥ m of every client plus,
/// for each j < m, ONE row (the clients' mean smashed row, the sum of their
/// last-layer gradients). Client k's gradient frame holds its own rows j ≥ m
/// (×rows ÷ b_k, as PSL) and the shared rows' gradient for j < m — the same
/// Down(b_k·s) bytes as PSL. φ = 0 is PSL, bit for bit.
///
/// ## VSL and EdgeSplit: turns (`vsl_deployment`, `edge_split_deployment`)
/// The clients take turns in **groups** on the one server segment — VSL
/// (`split_scheme::vanilla`): every client a group of its own, in client-id
/// order; EdgeSplit / CPSL (`split_scheme::edge_split`): the C =
/// min(`splitfed_server_options::clusters`, N) clusters of contiguous client
/// ids, cluster c = clients c·N/C + 1 … (c+1)·N/C, in that order (the engine's
/// clusters by id; `cluster_by_capability` needs the engine's wireless fleet
/// and is not deployed). The client and every frame are SplitFedV1's; the
/// sequence of round r differs in steps 1 and 4:
///  1. no broadcast: a group's turn starts with server → each member k:
///     `model` {round r, aux = S, the global device segment as the previous
///     group left it} (its own copy, unchanged until k's next turn);
///  2. the members' S steps, in PSL's lockstep within the group (a group of
///     one: SplitFedV2's turn);
///  3. member k → server: `update`. When every member has sent its update (or
///     sits the round out) the turn ends: VSL hands the client's segment over
///     — it becomes the global device segment (a copy, the engine's
///     `hand_over_upload`) unless it holds a NaN or Inf (refused, listed in
///     `rejected`: the previous one stays); EdgeSplit averages the cluster's
///     segments with `Aggregation` (the engine's `collect` of the cluster).
///     Then the next group's turn starts (1.);
///  4. nothing is averaged at the round's end: `clients_per_round` counts the
///     segments taken back (handed over, or accepted by the averages).
/// Deadlines: each frame of a turn has `round_timeout` (from the model, from
/// the previous lockstep step); a member that misses it, or cannot be sent
/// its model, sits the round out — the group goes on without it, an empty
/// group leaves the global segment as it was — and gets its turn again in
/// the next round (a dead client costs each round one `round_timeout`). A
/// client waits for its turn up to `splitfed_client_options::idle_timeout`,
/// which must exceed the turns before it. The checkpoint and the client rule
/// of "Crash recovery" hold unchanged: a restarted server starts the round
/// again from the first group with epoch e + 1; a client that had already had
/// its turn in that round redoes it from the optimizer state of the round's start.
///
/// ## Multi-hop: device → edge → cloud (`Partition` = `cut<K1, K2>`; PSL, SplitFedV2, VSL, EdgeSplit)
/// Three kinds of rank. The devices are `client`s (segment 0), unchanged.
/// `server` is the **edge** (segment 1): every frame, deadline, check and
/// average above toward the devices, but its step is `server_step` with the
/// `next_hop` head — the edge is the cloud's device: the rows' outputs of its
/// segment and their labels go up as a smashed frame {round r, aux = u | e≪32
/// (u: the edge's steps sent this round), Up(rows·s₁) + rows labels}, and
/// the cloud's gradient {r, the same aux, Down(rows·s₁)} comes back through
/// `await_gradient` (the client's wait and checks) before the edge's backward
/// and step. `cloud` (segment 2) serves the edge as the one-cut server serves
/// a client (`decode_smashed`, `server_step` with the loss). The edge and the
/// cloud are endpoints 1 and 0 of a transport of their own (`server::run(net,
/// up, options)`), so the device tier keeps the layout above. The cloud first
/// broadcasts a `model` frame {round 0, its initial segment} (retained over
/// MQTT): the edge checks its size and sends no step before it. After the
/// last round the edge sends the cloud `control`/`stop`, and the cloud
/// answers with its segment (`update`): the edge then holds the whole model
/// (`cloud_parameters`). The cloud's gradient has `round_timeout`; a silent
/// or refused cloud stops the edge (the cloud cannot be replaced mid-run).
/// With the fp32 codecs the edge and the cloud compute what one server with
/// both segments computes, bit for bit. No checkpoints (refused: the cloud's
/// state is not in them); the loss is in the cloud's report.
///
/// Not here: SplitFedV1 and EPSL with two cuts (server copies per client of
/// every segment; EPSL's inference pass over the whole chain), chains of three
/// or more cuts, checkpoints of a multi-hop run, codecs whose message size
/// varies with the values (none in partition/codec.hpp), the precision and
/// compression policies of the engine's sides (`device` / `server`: fp32
/// segments here), `sync_every` > 0 (PSL, EPSL, EdgeSplit), EdgeSplit's
/// clusters by capability; a scheme of one's own (`split_deployment` with it
/// does not compile: it runs in process).
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "../aggregate/aggregator.hpp"
#include "../aggregate/policy.hpp"
#include "../core/config.hpp"
#include "../core/error.hpp"
#include "../nn/loss.hpp"
#include "../nn/network.hpp"
#include "../nn/optimizer.hpp"
#include "../partition/codec.hpp"
#include "../partition/cut.hpp"
#include "../transport/checkpoint.hpp"
#include "../transport/policy.hpp"
#include "../transport/wire.hpp"
#include "split_roles.hpp"
#include "split_schemes.hpp"

namespace tinylarge::workflow {

/// Settings of `splitfed_v1_deployment<…>::server::run`.
struct splitfed_server_options {
  std::uint32_t rounds = 5;
  std::uint32_t steps_per_round = 10;                ///< S: iterations every client runs per round
  std::uint32_t max_batch = 256;                     ///< largest b accepted in a smashed frame
  std::size_t min_clients = 1;                       ///< fewest complete clients that make a round
  std::chrono::milliseconds round_timeout{30000};    ///< deadline for a whole round (all its steps)
  std::chrono::milliseconds send_timeout{10000};
  std::string checkpoint_path;                       ///< empty: no checkpoints (see "Crash recovery")
  /// EPSL (`epsl_deployment`): the aggregation ratio φ ∈ [0, 1] — the server
  /// aggregates round(φ·b) rows of every client's batch (`split_scheme::epsl::aggregated_rows`,
  /// as `split_options::phi` in process); the other schemes aggregate none.
  float phi = 0.0f;
  /// EdgeSplit (`edge_split_deployment`): the clusters C — contiguous ranges of client ids,
  /// cluster c = clients c·N/C + 1 … (c+1)·N/C, as `split_options::clusters` in process
  /// (C > N: N clusters of one); the other schemes ignore it.
  std::size_t clusters = 2;
  /// Trust in the clients' example counts and device-segment updates
  /// (aggregate/policy.hpp `report_bounds`), applied before weighting.
  report_bounds bounds{};
  /// Called after each served step with (round, steps served in this round):
  /// a hook for tests (e.g. to kill the server mid-round) and progress logs.
  std::function<void(std::uint32_t round, std::uint64_t steps)> on_step;
};

/// What a SplitFedV1 server run did.
struct splitfed_server_report {
  std::uint32_t first_round = 1;                ///< 1, or the round after the checkpoint resumed from
  std::uint32_t restarts = 0;                   ///< the restart epoch this run used (0: not resumed)
  std::uint32_t rounds_completed = 0;
  std::vector<std::size_t> clients_per_round;   ///< clients averaged (VSL: segments handed over), per round run
  std::vector<double> train_loss;               ///< mean server-side loss per round run
  std::uint64_t steps_served = 0;               ///< smashed frames answered
  std::uint64_t dropped_frames = 0;             ///< stale, duplicate or unexpected frames
  std::uint64_t rejected_frames = 0;            ///< smashed frames with bad values (client excluded)
  std::uint64_t smashed_bytes = 0;              ///< payload bytes of the smashed frames answered (codec + labels)
  std::uint64_t gradient_bytes = 0;             ///< payload bytes of the gradient frames sent (codec)
  std::vector<rejection> rejected;              ///< updates the aggregators refused
};

/// Settings of `splitfed_v1_deployment<…>::client::run`.
struct splitfed_client_options {
  std::chrono::milliseconds idle_timeout{30000};  ///< longest wait for a model, a gradient or stop
  std::chrono::milliseconds send_timeout{10000};
  /// Called when the model of a new round arrives; false = leave the run
  /// (a simulated device failure; tests SIGKILL the process here).
  std::function<bool(std::uint32_t round)> on_model;
  /// Called before step t of round r is sent; false = leave the run mid-round.
  std::function<bool(std::uint32_t round, std::uint32_t step)> on_step;
  /// Called when the server restarted and the client redoes `round` from
  /// step 0 (after rolling its optimizer back to the round's start).
  std::function<void(std::uint32_t round)> on_restart;
};

/// Settings of `split_deployment<…, cut<K1, K2>, …>::cloud::run` (multi-hop).
struct split_cloud_options {
  std::size_t max_rows = 1024;                     ///< largest step the edge may send: clients × max_batch
  std::chrono::milliseconds idle_timeout{30000};   ///< longest wait for the edge's next frame
  std::chrono::milliseconds send_timeout{10000};
};

/// What a cloud run did (multi-hop).
struct split_cloud_report {
  std::uint64_t steps_served = 0;    ///< smashed frames of the edge answered
  std::uint64_t dropped_frames = 0;  ///< duplicates, stale steps, other senders, unexpected frames
  std::vector<double> train_loss;    ///< mean loss per round served (the edge does not see the loss)
};

/// How the device's wait for a gradient (`await_gradient`) ended.
enum class gradient_wait {
  received,    ///< the gradient arrived, checked
  stopped,     ///< the server said stop
  superseded,  ///< a model frame the device acts on arrived instead (left in the message)
};

/// The device's half of a step after its smashed frame went out (the
/// deployment's client, and a multi-hop edge toward the cloud): waits on
/// `net`, up to `timeout` for each frame, for the gradient of step `step` of
/// round `round` in epoch `epoch` from `server` (`split_gradient_for`);
/// frames of other senders and other frames (late duplicates, other steps)
/// are skipped. `received`: `g` holds it, checked — dtype bytes, then
/// `decode_gradient<Down>` (the codec's size for g.size() values, a payload
/// it accepts, finite values: `corrupt` / `non_finite` otherwise); `stopped`:
/// a `control`/`stop`; `superseded`: a model frame that is newer than
/// (round, epoch) (`split_model_is_newer`), left in `m`.
template <smashed_codec Down, transport_policy Transport>
status await_gradient(Transport& net, wire::message_view& m, endpoint_id server, std::uint32_t round,
                      std::uint32_t step, std::uint32_t epoch, std::span<float> g, std::chrono::milliseconds timeout,
                      gradient_wait& what) {
  for (;;) {
    TINYLARGE_TRY(net.recv(m, timeout));
    if (m.header.sender != server) continue;
    if (split_is_stop(m.header)) {
      what = gradient_wait::stopped;
      return status::success();
    }
    if (split_model_is_newer(m.header, round, epoch)) {
      what = gradient_wait::superseded;
      return status::success();
    }
    if (!split_gradient_for(m.header, round, step, epoch)) continue;
    TINYLARGE_CHECK(m.header.dtype == wire::wire_dtype::bytes, errc::corrupt,
                    "split: the gradient frame does not hold a codec message (dtype bytes)");
    TINYLARGE_TRY(decode_gradient<Down>(std::as_bytes(m.payload), g));
    what = gradient_wait::received;
    return status::success();
  }
}

/// The SplitFedV1 deployment for one model, cut and optimizer (see the file comment).
/// @tparam Model     a `sequential` model
/// @tparam Partition `cut<K>`: one cut; or `cut<K1, K2>`: multi-hop (device → edge → cloud)
/// @tparam Optimizer every party's local optimizer (`nn::sgd`, `nn::adam`)
/// @tparam Aggregation the fed server's and main server's rule (`fedavg`, …)
/// @tparam Uplink   the `smashed_codec` of the smashed activations (partition/codec.hpp)
/// @tparam Downlink the `smashed_codec` of their gradients
template <split_scheme_policy Scheme, class Model, class Partition, nn::optimizer_policy Optimizer,
          aggregation_policy Aggregation = fedavg, smashed_codec Uplink = codec::fp32, smashed_codec Downlink = codec::fp32>
struct split_deployment {
  static_assert(std::is_same_v<Scheme, split_scheme::splitfed_v1> || std::is_same_v<Scheme, split_scheme::parallel> ||
                    std::is_same_v<Scheme, split_scheme::epsl> || std::is_same_v<Scheme, split_scheme::splitfed_v2> ||
                    std::is_same_v<Scheme, split_scheme::vanilla> || std::is_same_v<Scheme, split_scheme::edge_split>,
                "tinylarge: split_deployment: this scheme has no deployment driver yet (split_scheme::splitfed_v1, "
                "split_scheme::parallel, split_scheme::epsl, split_scheme::splitfed_v2, split_scheme::vanilla and "
                "split_scheme::edge_split have; others run in process: split_learning<Traits, Scheme>)");
  /// The scheme this deployment runs.
  using scheme = Scheme;
  /// SplitFedV1: one copy of the server segment per client; PSL: one server segment for all.
  static constexpr bool server_copies = Scheme::server_copies;
  /// VSL: the device segment handed from client to client (no averaging).
  static constexpr bool hand_over = std::is_same_v<Scheme, split_scheme::vanilla>;
  /// EdgeSplit / CPSL: clusters of clients one after another, PSL within a cluster.
  static constexpr bool clustered = std::is_same_v<Scheme, split_scheme::edge_split>;
  /// VSL and EdgeSplit: the clients take turns in groups (VSL: groups of one client), each
  /// group served in lockstep; its members receive the device segment when its turn starts.
  static constexpr bool in_turns = hand_over || clustered;
  /// SplitFedV2: the clients one after another (client-id order) on the one server segment.
  static constexpr bool sequential = std::is_same_v<Scheme, split_scheme::splitfed_v2>;
  static_assert(Partition::cuts == 1 || Partition::cuts == 2,
                "tinylarge: split_deployment: one cut (device + server) or two (device + edge + cloud)");
  /// Two cuts (`cut<K1, K2>`): device → edge → cloud. `server` is then the
  /// edge (its segment is segment 1) and `cloud` runs segment 2.
  static constexpr bool multi_hop = Partition::cuts == 2;
  static_assert(!multi_hop || (!Scheme::server_copies && !std::is_same_v<Scheme, split_scheme::epsl>),
                "tinylarge: split_deployment: multi-hop chains (cut<K1, K2>) are deployed for PSL, SplitFedV2, VSL "
                "and EdgeSplit; SplitFedV1's server copies and EPSL's aggregated rows run in process (split_learning)");
  using model = Model;
  using partition = Partition;
  using device_model = typename Partition::template segment<Model, 0>;
  /// The server's segment: the whole rest of the model, or the edge's segment when `multi_hop`.
  using server_model = typename Partition::template segment<Model, 1>;
  /// The cloud's segment (`multi_hop`; else the server's).
  using cloud_model = typename Partition::template segment<Model, (multi_hop ? 2 : 1)>;
  static constexpr std::size_t cut = Partition::template cut_size<Model, 0>;
  /// Activations per sample at the edge → cloud cut (`multi_hop`; else the classes).
  static constexpr std::size_t upper_cut =
      multi_hop ? Partition::template cut_size<Model, (multi_hop ? 1 : 0)> : Model::output_size;
  static constexpr std::size_t classes = Model::output_size;
  using loss = nn::softmax_cross_entropy;
  using uplink_codec = Uplink;
  using downlink_codec = Downlink;
  static_assert(classes <= 256, "tinylarge: split_deployment: labels travel as one byte each (at most 256 classes)");
  /// Bytes of the smashed message of b rows (the frame's payload): the uplink codec's message of b·cut values + b labels.
  static constexpr std::size_t smashed_bytes(std::size_t b) noexcept { return smashed_message_bytes<Uplink>(b, cut); }
  /// Bytes of the gradient message of b rows: the downlink codec's message of b·cut values.
  static constexpr std::size_t gradient_bytes(std::size_t b) noexcept { return Downlink::max_encoded_bytes(b * cut); }
  using optimizer_state = typename Optimizer::template state<float>;
  static_assert(std::is_copy_assignable_v<optimizer_state>,
                "tinylarge: split_deployment: the client keeps a copy of its optimizer state (server restarts)");

  /// Main server + fed server (endpoint 0).
  class server {
   public:
    /// @param device_init, server_init the initial global segments
    server(const Optimizer& opt, const Aggregation& agg, std::span<const float> device_init,
           std::span<const float> server_init)
        : opt_(opt), server_opt_(opt, server_model::param_count), device_agg_(agg, device_model::param_count),
          server_agg_(agg, server_model::param_count) {
      TINYLARGE_REQUIRE(device_init.size() == device_model::param_count && server_init.size() == server_model::param_count,
                        errc::shape_mismatch, "splitfed server: initial segments of the wrong size");
      global_device_.assign(device_init.begin(), device_init.end());
      std::copy(server_init.begin(), server_init.end(), global_server_.parameters().begin());
    }

    std::span<const float> device_parameters() const noexcept { return global_device_; }
    std::span<const float> server_parameters() const noexcept { return global_server_.parameters(); }
    nn::network<server_model>& server_network() noexcept { return global_server_; }

    /// Serve the clients (endpoints 1..N of `net`) for `o.rounds` rounds (see the file comment).
    template <transport_policy Transport>
      requires(!multi_hop)
    status run(Transport& net, const splitfed_server_options& o, splitfed_server_report* report = nullptr) {
      return run_chain(net, static_cast<Transport*>(nullptr), o, report);
    }

    /// Multi-hop (`cut<K1, K2>`): the edge. It serves the devices (endpoints
    /// 1..N of `net`) as the one-cut server does, and runs its step through the
    /// cloud: `up` is endpoint 1 of a two-endpoint transport whose endpoint
    /// 0 runs `cloud::run` (see "Multi-hop" in the file comment). After the
    /// last round it stops the cloud and receives its segment
    /// (`cloud_parameters`). Checkpoints are not deployed for multi-hop chains.
    template <transport_policy Transport, transport_policy Upstream>
      requires multi_hop
    status run(Transport& net, Upstream& up, const splitfed_server_options& o,
               splitfed_server_report* report = nullptr) {
      TINYLARGE_CHECK(up.id() == 1 && up.endpoints() == 2, errc::invalid_argument,
                      "split edge: the cloud link must be endpoint 1 of a transport of 2 endpoints (the cloud is 0)");
      TINYLARGE_CHECK(o.checkpoint_path.empty(), errc::invalid_argument,
                      "split edge: checkpoints are not deployed for multi-hop chains (the cloud's segment and "
                      "optimizer state are not in the edge's checkpoint)");
      // The cloud announces itself with its segment's size before the first step (over MQTT a
      // step published before the cloud subscribed would be lost; the model frame is retained).
      wire::message_view m;
      TINYLARGE_TRY(await_cloud_segment(up, m, wire::message_type::model, o.round_timeout,
                                        "split edge: no word from the cloud before round_timeout (is it running, on this link?)"));
      const status s = run_chain(net, &up, o, report);
      wire::message_header stop;
      stop.type = wire::message_type::control;
      stop.aux = static_cast<std::uint64_t>(wire::control_command::stop);
      stop.round = o.rounds;
      const status told = up.send(server_endpoint, stop, {}, o.send_timeout);
      TINYLARGE_TRY(s);
      TINYLARGE_TRY(told);
      // The cloud answers the stop with its segment: the edge then holds the whole model.
      TINYLARGE_TRY(await_cloud_segment(up, m, wire::message_type::update, o.round_timeout,
                                        "split edge: the cloud did not send its segment after the stop before round_timeout"));
      cloud_.resize(cloud_model::param_count);
      TINYLARGE_TRY(wire::read_fp32(m, cloud_));
      bool finite = true;
      for (const float v : cloud_) finite = finite && std::isfinite(v);
      TINYLARGE_CHECK(finite, errc::non_finite, "split edge: a NaN or infinite value in the cloud's final segment");
      return status::success();
    }

    /// Multi-hop: the cloud's segment as it sent it at the end of `run` (empty before).
    std::span<const float> cloud_parameters() const noexcept
      requires multi_hop
    {
      return cloud_;
    }

   private:
    template <transport_policy Transport, class Upstream>
    status run_chain(Transport& net, Upstream* up, const splitfed_server_options& o, splitfed_server_report* report) {
      using clock = std::chrono::steady_clock;
      (void)up;  // multi-hop only
      splitfed_server_report local;
      splitfed_server_report& rep = report != nullptr ? *report : local;
      TINYLARGE_CHECK(net.id() == server_endpoint, errc::invalid_argument, "splitfed server: endpoint is not 0");
      TINYLARGE_CHECK(o.steps_per_round > 0 && o.max_batch > 0, errc::invalid_argument,
                      "splitfed server: steps_per_round and max_batch must be positive");
      TINYLARGE_CHECK(o.phi >= 0.0f && o.phi <= 1.0f, errc::invalid_argument,
                      "split server: EPSL's phi must lie in [0, 1]");
      TINYLARGE_CHECK(!clustered || o.clusters > 0, errc::invalid_argument,
                      "split server: EdgeSplit needs at least one cluster");
      const std::size_t n = net.endpoints() - 1;
      // VSL and EdgeSplit: each client's group (VSL: its own; EdgeSplit: the contiguous ranges of
      // client ids of split_scheme::edge_split), in the order the groups take their turns.
      std::vector<std::size_t> group_of(n + 1, 0);
      if constexpr (in_turns) {
        const std::size_t groups = hand_over ? n : std::min(o.clusters, n);
        for (std::size_t g = 0; g < groups; ++g)
          for (std::size_t i = g * n / groups; i < (g + 1) * n / groups; ++i) group_of[i + 1] = g;
      }
      if constexpr (server_copies)
        while (copies_.size() < n) copies_.push_back(std::make_unique<copy>(opt_));
      std::uint32_t done = 0;
      epoch_ = 0;
      if (!o.checkpoint_path.empty()) TINYLARGE_TRY(resume(o.checkpoint_path, n, done));
      rep.first_round = done + 1;
      rep.restarts = epoch_;
      rep.rounds_completed = done;
      const std::uint64_t tag = std::uint64_t{epoch_} << 32;  // the epoch in every aux of this run
      std::vector<bool> live(n + 1, true), have(n + 1, false), excluded(n + 1, false);
      std::vector<std::uint32_t> next_step(n + 1, 0);
      std::vector<std::vector<float>> updates(n + 1);
      if (grads_.size() < n + 1) grads_.resize(n + 1);
      auto& grads = grads_;
      std::vector<std::int64_t> examples(n + 1, 0);
      std::vector<float> x, dy;
      std::vector<std::uint8_t> y;
      if (gwire_.size() < n + 1) gwire_.resize(n + 1);
      // PSL: each client's smashed frame of the current step, until every expected client's is in.
      std::vector<bool> pending(n + 1, false);
      std::vector<std::size_t> pending_rows(n + 1, 0);
      std::vector<std::vector<float>> pending_x(server_copies ? 0 : n + 1);
      std::vector<std::vector<std::uint8_t>> pending_y(server_copies ? 0 : n + 1);
      std::vector<float> xcat, dcat;
      std::vector<std::uint8_t> ycat;
      std::vector<std::size_t> rows_of;  // the rows of each client of a lockstep step (EPSL)
      if (models_.size() < n + 1) models_.resize(n + 1);
      for (std::uint32_t r = done + 1; r <= o.rounds; ++r) {
        if constexpr (server_copies) {
          for (std::size_t k = 1; k <= n; ++k) {
            const auto src = global_server_.parameters();
            std::copy(src.begin(), src.end(), copies_[k - 1]->net.parameters().begin());
          }
        }
        wire::message_header h;
        h.type = wire::message_type::model;
        h.dtype = wire::wire_dtype::fp32;
        h.round = r;
        h.count = static_cast<std::uint32_t>(global_device_.size());
        h.aux = o.steps_per_round | tag;
        // VSL, EdgeSplit: no broadcast; each client receives the segment when its group's turn starts.
        if constexpr (!in_turns)
          TINYLARGE_TRY(net.broadcast(h, as_bytes_le(std::span<const float>(global_device_)), o.send_timeout));
        std::fill(have.begin(), have.end(), false);
        std::fill(excluded.begin(), excluded.end(), false);
        std::fill(next_step.begin(), next_step.end(), 0u);
        std::fill(pending.begin(), pending.end(), false);
        double loss_sum = 0.0;
        std::size_t loss_rows = 0, got = 0, live_answered = 0;
        std::uint64_t served = 0;
        const std::size_t live_count = static_cast<std::size_t>(std::count(live.begin() + 1, live.end(), true));
        // SplitFedV1: the whole round has `round_timeout`; PSL: each lockstep step (and the uploads) has it.
        auto deadline = clock::now() + o.round_timeout;
        std::uint32_t step_now = 0;  // PSL: the lockstep step being collected
        std::uint32_t hop_step = 0;  // multi-hop: the steps sent to the cloud this round
        // Sends client k its gradient (grads[k]) of step t; a client that cannot be reached sits the
        // rest of the round out.
        const auto send_gradient = [&](std::size_t k, std::uint32_t t) {
          const wire::message_header g = split_gradient_header(r, t, epoch_, encode_at_cut<Downlink>(grads[k], gwire_[k]));
          const std::span<const std::uint8_t> gp(reinterpret_cast<const std::uint8_t*>(gwire_[k].data()), g.count);
          if (!net.send(static_cast<endpoint_id>(k), g, gp, o.send_timeout).ok()) {
            excluded[k] = true;
            if (live[k]) ++live_answered;
            return false;
          }
          rep.gradient_bytes += g.count;
          return true;
        };
        // PSL: the current step's concatenated batch through the global server segment (the engine's
        // `step` of every client at once), then each client's rows of the gradient, scaled to the
        // gradient of that client's own mean loss.
        // SplitFedV2 (`sequential`): the client whose turn it is — the lowest id that may still
        // send a step this round (0: none).
        const auto turn = [&]() -> std::size_t {
          for (std::size_t k = 1; k <= n; ++k)
            if (!excluded[k] && next_step[k] < o.steps_per_round && (live[k] || pending[k])) return k;
          return 0;
        };
        // VSL and EdgeSplit: the group whose turn it is (`none`: between turns). A client is
        // outstanding while it may still send a frame this round.
        constexpr std::size_t none = static_cast<std::size_t>(-1);
        std::size_t active = none, handed = 0;  // handed: segments taken back at the turns' ends
        const auto member = [&](std::size_t k) { return !in_turns || group_of[k] == active; };
        const auto outstanding = [&](std::size_t k) { return live[k] && !excluded[k] && !have[k]; };
        // The next group's turn: each outstanding member receives the global device segment (its
        // own copy of it: the buffer stays unchanged until the client's next turn); a member that
        // cannot be reached sits the round out. false: every group had its turn.
        const auto open_group = [&] {
          for (std::size_t k = 1; k <= n && active == none; ++k)
            if (outstanding(k)) active = group_of[k];
          if (active == none) return false;
          for (std::size_t k = 1; k <= n; ++k) {
            if (group_of[k] != active || !outstanding(k)) continue;
            models_[k] = global_device_;
            if (!net.send(static_cast<endpoint_id>(k), h, as_bytes_le(std::span<const float>(models_[k])), o.send_timeout)
                     .ok())
              excluded[k] = true;
          }
          step_now = 0;
          deadline = clock::now() + o.round_timeout;
          return true;
        };
        const auto group_done = [&] {
          for (std::size_t k = 1; k <= n; ++k)
            if (member(k) && outstanding(k)) return false;
          return true;
        };
        // The end of a group's turn: VSL hands the client's segment over (a copy, the engine's
        // `hand_over_upload`; one with a NaN or Inf is refused and the previous one stays);
        // EdgeSplit averages the cluster's segments (`Traits::aggregation`, the engine's `collect`).
        const auto close_group = [&]() -> status {
          if constexpr (hand_over) {
            const std::size_t k = active + 1;
            if (have[k]) {
              bool finite = true;
              for (const float v : updates[k]) finite = finite && std::isfinite(v);
              if (finite) {
                global_device_ = updates[k];
                ++handed;
              } else {
                rep.rejected.push_back({k, rejection_reason::non_finite});
              }
            }
          } else if constexpr (clustered) {
            std::vector<client_result<fp32_update>> dev;
            for (std::size_t k = 1; k <= n; ++k)
              if (member(k) && have[k]) dev.push_back({k, fp32_update{updates[k]}, examples[k]});
            if (!dev.empty()) {
              const round_report rd = device_agg_.round(std::span<float>(global_device_), dev);
              for (const auto& rj : rd.rejected) rep.rejected.push_back(rj);
              TINYLARGE_TRY(rd.outcome);
              handed += rd.accepted.size();
            }
          }
          active = none;
          return status::success();
        };
        const auto serve_lockstep = [&]() -> status {
          const std::size_t only = sequential ? turn() : 0;
          const auto in_step = [&](std::size_t k) { return pending[k] && (!sequential || k == only) && member(k); };
          std::size_t rows = 0, group = 0;
          for (std::size_t k = 1; k <= n; ++k)
            if (in_step(k)) rows += pending_rows[k], ++group;
          if (group == 0) return status::success();
          xcat.resize(rows * cut);
          ycat.resize(rows);
          std::size_t off = 0;
          for (std::size_t k = 1; k <= n; ++k) {
            if (!in_step(k)) continue;
            std::copy_n(pending_x[k].data(), pending_rows[k] * cut, xcat.data() + off * cut);
            std::copy_n(pending_y[k].data(), pending_rows[k], ycat.data() + off);
            off += pending_rows[k];
          }
          dy.resize(rows * upper_cut);  // ∂loss/∂outputs of the server's segment (multi-hop: the edge's)
          dcat.resize(rows * cut);
          segment_chain<nn::network<server_model>, optimizer_state> chain{global_server_, server_opt_};
          // EPSL: m = round(φ·b) rows of every client's batch aggregated (b: the
          // smallest batch of the step; 0 for PSL, SplitFedV2 and a lone client).
          rows_of.clear();
          for (std::size_t k = 1; k <= n; ++k)
            if (in_step(k)) rows_of.push_back(pending_rows[k]);
          const std::size_t m = scheme_.aggregated_rows(o, group, *std::min_element(rows_of.begin(), rows_of.end()));
          server_step_result sr;
          if constexpr (multi_hop) {
            // The edge: its segment's outputs and the labels go to the cloud, ∂loss/∂outputs comes back.
            next_hop<Upstream> head{*up, upwire_, r, epoch_, hop_step, o.send_timeout, o.round_timeout};
            sr = server_step(chain, head, xcat.data(), ycat.data(), rows, dy.data(), dcat.data());
            TINYLARGE_TRY(sr.outcome);
          } else {
            sr = m == 0 ? server_step(chain, xcat.data(), ycat.data(), rows, classes, dy.data(), dcat.data())
                        : server_step_aggregated(chain, xcat.data(), ycat.data(), rows_of, m, cut, classes, epsl_,
                                                 dcat.data());
          }
          loss_sum += sr.loss * static_cast<double>(rows);
          loss_rows += rows;
          off = 0;
          for (std::size_t k = 1; k <= n; ++k) {
            if (!in_step(k)) continue;
            const std::size_t b = pending_rows[k];
            grads[k].assign(dcat.begin() + static_cast<std::ptrdiff_t>(off * cut),
                            dcat.begin() + static_cast<std::ptrdiff_t>((off + b) * cut));
            off += b;
            if (group != 1 && m == 0) {  // (server_step_aggregated scaled its rows itself)
              const float scale = static_cast<float>(rows) / static_cast<float>(b);  // g when every b is equal
              for (float& v : grads[k]) v *= scale;
            }
            pending[k] = false;
            if (!send_gradient(k, next_step[k])) continue;
            ++next_step[k];
            ++rep.steps_served;
            if (o.on_step) o.on_step(r, ++served);
          }
          ++step_now;
          deadline = clock::now() + o.round_timeout;
          return status::success();
        };
        // PSL: is every client the step waits for (live, not excluded, not done) in?
        const auto step_complete = [&] {
          if constexpr (sequential) {
            const std::size_t k = turn();
            return k != 0 && pending[k];
          }
          bool any = false;
          for (std::size_t k = 1; k <= n; ++k) {
            if (!member(k)) continue;  // VSL, EdgeSplit: another group's client
            if (pending[k]) any = true;
            else if (live[k] && !excluded[k] && !have[k] && next_step[k] < o.steps_per_round) return false;
          }
          return any;
        };
        for (;;) {
          if constexpr (in_turns) {
            if (active != none && group_done()) TINYLARGE_TRY(close_group());
            if (active == none && !open_group()) break;  // every group had its turn
            if (group_done()) continue;                  // none of its members could be reached
          } else if (live_answered >= live_count) {
            break;
          }
          wire::message_view m;
          const status s = recv_before(net, m, deadline);
          if (s.code == errc::timed_out) {
            if constexpr (!server_copies) {
              if constexpr (sequential) {
                // SplitFedV2: the client whose turn it is missed the deadline; the next one goes on.
                const std::size_t k = turn();
                if (k != 0 && !pending[k]) {
                  excluded[k] = true;
                  if (live[k]) ++live_answered;
                  deadline = clock::now() + o.round_timeout;
                  while (step_complete()) TINYLARGE_TRY(serve_lockstep());
                  continue;
                }
              }
              // PSL: the clients the step still waits for missed the deadline; the others go on without them.
              if (!sequential && std::find(pending.begin() + 1, pending.end(), true) != pending.end()) {
                for (std::size_t k = 1; k <= n; ++k)
                  if (member(k) && !pending[k] && live[k] && !excluded[k] && !have[k] && next_step[k] < o.steps_per_round) {
                    excluded[k] = true;
                    ++live_answered;
                  }
                TINYLARGE_TRY(serve_lockstep());
                continue;
              }
              if constexpr (in_turns) {
                // VSL, EdgeSplit: nothing of the turn's step in by the deadline (or an update
                // missing): the group's outstanding members sit the round out; the next group goes on.
                for (std::size_t k = 1; k <= n; ++k)
                  if (member(k) && outstanding(k)) excluded[k] = true;
                continue;
              }
            }
            break;
          }
          TINYLARGE_TRY(s);
          const auto k = m.header.sender;
          const wire::wire_dtype want = m.header.type == wire::message_type::smashed ? wire::wire_dtype::bytes
                                                                                       : wire::wire_dtype::fp32;
          if (k == 0 || k > n || m.header.round != r || have[k] || excluded[k] || m.header.dtype != want) {
            ++rep.dropped_frames;
            continue;
          }
          if (m.header.type == wire::message_type::smashed) {
            bool queued = false;
            if constexpr (!server_copies) queued = pending[k];
            if (m.header.aux != (next_step[k] | tag) || next_step[k] >= o.steps_per_round || queued) {
              ++rep.dropped_frames;  // a duplicate (QoS 1), an out-of-order step, another epoch's
              continue;
            }
            std::size_t b = 0;
            const status checked =
                decode_smashed<Uplink>(std::as_bytes(m.payload), cut, classes, o.max_batch, b, x, y);
            if (checked.code == errc::shape_mismatch) {
              ++rep.dropped_frames;  // the wrong size: not a step of this client
              continue;
            }
            if (!checked.ok()) {
              ++rep.rejected_frames;  // a bad codec payload, NaN/Inf activations or bad labels: the client sits the round out
              excluded[k] = true;
              if (live[k]) ++live_answered;
              if constexpr (!server_copies)
                while (step_complete()) TINYLARGE_TRY(serve_lockstep());
              continue;
            }
            if constexpr (!server_copies) {
              // PSL: wait for the step's other clients; a client the step does not wait for
              // (absent last round) joins it if its frame is here before the step is served.
              // SplitFedV2: wait for this client's turn (its step t is the next one it owes).
              if (!sequential && next_step[k] != step_now) {
                ++rep.dropped_frames;
                continue;
              }
              pending[k] = true;
              pending_rows[k] = b;
              rep.smashed_bytes += m.payload.size();
              pending_x[k].assign(x.begin(), x.begin() + static_cast<std::ptrdiff_t>(b * cut));
              pending_y[k].assign(y.begin(), y.begin() + static_cast<std::ptrdiff_t>(b));
              while (step_complete()) TINYLARGE_TRY(serve_lockstep());
              continue;
            }
            auto& c = *copies_[k - 1];  // SplitFedV1: this client's copy, at once
            dy.resize(b * classes);
            grads[k].resize(b * cut);
            segment_chain<nn::network<server_model>, optimizer_state> chain{c.net, c.opt};
            const server_step_result sr = server_step(chain, x.data(), y.data(), b, classes, dy.data(), grads[k].data());
            loss_sum += sr.loss * static_cast<double>(b);
            loss_rows += b;
            const wire::message_header g =
                split_gradient_header(r, next_step[k], epoch_, encode_at_cut<Downlink>(grads[k], gwire_[k]));
            const std::span<const std::uint8_t> gp(reinterpret_cast<const std::uint8_t*>(gwire_[k].data()), g.count);
            if (!net.send(k, g, gp, o.send_timeout).ok()) {
              excluded[k] = true;  // cannot reach the client: it sits the round out, the server goes on
              if (live[k]) ++live_answered;
              continue;
            }
            ++next_step[k];
            ++rep.steps_served;
            rep.smashed_bytes += m.payload.size();
            rep.gradient_bytes += g.count;
            if (o.on_step) o.on_step(r, ++served);
          } else if (m.header.type == wire::message_type::update && next_step[k] == o.steps_per_round &&
                     m.header.count == device_model::param_count && (m.header.aux >> 32) == epoch_ &&
                     (m.header.aux & 0xFFFFFFFFu) >= 1 && (m.header.aux & 0xFFFFFFFFu) <= 0x7FFFFFFFu) {
            updates[k].resize(device_model::param_count);
            TINYLARGE_TRY(wire::read_fp32(m, updates[k]));
            examples[k] = bound_report(o.bounds, std::span<float>(updates[k]), std::span<const float>(global_device_),
                                       static_cast<std::int64_t>(m.header.aux & 0xFFFFFFFFu))
                              .examples;
            have[k] = true;
            ++got;
            if (live[k]) ++live_answered;
            live[k] = true;
          } else {
            ++rep.dropped_frames;
          }
        }
        for (std::size_t k = 1; k <= n; ++k)
          if (!have[k] && !excluded[k]) live[k] = false;  // missed the deadline: do not wait for it again
        const std::size_t completed = in_turns ? handed : got;
        if (completed < o.min_clients || completed == 0)
          return {errc::timed_out, "splitfed round: fewer clients completed the round before the deadline than min_clients"};
        if constexpr (in_turns) {
          // VSL, EdgeSplit: the segments were taken back at the end of each turn.
          rep.clients_per_round.push_back(handed);
        } else {
          // Fed server: the device segments; main server: the copies of the same clients.
          // The server copies are averaged over the clients whose segment the fed
          // server accepted (a NaN update drops the client's copy as well).
          std::vector<client_result<fp32_update>> dev, srv;
          for (std::size_t k = 1; k <= n; ++k)
            if (have[k]) dev.push_back({k, fp32_update{updates[k]}, examples[k]});
          const round_report rd = device_agg_.round(std::span<float>(global_device_), dev);
          for (const auto& rj : rd.rejected) rep.rejected.push_back(rj);
          TINYLARGE_TRY(rd.outcome);
          if constexpr (server_copies) {
            for (const std::uint64_t k : rd.accepted)  // in client-id order, as `dev`
              srv.push_back({k, fp32_update{copies_[k - 1]->net.parameters()}, examples[k]});
            const round_report rs = server_agg_.round(std::span<float>(global_server_.parameters()), srv);
            for (const auto& rj : rs.rejected) rep.rejected.push_back(rj);
            TINYLARGE_TRY(rs.outcome);
          }  // PSL: the steps trained the global server segment itself
          rep.clients_per_round.push_back(rd.accepted.size());
        }
        rep.train_loss.push_back(loss_rows > 0 ? loss_sum / static_cast<double>(loss_rows) : 0.0);
        rep.rounds_completed = r;
        if (!o.checkpoint_path.empty()) TINYLARGE_TRY(save(o.checkpoint_path, r, n));
      }
      wire::message_header stop;
      stop.type = wire::message_type::control;
      stop.aux = static_cast<std::uint64_t>(wire::control_command::stop);
      stop.round = o.rounds;
      return net.broadcast(stop, {}, o.send_timeout);
    }

   private:
    struct copy {
      nn::network<server_model> net;
      optimizer_state opt;
      explicit copy(const Optimizer& o) : opt(o, server_model::param_count) {}
    };

    /// Load the checkpoint at `path` if there is one (all or nothing: the
    /// state changes only when every part fits), take the next restart epoch,
    /// and save it at once (a fresh run: round 0, epoch 0).
    status resume(const std::string& path, std::size_t n, std::uint32_t& done) {
      if constexpr (!optimizer_checkpointable<optimizer_state>) {
        (void)path;
        (void)n;
        (void)done;
        return {errc::invalid_argument,
                "splitfed server: checkpoints need an optimizer whose state can be saved (nn::sgd, nn::adam)"};
      } else {
        split_checkpoint c;
        bool found = false;
        TINYLARGE_TRY(read_split_checkpoint(path, c, found));
        if (found) {
          TINYLARGE_CHECK(c.device.size() == device_model::param_count && c.server.size() == server_model::param_count,
                          errc::shape_mismatch,
                          "splitfed server: the checkpoint holds segments of other sizes (another model or cut)");
          TINYLARGE_CHECK(c.copies.size() == (server_copies ? n : 1), errc::shape_mismatch,
                          "split server: the checkpoint was written for another number of clients or another scheme");
          TINYLARGE_CHECK(c.restarts < 0xFFFFFFFFu, errc::corrupt, "splitfed server: the checkpoint's restart count is exhausted");
          auto dev_state = device_agg_.state();
          auto srv_state = server_agg_.state();
          TINYLARGE_TRY(restore_state(dev_state, c.device_state, c.device_state_steps));
          TINYLARGE_TRY(restore_state(srv_state, c.server_state, c.server_state_steps));
          std::vector<optimizer_state> opts;
          opts.reserve(c.copies.size());
          for (std::size_t k = 0; k < c.copies.size(); ++k) {
            opts.push_back(server_copies ? copies_[k]->opt : server_opt_);
            TINYLARGE_TRY(restore_optimizer(opts.back(), c.copies[k].vectors, c.copies[k].steps));
          }
          // Everything fits: commit.
          global_device_ = c.device;
          std::copy(c.server.begin(), c.server.end(), global_server_.parameters().begin());
          device_agg_.state() = std::move(dev_state);
          server_agg_.state() = std::move(srv_state);
          if constexpr (server_copies)
            for (std::size_t k = 0; k < n; ++k) copies_[k]->opt = opts[k];
          else
            server_opt_ = opts[0];
          epoch_ = c.restarts + 1;
          done = c.rounds_completed;
        }
        return save(path, done, n);
      }
    }

    /// Write the checkpoint of `rounds` completed rounds (atomically); a
    /// failed write is a status, not an exception.
    status save(const std::string& path, std::uint32_t rounds, std::size_t n) {
      if constexpr (optimizer_checkpointable<optimizer_state>) {
        split_checkpoint c;
        c.rounds_completed = rounds;
        c.restarts = epoch_;
        c.device = global_device_;
        const auto srv = global_server_.parameters();
        c.server.assign(srv.begin(), srv.end());
        checkpoint_state(device_agg_.state(), c.device_state, c.device_state_steps);
        checkpoint_state(server_agg_.state(), c.server_state, c.server_state_steps);
        c.copies.resize(server_copies ? n : 1);  // PSL: the one server segment's optimizer
        for (std::size_t k = 0; k < c.copies.size(); ++k)
          checkpoint_optimizer(server_copies ? copies_[k]->opt : server_opt_, c.copies[k].vectors, c.copies[k].steps);
        return tinylarge::detail::save_checkpoint_status([&] { save_split_checkpoint(path, c); });
      } else {
        (void)path;
        (void)rounds;
        (void)n;
        return status::success();
      }
    }

    Scheme scheme_{};
    std::vector<std::vector<float>> models_;  ///< VSL, EdgeSplit: the segment sent to each client (zero-copy: outlives `run`)
    aggregated_step_buffers epsl_;  ///< EPSL: the reduced batch of a step (server_step_aggregated)
    Optimizer opt_;
    optimizer_state server_opt_;  ///< PSL: the optimizer of the one server segment
    std::vector<float> global_device_;
    nn::network<server_model> global_server_;
    aggregator<Aggregation> device_agg_, server_agg_;
    std::vector<std::unique_ptr<copy>> copies_;
    std::vector<std::vector<float>> grads_;       ///< one gradient buffer per client
    std::vector<std::vector<std::byte>> gwire_;   ///< its encoded message (zero-copy: outlives `run`)
    std::uint32_t epoch_ = 0;                ///< restart epoch of the current run
    std::vector<std::byte> upwire_;          ///< multi-hop: the step sent to the cloud (zero-copy: until its gradient came back)
    std::vector<float> cloud_;               ///< multi-hop: the cloud's segment, received after the stop

    /// Multi-hop: waits on `up` up to `timeout` (`silent` when it passes) for
    /// the cloud's frame of type `t` — its hello (`model`) or its final
    /// segment (`update`) —, left in `m`: fp32 values of the cloud segment's
    /// size, else `shape_mismatch` (a cloud of another model or cut).
    template <class Upstream>
    static status await_cloud_segment(Upstream& up, wire::message_view& m, wire::message_type t,
                                      std::chrono::milliseconds timeout, const char* silent) {
      const auto deadline = std::chrono::steady_clock::now() + timeout;
      for (;;) {
        const status got = recv_before(up, m, deadline);
        TINYLARGE_CHECK(got.code != errc::timed_out, errc::timed_out, silent);
        TINYLARGE_TRY(got);
        if (m.header.sender != server_endpoint || m.header.type != t) continue;
        TINYLARGE_CHECK(m.header.dtype == wire::wire_dtype::fp32 && m.header.count == cloud_model::param_count,
                        errc::shape_mismatch, "split edge: the cloud's segment has another size (another model or cut)");
        return status::success();
      }
    }

    /// Multi-hop: the edge's head (`split_server_head`). The edge is the
    /// cloud's device: its segment's outputs and the labels go up as a
    /// smashed frame {round r, aux = the round's u-th step sent | e≪32,
    /// Up(rows·upper_cut) + rows labels} (`encode_smashed`), and the gradient
    /// the cloud answers comes back through `await_gradient` — the client's
    /// own checks — as ∂loss/∂outputs.
    template <class Upstream>
    struct next_hop {
      Upstream& net;
      std::vector<std::byte>& wire;
      std::uint32_t round, epoch;
      std::uint32_t& step;
      std::chrono::milliseconds send_timeout, timeout;
      status operator()(const float* out, const std::uint8_t* labels, std::size_t rows, float* dy, double& loss) {
        loss = std::numeric_limits<double>::quiet_NaN();  // the cloud computes it
        const wire::message_header h =
            split_smashed_header(round, step, epoch, encode_smashed<Uplink>({out, rows * upper_cut}, labels, rows, wire));
        const std::span<const std::uint8_t> payload(reinterpret_cast<const std::uint8_t*>(wire.data()), h.count);
        TINYLARGE_TRY(net.send(server_endpoint, h, payload, send_timeout));
        wire::message_view m;
        gradient_wait what = gradient_wait::received;
        const status got = await_gradient<Downlink>(net, m, server_endpoint, round, step, epoch,
                                                    std::span<float>(dy, rows * upper_cut), timeout, what);
        TINYLARGE_CHECK(got.code != errc::timed_out, errc::timed_out,
                        "split edge: the cloud did not answer a step before round_timeout");
        TINYLARGE_TRY(got);
        TINYLARGE_CHECK(what == gradient_wait::received, errc::corrupt,
                        "split edge: the cloud sent a stop or a model frame instead of a step's gradient");
        ++step;
        return status::success();
      }
    };
  };

  /// Fills batch `step` of `round` — b inputs (b · Model::input_size floats)
  /// and b labels — and returns b (1 ≤ b ≤ the capacity given to the client).
  /// After a server restart the client asks again for the round's batches
  /// from step 0: the same (round, step) must give the same batch.
  using batch_fn = std::function<std::size_t(std::uint32_t round, std::uint32_t step, float* x, std::uint8_t* y)>;

  /// A client (endpoints 1..N): its device segment and optimizer state
  /// persist across rounds.
  class client {
   public:
    /// @param examples  the local example count (the aggregation weight)
    /// @param max_batch capacity of a batch (≤ the server's max_batch)
    client(const Optimizer& opt, std::int64_t examples, std::size_t max_batch)
        : opt_(opt, device_model::param_count), examples_(examples), max_batch_(max_batch) {
      TINYLARGE_REQUIRE(examples > 0 && examples <= 0x7FFFFFFF && max_batch > 0, errc::invalid_argument,
                        "splitfed client: examples must be in [1, 2^31 - 1] and max_batch positive");
    }
    nn::network<device_model>& network() noexcept { return net_; }

    /// Run until the server says stop. @return success on stop, `timed_out`
    /// when the server went silent, `corrupt` on a malformed model or gradient.
    /// A server restart (a model frame of the current round with a greater
    /// epoch) makes the client redo the round: see "Crash recovery".
    template <transport_policy Transport>
    status run(Transport& net, const batch_fn& next_batch, const splitfed_client_options& o = {}) {
      std::uint32_t round = 0, epoch = 0;  // the (round, epoch) the client is in; round 0: none yet
      std::vector<float> x(max_batch_ * Model::input_size), grad;
      std::vector<std::uint8_t> y(max_batch_);
      optimizer_state round_start = opt_;  // the optimizer state when `round` began
      // A model frame the client acts on: a later round, or the same round from a restarted server.
      const auto newer = [&](const wire::message_view& f) { return split_model_is_newer(f.header, round, epoch); };
      wire::message_view m;
      bool pending = false;  // m holds a model frame that arrived while waiting for a gradient
      for (;;) {
        if (!pending) TINYLARGE_TRY(net.recv(m, o.idle_timeout));
        pending = false;
        if (m.header.sender != server_endpoint) continue;
        if (split_is_stop(m.header)) return status::success();
        if (!newer(m)) continue;  // a duplicate (QoS 1) of the current model, an older one, not a model
        TINYLARGE_CHECK(m.header.dtype == wire::wire_dtype::fp32 && m.header.count == device_model::param_count,
                        errc::corrupt, "splitfed client: the model frame does not hold this device segment");
        const std::uint32_t r = m.header.round;
        const std::uint32_t e = split_epoch(m.header);
        const std::uint32_t steps = split_model_steps(m.header);
        if (r == round) {  // the server restarted: back to the optimizer state of the round's start
          opt_ = round_start;
          if (o.on_restart) o.on_restart(r);
        } else {
          if (o.on_model && !o.on_model(r)) return status::success();
          round_start = opt_;
        }
        round = r;
        epoch = e;
        TINYLARGE_TRY(wire::read_fp32(m, net_.parameters()));
        bool abandoned = false;
        for (std::uint32_t t = 0; t < steps && !abandoned; ++t) {
          if (o.on_step && !o.on_step(r, t)) return status::success();
          const std::size_t b = next_batch(r, t, x.data(), y.data());
          TINYLARGE_CHECK(b >= 1 && b <= max_batch_, errc::invalid_argument,
                          "splitfed client: the batch function returned a size outside [1, max_batch]");
          const float* act = device_forward(net_, x.data(), b);
          const wire::message_header h =
              split_smashed_header(r, t, e, encode_smashed<Uplink>({act, b * cut}, y.data(), b, up_));
          const std::span<const std::uint8_t> payload(reinterpret_cast<const std::uint8_t*>(up_.data()), h.count);
          TINYLARGE_TRY(net.send(server_endpoint, h, payload, o.send_timeout));
          // Wait for the gradient of this step; a newer model means the server moved on without
          // us, or restarted.
          grad.resize(b * cut);
          gradient_wait what = gradient_wait::received;
          TINYLARGE_TRY(await_gradient<Downlink>(net, m, server_endpoint, r, t, e, grad, o.idle_timeout, what));
          if (what == gradient_wait::stopped) return status::success();
          if (what == gradient_wait::superseded) {
            pending = true;
            abandoned = true;
            break;
          }
          device_backward(net_, grad.data(), [this](auto& n) { opt_.step(n.parameters().data(), n.gradients().data()); });
        }
        if (abandoned) continue;
        const wire::message_header u = split_update_header(r, e, examples_, device_model::param_count);
        TINYLARGE_TRY(net.send(server_endpoint, u, as_bytes_le(std::span<const float>(net_.parameters())),
                               o.send_timeout));
      }
    }

   private:
    nn::network<device_model> net_;
    optimizer_state opt_;
    std::vector<std::byte> up_;  ///< the smashed message (zero-copy: unchanged until its gradient came back)
    std::int64_t examples_;
    std::size_t max_batch_;
  };

  /// Multi-hop (`cut<K1, K2>`): the cloud, endpoint 0 of its link with the
  /// edge (endpoint 1). The edge is its one client: each smashed frame of the
  /// edge (a step later than the last one served: QoS 1 duplicates and stale
  /// steps are dropped) goes through `decode_smashed` and `server_step` on the
  /// cloud's segment — the one-cut server's role functions — and its gradient
  /// is sent back with the frame's round and `aux`. A frame the checks refuse
  /// (not the codec's size for 1 … max_rows rows, a payload the codec refuses,
  /// a NaN / Inf activation, a label outside [0, classes)) stops the cloud
  /// with that error. It starts with a `model` frame {round 0, fp32 payload =
  /// its initial segment} (broadcast: retained over MQTT), by which the edge
  /// knows it is there and checks its size; a `control`/`stop` from the edge
  /// ends the run: the cloud answers it with its segment (`update` {round of
  /// the stop, fp32 payload}).
  class cloud {
   public:
    /// @param init the initial cloud segment (segment 2 of the whole model)
    cloud(const Optimizer& opt, std::span<const float> init) : opt_(opt, cloud_model::param_count) {
      static_assert(multi_hop, "tinylarge: split_deployment::cloud needs two cuts (cut<K1, K2>)");
      TINYLARGE_REQUIRE(init.size() == cloud_model::param_count, errc::shape_mismatch,
                        "split cloud: initial segment of the wrong size");
      std::copy(init.begin(), init.end(), net_.parameters().begin());
    }
    std::span<const float> parameters() const noexcept { return net_.parameters(); }

    /// Serve the edge until it says stop (see the class comment). @return
    /// success after the stop was answered; `timed_out` when the edge went
    /// silent for `idle_timeout`; the refusal of a bad frame.
    template <transport_policy Transport>
    status run(Transport& net, const split_cloud_options& o, split_cloud_report* report = nullptr) {
      split_cloud_report local;
      split_cloud_report& rep = report != nullptr ? *report : local;
      TINYLARGE_CHECK(net.id() == server_endpoint && net.endpoints() == 2, errc::invalid_argument,
                      "split cloud: the cloud must be endpoint 0 of a transport of 2 endpoints (the edge is 1)");
      TINYLARGE_CHECK(o.max_rows > 0, errc::invalid_argument, "split cloud: max_rows must be positive");
      constexpr endpoint_id edge = 1;
      // Hello: the segment's size, for the edge to check (retained over MQTT: the edge may come later).
      wire::message_header hello;
      hello.type = wire::message_type::model;
      hello.dtype = wire::wire_dtype::fp32;
      hello.count = static_cast<std::uint32_t>(cloud_model::param_count);
      hello_ = std::vector<float>(net_.parameters().begin(), net_.parameters().end());
      TINYLARGE_TRY(net.broadcast(hello, as_bytes_le(std::span<const float>(hello_)), o.send_timeout));
      segment_chain<nn::network<cloud_model>, optimizer_state> chain{net_, opt_};
      std::uint32_t last_round = 0;
      std::uint64_t last_aux = 0;
      bool served = false;
      double loss_sum = 0.0;
      std::size_t loss_rows = 0;
      const auto close_round = [&] {
        if (loss_rows > 0) rep.train_loss.push_back(loss_sum / static_cast<double>(loss_rows));
        loss_sum = 0.0;
        loss_rows = 0;
      };
      for (;;) {
        wire::message_view m;
        TINYLARGE_TRY(net.recv(m, o.idle_timeout));
        if (m.header.sender != edge) {
          ++rep.dropped_frames;
          continue;
        }
        if (split_is_stop(m.header)) {
          close_round();
          wire::message_header u;
          u.type = wire::message_type::update;
          u.dtype = wire::wire_dtype::fp32;
          u.round = m.header.round;
          u.count = static_cast<std::uint32_t>(cloud_model::param_count);
          return net.send(edge, u, as_bytes_le(std::span<const float>(net_.parameters())), o.send_timeout);
        }
        const bool later = !served || m.header.round > last_round ||
                           (m.header.round == last_round && m.header.aux > last_aux);
        if (m.header.type != wire::message_type::smashed || m.header.dtype != wire::wire_dtype::bytes || !later) {
          ++rep.dropped_frames;  // a duplicate (QoS 1), a stale step, not a step
          continue;
        }
        std::size_t b = 0;
        TINYLARGE_TRY(decode_smashed<Uplink>(std::as_bytes(m.payload), upper_cut, classes, o.max_rows, b, x_, y_));
        if (served && m.header.round != last_round) close_round();
        dy_.resize(b * classes);
        dx_.resize(b * upper_cut);
        const server_step_result sr = server_step(chain, x_.data(), y_.data(), b, classes, dy_.data(), dx_.data());
        loss_sum += sr.loss * static_cast<double>(b);
        loss_rows += b;
        const wire::message_header g =
            split_gradient_header(m.header.round, static_cast<std::uint32_t>(m.header.aux & 0xFFFFFFFFu),
                                  static_cast<std::uint32_t>(m.header.aux >> 32), encode_at_cut<Downlink>(dx_, gwire_));
        served = true;
        last_round = m.header.round;
        last_aux = m.header.aux;
        TINYLARGE_TRY(net.send(edge, g, {reinterpret_cast<const std::uint8_t*>(gwire_.data()), g.count}, o.send_timeout));
        ++rep.steps_served;
      }
    }

   private:
    nn::network<cloud_model> net_;
    optimizer_state opt_;
    std::vector<float> x_, dy_, dx_;
    std::vector<std::uint8_t> y_;
    std::vector<std::byte> gwire_;  ///< the gradient sent (zero-copy: unchanged until the edge's next step)
    std::vector<float> hello_;      ///< the initial segment announced (zero-copy: outlives `run`)
  };
};

/// SplitFedV1 (Thapa et al. 2022) over the transports: one copy of the server segment per client.
template <class Model, class Partition, nn::optimizer_policy Optimizer, aggregation_policy Aggregation = fedavg,
          smashed_codec Uplink = codec::fp32, smashed_codec Downlink = codec::fp32>
using splitfed_v1_deployment = split_deployment<split_scheme::splitfed_v1, Model, Partition, Optimizer, Aggregation, Uplink, Downlink>;

/// Parallel split learning (PSL, Jeon & Kim 2020) over the transports: every
/// client's step t in one concatenated batch through the one server segment
/// (lockstep), the client segments averaged at the end of each round
/// (`split_options::sync_every` = 0).
template <class Model, class Partition, nn::optimizer_policy Optimizer, aggregation_policy Aggregation = fedavg,
          smashed_codec Uplink = codec::fp32, smashed_codec Downlink = codec::fp32>
using psl_deployment = split_deployment<split_scheme::parallel, Model, Partition, Optimizer, Aggregation, Uplink, Downlink>;

/// Vanilla split learning (VSL, Vepakomma et al. 2018) over the transports:
/// the clients one after another in client-id order on the one server
/// segment, the device segment handed from client to client (no averaging).
template <class Model, class Partition, nn::optimizer_policy Optimizer, aggregation_policy Aggregation = fedavg,
          smashed_codec Uplink = codec::fp32, smashed_codec Downlink = codec::fp32>
using vsl_deployment = split_deployment<split_scheme::vanilla, Model, Partition, Optimizer, Aggregation, Uplink, Downlink>;

/// EdgeSplit / cluster-based PSL (CPSL, Wu et al. 2023) over the transports: the
/// clusters of `splitfed_server_options::clusters` (contiguous ranges of client
/// ids) one after another, PSL's lockstep within a cluster, the cluster's device
/// segments averaged at the end of its turn and handed to the next cluster.
template <class Model, class Partition, nn::optimizer_policy Optimizer, aggregation_policy Aggregation = fedavg,
          smashed_codec Uplink = codec::fp32, smashed_codec Downlink = codec::fp32>
using edge_split_deployment =
    split_deployment<split_scheme::edge_split, Model, Partition, Optimizer, Aggregation, Uplink, Downlink>;

/// EPSL (Lin et al. 2023) over the transports: PSL's lockstep whose server
/// aggregates the last-layer gradients of round(φ·b) rows of every client's
/// batch (`splitfed_server_options::phi`; 0: PSL).
template <class Model, class Partition, nn::optimizer_policy Optimizer, aggregation_policy Aggregation = fedavg,
          smashed_codec Uplink = codec::fp32, smashed_codec Downlink = codec::fp32>
using epsl_deployment = split_deployment<split_scheme::epsl, Model, Partition, Optimizer, Aggregation, Uplink, Downlink>;

/// SplitFedV2 (Thapa et al. 2022) over the transports: the clients one after
/// another in client-id order on the one server segment (each its S steps),
/// the client segments averaged at the end of the round.
template <class Model, class Partition, nn::optimizer_policy Optimizer, aggregation_policy Aggregation = fedavg,
          smashed_codec Uplink = codec::fp32, smashed_codec Downlink = codec::fp32>
using splitfed_v2_deployment =
    split_deployment<split_scheme::splitfed_v2, Model, Partition, Optimizer, Aggregation, Uplink, Downlink>;

}  // namespace tinylarge::workflow
