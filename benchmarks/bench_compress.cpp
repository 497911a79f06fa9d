// Compression benchmarks (engineer F), single-threaded:
//  - Huffman (tinylarge, canonical, ≤ 16-bit codes, table decoder) against zstd levels 3 and
//    19 on the same byte-per-symbol streams: coded size (counter `bytes`, and `vs_entropy` =
//    size / empirical order-0 entropy, header included) and decode speed (symbols/s = bytes
//    of output per second);
//  - 1-D k-means of 1M weights into 16 clusters (benchmarks/bench_compress_kmeans.py runs
//    scikit-learn on data of the same distribution);
//  - batch-1 inference of a pruned layer: relative-index CSR (fp32 and 4-bit codebook
//    values) against the dense kernel (scalar and the default SIMD back end) at 90 / 95 %.
//
// Streams: `kmeans5` = 5-bit k-means indices of 1M N(0, 1) weights (linear init, as Deep
// Compression), `gaps5` = 5-bit column gaps (with fillers) of a 1000×1000 matrix pruned to 92 %.

#include <benchmark/benchmark.h>
#include <zstd.h>

#include <cstdint>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "tinylarge/compress/huffman.hpp"
#include "tinylarge/compress/kernels.hpp"
#include "tinylarge/compress/pruning.hpp"
#include "tinylarge/compress/sparse.hpp"
#include "tinylarge/compress/weight_sharing.hpp"
#include "tinylarge/core/rng.hpp"
#include "tinylarge/kernels/dense.hpp"

namespace c = tinylarge::compress;

namespace {

std::vector<float> gaussian(std::size_t n, std::uint64_t seed, float sd) {
  tinylarge::rng g(seed);
  std::vector<float> v(n);
  for (auto& x : v) x = g.normal(0.0f, sd);
  return v;
}

struct stream {
  std::vector<std::uint8_t> symbols;
  std::size_t alphabet = 0;
  double entropy_bytes = 0.0;
};

const stream& get_stream(int which) {
  static std::map<int, stream> cache;
  auto it = cache.find(which);
  if (it != cache.end()) return it->second;
  stream s;
  if (which == 0) {
    const auto w = gaussian(1000000, 1, 1.0f);
    c::kmeans_options opt;
    opt.clusters = 32;
    s.symbols = c::kmeans_1d(w, opt).labels;
    s.alphabet = 32;
  } else {
    auto w = gaussian(1000 * 1000, 2, 1.0f);
    std::vector<std::uint8_t> mask(w.size());
    c::prune_by_magnitude(w, 0.92, mask);
    s.symbols = c::to_relative_csr({w.data(), 1000, 1000}, 5).gaps;
    s.alphabet = 32;
  }
  std::uint64_t counts[256] = {};
  for (auto v : s.symbols) ++counts[v];
  s.entropy_bytes = c::empirical_entropy_bits(counts, s.alphabet) / 8.0;
  return cache.emplace(which, std::move(s)).first->second;
}

const char* stream_name(int which) { return which == 0 ? "kmeans5" : "gaps5"; }

template <unsigned TableBits>
void BM_huffman_decode(benchmark::State& state) {
  const stream& s = get_stream(static_cast<int>(state.range(0)));
  const auto enc = c::huffman_encode(s.symbols, s.alphabet);
  std::vector<std::uint8_t> out(s.symbols.size());
  for (auto _ : state) {
    std::size_t n = 0;
    const auto st = c::huffman_decode<TableBits>(enc.data(), enc.size(), out.data(), out.size(), &n);
    if (!st.ok()) state.SkipWithError(st.message);
    benchmark::DoNotOptimize(out.data());
  }
  if (out != s.symbols) state.SkipWithError("round trip failed");
  state.SetLabel(stream_name(static_cast<int>(state.range(0))));
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * s.symbols.size()));
  state.counters["bytes"] = static_cast<double>(enc.size());
  state.counters["vs_entropy"] = static_cast<double>(enc.size()) / s.entropy_bytes;
}
BENCHMARK_TEMPLATE(BM_huffman_decode, 10)->Arg(0)->Arg(1)->Unit(benchmark::kMicrosecond);
BENCHMARK_TEMPLATE(BM_huffman_decode, 12)->Arg(0)->Arg(1)->Unit(benchmark::kMicrosecond);

void BM_huffman_encode(benchmark::State& state) {
  const stream& s = get_stream(static_cast<int>(state.range(0)));
  std::vector<std::uint8_t> out(c::huffman_max_encoded_size(s.symbols.size(), s.alphabet));
  for (auto _ : state) {
    std::size_t w = 0;
    const auto st = c::huffman_encode(s.symbols.data(), s.symbols.size(), s.alphabet, out.data(), out.size(), &w);
    if (!st.ok()) state.SkipWithError(st.message);
    benchmark::DoNotOptimize(out.data());
  }
  state.SetLabel(stream_name(static_cast<int>(state.range(0))));
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * s.symbols.size()));
}
BENCHMARK(BM_huffman_encode)->Arg(0)->Arg(1)->Unit(benchmark::kMicrosecond);

void BM_zstd_decode(benchmark::State& state) {
  const stream& s = get_stream(static_cast<int>(state.range(0)));
  const int level = static_cast<int>(state.range(1));
  std::vector<std::uint8_t> enc(ZSTD_compressBound(s.symbols.size()));
  const std::size_t n = ZSTD_compress(enc.data(), enc.size(), s.symbols.data(), s.symbols.size(), level);
  if (ZSTD_isError(n)) {
    state.SkipWithError("ZSTD_compress failed");
    return;
  }
  enc.resize(n);
  std::vector<std::uint8_t> out(s.symbols.size());
  for (auto _ : state) {
    const std::size_t d = ZSTD_decompress(out.data(), out.size(), enc.data(), enc.size());
    if (ZSTD_isError(d)) state.SkipWithError("ZSTD_decompress failed");
    benchmark::DoNotOptimize(out.data());
  }
  if (out != s.symbols) state.SkipWithError("round trip failed");
  state.SetLabel(std::string(stream_name(static_cast<int>(state.range(0)))) + " level " + std::to_string(level));
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * s.symbols.size()));
  state.counters["bytes"] = static_cast<double>(enc.size());
  state.counters["vs_entropy"] = static_cast<double>(enc.size()) / s.entropy_bytes;
}
BENCHMARK(BM_zstd_decode)->Args({0, 3})->Args({0, 19})->Args({1, 3})->Args({1, 19})->Unit(benchmark::kMicrosecond);

void BM_kmeans_1M_16(benchmark::State& state) {
  const auto w = gaussian(1000000, 3, 0.05f);
  c::kmeans_options opt;
  opt.clusters = 16;
  opt.init = static_cast<c::centroid_init>(state.range(0));
  opt.tolerance = state.range(1) == 0 ? 0.0 : 1e-4;
  c::kmeans_result r;
  for (auto _ : state) {
    r = c::kmeans_1d(w, opt);
    benchmark::DoNotOptimize(r.centroids.data());
  }
  state.SetLabel(std::string(opt.init == c::centroid_init::linear ? "linear" : opt.init == c::centroid_init::density ? "density" : "kmeans++") +
                 (opt.tolerance == 0.0 ? ", exact fixed point" : ", tol 1e-4 (sklearn rule)"));
  state.counters["iterations"] = static_cast<double>(r.iterations);
  state.counters["inertia"] = r.inertia;
}
BENCHMARK(BM_kmeans_1M_16)->Args({0, 0})->Args({0, 1})->Args({1, 0})->Args({2, 0})->Unit(benchmark::kMillisecond);

// Batch-1 layer rows×cols at the given sparsity (‰).
struct layer {
  std::size_t rows, cols;
  std::vector<float> w, x, b, y;
  c::relative_csr<float> csr;
  c::relative_csr<std::uint8_t> csr_cb;
};

const layer& get_layer(std::size_t rows, std::size_t cols, int permille) {
  static std::map<std::tuple<std::size_t, std::size_t, int>, layer> cache;
  const auto key = std::make_tuple(rows, cols, permille);
  auto it = cache.find(key);
  if (it != cache.end()) return it->second;
  layer l{rows, cols, gaussian(rows * cols, 5, 0.1f), gaussian(cols, 6, 1.0f), gaussian(rows, 7, 0.1f),
          std::vector<float>(rows), {}, {}};
  std::vector<std::uint8_t> mask(l.w.size());
  if (permille > 0) c::prune_by_magnitude(l.w, permille / 1000.0, mask);
  l.csr = c::to_relative_csr({l.w.data(), rows, cols}, 8);
  c::weight_sharing<4> share;
  c::weight_sharing<4>::state<float> st;
  auto shared = l.w;
  share.apply(st, {shared.data(), rows, cols});
  l.csr_cb = c::to_relative_csr({shared.data(), rows, cols}, st.labels, st.centroids, 8);
  return cache.emplace(key, std::move(l)).first->second;
}

void set_layer_label(benchmark::State& state, const char* what) {
  state.SetLabel(std::string(what) + " " + std::to_string(state.range(0)) + "x" + std::to_string(state.range(1)) +
                 " sparsity " + std::to_string(state.range(2) / 10) + "%");
}

void BM_dense_scalar(benchmark::State& state) {
  auto& l = const_cast<layer&>(get_layer(static_cast<std::size_t>(state.range(0)), static_cast<std::size_t>(state.range(1)), static_cast<int>(state.range(2))));
  for (auto _ : state) {
    tinylarge::kernels::dense_f32(tinylarge::arch::scalar{}, 1, l.rows, l.cols, l.x.data(), l.w.data(), l.b.data(), l.y.data());
    benchmark::DoNotOptimize(l.y.data());
  }
  set_layer_label(state, "dense scalar");
}
void BM_dense_default(benchmark::State& state) {
  auto& l = const_cast<layer&>(get_layer(static_cast<std::size_t>(state.range(0)), static_cast<std::size_t>(state.range(1)), static_cast<int>(state.range(2))));
  for (auto _ : state) {
    tinylarge::kernels::dense_f32(1, l.rows, l.cols, l.x.data(), l.w.data(), l.b.data(), l.y.data());
    benchmark::DoNotOptimize(l.y.data());
  }
  set_layer_label(state, (std::string("dense ") + tinylarge::kernels::default_backend::name()).c_str());
}
void BM_sparse_f32(benchmark::State& state) {
  auto& l = const_cast<layer&>(get_layer(static_cast<std::size_t>(state.range(0)), static_cast<std::size_t>(state.range(1)), static_cast<int>(state.range(2))));
  const auto v = l.csr.view();
  for (auto _ : state) {
    c::sparse_dense_f32(tinylarge::arch::scalar{}, 1, v, l.x.data(), l.b.data(), l.y.data());
    benchmark::DoNotOptimize(l.y.data());
  }
  set_layer_label(state, "sparse CSR fp32");
  state.counters["entries"] = static_cast<double>(l.csr.entries());
}
void BM_sparse_codebook(benchmark::State& state) {
  auto& l = const_cast<layer&>(get_layer(static_cast<std::size_t>(state.range(0)), static_cast<std::size_t>(state.range(1)), static_cast<int>(state.range(2))));
  const auto v = l.csr_cb.view();
  for (auto _ : state) {
    c::sparse_dense_f32(tinylarge::arch::scalar{}, 1, v, l.x.data(), l.b.data(), l.y.data());
    benchmark::DoNotOptimize(l.y.data());
  }
  set_layer_label(state, "sparse CSR 4-bit codebook");
}
#define TL_LAYERS Args({300, 784, 0})->Args({300, 784, 900})->Args({300, 784, 950})->Args({1024, 1024, 900})->Args({1024, 1024, 950})
void BM_sparse_f32_host(benchmark::State& state) {
  auto& l = const_cast<layer&>(get_layer(static_cast<std::size_t>(state.range(0)), static_cast<std::size_t>(state.range(1)), static_cast<int>(state.range(2))));
  const auto v = l.csr.view();
  for (auto _ : state) {
    c::sparse_dense_f32(tinylarge::kernels::default_backend{}, 1, v, l.x.data(), l.b.data(), l.y.data());
    benchmark::DoNotOptimize(l.y.data());
  }
  set_layer_label(state, "sparse CSR fp32, 4 accumulators");
}
BENCHMARK(BM_sparse_f32_host)->TL_LAYERS;
BENCHMARK(BM_dense_scalar)->TL_LAYERS;
BENCHMARK(BM_dense_default)->TL_LAYERS;
BENCHMARK(BM_sparse_f32)->TL_LAYERS;
BENCHMARK(BM_sparse_codebook)->TL_LAYERS;

}  // namespace

BENCHMARK_MAIN();
