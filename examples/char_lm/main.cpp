// A character-level causal language model (issue 20; docs/transformers.md, "A
// character-level language model"): a two-block pre-norm transformer over 64
// characters learns to predict the next character of a text that every Debian
// system has — by default /usr/share/common-licenses/GPL-3, the GNU GPL
// version 3, shipped by the essential package base-files. It trains with the
// library's loop (nn::fit, Adam, softmax cross-entropy over the vocabulary at
// every position), prints the training and validation loss per epoch beside
// the unigram baseline, then samples text with nn::incremental_decoder (a KV
// cache per attention layer) and checks every decoded step against the full
// causal forward pass.
//
//   char_lm [--text FILE] [--epochs N] [--lr LR] [--batch B] [--val-percent P] [--max-chars N]
//           [--prompt TEXT] [--sample-chars N] [--temperature T] [--seed S]
//
// The vocabulary is fixed: newline and the 95 printable ASCII characters (96
// ids); a tab reads as a space, any other byte is refused with its offset.
// The last --val-percent % of the text (default 10) is held out as validation
// data. The training windows (64 characters and the 64 that follow them by
// one) start at a fresh random offset every epoch (nn::fit's on_epoch_begin).
// --max-chars N keeps the first N characters only (a smoke test).
//
// Sampling: the prompt is fed one character at a time, then each next
// character is drawn from softmax(logits / T) with a seeded generator (T = 0:
// the most likely one). When the 64 positions are full, the decoder is
// cleared and fed the last 32 characters again (learned positions: a window
// cannot slide), so each sampled character costs about two decoder steps.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "tinylarge/nn/nn.hpp"
#include "../common/cli.hpp"

namespace nn = tl::nn;

namespace {

// [char-model]
constexpr std::size_t context = 64, dim = 64, heads = 4, hidden = 256, vocab = 96;  // newline + printable ASCII
// Pre-norm blocks; 10 % dropout on each block's output (training only: the identity at inference).
using attention_block =
    tl::residual<tl::layer_norm<dim>, tl::multi_head_attention<dim, heads, true>, tl::dropout<10>>;
using mlp_block = tl::residual<tl::layer_norm<dim>, tl::conv2d<hidden, 1>, tl::gelu, tl::conv2d<dim, 1>, tl::dropout<10>>;
/// Ids of `context` characters in, the next character's `vocab` logits out at every position.
using char_model = tl::sequential<tl::input<1, context, 1>, tl::embedding<vocab, dim>, tl::learned_positions<context, dim>,
                                  attention_block, mlp_block, attention_block, mlp_block, tl::layer_norm<dim>,
                                  tl::conv2d<vocab, 1>>;
// [char-model]

struct options {
  std::string text = "/usr/share/common-licenses/GPL-3";  // Debian's base-files
  std::size_t epochs = 30, batch = 8, val_percent = 10, max_chars = 0, sample_chars = 600;
  float lr = 3e-3f, temperature = 0.8f;
  std::string prompt = "This License";
  std::uint64_t seed = 1;
};

/// Newline → 0, ' ' … '~' → 1 … 95; -1 for anything else.
int char_id(char ch) {
  if (ch == '\n') return 0;
  if (ch == '\t') ch = ' ';
  return ch >= ' ' && ch <= '~' ? ch - ' ' + 1 : -1;
}
char id_char(std::size_t id) { return id == 0 ? '\n' : static_cast<char>(' ' + id - 1); }

std::vector<std::uint8_t> encode(const std::string& s, const char* what) {
  std::vector<std::uint8_t> ids;
  ids.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    const int id = char_id(s[i]);
    if (id < 0) {
      std::fprintf(stderr, "char_lm: %s: byte 0x%02x at offset %zu is not printable ASCII, a tab or a newline\n", what,
                   static_cast<unsigned>(static_cast<unsigned char>(s[i])), i);
      std::exit(1);
    }
    ids.push_back(static_cast<std::uint8_t>(id));
  }
  return ids;
}

/// Windows of `context` ids starting at `first`, `first + context`, …: x the
/// ids, y the ids one position later (the next character at each position).
struct windows {
  std::vector<float> x;
  std::vector<std::uint8_t> y;
  std::size_t count = 0;
  void fill(const std::vector<std::uint8_t>& ids, std::size_t begin, std::size_t first, std::size_t n) {
    count = n;
    x.resize(n * context);
    y.resize(n * context);
    for (std::size_t w = 0; w < n; ++w)
      for (std::size_t t = 0; t < context; ++t) {
        const std::size_t i = begin + first + w * context + t;
        x[w * context + t] = static_cast<float>(ids[i]);
        y[w * context + t] = ids[i + 1];
      }
  }
  nn::labelled_view<std::uint8_t> view() const { return {x.data(), y.data(), count, context, context}; }
};

/// Cross-entropy (nats per character) on `ids[from, to)` of the unigram
/// distribution of `ids[0, from)`, add-one smoothed; and that distribution's entropy.
std::pair<double, double> unigram(const std::vector<std::uint8_t>& ids, std::size_t from, std::size_t to) {
  std::vector<double> count(vocab, 1.0);
  for (std::size_t i = 0; i < from; ++i) count[ids[i]] += 1.0;
  const double total = static_cast<double>(from + vocab);
  double entropy = 0.0;
  for (double c : count) entropy -= c / total * std::log(c / total);
  double cross = 0.0;
  for (std::size_t i = from; i < to; ++i) cross -= std::log(count[ids[i]] / total);
  return {cross / static_cast<double>(to - from), entropy};
}

/// One id from softmax(z / temperature) (the argmax for temperature 0).
std::size_t sample(std::span<const float> z, float temperature, tl::rng& g) {
  const auto top = static_cast<std::size_t>(std::max_element(z.begin(), z.end()) - z.begin());
  if (temperature <= 0.0f) return top;
  std::vector<double> p(z.size());
  double sum = 0.0;
  for (std::size_t j = 0; j < z.size(); ++j) sum += p[j] = std::exp((static_cast<double>(z[j]) - z[top]) / temperature);
  double u = static_cast<double>(g.uniform()) * sum;
  for (std::size_t j = 0; j < z.size(); ++j)
    if ((u -= p[j]) < 0.0) return j;
  return top;
}

}  // namespace

int main(int argc, char** argv) {
  options o;
  examples::cli args(argc, argv,
                     "[--text FILE] [--epochs N] [--lr LR] [--batch B] [--val-percent P] [--max-chars N] "
                     "[--prompt TEXT] [--sample-chars N] [--temperature T] [--seed S]");
  while (args.next()) {
    if (args.is("--text")) o.text = args.text();
    else if (args.is("--epochs")) o.epochs = args.count();
    else if (args.is("--lr")) o.lr = args.real<float>();
    else if (args.is("--batch")) o.batch = args.count();
    else if (args.is("--val-percent")) o.val_percent = args.count();
    else if (args.is("--max-chars")) o.max_chars = args.count();
    else if (args.is("--prompt")) o.prompt = args.text();
    else if (args.is("--sample-chars")) o.sample_chars = args.count();
    else if (args.is("--temperature")) o.temperature = args.real<float>();
    else if (args.is("--seed")) o.seed = args.count<std::uint64_t>();
    else args.unknown();
  }
  if (o.batch == 0 || o.val_percent == 0 || o.val_percent >= 100 || o.prompt.empty() || o.temperature < 0.0f) {
    std::fprintf(stderr, "char_lm: needs --batch > 0, 0 < --val-percent < 100, a non-empty --prompt and "
                         "--temperature >= 0\n");
    return 2;
  }

  std::ifstream file(o.text, std::ios::binary);
  if (!file) {
    std::fprintf(stderr,
                 "char_lm: cannot open the text '%s' (the default, the GNU GPL 3, is installed by Debian's "
                 "base-files package); pass --text FILE\n",
                 o.text.c_str());
    return 1;
  }
  std::string text((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
  if (o.max_chars > 0 && text.size() > o.max_chars) text.resize(o.max_chars);
  const std::vector<std::uint8_t> ids = encode(text, o.text.c_str());
  const std::vector<std::uint8_t> prompt = encode(o.prompt, "--prompt");
  // The validation tail; each part needs one window of context + 1 characters.
  const std::size_t n_val = ids.size() * o.val_percent / 100, n_train = ids.size() - n_val;
  if (n_val < context + 1 || n_train < 2 * context + 1) {
    std::fprintf(stderr, "char_lm: the text has %zu characters: too short for windows of %zu (train and validation)\n",
                 ids.size(), context);
    return 1;
  }

  std::printf("text: %s, %zu characters (%zu training, %zu validation: the last %zu %%)\n", o.text.c_str(), ids.size(),
              n_train, n_val, o.val_percent);
  const auto [uni_val, uni_entropy] = unigram(ids, n_train, ids.size());
  std::printf("unigram baseline (training-text character frequencies): entropy %.4f nats/char, validation "
              "cross-entropy %.4f nats/char (%.3f bits/char); uniform over %zu ids: %.4f\n",
              uni_entropy, uni_val, uni_val / std::log(2.0), vocab, std::log(static_cast<double>(vocab)));
  std::printf("model: %zu parameters, %zu MACs per window of %zu characters\n", char_model::param_count,
              char_model::macs, context);

  // Training windows at a fresh offset per epoch (the count stays the same); validation windows fixed.
  const std::size_t n_windows = (n_train - 1 - (context - 1)) / context;
  windows train, val;
  train.fill(ids, 0, 0, n_windows);
  val.fill(ids, n_train, 0, (n_val - 1) / context);
  const nn::labelled_view<std::uint8_t> train_view = train.view(), val_view = val.view();

  auto net = std::make_unique<nn::network<char_model>>(o.seed);
  // GPT-2's initialisation of the two tables, N(0, 0.02²) (nn.Embedding's N(0, 1) is too wide here).
  for (float& v : net->parameters().subspan(0, char_model::layer<0>::param_count + char_model::layer<1>::param_count))
    v *= 0.02f;

  struct epoch_log {
    const std::vector<std::uint8_t>& ids;
    windows& train;
    std::size_t n_windows;
    double baseline;
    tl::rng g;
    void on_epoch_begin(std::size_t epoch, nn::network<char_model>&) {
      if (epoch > 1) train.fill(ids, 0, g.uniform_int(static_cast<std::uint32_t>(context)), n_windows);
    }
    bool on_epoch_end(const nn::epoch_report& r, nn::network<char_model>&) {
      std::printf("epoch %2zu  lr %.2e  train loss %.4f  val loss %.4f nats/char (%.3f bits/char, %.1f %% of the "
                  "unigram baseline)  val acc %.1f %%  %.0f chars/s\n",
                  r.epoch, static_cast<double>(r.learning_rate), r.train_loss, r.val_loss, r.val_loss / std::log(2.0),
                  100.0 * r.val_loss / baseline, 100.0 * r.val_accuracy, r.samples_per_second * context);
      std::fflush(stdout);
      return true;
    }
  } log{ids, train, n_windows, uni_val, tl::rng(o.seed, 0xc4a21ULL)};
  const auto t0 = std::chrono::steady_clock::now();
  const auto hist = nn::fit(*net, nn::adam{.learning_rate = o.lr}, nn::softmax_cross_entropy{}, train_view,
                            {.epochs = o.epochs, .batch_size = o.batch, .seed = o.seed, .warmup_epochs = 1,
                             .cosine = true},
                            &val_view, log);
  const double train_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (!hist.empty())
    std::printf("trained %zu epochs in %.1f s: validation loss %.4f nats/char = %.3f bits/char (unigram %.3f)\n",
                hist.size(), train_s, hist.back().val_loss, hist.back().val_loss / std::log(2.0),
                uni_val / std::log(2.0));

  // Sampling with the incremental decoder; every step is checked against the full causal forward pass of
  // the same context (the rows after it are padding, which a causal model's earlier rows never see).
  auto dec = std::make_unique<nn::incremental_decoder<char_model>>(net->parameters());
  auto whole = std::make_unique<nn::inference_network<char_model>>(*net);  // the reference (batch-1 inference)
  std::vector<std::uint8_t> seq(prompt);
  std::vector<float> window(context, 0.0f);
  tl::rng g(o.seed, 0x5a3b1eULL);
  double worst = 0.0, decode_s = 0.0, full_s = 0.0;
  std::size_t steps = 0;
  std::span<const float> logits;
  const auto feed = [&](std::size_t from) {  // decoder steps for seq[from, end)
    for (std::size_t i = from; i < seq.size(); ++i) {
      const auto a = std::chrono::steady_clock::now();
      logits = dec->append(seq[i]);
      decode_s += std::chrono::duration<double>(std::chrono::steady_clock::now() - a).count();
      ++steps;
    }
  };
  if (seq.size() > context) seq.erase(seq.begin(), seq.end() - static_cast<std::ptrdiff_t>(context));
  feed(0);
  for (std::size_t k = 0; k < o.sample_chars; ++k) {
    // The reference: the whole context through inference_network::forward, the last context row read.
    const std::size_t used = dec->size(), start = seq.size() - used;
    for (std::size_t t = 0; t < context; ++t) window[t] = t < used ? static_cast<float>(seq[start + t]) : 0.0f;
    const auto a = std::chrono::steady_clock::now();
    const float* full = whole->forward(window.data()) + (used - 1) * vocab;
    full_s += std::chrono::duration<double>(std::chrono::steady_clock::now() - a).count();
    for (std::size_t j = 0; j < vocab; ++j)
      worst = std::max(worst, static_cast<double>(std::abs(logits[j] - full[j])) /
                                  std::max(1.0, static_cast<double>(std::abs(full[j]))));
    seq.push_back(static_cast<std::uint8_t>(sample(logits, o.temperature, g)));
    if (dec->size() == context) {  // full: start again from the last half of the context
      dec->clear();
      feed(seq.size() - context / 2);
    } else {
      feed(seq.size() - 1);
    }
  }
  std::printf("\nsample (prompt \"%s\", temperature %.2f, seed %llu, %zu characters):\n-----\n", o.prompt.c_str(),
              static_cast<double>(o.temperature), static_cast<unsigned long long>(o.seed), o.sample_chars);
  for (std::uint8_t id : seq) std::putchar(id_char(id));
  std::printf("\n-----\n");
  std::printf("decoder (%zu bytes): %zu steps, %.1f us per step; the full forward pass of the context: %.1f us per "
              "character; largest difference of the logits from it %.2e\n",
              sizeof(nn::incremental_decoder<char_model>), steps, 1e6 * decode_s / static_cast<double>(steps ? steps : 1),
              1e6 * full_s / static_cast<double>(o.sample_chars ? o.sample_chars : 1), worst);
  if (!(worst <= 1e-4)) {
    std::fprintf(stderr, "char_lm: the incremental decoder's logits differ from the full forward pass by %.2e\n", worst);
    return 1;
  }
  return 0;
}
