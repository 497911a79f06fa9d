/// @file compress/huffman.hpp
/// @brief Canonical, length-limited Huffman coding of byte-symbol streams (codebook
///        indices, CSR column gaps): code construction, encoder, table decoder and the
///        `huffman` policy (Deep Compression stage 3).
///
/// **Code construction.** Optimal code lengths under the limit L = 16 by the
/// package-merge algorithm (Larmore & Hirschberg 1990, "A fast algorithm for optimal
/// length-limited Huffman codes"): starting from the leaves sorted by count, L − 1 times
/// pair adjacent items into packages and merge them with the leaves; the first 2n − 2 items
/// of the last list determine the lengths (each leaf is counted once per list in which it is
/// selected). Because merging is stable and lists are sorted, the selected leaves of every
/// list are a prefix of the sorted leaves and the selected packages a prefix of the
/// packages, so only a leaf/package flag per list position is stored: 16 × 511 bits and two
/// 511-entry weight arrays, no heap. The result is optimal among codes with lengths ≤ L
/// (no heuristic). Codes are canonical (deflate's rule, RFC 1951 §3.2.2): shorter codes
/// first, equal lengths in symbol order, so only the lengths need to be stored.
///
/// **Stream format** (little-endian fields; all sizes are checked when decoding):
///
///     u16  alphabet size A ∈ [1, 256]
///     u8   b ∈ [1, 5], bits per code length
///     ⌈A·b/8⌉ bytes: A code lengths (0 = symbol absent), b bits each, bit-packed
///          (compress/bitpack.hpp layout)
///     u32  number of symbols N
///     u32  payload bytes P = ⌈(Σ code lengths of the N symbols)/8⌉
///     P bytes: the codes, most significant bit first, zero padded
///
/// The header ("table bytes") is 11 + ⌈A·b/8⌉ bytes: 31 bytes for a 5-bit index alphabet.
/// That is **format 1** (one bit stream). **Format 2** (four bit streams, decoded together by
/// `huffman_interleaved_decoder` on a host) sets bit 15 of the u16 alphabet field, and after
/// P holds three u32: the byte sizes of streams 0, 1 and 2 (stream 3 has the rest of P).
/// Stream k holds the codes of the k-th quarter of the symbols (`huffman_segment`: ⌈N/4⌉ each,
/// the last ones fewer), MSB first, each zero padded to a byte; so format 2 costs 12 header
/// bytes and ≤ 3 padding bytes more. Readers that know only format 1 reject format 2 as
/// corrupt (alphabet above 256). The model file (compress/model_file.hpp, format version 1)
/// stores format-1 streams.
///
/// **Decoding** (freestanding: no heap, no exceptions, fixed-size tables; see also
/// `huffman_interleaved_decoder` for format 2 on a host): a 2^TableBits
/// lookup table resolves up to three codes that fit in TableBits bits in one step, from a
/// 64-bit bit buffer refilled by unaligned 8-byte loads (see `huffman_decoder`); longer
/// codes (≤ 16) are resolved with the canonical first-code/count arrays. Every failure — over-subscribed
/// code lengths, a bit pattern that is no code, a stream that ends early, trailing bytes,
/// non-zero padding, N above the output capacity — returns an error `status`; the decoder
/// never reads outside [in, in + size).
#pragma once

#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "../core/config.hpp"
#include "../core/error.hpp"
#include "bitpack.hpp"
#include "concepts.hpp"

#if !TINYLARGE_FREESTANDING
#include <cmath>
#include <vector>
#endif

namespace tinylarge::compress {

/// Longest code the coder produces and the decoder accepts.
inline constexpr unsigned huffman_max_length = 16;
/// Largest alphabet (symbols are bytes).
inline constexpr std::size_t huffman_max_symbols = 256;

/// Layout of a Huffman stream's payload (see the file comment).
enum class huffman_format : std::uint8_t {
  single = 1,       ///< format 1: one bit stream (what every reader since the first decodes)
  interleaved = 2,  ///< format 2: four bit streams over consecutive quarters of the symbols
};
/// Bit streams of a format-2 stream.
inline constexpr unsigned huffman_interleaved_streams = 4;
/// Flag in the u16 alphabet field that marks a format-2 stream.
inline constexpr std::uint32_t huffman_interleaved_flag = 0x8000u;

/// Symbols [*first, *first + return) of `n` go to stream `k` of a format-2 stream: stream k
/// holds quarter k, ⌈n/4⌉ symbols each (the last ones may hold fewer, or none).
constexpr std::size_t huffman_segment(std::size_t n, unsigned k, std::size_t* first) noexcept {
  const std::size_t per = n / huffman_interleaved_streams + (n % huffman_interleaved_streams != 0);
  const std::size_t f = k * per < n ? k * per : n;
  *first = f;
  return n - f < per ? n - f : per;
}

/// A canonical Huffman code over an alphabet of ≤ 256 byte symbols.
struct huffman_code {
  std::uint16_t alphabet = 0;                    ///< number of symbols, 1..256
  std::uint8_t length[huffman_max_symbols] = {};  ///< code length per symbol, 0 = absent
  std::uint16_t code[huffman_max_symbols] = {};   ///< canonical code, right-aligned, MSB first
};

// ---------------------------------------------------------------------------
// Code construction
// ---------------------------------------------------------------------------

/// Optimal code lengths with every length ≤ `max_length` (package-merge, see the file
/// comment). Symbols with count 0 get length 0; a single used symbol gets length 1.
/// Fails when `alphabet` ∉ [1, 256] or `max_length` ∉ [1, 16] or 2^max_length is below the
/// number of used symbols.
[[nodiscard]] inline status huffman_code_lengths(const std::uint64_t* counts, std::size_t alphabet,
                                                 unsigned max_length, std::uint8_t* lengths) noexcept {
  TINYLARGE_CHECK(alphabet >= 1 && alphabet <= huffman_max_symbols, errc::invalid_argument,
                  "huffman: alphabet size must be in [1, 256]");
  TINYLARGE_CHECK(max_length >= 1 && max_length <= huffman_max_length, errc::invalid_argument,
                  "huffman: maximum code length must be in [1, 16]");
  // Used symbols sorted by (count, symbol): insertion sort, n ≤ 256.
  std::uint16_t sym[huffman_max_symbols];
  std::size_t n = 0;
  for (std::size_t s = 0; s < alphabet; ++s) {
    lengths[s] = 0;
    if (counts[s] == 0) continue;
    std::size_t j = n++;
    while (j > 0 && (counts[sym[j - 1]] > counts[s])) {
      sym[j] = sym[j - 1];
      --j;
    }
    sym[j] = static_cast<std::uint16_t>(s);
  }
  if (n == 0) return status::success();
  if (n == 1) {
    lengths[sym[0]] = 1;
    return status::success();
  }
  TINYLARGE_CHECK(n <= (std::size_t{1} << max_length), errc::invalid_argument,
                  "huffman: too many symbols for the maximum code length");

  constexpr std::size_t cap = 2 * huffman_max_symbols;  // a list has ≤ 2n − 1 items
  std::uint64_t cur[cap], nxt[cap];
  std::uint64_t leaf_flag[huffman_max_length][cap / 64] = {};  // bit set: item is a leaf
  std::size_t list_len[huffman_max_length] = {};
  // Level index t = 0 is the deepest list (leaves only); t = max_length − 1 is the top.
  for (std::size_t i = 0; i < n; ++i) {
    cur[i] = counts[sym[i]];
    leaf_flag[0][i / 64] |= std::uint64_t{1} << (i % 64);
  }
  list_len[0] = n;
  for (unsigned t = 1; t < max_length; ++t) {
    const std::size_t npk = list_len[t - 1] / 2;
    std::size_t a = 0, b = 0, o = 0;  // a: leaves, b: packages
    while (a < n || b < npk) {
      const bool take_leaf = b >= npk || (a < n && counts[sym[a]] <= cur[2 * b] + cur[2 * b + 1]);
      if (take_leaf) {
        nxt[o] = counts[sym[a++]];
        leaf_flag[t][o / 64] |= std::uint64_t{1} << (o % 64);
      } else {
        nxt[o] = cur[2 * b] + cur[2 * b + 1];
        ++b;
      }
      ++o;
    }
    list_len[t] = o;
    for (std::size_t i = 0; i < o; ++i) cur[i] = nxt[i];
  }
  // Select the first 2n − 2 items of the top list and descend.
  std::size_t select = 2 * n - 2;
  for (unsigned t = max_length; t-- > 0;) {
    if (select > list_len[t]) return {errc::invalid_argument, "huffman: package-merge selection overflow"};
    std::size_t leaves = 0;
    for (std::size_t i = 0; i < select; ++i) leaves += (leaf_flag[t][i / 64] >> (i % 64)) & 1u;
    for (std::size_t i = 0; i < leaves; ++i) ++lengths[sym[i]];
    select = 2 * (select - leaves);
  }
  return status::success();
}

/// Assigns canonical codes from `code.length` (deflate's rule). Fails with `corrupt` when
/// a length exceeds 16 or the lengths are over-subscribed (Kraft sum Σ 2^−len > 1).
[[nodiscard]] inline status huffman_assign_codes(huffman_code& code) noexcept {
  TINYLARGE_CHECK(code.alphabet >= 1 && code.alphabet <= huffman_max_symbols, errc::invalid_argument,
                  "huffman: alphabet size must be in [1, 256]");
  std::uint32_t bl_count[huffman_max_length + 1] = {};
  std::uint32_t kraft = 0;  // Σ 2^(16 − len), ≤ 2^16 for a prefix code
  for (std::size_t s = 0; s < code.alphabet; ++s) {
    const unsigned len = code.length[s];
    TINYLARGE_CHECK(len <= huffman_max_length, errc::corrupt, "huffman: code length above 16");
    if (len == 0) continue;
    ++bl_count[len];
    kraft += std::uint32_t{1} << (huffman_max_length - len);
    TINYLARGE_CHECK(kraft <= (std::uint32_t{1} << huffman_max_length), errc::corrupt,
                    "huffman: over-subscribed code lengths (Kraft sum above 1)");
  }
  std::uint32_t next[huffman_max_length + 2] = {};
  std::uint32_t c = 0;
  for (unsigned len = 1; len <= huffman_max_length; ++len) {
    c = (c + bl_count[len - 1]) << 1;
    next[len] = c;
  }
  // One pass per length with a scalar counter. (Not `code[s] = next[length[s]]++` over s:
  // clang 14 with AVX-512 vectorizes that conditional histogram with masked gather/scatter
  // and gives every symbol of a vector the same code.)
  for (unsigned len = 1; len <= huffman_max_length; ++len) {
    if (bl_count[len] == 0) continue;
    std::uint32_t c_len = next[len];
    for (std::size_t s = 0; s < code.alphabet; ++s)
      if (code.length[s] == len) code.code[s] = static_cast<std::uint16_t>(c_len++);
  }
  return status::success();
}

/// Optimal canonical code with lengths ≤ `max_length` for the symbol counts.
[[nodiscard]] inline status huffman_build(const std::uint64_t* counts, std::size_t alphabet, huffman_code& code,
                                          unsigned max_length = huffman_max_length) noexcept {
  TINYLARGE_TRY(huffman_code_lengths(counts, alphabet, max_length, code.length));
  code.alphabet = static_cast<std::uint16_t>(alphabet);
  for (std::size_t s = alphabet; s < huffman_max_symbols; ++s) code.length[s] = 0;
  return huffman_assign_codes(code);
}

// ---------------------------------------------------------------------------
// Encoder
// ---------------------------------------------------------------------------

/// Bits per code-length field: the smallest b ∈ [1, 5] with max length < 2^b.
constexpr unsigned huffman_length_field_bits(unsigned max_len) noexcept {
  unsigned b = 1;
  while ((1u << b) <= max_len) ++b;
  return b;
}

/// Header bytes ("table bytes") of a stream over `alphabet` symbols with longest code `max_len`
/// (format 2: 12 more, the sizes of streams 0–2).
constexpr std::size_t huffman_header_size(std::size_t alphabet, unsigned max_len,
                                          huffman_format format = huffman_format::single) noexcept {
  return 2 + 1 + packed_size(alphabet, huffman_length_field_bits(max_len)) + 4 + 4 +
         (format == huffman_format::interleaved ? 4 * (huffman_interleaved_streams - 1) : 0);
}

/// An upper bound of the encoded size of `n` symbols over `alphabet` symbols, either format.
constexpr std::size_t huffman_max_encoded_size(std::size_t n, std::size_t alphabet) noexcept {
  return huffman_header_size(alphabet, huffman_max_length, huffman_format::interleaved) +
         (n * huffman_max_length + 7) / 8 + huffman_interleaved_streams;
}

namespace detail {
TINYLARGE_ALWAYS_INLINE void store_le16(std::uint8_t* p, std::uint32_t v) noexcept {
  p[0] = static_cast<std::uint8_t>(v);
  p[1] = static_cast<std::uint8_t>(v >> 8);
}
TINYLARGE_ALWAYS_INLINE void store_le32(std::uint8_t* p, std::uint32_t v) noexcept {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<std::uint8_t>(v >> (8 * i));
}
TINYLARGE_ALWAYS_INLINE std::uint32_t load_le32(const std::uint8_t* p) noexcept {
  return static_cast<std::uint32_t>(p[0]) | (static_cast<std::uint32_t>(p[1]) << 8) |
         (static_cast<std::uint32_t>(p[2]) << 16) | (static_cast<std::uint32_t>(p[3]) << 24);
}
}  // namespace detail

namespace detail {
/// Writes the codes of `n` symbols MSB first from `p`, zero padded to a byte; returns the end.
inline std::uint8_t* huffman_write_codes(const huffman_code& code, const std::uint8_t* symbols, std::size_t n,
                                         std::uint8_t* p) noexcept {
  std::uint64_t acc = 0;
  unsigned nacc = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const unsigned len = code.length[symbols[i]];
    acc = (acc << len) | code.code[symbols[i]];
    nacc += len;
    while (nacc >= 8) {
      nacc -= 8;
      *p++ = static_cast<std::uint8_t>(acc >> nacc);
    }
  }
  if (nacc > 0) *p++ = static_cast<std::uint8_t>(acc << (8 - nacc));
  return p;
}
}  // namespace detail

/// Encodes `n` symbols (each < `code.alphabet`, each with a code) with `code` into `out`
/// (capacity `capacity`), writing the stream format of the file comment: `single` (format 1,
/// one bit stream: what every reader decodes, the default) or `interleaved` (format 2, four
/// bit streams that a host decodes at once, 12 header bytes and ≤ 3 padding bytes more).
/// `*written` receives the size. Fails with `capacity_exceeded` or `invalid_argument`.
[[nodiscard]] inline status huffman_encode_with(const huffman_code& code, const std::uint8_t* symbols, std::size_t n,
                                                std::uint8_t* out, std::size_t capacity, std::size_t* written,
                                                huffman_format format = huffman_format::single) noexcept {
  TINYLARGE_CHECK(n <= 0xFFFFFFFFu, errc::too_large, "huffman: more than 2^32 - 1 symbols");
  TINYLARGE_CHECK(format == huffman_format::single || format == huffman_format::interleaved, errc::invalid_argument,
                  "huffman: unknown stream format");
  unsigned max_len = 0;
  for (std::size_t s = 0; s < code.alphabet; ++s) max_len = code.length[s] > max_len ? code.length[s] : max_len;
  const unsigned b = huffman_length_field_bits(max_len);
  const std::size_t header = huffman_header_size(code.alphabet, max_len, format);
  TINYLARGE_CHECK(capacity >= header, errc::capacity_exceeded, "huffman: output buffer too small");
  const unsigned streams = format == huffman_format::interleaved ? huffman_interleaved_streams : 1;
  std::uint64_t stream_bytes[huffman_interleaved_streams] = {};
  std::uint64_t payload = 0;
  for (unsigned k = 0; k < streams; ++k) {
    std::size_t first = 0;
    const std::size_t cnt = streams == 1 ? n : huffman_segment(n, k, &first);
    std::uint64_t bits = 0;
    for (std::size_t i = first; i < first + cnt; ++i) {
      TINYLARGE_CHECK(symbols[i] < code.alphabet && code.length[symbols[i]] != 0, errc::invalid_argument,
                      "huffman: a symbol has no code");
      bits += code.length[symbols[i]];
    }
    stream_bytes[k] = (bits + 7) / 8;
    payload += stream_bytes[k];
  }
  TINYLARGE_CHECK(payload <= 0xFFFFFFFFu, errc::too_large, "huffman: payload above 4 GiB");
  TINYLARGE_CHECK(capacity - header >= payload, errc::capacity_exceeded, "huffman: output buffer too small");
  std::uint8_t* p = out;
  detail::store_le16(p, code.alphabet | (streams == 1 ? 0u : huffman_interleaved_flag));
  p[2] = static_cast<std::uint8_t>(b);
  p += 3;
  const std::size_t table = packed_size(code.alphabet, b);
  TINYLARGE_TRY(pack_bits(code.length, code.alphabet, b, p, table));
  p += table;
  detail::store_le32(p, static_cast<std::uint32_t>(n));
  detail::store_le32(p + 4, static_cast<std::uint32_t>(payload));
  p += 8;
  if (streams == 1) {
    p = detail::huffman_write_codes(code, symbols, n, p);
  } else {
    for (unsigned k = 0; k + 1 < streams; ++k, p += 4) detail::store_le32(p, static_cast<std::uint32_t>(stream_bytes[k]));
    for (unsigned k = 0; k < streams; ++k) {
      std::size_t first = 0;
      const std::size_t cnt = huffman_segment(n, k, &first);
      p = detail::huffman_write_codes(code, symbols + first, cnt, p);
    }
  }
  *written = static_cast<std::size_t>(p - out);
  return status::success();
}

/// Counts the symbols, builds the optimal code with lengths ≤ 16 and encodes (see
/// `huffman_encode_with`). `alphabet` ∈ [1, 256]: every symbol must be below it.
/// No heap; ~12 KiB of stack (the package-merge lists), so encode on the host.
[[nodiscard]] inline status huffman_encode(const std::uint8_t* symbols, std::size_t n, std::size_t alphabet,
                                           std::uint8_t* out, std::size_t capacity, std::size_t* written,
                                           huffman_format format = huffman_format::single) noexcept {
  TINYLARGE_CHECK(alphabet >= 1 && alphabet <= huffman_max_symbols, errc::invalid_argument,
                  "huffman: alphabet size must be in [1, 256]");
  std::uint64_t counts[huffman_max_symbols] = {};
  for (std::size_t i = 0; i < n; ++i) {
    TINYLARGE_CHECK(symbols[i] < alphabet, errc::invalid_argument, "huffman: symbol outside the alphabet");
    ++counts[symbols[i]];
  }
  huffman_code code;
  TINYLARGE_TRY(huffman_build(counts, alphabet, code));
  return huffman_encode_with(code, symbols, n, out, capacity, written, format);
}

// ---------------------------------------------------------------------------
// Decoder
// ---------------------------------------------------------------------------

namespace detail {
/// The 8 bytes at `p` (any alignment) as a big-endian integer: the first byte is the most
/// significant, so the stream's next bit is bit 63.
TINYLARGE_ALWAYS_INLINE std::uint64_t load_be64(const std::uint8_t* p) noexcept {
#if (defined(__GNUC__) || defined(__clang__)) && defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  std::uint64_t v;
  __builtin_memcpy(&v, p, 8);
  return __builtin_bswap64(v);
#elif (defined(__GNUC__) || defined(__clang__)) && defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
  std::uint64_t v;
  __builtin_memcpy(&v, p, 8);
  return v;
#else
  std::uint64_t v = 0;
  for (int k = 0; k < 8; ++k) v = (v << 8) | p[k];
  return v;
#endif
}
/// Trailing zero bits of `v` ≠ 0.
TINYLARGE_ALWAYS_INLINE unsigned ctz64(std::uint64_t v) noexcept {
#if defined(__GNUC__) || defined(__clang__)
  return static_cast<unsigned>(__builtin_ctzll(v));
#else
  unsigned n = 0;
  while ((v & 1u) == 0) {
    v >>= 1;
    ++n;
  }
  return n;
#endif
}
}  // namespace detail

/// Table-driven canonical Huffman decoder; fixed-size storage, no heap, no exceptions.
///
/// Size: 4·2^TableBits + ~120 bytes (TableBits = 8: 1.1 KiB, 10: 4.1 KiB, 12: 16.1 KiB).
///
/// **Lookup table.** Entry k of the 2^TableBits table describes the codes that the bit
/// pattern k begins with: as many whole codes (up to three) as fit in TableBits bits, greedily
/// from the first; so one lookup yields 1–3 symbols (5-bit index streams, whose codes are
/// 2–9 bits long, average ~2.5 symbols per lookup with TableBits = 12). An entry that is 0
/// means that no code of ≤ TableBits bits starts there: the code is longer (≤ 16 bits, found
/// with the canonical first-code/count arrays) or the pattern is no code (`corrupt`).
///
/// **Bit buffer.** A 64-bit MSB-aligned buffer refilled branch-free by one unaligned 8-byte
/// big-endian load: after a refill it holds ≥ 56 valid bits, so the hot loop decodes
/// ⌊40 / TableBits⌋ + 1 table entries per refill (4 for TableBits = 12: up to 12 symbols),
/// refilling again right after a (rare) long code. The hot loop runs only while ≥ 8 payload
/// bytes remain at the load position and enough symbols remain to be written, so it never
/// reads or writes out of bounds and never runs past the end of the payload; the last
/// bytes and symbols go through a checked path that loads byte by byte and counts every
/// consumed bit against the payload size. The decoded symbols are the same as a one-code-
/// at-a-time decoder's (tests/test_compress.cpp checks both paths and their boundaries).
/// @tparam TableBits bits resolved by one table lookup, 4..12; codes up to 16 bits are
///         resolved by the canonical arrays
template <unsigned TableBits = 10>
class huffman_decoder {
  static_assert(TableBits >= 4 && TableBits <= 12, "huffman_decoder<TableBits>: TableBits must be in [4, 12]");

 public:
  /// Builds the tables from code lengths (`alphabet` ∈ [1, 256], lengths ≤ 16). Fails with
  /// `corrupt` on over-subscribed lengths or when no symbol has a code.
  [[nodiscard]] status init(const std::uint8_t* lengths, std::size_t alphabet) noexcept {
    TINYLARGE_CHECK(alphabet >= 1 && alphabet <= huffman_max_symbols, errc::corrupt,
                    "huffman: alphabet size must be in [1, 256]");
    huffman_code code;
    code.alphabet = static_cast<std::uint16_t>(alphabet);
    std::size_t used = 0;
    for (std::size_t s = 0; s < alphabet; ++s) {
      code.length[s] = lengths[s];
      used += lengths[s] != 0;
    }
    TINYLARGE_CHECK(used > 0, errc::corrupt, "huffman: no symbol has a code");
    ready_ = false;
    TINYLARGE_TRY(huffman_assign_codes(code));
    for (unsigned len = 0; len <= huffman_max_length; ++len) count_[len] = first_[len] = offset_[len] = 0;
    for (std::size_t s = 0; s < alphabet; ++s) ++count_[code.length[s]];
    count_[0] = 0;
    max_length_ = 0;
    for (unsigned len = 1; len <= huffman_max_length; ++len)
      if (count_[len] != 0) max_length_ = len;
    std::uint16_t idx = 0;
    for (unsigned len = 1; len <= huffman_max_length; ++len) {
      offset_[len] = idx;
      idx = static_cast<std::uint16_t>(idx + count_[len]);
    }
    // Per length, symbols in ascending order (so the first has the smallest code); one
    // scalar counter per pass (see huffman_assign_codes for why not a histogram loop).
    // That is canonical order: index i has the code first_[len] + (i − offset_[len]).
    for (unsigned len = 1; len <= huffman_max_length; ++len) {
      if (count_[len] == 0) continue;
      std::uint16_t fill = offset_[len];
      for (std::size_t s = 0; s < alphabet; ++s) {
        if (code.length[s] != len) continue;
        if (fill == offset_[len]) first_[len] = code.code[s];
        sorted_[fill++] = static_cast<std::uint8_t>(s);
      }
    }
    fill_table(code);
    ready_ = true;
    return status::success();
  }

  /// Decodes exactly `count` symbols from `payload` (`bytes` bytes) into `out`. Fails with
  /// `corrupt` on a bit pattern that is no code, on non-zero padding or trailing bytes, and
  /// with `truncated` when the payload ends before `count` symbols. Reads only
  /// [payload, payload + bytes) and writes only [out, out + count).
  [[nodiscard]] status decode(const std::uint8_t* payload, std::size_t bytes, std::size_t count,
                              std::uint8_t* out) const noexcept {
    TINYLARGE_CHECK(ready_, errc::invalid_argument, "huffman: decoder used before a successful init");
    return decode_from(payload, bytes, count, out, 0, 0);
  }

  /// `decode` from bit `bit` of the payload with `done` symbols already written (the
  /// first `done` symbols of `out` are kept).
  [[nodiscard]] status decode_from(const std::uint8_t* payload, std::size_t bytes, std::size_t count,
                                   std::uint8_t* out, std::uint64_t bit, std::size_t done) const noexcept {
    std::uint64_t consumed = 0;
    TINYLARGE_TRY(decode_bits(payload, bytes, count, out, bit, done, consumed));
    TINYLARGE_CHECK((consumed + 7) / 8 == bytes, errc::corrupt, "huffman: trailing bytes after the last code");
    if (consumed % 8 != 0) {
      const unsigned pad = static_cast<unsigned>(8 - consumed % 8);
      TINYLARGE_CHECK((payload[bytes - 1] & ((1u << pad) - 1u)) == 0, errc::corrupt,
                      "huffman: padding bits are not zero");
    }
    return status::success();
  }

  /// Decodes exactly `count` symbols whose codes occupy bits [`first_bit`, `end_bit`) of a
  /// payload of `bytes` bytes (one row of a row-indexed stream, e.g. the per-output-channel
  /// rows of an `int8_huffman_codebook` record) into `out`. Fails with `corrupt` when the
  /// codes of the `count` symbols do not end exactly at `end_bit` or a pattern is no code,
  /// with `truncated` when the payload ends first. Reads only [payload, payload + bytes) and
  /// writes only [out, out + count); `first_bit` < 8·`bytes` unless `count` is 0.
  [[nodiscard]] status decode_range(const std::uint8_t* payload, std::size_t bytes, std::uint64_t first_bit,
                                    std::uint64_t end_bit, std::size_t count, std::uint8_t* out) const noexcept {
    TINYLARGE_CHECK(ready_, errc::invalid_argument, "huffman: decoder used before a successful init");
    TINYLARGE_CHECK(first_bit <= end_bit && end_bit <= static_cast<std::uint64_t>(bytes) * 8, errc::corrupt,
                    "huffman: a bit range outside the payload");
    if (count == 0) {
      TINYLARGE_CHECK(first_bit == end_bit, errc::corrupt, "huffman: bits left over after the last code of a range");
      return status::success();
    }
    TINYLARGE_CHECK(first_bit < end_bit, errc::corrupt, "huffman: an empty bit range holds no symbol");
    std::uint64_t consumed = 0;
    TINYLARGE_TRY(decode_bits(payload, bytes, count, out, first_bit, 0, consumed));
    TINYLARGE_CHECK(consumed == end_bit, errc::corrupt,
                    "huffman: a range's codes do not end at its end bit");
    return status::success();
  }

  /// Decodes `count` symbols from bit `bit` (≤ 8·`bytes`) of a payload of `bytes` bytes into
  /// `out`; `*end_bit` receives the bit after the last code (so a long range can be decoded,
  /// or checked, in pieces). Fails as `decode_range`.
  [[nodiscard]] status decode_at(const std::uint8_t* payload, std::size_t bytes, std::uint64_t bit, std::size_t count,
                                 std::uint8_t* out, std::uint64_t* end_bit) const noexcept {
    TINYLARGE_CHECK(ready_, errc::invalid_argument, "huffman: decoder used before a successful init");
    TINYLARGE_CHECK(bit <= static_cast<std::uint64_t>(bytes) * 8, errc::corrupt, "huffman: a bit outside the payload");
    std::uint64_t consumed = bit;
    if (count > 0) TINYLARGE_TRY(decode_bits(payload, bytes, count, out, bit, 0, consumed));
    *end_bit = consumed;
    return status::success();
  }

 private:
  /// The decoding loop of `decode_from` and `decode_range`: `count` − `done` symbols from bit
  /// `bit`; `consumed` receives the bit position after the last code.
  [[nodiscard]] status decode_bits(const std::uint8_t* payload, std::size_t bytes, std::size_t count,
                                   std::uint8_t* out, std::uint64_t bit, std::size_t done,
                                   std::uint64_t& consumed_bits) const noexcept {
    std::uint64_t acc = 0;  // next bits, MSB-aligned; the bits below the valid ones are
                            // either zero or the stream's next bits (loaded again, harmlessly)
    unsigned nacc = 0;      // valid bits in acc, ≤ 63
    std::size_t pos = static_cast<std::size_t>(bit >> 3);  // next byte to load
    std::size_t i = done;   // symbols written
    if ((bit & 7u) != 0) {  // bit < 8·bytes: the rest of byte pos
      acc = static_cast<std::uint64_t>(payload[pos++]) << (56 + (bit & 7u));
      nacc = static_cast<unsigned>(8 - (bit & 7u));
    }
    // Hot loop: ≥ 8 bytes readable at pos and ≥ 3·lookups + 1 symbols to go (`lookups`
    // entries of ≤ 3 symbols, and the last 4-byte store). After a refill ≥ 56 bits are
    // valid; a table entry consumes ≤ TableBits bits and a long code ≤ 16, after which the
    // buffer is refilled at once (or the checked tail takes over when fewer than 8 bytes
    // remain). So with `lookups` = ⌊40 / TableBits⌋ + 1 ((lookups − 1)·TableBits + 16 ≤ 56)
    // no lookup reads past the valid bits and no bound check is needed.
    constexpr unsigned lookups = 40 / TableBits + 1;
    static_assert((lookups - 1) * TableBits + huffman_max_length <= 56);
    while (bytes - pos >= 8 && count - i >= 3 * lookups + 1) {
      acc |= detail::load_be64(payload + pos) >> nacc;
      pos += (63 - nacc) >> 3;
      nacc |= 56;  // = nacc + 8·((63 − nacc) >> 3) for nacc ≤ 63
      for (unsigned g = 0; g < lookups; ++g) {
        const std::uint32_t e = fast_[acc >> (64 - TableBits)];
        if (TINYLARGE_LIKELY(e != 0)) {
          store_symbols(out + i, e);  // 4 bytes, the first nsym of them kept
          i += (e >> 6) & 3u;
          acc <<= (e & 63u);  // bit 5 is 0: e & 63 is the length, and x86 shifts mask by 63
          nacc -= e & 31u;
        } else {
          unsigned len;
          if (!long_code(acc, out[i], len)) return {errc::corrupt, "huffman: bit pattern is not a code"};
          ++i;
          acc <<= len;
          nacc -= len;
          if (bytes - pos < 8) goto checked_tail;
          acc |= detail::load_be64(payload + pos) >> nacc;
          pos += (63 - nacc) >> 3;
          nacc |= 56;
        }
      }
    }
  checked_tail:
    // Checked tail: loads byte by byte, zeros past the end, counts consumed bits.
    std::uint64_t consumed = static_cast<std::uint64_t>(pos) * 8 - nacc;
    const std::uint64_t limit = static_cast<std::uint64_t>(bytes) * 8;
    while (i < count) {
      while (nacc <= 56 && pos < bytes) {
        acc |= static_cast<std::uint64_t>(payload[pos++]) << (56 - nacc);
        nacc += 8;
      }
      if (nacc < huffman_max_length) nacc = huffman_max_length;  // zero bits past the end
      const std::uint32_t e = fast_[acc >> (64 - TableBits)];
      const unsigned nsym = (e >> 6) & 3u;
      unsigned len;
      if (e != 0 && nsym <= count - i) {
        for (unsigned k = 0; k < nsym; ++k) out[i + k] = static_cast<std::uint8_t>(e >> (8 + 8 * k));
        i += nsym;
        len = e & 31u;
      } else {  // the last symbol(s), or a long code: one code
        if (!any_code(acc, out[i], len)) return {errc::corrupt, "huffman: bit pattern is not a code"};
        ++i;
      }
      acc <<= len;
      nacc -= len;
      consumed += len;
      if (TINYLARGE_UNLIKELY(consumed > limit)) return {errc::truncated, "huffman: payload ends early"};
    }
    consumed_bits = consumed;
    return status::success();
  }

  static constexpr std::uint32_t mask = (1u << TableBits) - 1u;

  /// Writes every table entry once. Codes are canonical, so the codes of length ≤ r,
  /// left-aligned to r bits, tile [0, covered[r]) in canonical order, covered[r] =
  /// Σ_{len ≤ r} count·2^(r − len). So the entries that start with the code of symbol s1
  /// (length l1, r1 = TableBits − l1 bits left) are the range [c1·2^r1, (c1 + 1)·2^r1); its
  /// first covered[r1] entries continue with a second code of ≤ r1 bits (tiled the same way,
  /// and likewise for a third), the rest hold s1 alone. Entries past covered[TableBits]
  /// start with a longer code or none: 0. (The same entries as a greedy decode of each
  /// pattern; a fill per code prefix instead of three dependent lookups per entry.)
  void fill_table(const huffman_code& code) noexcept {
    std::uint32_t codes_upto[TableBits + 1];  // codes of length ≤ r
    std::uint32_t covered[TableBits + 1];
    codes_upto[0] = covered[0] = 0;
    for (unsigned r = 1; r <= TableBits; ++r) {
      codes_upto[r] = codes_upto[r - 1] + count_[r];
      covered[r] = 2 * covered[r - 1] + count_[r];
    }
    // Code and length by canonical index, read through sorted_ (no copy: this also runs on
    // microcontrollers, where 768 bytes of copies would be stack).
    const auto cl = [&](std::uint32_t i) noexcept { return static_cast<unsigned>(code.length[sorted_[i]]); };
    const auto cc = [&](std::uint32_t i) noexcept { return static_cast<std::uint32_t>(code.code[sorted_[i]]); };
    const auto fill = [this](std::uint32_t lo, std::uint32_t hi, std::uint32_t e) {
      for (std::uint32_t k = lo; k < hi; ++k) fast_[k] = e;
    };
    for (std::uint32_t i1 = 0; i1 < codes_upto[TableBits]; ++i1) {
      const unsigned r1 = TableBits - cl(i1);
      const std::uint32_t base1 = cc(i1) << r1;
      const std::uint32_t s1 = sorted_[i1];
      for (std::uint32_t i2 = 0; i2 < codes_upto[r1]; ++i2) {
        const unsigned r2 = r1 - cl(i2);
        const std::uint32_t base2 = base1 + (cc(i2) << r2);
        const std::uint32_t s12 = s1 | static_cast<std::uint32_t>(sorted_[i2]) << 8;
        for (std::uint32_t i3 = 0; i3 < codes_upto[r2]; ++i3) {
          const unsigned r3 = r2 - cl(i3);
          const std::uint32_t base3 = base2 + (cc(i3) << r3);
          fill(base3, base3 + (1u << r3), entry(s12 | static_cast<std::uint32_t>(sorted_[i3]) << 16, 3, TableBits - r3));
        }
        fill(base2 + covered[r2], base2 + (1u << r2), entry(s12, 2, TableBits - r2));
      }
      fill(base1 + covered[r1], base1 + (1u << r1), entry(s1, 1, TableBits - r1));
    }
    fill(covered[TableBits], mask + 1, 0);
  }

  /// A code longer than TableBits at the top of `acc` as a one-symbol entry, 0 if none.
  TINYLARGE_ALWAYS_INLINE std::uint32_t long_entry(std::uint64_t acc) const noexcept {
    for (unsigned len = TableBits + 1; len <= huffman_max_length; ++len) {
      const std::uint32_t code = static_cast<std::uint32_t>(acc >> (64 - len));
      if (code - first_[len] < count_[len]) return entry(sorted_[offset_[len] + (code - first_[len])], 1, len);
    }
    return 0;
  }

  /// sym3 << 24 | sym2 << 16 | sym1 << 8 | symbols (1..3) << 6 | total length (bits 0–4, bit 5 = 0).
  static constexpr std::uint32_t entry(std::uint32_t syms, unsigned n, unsigned total) noexcept {
    return (syms << 8) | (n << 6) | total;
  }

  /// Writes the entry's three symbol bytes and one more byte (overwritten later) at `p`.
  static TINYLARGE_ALWAYS_INLINE void store_symbols(std::uint8_t* p, std::uint32_t e) noexcept {
#if (defined(__GNUC__) || defined(__clang__)) && defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    const std::uint32_t v = e >> 8;
    __builtin_memcpy(p, &v, 4);
#else
    p[0] = static_cast<std::uint8_t>(e >> 8);
    p[1] = static_cast<std::uint8_t>(e >> 16);
    p[2] = static_cast<std::uint8_t>(e >> 24);
    p[3] = 0;
#endif
  }

  /// The code of length `from`..16 at the top of `acc` (canonical first-code/count search).
  TINYLARGE_ALWAYS_INLINE bool find_code(std::uint64_t acc, unsigned from, std::uint8_t& sym,
                                         unsigned& len) const noexcept {
    for (unsigned l = from; l <= huffman_max_length; ++l) {
      const std::uint32_t code = static_cast<std::uint32_t>(acc >> (64 - l));
      if (count_[l] != 0 && code >= first_[l] && code - first_[l] < count_[l]) {
        sym = sorted_[offset_[l] + (code - first_[l])];
        len = l;
        return true;
      }
    }
    return false;
  }
  /// A code longer than TableBits (the table entry is 0).
  TINYLARGE_NOINLINE bool long_code(std::uint64_t acc, std::uint8_t& sym, unsigned& len) const noexcept {
    return find_code(acc, TableBits + 1, sym, len);
  }
  /// Any code.
  bool any_code(std::uint64_t acc, std::uint8_t& sym, unsigned& len) const noexcept {
    return find_code(acc, 1, sym, len);
  }

  // Written wholly by `init` (not zeroed at construction: a decode builds one per call).
  std::uint32_t fast_[std::size_t{1} << TableBits];  ///< see `entry`; 0 = a code longer than TableBits
  std::uint16_t first_[huffman_max_length + 1] = {};      ///< first canonical code per length
  std::uint16_t count_[huffman_max_length + 1] = {};      ///< codes per length
  std::uint16_t offset_[huffman_max_length + 1] = {};     ///< index of the first symbol per length
  std::uint8_t sorted_[huffman_max_symbols] = {};         ///< symbols by (length, symbol)
  unsigned max_length_ = 0;                               ///< longest code
  bool ready_ = false;                                    ///< `init` succeeded

  template <unsigned>
  friend class huffman_interleaved_decoder;
};

// The interleaved decoder's lookup and reload as x86-64 BMI2 asm (see `huffman_interleaved_decoder`):
// GCC / Clang, not under AddressSanitizer or MemorySanitizer (whose builds check the same
// accesses in C++; neither sees inside asm).
#if defined(__SANITIZE_ADDRESS__)
#define TINYLARGE_HUFFMAN_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(memory_sanitizer)
#define TINYLARGE_HUFFMAN_SANITIZED 1
#endif
#endif
#if defined(__x86_64__) && defined(__BMI2__) && (defined(__GNUC__) || defined(__clang__)) && \
    !defined(TINYLARGE_HUFFMAN_SANITIZED)
#define TINYLARGE_HUFFMAN_X86_LOOKUP 1
#else
#define TINYLARGE_HUFFMAN_X86_LOOKUP 0
#endif
// Makes a local array escape (the compiler keeps it in memory across the loop).
#if defined(__GNUC__) || defined(__clang__)
#define TINYLARGE_HUFFMAN_ESCAPE(array) __asm__("" : : "r"(array) : "memory")
#else
#define TINYLARGE_HUFFMAN_ESCAPE(array) static_cast<void>(array)
#endif

/// Host decoder of format-2 (four-stream) Huffman streams: decodes the four bit streams in
/// one loop, so that their table lookups overlap (what zstd's HUF_decompress4X does), with
/// the same results, errors and bounds as `huffman_decoder::decode` on each stream in turn.
/// Format-1 streams and the last bytes of each stream go through the `huffman_decoder` it
/// holds.
///
/// **Table.** The `huffman_decoder` table's entries unpacked into 8 bytes {1–3 symbols and
/// zeros (4 bytes), bits, symbols, 2 zero bytes}, read by three plain loads: a lookup is a
/// shift for the index, a 4-byte copy of the symbols to the output (the bytes after them are
/// overwritten by the next copy), `buffer <<= bits` and `op += symbols` — seven instructions
/// for 1–3 symbols (zstd's HUF_decompress4X2 assembly loop: eight for ≤ 2). 0 symbols marks a
/// code longer than TableBits (or no code). On x86-64 with BMI2 (GCC and Clang, not under
/// AddressSanitizer or MemorySanitizer) the branch-free lookup is those seven instructions as
/// inline asm: g++ 12 adds an address computation to each lookup's dependency chain
/// otherwise; likewise the reload.
///
/// **Loop.** Each stream's bits sit in a 64-bit buffer with a marker bit below the valid
/// ones (zstd's fast loop): the consumed bit count is the marker's position (count trailing
/// zeros), so a stream's state is a buffer and two pointers (input, output); the buffers and
/// output pointers stay in registers, the input pointers (used once per reload) in memory. An
/// iteration reloads each buffer with one 8-byte load at the byte of its next bit (≥ 56 valid
/// bits) and makes L lookups per stream, L = ⌊56 / max(TableBits, longest code)⌋ ∈ {3, 4, 5}
/// so that even L long codes fit. The number of iterations that keep every reload inside its
/// stream's bytes and every 4-byte store inside its output quarter is computed up front, so
/// the loop body has no bound checks; each stream then finishes in `huffman_decoder`'s loop
/// and checked tail. When no table entry is 0 — a complete code whose codes all fit in
/// TableBits bits, e.g. the 5-bit index and gap streams (codes ≤ 9 bits) at TableBits ≥ 9 —
/// every bit pattern starts with a short code, and the loop has no branch per lookup.
///
/// Size: 12·2^TableBits + ~150 bytes (48 KiB for TableBits = 12, 24 KiB for 11): a host decoder.
/// @tparam TableBits bits resolved by one table lookup, 4..12
template <unsigned TableBits = 11>
class huffman_interleaved_decoder {
 public:
  /// Builds the tables from code lengths (see `huffman_decoder::init`).
  [[nodiscard]] status init(const std::uint8_t* lengths, std::size_t alphabet) noexcept {
    TINYLARGE_TRY(single_.init(lengths, alphabet));
    // Kraft sum Σ count·2^(16 − len) = 2^16 (a complete code) and no code above TableBits:
    // every TableBits-bit pattern starts with a code, so no table entry is 0.
    std::uint32_t kraft = 0;
    for (unsigned len = 1; len <= TableBits; ++len)
      kraft += static_cast<std::uint32_t>(single_.count_[len]) << (huffman_max_length - len);
    checked_ = !(single_.max_length_ <= TableBits && kraft == (std::uint32_t{1} << huffman_max_length));
    for (std::uint32_t k = 0; k <= huffman_decoder<TableBits>::mask; ++k) {
      const std::uint32_t e = single_.fast_[k];
      // Bytes {symbols (3), 0, bits, symbols}, then 0, 0: one 8-byte store where it is the
      // little-endian integer below (byte stores made this pass cost half of `init`).
      const std::uint64_t v = (e >> 8) | (static_cast<std::uint64_t>(e & 31u) << 32) |
                              (static_cast<std::uint64_t>((e >> 6) & 3u) << 40);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
      __builtin_memcpy(table_ + 8 * k, &v, 8);
#else
      for (unsigned i = 0; i < 8; ++i) table_[8 * k + i] = static_cast<std::uint8_t>(v >> (8 * i));
#endif
    }
    return status::success();
  }

  /// Decodes one bit stream (format 1): `huffman_decoder::decode`.
  [[nodiscard]] status decode(const std::uint8_t* payload, std::size_t bytes, std::size_t count,
                              std::uint8_t* out) const noexcept {
    return single_.decode(payload, bytes, count, out);
  }

  /// Decodes the four bit streams of a format-2 stream (`payload`, streams of
  /// `stream_bytes[0..3]` bytes back to back, `count` symbols in all) into `out`.
  [[nodiscard]] status decode_interleaved(const std::uint8_t* payload, const std::size_t* stream_bytes,
                                          std::size_t count, std::uint8_t* out) const noexcept {
    static_assert(huffman_interleaved_streams == 4, "decode_interleaved: one lane variable per stream");
    TINYLARGE_CHECK(single_.ready_, errc::invalid_argument, "huffman: decoder used before a successful init");
    lane l[4];
    bounds b[4];
    std::size_t off = 0;
    for (unsigned k = 0; k < 4; ++k) {
      std::size_t first = 0;
      const std::size_t cnt = huffman_segment(count, k, &first);
      b[k].start = l[k].ip = payload + off;
      b[k].end = payload + off + stream_bytes[k];
      off += stream_bytes[k];
      l[k].op = out + first;
      b[k].oend = l[k].op + cnt;
      l[k].acc = 1;  // the marker alone: 0 bits consumed at ip
    }
    const unsigned m = single_.max_length_ > TableBits ? single_.max_length_ : TableBits;
    bool ok;
    if (!checked_) ok = loop<(56 / TableBits < 5 ? 56 / TableBits : 5), false>(l, b);  // m = TableBits
    else if (m * 5 <= 56) ok = loop<5, true>(l, b);
    else if (m * 4 <= 56) ok = loop<4, true>(l, b);
    else ok = loop<3, true>(l, b);
    if (!ok) return {errc::corrupt, "huffman: bit pattern is not a code"};
    for (unsigned k = 0; k < 4; ++k) {
      std::size_t first = 0;
      const std::size_t cnt = huffman_segment(count, k, &first);
      const std::uint64_t bit = static_cast<std::uint64_t>(l[k].ip - b[k].start) * 8 + detail::ctz64(l[k].acc);
      TINYLARGE_TRY(single_.decode_from(b[k].start, stream_bytes[k], cnt, out + first, bit,
                                        static_cast<std::size_t>(l[k].op - (out + first))));
    }
    return status::success();
  }

 private:
  /// One bit stream in the loop: `acc` holds the next bits MSB-aligned with a marker bit
  /// below them (its position = bits consumed since the load at `ip`).
  struct lane {
    std::uint64_t acc;
    const std::uint8_t* ip;
    std::uint8_t* op;
  };
  struct bounds {
    const std::uint8_t* start;
    const std::uint8_t* end;
    std::uint8_t* oend;
  };

  /// The loop with `L` lookups per reload (L·max(TableBits, longest code) ≤ 56); false on a
  /// pattern that is no code. `Checked` = false: no entry is 0 (see the class comment).
  template <unsigned L, bool Checked>
  bool loop(lane* l, const bounds* b) const noexcept {
    static_assert(Checked || L * TableBits <= 56, "loop: L lookups must fit in the 56 bits of a reload");
    constexpr std::size_t syms_per_iter = 3 * L;
    constexpr std::size_t bytes_per_iter = (7 + 56) / 8;  // reload positions advance by ≤ 7
    // Separate variables (not an array) so that the compiler keeps all four in registers.
    lane l0 = l[0], l1 = l[1], l2 = l[2], l3 = l[3];
    const std::uint8_t* const table = table_;  // a base register
    unsigned shift = 64 - TableBits;
#if defined(__GNUC__) || defined(__clang__)
    __asm__("" : "+r"(shift));  // the count in a register: one BMI2 shrx per index, not mov + shr
#endif
    bool ok = true;
    for (;;) {
      std::size_t iters = ~std::size_t{0};
      const lane* ls[4] = {&l0, &l1, &l2, &l3};
      for (unsigned k = 0; k < 4; ++k) {
        const lane& x = *ls[k];
        const std::uint8_t* next = x.ip + (detail::ctz64(x.acc) >> 3);  // the first reload position
        const std::size_t in_left = static_cast<std::size_t>(b[k].end - next);
        const std::size_t out_left = static_cast<std::size_t>(b[k].oend - x.op);
        // The last store of an iteration writes 4 bytes at ≤ op + syms_per_iter − 3.
        const std::size_t by_in = in_left >= 8 ? (in_left - 8) / bytes_per_iter + 1 : 0;
        const std::size_t by_out = out_left >= 1 ? (out_left - 1) / syms_per_iter : 0;
        iters = by_in < iters ? by_in : iters;
        iters = by_out < iters ? by_out : iters;
      }
      if (iters == 0 || !ok) break;
      // The input pointers live in memory during the loop: each is used once per iteration
      // (off the lookup chains), and 4 buffers, 4 output pointers, the table, the shift, the
      // counter and two temporaries already take 14 of the 15 registers. Left to itself, g++ 12
      // parks buffers and output pointers in vector registers across the back edge instead
      // (vmovq there and back on every reload's dependency chain: ~6 % slower than clang).
      // The empty asm with the array's address and a memory clobber makes the array escape.
      const std::uint8_t* ip[4] = {l0.ip, l1.ip, l2.ip, l3.ip};
      TINYLARGE_HUFFMAN_ESCAPE(ip);
      for (std::size_t it = iters; it != 0; --it) {
        reload(l0, ip[0]);
        reload(l1, ip[1]);
        reload(l2, ip[2]);
        reload(l3, ip[3]);
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC unroll 8
#elif defined(__clang__)
#pragma unroll
#endif
        for (unsigned g = 0; g < L; ++g) {
          step<Checked>(table, shift, l0, ok);
          step<Checked>(table, shift, l1, ok);
          step<Checked>(table, shift, l2, ok);
          step<Checked>(table, shift, l3, ok);
#if defined(__GNUC__) || defined(__clang__)
          // One round of lookups at a time in program order (the out-of-order core overlaps
          // the rounds anyway): clang 14 otherwise hoists later rounds' loads,
          // delays the pointer updates and spills.
          __asm__("" : "+r"(l0.acc), "+r"(l1.acc), "+r"(l2.acc), "+r"(l3.acc), "+r"(l0.op), "+r"(l1.op), "+r"(l2.op),
                  "+r"(l3.op));
#endif
        }
      }
      TINYLARGE_HUFFMAN_ESCAPE(ip);
      l0.ip = ip[0];
      l1.ip = ip[1];
      l2.ip = ip[2];
      l3.ip = ip[3];
    }
    l[0] = l0;
    l[1] = l1;
    l[2] = l2;
    l[3] = l3;
    return ok;
  }
  /// Loads 8 bytes at the byte of the next bit (`ip`: the lane's input pointer): ≥ 56 valid bits.
  static TINYLARGE_ALWAYS_INLINE void reload(lane& x, const std::uint8_t*& ip) noexcept {
#if TINYLARGE_HUFFMAN_X86_LOOKUP
    // The C++ below with the load at ip + bytes (an indexed address) and ip advanced after it,
    // so that the add is not on the buffer's dependency chain (g++ 12 adds first: 2.5 % slower).
    std::uint64_t bits, bytes;
    const std::uint8_t* p = ip;
    __asm__("tzcntq %[acc], %[bits]\n\t"
            "movl %k[bits], %k[bytes]\n\t"
            "shrl $3, %k[bytes]\n\t"
            "andl $7, %k[bits]\n\t"
            "movq (%[p],%[bytes]), %[acc]\n\t"
            "bswapq %[acc]\n\t"
            "orq $1, %[acc]\n\t"
            "shlx %[bits], %[acc], %[acc]\n\t"
            "addq %[bytes], %[p]"
            : [acc] "+r"(x.acc), [p] "+r"(p), [bits] "=&r"(bits), [bytes] "=&r"(bytes)
            :
            : "memory");
    ip = p;
#else
    const unsigned used = detail::ctz64(x.acc);
    ip += used >> 3;
    x.acc = (detail::load_be64(ip) | 1u) << (used & 7u);
#endif
  }
  /// One table entry (1–3 symbols) or, when `Checked`, one long code. A pattern that is no
  /// code clears `ok` (the lane then writes a 0 and consumes no bits; the caller fails after
  /// the chunk).
  template <bool Checked>
  TINYLARGE_ALWAYS_INLINE void step(const std::uint8_t* table, unsigned shift, lane& x, bool& ok) const noexcept {
#if TINYLARGE_HUFFMAN_X86_LOOKUP
    if constexpr (!Checked) {
      // The portable code below as the seven instructions clang 14 emits for it. g++ 12
      // computes the entry's address once with an lea and reads the three fields through it:
      // one more instruction and one more cycle on the buffer's lookup → shift chain, which
      // bounds the loop (~5 % of the decode). Same loads and store as the C++ (the sanitizer
      // builds run the C++: ASan does not see accesses inside asm).
      std::uint64_t t0, t1;
      __asm__("shrx %[sh], %[acc], %[t0]\n\t"
              "movl (%[tab],%[t0],8), %k[t1]\n\t"
              "movl %k[t1], (%[op])\n\t"
              "movzbl 4(%[tab],%[t0],8), %k[t1]\n\t"
              "movzbl 5(%[tab],%[t0],8), %k[t0]\n\t"
              "shlx %[t1], %[acc], %[acc]\n\t"
              "addq %[t0], %[op]"
              : [acc] "+r"(x.acc), [op] "+r"(x.op), [t0] "=&r"(t0), [t1] "=&r"(t1)
              : [tab] "r"(table), [sh] "r"(static_cast<std::uint64_t>(shift))
              : "memory");
      static_cast<void>(ok);
      return;
    }
#endif
    const std::uint8_t* e = table + 8 * (x.acc >> shift);
    const unsigned n = e[5];
    if (!Checked || TINYLARGE_LIKELY(n != 0)) {
      __builtin_memcpy(x.op, e, 4);
      x.acc <<= e[4];
      x.op += n;
    } else {
      // lc = 0 (no code) consumes nothing: the lane stays within its L·M bits per reload.
      const std::uint32_t lc = single_.long_entry(x.acc);
      ok &= lc != 0;
      *x.op++ = static_cast<std::uint8_t>(lc >> 8);
      x.acc <<= lc != 0 ? (lc & 31u) : 0u;  // (the select, not lc & 31: g++ 12 allocates registers
                                              // better around it; TableBits 11 was 1.5× slower)
    }
  }

  huffman_decoder<TableBits> single_;
  alignas(64) std::uint8_t table_[std::size_t{8} << TableBits];  ///< see the class comment; written wholly by `init`
  bool checked_ = true;  ///< some entry is 0: the loop checks every lookup
};

/// Header of a Huffman stream, parsed and checked.
struct huffman_stream_info {
  huffman_format format = huffman_format::single;
  std::size_t alphabet = 0;
  std::uint8_t lengths[huffman_max_symbols] = {};
  std::size_t count = 0;          ///< symbols N
  const std::uint8_t* payload = nullptr;
  std::size_t payload_bytes = 0;  ///< all bit streams
  std::size_t header_bytes = 0;
  /// Bytes of each bit stream, back to back from `payload` (format 1: one, the payload).
  std::size_t stream_bytes[huffman_interleaved_streams] = {};
  /// Bit streams: 1 (format 1) or 4 (format 2).
  constexpr unsigned streams() const noexcept {
    return format == huffman_format::interleaved ? huffman_interleaved_streams : 1;
  }
};

/// Parses and checks the header of a stream (`size` bytes at `in`); the stream must end
/// exactly at the end of the payload.
[[nodiscard]] inline status huffman_parse_header(const std::uint8_t* in, std::size_t size,
                                                 huffman_stream_info& info) noexcept {
  TINYLARGE_CHECK(size >= 3, errc::truncated, "huffman: stream shorter than its header");
  std::size_t alphabet = static_cast<std::size_t>(in[0]) | (static_cast<std::size_t>(in[1]) << 8);
  info.format = huffman_format::single;
  if (alphabet & huffman_interleaved_flag) {
    info.format = huffman_format::interleaved;
    alphabet &= ~static_cast<std::size_t>(huffman_interleaved_flag);
  }
  const unsigned b = in[2];
  TINYLARGE_CHECK(alphabet >= 1 && alphabet <= huffman_max_symbols, errc::corrupt,
                  "huffman: alphabet size must be in [1, 256]");
  TINYLARGE_CHECK(b >= 1 && b <= 5, errc::corrupt, "huffman: bits per code length must be in [1, 5]");
  const std::size_t table = packed_size(alphabet, b);
  TINYLARGE_CHECK(size - 3 >= table + 8, errc::truncated, "huffman: stream shorter than its header");
  TINYLARGE_TRY(unpack_bits(in + 3, table, alphabet, b, info.lengths));
  for (std::size_t s = 0; s < alphabet; ++s)
    TINYLARGE_CHECK(info.lengths[s] <= huffman_max_length, errc::corrupt, "huffman: code length above 16");
  const std::uint8_t* p = in + 3 + table;
  info.alphabet = alphabet;
  info.count = detail::load_le32(p);
  info.payload_bytes = detail::load_le32(p + 4);
  info.header_bytes = 3 + table + 8;
  for (auto& sb : info.stream_bytes) sb = 0;
  info.stream_bytes[0] = info.payload_bytes;
  if (info.format == huffman_format::interleaved) {
    constexpr std::size_t jump = 4 * (huffman_interleaved_streams - 1);
    TINYLARGE_CHECK(size - info.header_bytes >= jump, errc::truncated, "huffman: stream shorter than its header");
    std::size_t rest = info.payload_bytes;
    for (unsigned k = 0; k + 1 < huffman_interleaved_streams; ++k) {
      info.stream_bytes[k] = detail::load_le32(p + 8 + 4 * k);
      TINYLARGE_CHECK(info.stream_bytes[k] <= rest, errc::corrupt, "huffman: stream sizes exceed the payload");
      rest -= info.stream_bytes[k];
    }
    info.stream_bytes[huffman_interleaved_streams - 1] = rest;
    info.header_bytes += jump;
  }
  TINYLARGE_CHECK(size - info.header_bytes >= info.payload_bytes, errc::truncated, "huffman: payload is truncated");
  TINYLARGE_CHECK(size - info.header_bytes == info.payload_bytes, errc::corrupt, "huffman: bytes after the payload");
  info.payload = in + info.header_bytes;
  return status::success();
}

/// How `huffman_decode` decodes the four bit streams of a format-2 stream.
enum class huffman_decode_mode : std::uint8_t {
  sequential,   ///< one after the other with `huffman_decoder::decode` (small code: microcontrollers)
  interleaved,  ///< all four in one loop, `huffman_decoder::decode_interleaved` (host speed)
};
/// `sequential` in the freestanding profile, `interleaved` on the host.
inline constexpr huffman_decode_mode huffman_default_decode_mode =
    TINYLARGE_FREESTANDING ? huffman_decode_mode::sequential : huffman_decode_mode::interleaved;

/// Decodes a whole stream into `out` (capacity `capacity` symbols); `*count` receives N.
/// Fails (never crashes) on any malformed input; see `huffman_decoder::decode`.
/// Stack: the decoder (4·2^TableBits + ~120 bytes: 4.2 KiB for TableBits = 10, 1.2 KiB for
/// 8) plus ~300 bytes of header; on a small microcontroller use TableBits = 8 or keep a
/// `huffman_decoder` in static storage and call `huffman_parse_header` + `decode` yourself.
template <unsigned TableBits = 10, huffman_decode_mode Mode = huffman_default_decode_mode>
[[nodiscard]] status huffman_decode(const std::uint8_t* in, std::size_t size, std::uint8_t* out, std::size_t capacity,
                                    std::size_t* count) noexcept {
  huffman_stream_info info;
  TINYLARGE_TRY(huffman_parse_header(in, size, info));
  TINYLARGE_CHECK(info.count <= capacity, errc::capacity_exceeded, "huffman: output buffer too small");
  // N symbols need ≥ N bits when N > 0: reject absurd counts before decoding.
  TINYLARGE_CHECK(info.count <= info.payload_bytes * 8, errc::corrupt, "huffman: symbol count exceeds the payload");
  using decoder = std::conditional_t<Mode == huffman_decode_mode::interleaved, huffman_interleaved_decoder<TableBits>,
                                     huffman_decoder<TableBits>>;
  decoder dec;
  if (info.count > 0) {
    TINYLARGE_TRY(dec.init(info.lengths, info.alphabet));
    if (info.format == huffman_format::single) {
      TINYLARGE_TRY(dec.decode(info.payload, info.payload_bytes, info.count, out));
    } else if constexpr (Mode == huffman_decode_mode::interleaved) {
      TINYLARGE_TRY(dec.decode_interleaved(info.payload, info.stream_bytes, info.count, out));
    } else {
      const std::uint8_t* p = info.payload;
      for (unsigned k = 0; k < huffman_interleaved_streams; ++k) {
        std::size_t first = 0;
        const std::size_t cnt = huffman_segment(info.count, k, &first);
        TINYLARGE_TRY(dec.decode(p, info.stream_bytes[k], cnt, out + first));
        p += info.stream_bytes[k];
      }
    }
  } else {
    TINYLARGE_CHECK(info.payload_bytes == 0, errc::corrupt, "huffman: bytes after the payload");
  }
  *count = info.count;
  return status::success();
}

#if !TINYLARGE_FREESTANDING
/// Empirical (order-0) entropy of a symbol stream in bits: Σ_s −c_s·log2(c_s/N).
inline double empirical_entropy_bits(const std::uint64_t* counts, std::size_t alphabet) {
  double total = 0.0;
  for (std::size_t s = 0; s < alphabet; ++s) total += static_cast<double>(counts[s]);
  double h = 0.0;
  for (std::size_t s = 0; s < alphabet; ++s)
    if (counts[s] != 0) {
      const double c = static_cast<double>(counts[s]);
      h -= c * std::log2(c / total);
    }
  return h;
}

/// Host convenience: the encoded stream as a vector (throws on failure).
inline std::vector<std::uint8_t> huffman_encode(const std::vector<std::uint8_t>& symbols, std::size_t alphabet,
                                                huffman_format format = huffman_format::single) {
  std::vector<std::uint8_t> out(huffman_max_encoded_size(symbols.size(), alphabet));
  std::size_t written = 0;
  raise_if_error(huffman_encode(symbols.data(), symbols.size(), alphabet, out.data(), out.size(), &written, format));
  out.resize(written);
  return out;
}

/// Host convenience: decodes a stream, returning the status and filling `out`.
[[nodiscard]] inline status huffman_decode(const std::vector<std::uint8_t>& in, std::vector<std::uint8_t>& out) {
  huffman_stream_info info;
  TINYLARGE_TRY(huffman_parse_header(in.data(), in.size(), info));
  TINYLARGE_CHECK(info.count <= info.payload_bytes * 8, errc::corrupt, "huffman: symbol count exceeds the payload");
  out.resize(info.count);
  std::size_t n = 0;
  TINYLARGE_TRY(huffman_decode(in.data(), in.size(), out.data(), out.size(), &n));
  return status::success();
}
#endif

/// Huffman coding of the symbol streams a previous stage emits (codebook indices, CSR
/// gaps). Lossless: `apply` leaves the fp32 weights unchanged; the coding happens when the
/// layer is serialised (compressed model file).
struct huffman {
  static constexpr const char* name() noexcept { return "huffman"; }
  static constexpr stage_kind kind = stage_kind::entropy_coding;
  static constexpr representation produces = representation::entropy_coded;
  static constexpr bool lossless = true;
  static constexpr bool needs_mask = false;
  static constexpr bool emits_symbols = false;

  template <class T>
  struct state {};

  template <class T>
  constexpr void apply(state<T>&, matrix_ref<T>) const noexcept {}
};

static_assert(compression_policy<huffman>);

}  // namespace tinylarge::compress
