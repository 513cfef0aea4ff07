"""Edge deployment: the tiny preset's budget, int8 export from the CLI, the device bundle
and the on-device training example (NumPy + onnxruntime only)."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from zotrain import cli
from zotrain.nn import architectures
from zotrain.recipes.presets import PRESETS

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "on_device_training.py"


def _example():
    spec = importlib.util.spec_from_file_location("on_device_training", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tiny_preset_is_within_its_budget():
    p = PRESETS["tiny"]
    model = architectures.classifier(784, 10, rank=p["rank"], depth=1, hidden=p["hidden"])
    assert model.n_params <= p["max_params"] == 8192


def test_preset_over_budget_and_unknown_preset_are_refused(mnist_dir, tmp_path, capsys):
    assert cli.main(["train", "mnist", "--data", str(mnist_dir), "--preset", "tiny", "--rank",
                     "16", "--out", str(tmp_path / "r"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "preset 'tiny' allows at most 8,192 parameters" in err and "--rank 16" in err
    assert cli.main(["train", "mnist", "--data", str(mnist_dir), "--preset", "huge", "--out",
                     str(tmp_path / "r"), "--quiet"]) == 2
    assert "unknown preset 'huge'; known: tiny" in capsys.readouterr().err
    assert cli.main(["train", "mnist", "--data", str(mnist_dir), "--max-params", "500",
                     "--rank", "2", "--hidden", "64", "--out", str(tmp_path / "r"),
                     "--quiet"]) == 2
    assert "--max-params allows at most 500 parameters" in capsys.readouterr().err


def test_int8_export_from_a_run_and_its_bad_inputs(mnist_dir, tmp_path, capsys):
    import onnxruntime as ort

    from zotrain.data import load_dataset

    out = tmp_path / "run"
    assert cli.main(["train", "mnist", "--data", str(mnist_dir), "--preset", "tiny",
                     "--epochs", "1", "--train-limit", "1000", "--out", str(out),
                     "--quiet"]) == 0
    assert json.loads((out / "config.json").read_text())["hidden"] == PRESETS["tiny"]["hidden"]
    assert cli.main(["export", str(out), "--int8", "--calibration", "200"]) == 0
    assert cli.main(["export", str(out)]) == 0
    data = load_dataset("mnist", mnist_dir)
    preds = {}
    for name in ("model.onnx", "model.int8.onnx"):
        s = ort.InferenceSession(str(out / name), providers=["CPUExecutionProvider"])
        preds[name] = s.run(None, {"X": data.x_test})[0].argmax(1)
    acc = {k: np.mean(v == data.y_test) for k, v in preds.items()}
    # a model trained one epoch on 1,000 images has near ties that int8 may flip; the
    # accuracies of the two must still agree (0.5 points is the benchmark's goal on
    # fully trained models: docs/benchmarks.md)
    assert abs(acc["model.onnx"] - acc["model.int8.onnx"]) <= 0.02, acc
    assert np.mean(preds["model.onnx"] == preds["model.int8.onnx"]) >= 0.9
    assert (out / "model.int8.onnx").stat().st_size < 0.6 * (out / "model.onnx").stat().st_size
    capsys.readouterr()
    assert cli.main(["export", str(out), "--int8", "--calibration", "0"]) == 2
    assert "--calibration must be >= 1" in capsys.readouterr().err
    assert cli.main(["export", str(out), "--int8", "--data", str(tmp_path / "none")]) == 2
    assert "needs calibration inputs" in capsys.readouterr().err
    assert cli.main(["export", str(out), "--int8", "--trainable"]) == 2
    assert "--int8 exports a classifier's inference graph" in capsys.readouterr().err


def test_device_bundle_and_the_example_train_without_zotrain(mnist_dir, tmp_path):
    bundle = tmp_path / "b"
    assert cli.main(["device", str(bundle), "--preset", "tiny", "--queries", "4"]) == 0
    recipe = json.loads((bundle / "recipe.json").read_text())
    assert recipe["n_params"] <= 8192 and recipe["queries"] == 4
    code = ("import runpy, sys; sys.argv = sys.argv[1:]; "
            "runpy.run_path(sys.argv[0], run_name='__main__')")
    check = ("; import sys; assert not [m for m in sys.modules if m.startswith('zotrain')]")
    r = subprocess.run([sys.executable, "-c", code + check, str(EXAMPLE), str(bundle),
                        str(mnist_dir), "--steps", "8", "--train-limit", "400", "--out",
                        str(tmp_path / "p.npy")], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "epoch 2: step 8," in r.stdout  # 400 images: 4 steps an epoch
    trained, start = np.load(tmp_path / "p.npy"), np.load(bundle / "init.npy")
    assert trained.shape == start.shape and np.all(np.isfinite(trained))
    moved = [np.abs(trained[s["offset"]:s["offset"] + s["size"]]
                    - start[s["offset"]:s["offset"] + s["size"]]).max() for s in recipe["segments"]]
    assert min(moved) > 0  # every segment, body (RGE) and head (exact), was updated


def test_example_gradient_is_the_loss_gradient(tmp_path):
    """The example's head gradient is exact and its RGE body gradient points along the
    true gradient (finite differences in float64 of the same model)."""
    from zotrain.export.device import write_device_bundle
    from zotrain.nn import losses
    from zotrain.recipes.classification import ClassifierConfig

    model = architectures.classifier(784, 10, rank=2, depth=1, hidden=8)
    params = model.init(3)
    write_device_bundle(model, params, ClassifierConfig(queries=3000, mu=1e-3), tmp_path)
    ex = _example()
    bundle = ex.Bundle(tmp_path)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((32, 784)).astype(np.float32)
    y = rng.integers(0, 10, 32)
    grad, loss = ex.gradient(bundle, params, X, y, step=0)

    def f(p):
        return float(np.mean(losses.xent(model.apply(p.astype(np.float32), X), y)))

    assert loss == pytest.approx(f(params), rel=1e-5)
    exact = np.zeros(model.n_params)
    for j in range(model.n_params):
        e = np.zeros(model.n_params)
        e[j] = 1e-2
        exact[j] = (f(params + e) - f(params - e)) / 2e-2
    head = np.zeros(model.n_params, bool)
    for s in bundle.segments:
        head[s["offset"]:s["offset"] + s["size"]] = s["head"]
    np.testing.assert_allclose(grad[head], exact[head], atol=2e-3 * np.abs(exact[head]).max())
    body_cos = grad[~head] @ exact[~head] / np.linalg.norm(grad[~head]) / np.linalg.norm(exact[~head])
    assert body_cos > 0.8, body_cos


def test_example_refuses_a_features_graph_without_features(tmp_path):
    from zotrain.export.device import write_device_bundle
    from zotrain.export.onnx import to_onnx
    from zotrain.recipes.classification import ClassifierConfig

    model = architectures.classifier(784, 10, rank=2, depth=1, hidden=8)
    params = model.init(0)
    write_device_bundle(model, params, ClassifierConfig(), tmp_path)
    to_onnx(model, params, tmp_path / "features.onnx")  # inference graph: no 'features'
    with pytest.raises(SystemExit, match="no 'features'"):
        _example().Bundle(tmp_path)
    (tmp_path / "recipe.json").unlink()
    with pytest.raises(SystemExit, match="has no recipe.json"):
        _example().Bundle(tmp_path)
