#!/usr/bin/env python3
"""Build (if needed) and run the kernel benchmarks; print ours vs. the peer.

    scripts/run_benchmarks.py [--build-dir build-bench] [--repetitions 5]
                              [--min-time 0.3] [--filter REGEX] [--no-build] [--dispatch]

Runs `bench_kernels` (Google Benchmark, single-threaded; OpenBLAS forced to
one thread) and prints, per shape and precision, our throughput, the peer's,
and the ratio ours / peer. Throughput is the median over repetitions of the
`GFLOPS` counter (2 operations per multiply-accumulate, int8 included), which
Google Benchmark computes from CPU time: on a shared machine that is the
fairer measure, and the wall-clock median is reported next to it. The same
table is written as JSON to benchmarks/results/kernels.json, together with the
raw per-benchmark medians and the machine context.

Peers: fp32 -> OpenBLAS (cblas_sgemm / cblas_sgemv); fp16 storage -> OpenBLAS
fp32 at the same shape (there is no fp16-storage OpenBLAS); int8 -> oneDNN's
int8 matmul (`bench_int8_onednn`, built when Debian's libdnnl-dev is found:
pre-packed weights on both sides, int32 and requantized int8 outputs) and our
own fp32 kernel at the same shape (the goal is int8 >= 3x our fp32 in MAC/s).

Fairness (scripts/bench_env.py): the benchmark binaries run without
OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE (they would pin OpenBLAS to its AVX2
kernels); the OpenBLAS core, the oneDNN ISA and implementation, the CPU model
and the load are printed, and a ratio against a peer that ran a fallback
kernel (a core narrower than the CPU's vectors, a `ref` oneDNN primitive) is
printed as "refused" and recorded as null.
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
sys.path.insert(0, str(ROOT / "scripts"))
import bench_env  # noqa: E402

# (row label, ours benchmark, peer benchmark, goal description, goal ratio)
COMPARISONS = [
    ("gemm 512x512x512 fp32 NN", "gemm/512x512x512/fp32/ours", "gemm/512x512x512/fp32/openblas",
     ">= 1.0x OpenBLAS", 1.0),
    # Low precision against our own fp32 kernel (there is no bf16 / fp16-storage OpenBLAS): FLOP/s ratio.
    ("gemm 512x512x512 bf16 vs our fp32", "gemm/512x512x512/bf16/ours", "gemm/512x512x512/fp32/ours",
     ">= 1.6x our fp32 (AVX512-BF16)", 1.6),
    ("gemm 512x512x512 fp16 vs our fp32", "gemm/512x512x512/fp16/ours", "gemm/512x512x512/fp32/ours", None, None),
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
    # fp16-storage GEMV time <= 0.6x our fp32 GEMV time, i.e. >= 1/0.6 = 1.67x its FLOP/s.
    ("dense 1x784x256 fp16 vs our fp32 (batch 1)", "dense/1x784x256/fp16/ours", "dense/1x784x256/fp32/ours",
     "time <= 0.6x our fp32", 1.0 / 0.6),
    ("dense 1x784x256 bf16 vs our fp32 (batch 1)", "dense/1x784x256/bf16/ours", "dense/1x784x256/fp32/ours",
     None, None),
    ("dense 1x784x256 int8 (batch 1) vs our fp32", "dense/1x784x256/int8/ours", "dense/1x784x256/fp32/ours", None,
     None),
    # bench_int8_onednn: pre-packed weights on both sides, same shapes (M x K x N).
    ("int8 512x512x512 int32 out vs oneDNN", "int8/512x512x512/s32/ours", "int8/512x512x512/s32/onednn",
     ">= 1.0x oneDNN", 1.0),
    ("int8 512x512x512 int8 out vs oneDNN", "int8/512x512x512/s8/ours", "int8/512x512x512/s8/onednn",
     ">= 0.95x oneDNN", 0.95),
    ("int8 64x784x256 int32 out vs oneDNN", "int8/64x784x256/s32/ours", "int8/64x784x256/s32/onednn",
     ">= 1.0x oneDNN", 1.0),
    ("int8 64x784x256 int8 out vs oneDNN", "int8/64x784x256/s8/ours", "int8/64x784x256/s8/onednn",
     ">= 0.95x oneDNN", 0.95),
    ("int8 1x784x256 int8 out vs oneDNN", "int8/1x784x256/s8/ours", "int8/1x784x256/s8/onednn", None, None),
    # oneDNN without the source zero point: less work (no compensation), shown as the peer's upper bound.
    ("int8 512x512x512 int32 vs oneDNN no zp", "int8/512x512x512/s32/ours", "int8/512x512x512/s32/onednn_nozp",
     None, None),
    ("int8 64x784x256 int32 vs oneDNN no zp", "int8/64x784x256/s32/ours", "int8/64x784x256/s32/onednn_nozp",
     None, None),
]


BINARIES = ("bench_kernels", "bench_int8_onednn")

# --dispatch: bench_kernels built for plain x86-64 with TINYLARGE_DISPATCH=ON (kernels picked at run
# time) against the -march=native build, on these rows; goal: within 5 % (time ratio <= 1.05).
DISPATCH_ROWS = ("gemm/512x512x512/fp32/ours", "dense/64x784x256/fp32/ours", "dense/1x784x256/fp32/ours",
                 "dense/1x784x256/fp16/ours", "dense/1x784x256/int8/ours", "dense/512x512x512/int8/ours")


def compare_dispatch(native: Path, dispatched: Path, rounds: int, min_time: float) -> list:
    """Alternate the two binaries `rounds` times (one repetition each) so that a load change hits both;
    return per row the median CPU time of each and their ratio dispatch / native."""
    filt = "^(" + "|".join(re.escape(r) for r in DISPATCH_ROWS) + ")$"
    times = {"native": {}, "dispatch": {}}
    for _ in range(rounds):
        for kind, exe in (("native", native), ("dispatch", dispatched)):
            for name, m in medians(run(exe, 1, min_time, filt)).items():
                times[kind].setdefault(name, []).append(m["cpu_us"])
    rows = []
    print(f"\nrun-time dispatch (plain x86-64 + TINYLARGE_DISPATCH) vs -march=native, median CPU us over "
          f"{rounds} alternating runs")
    print(f"{'benchmark':32} {'native':>9} {'dispatch':>9} {'time ratio':>10}  goal <= 1.05")
    for name in DISPATCH_ROWS:
        if name not in times["native"] or name not in times["dispatch"]:
            continue
        n, d = statistics.median(times["native"][name]), statistics.median(times["dispatch"][name])
        ratio = d / n
        rows.append({"benchmark": name, "native_cpu_us": n, "dispatch_cpu_us": d, "time_ratio": ratio,
                     "goal": "<= 1.05", "goal_met": ratio <= 1.05})
        print(f"{name:32} {n:9.1f} {d:9.1f} {ratio:10.3f}  {'met' if ratio <= 1.05 else 'NOT met'}")
    return rows


def build(build_dir: Path, extra=(), only_kernels=False) -> None:
    if not (build_dir / "CMakeCache.txt").exists():
        subprocess.run(["cmake", "-S", str(ROOT), "-B", str(build_dir), "-DCMAKE_BUILD_TYPE=Release",
                        "-DTINYLARGE_BUILD_BENCHMARKS=ON", "-DTINYLARGE_BUILD_TESTS=OFF",
                        "-DTINYLARGE_BUILD_EXAMPLES=OFF", "-DTINYLARGE_INSTALL=OFF", *extra], check=True)
    subprocess.run(["cmake", "--build", str(build_dir), "--target", "bench_kernels", "-j2"], check=True)
    if only_kernels:
        return
    # bench_int8_onednn exists only when CMake found oneDNN (libdnnl-dev).
    targets = subprocess.run(["cmake", "--build", str(build_dir), "--target", "help"], stdout=subprocess.PIPE,
                             text=True).stdout
    if "bench_int8_onednn" in targets:
        subprocess.run(["cmake", "--build", str(build_dir), "--target", "bench_int8_onednn", "-j2"], check=True)


def run(exe: Path, repetitions: int, min_time: float, filt: str) -> dict:
    # The peers (OpenBLAS, oneDNN) run in these processes: their environment is the peer's.
    env = bench_env.peer_env()
    args = [str(exe), "--benchmark_format=json", f"--benchmark_repetitions={repetitions}",
            f"--benchmark_min_time={min_time}", "--benchmark_report_aggregates_only=false",
            # repetitions of ours and the peer interleaved: a load change hits both alike
            "--benchmark_enable_random_interleaving=true"]
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
    ap.add_argument("--dispatch", action="store_true",
                    help="also build bench_kernels for plain x86-64 with run-time dispatch (<build-dir>-dispatch) "
                         "and compare it with the -march=native build")
    a = ap.parse_args()

    build_dir = Path(a.build_dir).resolve()
    dispatch_dir = build_dir.parent / (build_dir.name + "-dispatch")
    if not a.no_build:
        build(build_dir)
        if a.dispatch:
            build(dispatch_dir, ["-DTINYLARGE_DISPATCH=ON"], only_kernels=True)
    peer = bench_env.probe(bench_env.peer_env())
    print(bench_env.describe(peer))
    reasons = bench_env.fallback_reasons(peer)
    report, med, labels = None, {}, {}
    for name in BINARIES:
        exe = build_dir / "benchmarks" / name
        if not exe.exists():
            print(f"({exe} not built: its rows are skipped)")
            continue
        r = run(exe, a.repetitions, a.min_time, a.filter)
        if report is None:
            report = r
        else:
            report["context"].setdefault("tinylarge_backend", r["context"].get("tinylarge_backend"))
        report["context"].update({f"{name}:{k}": v for k, v in r["context"].items()})
        med.update(medians(r))
        labels.update({b["run_name"]: b["label"] for b in r["benchmarks"] if b.get("label")})
    if report is None:
        print("no benchmark binary found")
        return 1
    # A oneDNN primitive whose implementation is a reference loop is a fallback.
    for n, lab in labels.items():
        if "/onednn" in n and lab.startswith("ref"):
            reasons.append(f"{n} ran oneDNN's reference implementation ({lab})")
            print(f"PEER FALLBACK: {n} ran {lab} -- ratios refused")
    for n, lab in sorted(labels.items()):
        if "/onednn" in n:
            print(f"oneDNN implementation of {n}: {lab}")

    rows = []
    print(f"back end: {report['context'].get('tinylarge_backend', '?')}; load average at start: "
          f"{report['context'].get('load_avg', '?')}")
    print("throughput = median GFLOP/s from CPU time (2 ops per MAC; int8 too); time = median CPU / wall us")
    hdr = f"{'shape / precision':44} {'ours':>9} {'peer':>9} {'ratio':>7} {'ours us cpu/wall':>18}  goal"
    print(hdr)
    print("-" * len(hdr))
    for label, ours, peer, goal, goal_ratio in COMPARISONS:
        if ours not in med or peer not in med:
            continue
        o, p = med[ours], med[peer]
        # Ratios against ourselves (int8 vs our fp32) never refer to a peer's kernel.
        peer_is_ours = peer.endswith("/ours") or peer.endswith("/read_w")
        ratio = bench_env.ratio(o["gflops"], p["gflops"], [] if peer_is_ours else reasons)
        met = None
        if ratio is None:
            met = None
        elif goal_ratio is not None:
            met = ratio >= goal_ratio
        elif goal == "<= 6 us":
            met = o["cpu_us"] <= 6.0
        rows.append({"label": label, "ours": ours, "peer": peer, "ours_gflops": o["gflops"],
                     "peer_gflops": p["gflops"], "ratio": ratio, "ours_cpu_us": o["cpu_us"],
                     "ours_real_us": o["real_us"], "peer_cpu_us": p["cpu_us"], "peer_real_us": p["real_us"],
                     "goal": goal, "goal_met": met})
        mark = "" if met is None else (" met" if met else " NOT met")
        print(f"{label:44} {o['gflops']:9.1f} {p['gflops']:9.1f} {bench_env.fmt_ratio(ratio)} "
              f"{o['cpu_us']:8.1f}/{o['real_us']:<9.1f} {goal or ''}{mark}")

    dispatch_rows = None
    if a.dispatch:
        dispatch_rows = compare_dispatch(build_dir / "benchmarks" / "bench_kernels",
                                         dispatch_dir / "benchmarks" / "bench_kernels", a.repetitions, a.min_time)

    out = Path(a.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"context": report["context"], "peer": peer, "peer_fallbacks": reasons,
                               "comparisons": rows, "dispatch_vs_native": dispatch_rows, "benchmarks": med,
                               "implementations": labels},
                              indent=2, sort_keys=False) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
