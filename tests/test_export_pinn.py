"""The PINN smoothed predictor in ONNX, and PINN training on onnxruntime."""

import json

import numpy as np
import onnxruntime as ort
import pytest

from zotrain import cli
from zotrain.export.onnx import ExportError, to_onnx_outputs
from zotrain.export.pinn import to_onnx_pinn
from zotrain.export.runtime import OrtNetwork
from zotrain.pinn import problems
from zotrain.pinn.train import PinnConfig, build, init_params


@pytest.mark.parametrize("name,inputs", [(n, "coordinates") for n in sorted(problems.PROBLEMS)]
                         + [("hjb100d", "quadratic"), ("poisson2d", "quadratic"),
                            ("hjb100d", "radius"), ("poisson2d", "radius")])
def test_smoothed_predictor_matches_predict(name, inputs, tmp_path):
    problem = problems.get(name)
    model, loss = build(PinnConfig(width=32, samples=16, inputs=inputs), problem)
    params = init_params(model, problem, 1)
    session = ort.InferenceSession(str(to_onnx_pinn(loss, params, tmp_path / "u.onnx")),
                                   providers=["CPUExecutionProvider"])
    for batch in (1, 33):
        x = problem.sample(batch, batch)
        got = session.run(None, {"x": x.astype(np.float32)})[0]
        ref = loss.predict(params, x)
        assert got.shape == (batch,)
        np.testing.assert_allclose(got, ref, atol=1e-5 * max(1.0, np.abs(ref).max()), rtol=0)


def test_unknown_constraint_is_refused(tmp_path):
    import dataclasses

    problem = problems.get("poisson2d")
    model, loss = build(PinnConfig(width=8), problem)
    loss.problem = dataclasses.replace(problem, name="mine", transform_onnx=None)
    with pytest.raises(ExportError, match="problem 'mine' has a hard constraint .* no ONNX form"):
        to_onnx_pinn(loss, model.init(0), tmp_path / "u.onnx")


def test_batched_outputs_match_apply_many(tmp_path, rng):
    model, _ = build(PinnConfig(width=16), problems.get("hjb20d"))
    net = OrtNetwork(model)
    P = np.stack([model.init(s) for s in range(3)])
    X = rng.random((5, model.in_features)).astype(np.float32)
    np.testing.assert_allclose(net.apply_many(P, X), model.apply_many(P, X), atol=1e-5)
    np.testing.assert_allclose(net.features(P[1], X), model.features(P[1], X), atol=1e-5)
    assert to_onnx_outputs(model, tmp_path / "o.onnx").exists()


def test_pinn_training_on_onnxruntime_matches_numba(tmp_path):
    # the ridge keeps the head solves well conditioned: at the default 1e-6, 33 random
    # features on 128 points turn the backends' float32 rounding (1e-7) into errors 7%
    # apart (onnxruntime 1.32); at 1e-4 they agree to 0.04%
    kw = dict(problem="poisson2d", width=32, iters=4, points=8, head_points=128, head_every=2,
              eval_every=4, eval_points=100, test_points=200, ridge=1e-4)
    a = cli.main(["pinn", "poisson2d", "--out", str(tmp_path / "n"), "--quiet"] +
                 [f"--{k.replace('_', '-')}={v}" for k, v in kw.items() if k != "problem"])
    b = cli.main(["pinn", "poisson2d", "--out", str(tmp_path / "o"), "--quiet",
                  "--backend", "onnxruntime"] +
                 [f"--{k.replace('_', '-')}={v}" for k, v in kw.items() if k != "problem"])
    assert a == b == 0
    m = [json.loads((tmp_path / d / "metrics.json").read_text()) for d in ("n", "o")]
    assert m[0]["forward_passes"] == m[1]["forward_passes"]
    assert m[1]["rel_l2"] == pytest.approx(m[0]["rel_l2"], rel=0.01)
    assert m[1]["config"]["backend"] == "onnxruntime"


def test_a_zeroth_order_step_on_onnxruntime_is_the_numba_step():
    """The body's RGE estimate from onnxruntime's losses of the perturbed parameter sets is
    the one from the Numba forward (the end-to-end run above cannot tell: the head solve
    decides its error, so noise in place of onnxruntime's outputs would pass it)."""
    from zotrain.pinn.train import pinn_objective
    from zotrain.zo import estimators

    problem = problems.get("poisson2d")
    c = PinnConfig(width=32, points=8)
    grads = []
    for backend in ("numba", "onnxruntime"):
        c.backend = backend
        model, loss = build(c, problem)
        p0 = init_params(model, problem, 0)
        x, xb = problem.sample(8, [0, 1]), problem.sample_boundary(2, [0, 1])
        body = [s.name for s in model.layout if s.slice.stop <= loss.head_slice().start]
        est = estimators.rge(6, 1e-3, per_group=False).estimate(
            pinn_objective(loss, model.layout, x, xb), p0, body, seed=0, step=1)
        grads.append(est.grad)
        P = p0 + 1e-3 * np.random.default_rng(0).standard_normal((5, p0.size)).astype(np.float32)
        if backend == "numba":
            ref = loss(P, x, xb)
        else:
            np.testing.assert_allclose(loss(P, x, xb), ref, rtol=1e-4)  # Stein: 1.6e-5
    a, b = grads
    assert np.abs(a).max() > 0
    assert a @ b / np.linalg.norm(a) / np.linalg.norm(b) > 0.999


def test_cli_exports_a_pinn_run(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main(["pinn", "poisson2d", "--iters", "2", "--width", "16", "--head-points", "64",
                     "--out", str(out), "--quiet"]) == 0
    assert cli.main(["export", str(out)]) == 0
    assert "smoothed PINN predictor" in capsys.readouterr().out
    problem = problems.get("poisson2d")
    model, loss = build(PinnConfig(width=16), problem)
    with np.load(out / "model.npz") as z:
        params = z["params"]
    x = problem.sample(9, 0)
    s = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(s.run(None, {"x": x.astype(np.float32)})[0],
                               loss.predict(params, x), atol=1e-5)
