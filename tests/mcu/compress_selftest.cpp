// Cortex-M check of the freestanding compression core (engineer F): Huffman encode/decode
// with corrupt-stream rejection, relative-CSR and codebook kernels vs the scalar dense kernel.
#include "tinylarge/freestanding.hpp"
#include "startup.hpp"

namespace c = tinylarge::compress;
namespace {
constexpr std::size_t N = 3000;
std::uint8_t sym[N], dec[N], enc[c::huffman_max_encoded_size(N, 20)];
constexpr std::size_t R = 8, C = 40;
float w[R * C], x[C], y_ref[R], y[R];
std::uint32_t row_ptr[R + 1];
std::uint8_t gaps[R * C], idx[R * C], packed[R * C];
float vals[R * C];
const float centroids[4] = {0.0f, -0.5f, 0.25f, 1.0f};
int fail(int code, const char* what) { tl_mcu::puts(what); tl_mcu::puts("\n"); return code; }
}  // namespace

int main() {
  tinylarge::rng g(5);
  for (auto& s : sym) {
    unsigned v = 0;
    while (v < 19 && g.uniform_int(2) != 0) ++v;
    s = static_cast<std::uint8_t>(v);
  }
  std::size_t written = 0, n = 0;
  if (!c::huffman_encode(sym, N, 20, enc, sizeof enc, &written).ok()) return fail(1, "encode failed");
  if (!c::huffman_decode<8>(enc, written, dec, N, &n).ok() || n != N) return fail(2, "decode failed");
  for (std::size_t i = 0; i < N; ++i)
    if (dec[i] != sym[i]) return fail(3, "round trip mismatch");
  if (c::huffman_decode<8>(enc, written - 1, dec, N, &n).ok()) return fail(4, "truncated stream accepted");
  enc[3] ^= 0xFF;  // code lengths
  (void)c::huffman_decode<8>(enc, written, dec, N, &n);  // must not crash (result may be an error)

  // Sparse matrix with ~25 % non-zeros from the codebook; gaps with 2-bit fillers.
  std::size_t e = 0;
  row_ptr[0] = 0;
  for (std::size_t o = 0; o < R; ++o) {
    std::size_t next = 0;
    for (std::size_t k = 0; k < C; ++k) {
      const std::uint8_t l = g.uniform_int(4) == 0 ? static_cast<std::uint8_t>(1 + g.uniform_int(3)) : 0;
      idx[o * C + k] = l;
      w[o * C + k] = centroids[l];
      if (l == 0) continue;
      std::size_t gap = k - next;
      while (gap > 3) { gaps[e] = 3; vals[e] = 0.0f; ++e; gap -= 4; }
      gaps[e] = static_cast<std::uint8_t>(gap);
      vals[e] = centroids[l];
      ++e;
      next = k + 1;
    }
    row_ptr[o + 1] = static_cast<std::uint32_t>(e);
  }
  for (auto& v : x) v = g.normal();
  tinylarge::kernels::dense_f32(tinylarge::arch::scalar{}, 1, R, C, x, w, nullptr, y_ref);
  const c::relative_csr_view<c::csr_f32_values> sv{R, C, 2, row_ptr, gaps, c::csr_f32_values{vals}};
  if (!c::validate(sv).ok()) return fail(5, "csr validate failed");
  c::sparse_dense_f32(tinylarge::arch::best{}, 1, sv, x, nullptr, y);
  for (std::size_t o = 0; o < R; ++o)
    if (y[o] != y_ref[o]) return fail(6, "sparse kernel differs from dense");
  if (!c::pack_bits(idx, R * C, 2, packed, sizeof packed).ok()) return fail(7, "pack failed");
  const c::codebook_matrix_view cv{R, C, 2, packed, c::packed_size(R * C, 2), centroids, 4};
  if (!c::validate(cv).ok()) return fail(8, "codebook validate failed");
  c::codebook_dense_f32(tinylarge::arch::best{}, 1, cv, x, nullptr, y);
  for (std::size_t o = 0; o < R; ++o)
    if (y[o] != y_ref[o]) return fail(9, "codebook kernel differs from dense");
  tl_mcu::puts("compress selftest: huffman, sparse and codebook kernels OK (");
  tl_mcu::put_int(static_cast<long>(written));
  tl_mcu::puts(" bytes for 3000 symbols)\n");
  return 0;
}
