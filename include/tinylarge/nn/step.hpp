/// @file nn/step.hpp
/// @brief The backward half of the library's one training step
///        (`backward_step`, its hooks and `accept_gradients`), apart from the
///        loops of nn/train.hpp so that the freestanding profile has it: a
///        split-learning device segment on a microcontroller
///        (workflow/split_device.hpp) steps with the same function as the
///        host's `train_step`, `fit` and split devices. No heap, no
///        exceptions, no I/O here.
#pragma once

#include <concepts>

namespace tinylarge::nn {

/// After `net.backward`: whether the optimizer step should be taken. A
/// network with dynamic loss scaling (`network<…, fp16>`) says no after an
/// overflow (and adjusts its scale); every other network says yes. Every
/// training loop calls this between `backward` and the optimizer step.
template <class Net>
bool accept_gradients(Net& net) {
  if constexpr (requires { { net.accept_gradients() } -> std::convertible_to<bool>; }) {
    return net.accept_gradients();
  } else {
    return true;
  }
}

/// Hooks of `train_step` / `train_epoch` (every member optional; a hooks
/// object is any struct with the ones it needs, `no_hooks` has none):
///  - `void before_forward(Net&)`: before the forward pass;
///  - `void adjust_gradients(Net&)`: after an accepted backward pass, before
///    the update — a proximal term (FedProx), gradient masks, extra loss
///    terms' gradients, gradient taps;
///  - `void after_step(Net&)`: after every step, taken or skipped — frozen
///    layers restored, masks re-applied.
struct no_hooks {};

/// The update of an accepted step: the optimizer state's step on the whole
/// parameter vector, or a `trainable_state`'s on the trainable runs (a caller
/// with its own update — a compressed segment's masked step — passes that instead).
template <class State>
struct optimizer_update {
  State& state;
  template <class Net>
  void operator()(Net& net) {
    state.step(net.parameters().data(), net.gradients().data());
  }
  /// True, with η in `lr`, when the update is a plain SGD step (no momentum,
  /// no weight decay) over every parameter: `backward_step` may then fuse it
  /// into the backward pass (`network::backward_sgd`).
  bool plain_sgd(float& lr) const noexcept {
    if constexpr (requires { { state.plain_sgd(lr) } -> std::convertible_to<bool>; }) {
      return state.plain_sgd(lr);
    } else {
      return false;
    }
  }
};

/// The end of a step, once the gradients are in `net.gradients()`: when the
/// network accepts them (no fp16 loss-scale overflow, `accept_gradients`)
/// and `others_ok` (a split step: the servers stepped too), adjust them
/// (hooks) and `update(net)`; then `after_step`. `backward_step` ends with
/// it; a pipeline stage (workflow/pipeline.hpp), which accumulates the
/// gradients of several micro-batches, calls it once per batch.
/// @return whether the update ran
template <class Net, class Update, class Hooks = no_hooks>
bool finish_step(Net& net, Update&& update, Hooks&& hooks = {}, bool others_ok = true) {
  const bool stepped = accept_gradients(net) && others_ok;
  if (stepped) {
    if constexpr (requires { hooks.adjust_gradients(net); }) hooks.adjust_gradients(net);
    update(net);
  }
  if constexpr (requires { hooks.after_step(net); }) hooks.after_step(net);
  return stepped;
}

/// The backward half of a step: zero the gradients, back-propagate `dy`,
/// then `finish_step`. Split learning's device segments call this with the
/// gradient the server sent.
///
/// When the update is a plain SGD step (`optimizer_update::plain_sgd`), the
/// hooks do not adjust gradients, `others_ok` holds and the network has a
/// fused step (`network::backward_sgd`), that runs instead: the same bits,
/// without the gradient's trips through memory (issue 24's fused epilogues).
/// @return whether the update ran
template <class Net, class Update, class Hooks = no_hooks>
bool backward_step(Net& net, const float* dy, Update&& update, Hooks&& hooks = {}, bool others_ok = true) {
  if constexpr (requires(float lr) {
                  { update.plain_sgd(lr) } -> std::convertible_to<bool>;
                  { net.backward_sgd(dy, lr) } -> std::convertible_to<bool>;
                } && !requires { hooks.adjust_gradients(net); }) {
    float lr = 0.0f;
    if (others_ok && update.plain_sgd(lr) && net.backward_sgd(dy, lr)) {
      if constexpr (requires { hooks.after_step(net); }) hooks.after_step(net);
      return true;
    }
  }
  net.zero_gradients();
  net.backward(dy);
  return finish_step(net, update, hooks, others_ok);
}

}  // namespace tinylarge::nn
