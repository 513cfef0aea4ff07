"""An objective whose queries run on a ``QueryPool``: the ``zotrain.base.Objective``
contract, so every registered estimator uses it unchanged.

The driver keeps its own objective for what is evaluated once (the clean loss,
the exact head gradient); the queries of ``__call__``, ``segment_losses`` and
``segment_losses_explicit`` are split into contiguous ranges, one per actor, and
their losses put back in order.  ``segment_losses`` sends the parameters and the
query counters only (each actor regenerates its directions from (seed, step,
query)); ``__call__`` sends parameter rows.  Each query's loss is computed on
an actor exactly as it would be here (per-set evaluation does not depend on
which sets share a call: tested), so a step's estimate is bit-identical to the
single-process one.
"""

import numpy as np

REPLICA = "zotrain:replica"  # in place of the parameters: the actor's replica (replay.py)


def _ranges(n, parts):
    """``parts`` contiguous ranges covering ``range(n)`` (none empty)."""
    parts = max(1, min(parts, n))
    edges = np.linspace(0, n, parts + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:])]


class RemoteObjective:
    """``local`` (the driver's objective for this step) with its queries run on ``pool``
    (whose actors built the same objective from the step's arguments).  ``record`` (a
    list) receives ``(method, losses)`` of every query call; with ``replica`` the
    parameters are not sent: the actors hold them (``zotrain.distributed.replay``)."""

    def __init__(self, local, pool, account=None, record=None, replica=False):
        self.local, self.pool, self.account = local, pool, account
        self.record, self.replica = record, replica

    def _params(self, params):
        return REPLICA if self.replica else params

    def __getattr__(self, name):  # layout, n_params, loss, head_gradient, model, ...
        return getattr(self.local, name)

    @property
    def forward_passes(self):
        return self.local.forward_passes

    @property
    def flops(self):
        return getattr(self.local, "flops", None)

    def _gather(self, method, params, chunks, positions, n):
        out = None
        for pos, (losses, passes, flops, counts) in zip(
                positions, self.pool.map(method, params, chunks)):
            if out is None:
                out = np.empty(n, losses.dtype)
            out[pos] = losses
            self.local.forward_passes += passes
            if flops is not None and getattr(self.local, "flops", None) is not None:
                self.local.flops += flops
            if counts and self.account is not None:
                for k, v in counts.items():
                    setattr(self.account, k, getattr(self.account, k) + v)
        if self.record is not None:
            self.record.append((method, None if out is None else out.copy()))
        return out

    def __call__(self, P):
        P = np.asarray(P)
        ranges = _ranges(P.shape[0], self.pool.n)
        return self._gather("__call__", None, [(P[a:b],) for a, b in ranges],
                            [slice(a, b) for a, b in ranges], P.shape[0])

    def segment_losses(self, params, name, seed, step, queries, scales, dist):
        queries = np.asarray(queries)
        scales = np.asarray(scales)
        params = self._params(params)
        unique = np.unique(queries)
        chunks, positions = [], []
        for a, b in _ranges(len(unique), self.pool.n):
            pos = np.flatnonzero((queries >= unique[a]) & (queries <= unique[b - 1]))
            chunks.append((params, name, seed, step, queries[pos], scales[pos], dist))
            positions.append(pos)
        return self._gather("segment_losses", params, chunks, positions, len(queries))

    def segment_losses_explicit(self, params, name, U, which, scales):
        which = np.asarray(which)
        scales = np.asarray(scales)
        params = self._params(params)
        chunks, positions = [], []
        for a, b in _ranges(U.shape[0], self.pool.n):
            pos = np.flatnonzero((which >= a) & (which < b))
            if len(pos):
                chunks.append((params, name, U[a:b], which[pos] - a, scales[pos]))
                positions.append(pos)
        return self._gather("segment_losses_explicit", params, chunks, positions, len(which))
