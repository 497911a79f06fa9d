#!/usr/bin/python3
"""Weights trained in PyTorch load into tinylarge, and ours load into PyTorch.

Usage: nn_torch_interop.py <path to the nn_torch_interop helper>
       nn_torch_interop.py --transformer <path to the helper>
       nn_torch_interop.py --vision <path to the helper>

1. builds a torch.nn.Sequential with the same layers as the helper's model
   (conv, relu, max pool, depthwise conv, relu6, avg pool, flatten, linear,
   tanh, linear), with random weights;
2. saves its state_dict as .npz, and random inputs in NHWC;
3. runs the helper, which loads the weights, runs forward and exports them;
4. checks that the outputs agree with PyTorch's (NCHW) and that the exported
   state dict equals the original one.

With --transformer: builds the helper's transformer model from torch.nn
modules (LayerNorm, MultiheadAttention with and without a causal mask,
Linear, GELU, residual additions), passes its parameters in tinylarge's flat
layout with random inputs and output gradients, and checks the helper's
output, input gradient and parameter gradients against autograd's (relative
to each tensor's largest magnitude, < 1e-5). Then the same for a token
model (helper's --lm): nn.Embedding, a learned position table, Vaswani's
sinusoidal positions, RMSNorm (written out: torch 1.13 has no nn.RMSNorm),
causal attention, a SiLU MLP and a position-wise head; the ids' gradient
must be exactly zero.

With --vision: patch embedding as torch.nn.Conv2d(C, D, P, stride=P) (the
ViT patchify), BatchNorm2d over its channels, GELU, Linear on the flattened
(NHWC) grid and BatchNorm1d, in training mode: output, input gradient and
parameter gradients as above, the running means and variances after the pass
equal to torch's buffers, and the inference output (running statistics) equal
to the model's in eval() mode.
"""
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch

torch.manual_seed(0)
torch.set_num_threads(1)


def transformer_check(helper):
    torch.manual_seed(1)
    T, D = 5, 8
    ln1, ln2, ln3 = (torch.nn.LayerNorm(D) for _ in range(3))
    att1 = torch.nn.MultiheadAttention(D, 2, batch_first=True)
    fc1, fc2 = torch.nn.Linear(D, 2 * D), torch.nn.Linear(2 * D, D)
    att2 = torch.nn.MultiheadAttention(D, 4, batch_first=True)
    with torch.no_grad():  # non-trivial gains and biases everywhere
        for m in (ln1, ln2, ln3, att1, fc1, fc2, att2):
            for p in m.parameters():
                p.add_(0.3 * torch.randn_like(p))
    causal = torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1)

    def forward(x):
        h = ln1(x)
        x = x + att1(h, h, h, attn_mask=causal, need_weights=False)[0]
        x = x + fc2(torch.nn.functional.gelu(fc1(ln2(x))))
        x = att2(x, x, x, need_weights=False)[0]
        return ln3(x)

    def ours(m):  # tinylarge's flat order of one module's parameters
        if isinstance(m, torch.nn.MultiheadAttention):
            return [m.in_proj_weight, m.out_proj.weight, m.in_proj_bias, m.out_proj.bias]
        return [m.weight, m.bias]
    order = [p for m in (ln1, att1, ln2, fc1, fc2, att2, ln3) for p in ours(m)]
    flat = lambda ts: torch.cat([t.reshape(-1) for t in ts]).detach().numpy()

    x = torch.randn(3, T, D, requires_grad=True)
    dy = torch.randn(3, T, D)
    y = forward(x)
    y.backward(dy)
    with tempfile.TemporaryDirectory() as d:
        fin, fout = os.path.join(d, "in.npz"), os.path.join(d, "out.npz")
        np.savez(fin, params=flat(order), x=x.detach().numpy().reshape(3, 1, T, D), dy=dy.numpy().reshape(3, 1, T, D))
        r = subprocess.run([helper, "--transformer", fin, fout], capture_output=True, text=True)
        if r.returncode != 0:
            print(r.stdout, r.stderr)
            sys.exit(f"helper failed with {r.returncode}")
        got = np.load(fout)
        worst = 0.0
        for name, expect in (("y", y.detach().numpy()), ("dx", x.grad.numpy()), ("grads", flat([p.grad for p in order]))):
            g = got[name].reshape(-1)
            e = expect.reshape(-1)
            assert g.shape == e.shape, (name, g.shape, e.shape)
            rel = float(np.abs(g - e).max() / np.abs(e).max())
            print(f"{name}: max |tinylarge - torch| / max |torch| = {rel:.3g}")
            worst = max(worst, rel)
        assert worst < 1e-5, worst
    print("ok: transformer layers agree with PyTorch (forward, input and parameter gradients)")


def run_helper(helper, mode, params, x, dy):
    with tempfile.TemporaryDirectory() as d:
        fin, fout = os.path.join(d, "in.npz"), os.path.join(d, "out.npz")
        np.savez(fin, params=params, x=x, dy=dy)
        r = subprocess.run([helper, mode, fin, fout], capture_output=True, text=True)
        if r.returncode != 0:
            print(r.stdout, r.stderr)
            sys.exit(f"helper failed with {r.returncode}")
        return dict(np.load(fout))


def token_model_check(helper):
    torch.manual_seed(2)
    V, T, D = 11, 6, 8
    emb = torch.nn.Embedding(V, D)
    pos = torch.nn.Parameter(torch.randn(T, D))
    # Vaswani et al.: PE[t][2i] = sin(t / 10000^(2i/D)), PE[t][2i+1] = cos(...), in float64 then float32
    t = torch.arange(T, dtype=torch.float64)[:, None]
    j = torch.arange(D)
    angle = t * torch.pow(10000.0, -(j - j % 2).double() / D)[None, :]
    sinus = torch.where(j % 2 == 0, torch.sin(angle), torch.cos(angle)).float()
    g1, g2, g3 = (torch.nn.Parameter(torch.ones(D)) for _ in range(3))
    att = torch.nn.MultiheadAttention(D, 2, batch_first=True)
    fc1, fc2, head = torch.nn.Linear(D, 2 * D), torch.nn.Linear(2 * D, D), torch.nn.Linear(D, V)
    eps = torch.finfo(torch.float32).eps  # torch.nn.RMSNorm's default

    def rms(x, g):  # torch.nn.RMSNorm(D) (torch >= 2.4), written out
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * g

    with torch.no_grad():
        for p in (g1, g2, g3, *att.parameters(), *fc1.parameters(), *fc2.parameters(), *head.parameters()):
            p.add_(0.3 * torch.randn_like(p))
    causal = torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1)

    def forward(ids):
        x = emb(ids) + pos + sinus
        h = rms(x, g1)
        x = x + att(h, h, h, attn_mask=causal, need_weights=False)[0]
        x = x + fc2(torch.nn.functional.silu(fc1(rms(x, g2))))
        return head(rms(x, g3))

    order = [emb.weight, pos, g1, att.in_proj_weight, att.out_proj.weight, att.in_proj_bias, att.out_proj.bias, g2,
             fc1.weight, fc1.bias, fc2.weight, fc2.bias, g3, head.weight, head.bias]
    flat = lambda ts: torch.cat([t.reshape(-1) for t in ts]).detach().numpy()
    ids = torch.randint(0, V, (3, T))
    ids[0, :3] = 4  # a repeated id: its table row accumulates
    dy = torch.randn(3, T, V)
    y = forward(ids)
    y.backward(dy)
    got = run_helper(helper, "--lm", flat(order), ids.numpy().astype(np.float32).reshape(3, 1, T, 1),
                     dy.numpy().reshape(3, 1, T, V))
    worst = 0.0
    for name, expect in (("y", y.detach().numpy()), ("grads", flat([p.grad for p in order]))):
        g = got[name].reshape(-1)
        e = expect.reshape(-1)
        assert g.shape == e.shape, (name, g.shape, e.shape)
        rel = float(np.abs(g - e).max() / np.abs(e).max())
        print(f"token model {name}: max |tinylarge - torch| / max |torch| = {rel:.3g}")
        worst = max(worst, rel)
    assert worst < 1e-5, worst
    assert not np.any(got["dx"]), "the gradient with respect to token ids must be zero"
    print("ok: embedding, positions, RMSNorm and SiLU agree with PyTorch (forward and parameter gradients)")


def vision_check(helper):
    torch.manual_seed(3)
    N, H, W, C, P, D, F = 3, 8, 8, 2, 2, 6, 5
    patchify = torch.nn.Conv2d(C, D, P, stride=P)
    bn2d = torch.nn.BatchNorm2d(D)
    fc = torch.nn.Linear((H // P) * (W // P) * D, F)
    bn1d = torch.nn.BatchNorm1d(F)
    with torch.no_grad():  # non-trivial gains, biases and running statistics
        for bn in (bn2d, bn1d):
            bn.weight.add_(0.3 * torch.randn_like(bn.weight))
            bn.bias.add_(0.3 * torch.randn_like(bn.bias))
            bn.running_mean.copy_(0.5 * torch.randn_like(bn.running_mean))
            bn.running_var.copy_(0.5 + torch.rand_like(bn.running_var))

    def forward(x):  # x: NCHW
        # Our flatten is NHWC. GELU is elementwise, so it runs after the
        # permutation: torch 1.13's GELU backward returns ~0 when the incoming
        # gradient is a permuted (channels-last) view.
        h = bn2d(patchify(x)).permute(0, 2, 3, 1).flatten(1)
        return bn1d(fc(torch.nn.functional.gelu(h)))

    def ours(ts):  # tinylarge's flat layout; conv weights [D][C][P][P] -> [D][P][P][C]
        return np.concatenate([(t.permute(0, 2, 3, 1) if t.dim() == 4 else t).reshape(-1).detach().numpy()
                               for t in ts])

    params = lambda: [patchify.weight, patchify.bias, bn2d.weight, bn2d.bias, bn2d.running_mean, bn2d.running_var,
                      fc.weight, fc.bias, bn1d.weight, bn1d.bias, bn1d.running_mean, bn1d.running_var]
    before = ours(params())
    x = torch.randn(N, C, H, W, requires_grad=True)
    dy = torch.randn(N, F)
    y = forward(x)  # training mode: batch statistics, running statistics updated
    y.backward(dy)
    zeros = lambda t: torch.zeros_like(t)
    grads = [patchify.weight.grad, patchify.bias.grad, bn2d.weight.grad, bn2d.bias.grad, zeros(bn2d.running_mean),
             zeros(bn2d.running_var), fc.weight.grad, fc.bias.grad, bn1d.weight.grad, bn1d.bias.grad,
             zeros(bn1d.running_mean), zeros(bn1d.running_var)]
    after = ours(params())
    for m in (patchify, bn2d, fc, bn1d):
        m.eval()
    with torch.no_grad():
        y_eval = forward(x)
    got = run_helper(helper, "--vision", before, x.detach().permute(0, 2, 3, 1).contiguous().numpy(), dy.numpy())
    worst = 0.0
    for name, expect in (("y", y.detach().numpy()), ("dx", x.grad.permute(0, 2, 3, 1).numpy()),
                         ("grads", ours(grads)), ("params_after", after), ("y_eval", y_eval.numpy())):
        g = got[name].reshape(-1)
        e = expect.reshape(-1)
        assert g.shape == e.shape, (name, g.shape, e.shape)
        rel = float(np.abs(g - e).max() / np.abs(e).max())
        print(f"vision {name}: max |tinylarge - torch| / max |torch| = {rel:.3g}")
        worst = max(worst, rel)
    assert worst < 1e-5, worst
    assert not np.array_equal(after, before), "the running statistics must have moved"
    print("ok: patch embedding (Conv2d patchify) and BatchNorm1d/2d agree with PyTorch (forward, gradients, "
          "running statistics, inference)")


if len(sys.argv) == 3 and sys.argv[1] == "--vision":
    vision_check(sys.argv[2])
    sys.exit(0)

if len(sys.argv) == 3 and sys.argv[1] == "--transformer":
    transformer_check(sys.argv[2])
    token_model_check(sys.argv[2])
    sys.exit(0)


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
