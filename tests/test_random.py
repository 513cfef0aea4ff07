"""Counter-based directions: NumPy references, distributions, determinism."""

import numpy as np
import pytest

from zotrain.kernels import random as R
from tests import reference

DISTS = [R.GAUSSIAN, R.RADEMACHER, R.SPHERE]


NAMES = {R.GAUSSIAN: "gaussian", R.RADEMACHER: "rademacher", R.SPHERE: "sphere"}


def reference_direction(seed, step, query, n, dist):
    return reference.direction(seed, step, int(query), n, NAMES[dist])


def test_the_reference_hash_is_splitmix64():
    """Published SplitMix64 outputs from state 0 (the first three)."""
    outputs = [reference.splitmix64(k * 0x9E3779B97F4A7C15 % 2 ** 64) for k in range(3)]
    assert outputs == [0xE220A8397B1DCDAF, 0x6E789E6AA1B965F4, 0x06C45D188009454F]


@pytest.mark.parametrize("dist", DISTS)
@pytest.mark.parametrize("n", [1, 7, 300])
def test_directions_match_reference(dist, n):
    queries = np.array([0, 5, 2], np.int64)
    U = R.directions(3, 11, queries, n, dist)
    for i, q in enumerate(queries):
        np.testing.assert_allclose(U[i], reference_direction(3, 11, q, n, dist), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("dist", DISTS)
def test_perturb_into_matches_explicit(dist, rng):
    params = rng.standard_normal(50).astype(np.float32)
    offsets, sizes = np.array([3, 20]), np.array([5, 11])
    queries, scales = np.array([4, 4, 9]), np.array([0.1, -0.1, 2.0])
    P = R.perturb_into(np.empty((3, 50), np.float32), params, offsets, sizes, 1, 2, queries,
                       scales, dist)
    idx = np.r_[3:8, 20:31]
    for i in range(3):
        expected = params.astype(np.float64).copy()
        expected[idx] += scales[i] * reference_direction(1, 2, queries[i], 16, dist)
        np.testing.assert_allclose(P[i], expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("dist", DISTS)
@pytest.mark.parametrize("block", [1, 4, 1000])
def test_accumulate_matches_explicit(dist, block, rng):
    offsets, sizes = np.array([0, 30]), np.array([10, 13])
    queries = np.array([1, 2, 3, 7])
    coeffs = rng.standard_normal(4)
    grad = R.accumulate(np.zeros(50, np.float32), offsets, sizes, 5, 6, queries, coeffs, dist, block)
    expected = np.zeros(50)
    idx = np.r_[0:10, 30:43]
    for c, q in zip(coeffs, queries):
        expected[idx] += c * reference_direction(5, 6, q, 23, dist)
    np.testing.assert_allclose(grad, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dist", DISTS)
def test_second_moment_is_identity(dist):
    n = 20000
    U = R.directions(0, 0, np.arange(n), 20, dist).astype(np.float64)
    cov = U.T @ U / n
    # entries of a sample covariance have standard errors of at most sqrt(2 / n)
    assert np.abs(cov - np.eye(20)).max() < 5 * np.sqrt(2 / n)
    assert abs(U.mean()) < 5 / np.sqrt(U.size)


def test_directions_depend_on_every_counter():
    base = R.directions(1, 1, np.array([1]), 64, R.GAUSSIAN)
    for args in [(2, 1, 1), (1, 2, 1), (1, 1, 2)]:
        other = R.directions(args[0], args[1], np.array([args[2]]), 64, R.GAUSSIAN)
        assert not np.allclose(base, other)
    assert np.array_equal(base, R.directions(1, 1, np.array([1]), 64, R.GAUSSIAN))
