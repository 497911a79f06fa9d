/// @file nas/profile.hpp
/// @brief Device profiles (memory budgets and energy costs) and the analytic
///        costs of a genome on a device: flash, arena RAM, MACs, energy.
///
/// The cost model follows the library's own deployment of a dense MLP:
///  - **flash**: per dense layer of In inputs and Out outputs,
///    int8 → In·Out weight bytes + 4·Out (int32 bias) + 8·Out (one Q31
///    multiplier and one shift per output channel), exactly
///    `nn::quantized_network<…, int8_per_channel>::parameter_bytes`;
///    fp32 → 4·(In·Out + Out), exactly `Model::param_count · 4`;
///    a **pruned** layer (sparsity > 0 in the genome) is counted in the
///    relative-index CSR form the library stores pruned weights in
///    (`compress::relative_csr<T>::storage_bits`, gaps of `csr_gap_bits` =
///    8 bits, one byte each, as `compress::model_file_builder::add_int8_csr`
///    writes them): per stored entry one value (int8: 1 byte, fp32: 4) and
///    one gap byte, 4·(Out + 1) bytes of row offsets, plus the biases and
///    requantization arrays of the dense form (12·Out or 4·Out) — or in the
///    dense form when that is smaller (a 50 % pruned int8 layer: its CSR
///    needs 2 bytes per kept weight plus the row offsets). Stored entries =
///    the kept weights plus the fillers that bridge a run of more than 255
///    zeros; without the weights (`flash_bytes(space, genome)`) the count
///    assumes no fillers and exactly `compress::prune_count` pruned weights,
///    with the weights (`apply_costs(…, parameters)`, what the evaluator
///    uses) the CSR is built from them (`compress::detail::
///    build_relative_csr`) and its `storage_bits` counted, so fillers and
///    weights that int8 rounding made zero are included;
///  - **arena RAM**: the batch-1 ping-pong activation arena, the maximum over
///    dense layers of (input bytes + output bytes) where a tensor takes the
///    bytes of the layer that computes it (the input image those of the
///    first layer); relu runs in place. For an all-int8 genome this is
///    `Model::arena_bytes<int8_per_channel>`, for all-fp32
///    `Model::arena_bytes<fp32>` (the tests check both);
///  - **MACs**: Σ In·Out per sample, for a layer stored as CSR its stored
///    entries (the CSR kernels multiply each entry once);
///  - **energy** per inference: MACs · `pj_per_mac` + bytes moved ·
///    `pj_per_byte`, bytes moved = flash bytes (every parameter read once) +
///    activation bytes written and read once per layer. The per-MAC and
///    per-byte costs of the presets are stated assumptions (order of
///    magnitude for the device class), not measurements.
///
/// **Split deployment** (`genome::cut` = k > 0): the device runs the first k
/// hidden layers and a server the rest. `apply_costs` then fills flash, arena,
/// MACs and energy for the **device segment** only (the budgets of the
/// profile apply to it), `server_flash_bytes` with the rest, and
/// `smashed_bytes` with the bytes per sample that cross the cut: the output
/// of hidden layer k at its precision (w_k bytes int8, 4·w_k fp32). Without a
/// cut the device runs everything, `smashed_bytes` and `server_flash_bytes`
/// are 0.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include "../compress/pruning.hpp"
#include "../compress/sparse.hpp"
#include "../core/error.hpp"
#include "space.hpp"

namespace tinylarge::nas {

/// What a deployment target offers and what computing costs on it.
struct device_profile {
  std::string name;                ///< e.g. "cortex_m4"
  std::size_t flash_bytes = 0;     ///< budget for the model's parameters (0 = unlimited)
  std::size_t ram_bytes = 0;       ///< budget for the activation arena (0 = unlimited)
  double pj_per_mac = 0;           ///< energy of one multiply-accumulate, picojoules (assumed)
  double pj_per_byte = 0;          ///< energy of moving one byte from memory, picojoules (assumed)
};

/// Cortex-M4 class microcontroller: 256 KiB flash, 64 KiB RAM; 10 pJ per
/// MAC and 50 pJ per byte (assumed: ~12 µW/MHz core at one SMLAD-pair per
/// cycle, flash reads dominate memory energy).
inline device_profile cortex_m4() { return {"cortex_m4", 256 * 1024, 64 * 1024, 10.0, 50.0}; }
/// Phone class application processor: 64 MiB for a model, 16 MiB of
/// activations; 1 pJ per MAC, 100 pJ per DRAM byte (assumed).
inline device_profile phone() { return {"phone", 64u * 1024 * 1024, 16u * 1024 * 1024, 1.0, 100.0}; }
/// Edge server: no practical memory limit for this space; 0.5 pJ per MAC,
/// 150 pJ per DRAM byte (assumed).
inline device_profile edge_server() { return {"edge_server", 0, 0, 0.5, 150.0}; }

/// The measured and computed objectives of one candidate.
struct objectives {
  double accuracy = 0;          ///< target-task accuracy on the search's validation split, in [0, 1]
  std::size_t flash_bytes = 0;  ///< parameter bytes at their precisions (`flash_bytes`)
  std::size_t arena_bytes = 0;  ///< activation arena bytes (`arena_bytes`)
  std::size_t macs = 0;         ///< multiply-accumulates per sample
  double latency_us = 0;        ///< measured host latency per sample, batch 1 (0 = not measured)
  double energy_uj = 0;         ///< energy estimate per inference, microjoules
  std::size_t smashed_bytes = 0;       ///< bytes per sample sent from the device to the server at the cut (0 = no split)
  std::size_t server_flash_bytes = 0;  ///< parameter bytes of the server segment (0 = no split)
  /// Constraint violation: Σ over budgets of max(0, used/budget − 1); 0 = feasible.
  double violation = 0;
  /// Whether every budget of the profile is met.
  [[nodiscard]] bool feasible() const noexcept { return violation <= 0; }
};

namespace detail {
inline std::size_t layer_in(const mlp_space& s, const genome& g, std::size_t l) noexcept {
  return l == 0 ? s.inputs : g.widths[l - 1];
}
inline std::size_t layer_out(const mlp_space& s, const genome& g, std::size_t l) noexcept {
  return l == g.depth() ? s.outputs : g.widths[l];
}
inline std::size_t element_bytes(layer_precision p) noexcept { return p == layer_precision::int8 ? 1 : 4; }
}  // namespace detail

/// Gap width (bits) of the CSR form of a pruned layer: 8, one byte per gap, as
/// `compress::model_file_builder::add_int8_csr` stores pruned int8 weights.
inline constexpr unsigned csr_gap_bits = 8;

/// How one dense layer of a candidate is stored on the device.
struct layer_storage {
  bool csr = false;         ///< relative-index CSR (pruned and smaller than dense), else dense
  std::size_t entries = 0;  ///< stored weights: In·Out when dense, CSR entries (kept weights + fillers) otherwise
  std::size_t bytes = 0;    ///< parameter bytes of the layer: weights, biases, requantization arrays
};

/// Storage of dense layer l of `g` (see the file comment). With `weights`
/// (Out × In row-major, the layer's weights as exported, pruned) the CSR is
/// built from them; without, it is counted as Out·In − prune_count(Out·In, s)
/// entries and no fillers.
inline layer_storage layer_storage_of(const mlp_space& s, const genome& g, std::size_t l, std::span<const float> weights = {}) {
  const std::size_t in = detail::layer_in(s, g, l), out = detail::layer_out(s, g, l);
  const bool int8 = g.precisions[l] == layer_precision::int8;
  const std::size_t extra = int8 ? 12 * out : 4 * out;  // int32 bias + Q31 multiplier + shift, or fp32 bias
  const layer_storage dense{false, in * out, in * out * detail::element_bytes(g.precisions[l]) + extra};
  if (g.sparsity(l) == 0) return dense;
  layer_storage sparse{true, 0, 0};
  if (weights.empty()) {
    sparse.entries = in * out - compress::prune_count(in * out, g.sparsity(l) / 100.0);
    // = relative_csr<T>::storage_bits() / 8 of a CSR without fillers (tests/test_nas.cpp checks it)
    sparse.bytes = sparse.entries * (detail::element_bytes(g.precisions[l]) + csr_gap_bits / 8) + 4 * (out + 1) + extra;
  } else {
    TINYLARGE_REQUIRE(weights.size() == in * out, errc::shape_mismatch,
                      "nas::layer_storage_of: the weights must have Out·In entries");
    const compress::matrix_ref<const float> w{weights.data(), out, in};
    std::size_t bits = 0;
    if (int8) {  // only the positions of the non-zero weights matter for the count
      const auto m = compress::detail::build_relative_csr<std::int8_t>(w, csr_gap_bits, [](std::size_t) { return std::int8_t{1}; });
      sparse.entries = m.entries();
      bits = m.storage_bits();
    } else {
      const auto m = compress::to_relative_csr(w, csr_gap_bits);
      sparse.entries = m.entries();
      bits = m.storage_bits();
    }
    sparse.bytes = bits / 8 + extra;
  }
  return sparse.bytes < dense.bytes ? sparse : dense;
}

namespace detail {
/// The weights of dense layer l in `parameters` (library layout: per layer Out × In weights, then Out biases), or
/// an empty span when `parameters` is empty.
inline std::span<const float> layer_weights(const mlp_space& s, const genome& g, std::size_t l, std::span<const float> parameters) {
  if (parameters.empty()) return {};
  std::size_t at = 0;
  for (std::size_t k = 0; k < l; ++k) at += layer_in(s, g, k) * layer_out(s, g, k) + layer_out(s, g, k);
  const std::size_t n = layer_in(s, g, l) * layer_out(s, g, l);
  TINYLARGE_REQUIRE(at + n <= parameters.size(), errc::shape_mismatch,
                    "nas: the parameters are fewer than the genome's layers need");
  return parameters.subspan(at, n);
}
}  // namespace detail

/// Parameter bytes of dense layers [from, to) of `g` (see the file comment for
/// the per-layer formula); with `parameters` (the exported parameters of `g`,
/// library layout) pruned layers are counted from their actual CSR.
inline std::size_t flash_bytes(const mlp_space& s, const genome& g, std::size_t from, std::size_t to,
                               std::span<const float> parameters = {}) {
  std::size_t total = 0;
  for (std::size_t l = from; l < to && l <= g.depth(); ++l)
    total += layer_storage_of(s, g, l, detail::layer_weights(s, g, l, parameters)).bytes;
  return total;
}

/// Parameter bytes of the whole model `g` (every dense layer, whatever its cut).
inline std::size_t flash_bytes(const mlp_space& s, const genome& g, std::span<const float> parameters = {}) {
  return flash_bytes(s, g, 0, g.depth() + 1, parameters);
}

/// Dense layers the device runs: `g.cut` when split, all d + 1 otherwise.
inline std::size_t device_layers(const genome& g) noexcept { return g.cut > 0 ? g.cut : g.depth() + 1; }

/// Bytes per sample crossing the cut of `g`: the output of hidden layer
/// `g.cut` at its precision; 0 without a cut.
inline std::size_t smashed_bytes(const genome& g) noexcept {
  return g.cut > 0 ? g.widths[g.cut - 1] * detail::element_bytes(g.precisions[g.cut - 1]) : 0;
}

/// Bytes of the batch-1 activation arena of dense layers [0, layers) of `g`
/// (default: all): max over them of input + output bytes, each tensor stored
/// at the precision of the layer that computes it (the input at the first
/// layer's).
inline std::size_t arena_bytes(const mlp_space& s, const genome& g, std::size_t layers = static_cast<std::size_t>(-1)) {
  std::size_t best = 0;
  for (std::size_t l = 0; l <= g.depth() && l < layers; ++l) {
    const layer_precision in_p = l == 0 ? g.precisions[0] : g.precisions[l - 1];
    const std::size_t b = detail::layer_in(s, g, l) * detail::element_bytes(in_p) +
                          detail::layer_out(s, g, l) * detail::element_bytes(g.precisions[l]);
    best = b > best ? b : best;
  }
  return best;
}

/// Multiply-accumulates of one forward pass of one sample through dense
/// layers [0, layers) (default: all; a CSR layer: its stored entries).
inline std::size_t macs(const mlp_space& s, const genome& g, std::span<const float> parameters = {},
                        std::size_t layers = static_cast<std::size_t>(-1)) {
  std::size_t total = 0;
  for (std::size_t l = 0; l <= g.depth() && l < layers; ++l)
    total += layer_storage_of(s, g, l, detail::layer_weights(s, g, l, parameters)).entries;
  return total;
}

/// Energy estimate of one inference through dense layers [0, layers)
/// (default: all) in microjoules: MACs·pj_per_mac + (flash bytes +
/// Σ_layers (input bytes + output bytes))·pj_per_byte.
inline double energy_uj(const mlp_space& s, const genome& g, const device_profile& d, std::span<const float> parameters = {},
                        std::size_t layers = static_cast<std::size_t>(-1)) {
  const std::size_t n = layers < g.depth() + 1 ? layers : g.depth() + 1;
  std::size_t moved = flash_bytes(s, g, 0, n, parameters);
  for (std::size_t l = 0; l < n; ++l) {
    const layer_precision in_p = l == 0 ? g.precisions[0] : g.precisions[l - 1];
    moved += detail::layer_in(s, g, l) * detail::element_bytes(in_p) +
             detail::layer_out(s, g, l) * detail::element_bytes(g.precisions[l]);
  }
  return (static_cast<double>(macs(s, g, parameters, n)) * d.pj_per_mac + static_cast<double>(moved) * d.pj_per_byte) * 1e-6;
}

/// Fills the analytic fields of `o` (flash, arena, MACs, energy, violation;
/// smashed and server bytes) for `g` on `d` — the device segment's when `g`
/// is split (see the file comment); accuracy and latency are left as they
/// are. With `parameters` (the exported parameters of `g`, library layout)
/// pruned layers are counted from their actual CSR.
inline void apply_costs(const mlp_space& s, const genome& g, const device_profile& d, objectives& o,
                        std::span<const float> parameters = {}) {
  TINYLARGE_REQUIRE(g.cut <= g.depth(), errc::invalid_argument, "nas::apply_costs: the cut is beyond the genome's depth");
  const std::size_t dev = device_layers(g);
  o.flash_bytes = flash_bytes(s, g, 0, dev, parameters);
  o.server_flash_bytes = flash_bytes(s, g, dev, g.depth() + 1, parameters);
  o.smashed_bytes = smashed_bytes(g);
  o.arena_bytes = arena_bytes(s, g, dev);
  o.macs = macs(s, g, parameters, dev);
  o.energy_uj = energy_uj(s, g, d, parameters, dev);
  o.violation = 0;
  if (d.flash_bytes > 0 && o.flash_bytes > d.flash_bytes)
    o.violation += static_cast<double>(o.flash_bytes) / static_cast<double>(d.flash_bytes) - 1.0;
  if (d.ram_bytes > 0 && o.arena_bytes > d.ram_bytes)
    o.violation += static_cast<double>(o.arena_bytes) / static_cast<double>(d.ram_bytes) - 1.0;
}

}  // namespace tinylarge::nas
