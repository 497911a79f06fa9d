// The three convolutional models of the firmware examples (docs/mcu.md), shared by the host
// generator (make_cnn.cpp: trains, quantizes, writes the model files) and the firmware
// (cnn_int8.cpp: binds a model file to the same type and runs it). The type is the model:
// the firmware compiles the very `sequential<...>` that the host trains.
#pragma once

#include <tinylarge/nn/layers.hpp>
#include <tinylarge/nn/sequential.hpp>
#include <tinylarge/nn/transformer.hpp>

namespace mcu_cnn {
namespace nn = tinylarge::nn;

/// LeNet-5-like CNN for Fashion-MNIST (LeCun et al. 1998, with relu and max pooling):
/// 28×28×1 → conv 5×5 6 (pad 2) → pool 2 → conv 5×5 16 → pool 2 → 400 → 120 → 84 → 10.
using lenet5 = nn::sequential<nn::input<28, 28, 1>, nn::conv2d<6, 5, 1, 2>, nn::relu, nn::max_pool2d<2>,
                              nn::conv2d<16, 5>, nn::relu, nn::max_pool2d<2>, nn::flatten, nn::dense<400, 120>,
                              nn::relu, nn::dense<120, 84>, nn::relu, nn::dense<84, 10>>;

/// A depthwise-separable CNN shaped like MLPerf Tiny's keyword-spotting DS-CNN (Zhang et al.,
/// "Hello Edge", 2017): 49 frames × 10 MFCC features → conv 4×4 stride 2, 64 channels →
/// 4 × (depthwise 3×3 + relu, pointwise 1×1 64 + relu) → average pool 5×5 → 12 classes.
/// (The reference model's first kernel is 10×4; this library's kernels are square.)
using ds_cnn = nn::sequential<
    nn::input<49, 10, 1>, nn::conv2d<64, 4, 2, 1>, nn::relu,                      //
    nn::depthwise_conv2d<3, 1, 1>, nn::relu, nn::conv2d<64, 1>, nn::relu,        //
    nn::depthwise_conv2d<3, 1, 1>, nn::relu, nn::conv2d<64, 1>, nn::relu,        //
    nn::depthwise_conv2d<3, 1, 1>, nn::relu, nn::conv2d<64, 1>, nn::relu,        //
    nn::depthwise_conv2d<3, 1, 1>, nn::relu, nn::conv2d<64, 1>, nn::relu,        //
    nn::avg_pool2d<5, 5>, nn::flatten, nn::dense<256, 12>>;

/// A small residual CNN on the same spectrograms (ResNet-style basic blocks, y = relu(x + F(x))):
/// conv 4×4 stride 2, 16 channels → block (conv 3×3, relu, conv 3×3) → block (depthwise 3×3,
/// relu, pointwise 1×1) → average pool 5×5 → 12 classes. int8 on the device from a model file
/// (format 1.4: an add record closes each block; cnn_int8.cpp) and with parameters compiled in
/// (cnn_compiled.cpp).
using resnet_kws = nn::sequential<
    nn::input<49, 10, 1>, nn::conv2d<16, 4, 2, 1>, nn::relu,                                       //
    nn::residual<nn::conv2d<16, 3, 1, 1>, nn::relu, nn::conv2d<16, 3, 1, 1>>, nn::relu,            //
    nn::residual<nn::depthwise_conv2d<3, 1, 1>, nn::relu, nn::conv2d<16, 1>>, nn::relu,            //
    nn::avg_pool2d<5, 5>, nn::flatten, nn::dense<64, 12>>;

/// A model of another shape with as many weighted layers as `lenet5` (first conv with 4
/// filters): its file must be rejected by `bind_model_file` for each model above.
using other = nn::sequential<nn::input<28, 28, 1>, nn::conv2d<4, 5, 1, 2>, nn::relu, nn::max_pool2d<4>,
                             nn::conv2d<4, 3, 1, 1>, nn::relu, nn::flatten, nn::dense<196, 16>, nn::relu,
                             nn::dense<16, 16>, nn::relu, nn::dense<16, 10>>;

}  // namespace mcu_cnn
