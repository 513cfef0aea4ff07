"""TT-matrix forward kernels for many parameter sets at once.

Conventions shared by every kernel here:

* ``P`` is ``(Q, n_params)`` float32: one flat parameter vector per row.
* ``meta`` is ``(d, 5)`` int64: for core k, ``(offset, r_k, in_k, out_k,
  r_{k+1})``, where ``offset`` locates the core, stored row-major as
  ``(r_k, in_k, out_k, r_{k+1})``, inside a row of ``P``.
* Inputs ``H`` are ``(QH, B, F)`` with ``QH`` either 1 (one input shared by
  every parameter set) or Q.

The dense matrix of a TT-matrix has rows = input features and columns =
output features (``Y = X @ W``), each indexed row-major over its modes.
"""

import numpy as np
from numba import njit, prange

from .config import PARALLEL, SERIAL


@njit(**SERIAL)
def _tt_to_dense_one(p, meta, out):
    """Contract the cores in ``p`` right to left into ``out`` (in*out, flat)."""
    d = meta.shape[0]
    off, r0, ii, oo, r1 = meta[d - 1]
    rows = ii
    cols = oo
    if d == 1:
        out[:] = p[off:off + ii * oo]
        return
    R = p[off:off + r0 * ii * oo].copy()  # (r_{d-1}, in_d, out_d)
    for k in range(d - 2, -1, -1):
        off, r0, ii, oo, r1 = meta[k]
        new_rows = ii * rows
        new_cols = oo * cols
        if k == 0:
            N = out
        else:
            N = np.empty(r0 * new_rows * new_cols, dtype=np.float32)
        for r in range(r0):
            for i in range(ii):
                for rr in range(rows):
                    row_base = (r * new_rows + i * rows + rr) * new_cols
                    for o in range(oo):
                        dst = N[row_base + o * cols:row_base + (o + 1) * cols]
                        dst[:] = 0.0
                        for s in range(r1):
                            g = p[off + ((r * ii + i) * oo + o) * r1 + s]
                            src = R[(s * rows + rr) * cols:(s * rows + rr + 1) * cols]
                            for cc in range(cols):
                                dst[cc] += g * src[cc]
        R = N
        rows = new_rows
        cols = new_cols


@njit(**PARALLEL)
def tt_to_dense_many(P, meta, W):
    """Write the dense matrices of Q TT-matrices into ``W`` ``(Q, in * out)``."""
    Q = P.shape[0]
    for q in prange(Q):
        _tt_to_dense_one(P[q], meta, W[q])
    return W


@njit(**PARALLEL)
def tt_contract_many(H, P, meta, chunk, work, Y):
    """Write ``Y[q] = H[q or 0] @ W(P[q])``, contracting the cores one by one.

    Work items are (parameter set, batch chunk of ``chunk`` rows); each keeps
    its intermediates feature-major, ``(left_out, r, in_rest, chunk)``, so that
    every inner loop runs over a long contiguous vector.  ``work`` is the
    largest intermediate size per batch row.  No bias is added here.
    """
    Q = P.shape[0]
    QH, B, F = H.shape
    d = meta.shape[0]
    out_features = Y.shape[2]
    nchunks = (B + chunk - 1) // chunk
    for item in prange(Q * nchunks):
        q = item // nchunks
        b0 = (item % nchunks) * chunk
        nb = min(chunk, B - b0)
        qh = q if QH > 1 else 0
        T = np.empty(work * nb, dtype=np.float32)
        U = np.empty(work * nb, dtype=np.float32)
        for b in range(nb):
            for f in range(F):
                T[f * nb + b] = H[qh, b0 + b, f]
        left = 1
        rest = F
        for k in range(d):
            off, r0, ii, oo, r1 = meta[k]
            rest //= ii
            L = rest * nb
            for lo in range(left):
                for o in range(oo):
                    for s in range(r1):
                        d0 = ((lo * oo + o) * r1 + s) * L
                        dst = U[d0:d0 + L]
                        dst[:] = 0.0
                        for r in range(r0):
                            for i in range(ii):
                                g = P[q, off + ((r * ii + i) * oo + o) * r1 + s]
                                s0 = ((lo * r0 + r) * ii + i) * L
                                src = T[s0:s0 + L]
                                for t in range(L):
                                    dst[t] += g * src[t]
            T, U = U, T
            left *= oo
        for b in range(nb):
            for j in range(out_features):
                Y[q, b0 + b, j] = T[j * nb + b]
    return Y
