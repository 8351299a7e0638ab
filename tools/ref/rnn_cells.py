#!/usr/bin/python3
"""Writes PyTorch reference data for weft's recurrent cell ops (rnn_tanh, gru,
lstm: src/graph/ops_rnn.c, src/tensor/rnn.c; docs/recurrent.md).

Run with Debian's PyTorch (python3-torch, 1.13) from the repository root:

    /usr/bin/python3 tools/ref/rnn_cells.py [outdir]   # default tests/ref/rnn

For each case it builds torch.nn.RNNCell(nonlinearity="tanh") / GRUCell /
LSTMCell(I, H) after a fixed seed (PyTorch's own init, uniform within
1/sqrt(H), optionally scaled so the gates saturate), draws an input x (B, I),
a state and an upstream gradient R, runs the cell forward and backward of
L = sum(out * R) in float32 on one thread, and writes the inputs, the weights,
R, the output and every gradient. tests/graph/test_rnn_cells.c reads them and
runs weft's op (through the op table and the executor); CI needs no PyTorch.

The state and output are weft's layout: f32[B, H] for rnn_tanh and gru; for
lstm f32[B, 2H] holding [h | c] in each row (torch's (h, c) pair side by side).

The case file format and its writer are gen_dense_ref.py's. Each case has

    op rnn_tanh | gru | lstm
    int B, I, H
    arrays x (B*I), s (B*S), weight_ih (G*H*I), weight_hh (G*H*H), bias_ih (G*H),
           bias_hh (G*H), R (B*S), out (B*S), dx, ds, dweight_ih, dweight_hh,
           dbias_ih, dbias_hh
"""
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, HERE)
from gen_dense_ref import clear_cases, write_case, write_manifest  # noqa: E402  (the case file writer)

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "..", "..", "tests", "ref", "rnn")
cases = []


def cell_case(name, op, B, I, H, seed, wscale=1.0, xscale=1.0, sscale=0.5):
    torch.manual_seed(seed)
    if op == "rnn_tanh":
        cell = torch.nn.RNNCell(I, H, nonlinearity="tanh")
    elif op == "gru":
        cell = torch.nn.GRUCell(I, H)
    else:
        cell = torch.nn.LSTMCell(I, H)
    with torch.no_grad():
        for p in cell.parameters():
            p.mul_(wscale)
    S = 2 * H if op == "lstm" else H
    x = (torch.randn(B, I) * xscale).requires_grad_()
    s = (torch.randn(B, S) * sscale).requires_grad_()
    R = torch.randn(B, S)
    if op == "lstm":
        h1, c1 = cell(x, (s[:, :H], s[:, H:]))
        out = torch.cat([h1, c1], dim=1)
    else:
        out = cell(x, s)
    (out * R).sum().backward()
    arrays = {"x": x.reshape(-1), "s": s.reshape(-1)}
    for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
        arrays[k] = getattr(cell, k).reshape(-1)
    arrays.update({"R": R.reshape(-1), "out": out.reshape(-1), "dx": x.grad.reshape(-1), "ds": s.grad.reshape(-1)})
    for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
        arrays["d" + k] = getattr(cell, k).grad.reshape(-1)
    write_case(OUT, name, op, dict(B=B, I=I, H=H), arrays=arrays)
    cases.append(name)


def main():
    torch.set_num_threads(1)
    clear_cases(OUT)
    seed = 20250301
    for op in ("rnn_tanh", "gru", "lstm"):
        cell_case(op + "_b1", op, 1, 3, 5, seed)            # one row, H not a multiple of 8
        cell_case(op + "_small", op, 4, 6, 9, seed + 1)
        cell_case(op + "_wide", op, 8, 33, 20, seed + 2)
        cell_case(op + "_h16", op, 3, 16, 16, seed + 3)
        # large weights and inputs: saturated gates
        cell_case(op + "_sat", op, 5, 7, 11, seed + 4, wscale=4.0, xscale=2.0, sscale=1.5)
        seed += 10
    write_manifest(OUT, cases)


if __name__ == "__main__":
    main()
