#!/usr/bin/python3
"""LeNet-300-100 on Fashion-MNIST: tinylarge against PyTorch, one thread, one run.

Usage: bench_training_torch.py [path/to/bench_training] [--repeats N]

Measures in PyTorch (torch.set_num_threads(1)) exactly what bench_training
measures: one epoch of plain SGD (lr 0.01, batch 64, shuffled) in samples/s,
and batch-1 inference latency over the 10 000 test images (torch.no_grad(),
one 1x784 tensor per call; best of N passes, wall clock and process CPU time).
One thread really means one: torch.set_num_threads(1) does not limit the BLAS
that Debian's PyTorch calls (OpenBLAS), which otherwise runs a second thread
during training (~0.45 s of CPU per epoch, ~35% more samples/s on an idle
2-core machine); OPENBLAS_NUM_THREADS=1 and OMP_NUM_THREADS=1 are set before
torch is imported. --torch-blas-threads N lets you see the other figure;
runs bench_training when its path is given and prints both with the ratios
(PyTorch's latency / ours: > 1 means we are faster).
"""
import gzip
import json
import os
import subprocess
import sys
import time

# Before torch (and its OpenBLAS) is loaded: see the docstring.
_blas_threads = "1"
if "--torch-blas-threads" in sys.argv:
    _i = sys.argv.index("--torch-blas-threads")
    _blas_threads = sys.argv[_i + 1]
    del sys.argv[_i:_i + 2]
os.environ["OPENBLAS_NUM_THREADS"] = _blas_threads
os.environ["OMP_NUM_THREADS"] = _blas_threads

import numpy as np  # noqa: E402
import torch  # noqa: E402

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
    best_epoch = best_epoch_cpu = best_epoch_thread = 1e30
    for _ in range(repeats):
        m = model()
        opt = torch.optim.SGD(m.parameters(), lr=0.01)
        loss_fn = torch.nn.CrossEntropyLoss()
        t0, c0, h0 = time.perf_counter(), time.process_time(), time.thread_time()
        perm = torch.randperm(len(xtr))
        for s in range(0, len(xtr), 64):
            idxs = perm[s:s + 64]
            opt.zero_grad()
            loss = loss_fn(m(xtr[idxs]), ytr[idxs])
            loss.backward()
            opt.step()
        best_epoch_cpu = min(best_epoch_cpu, time.process_time() - c0)
        best_epoch_thread = min(best_epoch_thread, time.thread_time() - h0)
        best_epoch = min(best_epoch, time.perf_counter() - t0)
    with torch.no_grad():
        acc = float((m(xte).argmax(1) == yte).float().mean())
        n = len(xte)
        rows = [xte[i:i + 1] for i in range(n)]
        best_lat = best_cpu = 1e30
        for _ in range(repeats):
            t0, c0 = time.perf_counter(), time.process_time()
            for r in rows:
                m(r)
            best_cpu = min(best_cpu, (time.process_time() - c0) / n)
            best_lat = min(best_lat, (time.perf_counter() - t0) / n)
    ref = {"impl": "pytorch " + torch.__version__, "epoch_seconds": round(best_epoch, 3),
           "train_samples_per_second": round(len(xtr) / best_epoch),
           "epoch_cpu_seconds": round(best_epoch_cpu, 3),
           "train_samples_per_cpu_second": round(len(xtr) / best_epoch_cpu),
           "epoch_main_thread_cpu_seconds": round(best_epoch_thread, 3),
           "test_accuracy_after_one_epoch": round(acc, 4), "latency_images": n,
           "fp32_batch1_us": round(1e6 * best_lat, 2), "fp32_batch1_cpu_us": round(1e6 * best_cpu, 2)}
    print(json.dumps(ref))
    if args:
        out = subprocess.run([args[0], "--repeats", str(repeats)], capture_output=True, text=True, check=True).stdout
        ours = json.loads(out.strip().splitlines()[-1])
        print(json.dumps(ours))
        print(f"training speed-up (samples/s): {ours['train_samples_per_second'] / ref['train_samples_per_second']:.2f}x"
              f"  (goal >= 1.5x); in process CPU time: "
              f"{ours['train_samples_per_cpu_second'] / ref['train_samples_per_cpu_second']:.2f}x, against the CPU "
              f"time of PyTorch's main thread only: "
              f"{ref['epoch_main_thread_cpu_seconds'] / ours['epoch_cpu_seconds']:.2f}x")
        for clock, key in (("wall", ""), ("process CPU", "_cpu")):
            torch_us = ref[f"fp32_batch1{key}_us"]
            print(f"batch-1 latency ({clock}, best of {repeats} passes over {n} test images): "
                  f"pytorch {torch_us:.1f} us | "
                  f"fp32 {ours[f'fp32_batch1{key}_us']:.1f} us "
                  f"({torch_us / ours[f'fp32_batch1{key}_us']:.1f}x faster) | "
                  f"int8 {ours[f'int8_batch1{key}_us']:.1f} us ({torch_us / ours[f'int8_batch1{key}_us']:.1f}x) | "
                  f"fp32 network::forward {ours[f'fp32_network_forward_batch1{key}_us']:.1f} us "
                  f"({torch_us / ours[f'fp32_network_forward_batch1{key}_us']:.1f}x) | "
                  f"fp32 on dense random inputs {ours[f'fp32_batch1_dense_input{key}_us']:.1f} us "
                  f"({torch_us / ours[f'fp32_batch1_dense_input{key}_us']:.1f}x)")
        print("goals: fp32 <= 8 us, int8 <= 4 us (PyTorch ~32 us here when the machine is quiet)")

if __name__ == "__main__":
    main()
