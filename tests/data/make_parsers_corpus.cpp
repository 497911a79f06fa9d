// Writes the seed corpus of the data/I-O parsers fuzz target (tests/data/fuzz_parsers.cpp):
// for each selector byte, valid inputs — a raw IDX image/label pair with its cut, .npy
// arrays of several dtypes, STORED and DEFLATED .npz archives, gzip and raw DEFLATE
// streams, and built IDX pairs. Usage: make_parsers_corpus <directory>
#include <zlib.h>

#include <cstdio>
#include <string>
#include <vector>

#include "tinylarge/core/crc32.hpp"
#include "tinylarge/io/file.hpp"
#include "tinylarge/io/npz.hpp"

namespace {

using bytes = std::vector<std::uint8_t>;

/// zlib deflate with the given window bits (31: gzip, -15: raw DEFLATE).
bytes compress(const bytes& in, int window_bits) {
  z_stream z{};
  if (deflateInit2(&z, 9, Z_DEFLATED, window_bits, 8, Z_DEFAULT_STRATEGY) != Z_OK) std::abort();
  bytes out(deflateBound(&z, in.size()) + 64);
  z.next_in = const_cast<Bytef*>(in.data());
  z.avail_in = static_cast<uInt>(in.size());
  z.next_out = out.data();
  z.avail_out = static_cast<uInt>(out.size());
  if (deflate(&z, Z_FINISH) != Z_STREAM_END) std::abort();
  out.resize(z.total_out);
  deflateEnd(&z);
  return out;
}

void put16(bytes& b, std::size_t v) {
  b.push_back(static_cast<std::uint8_t>(v));
  b.push_back(static_cast<std::uint8_t>(v >> 8));
}
void put32(bytes& b, std::size_t v) {
  put16(b, v & 0xFFFF);
  put16(b, v >> 16);
}

/// A one-member .npz whose member is DEFLATED (as np.savez_compressed writes).
bytes deflated_npz(const std::string& name, const bytes& npy) {
  const bytes data = compress(npy, -15);
  const std::uint32_t crc = tinylarge::crc32(npy.data(), npy.size());
  bytes z, cd;
  const std::string member = name + ".npy";
  for (bytes* b : {&z, &cd}) {
    put32(*b, b == &z ? 0x04034b50u : 0x02014b50u);
    if (b == &cd) put16(*b, 20);
    put16(*b, 20);
    put16(*b, 0);
    put16(*b, 8);  // DEFLATED
    put16(*b, 0);
    put16(*b, 0x21);
    put32(*b, crc);
    put32(*b, data.size());
    put32(*b, npy.size());
    put16(*b, member.size());
    put16(*b, 0);
    if (b == &cd) {
      put16(*b, 0);
      put16(*b, 0);
      put16(*b, 0);
      put32(*b, 0);
      put32(*b, 0);  // local header at offset 0
    }
    b->insert(b->end(), member.begin(), member.end());
    if (b == &z) b->insert(b->end(), data.begin(), data.end());
  }
  const std::size_t cd_offset = z.size();
  z.insert(z.end(), cd.begin(), cd.end());
  put32(z, 0x06054b50u);
  put16(z, 0);
  put16(z, 0);
  put16(z, 1);
  put16(z, 1);
  put32(z, cd.size());
  put32(z, cd_offset);
  put16(z, 0);
  return z;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s <corpus directory>\n", argv[0]);
    return 2;
  }
  const std::string dir = argv[1];
  int n = 0;
  auto put = [&](std::uint8_t selector, const bytes& body) {
    bytes file{selector};
    file.insert(file.end(), body.begin(), body.end());
    tinylarge::io::write_file(dir + "/seed-" + std::to_string(n++), file);
  };
  // 0: raw IDX pair, 3 images of 2 x 2, cut after the image file.
  bytes images = {0, 0, 8, 3, 0, 0, 0, 3, 0, 0, 0, 2, 0, 0, 0, 2};
  for (int i = 0; i < 12; ++i) images.push_back(static_cast<std::uint8_t>(20 * i));
  const bytes labels = {0, 0, 8, 1, 0, 0, 0, 3, 1, 0, 2};
  {
    bytes b = {static_cast<std::uint8_t>(images.size()), 0};
    b.insert(b.end(), images.begin(), images.end());
    b.insert(b.end(), labels.begin(), labels.end());
    put(0, b);
  }
  // 1: .npy of several dtypes; 2: .npz STORED and DEFLATED.
  const std::vector<std::size_t> shape = {2, 3};
  const std::vector<float> f = {0.5f, -1.0f, 2.0f, 3.25f, 0.0f, -0.125f};
  const std::vector<double> d = {1.0, 2.0, 3.0, 4.0, 5.0, 6.0};
  const std::vector<std::int64_t> i8 = {1, -2, 3, -4, 5, 1 << 20};
  const std::vector<std::uint8_t> u1 = {0, 1, 2, 250, 255, 7};
  const bytes npy_f = tinylarge::io::encode_npy<float>(shape, f);
  put(1, npy_f);
  put(1, tinylarge::io::encode_npy<double>(shape, d));
  put(1, tinylarge::io::encode_npy<std::int64_t>(shape, i8));
  put(1, tinylarge::io::encode_npy<std::uint8_t>(shape, u1));
  tinylarge::io::npz_writer w;
  w.add<float>("fc.weight", shape, f);
  w.add<std::int64_t>("ids", shape, i8);
  put(2, w.bytes());
  put(2, deflated_npz("w", npy_f));
  // 3: gzip of an IDX file; 4: raw DEFLATE, first byte = expected size / 4.
  put(3, compress(images, 31));
  put(3, compress(bytes(4000, 7), 31));
  {
    const bytes plain(npy_f.begin(), npy_f.begin() + 64);
    bytes b = {static_cast<std::uint8_t>(plain.size() / 4)};
    const bytes c = compress(plain, -15);
    b.insert(b.end(), c.begin(), c.end());
    put(4, b);
  }
  // 5: built IDX pairs (count, rows, cols, no corruption, position, pixels).
  put(5, {3, 1, 1, 0, 0, 10, 20, 30, 40, 50, 1, 2, 3});
  put(5, {15, 7, 7, 0, 0, 255, 0, 128});
  put(5, {4, 2, 3, 3, 9, 1, 2, 3});
  std::printf("wrote %d seeds to %s\n", n, dir.c_str());
  return 0;
}
