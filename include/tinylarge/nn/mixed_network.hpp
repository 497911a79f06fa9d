/// @file nn/mixed_network.hpp
/// @brief `mixed_inference_network<Model, Precision, Storage>`: the deployment
///        form of a trained `network<Model, S, Precision>` whose weights are
///        held in each layer's storage type — half the fp32 bytes in fp16 /
///        bf16, a quarter in int8 — with fp32 accumulation. One class for the
///        host (`heap_storage`, any batch size) and the microcontroller
///        (`static_storage` or `flash_storage`: no heap, no exceptions).
///
/// @code
///   using model = tl::sequential<tl::nn::with_precision<tl::nn::dense<784, 300>, tl::int8_per_channel>, tl::nn::relu,
///                                tl::nn::dense<300, 100>, tl::nn::relu,
///                                tl::nn::with_precision<tl::nn::dense<100, 10>, tl::int8_per_channel>>;
///   tl::nn::network<model, tl::nn::heap_storage, tl::fp16> net(1);   // train (fit) …
///   tl::nn::mixed_inference_network<model, tl::fp16> deploy(net);    // int8 | fp16 | int8
///   deploy.weight_bytes();                                           // 784·300 + 2·300·100 + 100·10
///   const float* logits = deploy.forward(x, batch);
/// @endcode
///
/// Per weighted layer, by its precision P (the layer's `with_precision`, else
/// the network's):
///  - fp32: `kernels::dense_f32` on the layer's parameters (conv: on the
///    im2col rows; depthwise conv: the layer's own fp32 pass);
///  - another float precision: W in `P::storage_type`, fp32 input and bias,
///    `kernels::dense<Backend, float, T>` (conv: on the im2col rows; storage
///    types without a kernel are widened to fp32 per call);
///  - int8: W quantized per channel (or per tensor) symmetric, the input
///    quantized with the asymmetric parameters of the range the network
///    tracked while training (`kernels::quantize_s8`), int32 accumulation
///    (`kernels::dense_s8_s32`: SMLAD on a Cortex-M with the DSP extension)
///    and the result brought back to fp32 as acc·(s_x·s_w[o]) + b[o]: two
///    conversions at the layer's boundaries, counted in `converted_elements()`.
/// Activations between layers are fp32; layers without weights run their fp32
/// pass.
///
/// Storage (`Storage`, a `storage_policy`):
///  - `heap_storage` (host default): parameters in buffers allocated at
///    construction; activations in vectors that grow to the largest batch seen.
///  - `static_storage` (freestanding default): parameters and activations in
///    `std::array` members, sized at compile time for `MaxBatch` samples
///    (`activation_bytes`); give the object static storage duration.
///  - `flash_storage`: parameters are views of const data (arrays compiled
///    into flash, written on the host from `layer_parameters<I>()`), bound per
///    layer with `bind_layer<I>`; activations as `static_storage`.
/// The forward pass is the same code for all three; outputs are bit-identical
/// for the same `Backend` (the tests check it).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <tuple>
#include <type_traits>
#include <utility>

#include "../core/config.hpp"
#include "../core/error.hpp"
#include "../kernels/backend.hpp"
#include "../kernels/dense.hpp"
#include "../precision/convert.hpp"
#include "../precision/int8.hpp"
#include "layer_precision.hpp"
#include "layers.hpp"
#include "sequential.hpp"
#include "storage.hpp"

#if !TINYLARGE_FREESTANDING
#include <vector>

#include "network.hpp"
#endif

namespace tinylarge::nn {

/// The parameters of one weighted layer of a `mixed_inference_network`, as
/// views: what `layer_parameters<I>()` returns and `bind_layer<I>` takes.
/// @tparam W the layer's weight type (`float`, `P::storage_type`, `std::int8_t`)
template <class W>
struct mixed_layer_binding {
  /// fp32 layers: the layer's parameters in its own layout (weights, then
  /// biases); int8 and other float precisions: the weight_count weights.
  const W* weights = nullptr;
  const float* bias = nullptr;           ///< int8 / low precision: out_channels fp32 biases
  const float* weight_scales = nullptr;  ///< int8: out_channels scales (per channel) or 1 (per tensor)
  quant_params input{};                  ///< int8: quantization of the layer's fp32 input
};

namespace mixed_detail {

/// How layer L with precision P is deployed, and the sizes of what it keeps.
template <class L, class P>
struct layer_facts {
  static constexpr bool weighted = has_weights(L::kind);
  static constexpr bool int8 = weighted && int8_precision<P>;
  static constexpr bool lowp = weighted && !int8 && !std::is_same_v<P, fp32>;
  /// Runs as one GEMM (dense, or conv on im2col rows) rather than its own fp32 pass.
  static constexpr bool gemm = weighted && (L::kind == layer_kind::dense || L::kind == layer_kind::conv2d);
  using weight_type = std::conditional_t<int8, std::int8_t, std::conditional_t<lowp, typename P::storage_type, float>>;
  static constexpr bool per_channel = [] {
    if constexpr (int8) return P::is_per_channel;
    else return true;
  }();
  /// fp32 layers keep their parameter block (weights then biases), the others weights only.
  static constexpr std::size_t weight_values = int8 || lowp ? L::weight_count : L::param_count;
  static constexpr std::size_t bias_values = int8 || lowp ? L::bias_count : 0;
  static constexpr std::size_t scale_values = [] {
    if constexpr (int8) return per_channel ? L::out_channels : std::size_t{1};
    else return std::size_t{0};
  }();
  static constexpr std::size_t widened_values = lowp && !kernels::kernel_float<weight_type> ? L::weight_count : 0;
  /// GEMM rows per sample and their length (im2col for conv).
  static constexpr std::size_t rows_per_sample = [] {
    if constexpr (L::kind == layer_kind::conv2d) return L::ho * L::wo;
    else return std::size_t{1};
  }();
  static constexpr std::size_t k = [] {
    if constexpr (L::kind == layer_kind::conv2d) return L::patch;
    else return L::in_shape::size;
  }();
  /// Per sample: quantized input bytes and int32 accumulators of an int8 layer.
  static constexpr std::size_t xq_per_sample = int8 ? rows_per_sample * k : 0;
  static constexpr std::size_t acc_per_sample = [] {
    if constexpr (int8) return rows_per_sample * L::out_channels;
    else return std::size_t{0};
  }();
};

/// An int8 layer's input quantization before `load` / `bind_layer` sets it.
/// All-zero (not `quant_params{}`, whose scale is 1) so that a network with
/// `static_storage` / `flash_storage` is zero-initialized: a global goes to
/// .bss instead of taking its size again in flash as .data.
inline constexpr quant_params unset_input{0.0f, 0};

/// The parameters of one layer: owned buffers of `Storage`…
template <class L, class P, class Storage, bool Views = detail::parameters_are_views<Storage>()>
struct layer_store : layer_facts<L, P> {
  using F = layer_facts<L, P>;
  using weight_type = typename F::weight_type;
  typename Storage::template buffer<weight_type, F::weight_values> w{};
  typename Storage::template buffer<float, F::bias_values> b{};
  typename Storage::template buffer<float, F::scale_values> s{};
  typename Storage::template buffer<float, F::widened_values> widened{};
  quant_params x_params = unset_input;
  const weight_type* weights() const noexcept { return w.data(); }
  const float* bias() const noexcept {
    if constexpr (F::int8 || F::lowp) return b.data();
    else return w.data() + L::weight_count;
  }
  const float* scales() const noexcept { return s.data(); }
};
/// … or views of const data (`flash_storage`).
template <class L, class P, class Storage>
struct layer_store<L, P, Storage, true> : layer_facts<L, P> {
  using F = layer_facts<L, P>;
  using weight_type = typename F::weight_type;
  const weight_type* w = nullptr;
  const float* b = nullptr;
  const float* s = nullptr;
  typename Storage::template buffer<float, F::widened_values> widened{};
  quant_params x_params = unset_input;
  const weight_type* weights() const noexcept { return w; }
  const float* bias() const noexcept {
    if constexpr (F::int8 || F::lowp) return b;
    else return w + L::weight_count;
  }
  const float* scales() const noexcept { return s; }
};

template <class Model, class Default, class Storage, class Seq = std::make_index_sequence<Model::size>>
struct stores_of;
template <class Model, class Default, class Storage, std::size_t... I>
struct stores_of<Model, Default, Storage, std::index_sequence<I...>> {
  using type = std::tuple<layer_store<typename Model::template layer<I>,
                                      layer_precision_t<typename Model::template layer<I>, Default>, Storage>...>;
};

/// Per-sample sizes of the activation buffers: the two fp32 ping-pong
/// buffers hold any layer's output (the input stays in the caller's array),
/// the workspace the im2col rows, `xq` / `acc` the widest int8 layer's
/// quantized input and int32 accumulators.
template <class Model, class Default>
struct activation_sizes {
  template <class F>
  static constexpr std::size_t max_over_layers(F f) {
    std::size_t m = 0;
    Model::for_each_layer([&]<std::size_t I>() {
      const std::size_t v = f.template operator()<typename Model::template layer<I>>();
      m = v > m ? v : m;
    });
    return m;
  }
  static constexpr std::size_t out = max_over_layers([]<class L>() { return L::out_shape::size; });
  static constexpr std::size_t workspace = Model::max_workspace_per_sample;
  static constexpr std::size_t xq =
      max_over_layers([]<class L>() { return layer_facts<L, layer_precision_t<L, Default>>::xq_per_sample; });
  static constexpr std::size_t acc =
      max_over_layers([]<class L>() { return layer_facts<L, layer_precision_t<L, Default>>::acc_per_sample; });
};

/// The activation buffers: fixed, for `MaxBatch` samples (no heap) …
template <class Model, class Default, class Storage, std::size_t MaxBatch, bool Heap = Storage::uses_heap>
struct activations {
  using Z = activation_sizes<Model, Default>;
  static constexpr std::size_t max_batch = MaxBatch;
  static constexpr std::size_t bytes = MaxBatch * (2 * Z::out * sizeof(float) + Z::workspace * sizeof(float) + Z::xq +
                                                   Z::acc * sizeof(std::int32_t));
  typename Storage::template buffer<float, MaxBatch * Z::out> a{}, b{};
  typename Storage::template buffer<float, MaxBatch * Z::workspace> ws{};
  typename Storage::template buffer<std::int8_t, MaxBatch * Z::xq> xq{};
  typename Storage::template buffer<std::int32_t, MaxBatch * Z::acc> acc{};
  static constexpr bool fits(std::size_t batch) noexcept { return batch <= MaxBatch; }
  void reserve(std::size_t) noexcept {}
  float* out(std::size_t slot) noexcept { return slot == 0 ? a.data() : b.data(); }
  float* workspace() noexcept { return ws.data(); }
  std::int8_t* quantized() noexcept { return xq.data(); }
  std::int32_t* accumulators() noexcept { return acc.data(); }
};

#if !TINYLARGE_FREESTANDING
/// … or vectors that grow to the largest batch seen (host, `heap_storage`).
template <class Model, class Default, class Storage, std::size_t MaxBatch>
struct activations<Model, Default, Storage, MaxBatch, true> {
  using Z = activation_sizes<Model, Default>;
  static constexpr std::size_t max_batch = 0;  ///< unbounded
  static constexpr std::size_t bytes = 0;      ///< allocated per call
  std::array<std::vector<float>, 2> buf;
  std::vector<float> ws;
  std::vector<std::int8_t> xq;
  std::vector<std::int32_t> acc;
  static constexpr bool fits(std::size_t) noexcept { return true; }
  void reserve(std::size_t batch) {
    auto grow = [](auto& v, std::size_t n) {
      if (v.size() < n) v.resize(n);
    };
    grow(buf[0], batch * Z::out);
    grow(buf[1], batch * Z::out);
    grow(ws, batch * Z::workspace + 1);
    grow(xq, batch * Z::xq + 1);
    grow(acc, batch * Z::acc + 1);
  }
  float* out(std::size_t slot) noexcept { return buf[slot].data(); }
  float* workspace() noexcept { return ws.data(); }
  std::int8_t* quantized() noexcept { return xq.data(); }
  std::int32_t* accumulators() noexcept { return acc.data(); }
};
#endif

using default_storage = nn::default_storage;

}  // namespace mixed_detail

/// Inference in each layer's storage precision (see the file comment).
/// @tparam Model a `sequential<...>` type (with `with_precision` layers or not)
/// @tparam Precision the default precision of its weighted layers (a `float_precision`)
/// @tparam Storage `heap_storage` (host default), `static_storage` (freestanding
///         default) or `flash_storage` (parameters bound to const data)
/// @tparam Backend kernel back end tag of the GEMMs, the input quantization
///         and the int8 accumulation (`kernels::default_backend`)
/// @tparam MaxBatch samples per `forward` with a non-heap `Storage` (the
///         activation buffers are sized for it); ignored with `heap_storage`
template <sequential_model Model, precision_policy Precision = fp32, storage_policy Storage = mixed_detail::default_storage,
          class Backend = kernels::default_backend, std::size_t MaxBatch = 1>
class mixed_inference_network {
  static_assert(float_precision<Precision>,
                "tinylarge: mixed_inference_network<Model, Precision>: Precision must be a float_precision; "
                "for a whole-int8 network use quantized_network");
  static_assert(lowp::check_layer_precisions<Model, Precision>());
  static_assert(MaxBatch > 0, "tinylarge: mixed_inference_network: MaxBatch must be positive");
  template <std::size_t I>
  using store_t = std::tuple_element_t<I, typename mixed_detail::stores_of<Model, Precision, Storage>::type>;
  using activations_t = mixed_detail::activations<Model, Precision, Storage, MaxBatch>;

 public:
  using model = Model;
  using precision = Precision;
  using storage = Storage;
  using backend = Backend;
  /// True with `flash_storage`: parameters are views set by `bind_layer`.
  static constexpr bool binds_parameters = detail::parameters_are_views<Storage>();
  /// Largest batch of one `forward` call (0: unbounded, `heap_storage`).
  static constexpr std::size_t max_batch = activations_t::max_batch;
  /// Bytes of the activation buffers with a non-heap `Storage` (0 with
  /// `heap_storage`, whose buffers grow per call): two fp32 ping-pong buffers
  /// of the widest layer output, the im2col workspace, and the int8 layers'
  /// quantized input and int32 accumulators, for `MaxBatch` samples.
  static constexpr std::size_t activation_bytes = activations_t::bytes;
  /// The weight type of layer I (`float`, `P::storage_type` or `std::int8_t`).
  template <std::size_t I>
  using weight_type = typename store_t<I>::weight_type;
  /// What `bind_layer<I>` takes and `layer_parameters<I>` returns.
  template <std::size_t I>
  using binding = mixed_layer_binding<weight_type<I>>;

  mixed_inference_network() = default;

#if !TINYLARGE_FREESTANDING
  /// Converts the parameters of `net` (and, for int8 layers, its tracked input ranges).
  template <class S>
  explicit mixed_inference_network(const network<Model, S, Precision>& net)
    requires(!binds_parameters)
  {
    load(net);
  }

  /// Converts the parameters of `net` into each layer's storage type.
  /// @throws tinylarge::invalid_argument if an int8 layer's input range was never observed
  template <class S>
  void load(const network<Model, S, Precision>& net)
    requires(!binds_parameters)
  {
    std::array<quant_params, Model::size> inputs{};
    Model::for_each_layer([&]<std::size_t I>() {
      if constexpr (store_t<I>::int8) {
        const tensor_range r = net.tracked_ranges()[I];
        TINYLARGE_REQUIRE(r.seen, errc::invalid_argument,
                          "mixed_inference_network::load: an int8 layer's input range was never observed (train "
                          "the network first)");
        inputs[I] = choose_quant_params<asymmetric>(r.lo, r.hi);
      }
    });
    load(net.parameters().data(), inputs.data());
  }
#endif

  /// Converts fp32 parameters (the layout of `network::parameters()`,
  /// Model::param_count values) into each layer's storage type; `inputs[I]`
  /// is the quantization of int8 layer I's input (other entries are unused).
  /// Freestanding-safe: quantizes on the device when the parameters are fp32.
  void load(const float* params, const quant_params* inputs)
    requires(!binds_parameters)
  {
    Model::for_each_layer([&]<std::size_t I>() {
      using L = typename Model::template layer<I>;
      using P = layer_precision_t<L, Precision>;
      auto& st = std::get<I>(stores_);
      using St = store_t<I>;
      const float* p = params + Model::template param_offset<I>;
      if constexpr (St::int8) {
        static_assert(L::kind != layer_kind::depthwise_conv2d,
                      "tinylarge: mixed_inference_network: an int8 depthwise_conv2d layer is not supported; use "
                      "quantized_network for whole-int8 models");
        st.x_params = inputs[I];
        P::quantize_weights({p, L::weight_count}, L::out_channels, std::span<std::int8_t>(st.w.data(), L::weight_count),
                            std::span<float>(st.s.data(), St::scale_values));
        for (std::size_t o = 0; o < L::bias_count; ++o) st.b[o] = p[L::weight_count + o];
      } else if constexpr (St::lowp) {
        using T = typename P::storage_type;
        if constexpr (std::is_same_v<T, half> || std::is_same_v<T, bfloat16>) {
          convert(std::span<const float>(p, L::weight_count), std::span<T>(st.w.data(), L::weight_count));
        } else {
          for (std::size_t i = 0; i < L::weight_count; ++i) st.w[i] = P::encode(p[i]);
        }
        for (std::size_t o = 0; o < L::bias_count; ++o) st.b[o] = p[L::weight_count + o];
      } else if constexpr (L::param_count > 0) {
        for (std::size_t i = 0; i < L::param_count; ++i) st.w[i] = p[i];
      }
    });
  }

  /// With `flash_storage`: point layer I's parameters at const data (see
  /// `mixed_layer_binding`; e.g. arrays written on the host from another
  /// network's `layer_parameters<I>()`). The caller guarantees their sizes.
  template <std::size_t I>
  void bind_layer(const binding<I>& v) noexcept
    requires binds_parameters
  {
    static_assert(has_weights(Model::template layer<I>::kind), "tinylarge: bind_layer: layer I has no parameters");
    auto& st = std::get<I>(stores_);
    st.w = v.weights;
    st.b = v.bias;
    st.s = v.weight_scales;
    st.x_params = v.input;
  }

  /// Layer I's parameters as views (valid while this network lives and is not reloaded).
  template <std::size_t I>
  binding<I> layer_parameters() const noexcept {
    const auto& st = std::get<I>(stores_);
    binding<I> v;
    v.weights = st.weights();
    if constexpr (store_t<I>::int8 || store_t<I>::lowp) v.bias = st.bias();
    if constexpr (store_t<I>::int8) v.weight_scales = st.scales();
    v.input = st.x_params;
    return v;
  }

  /// Runs `batch` samples (batch × Model::input_size floats).
  /// @return batch × Model::output_size floats, valid until the next call
  /// @throws tinylarge::invalid_argument (freestanding: the fatal-error
  ///         handler) if batch is 0 or above `max_batch`
  const float* forward(const float* x, std::size_t batch) {
    TINYLARGE_REQUIRE(batch > 0, errc::invalid_argument, "mixed_inference_network::forward: batch must be positive");
    TINYLARGE_REQUIRE(activations_t::fits(batch), errc::invalid_argument,
                      "mixed_inference_network::forward: batch above MaxBatch (the static activation buffers' size)");
    act_.reserve(batch);
    converted_ = 0;
    const float* cur = x;
    std::size_t slot = 0;
    Model::for_each_layer([&]<std::size_t I>() {
      using L = typename Model::template layer<I>;
      using St = store_t<I>;
      auto& st = std::get<I>(stores_);
      float* out = act_.out(slot);
      if constexpr (St::gemm) {
        constexpr std::size_t k = St::k, n = L::out_channels;
        const std::size_t rows = batch * St::rows_per_sample;
        const float* xin = cur;
        if constexpr (L::kind == layer_kind::conv2d) {
          L::im2col(cur, act_.workspace(), batch);
          xin = act_.workspace();
        }
        if constexpr (St::int8) {
          std::int8_t* xq = act_.quantized();
          std::int32_t* acc = act_.accumulators();
          kernels::quantize_s8(Backend{}, xin, rows * k, st.x_params, int8_activation_range, xq);
          kernels::dense_s8_params dp{};
          dp.input_zero_point = st.x_params.zero_point;
          kernels::dense_s8_s32(Backend{}, rows, n, k, xq, st.weights(), dp, acc);
          const float sx = st.x_params.scale;
          const float* sw = st.scales();
          const float* b = st.bias();
          for (std::size_t r = 0; r < rows; ++r)
            for (std::size_t o = 0; o < n; ++o)
              out[r * n + o] = static_cast<float>(acc[r * n + o]) * (sx * sw[St::per_channel ? o : 0]) + b[o];
          converted_ += rows * k + rows * n;
        } else if constexpr (!St::lowp) {
          kernels::dense_f32(Backend{}, rows, n, k, xin, st.weights(), st.bias(), out);
        } else if constexpr (kernels::kernel_float<typename St::weight_type>) {
          kernels::dense<Backend>(rows, n, k, xin, st.weights(), st.bias(), out);
        } else {
          using P = layer_precision_t<L, Precision>;
          for (std::size_t i = 0; i < L::weight_count; ++i) st.widened[i] = P::decode(st.weights()[i]);
          kernels::dense<Backend>(rows, n, k, xin, st.widened.data(), st.bias(), out);
        }
      } else {
        context ctx{act_.workspace(), nullptr, nullptr, false};
        L::forward(st.weights(), cur, out, batch, ctx);
      }
      cur = out;
      slot ^= 1;
    });
    return cur;
  }

  /// One sample: `forward(x, 1)`.
  const float* forward(const float* x) { return forward(x, 1); }

  /// Bytes of the weights as stored (each layer's storage type).
  static constexpr std::size_t weight_bytes() noexcept {
    std::size_t b = 0;
    Model::for_each_layer([&]<std::size_t I>() {
      using L = typename Model::template layer<I>;
      b += L::weight_count * sizeof(weight_type<I>);
    });
    return b;
  }
  /// Bytes of everything else the layers keep: fp32 biases and int8 weight scales.
  static constexpr std::size_t other_parameter_bytes() noexcept {
    std::size_t b = 0;
    Model::for_each_layer([&]<std::size_t I>() {
      using L = typename Model::template layer<I>;
      b += L::bias_count * sizeof(float) + store_t<I>::scale_values * sizeof(float);
    });
    return b;
  }
  /// Elements converted between precisions by the last `forward` (int8 layers: input quantization and output
  /// dequantization).
  std::size_t converted_elements() const noexcept { return converted_; }

 private:
  typename mixed_detail::stores_of<Model, Precision, Storage>::type stores_{};
  activations_t act_{};
  std::size_t converted_ = 0;
};

}  // namespace tinylarge::nn
