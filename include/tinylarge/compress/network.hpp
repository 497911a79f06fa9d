/// @file compress/network.hpp
/// @brief Compression of a whole `nn::network`: per-layer policies, fine-tuning with the
///        masks and shared weights kept, structured shrinking into a smaller model, the
///        encoded (byte-counted) model and inference on the compressed forms.
///
/// This is the adapter between the array-level policies of compress/ (pruning, weight
/// sharing, low rank, Huffman) and a `sequential` model trained by nn/. The workflow of
/// Deep Compression (Han, Mao & Dally 2016, ICLR, Fig. 1) reads:
///
/// @code
///   using model = tl::sequential<tl::dense<784, 300>, tl::relu, tl::dense<300, 100>, tl::relu,
///                                tl::dense<100, 10>>;
///   using fc = tl::compress::deep_compression<tl::compress::polynomial_decay, 6>;
///   tl::compress::network_compressor<model, fc, fc, fc> c;   // one policy per weighted layer
///   std::get<0>(c.policy<0>().stages).schedule.final_sparsity = 0.92;  // policies differ per layer
///   …
///   c.apply(net, tl::compress::stage_kind::pruning);         // masks
///   tl::nn::fit(net, tl::compress::fine_tuning(tl::nn::adam{}, c), loss, train, opts); // masks kept
///   c.apply(net, tl::compress::stage_kind::quantization);    // k-means codebooks
///   tl::nn::fit(net, tl::compress::fine_tuning(tl::nn::adam{}, c), loss, train, opts); // centroids tuned
///   tl::compress::encoded_network e = c.encode(net);          // bytes: e.bytes()
///   tl::compress::compressed_network<model> inf(e);           // runs on CSR + codebook
/// @endcode
///
/// **Policies per layer.** `network_compressor<Model, P...>` takes one compression policy
/// (a single stage or a `pipeline`) per *weighted* layer of the model, in order; layers
/// differ in type (e.g. `none` for a layer left dense) and in hyperparameters (each policy
/// is an object). `apply(net, kind)` runs, on every layer, the stages of one `stage_kind`, so
/// a training script can fine-tune between stages as the paper does.
///
/// **Fine-tuning with the constraints kept.** `fine_tuning(opt, compressor)` wraps any
/// optimizer policy. Each step it (1) zeroes the gradients of pruned weights, so that the
/// optimizer's moments of a pruned weight stay 0; (2) runs the inner optimizer; (3) if the
/// pruning stage has a schedule and `gradual_pruning` is on, advances it (TFMOT semantics,
/// the mask is recomputed at the schedule's steps); (4) re-applies every mask; (5) for a
/// shared layer, updates its centroids with the sum of the gradients of their weights,
/// ∂L/∂c_k = Σ_{i: idx_i = k} ∂L/∂w_i (Deep Compression §3.1, Fig. 3), with a second
/// instance of the inner optimizer over the centroids, and re-snaps the weights, so the
/// labels never change and pruned weights (index 0, centroid fixed at 0) stay 0.
///
/// **Structured pruning that shrinks.** `shrink<Small>(net, compressor)` builds a
/// `network<Small>` — a model *type* with fewer neurons — from the rows that
/// `structured_prune` kept and the matching input columns of the next layer; it trains and
/// runs on the ordinary dense kernels.
///
/// **Low-rank fine-tuning.** `factorize<Factored>(net, compressor)` turns each layer that
/// `low_rank` factored into two thinner dense layers of a model type `Factored`, which
/// `nn::fit` then fine-tunes (the factors, not W).
///
/// **Encoding and byte counts.** `encode` stores every layer as bytes, the way a model file
/// would (compress/model_file.hpp wraps these payloads in its container): per layer a
/// 16-byte descriptor (shape, form, bit widths, entry count), fp32 biases, and
///  - dense: fp32 weights; factored: fp32 left (out×r) and right (r×in) factors;
///  - sparse (pruned): relative-index CSR (compress/kernels.hpp) — row lengths bit-packed at
///    the width of the longest row, one gap per entry (filler entries included), values fp32
///    or codebook indices; the gap width is chosen per layer (1–8 bits) to minimise bytes;
///  - codebook (shared, not pruned): bit-packed indices;
///  - fp32 codebook of the shared layers;
///  - with a `huffman` stage, the gap and index streams are canonical Huffman streams
///    (compress/huffman.hpp; their code-length tables and counts included).
/// `encoded_network::bytes()` is the sum of all of these: nothing a decoder needs is left out.
///
/// **Inference on the compressed forms.** `compressed_network<Model>` decodes the streams
/// once (Huffman → indices and gaps, as EIE and Deep Compression do before running) and
/// runs the sparse / codebook / factored kernels of compress/kernels.hpp, never expanding a
/// layer to dense fp32. Its outputs equal dense inference of the decoded weights up to the
/// summation order (bit-exact for the scalar kernels).
///
/// Host profile (heap, exceptions through TINYLARGE_REQUIRE). Weighted layers must be
/// `dense` for `encode` / `compressed_network` / `shrink` (convolutions compress and
/// fine-tune, but their inference forms are not written yet: a static_assert says so).
#pragma once

#include <algorithm>
#include <array>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "../core/error.hpp"
#include "../kernels/backend.hpp"
#include "../kernels/dense.hpp"
#include "../nn/network.hpp"
#include "../nn/optimizer.hpp"
#include "bitpack.hpp"
#include "huffman.hpp"
#include "kernels.hpp"
#include "pipeline.hpp"
#include "sparse.hpp"

namespace tinylarge::compress {

namespace detail {

template <class Model>
constexpr std::size_t weighted_layer_count() noexcept {
  std::size_t n = 0;
  Model::for_each_layer([&]<std::size_t I>() {
    if (Model::template layer<I>::weight_count > 0) ++n;
  });
  return n;
}

/// Model indices of the layers with weights, in order.
template <class Model>
constexpr auto weighted_layers() noexcept {
  std::array<std::size_t, weighted_layer_count<Model>()> a{};
  std::size_t n = 0;
  Model::for_each_layer([&]<std::size_t I>() {
    if (Model::template layer<I>::weight_count > 0) a[n++] = I;
  });
  return a;
}

/// Position of model layer I among the weighted layers (size() when it has none).
template <class Model>
constexpr std::size_t weighted_position(std::size_t layer) noexcept {
  constexpr auto w = weighted_layers<Model>();
  for (std::size_t j = 0; j < w.size(); ++j)
    if (w[j] == layer) return j;
  return w.size();
}

template <class P>
struct is_pipeline : std::false_type {};
template <class... S>
struct is_pipeline<pipeline<S...>> : std::true_type {};

/// Calls f(stage, stage_state) for every stage of P (P itself when it is not a pipeline).
template <class P, class F>
void for_each_stage(const P& p, typename P::template state<float>& s, F&& f) {
  if constexpr (is_pipeline<P>::value) {
    [&]<std::size_t... I>(std::index_sequence<I...>) {
      (f(std::get<I>(p.stages), std::get<I>(s.stages)), ...);
    }(std::make_index_sequence<P::size>{});
  } else {
    f(p, s);
  }
}

template <class P>
constexpr bool has_stage_kind(stage_kind k) noexcept {
  if constexpr (is_pipeline<P>::value) {
    return []<class... S>(std::type_identity<pipeline<S...>>, stage_kind kk) {
      return ((S::kind == kk) || ...);
    }(std::type_identity<P>{}, k);
  } else {
    return P::kind == k;
  }
}

/// True for the activation-like layers that `compressed_network` runs on any width.
constexpr bool elementwise_kind(nn::layer_kind k) noexcept {
  return k == nn::layer_kind::relu || k == nn::layer_kind::relu6 || k == nn::layer_kind::flatten ||
         k == nn::layer_kind::dropout;
}
}  // namespace detail

/// What one weighted layer's compression currently is: the constraints that fine-tuning
/// keeps and encoding writes. Filled by `network_compressor::apply`.
struct layer_state {
  std::size_t layer = 0;   ///< index of the layer in the model
  std::size_t offset = 0;  ///< offset of its weights in the flat parameter array
  std::size_t rows = 0;    ///< outputs
  std::size_t cols = 0;    ///< inputs
  std::size_t biases = 0;
  std::vector<std::uint8_t> mask;      ///< one byte per weight, 1 = kept; empty = not pruned
  std::vector<std::size_t> kept_rows;  ///< structured pruning: kept output neurons; empty = all
  std::vector<float> centroids;        ///< weight sharing: the codebook; empty = not shared
  std::vector<std::uint8_t> labels;    ///< weight sharing: one codebook index per weight
  unsigned index_bits = 0;             ///< weight sharing: width of an index
  bool fixed_zero = false;             ///< centroid 0 is exactly 0 and stays so (pruned weights)
  bool entropy_coded = false;          ///< the policy ends with a Huffman stage
  low_rank_factors factors;            ///< low rank: the factors (rank 0 = not factored)

  bool pruned() const noexcept { return !mask.empty(); }
  bool shared() const noexcept { return !centroids.empty(); }
  bool factored() const noexcept { return factors.rank > 0; }
  /// Fraction of pruned weights (0 when not pruned).
  double sparsity() const noexcept { return mask_sparsity(mask); }
};

// ---------------------------------------------------------------------------
// Encoded form (bytes)
// ---------------------------------------------------------------------------

/// Storage form of an encoded layer.
enum class layer_form : std::uint8_t {
  dense,            ///< fp32 weights
  sparse,           ///< relative-index CSR, fp32 values
  sparse_codebook,  ///< relative-index CSR, codebook indices (Deep Compression)
  codebook,         ///< bit-packed (or Huffman-coded) codebook indices, every weight
  factored,         ///< two fp32 factors
};

/// One weighted layer as stored bytes (see the file comment for the layout).
struct encoded_layer {
  layer_form form = layer_form::dense;
  std::size_t layer = 0;           ///< index of the layer in the model
  std::size_t rows = 0, cols = 0;  ///< stored shape (after structured shrinking)
  std::size_t model_rows = 0, model_cols = 0;  ///< shape in the model type
  std::vector<std::uint32_t> kept_rows;  ///< when rows < model_rows: which outputs exist
  unsigned gap_bits = 0;       ///< sparse forms: width of a gap symbol
  unsigned index_bits = 0;     ///< codebook forms: width of an index symbol
  unsigned row_len_bits = 0;   ///< sparse forms: width of a stored row length
  bool huffman = false;        ///< gaps / indices are Huffman streams
  std::size_t entries = 0;     ///< sparse: stored entries (fillers included); codebook: rows·cols
  std::size_t fillers = 0;     ///< sparse: entries that only bridge long gaps
  std::size_t rank = 0;        ///< factored
  std::vector<std::uint8_t> row_lengths;  ///< bit-packed, row_len_bits each
  std::vector<std::uint8_t> gaps;         ///< bit-packed (gap_bits) or a Huffman stream
  std::vector<std::uint8_t> indices;      ///< bit-packed (index_bits) or a Huffman stream
  std::vector<float> values;              ///< dense weights, sparse values, or left then right factor
  std::vector<float> centroids;
  std::vector<float> bias;

  /// Bytes of the per-layer descriptor: form, bit widths (4 × u8), rows, cols, entries
  /// (3 × u32) — the kept-row list, when present, is counted separately (u16 each).
  static constexpr std::size_t descriptor_bytes = 16;

  /// Every byte of the layer: descriptor, kept-row list, streams, fp32 arrays.
  std::size_t bytes() const noexcept {
    return descriptor_bytes + 2 * kept_rows.size() + row_lengths.size() + gaps.size() + indices.size() +
           4 * (values.size() + centroids.size() + bias.size());
  }
  /// Bytes of the weights alone (everything but the biases and the descriptor).
  std::size_t weight_bytes() const noexcept { return bytes() - descriptor_bytes - 4 * bias.size(); }
  /// Non-zero weights the layer represents.
  std::size_t nonzeros() const noexcept {
    switch (form) {
      case layer_form::sparse:
      case layer_form::sparse_codebook: return entries - fillers;
      case layer_form::factored: return values.size();
      default: return rows * cols;
    }
  }
};

/// A whole model's weighted layers as bytes, in order.
struct encoded_network {
  std::vector<encoded_layer> layers;
  /// Every byte of every layer.
  std::size_t bytes() const noexcept {
    std::size_t b = 0;
    for (const auto& l : layers) b += l.bytes();
    return b;
  }
};

/// Which stages `encode` writes; by default the ones the policies contain.
struct encode_options {
  bool codebooks = true;  ///< store shared layers as codebook indices (else fp32 values)
  bool huffman = true;    ///< Huffman-code the streams of layers whose policy has a `huffman` stage
};

namespace detail {

inline unsigned bits_for(std::size_t v) noexcept {
  return std::max(1u, static_cast<unsigned>(std::bit_width(v)));
}

inline std::vector<std::uint8_t> pack(const std::vector<std::uint8_t>& v, unsigned bits) {
  std::vector<std::uint8_t> out(packed_size(v.size(), bits));
  raise_if_error(pack_bits(v.data(), v.size(), bits, out.data(), out.size()));
  return out;
}

inline std::vector<std::uint8_t> unpack(const std::vector<std::uint8_t>& packed, std::size_t n, unsigned bits) {
  std::vector<std::uint8_t> out(n);
  raise_if_error(unpack_bits(packed.data(), packed.size(), n, bits, out.data()));
  return out;
}

inline std::vector<std::uint8_t> unhuffman(const std::vector<std::uint8_t>& stream, std::size_t expected) {
  std::vector<std::uint8_t> out;
  raise_if_error(huffman_decode(stream, out));
  TINYLARGE_REQUIRE(out.size() == expected, errc::corrupt, "compressed layer: stream length disagrees with the descriptor");
  return out;
}

/// Relative-index CSR of the positions kept by `keep(r, c)` with gaps of `gap_bits`:
/// gaps, row lengths and, per entry, the flat position (SIZE_MAX for a filler).
struct csr_layout {
  std::vector<std::uint8_t> gaps;
  std::vector<std::size_t> row_len;
  std::vector<std::size_t> position;
  std::size_t fillers = 0;
};

template <class Keep>
csr_layout layout_csr(std::size_t rows, std::size_t cols, unsigned gap_bits, Keep keep) {
  csr_layout l;
  l.row_len.assign(rows, 0);
  const std::size_t max_gap = (std::size_t{1} << gap_bits) - 1;
  for (std::size_t r = 0; r < rows; ++r) {
    std::size_t next = 0;
    for (std::size_t c = 0; c < cols; ++c) {
      if (!keep(r, c)) continue;
      std::size_t gap = c - next;
      while (gap > max_gap) {
        l.gaps.push_back(static_cast<std::uint8_t>(max_gap));
        l.position.push_back(std::numeric_limits<std::size_t>::max());
        ++l.fillers;
        ++l.row_len[r];
        gap -= max_gap + 1;
      }
      l.gaps.push_back(static_cast<std::uint8_t>(gap));
      l.position.push_back(r * cols + c);
      ++l.row_len[r];
      next = c + 1;
    }
  }
  return l;
}

/// Encodes a sparse layer (fp32 values, or codebook indices when `labels` is not null),
/// choosing the gap width that minimises the bytes.
inline void encode_sparse(encoded_layer& e, const std::vector<float>& w, const std::vector<std::uint8_t>& keep_mask,
                          const std::vector<std::uint8_t>* labels, const std::vector<float>* centroids, bool huff) {
  std::size_t best = std::numeric_limits<std::size_t>::max();
  encoded_layer chosen;
  for (unsigned g = 1; g <= 8; ++g) {
    encoded_layer trial;
    const csr_layout l =
        layout_csr(e.rows, e.cols, g, [&](std::size_t r, std::size_t c) { return keep_mask[r * e.cols + c] != 0; });
    if (labels != nullptr && l.fillers > 0 && (*centroids)[0] != 0.0f) continue;  // fillers need centroid 0 = 0
    trial = e;
    trial.form = labels ? layer_form::sparse_codebook : layer_form::sparse;
    trial.gap_bits = g;
    trial.huffman = huff;
    trial.entries = l.gaps.size();
    trial.fillers = l.fillers;
    std::size_t max_len = 0;
    for (std::size_t n : l.row_len) max_len = std::max(max_len, n);
    trial.row_len_bits = bits_for(max_len);
    TINYLARGE_REQUIRE(trial.row_len_bits <= 32, errc::too_large, "encode: row too long");
    {
      // Bit-pack the row lengths (width may exceed 8 bits: pack LSB first by hand).
      const std::size_t nbits = l.row_len.size() * trial.row_len_bits;
      trial.row_lengths.assign((nbits + 7) / 8, 0);
      std::size_t bit = 0;
      for (std::size_t n : l.row_len)
        for (unsigned b = 0; b < trial.row_len_bits; ++b, ++bit)
          if ((n >> b) & 1u) trial.row_lengths[bit / 8] = static_cast<std::uint8_t>(trial.row_lengths[bit / 8] | (1u << (bit % 8)));
    }
    trial.gaps = huff ? huffman_encode(l.gaps, std::size_t{1} << g) : pack(l.gaps, g);
    if (labels) {
      std::vector<std::uint8_t> idx(l.position.size());
      for (std::size_t i = 0; i < idx.size(); ++i)
        idx[i] = l.position[i] == std::numeric_limits<std::size_t>::max() ? std::uint8_t{0} : (*labels)[l.position[i]];
      trial.indices = huff ? huffman_encode(idx, std::size_t{1} << e.index_bits) : pack(idx, e.index_bits);
      trial.centroids = *centroids;
    } else {
      trial.values.resize(l.position.size());
      for (std::size_t i = 0; i < l.position.size(); ++i)
        trial.values[i] = l.position[i] == std::numeric_limits<std::size_t>::max() ? 0.0f : w[l.position[i]];
    }
    if (trial.bytes() < best) {
      best = trial.bytes();
      chosen = std::move(trial);
    }
  }
  TINYLARGE_REQUIRE(best != std::numeric_limits<std::size_t>::max(), errc::invalid_argument,
                    "encode: a sparse shared layer needs centroid 0 == 0 (weight_sharing::reserve_zero)");
  e = std::move(chosen);
}

/// Reads the bit-packed row lengths of a sparse layer into CSR row offsets.
inline std::vector<std::uint32_t> row_offsets(const encoded_layer& e) {
  TINYLARGE_REQUIRE(e.row_len_bits >= 1 && e.row_len_bits <= 32, errc::corrupt, "compressed layer: bad row width");
  TINYLARGE_REQUIRE(e.row_lengths.size() * 8 >= e.rows * e.row_len_bits, errc::truncated,
                    "compressed layer: row lengths truncated");
  std::vector<std::uint32_t> ptr(e.rows + 1, 0);
  std::size_t bit = 0;
  std::uint64_t total = 0;
  for (std::size_t r = 0; r < e.rows; ++r) {
    std::uint64_t n = 0;
    for (unsigned b = 0; b < e.row_len_bits; ++b, ++bit) n |= std::uint64_t{(e.row_lengths[bit / 8] >> (bit % 8)) & 1u} << b;
    total += n;
    TINYLARGE_REQUIRE(total <= e.entries, errc::corrupt, "compressed layer: row lengths exceed the entries");
    ptr[r + 1] = static_cast<std::uint32_t>(total);
  }
  TINYLARGE_REQUIRE(total == e.entries, errc::corrupt, "compressed layer: row lengths disagree with the entries");
  return ptr;
}

}  // namespace detail

// ---------------------------------------------------------------------------
// The compressor
// ---------------------------------------------------------------------------

/// Per-layer compression of a `sequential` model (see the file comment).
/// @tparam Model a `sequential<...>` type
/// @tparam P one `compression_policy` per weighted layer (dense / conv), in model order;
///         `none` leaves a layer dense
template <nn::sequential_model Model, compression_policy... P>
class network_compressor {
 public:
  using model = Model;
  static constexpr auto weighted = detail::weighted_layers<Model>();
  /// Number of weighted layers (= number of policies).
  static constexpr std::size_t layer_count = weighted.size();
  static_assert(sizeof...(P) == layer_count,
                "compress::network_compressor<Model, P...>: give exactly one compression policy per weighted "
                "layer (dense / conv), in model order; use compress::none for a layer left dense");
  static_assert([] {
    bool any = false;
    Model::for_each_layer([&]<std::size_t I>() { any = any || nn::fp32_only(Model::template layer<I>::kind); });
    return !any;
  }(), "compress::network_compressor<Model, P...>: the layers of nn/transformer.hpp "
       "are not supported by the compression pipeline yet");

  network_compressor() { init_records(); }
  /// The policies, with their hyperparameters.
  explicit network_compressor(P... policies) : policies_(std::move(policies)...) { init_records(); }

  /// The policy of weighted layer J (mutable: set its hyperparameters before `apply`).
  template <std::size_t J>
  auto& policy() noexcept {
    return std::get<J>(policies_);
  }
  template <std::size_t J>
  const auto& policy() const noexcept {
    return std::get<J>(policies_);
  }
  /// The state of weighted layer J's policy (masks, codebook, factors as the stage left them).
  template <std::size_t J>
  auto& policy_state() noexcept {
    return std::get<J>(states_);
  }

  /// The current compression of weighted layer j.
  const layer_state& layer(std::size_t j) const { return records_.at(j); }
  layer_state& layer(std::size_t j) { return records_.at(j); }

  /// True when weighted layer J's policy has a stage of kind k.
  template <std::size_t J>
  static constexpr bool has_stage(stage_kind k) noexcept {
    return detail::has_stage_kind<std::tuple_element_t<J, std::tuple<P...>>>(k);
  }

  /// Runs, on every weighted layer, the stages of kind `kind` of its policy on the fp32
  /// weights of `net`, and records masks, codebooks and factors.
  template <class Storage>
  void apply(nn::network<Model, Storage>& net, stage_kind kind) {
    apply_impl(net.parameters().data(), [kind](stage_kind k) { return k == kind; });
  }
  /// Runs every stage of every policy, in order (one-shot compression without fine-tuning).
  template <class Storage>
  void apply_all(nn::network<Model, Storage>& net) {
    apply_impl(net.parameters().data(), [](stage_kind) { return true; });
  }

  /// During `fine_tuning`, let pruning stages that have a schedule (`magnitude_prune::step`)
  /// recompute their masks at the schedule's steps (gradual pruning, Zhu & Gupta 2017).
  /// The training-step counter runs across `fit` calls; `reset_step` restarts it.
  bool gradual_pruning = false;
  std::int64_t training_step() const noexcept { return step_; }
  void reset_step(std::int64_t s = 0) noexcept { step_ = s; }

  /// Starts gradual pruning: initialises the masks to "keep all" on layers with a pruning
  /// stage that has a schedule, sets `gradual_pruning` and restarts the step counter.
  void begin_gradual_pruning() {
    for_each_layer_policy([&]<std::size_t J>(auto& p, auto& s) {
      detail::for_each_stage(p, s, [&](const auto& stage, auto& st) {
        if constexpr (requires { stage.step(st, matrix_ref<float>{}, std::int64_t{}); }) {
          layer_state& r = records_[J];
          st.mask.assign(r.rows * r.cols, std::uint8_t{1});
          r.mask = st.mask;
        }
      });
    });
    gradual_pruning = true;
    step_ = 0;
  }

  /// Zeroes the gradients of pruned weights and of the biases of removed neurons (`grads` is
  /// the flat gradient array).
  void mask_gradients(float* grads) const noexcept {
    for (const layer_state& r : records_) {
      if (!r.pruned()) continue;
      float* g = grads + r.offset;
      for (std::size_t i = 0; i < r.mask.size(); ++i)
        if (r.mask[i] == 0) g[i] = 0.0f;
      zero_removed_biases(grads, r);
    }
  }

  /// After an optimiser step on `params`: advances gradual pruning, re-applies the masks,
  /// and for shared layers calls `update_centroids(j, centroids, centroid_gradients)` and
  /// snaps the weights to the updated codebook.
  template <class CentroidUpdate>
  void after_step(float* params, const float* grads, CentroidUpdate&& update_centroids) {
    if (gradual_pruning) {
      for_each_layer_policy([&]<std::size_t J>(auto& p, auto& s) {
        detail::for_each_stage(p, s, [&](const auto& stage, auto& st) {
          if constexpr (requires { stage.step(st, matrix_ref<float>{}, std::int64_t{}); }) {
            layer_state& r = records_[J];
            stage.step(st, matrix_ref<float>{params + r.offset, r.rows, r.cols}, step_);
            r.mask = st.mask;
          }
        });
      });
    }
    ++step_;
    std::vector<float> cg;
    for (std::size_t j = 0; j < records_.size(); ++j) {
      layer_state& r = records_[j];
      const std::span<float> w(params + r.offset, r.rows * r.cols);
      if (r.pruned()) apply_mask(w, r.mask);
      zero_removed_biases(params, r);
      if (r.shared()) {
        cg.assign(r.centroids.size(), 0.0f);
        centroid_gradients(r.labels, std::span<const float>(grads + r.offset, w.size()), cg);
        if (r.fixed_zero) cg[0] = 0.0f;
        update_centroids(j, std::span<float>(r.centroids), std::span<const float>(cg));
        if (r.fixed_zero) r.centroids[0] = 0.0f;
        snap_to_centroids(r.labels, r.centroids, w);
      }
    }
  }

  /// Fraction of the weights of all weighted layers that are pruned.
  double sparsity() const noexcept {
    std::size_t zeros = 0, total = 0;
    for (const layer_state& r : records_) {
      total += r.rows * r.cols;
      for (auto m : r.mask) zeros += m == 0;
      if (!r.pruned() && !r.kept_rows.empty()) zeros += (r.rows - r.kept_rows.size()) * r.cols;
    }
    return total ? static_cast<double>(zeros) / static_cast<double>(total) : 0.0;
  }

  /// Encodes the weighted layers of `net` as bytes (see the file comment): each layer in the
  /// form its recorded constraints allow, limited by `opt`. Structured pruning shrinks the
  /// stored shapes (kept rows, and the matching columns of the next weighted layer).
  template <class Storage>
  encoded_network encode(const nn::network<Model, Storage>& net, const encode_options& opt = {}) const {
    static_assert(all_dense(), "compress::network_compressor::encode: only dense weighted layers have an encoded "
                               "form so far (convolutions compress and fine-tune, but are not encoded)");
    const float* params = net.parameters().data();
    encoded_network out;
    std::vector<std::size_t> prev_kept;  // kept outputs of the previous weighted layer (empty: all)
    for (std::size_t j = 0; j < records_.size(); ++j) {
      const layer_state& r = records_[j];
      encoded_layer e;
      e.layer = r.layer;
      e.model_rows = r.rows;
      e.model_cols = r.cols;
      std::vector<std::size_t> rows_kept = r.kept_rows, cols_kept = prev_kept;
      if (rows_kept.empty()) {
        rows_kept.resize(r.rows);
        for (std::size_t i = 0; i < r.rows; ++i) rows_kept[i] = i;
      }
      if (cols_kept.empty()) {
        cols_kept.resize(r.cols);
        for (std::size_t i = 0; i < r.cols; ++i) cols_kept[i] = i;
      }
      TINYLARGE_REQUIRE(rows_kept.size() < 65536 || rows_kept.size() == r.rows, errc::too_large,
                        "encode: kept-row lists are stored as u16");
      if (rows_kept.size() != r.rows)
        for (std::size_t k : rows_kept) e.kept_rows.push_back(static_cast<std::uint32_t>(k));
      e.rows = rows_kept.size();
      e.cols = cols_kept.size();
      // Gather the stored sub-matrix (and mask / labels) in the stored shape.
      std::vector<float> w(e.rows * e.cols);
      std::vector<std::uint8_t> mask, labels;
      if (r.pruned()) mask.resize(w.size());
      if (r.shared()) labels.resize(w.size());
      for (std::size_t a = 0; a < e.rows; ++a)
        for (std::size_t b = 0; b < e.cols; ++b) {
          const std::size_t src = rows_kept[a] * r.cols + cols_kept[b];
          w[a * e.cols + b] = params[r.offset + src];
          if (r.pruned()) mask[a * e.cols + b] = r.mask[src];
          if (r.shared()) labels[a * e.cols + b] = r.labels[src];
        }
      e.bias.resize(e.rows);
      for (std::size_t a = 0; a < e.rows; ++a) e.bias[a] = params[r.offset + r.rows * r.cols + rows_kept[a]];
      const bool huff = opt.huffman && r.entropy_coded;
      const bool shared = opt.codebooks && r.shared();
      e.index_bits = shared ? r.index_bits : 0;
      const bool sparse = r.pruned() && !structured_only(r);
      if (r.factored() && e.rows == r.rows && e.cols == r.cols) {
        e.form = layer_form::factored;
        e.rank = r.factors.rank;
        e.values = r.factors.left;
        e.values.insert(e.values.end(), r.factors.right.begin(), r.factors.right.end());
      } else if (sparse) {
        detail::encode_sparse(e, w, mask, shared ? &labels : nullptr, shared ? &r.centroids : nullptr, huff);
      } else if (shared) {
        e.form = layer_form::codebook;
        e.huffman = huff;
        e.entries = w.size();
        e.indices = huff ? huffman_encode(labels, std::size_t{1} << e.index_bits) : detail::pack(labels, e.index_bits);
        e.centroids = r.centroids;
      } else {
        e.form = layer_form::dense;
        e.values = std::move(w);
      }
      out.layers.push_back(std::move(e));
      prev_kept = r.kept_rows;
    }
    return out;
  }

 private:
  template <class F>
  void for_each_layer_policy(F&& f) {
    [&]<std::size_t... J>(std::index_sequence<J...>) {
      (f.template operator()<J>(std::get<J>(policies_), std::get<J>(states_)), ...);
    }(std::make_index_sequence<layer_count>{});
  }

  static constexpr bool all_dense() noexcept {
    bool ok = true;
    Model::for_each_layer([&]<std::size_t I>() {
      using L = typename Model::template layer<I>;
      if (L::weight_count > 0 && L::kind != nn::layer_kind::dense) ok = false;
    });
    return ok;
  }

  /// A mask that only removes whole rows that structured pruning records (the layer is
  /// stored shrunk and dense, not sparse).
  static bool structured_only(const layer_state& r) noexcept {
    if (r.kept_rows.empty()) return false;
    std::vector<std::uint8_t> row_kept(r.rows, 0);
    for (std::size_t k : r.kept_rows) row_kept[k] = 1;
    for (std::size_t i = 0; i < r.mask.size(); ++i)
      if (r.mask[i] != row_kept[i / r.cols]) return false;
    return true;
  }

  void init_records() {
    records_.resize(layer_count);
    Model::for_each_layer([&]<std::size_t I>() {
      using L = typename Model::template layer<I>;
      if constexpr (L::weight_count > 0) {
        constexpr std::size_t j = detail::weighted_position<Model>(I);
        layer_state& r = records_[j];
        r.layer = I;
        r.offset = Model::template param_offset<I>;
        r.rows = L::out_channels;
        r.cols = L::weight_count / L::out_channels;
        r.biases = L::bias_count;
        r.entropy_coded = has_stage<j>(stage_kind::entropy_coding);
      }
    });
  }

  template <class Select>
  void apply_impl(float* params, Select select) {
    for_each_layer_policy([&]<std::size_t J>(auto& p, auto& s) {
      layer_state& r = records_[J];
      const matrix_ref<float> w{params + r.offset, r.rows, r.cols};
      detail::for_each_stage(p, s, [&](const auto& stage, auto& st) {
        using S = std::remove_cvref_t<decltype(stage)>;
        if (!select(S::kind)) return;
        stage.apply(st, w);
        if constexpr (requires { st.mask; }) r.mask = st.mask;
        if constexpr (requires { st.kept_rows; }) r.kept_rows = st.kept_rows;
        if constexpr (requires { st.centroids; st.labels; S::bits; }) {
          r.centroids = st.centroids;
          r.labels = st.labels;
          r.index_bits = S::bits;
          r.fixed_zero = false;
          if constexpr (requires { stage.reserve_zero; }) r.fixed_zero = stage.reserve_zero;
        }
        if constexpr (requires { st.factors; }) r.factors = st.factors;
      });
      zero_removed_biases(params, r);
    });
  }

  /// A removed neuron must output nothing: its bias is held at 0 like its weights.
  static void zero_removed_biases(float* params, const layer_state& r) noexcept {
    if (r.kept_rows.empty() || r.biases != r.rows) return;
    float* b = params + r.offset + r.rows * r.cols;
    std::size_t k = 0;
    for (std::size_t o = 0; o < r.rows; ++o) {
      if (k < r.kept_rows.size() && r.kept_rows[k] == o) {
        ++k;
        continue;
      }
      b[o] = 0.0f;
    }
  }

  std::tuple<P...> policies_{};
  std::tuple<typename P::template state<float>...> states_{};
  std::vector<layer_state> records_;
  std::int64_t step_ = 0;
};

// ---------------------------------------------------------------------------
// Fine-tuning with the constraints kept (an optimizer policy)
// ---------------------------------------------------------------------------

/// Optimizer policy that fine-tunes under a compressor's constraints (see the file
/// comment): masked gradients, masks re-applied, centroids trained with summed gradients.
/// Build it with `fine_tuning(inner, compressor)`; the compressor must outlive the training.
/// `learning_rate` is the starting rate `nn::fit` decays; it applies to the weights and
/// to the centroids.
/// @tparam Opt the inner `optimizer_policy` (`nn::sgd`, `nn::adam`)
/// @tparam Compressor a `network_compressor`
template <nn::optimizer_policy Opt, class Compressor>
struct constrained_optimizer {
  Opt inner{};
  Compressor* compressor = nullptr;
  float learning_rate = 0.0f;
  static constexpr const char* name() noexcept { return "compress::fine_tuning"; }

  template <class T>
  class state {
   public:
    state(const constrained_optimizer& o, std::size_t n) : c_(o.compressor), inner_(with_lr(o), n), g_(n) {
      TINYLARGE_REQUIRE(c_ != nullptr, errc::invalid_argument, "compress::fine_tuning: no compressor");
      for (std::size_t j = 0; j < Compressor::layer_count; ++j) {
        const layer_state& r = c_->layer(j);
        index_.push_back(r.shared() ? centroid_states_.size() : npos);
        if (r.shared()) centroid_states_.emplace_back(with_lr(o), r.centroids.size());
      }
    }
    void step(T* w, const T* grad) {
      std::copy(grad, grad + g_.size(), g_.begin());
      c_->mask_gradients(g_.data());
      inner_.step(w, g_.data());
      c_->after_step(w, g_.data(), [&](std::size_t j, std::span<float> centroids, std::span<const float> cg) {
        TINYLARGE_REQUIRE(index_[j] != npos, errc::invalid_argument,
                          "compress::fine_tuning: a layer became shared after the optimizer state was made");
        centroid_states_[index_[j]].step(centroids.data(), cg.data());
      });
    }
    void set_learning_rate(float lr) {
      inner_.set_learning_rate(lr);
      for (auto& s : centroid_states_) s.set_learning_rate(lr);
    }

   private:
    static constexpr std::size_t npos = std::numeric_limits<std::size_t>::max();
    static Opt with_lr(const constrained_optimizer& o) {
      Opt x = o.inner;
      x.learning_rate = o.learning_rate;
      return x;
    }
    Compressor* c_;
    typename Opt::template state<T> inner_;
    std::vector<T> g_;
    std::vector<std::size_t> index_;
    std::vector<typename Opt::template state<T>> centroid_states_;
  };
};

/// `constrained_optimizer` from an inner optimizer and a compressor (see the file comment).
template <nn::optimizer_policy Opt, class Compressor>
constrained_optimizer<Opt, Compressor> fine_tuning(const Opt& inner, Compressor& compressor) {
  return {inner, &compressor, inner.learning_rate};
}

// ---------------------------------------------------------------------------
// Structured shrinking into a smaller model type
// ---------------------------------------------------------------------------

/// Builds `network<Small>` from `net` and the rows that `structured_prune` kept: layer J of
/// `Small` gets the kept rows of layer J of `Model` and, as inputs, the kept outputs of the
/// previous weighted layer. `Small` must have the same layer kinds, with dense widths equal
/// to the kept counts (checked; a mismatch throws `shape_mismatch` naming the layer).
template <nn::sequential_model Small, nn::sequential_model Model, class Storage, compression_policy... P>
nn::network<Small> shrink(const nn::network<Model, Storage>& net, const network_compressor<Model, P...>& c) {
  static_assert(Small::size == Model::size, "compress::shrink: the small model must have the same layers");
  nn::network<Small> out;
  std::vector<std::size_t> prev_kept;
  Model::for_each_layer([&]<std::size_t I>() {
    using L = typename Model::template layer<I>;
    using S = typename Small::template layer<I>;
    static_assert(L::kind == S::kind, "compress::shrink: layer kinds differ between the models");
    if constexpr (L::weight_count > 0) {
      static_assert(L::kind == nn::layer_kind::dense, "compress::shrink: only dense layers shrink so far");
      const layer_state& r = c.layer(detail::weighted_position<Model>(I));
      std::vector<std::size_t> rows = r.kept_rows, cols = prev_kept;
      if (rows.empty())
        for (std::size_t i = 0; i < r.rows; ++i) rows.push_back(i);
      if (cols.empty())
        for (std::size_t i = 0; i < r.cols; ++i) cols.push_back(i);
      TINYLARGE_REQUIRE(rows.size() == S::out_channels && rows.size() * cols.size() == S::weight_count,
                        errc::shape_mismatch,
                        "compress::shrink: a dense layer of the small model does not have the kept rows × kept "
                        "inputs of the pruned one");
      const float* src = net.parameters().data() + Model::template param_offset<I>;
      float* dst = out.parameters().data() + Small::template param_offset<I>;
      for (std::size_t a = 0; a < rows.size(); ++a) {
        for (std::size_t b = 0; b < cols.size(); ++b) dst[a * cols.size() + b] = src[rows[a] * r.cols + cols[b]];
        dst[S::weight_count + a] = src[L::weight_count + rows[a]];
      }
      prev_kept = r.kept_rows;
    }
  });
  return out;
}

/// Builds `network<Factored>` from `net` and the truncated-SVD factors that `low_rank` left
/// in `c`: every factored layer W ≈ L·R (out×r, r×in) of `Model` becomes two consecutive
/// dense layers of `Factored` — `dense<in, r>` holding R with zero bias, then `dense<r, out>`
/// holding L and W's bias — and every other layer is copied. Fine-tuning the result with
/// `nn::fit` is low-rank fine-tuning: the product stays of rank ≤ r, and the first layer's
/// bias c folds into the second's (L·(R·x + c) + b = L·R·x + (L·c + b)).
/// Shapes are checked (`shape_mismatch`).
template <nn::sequential_model Factored, nn::sequential_model Model, class Storage, compression_policy... P>
nn::network<Factored> factorize(const nn::network<Model, Storage>& net, const network_compressor<Model, P...>& c) {
  nn::network<Factored> out;
  constexpr std::size_t layers = sizeof...(P);
  std::size_t j = 0;
  bool second_half = false;
  Factored::for_each_layer([&]<std::size_t K>() {
    using F = typename Factored::template layer<K>;
    if constexpr (F::weight_count > 0) {
      static_assert(F::kind == nn::layer_kind::dense, "compress::factorize: only dense layers factorize so far");
      TINYLARGE_REQUIRE(j < layers, errc::shape_mismatch,
                        "compress::factorize: the factored model has more dense layers than expected");
      const layer_state& r = c.layer(j);
      const float* src = net.parameters().data() + r.offset;
      float* dst = out.parameters().data() + Factored::template param_offset<K>;
      constexpr std::size_t rows = F::out_channels, cols = F::weight_count / F::out_channels;
      if (r.factored() && !second_half) {
        TINYLARGE_REQUIRE(rows == r.factors.rank && cols == r.cols, errc::shape_mismatch,
                          "compress::factorize: the first half of a factored layer must be dense<in, rank>");
        std::copy(r.factors.right.begin(), r.factors.right.end(), dst);
        std::fill(dst + F::weight_count, dst + F::param_count, 0.0f);
        second_half = true;
      } else if (r.factored()) {
        TINYLARGE_REQUIRE(rows == r.rows && cols == r.factors.rank, errc::shape_mismatch,
                          "compress::factorize: the second half of a factored layer must be dense<rank, out>");
        std::copy(r.factors.left.begin(), r.factors.left.end(), dst);
        std::copy(src + r.rows * r.cols, src + r.rows * r.cols + r.biases, dst + F::weight_count);
        second_half = false;
        ++j;
      } else {
        TINYLARGE_REQUIRE(rows == r.rows && cols == r.cols, errc::shape_mismatch,
                          "compress::factorize: a layer that is not factored must keep its shape");
        std::copy(src, src + r.rows * r.cols + r.biases, dst);
        ++j;
      }
    }
  });
  TINYLARGE_REQUIRE(j == layers && !second_half, errc::shape_mismatch,
                    "compress::factorize: the factored model has fewer dense layers than expected");
  return out;
}

// ---------------------------------------------------------------------------
// Inference on the compressed forms
// ---------------------------------------------------------------------------

/// Inference of a whole model on its encoded layers (see the file comment). Built from an
/// `encoded_network` (which it checks: malformed streams throw `tinylarge::error`).
/// @tparam Model the `sequential` model the layers came from (dense weighted layers)
template <nn::sequential_model Model>
class compressed_network {
 public:
  static constexpr auto weighted = detail::weighted_layers<Model>();

  explicit compressed_network(const encoded_network& e) {
    TINYLARGE_REQUIRE(e.layers.size() == weighted.size(), errc::shape_mismatch,
                      "compressed_network: one encoded layer per weighted layer is required");
    layers_.resize(e.layers.size());
    std::size_t width = Model::input_size;
    max_width_ = width;
    for (std::size_t j = 0; j < e.layers.size(); ++j) {
      const encoded_layer& s = e.layers[j];
      TINYLARGE_REQUIRE(s.layer == weighted[j], errc::shape_mismatch, "compressed_network: layer order differs");
      TINYLARGE_REQUIRE(s.cols == width, errc::shape_mismatch,
                        "compressed_network: a layer's inputs differ from the previous layer's outputs");
      TINYLARGE_REQUIRE(s.bias.size() == s.rows, errc::corrupt, "compressed_network: one bias per output");
      layer& l = layers_[j];
      l.form = s.form;
      l.rows = s.rows;
      l.cols = s.cols;
      l.bias = s.bias;
      l.kept_rows = s.kept_rows;
      switch (s.form) {
        case layer_form::dense:
          TINYLARGE_REQUIRE(s.values.size() == s.rows * s.cols, errc::corrupt, "compressed_network: dense size");
          l.dense = s.values;
          break;
        case layer_form::factored:
          TINYLARGE_REQUIRE(s.rank >= 1 && s.values.size() == s.rank * (s.rows + s.cols), errc::corrupt,
                            "compressed_network: factor sizes");
          l.factors.rows = s.rows;
          l.factors.cols = s.cols;
          l.factors.rank = s.rank;
          l.factors.left.assign(s.values.begin(), s.values.begin() + static_cast<std::ptrdiff_t>(s.rank * s.rows));
          l.factors.right.assign(s.values.begin() + static_cast<std::ptrdiff_t>(s.rank * s.rows), s.values.end());
          scratch_ = std::max(scratch_, s.rank);
          break;
        case layer_form::codebook: {
          TINYLARGE_REQUIRE(s.index_bits >= 1 && s.index_bits <= 8, errc::corrupt, "compressed_network: index bits");
          const std::vector<std::uint8_t> idx = s.huffman ? detail::unhuffman(s.indices, s.rows * s.cols)
                                                          : detail::unpack(s.indices, s.rows * s.cols, s.index_bits);
          l.codebook = to_codebook_matrix(s.rows, s.cols, idx, s.centroids, s.index_bits);
          raise_if_error(validate(l.codebook.view()));
          break;
        }
        case layer_form::sparse:
        case layer_form::sparse_codebook: {
          TINYLARGE_REQUIRE(s.gap_bits >= 1 && s.gap_bits <= 8, errc::corrupt, "compressed_network: gap bits");
          auto fill = [&](auto& csr) {
            csr.rows = s.rows;
            csr.cols = s.cols;
            csr.gap_bits = s.gap_bits;
            csr.row_ptr = detail::row_offsets(s);
            csr.gaps = s.huffman ? detail::unhuffman(s.gaps, s.entries) : detail::unpack(s.gaps, s.entries, s.gap_bits);
            csr.fillers = s.fillers;
          };
          if (s.form == layer_form::sparse) {
            fill(l.csr);
            TINYLARGE_REQUIRE(s.values.size() == s.entries, errc::corrupt, "compressed_network: sparse values");
            l.csr.values = s.values;
            raise_if_error(validate(l.csr.view()));
          } else {
            TINYLARGE_REQUIRE(s.index_bits >= 1 && s.index_bits <= 8 && !s.centroids.empty() &&
                                  s.centroids.size() <= (std::size_t{1} << s.index_bits),
                              errc::corrupt, "compressed_network: codebook");
            fill(l.csr_codebook);
            l.csr_codebook.values = s.huffman ? detail::unhuffman(s.indices, s.entries)
                                              : detail::unpack(s.indices, s.entries, s.index_bits);
            l.csr_codebook.centroids = s.centroids;
            raise_if_error(validate(l.csr_codebook.view()));
          }
          break;
        }
      }
      width = s.rows;
      max_width_ = std::max(max_width_, width);
    }
    TINYLARGE_REQUIRE(width == Model::output_size, errc::shape_mismatch,
                      "compressed_network: the last layer must keep every output");
    // Only elementwise layers may sit between shrunk layers.
    Model::for_each_layer([&]<std::size_t I>() {
      using L = typename Model::template layer<I>;
      if constexpr (L::weight_count == 0) {
        static_assert(detail::elementwise_kind(L::kind) || L::kind == nn::layer_kind::softmax ||
                          L::kind == nn::layer_kind::sigmoid || L::kind == nn::layer_kind::tanh,
                      "compressed_network: only dense layers and activations (relu, relu6, sigmoid, tanh, softmax, "
                      "flatten, dropout) are supported");
      } else {
        static_assert(L::kind == nn::layer_kind::dense,
                      "compressed_network: only dense weighted layers have compressed inference forms so far");
      }
    });
  }

  /// Runs `batch` samples (row-major batch × input_size).
  /// @return batch × output_size outputs, valid until the next call
  const float* forward(const float* x, std::size_t batch) {
    TINYLARGE_REQUIRE(batch > 0, errc::invalid_argument, "compressed_network::forward: batch must be positive");
    buf_[0].resize(batch * max_width_);
    buf_[1].resize(batch * max_width_);
    scratch_buf_.resize(batch * std::max<std::size_t>(scratch_, 1));
    std::copy(x, x + batch * Model::input_size, buf_[0].begin());
    std::size_t cur = 0, width = Model::input_size;
    Model::for_each_layer([&]<std::size_t I>() {
      using L = typename Model::template layer<I>;
      float* in = buf_[cur].data();
      if constexpr (L::weight_count > 0) {
        const layer& l = layers_[detail::weighted_position<Model>(I)];
        float* out = buf_[1 - cur].data();
        run(l, batch, in, out);
        cur = 1 - cur;
        width = l.rows;
      } else if constexpr (detail::elementwise_kind(L::kind)) {
        if constexpr (L::kind == nn::layer_kind::relu || L::kind == nn::layer_kind::relu6) {
          for (std::size_t i = 0; i < batch * width; ++i) {
            float v = in[i] > 0.0f ? in[i] : 0.0f;
            if constexpr (L::kind == nn::layer_kind::relu6) v = v < 6.0f ? v : 6.0f;
            in[i] = v;
          }
        }
      } else {
        TINYLARGE_REQUIRE(width == L::in_shape::size, errc::shape_mismatch,
                          "compressed_network: sigmoid / tanh / softmax after a shrunk layer is not supported");
        nn::context ctx{nullptr, nullptr, nullptr, false};
        L::forward(nullptr, in, buf_[1 - cur].data(), batch, ctx);
        cur = 1 - cur;
      }
    });
    return buf_[cur].data();
  }

  /// Class of one sample (argmax of the output).
  std::size_t classify(const float* x) {
    const float* y = forward(x, 1);
    std::size_t a = 0;
    for (std::size_t i = 1; i < Model::output_size; ++i) a = y[i] > y[a] ? i : a;
    return a;
  }

  /// Weighted layer j decoded to a dense model_rows×model_cols matrix and its biases
  /// (removed rows and columns are 0): the reference that dense inference runs on.
  void decode_dense(std::size_t j, std::size_t model_rows, std::size_t model_cols, std::span<const std::uint32_t> in_kept,
                    float* w, float* b) const {
    const layer& l = layers_.at(j);
    std::vector<float> d(l.rows * l.cols, 0.0f);
    switch (l.form) {
      case layer_form::dense: d = l.dense; break;
      case layer_form::factored: reconstruct(l.factors, d.data()); break;
      case layer_form::sparse: to_dense(l.csr.view(), d.data()); break;
      case layer_form::sparse_codebook: to_dense(l.csr_codebook.view(), d.data()); break;
      case layer_form::codebook: {
        const auto v = l.codebook.view();
        for (std::size_t i = 0; i < l.rows * l.cols; ++i) d[i] = v.centroids[packed_get(v.packed, i, v.bits)];
        break;
      }
    }
    std::fill(w, w + model_rows * model_cols, 0.0f);
    std::fill(b, b + model_rows, 0.0f);
    for (std::size_t a = 0; a < l.rows; ++a) {
      const std::size_t row = l.kept_rows.empty() ? a : l.kept_rows[a];
      b[row] = l.bias[a];
      for (std::size_t c = 0; c < l.cols; ++c) w[row * model_cols + (in_kept.empty() ? c : in_kept[c])] = d[a * l.cols + c];
    }
  }

  /// Weights and biases of every layer decoded into an fp32 `network` (the reference).
  template <class Storage = nn::heap_storage>
  void decode_into(nn::network<Model, Storage>& net) const {
    std::vector<std::uint32_t> prev;
    Model::for_each_layer([&]<std::size_t I>() {
      using L = typename Model::template layer<I>;
      if constexpr (L::weight_count > 0) {
        const std::size_t j = detail::weighted_position<Model>(I);
        float* p = net.parameters().data() + Model::template param_offset<I>;
        decode_dense(j, L::out_channels, L::weight_count / L::out_channels, prev, p, p + L::weight_count);
        prev = layers_[j].kept_rows;
      }
    });
  }

  /// Stored form of weighted layer j.
  layer_form form(std::size_t j) const { return layers_.at(j).form; }
  /// Stored (possibly shrunk) shape and biases of weighted layer j.
  std::size_t rows(std::size_t j) const { return layers_.at(j).rows; }
  std::size_t cols(std::size_t j) const { return layers_.at(j).cols; }
  const std::vector<float>& bias(std::size_t j) const { return layers_.at(j).bias; }
  /// The decoded inference forms of weighted layer j (the one that `form(j)` names is
  /// filled; e.g. to hand them to compress/model_file.hpp's builder).
  const std::vector<float>& dense_weights(std::size_t j) const { return layers_.at(j).dense; }
  const relative_csr<float>& csr(std::size_t j) const { return layers_.at(j).csr; }
  const relative_csr<std::uint8_t>& csr_codebook(std::size_t j) const { return layers_.at(j).csr_codebook; }
  const codebook_matrix& codebook(std::size_t j) const { return layers_.at(j).codebook; }
  const low_rank_factors& factors(std::size_t j) const { return layers_.at(j).factors; }

 private:
  struct layer {
    layer_form form = layer_form::dense;
    std::size_t rows = 0, cols = 0;
    std::vector<float> dense, bias;
    std::vector<std::uint32_t> kept_rows;
    relative_csr<float> csr;
    relative_csr<std::uint8_t> csr_codebook;
    codebook_matrix codebook;
    low_rank_factors factors;
  };

  void run(const layer& l, std::size_t m, const float* x, float* y) {
    switch (l.form) {
      case layer_form::dense:
        kernels::dense_f32(kernels::default_backend{}, m, l.rows, l.cols, x, l.dense.data(), l.bias.data(), y);
        break;
      case layer_form::sparse: sparse_dense_f32(m, l.csr.view(), x, l.bias.data(), y); break;
      case layer_form::sparse_codebook: sparse_dense_f32(m, l.csr_codebook.view(), x, l.bias.data(), y); break;
      case layer_form::codebook: codebook_dense_f32(arch::scalar{}, m, l.codebook.view(), x, l.bias.data(), y); break;
      case layer_form::factored:
        factored_dense_f32(kernels::default_backend{}, m, view(l.factors), x, l.bias.data(), scratch_buf_.data(), y);
        break;
    }
  }

  std::vector<layer> layers_;
  std::array<std::vector<float>, 2> buf_;
  std::vector<float> scratch_buf_;
  std::size_t max_width_ = 0, scratch_ = 0;
};

}  // namespace tinylarge::compress
