// The inference loop shared by the convolutional firmware programs (cnn_int8.cpp,
// cnn_compiled.cpp): run the embedded int8 inputs, print "input i: class c, logits …" and
// count the logits that differ from the host's. Include after defining `out::puts` and
// `out::put_int` (semihosting on the device, stdio on the host).
#pragma once

#include <cstddef>
#include <cstdint>

namespace mcu_cnn {

inline void put_line(const char* a, long v, const char* b = "\n") {
  out::puts(a);
  out::put_int(v);
  out::puts(b);
}

/// Runs `count` inputs of `Model::input_size` int8 values through `net`; returns the number of
/// output values that differ from `expected` (count × `Model::output_size`).
template <class Model, class Net>
std::size_t run_inputs(Net& net, const std::int8_t* inputs, const std::int8_t* expected, std::size_t count) {
  constexpr std::size_t in_n = Model::input_size, out_n = Model::output_size;
  std::size_t differ = 0;
  for (std::size_t i = 0; i < count; ++i) {
    const std::int8_t* y = net.forward(inputs + i * in_n);
    std::size_t best = 0;
    for (std::size_t j = 1; j < out_n; ++j) best = y[j] > y[best] ? j : best;
    put_line("input ", static_cast<long>(i), "");
    put_line(": class ", static_cast<long>(best), ", logits");
    for (std::size_t j = 0; j < out_n; ++j) {
      put_line(" ", y[j], "");
      differ += y[j] != expected[i * out_n + j];
    }
    out::puts("\n");
  }
  put_line("logits differing from the host's: ", static_cast<long>(differ));
  return differ;
}

}  // namespace mcu_cnn
