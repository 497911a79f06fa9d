// Negative-compile test (tests/CMakeLists.txt): vision layers whose template
// parameters do not fit must not compile, and the diagnostic must name the
// parameter (-DTINYLARGE_CASE=N picks the case). Built with
// -DTINYLARGE_EXPECT_VALID, the same file uses fitting layers and must
// compile: that control proves each failure comes from the check.
#include "tinylarge/nn/network.hpp"
#include "tinylarge/nn/vision.hpp"

namespace nn = tinylarge::nn;

#if !defined(TINYLARGE_EXPECT_VALID) && TINYLARGE_CASE == 1  // 5×5 patches of a 28×28 image
using vit = nn::sequential<nn::patch_embedding<28, 28, 1, 5, 16>>;
#elif !defined(TINYLARGE_EXPECT_VALID) && TINYLARGE_CASE == 2  // 7×7 patches of a 28×30 image
using vit = nn::sequential<nn::input<28, 30, 1>, nn::patch_embedding<28, 30, 1, 7, 16>>;
#elif !defined(TINYLARGE_EXPECT_VALID) && TINYLARGE_CASE == 3  // an RGB patch embedding on a grey image
using vit = nn::sequential<nn::input<28, 28, 1>, nn::patch_embedding<28, 28, 3, 7, 16>>;
#else
using vit = nn::sequential<nn::input<28, 28, 1>, nn::patch_embedding<28, 28, 1, 7, 16>>;
#endif

#if !defined(TINYLARGE_EXPECT_VALID) && TINYLARGE_CASE == 4  // batch norm of 8 channels on 6
using cnn = nn::sequential<nn::input<8, 8, 1>, nn::conv2d<6, 3>, nn::batch_norm<8>>;
#else
using cnn = nn::sequential<nn::input<8, 8, 1>, nn::conv2d<6, 3>, nn::batch_norm<6>>;
#endif

#if !defined(TINYLARGE_EXPECT_VALID) && TINYLARGE_CASE == 5  // a batch norm after a relu cannot fold
using bn_after_relu = nn::sequential<nn::input<4>, nn::dense<4, 3>, nn::relu, nn::batch_norm<3>>;
#else
using bn_after_relu = nn::sequential<nn::input<4>, nn::dense<4, 3>, nn::batch_norm<3>, nn::relu>;
#endif

void fold(const nn::network<bn_after_relu>& from, nn::network<nn::batch_norm_folded_t<bn_after_relu>>& to) {
  nn::fold_batch_norms(from, to);
}

static_assert(vit::output_size == 16 * 16);
static_assert(cnn::output_size == 6 * 6 * 6);

int main() { return 0; }
