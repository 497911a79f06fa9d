// Checks that matter most for the ARM Linux back ends (kernels/simd/neon.hpp)
// but run on every target, for every back end it supports:
//  - the binary16 → fp32 conversion inside dense_f16 (NEON `vcvt_f32_f16`, or
//    the scalar fallback on armhf without neon-fp16) is exact for all 65 536
//    half values, on the GEMV (m = 1) and GEMM (m ≥ 2) paths and in the
//    vector body and tail of k;
//  - the back end chosen at compile time is the one the target macros promise.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <tuple>
#include <type_traits>
#include <vector>

#include "tinylarge/kernels/dense.hpp"

namespace {

namespace k = tinylarge::kernels;
namespace arch = tinylarge::arch;
using tinylarge::half;

using all_backends = std::tuple<arch::scalar, arch::avx2, arch::avx512, arch::avx512_vnni, arch::neon,
                                arch::neon_dotprod, arch::cortex_m_dsp>;

template <class F>
void for_each_backend(F&& f) {
  std::apply([&](auto... tags) { ((decltype(tags)::supported() ? f(tags) : void()), ...); }, all_backends{});
}

/// Same value, where -0 == +0 and every NaN equals every NaN.
bool same_value(float a, float b) { return (std::isnan(a) && std::isnan(b)) || a == b; }

}  // namespace

TEST_CASE("dense_f16: every binary16 value converts exactly on every back end", "[kernels][fp16][arm]") {
  // W is 65 536 × kk with w[o][p] = half(o) at p = slot and 0 elsewhere; x is
  // all ones. Then y[i][o] = half_to_float(o) exactly (one non-zero product,
  // a sum with zeros), and the value passes through the conversion at k
  // position `slot`: slot 0 and 5 of k = 8 are in the vector body, slot 1 of
  // k = 3 is in the tail.
  constexpr std::size_t n = 65536;
  struct layout {
    std::size_t kk, slot;
  };
  for (const layout l : {layout{1, 0}, layout{3, 1}, layout{8, 0}, layout{8, 5}}) {
    std::vector<half> w(n * l.kk);
    for (std::size_t o = 0; o < n; ++o) w[o * l.kk + l.slot] = half{static_cast<std::uint16_t>(o)};
    for (const std::size_t m : {std::size_t{1}, std::size_t{2}}) {
      const std::vector<float> x(m * l.kk, 1.0f);
      for_each_backend([&](auto tag) {
        std::vector<float> y(m * n);
        k::dense_f16(tag, m, n, l.kk, x.data(), w.data(), nullptr, y.data());
        std::size_t bad = 0, first_bad = n;
        for (std::size_t i = 0; i < m; ++i)
          for (std::size_t o = 0; o < n; ++o)
            if (!same_value(y[i * n + o], tinylarge::half_to_float(half{static_cast<std::uint16_t>(o)}))) {
              ++bad;
              if (first_bad == n) first_bad = o;
            }
        INFO(tag.name() << " m=" << m << " k=" << l.kk << " slot=" << l.slot << " first bad half bits=" << first_bad);
        CHECK(bad == 0);
      });
    }
  }
}

TEST_CASE("arch: the ARM Linux back end is selected from the target macros", "[arch][arm]") {
#if defined(__ARM_NEON) && defined(__ARM_FEATURE_DOTPROD)
  STATIC_REQUIRE(std::is_same_v<k::default_backend, arch::neon_dotprod>);
#elif defined(__ARM_NEON)
  STATIC_REQUIRE(std::is_same_v<k::default_backend, arch::neon>);
#else
  STATIC_REQUIRE_FALSE(arch::neon::supported());
  STATIC_REQUIRE_FALSE(arch::neon_dotprod::supported());
#endif
#if defined(__ARM_NEON)
  STATIC_REQUIRE(arch::neon::supported());
  STATIC_REQUIRE_FALSE(arch::avx2::supported());
  STATIC_REQUIRE_FALSE(arch::cortex_m_dsp::supported());
#endif
  std::string names;
  for_each_backend([&](auto tag) { names += std::string(names.empty() ? "" : " ") + tag.name(); });
  INFO("back ends of this build: " << names);
  CHECK(names.rfind("scalar", 0) == 0);
}
