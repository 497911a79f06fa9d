#!/usr/bin/python3
"""Plots from the JSON the examples and benchmarks write (Debian python3-matplotlib).

    scripts/plots.py [--out DIR] [--split FILE] [--federated FILE]
                     [--compress FILE ...] [--bench FILE ...] [--selection FILE ...]
                     [--partitions FILE ...] [--fleet FILE ...] [--require NAME ...]

Figures (PNG, in --out, default build/plots):

  accuracy_per_round.png   test accuracy per round, one line per workflow run:
                           every run of examples/federated_fashion_mnist --json
                           (its "accuracy_per_round"), and the workflows of
                           examples/split_fashion_mnist --json (a line when a
                           workflow has "accuracy_per_round", otherwise one marker
                           at its final round: that example reports the final
                           accuracy only).
  compression_stages.png   model bytes (log scale) against test accuracy, one point
                           per stage (fp32 → pruned → shared → Huffman), one line per
                           operating point, from examples/compress_fashion_mnist
                           --json (default: benchmarks/results/compress_fashion_mnist/*.json).
  benchmark_ratios.png     ours / peer per comparison (1 = parity), from the
                           "comparisons" of scripts/run_benchmarks.py's JSON
                           (default: benchmarks/results/kernels.json).
  selection.png            client selection over a wireless fleet, one column per
                           partition: test accuracy against simulated time (seed 1,
                           one line per policy), and the mean time and energy per
                           round per policy (mean over seeds, bars from the lowest to
                           the highest seed), from federated_fashion_mnist --select
                           --json (default: benchmarks/results/federated_fashion_mnist/
                           selection_*.json).
  split_partitions.png     final test accuracy per split-learning workflow and
                           partition, from split_fashion_mnist --full --partition P
                           --json (default: benchmarks/results/split_fashion_mnist/
                           partition_*.json and full.json, the shards:2 run).
  split_fleet.png          split learning over a wireless fleet, one column per
                           cell bandwidth: time per round, mean busy time per
                           client and energy per round for uniform cuts,
                           per-device cuts and EdgeSplit clusters by id /
                           capability, with the final accuracy on each bar, from
                           split_fashion_mnist --full --fleet --band HZ --json
                           (default: benchmarks/results/split_fashion_mnist/fleet_*.json).

A figure whose inputs are missing is skipped with a message naming the file and
the command that produces it. Exit status: 2 for a file given explicitly that
does not exist or does not parse, 1 when a figure named by --require (accuracy,
compression, benchmarks, selection, partitions, fleet) could not be drawn or no figure at all was drawn, 0
otherwise.

The examples print `nan` for accuracies they did not measure (not valid JSON);
it is read as NaN and such points are left out.
"""
import argparse
import glob
import json
import math
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_COMPRESS = os.path.join(ROOT, "benchmarks", "results", "compress_fashion_mnist", "*.json")
DEFAULT_BENCH = os.path.join(ROOT, "benchmarks", "results", "kernels.json")
DEFAULT_SELECTION = os.path.join(ROOT, "benchmarks", "results", "federated_fashion_mnist", "selection_*.json")
DEFAULT_PARTITIONS = [os.path.join(ROOT, "benchmarks", "results", "split_fashion_mnist", "partition_*.json"),
                      os.path.join(ROOT, "benchmarks", "results", "split_fashion_mnist", "full.json")]
DEFAULT_FLEET = os.path.join(ROOT, "benchmarks", "results", "split_fashion_mnist", "fleet_*.json")
NAN_TOKEN = re.compile(r"(?<=[:\[,\s])(-?)nan(?=\s*[,\]\}])")


class InputError(Exception):
    pass


def load(path):
    """Parse an example's JSON; bare nan/-nan tokens become NaN."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise InputError(f"cannot read {path}: {e.strerror}") from e
    try:
        return json.loads(NAN_TOKEN.sub(lambda m: "-NaN" if m.group(1) else "NaN", text))
    except json.JSONDecodeError as e:
        raise InputError(f"{path} is not JSON: {e}") from e


def finite(x):
    return isinstance(x, (int, float)) and not math.isnan(x) and not math.isinf(x)


def plot_accuracy(plt, split_doc, fed_doc, out):
    """Accuracy per round per workflow. Returns the number of series drawn."""
    from matplotlib.ticker import MaxNLocator
    fig, ax = plt.subplots(figsize=(8, 5))
    series = 0
    if fed_doc is not None:
        runs = list(fed_doc.get("rounds_to_target", []))
        runs += list(fed_doc.get("robustness", {}).get("runs", []))
        runs += list(fed_doc.get("dp", []))
        for run in runs:
            curve = [a for a in run.get("accuracy_per_round", [])]
            pts = [(i + 1, a) for i, a in enumerate(curve) if finite(a)]
            if not pts:
                continue
            ax.plot([p[0] for p in pts], [100 * p[1] for p in pts], label=f"federated: {run.get('name', '?')}")
            series += 1
    if split_doc is not None:
        for wf in split_doc.get("workflows", []):
            name = f"split: {wf.get('workflow', '?')}"
            curve = wf.get("accuracy_per_round")
            if curve:
                pts = [(i + 1, a) for i, a in enumerate(curve) if finite(a)]
                if pts:
                    ax.plot([p[0] for p in pts], [100 * p[1] for p in pts], linestyle="--", label=name)
                    series += 1
            elif finite(wf.get("test_accuracy")) and wf.get("rounds", 0) > 0:
                ax.plot([wf["rounds"]], [100 * wf["test_accuracy"]], marker="o", linestyle="none", label=name)
                series += 1
        central = split_doc.get("centralised_accuracy")
        if finite(central):
            ax.axhline(100 * central, color="grey", linewidth=0.8, linestyle=":", label="centralised (split example)")
    if series == 0:
        plt.close(fig)
        return 0
    ax.set_xlabel("round")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("Accuracy per round per workflow (Fashion-MNIST)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return series


def plot_compression(plt, docs, out):
    """Bytes vs accuracy per compression stage. Returns the number of points drawn."""
    fig, ax = plt.subplots(figsize=(8, 5))
    n = 0
    for path, doc in docs:
        for point in doc.get("points", []):
            stages = [s for s in point.get("stages", []) if finite(s.get("bytes")) and finite(s.get("test_accuracy"))]
            if not stages:
                continue
            label = f"{os.path.basename(path)}: point {point.get('name', '?')}"
            xs = [s["bytes"] for s in stages]
            ys = [100 * s["test_accuracy"] for s in stages]
            ax.plot(xs, ys, marker="o", label=label)
            if n == 0:  # the stages are the same in every file: name them once
                for i, (s, x, y) in enumerate(zip(stages, xs, ys)):
                    # Neighbouring stages can share an accuracy (Huffman coding is lossless):
                    # alternate the labels above and below their points so they do not overlap.
                    ax.annotate(s.get("stage", "").split(" (")[0], (x, y), fontsize=6,
                                xytext=(3, 4 if i % 2 == 0 else -10), textcoords="offset points")
            n += len(stages)
    if n == 0:
        plt.close(fig)
        return 0
    ax.set_xscale("log")
    ax.set_xlabel("model bytes (every byte counted, log scale)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("Size vs accuracy per compression stage (LeNet-300-100)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return n


def plot_benchmarks(plt, docs, out):
    """Ours / peer bars. Returns the number of bars drawn."""
    labels, ratios = [], []
    for path, doc in docs:
        prefix = "" if len(docs) == 1 else os.path.splitext(os.path.basename(path))[0] + ": "
        for c in doc.get("comparisons", []):
            r = c.get("ratio")
            if finite(r):
                labels.append(prefix + c.get("label", "?"))
                ratios.append(r)
    if not ratios:
        return 0
    fig, ax = plt.subplots(figsize=(9, 0.32 * len(ratios) + 1.5))
    ypos = list(range(len(ratios)))
    colors = ["tab:green" if r >= 1.0 else "tab:orange" for r in ratios]
    ax.barh(ypos, ratios, color=colors)
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_yticks(ypos)
    ax.set_yticklabels(labels, fontsize=7)
    ax.invert_yaxis()
    for y, r in zip(ypos, ratios):
        ax.text(r, y, f" {r:.2f}×", va="center", fontsize=7)
    ax.set_xlabel("ours / peer (throughput; > 1: ours faster)")
    ax.set_title("Benchmarks: tinylarge vs peer, same run")
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return len(ratios)


def plot_selection(plt, docs, out):
    """Selection policies per partition: accuracy vs simulated time, time and energy per round.
    Returns the number of runs read."""
    # (partition, policy) -> list of (seed, run)
    by = {}
    for _, doc in docs:
        setting = doc.get("setting", {})
        for run in doc.get("selection", {}).get("runs", []):
            key = (setting.get("partition", "?"), run.get("name", "?"))
            by.setdefault(key, []).append((setting.get("seed", 0), run))
    if not by:
        return 0
    partitions = sorted({k[0] for k in by}, key=lambda p: ["iid", "dirichlet:0.5", "shards:2"].index(p)
                        if p in ["iid", "dirichlet:0.5", "shards:2"] else 99)
    policies = []
    for k in by:
        if k[1] not in policies:
            policies.append(k[1])
    fig, axes = plt.subplots(2, len(partitions), figsize=(4.2 * len(partitions), 7), squeeze=False)
    for col, part in enumerate(partitions):
        ax = axes[0][col]
        for pol in policies:
            runs = sorted(by.get((part, pol), []), key=lambda sr: sr[0])
            if not runs:
                continue
            run = runs[0][1]  # the lowest seed
            secs, acc = run.get("seconds_per_round", []), run.get("accuracy_per_round", [])
            t, pts = 0.0, []
            for s_, a in zip(secs, acc):
                t += s_ if finite(s_) else 0.0
                if finite(a):
                    pts.append((t, 100 * a))
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], label=pol)
        ax.set_title(f"{part}: accuracy vs simulated time (seed {runs[0][0] if runs else '?'})", fontsize=8)
        ax.set_xlabel("simulated seconds")
        ax.set_ylabel("test accuracy (%)")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
        bx = axes[1][col]
        width = 0.38
        for j, (field, unit, color) in enumerate([("mean_round_seconds", "s", "tab:blue"),
                                                   ("mean_round_joules", "J", "tab:orange")]):
            means, lo, hi = [], [], []
            for pol in policies:
                vals = [r.get(field) for _, r in by.get((part, pol), []) if finite(r.get(field))]
                m = sum(vals) / len(vals) if vals else float("nan")
                means.append(m)
                lo.append(m - min(vals) if vals else 0)
                hi.append(max(vals) - m if vals else 0)
            xs = [i + (j - 0.5) * width for i in range(len(policies))]
            bx.bar(xs, means, width, yerr=[lo, hi], color=color, capsize=2,
                   label=f"{'time' if unit == 's' else 'energy'} per round ({unit})")
        bx.set_xticks(list(range(len(policies))))
        bx.set_xticklabels(policies, fontsize=7)
        bx.set_title(f"{part}: mean time and energy per round", fontsize=8)
        bx.grid(True, axis="y", alpha=0.3)
        bx.legend(fontsize=7)
    fig.suptitle("Client selection, FedAvg over a wireless fleet (100 clients, C = 0.1, Fashion-MNIST)", fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return sum(len(v) for v in by.values())


def plot_partitions(plt, docs, out):
    """Final accuracy per split workflow and partition. Returns the number of bars drawn."""
    acc = {}  # (workflow, partition) -> accuracy
    central = {}
    workflows, partitions = [], []
    for _, doc in docs:
        part = doc.get("partition", "shards:2")  # full.json predates the field: its run is shards:2
        if part == "shards":
            part = "shards:2"
        for key, label in [("centralised_accuracy", "centralised, batch b"),
                           ("centralised_accuracy_batch_nb", "centralised, batch N·b")]:
            if finite(doc.get(key)):
                central[label] = 100 * doc[key]  # one party, no partition: the same in every run
        rows = [(wf.get("workflow", "?"), wf.get("test_accuracy")) for wf in doc.get("workflows", [])]
        for name, a in rows:
            if not finite(a):
                continue
            acc[(name, part)] = 100 * a
            if name not in workflows:
                workflows.append(name)
            if part not in partitions:
                partitions.append(part)
    # Only the workflows measured under more than one partition are compared.
    workflows = [w for w in workflows if sum((w, p) in acc for p in partitions) > 1]
    if not workflows:
        return 0
    order = ["iid", "dirichlet:0.5", "shards:2"]
    partitions.sort(key=lambda p: order.index(p) if p in order else 99)
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(workflows) * len(partitions) / 2 + 2))
    h = 0.8 / len(partitions)
    n = 0
    for j, part in enumerate(partitions):
        ys, xs = [], []
        for i, w in enumerate(workflows):
            if (w, part) in acc:
                ys.append(i + (j - (len(partitions) - 1) / 2) * h)
                xs.append(acc[(w, part)])
        ax.barh(ys, xs, h, label=part)
        for y, x in zip(ys, xs):
            ax.text(x, y, f" {x:.1f}", va="center", fontsize=6)
        n += len(xs)
    ax.set_yticks(list(range(len(workflows))))
    ax.set_yticklabels(workflows, fontsize=7)
    ax.invert_yaxis()
    for (label, x), style in zip(sorted(central.items()), [":", "--"]):
        ax.axvline(x, color="grey", linewidth=0.8, linestyle=style, label=f"{label}: {x:.1f}")
    ax.set_xlim(0, 100)
    ax.set_xlabel("final test accuracy (%)")
    ax.set_title("Split learning on Fashion-MNIST (--full, 10 clients): workflow × partition", fontsize=9)
    ax.grid(True, axis="x", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return n


def plot_fleet(plt, docs, out):
    """Split learning over a wireless fleet: per workflow, time and energy per round, one column per
    cell bandwidth. Returns the number of workflows drawn."""
    runs = []
    for _, doc in docs:
        band = doc.get("fleet", {}).get("uplink_hz")
        rows = [w for w in doc.get("workflows", []) if finite(w.get("seconds_per_round"))]
        if rows and finite(band):
            runs.append((band, doc, rows))
    if not runs:
        return 0
    runs.sort(key=lambda r: r[0])
    fig, axes = plt.subplots(1, len(runs), figsize=(5.2 * len(runs), 4.6), squeeze=False)
    n = 0
    for col, (band, doc, rows) in enumerate(runs):
        ax = axes[0][col]
        names = [w.get("workflow", "?") for w in rows]
        width = 0.27
        for j, (field, label, color) in enumerate([("seconds_per_round", "round time (s)", "tab:blue"),
                                                   ("busy_seconds_per_client_round", "busy time per client (s)", "tab:green"),
                                                   ("joules_per_round", "energy, all clients (J)", "tab:orange")]):
            xs = [i + (j - 1) * width for i in range(len(rows))]
            ax.bar(xs, [w.get(field, float("nan")) for w in rows], width, color=color, label=label)
        top = max(w.get("seconds_per_round", 0) for w in rows)
        for i, w in enumerate(rows):
            if finite(w.get("test_accuracy")):
                ax.text(i, top * 1.02, f"{100 * w['test_accuracy']:.1f}%", ha="center", fontsize=6)
        ax.set_xticks(list(range(len(rows))))
        ax.set_xticklabels([nm.replace(", ", ",\n", 1) for nm in names], fontsize=6, rotation=30, ha="right")
        ax.set_ylim(0, top * 1.3)
        ax.set_title(f"{band / 1e6:g} MHz cell, {doc.get('clients', '?')} devices, {doc.get('partition', '?')}, "
                     f"seed {doc.get('seed', '?')} (final accuracy above)", fontsize=8)
        ax.grid(True, axis="y", alpha=0.3)
        ax.legend(fontsize=6, loc="upper center", ncol=3)
        n += len(rows)
    fig.suptitle("Split learning over a wireless fleet (LeNet-300-100, Fashion-MNIST): uniform and per-device cuts, "
                 "EdgeSplit clusters", fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return n


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=os.path.join(ROOT, "build", "plots"))
    ap.add_argument("--split", help="JSON of examples/split_fashion_mnist --json")
    ap.add_argument("--federated", help="JSON of examples/federated_fashion_mnist --json")
    ap.add_argument("--compress", nargs="*", help="JSON of examples/compress_fashion_mnist --json")
    ap.add_argument("--bench", nargs="*", help="JSON of scripts/run_benchmarks.py (with \"comparisons\")")
    ap.add_argument("--selection", nargs="*", help="JSON of federated_fashion_mnist --select ... --json")
    ap.add_argument("--partitions", nargs="*", help="JSON of split_fashion_mnist --full --partition P --json")
    ap.add_argument("--fleet", nargs="*", help="JSON of split_fashion_mnist --full --fleet --band HZ --json")
    ap.add_argument("--require", nargs="*", default=[],
                    choices=["accuracy", "compression", "benchmarks", "selection", "partitions", "fleet"])
    args = ap.parse_args(argv)

    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("plots.py: matplotlib is missing: apt-get install python3-matplotlib "
              "(bash scripts/deps.sh docs), and run this script with /usr/bin/python3", file=sys.stderr)
        return 1

    def explicit(paths):
        docs = []
        for p in paths:
            if not os.path.isfile(p):
                raise InputError(f"no such file: {p}")
            docs.append((p, load(p)))
        return docs

    try:
        split_doc = explicit([args.split])[0][1] if args.split else None
        fed_doc = explicit([args.federated])[0][1] if args.federated else None
        compress_paths = args.compress if args.compress is not None else sorted(glob.glob(DEFAULT_COMPRESS))
        compress = explicit(compress_paths)
        bench_paths = args.bench if args.bench is not None else ([DEFAULT_BENCH] if os.path.isfile(DEFAULT_BENCH) else [])
        bench = explicit(bench_paths)
        selection = explicit(args.selection if args.selection is not None
                             else sorted(glob.glob(DEFAULT_SELECTION)))
        partitions = explicit(args.partitions if args.partitions is not None
                              else [p for g in DEFAULT_PARTITIONS for p in sorted(glob.glob(g))])
        fleet = explicit(args.fleet if args.fleet is not None else sorted(glob.glob(DEFAULT_FLEET)))
    except InputError as e:
        print(f"plots.py: {e}", file=sys.stderr)
        return 2

    os.makedirs(args.out, exist_ok=True)
    drawn, missing = [], []

    if split_doc is None and fed_doc is None:
        print("plots.py: accuracy_per_round.png skipped: no workflow JSON; produce it with "
              "`split_fashion_mnist --json FILE` and/or `federated_fashion_mnist --json FILE` "
              "(build/examples/...), then pass --split FILE / --federated FILE")
        missing.append("accuracy")
    else:
        out = os.path.join(args.out, "accuracy_per_round.png")
        n = plot_accuracy(plt, split_doc, fed_doc, out)
        if n:
            print(f"plots.py: wrote {out} ({n} series)")
            drawn.append("accuracy")
        else:
            print("plots.py: accuracy_per_round.png skipped: the workflow JSON holds no finite accuracy")
            missing.append("accuracy")

    def figure(name, file, docs, plot, looked_for, produce, unit):
        """Draw one figure from `docs`, or say why it was skipped."""
        if not docs:
            print(f"plots.py: {file} skipped: no input JSON (looked for {looked_for}); produce it with {produce}")
            missing.append(name)
            return
        out = os.path.join(args.out, file)
        n = plot(plt, docs, out)
        if n:
            print(f"plots.py: wrote {out} ({n} {unit} from {len(docs)} file(s))")
            drawn.append(name)
        else:
            print(f"plots.py: {file} skipped: nothing to draw in the JSON given")
            missing.append(name)

    figure("compression", "compression_stages.png", compress, plot_compression, DEFAULT_COMPRESS,
           "`compress_fashion_mnist --json FILE`, then pass --compress FILE", "stages")
    figure("benchmarks", "benchmark_ratios.png", bench, plot_benchmarks, DEFAULT_BENCH,
           "`scripts/run_benchmarks.py`, then pass --bench FILE", "comparisons")
    figure("selection", "selection.png", selection, plot_selection, DEFAULT_SELECTION,
           "`federated_fashion_mnist --select uniform,channel,deadline:6 --json FILE`, then pass --selection FILE",
           "runs")
    figure("partitions", "split_partitions.png", partitions, plot_partitions, " and ".join(DEFAULT_PARTITIONS),
           "`split_fashion_mnist --full --partition P --json FILE`, then pass --partitions FILE", "bars")

    figure("fleet", "split_fleet.png", fleet, plot_fleet, DEFAULT_FLEET,
           "`split_fashion_mnist --full --fleet --band HZ --json FILE`, then pass --fleet FILE", "workflows")

    unmet = [r for r in args.require if r not in drawn]
    if unmet:
        print(f"plots.py: required figure(s) not drawn: {', '.join(unmet)}", file=sys.stderr)
        return 1
    if not drawn:
        print("plots.py: no figure drawn", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
