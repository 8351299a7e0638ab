#!/usr/bin/python3
"""Writes PyTorch reference data for weft's loss kernels (src/tensor/loss.c).

Run with Debian's PyTorch (python3-torch, 1.13) from the repository root:

    /usr/bin/python3 tools/ref/gen_loss_ref.py [outdir]   # default tests/ref/loss

From a fixed seed it makes small random inputs for each case, runs
torch.nn.functional.mse_loss and binary_cross_entropy_with_logits forward and
backward (both arguments require grad; the upstream gradient of the scalar
loss is a random `dloss`) in float32, and writes one file per case plus
MANIFEST (the case names, one a line). tests/tensor/test_kernels_torch_loss.c
reads them; CI needs no PyTorch.

The case file format, and the writer, are gen_dense_ref.py's ("weft-ref 1"
header lines, then the arrays' bytes). Each case has

    op mse          int n; float scale, dloss; arrays a, b, loss (1), da, db
    op bce_logits   int n; float scale, dloss; arrays x, t, loss (1), dx, dt

where scale is 1/n for reduction="mean" and 1 for reduction="sum": weft's
loss is scale * sum of the per-element terms.
"""
import os
import sys

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, HERE)
from gen_dense_ref import clear_cases, write_case, write_manifest  # noqa: E402  (the case file writer)

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "..", "tests", "ref", "loss")
torch.manual_seed(20240917)
cases = []


def scalar_case(name, op, fn, p, q, reduction):
    """Runs loss = fn(p, q, reduction) and its backward with a random dloss."""
    p, q = p.detach().clone().requires_grad_(), q.detach().clone().requires_grad_()
    n = p.numel()
    loss = fn(p, q, reduction=reduction)
    dloss = torch.randn(()) * 2.0
    loss.backward(dloss)
    scale = 1.0 / n if reduction == "mean" else 1.0
    names = ("a", "b", "da", "db") if op == "mse" else ("x", "t", "dx", "dt")
    arrays = {names[0]: p.reshape(-1), names[1]: q.reshape(-1), "loss": loss.detach().reshape(1),
              names[2]: p.grad.reshape(-1), names[3]: q.grad.reshape(-1)}
    write_case(OUT, name, op, dict(n=n), dict(scale=scale, dloss=dloss.item()), arrays=arrays)
    cases.append(name)


def mse(name, shape, reduction, pscale=1.0, autoenc=False):
    if autoenc:  # sigmoid outputs against pixel values in [0, 1], as examples/autoenc.wf
        p = torch.sigmoid(torch.randn(*shape))
        q = torch.randint(0, 256, shape).float() / 255.0
    else:
        p, q = torch.randn(*shape) * pscale, torch.randn(*shape) * pscale
    scalar_case(name, "mse", F.mse_loss, p, q, reduction)


def bce(name, shape, reduction, xscale, hard=False, extreme=False):
    x = torch.randn(*shape) * xscale
    t = torch.rand(*shape)
    if hard:
        t = (t < 0.5).float()
    if extreme:  # logits far past exp's float range: the terms stay finite
        flat = x.view(-1)
        flat[:8] = torch.tensor([1e4, -1e4, 1e4, -1e4, 100.0, -100.0, 89.0, -750.0])
    scalar_case(name, "bce_logits", F.binary_cross_entropy_with_logits, x, t, reduction)


def main():
    clear_cases(OUT)
    mse("mse_mean", (8, 33), "mean")
    mse("mse_sum", (5, 7), "sum")
    mse("mse_one", (1,), "mean", pscale=3.0)
    mse("mse_large", (3, 40), "mean", pscale=100.0)
    mse("mse_autoenc", (4, 784), "mean", autoenc=True)
    bce("bce_mean", (8, 33), "mean", 3.0)
    bce("bce_sum", (5, 7), "sum", 2.0)
    bce("bce_hard", (6, 50), "mean", 5.0, hard=True)
    bce("bce_extreme", (4, 20), "sum", 30.0, hard=True, extreme=True)
    bce("bce_pixels", (4, 784), "mean", 2.0)
    write_manifest(OUT, cases)


if __name__ == "__main__":
    main()
