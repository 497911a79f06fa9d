// Dense / GEMM kernel benchmarks: tinylarge (default back end of a
// -march=native build) against OpenBLAS (forced to one thread) and the scalar
// reference loop, all in one binary so that every number of a run shares the
// same machine state.
//
// Names are "<shape>/<precision>/<implementation>"; shapes are M×K×N
// (batch × inputs × outputs). Each benchmark reports the counter `GFLOPS`
// (2 operations per multiply-accumulate, also for int8).
#include <benchmark/benchmark.h>
#include <cblas.h>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "tinylarge/core/rng.hpp"
#include "tinylarge/kernels/dense.hpp"
#include "tinylarge/precision/requantize.hpp"

namespace {

namespace k = tinylarge::kernels;
using k::transpose;

struct shape {
  const char* name;
  std::size_t m, kk, n;  // Y (m×n) = X (m×k) · Wᵀ (k×n)
};

std::vector<float> random_floats(std::size_t n, std::uint64_t seed) {
  tinylarge::rng g(seed);
  std::vector<float> v(n);
  for (auto& x : v) x = g.uniform(-1.0f, 1.0f);
  return v;
}

std::vector<std::int8_t> random_s8(std::size_t n, std::uint64_t seed) {
  tinylarge::rng g(seed);
  std::vector<std::int8_t> v(n);
  for (auto& x : v) x = static_cast<std::int8_t>(static_cast<int>(g.uniform_int(255)) - 127);
  return v;
}

void set_flops(benchmark::State& st, const shape& s) {
  st.counters["GFLOPS"] = benchmark::Counter(2.0 * double(s.m) * double(s.n) * double(s.kk) * 1e-9,
                                             benchmark::Counter::kIsIterationInvariantRate);
}

// ---- GEMM C = A·op(B) at M×K×N (fp32), every implementation -----------------

void bench_gemm(benchmark::State& st, shape s, transpose ta, transpose tb, int impl) {
  const auto a = random_floats(s.m * s.kk, 1), b = random_floats(s.kk * s.n, 2);
  std::vector<float> c(s.m * s.n);
  const std::size_t lda = ta == transpose::no ? s.kk : s.m, ldb = tb == transpose::no ? s.n : s.kk;
  for (auto _ : st) {
    if (impl == 0) {
      k::gemm_f32(k::default_backend{}, ta, tb, s.m, s.n, s.kk, 1.0f, a.data(), lda, b.data(), ldb, 0.0f, c.data(),
                  s.n);
    } else if (impl == 1) {
      cblas_sgemm(CblasRowMajor, ta == transpose::no ? CblasNoTrans : CblasTrans,
                  tb == transpose::no ? CblasNoTrans : CblasTrans, int(s.m), int(s.n), int(s.kk), 1.0f, a.data(),
                  int(lda), b.data(), int(ldb), 0.0f, c.data(), int(s.n));
    } else {
      k::gemm_f32(k::scalar{}, ta, tb, s.m, s.n, s.kk, 1.0f, a.data(), lda, b.data(), ldb, 0.0f, c.data(), s.n);
    }
    benchmark::DoNotOptimize(c.data());
    benchmark::ClobberMemory();
  }
  set_flops(st, s);
}

/// gemm<T> with A and B stored as T (half / bfloat16), fp32 products and C:
/// 512³ NN and NT on default_backend (AVX512-BF16: vdpbf16ps for bfloat16).
template <class T, class Encode>
void bench_gemm_lowp(benchmark::State& st, shape s, transpose tb, Encode encode) {
  const auto af = random_floats(s.m * s.kk, 1), bf = random_floats(s.kk * s.n, 2);
  std::vector<T> a(af.size()), b(bf.size());
  for (std::size_t i = 0; i < af.size(); ++i) a[i] = encode(af[i]);
  for (std::size_t i = 0; i < bf.size(); ++i) b[i] = encode(bf[i]);
  std::vector<float> c(s.m * s.n);
  const std::size_t ldb = tb == transpose::no ? s.n : s.kk;
  for (auto _ : st) {
    k::gemm(k::default_backend{}, transpose::no, tb, s.m, s.n, s.kk, 1.0f, a.data(), s.kk, b.data(), ldb, 0.0f,
            c.data(), s.n);
    benchmark::DoNotOptimize(c.data());
    benchmark::ClobberMemory();
  }
  set_flops(st, s);
}

// ---- dense Y = X·Wᵀ + b (fp32, fp16 storage, int8) ---------------------------

void bench_dense_f32(benchmark::State& st, shape s, int impl) {
  const auto x = random_floats(s.m * s.kk, 3), w = random_floats(s.n * s.kk, 4), bias = random_floats(s.n, 5);
  std::vector<float> y(s.m * s.n);
  for (auto _ : st) {
    if (impl == 0) {
      k::dense_f32(k::default_backend{}, s.m, s.n, s.kk, x.data(), w.data(), bias.data(), y.data());
    } else if (impl == 1) {  // OpenBLAS with the same bias handling: Y = b; Y += X·Wᵀ
      for (std::size_t i = 0; i < s.m; ++i) std::memcpy(y.data() + i * s.n, bias.data(), s.n * sizeof(float));
      if (s.m == 1) {
        cblas_sgemv(CblasRowMajor, CblasNoTrans, int(s.n), int(s.kk), 1.0f, w.data(), int(s.kk), x.data(), 1, 1.0f,
                    y.data(), 1);
      } else {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(s.m), int(s.n), int(s.kk), 1.0f, x.data(),
                    int(s.kk), w.data(), int(s.kk), 1.0f, y.data(), int(s.n));
      }
    } else {
      k::dense_f32(k::scalar{}, s.m, s.n, s.kk, x.data(), w.data(), bias.data(), y.data());
    }
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  set_flops(st, s);
}

/// The memory floor of a batch-1 dense layer: read W (n×k fp32) once and sum
/// it into 8 independent vector accumulators; no multiply, no x.
void bench_read_w(benchmark::State& st, shape s) {
  const auto w = random_floats(s.n * s.kk, 4);
  const std::size_t full = w.size() / 128 * 128;
  for (auto _ : st) {
#if defined(__AVX512F__)
    __m512 acc[8];
    for (auto& a : acc) a = _mm512_setzero_ps();
    for (std::size_t i = 0; i < full; i += 128)
      for (std::size_t j = 0; j < 8; ++j) acc[j] = _mm512_add_ps(acc[j], _mm512_loadu_ps(&w[i + 16 * j]));
#else
    float acc[128] = {};
    for (std::size_t i = 0; i < full; i += 128)
      for (std::size_t j = 0; j < 128; ++j) acc[j] += w[i + j];
#endif
    benchmark::DoNotOptimize(acc);
  }
  set_flops(st, s);  // as if it were the layer, for comparison
}

/// Batch-1 / batched dense with X and W stored as bfloat16 (AVX512-BF16:
/// the vdpbf16ps GEMV / GEMM), fp32 bias and Y.
void bench_dense_bf16(benchmark::State& st, shape s) {
  const auto xf = random_floats(s.m * s.kk, 3), wf = random_floats(s.n * s.kk, 4), bias = random_floats(s.n, 5);
  std::vector<tinylarge::bfloat16> x(xf.size()), w(wf.size());
  for (std::size_t i = 0; i < xf.size(); ++i) x[i] = tinylarge::float_to_bfloat16(xf[i]);
  for (std::size_t i = 0; i < wf.size(); ++i) w[i] = tinylarge::float_to_bfloat16(wf[i]);
  std::vector<float> y(s.m * s.n);
  for (auto _ : st) {
    k::dense(k::default_backend{}, s.m, s.n, s.kk, x.data(), w.data(), bias.data(), y.data());
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  set_flops(st, s);
}

void bench_dense_f16(benchmark::State& st, shape s, int impl) {
  const auto x = random_floats(s.m * s.kk, 3), wf = random_floats(s.n * s.kk, 4), bias = random_floats(s.n, 5);
  std::vector<tinylarge::half> w(wf.size());
  for (std::size_t i = 0; i < w.size(); ++i) w[i] = tinylarge::float_to_half(wf[i]);
  std::vector<float> y(s.m * s.n);
  for (auto _ : st) {
    if (impl == 0) {
      k::dense_f16(k::default_backend{}, s.m, s.n, s.kk, x.data(), w.data(), bias.data(), y.data());
    } else {
      k::dense_f16(k::scalar{}, s.m, s.n, s.kk, x.data(), w.data(), bias.data(), y.data());
    }
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  set_flops(st, s);
}

/// int8: impl 0 = dense_s8 (requantized int8 out), 1 = dense_s8_s32 (int32
/// accumulators: the bare GEMM), 2 = scalar dense_s8.
void bench_dense_s8(benchmark::State& st, shape s, int impl) {
  const auto x = random_s8(s.m * s.kk, 6), w = random_s8(s.n * s.kk, 7);
  std::vector<std::int32_t> bias(s.n, 1000), mult(s.n), sums(s.n);
  std::vector<int> shift(s.n);
  for (std::size_t o = 0; o < s.n; ++o) {
    const auto q = tinylarge::quantize_multiplier(0.0007 + 1e-6 * double(o));
    mult[o] = q.multiplier;
    shift[o] = q.shift;
    std::int32_t sw = 0;
    for (std::size_t q2 = 0; q2 < s.kk; ++q2) sw += w[o * s.kk + q2];
    sums[o] = sw;
  }
  k::dense_s8_params p;
  p.input_zero_point = -3;
  p.output_zero_point = 2;
  p.multipliers = mult.data();
  p.shifts = shift.data();
  p.per_channel = true;
  p.bias = bias.data();
  p.weight_row_sums = sums.data();  // as a deployed layer would precompute
  std::vector<std::int8_t> y(s.m * s.n);
  std::vector<std::int32_t> acc(s.m * s.n);
  for (auto _ : st) {
    if (impl == 0) {
      k::dense_s8(k::default_backend{}, s.m, s.n, s.kk, x.data(), w.data(), p, y.data());
    } else if (impl == 1) {
      k::dense_s8_s32(k::default_backend{}, s.m, s.n, s.kk, x.data(), w.data(), p, acc.data());
    } else {
      k::dense_s8(k::scalar{}, s.m, s.n, s.kk, x.data(), w.data(), p, y.data());
    }
    benchmark::DoNotOptimize(y.data());
    benchmark::DoNotOptimize(acc.data());
    benchmark::ClobberMemory();
  }
  set_flops(st, s);
}

void register_all() {
  const shape cube{"512x512x512", 512, 512, 512}, mnist{"64x784x256", 64, 784, 256}, batch1{"1x784x256", 1, 784, 256};
  const char* impl_name[] = {"ours", "openblas", "loop"};
  auto reg = [](const std::string& name, auto fn) { return benchmark::RegisterBenchmark(name.c_str(), fn); };

  for (int impl = 0; impl < 3; ++impl) {
    // 512³ GEMM in the three orientations of training: NN (forward with W
    // stored k×n), NT (forward Y = X·Wᵀ, dX = dY·W), TN (dW = dYᵀ·X).
    const std::pair<const char*, std::pair<transpose, transpose>> cases[] = {
        {"fp32", {transpose::no, transpose::no}},
        {"fp32_nt", {transpose::no, transpose::yes}},
        {"fp32_tn", {transpose::yes, transpose::no}}};
    for (const auto& [prec, t] : cases) {
      if (impl == 2 && std::string(prec) != "fp32") continue;
      // clang 14 cannot capture structured bindings: copy them first.
      const transpose ta = t.first, tb = t.second;
      reg(std::string("gemm/") + cube.name + "/" + prec + "/" + impl_name[impl],
          [=](benchmark::State& st) { bench_gemm(st, cube, ta, tb, impl); })
          ->Unit(benchmark::kMicrosecond);
    }
  }
  for (const auto tb : {transpose::no, transpose::yes}) {
    const std::string suffix = tb == transpose::no ? "" : "_nt";
    reg(std::string("gemm/") + cube.name + "/bf16" + suffix + "/ours", [=](benchmark::State& st) {
      bench_gemm_lowp<tinylarge::bfloat16>(st, cube, tb, [](float v) { return tinylarge::float_to_bfloat16(v); });
    })->Unit(benchmark::kMicrosecond);
    reg(std::string("gemm/") + cube.name + "/fp16" + suffix + "/ours", [=](benchmark::State& st) {
      bench_gemm_lowp<tinylarge::half>(st, cube, tb, [](float v) { return tinylarge::float_to_half(v); });
    })->Unit(benchmark::kMicrosecond);
  }
  for (const shape& s : {cube, mnist, batch1}) {
    for (int impl = 0; impl < 3; ++impl)
      reg(std::string("dense/") + s.name + "/fp32/" + impl_name[impl],
          [=](benchmark::State& st) { bench_dense_f32(st, s, impl); })
          ->Unit(benchmark::kMicrosecond);
    if (s.m == 1)
      reg(std::string("dense/") + s.name + "/fp32/read_w", [=](benchmark::State& st) { bench_read_w(st, s); })
          ->Unit(benchmark::kMicrosecond);
    for (int impl : {0, 2})
      reg(std::string("dense/") + s.name + "/fp16/" + impl_name[impl],
          [=](benchmark::State& st) { bench_dense_f16(st, s, impl); })
          ->Unit(benchmark::kMicrosecond);
    reg(std::string("dense/") + s.name + "/bf16/ours", [=](benchmark::State& st) { bench_dense_bf16(st, s); })
        ->Unit(benchmark::kMicrosecond);
    reg(std::string("dense/") + s.name + "/int8/ours", [=](benchmark::State& st) { bench_dense_s8(st, s, 0); })
        ->Unit(benchmark::kMicrosecond);
    reg(std::string("dense/") + s.name + "/int8_s32/ours", [=](benchmark::State& st) { bench_dense_s8(st, s, 1); })
        ->Unit(benchmark::kMicrosecond);
    reg(std::string("dense/") + s.name + "/int8/loop", [=](benchmark::State& st) { bench_dense_s8(st, s, 2); })
        ->Unit(benchmark::kMicrosecond);
  }
}

}  // namespace

int main(int argc, char** argv) {
  openblas_set_num_threads(1);
  benchmark::AddCustomContext("tinylarge_backend", k::default_backend::name());
  benchmark::AddCustomContext("openblas_config", openblas_get_config());
  register_all();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
