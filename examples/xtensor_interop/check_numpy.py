#!/usr/bin/env python3
"""Run examples/xtensor_interop and check what it saved with NumPy alone.

    check_numpy.py PATH/TO/xtensor_interop [extra args for it]

The .npy files are written by xt::dump_npy; NumPy must read them, and the
network's outputs recomputed in NumPy from the saved weights must equal the
logits the library computed (to fp32 rounding), its predictions the argmax.
"""
import os
import subprocess
import sys
import tempfile

import numpy as np


def main():
    exe = sys.argv[1]
    with tempfile.TemporaryDirectory() as out:
        run = subprocess.run([exe, "--out", out, "--train", "3000", "--epochs", "2"] + sys.argv[2:],
                             capture_output=True, text=True)
        sys.stdout.write(run.stdout)
        if run.returncode != 0:
            sys.stderr.write(run.stderr)
            sys.exit(f"xtensor_interop failed with status {run.returncode}")
        load = lambda name: np.load(os.path.join(out, name))
        x8, logits, pred, raw8 = load("x8.npy"), load("logits8.npy"), load("pred.npy"), load("raw8.npy")
        w0, b0, w1, b1 = load("w0.npy"), load("b0.npy"), load("w1.npy"), load("b1.npy")
        checks = [
            ("dtypes", x8.dtype == np.float32 and raw8.dtype == np.uint8 and pred.dtype == np.uint64),
            ("shapes", x8.shape == (8, 784) and raw8.shape == (8, 28, 28) and w0.shape == (64, 784)
             and b0.shape == (64,) and w1.shape == (10, 64) and b1.shape == (10,) and logits.shape == (8, 10)
             and pred.shape == (10000,)),
            ("features are raw pixels / 255", np.array_equal(x8, (raw8.reshape(8, 784) / np.float32(255)).astype(np.float32))),
        ]
        h = np.maximum(x8 @ w0.T + b0, 0)
        ref = h @ w1.T + b1
        err = float(np.max(np.abs(ref - logits)))
        checks.append((f"NumPy forward equals the library's logits (max |diff| {err:.2e})",
                       np.allclose(ref, logits, rtol=1e-4, atol=1e-4)))
        checks.append(("argmax equals the saved predictions", np.array_equal(np.argmax(logits, 1), pred[:8])))
        npz = np.load(os.path.join(out, "model.npz"))
        checks.append(("model.npz holds the same weights", sorted(npz.files) == ["0.bias", "0.weight", "2.bias", "2.weight"]
                       and np.array_equal(npz["0.weight"], w0) and np.array_equal(npz["2.bias"], b1)))
        for name, ok in checks:
            print(("ok    " if ok else "FAIL  ") + name)
        if not all(ok for _, ok in checks):
            sys.exit(1)


if __name__ == "__main__":
    main()
