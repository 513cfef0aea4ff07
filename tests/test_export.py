"""ONNX export: onnxruntime against zotrain's own forward and losses."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import zotrain
from zotrain import Dense, ReLU, Sequential, Sin, Tanh, TTLinear, cli
from zotrain.export.onnx import ExportError, load_run_model, to_onnx, to_onnx_losses
from tests.test_tt import random_shape

ACTS = [ReLU, Tanh, Sin]


def session(path):
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def random_model(rng, case=0):
    in_modes, out_modes, ranks = random_shape(rng)
    n_in, n_out = int(np.prod(in_modes)), int(np.prod(out_modes))
    return Sequential([
        TTLinear(n_in, n_out, rank=ranks, in_modes=in_modes, out_modes=out_modes,
                 bias=case % 2 == 0),
        ACTS[case % 3](),  # every activation, with and without bias, across the cases
        TTLinear(n_out, 6, rank=int(rng.integers(1, 9)), bias=bool(rng.integers(2))),
        ACTS[int(rng.integers(3))](),
        Dense(6, int(rng.integers(1, 5)), bias=bool(rng.integers(2))),
    ])


@pytest.mark.parametrize("case", range(10))
def test_onnxruntime_matches_forward(case, tmp_path):
    rng = np.random.default_rng(case)
    model = random_model(rng, case)
    p = model.init(case) + 0.05 * rng.standard_normal(model.n_params).astype(np.float32)
    path = to_onnx(model, p, tmp_path / "m.onnx")
    m = onnx.load(path)
    onnx.checker.check_model(m)
    assert m.ir_version == 10 and m.opset_import[0].version == 17
    assert not any(n.op_type == "Gemm" for n in m.graph.node)
    s = session(path)
    for batch in (1, 257):
        X = rng.standard_normal((batch, model.in_features)).astype(np.float32)
        Y = s.run(None, {"X": X})[0]
        assert np.abs(Y - model.apply(p, X)).max() <= 1e-5


def test_tt_layers_stay_factorised(tmp_path):
    model = zotrain.mnist_mlp()
    path = to_onnx(model, model.init(0), tmp_path / "m.onnx")
    m = onnx.load(path)
    sizes = [int(np.prod(t.dims)) for t in m.graph.initializer]
    assert max(sizes) < 784 * 1024  # no dense matrix of the TT layer anywhere
    assert sum(n.op_type == "Einsum" for n in m.graph.node) == 4
    assert path.stat().st_size < 2 * model.n_params * 4


@pytest.mark.parametrize("case", range(4))
@pytest.mark.parametrize("loss", ["xent", "mse"])
def test_batched_losses_match_fused_losses(case, loss, tmp_path):
    rng = np.random.default_rng(100 + case)
    model = random_model(rng)
    P = np.stack([model.init(s) for s in range(3)])
    X = rng.standard_normal((19, model.in_features)).astype(np.float32)
    target = (rng.integers(0, model.out_features, 19) if loss == "xent"
              else rng.standard_normal((19, model.out_features)).astype(np.float32))
    s = session(to_onnx_losses(model, tmp_path / "l.onnx", loss))
    got = s.run(None, {"P": P, "X": X, "target": target})[0]
    np.testing.assert_allclose(got, model.loss_many(P, X, target, loss), rtol=1e-5, atol=1e-6)


def test_trainable_export_takes_parameters(tmp_path, rng):
    model = zotrain.mnist_mlp(rank=2)
    p = model.init(0)
    s = session(to_onnx(model, p, tmp_path / "t.onnx", trainable=True))
    X = rng.standard_normal((5, 784)).astype(np.float32)
    Y, features = s.run(None, {"X": X})  # defaults: the trained values
    np.testing.assert_allclose(Y, model.apply(p, X), atol=1e-5)
    assert features.shape == (5, 1024)
    q = model.init(1)
    feeds = {"X": X}
    feeds.update(model.unflatten(q))
    np.testing.assert_allclose(s.run(None, feeds)[0], model.apply(q, X), atol=1e-5)


class Custom:
    in_features = out_features = None

    def param_shapes(self):
        return []


def test_unsupported_layer(tmp_path):
    model = Sequential([Dense(4, 3), ReLU(), Dense(3, 2)])
    params = model.init(0)
    model.layers[1] = Custom()
    with pytest.raises(ExportError, match="layer 1 .*Custom.* has no ONNX export"):
        to_onnx(model, params, tmp_path / "m.onnx")


def test_output_directory_missing(tmp_path):
    model = Sequential([Dense(4, 2)])
    with pytest.raises(ExportError, match="directory .* does not exist"):
        to_onnx(model, model.init(0), tmp_path / "nope" / "m.onnx")


def test_missing_or_corrupted_model_file(tmp_path, capsys):
    from zotrain.engine.rundir import RunDirError

    with pytest.raises(RunDirError, match="no model file"):
        load_run_model(tmp_path / "model.npz")
    (tmp_path / "model.npz").write_bytes(b"not a zip")
    with pytest.raises(RunDirError, match="corrupted"):
        load_run_model(tmp_path / "model.npz")
    assert cli.main(["export", str(tmp_path)]) == 2
    assert "corrupted" in capsys.readouterr().err


def test_onnxruntime_objective_matches_numba(rng):
    from zotrain.zo.objective import ModelObjective
    from zotrain.export.runtime import OrtBackend

    model = zotrain.mnist_mlp(rank=4)
    p = model.init(0) + 0.01 * rng.standard_normal(model.n_params).astype(np.float32)
    X = rng.standard_normal((33, 784)).astype(np.float32)
    y = rng.integers(0, 10, 33)
    ort_obj, nb_obj = OrtBackend(model).objective(X, y), ModelObjective(model, X, y)
    P = np.stack([p, p * 1.01, p * 0.99])
    np.testing.assert_allclose(ort_obj(P), nb_obj(P), rtol=1e-5)
    assert ort_obj.loss(p) == pytest.approx(nb_obj.loss(p), rel=1e-5)
    g_ort, names, _ = ort_obj.head_gradient(p)
    g_nb, _, _ = nb_obj.head_gradient(p)
    np.testing.assert_allclose(g_ort, g_nb, rtol=1e-4, atol=1e-6)
    q = np.array([0, 0, 1, 1])
    s = np.array([1e-3, -1e-3, 1e-3, -1e-3])
    np.testing.assert_allclose(ort_obj.segment_losses(p, "0.core1", 1, 2, q, s, "gaussian"),
                               nb_obj.segment_losses(p, "0.core1", 1, 2, q, s, "gaussian"),
                               rtol=1e-5)
    assert ort_obj.forward_passes == 3 + 1 + 4


def test_cli_onnxruntime_backend_needs_the_plain_evaluator(mnist_dir, tmp_path, capsys):
    rc = cli.main(["train", "mnist", "--data", str(mnist_dir), "--backend", "onnxruntime",
                   "--out", str(tmp_path / "o"), "--quiet"])
    assert rc == 2 and "use it with --evaluator none" in capsys.readouterr().err
