/// @file partition/cut.hpp
/// @brief The partition axis: where a `sequential` model is cut and who runs
///        each piece (device / edge / cloud), as types.
///
/// Available policies:
///  - `cut<>` — no cut: the whole model is one segment (the trivial member;
///    read it as the documentation of `partition_policy`);
///  - `cut<K>` — device runs layers [0, K), the server runs [K, size);
///  - `cut<K1, K2, …>` — a chain: device [0, K1), edge [K1, K2), …, cloud [Kn, size)
///    (multi-hop split learning).
///
/// @code
///   using lenet = tl::sequential<tl::dense<784, 300>, tl::relu, tl::dense<300, 100>, tl::relu, tl::dense<100, 10>>;
///   using p = tl::cut<2>;                         // after the first hidden layer (dense + relu)
///   using device = p::segment<lenet, 0>;          // sequential<input<784>, dense<784, 300>, relu>
///   using server = p::segment<lenet, 1>;          // sequential<input<300>, dense<300, 100>, relu, dense<100, 10>>
///   static_assert(device::param_count + server::param_count == lenet::param_count);
///   static_assert(p::cut_size<lenet, 0> == 300);  // features per sample that cross the cut
/// @endcode
///
/// A segment is itself a `sequential<input<…>, descriptors…>`, so it has every
/// compile-time fact of a model (shapes, parameters, MACs, arena size) and runs
/// in a `network` or a `quantized_network` with its own precision. Parameters
/// of the whole model are laid out layer after layer, so segment s owns the
/// contiguous range [param_begin<Model, s>, param_begin<Model, s> + param_count):
/// splitting and re-joining the flat parameter vector is a copy.
///
/// Each segment's precision and compression is chosen by `side<Precision,
/// Compression>` in the workflow's traits (see workflow/split.hpp).
#pragma once

#include <array>
#include <concepts>
#include <cstddef>
#include <type_traits>
#include <utility>

#include "../compress/concepts.hpp"
#include "../nn/sequential.hpp"
#include "../precision/concepts.hpp"

namespace tinylarge {

namespace partition_detail {

/// `input<…>` marker for a shape: `input<N>` when flat, `input<H, W, C>` otherwise.
template <class S>
struct input_for {
  using type = std::conditional_t<S::flat, nn::input<S::size>, nn::input<S::h, S::w, S::c>>;
};

/// `sequential<input<in shape of layer Begin>, descriptor of layers Begin … End−1>`.
template <class Model, std::size_t Begin, class Seq>
struct slice;
template <class Model, std::size_t Begin, std::size_t... I>
struct slice<Model, Begin, std::index_sequence<I...>> {
  using type = nn::sequential<typename input_for<typename Model::template layer<Begin>::in_shape>::type,
                              typename Model::template layer<Begin + I>::descriptor...>;
};

template <std::size_t... K>
constexpr bool strictly_increasing() noexcept {
  constexpr std::array<std::size_t, sizeof...(K) + 1> k{0, K...};
  for (std::size_t i = 1; i < k.size(); ++i)
    if (k[i] <= k[i - 1]) return false;
  return true;
}
}  // namespace partition_detail

/// Cut points of a `sequential` model: layer indices where one party's
/// segment ends and the next party's begins.
///
/// With cuts K₁ < K₂ < … < K_n, segment 0 (the device) is layers [0, K₁),
/// segment s is [K_s, K_{s+1}) and the last segment is [K_n, size). Every
/// segment must hold at least one layer: cut points are strictly increasing,
/// positive and below the model's layer count (checked when a segment is
/// formed, with a message naming the rule).
/// @tparam K the cut points (layer indices of the bound model, `input<>` not counted)
template <std::size_t... K>
struct cut {
  static_assert(partition_detail::strictly_increasing<K...>(),
                "tinylarge: cut<K...>: cut points must be positive and strictly increasing (each segment needs a "
                "layer)");
  /// Number of cuts = number of links a sample's activations cross.
  static constexpr std::size_t cuts = sizeof...(K);
  /// Number of segments (parties on the path): cuts + 1.
  static constexpr std::size_t segments = cuts + 1;
  /// Layer index where segment s begins (s = 0 … segments−1), and segments() ends at `Model::size`.
  static constexpr std::array<std::size_t, cuts + 1> begins{0, K...};

  /// True when every cut point lies inside `Model` (at most its last layer).
  template <class Model>
  static constexpr bool fits = [] {
    for (std::size_t b : begins)
      if (b >= Model::size) return false;
    return true;
  }();

  /// Layer index one past segment s's last layer.
  template <class Model, std::size_t S>
  static constexpr std::size_t end_of = S + 1 < segments ? begins[S + 1] : Model::size;

  /// Segment s of `Model` as a `sequential<input<…>, …>` type.
  /// @tparam Model a `sequential<...>` model
  /// @tparam S     0 = device, segments−1 = the last server (cloud)
  template <class Model, std::size_t S>
    requires(S < segments)
  using segment = typename partition_detail::slice<Model, begins[S],
                                                   std::make_index_sequence<end_of<Model, S> - begins[S]>>::type;

  /// Activations per sample that cross cut c (c = 0 … cuts−1): the output
  /// size of segment c = the input size of segment c+1.
  template <class Model, std::size_t C>
    requires(C < cuts)
  static constexpr std::size_t cut_size = Model::template layer<begins[C + 1]>::in_shape::size;
};

/// Offset of segment s's parameters in `Model`'s flat parameter array.
template <class Partition, class Model, std::size_t S>
inline constexpr std::size_t segment_param_begin = [] {
  std::size_t off = 0;
  [&]<std::size_t... J>(std::index_sequence<J...>) {
    ((off += J < Partition::begins[S] ? Model::template layer<J>::param_count : 0), ...);
  }(std::make_index_sequence<Model::size>{});
  return off;
}();

namespace partition_detail {
template <class T>
struct is_cut : std::false_type {};
template <std::size_t... K>
struct is_cut<cut<K...>> : std::true_type {};
}  // namespace partition_detail

/// The partition axis. A partition policy `P` names how many segments a model
/// is cut into and yields each as a `sequential` type:
///  - `P::segments`, `P::cuts` (= segments − 1);
///  - `P::template segment<Model, S>` for S < segments;
///  - `P::template cut_size<Model, C>`: activations per sample crossing cut C;
///  - `P::template fits<Model>`: the cut points lie inside the model.
/// `cut<K...>` is the only family today; `cut<>` (one segment) is the trivial member.
template <class P, class Model>
concept partition_policy_for = nn::sequential_model<Model> && requires {
  { P::segments } -> std::convertible_to<std::size_t>;
  { P::cuts } -> std::convertible_to<std::size_t>;
  requires P::segments == P::cuts + 1;
  requires P::template fits<Model>;
  typename P::template segment<Model, 0>;
};

/// A partition policy, independent of a model (structural part of `partition_policy_for`).
template <class P>
concept partition_policy = requires {
  { P::segments } -> std::convertible_to<std::size_t>;
  { P::cuts } -> std::convertible_to<std::size_t>;
  requires P::segments == P::cuts + 1;
};

static_assert(partition_policy<cut<>> && partition_policy<cut<2>> && partition_policy<cut<2, 4>>);

/// One party's policies: the precision its segment runs in and the
/// compression of its parameters.
///
/// A device side with an int8 precision trains its segment with fake
/// quantization (quantization-aware training, the straight-through estimator)
/// so that it deploys as an int8 `quantized_network`; a float side (`fp32`,
/// `fp16`, `bf16`, a user's `float_precision`) trains in its precision —
/// mixed-precision training with fp32 master weights and GEMMs on operands in
/// the storage type, with dynamic loss scaling for fp16 (`nn::network<Seg,
/// Storage, Precision>`). A combination the workflow cannot run (an int8
/// server, a compressed fp16 / bf16 side, a quantized precision that is not
/// int8) fails to compile with a static_assert naming `Traits::device` or
/// `Traits::server`.
///
/// A compression policy other than `compress::none` is applied to every
/// weighted layer of the segment (the split workflows, workflow/split.hpp):
/// after `split_options::compress_after` warm-up rounds the canonical segment
/// is compressed once — its masks and codebooks computed on it and shared by
/// every copy — and from then on every copy trains under that constraint
/// (pruned weights exactly 0 after every step, shared weights on their
/// codebook), the averaged segment is projected back onto it, and every
/// transfer of the segment is counted at the size of its compressed encoding
/// (`compress::network_compressor::encode`). Its hyperparameters (sparsity,
/// …) are the policy object `split_options::device_compression` /
/// `server_compression`. `compress::none` changes nothing.
///
/// @code
///   using prune90 = tl::compress::magnitude_prune<tl::compress::constant_sparsity>;
///   using device  = tl::side<tl::int8_per_channel, prune90>;   // or deep_compression<…>, weight_sharing<5>
///   prune90 p;  p.schedule.target_sparsity = 0.9;               // → options.device_compression = p
/// @endcode
/// @tparam Precision   a `precision_policy` (`tl::fp32`, `tl::int8_per_channel`, …)
/// @tparam Compression a `compression_policy` (`tl::compress::none` by default); the split
///         workflows take a `split_compression_policy` (every policy but `low_rank`)
template <precision_policy Precision, compress::compression_policy Compression = compress::none>
struct side {
  using precision = Precision;
  using compression = Compression;
};

}  // namespace tinylarge
