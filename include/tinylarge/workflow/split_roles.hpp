/// @file workflow/split_roles.hpp
/// @brief Split learning written once, as the programs of its two roles at a
///        cut: the **device** (forward its segment, hand the smashed data on,
///        back-propagate the gradient that comes back and step) and the
///        **server** (check the smashed data, run its segment chain forward,
///        the loss, backward, step, and return ∂loss/∂smashed). Drivers run
///        them: `split_learning<Traits, Scheme>` (workflow/split_engine.hpp)
///        in one process, zero copy — the simulation — and
///        `splitfed_v1_deployment` (workflow/split_deploy.hpp) over any
///        `transport_policy` (MPI, MQTT, `in_process` threads) — the
///        deployment. Neither driver computes a step of its own.
///
/// One step, as the roles see it (b rows, s activations at the cut):
///
///     device                                      server
///     a = device_forward(net, x, b)  ── smashed {a ‖ labels} ──▶  check_smashed(frame, s, classes, max_b)
///                                                               r = server_step(chain, a, y, b, …, g)
///     check_gradient(g)              ◀── gradient {g = ∂L/∂a} ──
///     device_backward(net, g, update, r.stepped)
///
/// The roles are functions of their inputs only: they do not know where the
/// smashed data came from or where the gradient goes. The in-process engine
/// passes its own buffers (and runs the codecs, the per-party accounting and
/// the schemes' grouping around them); the deployment reads and writes wire
/// frames. So the same batches give the same bits in one process, over MPI
/// and over MQTT (`transport_test.sh nn-splitfed` compares them with `cmp`).
///
/// The server's segment chain is a `split_server_chain`: one segment and its
/// optimizer (`segment_chain`, the deployment's per-client server copy) or
/// the engine's chain of K segments with codecs between the hops.
#pragma once

#include <cmath>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "../core/error.hpp"
#include "../nn/loss.hpp"
#include "../nn/train.hpp"

namespace tinylarge::workflow {

// ---------------------------------------------------------------------------
// The device role
// ---------------------------------------------------------------------------

/// Device, step 1: its segment forward (training mode) on `rows` inputs `x`;
/// returns the smashed data (rows × cut values, owned by `net` until its
/// next forward).
template <class Net>
const float* device_forward(Net& net, const float* x, std::size_t rows) {
  return net.forward(x, rows, true);
}

/// Device, on receipt of the server's gradient: every value must be finite
/// (`errc::non_finite` otherwise: a device never steps on a NaN).
inline status check_gradient(std::span<const float> g) noexcept {
  bool ok = true;
  for (const float v : g) ok = ok && std::isfinite(v);
  TINYLARGE_CHECK(ok, errc::non_finite, "split device: non-finite gradient from the server");
  return status::success();
}

/// Device, step 2: back-propagates ∂loss/∂smashed `grad` through its
/// segment and applies `update(net)` (its optimizer step, or a compressed
/// party's masked step) — the library's one backward-and-update,
/// `nn::backward_step`. `server_stepped` false (a server skipped its step,
/// e.g. an fp16 loss-scale overflow) skips the device's step too.
/// @return true when the update ran
template <class Net, class Update>
bool device_backward(Net& net, const float* grad, Update&& update, bool server_stepped = true) {
  return nn::backward_step(net, grad, update, nn::no_hooks{}, server_stepped);
}

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

/// One server segment and its optimizer state as a `split_server_chain`
/// (the deployment's per-client copy of the server segment).
template <class Net, class OptState>
struct segment_chain {
  Net& net;
  OptState& opt;
  const float* forward(const float* x, std::size_t rows) { return net.forward(x, rows, true); }
  void zero_gradients() { net.zero_gradients(); }
  void backward(const float* dy, float* dx, std::size_t /*rows*/) { net.backward(dy, dx); }
  bool step() {
    if (!nn::accept_gradients(net)) return false;
    opt.step(net.parameters().data(), net.gradients().data());
    return true;
  }
};

/// The server's first act on a smashed message of the label-sharing variant:
/// `frame` = b·cut activations followed by the b labels as fp32 integers.
/// Checks the shape (b·(cut+1) values, 1 ≤ b ≤ max_rows: `shape_mismatch`),
/// that every activation is finite (`non_finite`) and that every label is an
/// integer in [0, classes) (`invalid_argument`); on success `rows` = b and
/// `labels` holds the b labels. Nothing else is changed on failure of the
/// shape; a server feeds a rejected frame to no model.
inline status check_smashed(std::span<const float> frame, std::size_t cut, std::size_t classes, std::size_t max_rows,
                            std::size_t& rows, std::vector<std::uint8_t>& labels) {
  const std::size_t b = frame.size() / (cut + 1);
  TINYLARGE_CHECK(frame.size() % (cut + 1) == 0 && b >= 1 && b <= max_rows, errc::shape_mismatch,
                  "split server: the smashed frame does not hold 1 ... max_batch rows of activations and labels");
  bool finite = true;
  for (std::size_t i = 0; i < b * cut; ++i) finite = finite && std::isfinite(frame[i]);
  TINYLARGE_CHECK(finite, errc::non_finite, "split server: a NaN or infinite activation in the smashed data");
  labels.resize(b);
  for (std::size_t i = 0; i < b; ++i) {
    const float l = frame[b * cut + i];
    TINYLARGE_CHECK(l >= 0.0f && l < static_cast<float>(classes) && l == std::floor(l), errc::invalid_argument,
                    "split server: a label that is not an integer in [0, classes)");
    labels[i] = static_cast<std::uint8_t>(l);
  }
  rows = b;
  return status::success();
}

/// What one server step did.
struct server_step_result {
  double loss = 0.0;     ///< mean softmax cross-entropy over the rows
  bool stepped = false;  ///< every server segment stepped (false: skipped, and the device must skip)
};

/// Server, one step on `rows` rows of smashed data with their labels: the
/// chain forward (training mode), the softmax cross-entropy (∂/∂outputs into
/// `dy`, rows × classes), zeroed gradients, backward to the cut
/// (∂loss/∂smashed into `dsmashed`, rows × cut: what goes back to the
/// device), then the step of every segment.
template <split_server_chain Chain>
server_step_result server_step(Chain& chain, const float* smashed, const std::uint8_t* labels, std::size_t rows,
                               std::size_t classes, float* dy, float* dsmashed) {
  const float* out = chain.forward(smashed, rows);
  const double l = nn::softmax_cross_entropy::evaluate(out, labels, rows, classes, dy);
  chain.zero_gradients();
  chain.backward(dy, dsmashed, rows);
  const bool ok = chain.step();
  return {l, ok};
}

}  // namespace tinylarge::workflow
