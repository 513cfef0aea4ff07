"""Each problem's exact solution satisfies its own residual (exact derivatives here)."""

import math

import numpy as np
import pytest

from zotrain.pinn import problems


def fd_derivatives(f, x, h=1e-4):
    """Central differences of a float64 function: gradient and per-coordinate second."""
    B, d = x.shape
    grad, second = np.zeros((B, d)), np.zeros((B, d))
    f0 = f(x)
    for i in range(d):
        e = np.zeros(d)
        e[i] = h
        fp, fm = f(x + e), f(x - e)
        grad[:, i] = (fp - fm) / (2 * h)
        second[:, i] = (fp - 2 * f0 + fm) / h ** 2
    return f0, grad, second


def check(p, u, grad, second, x, tol):
    space = [i for i in range(p.dim) if i != p.time_index]
    u_t = grad[:, p.time_index] if p.time_index is not None else None
    extra = () if p.hessian is None else (second,)
    r = p.residual(x, u, grad, second[:, space].sum(1), u_t, *extra)
    assert np.abs(r).max() < tol


def test_hjb_exact_solution():
    p = problems.get("hjb20d")
    x = p.sample(50, seed=0)
    grad = np.concatenate([np.ones((50, 20)), -np.ones((50, 1))], axis=1)  # analytic
    check(p, p.exact(x), grad, np.zeros((50, 21)), x, 1e-12)
    np.testing.assert_allclose(p.transform(x, np.ones(50)), p.exact(x))  # NN = 1 is exact
    rel = np.linalg.norm(p.transform(x, np.zeros(50)) - p.exact(x)) / np.linalg.norm(p.exact(x))
    assert 0.03 < rel < 0.08  # the "NN = 0 gives about 5.4e-2"


def test_poisson_exact_solution():
    p = problems.get("poisson2d")
    x = p.sample(50, seed=1)
    s0, s1 = np.sin(math.pi * x[:, 0]), np.sin(math.pi * x[:, 1])
    c0, c1 = np.cos(math.pi * x[:, 0]), np.cos(math.pi * x[:, 1])
    grad = math.pi * np.stack([c0 * s1, s0 * c1], 1)
    second = -math.pi ** 2 * np.stack([s0 * s1, s0 * s1], 1)
    check(p, p.exact(x), grad, second, x, 1e-10)
    edge = x.copy()
    edge[:, 0] = 0.0
    assert np.abs(p.transform(edge, np.ones(50))).max() == 0.0


def test_heat_exact_solution():
    p = problems.get("heat100d")
    x = p.sample(20, seed=2)
    d = 100
    e = np.exp(-x[:, d])[:, None]
    grad = np.concatenate([e * np.cos(x[:, :d]) / d, -p.exact(x)[:, None]], axis=1)
    second = np.concatenate([-e * np.sin(x[:, :d]) / d, np.zeros((20, 1))], axis=1)
    check(p, p.exact(x), grad, second, x, 1e-12)
    start = x.copy()
    start[:, d] = 0.0
    np.testing.assert_allclose(p.transform(start, np.ones(20)), p.exact(start))


def test_black_scholes_exact_solution():
    p = problems.get("black-scholes")
    x = p.sample(50, seed=3)
    x = x[(x[:, 1] < 0.95) & (x[:, 0] > 20)]  # away from the payoff's kink at expiry
    u, grad, second = fd_derivatives(p.exact, x, h=1e-3)
    check(p, u, grad, second, x, 1e-4 * max(1.0, np.abs(u).max()))
    at_expiry = np.stack([np.array([80.0, 100.0, 130.0]), np.full(3, 1.0)], 1)
    np.testing.assert_allclose(p.exact(at_expiry), [0.0, 0.0, 30.0], atol=1e-4)
    # the hard constraint meets the payoff at expiry and 0 at S = 0 for any network output
    nn = np.random.default_rng(0).standard_normal(3)
    payoff = p.transform(at_expiry, nn)  # smoothed over 1 unit of S: log(2) at the strike
    np.testing.assert_allclose(payoff, [0.0, np.log(2.0), 30.0], atol=1e-6)
    t = np.array([0.0, 0.5, 0.9])
    at_zero = np.stack([np.zeros(3), t], 1)
    np.testing.assert_allclose(p.transform(at_zero, nn), 0.0, atol=1e-12)
    at_max = np.stack([np.full(3, 200.0), t], 1)
    np.testing.assert_allclose(p.transform(at_max, nn), 200.0 - 100.0 * np.exp(-0.05 * (1 - t)))
    np.testing.assert_allclose(p.exact(at_max), p.transform(at_max, nn), rtol=1e-5)  # put ~7e-4


def test_bsb100d_exact_solution():
    p = problems.get("bsb100d")
    x = p.sample(20, seed=4)
    d, a = 100, 0.05 + 0.4 ** 2
    e = np.exp(a * (1 - x[:, d]))[:, None]
    grad = np.concatenate([2 * e * x[:, :d], -a * p.exact(x)[:, None]], axis=1)
    second = np.concatenate([2 * e * np.ones((20, d)), a * a * p.exact(x)[:, None]], axis=1)
    check(p, p.exact(x), grad, second, x, 1e-9 * np.abs(p.exact(x)).max())
    at_expiry = x.copy()
    at_expiry[:, d] = 1.0
    np.testing.assert_allclose(p.transform(at_expiry, np.ones(20)), p.exact(at_expiry))
    # the points follow the process: X_0 = (1, 0.5, ...), a geometric Brownian motion
    early = p.sample(4000, seed=5)
    early = early[early[:, d] < 0.01]
    np.testing.assert_allclose(early[:, :d].mean(0), np.tile([1.0, 0.5], 50), rtol=0.1)


def test_hjb100d_reference():
    p = problems.get("hjb100d")
    origin = np.zeros((1, 101))
    assert p.exact(origin)[0] == pytest.approx(4.5901, abs=1e-4)  # Han, Jentzen and E (2018)
    x = p.sample(3, seed=6)
    rng = np.random.default_rng(7)
    for xi in x:  # Monte Carlo of the Cole-Hopf expectation, 200,000 draws
        xs = xi[:100] + np.sqrt(2 * (1 - xi[100])) * rng.standard_normal((200000, 100))
        mc = -np.log(np.mean(2 / (1 + np.sum(xs ** 2, 1))))
        assert p.exact(xi[None])[0] == pytest.approx(mc, abs=2e-3)
    # the reference satisfies the PDE (central differences of the quadrature)
    u, grad, second = fd_derivatives(p.exact, x, h=1e-3)
    check(p, u, grad, second, x, 1e-4)
    # u(T, x) is the terminal condition: the boundary data, given where the process ends
    x[:, 100] = 1.0
    np.testing.assert_allclose(p.exact(x), np.log((1 + np.sum(x[:, :100] ** 2, 1)) / 2))
    xb = p.sample_boundary(4000, seed=8)
    assert np.all(xb[:, 100] == 1.0) and np.std(xb[:, :100]) == pytest.approx(np.sqrt(2), rel=0.01)
    np.testing.assert_allclose(p.boundary(xb), p.exact(xb), rtol=1e-12)


@pytest.mark.parametrize("name", sorted(problems.PROBLEMS))
def test_transforms_are_affine_and_residuals_complex_differentiable(name):
    p = problems.get(name)
    x = p.sample(7, seed=1)
    nn = np.random.default_rng(2).standard_normal(7)
    if p.transform is not None:
        a, c = p.transform(x, np.zeros(7)), p.transform(x, np.ones(7)) - p.transform(x, np.zeros(7))
        np.testing.assert_allclose(p.transform(x, nn), a + c * nn, rtol=1e-12, atol=1e-12)
    rng = np.random.default_rng(3)
    u, grad, lap = rng.standard_normal(7), rng.standard_normal((7, p.dim)), rng.standard_normal(7)
    u_t = grad[:, p.time_index] if p.time_index is not None else None
    extra = () if p.hessian is None else (rng.standard_normal((7, p.dim)),)
    r = p.residual(x, u + 0j, grad + 0j, lap + 0j, None if u_t is None else u_t + 0j,
                   *(e + 0j for e in extra))
    np.testing.assert_allclose(r.real, p.residual(x, u, grad, lap, u_t, *extra))


def test_unknown_problem():
    with pytest.raises(ValueError, match="unknown problem 'navier'; known problems: hjb20d"):
        problems.get("navier")
