/// @file data/xtensor.hpp
/// @brief Data sets as xtensor arrays: IDX loaders giving `xt::xtensor`, the
///        `labelled_set` type, and partitioners that take and give them (host
///        profile).
///
/// @code
///   auto train = tl::data::load_fashion_mnist_set(tl::data::split::train);  // x: 60000 × 784 float, y: 60000 uint8
///   xt::xtensor<std::uint8_t, 3> raw = tl::data::load_idx_images("t10k-images-idx3-ubyte.gz");  // N × 28 × 28
///   tl::rng r(7);
///   std::vector<tl::data::labelled_set> clients = tl::data::split_shards(train, 100, 2, r);
///   auto skewed = tl::data::split_by(train, tl::data::parse_partition_spec("dirichlet:0.5"), 100, r);
///   auto first = xt::view(clients[0].x, 0, xt::all());                        // 784 floats
///   tl::data::labelled_batcher batches(train, {.batch_size = 64, .seed = 42});
///   for (std::size_t epoch = 0; epoch < 3; ++epoch) {
///     batches.start_epoch(epoch);
///     while (const auto b = batches.next()) { auto x = b.x(); auto y = b.y(); /* views, no copy */ }
///   }
/// @endcode
///
/// Every loader is a thin wrapper over the validating readers of `idx.hpp` /
/// `idx_format.hpp` (sizes checked before anything is allocated, the file named
/// in every error); this header only moves their result into xtensor
/// containers. Images as features are pixel / 255.0f (correctly rounded), as
/// `load_idx` gives them; `to_features` does the same for raw `uint8` images.
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include <xtensor/xadapt.hpp>
#include <xtensor/xtensor.hpp>
#include <xtensor/xview.hpp>

#include "../core/error.hpp"
#include "../core/rng.hpp"
#include "batch.hpp"
#include "idx.hpp"
#include "idx_format.hpp"
#include "partition.hpp"

namespace tinylarge::data {

/// A labelled classification data set in xtensor containers: `x` is
/// N × features (float), `y` holds the N class labels. `rows` / `cols` keep
/// the image shape when the features are images (0 otherwise), so that
/// `xt::reshape_view(set.x, {n, rows, cols})` recovers them.
struct labelled_set {
  xt::xtensor<float, 2> x;          ///< N × features
  xt::xtensor<std::uint8_t, 1> y;   ///< N labels
  std::size_t rows = 0;             ///< image height (0: not images)
  std::size_t cols = 0;             ///< image width

  labelled_set() = default;
  /// From any two xexpressions: `x` N × F (or N × H × W, flattened, with
  /// rows = H, cols = W), `y` N labels. Values are converted to float as they
  /// are (`to_features` scales uint8 pixels to [0, 1]).
  /// @throws tl::shape_error when `x` is not 2-D or 3-D, `y` is not 1-D, or
  ///         they hold different numbers of samples.
  template <class EX, class EY>
  labelled_set(const xt::xexpression<EX>& x_in, const xt::xexpression<EY>& y_in) {
    const auto& ex = x_in.derived_cast();
    const auto& ey = y_in.derived_cast();
    TINYLARGE_REQUIRE(ex.dimension() == 2 || ex.dimension() == 3, errc::shape_mismatch,
                      "tinylarge: labelled_set: x must be N x features or N x rows x cols, got " +
                          std::to_string(ex.dimension()) + " dimensions");
    TINYLARGE_REQUIRE(ey.dimension() == 1, errc::shape_mismatch,
                      "tinylarge: labelled_set: y must be a 1-D array of N labels");
    const std::size_t n = ex.shape()[0];
    TINYLARGE_REQUIRE(ey.shape()[0] == n, errc::shape_mismatch,
                      "tinylarge: labelled_set: x holds " + std::to_string(n) + " samples but y " +
                          std::to_string(ey.shape()[0]) + " labels");
    std::size_t f = ex.shape()[1];
    if (ex.dimension() == 3) {
      rows = ex.shape()[1];
      cols = ex.shape()[2];
      f = rows * cols;
    }
    x = xt::xtensor<float, 2>::from_shape({n, f});
    std::copy(ex.begin(), ex.end(), x.begin());  // row-major traversal, converted to float
    y = ey;
  }

  /// Number of samples N.
  std::size_t size() const noexcept { return y.size(); }
  /// Values per sample.
  std::size_t features() const noexcept { return x.shape()[1]; }
};

/// `images` (N × H × W or N × F, any numeric type, typically uint8) as float
/// features pixel / 255.0f, N × (H·W) — the scaling `load_idx` applies.
template <class E>
xt::xtensor<float, 2> to_features(const xt::xexpression<E>& images) {
  const auto& e = images.derived_cast();
  TINYLARGE_REQUIRE(e.dimension() >= 2, errc::shape_mismatch,
                    "tinylarge: to_features: images must be N x rows x cols or N x features");
  const std::size_t n = e.shape()[0];
  const std::size_t f = n == 0 ? 0 : e.size() / n;
  xt::xtensor<float, 2> out = xt::xtensor<float, 2>::from_shape({n, f});
  std::size_t i = 0;
  for (auto it = e.begin(); it != e.end(); ++it, ++i) out.data()[i] = static_cast<float>(*it) / 255.0f;
  return out;
}

/// A `dataset` (IDX loader's result) as a `labelled_set` (copies).
inline labelled_set to_labelled_set(const dataset& ds) {
  labelled_set s;
  const std::array<std::size_t, 2> xs{ds.count, ds.features()};
  s.x = xt::adapt(ds.images.data(), ds.images.size(), xt::no_ownership(), xs);
  const std::array<std::size_t, 1> ys{ds.labels.size()};
  s.y = xt::adapt(ds.labels.data(), ds.labels.size(), xt::no_ownership(), ys);
  s.rows = ds.rows;
  s.cols = ds.cols;
  return s;
}

/// `load_idx` (validating reader) into a `labelled_set`.
/// @throws as `load_idx`.
inline labelled_set load_idx_set(const std::string& images_path, const std::string& labels_path,
                                 const idx_limits& limits = {}) {
  return to_labelled_set(load_idx(images_path, labels_path, limits));
}

/// `load_fashion_mnist` (validating reader) into a `labelled_set`:
/// x is N × 784 in [0, 1], y holds labels 0..9, rows = cols = 28.
/// @throws as `load_fashion_mnist`.
inline labelled_set load_fashion_mnist_set(split s,
                                           const std::string& dir = "/usr/share/datasets/fashion-mnist") {
  return to_labelled_set(load_fashion_mnist(s, dir));
}

namespace detail {
inline std::vector<std::uint8_t> read_idx_file(const std::string& path, const idx_limits& limits, bool images,
                                               idx_view& v) {
  std::vector<std::uint8_t> bytes = read_maybe_gzip(path, limits);
  const status s = images ? parse_idx_images(bytes, v, limits) : parse_idx_labels(bytes, v, limits);
  if (!s.ok()) TINYLARGE_RAISE(s.code, idx_error_text(path, images ? "image" : "label", s, v));
  return bytes;
}
}  // namespace detail

/// The raw pixels of an IDX image file (gzip or raw), N × rows × cols `uint8`.
/// @throws tl::io_error (unreadable), tl::format_error (not a valid IDX image
///         file, truncated, trailing bytes, over `limits`).
inline xt::xtensor<std::uint8_t, 3> load_idx_images(const std::string& path, const idx_limits& limits = {}) {
  idx_view v;
  const std::vector<std::uint8_t> bytes = detail::read_idx_file(path, limits, true, v);
  const std::array<std::size_t, 3> shape{v.dims[0], v.dims[1], v.dims[2]};
  xt::xtensor<std::uint8_t, 3> out = xt::adapt(v.payload, v.payload_bytes, xt::no_ownership(), shape);
  return out;
}

/// The labels of an IDX label file (gzip or raw), N `uint8`.
/// @throws as `load_idx_images`.
inline xt::xtensor<std::uint8_t, 1> load_idx_labels(const std::string& path, const idx_limits& limits = {}) {
  idx_view v;
  const std::vector<std::uint8_t> bytes = detail::read_idx_file(path, limits, false, v);
  const std::array<std::size_t, 1> shape{v.dims[0]};
  xt::xtensor<std::uint8_t, 1> out = xt::adapt(v.payload, v.payload_bytes, xt::no_ownership(), shape);
  return out;
}

// ---------------------------------------------------------------------------
// Partitioners over xtensor labels and labelled sets
// ---------------------------------------------------------------------------

namespace detail {
/// The labels of a 1-D xexpression as a contiguous vector (for the span partitioners).
template <class E>
std::vector<std::uint8_t> label_vector(const xt::xexpression<E>& labels, const char* who) {
  const auto& e = labels.derived_cast();
  TINYLARGE_REQUIRE(e.dimension() == 1, errc::shape_mismatch,
                    std::string("tinylarge: ") + who + ": labels must be a 1-D array");
  return std::vector<std::uint8_t>(e.begin(), e.end());
}
}  // namespace detail

/// `partition_shards` over an xtensor of labels (see partition.hpp).
template <class E>
partition_t partition_shards(const xt::xexpression<E>& labels, std::size_t clients, std::size_t shards_per_client,
                             rng& r) {
  const std::vector<std::uint8_t> y = detail::label_vector(labels, "partition_shards");
  return partition_shards(std::span<const std::uint8_t>(y), clients, shards_per_client, r);
}

/// `partition_dirichlet` over an xtensor of labels (see partition.hpp).
template <class E>
partition_t partition_dirichlet(const xt::xexpression<E>& labels, std::size_t clients, double alpha, rng& r,
                                std::size_t min_size = 10, std::size_t max_attempts = 1000) {
  const std::vector<std::uint8_t> y = detail::label_vector(labels, "partition_dirichlet");
  return partition_dirichlet(std::span<const std::uint8_t>(y), clients, alpha, r, min_size, max_attempts);
}

/// Partition xtensor `labels` with a `partition_spec` (see partition.hpp).
template <class E>
partition_t partition(const partition_spec& spec, const xt::xexpression<E>& labels, std::size_t clients, rng& r) {
  const std::vector<std::uint8_t> y = detail::label_vector(labels, "partition");
  return spec(std::span<const std::uint8_t>(y), clients, r);
}

/// Samples `idx` of `s`, in that order (copies, via `xt::view` with `xt::keep`).
/// @throws tl::invalid_argument when an index is out of range.
inline labelled_set subset(const labelled_set& s, std::span<const std::size_t> idx) {
  for (const std::size_t i : idx)
    TINYLARGE_REQUIRE(i < s.size(), errc::invalid_argument,
                      "tinylarge: subset: sample index " + std::to_string(i) + " is out of range for a set of " +
                          std::to_string(s.size()) + " samples");
  const std::vector<std::size_t> keep(idx.begin(), idx.end());
  labelled_set out;
  out.rows = s.rows;
  out.cols = s.cols;
  if (keep.empty()) {
    out.x = xt::xtensor<float, 2>::from_shape({0, s.features()});
    out.y = xt::xtensor<std::uint8_t, 1>::from_shape({0});
    return out;
  }
  out.x = xt::view(s.x, xt::keep(keep), xt::all());
  out.y = xt::view(s.y, xt::keep(keep));
  return out;
}

/// One `labelled_set` per client of a partition (client c gets samples `parts[c]`).
inline std::vector<labelled_set> client_sets(const labelled_set& s, const partition_t& parts) {
  std::vector<labelled_set> out;
  out.reserve(parts.size());
  for (const auto& p : parts) out.push_back(subset(s, p));
  return out;
}

/// IID split of `s` among `clients` (`partition_iid` + `client_sets`).
inline std::vector<labelled_set> split_iid(const labelled_set& s, std::size_t clients, rng& r) {
  return client_sets(s, partition_iid(s.size(), clients, r));
}
/// Label-shard split of `s` (`partition_shards` + `client_sets`).
inline std::vector<labelled_set> split_shards(const labelled_set& s, std::size_t clients,
                                              std::size_t shards_per_client, rng& r) {
  return client_sets(s, partition_shards(s.y, clients, shards_per_client, r));
}
/// Dirichlet label-skew split of `s` (`partition_dirichlet` + `client_sets`).
inline std::vector<labelled_set> split_dirichlet(const labelled_set& s, std::size_t clients, double alpha, rng& r,
                                                 std::size_t min_size = 10) {
  return client_sets(s, partition_dirichlet(s.y, clients, alpha, r, min_size));
}

/// Quantity-skew split of `s` (`partition_quantity` + `client_sets`).
inline std::vector<labelled_set> split_quantity(const labelled_set& s, std::size_t clients, double beta, rng& r,
                                                std::size_t min_size = 10) {
  return client_sets(s, partition_quantity(s.size(), clients, beta, r, min_size));
}
/// Split of `s` by a `partition_spec` (`iid`, `shards:K`, `dirichlet:A`, `quantity:B`).
inline std::vector<labelled_set> split_by(const labelled_set& s, const partition_spec& spec, std::size_t clients,
                                       rng& r) {
  return client_sets(s, partition(spec, s.y, clients, r));
}

// ---------------------------------------------------------------------------
// Minibatches of a labelled set
// ---------------------------------------------------------------------------

/// One minibatch of a `labelled_set`: its sample indices and xtensor views of
/// the set's storage (no sample is copied). Valid until the batcher's next
/// `next` / `start_epoch` and while the set lives. Converts to false when the
/// epoch is over.
class labelled_batch {
 public:
  labelled_batch() = default;
  labelled_batch(const labelled_set* s, std::span<const std::size_t> idx) : set_(s), idx_(idx) {}

  explicit operator bool() const noexcept { return !idx_.empty(); }
  /// Samples in the batch.
  std::size_t size() const noexcept { return idx_.size(); }
  /// The batch's sample indices into the set, in batch order.
  std::span<const std::size_t> indices() const noexcept { return idx_; }

  /// size() × features view of the samples (`xt::keep` over the rows of `x`):
  /// lazy, reads the set's storage; assign to an `xt::xtensor` to gather.
  auto x() const { return xt::view(set_->x, xt::keep(keep()), xt::all()); }
  /// size() labels, a view of the set's labels.
  auto y() const { return xt::view(set_->y, xt::keep(keep())); }

  /// True when the indices are consecutive (unshuffled batches): then
  /// `x_rows` / `y_rows` are strided range views, dense row-major slices.
  bool contiguous() const noexcept {
    for (std::size_t i = 1; i < idx_.size(); ++i)
      if (idx_[i] != idx_[i - 1] + 1) return false;
    return true;
  }
  /// The batch as `xt::range` views of the set (requires `contiguous()`).
  /// @throws tl::invalid_argument when the batch is not contiguous.
  auto x_rows() const {
    const std::size_t f = first_row();
    return xt::view(set_->x, xt::range(f, f + idx_.size()), xt::all());
  }
  /// Labels as an `xt::range` view (requires `contiguous()`).
  auto y_rows() const {
    const std::size_t f = first_row();
    return xt::view(set_->y, xt::range(f, f + idx_.size()));
  }

 private:
  std::vector<std::size_t> keep() const { return {idx_.begin(), idx_.end()}; }
  std::size_t first_row() const {
    TINYLARGE_REQUIRE(contiguous(), errc::invalid_argument,
                      "tinylarge: labelled_batch: x_rows / y_rows need consecutive indices (shuffle = false); "
                      "use x() / y()");
    return idx_.empty() ? 0 : idx_.front();
  }

  const labelled_set* set_ = nullptr;
  std::span<const std::size_t> idx_;
};

/// The `batcher` of batch.hpp over a `labelled_set`: the same seeded
/// per-epoch order (a function of `(seed, epoch)` alone), each batch given as
/// xtensor views instead of gathered into buffers. The set is referenced and
/// must outlive the batcher.
///
/// @code
///   tl::data::labelled_batcher batches(train, {.batch_size = 32, .seed = 7});
///   batches.start_epoch(epoch);
///   while (const auto b = batches.next()) tl::nn::forward(net, b.x());
/// @endcode
class labelled_batcher {
 public:
  /// Batches over every sample of `s`.
  /// @throws tl::invalid_argument when `opt.batch_size` is 0.
  labelled_batcher(const labelled_set& s, batch_options opt) : set_(&s), order_(s.size(), opt) {}
  /// Batches over samples `indices` of `s` (e.g. a client's partition).
  /// @throws tl::invalid_argument when `opt.batch_size` is 0 or an index is out of range.
  labelled_batcher(const labelled_set& s, batch_options opt, std::span<const std::size_t> indices)
      : set_(&s), order_(s.size(), opt, indices) {}

  /// Restart at the first batch of epoch `epoch`.
  void start_epoch(std::size_t epoch) { order_.start_epoch(epoch); }
  /// The next batch (false when the epoch is over).
  labelled_batch next() { return {set_, order_.next_indices()}; }

  std::size_t batches_per_epoch() const noexcept { return order_.batches_per_epoch(); }
  std::size_t size() const noexcept { return order_.size(); }
  std::size_t epoch() const noexcept { return order_.epoch(); }
  /// The current epoch's order (indices into the set).
  std::span<const std::size_t> order() const noexcept { return order_.order(); }

 private:
  const labelled_set* set_;
  batcher order_;  // index-only: the one shuffling / batching implementation
};

}  // namespace tinylarge::data
