// Negative-compile test (tests/CMakeLists.txt): transformer layers whose
// template parameters do not fit their input must not compile, and the
// diagnostic must name the parameter (-DTINYLARGE_CASE=N picks the case).
// Built with -DTINYLARGE_EXPECT_VALID, the same file uses fitting layers and
// must compile: that control proves each failure comes from the shape check.
#include "tinylarge/nn/transformer.hpp"

namespace nn = tinylarge::nn;

#if defined(TINYLARGE_EXPECT_VALID)
using attention_model = nn::sequential<nn::input<1, 4, 6>, nn::multi_head_attention<6, 2>>;
using residual_model = nn::sequential<nn::input<1, 4, 6>, nn::residual<nn::layer_norm<6>, nn::conv2d<6, 1>>>;
#elif TINYLARGE_CASE == 1  // tokens of width 6, attention over width 8
using attention_model = nn::sequential<nn::input<1, 4, 6>, nn::multi_head_attention<8, 2>>;
using residual_model = nn::sequential<nn::input<1, 4, 6>, nn::residual<nn::layer_norm<6>, nn::conv2d<6, 1>>>;
#elif TINYLARGE_CASE == 2  // the inner chain widens the tokens from 6 to 12: x + F(x) has no meaning
using attention_model = nn::sequential<nn::input<1, 4, 6>, nn::multi_head_attention<6, 2>>;
using residual_model = nn::sequential<nn::input<1, 4, 6>, nn::residual<nn::layer_norm<6>, nn::conv2d<12, 1>>>;
#endif

static_assert(attention_model::output_size == 24);
static_assert(residual_model::output_size == 24);

int main() { return 0; }
