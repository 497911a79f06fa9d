/// @file compress/model_file.hpp
/// @brief The compressed model file: a versioned, little-endian, CRC-checked list of layer
///        records whose arrays are 8-byte aligned, so that a microcontroller can run the
///        compressed kernels (compress/kernels.hpp) on views that point straight into flash.
///
/// The byte layout is documented in docs/model-file-format.md; the constants below are the
/// single source of truth for it. In short:
///
///     file    = header (32 bytes) · section × layer_count · end marker (8 bytes)
///     header  = "TLMF" · u16 major · u16 minor · u32 flags · u32 layer_count ·
///               u64 total_size · u32 header_size · u32 CRC-32
///     section = "TLLY" · u32 length · u32 CRC-32 · kind · activation · format · array count ·
///               u32 rows · u32 cols · u32 rank/k · u8 bits · u8 gap_bits · u16 header size ·
///               conv2d geometry (8 × u16) · array descriptors (16 bytes each) · arrays
///     end     = "TEND" · u32 layer_count
///
/// **Reader** (`model_file_reader`, this header's freestanding part): parses a byte span with
/// no heap and no exceptions and validates *everything* before it hands out a view — sizes
/// with overflow-checked arithmetic, every offset inside its section, alignment, CRCs, enum
/// values, shapes (CSR row offsets monotone and in range, every gap stream decodable within
/// the row width, codebook indices below k, Huffman code lengths valid), finiteness of the
/// fp32/fp16 parameters and configurable limits (`model_file_limits`), so that a declared
/// length beyond a limit fails before anything is allocated or decoded. Layers whose index
/// streams are stored bit-packed or Huffman-coded are decoded into a caller-provided buffer
/// ("decode at boot", `model_file_reader::decode_layer`); all others are views into the span.
///
/// **Writer** (`model_file_builder`, host profile): builds the bytes from raw arrays or from
/// the owning compressed forms of compress/sparse.hpp and writes them atomically.
///
/// **Host loader** (`model_file`, `load_model_file`): reads a path, validates, decodes the
/// coded layers, and throws `tl::format_error` with a message naming the file, the layer and
/// (for a newer format) both versions.
///
/// Version policy: a reader accepts every file with its own major version; a newer major
/// version is rejected with `errc::unsupported_version`. Minor versions only add optional
/// fields (a longer file or section header, flags, arrays with new roles), which readers of
/// an older minor version skip; the same unknown things in a file whose minor version is not
/// newer than the reader's are corrupt.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>

#include "../core/config.hpp"
#include "../core/crc32.hpp"
#include "../core/error.hpp"
#include "../kernels/codebook_s8.hpp"
#include "../kernels/huffman_s8.hpp"
#include "../kernels/dense.hpp"
#include "../kernels/elementwise.hpp"
#include "../precision/fp16.hpp"
#include "../precision/int8.hpp"
#include "bitpack.hpp"
#include "huffman.hpp"
#include "kernels.hpp"

#if !TINYLARGE_FREESTANDING
#include <cmath>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "../io/file.hpp"
#include "../precision/requantize.hpp"
#include "low_rank.hpp"
#include "sparse.hpp"
#endif

namespace tinylarge::compress {

static_assert(std::endian::native == std::endian::little,
              "compress/model_file.hpp: the model file is little-endian and its views point into the bytes");
static_assert(sizeof(float) == 4 && sizeof(int) == 4, "compress/model_file.hpp: needs 32-bit float and int");

// ---------------------------------------------------------------------------
// Format constants and enumerations
// ---------------------------------------------------------------------------

/// Layout constants of the model file (docs/model-file-format.md).
namespace model_file_layout {
inline constexpr std::uint16_t version_major = 1;  ///< this reader's and writer's major version
inline constexpr std::uint16_t version_minor = 4;  ///< this reader's minor version (1.1: `int8_csr`, 1.2: `int8_codebook`, 1.3: `int8_huffman_codebook`, 1.4: `add`)
/// The first minor version with weight format `int8_csr`; the writer stamps a file with
/// the lowest minor version its records need (1.0 without `int8_csr` / `int8_codebook` records).
inline constexpr std::uint16_t int8_csr_minor = 1;
/// The first minor version with weight format `int8_codebook`.
inline constexpr std::uint16_t int8_codebook_minor = 2;
/// The first minor version with weight format `int8_huffman_codebook` (and array role `row_bits`).
inline constexpr std::uint16_t int8_huffman_codebook_minor = 3;
/// The first minor version with layer kind `add` (the int8 add that closes a residual block).
inline constexpr std::uint16_t add_minor = 4;
inline constexpr std::size_t header_size = 32;          ///< v1.0 file header
inline constexpr std::size_t section_header_size = 48;  ///< v1.0 section header
inline constexpr std::size_t array_entry_size = 16;     ///< one array descriptor
inline constexpr std::size_t end_marker_size = 8;
inline constexpr std::size_t alignment = 8;  ///< of sections, arrays, and the buffer itself
inline constexpr std::uint8_t file_magic[4] = {'T', 'L', 'M', 'F'};
inline constexpr std::uint8_t section_magic[4] = {'T', 'L', 'L', 'Y'};
inline constexpr std::uint8_t end_magic[4] = {'T', 'E', 'N', 'D'};
inline constexpr std::size_t max_arrays = 16;  ///< array descriptors per section
}  // namespace model_file_layout

/// What a layer record computes.
enum class layer_kind : std::uint8_t {
  dense = 1,   ///< y = x·Wᵀ + b, W rows×cols (out×in)
  conv2d = 2,  ///< W out_channels × (in_channels/groups·kernel_h·kernel_w), geometry in `conv2d_geometry`
  /// y = x₁ + x₂ elementwise in int8 (`kernels::add_s8`), rows = the element count, cols = 1, no
  /// weights (weight format `none`): x₁ the input of a residual block, x₂ its last inner layer's
  /// output (1.4)
  add = 3,
};

/// Activation applied after the layer (stored for the model; the kernels do not apply it,
/// except that int8 layers fold relu/relu6 into their output clamp).
enum class activation_kind : std::uint8_t { none = 0, relu = 1, relu6 = 2, tanh = 3, sigmoid = 4, softmax = 5 };

/// How a layer's weights are represented.
enum class weight_format : std::uint8_t {
  none = 0,          ///< no weights: the format of an `add` record (1.4)
  dense_f32 = 1,     ///< rows×cols fp32
  dense_f16 = 2,     ///< rows×cols IEEE binary16
  int8 = 3,          ///< rows×cols int8, per-channel (or per-tensor) scales, int32 bias (TFLite int8)
  csr_f32 = 4,       ///< relative-index CSR, fp32 values
  csr_codebook = 5,  ///< relative-index CSR, codebook-index values
  codebook = 6,      ///< every weight a codebook index, bit-packed
  factored = 7,      ///< low rank: left rows×rank · right rank×cols
  int8_csr = 8,      ///< pruned int8: relative-index CSR over the int8 weights, int32 bias, multipliers as int8 (1.1)
  int8_codebook = 9,  ///< weight-shared int8: k int8 codebook values, bit-packed indices, the rest as int8 (1.2)
  /// weight-shared int8 as `int8_codebook`, the indices one Huffman stream with a bit offset per
  /// row (output channel), decoded a row at a time by the kernels (1.3)
  int8_huffman_codebook = 10,
};

/// Role of an array inside a section.
enum class array_role : std::uint8_t {
  weights = 1,        ///< dense_f32 (f32), dense_f16 (f16), int8 (i8)
  bias = 2,           ///< f32 (rows), or i32 (rows) for int8
  weight_scales = 3,  ///< int8: f32, rows (per channel) or 1 (per tensor)
  act_scales = 4,     ///< int8: f32 [input_scale, output_scale] (add: [input1, input2, output])
  zero_points = 5,    ///< int8: i32 [input_zero_point, output_zero_point] (add: [input1, input2, output])
  multipliers = 6,    ///< int8: i32 Q31 requantization multipliers, as many as weight_scales (add: 3)
  shifts = 7,         ///< int8: i32 requantization exponents, as many as weight_scales (add: 3)
  row_ptr = 8,        ///< CSR: u32, rows + 1
  gaps = 9,           ///< CSR: u8 symbols, one per entry (int8_csr: plain bytes)
  values = 10,        ///< CSR: f32 (csr_f32), u8 codebook indices (csr_codebook) or i8 (int8_csr), one per entry
  centroids = 11,     ///< csr_codebook, codebook: f32, k (int8_codebook: i8, k)
  indices = 12,       ///< codebook, int8_codebook: u8 symbols, rows·cols
  left = 13,          ///< factored: f32 rows×rank
  right = 14,         ///< factored: f32 rank×cols
  row_bits = 15,      ///< int8_huffman_codebook: u32, rows + 1 bit offsets of the rows in the Huffman payload (1.3)
};

/// Element type of an array.
enum class array_dtype : std::uint8_t { f32 = 1, f16 = 2, i8 = 3, u8 = 4, i32 = 5, u32 = 6 };

/// How a u8 symbol array (CSR gaps, CSR codebook indices, codebook indices) is stored.
enum class symbol_encoding : std::uint8_t {
  bytes = 0,    ///< one byte per symbol: usable in place
  packed = 1,   ///< `width` bits per symbol, compress/bitpack.hpp layout (codebook: usable in place)
  huffman = 2,  ///< a compress/huffman.hpp stream: decoded at load time
};

/// Geometry of a conv2d record (all zero for dense).
struct conv2d_geometry {
  std::uint16_t in_channels = 0, kernel_h = 0, kernel_w = 0, stride_h = 0, stride_w = 0, pad_h = 0, pad_w = 0,
                groups = 0;
};

/// Name of a weight format, for messages and reports.
constexpr const char* to_string(weight_format f) noexcept {
  switch (f) {
    case weight_format::none: return "none";
    case weight_format::dense_f32: return "dense fp32";
    case weight_format::dense_f16: return "dense fp16";
    case weight_format::int8: return "int8";
    case weight_format::csr_f32: return "CSR fp32";
    case weight_format::csr_codebook: return "CSR codebook";
    case weight_format::codebook: return "codebook";
    case weight_format::factored: return "factored";
    case weight_format::int8_csr: return "int8 CSR";
    case weight_format::int8_codebook: return "int8 codebook";
    case weight_format::int8_huffman_codebook: return "int8 Huffman codebook";
  }
  return "unknown";
}

// ---------------------------------------------------------------------------
// Views handed out by the reader
// ---------------------------------------------------------------------------

/// The int8 (TFLite int8 spec) part of a layer: all pointers into the file.
struct int8_layer_view {
  const std::int8_t* weights = nullptr;       ///< rows×cols, values in [−127, 127] (null for int8_csr, int8_codebook)
  const float* weight_scales = nullptr;       ///< `scale_count` entries
  const std::int32_t* multipliers = nullptr;  ///< `scale_count` entries, 0 or in [2^30, 2^31)
  const int* shifts = nullptr;                ///< `scale_count` entries, in [−31, 30]
  std::size_t scale_count = 0;                ///< rows (per channel) or 1 (per tensor)
  float input_scale = 1.0f, output_scale = 1.0f;
  std::int32_t input_zero_point = 0, output_zero_point = 0;
  std::int8_t act_min = -128, act_max = 127;  ///< output clamp, from the activation
};

/// An `add` record (1.4): y = x₁ + x₂ on `size` int8 elements, x₁ the input of a residual
/// block (the skip tensor), x₂ the output of its last inner layer. Pointers into the file,
/// three entries each: [x₁, x₂, y].
struct int8_add_view {
  std::size_t size = 0;
  const float* scales = nullptr;              ///< positive, finite
  const std::int32_t* zero_points = nullptr;  ///< in [−128, 127]
  const std::int32_t* multipliers = nullptr;  ///< 0 or in [2^30, 2^31)
  const int* shifts = nullptr;                ///< inputs in [−31, 0], output in [−31, 30]
  std::int8_t act_min = -128, act_max = 127;  ///< output clamp, from the activation

  /// Scale and zero point of tensor k (0: x₁, 1: x₂, 2: y).
  quant_params tensor(std::size_t k) const noexcept { return {scales[k], zero_points[k]}; }
  /// The constants of `kernels::add_s8`.
  kernels::add_s8_params params() const noexcept {
    kernels::add_s8_params p;
    p.input1_offset = -zero_points[0];
    p.input2_offset = -zero_points[1];
    p.output_offset = zero_points[2];
    p.input1_multiplier = multipliers[0];
    p.input2_multiplier = multipliers[1];
    p.output_multiplier = multipliers[2];
    p.input1_shift = shifts[0];
    p.input2_shift = shifts[1];
    p.output_shift = shifts[2];
    p.act_min = act_min;
    p.act_max = act_max;
    return p;
  }
};

/// The weights of an `int8_huffman_codebook` record: k int8 codebook values and a Huffman
/// stream (compress/huffman.hpp, format 1, alphabet ≤ k) of the rows·cols indices, row o's
/// codes at bits [row_bits[o], row_bits[o + 1]) of its payload (kernels/huffman_s8.hpp runs it).
struct int8_huffman_codebook_view {
  std::size_t rows = 0, cols = 0;
  std::size_t k = 0;                      ///< codebook values
  const std::uint8_t* stream = nullptr;   ///< the whole Huffman stream (header and payload)
  std::size_t stream_bytes = 0;
  const std::uint32_t* row_bits = nullptr;  ///< rows + 1
  const std::int8_t* codebook = nullptr;    ///< k values
};

/// One layer record, validated. Only the member of `format` is set (and `bias_*`).
struct layer_view {
  layer_kind kind = layer_kind::dense;
  activation_kind activation = activation_kind::none;
  weight_format format = weight_format::dense_f32;
  std::size_t rows = 0;  ///< outputs
  std::size_t cols = 0;  ///< inputs (conv2d: in_channels/groups·kernel_h·kernel_w)
  conv2d_geometry conv{};
  const float* bias = nullptr;            ///< fp32 formats; may be null
  const std::int32_t* bias_s32 = nullptr;  ///< int8; may be null
  const float* dense = nullptr;           ///< dense_f32
  const half* dense_half = nullptr;       ///< dense_f16
  int8_layer_view int8{};                 ///< int8, int8_csr, int8_codebook, int8_huffman_codebook (quantization)
  relative_csr_view<csr_s8_values> csr_s8{};  ///< int8_csr: the pruned int8 weights
  kernels::codebook_s8_matrix codebook_s8{};  ///< int8_codebook: the weight-shared int8 weights
  int8_huffman_codebook_view huffman_s8{};    ///< int8_huffman_codebook: the Huffman-coded weight-shared weights
  int8_add_view add{};                        ///< kind `add`: the int8 add of a residual block
  relative_csr_view<csr_f32_values> csr{};                ///< csr_f32
  relative_csr_view<csr_codebook_values> csr_codebook{};  ///< csr_codebook
  codebook_matrix_view codebook{};        ///< codebook
  factored_view factored{};               ///< factored
  std::size_t decode_bytes = 0;  ///< > 0: the views need `decode_layer` with this many bytes of buffer

  /// Whether the weights are usable without `decode_layer`.
  constexpr bool in_place() const noexcept { return decode_bytes == 0; }

  /// The requantization parameters of an int8 layer for `kernels::dense_s8`.
  kernels::dense_s8_params s8_params() const noexcept {
    kernels::dense_s8_params p;
    p.input_zero_point = int8.input_zero_point;
    p.output_zero_point = int8.output_zero_point;
    p.multipliers = int8.multipliers;
    p.shifts = int8.shifts;
    p.per_channel = int8.scale_count > 1;
    p.bias = bias_s32;
    p.act_min = int8.act_min;
    p.act_max = int8.act_max;
    return p;
  }
};

/// Header fields of a parsed file.
struct model_file_info {
  std::uint16_t major = 0, minor = 0;  ///< the file's format version
  std::uint32_t flags = 0;
  std::size_t layer_count = 0;
  std::size_t total_size = 0;
  std::size_t header_size = 0;
  /// After a failed parse: the layer whose section failed, or `no_layer` (header, end marker).
  std::size_t failed_layer = no_layer;
  static constexpr std::size_t no_layer = static_cast<std::size_t>(-1);
};

/// Limits checked before anything is trusted, decoded or allocated.
struct model_file_limits {
  std::size_t max_file_bytes = std::size_t{64} << 20;  ///< declared total size
  std::size_t max_layers = 4096;
  std::size_t max_dim = std::size_t{1} << 24;       ///< rows, cols, rank
  std::size_t max_elements = std::size_t{1} << 28;  ///< rows·cols
};

/// Options of the reader.
struct model_file_options {
  model_file_limits limits{};
  /// Check the header and section CRC-32s. Turn off only to test or fuzz the structural
  /// validation behind them; everything else is still checked.
  bool verify_crc = true;
  /// Reject NaN/Inf in fp32/fp16 weights, biases, centroids and scales.
  bool require_finite = true;
};

// ---------------------------------------------------------------------------
// Reader
// ---------------------------------------------------------------------------

namespace detail {

TINYLARGE_ALWAYS_INLINE std::uint16_t mf_le16(const std::uint8_t* p) noexcept {
  return static_cast<std::uint16_t>(p[0] | (p[1] << 8));
}
TINYLARGE_ALWAYS_INLINE std::uint32_t mf_le32(const std::uint8_t* p) noexcept {
  return static_cast<std::uint32_t>(p[0]) | (static_cast<std::uint32_t>(p[1]) << 8) |
         (static_cast<std::uint32_t>(p[2]) << 16) | (static_cast<std::uint32_t>(p[3]) << 24);
}
TINYLARGE_ALWAYS_INLINE std::uint64_t mf_le64(const std::uint8_t* p) noexcept {
  return static_cast<std::uint64_t>(mf_le32(p)) | (static_cast<std::uint64_t>(mf_le32(p + 4)) << 32);
}
/// a·b without overflow, or false.
TINYLARGE_ALWAYS_INLINE bool mf_mul(std::size_t a, std::size_t b, std::size_t& r) noexcept {
  return !__builtin_mul_overflow(a, b, &r);
}
TINYLARGE_ALWAYS_INLINE bool mf_add(std::size_t a, std::size_t b, std::size_t& r) noexcept {
  return !__builtin_add_overflow(a, b, &r);
}
constexpr std::size_t mf_align_up(std::size_t n) noexcept {
  return (n + model_file_layout::alignment - 1) & ~(model_file_layout::alignment - 1);
}

constexpr std::size_t dtype_size(array_dtype t) noexcept {
  switch (t) {
    case array_dtype::f32:
    case array_dtype::i32:
    case array_dtype::u32: return 4;
    case array_dtype::f16: return 2;
    case array_dtype::i8:
    case array_dtype::u8: return 1;
  }
  return 0;
}

inline bool f32_finite(const std::uint8_t* p, std::size_t n) noexcept {
  for (std::size_t i = 0; i < n; ++i)
    if (((mf_le32(p + 4 * i) >> 23) & 0xFFu) == 0xFFu) return false;
  return true;
}
inline bool f16_finite(const std::uint8_t* p, std::size_t n) noexcept {
  for (std::size_t i = 0; i < n; ++i)
    if (((mf_le16(p + 2 * i) >> 10) & 0x1Fu) == 0x1Fu) return false;
  return true;
}
inline float f32_at(const std::uint8_t* p, std::size_t i) noexcept {
  const std::uint32_t b = mf_le32(p + 4 * i);
  float f;
  std::memcpy(&f, &b, 4);
  return f;
}

/// One parsed array descriptor.
struct mf_array {
  bool present = false;
  array_dtype dtype = array_dtype::u8;
  symbol_encoding encoding = symbol_encoding::bytes;
  unsigned width = 0;  ///< packed: bits per symbol
  const std::uint8_t* data = nullptr;
  std::size_t bytes = 0;
  std::size_t count = 0;  ///< elements (symbols, after decoding)
  std::size_t huffman_payload = 0;  ///< Huffman: offset of the codes in `data` (the header's length)
  std::size_t huffman_payload_bytes = 0;  ///< Huffman: bytes of the codes
};

inline constexpr std::size_t mf_role_count = 16;  // roles 1..15

/// A parsed section: header fields and arrays by role.
struct mf_section {
  layer_view view{};
  std::size_t rank_or_k = 0;
  unsigned bits = 0;
  unsigned gap_bits = 0;
  mf_array arrays[mf_role_count]{};
  std::size_t length = 0;
};

}  // namespace detail

/// A validated model file in a byte span (e.g. in flash). No heap, no exceptions.
///
/// ```cpp
/// tl::compress::model_file_reader r;
/// if (auto s = r.open(bytes, size); !s) return s;     // validates the whole file
/// tl::compress::layer_view v;
/// if (auto s = r.layer(0, v); !s) return s;           // cheap: re-reads one section
/// if (!v.in_place()) { /* r.decode_layer(0, buffer, sizeof buffer, v) */ }
/// ```
/// The span must outlive the reader and every view, and be 8-byte aligned.
class model_file_reader {
 public:
  /// Parses and validates the whole file: header, every section (CRC, structure, contents of
  /// every in-place array, header of every coded stream), the end marker. Coded streams are
  /// fully checked by `decode_layer`.
  [[nodiscard]] status open(const std::uint8_t* data, std::size_t size, const model_file_options& opt = {}) noexcept {
    data_ = nullptr;
    size_ = 0;
    info_ = {};
    opt_ = opt;
    TINYLARGE_TRY(parse_header(data, size));
    std::size_t off = info_.header_size;
    for (std::size_t i = 0; i < info_.layer_count; ++i) {
      info_.failed_layer = i;
      detail::mf_section s;
      TINYLARGE_TRY(parse_section(data, off, size, true, s));
      off += s.length;
    }
    info_.failed_layer = model_file_info::no_layer;
    TINYLARGE_CHECK(size - off >= model_file_layout::end_marker_size, errc::truncated,
                    "model file: the end marker is missing");
    TINYLARGE_CHECK(size - off == model_file_layout::end_marker_size, errc::corrupt,
                    "model file: bytes between the last section and the end marker, or after it");
    TINYLARGE_CHECK(std::memcmp(data + off, model_file_layout::end_magic, 4) == 0, errc::corrupt,
                    "model file: bad end marker (expected \"TEND\")");
    TINYLARGE_CHECK(detail::mf_le32(data + off + 4) == info_.layer_count, errc::corrupt,
                    "model file: the end marker's layer count differs from the header's");
    data_ = data;
    size_ = size;
    return status::success();
  }

  /// Header fields (also after a failed `open`, as far as they were read).
  const model_file_info& info() const noexcept { return info_; }
  std::size_t layer_count() const noexcept { return data_ ? info_.layer_count : 0; }
  bool is_open() const noexcept { return data_ != nullptr; }

  /// The view of layer `i` of an opened file. Layers with coded streams come back with
  /// `decode_bytes > 0` and null index pointers: call `decode_layer`.
  [[nodiscard]] status layer(std::size_t i, layer_view& out) const noexcept {
    detail::mf_section s;
    TINYLARGE_TRY(find(i, s));
    out = s.view;
    return status::success();
  }

  /// Decodes the bit-packed or Huffman-coded symbol arrays of layer `i` into `buffer`
  /// (`capacity` bytes, at least `layer(i).decode_bytes`), validates the decoded symbols
  /// (gaps within the row width, indices below k) and returns views that point into the
  /// file and into `buffer`. For an in-place layer this is `layer`.
  /// @tparam TableBits Huffman lookup-table bits (stack: 4·2^TableBits bytes)
  template <unsigned TableBits = 8>
  [[nodiscard]] status decode_layer(std::size_t i, std::uint8_t* buffer, std::size_t capacity,
                                    layer_view& out) const noexcept {
    detail::mf_section s;
    TINYLARGE_TRY(find(i, s));
    layer_view v = s.view;
    if (v.decode_bytes == 0) {
      out = v;
      return status::success();
    }
    TINYLARGE_CHECK(buffer != nullptr && capacity >= v.decode_bytes, errc::capacity_exceeded,
                    "model file: the decode buffer is smaller than the layer's decode_bytes");
    std::uint8_t* p = buffer;
    const std::uint8_t* gaps = nullptr;
    const std::uint8_t* idx = nullptr;
    if (v.format == weight_format::csr_f32 || v.format == weight_format::csr_codebook) {
      const detail::mf_array& g = s.arrays[static_cast<std::size_t>(array_role::gaps)];
      TINYLARGE_TRY(decode_symbols<TableBits>(g, p, gaps));
      p += g.encoding == symbol_encoding::bytes ? 0 : g.count;
      if (v.format == weight_format::csr_codebook) {
        const detail::mf_array& x = s.arrays[static_cast<std::size_t>(array_role::values)];
        TINYLARGE_TRY(decode_symbols<TableBits>(x, p, idx));
      }
      if (v.format == weight_format::csr_f32) {
        v.csr.gaps = gaps;
        TINYLARGE_TRY(check_csr(v.csr));
      } else {
        v.csr_codebook.gaps = gaps;
        v.csr_codebook.values.indices = idx;
        TINYLARGE_TRY(check_csr(v.csr_codebook));
      }
    } else {  // codebook, Huffman-coded: one byte per index
      const detail::mf_array& x = s.arrays[static_cast<std::size_t>(array_role::indices)];
      TINYLARGE_TRY(decode_symbols<TableBits>(x, p, idx));
      for (std::size_t j = 0; j < x.count; ++j)
        TINYLARGE_CHECK(idx[j] < v.codebook.codebook_size, errc::corrupt,
                        "model file: a codebook index is not below the codebook size k");
      v.codebook.bits = 8;
      v.codebook.packed = idx;
      v.codebook.packed_bytes = x.count;
    }
    v.decode_bytes = 0;
    out = v;
    return status::success();
  }

  /// Decodes every row of the `int8_huffman_codebook` record `i` once and checks that each
  /// holds exactly `cols` codes ending at the next row's bit offset (every decoded index is
  /// below the alphabet, so below k); `open` has checked everything else of the record. A
  /// separate call, so that only firmware that runs such records links the decoder: called
  /// by `bind_model_file` for `nn::huffman_shared_flash_storage`, by `model_file::from_bytes`
  /// and by the builder; fails with `invalid_argument` for a record of another format. Stack:
  /// the decoder (`kernels::huffman_s8_decoder`, 1.1 KiB) and 64 bytes; no row buffer (a
  /// row is decoded in pieces of 64 symbols).
  [[nodiscard]] status verify_huffman_rows(std::size_t i) const noexcept {
    layer_view v;
    TINYLARGE_TRY(layer(i, v));
    TINYLARGE_CHECK(v.format == weight_format::int8_huffman_codebook, errc::invalid_argument,
                    "model file: verify_huffman_rows: the record is not int8_huffman_codebook");
    const int8_huffman_codebook_view& h = v.huffman_s8;
    kernels::huffman_s8_decoder dec;
    kernels::huffman_codebook_s8_matrix m;
    const status ps = kernels::huffman_s8_prepare(h.stream, h.stream_bytes, dec, m);
    TINYLARGE_CHECK(ps.ok(), errc::corrupt, "model file: invalid Huffman code lengths");
    std::uint8_t piece[64];
    for (std::size_t o = 0; o < h.rows; ++o) {
      std::uint64_t bit = h.row_bits[o];
      for (std::size_t left = h.cols; left > 0;) {
        const std::size_t n = left < sizeof piece ? left : sizeof piece;
        TINYLARGE_TRY(dec.decode_at(m.payload, m.payload_bytes, bit, n, piece, &bit));
        left -= n;
      }
      TINYLARGE_CHECK(bit == h.row_bits[o + 1], errc::corrupt,
                      "model file: a row of Huffman-coded indices does not end at the next row's bit offset");
    }
    return status::success();
  }

 private:
  template <unsigned TableBits>
  static status decode_symbols(const detail::mf_array& a, std::uint8_t* dst, const std::uint8_t*& result) noexcept {
    switch (a.encoding) {
      case symbol_encoding::bytes: result = a.data; return status::success();
      case symbol_encoding::packed:
        TINYLARGE_TRY(unpack_bits(a.data, a.bytes, a.count, a.width, dst));
        result = dst;
        return status::success();
      case symbol_encoding::huffman: {
        // Format 1 only (checked by `open`): the single-stream decoder, nothing of format 2
        // linked into the firmware.
        huffman_stream_info info;
        TINYLARGE_TRY(huffman_parse_header(a.data, a.bytes, info));
        TINYLARGE_CHECK(info.format == huffman_format::single && info.count == a.count, errc::corrupt,
                        "model file: a Huffman stream holds the wrong number of symbols");
        if (info.count > 0) {
          huffman_decoder<TableBits> dec;
          TINYLARGE_TRY(dec.init(info.lengths, info.alphabet));
          TINYLARGE_TRY(dec.decode(info.payload, info.payload_bytes, info.count, dst));
        } else {
          TINYLARGE_CHECK(info.payload_bytes == 0, errc::corrupt, "huffman: bytes after the payload");
        }
        result = dst;
        return status::success();
      }
    }
    return {errc::corrupt, "model file: unknown symbol encoding"};
  }

  /// Full CSR check: row offsets were checked at parse time; gaps within the row width and
  /// (codebook) indices below k, via the kernels' own validate.
  template <class Values>
  static status check_csr(const relative_csr_view<Values>& w) noexcept {
    status s = validate(w);
    if (!s) return {s.code == errc::invalid_argument ? errc::corrupt : s.code, s.message};
    return status::success();
  }

  [[nodiscard]] status find(std::size_t i, detail::mf_section& s) const noexcept {
    TINYLARGE_CHECK(data_ != nullptr, errc::invalid_argument, "model file: the reader has no open file");
    TINYLARGE_CHECK(i < info_.layer_count, errc::invalid_argument, "model file: layer index out of range");
    std::size_t off = info_.header_size;
    for (std::size_t k = 0;; ++k) {
      // Sections were validated by `open`; the structural parse repeats cheaply (no CRC,
      // no content scan), so a view is never built from unchecked fields.
      TINYLARGE_TRY(parse_section(data_, off, size_, false, s));
      if (k == i) return status::success();
      off += s.length;
    }
  }

  [[nodiscard]] status parse_header(const std::uint8_t* d, std::size_t size) noexcept {
    namespace L = model_file_layout;
    TINYLARGE_CHECK(d != nullptr || size == 0, errc::invalid_argument, "model file: null buffer");
    TINYLARGE_CHECK(size >= 8, errc::truncated, "model file: shorter than the magic and version");
    TINYLARGE_CHECK(std::memcmp(d, L::file_magic, 4) == 0, errc::corrupt,
                    "model file: bad magic (expected \"TLMF\"): not a tinylarge model file");
    info_.major = detail::mf_le16(d + 4);
    info_.minor = detail::mf_le16(d + 6);
    TINYLARGE_CHECK(info_.major <= L::version_major, errc::unsupported_version,
                    "model file: the format's major version is newer than this reader's (1); "
                    "info().major and info().minor give the file's");
    TINYLARGE_CHECK(info_.major == L::version_major, errc::unsupported_version,
                    "model file: format major version 0 is not supported by this reader (1)");
    TINYLARGE_CHECK(reinterpret_cast<std::uintptr_t>(d) % L::alignment == 0, errc::invalid_argument,
                    "model file: the buffer must be 8-byte aligned (views point into it)");
    TINYLARGE_CHECK(size >= L::header_size, errc::truncated, "model file: shorter than its header");
    info_.flags = detail::mf_le32(d + 8);
    const std::uint32_t layers = detail::mf_le32(d + 12);
    const std::uint64_t total = detail::mf_le64(d + 16);
    const std::uint32_t hsize = detail::mf_le32(d + 24);
    TINYLARGE_CHECK(total <= opt_.limits.max_file_bytes, errc::too_large,
                    "model file: the declared total size exceeds model_file_limits::max_file_bytes");
    TINYLARGE_CHECK(layers <= opt_.limits.max_layers, errc::too_large,
                    "model file: the layer count exceeds model_file_limits::max_layers");
    TINYLARGE_CHECK(total <= size, errc::truncated, "model file: shorter than its declared total size");
    TINYLARGE_CHECK(total == size, errc::corrupt, "model file: bytes after the declared total size");
    TINYLARGE_CHECK(hsize >= L::header_size && hsize % L::alignment == 0 && hsize <= size, errc::corrupt,
                    "model file: bad header size (at least 32, a multiple of 8, inside the file)");
    TINYLARGE_CHECK(info_.minor > L::version_minor || hsize == L::header_size, errc::corrupt,
                    "model file: header extension in a file of a minor version this reader knows");
    if (opt_.verify_crc) {
      std::uint32_t c = crc32(d, 28);
      c = crc32(d + L::header_size, hsize - L::header_size, c);
      TINYLARGE_CHECK(c == detail::mf_le32(d + 28), errc::checksum_mismatch,
                      "model file: header CRC-32 mismatch (the header is corrupt)");
    }
    TINYLARGE_CHECK(info_.minor > L::version_minor || info_.flags == 0, errc::corrupt,
                    "model file: unknown header flags in a file of a minor version this reader knows");
    info_.layer_count = layers;
    info_.total_size = static_cast<std::size_t>(total);
    info_.header_size = hsize;
    return status::success();
  }

  /// Parses the section at `off`; `deep` adds the CRC (if enabled) and the content scans.
  [[nodiscard]] status parse_section(const std::uint8_t* d, std::size_t off, std::size_t size, bool deep,
                                     detail::mf_section& s) const noexcept {
    namespace L = model_file_layout;
    using detail::mf_le16;
    using detail::mf_le32;
    // Room for the end marker after every section.
    TINYLARGE_CHECK(size - off >= L::section_header_size + L::end_marker_size, errc::truncated,
                    "model file: a section header is truncated");
    const std::uint8_t* h = d + off;
    TINYLARGE_CHECK(std::memcmp(h, L::section_magic, 4) == 0, errc::corrupt,
                    "model file: bad section magic (expected \"TLLY\")");
    const std::size_t len = mf_le32(h + 4);
    TINYLARGE_CHECK(len <= size - off - L::end_marker_size, errc::truncated,
                    "model file: a section is longer than the rest of the file");
    TINYLARGE_CHECK(len >= L::section_header_size && len % L::alignment == 0, errc::corrupt,
                    "model file: bad section length (at least 48, a multiple of 8)");
    if (deep && opt_.verify_crc) {
      std::uint32_t c = crc32(h, 8);
      c = crc32(h + 12, len - 12, c);
      TINYLARGE_CHECK(c == mf_le32(h + 8), errc::checksum_mismatch,
                      "model file: section CRC-32 mismatch (the layer's bytes are corrupt)");
    }
    s = detail::mf_section{};
    s.length = len;
    layer_view& v = s.view;
    const unsigned kind = h[12], act = h[13], fmt = h[14], narrays = h[15];
    TINYLARGE_CHECK(kind >= 1 && kind <= 3, errc::corrupt, "model file: unknown layer kind");
    TINYLARGE_CHECK(kind != static_cast<unsigned>(layer_kind::add) || info_.minor >= L::add_minor, errc::corrupt,
                    "model file: layer kind add (3) in a file of format version below 1.4 (it needs 1.4)");
    TINYLARGE_CHECK(act <= 5, errc::corrupt, "model file: unknown activation");
    TINYLARGE_CHECK(fmt <= 10, errc::corrupt, "model file: unknown weight format");
    TINYLARGE_CHECK((kind == static_cast<unsigned>(layer_kind::add)) == (fmt == 0), errc::corrupt,
                    "model file: an add record has weight format none (0), every other record a weight format 1-10");
    TINYLARGE_CHECK(fmt != static_cast<unsigned>(weight_format::int8_csr) || info_.minor >= L::int8_csr_minor,
                    errc::corrupt, "model file: weight format int8_csr (8) in a file of format version 1.0 (it needs 1.1)");
    TINYLARGE_CHECK(fmt != static_cast<unsigned>(weight_format::int8_codebook) ||
                        info_.minor >= L::int8_codebook_minor,
                    errc::corrupt,
                    "model file: weight format int8_codebook (9) in a file of format version below 1.2 (it needs 1.2)");
    TINYLARGE_CHECK(fmt != static_cast<unsigned>(weight_format::int8_huffman_codebook) ||
                        info_.minor >= L::int8_huffman_codebook_minor,
                    errc::corrupt,
                    "model file: weight format int8_huffman_codebook (10) in a file of format version below 1.3 "
                    "(it needs 1.3)");
    v.kind = static_cast<layer_kind>(kind);
    v.activation = static_cast<activation_kind>(act);
    v.format = static_cast<weight_format>(fmt);
    const std::size_t rows = mf_le32(h + 16), cols = mf_le32(h + 20);
    s.rank_or_k = mf_le32(h + 24);
    s.bits = h[28];
    s.gap_bits = h[29];
    const std::size_t hsize = mf_le16(h + 30);
    const limits_t& lim = opt_.limits;
    TINYLARGE_CHECK(rows >= 1 && cols >= 1, errc::corrupt, "model file: a layer has zero rows or columns");
    TINYLARGE_CHECK(rows <= lim.max_dim && cols <= lim.max_dim, errc::too_large,
                    "model file: a layer dimension exceeds model_file_limits::max_dim");
    std::size_t elements = 0;
    TINYLARGE_CHECK(detail::mf_mul(rows, cols, elements) && elements <= lim.max_elements, errc::too_large,
                    "model file: rows·cols exceeds model_file_limits::max_elements");
    v.rows = rows;
    v.cols = cols;
    TINYLARGE_CHECK(hsize >= L::section_header_size && hsize % L::alignment == 0, errc::corrupt,
                    "model file: bad section header size (at least 48, a multiple of 8)");
    TINYLARGE_CHECK(file_minor_newer() || hsize == L::section_header_size, errc::corrupt,
                    "model file: section header extension in a file of a minor version this reader knows");
    TINYLARGE_CHECK(narrays <= L::max_arrays, errc::corrupt, "model file: more than 16 arrays in a section");
    const std::size_t table_end = hsize + narrays * L::array_entry_size;
    TINYLARGE_CHECK(table_end <= len, errc::corrupt, "model file: the array table runs past its section");
    // conv2d geometry
    conv2d_geometry& g = v.conv;
    std::uint16_t* gf[8] = {&g.in_channels, &g.kernel_h, &g.kernel_w, &g.stride_h,
                            &g.stride_w,    &g.pad_h,    &g.pad_w,    &g.groups};
    bool geometry_zero = true;
    for (std::size_t k = 0; k < 8; ++k) {
      *gf[k] = mf_le16(h + 32 + 2 * k);
      geometry_zero = geometry_zero && *gf[k] == 0;
    }
    if (v.kind != layer_kind::conv2d) {
      TINYLARGE_CHECK(geometry_zero, errc::corrupt, "model file: a dense or add layer has conv2d geometry");
    } else {
      TINYLARGE_CHECK(g.in_channels >= 1 && g.kernel_h >= 1 && g.kernel_w >= 1 && g.stride_h >= 1 &&
                          g.stride_w >= 1 && g.groups >= 1,
                      errc::corrupt, "model file: conv2d geometry has a zero channel, kernel, stride or group");
      TINYLARGE_CHECK(g.in_channels % g.groups == 0 && rows % g.groups == 0, errc::corrupt,
                      "model file: conv2d groups do not divide the channels");
      TINYLARGE_CHECK(std::uint64_t{g.in_channels} / g.groups * g.kernel_h * g.kernel_w == cols, errc::corrupt,
                      "model file: conv2d cols differ from in_channels/groups·kernel_h·kernel_w");
    }
    // Array table: descriptors sorted by offset, 8-aligned, non-overlapping, zero padding.
    std::size_t cursor = table_end;
    for (std::size_t a = 0; a < narrays; ++a) {
      const std::uint8_t* e = h + hsize + a * L::array_entry_size;
      const unsigned role = e[0], dtype = e[1], enc = e[2], width = e[3];
      const std::size_t aoff = mf_le32(e + 4), abytes = mf_le32(e + 8), acount = mf_le32(e + 12);
      TINYLARGE_CHECK(aoff % L::alignment == 0, errc::corrupt, "model file: an array is not 8-byte aligned");
      TINYLARGE_CHECK(aoff >= cursor, errc::corrupt,
                      "model file: arrays overlap, are out of order, or overlap the array table");
      TINYLARGE_CHECK(aoff <= len && abytes <= len - aoff, errc::corrupt, "model file: an array runs past its section");
      if (deep)
        for (std::size_t b = cursor; b < aoff; ++b)
          TINYLARGE_CHECK(h[b] == 0, errc::corrupt, "model file: non-zero padding between arrays");
      TINYLARGE_CHECK(aoff - cursor < L::alignment, errc::corrupt,
                      "model file: unused bytes before an array (arrays start at the next multiple of 8)");
      cursor = aoff + abytes;
      TINYLARGE_CHECK(dtype >= 1 && dtype <= 6, errc::corrupt, "model file: unknown array element type");
      TINYLARGE_CHECK(enc <= 2, errc::corrupt, "model file: unknown symbol encoding");
      if (role == 0 || role >= detail::mf_role_count) {
        TINYLARGE_CHECK(file_minor_newer(), errc::corrupt, "model file: unknown array role");
        continue;  // an optional array of a newer minor version
      }
      detail::mf_array& arr = s.arrays[role];
      TINYLARGE_CHECK(!arr.present, errc::corrupt, "model file: an array role appears twice");
      arr.present = true;
      arr.dtype = static_cast<array_dtype>(dtype);
      arr.encoding = static_cast<symbol_encoding>(enc);
      arr.width = width;
      arr.data = h + aoff;
      arr.bytes = abytes;
      arr.count = acount;
      if (arr.encoding == symbol_encoding::bytes) {
        std::size_t need = 0;
        TINYLARGE_CHECK(width == 0, errc::corrupt, "model file: a plain array declares a bit width");
        TINYLARGE_CHECK(detail::mf_mul(acount, detail::dtype_size(arr.dtype), need) && need == abytes,
                        errc::corrupt, "model file: an array's byte length differs from count·element size");
      } else {
        TINYLARGE_CHECK(arr.dtype == array_dtype::u8, errc::corrupt,
                        "model file: only u8 symbol arrays can be bit-packed or Huffman-coded");
        if (arr.encoding == symbol_encoding::packed) {
          std::size_t bits = 0;
          TINYLARGE_CHECK(width >= 1 && width <= 8, errc::corrupt, "model file: packed width must be in [1, 8]");
          TINYLARGE_CHECK(detail::mf_mul(acount, width, bits) && (bits + 7) / 8 == abytes, errc::corrupt,
                          "model file: a packed array's byte length differs from ceil(count·width/8)");
          const unsigned tail = static_cast<unsigned>(bits & 7u);
          if (tail != 0 && abytes != 0)
            TINYLARGE_CHECK((arr.data[abytes - 1] >> tail) == 0, errc::corrupt,
                            "model file: padding bits of a packed array are not zero");
        } else {
          TINYLARGE_CHECK(width == 0, errc::corrupt, "model file: a Huffman stream declares a bit width");
          huffman_stream_info hi;
          TINYLARGE_TRY(huffman_parse_header(arr.data, abytes, hi));
          TINYLARGE_CHECK(hi.format == huffman_format::single, errc::corrupt,
                          "model file: a Huffman array holds a four-stream (format 2) stream; "
                          "format version 1 stores single-stream (format 1) Huffman arrays");
          TINYLARGE_CHECK(hi.count == acount, errc::corrupt,
                          "model file: a Huffman stream's symbol count differs from its array count");
          TINYLARGE_CHECK(acount <= hi.payload_bytes * 8, errc::corrupt,
                          "model file: a Huffman stream declares more symbols than its payload holds");
          huffman_code code;
          code.alphabet = static_cast<std::uint16_t>(hi.alphabet);
          std::size_t used = 0;
          for (std::size_t k = 0; k < hi.alphabet; ++k) {
            code.length[k] = hi.lengths[k];
            used += hi.lengths[k] != 0;
          }
          TINYLARGE_CHECK(used > 0 || acount == 0, errc::corrupt, "model file: a Huffman stream has no codes");
          if (used > 0) {
            status cs = huffman_assign_codes(code);
            TINYLARGE_CHECK(cs.ok(), errc::corrupt, "model file: invalid Huffman code lengths");
          }
          arr.width = static_cast<unsigned>(hi.alphabet);  // alphabet, checked per role below
          arr.huffman_payload = hi.header_bytes;
          arr.huffman_payload_bytes = hi.payload_bytes;
        }
      }
    }
    TINYLARGE_CHECK(len - cursor < L::alignment, errc::corrupt, "model file: unused bytes at the end of a section");
    if (deep)
      for (std::size_t b = cursor; b < len; ++b)
        TINYLARGE_CHECK(h[b] == 0, errc::corrupt, "model file: non-zero padding at the end of a section");
    return bind(s, deep);
  }

  bool file_minor_newer() const noexcept { return info_.minor > model_file_layout::version_minor; }

  using limits_t = model_file_limits;

  /// Checks one array: present, type, encoding, count.
  static status expect(const detail::mf_array& a, array_dtype t, std::size_t count, bool symbols,
                       const char* missing, const char* wrong) noexcept {
    TINYLARGE_CHECK(a.present, errc::corrupt, missing);
    TINYLARGE_CHECK(a.dtype == t && a.count == count && (symbols || a.encoding == symbol_encoding::bytes),
                    errc::corrupt, wrong);
    return status::success();
  }

  status check_finite_f32(const detail::mf_array& a, bool deep) const noexcept {
    if (deep && opt_.require_finite && a.present)
      TINYLARGE_CHECK(detail::f32_finite(a.data, a.count), errc::non_finite,
                      "model file: NaN or Inf in an fp32 array");
    return status::success();
  }

  /// Checks the arrays of the layer's format and builds the views.
  [[nodiscard]] status bind(detail::mf_section& s, bool deep) const noexcept {
    using R = array_role;
    using T = array_dtype;
    layer_view& v = s.view;
    const auto arr = [&](R r) -> const detail::mf_array& { return s.arrays[static_cast<std::size_t>(r)]; };
    const std::size_t rows = v.rows, cols = v.cols, n = rows * cols;
    // Which roles the format uses; any other known role present is corrupt.
    unsigned allowed = 0;
    const auto bit = [](R r) { return 1u << static_cast<unsigned>(r); };
    switch (v.format) {
      case weight_format::none:
        allowed = bit(R::act_scales) | bit(R::zero_points) | bit(R::multipliers) | bit(R::shifts);
        break;
      case weight_format::dense_f32:
      case weight_format::dense_f16: allowed = bit(R::weights) | bit(R::bias); break;
      case weight_format::int8:
        allowed = bit(R::weights) | bit(R::bias) | bit(R::weight_scales) | bit(R::act_scales) |
                  bit(R::zero_points) | bit(R::multipliers) | bit(R::shifts);
        break;
      case weight_format::csr_f32: allowed = bit(R::row_ptr) | bit(R::gaps) | bit(R::values) | bit(R::bias); break;
      case weight_format::csr_codebook:
        allowed = bit(R::row_ptr) | bit(R::gaps) | bit(R::values) | bit(R::centroids) | bit(R::bias);
        break;
      case weight_format::codebook: allowed = bit(R::indices) | bit(R::centroids) | bit(R::bias); break;
      case weight_format::factored: allowed = bit(R::left) | bit(R::right) | bit(R::bias); break;
      case weight_format::int8_csr:
        allowed = bit(R::row_ptr) | bit(R::gaps) | bit(R::values) | bit(R::bias) | bit(R::weight_scales) |
                  bit(R::act_scales) | bit(R::zero_points) | bit(R::multipliers) | bit(R::shifts);
        break;
      case weight_format::int8_codebook:
        allowed = bit(R::indices) | bit(R::centroids) | bit(R::bias) | bit(R::weight_scales) | bit(R::act_scales) |
                  bit(R::zero_points) | bit(R::multipliers) | bit(R::shifts);
        break;
      case weight_format::int8_huffman_codebook:
        allowed = bit(R::indices) | bit(R::row_bits) | bit(R::centroids) | bit(R::bias) | bit(R::weight_scales) |
                  bit(R::act_scales) | bit(R::zero_points) | bit(R::multipliers) | bit(R::shifts);
        break;
    }
    for (unsigned r = 1; r < detail::mf_role_count; ++r)
      TINYLARGE_CHECK(!s.arrays[r].present || (allowed & (1u << r)) != 0, errc::corrupt,
                      "model file: an array that the layer's weight format does not use");
    const bool uses_rank_k = v.format == weight_format::csr_codebook || v.format == weight_format::codebook ||
                             v.format == weight_format::factored || v.format == weight_format::int8_codebook ||
                             v.format == weight_format::int8_huffman_codebook;
    const bool uses_bits = v.format == weight_format::csr_codebook || v.format == weight_format::codebook ||
                           v.format == weight_format::int8_codebook || v.format == weight_format::int8_huffman_codebook;
    const bool uses_gaps = v.format == weight_format::csr_f32 || v.format == weight_format::csr_codebook ||
                           v.format == weight_format::int8_csr;
    TINYLARGE_CHECK(uses_rank_k || s.rank_or_k == 0, errc::corrupt, "model file: rank/k set for a format without one");
    TINYLARGE_CHECK(uses_bits || s.bits == 0, errc::corrupt, "model file: index bits set for a format without them");
    TINYLARGE_CHECK(uses_gaps || s.gap_bits == 0, errc::corrupt, "model file: gap bits set for a format without gaps");

    // Bias: f32 for the fp32 formats, i32 for int8; optional.
    const detail::mf_array& b = arr(R::bias);
    if (b.present) {
      if (v.format == weight_format::int8 || v.format == weight_format::int8_csr ||
          v.format == weight_format::int8_codebook || v.format == weight_format::int8_huffman_codebook) {
        TINYLARGE_TRY(expect(b, T::i32, rows, false, "", "model file: an int8 bias must be i32, one per row"));
        v.bias_s32 = reinterpret_cast<const std::int32_t*>(b.data);
        if (deep)
          for (std::size_t o = 0; o < rows; ++o) {
            const std::int32_t x = v.bias_s32[o];
            TINYLARGE_CHECK(x > -(1 << 23) && x < (1 << 23), errc::corrupt,
                            "model file: an int8 bias is outside (-2^23, 2^23), the exact range of the kernel");
          }
      } else {
        TINYLARGE_TRY(expect(b, T::f32, rows, false, "", "model file: a bias must be f32, one per row"));
        TINYLARGE_TRY(check_finite_f32(b, deep));
        v.bias = reinterpret_cast<const float*>(b.data);
      }
    }

    switch (v.format) {
      case weight_format::none: TINYLARGE_TRY(bind_add(s)); break;
      case weight_format::dense_f32: {
        const auto& w = arr(R::weights);
        TINYLARGE_TRY(expect(w, T::f32, n, false, "model file: a dense fp32 layer has no weights",
                             "model file: dense fp32 weights must be f32, rows·cols"));
        TINYLARGE_TRY(check_finite_f32(w, deep));
        v.dense = reinterpret_cast<const float*>(w.data);
        break;
      }
      case weight_format::dense_f16: {
        const auto& w = arr(R::weights);
        TINYLARGE_TRY(expect(w, T::f16, n, false, "model file: a dense fp16 layer has no weights",
                             "model file: dense fp16 weights must be f16, rows·cols"));
        if (deep && opt_.require_finite)
          TINYLARGE_CHECK(detail::f16_finite(w.data, n), errc::non_finite, "model file: NaN or Inf in fp16 weights");
        v.dense_half = reinterpret_cast<const half*>(w.data);
        break;
      }
      case weight_format::int8:
      case weight_format::int8_csr:
      case weight_format::int8_codebook:
      case weight_format::int8_huffman_codebook: TINYLARGE_TRY(bind_int8(s, deep)); break;
      case weight_format::csr_f32:
      case weight_format::csr_codebook: TINYLARGE_TRY(bind_csr(s, deep)); break;
      case weight_format::codebook: {
        const std::size_t k = s.rank_or_k;
        TINYLARGE_CHECK(s.bits >= 1 && s.bits <= 8, errc::corrupt, "model file: codebook index bits must be in [1, 8]");
        TINYLARGE_CHECK(k >= 1 && k <= (std::size_t{1} << s.bits), errc::corrupt,
                        "model file: codebook size k must be in [1, 2^bits]");
        const auto& c = arr(R::centroids);
        TINYLARGE_TRY(expect(c, T::f32, k, false, "model file: a codebook layer has no centroids",
                             "model file: centroids must be f32, k of them"));
        TINYLARGE_TRY(check_finite_f32(c, deep));
        const auto& x = arr(R::indices);
        TINYLARGE_TRY(expect(x, T::u8, n, true, "model file: a codebook layer has no indices",
                             "model file: codebook indices must be u8 symbols, rows·cols of them"));
        TINYLARGE_TRY(check_symbols(x, s.bits));
        codebook_matrix_view& cb = v.codebook;
        cb.rows = rows;
        cb.cols = cols;
        cb.centroids = reinterpret_cast<const float*>(c.data);
        cb.codebook_size = k;
        if (x.encoding == symbol_encoding::huffman) {
          v.decode_bytes = n;
          cb.bits = 8;
        } else {
          cb.bits = x.encoding == symbol_encoding::bytes ? 8 : x.width;
          cb.packed = x.data;
          cb.packed_bytes = x.bytes;
          if (deep) {
            status cs = validate(cb);
            TINYLARGE_CHECK(cs.ok(), errc::corrupt, "model file: a codebook index is not below the codebook size k");
          }
        }
        break;
      }
      case weight_format::factored: {
        const std::size_t r = s.rank_or_k;
        TINYLARGE_CHECK(r >= 1 && r <= rows && r <= cols, errc::corrupt,
                        "model file: factored rank must be in [1, min(rows, cols)]");
        const auto& l = arr(R::left);
        const auto& rt = arr(R::right);
        TINYLARGE_TRY(expect(l, T::f32, rows * r, false, "model file: a factored layer has no left factor",
                             "model file: the left factor must be f32, rows·rank"));
        TINYLARGE_TRY(expect(rt, T::f32, r * cols, false, "model file: a factored layer has no right factor",
                             "model file: the right factor must be f32, rank·cols"));
        TINYLARGE_TRY(check_finite_f32(l, deep));
        TINYLARGE_TRY(check_finite_f32(rt, deep));
        v.factored = {rows, cols, r, reinterpret_cast<const float*>(l.data), reinterpret_cast<const float*>(rt.data)};
        break;
      }
    }
    return status::success();
  }

  /// A symbol array: packed width must equal `bits`; Huffman alphabet must fit below 2^bits
  /// (and, for indices, below k is checked on the decoded symbols).
  static status check_symbols(const detail::mf_array& x, unsigned bits) noexcept {
    if (x.encoding == symbol_encoding::packed)
      TINYLARGE_CHECK(x.width == bits, errc::corrupt, "model file: packed symbols use another width than the layer's");
    if (x.encoding == symbol_encoding::huffman)
      TINYLARGE_CHECK(x.width <= (std::size_t{1} << bits), errc::corrupt,
                      "model file: a Huffman alphabet is larger than 2^bits");
    return status::success();
  }

  [[nodiscard]] status bind_int8(detail::mf_section& s, bool deep) const noexcept {
    using R = array_role;
    using T = array_dtype;
    layer_view& v = s.view;
    const auto arr = [&](R r) -> const detail::mf_array& { return s.arrays[static_cast<std::size_t>(r)]; };
    const std::size_t rows = v.rows, cols = v.cols;
    TINYLARGE_CHECK(cols <= kernels::dense_s8_max_k, errc::too_large,
                    "model file: an int8 layer has more than 2^16 inputs (the exact range of the kernel)");
    const bool csr = v.format == weight_format::int8_csr;
    const bool huffman = v.format == weight_format::int8_huffman_codebook;
    const bool shared = v.format == weight_format::int8_codebook || huffman;
    const auto& w = arr(csr ? R::values : shared ? R::centroids : R::weights);
    std::size_t weight_count = rows * cols;  // int8 values checked below (int8_codebook: the k codebook values)
    if (shared) {
      // Weight-shared: k int8 codebook values, rows·cols indices bit-packed with the minimal
      // width max(1, ceil(log2 k)), every index below k; used in place.
      const std::size_t k = s.rank_or_k;
      TINYLARGE_CHECK(s.bits >= 1 && s.bits <= 8, errc::corrupt, "model file: int8 codebook index bits must be in [1, 8]");
      TINYLARGE_CHECK(k >= 1 && k <= (std::size_t{1} << s.bits) && (s.bits == 1 || k > (std::size_t{1} << (s.bits - 1))),
                      errc::corrupt, "model file: int8 codebook index bits must be max(1, ceil(log2 k)), k in [1, 256]");
      TINYLARGE_TRY(expect(w, T::i8, k, false, "model file: an int8 codebook layer has no codebook (centroids)",
                           "model file: an int8 codebook must be i8, k values"));
      weight_count = k;
      const auto& x = arr(R::indices);
      TINYLARGE_TRY(expect(x, T::u8, rows * cols, true, "model file: an int8 codebook layer has no indices",
                           "model file: int8 codebook indices must be u8 symbols, rows·cols of them"));
      if (huffman) {
        TINYLARGE_TRY(bind_huffman_rows(s));
      } else {
      TINYLARGE_CHECK(x.encoding == symbol_encoding::packed && x.width == s.bits, errc::corrupt,
                      "model file: int8 codebook indices must be bit-packed with the layer's index bits");
      v.codebook_s8 = {rows, cols, s.bits, x.data, reinterpret_cast<const std::int8_t*>(w.data)};
      if (deep)
        for (std::size_t i = 0; i < rows * cols; ++i)
          TINYLARGE_CHECK(packed_get(x.data, i, s.bits) < k, errc::corrupt,
                          "model file: an int8 codebook index is not below the codebook size k");
      }
    } else if (csr) {
      // Pruned: relative-index CSR over the int8 weights, gaps plain (in place).
      TINYLARGE_CHECK(s.gap_bits >= 1 && s.gap_bits <= 8, errc::corrupt, "model file: CSR gap bits must be in [1, 8]");
      const std::uint32_t* row_ptr = nullptr;
      TINYLARGE_TRY(check_row_ptr(arr(R::row_ptr), rows, cols, row_ptr));
      weight_count = row_ptr[rows];
      const auto& g = arr(R::gaps);
      TINYLARGE_TRY(expect(g, T::u8, weight_count, false, "model file: an int8 CSR layer has no gaps",
                           "model file: int8 CSR gaps must be plain u8, one per entry (row_ptr[rows])"));
      TINYLARGE_TRY(expect(w, T::i8, weight_count, false, "model file: an int8 CSR layer has no values",
                           "model file: int8 CSR values must be i8, one per entry (row_ptr[rows])"));
      v.csr_s8 = {rows, cols, s.gap_bits, row_ptr, g.data, csr_s8_values{reinterpret_cast<const std::int8_t*>(w.data)}};
      if (deep) TINYLARGE_TRY(check_csr(v.csr_s8));  // gaps within gap_bits, every column below cols
    } else {
      TINYLARGE_TRY(expect(w, T::i8, rows * cols, false, "model file: an int8 layer has no weights",
                           "model file: int8 weights must be i8, rows·cols"));
    }
    const auto& sc = arr(R::weight_scales);
    TINYLARGE_CHECK(sc.present, errc::corrupt, "model file: an int8 layer has no weight scales");
    const std::size_t ns = sc.count;
    TINYLARGE_CHECK(ns == 1 || ns == rows, errc::corrupt,
                    "model file: int8 weight scales: one (per tensor) or one per row (per channel)");
    TINYLARGE_TRY(expect(sc, T::f32, ns, false, "", "model file: int8 weight scales must be f32"));
    TINYLARGE_TRY(expect(arr(R::act_scales), T::f32, 2, false, "model file: an int8 layer has no activation scales",
                         "model file: int8 activation scales must be f32 [input, output]"));
    TINYLARGE_TRY(expect(arr(R::zero_points), T::i32, 2, false, "model file: an int8 layer has no zero points",
                         "model file: int8 zero points must be i32 [input, output]"));
    TINYLARGE_TRY(expect(arr(R::multipliers), T::i32, ns, false, "model file: an int8 layer has no multipliers",
                         "model file: int8 multipliers must be i32, as many as the weight scales"));
    TINYLARGE_TRY(expect(arr(R::shifts), T::i32, ns, false, "model file: an int8 layer has no shifts",
                         "model file: int8 shifts must be i32, as many as the weight scales"));
    int8_layer_view& q = v.int8;
    q.weights = csr || shared ? nullptr : reinterpret_cast<const std::int8_t*>(w.data);
    q.weight_scales = reinterpret_cast<const float*>(sc.data);
    q.multipliers = reinterpret_cast<const std::int32_t*>(arr(R::multipliers).data);
    q.shifts = reinterpret_cast<const int*>(arr(R::shifts).data);
    q.scale_count = ns;
    q.input_scale = detail::f32_at(arr(R::act_scales).data, 0);
    q.output_scale = detail::f32_at(arr(R::act_scales).data, 1);
    q.input_zero_point = static_cast<std::int32_t>(detail::mf_le32(arr(R::zero_points).data));
    q.output_zero_point = static_cast<std::int32_t>(detail::mf_le32(arr(R::zero_points).data + 4));
    const auto positive = [](float x) { return x > 0.0f && x <= std::numeric_limits<float>::max(); };  // NaN: false
    TINYLARGE_CHECK(positive(q.input_scale) && positive(q.output_scale), errc::corrupt,
                    "model file: int8 activation scales must be positive and finite");
    TINYLARGE_CHECK(q.input_zero_point >= -128 && q.input_zero_point <= 127 && q.output_zero_point >= -128 &&
                        q.output_zero_point <= 127,
                    errc::corrupt, "model file: int8 zero points must be in [-128, 127]");
    for (std::size_t c = 0; c < ns; ++c) {
      TINYLARGE_CHECK(positive(detail::f32_at(sc.data, c)), errc::corrupt,
                      "model file: int8 weight scales must be positive and finite");
      const std::int32_t m = q.multipliers[c];
      const int sh = q.shifts[c];
      TINYLARGE_CHECK(m == 0 || m >= (1 << 30), errc::corrupt,
                      "model file: an int8 multiplier is neither 0 nor in [2^30, 2^31)");
      TINYLARGE_CHECK(sh >= -31 && sh <= 30, errc::corrupt, "model file: an int8 shift is outside [-31, 30]");
    }
    if (deep) {
      const auto* wq = reinterpret_cast<const std::int8_t*>(w.data);
      for (std::size_t i = 0; i < weight_count; ++i)
        TINYLARGE_CHECK(wq[i] != -128, errc::corrupt,
                        "model file: an int8 weight is -128 (the TFLite weight range is [-127, 127])");
    }
    std::int32_t lo = -128, hi = 127;
    output_clamp(v.activation, q.output_scale, q.output_zero_point, lo, hi);
    q.act_min = static_cast<std::int8_t>(lo);
    q.act_max = static_cast<std::int8_t>(hi);
    return status::success();
  }

  /// Output clamp from the activation: relu → [zy, 127], relu6 → [zy, zy + round(6/sy)], else [−128, 127].
  static void output_clamp(activation_kind a, float output_scale, std::int32_t output_zero_point, std::int32_t& lo,
                           std::int32_t& hi) noexcept {
    lo = -128;
    hi = 127;
    if (a == activation_kind::relu || a == activation_kind::relu6) lo = output_zero_point;
    if (a == activation_kind::relu6) {
      const float six = 6.0f / output_scale;
      const std::int32_t top = six >= 255.0f ? 255 : static_cast<std::int32_t>(six + 0.5f);
      hi = output_zero_point + top < 127 ? output_zero_point + top : 127;
    }
  }

  /// An `add` record (1.4): rows = the element count, cols = 1, no rank / bits / geometry;
  /// scales and zero points of [input1, input2, output] (positive finite scales, zero points in
  /// [−128, 127]); multipliers 0 or in [2^30, 2^31); input shifts in [−31, 0] (the inputs are
  /// rescaled by at most 1, so that the kernel's sum cannot overflow), the output shift in
  /// [−31, 30]; activation none, relu or relu6 (fused into the clamp).
  [[nodiscard]] status bind_add(detail::mf_section& s) const noexcept {
    using R = array_role;
    using T = array_dtype;
    layer_view& v = s.view;
    const auto arr = [&](R r) -> const detail::mf_array& { return s.arrays[static_cast<std::size_t>(r)]; };
    TINYLARGE_CHECK(v.cols == 1, errc::corrupt, "model file: an add record has cols = 1 (rows is its element count)");
    TINYLARGE_CHECK(v.activation == activation_kind::none || v.activation == activation_kind::relu ||
                        v.activation == activation_kind::relu6,
                    errc::corrupt, "model file: an add record's activation must be none, relu or relu6");
    // One message for the four arrays (firmware flash).
    const char* const missing = "model file: an add record lacks act_scales, zero_points, multipliers or shifts";
    const char* const wrong = "model file: an add record's arrays are 3 f32 scales, 3 i32 zero points, multipliers, shifts";
    TINYLARGE_TRY(expect(arr(R::act_scales), T::f32, 3, false, missing, wrong));
    TINYLARGE_TRY(expect(arr(R::zero_points), T::i32, 3, false, missing, wrong));
    TINYLARGE_TRY(expect(arr(R::multipliers), T::i32, 3, false, missing, wrong));
    TINYLARGE_TRY(expect(arr(R::shifts), T::i32, 3, false, missing, wrong));
    int8_add_view& a = v.add;
    a.size = v.rows;
    a.scales = reinterpret_cast<const float*>(arr(R::act_scales).data);
    a.zero_points = reinterpret_cast<const std::int32_t*>(arr(R::zero_points).data);
    a.multipliers = reinterpret_cast<const std::int32_t*>(arr(R::multipliers).data);
    a.shifts = reinterpret_cast<const int*>(arr(R::shifts).data);
    for (std::size_t k = 0; k < 3; ++k)
      TINYLARGE_CHECK(a.scales[k] > 0.0f && a.scales[k] <= std::numeric_limits<float>::max() &&
                          a.zero_points[k] >= -128 && a.zero_points[k] <= 127 &&
                          (a.multipliers[k] == 0 || a.multipliers[k] >= (1 << 30)) && a.shifts[k] >= -31 &&
                          a.shifts[k] <= (k < 2 ? 0 : 30),
                      errc::corrupt,
                      "model file: an add record's scale, zero point, multiplier or shift is out of range "
                      "(docs/model-file-format.md)");
    std::int32_t lo = -128, hi = 127;
    output_clamp(v.activation, a.scales[2], a.zero_points[2], lo, hi);
    a.act_min = static_cast<std::int8_t>(lo);
    a.act_max = static_cast<std::int8_t>(hi);
    return status::success();
  }

  /// The Huffman-coded indices of an `int8_huffman_codebook` record (`bind_int8` has checked
  /// k, the index bits, the codebook and the indices' type and count): a format-1 stream with
  /// alphabet ≤ k and valid code lengths; row offsets u32, rows + 1, starting at 0, each row
  /// at least `cols` and at most 16·`cols` bits long, the last one the payload's bit length
  /// (then zero padding to the byte). The rows' codes are decoded by `verify_huffman_rows`.
  [[nodiscard]] status bind_huffman_rows(detail::mf_section& s) const noexcept {
    using R = array_role;
    layer_view& v = s.view;
    const detail::mf_array& x = s.arrays[static_cast<std::size_t>(R::indices)];
    const detail::mf_array& rb = s.arrays[static_cast<std::size_t>(R::row_bits)];
    const std::size_t rows = v.rows, cols = v.cols, k = s.rank_or_k;
    TINYLARGE_CHECK(x.encoding == symbol_encoding::huffman, errc::corrupt,
                    "model file: int8 Huffman codebook indices must be a Huffman stream");
    TINYLARGE_CHECK(x.width <= k, errc::corrupt,
                    "model file: an int8 Huffman codebook's alphabet is larger than its codebook size k");
    TINYLARGE_CHECK(rows < static_cast<std::size_t>(-1), errc::too_large, "model file: too many rows");
    TINYLARGE_TRY(expect(rb, array_dtype::u32, rows + 1, false, "model file: an int8 Huffman codebook layer has no row bit offsets",
                         "model file: int8 Huffman codebook row bit offsets must be u32, rows + 1"));
    // The stream's header (format 1, count, code lengths) was parsed and checked with the array.
    const std::uint8_t* const payload = x.data + x.huffman_payload;
    const std::size_t payload_bytes = x.huffman_payload_bytes;
    const auto* row_bits = reinterpret_cast<const std::uint32_t*>(rb.data);
    const std::uint64_t max_row = std::uint64_t{huffman_max_length} * cols;
    TINYLARGE_CHECK(row_bits[0] == 0, errc::corrupt, "model file: the first row bit offset is not 0");
    for (std::size_t o = 0; o < rows; ++o)
      TINYLARGE_CHECK(row_bits[o + 1] >= row_bits[o] && row_bits[o + 1] - row_bits[o] >= cols &&
                          row_bits[o + 1] - row_bits[o] <= max_row,
                      errc::corrupt,
                      "model file: row bit offsets decrease, or a row has fewer than 1 or more than 16 bits per index");
    const std::uint64_t total = row_bits[rows];
    TINYLARGE_CHECK((total + 7) / 8 == payload_bytes, errc::corrupt,
                    "model file: the last row bit offset is not the end of the Huffman payload");
    if (total % 8 != 0)
      TINYLARGE_CHECK((payload[payload_bytes - 1] & ((1u << (8 - total % 8)) - 1u)) == 0, errc::corrupt,
                      "model file: padding bits of a Huffman payload are not zero");
    v.huffman_s8 = {rows, cols, k, x.data, x.bytes, row_bits,
                    reinterpret_cast<const std::int8_t*>(s.arrays[static_cast<std::size_t>(R::centroids)].data)};
    return status::success();
  }

  /// CSR row offsets: u32, rows + 1, start at 0, never decrease, and a row holds at most
  /// `cols` entries (every entry advances the column by at least one). Checked before
  /// anything reads an entry, so no later loop can run past the entry arrays.
  static status check_row_ptr(const detail::mf_array& rp, std::size_t rows, std::size_t cols,
                              const std::uint32_t*& row_ptr) noexcept {
    TINYLARGE_CHECK(rows < static_cast<std::size_t>(-1), errc::too_large, "model file: too many CSR rows");
    TINYLARGE_TRY(expect(rp, array_dtype::u32, rows + 1, false, "model file: a CSR layer has no row offsets",
                         "model file: CSR row offsets must be u32, rows + 1"));
    row_ptr = reinterpret_cast<const std::uint32_t*>(rp.data);
    TINYLARGE_CHECK(row_ptr[0] == 0, errc::corrupt, "model file: the first CSR row offset is not 0");
    for (std::size_t o = 0; o < rows; ++o) {
      TINYLARGE_CHECK(row_ptr[o + 1] >= row_ptr[o], errc::corrupt, "model file: CSR row offsets decrease");
      TINYLARGE_CHECK(row_ptr[o + 1] - row_ptr[o] <= cols, errc::corrupt,
                      "model file: a CSR row has more entries than columns");
    }
    return status::success();
  }

  [[nodiscard]] status bind_csr(detail::mf_section& s, bool deep) const noexcept {
    using R = array_role;
    using T = array_dtype;
    layer_view& v = s.view;
    const auto arr = [&](R r) -> const detail::mf_array& { return s.arrays[static_cast<std::size_t>(r)]; };
    const std::size_t rows = v.rows, cols = v.cols;
    const bool cb = v.format == weight_format::csr_codebook;
    TINYLARGE_CHECK(s.gap_bits >= 1 && s.gap_bits <= 8, errc::corrupt, "model file: CSR gap bits must be in [1, 8]");
    const std::uint32_t* row_ptr = nullptr;
    TINYLARGE_TRY(check_row_ptr(arr(R::row_ptr), rows, cols, row_ptr));
    const std::size_t entries = row_ptr[rows];
    const auto& g = arr(R::gaps);
    TINYLARGE_TRY(expect(g, T::u8, entries, true, "model file: a CSR layer has no gaps",
                         "model file: CSR gaps must be u8 symbols, one per entry (row_ptr[rows])"));
    if (g.encoding == symbol_encoding::packed)
      TINYLARGE_CHECK(g.width == s.gap_bits, errc::corrupt, "model file: packed gaps use another width than gap bits");
    if (g.encoding == symbol_encoding::huffman)
      TINYLARGE_CHECK(g.width <= (std::size_t{1} << s.gap_bits), errc::corrupt,
                      "model file: the gap Huffman alphabet is larger than 2^gap_bits");
    const auto& x = arr(R::values);
    std::size_t decode = g.encoding == symbol_encoding::bytes ? 0 : entries;
    if (!cb) {
      TINYLARGE_CHECK(s.rank_or_k == 0 && s.bits == 0, errc::corrupt, "model file: CSR fp32 has no codebook");
      TINYLARGE_TRY(expect(x, T::f32, entries, false, "model file: a CSR layer has no values",
                           "model file: CSR fp32 values must be f32, one per entry"));
      TINYLARGE_TRY(check_finite_f32(x, deep));
      v.csr = {rows, cols, s.gap_bits, row_ptr, g.encoding == symbol_encoding::bytes ? g.data : nullptr,
               csr_f32_values{reinterpret_cast<const float*>(x.data)}};
    } else {
      const std::size_t k = s.rank_or_k;
      TINYLARGE_CHECK(s.bits >= 1 && s.bits <= 8, errc::corrupt, "model file: codebook index bits must be in [1, 8]");
      TINYLARGE_CHECK(k >= 1 && k <= (std::size_t{1} << s.bits), errc::corrupt,
                      "model file: codebook size k must be in [1, 2^bits]");
      const auto& c = arr(R::centroids);
      TINYLARGE_TRY(expect(c, T::f32, k, false, "model file: a CSR codebook layer has no centroids",
                           "model file: centroids must be f32, k of them"));
      TINYLARGE_TRY(check_finite_f32(c, deep));
      TINYLARGE_TRY(expect(x, T::u8, entries, true, "model file: a CSR codebook layer has no indices",
                           "model file: CSR codebook indices must be u8 symbols, one per entry"));
      TINYLARGE_TRY(check_symbols(x, s.bits));
      if (x.encoding != symbol_encoding::bytes) decode += entries;
      v.csr_codebook = {rows,
                        cols,
                        s.gap_bits,
                        row_ptr,
                        g.encoding == symbol_encoding::bytes ? g.data : nullptr,
                        csr_codebook_values{x.encoding == symbol_encoding::bytes ? x.data : nullptr,
                                            reinterpret_cast<const float*>(c.data), k}};
    }
    v.decode_bytes = decode;
    if (decode == 0 && deep) {
      const status cs = cb ? check_csr(v.csr_codebook) : check_csr(v.csr);
      TINYLARGE_TRY(cs);
    }
    if (decode != 0) {  // the views are completed by decode_layer
      v.csr.gaps = nullptr;
      v.csr_codebook.gaps = nullptr;
      v.csr_codebook.values.indices = nullptr;
    }
    return status::success();
  }

  const std::uint8_t* data_ = nullptr;
  std::size_t size_ = 0;
  model_file_info info_{};
  model_file_options opt_{};
};

// ---------------------------------------------------------------------------
// Writer and host loader (host profile)
// ---------------------------------------------------------------------------

#if !TINYLARGE_FREESTANDING

/// Per-layer options of the builder.
struct layer_options {
  activation_kind activation = activation_kind::none;
  /// How CSR gaps / CSR codebook indices / codebook indices are stored. `bytes` keeps CSR
  /// streams usable in place; for codebook layers `bytes` means bit-packed (in place).
  symbol_encoding gaps = symbol_encoding::bytes;
  symbol_encoding indices = symbol_encoding::bytes;
  layer_kind kind = layer_kind::dense;
  conv2d_geometry conv{};  ///< for `kind == conv2d`
};

/// Builds a model file (host). Each `add_*` appends one layer record; `bytes()` gives the
/// file, `write(path)` writes it atomically (io/file.hpp).
class model_file_builder {
 public:
  /// Dense fp32 weights (rows×cols, row-major), optional fp32 bias (rows or empty).
  model_file_builder& add_dense_f32(std::size_t rows, std::size_t cols, std::span<const float> w,
                                    std::span<const float> bias = {}, const layer_options& o = {}) {
    TINYLARGE_REQUIRE(w.size() == rows * cols, errc::shape_mismatch, "model_file_builder: weights must be rows·cols");
    section s = begin(weight_format::dense_f32, rows, cols, o);
    s.add(array_role::weights, array_dtype::f32, w.data(), w.size());
    add_bias(s, bias, rows);
    return finish(std::move(s));
  }

  /// Dense weights stored as IEEE binary16 (converted from fp32, round to nearest even).
  model_file_builder& add_dense_f16(std::size_t rows, std::size_t cols, std::span<const float> w,
                                    std::span<const float> bias = {}, const layer_options& o = {}) {
    TINYLARGE_REQUIRE(w.size() == rows * cols, errc::shape_mismatch, "model_file_builder: weights must be rows·cols");
    std::vector<half> h(w.size());
    for (std::size_t i = 0; i < w.size(); ++i) h[i] = float_to_half(w[i]);
    section s = begin(weight_format::dense_f16, rows, cols, o);
    s.add(array_role::weights, array_dtype::f16, h.data(), h.size());
    add_bias(s, bias, rows);
    return finish(std::move(s));
  }

  /// int8 weights (TFLite int8 spec): `weight_scales` has 1 (per tensor) or `rows` (per
  /// channel) entries; the requantization multipliers M = s_x·s_w/s_y are computed here, so
  /// that the device needs no floating point. `bias` is int32 (scale s_x·s_w), may be empty.
  model_file_builder& add_int8(std::size_t rows, std::size_t cols, std::span<const std::int8_t> w,
                               std::span<const float> weight_scales, quant_params input, quant_params output,
                               std::span<const std::int32_t> bias = {}, const layer_options& o = {}) {
    TINYLARGE_REQUIRE(w.size() == rows * cols, errc::shape_mismatch, "model_file_builder: weights must be rows·cols");
    TINYLARGE_REQUIRE(weight_scales.size() == 1 || weight_scales.size() == rows, errc::shape_mismatch,
                      "model_file_builder: one weight scale, or one per row");
    TINYLARGE_REQUIRE(bias.empty() || bias.size() == rows, errc::shape_mismatch,
                      "model_file_builder: the bias has one entry per row");
    section s = begin(weight_format::int8, rows, cols, o);
    s.add(array_role::weights, array_dtype::i8, w.data(), w.size());
    add_int8_quantization(s, weight_scales, input, output, bias);
    return finish(std::move(s));
  }

  /// Pruned int8 weights (format `int8_csr`, file version 1.1): `w` is the rows×cols int8
  /// matrix with its pruned weights zero; its non-zero entries are stored in relative-index
  /// CSR (gaps of `gap_bits` bits, one byte each, fillers of value 0 bridging longer runs),
  /// everything else as `add_int8`. A network bound to it computes the bits of the dense
  /// int8 layer `add_int8(rows, cols, w, …)`.
  model_file_builder& add_int8_csr(std::size_t rows, std::size_t cols, std::span<const std::int8_t> w,
                                   std::span<const float> weight_scales, quant_params input, quant_params output,
                                   std::span<const std::int32_t> bias = {}, const layer_options& o = {},
                                   unsigned gap_bits = 8) {
    TINYLARGE_REQUIRE(w.size() == rows * cols, errc::shape_mismatch, "model_file_builder: weights must be rows·cols");
    TINYLARGE_REQUIRE(weight_scales.size() == 1 || weight_scales.size() == rows, errc::shape_mismatch,
                      "model_file_builder: one weight scale, or one per row");
    TINYLARGE_REQUIRE(bias.empty() || bias.size() == rows, errc::shape_mismatch,
                      "model_file_builder: the bias has one entry per row");
    std::vector<float> wf(w.begin(), w.end());  // exact; build_relative_csr keeps the non-zero columns
    const relative_csr<std::int8_t> m = detail::build_relative_csr<std::int8_t>(
        matrix_ref<const float>{wf.data(), rows, cols}, gap_bits, [&](std::size_t i) { return w[i]; });
    section s = begin(weight_format::int8_csr, rows, cols, o);
    s.gap_bits = static_cast<std::uint8_t>(gap_bits);
    add_row_ptr(s, m.row_ptr, rows);
    s.add(array_role::gaps, array_dtype::u8, m.gaps.data(), m.gaps.size());
    s.add(array_role::values, array_dtype::i8, m.values.data(), m.values.size());
    add_int8_quantization(s, weight_scales, input, output, bias);
    return finish(std::move(s));
  }

  /// Weight-shared int8 weights (format `int8_codebook`, file version 1.2): `codebook` holds
  /// k ∈ [1, 256] int8 values in [−127, 127], `indices` rows·cols indices below k, stored
  /// bit-packed with max(1, ⌈log2 k⌉) bits; everything else as `add_int8`. A network bound
  /// to it computes the bits of the dense int8 layer whose weight i is codebook[indices[i]].
  /// With `o.indices == symbol_encoding::huffman` the record is `int8_huffman_codebook`
  /// (format 10, file version 1.3): the indices one Huffman stream (the optimal code of the
  /// layer's index histogram, alphabet k) and the bit offset of every row's first code, so
  /// that the kernels decode one output channel at a time (kernels/huffman_s8.hpp).
  model_file_builder& add_int8_codebook(std::size_t rows, std::size_t cols, std::span<const std::int8_t> codebook,
                                        std::span<const std::uint8_t> indices, std::span<const float> weight_scales,
                                        quant_params input, quant_params output,
                                        std::span<const std::int32_t> bias = {}, const layer_options& o = {}) {
    TINYLARGE_REQUIRE(indices.size() == rows * cols, errc::shape_mismatch,
                      "model_file_builder: one codebook index per weight (rows·cols)");
    TINYLARGE_REQUIRE(!codebook.empty() && codebook.size() <= 256, errc::invalid_argument,
                      "model_file_builder: an int8 codebook has 1 to 256 values");
    TINYLARGE_REQUIRE(weight_scales.size() == 1 || weight_scales.size() == rows, errc::shape_mismatch,
                      "model_file_builder: one weight scale, or one per row");
    TINYLARGE_REQUIRE(bias.empty() || bias.size() == rows, errc::shape_mismatch,
                      "model_file_builder: the bias has one entry per row");
    for (const std::uint8_t i : indices)
      TINYLARGE_REQUIRE(i < codebook.size(), errc::invalid_argument,
                        "model_file_builder: a codebook index is not below the codebook size");
    const unsigned bits = int8_codebook_bits(codebook.size());
    const bool huffman = o.indices == symbol_encoding::huffman;
    section s = begin(huffman ? weight_format::int8_huffman_codebook : weight_format::int8_codebook, rows, cols, o);
    s.rank_or_k = static_cast<std::uint32_t>(codebook.size());
    s.bits = static_cast<std::uint8_t>(bits);
    const std::vector<std::uint8_t> idx(indices.begin(), indices.end());
    if (huffman) {
      const std::vector<std::uint8_t> h = huffman_encode(idx, codebook.size());
      huffman_stream_info info;
      raise_if_error(huffman_parse_header(h.data(), h.size(), info));
      std::vector<std::uint32_t> row_bits(rows + 1, 0);
      for (std::size_t r = 0; r < rows; ++r) {
        std::uint64_t b = row_bits[r];
        for (std::size_t c = 0; c < cols; ++c) b += info.lengths[idx[r * cols + c]];
        TINYLARGE_REQUIRE(b <= 0xFFFFFFFFu, errc::too_large, "model_file_builder: a Huffman payload above 2^32 bits");
        row_bits[r + 1] = static_cast<std::uint32_t>(b);
      }
      s.add_raw(array_role::indices, array_dtype::u8, symbol_encoding::huffman, 0, h.data(), h.size(), idx.size());
      s.add(array_role::row_bits, array_dtype::u32, row_bits.data(), row_bits.size());
    } else {
      add_symbols(s, array_role::indices, idx, bits, codebook.size(), symbol_encoding::packed);
    }
    s.add(array_role::centroids, array_dtype::i8, codebook.data(), codebook.size());
    add_int8_quantization(s, weight_scales, input, output, bias);
    return finish(std::move(s));
  }

  /// The int8 add that closes a residual block (layer kind `add`, file version 1.4):
  /// y = x₁ + x₂ on `n` elements, x₁ the block's input (`input1`: the skip tensor), x₂ its last
  /// inner layer's output (`input2`), y on `output`; `activation` none, relu or relu6 (fused
  /// into the clamp). The multipliers of `kernels::add_s8` are computed here
  /// (`quantize_add_multipliers`, as `nn::residual_add_params` does), so the device needs no
  /// floating point.
  model_file_builder& add_int8_add(std::size_t n, quant_params input1, quant_params input2, quant_params output,
                                   activation_kind activation = activation_kind::none) {
    layer_options o;
    o.kind = layer_kind::add;
    o.activation = activation;
    section s = begin(weight_format::none, n, 1, o);
    const add_multipliers m = quantize_add_multipliers(input1.scale, input2.scale, output.scale,
                                                       kernels::add_s8_params::left_shift);
    const float act[3] = {input1.scale, input2.scale, output.scale};
    const std::int32_t zp[3] = {input1.zero_point, input2.zero_point, output.zero_point};
    const std::int32_t mult[3] = {m.input1.multiplier, m.input2.multiplier, m.output.multiplier};
    const std::int32_t shift[3] = {m.input1.shift, m.input2.shift, m.output.shift};
    s.add(array_role::act_scales, array_dtype::f32, act, 3);
    s.add(array_role::zero_points, array_dtype::i32, zp, 3);
    s.add(array_role::multipliers, array_dtype::i32, mult, 3);
    s.add(array_role::shifts, array_dtype::i32, shift, 3);
    return finish(std::move(s));
  }

  /// Index width of an int8 codebook of k values: max(1, ⌈log2 k⌉).
  static constexpr unsigned int8_codebook_bits(std::size_t k) noexcept {
    unsigned b = 1;
    while ((std::size_t{1} << b) < k) ++b;
    return b;
  }

  /// Relative-index CSR with fp32 values (compress/sparse.hpp).
  model_file_builder& add_csr(const relative_csr<float>& m, std::span<const float> bias = {},
                              const layer_options& o = {}) {
    section s = begin(weight_format::csr_f32, m.rows, m.cols, o);
    s.gap_bits = static_cast<std::uint8_t>(m.gap_bits);
    add_row_ptr(s, m.row_ptr, m.rows);
    add_symbols(s, array_role::gaps, m.gaps, m.gap_bits, std::size_t{1} << m.gap_bits, o.gaps);
    TINYLARGE_REQUIRE(m.values.size() == m.gaps.size(), errc::shape_mismatch, "model_file_builder: one value per gap");
    s.add(array_role::values, array_dtype::f32, m.values.data(), m.values.size());
    add_bias(s, bias, m.rows);
    return finish(std::move(s));
  }

  /// Relative-index CSR with codebook values; `index_bits` is the index width (k ≤ 2^bits).
  model_file_builder& add_csr(const relative_csr<std::uint8_t>& m, unsigned index_bits,
                              std::span<const float> bias = {}, const layer_options& o = {}) {
    TINYLARGE_REQUIRE(index_bits >= 1 && index_bits <= 8 && !m.centroids.empty() &&
                          m.centroids.size() <= (std::size_t{1} << index_bits),
                      errc::invalid_argument, "model_file_builder: need 1 <= k <= 2^index_bits, index_bits in [1, 8]");
    section s = begin(weight_format::csr_codebook, m.rows, m.cols, o);
    s.gap_bits = static_cast<std::uint8_t>(m.gap_bits);
    s.bits = static_cast<std::uint8_t>(index_bits);
    s.rank_or_k = static_cast<std::uint32_t>(m.centroids.size());
    add_row_ptr(s, m.row_ptr, m.rows);
    add_symbols(s, array_role::gaps, m.gaps, m.gap_bits, std::size_t{1} << m.gap_bits, o.gaps);
    TINYLARGE_REQUIRE(m.values.size() == m.gaps.size(), errc::shape_mismatch, "model_file_builder: one index per gap");
    add_symbols(s, array_role::values, m.values, index_bits, m.centroids.size(), o.indices);
    s.add(array_role::centroids, array_dtype::f32, m.centroids.data(), m.centroids.size());
    add_bias(s, bias, m.rows);
    return finish(std::move(s));
  }

  /// Bit-packed codebook matrix (compress/sparse.hpp). `o.indices == huffman` stores the
  /// indices Huffman-coded (decoded at load); otherwise they stay packed (in place).
  model_file_builder& add_codebook(const codebook_matrix& m, std::span<const float> bias = {},
                                   const layer_options& o = {}) {
    section s = begin(weight_format::codebook, m.rows, m.cols, o);
    s.bits = static_cast<std::uint8_t>(m.bits);
    s.rank_or_k = static_cast<std::uint32_t>(m.centroids.size());
    const std::size_t n = m.rows * m.cols;
    if (o.indices == symbol_encoding::huffman) {
      std::vector<std::uint8_t> idx(n);
      raise_if_error(unpack_bits(m.packed.data(), m.packed.size(), n, m.bits, idx.data()));
      add_symbols(s, array_role::indices, idx, m.bits, m.centroids.size(), symbol_encoding::huffman);
    } else {
      TINYLARGE_REQUIRE(m.packed.size() == packed_size(n, m.bits), errc::shape_mismatch,
                        "model_file_builder: packed indices have the wrong size");
      s.add_raw(array_role::indices, array_dtype::u8, symbol_encoding::packed, static_cast<std::uint8_t>(m.bits),
                m.packed.data(), m.packed.size(), n);
    }
    s.add(array_role::centroids, array_dtype::f32, m.centroids.data(), m.centroids.size());
    add_bias(s, bias, m.rows);
    return finish(std::move(s));
  }

  /// Low-rank factors (compress/low_rank.hpp): left rows×rank, right rank×cols.
  model_file_builder& add_factored(const low_rank_factors& f, std::span<const float> bias = {},
                                   const layer_options& o = {}) {
    TINYLARGE_REQUIRE(f.left.size() == f.rows * f.rank && f.right.size() == f.rank * f.cols, errc::shape_mismatch,
                      "model_file_builder: factor sizes disagree with rows, cols and rank");
    section s = begin(weight_format::factored, f.rows, f.cols, o);
    s.rank_or_k = static_cast<std::uint32_t>(f.rank);
    s.add(array_role::left, array_dtype::f32, f.left.data(), f.left.size());
    s.add(array_role::right, array_dtype::f32, f.right.data(), f.right.size());
    add_bias(s, bias, f.rows);
    return finish(std::move(s));
  }

  std::size_t layer_count() const noexcept { return layers_; }

  /// The complete file.
  std::vector<std::uint8_t> bytes() const {
    namespace L = model_file_layout;
    std::vector<std::uint8_t> out(L::header_size, 0);
    std::memcpy(out.data(), L::file_magic, 4);
    put16(out, 4, L::version_major);
    put16(out, 6, minor_);
    put32(out, 8, 0);
    put32(out, 12, static_cast<std::uint32_t>(layers_));
    put32(out, 24, static_cast<std::uint32_t>(L::header_size));
    out.insert(out.end(), body_.begin(), body_.end());
    const std::size_t end = out.size();
    out.resize(end + L::end_marker_size);
    std::memcpy(out.data() + end, L::end_magic, 4);
    put32(out, end + 4, static_cast<std::uint32_t>(layers_));
    const std::uint64_t total = out.size();
    put32(out, 16, static_cast<std::uint32_t>(total));
    put32(out, 20, static_cast<std::uint32_t>(total >> 32));
    put32(out, 28, crc32(out.data(), 28));
    return out;
  }

  /// Writes the file atomically (`path.tmp`, then rename).
  void write(const std::string& path) const { io::write_file(path, bytes()); }

 private:
  static void put16(std::vector<std::uint8_t>& b, std::size_t at, std::uint32_t v) {
    b[at] = static_cast<std::uint8_t>(v);
    b[at + 1] = static_cast<std::uint8_t>(v >> 8);
  }
  static void put32(std::vector<std::uint8_t>& b, std::size_t at, std::uint32_t v) {
    for (int i = 0; i < 4; ++i) b[at + static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(v >> (8 * i));
  }

  struct array_entry {
    array_role role;
    array_dtype dtype;
    symbol_encoding encoding;
    std::uint8_t width;
    std::vector<std::uint8_t> data;
    std::size_t count;
  };
  struct section {
    layer_kind kind = layer_kind::dense;
    activation_kind activation = activation_kind::none;
    weight_format format = weight_format::dense_f32;
    std::uint32_t rows = 0, cols = 0, rank_or_k = 0;
    std::uint8_t bits = 0, gap_bits = 0;
    conv2d_geometry conv{};
    std::vector<array_entry> arrays;

    template <class T>
    void add(array_role r, array_dtype t, const T* p, std::size_t n) {
      add_raw(r, t, symbol_encoding::bytes, 0, p, n * sizeof(T), n);
    }
    void add_raw(array_role r, array_dtype t, symbol_encoding e, std::uint8_t width, const void* p,
                 std::size_t bytes, std::size_t count) {
      TINYLARGE_REQUIRE(bytes <= 0xFFFFFFFFu && count <= 0xFFFFFFFFu, errc::too_large,
                        "model_file_builder: an array above 4 GiB");
      array_entry a{r, t, e, width, std::vector<std::uint8_t>(bytes), count};
      if (bytes != 0) std::memcpy(a.data.data(), p, bytes);
      arrays.push_back(std::move(a));
    }
  };

  section begin(weight_format f, std::size_t rows, std::size_t cols, const layer_options& o) const {
    TINYLARGE_REQUIRE(rows >= 1 && cols >= 1 && rows <= 0xFFFFFFFFu && cols <= 0xFFFFFFFFu, errc::invalid_argument,
                      "model_file_builder: rows and cols must be in [1, 2^32)");
    section s;
    s.kind = o.kind;
    s.activation = o.activation;
    s.format = f;
    s.rows = static_cast<std::uint32_t>(rows);
    s.cols = static_cast<std::uint32_t>(cols);
    s.conv = o.conv;
    return s;
  }

  /// The arrays int8 and int8_csr share: int32 bias, weight scales, activation scales, zero
  /// points and the requantization multipliers M = s_x·s_w/s_y, computed here.
  static void add_int8_quantization(section& s, std::span<const float> weight_scales, quant_params input,
                                    quant_params output, std::span<const std::int32_t> bias) {
    std::vector<std::int32_t> mult(weight_scales.size()), shift(weight_scales.size());
    for (std::size_t c = 0; c < weight_scales.size(); ++c) {
      const quantized_multiplier m = quantize_multiplier(static_cast<double>(input.scale) * weight_scales[c] /
                                                         static_cast<double>(output.scale));
      mult[c] = m.multiplier;
      shift[c] = m.shift;
    }
    const float act[2] = {input.scale, output.scale};
    const std::int32_t zp[2] = {input.zero_point, output.zero_point};
    if (!bias.empty()) s.add(array_role::bias, array_dtype::i32, bias.data(), bias.size());
    s.add(array_role::weight_scales, array_dtype::f32, weight_scales.data(), weight_scales.size());
    s.add(array_role::act_scales, array_dtype::f32, act, 2);
    s.add(array_role::zero_points, array_dtype::i32, zp, 2);
    s.add(array_role::multipliers, array_dtype::i32, mult.data(), mult.size());
    s.add(array_role::shifts, array_dtype::i32, shift.data(), shift.size());
  }

  static void add_bias(section& s, std::span<const float> bias, std::size_t rows) {
    if (bias.empty()) return;
    TINYLARGE_REQUIRE(bias.size() == rows, errc::shape_mismatch, "model_file_builder: the bias has one entry per row");
    s.add(array_role::bias, array_dtype::f32, bias.data(), bias.size());
  }
  static void add_row_ptr(section& s, const std::vector<std::uint32_t>& rp, std::size_t rows) {
    TINYLARGE_REQUIRE(rp.size() == rows + 1, errc::shape_mismatch, "model_file_builder: rows + 1 row offsets");
    s.add(array_role::row_ptr, array_dtype::u32, rp.data(), rp.size());
  }
  /// A u8 symbol array in the chosen encoding. `bits`: packed width; `alphabet`: Huffman.
  static void add_symbols(section& s, array_role r, const std::vector<std::uint8_t>& sym, unsigned bits,
                          std::size_t alphabet, symbol_encoding e) {
    switch (e) {
      case symbol_encoding::bytes:
        s.add(r, array_dtype::u8, sym.data(), sym.size());
        return;
      case symbol_encoding::packed: {
        std::vector<std::uint8_t> p(packed_size(sym.size(), bits));
        raise_if_error(pack_bits(sym.data(), sym.size(), bits, p.data(), p.size()));
        s.add_raw(r, array_dtype::u8, e, static_cast<std::uint8_t>(bits), p.data(), p.size(), sym.size());
        return;
      }
      case symbol_encoding::huffman: {
        std::size_t a = alphabet;
        if (sym.empty()) a = 1;
        const std::vector<std::uint8_t> h = huffman_encode(sym, a);
        s.add_raw(r, array_dtype::u8, e, 0, h.data(), h.size(), sym.size());
        return;
      }
    }
  }

  model_file_builder& finish(section&& s) {
    namespace L = model_file_layout;
    TINYLARGE_REQUIRE(s.arrays.size() <= L::max_arrays, errc::invalid_argument, "model_file_builder: too many arrays");
    if (s.kind == layer_kind::conv2d) {
      const conv2d_geometry& g = s.conv;
      TINYLARGE_REQUIRE(g.groups >= 1 && g.in_channels % g.groups == 0 &&
                            std::uint64_t{g.in_channels} / g.groups * g.kernel_h * g.kernel_w == s.cols,
                        errc::shape_mismatch, "model_file_builder: conv2d geometry disagrees with cols");
    }
    const std::size_t table_end = L::section_header_size + s.arrays.size() * L::array_entry_size;
    std::size_t off = detail::mf_align_up(table_end);
    std::vector<std::size_t> offsets;
    for (const array_entry& a : s.arrays) {
      offsets.push_back(off);
      off = detail::mf_align_up(off + a.data.size());
    }
    TINYLARGE_REQUIRE(off <= 0xFFFFFFFFu, errc::too_large, "model_file_builder: a section above 4 GiB");
    std::vector<std::uint8_t> b(off, 0);
    std::memcpy(b.data(), L::section_magic, 4);
    put32(b, 4, static_cast<std::uint32_t>(off));
    b[12] = static_cast<std::uint8_t>(s.kind);
    b[13] = static_cast<std::uint8_t>(s.activation);
    b[14] = static_cast<std::uint8_t>(s.format);
    b[15] = static_cast<std::uint8_t>(s.arrays.size());
    put32(b, 16, s.rows);
    put32(b, 20, s.cols);
    put32(b, 24, s.rank_or_k);
    b[28] = s.bits;
    b[29] = s.gap_bits;
    put16(b, 30, static_cast<std::uint32_t>(L::section_header_size));
    const std::uint16_t geom[8] = {s.conv.in_channels, s.conv.kernel_h, s.conv.kernel_w, s.conv.stride_h,
                                   s.conv.stride_w,    s.conv.pad_h,    s.conv.pad_w,    s.conv.groups};
    for (std::size_t k = 0; k < 8; ++k) put16(b, 32 + 2 * k, geom[k]);
    for (std::size_t a = 0; a < s.arrays.size(); ++a) {
      const array_entry& e = s.arrays[a];
      const std::size_t at = L::section_header_size + a * L::array_entry_size;
      b[at] = static_cast<std::uint8_t>(e.role);
      b[at + 1] = static_cast<std::uint8_t>(e.dtype);
      b[at + 2] = static_cast<std::uint8_t>(e.encoding);
      b[at + 3] = e.width;
      put32(b, at + 4, static_cast<std::uint32_t>(offsets[a]));
      put32(b, at + 8, static_cast<std::uint32_t>(e.data.size()));
      put32(b, at + 12, static_cast<std::uint32_t>(e.count));
      if (!e.data.empty()) std::memcpy(b.data() + offsets[a], e.data.data(), e.data.size());
    }
    std::uint32_t c = crc32(b.data(), 8);
    c = crc32(b.data() + 12, b.size() - 12, c);
    put32(b, 8, c);
    const std::uint16_t minor = s.format == weight_format::int8_csr                ? L::int8_csr_minor
                                : s.format == weight_format::int8_codebook         ? L::int8_codebook_minor
                                : s.format == weight_format::int8_huffman_codebook ? L::int8_huffman_codebook_minor
                                : s.kind == layer_kind::add                         ? L::add_minor
                                                                                   : std::uint16_t{0};
    check_section(b, minor);
    body_.insert(body_.end(), b.begin(), b.end());
    ++layers_;
    minor_ = minor > minor_ ? minor : minor_;
    return *this;
  }

  static void check_section(const std::vector<std::uint8_t>& section_bytes, std::uint16_t minor) {
    model_file_builder one;
    one.body_ = section_bytes;
    one.layers_ = 1;
    one.minor_ = minor;
    const std::vector<std::uint8_t> file = one.bytes();
    std::vector<std::uint64_t> aligned((file.size() + 7) / 8);
    std::memcpy(aligned.data(), file.data(), file.size());
    model_file_options o;
    o.limits.max_file_bytes = static_cast<std::size_t>(-1);
    o.limits.max_dim = 0xFFFFFFFFu;
    o.limits.max_elements = static_cast<std::size_t>(-1);
    model_file_reader r;
    status st = r.open(reinterpret_cast<const std::uint8_t*>(aligned.data()), file.size(), o);
    if (st) {  // coded streams: decode them too
      layer_view v;
      st = r.layer(0, v);
      if (st && !v.in_place()) {
        std::vector<std::uint8_t> buf(v.decode_bytes);
        st = r.decode_layer<10>(0, buf.data(), buf.size(), v);
      }
      if (st && v.format == weight_format::int8_huffman_codebook) st = r.verify_huffman_rows(0);
    }
    if (!st)
      TINYLARGE_RAISE(st.code == errc::non_finite ? errc::non_finite : errc::invalid_argument,
                      std::string("model_file_builder: invalid layer record: ") + st.message);
  }

  std::vector<std::uint8_t> body_;
  std::size_t layers_ = 0;
  /// The file's minor version: the lowest that its records need (1.0 without int8_csr,
  /// int8_codebook, int8_huffman_codebook or add records).
  std::uint16_t minor_ = 0;
};

/// A loaded, validated model file that owns its bytes and the decoded symbol streams (host).
class model_file {
 public:
  model_file(model_file&&) noexcept = default;
  model_file& operator=(model_file&&) noexcept = default;
  model_file(const model_file&) = delete;  // the views point into this object's buffers
  model_file& operator=(const model_file&) = delete;

  /// Validates `bytes` (copied into 8-byte aligned storage) and decodes every coded layer.
  /// @throws tl::format_error (or numeric_error for NaN/Inf) with a message naming
  ///         `name`, the layer, and for a newer format both versions.
  static model_file from_bytes(std::span<const std::uint8_t> bytes, const model_file_options& opt = {},
                               const std::string& name = "<memory>") {
    model_file m;
    m.storage_.resize((bytes.size() + 7) / 8);
    if (!bytes.empty()) std::memcpy(m.storage_.data(), bytes.data(), bytes.size());
    m.size_ = bytes.size();
    const status s = m.reader_.open(m.data(), m.size_, opt);
    if (!s) fail(m.reader_.info(), s, name);
    m.views_.resize(m.reader_.layer_count());
    m.decoded_.resize(m.views_.size());
    for (std::size_t i = 0; i < m.views_.size(); ++i) {
      layer_view v;
      status ls = m.reader_.layer(i, v);
      if (ls && !v.in_place()) {
        m.decoded_[i].resize(v.decode_bytes);
        ls = m.reader_.decode_layer<10>(i, m.decoded_[i].data(), m.decoded_[i].size(), v);
      }
      if (ls && v.format == weight_format::int8_huffman_codebook) ls = m.reader_.verify_huffman_rows(i);
      if (!ls) {
        model_file_info info = m.reader_.info();
        info.failed_layer = i;
        fail(info, ls, name);
      }
      m.views_[i] = v;
    }
    return m;
  }

  std::size_t layer_count() const noexcept { return views_.size(); }
  /// Validated, decoded view of layer `i`; valid while this object (or the one it is moved to) lives.
  const layer_view& layer(std::size_t i) const {
    TINYLARGE_REQUIRE(i < views_.size(), errc::invalid_argument, "model_file: layer index out of range");
    return views_[i];
  }
  const model_file_info& info() const noexcept { return reader_.info(); }
  std::span<const std::uint8_t> bytes() const noexcept { return {data(), size_}; }

  /// The message of a failed `open`, as thrown by `from_bytes`.
  static std::string describe(const model_file_info& info, status s, const std::string& name) {
    std::string msg = "tinylarge: model file '" + name + "': ";
    if (s.code == errc::unsupported_version)
      return msg + "format version " + std::to_string(info.major) + "." + std::to_string(info.minor) +
             " is not supported by this reader (format version " +
             std::to_string(model_file_layout::version_major) + "." +
             std::to_string(model_file_layout::version_minor) + ")";
    if (info.failed_layer != model_file_info::no_layer) msg += "layer " + std::to_string(info.failed_layer) + ": ";
    return msg + s.message;
  }

 private:
  model_file() = default;
  const std::uint8_t* data() const noexcept { return reinterpret_cast<const std::uint8_t*>(storage_.data()); }
  [[noreturn]] static void fail([[maybe_unused]] const model_file_info& info, status s,
                                [[maybe_unused]] const std::string& name) {
    TINYLARGE_RAISE(s.code, describe(info, s, name));
    __builtin_unreachable();
  }

  std::vector<std::uint64_t> storage_;  // 8-byte aligned; its heap buffer does not move with the object
  std::size_t size_ = 0;
  model_file_reader reader_;
  std::vector<layer_view> views_;
  std::vector<std::vector<std::uint8_t>> decoded_;
};

/// Reads and validates the model file at `path` (refusing files above
/// `opt.limits.max_file_bytes` before reading them whole).
/// @throws tl::io_error when the file cannot be read, tl::format_error when it is invalid.
inline model_file load_model_file(const std::string& path, const model_file_options& opt = {}) {
  const std::vector<std::uint8_t> bytes = io::read_file(path, opt.limits.max_file_bytes);
  return model_file::from_bytes(bytes, opt, path);
}

#endif  // !TINYLARGE_FREESTANDING

}  // namespace tinylarge::compress
