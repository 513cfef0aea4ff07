"""A PDE zotrain does not ship, declared as a user would (imported by the tests, also in a
fresh process): Poisson in 3-D, -Lap u = 3 pi^2 prod sin(pi x_i) on the unit cube, u = 0 on
its boundary, imposed by the hard constraint u = prod x_i (1 - x_i) * nn."""

import math

import numpy as np

from zotrain.pinn import Problem


def cube_bubble(g, xs):
    """The constraint as ONNX nodes: a = None, c = prod_i x_i (1 - x_i) at xs (batch, M, 3)."""
    c = g.op("Mul", [xs, g.op("Sub", [g.const(1.0, np.float32), xs])])
    return None, g.op("ReduceProd", [c], axes=[2], keepdims=0)


def poisson3d(with_exact=True):
    return Problem(
        "my-poisson3d", dim=3, time_index=None, lower=(0.0,) * 3, upper=(1.0,) * 3,
        residual=lambda x, u, grad, lap, u_t: lap + 3 * math.pi ** 2 * np.prod(
            np.sin(math.pi * x), axis=1),
        exact=(lambda x: np.prod(np.sin(math.pi * x), axis=1)) if with_exact else None,
        transform=lambda x, nn: np.prod(x * (1 - x), axis=1) * nn,
        transform_onnx=cube_bubble, sigma=0.01, method="sparse-grid", omega=3.0)
