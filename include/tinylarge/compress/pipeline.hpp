/// @file compress/pipeline.hpp
/// @brief Compile-time pipelines of compression stages; `deep_compression` =
///        prune → share → Huffman (Han, Mao & Dally 2016).
///
/// `pipeline<P1, P2, …>` applies its stages in order and is itself a `compression_policy`,
/// so a layer's policy slot takes a single stage or a pipeline, and layers may differ.
/// The order rules are checked on each stage's `kind` (so user-written stages take part) and
/// an invalid order fails to compile with a `static_assert` that says why:
///
///  1. an entropy-coding stage (Huffman) must be the last stage — it turns values into a bit
///     stream that no later stage can read;
///  2. an entropy-coding stage needs an earlier stage that emits symbols (weight-sharing
///     indices or pruning gaps) — Huffman-coding raw fp32 weights gains almost nothing;
///  3. pruning must come before weight sharing — sharing replaces the weights by centroids,
///     destroying the exact zeros the pruning mask needs, and pruning afterwards would put
///     values (0) outside the codebook and make the centroids wrong;
///  4. low rank and weight sharing do not compose in one layer — sharing needs one codebook
///     over one matrix, the factors are two matrices whose product must stay accurate;
///  5. low rank must not follow unstructured (sparse) pruning — the SVD factors of a sparse
///     matrix are dense, so the sparsity would be lost (structured pruning, which keeps a
///     smaller dense matrix, may precede it; pruning the factors after low rank is allowed);
///  6. at most one stage of each kind — combine masks or codebooks in one policy instead;
///  7. no nested pipelines — list their stages in one pipeline.
///
/// `pipeline_check<P...>()` returns the first violated rule as a `pipeline_error`, so the
/// rules can also be tested without a compile failure.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <tuple>
#include <utility>

#include "concepts.hpp"
#include "huffman.hpp"
#include "low_rank.hpp"
#include "pruning.hpp"
#include "weight_sharing.hpp"

namespace tinylarge::compress {

/// The rule a stage order violates (see the file comment), or `ok`.
enum class pipeline_error : std::uint8_t {
  ok = 0,
  entropy_not_last,
  entropy_without_symbols,
  pruning_after_sharing,
  low_rank_with_sharing,
  low_rank_after_sparse_pruning,
  duplicate_kind,
  nested_pipeline,
};

namespace detail {
struct stage_desc {
  stage_kind kind;
  representation produces;
  bool emits_symbols;
};

template <std::size_t N>
constexpr pipeline_error check_stages(const std::array<stage_desc, N>& s) noexcept {
  for (std::size_t i = 0; i < N; ++i)
    if (s[i].kind == stage_kind::composite) return pipeline_error::nested_pipeline;
  for (std::size_t i = 0; i < N; ++i)
    if (s[i].kind == stage_kind::entropy_coding && i + 1 != N) return pipeline_error::entropy_not_last;
  for (std::size_t i = 0; i < N; ++i)
    if (s[i].kind == stage_kind::entropy_coding) {
      bool symbols = false;
      for (std::size_t j = 0; j < i; ++j) symbols = symbols || s[j].emits_symbols;
      if (!symbols) return pipeline_error::entropy_without_symbols;
    }
  for (std::size_t i = 0; i < N; ++i)
    for (std::size_t j = i + 1; j < N; ++j)
      if (s[i].kind == stage_kind::quantization && s[j].kind == stage_kind::pruning)
        return pipeline_error::pruning_after_sharing;
  bool has_low_rank = false, has_sharing = false;
  for (const auto& d : s) {
    has_low_rank = has_low_rank || d.kind == stage_kind::low_rank;
    has_sharing = has_sharing || d.kind == stage_kind::quantization;
  }
  if (has_low_rank && has_sharing) return pipeline_error::low_rank_with_sharing;
  for (std::size_t i = 0; i < N; ++i)
    for (std::size_t j = i + 1; j < N; ++j)
      if (s[i].kind == stage_kind::pruning && s[i].produces == representation::sparse &&
          s[j].kind == stage_kind::low_rank)
        return pipeline_error::low_rank_after_sparse_pruning;
  for (std::size_t i = 0; i < N; ++i)
    for (std::size_t j = i + 1; j < N; ++j)
      if (s[i].kind == s[j].kind && s[i].kind != stage_kind::identity) return pipeline_error::duplicate_kind;
  return pipeline_error::ok;
}

template <class... P>
constexpr representation final_representation() noexcept {
  representation r = representation::dense;
  bool sparse = false;
  ((P::kind != stage_kind::identity && P::kind != stage_kind::entropy_coding ? (r = P::produces) : r), ...);
  ((sparse = sparse || P::produces == representation::sparse), ...);
  if (r == representation::codebook && sparse) r = representation::sparse_codebook;
  if (((P::kind == stage_kind::entropy_coding) || ...)) r = representation::entropy_coded;
  return r;
}
}  // namespace detail

/// The first rule the stage order P... violates, or `pipeline_error::ok`.
template <compression_stage_traits... P>
constexpr pipeline_error pipeline_check() noexcept {
  return detail::check_stages(std::array<detail::stage_desc, sizeof...(P)>{
      detail::stage_desc{P::kind, P::produces, P::emits_symbols}...});
}

/// True when P... is a valid stage order.
template <class... P>
concept valid_pipeline = (compression_stage_traits<P> && ...) && (pipeline_check<P...>() == pipeline_error::ok);

/// Compression stages applied in order to each layer (itself a `compression_policy`).
/// Stage objects carry the hyperparameters: `pipeline<magnitude_prune<>, weight_sharing<5>,
/// huffman> p; std::get<0>(p.stages).schedule.target_sparsity = 0.92;`
/// @tparam P the stages, each a `compression_policy`, in a valid order (see the file comment)
template <compression_policy... P>
struct pipeline {
  static_assert(pipeline_check<P...>() != pipeline_error::nested_pipeline,
                "compress::pipeline: a stage is itself a pipeline; list its stages in one pipeline instead");
  static_assert(pipeline_check<P...>() != pipeline_error::entropy_not_last,
                "compress::pipeline: an entropy-coding stage (huffman) must be the last stage: it turns values "
                "into a bit stream that no later stage can read");
  static_assert(pipeline_check<P...>() != pipeline_error::entropy_without_symbols,
                "compress::pipeline: huffman needs an earlier stage that emits symbols (weight_sharing indices or "
                "magnitude_prune / nm_prune column gaps); Huffman-coding raw fp32 weights gains almost nothing");
  static_assert(pipeline_check<P...>() != pipeline_error::pruning_after_sharing,
                "compress::pipeline: pruning must come before weight sharing: sharing replaces weights by "
                "centroids and destroys the exact zeros the pruning mask needs, and pruning afterwards would put "
                "values outside the codebook");
  static_assert(pipeline_check<P...>() != pipeline_error::low_rank_with_sharing,
                "compress::pipeline: low_rank and weight_sharing do not compose in one layer: the factors are two "
                "matrices whose product must stay accurate, a codebook quantizes one matrix");
  static_assert(pipeline_check<P...>() != pipeline_error::low_rank_after_sparse_pruning,
                "compress::pipeline: low_rank after unstructured pruning loses the sparsity (the SVD factors of a "
                "sparse matrix are dense); use structured_prune before low_rank, or prune after it");
  static_assert(pipeline_check<P...>() != pipeline_error::duplicate_kind,
                "compress::pipeline: two stages of the same kind (e.g. two pruning stages); combine them in one "
                "policy");

  std::tuple<P...> stages{};

  static constexpr const char* name() noexcept { return "pipeline"; }
  static constexpr stage_kind kind = stage_kind::composite;
  static constexpr representation produces = detail::final_representation<P...>();
  static constexpr bool lossless = (P::lossless && ...);
  static constexpr bool needs_mask = (P::needs_mask || ...);
  static constexpr bool emits_symbols = (P::emits_symbols || ...);
  static constexpr std::size_t size = sizeof...(P);

  /// One state per stage.
  template <class T>
  struct state {
    std::tuple<typename P::template state<T>...> stages{};
  };

  /// Applies every stage in order to the fp32 weights.
  void apply(state<float>& s, matrix_ref<float> w) const {
    apply_stages(s, w, std::index_sequence_for<P...>{});
  }

 private:
  template <std::size_t... I>
  void apply_stages(state<float>& s, matrix_ref<float> w, std::index_sequence<I...>) const {
    (std::get<I>(stages).apply(std::get<I>(s.stages), w), ...);
  }
};

/// Deep Compression (Han, Mao & Dally 2016): magnitude pruning, then k-means weight sharing
/// with b-bit indices, then Huffman coding of indices and gaps. The paper's LeNet-300-100
/// setting is `deep_compression<constant_sparsity, 6>` with 8 % of the weights kept.
/// @tparam Schedule the pruning schedule
/// @tparam Bits index width of the shared weights (1–8)
/// @tparam Init centroid initialisation (linear in the paper)
template <pruning_schedule Schedule = constant_sparsity, unsigned Bits = 5, centroid_init Init = centroid_init::linear>
using deep_compression = pipeline<magnitude_prune<Schedule>, weight_sharing<Bits, Init>, huffman>;

static_assert(compression_policy<deep_compression<>>);
static_assert(compression_policy<pipeline<>>);

}  // namespace tinylarge::compress
