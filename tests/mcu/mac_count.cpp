// Instructions per int8 MAC of the library's kernels on the shapes of Arm's CMSIS-NN figures
// (docs/mcu.md): fully connected 1×256→64, convolution 3×3 16→16 channels on 16×16 with
// padding 1, depthwise 3×3 on 16×16×32 with padding 1 — on every back end the core has
// (scalar always; cortex_m_dsp on M4/M7/M55; cortex_m_mve on M55).
//
// Each kernel call is bracketed by calls of the noinline `tl_layer_boundary`; the script
// scripts/mcu_mac_count.sh counts, in a QEMU single-step execution trace, every instruction
// executed between the two calls — the kernel and whatever it calls, inlined or not — and
// divides by the MACs printed here. QEMU is not cycle-accurate: these are instructions.
//
// The outputs of the back ends must be identical (exit 1 otherwise).
#include <tinylarge/freestanding.hpp>

#include <cstdint>

#include "startup.hpp"

namespace k = tl::kernels;

/// tests/mcu/mac_count_edges.cpp: number of depthwise geometries (add, dense cases) on which a back end differs
/// from scalar.
int depthwise_edge_cases(const std::int8_t* x, const std::int8_t* w);
int add_edge_cases(const std::int8_t* x1, const std::int8_t* x2);
int dense_edge_cases(const std::int8_t* x, const std::int8_t* w);

extern "C" __attribute__((noinline)) void tl_layer_boundary(unsigned id, bool begin) {
  __asm__ volatile("" : : "r"(id), "r"(begin) : "memory");
}

namespace {
constexpr std::size_t fc_in = 256, fc_out = 64;
constexpr k::conv_s8_shape conv{16, 16, 16, 3, 1, 1, 16, 16, 16};
constexpr k::conv_s8_shape dw{16, 16, 32, 3, 1, 1, 16, 16, 32};
constexpr std::size_t fc_macs = fc_in * fc_out;
constexpr std::size_t conv_macs = conv.ho * conv.wo * conv.out_c * conv.patch();
constexpr std::size_t dw_macs = dw.ho * dw.wo * dw.out_c * dw.kernel * dw.kernel;

std::int8_t fc_w[fc_out * fc_in], fc_x[fc_in];
std::int8_t conv_w[16 * 3 * 3 * 16], conv_x[16 * 16 * 16];
std::int8_t dw_w[32 * 9], dw_x[16 * 16 * 32];
std::int32_t bias[64], mult[64];
int shift[64];
alignas(4) std::int8_t scratch[k::conv2d_s8_scratch_bytes(16 * 9)];
struct outputs {
  std::int8_t fc[fc_out], conv[16 * 16 * 16], dw[16 * 16 * 32];
};
outputs out_ref, out_b;

std::uint32_t hash(const std::int8_t* p, std::size_t n) {
  std::uint32_t h = 2166136261u;
  for (std::size_t i = 0; i < n; ++i) h = (h ^ static_cast<std::uint8_t>(p[i])) * 16777619u;
  return h;
}

/// Runs the three kernels on back end B, each between two boundary calls; ids 3·slot + 0..2.
template <class B>
void run(unsigned slot, outputs& out, const k::dense_s8_params& p) {
  tl_layer_boundary(3 * slot, true);
  k::dense_s8(B{}, 1, fc_out, fc_in, fc_x, fc_w, p, out.fc);
  tl_layer_boundary(3 * slot, false);
  tl_layer_boundary(3 * slot + 1, true);
  k::conv2d_s8(B{}, conv, conv_x, conv_w, p, out.conv, scratch);
  tl_layer_boundary(3 * slot + 1, false);
  tl_layer_boundary(3 * slot + 2, true);
  k::depthwise_conv2d_s8(B{}, dw, 1, dw_x, dw_w, p, out.dw);
  tl_layer_boundary(3 * slot + 2, false);
  tl_mcu::puts("mac_count: backend ");
  tl_mcu::puts(B::name());
  tl_mcu::puts(" fc ");
  tl_mcu::put_int(static_cast<long>(fc_macs));
  tl_mcu::puts(" conv ");
  tl_mcu::put_int(static_cast<long>(conv_macs));
  tl_mcu::puts(" depthwise ");
  tl_mcu::put_int(static_cast<long>(dw_macs));
  tl_mcu::puts("\n");
}
}  // namespace

int main() {
  tl::rng gen(7);
  auto fill = [&](std::int8_t* p, std::size_t n) {
    for (std::size_t i = 0; i < n; ++i) p[i] = static_cast<std::int8_t>(static_cast<int>(gen.uniform_int(255)) - 127);
  };
  fill(fc_w, sizeof fc_w);
  fill(fc_x, sizeof fc_x);
  fill(conv_w, sizeof conv_w);
  fill(conv_x, sizeof conv_x);
  fill(dw_w, sizeof dw_w);
  fill(dw_x, sizeof dw_x);
  for (std::size_t o = 0; o < 64; ++o) {
    bias[o] = static_cast<std::int32_t>(gen.uniform_int(2001)) - 1000;
    const auto m = tl::quantize_multiplier(0.0005 + 0.00001 * static_cast<double>(o));
    mult[o] = m.multiplier;
    shift[o] = m.shift;
  }
  k::dense_s8_params p;
  p.input_zero_point = -5;
  p.output_zero_point = 3;
  p.multipliers = mult;
  p.shifts = shift;
  p.per_channel = true;
  p.bias = bias;
  run<tl::arch::scalar>(0, out_ref, p);
  unsigned slot = 1;
  int failures = 0;
  auto compare = [&](const char* name) {
    if (hash(out_ref.fc, sizeof out_ref.fc) != hash(out_b.fc, sizeof out_b.fc) ||
        hash(out_ref.conv, sizeof out_ref.conv) != hash(out_b.conv, sizeof out_b.conv) ||
        hash(out_ref.dw, sizeof out_ref.dw) != hash(out_b.dw, sizeof out_b.dw)) {
        tl_mcu::puts("mac_count: ");
        tl_mcu::puts(name);
        tl_mcu::puts(" output differs from the scalar back end\n");
        ++failures;
      }
  };
#if defined(__ARM_FEATURE_DSP)
  run<tl::arch::cortex_m_dsp>(slot++, out_b, p);
  compare("cortex_m_dsp");
#endif
#if defined(__ARM_FEATURE_MVE) && (__ARM_FEATURE_MVE & 1)
  run<tl::arch::cortex_m_mve>(slot++, out_b, p);
  compare("cortex_m_mve");
#endif
  // Depthwise geometries the benchmark shape does not reach, in another translation unit so that
  // they do not change how GCC compiles the measured calls above (tests/mcu/mac_count_edges.cpp).
  failures += depthwise_edge_cases(dw_x, dw_w);
  failures += add_edge_cases(dw_x, dw_x + 4096);
  failures += dense_edge_cases(dw_x, dw_x + 2048);
  (void)slot;
  (void)compare;
  if (failures == 0) tl_mcu::puts("mac_count: outputs identical on every back end\n");
  return failures == 0 ? 0 : 1;
}
