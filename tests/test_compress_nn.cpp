// Tests of compress/network.hpp: per-layer policies on a network, fine-tuning with masks and
// shared weights kept, gradual pruning, structured shrinking, encoding with counted bytes,
// and inference of a whole model on the compressed forms.
//
// References are independent of the code under test: masks and codebooks are checked on the
// weights themselves (zeros, distinct values), the centroid update against gradients summed
// here from a plain backward pass, byte counts against sizes recomputed from the weights,
// and compressed inference against dense inference of a network holding the same weights.

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <set>
#include <vector>

#include "tinylarge/compress/network.hpp"
#include "tinylarge/core/rng.hpp"
#include "tinylarge/nn/nn.hpp"

namespace cz = tinylarge::compress;
namespace nn = tinylarge::nn;

namespace {

using small_model = tinylarge::sequential<tinylarge::dense<16, 24>, tinylarge::relu, tinylarge::dense<24, 12>,
                                          tinylarge::relu, tinylarge::dense<12, 4>>;

/// A labelled synthetic set: inputs uniform in [-1, 1], labels from a fixed random teacher.
struct synthetic {
  std::vector<float> x;
  std::vector<std::uint8_t> y;
  std::size_t n = 0;
  nn::labelled_view<std::uint8_t> view() const { return {x.data(), y.data(), n, 16}; }
};

synthetic make_data(std::size_t n, std::uint64_t seed) {
  synthetic d;
  d.n = n;
  tinylarge::rng g(seed);
  d.x.resize(n * 16);
  for (auto& v : d.x) v = 2.0f * static_cast<float>(g.next_u32() >> 8) * 0x1.0p-24f - 1.0f;
  nn::network<small_model> teacher(seed + 99);
  const float* out = teacher.forward(d.x.data(), n);
  d.y.resize(n);
  for (std::size_t i = 0; i < n; ++i) {
    std::size_t a = 0;
    for (std::size_t j = 1; j < 4; ++j) a = out[i * 4 + j] > out[i * 4 + a] ? j : a;
    d.y[i] = static_cast<std::uint8_t>(a);
  }
  return d;
}

nn::network<small_model> trained(const synthetic& d) {
  nn::network<small_model> net(7);
  nn::fit(net, nn::adam{.learning_rate = 3e-3f}, nn::softmax_cross_entropy{}, d.view(),
          {.epochs = 20, .batch_size = 32, .seed = 3});
  return net;
}

std::size_t zeros(std::span<const float> w) {
  return static_cast<std::size_t>(std::count(w.begin(), w.end(), 0.0f));
}

std::set<float> distinct(std::span<const float> w) { return {w.begin(), w.end()}; }

}  // namespace

TEST_CASE("per-layer pruning masks are kept through fine-tuning", "[compress_nn]") {
  const synthetic d = make_data(512, 11);
  auto net = trained(d);
  using P = cz::magnitude_prune<>;
  cz::network_compressor<small_model, P, P, cz::none> c;
  c.policy<0>().schedule.target_sparsity = 0.75;  // policies differ per layer
  c.policy<1>().schedule.target_sparsity = 0.5;
  c.apply(net, cz::stage_kind::pruning);
  REQUIRE(zeros(net.weights<0>()) >= cz::prune_count(16 * 24, 0.75));
  REQUIRE(c.layer(0).sparsity() == Approx(static_cast<double>(cz::prune_count(384, 0.75)) / 384.0));
  REQUIRE(c.layer(1).sparsity() == Approx(static_cast<double>(cz::prune_count(288, 0.5)) / 288.0));
  REQUIRE_FALSE(c.layer(2).pruned());
  const auto w0_before = std::vector<float>(net.weights<0>().begin(), net.weights<0>().end());
  const double loss_pruned = nn::evaluate(net, nn::softmax_cross_entropy{}, d.view()).loss;

  SECTION("with the constraint wrapper, pruned weights stay exactly zero and the kept ones train") {
    nn::fit(net, cz::fine_tuning(nn::adam{.learning_rate = 2e-3f}, c), nn::softmax_cross_entropy{}, d.view(),
            {.epochs = 5, .batch_size = 32, .seed = 4});
    std::size_t changed = 0;
    for (std::size_t i = 0; i < w0_before.size(); ++i) {
      if (c.layer(0).mask[i] == 0) REQUIRE(net.weights<0>()[i] == 0.0f);
      changed += (c.layer(0).mask[i] != 0 && net.weights<0>()[i] != w0_before[i]);
    }
    REQUIRE(net.weights<2>().size() == c.layer(1).mask.size());  // model layer 2 = weighted layer 1
    for (std::size_t i = 0; i < net.weights<2>().size(); ++i)
      if (c.layer(1).mask[i] == 0) REQUIRE(net.weights<2>()[i] == 0.0f);
    REQUIRE(changed > 0);
    REQUIRE(nn::evaluate(net, nn::softmax_cross_entropy{}, d.view()).loss < loss_pruned);
  }
  SECTION("negative control: a plain optimizer revives pruned weights") {
    nn::fit(net, nn::adam{.learning_rate = 2e-3f}, nn::softmax_cross_entropy{}, d.view(),
            {.epochs = 1, .batch_size = 32, .seed = 4});
    std::size_t revived = 0;
    for (std::size_t i = 0; i < w0_before.size(); ++i) revived += c.layer(0).mask[i] == 0 && net.weights<0>()[i] != 0.0f;
    REQUIRE(revived > 0);
  }
}

TEST_CASE("gradual pruning follows the polynomial-decay schedule during fine-tuning", "[compress_nn]") {
  const synthetic d = make_data(256, 12);
  auto net = trained(d);
  using P = cz::magnitude_prune<cz::polynomial_decay>;
  cz::network_compressor<small_model, P, cz::none, cz::none> c;
  auto& s = c.policy<0>().schedule;
  s.initial_sparsity = 0.0;
  s.final_sparsity = 0.8;
  s.begin_step = 0;
  s.end_step = 40;  // 256/32 = 8 steps per epoch: reached in epoch 6
  s.frequency = 8;
  c.begin_gradual_pruning();
  REQUIRE(c.layer(0).sparsity() == 0.0);
  nn::fit(net, cz::fine_tuning(nn::adam{.learning_rate = 1e-3f}, c), nn::softmax_cross_entropy{}, d.view(),
          {.epochs = 2, .batch_size = 32, .seed = 5});
  const double mid = c.layer(0).sparsity();  // steps 0..15 ran: the last prune was at step 8
  REQUIRE(mid == Approx(static_cast<double>(cz::prune_count(384, s.sparsity(8))) / 384.0));
  REQUIRE(mid > 0.0);
  REQUIRE(mid < 0.8);
  nn::fit(net, cz::fine_tuning(nn::adam{.learning_rate = 1e-3f}, c), nn::softmax_cross_entropy{}, d.view(),
          {.epochs = 5, .batch_size = 32, .seed = 6});
  REQUIRE(c.training_step() == 56);
  REQUIRE(c.layer(0).sparsity() == Approx(static_cast<double>(cz::prune_count(384, 0.8)) / 384.0));
  REQUIRE(zeros(net.weights<0>()) == cz::prune_count(384, 0.8));
}

TEST_CASE("weight sharing: centroids move by the summed gradients of their weights", "[compress_nn]") {
  const synthetic d = make_data(256, 13);
  auto net = trained(d);
  using DC = cz::deep_compression<cz::constant_sparsity, 3>;
  cz::network_compressor<small_model, DC, DC, cz::weight_sharing<2>> c;
  std::get<0>(c.policy<0>().stages).schedule.target_sparsity = 0.6;
  std::get<0>(c.policy<1>().stages).schedule.target_sparsity = 0.4;
  c.policy<2>().reserve_zero = false;
  c.apply(net, cz::stage_kind::pruning);
  c.apply(net, cz::stage_kind::quantization);
  REQUIRE(distinct(net.weights<0>()).size() <= 8);
  REQUIRE(distinct(net.weights<0>()).size() >= 6);
  REQUIRE(distinct(net.weights<4>()).size() <= 4);
  REQUIRE(c.layer(0).fixed_zero);
  REQUIRE_FALSE(c.layer(2).fixed_zero);
  const auto labels0 = c.layer(0).labels;
  const auto centroids0 = c.layer(0).centroids;
  const auto centroids2 = c.layer(2).centroids;

  // One SGD step by hand: the gradient of a batch, summed per centroid here.
  auto ref = net;
  const std::size_t b = 32;
  const float* out = ref.forward(d.x.data(), b, true);
  std::vector<float> dy(b * 4);
  nn::softmax_cross_entropy::evaluate(out, d.y.data(), b, 4, dy.data());
  ref.zero_gradients();
  ref.backward(dy.data());
  const float lr = 0.05f;
  std::vector<double> expect0(centroids0.begin(), centroids0.end()), expect2(centroids2.begin(), centroids2.end());
  {
    std::vector<double> sum0(8, 0.0), sum2(4, 0.0);
    for (std::size_t i = 0; i < labels0.size(); ++i) sum0[labels0[i]] += ref.gradients()[small_model::param_offset<0> + i];
    for (std::size_t i = 0; i < c.layer(2).labels.size(); ++i)
      sum2[c.layer(2).labels[i]] += ref.gradients()[small_model::param_offset<4> + i];
    for (std::size_t k = 1; k < 8; ++k) expect0[k] -= lr * sum0[k];  // centroid 0 stays 0
    for (std::size_t k = 0; k < 4; ++k) expect2[k] -= lr * sum2[k];
  }
  auto opt = cz::fine_tuning(nn::sgd{.learning_rate = lr}, c);
  decltype(opt)::state<float> st(opt, small_model::param_count);
  st.step(ref.parameters().data(), ref.gradients().data());
  REQUIRE(c.layer(0).centroids[0] == 0.0f);
  for (std::size_t k = 0; k < 8; ++k) REQUIRE(c.layer(0).centroids[k] == Approx(expect0[k]).margin(1e-6));
  for (std::size_t k = 0; k < 4; ++k) REQUIRE(c.layer(2).centroids[k] == Approx(expect2[k]).margin(1e-6));
  bool moved = false;
  for (std::size_t k = 1; k < 8; ++k) moved = moved || c.layer(0).centroids[k] != centroids0[k];
  REQUIRE(moved);
  // The weights are the updated centroids, the labels unchanged.
  for (std::size_t i = 0; i < labels0.size(); ++i)
    REQUIRE(ref.weights<0>()[i] == c.layer(0).centroids[c.layer(0).labels[i]]);
  REQUIRE(c.layer(0).labels == labels0);

  // A longer fine-tuning keeps ≤ 2^b values, the zeros, and lowers the loss.
  const double before = nn::evaluate(net, nn::softmax_cross_entropy{}, d.view()).loss;
  nn::fit(net, cz::fine_tuning(nn::adam{.learning_rate = 1e-3f}, c), nn::softmax_cross_entropy{}, d.view(),
          {.epochs = 4, .batch_size = 32, .seed = 8});
  REQUIRE(nn::evaluate(net, nn::softmax_cross_entropy{}, d.view()).loss < before);
  REQUIRE(distinct(net.weights<0>()).size() <= 8);
  REQUIRE(distinct(net.weights<2>()).size() <= 8);
  REQUIRE(distinct(net.weights<4>()).size() <= 4);
  for (std::size_t i = 0; i < labels0.size(); ++i)
    if (c.layer(0).mask[i] == 0) REQUIRE(net.weights<0>()[i] == 0.0f);
}

TEST_CASE("encoding counts every byte, and compressed inference matches dense inference", "[compress_nn]") {
  const synthetic d = make_data(256, 14);
  auto net = trained(d);
  using DC = cz::deep_compression<cz::constant_sparsity, 4>;
  cz::network_compressor<small_model, DC, cz::magnitude_prune<>, cz::weight_sharing<3>> c;
  std::get<0>(c.policy<0>().stages).schedule.target_sparsity = 0.9;  // long gaps: fillers
  c.policy<1>().schedule.target_sparsity = 0.5;
  c.apply_all(net);

  const cz::encoded_network e = c.encode(net);
  REQUIRE(e.layers.size() == 3);
  REQUIRE(e.layers[0].form == cz::layer_form::sparse_codebook);
  REQUIRE(e.layers[0].huffman);
  REQUIRE(e.layers[1].form == cz::layer_form::sparse);
  REQUIRE(e.layers[2].form == cz::layer_form::codebook);
  // Non-zeros agree with the weights; byte counts recomputed from the parts.
  REQUIRE(e.layers[0].nonzeros() == 384 - zeros(net.weights<0>()));
  REQUIRE(e.layers[1].nonzeros() == 288 - zeros(net.weights<2>()));
  {
    const cz::encoded_layer& l = e.layers[1];
    const std::size_t expect = 16 + 4 * l.entries + (l.entries * l.gap_bits + 7) / 8 +
                               (12 * l.row_len_bits + 7) / 8 + 4 * 12;
    REQUIRE(l.bytes() == expect);
    const cz::encoded_layer& k = e.layers[2];
    REQUIRE(k.bytes() == 16 + (48 * 3 + 7) / 8 + 8 * 4 + 4 * 4);
  }
  REQUIRE(e.bytes() == e.layers[0].bytes() + e.layers[1].bytes() + e.layers[2].bytes());
  const cz::encoded_network packed = c.encode(net, {.codebooks = true, .huffman = false});
  REQUIRE_FALSE(packed.layers[0].huffman);
  const cz::encoded_network fp = c.encode(net, {.codebooks = false, .huffman = false});
  REQUIRE(fp.layers[0].form == cz::layer_form::sparse);
  REQUIRE(fp.bytes() > packed.bytes());

  for (const cz::encoded_network* enc : {&e, &packed, &fp}) {
    cz::compressed_network<small_model> inf(*enc);
    // Decoding gives back the trained weights bit for bit.
    nn::network<small_model> ref;
    inf.decode_into(ref);
    for (std::size_t i = 0; i < small_model::param_count; ++i) REQUIRE(ref.parameters()[i] == net.parameters()[i]);
    const float* y = inf.forward(d.x.data(), 64);
    std::vector<float> got(y, y + 64 * 4);
    const float* r = ref.forward(d.x.data(), 64);
    for (std::size_t i = 0; i < got.size(); ++i) REQUIRE(got[i] == Approx(r[i]).margin(1e-5));
    REQUIRE(inf.classify(d.x.data() + 16 * 5) == [&] {
      std::size_t a = 0;
      for (std::size_t j = 1; j < 4; ++j) a = r[5 * 4 + j] > r[5 * 4 + a] ? j : a;
      return a;
    }());
  }
#if TINYLARGE_HAS_EXCEPTIONS
  // A damaged stream is an error, never a crash.
  cz::encoded_network bad = e;
  bad.layers[0].gaps.pop_back();
  REQUIRE_THROWS_AS(cz::compressed_network<small_model>(bad), tinylarge::error);
  bad = e;
  bad.layers[1].row_lengths[0] ^= 0x7;
  REQUIRE_THROWS_AS(cz::compressed_network<small_model>(bad), tinylarge::error);
#endif
}

TEST_CASE("structured pruning shrinks the model, low rank runs as two products", "[compress_nn]") {
  const synthetic d = make_data(256, 15);
  auto net = trained(d);
  using S = cz::structured_prune<>;
  cz::network_compressor<small_model, S, S, cz::none> c;
  c.policy<0>().sparsity = 0.5;   // 24 → 12 neurons
  c.policy<1>().sparsity = 0.25;  // 12 → 9
  c.apply(net, cz::stage_kind::pruning);
  REQUIRE(c.layer(0).kept_rows.size() == 12);
  REQUIRE(c.layer(1).kept_rows.size() == 9);
  nn::fit(net, cz::fine_tuning(nn::adam{.learning_rate = 1e-3f}, c), nn::softmax_cross_entropy{}, d.view(),
          {.epochs = 2, .batch_size = 32, .seed = 9});
  using shrunk = tinylarge::sequential<tinylarge::dense<16, 12>, tinylarge::relu, tinylarge::dense<12, 9>,
                                       tinylarge::relu, tinylarge::dense<9, 4>>;
  nn::network<shrunk> small = cz::shrink<shrunk>(net, c);
  const float* yb = net.forward(d.x.data(), 32);
  std::vector<float> big(yb, yb + 32 * 4);
  const float* ys = small.forward(d.x.data(), 32);
  for (std::size_t i = 0; i < big.size(); ++i) REQUIRE(ys[i] == Approx(big[i]).margin(1e-5));
  // The encoded form stores the shrunk dense shapes.
  const cz::encoded_network e = c.encode(net);
  REQUIRE(e.layers[0].form == cz::layer_form::dense);
  REQUIRE(e.layers[0].rows == 12);
  REQUIRE(e.layers[1].rows == 9);
  REQUIRE(e.layers[1].cols == 12);
  REQUIRE(e.layers[2].cols == 9);
  REQUIRE(e.bytes() == 3 * 16 + 2 * (12 + 9) + 4 * (shrunk::param_count));
  cz::compressed_network<small_model> inf(e);
  const float* yc = inf.forward(d.x.data(), 32);
  for (std::size_t i = 0; i < big.size(); ++i) REQUIRE(yc[i] == Approx(big[i]).margin(1e-5));
#if TINYLARGE_HAS_EXCEPTIONS
  using wrong = tinylarge::sequential<tinylarge::dense<16, 13>, tinylarge::relu, tinylarge::dense<13, 9>,
                                      tinylarge::relu, tinylarge::dense<9, 4>>;
  REQUIRE_THROWS_AS(cz::shrink<wrong>(net, c), tinylarge::error);
#endif

  // Low rank: factors of rank 3 on the first layer.
  auto net2 = trained(d);
  cz::network_compressor<small_model, cz::low_rank, cz::none, cz::none> lr;
  lr.policy<0>().rank = 3;
  lr.apply_all(net2);
  const cz::encoded_network f = lr.encode(net2);
  REQUIRE(f.layers[0].form == cz::layer_form::factored);
  REQUIRE(f.layers[0].bytes() == 16 + 4 * (3 * (24 + 16) + 24));
  cz::compressed_network<small_model> finf(f);
  const float* yf = finf.forward(d.x.data(), 16);
  std::vector<float> gotf(yf, yf + 64);
  const float* yr = net2.forward(d.x.data(), 16);
  for (std::size_t i = 0; i < gotf.size(); ++i) REQUIRE(gotf[i] == Approx(yr[i]).margin(1e-4));

  // Low-rank fine-tuning: the factors become two dense layers that train as such.
  using factored = tinylarge::sequential<tinylarge::dense<16, 3>, tinylarge::dense<3, 24>, tinylarge::relu,
                                         tinylarge::dense<24, 12>, tinylarge::relu, tinylarge::dense<12, 4>>;
  nn::network<factored> fnet = cz::factorize<factored>(net2, lr);
  const float* yff = fnet.forward(d.x.data(), 16);
  for (std::size_t i = 0; i < gotf.size(); ++i) REQUIRE(yff[i] == Approx(gotf[i]).margin(1e-4));
  const double before = nn::evaluate(fnet, nn::softmax_cross_entropy{}, d.view()).loss;
  nn::fit(fnet, nn::adam{.learning_rate = 2e-3f}, nn::softmax_cross_entropy{}, d.view(),
          {.epochs = 5, .batch_size = 32, .seed = 10});
  REQUIRE(nn::evaluate(fnet, nn::softmax_cross_entropy{}, d.view()).loss < before);
#if TINYLARGE_HAS_EXCEPTIONS
  using bad_rank = tinylarge::sequential<tinylarge::dense<16, 4>, tinylarge::dense<4, 24>, tinylarge::relu,
                                         tinylarge::dense<24, 12>, tinylarge::relu, tinylarge::dense<12, 4>>;
  REQUIRE_THROWS_AS(cz::factorize<bad_rank>(net2, lr), tinylarge::error);
#endif
}
