/// @file workflow/split_roles.hpp
/// @brief Split learning written once, as the programs of its two roles at a
///        cut: the **device** (forward its segment, hand the smashed data on,
///        back-propagate the gradient that comes back and step) and the
///        **server** (check the smashed data, run its segment chain forward,
///        the loss, backward, step, and return ∂loss/∂smashed). Drivers run
///        them: `split_learning<Traits, Scheme>` (workflow/split_engine.hpp)
///        in one process, zero copy — the simulation — and
///        `split_deployment` (workflow/split_deploy.hpp: SplitFedV1, PSL,
///        EPSL, SplitFedV2, VSL, EdgeSplit) over any
///        `transport_policy` (MPI, MQTT, `in_process` threads) — the
///        deployment. Neither driver computes a step of its own.
///
/// One step, as the roles see it (b rows, s activations at the cut):
///
///     device                                      server
///     a = device_forward(net, x, b)
///     encode_smashed<Up>(a, y, b)    ── smashed {Up(a) ‖ labels} ──▶  decode_smashed<Up>(msg, s, classes, max_b)
///                                                                   r = server_step(chain, a, y, b, …, g)
///     decode_gradient<Down>(msg, g)  ◀── gradient {Down(g = ∂L/∂a)} ──  encode_at_cut<Down>(g)
///     device_backward(net, g, update, r.stepped)
///
/// The roles are functions of their inputs only: they do not know where the
/// smashed data came from or where the gradient goes. The in-process engine
/// passes its own buffers (and runs the codecs — `encode_at_cut` then
/// `decode_at_cut` — the per-party accounting and the schemes' grouping
/// around them); the deployment sends the codecs' messages in wire frames. So the same batches give the same bits in one process, over MPI
/// and over MQTT (`transport_test.sh nn-splitfed` compares them with `cmp`).
///
/// The device's half — `device_forward`, `check_gradient`, `device_backward`,
/// `encode_smashed` into a span, `decode_gradient` and the device's frame
/// headers — is workflow/split_device.hpp, freestanding: a microcontroller
/// firmware runs the same functions (tests/mcu/split_device.cpp).
///
/// The server's segment chain is a `split_server_chain`: one segment and its
/// optimizer (`segment_chain`, the deployment's per-client server copy) or
/// the engine's chain of K segments with codecs between the hops.
#pragma once

#include <algorithm>
#include <cmath>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

#include "../core/error.hpp"
#include "../partition/codec.hpp"
#include "../nn/loss.hpp"
#include "../nn/train.hpp"
#include "split_device.hpp"

namespace tinylarge::workflow {

// ---------------------------------------------------------------------------
// The server role
// ---------------------------------------------------------------------------

/// What a server role needs of the segments it runs (one segment, or a chain
/// of K with the hops between them): a forward in training mode returning
/// the outputs, a zero of every gradient, a backward from ∂loss/∂outputs to
/// ∂loss/∂input (`dx`, rows × cut), and a step of every segment that returns
/// false when the step had to be skipped.
template <class C>
concept split_server_chain = requires(C& c, const float* x, const float* dy, float* dx, std::size_t rows) {
  { c.forward(x, rows) } -> std::same_as<const float*>;
  c.zero_gradients();
  c.backward(dy, dx, rows);
  { c.step() } -> std::same_as<bool>;
};

/// A `split_server_chain` that also runs forward in inference mode
/// (`infer`: no dropout, nothing kept for a backward pass), which EPSL's
/// server step needs for the logits of every row (`server_step_aggregated`).
template <class C>
concept split_server_chain_with_inference = split_server_chain<C> && requires(C& c, const float* x, std::size_t rows) {
  { c.infer(x, rows) } -> std::same_as<const float*>;
};

/// One server segment and its optimizer state as a `split_server_chain`
/// (the deployment's per-client copy of the server segment).
template <class Net, class OptState>
struct segment_chain {
  Net& net;
  OptState& opt;
  const float* forward(const float* x, std::size_t rows) { return net.forward(x, rows, true); }
  const float* infer(const float* x, std::size_t rows) { return net.forward(x, rows, false); }
  void zero_gradients() { net.zero_gradients(); }
  void backward(const float* dy, float* dx, std::size_t /*rows*/) { net.backward(dy, dx); }
  bool step() {
    if (!nn::accept_gradients(net)) return false;
    opt.step(net.parameters().data(), net.gradients().data());
    return true;
  }
};

// ---------------------------------------------------------------------------
// The messages at the cut (both roles; the engine and the deployment)
// ---------------------------------------------------------------------------

/// The sending side of a cut: `x` through codec C (partition/codec.hpp) into
/// `out`, resized to the message. Returns its size in bytes. The engine's
/// hops (encode, then decode at once) and the deployment's frames both run
/// this, so a split computes the same bits in one process and over a network.
template <smashed_codec C>
std::size_t encode_at_cut(std::span<const float> x, std::vector<std::byte>& out) {
  out.resize(C::max_encoded_bytes(x.size()));
  const std::size_t n = C::encode(x, out);
  out.resize(n);
  return n;
}

/// The receiving side: `in` (untrusted) decoded by C into `y` (the receiver
/// knows how many values to expect). The codec checks every size, scale and
/// index (`truncated`, `corrupt`); the values are not checked here.
template <smashed_codec C>
status decode_at_cut(std::span<const std::byte> in, std::span<float> y) {
  return C::decode(in, y);
}

/// Device: the smashed message of `rows` rows into the vector `out`, resized
/// to it (`encode_smashed` of split_device.hpp into its storage).
template <smashed_codec C>
std::size_t encode_smashed(std::span<const float> act, const std::uint8_t* labels, std::size_t rows,
                           std::vector<std::byte>& out) {
  out.resize(C::max_encoded_bytes(act.size()) + rows);
  const std::size_t n = encode_smashed<C>(act, labels, rows, std::span<std::byte>(out));
  out.resize(n);
  return n;
}

/// The server's first act on a smashed message (`encode_smashed<C>`): finds
/// b from the length (`smashed_message_bytes<C>(b, cut)` = msg.size() with
/// 1 ≤ b ≤ max_rows, else `shape_mismatch` and nothing else is read), decodes
/// the activations with C (a payload the codec refuses — int8 scale not a
/// positive finite number, top_k indices out of range or not ascending —:
/// `corrupt`), checks that every activation is finite (`non_finite`: also
/// catches a NaN or Inf in an fp16 payload) and every label is in
/// [0, classes) (`invalid_argument`). On success `rows` = b, `x` holds b·cut
/// activations and `labels` the b labels. A server feeds a refused message to
/// no model.
template <smashed_codec C>
status decode_smashed(std::span<const std::byte> msg, std::size_t cut, std::size_t classes, std::size_t max_rows,
                      std::size_t& rows, std::vector<float>& x, std::vector<std::uint8_t>& labels) {
  std::size_t b = 0;
  for (std::size_t r = 1; r <= max_rows && b == 0; ++r) {  // both terms grow with r: at most one fits
    const std::size_t need = smashed_message_bytes<C>(r, cut);
    if (need == msg.size()) b = r;
    if (need > msg.size()) break;
  }
  TINYLARGE_CHECK(b != 0, errc::shape_mismatch,
                  "split server: the smashed message is not the codec's size for 1 ... max_batch rows and their labels");
  x.resize(b * cut);
  const std::size_t n = C::max_encoded_bytes(b * cut);
  const status d = decode_at_cut<C>(msg.first(n), x);
  TINYLARGE_CHECK(d.ok(), errc::corrupt, d.message);
  bool finite = true;
  for (const float v : x) finite = finite && std::isfinite(v);
  TINYLARGE_CHECK(finite, errc::non_finite, "split server: a NaN or infinite activation in the smashed data");
  labels.resize(b);
  bool in_range = true;
  for (std::size_t i = 0; i < b; ++i) {
    labels[i] = static_cast<std::uint8_t>(msg[n + i]);
    in_range = in_range && labels[i] < classes;
  }
  TINYLARGE_CHECK(in_range, errc::invalid_argument, "split server: a label outside [0, classes)");
  rows = b;
  return status::success();
}

/// What one server step did.
struct server_step_result {
  double loss = 0.0;     ///< mean softmax cross-entropy over the rows (NaN at a middle hop: the loss is upstream)
  bool stepped = false;  ///< every server segment stepped (false: skipped, and the device must skip)
  status outcome{};      ///< a head that could not give ∂loss/∂outputs (the next hop silent, its gradient refused)
};

/// What turns a server chain's outputs into ∂loss/∂outputs: `head(out,
/// labels, rows, dy, loss)` fills `dy` (rows × the chain's output width) and
/// sets `loss`, or returns a failed status (nothing is stepped then). The last
/// hop's head is the loss itself (`loss_head`); a middle hop's — the edge of a
/// multi-hop deployment (workflow/split_deploy.hpp, `cut<K1, K2>`) — sends the
/// outputs and the labels to the next hop, as a device sends its smashed data,
/// and returns the gradient that hop answers. So one `server_step` is the
/// server role at every hop of a chain.
template <class H>
concept split_server_head = requires(H& h, const float* out, const std::uint8_t* labels, std::size_t rows, float* dy,
                                     double& loss) {
  { h(out, labels, rows, dy, loss) } -> std::same_as<status>;
};

/// The last hop's head: the mean softmax cross-entropy over the rows and its
/// ∂/∂outputs (rows × classes).
struct loss_head {
  std::size_t classes;
  status operator()(const float* out, const std::uint8_t* labels, std::size_t rows, float* dy, double& loss) const {
    loss = nn::softmax_cross_entropy::evaluate(out, labels, rows, classes, dy);
    return status::success();
  }
};

/// Server, one step on `rows` rows of smashed data with their labels: the
/// chain forward (training mode), the head (the loss, or the next hop:
/// ∂/∂outputs into `dy`), zeroed gradients, backward to the cut
/// (∂loss/∂smashed into `dsmashed`, rows × cut: what goes back to the
/// device, or to the hop below), then the step of every segment. A failed
/// head leaves the chain unstepped and its status in `outcome`.
template <split_server_chain Chain, split_server_head Head>
server_step_result server_step(Chain& chain, Head& head, const float* smashed, const std::uint8_t* labels,
                               std::size_t rows, float* dy, float* dsmashed) {
  const float* out = chain.forward(smashed, rows);
  server_step_result r;
  r.outcome = head(out, labels, rows, dy, r.loss);
  if (!r.outcome.ok()) return r;
  chain.zero_gradients();
  chain.backward(dy, dsmashed, rows);
  r.stepped = chain.step();
  return r;
}

/// The last hop's step (`server_step` with `loss_head`): `dy` is rows × classes.
template <split_server_chain Chain>
server_step_result server_step(Chain& chain, const float* smashed, const std::uint8_t* labels, std::size_t rows,
                               std::size_t classes, float* dy, float* dsmashed) {
  loss_head head{classes};
  return server_step(chain, head, smashed, labels, rows, dy, dsmashed);
}

/// Scratch buffers of `server_step_aggregated`, kept by its caller (sized
/// once, then reused step after step).
struct aggregated_step_buffers {
  std::vector<float> dy;      ///< ∂loss/∂outputs of every row (rows × classes)
  std::vector<float> x;       ///< the reduced batch at the cut (red × cut)
  std::vector<float> dy_red;  ///< its ∂loss/∂outputs (red × classes)
  std::vector<float> dx;      ///< its ∂loss/∂input (red × cut)
};

/// Server, one EPSL step (Lin et al. 2023, `split_scheme::epsl`; the
/// arithmetic is described under "EPSL" in workflow/split.hpp) on the rows of
/// g = `rows_of.size()` clients, concatenated in client order in `smashed`
/// (rows × cut) and `labels` — client i has `rows_of[i]` rows, each at least
/// m = `shared` (the scheme's `aggregated_rows`):
///  1. the chain forward in inference mode on every row → the logits, the
///     softmax cross-entropy of all rows (its mean is the result's loss) and
///     ∂loss/∂outputs G;
///  2. the reduced batch: the rows j ≥ m of every client as they are, then
///     for j < m ONE row per j, the clients' mean smashed row x̄_j = Σ_i x_{i,j} / g
///     with the gradient Ḡ_j = Σ_i G_{i,j} (sums in client order);
///  3. the chain forward (training mode) on the reduced batch, zeroed
///     gradients, backward to the cut, the step of every segment;
///  4. `dsmashed` (rows × cut, in the layout of `smashed`): client i's rows
///     j ≥ m get their own ∂/∂input scaled by rows ÷ `rows_of[i]` (the
///     gradient of that client's own mean loss: g when every client has b
///     rows, as `server_step`'s callers scale), its rows j < m the shared
///     row's ∂/∂x̄_j unscaled.
/// With `shared` = 0 it computes what `server_step` followed by that scaling
/// does, by a longer road: call `server_step` then. The in-process engine and
/// the deployment both call this, so an EPSL step has the same bits in one
/// process and over a network.
template <split_server_chain_with_inference Chain>
server_step_result server_step_aggregated(Chain& chain, const float* smashed, const std::uint8_t* labels,
                                          std::span<const std::size_t> rows_of, std::size_t shared, std::size_t cut,
                                          std::size_t classes, aggregated_step_buffers& buf, float* dsmashed) {
  const std::size_t g = rows_of.size(), m = shared;
  std::size_t rows = 0;
  for (const std::size_t b : rows_of) {
    TINYLARGE_REQUIRE(b >= m, errc::invalid_argument,
                      "server_step_aggregated: a client has fewer rows than the aggregated rows");
    rows += b;
  }
  TINYLARGE_REQUIRE(g > 0, errc::invalid_argument, "server_step_aggregated: no client in the step");
  buf.dy.resize(rows * classes);
  const float* out = chain.infer(smashed, rows);
  const double l = nn::softmax_cross_entropy::evaluate(out, labels, rows, classes, buf.dy.data());
  const std::size_t red = rows - g * m + m;
  buf.x.assign(red * cut, 0.0f);
  buf.dy_red.assign(red * classes, 0.0f);
  const auto gf = static_cast<float>(g);
  std::size_t src0 = 0, dst0 = 0;  // client i's first row in `smashed`, its first individual row in the reduced batch
  for (std::size_t i = 0; i < g; ++i) {
    const std::size_t b = rows_of[i];
    for (std::size_t j = m; j < b; ++j) {
      const std::size_t dst = dst0 + (j - m), src = src0 + j;
      std::copy_n(smashed + src * cut, cut, buf.x.data() + dst * cut);
      std::copy_n(buf.dy.data() + src * classes, classes, buf.dy_red.data() + dst * classes);
    }
    for (std::size_t j = 0; j < m; ++j) {
      const std::size_t dst = rows - g * m + j, src = src0 + j;
      for (std::size_t f = 0; f < cut; ++f) buf.x[dst * cut + f] += smashed[src * cut + f] / gf;
      for (std::size_t f = 0; f < classes; ++f) buf.dy_red[dst * classes + f] += buf.dy[src * classes + f];
    }
    src0 += b;
    dst0 += b - m;
  }
  chain.forward(buf.x.data(), red);
  chain.zero_gradients();
  buf.dx.resize(red * cut);
  chain.backward(buf.dy_red.data(), buf.dx.data(), red);
  const bool ok = chain.step();
  src0 = 0;
  dst0 = 0;
  for (std::size_t i = 0; i < g; ++i) {
    const std::size_t b = rows_of[i];
    const float scale = static_cast<float>(rows) / static_cast<float>(b);
    for (std::size_t j = 0; j < b; ++j) {
      float* dst = dsmashed + (src0 + j) * cut;
      if (j < m) {
        std::copy_n(buf.dx.data() + (rows - g * m + j) * cut, cut, dst);
      } else {
        const float* src = buf.dx.data() + (dst0 + (j - m)) * cut;
        for (std::size_t f = 0; f < cut; ++f) dst[f] = src[f] * scale;
      }
    }
    src0 += b;
    dst0 += b - m;
  }
  return {l, ok};
}

}  // namespace tinylarge::workflow
