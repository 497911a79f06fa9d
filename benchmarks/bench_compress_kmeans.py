#!/usr/bin/python3
"""scikit-learn peer of bench_compress's BM_kmeans_1M_16 (engineer F).

1-D k-means of 1M weights ~ N(0, 0.05^2) into 16 clusters, single-threaded, with the same
initialisation as tinylarge's default (linear: 16 centroids equally spaced over [min, max],
Deep Compression's choice) and scikit-learn's default stopping rule (tol = 1e-4).
Prints the best of N runs and the inertia, to compare with
    bench_compress --benchmark_filter=kmeans
(the data are drawn from the same distribution, not bit-identical: tinylarge uses its own
PCG32 generator).

    /usr/bin/python3 benchmarks/bench_compress_kmeans.py [--runs 5] [--ours build/benchmarks/bench_compress]

Peer fairness (scripts/bench_env.py): the script re-executes itself in the peer's environment
(OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE removed, one OpenMP / BLAS thread), prints the OpenBLAS
core numpy selected, the CPU model and the load; with --ours it runs bench_compress's k-means
benchmark (in the caller's environment) and prints the ratio, unless the peer ran a fallback core.
"""
import argparse
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "scripts"))
import bench_env  # noqa: E402

if "TINYLARGE_CALLER_ENV" not in os.environ:
    _env = bench_env.peer_env()
    _env["TINYLARGE_CALLER_ENV"] = json.dumps(dict(os.environ))
    os.execve(bench_env.PYTHON, [bench_env.PYTHON, os.path.abspath(__file__)] + sys.argv[1:], _env)
CALLER_ENV = json.loads(os.environ["TINYLARGE_CALLER_ENV"])

import numpy as np  # noqa: E402
from sklearn.cluster import KMeans  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--k", type=int, default=16)
    ap.add_argument("--ours", default=None, help="path of bench_compress: print ours / scikit-learn")
    args = ap.parse_args()
    peer = bench_env.probe(dict(os.environ), caller_env=CALLER_ENV)
    print(bench_env.describe(peer))
    reasons = bench_env.fallback_reasons(peer)
    sk_cpu = {}  # bench_compress name of the same variant -> scikit-learn's best CPU time
    rng = np.random.default_rng(3)
    x = rng.normal(0.0, 0.05, size=args.n).astype(np.float32).reshape(-1, 1)
    lo, hi = float(x.min()), float(x.max())
    init = np.linspace(lo, hi, args.k, dtype=np.float32).reshape(-1, 1)
    for name, ours_name, kw in (("linear init, tol 1e-4 (default)", "BM_kmeans_1M_16/0/1", dict(tol=1e-4)),
                                ("linear init, tol 0 (exact)", "BM_kmeans_1M_16/0/0", dict(tol=0.0, max_iter=1000))):
        best, best_cpu, km = float("inf"), float("inf"), None
        for _ in range(args.runs):
            t, c = time.perf_counter(), time.process_time()
            km = KMeans(n_clusters=args.k, init=init, n_init=1, algorithm="lloyd", **kw).fit(x)
            best = min(best, time.perf_counter() - t)
            best_cpu = min(best_cpu, time.process_time() - c)
        print(f"sklearn KMeans 1-D n={args.n} k={args.k} {name}: best wall {best:.4f} s, cpu {best_cpu:.4f} s, "
              f"iterations {km.n_iter_}, inertia {km.inertia_:.4f}")
        sk_cpu[ours_name] = best_cpu
    # k-means++ (sklearn's default init) for reference
    best, best_cpu = float("inf"), float("inf")
    for _ in range(max(1, args.runs // 2)):
        t, c = time.perf_counter(), time.process_time()
        km = KMeans(n_clusters=args.k, init="k-means++", n_init=1, random_state=0).fit(x)
        best = min(best, time.perf_counter() - t)
        best_cpu = min(best_cpu, time.process_time() - c)
    print(f"sklearn KMeans 1-D n={args.n} k={args.k} k-means++ init, tol 1e-4: best wall {best:.4f} s, "
          f"cpu {best_cpu:.4f} s, iterations {km.n_iter_}, inertia {km.inertia_:.4f}")
    if args.ours:
        out = subprocess.run([args.ours, "--benchmark_filter=BM_kmeans_1M_16/0/", "--benchmark_format=json"],
                             env=CALLER_ENV, check=True, stdout=subprocess.PIPE, text=True).stdout
        for b in json.loads(out)["benchmarks"]:
            if b.get("run_type", "iteration") != "iteration" or b["name"] not in sk_cpu:
                continue
            scale = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}[b["time_unit"]]
            ours_cpu = b["cpu_time"] * scale
            r = bench_env.ratio(sk_cpu[b["name"]], ours_cpu, reasons)
            print(f"ours {b['name']} ({b.get('label', '')}): cpu {ours_cpu:.4f} s, inertia "
                  f"{b.get('inertia', float('nan')):.4f}; speed-up over scikit-learn's same variant (cpu time): "
                  f"{bench_env.fmt_ratio(r, 0, 1)}x")

if __name__ == "__main__":
    main()
