#!/usr/bin/python3
"""Writes the PyTorch references of two whole weft training runs whose losses
are built in the model file: an MLP with an L2 penalty (examples/l2mlp.wf)
and an autoencoder (examples/autoenc.wf).

Run with Debian's PyTorch (python3-torch, 1.13) and NumPy from anywhere:

    /usr/bin/python3 tools/ref/gen_loss_runs.py [refdir]   # default tests/ref

It needs Debian's Fashion-MNIST (package dataset-fashion-mnist) in
/usr/share/datasets/fashion-mnist, and reuses gen_mlp_run.py's exact
re-implementation of weft's epoch order and its safetensors writer. For each
run it writes into refdir/<run>/ (l2mlp_run, autoenc_run):

    init.safetensors   the layers' .weight/.bias: torch.nn.Linear's default
                       init after torch.manual_seed(0), float32
    losses.txt         "STEP LOSS" per line, STEP 1..100 as weft's metrics.jsonl
                       counts steps, LOSS the step's loss (the model's first
                       scalar output) before the update, 9 significant digits
    acc.txt            l2mlp only: "STEP ACC", the fraction of the step's batch
                       whose argmax is the label (the model's `acc` output)
    <run>.job          the weft job that repeats the run (tests/cli/torch_losses.sh
                       rewrites it with absolute paths and its own `out`)

Both runs: batch 64 taken in order from weft's epoch-0 order for seed 1,
x = float32(pixel) / 255, float32, one thread, 100 steps, micro_batches 1.

  l2mlp_run    784-128-10 ReLU MLP; loss = cross_entropy (mean) + REG *
               sum(fc2.weight^2), the penalty built in the model, not the
               optimizer's weight_decay; SGD(lr=0.05, momentum=0.9).
  autoenc_run  784-64-784 autoencoder, tanh code, sigmoid output; loss =
               mse(out, x) (mean over all B*784 elements); labels unused;
               Adam(lr=1e-3, betas=(0.9, 0.999), eps=1e-8), as weft's adam.
"""
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, HERE)
import gen_mlp_run as mlprun  # noqa: E402  (weft's epoch order, IDX reader, safetensors writer)

REFDIR = sys.argv[1] if len(sys.argv) > 1 else os.path.normpath(os.path.join(HERE, "..", "..", "tests", "ref"))
DATA = mlprun.DATA
SEED = 1
BATCH = 64
STEPS = 100
REG = 1e-4  # the literal in examples/l2mlp.wf: reg = mul(pen, 0.0001)


class L2MLP(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = torch.nn.Linear(784, 128)
        self.fc2 = torch.nn.Linear(128, 10)

    def forward(self, x, y):
        """(loss, acc) as examples/l2mlp.wf's outputs."""
        fc2 = self.fc2(torch.relu(self.fc1(x)))
        ce = F.cross_entropy(fc2, y)
        pen = (self.fc2.weight * self.fc2.weight).sum()
        loss = ce + pen * REG
        acc = (torch.argmax(fc2, -1) == y).float().mean()
        return loss, acc


class AutoEnc(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.enc = torch.nn.Linear(784, 64)
        self.dec = torch.nn.Linear(64, 784)

    def forward(self, x, y):
        out = torch.sigmoid(self.dec(torch.tanh(self.enc(x))))
        return F.mse_loss(out, x), None


JOB_HEAD = """\
# A {steps}-step run of examples/{model}.wf that tools/ref/gen_loss_runs.py
# repeats in PyTorch; its per-step losses are losses.txt.
# tests/cli/torch_losses.sh runs this job with absolute paths and its own `out`.
model = ../../../examples/{model}.wf
data = /usr/share/datasets/fashion-mnist
init = init.safetensors
epochs = 1
batch = {batch}
micro_batches = 1
seed = {seed}
"""

RUNS = {
    "l2mlp_run": dict(model="l2mlp", cls=L2MLP,
                      opt=lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.9),
                      job="optimizer = sgd\nlr = 0.05\nmomentum = 0.9\n"),
    "autoenc_run": dict(model="autoenc", cls=AutoEnc,
                        opt=lambda ps: torch.optim.Adam(ps, lr=1e-3, betas=(0.9, 0.999), eps=1e-8),
                        job="optimizer = adam\nlr = 0.001\nbeta1 = 0.9\nbeta2 = 0.999\neps = 1e-8\n"),
}


def load_data():
    images = mlprun.read_idx(os.path.join(DATA, "train-images-idx3-ubyte.gz"), 0x803)
    labels = mlprun.read_idx(os.path.join(DATA, "train-labels-idx1-ubyte.gz"), 0x801)
    assert images.shape[0] == labels.shape[0] == 60000, images.shape
    return images.astype(np.float32) / np.float32(255.0), labels.astype(np.int64)


def train(spec, x_all, y_all, order, dtype=torch.float32):
    """The run; returns (init state_dict as float32 numpy, [loss], [acc or None])."""
    torch.manual_seed(0)
    model = spec["cls"]()
    init = {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}
    model.to(dtype)
    opt = spec["opt"](model.parameters())
    losses, accs = [], []
    for s in range(STEPS):
        ids = order[BATCH * s:BATCH * s + BATCH]
        x = torch.from_numpy(x_all[ids]).to(dtype)
        y = torch.from_numpy(y_all[ids])
        opt.zero_grad()
        loss, acc = model(x, y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        accs.append(None if acc is None else acc.item())
    return init, losses, accs


def main():
    torch.set_num_threads(1)
    x_all, y_all = load_data()
    order = mlprun.epoch_order(x_all.shape[0], SEED, 0)
    for name, spec in RUNS.items():
        out = os.path.join(REFDIR, name)
        os.makedirs(out, exist_ok=True)
        init, losses, accs = train(spec, x_all, y_all, order)
        mlprun.write_safetensors(os.path.join(out, "init.safetensors"), init)
        with open(os.path.join(out, "losses.txt"), "w") as f:
            f.writelines("%d %.9g\n" % (s + 1, v) for s, v in enumerate(losses))
        if accs[0] is not None:
            with open(os.path.join(out, "acc.txt"), "w") as f:
                f.writelines("%d %.9g\n" % (s + 1, v) for s, v in enumerate(accs))
        with open(os.path.join(out, name + ".job"), "w") as f:
            f.write(JOB_HEAD.format(steps=STEPS, model=spec["model"], batch=BATCH, seed=SEED))
            f.write(spec["job"])
            f.write("max_steps = %d\nthreads = 1\n" % STEPS)
        print("wrote %s: %d steps, loss %.9g -> %.9g" % (out, STEPS, losses[0], losses[-1]))


if __name__ == "__main__":
    main()
