// libFuzzer harness for every untrusted-input parser of the data and I/O
// layer: IDX (decode_idx), gzip (gunzip), raw DEFLATE (inflate_raw), .npy
// (decode_npy) and .npz (npz_archive::decode, header, get).
//
// Not part of the CMake build (it needs clang's -fsanitize=fuzzer). Built, seeded
// (tests/data/make_parsers_corpus.cpp) and run by `scripts/fuzz_target.sh parsers`.
//
// The first input byte selects the parser (mod 6). The IDX target has two
// forms so that it reaches the success path, not only the rejections:
//  - 0: raw pair. Bytes 1–2 (little-endian, mod the rest's size) say where the
//       image file ends and the label file begins; the fuzzer mutates both files.
//  - 5: built pair. Bytes 1–3 give count (0–15), rows and cols (1–8); the rest
//       are the pixels (cycled) and labels. Valid headers are written around them,
//       then byte 4 may corrupt one header byte (at 5 + byte 5 mod the header
//       size). Without corruption `decode_idx` must succeed and return exactly the
//       pixels / 255 and the labels — checked, a mismatch traps.
// At exit the harness prints how many inputs each parser accepted
// ("fuzz_parsers: accepted idx=… npy=… …"), which shows that the success
// paths are reached (scripts/fuzz_target.sh greps it into the log).
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <span>
#include <vector>

#include "tinylarge/data/idx.hpp"
#include "tinylarge/io/gzip.hpp"
#include "tinylarge/io/npz.hpp"

namespace {

// Inputs accepted per selector: 0 raw IDX, 1 npy, 2 npz, 3 gzip, 4 deflate, 5 built IDX.
std::array<unsigned long long, 6> accepted{};

void report() {
  std::fprintf(stderr, "fuzz_parsers: accepted idx_raw=%llu npy=%llu npz=%llu gzip=%llu deflate=%llu idx_built=%llu\n",
               accepted[0], accepted[1], accepted[2], accepted[3], accepted[4], accepted[5]);
}

void put_be32(std::vector<std::uint8_t>& b, std::uint32_t v) {
  for (int s = 24; s >= 0; s -= 8) b.push_back(static_cast<std::uint8_t>(v >> s));
}

void built_idx(std::span<const std::uint8_t> in, const tl::data::idx_limits& il) {
  if (in.size() < 5) return;
  const std::uint32_t count = in[0] % 16, rows = in[1] % 8 + 1, cols = in[2] % 8 + 1;
  const std::uint8_t corrupt = in[3];
  const std::uint8_t where = in[4];
  const std::span<const std::uint8_t> body = in.subspan(5);
  std::vector<std::uint8_t> images = {0, 0, 8, 3}, labels = {0, 0, 8, 1};
  put_be32(images, count);
  put_be32(images, rows);
  put_be32(images, cols);
  put_be32(labels, count);
  const std::size_t pixels = std::size_t{count} * rows * cols;
  for (std::size_t i = 0; i < pixels; ++i)
    images.push_back(body.empty() ? static_cast<std::uint8_t>(i) : body[i % body.size()]);
  for (std::size_t i = 0; i < count; ++i)
    labels.push_back(body.empty() ? 0 : body[(pixels + i) % body.size()]);
  if (corrupt & 1) {  // flip one header byte of one of the files
    std::vector<std::uint8_t>& f = (corrupt & 2) ? labels : images;
    const std::size_t header = (corrupt & 2) ? 8 : 16;
    f[where % header] ^= static_cast<std::uint8_t>(corrupt | 1);
  }
  tl::data::dataset ds;
  const tl::status s = tl::data::decode_idx(images, labels, ds, il);
  if (!s.ok()) {
    if (!(corrupt & 1)) __builtin_trap();  // a valid pair must be accepted
    return;
  }
  ++accepted[5];
  if (!(corrupt & 1)) {
    if (ds.count != count || ds.rows != rows || ds.cols != cols || ds.images.size() != pixels) __builtin_trap();
    for (std::size_t i = 0; i < pixels; ++i)
      if (ds.images[i] != static_cast<float>(images[16 + i]) / 255.0f) __builtin_trap();
    for (std::size_t i = 0; i < count; ++i)
      if (ds.labels[i] != labels[8 + i]) __builtin_trap();
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  std::atexit(report);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  const std::span<const std::uint8_t> in(data + 1, size - 1);
  tl::io::npy_limits limits;
  limits.max_bytes = std::size_t{1} << 24;  // keep "valid" giants out of the fuzzer's RSS
  tl::data::idx_limits il;
  il.max_bytes = std::size_t{1} << 24;
  const unsigned selector = data[0] % 6;
  bool ok = false;
  switch (selector) {
    case 0: {  // IDX: bytes 0-1 place the cut between the image and the label file
      if (in.size() < 2) break;
      const std::span<const std::uint8_t> files = in.subspan(2);
      const std::size_t cut = files.empty() ? 0 : (in[0] | std::size_t{in[1]} << 8) % (files.size() + 1);
      tl::data::dataset ds;
      ok = tl::data::decode_idx(files.first(cut), files.subspan(cut), ds, il).ok();
      if (ok && (ds.images.size() != ds.count * ds.rows * ds.cols || ds.labels.size() != ds.count)) __builtin_trap();
      break;
    }
    case 1: {
      tl::io::npy_array f;
      ok = tl::io::decode_npy(in, f, limits).ok();
      tl::io::basic_npy_array<std::int16_t> i16;  // exercises the range checks
      (void)tl::io::decode_npy(in, i16, limits);
      break;
    }
    case 2: {
      tl::io::npz_archive archive;
      ok = tl::io::npz_archive::decode(in, archive, limits).ok();
      if (ok)
        for (const auto& name : archive.names()) {
          (void)archive.header(name);
          (void)archive.get(name);  // validated members always convert to float
        }
      break;
    }
    case 3: {
      std::vector<std::uint8_t> out;
      const std::size_t cap = std::size_t{1} << 24;
      ok = tl::io::gunzip(in, out, cap).ok();
      if (ok && out.size() > cap) __builtin_trap();
      break;
    }
    case 4: {  // raw DEFLATE: the first byte / 4 is the expected size
      if (in.empty()) break;
      std::vector<std::uint8_t> out(in[0] * std::size_t{4});
      ok = tl::io::inflate_raw(in.subspan(1), out).ok();
      break;
    }
    default:  // built IDX pair: counts its own acceptances
      built_idx(in, il);
      break;
  }
  if (ok) ++accepted[selector];
  return 0;
}
