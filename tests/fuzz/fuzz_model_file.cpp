// libFuzzer target of the model-file reader (compress/model_file.hpp).
//
// Each input is parsed twice: with CRC checking (the production path) and with it bypassed,
// so that mutations reach the structural validation behind the checksums. Every accepted
// file has each layer decoded (bit-packed and Huffman streams into a buffer) and run
// through its compressed kernel, so AddressSanitizer sees any view that leaves its bytes.
// Every accepted file is also handed to the on-device binder (`compress::bind_model_file`)
// of a small int8 CNN type (int8_model_sample.hpp), with flash_storage and with
// pruned_or_shared_flash_storage (pruned int8_csr and weight-shared int8_codebook records) and
// with huffman_shared_flash_storage (int8_huffman_codebook records, decoded a row at a time), and
// to a small residual CNN (add records, file version 1.4); a file any of them accepts runs one
// inference.
// Every input is also decoded as a bare Huffman stream by both Huffman decoders, which must
// agree (`huffman_differential`); the seed corpus holds format-1 and format-2 streams.
// Built by scripts/fuzz_model_file.sh with -fsanitize=fuzzer,address,undefined.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "tinylarge/compress/huffman.hpp"
#include "tinylarge/compress/kernels.hpp"
#include "tinylarge/compress/model_file.hpp"
#include "tinylarge/kernels/dense.hpp"
#include "fuzz/int8_model_sample.hpp"

namespace c = tinylarge::compress;
using tinylarge::arch::scalar;

namespace {

void run_layer(const c::layer_view& v) {
  if (v.kind == c::layer_kind::add) {
    std::vector<std::int8_t> x1(v.rows, 3), x2(v.rows, -7), y(v.rows);
    tinylarge::kernels::add_s8(scalar{}, v.rows, x1.data(), x2.data(), v.add.params(), y.data());
    return;
  }
  if (v.format == c::weight_format::int8) {
    std::vector<std::int8_t> x(v.cols, 3), y(v.rows);
    tinylarge::kernels::dense_s8(scalar{}, 1, v.rows, v.cols, x.data(), v.int8.weights, v.s8_params(), y.data());
    return;
  }
  if (v.format == c::weight_format::int8_csr) {
    std::vector<std::int8_t> x(v.cols, 3), y(v.rows);
    const tinylarge::kernels::csr_s8_matrix w{v.rows, v.cols, v.csr_s8.row_ptr, v.csr_s8.gaps, v.csr_s8.values.values};
    tinylarge::kernels::sparse_dense_s8(1, w, x.data(), v.s8_params(), y.data());
    return;
  }
  if (v.format == c::weight_format::int8_codebook) {
    std::vector<std::int8_t> x(v.cols, 3), y(v.rows);
    tinylarge::kernels::codebook_dense_s8(1, v.codebook_s8, x.data(), v.s8_params(), y.data());
    return;
  }
  if (v.format == c::weight_format::int8_huffman_codebook) {
    std::vector<std::int8_t> x(v.cols, 3), y(v.rows), row(v.cols);
    static tinylarge::kernels::huffman_s8_decoder dec;
    tinylarge::kernels::huffman_codebook_s8_matrix w{v.rows, v.cols, nullptr, 0, v.huffman_s8.row_bits,
                                                     v.huffman_s8.codebook, nullptr};
    // open() checked the stream header and code lengths: setting up the decoder cannot fail.
    // The kernel runs whether or not verify_huffman_rows accepted the rows (a row that does not
    // decode must stay inside its bytes: ASan).
    if (!tinylarge::kernels::huffman_s8_prepare(v.huffman_s8.stream, v.huffman_s8.stream_bytes, dec, w).ok())
      __builtin_trap();
    tinylarge::kernels::huffman_dense_s8(scalar{}, w, x.data(), v.s8_params(), y.data(), row.data());
    return;
  }
  std::vector<float> x(v.cols, 0.25f), y(v.rows), scratch(v.factored.rank + 1);
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
    default: break;
  }
}

void parse(const std::uint8_t* data, std::size_t size, bool verify_crc) {
  c::model_file_options opt;
  opt.verify_crc = verify_crc;
  opt.limits.max_file_bytes = 1 << 20;
  opt.limits.max_dim = 1 << 14;      // bounds the kernel input vectors here
  opt.limits.max_elements = 1 << 22;
  c::model_file_reader r;
  if (!r.open(data, size, opt)) return;
  for (std::size_t i = 0; i < r.layer_count(); ++i) {
    c::layer_view v;
    if (!r.layer(i, v)) __builtin_trap();  // open() validated every layer
    std::vector<std::uint8_t> buf(v.decode_bytes);
    if (!r.decode_layer(i, buf.data(), buf.size(), v)) continue;
    if (v.format == c::weight_format::int8_huffman_codebook) (void)r.verify_huffman_rows(i);
    run_layer(v);
  }
  static int8_model_sample::bound net;
  if (tinylarge::compress::bind_model_file(r, net).ok()) {
    std::vector<std::int8_t> x(int8_model_sample::model::input_size, 5);
    (void)net.forward(x.data());
  }
  static int8_model_sample::bound_sparse sparse_net;  // also runs int8_csr records compressed
  if (tinylarge::compress::bind_model_file(r, sparse_net).ok()) {
    std::vector<std::int8_t> x(int8_model_sample::model::input_size, 5);
    (void)sparse_net.forward(x.data());
  }
  static int8_model_sample::bound_huffman huffman_net;  // runs int8_huffman_codebook records a row at a time
  if (tinylarge::compress::bind_model_file(r, huffman_net).ok()) {
    std::vector<std::int8_t> x(int8_model_sample::model::input_size, 5);
    (void)huffman_net.forward(x.data());
  }
  static int8_model_sample::bound_residual residual_net;  // int8 records and the add of a residual block
  if (tinylarge::compress::bind_model_file(r, residual_net).ok()) {
    std::vector<std::int8_t> x(int8_model_sample::residual_model::input_size, 5);
    (void)residual_net.forward(x.data());
  }
}

// The input as a Huffman stream (compress/huffman.hpp, format 1 or 2): the on-device
// decoder (`huffman_decoder`, streams one after the other) and the host's interleaved one
// must agree on the verdict and, when both accept, on every symbol; neither may write past
// the declared count (guard bytes) or read outside the input (ASan).
template <unsigned SeqBits, unsigned HostBits>
void huffman_differential(const std::uint8_t* data, std::size_t size) {
  c::huffman_stream_info info;
  if (!c::huffman_parse_header(data, size, info).ok() || info.count > (1u << 20)) return;
  constexpr std::uint8_t guard = 0xA5;
  std::vector<std::uint8_t> a(info.count + 16, guard), b(info.count + 16, guard);
  std::size_t na = 0, nb = 0;
  const bool ok_a =
      c::huffman_decode<SeqBits, c::huffman_decode_mode::sequential>(data, size, a.data(), info.count, &na).ok();
  const bool ok_b =
      c::huffman_decode<HostBits, c::huffman_decode_mode::interleaved>(data, size, b.data(), info.count, &nb).ok();
  if (ok_a != ok_b) __builtin_trap();
  for (std::size_t k = info.count; k < a.size(); ++k)
    if (a[k] != guard || b[k] != guard) __builtin_trap();
  if (ok_a && (na != info.count || nb != info.count || std::memcmp(a.data(), b.data(), info.count) != 0))
    __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  // libFuzzer's buffer is heap-allocated (16-byte aligned); copy anyway so that the
  // reader's alignment requirement never depends on the fuzzer's allocation.
  std::vector<std::uint64_t> aligned((size + 7) / 8 + 1);
  if (size) std::memcpy(aligned.data(), data, size);
  const auto* p = reinterpret_cast<const std::uint8_t*>(aligned.data());
  parse(p, size, true);
  parse(p, size, false);
  huffman_differential<8, 11>(p, size);
  huffman_differential<12, 4>(p, size);
  return 0;
}
