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
``method`` the default derivative rule (None: degree5 up to 25 inputs, radial beyond), and ``omega`` the frequency scale of
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
    method: Optional[str] = None  # None: by dimension (derivatives.default_method)
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
        for name in ("residual", "exact", "transform", "boundary", "transform_onnx", "sampler",
                     "boundary_sampler"):
            f = getattr(self, name)
            if (f is not None or name == "residual") and not callable(f):
                fail(f"{name} must be callable, got {type(f).__name__}")
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
