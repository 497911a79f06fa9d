// Counts the instructions one int8 MAC costs on the Cortex-M DSP path and on
// the plain path. scripts/mcu_mac_count.sh runs this under qemu-system-arm with
// a single-step execution trace and counts the trace lines whose PC lies in
// the two noinline functions below (and what they call). QEMU is not
// cycle-accurate: these are instructions, not cycles.
#include <tinylarge/freestanding.hpp>

#include <cstdint>

#include "startup.hpp"

namespace {
constexpr std::size_t in_features = 256, out_features = 64;
std::int8_t weights[out_features * in_features];
std::int8_t input[in_features];
std::int8_t out_dsp[out_features], out_plain[out_features];
std::int32_t bias[out_features], multipliers[out_features];
int shifts[out_features];
}  // namespace

extern "C" __attribute__((noinline)) void tl_run_dsp(const tl::kernels::dense_s8_params& p) {
  tl::kernels::dense_s8(tl::arch::cortex_m_dsp{}, 1, out_features, in_features, input, weights, p,
                        out_dsp);
}
extern "C" __attribute__((noinline)) void tl_run_plain(const tl::kernels::dense_s8_params& p) {
  tl::kernels::dense_s8(tl::arch::scalar{}, 1, out_features, in_features, input, weights, p,
                        out_plain);
}

int main() {
  tl::rng gen(7);
  for (auto& w : weights) w = static_cast<std::int8_t>(static_cast<int>(gen.uniform_int(255)) - 127);
  for (auto& x : input) x = static_cast<std::int8_t>(static_cast<int>(gen.uniform_int(256)) - 128);
  for (std::size_t o = 0; o < out_features; ++o) {
    bias[o] = static_cast<std::int32_t>(gen.uniform_int(2001)) - 1000;
    const auto m = tl::quantize_multiplier(0.001);
    multipliers[o] = m.multiplier;
    shifts[o] = m.shift;
  }
  tl::kernels::dense_s8_params p;
  p.input_zero_point = -5;
  p.multipliers = multipliers;
  p.shifts = shifts;
  p.per_channel = true;
  p.bias = bias;
  tl_run_dsp(p);
  tl_run_plain(p);
  for (std::size_t o = 0; o < out_features; ++o)
    if (out_dsp[o] != out_plain[o]) {
      tl_mcu::puts("mac_count: DSP and plain outputs differ\n");
      return 1;
    }
  tl_mcu::puts("mac_count: outputs identical, MACs per call = ");
  tl_mcu::put_int(static_cast<long>(in_features * out_features));
  tl_mcu::puts("\n");
  return 0;
}
