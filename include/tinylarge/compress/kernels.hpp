/// @file compress/kernels.hpp
/// @brief Inference on compressed weights without expanding them to dense fp32:
///        sparse (CSR with relative column indices), codebook lookup, and factored (two
///        products). All compute Y = X·Wᵀ + b for a batch of m ≥ 1 rows, row-major, as
///        `kernels::dense_f32` does.
///
/// Freestanding-safe: views over caller-owned (e.g. flash) arrays, no heap, no exceptions.
/// Every kernel takes the back end tag first (`arch::scalar{}`); the scalar versions are the
/// bit-exact references, `sparse_dense_f32` has a reassociated host version for `arch::avx2`
/// and its descendants, and any other tag (cortex_m_dsp, neon) resolves to scalar. A view that comes from untrusted bytes must
/// pass `validate(view, stored_entries)` once; the kernels then trust it and never read
/// out of bounds.
///
/// ## Relative-index CSR (Deep Compression §2, Fig. 2)
/// Row o holds entries row_ptr[o] ≤ j < row_ptr[o+1]. Each entry has a *gap*: the number
/// of zero columns skipped before it, so the column is
///     col_j = col_{j−1} + 1 + gap_j   (col_{−1} = −1 at the start of each row).
/// A gap is stored in `gap_bits` bits (1–8; Deep Compression used 5 bits for fc layers and 8
/// for conv layers, EIE 4 bits); a longer run of zeros is bridged by *filler* entries with
/// gap = 2^gap_bits − 1 and value 0. Gaps are kept one per byte in memory (bit-pack them
/// with compress/bitpack.hpp or Huffman-code them for storage). Values are either fp32
/// (`csr_f32_values`) or codebook indices (`csr_codebook_values`, Deep Compression's final
/// form), where index 0 must decode to 0 when fillers are present.
///
/// Bit-exactness: the sparse and codebook kernels sum the products of one output in
/// increasing column order, as the scalar dense kernel does; the zero products the dense
/// kernel adds do not change a float sum, so for finite inputs the results are *equal* to
/// `kernels::dense_f32(arch::scalar{}, …)` on the decoded matrix. The factored kernel
/// differs from the dense product of the reconstructed matrix by rounding only.
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>

#include "../core/arch.hpp"
#include "../core/config.hpp"
#include "../core/error.hpp"
#include "../kernels/dense.hpp"
#include "bitpack.hpp"

namespace tinylarge::compress {

// ---------------------------------------------------------------------------
// Views
// ---------------------------------------------------------------------------

/// fp32 values of a relative-index CSR matrix (one per entry).
struct csr_f32_values {
  const float* values = nullptr;
  TINYLARGE_ALWAYS_INLINE float operator()(std::size_t j) const noexcept { return values[j]; }
};

/// Codebook-index values of a relative-index CSR matrix (one byte index per entry).
struct csr_codebook_values {
  const std::uint8_t* indices = nullptr;
  const float* centroids = nullptr;
  std::size_t codebook_size = 0;
  TINYLARGE_ALWAYS_INLINE float operator()(std::size_t j) const noexcept { return centroids[indices[j]]; }
};

/// int8 values of a relative-index CSR matrix (pruned int8 weights, one per entry; the
/// int8 kernels are in kernels/sparse_s8.hpp, this view is what the model-file reader
/// validates and hands out for `weight_format::int8_csr`).
struct csr_s8_values {
  const std::int8_t* values = nullptr;
  TINYLARGE_ALWAYS_INLINE float operator()(std::size_t j) const noexcept { return static_cast<float>(values[j]); }
};

/// A rows×cols matrix in relative-index CSR form (see the file comment).
/// @tparam Values `csr_f32_values`, `csr_codebook_values` or `csr_s8_values`
template <class Values>
struct relative_csr_view {
  std::size_t rows = 0;
  std::size_t cols = 0;
  unsigned gap_bits = 5;                  ///< width of a stored gap, 1..8
  const std::uint32_t* row_ptr = nullptr;  ///< rows + 1 offsets, row_ptr[0] = 0
  const std::uint8_t* gaps = nullptr;      ///< one per entry
  Values values{};
  std::size_t entries() const noexcept { return rows == 0 ? 0 : row_ptr[rows]; }
};

/// A rows×cols matrix of bit-packed codebook indices (row-major, compress/bitpack.hpp layout).
struct codebook_matrix_view {
  std::size_t rows = 0;
  std::size_t cols = 0;
  unsigned bits = 4;                      ///< index width, 1..8
  const std::uint8_t* packed = nullptr;   ///< packed_size(rows·cols, bits) bytes
  std::size_t packed_bytes = 0;
  const float* centroids = nullptr;
  std::size_t codebook_size = 0;          ///< ≤ 2^bits
};

/// W ≈ left·right with left m×r (U·Σ) and right r×n (Vᵀ), row-major.
struct factored_view {
  std::size_t rows = 0;  ///< m
  std::size_t cols = 0;  ///< n
  std::size_t rank = 0;  ///< r
  const float* left = nullptr;
  const float* right = nullptr;
};

// ---------------------------------------------------------------------------
// Validation (run once on views built from untrusted bytes)
// ---------------------------------------------------------------------------

/// Checks a relative-index CSR view: row offsets start at 0, never decrease and end
/// at most at `stored_entries` (the number of gaps/values the arrays really hold); every
/// gap fits in `gap_bits`, every column stays below `cols`, codebook indices are in range.
/// All row offsets are checked before any entry is read, so a view built from untrusted
/// bytes is never walked past the end of its arrays.
template <class Values>
[[nodiscard]] status validate(const relative_csr_view<Values>& w, std::size_t stored_entries) noexcept {
  TINYLARGE_CHECK(w.gap_bits >= 1 && w.gap_bits <= 8, errc::corrupt, "sparse: gap bits must be in [1, 8]");
  TINYLARGE_CHECK(w.row_ptr != nullptr, errc::invalid_argument, "sparse: no row offsets");
  TINYLARGE_CHECK(w.row_ptr[0] == 0, errc::corrupt, "sparse: first row offset must be 0");
  for (std::size_t o = 0; o < w.rows; ++o)
    TINYLARGE_CHECK(w.row_ptr[o + 1] >= w.row_ptr[o], errc::corrupt, "sparse: row offsets decrease");
  TINYLARGE_CHECK(w.entries() <= stored_entries, errc::corrupt,
                  "sparse: row offsets point past the stored entries");
  const unsigned max_gap = (1u << w.gap_bits) - 1u;
  for (std::size_t o = 0; o < w.rows; ++o) {
    std::size_t next = 0;  // col + 1 of the previous entry
    for (std::size_t j = w.row_ptr[o]; j < w.row_ptr[o + 1]; ++j) {
      TINYLARGE_CHECK(w.gaps[j] <= max_gap, errc::corrupt, "sparse: a gap does not fit in gap_bits");
      next += std::size_t{w.gaps[j]} + 1;
      TINYLARGE_CHECK(next <= w.cols, errc::corrupt, "sparse: a column index is out of range");
      if constexpr (requires { w.values.indices; }) {
        TINYLARGE_CHECK(w.values.indices[j] < w.values.codebook_size, errc::corrupt,
                        "sparse: a codebook index is out of range");
      }
    }
  }
  return status::success();
}

/// As above, for a view whose arrays are known to hold `w.entries()` entries
/// (built by this library, not parsed from untrusted bytes).
template <class Values>
[[nodiscard]] status validate(const relative_csr_view<Values>& w) noexcept {
  TINYLARGE_CHECK(w.row_ptr != nullptr, errc::invalid_argument, "sparse: no row offsets");
  return validate(w, w.rows == 0 ? 0 : w.row_ptr[w.rows]);
}

/// Checks a codebook view: sizes agree and every index is below `codebook_size`.
[[nodiscard]] inline status validate(const codebook_matrix_view& w) noexcept {
  TINYLARGE_CHECK(w.bits >= 1 && w.bits <= 8, errc::corrupt, "codebook: bits must be in [1, 8]");
  TINYLARGE_CHECK(w.codebook_size >= 1 && w.codebook_size <= (std::size_t{1} << w.bits), errc::corrupt,
                  "codebook: size must be in [1, 2^bits]");
  TINYLARGE_CHECK(w.packed_bytes >= packed_size(w.rows * w.cols, w.bits), errc::truncated,
                  "codebook: packed indices are truncated");
  for (std::size_t i = 0; i < w.rows * w.cols; ++i)
    TINYLARGE_CHECK(packed_get(w.packed, i, w.bits) < w.codebook_size, errc::corrupt,
                    "codebook: an index is out of range");
  return status::success();
}

// ---------------------------------------------------------------------------
// Kernels (scalar back end)
// ---------------------------------------------------------------------------

/// Y (m×rows) = X (m×cols)·Wᵀ + bias, W in relative-index CSR form (bias may be null).
template <class Values>
void sparse_dense_f32(arch::scalar, std::size_t m, const relative_csr_view<Values>& w, const float* x,
                      const float* bias, float* y) noexcept {
  for (std::size_t i = 0; i < m; ++i) {
    const float* xr = x + i * w.cols;
    float* yr = y + i * w.rows;
    for (std::size_t o = 0; o < w.rows; ++o) {
      float acc = 0.0f;
      std::size_t col = 0;  // column of the next entry before adding its gap
      const std::size_t end = w.row_ptr[o + 1];
      for (std::size_t j = w.row_ptr[o]; j < end; ++j) {
        col += w.gaps[j];
        acc += xr[col] * w.values(j);
        ++col;
      }
      yr[o] = acc + (bias ? bias[o] : 0.0f);
    }
  }
}

/// Host back ends (`arch::avx2` and the tags derived from it): the same loop with four
/// independent accumulators, which breaks the serial chain of fp32 additions (about 2× at
/// batch 1). The sum is reassociated, so results differ from the scalar reference by
/// rounding only (the numerical contract of the SIMD dense kernels, kernels/dense.hpp);
/// the column indices are irregular, so there is nothing to vectorize profitably.
template <class Values>
void sparse_dense_f32(arch::avx2, std::size_t m, const relative_csr_view<Values>& w, const float* x,
                      const float* bias, float* y) noexcept {
  for (std::size_t i = 0; i < m; ++i) {
    const float* xr = x + i * w.cols;
    float* yr = y + i * w.rows;
    for (std::size_t o = 0; o < w.rows; ++o) {
      float a0 = 0.0f, a1 = 0.0f, a2 = 0.0f, a3 = 0.0f;
      std::size_t j = w.row_ptr[o];
      const std::size_t end = w.row_ptr[o + 1];
      std::size_t col = 0;
      for (; j + 4 <= end; j += 4) {
        const std::size_t c0 = col + w.gaps[j];
        const std::size_t c1 = c0 + 1 + w.gaps[j + 1];
        const std::size_t c2 = c1 + 1 + w.gaps[j + 2];
        const std::size_t c3 = c2 + 1 + w.gaps[j + 3];
        a0 += xr[c0] * w.values(j);
        a1 += xr[c1] * w.values(j + 1);
        a2 += xr[c2] * w.values(j + 2);
        a3 += xr[c3] * w.values(j + 3);
        col = c3 + 1;
      }
      for (; j < end; ++j) {
        col += w.gaps[j];
        a0 += xr[col] * w.values(j);
        ++col;
      }
      yr[o] = ((a0 + a1) + (a2 + a3)) + (bias ? bias[o] : 0.0f);
    }
  }
}

/// `sparse_dense_f32(kernels::default_backend{}, …)`.
template <class Values>
void sparse_dense_f32(std::size_t m, const relative_csr_view<Values>& w, const float* x, const float* bias,
                      float* y) noexcept {
  sparse_dense_f32(kernels::default_backend{}, m, w, x, bias, y);
}

/// Y (m×rows) = X (m×cols)·Wᵀ + bias, W given by bit-packed codebook indices.
inline void codebook_dense_f32(arch::scalar, std::size_t m, const codebook_matrix_view& w, const float* x,
                               const float* bias, float* y) noexcept {
  const unsigned bits = w.bits;
  const std::uint32_t mask = (1u << bits) - 1u;
  for (std::size_t i = 0; i < m; ++i) {
    const float* xr = x + i * w.cols;
    float* yr = y + i * w.rows;
    for (std::size_t o = 0; o < w.rows; ++o) {
      if (w.cols == 0) {
        yr[o] = bias ? bias[o] : 0.0f;
        continue;
      }
      // Streaming LSB-first bit reader from bit o·cols·bits.
      const std::size_t bitpos = o * w.cols * bits;
      const std::uint8_t* p = w.packed + (bitpos >> 3);
      std::uint32_t acc = static_cast<std::uint32_t>(*p++) >> (bitpos & 7u);
      unsigned nacc = 8u - static_cast<unsigned>(bitpos & 7u);
      float sum = 0.0f;
      for (std::size_t c = 0; c < w.cols; ++c) {
        if (nacc < bits) {
          acc |= static_cast<std::uint32_t>(*p++) << nacc;
          nacc += 8;
        }
        sum += xr[c] * w.centroids[acc & mask];
        acc >>= bits;
        nacc -= bits;
      }
      yr[o] = sum + (bias ? bias[o] : 0.0f);
    }
  }
}

/// Y (m×rows) = (X·rightᵀ)·leftᵀ + bias: the factored layer as two dense products
/// (r·(rows + cols) MACs per sample). `scratch` holds m×rank floats.
template <class Backend>
  requires std::derived_from<Backend, arch::scalar>
void factored_dense_f32(Backend tag, std::size_t m, const factored_view& w, const float* x, const float* bias,
                        float* scratch, float* y) noexcept {
  kernels::dense_f32(tag, m, w.rank, w.cols, x, w.right, nullptr, scratch);
  kernels::dense_f32(tag, m, w.rows, w.rank, scratch, w.left, bias, y);
}

}  // namespace tinylarge::compress
