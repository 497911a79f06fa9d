/// @file data/batch.hpp
/// @brief Seeded per-epoch shuffling, mini-batch gathering and subsets of a
///        `dataset` (host profile).
///
/// @code
///   auto train = tl::data::load_fashion_mnist(tl::data::split::train);
///   tl::data::batcher batches(train, {.batch_size = 64, .seed = 42});
///   std::vector<float> x(64 * train.features());
///   std::vector<std::uint8_t> y(64);
///   for (std::size_t epoch = 0; epoch < 15; ++epoch) {
///     batches.start_epoch(epoch);                   // order depends on (seed, epoch) only
///     while (std::size_t m = batches.next(x.data(), y.data())) {
///       // m ≤ 64 samples: x is m × 784, y has m labels
///     }
///   }
/// @endcode
///
/// The order of epoch `e` is a function of `(seed, e)` alone — not of what
/// ran before — so a run resumed from a checkpoint at epoch `e` sees the same
/// batches as an uninterrupted one, bit for bit. A `batcher` can also iterate
/// over a subset of the samples (a federated client's partition, see
/// `partition.hpp`) without copying the images.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <numeric>
#include <span>
#include <string>
#include <vector>

#include "../core/config.hpp"
#include "../core/error.hpp"
#include "../core/rng.hpp"
#include "idx.hpp"

namespace tinylarge::data {

namespace detail {
/// SplitMix64 finaliser (Steele, Lea and Flood 2014): decorrelates seeds
/// derived from (seed, epoch) pairs.
constexpr std::uint64_t mix64(std::uint64_t z) noexcept {
  z += 0x9E3779B97F4A7C15ULL;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

inline void check_indices(std::span<const std::size_t> idx, std::size_t count,
                          [[maybe_unused]] const char* who) {
  for (const std::size_t i : idx)
    TINYLARGE_REQUIRE(i < count, errc::invalid_argument,
                      std::string("tinylarge: ") + who + ": sample index " + std::to_string(i) +
                          " is out of range for a dataset of " + std::to_string(count) +
                          " samples");
}
}  // namespace detail

/// The generator used for epoch `epoch` of a run seeded with `seed`.
inline rng epoch_rng(std::uint64_t seed, std::size_t epoch) noexcept {
  return rng(detail::mix64(seed ^ detail::mix64(static_cast<std::uint64_t>(epoch))));
}

/// 0, 1, …, n−1 in a random order drawn from `r` (Fisher–Yates).
inline std::vector<std::size_t> shuffled_indices(std::size_t n, rng& r) {
  std::vector<std::size_t> v(n);
  std::iota(v.begin(), v.end(), std::size_t{0});
  r.shuffle(v.data(), v.size());
  return v;
}

/// Copy samples `idx` of `ds` into caller buffers: `images` receives
/// `idx.size() × ds.features()` floats, `labels` (may be null) `idx.size()`
/// labels.
/// @throws tl::invalid_argument when an index is out of range.
inline void gather(const dataset& ds, std::span<const std::size_t> idx, float* images,
                   std::uint8_t* labels) {
  detail::check_indices(idx, ds.count, "gather");
  const std::size_t f = ds.features();
  for (std::size_t b = 0; b < idx.size(); ++b) {
    if (f != 0) std::memcpy(images + b * f, ds.image(idx[b]), f * sizeof(float));
    if (labels != nullptr) labels[b] = ds.labels[idx[b]];
  }
}

/// A new dataset holding copies of samples `idx` of `ds`, in that order.
/// @throws tl::invalid_argument when an index is out of range.
inline dataset subset(const dataset& ds, std::span<const std::size_t> idx) {
  dataset out;
  out.rows = ds.rows;
  out.cols = ds.cols;
  out.count = idx.size();
  out.images.resize(idx.size() * ds.features());
  out.labels.resize(idx.size());
  gather(ds, idx, out.images.data(), out.labels.data());
  return out;
}

/// How a `batcher` forms mini-batches.
struct batch_options {
  std::size_t batch_size = 32;  ///< samples per batch (the last may be smaller)
  std::uint64_t seed = 0;       ///< seed of the per-epoch shuffle
  bool shuffle = true;          ///< false: visit samples in index order (evaluation)
  bool drop_last = false;       ///< skip a final batch smaller than batch_size
};

/// Iterates over mini-batches of a dataset (or of a subset of its indices),
/// reshuffled every epoch, gathering each batch into caller buffers.
///
/// The dataset is referenced, not copied: it must outlive the batcher.
class batcher {
 public:
  /// Batches over every sample of `ds`.
  /// @throws tl::invalid_argument when `opt.batch_size` is 0.
  batcher(const dataset& ds, batch_options opt) : batcher(ds, opt, all_indices(ds.count)) {}

  /// Batches over samples `indices` of `ds` (e.g. one client's partition).
  /// @throws tl::invalid_argument when `opt.batch_size` is 0 or an index is
  ///         out of range.
  batcher(const dataset& ds, batch_options opt, std::span<const std::size_t> indices)
      : batcher(&ds, ds.count, opt, indices) {}

  /// Index-only: batches over samples 0 … count−1 of a data set held
  /// elsewhere (e.g. a `labelled_set`, see data/xtensor.hpp). Callers gather
  /// themselves with `next_indices`; `next` throws.
  /// @throws tl::invalid_argument when `opt.batch_size` is 0.
  batcher(std::size_t count, batch_options opt) : batcher(nullptr, count, opt, all_indices(count)) {}

  /// Index-only over samples `indices` of a data set of `count` samples.
  /// @throws tl::invalid_argument when `opt.batch_size` is 0 or an index is
  ///         out of range.
  batcher(std::size_t count, batch_options opt, std::span<const std::size_t> indices)
      : batcher(nullptr, count, opt, indices) {}

  /// Restart at the first batch of epoch `epoch`, in the order that depends
  /// only on `(seed, epoch)`.
  void start_epoch(std::size_t epoch) {
    order_ = base_;
    if (opt_.shuffle) {
      rng r = epoch_rng(opt_.seed, epoch);
      r.shuffle(order_.data(), order_.size());
    }
    pos_ = 0;
    epoch_ = epoch;
  }

  /// Gather the next batch into `images` (room for batch_size × features
  /// floats; not null) and `labels` (batch_size bytes; may be null).
  /// @return the number of samples in the batch; 0 when the epoch is over.
  /// @throws tl::invalid_argument on an index-only batcher (no dataset to gather from).
  std::size_t next(float* images, std::uint8_t* labels) {
    TINYLARGE_REQUIRE(ds_ != nullptr, errc::invalid_argument,
                      "tinylarge: batcher::next: an index-only batcher has no dataset to gather from; use next_indices");
    const std::span<const std::size_t> idx = next_indices();
    gather(*ds_, idx, images, labels);
    return idx.size();
  }

  /// Advance to the next batch and return its sample indices (empty when the
  /// epoch is over), for callers that gather themselves.
  std::span<const std::size_t> next_indices() noexcept {
    const std::size_t left = order_.size() - pos_;
    std::size_t m = std::min(left, opt_.batch_size);
    if (opt_.drop_last && m < opt_.batch_size) m = 0;
    const std::span<const std::size_t> s(order_.data() + pos_, m);
    pos_ += m;
    return s;
  }

  /// Batches per epoch.
  std::size_t batches_per_epoch() const noexcept {
    const std::size_t n = order_.size(), b = opt_.batch_size;
    return opt_.drop_last ? n / b : (n + b - 1) / b;
  }
  /// Samples this batcher iterates over.
  std::size_t size() const noexcept { return base_.size(); }
  /// The current epoch's order.
  std::span<const std::size_t> order() const noexcept { return order_; }
  /// The current epoch.
  std::size_t epoch() const noexcept { return epoch_; }
  /// The options given at construction.
  const batch_options& options() const noexcept { return opt_; }

 private:
  batcher(const dataset* ds, std::size_t count, batch_options opt, std::span<const std::size_t> indices)
      : ds_(ds), opt_(opt), base_(indices.begin(), indices.end()) {
    TINYLARGE_REQUIRE(opt_.batch_size > 0, errc::invalid_argument,
                      "tinylarge: batcher: batch_size must be at least 1");
    detail::check_indices(base_, count, "batcher");
    start_epoch(0);
  }

  static std::vector<std::size_t> all_indices(std::size_t n) {
    std::vector<std::size_t> v(n);
    std::iota(v.begin(), v.end(), std::size_t{0});
    return v;
  }

  const dataset* ds_;  // null: index-only
  batch_options opt_;
  std::vector<std::size_t> base_;   // the samples, in index order
  std::vector<std::size_t> order_;  // this epoch's permutation of base_
  std::size_t pos_ = 0;
  std::size_t epoch_ = 0;
};

}  // namespace tinylarge::data
