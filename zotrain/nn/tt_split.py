"""A TT-matrix as two halves, multiplied a column slab at a time with BLAS.

Split the cores at ``m``: the left half contracts to ``L`` ``(in_L, out_L, r)``,
the right half to ``R`` ``(r, in_R, out_R)`` (both small: a TT-matrix's halves
hold about the square root of its dense size), and

    W[(a, c), (e, g)] = sum_r L[a, e, r] R[r, c, g],

so the column slab of one left output index ``e`` is ``L[:, e] @ R``, an
``(in, out_R)`` matrix.  The forward ``X @ W`` runs slab group by slab group,
each group no larger than ``budget`` floats, and the core gradients (the
projection of ``X^T D`` onto each core) slab by slab: the FLOPs of the dense
build and product, in BLAS calls, with no array of the dense matrix's size.  The
gradient comes in two steps: ``slab_gradients`` (``dL/dL`` and ``dL/dR``, sums
over rows, so a caller may accumulate them over chunks) and ``project`` (onto
the cores of each half, by ``tt_core_gradients``); ``grouped_gradients`` gives
one gradient per block of rows (per example, when an example is many rows).
"""

import math

import numpy as np

from zotrain.kernels.tt import tt_left_apply, tt_left_head

#: slab-group size floor, in floats (128 KB of float32)
MIN_BUDGET = 1 << 15
#: ``halves_forward``'s rows per pass: as many as keep ``X @ R`` within this many floats
HALVES_FLOATS = 1 << 19
#: ``halves_head``'s (its input transposed and its ``R^T X^T``), larger: each pass
#: alternates BLAS's threads with the kernel's, and BLAS's threads spin for a while
#: after a product (~1 ms lost per pass here)
HEAD_FLOATS = 1 << 22


def left_product(cores):
    """The first cores contracted: ``(in_left, out_left, r)``; cores stacked on leading
    axes ``(..., r, in, out, r')`` give products stacked alike."""
    lead = cores[0].shape[:-4] if cores else ()
    L = np.ones(lead + (1, 1, 1), cores[0].dtype if cores else np.float64)
    for c in cores:
        (a, e, _), (r, i, o, s) = L.shape[-3:], c.shape[-4:]
        L = (L.reshape(lead + (a * e, r)) @ c.reshape(lead + (r, -1))).reshape(
            lead + (a, e, i, o, s))
        L = np.swapaxes(L, -4, -3).reshape(lead + (a * i, e * o, s))
    return L


def right_product(cores):
    """The last cores contracted: ``(r, in_right, out_right)``; stacked like
    ``left_product``."""
    lead = cores[-1].shape[:-4] if cores else ()
    R = np.ones(lead + (1, 1, 1), cores[-1].dtype if cores else np.float64)
    for c in reversed(cores):
        (s, c_, g), (r, i, o, _) = R.shape[-3:], c.shape[-4:]
        R = (c.reshape(lead + (-1, s)) @ R.reshape(lead + (s, -1))).reshape(
            lead + (r, i, o, c_, g))
        R = np.swapaxes(R, -3, -2).reshape(lead + (r, i * c_, o * g))
    return R


def budget_for(n_in, batch):
    """Slab-group floats for ``batch`` rows: no more than the batch's input (or
    ``MIN_BUDGET``)."""
    return max(MIN_BUDGET, batch * n_in)


def split_point(core_shapes, budget):
    """The ``m`` in ``1..d-1`` with the smallest halves among those whose slab
    ``(in, out_R)`` fits ``budget`` (else ``d - 1``, the narrowest slab); 0 for a
    one-core matrix."""
    d = len(core_shapes)
    n_in = math.prod(s[1] for s in core_shapes)
    best, m_best = None, max(0, d - 1)
    for m in range(1, d):
        if n_in * math.prod(s[2] for s in core_shapes[m:]) > budget:
            continue
        left = math.prod(s[1] * s[2] for s in core_shapes[:m])
        right = math.prod(s[1] * s[2] for s in core_shapes[m:])
        size = core_shapes[m][0] * (left + right)
        if best is None or size < best:
            best, m_best = size, m
    return m_best


def halves(cores, budget=None):
    """``(m, L, R)``: the split point and the two halves' products; split for slabs of
    ``budget`` floats (``split_point``), or for ``halves_forward`` when ``budget`` is None.
    Cores stacked on leading axes give stacked halves."""
    shapes = [c.shape[-4:] for c in cores]
    m = forward_split_point(shapes) if budget is None else split_point(shapes, budget)
    L, R = left_product(cores[:m]), right_product(cores[m:])
    if m == 0:
        L = np.broadcast_to(L, R.shape[:-3] + (1, 1, 1))
    return m, L, R


def halves_build_flops(core_shapes, m):
    """FLOPs of ``left_product`` of the first ``m`` cores and ``right_product`` of the rest."""
    flops, (rows, cols) = 0, (1, 1)
    for r0, i, o, r1 in core_shapes[:m]:
        flops += 2 * rows * cols * r0 * i * o * r1
        rows, cols = rows * i, cols * o
    rows, cols = 1, 1
    for r0, i, o, r1 in reversed(core_shapes[m:]):
        flops += 2 * rows * cols * r0 * i * o * r1
        rows, cols = rows * i, cols * o
    return flops


def _halves_row_flops(core_shapes, m):
    """Per row, ``halves_forward``'s FLOPs split at ``m``: ``X @ R``, then the left half."""
    n_in = math.prod(s[1] for s in core_shapes)
    n_out = math.prod(s[2] for s in core_shapes)
    in_left = math.prod(s[1] for s in core_shapes[:m])
    out_right = math.prod(s[2] for s in core_shapes[m:])
    return 2 * core_shapes[m][0] * (n_in * out_right + in_left * n_out)


def forward_split_point(core_shapes):
    """The ``m`` in ``1..d-1`` (0 for one core) with the fewest ``halves_forward`` FLOPs per row."""
    return min(range(1, len(core_shapes)), key=lambda m: _halves_row_flops(core_shapes, m),
               default=0)


def halves_forward_flops(core_shapes, batch):
    """FLOPs of ``halves_forward`` on ``batch`` rows, the halves' products included."""
    m = forward_split_point(core_shapes)
    return batch * _halves_row_flops(core_shapes, m) + halves_build_flops(core_shapes, m)


def _groups(L, R, budget):
    """Slab groups ``(a, b)`` of left output indices, each within ``budget`` floats."""
    n_in, slab = L.shape[0] * R.shape[1], R.shape[1] * R.shape[2]
    g = max(1, budget // (L.shape[0] * slab))
    return [(a, min(L.shape[1], a + g)) for a in range(0, L.shape[1], g)], n_in


def slab_forward(L, R, X, out, budget):
    """``X @ W`` into ``out`` ``(B, out)`` from the halves ``L`` and ``R``: per slab
    group, its columns of ``W`` laid out ``(in, columns)`` and one matrix product (into
    ``out`` itself when the group is all of it)."""
    (a_, e_, r), oR = L.shape, R.shape[2]
    Rm = R.reshape(r, -1).astype(X.dtype, copy=False)
    groups, n_in = _groups(L, R, budget)
    for a, b in groups:
        S = np.matmul(L[:, a:b].transpose(1, 0, 2).astype(X.dtype, copy=False), Rm)
        W = S.reshape(b - a, n_in, oR).transpose(1, 0, 2).reshape(n_in, (b - a) * oR)
        cols = out[:, a * oR:b * oR]
        if cols.flags.c_contiguous:
            np.matmul(X, W, out=cols)
        else:
            cols[...] = X @ W
    return out


def halves_forward(L, R, X, out, scratch=None):
    """``X @ W_q`` into ``out[q]`` for ``Q`` TT-matrices given by their stacked halves
    (``L`` ``(Q, in_L, out_L, r)``, ``R`` ``(Q, r, in_R, out_R)``) and one input ``X``
    ``(B, in)``, never a dense matrix: ``X`` as ``(B in_L, in_R)`` times every set's right
    half in one BLAS product, then each set's left half over ``(in_L, r)`` per row
    (``tt_left_apply``); per row and set ``2 r (in out_R + in_L out)`` FLOPs, rows in
    passes whose ``X @ R`` fits ``HALVES_FLOATS``.  ``out`` ``(Q, B, out)``; float32 only;
    ``scratch`` (a dict) keeps the pass buffer between calls."""
    (Q, a_, e_, r), (_, _, c_, g_) = L.shape, R.shape
    B = X.shape[0]
    if not out.flags.c_contiguous:
        raise ValueError("halves_forward writes into a C-contiguous out")
    Rm = np.ascontiguousarray(R.transpose(2, 0, 1, 3).reshape(c_, Q * r * g_), np.float32)
    rows = max(1, min(B, HALVES_FLOATS // (a_ * Q * r * g_)))
    XR = _pass_buffer(scratch, "XR", (rows * a_, Q * r * g_))
    Y, Lt = out.reshape(Q, B, e_, g_), _left_t(L)
    for b in range(0, B, rows):
        n = min(rows, B - b)
        xr = XR[:n * a_]
        np.matmul(X[b:b + n].reshape(n * a_, c_), Rm, out=xr)
        tt_left_apply(xr.reshape(n, a_, Q, r, g_), Lt, Y, b)
    return out


def halves_head(L, R, X, head, out, scratch=None):
    """``act(X @ W_q + bias_q) @ V_q + c_q`` into ``out[q]`` (``(Q, B, n_out)``), ``head`` =
    ``(bias, act, Vt, c)`` as ``tt_left_head`` takes them: ``halves_forward`` with the
    activation and the dense layer after it in the same pass, the activations never
    stored.  The right half's product is laid out rows last (``R^T`` times ``X^T``, one
    BLAS product for every set) so that the fused pass runs over rows."""
    (Q, a_, e_, r), (_, _, c_, g_) = L.shape, R.shape
    B = X.shape[0]
    Rt = np.ascontiguousarray(R.transpose(0, 1, 3, 2).reshape(Q * r * g_, c_), np.float32)
    rows = max(1, min(B, HEAD_FLOATS // (a_ * (Q * r * g_ + c_))))
    Xt = _pass_buffer(scratch, "Xt", (c_, a_ * rows))
    XR = _pass_buffer(scratch, "XRt", (Q * r * g_, a_ * rows))
    Lt = _left_t(L)
    for b in range(0, B, rows):
        n = min(rows, B - b)
        if n < rows:  # the last pass, shorter
            Xt, XR = np.empty((c_, a_ * n), np.float32), np.empty((Q * r * g_, a_ * n), np.float32)
        Xt.reshape(c_, a_, n)[...] = X[b:b + n].reshape(n, a_, c_).transpose(2, 1, 0)
        np.matmul(Rt, Xt, out=XR)
        tt_left_head(XR.reshape(Q, r, g_, a_, n), Lt, *head, out, b)
    return out


def _left_t(L):
    """The stacked left halves as the left-half kernels take them: ``(Q, in_L r, out_L)``."""
    Q, a_, e_, r = L.shape
    return np.ascontiguousarray(L.transpose(0, 1, 3, 2).reshape(Q, a_ * r, e_), np.float32)


def _pass_buffer(scratch, key, shape):
    """A float32 pass buffer of ``shape``, kept in ``scratch`` (a dict) when given."""
    buf = scratch.get(key) if scratch is not None else None
    if buf is None or buf.shape != shape:
        buf = np.empty(shape, np.float32)
        if scratch is not None:
            scratch[key] = buf
    return buf


def slab_gradients(L, R, X, D):
    """``(GL, GR)`` in ``X``'s precision: the gradients of ``sum_b D_b . (X_b W)`` with
    respect to the halves ``L`` and ``R`` (``X`` ``(B, in)``, ``D`` ``(B, out)``); sums
    over rows.  One slab of ``X^T D`` at a time, each an ``(in, out_R)`` product of
    strided views; besides ``GR`` (the right half's size) it holds one slab and one
    product of ``GR``'s size."""
    (a_, e_, r), oR = L.shape, R.shape[2]
    Rm = R.reshape(r, -1).astype(X.dtype, copy=False)
    Lx = L.astype(X.dtype, copy=False)
    GL = np.empty(L.shape, X.dtype)
    GR = np.zeros(Rm.shape, X.dtype)
    part = np.empty_like(GR)
    for e in range(e_):
        M = (X.T @ D[:, e * oR:(e + 1) * oR]).reshape(a_, -1)  # (in_L, in_R out_R)
        GL[:, e] = M @ Rm.T
        GR += np.matmul(Lx[:, e].T, M, out=part)
    return GL, GR.reshape(R.shape)


def grouped_gradients(L, R, X, D, groups):
    """``(GL, GR)`` ``(groups, *L.shape)`` and ``(groups, *R.shape)``: ``slab_gradients`` of
    each of ``groups`` equal consecutive blocks of the rows of ``X`` ``(rows, in)`` and
    ``D`` ``(rows, out)`` (a per-example gradient, an example being a block), in ``X``'s
    precision.  Four matrix products over all rows at once, through ``X`` times the right
    half and ``D`` times the left half, never ``X^T D``: per row ``2 r (in out_R + in_L
    out)`` multiply-adds."""
    (a_, e_, r), (_, c_, g_) = L.shape, R.shape
    n = len(X) // groups
    Rx = R.astype(X.dtype, copy=False)
    Lx = L.astype(X.dtype, copy=False)
    X4 = X.reshape(groups, n, a_, c_)
    D4 = D.reshape(groups, n, e_, g_)
    # (X R)[b, m, a, r, g], then with D over (m, g): GL[b, a, e, r]
    XR = (X4.reshape(-1, c_) @ Rx.transpose(1, 0, 2).reshape(c_, r * g_)).reshape(
        groups, n, a_ * r, g_)
    GL = np.matmul(XR.transpose(0, 2, 1, 3).reshape(groups, a_ * r, n * g_),
                   D4.transpose(0, 1, 3, 2).reshape(groups, n * g_, e_))
    GL = GL.reshape(groups, a_, r, e_).transpose(0, 1, 3, 2)
    # (L D)[b, m, a, r, g], then with X over (m, a): GR[b, r, c, g]
    LD = np.matmul(Lx.transpose(0, 2, 1).reshape(a_ * r, e_), D4.reshape(-1, e_, g_))
    GR = np.matmul(X4.transpose(0, 3, 1, 2).reshape(groups, c_, n * a_),
                   LD.reshape(groups, n * a_, r * g_))
    return GL, GR.reshape(groups, c_, r, g_).transpose(0, 2, 1, 3)


def project(cores, m, GL, GR):
    """Core gradients from the halves' gradients: each half is a TT-matrix whose open
    rank is folded into its outer mode (the left half's last output mode, the right
    half's first input mode), so ``tt_core_gradients`` projects it like any other.
    ``GL`` and ``GR`` may carry the same leading axes (``grouped_gradients``); the core
    gradients then carry them too."""
    lead = GR.shape[:-3]
    grads = []
    if m:
        left = [*cores[:m - 1], _fold_right_rank(cores[m - 1])]
        g = tt_core_gradients(left, GL.reshape(lead + (GL.shape[-3], -1)))
        grads += g[:-1] + [g[-1].reshape(lead + cores[m - 1].shape)]
    right = [_fold_left_rank(cores[m]), *cores[m + 1:]]
    g = tt_core_gradients(right, GR.reshape(lead + (-1, GR.shape[-1])))
    return grads + [g[0].reshape(lead + cores[m].shape)] + g[1:]


def _fold_right_rank(core):
    r, i, o, s = core.shape
    return core.reshape(r, i, o * s, 1)


def _fold_left_rank(core):
    r, i, o, s = core.shape
    return core.reshape(1, r * i, o, s)


def forward(cores, X, budget=None):
    """``X @ W(cores)`` for ``X`` ``(B, in)``."""
    budget = budget or budget_for(X.shape[1], X.shape[0])
    _, L, R = halves(cores, budget)
    return slab_forward(L, R, X, np.empty((X.shape[0], L.shape[1] * R.shape[2]), X.dtype),
                        budget)


def core_gradients(cores, X, D, budget=None):
    """The projection of ``X^T D`` onto every core, from ``X`` and ``D`` directly."""
    budget = budget or budget_for(X.shape[1], X.shape[0])
    m, L, R = halves(cores, budget)
    return project(cores, m, *slab_gradients(L, R, X, D))


def tt_core_gradients(cores, M):
    """``d <M, W(cores)> / d core_k`` for every k, ``M`` of the dense matrix's shape, or a
    stack of such matrices ``(..., in, out)`` (the gradients then stacked alike)."""
    lead = M.shape[:-2]
    n = len(lead)
    grads = []
    for k in range(len(cores)):
        L, R = left_product(cores[:k]), right_product(cores[k + 1:])
        r0, i, o, r1 = cores[k].shape
        a, E, c, G = L.shape[0], L.shape[1], R.shape[1], R.shape[2]
        M6 = M.reshape(lead + (a, i, c, E, o, G))
        # contract (a, E) with L, then (c, G) with R, as two matrix products
        T = np.tensordot(M6, L.astype(M.dtype), axes=([n, n + 3], [0, 1]))  # (..., i, c, o, G, r)
        g = np.tensordot(T, R.astype(M.dtype), axes=([n + 1, n + 3], [1, 2]))  # (..., i, o, r, s)
        grads.append(np.moveaxis(g, n + 2, n))
    return grads
