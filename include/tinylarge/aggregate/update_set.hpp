/// @file aggregate/update_set.hpp
/// @brief `update_set`: the validated client updates of one round, and the
///        streaming kernels every aggregation rule is built from.
///
/// A rule never sees a raw client result: the `aggregator` (aggregate/aggregator.hpp)
/// validates the round and hands the accepted updates to the rule as an
/// `update_set`. The kernels here read each update sequentially, in blocks,
/// decoding at most `decode_block_bytes` per client at a time:
///
///  - `weighted_sum`: out = Σ_i c_i · (x_i − r), parameters in blocks of
///    `block` elements (64 KiB of output by default, which stays in L2); for
///    each block the clients are visited four at a time and their weighted sum
///    added to that block of `out`. Each update is read exactly once, fp32
///    updates in place; on one Zen 4 core this runs at the speed of a STREAM
///    triad (benchmarks/bench_aggregate.cpp). fp16 updates are converted in
///    registers on the `arch::avx512` back end (VCVTPH2PS fused into the
///    loads), and decoded 4 KiB at a time elsewhere; int8 updates are decoded
///    4 KiB at a time.
///  - `squared_distance`, `pairwise_squared_distances`: for clipping and Krum.
///  - `gather_block`: a block of coordinates from every (selected) client,
///    transposed so that one coordinate's values are contiguous — the input of
///    the coordinate-wise rules (median, trimmed mean, Bulyan).
///
/// Host profile: scratch buffers are `std::vector`s.
#pragma once

#include <algorithm>
#include <cmath>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <type_traits>
#include <vector>

#include "../core/arch.hpp"
#include "../core/config.hpp"
#include "../core/error.hpp"
#include "../kernels/elementwise.hpp"
#include "update.hpp"

// Back end of the fused fp16 weighted sum (`arch::avx512`): chosen at compile
// time, like every back end; other builds decode into a buffer first.
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && defined(__F16C__)
#include <immintrin.h>
#define TINYLARGE_AGGREGATE_FUSED_HALF 1
#else
#define TINYLARGE_AGGREGATE_FUSED_HALF 0
#endif

#if TINYLARGE_FREESTANDING
#error "aggregate/update_set.hpp is for the host profile"
#endif

namespace tinylarge {

/// Elements of `out` accumulated per pass over the clients by `weighted_sum`
/// (64 KiB of fp32: the output block stays in L2 while every client streams
/// through it, four clients at a time; benchmarks/bench_aggregate.cpp sweeps
/// 4K…1M and 16K–64K is the plateau on Zen 4).
inline constexpr std::size_t default_sum_block = 16384;

/// The accepted client updates of one round (non-owning).
///
/// @tparam U the update encoding (`fp32_update`, `fp16_update`, `int8_update`).
template <update_encoding U>
class update_set {
 public:
  using result_type = client_result<U>;

  update_set(std::span<const result_type* const> clients, std::size_t dimension) noexcept
      : clients_(clients), dimension_(dimension) {}

  /// Number of clients.
  std::size_t size() const noexcept { return clients_.size(); }
  /// Number of parameters of every update.
  std::size_t dimension() const noexcept { return dimension_; }
  const result_type& operator[](std::size_t i) const noexcept { return *clients_[i]; }
  std::int64_t num_examples(std::size_t i) const noexcept { return clients_[i]->num_examples; }
  std::uint64_t client_id(std::size_t i) const noexcept { return clients_[i]->client_id; }

  /// Values [offset, offset + len) of client `i`, as `T`: a pointer into the
  /// update itself for fp32 updates read as float, otherwise decoded into
  /// `buf` (which must hold `len` elements).
  template <std::floating_point T>
  const T* block(std::size_t i, std::size_t offset, std::size_t len, T* buf) const noexcept {
    if constexpr (std::is_same_v<U, fp32_update> && std::is_same_v<T, float>) {
      (void)len;
      (void)buf;
      return clients_[i]->update.data() + offset;
    } else {
      clients_[i]->update.decode(offset, std::span<T>(buf, len));
      return buf;
    }
  }

  /// Elements of `T` decoded per client at a time.
  template <class T>
  static constexpr std::size_t decode_chunk = decode_block_bytes / sizeof(T);

  /// out[j] = Σ_{k} coef[k] · (x_{sel[k]}[j] − ref[j]) over the clients `sel`
  /// (all clients when `sel` is empty; `coef` then has `size()` entries). When
  /// `ref` is empty the subtraction is skipped. Reads each selected update
  /// once. Any NaN/Inf in an input makes the corresponding output non-finite
  /// (coefficients are finite), which the aggregator relies on to detect
  /// non-finite updates without a separate pass.
  template <std::floating_point T>
  void weighted_sum(std::span<const T> coef, std::span<T> out, std::span<const T> ref = {},
                    std::span<const std::size_t> sel = {}, std::size_t block_elems = default_sum_block) const {
    const std::size_t m = sel.empty() ? size() : sel.size();
    TINYLARGE_REQUIRE(coef.size() == m && out.size() == dimension_ && (ref.empty() || ref.size() == dimension_),
                      errc::shape_mismatch, "update_set::weighted_sum: sizes");
    if (m == 0) {
      std::fill(out.begin(), out.end(), T(0));
      return;
    }
    if (ref.empty()) {
      sum_impl<T, false>(coef, out.data(), nullptr, sel, block_elems);
    } else {
      sum_impl<T, true>(coef, out.data(), ref.data(), sel, block_elems);
    }
  }

  /// ‖x_i − ref‖² (‖x_i‖² when `ref` is empty): each ≤ 4 KiB chunk summed
  /// in `T`, the chunks in double.
  template <std::floating_point T = float>
  double squared_distance(std::size_t i, std::span<const T> ref = {}) const {
    TINYLARGE_REQUIRE(ref.empty() || ref.size() == dimension_, errc::shape_mismatch,
                      "update_set::squared_distance: sizes");
    constexpr std::size_t chunk = decode_chunk<T>;
    alignas(64) T buf[chunk];
    double total = 0.0;
    for (std::size_t off = 0; off < dimension_; off += chunk) {
      const std::size_t len = std::min(chunk, dimension_ - off);
      const T* x = block(i, off, len, buf);
      const T part = ref.empty() ? kernels::squared_norm(kernels::default_backend{}, len, x)
                                 : kernels::squared_distance(kernels::default_backend{}, len, x, ref.data() + off);
      total += static_cast<double>(part);
    }
    return total;
  }

  /// True when client `i` holds a NaN or ±Inf value (false without reading
  /// when the encoding cannot hold one).
  bool has_non_finite(std::size_t i) const {
    if constexpr (!U::may_be_non_finite) {
      (void)i;
      return false;
    } else {
      alignas(64) float buf[decode_chunk<float>];
      for (std::size_t off = 0; off < dimension_; off += decode_chunk<float>) {
        const std::size_t len = std::min(decode_chunk<float>, dimension_ - off);
        const float* x = block(i, off, len, buf);
        if (kernels::any_non_finite(kernels::default_backend{}, len, x)) return true;
      }
      return false;
    }
  }

  /// Squared Euclidean distances between all pairs of clients, row-major
  /// `size() × size()` into `dist` (symmetric, zero diagonal). Computed block
  /// by block: every update is decoded once per block and read once overall.
  void pairwise_squared_distances(std::span<double> dist) const {
    const std::size_t n = size();
    TINYLARGE_REQUIRE(dist.size() == n * n, errc::shape_mismatch, "pairwise_squared_distances: sizes");
    std::fill(dist.begin(), dist.end(), 0.0);
    if (n == 0) return;
    const std::size_t chunk = decode_chunk<float>;
    std::vector<float> buf(n * chunk);
    std::vector<const float*> rows(n);
    for (std::size_t off = 0; off < dimension_; off += chunk) {
      const std::size_t len = std::min(chunk, dimension_ - off);
      for (std::size_t i = 0; i < n; ++i) rows[i] = block(i, off, len, buf.data() + i * chunk);
      for (std::size_t i = 0; i < n; ++i) {
        for (std::size_t k = i + 1; k < n; ++k) {
          const float part = kernels::squared_distance(kernels::default_backend{}, len, rows[i], rows[k]);
          dist[i * n + k] += static_cast<double>(part);
        }
      }
    }
    for (std::size_t i = 0; i < n; ++i)
      for (std::size_t k = i + 1; k < n; ++k) dist[k * n + i] = dist[i * n + k];
  }

  /// Coordinates [offset, offset + len) of the clients `sel` (all when empty),
  /// transposed: `out[j * m + k]` is coordinate offset + j of client sel[k],
  /// m = number of selected clients. `len ≤ decode_chunk<T>`; `tmp` holds
  /// `decode_chunk<T>` elements.
  template <std::floating_point T>
  void gather_block(std::size_t offset, std::size_t len, std::span<const std::size_t> sel, T* out, T* tmp) const {
    const std::size_t m = sel.empty() ? size() : sel.size();
    for (std::size_t k = 0; k < m; ++k) {
      const T* x = block(sel.empty() ? k : sel[k], offset, len, tmp);
      for (std::size_t j = 0; j < len; ++j) out[j * m + k] = x[j];
    }
  }

 private:
  /// Clients combined per sweep over an output block: more concurrent input
  /// streams (memory-level parallelism) and a quarter of the accumulator
  /// traffic of one-client-at-a-time.
  static constexpr std::size_t sum_group = 4;

  /// a[j] (=|+=) Σ_g c[g] · (x_g[j] − r[j]) for G clients (`kernels::weighted_accumulate`).
  template <std::size_t G, bool First, bool WithRef, class T>
  static void accumulate(T* TINYLARGE_RESTRICT a, const T* const* x, const T* c, const T* TINYLARGE_RESTRICT r,
                         std::size_t n) noexcept {
    kernels::weighted_accumulate<G, First, WithRef>(kernels::default_backend{}, n, x, c, r, a);
  }

#if TINYLARGE_AGGREGATE_FUSED_HALF
  /// arch::avx512 back end for fp16 updates: a[j] (=|+=) Σ_g c_g (x_g[j] − r[j])
  /// with the binary16 → fp32 conversion (VCVTPH2PS, exact) fused into the
  /// loads, so the G input streams are read concurrently, as for fp32.
  template <std::size_t G, bool First, bool WithRef>
  static void accumulate_half(float* a, const half* const* x, const float* c, const float* r, std::size_t n) noexcept {
    __m512 cv[G];
    for (std::size_t g = 0; g < G; ++g) cv[g] = _mm512_set1_ps(c[g]);
    auto step = [&](std::size_t j, __mmask16 m) {
      __m512 rv = _mm512_setzero_ps();
      if constexpr (WithRef) rv = _mm512_maskz_loadu_ps(m, r + j);
      __m512 t = _mm512_setzero_ps();
      for (std::size_t g = 0; g < G; ++g) {
        __m512 v = _mm512_maskz_cvtph_ps(m, _mm256_maskz_loadu_epi16(m, x[g] + j));  // maskz: no GCC 12 PR 105593 warning
        if constexpr (WithRef) v = _mm512_sub_ps(v, rv);
        t = g == 0 ? _mm512_mul_ps(cv[0], v) : _mm512_fmadd_ps(cv[g], v, t);
      }
      if constexpr (!First) t = _mm512_add_ps(_mm512_maskz_loadu_ps(m, a + j), t);
      _mm512_mask_storeu_ps(a + j, m, t);
    };
    std::size_t j = 0;
    for (; j + 16 <= n; j += 16) step(j, static_cast<__mmask16>(0xFFFF));
    if (j < n) step(j, static_cast<__mmask16>((1u << (n - j)) - 1u));
  }

  template <bool WithRef>
  void sum_half(std::span<const float> coef, float* out, const float* ref, std::span<const std::size_t> sel,
                std::size_t blk) const noexcept {
    constexpr std::size_t G = sum_group;
    const std::size_t m = sel.empty() ? size() : sel.size();
    for (std::size_t off = 0; off < dimension_; off += blk) {
      const std::size_t len = std::min(blk, dimension_ - off);
      const float* r = WithRef ? ref + off : nullptr;
      for (std::size_t k = 0; k < m; k += G) {
        const std::size_t g = std::min(G, m - k);
        const half* x[G] = {};
        for (std::size_t q = 0; q < g; ++q) x[q] = clients_[sel.empty() ? k + q : sel[k + q]]->update.values.data() + off;
        if (g == G) {
          if (k == 0) {
            accumulate_half<G, true, WithRef>(out + off, x, coef.data() + k, r, len);
          } else {
            accumulate_half<G, false, WithRef>(out + off, x, coef.data() + k, r, len);
          }
        } else {
          for (std::size_t q = 0; q < g; ++q) {
            if (k == 0 && q == 0) {
              accumulate_half<1, true, WithRef>(out + off, x + q, coef.data() + k + q, r, len);
            } else {
              accumulate_half<1, false, WithRef>(out + off, x + q, coef.data() + k + q, r, len);
            }
          }
        }
      }
    }
  }
#endif

  template <std::floating_point T, bool WithRef>
  void sum_impl(std::span<const T> coef, T* TINYLARGE_RESTRICT out, const T* TINYLARGE_RESTRICT ref,
                std::span<const std::size_t> sel, std::size_t block_elems) const {
#if TINYLARGE_AGGREGATE_FUSED_HALF
    if constexpr (std::is_same_v<U, fp16_update> && std::is_same_v<T, float>) {
      sum_half<WithRef>(coef, out, ref, sel, std::max<std::size_t>(block_elems, 1));
      return;
    }
#endif
    constexpr bool direct = std::is_same_v<U, fp32_update> && std::is_same_v<T, float>;
    constexpr std::size_t G = sum_group;
    constexpr std::size_t chunk = decode_chunk<T>;
    const std::size_t m = sel.empty() ? size() : sel.size();
    // Decode buffers: one ≤ 4 KiB chunk per client of a group (unused for fp32).
    alignas(64) T buf[direct ? 1 : G * chunk];
    const std::size_t blk = std::max<std::size_t>(block_elems, 1);
    for (std::size_t off = 0; off < dimension_; off += blk) {
      const std::size_t len = std::min(blk, dimension_ - off);
      T* acc = out + off;
      for (std::size_t k = 0; k < m; k += G) {
        const std::size_t g = std::min(G, m - k);
        // fp32: one sweep over the whole block; encoded: 4 KiB decodes.
        const std::size_t step = direct ? len : chunk;
        for (std::size_t s = 0; s < len; s += step) {
          const std::size_t sl = std::min(step, len - s);
          const T* x[G] = {};
          for (std::size_t q = 0; q < g; ++q) {
            const std::size_t i = sel.empty() ? k + q : sel[k + q];
            x[q] = block(i, off + s, sl, direct ? buf : buf + q * chunk);
          }
          const T* r = WithRef ? ref + off + s : nullptr;
          T* a = acc + s;
          if (g == G) {
            if (k == 0) {
              accumulate<G, true, WithRef>(a, x, coef.data() + k, r, sl);
            } else {
              accumulate<G, false, WithRef>(a, x, coef.data() + k, r, sl);
            }
          } else {
            for (std::size_t q = 0; q < g; ++q) {
              if (k == 0 && q == 0) {
                accumulate<1, true, WithRef>(a, x + q, coef.data() + k + q, r, sl);
              } else {
                accumulate<1, false, WithRef>(a, x + q, coef.data() + k + q, r, sl);
              }
            }
          }
        }
      }
    }
  }

  std::span<const result_type* const> clients_;
  std::size_t dimension_ = 0;
};

}  // namespace tinylarge
