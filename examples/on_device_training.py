"""Train a classifier where only an inference runtime runs: NumPy and onnxruntime, no zotrain.

    zotrain device BUNDLE --preset tiny          # on the host: graphs, start values, recipe
    python examples/on_device_training.py BUNDLE MNIST_DIR [--steps N] [--out FILE]

Each step: one run of ``losses.onnx`` on 2 x queries perturbed parameter sets
(antithetic Gaussian directions, one parameter segment per query, regenerated
from (seed, step, query) so nothing but the seed is stored), one run of
``features.onnx`` for the exact gradient of the linear head, and Adam with a
cosine learning rate.  The trained parameters are saved as a .npy vector in
the bundle's layout.  See README "Training on the device".
"""

import argparse
import gzip
import json
import math
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort


def read_idx(path):
    """An IDX file (raw or .gz) as a uint8 array."""
    raw = gzip.open(path).read() if str(path).endswith(".gz") else Path(path).read_bytes()
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * k:8 + 4 * k], "big") for k in range(ndim)]
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(dims)


def find(directory, stem):
    for name in (stem, stem + ".gz"):
        if (Path(directory) / name).is_file():
            return Path(directory) / name
    sys.exit(f"on_device_training: no {stem}[.gz] in {directory}")


def load(directory, split, recipe):
    images = read_idx(find(directory, f"{split}-images-idx3-ubyte"))
    labels = read_idx(find(directory, f"{split}-labels-idx1-ubyte")).astype(np.int64)
    x = images.reshape(len(images), -1).astype(np.float32) / 255.0
    return (x - recipe["mean"]) / recipe["std"], labels


class Bundle:
    """The two graphs, the start values and the recipe written by ``zotrain device``."""

    def __init__(self, directory):
        d = Path(directory)
        for name in ("features.onnx", "losses.onnx", "init.npy", "recipe.json"):
            if not (d / name).is_file():
                sys.exit(f"on_device_training: {d} has no {name}; write the bundle with "
                         "`zotrain device DIR`")
        self.recipe = json.loads((d / "recipe.json").read_text())
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        self.features = ort.InferenceSession(str(d / "features.onnx"), opts,
                                             providers=["CPUExecutionProvider"])
        self.losses = ort.InferenceSession(str(d / "losses.onnx"), opts,
                                           providers=["CPUExecutionProvider"])
        outputs = [o.name for o in self.features.get_outputs()]
        if "features" not in outputs:
            sys.exit(f"on_device_training: {d / 'features.onnx'} has outputs {outputs} but no "
                     "'features' (the head's input): export it trainable (`zotrain device`)")
        self.params = np.load(d / "init.npy").astype(np.float32)
        if self.params.shape != (self.recipe["n_params"],):
            sys.exit(f"on_device_training: init.npy holds {self.params.shape} values, the "
                     f"recipe says {self.recipe['n_params']}")
        self.segments = self.recipe["segments"]

    def feed(self, params, X):
        feed = {"X": X}
        for s in self.segments:
            feed[s["name"]] = params[s["offset"]:s["offset"] + s["size"]].reshape(s["shape"])
        return feed

    def logits_and_features(self, params, X):
        return self.features.run(["Y", "features"], self.feed(params, X))


def direction(seed, step, query, n):
    return np.random.default_rng([seed, step, query]).standard_normal(n).astype(np.float32)


def split_queries(total, sizes):
    """``total`` queries over the segments in proportion to their sizes, at least one each."""
    raw = np.asarray(sizes, np.float64) / np.sum(sizes) * total
    n = np.maximum(1, np.floor(raw).astype(np.int64))
    for g in np.argsort(-(raw - np.floor(raw)), kind="stable"):
        if n.sum() >= total:
            break
        n[g] += 1
    return n


def gradient(bundle, params, X, y, step):
    """RGE on the body segments and the exact head gradient; returns (grad, loss)."""
    r = bundle.recipe
    body = [s for s in bundle.segments if not s["head"]]
    counts = split_queries(r["queries"], [s["size"] for s in body])
    P, dirs, query = [], [], 0
    for s, n in zip(body, counts):
        for _ in range(n):
            u = direction(r["seed"], step, query, s["size"])
            for sign in (1.0, -1.0):
                p = params.copy()
                p[s["offset"]:s["offset"] + s["size"]] += sign * r["mu"] * u
                P.append(p)
            dirs.append((s, u, n))
            query += 1
    losses = bundle.losses.run(["losses"], {"P": np.stack(P), "X": X, "target": y})[0]
    grad = np.zeros_like(params)
    for q, (s, u, n) in enumerate(dirs):
        c = (losses[2 * q] - losses[2 * q + 1]) / (2.0 * r["mu"] * n)
        grad[s["offset"]:s["offset"] + s["size"]] += c * u
    logits, feats = bundle.logits_and_features(params, X)
    z = logits - logits.max(1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(1, keepdims=True)
    loss = float(-np.mean(np.log(p[np.arange(len(y)), y] + 1e-30)))
    p[np.arange(len(y)), y] -= 1.0
    p /= len(y)
    for s in bundle.segments:
        if s["head"]:
            g = feats.T @ p if len(s["shape"]) == 2 else p.sum(0)
            grad[s["offset"]:s["offset"] + s["size"]] = g.ravel()
    return grad, loss


def accuracy(bundle, params, X, y, chunk=2000):
    hits = sum(int(np.sum(bundle.logits_and_features(params, X[i:i + chunk])[0].argmax(1)
                          == y[i:i + chunk])) for i in range(0, len(y), chunk))
    return hits / len(y)


def train(bundle, x, y, x_test, y_test, steps=None, log=print):
    r = bundle.recipe
    params = bundle.params.copy()
    head = np.zeros(len(params), bool)
    for s in bundle.segments:
        head[s["offset"]:s["offset"] + s["size"]] = s["head"]
    per_epoch = len(y) // r["batch_size"]
    total = steps or r["epochs"] * per_epoch
    m, v = np.zeros_like(params), np.zeros_like(params)
    step = 0
    for epoch in range(math.ceil(total / per_epoch)):
        order = np.random.default_rng([r["seed"], epoch]).permutation(len(y))
        for b in range(per_epoch):
            if step == total:
                break
            idx = order[b * r["batch_size"]:(b + 1) * r["batch_size"]]
            grad, loss = gradient(bundle, params, x[idx], y[idx], step)
            step += 1
            scale = 0.5 * (1 + math.cos(math.pi * (step - 1) / total)) \
                if r["schedule"] == "cosine" else 1.0
            lr = np.where(head, r["head_lr"], r["lr"]) * scale
            m = 0.9 * m + 0.1 * grad
            v = 0.999 * v + 0.001 * grad * grad
            params -= (lr * (m / (1 - 0.9 ** step)) /
                       (np.sqrt(v / (1 - 0.999 ** step)) + 1e-8)).astype(np.float32)
            if not np.isfinite(loss):
                sys.exit(f"on_device_training: the loss diverged at step {step}")
        log(f"epoch {epoch + 1}: step {step}, loss {loss:.4f}, test accuracy "
            f"{accuracy(bundle, params, x_test, y_test):.4f}")
    return params


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundle")
    ap.add_argument("data", help="directory with the MNIST IDX files")
    ap.add_argument("--steps", type=int, help="stop after N steps (default: the recipe's epochs)")
    ap.add_argument("--train-limit", type=int, help="use the first N training images")
    ap.add_argument("--out", help="where to save the trained parameters (.npy)")
    a = ap.parse_args(argv)
    bundle = Bundle(a.bundle)
    x, y = load(a.data, "train", bundle.recipe)
    if a.train_limit:
        x, y = x[:a.train_limit], y[:a.train_limit]
    x_test, y_test = load(a.data, "t10k", bundle.recipe)
    params = train(bundle, x, y, x_test, y_test, a.steps)
    if a.out:
        np.save(a.out, params)
    return 0


if __name__ == "__main__":
    sys.exit(main())
