// Tests of the data and I/O layer: IDX reader (Fashion-MNIST and malformed
// buffers), batching, non-IID partitioners, the traffic-task and fading-channel
// generators, CRC-32,
// .npy/.npz (with a NumPy round trip).
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <complex>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <numbers>
#include <numeric>
#include <set>
#include <string>
#include <vector>

#include "tinylarge/core/crc32.hpp"
#include "tinylarge/data/batch.hpp"
#include "tinylarge/data/fading.hpp"
#include "tinylarge/data/idx.hpp"
#include "tinylarge/data/partition.hpp"
#include "tinylarge/data/traffic.hpp"
#include "tinylarge/io/npy.hpp"
#include "tinylarge/io/npz.hpp"
#include "tinylarge/transport/checkpoint.hpp"
#include "data/child_process.hpp"

namespace {

namespace fs = std::filesystem;
using bytes = std::vector<std::uint8_t>;

/// A scratch directory unique to this process, removed at exit.
const fs::path& scratch_dir() {
  static const fs::path dir = [] {
    fs::path d = fs::temp_directory_path() / ("tinylarge_test_data_" + std::to_string(::getpid()));
    fs::create_directories(d);
    return d;
  }();
  static const struct cleanup {
    ~cleanup() {
      std::error_code ec;
      fs::remove_all(dir, ec);
    }
  } remover;
  (void)remover;
  return dir;
}

std::string scratch(const std::string& name) { return (scratch_dir() / name).string(); }

void write_bytes(const std::string& path, const bytes& b) {
  std::ofstream f(path, std::ios::binary);
  f.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
  REQUIRE(f.good());
}

void put_be32(bytes& b, std::uint32_t v) {
  for (int s = 24; s >= 0; s -= 8) b.push_back(static_cast<std::uint8_t>(v >> s));
}

/// An IDX image file of `n` images of r × c with pixel (i, p) = (7·i + p) mod 256.
bytes make_idx_images(std::uint32_t n, std::uint32_t r, std::uint32_t c) {
  bytes b{0, 0, 0x08, 3};
  put_be32(b, n);
  put_be32(b, r);
  put_be32(b, c);
  for (std::uint32_t i = 0; i < n; ++i)
    for (std::uint32_t p = 0; p < r * c; ++p)
      b.push_back(static_cast<std::uint8_t>((7 * i + p) % 256));
  return b;
}

/// An IDX label file of `n` labels, label i = i mod 10.
bytes make_idx_labels(std::uint32_t n) {
  bytes b{0, 0, 0x08, 1};
  put_be32(b, n);
  for (std::uint32_t i = 0; i < n; ++i) b.push_back(static_cast<std::uint8_t>(i % 10));
  return b;
}

/// gzip-compress with zlib (windowBits 15 + 16 selects the gzip wrapper).
bytes gzip_bytes(const bytes& in) {
  z_stream z{};
  REQUIRE(deflateInit2(&z, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) == Z_OK);
  bytes out(deflateBound(&z, static_cast<uLong>(in.size())) + 32);
  z.next_in = const_cast<Bytef*>(in.data());
  z.avail_in = static_cast<uInt>(in.size());
  z.next_out = out.data();
  z.avail_out = static_cast<uInt>(out.size());
  REQUIRE(deflate(&z, Z_FINISH) == Z_STREAM_END);
  out.resize(z.total_out);
  deflateEnd(&z);
  return out;
}

#if TINYLARGE_HAS_EXCEPTIONS
/// Run `f`, expect an exception of type E whose message contains every needle.
template <class E, class F>
void require_throws_with(F&& f, std::initializer_list<std::string> needles) {
  try {
    f();
    FAIL("expected an exception");
  } catch (const E& e) {
    const std::string what = e.what();
    INFO("message: " << what);
    for (const auto& n : needles) CHECK(what.find(n) != std::string::npos);
  }
}
#endif

}  // namespace

// ===========================================================================
// IDX
// ===========================================================================

TEST_CASE("IDX: a valid synthetic pair decodes to the expected values", "[data][idx]") {
  const bytes im = make_idx_images(5, 3, 4), lb = make_idx_labels(5);
  tl::data::idx_view v;
  REQUIRE(tl::data::parse_idx_images(im, v).ok());
  CHECK(v.magic == tl::data::idx_images_magic);
  CHECK(v.count() == 5);
  CHECK(v.dims[1] == 3);
  CHECK(v.dims[2] == 4);
  CHECK(v.payload == im.data() + 16);
  tl::data::dataset ds;
  REQUIRE(tl::data::decode_idx(im, lb, ds).ok());
  REQUIRE(ds.count == 5);
  CHECK(ds.rows == 3);
  CHECK(ds.cols == 4);
  CHECK(ds.features() == 12);
  REQUIRE(ds.images.size() == 60);
  for (std::size_t i = 0; i < 5; ++i) {
    CHECK(ds.labels[i] == i % 10);
    for (std::size_t p = 0; p < 12; ++p)
      CHECK(ds.image(i)[p] == Approx(static_cast<float>((7 * i + p) % 256) / 255.0f));
  }
}

TEST_CASE("IDX: every truncation of a valid file is an error, never a crash", "[data][idx]") {
  const bytes im = make_idx_images(3, 2, 2), lb = make_idx_labels(3);
  for (std::size_t len = 0; len < im.size(); ++len) {
    const bytes cut(im.begin(), im.begin() + static_cast<std::ptrdiff_t>(len));
    tl::data::dataset ds;
    const tl::status s = tl::data::decode_idx(cut, lb, ds);
    INFO("image file cut to " << len << " bytes");
    CHECK_FALSE(s.ok());
    CHECK(s.code == tl::errc::truncated);
  }
  for (std::size_t len = 0; len < lb.size(); ++len) {
    const bytes cut(lb.begin(), lb.begin() + static_cast<std::ptrdiff_t>(len));
    tl::data::dataset ds;
    const tl::status s = tl::data::decode_idx(im, cut, ds);
    INFO("label file cut to " << len << " bytes");
    CHECK(s.code == tl::errc::truncated);
  }
}

TEST_CASE("IDX: malformed headers are rejected with the right code", "[data][idx]") {
  const bytes good = make_idx_images(2, 2, 2), lb = make_idx_labels(2);
  tl::data::dataset ds;
  auto decode = [&](const bytes& im) { return tl::data::decode_idx(im, lb, ds); };

  bytes b = good;
  b[0] = 1;  // magic must start with 00 00
  CHECK(decode(b).code == tl::errc::corrupt);
  b = good;
  b[2] = 0x0D;  // float32 elements: valid IDX, unsupported here
  CHECK(decode(b).code == tl::errc::unsupported_version);
  b = good;
  b[2] = 0x42;  // not an IDX type at all
  CHECK(decode(b).code == tl::errc::corrupt);
  b = good;
  b[3] = 1;  // a label header where images are expected
  CHECK(decode(b).code == tl::errc::corrupt);
  CHECK(decode(lb).code == tl::errc::corrupt);

  b = good;
  b.push_back(0);  // trailing byte
  CHECK(decode(b).code == tl::errc::corrupt);

  // Count mismatch between images and labels.
  CHECK(tl::data::decode_idx(good, make_idx_labels(3), ds).code == tl::errc::corrupt);

  // Huge dimensions are refused before any allocation: the payload is absent.
  bytes huge{0, 0, 0x08, 3};
  put_be32(huge, 0xFFFFFFFFu);
  put_be32(huge, 0xFFFFFFFFu);
  put_be32(huge, 0xFFFFFFFFu);
  CHECK(decode(huge).code == tl::errc::too_large);
  bytes wide{0, 0, 0x08, 3};
  put_be32(wide, 1);
  put_be32(wide, 28);
  put_be32(wide, 100000);  // wider than idx_limits::max_cols
  CHECK(decode(wide).code == tl::errc::too_large);
  // Within each limit, but the product exceeds max_bytes.
  tl::data::idx_limits small;
  small.max_bytes = 1000;
  CHECK(tl::data::decode_idx(make_idx_images(2, 20, 30), make_idx_labels(2), ds, small).code ==
        tl::errc::too_large);
  bytes zero_rows{0, 0, 0x08, 3};
  put_be32(zero_rows, 1);
  put_be32(zero_rows, 0);
  put_be32(zero_rows, 5);
  CHECK(decode(zero_rows).code == tl::errc::corrupt);
  // Declared huge count, few bytes present: truncated, not a crash.
  bytes big_count{0, 0, 0x08, 3};
  put_be32(big_count, 50'000'000);
  put_be32(big_count, 28);
  put_be32(big_count, 28);
  CHECK(decode(big_count).code == tl::errc::too_large);  // 50e6·784 > 4 GiB
  bytes many{0, 0, 0x08, 3};
  put_be32(many, 1'000'000);
  put_be32(many, 28);
  put_be32(many, 28);
  CHECK(decode(many).code == tl::errc::truncated);
}

TEST_CASE("IDX: every single-bit flip in the header is detected or harmless", "[data][idx]") {
  const bytes good = make_idx_images(4, 3, 3), lb = make_idx_labels(4);
  for (std::size_t byte = 0; byte < 16; ++byte)
    for (int bit = 0; bit < 8; ++bit) {
      bytes b = good;
      b[byte] ^= static_cast<std::uint8_t>(1u << bit);
      tl::data::dataset ds;
      const tl::status s = tl::data::decode_idx(b, lb, ds);
      INFO("byte " << byte << " bit " << bit);
      // Any flip of the header changes the magic or a dimension; with the file
      // length fixed, none of them can produce a consistent file.
      CHECK_FALSE(s.ok());
    }
}

TEST_CASE("IDX: gzip and raw files load identically; gzip damage is reported", "[data][idx]") {
  const bytes im = make_idx_images(6, 4, 5), lb = make_idx_labels(6);
  write_bytes(scratch("im.idx"), im);
  write_bytes(scratch("lb.idx"), lb);
  write_bytes(scratch("im.idx.gz"), gzip_bytes(im));
  write_bytes(scratch("lb.idx.gz"), gzip_bytes(lb));
  const auto raw = tl::data::load_idx(scratch("im.idx"), scratch("lb.idx"));
  const auto gz = tl::data::load_idx(scratch("im.idx.gz"), scratch("lb.idx.gz"));
  CHECK(raw.count == 6);
  CHECK(raw.images == gz.images);
  CHECK(raw.labels == gz.labels);

  // Concatenated gzip members decompress to the concatenation.
  const bytes half1(im.begin(), im.begin() + 40), half2(im.begin() + 40, im.end());
  bytes two = gzip_bytes(half1);
  const bytes g2 = gzip_bytes(half2);
  two.insert(two.end(), g2.begin(), g2.end());
  bytes plain;
  REQUIRE(tl::io::gunzip(two, plain, 1 << 20).ok());
  CHECK(plain == im);

  // Every truncation of the gzip stream is an error (never a crash).
  const bytes gzim = gzip_bytes(im);
  for (std::size_t len = 0; len < gzim.size(); ++len) {
    const bytes cut(gzim.begin(), gzim.begin() + static_cast<std::ptrdiff_t>(len));
    const tl::status s = tl::io::gunzip(cut, plain, 1 << 20);
    INFO("gzip cut to " << len << " of " << gzim.size() << " bytes");
    CHECK_FALSE(s.ok());
  }
  // A flipped bit in the CRC-32 trailer is caught.
  bytes bad = gzim;
  bad[bad.size() - 6] ^= 0x10;
  CHECK(tl::io::gunzip(bad, plain, 1 << 20).code == tl::errc::corrupt);
  // Trailing garbage after the stream.
  bad = gzim;
  bad.push_back(0x00);
  CHECK(tl::io::gunzip(bad, plain, 1 << 20).code == tl::errc::corrupt);
  // Decompression bomb: the limit stops inflation.
  const bytes zeros(1 << 20, 0);
  CHECK(tl::io::gunzip(gzip_bytes(zeros), plain, 4096).code == tl::errc::too_large);
  CHECK(tl::io::gunzip(gzip_bytes(zeros), plain, (1 << 20) - 1).code == tl::errc::too_large);
  REQUIRE(tl::io::gunzip(gzip_bytes(zeros), plain, 1 << 20).ok());  // exactly at the limit
  CHECK(plain == zeros);
  REQUIRE(tl::io::gunzip(gzip_bytes({}), plain, 0).ok());  // empty content, zero limit
  CHECK(plain.empty());
  // Two concatenated members, limit = their total decompressed size.
  REQUIRE(tl::io::gunzip(two, plain, im.size()).ok());
  CHECK(tl::io::gunzip(two, plain, im.size() - 1).code == tl::errc::too_large);
}

#if TINYLARGE_HAS_EXCEPTIONS
TEST_CASE("IDX: host loader errors name the file and the problem", "[data][idx]") {
  const bytes im = make_idx_images(3, 2, 2), lb = make_idx_labels(3);
  write_bytes(scratch("e_im.idx"), im);
  write_bytes(scratch("e_lb.idx"), lb);

  require_throws_with<tl::io_error>(
      [&] { (void)tl::data::load_idx(scratch("missing.idx"), scratch("e_lb.idx")); },
      {"missing.idx", "No such file"});

  bytes cut(im.begin(), im.end() - 3);
  write_bytes(scratch("cut.idx"), cut);
  require_throws_with<tl::format_error>(
      [&] { (void)tl::data::load_idx(scratch("cut.idx"), scratch("e_lb.idx")); },
      {"cut.idx", "truncated", "3 x 2 x 2 = 12 bytes", "only 9"});

  // Swapped paths: the message suggests the fix.
  require_throws_with<tl::format_error>(
      [&] { (void)tl::data::load_idx(scratch("e_lb.idx"), scratch("e_im.idx")); },
      {"e_lb.idx", "swapped"});

  write_bytes(scratch("e_lb4.idx"), make_idx_labels(4));
  require_throws_with<tl::format_error>(
      [&] { (void)tl::data::load_idx(scratch("e_im.idx"), scratch("e_lb4.idx")); },
      {"3 images", "4 labels", "e_lb4.idx"});

  bytes gz = gzip_bytes(im);
  gz.resize(gz.size() / 2);
  write_bytes(scratch("half.idx.gz"), gz);
  require_throws_with<tl::format_error>(
      [&] { (void)tl::data::load_idx(scratch("half.idx.gz"), scratch("e_lb.idx")); },
      {"half.idx.gz", "truncated"});

  require_throws_with<tl::io_error>(
      [&] { (void)tl::data::load_fashion_mnist(tl::data::split::test, scratch("no_such_dir")); },
      {"no_such_dir", "apt-get install dataset-fashion-mnist"});
  fs::create_directories(scratch("empty_dir"));
  require_throws_with<tl::io_error>(
      [&] { (void)tl::data::load_fashion_mnist(tl::data::split::test, scratch("empty_dir")); },
      {"t10k-images-idx3-ubyte.gz", "not found", "dataset-fashion-mnist"});
}
#endif

namespace {
const std::string fmnist_dir = "/usr/share/datasets/fashion-mnist";
bool have_fmnist() { return tl::io::file_readable(fmnist_dir + "/train-labels-idx1-ubyte.gz"); }

/// The training set, loaded once for every test that needs it.
const tl::data::dataset& fmnist_train() {
  static const tl::data::dataset ds = tl::data::load_fashion_mnist(tl::data::split::train);
  return ds;
}
}  // namespace

TEST_CASE("IDX: Fashion-MNIST has the published shape and class balance", "[data][idx][fmnist]") {
  if (!have_fmnist()) {
    WARN("Fashion-MNIST not installed (apt-get install dataset-fashion-mnist): test skipped");
    return;
  }
  const auto& train = fmnist_train();
  const auto test = tl::data::load_fashion_mnist(tl::data::split::test);
  CHECK(train.count == 60000);
  CHECK(test.count == 10000);
  CHECK(train.rows == 28);
  CHECK(train.cols == 28);
  CHECK(test.features() == 784);
  REQUIRE(train.images.size() == 60000u * 784u);
  REQUIRE(train.labels.size() == 60000u);
  CHECK(tl::data::label_histogram(train.labels) == std::vector<std::size_t>(10, 6000));
  CHECK(tl::data::label_histogram(test.labels) == std::vector<std::size_t>(10, 1000));
  const auto [lo, hi] = std::minmax_element(train.images.begin(), train.images.end());
  CHECK(*lo == 0.0f);
  CHECK(*hi == 1.0f);
  // Pixel values are k/255 exactly as decoded: no scaling drift.
  const float v = train.image(123)[400] * 255.0f;
  CHECK(v == std::round(v));
}

// ===========================================================================
// CRC-32
// ===========================================================================

TEST_CASE("CRC-32 matches zlib's and composes incrementally", "[io][crc32]") {
  static_assert(tl::crc32(static_cast<const std::uint8_t*>(nullptr), 0) == 0u);
  const std::uint8_t check[] = {'1', '2', '3', '4', '5', '6', '7', '8', '9'};
  CHECK(tl::crc32(check, 9) == 0xCBF43926u);
  tl::rng r(7);
  for (std::size_t n : {0u, 1u, 3u, 64u, 1000u, 4097u}) {
    bytes b(n);
    for (auto& x : b) x = static_cast<std::uint8_t>(r.next_u32());
    const auto ref = static_cast<std::uint32_t>(::crc32(0L, b.data(), static_cast<uInt>(n)));
    CHECK(tl::crc32(b.data(), n) == ref);
    const std::size_t k = n / 3;
    CHECK(tl::crc32(b.data() + k, n - k, tl::crc32(b.data(), k)) == ref);
  }
}

// ===========================================================================
// .npy
// ===========================================================================

namespace {
template <class T>
tl::io::basic_npy_array<T> ramp(std::vector<std::size_t> shape, double scale, double offset) {
  tl::io::basic_npy_array<T> a;
  a.shape = std::move(shape);
  std::size_t n = 1;
  for (auto d : a.shape) n *= d;
  for (std::size_t i = 0; i < n; ++i)
    a.data.push_back(static_cast<T>(offset + scale * static_cast<double>(i)));
  return a;
}

template <class T>
void check_npy_round_trip(const tl::io::basic_npy_array<T>& a) {
  const bytes enc = tl::io::encode_npy(a);
  tl::io::npy_header h;
  REQUIRE(tl::io::parse_npy(enc, h).ok());
  CHECK(h.data_offset % 64 == 0);  // NumPy's alignment
  CHECK(h.dtype == tl::io::npy_dtype_of<T>);
  CHECK(h.ndim == a.shape.size());
  tl::io::basic_npy_array<T> back;
  REQUIRE(tl::io::decode_npy(enc, back).ok());
  CHECK(back == a);
}

/// A .npy file with a hand-written header (padding computed here).
bytes npy_with_header(const std::string& dict, const bytes& payload, int major = 1) {
  bytes b{0x93, 'N', 'U', 'M', 'P', 'Y', static_cast<std::uint8_t>(major), 0};
  const std::size_t pre = major == 1 ? 10 : 12;
  std::string h = dict;
  while ((pre + h.size() + 1) % 64 != 0) h += ' ';
  h += '\n';
  for (std::size_t i = 0; i < pre - 8; ++i)
    b.push_back(static_cast<std::uint8_t>(h.size() >> (8 * i)));
  b.insert(b.end(), h.begin(), h.end());
  b.insert(b.end(), payload.begin(), payload.end());
  return b;
}
}  // namespace

TEST_CASE("npy: every element type round-trips bit for bit", "[io][npy]") {
  check_npy_round_trip(ramp<float>({2, 3, 4}, 0.37, -3.1));
  check_npy_round_trip(ramp<double>({5}, 1e-3, 1e10));
  check_npy_round_trip(ramp<std::int8_t>({4, 4}, 15, -120));
  check_npy_round_trip(ramp<std::uint8_t>({3, 1, 2, 2}, 20, 5));
  check_npy_round_trip(ramp<std::int16_t>({7}, -9000, 30000));
  check_npy_round_trip(ramp<std::uint16_t>({7}, 9000, 1));
  check_npy_round_trip(ramp<std::int32_t>({2, 2}, -1e9, 2e9));
  check_npy_round_trip(ramp<std::uint32_t>({3}, 2e9, 0));
  check_npy_round_trip(ramp<std::int64_t>({3}, -4e18, 4e18));
  check_npy_round_trip(ramp<std::uint64_t>({2}, 1e19, 1));
  check_npy_round_trip(ramp<float>({}, 0, 42.5));  // 0-d: one element
  check_npy_round_trip(ramp<float>({0}, 0, 0));    // empty
  check_npy_round_trip(ramp<float>({3, 0, 5}, 0, 0));
  // The most dimensions NumPy 1.x allows; one zero dimension: no data.
  std::vector<std::size_t> many_dims(32, 3);
  many_dims[7] = 0;
  check_npy_round_trip(ramp<float>(many_dims, 0, 0));
  // Built by push_back: g++ 12.2 at -O2 -march=native (AVX-512) miscompiles the braced
  // list {1u << 31, 1u << 31, 1u << 31, 0} into four times 2^31 (seen 2026-12-04).
  std::vector<std::size_t> huge(3, std::size_t{1} << 31);
  huge.push_back(0);
  CHECK(tl::io::encode_npy<float>(huge, {}).size() == 128);
}

TEST_CASE("npy: conversions between element types", "[io][npy]") {
  const bytes i32 = tl::io::encode_npy(ramp<std::int32_t>({4}, 100, -150));
  tl::io::npy_array f;
  REQUIRE(tl::io::decode_npy(i32, f).ok());
  CHECK(f.data == std::vector<float>{-150, -50, 50, 150});
  tl::io::basic_npy_array<std::int16_t> s16;
  REQUIRE(tl::io::decode_npy(i32, s16).ok());
  CHECK(s16.data[0] == -150);
  tl::io::basic_npy_array<std::uint8_t> u8;
  CHECK(tl::io::decode_npy(i32, u8).code == tl::errc::invalid_argument);  // -150 does not fit
  tl::io::basic_npy_array<std::int32_t> from_float;
  CHECK(tl::io::decode_npy(tl::io::encode_npy(ramp<float>({2}, 1, 0)), from_float).code ==
        tl::errc::invalid_argument);
  const bytes f8 = tl::io::encode_npy(ramp<double>({3}, 0.5, 0.25));
  REQUIRE(tl::io::decode_npy(f8, f).ok());
  CHECK(f.data == std::vector<float>{0.25f, 0.75f, 1.25f});

  // Big-endian and boolean data, and Python-2 style 'L' dims, "-quoted keys.
  const bytes be = npy_with_header("{'descr': '>i4', 'fortran_order': False, 'shape': (2,), }",
                                   {0x00, 0x00, 0x01, 0x02, 0xFF, 0xFF, 0xFF, 0xFE});
  tl::io::basic_npy_array<std::int32_t> bi;
  REQUIRE(tl::io::decode_npy(be, bi).ok());
  CHECK(bi.data == std::vector<std::int32_t>{258, -2});
  const bytes b1 = npy_with_header(
      "{\"descr\": \"|b1\", \"fortran_order\": False, \"shape\": (1L, 3L)}", {1, 0, 1});
  tl::io::basic_npy_array<std::uint8_t> bools;
  REQUIRE(tl::io::decode_npy(b1, bools).ok());
  CHECK(bools.shape == std::vector<std::size_t>{1, 3});
  CHECK(bools.data == std::vector<std::uint8_t>{1, 0, 1});
  const bytes v2 =
      npy_with_header("{'descr': '<u2', 'fortran_order': False, 'shape': (1,), }", {0x34, 0x12}, 2);
  tl::io::basic_npy_array<std::uint16_t> u16;
  REQUIRE(tl::io::decode_npy(v2, u16).ok());
  CHECK(u16.data[0] == 0x1234);
}

TEST_CASE("npy: malformed headers give specific errors", "[io][npy]") {
  tl::io::npy_array a;
  auto code = [&](const std::string& dict, const bytes& payload) {
    return tl::io::decode_npy(npy_with_header(dict, payload), a);
  };
  const bytes four(4, 0);
  const tl::status fortran = code("{'descr': '<f4', 'fortran_order': True, 'shape': (1,), }", four);
  CHECK(fortran.code == tl::errc::unsupported_version);
  CHECK(std::string(fortran.message).find("Fortran") != std::string::npos);
  CHECK(code("{'descr': '<f2', 'fortran_order': False, 'shape': (2,), }", four).code ==
        tl::errc::unsupported_version);
  CHECK(code("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (1,), }", four).code ==
        tl::errc::unsupported_version);
  CHECK(code("{'descr': '<f4', 'shape': (1,), }", four).code == tl::errc::corrupt);
  CHECK(code("{'descr': '<f4', 'fortran_order': False, 'shape': (1,), 'x': 1}", four).code ==
        tl::errc::corrupt);
  CHECK(
      code("{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (1,)}", four).code ==
      tl::errc::corrupt);
  CHECK(code("{'descr': '<f4', 'fortran_order': False, 'shape': (-1,), }", four).code ==
        tl::errc::corrupt);
  CHECK(code("{'descr': '|f4', 'fortran_order': False, 'shape': (1,), }", four).code ==
        tl::errc::corrupt);
  CHECK(code("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", four).code ==
        tl::errc::truncated);
  CHECK(code("{'descr': '<f4', 'fortran_order': False, 'shape': (), }", bytes(8, 0)).code ==
        tl::errc::corrupt);  // trailing bytes
  // Dimensions whose product overflows, with no data: refused, not allocated.
  CHECK(code("{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296, 16)}", {})
            .code == tl::errc::too_large);
  CHECK(code("{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999999,)}", {})
            .code == tl::errc::too_large);
  CHECK(code("{'descr': '<f4', 'fortran_order': False, 'shape': (01,)}", four).code ==
        tl::errc::corrupt);  // Python rejects leading zeros
  CHECK(code("{'descr': '<f4', 'fortran_order': False, 'shape': (1000000000,)}", {}).code ==
        tl::errc::truncated);
  // A zero dimension makes any other dimension harmless.
  REQUIRE(code("{'descr': '<f4', 'fortran_order': False, 'shape': (0, 99999999999)}", {}).ok());
  CHECK(a.data.empty());
  // Header length over the limit.
  bytes hdr = npy_with_header("{'descr': '<f4', 'fortran_order': False, 'shape': (1,)}", four);
  tl::io::npy_limits tight;
  tight.max_header_bytes = 32;
  CHECK(tl::io::decode_npy(hdr, a, tight).code == tl::errc::too_large);
  hdr[6] = 4;
  CHECK(tl::io::decode_npy(hdr, a).code == tl::errc::unsupported_version);
}

TEST_CASE("npy: every truncation fails and single-bit header flips are caught", "[io][npy]") {
  const auto a = ramp<float>({2, 3}, 1.5, 0);
  const bytes enc = tl::io::encode_npy(a);
  tl::io::npy_header h;
  REQUIRE(tl::io::parse_npy(enc, h).ok());
  for (std::size_t len = 0; len < enc.size(); ++len) {
    tl::io::npy_array out;
    INFO("cut to " << len);
    CHECK(tl::io::decode_npy(std::span<const std::uint8_t>(enc.data(), len), out).code ==
          tl::errc::truncated);
  }
  // Flip every bit of the preamble and header: the only flips that still
  // parse turn the byte order '<' into '=' (0x3C ^ 0x01, native) or '>'
  // (0x3C ^ 0x02, big-endian); both are valid .npy.
  const std::size_t order_pos =
      std::string(enc.begin(), enc.begin() + static_cast<std::ptrdiff_t>(h.data_offset))
          .find("'<f4'") +
      1;
  std::size_t accepted = 0;
  for (std::size_t i = 0; i < h.data_offset; ++i)
    for (int bit = 0; bit < 8; ++bit) {
      bytes b = enc;
      b[i] ^= static_cast<std::uint8_t>(1u << bit);
      tl::io::npy_array out;
      const tl::status s = tl::io::decode_npy(b, out);
      if (s.ok()) {
        ++accepted;
        INFO("byte " << i << " bit " << bit << " accepted");
        CHECK(i == order_pos);
        CHECK(out.shape == a.shape);
      }
    }
  CHECK(accepted == 2);
}

#if TINYLARGE_HAS_EXCEPTIONS
TEST_CASE("npy: file errors name the file", "[io][npy]") {
  const auto a = ramp<float>({3, 2}, 0.5, 1);
  tl::io::save_npy(scratch("a.npy"), a);
  CHECK(tl::io::load_npy(scratch("a.npy")) == a);
  CHECK_FALSE(fs::exists(scratch("a.npy.tmp")));
  require_throws_with<tl::io_error>([&] { (void)tl::io::load_npy(scratch("nope.npy")); },
                                    {"nope.npy", "No such file"});
  require_throws_with<tl::io_error>([&] { (void)tl::io::load_npy(scratch_dir().string()); },
                                    {scratch_dir().string(), "directory"});
  bytes cut = tl::io::encode_npy(a);
  cut.pop_back();
  write_bytes(scratch("cut.npy"), cut);
  require_throws_with<tl::format_error>([&] { (void)tl::io::load_npy(scratch("cut.npy")); },
                                        {"cut.npy", "truncated"});
  require_throws_with<tl::invalid_argument>(
      [&] { (void)tl::io::load_npy<std::int32_t>(scratch("a.npy")); }, {"a.npy", "floating-point"});
  const std::vector<std::size_t> shape{4};
  const std::vector<float> three(3, 1.0f);
  require_throws_with<tl::shape_error>(
      [&] { tl::io::save_npy<float>(scratch("bad.npy"), shape, three); }, {"4 elements", "3"});
  require_throws_with<tl::io_error>([&] { tl::io::save_npy(scratch("no_dir/x.npy"), a); },
                                    {"no_dir/x.npy"});
}
#endif

// ===========================================================================
// .npz
// ===========================================================================

TEST_CASE("npz: mixed arrays round-trip through the ZIP container", "[io][npz]") {
  const auto w = ramp<float>({3, 4}, 0.25, -1);
  const auto ids = ramp<std::int64_t>({5}, -3, 7);
  const auto img = ramp<std::uint8_t>({2, 2, 2}, 30, 0);
  tl::io::npz_writer wr;
  wr.add("layer0/weight", w).add("ids", ids).add("img", img);
  const bytes z = wr.bytes();
  CHECK(z == wr.bytes());  // deterministic: fixed timestamps
  std::vector<tl::io::zip_entry> entries;
  REQUIRE(tl::io::parse_zip_directory(z, entries).ok());
  REQUIRE(entries.size() == 3);
  CHECK(entries[0].name == "layer0/weight.npy");
  CHECK(entries[0].method == 0);
  tl::io::npz_archive ar;
  REQUIRE(tl::io::npz_archive::decode(z, ar).ok());
  CHECK(ar.names() == std::vector<std::string>{"ids", "img", "layer0/weight"});
  CHECK(ar.get("layer0/weight") == w);
  CHECK(ar.get<std::int64_t>("ids") == ids);
  CHECK(ar.get<std::uint8_t>("img") == img);
  CHECK(ar.header("ids").dtype == tl::io::npy_dtype::i8);
  // save_npz / load_npz over a map.
  std::map<std::string, tl::io::npy_array> m{{"a", w}, {"b", ramp<float>({2}, 1, 1)}};
  tl::io::save_npz(scratch("m.npz"), m);
  CHECK(tl::io::load_npz(scratch("m.npz")) == m);
#if TINYLARGE_HAS_EXCEPTIONS
  require_throws_with<tl::invalid_argument>([&] { (void)ar.get("missing"); },
                                            {"missing", "ids, img, layer0/weight"});
  require_throws_with<tl::invalid_argument>([&] { wr.add("ids", ids); }, {"ids", "twice"});
#endif
}

TEST_CASE("npz: truncation and corruption never crash and are reported", "[io][npz]") {
  tl::io::npz_writer wr;
  wr.add("a", ramp<float>({2, 3}, 1, 0)).add("b", ramp<std::int32_t>({4}, 2, 1));
  const bytes z = wr.bytes();
  for (std::size_t len = 0; len < z.size(); ++len) {
    tl::io::npz_archive ar;
    INFO("cut to " << len);
    CHECK_FALSE(tl::io::npz_archive::decode(std::span<const std::uint8_t>(z.data(), len), ar).ok());
  }
  std::vector<tl::io::zip_entry> entries;
  REQUIRE(tl::io::parse_zip_directory(z, entries).ok());
  // Every bit of the member data is covered by the CRC-32.
  for (const auto& e : entries)
    for (std::uint64_t i = e.data_offset; i < e.data_offset + e.compressed; ++i) {
      bytes b = z;
      b[static_cast<std::size_t>(i)] ^= 0x04;
      tl::io::npz_archive ar;
      INFO("flip at " << i);
      CHECK(tl::io::npz_archive::decode(b, ar).code == tl::errc::checksum_mismatch);
    }
  // Flip every bit of the archive: no crash; whatever is accepted decodes to
  // the same arrays (only fields tinylarge does not use — timestamps,
  // attributes, versions — can change without an error).
  tl::io::npz_archive ref;
  REQUIRE(tl::io::npz_archive::decode(z, ref).ok());
  std::size_t accepted = 0;
  for (std::size_t i = 0; i < z.size(); ++i)
    for (int bit = 0; bit < 8; ++bit) {
      bytes b = z;
      b[i] ^= static_cast<std::uint8_t>(1u << bit);
      tl::io::npz_archive ar;
      if (tl::io::npz_archive::decode(b, ar).ok()) {
        ++accepted;
        INFO("flip byte " << i << " bit " << bit);
        CHECK(ar.get("a") == ref.get("a"));
        CHECK(ar.get<std::int32_t>("b") == ref.get<std::int32_t>("b"));
      }
    }
  CHECK(accepted < z.size() * 8 / 4);
  // Not a .npy member, and an unknown compression method.
  tl::io::npz_archive ar;
  bytes other = z;
  const std::size_t name_at = 30;  // first local header's name
  other[name_at] = 'x';            // local and central names now disagree
  CHECK(tl::io::npz_archive::decode(other, ar).code == tl::errc::corrupt);
  bytes method = z;
  method[8] = 12;  // local header says bzip2
  const std::size_t cd = static_cast<std::size_t>(tl::io::detail::le32(z.data() + z.size() - 6));
  method[cd + 10] = 12;  // and so does the central record
  CHECK(tl::io::npz_archive::decode(method, ar).code == tl::errc::unsupported_version);
  CHECK(tl::io::npz_archive::decode(bytes(100, 0), ar).code == tl::errc::corrupt);
}

TEST_CASE("npz: ZIP64 records written by Info-ZIP (zip -fz) are read", "[io][npz]") {
  if (std::system("command -v zip > /dev/null 2>&1") != 0) {
    WARN("Info-ZIP 'zip' not found (apt-get install zip): test skipped");
    return;
  }
  const auto a = ramp<float>({2, 3}, 0.5, -1);
  const auto b = ramp<std::int64_t>({40}, 1, 0);  // compressible: zip DEFLATEs it
  tl::io::save_npy(scratch("a.npy"), a);
  tl::io::save_npy(scratch("b.npy"), b);
  const std::string cmd = "cd '" + scratch_dir().string() +
                          "' && rm -f z64.npz && zip -q -fz -0 z64.npz a.npy && "
                          "zip -q -fz z64.npz b.npy";
  REQUIRE(std::system(cmd.c_str()) == 0);
  const bytes z = tl::io::read_file(scratch("z64.npz"));
  // -fz: the end record defers to the ZIP64 one, sizes sit in ZIP64 extras.
  REQUIRE(z.size() > 22);
  CHECK(tl::io::detail::le32(z.data() + z.size() - 6) == 0xFFFFFFFFu);
  std::vector<tl::io::zip_entry> entries;
  REQUIRE(tl::io::parse_zip_directory(z, entries).ok());
  REQUIRE(entries.size() == 2);
  CHECK(entries[0].method == 0);
  CHECK(entries[1].method == 8);
  const auto ar = tl::io::npz_archive::load(scratch("z64.npz"));
  CHECK(ar.get("a") == a);
  CHECK(ar.get<std::int64_t>("b") == b);
}

namespace {
bool have_python_numpy() {
  return std::system("/usr/bin/python3 -c 'import numpy' > /dev/null 2>&1") == 0;
}
int run_python(const std::string& script, const std::string& args) {
  const std::string py = scratch("script.py");
  std::ofstream(py) << script;
  const std::string cmd = "/usr/bin/python3 " + py + " " + args;
  return std::system(cmd.c_str());
}
}  // namespace

TEST_CASE("npz: NumPy reads ours and we read NumPy's (savez_compressed: DEFLATED)",
          "[io][npz][python]") {
  if (!have_python_numpy()) {
    WARN("/usr/bin/python3 with numpy not found (apt-get install python3-numpy): test skipped");
    return;
  }
  const auto w = ramp<float>({3, 4}, 0.25, -1);
  const auto ids = ramp<std::int64_t>({5}, -3, 7);
  const auto px = ramp<std::uint8_t>({2, 5}, 12, 3);
  tl::io::npz_writer wr;
  wr.add("w", w).add("ids", ids).add("px", px);
  wr.save(scratch("to_numpy.npz"));
  const char* script = R"PY(
import sys, numpy as np
src, dst = sys.argv[1], sys.argv[2]
z = np.load(src)
assert sorted(z.files) == ['ids', 'px', 'w'], z.files
assert z['w'].dtype == np.float32 and z['w'].shape == (3, 4)
assert z['ids'].dtype == np.int64 and z['px'].dtype == np.uint8
big = np.arange(5000, dtype=np.float32).reshape(50, 100) / 7
np.savez_compressed(dst, w2=z['w'] * 2, ids2=z['ids'] * 2, px64=z['px'].astype(np.float64) * 2,
                    big=big, be=np.array([1, -2, 3], dtype='>i4'), flag=np.array([True, False]))
np.save(dst + '.fortran.npy', np.asfortranarray(np.ones((3, 2), dtype=np.float32)))
)PY";
  REQUIRE(run_python(script, scratch("to_numpy.npz") + " " + scratch("from_numpy.npz")) == 0);
  const auto ar = tl::io::npz_archive::load(scratch("from_numpy.npz"));
  std::vector<tl::io::zip_entry> entries;
  const bytes zb = tl::io::read_file(scratch("from_numpy.npz"));
  REQUIRE(tl::io::parse_zip_directory(zb, entries).ok());
  for (const auto& e : entries) CHECK(e.method == 8);  // DEFLATED
  const auto w2 = ar.get("w2");
  REQUIRE(w2.shape == w.shape);
  for (std::size_t i = 0; i < w.size(); ++i) CHECK(w2.data[i] == 2 * w.data[i]);
  const auto ids2 = ar.get<std::int64_t>("ids2");
  for (std::size_t i = 0; i < ids.size(); ++i) CHECK(ids2.data[i] == 2 * ids.data[i]);
  const auto px64 = ar.get("px64");
  CHECK(ar.header("px64").dtype == tl::io::npy_dtype::f8);
  for (std::size_t i = 0; i < px.size(); ++i) CHECK(px64.data[i] == 2.0f * px.data[i]);
  const auto big = ar.get("big");
  REQUIRE(big.shape == std::vector<std::size_t>{50, 100});
  CHECK(big.data[4999] == 4999.0f / 7.0f);
  CHECK(ar.get<std::int32_t>("be").data == std::vector<std::int32_t>{1, -2, 3});
  CHECK(ar.get<std::uint8_t>("flag").data == std::vector<std::uint8_t>{1, 0});
  // A DEFLATED member whose declared size is inflated: refused before allocation.
  bytes bomb = zb;
  const std::size_t cd =
      static_cast<std::size_t>(tl::io::detail::le32(bomb.data() + bomb.size() - 6));
  bomb[cd + 27] = 0x7F;  // uncompressed size of the first member → ~2 GiB
  tl::io::npz_archive bad;
  CHECK(tl::io::npz_archive::decode(bomb, bad).code == tl::errc::corrupt);
#if TINYLARGE_HAS_EXCEPTIONS
  require_throws_with<tl::format_error>(
      [&] { (void)tl::io::load_npy(scratch("from_numpy.npz.fortran.npy")); },
      {"fortran.npy", "Fortran order"});
#endif
}

TEST_CASE("npz: a PyTorch layer exported with numpy computes the same outputs here",
          "[io][npz][python]") {
  if (std::system("/usr/bin/python3 -c 'import torch, numpy' > /dev/null 2>&1") != 0) {
    WARN("/usr/bin/python3 with torch not found (apt-get install python3-torch): test skipped");
    return;
  }
  const char* script = R"PY(
import sys, numpy as np, torch
torch.manual_seed(3)
layer = torch.nn.Linear(20, 7)
x = torch.randn(4, 20)
with torch.no_grad():
    y = layer(x)
np.savez(sys.argv[1], **{k: v.numpy() for k, v in layer.state_dict().items()}, x=x.numpy(), y=y.numpy())
)PY";
  REQUIRE(run_python(script, scratch("torch.npz")) == 0);
  const auto t = tl::io::load_npz(scratch("torch.npz"));
  const auto& W = t.at("weight");
  const auto& b = t.at("bias");
  const auto& x = t.at("x");
  const auto& y = t.at("y");
  REQUIRE(W.shape == std::vector<std::size_t>{7, 20});
  REQUIRE(b.shape == std::vector<std::size_t>{7});
  REQUIRE(x.shape == std::vector<std::size_t>{4, 20});
  for (std::size_t i = 0; i < 4; ++i)
    for (std::size_t o = 0; o < 7; ++o) {
      double acc = b.data[o];
      for (std::size_t k = 0; k < 20; ++k) acc += double{W.data[o * 20 + k]} * x.data[i * 20 + k];
      CHECK(acc == Approx(y.data[i * 7 + o]).margin(1e-5));
    }
}

TEST_CASE("IDX: decoded Fashion-MNIST agrees with Python's reading of the same files",
          "[data][idx][fmnist][python]") {
  if (!have_fmnist() || !have_python_numpy()) {
    WARN("Fashion-MNIST or /usr/bin/python3 with numpy missing: test skipped");
    return;
  }
  const char* script = R"PY(
import sys, gzip, numpy as np
d = '/usr/share/datasets/fashion-mnist/'
im = np.frombuffer(gzip.open(d + 'train-images-idx3-ubyte.gz').read(), np.uint8, offset=16)
lb = np.frombuffer(gzip.open(d + 'train-labels-idx1-ubyte.gz').read(), np.uint8, offset=8)
im = im.reshape(-1, 28, 28)
pick = np.array([0, 1, 12345, 59999])
np.savez(sys.argv[1], images=im[pick], labels=lb[pick], pick=pick,
         pixel_sum=np.array(im.sum(dtype=np.int64)))
)PY";
  REQUIRE(run_python(script, scratch("fmnist_ref.npz")) == 0);
  const auto ref = tl::io::npz_archive::load(scratch("fmnist_ref.npz"));
  const auto images = ref.get<std::uint8_t>("images");
  const auto labels = ref.get<std::uint8_t>("labels");
  const auto pick = ref.get<std::int64_t>("pick");
  const auto& ds = fmnist_train();
  for (std::size_t j = 0; j < pick.size(); ++j) {
    const auto i = static_cast<std::size_t>(pick.data[j]);
    CHECK(ds.labels[i] == labels.data[j]);
    std::vector<float> expect(784);
    for (std::size_t p = 0; p < 784; ++p)
      expect[p] = static_cast<float>(images.data[j * 784 + p]) / 255.0f;
    INFO("image " << i);
    CHECK(std::vector<float>(ds.image(i), ds.image(i) + 784) == expect);
  }
  std::int64_t sum = 0;
  for (const float v : ds.images) sum += static_cast<std::int64_t>(v * 255.0f + 0.5f);
  CHECK(sum == ref.get<std::int64_t>("pixel_sum").data[0]);
}

// ===========================================================================
// Batching
// ===========================================================================

namespace {
tl::data::dataset synthetic_dataset(std::size_t n, std::size_t rows = 2, std::size_t cols = 3) {
  tl::data::dataset ds;
  ds.count = n;
  ds.rows = rows;
  ds.cols = cols;
  for (std::size_t i = 0; i < n; ++i) {
    ds.labels.push_back(static_cast<std::uint8_t>(i % 10));
    for (std::size_t p = 0; p < rows * cols; ++p)
      ds.images.push_back(static_cast<float>(i) + static_cast<float>(p) / 100.0f);
  }
  return ds;
}
}  // namespace

TEST_CASE("batcher: every sample once per epoch, gathered correctly", "[data][batch]") {
  const auto ds = synthetic_dataset(23);
  tl::data::batcher b(ds, {.batch_size = 5, .seed = 11});
  CHECK(b.batches_per_epoch() == 5);
  std::vector<float> x(5 * ds.features());
  std::vector<std::uint8_t> y(5);
  std::vector<std::size_t> sizes, seen;
  while (const std::size_t m = b.next(x.data(), y.data())) {
    sizes.push_back(m);
    for (std::size_t j = 0; j < m; ++j) {
      const auto i = static_cast<std::size_t>(x[j * ds.features()]);  // image i starts with value i
      seen.push_back(i);
      CHECK(y[j] == ds.labels[i]);
      for (std::size_t p = 0; p < ds.features(); ++p)
        CHECK(x[j * ds.features() + p] == ds.image(i)[p]);
    }
  }
  CHECK(sizes == std::vector<std::size_t>{5, 5, 5, 5, 3});
  std::vector<std::size_t> order(b.order().begin(), b.order().end());
  CHECK(seen == order);
  std::sort(seen.begin(), seen.end());
  std::vector<std::size_t> all(23);
  std::iota(all.begin(), all.end(), std::size_t{0});
  CHECK(seen == all);
  CHECK(order != all);  // shuffled (a 1 / 23! chance of a false failure)
  CHECK(b.next(x.data(), y.data()) == 0);

  tl::data::batcher d(ds, {.batch_size = 5, .seed = 11, .drop_last = true});
  CHECK(d.batches_per_epoch() == 4);
  std::size_t total = 0, batches = 0;
  while (const std::size_t m = d.next(x.data(), nullptr)) {
    total += m;
    ++batches;
  }
  CHECK(batches == 4);
  CHECK(total == 20);

  tl::data::batcher e(ds, {.batch_size = 4, .shuffle = false});
  CHECK(std::vector<std::size_t>(e.order().begin(), e.order().end()) == all);
}

TEST_CASE("batcher: the order depends on (seed, epoch) only", "[data][batch]") {
  const auto ds = synthetic_dataset(100);
  auto order_of = [](const tl::data::batcher& b) {
    return std::vector<std::size_t>(b.order().begin(), b.order().end());
  };
  tl::data::batcher a(ds, {.batch_size = 8, .seed = 5});
  std::vector<std::vector<std::size_t>> orders;
  for (std::size_t e = 0; e < 4; ++e) {
    a.start_epoch(e);
    while (!a.next_indices().empty()) {
    }
    orders.push_back(order_of(a));
  }
  CHECK(orders[0] != orders[1]);
  CHECK(orders[1] != orders[2]);
  tl::data::batcher resumed(ds, {.batch_size = 8, .seed = 5});
  resumed.start_epoch(2);  // as after a restart from a checkpoint
  CHECK(order_of(resumed) == orders[2]);
  tl::data::batcher other(ds, {.batch_size = 8, .seed = 6});
  CHECK(order_of(other) != orders[0]);

  // A subset (a client's partition) is iterated without touching other samples.
  const std::vector<std::size_t> mine{3, 14, 15, 92, 65};
  tl::data::batcher sub(ds, {.batch_size = 2, .seed = 1}, mine);
  std::set<std::size_t> got;
  for (auto idx = sub.next_indices(); !idx.empty(); idx = sub.next_indices())
    got.insert(idx.begin(), idx.end());
  CHECK(got == std::set<std::size_t>(mine.begin(), mine.end()));

  const auto s = tl::data::subset(ds, mine);
  REQUIRE(s.count == 5);
  CHECK(s.features() == ds.features());
  for (std::size_t j = 0; j < mine.size(); ++j) {
    CHECK(s.labels[j] == ds.labels[mine[j]]);
    CHECK(std::equal(s.image(j), s.image(j) + s.features(), ds.image(mine[j])));
  }
#if TINYLARGE_HAS_EXCEPTIONS
  const std::vector<std::size_t> bad{1, 100};
  require_throws_with<tl::invalid_argument>([&] { (void)tl::data::subset(ds, bad); },
                                            {"100", "out of range"});
  require_throws_with<tl::invalid_argument>([&] { tl::data::batcher z(ds, {.batch_size = 0}); },
                                            {"batch_size"});
#endif
}

// ===========================================================================
// Partitioners
// ===========================================================================

namespace {
/// Disjoint, complete, each list sorted.
void check_is_partition(const tl::data::partition_t& parts, std::size_t n) {
  std::vector<int> hits(n, 0);
  for (const auto& p : parts) {
    CHECK(std::is_sorted(p.begin(), p.end()));
    for (const std::size_t i : p) {
      REQUIRE(i < n);
      ++hits[i];
    }
  }
  CHECK(std::all_of(hits.begin(), hits.end(), [](int h) { return h == 1; }));
}

/// Mean over clients of the entropy (nats) of the client's label distribution.
double mean_label_entropy(const tl::data::partition_t& parts,
                          std::span<const std::uint8_t> labels) {
  const auto counts = tl::data::partition_label_counts(parts, labels);
  double total = 0;
  for (std::size_t c = 0; c < parts.size(); ++c) {
    double h = 0;
    for (const std::size_t k : counts[c]) {
      if (k == 0) continue;
      const double p = static_cast<double>(k) / static_cast<double>(parts[c].size());
      h -= p * std::log(p);
    }
    total += h;
  }
  return total / static_cast<double>(parts.size());
}

std::size_t labels_seen(const std::vector<std::size_t>& counts) {
  return static_cast<std::size_t>(
      std::count_if(counts.begin(), counts.end(), [](std::size_t k) { return k > 0; }));
}

/// Labels of Fashion-MNIST when installed, else a synthetic stand-in with the
/// same class balance (6000 per class, interleaved).
std::vector<std::uint8_t> fmnist_labels_or_synthetic() {
  if (have_fmnist()) return fmnist_train().labels;
  std::vector<std::uint8_t> y(60000);
  for (std::size_t i = 0; i < y.size(); ++i) y[i] = static_cast<std::uint8_t>((i * 7) % 10);
  return y;
}
}  // namespace

TEST_CASE("Gamma and Dirichlet samplers have the right moments", "[data][partition]") {
  tl::rng r(2024);
  for (const double alpha : {0.3, 1.0, 4.5}) {
    const int n = 40000;
    double s = 0, s2 = 0;
    int negative = 0;
    for (int i = 0; i < n; ++i) {
      const double g = tl::data::sample_gamma(alpha, r);
      negative += g < 0.0;
      s += g;
      s2 += g * g;
    }
    CHECK(negative == 0);
    const double mean = s / n, var = s2 / n - mean * mean;
    INFO("alpha " << alpha);
    // Gamma(α, 1): mean α, variance α. Tolerance: 5 standard errors.
    CHECK(std::abs(mean - alpha) < 5 * std::sqrt(alpha / n));
    CHECK(std::abs(var - alpha) < 0.1 * alpha);
  }
  std::vector<double> p(5);
  std::vector<double> mean(5, 0);
  int bad = 0;
  for (int i = 0; i < 4000; ++i) {
    tl::data::sample_dirichlet(0.01, p, r);  // tiny α: log-space keeps it finite
    double sum = 0;
    for (std::size_t j = 0; j < 5; ++j) {
      bad += !std::isfinite(p[j]) || p[j] < 0;
      sum += p[j];
      mean[j] += p[j] / 4000;
    }
    bad += std::abs(sum - 1.0) > 1e-12;
  }
  CHECK(bad == 0);
  for (const double m : mean) CHECK(m == Approx(0.2).margin(0.05));
}

TEST_CASE("partition_iid: balanced, complete, reproducible", "[data][partition]") {
  tl::rng r1(9), r2(9), r3(10);
  const auto a = tl::data::partition_iid(1003, 10, r1);
  check_is_partition(a, 1003);
  for (const auto& p : a) CHECK((p.size() == 100 || p.size() == 101));
  CHECK(a == tl::data::partition_iid(1003, 10, r2));
  CHECK(a != tl::data::partition_iid(1003, 10, r3));
#if TINYLARGE_HAS_EXCEPTIONS
  require_throws_with<tl::invalid_argument>([&] { (void)tl::data::partition_iid(5, 0, r1); },
                                            {"at least 1"});
  require_throws_with<tl::invalid_argument>([&] { (void)tl::data::partition_iid(5, 6, r1); },
                                            {"6 clients", "5 samples"});
#endif
}

TEST_CASE("partition_shards: clients see at most 2 labels (McMahan et al.)", "[data][partition]") {
  const auto labels = fmnist_labels_or_synthetic();
  tl::rng r(1), r_same(1);
  const auto parts = tl::data::partition_shards(labels, 100, 2, r);
  check_is_partition(parts, labels.size());
  const auto counts = tl::data::partition_label_counts(parts, labels);
  std::size_t two_or_fewer = 0, exactly_one = 0;
  for (std::size_t c = 0; c < 100; ++c) {
    CHECK(parts[c].size() == 600);
    two_or_fewer += labels_seen(counts[c]) <= 2;
    exactly_one += labels_seen(counts[c]) == 1;
  }
  // 6000 images per class cut into 300-image shards: every shard is one class.
  CHECK(two_or_fewer == 100);
  CHECK(exactly_one < 20);  // two random shards rarely share a class (≈ 1 in 10)
  CHECK(parts == tl::data::partition_shards(labels, 100, 2, r_same));

  // Unbalanced classes and a size that does not divide: most clients still
  // see at most 2 labels (shards may straddle a class boundary).
  std::vector<std::uint8_t> skewed;
  for (std::size_t i = 0; i < 10007; ++i) skewed.push_back(static_cast<std::uint8_t>((i * i) % 7));
  tl::rng r2(2);
  const auto sp = tl::data::partition_shards(skewed, 50, 2, r2);
  check_is_partition(sp, skewed.size());
  const auto sc = tl::data::partition_label_counts(sp, skewed);
  std::size_t mostly = 0;
  for (const auto& c : sc) mostly += labels_seen(c) <= 2;
  CHECK(mostly >= 40);
}

TEST_CASE("partition_dirichlet: skew grows as alpha shrinks; seeded; min_size",
          "[data][partition]") {
  const auto labels = fmnist_labels_or_synthetic();
  const std::size_t clients = 20;
  tl::rng r_small(5), r_large(5), r_again(5);
  const auto small = tl::data::partition_dirichlet(labels, clients, 0.1, r_small, 10);
  const auto large = tl::data::partition_dirichlet(labels, clients, 100.0, r_large, 10);
  check_is_partition(small, labels.size());
  check_is_partition(large, labels.size());
  for (const auto& p : small) CHECK(p.size() >= 10);
  const double h_small = mean_label_entropy(small, labels);
  const double h_large = mean_label_entropy(large, labels);
  const double h_max = std::log(10.0);
  INFO("mean label entropy: alpha 0.1 → " << h_small << ", alpha 100 → " << h_large << " (max "
                                          << h_max << ")");
  CHECK(h_small < 0.6 * h_max);
  CHECK(h_large > 0.95 * h_max);
  CHECK(h_small < h_large);
  CHECK(small == tl::data::partition_dirichlet(labels, clients, 0.1, r_again, 10));
#if TINYLARGE_HAS_EXCEPTIONS
  tl::rng r(1);
  require_throws_with<tl::invalid_argument>(
      [&] { (void)tl::data::partition_dirichlet(labels, 100, 0.001, r, 500, 20); },
      {"after 20 draws", "min_size 500", "increase alpha"});
  require_throws_with<tl::invalid_argument>(
      [&] { (void)tl::data::partition_dirichlet(labels, 10, -1.0, r); }, {"alpha"});
  require_throws_with<tl::invalid_argument>(
      [&] { (void)tl::data::partition_dirichlet(labels, 10, std::nan(""), r); }, {"alpha"});
  require_throws_with<tl::invalid_argument>(
      [&] { (void)tl::data::partition_dirichlet(labels, 10, 1.0, r, 7000); }, {"min_size"});
#endif
}

TEST_CASE("partition_quantity: IID samples, sizes as unequal as beta says; seeded; min_size",
          "[data][partition]") {
  // Within one draw the client sizes average n/K exactly, so the mean over
  // clients of (size/(n/K) - 1)^2 estimates K^2 Var(q_j) = (K-1)/(K*beta+1)
  // (q ~ Dir(beta), before the min_size redraws): 1.5 at beta = 0.5, 0.176
  // at 5, 0.009 at 100 for K = 10. Averaged over 40 draws each.
  const std::size_t n = 10000, k = 10;
  const auto cv2 = [&](double beta) {
    tl::rng r(77);
    double sum = 0;
    for (int d = 0; d < 40; ++d) {
      const auto parts = tl::data::partition_quantity(n, k, beta, r, 10);
      double v = 0;
      for (const auto& p : parts) {
        CHECK(p.size() >= 10);
        const double x = static_cast<double>(p.size()) * static_cast<double>(k) / static_cast<double>(n) - 1.0;
        v += x * x / static_cast<double>(k);
      }
      sum += v / 40;
    }
    return sum;
  };
  const double skewed = cv2(0.5), mid = cv2(5.0), flat = cv2(100.0);
  INFO("mean squared CV of client sizes: beta 0.5 -> " << skewed << ", 5 -> " << mid << ", 100 -> " << flat);
  CHECK(skewed > 0.7);   // (K-1)/(K beta+1) = 1.5; the min_size redraws cut the smallest shares
  CHECK(skewed < 2.5);
  CHECK(mid > 0.08);     // 0.176
  CHECK(mid < 0.35);
  CHECK(flat < 0.02);    // 0.009
  CHECK(skewed > mid);
  CHECK(mid > flat);

  tl::rng r1(3), r2(3), r3(4);
  const auto a = tl::data::partition_quantity(n, k, 0.5, r1, 10);
  check_is_partition(a, n);
  CHECK(a == tl::data::partition_quantity(n, k, 0.5, r2, 10));
  CHECK(a != tl::data::partition_quantity(n, k, 0.5, r3, 10));
  // The labels stay IID: a client of 1000+ samples sees every class of a balanced set.
  const auto labels = fmnist_labels_or_synthetic();
  tl::rng r4(5);
  const auto q = tl::data::partition_quantity(labels.size(), 20, 0.5, r4);
  check_is_partition(q, labels.size());
  const auto counts = tl::data::partition_label_counts(q, labels);
  for (std::size_t c = 0; c < q.size(); ++c)
    if (q[c].size() >= 1000) CHECK(labels_seen(counts[c]) == 10);
#if TINYLARGE_HAS_EXCEPTIONS
  tl::rng r(1);
  require_throws_with<tl::invalid_argument>([&] { (void)tl::data::partition_quantity(n, k, 0.0, r); },
                                            {"partition_quantity", "beta"});
  require_throws_with<tl::invalid_argument>([&] { (void)tl::data::partition_quantity(n, k, 1.0, r, 1001); },
                                            {"min_size 1001"});
  require_throws_with<tl::invalid_argument>(
      [&] { (void)tl::data::partition_quantity(n, 100, 0.01, r, 90, 5); },
      {"after 5 draws", "increase beta"});
  require_throws_with<tl::invalid_argument>([&] { (void)tl::data::partition_quantity(5, 6, 1.0, r); },
                                            {"6 clients", "5 samples"});
#endif
}

TEST_CASE("partition_spec: parse, canonical text, the partitioner it names, bad specs refused",
          "[data][partition]") {
  using scheme = tl::data::partition_spec::scheme;
  const auto labels = fmnist_labels_or_synthetic();
  const std::span<const std::uint8_t> y(labels);
  struct good {
    const char* text;
    scheme kind;
    const char* canonical;
  };
  for (const good& g : {good{"iid", scheme::iid, "iid"}, good{"shards:2", scheme::shards, "shards:2"},
                        good{"shards:005", scheme::shards, "shards:5"},
                        good{"dirichlet:0.5", scheme::dirichlet, "dirichlet:0.5"},
                        good{"dirichlet:1e-1", scheme::dirichlet, "dirichlet:0.1"},
                        good{"quantity:0.25", scheme::quantity, "quantity:0.25"}}) {
    INFO(g.text);
    const tl::data::partition_spec s = tl::data::parse_partition_spec(g.text);
    CHECK(s.kind == g.kind);
    CHECK(s.text() == g.canonical);
    CHECK(tl::data::parse_partition_spec(s.text()) == s);
    CHECK_FALSE(s.description().empty());
    tl::rng r1(11), r2(11);
    const tl::data::partition_t parts = s(y, 20, r1);
    check_is_partition(parts, labels.size());
    // The spec runs the named partitioner with its parameter and nothing else.
    tl::data::partition_t direct;
    switch (g.kind) {
      case scheme::iid: direct = tl::data::partition_iid(labels.size(), 20, r2); break;
      case scheme::shards: direct = tl::data::partition_shards(y, 20, s.shards_per_client, r2); break;
      case scheme::dirichlet: direct = tl::data::partition_dirichlet(y, 20, s.concentration, r2, 10); break;
      case scheme::quantity: direct = tl::data::partition_quantity(labels.size(), 20, s.concentration, r2, 10); break;
    }
    CHECK(parts == direct);
  }
  CHECK(tl::data::parse_partition_spec("shards:3").shards_per_client == 3);
  CHECK(tl::data::parse_partition_spec("dirichlet:0.5").concentration == 0.5);
  CHECK(tl::data::parse_partition_spec("quantity:2").concentration == 2.0);
  CHECK(tl::data::parse_partition_spec("dirichlet:0.5").description().find("0.5") != std::string::npos);
#if TINYLARGE_HAS_EXCEPTIONS
  for (const char* bad : {"", "IID", "iid:1", "iid:", "shards", "shards:", "shards:0", "shards:-1", "shards:+2",
                          "shards:2x", "shards:1.5", "shards: 2", "dirichlet", "dirichlet:", "dirichlet:0",
                          "dirichlet:-0.5", "dirichlet:nan", "dirichlet:inf", "dirichlet:1e999", "dirichlet:0.5 ",
                          "dirichlet:0.5:1", "Dirichlet:0.5", "quantity", "quantity:abc", "zipf:1", ":0.5"}) {
    INFO("spec '" << bad << "'");
    require_throws_with<tl::invalid_argument>([&] { (void)tl::data::parse_partition_spec(bad); },
                                              {"partition spec '" + std::string(bad) + "'", "expected iid"});
  }
  require_throws_with<tl::invalid_argument>([&] { (void)tl::data::parse_partition_spec("zipf:1"); },
                                            {"unknown scheme 'zipf'"});
  require_throws_with<tl::invalid_argument>([&] { (void)tl::data::parse_partition_spec("dirichlet:0"); },
                                            {"positive finite"});
  require_throws_with<tl::invalid_argument>([&] { (void)tl::data::parse_partition_spec("shards:0"); },
                                            {">= 1"});
#endif
}

// ===========================================================================
// Seeded mutation fuzzing of every parser (run under ASan/UBSan in CI)
// ===========================================================================

namespace {
/// Apply 1–4 random edits: bit flip, byte overwrite, truncation, insertion,
/// or a 32-bit field set to an extreme value.
bytes mutate(bytes b, tl::rng& r) {
  const std::uint32_t edits = 1 + r.uniform_int(4);
  for (std::uint32_t e = 0; e < edits; ++e) {
    const auto pos = [&] {
      return b.empty() ? 0 : r.uniform_int(static_cast<std::uint32_t>(b.size()));
    };
    switch (r.uniform_int(5)) {
      case 0:
        if (!b.empty()) b[pos()] ^= static_cast<std::uint8_t>(1u << r.uniform_int(8));
        break;
      case 1:
        if (!b.empty()) b[pos()] = static_cast<std::uint8_t>(r.next_u32());
        break;
      case 2:
        b.resize(pos());
        break;
      case 3: {
        const std::size_t at = pos();  // draws sequenced: same with every compiler
        b.insert(b.begin() + static_cast<std::ptrdiff_t>(at),
                 static_cast<std::uint8_t>(r.next_u32()));
        break;
      }
      default:
        if (b.size() >= 4) {
          const std::size_t p = r.uniform_int(static_cast<std::uint32_t>(b.size() - 3));
          const std::uint8_t v = r.uniform_int(2) ? 0xFF : 0x7F;
          for (std::size_t k = 0; k < 4; ++k) b[p + k] = k == 0 ? v : 0xFF;
        }
        break;
    }
  }
  return b;
}
}  // namespace

TEST_CASE("Parsers survive seeded random mutations of valid inputs", "[data][io][fuzz]") {
  const bytes im = make_idx_images(4, 3, 3), lb = make_idx_labels(4);
  const bytes gz = gzip_bytes(im);
  const bytes npy = tl::io::encode_npy(ramp<float>({3, 2}, 0.5, 1));
  tl::io::npz_writer wr;
  wr.add("a", ramp<std::int16_t>({5}, 3, -7)).add("b", ramp<double>({2, 2}, 0.1, 0));
  const bytes npz = wr.bytes();
  tl::rng r(20261126);
  std::size_t rejected = 0, total = 0;
  tl::io::npy_limits lim;
  lim.max_bytes = 1 << 24;  // keep accidental "valid" giants small
  for (int it = 0; it < 5000; ++it, total += 5) {
    tl::data::dataset ds;
    const bytes mim = mutate(im, r);  // sequenced: same draws with every compiler
    const bytes mlb = mutate(lb, r);
    rejected += !tl::data::decode_idx(mim, mlb, ds).ok();
    bytes plain;
    rejected += !tl::io::gunzip(mutate(gz, r), plain, 1 << 20).ok();
    tl::io::npy_array a;
    const tl::status sn = tl::io::decode_npy(mutate(npy, r), a, lim);
    rejected += !sn.ok();
    if (sn.ok()) {
      std::size_t count = 0;
      REQUIRE(tl::io::npy_shape_count(a.shape, count));
      REQUIRE(count == a.data.size());
    }
    tl::io::npz_archive ar;
    const bytes z = mutate(npz, r);
    const tl::status sz = tl::io::npz_archive::decode(z, ar, lim);
    rejected += !sz.ok();
    if (sz.ok()) {
      for (const auto& name : ar.names()) {
        const tl::io::npy_header h = ar.header(name);
        REQUIRE(h.count * tl::io::npy_itemsize(h.dtype) == h.data_bytes);
        REQUIRE(ar.get(name).size() == h.count);  // any dtype converts to float
      }
    }
    bytes inflated(100);
    rejected += !tl::io::inflate_raw(mutate(npz, r), inflated).ok();
  }
  // The mutations reach deep enough to be rejected most of the time (a
  // harmless edit — e.g. a ZIP timestamp or a pixel value — is accepted).
  INFO("rejected " << rejected << " of " << total);
  CHECK(rejected > total / 2);
}

// ===========================================================================
// Hostile files: decompression and overlap bombs, endless inputs, directories
// (issue 25). Each bomb is opened in a forked child whose peak RSS is measured.
// ===========================================================================

#if TINYLARGE_HAS_EXCEPTIONS

namespace {

constexpr std::size_t mib = std::size_t{1} << 20;

/// A raw DEFLATE stream of `prefix` followed by `zeros_mib` MiB of zeros, built
/// cheaply: one 1 MiB block sequence of zeros, byte-aligned by Z_SYNC_FLUSH, is
/// repeated (its back-references reach only into the zeros before it). Returns the
/// stream; `crc` and `size` receive the CRC-32 and the length of the plain data.
bytes deflate_zeros(const bytes& prefix, std::size_t zeros_mib, int window_bits, std::uint32_t& crc,
                    std::uint64_t& size) {
  REQUIRE(zeros_mib >= 2);
  z_stream z{};
  REQUIRE(deflateInit2(&z, 9, Z_DEFLATED, window_bits, 9, Z_DEFAULT_STRATEGY) == Z_OK);
  const bytes zeros(mib, 0);
  bytes out;
  auto pump = [&](const std::uint8_t* in, std::size_t n, int flush) {
    bytes got;
    std::uint8_t buf[1 << 16];
    z.next_in = const_cast<Bytef*>(in);
    z.avail_in = static_cast<uInt>(n);
    do {
      z.next_out = buf;
      z.avail_out = sizeof buf;
      const int rc = deflate(&z, flush);
      REQUIRE((rc == Z_OK || rc == Z_STREAM_END || rc == Z_BUF_ERROR));
      got.insert(got.end(), buf, buf + (sizeof buf - z.avail_out));
    } while (z.avail_out == 0 || z.avail_in != 0);
    return got;
  };
  out = pump(prefix.data(), prefix.size(), Z_NO_FLUSH);
  const bytes first = pump(zeros.data(), mib, Z_SYNC_FLUSH);  // prefix + 1 MiB, byte-aligned
  out.insert(out.end(), first.begin(), first.end());
  const bytes again = pump(zeros.data(), mib, Z_SYNC_FLUSH);  // 1 MiB of zeros after zeros
  for (std::size_t i = 1; i < zeros_mib; ++i) out.insert(out.end(), again.begin(), again.end());
  const bytes last = pump(nullptr, 0, Z_FINISH);
  out.insert(out.end(), last.begin(), last.end());
  deflateEnd(&z);
  crc = static_cast<std::uint32_t>(::crc32(0L, prefix.data(), static_cast<uInt>(prefix.size())));
  const uLong crc_mib = ::crc32(0L, zeros.data(), static_cast<uInt>(mib));
  for (std::size_t i = 0; i < zeros_mib; ++i) crc = static_cast<std::uint32_t>(crc32_combine(crc, crc_mib, mib));
  size = prefix.size() + std::uint64_t{zeros_mib} * mib;
  return out;
}

/// A gzip file (RFC 1952) around a raw DEFLATE stream.
bytes gzip_wrap(const bytes& deflated, std::uint32_t crc, std::uint64_t size) {
  bytes g;
  g.reserve(deflated.size() + 18);
  static constexpr std::uint8_t head[10] = {0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3};  // gzip, deflate, Unix
  for (const std::uint8_t h : head) g.push_back(h);
  g.insert(g.end(), deflated.begin(), deflated.end());
  for (int i = 0; i < 4; ++i) g.push_back(static_cast<std::uint8_t>(crc >> (8 * i)));
  for (int i = 0; i < 4; ++i) g.push_back(static_cast<std::uint8_t>(size >> (8 * i)));
  return g;
}

void put_le(bytes& b, std::uint64_t v, int n) {
  for (int i = 0; i < n; ++i) b.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
}

/// The issue's aliased-member bomb: `members` local headers, one after the other,
/// whose extra fields stretch so that every member's data starts at the same offset:
/// one shared DEFLATE stream of a .npy of `zeros_mib` MiB of zeros (valid CRC), which
/// every member claims as its own under a different name.
bytes aliased_npz_bomb(std::size_t members, std::size_t zeros_mib) {
  const bytes npy = npy_with_header(
      "{'descr': '|u1', 'fortran_order': False, 'shape': (" + std::to_string(zeros_mib * mib) + ",), }", {});
  std::uint32_t crc = 0;
  std::uint64_t size = 0;
  const bytes stream = deflate_zeros(npy, zeros_mib, -15, crc, size);
  const std::size_t lh = 30 + 5;  // local header with a 5-byte name "a.npy"
  const std::size_t data_at = lh * members;
  bytes z, cd;
  for (std::size_t k = 0; k < members; ++k) {
    const std::string name = std::string(1, static_cast<char>('a' + k)) + ".npy";
    for (bytes* b : {&z, &cd}) {
      put_le(*b, b == &z ? 0x04034b50u : 0x02014b50u, 4);
      if (b == &cd) put_le(*b, 20, 2);
      put_le(*b, 20, 2);
      put_le(*b, 0, 2);
      put_le(*b, 8, 2);  // DEFLATED
      put_le(*b, 0, 2);
      put_le(*b, 0x21, 2);
      put_le(*b, crc, 4);
      put_le(*b, stream.size(), 4);
      put_le(*b, size, 4);
      put_le(*b, name.size(), 2);
      // The local extra field covers the following local headers.
      put_le(*b, b == &z ? data_at - lh * (k + 1) : 0, 2);
      if (b == &cd) {
        put_le(*b, 0, 2);
        put_le(*b, 0, 2);
        put_le(*b, 0, 2);
        put_le(*b, 0, 4);
        put_le(*b, lh * k, 4);
      }
      b->insert(b->end(), name.begin(), name.end());
    }
  }
  REQUIRE(z.size() == data_at);
  z.insert(z.end(), stream.begin(), stream.end());
  const std::size_t cd_offset = z.size();
  z.insert(z.end(), cd.begin(), cd.end());
  put_le(z, 0x06054b50u, 4);
  put_le(z, 0, 2);
  put_le(z, 0, 2);
  put_le(z, members, 2);
  put_le(z, members, 2);
  put_le(z, cd.size(), 4);
  put_le(z, cd_offset, 4);
  put_le(z, 0, 2);
  return z;
}

/// Run `f` in a child; expect a tinylarge error with `code` and a peak RSS within
/// `budget_mib` of this process's RSS before the fork. Prints the figures.
template <class F>
void expect_bounded_failure(const char* what, tl::errc code, double budget_mib, F&& f) {
  const double base = test_child::current_rss_mib();
  const test_child::outcome o = test_child::run(std::forward<F>(f));
  std::printf("  %-58s -> %-20s peak RSS %7.1f MiB (process before: %6.1f MiB, bound %6.1f MiB)\n", what,
              o.how == test_child::outcome::tinylarge_error ? tl::to_string(o.code) : "NOT a tinylarge error",
              o.peak_rss_mib, base, base + budget_mib);
  INFO(what << ": " << o.what);
  REQUIRE(o.how == test_child::outcome::tinylarge_error);
  CHECK(o.code == code);
  if (test_child::rss_meaningful) CHECK(o.peak_rss_mib <= base + budget_mib);
}

}  // namespace

TEST_CASE("Hostile files: a 4 MB gzip'd IDX holding 4 GiB ends in too_large, in bounded memory, from its header",
          "[data][idx][hostile]") {
  // Valid IDX header: 4096 images of 1024 x 1024 = exactly 4 GiB declared.
  bytes header = {0, 0, 8, 3};
  put_be32(header, 4096);
  put_be32(header, 1024);
  put_be32(header, 1024);
  std::uint32_t crc = 0;
  std::uint64_t size = 0;
  const bytes stream = deflate_zeros(header, 4096, -15, crc, size);  // sets crc and size
  const bytes bomb = gzip_wrap(stream, crc, size);
  std::printf("gzip IDX bomb: %.2f MB holding %.2f GiB\n", static_cast<double>(bomb.size()) / 1e6,
              static_cast<double>(size) / double(1 << 30));
  const std::string path = scratch("bomb-idx3-ubyte.gz"), labels = scratch("bomb-labels");
  write_bytes(path, bomb);
  write_bytes(labels, make_idx_labels(4096));

  expect_bounded_failure("load_idx, default limits (cap 4 GiB, ratio 256)", tl::errc::too_large, 64.0,
                         [&] { (void)tl::data::load_idx(path, labels); });
  tl::data::idx_limits capped;
  capped.max_bytes = 256 * mib;
  capped.max_ratio = 0;  // the cap alone
  expect_bounded_failure("load_idx, cap 256 MiB, no ratio", tl::errc::too_large, 256.0 + 64.0,
                         [&] { (void)tl::data::load_idx(path, labels, capped); });
  tl::data::idx_limits no_ratio;
  no_ratio.max_ratio = 0;
  no_ratio.max_bytes = std::size_t{1} << 31;  // 2 GiB: below the 4 GiB the header declares
  expect_bounded_failure("load_idx, cap 2 GiB, no ratio", tl::errc::too_large, 64.0,
                         [&] { (void)tl::data::load_idx(path, labels, no_ratio); });
  // The three refusals above come from the declared header alone (nothing
  // inflated past it): the message says so.
  require_throws_with<tl::format_error>([&] { (void)tl::data::load_idx(path, labels); },
                                        {"its IDX header declares 4294967312 bytes, more than the limit"});
  // A header that lies — 1 image of 1024 x 1024 declared, 4 GiB of zeros
  // behind it — is stopped by the inflation limit, in bounded memory.
  bytes small = {0, 0, 8, 3};
  put_be32(small, 1);
  put_be32(small, 1024);
  put_be32(small, 1024);
  const bytes liar_stream = deflate_zeros(small, 4096, -15, crc, size);
  const std::string liar = scratch("liar-idx3-ubyte.gz"), one_label = scratch("liar-labels");
  write_bytes(liar, gzip_wrap(liar_stream, crc, size));
  write_bytes(one_label, make_idx_labels(1));
  expect_bounded_failure("load_idx, header declares 1 MiB, stream holds 4 GiB, cap 256 MiB", tl::errc::too_large,
                         256.0 + 64.0, [&] { (void)tl::data::load_idx(liar, one_label, capped); });
}

TEST_CASE("Hostile files: gunzip holds no slack; the limit is exact", "[io][gzip][hostile]") {
  std::uint32_t crc = 0;
  std::uint64_t size = 0;
  const bytes stream = deflate_zeros({1, 2, 3}, 200, -15, crc, size);  // sets crc and size
  const bytes g = gzip_wrap(stream, crc, size);
  // Exactly the size: accepted; one byte less: too_large.
  {
    bytes out;
    const tl::status st = tl::io::gunzip(g, out, size);
    INFO(st.message);
    REQUIRE(st.ok());
    CHECK(out.size() == size);
    CHECK(out[0] == 1);
    CHECK(out.back() == 0);
    CHECK(out.capacity() == size);  // allocated once, at the final size
    CHECK(tl::io::gunzip(g, out, size - 1).code == tl::errc::too_large);
  }
  // Valid 200 MiB stream: peak = the output (+ the input), not 1.5-2x by doubling.
  const double base = test_child::current_rss_mib();
  const auto o = test_child::run([&] {
    bytes out;
    tl::raise_if_error(tl::io::gunzip(g, out, std::size_t{1} << 32));
  });
  std::printf("  gunzip of a valid 200 MiB stream: peak RSS %.1f MiB (process before %.1f MiB)\n", o.peak_rss_mib, base);
  REQUIRE(o.how == test_child::outcome::returned);
  if (test_child::rss_meaningful) CHECK(o.peak_rss_mib <= base + 200.0 + 16.0);
  // Ratio budget: at most max_ratio x input, but never below the floor; the cap wins.
  CHECK(tl::io::decompression_budget(1000, 1 << 30, 256, 1 << 26) == std::size_t{1} << 26);
  CHECK(tl::io::decompression_budget(std::size_t{1} << 20, std::size_t{1} << 30, 256, 1 << 26) == std::size_t{1} << 28);
  CHECK(tl::io::decompression_budget(std::size_t{1} << 30, 1000, 256, 1 << 26) == 1000);
  CHECK(tl::io::decompression_budget(SIZE_MAX / 2, SIZE_MAX, 256, 0) == SIZE_MAX);
  CHECK(tl::io::decompression_budget(5, 77, 0, 0) == 77);
}

TEST_CASE("Hostile files: aliased npz members sharing one 1 GiB stream end in too_large",
          "[io][npz][hostile]") {
  const bytes bomb = aliased_npz_bomb(15, 1024);
  std::printf("aliased npz bomb: %.2f MB, 15 members each claiming the same 1 GiB\n",
              static_cast<double>(bomb.size()) / 1e6);
  const std::string path = scratch("aliased.npz");
  write_bytes(path, bomb);
  expect_bounded_failure("npz_archive::load, default limits (cap 16 GiB, ratio 256)", tl::errc::too_large, 64.0,
                         [&] { (void)tl::io::npz_archive::load(path); });
  tl::io::npy_limits capped;
  capped.max_bytes = 512 * mib;
  capped.max_ratio = 0;
  expect_bounded_failure("npz_archive::load, cap 512 MiB, no ratio", tl::errc::too_large, 512.0 + 64.0,
                         [&] { (void)tl::io::npz_archive::load(path, capped); });
  // With both limits lifted, the aliasing itself is refused, before any inflation.
  tl::io::npy_limits lifted;
  lifted.max_ratio = 0;
  lifted.max_bytes = SIZE_MAX;
  expect_bounded_failure("npz_archive::load, no cap, no ratio: overlap check", tl::errc::corrupt, 64.0,
                         [&] { (void)tl::io::npz_archive::load(path, lifted); });
  std::vector<tl::io::zip_entry> entries;
  const tl::status s = tl::io::parse_zip_directory(bomb, entries, lifted);
  CHECK(s.code == tl::errc::corrupt);
  CHECK(std::string(s.message).find("overlap") != std::string::npos);
  // One member alone is a legitimate (if zero-filled) archive: 1 GiB from 1 MB is over
  // the ratio by default and accepted when the user lifts it.
  const bytes one = aliased_npz_bomb(1, 60);
  CHECK(tl::io::parse_zip_directory(one, entries).ok());  // 60 MiB: within the ratio floor
  const bytes big = aliased_npz_bomb(1, 1024);
  CHECK(tl::io::parse_zip_directory(big, entries).code == tl::errc::too_large);
  CHECK(tl::io::parse_zip_directory(big, entries, lifted).ok());
}

TEST_CASE("Hostile files: endless inputs stop at the cap; directories are io_errors",
          "[data][io][hostile]") {
  if (!tl::io::file_readable("/dev/zero")) {
    WARN("no /dev/zero: endless-input checks skipped");
    return;
  }
  tl::data::idx_limits il;
  il.max_bytes = 128 * mib;
  expect_bounded_failure("load_idx(/dev/zero), cap 128 MiB", tl::errc::too_large, 128.0 + 64.0,
                         [&] { (void)tl::data::load_idx("/dev/zero", "/dev/zero", il); });
  tl::io::npy_limits nl;
  nl.max_bytes = 128 * mib;
  expect_bounded_failure("load_npy(/dev/zero), cap 128 MiB", tl::errc::too_large, 128.0 + 64.0,
                         [&] { (void)tl::io::load_npy("/dev/zero", nl); });
  expect_bounded_failure("npz_archive::load(/dev/zero), cap 128 MiB", tl::errc::too_large, 128.0 + 64.0,
                         [&] { (void)tl::io::npz_archive::load("/dev/zero", nl); });
  expect_bounded_failure("read_file(/dev/zero, 100 MiB)", tl::errc::too_large, 100.0 + 64.0,
                         [&] { (void)tl::io::read_file("/dev/zero", 100 * mib); });
  // A pipe (size unknown) is read in chunks and joined once: its bytes come back intact.
  {
    const std::string fifo = scratch("fifo");
    REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
    const pid_t writer = ::fork();
    if (writer == 0) {
      std::FILE* f = std::fopen(fifo.c_str(), "wb");
      for (std::size_t i = 0; i < 3 * mib + 5; ++i) std::fputc(static_cast<int>(i % 251), f);
      std::fclose(f);
      ::_exit(0);
    }
    const bytes got = tl::io::read_file(fifo);
    ::waitpid(writer, nullptr, 0);
    REQUIRE(got.size() == 3 * mib + 5);
    bool same = true;
    for (std::size_t i = 0; i < got.size(); ++i) same = same && got[i] == i % 251;
    CHECK(same);
  }
  const std::string dir = scratch("a_directory");
  fs::create_directories(dir);
  for (auto* load : {+[](const std::string& p) { (void)tl::io::read_file(p); },
                     +[](const std::string& p) { (void)tl::io::load_npy(p); },
                     +[](const std::string& p) { (void)tl::io::npz_archive::load(p); },
                     +[](const std::string& p) { (void)tl::data::load_idx(p, p); }}) {
    try {
      load(dir);
      FAIL("a directory was read");
    } catch (const tl::io_error& e) {
      CHECK(std::string(e.what()).find("directory") != std::string::npos);
    }
  }
}

TEST_CASE("Hostile files: write_file replaces atomically and syncs", "[io][hostile]") {
  const std::string path = scratch("atomic.bin");
  tl::io::write_file(path, bytes{1, 2, 3});
  tl::io::write_file(path, bytes(5000, 9));
  CHECK(tl::io::read_file(path) == bytes(5000, 9));
  CHECK_FALSE(fs::exists(path + ".tmp"));
  // Cannot create the temporary file: io_error, and the old file is untouched.
  CHECK_THROWS_AS(tl::io::write_file(scratch("no/such/dir/x.bin"), bytes{1}), tl::io_error);
  const std::string dir = scratch("is_a_dir");
  fs::create_directories(dir);
  CHECK_THROWS_AS(tl::io::write_file(dir, bytes{1}), tl::io_error);  // rename over a directory
  CHECK_FALSE(fs::exists(dir + ".tmp"));
  CHECK(fs::is_directory(dir));
}

TEST_CASE("Hostile files: FedAvg and split-server checkpoints holding NaN / Inf are not resumed from",
          "[io][checkpoint][hostile]") {
  const float nan = std::nanf(""), inf = std::numeric_limits<float>::infinity();
  const std::string path = scratch("server.ck");
  tl::server_checkpoint c;
  c.rounds_completed = 3;
  c.global = {1.0f, 2.0f, 3.0f};
  c.state = {{0.5f, 0.5f, 0.5f}};
  tl::save_server_checkpoint(path, c);
  tl::server_checkpoint back;
  REQUIRE(tl::load_server_checkpoint(path, back));
  CHECK(back.global == c.global);
  for (int where = 0; where < 2; ++where) {
    tl::server_checkpoint bad = c;
    (where == 0 ? bad.global[1] : bad.state[0][2]) = where == 0 ? nan : -inf;
    tl::save_server_checkpoint(path, bad);  // CRC-valid
    CHECK_THROWS_AS(tl::load_server_checkpoint(path, back), tl::numeric_error);
  }
  tl::split_checkpoint s;
  s.device = {1.0f, 2.0f};
  s.server = {3.0f};
  s.copies.resize(1);
  s.copies[0].vectors = {{0.25f}};
  s.copies[0].steps = 2;
  const std::string spath = scratch("split.ck");
  tl::save_split_checkpoint(spath, s);
  tl::split_checkpoint sb;
  bool found = false;
  REQUIRE(tl::read_split_checkpoint(spath, sb, found).ok());
  CHECK((found && sb.device == s.device));
  for (int where = 0; where < 3; ++where) {
    tl::split_checkpoint bad = s;
    (where == 0 ? bad.device[0] : where == 1 ? bad.server[0] : bad.copies[0].vectors[0][0]) = where == 1 ? inf : nan;
    tl::save_split_checkpoint(spath, bad);
    CHECK(tl::read_split_checkpoint(spath, sb, found).code == tl::errc::non_finite);
  }
  // An endless file stops at the largest frame the decoder accepts (64 MiB).
  if (tl::io::file_readable("/dev/zero")) {
    try {
      (void)tl::load_server_checkpoint("/dev/zero", back);
      FAIL("/dev/zero was read as a checkpoint");
    } catch (const tl::format_error& e) {
      CHECK(e.code() == tl::errc::too_large);
    }
  }
}
#endif  // TINYLARGE_HAS_EXCEPTIONS

// ---------------------------------------------------------------------------
// The traffic task (data/traffic.hpp)
// ---------------------------------------------------------------------------

TEST_CASE("traffic generator: deterministic, finite, bounded features, priors and the domains' physics", "[data][traffic]") {
  namespace td = tl::data;
  constexpr std::size_t F = td::traffic_features;
  const td::traffic_options o{.flows = 3000, .seed = 5};
  const auto campus = td::generate_traffic(td::campus_wired(), o);
  const auto cell = td::generate_traffic(td::cellular_edge(), o);
  REQUIRE(campus.count == 3000);
  REQUIRE(campus.x.size() == 3000 * F);
  // The same seed gives the same bytes; another seed other flows.
  const auto again = td::generate_traffic(td::campus_wired(), o);
  CHECK(again.x == campus.x);
  CHECK(again.y == campus.y);
  const auto other = td::generate_traffic(td::campus_wired(), {.flows = 3000, .seed = 6});
  CHECK(other.x != campus.x);

  const auto udp = static_cast<std::size_t>(15), packets = static_cast<std::size_t>(0), large = static_cast<std::size_t>(9);
  for (const auto* s : {&campus, &cell}) {
    std::vector<std::size_t> n(td::traffic_classes, 0);
    for (std::size_t i = 0; i < s->count; ++i) {
      REQUIRE(s->y[i] < td::traffic_classes);
      ++n[s->y[i]];
      const float* f = s->x.data() + i * F;
      for (std::size_t j = 0; j < F; ++j)
        if (!(std::isfinite(f[j]) && f[j] >= 0.0f && f[j] <= 3.0f)) {
          INFO("flow " << i << " feature " << td::traffic_feature_name(j) << " = " << f[j]);
          FAIL("a feature is not finite or outside [0, 3]");
        }
      // At most max_packets packets are observed.
      if (f[packets] > static_cast<float>(std::log1p(32.0) / 10 + 1e-6)) FAIL("flow " << i << ": more than 32 packets");
      // VoIP and gaming are UDP, bulk transfers TCP.
      const auto c = static_cast<td::traffic_class>(s->y[i]);
      const bool must_udp = c == td::traffic_class::voip || c == td::traffic_class::gaming;
      if ((must_udp && f[udp] != 1.0f) || (c == td::traffic_class::bulk && f[udp] != 0.0f))
        FAIL("flow " << i << " of class " << td::traffic_class_name(s->y[i]) << ": udp = " << f[udp]);
    }
    // The class mix follows the domain's priors (3000 flows: ±3 percentage points is > 4 sigma).
    const auto& priors = s == &campus ? td::campus_wired().priors : td::cellular_edge().priors;
    double sum = 0;
    for (const double p : priors) sum += p;
    for (std::size_t c = 0; c < td::traffic_classes; ++c) {
      INFO("class " << td::traffic_class_name(c));
      CHECK(std::abs(static_cast<double>(n[c]) / 3000.0 - priors[c] / sum) < 0.03);
    }
  }
  // Bulk transfers fill packets to the MTU: on the campus (1500 B) most of them reach 1200 B
  // and more; behind the cellular edge's 1400-B MTU no packet is larger than 1400 B.
  double bulk_large = 0, bulk_n = 0;
  float max_down_mean = 0;
  for (std::size_t i = 0; i < campus.count; ++i)
    if (campus.y[i] == static_cast<std::uint8_t>(td::traffic_class::bulk)) {
      bulk_large += campus.x[i * F + large];
      ++bulk_n;
    }
  for (std::size_t i = 0; i < cell.count; ++i) max_down_mean = std::max(max_down_mean, cell.x[i * F + 7]);
  CHECK(bulk_large / bulk_n > 0.5);
  CHECK(max_down_mean <= 1400.0f / 1500.0f + 1e-6f);

  // A zero prior removes its class.
  auto no_iot = td::campus_wired();
  no_iot.priors[static_cast<std::size_t>(td::traffic_class::iot)] = 0;
  const auto s = td::generate_traffic(no_iot, {.flows = 500, .seed = 1});
  CHECK(std::count(s.y.begin(), s.y.end(), static_cast<std::uint8_t>(td::traffic_class::iot)) == 0);

#if TINYLARGE_HAS_EXCEPTIONS
  auto bad = td::campus_wired();
  bad.mtu = 60;
  CHECK_THROWS_AS(td::generate_traffic(bad, o), tl::invalid_argument);
  bad = td::campus_wired();
  bad.priors.fill(0);
  CHECK_THROWS_AS(td::generate_traffic(bad, o), tl::invalid_argument);
  bad = td::campus_wired();
  bad.loss = std::numeric_limits<double>::quiet_NaN();
  CHECK_THROWS_AS(td::generate_traffic(bad, o), tl::invalid_argument);
  CHECK_THROWS_AS(td::generate_traffic(td::campus_wired(), {.flows = 10, .max_packets = 1}), tl::invalid_argument);
#endif
}

// ---------------------------------------------------------------------------
// Fading channels and the channel-prediction task (data/fading.hpp)
// ---------------------------------------------------------------------------

TEST_CASE("fading channel: unit power and Clarke's autocorrelation J0(2 pi nu tau)", "[data][fading]") {
  // Averaged over the random rotation theta the paths' angles are uniform, so the ensemble
  // autocorrelation is exactly J0 for any M; the estimate over R = 2000 realisations has a
  // standard deviation below 1/sqrt(R) = 0.022 per lag: 0.1 is more than 4 sigma.
  namespace td = tl::data;
  for (const double nu : {0.01, 0.05, 0.2}) {
    constexpr std::size_t R = 2000, K = 32, lags = 8;
    std::vector<std::complex<double>> acc(lags + 1, 0.0);
    double power = 0;
    for (std::size_t r = 0; r < R; ++r) {
      tl::rng g(3, r);
      const auto h = td::fading_sequence({.doppler = nu, .sinusoids = 16}, K + lags, g);
      for (std::size_t tau = 0; tau <= lags; ++tau)
        for (std::size_t k = 0; k < K; ++k) acc[tau] += h[k + tau] * std::conj(h[k]);
      for (std::size_t k = 0; k < K; ++k) power += std::norm(h[k]);
    }
    INFO("nu = " << nu);
    CHECK(std::abs(power / (R * K) - 1.0) < 0.1);
    for (std::size_t tau = 0; tau <= lags; ++tau) {
      const std::complex<double> c = acc[tau] / static_cast<double>(R * K);
      const double j0 = std::cyl_bessel_j(0.0, 2 * std::numbers::pi * nu * static_cast<double>(tau));
      INFO("lag " << tau << ": " << c << " against J0 = " << j0);
      CHECK(std::abs(c.real() - j0) < 0.1);
      CHECK(std::abs(c.imag()) < 0.1);
    }
  }
}

TEST_CASE("channel-prediction windows: rows are the sequence, noise at the stated SNR, NMSE", "[data][fading]") {
  namespace td = tl::data;
  const td::fading_options f{.doppler = 0.05, .sinusoids = 16};
  const td::prediction_options clean{.history = 8, .horizon = 3, .realisations = 5, .windows = 4, .seed = 9};
  const auto s = td::channel_prediction_windows(f, clean);
  REQUIRE(s.count == 20);
  REQUIRE(s.x.size() == 20 * 16);
  REQUIRE(s.y.size() == 40);
  // Noise-free rows are the realisation's samples; the target is `horizon` steps after the last one.
  for (std::size_t r = 0; r < 5; ++r) {
    tl::rng g(9, r);
    const auto h = td::fading_sequence(f, 4 * 11, g);
    for (std::size_t w = 0; w < 4; ++w) {
      const std::size_t row = r * 4 + w;
      for (std::size_t t = 0; t < 8; ++t) {
        REQUIRE(s.x[row * 16 + 2 * t] == static_cast<float>(h[w * 11 + t].real()));
        REQUIRE(s.x[row * 16 + 2 * t + 1] == static_cast<float>(h[w * 11 + t].imag()));
      }
      REQUIRE(s.y[2 * row] == static_cast<float>(h[w * 11 + 7 + 3].real()));
      REQUIRE(s.y[2 * row + 1] == static_cast<float>(h[w * 11 + 7 + 3].imag()));
    }
  }
  // At 10 dB the observations differ from the clean ones by noise of power 0.1; the targets do not.
  td::prediction_options noisy = clean;
  noisy.snr_db = 10;
  noisy.realisations = 200;
  td::prediction_options clean200 = clean;
  clean200.realisations = 200;
  const auto a = td::channel_prediction_windows(f, noisy), b = td::channel_prediction_windows(f, clean200);
  CHECK(a.y == b.y);
  double e = 0;
  for (std::size_t i = 0; i < a.x.size(); ++i) e += (a.x[i] - b.x[i]) * (a.x[i] - b.x[i]);
  CHECK(std::abs(e / static_cast<double>(a.count * 8) - 0.1) < 0.01);  // 6 400 complex samples: sigma ~ 1.8%
  // NMSE: predicting half of every target leaves a quarter of its power.
  std::vector<float> half(b.y);
  for (float& v : half) v *= 0.5f;
  CHECK(td::nmse_db(b, half) == Approx(10 * std::log10(0.25)).margin(1e-9));
#if TINYLARGE_HAS_EXCEPTIONS
  tl::rng g(1);
  CHECK_THROWS_AS(td::fading_sequence({.doppler = 0}, 4, g), tl::invalid_argument);
  CHECK_THROWS_AS(td::fading_sequence({.doppler = 0.7}, 4, g), tl::invalid_argument);
  CHECK_THROWS_AS(td::fading_sequence({.doppler = std::nan("")}, 4, g), tl::invalid_argument);
  CHECK_THROWS_AS(td::channel_prediction_windows(f, {.history = 0}), tl::invalid_argument);
  half.pop_back();
  CHECK_THROWS_AS(td::nmse_db(b, half), tl::invalid_argument);
#endif
}
