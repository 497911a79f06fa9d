// Cortex-M check of the compressed model file (compress/model_file.hpp): the model is a
// C header written on the host by compress/c_export.hpp (model_file_selftest_data.h, kept up
// to date by tests/test_model_file.cpp), linked into flash, parsed in place by the
// freestanding reader with no heap, and run:
//   layer 0  CSR + codebook values, gaps and indices Huffman-coded: decoded at boot into RAM
//   layer 1  bit-packed 4-bit codebook, run straight from flash
//   layer 2  int8 per channel, run straight from flash
// against outputs the host computed and baked into the header (fp32 within 1e-5 relative:
// the Cortex-M4F may fuse multiply-adds; int8 exactly). Then corrupt copies in RAM must be
// rejected with the right error.
#include "tinylarge/freestanding.hpp"
#include "tinylarge/compress/model_file.hpp"
#include "startup.hpp"

#include "model_file_selftest_data.h"

namespace c = tinylarge::compress;
using tinylarge::errc;

namespace {
std::uint8_t decode_buffer[1024];
float y[16];
std::int8_t yq[16];
alignas(8) std::uint8_t ram_copy[sizeof model];

int fail(int code, const char* what) {
  tl_mcu::puts("model_file selftest: FAILED: ");
  tl_mcu::puts(what);
  tl_mcu::puts("\n");
  return code;
}
bool in_flash(const void* p) { return reinterpret_cast<std::uintptr_t>(p) < 0x20000000u; }

/// Largest |y − expected| / max(1, |expected|), in units of 1e-9.
long max_error_e9(const float* got, const float* want, std::size_t n) {
  float worst = 0.0f;
  for (std::size_t i = 0; i < n; ++i) {
    const float d = got[i] > want[i] ? got[i] - want[i] : want[i] - got[i];
    const float a = want[i] < 0 ? -want[i] : want[i];
    const float e = d / (a > 1.0f ? a : 1.0f);
    if (!(e <= worst)) worst = e;  // NaN counts as worst
  }
  return worst < 1.0f ? static_cast<long>(worst * 1e9f) : 1000000000L;
}

tinylarge::status open_copy(c::model_file_reader& r) { return r.open(ram_copy, sizeof ram_copy); }
}  // namespace

int main() {
  c::model_file_reader r;
  if (!r.open(model, model_size).ok()) return fail(1, "the exported model does not parse");
  if (r.layer_count() != 3) return fail(2, "layer count");
  if (!in_flash(model)) return fail(3, "the model is not in flash");

  // Layer 0: decode at boot.
  c::layer_view v;
  if (!r.layer(0, v).ok() || v.in_place() || v.decode_bytes > sizeof decode_buffer) return fail(4, "layer 0 view");
  tl_mcu::puts("layer 0: CSR codebook, Huffman-coded, ");
  tl_mcu::put_int(static_cast<long>(v.decode_bytes));
  tl_mcu::puts(" bytes decoded at boot\n");
  if (!r.decode_layer(0, decode_buffer, sizeof decode_buffer, v).ok()) return fail(5, "layer 0 decode");
  if (!in_flash(v.csr_codebook.row_ptr) || !in_flash(v.csr_codebook.values.centroids) || in_flash(v.csr_codebook.gaps))
    return fail(6, "layer 0 views: row offsets and centroids in flash, decoded gaps in RAM");
  c::sparse_dense_f32(tinylarge::arch::best{}, 1, v.csr_codebook, input, v.bias, y);
  long e = max_error_e9(y, expected_csr, 16);
  tl_mcu::puts("layer 0: max relative error vs host (1e-9 units): ");
  tl_mcu::put_int(e);
  tl_mcu::puts("\n");
  if (e > 10000) return fail(7, "layer 0 output differs from the host");

  // Layer 1: bit-packed codebook, in place in flash.
  if (!r.layer(1, v).ok() || !v.in_place() || !in_flash(v.codebook.packed)) return fail(8, "layer 1 view");
  c::codebook_dense_f32(tinylarge::arch::scalar{}, 1, v.codebook, input, v.bias, y);
  e = max_error_e9(y, expected_codebook, 16);
  tl_mcu::puts("layer 1: codebook from flash, max relative error (1e-9 units): ");
  tl_mcu::put_int(e);
  tl_mcu::puts("\n");
  if (e > 10000) return fail(9, "layer 1 output differs from the host");

  // Layer 2: int8 per channel, in place, bit-exact.
  if (!r.layer(2, v).ok() || !v.in_place() || !in_flash(v.int8.weights)) return fail(10, "layer 2 view");
  tinylarge::kernels::dense_s8(tinylarge::arch::best{}, 1, v.rows, v.cols, input_q, v.int8.weights, v.s8_params(), yq);
  for (std::size_t o = 0; o < 16; ++o)
    if (yq[o] != expected_int8[o]) return fail(11, "layer 2 int8 output differs from the host");
  tl_mcu::puts("layer 2: int8 from flash, bit-exact with the host\n");

  // Corrupt copies in RAM are rejected.
  for (std::size_t i = 0; i < sizeof model; ++i) ram_copy[i] = model[i];
  if (!open_copy(r).ok()) return fail(12, "the RAM copy does not parse");
  ram_copy[200] ^= 0x10;
  if (open_copy(r).code != errc::checksum_mismatch) return fail(13, "a bit flip was not caught by the CRC");
  ram_copy[200] ^= 0x10;
  if (r.open(ram_copy, sizeof ram_copy - 8).code != errc::truncated) return fail(14, "truncation not detected");
  ram_copy[4] = 2;  // major version 2
  if (open_copy(r).code != errc::unsupported_version) return fail(15, "a newer major version was accepted");
  tl_mcu::puts("model_file selftest: corrupt, truncated and newer-version copies rejected\n");
  tl_mcu::puts("model_file selftest: OK\n");
  return 0;
}
