/// @file nn/storage.hpp
/// @brief Storage policies: where a network's fixed-size buffers live.
///
/// Available policies:
///  - `static_storage` — `std::array` members: no heap, the size of the object
///    is the size of its parameters. The trivial member and the template for
///    your own; the default in the freestanding profile. Give large
///    networks static storage duration (a global), not the stack.
///  - `heap_storage` — one allocation per buffer at construction, never
///    resized (host profile only). Keeps a 1 MB model off the stack.
///  - `static_training_storage<MaxBatch>` — `static_storage` for a trainable
///    `nn::network`: its activations, saved areas, workspace and backward
///    scratch too are `std::array` members sized for batches of at most
///    `MaxBatch` rows (a larger batch is refused), so a network trains with
///    no heap — a microcontroller's device segment in split learning
///    (tests/mcu/split_device.cpp). fp32 layers only.
///  - `flash_storage` — parameters are views of const data (flash), bound
///    per layer; everything else as `static_storage`. Freestanding-safe.
///  - `compressed_flash_storage<Pruned, Shared>` — `flash_storage` whose
///    layers may also be bound as pruned int8 CSR views (`sparse_flash_storage`
///    = `<true, false>`), as weight-shared int8 codebook views
///    (`shared_flash_storage` = `<false, true>`) or either
///    (`pruned_or_shared_flash_storage`), run in that compressed form; only
///    the kernels of the accepted forms are linked. `<false, false, true>` =
///    `huffman_shared_flash_storage`: Huffman-coded weight-shared records,
///    decoded one output channel at a time. Freestanding-safe.
///
/// A storage policy has a nested `buffer<T, N>` with `data()`, `size()` and
/// `operator[]`; N is a compile-time constant either way.
#pragma once

#include <array>
#include <concepts>
#include <cstddef>

#include "../core/config.hpp"

#if !TINYLARGE_FREESTANDING
#include <memory>
#endif

namespace tinylarge::nn {

/// Buffers as `std::array` members: no heap.
struct static_storage {
  static constexpr bool uses_heap = false;
  static constexpr const char* name() noexcept { return "static_storage"; }
  template <class T, std::size_t N>
  struct buffer {
    std::array<T, (N > 0 ? N : 1)> values{};
    constexpr T* data() noexcept { return values.data(); }
    constexpr const T* data() const noexcept { return values.data(); }
    static constexpr std::size_t size() noexcept { return N; }
    constexpr T& operator[](std::size_t i) noexcept { return values[i]; }
    constexpr const T& operator[](std::size_t i) const noexcept { return values[i]; }
  };
};

#if !TINYLARGE_FREESTANDING
/// Buffers allocated once on the heap at construction (value-initialised).
struct heap_storage {
  static constexpr bool uses_heap = true;
  static constexpr const char* name() noexcept { return "heap_storage"; }
  template <class T, std::size_t N>
  class buffer {
   public:
    buffer() : p_(std::make_unique<T[]>(N > 0 ? N : 1)) {}
    buffer(const buffer& o) : buffer() {
      for (std::size_t i = 0; i < N; ++i) p_[i] = o.p_[i];
    }
    buffer& operator=(const buffer& o) {
      if (this != &o)
        for (std::size_t i = 0; i < N; ++i) p_[i] = o.p_[i];
      return *this;
    }
    buffer(buffer&&) noexcept = default;
    buffer& operator=(buffer&&) noexcept = default;
    T* data() noexcept { return p_.get(); }
    const T* data() const noexcept { return p_.get(); }
    static constexpr std::size_t size() noexcept { return N; }
    T& operator[](std::size_t i) noexcept { return p_[i]; }
    const T& operator[](std::size_t i) const noexcept { return p_[i]; }

   private:
    std::unique_ptr<T[]> p_;
  };
};
#endif

/// `static_storage` for training: a `network<Model, static_training_storage<B>>`
/// keeps every buffer — parameters, gradients, and the activations, saved
/// areas, workspace and backward scratch of up to `MaxBatch` rows — in
/// `std::array` members (their sizes are the model's per-sample constexprs
/// times `MaxBatch`), so forward and backward passes never allocate. A
/// forward pass of more than `MaxBatch` rows is refused
/// (`errc::capacity_exceeded`). fp32 layers only: no fake quantization, no
/// fp16 loss scaling (those keep host scratch). Freestanding-safe.
/// @tparam MaxBatch the largest batch the network runs
template <std::size_t MaxBatch>
struct static_training_storage : static_storage {
  static_assert(MaxBatch > 0, "tinylarge: static_training_storage<MaxBatch>: MaxBatch must be positive");
  static constexpr std::size_t max_batch = MaxBatch;
  static constexpr const char* name() noexcept { return "static_training_storage"; }
};

/// The storage a `network` uses when none is named: `heap_storage` on the
/// host, `static_storage` in the freestanding profile.
#if TINYLARGE_FREESTANDING
using default_storage = static_storage;
#else
using default_storage = heap_storage;
#endif

/// Storage policy of a network whose parameters stay where they are: const
/// data in flash, views set per layer by `bind_layer` — a model file for
/// `quantized_network` (`compress::bind_model_file`: int8 weights, int32
/// biases, requantization multipliers), compiled-in arrays for
/// `mixed_inference_network`. Only the activations and the per-tensor
/// quantization parameters take RAM. Freestanding: no heap.
struct flash_storage {
  static constexpr bool uses_heap = false;
  /// Parameters are views of external const data, not buffers of the network.
  static constexpr bool parameters_are_views = true;
  static constexpr const char* name() noexcept { return "flash_storage"; }
  template <class T, std::size_t N>
  using buffer = static_storage::buffer<T, N>;
};
/// `flash_storage` whose layers may also be bound, and then run, in a
/// compressed form in place: with `Pruned`, as pruned int8 CSR views
/// (`int8_csr` records, docs/model-file-format.md), run by the int8 CSR
/// kernels of kernels/sparse_s8.hpp on the non-zero weights; with `Shared`,
/// as weight-shared views (`int8_codebook` records), run by the int8
/// codebook kernels of kernels/codebook_s8.hpp on the bit-packed indices and
/// the int8 codebook (no unpacked copy). A layer bound with dense int8 views
/// runs as with `flash_storage` (without the packed batch-1 copy of host back
/// ends). Only the kernels of the allowed forms are compiled in, so a
/// firmware pays flash for the forms it can run and no other: the form of a
/// record is known only when the file is bound, so the type says which forms
/// the firmware accepts (`compress::bind_model_file` refuses the others with
/// `errc::invalid_argument`). With `Huffman`, as Huffman-coded weight-shared
/// views (`int8_huffman_codebook` records), run by kernels/huffman_s8.hpp: one
/// output channel's indices decoded at a time into the activation arena's
/// scratch (a row of fan-in bytes), with one Huffman decoder (1.1 KiB) in the
/// network object. Freestanding: no heap.
/// @tparam Pruned accept pruned int8 CSR layers
/// @tparam Shared accept weight-shared int8 codebook layers
/// @tparam Huffman accept Huffman-coded weight-shared int8 codebook layers
template <bool Pruned, bool Shared, bool Huffman = false>
struct compressed_flash_storage {
  static_assert(Pruned || Shared || Huffman,
                "tinylarge: compressed_flash_storage<false, false> accepts no compressed form: use flash_storage");
  static constexpr bool uses_heap = false;
  static constexpr bool parameters_are_views = true;
  /// Layers may be bound as pruned CSR views.
  static constexpr bool pruned_parameters = Pruned;
  /// Layers may be bound as weight-shared codebook views.
  static constexpr bool shared_parameters = Shared;
  /// Layers may be bound as Huffman-coded weight-shared codebook views.
  static constexpr bool huffman_parameters = Huffman;
  static constexpr const char* name() noexcept {
    return Huffman ? (Pruned || Shared ? "compressed_flash_storage<P, S, true>" : "huffman_shared_flash_storage")
           : Pruned && Shared ? "compressed_flash_storage<true, true>"
           : Pruned           ? "sparse_flash_storage"
                              : "shared_flash_storage";
  }
  template <class T, std::size_t N>
  using buffer = static_storage::buffer<T, N>;
};

/// Pruned int8 CSR layers (and dense int8 ones) from flash.
using sparse_flash_storage = compressed_flash_storage<true, false>;
/// Weight-shared int8 codebook layers (and dense int8 ones) from flash.
using shared_flash_storage = compressed_flash_storage<false, true>;
/// Both compressed forms, layer by layer as the file has them (both kernel sets linked).
using pruned_or_shared_flash_storage = compressed_flash_storage<true, true>;
/// Huffman-coded weight-shared int8 layers (`int8_huffman_codebook`, and dense int8 ones) from flash.
using huffman_shared_flash_storage = compressed_flash_storage<false, false, true>;

/// Requirements of a storage policy.
template <class S>
concept storage_policy = requires(typename S::template buffer<float, 4>& b,
                                  const typename S::template buffer<float, 4>& cb, std::size_t i) {
  { S::uses_heap } -> std::convertible_to<bool>;
  { S::name() } -> std::convertible_to<const char*>;
  { b.data() } -> std::same_as<float*>;
  { cb.data() } -> std::same_as<const float*>;
  { S::template buffer<float, 4>::size() } -> std::same_as<std::size_t>;
  { b[i] } -> std::same_as<float&>;
};

static_assert(storage_policy<static_storage>);
#if !TINYLARGE_FREESTANDING
static_assert(storage_policy<heap_storage>);
#endif
static_assert(storage_policy<flash_storage>);
static_assert(storage_policy<static_training_storage<1>>);
static_assert(storage_policy<sparse_flash_storage>);
static_assert(storage_policy<shared_flash_storage>);
static_assert(storage_policy<pruned_or_shared_flash_storage>);
static_assert(storage_policy<huffman_shared_flash_storage>);

namespace detail {
/// The batch cap of a storage that holds a network's activations too
/// (`static_training_storage`); 0: the network grows them on the heap.
template <class S>
constexpr std::size_t storage_max_batch() noexcept {
  if constexpr (requires { S::max_batch; })
    return S::max_batch;
  else
    return 0;
}
template <class S>
constexpr bool parameters_are_views() noexcept {
  if constexpr (requires { S::parameters_are_views; })
    return S::parameters_are_views;
  else
    return false;
}
template <class S>
constexpr bool pruned_parameters() noexcept {
  if constexpr (requires { S::pruned_parameters; })
    return S::pruned_parameters && parameters_are_views<S>();
  else
    return false;
}
template <class S>
constexpr bool shared_parameters() noexcept {
  if constexpr (requires { S::shared_parameters; })
    return S::shared_parameters && parameters_are_views<S>();
  else
    return false;
}
template <class S>
constexpr bool huffman_parameters() noexcept {
  if constexpr (requires { S::huffman_parameters; })
    return S::huffman_parameters && parameters_are_views<S>();
  else
    return false;
}
}  // namespace detail

}  // namespace tinylarge::nn
