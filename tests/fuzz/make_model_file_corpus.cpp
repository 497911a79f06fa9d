// Writes the seed corpus of the model-file fuzz target: valid files of every weight format
// and symbol encoding (one multi-layer file, a small three-layer file, and one file per
// layer), each also with its CRCs intact. Usage: make_model_file_corpus <directory>
#include <cstdio>
#include <string>
#include <vector>

#include "model_file_samples.hpp"
#define TINYLARGE_INT8_MODEL_SAMPLE_WRITER 1
#include "int8_model_sample.hpp"
#include "tinylarge/io/file.hpp"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s <corpus directory>\n", argv[0]);
    return 2;
  }
  const std::string dir = argv[1];
  namespace S = model_file_samples;
  namespace c = tinylarge::compress;
  tinylarge::io::write_file(dir + "/every_format.tlmf", S::every_format().bytes);
  tinylarge::io::write_file(dir + "/small.tlmf", S::small());
  tinylarge::io::write_file(dir + "/int8_cnn.tlmf", int8_model_sample::file());
  tinylarge::io::write_file(dir + "/int8_cnn_csr.tlmf", int8_model_sample::file(1, 0.5));  // pruned, int8_csr
  tinylarge::io::write_file(dir + "/int8_cnn_codebook.tlmf", int8_model_sample::file(1, 0.0, 5));  // int8_codebook, 3 bits
  // int8_huffman_codebook: 5 values, Huffman-coded indices with per-row bit offsets
  tinylarge::io::write_file(dir + "/int8_cnn_huffman_codebook.tlmf", int8_model_sample::file(1, 0.0, 5, true));
  // a residual block: int8 records and an add record (file version 1.4)
  tinylarge::io::write_file(dir + "/int8_residual_cnn.tlmf", int8_model_sample::residual_file());
  // One single-layer file per layer of every_format (small inputs mutate faster).
  const auto all = S::every_format().bytes;
  c::model_file m = c::model_file::from_bytes(all);
  std::size_t at = 32;
  for (std::size_t i = 0; i < m.layer_count(); ++i) {
    const std::size_t len = static_cast<std::size_t>(all[at + 4]) | static_cast<std::size_t>(all[at + 5]) << 8 |
                            static_cast<std::size_t>(all[at + 6]) << 16 | static_cast<std::size_t>(all[at + 7]) << 24;
    std::vector<std::uint8_t> one(all.begin(), all.begin() + 32);
    one.insert(one.end(), all.begin() + static_cast<std::ptrdiff_t>(at), all.begin() + static_cast<std::ptrdiff_t>(at + len));
    const std::uint8_t end[8] = {'T', 'E', 'N', 'D', 1, 0, 0, 0};
    one.insert(one.end(), end, end + 8);
    const std::size_t total = one.size();
    for (int k = 0; k < 8; ++k) one[16 + static_cast<std::size_t>(k)] = static_cast<std::uint8_t>(static_cast<std::uint64_t>(total) >> (8 * k));
    one[12] = 1;
    one[13] = one[14] = one[15] = 0;
    const std::uint32_t crc = tinylarge::crc32(one.data(), 28);
    for (int k = 0; k < 4; ++k) one[28 + static_cast<std::size_t>(k)] = static_cast<std::uint8_t>(crc >> (8 * k));
    (void)c::model_file::from_bytes(one);  // throws if the seed is not valid
    tinylarge::io::write_file(dir + "/layer" + std::to_string(i) + ".tlmf", one);
    at += len;
  }
  // Bare Huffman streams (the decoders' differential check): skewed 5-bit symbols, and
  // codes up to 16 bits, in formats 1 and 2.
  std::vector<std::uint8_t> sym(300), longs(120);
  for (std::size_t k = 0; k < sym.size(); ++k) sym[k] = static_cast<std::uint8_t>((k * k * 7 + k) % 37 % 32 / 4);
  for (std::size_t k = 0; k < longs.size(); ++k) longs[k] = static_cast<std::uint8_t>(k % 3 == 0 ? k % 20 : 0);
  std::size_t seeds = m.layer_count() + 6;
  for (const auto f : {c::huffman_format::single, c::huffman_format::interleaved}) {
    const std::string tag = f == c::huffman_format::single ? "1" : "2";
    tinylarge::io::write_file(dir + "/huffman_skewed_format" + tag + ".bin", c::huffman_encode(sym, 32, f));
    // Fibonacci-like counts give long codes.
    std::vector<std::uint64_t> counts(20);
    counts[0] = counts[1] = 1;
    for (std::size_t k = 2; k < counts.size(); ++k) counts[k] = counts[k - 1] + counts[k - 2];
    c::huffman_code code;
    if (!c::huffman_build(counts.data(), counts.size(), code).ok()) return 1;
    std::vector<std::uint8_t> enc(c::huffman_max_encoded_size(longs.size(), 20));
    std::size_t w = 0;
    if (!c::huffman_encode_with(code, longs.data(), longs.size(), enc.data(), enc.size(), &w, f).ok()) return 1;
    enc.resize(w);
    tinylarge::io::write_file(dir + "/huffman_long_codes_format" + tag + ".bin", enc);
    seeds += 2;
  }
  std::printf("wrote %zu seeds to %s\n", seeds, dir.c_str());
  return 0;
}
