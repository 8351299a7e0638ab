#!/usr/bin/python3
"""Writes PyTorch reference data for weft's dense kernels and optimizers.

Run with Debian's PyTorch (python3-torch, 1.13) from the repository root:

    /usr/bin/python3 tools/ref/gen_dense_ref.py [outdir]   # default tests/ref/dense

From a fixed seed it makes small random inputs for each op, runs PyTorch's
forward and backward (with a random upstream gradient) in float32, and
writes one file per case plus MANIFEST (the case names, one a line).
tests/tensor/test_kernels_torch_dense.c reads them; CI needs no PyTorch.

Case file format (all numbers little-endian):

    weft-ref 1\\n                   magic line
    case NAME\\n                    the case's name (= file name without .ref)
    op OP\\n                        which kernel family the C test runs
    int KEY VALUE\\n                zero or more integer parameters
    float KEY VALUE\\n              zero or more float parameters (repr of a float32)
    array NAME f32|i32 COUNT\\n     zero or more arrays, in data order
    end\\n
    DATA                            the arrays back to back, 4 bytes per element

tools/ref/gen_loss_ref.py writes its cases with this file's writer
(clear_cases, write_case, write_manifest); importing it runs nothing.
"""
import os
import struct
import sys

import numpy as np
import torch
import torch.nn.functional as F

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "..", "tests", "ref", "dense")
cases = []


def f32(x):
    return float(np.float32(x))


def write_case(outdir, name, op, ints=None, floats=None, arrays=None):
    """Writes OUTDIR/NAME.ref in the format above."""
    head = ["weft-ref 1", "case " + name, "op " + op]
    for k, v in (ints or {}).items():
        head.append("int %s %d" % (k, int(v)))
    for k, v in (floats or {}).items():
        head.append("float %s %r" % (k, f32(v)))
    blobs = []
    for k, v in (arrays or {}).items():
        if isinstance(v, torch.Tensor):
            v = v.detach().contiguous().numpy()
        v = np.asarray(v)
        if v.dtype.kind in "iu":
            a, t = v.astype("<i4"), "i32"
        else:
            a, t = v.astype("<f4"), "f32"
        head.append("array %s %s %d" % (k, t, a.size))
        blobs.append(a.tobytes())
    head.append("end")
    with open(os.path.join(outdir, name + ".ref"), "wb") as f:
        f.write(("\n".join(head) + "\n").encode())
        for b in blobs:
            f.write(b)


def clear_cases(outdir):
    """Makes outdir and removes the case files there."""
    os.makedirs(outdir, exist_ok=True)
    for f in os.listdir(outdir):
        if f.endswith(".ref"):
            os.remove(os.path.join(outdir, f))


def write_manifest(outdir, names):
    """Writes OUTDIR/MANIFEST (the case names, one a line) and says what was written."""
    with open(os.path.join(outdir, "MANIFEST"), "w") as f:
        f.write("".join(c + "\n" for c in names))
    total = sum(os.path.getsize(os.path.join(outdir, c + ".ref")) for c in names)
    print("wrote %d cases, %d bytes, to %s (torch %s)" % (len(names), total, outdir, torch.__version__))


def write(name, op, ints=None, floats=None, arrays=None):
    write_case(OUT, name, op, ints, floats, arrays)
    cases.append(name)


def leaf(*shape, scale=1.0):
    return (torch.randn(*shape) * scale).requires_grad_()


def grads(out, *leaves):
    """Backward of sum(out * R) with random R; returns R and the grads."""
    r = torch.randn_like(out)
    out.backward(r)
    return [r] + [x.grad.clone() for x in leaves]


def linear(name, B, C, OC, bias):
    x, w = leaf(B, C), leaf(OC, C, scale=0.3)
    b = leaf(OC) if bias else None
    out = F.linear(x, w, b)
    g = grads(out, x, w, *([b] if bias else []))
    arrays = dict(inp=x, w=w)
    if bias:
        arrays["bias"] = b
    arrays.update(dout=g[0], out=out, dinp=g[1], dw=g[2])
    if bias:
        arrays["dbias"] = g[3]
    write(name, "linear", dict(B=B, C=C, OC=OC, has_bias=int(bias)), arrays=arrays)


def matmul(name, nb, M, K, N, shared):
    a = leaf(nb, M, K)
    b = leaf(K, N) if shared else leaf(nb, K, N)
    out = torch.matmul(a, b)
    r, da, db = grads(out, a, b)
    write(name, "matmul", dict(nb=nb, M=M, K=K, N=N, b_shared=int(shared)),
          arrays=dict(a=a, b=b, dout=r, out=out, da=da, db=db))


def binary(name, op, ashape, bshape):
    a, b = leaf(*ashape), leaf(*bshape)
    out = a + b if op == "add" else a * b
    r, da, db = grads(out, a, b)
    write(name, op, dict(n=a.numel(), m=b.numel()), arrays=dict(a=a, b=b, dout=r, out=out, da=da, db=db))


def unary(name, op, fn, n, scale):
    x = leaf(n, scale=scale)
    if op == "relu":  # keep clear of the kink at 0
        with torch.no_grad():
            x += torch.sign(x) * 0.01
    out = fn(x)
    r, dx = grads(out, x)
    write(name, op, dict(n=n), arrays=dict(inp=x, dout=r, out=out, dinp=dx))


def softmax(name, op, R, V, scale):
    x = leaf(R, V, scale=scale)
    out = F.softmax(x, -1) if op == "softmax" else F.log_softmax(x, -1)
    r, dx = grads(out, x)
    write(name, op, dict(R=R, V=V), arrays=dict(inp=x, dout=r, out=out, dinp=dx))


def xent(name, B, V, scale, lscale):
    x = leaf(B, V, scale=lscale)
    t = torch.randint(0, V, (B,), dtype=torch.int64)
    loss = F.cross_entropy(x, t, reduction="sum") * scale
    dloss = torch.randn(())
    loss.backward(dloss)
    probs = F.softmax(x.detach(), -1)
    write(name, "softmax_xent", dict(B=B, V=V), dict(scale=scale, dloss=dloss.item()),
          arrays=dict(logits=x, targets=t.int(), loss=loss.detach().reshape(1), probs=probs, dlogits=x.grad))


def argmax(name, B, V):
    x = torch.round(torch.randn(B, V) * 1.5)  # integers: many ties
    t = torch.randint(0, V, (B,))
    correct = int((torch.argmax(x, -1) == t).sum())
    write(name, "argmax", dict(B=B, V=V, correct=correct), arrays=dict(logits=x, targets=t.int()))


def layernorm(name, R, C, eps):
    x, w, b = leaf(R, C, scale=2.0), leaf(C), leaf(C)
    with torch.no_grad():
        x += 3.0  # a mean far from 0
    out, mean, rstd = torch.native_layer_norm(x, [C], w, b, eps)
    r, dx, dw, db = grads(out, x, w, b)
    write(name, "layernorm", dict(R=R, C=C), dict(eps=eps),
          arrays=dict(inp=x, w=w, b=b, dout=r, out=out, mean=mean.reshape(R), rstd=rstd.reshape(R), dinp=dx, dw=dw,
                      db=db))


def embedding(name, B, V, D):
    table = leaf(V, D)
    ids = torch.randint(0, V, (B,))
    ids[1] = ids[0]  # repeated ids sum
    out = F.embedding(ids, table)
    r, dt = grads(out, table)
    write(name, "embedding", dict(B=B, V=V, D=D), arrays=dict(ids=ids.int(), table=table, dout=r, out=out, dtable=dt))


def concat(name, outer, dims, inner):
    xs = [leaf(outer, d, inner) for d in dims]
    out = torch.cat(xs, 1)
    g = grads(out, *xs)
    arrays = {"in%d" % i: x for i, x in enumerate(xs)}
    arrays.update(dout=g[0], out=out)
    arrays.update({"din%d" % i: d for i, d in enumerate(g[1:])})
    write(name, "concat", dict(outer=outer, inner=inner, n=len(dims), **{"dim%d" % i: d for i, d in enumerate(dims)}),
          arrays=arrays)


def slice_(name, outer, dim, inner, start, ln):
    x = leaf(outer, dim, inner)
    out = x[:, start:start + ln, :]
    r, dx = grads(out, x)
    write(name, "slice", dict(outer=outer, dim=dim, inner=inner, start=start, len=ln),
          arrays=dict(inp=x, dout=r, out=out, dinp=dx))


def transpose(name, A, X, M, Y, Z):
    x = leaf(A, X, M, Y, Z)
    out = torch.transpose(x, 1, 3).contiguous()
    r, dx = grads(out, x)
    write(name, "transpose", dict(A=A, X=X, M=M, Y=Y, Z=Z), arrays=dict(inp=x, dout=r, out=out, dinp=dx))


def reduce_(name, op, outer, dim, inner):
    x = leaf(outer, dim, inner, scale=3.0)
    out = x.sum(1) if op == "sum" else x.mean(1)
    r, dx = grads(out, x)
    write(name, op, dict(outer=outer, dim=dim, inner=inner), arrays=dict(inp=x, dout=r, out=out, dinp=dx))


def sgd(name, n, steps, lr, momentum, wd, nesterov):
    p = torch.randn(n).requires_grad_()
    p0 = p.detach().clone()
    opt = torch.optim.SGD([p], lr=lr, momentum=momentum, weight_decay=wd, nesterov=bool(nesterov))
    gs, ps = [], []
    for _ in range(steps):
        g = torch.randn(n)
        p.grad = g.clone()
        opt.step()
        gs.append(g)
        ps.append(p.detach().clone())
    arrays = dict(p0=p0, grads=torch.stack(gs), params=torch.stack(ps))
    if momentum != 0:
        arrays["buf"] = opt.state[p]["momentum_buffer"]
    write(name, "sgd", dict(n=n, steps=steps, nesterov=nesterov), dict(lr=lr, momentum=momentum, wd=wd),
          arrays=arrays)


def adam(name, n, steps, lr, b1, b2, eps, wd, decoupled):
    p = torch.randn(n).requires_grad_()
    p0 = p.detach().clone()
    cls = torch.optim.AdamW if decoupled else torch.optim.Adam
    opt = cls([p], lr=lr, betas=(b1, b2), eps=eps, weight_decay=wd)
    gs, ps = [], []
    for _ in range(steps):
        g = torch.randn(n) * 0.1
        p.grad = g.clone()
        opt.step()
        gs.append(g)
        ps.append(p.detach().clone())
    st = opt.state[p]
    write(name, "adam", dict(n=n, steps=steps, decoupled=decoupled),
          dict(lr=lr, beta1=b1, beta2=b2, eps=eps, wd=wd),
          arrays=dict(p0=p0, grads=torch.stack(gs), params=torch.stack(ps), m=st["exp_avg"], v=st["exp_avg_sq"]))


def clip(name, sizes, max_norm):
    ps = [torch.zeros(s, requires_grad=True) for s in sizes]
    for q in ps:
        q.grad = torch.randn(q.shape)
    g0 = torch.cat([q.grad.clone() for q in ps])
    total = torch.nn.utils.clip_grad_norm_(ps, max_norm)
    write(name, "clip", dict(n=len(sizes), **{"size%d" % i: s for i, s in enumerate(sizes)}), dict(max_norm=max_norm),
          arrays=dict(grads=g0, total_norm=total.reshape(1), clipped=torch.cat([q.grad for q in ps])))


def main():
    torch.manual_seed(20240601)
    clear_cases(OUT)
    linear("linear_bias", 8, 33, 17, True)
    linear("linear_nobias", 5, 12, 7, False)
    linear("linear_mlp_out", 4, 256, 10, True)
    matmul("matmul", 3, 5, 7, 6, False)
    matmul("matmul_shared", 4, 3, 9, 5, True)
    binary("add_same", "add", (4, 6, 5), (4, 6, 5))
    binary("add_bcast", "add", (4, 6, 5), (6, 5))
    binary("add_row", "add", (8, 33), (33,))
    binary("add_scalar", "add", (7, 9), (1,))
    binary("mul_same", "mul", (4, 6, 5), (4, 6, 5))
    binary("mul_bcast", "mul", (4, 6, 5), (6, 5))
    binary("mul_scalar", "mul", (7, 9), (1,))
    unary("relu", "relu", torch.relu, 257, 1.0)
    unary("gelu", "gelu", F.gelu, 257, 3.0)
    unary("tanh", "tanh", torch.tanh, 257, 2.0)
    unary("sigmoid", "sigmoid", torch.sigmoid, 257, 5.0)
    softmax("softmax", "softmax", 6, 33, 3.0)
    softmax("log_softmax", "log_softmax", 6, 33, 3.0)
    xent("xent_mean", 8, 10, 1.0 / 8, 2.0)
    xent("xent_large", 5, 33, 1.0, 40.0)
    argmax("argmax", 64, 10)
    layernorm("layernorm", 6, 33, 1e-5)
    embedding("embedding", 16, 11, 7)
    concat("concat", 4, (2, 3, 1), 5)
    slice_("slice", 3, 7, 4, 2, 3)
    transpose("transpose", 2, 3, 4, 5, 2)
    transpose("transpose_2d", 1, 37, 1, 19, 1)
    reduce_("sum", "sum", 3, 6, 5)
    reduce_("sum_last", "sum", 4, 33, 1)
    reduce_("mean", "mean", 3, 6, 5)
    reduce_("mean_last", "mean", 4, 33, 1)
    sgd("sgd_plain", 50, 4, 0.1, 0.0, 0.0, 0)
    sgd("sgd_momentum_wd", 50, 5, 0.05, 0.9, 0.01, 0)
    sgd("sgd_nesterov", 50, 5, 0.05, 0.9, 0.001, 1)
    adam("adam", 50, 6, 1e-2, 0.9, 0.999, 1e-8, 0.0, 0)
    adam("adam_wd", 50, 6, 1e-2, 0.9, 0.99, 1e-6, 0.05, 0)
    adam("adamw", 50, 6, 1e-2, 0.9, 0.999, 1e-8, 0.1, 1)
    clip("clip_active", (10, 33, 7), 1.0)
    clip("clip_inactive", (10, 33, 7), 100.0)
    write_manifest(OUT, cases)


if __name__ == "__main__":
    main()
