"""Zeroth-order gradient estimators.

An estimator maps a loss-of-many-parameter-sets function (an objective such
as ``zotrain.zo.objective.ModelObjective``) to a gradient estimate over chosen
parameter segments, and reports the forward passes it used::

    est = estimators.rge(queries=20, mu=1e-3)
    out = est.estimate(objective, params, names, seed=0, step=7)
    out.grad, out.loss, out.forward_passes

Directions are pure functions of (seed, step, query index): they are
regenerated, not stored, when the estimate is accumulated.  ``ESTIMATORS``
maps each registered name to a factory of ``Options``; ``get(name, options)``
builds one, ``register(name, factory)`` adds one.
"""

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from zotrain.base import Estimate, require
from zotrain.base import Estimator as EstimatorContract
from zotrain.kernels import random as krandom
from zotrain.zo.objective import DIST

_BLOCK = 2048  # coordinates per work item when accumulating


class Estimator:
    """Base of the built-in estimators (``zotrain.base.Estimator`` is the contract):
    ``estimate(objective, params, names, *, seed, step) -> Estimate``.  Schedules
    that change with training (``Hybrid``) also use the hooks below.
    ``update_rule`` is ``"gradient"`` (apply with the configured optimizer) or
    ``"sign"`` (sign-coded steps: apply with ``optim.sign``)."""

    update_rule = "gradient"

    def observe(self, epoch, val_loss):
        """Called by the trainer after each epoch with the validation loss."""

    def state(self):
        """What a checkpoint must keep (None: nothing)."""
        return None

    def load_state(self, state):
        """Restore ``state()``."""


def _check_positive(name, value):
    if not (isinstance(value, (int, float, np.number)) and math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be > 0, got {value!r}")
    return float(value)


def _check_queries(queries):
    if isinstance(queries, bool) or not isinstance(queries, (int, np.integer)) or queries < 1:
        raise ValueError(f"queries (N) must be an integer >= 1, got {queries!r}")
    return int(queries)


def _check_fraction(name, value):
    if not (isinstance(value, (int, float)) and 0 < value <= 1):
        raise ValueError(f"{name} must be in (0, 1], got {value!r}")
    return float(value)


def _segments(objective, names):
    layout = objective.layout
    unknown = [n for n in names if n not in layout.names]
    if unknown:
        raise ValueError(f"unknown parameter segments {unknown}; the model has {layout.names}")
    if not names:
        raise ValueError("names must list at least one parameter segment to estimate")
    return [layout[n] for n in names]


def split_queries(total, sizes):
    """Split ``total`` queries over groups in proportion to their sizes, at least one each."""
    raw = np.asarray(sizes, np.float64) / np.sum(sizes) * total
    n = np.maximum(1, np.floor(raw).astype(np.int64))
    for g in np.argsort(-(raw - np.floor(raw)), kind="stable"):  # largest remainders first
        if n.sum() >= total:
            break
        n[g] += 1
    return n


def _orthogonal(U):
    """Orthonormalise the rows of ``U`` (N <= n) and scale them to norm sqrt(n)."""
    n = U.shape[1]
    if U.shape[0] > n:
        raise ValueError(f"orthogonal directions need queries <= group size, got {U.shape[0]} > {n}")
    Qm, R = np.linalg.qr(U.astype(np.float64).T)
    Qm *= np.sign(np.diag(R))  # a unique, sign-fixed basis
    return (Qm.T * math.sqrt(n)).astype(np.float32)


@dataclass(frozen=True)
class RGE(Estimator):
    """Randomized gradient estimate: ``g = mean_i (f(x + mu u_i) - f(x - mu u_i)) / (2 mu) u_i``
    (antithetic) or ``(f(x + mu u_i) - f(x)) / mu u_i`` (one-sided)."""

    queries: int = 20
    mu: float = 1e-3
    dist: str = "gaussian"
    antithetic: bool = True
    orthogonal: bool = False
    per_group: bool = True

    def __post_init__(self):
        _check_queries(self.queries)
        _check_positive("mu", self.mu)
        if self.dist not in DIST:
            raise ValueError(f"dist must be one of {sorted(DIST)}, got {self.dist!r}")

    def estimate(self, objective, params, names, *, seed, step):
        segs = _segments(objective, names)
        start = objective.forward_passes
        loss0 = objective.loss(params)
        grad = np.zeros(objective.n_params, np.float32)
        if self.per_group:
            counts = split_queries(self.queries, [s.size for s in segs])
            first = np.concatenate([[0], np.cumsum(counts)[:-1]])
            for seg, n, q0 in zip(segs, counts, first):
                self._group(objective, params, [seg], int(n), int(q0), loss0, grad, seed, step)
        else:
            self._group(objective, params, segs, self.queries, 0, loss0, grad, seed, step)
        return Estimate(grad, loss0, objective.forward_passes - start)

    def _group(self, objective, params, segs, n, q0, loss0, grad, seed, step):
        queries = np.arange(q0, q0 + n, dtype=np.int64)
        signs = np.array([1.0, -1.0] if self.antithetic else [1.0])
        which = np.repeat(np.arange(n), len(signs))
        scales = np.tile(signs, n) * self.mu
        offsets = np.array([s.offset for s in segs], np.int64)
        sizes = np.array([s.size for s in segs], np.int64)
        U = None
        if self.orthogonal:
            U = _orthogonal(krandom.directions(seed, step, queries, int(sizes.sum()),
                                               krandom.GAUSSIAN))
        if len(segs) == 1:  # feature reuse: one segment is linear in its layer's output
            if U is None:
                losses = objective.segment_losses(params, segs[0].name, seed, step,
                                                  queries[which], scales, DIST[self.dist])
            else:
                losses = objective.segment_losses_explicit(params, segs[0].name, U, which, scales)
        else:
            P = np.empty((len(scales), objective.n_params), np.float32)
            if U is None:
                krandom.perturb_into(P, np.asarray(params, np.float32), offsets, sizes, seed, step,
                                     queries[which], scales, DIST[self.dist])
            else:
                P[:] = params
                idx = np.concatenate([np.arange(o, o + s) for o, s in zip(offsets, sizes)])
                P[:, idx] += scales[:, None].astype(np.float32) * U[which]
            losses = objective(P)
        if self.antithetic:
            coeffs = (losses[0::2] - losses[1::2]) / (2.0 * self.mu * n)
        else:
            coeffs = (losses - loss0) / (self.mu * n)
        if U is None:
            krandom.accumulate(grad, offsets, sizes, seed, step, queries, coeffs.astype(np.float64),
                               DIST[self.dist], _BLOCK)
        else:
            idx = np.concatenate([np.arange(o, o + s) for o, s in zip(offsets, sizes)])
            grad[idx] += (coeffs @ U.astype(np.float64)).astype(np.float32)


def _coordinates(size, fraction, seed, step, salt):
    """The coordinates of a segment visited this step: all, or a seeded random subset."""
    if fraction >= 1.0:
        return np.arange(size)
    rng = np.random.default_rng([seed, step, salt])
    k = max(1, int(round(fraction * size)))
    return np.sort(rng.choice(size, k, replace=False))


def _unit_losses(objective, params, seg, coords, scales, max_sets):
    """Losses of ``params + scale * e_c`` for each coordinate c and scale, in chunks."""
    out = []
    per = max(1, max_sets // len(scales))
    for c0 in range(0, len(coords), per):
        chunk = coords[c0:c0 + per]
        U = np.zeros((len(chunk), seg.size), np.float32)
        U[np.arange(len(chunk)), chunk] = 1.0
        which = np.repeat(np.arange(len(chunk)), len(scales))
        out.append(objective.segment_losses_explicit(params, seg.name, U, which,
                                                     np.tile(scales, len(chunk))))
    return np.concatenate(out).reshape(len(coords), len(scales))


def _coordinatewise(objective, params, names, seed, step, h, fraction, salt, max_sets, rule):
    """Try ``+h`` and ``-h`` on the visited coordinates of each segment; ``rule(up,
    down, loss0)`` turns the two losses into the estimate's entries."""
    segs = _segments(objective, names)
    start = objective.forward_passes
    loss0 = objective.loss(params)
    grad = np.zeros(objective.n_params, np.float32)
    for g, seg in enumerate(segs):
        coords = _coordinates(seg.size, fraction, seed, step, salt + g)
        L = _unit_losses(objective, params, seg, coords, np.array([h, -h]), max_sets)
        grad[seg.offset + coords] = rule(L[:, 0], L[:, 1], loss0)
    return Estimate(grad, loss0, objective.forward_passes - start)


@dataclass(frozen=True)
class CGE(Estimator):
    """Coordinate-wise estimate ``g_c = (f(x + mu e_c) - f(x - mu e_c)) / (2 mu)`` over all
    coordinates of the segments, or a random ``fraction`` of them each step."""

    mu: float = 1e-3
    fraction: float = 1.0
    max_sets: int = 64  # perturbed models evaluated per call (bounds memory)

    def __post_init__(self):
        _check_positive("mu", self.mu)
        _check_fraction("fraction", self.fraction)

    def estimate(self, objective, params, names, *, seed, step):
        rule = lambda up, down, loss0: (up - down) / (2.0 * self.mu)  # noqa: E731
        return _coordinatewise(objective, params, names, seed, step, self.mu, self.fraction, 0,
                               self.max_sets, rule)


@dataclass(frozen=True)
class ZOSignCD(Estimator):
    """ZO coordinate descent with the sign rule of the paper's code: each coordinate
    is visited with probability ``prob``; ``+eta`` and ``-eta`` are tried on it and
    the best of the three losses is kept.  The estimate holds, per visited
    coordinate, the sign of the step that lowers the loss (``+1`` means step
    ``-eta``, ``0`` keep): apply it with ``optim.sign(eta)``."""

    update_rule = "sign"

    eta: float = 1e-3
    prob: float = 0.1
    max_sets: int = 64

    def __post_init__(self):
        _check_positive("eta", self.eta)
        _check_fraction("prob", self.prob)

    def estimate(self, objective, params, names, *, seed, step):
        def rule(up, down, loss0):
            return np.where((up < down) & (up < loss0), -1.0,
                            np.where((down < up) & (down < loss0), 1.0, 0.0))

        return _coordinatewise(objective, params, names, seed, step, self.eta, self.prob, 1000,
                               self.max_sets, rule)


class Hybrid(Estimator):
    """The paper's schedule: an RGE phase whose estimate is applied with sign updates,
    then the coordinate phase (``ZOSignCD``).  The switch happens at epoch
    ``switch_epoch``, or once the validation loss has not improved for
    ``patience`` epochs, whichever comes first.  Use with ``optim.sign``."""

    update_rule = "sign"

    def __init__(self, first, second, switch_epoch=None, patience=None):
        if switch_epoch is not None and switch_epoch < 0:
            raise ValueError(f"switch_epoch must be >= 0, got {switch_epoch}")
        if patience is not None and patience < 1:
            raise ValueError(f"patience must be >= 1, got {patience}")
        self.first, self.second = first, second
        self.switch_epoch, self.patience = switch_epoch, patience
        self.phase, self._best, self._stale = 0, math.inf, 0

    def estimate(self, objective, params, names, *, seed, step):
        est = (self.first if self.phase == 0 else self.second)
        return est.estimate(objective, params, names, seed=seed, step=step)

    def observe(self, epoch, val_loss):
        """Called by the trainer after each epoch (``epoch`` = epochs completed)."""
        if self.phase == 1:
            return
        if val_loss < self._best:
            self._best, self._stale = val_loss, 0
        else:
            self._stale += 1
        if (self.switch_epoch is not None and epoch >= self.switch_epoch) or \
                (self.patience is not None and self._stale >= self.patience):
            self.phase = 1

    def state(self):
        return {"phase": self.phase, "best": self._best, "stale": self._stale}

    def load_state(self, state):
        if state:
            self.phase, self._best, self._stale = int(state["phase"]), float(state["best"]), \
                int(state["stale"])


def rge(queries=20, mu=1e-3, *, dist="gaussian", antithetic=True, orthogonal=False,
        per_group=True):
    """Randomized gradient estimator (see ``RGE``)."""
    return RGE(queries, mu, dist, antithetic, orthogonal, per_group)


def cge(mu=1e-3, *, fraction=1.0):
    """Coordinate-wise gradient estimator (see ``CGE``)."""
    return CGE(mu, fraction)


def zo_sign_cd(eta=1e-3, *, prob=0.1):
    """ZO coordinate descent with the sign rule (see ``ZOSignCD``)."""
    return ZOSignCD(eta, prob)


def hybrid(queries=20, mu=1e-3, *, eta=1e-3, prob=0.1, switch_epoch=None, patience=2,
           dist="gaussian"):
    """The paper's hybrid schedule (see ``Hybrid``)."""
    return Hybrid(RGE(queries, mu, dist), ZOSignCD(eta, prob), switch_epoch, patience)


class Options(NamedTuple):
    """The settings a registered estimator is built from (the CLI's flags)."""

    queries: int = 20
    mu: float = 1e-3
    dist: str = "gaussian"
    antithetic: bool = True
    per_group: bool = True
    fraction: float = 0.01  # coordinates visited per step (coordinate-wise estimators)


#: name -> ``factory(options) -> estimator``; ``register`` adds to it
ESTIMATORS = {}


def register(name, factory):
    """Make ``factory(options: Options)`` known as ``name`` (to ``get`` and the CLI's
    ``--estimator``); the estimator it builds declares its own ``update_rule``."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"an estimator name must be a non-empty string, got {name!r}")
    ESTIMATORS[name] = factory
    return factory


def get(name, options=None):
    """The estimator registered as ``name``, built from ``options`` (default
    ``Options()``); an unknown name lists the known ones."""
    if name not in ESTIMATORS:
        raise ValueError(f"unknown estimator {name!r}; known estimators: {', '.join(ESTIMATORS)}")
    return require(ESTIMATORS[name](options or Options()), EstimatorContract,
                   f"estimator {name!r}")


register("rge", lambda o: rge(o.queries, o.mu, dist=o.dist, antithetic=o.antithetic,
                              per_group=o.per_group))
register("cge", lambda o: cge(o.mu, fraction=o.fraction))
register("zo_sign_cd", lambda o: zo_sign_cd(o.mu, prob=o.fraction))
register("hybrid", lambda o: hybrid(o.queries, o.mu, eta=o.mu, prob=o.fraction, dist=o.dist))
