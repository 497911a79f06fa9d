// LoRA fine-tuning against full fine-tuning of the same model, single
// thread, one run (issue 20): trainable parameters, optimizer-state bytes,
// and the time of one training step (`nn::train_step`, the library's step,
// batch 64, softmax cross-entropy) for each, as the median of `repeats`
// steps taken alternately (full, LoRA, full, …) so that both see the same
// machine load.
//
// Model: 784-1000-1000-10 MLP (relu). Full fine-tuning trains all of it;
// LoRA wraps every dense layer as `nn::lora<dense<In, Out>, 8>` (W₀ and b
// frozen, A and B trained: `nn::lora_model_t<mlp, 8>`). Both step with the
// same optimizer through `nn::trainable_state`, which holds a state for the
// trainable parameters only. Inputs are random (the cost of a step does not
// depend on the values).
//
// Goals (issue 20): trainable parameters and optimizer state ≤ 5 % of full
// fine-tuning; step time ≤ 0.6× full fine-tuning.
//
//   bench_lora [--repeats N] [--batch B]      prints one JSON object per optimizer
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "tinylarge/nn/nn.hpp"

namespace nn = tl::nn;
using mlp = tl::sequential<tl::dense<784, 1000>, tl::relu, tl::dense<1000, 1000>, tl::relu, tl::dense<1000, 10>>;
constexpr std::size_t rank = 8;
using mlp_lora = nn::lora_model_t<mlp, rank>;

namespace {
double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

template <class State>
std::size_t state_floats(const State& s) {
  std::size_t n = 0;
  for (const auto& st : s.states()) {
    if constexpr (requires { st.first_moment(); }) n += st.first_moment().size() + st.second_moment().size();
    else n += st.velocity().size();
  }
  return n;
}

template <class Opt>
void compare(const Opt& opt, const char* label, int repeats, std::size_t batch) {
  auto full = std::make_unique<nn::network<mlp>>(1);
  auto lora = std::make_unique<nn::network<mlp_lora>>(2);
  nn::load_lora_base(*lora, *full);
  nn::trainable_state<Opt, mlp> full_state(opt);
  nn::trainable_state<Opt, mlp_lora> lora_state(opt);

  tl::rng g(3);
  std::vector<float> x(batch * 784), grad(batch * 10);
  std::vector<std::uint8_t> y(batch);
  for (auto& v : x) v = g.uniform();
  for (auto& v : y) v = static_cast<std::uint8_t>(g.uniform() * 10.0f) % 10;
  auto loss = [&](const float* out, float* dl) {
    return nn::softmax_cross_entropy::evaluate(out, y.data(), batch, 10, dl);
  };
  auto step_full = [&] { nn::train_step(*full, x.data(), batch, loss, grad.data(), nn::optimizer_update<decltype(full_state)>{full_state}); };
  auto step_lora = [&] { nn::train_step(*lora, x.data(), batch, loss, grad.data(), nn::optimizer_update<decltype(lora_state)>{lora_state}); };
  for (int i = 0; i < 3; ++i) {
    step_full();
    step_lora();
  }
  std::vector<double> tf, tlr;
  for (int i = 0; i < repeats; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    step_full();
    auto t1 = std::chrono::steady_clock::now();
    step_lora();
    auto t2 = std::chrono::steady_clock::now();
    tf.push_back(std::chrono::duration<double>(t1 - t0).count());
    tlr.push_back(std::chrono::duration<double>(t2 - t1).count());
  }
  const double mf = median(tf), ml = median(tlr);
  const std::size_t sf = state_floats(full_state) * sizeof(float), sl = state_floats(lora_state) * sizeof(float);
  std::printf(
      "{\"optimizer\": \"%s\", \"model\": \"784-1000-1000-10\", \"rank\": %zu, \"batch\": %zu, \"repeats\": %d,\n"
      " \"trainable_params\": {\"full\": %zu, \"lora\": %zu, \"ratio\": %.4f},\n"
      " \"optimizer_state_bytes\": {\"full\": %zu, \"lora\": %zu, \"ratio\": %.4f},\n"
      " \"step_ms_median\": {\"full\": %.3f, \"lora\": %.3f, \"ratio\": %.3f}}\n",
      label, rank, batch, repeats, mlp::trainable_count, mlp_lora::trainable_count,
      static_cast<double>(mlp_lora::trainable_count) / static_cast<double>(mlp::trainable_count), sf, sl,
      sf ? static_cast<double>(sl) / static_cast<double>(sf) : 0.0, 1e3 * mf, 1e3 * ml, ml / mf);
  std::fflush(stdout);
}
}  // namespace

int main(int argc, char** argv) {
  int repeats = 41;
  std::size_t batch = 64;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--repeats") repeats = std::max(1, std::atoi(argv[i + 1]));
    else if (a == "--batch") batch = static_cast<std::size_t>(std::max(1, std::atoi(argv[i + 1])));
  }
  compare(nn::adam{.learning_rate = 1e-3f}, "adam", repeats, batch);
  compare(nn::sgd{.learning_rate = 0.01f, .momentum = 0.9f}, "sgd_momentum", repeats, batch);
  return 0;
}
