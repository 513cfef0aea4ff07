"""Smolyak sparse grids of Gauss-Hermite rules, for expectations over N(0, I_dim).

``smolyak_gauss_hermite(dim, level)`` combines the 1-D l-point probabilists'
Gauss-Hermite rules (exact for polynomials of degree 2l - 1) by Smolyak's
formula

    A(L, d) = sum over k in N^d, k_i >= 1, L <= |k| <= L + d - 1 of
              (-1)^(L + d - 1 - |k|) C(d - 1, L + d - 1 - |k|) Q_{k_1} x ... x Q_{k_d},

which integrates every polynomial of total degree <= 2L - 1 exactly, in any
dimension.  Level 1 is the single node at 0.  Nodes shared by several tensor
products are merged; the weights sum to 1 and some are negative.
"""

from functools import lru_cache
from itertools import product
from math import comb

import numpy as np
from numpy.polynomial.hermite_e import hermegauss


def gauss_hermite_1d(n):
    """The n-point rule for E[f(z)], z ~ N(0, 1): ``(nodes, weights)``, weights summing to 1."""
    x, w = hermegauss(n)
    return x, w / np.sqrt(2.0 * np.pi)


def _multi_indices(dim, excess):
    """All k in N^dim with k_i >= 1 and sum(k_i - 1) == excess."""
    if dim == 1:
        yield (excess + 1,)
        return
    for first in range(excess + 1):
        for rest in _multi_indices(dim - 1, excess - first):
            yield (first + 1,) + rest


@lru_cache(maxsize=64)
def _rule(dim, level):
    nodes = {}
    for excess in range(max(0, level - dim), level):
        total = excess + dim
        coef = (-1) ** (level + dim - 1 - total) * comb(dim - 1, level + dim - 1 - total)
        for k in _multi_indices(dim, excess):
            active = [i for i, n in enumerate(k) if n > 1]  # the others hold the node 0
            rules = [gauss_hermite_1d(k[i]) for i in active]
            for combo in product(*[range(len(r[1])) for r in rules]):
                p = np.zeros(dim)
                w = coef
                for i, r, j in zip(active, rules, combo):
                    p[i] = r[0][j]
                    w *= r[1][j]
                key = tuple(np.round(p, 12) + 0.0)  # + 0.0 folds -0.0 into 0.0
                nodes[key] = nodes.get(key, 0.0) + w
    keys = [k for k, w in nodes.items() if w != 0.0]
    return _frozen(np.array(keys, dtype=np.float64).reshape(len(keys), dim),
                   np.array([nodes[k] for k in keys], dtype=np.float64))


def smolyak_gauss_hermite(dim, level):
    """``(nodes, weights)`` of shapes ``(n, dim)`` and ``(n,)`` (cached per (dim, level))."""
    for name, value in (("dim", dim), ("level", level)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return _rule(int(dim), int(level))


@lru_cache(maxsize=16)
def _degree5(dim):
    n = dim
    e = np.eye(n)
    nodes, weights = [np.zeros((1, n))], []
    if n == 1:  # the 3-point Gauss-Hermite rule is the degree-5 rule in 1-D
        x, w = gauss_hermite_1d(3)
        return _frozen(x[:, None], w)
    if n <= 4:  # a^2 = n - 4 would not be positive: the Smolyak level-3 rule instead
        return _rule(n, 3)
    b2 = (n - 1) / 2.0
    a2 = n - 4.0
    w1, w2 = -1.0 / (2 * a2), 1.0 / (4 * b2 * b2)
    nodes.append(np.sqrt(a2) * np.concatenate([e, -e]))
    i, j = np.triu_indices(n, 1)
    pair = []
    for si in (1.0, -1.0):
        for sj in (1.0, -1.0):
            p = np.zeros((len(i), n))
            p[np.arange(len(i)), i] = si
            p[np.arange(len(i)), j] = sj
            pair.append(p)
    nodes.append(np.sqrt(b2) * np.concatenate(pair))
    weights = np.concatenate([[1.0 - 2 * n * w1 - 2 * n * (n - 1) * w2],
                              np.full(2 * n, w1), np.full(2 * n * (n - 1), w2)])
    return _frozen(np.concatenate(nodes), weights)


def _frozen(X, W):
    X, W = np.ascontiguousarray(X, np.float64), np.ascontiguousarray(W, np.float64)
    X.setflags(write=False)
    W.setflags(write=False)
    return X, W


def symmetric_degree5(dim):
    """A fully symmetric rule exact for total degree <= 5 with small weights (dim >= 5).

    Nodes: the origin, +-a e_i and +-b e_i +- b e_j with a^2 = dim - 4 and
    b^2 = (dim - 1) / 2, in the family of Stroud's degree-5 rules (Stroud,
    "Approximate Calculation of Multiple Integrals", 1971): 2 dim^2 + 1 nodes,
    the same count as Smolyak level 3, but the absolute weights sum to about 3.5
    instead of hundreds (841 in 21-D), so float32 network values are not
    amplified into noisy Laplacians.  For dim <= 4 it is Smolyak level 3."""
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < 1:
        raise ValueError(f"dim must be an integer >= 1, got {dim!r}")
    return _degree5(int(dim))


def random_orthogonal(dim, rng):
    """A uniformly random orthogonal matrix (QR of a Gaussian matrix, signs fixed)."""
    q, r = np.linalg.qr(rng.standard_normal((dim, dim)))
    return q * np.sign(np.diag(r))


def radial_spherical(dim, frames=1, seed=0, time_index=None):
    """A randomised radial-spherical rule: ``(nodes, weights)`` of the pairs ``+-z`` (one of
    each pair listed, with the pair's weight), for E over N(0, I_dim).

    Each of ``frames`` blocks holds two random orthonormal frames of the space
    coordinates (all but ``time_index``), scaled to radii ``rho^2 = n -+ sqrt(2 n)``
    (n space coordinates: the chi-square's mean and standard deviation); with a time
    coordinate, every node is taken with time +1 and -1.  For any frames the rule
    integrates polynomials of degree <= 3 exactly and matches
    ``E[(|z_s|^2 - n) z z^T]`` (2 on the space diagonal, 0 elsewhere), so the Stein
    forms of u, the gradient, u_t and the Laplacian are exact for quadratics; higher
    terms are integrated along random directions (the stochastic radial-spherical
    rules of Genz and Monahan are of this kind).  ``2 n`` pairs per block (``4 n``
    with time), e.g. 801 evaluations per point in 100-D plus time."""
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)):
        raise ValueError(f"dim must be an integer, got {dim!r}")
    space = [i for i in range(dim) if i != time_index]
    n = len(space)
    if n < 3:
        raise ValueError(f"the radial-spherical rule needs >= 3 space coordinates, got {n}")
    if isinstance(frames, bool) or not isinstance(frames, (int, np.integer)) or frames < 1:
        raise ValueError(f"frames must be an integer >= 1, got {frames!r}")
    rng = np.random.default_rng(seed)
    radii = np.sqrt([n - np.sqrt(2 * n), n + np.sqrt(2 * n)])
    zs = np.concatenate([rho * random_orthogonal(n, rng).T for _ in range(frames) for rho in radii])
    signs = [0.0] if time_index is None else [1.0, -1.0]
    nodes = np.zeros((len(signs) * len(zs), dim))
    for k, sign in enumerate(signs):
        nodes[k * len(zs):(k + 1) * len(zs), space] = zs
        if time_index is not None:
            nodes[k * len(zs):(k + 1) * len(zs), time_index] = sign
    return _frozen(nodes, np.full(len(nodes), 1.0 / len(nodes)))
