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
/// **Convolutional stem** (`genome::convs`): conv layer j reads an h×w×c_in
/// image (the input, or the previous layer's pooled output) and writes
/// h×w×c_out ("same" padding, stride 1), then `max_pool2d<2>` halves it. Its
///  - flash: int8 → c_out·K²·c_in weight bytes + 12·c_out (int32 bias, Q31
///    multiplier and shift per output channel: the int8 conv's
///    requantization arrays), fp32 → 4·(c_out·K²·c_in + c_out); conv layers
///    are never pruned;
///  - arena: conv j needs input + output + im2col scratch — int8 the two
///    receptive fields of `kernels::conv2d_s8_scratch_bytes` (2·K²·c_in
///    bytes), fp32 one receptive field of 4·K²·c_in bytes (the
///    `inference_scratch` of `nn::conv2d`) — and its pool input + output, each
///    tensor at the precision of the conv layer that computes it (the image
///    at the first conv's, the first dense layer's input at the last
///    conv's): for an all-int8 genome `quantized_network<…>::arena_bytes`,
///    for all-fp32 `Model::arena_bytes<fp32>`;
///  - MACs: h·w·c_out·K²·c_in, plus the pool's (h/2)·(w/2)·c_out·4
///    comparisons (counted as MACs, as `Model::macs` counts them);
///  - energy: as for dense layers, with its flash and activation bytes.
/// The stem always runs on the device (a cut counts hidden dense layers after it).
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

#include <algorithm>
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
  return l == 0 ? s.dense_inputs(g) : g.widths[l - 1];
}
inline std::size_t layer_out(const mlp_space& s, const genome& g, std::size_t l) noexcept {
  return l == g.depth() ? s.outputs : g.widths[l];
}
inline std::size_t element_bytes(layer_precision p) noexcept { return p == layer_precision::int8 ? 1 : 4; }
/// Precision of the tensor dense layer l reads: the previous dense layer's,
/// for l = 0 the last conv layer's (the stem's output) or, without a stem,
/// its own (the input image).
inline layer_precision dense_input_precision(const genome& g, std::size_t l) noexcept {
  if (l > 0) return g.precisions[l - 1];
  return g.convs.empty() ? g.precisions[0] : g.convs.back().precision;
}
/// Shape of conv layer j of `g`: input h × w × c_in, output h × w × c_out
/// (same padding, stride 1), kernel K, receptive field K²·c_in.
struct conv_shape {
  std::size_t h = 0, w = 0, c_in = 0, c_out = 0, k = 0;
  [[nodiscard]] std::size_t patch() const noexcept { return k * k * c_in; }
  [[nodiscard]] std::size_t weights() const noexcept { return c_out * patch(); }
  [[nodiscard]] std::size_t in_elems() const noexcept { return h * w * c_in; }
  [[nodiscard]] std::size_t out_elems() const noexcept { return h * w * c_out; }
  [[nodiscard]] std::size_t pooled_elems() const noexcept { return (h / 2) * (w / 2) * c_out; }
};
inline conv_shape conv_shape_of(const mlp_space& s, const genome& g, std::size_t j) noexcept {
  return {s.stem_height(j), s.stem_width(j), j == 0 ? s.image_channels : g.convs[j - 1].channels, g.convs[j].channels,
          g.convs[j].kernel};
}
/// Parameters (weights and biases) of the conv stem of `g`, in the library layout before the dense layers.
inline std::size_t stem_parameter_count(const mlp_space& s, const genome& g) noexcept {
  std::size_t n = 0;
  for (std::size_t j = 0; j < g.convs.size(); ++j) n += conv_shape_of(s, g, j).weights() + g.convs[j].channels;
  return n;
}
}  // namespace detail

/// Parameter bytes of conv layer j of `g` (see the file comment).
inline std::size_t conv_flash_bytes(const mlp_space& s, const genome& g, std::size_t j) noexcept {
  const detail::conv_shape c = detail::conv_shape_of(s, g, j);
  return g.convs[j].precision == layer_precision::int8 ? c.weights() + 12 * c.c_out : 4 * (c.weights() + c.c_out);
}
/// Parameter bytes of the conv stem of `g` (0 without one).
inline std::size_t stem_flash_bytes(const mlp_space& s, const genome& g) noexcept {
  std::size_t total = 0;
  for (std::size_t j = 0; j < g.convs.size(); ++j) total += conv_flash_bytes(s, g, j);
  return total;
}
/// MACs of conv layer j of `g` and its pool's comparisons.
inline std::size_t conv_macs(const mlp_space& s, const genome& g, std::size_t j) noexcept {
  const detail::conv_shape c = detail::conv_shape_of(s, g, j);
  return c.out_elems() * c.patch() + c.pooled_elems() * 4;
}

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
  std::size_t at = stem_parameter_count(s, g);
  for (std::size_t k = 0; k < l; ++k) at += layer_in(s, g, k) * layer_out(s, g, k) + layer_out(s, g, k);
  const std::size_t n = layer_in(s, g, l) * layer_out(s, g, l);
  TINYLARGE_REQUIRE(at + n <= parameters.size(), errc::shape_mismatch,
                    "nas: the parameters are fewer than the genome's layers need");
  return parameters.subspan(at, n);
}
}  // namespace detail

/// Parameter bytes of dense layers [from, to) of `g`, the conv stem not
/// included (see the file comment for the per-layer formula); with
/// `parameters` (the exported parameters of `g`, library layout) pruned
/// layers are counted from their actual CSR.
inline std::size_t flash_bytes(const mlp_space& s, const genome& g, std::size_t from, std::size_t to,
                               std::span<const float> parameters = {}) {
  std::size_t total = 0;
  for (std::size_t l = from; l < to && l <= g.depth(); ++l)
    total += layer_storage_of(s, g, l, detail::layer_weights(s, g, l, parameters)).bytes;
  return total;
}

/// Parameter bytes of the whole model `g` (its conv stem and every dense layer, whatever its cut).
inline std::size_t flash_bytes(const mlp_space& s, const genome& g, std::span<const float> parameters = {}) {
  return stem_flash_bytes(s, g) + flash_bytes(s, g, 0, g.depth() + 1, parameters);
}

/// Dense layers the device runs: `g.cut` when split, all d + 1 otherwise.
inline std::size_t device_layers(const genome& g) noexcept { return g.cut > 0 ? g.cut : g.depth() + 1; }

/// Bytes per sample crossing the cut of `g`: the output of hidden layer
/// `g.cut` at its precision; 0 without a cut.
inline std::size_t smashed_bytes(const genome& g) noexcept {
  return g.cut > 0 ? g.widths[g.cut - 1] * detail::element_bytes(g.precisions[g.cut - 1]) : 0;
}

/// Bytes of the batch-1 activation arena of the conv stem and dense layers
/// [0, layers) of `g` (default: all): max over them of input + output bytes
/// (+ a conv layer's im2col scratch), each tensor stored at the precision of
/// the layer that computes it (the input at the first layer's).
inline std::size_t arena_bytes(const mlp_space& s, const genome& g, std::size_t layers = static_cast<std::size_t>(-1)) {
  std::size_t best = 0;
  for (std::size_t j = 0; j < g.convs.size(); ++j) {
    const detail::conv_shape c = detail::conv_shape_of(s, g, j);
    const layer_precision p = g.convs[j].precision, in_p = j == 0 ? p : g.convs[j - 1].precision;
    const std::size_t scratch = p == layer_precision::int8 ? 2 * c.patch() : 4 * c.patch();
    const std::size_t conv = c.in_elems() * detail::element_bytes(in_p) + scratch + c.out_elems() * detail::element_bytes(p);
    const std::size_t pool = (c.out_elems() + c.pooled_elems()) * detail::element_bytes(p);
    best = std::max({best, conv, pool});
  }
  for (std::size_t l = 0; l <= g.depth() && l < layers; ++l) {
    const layer_precision in_p = detail::dense_input_precision(g, l);
    const std::size_t b = detail::layer_in(s, g, l) * detail::element_bytes(in_p) +
                          detail::layer_out(s, g, l) * detail::element_bytes(g.precisions[l]);
    best = b > best ? b : best;
  }
  return best;
}

/// Multiply-accumulates of one forward pass of one sample through the conv
/// stem (pool comparisons included) and dense layers [0, layers) (default:
/// all; a CSR layer: its stored entries).
inline std::size_t macs(const mlp_space& s, const genome& g, std::span<const float> parameters = {},
                        std::size_t layers = static_cast<std::size_t>(-1)) {
  std::size_t total = 0;
  for (std::size_t j = 0; j < g.convs.size(); ++j) total += conv_macs(s, g, j);
  for (std::size_t l = 0; l <= g.depth() && l < layers; ++l)
    total += layer_storage_of(s, g, l, detail::layer_weights(s, g, l, parameters)).entries;
  return total;
}

/// Energy estimate of one inference through the conv stem and dense layers
/// [0, layers) (default: all) in microjoules: MACs·pj_per_mac + (flash bytes
/// + Σ_layers (input bytes + output bytes))·pj_per_byte (a conv layer's
/// output and its pool's output counted once each).
inline double energy_uj(const mlp_space& s, const genome& g, const device_profile& d, std::span<const float> parameters = {},
                        std::size_t layers = static_cast<std::size_t>(-1)) {
  const std::size_t n = layers < g.depth() + 1 ? layers : g.depth() + 1;
  std::size_t moved = stem_flash_bytes(s, g) + flash_bytes(s, g, 0, n, parameters);
  for (std::size_t j = 0; j < g.convs.size(); ++j) {
    const detail::conv_shape c = detail::conv_shape_of(s, g, j);
    const layer_precision p = g.convs[j].precision, in_p = j == 0 ? p : g.convs[j - 1].precision;
    moved += c.in_elems() * detail::element_bytes(in_p) + (c.out_elems() + c.pooled_elems()) * detail::element_bytes(p);
  }
  for (std::size_t l = 0; l < n; ++l) {
    const layer_precision in_p = detail::dense_input_precision(g, l);
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
  o.flash_bytes = stem_flash_bytes(s, g) + flash_bytes(s, g, 0, dev, parameters);
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
