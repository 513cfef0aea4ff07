"""Train a classifier where only an inference runtime runs: NumPy and onnxruntime, no zotrain.

    zotrain device BUNDLE --preset tiny          # on the host: graphs, start values, recipe
    python examples/on_device_training.py BUNDLE MNIST_DIR [--mode step|rge] [--steps N]

--mode step (default): one run of ``step.onnx`` per minibatch is one training step of
the recipe ``zotrain train`` runs (activity perturbation, exact heads, Adam with the
cosine rate); the loop only feeds it the minibatch and carries its state (parameters,
Adam's moments, the step counter).

--mode rge: the black-box setting of photonic or analog hardware, where only whole-model
forwards are observable: ``losses.onnx`` on 2 x queries perturbed parameter sets
(antithetic Gaussian directions, one segment per query, regenerated from (seed, step,
query)), ``features.onnx`` for the head's exact gradient, Adam here in NumPy.

Progress every few seconds; a checkpoint (BUNDLE/checkpoint.npz) after every epoch and
on Ctrl-C, from which the next run resumes (--restart starts over); the trained vector
in BUNDLE/trained.npy (the bundle's layout; --out FILE to change).  Minibatches, the
validation split and the schedule are zotrain's, so the same seed trains the same model.
"""

import argparse
import gzip
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort


def fail(message):
    sys.exit(f"on_device_training: {message}")


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
    fail(f"no {stem}[.gz] in {directory}")


def load(directory, split, recipe):
    """Pixels in [0, 1] ``(n, features)`` (the graphs normalise them) and int64 labels,
    checked against the bundle's input width and classes."""
    images = read_idx(find(directory, f"{split}-images-idx3-ubyte"))
    labels = read_idx(find(directory, f"{split}-labels-idx1-ubyte")).astype(np.int64)
    x = images.reshape(len(images), -1).astype(np.float32) / 255.0
    if x.shape[1] != recipe["in_features"]:
        fail(f"{split} images have {x.shape[1]} pixels; the bundle's model takes "
             f"{recipe['in_features']}")
    if len(labels) != len(x) or labels.min() < 0 or labels.max() >= recipe["classes"]:
        fail(f"{split} labels must be {len(x)} classes in [0, {recipe['classes']}), got "
             f"{len(labels)} in [{labels.min()}, {labels.max()}]")
    return x, labels


class Bundle:
    """The graphs, the start values and the recipe written by ``zotrain device``, checked
    against each other."""

    def __init__(self, directory, mode):
        d = self.dir = Path(directory)
        need = ["features.onnx", "init.npy", "recipe.json"] + (
            ["step.onnx"] if mode == "step" else ["losses.onnx"])
        for name in need:
            if not (d / name).is_file():
                fail(f"{d} has no {name}; write the bundle with `zotrain device DIR`")
        self.recipe = r = json.loads((d / "recipe.json").read_text())
        opts = ort.SessionOptions()
        opts.log_severity_level = 3

        def session(name):
            return ort.InferenceSession(str(d / name), opts, providers=["CPUExecutionProvider"])

        self.features = session("features.onnx")
        self.segments = r["segments"]
        self.model = [s for s in self.segments if s["model"]]
        if "features" not in [o.name for o in self.features.get_outputs()]:
            fail(f"{d / 'features.onnx'} has no output 'features' (the head's input): write "
                 "the bundle with `zotrain device`")
        inputs = {i.name: i.shape for i in self.features.get_inputs() +
                  self.features.get_overridable_initializers()}
        for s in self.model:
            if inputs.get(s["name"]) != s["shape"]:
                fail(f"features.onnx takes {s['name']} of shape {inputs.get(s['name'])}, "
                     f"recipe.json says {s['shape']}: the bundle's files disagree")
        self.params = np.load(d / "init.npy").astype(np.float32)
        if self.params.shape != (r["n_params"],):
            fail(f"init.npy holds {self.params.shape[0]} values, recipe.json says "
                 f"{r['n_params']}: the bundle's files disagree")
        if mode == "step":
            self.step = session("step.onnx")
            shapes = {i.name: i.shape for i in self.step.get_inputs()}
            if shapes.get("params") != [r["n_params"]] or \
                    shapes.get("X") != ["batch", r["in_features"]]:
                fail(f"step.onnx takes params {shapes.get('params')} and X {shapes.get('X')}; "
                     f"recipe.json says {r['n_params']} parameters and {r['in_features']} "
                     "inputs: the bundle's files disagree")
        else:
            self.losses = session("losses.onnx")
            self.heads = np.zeros(r["n_model"], bool)  # which of the model's parameters
            for s in self.model:  # the head's exact gradient updates
                self.heads[s["offset"]:s["offset"] + s["size"]] = s["head"]
            if self.losses.get_inputs()[0].shape[1] != r["n_model"]:
                fail("losses.onnx and recipe.json disagree on the model's parameter count")

    def feed(self, params, X):
        feed = {"X": X}
        for s in self.model:
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
    """The black-box mode: RGE on the model's body segments (whole-model forwards) and the
    exact head gradient; returns (grad, loss) over the model's parameters."""
    r = bundle.recipe
    body = [s for s in bundle.model if not s["head"]]
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
    for s in bundle.model:
        if s["head"]:
            g = feats.T @ p if len(s["shape"]) == 2 else p.sum(0)
            grad[s["offset"]:s["offset"] + s["size"]] = g.ravel()
    return grad, loss


class State:
    """What the loop carries between steps: parameters, Adam's moments, steps done."""

    def __init__(self, params):
        self.params, self.step = params.copy(), 0
        self.m, self.v = np.zeros_like(params), np.zeros_like(params)

    def save(self, path, mode):
        tmp = path.with_name(f".{path.name}.tmp")
        with open(tmp, "wb") as f:
            np.savez(f, params=self.params, m=self.m, v=self.v, step=self.step, mode=mode)
        os.replace(tmp, path)

    def load(self, path, mode):
        with np.load(path) as z:
            if str(z["mode"]) != mode or z["params"].shape != self.params.shape:
                fail(f"{path} is a checkpoint of --mode {z['mode']} with "
                     f"{z['params'].shape[0]} parameters; use --restart to start over")
            self.params, self.m, self.v = z["params"], z["m"], z["v"]
            self.step = int(z["step"])


def train_step(bundle, state, X, y, mode, total):
    """One step; the state changes in one assignment (an interrupt never sees half a
    step).  Returns the minibatch loss."""
    if mode == "step":
        params, m, v, loss = bundle.step.run(None, {
            "params": state.params, "m": state.m, "v": state.v,
            "step": np.array(state.step, np.int64), "X": X, "target": y})
        state.params, state.m, state.v, state.step = params, m, v, state.step + 1
        return float(loss)
    r, n = bundle.recipe, bundle.recipe["n_model"]
    grad, loss = gradient(bundle, state.params[:n], X, y, state.step)
    scale = 0.5 * (1 + math.cos(math.pi * min(state.step, total) / total)) \
        if r["schedule"] == "cosine" else 1.0
    lr = np.where(bundle.heads, r["head_lr"], r["lr"]).astype(np.float32) * np.float32(scale)
    t = state.step + 1
    m, v, params = state.m.copy(), state.v.copy(), state.params.copy()
    m[:n] = 0.9 * m[:n] + 0.1 * grad
    v[:n] = 0.999 * v[:n] + 0.001 * grad * grad
    params[:n] -= (lr * (m[:n] / (1 - 0.9 ** t)) /
                   (np.sqrt(v[:n] / (1 - 0.999 ** t)) + 1e-8)).astype(np.float32)
    state.params, state.m, state.v, state.step = params, m, v, t
    return loss


def accuracy(bundle, params, X, y, chunk=2000):
    hits = sum(int(np.sum(bundle.logits_and_features(params, X[i:i + chunk])[0].argmax(1)
                          == y[i:i + chunk])) for i in range(0, len(y), chunk))
    return hits / len(y)


def batches(n, batch_size, seed, epoch):
    """zotrain's minibatches: an order fixed by (seed, epoch), each batch's rows sorted."""
    order = np.random.default_rng([seed, epoch]).permutation(n)
    for start in range(0, n - n % batch_size, batch_size):
        yield np.sort(order[start:start + batch_size])


def train(bundle, state, data, mode, steps=None, every=10.0, checkpoint=None, log=print):
    """Train from ``state`` until ``steps`` (default: the recipe's) steps are done."""
    r = bundle.recipe
    (x, y), (x_test, y_test) = data
    per_epoch = len(y) // r["batch_size"]
    total = r["total_steps"]
    stop = min(steps or total, total)
    t0, last, done0, losses = time.perf_counter(), time.perf_counter(), state.step, []
    while state.step < stop:
        epoch = state.step // per_epoch
        for b, idx in enumerate(batches(len(y), r["batch_size"], r["seed"], epoch)):
            if b < state.step - epoch * per_epoch:
                continue  # resumed inside this epoch
            loss = train_step(bundle, state, x[idx], y[idx], mode, total)
            if not math.isfinite(loss):
                fail(f"the loss diverged at step {state.step}; the last checkpoint is kept")
            losses.append(loss)
            now = time.perf_counter()
            if now - last >= every or state.step == stop:
                rate = (state.step - done0) / (now - t0)
                log(f"epoch {epoch + 1}/{math.ceil(total / per_epoch)} step {state.step}/{stop}"
                    f" loss {np.mean(losses):.4f}, {rate:.1f} steps/s, "
                    f"{(stop - state.step) / max(rate, 1e-9):.0f} s left", flush=True)
                last, losses = now, []
            if state.step >= stop:
                break
        if state.step % per_epoch == 0 or state.step >= stop:
            acc = accuracy(bundle, state.params, x_test, y_test)
            log(f"epoch {math.ceil(state.step / per_epoch)}: step {state.step}, test accuracy "
                f"{acc:.4f}", flush=True)
            if checkpoint is not None:
                state.save(checkpoint, mode)
    return state


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundle")
    ap.add_argument("data", help="directory with the MNIST IDX files")
    ap.add_argument("--mode", choices=("step", "rge"), default="step",
                    help="step: the step graph (default); rge: whole-model forwards only")
    ap.add_argument("--steps", type=int, help="stop after N steps (default: the recipe's)")
    ap.add_argument("--out", help="where to save the trained vector (default BUNDLE/trained.npy)")
    ap.add_argument("--restart", action="store_true", help="ignore BUNDLE/checkpoint.npz")
    ap.add_argument("--every", type=float, default=10.0, metavar="SECONDS",
                    help="seconds between progress lines (default 10)")
    a = ap.parse_args(argv)
    if a.steps is not None and a.steps < 1:
        fail(f"--steps must be >= 1, got {a.steps}")
    bundle = Bundle(a.bundle, a.mode)
    r = bundle.recipe
    x, y = load(a.data, "train", r)
    if len(y) != r["train_examples"]:
        fail(f"the bundle schedules {r['total_steps']} steps for {r['train_examples']} "
             f"training examples; {a.data} has {len(y)}: write the bundle with `zotrain device "
             f"DIR --train-examples {len(y)}`")
    n_val = min(r["val_size"], len(y) // 5)  # held out as zotrain train holds it
    data = ((x[:len(y) - n_val], y[:len(y) - n_val]), load(a.data, "t10k", r))
    state = State(bundle.params)
    checkpoint = bundle.dir / "checkpoint.npz"
    if checkpoint.is_file() and not a.restart:
        state.load(checkpoint, a.mode)
        print(f"resuming from step {state.step} ({checkpoint}; --restart starts over)")
    try:
        train(bundle, state, data, a.mode, a.steps, a.every, checkpoint)
    except KeyboardInterrupt:
        state.save(checkpoint, a.mode)
        print(f"\ninterrupted at step {state.step}: saved {checkpoint}; run the same command "
              "to resume")
        return 130
    out = Path(a.out) if a.out else bundle.dir / "trained.npy"
    np.save(out, state.params)
    print(f"saved the trained parameters to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
