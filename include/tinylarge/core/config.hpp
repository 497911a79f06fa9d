/// @file config.hpp
/// @brief Build profile detection and library-wide configuration macros.
///
/// Two profiles share one code base (see docs/profiles.md):
///  - **host**: exceptions allowed, xtensor/xsimd available, heap allowed;
///  - **freestanding** (microcontroller): no heap, no exceptions, no RTTI, no
///    iostream, no xtensor/xsimd.
///
/// The freestanding profile is selected by defining `TINYLARGE_FREESTANDING`
/// (the freestanding umbrella header `tinylarge/freestanding.hpp` does so).
#pragma once

#define TINYLARGE_VERSION_MAJOR 0
#define TINYLARGE_VERSION_MINOR 1
#define TINYLARGE_VERSION_PATCH 0

#if !defined(TINYLARGE_FREESTANDING)
#define TINYLARGE_FREESTANDING 0
#endif

// TINYLARGE_USE_XSIMD: 1 = the host kernels use xsimd (the CMake option
// TINYLARGE_USE_XSIMD=ON defines it to 1), 0 = the portable scalar back end
// only (OFF defines 0). Left undefined, it is 1 when <xsimd/xsimd.hpp> is
// found on the include path of a host build. Always 0 when freestanding.
#if TINYLARGE_FREESTANDING
#undef TINYLARGE_USE_XSIMD
#define TINYLARGE_USE_XSIMD 0
#elif !defined(TINYLARGE_USE_XSIMD)
#if defined(__has_include)
#if __has_include(<xsimd/xsimd.hpp>)
#define TINYLARGE_USE_XSIMD 1
#endif
#endif
#if !defined(TINYLARGE_USE_XSIMD)
#define TINYLARGE_USE_XSIMD 0
#endif
#endif

#if defined(__cpp_exceptions) || defined(__EXCEPTIONS)
#define TINYLARGE_HAS_EXCEPTIONS 1
#else
#define TINYLARGE_HAS_EXCEPTIONS 0
#endif

#if defined(__GNUC__) || defined(__clang__)
#define TINYLARGE_ALWAYS_INLINE inline __attribute__((always_inline))
#define TINYLARGE_NOINLINE __attribute__((noinline))
#define TINYLARGE_RESTRICT __restrict__
#define TINYLARGE_LIKELY(x) __builtin_expect(!!(x), 1)
#define TINYLARGE_UNLIKELY(x) __builtin_expect(!!(x), 0)
#else
#define TINYLARGE_ALWAYS_INLINE inline
#define TINYLARGE_NOINLINE
#define TINYLARGE_RESTRICT
#define TINYLARGE_LIKELY(x) (x)
#define TINYLARGE_UNLIKELY(x) (x)
#endif

namespace tinylarge {
/// True when compiled for the freestanding (microcontroller) profile.
inline constexpr bool freestanding = TINYLARGE_FREESTANDING != 0;
/// True when the host kernels use xsimd (`TINYLARGE_USE_XSIMD`).
inline constexpr bool use_xsimd = TINYLARGE_USE_XSIMD != 0;
/// True when the translation unit is compiled with exceptions enabled.
inline constexpr bool has_exceptions = TINYLARGE_HAS_EXCEPTIONS != 0;
} // namespace tinylarge

/// Short alias used throughout the documentation and examples.
namespace tl = tinylarge;
