"""Levenberg-Marquardt over the last few batches (``--window``, with ``--body gauss-newton``).

One batch gives a step on the last hidden layer and the head a few hundred rows
for several thousand parameters (256 points and 7,553 parameters on the 100-D
problems): the step fits that batch's noise, and the check points then take
only the most damped candidate.  The window solves a batch's rows together
with those of the ``size - 1`` batches before it: a fit to ``size`` times as
many points for the cost of one new Jacobian.  Older Jacobians are kept as
they were computed; older residuals are carried to the current parameters by
the linear model, ``r_i += J_i delta``, after every change of the columns the
Jacobian covers (the step and the head solve).  Changes that RGE makes to the layers below (``--depth``
above 1) are not carried.

The checkpoint holds, per kept batch, its iteration, the parameters its
Jacobian was taken at and its carried residuals; a resumed run recomputes the
Jacobians from them (the same forward passes, the same numbers), so it continues
bit-identically without storing ``size`` Jacobians (19 MB each at 100-D).
"""

import math
from dataclasses import dataclass

import numpy as np


@dataclass
class _Batch:
    it: int
    params: np.ndarray  # float32, the parameters the Jacobian was taken at
    r: np.ndarray  # float64 residuals, carried to the current parameters
    J: np.ndarray  # float64 Jacobian in the body columns


class JacobianWindow:
    def __init__(self, size, columns):
        self.size, self.columns, self.batches = size, columns, []

    def rows(self, r, J):
        """``(r, J)`` of a new batch's rows and every kept batch's, weighted alike (``|r|^2``
        is their mean loss)."""
        scale = 1.0 / math.sqrt(len(self.batches) + 1)
        return (scale * np.concatenate([b.r for b in self.batches] + [r]),
                scale * np.concatenate([b.J for b in self.batches] + [J]))

    def add(self, it, params, r, J, moved):
        """Keep a batch's rows, computed at ``params`` (the ``size - 1`` newest batches are
        kept for the next step), and carry every kept residual to ``moved``: ``params``
        after this iteration's step and head solve."""
        if self.size == 1:
            return
        self.batches = (self.batches + [_Batch(it, np.array(params, np.float32), r, J)])
        self.batches = self.batches[-(self.size - 1):]
        delta = (np.asarray(moved, np.float64) - np.asarray(params, np.float64))[self.columns]
        for b in self.batches:
            b.r = b.r + b.J @ delta

    def state(self):
        return [{"it": b.it, "params": b.params, "r": b.r} for b in self.batches]

    def load(self, state, jacobian):
        """Restore from ``state()``; ``jacobian(it, params)`` recomputes a batch's ``J``."""
        self.batches = [_Batch(int(s["it"]), np.asarray(s["params"], np.float32),
                               np.asarray(s["r"], np.float64), None) for s in state]
        for b in self.batches:
            b.J = jacobian(b.it, b.params)
