/// @file data/idx.hpp
/// @brief Load IDX image/label pairs (MNIST, Fashion-MNIST), gzip-compressed
///        or raw, into a `dataset` of float images in [0, 1].
///
/// Example:
/// @code
///   auto train = tl::data::load_fashion_mnist(tl::data::split::train);
///   // train.count == 60000, train.rows == train.cols == 28
///   const float* x0 = train.image(0);        // 784 floats in [0, 1]
///   std::uint8_t y0 = train.labels[0];       // class 0..9
/// @endcode
///
/// Loading goes in three steps, each with its own error:
///  1. read the file (`tl::io_error` naming the file and the OS reason);
///  2. gunzip when the file starts with the gzip magic (`tl::format_error`:
///     truncated, corrupt, too large — the output is bounded by
///     `idx_limits::max_bytes` and by `idx_limits::max_ratio` × the file
///     size, and a bomb is refused before anything is allocated);
///  3. parse and validate the IDX header with the non-throwing
///     `parse_idx_images` / `parse_idx_labels` of `idx_format.hpp`, check that
///     image and label counts agree, and only then allocate and convert.
///
/// The non-throwing `decode_idx` does step 3 on memory buffers, for tests,
/// fuzzing and data that does not come from files.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <system_error>
#include <vector>

#include "../core/config.hpp"
#include "../core/error.hpp"
#include "../io/file.hpp"
#include "../io/gzip.hpp"
#include "idx_format.hpp"

namespace tinylarge::data {

/// An in-memory classification data set of single-channel images.
///
/// Images are scaled to [0, 1] (pixel / 255.0f, correctly rounded) and stored row-major as a
/// `count × (rows·cols)` matrix; `labels[i]` is the class of image `i`.
struct dataset {
  std::vector<float> images;         ///< count · rows · cols values in [0, 1]
  std::vector<std::uint8_t> labels;  ///< count class labels
  std::size_t count = 0;             ///< number of samples
  std::size_t rows = 0;              ///< image height
  std::size_t cols = 0;              ///< image width

  /// Values per image (rows · cols).
  std::size_t features() const noexcept { return rows * cols; }
  /// The `features()` values of image `i` (no bounds check: `i < count`).
  const float* image(std::size_t i) const noexcept { return images.data() + i * features(); }
};

/// Which half of a data set with a fixed train/test split.
enum class split { train, test };

/// Number of classes: the largest label plus one (0 for an empty set).
inline std::size_t class_count(std::span<const std::uint8_t> labels) noexcept {
  std::size_t k = 0;
  for (const std::uint8_t y : labels) k = y + std::size_t{1} > k ? y + std::size_t{1} : k;
  return k;
}

/// Number of samples of each class, indexed by label (size `class_count`).
inline std::vector<std::size_t> label_histogram(std::span<const std::uint8_t> labels) {
  std::vector<std::size_t> h(class_count(labels), 0);
  for (const std::uint8_t y : labels) ++h[y];
  return h;
}

/// Build a `dataset` from the bytes of an IDX image file and an IDX label
/// file (both already decompressed). Untrusted input: nothing is allocated
/// before both headers are validated and their counts agree.
///
/// @param images_bytes  an IDX file with magic 0x00000803
/// @param labels_bytes  an IDX file with magic 0x00000801
/// @param out           replaced on success; unspecified on failure
/// @param images_view   optional: receives the parsed image header (also on
///                      failure, as far as parsing got), for error messages
/// @param labels_view   optional: the same for the label header
/// @return the first failure, or success.
[[nodiscard]] inline status decode_idx(std::span<const std::uint8_t> images_bytes,
                                       std::span<const std::uint8_t> labels_bytes, dataset& out,
                                       const idx_limits& limits = {},
                                       idx_view* images_view = nullptr,
                                       idx_view* labels_view = nullptr) {
  idx_view iv, lv;
  const status si = parse_idx_images(images_bytes, iv, limits);
  if (images_view != nullptr) *images_view = iv;
  TINYLARGE_TRY(si);
  const status sl = parse_idx_labels(labels_bytes, lv, limits);
  if (labels_view != nullptr) *labels_view = lv;
  TINYLARGE_TRY(sl);
  TINYLARGE_CHECK(iv.count() == lv.count(), errc::corrupt,
                  "IDX image and label files hold different numbers of samples");
  out.count = iv.dims[0];
  out.rows = iv.dims[1];
  out.cols = iv.dims[2];
  out.images.resize(iv.payload_bytes);
  // pixel / 255.0f, correctly rounded (as torchvision's ToTensor), via a table.
  float scale[256];
  for (int v = 0; v < 256; ++v) scale[v] = static_cast<float>(v) / 255.0f;
  for (std::size_t i = 0; i < iv.payload_bytes; ++i) out.images[i] = scale[iv.payload[i]];
  out.labels.assign(lv.payload, lv.payload + lv.payload_bytes);
  return status::success();
}

namespace detail {

/// Read a file and gunzip it when it starts with the gzip magic. The
/// decompressed size is bounded by `limits.max_bytes` plus the IDX header
/// of `ndim` dimensions, and by `limits.max_ratio` × the file size
/// (`io::decompression_budget`); the file read itself by the largest
/// compressed file that can hold that much (`io::compressed_file_limit`).
/// A gzip'd file whose IDX header already declares more than that budget is
/// refused after inflating only the header.
/// @throws tl::io_error (unreadable), tl::format_error (bad gzip, too large).
inline std::vector<std::uint8_t> read_maybe_gzip(const std::string& path,
                                                 const idx_limits& limits,
                                                 std::size_t ndim = 3) {
  const std::size_t header = 4 + 4 * ndim;
  const std::size_t max_plain =
      limits.max_bytes > SIZE_MAX - header ? SIZE_MAX : limits.max_bytes + header;
  std::vector<std::uint8_t> raw = io::read_file(path, io::compressed_file_limit(max_plain));
  if (!io::is_gzip(raw)) return raw;
  const std::size_t budget =
      io::decompression_budget(raw.size(), max_plain, limits.max_ratio, limits.ratio_floor);
  // Fail fast on a header that already declares more than the budget: peek
  // at the first 4 + 4·ndim decompressed bytes instead of inflating up to the
  // limit first (a bomb then costs no CPU either). A header that lies (declares
  // little, holds much) is still stopped by the inflation limit below.
  std::uint8_t head[16] = {};
  if (io::detail::gunzip_head(raw, std::span<std::uint8_t>(head, header)) == header &&
      head[0] == 0 && head[1] == 0 && head[2] == 0x08 && head[3] == ndim) {
    std::size_t payload = 1;  // saturating product of the dims
    for (std::size_t d = 0; d < ndim; ++d) {
      const std::size_t dim = std::size_t{head[4 + 4 * d]} << 24 | std::size_t{head[5 + 4 * d]} << 16 |
                              std::size_t{head[6 + 4 * d]} << 8 | std::size_t{head[7 + 4 * d]};
      payload = dim != 0 && payload > SIZE_MAX / dim ? SIZE_MAX : payload * dim;
    }
    const std::size_t declared = payload > SIZE_MAX - header ? SIZE_MAX : payload + header;
    if (declared > budget)
      TINYLARGE_RAISE(errc::too_large,
                      "tinylarge: cannot decompress " + io::detail::quoted(path) + ": its IDX header declares " +
                          std::to_string(declared) + " bytes, more than the limit of " + std::to_string(budget) +
                          " bytes for a " + std::to_string(raw.size()) + "-byte file (idx_limits::max_bytes " +
                          std::to_string(limits.max_bytes) + ", max_ratio " + std::to_string(limits.max_ratio) + ")");
  }
  std::vector<std::uint8_t> plain;
  const status s = io::gunzip(raw, plain, budget);
  if (!s.ok()) {
    std::string m = "tinylarge: cannot decompress " + io::detail::quoted(path) + ": " + s.message;
    if (s.code == errc::too_large)
      m += " (limit " + std::to_string(budget) + " bytes for a " + std::to_string(raw.size()) +
           "-byte file: idx_limits::max_bytes " + std::to_string(limits.max_bytes) +
           ", max_ratio " + std::to_string(limits.max_ratio) + ")";
    TINYLARGE_RAISE(s.code, m);
  }
  return plain;
}

/// "60000 × 28 × 28"
inline std::string dims_text(const idx_view& v) {
  std::string t = std::to_string(v.dims[0]);
  for (std::size_t d = 1; d < v.ndim && d < 3; ++d) t += " x " + std::to_string(v.dims[d]);
  return t;
}

/// Message for a failed parse of `path`, with the facts a user needs.
inline std::string idx_error_text(const std::string& path, const char* kind, status s,
                                  const idx_view& v) {
  std::string m = std::string("tinylarge: invalid IDX ") + kind + " file " +
                  io::detail::quoted(path) + ": " + s.message;
  if (v.magic == idx_labels_magic && std::string(kind) == "image")
    m += " (it is a label file, magic 0x00000801: are the image and label paths swapped?)";
  else if (v.magic == idx_images_magic && std::string(kind) == "label")
    m += " (it is an image file, magic 0x00000803: are the image and label paths swapped?)";
  if (s.code == errc::truncated && v.header_bytes != 0 && v.payload_bytes != 0) {
    m += " (" + dims_text(v) + " = " + std::to_string(v.payload_bytes) + " bytes declared, only " +
         std::to_string(v.available_bytes) + " present after the " +
         std::to_string(v.header_bytes) + "-byte header)";
  } else if (s.code == errc::corrupt && v.available_bytes > v.payload_bytes &&
             v.payload_bytes != 0) {
    m += " (" + std::to_string(v.available_bytes - v.payload_bytes) + " extra bytes after " +
         dims_text(v) + " = " + std::to_string(v.payload_bytes) + " bytes)";
  }
  return m;
}

}  // namespace detail

/// Load an IDX image file and its label file, gzip-compressed (`.gz`) or
/// raw; the format is detected from the content, not the file name.
///
/// @throws tl::io_error     a file is missing or unreadable (the message
///                          names the file and the OS reason);
/// @throws tl::format_error a file is not valid IDX, is truncated, has
///                          trailing bytes or exceeds `limits`, or the two
///                          files hold different numbers of samples.
inline dataset load_idx(const std::string& images_path, const std::string& labels_path,
                        const idx_limits& limits = {}) {
  const std::vector<std::uint8_t> ib = detail::read_maybe_gzip(images_path, limits);
  const std::vector<std::uint8_t> lb = detail::read_maybe_gzip(labels_path, limits, 1);
  dataset ds;
  idx_view iv, lv;
  const status s = decode_idx(ib, lb, ds, limits, &iv, &lv);
  if (!s.ok()) {
    std::string msg;
    if (!parse_idx_images(ib, iv, limits).ok()) {
      msg = detail::idx_error_text(images_path, "image", s, iv);
    } else if (!parse_idx_labels(lb, lv, limits).ok()) {
      msg = detail::idx_error_text(labels_path, "label", s, lv);
    } else {
      msg = "tinylarge: IDX files " + io::detail::quoted(images_path) + " (" +
            std::to_string(iv.count()) + " images) and " + io::detail::quoted(labels_path) + " (" +
            std::to_string(lv.count()) + " labels) hold different numbers of samples";
    }
    TINYLARGE_RAISE(s.code, msg);
  }
  return ds;
}

/// Load Fashion-MNIST (Xiao, Rasul and Vollgraf 2017): 60 000 training or
/// 10 000 test images of 28 × 28 pixels in 10 classes.
///
/// Looks for `{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz` (or the
/// same names without `.gz`) in `dir`; Debian's `dataset-fashion-mnist`
/// package installs them in the default directory. Besides the checks of
/// `load_idx`, verifies that images are 28 × 28 and labels are 0..9.
///
/// @throws tl::io_error when the directory or a file is missing (the message
///         says which, and how to install the package), tl::format_error when
///         a file is malformed.
inline dataset load_fashion_mnist(split s,
                                  const std::string& dir = "/usr/share/datasets/fashion-mnist") {
  const std::string prefix = s == split::train ? "train" : "t10k";
  const std::string install_hint =
      "; install it with 'apt-get install dataset-fashion-mnist' (Debian/Ubuntu) or pass the "
      "directory that holds " +
      prefix + "-images-idx3-ubyte.gz and " + prefix + "-labels-idx1-ubyte.gz";
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec))
    TINYLARGE_RAISE(errc::io_error, "tinylarge: Fashion-MNIST directory " +
                                        io::detail::quoted(dir) + " does not exist" + install_hint);
  auto find = [&](const std::string& stem) {
    const std::string base = dir + "/" + stem;
    if (io::file_readable(base + ".gz")) return base + ".gz";
    if (io::file_readable(base)) return base;
    TINYLARGE_RAISE(errc::io_error, "tinylarge: Fashion-MNIST file " +
                                        io::detail::quoted(base + ".gz") + " not found (nor " +
                                        io::detail::quoted(base) + ")" + install_hint);
  };
  const std::string images_path = find(prefix + "-images-idx3-ubyte");
  const std::string labels_path = find(prefix + "-labels-idx1-ubyte");
  dataset ds = load_idx(images_path, labels_path);
  if (ds.rows != 28 || ds.cols != 28)
    TINYLARGE_RAISE(errc::corrupt, "tinylarge: " + io::detail::quoted(images_path) +
                                       " holds images of " + std::to_string(ds.rows) + " x " +
                                       std::to_string(ds.cols) +
                                       " pixels; Fashion-MNIST images are 28 x 28");
  for (std::size_t i = 0; i < ds.count; ++i)
    if (ds.labels[i] > 9)
      TINYLARGE_RAISE(errc::corrupt, "tinylarge: " + io::detail::quoted(labels_path) +
                                         " holds label " + std::to_string(ds.labels[i]) +
                                         " at index " + std::to_string(i) +
                                         "; Fashion-MNIST labels are 0..9");
  return ds;
}

}  // namespace tinylarge::data
