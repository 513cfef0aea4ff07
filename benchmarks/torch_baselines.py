"""PyTorch references (CPU): a first-order (backpropagation) baseline of the same
architectures, and the ZO step time of a straightforward per-query loop.

zotrain itself never imports torch; this script does, when it is installed
(``pip install torch==2.13.0`` takes the CPU build on this machine).

Usage:
  python benchmarks/torch_baselines.py first-order [--dataset mnist|fashion-mnist]
      [--model mnist|deep] [--hidden H --rank R] [--epochs E] [--schedule cosine]
  python benchmarks/torch_baselines.py step-time [--queries N] [--ranks R ...] [--batches B ...]
  python benchmarks/torch_baselines.py activity-step-time [--batches B ...]
"""

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np
from _runner import best_time

import zotrain
from zotrain.data import load_dataset
from zotrain.zo.estimators import rge
from zotrain.zo.steps import ZOStep

def torch_model(model, params):
    """Torch tensors of a zotrain model's segments, and its forward (dense TT matrices)."""
    import torch

    torch.set_num_threads(os.cpu_count())
    arrays = {k: torch.tensor(v.copy(), requires_grad=True)
              for k, v in model.unflatten(params).items()}

    def dense(t, i, layer):
        if isinstance(layer, zotrain.TTLinear):
            W = torch.ones(1, 1, 1)
            for k in range(layer.shape.n_modes):
                W = torch.einsum("aer,rios->aieos", W, t[f"{i}.core{k}"])
                a, i_, e, o, s = W.shape
                W = W.reshape(a * i_, e * o, s)
            return W[..., 0]
        return t[f"{i}.weight"]

    acts = {zotrain.ReLU: torch.relu, zotrain.Tanh: torch.tanh, zotrain.Sin: torch.sin}

    def forward(X, t=arrays):
        H = X
        for i, layer in enumerate(model.layers):
            if type(layer) in acts:
                H = acts[type(layer)](H)
            elif layer.in_features is not None:
                H = H @ dense(t, i, layer) + (t[f"{i}.bias"] if layer.bias else 0)
        return H

    return arrays, forward


def first_order(args):
    import torch

    d = load_dataset(args.dataset, args.data)
    xtr, ytr = torch.tensor(d.x_train[:55000]), torch.tensor(d.y_train[:55000])
    xte, yte = torch.tensor(d.x_test), torch.tensor(d.y_test)
    if args.hidden is not None:  # the one-hidden-layer model at another width (--preset tiny)
        from zotrain.nn.architectures import classifier

        model = classifier(784, 10, rank=args.rank, depth=1, hidden=args.hidden)
    else:
        model = (zotrain.mnist_mlp if args.model == "mnist" else zotrain.mnist_deep)(
            rank=args.rank)
    arrays, forward = torch_model(model, model.init(0))
    opt = torch.optim.Adam(arrays.values(), lr=args.lr)
    steps = args.epochs * (len(ytr) // args.batch)
    sched = torch.optim.lr_scheduler.LambdaLR(  # zotrain's default: cosine to 0 over the run
        opt, lambda k: 0.5 * (1 + np.cos(np.pi * min(k, steps) / steps))
        if args.schedule == "cosine" else 1.0)
    gen = torch.Generator().manual_seed(0)
    t0 = time.perf_counter()
    print(f"# first-order (backprop) {args.model} on {args.dataset}, rank {args.rank}: "
          f"{model.n_params} params, "
          f"Adam {args.lr} ({args.schedule}), batch {args.batch}, trained on the first 55,000 images")
    for epoch in range(1, args.epochs + 1):
        perm = torch.randperm(len(ytr), generator=gen)
        for s in range(0, len(ytr) - args.batch + 1, args.batch):
            idx = perm[s:s + args.batch]
            loss = torch.nn.functional.cross_entropy(forward(xtr[idx]), ytr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        with torch.no_grad():
            acc = (forward(xte).argmax(1) == yte).float().mean().item()
        print(f"epoch {epoch}: test accuracy {acc:.4f}, {time.perf_counter() - t0:.0f} s", flush=True)


def step_time(args):
    """Each implementation is timed in a process of its own: PyTorch's OpenMP workers
    spin after every op and would otherwise slow Numba's and BLAS's threads."""
    print(f"# ZO step of the MNIST model (784 -> 1024 TT, ReLU, Dense), RGE with N = "
          f"{args.queries} antithetic Gaussian queries (2N perturbed forwards)")
    print("| rank | batch | torch per-query loop ms | zotrain joint ms | speedup | zotrain per "
          "group ms | speedup |\n|---|---|---|---|---|---|---|")
    for rank in args.ranks:
        for batch in args.batches:
            rows = {}
            for which in ("torch", "zotrain"):
                env = dict(os.environ)
                if which == "torch":  # PyTorch with its own defaults, not zotrain's setting
                    env["OMP_WAIT_POLICY"] = env.get("OMP_WAIT_POLICY_TORCH", "")
                out = subprocess.run([sys.executable, __file__, "step-part", which, str(rank),
                                      str(batch), str(args.queries), str(args.repeats)],
                                     check=True, capture_output=True, text=True,
                                     env=env).stdout
                rows.update(json.loads(out.strip().splitlines()[-1]))
            t0 = rows["torch"]
            print(f"| {rank} | {batch} | {1e3 * t0:.1f} | {1e3 * rows['joint']:.1f} "
                  f"| {t0 / rows['joint']:.1f}x | {1e3 * rows['group']:.1f} "
                  f"| {t0 / rows['group']:.1f}x |", flush=True)


def activity_step_time(args):
    """The default step (coordinate-wise activity perturbation of all 1024 hidden units,
    2 x 1024 queries, each a forward of the head on the whole batch) against a
    PyTorch loop over the same queries; each timed in its own process."""
    print("# default ZO step (activity perturbation, 2 x 1024 queries per step), MNIST model "
          f"rank {args.ranks[0]}")
    print("| batch | torch per-query loop ms | zotrain ms | speedup |\n|---|---|---|---|")
    for batch in args.batches:
        rows = {}
        for which in ("torch-activity", "zotrain-activity"):
            env = dict(os.environ)
            if which.startswith("torch"):
                env["OMP_WAIT_POLICY"] = env.get("OMP_WAIT_POLICY_TORCH", "")
            out = subprocess.run([sys.executable, __file__, "step-part", which,
                                  str(args.ranks[0]), str(batch), "0", str(args.repeats)],
                                 check=True, capture_output=True, text=True, env=env).stdout
            rows.update(json.loads(out.strip().splitlines()[-1]))
        t0 = rows["torch-activity"]
        print(f"| {batch} | {1e3 * t0:.1f} | {1e3 * rows['zotrain-activity']:.1f} "
              f"| {t0 / rows['zotrain-activity']:.1f}x |", flush=True)


def _activity_times(rank, batch, repeats, which):
    from zotrain.zo.evaluator import Evaluator, Plan, blocks_of

    model = zotrain.mnist_mlp(rank=rank)
    ev = Evaluator(model, Plan(blocks_of(model)), 10)
    p = ev.init(0)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((batch, 784)).astype(np.float32)
    y = rng.integers(0, 10, batch)
    if which == "zotrain-activity":
        return {which: best_time(lambda: ev.evaluate(p, X, y, seed=0, step=0), repeats)}
    import torch

    W, _ = torch_model(model, p)
    Xt, yt = torch.tensor(X), torch.tensor(y)
    mu = 1e-3

    def torch_loop():
        with torch.no_grad():
            from_layer0 = Xt @ _torch_dense(W, model) + W["0.bias"]
            D = torch.zeros_like(from_layer0)
            for j in range(from_layer0.shape[1]):
                losses = []
                for s in (mu, -mu):
                    Z = from_layer0.clone()
                    Z[:, j] += s
                    logits = torch.relu(Z) @ W["2.weight"] + W["2.bias"]
                    losses.append(torch.nn.functional.cross_entropy(logits, yt, reduction="none"))
                D[:, j] = (losses[0] - losses[1]) / (2 * mu * batch)
            return D

    return {which: best_time(torch_loop, repeats)}


def _torch_dense(t, model):
    import torch

    W = torch.ones(1, 1, 1)
    for k in range(model.layers[0].shape.n_modes):
        W = torch.einsum("aer,rios->aieos", W, t[f"0.core{k}"])
        a, i_, e, o, s = W.shape
        W = W.reshape(a * i_, e * o, s)
    return W[..., 0]


def step_part(which, rank, batch, N, repeats):
    if which.endswith("activity"):
        print(json.dumps(_activity_times(rank, batch, repeats, which)))
        return
    print(json.dumps(_step_times(rank, batch, N, repeats, which)))


def _step_times(rank, batch, N, repeats, which):
    model = zotrain.mnist_mlp(rank=rank)
    p = model.init(0)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((batch, 784)).astype(np.float32)
    y = rng.integers(0, 10, batch)
    mu = 1e-3

    def torch_loop():
        """The straightforward ZO step: one perturbed forward per query, in Python."""
        import torch

        with torch.no_grad():
            grads = {k: torch.zeros_like(v) for k, v in arrays.items()}
            for q in range(N):
                u = {k: torch.randn_like(v) for k, v in arrays.items()}
                lp = torch.nn.functional.cross_entropy(
                    forward(Xt, {k: arrays[k] + mu * u[k] for k in names}), yt)
                lm = torch.nn.functional.cross_entropy(
                    forward(Xt, {k: arrays[k] - mu * u[k] for k in names}), yt)
                for k in names:
                    grads[k] += (lp - lm) / (2 * mu * N) * u[k]
        return grads

    body = [n for n in model.layout.names if not n.startswith("2.")]
    joint = ZOStep(model, rge(N, mu, per_group=False), body)
    group = ZOStep(model, rge(N, mu), body)
    if which == "torch":  # zotrain's process never imports torch (its OpenMP would spin)
        arrays, forward = torch_model(model, p)
        names = list(arrays)
        import torch
        Xt, yt = torch.tensor(X), torch.tensor(y)
    fns = {"torch": {"torch": torch_loop},
           "zotrain": {"joint": lambda: joint(p, X, y, seed=0, step=0),
                       "group": lambda: group(p, X, y, seed=0, step=0)}}[which]
    return {name: best_time(fn, repeats) for name, fn in fns.items()}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="what", required=True)
    a = sub.add_parser("first-order")
    a.add_argument("--dataset", default="mnist", choices=["mnist", "fashion-mnist"])
    a.add_argument("--data", default=None, help="data directory (default: $ZOTRAIN_DATA for "
                   "MNIST, Debian's package for Fashion-MNIST)")
    a.add_argument("--model", default="mnist", choices=["mnist", "deep"])
    a.add_argument("--epochs", type=int, default=5)
    a.add_argument("--rank", type=int, default=16)
    a.add_argument("--hidden", type=int, default=None, help="hidden width of a one-layer model "
                   "(e.g. 256 with --rank 10: the tiny preset)")
    a.add_argument("--batch", type=int, default=100)
    a.add_argument("--lr", type=float, default=1e-3)
    a.add_argument("--schedule", default="constant", choices=["constant", "cosine"])
    b = sub.add_parser("step-time")
    b.add_argument("--queries", type=int, default=20)
    b.add_argument("--ranks", type=int, nargs="+", default=[2, 8, 16])
    b.add_argument("--batches", type=int, nargs="+", default=[32, 100, 500])
    b.add_argument("--repeats", type=int, default=5)
    c = sub.add_parser("activity-step-time")
    c.add_argument("--ranks", type=int, nargs=1, default=[16])
    c.add_argument("--batches", type=int, nargs="+", default=[100, 500])
    c.add_argument("--repeats", type=int, default=3)
    if len(sys.argv) > 1 and sys.argv[1] == "step-part":  # internal: one timing process
        which, rank, batch, n, repeats = sys.argv[2], *map(int, sys.argv[3:7])
        return step_part(which, rank, batch, n, repeats)
    args = ap.parse_args()
    {"first-order": first_order, "step-time": step_time,
     "activity-step-time": activity_step_time}[args.what](args)


if __name__ == "__main__":
    main()
