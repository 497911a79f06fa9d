/// @file kernels/huffman_s8.hpp
/// @brief int8 dense, conv2d and depthwise layers computed on Huffman-coded
///        weight-shared int8 weights — the `int8_huffman_codebook` records of
///        the model file — one output channel's indices decoded at a time into
///        a scratch row, never the whole layer.
///
/// The weights are those of an `int8_codebook` record (kernels/codebook_s8.hpp):
/// W[o][c] = codebook[index(o·cols + c)], with the rows·cols indices stored as one
/// canonical Huffman stream (compress/huffman.hpp, format 1) whose rows — one per
/// output channel — start at the bit offsets `row_bits[o]` of the payload
/// (`row_bits[rows]` = the payload's bits). Per output channel o the kernels
/// decode the row's `cols` indices with `huffman_decoder::decode_range` into the
/// first `cols` bytes of `scratch`, replace each by its int8 codebook value in
/// place, and then compute with the dense int8 back end on that row:
/// - `huffman_dense_s8`: y_o = `dense_s8(Backend{}, 1, 1, cols, …)` (the back end's
///   dot product and `requantize_s8`); scratch: cols bytes.
/// - `huffman_conv2d_s8`: output channel outermost; the filter row decoded once per
///   channel, then two output pixels at a time gathered (`detail::gather_patch_s8`,
///   padding with z_x) and multiplied by `dense_s8(Backend{}, 2, 1, …)`; scratch:
///   `huffman_conv2d_s8_scratch_bytes(patch)` = 3·patch bytes (the row and two
///   im2col rows). Every patch is gathered once per output channel (the dense conv
///   gathers it once), the price of holding one filter row instead of all.
/// - `huffman_depthwise_conv2d_s8`: channel by channel, the K·K taps decoded once,
///   then the tap loop of `codebook_depthwise_conv2d_s8`
///   (`detail::depthwise_channel_s8`); scratch: K·K bytes.
/// The accumulation and requantization are the dense int8 kernels', so the outputs
/// equal the dense int8 layer whose weights are the codebook values, bit for bit.
///
/// The decoder (`huffman_s8_decoder`: 4·2^8 + ~120 bytes) is the caller's, set up
/// from the stream's code lengths by `huffman_s8_prepare`; the views are trusted:
/// `compress::model_file_reader` has checked the stream, the row offsets, that
/// every row decodes to exactly `cols` symbols ending at the next row's offset and
/// that the alphabet is at most k. Freestanding: no heap, no exceptions.
#pragma once

#include <cstddef>
#include <cstdint>

#include "../compress/huffman.hpp"
#include "../core/config.hpp"
#include "../core/error.hpp"
#include "codebook_s8.hpp"
#include "conv.hpp"
#include "dense.hpp"

namespace tinylarge::kernels {

/// Lookup-table bits of the decoder of `int8_huffman_codebook` records.
inline constexpr unsigned huffman_s8_table_bits = 8;
/// The decoder the kernels use: 4·2^8 + ~120 bytes (in the network object, not per layer).
using huffman_s8_decoder = compress::huffman_decoder<huffman_s8_table_bits>;

/// A Huffman-coded weight-shared int8 matrix (rows × cols); arrays not owned.
struct huffman_codebook_s8_matrix {
  std::size_t rows = 0;
  std::size_t cols = 0;
  const std::uint8_t* payload = nullptr;  ///< the codes (after the stream header)
  std::size_t payload_bytes = 0;
  const std::uint32_t* row_bits = nullptr;  ///< rows + 1 bit offsets into the payload
  const std::int8_t* codebook = nullptr;    ///< k values; every decoded index is below k
  const huffman_s8_decoder* decoder = nullptr;  ///< initialised with the stream's code lengths
};

/// Sets up `dec` from the header of the Huffman stream (`stream`, `bytes`) and points
/// `w.payload` / `w.payload_bytes` at its codes. Fails on a malformed header or code
/// lengths (what `compress::huffman_parse_header` and `huffman_decoder::init` check).
[[nodiscard]] inline status huffman_s8_prepare(const std::uint8_t* stream, std::size_t bytes, huffman_s8_decoder& dec,
                                               huffman_codebook_s8_matrix& w) noexcept {
  compress::huffman_stream_info info;
  TINYLARGE_TRY(compress::huffman_parse_header(stream, bytes, info));
  TINYLARGE_CHECK(info.format == compress::huffman_format::single, errc::corrupt,
                  "huffman_s8: the index stream must be single-stream (format 1)");
  TINYLARGE_TRY(dec.init(info.lengths, info.alphabet));
  w.payload = info.payload;
  w.payload_bytes = info.payload_bytes;
  w.decoder = &dec;
  return status::success();
}

namespace detail {
/// Row `o`'s weights into `row` (w.cols bytes): its indices decoded, then each replaced by its
/// codebook value. The views were validated (every row decodes exactly); should a row still
/// fail to decode, the row is zero (never a read or write out of bounds).
TINYLARGE_ALWAYS_INLINE void huffman_decode_row_s8(const huffman_codebook_s8_matrix& w, std::size_t o,
                                                   std::int8_t* row) noexcept {
  auto* idx = reinterpret_cast<std::uint8_t*>(row);
  const status s = w.decoder->decode_range(w.payload, w.payload_bytes, w.row_bits[o], w.row_bits[o + 1], w.cols, idx);
  if (TINYLARGE_UNLIKELY(!s.ok())) {
    for (std::size_t c = 0; c < w.cols; ++c) row[c] = 0;
    return;
  }
  const std::int8_t* cb = w.codebook;
  for (std::size_t c = 0; c < w.cols; ++c) row[c] = cb[idx[c]];
}

/// `p` for output channel `o` alone (a one-row `dense_s8` call): bias, multiplier and shift
/// of channel o at index 0.
TINYLARGE_ALWAYS_INLINE dense_s8_params channel_params_s8(const dense_s8_params& p, std::size_t o) noexcept {
  dense_s8_params q = p;
  if (p.per_channel) {
    q.multipliers = p.multipliers + o;
    q.shifts = p.shifts + o;
  }
  q.bias = p.bias ? p.bias + o : nullptr;
  q.weight_row_sums = nullptr;
  return q;
}
}  // namespace detail

/// Scratch bytes of `huffman_conv2d_s8` for a receptive field of `patch` bytes: the decoded
/// filter row and two im2col rows.
constexpr std::size_t huffman_conv2d_s8_scratch_bytes(std::size_t patch) noexcept {
  return patch + conv2d_s8_scratch_bytes(patch);
}

/// y (w.rows) = requantize(bias + (x − z_x)·Wᵀ) for one input row, W Huffman-coded
/// weight-shared; `p` as for `dense_s8`. `scratch`: w.cols bytes.
template <class Backend>
inline void huffman_dense_s8(Backend, const huffman_codebook_s8_matrix& w, const std::int8_t* x,
                             const dense_s8_params& p, std::int8_t* y, std::int8_t* scratch) noexcept {
  for (std::size_t o = 0; o < w.rows; ++o) {
    detail::huffman_decode_row_s8(w, o, scratch);
    dense_s8(Backend{}, 1, 1, w.cols, x, scratch, detail::channel_params_s8(p, o), y + o);
  }
}

/// int8 conv2d (NHWC, weights [out_c][K][K][C] as `conv2d_s8`) on Huffman-coded
/// weight-shared weights (w.rows = s.out_c, w.cols = s.patch()), output channel outermost.
/// `scratch`: `huffman_conv2d_s8_scratch_bytes(s.patch())` bytes.
template <class Backend>
inline void huffman_conv2d_s8(Backend, const conv_s8_shape& s, const huffman_codebook_s8_matrix& w,
                              const std::int8_t* x, const dense_s8_params& p, std::int8_t* y,
                              std::int8_t* scratch) noexcept {
  const std::size_t patch = s.patch(), pixels = s.ho * s.wo, oc = s.out_c;
  const auto pad_code = static_cast<std::int8_t>(p.input_zero_point);
  std::int8_t* const row = scratch;
  std::int8_t* const cols = scratch + patch;
  for (std::size_t o = 0; o < oc; ++o) {
    detail::huffman_decode_row_s8(w, o, row);
    const dense_s8_params q = detail::channel_params_s8(p, o);
    std::size_t pix = 0;
    std::int8_t two[2];
    for (; pix + 2 <= pixels; pix += 2) {
      detail::gather_patch_s8(s, pix, x, pad_code, cols);
      detail::gather_patch_s8(s, pix + 1, x, pad_code, cols + patch);
      dense_s8(Backend{}, 2, 1, patch, cols, row, q, two);
      y[pix * oc + o] = two[0];
      y[(pix + 1) * oc + o] = two[1];
    }
    if (pix < pixels) {
      detail::gather_patch_s8(s, pix, x, pad_code, cols);
      dense_s8(Backend{}, 1, 1, patch, cols, row, q, y + pix * oc + o);
    }
  }
}

/// int8 depthwise conv2d with depth multiplier `mult` (weights [o][K][K] as
/// `depthwise_conv2d_s8`) on Huffman-coded weight-shared weights (w.rows = s.out_c,
/// w.cols = K·K). `scratch`: K·K bytes.
inline void huffman_depthwise_conv2d_s8(const conv_s8_shape& s, std::size_t mult, const huffman_codebook_s8_matrix& w,
                                        const std::int8_t* x, const dense_s8_params& p, std::int8_t* y,
                                        std::int8_t* scratch) noexcept {
  for (std::size_t o = 0; o < s.out_c; ++o) {
    detail::huffman_decode_row_s8(w, o, scratch);
    detail::depthwise_channel_s8(s, mult, o, x, p, y, [&](std::size_t tap) { return scratch[tap]; });
  }
}

}  // namespace tinylarge::kernels
