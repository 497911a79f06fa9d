// Tests of the host profile's xtensor API, one family per TEST_CASE tag:
// data sets ([xt-data]), networks ([xt-nn]), workflows ([xt-workflow]) and
// .npy / .npz ([xt-npy]) take xtensor arrays in and give xtensor arrays out.
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <numeric>
#include <string>
#include <vector>

#include <xtensor/xio.hpp>
#include <xtensor/xmanipulation.hpp>
#include <xtensor/xrandom.hpp>
#include <xtensor/xsort.hpp>
#include <xtensor/xview.hpp>

#include "blobs.hpp"
#include "tinylarge/tinylarge.hpp"

namespace tl = tinylarge;

namespace {

namespace fs = std::filesystem;

const fs::path& scratch() {
  static const fs::path d = [] {
    fs::path p = fs::temp_directory_path() / ("tinylarge_test_xtensor_" + std::to_string(::getpid()));
    fs::create_directories(p);
    return p;
  }();
  static const struct cleanup {
    ~cleanup() {
      std::error_code ec;
      fs::remove_all(d, ec);
    }
  } c;
  return d;
}

void write_bytes(const fs::path& p, const std::vector<std::uint8_t>& b) {
  std::ofstream f(p, std::ios::binary);
  f.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}

void put_be32(std::vector<std::uint8_t>& b, std::uint32_t v) {
  for (int s = 24; s >= 0; s -= 8) b.push_back(static_cast<std::uint8_t>(v >> s));
}

/// IDX image file of n images rows × cols with pixel (i, r, c) = (i·31 + r·7 + c) mod 256.
std::vector<std::uint8_t> idx_images(std::uint32_t n, std::uint32_t rows, std::uint32_t cols) {
  std::vector<std::uint8_t> b;
  put_be32(b, 0x00000803);
  put_be32(b, n);
  put_be32(b, rows);
  put_be32(b, cols);
  for (std::uint32_t i = 0; i < n; ++i)
    for (std::uint32_t r = 0; r < rows; ++r)
      for (std::uint32_t c = 0; c < cols; ++c) b.push_back(static_cast<std::uint8_t>((i * 31 + r * 7 + c) % 256));
  return b;
}
std::vector<std::uint8_t> idx_labels(std::uint32_t n) {
  std::vector<std::uint8_t> b;
  put_be32(b, 0x00000801);
  put_be32(b, n);
  for (std::uint32_t i = 0; i < n; ++i) b.push_back(static_cast<std::uint8_t>(i % 4));
  return b;
}

/// The blobs of tests/blobs.hpp as xtensor arrays.
struct xblobs {
  xt::xtensor<float, 2> x;
  xt::xtensor<std::uint8_t, 1> y;
};
xblobs make_xblobs(std::size_t n, std::uint64_t seed) {
  const tl_test::blobs b = tl_test::make_blobs(n, seed);
  xblobs out;
  out.x = xt::adapt(b.x, std::array<std::size_t, 2>{n, 16});
  out.y = xt::adapt(b.y, std::array<std::size_t, 1>{n});
  return out;
}

using mlp = tl::sequential<tl::dense<16, 12>, tl::relu, tl::dense<12, 8>, tl::relu, tl::dense<8, 4>>;

}  // namespace

// ---------------------------------------------------------------------------
// Data sets
// ---------------------------------------------------------------------------

TEST_CASE("xtensor data: IDX loaders give xtensor containers; labelled_set; partitioners take and give them",
          "[xt-data]") {
  const fs::path img = scratch() / "img-idx3-ubyte", lab = scratch() / "lab-idx1-ubyte";
  write_bytes(img, idx_images(12, 3, 2));
  write_bytes(lab, idx_labels(12));

  SECTION("raw uint8 images N x rows x cols and labels") {
    const xt::xtensor<std::uint8_t, 3> im = tl::data::load_idx_images(img.string());
    REQUIRE(im.shape() == std::array<std::size_t, 3>{12, 3, 2});
    CHECK(im(5, 2, 1) == (5 * 31 + 2 * 7 + 1) % 256);
    const xt::xtensor<std::uint8_t, 1> y = tl::data::load_idx_labels(lab.string());
    REQUIRE(y.size() == 12);
    CHECK(y(7) == 3);
    // flattened view N x 784-style and float features equal load_idx's scaling
    const auto flat = xt::reshape_view(im, {std::size_t{12}, std::size_t{6}});
    const xt::xtensor<float, 2> f = tl::data::to_features(flat);
    const tl::data::dataset ds = tl::data::load_idx(img.string(), lab.string());
    REQUIRE(f.shape() == std::array<std::size_t, 2>{12, 6});
    CHECK(std::equal(f.begin(), f.end(), ds.images.begin()));
  }
  SECTION("labelled_set from the validating loader and from xexpressions") {
    const tl::data::labelled_set s = tl::data::load_idx_set(img.string(), lab.string());
    REQUIRE(s.size() == 12);
    REQUIRE(s.features() == 6);
    CHECK(s.rows == 3);
    CHECK(s.cols == 2);
    CHECK(s.x(5, 5) == static_cast<float>((5 * 31 + 2 * 7 + 1) % 256) / 255.0f);
    const xt::xtensor<std::uint8_t, 3> im = tl::data::load_idx_images(img.string());
    const tl::data::labelled_set t(tl::data::to_features(im), s.y);
    CHECK(t.x == s.x);
    const tl::data::labelled_set u(xt::cast<float>(im), s.y);  // 3-D: flattened, image shape kept
    CHECK(u.rows == 3);
    CHECK(u.x(5, 5) == static_cast<float>(im(5, 2, 1)));
#if TINYLARGE_HAS_EXCEPTIONS
    const xt::xtensor<std::uint8_t, 1> short_y = xt::view(s.y, xt::range(0, 11));
    CHECK_THROWS_AS(tl::data::labelled_set(s.x, short_y), tl::shape_error);
    // the loaders keep the reader's validation: a truncated file is a format error naming it
    std::vector<std::uint8_t> cut = idx_images(12, 3, 2);
    cut.resize(cut.size() - 5);
    write_bytes(scratch() / "cut-idx3", cut);
    CHECK_THROWS_AS(tl::data::load_idx_images((scratch() / "cut-idx3").string()), tl::format_error);
    CHECK_THROWS_WITH(tl::data::load_idx_images((scratch() / "cut-idx3").string()),
                      Catch::Contains("cut-idx3") && Catch::Contains("truncated", Catch::CaseSensitive::No));
    CHECK_THROWS_AS(tl::data::load_idx_labels(img.string()), tl::format_error);  // an image file
#endif
  }
  SECTION("partitioners over xtensor labels equal the span versions; split gives per-client sets") {
    const tl::data::labelled_set s = tl::data::load_idx_set(img.string(), lab.string());
    tl::rng r1(5), r2(5);
    const std::vector<std::uint8_t> yv(s.y.begin(), s.y.end());
    CHECK(tl::data::partition_shards(s.y, 3, 2, r1) == tl::data::partition_shards(std::span<const std::uint8_t>(yv), 3, 2, r2));
    tl::rng r3(9), r4(9);
    const tl::data::partition_t parts = tl::data::partition_iid(s.size(), 4, r3);
    const std::vector<tl::data::labelled_set> clients = tl::data::split_iid(s, 4, r4);
    REQUIRE(clients.size() == 4);
    std::size_t total = 0;
    for (std::size_t c = 0; c < 4; ++c) {
      REQUIRE(clients[c].size() == parts[c].size());
      for (std::size_t k = 0; k < parts[c].size(); ++k) {
        CHECK(clients[c].y(k) == s.y(parts[c][k]));
        CHECK((xt::view(clients[c].x, k, xt::all()) == xt::view(s.x, parts[c][k], xt::all())));
      }
      total += clients[c].size();
    }
    CHECK(total == s.size());
    tl::rng r5(3);
    const auto shards = tl::data::split_shards(s, 2, 2, r5);
    CHECK(shards[0].size() + shards[1].size() == 12);
    tl::rng r6(8), r7(8);
    CHECK(tl::data::partition_dirichlet(xt::view(s.y, xt::all()), 2, 1.0, r6, 2) ==
          tl::data::partition_dirichlet(std::span<const std::uint8_t>(yv), 2, 1.0, r7, 2));
    // A partition_spec over xtensor labels, and split by spec / split_quantity.
    tl::data::partition_spec spec = tl::data::parse_partition_spec("quantity:1");
    spec.min_size = 2;
    tl::rng r8(4), r9(4), r10(4), r11(4);
    const tl::data::partition_t q = tl::data::partition(spec, xt::view(s.y, xt::all()), 3, r8);
    CHECK(q == spec(std::span<const std::uint8_t>(yv), 3, r9));
    const auto by_spec = tl::data::split_by(s, spec, 3, r10);
    const auto by_name = tl::data::split_quantity(s, 3, 1.0, r11, 2);
    REQUIRE(by_spec.size() == 3);
    REQUIRE(by_name.size() == 3);
    for (std::size_t c = 0; c < 3; ++c) {
      CHECK(by_spec[c].size() == q[c].size());
      CHECK(by_name[c].y == by_spec[c].y);
      CHECK(by_name[c].x == by_spec[c].x);
    }
#if TINYLARGE_HAS_EXCEPTIONS
    const std::size_t bad[] = {12};
    CHECK_THROWS_AS(tl::data::subset(s, bad), tl::invalid_argument);
#endif
  }
  SECTION("Fashion-MNIST test images as uint8 N x 28 x 28 (when installed)") {
    const std::string dir = "/usr/share/datasets/fashion-mnist";
    if (!fs::exists(dir + "/t10k-images-idx3-ubyte.gz")) {
      WARN("Fashion-MNIST not installed: section skipped");
      return;
    }
    const auto im = tl::data::load_idx_images(dir + "/t10k-images-idx3-ubyte.gz");
    REQUIRE(im.shape() == std::array<std::size_t, 3>{10000, 28, 28});
    const tl::data::labelled_set test = tl::data::load_fashion_mnist_set(tl::data::split::test, dir);
    REQUIRE(test.x.shape() == std::array<std::size_t, 2>{10000, 784});
    CHECK(test.x(123, 28 * 14 + 14) == static_cast<float>(im(123, 14, 14)) / 255.0f);
    CHECK(xt::amax(test.y)() == 9);
  }
}

TEST_CASE("xtensor batches: a labelled_set in seeded minibatches of xtensor views", "[xt-data][xt-batch]") {
  const xblobs d = make_xblobs(23, 9);
  const tl::data::labelled_set s(d.x, d.y);
  tl::data::labelled_batcher batches(s, {.batch_size = 5, .seed = 3});
  REQUIRE(batches.batches_per_epoch() == 5);
  std::vector<std::vector<std::size_t>> orders;
  for (std::size_t epoch = 0; epoch < 3; ++epoch) {
    batches.start_epoch(epoch);
    std::vector<std::size_t> seen;
    std::size_t count = 0;
    while (const auto b = batches.next()) {
      ++count;
      CHECK(b.size() == (count < 5 ? 5u : 3u));
      const auto x = b.x();
      const auto y = b.y();
      REQUIRE(x.shape() == std::array<std::size_t, 2>{b.size(), 16});
      for (std::size_t k = 0; k < b.size(); ++k) {
        const std::size_t i = b.indices()[k];
        CHECK(y(k) == s.y(i));
        CHECK((xt::view(x, k, xt::all()) == xt::view(s.x, i, xt::all())));
        CHECK(&x(k, 0) == &s.x(i, 0));  // a view of the set's storage, not a copy
        seen.push_back(i);
      }
    }
    CHECK(count == 5);
    orders.push_back(seen);
    std::sort(seen.begin(), seen.end());
    std::vector<std::size_t> all(23);
    std::iota(all.begin(), all.end(), std::size_t{0});
    CHECK(seen == all);  // every sample exactly once per epoch
  }
  CHECK(orders[0] != orders[1]);  // reshuffled every epoch
  // the same order as the span batcher of batch.hpp for (seed, epoch)
  tl::data::batcher ref(23, {.batch_size = 5, .seed = 3});
  ref.start_epoch(1);
  CHECK(std::vector<std::size_t>(ref.order().begin(), ref.order().end()) == orders[1]);
#if TINYLARGE_HAS_EXCEPTIONS
  std::vector<float> buf(5 * 16);
  CHECK_THROWS_AS(ref.next(buf.data(), nullptr), tl::invalid_argument);  // index-only: nothing to gather
  batches.start_epoch(0);
  const auto shuffled = batches.next();
  if (!shuffled.contiguous()) CHECK_THROWS_AS(shuffled.x_rows(), tl::invalid_argument);
  CHECK_THROWS_AS(tl::data::labelled_batcher(s, {.batch_size = 0}), tl::invalid_argument);
#endif

  // unshuffled over a client's indices, drop_last: consecutive batches are dense range views
  const std::size_t part[] = {4, 5, 6, 7, 8, 9, 10};
  tl::data::labelled_batcher inorder(s, {.batch_size = 3, .shuffle = false, .drop_last = true}, part);
  CHECK(inorder.batches_per_epoch() == 2);
  std::size_t first = 4, n = 0;
  while (const auto b = inorder.next()) {
    REQUIRE(b.contiguous());
    const auto xr = b.x_rows();
    CHECK(&xr(0, 0) == &s.x(first, 0));
    CHECK((xr == b.x()));
    CHECK((b.y_rows() == b.y()));
    first += 3;
    ++n;
  }
  CHECK(n == 2);
  // a batch feeds the network API directly
  tl::nn::network<mlp> net(5);
  batches.start_epoch(0);
  const auto b = batches.next();
  const xt::xtensor<float, 2> gathered = b.x();
  CHECK((tl::nn::forward(net, b.x()) == tl::nn::forward(net, gathered)));
}

// ---------------------------------------------------------------------------
// Networks
// ---------------------------------------------------------------------------

TEST_CASE("xtensor nn: forward / predict / evaluate / fit on xexpressions; parameter views alias the network",
          "[xt-nn]") {
  tl::nn::network<mlp> net(3);
  const xblobs d = make_xblobs(64, 1);

  SECTION("forward of a container, of a non-contiguous view and of another element type") {
    const xt::xtensor<float, 2> out = tl::nn::forward(net, d.x);
    REQUIRE(out.shape() == std::array<std::size_t, 2>{64, 4});
    const float* raw = net.forward(d.x.data(), 64, false);
    CHECK(std::memcmp(out.data(), raw, 64 * 4 * sizeof(float)) == 0);
    // every other sample, through a strided view
    const auto strided = xt::view(d.x, xt::range(0, 64, 2), xt::all());
    const xt::xtensor<float, 2> out2 = tl::nn::forward(net, strided);
    CHECK(out2 == xt::view(out, xt::range(0, 64, 2), xt::all()));
    // a transposed expression (column-major traversal) evaluated to C order
    const xt::xtensor<float, 2> xt_t = xt::transpose(d.x);
    CHECK((tl::nn::forward(net, xt::transpose(xt_t)) == out));
    // double input, converted; one 1-D sample
    const xt::xtensor<double, 2> xd = xt::cast<double>(d.x);
    CHECK((tl::nn::forward(net, xd) == out));
    const xt::xtensor<float, 1> one = xt::view(d.x, 3, xt::all());
    // (batch 1 may take another kernel, with another summation order)
    CHECK(xt::allclose(tl::nn::forward(net, one), xt::view(out, xt::range(3, 4), xt::all()), 1e-5, 1e-6));
    const xt::xtensor<std::size_t, 1> cls = tl::nn::predict(net, d.x);
    for (std::size_t i = 0; i < 64; ++i) CHECK(cls(i) == xt::argmax(xt::view(out, i, xt::all()))());
#if TINYLARGE_HAS_EXCEPTIONS
    const xt::xtensor<float, 2> wrong = xt::zeros<float>({std::size_t{2}, std::size_t{15}});
    CHECK_THROWS_AS(tl::nn::forward(net, wrong), tl::shape_error);
    CHECK_THROWS_WITH(tl::nn::forward(net, wrong), Catch::Contains("16"));
#endif
  }

  SECTION("parameter views are zero-copy: writing through them changes the network's output") {
    auto w4 = tl::nn::weights<4>(net);
    auto b4 = tl::nn::biases<4>(net);
    REQUIRE(w4.shape() == std::array<std::size_t, 2>{4, 8});
    REQUIRE(b4.shape() == std::array<std::size_t, 1>{4});
    CHECK(w4.data() == net.weights<4>().data());
    CHECK(&w4(1, 2) == &net.weights<4>()[1 * 8 + 2]);
    w4 = xt::zeros<float>({std::size_t{4}, std::size_t{8}});
    b4 = xt::xtensor<float, 1>{1.0f, -2.0f, 3.0f, 0.5f};
    const xt::xtensor<float, 2> out = tl::nn::forward(net, d.x);
    for (std::size_t i = 0; i < 64; ++i) CHECK((xt::view(out, i, xt::all()) == b4));
    // the whole parameter vector, and a slice of it with xtensor expressions
    auto p = tl::nn::parameters(net);
    REQUIRE(p.size() == mlp::param_count);
    xt::view(p, xt::range(mlp::param_offset<4> + 32, mlp::param_offset<4> + 36)) *= 2.0f;
    CHECK(net.biases<4>()[3] == 1.0f);
    // weights in from any expression
    tl::nn::network<mlp> other(99);
    tl::nn::set_parameters(other, tl::nn::parameters(net) * 1.0f);
    CHECK((tl::nn::forward(other, d.x) == tl::nn::forward(net, d.x)));
#if TINYLARGE_HAS_EXCEPTIONS
    CHECK_THROWS_AS(tl::nn::set_parameters(other, xt::zeros<float>({std::size_t{5}})), tl::shape_error);
#endif
    // const network: read-only views of the same storage
    const auto& cnet = net;
    CHECK(tl::nn::weights<0>(cnet).data() == net.weights<0>().data());
  }

  SECTION("gradient views alias the gradients backward fills") {
    const float* y = net.forward(d.x.data(), 8, true);
    std::vector<float> dy(y, y + 8 * 4);
    net.zero_gradients();
    net.backward(dy.data());
    auto gw = tl::nn::weight_gradients<2>(net);
    auto gb = tl::nn::bias_gradients<0>(net);
    REQUIRE(gw.shape() == std::array<std::size_t, 2>{8, 12});
    CHECK(gw(3, 5) == net.gradients()[mlp::param_offset<2> + 3 * 12 + 5]);
    CHECK(gb(7) == net.gradients()[12 * 16 + 7]);
    CHECK(xt::any(xt::not_equal(gw, 0.0f)));
    tl::nn::gradients(net).fill(0.0f);
    CHECK(net.gradients()[mlp::param_offset<2> + 3 * 12 + 5] == 0.0f);
  }

  SECTION("fit on xtensor data is nn::fit: the same weights bit for bit, and it learns") {
    tl::nn::network<mlp> a(7), b(7);
    const xblobs test = make_xblobs(200, 2);
    const tl::nn::fit_options o{.epochs = 5, .batch_size = 16, .seed = 4};
    const auto ha = tl::nn::fit(a, tl::nn::sgd{0.05f, 0.9f}, tl::nn::softmax_cross_entropy{}, d.x, d.y, o, test.x,
                                test.y);
    const tl::nn::labelled_view<std::uint8_t> tv{d.x.data(), d.y.data(), 64, 16};
    const tl::nn::labelled_view<std::uint8_t> vv{test.x.data(), test.y.data(), 200, 16};
    const auto hb = tl::nn::fit(b, tl::nn::sgd{0.05f, 0.9f}, tl::nn::softmax_cross_entropy{}, tv, o, &vv);
    REQUIRE(ha.size() == 5);
    CHECK(std::memcmp(a.parameters().data(), b.parameters().data(), mlp::param_count * sizeof(float)) == 0);
    CHECK(ha.back().val_accuracy == hb.back().val_accuracy);
    const tl::nn::evaluation e = tl::nn::evaluate(a, tl::nn::softmax_cross_entropy{}, test.x, test.y);
    CHECK(e.accuracy == ha.back().val_accuracy);
    CHECK(e.accuracy > 0.9);
    // a strided (non-contiguous) label view and uint8 labels given as int are converted
    const xt::xtensor<int, 1> yi = xt::cast<int>(test.y);
    CHECK(tl::nn::evaluate(a, tl::nn::softmax_cross_entropy{}, test.x, yi).accuracy == e.accuracy);
    struct counter {
      int n = 0;
      bool on_epoch_end(const tl::nn::epoch_report&, tl::nn::network<mlp>&) { return ++n < 2; }
    } stop;
    const auto hc = tl::nn::fit(b, tl::nn::sgd{0.05f}, tl::nn::softmax_cross_entropy{}, d.x, d.y, o, stop);
    CHECK(hc.size() == 2);
#if TINYLARGE_HAS_EXCEPTIONS
    const xt::xtensor<std::uint8_t, 1> short_y = xt::view(d.y, xt::range(0, 63));
    CHECK_THROWS_AS(tl::nn::fit(b, tl::nn::sgd{}, tl::nn::softmax_cross_entropy{}, d.x, short_y), tl::shape_error);
#endif
  }

  SECTION("conv weights are shaped [OutC, K, K, C]; quantized weights are int8 values + scale + zero point") {
    using cnn = tl::sequential<tl::input<6, 6, 2>, tl::conv2d<3, 3>, tl::relu, tl::flatten, tl::dense<48, 4>>;
    tl::nn::network<cnn> c(5);
    const auto w = tl::nn::weights<0>(c);
    REQUIRE(w.shape() == std::array<std::size_t, 4>{3, 3, 3, 2});
    CHECK(&w(1, 2, 0, 1) == &c.weights<0>()[((1 * 3 + 2) * 3 + 0) * 2 + 1]);

    tl::nn::network<mlp> f(11);
    const xblobs cal = make_xblobs(100, 3);
    tl::nn::quantized_network<mlp, tl::int8_per_channel, tl::nn::heap_storage> q;
    tl::nn::quantize_post_training(f, cal.x.data(), 100, q);
    const auto qw = tl::nn::quantized_weights<2>(q);
    REQUIRE(qw.values.shape() == std::array<std::size_t, 2>{8, 12});
    REQUIRE(qw.scale.size() == 8);
    CHECK(xt::all(xt::equal(qw.zero_point, 0)));
    const xt::xarray<float> deq = qw.dequantize();
    const auto fw = tl::nn::weights<2>(f);
    for (std::size_t o = 0; o < 8; ++o)
      for (std::size_t i = 0; i < 12; ++i) CHECK(std::fabs(deq(o, i) - fw(o, i)) <= 0.5f * qw.scale(o) + 1e-7f);
    CHECK(qw.values.data() == q.weights() + decltype(q)::layout.weight[2]);
  }
}

// ---------------------------------------------------------------------------
// Workflows
// ---------------------------------------------------------------------------

namespace {
struct fl_traits {
  using model = mlp;
};
/// The training and test blobs of the workflow cases, as arrays and as labelled sets.
struct workflow_data {
  xblobs d = make_xblobs(120, 5), t = make_xblobs(200, 6);
  tl::data::labelled_set train{d.x, d.y}, test{t.x, t.y};
};
struct split_traits {
  using model = mlp;
  using partition = tl::cut<2>;
  using optimizer = tl::nn::sgd;
};
}  // namespace

TEST_CASE("xtensor workflows: client data, updates, aggregated models, smashed data and segments as xtensor",
          "[xt-workflow]") {
  const workflow_data wd;
  const auto& [d, t, train, test] = wd;

  SECTION("federated: start from a network trained elsewhere; clients as labelled_sets; global model out") {
    tl::nn::network<mlp> pre(21);
    (void)tl::nn::fit(pre, tl::nn::sgd{0.05f, 0.9f}, tl::nn::softmax_cross_entropy{}, d.x, d.y, {.epochs = 3});
    const double pre_acc = tl::nn::evaluate(pre, tl::nn::softmax_cross_entropy{}, t.x, t.y).accuracy;
    tl::workflow::federated_averaging<fl_traits> fl({.rounds = 2, .client_fraction = 1.0, .local_epochs = 1,
                                                     .batch_size = 10},
                                                    tl::fedavg{}, tl::nn::sgd{.learning_rate = 0.0f});
    tl::workflow::start_from(fl, pre);
    CHECK((tl::workflow::global_tensor(fl) == tl::nn::parameters(pre)));
    tl::rng r(2);
    const auto clients = tl::data::split_iid(train, 3, r);
    (void)fl.run(tl::workflow::client_views(clients), tl::workflow::as_view(test));
    // learning rate 0: FedAvg of unchanged clients is the starting model, and so is its accuracy
    CHECK(xt::allclose(tl::workflow::global_tensor(fl), tl::nn::parameters(pre), 1e-6, 1e-7));
    CHECK(fl.evaluate(tl::workflow::as_view(test)) == pre_acc);
    // set_global from any expression
    tl::workflow::set_global(fl, xt::zeros<float>({mlp::param_count}));
    CHECK(xt::all(xt::equal(tl::workflow::global_tensor(fl), 0.0f)));
#if TINYLARGE_HAS_EXCEPTIONS
    CHECK_THROWS_AS(tl::workflow::set_global(fl, xt::zeros<float>({std::size_t{3}})), tl::shape_error);
#endif
  }

  SECTION("aggregation: client updates in xtensors in, the aggregated model out; bad updates rejected") {
    // [xt-doc-aggregate]
    constexpr std::size_t P = 10;
    tl::aggregator<tl::fedavg> agg(tl::fedavg{}, P);
    const xt::xtensor<float, 1> g = xt::zeros<float>({P});
    std::vector<tl::workflow::client_update> ups{
        {1, xt::arange<float>(0.0f, 10.0f), 1},
        {2, xt::arange<float>(0.0f, 10.0f) * 4.0f, 3},
    };
    const tl::workflow::aggregated_model m = tl::workflow::aggregate(agg, g, ups);
    CHECK(m.report.accepted.size() == 2);
    CHECK(xt::allclose(m.weights, xt::arange<float>(0.0f, 10.0f) * 3.25f));  // (1·1 + 3·4) / 4
    // [xt-doc-aggregate]
    ups.push_back({3, xt::xtensor<float, 1>(xt::arange<float>(0.0f, 10.0f)), 1});
    ups.back().weights(4) = std::nanf("");
    const auto m2 = tl::workflow::aggregate(agg, g, ups);
    CHECK(m2.report.accepted.size() == 2);
    CHECK(m2.report.rejected.size() == 1);
    CHECK(xt::allclose(m2.weights, m.weights));
    // int8 updates: values + scale + zero point, within one step of the fp32 mean
    std::vector<tl::workflow::quantized_update> q{{1, tl::workflow::quantize_update(ups[0].weights, 4), 1},
                                                  {2, tl::workflow::quantize_update(ups[1].weights, 4), 3}};
    REQUIRE(q[0].weights.scale.size() == 3);
    CHECK(xt::allclose(q[1].weights.dequantize(), ups[1].weights, 0.0, 0.5 * 36.0 / 127.0));
    const auto m3 = tl::workflow::aggregate(agg, g, q);
    CHECK(m3.report.accepted.size() == 2);
    CHECK(xt::allclose(m3.weights, m.weights, 0.0, 0.5 * 36.0 / 127.0));
  }

  SECTION("split: start from given weights; segments, smashed data and server outputs as xtensor") {
    // [xt-doc-split]
    tl::nn::network<mlp> pre(31);  // trained elsewhere, or tl::nn::load_npz("model.npz", pre)
    tl::psl<split_traits> run({.rounds = 0, .batch_size = 8});
    tl::workflow::start_from(run, pre);
    tl::rng r(4);
    (void)run.train(tl::workflow::as_view(train), tl::data::partition_iid(train.size(), 2, r));
    const xt::xtensor<float, 1> g = tl::workflow::global_parameters(run);
    CHECK(g == tl::nn::parameters(pre));  // not the seeded initialisation
    const auto segs = tl::workflow::split_parameters<split_traits::partition, mlp>(tl::nn::parameters(pre));
    REQUIRE(segs.size() == 2);
    CHECK(segs[0].size() == 16 * 12 + 12);
    CHECK(segs[0] == tl::workflow::device_parameters(run));
    CHECK((xt::concatenate(xt::xtuple(segs[0], segs[1])) == g));
    CHECK((tl::workflow::client_parameters(run, 1) == segs[0]));
    // smashed data (fp32 codec: exact) and the server chain reproduce the unsplit forward
    const auto batch = xt::view(test.x, xt::range(0, 16), xt::all());
    const xt::xtensor<float, 2> s = tl::workflow::smashed_data(run, batch);
    REQUIRE(s.shape() == std::array<std::size_t, 2>{16, 12});
    const xt::xtensor<float, 2> logits = tl::workflow::server_forward(run, s);
    // [xt-doc-split]
    CHECK(xt::allclose(logits, tl::nn::forward(pre, batch), 1e-5, 1e-6));
    // xtensor weights in: the run starts from whatever expression is given
    tl::workflow::set_initial_parameters(run, tl::nn::parameters(pre) * 0.0f);
    (void)run.train(tl::workflow::as_view(train), tl::data::partition_iid(train.size(), 2, r));
    CHECK(xt::all(xt::equal(tl::workflow::global_parameters(run), 0.0f)));
  }
}

namespace {
using small_student = tl::sequential<tl::dense<16, 6>, tl::relu, tl::dense<6, 4>>;
struct kd_xtraits {
  using teacher = mlp;
  using student = small_student;
};
}  // namespace

TEST_CASE("xtensor workflows: transfer, Reptile, FedLoRA and distillation start from given weights, results out",
          "[xt-workflow][xt-workflow-more]") {
  const workflow_data wd;
  const auto& [d, t, train, test] = wd;
  tl::nn::network<mlp> pre(21);
  (void)tl::nn::fit(pre, tl::nn::sgd{0.05f, 0.9f}, tl::nn::softmax_cross_entropy{}, d.x, d.y, {.epochs = 3});
  const double pre_acc = tl::nn::evaluate(pre, tl::nn::softmax_cross_entropy{}, t.x, t.y).accuracy;
  tl::rng r(2);
  const auto clients = tl::data::split_iid(train, 3, r);

  SECTION("transfer: pre-training starts from the given network; pre-trained and global models out") {
    const tl::workflow::transfer_options to{.pretrain_epochs = 0, .personalize_epochs = 1, .seed = 4};
    const tl::workflow::federated_options fo{.rounds = 1, .client_fraction = 1.0, .batch_size = 10};
    tl::workflow::federated_transfer<fl_traits> ft(to, fo);
    tl::workflow::start_from(ft, pre);
    const auto res = ft.run(tl::workflow::as_view(train), tl::workflow::client_views(clients),
                            tl::workflow::as_view(test));
    CHECK((tl::workflow::pretrained_tensor(ft) == tl::nn::parameters(pre)));  // round trip, not the seed
    CHECK(res.pretrained_accuracy == pre_acc);
    CHECK(tl::workflow::global_tensor(ft).size() == mlp::param_count);
    CHECK(!(tl::workflow::global_tensor(ft) == tl::nn::parameters(pre)));  // phase 2 trained from there
    // from the seed instead: a different pre-trained model
    tl::workflow::federated_transfer<fl_traits> seeded(to, fo);
    (void)seeded.run(tl::workflow::as_view(train), tl::workflow::client_views(clients), tl::workflow::as_view(test));
    CHECK(!(tl::workflow::pretrained_tensor(seeded) == tl::nn::parameters(pre)));
    // any expression in; pre-training from it: zero weights stay zero with 0 epochs
    tl::workflow::set_initial_parameters(seeded, xt::zeros<float>({mlp::param_count}));
    (void)seeded.run(tl::workflow::as_view(train), tl::workflow::client_views(clients), tl::workflow::as_view(test));
    CHECK(xt::all(xt::equal(tl::workflow::pretrained_tensor(seeded), 0.0f)));
#if TINYLARGE_HAS_EXCEPTIONS
    CHECK_THROWS_AS(tl::workflow::set_initial_parameters(ft, xt::zeros<float>({std::size_t{5}})), tl::shape_error);
#endif
  }

  SECTION("Reptile: meta-model from a trained network; adapted parameters out") {
    tl::workflow::federated_reptile<fl_traits> meta({.rounds = 1, .client_fraction = 1.0, .batch_size = 10},
                                                    tl::workflow::reptile_step{0.5f},
                                                    tl::nn::sgd{.learning_rate = 0.0f});
    tl::workflow::start_from(meta, pre);
    (void)meta.run(tl::workflow::client_views(clients), tl::workflow::as_view(test));
    // learning rate 0: the clients' weights are the meta-model, so the Reptile step keeps it
    const xt::xtensor<float, 1> phi = tl::workflow::global_tensor(meta);
    CHECK(xt::allclose(phi, tl::nn::parameters(pre), 1e-6, 1e-7));
    const tl::nn::sgd inner{.learning_rate = 0.05f};
    // 0 adaptation epochs: the weights come back unchanged
    CHECK((tl::workflow::adapt_parameters<mlp>(phi, clients[0], inner, 0, 5, 1) == phi));
    const xt::xtensor<float, 1> adapted = tl::workflow::adapt_parameters<mlp>(phi, clients[0], inner, 2, 5, 1);
    CHECK(!xt::allclose(adapted, phi));
    // the adapted weights are the ones adapted_accuracy scores (same adaptation, span API)
    tl::nn::network<mlp> check;
    tl::nn::set_parameters(check, adapted);
    const double acc = tl::nn::evaluate(check, tl::nn::softmax_cross_entropy{}, clients[1].x, clients[1].y).accuracy;
    CHECK(tl::workflow::adapted_accuracy<mlp>(phi, clients[0], clients[1], inner, 2, 5, 1) == acc);
    CHECK(tl::workflow::adapted_accuracy<mlp>(std::span<const float>(phi.data(), phi.size()),
                                              tl::workflow::as_view(clients[0]), tl::workflow::as_view(clients[1]),
                                              inner, 2, 5, 1) == acc);
#if TINYLARGE_HAS_EXCEPTIONS
    CHECK_THROWS_AS(tl::workflow::adapt_parameters<mlp>(xt::zeros<float>({std::size_t{3}}), clients[0], inner, 1, 5, 1),
                    tl::shape_error);
#endif
  }

  SECTION("FedLoRA: base from a trained network; adapters and merged model out") {
    // [xt-doc-lora]
    tl::workflow::federated_lora<fl_traits> lora({.max_rank = 2, .alpha = 2.0f, .learning_rate = 0.1f, .rounds = 2,
                                                  .client_fraction = 1.0, .batch_size = 10, .seed = 3});
    tl::workflow::start_from(lora, pre);
    CHECK((tl::workflow::merged_parameters(lora) == tl::nn::parameters(pre)));  // B = 0: the base itself
    CHECK(tl::workflow::adapters_tensor(lora).size() == lora.adapter_count(2));
    const auto [a0, b0] = tl::workflow::lora_factors(lora, 0);
    REQUIRE(a0.shape() == std::array<std::size_t, 2>{2, 16});
    REQUIRE(b0.shape() == std::array<std::size_t, 2>{12, 2});
    CHECK(xt::all(xt::equal(b0, 0.0f)));
    (void)lora.run(tl::workflow::client_views(clients), tl::workflow::as_view(test));
    CHECK(!xt::all(xt::equal(b0, 0.0f)));  // the views alias the run's adapters
    const xt::xtensor<float, 1> w = tl::workflow::merged_parameters(lora);  // W0 + s · B A
    // [xt-doc-lora]
    // merged = W0 + s · B A, per layer, biases frozen
    tl::nn::network<mlp> merged;
    tl::nn::set_parameters(merged, w);
    const auto [a2, b2] = tl::workflow::lora_factors(lora, 2);
    xt::xtensor<float, 2> expect = tl::nn::weights<4>(pre);
    for (std::size_t o = 0; o < 4; ++o)
      for (std::size_t i = 0; i < 8; ++i)
        for (std::size_t k = 0; k < 2; ++k) expect(o, i) += static_cast<float>(lora.scale()) * b2(o, k) * a2(k, i);
    CHECK(xt::allclose(tl::nn::weights<4>(merged), expect, 1e-5, 1e-6));
    CHECK((tl::nn::biases<0>(merged) == tl::nn::biases<0>(pre)));
    CHECK(!(tl::nn::weights<0>(merged) == tl::nn::weights<0>(pre)));
    // the merged model is the one the run evaluates
    CHECK(tl::nn::evaluate(merged, tl::nn::softmax_cross_entropy{}, t.x, t.y).accuracy ==
          lora.evaluate(tl::workflow::as_view(test)));
    // a base from any expression: zero base, so the merged model is s · B A alone
    tl::workflow::set_base(lora, xt::zeros<float>({mlp::param_count}));
    tl::nn::network<mlp> z;
    tl::nn::set_parameters(z, tl::workflow::merged_parameters(lora));
    CHECK(xt::all(xt::equal(tl::nn::biases<0>(z), 0.0f)));
    CHECK(xt::allclose(tl::nn::weights<4>(z), expect - tl::nn::weights<4>(pre), 1e-5, 1e-6));
#if TINYLARGE_HAS_EXCEPTIONS
    CHECK_THROWS_AS(tl::workflow::lora_factors(lora, 3), tl::invalid_argument);
    CHECK_THROWS_AS(tl::workflow::set_base(lora, xt::zeros<float>({std::size_t{7}})), tl::shape_error);
#endif
  }

  SECTION("distillation: the student starts from given weights; student weights out") {
    // [xt-doc-distill]
    tl::nn::network<small_student> given(77);
    tl::workflow::knowledge_distillation<kd_xtraits> kd0({.epochs = 0, .batch_size = 20, .calibration_samples = 50});
    tl::workflow::start_from(kd0, given);
    (void)kd0.run(pre, tl::workflow::as_view(train), tl::workflow::as_view(test));
    CHECK((tl::workflow::student_parameters(kd0) == tl::nn::parameters(given)));  // round trip, 0 epochs
    // [xt-doc-distill]
    // the same distillation from the given start and from the seed differ
    tl::workflow::knowledge_distillation<kd_xtraits> from_given({.epochs = 2, .batch_size = 20,
                                                                 .calibration_samples = 50});
    tl::workflow::set_initial_student(from_given, tl::nn::parameters(given));
    tl::workflow::knowledge_distillation<kd_xtraits> from_seed({.epochs = 2, .batch_size = 20,
                                                                .calibration_samples = 50});
    const auto rg = from_given.run(pre, tl::workflow::as_view(train), tl::workflow::as_view(test));
    (void)from_seed.run(pre, tl::workflow::as_view(train), tl::workflow::as_view(test));
    const xt::xtensor<float, 1> wg = tl::workflow::student_parameters(from_given);
    CHECK(!(wg == tl::workflow::student_parameters(from_seed)));
    CHECK(!(wg == tl::nn::parameters(given)));  // trained from there
    CHECK(rg.student_fp32_accuracy ==
          tl::nn::evaluate(from_given.student_network(), tl::nn::softmax_cross_entropy{}, t.x, t.y).accuracy);
    // the view aliases the student network
    auto sv = tl::workflow::student_parameters(from_given);
    sv(0) = 42.0f;
    CHECK(from_given.student_network().parameters()[0] == 42.0f);
#if TINYLARGE_HAS_EXCEPTIONS
    CHECK_THROWS_AS(tl::workflow::set_initial_student(kd0, xt::zeros<float>({std::size_t{2}})), tl::shape_error);
#endif
  }
}

// ---------------------------------------------------------------------------
// .npy / .npz
// ---------------------------------------------------------------------------

TEST_CASE("xtensor npy/npz: xexpressions written with xt::dump_npy, read back through the validating reader",
          "[xt-npy]") {
  const xt::xtensor<float, 2> a = {{1.0f, 2.0f, 3.0f}, {4.0f, 5.0f, 6.0f}};
  const std::string p = (scratch() / "a.npy").string();

  SECTION("npy: any expression in, xarray / xtensor out, C order") {
    tl::io::save_npy(p, xt::transpose(a));
    const xt::xtensor<float, 2> back = tl::io::load_npy_xtensor<float, 2>(p);
    CHECK(back == xt::transpose(a));
    const tl::io::npy_array raw = tl::io::load_npy(p);  // the library's reader sees the same array
    CHECK(raw.shape == std::vector<std::size_t>{3, 2});
    CHECK(raw.data == std::vector<float>{1, 4, 2, 5, 3, 6});
    const xt::xarray<double> as_double = tl::io::load_npy_xarray<double>(p);
    CHECK(as_double.dimension() == 2);
    CHECK(as_double(2, 1) == 6.0);
    // integer dtypes stay exact; a column-major array is written in C order
    xt::xtensor<std::uint8_t, 2, xt::layout_type::column_major> img = {{0, 255}, {7, 9}};
    tl::io::save_npy(p, img);
    const auto u = tl::io::load_npy_xtensor<std::uint8_t, 2>(p);
    CHECK(u == img);
    CHECK(tl::io::load_npy(p).data == std::vector<float>{0, 255, 7, 9});
#if TINYLARGE_HAS_EXCEPTIONS
    CHECK_THROWS_AS((tl::io::load_npy_xtensor<std::uint8_t, 3>(p)), tl::shape_error);
    std::vector<std::uint8_t> bytes = tl::io::encode_npy(a);
    bytes.resize(bytes.size() - 3);
    write_bytes(p, bytes);
    CHECK_THROWS_AS(tl::io::load_npy_xarray(p), tl::format_error);
#endif
  }

  SECTION("npz: named xtensor arrays in and out; network weights through nn::save_npz") {
    const std::string z = (scratch() / "m.npz").string();
    std::map<std::string, xt::xarray<float>> m{{"a", a}, {"b", xt::arange<float>(5.0f)}};
    tl::io::save_npz(z, m);
    const auto back = tl::io::load_npz_xarrays(z);
    REQUIRE(back.size() == 2);
    CHECK(back.at("a") == a);
    CHECK(back.at("b") == m.at("b"));
    // a network's weights saved as npz, loaded as xarrays, edited, and loaded into another network
    tl::nn::network<mlp> net(8), other(9);
    tl::nn::save_npz(z, net);
    auto sd = tl::io::load_npz_xarrays(z);
    REQUIRE(sd.at("0.weight").shape() == std::vector<std::size_t>{12, 16});
    CHECK((sd.at("0.weight") == tl::nn::weights<0>(net)));
    sd.at("4.bias") += 1.0f;
    tl::io::save_npz(z, sd);
    tl::nn::load_npz(z, other);
    const xt::xtensor<float, 1> expect =
        xt::concatenate(xt::xtuple(xt::view(tl::nn::parameters(net), xt::range(0, mlp::param_count - 4)),
                                   tl::nn::biases<4>(net) + 1.0f));
    CHECK((tl::nn::parameters(other) == expect));
  }
}

// data/xtensor.hpp adds functions to tl::data; the enum tl::data::split stays usable as a type.
static_assert(std::is_enum_v<tl::data::split>);
[[maybe_unused]] static const tl::data::split kept_split_type = tl::data::split::test;
