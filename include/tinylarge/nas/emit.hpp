/// @file nas/emit.hpp
/// @brief Output of a search: the chosen model as a C++ header (its
///        `tinylarge::nn::sequential<…>` type and trained parameters), the
///        Pareto front as JSON, and a plot of the search as SVG.
///
/// The header `emit_header` writes compiles on its own (it includes
/// `tinylarge/nn/layers.hpp` and `tinylarge/nn/sequential.hpp`, nothing of
/// this folder) and declares, in the namespace the caller names:
///
/// @code
///   using model = ::tinylarge::nn::sequential<::tinylarge::nn::dense<784, 128>, ::tinylarge::nn::relu,
///                                             ::tinylarge::nn::dense<128, 5>>;
///   inline constexpr const char* layer_precisions[] = {"int8", "int8"};
///   inline constexpr unsigned layer_sparsity_percent[] = {75, 0};
///   inline constexpr unsigned cut_layer = 0;  // split deployment: device runs model layers [0, cut_layer); 0 = no split
///   inline constexpr float parameters[] = {…};  // model::param_count values
/// @endcode
///
/// A genome with a conv stem starts the type with `input<H, W, C>` and, per
/// conv layer, `conv2d<c, k, 1, k/2>, relu, max_pool2d<2>`, then `flatten`;
/// the header adds `conv_layers` (0 for an MLP) and `conv_precisions[]`, and
/// `parameters` starts with the conv layers' weights ([c][k][k][c_in]) and
/// biases, in the layout of `nn::network<model>::parameters()`.
///
/// `layer_sparsity_percent` is the compression level of each dense layer
/// (magnitude-pruning sparsity of its weights); the pruned weights are zeros
/// in `parameters`, so a dense deployment computes the pruned model, and a
/// compressed one (`compress::model_file_builder::add_int8_csr`) stores only
/// the kept weights.
///
/// so that `tl::nn::network<ns::model> net;` followed by
/// `std::copy(std::begin(ns::parameters), std::end(ns::parameters), net.parameters().begin());`
/// instantiates the searched model at compile time with its trained weights
/// (int8 layers: deploy through `nn::quantize_post_training` into
/// `nn::quantized_network<ns::model, tl::int8_per_channel>`).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdio>
#include <string>
#include <vector>

#include "../compress/pruning.hpp"
#include "../core/error.hpp"
#include "profile.hpp"
#include "search.hpp"
#include "space.hpp"
#include "transfer.hpp"

namespace tinylarge::nas {

namespace detail {
inline std::string format_float(double v, const char* fmt = "%.9g") {
  char buf[48];
  std::snprintf(buf, sizeof buf, fmt, v);
  std::string s = buf;
  // Make it a C++ float literal: needs a '.' or an exponent before the 'f'.
  if (s.find_first_of(".eEn") == std::string::npos) s += ".0";
  return s;
}
}  // namespace detail

/// The `sequential<…>` type of genome `g` in `space`, fully qualified.
inline std::string sequential_type(const mlp_space& space, const genome& g) {
  std::string t = "::tinylarge::nn::sequential<";
  if (!g.convs.empty()) {  // input<H, W, C>, then per conv layer conv2d<C, K, 1, K/2>, relu, max_pool2d<2>; flatten
    t += "::tinylarge::nn::input<" + std::to_string(space.image_height) + ", " + std::to_string(space.image_width) + ", " +
         std::to_string(space.image_channels) + ">, ";
    for (const conv_gene& c : g.convs)
      t += "::tinylarge::nn::conv2d<" + std::to_string(c.channels) + ", " + std::to_string(c.kernel) + ", 1, " +
           std::to_string(c.kernel / 2) + ">, ::tinylarge::nn::relu, ::tinylarge::nn::max_pool2d<2>, ";
    t += "::tinylarge::nn::flatten, ";
  }
  std::size_t in = space.dense_inputs(g);
  for (std::size_t l = 0; l < g.depth(); ++l) {
    t += "::tinylarge::nn::dense<" + std::to_string(in) + ", " + std::to_string(g.widths[l]) + ">, ::tinylarge::nn::relu, ";
    in = g.widths[l];
  }
  t += "::tinylarge::nn::dense<" + std::to_string(in) + ", " + std::to_string(space.outputs) + ">>";
  return t;
}

/// Model layers of the conv stem of `g` in its `sequential<…>` type: conv,
/// relu and pool per conv layer, then flatten (0 without a stem).
inline std::size_t stem_model_layers(const genome& g) noexcept { return g.convs.empty() ? 0 : 3 * g.convs.size() + 1; }

/// Number of parameters of `g` (weights and biases of every conv and dense layer).
inline std::size_t parameter_count(const mlp_space& space, const genome& g) {
  std::size_t n = detail::stem_parameter_count(space, g), in = space.dense_inputs(g);
  for (std::size_t l = 0; l <= g.depth(); ++l) {
    const std::size_t out = l == g.depth() ? space.outputs : g.widths[l];
    n += in * out + out;
    in = out;
  }
  return n;
}

/// The text of a header declaring `model`, `layer_precisions` and
/// `parameters` of `m` in namespace `ns` (see the file comment).
/// Raises `errc::shape_mismatch` when `m.parameters` has not
/// `parameter_count(space, m.g)` values.
inline std::string emit_header(const mlp_space& space, const transferred_model& m, const std::string& ns) {
  const std::size_t n = parameter_count(space, m.g);
  TINYLARGE_REQUIRE(m.parameters.size() == n, errc::shape_mismatch,
                    "nas::emit_header: the parameter count differs from the genome's");
  std::string h;
  h += "// Generated by tinylarge::nas::emit_header (do not edit).\n";
  h += "// genome " + m.g.key() + ", accuracy " + detail::format_float(m.accuracy, "%.4f") + ", " + std::to_string(n) +
       " parameters\n";
  h += "#pragma once\n\n#include <tinylarge/nn/layers.hpp>\n#include <tinylarge/nn/sequential.hpp>\n\n";
  h += "namespace " + ns + " {\n\n";
  h += "/// The searched architecture.\nusing model = " + sequential_type(space, m.g) + ";\n\n";
  h += "/// Conv layers of the stem (each conv2d, relu, max_pool2d<2>; then flatten): 0 = an MLP.\n";
  h += "inline constexpr unsigned conv_layers = " + std::to_string(m.g.convs.size()) + ";\n";
  if (!m.g.convs.empty()) {
    h += "/// Precision chosen for each conv layer (not pruned).\ninline constexpr const char* conv_precisions[] = {";
    for (std::size_t j = 0; j < m.g.convs.size(); ++j) h += std::string(j ? ", " : "") + "\"" + to_string(m.g.convs[j].precision) + "\"";
    h += "};\n";
  }
  h += "\n/// Precision chosen for each dense layer (the last is the head).\ninline constexpr const char* layer_precisions[] = {";
  for (std::size_t l = 0; l < m.g.precisions.size(); ++l) h += std::string(l ? ", " : "") + "\"" + to_string(m.g.precisions[l]) + "\"";
  h += "};\n\n";
  h += "/// Magnitude-pruning sparsity (percent of the weights, zeros in `parameters`) of each dense layer.\n";
  h += "/// Per layer: ";
  for (std::size_t l = 0; l < m.g.precisions.size(); ++l) {
    const std::size_t in = l == 0 ? space.dense_inputs(m.g) : m.g.widths[l - 1], out = l == m.g.depth() ? space.outputs : m.g.widths[l];
    const std::size_t pruned = compress::prune_count(in * out, m.g.sparsity(l) / 100.0);
    h += std::string(l ? "; " : "") + std::to_string(pruned) + " of " + std::to_string(in * out) + " weights pruned";
  }
  h += ".\ninline constexpr unsigned layer_sparsity_percent[] = {";
  for (std::size_t l = 0; l < m.g.precisions.size(); ++l) h += std::string(l ? ", " : "") + std::to_string(m.g.sparsity(l));
  h += "};\n\n";
  h += "/// Split deployment: the device runs layers [0, cut_layer) of `model` (tinylarge::cut<cut_layer>), a server the\n";
  if (m.g.cut > 0)
    h += "/// rest; the first " + std::to_string(m.g.cut) + " hidden layer(s) on the device, " + std::to_string(smashed_bytes(m.g)) +
         " bytes per sample cross the cut.\n";
  else
    h += "/// rest; 0 = no split (the device runs the whole model).\n";
  h += "inline constexpr unsigned cut_layer = " + std::to_string(m.g.cut > 0 ? stem_model_layers(m.g) + 2 * m.g.cut : 0) + ";\n\n";
  h += "/// Trained parameters in the layout of tinylarge::nn::network<model>::parameters().\n";
  h += "inline constexpr float parameters[] = {";
  for (std::size_t i = 0; i < n; ++i) {
    if (i % 8 == 0) h += "\n   ";
    h += ' ';
    h += detail::format_float(m.parameters[i]);
    h += "f,";
  }
  h += "\n};\n";
  h += "static_assert(sizeof(parameters) / sizeof(parameters[0]) == model::param_count,\n"
       "              \"the emitted parameters do not match the model\");\n\n";
  h += "}  // namespace " + ns + "\n";
  return h;
}

/// JSON of a search's feasible front (`feasible_front(history)`): the device,
/// the front's hypervolume against `flash_reference`, and per member the
/// genome and every objective.
inline std::string front_json(const std::vector<candidate>& history, const device_profile& device,
                              std::size_t flash_reference, const std::string& strategy) {
  std::string j = "{\n  \"strategy\": \"" + strategy + "\",\n  \"device\": \"" + device.name + "\",\n";
  j += "  \"evaluations\": " + std::to_string(history.size()) + ",\n";
  j += "  \"hypervolume\": " + detail::format_float(front_hypervolume(history, flash_reference), "%.6f") + ",\n";
  j += "  \"front\": [";
  bool first = true;
  for (std::size_t i : feasible_front(history)) {
    const candidate& c = history[i];
    j += first ? "\n" : ",\n";
    first = false;
    j += "    {\"genome\": \"" + c.g.key() + "\", \"convs\": [";
    for (std::size_t k = 0; k < c.g.convs.size(); ++k)
      j += std::string(k ? ", " : "") + "{\"kernel\": " + std::to_string(c.g.convs[k].kernel) + ", \"channels\": " +
           std::to_string(c.g.convs[k].channels) + ", \"precision\": \"" + to_string(c.g.convs[k].precision) + "\"}";
    j += "], \"widths\": [";
    for (std::size_t l = 0; l < c.g.depth(); ++l) j += (l ? ", " : "") + std::to_string(c.g.widths[l]);
    j += "], \"precisions\": [";
    for (std::size_t l = 0; l < c.g.precisions.size(); ++l) j += std::string(l ? ", " : "") + "\"" + to_string(c.g.precisions[l]) + "\"";
    j += "], \"sparsity_percent\": [";
    for (std::size_t l = 0; l < c.g.precisions.size(); ++l) j += (l ? ", " : "") + std::to_string(c.g.sparsity(l));
    j += "], \"accuracy\": " + detail::format_float(c.obj.accuracy, "%.6f");
    j += ", \"flash_bytes\": " + std::to_string(c.obj.flash_bytes);
    j += ", \"arena_bytes\": " + std::to_string(c.obj.arena_bytes);
    j += ", \"macs\": " + std::to_string(c.obj.macs);
    j += ", \"latency_us\": " + detail::format_float(c.obj.latency_us, "%.3f");
    j += ", \"energy_uj\": " + detail::format_float(c.obj.energy_uj, "%.4f");
    j += ", \"cut\": " + std::to_string(c.g.cut);
    j += ", \"smashed_bytes\": " + std::to_string(c.obj.smashed_bytes);
    j += ", \"server_flash_bytes\": " + std::to_string(c.obj.server_flash_bytes);
    j += ", \"evaluation\": " + std::to_string(i) + "}";
  }
  j += "\n  ]\n}\n";
  return j;
}

/// A plot of a search as a standalone SVG image (no script, no external
/// resource; opens in any browser): every evaluated candidate at (flash bytes,
/// accuracy) — grey dots, infeasible ones as red crosses —, the feasible front
/// (`feasible_front`) as blue dots joined by its staircase and labelled with
/// the genomes, and the device's flash budget as a dashed line when it falls
/// in the plotted range. Flash is on a log scale.
/// @throws tl::invalid_argument when `history` is empty.
inline std::string front_svg(const std::vector<candidate>& history, const device_profile& device,
                             const std::string& title) {
  TINYLARGE_REQUIRE(!history.empty(), errc::invalid_argument, "nas::front_svg: the history is empty (nothing to plot)");
  auto esc = [](const std::string& t) {
    std::string o;
    for (const char c : t) {
      if (c == '&') o += "&amp;";
      else if (c == '<') o += "&lt;";
      else if (c == '>') o += "&gt;";
      else if (c == '"') o += "&quot;";
      else o += c;
    }
    return o;
  };
  auto num = [](double v) { return detail::format_float(v, "%.1f"); };
  double fmin = 1e300, fmax = 0, amin = 1, amax = 0;
  for (const candidate& c : history) {
    const double f = static_cast<double>(std::max<std::size_t>(c.obj.flash_bytes, 1));
    fmin = std::min(fmin, f);
    fmax = std::max(fmax, f);
    amin = std::min(amin, c.obj.accuracy);
    amax = std::max(amax, c.obj.accuracy);
  }
  const double x0 = std::floor(std::log10(fmin)), x1 = std::max(x0 + 1, std::ceil(std::log10(fmax)));
  const double y0 = std::floor(amin * 20) / 20, y1 = std::max(y0 + 0.05, std::ceil(amax * 20) / 20);
  constexpr double L = 70, R = 30, T = 40, B = 50, W = 720, H = 460;
  auto px = [&](double flash) { return L + (std::log10(std::max(flash, 1.0)) - x0) / (x1 - x0) * (W - L - R); };
  auto py = [&](double acc) { return H - B - (acc - y0) / (y1 - y0) * (H - T - B); };
  std::string s = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" + num(W) + "\" height=\"" + num(H) +
                  "\" font-family=\"sans-serif\" font-size=\"11\">\n";
  s += "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
  s += "<text x=\"" + num(W / 2) + "\" y=\"22\" text-anchor=\"middle\" font-size=\"14\">" + esc(title) + "</text>\n";
  // Axes, grid and ticks.
  s += "<g stroke=\"#ddd\">\n";
  for (double e = x0; e <= x1 + 1e-9; e += 1)
    for (const double m : {1.0, 2.0, 5.0}) {
      const double f = m * std::pow(10.0, e);
      if (std::log10(f) > x1 + 1e-9) break;
      s += "<line x1=\"" + num(px(f)) + "\" y1=\"" + num(T) + "\" x2=\"" + num(px(f)) + "\" y2=\"" + num(H - B) + "\"/>\n";
    }
  for (double a = y0; a <= y1 + 1e-9; a += 0.05)
    s += "<line x1=\"" + num(L) + "\" y1=\"" + num(py(a)) + "\" x2=\"" + num(W - R) + "\" y2=\"" + num(py(a)) + "\"/>\n";
  s += "</g>\n<g text-anchor=\"middle\">\n";
  for (double e = x0; e <= x1 + 1e-9; e += 1) {
    const double f = std::pow(10.0, e);
    char label[32];
    std::snprintf(label, sizeof label, "%g %s", f >= 1e6 ? f / 1e6 : f >= 1e3 ? f / 1e3 : f,
                  f >= 1e6 ? "MB" : f >= 1e3 ? "kB" : "B");
    s += "<text x=\"" + num(px(f)) + "\" y=\"" + num(H - B + 16) + "\">" + std::string(label) + "</text>\n";
  }
  s += "<text x=\"" + num((L + W - R) / 2) + "\" y=\"" + num(H - 12) + "\">flash (bytes, log scale)</text>\n</g>\n";
  for (double a = y0; a <= y1 + 1e-9; a += 0.05)
    s += "<text x=\"" + num(L - 6) + "\" y=\"" + num(py(a) + 4) + "\" text-anchor=\"end\">" +
         detail::format_float(a, "%.2f") + "</text>\n";
  s += "<text transform=\"translate(16 " + num((T + H - B) / 2) +
       ") rotate(-90)\" text-anchor=\"middle\">accuracy after transfer (validation)</text>\n";
  if (device.flash_bytes > 0) {
    const double f = static_cast<double>(device.flash_bytes);
    if (std::log10(f) >= x0 && std::log10(f) <= x1) {
      s += "<line x1=\"" + num(px(f)) + "\" y1=\"" + num(T) + "\" x2=\"" + num(px(f)) + "\" y2=\"" + num(H - B) +
           "\" stroke=\"#c00\" stroke-dasharray=\"5 4\"/>\n";
      s += "<text x=\"" + num(px(f) - 4) + "\" y=\"" + num(T + 12) + "\" text-anchor=\"end\" fill=\"#c00\">" +
           esc(device.name) + " flash budget</text>\n";
    }
  }
  // Every candidate.
  const std::vector<std::size_t> front = feasible_front(history);
  s += "<g class=\"candidates\">\n";
  for (const candidate& c : history) {
    const double x = px(static_cast<double>(c.obj.flash_bytes)), y = py(c.obj.accuracy);
    if (c.obj.feasible()) {
      s += "<circle cx=\"" + num(x) + "\" cy=\"" + num(y) + "\" r=\"2.5\" fill=\"#999\"/>\n";
    } else {
      s += "<path d=\"M" + num(x - 3) + " " + num(y - 3) + "l6 6m0 -6l-6 6\" stroke=\"#c00\"/>\n";
    }
  }
  s += "</g>\n";
  // The front: a staircase through its members (sorted by flash), labelled.
  if (!front.empty()) {
    std::string d;
    for (std::size_t k = 0; k < front.size(); ++k) {
      const candidate& c = history[front[k]];
      const double x = px(static_cast<double>(c.obj.flash_bytes)), y = py(c.obj.accuracy);
      if (k == 0) d += "M" + num(x) + " " + num(y);
      else d += "H" + num(x) + "V" + num(y);
    }
    s += "<path class=\"front\" d=\"" + d + "\" fill=\"none\" stroke=\"#1f5fbf\" stroke-width=\"1.5\"/>\n";
    s += "<g class=\"front-members\" font-size=\"9\" fill=\"#1f5fbf\">\n";
    for (std::size_t k = 0; k < front.size(); ++k) {
      const candidate& c = history[front[k]];
      const double x = px(static_cast<double>(c.obj.flash_bytes)), y = py(c.obj.accuracy);
      s += "<circle cx=\"" + num(x) + "\" cy=\"" + num(y) + "\" r=\"4\"/>";
      s += "<text x=\"" + num(x + 6) + "\" y=\"" + num(y + (k % 2 ? 12 : -6)) + "\">" + esc(c.g.key()) + "</text>\n";
    }
    s += "</g>\n";
  }
  s += "</svg>\n";
  return s;
}

}  // namespace tinylarge::nas
