"""Per-parameter-set losses of a final dense layer, fused with its forward.

``dense_loss_many`` never materialises the ``(Q, B, out)`` outputs: each work
item (parameter set, batch chunk) computes its logits for ``chunk`` rows in a
small buffer, reduces them to a partial loss sum, and the partial sums are
added in a fixed order, so results do not depend on the thread count.
"""

import numpy as np
from numba import njit, prange

from .config import PARALLEL, check_array, prepare_threads

XENT = 0
MSE = 1


@njit(**PARALLEL)
def _dense_loss_many(H, P, w_off, b_off, out_features, kind, labels, targets, chunk):
    """Mean loss over the batch of ``H[q] @ W(P[q]) + b(P[q])`` for every q.

    ``H`` is ``(QH, B, F)`` (QH = 1 or Q); the weight is ``(F, out)`` row-major
    at ``w_off`` in each row of ``P``; ``b_off < 0`` means no bias.  ``kind``
    is ``XENT`` (softmax cross-entropy against int ``labels``) or ``MSE``
    (mean over outputs of squared error against ``targets`` ``(B, out)``).
    """
    Q = P.shape[0]
    QH, B, F = H.shape
    nchunks = (B + chunk - 1) // chunk
    partial = np.zeros((Q, nchunks), dtype=np.float64)
    for item in prange(Q * nchunks):
        q = item // nchunks
        c = item % nchunks
        b0 = c * chunk
        nb = min(chunk, B - b0)
        qh = q if QH > 1 else 0
        Ht = np.empty((F, nb), dtype=np.float32)
        for b in range(nb):
            for f in range(F):
                Ht[f, b] = H[qh, b0 + b, f]
        Z = np.empty((out_features, nb), dtype=np.float32)
        for j in range(out_features):
            z = Z[j]
            z[:] = P[q, b_off + j] if b_off >= 0 else 0.0
            for f in range(F):
                w = P[q, w_off + f * out_features + j]
                h = Ht[f]
                for b in range(nb):
                    z[b] += w * h[b]
        acc = 0.0
        for b in range(nb):
            if kind == XENT:
                m = Z[0, b]
                for j in range(1, out_features):
                    m = max(m, Z[j, b])
                s = 0.0
                for j in range(out_features):
                    s += np.exp(np.float64(Z[j, b] - m))
                acc += np.log(s) + m - Z[labels[b0 + b], b]
            else:
                e = 0.0
                for j in range(out_features):
                    diff = np.float64(Z[j, b]) - targets[b0 + b, j]
                    e += diff * diff
                acc += e / out_features
        partial[q, c] = acc
    losses = np.empty(Q, dtype=np.float64)
    for q in range(Q):
        s = 0.0
        for c in range(nchunks):
            s += partial[q, c]
        losses[q] = s / B
    return losses


_UNUSED_LABELS, _UNUSED_TARGETS = np.zeros(1, np.int64), np.zeros((1, 1))


def dense_loss_many(H, P, w_off, b_off, out_features, kind, labels, targets, chunk):
    """Checked entry of ``_dense_loss_many``: mean loss over the batch of
    ``H[q] @ W(P[q]) + b(P[q])`` for every q (``H`` ``(1 or Q, B, F)`` float32, ``P``
    ``(Q, n)`` float32, ``labels`` int64 ``(B,)`` for XENT, ``targets`` float64
    ``(B, out)`` for MSE; the other may be None)."""
    check_array("H", H, np.float32, 3)
    check_array("P", P, np.float32, 2)
    QH, B, F = H.shape
    if QH not in (1, P.shape[0]):
        raise ValueError(f"H holds {QH} inputs for {P.shape[0]} parameter sets")
    if w_off < 0 or w_off + F * out_features > P.shape[1] or b_off + out_features > P.shape[1]:
        raise ValueError(f"P rows of {P.shape[1]} values hold no ({F}, {out_features}) layer at "
                         f"{w_off} (bias at {b_off})")
    if kind == XENT:
        check_array("labels", labels, np.int64, 1)
        if labels.shape[0] != B or (B and (labels.min() < 0 or labels.max() >= out_features)):
            raise ValueError(f"labels must be {B} classes in [0, {out_features})")
        targets = _UNUSED_TARGETS if targets is None else targets
    else:
        check_array("targets", targets, np.float64, 2)
        if targets.shape != (B, out_features):
            raise ValueError(f"targets must be ({B}, {out_features}), got {targets.shape}")
        labels = _UNUSED_LABELS if labels is None else labels
    prepare_threads()
    return _dense_loss_many(H, P, w_off, b_off, out_features, kind, labels, targets, chunk)
