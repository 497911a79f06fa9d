/// @file nn/quantized_network.hpp
/// @brief `quantized_network<Model, P, Storage>`: integer-only int8 inference
///        of a `sequential` model (TFLite int8 arithmetic), no heap, no
///        exceptions — builds in the freestanding profile.
///
/// Produced from a trained fp32 `network` by post-training quantization or
/// after quantization-aware training (`nn/quantize.hpp`). Every activation is
/// int8 with one scale and zero point per tensor; weights are symmetric int8
/// (per channel or per tensor, from the precision policy `P`), biases int32
/// with scale s_x·s_w[o], and each dense / conv output is rescaled by the
/// integer multiplier M[o] = s_x·s_w[o]/s_y (`kernels::dense_s8`). A relu or
/// relu6 after a dense / conv layer is fused into the output clamp.
///
/// Per layer in int8:
///  - dense: `kernels::dense_s8`; conv2d: `kernels::conv2d_s8` (im2col of two
///    output pixels at a time into the arena's scratch, padding with the input
///    zero point, which stands for 0.0, then the back end's `dense_s8`);
///    depthwise: `kernels::depthwise_conv2d_s8`; all with the same
///    requantization (`kernels::requantize_s8`);
///  - max pool, flatten, dropout, standalone relu: on the input's grid;
///    avg pool: rounded integer mean on the input's grid;
///  - sigmoid, tanh: a 256-entry table; softmax: a 256-entry e^{−d·s} table in
///    Q16 and an integer division; outputs on TFLite's fixed grids
///    (1/256, −128) and (1/128, 0).
///
/// Residual blocks `residual<Layers...>`: the network runs the model's int8
/// graph (`graph`, `detail::int8_graph`), each block as its inner layers (the
/// same per-layer code) followed by an add node, y = x + F(x) by
/// `kernels::add_s8` (TFLite's ADD arithmetic), with a relu / relu6 after the
/// block fused into the add's clamp. Layer and tensor indices are node indices
/// of that graph (the model's layer indices when it has no block). Nested
/// blocks, and blocks whose first inner layer runs in place, fail to compile.
///
/// Memory: parameters in `Storage` buffers sized by constexprs of the model —
/// or, with `flash_storage`, views of const data in flash (a model file bound
/// by `compress::bind_model_file`: the same inference code, no copy; with
/// `sparse_flash_storage` also pruned int8 CSR records, run on their non-zero
/// weights in place by kernels/sparse_s8.hpp, and weight-shared int8 codebook
/// records, run on their bit-packed indices in place by kernels/codebook_s8.hpp,
/// both with the same requantization) — plus
/// one activation arena of exactly `arena_bytes` bytes, planned at compile
/// time (`detail::int8_plan`): two ping-pong buffers at its two ends and the
/// conv im2col scratch between them, and while a residual block runs its skip
/// tensor at one end (liveness-based; a static_assert checks the plan).
///
/// The back end (`Backend`, default `kernels::default_backend`) selects the
/// kernels' inner loops at compile time: scalar, `cortex_m_dsp` (SMLAD),
/// `cortex_m_mve` (Helium), or the host SIMD back ends.
///
/// Batch-1 fast path: when the back end has a packed GEMV layout
/// (`kernels::dense_s8_packed_bytes(Backend{}, n, k) > 0`: AVX-512 VNNI), every
/// dense layer's weights are also kept in that layout, with the bias and input
/// zero point folded in (`packed_bytes` more bytes, in `Storage` too: still no
/// heap with `static_storage`). The packed copy is built by the first
/// `forward()` after the parameters were handed out for writing (any non-const
/// raw accessor marks it stale), so converters need no extra call; a caller
/// that keeps a raw pointer and writes through it after a `forward()` must call
/// `parameters_changed()`. Outputs are bit-identical either way. Other back
/// ends (scalar, Cortex-M, NEON) have `packed_bytes == 0` and no extra memory.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <type_traits>
#include <utility>

#include "../core/config.hpp"
#include "../kernels/backend.hpp"
#include "../kernels/conv.hpp"
#include "../kernels/dense.hpp"
#include "../kernels/elementwise.hpp"
#include "../kernels/codebook_s8.hpp"
#include "../kernels/huffman_s8.hpp"
#include "../kernels/sparse_s8.hpp"
#include "../precision/int8.hpp"
#include "sequential.hpp"
#include "storage.hpp"

namespace tinylarge::nn {

namespace detail {
/// Per-layer offsets into the flat int8 weight / int32 bias arrays and the tables.
template <class Model>
struct qlayout {
  std::array<std::size_t, Model::size + 1> weight{}, bias{}, lut{};
  constexpr qlayout() {
    Model::for_each_layer([&]<std::size_t I>() {
      using L = typename Model::template layer<I>;
      weight[I + 1] = weight[I] + L::weight_count;
      bias[I + 1] = bias[I] + L::bias_count;
      constexpr bool table = L::kind == layer_kind::sigmoid || L::kind == layer_kind::tanh || L::kind == layer_kind::softmax;
      lut[I + 1] = lut[I] + (table ? 256 : 0);
    });
  }
};

/// Bytes of int8 scratch layer L needs between its input and output in the
/// arena: two im2col rows for conv2d (`kernels::conv2d_s8_scratch_bytes`),
/// none for the other layers. With `Huffman` (a storage that accepts
/// Huffman-coded weight-shared layers, kernels/huffman_s8.hpp) also the decoded
/// weight row: fan-in bytes for dense and conv2d, K·K for depthwise.
template <class L, bool Huffman = false>
constexpr std::size_t int8_scratch_bytes() noexcept {
  if constexpr (L::kind == layer_kind::conv2d)
    return Huffman ? kernels::huffman_conv2d_s8_scratch_bytes(L::patch) : kernels::conv2d_s8_scratch_bytes(L::patch);
  else if constexpr (Huffman && L::kind == layer_kind::dense)
    return L::in_shape::size;
  else if constexpr (Huffman && L::kind == layer_kind::depthwise_conv2d)
    return L::kernel * L::kernel;
  else
    return 0;
}

/// The add that closes a residual block in the int8 graph (`int8_graph`):
/// y = x + F(x), x the block's input (the skip tensor, `inner_layers` nodes
/// back) and F(x) the output of the block's last inner layer; run by
/// `kernels::add_s8`, written over the skip tensor.
template <class S, std::size_t Inner>
struct residual_add : layer_base<residual_add<S, Inner>, S, S, layer_kind::residual> {
  static constexpr std::size_t inner_layers = Inner;
};

inline constexpr std::size_t not_inner = static_cast<std::size_t>(-1);

/// One node of the int8 graph: the bound layer `L`, from layer `Top` of the
/// model; `Inner` = J for inner layer J of a residual block (`not_inner`
/// otherwise; the block's add has J = the number of inner layers), and `Skip`
/// the bytes of the skip tensor kept live while the node runs (inner layers
/// only).
template <class L, std::size_t Top, std::size_t Inner, std::size_t Skip>
struct int8_node {
  using layer = L;
  static constexpr std::size_t top = Top;
  static constexpr std::size_t inner = Inner;
  static constexpr std::size_t skip_bytes = Skip;
};

template <class... Lists>
struct concat_lists {
  using type = type_list<>;
};
template <class... A>
struct concat_lists<type_list<A...>> {
  using type = type_list<A...>;
};
template <class... A, class... B, class... Rest>
struct concat_lists<type_list<A...>, type_list<B...>, Rest...> : concat_lists<type_list<A..., B...>, Rest...> {};

// One check per limitation, so that the message names it.
template <class Inner>
struct residual_not_nested_check {
  static_assert(Inner::kind != layer_kind::residual,
                "tinylarge: quantized_network: a residual<...> nested inside a residual<...> block has no int8 "
                "implementation (the arena plan keeps one skip tensor live); write the blocks one after the other");
  static constexpr bool value = Inner::kind != layer_kind::residual;
};
template <class First>
struct residual_first_layer_check {
  static_assert(!runs_in_place(First::kind),
                "tinylarge: quantized_network: the first inner layer of a residual<Layers...> block must not run in "
                "place (relu, relu6, sigmoid, tanh, softmax, flatten, dropout): it would overwrite the skip tensor x of "
                "y = x + F(x); start the block with a dense / conv / pooling layer");
  static constexpr bool value = !runs_in_place(First::kind);
};

/// Layer `L` (layer `I` of the model) as nodes of the int8 graph: itself, or
/// for a residual block its inner layers followed by its add.
template <class L, std::size_t I>
struct int8_flatten {
  using type = type_list<int8_node<L, I, not_inner, 0>>;
  static constexpr bool supported = true;
};
template <class L, std::size_t I>
  requires(L::kind == layer_kind::residual)
struct int8_flatten<L, I> {
  template <std::size_t... J>
  static auto make(std::index_sequence<J...>)
      -> type_list<int8_node<typename L::template layer<J>, I, J, L::in_shape::size>...,
                   int8_node<residual_add<typename L::in_shape, L::size>, I, L::size, 0>>;
  /// False (after the check's message) for a block that the int8 path cannot run.
  static constexpr bool supported = residual_first_layer_check<typename L::template layer<0>>::value &&
                                    []<std::size_t... J>(std::index_sequence<J...>) {
                                      return (residual_not_nested_check<typename L::template layer<J>>::value && ...);
                                    }(std::make_index_sequence<L::size>{});
  using type = decltype(make(std::make_index_sequence<L::size>{}));
};

template <class Model, class Seq>
struct int8_nodes_of;
template <class Model, std::size_t... I>
struct int8_nodes_of<Model, std::index_sequence<I...>> {
  using type = typename concat_lists<typename int8_flatten<typename Model::template layer<I>, I>::type...>::type;
  static constexpr bool supported = (int8_flatten<typename Model::template layer<I>, I>::supported && ...);
};

/// The int8 inference graph of a `sequential` model: its layers in order, each
/// residual block replaced by its inner layers and a `residual_add` node. The
/// same interface as `sequential` for what `quantized_network` reads (`size`,
/// `layer<N>`, `fused_into_previous<N>`, `for_each_layer`, sizes); a model
/// without residual blocks is its own graph, node N = layer N.
template <class Model>
struct int8_graph {
  using nodes = typename int8_nodes_of<Model, std::make_index_sequence<Model::size>>::type;
  /// False when a residual block cannot run in int8 (a check above said why).
  static constexpr bool supported = int8_nodes_of<Model, std::make_index_sequence<Model::size>>::supported;
  template <std::size_t N>
  using node = typename type_at<N, nodes>::type;
  template <std::size_t N>
  using layer = typename node<N>::layer;
  static constexpr std::size_t size = []<class... Nd>(type_list<Nd...>) { return sizeof...(Nd); }(nodes{});
  static constexpr std::size_t input_size = Model::input_size;
  static constexpr std::size_t output_size = Model::output_size;
  static constexpr std::size_t weight_count = Model::weight_count;
  static constexpr std::size_t bias_count = Model::bias_count;

  template <class F>
  static constexpr void for_each_layer(F&& f) {
    [&]<std::size_t... N>(std::index_sequence<N...>) { (f.template operator()<N>(), ...); }(
        std::make_index_sequence<size>{});
  }
  /// Residual adds before node N (node N's index among the adds when it is one).
  template <std::size_t N>
  static constexpr std::size_t add_index = [] {
    std::size_t c = 0;
    [&]<std::size_t... M>(std::index_sequence<M...>) {
      ((c += layer<M>::kind == layer_kind::residual ? 1 : 0), ...);
    }(std::make_index_sequence<N>{});
    return c;
  }();
  static constexpr std::size_t residual_count = add_index<size>;
  /// True when node N is a relu / relu6 fused into the clamp of the node before
  /// it: a dense / conv layer or a residual add (not the first inner layer of a
  /// block, whose input is the skip tensor).
  template <std::size_t N>
  static constexpr bool fused_into_previous = [] {
    if constexpr (N == 0) {
      return false;
    } else {
      constexpr layer_kind k = layer<N>::kind, p = layer<N - 1>::kind;
      return (k == layer_kind::relu || k == layer_kind::relu6) && node<N>::inner != 0 &&
             (has_weights(p) || p == layer_kind::residual);
    }
  }();
};

/// The output clamp of node I of graph G: the range of the relu / relu6 fused
/// into it (node I + 1, `fused_into_previous`) on its output's grid `out`,
/// else `full` (the precision's activation range).
template <class G, std::size_t I>
constexpr quant_range output_clamp(quant_params out, quant_range full) noexcept {
  if constexpr (I + 1 < G::size) {
    if constexpr (G::template fused_into_previous<I + 1>)
      return fused_activation_range(
          G::template layer<I + 1>::kind == layer_kind::relu ? fused_activation::relu : fused_activation::relu6, out,
          full);
  }
  return full;
}

/// Where node N of the int8 plan reads, writes and keeps its scratch (byte
/// offsets into the arena); `skip` is the skip tensor of the residual add.
struct int8_step {
  std::size_t in = 0, out = 0, scratch = 0, skip = 0;
};

/// The int8 activation arena, planned at compile time from the liveness of
/// the tensors. A chain uses two ping-pong buffers at the two ends of one
/// array (a layer reads the one its predecessor wrote and writes the other
/// end), the layer's scratch between them; layers that run in place
/// (activations, flatten, dropout, relu fused into the clamp) need only their
/// input. So the arena of a chain is max over layers of in + scratch + out
/// bytes. A residual block's input (the skip tensor) stays live until its add:
/// it keeps its end of the arena, and the inner layers ping-pong in the rest
/// (the first inner layer reads the skip tensor itself); the add is written
/// over the skip tensor (`kernels::add_s8` allows it). `consistent` checks
/// that no live tensor overlaps another or leaves the arena.
template <class G, bool Huffman = false>
struct int8_plan {
  std::size_t bytes = G::input_size;
  std::array<int8_step, G::size> step{};
  bool consistent = true;

  template <std::size_t N>
  static constexpr bool in_place() noexcept {
    return G::template fused_into_previous<N> || runs_in_place(G::template layer<N>::kind);
  }
  /// Arena bytes node N needs.
  template <std::size_t N>
  static constexpr std::size_t need() noexcept {
    using Nd = typename G::template node<N>;
    using L = typename Nd::layer;
    constexpr std::size_t in = L::in_shape::size;
    if constexpr (L::kind == layer_kind::residual)
      return 2 * in;  // skip tensor and F(x); the sum overwrites the skip tensor
    else if constexpr (in_place<N>())
      return Nd::skip_bytes + in;
    else
      return (Nd::inner == 0 ? 0 : Nd::skip_bytes) + in + int8_scratch_bytes<L, Huffman>() + L::out_shape::size;
  }
  static constexpr bool overlap(std::size_t a, std::size_t na, std::size_t b, std::size_t nb) noexcept {
    return na > 0 && nb > 0 && a < b + nb && b < a + na;
  }

  constexpr int8_plan() {
    G::for_each_layer([&]<std::size_t N>() { bytes = need<N>() > bytes ? need<N>() : bytes; });
    std::size_t lo = 0, hi = bytes, cur = 0, skip = 0, skip_n = 0;
    bool front = true, skip_front = true;
    const auto fits = [&](std::size_t off, std::size_t n) { return off <= bytes && n <= bytes - off; };
    G::for_each_layer([&]<std::size_t N>() {
      using Nd = typename G::template node<N>;
      using L = typename Nd::layer;
      constexpr std::size_t in_n = L::in_shape::size, out_n = L::out_shape::size;
      int8_step& s = step[N];
      s.in = cur;
      if constexpr (Nd::inner == 0) {  // entering a block: the skip tensor keeps its end
        skip = cur;
        skip_n = in_n;
        skip_front = front;
        if (front)
          lo = cur + in_n;
        else
          hi = cur;
      }
      if constexpr (L::kind == layer_kind::residual) {
        s.skip = skip;
        s.out = skip;
        consistent = consistent && !overlap(skip, skip_n, cur, in_n) && fits(skip, skip_n);
        cur = skip;
        front = skip_front;
        lo = 0;
        hi = bytes;
      } else if constexpr (in_place<N>()) {
        s.out = cur;
      } else {
        constexpr std::size_t scratch_n = int8_scratch_bytes<L, Huffman>();
        s.out = front ? hi - out_n : lo;
        s.scratch = front ? cur + in_n : lo + out_n;
        consistent = consistent && !overlap(s.in, in_n, s.out, out_n) && !overlap(s.in, in_n, s.scratch, scratch_n) &&
                     !overlap(s.out, out_n, s.scratch, scratch_n) && fits(s.out, out_n) &&
                     fits(s.scratch, scratch_n) && lo <= hi && out_n <= hi - lo;
        if constexpr (Nd::inner != not_inner && Nd::inner > 0)
          consistent = consistent && !overlap(skip, skip_n, s.in, in_n) && !overlap(skip, skip_n, s.out, out_n) &&
                       !overlap(skip, skip_n, s.scratch, scratch_n);
        cur = s.out;
        front = !front;
      }
      consistent = consistent && fits(s.in, in_n);
    });
  }
};

/// Bytes of the int8 activation arena of `Model` (`int8_plan` of its `int8_graph`).
template <class Model, bool Huffman = false>
constexpr std::size_t int8_arena_bytes() noexcept {
  return int8_plan<int8_graph<Model>, Huffman>{}.bytes;
}

/// Offsets of each dense layer's packed batch-1 weights (64-byte multiples;
/// all 0 when the back end has no packed layout, or when not `Enabled`).
template <class Model, class Backend, bool Enabled = true>
struct packed_layout {
  std::array<std::size_t, Model::size + 1> offset{};
  constexpr packed_layout() {
    Model::for_each_layer([&]<std::size_t I>() {
      using L = typename Model::template layer<I>;
      std::size_t b = 0;
      if constexpr (Enabled && L::kind == layer_kind::dense)
        b = kernels::dense_s8_packed_bytes(Backend{}, L::out_channels, L::in_shape::size);
      offset[I + 1] = offset[I] + (b + 63) / 64 * 64;
    });
  }
};
}  // namespace detail

/// The parameters of one weighted layer as views (see `flash_storage`).
struct int8_layer_binding {
  const std::int8_t* weights = nullptr;       ///< out_channels × fan-in, row-major
  const std::int32_t* bias = nullptr;         ///< out_channels, may be null
  const std::int32_t* multipliers = nullptr;  ///< out_channels (per channel) or 1
  const int* shifts = nullptr;                ///< as `multipliers`
  bool per_channel = true;
};

/// The pruned int8 weights of one layer as CSR views (`sparse_flash_storage`;
/// kernels/sparse_s8.hpp): out_channels + 1 row offsets, one gap and one int8
/// value per entry. The bias and multipliers stay in `int8_layer_binding`.
struct int8_csr_binding {
  const std::uint32_t* row_ptr = nullptr;
  const std::uint8_t* gaps = nullptr;
  const std::int8_t* values = nullptr;
};

/// The weight-shared int8 weights of one layer (`shared_flash_storage`;
/// kernels/codebook_s8.hpp): out_channels·fan-in indices of `bits` bits,
/// bit-packed, each below the size of the int8 `codebook`. The bias and
/// multipliers stay in `int8_layer_binding`.
struct int8_codebook_binding {
  const std::uint8_t* packed = nullptr;
  const std::int8_t* codebook = nullptr;
  unsigned bits = 0;
};

/// The Huffman-coded weight-shared int8 weights of one layer
/// (`huffman_shared_flash_storage`; kernels/huffman_s8.hpp): the Huffman stream of
/// the out_channels·fan-in indices (header and payload), the bit offset of each
/// output channel's codes (out_channels + 1) and the int8 `codebook`. The bias and
/// multipliers stay in `int8_layer_binding`.
struct int8_huffman_binding {
  const std::uint8_t* stream = nullptr;
  std::size_t stream_bytes = 0;
  const std::uint32_t* row_bits = nullptr;
  const std::int8_t* codebook = nullptr;
};

/// The int8 inference form of a `sequential` model.
/// @tparam Model a `sequential<...>` type (the same one the fp32 `network` uses)
/// @tparam P an int8 precision policy: `tl::int8_per_channel` (default) or
///         `tl::int8_per_tensor`
/// @tparam Storage `static_storage` (default: no heap; give the object static
///         storage duration on a microcontroller) or `heap_storage`
/// @tparam Backend kernel back end tag (`kernels::default_backend`)
template <sequential_model Model, int8_precision P = int8_per_channel, storage_policy Storage = static_storage,
          class Backend = kernels::default_backend>
class quantized_network {
 public:
  using model = Model;
  /// The int8 graph: the model's layers, each residual block as its inner layers and an add
  /// (`detail::int8_graph`). Layer and tensor indices of this class are node indices of the
  /// graph, which are the model's layer indices when it has no residual block.
  using graph = detail::int8_graph<Model>;
  using precision = P;
  static constexpr std::size_t tensor_count = graph::size + 1;
  /// True with `flash_storage` and `compressed_flash_storage`: parameters are views set by `bind_layer`.
  static constexpr bool binds_parameters = detail::parameters_are_views<Storage>();
  /// True with `compressed_flash_storage`: a layer may be bound as pruned CSR views or as
  /// weight-shared codebook views (as the storage accepts) and then runs the int8 CSR kernels (kernels/sparse_s8.hpp)
  /// or the int8 codebook kernels (kernels/codebook_s8.hpp) on them.
  static constexpr bool binds_sparse = detail::pruned_parameters<Storage>() || detail::shared_parameters<Storage>() ||
                                       detail::huffman_parameters<Storage>();
  /// True when the storage accepts pruned int8 CSR layers (`sparse_flash_storage`).
  static constexpr bool binds_pruned = detail::pruned_parameters<Storage>();
  /// True when the storage accepts weight-shared int8 codebook layers (`shared_flash_storage`).
  static constexpr bool binds_shared = detail::shared_parameters<Storage>();
  /// True when the storage accepts Huffman-coded weight-shared int8 layers
  /// (`huffman_shared_flash_storage`).
  static constexpr bool binds_huffman = detail::huffman_parameters<Storage>();
  /// Bytes of the activation arena (`detail::int8_arena_bytes`): the model's
  /// `arena_bytes<P>` plus the kernels' im2col scratch for conv layers (and, with
  /// `binds_huffman`, the decoded weight row of each weighted layer).
  static constexpr std::size_t arena_bytes = detail::int8_arena_bytes<Model, binds_huffman>();
  /// Residual blocks of the model (one int8 add each).
  static constexpr std::size_t residual_count = graph::residual_count;
  static constexpr auto layout = detail::qlayout<graph>{};
  static constexpr std::size_t lut_count = layout.lut[graph::size];
  /// Bytes of the parameters: int8 weights, int32 biases, per output channel
  /// one Q31 multiplier and one shift, and the int32 tables of sigmoid / tanh
  /// / softmax layers (what a firmware image holds).
  static constexpr std::size_t parameter_bytes =
      graph::weight_count + 4 * graph::bias_count + 8 * graph::bias_count + 4 * lut_count;
  /// Bytes of the packed batch-1 weights (0 when `Backend` has no packed
  /// layout); the buffer has 64 more for alignment.
  /// (also 0 with `compressed_flash_storage`).
  static constexpr std::size_t packed_bytes = detail::packed_layout<graph, Backend, !binds_sparse>{}.offset[graph::size];

  /// Scale and zero point of tensor t (0 = input, I + 1 = output of layer I).
  quant_params tensor_params(std::size_t t) const noexcept { return tq_[t]; }
  quant_params input_params() const noexcept { return tq_[0]; }
  quant_params output_params() const noexcept { return tq_[graph::size]; }

  /// The first Model::input_size bytes of the arena: write a quantized input
  /// here and call `forward()` to avoid a copy.
  std::int8_t* input_buffer() noexcept { return arena_.data(); }

  /// Run the network on the int8 input already in `input_buffer()`.
  /// @return the int8 output (Model::output_size values, on `output_params()`),
  ///         valid until the next call
  const std::int8_t* forward() noexcept {
    return forward_observed([](std::size_t, bool) noexcept {});
  }

  /// `forward()` calling `on_layer(I, true)` before and `on_layer(I, false)`
  /// after each layer I (profiling: the Cortex-M examples count the
  /// instructions of each layer between the two calls, callees included).
  template <class Observer>
  const std::int8_t* forward_observed(Observer&& on_layer) noexcept {
    if constexpr (packed_bytes > 0) {
      if (packed_for_ != packed_base()) pack();
    }
    std::int8_t* const a = arena_.data();
    graph::for_each_layer([&]<std::size_t I>() {
      using L = typename graph::template layer<I>;
      constexpr layer_kind k = L::kind;
      constexpr detail::int8_step step = plan_.step[I];
      std::int8_t* const cur = a + step.in;
      on_layer(I, true);
      if constexpr (graph::template fused_into_previous<I> || k == layer_kind::flatten || k == layer_kind::dropout) {
        // no work: fused into the clamp of the previous layer, or a no-op in NHWC
      } else if constexpr (k == layer_kind::relu || k == layer_kind::relu6) {
        const quant_range r = fused_activation_range(
            k == layer_kind::relu ? fused_activation::relu : fused_activation::relu6, tq_[I], P::activation_range);
        for (std::size_t i = 0; i < L::in_shape::size; ++i) {
          const std::int32_t v = cur[i];
          cur[i] = static_cast<std::int8_t>(v < r.min ? r.min : (v > r.max ? r.max : v));
        }
      } else if constexpr (k == layer_kind::sigmoid || k == layer_kind::tanh) {
        const std::int32_t* t = lut_.data() + layout.lut[I];
        for (std::size_t i = 0; i < L::in_shape::size; ++i) cur[i] = static_cast<std::int8_t>(t[cur[i] + 128]);
      } else if constexpr (k == layer_kind::softmax) {
        softmax_s8<I, L>(cur);
      } else if constexpr (k == layer_kind::residual) {
        // y = x + F(x), written over the skip tensor x
        kernels::add_s8(Backend{}, L::in_shape::size, a + step.skip, cur, add_[graph::template add_index<I>],
                        a + step.out);
      } else {
        run_layer<I, L>(cur, a + step.out, a + step.scratch);
      }
      on_layer(I, false);
    });
    out_ = a + plan_.step[graph::size - 1].out;
    return out_;
  }

  /// Copy `input` (Model::input_size int8 values) into the arena and run.
  const std::int8_t* forward(const std::int8_t* input) noexcept {
    for (std::size_t i = 0; i < graph::input_size; ++i) arena_[i] = input[i];
    return forward();
  }

  /// Quantize an fp32 input with `input_params()`, run, and return the argmax
  /// of the int8 output (the predicted class).
  std::size_t classify(const float* x) noexcept {
    kernels::quantize_s8(Backend{}, x, graph::input_size, tq_[0], P::activation_range, arena_.data());
    const std::int8_t* y = forward();
    std::size_t best = 0;
    for (std::size_t i = 1; i < graph::output_size; ++i) best = y[i] > y[best] ? i : best;
    return best;
  }

  /// Quantize `x`, run, and write the dequantized output to `y`.
  void predict(const float* x, float* y) noexcept {
    (void)classify(x);
    const std::int8_t* out = out_;
    for (std::size_t i = 0; i < graph::output_size; ++i) y[i] = dequantize(out[i], tq_[graph::size]);
  }

  // ---- raw access, for converters, serializers and tests -------------------
  // The non-const accessors mark the packed batch-1 weights stale (rebuilt by
  // the next forward()).
  std::int8_t* weights() noexcept
    requires(!binds_parameters)
  {
    parameters_changed();
    return weights_.data();
  }
  const std::int8_t* weights() const noexcept
    requires(!binds_parameters)
  { return weights_.data(); }
  std::int32_t* biases() noexcept
    requires(!binds_parameters)
  {
    parameters_changed();
    return bias_.data();
  }
  const std::int32_t* biases() const noexcept
    requires(!binds_parameters)
  { return bias_.data(); }
  std::int32_t* multipliers() noexcept
    requires(!binds_parameters)
  {
    parameters_changed();
    return mult_.data();
  }
  int* shifts() noexcept
    requires(!binds_parameters)
  {
    parameters_changed();
    return shift_.data();
  }
  std::int32_t* tables() noexcept { return lut_.data(); }
  std::array<quant_params, tensor_count>& tensor_quantization() noexcept {
    parameters_changed();
    return tq_;
  }
  const std::array<quant_params, tensor_count>& tensor_quantization() const noexcept { return tq_; }
  /// The constants of the int8 add of residual block r (in model order; set by `convert`).
  kernels::add_s8_params& residual_add(std::size_t r) noexcept { return add_[r]; }
  const kernels::add_s8_params& residual_add(std::size_t r) const noexcept { return add_[r]; }
  /// Declare that parameters were written through a raw pointer obtained
  /// before the last forward(): the packed batch-1 weights are rebuilt.
  void parameters_changed() noexcept { packed_for_ = nullptr; }
  /// Real weight scales per output channel of each weighted layer (for
  /// inspection; inference uses only the integer multipliers).
  float* weight_scales() noexcept { return wscale_.data(); }
  const float* weight_scales() const noexcept { return wscale_.data(); }

  /// With `flash_storage`: point layer I's parameters at external const data
  /// (validated by the caller, e.g. `compress::bind_model_file`).
  template <std::size_t I>
  void bind_layer(const int8_layer_binding& b) noexcept
    requires binds_parameters
  {
    bind_dense_part<I>(b, true);
    parameters_changed();
  }
  /// With `sparse_flash_storage`: point layer I at pruned CSR weights (`csr`) and the
  /// bias and multipliers of `b` (whose `weights` is not read), validated by the caller
  /// (row offsets, entry counts, columns: `compress::bind_model_file`).
  template <std::size_t I>
  void bind_layer(const int8_layer_binding& b, const int8_csr_binding& csr) noexcept
    requires binds_pruned
  {
    bind_dense_part<I>(b, false);
    bound_csr_[I] = csr;
    parameters_changed();
  }
  /// With `shared_flash_storage`: point layer I at weight-shared int8 weights (`cb`: packed
  /// indices and codebook) and the bias and multipliers of `b` (whose `weights` is not read),
  /// validated by the caller (stream length, width, every index below k:
  /// `compress::bind_model_file`).
  template <std::size_t I>
  void bind_layer(const int8_layer_binding& b, const int8_codebook_binding& cb) noexcept
    requires binds_shared
  {
    bind_dense_part<I>(b, false);
    bound_codebook_[I] = cb;
    parameters_changed();
  }
  /// With `huffman_shared_flash_storage`: point layer I at Huffman-coded weight-shared int8
  /// weights (`hb`: stream, row bit offsets, codebook) and the bias and multipliers of `b`
  /// (whose `weights` is not read), validated by the caller (stream, code lengths, row
  /// offsets, every row decoding to exactly fan-in indices below k: `compress::bind_model_file`).
  template <std::size_t I>
  void bind_layer(const int8_layer_binding& b, const int8_huffman_binding& hb) noexcept
    requires binds_huffman
  {
    bind_dense_part<I>(b, false);
    bound_huffman_[I] = hb;
    parameters_changed();
  }
  /// Whether layer I is bound as Huffman-coded weight-shared views (always false without
  /// `huffman_shared_flash_storage`).
  template <std::size_t I>
  bool layer_is_huffman() const noexcept {
    if constexpr (binds_huffman)
      return bound_huffman_[I].stream != nullptr;
    else
      return false;
  }
  /// Whether layer I is bound as weight-shared codebook views (always false without
  /// `shared_flash_storage` / `pruned_or_shared_flash_storage`).
  template <std::size_t I>
  bool layer_is_shared() const noexcept {
    if constexpr (binds_shared)
      return bound_codebook_[I].packed != nullptr;
    else
      return false;
  }
  /// Whether layer I is bound as pruned CSR views (always false without `sparse_flash_storage` /
  /// `pruned_or_shared_flash_storage`).
  template <std::size_t I>
  bool layer_is_sparse() const noexcept {
    if constexpr (binds_pruned)
      return bound_csr_[I].row_ptr != nullptr;
    else
      return false;
  }
  /// Layer I's int8 weights (out_channels × fan-in, row-major).
  template <std::size_t I>
  const std::int8_t* layer_weights() const noexcept {
    if constexpr (binds_parameters)
      return bound_[I].weights;
    else
      return weights_.data() + layout.weight[I];
  }

 private:
  /// The part every `bind_layer` shares: layer I's bias and multipliers from `b`, its
  /// dense weights only when `dense_weights` (a compressed form binds its own), and no
  /// compressed form left bound from an earlier binding.
  template <std::size_t I>
  void bind_dense_part(const int8_layer_binding& b, bool dense_weights) noexcept
    requires binds_parameters
  {
    static_assert(has_weights(graph::template layer<I>::kind), "tinylarge: bind_layer: layer I has no parameters");
    bound_[I] = b;
    if (!dense_weights) bound_[I].weights = nullptr;
    if constexpr (binds_pruned) bound_csr_[I] = {};
    if constexpr (binds_shared) bound_codebook_[I] = {};
    if constexpr (binds_huffman) bound_huffman_[I] = {};
  }

  template <std::size_t I>
  kernels::dense_s8_params layer_params() const noexcept {
    using L = typename graph::template layer<I>;
    kernels::dense_s8_params p;
    const quant_params in = tq_[I], out = tq_[I + 1];
    p.input_zero_point = in.zero_point;
    p.output_zero_point = out.zero_point;
    if constexpr (binds_parameters) {
      p.multipliers = bound_[I].multipliers;
      p.shifts = bound_[I].shifts;
      p.per_channel = bound_[I].per_channel;
      p.bias = bound_[I].bias;
    } else {
      p.multipliers = mult_.data() + layout.bias[I];
      p.shifts = shift_.data() + layout.bias[I];
      p.per_channel = true;  // per-tensor policies store the one multiplier replicated
      p.bias = bias_.data() + layout.bias[I];
    }
    const quant_range r = detail::output_clamp<graph, I>(out, P::activation_range);
    p.act_min = static_cast<std::int8_t>(r.min);
    p.act_max = static_cast<std::int8_t>(r.max);
    (void)sizeof(L);
    return p;
  }

  static constexpr auto packed_layout_ = detail::packed_layout<graph, Backend, !binds_sparse>{};
  static constexpr auto plan_ = detail::int8_plan<graph, binds_huffman>{};
  static_assert(!graph::supported || (plan_.consistent && plan_.bytes == arena_bytes),
                "tinylarge: internal error: the int8 arena plan is inconsistent (a live tensor overlaps another "
                "or leaves the arena)");

  /// The 64-byte aligned start of the packed weights inside `packed_`.
  std::int8_t* packed_base() noexcept {
    const auto addr = reinterpret_cast<std::uintptr_t>(packed_.data());
    return packed_.data() + ((64 - addr % 64) % 64);
  }

  /// Lay out every dense layer for the back end's batch-1 kernel.
  void pack() noexcept {
    std::int8_t* base = packed_base();
    graph::for_each_layer([&]<std::size_t I>() {
      using L = typename graph::template layer<I>;
      if constexpr (packed_layout_.offset[I + 1] > packed_layout_.offset[I]) {
        // Unqualified (with a using-declaration): clang rejects a qualified
        // call whose only visible overload is deleted (the scalar one) even in
        // a discarded branch; this one is resolved when instantiated.
        using kernels::pack_dense_s8;
        pack_dense_s8(Backend{}, L::out_channels, L::in_shape::size, layer_weights<I>(),
                      layer_params<I>(), base + packed_layout_.offset[I]);
      }
    });
    packed_for_ = base;
  }

  template <std::size_t I, class L>
  void run_layer(const std::int8_t* x, std::int8_t* y, std::int8_t* scratch) noexcept {
    constexpr layer_kind k = L::kind;
    using In = typename L::in_shape;
    if constexpr (binds_sparse && has_weights(k)) {
      if (layer_is_sparse<I>() || layer_is_shared<I>() || layer_is_huffman<I>()) {
        run_sparse_layer<I, L>(x, y, scratch);
        return;
      }
    }
    if constexpr (k == layer_kind::dense && packed_layout_.offset[I + 1] > packed_layout_.offset[I]) {
      using kernels::dense_s8_packed;  // unqualified: see pack()
      dense_s8_packed(Backend{}, L::out_channels, In::size, x, packed_for_ + packed_layout_.offset[I],
                      layer_params<I>(), y);
    } else if constexpr (k == layer_kind::dense) {
      kernels::dense_s8(Backend{}, 1, L::out_channels, In::size, x, layer_weights<I>(), layer_params<I>(), y);
    } else if constexpr (k == layer_kind::conv2d || k == layer_kind::depthwise_conv2d) {
      static_assert(L::fan_in <= kernels::dense_s8_max_k, "tinylarge: conv receptive field too large for int32 accumulation");
      constexpr kernels::conv_s8_shape shape{In::h, In::w, In::c, L::kernel, L::stride, L::pad, L::ho, L::wo, L::out_channels};
      if constexpr (k == layer_kind::conv2d)
        kernels::conv2d_s8(Backend{}, shape, x, layer_weights<I>(), layer_params<I>(), y, scratch);
      else
        kernels::depthwise_conv2d_s8(Backend{}, shape, L::multiplier, x, layer_weights<I>(), layer_params<I>(), y);
    } else if constexpr (k == layer_kind::max_pool2d || k == layer_kind::avg_pool2d) {
      constexpr std::int32_t area = static_cast<std::int32_t>(L::kernel * L::kernel);
      for (std::size_t oy = 0; oy < L::ho; ++oy)
        for (std::size_t ox = 0; ox < L::wo; ++ox)
          for (std::size_t c = 0; c < In::c; ++c) {
            std::int32_t m = -128, s = 0;
            for (std::size_t ky = 0; ky < L::kernel; ++ky)
              for (std::size_t kx = 0; kx < L::kernel; ++kx) {
                const std::int32_t v = x[L::at(oy, ox, ky, kx) + c];
                m = v > m ? v : m;
                s += v;
              }
            // Rounded mean, ties away from zero (TFLite's AveragePool rounding).
            const std::int32_t avg = s >= 0 ? (s + area / 2) / area : -((-s + area / 2) / area);
            y[(oy * L::wo + ox) * In::c + c] = static_cast<std::int8_t>(k == layer_kind::max_pool2d ? m : avg);
          }
    } else {
      static_assert(k == layer_kind::dense, "tinylarge: quantized_network has no int8 implementation of this layer");
    }
  }

  /// Layer I on its pruned CSR weights or its weight-shared codebook weights: the same
  /// requantization (`layer_params<I>()`).
  template <std::size_t I, class L>
  void run_sparse_layer(const std::int8_t* x, std::int8_t* y, std::int8_t* scratch) noexcept {
    constexpr std::size_t cols = L::kind == layer_kind::dense ? L::in_shape::size : L::fan_in;
    // Only the kernels of the forms the storage accepts are instantiated (and linked).
    if constexpr (binds_huffman) {
      if (layer_is_huffman<I>()) {
        run_huffman_layer<I, L>(x, y, scratch);
        return;
      }
    }
    if constexpr (binds_shared) {
      if (layer_is_shared<I>()) {
        const kernels::codebook_s8_matrix w{L::out_channels, cols, bound_codebook_[I].bits,
                                            bound_codebook_[I].packed, bound_codebook_[I].codebook};
        run_compressed<I, L>(w, x, y, scratch);
        return;
      }
    }
    if constexpr (binds_pruned) {
      const kernels::csr_s8_matrix w{L::out_channels, cols, bound_csr_[I].row_ptr, bound_csr_[I].gaps,
                                     bound_csr_[I].values};
      run_compressed<I, L>(w, x, y, scratch);
    }
  }

  /// Layer I on its Huffman-coded weight-shared weights: the decoder set up from the layer's
  /// code lengths, then one output channel's weights decoded at a time into `scratch`
  /// (kernels/huffman_s8.hpp), with the dense int8 back end's dot product and requantization.
  template <std::size_t I, class L>
  void run_huffman_layer(const std::int8_t* x, std::int8_t* y, std::int8_t* scratch) noexcept {
    constexpr layer_kind k = L::kind;
    using In = typename L::in_shape;
    constexpr std::size_t cols = k == layer_kind::dense ? In::size : L::fan_in;
    const int8_huffman_binding& hb = bound_huffman_[I];
    kernels::huffman_codebook_s8_matrix w{L::out_channels, cols, nullptr, 0, hb.row_bits, hb.codebook, nullptr};
    // The stream was validated when bound (compress::bind_model_file); a failure here cannot
    // happen with such views, and would leave the output at the zero point, not crash.
    if (!kernels::huffman_s8_prepare(hb.stream, hb.stream_bytes, huffman_decoder_, w).ok()) {
      for (std::size_t i = 0; i < L::out_shape::size; ++i) y[i] = static_cast<std::int8_t>(tq_[I + 1].zero_point);
      return;
    }
    static_assert(L::fan_in <= kernels::dense_s8_max_k, "tinylarge: receptive field too large for int32 accumulation");
    if constexpr (k == layer_kind::dense) {
      kernels::huffman_dense_s8(Backend{}, w, x, layer_params<I>(), y, scratch);
    } else {
      constexpr kernels::conv_s8_shape shape{In::h, In::w, In::c, L::kernel, L::stride, L::pad, L::ho, L::wo, L::out_channels};
      if constexpr (k == layer_kind::conv2d)
        kernels::huffman_conv2d_s8(Backend{}, shape, w, x, layer_params<I>(), y, scratch);
      else
        kernels::huffman_depthwise_conv2d_s8(shape, L::multiplier, w, x, layer_params<I>(), y, scratch);
    }
  }

  /// One compressed layer: the dense, conv2d or depthwise kernel of the weight
  /// form `W` (kernels/sparse_s8.hpp for `csr_s8_matrix`, kernels/codebook_s8.hpp
  /// for `codebook_s8_matrix`).
  template <std::size_t I, class L, class W>
  void run_compressed(const W& w, const std::int8_t* x, std::int8_t* y, std::int8_t* scratch) noexcept {
    constexpr layer_kind k = L::kind;
    using In = typename L::in_shape;
    constexpr bool shared = std::is_same_v<W, kernels::codebook_s8_matrix>;
    if constexpr (k == layer_kind::dense) {
      if constexpr (shared)
        kernels::codebook_dense_s8(1, w, x, layer_params<I>(), y);
      else
        kernels::sparse_dense_s8(1, w, x, layer_params<I>(), y);
      (void)scratch;
    } else {
      static_assert(L::fan_in <= kernels::dense_s8_max_k, "tinylarge: conv receptive field too large for int32 accumulation");
      constexpr kernels::conv_s8_shape shape{In::h, In::w, In::c, L::kernel, L::stride, L::pad, L::ho, L::wo, L::out_channels};
      if constexpr (k == layer_kind::conv2d) {
        static_assert(kernels::conv2d_s8_scratch_bytes(L::patch) >= L::patch,
                      "tinylarge: internal error: the sparse conv needs one im2col row of scratch");
        if constexpr (shared)
          kernels::codebook_conv2d_s8(shape, w, x, layer_params<I>(), y, scratch);
        else
          kernels::sparse_conv2d_s8(shape, w, x, layer_params<I>(), y, scratch);
      } else {
        if constexpr (shared)
          kernels::codebook_depthwise_conv2d_s8(shape, L::multiplier, w, x, layer_params<I>(), y);
        else
          kernels::sparse_depthwise_conv2d_s8(shape, L::multiplier, w, x, layer_params<I>(), y);
        (void)scratch;
      }
    }
  }

  /// Integer softmax over the channel axis: e_i = T[max − x_i] with
  /// T[d] = round(2^16 · e^{−d·s_x}); y_i = round(256·e_i / Σe) − 128 on the
  /// grid (1/256, −128).
  template <std::size_t I, class L>
  void softmax_s8(std::int8_t* x) const noexcept {
    using In = typename L::in_shape;
    const std::int32_t* t = lut_.data() + layout.lut[I];
    for (std::size_t r = 0; r < In::h * In::w; ++r) {
      std::int8_t* row = x + r * In::c;
      std::int32_t m = -128;
      for (std::size_t i = 0; i < In::c; ++i) m = row[i] > m ? row[i] : m;
      // Σ e ≤ 2^16 · C and 256 · e ≤ 2^24: int32 suffices (no 64-bit division on Cortex-M).
      static_assert(In::c <= 32767, "tinylarge: int8 softmax supports at most 32767 channels");
      std::int32_t sum = 0;
      for (std::size_t i = 0; i < In::c; ++i) sum += t[m - row[i]];
      for (std::size_t i = 0; i < In::c; ++i) {
        const std::int32_t e = t[m - row[i]];
        std::int32_t q = (e * 256 + sum / 2) / sum - 128;
        q = q > 127 ? 127 : q;
        row[i] = static_cast<std::int8_t>(q);
      }
    }
  }

  // With flash_storage the parameter buffers are empty (size 0) and bound_ holds views.
  static constexpr std::size_t owned_weights = binds_parameters ? 0 : graph::weight_count;
  static constexpr std::size_t owned_channels = binds_parameters ? 0 : graph::bias_count;
  typename Storage::template buffer<std::int8_t, owned_weights> weights_{};
  typename Storage::template buffer<std::int32_t, owned_channels> bias_{};
  typename Storage::template buffer<std::int32_t, owned_channels> mult_{};
  typename Storage::template buffer<int, owned_channels> shift_{};
  typename Storage::template buffer<float, owned_channels> wscale_{};
  std::array<int8_layer_binding, binds_parameters ? graph::size : 0> bound_{};
  std::array<int8_csr_binding, binds_pruned ? graph::size : 0> bound_csr_{};
  std::array<int8_codebook_binding, binds_shared ? graph::size : 0> bound_codebook_{};
  std::array<int8_huffman_binding, binds_huffman ? graph::size : 0> bound_huffman_{};
  struct no_decoder {};
  /// The one Huffman decoder of `huffman_shared_flash_storage` (set up per layer and inference).
  [[no_unique_address]] std::conditional_t<binds_huffman, kernels::huffman_s8_decoder, no_decoder> huffman_decoder_{};
  typename Storage::template buffer<std::int32_t, lut_count> lut_{};
  typename Storage::template buffer<std::int8_t, arena_bytes> arena_{};
  typename Storage::template buffer<std::int8_t, (packed_bytes > 0 ? packed_bytes + 64 : 0)> packed_{};
  std::array<quant_params, tensor_count> tq_{};
  std::array<kernels::add_s8_params, residual_count> add_{};
  const std::int8_t* out_ = nullptr;
  const std::int8_t* packed_for_ = nullptr;  ///< packed_base() when the packed weights are current
};

}  // namespace tinylarge::nn
