// Hardware-aware architecture search for transfer learning on Fashion-MNIST
// (docs/nas.md).
//
// Source task: classes 0-4 (T-shirt, trouser, pullover, dress, coat); target
// task: classes 5-9 (sandal, shirt, sneaker, bag, ankle boot) with few
// labelled samples. A weight-sharing MLP supernet is trained once on the
// source; each candidate sub-network is transferred (frozen body, new head
// on the target samples) and scored on a held-out target validation split,
// with flash, arena RAM, MACs, energy (and optionally host latency) from the
// device profile. Random search, regularised evolution and NSGA-II run at
// the same budget for several seeds and are compared by the hypervolume of
// their feasible (accuracy, flash) fronts. The best model is compared with a
// hand-designed LeNet-300-100 trained on the same source data, transferred
// the same way and quantized to int8 by the library (PTQ).
//
//   nas_transfer [--source-n N] [--source-epochs N] [--target-per-class N] [--val-n N]
//                [--budget N] [--seeds N] [--population N] [--sample N]
//                [--profile cortex_m4|phone|edge_server] [--latency] [--distill] [--finetune-epochs N]
//                [--json FILE] [--svg FILE] [--header FILE] [--finalists N] [--data DIR] [--seed S]
//                [--sparsities LIST] [--split] [--convs N] [--min-convs N] [--conv-kernels LIST] [--conv-channels LIST]
//
// --sparsities sets the compression levels a layer may take (magnitude-pruning sparsity in
// percent, default 0,50,75,90; 0 searches dense models only). --split also searches the cut
// point for split deployment: the flash and RAM budgets then apply to the device segment, and
// the bytes per sample that cross the cut are reported (JSON "smashed_bytes").
//
// --convs N adds a convolutional stem of 0 to N conv layers (each conv2d with "same" padding, relu,
// 2×2 max pooling; kernel sizes from --conv-kernels, default 3,5; channels from --conv-channels,
// default 4,8,16; int8 or fp32 per layer) before the dense layers: kernel sizes in the search space.
// --min-convs N makes the stem at least N layers (default 0: MLPs stay in the space).
//
// --distill trains the supernet with in-place distillation (the sub-networks
// other than the largest learn from the largest's softmax).
//
// The best model is also fine-tuned whole (body and head, --finetune-epochs of Adam at
// 1e-4 on the target samples; 0 skips it); the emitted model is the fine-tuned one when
// its validation accuracy is higher.
//
// Writes the union Pareto front as JSON (--json, default nas_front.json), a plot
// of every evaluation and the front as SVG (--svg, default nas_front.svg), and
// the best model as a C++ header (--header, default nas_model.hpp). An empty
// file name skips that output. --finalists N also writes N other all-int8 members of
// the front, spread over its flash range (the smallest first), as FILE_finalist_K.hpp
// beside the header, for scripts/nas_mcu.sh to count their instructions on the
// Cortex-M4.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "tinylarge/data/idx.hpp"
#include "tinylarge/nas/nas.hpp"
#include "tinylarge/nn/nn.hpp"
#include "../common/cli.hpp"
#include "compare.hpp"

namespace nas = tl::nas;
namespace nn = tl::nn;
namespace nas_compare = examples::nas_compare;

namespace {

struct options {
  std::size_t source_n = 12000, source_epochs = 3, target_per_class = 50, val_n = 1000;
  std::size_t budget = 60, seeds = 3, population = 16, sample = 4, finetune_epochs = 20;
  std::string profile = "cortex_m4", json = "nas_front.json", svg = "nas_front.svg", header = "nas_model.hpp",
              data = "/usr/share/datasets/fashion-mnist";
  bool latency = false, distill = false, split = false;
  std::size_t finalists = 0;
  std::uint64_t seed = 1;
  std::vector<std::uint8_t> sparsities{0, 50, 75, 90};
  std::size_t convs = 0, min_convs = 0;
  std::vector<std::size_t> conv_kernels{3, 5}, conv_channels{4, 8, 16};
};

/// Rows of one task: features and labels remapped to 0…4.
struct task_rows {
  std::vector<float> x;
  std::vector<std::uint8_t> y;
  [[nodiscard]] std::size_t count() const { return y.size(); }
  [[nodiscard]] nas::labelled_data view() const { return {x.data(), y.data(), y.size(), 784}; }
  void add(const tl::data::dataset& d, std::size_t i, std::uint8_t label) {
    x.insert(x.end(), d.images.begin() + static_cast<std::ptrdiff_t>(i * 784),
             d.images.begin() + static_cast<std::ptrdiff_t>((i + 1) * 784));
    y.push_back(label);
  }
};

using nas_compare::seconds_since;

using lenet = tl::sequential<tl::dense<784, 300>, tl::relu, tl::dense<300, 100>, tl::relu, tl::dense<100, 5>>;
using lenet_int8 = nn::quantized_network<lenet, tl::int8_per_channel, nn::heap_storage>;

struct lenet_result {
  double fp32 = 0, int8 = 0, tuned_int8 = -1, seconds = 0;
  std::size_t flash = lenet_int8::parameter_bytes, arena = lenet_int8::arena_bytes;
};

/// LeNet-300-100 (5 outputs) trained on the source with nn::fit, its body
/// frozen, a new head trained on the target rows by nas::train_head (the
/// protocol of the search's candidates), then PTQ to int8 by the library.
lenet_result run_lenet(const options& opt, const task_rows& source, const task_rows& target, const task_rows& test) {
  lenet_result r;
  const auto t0 = std::chrono::steady_clock::now();
  auto net = std::make_unique<nn::network<lenet>>();
  net->initialize<nn::he_normal>(opt.seed);
  const nn::labelled_view<std::uint8_t> src{source.x.data(), source.y.data(), source.count(), 784};
  nn::fit(*net, nn::adam{.learning_rate = 1e-3f}, nn::softmax_cross_entropy{}, src,
          {.epochs = opt.source_epochs, .batch_size = 64, .seed = opt.seed, .shuffle = true});
  // Body features (relu(W1·relu(W0·x + b0) + b1)) of the target rows, then the new head.
  auto p = net->parameters();
  auto body = [&](const task_rows& rows) {
    std::vector<float> h0(rows.count() * 300), h1(rows.count() * 100);
    tl::kernels::dense_f32(rows.count(), 300, 784, rows.x.data(), p.data(), p.data() + 300 * 784, h0.data());
    for (float& v : h0) v = std::max(v, 0.0f);
    const float* p1 = p.data() + lenet::param_offset<2>;
    tl::kernels::dense_f32(rows.count(), 100, 300, h0.data(), p1, p1 + 100 * 300, h1.data());
    for (float& v : h1) v = std::max(v, 0.0f);
    return h1;
  };
  const std::vector<float> ft = body(target), fe = body(test);
  const nas::head h = nas::train_head(ft.data(), target.y.data(), target.count(), 100, 5, {}, false, 0.0f);
  std::copy(h.params.begin(), h.params.end(), p.begin() + static_cast<std::ptrdiff_t>(lenet::param_offset<4>));
  r.fp32 = nas::head_accuracy(h, fe.data(), test.y.data(), test.count());
  auto int8_accuracy = [&](nn::network<lenet>& n) {
    auto q = std::make_unique<lenet_int8>();
    nn::quantize_post_training(n, target.x.data(), target.count(), *q);
    std::size_t hits = 0;
    for (std::size_t i = 0; i < test.count(); ++i) hits += q->classify(test.x.data() + i * 784) == test.y[i] ? 1 : 0;
    return static_cast<double>(hits) / static_cast<double>(test.count());
  };
  r.int8 = int8_accuracy(*net);
  if (opt.finetune_epochs > 0) {  // the whole network, as the search's best model is fine-tuned
    const nn::labelled_view<std::uint8_t> tgt{target.x.data(), target.y.data(), target.count(), 784};
    nn::fit(*net, nn::adam{.learning_rate = 1e-4f}, nn::softmax_cross_entropy{}, tgt,
            {.epochs = opt.finetune_epochs, .batch_size = 32, .seed = opt.seed, .shuffle = true});
    r.tuned_int8 = int8_accuracy(*net);
  }
  r.seconds = seconds_since(t0);
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  options opt;
  examples::cli args(argc, argv,
                     "[--source-n N] [--source-epochs N] [--target-per-class N] [--val-n N] [--budget N] [--seeds N] "
                     "[--population N] [--sample N] [--profile cortex_m4|phone|edge_server] [--latency] [--distill] [--finetune-epochs N] [--json FILE] [--svg FILE] [--finalists N] "
                     "[--header FILE] [--data DIR] [--seed S] [--sparsities LIST] [--split] [--convs N] [--min-convs N] [--conv-kernels LIST] "
                     "[--conv-channels LIST]");
  while (args.next()) {
    if (args.is("--source-n")) opt.source_n = args.count();
    else if (args.is("--source-epochs")) opt.source_epochs = args.count();
    else if (args.is("--target-per-class")) opt.target_per_class = args.count();
    else if (args.is("--val-n")) opt.val_n = args.count();
    else if (args.is("--budget")) opt.budget = args.count();
    else if (args.is("--seeds")) opt.seeds = args.count();
    else if (args.is("--population")) opt.population = args.count();
    else if (args.is("--sample")) opt.sample = args.count();
    else if (args.is("--profile")) opt.profile = args.text();
    else if (args.is("--latency")) opt.latency = true;
    else if (args.is("--distill")) opt.distill = true;
    else if (args.is("--split")) opt.split = true;
    else if (args.is("--finetune-epochs")) opt.finetune_epochs = args.count();
    else if (args.is("--json")) opt.json = args.text();
    else if (args.is("--svg")) opt.svg = args.text();
    else if (args.is("--finalists")) opt.finalists = args.count();
    else if (args.is("--header")) opt.header = args.text();
    else if (args.is("--data")) opt.data = args.text();
    else if (args.is("--seed")) opt.seed = args.count<std::uint64_t>();
    else if (args.is("--convs")) opt.convs = args.count();
    else if (args.is("--min-convs")) opt.min_convs = args.count();
    else if (args.is("--conv-kernels") || args.is("--conv-channels")) {
      const bool kernels = args.is("--conv-kernels");
      std::vector<std::size_t>& list = kernels ? opt.conv_kernels : opt.conv_channels;
      list.clear();
      for (const double v : args.reals()) {
        if (v < 1 || v != static_cast<double>(static_cast<std::size_t>(v))) args.error("conv kernel sizes and channels are positive integers");
        list.push_back(static_cast<std::size_t>(v));
      }
    }
    else if (args.is("--sparsities")) {
      opt.sparsities.clear();
      for (const double v : args.reals()) {
        if (v < 0 || v > 99 || v != static_cast<double>(static_cast<int>(v))) args.error("sparsities are whole percentages in [0, 99]");
        opt.sparsities.push_back(static_cast<std::uint8_t>(v));
      }
    } else args.unknown();
  }
  try {
    const auto t_all = std::chrono::steady_clock::now();
    const nas::device_profile device = nas_compare::profile_named(opt.profile);
    const auto train_set = tl::data::load_fashion_mnist(tl::data::split::train, opt.data);
    const auto test_set = tl::data::load_fashion_mnist(tl::data::split::test, opt.data);
    // Source: the first source_n training images of classes 0-4. Target: per class 5-9 the first
    // target_per_class training images (labels 0-4), then val_n more for validation; test: all test images of 5-9.
    task_rows source, target, val, test;
    std::vector<std::size_t> per_class(10, 0);
    for (std::size_t i = 0; i < train_set.count; ++i) {
      const std::uint8_t c = train_set.labels[i];
      if (c < 5) {
        if (source.count() < opt.source_n) source.add(train_set, i, c);
      } else if (per_class[c] < opt.target_per_class) {
        ++per_class[c];
        target.add(train_set, i, static_cast<std::uint8_t>(c - 5));
      } else if (val.count() < opt.val_n) {
        val.add(train_set, i, static_cast<std::uint8_t>(c - 5));
      }
    }
    for (std::size_t i = 0; i < test_set.count; ++i)
      if (test_set.labels[i] >= 5) test.add(test_set, i, static_cast<std::uint8_t>(test_set.labels[i] - 5));
    std::printf("Fashion-MNIST transfer: source classes 0-4 %zu images; target classes 5-9: %zu training, %zu validation, "
                "%zu test\n", source.count(), target.count(), val.count(), test.count());
    std::printf("device %s: flash %zu bytes, RAM %zu bytes, %.1f pJ/MAC, %.1f pJ/byte (assumed)\n", device.name.c_str(),
                device.flash_bytes, device.ram_bytes, device.pj_per_mac, device.pj_per_byte);

    // The space: depth 1-3, widths (100 makes LeNet-300-100's shape a member), int8 / fp32 and a
    // magnitude-pruning sparsity per layer.
    nas::mlp_space space{.inputs = 784, .outputs = 5, .widths = {32, 64, 100, 128, 256, 300}, .min_depth = 1,
                         .max_depth = 3, .sparsities = opt.sparsities, .split = opt.split};
    space.max_convs = opt.convs;  // 28×28×1 images: a conv stem of --min-convs to --convs layers
    space.min_convs = opt.min_convs;
    space.conv_kernels = opt.conv_kernels;
    space.conv_channels = opt.conv_channels;
    space.validate();
    std::string levels, stem_text;
    for (const std::uint8_t v : space.sparsities) levels += (levels.empty() ? "" : ", ") + std::to_string(v);
    if (space.max_convs > 0) {
      stem_text = "; a conv stem of " + std::to_string(space.min_convs) + "-" + std::to_string(space.max_convs) + " layers, kernels";
      for (const std::size_t k : space.conv_kernels) stem_text += " " + std::to_string(k);
      stem_text += ", channels";
      for (const std::size_t c : space.conv_channels) stem_text += " " + std::to_string(c);
    }
    std::printf("search space: %.0f genomes (sparsities per layer: %s %%%s%s)\n", space.size(), levels.c_str(),
                space.split ? "; cut point for split deployment" : "", stem_text.c_str());

    auto t0 = std::chrono::steady_clock::now();
    nas::mlp_supernet supernet(space, opt.seed);
    const auto losses = supernet.train(source.view(), {.epochs = opt.source_epochs, .batch_size = 64,
                                                       .learning_rate = 1e-3f, .random_subnets = 2, .seed = opt.seed,
                                                       .inplace_distillation = opt.distill});
    std::printf("supernet (%zu parameters) trained on the source in %.1f s, sandwich rule%s; largest sub-network loss per epoch:",
                supernet.parameters().size(), seconds_since(t0), opt.distill ? " with in-place distillation" : "");
    for (double l : losses) std::printf(" %.4f", l);
    std::printf("\n");

    nas::transfer_evaluator eval(supernet, device, target.view(), val.view(), {}, opt.latency);
    const std::size_t flash_ref = device.flash_bytes > 0 ? device.flash_bytes : nas::flash_bytes(space, space.largest());

    const nas_compare::settings cs{.budget = opt.budget, .seeds = opt.seeds, .population = opt.population,
                                   .sample = opt.sample, .latency = opt.latency};
    const auto runs = nas_compare::strategies(space, eval, cs, flash_ref);

    // The union of every run: its feasible front with test accuracies, and the best model.
    const std::vector<nas::candidate> all = nas_compare::union_of(runs);
    const std::size_t best = nas_compare::print_front(all, eval, test.view(), opt.latency);
    const nas::candidate& chosen = all[best];
    nas::transferred_model model = eval.transfer(chosen.g, test.view());
    double tuned_val = -1, tuned_test = -1;
    if (opt.finetune_epochs > 0) {
      const nas::finetune_options fo{.epochs = opt.finetune_epochs, .batch_size = 32, .learning_rate = 1e-4f, .seed = opt.seed};
      tuned_val = eval.fine_tune(chosen.g, val.view(), fo).accuracy;
      nas::transferred_model tuned = eval.fine_tune(chosen.g, test.view(), fo);
      tuned_test = tuned.accuracy;
      std::printf("\nbest model %s fine-tuned whole (%zu epochs): validation %.4f (head only %.4f), test %.4f (head only %.4f)%s\n",
                  chosen.g.key().c_str(), opt.finetune_epochs, tuned_val, chosen.obj.accuracy, tuned_test, model.accuracy,
                  tuned_val > chosen.obj.accuracy ? ": the fine-tuned model is emitted" : ": the head-only model is emitted");
      if (tuned_val > chosen.obj.accuracy) model = std::move(tuned);
    }

    // LeNet-300-100: hand-designed, trained alone, int8 by the library's PTQ; and its shape in the supernet.
    const lenet_result ln = run_lenet(opt, source, target, test);
    const nas::genome lenet_shape{{300, 100}, {nas::layer_precision::int8, nas::layer_precision::int8, nas::layer_precision::int8}};
    const bool lenet_in_space = space.contains(lenet_shape);  // not with --min-convs > 0
    const double lenet_in_supernet = lenet_in_space ? eval.transfer(lenet_shape, test.view()).accuracy : 0.0;
    std::printf("\n| model | test accuracy (target) | flash bytes | arena bytes | fits %s |\n|---|---|---|---|---|\n",
                device.name.c_str());
    const bool fits_chosen = chosen.obj.feasible();
    nas::objectives lo;
    nas::apply_costs(space, lenet_shape, device, lo);
    std::printf("| NAS best (%s, simulated int8 layers, emitted) | %.4f | %zu | %zu | %s |\n", chosen.g.key().c_str(), model.accuracy,
                chosen.obj.flash_bytes, chosen.obj.arena_bytes, fits_chosen ? "yes" : "no");
    std::printf("| LeNet-300-100 int8 (library PTQ) | %.4f | %zu | %zu | %s |\n", ln.int8, ln.flash, ln.arena,
                lo.feasible() ? "yes" : "no");
    if (ln.tuned_int8 >= 0)
      std::printf("| LeNet-300-100 int8, fine-tuned whole (%zu epochs, library PTQ) | %.4f | %zu | %zu | %s |\n",
                  opt.finetune_epochs, ln.tuned_int8, ln.flash, ln.arena, lo.feasible() ? "yes" : "no");
    std::printf("| LeNet-300-100 fp32 (head only) | %.4f | %zu | %zu | %s |\n", ln.fp32, lenet::param_count * 4,
                lenet::arena_bytes<tl::fp32>, device.flash_bytes == 0 || lenet::param_count * 4 <= device.flash_bytes ? "yes" : "no");
    if (lenet_in_space)
      std::printf("| supernet sub-network 300i-100i|i (simulated int8) | %.4f | %zu | %zu | %s |\n", lenet_in_supernet,
                  lo.flash_bytes, lo.arena_bytes, lo.feasible() ? "yes" : "no");
    const double lenet_best = std::max(ln.int8, ln.tuned_int8);
    const bool dominates = model.accuracy >= lenet_best && chosen.obj.flash_bytes <= ln.flash &&
                           (model.accuracy > lenet_best || chosen.obj.flash_bytes < ln.flash);
    std::printf("NAS best (emitted) %s LeNet-300-100 int8 (the better of its two rows) on (test accuracy, flash)\n",
                dominates ? "dominates" : "does not dominate");

    if (!opt.json.empty()) {
      nas_compare::write_file(opt.json, nas::front_json(all, device, flash_ref, "union"));
      std::printf("front: %s\n", opt.json.c_str());
    }
    if (!opt.svg.empty()) {
      nas_compare::write_file(opt.svg, nas::front_svg(all, device, "Fashion-MNIST 0-4 → 5-9: every evaluation and the union front"));
      std::printf("plot: %s\n", opt.svg.c_str());
    }
    if (!opt.header.empty()) {
      nas_compare::write_file(opt.header, nas::emit_header(space, model, "nas_model"));
      std::printf("best model header: %s (%zu parameters)\n", opt.header.c_str(), model.parameters.size());
      // Finalists: front members other than the best, spread over the front's flash range.
      std::vector<std::size_t> others;
      for (std::size_t i : nas::feasible_front(all)) {
        const auto& p = all[i].g.precisions;
        const auto& cv = all[i].g.convs;
        const bool all_int8 = std::all_of(p.begin(), p.end(), [](nas::layer_precision q) { return q == nas::layer_precision::int8; }) &&
                              std::all_of(cv.begin(), cv.end(), [](const nas::conv_gene& c) { return c.precision == nas::layer_precision::int8; });
        if (all_int8 && !(all[i].g == chosen.g)) others.push_back(i);  // nas_deploy deploys every layer as int8
      }
      const std::string stem = opt.header.size() > 4 && opt.header.ends_with(".hpp")
                                   ? opt.header.substr(0, opt.header.size() - 4) : opt.header;
      const std::size_t n = std::min(opt.finalists, others.size());
      for (std::size_t k = 0; k < n; ++k) {
        const std::size_t at = n == 1 ? 0 : k * (others.size() - 1) / (n - 1);
        const nas::candidate& c = all[others[at]];
        const nas::transferred_model fm = eval.transfer(c.g, test.view());
        const std::string file = stem + "_finalist_" + std::to_string(k + 1) + ".hpp";
        nas_compare::write_file(file, nas::emit_header(space, fm, "nas_model"));
        std::printf("finalist %zu: %s, %zu flash bytes, test accuracy %.4f (head only): %s\n", k + 1, c.g.key().c_str(),
                    c.obj.flash_bytes, fm.accuracy, file.c_str());
      }
    }
    std::printf("evaluator: %zu calls, %zu distinct genomes; total %.1f s (LeNet %.1f s)\n", eval.calls(), eval.distinct(),
                seconds_since(t_all), ln.seconds);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "nas_transfer: %s\n", e.what());
    return 1;
  }
  return 0;
}
