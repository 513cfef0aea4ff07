"""The maps of zotrain.pinn.inputs against their definitions, in NumPy and as ONNX nodes."""

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from zotrain.export.onnx import Graph, write_model
from zotrain.pinn import inputs


def by_hand(name, y, time_index):
    if name == "coordinates":
        return y
    if name == "quadratic":
        return np.concatenate([y, y ** 2], axis=1)
    space = [i for i in range(y.shape[1]) if i != time_index]
    r = sum((y[:, i] - 0.5) ** 2 for i in space) * 4 / len(space)
    return np.column_stack([y, r])


@pytest.mark.parametrize("name", sorted(inputs.INPUTS))
@pytest.mark.parametrize("time_index", [None, 0, 4])
def test_the_maps_and_their_onnx_nodes_match_their_definitions(name, time_index, tmp_path):
    d = 5
    y = np.random.default_rng(0).uniform(-0.5, 1.5, (7, d))
    want = by_hand(name, y, time_index)
    got = inputs.apply(name, y, time_index)
    assert got.shape == (7, inputs.width(name, d)) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    g = Graph()
    out = g.op("Identity", [inputs.onnx(name, g, "y", d, time_index)])
    path = write_model(g, [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, d])],
                       [helper.make_tensor_value_info(out, TensorProto.FLOAT, [None, None])],
                       tmp_path / "map.onnx")
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(sess.run(None, {"y": y.astype(np.float32)})[0], want,
                               rtol=1e-6, atol=1e-6)


def test_the_radius_is_one_at_a_corner_and_zero_at_the_centre():
    y = np.array([[0.5, 0.5, 0.0], [1.0, 0.0, 0.3]])
    np.testing.assert_allclose(inputs.apply("radius", y, time_index=2)[:, 3], [0.0, 1.0])
