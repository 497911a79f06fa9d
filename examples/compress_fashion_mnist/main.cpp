// Deep Compression (Han, Mao & Dally 2016) of LeNet-300-100 on Fashion-MNIST, end to end:
// train fp32, prune with per-layer sparsities (gradual, polynomial decay) while fine-tuning
// with the masks kept, share the weights of each layer through a k-means codebook and
// fine-tune the centroids, Huffman-code the index and gap streams — and run the result on
// the compressed forms (relative-index CSR + codebook kernels).
//
// For each operating point it prints the paper's per-stage table: weights kept, index bits,
// bytes, compression ratio, test accuracy; every byte a decoder needs is counted (16-byte
// layer descriptors, fp32 biases, codebooks, row lengths, gap and index streams with their
// Huffman tables), see compress/network.hpp.
//
//   compress_fashion_mnist [--full] [--quick] [--epochs N] [--prune-epochs N] [--share-epochs N]
//                          [--point A|B|both] [--keep F1,F2,F3] [--json FILE] [--save PREFIX] [--seed S]
//
// --save PREFIX also writes each point's final model as PREFIX.<point>.tlmf with the model
// file writer (compress/model_file.hpp) and reads it back.
//
// Default: 6 fp32 epochs on the full 60 000 / 10 000 images, then each point with its own
// fine-tuning schedule (below); the default run reproduces the measured table of
// docs/compression.md (seeded; tens of minutes on 2 cores). --prune-epochs / --share-epochs
// set both points' schedules. --full: 15 / 12 / 5 epochs. --quick: 6 000 / 2 000 images,
// 2 / 2 / 1 epochs (a smoke test).
//
// Operating points:
//   A  close to Deep Compression's LeNet-300-100 setting (8 % / 9 % / 26 % kept, 6 bits):
//      6.5 % / 8 % / 25 % of the weights kept in fc1 / fc2 / fc3, 5-bit shared weights, Huffman;
//      10 pruning + 3 sharing epochs (measured: 45.5x at -0.11 pp).
//   B  more aggressive: 4.5 % / 5.5 % / 20 % kept, 4 / 4 / 5-bit shared weights, Huffman;
//      14 pruning + 4 sharing epochs (measured: 66.2x at -1.04 pp).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "tinylarge/compress/model_file.hpp"
#include "tinylarge/compress/network.hpp"
#include "tinylarge/data/idx.hpp"
#include "tinylarge/nn/nn.hpp"
#include "../common/cli.hpp"

namespace nn = tl::nn;
namespace cz = tl::compress;

namespace {

using lenet_300_100 = tl::sequential<tl::dense<784, 300>, tl::relu, tl::dense<300, 100>, tl::relu, tl::dense<100, 10>>;
static_assert(lenet_300_100::param_count == 266'610);

struct options {
  std::size_t epochs = 6;
  std::size_t prune_epochs = 0, share_epochs = 0;  ///< 0: each point's own schedule
  std::string point = "both", json, save;
  double keep[3] = {0.0, 0.0, 0.0};  ///< --keep: overrides the selected point's kept fractions
  bool quick = false;
  std::uint64_t seed = 1;
};

struct stage_row {
  std::string stage;
  double kept = 1.0;  ///< fraction of weights non-zero
  std::string bits;
  std::size_t bytes = 0;
  double ratio = 1.0;
  double accuracy = 0.0;
};

struct layer_row {
  std::size_t rows = 0, cols = 0, nonzeros = 0, entries = 0, fillers = 0;
  unsigned gap_bits = 0, index_bits = 0;
  std::size_t index_bytes = 0, gap_bytes = 0, row_bytes = 0, codebook_bytes = 0, bias_bytes = 0, total = 0;
};

struct point_result {
  std::string name;
  double keep[3] = {0.0, 0.0, 0.0};
  std::size_t prune_epochs = 0, share_epochs = 0;
  std::vector<stage_row> stages;
  std::vector<layer_row> layers;
  double compressed_net_accuracy = 0.0;
  double dense_us = 0.0, compressed_us = 0.0;
  std::size_t file_bytes = 0;  ///< compress/model_file.hpp container, when --save is given
};

double accuracy(nn::network<lenet_300_100>& net, const nn::labelled_view<std::uint8_t>& test) {
  return nn::evaluate(net, nn::softmax_cross_entropy{}, test).accuracy;
}

std::size_t nonzeros(const cz::encoded_network& e) {
  std::size_t n = 0;
  for (const auto& l : e.layers) n += l.nonzeros();
  return n;
}

/// One operating point: per-layer kept fractions and index bits, and its fine-tuning
/// schedule (pruning and sharing epochs).
template <unsigned B1, unsigned B2, unsigned B3>
point_result run_point(const char* name, const double (&keep)[3], std::size_t prune_epochs, std::size_t share_epochs,
                       const nn::network<lenet_300_100>& baseline, std::size_t baseline_bytes, double baseline_acc,
                       const options& opt, const nn::labelled_view<std::uint8_t>& train,
                       const nn::labelled_view<std::uint8_t>& test) {
  point_result res;
  res.name = name;
  std::copy(keep, keep + 3, res.keep);
  res.prune_epochs = prune_epochs;
  res.share_epochs = share_epochs;
  std::printf("\n== operating point %s: keep %.1f%% / %.1f%% / %.1f%%, %u/%u/%u-bit shared weights, "
              "%zu pruning + %zu sharing epochs\n",
              name, 100 * keep[0], 100 * keep[1], 100 * keep[2], B1, B2, B3, prune_epochs, share_epochs);
  auto net = std::make_unique<nn::network<lenet_300_100>>(baseline);
  using P1 = cz::deep_compression<cz::polynomial_decay, B1>;
  using P2 = cz::deep_compression<cz::polynomial_decay, B2>;
  using P3 = cz::deep_compression<cz::polynomial_decay, B3>;
  cz::network_compressor<lenet_300_100, P1, P2, P3> c;
  const std::size_t batch = 64;
  const auto steps_per_epoch = static_cast<std::int64_t>((train.count + batch - 1) / batch);
  // Gradual pruning over the first 2/3 of the pruning epochs, masks updated 10× per epoch.
  const std::int64_t end = std::max<std::int64_t>(1, steps_per_epoch * static_cast<std::int64_t>(prune_epochs) * 2 / 3);
  auto set = [&](auto& schedule, double k) {
    schedule.initial_sparsity = 0.0;
    schedule.final_sparsity = 1.0 - k;
    schedule.begin_step = 0;
    schedule.end_step = end;
    schedule.power = 3.0;
    schedule.frequency = std::max<std::int64_t>(1, steps_per_epoch / 10);
  };
  set(std::get<0>(c.template policy<0>().stages).schedule, keep[0]);
  set(std::get<0>(c.template policy<1>().stages).schedule, keep[1]);
  set(std::get<0>(c.template policy<2>().stages).schedule, keep[2]);

  // --- pruning + fine-tuning (masks kept)
  c.begin_gradual_pruning();
  nn::fit(*net, cz::fine_tuning(nn::adam{.learning_rate = 5e-4f}, c), nn::softmax_cross_entropy{}, train,
          {.epochs = prune_epochs, .batch_size = batch, .seed = opt.seed + 10, .shuffle = true, .lr_decay = 0.8f},
          &test, nn::progress_printer{.prefix = "  prune "});
  const double acc_pruned = accuracy(*net, test);
  const cz::encoded_network e_pruned = c.encode(*net, {.codebooks = false, .huffman = false});
  std::printf("  sparsity %.2f%% / %.2f%% / %.2f%%\n", 100 * c.layer(0).sparsity(), 100 * c.layer(1).sparsity(),
              100 * c.layer(2).sparsity());

  // --- weight sharing + centroid fine-tuning
  c.gradual_pruning = false;
  c.apply(*net, cz::stage_kind::quantization);
  const double acc_shared0 = accuracy(*net, test);
  std::printf("  after k-means (before centroid fine-tuning): %.2f%%\n", 100 * acc_shared0);
  nn::fit(*net, cz::fine_tuning(nn::adam{.learning_rate = 1e-4f}, c), nn::softmax_cross_entropy{}, train,
          {.epochs = share_epochs, .batch_size = batch, .seed = opt.seed + 20, .shuffle = true, .lr_decay = 0.7f},
          &test, nn::progress_printer{.prefix = "  share "});
  const double acc_shared = accuracy(*net, test);
  const cz::encoded_network e_shared = c.encode(*net, {.codebooks = true, .huffman = false});
  const cz::encoded_network e_final = c.encode(*net);

  // --- inference on the compressed forms (decoded from the Huffman streams)
  cz::compressed_network<lenet_300_100> inf(e_final);
  std::size_t hits = 0;
  for (std::size_t s = 0; s < test.count; s += 256) {
    const std::size_t b = std::min<std::size_t>(256, test.count - s);
    const float* y = inf.forward(test.x + s * 784, b);
    for (std::size_t i = 0; i < b; ++i) {
      std::size_t a = 0;
      for (std::size_t j = 1; j < 10; ++j) a = y[i * 10 + j] > y[i * 10 + a] ? j : a;
      hits += a == test.y[s + i];
    }
  }
  res.compressed_net_accuracy = static_cast<double>(hits) / static_cast<double>(test.count);
  // Batch-1 latency on the same weights: the dense fp32 form (kernels::dense_f32, run by the
  // same compressed_network code) vs the compressed forms. Best of 3 passes (shared machine).
  {
    cz::network_compressor<lenet_300_100, cz::none, cz::none, cz::none> plain;
    cz::compressed_network<lenet_300_100> dense_inf(plain.encode(*net));
    const std::size_t n = std::min<std::size_t>(2000, test.count);
    volatile std::size_t sink = 0;
    res.dense_us = res.compressed_us = 1e30;
    for (int pass = 0; pass < 3; ++pass) {
      auto t0 = std::chrono::steady_clock::now();
      for (std::size_t i = 0; i < n; ++i) sink = sink + dense_inf.classify(test.x + i * 784);
      auto t1 = std::chrono::steady_clock::now();
      for (std::size_t i = 0; i < n; ++i) sink = sink + inf.classify(test.x + i * 784);
      auto t2 = std::chrono::steady_clock::now();
      res.dense_us = std::min(res.dense_us, std::chrono::duration<double, std::micro>(t1 - t0).count() / static_cast<double>(n));
      res.compressed_us =
          std::min(res.compressed_us, std::chrono::duration<double, std::micro>(t2 - t1).count() / static_cast<double>(n));
    }
  }

  // Optionally: the same layers in the compressed model file (compress/model_file.hpp), whose
  // container adds a file header, section headers, CRCs, u32 row offsets and 8-byte alignment.
  if (!opt.save.empty()) {
    cz::model_file_builder b;
    for (std::size_t j = 0; j < 3; ++j) {
      cz::layer_options lo;
      lo.activation = j < 2 ? cz::activation_kind::relu : cz::activation_kind::none;
      lo.gaps = cz::symbol_encoding::huffman;
      lo.indices = cz::symbol_encoding::huffman;
      switch (inf.form(j)) {
        case cz::layer_form::sparse_codebook: b.add_csr(inf.csr_codebook(j), e_final.layers[j].index_bits, inf.bias(j), lo); break;
        case cz::layer_form::sparse: b.add_csr(inf.csr(j), inf.bias(j), lo); break;
        case cz::layer_form::codebook: b.add_codebook(inf.codebook(j), inf.bias(j), lo); break;
        default: b.add_dense_f32(inf.rows(j), inf.cols(j), inf.dense_weights(j), inf.bias(j), lo); break;
      }
    }
    const std::string path = opt.save + "." + name + ".tlmf";
    b.write(path);
    res.file_bytes = b.bytes().size();
    const cz::model_file back = cz::load_model_file(path);  // validates every section and CRC
    std::printf("  model file %s: %zu bytes (read back and validated)\n", path.c_str(), res.file_bytes);
  }

  const double total_w = static_cast<double>(lenet_300_100::weight_count);
  const std::string bits = std::to_string(B1) + "/" + std::to_string(B2) + "/" + std::to_string(B3);
  auto row = [&](const char* st, const cz::encoded_network& e, double acc, std::string b) {
    return stage_row{st, static_cast<double>(nonzeros(e)) / total_w, std::move(b), e.bytes(),
                     static_cast<double>(baseline_bytes) / static_cast<double>(e.bytes()), acc};
  };
  res.stages.push_back({"fp32 baseline", 1.0, "32", baseline_bytes, 1.0, baseline_acc});
  res.stages.push_back(row("pruned + fine-tuned (CSR, fp32 values)", e_pruned, acc_pruned, "32"));
  res.stages.push_back(row("+ weight sharing + fine-tuned (bit-packed)", e_shared, acc_shared, bits));
  res.stages.push_back(row("+ Huffman coding", e_final, acc_shared, bits));
  for (const auto& l : e_final.layers) {
    layer_row r;
    r.rows = l.rows;
    r.cols = l.cols;
    r.nonzeros = l.nonzeros();
    r.entries = l.entries;
    r.fillers = l.fillers;
    r.gap_bits = l.gap_bits;
    r.index_bits = l.index_bits;
    r.index_bytes = l.indices.size();
    r.gap_bytes = l.gaps.size();
    r.row_bytes = l.row_lengths.size();
    r.codebook_bytes = 4 * l.centroids.size();
    r.bias_bytes = 4 * l.bias.size();
    r.total = l.bytes();
    res.layers.push_back(r);
  }

  std::printf("\n  %-44s %8s %6s %10s %8s %9s %8s\n", "stage", "kept", "bits", "bytes", "ratio", "accuracy", "delta");
  for (const auto& s : res.stages)
    std::printf("  %-44s %7.2f%% %6s %10zu %7.1fx %8.2f%% %+7.2fpp\n", s.stage.c_str(), 100 * s.kept, s.bits.c_str(),
                s.bytes, s.ratio, 100 * s.accuracy, 100 * (s.accuracy - baseline_acc));
  std::printf("\n  final bytes per layer: %-6s %6s %7s %7s %4s %4s %7s %7s %6s %6s %6s %7s\n", "shape", "", "nnz",
              "entries", "gap", "idx", "indices", "gaps", "rows", "cbook", "bias", "total");
  for (const auto& l : res.layers)
    std::printf("  %18zux%-6zu %13zu %7zu %4u %4u %7zu %7zu %6zu %6zu %6zu %7zu (+16 descriptor)\n", l.rows, l.cols,
                l.nonzeros, l.entries, l.gap_bits, l.index_bits, l.index_bytes, l.gap_bytes, l.row_bytes,
                l.codebook_bytes, l.bias_bytes, l.total);
  std::printf("  compressed-network inference (CSR + codebook kernels, from the Huffman streams): %.2f%% "
              "(fp32 network with the same weights: %.2f%%)\n",
              100 * res.compressed_net_accuracy, 100 * acc_shared);
  std::printf("  batch-1 latency: dense fp32 %.1f us, compressed %.1f us\n", res.dense_us, res.compressed_us);
  return res;
}

void write_json(const std::string& path, const options& opt, std::size_t train_n, std::size_t test_n,
                const std::vector<point_result>& pts) {
  std::FILE* f = std::fopen(path.c_str(), "w");
  if (f == nullptr) {
    std::fprintf(stderr, "cannot write %s\n", path.c_str());
    std::exit(1);
  }
  std::fprintf(f,
               "{\n  \"model\": \"lenet_300_100\",\n  \"train_images\": %zu,\n  \"test_images\": %zu,\n"
               "  \"epochs\": {\"fp32\": %zu},\n  \"seed\": %llu,\n"
               "  \"points\": [\n",
               train_n, test_n, opt.epochs, static_cast<unsigned long long>(opt.seed));
  for (std::size_t p = 0; p < pts.size(); ++p) {
    const auto& r = pts[p];
    std::fprintf(f,
                 "    {\"name\": \"%s\", \"keep\": [%.4f, %.4f, %.4f], \"epochs\": {\"prune\": %zu, \"share\": %zu}, "
                 "\"stages\": [\n",
                 r.name.c_str(), r.keep[0], r.keep[1], r.keep[2], r.prune_epochs, r.share_epochs);
    for (std::size_t i = 0; i < r.stages.size(); ++i) {
      const auto& s = r.stages[i];
      std::fprintf(f,
                   "      {\"stage\": \"%s\", \"weights_kept\": %.5f, \"bits\": \"%s\", \"bytes\": %zu, "
                   "\"compression_ratio\": %.2f, \"test_accuracy\": %.4f}%s\n",
                   s.stage.c_str(), s.kept, s.bits.c_str(), s.bytes, s.ratio, s.accuracy,
                   i + 1 < r.stages.size() ? "," : "");
    }
    std::fprintf(f, "    ], \"layers\": [\n");
    for (std::size_t i = 0; i < r.layers.size(); ++i) {
      const auto& l = r.layers[i];
      std::fprintf(f,
                   "      {\"rows\": %zu, \"cols\": %zu, \"nonzeros\": %zu, \"entries\": %zu, \"fillers\": %zu, "
                   "\"gap_bits\": %u, \"index_bits\": %u, \"index_bytes\": %zu, \"gap_bytes\": %zu, "
                   "\"row_length_bytes\": %zu, \"codebook_bytes\": %zu, \"bias_bytes\": %zu, \"descriptor_bytes\": 16, "
                   "\"total_bytes\": %zu}%s\n",
                   l.rows, l.cols, l.nonzeros, l.entries, l.fillers, l.gap_bits, l.index_bits, l.index_bytes,
                   l.gap_bytes, l.row_bytes, l.codebook_bytes, l.bias_bytes, l.total,
                   i + 1 < r.layers.size() ? "," : "");
    }
    std::fprintf(f,
                 "    ], \"compressed_network_accuracy\": %.4f, \"batch1_dense_us\": %.2f, "
                 "\"batch1_compressed_us\": %.2f, \"model_file_bytes\": %zu}%s\n",
                 r.compressed_net_accuracy, r.dense_us, r.compressed_us, r.file_bytes, p + 1 < pts.size() ? "," : "");
  }
  std::fprintf(f, "  ]\n}\n");
  std::fclose(f);
}

}  // namespace

int main(int argc, char** argv) {
  options opt;
  bool full = false;
  long epochs = -1, prune_epochs = -1, share_epochs = -1;
  examples::cli args(argc, argv,
                     "[--full] [--quick] [--epochs N] [--prune-epochs N] [--share-epochs N] [--point A|B|both] "
                     "[--keep F1,F2,F3] [--json FILE] [--save PREFIX] [--seed S]");
  while (args.next()) {
    if (args.is("--epochs")) epochs = args.count<long>();
    else if (args.is("--prune-epochs")) prune_epochs = args.count<long>();
    else if (args.is("--share-epochs")) share_epochs = args.count<long>();
    else if (args.is("--point")) opt.point = args.text();
    else if (args.is("--json")) opt.json = args.text();
    else if (args.is("--save")) opt.save = args.text();
    else if (args.is("--keep")) {
      const std::string v = args.text();
      if (std::sscanf(v.c_str(), "%lf,%lf,%lf", &opt.keep[0], &opt.keep[1], &opt.keep[2]) != 3)
        args.error("needs three fractions, e.g. 0.08,0.09,0.26");
    }
    else if (args.is("--seed")) opt.seed = args.count<std::uint64_t>();
    else if (args.is("--quick")) opt.quick = true;
    else if (args.is("--full")) full = true;
    else args.unknown();
  }
  if (full) {
    opt.epochs = 15;
    opt.prune_epochs = 12;
    opt.share_epochs = 5;
  }
  if (opt.quick) {
    opt.epochs = 2;
    opt.prune_epochs = 2;
    opt.share_epochs = 1;
  }
  if (epochs > 0) opt.epochs = static_cast<std::size_t>(epochs);
  if (prune_epochs > 0) opt.prune_epochs = static_cast<std::size_t>(prune_epochs);
  if (share_epochs > 0) opt.share_epochs = static_cast<std::size_t>(share_epochs);
  try {
    const auto train_set = tl::data::load_fashion_mnist(tl::data::split::train);
    const auto test_set = tl::data::load_fashion_mnist(tl::data::split::test);
    nn::labelled_view<std::uint8_t> train{train_set.images.data(), train_set.labels.data(), train_set.count, 784};
    nn::labelled_view<std::uint8_t> test{test_set.images.data(), test_set.labels.data(), test_set.count, 784};
    if (opt.quick) {
      train.count = 6000;
      test.count = 2000;
    }
    std::printf("Fashion-MNIST: %zu training, %zu test images; fp32 epochs %zu\n", train.count, test.count, opt.epochs);

    auto base = std::make_unique<nn::network<lenet_300_100>>();
    base->initialize<nn::he_normal>(opt.seed);
    nn::fit(*base, nn::adam{.learning_rate = 1e-3f}, nn::softmax_cross_entropy{}, train,
            {.epochs = opt.epochs, .batch_size = 64, .seed = opt.seed, .shuffle = true, .lr_decay = 0.85f}, &test,
            nn::progress_printer{.prefix = "  fp32 "});
    const double base_acc = accuracy(*base, test);
    // The baseline stored by the same encoder: dense fp32 weights and biases + descriptors.
    cz::network_compressor<lenet_300_100, cz::none, cz::none, cz::none> plain;
    const std::size_t base_bytes = plain.encode(*base).bytes();
    std::printf("fp32 baseline: %.2f%%, %zu bytes (%zu parameters x 4 + 3 descriptors)\n", 100 * base_acc, base_bytes,
                lenet_300_100::param_count);

    std::vector<point_result> pts;
    // Each point's schedule unless --prune-epochs / --share-epochs / --full / --quick set one.
    const auto prune = [&](std::size_t own) { return opt.prune_epochs > 0 ? opt.prune_epochs : own; };
    const auto share = [&](std::size_t own) { return opt.share_epochs > 0 ? opt.share_epochs : own; };
    if (opt.point == "A" || opt.point == "both") {
      double keep[3] = {0.065, 0.08, 0.25};
      if (opt.keep[0] > 0.0) std::copy(opt.keep, opt.keep + 3, keep);
      pts.push_back(run_point<5, 5, 5>("A", keep, prune(10), share(3), *base, base_bytes, base_acc, opt, train, test));
    }
    if (opt.point == "B" || opt.point == "both") {
      double keep[3] = {0.045, 0.055, 0.20};
      if (opt.keep[0] > 0.0) std::copy(opt.keep, opt.keep + 3, keep);
      pts.push_back(run_point<4, 4, 5>("B", keep, prune(14), share(4), *base, base_bytes, base_acc, opt, train, test));
    }
    if (!opt.json.empty()) write_json(opt.json, opt, train.count, test.count, pts);
  } catch (const tl::error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
