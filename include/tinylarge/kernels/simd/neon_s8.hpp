/// @file kernels/simd/neon_s8.hpp
/// @brief int8 dense kernels for ARM Linux hosts: the back ends `arch::neon`
///        (ARMv7-A NEON and AArch64 Advanced SIMD) and `arch::neon_dotprod`
///        (ARMv8.2-A dot-product extension, SDOT). Internal: include
///        `kernels/dense.hpp`. (The fp32 kernels of these back ends are the
///        generic xsimd ones, `simd/f32.hpp`.)
///
/// **int8** (`dense_s8`, `dense_s8_s32`): products of int8 by int8, summed in
/// int32 lanes, then the input zero point is removed per output row with the
/// row sums of W,
///
///     Σ_q (x − zx)·w = Σ_q x·w − zx·Σ_q w,
///
/// because x − zx (up to 255 in magnitude) no longer fits in int8. The row
/// sums are taken from `dense_s8_params::weight_row_sums` when given; otherwise
/// the batch-1 GEMV accumulates them in the same pass over W, and the GEMM
/// (m ≥ 2) computes them once per call. The dot product of 16 bytes is
///
///  - `arch::neon`: `vmull_s8` (8 exact int16 products; |x·w| ≤ 2¹⁴ fits
///    int16) and `vpadalq_s16` (add adjacent pairs into the int32 lanes). Two
///    products are never summed in int16: (−128)·(−128) + (−128)·(−128) =
///    32768 would overflow, so `vmlal_s8` is not used;
///  - `arch::neon_dotprod`: one `vdotq_s32` (SDOT: four int8 products per int32
///    lane, exact). Needs `__ARM_FEATURE_DOTPROD` (`-march=armv8.2-a+dotprod`
///    or a CPU that has it, e.g. `-mcpu=cortex-a76`).
///
/// Each int32 lane then holds a sum of at most k/4 products (≤ 2¹⁴·k/4 ≤ 2²⁸
/// for k ≤ `dense_s8_max_k`), so nothing wraps inside the loop; the final
/// bias + Σx·w − zx·Σw is formed modulo 2³², which is exact whenever the true
/// value fits in int32 — the precondition of the scalar kernel. Register
/// tiles: MR rows of X × NR rows of W (AArch64: 2×4 for `vmull_s8`, whose
/// int16 products need registers too — 4×4 made GCC 12 spill — and 4×4 for
/// SDOT; ARMv7: 2×2), loaded straight from the row-major operands (no
/// packing: both are contiguous in k); k tails are zero-padded in a 16-byte
/// local copy. The epilogue is
/// `requantize_s8`, so `dense_s8` is bit-identical to `arch::scalar`.
///
/// Intrinsics rather than xsimd: xsimd 8.1 has no widening int8 products and
/// no SDOT. The blocking parameters were chosen from register counts and QEMU
/// guest-instruction counts (scripts/arm_kernel_count.sh), not tuned on
/// hardware: this back end has only run under qemu-user so far.
///
/// Scratch: per-thread reused buffers (`simd/scratch.hpp`); a failed
/// allocation terminates (the functions are noexcept).
#pragma once
#if !defined(TINYLARGE_KERNELS_DENSE_SCALAR_DECLARED)
#error "internal header: include <tinylarge/kernels/dense.hpp> instead"
#endif

#if defined(__ARM_NEON) || defined(__ARM_NEON__)

#include <arm_neon.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <utility>

#include "scratch.hpp"

namespace tinylarge::kernels::detail {

/// Calls f(std::integral_constant<std::size_t, I>{}) for I = 0 … N−1, so that
/// the loop body sees a compile-time index (fully unrolled).
template <std::size_t N, class F>
TINYLARGE_ALWAYS_INLINE void neon_unroll(F&& f) noexcept {
  [&]<std::size_t... I>(std::index_sequence<I...>) {
    (f(std::integral_constant<std::size_t, I>{}), ...);
  }(std::make_index_sequence<N>{});
}

// ---------------------------------------------------------------------------
// int8
// ---------------------------------------------------------------------------

/// Σ of 16 int8 products added into the four int32 lanes: `vmull_s8` (exact
/// int16 products) + `vpadalq_s16` (pairs into int32). Tile: MR rows of X ×
/// NR rows of W, MR·NR int32x4 accumulators plus two int16x8 products in
/// flight per step.
struct s8_dot_mull {
#if defined(__aarch64__)
  static constexpr std::size_t mr = 2, nr = 4;  ///< 4×4 spills under GCC 12 (measured: 0.50 vs 0.45 insns/MAC)
#else
  static constexpr std::size_t mr = 2, nr = 2;  ///< 16 q registers
#endif
  static TINYLARGE_ALWAYS_INLINE int32x4_t step(int32x4_t acc, int8x16_t a, int8x16_t b) noexcept {
#if defined(__aarch64__)
    const int16x8_t hi = vmull_high_s8(a, b);
#else
    const int16x8_t hi = vmull_s8(vget_high_s8(a), vget_high_s8(b));
#endif
    const int16x8_t lo = vmull_s8(vget_low_s8(a), vget_low_s8(b));
    return vpadalq_s16(vpadalq_s16(acc, lo), hi);
  }
};

#if defined(__ARM_FEATURE_DOTPROD)
/// The same with one SDOT (four int8 products per int32 lane).
struct s8_dot_sdot {
  static constexpr std::size_t mr = 4, nr = 4;  ///< 16 accumulators + 8 operands of 32 registers
  static TINYLARGE_ALWAYS_INLINE int32x4_t step(int32x4_t acc, int8x16_t a, int8x16_t b) noexcept {
    return vdotq_s32(acc, a, b);
  }
};
#endif

/// Σ of the four int32 lanes modulo 2³² (the lane sums are far from wrapping
/// within `dense_s8_max_k`, see the file comment).
TINYLARGE_ALWAYS_INLINE std::int32_t neon_hsum_s32(int32x4_t v) noexcept {
#if defined(__aarch64__)
  return vaddvq_s32(v);
#else
  int32x2_t s = vadd_s32(vget_low_s32(v), vget_high_s32(v));
  s = vpadd_s32(s, s);
  return vget_lane_s32(s, 0);
#endif
}

/// Σ_q w[q] of 16 bytes added into the four int32 lanes.
TINYLARGE_ALWAYS_INLINE int32x4_t neon_sum16_s8(int32x4_t acc, int8x16_t w) noexcept {
  return vpadalq_s16(acc, vpaddlq_s8(w));
}

/// a + b, a − b, a·b modulo 2³² (no signed-overflow UB).
TINYLARGE_ALWAYS_INLINE std::int32_t neon_wrap(std::uint32_t v) noexcept { return static_cast<std::int32_t>(v); }
TINYLARGE_ALWAYS_INLINE std::uint32_t neon_u(std::int32_t v) noexcept { return static_cast<std::uint32_t>(v); }

/// One register tile: dots[r·C + c] = Σ_q x[r][q]·w[c][q] for R rows of X and
/// C rows of W (both with row stride k), and with `WithSums` also
/// wsums[c] = Σ_q w[c][q]. All sums modulo 2³².
template <class Dot, bool WithSums, std::size_t R, std::size_t C>
TINYLARGE_NOINLINE void s8_neon_tile(std::size_t k, const std::int8_t* x, const std::int8_t* w, std::int32_t* dots,
                                     std::int32_t* wsums) noexcept {
  int32x4_t acc[R][C], sw[C];
  neon_unroll<C>([&](auto c) {
    sw[c] = vdupq_n_s32(0);
    neon_unroll<R>([&](auto r) { acc[r][c] = vdupq_n_s32(0); });
  });
  auto step = [&](const int8x16_t (&xv)[R], const int8x16_t (&wv)[C]) {
    neon_unroll<C>([&](auto c) {
      if constexpr (WithSums) sw[c] = neon_sum16_s8(sw[c], wv[c]);
      neon_unroll<R>([&](auto r) { acc[r][c] = Dot::step(acc[r][c], xv[r], wv[c]); });
    });
  };
  const std::size_t kfull = k / 16 * 16;
  for (std::size_t q = 0; q < kfull; q += 16) {
    int8x16_t xv[R], wv[C];
    neon_unroll<R>([&](auto r) { xv[r] = vld1q_s8(x + r * k + q); });
    neon_unroll<C>([&](auto c) { wv[c] = vld1q_s8(w + c * k + q); });
    step(xv, wv);
  }
  if (const std::size_t tail = k - kfull; tail != 0) {  // zero-padded copies: zeros add nothing
    int8x16_t xv[R], wv[C];
    neon_unroll<R>([&](auto r) {
      std::int8_t buf[16] = {};
      std::memcpy(buf, x + r * k + kfull, tail);
      xv[r] = vld1q_s8(buf);
    });
    neon_unroll<C>([&](auto c) {
      std::int8_t buf[16] = {};
      std::memcpy(buf, w + c * k + kfull, tail);
      wv[c] = vld1q_s8(buf);
    });
    step(xv, wv);
  }
  neon_unroll<C>([&](auto c) {
    if constexpr (WithSums) wsums[c] = neon_hsum_s32(sw[c]);
    neon_unroll<R>([&](auto r) { dots[r * C + c] = neon_hsum_s32(acc[r][c]); });
  });
}

using s8_neon_tile_fn = void (*)(std::size_t, const std::int8_t*, const std::int8_t*, std::int32_t*,
                                 std::int32_t*) noexcept;

/// Tiles for R = 1 … MR and C = 1 … NR, indexed by (R − 1)·NR + (C − 1).
template <class Dot, bool WithSums, std::size_t NR, std::size_t... I>
constexpr auto make_s8_neon_tile_table(std::index_sequence<I...>) noexcept {
  struct table {
    s8_neon_tile_fn fn[sizeof...(I)];
  };
  return table{{&s8_neon_tile<Dot, WithSums, I / NR + 1, I % NR + 1>...}};
}

/// Row sums Σ_q w[o][q] for o < n (exact: |Σ| ≤ 128·k).
inline void s8_neon_row_sums(std::size_t n, std::size_t k, const std::int8_t* w, std::int32_t* sums) noexcept {
  const std::size_t kfull = k / 16 * 16;
  for (std::size_t o = 0; o < n; ++o) {
    const std::int8_t* wr = w + o * k;
    int32x4_t acc = vdupq_n_s32(0);
    for (std::size_t q = 0; q < kfull; q += 16) acc = neon_sum16_s8(acc, vld1q_s8(wr + q));
    std::int32_t s = neon_hsum_s32(acc);
    for (std::size_t q = kfull; q < k; ++q) s += wr[q];
    sums[o] = s;
  }
}

/// int8 driver: store(i, o, bias[o] + Σ_q (x[i][q] − zx)·w[o][q]) for every
/// output, computed as bias + Σx·w − zx·Σw modulo 2³² (exact, see above).
template <class Dot, class Store>
void s8_dense_neon(std::size_t m, std::size_t n, std::size_t k, const std::int8_t* x, const std::int8_t* w,
                   const dense_s8_params& p, Store&& store) noexcept {
  constexpr std::size_t MR = Dot::mr, NR = Dot::nr;
  if (m == 0 || n == 0) return;
  const std::uint32_t zx = neon_u(p.input_zero_point);
  std::int32_t dots[MR * NR], wsums[NR];

  if (m == 1) {  // GEMV: row sums from the caller, or accumulated in the same pass over W
    static constexpr auto plain = make_s8_neon_tile_table<Dot, false, NR>(std::make_index_sequence<NR>{});
    static constexpr auto summing = make_s8_neon_tile_table<Dot, true, NR>(std::make_index_sequence<NR>{});
    const bool have_sums = p.weight_row_sums != nullptr;
    for (std::size_t o = 0; o < n; o += NR) {
      const std::size_t cols = std::min(NR, n - o);
      (have_sums ? plain.fn[cols - 1] : summing.fn[cols - 1])(k, x, w + o * k, dots, wsums);
      for (std::size_t c = 0; c < cols; ++c) {
        const std::uint32_t b = p.bias ? neon_u(p.bias[o + c]) : 0u;
        const std::uint32_t s = neon_u(have_sums ? p.weight_row_sums[o + c] : wsums[c]);
        store(std::size_t{0}, o + c, neon_wrap(b + neon_u(dots[c]) - zx * s));
      }
    }
    return;
  }

  // GEMM: corr[o] = bias[o] − zx·Σ_q w[o][q] once, then register tiles.
  static constexpr auto tiles = make_s8_neon_tile_table<Dot, false, NR>(std::make_index_sequence<MR * NR>{});
  auto* corr = thread_scratch<scratch_slot::column>().get<std::int32_t>(n);
  if (p.weight_row_sums != nullptr) {
    std::memcpy(corr, p.weight_row_sums, n * sizeof(std::int32_t));
  } else {
    s8_neon_row_sums(n, k, w, corr);
  }
  for (std::size_t o = 0; o < n; ++o) {
    const std::uint32_t b = p.bias ? neon_u(p.bias[o]) : 0u;
    corr[o] = neon_wrap(b - zx * neon_u(corr[o]));
  }
  for (std::size_t i = 0; i < m; i += MR) {
    const std::size_t rows = std::min(MR, m - i);
    for (std::size_t o = 0; o < n; o += NR) {
      const std::size_t cols = std::min(NR, n - o);
      tiles.fn[(rows - 1) * NR + cols - 1](k, x + i * k, w + o * k, dots, wsums);
      for (std::size_t r = 0; r < rows; ++r)
        for (std::size_t c = 0; c < cols; ++c)
          store(i + r, o + c, neon_wrap(neon_u(corr[o + c]) + neon_u(dots[r * cols + c])));
    }
  }
}

}  // namespace tinylarge::kernels::detail

namespace tinylarge::kernels {

/// int32 accumulators bias[o] + Σ_q (x[i][q] − zx)·w[o][q], NEON back end
/// (`vmull_s8` + `vpadalq_s16`; exact, see `dense_s8_max_k`).
inline void dense_s8_s32(arch::neon, std::size_t m, std::size_t n, std::size_t k, const std::int8_t* x,
                         const std::int8_t* w, const dense_s8_params& p, std::int32_t* acc) noexcept {
  detail::s8_dense_neon<detail::s8_dot_mull>(
      m, n, k, x, w, p, [&](std::size_t i, std::size_t o, std::int32_t v) { acc[i * n + o] = v; });
}

/// int8 dense with fused requantize and clamp, NEON back end; bit-exact with
/// the scalar back end.
inline void dense_s8(arch::neon, std::size_t m, std::size_t n, std::size_t k, const std::int8_t* x,
                     const std::int8_t* w, const dense_s8_params& p, std::int8_t* y) noexcept {
  detail::s8_dense_neon<detail::s8_dot_mull>(
      m, n, k, x, w, p, [&](std::size_t i, std::size_t o, std::int32_t v) { y[i * n + o] = requantize_s8(v, o, p); });
}

#if defined(__ARM_FEATURE_DOTPROD)
/// int32 accumulators, NEON dot-product back end (SDOT; exact).
inline void dense_s8_s32(arch::neon_dotprod, std::size_t m, std::size_t n, std::size_t k, const std::int8_t* x,
                         const std::int8_t* w, const dense_s8_params& p, std::int32_t* acc) noexcept {
  detail::s8_dense_neon<detail::s8_dot_sdot>(
      m, n, k, x, w, p, [&](std::size_t i, std::size_t o, std::int32_t v) { acc[i * n + o] = v; });
}

/// int8 dense with fused requantize and clamp, NEON dot-product back end
/// (SDOT); bit-exact with the scalar back end.
inline void dense_s8(arch::neon_dotprod, std::size_t m, std::size_t n, std::size_t k, const std::int8_t* x,
                     const std::int8_t* w, const dense_s8_params& p, std::int8_t* y) noexcept {
  detail::s8_dense_neon<detail::s8_dot_sdot>(
      m, n, k, x, w, p, [&](std::size_t i, std::size_t o, std::int32_t v) { y[i * n + o] = requantize_s8(v, o, p); });
}
#endif  // __ARM_FEATURE_DOTPROD

}  // namespace tinylarge::kernels

#endif  // __ARM_NEON
