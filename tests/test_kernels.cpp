// Tests of the dense / GEMM kernels: every back end the target supports
// against independent references (double-precision loops for fp32, 64-bit
// integer loops for int8) and, for int8, bit-exactly against the scalar back
// end. Built once without -march (scalar only) and once with -march=native.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <string>
#include <tuple>
#include <type_traits>
#include <vector>

#include "tinylarge/core/rng.hpp"
#include "tinylarge/kernels/dense.hpp"
#include "tinylarge/kernels/elementwise.hpp"
#include "tinylarge/nn/quantize.hpp"
#include "tinylarge/precision/bf16.hpp"
#include "tinylarge/precision/requantize.hpp"

namespace {

namespace k = tinylarge::kernels;
namespace arch = tinylarge::arch;
using tinylarge::half;
using k::transpose;

using all_backends = std::tuple<arch::scalar, arch::sse2, arch::dispatch, arch::avx2, arch::avx512, arch::avx512_vnni, arch::avx512_bf16, arch::neon,
                                arch::neon_dotprod, arch::cortex_m_dsp>;

/// Calls f(Tag{}) for every back end tag the translation unit supports.
template <class F>
void for_each_backend(F&& f) {
  std::apply([&](auto... tags) { ((decltype(tags)::supported() ? f(tags) : void()), ...); }, all_backends{});
}

std::string supported_backends() {
  std::string s;
  for_each_backend([&](auto tag) { s += std::string(s.empty() ? "" : " ") + tag.name(); });
  return s;
}

// Print once, before any test runs, which back ends this binary exercises.
const bool printed_backends = [] {
  std::printf("test_kernels: exercising back ends: %s (default_backend = %s)\n", supported_backends().c_str(),
              k::default_backend::name());
#if defined(TINYLARGE_DISPATCH) && TINYLARGE_USE_XSIMD && defined(__x86_64__)
  std::printf("test_kernels: arch::dispatch runs %s on this CPU\n", k::dispatched_backend_name());
#endif
  return true;
}();

std::vector<float> random_floats(tinylarge::rng& g, std::size_t n, float lo = -1.0f, float hi = 1.0f) {
  std::vector<float> v(n);
  for (auto& x : v) x = g.uniform(lo, hi);
  return v;
}

std::vector<std::int8_t> random_s8(tinylarge::rng& g, std::size_t n, int lo = -128, int hi = 127) {
  std::vector<std::int8_t> v(n);
  for (auto& x : v) x = static_cast<std::int8_t>(lo + static_cast<int>(g.uniform_int(static_cast<std::uint32_t>(hi - lo + 1))));
  return v;
}

/// Tolerance of an fp32 sum of `k` products relative to Σ|terms| (γ_{k+4} with
/// unit roundoff 2⁻²⁴, doubled): blocked and vectorised summation orders stay
/// well inside; an indexing error does not.
double fp32_tol(std::size_t kk) { return 2.0 * static_cast<double>(kk + 4) * 0x1.0p-24; }

struct gemm_case {
  std::size_t m, n, kk;
};

/// The first 64-byte aligned address at or after p (buffers have 64 bytes of slack).
template <class T>
T* aligned64(T* p) {
  const auto a = reinterpret_cast<std::uintptr_t>(p);
  return reinterpret_cast<T*>(a + (64 - a % 64) % 64);
}

}  // namespace

TEST_CASE("kernels: the back ends exercised by this build", "[kernels]") {
  CHECK(printed_backends);
  const std::string s = supported_backends();
  INFO("back ends: " << s);
  CHECK(s.rfind("scalar", 0) == 0);
#if !TINYLARGE_USE_XSIMD
  // TINYLARGE_USE_XSIMD=OFF: the portable back end only, whatever the target has.
  CHECK(std::string(k::default_backend::name()) == "scalar");
  CHECK(k::dense_f32_packed_floats(k::default_backend{}, 300, 784) == 0);
#else
#if defined(__x86_64__)
  CHECK(s.find("sse2") != std::string::npos);
  CHECK(k::dense_f32_packed_floats(k::default_backend{}, 300, 784) > 0);  // every xsimd back end has one
#endif
#endif
#if TINYLARGE_USE_XSIMD && defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
  CHECK(s.find("avx2") != std::string::npos);
  // the x86 back ends have the pre-packed batch-1 layouts that the tests below exercise
  CHECK(k::dense_f32_packed_floats(k::default_backend{}, 300, 784) > 0);
#endif
#if TINYLARGE_USE_XSIMD && defined(__AVX512VNNI__) && defined(__AVX512BW__) && defined(__AVX512DQ__) && \
    defined(__AVX512VL__)
  CHECK(k::dense_s8_packed_bytes(k::default_backend{}, 300, 784) > 0);
#endif
}

TEST_CASE("gemm_f32: every back end, transpose case and beta against a double reference", "[kernels][gemm]") {
  // Shapes cover: m = 1 (GEMV path when op(B) = Bᵀ), row tails of the 4-, 5-,
  // 8- and 14-row micro-kernels, column tails of the 8/16/32-column panels, k
  // beyond one k block (KC = 256), m beyond one A block (MC = 64 / 80 / 128 /
  // 140), n beyond one B block (NC = 4096), and k = 0. 151×70×100: several A
  // blocks × several panels, each back end's last A block ending in a row tail
  // (151 = 140 + 11 = 80 + 71 = 2·64 + 23 = 128 + 23) and a 6-column tail.
  const gemm_case cases[] = {{1, 1, 1},    {1, 17, 255},  {1, 1000, 3},  {3, 17, 255},  {17, 3, 1000},
                             {17, 255, 17}, {255, 17, 3}, {151, 70, 100}, {1000, 17, 17}, {3, 1000, 17},
                             {17, 33, 1000}, {3, 4100, 5}, {3, 5, 0},     {1, 3, 1000}};
  const float betas[] = {0.0f, 1.0f, 0.5f};
  tinylarge::rng g(42);
  std::size_t idx = 0;
  for (const auto& cs : cases) {
    for (int t = 0; t < 4; ++t, ++idx) {
      const auto ta = (t & 1) ? transpose::yes : transpose::no;
      const auto tb = (t & 2) ? transpose::yes : transpose::no;
      const float beta = betas[idx % 3];
      const float alpha = (idx % 2) ? 1.0f : -0.75f;
      const std::size_t m = cs.m, n = cs.n, kk = cs.kk;
      // Stored shapes and padded leading dimensions (+3) exercise the strides.
      const std::size_t arows = ta == transpose::no ? m : kk, acols = ta == transpose::no ? kk : m;
      const std::size_t brows = tb == transpose::no ? kk : n, bcols = tb == transpose::no ? n : kk;
      const std::size_t lda = acols + 3, ldb = bcols + 3, ldc = n + 3;
      // +1: every operand starts one float past a 64-byte boundary of the vector.
      const auto abuf = random_floats(g, arows * lda + 1), bbuf = random_floats(g, brows * ldb + 1);
      const auto c0 = random_floats(g, m * ldc + 1);
      const float* a = abuf.data() + 1;
      const float* b = bbuf.data() + 1;
      // op(A) by rows and op(B) by columns, widened to double once (opb[j·k + p] = op(B)[p][j]).
      std::vector<double> opa(m * kk), opb(n * kk);
      for (std::size_t i = 0; i < m; ++i)
        for (std::size_t p = 0; p < kk; ++p) opa[i * kk + p] = ta == transpose::no ? a[i * lda + p] : a[p * lda + i];
      for (std::size_t j = 0; j < n; ++j)
        for (std::size_t p = 0; p < kk; ++p) opb[j * kk + p] = tb == transpose::no ? b[p * ldb + j] : b[j * ldb + p];
      std::vector<double> ref(m * n), mag(m * n);
      for (std::size_t i = 0; i < m; ++i)
        for (std::size_t j = 0; j < n; ++j) {
          double s = 0.0, sa = 0.0;
          const double* ai = opa.data() + i * kk;
          const double* bj = opb.data() + j * kk;
          for (std::size_t p = 0; p < kk; ++p) {
            s += ai[p] * bj[p];
            sa += std::fabs(ai[p] * bj[p]);
          }
          const double cij = beta == 0.0f ? 0.0 : static_cast<double>(c0[1 + i * ldc + j]);
          ref[i * n + j] = alpha * s + beta * cij;
          mag[i * n + j] = std::fabs(alpha) * sa + std::fabs(beta * cij);
        }
      for_each_backend([&](auto tag) {
        auto cbuf = c0;
        float* c = cbuf.data() + 1;
        if (beta == 0.0f)  // beta = 0 must not read C
          for (std::size_t i = 0; i < m * ldc; ++i) c[i] = std::numeric_limits<float>::quiet_NaN();
        k::gemm_f32(tag, ta, tb, m, n, kk, alpha, a, lda, b, ldb, beta, c, ldc);
        std::size_t bad = 0;
        double worst = 0.0;
        for (std::size_t i = 0; i < m; ++i)
          for (std::size_t j = 0; j < n; ++j) {
            const double err = std::fabs(c[i * ldc + j] - ref[i * n + j]);
            const double lim = fp32_tol(kk) * mag[i * n + j] + 1e-30;
            if (!(err <= lim)) ++bad;
            if (err / lim > worst) worst = err / lim;
          }
        // The padding between rows of C is never written.
        std::size_t pad_touched = 0;
        for (std::size_t i = 0; i < m; ++i)
          for (std::size_t j = n; j < ldc && i * ldc + j < m * ldc; ++j)
            if (std::isnan(c[i * ldc + j]) != (beta == 0.0f) ||
                (beta != 0.0f && c[i * ldc + j] != c0[1 + i * ldc + j]))
              ++pad_touched;
        INFO(tag.name() << " m=" << m << " n=" << n << " k=" << kk << " ta=" << (t & 1) << " tb=" << (t >> 1)
                        << " alpha=" << alpha << " beta=" << beta << " worst err/tol=" << worst);
        CHECK(bad == 0);
        CHECK(pad_touched == 0);
      });
    }
  }
}

// The plain SGD step fused into the weight-gradient GEMM (issue 24): on every
// back end, W − η·(Aᵀ·B) must be bit for bit the gradient GEMM (beta 0) into a
// buffer followed by sgd_step (μ = λ = 0) — for k within one k block (the
// fused epilogue on the SIMD back ends) and beyond it (k = 300: gradient
// buffer, then the step), row and column tails, padded strides, ±0 and
// exact-zero weights, and η = 0 (which must leave W exactly as sgd_step does).
TEST_CASE("sgd_gemm_tn_f32: the fused SGD step equals gemm_f32 + sgd_step bit for bit", "[kernels][gemm][sgd]") {
  const gemm_case cases[] = {{1000, 784, 64}, {100, 1000, 64}, {10, 100, 30}, {17, 33, 1},
                             {151, 70, 256},  {33, 47, 300},   {3, 5, 0}};
  tinylarge::rng g(24);
  for (const auto& cs : cases) {
    for (const float lr : {0.01f, 0.37f, 0.0f}) {
      const std::size_t m = cs.m, n = cs.n, kk = cs.kk;
      const std::size_t lda = m + 2, ldb = n + 5, ldw = n + 3;
      auto a = random_floats(g, kk * lda + 1), b = random_floats(g, kk * ldb + 1);
      for (std::size_t i = 0; i < b.size(); i += 3) b[i] = 0.0f;  // exact zeros in X, as after a relu
      auto w0 = random_floats(g, m * ldw);
      for (std::size_t i = 0; i < w0.size(); i += 7) w0[i] = (i % 2) ? 0.0f : -0.0f;
      for_each_backend([&](auto tag) {
        auto want = w0, got = w0;
        std::vector<float> grad(m * n), scratch(m * n);
        k::gemm_f32(tag, transpose::yes, transpose::no, m, n, kk, 1.0f, a.data() + 1, lda, b.data() + 1, ldb, 0.0f,
                    grad.data(), n);
        for (std::size_t r = 0; r < m; ++r)
          k::sgd_step(tag, n, k::sgd_params<float>{lr, 0.0f, 0.0f, false}, want.data() + r * ldw,
                      grad.data() + r * n, static_cast<float*>(nullptr));
        k::sgd_gemm_tn_f32(tag, m, n, kk, lr, a.data() + 1, lda, b.data() + 1, ldb, got.data(), ldw, scratch.data());
        std::size_t differ = 0, changed = 0;
        for (std::size_t i = 0; i < want.size(); ++i) {
          differ += std::memcmp(&want[i], &got[i], sizeof(float)) != 0 ? 1 : 0;
          changed += w0[i] != got[i] ? 1 : 0;  // by value: η = 0 may turn −0 into +0, as sgd_step does
        }
        INFO(tag.name() << " m=" << m << " n=" << n << " k=" << kk << " lr=" << lr);
        CHECK(differ == 0);
        CHECK((changed == 0) == (lr == 0.0f || kk == 0));  // the step did something (and η = 0 nothing)
      });
    }
  }
}

// The SIMD back ends compute a small batch through a large W as Yᵀ = W·Xᵀ
// with W read in place (detail::dense_wxt, no packing of W): the sums and
// their order are the packed GEMM's, so dense_f32 must equal gemm_f32 over
// rows that start as the bias, bit for bit — batch 64 through LeNet's layers,
// 32 samples (one column panel) with row tails (n = 301), k over several k
// blocks (k = 784, 600) and one (k = 100). Zero skipping is off, so the
// in-place path is the one that runs where it pays (checked on this build's
// back end). SIMD builds only: the scalar back end has neither path.
#if TINYLARGE_USE_XSIMD
TEST_CASE("dense_f32: W read in place (Yᵀ = W·Xᵀ) equals the packed GEMM bit for bit", "[kernels][dense]") {
  const gemm_case cases[] = {{64, 1000, 784}, {64, 300, 784}, {32, 301, 600}, {16, 1000, 100}, {64, 100, 1000}};
  const k::zero_skip saved = k::zero_skip_mode;
  k::zero_skip_mode = k::zero_skip::never;
  tinylarge::rng g(25);
  for (const auto& cs : cases) {
    const std::size_t m = cs.m, n = cs.n, kk = cs.kk;
    auto x = random_floats(g, m * kk);
    for (std::size_t i = 0; i < x.size(); i += 2) x[i] = 0.0f;
    const auto w = random_floats(g, n * kk), bias = random_floats(g, n);
    using V = k::detail::f32_ops_of<k::default_backend>;
    if (m == 64 && n == 1000) CHECK(k::detail::dense_wxt_pays<V>(m, n, kk));  // LeNet-1000's first layer, batch 64
    for_each_backend([&](auto tag) {
      if constexpr (k::xsimd_backend<decltype(tag)>) {
        std::vector<float> y(m * n), ref(m * n);
        for (std::size_t i = 0; i < m; ++i) std::copy(bias.begin(), bias.end(), ref.begin() + i * n);
        k::gemm_f32(tag, transpose::no, transpose::yes, m, n, kk, 1.0f, x.data(), kk, w.data(), kk, 1.0f, ref.data(), n);
        k::dense_f32(tag, m, n, kk, x.data(), w.data(), bias.data(), y.data());
        INFO(tag.name() << " m=" << m << " n=" << n << " k=" << kk);
        CHECK(std::memcmp(y.data(), ref.data(), y.size() * sizeof(float)) == 0);
      }
    });
  }
  k::zero_skip_mode = saved;
}
#endif

TEST_CASE("dense_f32 and dense_f16: every back end against a double reference", "[kernels][dense]") {
  const gemm_case cases[] = {{1, 256, 784}, {1, 17, 1000}, {1, 3, 255}, {1, 1, 1},    {1, 13, 5},
                             {3, 17, 255},  {17, 3, 1000}, {64, 33, 17}, {255, 17, 3}, {17, 1000, 17},
                             {1, 5, 0},     {3, 5, 0}};
  tinylarge::rng g(7);
  int variant = 0;
  for (const auto& cs : cases) {
    for (const bool with_bias : {true, false}) {
      ++variant;
      const std::size_t m = cs.m, n = cs.n, kk = cs.kk;
      const auto xbuf = random_floats(g, m * kk + 1), wbuf = random_floats(g, n * kk + 1);
      const auto bbuf = random_floats(g, n + 1);
      std::vector<half> hbuf(n * kk + 1);
      for (std::size_t i = 0; i < hbuf.size(); ++i) hbuf[i] = tinylarge::float_to_half(wbuf[i]);
      const float* x = xbuf.data() + 1;
      const float* w = wbuf.data() + 1;
      const half* wh = hbuf.data() + 1;
      const float* bias = with_bias ? bbuf.data() + 1 : nullptr;
      std::vector<double> ref32(m * n), ref16(m * n), mag32(m * n), mag16(m * n);
      for (std::size_t i = 0; i < m; ++i)
        for (std::size_t o = 0; o < n; ++o) {
          double s32 = bias ? bias[o] : 0.0, s16 = s32, a32 = std::fabs(s32), a16 = a32;
          for (std::size_t p = 0; p < kk; ++p) {
            const double xv = x[i * kk + p];
            const double w16 = tinylarge::half_to_float(wh[o * kk + p]);
            s32 += xv * w[o * kk + p];
            a32 += std::fabs(xv * w[o * kk + p]);
            s16 += xv * w16;
            a16 += std::fabs(xv * w16);
          }
          ref32[i * n + o] = s32;
          ref16[i * n + o] = s16;
          mag32[i * n + o] = a32;
          mag16[i * n + o] = a16;
        }
      for_each_backend([&](auto tag) {
        std::vector<float> y32(m * n + 1, std::numeric_limits<float>::quiet_NaN()), y16 = y32;
        k::dense_f32(tag, m, n, kk, x, w, bias, y32.data() + 1);
        k::dense_f16(tag, m, n, kk, x, wh, bias, y16.data() + 1);
        std::size_t bad32 = 0, bad16 = 0;
        for (std::size_t e = 0; e < m * n; ++e) {
          if (!(std::fabs(y32[e + 1] - ref32[e]) <= fp32_tol(kk) * mag32[e] + 1e-30)) ++bad32;
          if (!(std::fabs(y16[e + 1] - ref16[e]) <= fp32_tol(kk) * mag16[e] + 1e-30)) ++bad16;
        }
        INFO(tag.name() << " m=" << m << " n=" << n << " k=" << kk << " bias=" << with_bias);
        CHECK(bad32 == 0);
        CHECK(bad16 == 0);
        CHECK(std::isnan(y32[0]));  // nothing written before Y
      });
    }
  }
  CHECK(variant == 24);
}

namespace {
/// The value of `v` rounded to the storage type T and widened back (exact).
template <class T>
float stored(float v) {
  if constexpr (std::is_same_v<T, half>) return tinylarge::half_to_float(tinylarge::float_to_half(v));
  else if constexpr (std::is_same_v<T, tinylarge::bfloat16>) return tinylarge::bfloat16_to_float(tinylarge::float_to_bfloat16(v));
  else return v;
}
template <class T>
T encode(float v) {
  if constexpr (std::is_same_v<T, half>) return tinylarge::float_to_half(v);
  else if constexpr (std::is_same_v<T, tinylarge::bfloat16>) return tinylarge::float_to_bfloat16(v);
  else return v;
}
}  // namespace

// Error bound of the low-precision kernels: the stored values are widened
// exactly and every product of two binary16 / bfloat16 values is exact in
// fp32, so the only error is the fp32 summation, checked with the same bound
// as the fp32 kernels, 2(k + 4)·2⁻²⁴·Σ|terms|, plus 2⁻¹²⁰·k absolute for back
// ends that flush subnormal products (AVX512-BF16 VDPBF16PS).
TEMPLATE_TEST_CASE("gemm<T> and dense<TX, T>: half and bfloat16 against a double reference", "[kernels][lowp]",
                   float, tinylarge::half, tinylarge::bfloat16) {
  using T = TestType;
  // 30×96×520: several full row tiles and a row tail (30 = 2·14 + 2 = 3·8 + 6 = 7·4 + 2;
  // 6·5 without one), whole 32/16/8-column panels only, three balanced k blocks
  // of an even k (bfloat16 pairs); {17, 33, 1000} has the column tails, {255, 17, 3}
  // several A blocks.
  const gemm_case cases[] = {{1, 256, 784}, {1, 17, 255}, {3, 17, 255}, {17, 33, 1000}, {30, 96, 520},
                             {255, 17, 3},  {5, 40, 33},  {3, 5, 0},    {33, 65, 31}};
  tinylarge::rng g(11);
  std::size_t idx = 0;
  for (const auto& cs : cases) {
    for (int t = 0; t < 4; ++t, ++idx) {
      const auto ta = (t & 1) ? transpose::yes : transpose::no;
      const auto tb = (t & 2) ? transpose::yes : transpose::no;
      const float beta = idx % 3 == 0 ? 0.0f : 0.5f, alpha = idx % 2 ? 1.0f : -0.75f;
      const std::size_t m = cs.m, n = cs.n, kk = cs.kk;
      const std::size_t arows = ta == transpose::no ? m : kk, acols = ta == transpose::no ? kk : m;
      const std::size_t brows = tb == transpose::no ? kk : n, bcols = tb == transpose::no ? n : kk;
      const std::size_t lda = acols + 1, ldb = bcols + 2, ldc = n + 3;
      const auto af = random_floats(g, arows * lda), bf = random_floats(g, brows * ldb), c0 = random_floats(g, m * ldc);
      std::vector<T> a(af.size()), b(bf.size());
      for (std::size_t e = 0; e < af.size(); ++e) a[e] = encode<T>(af[e]);
      for (std::size_t e = 0; e < bf.size(); ++e) b[e] = encode<T>(bf[e]);
      // The reference reads op(A) row by row and op(B) column by column, as stored values
      // widened to double once here (not in the loop: the conversions dominated the test's time).
      std::vector<double> opa(m * kk), opb(n * kk);  // opa[i·k + p] = op(A)[i][p], opb[j·k + p] = op(B)[p][j]
      for (std::size_t i = 0; i < m; ++i)
        for (std::size_t p = 0; p < kk; ++p)
          opa[i * kk + p] = stored<T>(ta == transpose::no ? af[i * lda + p] : af[p * lda + i]);
      for (std::size_t j = 0; j < n; ++j)
        for (std::size_t p = 0; p < kk; ++p)
          opb[j * kk + p] = stored<T>(tb == transpose::no ? bf[p * ldb + j] : bf[j * ldb + p]);
      std::vector<double> ref(m * n), mag(m * n);
      for (std::size_t i = 0; i < m; ++i)
        for (std::size_t j = 0; j < n; ++j) {
          double s = 0.0, sa = 0.0;
          const double* ai = opa.data() + i * kk;
          const double* bj = opb.data() + j * kk;
          for (std::size_t p = 0; p < kk; ++p) {
            s += ai[p] * bj[p];
            sa += std::fabs(ai[p] * bj[p]);
          }
          const double cij = beta == 0.0f ? 0.0 : static_cast<double>(c0[i * ldc + j]);
          ref[i * n + j] = alpha * s + beta * cij;
          mag[i * n + j] = std::fabs(alpha) * sa + std::fabs(beta * cij);
        }
      auto check = [&](const char* name, const std::vector<float>& c) {
        std::size_t bad = 0;
        for (std::size_t i = 0; i < m; ++i)
          for (std::size_t j = 0; j < n; ++j) {
            const double err = std::fabs(c[i * ldc + j] - ref[i * n + j]);
            if (!(err <= fp32_tol(kk) * mag[i * n + j] + 0x1.0p-120 * static_cast<double>(kk) + 1e-30)) ++bad;
          }
        INFO(name << " m=" << m << " n=" << n << " k=" << kk << " ta=" << (t & 1) << " tb=" << (t >> 1));
        CHECK(bad == 0);
      };
      for_each_backend([&](auto tag) {
        auto c = c0;
        if (beta == 0.0f) std::fill(c.begin(), c.end(), std::numeric_limits<float>::quiet_NaN());
        k::gemm(tag, ta, tb, m, n, kk, alpha, a.data(), lda, b.data(), ldb, beta, c.data(), ldc);
        check(tag.name(), c);
      });
      auto c = c0;
      k::gemm(ta, tb, m, n, kk, alpha, a.data(), lda, b.data(), ldb, beta, c.data(), ldc);  // default_backend
      check("default", c);
    }
    // dense<float, T> and dense<T, T>: Y = X·Wᵀ + bias.
    const std::size_t m = cs.m, n = cs.n, kk = cs.kk;
    const auto xf = random_floats(g, m * kk), wf = random_floats(g, n * kk), bias = random_floats(g, n);
    std::vector<T> xt(xf.size()), wt(wf.size());
    for (std::size_t e = 0; e < xf.size(); ++e) xt[e] = encode<T>(xf[e]);
    for (std::size_t e = 0; e < wf.size(); ++e) wt[e] = encode<T>(wf[e]);
    std::vector<double> xs(xf.size()), ws(wf.size());  // stored values, widened once
    for (std::size_t e = 0; e < xf.size(); ++e) xs[e] = stored<T>(xf[e]);
    for (std::size_t e = 0; e < wf.size(); ++e) ws[e] = stored<T>(wf[e]);
    for (const bool low_x : {false, true}) {
      std::vector<double> ref(m * n), mag(m * n);
      for (std::size_t i = 0; i < m; ++i)
        for (std::size_t o = 0; o < n; ++o) {
          double s = bias[o], sa = std::fabs(bias[o]);
          for (std::size_t p = 0; p < kk; ++p) {
            const double xv = low_x ? xs[i * kk + p] : static_cast<double>(xf[i * kk + p]);
            s += xv * ws[o * kk + p];
            sa += std::fabs(xv * ws[o * kk + p]);
          }
          ref[i * n + o] = s;
          mag[i * n + o] = sa;
        }
      for_each_backend([&](auto tag) {
        std::vector<float> y(m * n, std::numeric_limits<float>::quiet_NaN());
        if (low_x) k::dense(tag, m, n, kk, xt.data(), wt.data(), bias.data(), y.data());
        else k::dense(tag, m, n, kk, xf.data(), wt.data(), bias.data(), y.data());
        std::size_t bad = 0;
        for (std::size_t e = 0; e < m * n; ++e)
          if (!(std::fabs(y[e] - ref[e]) <= fp32_tol(kk) * mag[e] + 0x1.0p-120 * static_cast<double>(kk) + 1e-30)) ++bad;
        INFO(tag.name() << " dense m=" << m << " n=" << n << " k=" << kk << " low_x=" << low_x);
        CHECK(bad == 0);
      });
    }
  }
}

TEST_CASE("kernels: the overloads without a tag use default_backend", "[kernels]") {
  tinylarge::rng g(3);
  const std::size_t m = 5, n = 37, kk = 129;
  const auto x = random_floats(g, m * kk), w = random_floats(g, n * kk), b = random_floats(g, n);
  std::vector<float> y1(m * n), y2(m * n);
  k::dense_f32(m, n, kk, x.data(), w.data(), b.data(), y1.data());
  k::dense_f32(k::default_backend{}, m, n, kk, x.data(), w.data(), b.data(), y2.data());
  CHECK(y1 == y2);
  k::gemm_f32(transpose::no, transpose::yes, m, n, kk, 1.0f, x.data(), kk, w.data(), kk, 0.0f, y1.data(), n);
  k::gemm_f32(k::default_backend{}, transpose::no, transpose::yes, m, n, kk, 1.0f, x.data(), kk, w.data(), kk,
              0.0f, y2.data(), n);
  CHECK(y1 == y2);
}

namespace {

struct s8_setup {
  std::int32_t zx, zy;
  bool per_channel, with_bias, with_row_sums;
  std::int8_t act_min, act_max;
};

/// Runs dense_s8_s32 and dense_s8 on every back end: accumulators must equal
/// an int64 reference exactly, outputs must equal the scalar back end bit for
/// bit and the reference requantization of the int64 accumulators.
void check_s8(std::size_t m, std::size_t n, std::size_t kk, const std::int8_t* x, const std::int8_t* w,
              const std::vector<std::int32_t>& bias, const s8_setup& s, tinylarge::rng& g) {
  std::vector<std::int32_t> mult(n), sums(n);
  std::vector<int> shift(n);
  for (std::size_t o = 0; o < n; ++o) {
    // Real multipliers mostly in [2⁻²¹, 1) (right shifts); one in four in
    // [1, 2⁸) so that the saturating left shift of requantization is covered.
    const int e = g.uniform_int(4) == 0 ? static_cast<int>(g.uniform_int(8)) : -1 - static_cast<int>(g.uniform_int(20));
    const auto q = tinylarge::quantize_multiplier(std::ldexp(0.5 + 0.5 * g.uniform(), e + 1));
    mult[o] = q.multiplier;
    shift[o] = q.shift;
    std::int64_t sw = 0;
    for (std::size_t p = 0; p < kk; ++p) sw += w[o * kk + p];
    sums[o] = static_cast<std::int32_t>(sw);
  }
  k::dense_s8_params p;
  p.input_zero_point = s.zx;
  p.output_zero_point = s.zy;
  p.multipliers = mult.data();
  p.shifts = shift.data();
  p.per_channel = s.per_channel;
  p.bias = s.with_bias ? bias.data() : nullptr;
  p.weight_row_sums = s.with_row_sums ? sums.data() : nullptr;
  p.act_min = s.act_min;
  p.act_max = s.act_max;

  std::vector<std::int64_t> ref(m * n);
  std::vector<std::int8_t> yref(m * n);
  for (std::size_t i = 0; i < m; ++i)
    for (std::size_t o = 0; o < n; ++o) {
      std::int64_t acc = s.with_bias ? bias[o] : 0;
      for (std::size_t q = 0; q < kk; ++q)
        acc += (static_cast<std::int64_t>(x[i * kk + q]) - s.zx) * w[o * kk + q];
      REQUIRE(acc >= std::numeric_limits<std::int32_t>::min());
      REQUIRE(acc <= std::numeric_limits<std::int32_t>::max());
      ref[i * n + o] = acc;
      const std::size_t c = s.per_channel ? o : 0;
      std::int64_t v = tinylarge::multiply_by_quantized_multiplier(static_cast<std::int32_t>(acc), mult[c], shift[c]);
      v = std::min<std::int64_t>(std::max<std::int64_t>(v + s.zy, s.act_min), s.act_max);
      yref[i * n + o] = static_cast<std::int8_t>(v);
    }
  std::vector<std::int8_t> yscalar(m * n);
  k::dense_s8(arch::scalar{}, m, n, kk, x, w, p, yscalar.data());
  for_each_backend([&](auto tag) {
    std::vector<std::int32_t> acc(m * n + 2, 0x5a5a5a5a);
    std::vector<std::int8_t> y(m * n + 2, 0x5a);
    k::dense_s8_s32(tag, m, n, kk, x, w, p, acc.data() + 1);
    k::dense_s8(tag, m, n, kk, x, w, p, y.data() + 1);
    std::size_t bad_acc = 0, bad_y = 0, bad_scalar = 0;
    for (std::size_t e = 0; e < m * n; ++e) {
      if (acc[e + 1] != ref[e]) ++bad_acc;
      if (y[e + 1] != yref[e]) ++bad_y;
      if (y[e + 1] != yscalar[e]) ++bad_scalar;
    }
    INFO(tag.name() << " m=" << m << " n=" << n << " k=" << kk << " zx=" << s.zx << " zy=" << s.zy
                    << " per_channel=" << s.per_channel << " bias=" << s.with_bias
                    << " row_sums=" << s.with_row_sums << " clamp=[" << int(s.act_min) << "," << int(s.act_max) << "]");
    CHECK(bad_acc == 0);
    CHECK(bad_y == 0);
    CHECK(bad_scalar == 0);
    CHECK(acc.front() == 0x5a5a5a5a);  // no writes outside the output
    CHECK(acc.back() == 0x5a5a5a5a);
    CHECK(y.front() == 0x5a);
    CHECK(y.back() == 0x5a);
    // The pre-packed batch-1 form (quantized_network's fast path), where the
    // back end has one: bit-exact with the scalar back end too. (Unqualified
    // calls: clang rejects a qualified call whose only visible overload is
    // the deleted scalar one, even in a discarded branch.)
    using k::dense_s8_packed;
    using k::pack_dense_s8;
    if constexpr (requires { pack_dense_s8(tag, n, kk, w, p, static_cast<std::int8_t*>(nullptr)); }) {
      const std::size_t bytes = k::dense_s8_packed_bytes(tag, n, kk);
      if (m == 1 && bytes > 0) {
        std::vector<std::int8_t> buf(bytes + 64);
        std::int8_t* packed = aligned64(buf.data());
        pack_dense_s8(tag, n, kk, w, p, packed);
        std::vector<std::int8_t> yp(n + 2, 0x5a);
        dense_s8_packed(tag, n, kk, x, packed, p, yp.data() + 1);
        std::size_t bad_packed = 0;
        for (std::size_t o = 0; o < n; ++o) bad_packed += yp[o + 1] != yscalar[o] ? 1 : 0;
        CHECK(bad_packed == 0);
        CHECK(yp.front() == 0x5a);
        CHECK(yp.back() == 0x5a);
      }
    }
    // The pre-packed GEMM form (any m), where the back end has one: int32 and
    // requantized outputs, bit-exact, nothing written outside them.
    using k::dense_s8_gemm_packed;
    using k::dense_s8_s32_gemm_packed;
    using k::pack_dense_s8_gemm;
    if constexpr (requires { pack_dense_s8_gemm(tag, n, kk, w, p, static_cast<std::int8_t*>(nullptr)); }) {
      const std::size_t bytes = k::dense_s8_gemm_packed_bytes(tag, n, kk);
      REQUIRE(bytes > 0);
      std::vector<std::int8_t> buf(bytes + 64);
      std::int8_t* packed = aligned64(buf.data());
      pack_dense_s8_gemm(tag, n, kk, w, p, packed);
      std::vector<std::int32_t> accp(m * n + 2, 0x5a5a5a5a);
      std::vector<std::int8_t> yp(m * n + 2, 0x5a);
      dense_s8_s32_gemm_packed(tag, m, n, kk, x, packed, accp.data() + 1);
      dense_s8_gemm_packed(tag, m, n, kk, x, packed, p, yp.data() + 1);
      std::size_t bad_accp = 0, bad_yp = 0;
      for (std::size_t e = 0; e < m * n; ++e) {
        bad_accp += accp[e + 1] != ref[e] ? 1 : 0;
        bad_yp += yp[e + 1] != yscalar[e] ? 1 : 0;
      }
      CHECK(bad_accp == 0);
      CHECK(bad_yp == 0);
      CHECK(accp.front() == 0x5a5a5a5a);
      CHECK(accp.back() == 0x5a5a5a5a);
      CHECK(yp.front() == 0x5a);
      CHECK(yp.back() == 0x5a);
    }
  });
}

}  // namespace

TEST_CASE("dense_s8: every back end bit-exact, zero points, per-channel, clamps", "[kernels][int8]") {
  // k ∈ {1, 3, 17, 255, 1000} covers the 4-byte groups of VNNI, the 16- and
  // 64-byte chunks and one 1024-byte k block; m = 1 is the GEMV path, m ≥ 2
  // the packed GEMM: row blocks of 1..6 rows (m = 4, 7, 11, 17, 255 …) and
  // 64-output panels with 1..4 vectors and partial ones (n = 3, 17, 33, 70,
  // 129, 255, 1000).
  const gemm_case cases[] = {{1, 1, 1},     {1, 3, 17},     {1, 17, 255},  {1, 256, 784}, {1, 5, 1000},
                             {3, 17, 255},  {17, 3, 1000},  {17, 255, 17}, {255, 17, 3},  {64, 256, 784},
                             {3, 1000, 17}, {30, 33, 1030}, {2, 7, 4100}, {1, 5, 0},     {4, 5, 0},
                             {4, 70, 33},   {7, 129, 5},    {11, 64, 1}};
  const s8_setup setups[] = {
      {0, 0, false, true, false, -128, 127},  {-5, 3, true, true, false, -128, 127},
      {17, -20, true, false, true, -20, 127}, {-128, 127, false, true, true, -100, 50},
      {127, -128, true, true, false, 0, 0},
  };
  tinylarge::rng g(99);
  std::size_t idx = 0;
  for (const auto& cs : cases) {
    for (int rep = 0; rep < 2; ++rep, ++idx) {
      const s8_setup& s = setups[idx % 5];
      const auto xbuf = random_s8(g, cs.m * cs.kk + 1), wbuf = random_s8(g, cs.n * cs.kk + 1);
      std::vector<std::int32_t> bias(cs.n);
      for (auto& b : bias) b = static_cast<std::int32_t>(g.uniform_int(1u << 20)) - (1 << 19);
      // +1 byte: unaligned x and W.
      check_s8(cs.m, cs.n, cs.kk, xbuf.data() + 1, wbuf.data() + 1, bias, s, g);
    }
  }
}

TEST_CASE("dense_s8: extreme values at the documented k bound do not overflow", "[kernels][int8]") {
  // (x − zx)·w = (−128 − 127)·(−128) = 32640 per product; k = 2¹⁶ gives
  // 2 139 095 040, and a bias of 2²³ − 1 brings it to 2³¹ − 1 exactly.
  const std::size_t kk = k::dense_s8_max_k;
  tinylarge::rng g(5);
  for (const std::size_t m : {std::size_t{1}, std::size_t{2}}) {
    const std::size_t n = 3;
    std::vector<std::int8_t> x(m * kk, -128), w(n * kk, -128);
    // Row 1 of W is all +127 (most negative sum), row 2 alternates.
    for (std::size_t q = 0; q < kk; ++q) {
      w[1 * kk + q] = 127;
      w[2 * kk + q] = (q % 2) ? 127 : -128;
    }
    const std::vector<std::int32_t> bias = {(1 << 23) - 1, -(1 << 23) + 1, 12345};
    check_s8(m, n, kk, x.data(), w.data(), bias, {127, 0, true, true, false, -128, 127}, g);
    check_s8(m, n, kk, x.data(), w.data(), bias, {127, 0, true, true, true, -128, 127}, g);
  }
  // And the most negative product: x = 127, zx = −128 → 255·(−128).
  std::vector<std::int8_t> x(2 * kk, 127), w(2 * kk, -128);
  const std::vector<std::int32_t> bias = {-(1 << 23) + 1, 0};
  check_s8(2, 2, kk, x.data(), w.data(), bias, {-128, 5, false, true, false, -128, 127}, g);
}

TEST_CASE("dense_f32_packed: the batch-1 packed layout against a double reference", "[kernels][dense][packed]") {
  // Inputs with runs of zeros (skipped by the kernel), fused relu / relu6,
  // chunk sizes 1..16 blocks, k tails; every back end with a packed layout.
  const gemm_case cases[] = {{1, 1, 1},    {1, 10, 100}, {1, 17, 3},   {1, 100, 300}, {1, 300, 784},
                             {1, 257, 17}, {1, 400, 33}, {1, 13, 1000}, {1, 5, 0}};
  tinylarge::rng g(11);
  std::size_t exercised = 0;
  for (const auto& cs : cases) {
    for (int variant = 0; variant < 3; ++variant) {
      const std::size_t n = cs.n, kk = cs.kk;
      auto x = random_floats(g, kk + 1);
      for (std::size_t p = 0; p < kk; ++p)
        if ((p / 7) % 2 == 0 || g.uniform() < 0.3f) x[p] = variant == 1 ? -0.0f : 0.0f;
      const auto w = random_floats(g, n * kk + 1), bias = random_floats(g, n + 1);
      const auto act = static_cast<tinylarge::fused_activation>(variant);
      std::vector<double> ref(n), mag(n);
      for (std::size_t o = 0; o < n; ++o) {
        double acc = bias[o], a = std::fabs(acc);
        for (std::size_t p = 0; p < kk; ++p) {
          acc += static_cast<double>(x[p]) * w[o * kk + p];
          a += std::fabs(static_cast<double>(x[p]) * w[o * kk + p]);
        }
        if (act != tinylarge::fused_activation::none) acc = std::max(acc, 0.0);
        if (act == tinylarge::fused_activation::relu6) acc = std::min(acc, 6.0);
        ref[o] = acc;
        mag[o] = a;
      }
      for_each_backend([&](auto tag) {
        using k::dense_f32_packed;  // unqualified calls: see check_s8
        using k::pack_dense_f32;
        if constexpr (requires { pack_dense_f32(tag, n, kk, w.data(), bias.data(), static_cast<float*>(nullptr)); }) {
          const std::size_t floats = k::dense_f32_packed_floats(tag, n, kk);
          REQUIRE(floats > 0);
          std::vector<float> buf(floats + 16);
          float* packed = aligned64(buf.data());
          pack_dense_f32(tag, n, kk, w.data(), bias.data(), packed);
          std::vector<float> y(n + 2, std::numeric_limits<float>::quiet_NaN());
          dense_f32_packed(tag, n, kk, x.data(), packed, act, y.data() + 1);
          std::size_t bad = 0;
          for (std::size_t o = 0; o < n; ++o)
            if (!(std::fabs(y[o + 1] - ref[o]) <= fp32_tol(kk) * mag[o] + 1e-30)) ++bad;
          INFO(tag.name() << " n=" << n << " k=" << kk << " activation=" << variant);
          CHECK(bad == 0);
          CHECK(std::isnan(y.front()));  // nothing written outside y
          CHECK(std::isnan(y.back()));
          ++exercised;
        } else {
          CHECK(k::dense_f32_packed_floats(tag, n, kk) == 0);  // no packed form: callers use dense_f32
        }
      });
    }
  }
#if TINYLARGE_USE_XSIMD && (defined(__x86_64__) || defined(__ARM_NEON))
  CHECK(exercised > 0);  // every xsimd back end (sse2, avx2, avx512, neon) has the packed form
#endif
}

TEST_CASE("quantize_s8: every back end bit-exact with tl::quantize", "[kernels][int8]") {
  tinylarge::rng g(3);
  const tinylarge::quant_params qps[] = {{0.0123f, -7}, {1.0f / 255.0f, -128}, {0.5f, 0}, {3.0f, 100}};
  const tinylarge::quant_range ranges[] = {{-128, 127}, {-128, 127}, {-127, 127}, {-20, 50}};
  for (std::size_t c = 0; c < 4; ++c) {
    const auto qp = qps[c];
    std::vector<float> x(1003);
    for (auto& v : x) v = g.uniform(-300.0f, 300.0f) * qp.scale;
    // exact ties (±0.5, ±1.5 steps), values just below a tie, ±0, specials, huge
    for (std::size_t i = 0; i < 200; ++i) x[i] = (static_cast<float>(i) - 100.0f + 0.5f) * qp.scale;
    x[200] = std::nextafter(0.5f * qp.scale, 0.0f);
    x[201] = -0.0f;
    x[202] = std::numeric_limits<float>::quiet_NaN();
    x[203] = std::numeric_limits<float>::infinity();
    x[204] = -std::numeric_limits<float>::infinity();
    x[205] = 3e38f;
    x[206] = -3e38f;
    x[207] = std::numeric_limits<float>::denorm_min();
    for (const std::size_t n : {std::size_t{1003}, std::size_t{16}, std::size_t{7}, std::size_t{0}}) {
      std::vector<std::int8_t> ref(n + 1, 0x5a);
      for (std::size_t i = 0; i < n; ++i) ref[i] = tinylarge::quantize(x[i], qp, ranges[c]);
      for_each_backend([&](auto tag) {
        std::vector<std::int8_t> q(n + 1, 0x5a);
        k::quantize_s8(tag, x.data(), n, qp, ranges[c], q.data());
        INFO(tag.name() << " case " << c << " n=" << n);
        CHECK(q == ref);  // includes the untouched guard byte
      });
    }
  }
}

TEST_CASE("dense_s8: requantization bit-exact at rounding ties, every shift, saturating cases", "[kernels][int8]") {
  // Batch 2 (GEMM epilogue) and batch 1 (GEMV). k = 0 makes acc = bias exactly, so each column tests one (acc, multiplier,
  // shift) triple of the vector requantization against the scalar function.
  // The accumulators are aimed at results in the int8 range (where the
  // output shows them): acc ≈ t·2^(31−shift)/M for targets t and small
  // offsets around them, which crosses both roundings' ties for every shift.
  tinylarge::rng g(2024);
  std::vector<std::int32_t> acc, mult;
  std::vector<int> shift;
  auto add = [&](std::int64_t a, std::int32_t m, int s) {
    if (a < std::numeric_limits<std::int32_t>::min() || a > std::numeric_limits<std::int32_t>::max()) return;
    acc.push_back(static_cast<std::int32_t>(a));
    mult.push_back(m);
    shift.push_back(s);
  };
  for (int s = -31; s <= 30; ++s) {
    for (int rep = 0; rep < 3; ++rep) {
      const auto m = rep == 0 ? std::int32_t{1} << 30 : static_cast<std::int32_t>((1u << 30) + g.uniform_int(1u << 30));
      for (int t = -140; t <= 140; t += (rep == 0 ? 1 : 7)) {
        const double center = std::ldexp(static_cast<double>(t), 31 - s) / m;
        for (int d = -3; d <= 3; ++d) add(static_cast<std::int64_t>(std::floor(center)) + d, m, s);
      }
    }
    // Extremes: saturating left shifts, a = m = INT_MIN, negative and zero multipliers.
    for (const std::int32_t a : {std::numeric_limits<std::int32_t>::min(), std::numeric_limits<std::int32_t>::max(),
                                 std::int32_t{0}, std::int32_t{-1}, std::int32_t{1}})
      for (const std::int32_t m : {std::numeric_limits<std::int32_t>::min(), std::numeric_limits<std::int32_t>::max(),
                                   std::int32_t{-5}, std::int32_t{0}, std::int32_t{1} << 30})
        add(a, m, s);
  }
  for (const std::int32_t zy : {0, -3}) {
    // v + zy overflows int32 for v near INT_MIN / INT_MAX (undefined in the
    // scalar function): those triples are tested with zy = 0 only.
    std::vector<std::int32_t> a, mu;
    std::vector<int> sh;
    std::vector<std::int8_t> ref;
    for (std::size_t o = 0; o < acc.size(); ++o) {
      const std::int64_t v = tinylarge::multiply_by_quantized_multiplier(acc[o], mult[o], shift[o]);
      if (v + zy < std::numeric_limits<std::int32_t>::min() || v + zy > std::numeric_limits<std::int32_t>::max())
        continue;
      a.push_back(acc[o]);
      mu.push_back(mult[o]);
      sh.push_back(shift[o]);
      ref.push_back(static_cast<std::int8_t>(std::min<std::int64_t>(std::max<std::int64_t>(v + zy, -128), 127)));
    }
    const std::size_t n = a.size();
    const std::vector<std::int8_t> row = ref;
    ref.insert(ref.end(), row.begin(), row.end());  // two identical rows
    k::dense_s8_params p;
    p.output_zero_point = zy;
    p.multipliers = mu.data();
    p.shifts = sh.data();
    p.per_channel = true;
    p.bias = a.data();
    const std::int8_t x[1] = {0};
    for_each_backend([&](auto tag) {
      std::vector<std::int8_t> y(2 * n, 0x5a);
      k::dense_s8(tag, 2, n, 0, x, x, p, y.data());  // m = 2: the GEMM path and its epilogue
      std::size_t bad = 0;
      for (std::size_t e = 0; e < 2 * n; ++e) bad += y[e] != ref[e] ? 1 : 0;
      INFO(tag.name() << " zy=" << zy << " columns=" << n);
      CHECK(bad == 0);
      // m = 1: the batch-1 GEMV and its requantization (16 lanes at a time on VNNI).
      std::vector<std::int8_t> y1(n + 1, 0x5a);
      k::dense_s8(tag, 1, n, 0, x, x, p, y1.data());
      std::size_t bad1 = 0;
      for (std::size_t e = 0; e < n; ++e) bad1 += y1[e] != ref[e] ? 1 : 0;
      CHECK(bad1 == 0);
      CHECK(y1[n] == 0x5a);  // nothing written past n
    });
  }
}

TEST_CASE("elementwise kernels: every back end against double references, odd lengths", "[kernels][elementwise]") {
  tinylarge::rng g(7);
  const std::size_t lengths[] = {0, 1, 3, 5, 7, 9, 15, 17, 31, 33, 63, 65, 101, 1031};
  // Relative tolerance of one fp32 operation chain; the reductions get (n + 16)·2⁻²⁴ of Σ|terms|.
  const auto near = [](double got, double want, double scale) {
    return std::fabs(got - want) <= 4e-7 * (std::fabs(want) + scale) + 1e-30;
  };
  for_each_backend([&](auto tag) {
    INFO("back end " << tag.name());
    for (const std::size_t n : lengths) {
      INFO("n = " << n);
      const auto x = random_floats(g, n, -3.0f, 3.0f);
      const auto y0 = random_floats(g, n, -3.0f, 3.0f);
      const auto r = random_floats(g, n);
      std::vector<float> x4[4];
      for (auto& v : x4) v = random_floats(g, n);
      const float c[4] = {0.25f, -1.5f, 0.125f, 3.0f};

      std::vector<float> y = y0;
      k::axpy(tag, n, 0.75f, x.data(), y.data());
      for (std::size_t i = 0; i < n; ++i) CHECK(near(y[i], double(y0[i]) + 0.75 * double(x[i]), 1.0));

      y = y0;
      k::scale(tag, n, -1.25f, y.data());
      for (std::size_t i = 0; i < n; ++i) CHECK(near(y[i], -1.25 * double(y0[i]), 0.0));

      const float* xp[4] = {x4[0].data(), x4[1].data(), x4[2].data(), x4[3].data()};
      for (int with_ref = 0; with_ref < 2; ++with_ref) {
        std::vector<float> a = y0, a1 = y0;
        if (with_ref != 0) {
          k::weighted_accumulate<4, false, true>(tag, n, xp, c, r.data(), a.data());
          k::weighted_accumulate<1, true, true>(tag, n, xp + 1, c + 1, r.data(), a1.data());
        } else {
          k::weighted_accumulate<4, false, false>(tag, n, xp, c, static_cast<const float*>(nullptr), a.data());
          k::weighted_accumulate<1, true, false>(tag, n, xp + 1, c + 1, static_cast<const float*>(nullptr),
                                                 a1.data());
        }
        for (std::size_t i = 0; i < n; ++i) {
          const double rr = with_ref != 0 ? double(r[i]) : 0.0;
          double s = 0.0, mag = std::fabs(double(y0[i]));
          for (int q = 0; q < 4; ++q) {
            s += double(c[q]) * (double(x4[q][i]) - rr);
            mag += std::fabs(double(c[q]) * (double(x4[q][i]) - rr));
          }
          CHECK(near(a[i], double(y0[i]) + s, 4.0 * mag));
          CHECK(near(a1[i], double(c[1]) * (double(x4[1][i]) - rr), 0.0));
        }
      }

      double d = 0.0, sq = 0.0, dist = 0.0, mag_d = 0.0;
      for (std::size_t i = 0; i < n; ++i) {
        d += double(x[i]) * double(y0[i]);
        mag_d += std::fabs(double(x[i]) * double(y0[i]));
        sq += double(x[i]) * double(x[i]);
        dist += (double(x[i]) - double(r[i])) * (double(x[i]) - double(r[i]));
      }
      const double red_tol = (double(n) + 16.0) * 0x1p-24;
      CHECK(std::fabs(k::dot(tag, n, x.data(), y0.data()) - d) <= red_tol * mag_d + 1e-30);
      CHECK(std::fabs(k::squared_norm(tag, n, x.data()) - sq) <= red_tol * sq + 1e-30);
      // The difference x − r is rounded once more in fp32.
      CHECK(std::fabs(k::squared_distance(tag, n, x.data(), r.data()) - dist) <= (red_tol + 0x1p-22) * dist + 1e-30);

      CHECK_FALSE(k::any_non_finite(tag, n, x.data()));
      if (n > 0) {
        for (const std::size_t pos : {std::size_t{0}, n / 2, n - 1}) {
          for (const float bad : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
                                  -std::numeric_limits<float>::infinity()}) {
            auto xb = x;
            xb[pos] = bad;
            CHECK(k::any_non_finite(tag, n, xb.data()));
          }
        }
      }

      // Activations: inputs include 0, −0, 6, NaN and values beyond 6.
      auto xa = random_floats(g, n, -8.0f, 8.0f);
      for (std::size_t i = 0; i < n; i += 5) xa[i] = (i % 4 == 0) ? 0.0f : (i % 4 == 1 ? -0.0f : (i % 4 == 2 ? 6.0f : std::numeric_limits<float>::quiet_NaN()));
      std::vector<float> out(n), grad(n);
      k::relu(tag, n, xa.data(), out.data());
      for (std::size_t i = 0; i < n; ++i) CHECK(out[i] == (xa[i] > 0.0f ? xa[i] : 0.0f));
      k::relu_backward(tag, n, out.data(), y0.data(), grad.data());
      for (std::size_t i = 0; i < n; ++i) CHECK(grad[i] == (out[i] > 0.0f ? y0[i] : 0.0f * y0[i]));
      k::relu6(tag, n, xa.data(), out.data());
      for (std::size_t i = 0; i < n; ++i) CHECK(out[i] == (xa[i] > 0.0f ? std::min(xa[i], 6.0f) : 0.0f));
      k::relu6_backward(tag, n, out.data(), y0.data(), grad.data());
      for (std::size_t i = 0; i < n; ++i)
        CHECK(grad[i] == ((out[i] > 0.0f && out[i] < 6.0f) ? y0[i] : 0.0f * y0[i]));
      const auto sig = random_floats(g, n, 0.0f, 1.0f);
      k::sigmoid_backward(tag, n, sig.data(), y0.data(), grad.data());
      for (std::size_t i = 0; i < n; ++i)
        CHECK(near(grad[i], double(y0[i]) * double(sig[i]) * (1.0 - double(sig[i])), 0.0));
      k::tanh_backward(tag, n, r.data(), y0.data(), grad.data());
      for (std::size_t i = 0; i < n; ++i)
        CHECK(near(grad[i], double(y0[i]) * (1.0 - double(r[i]) * double(r[i])),
                   std::fabs(double(y0[i])) * double(r[i]) * double(r[i])));  // y² rounded before 1 − y²

      // Optimizer steps, two steps each so that the state is read back.
      for (int variant = 0; variant < 3; ++variant) {
        const k::sgd_params<float> p{0.1f, 0.9f, 0.01f, variant == 2};
        std::vector<float> w = y0, v(n, 0.0f);
        std::vector<double> wr(y0.begin(), y0.end()), vr(n, 0.0);
        for (int step = 0; step < 2; ++step) {
          k::sgd_step(tag, n, p, w.data(), x.data(), variant == 0 ? nullptr : v.data());
          for (std::size_t i = 0; i < n; ++i) {
            double gg = double(x[i]) + 0.01 * wr[i];
            if (variant != 0) {
              vr[i] = 0.9 * vr[i] + gg;
              gg = variant == 2 ? gg + 0.9 * vr[i] : vr[i];
            }
            wr[i] -= 0.1 * gg;
          }
        }
        for (std::size_t i = 0; i < n; ++i) {
          CHECK(near(w[i], wr[i], 1.0));
          if (variant != 0) CHECK(near(v[i], vr[i], 8.0));
        }
      }
      {
        const k::adam_params<float> p{1e-3f, 1e-8f, 0.9f, 0.999f, 0.01f};
        std::vector<float> w = y0, m(n, 0.0f), v(n, 0.0f);
        std::vector<double> wr(y0.begin(), y0.end()), mr(n, 0.0), vr(n, 0.0);
        for (int step = 0; step < 2; ++step) {
          k::adam_step(tag, n, p, w.data(), x.data(), m.data(), v.data());
          for (std::size_t i = 0; i < n; ++i) {
            const double gg = double(x[i]) + double(p.weight_decay) * wr[i];
            mr[i] = double(p.beta1) * mr[i] + (1.0 - double(p.beta1)) * gg;
            vr[i] = double(p.beta2) * vr[i] + (1.0 - double(p.beta2)) * gg * gg;
            wr[i] -= double(p.step_size) * mr[i] / (std::sqrt(vr[i]) + double(p.epsilon));
          }
        }
        for (std::size_t i = 0; i < n; ++i) {
          CHECK(near(m[i], mr[i], 1.0));
          CHECK(near(v[i], vr[i], 1.0));
          CHECK(near(w[i], wr[i], 1.0));
        }
      }
    }
  });
}

TEST_CASE("elementwise kernels: vector back ends equal the scalar overloads bit for bit", "[kernels][elementwise]") {
  // Kernels whose elements involve no multiply-add (nothing a compiler could contract into an FMA)
  // give the scalar result exactly on every back end, NaN and signed zeros included.
  tinylarge::rng g(11);
  const std::size_t n = 1037;
  auto x = random_floats(g, n, -8.0f, 8.0f);
  const auto y0 = random_floats(g, n, -3.0f, 3.0f);
  for (std::size_t i = 0; i < n; i += 7) x[i] = (i % 3 == 0) ? -0.0f : std::numeric_limits<float>::quiet_NaN();
  const auto run = [&](auto tag) {
    std::vector<float> out, w(n);
    const auto keep = [&] { out.insert(out.end(), w.begin(), w.end()); };
    k::relu(tag, n, x.data(), w.data());
    keep();
    k::relu_backward(tag, n, x.data(), y0.data(), w.data());
    keep();
    k::relu6(tag, n, x.data(), w.data());
    keep();
    k::relu6_backward(tag, n, x.data(), y0.data(), w.data());
    keep();
    w = y0;
    k::scale(tag, n, 0.3f, w.data());
    keep();
    return out;
  };
  const auto ref = run(arch::scalar{});
  for_each_backend([&](auto tag) {
    INFO("back end " << tag.name());
    const auto got = run(tag);
    std::size_t differ = 0;
    for (std::size_t i = 0; i < got.size(); ++i) differ += std::memcmp(&got[i], &ref[i], sizeof(float)) != 0 ? 1 : 0;
    CHECK(differ == 0);
  });
}

namespace {
/// floor(n / d) for d > 0 (int64, exact).
std::int64_t floor_div(std::int64_t n, std::int64_t d) { return n >= 0 ? n / d : -((-n + d - 1) / d); }
/// TFLite's MultiplyByQuantizedMultiplier written from its definition, independently of
/// kernels::scale_s32: saturate x·2^left to int32, then ⌊x·M/2^31 + ½⌋ (the doubling high
/// multiply: ties toward +∞), then x/2^right rounded half away from zero.
std::int64_t reference_mbqm(std::int64_t x, std::int32_t m, int shift) {
  if (shift > 0) x = std::clamp<std::int64_t>(x * (std::int64_t{1} << shift), INT32_MIN, INT32_MAX);
  const std::int64_t h = floor_div(x * m + (std::int64_t{1} << 30), std::int64_t{1} << 31);
  if (shift >= 0) return h;
  const std::int64_t d = std::int64_t{1} << -shift;
  const std::int64_t a = (h < 0 ? -h : h) + d / 2;
  return h < 0 ? -(a / d) : a / d;
}
}  // namespace

TEST_CASE("add_s8: bit-exact with a 64-bit reference on every input pair, random scales", "[kernels][int8][add]") {
  tinylarge::rng g(18);
  std::vector<std::int8_t> x1(65536), x2(65536), y(65536), y_alias(65536);
  for (int i = 0; i < 65536; ++i) {
    x1[i] = static_cast<std::int8_t>((i & 255) - 128);
    x2[i] = static_cast<std::int8_t>((i >> 8) - 128);
  }
  std::size_t checked = 0, equal = 0, saturated = 0;
  double worst_lsb = 0.0;  // |y − (x1 + x2)| in output steps, over the outputs that do not saturate
  for (int set = 0; set < 64; ++set) {
    // one draw per statement: the order of evaluation of function arguments is unspecified
    const auto draw_scale = [&g](int lowest, std::uint32_t octaves) {
      const float mantissa = 1.0f + g.uniform();
      return std::ldexp(mantissa, lowest + static_cast<int>(g.uniform_int(octaves)));
    };
    const float s1 = draw_scale(-8, 10);
    const float s2 = draw_scale(-8, 10);
    // the output scale from ¼ to 8 times the larger input scale: some sums saturate, most do not
    const float sy = std::max(s1, s2) * draw_scale(-2, 4);
    const int z1 = static_cast<int>(g.uniform_int(256)) - 128;
    const int z2 = static_cast<int>(g.uniform_int(256)) - 128;
    const int zy = static_cast<int>(g.uniform_int(256)) - 128;
    // every fourth set with a fused relu: clamp at the code of 0.0
    const tinylarge::quant_range clamp{set % 4 == 3 ? zy : -128, 127};
    // The constants as TFLite's ADD prepares them (s = 2·max(s1, s2); inputs s_k/s, output s/(2^20·s_y)).
    const k::add_s8_params p = tinylarge::nn::residual_add_params({s1, z1}, {s2, z2}, {sy, zy}, clamp);
    REQUIRE(p.input1_shift <= 0);
    REQUIRE(p.input2_shift <= 0);
    REQUIRE((p.input1_multiplier == (1 << 30) || p.input2_multiplier == (1 << 30)));  // the larger scale: exactly ½
    k::add_s8(k::scalar{}, 65536, x1.data(), x2.data(), p, y.data());
    // y may be an input: the residual add of quantized_network writes over the skip tensor.
    y_alias = x1;
    k::add_s8(k::scalar{}, 65536, y_alias.data(), x2.data(), p, y_alias.data());
    for (int i = 0; i < 65536; ++i) {
      const std::int64_t a = reference_mbqm((x1[i] + p.input1_offset) * (std::int64_t{1} << 20), p.input1_multiplier,
                                            p.input1_shift);
      const std::int64_t b = reference_mbqm((x2[i] + p.input2_offset) * (std::int64_t{1} << 20), p.input2_multiplier,
                                            p.input2_shift);
      const std::int64_t raw = reference_mbqm(a + b, p.output_multiplier, p.output_shift) + zy;
      const std::int64_t want = std::clamp<std::int64_t>(raw, p.act_min, p.act_max);
      ++checked;
      equal += (y[i] == want && y_alias[i] == want) ? 1 : 0;
      if (raw != want) {
        ++saturated;
      } else {
        const double real = static_cast<double>(s1) * (x1[i] - z1) + static_cast<double>(s2) * (x2[i] - z2);
        worst_lsb = std::max(worst_lsb, std::fabs((y[i] - zy) - real / static_cast<double>(sy)));
      }
    }
  }
  INFO("add_s8: " << equal << " of " << checked << " outputs bit-equal, " << saturated << " saturated, worst error "
                  << worst_lsb << " output steps");
  std::printf("add_s8: %zu of %zu outputs bit-equal to the 64-bit reference (%zu saturated); worst error %.4f steps\n",
              equal, checked, saturated, worst_lsb);
  CHECK(equal == checked);
  CHECK(saturated > 0);
  CHECK(saturated < checked);
  // Rounding to the output grid costs ½ step; the Q31 multipliers and the 2^20 headroom add < 10⁻³.
  CHECK(worst_lsb < 0.501);
}
