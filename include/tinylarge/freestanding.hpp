/// @file freestanding.hpp
/// @brief Umbrella header of the freestanding (microcontroller) profile.
///
/// Includes only what builds with no heap, no exceptions, no RTTI and no
/// iostream, and never xtensor or xsimd. Proven by the Cortex-M programs in
/// tests/mcu/, built with arm-none-eabi-g++ and run under qemu-system-arm,
/// whose link fails if anything references malloc or _sbrk.
#pragma once

#ifndef TINYLARGE_FREESTANDING
#define TINYLARGE_FREESTANDING 1
#endif

#include "core/arch.hpp"
#include "core/config.hpp"
#include "core/error.hpp"
#include "core/rng.hpp"
#include "kernels/backend.hpp"
#include "kernels/dense.hpp"
#include "kernels/cortex_m.hpp"
#include "kernels/mve.hpp"
#include "kernels/conv.hpp"
#include "precision/bf16.hpp"
#include "precision/concepts.hpp"
#include "precision/convert.hpp"
#include "precision/fp16.hpp"
#include "precision/int8.hpp"
#include "precision/requantize.hpp"
#include "compress/concepts.hpp"
#include "compress/bitpack.hpp"
#include "compress/huffman.hpp"
#include "compress/kernels.hpp"
#include "compress/model_file.hpp"
#include "compress/sparse_s8.hpp"
#include "compress/int8_model.hpp"
#include "nn/device_finetune.hpp"
#include "nn/mixed_network.hpp"
#include "nn/quantized_network.hpp"
#include "transport/wire.hpp"
#include "transport/serial.hpp"
#include "workflow/federated_client_step.hpp"
