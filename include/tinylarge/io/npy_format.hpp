/// @file io/npy_format.hpp
/// @brief Non-allocating, non-throwing parser of the NumPy `.npy` header, safe
///        for untrusted bytes and for the freestanding profile.
///
/// The format (NumPy NEP 1, `numpy/lib/format.py`):
///
///     offset  size  field
///     0       6     magic "\x93NUMPY"
///     6       1     major version (1, 2 or 3)
///     7       1     minor version (0)
///     8       2|4   header length HLEN, little-endian (2 bytes in 1.0,
///                   4 bytes in 2.0 and 3.0)
///     10|12   HLEN  a Python dict literal, padded with spaces, ending in
///                   '\n':  {'descr': '<f4', 'fortran_order': False,
///                           'shape': (3, 4), }
///     ...           the elements, C order, without padding
///
/// Supported element types: `f4 f8 i1 u1 i2 u2 i4 u4 i8 u8 b1` in little- or
/// big-endian order (`<`, `>`, `|`, `=`). Not supported, each with its own
/// error: Fortran order, structured and object dtypes, `f2`, complex,
/// strings. The parser checks the magic, version, header length (limit
/// `npy_limits::max_header_bytes`), the dict syntax and keys, the number of
/// dimensions, overflow of the element count, and that exactly the declared
/// number of data bytes follows (no truncation, no trailing bytes).
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <type_traits>

#include "../core/config.hpp"
#include "../core/error.hpp"

namespace tinylarge::io {

/// Element types of `.npy` arrays that tinylarge reads and writes.
enum class npy_dtype : std::uint8_t { f4, f8, i1, u1, i2, u2, i4, u4, i8, u8, b1 };

/// Size in bytes of one element of `t`.
constexpr std::size_t npy_itemsize(npy_dtype t) noexcept {
  switch (t) {
    case npy_dtype::i1:
    case npy_dtype::u1:
    case npy_dtype::b1:
      return 1;
    case npy_dtype::i2:
    case npy_dtype::u2:
      return 2;
    case npy_dtype::f4:
    case npy_dtype::i4:
    case npy_dtype::u4:
      return 4;
    case npy_dtype::f8:
    case npy_dtype::i8:
    case npy_dtype::u8:
      return 8;
  }
  return 0;
}

/// NumPy's little-endian type string of `t`, e.g. `"<f4"`, `"|u1"`.
constexpr const char* npy_descr(npy_dtype t) noexcept {
  switch (t) {
    case npy_dtype::f4:
      return "<f4";
    case npy_dtype::f8:
      return "<f8";
    case npy_dtype::i1:
      return "|i1";
    case npy_dtype::u1:
      return "|u1";
    case npy_dtype::i2:
      return "<i2";
    case npy_dtype::u2:
      return "<u2";
    case npy_dtype::i4:
      return "<i4";
    case npy_dtype::u4:
      return "<u4";
    case npy_dtype::i8:
      return "<i8";
    case npy_dtype::u8:
      return "<u8";
    case npy_dtype::b1:
      return "|b1";
  }
  return "";
}

/// Whether `t` holds floating-point values.
constexpr bool npy_is_float(npy_dtype t) noexcept {
  return t == npy_dtype::f4 || t == npy_dtype::f8;
}

/// Maps a C++ element type to the `npy_dtype` that stores it without
/// conversion. Specialised for float, double, the fixed-width integers of 8,
/// 16, 32 and 64 bits; other types do not satisfy `npy_element`. Boolean
/// arrays (`|b1`) are read as 0/1 into any of these.
template <class T>
struct npy_traits;
#define TINYLARGE_NPY_TRAITS(T, D)                   \
  template <>                                        \
  struct npy_traits<T> {                             \
    static constexpr npy_dtype dtype = npy_dtype::D; \
  };
TINYLARGE_NPY_TRAITS(float, f4)
TINYLARGE_NPY_TRAITS(double, f8)
TINYLARGE_NPY_TRAITS(std::int8_t, i1)
TINYLARGE_NPY_TRAITS(std::uint8_t, u1)
TINYLARGE_NPY_TRAITS(std::int16_t, i2)
TINYLARGE_NPY_TRAITS(std::uint16_t, u2)
TINYLARGE_NPY_TRAITS(std::int32_t, i4)
TINYLARGE_NPY_TRAITS(std::uint32_t, u4)
TINYLARGE_NPY_TRAITS(std::int64_t, i8)
TINYLARGE_NPY_TRAITS(std::uint64_t, u8)
#undef TINYLARGE_NPY_TRAITS

/// An element type that tinylarge's `.npy` arrays can hold.
template <class T>
concept npy_element = requires {
  npy_traits<T>::dtype;
};

/// The `npy_dtype` that stores `T` without conversion.
template <npy_element T>
inline constexpr npy_dtype npy_dtype_of = npy_traits<T>::dtype;

/// Most dimensions accepted (NumPy 1.x's `NPY_MAXDIMS`).
inline constexpr std::size_t npy_max_ndim = 32;

/// Limits applied to `.npy`/`.npz` input before anything is allocated.
struct npy_limits {
  /// Longest header dict. NumPy itself refuses more than 10 000 bytes by
  /// default (`max_header_size`) since 1.24.
  std::size_t max_header_bytes = 65536;
  /// Largest array payload, and largest total uncompressed size of an .npz.
  std::size_t max_bytes = sizeof(std::size_t) > 4 ? std::size_t(std::uint64_t{1} << 34) : SIZE_MAX;
  /// Most members of an .npz archive.
  std::size_t max_members = 65535;
  /// The members of an .npz may hold at most `max_ratio` times the archive's
  /// size in total (0: no ratio limit) ...
  std::size_t max_ratio = 256;
  /// ... unless they hold at most `ratio_floor` bytes (64 MiB).
  std::size_t ratio_floor = std::size_t{1} << 26;
};

/// A parsed `.npy` header and a view of the data that follows it.
struct npy_header {
  std::uint8_t major = 0, minor = 0;     ///< format version
  npy_dtype dtype = npy_dtype::f4;       ///< element type
  bool big_endian = false;               ///< element byte order
  std::size_t ndim = 0;                  ///< number of dimensions (0: a scalar)
  std::size_t shape[npy_max_ndim] = {};  ///< dimensions, C order
  std::size_t count = 1;                 ///< number of elements (product of shape)
  std::size_t data_offset = 0;           ///< bytes before the data
  const std::uint8_t* data = nullptr;    ///< first element (on success)
  std::size_t data_bytes = 0;            ///< count · itemsize
};

namespace detail {

/// A cursor over the header dict text.
struct npy_dict_reader {
  const char* p;
  const char* end;

  constexpr void skip_ws() noexcept {
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) ++p;
  }
  constexpr bool eat(char c) noexcept {
    skip_ws();
    if (p < end && *p == c) {
      ++p;
      return true;
    }
    return false;
  }
  /// A quoted string ('…' or "…", no escapes); sets [s, s + n).
  constexpr bool string(const char*& s, std::size_t& n) noexcept {
    skip_ws();
    if (p >= end || (*p != '\'' && *p != '"')) return false;
    const char q = *p++;
    s = p;
    while (p < end && *p != q) {
      if (*p == '\\') return false;
      ++p;
    }
    if (p >= end) return false;
    n = static_cast<std::size_t>(p - s);
    ++p;
    return true;
  }
  constexpr bool word(const char* w) noexcept {
    skip_ws();
    std::size_t n = 0;
    while (w[n] != '\0') ++n;
    if (static_cast<std::size_t>(end - p) < n) return false;
    for (std::size_t i = 0; i < n; ++i)
      if (p[i] != w[i]) return false;
    p += n;
    return true;
  }
  /// A non-negative decimal integer (optionally with Python 2's 'L' suffix).
  constexpr int integer(std::size_t& v) noexcept {  // 0 ok, 1 syntax, 2 overflow
    skip_ws();
    if (p >= end || *p < '0' || *p > '9') return 1;
    // Python 3 rejects leading zeros ("03"), so do we.
    if (*p == '0' && end - p > 1 && p[1] >= '0' && p[1] <= '9') return 1;
    v = 0;
    while (p < end && *p >= '0' && *p <= '9') {
      const std::size_t d = static_cast<std::size_t>(*p - '0');
      if (v > (SIZE_MAX - d) / 10) return 2;
      v = v * 10 + d;
      ++p;
    }
    if (p < end && *p == 'L') ++p;
    return 0;
  }
};

constexpr bool npy_same(const char* s, std::size_t n, const char* lit) noexcept {
  std::size_t i = 0;
  for (; i < n; ++i)
    if (lit[i] == '\0' || lit[i] != s[i]) return false;
  return lit[i] == '\0';
}

/// Parse a dtype string such as "<f4", "|u1", ">i8".
[[nodiscard]] constexpr status parse_npy_descr(const char* s, std::size_t n,
                                               npy_header& h) noexcept {
  TINYLARGE_CHECK(n >= 3, errc::corrupt, ".npy header: 'descr' is not a type string like '<f4'");
  const char order = s[0];
  TINYLARGE_CHECK(order == '<' || order == '>' || order == '|' || order == '=', errc::corrupt,
                  ".npy header: 'descr' must start with a byte-order mark '<', '>', '|' or '='");
  const char* t = s + 1;
  const std::size_t tn = n - 1;
  struct entry {
    const char* text;
    npy_dtype dtype;
  };
  constexpr entry table[] = {{"f4", npy_dtype::f4}, {"f8", npy_dtype::f8}, {"i1", npy_dtype::i1},
                             {"u1", npy_dtype::u1}, {"i2", npy_dtype::i2}, {"u2", npy_dtype::u2},
                             {"i4", npy_dtype::i4}, {"u4", npy_dtype::u4}, {"i8", npy_dtype::i8},
                             {"u8", npy_dtype::u8}, {"b1", npy_dtype::b1}};
  for (const entry& e : table) {
    if (npy_same(t, tn, e.text)) {
      h.dtype = e.dtype;
      if (order == '|')
        TINYLARGE_CHECK(npy_itemsize(e.dtype) == 1, errc::corrupt,
                        ".npy header: byte order '|' (not applicable) on a multi-byte type");
      h.big_endian = order == '>' || (order == '=' && std::endian::native == std::endian::big);
      return status::success();
    }
  }
  return {errc::unsupported_version,
          ".npy dtype not supported: use f4, f8, i1, u1, i2, u2, i4, u4, i8, u8 or b1 "
          "(float16, complex, string, object and structured dtypes are not)"};
}

}  // namespace detail

/// Parse and validate a whole `.npy` file held in memory.
///
/// @param bytes   the file (untrusted)
/// @param out     header fields; `out.data` points into `bytes` on success
/// @param limits  size limits checked before the data is touched
/// @return `corrupt`, `truncated`, `unsupported_version`, `too_large` or success.
[[nodiscard]] constexpr status parse_npy(std::span<const std::uint8_t> bytes, npy_header& out,
                                         const npy_limits& limits = {}) noexcept {
  out = npy_header{};
  constexpr std::uint8_t magic[6] = {0x93, 'N', 'U', 'M', 'P', 'Y'};
  for (std::size_t i = 0; i < 6; ++i) {
    TINYLARGE_CHECK(i < bytes.size(), errc::truncated,
                    ".npy file is shorter than its magic string");
    TINYLARGE_CHECK(bytes[i] == magic[i], errc::corrupt,
                    "not a .npy file: the magic string \\x93NUMPY is missing");
  }
  TINYLARGE_CHECK(bytes.size() >= 10, errc::truncated, ".npy file ends inside its preamble");
  out.major = bytes[6];
  out.minor = bytes[7];
  TINYLARGE_CHECK(out.major >= 1 && out.major <= 3 && out.minor == 0, errc::unsupported_version,
                  ".npy format version is not 1.0, 2.0 or 3.0");
  std::size_t hlen = 0, hstart = 0;
  if (out.major == 1) {
    hlen = std::size_t{bytes[8]} | std::size_t{bytes[9]} << 8;
    hstart = 10;
  } else {
    TINYLARGE_CHECK(bytes.size() >= 12, errc::truncated, ".npy file ends inside its preamble");
    hlen = std::size_t{bytes[8]} | std::size_t{bytes[9]} << 8 | std::size_t{bytes[10]} << 16 |
           std::size_t{bytes[11]} << 24;
    hstart = 12;
  }
  TINYLARGE_CHECK(hlen <= limits.max_header_bytes, errc::too_large,
                  ".npy header is longer than the configured limit (npy_limits::max_header_bytes)");
  TINYLARGE_CHECK(bytes.size() - hstart >= hlen, errc::truncated,
                  ".npy file ends inside its header");
  out.data_offset = hstart + hlen;

  // Parse the dict. Every key exactly once, no others (as NumPy requires).
  const char* text = reinterpret_cast<const char*>(bytes.data() + hstart);
  detail::npy_dict_reader r{text, text + hlen};
  bool have_descr = false, have_order = false, have_shape = false;
  TINYLARGE_CHECK(r.eat('{'), errc::corrupt, ".npy header is not a dict: it must start with '{'");
  for (;;) {
    if (r.eat('}')) break;
    const char* key = nullptr;
    std::size_t key_len = 0;
    TINYLARGE_CHECK(r.string(key, key_len), errc::corrupt,
                    ".npy header: expected a quoted key or '}'");
    TINYLARGE_CHECK(r.eat(':'), errc::corrupt, ".npy header: expected ':' after a key");
    if (detail::npy_same(key, key_len, "descr")) {
      TINYLARGE_CHECK(!have_descr, errc::corrupt, ".npy header: duplicate key 'descr'");
      const char* d = nullptr;
      std::size_t dn = 0;
      r.skip_ws();
      TINYLARGE_CHECK(r.p < r.end && *r.p != '[', errc::unsupported_version,
                      ".npy structured dtypes (a list 'descr') are not supported");
      TINYLARGE_CHECK(r.string(d, dn), errc::corrupt, ".npy header: 'descr' is not a string");
      TINYLARGE_TRY(detail::parse_npy_descr(d, dn, out));
      have_descr = true;
    } else if (detail::npy_same(key, key_len, "fortran_order")) {
      TINYLARGE_CHECK(!have_order, errc::corrupt, ".npy header: duplicate key 'fortran_order'");
      if (r.word("True")) {
        return {errc::unsupported_version,
                ".npy array is in Fortran order (column-major); save it in C order, e.g. "
                "np.save(f, np.ascontiguousarray(a))"};
      }
      TINYLARGE_CHECK(r.word("False"), errc::corrupt,
                      ".npy header: 'fortran_order' is not True or False");
      have_order = true;
    } else if (detail::npy_same(key, key_len, "shape")) {
      TINYLARGE_CHECK(!have_shape, errc::corrupt, ".npy header: duplicate key 'shape'");
      TINYLARGE_CHECK(r.eat('('), errc::corrupt, ".npy header: 'shape' is not a tuple");
      std::size_t count = 1;
      bool overflow = false, zero = false;
      while (!r.eat(')')) {
        TINYLARGE_CHECK(out.ndim < npy_max_ndim, errc::too_large,
                        ".npy array has more than 32 dimensions");
        std::size_t dim = 0;
        const int rc = r.integer(dim);
        TINYLARGE_CHECK(rc != 1, errc::corrupt,
                        ".npy header: 'shape' holds something other than non-negative integers");
        TINYLARGE_CHECK(rc != 2, errc::too_large, ".npy header: a dimension overflows size_t");
        out.shape[out.ndim++] = dim;
        if (dim == 0)
          zero = true;
        else if (count > SIZE_MAX / dim)
          overflow = true;
        count *= dim;
        if (!r.eat(',')) {
          TINYLARGE_CHECK(r.eat(')'), errc::corrupt, ".npy header: 'shape' tuple is not closed");
          break;
        }
      }
      // A zero dimension makes the product 0, whatever the other dimensions.
      TINYLARGE_CHECK(zero || !overflow, errc::too_large,
                      ".npy shape: the number of elements overflows size_t");
      out.count = zero ? 0 : count;
      have_shape = true;
    } else {
      return {errc::corrupt, ".npy header: unknown key (only 'descr', 'fortran_order', 'shape')"};
    }
    if (!r.eat(',')) {
      TINYLARGE_CHECK(r.eat('}'), errc::corrupt, ".npy header: expected ',' or '}' in the dict");
      break;
    }
  }
  TINYLARGE_CHECK(have_descr && have_order && have_shape, errc::corrupt,
                  ".npy header lacks one of the keys 'descr', 'fortran_order', 'shape'");
  r.skip_ws();
  TINYLARGE_CHECK(r.p == r.end, errc::corrupt, ".npy header: unexpected text after the dict");

  const std::size_t size = npy_itemsize(out.dtype);
  // Zero-size arrays may have huge dims but no data: the product is 0.
  TINYLARGE_CHECK(out.count <= limits.max_bytes / size, errc::too_large,
                  ".npy array is larger than the configured limit (npy_limits::max_bytes)");
  out.data_bytes = out.count * size;
  const std::size_t available = bytes.size() - out.data_offset;
  TINYLARGE_CHECK(available >= out.data_bytes, errc::truncated,
                  ".npy file is truncated: it holds fewer data bytes than its shape declares");
  TINYLARGE_CHECK(available == out.data_bytes, errc::corrupt,
                  ".npy file has trailing bytes after the data its shape declares");
  out.data = bytes.data() + out.data_offset;
  return status::success();
}

namespace detail {

/// Load one element of type `U` (an unsigned integer of the element's size)
/// from `p` in the given byte order.
template <class U>
constexpr U npy_load_bits(const std::uint8_t* p, bool big_endian) noexcept {
  U v = 0;
  for (std::size_t i = 0; i < sizeof(U); ++i) {
    const std::size_t shift = 8 * (big_endian ? sizeof(U) - 1 - i : i);
    v = static_cast<U>(v | static_cast<U>(static_cast<U>(p[i]) << shift));
  }
  return v;
}

/// Store `v`'s bits little-endian at `p`.
template <class U>
constexpr void npy_store_bits(std::uint8_t* p, U v) noexcept {
  for (std::size_t i = 0; i < sizeof(U); ++i) p[i] = static_cast<std::uint8_t>(v >> (8 * i));
}

template <std::size_t N>
struct npy_uint_of_size;
template <>
struct npy_uint_of_size<1> {
  using type = std::uint8_t;
};
template <>
struct npy_uint_of_size<2> {
  using type = std::uint16_t;
};
template <>
struct npy_uint_of_size<4> {
  using type = std::uint32_t;
};
template <>
struct npy_uint_of_size<8> {
  using type = std::uint64_t;
};

/// Element `i` of the data described by `h`, as the C++ type `S` that the
/// dtype stores (S matches `h.dtype`).
template <class S>
constexpr S npy_element_at(const npy_header& h, std::size_t i) noexcept {
  using U = typename npy_uint_of_size<sizeof(S)>::type;
  const U bits = npy_load_bits<U>(h.data + i * sizeof(S), h.big_endian);
  if constexpr (std::is_same_v<S, bool>)
    return bits != 0;
  else
    return std::bit_cast<S>(bits);
}

}  // namespace detail

}  // namespace tinylarge::io
