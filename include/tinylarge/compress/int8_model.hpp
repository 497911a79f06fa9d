/// @file compress/int8_model.hpp
/// @brief A model file as the parameters of a compiled int8 `sequential`:
///        `bind_model_file` (device and host) runs any int8 model file whose
///        shape matches the compiled model type, from flash, after checking
///        it; `add_int8_layers` (host) writes a `quantized_network` as one,
///        `prune_int8_weights` + `add_int8_csr_layers` as a pruned one whose
///        CSR records a `sparse_flash_storage` network runs compressed, and
///        `share_int8_weights` + `add_int8_codebook_layers` as a weight-shared
///        one whose codebook records it runs compressed too.
///
/// @code
///   using model = tl::nn::sequential<tl::nn::input<28, 28, 1>, tl::nn::conv2d<6, 5, 1, 2>, tl::nn::relu, …>;
///   static tl::nn::quantized_network<model, tl::int8_per_channel, tl::nn::flash_storage> net;  // arena only
///   tl::compress::model_file_reader file;
///   if (!file.open(model_bytes, model_size)) fail();        // CRC-32s, structure, value ranges
///   if (!tl::compress::bind_model_file(file, net)) fail();  // shapes, geometry, activations, zero points
///   const std::int8_t* logits = net.forward(input);          // weights read in place, in flash
/// @endcode
///
/// One record per weighted layer (dense, conv2d, depthwise conv2d = conv2d
/// with groups = channels), in order, each in the int8 weight format of the
/// [model file](../../../docs/model-file-format.md); a `residual<...>` block
/// is its weighted inner layers followed by an `add` record (layer kind 3,
/// file version 1.4: scales, zero points and multipliers of y = x + F(x)),
/// the order of the model's int8 graph. What the compiled type adds
/// (pooling, flatten, fused relu, dropout) is not stored: the binder checks
/// that the file's records agree with it — record count, kind, rows, cols,
/// conv geometry, fused activation, that each layer's input scale and zero
/// point equal the previous record's output ones, and that an add's two
/// inputs are the block's input and its last inner layer's output — and
/// returns `errc::shape_mismatch` (or the reader's code) otherwise, before
/// any view is handed to the network. Freestanding: no heap, no exceptions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "../core/error.hpp"
#include "../nn/quantized_network.hpp"
#include "../nn/sequential.hpp"
#include "model_file.hpp"

#if !TINYLARGE_FREESTANDING
#include <span>
#include <vector>

#include <algorithm>
#include <cmath>

#include "pruning.hpp"
#include "weight_sharing.hpp"
#endif

namespace tinylarge::compress {

namespace detail {
/// The activation a model file records for node I of the int8 graph `Model`
/// (`nn::detail::int8_graph`): the relu / relu6 fused into its clamp.
template <class Model, std::size_t I>
constexpr activation_kind fused_activation_of() noexcept {
  if constexpr (I + 1 < Model::size) {
    if constexpr (Model::template fused_into_previous<I + 1>)
      return Model::template layer<I + 1>::kind == nn::layer_kind::relu ? activation_kind::relu
                                                                        : activation_kind::relu6;
  }
  return activation_kind::none;
}

/// Rows, cols and conv geometry that layer L of the compiled model expects.
template <class L>
constexpr conv2d_geometry expected_geometry() noexcept {
  conv2d_geometry g{};
  if constexpr (L::kind == nn::layer_kind::conv2d || L::kind == nn::layer_kind::depthwise_conv2d) {
    g.in_channels = static_cast<std::uint16_t>(L::in_shape::c);
    g.kernel_h = g.kernel_w = static_cast<std::uint16_t>(L::kernel);
    g.stride_h = g.stride_w = static_cast<std::uint16_t>(L::stride);
    g.pad_h = g.pad_w = static_cast<std::uint16_t>(L::pad);
    g.groups = static_cast<std::uint16_t>(L::kind == nn::layer_kind::conv2d ? 1 : L::in_shape::c);
  }
  return g;
}

inline bool same_geometry(const conv2d_geometry& a, const conv2d_geometry& b) noexcept {
  return a.in_channels == b.in_channels && a.kernel_h == b.kernel_h && a.kernel_w == b.kernel_w &&
         a.stride_h == b.stride_h && a.stride_w == b.stride_w && a.pad_h == b.pad_h && a.pad_w == b.pad_w &&
         a.groups == b.groups;
}

inline bool same_params(quant_params a, quant_params b) noexcept {
  return a.zero_point == b.zero_point && std::memcmp(&a.scale, &b.scale, sizeof(float)) == 0;
}
}  // namespace detail

/// Number of weighted layers (dense, conv2d, depthwise) of a model, those inside
/// `residual<...>` blocks included: the nodes of its int8 graph with parameters.
template <class Model>
inline constexpr std::size_t weighted_layer_count = [] {
  using G = nn::detail::int8_graph<Model>;
  std::size_t n = 0;
  G::for_each_layer([&]<std::size_t I>() { n += nn::has_weights(G::template layer<I>::kind) ? 1 : 0; });
  return n;
}();

/// Number of records of a model's int8 model file: one per weighted layer and one per
/// residual add, in the order of its int8 graph.
template <class Model>
inline constexpr std::size_t model_file_record_count =
    weighted_layer_count<Model> + nn::detail::int8_graph<Model>::residual_count;

/// Binds the records of an opened, validated model file to `net`: afterwards
/// `net.forward()` reads weights, biases and multipliers in place (in flash).
/// With `nn::flash_storage` every record must be int8 (format 3); with
/// `nn::sparse_flash_storage` a record may also be pruned int8 CSR (format 8,
/// `int8_csr`), which then runs on its non-zero weights (kernels/sparse_s8.hpp;
/// the reader has checked its row offsets, entry counts and columns); with
/// `nn::shared_flash_storage` weight-shared int8 (format 9, `int8_codebook`),
/// which then runs on its
/// bit-packed indices and int8 codebook (kernels/codebook_s8.hpp; the reader
/// has checked the stream, the width and every index); with
/// `nn::huffman_shared_flash_storage` Huffman-coded weight-shared int8 (format 10,
/// `int8_huffman_codebook`), which then runs one output channel's decoded weights at a time
/// (kernels/huffman_s8.hpp; every row is decoded once here by
/// `model_file_reader::verify_huffman_rows`, `errc::corrupt` if one does not decode exactly).
/// A model with `residual<...>` blocks takes an `add` record after each block's
/// inner layers; its constants become the network's `residual_add(r)` (the clamp
/// from the compiled type's fused relu / relu6).
/// Returns `errc::shape_mismatch` when the file describes another model
/// (record count, kind, rows, cols, geometry, fused activation, an add's
/// element count, or quantization parameters that do not chain — an add's
/// first input is the block's input, its second the last inner layer's output), `errc::invalid_argument` when
/// `file` is not open or a record is in a format the storage cannot run;
/// `net` is then left unusable (its views are cleared).
template <class Model, class P, class S, class B>
  requires(nn::quantized_network<Model, P, S, B>::binds_parameters)
[[nodiscard]] status bind_model_file(const model_file_reader& file, nn::quantized_network<Model, P, S, B>& net) noexcept {
  using net_type = nn::quantized_network<Model, P, S, B>;
  using G = typename net_type::graph;
  constexpr bool pruned = net_type::binds_pruned, shared = net_type::binds_shared, huffman = net_type::binds_huffman;
  G::for_each_layer([&]<std::size_t I>() {
    using L = typename G::template layer<I>;
    static_assert(L::kind != nn::layer_kind::sigmoid && L::kind != nn::layer_kind::tanh &&
                      L::kind != nn::layer_kind::softmax,
                  "tinylarge: bind_model_file: sigmoid / tanh / softmax layers need int8 tables that model file "
                  "format 1.0 does not store; end the model in logits");
  });
  TINYLARGE_CHECK(file.is_open(), errc::invalid_argument, "bind_model_file: the model file is not open");
  TINYLARGE_CHECK(file.layer_count() == model_file_record_count<Model>, errc::shape_mismatch,
                  "bind_model_file: the file's layer count differs from the compiled model's weighted layers and "
                  "residual adds");
  auto& tq = net.tensor_quantization();
  status result = status::success();
  std::size_t record = 0;
  G::for_each_layer([&]<std::size_t I>() {
    using L = typename G::template layer<I>;
    if (!result.ok()) return;
    if constexpr (L::kind == nn::layer_kind::residual) {
      result = [&]() -> status {
        layer_view v;
        TINYLARGE_TRY(file.layer(record, v));
        TINYLARGE_CHECK(v.kind == layer_kind::add, errc::shape_mismatch,
                        "bind_model_file: a record's layer kind differs from the compiled model's (a residual add)");
        TINYLARGE_CHECK(v.add.size == L::in_shape::size, errc::shape_mismatch,
                        "bind_model_file: an add record's element count differs from the residual block's");
        TINYLARGE_CHECK(v.activation == (detail::fused_activation_of<G, I>()), errc::shape_mismatch,
                        "bind_model_file: an add record's activation differs from the compiled model's fused relu");
        const quant_params x1 = v.add.tensor(0), x2 = v.add.tensor(1), y = v.add.tensor(2);
        if (record == 0)  // only layers without parameters before: all on the input's grid
          for (std::size_t t = 0; t <= I; ++t) tq[t] = x1;
        TINYLARGE_CHECK(detail::same_params(tq[I - L::inner_layers], x1), errc::shape_mismatch,
                        "bind_model_file: an add record's first input scale or zero point differs from the residual "
                        "block's input");
        TINYLARGE_CHECK(detail::same_params(tq[I], x2), errc::shape_mismatch,
                        "bind_model_file: an add record's second input scale or zero point differs from the block's "
                        "last inner layer's output");
        tq[I + 1] = y;
        kernels::add_s8_params p = v.add.params();
        const quant_range clamp = nn::detail::output_clamp<G, I>(y, P::activation_range);
        p.act_min = clamp.min;
        p.act_max = clamp.max;
        net.residual_add(G::template add_index<I>) = p;
        ++record;
        return status::success();
      }();
    } else if constexpr (!nn::has_weights(L::kind)) {
      tq[I + 1] = tq[I];  // pooling, flatten, dropout, relu: the input's grid
    } else {
      result = [&]() -> status {
        layer_view v;
        TINYLARGE_TRY(file.layer(record, v));
        TINYLARGE_CHECK(v.kind != layer_kind::add, errc::shape_mismatch,
                        "bind_model_file: a record is a residual add where the compiled model has a weighted layer");
        TINYLARGE_CHECK(pruned || v.format != weight_format::int8_csr, errc::invalid_argument,
                        "bind_model_file: a record is pruned int8 CSR (int8_csr): bind the file to a "
                        "quantized_network with nn::sparse_flash_storage (or pruned_or_shared_flash_storage)");
        TINYLARGE_CHECK(shared || v.format != weight_format::int8_codebook, errc::invalid_argument,
                        "bind_model_file: a record is weight-shared int8 (int8_codebook): bind the file to a "
                        "quantized_network with nn::shared_flash_storage (or pruned_or_shared_flash_storage)");
        TINYLARGE_CHECK(huffman || v.format != weight_format::int8_huffman_codebook, errc::invalid_argument,
                        "bind_model_file: a record is Huffman-coded weight-shared int8 (int8_huffman_codebook): bind "
                        "the file to a quantized_network with nn::huffman_shared_flash_storage");
        TINYLARGE_CHECK((v.format == weight_format::int8 || v.format == weight_format::int8_csr ||
                         v.format == weight_format::int8_codebook || v.format == weight_format::int8_huffman_codebook) &&
                            v.in_place(),
                        errc::invalid_argument, "bind_model_file: a record is not in the int8 weight format");
        constexpr bool is_dense = L::kind == nn::layer_kind::dense;
        constexpr std::size_t cols = is_dense ? L::in_shape::size : L::fan_in;
        constexpr layer_kind expected_kind = is_dense ? layer_kind::dense : layer_kind::conv2d;
        TINYLARGE_CHECK(v.kind == expected_kind, errc::shape_mismatch,
                        "bind_model_file: a record's layer kind differs from the compiled model's");
        TINYLARGE_CHECK(v.rows == L::out_channels && v.cols == cols, errc::shape_mismatch,
                        "bind_model_file: a record's rows or cols differ from the compiled model's");
        TINYLARGE_CHECK(detail::same_geometry(v.conv, detail::expected_geometry<L>()), errc::shape_mismatch,
                        "bind_model_file: a record's convolution geometry differs from the compiled model's");
        constexpr activation_kind expected_act = detail::fused_activation_of<G, I>();
        TINYLARGE_CHECK(v.activation == expected_act, errc::shape_mismatch,
                        "bind_model_file: a record's activation differs from the compiled model's fused relu");
        TINYLARGE_CHECK(v.int8.scale_count == 1 || v.int8.scale_count == v.rows, errc::shape_mismatch,
                        "bind_model_file: a record has neither one nor one-per-channel multipliers");
        const quant_params in{v.int8.input_scale, v.int8.input_zero_point};
        const quant_params out{v.int8.output_scale, v.int8.output_zero_point};
        if (record == 0)  // only layers without parameters before: all on the input's grid
          for (std::size_t t = 0; t <= I; ++t) tq[t] = in;
        else
          TINYLARGE_CHECK(detail::same_params(tq[I], in), errc::shape_mismatch,
                          "bind_model_file: a record's input scale or zero point differs from the previous "
                          "layer's output");
        tq[I + 1] = out;
        nn::int8_layer_binding b;
        b.weights = v.int8.weights;
        b.bias = v.bias_s32;
        b.multipliers = v.int8.multipliers;
        b.shifts = v.int8.shifts;
        b.per_channel = v.int8.scale_count > 1;
        if constexpr (pruned) {
          if (v.format == weight_format::int8_csr) {
            nn::int8_csr_binding csr;
            csr.row_ptr = v.csr_s8.row_ptr;
            csr.gaps = v.csr_s8.gaps;
            csr.values = v.csr_s8.values.values;
            net.template bind_layer<I>(b, csr);
            ++record;
            return status::success();
          }
        }
        if constexpr (huffman) {
          if (v.format == weight_format::int8_huffman_codebook) {
            TINYLARGE_TRY(file.verify_huffman_rows(record));  // every row decodes exactly
            nn::int8_huffman_binding hb;
            hb.stream = v.huffman_s8.stream;
            hb.stream_bytes = v.huffman_s8.stream_bytes;
            hb.row_bits = v.huffman_s8.row_bits;
            hb.codebook = v.huffman_s8.codebook;
            net.template bind_layer<I>(b, hb);
            ++record;
            return status::success();
          }
        }
        if constexpr (shared) {
          if (v.format == weight_format::int8_codebook) {
            nn::int8_codebook_binding cb;
            cb.packed = v.codebook_s8.packed;
            cb.codebook = v.codebook_s8.codebook;
            cb.bits = v.codebook_s8.bits;
            net.template bind_layer<I>(b, cb);
            ++record;
            return status::success();
          }
        }
        net.template bind_layer<I>(b);
        ++record;
        return status::success();
      }();
    }
  });
  if (!result.ok()) {
    G::for_each_layer([&]<std::size_t I>() {
      if constexpr (nn::has_weights(G::template layer<I>::kind)) net.template bind_layer<I>({});
    });
    for (std::size_t r = 0; r < net_type::residual_count; ++r) net.residual_add(r) = {};
  }
  (void)sizeof(net_type);
  return result;
}

#if !TINYLARGE_FREESTANDING
/// Which weighted layers `add_int8_csr_layers` writes as int8 CSR records (and
/// `add_int8_codebook_layers` as int8 codebook records).
enum class int8_csr_layers {
  every_layer,   ///< all of them
  when_smaller,  ///< those whose CSR arrays (2 bytes per entry + 4·(rows + 1)) — codebook: k + ⌈rows·cols·bits/8⌉
                 ///< bytes — are smaller than rows·cols bytes; the others as dense int8 records (the same
                 ///< weights, the dense kernels)
};

namespace detail {
/// The weight format `add_int8_records` writes compressed layers in.
enum class int8_record_form { dense, csr, codebook, huffman_codebook };

template <class Model, class P, class S, class B>
void add_int8_records(model_file_builder& builder, nn::quantized_network<Model, P, S, B>& q, int8_record_form form,
                      unsigned gap_bits, int8_csr_layers which = int8_csr_layers::every_layer) {
  static_assert(!nn::quantized_network<Model, P, S, B>::binds_parameters,
                "tinylarge: add_int8_layers needs a network that owns its parameters");
  using G = typename nn::quantized_network<Model, P, S, B>::graph;
  constexpr auto& lay = nn::quantized_network<Model, P, S, B>::layout;
  const auto& tq = q.tensor_quantization();
  G::for_each_layer([&]<std::size_t I>() {
    using L = typename G::template layer<I>;
    if constexpr (L::kind == nn::layer_kind::residual) {
      // y = x + F(x): x the block's input, F(x) its last inner layer's output
      builder.add_int8_add(L::in_shape::size, tq[I - L::inner_layers], tq[I], tq[I + 1],
                           detail::fused_activation_of<G, I>());
    } else if constexpr (nn::has_weights(L::kind)) {
      constexpr bool is_dense = L::kind == nn::layer_kind::dense;
      constexpr std::size_t rows = L::out_channels, cols = is_dense ? L::in_shape::size : L::fan_in;
      layer_options o;
      o.activation = detail::fused_activation_of<G, I>();
      if constexpr (!is_dense) {
        o.kind = layer_kind::conv2d;
        o.conv = detail::expected_geometry<L>();
      }
      const float* scales = q.weight_scales() + lay.bias[I];
      const std::size_t ns = P::weight_scale_count(rows);
      const std::span<const std::int8_t> w(q.weights() + lay.weight[I], rows * cols);
      const std::span<const std::int32_t> bias(q.biases() + lay.bias[I], rows);
      std::size_t nonzeros = 0;
      for (const std::int8_t v : w) nonzeros += v != 0;
      const bool csr_smaller = 2 * nonzeros + 4 * (rows + 1) < rows * cols;
      if (form == int8_record_form::codebook || form == int8_record_form::huffman_codebook) {
        // The codebook: the layer's distinct values, ascending (at most 255: [-127, 127]).
        std::vector<std::int8_t> codebook(w.begin(), w.end());
        std::sort(codebook.begin(), codebook.end());
        codebook.erase(std::unique(codebook.begin(), codebook.end()), codebook.end());
        const std::size_t k = codebook.size();
        std::vector<std::uint8_t> idx(w.size());
        for (std::size_t i = 0; i < w.size(); ++i)
          idx[i] = static_cast<std::uint8_t>(std::lower_bound(codebook.begin(), codebook.end(), w[i]) -
                                             codebook.begin());
        const bool huffman = form == int8_record_form::huffman_codebook;
        // Huffman: the stream and the rows + 1 u32 bit offsets.
        const std::size_t index_bytes = huffman ? huffman_encode(idx, k).size() + 4 * (rows + 1)
                                                : packed_size(rows * cols, model_file_builder::int8_codebook_bits(k));
        const bool smaller = k + index_bytes < rows * cols;
        if (which == int8_csr_layers::every_layer || smaller) {
          if (huffman) o.indices = symbol_encoding::huffman;
          builder.add_int8_codebook(rows, cols, codebook, idx, std::span<const float>(scales, ns), tq[I], tq[I + 1],
                                    bias, o);
          return;
        }
      }
      if (form == int8_record_form::csr && (which == int8_csr_layers::every_layer || csr_smaller))
        builder.add_int8_csr(rows, cols, w, std::span<const float>(scales, ns), tq[I], tq[I + 1], bias, o, gap_bits);
      else
        builder.add_int8(rows, cols, w, std::span<const float>(scales, ns), tq[I], tq[I + 1], bias, o);
    }
  });
}
}  // namespace detail

/// Appends every weighted layer of an owning `quantized_network` to `b` as an
/// int8 record (conv2d / depthwise with their geometry, the fused relu as the
/// activation), and every residual add as an `add` record (file version 1.4), in
/// the order of the int8 graph: the file that `bind_model_file` binds to the same
/// model type.
/// The requantization multipliers are recomputed by the builder from the same
/// scales with the same formula, so the bound network computes the same bits.
template <class Model, class P, class S, class B>
void add_int8_layers(model_file_builder& builder, nn::quantized_network<Model, P, S, B>& q) {
  detail::add_int8_records(builder, q, detail::int8_record_form::dense, 8);
}

/// As `add_int8_layers`, every weighted layer as a pruned int8 CSR record (format 8,
/// `int8_csr`: its non-zero weights, gaps of `gap_bits` bits): the file that
/// `bind_model_file` binds to a `quantized_network<Model, P, nn::sparse_flash_storage>`,
/// which then computes the bits of `q` (prune `q` first: `prune_int8_weights`). With
/// `int8_csr_layers::when_smaller` a layer whose CSR form would not be smaller stays a dense
/// int8 record with its zeros (a file with any CSR record binds to `sparse_flash_storage` or
/// `pruned_or_shared_flash_storage` only).
template <class Model, class P, class S, class B>
void add_int8_csr_layers(model_file_builder& builder, nn::quantized_network<Model, P, S, B>& q,
                         unsigned gap_bits = 8, int8_csr_layers which = int8_csr_layers::every_layer) {
  detail::add_int8_records(builder, q, detail::int8_record_form::csr, gap_bits, which);
}

/// As `add_int8_layers`, every weighted layer as a weight-shared int8 record (format 9,
/// `int8_codebook`: the layer's distinct int8 values, ascending, as its codebook — k ≤ 255 —
/// and every weight as an index of max(1, ⌈log2 k⌉) bits, bit-packed): the file that
/// `bind_model_file` binds to a `quantized_network<Model, P, nn::shared_flash_storage>` (or
/// `pruned_or_shared_flash_storage`), which then computes the bits of `q` (share `q`'s weights first: `share_int8_weights`).
/// With `int8_csr_layers::when_smaller` a layer whose codebook form would not be smaller than
/// its rows·cols int8 weights stays a dense int8 record.
template <class Model, class P, class S, class B>
void add_int8_codebook_layers(model_file_builder& builder, nn::quantized_network<Model, P, S, B>& q,
                              int8_csr_layers which = int8_csr_layers::every_layer) {
  detail::add_int8_records(builder, q, detail::int8_record_form::codebook, 8, which);
}

/// As `add_int8_codebook_layers`, the indices of each weight-shared record Huffman-coded
/// (format 10, `int8_huffman_codebook`: the optimal code of the layer's index histogram and
/// the bit offset of every output channel's codes): the file that `bind_model_file` binds to
/// a `quantized_network<Model, P, nn::huffman_shared_flash_storage>`, which decodes one output
/// channel at a time and computes the bits of `q`. With `int8_csr_layers::when_smaller` a
/// layer whose Huffman codebook form (k + stream + 4·(rows + 1) bytes) is not smaller than its
/// rows·cols int8 weights stays a dense int8 record.
template <class Model, class P, class S, class B>
void add_int8_huffman_codebook_layers(model_file_builder& builder, nn::quantized_network<Model, P, S, B>& q,
                                      int8_csr_layers which = int8_csr_layers::every_layer) {
  detail::add_int8_records(builder, q, detail::int8_record_form::huffman_codebook, 8, which);
}

/// Per-layer weight sharing (Deep Compression stage 2) of an owning int8 network in place:
/// the int8 weights of weighted layer r are clustered into at most `clusters[r]` ∈ [1, 256]
/// values by the exact 1-D k-means of compress/weight_sharing.hpp (`kmeans_1d`, linear
/// initialisation: deterministic), the centroids rounded to int8 in [−127, 127] (equal ones
/// merged), and every weight replaced by its nearest rounded centroid (ties: the lower).
/// Biases and multipliers are kept (no fine-tuning). `clusters` has one entry per weighted
/// layer; a layer with no more distinct values than its entry is left unchanged.
/// @return the largest number of distinct weight values of a weighted layer afterwards
template <class Model, class P, class S, class B>
std::size_t share_int8_weights(nn::quantized_network<Model, P, S, B>& q, std::span<const std::size_t> clusters) {
  static_assert(!nn::quantized_network<Model, P, S, B>::binds_parameters,
                "tinylarge: share_int8_weights needs a network that owns its parameters");
  TINYLARGE_REQUIRE(clusters.size() == weighted_layer_count<Model>, errc::shape_mismatch,
                    "share_int8_weights: one cluster count per weighted layer");
  for (const std::size_t k : clusters)
    TINYLARGE_REQUIRE(k >= 1 && k <= 256, errc::invalid_argument, "share_int8_weights: cluster counts in [1, 256]");
  constexpr auto& lay = nn::quantized_network<Model, P, S, B>::layout;
  std::int8_t* w = q.weights();
  std::size_t widest = 0, r = 0;
  using G = nn::detail::int8_graph<Model>;  // inner layers of residual blocks included
  G::for_each_layer([&]<std::size_t I>() {
    if constexpr (nn::has_weights(G::template layer<I>::kind)) {
      const std::size_t n = lay.weight[I + 1] - lay.weight[I];
      std::int8_t* lw = w + lay.weight[I];
      const std::vector<float> wf(lw, lw + n);
      std::vector<float> distinct(wf);
      std::sort(distinct.begin(), distinct.end());
      distinct.erase(std::unique(distinct.begin(), distinct.end()), distinct.end());
      const std::size_t k = clusters[r++];
      if (distinct.size() > k) {
        kmeans_options opt;
        opt.clusters = k;
        const kmeans_result km = kmeans_1d(wf, opt);
        std::vector<float> codebook;
        for (const float c : km.centroids)
          codebook.push_back(static_cast<float>(std::clamp(std::lround(c), -127L, 127L)));
        std::sort(codebook.begin(), codebook.end());
        codebook.erase(std::unique(codebook.begin(), codebook.end()), codebook.end());
        std::vector<std::uint8_t> labels(n);
        assign_to_centroids(wf, codebook, labels);
        for (std::size_t i = 0; i < n; ++i) lw[i] = static_cast<std::int8_t>(codebook[labels[i]]);
        distinct.assign(lw, lw + n);
        std::sort(distinct.begin(), distinct.end());
        distinct.erase(std::unique(distinct.begin(), distinct.end()), distinct.end());
      }
      widest = std::max(widest, distinct.size());
    }
  });
  return widest;
}

/// `share_int8_weights` with the same cluster count in every weighted layer.
template <class Model, class P, class S, class B>
std::size_t share_int8_weights(nn::quantized_network<Model, P, S, B>& q, std::size_t clusters) {
  const std::vector<std::size_t> all(weighted_layer_count<Model>, clusters);
  return share_int8_weights(q, std::span<const std::size_t>(all));
}

/// Per-layer magnitude pruning of an owning int8 network in place: in weighted layer r (the
/// r-th dense / conv / depthwise layer) the `prune_count(n, sparsity[r])` int8 weights of
/// smallest |w| (ties: lower position first, `magnitude_mask`) become 0; biases and
/// multipliers are kept (no fine-tuning). `sparsity` has one entry per weighted layer.
/// @return the number of zero weights in the weighted layers afterwards
template <class Model, class P, class S, class B>
std::size_t prune_int8_weights(nn::quantized_network<Model, P, S, B>& q, std::span<const double> sparsity) {
  static_assert(!nn::quantized_network<Model, P, S, B>::binds_parameters,
                "tinylarge: prune_int8_weights needs a network that owns its parameters");
  TINYLARGE_REQUIRE(sparsity.size() == weighted_layer_count<Model>, errc::shape_mismatch,
                    "prune_int8_weights: one sparsity per weighted layer");
  constexpr auto& lay = nn::quantized_network<Model, P, S, B>::layout;
  std::int8_t* w = q.weights();
  std::size_t zeros = 0, r = 0;
  using G = nn::detail::int8_graph<Model>;  // inner layers of residual blocks included
  G::for_each_layer([&]<std::size_t I>() {
    if constexpr (nn::has_weights(G::template layer<I>::kind)) {
      const std::size_t n = lay.weight[I + 1] - lay.weight[I];
      std::int8_t* lw = w + lay.weight[I];
      const std::vector<float> wf(lw, lw + n);
      std::vector<std::uint8_t> mask(n);
      (void)magnitude_mask(wf, sparsity[r++], mask);
      for (std::size_t i = 0; i < n; ++i) {
        if (mask[i] == 0) lw[i] = 0;
        zeros += lw[i] == 0;
      }
    }
  });
  return zeros;
}

/// `prune_int8_weights` with the same sparsity in every weighted layer.
template <class Model, class P, class S, class B>
std::size_t prune_int8_weights(nn::quantized_network<Model, P, S, B>& q, double sparsity) {
  const std::vector<double> all(weighted_layer_count<Model>, sparsity);
  return prune_int8_weights(q, std::span<const double>(all));
}

#endif

}  // namespace tinylarge::compress
