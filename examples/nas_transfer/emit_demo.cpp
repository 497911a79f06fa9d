// Writes a small emitted-model header at build time (no data needed): the
// sub-network 64i75-32f|i of an untrained supernet over the FMNIST space (its
// first layer pruned by magnitude to 75 %), with
// its head taken from the supernet's shared head. nas_deploy compiles it, so
// the build proves that what nas::emit_header writes is a valid
// compile-time model (docs/nas.md). With CONV_OUT.hpp it also writes the
// sub-network k5c8i-k3c16i_64i75|i of a supernet over the space with a conv
// stem (two conv layers, kernels 5 and 3, 8 and 16 channels, int8; the first
// dense layer 75 % pruned), which nas_deploy_conv compiles.
//
//   nas_emit_demo OUT.hpp [CONV_OUT.hpp]
#include <cstdio>
#include <fstream>
#include <vector>

#include "tinylarge/nas/nas.hpp"

int main(int argc, char** argv) {
  if (argc != 2 && argc != 3) {
    std::fprintf(stderr, "usage: %s OUT.hpp [CONV_OUT.hpp]\n", argv[0]);
    return 2;
  }
  namespace nas = tl::nas;
  using p = nas::layer_precision;
  const nas::mlp_space space{.inputs = 784, .outputs = 5, .widths = {32, 64}, .min_depth = 1, .max_depth = 2,
                             .sparsities = {0, 75}};
  const nas::mlp_supernet net(space, 1);
  nas::transferred_model m{{{64, 32}, {p::int8, p::fp32, p::int8}, {75, 0, 0}}, {}, 0.0};
  std::vector<float> w, b;
  for (std::size_t l = 0; l < m.g.depth(); ++l) {
    net.hidden_layer(m.g, l, w, b);
    m.parameters.insert(m.parameters.end(), w.begin(), w.end());
    m.parameters.insert(m.parameters.end(), b.begin(), b.end());
  }
  const auto all = net.parameters();
  const std::size_t h = space.max_depth;  // the shared head: its first 32 columns
  for (std::size_t o = 0; o < space.outputs; ++o)
    for (std::size_t i = 0; i < 32; ++i) m.parameters.push_back(all[net.weight_offset(h) + o * net.cols(h) + i]);
  for (std::size_t o = 0; o < space.outputs; ++o) m.parameters.push_back(all[net.weight_offset(h) + net.rows(h) * net.cols(h) + o]);
  std::ofstream(argv[1]) << nas::emit_header(space, m, "nas_model");
  if (argc == 3) {  // the conv-stem demo: stem, dense layer and the shared head's first 64 columns
    nas::mlp_space cs{.inputs = 784, .outputs = 5, .widths = {32, 64}, .min_depth = 1, .max_depth = 1, .sparsities = {0, 75}};
    cs.max_convs = 2;
    cs.conv_kernels = {3, 5};
    cs.conv_channels = {8, 16};
    const nas::mlp_supernet cnet(cs, 1);
    nas::transferred_model c{{{64}, {p::int8, p::int8}, {75, 0}}, {}, 0.0};
    c.g.convs = {{5, 8, p::int8}, {3, 16, p::int8}};
    for (std::size_t j = 0; j < c.g.convs.size(); ++j) {
      cnet.stem_layer(c.g, j, w, b);
      c.parameters.insert(c.parameters.end(), w.begin(), w.end());
      c.parameters.insert(c.parameters.end(), b.begin(), b.end());
    }
    cnet.hidden_layer(c.g, 0, w, b);
    c.parameters.insert(c.parameters.end(), w.begin(), w.end());
    c.parameters.insert(c.parameters.end(), b.begin(), b.end());
    const auto cp = cnet.parameters();
    const std::size_t ch = cs.max_depth;
    for (std::size_t o = 0; o < cs.outputs; ++o)
      for (std::size_t i = 0; i < 64; ++i) c.parameters.push_back(cp[cnet.weight_offset(ch) + o * cnet.cols(ch) + i]);
    for (std::size_t o = 0; o < cs.outputs; ++o) c.parameters.push_back(cp[cnet.weight_offset(ch) + cnet.rows(ch) * cnet.cols(ch) + o]);
    std::ofstream(argv[2]) << nas::emit_header(cs, c, "nas_model");
  }
  return 0;
}
