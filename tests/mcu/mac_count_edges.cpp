// Depthwise geometries that the benchmark shape of mac_count.cpp does not reach — channel tails,
// stride 2, 5×5, no padding, depth multiplier 2, per-tensor, real multipliers ≥ 1 and = 1, relu —
// on every back end the core has, each compared with the scalar back end. A separate translation
// unit, so that these calls do not change how GCC compiles the measured calls in mac_count.cpp.
#include <tinylarge/freestanding.hpp>

#include <cstdint>

#include "startup.hpp"

namespace k = tl::kernels;

namespace {
std::uint32_t fnv(const std::int8_t* p, std::size_t n) {
  std::uint32_t h = 2166136261u;
  for (std::size_t i = 0; i < n; ++i) h = (h ^ static_cast<std::uint8_t>(p[i])) * 16777619u;
  return h;
}
std::int8_t ref[9 * 9 * 12], got[9 * 9 * 12];

/// Runs `compute(backend)` (which writes n outputs to `out`) on every back end the core has
/// besides scalar and counts those whose output hash differs from `want`.
template <class Compute>
int differing_backends(const char* what, std::uint32_t want, const std::int8_t* out, std::size_t n, Compute compute) {
  int failures = 0;
  auto check = [&](auto backend) {
    compute(backend);
    if (fnv(out, n) != want) {
      tl_mcu::puts("mac_count: ");
      tl_mcu::puts(what);
      tl_mcu::puts(" differs from the scalar back end on ");
      tl_mcu::puts(decltype(backend)::name());
      tl_mcu::puts("\n");
      ++failures;
    }
  };
  (void)check;
#if defined(__ARM_FEATURE_DSP)
  check(tl::arch::cortex_m_dsp{});
#endif
#if defined(__ARM_FEATURE_MVE) && (__ARM_FEATURE_MVE & 1)
  check(tl::arch::cortex_m_mve{});
#endif
  return failures;
}
std::int32_t bias[16], mult[16];
int shift[16];
}  // namespace

int depthwise_edge_cases(const std::int8_t* x, const std::int8_t* w) {
  struct dw_case { k::conv_s8_shape s; std::size_t mult; bool per_channel; double scale; std::int8_t act_min; };
  const dw_case cases[] = {
      {{9, 7, 7, 3, 2, 1, 5, 4, 7}, 1, false, 0.002, -128},  // 7 channels: a predicated tail; stride 2
      {{8, 9, 11, 5, 1, 2, 8, 9, 11}, 1, true, 1.7, 3},      // 5×5, multipliers ≥ 1 (left shift), relu
      {{6, 6, 4, 3, 1, 0, 4, 4, 4}, 1, true, 1.0, -128},     // no padding, multiplier 1 (shift 1)
      {{7, 5, 5, 3, 1, 1, 7, 5, 10}, 2, true, 0.01, -20},    // depth multiplier 2
  };
  int failures = 0;
  for (const dw_case& dc : cases) {
    for (std::size_t o = 0; o < 16; ++o) {
      const auto m = tl::quantize_multiplier(dc.scale * (1.0 + 0.37 * static_cast<double>(o % 5)));
      mult[o] = m.multiplier;
      shift[o] = m.shift;
      bias[o] = static_cast<std::int32_t>(o * 977 % 2001) - 1000;
    }
    k::dense_s8_params q;
    q.input_zero_point = 17;
    q.output_zero_point = -3;
    q.multipliers = mult;
    q.shifts = shift;
    q.per_channel = dc.per_channel;
    q.bias = bias;
    q.act_min = dc.act_min;
    const std::size_t n = dc.s.ho * dc.s.wo * dc.s.out_c;
    k::depthwise_conv2d_s8(tl::arch::scalar{}, dc.s, dc.mult, x, w, q, ref);
    failures += differing_backends("a depthwise edge case", fnv(ref, n), got, n, [&](auto backend) {
      k::depthwise_conv2d_s8(backend, dc.s, dc.mult, x, w, q, got);
    });
  }
  if (failures == 0) tl_mcu::puts("mac_count: depthwise edge cases identical on every back end\n");
  return failures;
}

// The int8 residual add (`add_s8`): lengths with and without a tail of n mod 4, input scales in
// both orders, an output multiplier ≥ 1 (a left shift), a relu clamp and an output written over
// its first input; each back end against the scalar one.
int add_edge_cases(const std::int8_t* x1, const std::int8_t* x2) {
  struct add_case { std::size_t n; double s1, s2, sy; std::int32_t z1, z2, zy, act_min; bool in_place; };
  const add_case cases[] = {
      {600, 0.02, 0.05, 0.04, 3, -7, 5, -128, false},  // a multiple of 4
      {37, 0.1, 0.01, 0.08, -128, 127, -20, -20, false},  // a tail of 1; relu (act_min = zy)
      {3, 0.03, 0.03, 0.05, 0, 0, 0, -128, false},        // shorter than one vector
      {258, 0.04, 0.02, 2e-9, 11, -3, -1, -128, false},   // output multiplier ≥ 1: left shift, saturation
      {101, 0.07, 0.09, 0.11, -5, 9, 2, -128, true},      // y = x1
  };
  static std::int8_t a[600];
  int failures = 0;
  for (const add_case& ac : cases) {
    const auto m = tl::quantize_add_multipliers(ac.s1, ac.s2, ac.sy, k::add_s8_params::left_shift);
    k::add_s8_params p;
    p.input1_offset = -ac.z1;
    p.input2_offset = -ac.z2;
    p.output_offset = ac.zy;
    p.input1_multiplier = m.input1.multiplier;
    p.input1_shift = m.input1.shift;
    p.input2_multiplier = m.input2.multiplier;
    p.input2_shift = m.input2.shift;
    p.output_multiplier = m.output.multiplier;
    p.output_shift = m.output.shift;
    p.act_min = ac.act_min;
    for (std::size_t i = 0; i < ac.n; ++i) a[i] = x1[i];
    std::int8_t* const out = ac.in_place ? a : got;
    k::add_s8(tl::arch::scalar{}, ac.n, a, x2, p, ac.in_place ? a : ref);
    failures += differing_backends("an add edge case", fnv(ac.in_place ? a : ref, ac.n), out, ac.n, [&](auto backend) {
      for (std::size_t i = 0; i < ac.n; ++i) a[i] = x1[i];
      k::add_s8(backend, ac.n, a, x2, p, out);
    });
  }
  if (failures == 0) tl_mcu::puts("mac_count: add edge cases identical on every back end\n");
  return failures;
}

// int8 dense (the GEMM under conv2d's im2col) on shapes the benchmark's do not reach: an odd
// number of rows and of outputs (a 2×2 block missing a row, a column or both), a k tail, per
// tensor and per channel, multipliers ≥ 1, a relu clamp; each back end against the scalar one.
int dense_edge_cases(const std::int8_t* x, const std::int8_t* w) {
  struct dense_case { std::size_t m, n, k; bool per_channel; double scale; std::int8_t act_min; };
  const dense_case cases[] = {
      {3, 7, 37, true, 0.004, -128},  // odd rows and outputs, a k tail of 5
      {1, 5, 16, false, 0.01, -128},  // one row, per tensor, k = one vector
      {5, 3, 70, true, 1.6, 0},       // multipliers ≥ 1 (left shift), relu
      {2, 1, 9, true, 0.02, -40},     // a single output, k below one vector
  };
  int failures = 0;
  for (const dense_case& dc : cases) {
    for (std::size_t o = 0; o < 16; ++o) {
      const auto m = tl::quantize_multiplier(dc.scale * (1.0 + 0.29 * static_cast<double>(o % 4)));
      mult[o] = m.multiplier;
      shift[o] = m.shift;
      bias[o] = static_cast<std::int32_t>(o * 613 % 1501) - 750;
    }
    k::dense_s8_params q;
    q.input_zero_point = -9;
    q.output_zero_point = 4;
    q.multipliers = mult;
    q.shifts = shift;
    q.per_channel = dc.per_channel;
    q.bias = bias;
    q.act_min = dc.act_min;
    const std::size_t n = dc.m * dc.n;
    k::dense_s8(tl::arch::scalar{}, dc.m, dc.n, dc.k, x, w, q, ref);
    failures += differing_backends("a dense edge case", fnv(ref, n), got, n, [&](auto backend) {
      k::dense_s8(backend, dc.m, dc.n, dc.k, x, w, q, got);
    });
  }
  if (failures == 0) tl_mcu::puts("mac_count: dense edge cases identical on every back end\n");
  return failures;
}
