#!/usr/bin/python3
"""scikit-learn peer of bench_compress's BM_kmeans_1M_16 (engineer F).

1-D k-means of 1M weights ~ N(0, 0.05^2) into 16 clusters, single-threaded, with the same
initialisation as tinylarge's default (linear: 16 centroids equally spaced over [min, max],
Deep Compression's choice) and scikit-learn's default stopping rule (tol = 1e-4).
Prints the best of N runs and the inertia, to compare with
    bench_compress --benchmark_filter=kmeans
(the data are drawn from the same distribution, not bit-identical: tinylarge uses its own
PCG32 generator).

    OMP_NUM_THREADS=1 /usr/bin/python3 benchmarks/bench_compress_kmeans.py [--runs 5]
"""
import argparse
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
from sklearn.cluster import KMeans  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--k", type=int, default=16)
    args = ap.parse_args()
    rng = np.random.default_rng(3)
    x = rng.normal(0.0, 0.05, size=args.n).astype(np.float32).reshape(-1, 1)
    lo, hi = float(x.min()), float(x.max())
    init = np.linspace(lo, hi, args.k, dtype=np.float32).reshape(-1, 1)
    for name, kw in (("linear init, tol 1e-4 (default)", dict(tol=1e-4)),
                     ("linear init, tol 0 (exact)", dict(tol=0.0, max_iter=1000))):
        best, best_cpu, km = float("inf"), float("inf"), None
        for _ in range(args.runs):
            t, c = time.perf_counter(), time.process_time()
            km = KMeans(n_clusters=args.k, init=init, n_init=1, algorithm="lloyd", **kw).fit(x)
            best = min(best, time.perf_counter() - t)
            best_cpu = min(best_cpu, time.process_time() - c)
        print(f"sklearn KMeans 1-D n={args.n} k={args.k} {name}: best wall {best:.4f} s, cpu {best_cpu:.4f} s, "
              f"iterations {km.n_iter_}, inertia {km.inertia_:.4f}")
    # k-means++ (sklearn's default init) for reference
    best, best_cpu = float("inf"), float("inf")
    for _ in range(max(1, args.runs // 2)):
        t, c = time.perf_counter(), time.process_time()
        km = KMeans(n_clusters=args.k, init="k-means++", n_init=1, random_state=0).fit(x)
        best = min(best, time.perf_counter() - t)
        best_cpu = min(best_cpu, time.process_time() - c)
    print(f"sklearn KMeans 1-D n={args.n} k={args.k} k-means++ init, tol 1e-4: best wall {best:.4f} s, "
          f"cpu {best_cpu:.4f} s, iterations {km.n_iter_}, inertia {km.inertia_:.4f}")


if __name__ == "__main__":
    main()
