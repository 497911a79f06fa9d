/// @file io/npy.hpp
/// @brief Read and write NumPy `.npy` arrays (host profile).
///
/// Weights trained in PyTorch or NumPy load here, and ours load there:
/// @code
///   tl::io::npy_array w = tl::io::load_npy("fc1_weight.npy");   // any numeric dtype → float
///   // w.shape == {300, 784}, w.data.size() == 235200
///   tl::io::save_npy("fc1_weight.npy", w);                       // '<f4', C order
///   auto labels = tl::io::load_npy<std::int64_t>("labels.npy");  // integers stay exact
/// @endcode
/// and in Python `np.load("fc1_weight.npy")` /
/// `torch.from_numpy(np.load(...))`. With xtensor, `xt::adapt(w.data, w.shape)`
/// views an array without copying.
///
/// Reading converts any supported dtype (see `npy_format.hpp`) to the
/// requested element type: to floating point always (64-bit integers beyond
/// 2^24 round when read as float); to an integer type only
/// from integer data, and only when every value fits (otherwise
/// `tl::invalid_argument`). Writing uses the exact dtype of the element type
/// (`float` → `<f4`, `std::int32_t` → `<i4`, …), format 1.0, headers padded
/// so that the data starts at a multiple of 64 bytes, as NumPy does.
///
/// `.npz` archives are in `tinylarge/io/npz.hpp`.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "../core/config.hpp"
#include "../core/error.hpp"
#include "file.hpp"
#include "npy_format.hpp"

namespace tinylarge::io {

/// A dense array in C (row-major) order with a shape, as stored in `.npy`.
///
/// @tparam T element type (`npy_element`): float, double or a fixed-width
///           integer type.
template <npy_element T>
struct basic_npy_array {
  std::vector<std::size_t> shape;  ///< dimensions; empty for a 0-d (scalar) array
  std::vector<T> data;             ///< product(shape) elements, C order

  /// Number of elements.
  std::size_t size() const noexcept { return data.size(); }
  friend bool operator==(const basic_npy_array&, const basic_npy_array&) = default;
};

/// The everyday array type: float elements, whatever the file's dtype.
using npy_array = basic_npy_array<float>;

/// Product of `shape` (1 for a 0-d array); false on overflow.
inline bool npy_shape_count(std::span<const std::size_t> shape, std::size_t& count) noexcept {
  count = 1;
  bool overflow = false, zero = false;
  for (const std::size_t d : shape) {
    if (d == 0)
      zero = true;
    else if (count > SIZE_MAX / d)
      overflow = true;
    count *= d;
  }
  if (zero) count = 0;
  return zero || !overflow;
}

namespace detail {

template <class S, class T>
[[nodiscard]] status npy_convert(const npy_header& h, T* out) noexcept {
  if constexpr (std::is_floating_point_v<T>) {
    for (std::size_t i = 0; i < h.count; ++i) out[i] = static_cast<T>(npy_element_at<S>(h, i));
  } else {
    static_assert(std::is_integral_v<S>);
    for (std::size_t i = 0; i < h.count; ++i) {
      const S v = npy_element_at<S>(h, i);
      if constexpr (std::is_same_v<S, bool>) {
        out[i] = static_cast<T>(v ? 1 : 0);
      } else {
        TINYLARGE_CHECK(std::in_range<T>(v), errc::invalid_argument,
                        ".npy array holds a value that does not fit the requested integer type");
        out[i] = static_cast<T>(v);
      }
    }
  }
  return status::success();
}

}  // namespace detail

/// Convert the data of a parsed header to `T` into `out` (`h.count`
/// elements). Returns `invalid_argument` when floating-point data is
/// requested as integers, or an integer value does not fit `T`.
template <npy_element T>
[[nodiscard]] status npy_convert(const npy_header& h, T* out) noexcept {
  if constexpr (!std::is_floating_point_v<T>) {
    TINYLARGE_CHECK(!npy_is_float(h.dtype), errc::invalid_argument,
                    ".npy array holds floating-point values; load it as float or double, "
                    "not as an integer type");
  }
  switch (h.dtype) {
    case npy_dtype::f4:
      if constexpr (std::is_floating_point_v<T>) return detail::npy_convert<float>(h, out);
      break;
    case npy_dtype::f8:
      if constexpr (std::is_floating_point_v<T>) return detail::npy_convert<double>(h, out);
      break;
    case npy_dtype::i1:
      return detail::npy_convert<std::int8_t>(h, out);
    case npy_dtype::u1:
      return detail::npy_convert<std::uint8_t>(h, out);
    case npy_dtype::i2:
      return detail::npy_convert<std::int16_t>(h, out);
    case npy_dtype::u2:
      return detail::npy_convert<std::uint16_t>(h, out);
    case npy_dtype::i4:
      return detail::npy_convert<std::int32_t>(h, out);
    case npy_dtype::u4:
      return detail::npy_convert<std::uint32_t>(h, out);
    case npy_dtype::i8:
      return detail::npy_convert<std::int64_t>(h, out);
    case npy_dtype::u8:
      return detail::npy_convert<std::uint64_t>(h, out);
    case npy_dtype::b1:
      return detail::npy_convert<bool>(h, out);
  }
  return {errc::invalid_argument, ".npy dtype cannot be converted to the requested type"};
}

/// Parse a whole `.npy` file held in memory into `out` (untrusted input:
/// the header is validated before anything is allocated).
template <npy_element T>
[[nodiscard]] status decode_npy(std::span<const std::uint8_t> bytes, basic_npy_array<T>& out,
                                const npy_limits& limits = {}) {
  npy_header h;
  TINYLARGE_TRY(parse_npy(bytes, h, limits));
  // The output may be larger than the file (e.g. i1 → float): bound it too.
  TINYLARGE_CHECK(h.count <= limits.max_bytes / sizeof(T), errc::too_large,
                  ".npy array converted to the requested type exceeds npy_limits::max_bytes");
  out.shape.assign(h.shape, h.shape + h.ndim);
  out.data.resize(h.count);
  return npy_convert<T>(h, out.data.data());
}

/// Serialise an array as a `.npy` file in memory.
///
/// @param shape dimensions (empty: a 0-d array of one element)
/// @param data  product(shape) elements in C order
/// @throws tl::shape_error when `data.size()` is not the product of `shape`.
template <npy_element T>
std::vector<std::uint8_t> encode_npy(std::span<const std::size_t> shape, std::span<const T> data) {
  std::size_t count = 0;
  TINYLARGE_REQUIRE(npy_shape_count(shape, count), errc::shape_mismatch,
                    "tinylarge: encode_npy: the product of the shape overflows size_t");
  TINYLARGE_REQUIRE(count == data.size(), errc::shape_mismatch,
                    "tinylarge: encode_npy: the shape holds " + std::to_string(count) +
                        " elements but " + std::to_string(data.size()) + " were given");
  TINYLARGE_REQUIRE(shape.size() <= npy_max_ndim, errc::shape_mismatch,
                    "tinylarge: encode_npy: more than 32 dimensions");
  std::string dict = "{'descr': '";
  dict += npy_descr(npy_dtype_of<T>);
  dict += "', 'fortran_order': False, 'shape': (";
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (i != 0) dict += ", ";
    dict += std::to_string(shape[i]);
  }
  if (shape.size() == 1) dict += ",";
  dict += "), }";
  // Pad with spaces so that the data starts at a multiple of 64 bytes. With
  // at most 32 dimensions the header stays far below 64 KiB: format 1.0.
  constexpr std::size_t preamble = 10;
  std::size_t hlen = dict.size() + 1;
  hlen += (64 - (preamble + hlen) % 64) % 64;
  const std::size_t size = sizeof(T);
  // One allocation at the final size; the header dict is padded with spaces.
  std::vector<std::uint8_t> out(preamble + hlen + count * size, ' ');
  const std::uint8_t preamble_bytes[preamble] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0,  // magic, version 1.0
                                                 static_cast<std::uint8_t>(hlen),
                                                 static_cast<std::uint8_t>(hlen >> 8)};
  std::memcpy(out.data(), preamble_bytes, preamble);
  std::memcpy(out.data() + preamble, dict.data(), dict.size());
  out[preamble + hlen - 1] = '\n';
  std::uint8_t* p = out.data() + preamble + hlen;
  using U = typename detail::npy_uint_of_size<sizeof(T)>::type;
  for (std::size_t i = 0; i < count; ++i) {
    detail::npy_store_bits<U>(p + i * size, std::bit_cast<U>(data[i]));
  }
  return out;
}

/// Serialise `a` as a `.npy` file in memory.
template <npy_element T>
std::vector<std::uint8_t> encode_npy(const basic_npy_array<T>& a) {
  return encode_npy<T>(std::span<const std::size_t>(a.shape), std::span<const T>(a.data));
}

/// Write `data` with `shape` to the `.npy` file `path` (atomically).
/// @throws tl::shape_error (size mismatch), tl::io_error (cannot write).
template <npy_element T>
void save_npy(const std::string& path, std::span<const std::size_t> shape,
              std::span<const T> data) {
  write_file(path, encode_npy<T>(shape, data));
}

/// Write `a` to the `.npy` file `path` (atomically).
template <npy_element T>
void save_npy(const std::string& path, const basic_npy_array<T>& a) {
  write_file(path, encode_npy(a));
}

/// Read the `.npy` file `path`, converting its elements to `T`.
///
/// @throws tl::io_error (cannot read), tl::format_error (not a valid .npy,
///         truncated, unsupported dtype or Fortran order, over `limits`),
///         tl::invalid_argument (the data does not convert to `T`); every
///         message names the file.
template <npy_element T = float>
basic_npy_array<T> load_npy(const std::string& path, const npy_limits& limits = {}) {
  // Preamble (at most 12 bytes), header and data: a larger file (or an
  // endless one, such as /dev/zero) is refused before it fills memory.
  const std::size_t meta = 12 + limits.max_header_bytes;
  const std::vector<std::uint8_t> bytes =
      read_file(path, limits.max_bytes > SIZE_MAX - meta ? SIZE_MAX : limits.max_bytes + meta);
  basic_npy_array<T> a;
  const status s = decode_npy(std::span<const std::uint8_t>(bytes), a, limits);
  if (!s.ok())
    TINYLARGE_RAISE(s.code, "tinylarge: cannot load " + detail::quoted(path) + ": " + s.message);
  return a;
}

}  // namespace tinylarge::io
