#!/usr/bin/python3
"""LeNet-300-100 on Fashion-MNIST: tinylarge against PyTorch, one thread, one run.

Usage: bench_training_torch.py [path/to/bench_training] [--repeats N]

Measures in PyTorch (torch.set_num_threads(1)) exactly what bench_training
measures: one epoch of plain SGD (lr 0.01, batch 64, shuffled) in samples/s,
and batch-1 inference latency; runs bench_training when its path is given
and prints both with the ratios.
"""
import gzip
import json
import subprocess
import sys
import time

import numpy as np
import torch

DIR = "/usr/share/datasets/fashion-mnist"


def idx(path, offset):
    with gzip.open(path, "rb") as f:
        return np.frombuffer(f.read(), dtype=np.uint8, offset=offset)


def load(prefix):
    x = idx(f"{DIR}/{prefix}-images-idx3-ubyte.gz", 16).reshape(-1, 784).astype(np.float32) / 255.0
    y = idx(f"{DIR}/{prefix}-labels-idx1-ubyte.gz", 8).astype(np.int64)
    return torch.from_numpy(x), torch.from_numpy(y)


def model():
    return torch.nn.Sequential(torch.nn.Linear(784, 300), torch.nn.ReLU(), torch.nn.Linear(300, 100),
                               torch.nn.ReLU(), torch.nn.Linear(100, 10))


def main():
    args = sys.argv[1:]
    repeats = 3
    if "--repeats" in args:
        i = args.index("--repeats")
        repeats = int(args[i + 1])
        del args[i:i + 2]
    torch.set_num_threads(1)
    torch.manual_seed(1)
    xtr, ytr = load("train")
    xte, yte = load("t10k")
    best_epoch = 1e30
    for _ in range(repeats):
        m = model()
        opt = torch.optim.SGD(m.parameters(), lr=0.01)
        loss_fn = torch.nn.CrossEntropyLoss()
        t0 = time.perf_counter()
        perm = torch.randperm(len(xtr))
        for s in range(0, len(xtr), 64):
            idxs = perm[s:s + 64]
            opt.zero_grad()
            loss = loss_fn(m(xtr[idxs]), ytr[idxs])
            loss.backward()
            opt.step()
        best_epoch = min(best_epoch, time.perf_counter() - t0)
    with torch.no_grad():
        acc = float((m(xte).argmax(1) == yte).float().mean())
        best_lat = 1e30
        n = 2000
        for _ in range(repeats):
            t0 = time.perf_counter()
            for i in range(n):
                m(xte[i:i + 1])
            best_lat = min(best_lat, (time.perf_counter() - t0) / n)
    ref = {"impl": "pytorch " + torch.__version__, "epoch_seconds": round(best_epoch, 3),
           "train_samples_per_second": round(len(xtr) / best_epoch),
           "test_accuracy_after_one_epoch": round(acc, 4), "fp32_batch1_us": round(1e6 * best_lat, 2)}
    print(json.dumps(ref))
    if args:
        out = subprocess.run([args[0], "--repeats", str(repeats)], capture_output=True, text=True, check=True).stdout
        ours = json.loads(out.strip().splitlines()[-1])
        print(json.dumps(ours))
        print(f"training speed-up (samples/s): {ours['train_samples_per_second'] / ref['train_samples_per_second']:.2f}x"
              f"  (goal >= 1.5x)")
        print(f"batch-1 latency: fp32 {ours['fp32_batch1_us']:.1f} us, int8 {ours['int8_batch1_us']:.1f} us, "
              f"pytorch {ref['fp32_batch1_us']:.1f} us  (goals: fp32 <= 8 us, int8 <= 4 us)")


if __name__ == "__main__":
    main()
