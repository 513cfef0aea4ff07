"""Element-wise kernels over ``(Q, B, F)`` activations, in place."""

import numpy as np
from numba import njit, prange

from .config import PARALLEL

RELU = 0
TANH = 1
SIN = 2
IDENTITY = 3


@njit(**PARALLEL)
def bias_activation_many(Y, P, bias_off, act):
    """``Y[q] = act(Y[q] + P[q, bias_off:bias_off+F])`` in place.

    ``bias_off < 0`` means no bias; ``act`` is one of the codes above.
    """
    Q, B, F = Y.shape
    for item in prange(Q * B):
        q = item // B
        b = item % B
        for f in range(F):
            v = Y[q, b, f]
            if bias_off >= 0:
                v += P[q, bias_off + f]
            if act == RELU:
                v = max(v, np.float32(0.0))
            elif act == TANH:
                v = np.tanh(v)
            elif act == SIN:
                v = np.sin(v)
            Y[q, b, f] = v
    return Y
