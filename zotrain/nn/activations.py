"""Element-wise activations, each declared once: its jitted scalar kernel (used by the
forward and the activity-perturbation kernels), its ONNX form, its NumPy reference,
and optionally its exact slope as a NumPy function (``derivative``; the PINN's local
rule takes a central difference of ``scalar`` without one).

A new activation is one class here (or in your own code)::

    @register_layer
    class Softsign(Activation):
        scalar = njit(lambda x: x / (1.0 + abs(x)))
        reference = staticmethod(lambda x: x / (1 + np.abs(x)))

        def onnx(self, g, x):
            return g.op("Softsign", [x])
"""

import math

import numpy as np
from numba import njit

from zotrain.kernels import elementwise
from zotrain.kernels.config import SERIAL
from zotrain.nn.layers import register_layer


class Activation:
    """An element-wise activation; fused into the preceding linear layer.

    ``scalar`` is a Numba-jitted float64 -> float64 function, ``reference`` its
    NumPy twin, ``onnx_op`` the ONNX operator (or override ``onnx``)."""

    scalar = staticmethod(elementwise.IDENTITY)
    reference = staticmethod(lambda x: x)
    derivative = None  # its exact slope as a NumPy function, if known (else a difference)
    onnx_op = "Identity"
    in_features = out_features = None

    def __init_subclass__(cls, **kwargs):
        # a jitted function is a descriptor: read through an instance it would become a
        # bound method, which is not the kernel (``act.scalar is elementwise.RELU`` fails
        # and the kernels are typed for a method); keep it a plain function
        super().__init_subclass__(**kwargs)
        scalar = cls.__dict__.get("scalar")
        if scalar is not None and not isinstance(scalar, staticmethod):
            cls.scalar = staticmethod(scalar)

    def param_shapes(self):
        return []

    def init_params(self, rng):
        return []

    def forward_many(self, H, P, offsets, act=None, scratch=None):
        Y = np.array(H, dtype=np.float32, copy=True)
        return elementwise.bias_activation_many(Y, P[:1], -1, self.scalar)

    def onnx(self, g, x):
        """The ONNX node computing this activation of node ``x`` (``g`` an export graph)."""
        return g.op(self.onnx_op, [x])

    def flops(self, batch):
        return 0

    def spec(self):
        return {"type": type(self).__name__}

    def __repr__(self):
        return f"{type(self).__name__}()"


@register_layer
class ReLU(Activation):
    scalar = elementwise.RELU
    reference = staticmethod(lambda x: np.maximum(x, 0.0))
    onnx_op = "Relu"


@register_layer
class Tanh(Activation):
    scalar = elementwise.TANH
    reference = staticmethod(np.tanh)
    derivative = staticmethod(lambda x: 1 - np.tanh(x) ** 2)
    onnx_op = "Tanh"


@register_layer
class Sin(Activation):
    scalar = elementwise.SIN
    reference = staticmethod(np.sin)
    derivative = staticmethod(np.cos)
    onnx_op = "Sin"


@njit(**SERIAL)
def _gelu(x):
    return 0.5 * x * (1.0 + math.erf(x * 0.7071067811865476))


def _gelu_reference(x):
    from scipy.special import erf

    return 0.5 * x * (1.0 + erf(np.asarray(x, np.float64) / math.sqrt(2.0)))


@register_layer
class GELU(Activation):
    """Gaussian error linear unit, x Phi(x) (exact erf form; ONNX: Erf, opset 17)."""

    scalar = _gelu
    reference = staticmethod(_gelu_reference)

    def onnx(self, g, x):
        half = g.const(0.5, np.float32)
        inner = g.op("Erf", [g.op("Mul", [x, g.const(1.0 / math.sqrt(2.0), np.float32)])])
        return g.op("Mul", [g.op("Mul", [x, half]), g.op("Add", [inner, g.const(1.0, np.float32)])])
