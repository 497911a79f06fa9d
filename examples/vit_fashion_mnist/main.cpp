// A ViT-style classifier on Fashion-MNIST (Dosovitskiy et al., ICLR 2021, at
// toy scale): 28×28 images cut into P×P patches (P = 7: 16 tokens; P = 4: 49),
// each projected to 64 features (`patch_embedding`), learned positions,
// `Blocks` pre-norm transformer blocks (residual 4-head self-attention,
// residual GELU MLP of width 128 as position-wise 1×1 convolutions), a final
// layer norm, the mean over tokens (`avg_pool2d` over the token grid) and a
// dense head of 10 logits. Trained in fp32 with Adam; prints the test
// accuracy and the training throughput after every epoch.
//
//   vit_fashion_mnist [--patch 7|4] [--blocks 2|4] [--dropout 0|10] [--epochs N] [--lr LR]
//                     [--decay D] [--warmup N] [--cosine] [--augment] [--batch B] [--seed S] [--quick]
//
// --warmup N and --cosine set nn::fit's learning-rate schedule (N epochs of linear
// warm-up, then cosine decay instead of ×D per epoch). --augment trains every epoch
// on a fresh random augmentation of the training images (nn::fit's on_epoch_begin):
// each image shifted by up to 2 pixels in x and y (zero fill) and mirrored left-right
// with probability ½ (a mirrored garment keeps its class).
// --quick trains on 6 000 images and tests on 2 000 for one epoch (a smoke test).
#include <cstdio>
#include <memory>
#include <string>
#include <type_traits>

#include "tinylarge/data/idx.hpp"
#include "tinylarge/nn/nn.hpp"
#include "../common/cli.hpp"

namespace nn = tl::nn;

namespace {

constexpr std::size_t dim = 64, heads = 4, hidden = 128, classes = 10;

/// The ViT with P×P patches, `Blocks` transformer blocks and, with Drop > 0,
/// dropout of Drop % on each block's output and inside the MLP (as ViT does).
template <std::size_t P, std::size_t Blocks, unsigned Drop>
struct vit {
  static constexpr std::size_t grid = 28 / P, tokens = grid * grid;
  using attention_block = std::conditional_t<
      Drop == 0, tl::residual<tl::layer_norm<dim>, tl::multi_head_attention<dim, heads>>,
      tl::residual<tl::layer_norm<dim>, tl::multi_head_attention<dim, heads>, tl::dropout<Drop>>>;
  using mlp_block = std::conditional_t<
      Drop == 0, tl::residual<tl::layer_norm<dim>, tl::conv2d<hidden, 1>, tl::gelu, tl::conv2d<dim, 1>>,
      tl::residual<tl::layer_norm<dim>, tl::conv2d<hidden, 1>, tl::gelu, tl::dropout<Drop>, tl::conv2d<dim, 1>,
                   tl::dropout<Drop>>>;
  template <std::size_t N, class... Ls>
  struct build {
    using type = typename build<N - 1, Ls..., attention_block, mlp_block>::type;
  };
  template <class... Ls>
  struct build<0, Ls...> {
    using type = tl::sequential<Ls..., tl::layer_norm<dim>, tl::avg_pool2d<grid>, tl::flatten, tl::dense<dim, classes>>;
  };
  using model = typename build<Blocks, tl::patch_embedding<28, 28, 1, P, dim>, tl::learned_positions<tokens, dim>>::type;
};

struct options {
  std::size_t patch = 7, blocks = 2, epochs = 10, batch = 64, dropout = 0, warmup = 0;
  float lr = 1e-3f, decay = 0.9f;
  std::uint64_t seed = 1;
  bool quick = false, cosine = false, augment = false;
};

/// Refreshes `out` with a random augmentation of the 28×28 images `in` before
/// every epoch (nn::fit's on_epoch_begin): shift by dx, dy ∈ [−2, 2] with zero
/// fill, then a left-right mirror with probability ½; rng(seed, epoch).
struct augmenter {
  const std::vector<float>* in;
  std::vector<float>* out;
  std::uint64_t seed;
  template <class Net>
  void on_epoch_begin(std::size_t epoch, Net&) {
    tl::rng g(seed, 0xa09'0000ULL + epoch);
    const std::size_t n = in->size() / 784;
    for (std::size_t i = 0; i < n; ++i) {
      const int dx = static_cast<int>(g.uniform_int(5)) - 2, dy = static_cast<int>(g.uniform_int(5)) - 2;
      const bool flip = g.uniform_int(2) == 1;
      const float* src = in->data() + i * 784;
      float* dst = out->data() + i * 784;
      for (int r = 0; r < 28; ++r)
        for (int c = 0; c < 28; ++c) {
          const int sr = r - dy, sc0 = c - dx, sc = flip ? 27 - sc0 : sc0;
          dst[r * 28 + c] = sr >= 0 && sr < 28 && sc >= 0 && sc < 28 ? src[sr * 28 + sc] : 0.0f;
        }
    }
  }
  template <class Net>
  bool on_epoch_end(const nn::epoch_report&, Net&) {
    return true;
  }
};

template <class Model>
int run(const char* name, const options& opt, const nn::labelled_view<std::uint8_t>& train,
        const nn::labelled_view<std::uint8_t>& test) {
  std::printf("== %s: %zu parameters, %zu MACs/sample\n", name, Model::param_count, Model::macs);
  auto net = std::make_unique<nn::network<Model>>();
  // Weights N(0, 0.02²) as ViT's reference implementation, positions too; layer norms start at 1, 0.
  net->template initialize<nn::he_normal>(opt.seed);
  tl::rng g(opt.seed + 7);
  Model::for_each_layer([&]<std::size_t I>() {
    using L = typename Model::template layer<I>;
    if constexpr (L::kind == nn::layer_kind::learned_positions) {
      auto p = net->parameters().subspan(Model::template param_offset<I>, L::param_count);
      for (float& v : p) v = 0.02f * g.normal();
    }
  });
  const nn::adam optimizer{.learning_rate = opt.lr};
  const nn::fit_options fo{.epochs = opt.epochs, .batch_size = opt.batch, .seed = opt.seed, .shuffle = true,
                           .lr_decay = opt.decay, .warmup_epochs = opt.warmup, .cosine = opt.cosine};
  std::vector<nn::epoch_report> history;
  if (opt.augment) {
    const std::vector<float> original(train.x, train.x + train.count * 784);
    std::vector<float> augmented(original.size());
    const nn::labelled_view<std::uint8_t> aug{augmented.data(), train.y, train.count, 784};
    history = nn::fit(*net, optimizer, nn::softmax_cross_entropy{}, aug, fo, &test,
                      augmenter{&original, &augmented, opt.seed}, nn::progress_printer{.prefix = "  "});
  } else {
    history = nn::fit(*net, optimizer, nn::softmax_cross_entropy{}, train, fo, &test, nn::progress_printer{.prefix = "  "});
  }
  double best = 0.0, secs = 0.0;
  for (const auto& h : history) {
    best = h.val_accuracy > best ? h.val_accuracy : best;
    secs += h.seconds;
  }
  const double acc = nn::evaluate(*net, nn::softmax_cross_entropy{}, test).accuracy;
  std::printf("  %s: test accuracy %.2f%% after %zu epochs (best epoch %.2f%%), %.0f training samples/s\n", name,
              100 * acc, history.size(), 100 * best,
              static_cast<double>(train.count * history.size()) / secs);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  options opt;
  examples::cli args(argc, argv,
                     "[--patch 7|4] [--blocks 2|4] [--dropout 0|10] [--epochs N] [--lr LR] [--decay D] [--warmup N] [--cosine] "
                     "[--augment] [--batch B] [--seed S] [--quick]");
  while (args.next()) {
    if (args.is("--patch")) opt.patch = args.count();
    else if (args.is("--blocks")) opt.blocks = args.count();
    else if (args.is("--dropout")) opt.dropout = args.count();
    else if (args.is("--epochs")) opt.epochs = args.count();
    else if (args.is("--batch")) opt.batch = args.count();
    else if (args.is("--lr")) opt.lr = args.real<float>();
    else if (args.is("--decay")) opt.decay = args.real<float>();
    else if (args.is("--warmup")) opt.warmup = args.count();
    else if (args.is("--cosine")) opt.cosine = true;
    else if (args.is("--augment")) opt.augment = true;
    else if (args.is("--seed")) opt.seed = args.count<std::uint64_t>();
    else if (args.is("--quick")) opt.quick = true;
    else args.unknown();
  }
  if ((opt.patch != 7 && opt.patch != 4) || (opt.blocks != 2 && opt.blocks != 4) ||
      (opt.dropout != 0 && opt.dropout != 10)) {
    std::fprintf(stderr, "vit_fashion_mnist: --patch must be 7 or 4, --blocks 2 or 4 and --dropout 0 or 10 "
                         "(compiled-in models)\n");
    return 2;
  }
  if (opt.quick) opt.epochs = 1;
  try {
    const auto train_set = tl::data::load_fashion_mnist(tl::data::split::train);
    const auto test_set = tl::data::load_fashion_mnist(tl::data::split::test);
    nn::labelled_view<std::uint8_t> train{train_set.images.data(), train_set.labels.data(), train_set.count, 784};
    nn::labelled_view<std::uint8_t> test{test_set.images.data(), test_set.labels.data(), test_set.count, 784};
    if (opt.quick) {
      train.count = 6000;
      test.count = 2000;
    }
    std::printf("Fashion-MNIST: %zu training, %zu test images; Adam lr %g, %s, %zu warm-up epochs, batch %zu%s\n",
                train.count, test.count, static_cast<double>(opt.lr),
                opt.cosine ? "cosine decay" : ("x" + std::to_string(opt.decay) + " per epoch").c_str(), opt.warmup, opt.batch,
                opt.augment ? ", augmented (shifts of up to 2 pixels, mirrors)" : "");
    if (opt.dropout == 10) {
      if (opt.patch == 7 && opt.blocks == 2) return run<vit<7, 2, 10>::model>("vit_p7_b2_drop10", opt, train, test);
      if (opt.patch == 7 && opt.blocks == 4) return run<vit<7, 4, 10>::model>("vit_p7_b4_drop10", opt, train, test);
      if (opt.patch == 4 && opt.blocks == 2) return run<vit<4, 2, 10>::model>("vit_p4_b2_drop10", opt, train, test);
      return run<vit<4, 4, 10>::model>("vit_p4_b4_drop10", opt, train, test);
    }
    if (opt.patch == 7 && opt.blocks == 2) return run<vit<7, 2, 0>::model>("vit_p7_b2", opt, train, test);
    if (opt.patch == 7 && opt.blocks == 4) return run<vit<7, 4, 0>::model>("vit_p7_b4", opt, train, test);
    if (opt.patch == 4 && opt.blocks == 2) return run<vit<4, 2, 0>::model>("vit_p4_b2", opt, train, test);
    return run<vit<4, 4, 0>::model>("vit_p4_b4", opt, train, test);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "vit_fashion_mnist: %s\n", e.what());
    return 1;
  }
}
