// libFuzzer harness for every untrusted-input parser of the data and I/O
// layer: IDX (decode_idx), gzip (gunzip), raw DEFLATE (inflate_raw), .npy
// (decode_npy) and .npz (npz_archive::decode, header, get).
//
// Not part of the CMake build (it needs clang's -fsanitize=fuzzer). Build and
// run from the repository root:
//
//   clang++-14 -std=c++20 -g -O1 -fsanitize=fuzzer,address,undefined \
//     -fno-sanitize-recover=undefined -Iinclude tests/data/fuzz_parsers.cpp -lz -o fuzz_parsers
//   mkdir -p corpus && ./fuzz_parsers -max_total_time=300 -max_len=4096 -rss_limit_mb=1024 corpus
//
// The first input byte selects the parser (mod 5); seed the corpus with valid
// files prefixed by that byte (an IDX image+label pair, np.save / np.savez /
// np.savez_compressed output, a gzip file) to reach deep states quickly.
// Run on 2026-11-26: about 10 million executions in total, no finding.
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "tinylarge/data/idx.hpp"
#include "tinylarge/io/gzip.hpp"
#include "tinylarge/io/npz.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  const std::span<const std::uint8_t> in(data + 1, size - 1);
  tl::io::npy_limits limits;
  limits.max_bytes = std::size_t{1} << 24;  // keep "valid" giants out of the fuzzer's RSS
  switch (data[0] % 5) {
    case 0: {  // IDX: the first half is the image file, the rest the label file
      tl::data::idx_limits il;
      il.max_bytes = std::size_t{1} << 24;
      tl::data::dataset ds;
      const std::size_t cut = in.size() / 2;
      (void)tl::data::decode_idx(in.first(cut), in.subspan(cut), ds, il);
      break;
    }
    case 1: {
      tl::io::npy_array f;
      (void)tl::io::decode_npy(in, f, limits);
      tl::io::basic_npy_array<std::int16_t> i16;  // exercises the range checks
      (void)tl::io::decode_npy(in, i16, limits);
      break;
    }
    case 2: {
      tl::io::npz_archive archive;
      if (tl::io::npz_archive::decode(in, archive, limits).ok())
        for (const auto& name : archive.names()) {
          (void)archive.header(name);
          (void)archive.get(name);  // validated members always convert to float
        }
      break;
    }
    case 3: {
      std::vector<std::uint8_t> out;
      (void)tl::io::gunzip(in, out, std::size_t{1} << 24);
      break;
    }
    default: {  // raw DEFLATE: the first byte / 4 is the expected size
      if (in.empty()) break;
      std::vector<std::uint8_t> out(in[0] * std::size_t{4});
      (void)tl::io::inflate_raw(in.subspan(1), out);
      break;
    }
  }
  return 0;
}
