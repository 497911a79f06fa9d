/// @file partition/codec.hpp
/// @brief Codecs for what crosses a cut: the smashed activations (forward,
///        up) and their gradients (backward, down).
///
/// Available codecs (namespace `tl::codec`):
///
/// | codec | wire bytes for n values | note |
/// |---|---|---|
/// | `fp32` | 4n | lossless; the trivial member — read it as the interface's documentation |
/// | `fp16` | 2n | IEEE binary16, round to nearest even |
/// | `int8` | n + 8 | affine int8 with one scale and zero point per message (per batch), range [min(x,0), max(x,0)] as TFLite's activations |
/// | `top_k<Inner, PerMille>` | 4 + 4k + Inner(k) | keeps the k = ⌈n·PerMille/1000⌉ largest magnitudes, indices as uint32, values through `Inner` |
///
/// When to use which: `fp32` to check a split against the unsplit model (it is
/// bit-identical); `int8` for the uplink of a device fleet (≈ 4× fewer bytes than
/// fp32; with ReLU activations the loss in accuracy is small); `fp16` when
/// gradients are too wide for 8 bits; `top_k` for sparse, heavy-tailed
/// gradients (Lin et al. 2018 "Deep Gradient Compression" style sparsification,
/// without error feedback).
///
/// **The interface** (`smashed_codec`): a stateless struct with
///  - `static const char* name()`;
///  - `static std::size_t max_encoded_bytes(std::size_t n)`: a bound on the
///    encoding of n values (the sender sizes its buffer with it);
///  - `static std::size_t encode(std::span<const float> x, std::span<std::byte> out)`:
///    writes the message, returns its size in bytes (≤ max_encoded_bytes);
///  - `static status decode(std::span<const std::byte> in, std::span<float> y)`:
///    the receiver knows how many values to expect (`y.size()`, from the
///    model's cut size and the batch); the bytes are untrusted, so every size,
///    scale and index is checked and a failure is returned, never UB.
///
/// All encodings are little-endian host layout (the in-process and MPI
/// transports run on one architecture family; the wire format of transport/
/// adds framing and checksums).
#pragma once

#include <algorithm>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

#include "../core/config.hpp"
#include "../core/error.hpp"
#include "../precision/fp16.hpp"
#include "../precision/int8.hpp"

namespace tinylarge {

/// Requirements of a codec for activations and gradients crossing a cut
/// (see the file comment; `codec::fp32` is the reference member).
template <class C>
concept smashed_codec = requires(std::span<const float> x, std::span<std::byte> out, std::span<const std::byte> in,
                                 std::span<float> y, std::size_t n) {
  { C::name() } -> std::convertible_to<const char*>;
  { C::max_encoded_bytes(n) } -> std::same_as<std::size_t>;
  { C::encode(x, out) } -> std::same_as<std::size_t>;
  { C::decode(in, y) } -> std::same_as<status>;
};

namespace codec {

/// Uncompressed fp32: 4 bytes per value, lossless (a split with this codec
/// computes bit for bit what the unsplit model computes).
struct fp32 {
  static constexpr const char* name() noexcept { return "fp32"; }
  static constexpr std::size_t max_encoded_bytes(std::size_t n) noexcept { return 4 * n; }
  static std::size_t encode(std::span<const float> x, std::span<std::byte> out) {
    TINYLARGE_REQUIRE(out.size() >= 4 * x.size(), errc::capacity_exceeded, "codec::fp32::encode: output too small");
    if (!x.empty()) std::memcpy(out.data(), x.data(), 4 * x.size());
    return 4 * x.size();
  }
  static status decode(std::span<const std::byte> in, std::span<float> y) noexcept {
    if (in.size() != 4 * y.size()) return {errc::truncated, "codec::fp32::decode: message size is not 4 bytes per expected value"};
    if (!y.empty()) std::memcpy(y.data(), in.data(), in.size());
    return status::success();
  }
};

/// IEEE binary16 storage: 2 bytes per value (values beyond ±65504 become ±Inf).
struct fp16 {
  static constexpr const char* name() noexcept { return "fp16"; }
  static constexpr std::size_t max_encoded_bytes(std::size_t n) noexcept { return 2 * n; }
  static std::size_t encode(std::span<const float> x, std::span<std::byte> out) {
    TINYLARGE_REQUIRE(out.size() >= 2 * x.size(), errc::capacity_exceeded, "codec::fp16::encode: output too small");
    for (std::size_t i = 0; i < x.size(); ++i) {
      const half h = float_to_half(x[i]);
      std::memcpy(out.data() + 2 * i, &h, 2);
    }
    return 2 * x.size();
  }
  static status decode(std::span<const std::byte> in, std::span<float> y) noexcept {
    if (in.size() != 2 * y.size()) return {errc::truncated, "codec::fp16::decode: message size is not 2 bytes per expected value"};
    for (std::size_t i = 0; i < y.size(); ++i) {
      half h{};
      std::memcpy(&h, in.data() + 2 * i, 2);
      y[i] = half_to_float(h);
    }
    return status::success();
  }
};

/// Affine int8 with one (scale, zero point) per message, i.e. per batch:
/// s = (hi − lo)/255, z = round(−128 − lo/s) with lo = min(x, 0), hi = max(x, 0),
/// q = clamp(round(x/s) + z, −128, 127), x̂ = s·(q − z) (the TFLite int8
/// activation scheme, Jacob et al. 2018). Wire: float scale, int32 zero point, n codes.
/// The quantization error is at most s/2 per value.
struct int8 {
  static constexpr std::size_t header_bytes = 8;
  static constexpr const char* name() noexcept { return "int8"; }
  static constexpr std::size_t max_encoded_bytes(std::size_t n) noexcept { return header_bytes + n; }
  static std::size_t encode(std::span<const float> x, std::span<std::byte> out) {
    TINYLARGE_REQUIRE(out.size() >= header_bytes + x.size(), errc::capacity_exceeded,
                      "codec::int8::encode: output too small");
    float lo = 0.0f, hi = 0.0f;
    for (const float v : x) {
      lo = v < lo ? v : lo;
      hi = v > hi ? v : hi;
    }
    const quant_params p = choose_quant_params<asymmetric>(lo, hi);
    std::memcpy(out.data(), &p.scale, 4);
    std::memcpy(out.data() + 4, &p.zero_point, 4);
    for (std::size_t i = 0; i < x.size(); ++i) {
      const std::int8_t q = quantize(x[i], p);
      std::memcpy(out.data() + header_bytes + i, &q, 1);
    }
    return header_bytes + x.size();
  }
  static status decode(std::span<const std::byte> in, std::span<float> y) noexcept {
    if (in.size() != header_bytes + y.size())
      return {errc::truncated, "codec::int8::decode: message size is not 8 + 1 byte per expected value"};
    quant_params p{};
    std::memcpy(&p.scale, in.data(), 4);
    std::memcpy(&p.zero_point, in.data() + 4, 4);
    if (!(p.scale > 0.0f) || !detail::is_finite(p.scale))
      return {errc::corrupt, "codec::int8::decode: the scale is not a positive finite number"};
    if (p.zero_point < -128 || p.zero_point > 127)
      return {errc::corrupt, "codec::int8::decode: the zero point is outside [-128, 127]"};
    for (std::size_t i = 0; i < y.size(); ++i) {
      std::int8_t q = 0;
      std::memcpy(&q, in.data() + header_bytes + i, 1);
      y[i] = dequantize(q, p);
    }
    return status::success();
  }
};

/// Top-k sparsification: keeps the k = ⌈n·PerMille/1000⌉ values of largest
/// magnitude (ties: lower index first, so encoding is deterministic), the
/// rest decode as 0. Wire: uint32 k, k ascending uint32 indices, then the k
/// values encoded by `Inner`.
/// @tparam Inner    the codec of the kept values (`fp32`, `fp16`, `int8`)
/// @tparam PerMille kept fraction in thousandths, 1 … 1000
template <smashed_codec Inner = fp32, std::size_t PerMille = 100>
struct top_k {
  static_assert(PerMille >= 1 && PerMille <= 1000, "tinylarge: codec::top_k<Inner, PerMille> needs 1 <= PerMille <= 1000");
  static constexpr const char* name() noexcept { return "top_k"; }
  static constexpr std::size_t kept(std::size_t n) noexcept { return (n * PerMille + 999) / 1000; }
  static constexpr std::size_t max_encoded_bytes(std::size_t n) noexcept {
    return 4 + 4 * kept(n) + Inner::max_encoded_bytes(kept(n));
  }
  static std::size_t encode(std::span<const float> x, std::span<std::byte> out) {
    const std::size_t n = x.size(), k = kept(n);
    TINYLARGE_REQUIRE(out.size() >= max_encoded_bytes(n), errc::capacity_exceeded, "codec::top_k::encode: output too small");
    TINYLARGE_REQUIRE(n <= 0xffffffffu, errc::too_large, "codec::top_k::encode: more than 2^32 values in one message");
    std::vector<std::uint32_t> idx(n);
    for (std::size_t i = 0; i < n; ++i) idx[i] = static_cast<std::uint32_t>(i);
    const auto larger = [&](std::uint32_t a, std::uint32_t b) {
      const float ma = detail::abs_value(x[a]), mb = detail::abs_value(x[b]);
      return ma > mb || (ma == mb && a < b);
    };
    if (k < n) std::nth_element(idx.begin(), idx.begin() + static_cast<std::ptrdiff_t>(k), idx.end(), larger);
    idx.resize(k);
    std::sort(idx.begin(), idx.end());
    std::vector<float> vals(k);
    for (std::size_t i = 0; i < k; ++i) vals[i] = x[idx[i]];
    const auto k32 = static_cast<std::uint32_t>(k);
    std::memcpy(out.data(), &k32, 4);
    if (k != 0) std::memcpy(out.data() + 4, idx.data(), 4 * k);
    return 4 + 4 * k + Inner::encode(vals, out.subspan(4 + 4 * k));
  }
  static status decode(std::span<const std::byte> in, std::span<float> y) {
    const std::size_t n = y.size();
    if (in.size() < 4) return {errc::truncated, "codec::top_k::decode: message shorter than its 4-byte count"};
    std::uint32_t k = 0;
    std::memcpy(&k, in.data(), 4);
    if (k != kept(n)) return {errc::corrupt, "codec::top_k::decode: kept count differs from ceil(n * PerMille / 1000)"};
    if (in.size() < 4 + 4 * std::size_t{k}) return {errc::truncated, "codec::top_k::decode: message ends inside the index list"};
    std::vector<float> vals(k);
    if (status s = Inner::decode(in.subspan(4 + 4 * std::size_t{k}), vals); !s) return s;
    std::fill(y.begin(), y.end(), 0.0f);
    std::uint32_t prev = 0;
    for (std::size_t i = 0; i < k; ++i) {
      std::uint32_t j = 0;
      std::memcpy(&j, in.data() + 4 + 4 * i, 4);
      if (j >= n || (i > 0 && j <= prev))
        return {errc::corrupt, "codec::top_k::decode: indices must be ascending and below the value count"};
      y[j] = vals[i];
      prev = j;
    }
    return status::success();
  }
};

static_assert(smashed_codec<fp32> && smashed_codec<fp16> && smashed_codec<int8> && smashed_codec<top_k<>>);

}  // namespace codec
}  // namespace tinylarge
