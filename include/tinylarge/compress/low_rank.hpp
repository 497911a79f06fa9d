/// @file compress/low_rank.hpp
/// @brief Low-rank factorisation: truncated SVD of a dense out×in matrix, by rank or by
///        retained energy, into two factors that run as two products.
///
/// W (m×n) = U·Σ·Vᵀ. Keeping the r largest singular values gives the best rank-r
/// approximation in Frobenius norm (Eckart–Young 1936), with error
///
///   ‖W − U_r Σ_r V_rᵀ‖²_F = Σ_{i>r} σ_i²   (the discarded energy).
///
/// The factors are `left` = U_r·Σ_r (m×r) and `right` = V_rᵀ (r×n), so a dense layer
/// y = x·Wᵀ + b becomes t = x·rightᵀ, y = t·leftᵀ + b (compress/kernels.hpp): r·(m + n)
/// parameters and MACs instead of m·n (Denton et al. 2014, "Exploiting Linear Structure
/// Within Convolutional Networks for Efficient Evaluation"; Xue et al. 2013).
///
/// Algorithm (no LAPACK): with p = min(m, n), the p×p Gram matrix on the smaller side
/// (WᵀW or WWᵀ) is formed in double and diagonalised by Householder tridiagonalisation and
/// the implicit QL method (EISPACK tred2/tql2, Wilkinson & Reinsch 1971, as in the public
/// domain JAMA port). Its eigenvectors give V (or U); the other side is W·v_i (or Wᵀ·u_i),
/// and σ_i is recomputed as ‖W v_i‖ (or ‖Wᵀ u_i‖), which is accurate also for the small σ.
/// Forming the Gram matrix squares the condition number: singular *vectors* of σ_i below
/// ≈ 1e-8·σ_max are not resolved, which does not matter for truncation (they are the ones
/// discarded) — the reconstruction error still equals the discarded energy to rounding,
/// because the kept vectors are orthonormal to machine precision. Cost ≈ m·n·p + 6p³ flops:
/// 300×784 takes ~0.1 s.
///
/// Host profile (heap).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <numeric>
#include <vector>

#include "../core/error.hpp"
#include "concepts.hpp"

namespace tinylarge::compress {

namespace detail {

/// Eigen-decomposition of a symmetric n×n matrix `a` (row-major, overwritten): on return
/// `eigval` (n) holds the eigenvalues in descending order and row i of `vec` (n×n,
/// row-major) the unit eigenvector of eigval[i]. Householder tridiagonalisation (tred2)
/// followed by the implicit QL algorithm (tql2).
inline void symmetric_eigen(std::vector<double>& a, std::size_t n, std::vector<double>& eigval,
                            std::vector<double>& vec) {
  std::vector<double>& V = a;  // V[i*n + j], tred2 works in place
  std::vector<double> d(n), e(n);
  auto at = [&](std::size_t i, std::size_t j) -> double& { return V[i * n + j]; };
  if (n == 0) return;
  // ---- tred2: Householder reduction to tridiagonal form.
  for (std::size_t j = 0; j < n; ++j) d[j] = at(n - 1, j);
  for (std::size_t i = n - 1; i > 0; --i) {
    double scale = 0.0, h = 0.0;
    for (std::size_t k = 0; k < i; ++k) scale += std::fabs(d[k]);
    if (scale == 0.0) {
      e[i] = d[i - 1];
      for (std::size_t j = 0; j < i; ++j) {
        d[j] = at(i - 1, j);
        at(i, j) = 0.0;
        at(j, i) = 0.0;
      }
    } else {
      for (std::size_t k = 0; k < i; ++k) {
        d[k] /= scale;
        h += d[k] * d[k];
      }
      double f = d[i - 1];
      double g = std::sqrt(h);
      if (f > 0) g = -g;
      e[i] = scale * g;
      h -= f * g;
      d[i - 1] = f - g;
      for (std::size_t j = 0; j < i; ++j) e[j] = 0.0;
      for (std::size_t j = 0; j < i; ++j) {
        f = d[j];
        at(j, i) = f;
        g = e[j] + at(j, j) * f;
        for (std::size_t k = j + 1; k + 1 <= i; ++k) {
          g += at(k, j) * d[k];
          e[k] += at(k, j) * f;
        }
        e[j] = g;
      }
      f = 0.0;
      for (std::size_t j = 0; j < i; ++j) {
        e[j] /= h;
        f += e[j] * d[j];
      }
      const double hh = f / (h + h);
      for (std::size_t j = 0; j < i; ++j) e[j] -= hh * d[j];
      for (std::size_t j = 0; j < i; ++j) {
        f = d[j];
        g = e[j];
        for (std::size_t k = j; k + 1 <= i; ++k) at(k, j) -= (f * e[k] + g * d[k]);
        d[j] = at(i - 1, j);
        at(i, j) = 0.0;
      }
    }
    d[i] = h;
  }
  for (std::size_t i = 0; i + 1 < n; ++i) {
    at(n - 1, i) = at(i, i);
    at(i, i) = 1.0;
    const double h = d[i + 1];
    if (h != 0.0) {
      for (std::size_t k = 0; k <= i; ++k) d[k] = at(k, i + 1) / h;
      for (std::size_t j = 0; j <= i; ++j) {
        double g = 0.0;
        for (std::size_t k = 0; k <= i; ++k) g += at(k, i + 1) * at(k, j);
        for (std::size_t k = 0; k <= i; ++k) at(k, j) -= g * d[k];
      }
    }
    for (std::size_t k = 0; k <= i; ++k) at(k, i + 1) = 0.0;
  }
  for (std::size_t j = 0; j < n; ++j) {
    d[j] = at(n - 1, j);
    at(n - 1, j) = 0.0;
  }
  at(n - 1, n - 1) = 1.0;
  e[0] = 0.0;

  // ---- tql2 on W = Vᵀ (eigenvectors as rows, so the rotations touch contiguous rows).
  std::vector<double> W(n * n);
  for (std::size_t i = 0; i < n; ++i)
    for (std::size_t j = 0; j < n; ++j) W[j * n + i] = V[i * n + j];
  for (std::size_t i = 1; i < n; ++i) e[i - 1] = e[i];
  e[n - 1] = 0.0;
  double f = 0.0, tst1 = 0.0;
  const double eps = 0x1.0p-52;
  for (std::size_t l = 0; l < n; ++l) {
    tst1 = std::max(tst1, std::fabs(d[l]) + std::fabs(e[l]));
    std::size_t m = l;
    while (m < n) {
      if (std::fabs(e[m]) <= eps * tst1) break;
      ++m;
    }
    if (m == n) m = n - 1;  // e[n-1] == 0, so the loop always stops; guard for safety
    if (m > l) {
      int iter = 0;
      do {
        ++iter;
        double g = d[l];
        double p = (d[l + 1] - g) / (2.0 * e[l]);
        double r = std::hypot(p, 1.0);
        if (p < 0) r = -r;
        d[l] = e[l] / (p + r);
        d[l + 1] = e[l] * (p + r);
        const double dl1 = d[l + 1];
        double h = g - d[l];
        for (std::size_t i = l + 2; i < n; ++i) d[i] -= h;
        f += h;
        p = d[m];
        double c = 1.0, c2 = c, c3 = c;
        const double el1 = e[l + 1];
        double s = 0.0, s2 = 0.0;
        for (std::size_t ii = m; ii-- > l;) {
          const std::size_t i = ii;
          c3 = c2;
          c2 = c;
          s2 = s;
          g = c * e[i];
          h = c * p;
          r = std::hypot(p, e[i]);
          e[i + 1] = s * r;
          s = e[i] / r;
          c = p / r;
          p = c * d[i] - s * g;
          d[i + 1] = h + s * (c * g + s * d[i]);
          double* wi = &W[i * n];
          double* wi1 = &W[(i + 1) * n];
          for (std::size_t k = 0; k < n; ++k) {
            const double t = wi1[k];
            wi1[k] = s * wi[k] + c * t;
            wi[k] = c * wi[k] - s * t;
          }
        }
        p = -s * s2 * c3 * el1 * e[l] / dl1;
        e[l] = s * p;
        d[l] = c * p;
      } while (std::fabs(e[l]) > eps * tst1 && iter < 60);
    }
    d[l] += f;
    e[l] = 0.0;
  }
  // ---- sort descending.
  std::vector<std::size_t> order(n);
  std::iota(order.begin(), order.end(), std::size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](std::size_t x, std::size_t y) { return d[x] > d[y]; });
  eigval.resize(n);
  vec.resize(n * n);
  for (std::size_t i = 0; i < n; ++i) {
    eigval[i] = d[order[i]];
    std::copy_n(&W[order[i] * n], n, &vec[i * n]);
  }
}

}  // namespace detail

/// A truncated SVD W ≈ left·right (see the file comment).
struct low_rank_factors {
  std::size_t rows = 0;  ///< m (outputs)
  std::size_t cols = 0;  ///< n (inputs)
  std::size_t rank = 0;  ///< r
  std::vector<float> left;   ///< U_r·Σ_r, m×r row-major
  std::vector<float> right;  ///< V_rᵀ, r×n row-major
  std::vector<double> singular_values;  ///< all min(m, n) of them, descending
  double discarded_energy = 0.0;        ///< Σ_{i>r} σ_i²
  double total_energy = 0.0;            ///< Σ σ_i² = ‖W‖²_F
};

/// Smallest r such that Σ_{i<r} σ_i² ≥ fraction·Σ σ_i² (`fraction` ∈ [0, 1]; at least 1).
inline std::size_t rank_for_energy(const std::vector<double>& singular_values, double fraction) {
  TINYLARGE_REQUIRE(fraction >= 0.0 && fraction <= 1.0, errc::invalid_argument,
                    "rank_for_energy: fraction must be in [0, 1]");
  double total = 0.0;
  for (double s : singular_values) total += s * s;
  double run = 0.0;
  for (std::size_t r = 0; r < singular_values.size(); ++r) {
    run += singular_values[r] * singular_values[r];
    if (run >= fraction * total * (1.0 - 1e-12)) return r + 1;
  }
  return std::max<std::size_t>(1, singular_values.size());
}

namespace detail {
inline low_rank_factors truncated_svd_impl(matrix_ref<const float> a, std::size_t rank, double energy,
                                           bool by_energy) {
  const std::size_t m = a.rows, n = a.cols;
  TINYLARGE_REQUIRE(m >= 1 && n >= 1, errc::invalid_argument, "truncated_svd: empty matrix");
  for (std::size_t i = 0; i < a.size(); ++i)
    TINYLARGE_REQUIRE(std::isfinite(a.data[i]), errc::non_finite, "truncated_svd: matrix must be finite");
  const bool gram_of_columns = m >= n;  // G = AᵀA (n×n) when tall, else AAᵀ (m×m)
  const std::size_t p = std::min(m, n), q = std::max(m, n);
  // Work on B (p×q, row-major, double): B = Aᵀ when tall, A otherwise. Then G = B·Bᵀ.
  std::vector<double> B(p * q);
  for (std::size_t r = 0; r < m; ++r)
    for (std::size_t c = 0; c < n; ++c) {
      const double v = a.data[r * n + c];
      if (gram_of_columns) B[c * q + r] = v; else B[r * q + c] = v;
    }
  std::vector<double> G(p * p);
  for (std::size_t i = 0; i < p; ++i)
    for (std::size_t j = 0; j <= i; ++j) {
      const double* bi = &B[i * q];
      const double* bj = &B[j * q];
      double s = 0.0;
      for (std::size_t k = 0; k < q; ++k) s += bi[k] * bj[k];
      G[i * p + j] = G[j * p + i] = s;
    }
  std::vector<double> lambda, E;  // E rows: eigenvectors (length p)
  symmetric_eigen(G, p, lambda, E);
  // z_i = Bᵀ e_i (length q) has norm σ_i; the pair of singular vectors is (e_i, z_i/σ_i).
  std::vector<double> sigma(p), Z(p * q, 0.0);
  for (std::size_t i = 0; i < p; ++i) {
    double* z = &Z[i * q];
    for (std::size_t k = 0; k < p; ++k) {
      const double ek = E[i * p + k];
      const double* bk = &B[k * q];
      for (std::size_t c = 0; c < q; ++c) z[c] += ek * bk[c];
    }
    double s = 0.0;
    for (std::size_t c = 0; c < q; ++c) s += z[c] * z[c];
    sigma[i] = std::sqrt(s);
  }
  // Recomputed σ may differ in order from the eigenvalues by rounding: reorder.
  std::vector<std::size_t> order(p);
  std::iota(order.begin(), order.end(), std::size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](std::size_t x, std::size_t y) { return sigma[x] > sigma[y]; });

  low_rank_factors f;
  f.rows = m;
  f.cols = n;
  f.singular_values.resize(p);
  for (std::size_t i = 0; i < p; ++i) f.singular_values[i] = sigma[order[i]];
  const std::size_t r = by_energy ? rank_for_energy(f.singular_values, energy) : rank;
  TINYLARGE_REQUIRE(r >= 1 && r <= p, errc::invalid_argument, "truncated_svd: rank must be in [1, min(rows, cols)]");
  f.rank = r;
  f.left.assign(m * r, 0.0f);
  f.right.assign(r * n, 0.0f);
  const double tiny = (f.singular_values[0] > 0 ? f.singular_values[0] : 1.0) * 1e-300;
  for (std::size_t j = 0; j < r; ++j) {
    const std::size_t i = order[j];
    const double s = sigma[i];
    const double* e = &E[i * p];
    const double* z = &Z[i * q];
    const double inv = s > tiny ? 1.0 / s : 0.0;
    if (gram_of_columns) {
      // e = v (length n), z = A v = σ u (length m): left = σu = z, right = vᵀ = e.
      for (std::size_t row = 0; row < m; ++row) f.left[row * r + j] = static_cast<float>(s > tiny ? z[row] : 0.0);
      for (std::size_t c = 0; c < n; ++c) f.right[j * n + c] = static_cast<float>(s > tiny ? e[c] : 0.0);
    } else {
      // e = u (length m), z = Aᵀu = σ v (length n): left = σu, right = vᵀ = z/σ.
      for (std::size_t row = 0; row < m; ++row) f.left[row * r + j] = static_cast<float>(s * e[row]);
      for (std::size_t c = 0; c < n; ++c) f.right[j * n + c] = static_cast<float>(z[c] * inv);
    }
  }
  for (std::size_t i = 0; i < p; ++i) {
    const double s2 = f.singular_values[i] * f.singular_values[i];
    f.total_energy += s2;
    if (i >= r) f.discarded_energy += s2;
  }
  return f;
}
}  // namespace detail

/// Truncated SVD of the m×n matrix `a`, keeping `rank` ∈ [1, min(m, n)] singular values.
inline low_rank_factors truncated_svd(matrix_ref<const float> a, std::size_t rank) {
  return detail::truncated_svd_impl(a, rank, 0.0, false);
}

/// Truncated SVD keeping the smallest rank whose singular values retain at least
/// `energy_fraction` of Σσ² = ‖W‖²_F (`rank_for_energy`).
inline low_rank_factors truncated_svd_by_energy(matrix_ref<const float> a, double energy_fraction) {
  return detail::truncated_svd_impl(a, 0, energy_fraction, true);
}

/// out (m×n) = left·right: the fp32 form of a factored layer.
inline void reconstruct(const low_rank_factors& f, float* out) {
  for (std::size_t i = 0; i < f.rows; ++i)
    for (std::size_t j = 0; j < f.cols; ++j) {
      double s = 0.0;
      for (std::size_t k = 0; k < f.rank; ++k)
        s += static_cast<double>(f.left[i * f.rank + k]) * f.right[k * f.cols + j];
      out[i * f.cols + j] = static_cast<float>(s);
    }
}

/// Low-rank factorisation of a dense layer by truncated SVD. `rank` > 0 fixes the rank;
/// otherwise the smallest rank retaining `energy` of Σσ² is used. `apply` replaces W by
/// left·right in the fp32 form and keeps the factors.
struct low_rank {
  std::size_t rank = 0;
  double energy = 0.9;

  static constexpr const char* name() noexcept { return "low_rank"; }
  static constexpr stage_kind kind = stage_kind::low_rank;
  static constexpr representation produces = representation::factored;
  static constexpr bool lossless = false;
  static constexpr bool needs_mask = false;
  static constexpr bool emits_symbols = false;

  template <class T>
  struct state {
    low_rank_factors factors;
  };

  void apply(state<float>& s, matrix_ref<float> w) const {
    const matrix_ref<const float> a{w.data, w.rows, w.cols};
    s.factors = rank > 0 ? truncated_svd(a, std::min(rank, std::min(w.rows, w.cols)))
                         : truncated_svd_by_energy(a, energy);
    reconstruct(s.factors, w.data);
  }
};

static_assert(compression_policy<low_rank>);

}  // namespace tinylarge::compress
