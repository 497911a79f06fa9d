/// @file compress/sparse.hpp
/// @brief Building the compressed forms of compress/kernels.hpp from a dense (pruned,
///        shared) weight matrix, and decoding them back: relative-index CSR with fp32 or
///        codebook values, bit-packed codebook matrices, factored views.
///
/// Host profile (owning `std::vector`s); `view()` gives the freestanding views the kernels
/// take. Storage accounting (`storage_bits`) follows Deep Compression's table: values (32
/// bits or the index width), gaps (gap_bits each), row offsets (32 bits each), codebook.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <type_traits>
#include <vector>

#include "../core/error.hpp"
#include "bitpack.hpp"
#include "concepts.hpp"
#include "kernels.hpp"
#include "low_rank.hpp"

namespace tinylarge::compress {

/// An owning relative-index CSR matrix (see compress/kernels.hpp for the format).
/// @tparam Value `float` (fp32 values) or `std::uint8_t` (codebook indices)
template <class Value>
struct relative_csr {
  std::size_t rows = 0;
  std::size_t cols = 0;
  unsigned gap_bits = 5;
  std::vector<std::uint32_t> row_ptr;
  std::vector<std::uint8_t> gaps;
  std::vector<Value> values;
  std::vector<float> centroids;  ///< codebook (Value = uint8_t only)
  std::size_t fillers = 0;       ///< entries that only bridge a long gap (value 0)

  std::size_t entries() const noexcept { return values.size(); }
  std::size_t nonzeros() const noexcept { return values.size() - fillers; }

  /// The freestanding view the kernels take.
  auto view() const noexcept {
    if constexpr (std::is_same_v<Value, float>) {
      return relative_csr_view<csr_f32_values>{rows, cols, gap_bits, row_ptr.data(), gaps.data(),
                                               csr_f32_values{values.data()}};
    } else {
      return relative_csr_view<csr_codebook_values>{
          rows, cols, gap_bits, row_ptr.data(), gaps.data(),
          csr_codebook_values{values.data(), centroids.data(), centroids.size()}};
    }
  }

  /// Bits of the stored form: values, gaps, row offsets (32 bits each) and codebook.
  std::size_t storage_bits(unsigned index_bits = 8) const noexcept {
    const std::size_t value_bits = std::is_same_v<Value, float> ? 32 : index_bits;
    return entries() * (value_bits + gap_bits) + (rows + 1) * 32 + centroids.size() * 32;
  }
};

namespace detail {
template <class Value, class Get>
relative_csr<Value> build_relative_csr(matrix_ref<const float> w, unsigned gap_bits, Get get) {
  TINYLARGE_REQUIRE(gap_bits >= 1 && gap_bits <= 8, errc::invalid_argument, "relative_csr: gap_bits must be in [1, 8]");
  relative_csr<Value> s;
  s.rows = w.rows;
  s.cols = w.cols;
  s.gap_bits = gap_bits;
  s.row_ptr.reserve(w.rows + 1);
  s.row_ptr.push_back(0);
  const std::size_t max_gap = (std::size_t{1} << gap_bits) - 1;
  for (std::size_t o = 0; o < w.rows; ++o) {
    std::size_t next = 0;  // first column not yet covered
    const float* r = w.row(o);
    for (std::size_t c = 0; c < w.cols; ++c) {
      if (r[c] == 0.0f) continue;
      std::size_t gap = c - next;
      while (gap > max_gap) {  // filler entry: bridges max_gap zeros plus its own (zero) column
        s.gaps.push_back(static_cast<std::uint8_t>(max_gap));
        s.values.push_back(Value{});
        ++s.fillers;
        gap -= max_gap + 1;
      }
      s.gaps.push_back(static_cast<std::uint8_t>(gap));
      s.values.push_back(get(o * w.cols + c));
      next = c + 1;
    }
    TINYLARGE_REQUIRE(s.values.size() <= 0xFFFFFFFFu, errc::too_large, "relative_csr: more than 2^32 entries");
    s.row_ptr.push_back(static_cast<std::uint32_t>(s.values.size()));
  }
  return s;
}
}  // namespace detail

/// Relative-index CSR of the non-zero entries of `w`, fp32 values.
inline relative_csr<float> to_relative_csr(matrix_ref<const float> w, unsigned gap_bits = 5) {
  return detail::build_relative_csr<float>(w, gap_bits, [&](std::size_t i) { return w.data[i]; });
}

/// Relative-index CSR of the non-zero entries of `w` with codebook values: the entry at
/// flat position i stores `labels[i]`. Fillers store index 0, so `centroids[0]` must be 0
/// when any filler is needed (the `weight_sharing` policy's `reserve_zero` guarantees it).
inline relative_csr<std::uint8_t> to_relative_csr(matrix_ref<const float> w, std::span<const std::uint8_t> labels,
                                                  std::span<const float> centroids, unsigned gap_bits = 5) {
  TINYLARGE_REQUIRE(labels.size() == w.size(), errc::shape_mismatch, "to_relative_csr: one label per weight");
  TINYLARGE_REQUIRE(!centroids.empty() && centroids.size() <= 256, errc::invalid_argument,
                    "to_relative_csr: 1 to 256 centroids");
  auto s = detail::build_relative_csr<std::uint8_t>(w, gap_bits, [&](std::size_t i) { return labels[i]; });
  TINYLARGE_REQUIRE(s.fillers == 0 || centroids[0] == 0.0f, errc::invalid_argument,
                    "to_relative_csr: filler entries need centroids[0] == 0 (use reserve_zero)");
  s.centroids.assign(centroids.begin(), centroids.end());
  for (auto l : s.values)
    TINYLARGE_REQUIRE(l < centroids.size(), errc::invalid_argument, "to_relative_csr: label out of range");
  return s;
}

/// Decodes a (validated) relative-index CSR view into a dense rows×cols matrix.
template <class Values>
void to_dense(const relative_csr_view<Values>& w, float* out) noexcept {
  for (std::size_t i = 0; i < w.rows * w.cols; ++i) out[i] = 0.0f;
  for (std::size_t o = 0; o < w.rows; ++o) {
    std::size_t col = 0;
    for (std::size_t j = w.row_ptr[o]; j < w.row_ptr[o + 1]; ++j) {
      col += w.gaps[j];
      out[o * w.cols + col] = w.values(j);
      ++col;
    }
  }
}

/// An owning bit-packed codebook matrix.
struct codebook_matrix {
  std::size_t rows = 0;
  std::size_t cols = 0;
  unsigned bits = 4;
  std::vector<std::uint8_t> packed;
  std::vector<float> centroids;

  codebook_matrix_view view() const noexcept {
    return {rows, cols, bits, packed.data(), packed.size(), centroids.data(), centroids.size()};
  }
  /// Bits of the stored form: indices plus the fp32 codebook.
  std::size_t storage_bits() const noexcept { return rows * cols * bits + centroids.size() * 32; }
};

/// Packs per-weight labels (rows×cols) and a codebook into a `codebook_matrix`.
inline codebook_matrix to_codebook_matrix(std::size_t rows, std::size_t cols, std::span<const std::uint8_t> labels,
                                          std::span<const float> centroids, unsigned bits) {
  TINYLARGE_REQUIRE(labels.size() == rows * cols, errc::shape_mismatch, "to_codebook_matrix: one label per weight");
  TINYLARGE_REQUIRE(bits >= 1 && bits <= 8 && !centroids.empty() && centroids.size() <= (std::size_t{1} << bits),
                    errc::invalid_argument, "to_codebook_matrix: need 1 <= centroids <= 2^bits, bits in [1, 8]");
  codebook_matrix m;
  m.rows = rows;
  m.cols = cols;
  m.bits = bits;
  m.packed.resize(packed_size(labels.size(), bits));
  for (auto l : labels)
    TINYLARGE_REQUIRE(l < centroids.size(), errc::invalid_argument, "to_codebook_matrix: label out of range");
  raise_if_error(pack_bits(labels.data(), labels.size(), bits, m.packed.data(), m.packed.size()));
  m.centroids.assign(centroids.begin(), centroids.end());
  return m;
}

/// The kernel view of truncated-SVD factors.
inline factored_view view(const low_rank_factors& f) noexcept {
  return {f.rows, f.cols, f.rank, f.left.data(), f.right.data()};
}

}  // namespace tinylarge::compress
