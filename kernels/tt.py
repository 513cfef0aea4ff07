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

from .config import (PARALLEL, PARALLEL_FN, SERIAL, WORK_ITEM_FLOATS, check_array,
                     prepare_threads)
from .elementwise import SIN, activate, sin32


@njit(inline="always", **SERIAL)
def _axpy4(dst, first, g0, g1, g2, g3, s0, s1, s2, s3):
    """``dst = g0 s0 + g1 s1 + g2 s2 + g3 s3``, added to ``dst`` unless ``first``: four
    terms per pass, so each store carries four multiply-adds."""
    if first:
        for t in range(dst.size):
            dst[t] = g0 * s0[t] + g1 * s1[t] + g2 * s2[t] + g3 * s3[t]
    else:
        for t in range(dst.size):
            dst[t] += g0 * s0[t] + g1 * s1[t] + g2 * s2[t] + g3 * s3[t]


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
                _axpy4(dst, k0 == 0, g0, g1, g2, g3, s0, s1, s2, s3)


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


@njit(**SERIAL)
def _left_weights(Lt, q):
    """Set ``q``'s left-half weights ``(E, K)``, padded with zero terms to a multiple of 4."""
    K, E = Lt.shape[1], Lt.shape[2]
    w = np.zeros((E, (K + 3) // 4 * 4), np.float32)
    for k in range(K):
        for e in range(E):
            w[e, k] = Lt[q, k, e]
    return w


@njit(**SERIAL)
def _left_offsets(shape, q, b, off):
    """Flat ``XR`` offsets of row ``b``'s terms ``k = a R + r`` for set ``q`` (padding
    terms point at the first)."""
    _, A, Q, R, G = shape
    for k in range(off.size):
        kk = k if k < A * R else 0
        off[k] = (((b * A + kk // R) * Q + q) * R + kk % R) * G


@njit(**SERIAL)
def _left_row(T, off, w, e, G, dst):
    """``dst = sum_k w[e, k] T[off[k]:off[k] + G]``, four terms per pass over ``dst``."""
    for k0 in range(0, off.size, 4):
        g0, g1, g2, g3 = w[e, k0], w[e, k0 + 1], w[e, k0 + 2], w[e, k0 + 3]
        s0, s1 = T[off[k0]:off[k0] + G], T[off[k0 + 1]:off[k0 + 1] + G]
        s2, s3 = T[off[k0 + 2]:off[k0 + 2] + G], T[off[k0 + 3]:off[k0 + 3] + G]
        _axpy4(dst, k0 == 0, g0, g1, g2, g3, s0, s1, s2, s3)


@njit(**PARALLEL)
def _tt_left_apply(XR, Lt, chunk, row0, Y):
    """``Y[q, row0 + b, e, :] = sum_{a, r} Lt[q, a R + r, e] * XR[b, a, q, r, :]``,
    ``chunk`` rows of one set per work item."""
    B, _, Q, _, G = XR.shape
    E, n_rows = Lt.shape[2], Y.shape[1]
    T = XR.reshape(XR.size)
    U = Y.reshape(Y.size)
    nchunks = (B + chunk - 1) // chunk
    for item in prange(Q * nchunks):
        q = item // nchunks
        b0 = (item % nchunks) * chunk
        w = _left_weights(Lt, q)
        off = np.empty(w.shape[1], np.int64)
        for b in range(b0, min(B, b0 + chunk)):
            _left_offsets(XR.shape, q, b, off)
            for e in range(E):
                d0 = ((q * n_rows + row0 + b) * E + e) * G
                _left_row(T, off, w, e, G, U[d0:d0 + G])
    return Y


@njit(**PARALLEL_FN)
def _tt_left_head(XRt, Lt, bias, act, fast_sin, Wt, head_bias, chunk, row0, out):
    """``out[q, row0 + b] = act(left(XRt)[q, b] + bias[q]) @ Wt[q].T + head_bias[q]``: the
    left half, its bias and activation and a dense head, the activations never stored.
    ``XRt`` ``(Q, R, G, A, n)`` holds the rows last, so every inner loop runs over
    ``chunk`` rows; four terms per pass, the sine (and a one-output head) in the last."""
    Q, R, G, A, n = XRt.shape
    E, n_out = Lt.shape[2], Wt.shape[1]
    K = A * R
    T = XRt.reshape(XRt.size)
    nchunks = (n + chunk - 1) // chunk
    for item in prange(Q * nchunks):
        q = item // nchunks
        b0 = (item % nchunks) * chunk
        nb = min(chunk, n - b0)
        w = _left_weights(Lt, q)
        base = np.empty(w.shape[1], np.int64)  # term k's rows at g = 0 (padding: term 0's)
        for k in range(base.size):
            kk = k if k < K else 0
            base[k] = ((q * R + kk % R) * G * A + kk // R) * n + b0
        z = np.zeros(nb, np.float32)
        h = np.zeros((n_out, nb), np.float32)
        last = base.size - 4
        for e in range(E):
            for g in range(G):
                f = e * G + g
                for k0 in range(0, base.size, 4):
                    o0, o1 = base[k0] + g * A * n, base[k0 + 1] + g * A * n
                    o2, o3 = base[k0 + 2] + g * A * n, base[k0 + 3] + g * A * n
                    g0, g1, g2, g3 = w[e, k0], w[e, k0 + 1], w[e, k0 + 2], w[e, k0 + 3]
                    s0, s1 = T[o0:o0 + nb], T[o1:o1 + nb]
                    s2, s3 = T[o2:o2 + nb], T[o3:o3 + nb]
                    if k0 == 0:
                        zb = bias[q, f]
                        for i in range(nb):
                            z[i] = zb
                    if k0 < last:
                        _axpy4(z, False, g0, g1, g2, g3, s0, s1, s2, s3)
                    elif n_out == 1 and fast_sin:  # the last terms, sine and head at once
                        wf, h0 = Wt[q, 0, f], h[0]
                        for i in range(nb):
                            h0[i] += sin32(z[i] + g0 * s0[i] + g1 * s1[i] + g2 * s2[i]
                                           + g3 * s3[i]) * wf
                    else:
                        _axpy4(z, False, g0, g1, g2, g3, s0, s1, s2, s3)
                        activate(z, act, fast_sin)
                        for j in range(n_out):
                            wf, hj = Wt[q, j, f], h[j]
                            for i in range(nb):
                                hj[i] += z[i] * wf
        for i in range(nb):
            for j in range(n_out):
                out[q, row0 + b0 + i, j] = h[j, i] + head_bias[q, j]
    return out


def tt_left_apply(XR, Lt, Y, row0=0, chunk=16):
    """Write ``Y[q, row0 + b, e, g] = sum_{a, r} Lt[q, a R + r, e] XR[b, a, q, r, g]``
    (float32, C-contiguous: ``XR`` ``(B, A, Q, R, G)``, ``Lt`` ``(Q, A R, E)``, ``Y``
    ``(Q, rows, E, G)``): per row and parameter set, a TT-matrix's left half applied to
    the input already multiplied by every set's right half in one product
    (``zotrain.nn.tt_split.halves_forward``).  ``chunk`` rows per work item."""
    check_array("XR", XR, np.float32, 5, contiguous=True)
    check_array("Lt", Lt, np.float32, 3, contiguous=True)
    check_array("Y", Y, np.float32, 4, contiguous=True)
    (B, A, Q, R, G), E = XR.shape, Lt.shape[2]
    if Lt.shape[:2] != (Q, A * R) or Y.shape[0] != Q or Y.shape[2:] != (E, G):
        raise ValueError(f"XR {XR.shape}, Lt {Lt.shape} and Y {Y.shape} do not fit: expected "
                         f"Lt ({Q}, {A * R}, E) and Y ({Q}, rows, E, {G})")
    _check_rows(row0, Y.shape[1], B, chunk)
    prepare_threads()
    return _tt_left_apply(XR, Lt, int(chunk), int(row0), Y)


def tt_left_head(XRt, Lt, bias, act, Wt, head_bias, out, row0=0, chunk=128):
    """``out[q, row0 + b] = act(Z[q, b] + bias[q]) @ Wt[q].T + head_bias[q]`` with
    ``Z[q, b, e G + g] = sum_{a, r} Lt[q, a R + r, e] XRt[q, r, g, a, b]``: a TT layer's
    left half, bias and activation fused with the dense head after it, the input already
    multiplied by the right half (rows last: ``XRt`` ``(Q, R, G, A, n)``).  ``bias``
    ``(Q, E G)``, ``Wt`` ``(Q, n_out, E G)`` (the head's weight transposed), ``head_bias``
    ``(Q, n_out)``, ``out`` ``(Q, rows, n_out)``, all float32 and C-contiguous; ``act`` a
    jitted scalar activation (``elementwise.SIN`` runs as ``sin32``)."""
    for name, a, nd in (("XRt", XRt, 5), ("Lt", Lt, 3), ("bias", bias, 2), ("Wt", Wt, 3),
                        ("head_bias", head_bias, 2), ("out", out, 3)):
        check_array(name, a, np.float32, nd, contiguous=True)
    (Q, R, G, A, n), E = XRt.shape, Lt.shape[2]
    n_out = Wt.shape[1]
    if Lt.shape[:2] != (Q, A * R) or bias.shape != (Q, E * G) or Wt.shape != (Q, n_out, E * G) \
            or head_bias.shape != (Q, n_out) or out.shape[0] != Q or out.shape[2] != n_out:
        raise ValueError(f"XRt {XRt.shape}, Lt {Lt.shape}, bias {bias.shape}, Wt {Wt.shape}, "
                         f"head_bias {head_bias.shape} and out {out.shape} do not fit: expected "
                         f"Lt ({Q}, {A * R}, E), bias ({Q}, E*{G}), Wt ({Q}, n_out, E*{G}), "
                         f"head_bias ({Q}, n_out), out ({Q}, rows, n_out)")
    _check_rows(row0, out.shape[1], n, chunk)
    prepare_threads()
    return _tt_left_head(XRt, Lt, bias, act, act is SIN, Wt, head_bias, int(chunk), int(row0),
                         out)


def _check_rows(row0, rows, B, chunk):
    if isinstance(row0, bool) or not isinstance(row0, (int, np.integer)) or \
            not 0 <= row0 <= rows - B:
        raise ValueError(f"row0 must be an integer in [0, {rows - B}] (the output holds "
                         f"{rows} rows, XR {B}), got {row0!r}")
    if isinstance(chunk, bool) or not isinstance(chunk, (int, np.integer)) or chunk < 1:
        raise ValueError(f"chunk must be an integer >= 1, got {chunk!r}")


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
