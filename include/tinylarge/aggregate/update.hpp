/// @file aggregate/update.hpp
/// @brief What a client sends back after local training, in the three wire
///        precisions, and the per-round validation report.
///
/// Like Flower's `FitRes`, a client result carries the client's **new model
/// weights** (not a delta) as one flat parameter vector, plus the number of
/// local training examples that weighted its contribution. The policies that
/// need a pseudo-gradient (FedAvgM, FedAdam, …) form it on the server as
/// Δ = avg(w_i) − w_t, exactly as Flower does.
///
/// Available encodings (each satisfies `update_encoding`):
///  - `fp32_update` — IEEE binary32; read in place, never copied.
///  - `fp16_update` — IEEE binary16 (`tl::half`); decoded on the fly.
///  - `int8_update` — affine int8 with one scale (and optional zero point)
///    per chunk of `chunk_size` consecutive values: r = s_k · (q − z_k),
///    k = ⌊i / chunk_size⌋. Per-tensor quantization is chunk_size = size.
///
/// No rule expands a whole update to fp32: encoded values are decoded in
/// blocks of at most `decode_block_bytes` (4 KiB of output) per client, into a
/// small buffer that stays in L1, right before they are used. (With AVX-512
/// the weighted sum of fp16 updates converts in registers instead, see
/// update_set.hpp.)
///
/// All three are non-owning views over bytes that came from a client, so they
/// are untrusted: `check_encoding()` validates the metadata (scale count,
/// finite positive scales, zero points in range) before any value is read.
#pragma once

#include <algorithm>
#include <cmath>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <type_traits>

#include "../core/config.hpp"
#include "../core/error.hpp"
#include "../core/arch.hpp"
#include "../precision/convert.hpp"
#include "../precision/fp16.hpp"

namespace tinylarge {

/// Largest number of bytes of decoded (fp32) values one client contributes to
/// the decode buffer at a time.
inline constexpr std::size_t decode_block_bytes = 4096;

/// Requirements of a client-update encoding.
///
/// `decode(offset, out)` writes the real values of elements
/// [offset, offset + out.size()) into `out` (the caller guarantees the range
/// is inside `size()` and that `check_encoding()` succeeded).
/// `may_be_non_finite` says whether the stored values themselves can hold
/// NaN/Inf (true for fp32/fp16; an int8 update with valid scales cannot).
template <class U>
concept update_encoding =
    requires(const U& u, std::size_t offset, std::span<float> out) {
      { U::name() } -> std::convertible_to<const char*>;
      { U::may_be_non_finite } -> std::convertible_to<bool>;
      { u.size() } -> std::same_as<std::size_t>;
      { u.check_encoding() } -> std::same_as<status>;
      u.decode(offset, out);
    };

/// Client weights as IEEE binary32 (read in place).
struct fp32_update {
  std::span<const float> values;

  static constexpr const char* name() noexcept { return "fp32"; }
  static constexpr bool may_be_non_finite = true;
  std::size_t size() const noexcept { return values.size(); }
  const float* data() const noexcept { return values.data(); }
  status check_encoding() const noexcept { return status::success(); }
  template <std::floating_point T>
  void decode(std::size_t offset, std::span<T> out) const noexcept {
    const float* src = values.data() + offset;
    for (std::size_t i = 0; i < out.size(); ++i) out[i] = static_cast<T>(src[i]);
  }
};

/// Client weights as IEEE binary16 (fp32 accumulation on the server).
struct fp16_update {
  std::span<const half> values;

  static constexpr const char* name() noexcept { return "fp16"; }
  static constexpr bool may_be_non_finite = true;
  std::size_t size() const noexcept { return values.size(); }
  status check_encoding() const noexcept { return status::success(); }
  template <std::floating_point T>
  void decode(std::size_t offset, std::span<T> out) const noexcept {
    if constexpr (std::is_same_v<T, float>) {
      convert(arch::best{}, values.subspan(offset, out.size()), out);  // F16C / AVX-512 when built for it
    } else {
      const half* src = values.data() + offset;
      for (std::size_t i = 0; i < out.size(); ++i) out[i] = static_cast<T>(half_to_float(src[i]));
    }
  }
};

/// Client weights as affine int8 with one scale (and zero point) per chunk:
/// r_i = scale[k] · (q_i − zero_point[k]), k = ⌊i / chunk_size⌋.
struct int8_update {
  std::span<const std::int8_t> values;
  std::span<const float> scales;              ///< ⌈size / chunk_size⌉ entries, each finite and > 0
  std::span<const std::int32_t> zero_points;  ///< empty (symmetric: all 0) or one per scale, in [−128, 127]
  std::size_t chunk_size = 0;                 ///< values per scale; 0 means one scale for all

  static constexpr const char* name() noexcept { return "int8"; }
  static constexpr bool may_be_non_finite = false;
  std::size_t size() const noexcept { return values.size(); }
  std::size_t effective_chunk() const noexcept {
    return (chunk_size == 0 || chunk_size > values.size()) ? std::max<std::size_t>(values.size(), 1) : chunk_size;
  }
  std::size_t chunk_count() const noexcept {
    const std::size_t c = effective_chunk();
    return (values.size() + c - 1) / c;
  }

  /// Validates the metadata. A scale ≤ FLT_MAX / 256 keeps every decoded
  /// value (|q − z| ≤ 255) finite, so the values need no NaN scan.
  status check_encoding() const noexcept {
    TINYLARGE_CHECK(scales.size() == chunk_count(), errc::shape_mismatch, "int8 update: wrong number of scales");
    TINYLARGE_CHECK(zero_points.empty() || zero_points.size() == scales.size(), errc::shape_mismatch,
                    "int8 update: wrong number of zero points");
    for (const float s : scales) {
      TINYLARGE_CHECK(s > 0.0f && s <= std::numeric_limits<float>::max() / 256.0f, errc::corrupt,
                      "int8 update: scale not finite and positive");
    }
    for (const std::int32_t z : zero_points) {
      TINYLARGE_CHECK(z >= -128 && z <= 127, errc::corrupt, "int8 update: zero point out of range");
    }
    return status::success();
  }

  template <std::floating_point T>
  void decode(std::size_t offset, std::span<T> out) const noexcept {
    const std::size_t c = effective_chunk();
    std::size_t i = 0;
    while (i < out.size()) {
      const std::size_t g = offset + i;
      const std::size_t k = g / c;
      const std::size_t run = std::min(out.size() - i, (k + 1) * c - g);
      const float s = scales[k];
      const float z = zero_points.empty() ? 0.0f : static_cast<float>(zero_points[k]);
      const std::int8_t* q = values.data() + g;
      T* o = out.data() + i;
      for (std::size_t j = 0; j < run; ++j) o[j] = static_cast<T>(s * (static_cast<float>(q[j]) - z));
      i += run;
    }
  }
};

static_assert(update_encoding<fp32_update> && update_encoding<fp16_update> && update_encoding<int8_update>);

/// Symmetric per-chunk int8 encoding of `x` (a client-side helper and the
/// reference for tests): scale_k = max|x| over chunk k / 127 (1 when the chunk
/// is all zero), q = round-half-away(x / scale_k) clamped to [−127, 127].
/// `q.size() == x.size()`, `scales.size() == ⌈x.size() / chunk_size⌉`.
/// Non-finite inputs are a precondition violation (raise).
inline void encode_int8_update(std::span<const float> x, std::size_t chunk_size, std::span<std::int8_t> q,
                               std::span<float> scales) {
  const std::size_t c = (chunk_size == 0 || chunk_size > x.size()) ? std::max<std::size_t>(x.size(), 1) : chunk_size;
  TINYLARGE_REQUIRE(q.size() == x.size() && scales.size() == (x.size() + c - 1) / c, errc::shape_mismatch,
                    "encode_int8_update: output sizes");
  for (std::size_t k = 0; k * c < x.size(); ++k) {
    const std::size_t lo = k * c, hi = std::min(x.size(), lo + c);
    float amax = 0.0f;
    for (std::size_t i = lo; i < hi; ++i) {
      TINYLARGE_REQUIRE(std::isfinite(x[i]), errc::non_finite, "encode_int8_update: non-finite value");
      amax = std::max(amax, std::fabs(x[i]));
    }
    const float s = amax > 0.0f ? amax / 127.0f : 1.0f;
    scales[k] = s;
    for (std::size_t i = lo; i < hi; ++i) {
      const float r = std::round(x[i] / s);
      q[i] = static_cast<std::int8_t>(std::clamp(r, -127.0f, 127.0f));
    }
  }
}

/// One client's contribution to a round (Flower's `(parameters, num_examples)`).
/// `num_examples` is signed so that a corrupt negative count can be seen and
/// rejected rather than wrapping.
template <update_encoding U>
struct client_result {
  std::uint64_t client_id = 0;
  U update{};
  std::int64_t num_examples = 0;
};

/// Why a client update was left out of a round.
enum class rejection_reason : std::uint8_t {
  wrong_length,       ///< parameter count differs from the model's
  non_finite,         ///< a NaN or ±Inf value
  bad_example_count,  ///< num_examples ≤ 0
  bad_encoding,       ///< int8 scales / zero points missing or invalid
  duplicate_client,   ///< a second result from a client already in the round
};

constexpr const char* to_string(rejection_reason r) noexcept {
  switch (r) {
    case rejection_reason::wrong_length: return "wrong length";
    case rejection_reason::non_finite: return "non-finite value";
    case rejection_reason::bad_example_count: return "num_examples <= 0";
    case rejection_reason::bad_encoding: return "invalid int8 scales or zero points";
    case rejection_reason::duplicate_client: return "duplicate client id";
  }
  return "unknown";
}

/// A rejected update: who, and why.
struct rejection {
  std::uint64_t client_id = 0;
  rejection_reason reason = rejection_reason::wrong_length;
};

}  // namespace tinylarge
