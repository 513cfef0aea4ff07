"""int8 export: onnxruntime runs the quantized model as a NumPy reading of its file says,
the MatMul-form float graph equals the model, and bad input is refused."""

import numpy as np
import pytest

from zotrain.export.int8 import to_onnx_int8, to_onnx_matmul
from zotrain.export.onnx import ExportError
from zotrain.nn import architectures


def _session(path, optimize=True):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if not optimize:
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def _numpy_qdq(path, X):
    """The quantized graph evaluated node by node in NumPy (float64): weights
    dequantized per channel, activations rounded to their uint8 grid (half to even,
    as QuantizeLinear specifies)."""
    import onnx
    from onnx import numpy_helper

    m = onnx.load(str(path))
    env = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
    env["X"] = X.astype(np.float32)
    for node in m.graph.node:
        a = {x.name: onnx.helper.get_attribute_value(x) for x in node.attribute}
        ins = [env[n] for n in node.input]
        op = node.op_type
        if op == "QuantizeLinear":
            x, s, z = ins
            q = np.rint(x.astype(np.float64) / s) + z.astype(np.float64)
            info = np.iinfo(z.dtype)
            out = np.clip(q, info.min, info.max).astype(z.dtype)
        elif op == "DequantizeLinear":
            q, s, z = ins
            shape = [1] * q.ndim
            if s.ndim == 1:
                shape[a.get("axis", 1)] = -1
            out = (q.astype(np.float64) - z.astype(np.float64).reshape(shape)) \
                * s.astype(np.float64).reshape(shape)
        elif op == "MatMul":
            out = np.matmul(*ins)
        elif op == "Add":
            out = ins[0] + ins[1]
        elif op == "Reshape":
            shape = [ins[0].shape[i] if v == 0 else v for i, v in enumerate(ins[1])]
            out = ins[0].reshape(shape)
        elif op == "Transpose":
            out = ins[0].transpose(a["perm"])
        elif op == "Relu":
            out = np.maximum(ins[0], 0)
        elif op == "Sin":
            out = np.sin(ins[0])
        elif op == "Identity":
            out = ins[0]
        else:
            raise AssertionError(f"the reference does not know {op}")
        env[node.output[0]] = out
    return env["Y"], env


def _trained_like(model, seed):
    """Parameters with a non-trivial head (random init, head scaled up)."""
    p = model.init(seed)
    rng = np.random.default_rng(seed)
    head = model.layout.of_layer(len(model.layers) - 1)
    for s in head:
        p[s.slice] = rng.standard_normal(s.size).astype(np.float32) * 0.3
    return p


@pytest.mark.parametrize("hidden,rank,seed", [(64, 4, 0), (128, 6, 1), (40, 3, 2)])
def test_matmul_form_equals_the_model(tmp_path, hidden, rank, seed):
    model = architectures.classifier(784, 10, rank=rank, depth=1, hidden=hidden)
    params = _trained_like(model, seed)
    X = np.random.default_rng(seed).standard_normal((7, 784)).astype(np.float32)
    path = to_onnx_matmul(model, params, tmp_path / "m.onnx")
    Y = _session(path).run(None, {"X": X})[0]
    np.testing.assert_allclose(Y, model.apply(params, X), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("hidden,rank,depth,seed", [(64, 4, 1, 0), (128, 6, 1, 1),
                                                    (32, 3, 2, 2)])
def test_int8_runs_as_its_numpy_reading_says(tmp_path, hidden, rank, depth, seed):
    import onnx

    model = architectures.classifier(784, 10, rank=rank, depth=depth, hidden=hidden)
    params = _trained_like(model, seed)
    rng = np.random.default_rng(seed)
    cal = rng.standard_normal((200, 784)).astype(np.float32)
    path = to_onnx_int8(model, params, tmp_path / "q.onnx", cal)
    m = onnx.load(str(path))
    weights = {t.name: t for t in m.graph.initializer if t.name.endswith("_quantized")}
    assert len(weights) == sum(1 for s in model.layout if s.local != "bias")
    assert all(t.data_type == onnx.TensorProto.INT8 for t in weights.values())
    scales = [t for t in m.graph.initializer if t.name.endswith(".weight_scale")
              or (".core" in t.name and t.name.endswith("_scale"))]
    assert scales and all(len(t.dims) == 1 and t.dims[0] > 1 for t in scales)  # per channel
    X = rng.standard_normal((16, 784)).astype(np.float32)
    ref, env = _numpy_qdq(path, X)
    # as written (no graph rewrites): the same arithmetic, up to float32 rounding
    literal = _session(path, optimize=False).run(None, {"X": X})[0]
    np.testing.assert_allclose(literal, ref, atol=1e-5 * np.abs(ref).max())
    # optimized, DQ-MatMul-Q runs as one integer kernel (QLinearMatMul); its requantizing
    # may round the other way, by at most one step of an output grid (7-bit weights keep
    # AVX2's u8 x s8 kernel from saturating: with full 8-bit weights it was 20 steps off)
    Y = _session(path).run(None, {"X": X})[0]
    step = max(float(v) for k, v in env.items() if k.endswith("_scale") and np.ndim(v) == 0)
    np.testing.assert_allclose(Y, ref, atol=1.01 * step)
    # and it is the model: every int8 weight is the model's own weight rounded to its column's
    # grid (half a step at most), every bias the model's bias (the reference above reads only
    # the file, so this is its link to the model)
    arrays = model.unflatten(params)
    for name, value in arrays.items():
        if name.endswith("bias"):
            np.testing.assert_array_equal(env[name], value)
            continue
        w = value.reshape(weights[f"{name}_quantized"].dims)
        scale, zero = env[f"{name}_scale"], env[f"{name}_zero_point"]
        assert not zero.any()  # symmetric
        deq = env[f"{name}_quantized"].astype(np.float64) * scale
        assert np.all(np.abs(deq - w) <= 0.5 * scale * (1 + 1e-6)), name
    exact = model.apply(params, X)
    assert np.abs(ref - exact).max() < 0.1 * np.abs(exact).max()


def test_int8_needs_calibration_inputs(tmp_path):
    model = architectures.classifier(784, 10, rank=2, depth=1, hidden=16)
    params = model.init(0)
    with pytest.raises(ExportError, match="calibration"):
        to_onnx_int8(model, params, tmp_path / "q.onnx", None)
    with pytest.raises(ExportError, match=r"\(N >= 1, 784\)"):
        to_onnx_int8(model, params, tmp_path / "q.onnx", np.zeros((0, 784)))
    with pytest.raises(ExportError, match=r"\(N >= 1, 784\)"):
        to_onnx_int8(model, params, tmp_path / "q.onnx", np.zeros((5, 100)))
    with pytest.raises(ExportError, match="non-finite"):
        to_onnx_int8(model, params, tmp_path / "q.onnx", np.full((5, 784), np.nan))
    with pytest.raises(ExportError, match="does not exist"):
        to_onnx_int8(model, params, tmp_path / "missing" / "q.onnx", np.zeros((5, 784)))
    assert not list(tmp_path.iterdir())
