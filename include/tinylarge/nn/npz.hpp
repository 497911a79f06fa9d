/// @file nn/npz.hpp
/// @brief Weight import and export as NumPy `.npz`, in PyTorch's layout, so
///        that a `torch.nn.Sequential` with the same layers loads our weights
///        with `load_state_dict` and we load its `state_dict` (host profile).
///
/// Array names are `"<I>.weight"` and `"<I>.bias"`, I being the layer's index
/// in the `sequential` — which is its index in a `torch.nn.Sequential` that
/// lists the same layers (activations, pooling and `nn.Flatten()` included).
/// Layouts are converted on the way:
///  - dense: [Out, In] as `nn.Linear`; when the dense layer follows a
///    `flatten` of an H×W×C image, its columns are permuted from our NHWC
///    order (h, w, c) to PyTorch's NCHW flattening order (c, h, w);
///  - conv2d: ours [OutC][K][K][C] ↔ `nn.Conv2d` [OutC][C][K][K];
///  - depthwise_conv2d: ours [C·M][K·K] = `nn.Conv2d(groups=C)` [C·M][1][K][K].
///
/// Python side:
/// @code{.py}
///   sd = {k: torch.from_numpy(v) for k, v in np.load("model.npz").items()}
///   model.load_state_dict(sd)                     # and back:
///   np.savez("model.npz", **{k: v.numpy() for k, v in model.state_dict().items()})
/// @endcode
#pragma once

#include <cstddef>
#include <map>
#include <string>
#include <vector>

#include "../core/error.hpp"
#include "../io/npy.hpp"
#include "../io/npz.hpp"
#include "network.hpp"

namespace tinylarge::nn {

namespace detail {
/// The image shape that was flattened into layer I's flat input, walking
/// back through shape-preserving layers; shape<1, 1, N> when there is none.
template <class Model, std::size_t I>
struct flattened_from {
  using type = shape<1, 1, Model::template layer<I>::in_shape::size>;
};
template <class Model, std::size_t I>
  requires(I > 0)
struct flattened_from<Model, I> {
  using prev = typename Model::template layer<I - 1>;
  static constexpr layer_kind k = prev::kind;
  using type = std::conditional_t<
      k == layer_kind::flatten, typename prev::in_shape,
      std::conditional_t<k == layer_kind::dropout || k == layer_kind::relu || k == layer_kind::relu6 ||
                             k == layer_kind::sigmoid || k == layer_kind::tanh,
                         typename flattened_from<Model, I - 1>::type, shape<1, 1, prev::out_shape::size>>>;
};

/// Index in our layout ↔ index in PyTorch's layout for the weights of layer I.
/// `to_torch(i)` gives the torch index of our element i.
template <class Model, std::size_t I>
std::size_t to_torch_index(std::size_t i) noexcept {
  using L = typename Model::template layer<I>;
  if constexpr (L::kind == layer_kind::dense) {
    using S = typename flattened_from<Model, I>::type;
    constexpr std::size_t in = L::in_shape::size;
    const std::size_t o = i / in, col = i % in;
    // our column (h, w, c) → torch column (c, h, w)
    const std::size_t c = col % S::c, hw = col / S::c;
    return o * in + c * (S::h * S::w) + hw;
  } else if constexpr (L::kind == layer_kind::conv2d) {
    constexpr std::size_t K = L::kernel, C = L::in_shape::c;
    const std::size_t o = i / (K * K * C), r = i % (K * K * C);
    const std::size_t kk = r / C, c = r % C;  // ours: (ky·K + kx)·C + c
    return o * (K * K * C) + c * (K * K) + kk;
  } else {
    return i;  // depthwise: identical order
  }
}

template <class Model, std::size_t I>
std::vector<std::size_t> torch_weight_shape() {
  using L = typename Model::template layer<I>;
  if constexpr (L::kind == layer_kind::dense) {
    return {L::out_channels, L::in_shape::size};
  } else if constexpr (L::kind == layer_kind::conv2d) {
    return {L::out_channels, L::in_shape::c, L::kernel, L::kernel};
  } else {
    return {L::out_channels, 1, L::kernel, L::kernel};
  }
}
}  // namespace detail

/// The weights and biases of `net` as named arrays in PyTorch's layout.
template <class Model, class S>
std::map<std::string, io::npy_array> to_state_dict(const network<Model, S>& net) {
  std::map<std::string, io::npy_array> out;
  Model::for_each_layer([&]<std::size_t I>() {
    using L = typename Model::template layer<I>;
    static_assert(!fp32_only(L::kind), "tinylarge: to_state_dict / save_npz: the layers of nn/transformer.hpp have "
                                       "no PyTorch state-dict mapping yet (copy network::parameters() instead)");
    if constexpr (has_weights(L::kind)) {
      io::npy_array w{detail::torch_weight_shape<Model, I>(), std::vector<float>(L::weight_count)};
      const auto src = net.template weights<I>();
      for (std::size_t i = 0; i < L::weight_count; ++i) w.data[detail::to_torch_index<Model, I>(i)] = src[i];
      const auto b = net.template biases<I>();
      out.emplace(std::to_string(I) + ".weight", std::move(w));
      out.emplace(std::to_string(I) + ".bias", io::npy_array{{L::bias_count}, std::vector<float>(b.begin(), b.end())});
    }
  });
  return out;
}

/// Load named arrays in PyTorch's layout into `net`. Every array is checked
/// (present, shape, finite values) before any parameter is written, so `net`
/// is untouched when this throws.
/// @param policy  NaN / ±Inf values are refused unless `non_finite_policy::allow`
/// @throws tl::invalid_argument when an array is missing, tl::shape_error
///         when a shape differs, tl::numeric_error when a value is NaN or
///         ±Inf (the message names the array and the index)
template <class Model, class S>
void from_state_dict(const std::map<std::string, io::npy_array>& arrays, network<Model, S>& net,
                     non_finite_policy policy = non_finite_policy::reject) {
  const auto find = [&]<std::size_t I>(const std::string& name, std::vector<std::size_t> want) -> const io::npy_array& {
    using L [[maybe_unused]] = typename Model::template layer<I>;  // for the messages
    const auto it = arrays.find(name);
    TINYLARGE_REQUIRE(it != arrays.end(), errc::invalid_argument,
                      "tinylarge: state dict has no '" + name + "' for layer " + std::to_string(I) + " (" +
                          L::name() + ")");
    TINYLARGE_REQUIRE(it->second.shape == want, errc::shape_mismatch,
                      "tinylarge: array '" + name + "' has the wrong shape for layer " + std::to_string(I) + " (" +
                          L::name() + ")");
    const std::size_t bad = first_non_finite(it->second.data.data(), it->second.data.size());
    TINYLARGE_REQUIRE(policy == non_finite_policy::allow || bad == it->second.data.size(), errc::non_finite,
                      "tinylarge: array '" + name + "' holds a NaN or infinite value at flat index " +
                          std::to_string(bad) +
                          " (a float64 beyond the float range becomes infinite); refused — pass "
                          "non_finite_policy::allow to load it anyway");
    return it->second;
  };
  // Validate every array first, then write.
  Model::for_each_layer([&]<std::size_t I>() {
    using L = typename Model::template layer<I>;
    static_assert(!fp32_only(L::kind), "tinylarge: from_state_dict / load_npz: the layers of nn/transformer.hpp "
                                       "have no PyTorch state-dict mapping yet (copy into network::parameters())");
    if constexpr (has_weights(L::kind)) {
      (void)find.template operator()<I>(std::to_string(I) + ".weight", detail::torch_weight_shape<Model, I>());
      (void)find.template operator()<I>(std::to_string(I) + ".bias", {L::bias_count});
    }
  });
  Model::for_each_layer([&]<std::size_t I>() {
    using L = typename Model::template layer<I>;
    if constexpr (has_weights(L::kind)) {
      const io::npy_array& w =
          find.template operator()<I>(std::to_string(I) + ".weight", detail::torch_weight_shape<Model, I>());
      const io::npy_array& b = find.template operator()<I>(std::to_string(I) + ".bias", {L::bias_count});
      auto dst = net.template weights<I>();
      for (std::size_t i = 0; i < L::weight_count; ++i) dst[i] = w.data[detail::to_torch_index<Model, I>(i)];
      auto db = net.template biases<I>();
      for (std::size_t i = 0; i < L::bias_count; ++i) db[i] = b.data[i];
    }
  });
}

/// Write `net`'s parameters to a `.npz` file (see the file comment).
template <class Model, class S>
void save_npz(const std::string& path, const network<Model, S>& net) {
  io::save_npz(path, to_state_dict(net));
}

/// Read parameters from a `.npz` file written by `save_npz` or by NumPy from a
/// PyTorch `state_dict`. The file is read under `limits` (size cap, ratio,
/// members: see `io::npy_limits`); NaN / ±Inf values (float64 values beyond
/// the float range included) are refused unless `policy` is `allow`, and
/// `net` is untouched when this throws.
/// @throws as `io::load_npz` and `from_state_dict`
template <class Model, class S>
void load_npz(const std::string& path, network<Model, S>& net,
              non_finite_policy policy = non_finite_policy::reject, const io::npy_limits& limits = {}) {
  from_state_dict(io::load_npz(path, limits), net, policy);
}

}  // namespace tinylarge::nn
