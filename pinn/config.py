"""The options of a PINN run (``zotrain pinn``): ``PinnConfig``.

The body's own options live in its strategy object (``zotrain.pinn.bodies``);
``PinnConfig(body="gauss-newton", window=2)`` builds ``GaussNewton(window=2)``, and an
option of another body is refused by name.  ``settings()`` is the flat form a run
directory stores (and resume compares).
"""

import dataclasses
import math
from dataclasses import InitVar, dataclass
from typing import Any, Optional

from zotrain.base import ZotrainError

from . import bodies
from . import inputs as input_map
from .derivatives import METHODS
from .loss import BOUNDARY_RULES

HEADS = ("gauss-newton", "zo")
BACKENDS = ("numba", "onnxruntime")
RESUMABLE = ("iters", "max_time_s", "backend", "ray", "workers")  # may change on resume
BODY_OPTIONS = {name for cls in bodies.BODIES.values() for name in bodies.options_of(cls)}


@dataclass
class PinnConfig:
    iters: int = 100
    derivatives: Optional[str] = None  # the problem's default rule
    level: int = 3  # Smolyak level (sparse-grid)
    samples: int = 441  # Monte-Carlo draws (stein-mc): 2 * 441 + 1 = 883 evaluations per point
    sigma: Optional[float] = None  # smoothing, in box widths; the problem's default
    width: int = 512
    rank: int = 2
    depth: int = 2  # TT hidden layers
    inputs: str = "coordinates"  # what the network sees of a point: zotrain.pinn.inputs
    points: int = 64  # collocation points per iteration
    queries: int = 4  # RGE queries (antithetic: 2 forward passes each)
    mu: float = 1e-2
    lr: float = 1e-3
    head: str = "gauss-newton"
    body: Any = "zo"  # a zotrain.pinn.bodies object, or its --body name: zo (RGE on every
    # body layer), local, gauss-newton or frozen (see zotrain.pinn.bodies)
    # the options of body gauss-newton (bodies.GaussNewton), taken here for the command line
    # and the recipes and refused with another body: window, check_points, boundary_steps
    window: InitVar[Optional[int]] = None
    check_points: InitVar[Optional[int]] = None
    boundary_weight: float = 1.0  # multiplies the mean squared boundary error in the loss
    boundary_fraction: float = 0.25  # boundary points per collocation point (batches, checks,
    # head solves) of a problem with boundary data
    boundary_rule: str = "same"  # the boundary values' smoothing rule: the derivative rule's
    # ("same"), a random frame's ("frame": 2 d + 1 evaluations per point, exact to degree 3) or
    # none ("point": the network's own value)
    boundary_steps: InitVar[Optional[int]] = None
    head_every: int = 20
    head_points: int = 4096
    ridge: float = 1e-6
    seed: int = 0
    eval_every: int = 20
    eval_points: int = 1000  # for the curve; the final error uses test_points
    test_points: int = 10000
    max_time_s: Optional[float] = None
    backend: str = "numba"  # or "onnxruntime": every forward pass in an inference session
    ray: Optional[str] = None  # the body's RGE queries on Ray: "local" or an address
    workers: int = 1  # Ray actors evaluating queries (with ray)

    def __post_init__(self, window, check_points, boundary_steps):
        given = {k: v for k, v in (("window", window), ("check_points", check_points),
                                   ("boundary_steps", boundary_steps)) if v is not None}
        if isinstance(self.body, str):
            self.body = bodies.get(self.body, **given)
        elif given:
            raise ZotrainError(f"give {', '.join(given)} to the body object "
                               f"({type(self.body).__name__}), not to PinnConfig")

    @classmethod
    def names(cls):
        """The names of the training options (the body's included)."""
        return {f.name for f in dataclasses.fields(cls)} | BODY_OPTIONS

    @classmethod
    def from_settings(cls, flat):
        """The config of ``settings()``'s flat form (a run directory's, of any version): the
        body options at their unset values are dropped where the body does not take them."""
        flat = {k: v for k, v in flat.items() if k in cls.names()}
        body = flat.get("body", "zo")
        takes = bodies.options_of(bodies.BODIES[body]) if body in bodies.BODIES else []
        for name in BODY_OPTIONS - set(takes):
            if flat.get(name) in (None, 0):
                flat.pop(name, None)
        return cls(**flat)

    def settings(self):
        """The options as one flat JSON-able dict (what a run directory stores): the body
        by its name, its options beside the others."""
        flat = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        flat.update(body=self.body.name, window=None, check_points=None, boundary_steps=0)
        flat.update({k: getattr(self.body, k) for k in bodies.options_of(type(self.body))})
        return flat

    @classmethod
    def for_problem(cls, problem, **options):
        """The configuration for ``problem``: the defaults, then the problem's ``recipe``,
        then ``options``."""
        known = cls.names()
        recipe = problem.recipe or {}
        for what, names in (("problem " + repr(problem.name) + "'s recipe", recipe),
                            ("for_problem", options)):
            unknown = sorted(set(names) - known)
            if unknown:
                raise ZotrainError(f"{what} names unknown training options "
                                   f"{', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return cls(**{**recipe, **options})

    @property
    def window_size(self):
        return getattr(self.body, "window_size", 1)

    @property
    def check_size(self):
        return self.body.check_size(self.points) if hasattr(self.body, "check_size") else \
            min(self.points, bodies.CHECK_POINTS)

    def validate(self, problem):
        method = self.derivatives or problem.method
        if method not in METHODS:
            raise ZotrainError(f"unknown derivative method {method!r}; known: {', '.join(METHODS)}")
        input_map.check(self.inputs)
        if self.backend not in BACKENDS:
            raise ZotrainError(f"unknown backend {self.backend!r}; known: {', '.join(BACKENDS)}")
        if self.head not in HEADS:
            raise ZotrainError(f"unknown head training {self.head!r}; known: {', '.join(HEADS)}")
        if not all(hasattr(self.body, m) for m in ("name", "check", "start", "update")):
            raise ZotrainError(f"body must be a zotrain.pinn.bodies object or one of "
                               f"{', '.join(bodies.BODIES)}, got {self.body!r}")
        self.body.check(self, problem)
        for name in ("iters", "points", "queries", "level", "samples", "width", "rank", "depth",
                     "head_every", "head_points", "eval_every", "eval_points", "test_points"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ZotrainError(f"{name} must be an integer >= 1, got {v!r}")
        for name in ("sigma", "mu", "lr", "max_time_s"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or
                                  not 0 < v < math.inf):
                raise ZotrainError(f"{name} must be > 0 and finite, got {v!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ZotrainError(f"seed must be an integer >= 0, got {self.seed!r}")
        for name in ("boundary_weight", "boundary_fraction"):
            w = getattr(self, name)
            if isinstance(w, bool) or not isinstance(w, (int, float)) or not 0 < w < math.inf:
                raise ZotrainError(f"{name} must be a finite number > 0, got {w!r}")
        if self.boundary_rule not in BOUNDARY_RULES:
            raise ZotrainError(f"boundary_rule must be one of {', '.join(BOUNDARY_RULES)}, got "
                               f"{self.boundary_rule!r}")
        if isinstance(self.ridge, bool) or not isinstance(self.ridge, (int, float)) or \
                not 0 <= self.ridge < math.inf:
            raise ZotrainError(f"ridge must be >= 0, got {self.ridge!r}")
        if isinstance(self.workers, bool) or not isinstance(self.workers, int) or \
                self.workers < 1:
            raise ZotrainError(f"workers must be an integer >= 1, got {self.workers!r}")
        if self.ray is not None and self.ray != "local":
            from zotrain.distributed.pool import check_address  # no Ray imported

            check_address(self.ray)
        if self.ray is not None and self.backend != "numba":
            raise ZotrainError("--ray runs the queries with the numba backend")
