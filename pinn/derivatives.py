"""Derivatives of a Gaussian-smoothed function from function values alone (Stein's identity).

For ``u(x) = E[f(x + sigma z)]``, ``z ~ N(0, I)``, the symmetric (antithetic) forms

    u(x)         = E[(f(x + sigma z) + f(x - sigma z)) / 2]
    grad u(x)    = E[z (f(x + sigma z) - f(x - sigma z))] / (2 sigma)
    d2u/dx_i2(x) = E[(z_i^2 - 1)(f(x + sigma z) + f(x - sigma z) - 2 f(x))] / (2 sigma^2)

are evaluated over sparse-grid nodes (``pinn.sparse_grid``) or Monte-Carlo
samples; ``f`` is called once on all shifted inputs.  A time coordinate is
one more input: ``u_t`` is its entry of the gradient, and the Laplacian sums
the other coordinates.
"""

from typing import NamedTuple

import numpy as np

from .sparse_grid import smolyak_gauss_hermite


class Smoothed(NamedTuple):
    u: np.ndarray  # (B,)
    grad: np.ndarray  # (B, d)
    lap: np.ndarray  # (B,) over the space coordinates
    u_t: np.ndarray  # (B,) or None without a time coordinate


def rule(dim, method="sparse-grid", *, level=3, samples=64, seed=0):
    """``(nodes, weights)`` for E over N(0, I_dim): the Smolyak rule or Monte Carlo."""
    if method == "sparse-grid":
        return smolyak_gauss_hermite(dim, level)
    if method == "stein-mc":
        z = np.random.default_rng(seed).standard_normal((samples, dim))
        return z, np.full(samples, 1.0 / samples)
    raise ValueError(f"unknown derivative method {method!r}; known: sparse-grid, stein-mc")


def shifted_inputs(x, sigma, nodes):
    """All inputs ``f`` is evaluated on: ``(B, 2K + 1, d)`` = x, x + sigma z_k, x - sigma z_k."""
    x = np.asarray(x, np.float64)
    s = sigma * np.asarray(nodes, np.float64)
    return np.concatenate([x[:, None], x[:, None] + s[None], x[:, None] - s[None]], axis=1)


def from_values(values, sigma, nodes, weights, time_index=None):
    """The Stein forms from ``f`` on ``shifted_inputs`` (values ``(B, 2K + 1)``)."""
    values = np.asarray(values, np.float64)
    z, w = np.asarray(nodes, np.float64), np.asarray(weights, np.float64)
    K = len(w)
    f0, fp, fm = values[:, 0], values[:, 1:K + 1], values[:, K + 1:]
    u = (fp + fm) @ w / 2
    grad = ((fp - fm) * w) @ z / (2 * sigma)
    second = ((fp + fm - 2 * f0[:, None]) * w) @ (z * z - 1) / (2 * sigma ** 2)
    space = [i for i in range(z.shape[1]) if i != time_index]
    u_t = grad[:, time_index] if time_index is not None else None
    return Smoothed(u, grad, second[:, space].sum(axis=1), u_t)


def smoothed_derivatives(f, x, sigma, nodes, weights, time_index=None):
    """u, grad u, Laplacian u and u_t of the smoothed ``f`` at the points ``x`` ``(B, d)``.

    ``f`` maps ``(N, d)`` to ``(N,)`` and is called once on all ``B (2K + 1)`` inputs."""
    x = np.asarray(x, np.float64)
    if x.ndim != 2 or x.shape[1] != np.shape(nodes)[1]:
        raise ValueError(f"collocation points must be (B, {np.shape(nodes)[1]}), got {x.shape}")
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0, got {sigma!r}")
    pts = shifted_inputs(x, sigma, nodes)
    values = np.asarray(f(pts.reshape(-1, x.shape[1])), np.float64).reshape(pts.shape[:2])
    return from_values(values, sigma, nodes, weights, time_index)
