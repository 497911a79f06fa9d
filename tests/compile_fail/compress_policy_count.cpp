// Negative-compile test (tests/CMakeLists.txt): a network_compressor needs exactly one
// compression policy per weighted layer; two policies for a model with three dense layers
// must not compile, with a message that says so. Built with -DTINYLARGE_EXPECT_VALID, the
// same file gives three policies and must compile: the control.
#include "tinylarge/compress/network.hpp"

using model = tinylarge::nn::sequential<tinylarge::nn::dense<8, 6>, tinylarge::nn::relu, tinylarge::nn::dense<6, 4>,
                                        tinylarge::nn::relu, tinylarge::nn::dense<4, 2>>;
namespace cz = tinylarge::compress;

#if defined(TINYLARGE_EXPECT_VALID)
using compressor = cz::network_compressor<model, cz::magnitude_prune<>, cz::none, cz::none>;
#else
using compressor = cz::network_compressor<model, cz::magnitude_prune<>, cz::none>;
#endif

int main() {
  compressor c;
  return static_cast<int>(c.layer_count);
}
