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
            rules = [gauss_hermite_1d(n) for n in k]
            grids = np.meshgrid(*[r[0] for r in rules], indexing="ij")
            wgrid = np.ones_like(grids[0])
            for axis, r in enumerate(rules):
                shape = [1] * dim
                shape[axis] = len(r[1])
                wgrid = wgrid * r[1].reshape(shape)
            pts = np.stack([g.ravel() for g in grids], axis=1)
            for p, w in zip(pts, wgrid.ravel()):
                key = tuple(np.round(p, 12) + 0.0)  # + 0.0 folds -0.0 into 0.0
                nodes[key] = nodes.get(key, 0.0) + coef * w
    keys = [k for k, w in nodes.items() if w != 0.0]
    X = np.array(keys, dtype=np.float64).reshape(len(keys), dim)
    W = np.array([nodes[k] for k in keys], dtype=np.float64)
    X.setflags(write=False)
    W.setflags(write=False)
    return X, W


def smolyak_gauss_hermite(dim, level):
    """``(nodes, weights)`` of shapes ``(n, dim)`` and ``(n,)`` (cached per (dim, level))."""
    for name, value in (("dim", dim), ("level", level)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return _rule(int(dim), int(level))
