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

from .config import PARALLEL, SERIAL, WORK_ITEM_FLOATS, check_array, prepare_threads


@njit(**SERIAL)
def _contract_step(T, U, core, left, K, M, L):
    """``U[lo, m, :] = sum_k core[k, m] * T[lo, k, :]`` for every ``lo``.

    ``T`` is ``(left, K, L)`` and ``U`` ``(left, M, L)``, flat; ``core`` is
    ``(K, M)`` (a TT core ``(r, in, out, r')`` with ``K = r*in``, ``M = out*r'``).
    Four terms are summed per pass over the ``L``-long rows, so each store of
    an output row carries four multiply-adds.
    """
    for lo in range(left):
        for m in range(M):
            dst = U[(lo * M + m) * L:(lo * M + m + 1) * L]
            for k0 in range(0, K, 4):
                g0 = core[k0 * M + m]
                g1 = core[(k0 + 1) * M + m] if k0 + 1 < K else np.float32(0.0)
                g2 = core[(k0 + 2) * M + m] if k0 + 2 < K else np.float32(0.0)
                g3 = core[(k0 + 3) * M + m] if k0 + 3 < K else np.float32(0.0)
                base = (lo * K + k0) * L
                s0 = T[base:base + L]
                s1 = T[base + L:base + 2 * L] if k0 + 1 < K else s0
                s2 = T[base + 2 * L:base + 3 * L] if k0 + 2 < K else s0
                s3 = T[base + 3 * L:base + 4 * L] if k0 + 3 < K else s0
                if k0 == 0:
                    for t in range(L):
                        dst[t] = g0 * s0[t] + g1 * s1[t] + g2 * s2[t] + g3 * s3[t]
                else:
                    for t in range(L):
                        dst[t] += g0 * s0[t] + g1 * s1[t] + g2 * s2[t] + g3 * s3[t]


@njit(**PARALLEL)
def _tt_contract_many(H, P, meta, chunk, work, Y):
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
            _contract_step(T, U, P[q, off:off + r0 * ii * oo * r1], left, r0 * ii, oo * r1,
                           rest * nb)
            T, U = U, T
            left *= oo
        for b in range(nb):
            for j in range(out_features):
                Y[q, b0 + b, j] = T[j * nb + b]
    return Y


@njit(**PARALLEL)
def _tt_left_apply(XR, Lt, chunk, Y):
    """``Y[b, e, :] = sum_k Lt[k, e] * XR[b, k, :]``, ``chunk`` rows per work item."""
    B, K, G = XR.shape
    E = Lt.shape[1]
    T = XR.reshape(B * K * G)
    U = Y.reshape(B * E * G)
    core = Lt.reshape(K * E)
    for item in prange((B + chunk - 1) // chunk):
        b0 = item * chunk
        nb = min(chunk, B - b0)
        _contract_step(T[b0 * K * G:(b0 + nb) * K * G], U[b0 * E * G:(b0 + nb) * E * G], core,
                       nb, K, E, G)
    return Y


def tt_left_apply(XR, Lt, Y, chunk=16):
    """Write ``Y[b, e, g] = sum_k Lt[k, e] XR[b, k, g]`` (float32, C-contiguous: ``XR``
    ``(B, K, G)``, ``Lt`` ``(K, E)``, ``Y`` ``(B, E, G)``): per row, a TT-matrix's left half
    applied to the input already multiplied by its right half (``zotrain.nn.tt_split``,
    ``halves_forward``).  ``chunk`` rows per work item."""
    check_array("XR", XR, np.float32, 3, contiguous=True)
    check_array("Lt", Lt, np.float32, 2, contiguous=True)
    check_array("Y", Y, np.float32, 3, contiguous=True)
    (B, K, G), E = XR.shape, Lt.shape[1]
    if Lt.shape[0] != K or Y.shape != (B, E, G):
        raise ValueError(f"XR {XR.shape}, Lt {Lt.shape} and Y {Y.shape} do not fit: expected "
                         f"Lt ({K}, E) and Y ({B}, E, {G})")
    if isinstance(chunk, bool) or not isinstance(chunk, (int, np.integer)) or chunk < 1:
        raise ValueError(f"chunk must be an integer >= 1, got {chunk!r}")
    prepare_threads()
    return _tt_left_apply(XR, Lt, int(chunk), Y)


def _check_meta(meta, P):
    check_array("meta", meta, np.int64, 2)
    check_array("P", P, np.float32, 2)
    if meta.shape[1] != 5 or meta.shape[0] < 1:
        raise ValueError(f"meta must be (d, 5), got {meta.shape}")
    for k, (off, r0, ii, oo, r1) in enumerate(meta.tolist()):
        if off < 0 or off + r0 * ii * oo * r1 > P.shape[1]:
            raise ValueError(f"core {k} at {off} of shape {(r0, ii, oo, r1)} lies outside P's "
                             f"rows of {P.shape[1]} values")
        if k and meta[k - 1][4] != r0:
            raise ValueError(f"core {k} starts with rank {r0}, core {k - 1} ends with "
                             f"{meta[k - 1][4]}")
    return int(np.prod(meta[:, 2])), int(np.prod(meta[:, 3]))


def contraction_work(meta):
    """Largest intermediate of the core-by-core contraction, per batch row: the input,
    then ``left_out * r_k * in_rest`` after each core."""
    n_in = int(np.prod(meta[:, 2]))
    work, left, rest = n_in, 1, n_in
    for _, _, ii, oo, r1 in meta:
        rest //= int(ii)
        left *= int(oo)
        work = max(work, left * int(r1) * rest)
    return work


def tt_contract_many(H, P, meta, Y, chunk=None):
    """Write ``Y[q] = H[q or 0] @ W(P[q])`` (see ``_tt_contract_many``): ``H``
    ``(1 or Q, B, in)``, ``Y`` ``(Q, B, out)``, both float32.  ``chunk`` batch rows per
    work item (default: as many as keep a work item's intermediates near
    ``WORK_ITEM_FLOATS``, between 8 and 128)."""
    n_in, n_out = _check_meta(meta, P)
    check_array("H", H, np.float32, 3)
    check_array("Y", Y, np.float32, 3)
    Q = P.shape[0]
    if H.shape[0] not in (1, Q) or H.shape[2] != n_in or Y.shape != (Q, H.shape[1], n_out):
        raise ValueError(f"H {H.shape} and Y {Y.shape} do not fit {Q} TT-matrices "
                         f"{n_in} -> {n_out}")
    work = contraction_work(meta)
    if chunk is None:
        chunk = int(min(128, max(8, WORK_ITEM_FLOATS // work // 8 * 8)))
    if isinstance(chunk, bool) or not isinstance(chunk, (int, np.integer)) or chunk < 1:
        raise ValueError(f"chunk must be an integer >= 1, got {chunk!r}")
    prepare_threads()
    return _tt_contract_many(H, P, meta, int(chunk), work, Y)
