"""A new activation is one class: forward, activity kernel and ONNX follow from it."""

import math

import numpy as np
import onnxruntime as ort
import pytest
from numba import njit

import zotrain as zt
from zotrain.export.onnx import to_onnx
from zotrain.kernels.activity import activity_cge_head
from tests import reference


@njit(cache=False)
def _softsign(x):
    return x / (1.0 + abs(x))


@zt.register_layer
class Softsign(zt.Activation):
    """Defined here, in one place, as a user would."""

    scalar = _softsign
    reference = staticmethod(lambda x: x / (1.0 + np.abs(x)))
    onnx_op = "Softsign"


@pytest.mark.parametrize("act", [Softsign, zt.GELU])
def test_forward_activity_and_onnx_follow_from_one_class(act, tmp_path, rng):
    model = zt.Sequential([zt.TTLinear(12, 16, rank=3), act(), zt.Dense(16, 4)])
    params = model.init(0)
    X = rng.standard_normal((7, 12)).astype(np.float32)
    np.testing.assert_allclose(model.apply(params, X), reference.forward(model, params, X),
                               rtol=1e-4, atol=1e-5)
    # the activity kernel perturbs pre-activations through the same scalar function
    Z = rng.standard_normal((5, 16)).astype(np.float32)
    W = rng.standard_normal((16, 4)).astype(np.float32)
    b = rng.standard_normal(4)
    y = rng.integers(0, 4, 5)
    D, losses = activity_cge_head(Z, act.scalar, W, b, y, 1e-3, 1.0)
    f = act.reference

    def xent(z):
        logits = f(z.astype(np.float64)) @ W + b
        m = logits.max(1, keepdims=True)
        return np.log(np.exp(logits - m).sum(1)) + m[:, 0] - logits[np.arange(5), y]

    np.testing.assert_allclose(losses, xent(Z), rtol=1e-9)
    for j in (0, 7, 15):
        e = np.zeros(16, np.float32)
        e[j] = 1e-3
        np.testing.assert_allclose(D[:, j], (xent(Z + e) - xent(Z - e)) / 2e-3, rtol=1e-3,
                                   atol=1e-6)
    # ONNX parity, and the spec round trip knows the new type
    path = to_onnx(model, params, tmp_path / "m.onnx")
    s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(s.run(None, {"X": X})[0], model.apply(params, X), atol=1e-5)
    assert type(zt.Sequential.from_spec(model.spec()).layers[1]) is act


def test_gelu_reference_values():
    x = np.array([-2.0, 0.0, 1.0])
    np.testing.assert_allclose(zt.GELU.reference(x), x * 0.5 * (1 + np.vectorize(math.erf)(
        x / math.sqrt(2))), rtol=1e-12)
    assert zt.GELU.scalar(1.0) == pytest.approx(0.8413447460685429)


def test_an_activations_scalar_kernel_is_the_function_itself():
    """Read through an instance, a jitted function (a descriptor) would be a bound method:
    the kernels would be typed for it and identity checks (the ReLU fast path of the
    backward link) would fail: the link recipe ran 3x slower that way."""
    from zotrain.kernels import elementwise
    from zotrain.nn.activations import Activation, ReLU, Sin, Tanh
    from numba import njit

    assert ReLU().scalar is elementwise.RELU
    assert Tanh().scalar is elementwise.TANH and Sin().scalar is elementwise.SIN

    class Soft(Activation):
        scalar = njit(lambda x: x / (1.0 + abs(x)))

    assert Soft().scalar is Soft.__dict__["scalar"].__func__


@pytest.mark.parametrize("act", [zt.Sin, zt.Tanh])
@pytest.mark.parametrize("shape", [(3, 5), (64, 17)])
def test_a_declared_derivative_is_the_slope_of_the_reference(act, shape, rng):
    """The local rule's exact slope (``Activation.derivative``) against a float64 central
    difference of the activation's own reference, and what ``activation_slope`` returns
    for it (float32 pre-activations, as the PINN's local rule passes them)."""
    from zotrain.zo.local_rule import activation_slope

    Z = (3 * rng.standard_normal(shape)).astype(np.float32)
    z, h = Z.astype(np.float64), 1e-6
    numeric = (act.reference(z + h) - act.reference(z - h)) / (2 * h)
    np.testing.assert_allclose(act.derivative(z), numeric, rtol=1e-7, atol=1e-8)
    got = activation_slope(Z, act.scalar, 1e-3, act.derivative)
    np.testing.assert_allclose(got, numeric, rtol=1e-6, atol=1e-6)
    # without a declared derivative: the central difference of step mu
    np.testing.assert_allclose(activation_slope(Z, act.scalar, 1e-3), numeric, atol=1e-3)
