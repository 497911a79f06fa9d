// Compression benchmarks (engineer F), single-threaded:
//  - Huffman (tinylarge, canonical, ≤ 16-bit codes, table decoder) against zstd levels 3 and
//    19 on the same byte-per-symbol streams: coded size (counter `bytes`, and `vs_entropy` =
//    size / empirical order-0 entropy, header = table bytes included) and decode speed.
//    Decode speed is decoded OUTPUT bytes per second (one byte per symbol), the usual figure
//    for entropy decoders: counter `out_GBps` in 10^9 bytes/s (Google Benchmark's own
//    `bytes_per_second` is the same quantity in binary units, MiB/s / GiB/s); `in_GBps` is
//    the coded input read per second. Each Huffman decode includes parsing the header and
//    building the tables. After the run a summary prints, per stream, each decoder's
//    out_GBps and its ratio to zstd -3 and -19 measured in the same run. On a shared machine
//    add --benchmark_enable_random_interleaving=true (repetitions of all benchmarks in random
//    order), so that a change of load falls on every decoder alike rather than on one;
//  - 1-D k-means of 1M weights into 16 clusters (benchmarks/bench_compress_kmeans.py runs
//    scikit-learn on data of the same distribution);
//  - batch-1 inference of a pruned layer: relative-index CSR (fp32 and 4-bit codebook
//    values) against the dense kernel (scalar and the default SIMD back end) at 90 / 95 %.
//
// Streams: `kmeans5` = 5-bit k-means indices of 1M N(0, 1) weights (linear init, as Deep
// Compression), `gaps5` = 5-bit column gaps (with fillers) of a 1000×1000 matrix pruned to 92 %.

#include <benchmark/benchmark.h>
#include <zstd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
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

// Decode counters shared by Huffman and zstd: output and input rates in 10^9 bytes/s, coded
// size, size / entropy.
void set_decode_counters(benchmark::State& state, const stream& s, std::size_t coded_bytes) {
  const double it = static_cast<double>(state.iterations());
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * s.symbols.size()));
  state.counters["out_GBps"] = benchmark::Counter(it * static_cast<double>(s.symbols.size()) / 1e9,
                                                  benchmark::Counter::kIsRate);
  state.counters["in_GBps"] = benchmark::Counter(it * static_cast<double>(coded_bytes) / 1e9, benchmark::Counter::kIsRate);
  state.counters["bytes"] = static_cast<double>(coded_bytes);
  state.counters["vs_entropy"] = static_cast<double>(coded_bytes) / s.entropy_bytes;
}

// Format 1 (one bit stream, the on-device decoder's loop) and format 2 (four bit streams,
// decoded together by the host's interleaved loop).
template <unsigned TableBits, c::huffman_format Format>
void BM_huffman_decode(benchmark::State& state) {
  const stream& s = get_stream(static_cast<int>(state.range(0)));
  const auto enc = c::huffman_encode(s.symbols, s.alphabet, Format);
  std::vector<std::uint8_t> out(s.symbols.size());
  for (auto _ : state) {
    std::size_t n = 0;
    const auto st = c::huffman_decode<TableBits, c::huffman_decode_mode::interleaved>(enc.data(), enc.size(),
                                                                                     out.data(), out.size(), &n);
    if (!st.ok()) state.SkipWithError(st.message);
    benchmark::DoNotOptimize(out.data());
  }
  if (out != s.symbols) state.SkipWithError("round trip failed");
  state.SetLabel(stream_name(static_cast<int>(state.range(0))));
  set_decode_counters(state, s, enc.size());
}
template <unsigned TableBits>
void BM_huffman_decode(benchmark::State& state) {
  BM_huffman_decode<TableBits, c::huffman_format::single>(state);
}
template <unsigned TableBits>
void BM_huffman4_decode(benchmark::State& state) {
  BM_huffman_decode<TableBits, c::huffman_format::interleaved>(state);
}
BENCHMARK_TEMPLATE(BM_huffman_decode, 8)->Arg(0)->Arg(1)->Unit(benchmark::kMicrosecond);
BENCHMARK_TEMPLATE(BM_huffman_decode, 10)->Arg(0)->Arg(1)->Unit(benchmark::kMicrosecond);
BENCHMARK_TEMPLATE(BM_huffman_decode, 12)->Arg(0)->Arg(1)->Unit(benchmark::kMicrosecond);
BENCHMARK_TEMPLATE(BM_huffman4_decode, 10)->Arg(0)->Arg(1)->Unit(benchmark::kMicrosecond);
BENCHMARK_TEMPLATE(BM_huffman4_decode, 11)->Arg(0)->Arg(1)->Unit(benchmark::kMicrosecond);
BENCHMARK_TEMPLATE(BM_huffman4_decode, 12)->Arg(0)->Arg(1)->Unit(benchmark::kMicrosecond);

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
  set_decode_counters(state, s, enc.size());
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

// Console output plus, at the end, the Huffman decoders against zstd on each stream, all
// measured in this run: out_GBps and the ratio to zstd -3 / -19, and coded size vs entropy.
class summary_reporter : public benchmark::ConsoleReporter {
 public:
  void ReportRuns(const std::vector<Run>& runs) override {
    ConsoleReporter::ReportRuns(runs);
    for (const auto& r : runs) {
      if (r.error_occurred || r.run_type != Run::RT_Iteration) continue;
      const auto gb = r.counters.find("out_GBps");
      if (gb == r.counters.end()) continue;
      const std::string name = r.benchmark_name();
      const std::string stream = r.report_label.substr(0, r.report_label.find(' '));
      std::string coder;
      if (name.rfind("BM_huffman_decode<", 0) == 0)
        coder = "huffman<" + name.substr(18, name.find('>') - 18) + ">";
      else if (name.rfind("BM_huffman4_decode<", 0) == 0)
        coder = "huffman4<" + name.substr(19, name.find('>') - 19) + ">";
      else if (name.rfind("BM_zstd_decode", 0) == 0)
        coder = "zstd -" + r.report_label.substr(r.report_label.rfind(' ') + 1);
      else
        continue;
      auto& rows = results_[stream];
      auto it = std::find_if(rows.begin(), rows.end(), [&](const result& x) { return x.coder == coder; });
      if (it == rows.end()) it = rows.insert(rows.end(), {coder, {}, r.counters.at("bytes").value, r.counters.at("vs_entropy").value});
      it->gbps.push_back(gb->second.value);
    }
  }
  void Finalize() override {
    ConsoleReporter::Finalize();
    if (results_.empty()) return;
    std::printf("\nHuffman decode vs zstd, same run (decoded output bytes/s, 1 GB = 10^9 B, median of the\n"
                "repetitions; goal >= 0.5 GB/s; size includes the header / table bytes):\n");
    for (auto& [stream, rows] : results_) {
      double z3 = 0.0, z19 = 0.0;
      for (auto& row : rows) {
        if (row.coder == "zstd -3") z3 = median(row.gbps);
        if (row.coder == "zstd -19") z19 = median(row.gbps);
      }
      for (auto& row : rows) {
        const double g = median(row.gbps);
        std::printf("  %-8s %-13s %6.3f GB/s (n=%zu)", stream.c_str(), row.coder.c_str(), g, row.gbps.size());
        if (z3 > 0.0 && z19 > 0.0) std::printf("  = %5.3fx zstd -3, %5.3fx zstd -19", g / z3, g / z19);
        std::printf("  | %8.0f bytes = entropy %+.2f %%%s\n", row.bytes, 100.0 * (row.vs_entropy - 1.0),
                    row.coder.rfind("huffman", 0) == 0 ? (g >= 0.5 ? "  [>= 0.5 GB/s]" : "  [< 0.5 GB/s]") : "");
      }
    }
  }

 private:
  struct result {
    std::string coder;
    std::vector<double> gbps;  ///< one per repetition
    double bytes, vs_entropy;
  };
  static double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v.size() % 2 ? v[v.size() / 2] : 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]);
  }
  std::map<std::string, std::vector<result>> results_;
};

}  // namespace

int main(int argc, char** argv) {
  // The summary goes with the console format; --benchmark_format=json|csv runs the stock reporter.
  bool console = true;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a.rfind("--benchmark_format=", 0) == 0 && a != "--benchmark_format=console") console = false;
  }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  if (console) {
    summary_reporter reporter;
    benchmark::RunSpecifiedBenchmarks(&reporter);
  } else {
    benchmark::RunSpecifiedBenchmarks();
  }
  benchmark::Shutdown();
  return 0;
}
