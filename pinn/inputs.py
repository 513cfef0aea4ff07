"""What a PINN's network sees of a point.

* ``"coordinates"`` (the default up to 25 inputs): the box coordinates ``y = (x -
  lower) / (upper - lower)``, ``d`` inputs.
* ``"radius"``: the coordinates and the squared distance from the box's centre over the
  space coordinates, ``4 mean_i (y_i - 1/2)^2`` (1 at a corner), ``d + 1`` inputs.  A
  first-layer direction is then ``a.y + b |y - 1/2|^2``, which holds ``|x - c|^2`` for
  every centre ``c``: solutions that depend on ``x`` through a distance (hjb100d, bsb100d)
  become low-dimensional for the layers above, at the cost of one input.
* ``"quadratic"`` (the default beyond 25 inputs, ``config.default_model``): every
  coordinate and its square, ``(y_1, ..., y_d, y_1^2, ..., y_d^2)``, ``2 d`` inputs: a
  single direction is any sum of per-coordinate quadratics, ``|x - c|^2`` among them
  (``b = 1``, ``a = -2 c``), and so is a sum of one-dimensional functions near their
  second-order expansion (heat100d's mean of ``sin x_i``).

On the coordinates alone ``|x - c|^2`` takes Sin features over about as many input
directions as there are coordinates (the default rank-2 layer on 101 inputs spans 64).
The map has no parameters; it runs before the network in training, in the ONNX export
(``onnx``), and in every forward the loss makes.
"""

import numpy as np

from zotrain.base import ZotrainError

#: name -> the network's input width for d coordinates
INPUTS = {"coordinates": lambda d: d, "radius": lambda d: d + 1, "quadratic": lambda d: 2 * d}


def check(name):
    if name not in INPUTS:
        raise ZotrainError(f"unknown network inputs {name!r}; known: {', '.join(INPUTS)}")
    return name


def width(name, d):
    """The network's input width for ``d`` coordinates."""
    return INPUTS[check(name)](d)


def _space(d, time_index):
    return [i for i in range(d) if i != time_index]


def apply(name, y, time_index=None):
    """The network's inputs ``(N, width)`` float32 for box coordinates ``y`` ``(N, d)``
    (coordinate ``time_index``, if any, is time: not part of the radius)."""
    y = np.asarray(y)
    d = y.shape[1]
    out = np.empty((len(y), width(name, d)), np.float32)  # one allocation
    out[:, :d] = y
    if name == "quadratic":
        np.multiply(out[:, :d], out[:, :d], out=out[:, d:])
    elif name == "radius":
        space = out[:, :d] if time_index is None else out[:, _space(d, time_index)]
        centred = space - np.float32(0.5)
        out[:, d] = np.einsum("ij,ij->i", centred, centred) * np.float32(4.0 / space.shape[1])
    return out


def onnx(name, g, y, d, time_index=None):
    """The same map as ONNX nodes, for the node ``y`` ``(N, d)`` (float32)."""
    if check(name) == "quadratic":
        return g.op("Concat", [y, g.op("Mul", [y, y])], axis=1)
    if name == "radius":
        cols = _space(d, time_index)
        space = y if time_index is None else g.op("Gather", [y, g.const(cols)], axis=1)
        c = g.op("Sub", [space, g.const([0.5], np.float32)])
        r = g.op("ReduceSum", [g.op("Mul", [c, c]), g.const([1])], keepdims=1)
        return g.op("Concat", [y, g.op("Mul", [r, g.const([4.0 / len(cols)], np.float32)])],
                    axis=1)
    return y
