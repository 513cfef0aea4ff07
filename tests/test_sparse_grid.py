"""Smolyak Gauss-Hermite sparse grids: exactness on monomials, weights, bad input."""

import itertools

import numpy as np
import pytest

from zotrain.pinn.sparse_grid import gauss_hermite_1d, smolyak_gauss_hermite, symmetric_degree5


def normal_moment(a):
    """E[z^a] for z ~ N(0, 1): 0 for odd a, (a - 1)!! for even a."""
    return 0.0 if a % 2 else float(np.prod(np.arange(a - 1, 0, -2))) if a else 1.0


def monomials(dim, degree, rng, limit=300):
    """Exponent vectors of total degree <= degree: all of them in small dims, a seeded
    sample (always including the pure powers) in large ones."""
    out = [np.zeros(dim, int)]
    for d in range(1, degree + 1):
        for j in range(dim):
            e = np.zeros(dim, int)
            e[j] = d
            out.append(e)
    if dim <= 3:
        out += [np.array(a) for a in itertools.product(range(degree + 1), repeat=dim)
                if sum(a) <= degree]
    else:
        for _ in range(limit):
            e = np.zeros(dim, int)
            for j in rng.choice(dim, size=rng.integers(1, degree + 1)):
                e[j] += 1
            if e.sum() <= degree:
                out.append(e)
    return out


@pytest.mark.parametrize("dim", [1, 2, 3, 5, 21])
@pytest.mark.parametrize("level", [1, 2, 3, 4])
def test_exact_for_total_degree_2L_minus_1(dim, level, rng):
    X, W = smolyak_gauss_hermite(dim, level)
    assert X.shape == (len(W), dim)
    assert abs(W.sum() - 1) < 1e-10
    for e in monomials(dim, 2 * level - 1, rng):
        value = np.sum(W * np.prod(X ** e, axis=1))
        expected = np.prod([normal_moment(a) for a in e])
        assert abs(value - expected) < 1e-10, (e, value, expected)


def test_not_exact_beyond_its_degree():
    X, W = smolyak_gauss_hermite(2, 2)  # exact to degree 3
    assert abs(np.sum(W * X[:, 0] ** 4) - 3.0) > 1e-3


def test_level_one_is_the_origin_and_nodes_are_merged():
    X, W = smolyak_gauss_hermite(7, 1)
    assert X.shape == (1, 7) and not X.any() and W[0] == pytest.approx(1.0)
    X, W = smolyak_gauss_hermite(21, 3)
    assert len(np.unique(np.round(X, 12), axis=0)) == len(X)
    assert (W < 0).any()


def test_one_dimensional_rule_is_gauss_hermite():
    x, w = gauss_hermite_1d(5)
    X, W = smolyak_gauss_hermite(1, 5)
    order = np.argsort(X[:, 0])
    np.testing.assert_allclose(X[order, 0], np.sort(x), atol=1e-12)
    np.testing.assert_allclose(W[order], w[np.argsort(x)], atol=1e-12)


def test_cached_and_read_only():
    a = smolyak_gauss_hermite(4, 3)
    assert smolyak_gauss_hermite(4, 3)[0] is a[0]
    with pytest.raises(ValueError):
        a[0][0, 0] = 1.0


@pytest.mark.parametrize("dim,level,msg", [(0, 2, "dim must be an integer >= 1"),
                                           (3, 0, "level must be an integer >= 1"),
                                           (2.5, 2, "dim must be"), (2, True, "level must be")])
def test_bad_arguments(dim, level, msg):
    with pytest.raises(ValueError, match=msg):
        smolyak_gauss_hermite(dim, level)


@pytest.mark.parametrize("dim", [1, 2, 4, 5, 21, 41])
def test_symmetric_degree5_is_exact_to_degree_5_with_small_weights(dim, rng):
    X, W = symmetric_degree5(dim)
    assert len(W) == (3 if dim == 1 else len(smolyak_gauss_hermite(dim, 3)[1]) if dim <= 4
                      else 2 * dim * dim + 1)
    assert W.sum() == pytest.approx(1.0, abs=1e-12)
    for e in monomials(dim, 5, rng, limit=100):
        expected = np.prod([normal_moment(a) for a in e])
        assert np.sum(W * np.prod(X ** e, axis=1)) == pytest.approx(expected, abs=1e-10), e
    if dim >= 5:  # the point of the rule: no large cancelling weights
        assert np.abs(W).sum() < 12 < np.abs(smolyak_gauss_hermite(min(dim, 21), 3)[1]).sum()
    # not exact at degree 6 (E z^6 = 15) unless it is the tensor Gauss rule
    if dim >= 5:
        assert abs(np.sum(W * X[:, 0] ** 6) - 15.0) > 1e-3


def test_symmetric_degree5_bad_dim():
    with pytest.raises(ValueError, match="dim must be an integer >= 1"):
        symmetric_degree5(0)
