/// @file core/arch.hpp
/// @brief Instruction-set architectures as tag types, chosen at compile time.
///
/// As in xsimd, each architecture is an empty struct in an inheritance chain
/// with `static constexpr bool supported()`. Kernels are overloaded on the
/// tags they specialise; a call with a derived tag resolves to the nearest
/// base that has an overload, ending at `scalar`:
///
///     scalar ← sse2 ← avx2 ← avx512 ← avx512_vnni ← avx512_bf16   x86-64 (host)
///                sse2 ← dispatch                    x86-64, chosen at run time
///     scalar ← neon ← neon_dotprod                 ARM Linux (host)
///     scalar ← cortex_m_dsp ← cortex_m_mve         Cortex-M4/M7, M55 (freestanding)
///
/// `supported()` is true when the translation unit is compiled for a target
/// that has the instructions (`-mavx2 -mfma -mf16c`, `-march=native`, …).
/// `tl::arch::best` is the most capable supported tag. The fp32 kernels of
/// `sse2`, `avx2`, `avx512` and `neon` are one source over
/// `xsimd::batch<float, A>` (kernels/simd/f32.hpp); each tag names its xsimd
/// architecture there (`sse2`, `fma3<avx2>`, `avx512bw`, `neon64` / `neon`).
#pragma once

#include "config.hpp"

namespace tinylarge::arch {

/// Portable C++; the reference every other back end is tested against.
struct scalar {
  static constexpr const char* name() noexcept { return "scalar"; }
  static constexpr bool supported() noexcept { return true; }
};

/// x86-64 baseline (SSE2): every x86-64 CPU.
struct sse2 : scalar {
  static constexpr const char* name() noexcept { return "sse2"; }
  static constexpr bool supported() noexcept {
#if defined(__SSE2__) && (defined(__x86_64__) || defined(_M_X64))
    return true;
#else
    return false;
#endif
  }
};

/// Run-time dispatch on x86-64 (kernels/dispatch.hpp): the kernels of the
/// best of `avx512_bf16`, `avx512_vnni`, `avx512`, `avx2` the CPU has, else `sse2`. Supported
/// in programs built with `TINYLARGE_DISPATCH` (the CMake option of that name
/// links the per-ISA translation units); chosen by `best` only when the
/// translation unit itself targets less than AVX2.
struct dispatch : sse2 {
  static constexpr const char* name() noexcept { return "dispatch"; }
  static constexpr bool supported() noexcept {
#if defined(TINYLARGE_DISPATCH) && TINYLARGE_USE_XSIMD && (defined(__x86_64__) || defined(_M_X64))
    return TINYLARGE_DISPATCH != 0;
#else
    return false;
#endif
  }
};

/// x86-64 with AVX2, FMA and F16C (Haswell and later, Zen and later).
struct avx2 : sse2 {
  static constexpr const char* name() noexcept { return "avx2"; }
  static constexpr bool supported() noexcept {
#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
    return true;
#else
    return false;
#endif
  }
};

/// x86-64 with AVX-512 F, BW, DQ and VL (Skylake-SP and later, Zen 4).
struct avx512 : avx2 {
  static constexpr const char* name() noexcept { return "avx512"; }
  static constexpr bool supported() noexcept {
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512DQ__) && defined(__AVX512VL__) && \
    defined(__F16C__) && defined(__FMA__)
    return true;
#else
    return false;
#endif
  }
};

/// AVX-512 plus VNNI int8 dot products (VPDPBUSD).
struct avx512_vnni : avx512 {
  static constexpr const char* name() noexcept { return "avx512_vnni"; }
  static constexpr bool supported() noexcept {
#if defined(__AVX512VNNI__)
    return avx512::supported();
#else
    return false;
#endif
  }
};

/// AVX-512 VNNI plus the bfloat16 dot product VDPBF16PS (AVX512-BF16:
/// Cooper Lake, Sapphire Rapids, Zen 4).
struct avx512_bf16 : avx512_vnni {
  static constexpr const char* name() noexcept { return "avx512_bf16"; }
  static constexpr bool supported() noexcept {
#if defined(__AVX512BF16__)
    return avx512_vnni::supported();
#else
    return false;
#endif
  }
};

/// ARMv7-A / AArch64 Advanced SIMD.
struct neon : scalar {
  static constexpr const char* name() noexcept { return "neon"; }
  static constexpr bool supported() noexcept {
#if defined(__ARM_NEON) || defined(__ARM_NEON__)
    return true;
#else
    return false;
#endif
  }
};

/// NEON plus the dot-product extension (SDOT, ARMv8.2-A+dotprod).
struct neon_dotprod : neon {
  static constexpr const char* name() noexcept { return "neon_dotprod"; }
  static constexpr bool supported() noexcept {
#if defined(__ARM_FEATURE_DOTPROD)
    return neon::supported();
#else
    return false;
#endif
  }
};

/// Cortex-M4/M7 DSP extension (SMLAD dual 16-bit multiply-accumulate).
struct cortex_m_dsp : scalar {
  static constexpr const char* name() noexcept { return "cortex_m_dsp"; }
  static constexpr bool supported() noexcept {
#if defined(__ARM_FEATURE_DSP) && !defined(__ARM_NEON)
    return true;
#else
    return false;
#endif
  }
};

/// Cortex-M55 / M85 integer Helium (M-profile Vector Extension, `arm_mve.h`):
/// 128-bit vectors, VMLADAVA int8 dot products. These cores also have the DSP
/// extension, so kernels without an MVE overload fall back to `cortex_m_dsp`.
struct cortex_m_mve : cortex_m_dsp {
  static constexpr const char* name() noexcept { return "cortex_m_mve"; }
  static constexpr bool supported() noexcept {
#if defined(__ARM_FEATURE_MVE) && (__ARM_FEATURE_MVE & 1) && defined(__ARM_FEATURE_DSP)
    return true;
#else
    return false;
#endif
  }
};

namespace detail {
template <class First, class... Rest>
struct first_supported {
  using type = typename first_supported<Rest...>::type;
};
template <class First, class... Rest>
  requires(First::supported())
struct first_supported<First, Rest...> {
  using type = First;
};
template <class Last>
struct first_supported<Last> {
  using type = Last;
};
}  // namespace detail

/// The most capable architecture this translation unit is compiled for.
/// Without xsimd (`TINYLARGE_USE_XSIMD=0`, always so when freestanding) the
/// host back ends are off: `scalar` (or `cortex_m_mve` / `cortex_m_dsp` on a Cortex-M with Helium / DSP).
#if TINYLARGE_USE_XSIMD
using best = typename detail::first_supported<avx512_bf16, avx512_vnni, avx512, avx2, dispatch, sse2, neon_dotprod, neon,
                                              cortex_m_mve, cortex_m_dsp, scalar>::type;
#else
using best = typename detail::first_supported<cortex_m_mve, cortex_m_dsp, scalar>::type;
#endif

}  // namespace tinylarge::arch

/// The inline namespace that holds the SIMD kernels (kernels/simd/*.hpp) of a
/// translation unit, named after the instruction-set tier it is compiled for
/// (the tag `arch::best` would pick, dispatch aside). Translation units built
/// with different `-m…` flags, such as the per-ISA units of run-time dispatch
/// (src/dispatch/*.cpp) and the baseline program, therefore never share the
/// mangled name of a kernel function: the linker cannot keep one unit's copy
/// of an inline function or template instantiation for another unit's
/// callers (it used to merge them, so one table ran another tier's copy).
/// Within one tier the name is the same, and the source-level names do not
/// change (`kernels::dense_s8`, `kernels::detail::…`).
#if defined(__AVX512BF16__) && defined(__AVX512VNNI__) && defined(__AVX512F__) && defined(__AVX512BW__) && \
    defined(__AVX512DQ__) && defined(__AVX512VL__) && defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#define TINYLARGE_KERNELS_ISA isa_avx512_bf16
#elif defined(__AVX512VNNI__) && defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512DQ__) && \
    defined(__AVX512VL__) && defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#define TINYLARGE_KERNELS_ISA isa_avx512_vnni
#elif defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512DQ__) && defined(__AVX512VL__) && \
    defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#define TINYLARGE_KERNELS_ISA isa_avx512
#elif defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#define TINYLARGE_KERNELS_ISA isa_avx2
#elif defined(__AVX__) || defined(__FMA__) || defined(__F16C__)
#define TINYLARGE_KERNELS_ISA isa_avx  // some AVX, less than the avx2 tier: its own code, its own names
#elif defined(__SSE2__) || defined(_M_X64)
#define TINYLARGE_KERNELS_ISA isa_sse2
#elif defined(__ARM_FEATURE_DOTPROD)
#define TINYLARGE_KERNELS_ISA isa_neon_dotprod
#elif defined(__ARM_NEON) || defined(__ARM_NEON__)
#define TINYLARGE_KERNELS_ISA isa_neon
#else
#define TINYLARGE_KERNELS_ISA isa_generic
#endif
