"""What a PINN's network sees of a point.

* ``"coordinates"`` (the default): the box coordinates ``y = (x - lower) / (upper -
  lower)``, ``d`` inputs.
* ``"quadratic"``: every coordinate and its square, ``(y_1, ..., y_d, y_1^2, ...,
  y_d^2)``, ``2 d`` inputs.  The first layer is then linear in a quadratic in each
  coordinate, so a single direction of it is ``|x - c|^2`` or any sum of
  per-coordinate quadratics.  On the coordinates alone such a function takes Sin
  features over about as many input directions as there are coordinates (the
  default rank-2 layer on 101 inputs spans 64).  Solutions that depend on ``x``
  through such sums (radial ones, sums of 1-D functions) become low-dimensional for
  the layers above; for others it only adds inputs.

The map has no parameters; it runs before the network in training, in the ONNX
export (``onnx``), and in every forward the loss makes.
"""

import numpy as np

from zotrain.base import ZotrainError

#: name -> inputs per coordinate
INPUTS = {"coordinates": 1, "quadratic": 2}


def check(name):
    if name not in INPUTS:
        raise ZotrainError(f"unknown network inputs {name!r}; known: {', '.join(INPUTS)}")
    return name


def width(name, d):
    """The network's input width for ``d`` coordinates."""
    return INPUTS[check(name)] * d


def apply(name, y):
    """The network's inputs ``(N, width)`` float32 for box coordinates ``y`` ``(N, d)``."""
    y = np.asarray(y)
    out = np.empty((len(y), width(name, y.shape[1])), np.float32)  # one allocation
    d = y.shape[1]
    out[:, :d] = y
    if name == "quadratic":
        np.multiply(out[:, :d], out[:, :d], out=out[:, d:])
    return out


def onnx(name, g, y):
    """The same map as ONNX nodes, for the node ``y`` ``(N, d)`` (float32)."""
    if check(name) == "quadratic":
        return g.op("Concat", [y, g.op("Mul", [y, y])], axis=1)
    return y
