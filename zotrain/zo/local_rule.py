"""The local rule of activity perturbation: from ``dL/dZ`` to a layer's own parameters.

For a linear layer ``Z = X @ W + b``, given ``D = dL/dZ`` (estimated by
perturbing activities, one estimate per example), the gradient of its
parameters follows from the layer's own input alone: ``dL/dW = X^T D`` and
``dL/db = sum_b D_b``.  For a TT layer ``W`` is linear in each core, so the
update is projected onto core ``k`` by contracting ``X^T D`` with the other
cores.  Nothing is differentiated through the network.
"""

import numpy as np

from zotrain.kernels import elementwise
from zotrain.nn.layers import Dense, TTLinear


def activation_slope(Z, act, mu):
    """``act'(Z)`` by a central difference of step ``mu`` (float64; ``Z`` float32 (B, F))."""
    zero = np.zeros((1, 1), np.float32)
    Zp, Zm = (elementwise.bias_activation_many((Z + m)[None].astype(np.float32), zero, -1,
                                               act)[0] for m in (mu, -mu))
    return (Zp.astype(np.float64) - Zm) / (2 * mu)


def _left(cores):
    """Product of the first cores: ``(in_left, out_left, r)``."""
    L = np.ones((1, 1, 1))
    for c in cores:
        L = np.einsum("aer,rios->aieos", L, c, optimize=True)
        a, i, e, o, s = L.shape
        L = L.reshape(a * i, e * o, s)
    return L


def _right(cores):
    """Product of the last cores: ``(r, in_right, out_right)``."""
    R = np.ones((1, 1, 1))
    for c in reversed(cores):
        R = np.einsum("rios,scg->ricog", c, R, optimize=True)
        r, i, c_, o, g = R.shape
        R = R.reshape(r, i * c_, o * g)
    return R


def tt_core_gradients(cores, M):
    """``d <M, W(cores)> / d core_k`` for every k, ``M`` of the dense matrix's shape."""
    d = len(cores)
    grads = []
    for k in range(d):
        L, R = _left(cores[:k]), _right(cores[k + 1:])
        r0, i, o, r1 = cores[k].shape
        a, E, c, G = L.shape[0], L.shape[1], R.shape[1], R.shape[2]
        M6 = M.reshape(a, i, c, E, o, G)
        # contract (a, E) with L, then (c, G) with R, as two matrix products
        T = np.tensordot(M6, L.astype(M.dtype), axes=([0, 3], [0, 1]))  # (i, c, o, G, r)
        g = np.tensordot(T, R.astype(M.dtype), axes=([1, 3], [1, 2]))  # (i, o, r, s)
        grads.append(g.transpose(2, 0, 1, 3))
    return grads


def layer_gradient(model, i, params, X, D):
    """Gradient of the loss w.r.t. linear layer ``i``'s segments, from its input ``X``
    ``(B, in)`` and ``D = dL/dZ`` ``(B, out)``.  Returns ``{segment name: array}``."""
    X = np.asarray(X, np.float32)
    D = np.asarray(D, np.float32)
    return gradient_from_products(model, i, params, X.T @ D, D.sum(axis=0, dtype=np.float64))


def gradient_from_products(model, i, params, M, d_sum):
    """``layer_gradient`` from ``M = X^T D`` and ``d_sum = sum_b D_b`` (summable over
    minibatch chunks)."""
    layer = model.layers[i]
    arrays = model.unflatten(params)
    out = {}
    if isinstance(layer, Dense):
        out[f"{i}.weight"] = M
    elif isinstance(layer, TTLinear):
        cores = [arrays[f"{i}.core{k}"] for k in range(layer.shape.n_modes)]
        for k, g in enumerate(tt_core_gradients(cores, M)):
            out[f"{i}.core{k}"] = g
    else:
        raise ValueError(f"layer {i} ({layer!r}) has no parameters to update")
    if layer.bias:
        out[f"{i}.bias"] = d_sum
    return out
