// Tests of the precision axis: fp32 / fp16 / bf16 storage, bulk conversions on
// every back end compiled in, int8 quantization (TFLite int8 spec) and the
// integer-only requantization it relies on.
//
// References are independent of the code under test: rounding is checked
// against a nearest-value search over the exact (double) values of every
// 16-bit code, int8 arithmetic against double arithmetic and libm's
// std::round, and the int8 dense pipeline against fp32 on the de-quantized
// operands.

#include <catch2/catch.hpp>

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <span>
#include <string_view>
#include <vector>

#include "tinylarge/core/rng.hpp"
#include "tinylarge/kernels/dense.hpp"
#include "tinylarge/precision/bf16.hpp"
#include "tinylarge/precision/concepts.hpp"
#include "tinylarge/precision/convert.hpp"
#include "tinylarge/precision/fp16.hpp"
#include "tinylarge/precision/int8.hpp"
#include "tinylarge/precision/requantize.hpp"

namespace {

// ---------------------------------------------------------------------------
// Independent rounding references for the 16-bit formats
// ---------------------------------------------------------------------------

// Exact value of a binary16 magnitude code (sign excluded), computed from the
// definition; code 0x7C00 (inf) stands for 2^16, the value an unbounded
// exponent would give, which is what IEEE overflow rounding compares against.
double half_magnitude_value(std::uint16_t code) {
  const int e = (code >> 10) & 0x1F;
  const int m = code & 0x3FF;
  if (e == 0) return std::ldexp(static_cast<double>(m), -24);
  return std::ldexp(1.0 + m / 1024.0, e - 15);
}

// Nearest binary16 by search over the 0x7C01 ordered magnitudes, ties to the
// even code. Knows nothing of the bit tricks in fp16.hpp.
std::uint16_t reference_float_to_half(float f) {
  const double a = std::fabs(static_cast<double>(f));
  const std::uint16_t sign = std::signbit(f) ? 0x8000 : 0;
  std::uint16_t lo = 0, hi = 0x7C00;  // invariant: value(lo) <= a (or lo = 0), a < value(hi) unless a >= 2^16
  if (a >= half_magnitude_value(0x7C00)) return static_cast<std::uint16_t>(sign | 0x7C00);
  while (hi - lo > 1) {
    const auto mid = static_cast<std::uint16_t>((lo + hi) / 2);
    if (half_magnitude_value(mid) <= a) lo = mid;
    else hi = mid;
  }
  const double dlo = a - half_magnitude_value(lo);
  const double dhi = half_magnitude_value(hi) - a;
  std::uint16_t r;
  if (dlo < dhi) r = lo;
  else if (dhi < dlo) r = hi;
  else r = (lo & 1) ? hi : lo;
  return static_cast<std::uint16_t>(sign | r);
}

// Nearest bfloat16: the two candidates are the truncation and the next code;
// code 0x7F80 (inf) stands for 2^128.
std::uint16_t reference_float_to_bfloat16(float f) {
  const std::uint32_t bits = std::bit_cast<std::uint32_t>(f);
  const auto sign = static_cast<std::uint16_t>(bits >> 16 & 0x8000);
  const auto lo = static_cast<std::uint16_t>((bits & 0x7FFFFFFF) >> 16);
  if (lo >= 0x7F80) return static_cast<std::uint16_t>(sign | lo);  // inf (NaN is tested separately)
  const auto hi = static_cast<std::uint16_t>(lo + 1);
  auto value = [](std::uint16_t c) {
    return c == 0x7F80 ? std::ldexp(1.0, 128)
                       : static_cast<double>(std::bit_cast<float>(static_cast<std::uint32_t>(c) << 16));
  };
  const double a = std::fabs(static_cast<double>(f));
  const double dlo = a - value(lo), dhi = value(hi) - a;
  std::uint16_t r;
  if (dlo < dhi) r = lo;
  else if (dhi < dlo) r = hi;
  else r = (lo & 1) ? hi : lo;
  return static_cast<std::uint16_t>(sign | r);
}

// Float inputs that exercise rounding: a strided sweep over all 2^32 bit
// patterns (finite ones only) plus, for every 16-bit code, the exact midpoint
// to its successor and the floats one ulp either side of it.
std::vector<float> rounding_probe_inputs(bool for_half) {
  std::vector<float> v;
  for (std::uint64_t b = 0; b < (1ULL << 32); b += 4099) {
    const float f = std::bit_cast<float>(static_cast<std::uint32_t>(b));
    if (std::isfinite(f)) v.push_back(f);
  }
  const std::uint32_t last = for_half ? 0x7C00u : 0x7F80u;  // the inf code: its "value" is 2^16 / 2^128
  for (std::uint32_t c = 0; c < last; ++c) {
    double lo, hi;
    if (for_half) {
      lo = half_magnitude_value(static_cast<std::uint16_t>(c));
      hi = half_magnitude_value(static_cast<std::uint16_t>(c + 1));
    } else {
      lo = static_cast<double>(std::bit_cast<float>(c << 16));
      hi = c + 1 == last ? std::ldexp(1.0, 128) : static_cast<double>(std::bit_cast<float>((c + 1) << 16));
    }
    const auto mid = static_cast<float>((lo + hi) / 2);  // exact: fits in 24 bits
    for (const float f : {mid, std::nextafter(mid, 0.0f), std::nextafter(mid, 1e30f)}) {
      v.push_back(f);
      v.push_back(-f);
    }
  }
  return v;
}

}  // namespace

// ---------------------------------------------------------------------------
// The float-like precisions, all through one typed test
// ---------------------------------------------------------------------------

template <class P>
struct tolerances;
template <>
struct tolerances<tl::fp32> {
  static constexpr double relative = 0.0;
  static constexpr float min_normal = 0x1.0p-126f;
  static constexpr float max_finite = std::numeric_limits<float>::max();
};
template <>
struct tolerances<tl::fp16> {
  static constexpr double relative = 0x1.0p-11;  // half an ulp of an 11-bit significand
  static constexpr float min_normal = 0x1.0p-14f;
  static constexpr float max_finite = 65504.0f;
};
template <>
struct tolerances<tl::bf16> {
  static constexpr double relative = 0x1.0p-8;  // half an ulp of an 8-bit significand
  static constexpr float min_normal = 0x1.0p-126f;
  static constexpr float max_finite = 0x1.FEp127f;
};

TEMPLATE_TEST_CASE("float precisions round-trip within half an ulp and are monotone", "[precision]",
                   tl::fp32, tl::fp16, tl::bf16) {
  using P = TestType;
  STATIC_REQUIRE(tl::float_precision<P>);
  STATIC_REQUIRE(sizeof(typename P::storage_type) * 8 == P::storage_bits);

  tl::rng gen(42);
  float prev_out = -std::numeric_limits<float>::infinity();
  std::vector<float> xs;
  for (int i = 0; i < 20000; ++i) {
    // log-uniform magnitudes across the whole normal range of the format
    const float lg = gen.uniform(std::log2(tolerances<P>::min_normal), std::log2(tolerances<P>::max_finite) - 0.01f);
    xs.push_back((gen.next_u32() & 1 ? -1.0f : 1.0f) * std::exp2(lg));
  }
  std::sort(xs.begin(), xs.end());
  for (const float x : xs) {
    const float y = P::decode(P::encode(x));
    INFO("x = " << x << ", decode(encode(x)) = " << y);
    REQUIRE(std::fabs(static_cast<double>(y) - x) <= tolerances<P>::relative * std::fabs(x));
    REQUIRE(y >= prev_out);  // rounding is monotone: xs is sorted
    prev_out = y;
  }
  // Zero keeps its sign; infinities survive; NaN stays NaN.
  CHECK(std::signbit(P::decode(P::encode(-0.0f))));
  CHECK(P::decode(P::encode(std::numeric_limits<float>::infinity())) == std::numeric_limits<float>::infinity());
  CHECK(std::isnan(P::decode(P::encode(std::numeric_limits<float>::quiet_NaN()))));
}

TEST_CASE("fp16 and bf16: decode is exact and encode(decode(c)) == c for every code", "[precision][fp16][bf16]") {
  for (std::uint32_t c = 0; c < 0x10000u; ++c) {
    const auto code = static_cast<std::uint16_t>(c);
    const tl::half h{code};
    const float f = tl::half_to_float(h);
    const bool half_nan = (code & 0x7C00) == 0x7C00 && (code & 0x3FF) != 0;
    INFO("code 0x" << std::hex << c);
    if (half_nan) {
      REQUIRE(std::isnan(f));
      // quiet NaNs (bit 9 set) round-trip unchanged; signalling ones come back quiet
      REQUIRE(tl::float_to_half(f).bits == (code | 0x0200));
    } else {
      const double expect = (code & 0x8000 ? -1.0 : 1.0) *
                            ((code & 0x7FFF) == 0x7C00 ? INFINITY : half_magnitude_value(static_cast<std::uint16_t>(code & 0x7FFF)));
      REQUIRE(static_cast<double>(f) == expect);
      REQUIRE(tl::float_to_half(f).bits == code);
    }

    const tl::bfloat16 b{code};
    const float g = tl::bfloat16_to_float(b);
    REQUIRE(std::bit_cast<std::uint32_t>(g) == c << 16);
    const bool bf_nan = (code & 0x7F80) == 0x7F80 && (code & 0x7F) != 0;
    REQUIRE(tl::float_to_bfloat16(g).bits == (bf_nan ? (code | 0x0040) : code));
  }
}

TEST_CASE("fp16 and bf16 encode round to nearest even, as a nearest-value search does", "[precision][fp16][bf16]") {
  const std::vector<float> half_inputs = rounding_probe_inputs(true);
  std::size_t mismatches = 0;
  for (const float f : half_inputs) {
    if (tl::float_to_half(f).bits != reference_float_to_half(f)) {
      if (++mismatches <= 5) FAIL_CHECK("fp16 of " << f << " (0x" << std::hex << std::bit_cast<std::uint32_t>(f)
                                                   << "): got 0x" << tl::float_to_half(f).bits << ", expected 0x"
                                                   << reference_float_to_half(f));
    }
  }
  CHECK(mismatches == 0);

  const std::vector<float> bf_inputs = rounding_probe_inputs(false);
  mismatches = 0;
  for (const float f : bf_inputs) {
    if (tl::float_to_bfloat16(f).bits != reference_float_to_bfloat16(f)) {
      if (++mismatches <= 5) FAIL_CHECK("bf16 of " << f << ": got 0x" << std::hex << tl::float_to_bfloat16(f).bits
                                                   << ", expected 0x" << reference_float_to_bfloat16(f));
    }
  }
  CHECK(mismatches == 0);

  // The overflow thresholds, from the definitions: 65520 = 65504 + half an ulp ties to inf.
  CHECK(tl::float_to_half(65519.996f).bits == 0x7BFF);
  CHECK(tl::float_to_half(65520.0f).bits == 0x7C00);
  CHECK(tl::float_to_bfloat16(std::numeric_limits<float>::max()).bits == 0x7F80);
  // NaN keeps its sign and its top payload bits, and is quiet.
  const float snan = std::bit_cast<float>(0xFF812345u);  // signalling, payload 0x012345
  CHECK(tl::float_to_half(snan).bits == (0xFC00 | 0x0200 | (0x012345 >> 13)));
  CHECK(tl::float_to_bfloat16(snan).bits == 0xFFC1);
}

// ---------------------------------------------------------------------------
// Bulk conversions: every back end compiled in gives the scalar bits
// ---------------------------------------------------------------------------

TEMPLATE_TEST_CASE("bulk conversions give the scalar reference bits", "[precision][convert][simd]", tl::arch::scalar,
                   tl::arch::avx2, tl::arch::avx512) {
  using B = TestType;
  if constexpr (!B::supported()) {
    WARN("back end " << B::name() << " is not compiled into this build; build with -march=native to test it");
  } else {
    tl::rng gen(7);
    std::vector<float> src;
    for (int i = 0; i < 4096; ++i) src.push_back(std::bit_cast<float>(gen.next_u32()));  // NaNs, subnormals, all
    for (const float f : rounding_probe_inputs(true)) src.push_back(f);
    src.push_back(std::bit_cast<float>(0x7F800001u));  // smallest signalling NaN payload
    // Every length 0..40 exercises the vector body and the tails.
    for (std::size_t len : {std::size_t{0}, std::size_t{1}, std::size_t{7}, std::size_t{8}, std::size_t{15},
                            std::size_t{16}, std::size_t{17}, std::size_t{31}, std::size_t{33}, src.size()}) {
      const std::span<const float> in(src.data(), len);
      std::vector<tl::half> h(len, tl::half{0xDEAD});
      std::vector<tl::bfloat16> b(len, tl::bfloat16{0xDEAD});
      tl::convert(B{}, in, std::span<tl::half>(h));
      tl::convert(B{}, in, std::span<tl::bfloat16>(b));
      std::vector<float> fh(len), fb(len);
      tl::convert(B{}, std::span<const tl::half>(h), std::span<float>(fh));
      tl::convert(B{}, std::span<const tl::bfloat16>(b), std::span<float>(fb));
      std::size_t bad = 0;
      for (std::size_t i = 0; i < len; ++i) {
        const bool ok = h[i] == tl::float_to_half(in[i]) && b[i] == tl::float_to_bfloat16(in[i]) &&
                        std::bit_cast<std::uint32_t>(fh[i]) == std::bit_cast<std::uint32_t>(tl::half_to_float(h[i])) &&
                        std::bit_cast<std::uint32_t>(fb[i]) == std::bit_cast<std::uint32_t>(tl::bfloat16_to_float(b[i]));
        if (!ok && ++bad <= 3)
          FAIL_CHECK(B::name() << ": input 0x" << std::hex << std::bit_cast<std::uint32_t>(in[i]) << " half 0x"
                               << h[i].bits << " vs 0x" << tl::float_to_half(in[i]).bits << ", bf16 0x" << b[i].bits
                               << " vs 0x" << tl::float_to_bfloat16(in[i]).bits);
      }
      INFO("length " << len);
      CHECK(bad == 0);
    }
  }
}

TEST_CASE("bulk conversions with the build's best back end check sizes", "[precision][convert]") {
  const std::vector<float> src{1.0f, -2.5f, 65504.0f, 1e-7f};
  std::vector<tl::half> h(src.size());
  tl::convert(src, h);
  std::vector<float> back(src.size());
  tl::convert(h, back);
  for (std::size_t i = 0; i < src.size(); ++i) CHECK(back[i] == tl::half_to_float(tl::float_to_half(src[i])));
#if TINYLARGE_HAS_EXCEPTIONS
  std::vector<tl::bfloat16> too_short(3);
  CHECK_THROWS_AS(tl::convert(src, too_short), tl::shape_error);
#endif
}

// ---------------------------------------------------------------------------
// int8 quantization
// ---------------------------------------------------------------------------

TEST_CASE("round_half_away agrees with std::round everywhere", "[precision][int8]") {
  for (const float v : {0.49999997f, 0.5f, 1.5f, 2.5f, -2.5f, -0.5f, 8388607.5f, -8388607.5f, 8388608.0f, 1e30f,
                        -0.0f, 0.0f, 4194303.5f}) {
    INFO(v);
    CHECK(tl::detail::round_half_away(v) == std::round(v));
  }
  tl::rng gen(3);
  for (int i = 0; i < 200000; ++i) {
    const float v = std::bit_cast<float>(gen.next_u32());
    if (!std::isfinite(v)) continue;
    REQUIRE(tl::detail::round_half_away(v) == std::round(v));
    const double d = static_cast<double>(v) * 1.000000119;
    REQUIRE(tl::detail::round_half_away(d) == std::round(d));
  }
}

TEST_CASE("quantize matches the TFLite formula and keeps the error under half a step", "[precision][int8]") {
  STATIC_REQUIRE(tl::quantize(1.0f, tl::quant_params{0.5f, 3}) == 5);  // usable in constant expressions
  tl::rng gen(11);
  for (int trial = 0; trial < 200; ++trial) {
    const float lo = -gen.uniform(0.0f, 10.0f), hi = gen.uniform(0.01f, 10.0f);
    const tl::quant_params p = tl::choose_quant_params<tl::asymmetric>(lo, hi);
    REQUIRE(p.scale > 0.0f);
    REQUIRE(p.zero_point >= -128);
    REQUIRE(p.zero_point <= 127);
    REQUIRE(tl::dequantize(static_cast<std::int8_t>(p.zero_point), p) == 0.0f);  // 0 is exact
    for (int i = 0; i < 200; ++i) {
      const float x = gen.uniform(lo * 1.2f, hi * 1.2f);
      const std::int8_t q = tl::quantize(x, p);
      const float expect = std::clamp(std::round(x / p.scale) + static_cast<float>(p.zero_point), -128.0f, 127.0f);
      REQUIRE(static_cast<float>(q) == expect);
      const float lo_rep = p.scale * static_cast<float>(-128 - p.zero_point);
      const float hi_rep = p.scale * static_cast<float>(127 - p.zero_point);
      if (x >= lo_rep && x <= hi_rep) {
        REQUIRE(std::fabs(tl::dequantize(q, p) - x) <= 0.5f * p.scale * (1.0f + 1e-5f));
        REQUIRE(tl::fake_quantize_passes_gradient(x, p));
      } else {
        REQUIRE(!tl::fake_quantize_passes_gradient(x, p));
      }
    }
    // The observed range is representable to within one step (the zero point is nudged to an integer).
    REQUIRE(std::fabs(tl::fake_quantize(lo, p) - lo) <= p.scale);
    REQUIRE(std::fabs(tl::fake_quantize(hi, p) - hi) <= p.scale);
  }
  const tl::quant_params p{0.1f, -5};
  CHECK(tl::quantize(std::numeric_limits<float>::quiet_NaN(), p) == -5);
  CHECK(tl::quantize(std::numeric_limits<float>::infinity(), p) == 127);
  CHECK(tl::quantize(-std::numeric_limits<float>::infinity(), p) == -128);
  CHECK(tl::quantize(1e30f, p) == 127);
}

TEST_CASE("choose_quant_params: hand-derived cases from the TFLite rules", "[precision][int8]") {
  // ReLU6 output [0, 6]: s = 6/255, the zero point sits at q_min.
  tl::quant_params p = tl::choose_quant_params<tl::asymmetric>(0.0f, 6.0f);
  CHECK(p.scale == Approx(6.0 / 255.0).epsilon(1e-7));
  CHECK(p.zero_point == -128);
  // A range that excludes 0 is widened to include it: [2, 5] → [0, 5].
  p = tl::choose_quant_params<tl::asymmetric>(2.0f, 5.0f);
  CHECK(p.scale == Approx(5.0 / 255.0).epsilon(1e-7));
  CHECK(p.zero_point == -128);
  // [-3, 1]: z_from_min = -128 + 3/s = 63.25 → 63.
  p = tl::choose_quant_params<tl::asymmetric>(-3.0f, 1.0f);
  CHECK(p.scale == Approx(4.0 / 255.0).epsilon(1e-7));
  CHECK(p.zero_point == 63);
  // Symmetric: s = max|r| / 127, z = 0.
  p = tl::choose_quant_params<tl::symmetric>(-0.5f, 2.54f, tl::int8_weight_range);
  CHECK(p.scale == Approx(0.02).epsilon(1e-7));
  CHECK(p.zero_point == 0);
  CHECK(tl::quantize(2.54f, p, tl::int8_weight_range) == 127);
  CHECK(tl::quantize(-100.0f, p, tl::int8_weight_range) == -127);  // never -128 for weights
  // Degenerate ranges.
  CHECK(tl::choose_quant_params<tl::asymmetric>(0.0f, 0.0f) == tl::quant_params{1.0f, 0});
  CHECK(tl::choose_quant_params<tl::symmetric>(1e-45f, 1e-45f).scale == tl::min_quant_scale);
#if TINYLARGE_HAS_EXCEPTIONS
  CHECK_THROWS_AS(tl::choose_quant_params<tl::asymmetric>(0.0f, std::numeric_limits<float>::quiet_NaN()),
                  tl::numeric_error);
  CHECK_THROWS_AS(tl::choose_quant_params<tl::asymmetric>(1.0f, -1.0f), tl::invalid_argument);
#endif
}

TEST_CASE("observers track ranges and count non-finite values", "[precision][int8]") {
  tl::minmax_observer mm;
  CHECK(mm.params<tl::asymmetric>() == tl::quant_params{});
  const std::array<float, 5> a{1.0f, -2.0f, NAN, 3.0f, INFINITY};
  mm.observe(a);
  CHECK(mm.lo == -2.0f);
  CHECK(mm.hi == 3.0f);
  CHECK(mm.count == 3);
  CHECK(mm.non_finite == 2);

  tl::moving_average_minmax_observer ema{0.5f};
  const std::array<float, 2> b1{0.0f, 2.0f}, b2{-2.0f, 4.0f};
  ema.observe(b1);
  ema.observe(b2);
  CHECK(ema.lo == -1.0f);  // 0 + 0.5·(−2 − 0)
  CHECK(ema.hi == 3.0f);   // 2 + 0.5·(4 − 2)
  CHECK(ema.batches == 2);
}

TEST_CASE("weight quantization: per-channel beats per-tensor when channel ranges differ", "[precision][int8]") {
  constexpr std::size_t n = 6, k = 64;
  tl::rng gen(5);
  std::vector<float> w(n * k);
  for (std::size_t o = 0; o < n; ++o) {
    const float range = o == 3 ? 0.0f : std::pow(10.0f, -static_cast<float>(o) / 2.0f);  // row 3 is all zero
    for (std::size_t i = 0; i < k; ++i) w[o * k + i] = range * gen.uniform(-1.0f, 1.0f);
  }
  std::vector<std::int8_t> qt(n * k), qc(n * k);
  std::array<float, 1> st{};
  std::array<float, n> sc{};
  tl::int8_per_tensor::quantize_weights(w, n, qt, st);
  tl::int8_per_channel::quantize_weights(w, n, qc, sc);

  std::vector<float> wt(n * k), wc(n * k);
  tl::dequantize_weights(qt, n, st, wt);
  tl::dequantize_weights(qc, n, sc, wc);
  for (std::size_t o = 0; o < n; ++o) {
    int max_code = 0;
    double err_t = 0, err_c = 0;
    for (std::size_t i = 0; i < k; ++i) {
      const std::size_t j = o * k + i;
      REQUIRE(qc[j] >= -127);
      REQUIRE(qt[j] >= -127);
      REQUIRE(std::fabs(wc[j] - w[j]) <= 0.5f * sc[o] * (1.0f + 1e-5f));
      REQUIRE(std::fabs(wt[j] - w[j]) <= 0.5f * st[0] * (1.0f + 1e-5f));
      err_t += (wt[j] - w[j]) * (wt[j] - w[j]);
      err_c += (wc[j] - w[j]) * (wc[j] - w[j]);
      max_code = std::max(max_code, std::abs(static_cast<int>(qc[j])));
    }
    INFO("row " << o << ": squared error per tensor " << err_t << ", per channel " << err_c);
    if (o == 0) {
      CHECK(sc[0] == st[0]);  // the widest row sets the per-tensor scale
      CHECK(err_c == err_t);
    } else if (o == 3) {
      CHECK(sc[o] == 1.0f);
      CHECK(max_code == 0);
      CHECK(err_c == 0.0);
    } else {
      CHECK(max_code == 127);        // each channel uses its full code range
      CHECK(err_c < 0.25 * err_t);   // ~ (range_o / range_0)^2 of the per-tensor error
    }
  }
#if TINYLARGE_HAS_EXCEPTIONS
  std::array<float, 2> wrong{};
  CHECK_THROWS_AS(tl::int8_per_channel::quantize_weights(w, n, qc, wrong), tl::shape_error);
  w[7] = NAN;
  CHECK_THROWS_AS(tl::int8_per_channel::quantize_weights(w, n, qc, sc), tl::numeric_error);
#endif
}

TEST_CASE("requantize: integer multiplier within one step of the real product", "[precision][int8][requantize]") {
  tl::rng gen(9);
  for (int i = 0; i < 100000; ++i) {
    const double m = std::exp2(gen.uniform(-24.0f, 6.0f));
    const tl::quantized_multiplier qm = tl::quantize_multiplier(m);
    REQUIRE(qm.multiplier >= (1 << 30));
    REQUIRE(std::fabs(std::ldexp(static_cast<double>(qm.multiplier), qm.shift - 31) - m) <= m * 0x1.0p-30);
    const std::uint32_t magnitude_shift = 1 + gen.next_u32() % 31;
    const std::int32_t sign = (gen.next_u32() & 1) ? 1 : -1;
    const std::int32_t acc = static_cast<std::int32_t>(gen.next_u32() >> magnitude_shift) * sign;
    const double real = static_cast<double>(acc) * m;
    // Beyond 2^30, acc · 2^shift may saturate before the mantissa multiply
    // (see the saturation check below); int8 outputs clamp long before that.
    if (std::fabs(real) >= 1.0e9) continue;
    const std::int32_t y = tl::multiply_by_quantized_multiplier(acc, qm);
    INFO("acc " << acc << " M " << m << " real " << real << " got " << y);
    REQUIRE(std::fabs(static_cast<double>(y) - real) <= 1.0);
  }
  // 0.5 is 2^30 · 2^(0−31); ties round away from zero in RoundingDivideByPOT.
  const tl::quantized_multiplier half_m = tl::quantize_multiplier(0.5);
  CHECK(half_m.multiplier == (1 << 30));
  CHECK(half_m.shift == 0);
  CHECK(tl::multiply_by_quantized_multiplier(1000, tl::quantize_multiplier(0.25)) == 250);
  CHECK(tl::multiply_by_quantized_multiplier(-7, tl::quantize_multiplier(0.25)) == -2);  // −1.75 → −2
  // Overflowing products saturate in the right direction, far outside any int8/int16 output range.
  CHECK(tl::multiply_by_quantized_multiplier(std::numeric_limits<std::int32_t>::max(), tl::quantize_multiplier(4.0)) >=
        (1 << 30));
  CHECK(tl::multiply_by_quantized_multiplier(std::numeric_limits<std::int32_t>::min(), tl::quantize_multiplier(4.0)) <=
        -(1 << 30));
}

TEST_CASE("quantized bias and fused activation ranges", "[precision][int8]") {
  const std::array<float, 3> bias{0.37f, -1.0f, 1e12f};
  const std::array<float, 3> ws{0.01f, 0.02f, 0.01f};
  std::array<std::int32_t, 3> qb{};
  tl::quantize_bias(bias, 0.05f, ws, qb);
  CHECK(qb[0] == 740);   // 0.37 / (0.05·0.01)
  CHECK(qb[1] == -1000);  // −1 / (0.05·0.02)
  CHECK(qb[2] == std::numeric_limits<std::int32_t>::max());  // saturated

  const tl::quant_params out{6.0f / 255.0f, -128};
  const tl::quant_range relu = tl::fused_activation_range(tl::fused_activation::relu, out);
  CHECK(relu.min == -128);
  CHECK(relu.max == 127);
  const tl::quant_params out2{0.1f, 10};
  const tl::quant_range relu6 = tl::fused_activation_range(tl::fused_activation::relu6, out2);
  CHECK(relu6.min == 10);
  CHECK(relu6.max == 70);  // 10 + 6/0.1
  CHECK(tl::fused_activation_range(tl::fused_activation::none, out2) == tl::int8_activation_range);
}

TEMPLATE_TEST_CASE("int8 dense pipeline: integer result equals fp32 on the de-quantized operands to one step",
                   "[precision][int8][pipeline]", tl::int8_per_tensor, tl::int8_per_channel,
                   (tl::int8<tl::per_channel, tl::symmetric>)) {
  using P = TestType;
  STATIC_REQUIRE(tl::int8_precision<P>);
  constexpr std::size_t m = 8, n = 12, k = 40;
  tl::rng gen(21);
  std::vector<float> x(m * k), w(n * k), b(n);
  for (auto& v : x) v = gen.uniform(-0.5f, 2.0f);  // asymmetric input range
  for (std::size_t o = 0; o < n; ++o) {
    const float r = 0.05f * static_cast<float>(o + 1);
    for (std::size_t i = 0; i < k; ++i) w[o * k + i] = gen.normal(0.0f, r);
    b[o] = gen.uniform(-0.2f, 0.2f);
  }
  std::vector<float> y(m * n);
  tl::kernels::dense_f32(tl::kernels::scalar{}, m, n, k, x.data(), w.data(), b.data(), y.data());

  // Calibrate the input and quantize the operands.
  tl::minmax_observer ox;
  ox.observe(x);
  const tl::quant_params px = P::activation_params(ox.lo, ox.hi);
  std::vector<std::int8_t> xq(m * k), wq(n * k), yq(m * n);
  std::vector<float> ws(P::weight_scale_count(n));
  tl::quantize(x, px, xq, P::activation_range);
  P::quantize_weights(w, n, wq, ws);
  std::vector<std::int32_t> bq(n);
  tl::quantize_bias(b, px.scale, ws, bq);

  // fp32 on exactly the operands the integer kernel will see.
  std::vector<float> xd(m * k), wd(n * k), bd(n), yd(m * n);
  tl::dequantize(xq, px, xd);
  tl::dequantize_weights(wq, n, ws, wd);
  for (std::size_t o = 0; o < n; ++o)
    bd[o] = static_cast<float>(static_cast<double>(bq[o]) * px.scale * ws[P::is_per_channel ? o : 0]);
  tl::kernels::dense_f32(tl::kernels::scalar{}, m, n, k, xd.data(), wd.data(), bd.data(), yd.data());

  // Output parameters from the calibration outputs (both, so neither is clamped).
  tl::minmax_observer oy;
  oy.observe(y);
  oy.observe(yd);
  const tl::quant_params py = P::activation_params(oy.lo, oy.hi);
  std::vector<std::int32_t> mult(ws.size());
  std::vector<int> shift(ws.size());
  tl::requantization_multipliers(px.scale, ws, py.scale, mult, shift);

  // Integer-only inference.
  tl::kernels::dense_s8_params kp;
  kp.input_zero_point = px.zero_point;
  kp.output_zero_point = py.zero_point;
  kp.multipliers = mult.data();
  kp.shifts = shift.data();
  kp.per_channel = P::is_per_channel;
  kp.bias = bq.data();
  kp.act_min = static_cast<std::int8_t>(P::activation_range.min);
  kp.act_max = static_cast<std::int8_t>(P::activation_range.max);
  tl::kernels::dense_s8(tl::kernels::scalar{}, m, n, k, xq.data(), wq.data(), kp, yq.data());
  // The build's best int8 back end must give the same codes on a real quantized layer.
  std::vector<std::int8_t> yq_best(m * n);
  tl::kernels::dense_s8(tl::kernels::default_backend{}, m, n, k, xq.data(), wq.data(), kp, yq_best.data());
  INFO("int8 back end " << tl::kernels::default_backend::name());
  CHECK(yq_best == yq);

  double max_err_steps = 0, max_err_true = 0;
  for (std::size_t j = 0; j < m * n; ++j) {
    const float got = tl::dequantize(yq[j], py);
    max_err_steps = std::max(max_err_steps, std::fabs(static_cast<double>(got) - yd[j]) / py.scale);
    max_err_true = std::max(max_err_true, std::fabs(static_cast<double>(got) - y[j]));
  }
  INFO(P::name() << ": max error vs fp32 on de-quantized operands " << max_err_steps << " steps; vs true fp32 "
                 << max_err_true << " (output range " << oy.hi - oy.lo << ")");
  CHECK(max_err_steps <= 0.51);  // integer pipeline == real arithmetic, up to the final rounding
  CHECK(max_err_true <= 0.01 * (oy.hi - oy.lo));  // and int8 stays within 1% of the range of fp32
}

TEST_CASE("precision policies: names and concepts", "[precision]") {
  STATIC_REQUIRE(tl::precision_policy<tl::int8_per_channel>);
  STATIC_REQUIRE(tl::quantized_precision<tl::int8_per_tensor>);
  STATIC_REQUIRE(!tl::int8_precision<tl::fp16>);
  STATIC_REQUIRE(!tl::float_precision<tl::int8_per_tensor>);
  STATIC_REQUIRE(tl::quantization_granularity<tl::per_channel>);
  STATIC_REQUIRE(!tl::quantization_granularity<tl::symmetric>);
  STATIC_REQUIRE(tl::int8<tl::per_tensor, tl::symmetric>::activation_range == tl::quant_range{-127, 127});
  CHECK(std::string_view(tl::int8_per_channel::name()) == "int8_per_channel");
  CHECK(std::string_view(tl::int8<tl::per_tensor, tl::symmetric>::name()) == "int8_per_tensor_symmetric");
  CHECK(std::string_view(tl::bf16::name()) == "bf16");
}

// ===========================================================================
// Precision as an axis of networks and workflows: mixed-precision training in
// fp16 / bf16 / a user-defined precision, per-layer precision, deployment in
// the storage type, split sides in their precision.
// ===========================================================================

#include "blobs.hpp"
#include "tinylarge/nn/nn.hpp"
#include "tinylarge/workflow/distill.hpp"
#include "tinylarge/workflow/federated.hpp"
#include "tinylarge/workflow/lora.hpp"
#include "tinylarge/workflow/reptile.hpp"
#include "tinylarge/workflow/split.hpp"
#include "tinylarge/workflow/transfer.hpp"

namespace {

// A precision defined outside the library: OCP fp8 E4M3 storage (1 sign, 4
// exponent bits with bias 7, 3 fraction bits; no infinities, 0x7F/0xFF are
// NaN, largest finite 448), encoded round-to-nearest-even, overflow to NaN
// (the "non-saturating" mode, so that loss scaling sees an overflow).
struct e4m3 {
  std::uint8_t bits = 0;
};
struct fp8_e4m3 {
  using storage_type = e4m3;
  using accumulator_type = float;
  static constexpr bool quantized = false;
  static constexpr unsigned storage_bits = 8;
  static constexpr bool loss_scaling = true;  // 2^-9 is its smallest subnormal
  static constexpr const char* name() noexcept { return "fp8_e4m3"; }
  static e4m3 encode(float x) noexcept {
    const std::uint8_t sign = std::signbit(x) ? 0x80 : 0;
    if (std::isnan(x)) return {static_cast<std::uint8_t>(sign | 0x7F)};
    const double a = std::fabs(static_cast<double>(x));
    int e = 0;
    (void)std::frexp(a, &e);                     // a = f·2^e, f in [0.5, 1)
    const int exp = std::max(e - 1, -6);         // unbiased exponent, subnormals share -6
    const double quantum = std::ldexp(1.0, exp - 3);
    const double r = std::nearbyint(a / quantum) * quantum;  // ties to even (default rounding mode)
    if (r > 448.0) return {static_cast<std::uint8_t>(sign | 0x7F)};
    if (r < std::ldexp(1.0, -6)) return {static_cast<std::uint8_t>(sign | static_cast<std::uint8_t>(r / std::ldexp(1.0, -9)))};
    (void)std::frexp(r, &e);
    const int be = e - 1 + 7;
    const auto mant = static_cast<int>(std::ldexp(r, -(e - 1)) * 8.0) - 8;
    return {static_cast<std::uint8_t>(sign | (be << 3) | mant)};
  }
  static float decode(e4m3 v) noexcept {
    const int be = (v.bits >> 3) & 0xF, mant = v.bits & 7;
    const double s = (v.bits & 0x80) ? -1.0 : 1.0;
    if (be == 15 && mant == 7) return std::numeric_limits<float>::quiet_NaN();
    if (be == 0) return static_cast<float>(s * std::ldexp(mant, -9));
    return static_cast<float>(s * std::ldexp(1.0 + mant / 8.0, be - 7));
  }
};
static_assert(tl::float_precision<fp8_e4m3> && tl::uses_loss_scaling<fp8_e4m3>);

using blob_mlp = tl::sequential<tl::nn::dense<16, 32>, tl::nn::relu, tl::nn::dense<32, 4>>;
using blob_cnn = tl::sequential<tl::input<4, 4, 1>, tl::nn::conv2d<6, 3, 1, 1>, tl::nn::relu, tl::nn::flatten,
                                tl::nn::dense<96, 4>>;

/// Loss of the first and last epoch and test accuracy of a network trained on the blobs.
template <class Net>
std::array<double, 3> train_blobs(Net& net, std::size_t epochs = 8) {
  const tl_test::blobs train = tl_test::make_blobs(512, 5), test = tl_test::make_blobs(256, 6);
  const auto h = tl::nn::fit(net, tl::nn::sgd{0.05f, 0.9f}, tl::nn::softmax_cross_entropy{}, train.view(),
                             {.epochs = epochs, .batch_size = 32, .seed = 3});
  const auto e = tl::nn::evaluate(net, tl::nn::softmax_cross_entropy{}, test.view());
  return {h.front().train_loss, h.back().train_loss, e.accuracy};
}

/// y = round_P(x)·round_P(W)ᵀ + b in double, for the first dense layer.
template <class P>
double max_dense_error(const float* w, const float* b, const float* x, const float* y, std::size_t n, std::size_t k,
                       std::size_t batch, double* scale) {
  double err = 0.0;
  *scale = 0.0;
  for (std::size_t i = 0; i < batch; ++i)
    for (std::size_t o = 0; o < n; ++o) {
      double acc = b[o], mag = std::fabs(b[o]);
      for (std::size_t p = 0; p < k; ++p) {
        const double t = static_cast<double>(P::decode(P::encode(x[i * k + p]))) * P::decode(P::encode(w[o * k + p]));
        acc += t;
        mag += std::fabs(t);
      }
      err = std::max(err, std::fabs(acc - y[i * n + o]));
      *scale = std::max(*scale, mag);
    }
  return err;
}

}  // namespace

TEMPLATE_TEST_CASE("mixed-precision training: fp32 master weights, GEMMs on storage-type operands", "[precision][nn]",
                   tl::fp32, tl::fp16, tl::bf16, fp8_e4m3) {
  using P = TestType;
  using net_t = tl::nn::network<blob_mlp, tl::nn::heap_storage, P>;
  STATIC_REQUIRE(net_t::template lowp_layer<0> == !std::is_same_v<P, tl::fp32>);
  STATIC_REQUIRE(net_t::loss_scaled == tl::uses_loss_scaling<P>);
  net_t net(11);
  // The forward pass equals the GEMM on operands rounded to the storage type.
  const tl_test::blobs probe = tl_test::make_blobs(8, 9);
  net.forward(probe.x.data(), 8, false);
  double scale = 0.0;
  const double err = max_dense_error<P>(net.template weights<0>().data(), net.template biases<0>().data(),
                                        probe.x.data(), net.activation(1), 32, 16, 8, &scale);
  CHECK(err <= 20 * 0x1p-24 * scale);  // fp32 summation of exact products: k·u·Σ|t| with margin
  if constexpr (!std::is_same_v<P, tl::fp32>) {
    // … and not the fp32 one: rounding the operands changed the result.
    tl::nn::network<blob_mlp> ref;
    std::copy(net.parameters().begin(), net.parameters().end(), ref.parameters().begin());
    ref.forward(probe.x.data(), 8, false);
    double diff = 0.0;
    for (std::size_t i = 0; i < 8 * 32; ++i) diff = std::max(diff, static_cast<double>(std::fabs(ref.activation(1)[i] - net.activation(1)[i])));
    CHECK(diff > 0.0);
  }
  const auto [first, last, acc] = train_blobs(net);
  INFO(P::name() << ": loss " << first << " -> " << last << ", test accuracy " << acc);
  CHECK(last < 0.5 * first);
  CHECK(acc > 0.9);
}

TEMPLATE_TEST_CASE("mixed-precision training of a CNN (conv2d through im2col on storage-type operands)",
                   "[precision][nn]", tl::fp16, tl::bf16, fp8_e4m3) {
  tl::nn::network<blob_cnn, tl::nn::heap_storage, TestType> net(4);
  STATIC_REQUIRE(decltype(net)::template lowp_layer<0>);
  // The input gradient of a low-precision conv (untrained) agrees with a finite difference of the loss.
  const tl_test::blobs probe = tl_test::make_blobs(4, 12);
  std::vector<std::uint8_t> y = probe.y;
  std::vector<float> x = probe.x, dy(4 * 4), dx(4 * 16);
  const float* out = net.forward(x.data(), 4, false);
  tl::nn::softmax_cross_entropy::evaluate(out, y.data(), 4, 4, dy.data());
  // Dynamic loss scaling finds a scale at which the backward pass does not
  // overflow (fp8's largest value is 448: the default 2^16 overflows at first).
  int tries = 0;
  for (; tries < 40; ++tries) {
    net.zero_gradients();
    net.backward(dy.data(), dx.data());
    if (net.accept_gradients()) break;
  }
  CHECK(tries < 40);
  if constexpr (!tl::uses_loss_scaling<TestType>) CHECK(tries == 0);
  double dot = 0.0, norm = 0.0;
  for (float v : dx) norm += static_cast<double>(v) * v;
  // Directional derivative along dx with a step large enough to survive the input rounding.
  const float h = 0.05f / static_cast<float>(std::sqrt(norm));
  auto loss_at = [&](float t) {
    std::vector<float> xt(x);
    for (std::size_t i = 0; i < xt.size(); ++i) xt[i] += t * dx[i];
    return tl::nn::softmax_cross_entropy::evaluate(net.forward(xt.data(), 4, false), y.data(), 4, 4, nullptr);
  };
  dot = (loss_at(h) - loss_at(-h)) / (2.0 * h);
  INFO("finite difference " << dot << " vs |dx|^2 " << norm);
  CHECK(norm > 0.0);
  CHECK(std::isfinite(norm));
  // With 3 fraction bits (fp8) the forward pass is too coarse a function of x
  // for a finite difference; the 16-bit formats are checked.
  if constexpr (TestType::storage_bits >= 16) CHECK(dot == Approx(norm).epsilon(0.25));
  // Then it trains.
  const auto [first, last, acc] = train_blobs(net);
  INFO(TestType::name() << ": loss " << first << " -> " << last << ", test accuracy " << acc);
  CHECK(last < 0.5 * first);
  CHECK(acc > 0.9);
}

TEST_CASE("fp16 dynamic loss scaling: overflow skips the step and halves the scale; good steps double it",
          "[precision][nn]") {
  using net_t = tl::nn::network<blob_mlp, tl::nn::heap_storage, tl::fp16>;
  STATIC_REQUIRE(net_t::loss_scaled);
  STATIC_REQUIRE(!tl::nn::network<blob_mlp, tl::nn::heap_storage, tl::bf16>::loss_scaled);
  net_t net(3);
  const tl_test::blobs d = tl_test::make_blobs(32, 4);
  std::vector<float> dy(32 * 4), dx(32 * 16);
  auto pass = [&] {
    const float* out = net.forward(d.x.data(), 32, true);
    tl::nn::softmax_cross_entropy::evaluate(out, d.y.data(), 32, 4, dy.data());
    net.zero_gradients();
    net.backward(dy.data(), dx.data());
  };
  // A scale far beyond fp16's 65504: the scaled gradients overflow.
  net.loss_scale().scale = 0x1p40f;
  pass();
  const std::vector<float> g0(net.gradients().begin(), net.gradients().end());
  CHECK(std::all_of(g0.begin(), g0.end(), [](float v) { return v == 0.0f; }));  // left unchanged (zeroed)
  CHECK(std::all_of(dx.begin(), dx.end(), [](float v) { return v == 0.0f; }));
  CHECK_FALSE(net.accept_gradients());
  CHECK(net.loss_scale().scale == 0x1p39f);
  CHECK(net.loss_scale().skipped == 1);
  // fit skips such steps, halving until the gradients fit (2^40 → below 2^16 takes > 20 halvings).
  const std::vector<float> before(net.parameters().begin(), net.parameters().end());
  net.loss_scale().scale = 0x1p40f;
  const auto h = tl::nn::fit(net, tl::nn::sgd{0.05f}, tl::nn::softmax_cross_entropy{}, d.view(),
                             {.epochs = 1, .batch_size = 1, .seed = 1});
  CHECK(h[0].skipped_steps >= 20);
  CHECK(h[0].skipped_steps < 32);
  CHECK(net.loss_scale().scale <= 65536.0f);
  CHECK_FALSE(std::equal(before.begin(), before.end(), net.parameters().begin()));  // later steps were taken
  // Growth: after growth_interval accepted steps the scale doubles.
  net.loss_scale() = {.scale = 256.0f, .growth_interval = 3};
  for (int i = 0; i < 3; ++i) {
    pass();
    REQUIRE(net.accept_gradients());
  }
  CHECK(net.loss_scale().scale == 512.0f);
  // Unscaled gradients equal those at scale 1 (powers of two are exact unless a value under- or overflows fp16).
  pass();
  const std::vector<float> g512(net.gradients().begin(), net.gradients().end());
  net.loss_scale().scale = 1.0f;
  pass();
  double worst = 0.0, mag = 0.0;
  for (std::size_t i = 0; i < g512.size(); ++i) {
    worst = std::max(worst, static_cast<double>(std::fabs(g512[i] - net.gradients()[i])));
    mag = std::max(mag, static_cast<double>(std::fabs(g512[i])));
  }
  CHECK(worst <= 1e-2 * mag);  // scale 1 loses the gradients below fp16's subnormals; 512 keeps them
}

TEST_CASE("per-layer precision: int8 | fp16 | int8 trains, counts its boundaries and deploys in its storage",
          "[precision][nn][mixed]") {
  namespace nn = tl::nn;
  using model = tl::sequential<nn::with_precision<nn::dense<16, 32>, tl::int8_per_channel>, nn::relu, nn::dense<32, 16>,
                               nn::relu, nn::with_precision<nn::dense<16, 4>, tl::int8_per_channel>>;
  using net_t = nn::network<model, nn::heap_storage, tl::fp16>;
  STATIC_REQUIRE(net_t::int8_layer<0> && net_t::lowp_layer<2> && net_t::int8_layer<4>);
  STATIC_REQUIRE(std::is_same_v<net_t::layer_precision<2>, tl::fp16>);
  STATIC_REQUIRE(net_t::precision_boundaries == 4);  // fp32 → int8 → fp16 → int8 → fp32
  STATIC_REQUIRE(nn::network<blob_mlp>::precision_boundaries == 0);
  STATIC_REQUIRE(nn::network<blob_mlp, nn::heap_storage, tl::bf16>::precision_boundaries == 2);
  net_t net(8);
  const auto [first, last, acc] = train_blobs(net);
  INFO("loss " << first << " -> " << last << ", accuracy " << acc);
  CHECK(last < 0.5 * first);
  CHECK(acc > 0.9);
  // Deployment: int8 weights (1 byte), fp16 weights (2 bytes).
  using deploy_t = nn::mixed_inference_network<model, tl::fp16>;
  STATIC_REQUIRE(deploy_t::weight_bytes() == 16 * 32 + 2 * 32 * 16 + 16 * 4);
  STATIC_REQUIRE(deploy_t::other_parameter_bytes() == 4 * (32 + 16 + 4) + 4 * (32 + 4));
  deploy_t deploy(net);
  const tl_test::blobs test = tl_test::make_blobs(256, 6);
  const float* y = deploy.forward(test.x.data(), 256);
  std::vector<float> yd(y, y + 256 * 4);
  CHECK(deploy.converted_elements() == 256 * (16 + 32) + 256 * (16 + 4));  // quantize in, dequantize out, twice
  const float* yt = net.forward(test.x.data(), 256, false);
  double worst = 0.0, range = 0.0;
  std::size_t agree = 0;
  for (std::size_t i = 0; i < 256; ++i) {
    std::size_t a = 0, b = 0;
    for (std::size_t j = 0; j < 4; ++j) {
      worst = std::max(worst, static_cast<double>(std::fabs(yd[i * 4 + j] - yt[i * 4 + j])));
      range = std::max(range, static_cast<double>(std::fabs(yt[i * 4 + j])));
      a = yd[i * 4 + j] > yd[i * 4 + a] ? j : a;
      b = yt[i * 4 + j] > yt[i * 4 + b] ? j : b;
    }
    agree += a == b ? 1 : 0;
  }
  INFO("deployed vs training network: max |Δ| " << worst << " of " << range << ", argmax agreement " << agree);
  CHECK(worst < 0.05 * range);  // the deployment reads fp32 inputs where training rounded them to fp16
  CHECK(agree >= 250);
  // The int8 layer's range must have been observed.
  nn::network<model, nn::heap_storage, tl::fp16> untrained(1);
#if TINYLARGE_HAS_EXCEPTIONS
  CHECK_THROWS_AS(deploy_t(untrained), tl::invalid_argument);
#endif
}

namespace {
/// Bit-exact comparison of a heap, a static and a flash-bound deployment of `net` (int8 layers 0 and 4, layer 2 in
/// the network's precision), in batches of 4 (the non-heap ones are sized for 4).
template <class Model, class P, class Net>
void check_storages_agree(const Net& net, const tl_test::blobs& test) {
  namespace nn = tl::nn;
  using backend = tl::kernels::default_backend;
  using heap_t = nn::mixed_inference_network<Model, P>;
  using static_t = nn::mixed_inference_network<Model, P, nn::static_storage, backend, 4>;
  using flash_t = nn::mixed_inference_network<Model, P, nn::flash_storage, backend, 4>;
  STATIC_REQUIRE(static_t::max_batch == 4 && heap_t::max_batch == 0);
  // Two fp32 buffers of the widest output (32), the int8 layers' quantized input (16 B) and accumulators (32).
  STATIC_REQUIRE(static_t::activation_bytes == 4 * (2 * 32 * 4 + 16 + 32 * 4));
  STATIC_REQUIRE(flash_t::activation_bytes == static_t::activation_bytes);
  STATIC_REQUIRE(static_t::weight_bytes() == heap_t::weight_bytes());
  // flash_storage keeps views and activations only: no parameter buffers.
  STATIC_REQUIRE(sizeof(flash_t) < static_t::activation_bytes + 256);
  STATIC_REQUIRE(sizeof(static_t) >= static_t::activation_bytes + static_t::weight_bytes());
  heap_t heap(net);
  auto st = std::make_unique<static_t>(net);
  flash_t flash;
  flash.template bind_layer<0>(heap.template layer_parameters<0>());
  flash.template bind_layer<2>(heap.template layer_parameters<2>());
  flash.template bind_layer<4>(heap.template layer_parameters<4>());
  const std::size_t n = test.y.size();
  std::size_t same_static = 0, same_flash = 0;
  for (std::size_t s = 0; s < n; s += 4) {
    const float* x = test.x.data() + s * 16;
    const float* yp = heap.forward(x, 4);
    const std::vector<float> yh(yp, yp + 16);
    const float* ys = st->forward(x, 4);
    for (std::size_t i = 0; i < 16; ++i) same_static += std::bit_cast<std::uint32_t>(ys[i]) == std::bit_cast<std::uint32_t>(yh[i]);
    const float* yf = flash.forward(x, 4);
    for (std::size_t i = 0; i < 16; ++i) same_flash += std::bit_cast<std::uint32_t>(yf[i]) == std::bit_cast<std::uint32_t>(yh[i]);
  }
  CHECK(same_static == n * 4);
  CHECK(same_flash == n * 4);
  CHECK(st->converted_elements() == heap.converted_elements());
  // One sample, and the same again through forward(x).
  const float y1 = heap.forward(test.x.data(), 1)[3];
  CHECK(std::bit_cast<std::uint32_t>(st->forward(test.x.data())[3]) == std::bit_cast<std::uint32_t>(y1));
  // The static buffers hold 4 samples: a larger batch is an error, not an overflow.
#if TINYLARGE_HAS_EXCEPTIONS
  CHECK_THROWS_AS(st->forward(test.x.data(), 5), tl::invalid_argument);
  CHECK_THROWS_AS(flash.forward(test.x.data(), 0), tl::invalid_argument);
#endif
  // The comparison can fail: a changed weight scale changes the output.
  auto p0 = heap.template layer_parameters<0>();
  std::vector<float> scales(p0.weight_scales, p0.weight_scales + 32);
  scales[0] *= 2.0f;
  p0.weight_scales = scales.data();
  flash.template bind_layer<0>(p0);
  const float* yp = heap.forward(test.x.data(), 4);
  const std::vector<float> yh(yp, yp + 16);
  const float* yf = flash.forward(test.x.data(), 4);
  CHECK_FALSE(std::equal(yh.begin(), yh.end(), yf));
}
}  // namespace

TEST_CASE("per-layer precision: the static and flash deployments (the Cortex-M form) compute the host's outputs",
          "[precision][nn][mixed]") {
  namespace nn = tl::nn;
  using model = tl::sequential<nn::with_precision<nn::dense<16, 32>, tl::int8_per_channel>, nn::relu, nn::dense<32, 16>,
                               nn::relu, nn::with_precision<nn::dense<16, 4>, tl::int8_per_tensor>>;
  nn::network<model, nn::heap_storage, tl::fp16> net(3);
  train_blobs(net, 4);
  const tl_test::blobs test = tl_test::make_blobs(64, 8);
  SECTION("int8 | fp16 | int8") { check_storages_agree<model, tl::fp16>(net, test); }
  SECTION("int8 | fp32 | int8 (the Cortex-M example's precisions)") {
    nn::network<model, nn::heap_storage, tl::fp32> net32(1);
    std::copy(net.parameters().begin(), net.parameters().end(), net32.parameters().begin());
    net32.tracked_ranges() = net.tracked_ranges();
    check_storages_agree<model, tl::fp32>(net32, test);
    // The fp32 layer binds its parameter block: weights then biases.
    const auto p2 = nn::mixed_inference_network<model>(net32).layer_parameters<2>();
    CHECK(p2.bias == nullptr);
    STATIC_REQUIRE(std::is_same_v<nn::mixed_inference_network<model>::weight_type<0>, std::int8_t>);
    STATIC_REQUIRE(std::is_same_v<nn::mixed_inference_network<model>::weight_type<2>, float>);
  }
}

TEMPLATE_TEST_CASE("low-precision deployment holds its weights in the storage type", "[precision][nn]", tl::fp16,
                   tl::bf16, fp8_e4m3) {
  using P = TestType;
  using deploy_t = tl::nn::mixed_inference_network<blob_cnn, P>;
  STATIC_REQUIRE(deploy_t::weight_bytes() == blob_cnn::weight_count * sizeof(typename P::storage_type));
  STATIC_REQUIRE(deploy_t::other_parameter_bytes() == blob_cnn::bias_count * 4);
  tl::nn::network<blob_cnn, tl::nn::heap_storage, P> net(5);
  train_blobs(net, 3);
  deploy_t deploy(net);
  const tl_test::blobs test = tl_test::make_blobs(64, 7);
  const float* yd = deploy.forward(test.x.data(), 64);
  std::vector<float> a(yd, yd + 64 * 4);
  // Reference: the fp32 network on weights rounded to P (the deployment keeps inputs in fp32).
  tl::nn::network<blob_cnn> ref;
  std::copy(net.parameters().begin(), net.parameters().end(), ref.parameters().begin());
  blob_cnn::for_each_layer([&]<std::size_t I>() {
    for (float& w : ref.template weights<I>()) w = P::decode(P::encode(w));
  });
  const float* yr = ref.forward(test.x.data(), 64, false);
  for (std::size_t i = 0; i < 64 * 4; ++i) CHECK(a[i] == Approx(yr[i]).margin(1e-4).epsilon(1e-4));
  CHECK(deploy.converted_elements() == 0);
  // The same deployment with static storage (conv on im2col rows in its own workspace; fp8 widened per call):
  // identical outputs.
  using static_t = tl::nn::mixed_inference_network<blob_cnn, P, tl::nn::static_storage, tl::kernels::default_backend, 64>;
  auto st = std::make_unique<static_t>(net);
  const float* ys = st->forward(test.x.data(), 64);
  std::size_t same = 0;
  for (std::size_t i = 0; i < 64 * 4; ++i) same += std::bit_cast<std::uint32_t>(ys[i]) == std::bit_cast<std::uint32_t>(a[i]);
  CHECK(same == 64 * 4);
}

namespace {
struct fp16_device_traits {
  using model = tl::sequential<tl::nn::dense<16, 32>, tl::nn::relu, tl::nn::dense<32, 16>, tl::nn::relu, tl::nn::dense<16, 4>>;
  using partition = tl::cut<2>;
  using device = tl::side<tl::fp16>;
  using server = tl::side<tl::bf16>;
  using uplink_codec = tl::codec::fp16;
  using optimizer = tl::nn::sgd;
};
struct fp32_device_traits {
  using model = fp16_device_traits::model;
  using partition = tl::cut<2>;
  using uplink_codec = tl::codec::fp16;
  using optimizer = tl::nn::sgd;
};
}  // namespace

TEST_CASE("split learning: an fp16 device side and a bf16 server side train in their precisions", "[precision][split]") {
  using run_t = tl::psl<fp16_device_traits>;
  STATIC_REQUIRE(std::is_same_v<run_t::device_precision, tl::fp16>);
  STATIC_REQUIRE(std::is_same_v<run_t::server_precision, tl::bf16>);
  const tl::split_options<tl::nn::sgd, tl::fedavg> o{.rounds = 3, .batch_size = 16, .sync_every = 1,
                                                      .optimizer = {.learning_rate = 0.05f, .momentum = 0.9f}};
  const tl_test::blobs d = tl_test::make_blobs(400, 2), test = tl_test::make_blobs(200, 3);
  tl::data::partition_t parts(2);
  for (std::size_t i = 0; i < 400; ++i) parts[i % 2].push_back(i);
  const auto test_view = test.view();
  run_t run{o};
  const tl::workflow::report r = run.train(d.view(), parts, &test_view);
  INFO("accuracy " << r.final_accuracy());
  CHECK(r.final_accuracy() > 0.9);
  // The device network is the fp16 one, and computes on fp16 operands.
  const auto& dev = run.device_network();
  STATIC_REQUIRE(std::is_same_v<typename std::remove_cvref_t<decltype(dev)>::precision, tl::fp16>);
  // Same run with fp32 sides: the weights differ (the precision is not ignored).
  tl::psl<fp32_device_traits> ref{o};
  (void)ref.train(d.view(), parts, &test_view);
  const auto a = run.global_parameters(), b = ref.global_parameters();
  CHECK_FALSE(std::equal(a.begin(), a.end(), b.begin()));
}

namespace {
struct bf16_clients {
  using model = tl::sequential<tl::nn::dense<16, 32>, tl::nn::relu, tl::nn::dense<32, 4>>;
  using precision = tl::bf16;      // the clients train in bf16 mixed precision
  using update = tl::fp16_update;  // and upload fp16
};
}  // namespace

TEST_CASE("federated averaging: clients train in Traits::precision", "[precision][federated]") {
  namespace wf = tl::workflow;
  using run_t = wf::federated_averaging<bf16_clients>;
  STATIC_REQUIRE(std::is_same_v<run_t::network_type::precision, tl::bf16>);
  const tl_test::blobs d = tl_test::make_blobs(400, 2), test = tl_test::make_blobs(200, 3);
  std::vector<tl::nn::labelled_view<std::uint8_t>> clients;
  for (std::size_t c = 0; c < 4; ++c) clients.push_back({d.x.data() + c * 100 * 16, d.y.data() + c * 100, 100, 16});
  run_t fl({.rounds = 5, .client_fraction = 1.0, .local_epochs = 1, .batch_size = 10, .seed = 3}, tl::fedavg{},
           tl::nn::sgd{.learning_rate = 0.05f});
  fl.initialize(5);
  const wf::report rep = fl.run(clients, test.view());
  INFO("accuracy " << rep.final_accuracy());
  CHECK(rep.final_accuracy() > 0.9);
}

// ---------------------------------------------------------------------------
// Transfer, Reptile, FedLoRA and distillation train in Traits::precision
// ---------------------------------------------------------------------------

namespace {
template <class P>
struct clients_in {
  using model = tl::sequential<tl::nn::dense<16, 32>, tl::nn::relu, tl::nn::dense<32, 4>>;
  using precision = P;
  using optimizer = tl::nn::sgd;
};

/// Four clients of 100 blobs each (the first 400 of `d`).
std::vector<tl::nn::labelled_view<std::uint8_t>> four_clients(const tl_test::blobs& d) {
  std::vector<tl::nn::labelled_view<std::uint8_t>> clients;
  for (std::size_t c = 0; c < 4; ++c) clients.push_back({d.x.data() + c * 100 * 16, d.y.data() + c * 100, 100, 16});
  return clients;
}

/// The low-precision run's weights `a` differ from the fp32 run's `b` (the
/// precision was not ignored) but by less than `bound` (it is the same training).
template <class V>
void check_changed_by_precision(const V& a, const V& b, double bound) {
  REQUIRE(a.size() == b.size());
  double m = 0.0;
  for (std::size_t i = 0; i < a.size(); ++i) m = std::max(m, std::fabs(static_cast<double>(a[i]) - b[i]));
  INFO("max |w_P - w_fp32| = " << m);
  CHECK(m > 0.0);
  CHECK(m < bound);
}
}  // namespace

TEST_CASE("federated transfer: pre-training, federation and personalisation train in Traits::precision",
          "[precision][transfer]") {
  namespace wf = tl::workflow;
  using run16 = wf::federated_transfer<clients_in<tl::fp16>>;
  using run32 = wf::federated_transfer<clients_in<tl::fp32>>;
  STATIC_REQUIRE(std::is_same_v<run16::network_type::precision, tl::fp16>);
  STATIC_REQUIRE(run16::network_type::loss_scaled);
  STATIC_REQUIRE(std::is_same_v<run16::fl_type::network_type, run16::network_type>);
  STATIC_REQUIRE(std::is_same_v<run32::network_type::precision, tl::fp32>);
  const tl_test::blobs server = tl_test::make_blobs(300, 7), d = tl_test::make_blobs(400, 2),
                       test = tl_test::make_blobs(200, 3);
  const auto clients = four_clients(d);
  const wf::transfer_options t{.pretrain_epochs = 2, .pretrain_batch = 16, .personalize_epochs = 1,
                               .personalize_batch = 10, .frozen_layers = 1, .seed = 4};
  const wf::federated_options f{.rounds = 3, .client_fraction = 1.0, .local_epochs = 1, .batch_size = 10, .seed = 3};
  const tl::nn::sgd opt{.learning_rate = 0.05f};
  run16 a(t, f, tl::fedavg{}, opt);
  run32 b(t, f, tl::fedavg{}, opt);
  const wf::transfer_result ra = a.run(server.view(), clients, test.view());
  const wf::transfer_result rb = b.run(server.view(), clients, test.view());
  INFO("fp16: pre " << ra.pretrained_accuracy << " fed " << ra.federated_accuracy << " personal "
                    << ra.personalized_on_clients << "; fp32: pre " << rb.pretrained_accuracy << " fed "
                    << rb.federated_accuracy << " personal " << rb.personalized_on_clients);
  CHECK(ra.pretrained_accuracy > 0.85);
  CHECK(ra.federated_accuracy > 0.9);
  CHECK(ra.personalized_on_clients > 0.85);
  CHECK(std::fabs(ra.federated_accuracy - rb.federated_accuracy) < 0.05);
  // The fp16 run is not an fp32 run: rounding the operands changes the weights.
  check_changed_by_precision(a.federated().global(), b.federated().global(), 0.1);
}

TEST_CASE("federated Reptile: the inner loop and the adaptation train in Traits::precision", "[precision][reptile]") {
  namespace wf = tl::workflow;
  using run_bf = wf::federated_reptile<clients_in<tl::bf16>>;
  using run_32 = wf::federated_reptile<clients_in<tl::fp32>>;
  using model = clients_in<tl::bf16>::model;
  STATIC_REQUIRE(std::is_same_v<run_bf::precision, tl::bf16>);
  STATIC_REQUIRE(std::is_same_v<run_bf::network_type::precision, tl::bf16>);
  STATIC_REQUIRE(std::is_same_v<run_bf::aggregation, wf::reptile_step>);
  const tl_test::blobs d = tl_test::make_blobs(400, 2), test = tl_test::make_blobs(200, 3),
                       task = tl_test::make_blobs(60, 11);
  const auto clients = four_clients(d);
  const wf::federated_options f{.rounds = 4, .client_fraction = 1.0, .local_epochs = 1, .batch_size = 10, .seed = 3};
  const tl::nn::sgd opt{.learning_rate = 0.05f};
  run_bf a(f, wf::reptile_step{.epsilon = 0.5f}, opt);
  run_32 b(f, wf::reptile_step{.epsilon = 0.5f}, opt);
  a.initialize(5);
  b.initialize(5);
  const wf::report ra = a.run(clients, test.view());
  const wf::report rb = b.run(clients, test.view());
  INFO("bf16 " << ra.final_accuracy() << " fp32 " << rb.final_accuracy());
  CHECK(ra.rounds.back().train_loss < ra.rounds.front().train_loss);
  CHECK(ra.final_accuracy() > 0.85);
  CHECK(std::fabs(ra.final_accuracy() - rb.final_accuracy()) < 0.05);
  const auto ga = a.global();
  check_changed_by_precision(ga, b.global(), 0.2);
  // Few-shot adaptation in bf16: support = first 20 of the task, query = the other 40.
  const tl::nn::labelled_view<std::uint8_t> support{task.x.data(), task.y.data(), 20, 16},
      query{task.x.data() + 20 * 16, task.y.data() + 20, 40, 16};
  const double adapted_bf = wf::adapted_accuracy<model, run_bf::precision>(ga, support, query, opt, 2, 5, 1);
  const double adapted_32 = wf::adapted_accuracy<model>(ga, support, query, opt, 2, 5, 1);
  INFO("adapted bf16 " << adapted_bf << " fp32 " << adapted_32);
  CHECK(adapted_bf > 0.85);
  CHECK(std::fabs(adapted_bf - adapted_32) < 0.1);
}

TEST_CASE("federated LoRA: clients train the adapters through an fp16 merged model with loss scaling",
          "[precision][lora]") {
  namespace wf = tl::workflow;
  using run16 = wf::federated_lora<clients_in<tl::fp16>>;
  using run32 = wf::federated_lora<clients_in<tl::fp32>>;
  STATIC_REQUIRE(std::is_same_v<run16::precision, tl::fp16>);
  STATIC_REQUIRE(std::is_same_v<run16::network_type::precision, tl::fp16>);
  STATIC_REQUIRE(run16::network_type::loss_scaled);
  STATIC_REQUIRE(std::is_same_v<run32::network_type::precision, tl::fp32>);
  const tl_test::blobs d = tl_test::make_blobs(400, 2), test = tl_test::make_blobs(200, 3);
  const auto clients = four_clients(d);
  // The frozen base: a randomly initialised network (near chance), so that all learning is in the adapters.
  tl::nn::network<clients_in<tl::fp32>::model> base(9);
  const double base_acc = tl::nn::evaluate(base, tl::nn::softmax_cross_entropy{}, test.view()).accuracy;
  const wf::lora_options o{.max_rank = 4, .alpha = 4.0f, .init_stddev = 0.1f, .learning_rate = 0.1f,
                           .client_ranks = {4, 2, 4, 1}, .rounds = 6, .client_fraction = 1.0, .local_epochs = 1,
                           .batch_size = 10, .seed = 2};
  run16 a(o);
  run32 b(o);
  a.set_base(base.parameters());
  b.set_base(base.parameters());
  const wf::report ra = a.run(clients, test.view());
  const wf::report rb = b.run(clients, test.view());
  INFO("base " << base_acc << " fp16 " << ra.final_accuracy() << " fp32 " << rb.final_accuracy() << "; fp16 loss "
               << ra.rounds.front().train_loss << " -> " << ra.rounds.back().train_loss);
  CHECK(ra.rounds.back().train_loss < ra.rounds.front().train_loss);
  CHECK(ra.final_accuracy() > base_acc + 0.3);
  CHECK(std::fabs(ra.final_accuracy() - rb.final_accuracy()) < 0.05);
  CHECK(a.rejected_updates() == 0);
  check_changed_by_precision(a.adapters(), b.adapters(), 0.1);
}

namespace {
template <class P>
struct kd_in {
  using teacher = tl::sequential<tl::nn::dense<16, 32>, tl::nn::relu, tl::nn::dense<32, 4>>;
  using student = tl::sequential<tl::nn::dense<16, 8>, tl::nn::relu, tl::nn::dense<8, 4>>;
  using optimizer = tl::nn::sgd;
  using precision = P;
};
}  // namespace

TEST_CASE("knowledge distillation: the student trains in Traits::precision and deploys in int8",
          "[precision][distill]") {
  namespace wf = tl::workflow;
  using kd_bf = wf::knowledge_distillation<kd_in<tl::bf16>>;
  using kd_32 = wf::knowledge_distillation<kd_in<tl::fp32>>;
  STATIC_REQUIRE(std::is_same_v<kd_bf::student_network_type::precision, tl::bf16>);
  STATIC_REQUIRE(std::is_same_v<std::remove_cvref_t<decltype(std::declval<kd_bf&>().student_network())>,
                                kd_bf::student_network_type>);
  STATIC_REQUIRE(std::is_same_v<kd_32::student_network_type::precision, tl::fp32>);
  const tl_test::blobs train = tl_test::make_blobs(512, 5), test = tl_test::make_blobs(256, 6);
  tl::nn::network<kd_in<tl::fp32>::teacher> teacher(3);
  (void)tl::nn::fit(teacher, tl::nn::sgd{0.05f, 0.9f}, tl::nn::softmax_cross_entropy{}, train.view(),
                    {.epochs = 4, .batch_size = 32, .seed = 3});
  const wf::distillation_options o{.temperature = 2.0f, .alpha = 0.7f, .epochs = 5, .batch_size = 32, .seed = 4,
                                   .calibration_samples = 256};
  const tl::nn::sgd opt{.learning_rate = 0.05f, .momentum = 0.9f};
  kd_bf a(o, opt);
  kd_32 b(o, opt);
  const wf::distillation_result ra = a.run(teacher, train.view(), test.view());
  const wf::distillation_result rb = b.run(teacher, train.view(), test.view());
  INFO("teacher " << ra.teacher_accuracy << "; bf16 student " << ra.student_fp32_accuracy << " int8 "
                  << ra.student_int8_accuracy << "; fp32 student " << rb.student_fp32_accuracy << " int8 "
                  << rb.student_int8_accuracy);
  CHECK(ra.costs.rounds[o.epochs - 1].train_loss < ra.costs.rounds[0].train_loss);
  CHECK(ra.student_fp32_accuracy > 0.9);
  CHECK(ra.student_int8_accuracy > 0.9);
  CHECK(std::fabs(ra.student_fp32_accuracy - rb.student_fp32_accuracy) < 0.05);
  check_changed_by_precision(a.student_network().parameters(), b.student_network().parameters(), 0.2);
}
