"""Element-wise kernels over ``(Q, B, F)`` activations, in place."""

import numpy as np
from numba import njit, prange

from .config import PARALLEL, SERIAL

RELU = 0
TANH = 1
SIN = 2
IDENTITY = 3

_INV_PI = 1.0 / np.pi


@njit(**SERIAL)
def _sin(x):
    """sin of a float64, vectorisable: reduce by multiples of pi, then the
    Taylor series to x^17 on [-pi/2, pi/2] (truncation error < 1e-11, far below
    float32 rounding).  For |x| < 1e6; NumPy's ``np.sin`` has no Numba twin
    that vectorises without Intel's SVML."""
    k = np.floor(x * _INV_PI + 0.5)
    r = x - k * np.pi
    r2 = r * r
    p = 1.0 / 355687428096000.0
    p = p * r2 - 1.0 / 1307674368000.0
    p = p * r2 + 1.0 / 6227020800.0
    p = p * r2 - 1.0 / 39916800.0
    p = p * r2 + 1.0 / 362880.0
    p = p * r2 - 1.0 / 5040.0
    p = p * r2 + 1.0 / 120.0
    p = p * r2 - 1.0 / 6.0
    s = r + r * r2 * p
    half = k * 0.5
    return -s if half != np.floor(half) else s


def bias_activation_many(Y, P, bias_off, act):
    """``Y[q] = act(Y[q] + P[q, bias_off:bias_off+F])`` in place; returns ``Y``.

    ``bias_off < 0`` means no bias; ``act`` is one of the codes above.  Numba
    has no vectorised tanh (without Intel's SVML), so tanh runs as NumPy's
    SIMD ufunc after the bias kernel.
    """
    _bias_act_many(Y, P, bias_off, act)
    if act == TANH:
        np.tanh(Y, out=Y)
    return Y


@njit(**PARALLEL)
def _bias_act_many(Y, P, bias_off, act):
    Q, B, F = Y.shape
    for item in prange(Q * B):
        q = item // B
        row = Y[q, item % B]
        if bias_off >= 0:
            bias = P[q, bias_off:bias_off + F]
            for f in range(F):
                row[f] += bias[f]
        if act == RELU:
            for f in range(F):
                row[f] = max(row[f], np.float32(0.0))
        elif act == SIN:
            for f in range(F):
                row[f] = np.float32(_sin(np.float64(row[f])))
