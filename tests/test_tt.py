import itertools
import math

import numpy as np
import pytest
from tensorly.tt_matrix import tt_matrix_to_matrix

from zotrain.nn import tt
from tests import reference


def random_shape(rng):
    d = int(rng.integers(2, 6))
    in_modes = tuple(int(m) for m in rng.integers(1, 6, d))
    out_modes = tuple(int(m) for m in rng.integers(1, 6, d))
    ranks = (1,) + tuple(int(r) for r in rng.integers(1, 9, d - 1)) + (1,)
    return in_modes, out_modes, ranks


@pytest.mark.parametrize("case", range(12))
def test_to_dense_matches_einsum_and_tensorly(case):
    rng = np.random.default_rng(case)
    in_modes, out_modes, ranks = random_shape(rng)
    cores = tt.random_tt_matrix(in_modes, out_modes, ranks, seed=case, dtype=np.float64)
    W = tt.tt_matrix_to_dense(cores)
    assert W.shape == (math.prod(in_modes), math.prod(out_modes))
    np.testing.assert_allclose(W, reference.tt_dense(cores), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(W, tt_matrix_to_matrix(cores), rtol=1e-12, atol=1e-12)


def test_row_major_mode_convention():
    # W[row, col] with row = i1 * in2 + i2 and col = o1 * out2 + o2
    rng = np.random.default_rng(0)
    a = rng.standard_normal((1, 2, 3, 1))
    b = rng.standard_normal((1, 4, 5, 1))
    W = tt.tt_matrix_to_dense([a, b])
    assert W[1 * 4 + 2, 2 * 5 + 3] == pytest.approx(a[0, 1, 2, 0] * b[0, 2, 3, 0])


@pytest.mark.parametrize("case", range(6))
def test_dense_to_tt_roundtrip(case):
    rng = np.random.default_rng(100 + case)
    in_modes, out_modes, ranks = random_shape(rng)
    cores = tt.random_tt_matrix(in_modes, out_modes, ranks, seed=case, dtype=np.float64)
    W = tt.tt_matrix_to_dense(cores)
    # ranks at least as large as the generating ones reproduce W (TT-SVD is exact then)
    back = tt.dense_to_tt_matrix(W, in_modes, out_modes, ranks)
    err = np.abs(tt.tt_matrix_to_dense(back) - W).max() / np.abs(W).max()
    assert err < 1e-5
    # float32 too
    back32 = tt.dense_to_tt_matrix(W.astype(np.float32), in_modes, out_modes, ranks)
    assert back32[0].dtype == np.float32
    err32 = np.abs(tt.tt_matrix_to_dense(back32) - W).max() / np.abs(W).max()
    assert err32 < 1e-5


def test_random_tt_matrix_std_and_seed():
    # the product structure makes one draw's spread noisy: check the variance
    # in expectation, over seeds
    var = np.mean([tt.tt_matrix_to_dense(tt.random_tt_matrix(
        (4, 7, 7, 4), (4, 8, 8, 4), 8, seed=s)).var() for s in range(40)])
    assert abs(var / (2 / 784) - 1) < 0.1
    var = np.mean([tt.tt_matrix_to_dense(tt.random_tt_matrix(
        (4, 8), (8, 4), 3, std=0.5, seed=s)).var() for s in range(40)])
    assert abs(var / 0.25 - 1) < 0.1
    cores = tt.random_tt_matrix((4, 7, 7, 4), (4, 8, 8, 4), 8, seed=3)
    again = tt.random_tt_matrix((4, 7, 7, 4), (4, 8, 8, 4), 8, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip(cores, again))
    other = tt.random_tt_matrix((4, 7, 7, 4), (4, 8, 8, 4), 8, seed=4)
    assert not np.array_equal(cores[0], other[0])


def test_tensorly_conversion_roundtrip():
    cores = tt.random_tt_matrix((2, 3), (4, 5), 2, seed=0)
    t = tt.to_tensorly(cores)
    assert type(t).__name__ == "TTMatrix"
    back = tt.from_tensorly(t)
    assert all(np.array_equal(a, b) for a, b in zip(cores, back))


def test_counts_and_ratio():
    shape = tt.TTMatrixShape((4, 7, 7, 4), (4, 8, 8, 4), 8)
    expected = 16 * 8 + 8 * 56 * 8 + 8 * 56 * 8 + 8 * 16
    assert shape.n_params == expected == tt.tt_matrix_n_params((4, 7, 7, 4), (4, 8, 8, 4), 8)
    assert tt.compression_ratio((4, 7, 7, 4), (4, 8, 8, 4), 8) == pytest.approx(784 * 1024 / expected)


@pytest.mark.parametrize("n,d", [(784, 4), (1024, 4), (21, 2), (512, 3), (7, 2), (1, 3), (360, 3)])
def test_factor_modes(n, d):
    modes = tt.factor_modes(n, d)
    assert len(modes) == d and math.prod(modes) == n
    assert list(modes) == sorted(modes)


def test_factor_modes_balanced():
    assert tt.factor_modes(1024, 2) == (32, 32)
    assert tt.factor_modes(784, 4) == (4, 4, 7, 7)
    assert tt.factor_modes(72, 2) == (8, 9)  # not (6, 12), which greedy prime packing gives


@pytest.mark.parametrize("d", [1, 2, 3, 4])
def test_factor_modes_is_the_most_even_split(d):
    """Against every ordered split into divisors: the largest mode is as small as it can be,
    then the next largest, and so on."""
    for n in list(range(1, 200)) + [360, 720, 784, 1000, 1024]:
        divisors = [a for a in range(1, n + 1) if n % a == 0]
        splits = [m for m in itertools.product(divisors, repeat=d) if math.prod(m) == n]
        best = min(tuple(sorted(m, reverse=True)) for m in splits)
        assert tt.factor_modes(n, d) == best[::-1], n


def test_balanced_modes_default():
    i, o = tt.balanced_modes(784, 1024)
    assert math.prod(i) == 784 and math.prod(o) == 1024 and len(i) == len(o) == 4


@pytest.mark.parametrize("ranks,msg", [
    (0, "rank must be >= 1"),
    (-2, "rank must be >= 1"),
    ((1, 2, 1), "length n_modes \\+ 1 = 4"),
    ((1, 0, 2, 1), ">= 1"),
    ((2, 2, 2, 1), "start and end with 1"),
    ("abc", "sequence of ints"),
])
def test_bad_ranks(ranks, msg):
    with pytest.raises(ValueError, match=msg):
        tt.validate_tt_ranks(ranks, 3)


def test_bad_modes():
    with pytest.raises(ValueError, match="same length"):
        tt.TTMatrixShape((2, 3), (2, 3, 4), 2)
    with pytest.raises(ValueError, match="positive ints"):
        tt.TTMatrixShape((2, 0), (2, 3), 2)
    with pytest.raises(ValueError, match="expected the feature count 12"):
        tt._check_modes("in_modes", (2, 5), 12)
    with pytest.raises(ValueError, match="n must be a positive integer"):
        tt.factor_modes(0, 2)


def test_bad_cores_and_dense():
    a = np.zeros((1, 2, 2, 3))
    b = np.zeros((2, 2, 2, 1))
    with pytest.raises(ValueError, match="core 1 has left rank 2 but core 0 has right rank 3"):
        tt.validate_tt_matrix([a, b])
    with pytest.raises(ValueError, match="4-D"):
        tt.validate_tt_matrix([np.zeros((2, 2))])
    with pytest.raises(ValueError, match="W has shape"):
        tt.dense_to_tt_matrix(np.zeros((6, 6)), (2, 2), (2, 3), 2)
    with pytest.raises(ValueError, match="std must be > 0"):
        tt.random_tt_matrix((2, 2), (2, 2), 2, std=0.0, seed=0)
