"""Estimators checked against exact gradients computed here."""

import numpy as np
import pytest

from zotrain.zo import estimators
from zotrain.nn.sequential import Layout, Segment
from zotrain.zo.objective import FunctionObjective

D1, D2 = 4, 3
LAYOUT = Layout([Segment("0.a", (D1,), 0), Segment("0.b", (D2,), D1)])
NAMES = ["0.a", "0.b"]


def quadratic(seed=0):
    rng = np.random.default_rng(seed)
    Q = rng.standard_normal((D1 + D2, D1 + D2))
    A = Q @ Q.T / (D1 + D2) + np.eye(D1 + D2)
    c = rng.standard_normal(D1 + D2)
    fn = lambda P: 0.5 * np.einsum("qi,ij,qj->q", P - c, A, P - c)  # noqa: E731
    grad = lambda x: A @ (x - c)  # noqa: E731
    return fn, grad


X0 = np.linspace(-1, 1, D1 + D2).astype(np.float32)


def samples(est, fn, n_seeds, x=X0, names=NAMES):
    return np.stack([est.estimate(FunctionObjective(fn, LAYOUT), x, names, seed=s, step=3).grad
                     for s in range(n_seeds)]).astype(np.float64)


@pytest.mark.parametrize("dist", ["gaussian", "rademacher", "sphere"])
@pytest.mark.parametrize("antithetic", [True, False])
@pytest.mark.parametrize("per_group", [True, False])
def test_rge_is_unbiased_on_a_quadratic(dist, antithetic, per_group):
    fn, grad = quadratic()
    est = estimators.rge(4, 1e-2, dist=dist, antithetic=antithetic, per_group=per_group)
    G = samples(est, fn, 3000)
    se = G.std(axis=0, ddof=1) / np.sqrt(len(G))
    # a quadratic's Gaussian smoothing has the same gradient
    z = (G.mean(axis=0) - grad(X0.astype(np.float64))) / se
    assert np.all(np.abs(z) < 3), z


@pytest.mark.parametrize("dist", ["gaussian", "rademacher"])
def test_rge_error_variance_falls_as_one_over_n(dist):
    fn, grad = quadratic(1)
    g = grad(X0.astype(np.float64))
    err = {}
    for n in (2, 8):
        G = samples(estimators.rge(n, 1e-2, dist=dist, per_group=False), fn, 1500)
        err[n] = np.mean(np.sum((G - g) ** 2, axis=1))
    assert 3.0 < err[2] / err[8] < 5.3, err


def test_orthogonal_directions_cut_the_variance():
    fn, grad = quadratic(2)
    g = grad(X0.astype(np.float64))
    plain = samples(estimators.rge(6, 1e-2, per_group=False), fn, 800)
    ortho = samples(estimators.rge(6, 1e-2, per_group=False, orthogonal=True), fn, 800)
    assert np.abs(ortho.mean(0) - g).max() < 0.25 * np.abs(g).max()
    assert np.mean(np.sum((ortho - g) ** 2, 1)) < np.mean(np.sum((plain - g) ** 2, 1))


def test_cge_exact_on_quadratic_and_second_order_otherwise():
    fn, grad = quadratic(3)
    g = estimators.cge(1e-2).estimate(FunctionObjective(fn, LAYOUT), X0, NAMES, seed=0, step=0).grad
    np.testing.assert_allclose(g, grad(X0.astype(np.float64)), rtol=1e-3, atol=1e-3)
    quartic = lambda P: np.sum(P.astype(np.float64) ** 4, axis=1) / 4  # noqa: E731
    x = np.full(D1 + D2, 0.7, np.float32)
    errs = []
    for mu in (0.2, 0.1):
        est = estimators.cge(mu).estimate(FunctionObjective(quartic, LAYOUT), x, NAMES, seed=0,
                                          step=0)
        errs.append(np.abs(est.grad - x.astype(np.float64) ** 3).max())
    assert 3.5 < errs[0] / errs[1] < 4.5  # error = mu^2 x / 1: O(mu^2)


def test_cge_fraction_visits_a_subset():
    fn, grad = quadratic()
    est = estimators.cge(1e-2, fraction=0.5)
    out = est.estimate(FunctionObjective(fn, LAYOUT), X0, NAMES, seed=0, step=0)
    visited = out.grad != 0
    assert visited.sum() == 2 + 2  # half of each segment, rounded
    np.testing.assert_allclose(out.grad[visited], grad(X0.astype(np.float64))[visited], rtol=1e-3)
    assert out.forward_passes == 1 + 2 * visited.sum()


def test_sign_coordinate_descent_keeps_the_better_step():
    fn, grad = quadratic()
    est = estimators.zo_sign_cd(1e-2, prob=1.0)
    out = est.estimate(FunctionObjective(fn, LAYOUT), X0, NAMES, seed=0, step=0)
    np.testing.assert_array_equal(out.grad, np.sign(grad(X0.astype(np.float64))))
    # at the minimum no step helps
    c_min = X0.astype(np.float64)
    fn2 = lambda P: np.sum((P - c_min) ** 2, axis=1)  # noqa: E731
    out = est.estimate(FunctionObjective(fn2, LAYOUT), c_min.astype(np.float32), NAMES, seed=0,
                       step=0)
    assert not out.grad.any()


def test_hybrid_switches_on_plateau_and_epoch():
    h = estimators.hybrid(4, 1e-2, patience=2)
    for epoch, val in enumerate([1.0, 0.9, 0.95, 0.93], start=1):
        h.observe(epoch, val)
    assert h.phase == 1
    h2 = estimators.hybrid(4, 1e-2, switch_epoch=3, patience=None)
    h2.observe(1, 1.0)
    h2.observe(2, 0.5)
    assert h2.phase == 0
    h2.observe(3, 0.1)
    assert h2.phase == 1
    h3 = estimators.hybrid(4, 1e-2)
    h3.load_state(h.state())
    assert h3.phase == 1
    fn, _ = quadratic()
    out = h.estimate(FunctionObjective(fn, LAYOUT), X0, NAMES, seed=0, step=0)
    assert set(np.unique(out.grad)) <= {-1.0, 0.0, 1.0}


@pytest.mark.parametrize("name", sorted(estimators.ESTIMATORS))
def test_conformance(name):
    """Every registered estimator: shape, dtype, segments, determinism, forward count, and a
    descent direction (an all-zero or wrong-signed estimate fails)."""
    fn, grad = quadratic()
    est = estimators.get(name)
    runs = []
    for _ in range(2):
        obj = FunctionObjective(fn, LAYOUT)
        out = est.estimate(obj, X0, ["0.b"], seed=7, step=2)
        runs.append(out)
        assert out.forward_passes == obj.forward_passes > 0
    out = runs[0]
    assert out.grad.shape == (D1 + D2,) and out.grad.dtype == np.float32
    assert np.all(np.isfinite(out.grad)) and not out.grad[:D1].any()
    assert np.array_equal(out.grad, runs[1].grad) and out.loss == pytest.approx(fn(X0[None])[0])
    assert out.grad[D1:] @ grad(X0.astype(np.float64))[D1:] > 0


def test_query_split_by_group_size():
    n = estimators.split_queries(20, [128, 3584, 3584, 128, 1024])
    assert n.sum() == 20 and n.min() >= 1 and n[1] == n[2] and n[1] > n[4] > 0
    assert list(estimators.split_queries(2, [10, 10, 10])) == [1, 1, 1]


def test_bad_estimator_arguments():
    with pytest.raises(ValueError, match="unknown estimator 'adam'; known estimators: rge, cge"):
        estimators.get("adam")
    with pytest.raises(ValueError, match="queries \\(N\\) must be an integer >= 1, got 0"):
        estimators.rge(0)
    with pytest.raises(ValueError, match="mu must be > 0, got 0"):
        estimators.rge(4, 0)
    with pytest.raises(ValueError, match="mu must be > 0, got -1"):
        estimators.cge(-1)
    with pytest.raises(ValueError, match="dist must be one of"):
        estimators.rge(4, dist="cauchy")
    with pytest.raises(ValueError, match="fraction must be in"):
        estimators.cge(fraction=0)
    fn, _ = quadratic()
    with pytest.raises(ValueError, match="unknown parameter segments"):
        estimators.rge(2).estimate(FunctionObjective(fn, LAYOUT), X0, ["0.c"], seed=0, step=0)
