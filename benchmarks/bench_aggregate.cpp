// FedAvg throughput: 100 clients × 1M fp32 parameters, against a STREAM-style
// triad over arrays of the same total size, in one binary, single-threaded.
//
//   fedavg/fp32/aggregator   the full round: validation, example-weighted
//                             mean (fused NaN detection), copy to the model
//   fedavg/fp32/block:B      the weighted-sum kernel alone, output block of B
//                             floats (B = 1M: client-by-client over the whole
//                             vector, the numpy way)
//   fedavg/fp16|int8/aggregator  the same round on encoded updates
//   triad                    a[i] = b[i] + s·c[i], |a| = |b| = |c| = total/3
//   read_only                every client's update read once (the same bytes
//                             as fedavg/fp32) into 8 vector sums, nothing
//                             written: the bound of a read-dominated reduction
//
// Throughput counter `GBps` = bytes of updates read (triad: bytes read +
// written, STREAM convention) / CPU time. Run scripts/bench_aggregate.py for
// the table with numpy in the same run.

#include <benchmark/benchmark.h>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "tinylarge/aggregate/aggregator.hpp"
#include "tinylarge/aggregate/update_set.hpp"
#include "tinylarge/core/rng.hpp"
#include "tinylarge/precision/fp16.hpp"

namespace {

constexpr std::size_t kClients = 100;
constexpr std::size_t kParams = std::size_t{1} << 20;  // 1M (1,048,576)

struct fleet {
  std::vector<std::vector<float>> w;
  std::vector<tl::client_result<tl::fp32_update>> results;
  fleet() : w(kClients, std::vector<float>(kParams)) {
    tl::rng g(7);
    for (std::size_t i = 0; i < kClients; ++i) {
      for (auto& x : w[i]) x = g.uniform(-1.0f, 1.0f);
      results.push_back({i, tl::fp32_update{w[i]}, static_cast<std::int64_t>(10 + i)});
    }
  }
};

fleet& fp32_fleet() {
  static fleet f;
  return f;
}

void set_bytes(benchmark::State& st, double bytes) {
  st.counters["GBps"] = benchmark::Counter(bytes * static_cast<double>(st.iterations()) / 1e9, benchmark::Counter::kIsRate);
}

void BM_fedavg_fp32_aggregator(benchmark::State& st) {
  auto& f = fp32_fleet();
  std::vector<float> global(kParams, 0.0f);
  tl::aggregator<tl::fedavg> agg(tl::fedavg{}, kParams);
  for (auto _ : st) {
    auto rep = agg.round(std::span<float>(global), f.results);
    benchmark::DoNotOptimize(rep.outcome.code);
    benchmark::DoNotOptimize(global.data());
    benchmark::ClobberMemory();
  }
  set_bytes(st, static_cast<double>(kClients * kParams * sizeof(float)));
}

void BM_fedavg_fp32_block(benchmark::State& st) {
  auto& f = fp32_fleet();
  std::vector<const tl::client_result<tl::fp32_update>*> ptr;
  for (auto& r : f.results) ptr.push_back(&r);
  const tl::update_set<tl::fp32_update> set(ptr, kParams);
  std::vector<float> coef(kClients, 1.0f / kClients), out(kParams);
  const auto block = static_cast<std::size_t>(st.range(0));
  for (auto _ : st) {
    set.weighted_sum(std::span<const float>(coef), std::span<float>(out), {}, {}, block);
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  set_bytes(st, static_cast<double>(kClients * kParams * sizeof(float)));
}

void BM_fedavg_fp16_aggregator(benchmark::State& st) {
  auto& f = fp32_fleet();
  std::vector<std::vector<tl::half>> h(kClients, std::vector<tl::half>(kParams));
  std::vector<tl::client_result<tl::fp16_update>> res;
  for (std::size_t i = 0; i < kClients; ++i) {
    for (std::size_t j = 0; j < kParams; ++j) h[i][j] = tl::float_to_half(f.w[i][j]);
    res.push_back({i, tl::fp16_update{h[i]}, static_cast<std::int64_t>(10 + i)});
  }
  std::vector<float> global(kParams, 0.0f);
  tl::aggregator<tl::fedavg> agg(tl::fedavg{}, kParams);
  for (auto _ : st) {
    auto rep = agg.round(std::span<float>(global), res);
    benchmark::DoNotOptimize(rep.outcome.code);
    benchmark::ClobberMemory();
  }
  set_bytes(st, static_cast<double>(kClients * kParams * sizeof(tl::half)));
}

void BM_fedavg_int8_aggregator(benchmark::State& st) {
  auto& f = fp32_fleet();
  constexpr std::size_t chunk = 4096;
  std::vector<std::vector<std::int8_t>> q(kClients, std::vector<std::int8_t>(kParams));
  std::vector<std::vector<float>> s(kClients, std::vector<float>(kParams / chunk));
  std::vector<tl::client_result<tl::int8_update>> res;
  for (std::size_t i = 0; i < kClients; ++i) {
    tl::encode_int8_update(f.w[i], chunk, q[i], s[i]);
    res.push_back({i, tl::int8_update{q[i], s[i], {}, chunk}, static_cast<std::int64_t>(10 + i)});
  }
  std::vector<float> global(kParams, 0.0f);
  tl::aggregator<tl::fedavg> agg(tl::fedavg{}, kParams);
  for (auto _ : st) {
    auto rep = agg.round(std::span<float>(global), res);
    benchmark::DoNotOptimize(rep.outcome.code);
    benchmark::ClobberMemory();
  }
  set_bytes(st, static_cast<double>(kClients * kParams * sizeof(std::int8_t)));
}

// STREAM triad over three arrays whose total size equals the updates' total.
void BM_triad(benchmark::State& st) {
  const std::size_t n = kClients * kParams / 3;
  std::vector<float> a(n, 0.0f), b(n, 1.0f), c(n, 2.0f);
  const float s = 3.0f;
  for (auto _ : st) {
    float* TINYLARGE_RESTRICT pa = a.data();
    const float* TINYLARGE_RESTRICT pb = b.data();
    const float* TINYLARGE_RESTRICT pc = c.data();
    for (std::size_t i = 0; i < n; ++i) pa[i] = pb[i] + s * pc[i];
    benchmark::DoNotOptimize(a.data());
    benchmark::ClobberMemory();
  }
  set_bytes(st, static_cast<double>(3 * n * sizeof(float)));
}

// Read-only streaming loop over the same 100 × 1M fp32 updates FedAvg reads.
void BM_read_only(benchmark::State& st) {
  auto& f = fp32_fleet();
  for (auto _ : st) {
#if defined(__AVX512F__)
    __m512 acc[8];
    for (auto& a : acc) a = _mm512_setzero_ps();
    for (const auto& w : f.w)
      for (std::size_t i = 0; i + 128 <= w.size(); i += 128)
        for (std::size_t j = 0; j < 8; ++j) acc[j] = _mm512_add_ps(acc[j], _mm512_loadu_ps(w.data() + i + 16 * j));
#else  // independent lanes: the compiler vectorises the vertical adds
    float acc[128] = {};
    for (const auto& w : f.w)
      for (std::size_t i = 0; i + 128 <= w.size(); i += 128)
        for (std::size_t j = 0; j < 128; ++j) acc[j] += w[i + j];
#endif
    benchmark::DoNotOptimize(acc);
    benchmark::ClobberMemory();
  }
  set_bytes(st, static_cast<double>(kClients * kParams * sizeof(float)));
}

}  // namespace

BENCHMARK(BM_fedavg_fp32_aggregator)->Name("fedavg/fp32/aggregator")->Unit(benchmark::kMillisecond);
BENCHMARK(BM_fedavg_fp32_block)
    ->Name("fedavg/fp32/block")
    ->Arg(1024)
    ->Arg(4096)
    ->Arg(16384)
    ->Arg(65536)
    ->Arg(1 << 20)
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_fedavg_fp16_aggregator)->Name("fedavg/fp16/aggregator")->Unit(benchmark::kMillisecond);
BENCHMARK(BM_fedavg_int8_aggregator)->Name("fedavg/int8/aggregator")->Unit(benchmark::kMillisecond);
BENCHMARK(BM_triad)->Name("triad")->Unit(benchmark::kMillisecond);
BENCHMARK(BM_read_only)->Name("read_only")->Unit(benchmark::kMillisecond);

BENCHMARK_MAIN();
