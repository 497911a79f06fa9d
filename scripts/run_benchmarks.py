#!/usr/bin/env python3
"""Build (if needed) and run the kernel benchmarks; print ours vs. the peer.

    scripts/run_benchmarks.py [--build-dir build-bench] [--repetitions 5]
                              [--min-time 0.3] [--filter REGEX] [--no-build]

Runs `bench_kernels` (Google Benchmark, single-threaded; OpenBLAS forced to
one thread) and prints, per shape and precision, our throughput, the peer's,
and the ratio ours / peer. Throughput is the median over repetitions of the
`GFLOPS` counter (2 operations per multiply-accumulate, int8 included), which
Google Benchmark computes from CPU time: on a shared machine that is the
fairer measure, and the wall-clock median is reported next to it. The same
table is written as JSON to benchmarks/results/kernels.json, together with the
raw per-benchmark medians and the machine context.

Peers: fp32 -> OpenBLAS (cblas_sgemm / cblas_sgemv); fp16 storage -> OpenBLAS
fp32 at the same shape (there is no fp16-storage OpenBLAS); int8 -> our own
fp32 kernel at the same shape (the goal is int8 >= 3x our fp32 in MAC/s).
For batch 1 there is also `read_w`, a loop that only reads the 784x256 fp32
weight matrix once (800 KB): the memory floor of any fp32 batch-1 kernel.
"loop" rows are the scalar reference back end compiled with -O3 -march=native.
Every peer runs in the same binary and the same run.
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# (row label, ours benchmark, peer benchmark, goal description, goal ratio)
COMPARISONS = [
    ("gemm 512x512x512 fp32 NN", "gemm/512x512x512/fp32/ours", "gemm/512x512x512/fp32/openblas",
     ">= 0.8x OpenBLAS", 0.8),
    ("gemm 512x512x512 fp32 NT", "gemm/512x512x512/fp32_nt/ours", "gemm/512x512x512/fp32_nt/openblas", None, None),
    ("gemm 512x512x512 fp32 TN", "gemm/512x512x512/fp32_tn/ours", "gemm/512x512x512/fp32_tn/openblas", None, None),
    ("gemm 512x512x512 fp32 loop", "gemm/512x512x512/fp32/loop", "gemm/512x512x512/fp32/openblas", None, None),
    ("dense 512x512x512 fp32", "dense/512x512x512/fp32/ours", "dense/512x512x512/fp32/openblas", None, None),
    ("dense 512x512x512 fp16", "dense/512x512x512/fp16/ours", "dense/512x512x512/fp32/openblas", None, None),
    ("dense 512x512x512 int8 vs our fp32", "dense/512x512x512/int8/ours", "dense/512x512x512/fp32/ours",
     ">= 3x our fp32 (MAC/s)", 3.0),
    ("dense 512x512x512 int8->int32 vs our fp32", "dense/512x512x512/int8_s32/ours", "dense/512x512x512/fp32/ours",
     None, None),
    ("dense 64x784x256 fp32", "dense/64x784x256/fp32/ours", "dense/64x784x256/fp32/openblas", ">= 1.0x OpenBLAS",
     1.0),
    ("dense 64x784x256 fp16", "dense/64x784x256/fp16/ours", "dense/64x784x256/fp32/openblas", None, None),
    ("dense 64x784x256 int8 vs our fp32", "dense/64x784x256/int8/ours", "dense/64x784x256/fp32/ours", None, None),
    ("dense 1x784x256 fp32 (batch 1)", "dense/1x784x256/fp32/ours", "dense/1x784x256/fp32/openblas",
     "<= 6 us", None),
    ("dense 1x784x256 fp32 vs reading W once", "dense/1x784x256/fp32/ours", "dense/1x784x256/fp32/read_w",
     None, None),
    ("dense 1x784x256 fp16 (batch 1)", "dense/1x784x256/fp16/ours", "dense/1x784x256/fp32/openblas", None, None),
    ("dense 1x784x256 int8 (batch 1) vs our fp32", "dense/1x784x256/int8/ours", "dense/1x784x256/fp32/ours", None,
     None),
]


def build(build_dir: Path) -> Path:
    exe = build_dir / "benchmarks" / "bench_kernels"
    if not (build_dir / "CMakeCache.txt").exists():
        subprocess.run(["cmake", "-S", str(ROOT), "-B", str(build_dir), "-DCMAKE_BUILD_TYPE=Release",
                        "-DTINYLARGE_BUILD_BENCHMARKS=ON", "-DTINYLARGE_BUILD_TESTS=OFF",
                        "-DTINYLARGE_BUILD_EXAMPLES=OFF", "-DTINYLARGE_INSTALL=OFF"], check=True)
    subprocess.run(["cmake", "--build", str(build_dir), "--target", "bench_kernels", "-j2"], check=True)
    return exe


def run(exe: Path, repetitions: int, min_time: float, filt: str) -> dict:
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    args = [str(exe), "--benchmark_format=json", f"--benchmark_repetitions={repetitions}",
            f"--benchmark_min_time={min_time}", "--benchmark_report_aggregates_only=false"]
    if filt:
        args.append(f"--benchmark_filter={filt}")
    out = subprocess.run(args, env=env, check=True, stdout=subprocess.PIPE, text=True).stdout
    return json.loads(out)


def medians(report: dict) -> dict:
    """name -> {gflops, cpu_us, real_us}: medians over the repetitions."""
    runs = {}
    for b in report["benchmarks"]:
        if b.get("run_type") != "iteration":
            continue
        unit = {"ns": 1e-3, "us": 1.0, "ms": 1e3, "s": 1e6}[b.get("time_unit", "ns")]
        r = runs.setdefault(b["run_name"], {"gflops": [], "cpu_us": [], "real_us": []})
        r["gflops"].append(b["GFLOPS"] / 1.0)  # counter is already 1e9 ops / s
        r["cpu_us"].append(b["cpu_time"] * unit)
        r["real_us"].append(b["real_time"] * unit)
    return {n: {k: statistics.median(v) for k, v in r.items()} | {"repetitions": len(r["gflops"])}
            for n, r in runs.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build-dir", default=str(ROOT / "build-bench"))
    ap.add_argument("--repetitions", type=int, default=5)
    ap.add_argument("--min-time", type=float, default=0.3)
    ap.add_argument("--filter", default="", help="benchmark name regex (default: all)")
    ap.add_argument("--no-build", action="store_true", help="use an existing bench_kernels")
    ap.add_argument("--output", default=str(ROOT / "benchmarks" / "results" / "kernels.json"))
    a = ap.parse_args()

    build_dir = Path(a.build_dir).resolve()
    exe = build_dir / "benchmarks" / "bench_kernels" if a.no_build else build(build_dir)
    report = run(exe, a.repetitions, a.min_time, a.filter)
    med = medians(report)

    rows = []
    print(f"back end: {report['context'].get('tinylarge_backend', '?')}; peer: "
          f"{report['context'].get('openblas_config', '?')}; load average at start: "
          f"{report['context'].get('load_avg', '?')}")
    print("throughput = median GFLOP/s from CPU time (2 ops per MAC; int8 too); time = median CPU / wall us")
    hdr = f"{'shape / precision':44} {'ours':>9} {'peer':>9} {'ratio':>7} {'ours us cpu/wall':>18}  goal"
    print(hdr)
    print("-" * len(hdr))
    for label, ours, peer, goal, goal_ratio in COMPARISONS:
        if ours not in med or peer not in med:
            continue
        o, p = med[ours], med[peer]
        ratio = o["gflops"] / p["gflops"]
        met = None
        if goal_ratio is not None:
            met = ratio >= goal_ratio
        elif goal == "<= 6 us":
            met = o["cpu_us"] <= 6.0
        rows.append({"label": label, "ours": ours, "peer": peer, "ours_gflops": o["gflops"],
                     "peer_gflops": p["gflops"], "ratio": ratio, "ours_cpu_us": o["cpu_us"],
                     "ours_real_us": o["real_us"], "peer_cpu_us": p["cpu_us"], "peer_real_us": p["real_us"],
                     "goal": goal, "goal_met": met})
        mark = "" if met is None else (" met" if met else " NOT met")
        print(f"{label:44} {o['gflops']:9.1f} {p['gflops']:9.1f} {ratio:7.2f} "
              f"{o['cpu_us']:8.1f}/{o['real_us']:<9.1f} {goal or ''}{mark}")

    out = Path(a.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"context": report["context"], "comparisons": rows, "benchmarks": med},
                              indent=2, sort_keys=False) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
