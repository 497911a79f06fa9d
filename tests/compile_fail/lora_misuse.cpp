// Negative-compile test (tests/CMakeLists.txt): a LoRA wrapper with a rank of 0,
// a rank above min(In, Out), a layer that is not dense, or in int8
// must not compile, and the diagnostic must name the member (-DTINYLARGE_CASE=N
// picks the case). Built with -DTINYLARGE_EXPECT_VALID, the same file uses a
// valid wrapper in an fp16 network and must compile.
#include "tinylarge/nn/lora.hpp"

namespace nn = tinylarge::nn;

#if defined(TINYLARGE_EXPECT_VALID)
using model = nn::sequential<nn::lora<nn::dense<8, 4>, 4>, nn::relu>;
using precision = tinylarge::fp16;
#elif TINYLARGE_CASE == 1  // rank 0
using model = nn::sequential<nn::lora<nn::dense<8, 4>, 0>, nn::relu>;
using precision = tinylarge::fp32;
#elif TINYLARGE_CASE == 2  // rank 5 > min(8, 4)
using model = nn::sequential<nn::lora<nn::dense<8, 4>, 5>, nn::relu>;
using precision = tinylarge::fp32;
#elif TINYLARGE_CASE == 3  // not a dense layer
using model = nn::sequential<nn::input<4, 4, 1>, nn::lora<nn::conv2d<4, 3>, 2>, nn::relu>;
using precision = tinylarge::fp32;
#else  // case 4: the wrapper has no int8 path
using model = nn::sequential<nn::with_precision<nn::lora<nn::dense<8, 4>, 4>, tinylarge::int8_per_channel>, nn::relu>;
using precision = tinylarge::fp32;
#endif

int main() {
  nn::network<model, nn::heap_storage, precision> net(1);
  return static_cast<int>(net.parameters().size() == 0);
}
