/// @file examples/xtensor_interop/main.cpp
/// @brief The host API in xtensor terms: Fashion-MNIST as xtensor arrays, a
///        network trained on them, its weights sliced and printed with xtensor
///        expressions and saved as .npy / .npz for NumPy (check_numpy.py reads
///        them back and recomputes the network's outputs).
///
///     xtensor_interop [--data DIR] [--train N] [--epochs E] [--out DIR]
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <iostream>
#include <map>
#include <string>

#include <xtensor/xio.hpp>
#include <xtensor/xmath.hpp>
#include <xtensor/xsort.hpp>
#include <xtensor/xview.hpp>

#include "tinylarge/tinylarge.hpp"
#include "../common/cli.hpp"

namespace tl = tinylarge;

int main(int argc, char** argv) try {
  std::string data_dir = "/usr/share/datasets/fashion-mnist", out_dir = "xtensor_interop_out";
  std::size_t n_train = 10000, epochs = 3;  // n_train: the first N training images
  examples::cli args(argc, argv, "[--data DIR] [--train N] [--epochs E] [--out DIR]");
  while (args.next()) {
    if (args.is("--data")) data_dir = args.text();
    else if (args.is("--train")) n_train = args.count();
    else if (args.is("--epochs")) epochs = args.count();
    else if (args.is("--out")) out_dir = args.text();
    else args.unknown();
  }
  n_train = std::min<std::size_t>(std::max<std::size_t>(n_train, 1), 60000);

  std::filesystem::create_directories(out_dir);
  // [readme-xtensor]
  // Fashion-MNIST as xtensor arrays: x is N × 784 float in [0, 1], y holds N uint8 labels.
  const auto train = tl::data::load_fashion_mnist_set(tl::data::split::train, data_dir);
  const auto test = tl::data::load_fashion_mnist_set(tl::data::split::test, data_dir);
  using model = tl::sequential<tl::dense<784, 64>, tl::relu, tl::dense<64, 10>>;
  tl::nn::network<model> net(42);
  tl::nn::fit(net, tl::nn::sgd{.learning_rate = 0.05f, .momentum = 0.9f}, tl::nn::softmax_cross_entropy{},
              xt::view(train.x, xt::range(0, n_train)), xt::view(train.y, xt::range(0, n_train)),
              {.epochs = epochs, .batch_size = 32, .seed = 1}, test.x, test.y, tl::nn::progress_printer{});
  auto w0 = tl::nn::weights<0>(net);  // 64 × 784: a view of the network's own parameters, no copy
  std::cout << "first weights of units 0-1:\n" << xt::view(w0, xt::range(0, 2), xt::range(0, 6)) << "\n";
  const xt::xtensor<std::size_t, 1> pred = tl::nn::predict(net, test.x);
  const double acc = xt::mean(xt::equal(pred, xt::cast<std::size_t>(test.y)))();
  tl::io::save_npy(out_dir + "/w0.npy", w0);  // numpy.load("w0.npy")
  // [readme-xtensor]

  // More slicing with xtensor expressions.
  auto w1 = tl::nn::weights<2>(net);  // 10 × 64
  const xt::xtensor<float, 1> norms = xt::sqrt(xt::sum(xt::square(w0), {1}));
  std::cout << "L2 norm of the first 8 hidden units' weights: " << xt::view(norms, xt::range(0, 8)) << "\n";
  std::cout << "output weights, classes 0-2, hidden units 0-5:\n"
            << xt::view(w1, xt::range(0, 3), xt::range(0, 6)) << "\n";
  const auto field = xt::reshape_view(xt::view(w0, xt::argmax(norms)(), xt::all()), {28, 28});
  std::cout << "receptive field of the strongest unit, centre 4x4 of 28x28:\n"
            << xt::view(field, xt::range(12, 16), xt::range(12, 16)) << "\n";

  // Raw pixels as uint8 N × 28 × 28, turned into features as the loader does (pixel / 255).
  const xt::xtensor<std::uint8_t, 3> raw = tl::data::load_idx_images(data_dir + "/t10k-images-idx3-ubyte.gz");
  const auto x8 = tl::data::to_features(xt::view(raw, xt::range(0, 8)));
  std::cout << "test accuracy " << acc << " on " << test.size() << " images (raw pixels " << raw.shape()[0] << "x"
            << raw.shape()[1] << "x" << raw.shape()[2] << ")\n";

  // Saved for NumPy: .npy per array (xt::dump_npy), and one .npz of all weights.
  tl::io::save_npy(out_dir + "/x8.npy", x8);
  tl::io::save_npy(out_dir + "/logits8.npy", tl::nn::forward(net, x8));
  tl::io::save_npy(out_dir + "/pred.npy", pred);
  tl::io::save_npy(out_dir + "/raw8.npy", xt::view(raw, xt::range(0, 8)));
  tl::io::save_npy(out_dir + "/b0.npy", tl::nn::biases<0>(net));
  tl::io::save_npy(out_dir + "/w1.npy", w1);
  tl::io::save_npy(out_dir + "/b1.npy", tl::nn::biases<2>(net));
  tl::nn::save_npz(out_dir + "/model.npz", net);  // PyTorch state_dict names: 0.weight, 0.bias, 2.weight, 2.bias
  std::printf("accuracy %.4f\nwrote %s/{x8,logits8,pred,raw8,w0,b0,w1,b1}.npy and model.npz\n", acc,
              out_dir.c_str());
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "xtensor_interop: %s\n", e.what());
  return 1;
}
