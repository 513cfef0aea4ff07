"""PDE problems declared as data: domain, residual, conditions, exact solution.

A residual takes ``(x, u, grad, lap, u_t)`` (arrays over B collocation points;
``grad`` over every input coordinate, ``lap`` over the space coordinates) and
returns ``(B,)``; zero where the PDE holds.  A problem with ``hessian =
"diagonal"`` (``"full"``) also gets ``hess``, every ``u_{x_i x_i}`` ``(B, d)``
(the whole Hessian ``(B, d, d)``), from the same Stein forms.  ``transform(x, nn)`` is an
optional hard constraint mapping a network's output to a function that meets
the boundary or terminal condition exactly; it must be affine in ``nn`` (the
exact head solve relies on it), and residuals must be analytic expressions
(complex-step differentiable: no ``abs``, ``maximum`` or comparisons).
``boundary`` gives u on the space boundary where the transform does not
impose it (a well-posed heat problem needs it); the loss then adds the mean
squared boundary error of the smoothed network.  ``boundary_sampler(n, rng)``
draws the points where ``boundary`` holds instead of the box's faces: a
terminal or initial condition given as data rather than by a transform (at
``t = T``, where a diffusion process ends), or a curved boundary.
``transform_onnx(g, xs)`` gives the same constraint as ONNX nodes ``(a, c)``
(``transform(x, nn) = a + c nn``; ``a`` may be None) at points ``xs``
``(batch, M, d)``, built with the export graph's ``op``/``const``: what
``zotrain export`` writes into the smoothed predictor.
``sigma`` is the default smoothing scale, in units of the box's widths,
``method`` the default derivative rule, and ``omega`` the frequency scale of
the default model's first (Sin) layer.  ``exact`` is optional: without it a
run reports the residual (and boundary) losses instead of the error.
``whole_space`` marks a PDE posed in all of R^d; ``sampler(n, rng)`` draws its
points (for instance where a diffusion process goes) instead of uniformly in the
box, which then only scales the network's inputs and the smoothing.
``recipe`` holds the training options (``PinnConfig`` fields) the problem's author
found to suit it; ``PinnConfig.for_problem`` and ``zotrain pinn`` start from it, and
options the caller gives override it.

A ``Problem`` checks its fields when built and its functions (``check``)
before training: a ``ProblemError`` names the problem and what is wrong.
"""

import math
import warnings
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

from zotrain.base import ZotrainError


class ProblemError(ZotrainError):
    """A ``Problem`` that cannot be trained as declared; the message names it."""


@dataclass(frozen=True)
class Problem:
    name: str
    dim: int  # inputs, time included
    time_index: Optional[int]
    lower: tuple  # box domain, per input
    upper: tuple
    residual: Callable
    exact: Optional[Callable] = None  # without it, runs report residual and boundary losses
    transform: Optional[Callable] = None
    sigma: float = 0.05
    method: str = "degree5"
    omega: float = 1.0  # frequency scale of the default model's first layer
    boundary: Optional[Callable] = None  # u on the space boundary, when not hard-constrained
    transform_onnx: Optional[Callable] = None  # (g, xs) -> ONNX nodes (a, c) of the transform
    whole_space: bool = False  # the PDE holds in all of R^d; the box is where it is sampled
    hessian: Optional[str] = None  # "diagonal" or "full": the residual gets a 6th argument
    sampler: Optional[Callable] = None  # (n, rng) -> points, instead of uniform in the box
    boundary_sampler: Optional[Callable] = None  # (n, rng) -> where `boundary` holds, instead
    # of the box's space faces
    recipe: Optional[dict] = field(default=None, hash=False)  # training options that suit it

    def __post_init__(self):
        def fail(what):
            raise ProblemError(f"problem {self.name!r}: {what}")

        if not isinstance(self.name, str) or not self.name:
            raise ProblemError(f"a problem needs a non-empty name, got {self.name!r}")
        if isinstance(self.dim, bool) or not isinstance(self.dim, int) or self.dim < 1:
            fail(f"dim must be an integer >= 1, got {self.dim!r}")
        if self.time_index is not None and self.time_index not in range(self.dim):
            fail(f"time_index must be None or in 0..{self.dim - 1}, got {self.time_index!r}")
        lo, hi = np.asarray(self.lower, float), np.asarray(self.upper, float)
        if lo.shape != (self.dim,) or hi.shape != (self.dim,):
            fail(f"lower and upper must hold dim = {self.dim} numbers each, got "
                 f"{len(np.atleast_1d(lo))} and {len(np.atleast_1d(hi))}")
        if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))):
            fail(f"lower and upper must be finite numbers, got {tuple(lo)} and {tuple(hi)}")
        bad = np.flatnonzero(~(lo < hi))
        if bad.size:
            i = int(bad[0])
            fail(f"the domain is empty along input {i}: lower {lo[i]} >= upper {hi[i]}")
        for field in ("residual", "exact", "transform", "boundary", "transform_onnx", "sampler",
                      "boundary_sampler"):
            f = getattr(self, field)
            if (f is not None or field == "residual") and not callable(f):
                fail(f"{field} must be callable, got {type(f).__name__}")
        if not self.sigma > 0:
            fail(f"sigma must be > 0, got {self.sigma!r}")
        if self.hessian not in (None, "diagonal", "full"):
            fail(f"hessian must be None, 'diagonal' or 'full', got {self.hessian!r}")
        if self.boundary_sampler is not None and self.boundary is None:
            fail("boundary_sampler draws the points of boundary data, but boundary (u there) "
                 "is not given")
        if self.recipe is not None and not (isinstance(self.recipe, dict) and
                                            all(isinstance(k, str) for k in self.recipe)):
            fail(f"recipe must be a dict of training options by name, got {self.recipe!r}")

    def residual_of(self, x, f):
        """The residual at ``x`` of the smoothed fields ``f`` (``derivatives.Smoothed``)."""
        if self.hessian is None:
            return self.residual(x, f.u, f.grad, f.lap, f.u_t)
        return self.residual(x, f.u, f.grad, f.lap, f.u_t, f.hess)

    def check(self, n=8, seed=0):
        """Call the problem's functions on ``n`` points and raise a ``ProblemError`` naming
        what returned the wrong shape or a transform that is not affine in ``nn``; warn
        when a diffusive PDE has neither a hard constraint nor boundary data."""
        def fail(what):
            raise ProblemError(f"problem {self.name!r}: {what}")

        x = self.sample(n, seed)
        if x.shape != (n, self.dim) or not np.all(np.isfinite(x)):
            fail(f"sampler must return {n} finite points of dim {self.dim}, got {x.shape}")
        rng = np.random.default_rng([seed, 3])
        d = self.dim
        u, grad, lap, u_t = (rng.standard_normal(s) for s in ((n,), (n, d), (n,), (n,)))
        hess = {None: None, "diagonal": rng.standard_normal((n, d)),
                "full": rng.standard_normal((n, d, d))}[self.hessian]
        extra = () if self.hessian is None else (hess,)

        def returns(field, *args):
            out = np.asarray(getattr(self, field)(*args))
            if out.shape != (n,):
                fail(f"{field} must return one value per point, shape ({n},) for {n} points; "
                     f"got {out.shape}")
            if not np.all(np.isfinite(out)):
                fail(f"{field} returned non-finite values at points of the domain")
            return out

        r = returns("residual", x, u, grad, lap, u_t, *extra)
        if self.exact is not None:
            returns("exact", x)
        if self.boundary is not None:
            xb = self.sample_boundary(n, seed)  # the box's faces are right once `sample` is
            if self.boundary_sampler is not None and (
                    xb.shape != (n, self.dim) or not np.all(np.isfinite(xb))):
                fail(f"boundary_sampler must return {n} finite points of dim {self.dim}, got "
                     f"{xb.shape}")
            returns("boundary", xb)
        if self.transform is not None:
            t0, t1, t3 = (returns("transform", x, np.full(n, v)) for v in (0.0, 1.0, 3.0))
            nn = rng.standard_normal(n)
            tn = returns("transform", x, nn)
            scale = 1.0 + np.abs(t0).max() + np.abs(t1).max()
            if max(np.abs(t3 - (t0 + 3.0 * (t1 - t0))).max(),
                   np.abs(tn - (t0 + nn * (t1 - t0))).max()) > 1e-8 * scale:
                fail("transform(x, nn) must be affine in nn (a(x) + c(x) * nn): the exact head "
                     "solve and the export rely on it")
        diffusive = np.abs(returns("residual", x, u, grad, lap + 1.0, u_t, *extra) - r).max() > 0
        if self.hessian == "diagonal":
            diffusive |= np.abs(returns("residual", x, u, grad, lap, u_t, hess + 1.0) - r).max() > 0
        elif self.hessian == "full":
            eye = np.eye(d)[None]
            diffusive |= np.abs(returns("residual", x, u, grad, lap, u_t, hess + eye) - r).max() > 0
        if diffusive and not self.whole_space and self.boundary is None and \
                not self._constrains_space_boundary(n, seed):
            warnings.warn(f"problem {self.name!r}: the residual has a Laplacian term, but "
                          "u is given on the space boundary neither by a hard constraint "
                          "(transform with c(x) = 0 there) nor by boundary data: on a bounded "
                          "domain the PDE is not well posed; give boundary= or such a "
                          "transform (or whole_space=True if the box only samples R^d)",
                          UserWarning, stacklevel=2)

    def _constrains_space_boundary(self, n, seed):
        """Whether the transform fixes u on the space boundary (c(x) = 0 there)."""
        if self.transform is None:
            return False
        xb = self.sample_boundary(n, seed)
        c = np.asarray(self.transform(xb, np.ones(n))) - np.asarray(self.transform(xb, np.zeros(n)))
        return bool(np.abs(c).max() <= 1e-12)

    def sample(self, n, seed):
        """``n`` points of the domain (seeded): uniform in the box, or the ``sampler``'s."""
        rng = np.random.default_rng(seed)
        if self.sampler is not None:
            return np.asarray(self.sampler(n, rng), np.float64)
        lo, hi = np.asarray(self.lower), np.asarray(self.upper)
        return lo + (hi - lo) * rng.random((n, self.dim))

    def sample_boundary(self, n, seed):
        """``n`` points where ``boundary`` holds (seeded): the ``boundary_sampler``'s, or
        uniform on the space boundary (one space coordinate on a face)."""
        rng = np.random.default_rng([*np.atleast_1d(seed), 2])
        if self.boundary_sampler is not None:
            return np.asarray(self.boundary_sampler(n, rng), np.float64)
        x = self.sample(n, seed)
        space = [i for i in range(self.dim) if i != self.time_index]
        face = rng.choice(space, size=n)
        side = rng.integers(0, 2, size=n)
        x[np.arange(n), face] = np.where(side, np.asarray(self.upper)[face],
                                         np.asarray(self.lower)[face])
        return x


# -- hard constraints as ONNX nodes (see transform_onnx) --------------------

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

    def payoff(S):  # max(S - K, 0) smoothed over eps (the Stein rule cannot see a kink)
        return eps * np.logaddexp(0.0, (S - K) / eps)

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


def _lm_recipe(**more):
    """What the 100-D problems train best with (docs/benchmarks.md, "PINNs that learn"): one
    TT hidden layer and the head by Levenberg-Marquardt steps, on each coordinate and its
    square, 256 points per step, the head solved on 1,024 every 10 iterations; ``more``
    adds or replaces options (heat100d: 2,048 points with 3 face points each, valued by
    the frame rule, 30 steps on the face data first, then the PDE's steps with the face
    error weighted 1000x; docs/benchmarks.md, "Boundary values by a cheaper rule" and
    "heat100d on three seeds")."""
    return {**dict(depth=1, body="gauss-newton", points=256, head_every=10, head_points=1024,
                   inputs="quadratic"), **more}


def _heat100d():
    d = 100
    return Problem("heat100d", d + 1, d, (0.0,) * (d + 1), (1.0,) * (d + 1),
                   residual=lambda x, u, grad, lap, u_t: u_t - lap,
                   exact=lambda x: np.exp(-x[:, d]) * np.sin(x[:, :d]).mean(1),
                   transform=lambda x, nn: np.sin(x[:, :d]).mean(1) + x[:, d] * nn,
                   sigma=0.05, method="stein-mc",
                   boundary=lambda x: np.exp(-x[:, d]) * np.sin(x[:, :d]).mean(1),
                   transform_onnx=_heat100d_onnx, recipe=_lm_recipe(
                       derivatives="radial", points=2048, boundary_fraction=3.0,
                       boundary_rule="frame", boundary_steps=30, boundary_weight=1000.0,
                       iters=36, eval_every=5))


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
                   whole_space=True, transform_onnx=_bsb100d_onnx, recipe=_lm_recipe())


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
                   sampler=sampler, whole_space=True, recipe=_lm_recipe())


PROBLEMS = {"hjb20d": _hjb20d, "black-scholes": _black_scholes, "poisson2d": _poisson2d,
            "heat100d": _heat100d, "bsb100d": _bsb100d, "hjb100d": _hjb100d}


def get(name):
    if name not in PROBLEMS:
        raise ValueError(f"unknown problem {name!r}; known problems: {', '.join(PROBLEMS)}")
    return PROBLEMS[name]()
