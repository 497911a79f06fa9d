/// @file io/xnpy.hpp
/// @brief `.npy` / `.npz` files as xtensor arrays (host profile).
///
/// @code
///   xt::xtensor<float, 2> w = {{1, 2, 3}, {4, 5, 6}};
///   tl::io::save_npy("w.npy", xt::transpose(w));                   // any xexpression, written C order
///   auto a = tl::io::load_npy_xarray("w.npy");                      // xt::xarray<float>, shape {3, 2}
///   auto t = tl::io::load_npy_xtensor<float, 2>("w.npy");           // xt::xtensor<float, 2>; rank checked
///   std::map<std::string, xt::xarray<float>> m = tl::io::load_npz_xarrays("model.npz");
///   tl::io::save_npz("copy.npz", m);
/// @endcode
///
/// Writing uses xtensor's own `xt::dump_npy` (into memory, then the library's
/// atomic `write_file`). Reading goes through the library's validating reader
/// (`io/npy.hpp`, `io/npz.hpp`), not `xt::load_npy`: xtensor 0.24's reader
/// allocates whatever the header declares before reading, does not notice a
/// truncated file, reads no `.npz`, converts no dtype and throws
/// `std::runtime_error`, whereas files are untrusted input here (sizes checked
/// against `npy_limits` before any allocation, dtypes converted with range
/// checks, errors are `tl::format_error` naming the file).
#pragma once

#include <array>
#include <cstddef>
#include <map>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include <xtensor/xadapt.hpp>
#include <xtensor/xarray.hpp>
#include <xtensor/xnpy.hpp>
#include <xtensor/xtensor.hpp>

#include "../core/error.hpp"
#include "file.hpp"
#include "npy.hpp"
#include "npz.hpp"

namespace tinylarge::io {

/// An `npy_array` as an `xt::xarray` with the same shape (the data is moved,
/// then laid out by xtensor; a 0-d array becomes a 0-d xarray).
template <npy_element T>
xt::xarray<T> to_xarray(basic_npy_array<T>&& a) {
  xt::xarray<T> out = xt::adapt(std::move(a.data), a.shape);
  return out;
}

/// An `npy_array` as an `xt::xtensor<T, N>`.
/// @throws tl::shape_error when the array does not have N dimensions.
template <npy_element T, std::size_t N>
xt::xtensor<T, N> to_xtensor(basic_npy_array<T>&& a, const std::string& what = "array") {
  TINYLARGE_REQUIRE(a.shape.size() == N, errc::shape_mismatch,
                    "tinylarge: " + what + " has " + std::to_string(a.shape.size()) +
                        " dimensions; expected " + std::to_string(N));
  std::array<std::size_t, N> shape{};
  for (std::size_t i = 0; i < N; ++i) shape[i] = a.shape[i];
  xt::xtensor<T, N> out = xt::adapt(std::move(a.data), shape);
  return out;
}

/// The elements of `e` in C order with its shape, as the library's `npy_array`.
template <npy_element T, class E>
basic_npy_array<T> to_npy_array(const xt::xexpression<E>& e) {
  const xt::xarray<T> a = e.derived_cast();  // evaluated, row-major
  basic_npy_array<T> out;
  out.shape.assign(a.shape().begin(), a.shape().end());
  out.data.assign(a.begin(), a.end());
  return out;
}

/// The bytes of a `.npy` file holding `e` (xtensor's `xt::dump_npy`, C order).
template <class E>
std::vector<std::uint8_t> encode_npy(const xt::xexpression<E>& e) {
  using T = typename E::value_type;
  static_assert(npy_element<T>, "tinylarge: encode_npy: the element type must be float, double or a "
                                "fixed-width integer (npy_element)");
  // Row-major first: xt::dump_npy writes a column-major array in Fortran
  // order, which this library's reader (and many others) refuse.
  const xt::xarray<T, xt::layout_type::row_major> a = e.derived_cast();
  const std::string s = xt::dump_npy(a);
  return std::vector<std::uint8_t>(s.begin(), s.end());
}

/// Write `e` to the `.npy` file `path` (atomically; dtype of E's element type).
/// @throws tl::io_error when the file cannot be written.
template <class E>
void save_npy(const std::string& path, const xt::xexpression<E>& e) {
  write_file(path, encode_npy(e));
}

/// Read the `.npy` file `path` as an `xt::xarray<T>` (validating reader,
/// dtype converted to T as `load_npy` does).
/// @throws as `load_npy`.
template <npy_element T = float>
xt::xarray<T> load_npy_xarray(const std::string& path, const npy_limits& limits = {}) {
  return to_xarray(load_npy<T>(path, limits));
}

/// Read the `.npy` file `path` as an `xt::xtensor<T, N>`.
/// @throws as `load_npy`, and tl::shape_error when the file's array does not
///         have N dimensions.
template <npy_element T, std::size_t N>
xt::xtensor<T, N> load_npy_xtensor(const std::string& path, const npy_limits& limits = {}) {
  return to_xtensor<T, N>(load_npy<T>(path, limits), detail::quoted(path));
}

/// Array `name` of a validated `.npz` archive as an `xt::xarray<T>`.
/// @throws as `npz_archive::get`.
template <npy_element T = float>
xt::xarray<T> get_xarray(const npz_archive& a, const std::string& name) {
  return to_xarray(a.get<T>(name));
}

/// Every array of the `.npz` file `path` as `xt::xarray<T>`, by name.
/// @throws as `npz_archive::load`.
template <npy_element T = float>
std::map<std::string, xt::xarray<T>> load_npz_xarrays(const std::string& path,
                                                      const npy_limits& limits = {}) {
  const npz_archive a = npz_archive::load(path, limits);
  std::map<std::string, xt::xarray<T>> out;
  for (const std::string& n : a.names()) out.emplace(n, get_xarray<T>(a, n));
  return out;
}

/// Add `e` to an archive under `name` (C order).
template <class E>
npz_writer& add_array(npz_writer& w, const std::string& name, const xt::xexpression<E>& e) {
  using T = typename E::value_type;
  static_assert(npy_element<T>, "tinylarge: add_array: the element type must be an npy_element");
  const xt::xarray<T, xt::layout_type::row_major> a = e.derived_cast();
  const std::vector<std::size_t> shape(a.shape().begin(), a.shape().end());
  return w.add<T>(name, std::span<const std::size_t>(shape), std::span<const T>(a.data(), a.size()));
}

/// Write named xtensor arrays to the `.npz` file `path` (sorted by name).
template <class A>
  requires xt::is_xexpression<A>::value
void save_npz(const std::string& path, const std::map<std::string, A>& arrays) {
  npz_writer w;
  for (const auto& [name, a] : arrays) add_array(w, name, a);
  w.save(path);
}

}  // namespace tinylarge::io
