"""Derivatives of a Gaussian-smoothed function from function values alone (Stein's identity).

For ``u(x) = E[f(x + sigma z)]``, ``z ~ N(0, I)``, the symmetric (antithetic) forms

    u(x)         = E[(f(x + sigma z) + f(x - sigma z)) / 2]
    grad u(x)    = E[z (f(x + sigma z) - f(x - sigma z))] / (2 sigma)
    d2u/dx_i2(x) = E[(z_i^2 - 1)(f(x + sigma z) + f(x - sigma z) - 2 f(x))] / (2 sigma^2)
    d2u/dx_i dx_j(x) = E[z_i z_j (f(x + sigma z) + f(x - sigma z) - 2 f(x))] / (2 sigma^2)

are evaluated with a ``SteinRule``: nodes ``z_k`` whose pairs ``x +- sigma z_k``
are both evaluated, their weights, and the weight of ``f(x)`` itself in ``u``.
A Smolyak rule is symmetric (``z`` and ``-z`` are both nodes with one weight),
so it keeps one node of each pair with twice the weight, and its origin
becomes the centre weight: every distinct point is evaluated once (925 per
collocation point in 21-D at level 3, not 1,851).  Monte Carlo draws ``K``
samples and evaluates ``2K + 1`` points.  A time coordinate is one more input:
``u_t`` is its entry of the gradient, and the Laplacian sums the other
coordinates.  With ``hessian="diagonal"`` the fields also hold every
``d2u/dx_i2`` (``(B, d)``), with ``hessian="full"`` the whole Hessian
(``(B, d, d)``); both are exact for quadratics with a rule exact to degree 4.
The Stein forms are linear in the values, so they also apply to features
(``from_values`` over columns).
"""

from typing import NamedTuple

import numpy as np

from .sparse_grid import radial_spherical, random_orthogonal, smolyak_gauss_hermite, \
    symmetric_degree5

METHODS = ("sparse-grid", "degree5", "radial", "stein-mc")
HESSIANS = (None, "diagonal", "full")


class SteinRule(NamedTuple):
    nodes: np.ndarray  # (K, d): f is evaluated at x + sigma z_k and x - sigma z_k
    weights: np.ndarray  # (K,)
    center: float  # weight of f(x) in u

    @property
    def evaluations(self):
        """Function evaluations per collocation point."""
        return 2 * len(self.weights) + 1


class Smoothed(NamedTuple):
    u: np.ndarray  # (B,)
    grad: np.ndarray  # (B, d)
    lap: np.ndarray  # (B,) over the space coordinates
    u_t: np.ndarray  # (B,) or None without a time coordinate
    hess: np.ndarray = None  # (B, d) diagonal or (B, d, d) full, when asked for


def symmetric_pairs(nodes, weights):
    """A symmetric rule as a ``SteinRule``: one node per +-pair with twice its weight."""
    nodes, weights = np.asarray(nodes, np.float64), np.asarray(weights, np.float64)
    nonzero = np.abs(nodes) > 0
    origin = ~nonzero.any(axis=1)
    first = np.where(nonzero.any(axis=1), nodes[np.arange(len(nodes)), nonzero.argmax(axis=1)], 0)
    keep = first > 0
    if 2 * keep.sum() + origin.sum() != len(nodes):
        raise ValueError("the rule is not symmetric: every node z needs a node -z")
    return SteinRule(nodes[keep], 2.0 * weights[keep], float(weights[origin].sum()))


def rule(dim, method="sparse-grid", *, level=3, samples=64, seed=0, time_index=None):
    """The ``SteinRule`` for E over N(0, I_dim): the Smolyak rule of ``level``, the
    fully symmetric degree-5 rule, the randomised radial-spherical rule (as many
    blocks as ``samples`` pairs allow, at least one; it treats ``time_index``
    apart), or ``samples`` Monte-Carlo draws.

    The Laplacian form is exact for quadratic ``f`` only with a rule exact to
    degree 4 (Smolyak level >= 3, or degree5); level 2 gets it wrong."""
    if method == "sparse-grid":
        return symmetric_pairs(*smolyak_gauss_hermite(dim, level))
    if method == "degree5":
        return symmetric_pairs(*symmetric_degree5(dim))
    if method == "radial":
        per_block = 2 * (dim - (time_index is not None)) * (1 + (time_index is not None))
        nodes, weights = radial_spherical(dim, max(1, samples // per_block), seed, time_index)
        return SteinRule(nodes, weights, 0.0)
    if method == "stein-mc":
        if isinstance(samples, bool) or not isinstance(samples, (int, np.integer)) or samples < 1:
            raise ValueError(f"samples must be an integer >= 1, got {samples!r}")
        z = np.random.default_rng(seed).standard_normal((samples, dim))
        return SteinRule(z, np.full(samples, 1.0 / samples), 0.0)
    raise ValueError(f"unknown derivative method {method!r}; known: {', '.join(METHODS)}")


#: the largest dimension whose default rule is degree5 (2 d^2 + 1 evaluations per point:
#: 883 in 21-D); beyond it the randomised radial rule, whose cost grows linearly
DEGREE5_UP_TO = 25


def default_method(dim):
    """The derivative rule of a problem that names none: degree5 up to ``DEGREE5_UP_TO``
    inputs, radial beyond."""
    return "degree5" if dim <= DEGREE5_UP_TO else "radial"


def frame_rule(dim, seed=0):
    """A rule for the smoothed value ``u`` alone: the pairs ``+-sqrt(dim) v_k`` along a
    random orthonormal frame ``v_1 .. v_dim``, weights ``1 / dim``; ``2 dim + 1`` evaluations
    (the centre among them, with weight 0, as in the radial rule),
    exact for polynomials of degree <= 3 (its second moments are the identity).  Not a
    derivative rule: its Laplacian form is wrong even for quadratics."""
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < 1:
        raise ValueError(f"dim must be an integer >= 1, got {dim!r}")
    z = np.sqrt(dim) * random_orthogonal(int(dim), np.random.default_rng(seed))
    return SteinRule(z, np.full(int(dim), 1.0 / dim), 0.0)


def value_weights(stein):
    """The u form of ``stein`` on ``shifted_inputs``: weights ``(2K + 1,)``."""
    w = np.asarray(stein.weights, np.float64) / 2
    return np.concatenate([[stein.center], w, w])


def shifted_inputs(x, sigma, stein):
    """All inputs ``f`` is evaluated on: ``(B, 2K + 1, d)`` = x, x + sigma z_k, x - sigma z_k."""
    x = np.asarray(x, np.float64)
    s = sigma * np.asarray(stein.nodes, np.float64)
    return np.concatenate([x[:, None], x[:, None] + s[None], x[:, None] - s[None]], axis=1)


def stein_operator(sigma, stein, time_index=None, scale=None, hessian=None):
    """The Stein forms as one matrix ``(rows, 2K + 1)``: rows u, grad (d), Laplacian, then
    the Hessian's diagonal (d rows) or all its entries (d * d, row-major) when asked.

    ``values @ op.T`` gives them for values on ``shifted_inputs``.  ``scale``
    (per coordinate, default 1) is the width of the box the nodes live in, so
    derivatives are taken in ``x = scale * y`` when the points are in ``y``."""
    if hessian not in HESSIANS:
        raise ValueError(f"hessian must be one of {HESSIANS}, got {hessian!r}")
    z, w = np.asarray(stein.nodes, np.float64), np.asarray(stein.weights, np.float64)
    d = z.shape[1]
    s = np.ones(d) if scale is None else np.asarray(scale, np.float64)
    space = np.array([i != time_index for i in range(d)])
    gk = (w[:, None] * z / (2 * sigma * s)).T  # (d, K)
    second = [w * ((z * z - 1) / s ** 2)[:, space].sum(axis=1)]  # the Laplacian
    if hessian == "diagonal":
        second += list((w[:, None] * (z * z - 1) / s ** 2).T)
    elif hessian == "full":
        y = z / s  # the nodes in x's units
        second += list((w[:, None, None] * (y[:, :, None] * y[:, None, :] - np.diag(1 / s ** 2)))
                       .reshape(len(w), d * d).T)
    second = np.array(second) / (2 * sigma ** 2)  # (rows, K)
    op = np.zeros((d + 1 + len(second), 2 * len(w) + 1))
    op[0] = value_weights(stein)
    op[1:d + 1] = np.concatenate([np.zeros((d, 1)), gk, -gk], axis=1)
    op[d + 1:] = np.concatenate([-2 * second.sum(axis=1, keepdims=True), second, second], axis=1)
    return op


def split_fields(fields, time_index=None, hessian=None):
    """``Smoothed`` from the rows of ``stein_operator`` applied to values
    ``(B, rows)``."""
    n = fields.shape[1]
    d = {None: n - 2, "diagonal": (n - 2) // 2,
         "full": int(round(np.sqrt(n - 1))) - 1}[hessian]  # d^2 + d + 2 = n
    grad = fields[:, 1:d + 1]
    hess = None
    if hessian == "diagonal":
        hess = fields[:, d + 2:]
    elif hessian == "full":
        hess = fields[:, d + 2:].reshape(-1, d, d)
    return Smoothed(fields[:, 0], grad, fields[:, d + 1],
                    grad[:, time_index] if time_index is not None else None, hess)


def from_values(values, sigma, stein, time_index=None, scale=None, hessian=None):
    """The Stein forms from ``f`` on ``shifted_inputs`` (values ``(B, 2K + 1)``)."""
    op = stein_operator(sigma, stein, time_index, scale, hessian)
    return split_fields(np.asarray(values, np.float64) @ op.T, time_index, hessian)


def check_points(x, dim):
    x = np.asarray(x, np.float64)
    if x.ndim != 2 or x.shape[1] != dim:
        raise ValueError(f"collocation points must be (B, {dim}), got {x.shape}")
    return x


def check_sigma(sigma):
    if isinstance(sigma, bool) or not sigma > 0:
        raise ValueError(f"sigma must be > 0, got {sigma!r}")


def smoothed_derivatives(f, x, sigma, stein, time_index=None, scale=None, hessian=None):
    """u, grad u, Laplacian u, u_t (and the Hessian's diagonal or all of it) of the
    smoothed ``f`` at the points ``x`` ``(B, d)``.

    ``f`` maps ``(N, d)`` to ``(N,)`` and is called once on all ``B (2K + 1)`` inputs."""
    x = check_points(x, np.shape(stein.nodes)[1])
    check_sigma(sigma)
    pts = shifted_inputs(x, sigma, stein)
    values = np.asarray(f(pts.reshape(-1, x.shape[1])), np.float64).reshape(pts.shape[:2])
    return from_values(values, sigma, stein, time_index, scale, hessian)
