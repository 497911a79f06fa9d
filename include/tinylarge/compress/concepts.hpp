/// @file compress/concepts.hpp
/// @brief The compression axis: how a layer's parameters are represented.
///
/// Available policies (one header each; `compress/pipeline.hpp` includes them all):
///  - `none`                     — dense fp32, untouched. The trivial member: read it as the
///                                 documentation of the interface.
///  - `magnitude_prune<Schedule>` — unstructured pruning of the smallest |w| (compress/pruning.hpp);
///                                 produces a sparse matrix (CSR with relative column indices).
///  - `structured_prune<Norm>`   — removes whole rows (output neurons) by L1/L2 norm; the layer
///                                 really shrinks (compress/pruning.hpp).
///  - `nm_prune<N, M>`           — N of every M consecutive inputs kept (2:4) (compress/pruning.hpp).
///  - `low_rank`                 — truncated SVD W ≈ (U·Σ)·Vᵀ, two products (compress/low_rank.hpp).
///  - `weight_sharing<Bits, Init>` — 1-D k-means codebook of 2^Bits centroids, weights replaced
///                                 by Bits-bit indices (compress/weight_sharing.hpp).
///  - `huffman`                  — canonical Huffman coding of the index / gap streams, code
///                                 length ≤ 16 (compress/huffman.hpp).
///  - `pipeline<P...>`           — stages applied in order; invalid orders do not compile
///                                 (compress/pipeline.hpp). `deep_compression<…>` =
///                                 `pipeline<magnitude_prune<…>, weight_sharing<…>, huffman>`
///                                 (Han, Mao & Dally 2016, "Deep Compression", ICLR).
///
/// When to use which: pruning alone pays off on a CPU only at high sparsity (≥ 90 %, see
/// the sparse kernel in compress/kernels.hpp); N:M keeps a regular structure for hardware
/// that exploits it; structured pruning and low rank keep dense kernels; weight sharing
/// plus Huffman minimises bytes (flash, transmission), not MACs.
///
/// ## The interface (what a policy provides)
/// A compression policy is a class with
///  - `static constexpr const char* name()` — a short identifier (file format, logs);
///  - `static constexpr stage_kind kind` — what kind of stage it is; the pipeline rules are
///    written on kinds, so a user policy takes part in them without being named;
///  - `static constexpr representation produces` — the storage form after the stage;
///  - `static constexpr bool lossless` — true when decoding gives back the exact input;
///  - `static constexpr bool needs_mask` — true when fine-tuning after the stage must keep a
///    mask (re-apply it after each optimiser step, see `apply_mask`);
///  - `static constexpr bool emits_symbols` — true when the stage leaves a stream of small
///    integers (codebook indices, column gaps) that an entropy coder can code;
///  - `template <class T> struct state` — what the stage remembers for one layer (a mask, a
///    codebook and indices, the factors); default-constructible;
///  - `void apply(state<T>&, matrix_ref<T> w) const` — compress one row-major out×in weight
///    matrix *in its fp32 form*: afterwards `w` holds exactly the values the compressed
///    representation decodes to (pruned entries zero, shared weights snapped to their
///    centroid, a low-rank matrix replaced by U·Σ·Vᵀ), and `state` holds the representation
///    itself. This is what a training loop fine-tunes and what an exporter writes.
///
/// Hyperparameters (target sparsity, rank, …) are ordinary data members, so a policy object
/// carries them (clang 14 has no floating-point template parameters); compile-time choices
/// that change storage sizes (index bits, N:M) are template parameters.
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>

#include "../core/config.hpp"

namespace tinylarge::compress {

/// What kind of stage a compression policy is. The pipeline rules are written on kinds.
enum class stage_kind : std::uint8_t {
  identity,        ///< changes nothing (`none`)
  pruning,         ///< sets weights to exactly zero (unstructured, N:M) or removes rows
  low_rank,        ///< replaces W by a product of two thinner matrices
  quantization,    ///< replaces values by entries of a small codebook (weight sharing)
  entropy_coding,  ///< lossless coding of a symbol stream (Huffman)
  composite,       ///< a `pipeline` of stages
};

/// The storage form of a layer's weights after a stage.
enum class representation : std::uint8_t {
  dense,          ///< row-major out×in fp32
  dense_shrunk,   ///< dense, with fewer rows (structured pruning)
  sparse,         ///< CSR with relative (gap) column indices
  factored,       ///< two dense factors, out×r and r×in
  codebook,       ///< bit-packed indices into a codebook of centroids
  sparse_codebook,///< CSR whose values are codebook indices (Deep Compression)
  entropy_coded,  ///< Huffman-coded streams of one of the above
};

/// A mutable view of a row-major rows×cols matrix (a layer's weights, out×in).
/// @tparam T element type (`float` for the fp32 form every policy works on)
template <class T>
struct matrix_ref {
  T* data = nullptr;
  std::size_t rows = 0;  ///< outputs
  std::size_t cols = 0;  ///< inputs
  constexpr std::size_t size() const noexcept { return rows * cols; }
  constexpr T* row(std::size_t r) const noexcept { return data + r * cols; }
};

/// The static description every compression policy provides (no per-layer state needed).
template <class P>
concept compression_stage_traits = requires {
  { P::name() } -> std::convertible_to<const char*>;
  { P::kind } -> std::convertible_to<stage_kind>;
  { P::produces } -> std::convertible_to<representation>;
  { P::lossless } -> std::convertible_to<bool>;
  { P::needs_mask } -> std::convertible_to<bool>;
  { P::emits_symbols } -> std::convertible_to<bool>;
};

/// Requirements every compression policy meets: the static description, a per-layer
/// `state<float>`, and `apply(state, weights)` on the fp32 form (see the file comment).
template <class P>
concept compression_policy =
    compression_stage_traits<P> && std::default_initializable<typename P::template state<float>> &&
    requires(const P& p, typename P::template state<float>& s, matrix_ref<float> w) {
      { p.apply(s, w) };
    };

/// No compression: dense fp32 weights, kept as they are.
///
/// This is the trivial member of the compression axis and the template for your own:
/// copy it, give it a name and a kind, say what it produces, put what it must remember
/// for one layer in `state`, and write `apply`.
struct none {
  static constexpr const char* name() noexcept { return "none"; }
  static constexpr stage_kind kind = stage_kind::identity;
  static constexpr representation produces = representation::dense;
  static constexpr bool lossless = true;
  static constexpr bool needs_mask = false;
  static constexpr bool emits_symbols = false;

  /// Nothing to remember.
  template <class T>
  struct state {};

  /// Leaves the weights as they are.
  template <class T>
  constexpr void apply(state<T>&, matrix_ref<T>) const noexcept {}
};

static_assert(compression_policy<none>);

}  // namespace tinylarge::compress
