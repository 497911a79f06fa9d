/// @file kernels/simd/neon.hpp
/// @brief Dense kernels for ARM Linux hosts: the back ends `arch::neon`
///        (ARMv7-A NEON and AArch64 Advanced SIMD) and `arch::neon_dotprod`
///        (ARMv8.2-A dot-product extension, SDOT). Internal: include
///        `kernels/dense.hpp`.
///
/// Compiled only when `__ARM_NEON` is defined (AArch64 always; 32-bit ARM with
/// `-mfpu=neon`); everywhere else the tags fall back to the scalar kernels.
///
/// **fp32 GEMM** (`gemm_f32`, every transpose case) is the packed, blocked
/// GEMM of Goto & van de Geijn (ACM TOMS 2008) with the structure of the x86
/// back end (`simd/x86_f32.hpp`): op(A) is packed into MR-row panels, op(B)
/// into NR-column panels (4×4 NEON transposes for a transposed B), and an
/// MR×NR register tile is updated by broadcast-multiply-accumulate per k step:
///
///   | target  | registers | tile MR×NR | accumulators | multiply-add            |
///   |---------|-----------|------------|--------------|-------------------------|
///   | AArch64 | 32 × q    | 8×8        | 16           | `fmla` (fused)          |
///   | ARMv7   | 16 × q    | 4×8        | 8            | `vmla` (unfused), or `vfma` with VFPv4 |
///
/// The transpose flags only change the packing, so NN, NT, TN and TT run the
/// same micro-kernel. Row tails use a micro-kernel instantiated for exactly
/// that many rows; column tails are zero-padded in the packed panel. beta = 0
/// never reads C; alpha = 0 never reads A or B (BLAS semantics).
///
/// **Batch-1 dense** (and GEMM with m = 1, op(B) = Bᵀ) is a GEMV over the
/// rows of W, four rows per pass with two vector accumulators each.
///
/// **fp16 weights** (`dense_f16`): binary16 → fp32 with `vcvt_f32_f16` on
/// AArch64, and on 32-bit ARM when the compiler provides it (`-mfpu=neon-fp16
/// -mfp16-format=ieee`); with plain `-mfpu=neon` the exact scalar
/// `half_to_float` is used. The conversion is exact either way, and the
/// accumulation is fp32: the GEMM converts while packing W, the GEMV in its
/// inner loop.
///
/// Numerical contract (fp32): as for every SIMD back end (kernels/dense.hpp),
/// results differ from the exact value only by the rounding of a different
/// summation order, |Δ| ≤ γ_k·Σ|terms| with γ_k ≈ k·2⁻²⁴; the tests check
/// 2(k + 4)·2⁻²⁴·Σ|terms|. One extra caveat on **32-bit ARM only**: ARMv7
/// NEON arithmetic always flushes subnormal inputs and results to zero, so a
/// product or partial sum below 2⁻¹²⁶ in magnitude may become 0 (an extra
/// absolute error of at most k·2⁻¹²⁶ per output). AArch64 NEON is IEEE
/// (subnormals kept unless the process sets FPCR.FZ).
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
/// Intrinsics rather than xsimd, for the reasons given in simd/x86_f32.hpp
/// (no half conversion, no widening int8 products or SDOT in xsimd 8.1, and
/// the kernels must not depend on the optional xsimd). The blocking
/// parameters were chosen from register counts and QEMU guest-instruction
/// counts (scripts/arm_kernel_count.sh), not tuned on hardware: this back end
/// has only run under qemu-user so far.
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

// binary16 → fp32 in NEON: always on AArch64; on 32-bit ARM only with the
// half-precision extension and the IEEE format selected.
#if defined(__aarch64__) || \
    (defined(__ARM_NEON_FP) && (__ARM_NEON_FP & 0x2) != 0 && defined(__ARM_FP16_FORMAT_IEEE))
#define TINYLARGE_KERNELS_NEON_F16_CONVERT 1
#else
#define TINYLARGE_KERNELS_NEON_F16_CONVERT 0
#endif

namespace tinylarge::kernels::detail {

// ---------------------------------------------------------------------------
// Small helpers (fp32)
// ---------------------------------------------------------------------------

/// acc + a·b (fused on AArch64 and with VFPv4; otherwise multiply then add).
TINYLARGE_ALWAYS_INLINE float32x4_t neon_madd(float32x4_t acc, float32x4_t a, float32x4_t b) noexcept {
#if defined(__aarch64__) || defined(__ARM_FEATURE_FMA)
  return vfmaq_f32(acc, a, b);
#else
  return vmlaq_f32(acc, a, b);
#endif
}

/// Sum of the four lanes.
TINYLARGE_ALWAYS_INLINE float neon_hsum(float32x4_t v) noexcept {
#if defined(__aarch64__)
  return vaddvq_f32(v);
#else
  float32x2_t s = vadd_f32(vget_low_f32(v), vget_high_f32(v));
  s = vpadd_f32(s, s);
  return vget_lane_f32(s, 0);
#endif
}

/// Four consecutive weights as fp32.
TINYLARGE_ALWAYS_INLINE float32x4_t neon_load4(const float* p) noexcept { return vld1q_f32(p); }
TINYLARGE_ALWAYS_INLINE float32x4_t neon_load4(const half* p) noexcept {
#if TINYLARGE_KERNELS_NEON_F16_CONVERT
  return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(&p->bits)));
#else
  const float tmp[4] = {half_to_float(p[0]), half_to_float(p[1]), half_to_float(p[2]), half_to_float(p[3])};
  return vld1q_f32(tmp);
#endif
}
TINYLARGE_ALWAYS_INLINE float neon_to_f32(float v) noexcept { return v; }
TINYLARGE_ALWAYS_INLINE float neon_to_f32(half v) noexcept { return half_to_float(v); }

/// The first n (< 4) elements as fp32, the rest zero; never reads past n − 1.
template <class T>
TINYLARGE_ALWAYS_INLINE float32x4_t neon_load4_partial(const T* p, std::size_t n) noexcept {
  float tmp[4] = {0.0f, 0.0f, 0.0f, 0.0f};
  for (std::size_t i = 0; i < n; ++i) tmp[i] = neon_to_f32(p[i]);
  return vld1q_f32(tmp);
}

/// Transposes the 4×4 block r[0..3] in place (row i → column i).
TINYLARGE_ALWAYS_INLINE void neon_transpose4x4(float32x4_t r[4]) noexcept {
  const float32x4x2_t t01 = vtrnq_f32(r[0], r[1]), t23 = vtrnq_f32(r[2], r[3]);
  r[0] = vcombine_f32(vget_low_f32(t01.val[0]), vget_low_f32(t23.val[0]));
  r[1] = vcombine_f32(vget_low_f32(t01.val[1]), vget_low_f32(t23.val[1]));
  r[2] = vcombine_f32(vget_high_f32(t01.val[0]), vget_high_f32(t23.val[0]));
  r[3] = vcombine_f32(vget_high_f32(t01.val[1]), vget_high_f32(t23.val[1]));
}

/// Calls f(std::integral_constant<std::size_t, I>{}) for I = 0 … N−1, so that
/// the loop body sees a compile-time index (fully unrolled).
template <std::size_t N, class F>
TINYLARGE_ALWAYS_INLINE void neon_unroll(F&& f) noexcept {
  [&]<std::size_t... I>(std::index_sequence<I...>) {
    (f(std::integral_constant<std::size_t, I>{}), ...);
  }(std::make_index_sequence<N>{});
}

// ---------------------------------------------------------------------------
// fp32 GEMM: blocking, micro-kernel, packing, driver
// ---------------------------------------------------------------------------

struct f32_neon_blocking {
#if defined(__aarch64__)
  static constexpr std::size_t mr = 8;  ///< 8×8 tile: 16 of the 32 q registers
#else
  static constexpr std::size_t mr = 4;  ///< 4×8 tile: 8 of the 16 q registers
#endif
  static constexpr std::size_t nr = 8;        ///< two q registers of B per k step
  static constexpr std::size_t kc = 256;      ///< k block: B micro-panel 8 KiB (L1)
  static constexpr std::size_t mc = 16 * mr;  ///< A block ≤ 128×256 floats = 128 KiB (L2)
  static constexpr std::size_t nc = 4096;     ///< B block ≤ 256×4096 floats = 4 MiB
};

/// C[0:R, 0:ncols] = alpha·(Ã·B̃) + beta·C for one register tile. Ã: kc steps
/// of R floats; B̃: kc steps of NR floats (zero beyond ncols). beta == 0: C
/// is not read.
template <std::size_t R>
TINYLARGE_NOINLINE void neon_gemm_micro_kernel(std::size_t kc, const float* TINYLARGE_RESTRICT pa,
                                               const float* TINYLARGE_RESTRICT pb, float* c, std::size_t ldc,
                                               std::size_t ncols, float alpha, float beta) noexcept {
  constexpr std::size_t NR = f32_neon_blocking::nr, NV = NR / 4;
  float32x4_t acc[R][NV];
  neon_unroll<R>([&](auto r) {
    neon_unroll<NV>([&](auto v) { acc[r][v] = vdupq_n_f32(0.0f); });
  });
  for (std::size_t p = 0; p < kc; ++p) {
    float32x4_t b[NV];
    neon_unroll<NV>([&](auto v) { b[v] = vld1q_f32(pb + 4 * v); });
    neon_unroll<R>([&](auto r) {
      const float32x4_t a = vdupq_n_f32(pa[r]);
      neon_unroll<NV>([&](auto v) { acc[r][v] = neon_madd(acc[r][v], a, b[v]); });
    });
    pa += R;
    pb += NR;
  }
  const float32x4_t va = vdupq_n_f32(alpha), vb = vdupq_n_f32(beta);
  if (ncols == NR) {
    neon_unroll<R>([&](auto r) {
      float* cr = c + r * ldc;
      neon_unroll<NV>([&](auto v) {
        float32x4_t o = vmulq_f32(va, acc[r][v]);
        if (beta != 0.0f) o = neon_madd(o, vb, vld1q_f32(cr + 4 * v));
        vst1q_f32(cr + 4 * v, o);
      });
    });
    return;
  }
  // Column tail: through a local tile, element by element (never touches C
  // beyond ncols).
  float tile[R][NR];
  neon_unroll<R>([&](auto r) { neon_unroll<NV>([&](auto v) { vst1q_f32(tile[r] + 4 * v, acc[r][v]); }); });
  for (std::size_t r = 0; r < R; ++r) {
    float* cr = c + r * ldc;
    for (std::size_t j = 0; j < ncols; ++j) {
      const float o = alpha * tile[r][j];
      cr[j] = beta != 0.0f ? o + beta * cr[j] : o;
    }
  }
}

using neon_gemm_micro_kernel_fn = void (*)(std::size_t, const float*, const float*, float*, std::size_t, std::size_t,
                                           float, float) noexcept;

/// Micro-kernels for 1 … MR rows, indexed by rows − 1.
template <std::size_t... I>
constexpr auto make_neon_micro_kernel_table(std::index_sequence<I...>) noexcept {
  struct table {
    neon_gemm_micro_kernel_fn fn[sizeof...(I)];
  };
  return table{{&neon_gemm_micro_kernel<I + 1>...}};
}

/// C = beta·C on an m×n block (beta == 0 writes zeros without reading C).
inline void neon_scale_c(std::size_t m, std::size_t n, float beta, float* c, std::size_t ldc) noexcept {
  for (std::size_t i = 0; i < m; ++i) {
    float* cr = c + i * ldc;
    if (beta == 0.0f) {
      for (std::size_t j = 0; j < n; ++j) cr[j] = 0.0f;
    } else if (beta != 1.0f) {
      for (std::size_t j = 0; j < n; ++j) cr[j] *= beta;
    }
  }
}

/// Packs MR-row panels of op(A): the panel at dst + ir·kc holds kc steps of
/// R = min(MR, mc − ir) values.
struct neon_pack_a {
  const float* a;
  std::size_t lda;
  bool trans;

  void operator()(float* TINYLARGE_RESTRICT dst, std::size_t i0, std::size_t mc, std::size_t p0,
                  std::size_t kc) const noexcept {
    constexpr std::size_t MR = f32_neon_blocking::mr;
    for (std::size_t ir = 0; ir < mc; ir += MR) {
      const std::size_t rows = std::min(MR, mc - ir);
      float* d = dst + ir * kc;
      if (!trans) {  // op(A)[i][p] = a[i·lda + p]: 4×4 transposes, then the rest
        std::size_t r = 0;
        for (; r + 4 <= rows; r += 4) {
          const float* src = a + (i0 + ir + r) * lda + p0;
          std::size_t p = 0;
          for (; p + 4 <= kc; p += 4) {
            float32x4_t v[4];
            for (std::size_t q = 0; q < 4; ++q) v[q] = vld1q_f32(src + q * lda + p);
            neon_transpose4x4(v);
            for (std::size_t q = 0; q < 4; ++q) vst1q_f32(d + (p + q) * rows + r, v[q]);
          }
          for (; p < kc; ++p)
            for (std::size_t q = 0; q < 4; ++q) d[p * rows + r + q] = src[q * lda + p];
        }
        for (; r < rows; ++r) {
          const float* src = a + (i0 + ir + r) * lda + p0;
          for (std::size_t p = 0; p < kc; ++p) d[p * rows + r] = src[p];
        }
      } else {  // op(A)[i][p] = a[p·lda + i]: rows of the panel are contiguous
        for (std::size_t p = 0; p < kc; ++p) {
          const float* src = a + (p0 + p) * lda + i0 + ir;
          for (std::size_t r = 0; r < rows; ++r) d[p * rows + r] = src[r];
        }
      }
    }
  }
};

/// Packs NR-column panels of op(B) with op(B)[p][j] = b[j·ldb + p] (B stored
/// transposed — the weight matrix of a dense layer), converting T → fp32.
/// Columns ≥ nc are zero.
template <class T>
void neon_pack_b_transposed(float* TINYLARGE_RESTRICT dst, const T* b, std::size_t ldb, std::size_t j0,
                            std::size_t nc, std::size_t p0, std::size_t kc) noexcept {
  constexpr std::size_t NR = f32_neon_blocking::nr;
  for (std::size_t jr = 0; jr < nc; jr += NR) {
    const std::size_t cols = std::min(NR, nc - jr);
    float* d = dst + jr * kc;
    std::size_t jj = 0;
    for (; jj + 4 <= cols; jj += 4) {  // four rows of B at a time, 4×4 transposes
      const T* src = b + (j0 + jr + jj) * ldb + p0;
      std::size_t p = 0;
      for (; p + 4 <= kc; p += 4) {
        float32x4_t v[4];
        for (std::size_t q = 0; q < 4; ++q) v[q] = neon_load4(src + q * ldb + p);
        neon_transpose4x4(v);
        for (std::size_t q = 0; q < 4; ++q) vst1q_f32(d + (p + q) * NR + jj, v[q]);
      }
      for (; p < kc; ++p)
        for (std::size_t q = 0; q < 4; ++q) d[p * NR + jj + q] = neon_to_f32(src[q * ldb + p]);
    }
    for (; jj < cols; ++jj) {
      const T* src = b + (j0 + jr + jj) * ldb + p0;
      for (std::size_t p = 0; p < kc; ++p) d[p * NR + jj] = neon_to_f32(src[p]);
    }
    for (; jj < NR; ++jj)
      for (std::size_t p = 0; p < kc; ++p) d[p * NR + jj] = 0.0f;
  }
}

/// Packs NR-column panels of op(B) (fp32, either orientation).
struct neon_pack_b {
  const float* b;
  std::size_t ldb;
  bool trans;

  void operator()(float* TINYLARGE_RESTRICT dst, std::size_t j0, std::size_t nc, std::size_t p0,
                  std::size_t kc) const noexcept {
    constexpr std::size_t NR = f32_neon_blocking::nr;
    if (trans) {
      neon_pack_b_transposed(dst, b, ldb, j0, nc, p0, kc);
      return;
    }
    for (std::size_t jr = 0; jr < nc; jr += NR) {  // op(B)[p][j] = b[p·ldb + j]
      const std::size_t cols = std::min(NR, nc - jr);
      float* d = dst + jr * kc;
      for (std::size_t p = 0; p < kc; ++p) {
        const float* src = b + (p0 + p) * ldb + j0 + jr;
        float* dp = d + p * NR;
        if (cols == NR) {
          for (std::size_t j = 0; j < NR; j += 4) vst1q_f32(dp + j, vld1q_f32(src + j));
        } else {
          std::size_t j = 0;
          for (; j < cols; ++j) dp[j] = src[j];
          for (; j < NR; ++j) dp[j] = 0.0f;
        }
      }
    }
  }
};

/// Packs NR-column panels of Wᵀ for binary16 W (n×k, row stride ldw).
struct neon_pack_b_f16 {
  const half* w;
  std::size_t ldw;

  void operator()(float* TINYLARGE_RESTRICT dst, std::size_t j0, std::size_t nc, std::size_t p0,
                  std::size_t kc) const noexcept {
    neon_pack_b_transposed(dst, w, ldw, j0, nc, p0, kc);
  }
};

/// Blocked GEMM driver: C = alpha·Ã·B̃ + beta·C, Ã = op(A) (m×k) and
/// B̃ = op(B) (k×n) defined by the packing functors.
template <class PackA, class PackB>
void neon_gemm_blocked(std::size_t m, std::size_t n, std::size_t k, float alpha, const PackA& pack_a,
                       const PackB& pack_b, float beta, float* c, std::size_t ldc) noexcept {
  using B = f32_neon_blocking;
  constexpr std::size_t MR = B::mr, NR = B::nr, KC = B::kc, MC = B::mc, NC = B::nc;
  if (m == 0 || n == 0) return;
  if (k == 0 || alpha == 0.0f) {
    neon_scale_c(m, n, beta, c, ldc);
    return;
  }
  static constexpr auto kernels = make_neon_micro_kernel_table(std::make_index_sequence<MR>{});
  const std::size_t kblocks = (k + KC - 1) / KC;
  const std::size_t kcb = (k + kblocks - 1) / kblocks;  // balanced k blocks, ≤ KC
  const std::size_t ncb = std::min(NC, (n + NR - 1) / NR * NR);
  const std::size_t mcb = std::min(MC, (m + MR - 1) / MR * MR);
  float* bbuf = thread_scratch<scratch_slot::pack_b>().get<float>(kcb * ncb);
  float* abuf = thread_scratch<scratch_slot::pack_a>().get<float>(kcb * mcb);

  for (std::size_t jc = 0; jc < n; jc += NC) {
    const std::size_t nc = std::min(NC, n - jc);
    for (std::size_t pc = 0; pc < k; pc += kcb) {
      const std::size_t kc = std::min(kcb, k - pc);
      const float beta_block = pc == 0 ? beta : 1.0f;
      pack_b(bbuf, jc, nc, pc, kc);
      for (std::size_t ic = 0; ic < m; ic += MC) {
        const std::size_t mc = std::min(MC, m - ic);
        pack_a(abuf, ic, mc, pc, kc);
        for (std::size_t jr = 0; jr < nc; jr += NR) {
          const std::size_t ncols = std::min(NR, nc - jr);
          for (std::size_t ir = 0; ir < mc; ir += MR) {
            const std::size_t rows = std::min(MR, mc - ir);
            kernels.fn[rows - 1](kc, abuf + ir * kc, bbuf + jr * kc, c + (ic + ir) * ldc + jc + jr, ldc, ncols,
                                 alpha, beta_block);
          }
        }
      }
    }
  }
}

/// GEMV over the rows of W: store(j, Σ_p x[p]·W[j][p]) for j < n, W row j at
/// w + j·ldw (T = float or half). Four rows per pass, 8 accumulators.
template <class T, class Store>
TINYLARGE_ALWAYS_INLINE void neon_gemv_rows(std::size_t n, std::size_t k, const float* x, const T* w,
                                            std::size_t ldw, Store&& store) noexcept {
  const std::size_t k8 = k / 8 * 8, k4 = k / 4 * 4, ktail = k - k4;
  std::size_t j = 0;
  for (; j + 4 <= n; j += 4) {
    float32x4_t acc0[4], acc1[4];
    const T* wr[4];
    neon_unroll<4>([&](auto r) {
      acc0[r] = acc1[r] = vdupq_n_f32(0.0f);
      wr[r] = w + (j + r) * ldw;
    });
    std::size_t p = 0;
    for (; p < k8; p += 8) {
      const float32x4_t x0 = vld1q_f32(x + p), x1 = vld1q_f32(x + p + 4);
      neon_unroll<4>([&](auto r) {
        acc0[r] = neon_madd(acc0[r], neon_load4(wr[r] + p), x0);
        acc1[r] = neon_madd(acc1[r], neon_load4(wr[r] + p + 4), x1);
      });
    }
    if (p < k4) {
      const float32x4_t x0 = vld1q_f32(x + p);
      neon_unroll<4>([&](auto r) { acc0[r] = neon_madd(acc0[r], neon_load4(wr[r] + p), x0); });
    }
    if (ktail != 0) {
      const float32x4_t x0 = neon_load4_partial(x + k4, ktail);
      neon_unroll<4>([&](auto r) { acc1[r] = neon_madd(acc1[r], neon_load4_partial(wr[r] + k4, ktail), x0); });
    }
    neon_unroll<4>([&](auto r) { store(j + r, neon_hsum(vaddq_f32(acc0[r], acc1[r]))); });
  }
  for (; j < n; ++j) {
    const T* wr = w + j * ldw;
    float32x4_t acc = vdupq_n_f32(0.0f);
    std::size_t p = 0;
    for (; p < k4; p += 4) acc = neon_madd(acc, neon_load4(wr + p), vld1q_f32(x + p));
    if (ktail != 0) acc = neon_madd(acc, neon_load4_partial(wr + k4, ktail), neon_load4_partial(x + k4, ktail));
    store(j, neon_hsum(acc));
  }
}

/// Y = X·Wᵀ + bias (T = float or half): GEMV for m = 1, packed GEMM otherwise.
template <class T, class PackW>
void neon_dense(std::size_t m, std::size_t n, std::size_t k, const float* x, const T* w, const float* bias, float* y,
                const PackW& pack_w) noexcept {
  if (m == 0 || n == 0) return;
  if (m == 1) {
    if (bias != nullptr) {
      neon_gemv_rows(n, k, x, w, k, [&](std::size_t j, float s) { y[j] = s + bias[j]; });
    } else {
      neon_gemv_rows(n, k, x, w, k, [&](std::size_t j, float s) { y[j] = s; });
    }
    return;
  }
  float beta = 0.0f;
  if (bias != nullptr) {
    for (std::size_t i = 0; i < m; ++i) std::memcpy(y + i * n, bias, n * sizeof(float));
    beta = 1.0f;
  }
  neon_gemm_blocked(m, n, k, 1.0f, neon_pack_a{x, k, false}, pack_w, beta, y, n);
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

/// C = alpha·op(A)·op(B) + beta·C, NEON back end (packed GEMM, every
/// transpose case; GEMV for m = 1 with op(B) = Bᵀ). Same contract as the
/// scalar overload; beta == 0 never reads C.
inline void gemm_f32(arch::neon, transpose ta, transpose tb, std::size_t m, std::size_t n, std::size_t k,
                     float alpha, const float* a, std::size_t lda, const float* b, std::size_t ldb, float beta,
                     float* c, std::size_t ldc) noexcept {
  if (m == 1 && tb == transpose::yes && k != 0 && alpha != 0.0f && n != 0) {
    // c[j] = alpha·Σ_p op(A)[0][p]·b[j·ldb + p] + beta·c[j]; with ta = yes the
    // elements of the single row of op(A) are lda apart.
    const float* xrow = a;
    if (ta == transpose::yes && lda != 1) {
      float* tmp = detail::thread_scratch<detail::scratch_slot::vector>().get<float>(k);
      for (std::size_t p = 0; p < k; ++p) tmp[p] = a[p * lda];
      xrow = tmp;
    }
    if (beta == 0.0f) {
      detail::neon_gemv_rows(n, k, xrow, b, ldb, [&](std::size_t j, float s) { c[j] = alpha * s; });
    } else {
      detail::neon_gemv_rows(n, k, xrow, b, ldb, [&](std::size_t j, float s) { c[j] = alpha * s + beta * c[j]; });
    }
    return;
  }
  detail::neon_gemm_blocked(m, n, k, alpha, detail::neon_pack_a{a, lda, ta == transpose::yes},
                            detail::neon_pack_b{b, ldb, tb == transpose::yes}, beta, c, ldc);
}

/// Y = X·Wᵀ + bias, NEON back end (GEMV for m = 1, packed GEMM otherwise).
inline void dense_f32(arch::neon, std::size_t m, std::size_t n, std::size_t k, const float* x, const float* w,
                      const float* bias, float* y) noexcept {
  detail::neon_dense(m, n, k, x, w, bias, y, detail::neon_pack_b{w, k, true});
}

/// Y = X·Wᵀ + bias with binary16 W, NEON back end (exact conversion, fp32
/// accumulation; `vcvt_f32_f16` where available, see the file comment).
inline void dense_f16(arch::neon, std::size_t m, std::size_t n, std::size_t k, const float* x, const half* w,
                      const float* bias, float* y) noexcept {
  detail::neon_dense(m, n, k, x, w, bias, y, detail::neon_pack_b_f16{w, k});
}

/// gemm<T>, NEON back end: a half / bfloat16 A and B are widened to fp32
/// (exact) into scratch, then the fp32 GEMM runs.
template <class T>
void gemm(arch::neon, transpose ta, transpose tb, std::size_t m, std::size_t n, std::size_t k, float alpha,
          const T* a, std::size_t lda, const T* b, std::size_t ldb, float beta, float* c, std::size_t ldc) noexcept {
  static_assert(kernel_float<T>, "kernels::gemm<T>: T must be float, tinylarge::half or tinylarge::bfloat16");
  if constexpr (std::is_same_v<T, float>) {
    gemm_f32(arch::neon{}, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  } else {
    const std::size_t ar = ta == transpose::no ? m : k, br = tb == transpose::no ? k : n;
    float* af = detail::thread_scratch<detail::scratch_slot::widen_a>().get<float>(ar * lda);
    float* bf = detail::thread_scratch<detail::scratch_slot::widen_b>().get<float>(br * ldb);
    for (std::size_t e = 0; e < ar * lda; ++e) af[e] = to_float(a[e]);
    for (std::size_t e = 0; e < br * ldb; ++e) bf[e] = to_float(b[e]);
    gemm_f32(arch::neon{}, ta, tb, m, n, k, alpha, af, lda, bf, ldb, beta, c, ldc);
  }
}

/// dense<TX, T>, NEON back end (half W: `dense_f16`; otherwise the operands
/// stored in 16 bits are widened to fp32 into scratch first).
template <class TX, class T>
void dense(arch::neon, std::size_t m, std::size_t n, std::size_t k, const TX* x, const T* w, const float* bias,
           float* y) noexcept {
  static_assert(kernel_float<TX> && kernel_float<T>, "kernels::dense<TX, T>: TX and T must be float, "
                                                     "tinylarge::half or tinylarge::bfloat16");
  const float* xf = nullptr;
  if constexpr (std::is_same_v<TX, float>) {
    xf = x;
  } else {
    float* t = detail::thread_scratch<detail::scratch_slot::widen_a>().get<float>(m * k);
    for (std::size_t e = 0; e < m * k; ++e) t[e] = to_float(x[e]);
    xf = t;
  }
  if constexpr (std::is_same_v<T, float>) {
    dense_f32(arch::neon{}, m, n, k, xf, w, bias, y);
  } else if constexpr (std::is_same_v<T, half>) {
    dense_f16(arch::neon{}, m, n, k, xf, w, bias, y);
  } else {
    float* t = detail::thread_scratch<detail::scratch_slot::widen_b>().get<float>(n * k);
    for (std::size_t e = 0; e < n * k; ++e) t[e] = to_float(w[e]);
    dense_f32(arch::neon{}, m, n, k, xf, t, bias, y);
  }
}

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

#undef TINYLARGE_KERNELS_NEON_F16_CONVERT

#endif  // __ARM_NEON
