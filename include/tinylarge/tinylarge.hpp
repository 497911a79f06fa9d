/// @file tinylarge.hpp
/// @brief Umbrella header of the host profile: includes every public header.
///
/// For the microcontroller profile include `tinylarge/freestanding.hpp`
/// instead; it never pulls in xtensor, xsimd, iostream or the heap.
#pragma once

#include "core/config.hpp"
#include "core/error.hpp"
#include "core/arch.hpp"
#include "core/rng.hpp"
#include "kernels/backend.hpp"
#include "kernels/dense.hpp"
#include "precision/concepts.hpp"
#include "precision/fp16.hpp"
#include "precision/requantize.hpp"
