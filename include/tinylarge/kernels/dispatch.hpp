/// @file kernels/dispatch.hpp
/// @brief Run-time dispatch (`arch::dispatch`): a binary built for the x86-64
///        baseline runs the kernels of the best instruction set of the CPU it
///        finds. Internal: included by `kernels/dense.hpp` when
///        `TINYLARGE_DISPATCH` is defined.
///
/// xsimd 8.1 defines its AVX2 / AVX-512 batch types only in a translation
/// unit compiled for them (`XSIMD_WITH_AVX2` follows `__AVX2__`, which neither
/// GCC 12 nor Clang 14 defines inside `#pragma GCC target` / target
/// attributes), so, as with `xsimd::dispatch`, each instruction set is compiled
/// in its own translation unit: `src/dispatch/{avx2,avx512,avx512_vnni,avx512_bf16}.cpp`,
/// built with their `-m…` flags into the static library `tinylarge_dispatch`
/// (CMake option `TINYLARGE_DISPATCH=ON`, which `tinylarge::tinylarge` then
/// links and which an install exports with it). Each
/// defines one table of function pointers to its instantiations of the
/// kernels (`make_kernel_table<Tag>`); the program picks one table on first
/// use with `__builtin_cpu_supports` (AVX2 implies FMA and F16C on every CPU
/// that has it) and otherwise runs the `sse2` kernels of its own translation
/// units. The cost is one indirect call per kernel call.
///
/// A translation unit built for AVX2 or more (`-march=native`) never uses
/// this: `arch::best` is its own compile-time tag, no table, no indirection.
///
/// What is dispatched: `gemm<T>` / `gemm_f32`, `dense<TX, T>` / `dense_f32` /
/// `dense_f16` (T = float, half, bfloat16; TX = float or T), the pre-packed
/// fp32 GEMV (its buffer is sized for the widest layout, 16-lane blocks),
/// and the int8 `dense_s8`, `dense_s8_s32`, `quantize_s8`. Not dispatched:
/// the pre-packed int8 GEMV (its size is a compile-time constant that
/// depends on the instruction set), so `quantized_network` runs the
/// dispatched `dense_s8` at batch 1.
///
/// Names: the SIMD kernels live in an inline namespace named after the
/// instruction-set tier of the translation unit (`TINYLARGE_KERNELS_ISA`,
/// core/arch.hpp: `isa_avx2`, `isa_avx512`, …, `isa_sse2` for the program),
/// so each per-ISA unit's inline functions and template instantiations have
/// their own mangled names. Before, e.g. `detail::s8_dense_avx2<…>` was the
/// same symbol in avx2.cpp and avx512.cpp (the `avx512` table reuses the
/// `avx2` int8 kernel) and the linker kept whichever copy came first: the
/// `avx512` table ran the AVX2-compiled copy, and with the other order the
/// `avx2` table would have run AVX-512 instructions on an AVX2-only CPU.
/// What the units still share: the per-thread scratch buffers
/// (`thread_scratch`) and `zero_skip_mode` (deliberately), and the scalar
/// functions outside kernels/simd (precision/*.hpp, the scalar back end of
/// dense.hpp; small, inlined at -O2): when one is emitted out of line
/// (-O0), the linker keeps the program's baseline copy if the program has
/// one, else the first per-ISA unit's (avx2.cpp comes first in the archive).
#pragma once

#if !defined(TINYLARGE_KERNELS_DENSE_SCALAR_DECLARED)
#error "internal header: include <tinylarge/kernels/dense.hpp> instead"
#endif

#include <cstddef>
#include <cstdint>

namespace tinylarge::kernels {

namespace detail {

/// The kernels of one back end as plain function pointers.
struct kernel_table {
  const char* name;
  template <class T>
  using gemm_fn = void (*)(transpose, transpose, std::size_t, std::size_t, std::size_t, float, const T*,
                           std::size_t, const T*, std::size_t, float, float*, std::size_t) noexcept;
  template <class TX, class T>
  using dense_fn = void (*)(std::size_t, std::size_t, std::size_t, const TX*, const T*, const float*,
                            float*) noexcept;
  gemm_fn<float> gemm_f32;
  gemm_fn<half> gemm_f16;
  gemm_fn<bfloat16> gemm_bf16;
  dense_fn<float, float> dense_f32;
  dense_fn<float, half> dense_f16;
  dense_fn<float, bfloat16> dense_bf16;
  dense_fn<half, half> dense_f16_f16;
  dense_fn<bfloat16, bfloat16> dense_bf16_bf16;
  void (*pack_dense_f32)(std::size_t, std::size_t, const float*, const float*, float*) noexcept;
  void (*dense_f32_packed)(std::size_t, std::size_t, const float*, const float*, fused_activation,
                           float*) noexcept;
  void (*dense_s8)(std::size_t, std::size_t, std::size_t, const std::int8_t*, const std::int8_t*,
                   const dense_s8_params&, std::int8_t*) noexcept;
  void (*dense_s8_s32)(std::size_t, std::size_t, std::size_t, const std::int8_t*, const std::int8_t*,
                       const dense_s8_params&, std::int32_t*) noexcept;
  void (*quantize_s8)(const float*, std::size_t, quant_params, quant_range, std::int8_t*) noexcept;
};

/// The table of back end B (instantiated in B's translation unit).
template <class B>
constexpr kernel_table make_kernel_table() noexcept {
  kernel_table t{};
  t.name = B::name();
  t.gemm_f32 = +[](transpose ta, transpose tb, std::size_t m, std::size_t n, std::size_t k, float alpha,
                   const float* a, std::size_t lda, const float* b, std::size_t ldb, float beta, float* c,
                   std::size_t ldc) noexcept { gemm(B{}, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc); };
  t.gemm_f16 = +[](transpose ta, transpose tb, std::size_t m, std::size_t n, std::size_t k, float alpha,
                   const half* a, std::size_t lda, const half* b, std::size_t ldb, float beta, float* c,
                   std::size_t ldc) noexcept { gemm(B{}, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc); };
  t.gemm_bf16 = +[](transpose ta, transpose tb, std::size_t m, std::size_t n, std::size_t k, float alpha,
                    const bfloat16* a, std::size_t lda, const bfloat16* b, std::size_t ldb, float beta, float* c,
                    std::size_t ldc) noexcept { gemm(B{}, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc); };
  t.dense_f32 = +[](std::size_t m, std::size_t n, std::size_t k, const float* x, const float* w, const float* bias,
                    float* y) noexcept { dense(B{}, m, n, k, x, w, bias, y); };
  t.dense_f16 = +[](std::size_t m, std::size_t n, std::size_t k, const float* x, const half* w, const float* bias,
                    float* y) noexcept { dense(B{}, m, n, k, x, w, bias, y); };
  t.dense_bf16 = +[](std::size_t m, std::size_t n, std::size_t k, const float* x, const bfloat16* w,
                     const float* bias, float* y) noexcept { dense(B{}, m, n, k, x, w, bias, y); };
  t.dense_f16_f16 = +[](std::size_t m, std::size_t n, std::size_t k, const half* x, const half* w, const float* bias,
                        float* y) noexcept { dense(B{}, m, n, k, x, w, bias, y); };
  t.dense_bf16_bf16 = +[](std::size_t m, std::size_t n, std::size_t k, const bfloat16* x, const bfloat16* w,
                          const float* bias, float* y) noexcept { dense(B{}, m, n, k, x, w, bias, y); };
  t.pack_dense_f32 = +[](std::size_t n, std::size_t k, const float* w, const float* bias, float* dst) noexcept {
    pack_dense_f32(B{}, n, k, w, bias, dst);
  };
  t.dense_f32_packed = +[](std::size_t n, std::size_t k, const float* x, const float* packed, fused_activation act,
                           float* y) noexcept { dense_f32_packed(B{}, n, k, x, packed, act, y); };
  t.dense_s8 = +[](std::size_t m, std::size_t n, std::size_t k, const std::int8_t* x, const std::int8_t* w,
                   const dense_s8_params& p, std::int8_t* y) noexcept { dense_s8(B{}, m, n, k, x, w, p, y); };
  t.dense_s8_s32 = +[](std::size_t m, std::size_t n, std::size_t k, const std::int8_t* x, const std::int8_t* w,
                       const dense_s8_params& p, std::int32_t* acc) noexcept {
    dense_s8_s32(B{}, m, n, k, x, w, p, acc);
  };
  t.quantize_s8 = +[](const float* x, std::size_t n, quant_params p, quant_range r, std::int8_t* q) noexcept {
    quantize_s8(B{}, x, n, p, r, q);
  };
  return t;
}

/// Defined in src/dispatch/<isa>.cpp (the static library `tinylarge_dispatch`).
const kernel_table& kernel_table_avx2() noexcept;
const kernel_table& kernel_table_avx512() noexcept;
const kernel_table& kernel_table_avx512_vnni() noexcept;
const kernel_table& kernel_table_avx512_bf16() noexcept;

/// The table for the CPU this process runs on (chosen once).
inline const kernel_table& dispatched_kernels() noexcept {
  static const kernel_table& t = []() noexcept -> const kernel_table& {
    __builtin_cpu_init();
    const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    const bool avx512 = avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                        __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
    const bool vnni = avx512 && __builtin_cpu_supports("avx512vnni");
    if (vnni && __builtin_cpu_supports("avx512bf16")) return kernel_table_avx512_bf16();
    if (vnni) return kernel_table_avx512_vnni();
    if (avx512) return kernel_table_avx512();
    if (avx2) return kernel_table_avx2();
    static constexpr kernel_table baseline = make_kernel_table<arch::sse2>();
    return baseline;
  }();
  return t;
}

}  // namespace detail

/// The name of the back end `arch::dispatch` runs on this CPU.
inline const char* dispatched_backend_name() noexcept { return detail::dispatched_kernels().name; }

template <class T>
void gemm(arch::dispatch, transpose ta, transpose tb, std::size_t m, std::size_t n, std::size_t k, float alpha,
          const T* a, std::size_t lda, const T* b, std::size_t ldb, float beta, float* c, std::size_t ldc) noexcept {
  static_assert(kernel_float<T>, "kernels::gemm<T>: T must be float, tinylarge::half or tinylarge::bfloat16");
  const auto& t = detail::dispatched_kernels();
  if constexpr (std::is_same_v<T, float>) t.gemm_f32(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  else if constexpr (std::is_same_v<T, half>) t.gemm_f16(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  else t.gemm_bf16(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}
template <class TX, class T>
void dense(arch::dispatch, std::size_t m, std::size_t n, std::size_t k, const TX* x, const T* w, const float* bias,
           float* y) noexcept {
  static_assert(kernel_float<TX> && kernel_float<T>, "kernels::dense<TX, T>: TX and T must be float, "
                                                     "tinylarge::half or tinylarge::bfloat16");
  static_assert(std::is_same_v<TX, float> || std::is_same_v<TX, T>,
                "kernels::dense<TX, T> on arch::dispatch: TX must be float or T");
  const auto& t = detail::dispatched_kernels();
  if constexpr (std::is_same_v<TX, float> && std::is_same_v<T, float>) t.dense_f32(m, n, k, x, w, bias, y);
  else if constexpr (std::is_same_v<TX, float> && std::is_same_v<T, half>) t.dense_f16(m, n, k, x, w, bias, y);
  else if constexpr (std::is_same_v<TX, float>) t.dense_bf16(m, n, k, x, w, bias, y);
  else if constexpr (std::is_same_v<T, half>) t.dense_f16_f16(m, n, k, x, w, bias, y);
  else t.dense_bf16_bf16(m, n, k, x, w, bias, y);
}
inline void gemm_f32(arch::dispatch, transpose ta, transpose tb, std::size_t m, std::size_t n, std::size_t k,
                     float alpha, const float* a, std::size_t lda, const float* b, std::size_t ldb, float beta,
                     float* c, std::size_t ldc) noexcept {
  detail::dispatched_kernels().gemm_f32(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}
/// The fused SGD step of a dense layer (kernels/elementwise.hpp) under
/// dispatch: the dispatched GEMM into g, then the program's own plain SGD
/// update — the bits of `gemm_f32` + `sgd_step` on `arch::dispatch`.
inline void sgd_gemm_tn_f32(arch::dispatch, std::size_t m, std::size_t n, std::size_t k, float lr, const float* a,
                            std::size_t lda, const float* b, std::size_t ldb, float* w, std::size_t ldw,
                            float* g) noexcept {
  gemm_f32(arch::dispatch{}, transpose::yes, transpose::no, m, n, k, 1.0f, a, lda, b, ldb, 0.0f, g, n);
  for (std::size_t r = 0; r < m; ++r)
    detail::sgd_update_f32<detail::f32_ops_of<arch::dispatch>>(n, lr, w + r * ldw, g + r * n);
}
inline void dense_f32(arch::dispatch, std::size_t m, std::size_t n, std::size_t k, const float* x, const float* w,
                      const float* bias, float* y) noexcept {
  detail::dispatched_kernels().dense_f32(m, n, k, x, w, bias, y);
}
inline void dense_f16(arch::dispatch, std::size_t m, std::size_t n, std::size_t k, const float* x, const half* w,
                      const float* bias, float* y) noexcept {
  detail::dispatched_kernels().dense_f16(m, n, k, x, w, bias, y);
}
/// Floats of the packed batch-1 form: the widest layout of any dispatched
/// back end (16-lane blocks), so the buffer fits whichever runs.
constexpr std::size_t dense_f32_packed_floats(arch::dispatch, std::size_t n, std::size_t k) noexcept {
  return n == 0 ? 0 : (n + 15) / 16 * 16 * (k + 1);
}
inline void pack_dense_f32(arch::dispatch, std::size_t n, std::size_t k, const float* w, const float* bias,
                           float* dst) noexcept {
  detail::dispatched_kernels().pack_dense_f32(n, k, w, bias, dst);
}
inline void dense_f32_packed(arch::dispatch, std::size_t n, std::size_t k, const float* x, const float* packed,
                             fused_activation act, float* y) noexcept {
  detail::dispatched_kernels().dense_f32_packed(n, k, x, packed, act, y);
}
inline void dense_s8(arch::dispatch, std::size_t m, std::size_t n, std::size_t k, const std::int8_t* x,
                     const std::int8_t* w, const dense_s8_params& p, std::int8_t* y) noexcept {
  detail::dispatched_kernels().dense_s8(m, n, k, x, w, p, y);
}
inline void dense_s8_s32(arch::dispatch, std::size_t m, std::size_t n, std::size_t k, const std::int8_t* x,
                         const std::int8_t* w, const dense_s8_params& p, std::int32_t* acc) noexcept {
  detail::dispatched_kernels().dense_s8_s32(m, n, k, x, w, p, acc);
}
inline void quantize_s8(arch::dispatch, const float* x, std::size_t n, quant_params p, quant_range range,
                        std::int8_t* q) noexcept {
  detail::dispatched_kernels().quantize_s8(x, n, p, range, q);
}

}  // namespace tinylarge::kernels
