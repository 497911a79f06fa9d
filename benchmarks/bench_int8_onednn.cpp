// int8 GEMM: tinylarge's pre-packed AVX-512 VNNI GEMM against oneDNN's int8
// matmul (Debian libdnnl-dev), one thread, one binary, same run.
//
// Shapes are M×K×N (batch × inputs × outputs), as in bench_kernels:
// Y (M×N) = X (M×K) · Wᵀ with W stored N×K. Both sides get the same problem
// and pre-pack W once, outside the timed loop:
//  - ours:   `pack_dense_s8_gemm` once, then `dense_s8_s32_gemm_packed`
//            (int32 out) / `dense_s8_gemm_packed` (requantized int8 out);
//  - oneDNN: a matmul primitive whose weights descriptor is `format_tag::any`
//            (oneDNN picks its blocked layout), W reordered into it once.
// The computation is the same: s8 X with an input zero point, s8 W, s32 bias,
// int32 accumulation; the int8 output adds per-output-channel requantization,
// an output zero point and saturation (oneDNN: per-channel output scales).
// A oneDNN variant without the source zero point (less work: no compensation)
// is measured too, as `…/onednn_nozp`.
//
// Names: "int8/<shape>/<s32|s8>/<ours|onednn|onednn_nozp>"; the counter
// GFLOPS counts 2 operations per multiply-accumulate. The label of a oneDNN
// benchmark is its implementation (`impl_info_str`, e.g.
// "brg:avx512_core_vnni"); scripts/run_benchmarks.py refuses a ratio against
// a "ref" implementation (a fallback).
#include <benchmark/benchmark.h>
#include <omp.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <oneapi/dnnl/dnnl.hpp>
#include <string>
#include <unordered_map>
#include <vector>

#include "tinylarge/core/rng.hpp"
#include "tinylarge/kernels/dense.hpp"
#include "tinylarge/precision/requantize.hpp"

namespace {

namespace k = tinylarge::kernels;
using dt = dnnl::memory::data_type;
using tag = dnnl::memory::format_tag;

struct shape {
  const char* name;
  std::size_t m, kk, n;
};

/// One problem, shared by both sides.
struct problem {
  shape s;
  std::vector<std::int8_t> x, w;
  std::vector<std::int32_t> bias, mult;
  std::vector<int> shift;
  std::vector<float> scale;  // the real multipliers, for oneDNN
  k::dense_s8_params p;

  explicit problem(shape sh) : s(sh) {
    tinylarge::rng g(11);
    x.resize(s.m * s.kk);
    w.resize(s.n * s.kk);
    for (auto& v : x) v = static_cast<std::int8_t>(static_cast<int>(g.uniform_int(256)) - 128);
    for (auto& v : w) v = static_cast<std::int8_t>(static_cast<int>(g.uniform_int(255)) - 127);
    bias.assign(s.n, 1000);
    mult.resize(s.n);
    shift.resize(s.n);
    scale.resize(s.n);
    for (std::size_t o = 0; o < s.n; ++o) {
      scale[o] = static_cast<float>(0.0007 + 1e-6 * double(o));
      const auto q = tinylarge::quantize_multiplier(scale[o]);
      mult[o] = q.multiplier;
      shift[o] = q.shift;
    }
    p.input_zero_point = -3;
    p.output_zero_point = 2;
    p.multipliers = mult.data();
    p.shifts = shift.data();
    p.per_channel = true;
    p.bias = bias.data();
  }
};

void set_flops(benchmark::State& st, const shape& s) {
  st.counters["GFLOPS"] = benchmark::Counter(2.0 * double(s.m) * double(s.n) * double(s.kk) * 1e-9,
                                             benchmark::Counter::kIsIterationInvariantRate);
}

#if defined(TINYLARGE_KERNELS_X86_AVX512) && defined(__AVX512VNNI__)
using backend = tinylarge::arch::avx512_vnni;

struct aligned_free {
  void operator()(void* p) const noexcept { std::free(p); }
};

void bench_ours(benchmark::State& st, const problem& pr, bool s8_out) {
  const shape& s = pr.s;
  const std::size_t bytes = k::dense_s8_gemm_packed_bytes(backend{}, s.n, s.kk);
  std::unique_ptr<std::int8_t, aligned_free> packed(
      static_cast<std::int8_t*>(std::aligned_alloc(64, (bytes + 63) / 64 * 64)));
  k::pack_dense_s8_gemm(backend{}, s.n, s.kk, pr.w.data(), pr.p, packed.get());
  std::vector<std::int8_t> y(s.m * s.n);
  std::vector<std::int32_t> acc(s.m * s.n);
  for (auto _ : st) {
    if (s8_out) {
      k::dense_s8_gemm_packed(backend{}, s.m, s.n, s.kk, pr.x.data(), packed.get(), pr.p, y.data());
    } else {
      k::dense_s8_s32_gemm_packed(backend{}, s.m, s.n, s.kk, pr.x.data(), packed.get(), acc.data());
    }
    benchmark::DoNotOptimize(y.data());
    benchmark::DoNotOptimize(acc.data());
    benchmark::ClobberMemory();
  }
  st.SetLabel(backend::name());
  set_flops(st, s);
}
#endif

/// oneDNN int8 matmul with pre-packed weights. `zero_point`: apply the source
/// zero point (the same problem as ours); without it oneDNN skips the
/// compensation (a cheaper problem, measured as an upper bound of the peer).
void bench_onednn(benchmark::State& st, const problem& pr, bool s8_out, bool zero_point) {
  const shape& s = pr.s;
  const auto M = static_cast<dnnl::memory::dim>(s.m), K = static_cast<dnnl::memory::dim>(s.kk),
             N = static_cast<dnnl::memory::dim>(s.n);
  dnnl::engine eng(dnnl::engine::kind::cpu, 0);
  dnnl::stream strm(eng);
  const dnnl::memory::desc src_md({M, K}, dt::s8, tag::ab), wei_any({K, N}, dt::s8, tag::any),
      wei_user({K, N}, dt::s8, tag::ba), bias_md({1, N}, dt::s32, tag::ab),
      dst_md({M, N}, s8_out ? dt::s8 : dt::s32, tag::ab);
  // Constant zero points where the primitive supports them, else run-time ones.
  auto make = [&](bool runtime_zp) {
    dnnl::primitive_attr attr;
    if (zero_point)
      attr.set_zero_points(DNNL_ARG_SRC, 0, {runtime_zp ? DNNL_RUNTIME_S32_VAL : pr.p.input_zero_point});
    if (s8_out) {
      attr.set_output_scales(1 << 1, pr.scale);
      attr.set_zero_points(DNNL_ARG_DST, 0, {runtime_zp ? DNNL_RUNTIME_S32_VAL : pr.p.output_zero_point});
    }
    return dnnl::matmul::primitive_desc(dnnl::matmul::desc(src_md, wei_any, bias_md, dst_md), attr, eng);
  };
  bool runtime_zp = false;
  dnnl::matmul::primitive_desc pd;
  try {
    pd = make(false);
    if (std::string(pd.impl_info_str()).rfind("ref", 0) == 0 && (zero_point || s8_out)) {
      pd = make(true);
      runtime_zp = true;
    }
  } catch (const dnnl::error&) {
    pd = make(true);
    runtime_zp = true;
  }
  std::vector<std::int8_t> wcopy(pr.w);
  dnnl::memory src(src_md, eng, const_cast<std::int8_t*>(pr.x.data())), wuser(wei_user, eng, wcopy.data()),
      wpacked(pd.weights_desc(), eng), bias(bias_md, eng, const_cast<std::int32_t*>(pr.bias.data())),
      dst(pd.dst_desc(), eng);
  dnnl::reorder(wuser, wpacked).execute(strm, wuser, wpacked);  // pre-pack once
  strm.wait();
  std::int32_t zx = pr.p.input_zero_point, zy = pr.p.output_zero_point;
  const dnnl::memory::desc zp_md({1}, dt::s32, tag::x);
  dnnl::memory zx_mem(zp_md, eng, &zx), zy_mem(zp_md, eng, &zy);
  std::unordered_map<int, dnnl::memory> args{
      {DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, wpacked}, {DNNL_ARG_BIAS, bias}, {DNNL_ARG_DST, dst}};
  if (runtime_zp && zero_point) args.insert({DNNL_ARG_ATTR_ZERO_POINTS | DNNL_ARG_SRC, zx_mem});
  if (runtime_zp && s8_out) args.insert({DNNL_ARG_ATTR_ZERO_POINTS | DNNL_ARG_DST, zy_mem});
  dnnl::matmul prim(pd);
  for (auto _ : st) {
    prim.execute(strm, args);
    strm.wait();
    benchmark::ClobberMemory();
  }
  st.SetLabel(std::string(pd.impl_info_str()) + (runtime_zp ? " (run-time zero points)" : ""));
  set_flops(st, s);
}

}  // namespace

int main(int argc, char** argv) {
  omp_set_num_threads(1);  // oneDNN's OpenMP runtime: one thread, as ours
  const shape shapes[] = {{"512x512x512", 512, 512, 512}, {"64x784x256", 64, 784, 256}, {"1x784x256", 1, 784, 256}};
  static std::vector<std::unique_ptr<problem>> problems;
  for (const shape& s : shapes) problems.push_back(std::make_unique<problem>(s));
  benchmark::AddCustomContext("onednn_version", std::to_string(dnnl::version()->major) + "." +
                                                    std::to_string(dnnl::version()->minor) + "." +
                                                    std::to_string(dnnl::version()->patch));
#if defined(TINYLARGE_KERNELS_X86_AVX512) && defined(__AVX512VNNI__)
  benchmark::AddCustomContext("tinylarge_backend", backend::name());
#endif
  benchmark::AddCustomContext("onednn_isa", std::to_string(static_cast<int>(dnnl::get_effective_cpu_isa())));
  for (const auto& pp : problems) {
    const problem* pr = pp.get();
    for (bool s8_out : {false, true}) {
      const std::string base = std::string("int8/") + pr->s.name + (s8_out ? "/s8/" : "/s32/");
#if defined(TINYLARGE_KERNELS_X86_AVX512) && defined(__AVX512VNNI__)
      benchmark::RegisterBenchmark((base + "ours").c_str(), [=](benchmark::State& st) {
        bench_ours(st, *pr, s8_out);
      })->Unit(benchmark::kMicrosecond);
#endif
      benchmark::RegisterBenchmark((base + "onednn").c_str(), [=](benchmark::State& st) {
        bench_onednn(st, *pr, s8_out, true);
      })->Unit(benchmark::kMicrosecond);
      benchmark::RegisterBenchmark((base + "onednn_nozp").c_str(), [=](benchmark::State& st) {
        bench_onednn(st, *pr, s8_out, false);
      })->Unit(benchmark::kMicrosecond);
    }
  }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
