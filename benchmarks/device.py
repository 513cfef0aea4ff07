"""Training on an inference runtime: the step graph against zotrain's own step.

    python benchmarks/device.py steps [--models tiny default] [--rounds 5]
    python benchmarks/device.py train --model tiny [--data DIR] [--seed 0]

``steps``: per model, the time of one training step of the activity recipe (batch 100)
in zotrain (Numba kernels) and as ``step.onnx`` in onnxruntime, alternated in one
process (median of ``--rounds`` rounds of 20 steps each); what the graph holds (file
size, nodes, multiply-adds of its products, its largest tensor); and the peak resident
memory of a process running one graph step against one running an inference forward
of the same batch (``model.onnx``), each in its own process, above the same process
after loading its session.

``train``: ``zotrain train mnist`` and the graph loop (``zotrain device`` +
``examples/on_device_training.py``) with the same model, seed and recipe, one after the
other: test accuracy, wall time, and how far apart the trained parameters end.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import zotrain  # noqa: F401  (first: OpenBLAS's thread timeout, see zotrain.kernels.config)

ROOT = Path(__file__).resolve().parents[1]
MODELS = {"tiny": dict(hidden=256, rank=10, preset="tiny"),
          "default": dict(hidden=1024, rank=16, preset=None)}


def _model(name):
    from zotrain.nn import architectures

    m = MODELS[name]
    return architectures.classifier(784, 10, rank=m["rank"], depth=1, hidden=m["hidden"])


def graph_stats(path, batch):
    """Nodes, multiply-adds of the MatMul and Einsum nodes, and the largest tensor (bytes)
    of the graph at ``path`` for a batch of ``batch``."""
    import onnx

    m = onnx.load(str(path))
    for i in m.graph.input:
        for d in i.type.tensor_type.shape.dim:
            if d.dim_param == "batch":
                d.dim_value = batch
    m = onnx.shape_inference.infer_shapes(m, data_prop=True)
    shapes = {}
    for v in list(m.graph.value_info) + list(m.graph.input) + list(m.graph.output):
        dims = [d.dim_value for d in v.type.tensor_type.shape.dim]
        if all(dims):
            shapes[v.name] = dims
    for t in m.graph.initializer:
        shapes[t.name] = list(t.dims)
    macs = 0
    for n in m.graph.node:
        if n.op_type == "MatMul" and n.input[0] in shapes and n.input[1] in shapes:
            a = shapes[n.input[0]]
            out = shapes.get(n.output[0])
            if out:
                macs += int(np.prod(out)) * a[-1]
        elif n.op_type == "Einsum" and n.output[0] in shapes:
            eq = next(a.s.decode() for a in n.attribute if a.name == "equation")
            sizes = {}
            for term, name in zip(eq.split("->")[0].split(","), n.input):
                for letter, size in zip(term, shapes.get(name, [])):
                    sizes[letter] = size
            macs += int(np.prod(list(sizes.values())))
    largest = max(4 * int(np.prod(s)) for s in shapes.values())
    return len(m.graph.node), macs, largest


def _peak_rss(kind, bundle, batch):
    """Peak resident bytes of one graph run in a fresh process, above the process after
    its session is loaded and its inputs made (Linux: VmHWM reset through clear_refs)."""
    code = f"""
import numpy as np, onnxruntime as ort, json, sys
from pathlib import Path
def status(key):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
rng = np.random.default_rng(0)
X = rng.random(({batch}, 784)).astype(np.float32)
y = rng.integers(0, 10, {batch})
b = Path({str(bundle)!r})
if {kind!r} == "step":
    s = ort.InferenceSession(str(b / "step.onnx"), providers=["CPUExecutionProvider"])
    p = np.load(b / "init.npy")
    feeds = {{"params": p, "m": np.zeros_like(p), "v": np.zeros_like(p), "X": X, "target": y,
             "step": np.array(0, np.int64)}}
else:
    s = ort.InferenceSession(str(b / "features.onnx"), providers=["CPUExecutionProvider"])
    feeds = {{"X": X}}
Path("/proc/self/clear_refs").write_text("5")
base = status("VmRSS")
s.run(None, feeds)
print(json.dumps(status("VmHWM") - base))
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                       env=dict(os.environ, MALLOC_MMAP_THRESHOLD_="16384"))
    return json.loads(r.stdout.strip().splitlines()[-1])


def cmd_steps(args):
    import onnxruntime as ort

    from zotrain.export.device import write_device_bundle
    from zotrain.recipes.classification import ClassifierConfig, build_optimizer, build_step

    print("| model | parameters | zotrain step ms | graph step ms (onnxruntime) | ratio "
          "| step.onnx KB | nodes | multiply-adds | largest tensor KB | step peak KB "
          "| inference peak KB |\n|---|---|---|---|---|---|---|---|---|---|---|")
    for name in args.models:
        model, c = _model(name), ClassifierConfig()
        with tempfile.TemporaryDirectory() as d:
            write_device_bundle(model, c, d, train_examples=60000, mean=0.1307, std=0.3081)
            plan = build_step(c, model)
            opt = build_optimizer(c, plan, 11000)
            p = plan.init(0)
            state = opt.init(p)
            rng = np.random.default_rng(0)
            X = rng.random((args.batch, 784)).astype(np.float32)
            y = rng.integers(0, 10, args.batch)
            Xn = ((X - 0.1307) / 0.3081).astype(np.float32)
            s = ort.InferenceSession(str(Path(d) / "step.onnx"),
                                     providers=["CPUExecutionProvider"])
            feeds = {"params": p, "m": np.zeros_like(p), "v": np.zeros_like(p), "X": X,
                     "target": y, "step": np.array(0, np.int64)}

            def ours():
                out = plan.rule(p, Xn, y, seed=0, step=0)
                opt.update(out.grad, state, p)

            def graph():
                s.run(None, feeds)

            times = {"ours": [], "graph": []}
            for f in (ours, graph):
                f()
            for _ in range(args.rounds):
                for key, f in (("ours", ours), ("graph", graph)):
                    t = time.perf_counter()
                    for _ in range(20):
                        f()
                    times[key].append((time.perf_counter() - t) / 20 * 1e3)
            a, b = np.median(times["ours"]), np.median(times["graph"])
            nodes, macs, largest = graph_stats(Path(d) / "step.onnx", args.batch)
            size = (Path(d) / "step.onnx").stat().st_size
            step_peak = _peak_rss("step", d, args.batch)
            inf_peak = _peak_rss("inference", d, args.batch)
            print(f"| {name} | {model.n_params:,} | {a:.1f} | {b:.1f} | {b / a:.2f} "
                  f"| {size / 1024:.0f} | {nodes} | {macs / 1e6:.1f} M | {largest / 1024:.0f} "
                  f"| {step_peak / 1024:,.0f} | {inf_peak / 1024:,.0f} |", flush=True)


def cmd_train(args):
    m = MODELS[args.model]
    size = ["--preset", m["preset"]] if m["preset"] else []
    common = size + ["--seed", str(args.seed)] + (["--epochs", str(args.epochs)]
                                                  if args.epochs else [])
    with tempfile.TemporaryDirectory() as d:
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "zotrain.cli", "train", "mnist", "--data",
                        args.data, "--out", f"{d}/run", "--quiet"] + common, check=True)
        ours_s = time.perf_counter() - t
        metrics = json.loads(Path(f"{d}/run/metrics.json").read_text())
        subprocess.run([sys.executable, "-m", "zotrain.cli", "device", f"{d}/b"] + common,
                       check=True, stdout=subprocess.DEVNULL)
        t = time.perf_counter()
        r = subprocess.run([sys.executable, str(ROOT / "examples" / "on_device_training.py"),
                            f"{d}/b", args.data, "--every", "60"], check=True,
                           capture_output=True, text=True)
        graph_s = time.perf_counter() - t
        acc = [line for line in r.stdout.splitlines() if "test accuracy" in line][-1]
        with np.load(f"{d}/run/model.npz") as z:
            ours = z["params"]
        trained = np.load(f"{d}/b/trained.npy")[:ours.size]
    print(f"| {args.model} | seed {args.seed} | zotrain train: {metrics['test_accuracy']:.4f} "
          f"in {ours_s:.0f} s | graph loop: {float(acc.split()[-1]):.4f} in {graph_s:.0f} s "
          f"| max parameter difference {np.abs(trained - ours).max():.2e} |")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("steps")
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--batch", type=int, default=100)
    p.set_defaults(func=cmd_steps)
    p = sub.add_parser("train")
    p.add_argument("--model", default="tiny", choices=list(MODELS))
    p.add_argument("--data", default=os.environ.get("ZOTRAIN_DATA",
                                                    str(ROOT.parent / "shared/data/mnist")))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int)
    p.set_defaults(func=cmd_train)
    args = ap.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
