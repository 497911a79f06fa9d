/// @file core/arch.hpp
/// @brief Instruction-set architectures as tag types, chosen at compile time.
///
/// As in xsimd, each architecture is an empty struct in an inheritance chain
/// with `static constexpr bool supported()`. Kernels are overloaded on the
/// tags they specialise; a call with a derived tag resolves to the nearest
/// base that has an overload, ending at `scalar`:
///
///     scalar ← avx2 ← avx512 ← avx512_vnni        x86-64 (host)
///     scalar ← neon ← neon_dotprod                 ARM Linux (host)
///     scalar ← cortex_m_dsp ← cortex_m_mve         Cortex-M4/M7, M55 (freestanding)
///
/// `supported()` is true when the translation unit is compiled for a target
/// that has the instructions (`-mavx2 -mfma -mf16c`, `-march=native`, …).
/// `tl::arch::best` is the most capable supported tag. There is no run-time
/// dispatch: build for the target you run on.
#pragma once

#include "config.hpp"

namespace tinylarge::arch {

/// Portable C++; the reference every other back end is tested against.
struct scalar {
  static constexpr const char* name() noexcept { return "scalar"; }
  static constexpr bool supported() noexcept { return true; }
};

/// x86-64 with AVX2, FMA and F16C (Haswell and later, Zen and later).
struct avx2 : scalar {
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
using best = typename detail::first_supported<avx512_vnni, avx512, avx2, neon_dotprod, neon,
                                              cortex_m_mve, cortex_m_dsp, scalar>::type;

}  // namespace tinylarge::arch
