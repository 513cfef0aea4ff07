"""Stein derivative estimators on sparse grids and Monte Carlo."""

import numpy as np
import pytest

from zotrain.pinn.derivatives import SteinRule, frame_rule, rule, shifted_inputs, \
    smoothed_derivatives, symmetric_pairs, value_weights
from zotrain.pinn.sparse_grid import smolyak_gauss_hermite


def quadratic(d, rng):
    A = rng.standard_normal((d, d))
    H = A + A.T
    b = rng.standard_normal(d)
    f = lambda X: 0.5 * np.einsum("ni,ij,nj->n", X, H, X) + X @ b + 1.0  # noqa: E731
    return f, H, b


@pytest.mark.parametrize("method", ["sparse-grid", "degree5"])
@pytest.mark.parametrize("d", [2, 5, 21])
def test_exact_on_quadratics_with_the_sparse_grid(d, method, rng):
    f, H, b = quadratic(d, rng)
    x = rng.standard_normal((4, d))
    sigma = 0.3
    out = smoothed_derivatives(f, x, sigma, rule(d, method, level=3), time_index=d - 1)
    # for a quadratic the smoothed function is f + sigma^2 tr(H) / 2
    np.testing.assert_allclose(out.u, f(x) + sigma ** 2 * np.trace(H) / 2, atol=1e-8)
    np.testing.assert_allclose(out.grad, x @ H + b, atol=1e-8)
    np.testing.assert_allclose(out.lap, np.trace(H) - H[d - 1, d - 1], atol=1e-8)
    np.testing.assert_allclose(out.u_t, (x @ H + b)[:, d - 1], atol=1e-8)


@pytest.mark.parametrize("method", ["sparse-grid", "degree5"])
@pytest.mark.parametrize("d", [2, 5, 21])
def test_hessian_forms_exact_on_quadratics(d, method, rng):
    """The Hessian's diagonal and its mixed entries, in the coordinates x = scale * y."""
    f, H, b = quadratic(d, rng)
    scale = rng.uniform(0.5, 2.0, d)
    y = rng.standard_normal((3, d))
    g = lambda Y: f(Y * scale)  # noqa: E731
    stein = rule(d, method, level=3)
    full = smoothed_derivatives(g, y, 0.3, stein, time_index=0, scale=scale, hessian="full")
    diag = smoothed_derivatives(g, y, 0.3, stein, time_index=0, scale=scale, hessian="diagonal")
    np.testing.assert_allclose(full.hess, np.broadcast_to(H, (3, d, d)), atol=1e-8)
    np.testing.assert_allclose(diag.hess, np.broadcast_to(np.diag(H), (3, d)), atol=1e-8)
    np.testing.assert_allclose(diag.lap, np.trace(H) - H[0, 0], atol=1e-8)
    for a, c in zip(diag[:4], full[:4]):  # u, grad, Laplacian, u_t do not change
        np.testing.assert_allclose(a, c, atol=1e-8)
    assert smoothed_derivatives(g, y, 0.3, stein).hess is None
    with pytest.raises(ValueError, match="hessian must be one of"):
        smoothed_derivatives(g, y, 0.3, stein, hessian="mixed")


def test_mixed_second_derivatives_of_a_product(rng):
    """d2/dx0 dx1 of sin(x0) cos(x1): error O(sigma^2) on a fine sparse grid."""
    f = lambda X: np.sin(X[:, 0]) * np.cos(X[:, 1])  # noqa: E731
    x = rng.standard_normal((4, 2))
    exact = -np.cos(x[:, 0]) * np.sin(x[:, 1])
    errs = [np.abs(smoothed_derivatives(f, x, s, rule(2, level=6), hessian="full").hess[:, 0, 1]
                   * np.exp(s ** 2) - exact).max() for s in (0.2, 0.1)]
    assert errs[1] < 1e-6  # smoothing multiplies this product of waves by exp(-sigma^2)
    assert smoothed_derivatives(f, x, 0.2, rule(2, level=6), hessian="full").hess[:, 0, 1] == \
        pytest.approx(exact * np.exp(-0.04), rel=1e-6)


@pytest.mark.parametrize("d,time_index", [(3, None), (6, 5), (6, 0), (40, 39)])
@pytest.mark.parametrize("seed", [0, 1])
def test_radial_spherical_rule_exact_on_quadratics(d, time_index, seed, rng):
    """Any random frames: u, grad, u_t and the Laplacian over the space coordinates exact."""
    f, H, b = quadratic(d, rng)
    x = rng.standard_normal((4, d))
    stein = rule(d, "radial", samples=1, seed=seed, time_index=time_index)
    n = d - (time_index is not None)
    assert stein.evaluations == 4 * n * (1 + (time_index is not None)) + 1
    out = smoothed_derivatives(f, x, 0.3, stein, time_index=time_index)
    space = [i for i in range(d) if i != time_index]
    np.testing.assert_allclose(out.u, f(x) + 0.3 ** 2 * np.trace(H) / 2, atol=1e-9)
    np.testing.assert_allclose(out.grad, x @ H + b, atol=1e-9)
    np.testing.assert_allclose(out.lap, np.trace(H[np.ix_(space, space)]), atol=1e-9)


def test_radial_spherical_error_on_a_smooth_function_is_below_monte_carlo(rng):
    """101-D at equal evaluations, on f = sum_i sin(x_i) / d (as heat100d): the rule's
    Laplacian error is far below Monte Carlo's."""
    d = 101
    f = lambda X: np.sin(X[:, :100]).mean(1)  # noqa: E731
    x = rng.random((8, d))
    sigma = 0.05
    exact = -np.sin(x[:, :100]).mean(1) * np.exp(-sigma ** 2 / 2)  # Laplacian of u_sigma
    rad = rule(d, "radial", samples=400, seed=0, time_index=100)
    mc = rule(d, "stein-mc", samples=(rad.evaluations - 1) // 2, seed=0)
    err = [np.abs(smoothed_derivatives(f, x, sigma, r, time_index=100).lap - exact).max()
           for r in (rad, mc)]
    assert err[0] < 1e-3 * np.abs(exact).max() and err[0] < err[1] / 100, err


def test_radial_spherical_bad_input():
    with pytest.raises(ValueError, match="needs >= 3 space coordinates, got 2"):
        rule(3, "radial", time_index=0)


def test_error_on_a_smooth_function_falls_as_sigma_squared(rng):
    d = 3
    a = np.array([0.7, -0.4, 0.5])
    f = lambda X: np.sin(X @ a)  # noqa: E731
    x = rng.standard_normal((5, d))
    stein = rule(d, "sparse-grid", level=6)
    errs = []
    for sigma in (0.2, 0.1):
        out = smoothed_derivatives(f, x, sigma, stein)
        errs.append((np.abs(out.grad - np.cos(x @ a)[:, None] * a).max(),
                     np.abs(out.lap + np.sin(x @ a) * (a @ a)).max()))
    for k in range(2):
        assert 3.5 < errs[0][k] / errs[1][k] < 4.5, errs


def test_monte_carlo_is_unbiased_but_noisy(rng):
    d = 4
    f, H, b = quadratic(d, rng)
    x = rng.standard_normal((2, d))
    grads = np.stack([smoothed_derivatives(f, x, 0.2, rule(d, "stein-mc", samples=32, seed=s)).grad for s in range(400)])
    exact = x @ H + b
    se = grads.std(0) / np.sqrt(len(grads))
    assert np.all(np.abs(grads.mean(0) - exact) < 4 * se + 1e-12)
    assert grads.std(0).max() > 1e-3  # Monte Carlo is not exact


def test_level_2_is_not_exact_for_the_laplacian(rng):
    f, H, b = quadratic(5, rng)
    out = smoothed_derivatives(f, rng.standard_normal((2, 5)), 0.3, rule(5, level=2))
    assert np.abs(out.lap - np.trace(H)).max() > 1e-3


def test_symmetric_rules_evaluate_each_point_once(rng):
    d = 4
    nodes, weights = smolyak_gauss_hermite(d, 3)
    stein = rule(d, level=3)
    assert stein.evaluations == len(weights)  # pairs + the origin
    f, H, b = quadratic(d, rng)
    x = rng.standard_normal((3, d))
    # the full rule, applied term by term, gives the same forms
    full = SteinRule(np.asarray(nodes), np.asarray(weights), 0.0)
    for a, c in zip(smoothed_derivatives(f, x, 0.4, stein, 0, hessian="full"),
                    smoothed_derivatives(f, x, 0.4, full, 0, hessian="full")):
        np.testing.assert_allclose(a, c, atol=1e-9)
    with pytest.raises(ValueError, match="not symmetric"):
        symmetric_pairs(np.array([[1.0, 0.0]]), np.array([1.0]))


def test_bad_input():
    stein = rule(3)
    f = lambda X: X.sum(1)  # noqa: E731
    with pytest.raises(ValueError, match="collocation points must be \\(B, 3\\)"):
        smoothed_derivatives(f, np.zeros((2, 4)), 0.1, stein)
    with pytest.raises(ValueError, match="sigma must be > 0"):
        smoothed_derivatives(f, np.zeros((2, 3)), 0.0, stein)
    with pytest.raises(ValueError, match="unknown derivative method 'autodiff'"):
        rule(3, "autodiff")


@pytest.mark.parametrize("d", [1, 3, 21, 101])
@pytest.mark.parametrize("seed", [0, 1])
def test_frame_rule_smooths_cubics_exactly(d, seed, rng):
    """The value rule of boundary points: 2 d + 1 evaluations, u exact for polynomials of degree
    <= 3 (a quadratic and the cube of a linear form, with their Gaussian means by hand)."""
    H = rng.standard_normal((d, d))
    H = H + H.T
    b, c = rng.standard_normal(d), rng.standard_normal(d) / np.sqrt(d)
    f = lambda X: 0.5 * np.einsum("bi,ij,bj->b", X, H, X) + X @ b + (X @ c) ** 3  # noqa
    x = rng.standard_normal((5, d))
    sigma = 0.3
    exact = f(x) + sigma ** 2 * np.trace(H) / 2 + 3 * (x @ c) * sigma ** 2 * (c @ c)
    stein = frame_rule(d, seed)
    assert stein.evaluations == 2 * d + 1 and stein.center == 0.0
    pts = shifted_inputs(x, sigma, stein)
    u = f(pts.reshape(-1, d)).reshape(pts.shape[:2]) @ value_weights(stein)
    np.testing.assert_allclose(u, exact, rtol=1e-10, atol=1e-10)
    # not a derivative rule: its Laplacian of a quadratic is off
    lap = smoothed_derivatives(f, x, sigma, stein).lap
    assert np.abs(lap - np.trace(H) - 6 * (x @ c) * (c @ c)).max() > 1e-3


def test_frame_rule_matches_the_derivative_rule_on_a_smooth_function(rng):
    """101-D, sigma 0.05, f = mean sin (heat100d's solution in space): the frame's u and the
    radial rule's (801 evaluations) both within 1e-7 of the exact smoothed value."""
    d = 101
    f = lambda X: np.sin(X[:, :100]).mean(1)  # noqa: E731
    x = rng.random((16, d))
    sigma = 0.05
    exact = np.sin(x[:, :100]).mean(1) * np.exp(-sigma ** 2 / 2)
    for stein in (frame_rule(d, 3), rule(d, "radial", samples=400, seed=0, time_index=100)):
        pts = shifted_inputs(x, sigma, stein)
        u = f(pts.reshape(-1, d)).reshape(pts.shape[:2]) @ value_weights(stein)
        assert np.abs(u - exact).max() < 1e-7 * np.abs(exact).max()


@pytest.mark.parametrize("dim", [0, -2, 2.5, True, "3"])
def test_frame_rule_bad_dim(dim):
    with pytest.raises(ValueError, match="dim must be an integer >= 1"):
        frame_rule(dim)
