// Negative-compile test (tests/CMakeLists.txt): residual blocks that the int8 path of
// quantized_network cannot run must not compile, and the diagnostic must name the
// limitation (-DTINYLARGE_CASE=N picks the case). Built with -DTINYLARGE_EXPECT_VALID, the
// same file uses a residual block that int8 runs and must compile: that control proves each
// failure comes from the check.
#include "tinylarge/nn/nn.hpp"

namespace nn = tinylarge::nn;
namespace tl = tinylarge;

using conv = tl::conv2d<4, 3, 1, 1>;
#if defined(TINYLARGE_EXPECT_VALID)
using block = tl::residual<conv, tl::relu, conv>;
#elif TINYLARGE_CASE == 1  // a residual block inside a residual block: one skip tensor is planned, not two
using block = tl::residual<conv, tl::residual<conv, tl::relu, conv>>;
#elif TINYLARGE_CASE == 2  // the first inner layer runs in place and would overwrite the skip tensor
using block = tl::residual<tl::relu, conv>;
#endif
using model = tl::sequential<tl::input<6, 6, 4>, block, tl::relu, tl::flatten, tl::dense<144, 3>>;
using q = nn::quantized_network<model, tl::int8_per_channel, nn::static_storage>;

static_assert(q::residual_count >= 1);

int main() {
  static q net;
  return net.forward()[0];
}
