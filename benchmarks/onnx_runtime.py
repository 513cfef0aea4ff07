"""ONNX export and the onnxruntime training backend against zotrain's Numba path.

Prints: the exported file size against the dense model; inference latency in
onnxruntime against ``Sequential.apply``; the time of one ZO training step
(RGE, N = 20 antithetic, per group, exact head) on each backend.

Usage: python benchmarks/onnx_runtime.py [--rank R] [--repeats N]
"""

import argparse
import tempfile
from pathlib import Path

import numpy as np
from _runner import best_time

import zotrain
from zotrain.zo.estimators import rge
from zotrain.export.onnx import to_onnx
from zotrain.export.runtime import OrtBackend
from zotrain.zo.steps import ZOStep


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    import onnxruntime as ort

    model = zotrain.mnist_mlp(rank=args.rank)
    p = model.init(0)
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as d:
        path = to_onnx(model, p, Path(d) / "m.onnx")
        size = path.stat().st_size
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        print(f"# MNIST model, rank {args.rank}: {model.n_params:,} parameters "
              f"({4 * model.n_params:,} bytes), dense {model.dense_params:,} "
              f"({4 * model.dense_params:,} bytes)")
        print(f"ONNX file: {size:,} bytes = {size / (4 * model.n_params):.2f}x the factorised "
              f"parameter bytes, {4 * model.dense_params / size:.1f}x smaller than dense float32\n")
        print("| batch | onnxruntime ms | zotrain apply ms | ratio |\n|---|---|---|---|")
        for batch in (1, 100, 10000):
            X = rng.standard_normal((batch, 784)).astype(np.float32)
            t_ort = best_time(lambda: sess.run(None, {"X": X}), args.repeats)
            t_zo = best_time(lambda: model.apply(p, X), args.repeats)
            print(f"| {batch} | {1e3 * t_ort:.2f} | {1e3 * t_zo:.2f} | {t_ort / t_zo:.2f} |")
    body = [n for n in model.layout.names if not n.startswith("2.")]
    backend = OrtBackend(model)
    print("\n| ZO step (RGE N=20, per group) | batch | ms per step |\n|---|---|---|")
    for batch in (100, 500):
        X = rng.standard_normal((batch, 784)).astype(np.float32)
        y = rng.integers(0, 10, batch)
        rows = {}
        for name, make in (("numba", None), ("onnxruntime", backend.objective)):
            step = ZOStep(model, rge(20, 1e-3), body, make_objective=make)
            rows[name] = best_time(lambda: step(p, X, y, seed=0, step=0), args.repeats)
            print(f"| {name} | {batch} | {1e3 * rows[name]:.1f} |")
        print(f"| onnxruntime / numba | {batch} | {rows['onnxruntime'] / rows['numba']:.2f}x |")


if __name__ == "__main__":
    main()
