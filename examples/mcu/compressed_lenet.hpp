// The compressed Fashion-MNIST LeNet-300-100 of examples/mcu, as the firmware runs it:
// the model file (compress/model_file.hpp: relative-index CSR, codebook indices, gap and
// index streams Huffman-coded) stays in flash; at boot the reader checks every CRC and
// structure, the Huffman streams are decoded into a caller-provided (static) buffer, and
// each layer's fp32 codebook becomes int8 (compress/sparse_s8.hpp). Inference is then
// integer only, in an activation arena of exactly lenet_300_100::arena_bytes<int8> bytes.
//
// The same code runs in three places: the firmware (Cortex-M4F and Cortex-M3 under QEMU),
// its host build (the parity check of scripts/mcu_example.sh) and the generator
// make_model.cpp (the logits it embeds as expected values, and the accuracy on the whole
// test set). Freestanding: no heap, no exceptions.
#pragma once

#include <cstddef>
#include <cstdint>

#include <tinylarge/compress/model_file.hpp>
#include <tinylarge/compress/sparse_s8.hpp>
#include <tinylarge/nn/sequential.hpp>
#include <tinylarge/precision/int8.hpp>

namespace mcu_example {

namespace cz = ::tinylarge::compress;

using lenet_300_100 =
    tl::nn::sequential<tl::nn::dense<784, 300>, tl::nn::relu, tl::nn::dense<300, 100>, tl::nn::relu, tl::nn::dense<100, 10>>;

inline constexpr std::size_t input_size = lenet_300_100::input_size;
inline constexpr std::size_t classes = lenet_300_100::output_size;
inline constexpr std::size_t hidden = 100;  ///< width of the penultimate layer (the fine-tuning features)
inline constexpr std::size_t layer_count = 3;
/// The batch-1 int8 activation arena: a constexpr of the model type (784 + 300 bytes).
inline constexpr std::size_t arena_bytes = lenet_300_100::arena_bytes<tl::int8_per_channel>;
inline constexpr std::size_t widths[layer_count + 1] = {784, 300, 100, 10};

/// Input quantization: a pixel p in 0..255 is the real value p/255, stored as p − 128
/// (scale 1/255, zero point −128; exact).
inline constexpr std::int32_t input_zero_point = -128;

class compressed_lenet {
 public:
  /// Validates the model file (CRCs, structure), decodes its coded streams into `decode`
  /// (`decode_capacity` bytes) and quantizes the codebooks. `scales`/`zeros`: the four
  /// activation tensors (input, after layer 0, 1, 2), from the host calibration.
  [[nodiscard]] tl::status load(const std::uint8_t* file, std::size_t size, const float* scales,
                                const std::int32_t* zeros, std::uint8_t* decode, std::size_t decode_capacity) noexcept {
    TINYLARGE_TRY(reader_.open(file, size));
    TINYLARGE_CHECK(reader_.layer_count() == layer_count, tl::errc::shape_mismatch,
                    "example: the model file does not have 3 layers");
    TINYLARGE_CHECK(scales[0] > 0.0f && zeros[0] == input_zero_point, tl::errc::invalid_argument,
                    "example: the input quantization must be (1/255, -128)");
    std::size_t used = 0, bias_at = 0;
    for (std::size_t i = 0; i < layer_count; ++i) {
      cz::layer_view v;
      TINYLARGE_TRY(reader_.layer(i, v));
      TINYLARGE_CHECK(v.kind == cz::layer_kind::dense && v.format == cz::weight_format::csr_codebook,
                      tl::errc::invalid_argument, "example: every layer must be a dense CSR-codebook layer");
      TINYLARGE_CHECK(v.rows == widths[i + 1] && v.cols == widths[i], tl::errc::shape_mismatch,
                      "example: the layer shapes are not LeNet-300-100's");
      const bool relu = i + 1 < layer_count;
      TINYLARGE_CHECK(v.activation == (relu ? cz::activation_kind::relu : cz::activation_kind::none),
                      tl::errc::invalid_argument, "example: relu after the hidden layers, none after the last");
      TINYLARGE_CHECK(decode_capacity - used >= v.decode_bytes, tl::errc::capacity_exceeded,
                      "example: the decode buffer is too small");
      const std::size_t need = v.decode_bytes;
      TINYLARGE_TRY(reader_.decode_layer(i, decode + used, decode_capacity - used, v));
      decode_bytes_[i] = need;
      used += need;
      TINYLARGE_TRY(cz::quantize_csr_codebook(v.csr_codebook, v.bias, {scales[i], zeros[i]},
                                              {scales[i + 1], zeros[i + 1]}, relu, bias_ + bias_at, layers_[i]));
      bias_at += v.rows;
      if (i + 1 == layer_count) last_ = v;
    }
    decode_used_ = used;
    return tl::status::success();
  }

  /// Classifies one 28×28 image (pixels 0..255): returns the 10 int8 logits (valid until
  /// the next call); `features()` then holds the penultimate int8 activations.
  const std::int8_t* forward(const std::uint8_t* pixels) noexcept {
    std::int8_t* a = arena_;
    for (std::size_t i = 0; i < input_size; ++i) a[i] = static_cast<std::int8_t>(static_cast<int>(pixels[i]) - 128);
    std::int8_t* h1 = a + arena_bytes - widths[1];
    std::int8_t* h2 = a;  // the input is dead once layer 0 ran
    std::int8_t* y = a + arena_bytes - widths[3];
    layers_[0].forward(1, a, h1);
    layers_[1].forward(1, h1, h2);
    layers_[2].forward(1, h2, y);
    return y;
  }
  const std::int8_t* features() const noexcept { return arena_; }
  tl::quant_params feature_params() const noexcept { return layers_[1].output; }

  /// The fp32 last layer as stored in the file (dense 10×100 and its biases): the starting
  /// point of on-device fine-tuning.
  void last_layer_f32(float* w, float* b) const noexcept {
    const auto& v = last_.csr_codebook;
    for (std::size_t i = 0; i < v.rows * v.cols; ++i) w[i] = 0.0f;
    for (std::size_t o = 0; o < v.rows; ++o) {
      std::size_t col = 0;
      for (std::size_t j = v.row_ptr[o]; j < v.row_ptr[o + 1]; ++j) {
        col += v.gaps[j];
        w[o * v.cols + col] = v.values(j);
        ++col;
      }
      b[o] = last_.bias ? last_.bias[o] : 0.0f;
    }
  }

  const cz::csr_codebook_s8_layer& layer(std::size_t i) const noexcept { return layers_[i]; }
  std::size_t entries(std::size_t i) const noexcept { return layers_[i].w.row_ptr[layers_[i].w.rows]; }
  std::size_t codebook_size(std::size_t i) const noexcept {
    cz::layer_view v;
    return reader_.layer(i, v) ? v.csr_codebook.values.codebook_size : 0;
  }
  std::size_t decode_used() const noexcept { return decode_used_; }
  std::size_t decode_bytes(std::size_t i) const noexcept { return decode_bytes_[i]; }

  /// RAM of this object: arena, quantized codebooks, int32 biases, views.
  static constexpr std::size_t object_bytes() noexcept { return sizeof(compressed_lenet); }

 private:
  cz::model_file_reader reader_{};
  cz::csr_codebook_s8_layer layers_[layer_count];
  cz::layer_view last_{};
  std::int32_t bias_[300 + 100 + 10]{};
  std::size_t decode_bytes_[layer_count]{};
  std::size_t decode_used_ = 0;
  alignas(4) std::int8_t arena_[arena_bytes]{};
};

}  // namespace mcu_example
