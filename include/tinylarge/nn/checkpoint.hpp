/// @file nn/checkpoint.hpp
/// @brief Save and load the fp32 parameters of a `network` (host profile).
///
/// Own binary format, little-endian (the .npz of `io/` is the interchange
/// format for PyTorch/NumPy; this one is the fast, checked checkpoint):
///
/// | offset | size | field                                                    |
/// |--------|------|----------------------------------------------------------|
/// | 0      | 4    | magic "TLCK"                                             |
/// | 4      | 4    | format version (1)                                       |
/// | 8      | 4    | number of layers L                                       |
/// | 12     | 8    | parameter count P                                        |
/// | 20     | L    | `layer_kind` of each layer (detects a different model)   |
/// | 20+L   | 4·P  | parameters, IEEE binary32                                |
/// | end−4  | 4    | CRC-32 (IEEE 802.3, reflected 0xEDB88320) of all before  |
///
/// `decode_checkpoint` treats its input as untrusted: sizes, magic, version,
/// model signature and checksum are verified before any parameter is
/// written, and it returns a `status` instead of throwing.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <vector>

#include "../core/crc32.hpp"
#include "../core/error.hpp"
#include "../io/file.hpp"
#include "network.hpp"

namespace tinylarge::nn {

namespace detail {
inline void put_le(std::vector<std::uint8_t>& out, std::uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) out.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
}
inline std::uint64_t get_le(const std::uint8_t* p, int bytes) noexcept {
  std::uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) v |= static_cast<std::uint64_t>(p[i]) << (8 * i);
  return v;
}
template <class Model>
constexpr std::array<layer_kind, Model::size> layer_kinds() noexcept {
  std::array<layer_kind, Model::size> k{};
  Model::for_each_layer([&]<std::size_t I>() { k[I] = Model::template layer<I>::kind; });
  return k;
}
}  // namespace detail

inline constexpr std::uint32_t checkpoint_version = 1;

/// Serialise the parameters of `net`.
template <class Model, class S>
std::vector<std::uint8_t> encode_checkpoint(const network<Model, S>& net) {
  std::vector<std::uint8_t> out{'T', 'L', 'C', 'K'};
  detail::put_le(out, checkpoint_version, 4);
  detail::put_le(out, Model::size, 4);
  detail::put_le(out, Model::param_count, 8);
  for (layer_kind k : detail::layer_kinds<Model>()) out.push_back(static_cast<std::uint8_t>(k));
  for (float v : net.parameters()) {
    std::uint32_t bits;
    std::memcpy(&bits, &v, 4);
    detail::put_le(out, bits, 4);
  }
  detail::put_le(out, tinylarge::crc32(out.data(), out.size()), 4);
  return out;
}

/// Parse a checkpoint into `net`; `net` is untouched unless the result is ok.
/// A parameter that is NaN or ±Inf is `errc::non_finite` unless `policy` is
/// `non_finite_policy::allow` (a CRC protects against damage, not against a
/// diverged run saved faithfully).
template <class Model, class S>
status decode_checkpoint(std::span<const std::uint8_t> in, network<Model, S>& net,
                         non_finite_policy policy = non_finite_policy::reject) noexcept {
  constexpr std::size_t header = 20 + Model::size;
  constexpr std::size_t expected = header + 4 * Model::param_count + 4;
  TINYLARGE_CHECK(in.size() >= 8, errc::truncated, "checkpoint: shorter than its header");
  TINYLARGE_CHECK(std::memcmp(in.data(), "TLCK", 4) == 0, errc::corrupt, "checkpoint: bad magic (not a tinylarge checkpoint)");
  TINYLARGE_CHECK(detail::get_le(in.data() + 4, 4) == checkpoint_version, errc::unsupported_version,
                  "checkpoint: unsupported format version");
  TINYLARGE_CHECK(in.size() >= header, errc::truncated, "checkpoint: truncated header");
  TINYLARGE_CHECK(detail::get_le(in.data() + 8, 4) == Model::size &&
                      detail::get_le(in.data() + 12, 8) == Model::param_count,
                  errc::shape_mismatch, "checkpoint: saved from a model with a different layer or parameter count");
  constexpr auto kinds = detail::layer_kinds<Model>();
  for (std::size_t i = 0; i < Model::size; ++i)
    TINYLARGE_CHECK(in[20 + i] == static_cast<std::uint8_t>(kinds[i]), errc::shape_mismatch,
                    "checkpoint: saved from a model with different layer types");
  TINYLARGE_CHECK(in.size() >= expected, errc::truncated, "checkpoint: truncated parameter data");
  TINYLARGE_CHECK(in.size() == expected, errc::corrupt, "checkpoint: trailing bytes after the checksum");
  TINYLARGE_CHECK(tinylarge::crc32(in.data(), expected - 4) == detail::get_le(in.data() + expected - 4, 4),
                  errc::checksum_mismatch, "checkpoint: CRC-32 mismatch (file damaged)");
  if (policy == non_finite_policy::reject) {
    for (std::size_t i = 0; i < Model::param_count; ++i) {
      const auto bits = static_cast<std::uint32_t>(detail::get_le(in.data() + header + 4 * i, 4));
      TINYLARGE_CHECK((bits & 0x7F800000u) != 0x7F800000u, errc::non_finite,
                      "checkpoint: a parameter is NaN or infinite (load with non_finite_policy::allow "
                      "to inspect it)");
    }
  }
  float* p = net.parameters().data();
  for (std::size_t i = 0; i < Model::param_count; ++i) {
    const auto bits = static_cast<std::uint32_t>(detail::get_le(in.data() + header + 4 * i, 4));
    std::memcpy(p + i, &bits, 4);
  }
  return status::success();
}

/// Write a checkpoint file atomically and durably (`io::write_file`: a
/// temporary file in the same directory, fsync, rename, fsync of the
/// directory), so that a crash or `kill -9` at any moment leaves the previous
/// checkpoint or the new one at `path`, never a partial file.
/// @throws tl::io_error naming the file
template <class Model, class S>
void save_checkpoint(const std::string& path, const network<Model, S>& net) {
  io::write_file(path, encode_checkpoint(net));
}

/// Read a checkpoint file into `net` (`net` is untouched unless it succeeds).
/// @param policy  NaN / ±Inf parameters are refused unless `allow`
/// @throws tl::io_error when unreadable (also: a directory),
///         tl::format_error / tl::shape_error when malformed or from another
///         model, tl::numeric_error on non-finite parameters (the message
///         names the file)
template <class Model, class S>
void load_checkpoint(const std::string& path, network<Model, S>& net,
                     non_finite_policy policy = non_finite_policy::reject) {
  // One byte more than a valid checkpoint: a longer file is refused unread.
  constexpr std::size_t expected = 20 + Model::size + 4 * Model::param_count + 4;
  const std::vector<std::uint8_t> bytes = io::read_file(path, expected + 1);
  const status s = decode_checkpoint(bytes, net, policy);
  if (!s.ok()) TINYLARGE_RAISE(s.code, "tinylarge: '" + path + "': " + s.message);
}

}  // namespace tinylarge::nn
