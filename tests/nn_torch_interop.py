#!/usr/bin/python3
"""Weights trained in PyTorch load into tinylarge, and ours load into PyTorch.

Usage: nn_torch_interop.py <path to the nn_torch_interop helper>

1. builds a torch.nn.Sequential with the same layers as the helper's model
   (conv, relu, max pool, depthwise conv, relu6, avg pool, flatten, linear,
   tanh, linear), with random weights;
2. saves its state_dict as .npz, and random inputs in NHWC;
3. runs the helper, which loads the weights, runs forward and exports them;
4. checks that the outputs agree with PyTorch's (NCHW) and that the exported
   state dict equals the original one.
"""
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch

torch.manual_seed(0)
torch.set_num_threads(1)


def make_model():
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(4, 8, 3, padding=1, groups=4), torch.nn.ReLU6(), torch.nn.AvgPool2d(2),
        torch.nn.Flatten(), torch.nn.Linear(32, 5), torch.nn.Tanh(), torch.nn.Linear(5, 3))


model = make_model()
with torch.no_grad():  # larger weights so that relu6 clips somewhere
    for p in model.parameters():
        p.mul_(2.0)

x = torch.randn(16, 1, 8, 8)
with torch.no_grad():
    expect = model(x).numpy()

with tempfile.TemporaryDirectory() as d:
    w, xin, yout, exp = (os.path.join(d, f) for f in ("w.npz", "x.npz", "y.npz", "exported.npz"))
    np.savez(w, **{k: v.numpy() for k, v in model.state_dict().items()})
    np.savez(xin, x=x.permute(0, 2, 3, 1).contiguous().numpy())  # NCHW -> NHWC
    r = subprocess.run([sys.argv[1], w, xin, yout, exp], capture_output=True, text=True)
    if r.returncode != 0:
        print(r.stdout, r.stderr)
        sys.exit(f"helper failed with {r.returncode}")
    got = np.load(yout)["y"]
    err = float(np.abs(got - expect).max())
    print(f"max |tinylarge - torch| output difference: {err:.3g}")
    assert got.shape == expect.shape, (got.shape, expect.shape)
    assert err < 1e-5, err
    exported = dict(np.load(exp))
    original = {k: v.numpy() for k, v in model.state_dict().items()}
    assert sorted(exported) == sorted(original), (sorted(exported), sorted(original))
    for k in original:
        assert exported[k].shape == original[k].shape, k
        assert np.array_equal(exported[k], original[k]), k
    fresh = make_model()
    fresh.load_state_dict({k: torch.from_numpy(v) for k, v in exported.items()})
    with torch.no_grad():
        assert torch.equal(fresh(x), model(x))
print("ok: PyTorch weights load into tinylarge and round-trip back unchanged")
