// Tests of the compressed model file (compress/model_file.hpp) and the C-header exporter
// (compress/c_export.hpp).
//
// Round trips run the compressed kernels on the views the reader returns and compare them
// with the scalar dense kernel on the original matrices (exactly where the kernels promise
// bit-exactness). Robustness: every truncation and every single-bit flip of a small
// three-layer file is rejected; with the CRCs bypassed (or recomputed after a mutation)
// structural validation rejects bad fields by name, and every mutant that is accepted yields
// views the kernels can run on (this file runs under ASan/UBSan in scripts/test.sh).

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include "data/child_process.hpp"
#include "fuzz/model_file_samples.hpp"
#include "tinylarge/compress/c_export.hpp"
#include "tinylarge/compress/int8_model.hpp"
#include "tinylarge/compress/kernels.hpp"
#include "tinylarge/compress/model_file.hpp"
#include "tinylarge/core/crc32.hpp"
#include "tinylarge/kernels/conv.hpp"
#include "tinylarge/kernels/dense.hpp"
#include "tinylarge/nn/nn.hpp"

namespace c = tinylarge::compress;
namespace S = model_file_samples;
using tinylarge::errc;
using tinylarge::status;

namespace {

/// An 8-byte aligned copy of a file (the reader requires the alignment views need).
struct aligned_bytes {
  std::vector<std::uint64_t> storage;
  std::size_t size = 0;
  explicit aligned_bytes(const std::vector<std::uint8_t>& b, std::size_t n = SIZE_MAX)
      : storage((std::min(n, b.size()) + 8) / 8), size(std::min(n, b.size())) {
    if (size) std::memcpy(storage.data(), b.data(), size);
  }
  const std::uint8_t* data() const { return reinterpret_cast<const std::uint8_t*>(storage.data()); }
};

std::uint32_t le32(const std::vector<std::uint8_t>& b, std::size_t at) {
  return static_cast<std::uint32_t>(b[at]) | static_cast<std::uint32_t>(b[at + 1]) << 8 |
         static_cast<std::uint32_t>(b[at + 2]) << 16 | static_cast<std::uint32_t>(b[at + 3]) << 24;
}
void put32(std::vector<std::uint8_t>& b, std::size_t at, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) b[at + static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(v >> (8 * i));
}

/// File offsets of the sections (walking the length fields of a valid file).
std::vector<std::size_t> section_offsets(const std::vector<std::uint8_t>& b) {
  std::vector<std::size_t> off;
  std::size_t at = le32(b, 24);
  for (std::uint32_t i = 0; i < le32(b, 12); ++i) {
    off.push_back(at);
    at += le32(b, at + 4);
  }
  return off;
}

/// Marks the bytes of a valid file that hold nothing but mantissa bits of fp32 / fp16 array
/// values (the two low bytes of an fp32, the low byte of an fp16): any flip there turns a
/// finite value into another finite value of the same sign, which no check can tell from the
/// original, so one flipped bit per such byte covers them (every other byte: every bit).
std::vector<bool> mantissa_only_bytes(const std::vector<std::uint8_t>& b) {
  std::vector<bool> m(b.size(), false);
  for (const std::size_t sec : section_offsets(b)) {
    const std::size_t arrays = b[sec + 15];
    for (std::size_t a = 0; a < arrays; ++a) {
      const std::size_t e = sec + 48 + 16 * a;
      const auto dtype = static_cast<c::array_dtype>(b[e + 1]);
      const std::size_t at = sec + le32(b, e + 4), bytes = le32(b, e + 8);
      REQUIRE(at + bytes <= b.size());
      if (dtype == c::array_dtype::f32)
        for (std::size_t i = 0; i + 4 <= bytes; i += 4) m[at + i] = m[at + i + 1] = true;
      else if (dtype == c::array_dtype::f16)
        for (std::size_t i = 0; i + 2 <= bytes; i += 2) m[at + i] = true;
    }
  }
  return m;
}

/// Recomputes the header CRC and every section CRC (using the length fields as they are),
/// so that a mutation reaches the structural checks behind the CRCs.
void recrc(std::vector<std::uint8_t>& b) {
  const std::size_t hsize = le32(b, 24);
  if (b.size() < 32 || hsize < 32 || hsize > b.size()) return;
  std::uint32_t h = tinylarge::crc32(b.data(), 28);
  h = tinylarge::crc32(b.data() + 32, hsize - 32, h);
  put32(b, 28, h);
  std::size_t at = hsize;
  for (std::uint32_t i = 0; i < le32(b, 12) && at + 12 <= b.size(); ++i) {
    const std::size_t len = le32(b, at + 4);
    if (len < 12 || len > b.size() - at) return;
    std::uint32_t s = tinylarge::crc32(b.data() + at, 8);
    s = tinylarge::crc32(b.data() + at + 12, len - 12, s);
    put32(b, at + 8, s);
    at += len;
  }
}

/// Offset of the descriptor of array `role` in the section at `sec`.
std::size_t array_entry(const std::vector<std::uint8_t>& b, std::size_t sec, c::array_role role) {
  const std::size_t n = b[sec + 15];
  for (std::size_t a = 0; a < n; ++a) {
    const std::size_t e = sec + 48 + 16 * a;
    if (b[e] == static_cast<std::uint8_t>(role)) return e;
  }
  FAIL("array role not found");
  return 0;
}

/// Runs the layer's kernel on `x` (one sample) with the view's compressed form; fp32 formats.
std::vector<float> run(const c::layer_view& v, const std::vector<float>& x) {
  using tinylarge::arch::scalar;
  std::vector<float> y(v.rows), scratch(v.factored.rank + 1);
  switch (v.format) {
    case c::weight_format::dense_f32:
      tinylarge::kernels::dense_f32(scalar{}, 1, v.rows, v.cols, x.data(), v.dense, v.bias, y.data());
      break;
    case c::weight_format::dense_f16:
      tinylarge::kernels::dense_f16(scalar{}, 1, v.rows, v.cols, x.data(), v.dense_half, v.bias, y.data());
      break;
    case c::weight_format::csr_f32: c::sparse_dense_f32(scalar{}, 1, v.csr, x.data(), v.bias, y.data()); break;
    case c::weight_format::csr_codebook:
      c::sparse_dense_f32(scalar{}, 1, v.csr_codebook, x.data(), v.bias, y.data());
      break;
    case c::weight_format::codebook: c::codebook_dense_f32(scalar{}, 1, v.codebook, x.data(), v.bias, y.data()); break;
    case c::weight_format::factored:
      c::factored_dense_f32(scalar{}, 1, v.factored, x.data(), v.bias, scratch.data(), y.data());
      break;
    case c::weight_format::none:
    case c::weight_format::int8:
    case c::weight_format::int8_csr:
    case c::weight_format::int8_codebook:
    case c::weight_format::int8_huffman_codebook: FAIL("int8 layer in run()"); break;
  }
  return y;
}

/// Touches every array of a view through the kernels (ASan finds any out-of-bounds view).
void exercise(const c::layer_view& v) {
  if (v.kind == c::layer_kind::add) {
    REQUIRE(v.add.size == v.rows);
    std::vector<std::int8_t> x1(v.rows, 1), x2(v.rows, -3), y(v.rows);
    tinylarge::kernels::add_s8(tinylarge::arch::scalar{}, v.rows, x1.data(), x2.data(), v.add.params(), y.data());
    return;
  }
  if (v.format == c::weight_format::int8) {
    std::vector<std::int8_t> x(v.cols, 1), y(v.rows);
    tinylarge::kernels::dense_s8(tinylarge::arch::scalar{}, 1, v.rows, v.cols, x.data(), v.int8.weights,
                                 v.s8_params(), y.data());
    return;
  }
  if (v.format == c::weight_format::int8_csr) {
    std::vector<std::int8_t> x(v.cols, 1), y(v.rows);
    const tinylarge::kernels::csr_s8_matrix w{v.rows, v.cols, v.csr_s8.row_ptr, v.csr_s8.gaps, v.csr_s8.values.values};
    tinylarge::kernels::sparse_dense_s8(1, w, x.data(), v.s8_params(), y.data());
    return;
  }
  if (v.format == c::weight_format::int8_codebook) {
    std::vector<std::int8_t> x(v.cols, 1), y(v.rows);
    tinylarge::kernels::codebook_dense_s8(1, v.codebook_s8, x.data(), v.s8_params(), y.data());
    return;
  }
  if (v.format == c::weight_format::int8_huffman_codebook) {
    std::vector<std::int8_t> x(v.cols, 1), y(v.rows), row(v.cols);
    static tinylarge::kernels::huffman_s8_decoder dec;
    tinylarge::kernels::huffman_codebook_s8_matrix w{v.rows, v.cols, nullptr, 0, v.huffman_s8.row_bits,
                                                     v.huffman_s8.codebook, nullptr};
    REQUIRE(tinylarge::kernels::huffman_s8_prepare(v.huffman_s8.stream, v.huffman_s8.stream_bytes, dec, w).ok());
    tinylarge::kernels::huffman_dense_s8(tinylarge::arch::scalar{}, w, x.data(), v.s8_params(), y.data(), row.data());
    return;
  }
  (void)run(v, std::vector<float>(v.cols, 0.5f));
}

std::string read_text(const std::filesystem::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

}  // namespace

// ---------------------------------------------------------------------------
// Round trips
// ---------------------------------------------------------------------------

TEST_CASE("model file: every weight format round-trips and runs on the compressed views", "[model_file]") {
  const S::sample s = S::every_format();
  const c::model_file m = c::model_file::from_bytes(s.bytes);
  REQUIRE(m.layer_count() == 13);
  REQUIRE(m.info().major == 1);
  REQUIRE(m.info().minor == 0);
  const auto x = S::gaussian(40, 1234);
  for (std::size_t i = 0; i < m.layer_count(); ++i) {
    INFO("layer " << i);
    const c::layer_view& v = m.layer(i);
    REQUIRE(v.in_place());  // model_file decoded the coded layers
    if (v.format == c::weight_format::int8) {
      // Same int8 kernel and parameters as computed from the quantized matrix here.
      const S::int8_matrix& q = s.int8;
      std::vector<std::int32_t> mult(v.rows);
      std::vector<int> shift(v.rows);
      for (std::size_t o = 0; o < v.rows; ++o) {
        const auto qm = tinylarge::quantize_multiplier(static_cast<double>(q.input.scale) * q.scales[o] /
                                                       static_cast<double>(q.output.scale));
        mult[o] = qm.multiplier;
        shift[o] = qm.shift;
      }
      tinylarge::kernels::dense_s8_params p;
      p.input_zero_point = q.input.zero_point;
      p.output_zero_point = q.output.zero_point;
      p.multipliers = mult.data();
      p.shifts = shift.data();
      p.per_channel = true;
      p.bias = q.bias.data();
      p.act_min = static_cast<std::int8_t>(q.output.zero_point);  // relu6 lower end
      p.act_max = static_cast<std::int8_t>(q.output.zero_point + 60);  // 6 / 0.1
      std::vector<std::int8_t> xq(v.cols), y_ref(v.rows), y(v.rows);
      for (std::size_t k = 0; k < v.cols; ++k) xq[k] = tinylarge::quantize(x[k], q.input);
      tinylarge::kernels::dense_s8(tinylarge::arch::scalar{}, 1, v.rows, v.cols, xq.data(), q.q.data(), p,
                                   y_ref.data());
      tinylarge::kernels::dense_s8(tinylarge::arch::scalar{}, 1, v.rows, v.cols, xq.data(), v.int8.weights,
                                   v.s8_params(), y.data());
      CHECK(y == y_ref);
      CHECK(v.int8.act_min == p.act_min);
      CHECK(v.int8.act_max == p.act_max);
      CHECK(v.activation == c::activation_kind::relu6);
      continue;
    }
    const std::vector<float>& w = s.dense[i];
    REQUIRE(w.size() == v.rows * v.cols);
    std::vector<float> xi(x.begin(), x.begin() + static_cast<std::ptrdiff_t>(v.cols)), y_ref(v.rows);
    const float* bias = s.bias[i].empty() ? nullptr : s.bias[i].data();
    CHECK((v.bias == nullptr) == (bias == nullptr));
    tinylarge::kernels::dense_f32(tinylarge::arch::scalar{}, 1, v.rows, v.cols, xi.data(), w.data(), bias,
                                  y_ref.data());
    const std::vector<float> y = run(v, xi);
    if (v.format == c::weight_format::factored) {
      for (std::size_t o = 0; o < v.rows; ++o) CHECK(y[o] == Approx(y_ref[o]).margin(1e-4));
    } else {
      CHECK(y == y_ref);  // bit-exact: same products, same order (compress/kernels.hpp)
    }
  }
  CHECK(m.layer(0).activation == c::activation_kind::relu);
  CHECK(m.layer(10).kind == c::layer_kind::conv2d);
  CHECK(m.layer(10).conv.kernel_h == 3);
  CHECK(m.layer(10).conv.in_channels == 2);
  CHECK(m.layer(7).codebook.bits == 3);  // in place: packed in the file
  CHECK(m.layer(8).codebook.bits == 8);  // decoded: one byte per index
}

TEST_CASE("model file: the freestanding reader gives views into the span and decodes coded layers", "[model_file]") {
  const S::sample s = S::every_format();
  c::model_file_reader r;
  aligned_bytes keep(s.bytes);
  REQUIRE(r.open(keep.data(), keep.size).ok());
  REQUIRE(r.layer_count() == 13);
  const std::uint8_t* lo = keep.data();
  const std::uint8_t* hi = lo + keep.size;
  const auto inside = [&](const void* p) {
    const auto* b = static_cast<const std::uint8_t*>(p);
    return b >= lo && b < hi && reinterpret_cast<std::uintptr_t>(b) % 4 == 0;
  };
  c::layer_view v;
  REQUIRE(r.layer(0, v).ok());
  CHECK(inside(v.dense));
  CHECK(inside(v.bias));
  REQUIRE(r.layer(3, v).ok());
  CHECK(v.in_place());
  CHECK(inside(v.csr.row_ptr));
  CHECK(inside(v.csr.values.values));
  // Coded layers: decode_bytes says how much buffer; too small a buffer is refused.
  REQUIRE(r.layer(5, v).ok());
  CHECK_FALSE(v.in_place());
  CHECK(v.csr_codebook.gaps == nullptr);
  std::vector<std::uint8_t> buf(v.decode_bytes);
  CHECK(r.decode_layer(5, buf.data(), buf.size() - 1, v).code == errc::capacity_exceeded);
  REQUIRE(r.decode_layer(5, buf.data(), buf.size(), v).ok());
  CHECK(v.in_place());
  CHECK(v.csr_codebook.gaps == buf.data());
  CHECK(inside(v.csr_codebook.row_ptr));
  CHECK(inside(v.csr_codebook.values.centroids));
  // Gaps in place, indices Huffman-coded: only the indices go to the buffer.
  REQUIRE(r.layer(12, v).ok());
  CHECK(v.decode_bytes == v.csr_codebook.row_ptr[v.rows]);
  std::vector<std::uint8_t> buf12(v.decode_bytes);
  REQUIRE(r.decode_layer(12, buf12.data(), buf12.size(), v).ok());
  CHECK(inside(v.csr_codebook.gaps));  // in the file
  CHECK(v.csr_codebook.values.indices == buf12.data());
  // An in-place layer through decode_layer is just the view.
  c::layer_view w;
  REQUIRE(r.decode_layer(0, nullptr, 0, w).ok());
  CHECK(w.dense != nullptr);
  CHECK(r.layer(13, v).code == errc::invalid_argument);
  // Unaligned buffer: refused (views would be misaligned).
  std::vector<std::uint8_t> shifted(s.bytes.size() + 8);
  std::uint8_t* base = shifted.data();
  while (reinterpret_cast<std::uintptr_t>(base) % 8 != 1) ++base;
  std::memcpy(base, s.bytes.data(), s.bytes.size());
  CHECK(r.open(base, s.bytes.size()).code == errc::invalid_argument);
  CHECK_FALSE(r.is_open());
}

TEST_CASE("model file: the writer is byte-for-byte deterministic and the layout is as documented", "[model_file]") {
  const auto a = S::every_format().bytes;
  const auto b = S::every_format().bytes;
  CHECK(a == b);
  REQUIRE(a.size() % 8 == 0);
  CHECK(std::memcmp(a.data(), "TLMF", 4) == 0);
  CHECK(le32(a, 4) == 1);           // major 1, minor 0
  CHECK(le32(a, 12) == 13);         // layers
  CHECK(le32(a, 16) == a.size());   // total size (low word)
  CHECK(le32(a, 24) == 32);         // header size
  CHECK(le32(a, 28) == tinylarge::crc32(a.data(), 28));
  CHECK(std::memcmp(a.data() + a.size() - 8, "TEND", 4) == 0);
  for (std::size_t off : section_offsets(a)) {
    CHECK(off % 8 == 0);
    CHECK(std::memcmp(a.data() + off, "TLLY", 4) == 0);
    const std::size_t n = a[off + 15];
    for (std::size_t k = 0; k < n; ++k) CHECK(le32(a, off + 48 + 16 * k + 4) % 8 == 0);
  }
}

TEST_CASE("model file: atomic write and load from a path; I/O errors name the file", "[model_file]") {
  const auto dir = std::filesystem::temp_directory_path() / "tinylarge_test_model_file";
  std::filesystem::create_directories(dir);
  const std::string path = (dir / "m.tlmf").string();
  c::model_file_builder b;
  const auto w = S::gaussian(6, 3);
  b.add_dense_f32(2, 3, w);
  b.write(path);
  CHECK_FALSE(std::filesystem::exists(path + ".tmp"));
  const c::model_file m = c::load_model_file(path);
  REQUIRE(m.layer_count() == 1);
  CHECK(m.layer(0).dense[5] == w[5]);
#if TINYLARGE_HAS_EXCEPTIONS
  try {
    (void)c::load_model_file((dir / "missing.tlmf").string());
    FAIL("no exception");
  } catch (const tinylarge::io_error& e) {
    CHECK(std::string(e.what()).find("missing.tlmf") != std::string::npos);
  }
  // Oversized file: refused by the size limit before it is read whole.
  c::model_file_options small;
  small.limits.max_file_bytes = 64;
  REQUIRE_THROWS_AS(c::load_model_file(path, small), tinylarge::format_error);
  // Corrupt file on disk: format_error naming the file and the layer.
  auto bytes = b.bytes();
  bytes[section_offsets(bytes)[0] + 60] ^= 1;
  {
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  }
  try {
    (void)c::load_model_file(path);
    FAIL("no exception");
  } catch (const tinylarge::format_error& e) {
    const std::string what = e.what();
    CHECK(e.code() == errc::checksum_mismatch);
    CHECK(what.find("m.tlmf") != std::string::npos);
    CHECK(what.find("layer 0") != std::string::npos);
    CHECK(what.find("CRC") != std::string::npos);
  }
#endif
  std::filesystem::remove_all(dir);
}

TEST_CASE("model file: the builder refuses what the reader would refuse", "[model_file]") {
#if TINYLARGE_HAS_EXCEPTIONS
  c::model_file_builder b;
  std::vector<float> w(6, 1.0f);
  w[4] = std::nanf("");
  REQUIRE_THROWS_AS(b.add_dense_f32(2, 3, w), tinylarge::numeric_error);
  REQUIRE_THROWS_AS(b.add_dense_f32(2, 4, std::vector<float>(6)), tinylarge::shape_error);
  c::layer_options conv;
  conv.kind = c::layer_kind::conv2d;
  conv.conv = {2, 3, 3, 1, 1, 0, 0, 1};
  REQUIRE_THROWS(b.add_dense_f32(2, 17, std::vector<float>(34), {}, conv));
  const std::vector<std::int8_t> q = {1, -128, 3, 4};
  REQUIRE_THROWS(b.add_int8(2, 2, q, std::vector<float>{0.1f, 0.2f}, {0.1f, 0}, {0.1f, 0}));
  CHECK(b.layer_count() == 0);
#endif
}

// ---------------------------------------------------------------------------
// Robustness
// ---------------------------------------------------------------------------

TEST_CASE("model file: every truncation of a small multi-layer file is an error", "[model_file][robustness]") {
  const auto file = S::small();
  REQUIRE(file.size() < 1024);
  c::model_file_reader r;
  {
    aligned_bytes full(file);
    REQUIRE(r.open(full.data(), full.size).ok());
  }
  for (std::size_t n = 0; n < file.size(); ++n) {
    aligned_bytes cut(file, n);
    const status s = r.open(cut.data(), cut.size);
    INFO("length " << n);
    REQUIRE_FALSE(s.ok());
    CHECK((s.code == errc::truncated || n < 4));  // "shorter than its declared total size"
  }
  // The same cuts with the total size patched to the cut length (and CRCs recomputed):
  // the structural checks of the sections and the end marker still reject every one.
  c::model_file_options nocrc;
  nocrc.verify_crc = false;
  for (std::size_t n = 32; n < file.size(); n += 1) {
    std::vector<std::uint8_t> cut(file.begin(), file.begin() + static_cast<std::ptrdiff_t>(n));
    put32(cut, 16, static_cast<std::uint32_t>(n));
    aligned_bytes a(cut);
    INFO("patched length " << n);
    REQUIRE_FALSE(r.open(a.data(), a.size, nocrc).ok());
  }
}

TEST_CASE("model file: every single-bit flip is detected", "[model_file][robustness]") {
  const auto file = S::small();
  c::model_file_reader r;
  std::size_t by_crc = 0;
  for (std::size_t bit = 0; bit < file.size() * 8; ++bit) {
    auto m = file;
    m[bit / 8] ^= static_cast<std::uint8_t>(1u << (bit % 8));
    aligned_bytes a(m);
    const status s = r.open(a.data(), a.size);
    INFO("bit " << bit << ": " << s.message);
    REQUIRE_FALSE(s.ok());
    by_crc += s.code == errc::checksum_mismatch;
  }
  // Most flips are caught by a CRC; the rest by a field check (magic, version, size...).
  CHECK(by_crc > file.size() * 8 * 3 / 4);
}

TEST_CASE("model file: with CRCs bypassed, bit flips never crash and accepted mutants run", "[model_file][robustness]") {
  c::model_file_options nocrc;
  nocrc.verify_crc = false;
  for (const auto& file : {S::small(), S::every_format().bytes}) {
    std::size_t rejected = 0, accepted = 0;
    const std::vector<bool> mantissa = mantissa_only_bytes(file);
    REQUIRE(std::count(mantissa.begin(), mantissa.end(), true) > 0);
    for (std::size_t bit = 0; bit < file.size() * 8; ++bit) {
      // Mantissa-only bytes: one bit each, rotating through the 8 positions.
      if (mantissa[bit / 8] && bit % 8 != (bit / 8) % 8) continue;
      auto m = file;
      m[bit / 8] ^= static_cast<std::uint8_t>(1u << (bit % 8));
      aligned_bytes a(m);
      c::model_file_reader r;
      const status s = r.open(a.data(), a.size, nocrc);
      if (!s) {
        CHECK(std::strlen(s.message) > 10);
        ++rejected;
        continue;
      }
      bool all_ok = true;
      for (std::size_t i = 0; i < r.layer_count(); ++i) {
        c::layer_view v;
        REQUIRE(r.layer(i, v).ok());
        std::vector<std::uint8_t> buf(v.decode_bytes);
        if (!r.decode_layer(i, buf.data(), buf.size(), v)) {
          all_ok = false;
          continue;
        }
        exercise(v);  // ASan: views stay inside the buffers
      }
      ++accepted;
      (void)all_ok;
    }
    INFO("rejected " << rejected << ", accepted " << accepted);
    // Values (weights, bias, scales) are unchecked numbers: flips there are accepted. The
    // header, descriptors and structure are not.
    CHECK(rejected > 0);
    CHECK(accepted > 0);
  }
}

namespace {
/// Applies `mutate` to a copy of the every-format file, recomputes the CRCs, and returns
/// the reader's status (decoding layer `decode` when the open succeeds).
status mutated(const std::function<void(std::vector<std::uint8_t>&, const std::vector<std::size_t>&)>& mutate,
               std::size_t decode = SIZE_MAX, c::model_file_options opt = {}) {
  auto b = S::every_format().bytes;
  mutate(b, section_offsets(b));
  recrc(b);
  aligned_bytes a(b);
  c::model_file_reader r;
  status s = r.open(a.data(), a.size, opt);
  if (s && decode != SIZE_MAX) {
    c::layer_view v;
    s = r.layer(decode, v);
    std::vector<std::uint8_t> buf(v.decode_bytes + 1);
    if (s) s = r.decode_layer(decode, buf.data(), buf.size(), v);
  }
  return s;
}
bool says(const status& s, const char* part) { return std::string(s.message).find(part) != std::string::npos; }
}  // namespace

TEST_CASE("model file: structural validation behind the CRCs names each bad field", "[model_file][robustness]") {
  using R = c::array_role;
  // Sanity: recomputing the CRCs of an unmodified file changes nothing.
  REQUIRE(mutated([](auto&, const auto&) {}).ok());

  SECTION("enums") {
    auto s = mutated([](auto& b, const auto& o) { b[o[0] + 14] = 11; });
    CHECK(s.code == errc::corrupt);
    CHECK(says(s, "unknown weight format"));
    s = mutated([](auto& b, const auto& o) { b[o[0] + 13] = 6; });
    CHECK(says(s, "unknown activation"));
    s = mutated([](auto& b, const auto& o) { b[o[0] + 12] = 4; });
    CHECK(says(s, "unknown layer kind"));
    s = mutated([](auto& b, const auto& o) { b[o[0] + 12] = 3; });  // add (1.4) in a 1.0 file
    CHECK(s.code == errc::corrupt);
    CHECK(says(s, "it needs 1.4"));
    s = mutated([](auto& b, const auto& o) { b[array_entry(b, o[0], R::weights) + 1] = 7; });
    CHECK(says(s, "unknown array element type"));
    s = mutated([](auto& b, const auto& o) { b[array_entry(b, o[0], R::weights)] = 16; });
    CHECK(says(s, "unknown array role"));
    s = mutated([](auto& b, const auto& o) { b[array_entry(b, o[5], R::gaps) + 2] = 3; });
    CHECK(says(s, "unknown symbol encoding"));
  }
  SECTION("sizes, offsets, alignment") {
    auto s = mutated([](auto& b, const auto& o) { put32(b, array_entry(b, o[0], R::weights) + 4, 4 + le32(b, array_entry(b, o[0], R::weights) + 4)); });
    CHECK(says(s, "not 8-byte aligned"));
    s = mutated([](auto& b, const auto& o) { put32(b, array_entry(b, o[0], R::weights) + 8, 0xFFFFFF00u); });
    CHECK(says(s, "runs past its section"));
    s = mutated([](auto& b, const auto& o) { put32(b, array_entry(b, o[0], R::weights) + 12, 479); });
    CHECK(says(s, "count·element size"));
    s = mutated([](auto& b, const auto& o) { put32(b, o[0] + 16, 13); });  // rows 12 → 13
    CHECK(s.code == errc::corrupt);
    CHECK(says(s, "a bias must be f32, one per row"));  // the first array checked
    s = mutated([](auto& b, const auto& o) { put32(b, o[1] + 20, 41); });  // fp16 layer, no bias: cols 40 → 41
    CHECK(says(s, "dense fp16 weights must be f16, rows·cols"));
    s = mutated([](auto& b, const auto& o) { put32(b, o[0] + 4, le32(b, o[0] + 4) + 8); });
    CHECK_FALSE(s.ok());
    s = mutated([](auto& b, const auto& o) { put32(b, o[0] + 20, 0); });
    CHECK(says(s, "zero rows or columns"));
    s = mutated([](auto& b, const auto& o) { b[o[0] + 15] = 17; });
    CHECK(says(s, "more than 16 arrays"));
    // Overlap: the bias descriptor points back into the weights.
    s = mutated([](auto& b, const auto& o) {
      put32(b, array_entry(b, o[0], R::bias) + 4, le32(b, array_entry(b, o[0], R::weights) + 4) + 8);
    });
    CHECK(says(s, "overlap"));
  }
  SECTION("CSR row offsets and gaps") {
    // Layer 3 (CSR fp32, gaps in place): make row_ptr[1] larger than row_ptr[2].
    auto s = mutated([](auto& b, const auto& o) {
      const std::size_t rp = o[3] + le32(b, array_entry(b, o[3], R::row_ptr) + 4);
      put32(b, rp + 4, le32(b, rp + 8) + 1);
    });
    CHECK(s.code == errc::corrupt);
    CHECK(says(s, "row offsets decrease"));
    s = mutated([](auto& b, const auto& o) {
      const std::size_t rp = o[3] + le32(b, array_entry(b, o[3], R::row_ptr) + 4);
      put32(b, rp, 1);
    });
    CHECK(says(s, "first CSR row offset"));
    // A gap that walks past the row width (all gaps at their maximum, 7).
    s = mutated([](auto& b, const auto& o) {
      const std::size_t e = array_entry(b, o[3], R::gaps);
      for (std::size_t k = 0; k < le32(b, e + 8); ++k) b[o[3] + le32(b, e + 4) + k] = 7;
    });
    CHECK(says(s, "column index is out of range"));
    s = mutated([](auto& b, const auto& o) {
      const std::size_t e = array_entry(b, o[3], R::gaps);
      b[o[3] + le32(b, e + 4)] = 8;  // above 2^3 − 1
    });
    CHECK(says(s, "gap does not fit"));
    // Layer 5 (Huffman gaps): over-subscribed code lengths.
    s = mutated([](auto& b, const auto& o) {
      const std::size_t e = array_entry(b, o[5], R::gaps);
      std::uint8_t* stream = b.data() + o[5] + le32(b, e + 4);
      for (std::size_t k = 3; k < 3 + 4; ++k) stream[k] = 0x11;  // many codes of length 1
    });
    CHECK(s.code == errc::corrupt);
    // Huffman symbol count differing from the descriptor.
    s = mutated([](auto& b, const auto& o) { put32(b, array_entry(b, o[5], R::gaps) + 12, le32(b, array_entry(b, o[5], R::gaps) + 12) + 1); });
    CHECK_FALSE(s.ok());
  }
  SECTION("codebook indices below k") {
    // Layer 6: CSR codebook in place, k = 16 with 4-bit indices: declare k = 5.
    auto s = mutated([](auto& b, const auto& o) { put32(b, o[6] + 24, 5); });
    CHECK_FALSE(s.ok());
    // Layer 7: packed codebook, 3 bits, k = 8: set k = 2 (indices up to 7 exist).
    s = mutated([](auto& b, const auto& o) { put32(b, o[7] + 24, 2); });
    CHECK_FALSE(s.ok());
    s = mutated([](auto& b, const auto& o) { put32(b, o[7] + 24, 9); });
    CHECK(says(s, "k must be in [1, 2^bits]"));
    // Layer 8 (Huffman-coded): only the decoded symbols show it, at decode time.
    s = mutated([](auto& b, const auto& o) { put32(b, o[8] + 24, 2); }, 8);
    CHECK_FALSE(s.ok());
  }
  SECTION("values: NaN, scales, int8 ranges") {
    auto s = mutated([](auto& b, const auto& o) { put32(b, o[0] + le32(b, array_entry(b, o[0], R::weights) + 4), 0x7FC00000u); });
    CHECK(s.code == errc::non_finite);
    c::model_file_options lax;
    lax.require_finite = false;
    s = mutated([](auto& b, const auto& o) { put32(b, o[0] + le32(b, array_entry(b, o[0], R::weights) + 4), 0x7FC00000u); },
                SIZE_MAX, lax);
    CHECK(s.ok());
    s = mutated([](auto& b, const auto& o) { put32(b, o[2] + le32(b, array_entry(b, o[2], R::weight_scales) + 4), 0xBF800000u); });
    CHECK(says(s, "weight scales must be positive"));
    s = mutated([](auto& b, const auto& o) { b[o[2] + le32(b, array_entry(b, o[2], R::weights) + 4)] = 0x80; });
    CHECK(says(s, "-128"));
    s = mutated([](auto& b, const auto& o) { put32(b, o[2] + le32(b, array_entry(b, o[2], R::multipliers) + 4), 5); });
    CHECK(says(s, "multiplier"));
    s = mutated([](auto& b, const auto& o) { put32(b, o[2] + le32(b, array_entry(b, o[2], R::shifts) + 4), 40); });
    CHECK(says(s, "shift"));
    s = mutated([](auto& b, const auto& o) { put32(b, o[2] + le32(b, array_entry(b, o[2], R::zero_points) + 4), 300); });
    CHECK(says(s, "zero points"));
  }
  SECTION("shape: conv2d geometry, factored rank, format-foreign arrays") {
    auto s = mutated([](auto& b, const auto& o) { b[o[10] + 34] = 4; });  // kernel_h 3 → 4
    CHECK(s.code == errc::corrupt);
    CHECK(says(s, "conv2d cols differ"));
    s = mutated([](auto& b, const auto& o) { b[o[0] + 32] = 1; });  // dense with geometry
    CHECK(says(s, "dense or add layer has conv2d geometry"));
    s = mutated([](auto& b, const auto& o) { put32(b, o[9] + 24, 13); });
    CHECK(says(s, "rank"));
    s = mutated([](auto& b, const auto& o) { b[array_entry(b, o[0], R::bias)] = static_cast<std::uint8_t>(R::left); });
    CHECK(says(s, "does not use"));
    s = mutated([](auto& b, const auto& o) { b[o[0] + 28] = 3; });  // bits on a dense layer
    CHECK(says(s, "index bits set"));
  }
  SECTION("padding and end marker") {
    auto s = mutated([](auto& b, const auto&) { b[b.size() - 8] = 'X'; });
    CHECK(says(s, "end marker"));
    s = mutated([](auto& b, const auto&) { put32(b, b.size() - 4, 11); });
    CHECK(says(s, "end marker's layer count"));
    // Layer 3's row offsets are 13·4 = 52 bytes: 4 bytes of padding follow them.
    s = mutated([](auto& b, const auto& o) { b[o[3] + le32(b, array_entry(b, o[3], c::array_role::row_ptr) + 4) + 52] = 1; });
    CHECK(says(s, "non-zero padding"));
  }
}

TEST_CASE("model file: version policy", "[model_file][version]") {
  SECTION("a newer major version is refused, naming both versions") {
    auto b = S::small();
    b[4] = 2;  // major 2
    recrc(b);
    aligned_bytes a(b);
    c::model_file_reader r;
    const status s = r.open(a.data(), a.size);
    CHECK(s.code == errc::unsupported_version);
    CHECK(r.info().major == 2);
    CHECK(says(s, "newer"));
#if TINYLARGE_HAS_EXCEPTIONS
    try {
      (void)c::model_file::from_bytes(b, {}, "net.tlmf");
      FAIL("no exception");
    } catch (const tinylarge::format_error& e) {
      CHECK(e.code() == errc::unsupported_version);
      CHECK(std::string(e.what()) ==
            "tinylarge: model file 'net.tlmf': format version 2.0 is not supported by this reader (format version 1.4)");
    }
#endif
    b[4] = 0;  // major 0
    recrc(b);
    aligned_bytes z(b);
    CHECK(r.open(z.data(), z.size).code == errc::unsupported_version);
  }
  SECTION("a newer minor version may extend the header and add flags and arrays") {
    auto b = S::small();
    b[6] = static_cast<std::uint8_t>(c::model_file_layout::version_minor + 1);  // a minor version newer than the reader's
    put32(b, 8, 0x10);  // a flag this reader does not know
    // Extend the header by 8 bytes of optional fields: insert after byte 32.
    b.insert(b.begin() + 32, 8, std::uint8_t{0xAB});
    put32(b, 24, 40);
    put32(b, 16, static_cast<std::uint32_t>(b.size()));
    recrc(b);
    aligned_bytes a(b);
    c::model_file_reader r;
    REQUIRE(r.open(a.data(), a.size).ok());
    CHECK(r.info().minor == c::model_file_layout::version_minor + 1);
    CHECK(r.layer_count() == 3);
    // The same things in a 1.0 file are corrupt.
    b[6] = 0;
    recrc(b);
    aligned_bytes z(b);
    CHECK(r.open(z.data(), z.size).code == errc::corrupt);
  }
  SECTION("unknown array roles: skipped in a newer minor version, corrupt otherwise") {
    auto b = S::every_format().bytes;
    const auto o = section_offsets(b);
    b[array_entry(b, o[0], c::array_role::bias)] = 200;  // unknown role: layer 0 loses its bias
    recrc(b);
    aligned_bytes z(b);
    c::model_file_reader r;
    CHECK(r.open(z.data(), z.size).code == errc::corrupt);
    b[6] = static_cast<std::uint8_t>(c::model_file_layout::version_minor + 1);
    recrc(b);
    aligned_bytes a(b);
    REQUIRE(r.open(a.data(), a.size).ok());
    c::layer_view v;
    REQUIRE(r.layer(0, v).ok());
    CHECK(v.bias == nullptr);
  }
}

TEST_CASE("model file: oversized declared lengths fail before anything is allocated", "[model_file][limits]") {
  auto b = S::small();
  // Total size 2^40: too_large, from the header alone (an 8-byte aligned 32-byte prefix).
  put32(b, 16, 0);
  put32(b, 20, 0x100);
  recrc(b);
  aligned_bytes a(b, 32);
  c::model_file_reader r;
  CHECK(r.open(a.data(), a.size).code == errc::too_large);
  // Layer count above the limit.
  auto l = S::small();
  put32(l, 12, 0xFFFFFFFFu);
  recrc(l);
  aligned_bytes la(l);
  CHECK(r.open(la.data(), la.size).code == errc::too_large);
  // A layer dimension above max_dim, and rows·cols above max_elements.
  c::model_file_options tight;
  tight.limits.max_dim = 8;
  aligned_bytes sa(S::small());
  CHECK(r.open(sa.data(), sa.size, tight).code == errc::too_large);
  tight.limits.max_dim = 1 << 20;
  tight.limits.max_elements = 29;
  CHECK(r.open(sa.data(), sa.size, tight).code == errc::too_large);
  tight.limits.max_elements = 30;
  CHECK(r.open(sa.data(), sa.size, tight).ok());
  // rows = cols = 2^32 − 1: overflow-checked product.
  auto big = mutated([](auto& bb, const auto& o) {
    put32(bb, o[0] + 16, 0xFFFFFFFFu);
    put32(bb, o[0] + 20, 0xFFFFFFFFu);
  });
  CHECK(big.code == errc::too_large);
  // A Huffman stream declaring 2^32 − 1 symbols in a few bytes.
  auto h = mutated([](auto& bb, const auto& o) {
    const std::size_t e = array_entry(bb, o[5], c::array_role::gaps);
    put32(bb, e + 12, 0xFFFFFFFFu);
  });
  CHECK_FALSE(h.ok());
#if TINYLARGE_HAS_EXCEPTIONS
  c::model_file_options lim;
  lim.limits.max_file_bytes = 100;
  REQUIRE_THROWS_AS(c::model_file::from_bytes(S::small(), lim), tinylarge::format_error);
#endif
}

#if TINYLARGE_HAS_EXCEPTIONS
TEST_CASE("model file: endless inputs stop at max_file_bytes; directories are io_errors", "[model_file][hostile]") {
  const auto dir = std::filesystem::temp_directory_path() / ("tinylarge_test_mf_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  // The file reader: a directory is an io_error naming it, not a stream exception.
  try {
    (void)c::load_model_file(dir.string());
    FAIL("a directory was read as a model file");
  } catch (const tinylarge::io_error& e) {
    CHECK(std::string(e.what()).find("directory") != std::string::npos);
  }
  // Written atomically and read back.
  const std::string path = (dir / "m.tlmf").string();
  tinylarge::io::write_file(path, S::small());
  CHECK(c::load_model_file(path).layer_count() == c::model_file::from_bytes(S::small()).layer_count());
  CHECK_FALSE(std::filesystem::exists(path + ".tmp"));
  std::filesystem::remove_all(dir);
  if (!tinylarge::io::file_readable("/dev/zero")) return;
  c::model_file_options opt;
  opt.limits.max_file_bytes = std::size_t{96} << 20;
  const double base = test_child::current_rss_mib();
  const auto o = test_child::run([&] { (void)c::load_model_file("/dev/zero", opt); });
  std::printf("  load_model_file(/dev/zero), cap 96 MiB -> %s, peak RSS %.1f MiB (process before %.1f MiB)\n",
              tinylarge::to_string(o.code), o.peak_rss_mib, base);
  INFO(o.what);
  REQUIRE(o.how == test_child::outcome::tinylarge_error);
  CHECK(o.code == errc::too_large);
  if (test_child::rss_meaningful) CHECK(o.peak_rss_mib <= base + 96.0 + 64.0);
}
#endif

// ---------------------------------------------------------------------------
// C header export
// ---------------------------------------------------------------------------

TEST_CASE("c_export: bytes, floats and int8 as aligned const arrays", "[model_file][c_export]") {
  const std::vector<std::uint8_t> bytes = {0x54, 0x4c, 0x00, 0xff};
  const std::string h = c::to_c_header(bytes, "model");
  CHECK(h.find("TINYLARGE_C_ALIGNAS(8) static const unsigned char model[4] = {\n  0x54, 0x4c, 0x00, 0xff,\n};") !=
        std::string::npos);
  CHECK(h.find("static const size_t model_size = 4u;") != std::string::npos);
  CHECK(h.find("#pragma once") != std::string::npos);
  c::c_header_writer w("test");
  const std::vector<float> f = {0.1f, -2.5f};
  w.add_floats("expected", f).add_int8("q", std::vector<std::int8_t>{-3, 4});
  const std::string t = w.str();
  CHECK(t.find("0.100000001f, -2.5f,") != std::string::npos);
  // Every float survives the decimal round trip, including 0, -0, denormals and extremes.
  for (const float v : {0.0f, -0.0f, 1.0f, 1e-45f, 3.4028235e38f, -1.17549435e-38f, 0.3f}) {
    c::c_header_writer one;
    one.add_floats("v", std::vector<float>{v});
    const std::string text = one.str();
    const std::size_t at = text.find("= {\n  ") + 6;
    const float back = std::strtof(text.c_str() + at, nullptr);
    CHECK(std::memcmp(&back, &v, 4) == 0);
  }
  CHECK(t.find("static const signed char q[2] = {\n  -3, 4,\n};") != std::string::npos);
#if TINYLARGE_HAS_EXCEPTIONS
  REQUIRE_THROWS(w.add_bytes("q", bytes));          // duplicate
  REQUIRE_THROWS(w.add_bytes("2bad", bytes));       // not an identifier
  REQUIRE_THROWS(w.add_bytes("e", std::vector<std::uint8_t>{}));  // empty C array
#endif
}

namespace {
/// The Cortex-M self-test's data (tests/mcu/model_file_selftest_data.h): a three-layer model
/// and the outputs the host computes for a fixed input, run on the device with the
/// freestanding reader (layer 0 decoded at boot from Huffman streams, layers 1 and 2 in
/// place from flash).
std::string mcu_header() {
  const std::size_t R = 16, C = 48;
  c::model_file_builder b;
  const auto sh = S::share(S::sparse(R, C, 0.2, 21), R, C, 4);
  const auto csr = c::to_relative_csr({sh.w.data(), R, C}, sh.labels, sh.centroids, 4);
  c::layer_options huff;
  huff.gaps = c::symbol_encoding::huffman;
  huff.indices = c::symbol_encoding::huffman;
  const auto bias = S::gaussian(R, 22, 0.1f);
  b.add_csr(csr, 4, bias, huff);
  const auto sh2 = S::share(S::gaussian(R * C, 23), R, C, 4);
  b.add_codebook(c::to_codebook_matrix(R, C, sh2.labels, sh2.centroids, 4), bias, {});
  const auto q = S::quantize_rows(S::gaussian(R * C, 24), R, C, 24);
  b.add_int8(R, C, q.q, q.scales, q.input, {0.25f, -4}, q.bias, {});
  const auto file = b.bytes();

  const c::model_file m = c::model_file::from_bytes(file);
  const auto x = S::gaussian(C, 25);
  std::vector<std::int8_t> xq(C), y2(R);
  for (std::size_t k = 0; k < C; ++k) xq[k] = tinylarge::quantize(x[k], q.input);
  std::vector<float> y0 = run(m.layer(0), x), y1 = run(m.layer(1), x);
  tinylarge::kernels::dense_s8(tinylarge::arch::scalar{}, 1, R, C, xq.data(), m.layer(2).int8.weights,
                               m.layer(2).s8_params(), y2.data());
  c::c_header_writer w("by tests/test_model_file.cpp (\"mcu golden header\"); TINYLARGE_UPDATE_GOLDEN=1 rewrites it");
  w.add_bytes("model", file).add_floats("input", x).add_int8("input_q", xq);
  w.add_floats("expected_csr", y0).add_floats("expected_codebook", y1).add_int8("expected_int8", y2);
  return w.str();
}
}  // namespace

TEST_CASE("c_export: the Cortex-M self-test's header is what the exporter writes today", "[model_file][c_export]") {
  const auto path = std::filesystem::path(__FILE__).parent_path() / "mcu" / "model_file_selftest_data.h";
  const std::string now = mcu_header();
  if (std::getenv("TINYLARGE_UPDATE_GOLDEN") != nullptr) {
    tinylarge::io::write_file(path.string(), std::span<const std::uint8_t>(
                                                 reinterpret_cast<const std::uint8_t*>(now.data()), now.size()));
  }
  INFO("golden header " << path.string() << "; regenerate with: TINYLARGE_UPDATE_GOLDEN=1 ./test_model_file '[c_export]'");
  REQUIRE(std::filesystem::exists(path));  // __FILE__ must be an absolute path (as in the CMake build)
  CHECK(read_text(path) == now);
}

// ---------------------------------------------------------------------------
// int8 models bound to model files (compress/int8_model.hpp) and the int8
// convolution kernels they run (kernels/conv.hpp)
// ---------------------------------------------------------------------------

namespace {
namespace tk = tinylarge::kernels;

/// Naive int8 convolution (groups = 1) or depthwise (groups = C, mult), straight from the
/// definition: the reference the kernels are compared with.
void reference_conv_s8(const tk::conv_s8_shape& s, std::size_t groups, const std::int8_t* x, const std::int8_t* w,
                       const tk::dense_s8_params& p, std::int8_t* y) {
  const std::size_t cin_g = s.c / groups, cout_g = s.out_c / groups, K = s.kernel;
  for (std::size_t oy = 0; oy < s.ho; ++oy)
    for (std::size_t ox = 0; ox < s.wo; ++ox)
      for (std::size_t o = 0; o < s.out_c; ++o) {
        const std::size_t g = o / cout_g;
        std::int64_t acc = p.bias ? p.bias[o] : 0;
        for (std::size_t ky = 0; ky < K; ++ky)
          for (std::size_t kx = 0; kx < K; ++kx)
            for (std::size_t ci = 0; ci < cin_g; ++ci) {
              const long iy = static_cast<long>(oy * s.stride + ky) - static_cast<long>(s.pad);
              const long ix = static_cast<long>(ox * s.stride + kx) - static_cast<long>(s.pad);
              if (iy < 0 || ix < 0 || iy >= static_cast<long>(s.h) || ix >= static_cast<long>(s.w)) continue;
              const std::int32_t xv = x[(static_cast<std::size_t>(iy) * s.w + static_cast<std::size_t>(ix)) * s.c + g * cin_g + ci];
              acc += (xv - p.input_zero_point) * w[((o * K + ky) * K + kx) * cin_g + ci];
            }
        y[(oy * s.wo + ox) * s.out_c + o] = tk::requantize_s8(static_cast<std::int32_t>(acc), o, p);
      }
}

struct conv_case {
  std::size_t h, w, c, k, stride, pad, out_c_or_mult;
  bool depthwise;
};
}  // namespace

TEST_CASE("requantize_s8_32 equals requantize_s8 (TFLite's MultiplyByQuantizedMultiplier)", "[int8_model][kernels]") {
  tinylarge::rng g(17);
  const std::int32_t edges[] = {0, 1, -1, 2, -2, 127, -128, 1 << 20, -(1 << 20), INT32_MAX, INT32_MIN, INT32_MAX - 1,
                                INT32_MIN + 1, 1 << 30, -(1 << 30)};
  std::size_t n = 0, differ = 0;
  for (int shift = -31; shift <= 30; ++shift)
    for (int trial = 0; trial < 400; ++trial) {
      std::int32_t m = trial == 0 ? 0 : trial == 1 ? INT32_MAX : trial == 2 ? (1 << 30) :
                       static_cast<std::int32_t>((1u << 30) + (g.next_u32() >> 2));
      std::int32_t mult[1] = {m};
      int sh[1] = {shift};
      tk::dense_s8_params p;
      p.multipliers = mult;
      p.shifts = sh;
      p.output_zero_point = static_cast<std::int32_t>(g.uniform_int(256)) - 128;
      p.act_min = trial % 3 == 0 ? static_cast<std::int8_t>(p.output_zero_point) : -128;
      p.act_max = trial % 5 == 0 ? 100 : 127;
      for (int k = 0; k < 8; ++k) {
        const std::int32_t acc = k < 4 ? edges[(trial + k * 4) % 15]
                                       : static_cast<std::int32_t>(g.next_u32()) >> (g.uniform_int(31));
        // The reference adds the zero point in int32: skip the few inputs where that overflows
        // (undefined there), which only a real multiplier ≥ 1 on a saturated accumulator reaches.
        const std::int64_t v = static_cast<std::int64_t>(tinylarge::multiply_by_quantized_multiplier(acc, m, shift)) +
                               p.output_zero_point;
        if (v > INT32_MAX || v < INT32_MIN) continue;
        ++n;
        differ += tk::requantize_s8_32(acc, 0, p) != tk::requantize_s8(acc, 0, p);
      }
    }
  CHECK(n > 62 * 400 * 8 * 99 / 100);
  CHECK(differ == 0);
}

TEST_CASE("int8 conv2d and depthwise kernels, dense, pruned CSR and codebook, equal the definition on every geometry", "[int8_model][kernels]") {
  const conv_case cases[] = {
      {16, 16, 16, 3, 1, 1, 16, false}, {7, 5, 3, 3, 2, 1, 5, false}, {9, 9, 1, 5, 1, 2, 6, false},
      {6, 6, 4, 1, 1, 0, 7, false},     {5, 7, 2, 2, 1, 0, 3, false}, {16, 16, 32, 3, 1, 1, 1, true},
      {7, 6, 3, 3, 2, 1, 2, true},      {6, 5, 4, 3, 1, 0, 1, true},  {8, 8, 2, 5, 1, 2, 1, true},
      {3, 3, 5, 3, 1, 1, 3, true},      {24, 5, 8, 3, 1, 1, 1, true},
  };
  tinylarge::rng g(5);
  std::size_t fillers = 0, case_index = 0;
  for (const conv_case& cc : cases) {
    tk::conv_s8_shape s;
    s.h = cc.h, s.w = cc.w, s.c = cc.c, s.kernel = cc.k, s.stride = cc.stride, s.pad = cc.pad;
    s.ho = (cc.h + 2 * cc.pad - cc.k) / cc.stride + 1;
    s.wo = (cc.w + 2 * cc.pad - cc.k) / cc.stride + 1;
    s.out_c = cc.depthwise ? cc.c * cc.out_c_or_mult : cc.out_c_or_mult;
    const std::size_t fan_in = cc.depthwise ? cc.k * cc.k : cc.k * cc.k * cc.c;
    std::vector<std::int8_t> x(s.h * s.w * s.c), w(s.out_c * fan_in), scratch(tk::conv2d_s8_scratch_bytes(s.patch()));
    for (auto& v : x) v = static_cast<std::int8_t>(static_cast<int>(g.uniform_int(256)) - 128);
    for (auto& v : w) v = static_cast<std::int8_t>(static_cast<int>(g.uniform_int(255)) - 127);
    std::vector<std::int32_t> bias(s.out_c), mult(s.out_c);
    std::vector<int> shift(s.out_c);
    for (std::size_t o = 0; o < s.out_c; ++o) {
      bias[o] = static_cast<std::int32_t>(g.uniform_int(4001)) - 2000;
      const auto m = tinylarge::quantize_multiplier(0.0004 + 0.0001 * static_cast<double>(o % 7));
      mult[o] = m.multiplier;
      shift[o] = m.shift;
    }
    tk::dense_s8_params p;
    p.input_zero_point = -7;
    p.output_zero_point = 4;
    p.multipliers = mult.data();
    p.shifts = shift.data();
    p.per_channel = true;
    p.bias = bias.data();
    p.act_min = -100;
    std::vector<std::int8_t> ref(s.ho * s.wo * s.out_c), got(ref.size()), got_best(ref.size());
    reference_conv_s8(s, cc.depthwise ? cc.c : 1, x.data(), w.data(), p, ref.data());
    if (cc.depthwise) {
      tk::depthwise_conv2d_s8(tk::scalar{}, s, cc.out_c_or_mult, x.data(), w.data(), p, got.data());
      tk::depthwise_conv2d_s8(tk::default_backend{}, s, cc.out_c_or_mult, x.data(), w.data(), p, got_best.data());
    } else {
      tk::conv2d_s8(tk::scalar{}, s, x.data(), w.data(), p, got.data(), scratch.data());
      tk::conv2d_s8(tk::default_backend{}, s, x.data(), w.data(), p, got_best.data(), scratch.data());
    }
    INFO("h " << cc.h << " w " << cc.w << " c " << cc.c << " k " << cc.k << " stride " << cc.stride << " pad "
              << cc.pad << (cc.depthwise ? " depthwise" : " conv"));
    CHECK(got == ref);
    CHECK(got_best == ref);
    std::size_t distinct = 0;
    for (std::size_t i = 1; i < ref.size(); ++i) distinct += ref[i] != ref[0];
    CHECK(distinct > 0);  // the outputs are not all clamped to one value
    // Pruned (about 60 % zeros) in relative-index CSR with 2-bit gaps (fillers bridge the
    // longer runs of zeros): the sparse kernels equal the definition on the zeroed weights.
    for (auto& v : w)
      if (g.uniform_int(5) < 3) v = 0;
    const std::vector<float> wf(w.begin(), w.end());
    const auto m = c::detail::build_relative_csr<std::int8_t>(c::matrix_ref<const float>{wf.data(), s.out_c, fan_in}, 2,
                                                              [&](std::size_t i) { return w[i]; });
    fillers += m.fillers;
    const tk::csr_s8_matrix sw{s.out_c, fan_in, m.row_ptr.data(), m.gaps.data(), m.values.data()};
    reference_conv_s8(s, cc.depthwise ? cc.c : 1, x.data(), w.data(), p, ref.data());
    std::fill(got.begin(), got.end(), std::int8_t{0});
    if (cc.depthwise)
      tk::sparse_depthwise_conv2d_s8(s, cc.out_c_or_mult, sw, x.data(), p, got.data());
    else
      tk::sparse_conv2d_s8(s, sw, x.data(), p, got.data(), scratch.data());
    CHECK(got == ref);
    // Weight-shared: every weight one of k int8 codebook values, bit-packed with every width
    // 1..8 over the cases (3, 5, 6, 7 bits straddle bytes; 4 bits: two per byte when a row
    // starts on a byte); the codebook kernels equal the definition on the substituted weights.
    static constexpr std::size_t ks[] = {11, 16, 2, 7, 3, 33, 256, 20, 100, 16, 9};  // case 1: 4 bits, odd rows
    std::vector<std::int8_t> book(256);
    for (auto& v : book) v = static_cast<std::int8_t>(static_cast<int>(g.uniform_int(255)) - 127);
    const std::size_t k = ks[case_index++ % std::size(ks)];
    const unsigned bits = c::model_file_builder::int8_codebook_bits(k);
    std::vector<std::uint8_t> idx(w.size());
    for (std::size_t i = 0; i < w.size(); ++i) {
      idx[i] = static_cast<std::uint8_t>(g.uniform_int(static_cast<std::uint32_t>(k)));
      w[i] = book[idx[i]];
    }
    std::vector<std::uint8_t> packed(c::packed_size(idx.size(), bits));
    REQUIRE(c::pack_bits(idx.data(), idx.size(), bits, packed.data(), packed.size()).ok());
    const tk::codebook_s8_matrix cw{s.out_c, fan_in, bits, packed.data(), book.data()};
    reference_conv_s8(s, cc.depthwise ? cc.c : 1, x.data(), w.data(), p, ref.data());
    std::fill(got.begin(), got.end(), std::int8_t{0});
    if (cc.depthwise)
      tk::codebook_depthwise_conv2d_s8(s, cc.out_c_or_mult, cw, x.data(), p, got.data());
    else
      tk::codebook_conv2d_s8(s, cw, x.data(), p, got.data(), scratch.data());
    CHECK(got == ref);
  }
  CHECK(fillers > 0);  // the filler path of the sparse kernels ran
}

namespace {
namespace tnn = tinylarge::nn;
using small_cnn = tnn::sequential<tnn::input<8, 8, 2>, tnn::conv2d<4, 3, 1, 1>, tnn::relu, tnn::max_pool2d<2>,
                                  tnn::depthwise_conv2d<3, 1, 1, 2>, tnn::relu6, tnn::flatten, tnn::dense<128, 5>>;
template <class Model>
using owning_q = tnn::quantized_network<Model, tinylarge::int8_per_channel, tnn::heap_storage>;
template <class Model>
using flash_q = tnn::quantized_network<Model, tinylarge::int8_per_channel, tnn::flash_storage>;

/// A PTQ-quantized `Model` (random weights, calibrated on `n` random inputs) and its model file.
template <class Model>
std::vector<std::uint8_t> int8_model_file(owning_q<Model>& q, std::uint64_t seed, std::vector<float>& xs, std::size_t n = 16) {
  tnn::network<Model> net(seed);
  tinylarge::rng g(seed + 1);
  xs.resize(n * Model::input_size);
  for (auto& v : xs) v = g.uniform(-1.0f, 1.0f);
  tnn::quantize_post_training(net, xs.data(), n, q);
  c::model_file_builder b;
  c::add_int8_layers(b, q);
  return b.bytes();
}
}  // namespace

TEST_CASE("int8 model file: a bound flash_storage network computes the owning network's bits", "[int8_model]") {
  auto q = std::make_unique<owning_q<small_cnn>>();
  std::vector<float> xs;
  const std::vector<std::uint8_t> file = int8_model_file(*q, 3, xs);
  aligned_bytes a(file);
  c::model_file_reader r;
  REQUIRE(r.open(a.data(), a.size).ok());
  REQUIRE(r.layer_count() == c::weighted_layer_count<small_cnn>);
  static flash_q<small_cnn> dev;
  REQUIRE(c::bind_model_file(r, dev).ok());
  static_assert(flash_q<small_cnn>::arena_bytes >= small_cnn::arena_bytes<tinylarge::int8_per_channel>);
  // Views and the arena (plus, on back ends with a packed batch-1 layout, the packed copy).
  static_assert(sizeof(flash_q<small_cnn>) <
                    flash_q<small_cnn>::arena_bytes + flash_q<small_cnn>::packed_bytes + 64 + 512,
                "the bound network holds views and the arena, not the weights");
  for (std::size_t s = 0; s < 16; ++s) {
    std::vector<std::int8_t> xq(small_cnn::input_size);
    for (std::size_t i = 0; i < xq.size(); ++i) xq[i] = tinylarge::quantize(xs[s * small_cnn::input_size + i], q->input_params());
    const std::int8_t* yo = q->forward(xq.data());
    const std::vector<std::int8_t> owning(yo, yo + small_cnn::output_size);
    const std::int8_t* yd = dev.forward(xq.data());
    CHECK(std::equal(owning.begin(), owning.end(), yd));
  }
}

TEST_CASE("int8 model file: bind_model_file rejects a file of another shape with an error code", "[int8_model]") {
  std::vector<float> xs;
  auto q = std::make_unique<owning_q<small_cnn>>();
  const std::vector<std::uint8_t> good = int8_model_file(*q, 3, xs);
  auto expect_mismatch = [](const std::vector<std::uint8_t>& bytes, auto& net, const char* what) {
    aligned_bytes a(bytes);
    c::model_file_reader r;
    REQUIRE(r.open(a.data(), a.size).ok());
    const status st = c::bind_model_file(r, net);
    INFO(what << ": " << (st.message ? st.message : ""));
    CHECK(st.code == errc::shape_mismatch);
  };
  SECTION("another number of filters") {
    using m = tnn::sequential<tnn::input<8, 8, 2>, tnn::conv2d<5, 3, 1, 1>, tnn::relu, tnn::max_pool2d<2>,
                              tnn::depthwise_conv2d<3, 1, 1, 2>, tnn::relu6, tnn::flatten, tnn::dense<160, 5>>;
    auto o = std::make_unique<owning_q<m>>();
    static flash_q<small_cnn> dev;
    expect_mismatch(int8_model_file(*o, 4, xs), dev, "filters");
  }
  SECTION("another padding (same shapes of weights)") {
    using m = tnn::sequential<tnn::input<8, 8, 2>, tnn::conv2d<4, 3, 1, 0>, tnn::relu, tnn::max_pool2d<2>,
                              tnn::depthwise_conv2d<3, 1, 1, 2>, tnn::relu6, tnn::flatten, tnn::dense<72, 5>>;
    auto o = std::make_unique<owning_q<m>>();
    static flash_q<small_cnn> dev;
    expect_mismatch(int8_model_file(*o, 4, xs), dev, "padding");
  }
  SECTION("another fused activation") {
    using m = tnn::sequential<tnn::input<8, 8, 2>, tnn::conv2d<4, 3, 1, 1>, tnn::relu6, tnn::max_pool2d<2>,
                              tnn::depthwise_conv2d<3, 1, 1, 2>, tnn::relu6, tnn::flatten, tnn::dense<128, 5>>;
    auto o = std::make_unique<owning_q<m>>();
    static flash_q<small_cnn> dev;
    expect_mismatch(int8_model_file(*o, 4, xs), dev, "activation");
  }
  SECTION("a dense model with as many weighted layers") {
    using m = tnn::sequential<tnn::dense<128, 16>, tnn::relu, tnn::dense<16, 16>, tnn::relu, tnn::dense<16, 5>>;
    using small_mlp_like = tnn::sequential<tnn::input<128>, tnn::dense<128, 16>, tnn::relu, tnn::dense<16, 8>,
                                           tnn::relu, tnn::dense<8, 5>>;
    auto o = std::make_unique<owning_q<m>>();
    static flash_q<small_cnn> dev;
    static flash_q<small_mlp_like> mlp;
    const auto file = int8_model_file(*o, 4, xs);
    expect_mismatch(file, dev, "dense file into a CNN");
    expect_mismatch(file, mlp, "16 -> 16 into 16 -> 8");
  }
  SECTION("a zero point that does not chain (CRCs redone: only the binder can notice)") {
    std::vector<std::uint8_t> bad(good);
    const std::size_t sec = section_offsets(bad)[1];
    const std::size_t zp_at = sec + le32(bad, array_entry(bad, sec, c::array_role::zero_points) + 4);
    const auto zx = static_cast<std::int32_t>(le32(bad, zp_at));  // the second record's input zero point
    put32(bad, zp_at, static_cast<std::uint32_t>(zx == 127 ? 126 : zx + 1));  // still a valid int8 zero point
    recrc(bad);
    aligned_bytes b(bad);
    c::model_file_reader rb;
    REQUIRE(rb.open(b.data(), b.size).ok());
    static flash_q<small_cnn> dev;
    const status st = c::bind_model_file(rb, dev);
    CHECK(st.code == errc::shape_mismatch);
    CHECK(std::string(st.message).find("zero point") != std::string::npos);
  }
  SECTION("a closed reader") {
    c::model_file_reader r;
    static flash_q<small_cnn> dev;
    CHECK(c::bind_model_file(r, dev).code == errc::invalid_argument);
  }
}

// ---------------------------------------------------------------------------
// Pruned int8 (weight format 8, int8_csr): run in the compressed form
// ---------------------------------------------------------------------------

namespace {
template <class Model>
using sparse_q = tnn::quantized_network<Model, tinylarge::int8_per_channel, tnn::sparse_flash_storage>;
template <class Model>
using shared_q = tnn::quantized_network<Model, tinylarge::int8_per_channel, tnn::shared_flash_storage>;
template <class Model>
using either_q = tnn::quantized_network<Model, tinylarge::int8_per_channel, tnn::pruned_or_shared_flash_storage>;

/// A PTQ-quantized `small_cnn` pruned to 60 % zeros per layer, as a CSR file (`csr`) and as a
/// dense int8 file of the same zeroed weights (`dense`).
struct pruned_files {
  std::unique_ptr<owning_q<small_cnn>> q = std::make_unique<owning_q<small_cnn>>();
  std::vector<float> xs;
  std::vector<std::uint8_t> dense, csr;
  std::size_t zeros = 0;
  pruned_files() {
    (void)int8_model_file(*q, 7, xs);
    zeros = c::prune_int8_weights(*q, 0.6);
    c::model_file_builder d, s;
    c::add_int8_layers(d, *q);
    c::add_int8_csr_layers(s, *q);
    dense = d.bytes();
    csr = s.bytes();
  }
};
}  // namespace

TEST_CASE("int8 CSR model file: a pruned sparse_flash_storage network computes the dense int8 bits", "[int8_model][int8_csr]") {
  pruned_files f;
  CHECK(f.zeros >= small_cnn::weight_count / 2);  // 60 % per layer, rounded per layer
  CHECK(f.dense[6] == 0);  // a file without int8_csr records stays version 1.0
  CHECK(f.csr[6] == 1);    // int8_csr needs 1.1
  aligned_bytes ad(f.dense), as(f.csr);
  c::model_file_reader rd, rs;
  REQUIRE(rd.open(ad.data(), ad.size).ok());
  REQUIRE(rs.open(as.data(), as.size).ok());
  c::layer_view v;
  REQUIRE(rs.layer(1, v).ok());  // the depthwise record
  CHECK(v.format == c::weight_format::int8_csr);
  CHECK(v.int8.weights == nullptr);
  CHECK(v.csr_s8.entries() < v.rows * v.cols);
  static flash_q<small_cnn> dense_dev;
  static sparse_q<small_cnn> sparse_dev, mixed_dev;
  REQUIRE(c::bind_model_file(rd, dense_dev).ok());
  REQUIRE(c::bind_model_file(rs, sparse_dev).ok());
  REQUIRE(c::bind_model_file(rd, mixed_dev).ok());  // dense int8 records bind to the sparse storage too
  CHECK(sparse_dev.layer_is_sparse<0>());           // conv2d
  CHECK(sparse_dev.layer_is_sparse<3>());           // depthwise
  CHECK(sparse_dev.layer_is_sparse<6>());           // dense
  CHECK_FALSE(mixed_dev.layer_is_sparse<0>());
  std::size_t differ_from_zero = 0;
  for (std::size_t s = 0; s < 16; ++s) {
    std::vector<std::int8_t> xq(small_cnn::input_size);
    for (std::size_t i = 0; i < xq.size(); ++i)
      xq[i] = tinylarge::quantize(f.xs[s * small_cnn::input_size + i], f.q->input_params());
    const std::int8_t* yo = f.q->forward(xq.data());
    const std::vector<std::int8_t> owning(yo, yo + small_cnn::output_size);
    const std::int8_t* yd = dense_dev.forward(xq.data());
    CHECK(std::equal(owning.begin(), owning.end(), yd));
    const std::int8_t* ys = sparse_dev.forward(xq.data());
    CHECK(std::equal(owning.begin(), owning.end(), ys));
    const std::int8_t* ym = mixed_dev.forward(xq.data());
    CHECK(std::equal(owning.begin(), owning.end(), ym));
    for (std::size_t i = 0; i < owning.size(); ++i) differ_from_zero += owning[i] != f.q->output_params().zero_point;
  }
  CHECK(differ_from_zero > 0);
  // A flash_storage network cannot run CSR records: an error code that says what to use.
  static flash_q<small_cnn> plain;
  const status st = c::bind_model_file(rs, plain);
  CHECK(st.code == errc::invalid_argument);
  CHECK(std::string(st.message).find("sparse_flash_storage") != std::string::npos);
  // Nor can a network that accepts only weight-shared layers (no CSR kernel linked).
  static shared_q<small_cnn> shared_only;
  const status ss = c::bind_model_file(rs, shared_only);
  CHECK(ss.code == errc::invalid_argument);
  CHECK(std::string(ss.message).find("sparse_flash_storage") != std::string::npos);
}

TEST_CASE("int8 CSR model file: corrupt CSR records are rejected with the right error code", "[int8_model][int8_csr]") {
  pruned_files f;
  const std::size_t sec = section_offsets(f.csr)[0];  // the conv2d record: 4 rows, 18 cols
  const auto at = [&](std::vector<std::uint8_t>& b, c::array_role r) {
    return sec + le32(b, array_entry(b, sec, r) + 4);
  };
  const auto open_code = [](const std::vector<std::uint8_t>& b, const char* what) {
    aligned_bytes a(b);
    c::model_file_reader r;
    const status st = r.open(a.data(), a.size);
    INFO(what << ": " << (st.message ? st.message : "accepted"));
    return st;
  };
  REQUIRE(open_code(f.csr, "valid").ok());
  SECTION("a bad row start") {
    auto b = f.csr;
    put32(b, at(b, c::array_role::row_ptr), 1);
    CHECK(open_code(b, "row_ptr[0] = 1").code == errc::checksum_mismatch);  // the CRC catches it first
    recrc(b);
    const status st = open_code(b, "row_ptr[0] = 1, CRC redone");
    CHECK(st.code == errc::corrupt);
    CHECK(std::string(st.message).find("first CSR row offset") != std::string::npos);
    b = f.csr;
    const std::size_t rp = at(b, c::array_role::row_ptr);
    REQUIRE(le32(b, rp + 8) > 0);
    put32(b, rp + 4, le32(b, rp + 8) + 1);  // row 0 ends after row 1 ends
    recrc(b);
    const status st2 = open_code(b, "decreasing");
    CHECK(st2.code == errc::corrupt);
    CHECK(std::string(st2.message).find("CSR row") != std::string::npos);
  }
  SECTION("an out-of-range column") {
    auto b = f.csr;
    const std::size_t rp = at(b, c::array_role::row_ptr);
    const std::uint32_t end0 = le32(b, rp + 4);
    REQUIRE(end0 > 0);
    b[at(b, c::array_role::gaps) + end0 - 1] = 200;  // the last entry of row 0 jumps past column 17
    recrc(b);
    const status st = open_code(b, "gap past the row");
    CHECK(st.code == errc::corrupt);
    CHECK(std::string(st.message).find("column index is out of range") != std::string::npos);
  }
  SECTION("entry counts that disagree with the arrays") {
    auto b = f.csr;
    const std::size_t rp = at(b, c::array_role::row_ptr);
    const std::uint32_t last = le32(b, rp + 4 * 4);  // row_ptr[rows], rows = 4
    REQUIRE(last > le32(b, rp + 3 * 4));             // row 3 is not empty: the offsets stay monotone
    put32(b, rp + 4 * 4, last - 1);
    recrc(b);
    const status st = open_code(b, "row_ptr[rows] one short");
    CHECK(st.code == errc::corrupt);
    CHECK(std::string(st.message).find("one per entry") != std::string::npos);
  }
  SECTION("an int8 CSR value of -128") {
    auto b = f.csr;
    b[at(b, c::array_role::values)] = 0x80;
    recrc(b);
    CHECK(open_code(b, "-128").code == errc::corrupt);
  }
  SECTION("truncated") {
    for (std::size_t n : {f.csr.size() - 8, sec + 100, std::size_t{40}}) {
      auto b = f.csr;
      b.resize(n);
      put32(b, 16, static_cast<std::uint32_t>(n));  // a consistent declared size: the section is cut
      recrc(b);
      const status st = open_code(b, "truncated");
      CHECK((st.code == errc::truncated || st.code == errc::corrupt));
      CHECK_FALSE(st.ok());
    }
    auto b = f.csr;
    b.resize(b.size() - 16);  // the declared size is now larger than the bytes
    CHECK(open_code(b, "short").code == errc::truncated);
  }
  SECTION("int8_csr in a file that claims version 1.0") {
    auto b = f.csr;
    b[6] = 0;
    recrc(b);
    const status st = open_code(b, "1.0 with int8_csr");
    CHECK(st.code == errc::corrupt);
    CHECK(std::string(st.message).find("1.1") != std::string::npos);
  }
}

// ---------------------------------------------------------------------------
// Weight-shared int8 (weight format 9, int8_codebook): run in the compressed form
// ---------------------------------------------------------------------------

namespace {
/// A PTQ-quantized `small_cnn` whose int8 weights are clustered into 16 values per layer, as
/// an int8 codebook file (`shared`, 4-bit indices) and as a dense int8 file of the same
/// substituted weights (`dense`).
struct shared_files {
  std::unique_ptr<owning_q<small_cnn>> q = std::make_unique<owning_q<small_cnn>>();
  std::vector<float> xs;
  std::vector<std::uint8_t> dense, shared;
  std::size_t widest = 0;
  shared_files() {
    (void)int8_model_file(*q, 7, xs);
    widest = c::share_int8_weights(*q, 16);
    c::model_file_builder d, s;
    c::add_int8_layers(d, *q);
    c::add_int8_codebook_layers(s, *q);
    dense = d.bytes();
    shared = s.bytes();
  }
};

/// On 16 samples, each of `nets` computes the logits of the owning network `q` (inputs `xs`),
/// and those are not all the output zero point.
template <class Owning, class... Nets>
void check_same_logits(Owning& q, const std::vector<float>& xs, Nets&... nets) {
  std::size_t differ_from_zero = 0;
  for (std::size_t s = 0; s < 16; ++s) {
    std::vector<std::int8_t> xq(small_cnn::input_size);
    for (std::size_t i = 0; i < xq.size(); ++i)
      xq[i] = tinylarge::quantize(xs[s * small_cnn::input_size + i], q.input_params());
    const std::int8_t* yo = q.forward(xq.data());
    const std::vector<std::int8_t> owning(yo, yo + small_cnn::output_size);
    const auto same = [&](auto& net) { CHECK(std::equal(owning.begin(), owning.end(), net.forward(xq.data()))); };
    (same(nets), ...);
    for (std::size_t i = 0; i < owning.size(); ++i) differ_from_zero += owning[i] != q.output_params().zero_point;
  }
  CHECK(differ_from_zero > 0);
}

/// Every single-bit mutant of a one-layer `file`, with the CRCs bypassed: never a crash; some
/// rejected, and every accepted one runs through its kernel (ASan: the views stay inside the bytes).
void flip_every_bit_and_run(const std::vector<std::uint8_t>& file) {
  c::model_file_options nocrc;
  nocrc.verify_crc = false;
  std::size_t rejected = 0, accepted = 0;
  for (std::size_t bit = 0; bit < file.size() * 8; ++bit) {
    auto m = file;
    m[bit / 8] ^= static_cast<std::uint8_t>(1u << (bit % 8));
    aligned_bytes a(m);
    c::model_file_reader r;
    if (!r.open(a.data(), a.size, nocrc)) {
      ++rejected;
      continue;
    }
    c::layer_view v;
    REQUIRE(r.layer(0, v).ok());
    exercise(v);  // ASan: the views stay inside the bytes
    ++accepted;
  }
  INFO("rejected " << rejected << ", accepted " << accepted);
  CHECK(rejected > 0);
  CHECK(accepted > 0);
}

/// A one-layer int8 codebook file: 3×4 dense, k = 5 (3-bit indices).
std::vector<std::uint8_t> tiny_codebook_file() {
  const std::int8_t book[5] = {-5, 0, 2, 9, 127};
  const std::uint8_t idx[12] = {0, 1, 2, 3, 4, 4, 3, 2, 1, 0, 2, 2};
  const float scales[1] = {0.01f};
  const std::int32_t bias[3] = {1, -2, 3};
  c::model_file_builder b;
  b.add_int8_codebook(3, 4, book, idx, scales, {0.1f, 0}, {0.2f, -3}, bias);
  return b.bytes();
}
}  // namespace

TEST_CASE("int8 codebook model file: a weight-shared shared_flash_storage network computes the dense int8 bits",
          "[int8_model][int8_codebook]") {
  shared_files f;
  CHECK(f.widest <= 16);
  CHECK(f.widest > 8);      // 16 clusters of ~100 distinct values: more than 3 bits needed
  CHECK(f.dense[6] == 0);   // a file without int8_codebook records stays version 1.0
  CHECK(f.shared[6] == 2);  // int8_codebook needs 1.2
  CHECK(f.shared.size() < f.dense.size());
  shared_files again;  // the clustering is deterministic
  CHECK(again.shared == f.shared);
  aligned_bytes ad(f.dense), as(f.shared);
  c::model_file_reader rd, rs;
  REQUIRE(rd.open(ad.data(), ad.size).ok());
  REQUIRE(rs.open(as.data(), as.size).ok());
  for (std::size_t i = 0; i < 3; ++i) {
    c::layer_view v;
    REQUIRE(rs.layer(i, v).ok());
    CHECK(v.format == c::weight_format::int8_codebook);
    CHECK(v.int8.weights == nullptr);
    CHECK(v.in_place());
    CHECK(v.codebook_s8.bits == 4);
  }
  static flash_q<small_cnn> dense_dev;
  static shared_q<small_cnn> shared_dev;
  static either_q<small_cnn> either_dev;  // accepts both compressed forms
  REQUIRE(c::bind_model_file(rd, dense_dev).ok());
  REQUIRE(c::bind_model_file(rs, shared_dev).ok());
  REQUIRE(c::bind_model_file(rs, either_dev).ok());
  CHECK(either_dev.layer_is_shared<0>());
  CHECK(shared_dev.layer_is_shared<0>());  // conv2d
  CHECK(shared_dev.layer_is_shared<3>());  // depthwise
  CHECK(shared_dev.layer_is_shared<6>());  // dense
  CHECK_FALSE(shared_dev.layer_is_sparse<0>());
  check_same_logits(*f.q, f.xs, dense_dev, shared_dev, either_dev);
  // A flash_storage network, or one that accepts only pruned layers (so links no codebook
  // kernel), cannot run codebook records: an error code that says what to use.
  static flash_q<small_cnn> plain;
  const status st = c::bind_model_file(rs, plain);
  CHECK(st.code == errc::invalid_argument);
  CHECK(std::string(st.message).find("shared_flash_storage") != std::string::npos);
  static sparse_q<small_cnn> pruned_only;
  const status sp = c::bind_model_file(rs, pruned_only);
  CHECK(sp.code == errc::invalid_argument);
  CHECK(std::string(sp.message).find("shared_flash_storage") != std::string::npos);
  // when_smaller: with 16 values every layer is smaller as a codebook record; unshared, the
  // conv layer's ~70 distinct values (7-bit indices + codebook) are not smaller than its 72
  // int8 weights, so that layer stays a dense int8 record.
  c::model_file_builder mixed;
  c::add_int8_codebook_layers(mixed, *f.q, c::int8_csr_layers::when_smaller);
  CHECK(mixed.bytes() == f.shared);  // 16 values: every layer smaller
  auto q2 = std::make_unique<owning_q<small_cnn>>();
  std::vector<float> xs2;
  (void)int8_model_file(*q2, 7, xs2);
  c::model_file_builder m2;
  c::add_int8_codebook_layers(m2, *q2, c::int8_csr_layers::when_smaller);
  const auto b2 = m2.bytes();
  aligned_bytes a2(b2);
  c::model_file_reader r2;
  REQUIRE(r2.open(a2.data(), a2.size).ok());
  c::layer_view v0;
  REQUIRE(r2.layer(0, v0).ok());
  CHECK(v0.format == c::weight_format::int8);  // unshared conv: 4·18 weights, too many distinct values
}

TEST_CASE("int8 codebook model file: corrupt codebook records are rejected with the right error code",
          "[int8_model][int8_codebook][robustness]") {
  const std::vector<std::uint8_t> file = tiny_codebook_file();
  const std::size_t sec = section_offsets(file)[0];
  const auto at = [&](const std::vector<std::uint8_t>& b, c::array_role r) {
    return sec + le32(b, array_entry(b, sec, r) + 4);
  };
  const auto open_code = [](const std::vector<std::uint8_t>& b, const char* what) {
    aligned_bytes a(b);
    c::model_file_reader r;
    const status st = r.open(a.data(), a.size);
    INFO(what << ": " << (st.message ? st.message : "accepted"));
    return st;
  };
  REQUIRE(open_code(file, "valid").ok());
  REQUIRE(file[6] == 2);
  REQUIRE(file[sec + 28] == 3);           // index bits
  REQUIRE(le32(file, sec + 24) == 5);     // k
  const auto says_ = [](const status& st, const char* part) {
    return st.message != nullptr && std::string(st.message).find(part) != std::string::npos;
  };
  SECTION("the CRC covers the indices") {
    auto b = file;
    b[at(b, c::array_role::indices)] ^= 0x01;
    CHECK(open_code(b, "flipped index").code == errc::checksum_mismatch);
  }
  SECTION("an index not below k") {
    auto b = file;
    const std::size_t x = at(b, c::array_role::indices);
    b[x] = static_cast<std::uint8_t>((b[x] & ~7u) | 7u);  // index 0 := 7, k = 5
    recrc(b);
    const status st = open_code(b, "index 7");
    CHECK(st.code == errc::corrupt);
    CHECK(says_(st, "not below the codebook size"));
  }
  SECTION("index bits and k") {
    for (const std::uint8_t bits : {std::uint8_t{0}, std::uint8_t{2}, std::uint8_t{4}, std::uint8_t{9}}) {
      auto b = file;
      b[sec + 28] = bits;
      recrc(b);
      const status st = open_code(b, "bits");
      CHECK(st.code == errc::corrupt);
    }
    for (const std::uint32_t k : {0u, 4u, 9u, 300u}) {
      auto b = file;
      put32(b, sec + 24, k);
      recrc(b);
      const status st = open_code(b, "k");
      CHECK(st.code == errc::corrupt);
    }
    auto b = file;  // indices packed with another width than the layer's
    b[array_entry(b, sec, c::array_role::indices) + 3] = 4;
    recrc(b);
    CHECK(open_code(b, "width 4").code == errc::corrupt);
  }
  SECTION("array sizes") {
    auto b = file;
    put32(b, array_entry(b, sec, c::array_role::centroids) + 12, 4);  // 4 codebook values, 5 bytes
    recrc(b);
    CHECK(open_code(b, "codebook count").code == errc::corrupt);
    b = file;
    put32(b, array_entry(b, sec, c::array_role::indices) + 12, 11);  // 11 indices for 3·4 weights
    recrc(b);
    CHECK(open_code(b, "index count").code == errc::corrupt);
    b = file;
    b[array_entry(b, sec, c::array_role::centroids) + 1] = static_cast<std::uint8_t>(c::array_dtype::u8);
    recrc(b);
    const status st = open_code(b, "u8 codebook");
    CHECK(st.code == errc::corrupt);
    CHECK(says_(st, "i8"));
  }
  SECTION("a codebook value of -128") {
    auto b = file;
    b[at(b, c::array_role::centroids)] = 0x80;
    recrc(b);
    CHECK(open_code(b, "-128").code == errc::corrupt);
  }
  SECTION("int8_codebook in a file that claims version 1.1") {
    auto b = file;
    b[6] = 1;
    recrc(b);
    const status st = open_code(b, "1.1 with int8_codebook");
    CHECK(st.code == errc::corrupt);
    CHECK(says_(st, "1.2"));
  }
  SECTION("with CRCs bypassed, bit flips never crash and accepted mutants run") {
    flip_every_bit_and_run(file);
  }
}

// ---------------------------------------------------------------------------
// Huffman-coded weight-shared int8 (weight format 10, int8_huffman_codebook): decoded one
// output channel at a time by the kernels
// ---------------------------------------------------------------------------

namespace {
template <class Model>
using huffman_q = tnn::quantized_network<Model, tinylarge::int8_per_channel, tnn::huffman_shared_flash_storage>;

/// A one-layer int8 Huffman codebook file: 3×4 dense, k = 5, skewed index histogram.
std::vector<std::uint8_t> tiny_huffman_file() {
  const std::int8_t book[5] = {-5, 0, 2, 9, 127};
  const std::uint8_t idx[12] = {1, 1, 2, 1, 4, 1, 3, 1, 1, 0, 1, 2};
  const float scales[1] = {0.01f};
  const std::int32_t bias[3] = {1, -2, 3};
  c::layer_options o;
  o.indices = c::symbol_encoding::huffman;
  c::model_file_builder b;
  b.add_int8_codebook(3, 4, book, idx, scales, {0.1f, 0}, {0.2f, -3}, bias, o);
  return b.bytes();
}
}  // namespace

TEST_CASE("int8 Huffman codebook model file: huffman_shared_flash_storage decodes a row at a time and computes the "
          "dense int8 bits",
          "[int8_model][int8_huffman_codebook]") {
  shared_files f;
  c::model_file_builder hb;
  c::add_int8_huffman_codebook_layers(hb, *f.q);
  const std::vector<std::uint8_t> huff = hb.bytes();
  CHECK(huff[6] == 3);  // int8_huffman_codebook needs 1.3
  aligned_bytes ad(f.dense), ah(huff), as(f.shared);
  c::model_file_reader rd, rh, rs;
  REQUIRE(rd.open(ad.data(), ad.size).ok());
  REQUIRE(rh.open(ah.data(), ah.size).ok());
  REQUIRE(rs.open(as.data(), as.size).ok());
  for (std::size_t i = 0; i < 3; ++i) {
    c::layer_view v, vs;
    REQUIRE(rh.layer(i, v).ok());
    REQUIRE(rs.layer(i, vs).ok());
    CHECK(v.format == c::weight_format::int8_huffman_codebook);
    CHECK(v.in_place());
    CHECK(v.int8.weights == nullptr);
    REQUIRE(v.huffman_s8.row_bits != nullptr);
    CHECK(v.huffman_s8.row_bits[0] == 0);
    CHECK(v.huffman_s8.k == le32(f.shared, section_offsets(f.shared)[i] + 24));
    // The decoded indices are the packed ones, row by row (decode_range on each row).
    tinylarge::kernels::huffman_s8_decoder dec;
    tinylarge::kernels::huffman_codebook_s8_matrix m{v.rows, v.cols, nullptr, 0, v.huffman_s8.row_bits,
                                                     v.huffman_s8.codebook, nullptr};
    REQUIRE(tinylarge::kernels::huffman_s8_prepare(v.huffman_s8.stream, v.huffman_s8.stream_bytes, dec, m).ok());
    std::vector<std::uint8_t> row(v.cols);
    for (std::size_t o = 0; o < v.rows; ++o) {
      REQUIRE(dec.decode_range(m.payload, m.payload_bytes, m.row_bits[o], m.row_bits[o + 1], v.cols, row.data()).ok());
      for (std::size_t cix = 0; cix < v.cols; ++cix)
        CHECK(row[cix] == c::packed_get(vs.codebook_s8.packed, o * v.cols + cix, vs.codebook_s8.bits));
      // One bit short or long: the row's codes do not end at its end.
      CHECK_FALSE(dec.decode_range(m.payload, m.payload_bytes, m.row_bits[o], m.row_bits[o + 1] - 1, v.cols,
                                   row.data()).ok());
    }
  }
  static flash_q<small_cnn> dense_dev;
  static huffman_q<small_cnn> huff_dev;
  REQUIRE(c::bind_model_file(rd, dense_dev).ok());
  REQUIRE(c::bind_model_file(rh, huff_dev).ok());
  CHECK(huff_dev.layer_is_huffman<0>());  // conv2d
  CHECK(huff_dev.layer_is_huffman<3>());  // depthwise (multiplier 2)
  CHECK(huff_dev.layer_is_huffman<6>());  // dense
  // The arena holds the decoded row too: conv 3·patch of scratch instead of 2·patch.
  CHECK(huffman_q<small_cnn>::arena_bytes >= flash_q<small_cnn>::arena_bytes);
  check_same_logits(*f.q, f.xs, dense_dev, huff_dev);
  // Each storage refuses the other's records, naming the storage to use.
  static shared_q<small_cnn> shared_only;
  const status st = c::bind_model_file(rh, shared_only);
  CHECK(st.code == errc::invalid_argument);
  CHECK(std::string(st.message).find("huffman_shared_flash_storage") != std::string::npos);
  static flash_q<small_cnn> plain;
  CHECK(c::bind_model_file(rh, plain).code == errc::invalid_argument);
  static huffman_q<small_cnn> huff_only;
  const status sh = c::bind_model_file(rs, huff_only);
  CHECK(sh.code == errc::invalid_argument);
  CHECK(std::string(sh.message).find("nn::shared_flash_storage") != std::string::npos);
  REQUIRE(c::bind_model_file(rd, huff_only).ok());  // dense int8 records run as with flash_storage
  CHECK_FALSE(huff_only.layer_is_huffman<0>());
  // The host loader reads the record in place too.
  const c::model_file mf = c::model_file::from_bytes(huff);
  CHECK(mf.layer(2).format == c::weight_format::int8_huffman_codebook);
}

TEST_CASE("int8 Huffman codebook model file: corrupt row offsets and streams are rejected with the right error code",
          "[int8_model][int8_huffman_codebook][robustness]") {
  const std::vector<std::uint8_t> file = tiny_huffman_file();
  const std::size_t sec = section_offsets(file)[0];
  const auto at = [&](const std::vector<std::uint8_t>& b, c::array_role r) {
    return sec + le32(b, array_entry(b, sec, r) + 4);
  };
  // open() checks the structure; verify_huffman_rows decodes every row (bind_model_file calls it).
  const auto open_code = [](const std::vector<std::uint8_t>& b, const char* what) {
    aligned_bytes a(b);
    c::model_file_reader r;
    status st = r.open(a.data(), a.size);
    if (st) st = r.verify_huffman_rows(0);
    INFO(what << ": " << (st.message ? st.message : "accepted"));
    return st;
  };
  const auto says_ = [](const status& st, const char* part) {
    return st.message != nullptr && std::string(st.message).find(part) != std::string::npos;
  };
  REQUIRE(open_code(file, "valid").ok());
  REQUIRE(file[6] == 3);
  REQUIRE(file[sec + 14] == 10);
  const std::size_t rb = at(file, c::array_role::row_bits);
  REQUIRE(le32(file, rb) == 0);
  {  // the tiny file runs: the dense int8 reference with the codebook values
    aligned_bytes a(file);
    c::model_file_reader r;
    REQUIRE(r.open(a.data(), a.size).ok());
    c::layer_view v;
    REQUIRE(r.layer(0, v).ok());
    const std::int8_t book[5] = {-5, 0, 2, 9, 127};
    const std::uint8_t idx[12] = {1, 1, 2, 1, 4, 1, 3, 1, 1, 0, 1, 2};
    std::int8_t wd[12];
    for (int i = 0; i < 12; ++i) wd[i] = book[idx[i]];
    const std::int8_t x[4] = {3, -7, 100, -128};
    std::int8_t y[3], yref[3], row[4];
    tinylarge::kernels::huffman_s8_decoder dec;
    tinylarge::kernels::huffman_codebook_s8_matrix w{3, 4, nullptr, 0, v.huffman_s8.row_bits, v.huffman_s8.codebook,
                                                     nullptr};
    REQUIRE(tinylarge::kernels::huffman_s8_prepare(v.huffman_s8.stream, v.huffman_s8.stream_bytes, dec, w).ok());
    tinylarge::kernels::huffman_dense_s8(tinylarge::arch::scalar{}, w, x, v.s8_params(), y, row);
    tinylarge::kernels::dense_s8(tinylarge::arch::scalar{}, 1, 3, 4, x, wd, v.s8_params(), yref);
    CHECK(std::equal(y, y + 3, yref));
  }
  SECTION("the CRC covers the offsets") {
    auto b = file;
    b[rb + 4] ^= 0x01;
    CHECK(open_code(b, "flipped offset").code == errc::checksum_mismatch);
  }
  SECTION("a first offset other than 0") {
    auto b = file;
    put32(b, rb, 1);
    recrc(b);
    const status st = open_code(b, "first 1");
    CHECK(st.code == errc::corrupt);
    CHECK(says_(st, "first row bit offset"));
  }
  SECTION("a row boundary moved by one bit") {
    for (const int d : {-1, 1}) {
      auto b = file;
      put32(b, rb + 4, static_cast<std::uint32_t>(static_cast<int>(le32(b, rb + 4)) + d));
      recrc(b);
      const status st = open_code(b, "moved boundary");
      CHECK(st.code == errc::corrupt);
      // open() alone accepts it (the lengths stay plausible); binding decodes the rows and refuses it.
      aligned_bytes a(b);
      c::model_file_reader r;
      REQUIRE(r.open(a.data(), a.size).ok());
      CHECK(c::model_file_reader{}.verify_huffman_rows(0).code == errc::invalid_argument);  // not open
      const status vs = r.verify_huffman_rows(0);
      CHECK(vs.code == errc::corrupt);
    }
  }
  SECTION("decreasing offsets, a row shorter than one bit per index, a last offset that is not the end") {
    auto b = file;
    put32(b, rb + 8, le32(b, rb + 4) - 1);
    recrc(b);
    CHECK(open_code(b, "decreasing").code == errc::corrupt);
    b = file;
    put32(b, rb + 4, 3);  // row 0: 3 bits for 4 indices
    recrc(b);
    CHECK(says_(open_code(b, "short row"), "bits per index"));
    b = file;
    put32(b, rb + 12, le32(b, rb + 12) + 8);
    recrc(b);
    CHECK(says_(open_code(b, "past the end"), "end of the Huffman payload"));
  }
  SECTION("missing or mistyped offsets") {
    auto b = file;
    put32(b, array_entry(b, sec, c::array_role::row_bits) + 12, 3);  // 3 offsets for 3 rows
    recrc(b);
    CHECK(open_code(b, "3 offsets").code == errc::corrupt);
    b = file;
    b[array_entry(b, sec, c::array_role::row_bits)] = static_cast<std::uint8_t>(c::array_role::left);
    recrc(b);
    CHECK(open_code(b, "no row_bits").code == errc::corrupt);
  }
  SECTION("an alphabet larger than k") {
    auto b = file;
    const std::size_t x = at(b, c::array_role::indices);
    REQUIRE(b[x] == 5);  // u16 alphabet = k
    REQUIRE(b[x + 2] <= 3);  // ≤ 3 bits per code length: 6 lengths pack into as many bytes as 5
    b[x] = 6;               // a sixth symbol (length 0, from the zero padding): alphabet 6 > k = 5
    recrc(b);
    const status st = open_code(b, "alphabet 6, k 5");
    CHECK(st.code == errc::corrupt);
    CHECK(says_(st, "alphabet is larger"));
  }
  SECTION("int8_huffman_codebook in a file that claims version 1.2") {
    auto b = file;
    b[6] = 2;
    recrc(b);
    const status st = open_code(b, "1.2 with int8_huffman_codebook");
    CHECK(st.code == errc::corrupt);
    CHECK(says_(st, "1.3"));
  }
  SECTION("with CRCs bypassed, bit flips never crash and accepted mutants run") {
    flip_every_bit_and_run(file);
  }
}

// ---------------------------------------------------------------------------
// Residual blocks (layer kind add, file version 1.4)
// ---------------------------------------------------------------------------

namespace {
/// Two residual blocks: conv + relu + conv closed by an add with a fused relu, and depthwise +
/// relu6 + 1×1 conv closed by a plain add. The int8 graph: conv, relu, [conv, relu, conv, add],
/// relu, pool, [depthwise, relu6, conv, add], flatten, dense — 8 records.
using res_cnn = tnn::sequential<tnn::input<8, 8, 2>, tnn::conv2d<4, 3, 1, 1>, tnn::relu,
                                tnn::residual<tnn::conv2d<4, 3, 1, 1>, tnn::relu, tnn::conv2d<4, 3, 1, 1>>, tnn::relu,
                                tnn::max_pool2d<2>,
                                tnn::residual<tnn::depthwise_conv2d<3, 1, 1>, tnn::relu6, tnn::conv2d<4, 1>>,
                                tnn::flatten, tnn::dense<64, 5>>;
static_assert(c::model_file_record_count<res_cnn> == 8 && c::weighted_layer_count<res_cnn> == 6);
constexpr std::size_t res_add_records[2] = {3, 6};

/// On 32 inputs (16 calibration samples and 16 fresh ones), `net` computes the logits of `q`
/// bit for bit, and they are not all the output zero point.
template <class Owning, class Net>
void check_same_residual_logits(Owning& q, const std::vector<float>& xs, Net& net) {
  tinylarge::rng g(77);
  std::size_t differ_from_zero = 0;
  for (std::size_t s = 0; s < 32; ++s) {
    std::vector<std::int8_t> xq(res_cnn::input_size);
    for (std::size_t i = 0; i < xq.size(); ++i)
      xq[i] = tinylarge::quantize(s < 16 ? xs[s * res_cnn::input_size + i] : g.uniform(-1.2f, 1.2f), q.input_params());
    const std::int8_t* yo = q.forward(xq.data());
    const std::vector<std::int8_t> owning(yo, yo + res_cnn::output_size);
    const std::int8_t* yd = net.forward(xq.data());
    CHECK(std::equal(owning.begin(), owning.end(), yd));
    for (std::size_t i = 0; i < owning.size(); ++i) differ_from_zero += owning[i] != q.output_params().zero_point;
  }
  CHECK(differ_from_zero > 0);
}

/// Offset of the first byte of array `role` of the section at `sec`.
std::size_t array_data(const std::vector<std::uint8_t>& b, std::size_t sec, c::array_role role) {
  return sec + le32(b, array_entry(b, sec, role) + 4);
}
}  // namespace

TEST_CASE("int8 residual model file: a bound network computes the owning residual network's bits",
          "[int8_model][residual]") {
  auto q = std::make_unique<owning_q<res_cnn>>();
  std::vector<float> xs;
  const std::vector<std::uint8_t> file = int8_model_file(*q, 5, xs);
  std::printf("int8 residual model file (2 blocks, 8 records): %zu bytes\n", file.size());
  CHECK(file[6] == c::model_file_layout::add_minor);  // an add record needs 1.4
  {  // a model without residual blocks is still written as 1.0
    auto plain = std::make_unique<owning_q<small_cnn>>();
    std::vector<float> unused;
    CHECK(int8_model_file(*plain, 3, unused)[6] == 0);
  }
  aligned_bytes a(file);
  c::model_file_reader r;
  REQUIRE(r.open(a.data(), a.size).ok());
  REQUIRE(r.layer_count() == c::model_file_record_count<res_cnn>);
  const c::activation_kind add_act[2] = {c::activation_kind::relu, c::activation_kind::none};
  for (std::size_t k = 0; k < 2; ++k) {
    c::layer_view v;
    REQUIRE(r.layer(res_add_records[k], v).ok());
    CHECK(v.kind == c::layer_kind::add);
    CHECK(v.format == c::weight_format::none);
    CHECK(v.activation == add_act[k]);
    CHECK(v.rows == (k == 0 ? 8 * 8 * 4 : 4 * 4 * 4));
    CHECK(v.cols == 1);
    CHECK(v.add.size == v.rows);
    CHECK(v.in_place());
    // The multipliers the writer computed are the owning network's.
    const tinylarge::kernels::add_s8_params& p = q->residual_add(k);
    CHECK(v.add.params().input1_multiplier == p.input1_multiplier);
    CHECK(v.add.params().input2_multiplier == p.input2_multiplier);
    CHECK(v.add.params().output_multiplier == p.output_multiplier);
    CHECK(v.add.params().input1_shift == p.input1_shift);
    CHECK(v.add.params().input2_shift == p.input2_shift);
    CHECK(v.add.params().output_shift == p.output_shift);
    CHECK(v.add.params().input1_offset == p.input1_offset);
    CHECK(v.add.params().input2_offset == p.input2_offset);
    CHECK(v.add.params().output_offset == p.output_offset);
    CHECK(v.add.params().act_min == p.act_min);
    CHECK(v.add.params().act_max == p.act_max);
  }
  static flash_q<res_cnn> dev;
  REQUIRE(c::bind_model_file(r, dev).ok());
  for (std::size_t t = 0; t < flash_q<res_cnn>::tensor_count; ++t) {
    INFO("tensor " << t);
    CHECK(dev.tensor_params(t) == q->tensor_params(t));
  }
  check_same_residual_logits(*q, xs, dev);
  // The other record forms bind with residual adds too: `bytes` bound to `net` computes q's bits.
  const auto bind_compressed = [&](const std::vector<std::uint8_t>& bytes, auto& net) {
    CHECK(bytes[6] == c::model_file_layout::add_minor);
    aligned_bytes ab(bytes);
    c::model_file_reader rb;
    REQUIRE(rb.open(ab.data(), ab.size).ok());
    REQUIRE(c::bind_model_file(rb, net).ok());
    check_same_residual_logits(*q, xs, net);
  };
  // Weight-shared int8 codebook records.
  (void)c::share_int8_weights(*q, 6);
  c::model_file_builder sb;
  c::add_int8_codebook_layers(sb, *q);
  static shared_q<res_cnn> shared_dev;
  bind_compressed(sb.bytes(), shared_dev);
  CHECK(shared_dev.layer_is_shared<2>());  // the first conv inside the first block
  // Pruned int8 CSR records: the blocks' inner layers are pruned like the others.
  const std::size_t zeros = c::prune_int8_weights(*q, 0.5);
  CHECK(zeros >= c::prune_count(tnn::detail::int8_graph<res_cnn>::weight_count, 0.5) - 6);  // 6 layers, each rounded
  c::model_file_builder pb;
  c::add_int8_csr_layers(pb, *q);
  static sparse_q<res_cnn> sparse_dev;
  bind_compressed(pb.bytes(), sparse_dev);
  CHECK(sparse_dev.layer_is_sparse<4>());  // the second conv inside the first block
  // The host loader reads it.
  const c::model_file mf = c::model_file::from_bytes(file);
  CHECK(mf.layer(3).kind == c::layer_kind::add);
}

TEST_CASE("int8 residual model file: wrong add records, an old minor version and truncations are rejected",
          "[int8_model][residual][robustness]") {
  auto q = std::make_unique<owning_q<res_cnn>>();
  std::vector<float> xs;
  const std::vector<std::uint8_t> good = int8_model_file(*q, 5, xs);
  const std::size_t add0 = section_offsets(good)[res_add_records[0]];
  const auto at = [&](c::array_role role) { return array_data(good, add0, role); };
  // `good` changed by `mutate`, CRCs recomputed, opened and (if the reader accepts it) bound.
  const auto bind_mutant = [&](const std::function<void(std::vector<std::uint8_t>&)>& mutate, const char* what) {
    auto b = good;
    mutate(b);
    recrc(b);
    aligned_bytes a(b);
    c::model_file_reader r;
    status st = r.open(a.data(), a.size);
    static flash_q<res_cnn> dev;
    if (st) st = c::bind_model_file(r, dev);
    INFO(what << ": " << (st.message ? st.message : "accepted"));
    REQUIRE_FALSE(st.ok());
    return st;
  };
  const auto shape_mismatch = [&](const std::function<void(std::vector<std::uint8_t>&)>& mutate, const char* what,
                                  const char* message_part) {
    const status st = bind_mutant(mutate, what);
    CHECK(st.code == errc::shape_mismatch);
    CHECK(says(st, message_part));
  };
  {
    aligned_bytes a(good);
    c::model_file_reader r;
    REQUIRE(r.open(a.data(), a.size).ok());
    static flash_q<res_cnn> dev;
    REQUIRE(c::bind_model_file(r, dev).ok());
  }
  SECTION("valid records of another model: only the binder can notice") {
    shape_mismatch([&](auto& b) { put32(b, add0 + 16, 8 * 8 * 4 - 1); }, "255 elements", "element count");
    // the next float up: still positive and finite
    shape_mismatch([&](auto& b) { put32(b, at(c::array_role::act_scales), le32(b, at(c::array_role::act_scales)) + 1); },
                   "input1 scale", "first input");
    shape_mismatch(
        [&](auto& b) {
          const auto z = static_cast<std::int32_t>(le32(b, at(c::array_role::zero_points) + 4));
          put32(b, at(c::array_role::zero_points) + 4, static_cast<std::uint32_t>(z == 127 ? 126 : z + 1));
        },
        "input2 zero point", "second input");
    shape_mismatch([&](auto& b) { b[add0 + 13] = static_cast<std::uint8_t>(c::activation_kind::relu6); }, "relu6",
                   "fused relu");
  }
  SECTION("an add where the compiled model has a weighted layer") {
    const auto o = section_offsets(good);
    shape_mismatch(
        [&](auto& b) {  // records 2 (the block's second conv) and 3 (its add) swapped
          std::vector<std::uint8_t> swapped(good.begin(), good.begin() + static_cast<std::ptrdiff_t>(o[2]));
          swapped.insert(swapped.end(), good.begin() + static_cast<std::ptrdiff_t>(o[3]),
                         good.begin() + static_cast<std::ptrdiff_t>(o[4]));
          swapped.insert(swapped.end(), good.begin() + static_cast<std::ptrdiff_t>(o[2]),
                         good.begin() + static_cast<std::ptrdiff_t>(o[3]));
          swapped.insert(swapped.end(), good.begin() + static_cast<std::ptrdiff_t>(o[4]), good.end());
          b = swapped;
        },
        "add before the block's second conv", "residual add where");
  }
  SECTION("a residual file bound to a model without the block, and a plain file bound to the residual model") {
    aligned_bytes a(good);
    c::model_file_reader r;
    REQUIRE(r.open(a.data(), a.size).ok());
    static flash_q<small_cnn> plain;
    CHECK(c::bind_model_file(r, plain).code == errc::shape_mismatch);
    auto o = std::make_unique<owning_q<small_cnn>>();
    std::vector<float> unused;
    const auto plain_file = int8_model_file(*o, 3, unused);
    shape_mismatch([&](auto& b) { b = plain_file; }, "small_cnn into res_cnn", "layer count");
  }
  SECTION("the reader's checks of an add record") {
    const auto corrupt = [&](const std::function<void(std::vector<std::uint8_t>&)>& mutate, const char* what) {
      CHECK(bind_mutant(mutate, what).code == errc::corrupt);
    };
    corrupt([&](auto& b) { put32(b, at(c::array_role::shifts), 1); }, "input1 rescaled by more than 1");
    corrupt([&](auto& b) { put32(b, add0 + 20, 2); }, "cols 2");
    corrupt([&](auto& b) { b[add0 + 14] = static_cast<std::uint8_t>(c::weight_format::int8); }, "a weight format");
    corrupt([&](auto& b) { b[add0 + 13] = static_cast<std::uint8_t>(c::activation_kind::tanh); }, "tanh");
    corrupt([&](auto& b) { put32(b, at(c::array_role::zero_points) + 8, 128); }, "output zero point 128");
  }
  SECTION("an add record in a file stamped 1.3 (or older)") {
    for (const int minor : {0, 1, 2, 3}) {
      const status st = bind_mutant([&](auto& b) { b[6] = static_cast<std::uint8_t>(minor); }, "old minor");
      CHECK(st.code == errc::corrupt);
      CHECK(says(st, "it needs 1.4"));
    }
  }
  SECTION("every truncation is an error, also with the declared size patched and the CRCs bypassed") {
    c::model_file_reader r;
    for (std::size_t n = 0; n < good.size(); ++n) {
      aligned_bytes cut(good, n);
      const status s = r.open(cut.data(), cut.size);
      INFO("length " << n);
      REQUIRE_FALSE(s.ok());
      CHECK((s.code == errc::truncated || n < 4));
    }
    c::model_file_options nocrc;
    nocrc.verify_crc = false;
    for (std::size_t n = 32; n < good.size(); ++n) {
      std::vector<std::uint8_t> cut(good.begin(), good.begin() + static_cast<std::ptrdiff_t>(n));
      put32(cut, 16, static_cast<std::uint32_t>(n));
      aligned_bytes a(cut);
      INFO("patched length " << n);
      REQUIRE_FALSE(r.open(a.data(), a.size, nocrc).ok());
    }
  }
  SECTION("with CRCs bypassed, bit flips of a lone add record never crash and accepted mutants run") {
    c::model_file_builder one;
    one.add_int8_add(10, {0.05f, -3}, {0.125f, 7}, {0.1f, -128}, c::activation_kind::relu);
    const std::vector<std::uint8_t> file = one.bytes();
    CHECK(file[6] == c::model_file_layout::add_minor);
    CHECK(file.size() == 32 + 176 + 8);  // header, the 176-byte record (docs), end marker
    flip_every_bit_and_run(file);
  }
}
