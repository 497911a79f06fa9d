/// @file workflow/split_device.hpp
/// @brief The **device** role of split learning (workflow/split_roles.hpp)
///        and the device's frames of the split deployment
///        (workflow/split_deploy.hpp), in the freestanding profile: no heap,
///        no exceptions, no I/O. The host's deployment client
///        (`split_deployment<…>::client`) and a microcontroller firmware
///        (tests/mcu/split_device.cpp, a Cortex-M4F under QEMU talking to the
///        deployment's server over transport/serial.hpp) call these same
///        functions, so a device computes and frames a step once.
///
/// One device step (b rows, s activations at the cut; the server's half is
/// in split_roles.hpp):
///
///     a = device_forward(net, x, b)
///     n = encode_smashed<Up>(a, y, b, out)           → frame: split_smashed_header(r, t, e, n)
///     (gradient frame m: split_gradient_for(m.header, r, t, e))
///     decode_gradient<Down>(m.payload, g)            → finite, the codec's size
///     device_backward(net, g, update)
///
/// A segment trains with no heap in `nn::network<Segment,
/// nn::static_training_storage<MaxBatch>>` (fp32 master weights, the
/// activations of up to MaxBatch rows in the object). Its update is the
/// caller's: the host client passes its optimizer state's step, a firmware
/// `sgd_update` (below: plain SGD through the library's `kernels::sgd_step`,
/// the kernel `nn::sgd`'s state runs).
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>

#include "../core/error.hpp"
#include "../kernels/backend.hpp"
#include "../kernels/elementwise.hpp"
#include "../nn/optimizer.hpp"
#include "../nn/step.hpp"
#include "../partition/codec.hpp"
#include "../transport/wire.hpp"

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

/// A device's update without optimizer state (no heap): plain SGD, w ← w −
/// η·(∇ + λ·w), through `kernels::sgd_step` — the kernel `nn::sgd::state`
/// runs, so a firmware with it computes the bits of a host client with
/// `nn::sgd{η, 0, λ}`. (Momentum needs a velocity buffer: `nn::sgd::state`.)
struct sgd_update {
  float learning_rate = 0.01f;  ///< η
  float weight_decay = 0.0f;    ///< λ
  template <class Net>
  void operator()(Net& net) const noexcept {
    const kernels::sgd_params<float> p{learning_rate, 0.0f, weight_decay, false};
    kernels::sgd_step(kernels::default_backend{}, net.parameters().size(), p, net.parameters().data(),
                      net.gradients().data(), static_cast<float*>(nullptr));
  }
  /// The same update as `nn::sgd` with these hyperparameters and no momentum.
  static constexpr sgd_update of(const nn::sgd& o) noexcept { return {o.learning_rate, o.weight_decay}; }
};

// ---------------------------------------------------------------------------
// The messages at the cut, device side
// ---------------------------------------------------------------------------

/// Bytes of a smashed message of the label-sharing variant for `rows` rows
/// of `cut` activations: codec C's message of rows·cut values, then one
/// byte per label. The deployment needs codecs whose message of n values is
/// always `max_encoded_bytes(n)` bytes (all four of partition/codec.hpp): the
/// receiver finds the row count from the length.
template <smashed_codec C>
constexpr std::size_t smashed_message_bytes(std::size_t rows, std::size_t cut) noexcept {
  return C::max_encoded_bytes(rows * cut) + rows;
}

/// Device: the smashed message {C(activations) ‖ labels as uint8} of `rows`
/// rows (`act`: rows·cut values) into `out` (at least
/// `C::max_encoded_bytes(act.size()) + rows` bytes); returns its size
/// (`smashed_message_bytes<C>(rows, cut)`).
template <smashed_codec C>
std::size_t encode_smashed(std::span<const float> act, const std::uint8_t* labels, std::size_t rows,
                           std::span<std::byte> out) {
  TINYLARGE_REQUIRE(out.size() >= C::max_encoded_bytes(act.size()) + rows, errc::capacity_exceeded,
                    "split device: the smashed message buffer is smaller than the codec's message and the labels");
  const std::size_t n = C::encode(act, out);
  TINYLARGE_REQUIRE(n == C::max_encoded_bytes(act.size()), errc::invalid_argument,
                    "split device: the codec's message is not max_encoded_bytes(n) long (the deployment needs fixed sizes)");
  if (rows != 0) std::memcpy(out.data() + n, labels, rows);
  return n + rows;
}

/// Device, on receipt of the gradient message of its `g.size()` smashed
/// values: exactly `C::max_encoded_bytes(g.size())` bytes (`corrupt`
/// otherwise), a payload codec C accepts (`corrupt`), finite values
/// (`check_gradient`: `non_finite`). `g` is written only when the size fits.
template <smashed_codec C>
status decode_gradient(std::span<const std::byte> msg, std::span<float> g) {
  TINYLARGE_CHECK(msg.size() == C::max_encoded_bytes(g.size()), errc::corrupt,
                  "split device: the gradient message does not match the smashed batch");
  const status d = C::decode(msg, g);
  TINYLARGE_CHECK(d.ok(), errc::corrupt, d.message);
  return check_gradient(g);
}

// ---------------------------------------------------------------------------
// The device's frames of the deployment (split_deploy.hpp, "Message sequence")
// ---------------------------------------------------------------------------

/// The `control`/`stop` frame that ends a run.
constexpr bool split_is_stop(const wire::message_header& h) noexcept {
  return h.type == wire::message_type::control && h.aux == static_cast<std::uint64_t>(wire::control_command::stop);
}

/// The restart epoch a frame's `aux` carries (its upper 32 bits).
constexpr std::uint32_t split_epoch(const wire::message_header& h) noexcept {
  return static_cast<std::uint32_t>(h.aux >> 32);
}

/// The client rule ("Crash recovery"): a model frame the device acts on —
/// a later round than `round`, or the same round (≠ 0) from a server that
/// restarted (a greater epoch than `epoch`). Anything else (a duplicate of
/// the current model, an older one) is ignored.
constexpr bool split_model_is_newer(const wire::message_header& h, std::uint32_t round, std::uint32_t epoch) noexcept {
  return h.type == wire::message_type::model &&
         (h.round > round || (h.round == round && round != 0 && split_epoch(h) > epoch));
}

/// Steps the model frame asks for (S, the lower 32 bits of its `aux`).
constexpr std::uint32_t split_model_steps(const wire::message_header& h) noexcept {
  return static_cast<std::uint32_t>(h.aux & 0xFFFFFFFFu);
}

/// The header of a frame of step `step` of round `round` in epoch `epoch`
/// (`smashed` or `gradient`): `bytes` bytes of codec message (`dtype`
/// bytes), aux = step | epoch≪32. The transport stamps `sender` and `sequence`.
constexpr wire::message_header split_step_header(wire::message_type type, std::uint32_t round, std::uint32_t step,
                                                 std::uint32_t epoch, std::size_t bytes) noexcept {
  wire::message_header h;
  h.type = type;
  h.dtype = wire::wire_dtype::bytes;
  h.round = round;
  h.aux = step | (std::uint64_t{epoch} << 32);
  h.count = static_cast<std::uint32_t>(bytes);
  return h;
}

/// The header of step `step`'s smashed frame of round `round` in epoch
/// `epoch`, `bytes` bytes of codec message and labels.
constexpr wire::message_header split_smashed_header(std::uint32_t round, std::uint32_t step, std::uint32_t epoch,
                                                    std::size_t bytes) noexcept {
  return split_step_header(wire::message_type::smashed, round, step, epoch, bytes);
}

/// The header of the gradient frame that answers step `step`'s smashed frame
/// of round `round` in epoch `epoch`: `bytes` bytes of codec message.
constexpr wire::message_header split_gradient_header(std::uint32_t round, std::uint32_t step, std::uint32_t epoch,
                                                     std::size_t bytes) noexcept {
  return split_step_header(wire::message_type::gradient, round, step, epoch, bytes);
}

/// Whether `h` is the gradient of step `step` of round `round` in epoch
/// `epoch` (other frames — late duplicates, other steps — are skipped).
constexpr bool split_gradient_for(const wire::message_header& h, std::uint32_t round, std::uint32_t step,
                                  std::uint32_t epoch) noexcept {
  return h.type == wire::message_type::gradient && h.round == round && h.aux == (step | (std::uint64_t{epoch} << 32));
}

/// The header of the device's update frame at the end of round `round`
/// (`params` fp32 values of its segment; `examples` its aggregation weight,
/// 1 … 2³¹−1).
constexpr wire::message_header split_update_header(std::uint32_t round, std::uint32_t epoch, std::int64_t examples,
                                                   std::size_t params) noexcept {
  wire::message_header u;
  u.type = wire::message_type::update;
  u.dtype = wire::wire_dtype::fp32;
  u.round = round;
  u.aux = static_cast<std::uint64_t>(examples) | (std::uint64_t{epoch} << 32);
  u.count = static_cast<std::uint32_t>(params);
  return u;
}

}  // namespace tinylarge::workflow
