"""Training working set against inference working set, same model and batch.

Usage: python benchmarks/memory.py [--data DIR] [--models tiny default] [--batch 100]
       [--steps 5] [--perturb activity weight] [--stream 4]

For each model: the bytes a training step allocates beyond its inputs (the
minibatch, the parameter vector, the optimizer state and the compiled kernels
are all in place before measuring; the largest of ``--steps`` steps, each
measured from its own start), against the bytes one inference forward of the
same batch allocates, both with the model's reusable scratch buffers (the
hidden layer's output, ...) counted: they are freed before each measured
call.  The optimizer state, which training keeps between
steps and inference does not have, is reported beside it.  Two counts, each
after a warm-up that compiles every kernel:

* ``tracemalloc`` peak: what NumPy allocates (arrays made inside Numba kernels
  are not seen by it);
* resident-set high-water mark above the starting resident set (Linux:
  ``/proc/self/clear_refs`` resets ``VmHWM``), which sees every allocation
  that touches memory: NumPy, Numba, BLAS buffers.  The measured process runs
  with ``MALLOC_MMAP_THRESHOLD_=16384`` so that glibc maps every block over
  16 KB afresh and unmaps it when freed: a pooled free block would otherwise
  hide a peak.

Each model is measured in its own process.
"""

import argparse
import json
import os
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

MODELS = {"tiny": dict(hidden=256, rank=10),  # as --preset tiny
          "default": dict(hidden=1024, rank=16)}  # as zotrain train mnist


def _status(key):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {key} in /proc/self/status")


def _measure(fn, repeats, release):
    """(tracemalloc peak, RSS high-water mark) of one call of ``fn`` above what was
    allocated when it started, the largest of ``repeats`` calls.  Per call: what a
    step leaves behind for the next (the new parameters and optimizer state replace
    the old) is the next call's starting point, not its working set.  ``release()``
    runs before each call: the model's reusable scratch buffers are part of a
    call's working set, made afresh inside it."""
    traced = rss = 0
    tracemalloc.start()
    for _ in range(repeats):
        release()
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
        start = _status("VmRSS")
        tracemalloc.reset_peak()
        before, _ = tracemalloc.get_traced_memory()
        fn()
        _, peak = tracemalloc.get_traced_memory()
        traced, rss = max(traced, peak - before), max(rss, _status("VmHWM") - start)
    tracemalloc.stop()
    return traced, rss


def one(name, data_dir, batch, steps, perturb, stream):
    from zotrain.zo import objective
    from zotrain.data import load_dataset
    from zotrain.nn import architectures
    from zotrain.recipes.classification import ClassifierConfig, build_optimizer, build_step

    spec = MODELS[name]
    objective.STREAM = stream
    model = architectures.classifier(784, 10, rank=spec["rank"], depth=1, hidden=spec["hidden"])
    data = load_dataset("mnist", data_dir)
    X, y = data.x_train[:batch].copy(), data.y_train[:batch].copy()
    c = ClassifierConfig(perturb=perturb, batch_size=batch)
    plan = build_step(c, model)
    opt = build_optimizer(c, plan, 1000)
    params = plan.init(0)
    state = opt.init(params)
    current = {"params": params, "state": state, "step": 0}

    def train_step():
        r = plan.rule(current["params"], X, y, seed=0, step=current["step"])
        current["params"], current["state"] = opt.update(r.grad, current["state"],
                                                         current["params"])
        current["step"] += 1

    def infer():
        model.apply(current["params"][:model.n_params], X)

    for _ in range(3):
        train_step()
        infer()
    train = _measure(train_step, steps, model.release_buffers)
    inference = _measure(infer, steps, model.release_buffers)
    state_bytes = sum(a.nbytes for a in _arrays(current["state"]))
    return {"model": name, "perturb": perturb, "params": model.n_params, "state": state_bytes,
            "model_bytes": 4 * model.n_params, "dense_bytes": 4 * model.dense_params,
            "batch": batch, "train_traced": train[0], "train_rss": train[1],
            "infer_traced": inference[0], "infer_rss": inference[1]}


def _arrays(state):
    if isinstance(state, np.ndarray):
        yield state
    elif isinstance(state, tuple):
        for x in state:
            yield from _arrays(x)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=None)
    ap.add_argument("--models", nargs="+", default=list(MODELS))
    ap.add_argument("--perturb", nargs="+", default=["activity", "weight"])
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--stream", type=int, default=4, help="parameter sets evaluated together "
                    "(zotrain.zo.objective.STREAM)")
    ap.add_argument("--one", nargs=2, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one:
        print(json.dumps(one(a.one[0], a.data, a.batch, a.steps, a.one[1], a.stream)))
        return
    print("| model | perturbation | parameters (bytes) | training: traced / RSS high-water | "
          "inference: traced / RSS high-water | ratio (traced, RSS) | optimizer state | "
          "ratio with it (traced) |")
    print("|---|---|---|---|---|---|---|---|")
    for name in a.models:
        for perturb in a.perturb:
            cmd = [sys.executable, __file__, "--one", name, perturb, "--batch", str(a.batch),
                   "--steps", str(a.steps), "--stream", str(a.stream)] + \
                (["--data", a.data] if a.data else [])
            env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="16384", MALLOC_TRIM_THRESHOLD_="0")
            r = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True,
                                          env=env).stdout.strip().splitlines()[-1])
            kb = lambda b: f"{b / 1024:,.0f} KB"  # noqa: E731
            print(f"| {name} | {perturb} | {r['params']:,} ({kb(r['model_bytes'])}) | "
                  f"{kb(r['train_traced'])} / {kb(r['train_rss'])} | {kb(r['infer_traced'])} / "
                  f"{kb(r['infer_rss'])} | {r['train_traced'] / max(r['infer_traced'], 1):.1f}x, "
                  f"{_ratio(r['train_rss'], r['infer_rss'])} | {kb(r['state'])} | "
                  f"{(r['train_traced'] + r['state']) / max(r['infer_traced'], 1):.1f}x |")


def _ratio(train, infer):
    """``train / infer``; '-' where the inference high-water mark is below 256 KB (pages
    already resident hide it: noise, not a working set)."""
    return f"{train / infer:.1f}x" if infer >= 256 * 1024 else "-"


if __name__ == "__main__":
    main()
