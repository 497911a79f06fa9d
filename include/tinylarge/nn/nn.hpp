/// @file nn/nn.hpp
/// @brief Umbrella header of the models-and-training layer (host profile).
///
/// The layer descriptors, `input` and `sequential` are also available directly
/// in `tl::` (as in `tl::sequential<tl::dense<784, 300>, tl::relu, …>`).
/// For the freestanding profile include only `nn/quantized_network.hpp` (and
/// `nn/sequential.hpp`): they use no heap, no exceptions and no iostream.
#pragma once

#include "checkpoint.hpp"
#include "decoder.hpp"
#include "init.hpp"
#include "layers.hpp"
#include "lora.hpp"
#include "loss.hpp"
#include "lowp.hpp"
#include "mixed_network.hpp"
#include "network.hpp"
#include "npz.hpp"
#include "optimizer.hpp"
#include "quantize.hpp"
#include "quantized_network.hpp"
#include "sequential.hpp"
#include "shape.hpp"
#include "storage.hpp"
#include "train.hpp"
#include "transformer.hpp"
#include "vision.hpp"

namespace tinylarge {
using nn::avg_pool2d;
using nn::batch_norm;
using nn::conv2d;
using nn::dense;
using nn::depthwise_conv2d;
using nn::dropout;
using nn::embedding;
using nn::flatten;
using nn::gelu;
using nn::input;
using nn::layer_norm;
using nn::learned_positions;
using nn::max_pool2d;
using nn::multi_head_attention;
using nn::patch_embedding;
using nn::relu;
using nn::relu6;
using nn::residual;
using nn::rms_norm;
using nn::sequential;
using nn::sigmoid;
using nn::silu;
using nn::sinusoidal_positions;
using nn::softmax;
using nn::tanh_act;
}  // namespace tinylarge
