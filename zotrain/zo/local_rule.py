"""The local rule of activity perturbation: from ``dL/dZ`` to a layer's own parameters.

For a linear layer ``Z = X @ W + b``, given ``D = dL/dZ`` (estimated by
perturbing activities, one estimate per example), the gradient of its
parameters follows from the layer's own input alone: ``dL/dW = X^T D`` and
``dL/db = sum_b D_b``.  For a TT layer ``W`` is linear in each core, so the
update of core ``k`` is ``X^T D`` projected onto it, contracted from ``X`` and
``D`` a column slab at a time (``zotrain.nn.tt_split``), never forming the
dense ``X^T D``: training a TT layer needs no buffer of its dense matrix's
size.  Nothing is differentiated through the network.
"""

import numpy as np

from zotrain.kernels import elementwise
from zotrain.nn import tt_split
from zotrain.nn.layers import Dense, TTLinear


def activation_slope(Z, act, mu, derivative=None):
    """``act'(Z)`` (``Z`` float32 (B, F)): ``derivative(Z)`` when the activation's exact
    slope is given (``Activation.derivative``), else a central difference of step ``mu``
    (float64)."""
    if derivative is not None:
        return derivative(Z)
    zero = np.zeros((1, 1), np.float32)
    Zp, Zm = (elementwise.bias_activation_many((Z + m)[None].astype(np.float32), zero, -1,
                                               act)[0] for m in (mu, -mu))
    return (Zp.astype(np.float64) - Zm) / (2 * mu)


class LayerGradient:
    """The local-rule gradient of linear layer ``i``'s segments, accumulated over chunks
    of rows: ``add(X, D)`` for each chunk (its input ``X`` ``(B, in)`` and ``D = dL/dZ``
    ``(B, out)``), then ``result()`` -> ``{segment name: array}``.  A TT layer keeps only
    the gradients of its two halves (``zotrain.nn.tt_split``), projected onto its cores
    once at the end: no array of the dense matrix's size."""

    def __init__(self, model, i, params):
        self.layer, self.i = model.layers[i], i
        if not isinstance(self.layer, (Dense, TTLinear)):
            raise ValueError(f"layer {i} ({self.layer!r}) has no parameters to update")
        arrays = model.unflatten(params)
        self.weight = (arrays[f"{i}.weight"] if isinstance(self.layer, Dense) else
                       [arrays[f"{i}.core{k}"] for k in range(self.layer.shape.n_modes)])
        self.parts, self.d_sum, self.halves = None, 0.0, None

    def add(self, X, D):
        X = np.asarray(X, np.float32)
        D = np.asarray(D, np.float32)
        self.d_sum = self.d_sum + D.sum(axis=0, dtype=np.float64)
        if isinstance(self.layer, Dense):
            parts = [(X.T @ D).astype(np.float64)]
        else:
            if self.halves is None:
                budget = tt_split.budget_for(X.shape[1], X.shape[0])
                self.halves = tt_split.halves(self.weight, budget)
            parts = tt_split.slab_gradients(*self.halves[1:], X, D)
        self.parts = parts if self.parts is None else [a + b for a, b in zip(self.parts, parts)]
        return self

    def grouped(self, X, D, groups):
        """The gradient of each of ``groups`` equal consecutive blocks of the rows of ``X``
        and ``D`` (``tt_split.grouped_gradients``), apart from the running sum:
        ``{segment name: (groups, *shape)}``."""
        X = np.asarray(X, np.float32)
        D = np.asarray(D, np.float32)
        if groups < 1 or len(X) % groups or len(D) != len(X):
            raise ValueError(f"{len(X)} rows of X and {len(D)} of D do not make {groups} "
                             "equal groups")
        n = len(X) // groups
        out = {f"{self.i}.bias": D.reshape(groups, n, -1).sum(axis=1, dtype=np.float64)} \
            if self.layer.bias else {}
        if isinstance(self.layer, Dense):
            out[f"{self.i}.weight"] = np.matmul(X.reshape(groups, n, -1).transpose(0, 2, 1),
                                                D.reshape(groups, n, -1))
            return out
        if self.halves is None:
            self.halves = tt_split.halves(self.weight, tt_split.budget_for(X.shape[1], n))
        m, L, R = self.halves
        GL, GR = tt_split.grouped_gradients(L, R, X, D, groups)
        for k, g in enumerate(tt_split.project(self.weight, m, GL, GR)):
            out[f"{self.i}.core{k}"] = g
        return out

    def result(self):
        i = self.i
        out = {f"{i}.bias": self.d_sum} if self.layer.bias else {}
        if isinstance(self.layer, Dense):
            out[f"{i}.weight"] = self.parts[0]
        else:
            for k, g in enumerate(tt_split.project(self.weight, self.halves[0], *self.parts)):
                out[f"{i}.core{k}"] = g
        return out


def layer_gradient(model, i, params, X, D):
    """Gradient of the loss w.r.t. linear layer ``i``'s segments, from its input ``X``
    ``(B, in)`` and ``D = dL/dZ`` ``(B, out)``: ``{segment name: array}``."""
    return LayerGradient(model, i, params).add(X, D).result()
