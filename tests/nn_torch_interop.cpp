// Helper of the nn_torch_interop test (tests/nn_torch_interop.py):
//   nn_torch_interop <torch_weights.npz> <inputs.npz> <outputs.npz> <exported.npz>
// loads a state dict written from PyTorch, runs the same model on the inputs
// (NHWC), writes the outputs, and exports the weights back in PyTorch layout.
//   nn_torch_interop --transformer <in.npz> <out.npz>
//   nn_torch_interop --lm <in.npz> <out.npz>
//   nn_torch_interop --vision <in.npz> <out.npz>
// runs the transformer model below (or, with --lm, the token model; with
// --vision, the patch-embedding / batch-norm model) on
// in.npz's "params" (our flat layout, which the script builds from PyTorch's
// modules), "x" (token ids as floats for --lm) and "dy"; writes the forward
// output "y", and from backward(dy) the input gradient "dx" and the parameter
// gradients "grads" (flat, our layout); then "params_after" (the parameters
// after that training pass: batch norms' running statistics move) and "y_eval",
// the output of an inference pass (running statistics) on the same inputs.
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "tinylarge/io/npz.hpp"
#include "tinylarge/nn/nn.hpp"

using model = tl::sequential<tl::input<8, 8, 1>, tl::conv2d<4, 3, 1, 1>, tl::relu, tl::max_pool2d<2>,
                             tl::depthwise_conv2d<3, 1, 1, 2>, tl::relu6, tl::avg_pool2d<2>, tl::flatten,
                             tl::dense<32, 5>, tl::tanh_act, tl::dense<5, 3>>;

// Pre-norm blocks: causal attention with 2 heads, a GELU MLP on 1×1
// convolutions (position-wise linear layers), then non-causal attention with
// 4 heads and a final layer norm; 5 tokens of width 8.
using transformer_model =
    tl::sequential<tl::input<1, 5, 8>, tl::residual<tl::layer_norm<8>, tl::multi_head_attention<8, 2, true>>,
                   tl::residual<tl::layer_norm<8>, tl::conv2d<16, 1>, tl::gelu, tl::conv2d<8, 1>>,
                   tl::multi_head_attention<8, 4>, tl::layer_norm<8>>;

// Token ids (vocabulary 11) through an embedding, learned and sinusoidal
// positions, pre-RMSNorm blocks (causal attention with 2 heads, a SiLU MLP),
// a final RMSNorm and a position-wise head giving 11 logits per position;
// 6 positions of width 8.
using token_model =
    tl::sequential<tl::input<1, 6, 1>, tl::embedding<11, 8>, tl::learned_positions<6, 8>,
                   tl::sinusoidal_positions<6, 8>, tl::residual<tl::rms_norm<8>, tl::multi_head_attention<8, 2, true>>,
                   tl::residual<tl::rms_norm<8>, tl::conv2d<16, 1>, tl::silu, tl::conv2d<8, 1>>, tl::rms_norm<8>,
                   tl::conv2d<11, 1>>;

// ViT patchify (2×2 patches of an 8×8×2 image → a 4×4 grid of 6-wide tokens),
// a batch norm over the tokens' channels (BatchNorm2d on the conv's output),
// GELU, and a dense layer on the flattened grid followed by a batch norm over
// its 5 features (BatchNorm1d).
using vision_model = tl::sequential<tl::patch_embedding<8, 8, 2, 2, 6>, tl::batch_norm<6>, tl::gelu, tl::flatten,
                                    tl::dense<96, 5>, tl::batch_norm<5>>;

template <class M>
int run_transformer(const char* in_path, const char* out_path) {
  tl::nn::network<M> net(1);
  const auto in = tl::io::load_npz(in_path);
  const auto& params = in.at("params");
  const auto& x = in.at("x");
  const auto& dy = in.at("dy");
  const std::size_t n = x.shape.at(0);
  if (params.size() != M::param_count || x.size() != n * M::input_size || dy.size() != n * M::output_size) {
    std::fprintf(stderr, "in.npz: params must hold %zu values, x n x %zu and dy n x %zu\n", M::param_count,
                 M::input_size, M::output_size);
    return 1;
  }
  auto p = net.parameters();
  for (std::size_t i = 0; i < M::param_count; ++i) p[i] = params.data[i];
  const float* y = net.forward(x.data.data(), n, /*training=*/true);
  std::vector<float> yv(y, y + n * M::output_size), dx(n * M::input_size);
  net.zero_gradients();
  net.backward(dy.data.data(), dx.data());
  const auto g = net.gradients();
  std::map<std::string, tl::io::npy_array> out;
  out.emplace("y", tl::io::npy_array{{n, M::output_size}, yv});
  out.emplace("dx", tl::io::npy_array{{n, M::input_size}, dx});
  out.emplace("grads", tl::io::npy_array{{M::param_count}, std::vector<float>(g.begin(), g.end())});
  out.emplace("params_after", tl::io::npy_array{{M::param_count}, std::vector<float>(p.begin(), p.end())});
  const float* ye = net.forward(x.data.data(), n, /*training=*/false);
  out.emplace("y_eval", tl::io::npy_array{{n, M::output_size}, std::vector<float>(ye, ye + n * M::output_size)});
  tl::io::save_npz(out_path, out);
  return 0;
}

int main(int argc, char** argv) {
  const std::string mode = argc == 4 ? argv[1] : "";
  if (mode == "--transformer" || mode == "--lm" || mode == "--vision") {
#if TINYLARGE_HAS_EXCEPTIONS
    try {
#endif
      if (mode == "--vision") return run_transformer<vision_model>(argv[2], argv[3]);
      return mode == "--lm" ? run_transformer<token_model>(argv[2], argv[3])
                            : run_transformer<transformer_model>(argv[2], argv[3]);
#if TINYLARGE_HAS_EXCEPTIONS
    } catch (const std::exception& e) {
      std::fprintf(stderr, "error: %s\n", e.what());
      return 1;
    }
#endif
  }
  if (argc != 5) {
    std::fprintf(stderr, "usage: %s torch_weights.npz inputs.npz outputs.npz exported.npz\n"
                 "       %s --transformer|--lm|--vision in.npz out.npz\n", argv[0], argv[0]);
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
