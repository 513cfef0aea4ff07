"""The built-in PDE problems (``zotrain pinn NAME``): HJB-20d, Black-Scholes, Poisson 2-D,
heat-100d, Black-Scholes-Barenblatt-100d and HJB-100d, each a ``Problem``
(``zotrain.pinn.problem``) with its exact solution and, where it is solved by
hand-measured options, its ``recipe``."""

import math

import numpy as np

from .problem import Problem, ProblemError  # noqa: F401  (here before; ProblemError too)


def _column(g, xs, i):
    return g.op("Gather", [xs, g.const(i)], axis=2)  # (batch, M)


def _columns(g, xs, stop):
    return g.op("Slice", [xs, g.const([0]), g.const([stop]), g.const([2])])


def _scalar(g, v):
    return g.const(v, np.float32)


def _hjb20d_onnx(g, xs):
    a = g.op("ReduceSum", [_columns(g, xs, 20), g.const([2])], keepdims=0)
    return a, g.op("Sub", [_scalar(g, 1.0), _column(g, xs, 20)])


def _poisson2d_onnx(g, xs):
    x0, x1 = _column(g, xs, 0), _column(g, xs, 1)
    one = _scalar(g, 1.0)
    c = g.op("Mul", [g.op("Mul", [x0, g.op("Sub", [one, x0])]),
                     g.op("Mul", [x1, g.op("Sub", [one, x1])])])
    return None, c


def _heat100d_onnx(g, xs):
    a = g.op("ReduceMean", [g.op("Sin", [_columns(g, xs, 100)])], axes=[2], keepdims=0)
    return a, _column(g, xs, 100)


def _black_scholes_onnx(g, xs):
    K, r, T = _BS["K"], _BS["r"], _BS["T"]
    S_max, eps, scale = BS_ANSATZ["S_max"], BS_ANSATZ["eps"], BS_ANSATZ["scale"]
    S, t = _column(g, xs, 0), _column(g, xs, 1)

    def payoff(node):
        z = g.op("Div", [g.op("Sub", [node, _scalar(g, K)]), _scalar(g, eps)])
        return g.op("Mul", [g.op("Softplus", [z]), _scalar(g, eps)])

    tau = g.op("Sub", [_scalar(g, T), t])
    q = g.op("Div", [S, _scalar(g, S_max)])
    pay_max = eps * np.logaddexp(0.0, (S_max - K) / eps)
    disc = g.op("Mul", [_scalar(g, K), g.op("Exp", [g.op("Mul", [_scalar(g, -r), tau])])])
    edge = g.op("Sub", [_scalar(g, S_max - pay_max), disc])
    a = g.op("Add", [payoff(S), g.op("Mul", [q, edge])])
    c = g.op("Mul", [g.op("Mul", [tau, q]),
                     g.op("Mul", [g.op("Sub", [_scalar(g, 1.0), q]), _scalar(g, scale)])])
    return a, c


def _hjb20d():
    d = 20

    def residual(x, u, grad, lap, u_t):
        return u_t + lap - 0.05 * np.sum(grad[:, :d] ** 2, axis=1) + 2.0

    return Problem("hjb20d", d + 1, d, (0.0,) * (d + 1), (1.0,) * (d + 1), residual,
                   exact=lambda x: x[:, :d].sum(1) + 1.0 - x[:, d],
                   transform=lambda x, nn: x[:, :d].sum(1) + (1.0 - x[:, d]) * nn, sigma=0.1,
                   transform_onnx=_hjb20d_onnx, whole_space=True)


_BS = dict(K=100.0, r=0.05, sigma=0.2, T=1.0)
BS_ANSATZ = dict(S_max=200.0, eps=1.0, scale=40.0)  # the hard constraint's constants


def black_scholes_call(S, t, K=_BS["K"], r=_BS["r"], sigma=_BS["sigma"], T=_BS["T"]):
    """Closed-form price of a European call."""
    from scipy.special import ndtr

    tau = np.maximum(T - t, 1e-12)
    S = np.maximum(S, 1e-12)
    d1 = (np.log(S / K) + (r + sigma ** 2 / 2) * tau) / (sigma * np.sqrt(tau))
    return S * ndtr(d1) - K * np.exp(-r * tau) * ndtr(d1 - sigma * np.sqrt(tau))


def _black_scholes():
    r, s = _BS["r"], _BS["sigma"]

    def residual(x, u, grad, lap, u_t):
        S = x[:, 0]
        return u_t + 0.5 * s ** 2 * S ** 2 * lap + r * S * grad[:, 0] - r * u

    K, T = _BS["K"], _BS["T"]
    S_max, eps, scale = BS_ANSATZ["S_max"], BS_ANSATZ["eps"], BS_ANSATZ["scale"]

    def payoff(S):  # max(S - K, 0) smoothed over eps (analytic: complex-step derivatives)
        return eps * np.log(1.0 + np.exp((S - K) / eps))

    def transform(x, nn):
        """Meets the (smoothed) payoff at expiry, 0 at S = 0 and S - K exp(-r (T - t)) at
        S_max; nn carries about K / 10 per unit."""
        S, t = x[:, 0], x[:, 1]
        q = S / S_max
        edge = S_max - K * np.exp(-r * (T - t)) - payoff(S_max)
        return payoff(S) + q * edge + (T - t) * q * (1 - q) * scale * nn

    return Problem("black-scholes", 2, 1, (0.0, 0.0), (S_max, T), residual,
                   exact=lambda x: black_scholes_call(x[:, 0], x[:, 1]), transform=transform,
                   sigma=0.005, method="sparse-grid", omega=5.0, transform_onnx=_black_scholes_onnx)


def _poisson2d():
    def source(x):
        return 2 * math.pi ** 2 * np.sin(math.pi * x[:, 0]) * np.sin(math.pi * x[:, 1])

    return Problem("poisson2d", 2, None, (0.0, 0.0), (1.0, 1.0),
                   residual=lambda x, u, grad, lap, u_t: lap + source(x),
                   exact=lambda x: np.sin(math.pi * x[:, 0]) * np.sin(math.pi * x[:, 1]),
                   transform=lambda x, nn: x[:, 0] * (1 - x[:, 0]) * x[:, 1] * (1 - x[:, 1]) * nn,
                   sigma=0.01, method="sparse-grid", transform_onnx=_poisson2d_onnx)


def _recipe(**more):
    """The sizes the 100-D problems were measured with (the model for their dimension:
    one hidden layer trained by Levenberg-Marquardt steps on the coordinates and the
    squares): 256 points per step, the head solved on 1,024 every 10 iterations; ``more``
    adds or replaces sizes (heat100d: 512 points with 3 face points each, 36 steps).  No
    method option: heat100d's face error's weight is the adaptive default (until
    2026-12-07 the recipe weighted it 1000x after 30 steps on the face data alone), its
    inputs the default's (until 2026-12-08 the recipe named them); docs/benchmarks.md."""
    return {**dict(points=256, head_every=10, head_points=1024), **more}


def _heat100d():
    d = 100
    return Problem("heat100d", d + 1, d, (0.0,) * (d + 1), (1.0,) * (d + 1),
                   residual=lambda x, u, grad, lap, u_t: u_t - lap,
                   exact=lambda x: np.exp(-x[:, d]) * np.sin(x[:, :d]).mean(1),
                   transform=lambda x, nn: np.sin(x[:, :d]).mean(1) + x[:, d] * nn,
                   sigma=0.05,
                   boundary=lambda x: np.exp(-x[:, d]) * np.sin(x[:, :d]).mean(1),
                   transform_onnx=_heat100d_onnx, recipe=_recipe(
                       points=512, boundary_fraction=3.0, iters=36, eval_every=5))


def _bsb100d():
    """Black-Scholes-Barenblatt in 100-D (Raissi, "Forward-backward stochastic neural
    networks", 2018): u_t + s^2/2 sum_i x_i^2 u_ii - r (u - x . grad u) = 0, u(T, x) =
    |x|^2, exact u = exp((r + s^2)(T - t)) |x|^2; points where dX = s diag(X) dW from
    X_0 = (1, 0.5, 1, 0.5, ...) goes."""
    d, r, s, T = 100, 0.05, 0.4, 1.0
    x0 = np.tile([1.0, 0.5], d // 2)

    def residual(x, u, grad, lap, u_t, hess):
        X = x[:, :d]
        return u_t + 0.5 * s ** 2 * np.sum(X ** 2 * hess[:, :d], axis=1) \
            - r * (u - np.sum(X * grad[:, :d], axis=1))

    def sampler(n, rng):
        t = T * rng.random(n)
        w = rng.standard_normal((n, d)) * np.sqrt(t)[:, None]
        return np.column_stack([x0 * np.exp(s * w - 0.5 * s ** 2 * t[:, None]), t])

    return Problem("bsb100d", d + 1, d, (0.0,) * d + (0.0,), (2.0,) * d + (T,), residual,
                   exact=lambda x: np.exp((r + s ** 2) * (T - x[:, d])) * np.sum(x[:, :d] ** 2, 1),
                   transform=lambda x, nn: np.sum(x[:, :d] ** 2, 1) + (T - x[:, d]) * nn,
                   sigma=0.01, method="radial", hessian="diagonal", sampler=sampler,
                   whole_space=True, transform_onnx=_bsb100d_onnx, recipe=_recipe())


def _sum_squares(g, xs, stop):
    cols = _columns(g, xs, stop)
    return g.op("ReduceSum", [g.op("Mul", [cols, cols]), g.const([2])], keepdims=0)


def _bsb100d_onnx(g, xs):
    return _sum_squares(g, xs, 100), g.op("Sub", [_scalar(g, 1.0), _column(g, xs, 100)])


def hjb100d_reference(x, nodes=48):
    """Cole-Hopf: u(t, x) = -ln E[2 / (1 + |x + sqrt(2 (T - t)) xi|^2)], xi ~ N(0, I_100),
    T = 1, by a product rule in the two variables the expectation depends on (the
    component of xi along x, Gauss-Hermite; the chi-square of the other 99,
    generalised Gauss-Laguerre)."""
    from scipy.special import roots_genlaguerre, roots_hermitenorm

    d = 100
    x = np.asarray(x, np.float64)
    s2 = 2.0 * (1.0 - x[:, d])
    a = np.linalg.norm(x[:, :d], axis=1)
    h, wh = roots_hermitenorm(nodes)
    wh = wh / wh.sum()
    v, wv = roots_genlaguerre(nodes, (d - 1) / 2 - 1)
    wv = wv / wv.sum()  # V = 2 v ~ chi-square with d - 1 degrees of freedom
    s = np.sqrt(s2)[:, None, None]
    sq = (a[:, None, None] + s * h[None, :, None]) ** 2 + s ** 2 * 2 * v[None, None, :]
    mean = np.einsum("bij,i,j->b", 2.0 / (1.0 + sq), wh, wv)
    return -np.log(mean)


def _hjb100d():
    """The Hamilton-Jacobi-Bellman equation of Han, Jentzen and E (PNAS 2018) in 100-D:
    u_t + Lap u - |grad u|^2 = 0, u(T, x) = ln((1 + |x|^2) / 2), T = 1; u(0, 0) = 4.5901.
    Points where X_t = sqrt(2) W_t (from 0) goes; the reference is Cole-Hopf's.  The
    terminal condition is data at t = T, at the points where the process ends (X_T ~
    N(0, 2T I)).  As a hard constraint, ``g(x) + (T - t) nn``, it would make the network
    cancel g's curvature near x = 0 (a Laplacian of 2d = 200) at every t, though the
    solution is smooth there and the process does not reach x = 0 at T."""
    d, T = 100, 1.0

    def process_at(t, rng):  # X_t ~ N(0, 2t I) at the times t
        return np.column_stack([rng.standard_normal((len(t), d)) * np.sqrt(2 * t)[:, None], t])

    def sampler(n, rng):
        return process_at(T * rng.random(n), rng)

    def terminal_points(n, rng):
        return process_at(np.full(n, T), rng)

    return Problem("hjb100d", d + 1, d, (-4.0,) * d + (0.0,), (4.0,) * d + (T,),
                   residual=lambda x, u, grad, lap, u_t: u_t + lap - np.sum(grad[:, :d] ** 2, 1),
                   exact=hjb100d_reference,
                   boundary=lambda x: np.log((1 + np.sum(x[:, :d] ** 2, 1)) / 2),
                   boundary_sampler=terminal_points, sigma=0.01, method="radial",
                   sampler=sampler, whole_space=True, recipe=_recipe())


PROBLEMS = {"hjb20d": _hjb20d, "black-scholes": _black_scholes, "poisson2d": _poisson2d,
            "heat100d": _heat100d, "bsb100d": _bsb100d, "hjb100d": _hjb100d}


def get(name):
    if name not in PROBLEMS:
        raise ValueError(f"unknown problem {name!r}; known problems: {', '.join(PROBLEMS)}")
    return PROBLEMS[name]()
