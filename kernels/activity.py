"""Coordinate-wise activity perturbation with incremental forward evaluation.

A block's pre-activations ``Z`` ``(B, F)`` feed ``act`` and then a tail whose
per-example softmax cross-entropy is the block's local loss.  Perturbing one
unit ``j`` of one example by ``+-mu`` changes that example's loss only, and
only through column ``j``: the kernels below evaluate every perturbed loss
from the clean forward by updating just what the perturbation changes (the
head logits; with a link, the next block's pre-activations and its head's
logits).  Each (unit, sign) is one forward evaluation of the perturbed
network on the whole batch; the central differences give

    D[b, j] = (L_b(Z + mu e_bj) - L_b(Z - mu e_bj)) / (2 mu) * scale,

exact up to O(mu^2).  Arithmetic is in float64; each example is one work
item, so results do not depend on the thread count.
"""

import math

import numpy as np
from numba import njit, prange

from .config import PARALLEL_FN, SERIAL, SERIAL_FN, check_array, prepare_threads


@njit(**SERIAL_FN)
def _unit_changes(z, act, mu):
    """How a unit's activation changes when its pre-activation ``z`` moves by +-mu."""
    h0 = act(z)
    return act(z + mu) - h0, act(z - mu) - h0


@njit(**SERIAL)
def _xent(logits, y):
    m = logits.max()
    s = 0.0
    for c in range(logits.shape[0]):
        s += math.exp(logits[c] - m)
    return math.log(s) + m - logits[y]


@njit(**SERIAL)
def _head_logits(h, W, bias):
    C = W.shape[1]
    out = np.empty(C, dtype=np.float64)
    for c in range(C):
        out[c] = bias[c]
    for f in range(h.shape[0]):
        v = h[f]
        if v != 0.0:
            for c in range(C):
                out[c] += v * W[f, c]
    return out


@njit(**SERIAL)
def _clean_head(h, W, bias):
    """The head's clean logits for activations ``h`` and a work buffer of their size."""
    logits = _head_logits(h, W, bias)
    return logits, np.empty(logits.shape[0], dtype=np.float64)


@njit(**SERIAL_FN)
def _central_row(D, b, Z, act, mu, scale, moved_loss, ctx):
    """``D[b, j]`` for every unit j of example b: the central difference of
    ``moved_loss(delta, j, ctx)``, the example's loss with unit j's activation moved by
    ``delta`` (skipped where neither move changes the activation)."""
    for j in range(Z.shape[1]):
        dp, dm = _unit_changes(np.float64(Z[b, j]), act, mu)
        if dp == 0.0 and dm == 0.0:
            continue
        D[b, j] = (moved_loss(dp, j, ctx) - moved_loss(dm, j, ctx)) / (2.0 * mu) * scale


@njit(**SERIAL)
def _head_moved_loss(delta, j, ctx):
    logits, W, work, y = ctx
    for c in range(work.shape[0]):
        work[c] = logits[c] + delta * W[j, c]
    return _xent(work, y)


@njit(**PARALLEL_FN)
def _activity_cge_head(Z, act, W, bias, labels, mu, scale, moved_loss):
    """Tail = ``act`` then a linear softmax head ``(W, bias)``.

    Returns ``(D, losses)``: ``D`` as in the module doc and the clean
    per-example losses ``(B,)``."""
    B, F = Z.shape
    D = np.zeros((B, F), dtype=np.float32)
    losses = np.empty(B, dtype=np.float64)
    for b in prange(B):
        h = np.empty(F, dtype=np.float64)
        for f in range(F):
            h[f] = act(np.float64(Z[b, f]))
        logits, work = _clean_head(h, W, bias)
        losses[b] = _xent(logits, labels[b])
        _central_row(D, b, Z, act, mu, scale, moved_loss, (logits, W, work, labels[b]))
    return D, losses


@njit(**SERIAL)
def _dot8(a, b):
    """Dot product with eight interleaved partial sums (vectorisable without
    reassociation; a fixed order, so the result does not depend on threads)."""
    lanes = np.zeros(8, dtype=np.float64)
    n = a.shape[0]
    n8 = n - n % 8
    for f0 in range(0, n8, 8):
        for lane in range(8):
            lanes[lane] += a[f0 + lane] * b[f0 + lane]
    s = 0.0
    for lane in range(8):
        s += lanes[lane]
    for f in range(n8, n):
        s += a[f] * b[f]
    return s


@njit(**SERIAL_FN)
def _linked_moved_loss(delta, j, ctx):
    """Loss after adding ``delta * Wn[j]`` to the next block's pre-activations."""
    Wn, zn, hn, act_n, WhT, logits0, dh, work, y = ctx
    for f in range(zn.shape[0]):
        dh[f] = act_n(zn[f] + delta * np.float64(Wn[j, f])) - hn[f]
    for c in range(work.shape[0]):
        work[c] = logits0[c] + _dot8(dh, WhT[c])
    return _xent(work, y)


@njit(**PARALLEL_FN)
def _activity_cge_link(Z, act, Wn, Zn, act_n, Wh, bh, labels, mu, scale, moved_loss):
    """Tail = ``act``, the next block's linear map ``Wn`` ``(F, F')`` (its clean
    pre-activations are ``Zn`` ``(B, F')``, bias included), ``act_n``, and the
    next block's softmax head ``(Wh, bh)``: the linked loss L_{k+1}.

    Returns ``D`` as in the module doc, for L_{k+1} alone."""
    B, F = Z.shape
    Fn = Zn.shape[1]
    WhT = np.ascontiguousarray(Wh.T).astype(np.float64)
    D = np.zeros((B, F), dtype=np.float32)
    for b in prange(B):
        zn = np.empty(Fn, dtype=np.float64)
        hn = np.empty(Fn, dtype=np.float64)
        dh = np.empty(Fn, dtype=np.float64)
        for f in range(Fn):
            zn[f] = Zn[b, f]
            hn[f] = act_n(zn[f])
        logits0, work = _clean_head(hn, Wh, bh)
        _central_row(D, b, Z, act, mu, scale, moved_loss,
                     (Wn, zn, hn, act_n, WhT, logits0, dh, work, labels[b]))
    return D


@njit(**SERIAL)
def _relu_moved_loss(delta, j, ctx):
    """Linear in ``delta`` through ``Vb[j]``, corrected exactly on the units ``near`` whose
    ReLU may switch."""
    Vb, Wn, zn, hn, near, Wh, logits0, work, y = ctx
    for c in range(work.shape[0]):
        work[c] = logits0[c] + delta * Vb[j, c]
    for t in range(near.shape[0]):
        f = near[t]
        zf = np.float64(zn[f])
        moved = zf + delta * Wn[j, f]
        true = (0.0 if moved <= 0.0 else moved) - hn[f]  # NaN stays NaN
        linear = delta * Wn[j, f] if zf > 0.0 else 0.0
        if true != linear:
            for c in range(work.shape[0]):
                work[c] += (true - linear) * Wh[f, c]
    return _xent(work, y)


@njit(**PARALLEL_FN)
def _activity_cge_link_relu(Z, act, Wn, Zn, V, Wh, bh, labels, mu, scale, moved_loss):
    """``activity_cge_link`` for a next block with ReLU, in O(B F C) after one product.

    ``V[b, j] = sum_f [Zn[b, f] > 0] Wn[j, f] Wh[f]`` ``(B, F, C)`` is the change of
    example b's logits per unit change of ``h_j`` while no ReLU of the next
    block switches.  A change ``delta`` of ``h_j`` (``|delta| <= mu``) moves the
    next pre-activation f by ``delta Wn[j, f]``, which can switch its ReLU only if
    ``|Zn[b, f]| <= mu max_j |Wn[j, f]|``; those few units are evaluated exactly.
    The perturbed losses are the same as a full forward of the next block."""
    B, F = Z.shape
    Fn = Zn.shape[1]
    wmax = np.zeros(Fn, dtype=np.float64)
    for j in range(F):
        for f in range(Fn):
            wmax[f] = max(wmax[f], abs(np.float64(Wn[j, f])))
    D = np.zeros((B, F), dtype=np.float32)
    for b in prange(B):
        hn = np.empty(Fn, dtype=np.float64)
        near = np.empty(Fn, dtype=np.int64)
        n_near = 0
        for f in range(Fn):
            z = np.float64(Zn[b, f])
            hn[f] = 0.0 if z <= 0.0 else z
            if abs(z) <= mu * wmax[f] * 1.000001:
                near[n_near] = f
                n_near += 1
        logits0, work = _clean_head(hn, Wh, bh)
        _central_row(D, b, Z, act, mu, scale, moved_loss,
                     (V[b], Wn, Zn[b], hn, near[:n_near], Wh, logits0, work, labels[b]))
    return D


def _check_common(Z, labels, W, bias):
    check_array("Z", Z, np.float32, 2)
    check_array("labels", labels, np.int64, 1)
    check_array("head weight", W, np.float32, 2)
    check_array("head bias", bias, np.float64, 1)
    if labels.shape[0] != Z.shape[0]:
        raise ValueError(f"labels hold {labels.shape[0]} examples, Z {Z.shape[0]}")
    if bias.shape[0] != W.shape[1]:
        raise ValueError(f"head bias has {bias.shape[0]} entries, head weight {W.shape}")
    if labels.size and (labels.min() < 0 or labels.max() >= W.shape[1]):
        raise ValueError(f"labels must lie in [0, {W.shape[1]})")
    prepare_threads()


def _check_next(Z, Wn, Zn, W):
    check_array("Wn", Wn, np.float32, 2)
    check_array("Zn", Zn, np.float32, 2)
    if Wn.shape[0] != Z.shape[1] or Zn.shape != (Z.shape[0], Wn.shape[1]) or \
            W.shape[0] != Wn.shape[1]:
        raise ValueError(f"shapes do not chain: Z {Z.shape}, Wn {Wn.shape}, Zn {Zn.shape}, "
                         f"head {W.shape}")


def activity_cge_head(Z, act, W, bias, labels, mu, scale):
    """Tail = ``act`` then a linear softmax head ``(W, bias)``: ``Z`` ``(B, F)``
    float32, ``W`` ``(F, C)`` float32, ``bias`` ``(C,)`` float64, ``labels`` int64.
    Returns ``(D, losses)``: ``D`` as in the module doc and the clean per-example
    losses ``(B,)``."""
    _check_common(Z, labels, W, bias)
    if W.shape[0] != Z.shape[1]:
        raise ValueError(f"head weight {W.shape} does not take Z's {Z.shape[1]} features")
    return _activity_cge_head(Z, act, W, bias, labels, mu, scale, _head_moved_loss)


def activity_cge_link(Z, act, Wn, Zn, act_n, Wh, bh, labels, mu, scale):
    """Tail = ``act``, the next block's linear map ``Wn`` ``(F, F')`` (its clean
    pre-activations ``Zn`` ``(B, F')``, bias included), ``act_n``, and the next
    block's softmax head ``(Wh, bh)``: the linked loss L_{k+1}.  Returns ``D``."""
    _check_common(Z, labels, Wh, bh)
    _check_next(Z, Wn, Zn, Wh)
    return _activity_cge_link(Z, act, Wn, Zn, act_n, Wh, bh, labels, mu, scale, _linked_moved_loss)


def activity_cge_link_relu(Z, act, Wn, Zn, V, Wh, bh, labels, mu, scale):
    """``activity_cge_link`` for a next block with ReLU, in O(B F C) after one product
    (``V`` ``(B, F, C)``, see ``_activity_cge_link_relu``)."""
    _check_common(Z, labels, Wh, bh)
    _check_next(Z, Wn, Zn, Wh)
    check_array("V", V, np.float32, 3)
    if V.shape != (Z.shape[0], Z.shape[1], Wh.shape[1]):
        raise ValueError(f"V must be (B, F, C) = {(Z.shape[0], Z.shape[1], Wh.shape[1])}, "
                         f"got {V.shape}")
    return _activity_cge_link_relu(Z, act, Wn, Zn, V, Wh, bh, labels, mu, scale, _relu_moved_loss)
