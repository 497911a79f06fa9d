// Zero overhead of the split-learning templates: the device segment's forward
// pass, as the workflow instantiates it (tl::psl<Traits>::device_model run by
// tl::nn::network), against a hand-written sequence doing the same arithmetic
// (one dense_f32 kernel call and a ReLU loop). Run under callgrind by
// benchmarks/bench_split_callgrind.sh, which counts the instructions of each
// function (deterministic) and requires them to agree within 2%.
//
//   bench_split_callgrind workflow|hand      (one of the two, 20 batches of 16)
#include <cstdio>
#include <cstring>
#include <vector>

#include "tinylarge/workflow/split.hpp"

namespace {
using lenet_300_100 = tl::sequential<tl::dense<784, 300>, tl::relu, tl::dense<300, 100>, tl::relu, tl::dense<100, 10>>;
struct fleet {
  using model = lenet_300_100;
  using partition = tl::cut<2>;
};
using device_model = tl::psl<fleet>::device_model;
constexpr std::size_t batch = 16, repeats = 20;
constexpr std::size_t in = 784, out = 300;
static_assert(device_model::input_size == in && device_model::output_size == out);
}  // namespace

extern "C" __attribute__((noinline)) float tl_bench_workflow_forward(tl::nn::network<device_model>& net,
                                                                     const float* x) {
  float s = 0.0f;
  for (std::size_t r = 0; r < repeats; ++r) s += net.forward(x, batch, false)[r];
  return s;
}

extern "C" __attribute__((noinline)) float tl_bench_hand_forward(const float* w, const float* x, float* pre,
                                                                 float* y) {
  float s = 0.0f;
  for (std::size_t r = 0; r < repeats; ++r) {
    tl::kernels::dense_f32(tl::kernels::default_backend{}, batch, out, in, x, w, w + in * out, pre);
    for (std::size_t i = 0; i < batch * out; ++i) y[i] = pre[i] > 0.0f ? pre[i] : 0.0f;
    s += y[r];
  }
  return s;
}

int main(int argc, char** argv) {
  const bool hand = argc > 1 && std::strcmp(argv[1], "hand") == 0;
  tl::nn::network<device_model> net(7);
  std::vector<float> x(batch * in), pre(batch * out), y(batch * out);
  tl::rng g(3);
  for (float& v : x) v = g.uniform();
  const float s = hand ? tl_bench_hand_forward(net.parameters().data(), x.data(), pre.data(), y.data())
                       : tl_bench_workflow_forward(net, x.data());
  // Both compute the same numbers: print the checksum so that the work is kept.
  std::printf("%s checksum %.6f\n", hand ? "hand" : "workflow", static_cast<double>(s));
  return 0;
}
