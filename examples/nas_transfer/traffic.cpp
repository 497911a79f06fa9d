// Hardware-aware architecture search for transfer learning on a tabular networking
// task (docs/nas.md, "The traffic task").
//
// Source: flows of six application types seen through a wired campus network
// (data::campus_wired); target: the same applications seen through a cellular
// edge network (data::cellular_edge: smaller MTU, longer and jittery delays,
// loss, slower links, another class mix), with few labelled target flows. The
// generator is include/tinylarge/data/traffic.hpp. A weight-sharing MLP supernet
// is trained once on the source; each candidate is transferred (frozen body, new
// head on the target flows) and scored on a target validation split with the
// device profile's costs. Random search, regularised evolution and NSGA-II run at
// the same budget for several seeds. The best model is compared with a
// hand-designed 16-64-64-6 MLP trained on the source and transferred the same
// way, with the same MLP trained on the few target flows alone (no transfer),
// and with the source model used unchanged (no adaptation).
//
//   nas_traffic [--source-n N] [--source-epochs N] [--target-per-class N] [--val-n N] [--test-n N]
//               [--budget N] [--seeds N] [--population N] [--sample N] [--finetune-epochs N]
//               [--profile cortex_m4|phone|edge_server] [--json FILE] [--svg FILE] [--header FILE] [--seed S]
//
// Writes the union front as JSON and a plot of the search as SVG (empty names skip them),
// and with --header the best model as a C++ header.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "tinylarge/data/traffic.hpp"
#include "tinylarge/nas/nas.hpp"
#include "tinylarge/nn/nn.hpp"
#include "../common/cli.hpp"
#include "compare.hpp"

namespace nas = tl::nas;
namespace nn = tl::nn;
namespace nas_compare = examples::nas_compare;

namespace {

constexpr std::size_t F = tl::data::traffic_features, C = tl::data::traffic_classes;

struct options {
  std::size_t source_n = 12000, source_epochs = 10, target_per_class = 10, val_n = 1000, test_n = 5000;
  std::size_t budget = 200, seeds = 5, population = 16, sample = 4, finetune_epochs = 50;
  std::string profile = "cortex_m4", json = "nas_traffic_front.json", svg = "nas_traffic_front.svg", header;
  std::uint64_t seed = 1;
};

struct rows {
  std::vector<float> x;
  std::vector<std::uint8_t> y;
  [[nodiscard]] std::size_t count() const { return y.size(); }
  [[nodiscard]] nas::labelled_data view() const { return {x.data(), y.data(), y.size(), F}; }
  [[nodiscard]] nn::labelled_view<std::uint8_t> nn_view() const { return {x.data(), y.data(), y.size(), F}; }
  void add(const tl::data::traffic_set& s, std::size_t i) {
    x.insert(x.end(), s.x.begin() + static_cast<std::ptrdiff_t>(i * F), s.x.begin() + static_cast<std::ptrdiff_t>((i + 1) * F));
    y.push_back(s.y[i]);
  }
};

/// The hand-designed baseline.
using mlp = tl::sequential<tl::dense<F, 64>, tl::relu, tl::dense<64, 64>, tl::relu, tl::dense<64, C>>;
using mlp_int8 = nn::quantized_network<mlp, tl::int8_per_channel, nn::heap_storage>;

double int8_accuracy(nn::network<mlp>& net, const rows& calibration, const rows& test) {
  auto q = std::make_unique<mlp_int8>();
  nn::quantize_post_training(net, calibration.x.data(), calibration.count(), *q);
  std::size_t hits = 0;
  for (std::size_t i = 0; i < test.count(); ++i) hits += q->classify(test.x.data() + i * F) == test.y[i] ? 1 : 0;
  return static_cast<double>(hits) / static_cast<double>(test.count());
}

struct baseline {
  double unadapted = 0, scratch = 0, head_only = 0, tuned = -1, tuned_int8 = -1;
};

/// The 16-64-64-6 MLP: trained on the source (nn::fit, Adam), then (a) used on
/// the target unchanged, (b) its body frozen and a new head trained by
/// nas::train_head on the target flows (the search's protocol), (c) fine-tuned
/// whole as the search's best model is; and (d) trained on the target flows alone.
baseline run_baseline(const options& opt, const rows& source, const rows& target, const rows& test) {
  baseline b;
  auto net = std::make_unique<nn::network<mlp>>();
  net->initialize<nn::he_normal>(opt.seed);
  nn::fit(*net, nn::adam{.learning_rate = 1e-3f}, nn::softmax_cross_entropy{}, source.nn_view(),
          {.epochs = opt.source_epochs, .batch_size = 64, .seed = opt.seed, .shuffle = true});
  b.unadapted = nn::evaluate(*net, nn::softmax_cross_entropy{}, test.nn_view()).accuracy;
  auto p = net->parameters();
  auto body = [&](const rows& r) {
    std::vector<float> h0(r.count() * 64), h1(r.count() * 64);
    tl::kernels::dense_f32(r.count(), 64, F, r.x.data(), p.data(), p.data() + 64 * F, h0.data());
    for (float& v : h0) v = std::max(v, 0.0f);
    const float* p1 = p.data() + mlp::param_offset<2>;
    tl::kernels::dense_f32(r.count(), 64, 64, h0.data(), p1, p1 + 64 * 64, h1.data());
    for (float& v : h1) v = std::max(v, 0.0f);
    return h1;
  };
  const std::vector<float> ft = body(target), fe = body(test);
  const nas::head h = nas::train_head(ft.data(), target.y.data(), target.count(), 64, C, {}, false, 0.0f);
  std::copy(h.params.begin(), h.params.end(), p.begin() + static_cast<std::ptrdiff_t>(mlp::param_offset<4>));
  b.head_only = nas::head_accuracy(h, fe.data(), test.y.data(), test.count());
  if (opt.finetune_epochs > 0) {
    nn::fit(*net, nn::adam{.learning_rate = 1e-4f}, nn::softmax_cross_entropy{}, target.nn_view(),
            {.epochs = opt.finetune_epochs, .batch_size = 32, .seed = opt.seed, .shuffle = true});
    b.tuned = nn::evaluate(*net, nn::softmax_cross_entropy{}, test.nn_view()).accuracy;
    b.tuned_int8 = int8_accuracy(*net, target, test);
  }
  auto scratch = std::make_unique<nn::network<mlp>>();
  scratch->initialize<nn::he_normal>(opt.seed);
  nn::fit(*scratch, nn::adam{.learning_rate = 1e-3f}, nn::softmax_cross_entropy{}, target.nn_view(),
          {.epochs = 200, .batch_size = 32, .seed = opt.seed, .shuffle = true});
  b.scratch = nn::evaluate(*scratch, nn::softmax_cross_entropy{}, test.nn_view()).accuracy;
  return b;
}

}  // namespace

int main(int argc, char** argv) {
  options opt;
  examples::cli args(argc, argv,
                     "[--source-n N] [--source-epochs N] [--target-per-class N] [--val-n N] [--test-n N] [--budget N] "
                     "[--seeds N] [--population N] [--sample N] [--finetune-epochs N] "
                     "[--profile cortex_m4|phone|edge_server] [--json FILE] [--svg FILE] [--header FILE] [--seed S]");
  while (args.next()) {
    if (args.is("--source-n")) opt.source_n = args.count();
    else if (args.is("--source-epochs")) opt.source_epochs = args.count();
    else if (args.is("--target-per-class")) opt.target_per_class = args.count();
    else if (args.is("--val-n")) opt.val_n = args.count();
    else if (args.is("--test-n")) opt.test_n = args.count();
    else if (args.is("--budget")) opt.budget = args.count();
    else if (args.is("--seeds")) opt.seeds = args.count();
    else if (args.is("--population")) opt.population = args.count();
    else if (args.is("--sample")) opt.sample = args.count();
    else if (args.is("--finetune-epochs")) opt.finetune_epochs = args.count();
    else if (args.is("--profile")) opt.profile = args.text();
    else if (args.is("--json")) opt.json = args.text();
    else if (args.is("--svg")) opt.svg = args.text();
    else if (args.is("--header")) opt.header = args.text();
    else if (args.is("--seed")) opt.seed = args.count<std::uint64_t>();
    else args.unknown();
  }
  try {
    const auto t_all = std::chrono::steady_clock::now();
    const nas::device_profile device = nas_compare::profile_named(opt.profile);
    const auto src_domain = tl::data::campus_wired(), tgt_domain = tl::data::cellular_edge();
    const auto src = tl::data::generate_traffic(src_domain, {.flows = opt.source_n, .seed = opt.seed});
    // The target pool: enough flows for target_per_class of every class, then validation and test.
    const auto pool = tl::data::generate_traffic(
        tgt_domain, {.flows = 20 * opt.target_per_class * C + opt.val_n + opt.test_n, .seed = opt.seed + 1000});
    rows source, target, val, test;
    for (std::size_t i = 0; i < src.count; ++i) source.add(src, i);
    std::vector<std::size_t> per_class(C, 0);
    for (std::size_t i = 0; i < pool.count; ++i) {
      if (per_class[pool.y[i]] < opt.target_per_class) {
        ++per_class[pool.y[i]];
        target.add(pool, i);
      } else if (val.count() < opt.val_n) {
        val.add(pool, i);
      } else if (test.count() < opt.test_n) {
        test.add(pool, i);
      }
    }
    for (std::size_t c = 0; c < C; ++c)
      if (per_class[c] < opt.target_per_class) {
        std::fprintf(stderr, "nas_traffic: the target pool holds only %zu flows of class %s\n", per_class[c],
                     tl::data::traffic_class_name(c));
        return 1;
      }
    std::printf("traffic task (data/traffic.hpp): %zu features, %zu classes; source %s %zu flows; target %s: %zu "
                "training (%zu per class), %zu validation, %zu test\n",
                F, C, src_domain.name.c_str(), source.count(), tgt_domain.name.c_str(), target.count(),
                opt.target_per_class, val.count(), test.count());
    std::printf("device %s: flash %zu bytes, RAM %zu bytes, %.1f pJ/MAC, %.1f pJ/byte (assumed)\n", device.name.c_str(),
                device.flash_bytes, device.ram_bytes, device.pj_per_mac, device.pj_per_byte);

    const nas::mlp_space space{.inputs = F, .outputs = C, .widths = {8, 16, 32, 64, 128}, .min_depth = 1, .max_depth = 3};
    std::printf("search space: %.0f genomes\n", space.size());
    auto t0 = std::chrono::steady_clock::now();
    nas::mlp_supernet supernet(space, opt.seed);
    const auto losses = supernet.train(source.view(), {.epochs = opt.source_epochs, .batch_size = 64,
                                                       .learning_rate = 1e-3f, .random_subnets = 2, .seed = opt.seed});
    std::printf("supernet (%zu parameters) trained on the source in %.1f s; largest sub-network loss per epoch:",
                supernet.parameters().size(), nas_compare::seconds_since(t0));
    for (double l : losses) std::printf(" %.4f", l);
    std::printf("\n");

    nas::transfer_evaluator eval(supernet, device, target.view(), val.view());
    // Hypervolume reference: the largest genome's flash (the whole space fits the profiles' budgets many
    // times over, so a budget as reference would squeeze every front into its first percent).
    const std::size_t flash_ref = nas::flash_bytes(space, space.largest());
    const nas_compare::settings cs{.budget = opt.budget, .seeds = opt.seeds, .population = opt.population,
                                   .sample = opt.sample};
    const auto runs = nas_compare::strategies(space, eval, cs, flash_ref);
    const std::vector<nas::candidate> all = nas_compare::union_of(runs);
    const std::size_t best = nas_compare::print_front(all, eval, test.view(), false);
    const nas::candidate& chosen = all[best];
    nas::transferred_model model = eval.transfer(chosen.g, test.view());
    const double head_only = model.accuracy;
    bool kept_tuned = false;
    if (opt.finetune_epochs > 0) {
      const nas::finetune_options fo{.epochs = opt.finetune_epochs, .batch_size = 32, .learning_rate = 1e-4f, .seed = opt.seed};
      const double tuned_val = eval.fine_tune(chosen.g, val.view(), fo).accuracy;
      nas::transferred_model tuned = eval.fine_tune(chosen.g, test.view(), fo);
      std::printf("\nbest model %s fine-tuned whole (%zu epochs): validation %.4f (head only %.4f), test %.4f (head only "
                  "%.4f)%s\n",
                  chosen.g.key().c_str(), opt.finetune_epochs, tuned_val, chosen.obj.accuracy, tuned.accuracy, head_only,
                  tuned_val > chosen.obj.accuracy ? ": the fine-tuned model is kept" : ": the head-only model is kept");
      if (tuned_val > chosen.obj.accuracy) {
        model = std::move(tuned);
        kept_tuned = true;
      }
    }

    const baseline b = run_baseline(opt, source, target, test);
    nas::objectives mo;
    const nas::genome mlp_shape{{64, 64}, {nas::layer_precision::int8, nas::layer_precision::int8, nas::layer_precision::int8}};
    nas::apply_costs(space, mlp_shape, device, mo);
    std::printf("\n| model (target test, %zu flows) | accuracy | flash bytes | arena bytes |\n|---|---|---|---|\n",
                test.count());
    std::printf("| NAS best %s (transferred%s; simulated int8 layers) | %.4f | %zu | %zu |\n", chosen.g.key().c_str(),
                kept_tuned ? ", fine-tuned" : ", head only", model.accuracy, chosen.obj.flash_bytes,
                chosen.obj.arena_bytes);
    std::printf("| 16-64-64-6 source model, no adaptation (fp32) | %.4f | %zu | %zu |\n", b.unadapted, mlp::param_count * 4,
                mlp::arena_bytes<tl::fp32>);
    std::printf("| 16-64-64-6 trained on the %zu target flows alone (fp32) | %.4f | %zu | %zu |\n", target.count(),
                b.scratch, mlp::param_count * 4, mlp::arena_bytes<tl::fp32>);
    std::printf("| 16-64-64-6 transferred, head only (fp32) | %.4f | %zu | %zu |\n", b.head_only, mlp::param_count * 4,
                mlp::arena_bytes<tl::fp32>);
    if (b.tuned >= 0) {
      std::printf("| 16-64-64-6 transferred, fine-tuned whole (fp32) | %.4f | %zu | %zu |\n", b.tuned,
                  mlp::param_count * 4, mlp::arena_bytes<tl::fp32>);
      std::printf("| 16-64-64-6 transferred, fine-tuned whole, int8 (library PTQ) | %.4f | %zu | %zu |\n", b.tuned_int8,
                  mo.flash_bytes, mo.arena_bytes);
    }
    if (b.tuned_int8 >= 0) {  // front members that dominate the int8 baseline on (test accuracy, flash)
      std::size_t n = 0;
      std::string which;
      for (std::size_t i : nas::feasible_front(all)) {
        const double acc = eval.transfer(all[i].g, test.view()).accuracy;
        const std::size_t flash = all[i].obj.flash_bytes;
        if (acc >= b.tuned_int8 && flash <= mo.flash_bytes && (acc > b.tuned_int8 || flash < mo.flash_bytes)) {
          ++n;
          which += (which.empty() ? "" : ", ") + all[i].g.key();
        }
      }
      std::printf("front members that dominate the 16-64-64-6 int8 model on (test accuracy, flash): %zu%s%s\n", n,
                  n ? ": " : "", which.c_str());
    }
    if (!opt.json.empty()) {
      nas_compare::write_file(opt.json, nas::front_json(all, device, flash_ref, "union"));
      std::printf("front: %s\n", opt.json.c_str());
    }
    if (!opt.svg.empty()) {
      nas_compare::write_file(opt.svg, nas::front_svg(all, device, "traffic: campus → cellular edge: every evaluation and the union front"));
      std::printf("plot: %s\n", opt.svg.c_str());
    }
    if (!opt.header.empty()) {
      nas_compare::write_file(opt.header, nas::emit_header(space, model, "nas_traffic_model"));
      std::printf("best model header: %s (%zu parameters)\n", opt.header.c_str(), model.parameters.size());
    }
    std::printf("evaluator: %zu calls, %zu distinct genomes; total %.1f s\n", eval.calls(), eval.distinct(),
                nas_compare::seconds_since(t_all));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "nas_traffic: %s\n", e.what());
    return 1;
  }
  return 0;
}
