// Negative-compile test (tests/CMakeLists.txt): a dense<784, 300> followed by
// a dense<100, 10> must not compile, and the diagnostic must name both layers
// through check_compatible<Prev, Next, Shape>. Built with
// -DTINYLARGE_EXPECT_COMPATIBLE, the same file uses matching layers and must
// compile: that control proves the failure comes from the shape check.
#include "tinylarge/nn/sequential.hpp"

#if defined(TINYLARGE_EXPECT_COMPATIBLE)
using model = tinylarge::nn::sequential<tinylarge::nn::dense<784, 300>, tinylarge::nn::dense<300, 10>>;
#else
using model = tinylarge::nn::sequential<tinylarge::nn::dense<784, 300>, tinylarge::nn::dense<100, 10>>;
#endif

static_assert(model::size == 2);

int main() { return static_cast<int>(model::output_size); }
