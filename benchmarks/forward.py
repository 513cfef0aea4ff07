"""Batched forward benchmark: ``apply_many`` against dense GEMM and a NumPy loop.

For each model (MNIST: 784->1024 TT rank 8, ReLU, Dense 1024->10; PINN:
21->512->512->1, TT rank 2, Sin; PINN100: 202->512->1, TT rank 2, Sin, the body of the
100-D PINN recipes on their quadratic inputs) at batch 500 and Q in {1, 21, 41} it
prints:

* time per ``apply_many`` call and per fused ``loss_many`` call (best of
  ``--repeats``);
* GFLOP/s achieved, counting the FLOPs of the algorithm the cost model chose;
* the roofline: a dense float32 matrix product of each linear layer's shapes
  (``X @ W``, BLAS), measured right after each row's ``apply_many``, and the
  ratio to it;
* the dense-equivalent rate (FLOPs of dense layers of the same shapes / time),
  which exceeds the roofline when the TT contraction skips work;
* the speedup over a NumPy loop over Q that builds each dense matrix with one
  ``np.einsum`` call over all cores (NumPy's defaults, the straightforward
  code) and multiplies; and over the same loop with the dense matrix built by
  pairwise contractions (``zotrain.nn.tt.tt_matrix_to_dense``, the best NumPy
  does), whose matrix products already run at the BLAS roofline.

Usage: python benchmarks/forward.py [--repeats N] [--batch B] [--models mnist,pinn,pinn100]
    [--method auto|dense|contract|halves]  (every TT layer's algorithm; default: the cost model's)
"""

import argparse
import os
import platform

import zotrain  # before numpy, as the zotrain command does: OpenBLAS's thread timeout

import numpy as np  # noqa: E402
from _runner import best_time  # noqa: E402
from zotrain.nn.activations import Activation
from zotrain.nn.layers import TTLinear
from zotrain.nn.tt import tt_matrix_to_dense

ACT = {"ReLU": lambda x: np.maximum(x, 0), "Sin": np.sin, "Tanh": np.tanh}


def einsum_dense(cores):
    """One ``np.einsum`` call over all cores, with NumPy's default options."""
    d = len(cores)
    letters = iter("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
    r = [next(letters) for _ in range(d + 1)]
    i = [next(letters) for _ in range(d)]
    o = [next(letters) for _ in range(d)]
    spec = ",".join(r[k] + i[k] + o[k] + r[k + 1] for k in range(d))
    spec += "->" + r[0] + "".join(i) + "".join(o) + r[d]
    n_in = int(np.prod([c.shape[1] for c in cores]))
    return np.einsum(spec, *cores).reshape(n_in, -1)


def numpy_loop(model, P, X, build=einsum_dense):
    """The straightforward baseline: one parameter set at a time, dense matrices by ``build``."""
    outs = []
    for p in P:
        arrays = model.unflatten(p)
        H = X
        for i, layer in enumerate(model.layers):
            if isinstance(layer, Activation):
                H = ACT[type(layer).__name__](H)
                continue
            if isinstance(layer, TTLinear):
                W = build([arrays[f"{i}.core{k}"] for k in range(layer.shape.n_modes)])
            else:
                W = arrays[f"{i}.weight"]
            H = H @ W + (arrays[f"{i}.bias"] if layer.bias else 0)
        outs.append(H)
    return np.stack(outs)


def gemm_seconds(model, batch, repeats, rng):
    """Per linear layer: time of one dense float32 ``X @ W`` of its shapes."""
    out = []
    for layer in model.layers:
        if layer.in_features is None:
            continue
        X = rng.standard_normal((batch, layer.in_features)).astype(np.float32)
        W = rng.standard_normal((layer.in_features, layer.out_features)).astype(np.float32)
        Y = np.empty((batch, layer.out_features), np.float32)
        out.append((2 * batch * layer.in_features * layer.out_features,
                    best_time(lambda: np.matmul(X, W, out=Y), 5 * repeats)))
    return out


def bench_model(name, model, batch, qs, repeats, rng):
    p = model.init(0)
    X = rng.standard_normal((batch, model.in_features)).astype(np.float32)
    target = (rng.integers(0, model.out_features, batch) if model.out_features > 1
              else rng.standard_normal((batch, 1)))
    loss = "xent" if model.out_features > 1 else "mse"
    algo_flops = sum(l.flops(batch) for l in model.layers)
    rows = []
    for Q in qs:
        P = p + 0.01 * rng.standard_normal((Q, p.size)).astype(np.float32)
        t = best_time(lambda: model.apply_many(P, X), repeats)
        gemms = gemm_seconds(model, batch, repeats, rng)  # the roofline, measured beside it
        roof_flops = sum(f for f, _ in gemms)
        roof_rate = roof_flops / sum(t for _, t in gemms)
        t_loss = best_time(lambda: model.loss_many(P, X, target, loss), repeats)
        t_np = best_time(lambda: numpy_loop(model, P, X), 1)
        t_pair = best_time(lambda: numpy_loop(model, P, X, tt_matrix_to_dense), repeats)
        ref = numpy_loop(model, P[:2], X, tt_matrix_to_dense)
        err = np.abs(model.apply_many(P[:2], X) - ref).max() / np.abs(ref).max()
        assert err < 1e-4, f"apply_many disagrees with the NumPy loop: {err}"
        rate = Q * algo_flops / t
        rows.append(dict(model=name, Q=Q, ms=1e3 * t, loss_ms=1e3 * t_loss, gflops=rate / 1e9,
                         roof=roof_rate / 1e9, ratio=rate / roof_rate,
                         dense_equiv=Q * roof_flops / t / 1e9, numpy_ms=1e3 * t_np,
                         speedup=t_np / t, pair_ms=1e3 * t_pair, pair_speedup=t_pair / t))
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--models", default="mnist,pinn,pinn100",
                    help="comma-separated subset of mnist,pinn,pinn100")
    ap.add_argument("--method", default="auto", choices=TTLinear.METHODS,
                    help="the algorithm of every TT layer (default: the cost model's choice)")
    args = ap.parse_args()
    models = {"mnist": zotrain.mnist_mlp, "pinn": zotrain.pinn_mlp,
              "pinn100": lambda: zotrain.pinn_mlp(in_features=202, depth=1)}
    chosen = args.models.split(",")
    if not chosen or set(chosen) - set(models):
        ap.error(f"--models must name some of {sorted(models)}, got {args.models!r}")
    rng = np.random.default_rng(0)
    print(f"# machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"numpy {np.__version__}, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}, "
          f"OPENBLAS_THREAD_TIMEOUT={os.environ.get('OPENBLAS_THREAD_TIMEOUT')}")
    rows = []
    for name in chosen:
        model = models[name]()
        tt = [l for l in model.layers if isinstance(l, TTLinear)]
        for layer in tt:
            layer.method = args.method
        print(f"# {name}: {model.n_params} params; TT layers use "
              + ", ".join(l.algorithm(args.batch) for l in tt))
        rows += bench_model(name, model, args.batch, (1, 21, 41), args.repeats, rng)
    head = ("| model | Q | apply_many ms | loss_many ms | GFLOP/s | GEMM roofline GFLOP/s "
            "| ratio | dense-equiv GFLOP/s | einsum loop ms | speedup | pairwise loop ms "
            "| speedup |")
    print(head)
    print("|---" * (head.count("|") - 1) + "|")
    for r in rows:
        print(f"| {r['model']} | {r['Q']} | {r['ms']:.1f} | {r['loss_ms']:.1f} | {r['gflops']:.0f} "
              f"| {r['roof']:.0f} | {r['ratio']:.0%} | {r['dense_equiv']:.0f} | {r['numpy_ms']:.0f} "
              f"| {r['speedup']:.0f}x | {r['pair_ms']:.0f} | {r['pair_speedup']:.1f}x |")


if __name__ == "__main__":
    main()
