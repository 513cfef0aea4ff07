"""float32 against int8 deployment of trained MNIST runs, in onnxruntime.

Usage: python benchmarks/int8.py RUN_DIR [RUN_DIR ...] [--data DIR] [--calibration N]

For each run (a ``zotrain train`` directory): the float32 export
(``zotrain.export.to_onnx``: TT cores as Einsums) and the int8 export
(``zotrain.export.int8.to_onnx_int8``), each file's size, its MNIST test
accuracy in onnxruntime, and its time per batch of 100 (best of 5 passes
over the test set, 2 threads).
"""

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np


def evaluate(path, x, y, batch=100):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    s = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    best, hits = float("inf"), 0
    for _ in range(5):
        t, hits = time.perf_counter(), 0
        for i in range(0, len(y), batch):
            hits += int(np.sum(s.run(None, {"X": x[i:i + batch]})[0].argmax(1) == y[i:i + batch]))
        best = min(best, time.perf_counter() - t)
    return hits / len(y), best / (len(y) / batch) * 1e3


def main():
    from zotrain.data import load_dataset
    from zotrain.export.int8 import to_onnx_int8
    from zotrain.export.onnx import load_run_model, to_onnx

    ap = argparse.ArgumentParser()
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--data", default=None)
    ap.add_argument("--calibration", type=int, default=500)
    a = ap.parse_args()
    data = load_dataset("mnist", a.data)
    print("| run | parameters | format | file bytes | test accuracy | ms per batch of 100 |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as d:
        for run in a.runs:
            model, params = load_run_model(Path(run) / "model.npz")
            f32 = to_onnx(model, params, Path(d) / "f32.onnx")
            i8 = to_onnx_int8(model, params, Path(d) / "i8.onnx", data.x_train[:a.calibration])
            for name, path in (("float32", f32), ("int8", i8)):
                acc, ms = evaluate(path, data.x_test, data.y_test)
                print(f"| {run} | {model.n_params:,} | {name} | {path.stat().st_size:,} | "
                      f"{acc:.4f} | {ms:.2f} |")


if __name__ == "__main__":
    main()
