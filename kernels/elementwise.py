"""Element-wise kernels over ``(Q, B, F)`` activations, in place.

An activation is a jitted scalar function float64 -> float64 (``RELU``,
``TANH``, ``SIN``, ``IDENTITY`` below, or a user's own: see
``zotrain.nn.activations``); kernels take it as an argument and Numba
compiles one specialisation per function.
"""

import math

import numpy as np
from numba import njit, prange

from .config import PARALLEL, PARALLEL_FN, SERIAL, SERIAL_FN, check_array, prepare_threads

_INV_PI = 1.0 / np.pi
#: |x| beyond which ``SIN`` and ``sin32`` return NaN: their range reduction by a few parts
#: of pi is exact to float32 rounding (1.5e-7, tested) only up to here.  A network whose
#: pre-activations reach 1e5 has diverged; NaN makes the engine say so instead of
#: training on a wrong sine (0.395 for sin(1e9) = 0.546)
SIN_LIMIT = 1e5
_SIN_LIMIT32 = np.float32(SIN_LIMIT)


@njit(**SERIAL)
def relu(x):
    return 0.0 if x <= 0.0 else x  # NaN stays NaN (``x if x > 0 else 0`` made it 0)


@njit(**SERIAL)
def tanh(x):
    return math.tanh(x)


@njit(**SERIAL)
def identity(x):
    return x


@njit(**SERIAL)
def _sin(x):
    """sin of a float64, vectorisable: reduce by multiples of pi, then the
    Taylor series to x^17 on [-pi/2, pi/2] (truncation error < 1e-11, far below
    float32 rounding).  NaN for |x| > ``SIN_LIMIT`` (and for NaN and inf, as the true
    sine); NumPy's ``np.sin`` has no Numba twin that vectorises without Intel's SVML."""
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
    s = -s if half != np.floor(half) else s
    return s if abs(x) <= SIN_LIMIT else np.nan


sin = _sin
RELU, TANH, SIN, IDENTITY = relu, tanh, sin, identity

# pi in three float32 parts (8, 12 and 24 significant bits): k * part is exact in the
# first two for |k| < 2^12 (|x| < ~1.2e4), and nearly so well beyond
_PI_A = np.float32(3.140625)
_PI_B = np.float32(9.677410125732422e-04)
_PI_C = np.float32(-8.742277657347586e-08)
_INV_PI32 = np.float32(1.0 / np.pi)
_HALF32 = np.float32(0.5)
#: float32 sine coefficients: Taylor to x^13 on [-pi/2, pi/2] (truncation < 6e-10)
_S3, _S5, _S7 = np.float32(-1.0 / 6.0), np.float32(1.0 / 120.0), np.float32(-1.0 / 5040.0)
_S9, _S11, _S13 = (np.float32(1.0 / 362880.0), np.float32(-1.0 / 39916800.0),
                   np.float32(1.0 / 6227020800.0))


@njit(**SERIAL)
def sin32(x):
    """sin of a float32 in float32 arithmetic, 8 lanes per AVX2 instruction (``SIN``
    works in float64, 4 lanes): reduce by multiples of pi in three parts, then the
    Taylor series to x^13.  Within 1.5e-7 of the true sine for |x| <= ``SIN_LIMIT``
    (1e5; tested, float32 rounding alone is 3e-8); NaN beyond it, where the reduction
    grows inexact (and for NaN and inf, as the true sine)."""
    k = np.floor(x * _INV_PI32 + _HALF32)
    r = ((x - k * _PI_A) - k * _PI_B) - k * _PI_C
    r2 = r * r
    p = _S13
    p = p * r2 + _S11
    p = p * r2 + _S9
    p = p * r2 + _S7
    p = p * r2 + _S5
    p = p * r2 + _S3
    s = r + r * r2 * p
    s = -s if np.int32(k) & 1 else s
    return s if abs(x) <= _SIN_LIMIT32 else np.float32(np.nan)


def bias_activation_many(Y, P, bias_off, act):
    """``Y[q] = act(Y[q] + P[q, bias_off:bias_off+F])`` in place; returns ``Y``.

    ``Y`` is ``(Q, B, F)`` float32, ``P`` ``(Q or 1, n)`` float32; ``bias_off < 0``
    means no bias; ``act`` a jitted scalar function.  Numba has no vectorised
    tanh (without Intel's SVML), so tanh runs as NumPy's SIMD ufunc after the
    bias kernel; ``SIN`` runs in float32 (``sin32``, 3x the float64 kernel's rate).
    """
    check_array("Y", Y, np.float32, 3)
    check_array("P", P, np.float32, 2)
    if bias_off >= 0 and (P.shape[0] not in (1, Y.shape[0]) or
                          bias_off + Y.shape[2] > P.shape[1]):
        raise ValueError(f"P {P.shape} holds no bias of {Y.shape[2]} values at {bias_off} for "
                         f"{Y.shape[0]} sets")
    prepare_threads()
    if act is IDENTITY or act is TANH:
        if bias_off >= 0:
            _bias_many(Y, P, bias_off)
        if act is TANH:
            np.tanh(Y, out=Y)
    else:
        _bias_act_many(Y, P, bias_off, act, act is SIN)
    return Y


@njit(inline="always", **SERIAL_FN)
def activate(v, act, fast_sin):
    """``v = act(v)`` in place (float32 ``v``); ``sin32`` in a loop of its own when
    ``fast_sin``, which LLVM vectorises."""
    if fast_sin:
        for i in range(v.size):
            v[i] = sin32(v[i])
    else:
        for i in range(v.size):
            v[i] = np.float32(act(np.float64(v[i])))


@njit(**PARALLEL_FN)
def _bias_act_many(Y, P, bias_off, act, fast_sin):
    """The bias, then ``act`` (``sin32`` when ``fast_sin``: a loop of its own, which LLVM
    vectorises) on each row, in place."""
    Q, B, F = Y.shape
    shared = P.shape[0] == 1
    for item in prange(Q * B):
        q = item // B
        row = Y[q, item % B]
        if bias_off >= 0:
            bias = P[0 if shared else q, bias_off:bias_off + F]
            for f in range(F):
                row[f] += bias[f]
        activate(row, act, fast_sin)


@njit(**PARALLEL)
def _bias_many(Y, P, bias_off):
    Q, B, F = Y.shape
    shared = P.shape[0] == 1
    for item in prange(Q * B):
        q = item // B
        row = Y[q, item % B]
        bias = P[0 if shared else q, bias_off:bias_off + F]
        for f in range(F):
            row[f] += bias[f]
