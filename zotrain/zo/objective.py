"""A model's loss on one minibatch, as a function of many parameter sets.

This is what estimators query.  Besides the plain ``objective(P) -> (Q,)``
it offers the fast path of **feature reuse**: a query that perturbs one
segment of a linear layer (one TT core, one dense weight, or a bias) changes
that layer's pre-activation linearly,

    Z(theta + s u) = Z(theta) + s J u,

so the layers before it run once for the clean parameters, ``J u`` costs one
layer forward (shared by the +s and -s queries of a direction), and only the
layers after it run per query.  Every query still counts as one forward pass
of the perturbed model.
"""

import numpy as np

from zotrain.kernels import elementwise
from zotrain.kernels import random as krandom
from zotrain.kernels.losses import XENT
from zotrain.nn import losses
from zotrain.nn.layers import Dense
from zotrain.nn.sequential import LOSSES, as_input

#: parameter sets evaluated together (queries are streamed in groups this size, so a
#: step's working set stays near one forward's: the antithetic pair of a direction
#: shares its ``J u``, and two sets keep both of this machine's cores busy)
STREAM = 4

DIST = {"gaussian": krandom.GAUSSIAN, "rademacher": krandom.RADEMACHER,
        "sphere": krandom.SPHERE}


class OfModel:
    """``n_params`` and ``layout`` of an objective over ``self.model``."""

    @property
    def n_params(self):
        return self.model.n_params

    @property
    def layout(self):
        return self.model.layout


class ModelObjective(OfModel):
    """``model``'s ``loss`` on the minibatch ``(X, target)``; counts forward passes.

    ``tail``, when given, replaces the model's own loss: a function from the
    model's outputs ``(Q, B, F)`` to losses ``(Q,)`` (the block-local losses of
    ``zotrain.zo.evaluator``); ``target`` is then passed to it unchanged.
    """

    def __init__(self, model, X, target, loss="xent", tail=None):
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {sorted(LOSSES)}, got {loss!r}")
        self.model = model
        self.X = as_input(X, model.in_features)
        self.kind = LOSSES[loss]
        self.tail = tail
        if tail is None:
            self.labels, self.targets = model.check_target(target, self.X.shape[0], loss)
        self.forward_passes = 0
        self.flops = 0.0  # per example, of the layers actually run (``Sequential.flops``)
        self._base_params = None
        self._base = None

    def __call__(self, P):
        """Losses ``(Q,)`` of the parameter sets ``P`` ``(Q, n_params)``."""
        P = self.model.check_many(P)
        self.forward_passes += P.shape[0]
        self.flops += P.shape[0] * self.model.flops()
        return np.concatenate([self._rest(P[q:q + STREAM], self.X[None], 0)
                               for q in range(0, P.shape[0], STREAM)])

    def _rest(self, P, H, start):
        """Losses of layers [start, end) from ``H``, then the loss or the tail."""
        if self.tail is None:
            return self.model.loss_from(P, H, start, self.labels, self.targets, self.kind)
        return self.tail(self.model.forward_from(P, H, start, len(self.model.layers),
                                                 fresh_last=False))

    # -- the clean forward, cached ---------------------------------------------
    def base(self, params):
        """Inputs and pre-activations of every linear layer for ``params``, and the loss.

        Cached until called with different parameters; costs one forward pass.
        """
        params = np.ascontiguousarray(params, dtype=np.float32)
        if self._base is not None and np.array_equal(params, self._base_params):
            return self._base
        model = self.model
        cache, H = model.linear_cache(params, self.X[None])
        inputs = {i: c[0] for i, c in cache.items()}
        pre = {i: c[1] for i, c in cache.items()}
        loss = float(self._rest(params[None], H, len(model.layers))[0])
        self.forward_passes += 1
        self.flops += model.flops()
        self._base_params, self._base = params.copy(), (inputs, pre, loss)
        return self._base

    def prime(self, params, inputs, pre, H):
        """Take the clean forward of ``params`` from a caller that already ran it: each
        linear layer's input and pre-activation ``(1, B, F)``, and the output ``H``."""
        params = np.ascontiguousarray(params, dtype=np.float32)
        loss = float(self._rest(params[None], H, len(self.model.layers))[0])
        self._base_params, self._base = params.copy(), (inputs, pre, loss)

    def loss(self, params):
        """The loss at ``params`` (one forward pass unless cached)."""
        return self.base(params)[2]

    # -- feature reuse -----------------------------------------------------------
    def segment_losses(self, params, name, seed, step, queries, scales, dist):
        """Losses of ``params + scales[i] * u_i`` perturbed on segment ``name`` only.

        ``u_i`` is the counter-based direction of query ``queries[i]``
        (``zotrain.kernels.random``), generated a group at a time; queries that share an
        index share ``J u``.
        """
        unique = np.unique(queries)
        size, dist = self.layout[name].size, DIST[dist] if isinstance(dist, str) else dist
        return self._segment_losses(
            params, name, len(unique),
            lambda a, b: krandom.directions(seed, step, unique[a:b], size, dist),
            np.searchsorted(unique, queries), scales)

    def segment_losses_explicit(self, params, name, U, which, scales):
        """Losses of ``params + scales[i] * U[which[i]]`` on segment ``name``."""
        return self._segment_losses(params, name, U.shape[0], lambda a, b: U[a:b], which, scales)

    def _segment_losses(self, params, name, n_dir, directions, which, scales):
        """Losses of ``params + scales[i] * u[which[i]]``, ``directions(a, b)`` giving the
        rows ``a..b`` of the ``n_dir`` directions ``u``; evaluated ``STREAM`` parameter
        sets at a time (the two signs of a direction share its ``J u``)."""
        model = self.model
        seg = self.layout[name]
        i = seg.layer
        layer = model.layers[i]
        inputs, pre, _ = self.base(params)
        # parameter sets whose layer-i output is exactly J u: the segment set to u,
        # and the part of the layer that does not multiply it zeroed
        base0 = np.array(params, dtype=np.float32, copy=True)
        base0[seg.slice] = 0.0
        offs = model.offsets(i)
        own = model.layout.of_layer(i)
        if seg.local == "bias":  # J u = u: zero the first factor of the product
            base0[own[0].slice] = 0.0
        else:
            for s in own:
                if s.local == "bias":
                    base0[s.slice] = 0.0
        which = np.asarray(which)
        scales = np.asarray(scales, np.float32)
        start = i + (2 if model.fused_activation(i) is not None else 1)
        out, group = np.zeros(0), max(1, STREAM // 2)  # directions per group
        for a in range(0, n_dir, group):
            b = min(a + group, n_dir)
            rows = np.flatnonzero((which >= a) & (which < b))
            if not len(rows):
                continue
            PJ = np.tile(base0, (b - a, 1))
            PJ[:, seg.slice] = directions(a, b)
            J = layer.forward_many(inputs[i], PJ, offs, None)
            Z = pre[i] + scales[rows, None, None] * J[which[rows] - a]
            elementwise.bias_activation_many(Z, PJ[:1], -1, model.activation_scalar(i))
            P_rest = np.tile(np.asarray(params, np.float32), (len(rows), 1))
            losses_ = self._rest(P_rest, Z, start)
            if out.shape != which.shape:
                out = np.empty(len(which), losses_.dtype)
            out[rows] = losses_
        self.forward_passes += len(which)  # each costs its layer (J, per direction) and the rest
        self.flops += n_dir * model.flops(i, i + 1) + len(which) * model.flops(start)
        return out

    # -- exact local gradient of the output layer --------------------------------
    def head_gradient(self, params):
        """Exact gradient of the loss w.r.t. the final Dense layer, from its own
        input and output (softmax or residual): nothing is differentiated
        through the network.  Returns ``(grad, names, loss)``, ``grad`` full-size
        and zero outside the head's segments."""
        model = self.model
        i = len(model.layers) - 1
        if self.tail is not None:
            raise ValueError("head_gradient needs the model's own loss, not a tail")
        if not isinstance(model.layers[i], Dense):
            raise ValueError("an exact head gradient needs a model that ends in a Dense layer, "
                             f"got {model.layers[i]!r}")
        inputs, pre, loss = self.base(params)
        grad, names = exact_head_gradient(model, inputs[i][0], pre[i][0], self.labels,
                                          self.targets, self.kind)
        return grad, names, loss


def exact_head_gradient(model, H, Z, labels, targets, kind):
    """Gradient of the batch-mean loss w.r.t. the final Dense layer ``(W, b)`` of
    ``model`` from its input ``H`` ``(B, F)`` and its output ``Z`` ``(B, C)``:
    ``dL/dZ`` is ``(softmax(Z) - onehot) / B`` (or ``2 (Z - T) / (B C)``), then
    ``dL/dW = H^T dL/dZ``.  Returns ``(grad, names)``, ``grad`` full-size."""
    i = len(model.layers) - 1
    Z = np.asarray(Z, np.float64)  # (B, classes): small; H stays in its own precision
    B = Z.shape[0]
    G = losses.xent_grad(Z, labels) / B if kind == XENT else 2.0 * (Z - targets) / (B * Z.shape[1])
    grad = np.zeros(model.n_params, np.float32)
    segs = model.layout.of_layer(i)
    for s in segs:
        grad[s.slice] = ((H.T @ G.astype(H.dtype)) if s.local == "weight" else
                         G.sum(axis=0)).ravel()
    return grad, [s.name for s in segs]


class WholeModelQueries:
    """Perturbed queries as whole-model evaluations of ``self(P)`` (no feature reuse);
    for objectives that only see a loss-of-many function (and count no FLOPs)."""

    flops = None

    def segment_losses(self, params, name, seed, step, queries, scales, dist):
        seg = self.layout[name]
        P = np.empty((len(queries), self.n_params), np.float32)
        krandom.perturb_into(P, np.asarray(params, np.float32), np.array([seg.offset]),
                             np.array([seg.size]), seed, step, np.asarray(queries, np.int64),
                             np.asarray(scales, np.float64),
                             DIST[dist] if isinstance(dist, str) else dist)
        return self(P)

    def segment_losses_explicit(self, params, name, U, which, scales):
        seg = self.layout[name]
        P = np.tile(np.asarray(params, np.float32), (len(which), 1))
        P[:, seg.slice] += np.asarray(scales, np.float32)[:, None] * U[np.asarray(which)]
        return self(P)


class FunctionObjective(WholeModelQueries):
    """Any loss-of-many function ``fn(P) -> (Q,)`` over a ``Layout``, as an objective."""

    def __init__(self, fn, layout):
        self.fn, self.layout = fn, layout
        self.forward_passes = 0

    @property
    def n_params(self):
        return self.layout.n_params

    def __call__(self, P):
        P = np.asarray(P)
        self.forward_passes += P.shape[0]
        return np.asarray(self.fn(P), np.float64)

    def loss(self, params):
        return float(self(np.asarray(params, np.float32)[None])[0])
