// Pipeline-parallel inference and training (workflow/pipeline.hpp) of a 784-512-512-512-10 MLP
// cut into K = 2, 3 or 4 stages, one stage per endpoint, and the placement's prediction
// (workflow/placement.hpp) next to what was measured. scripts/transport_test.sh (step
// pipeline-mpi) runs `single` and `mpi` for K = 2, 3, 4 and compares the output files byte for
// byte, then the same with --train for K = 2 and 3.
//
//   transport_pipeline_node single  --stages K --rows R --micro-batch M --out FILE
//       the whole model in one process on the same micro-batches; calibrates the MAC rate
//   transport_pipeline_node inproc  --stages K ...   the K stages as threads (in_process)
//   mpirun -np K transport_pipeline_node mpi --stages K ...   one stage per rank
//
// With --train B (rows per optimizer step): one epoch of training instead (pipeline_training:
// micro-batches of M rows, SGD with momentum, softmax cross-entropy on seeded labels); `single`
// trains nn::network<mlp> in one process on the same batches and micro-batches (gradients
// accumulated over the micro-batches in order, one step per batch), the others run the pipeline;
// --out receives the whole trained parameter vector (fp32), and one line
// `pipeline-train K=.. rows=.. batch=.. micro_batch=.. seconds=.. loss=..` is printed.
//
// The head (endpoint 0) writes the outputs (rows x 10 fp32) to --out and prints one line
// `pipeline K=.. rows=.. micro_batch=.. seconds=.. rows_per_second=.. period_ms=..` followed by
// each stage's compute time per micro-batch and the placement's predicted period for the
// calibrated MAC rate (the links are not modelled in the prediction printed here: on one machine
// MPI moves a 512-value micro-batch row in microseconds).
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#if defined(TINYLARGE_WITH_MPI)
#include <mpi.h>

#include "tinylarge/transport/auth.hpp"
#include "tinylarge/transport/mpi.hpp"
#endif
#include "tinylarge/core/rng.hpp"
#include "tinylarge/nn/nn.hpp"
#include "tinylarge/transport/in_process.hpp"
#include "tinylarge/workflow/pipeline.hpp"
#include "tinylarge/workflow/placement.hpp"

namespace {
namespace tl = tinylarge;
using mlp = tl::sequential<tl::dense<784, 512>, tl::relu, tl::dense<512, 512>, tl::relu, tl::dense<512, 512>, tl::relu,
                           tl::dense<512, 10>>;
// The cut points per K: balanced by MACs (784·512 ≈ 401 k, then 262 k, 262 k, 5 k).
using cut2 = tl::cut<2>;
using cut3 = tl::cut<2, 4>;
using cut4 = tl::cut<2, 4, 6>;

struct args {
  std::string mode;
  std::size_t stages = 2, rows = 2048, micro_batch = 32, train = 0;
  std::string out;
};

[[noreturn]] void usage(const char* why) {
  std::fprintf(stderr,
               "transport_pipeline_node: %s\nusage: transport_pipeline_node single|inproc|mpi --stages 2|3|4 "
               "[--rows R] [--micro-batch M] [--train B] [--out FILE]\n",
               why);
  std::exit(2);
}

args parse(int argc, char** argv) {
  if (argc < 2) usage("no mode");
  args a;
  a.mode = argv[1];
  for (int i = 2; i < argc; i += 2) {
    if (i + 1 >= argc) usage("an option without its value");
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--stages") a.stages = std::stoul(v);
    else if (k == "--rows") a.rows = std::stoul(v);
    else if (k == "--micro-batch") a.micro_batch = std::stoul(v);
    else if (k == "--out") a.out = v;
    else if (k == "--train") a.train = std::stoul(v);
    else usage(("unknown option " + k).c_str());
  }
  if (a.stages < 2 || a.stages > 4) usage("--stages must be 2, 3 or 4");
  if (a.rows == 0 || a.micro_batch == 0) usage("--rows and --micro-batch must be positive");
  return a;
}

// The same seeded model, inputs and labels on every endpoint.
struct problem {
  tl::nn::network<mlp> net{2026};
  std::vector<float> x;
  std::vector<std::uint8_t> labels;
  explicit problem(std::size_t rows) : x(rows * 784), labels(rows) {
    tl::rng g(7);
    for (float& v : x) v = g.uniform();
    for (auto& l : labels) l = static_cast<std::uint8_t>(g.uniform() * 10.0f) % 10;
  }
};

const tl::nn::sgd train_optimizer{.learning_rate = 0.05f, .momentum = 0.9f};

void write_outputs(const args& a, const std::vector<float>& y) {
  if (a.out.empty()) return;
  std::ofstream f(a.out, std::ios::binary);
  f.write(reinterpret_cast<const char*>(y.data()), static_cast<std::streamsize>(4 * y.size()));
  if (!f) usage("cannot write --out");
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// The whole model on the same micro-batches; returns its MACs per second.
double single(const args& a, problem& p, std::vector<float>& y) {
  y.assign(a.rows * 10, 0.0f);
  const auto t0 = std::chrono::steady_clock::now();
  for (std::size_t r0 = 0; r0 < a.rows; r0 += a.micro_batch) {
    const std::size_t n = std::min(a.micro_batch, a.rows - r0);
    const float* out = p.net.forward(p.x.data() + r0 * 784, n);
    std::copy(out, out + n * 10, y.begin() + static_cast<std::ptrdiff_t>(r0 * 10));
  }
  const double s = seconds_since(t0);
  return static_cast<double>(mlp::macs) * static_cast<double>(a.rows) / s;
}

// Training in one process: nn::network<mlp> on the pipeline's batches and micro-batches
// (gradients accumulated over a batch's micro-batches in order, one step per batch).
void single_train(const args& a, problem& p, std::vector<float>& params) {
  using pipe = tl::workflow::pipeline_training<mlp, cut2>;  // micro_batch_gradient depends on the model only
  tl::nn::trainable_state<tl::nn::sgd, mlp> state(train_optimizer);
  tl::nn::optimizer_update<tl::nn::trainable_state<tl::nn::sgd, mlp>> update{state};
  std::vector<float> grad(a.micro_batch * 10);
  double loss = 0.0;
  const auto t0 = std::chrono::steady_clock::now();
  for (std::size_t r0 = 0; r0 < a.rows; r0 += a.train) {
    const std::size_t brows = std::min(a.train, a.rows - r0);
    p.net.zero_gradients();
    double batch_loss = 0.0;
    for (std::size_t t0r = 0; t0r < brows; t0r += a.micro_batch) {
      const std::size_t n = std::min(a.micro_batch, brows - t0r);
      const float* z = p.net.forward(p.x.data() + (r0 + t0r) * 784, n, true);
      batch_loss += pipe::micro_batch_gradient(tl::nn::softmax_cross_entropy{}, z, p.labels.data() + r0 + t0r, n, brows,
                                               grad.data()) *
                    static_cast<double>(n);
      p.net.backward(grad.data());
    }
    tl::nn::finish_step(p.net, update);
    loss += batch_loss / static_cast<double>(brows);
  }
  const double s = seconds_since(t0);
  const auto w = p.net.parameters();
  params.assign(w.begin(), w.end());
  std::printf("single-train rows=%zu batch=%zu micro_batch=%zu seconds=%.4f loss=%.6f\n", a.rows, a.train,
              a.micro_batch, s, loss);
}

template <class Cut, class T>
int train_stage(const args& a, problem& p, T& net) {
  using pipe = tl::workflow::pipeline_training<mlp, Cut>;
  const tl::workflow::pipeline_options o{.micro_batch = a.micro_batch, .window = 0,
                                         .timeout = std::chrono::seconds(60)};
  const auto w = p.net.parameters();
  std::vector<float> params(w.begin(), w.end());
  const bool head = net.id() == 0, last = net.id() + 1 == pipe::stages;
  const tl::workflow::pipeline_training_report r = pipe::run(
      net, params, train_optimizer, tl::nn::softmax_cross_entropy{},
      head ? std::span<const float>(p.x) : std::span<const float>(),
      last ? std::span<const std::uint8_t>(p.labels) : std::span<const std::uint8_t>(), a.rows, a.train, o);
  if (last)
    std::printf("pipeline-train stage=%u loss=%.6f\n", static_cast<unsigned>(net.id()), r.loss_sum);
  if (head) {
    write_outputs(a, params);
    std::printf("pipeline-train K=%zu rows=%zu batch=%zu micro_batch=%zu seconds=%.4f head_compute_s=%.4f\n", a.stages,
                a.rows, a.train, a.micro_batch, r.seconds, r.compute_seconds);
  }
  return 0;
}

std::string join(const std::vector<std::size_t>& v) {
  std::string s;
  for (const std::size_t c : v) {
    if (!s.empty()) s += ',';
    s += std::to_string(c);
  }
  return s;
}

template <class Cut>
std::vector<std::size_t> cuts_of() {
  return {Cut::begins.begin() + 1, Cut::begins.end()};
}

template <class Cut, class T>
int head_or_stage(const args& a, problem& p, T& net, double macs_per_second) {
  using pipe = tl::workflow::pipeline_inference<mlp, Cut>;
  const tl::workflow::pipeline_options o{.micro_batch = a.micro_batch, .window = 0,
                                         .timeout = std::chrono::seconds(60)};
  if (net.id() != 0) {
    pipe::run(net, p.net.parameters(), {}, {}, 0, o);
    return 0;
  }
  std::vector<float> y(a.rows * 10);
  const tl::workflow::pipeline_report r = pipe::run(net, p.net.parameters(), p.x, y, a.rows, o);
  write_outputs(a, y);
  const double mbs = static_cast<double>(r.micro_batches);
  // The placement's prediction for K equal servers at the calibrated rate (compute only).
  std::vector<tl::workflow::server_profile> servers(a.stages);
  for (auto& s : servers) s = {.macs_per_second = macs_per_second, .bytes_per_second = 1e12};
  const tl::workflow::placement best =
      tl::workflow::place_pipeline<mlp>(servers, {.micro_batch = a.micro_batch, .overlap = true});
  const std::string dp_cuts = join(best.cuts), used = join(cuts_of<Cut>());
  std::printf("pipeline K=%zu rows=%zu micro_batch=%zu seconds=%.4f rows_per_second=%.0f period_ms=%.3f "
              "head_compute_ms=%.3f cuts=%s placement_cuts=%s predicted_period_ms=%.3f\n",
              a.stages, a.rows, a.micro_batch, r.seconds, static_cast<double>(a.rows) / r.seconds,
              1e3 * r.seconds / mbs, 1e3 * r.compute_seconds / mbs, used.c_str(), dp_cuts.c_str(),
              1e3 * best.period_seconds);
  return 0;
}

template <class T>
int dispatch(const args& a, problem& p, T& net, double rate) {
  if (a.train != 0) {
    switch (a.stages) {
      case 2: return train_stage<cut2>(a, p, net);
      case 3: return train_stage<cut3>(a, p, net);
      default: return train_stage<cut4>(a, p, net);
    }
  }
  switch (a.stages) {
    case 2: return head_or_stage<cut2>(a, p, net, rate);
    case 3: return head_or_stage<cut3>(a, p, net, rate);
    default: return head_or_stage<cut4>(a, p, net, rate);
  }
}

}  // namespace

int main(int argc, char** argv) try {
  const args a = parse(argc, argv);
  problem p(a.rows);
  std::vector<float> y;
  if (a.mode == "single" && a.train != 0) {
    single_train(a, p, y);
    write_outputs(a, y);
    return 0;
  }
  if (a.mode == "single") {
    const double rate = single(a, p, y);
    write_outputs(a, y);
    std::printf("single rows=%zu micro_batch=%zu macs_per_second=%.3g\n", a.rows, a.micro_batch, rate);
    return 0;
  }
  if (a.mode == "inproc") {
    const double rate = a.train != 0 ? 0.0 : single(a, p, y);  // the MAC rate of one process alone, for the prediction

    tl::in_process::hub hub(a.stages);
    std::vector<std::thread> th;
    int rc = 0;
    std::vector<int> stage_rc(a.stages, 0);
    for (tl::endpoint_id e = 1; e < a.stages; ++e)
      th.emplace_back([&, e] {
        try {
          tl::in_process ep(hub, e);
          stage_rc[e] = dispatch(a, p, ep, rate);
        } catch (const std::exception& ex) {
          std::fprintf(stderr, "transport_pipeline_node: stage %u: %s\n", e, ex.what());
          stage_rc[e] = 1;
        }
      });
    tl::in_process head(hub, 0);
    rc = dispatch(a, p, head, rate);
    for (auto& t : th) t.join();
    for (const int r : stage_rc) rc = rc != 0 ? rc : r;
    return rc;
  }
#if defined(TINYLARGE_WITH_MPI)
  if (a.mode == "mpi") {
    MPI_Init(&argc, &argv);
    int rc = 0;
    {
      tl::mpi_transport net(MPI_COMM_WORLD, {}, tl::frame_key::from_environment());
      if (net.endpoints() != a.stages) usage("mpirun -np must equal --stages");
      // The head calibrates the MAC rate while the other ranks wait (alone on the machine's cores).
      double rate = 0.0;
      if (net.id() == 0 && a.train == 0) rate = single(a, p, y);
      MPI_Barrier(MPI_COMM_WORLD);
      rc = dispatch(a, p, net, rate);
    }
    MPI_Finalize();
    return rc;
  }
#endif
  usage(("mode '" + a.mode + "' is not built in (single, inproc; mpi with TINYLARGE_WITH_MPI)").c_str());
} catch (const std::exception& e) {
  std::fprintf(stderr, "transport_pipeline_node: %s\n", e.what());
  return 1;
}
