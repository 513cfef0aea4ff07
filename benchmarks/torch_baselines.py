"""PyTorch references (CPU): a first-order (backpropagation) baseline of the same
architectures, and the ZO step time of a straightforward per-query loop.

zotrain itself never imports torch; this script does, when it is installed
(``pip install torch==2.13.0`` takes the CPU build on this machine).

Usage:
  python benchmarks/torch_baselines.py first-order [--model mnist|deep] [--epochs E]
  python benchmarks/torch_baselines.py step-time [--queries N] [--ranks R ...] [--batches B ...]
"""

import argparse
import os
import time

import numpy as np
import torch

import zotrain
from zotrain.data import load_mnist, normalize
from zotrain.estimators import rge
from zotrain.train import ZOStep

torch.set_num_threads(os.cpu_count())


def torch_model(model, params):
    """Torch tensors of a zotrain model's segments, and its forward (dense TT matrices)."""
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

    def forward(X, t=arrays):
        H = X
        for i, layer in enumerate(model.layers):
            if isinstance(layer, zotrain.ReLU):
                H = torch.relu(H)
            elif layer.in_features is not None:
                H = H @ dense(t, i, layer) + (t[f"{i}.bias"] if layer.bias else 0)
        return H

    return arrays, forward


def first_order(args):
    d = load_mnist(args.data)
    x, y = normalize(d.x_train), d.y_train.astype(np.int64)
    xtr, ytr = torch.tensor(x[:55000]), torch.tensor(y[:55000])
    xte, yte = torch.tensor(normalize(d.x_test)), torch.tensor(d.y_test.astype(np.int64))
    model = (zotrain.mnist_mlp if args.model == "mnist" else zotrain.mnist_deep)(rank=args.rank)
    arrays, forward = torch_model(model, model.init(0))
    opt = torch.optim.Adam(arrays.values(), lr=args.lr)
    gen = torch.Generator().manual_seed(0)
    t0 = time.perf_counter()
    print(f"# first-order (backprop) {args.model}, rank {args.rank}: {model.n_params} params, "
          f"Adam {args.lr} (constant), batch {args.batch}, trained on the first 55,000 images")
    for epoch in range(1, args.epochs + 1):
        perm = torch.randperm(len(ytr), generator=gen)
        for s in range(0, len(ytr) - args.batch + 1, args.batch):
            idx = perm[s:s + args.batch]
            loss = torch.nn.functional.cross_entropy(forward(xtr[idx]), ytr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            acc = (forward(xte).argmax(1) == yte).float().mean().item()
        print(f"epoch {epoch}: test accuracy {acc:.4f}, {time.perf_counter() - t0:.0f} s", flush=True)


def step_time(args):
    print(f"# ZO step of the MNIST model (784 -> 1024 TT, ReLU, Dense), RGE with N = "
          f"{args.queries} antithetic Gaussian queries (2N perturbed forwards)")
    print("| rank | batch | torch per-query loop ms | zotrain joint ms | speedup | zotrain per "
          "group ms | speedup |\n|---|---|---|---|---|---|---|")
    for rank in args.ranks:
        for batch in args.batches:
            rows = _step_times(rank, batch, args.queries, args.repeats)
            t0 = rows["torch"]
            print(f"| {rank} | {batch} | {1e3 * t0:.1f} | {1e3 * rows['joint']:.1f} "
                  f"| {t0 / rows['joint']:.1f}x | {1e3 * rows['group']:.1f} "
                  f"| {t0 / rows['group']:.1f}x |", flush=True)


def _step_times(rank, batch, N, repeats):
    model = zotrain.mnist_mlp(rank=rank)
    p = model.init(0)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((batch, 784)).astype(np.float32)
    y = rng.integers(0, 10, batch)
    mu = 1e-3
    arrays, forward = torch_model(model, p)
    names = list(arrays)
    Xt, yt = torch.tensor(X), torch.tensor(y)

    def torch_loop():
        """The straightforward ZO step: one perturbed forward per query, in Python."""
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
    out = {}
    for name, fn in (("torch", torch_loop), ("joint", lambda: joint(p, X, y, seed=0, step=0)),
                     ("group", lambda: group(p, X, y, seed=0, step=0))):
        fn()
        ts = []
        for _ in range(repeats):
            t = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t)
        out[name] = min(ts)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="what", required=True)
    a = sub.add_parser("first-order")
    a.add_argument("--data", default=os.environ.get("ZOTRAIN_DATA", "../shared/data/mnist"))
    a.add_argument("--model", default="mnist", choices=["mnist", "deep"])
    a.add_argument("--epochs", type=int, default=5)
    a.add_argument("--rank", type=int, default=16)
    a.add_argument("--batch", type=int, default=100)
    a.add_argument("--lr", type=float, default=1e-3)
    b = sub.add_parser("step-time")
    b.add_argument("--queries", type=int, default=20)
    b.add_argument("--ranks", type=int, nargs="+", default=[2, 8, 16])
    b.add_argument("--batches", type=int, nargs="+", default=[32, 100, 500])
    b.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    first_order(args) if args.what == "first-order" else step_time(args)


if __name__ == "__main__":
    main()
