// Helper of the nn_torch_interop test (tests/nn_torch_interop.py):
//   nn_torch_interop <torch_weights.npz> <inputs.npz> <outputs.npz> <exported.npz>
// loads a state dict written from PyTorch, runs the same model on the inputs
// (NHWC), writes the outputs, and exports the weights back in PyTorch layout.
#include <cstdio>
#include <map>
#include <string>

#include "tinylarge/io/npz.hpp"
#include "tinylarge/nn/nn.hpp"

using model = tl::sequential<tl::input<8, 8, 1>, tl::conv2d<4, 3, 1, 1>, tl::relu, tl::max_pool2d<2>,
                             tl::depthwise_conv2d<3, 1, 1, 2>, tl::relu6, tl::avg_pool2d<2>, tl::flatten,
                             tl::dense<32, 5>, tl::tanh_act, tl::dense<5, 3>>;

int main(int argc, char** argv) {
  if (argc != 5) {
    std::fprintf(stderr, "usage: %s torch_weights.npz inputs.npz outputs.npz exported.npz\n", argv[0]);
    return 2;
  }
#if TINYLARGE_HAS_EXCEPTIONS
  try {
#endif
    tl::nn::network<model> net(1);
    tl::nn::load_npz(argv[1], net);
    const auto in = tl::io::load_npz(argv[2]).at("x");
    const std::size_t n = in.shape.at(0);
    if (in.size() != n * model::input_size) {
      std::fprintf(stderr, "inputs.npz: x must be n x 8 x 8 x 1\n");
      return 1;
    }
    const float* y = net.forward(in.data.data(), n);
    tl::io::npy_array out{{n, model::output_size}, std::vector<float>(y, y + n * model::output_size)};
    tl::io::save_npz(argv[3], std::map<std::string, tl::io::npy_array>{{"y", out}});
    tl::nn::save_npz(argv[4], net);
#if TINYLARGE_HAS_EXCEPTIONS
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
#endif
  // Without exceptions a failure traps inside the library (non-zero exit).
  return 0;
}
