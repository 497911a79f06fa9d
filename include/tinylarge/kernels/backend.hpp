/// @file kernels/backend.hpp
/// @brief Kernel back ends as tag types, chosen at compile time.
///
/// Back ends form an inheritance chain, as xsimd's architectures do; a kernel
/// is overloaded on the tags it has a specialised implementation for, and
/// overload resolution picks the nearest base, ending at `scalar`:
///
///     scalar ← avx2 ← avx512 ← avx512_vnni       (x86, host profile)
///     scalar ← cortex_m_dsp                       (Cortex-M4/M7, freestanding)
///
/// `scalar` is portable C++ with no heap and no exceptions: it builds for the
/// freestanding profile and is the reference every other back end is tested
/// against. The SIMD tags are declared in `kernels/simd/*.hpp` (host only).
#pragma once

namespace tinylarge::kernels {

/// Portable scalar back end; the reference for all others.
struct scalar {
  static constexpr const char* name() noexcept { return "scalar"; }
  /// Whether the compilation target has the instructions this back end needs.
  static constexpr bool supported() noexcept { return true; }
};

/// True for a type usable as a kernel back end tag.
template <class B>
concept backend = requires {
  { B::name() };
  { B::supported() };
} && B::supported();

}  // namespace tinylarge::kernels
