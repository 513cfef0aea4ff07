"""The local rule of activity perturbation: from ``dL/dZ`` to a layer's own parameters.

For a linear layer ``Z = X @ W + b``, given ``D = dL/dZ`` (estimated by
perturbing activities, one estimate per example), the gradient of its
parameters follows from the layer's own input alone: ``dL/dW = X^T D`` and
``dL/db = sum_b D_b``.  For a TT layer ``W`` is linear in each core, so the
update of core ``k`` is ``X^T D`` projected onto it (``tt_core_gradients``).
``tt_core_gradients_from`` contracts the same from ``X`` and ``D`` directly
(the input carried through the cores left of ``k``, ``D`` through those right
of it), never forming the dense ``X^T D``: what a lean layer
(``TTLinear(method="lean")``) trains with, so that it needs no buffer of its
dense matrix's size.  Nothing is differentiated through the network.
"""

import math

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


def _chunk_core_gradients(cores, X, D):
    """The core gradients for one chunk of rows, never forming ``X^T D``: the input is
    carried up through the cores left of ``k`` (``P_k``), ``D`` down through those right
    of it (``Q_k``), and the two meet at core ``k`` in one matrix product.  Layouts
    ``P_k: (B, O_k, J_k, r_k, in_k)`` and ``Q_k: (B, O_k, J_k, out_k, r_k+1)`` (``O_k``
    the output modes before ``k``, ``J_k`` the input modes after it) make every step a
    GEMM plus one transpose; the intermediates are the TT forward's own sizes."""
    B, d = X.shape[0], len(cores)
    ins = [c.shape[1] for c in cores]
    P = X.reshape(B, 1, ins[0], -1, 1).transpose(0, 1, 3, 4, 2)
    left = []
    for k in range(d):
        left.append(P)
        if k == d - 1:
            break
        r, i, o, s = cores[k].shape
        O, J = P.shape[1], P.shape[2]
        T = P.reshape(-1, r * i) @ cores[k].reshape(r * i, o * s)  # (B O J, o s)
        P = T.reshape(B, O, ins[k + 1], J // ins[k + 1], o, s).transpose(0, 1, 4, 3, 5, 2) \
            .reshape(B, O * o, J // ins[k + 1], s, ins[k + 1])
    grads = [None] * d
    Q = D.reshape(B, -1, 1, cores[-1].shape[2], 1)
    for k in range(d - 1, -1, -1):
        r, i, o, s = cores[k].shape
        grads[k] = (left[k].reshape(-1, r * i).T @ Q.reshape(-1, o * s)).reshape(r, i, o, s)
        if k == 0:
            break
        O, J, o_prev = Q.shape[1], Q.shape[2], cores[k - 1].shape[2]
        T = Q.reshape(-1, o * s) @ cores[k].transpose(2, 3, 0, 1).reshape(o * s, r * i)
        Q = T.reshape(B, O // o_prev, o_prev, J, r, i).transpose(0, 1, 5, 3, 2, 4) \
            .reshape(B, O // o_prev, i * J, o_prev, r)
    return grads


def _row_size(cores):
    """Entries per input row of the largest intermediate of ``_chunk_core_gradients``."""
    ins = [c.shape[1] for c in cores]
    outs = [c.shape[2] for c in cores]
    size = 1
    for k, (r, i, o, s) in enumerate(c.shape for c in cores):
        before, after = math.prod(outs[:k]), math.prod(ins[k + 1:])
        size = max(size, before * r * i * after, before * o * s * after)
    return size


def tt_core_gradients_from(cores, X, D, chunk=None):
    """``d sum_b D_b . (X_b W(cores)) / d core_k`` for every k from the layer's input ``X``
    ``(B, in)`` and ``D = dL/dZ`` ``(B, out)``: the projection of the dense ``X^T D`` onto
    each core, without any array of the dense matrix's size (rows in chunks of ``chunk``, by
    default as many as keep each intermediate below 2**15 entries (128 KB), at most
    32)."""
    B = X.shape[0]
    chunk = chunk or min(32, max(1, (1 << 15) // _row_size(cores)))
    total = None
    for s in range(0, B, chunk):
        g = _chunk_core_gradients(cores, X[s:s + chunk], D[s:s + chunk])
        total = g if total is None else [a + b for a, b in zip(total, g)]
    return total


def layer_gradient(model, i, params, X, D):
    """Gradient of the loss w.r.t. linear layer ``i``'s segments, from its input ``X``
    ``(B, in)`` and ``D = dL/dZ`` ``(B, out)``.  A TT layer's cores get theirs by
    projecting the dense ``X^T D`` (BLAS: the fast way), or, for a layer with
    ``method="lean"`` and no more rows than inputs, straight from ``X`` and ``D``
    without any array of the dense matrix's size.  Returns ``{segment name: array}``."""
    layer = model.layers[i]
    X = np.asarray(X, np.float32)
    D = np.asarray(D, np.float32)
    d_sum = D.sum(axis=0, dtype=np.float64)
    if not (isinstance(layer, TTLinear) and layer.method == "lean" and X.shape[0] <= X.shape[1]):
        # faster (BLAS), and X^T D is no larger than D when rows outnumber inputs
        return gradient_from_products(model, i, params, X.T @ D, d_sum)
    out = {f"{i}.bias": d_sum} if layer.bias else {}
    for k, g in enumerate(tt_core_gradients_from(_cores(model, i, params), X, D)):
        out[f"{i}.core{k}"] = g
    return out


def _cores(model, i, params):
    arrays = model.unflatten(params)
    return [arrays[f"{i}.core{k}"] for k in range(model.layers[i].shape.n_modes)]


def gradient_from_products(model, i, params, M, d_sum):
    """``layer_gradient`` from ``M = X^T D`` and ``d_sum = sum_b D_b`` (both summable over
    chunks of rows, so a caller may accumulate them and project once)."""
    layer = model.layers[i]
    out = {f"{i}.bias": d_sum} if layer.bias else {}
    if isinstance(layer, Dense):
        out[f"{i}.weight"] = M
    elif isinstance(layer, TTLinear):
        for k, g in enumerate(tt_core_gradients(_cores(model, i, params), M)):
            out[f"{i}.core{k}"] = g
    else:
        raise ValueError(f"layer {i} ({layer!r}) has no parameters to update")
    return out
