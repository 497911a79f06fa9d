/// @file kernels/backend.hpp
/// @brief Kernel back ends: the architecture tags of core/arch.hpp.
///
/// Every kernel takes an architecture tag first, e.g.
/// `kernels::dense_f32(arch::scalar{}, …)`; SIMD back ends add overloads for
/// their own tags, and a call with a derived tag falls back to the nearest base
/// that has an overload. `kernels::default_backend` is `arch::best`.
#pragma once

#include "../core/arch.hpp"

namespace tinylarge::kernels {

using arch::scalar;

/// The back end a kernel call uses when none is named: `arch::best` (the
/// portable `scalar` one when built with `TINYLARGE_USE_XSIMD=0`).
using default_backend = arch::best;

/// True for a type usable as a kernel back end tag on this target.
template <class B>
concept backend = requires {
  { B::name() };
  { B::supported() };
} && B::supported();

}  // namespace tinylarge::kernels
