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
from zotrain.nn.architectures import pinn_mlp
from zotrain.options import option

from . import bodies, solvers
from . import inputs as input_map
from .derivatives import DEGREE5_UP_TO, METHODS, default_method
from .loss import BOUNDARY_RULES

HEADS = ("gauss-newton", "zo")
BACKENDS = ("numba", "onnxruntime")
RESUMABLE = ("iters", "max_time_s", "backend", "ray", "workers")  # may change on resume
BODY_OPTIONS = {name for cls in bodies.BODIES.values() for name in bodies.options_of(cls)}
LOW_DIM = 10  # up to this many inputs, the random-feature model (``default_model``)
LOW_DIM_WIDTH, WIDTH = 2048, 512  # its hidden width, and every other model's
RANK, LM_RANK = 2, 8  # the TT rank of the hidden layers, and of the LM layer up to HIGH_DIM
MODEL = ("depth", "body", "inputs", "width", "rank")  # what ``default_model`` sets
POINTS = 64  # collocation points per iteration, but where the LM steps need more rows
HEAD_ROWS = 8  # collocation points per head parameter in a head solve (a least-squares fit)
HIGH_DIM = DEGREE5_UP_TO  # beyond this many inputs, the high-dimensional model
ITERS = 100  # the iterations of a run without a time limit that names none
UNTIL_TIME = 10 ** 6  # ... and of one with a time limit: as many as it allows


def default_boundary_rule(dim, method, samples):
    """How boundary values are smoothed when the configuration does not say: by the frame
    rule where the derivative rule's value is exact to degree 3 at most (``radial``,
    ``stein-mc``: 2 ``samples`` + 1 evaluations) and the frame (exact to degree 3 too) needs
    fewer evaluations (2 ``dim`` + 1); by the derivative rule itself otherwise."""
    return "frame" if method in ("radial", "stein-mc") and dim < samples else "same"


def solution_free(problem):
    """Whether the loss leaves ``problem``'s solution free in its box: posed on all of R^d
    (``whole_space``) with no data at the box's faces.  A parabolic equation without lateral
    data has many solutions in a bounded region; only a model's own bias picks one there."""
    return problem.whole_space and problem.boundary is None


def random_phases(config, problem):
    """Whether the first layer's biases start spread over [-pi, pi] (``task.init_params``;
    zero otherwise): where the random features are what the body keeps, on a problem whose
    loss pins its solution; not for the LM steps' layer, which solves for its biases each
    step, nor where the solution is free (``solution_free``: the features' bias picks the
    solution).  Chosen on the development instances (docs/benchmarks.md): 1.06-1.9x lower
    on the four with the random-feature model; 1.0-2.0x higher on the three with the LM
    layer, 1.1-1.2x on the two solution-free ones."""
    return getattr(config.body, "name", None) != "gauss-newton" and not solution_free(problem)


def default_model(problem, backend="numba"):
    """``(depth, body, inputs, width, rank)`` for ``problem`` where the configuration names
    none of them (the LM steps run on the numba ``backend`` only; elsewhere the RGE layers):

    * up to ``LOW_DIM`` inputs, two TT hidden layers of width 2,048 trained by RGE on the
      coordinates: the random first-layer directions cover the few directions a solution
      varies along, and their number sets the error's floor (width 512 elsewhere);
    * up to ``HIGH_DIM`` inputs, one hidden layer trained with the head by Levenberg-Marquardt
      steps (the steps learn the directions the random features miss), on the coordinates,
      of TT rank ``LM_RANK``: at rank 2 a row of the layer cannot hold a generic direction
      of 20 inputs (modes 2 x 2 x 5 need rank 4), nor the layer the solution; where the
      loss leaves the solution free (``solution_free``), the two RGE layers, whose smooth
      random features pick a solution the LM steps' fit of the loss does not;
    * beyond, the LM model on each coordinate and its square (``zotrain.pinn.inputs``: one
      first-layer direction holds any sum of per-coordinate quadratics, a squared distance
      ``|x - c|^2`` among them, so that a radial solution (hjb100d's, bsb100d's) or a sum of
      one-dimensional ones (heat100d's) needs few directions where the coordinates alone
      take about as many as there are coordinates; against the coordinates and the radius
      it wins on 3 of the 4 development instances (loses 1.09x on the fourth) and costs
      1.6-1.9x on the radial built-ins, where the radius leaves heat100d 10x higher: the
      smaller worst case), at rank 2 (rank 8 gains on 51
      inputs and ties on 101, where its steps are 4x slower: docs/benchmarks.md);
    * the RGE layers at rank 2 (their estimate's variance grows with the parameters).

    docs/benchmarks.md: the suite's development instances, the built-ins."""
    dim = problem.dim
    width = LOW_DIM_WIDTH if dim <= LOW_DIM else WIDTH
    inputs = "coordinates" if dim <= HIGH_DIM else "quadratic"
    if dim <= LOW_DIM or (dim <= HIGH_DIM and solution_free(problem)) or backend != "numba":
        return 2, "zo", inputs, width, RANK
    return 1, "gauss-newton", inputs, width, LM_RANK if dim <= HIGH_DIM else RANK


def default_points(config, problem):
    """Collocation points per iteration where the configuration names none: ``POINTS``; for
    the LM steps (the gauss-newton body), enough that the window's rows (each batch's points
    and boundary points) are at least the step's columns (the last hidden layer's and the
    head's parameters; half a row more, as a batch's boundary points are rounded): a
    least-squares step on fewer rows than unknowns fits their noise (``HEAD_ROWS`` is the
    head solve's counterpart).  ``config`` has its model resolved."""
    if getattr(config.body, "name", None) != "gauss-newton":
        return POINTS
    try:
        model = pinn_mlp(in_features=input_map.width(config.inputs, problem.dim),
                         width=config.width, rank=config.rank, depth=config.depth)
        columns = sum(s.size for s in solvers.body_segments(model))
        return max(POINTS, math.ceil((columns / config.window_size + 0.5) / (
            1 + (config.boundary_fraction if problem.boundary is not None else 0))))
    except (TypeError, ValueError, KeyError, ZeroDivisionError):
        return POINTS  # an option the model needs is bad: ``validate`` names it


@dataclass
class PinnConfig:
    """How ``train_pinn`` trains; each field carries its ``zotrain pinn`` flag and help
    (``zotrain.options``); the gauss-newton body's options are its own
    (``bodies.GaussNewton``), taken here for the command line and the recipes."""

    iters: Optional[int] = option(None, "iterations", "budgets and stopping", type=int,
                                  default_help=f"default: {ITERS}; with --max-time, as many "
                                  "as the time allows")
    derivatives: Optional[str] = option(None, "the Stein rule of the derivatives",
                                        "derivatives", choices=METHODS,
                                        default_help="default: the problem's, else "
                                        "degree5 up to 25 inputs, radial beyond")
    level: int = option(3, "Smolyak level for sparse-grid", "derivatives")
    samples: int = option(441, "Monte-Carlo draws for stein-mc (2 n + 1 evaluations per "
                          "point), pairs for radial", "derivatives")
    sigma: Optional[float] = option(None, "smoothing radius in box widths", "derivatives",
                                    default_help="default: the problem's")
    width: Optional[int] = option(None, "hidden width", "model", type=int,
                                  default_help=f"default: {LOW_DIM_WIDTH} up to {LOW_DIM} "
                                  f"inputs, {WIDTH} beyond (zotrain.pinn.config.default_model)")
    rank: Optional[int] = option(None, "TT rank of the hidden layers", "model", type=int,
                                 default_help=f"default: {LM_RANK} for the LM layer up to "
                                 f"{HIGH_DIM} inputs, {RANK} elsewhere "
                                 "(zotrain.pinn.config.default_model)")
    depth: Optional[int] = option(None, "TT hidden layers (with --body local and depth 1 the "
                                  "whole body gets the local rule)", "model", type=int,
                                  default_help=f"default: 1 beyond {LOW_DIM} inputs, 2 up "
                                  f"to {LOW_DIM}, where the solution is free and on "
                                  "onnxruntime (zotrain.pinn.config.default_model)")
    inputs: Optional[str] = option(None, "what the network sees of a point: its coordinates, "
                                   "with their squared distance from the box's centre "
                                   "(radius), or each coordinate and its square "
                                   "(zotrain.pinn.inputs)", "model",
                                   choices=tuple(input_map.INPUTS),
                                   default_help=f"default: coordinates up to {HIGH_DIM} "
                                   "inputs, quadratic beyond")
    points: Optional[int] = option(None, "collocation points per iteration", "optimisation",
                                   type=int, default_help=f"default: {POINTS}; with the LM "
                                   "steps, enough that the window's rows are at least the "
                                   "step's unknowns (zotrain.pinn.config.default_points)")
    queries: int = option(4, "RGE queries per iteration (antithetic: 2 forward passes each)",
                          "estimator")
    mu: float = option(1e-2, "RGE smoothing", "estimator")
    lr: float = option(1e-3, "Adam learning rate of the body's RGE steps", "optimisation")
    head: str = option("gauss-newton", "the head by exact Gauss-Newton solves, or by RGE with "
                       "the body", "head", choices=HEADS)
    body: Any = option(None, "RGE on the body (zo), the last hidden layer by the local rule "
                       "(local) or with the head by Levenberg-Marquardt steps on its Jacobian "
                       "(gauss-newton), RGE below it; or untrained random features (frozen); "
                       "a zotrain.pinn.bodies object from Python", "body",
                       choices=tuple(bodies.BODIES), type=str,
                       default_help=f"default: gauss-newton beyond {LOW_DIM} inputs or where one "
                       f"of its options is given, zo up to {LOW_DIM}, where the solution "
                       "is free and on onnxruntime (zotrain.pinn.config.default_model)")
    window: InitVar[Optional[int]] = None
    check_points: InitVar[Optional[int]] = None
    boundary_weight: Optional[float] = option(
        None, "multiplies the mean squared boundary error in the loss", "boundary",
        type=float, default_help="default: adaptive, set at each head solve by the neural "
        "tangent kernel's trace rule (Wang, Yu and Perdikaris 2022)")
    boundary_fraction: float = option(0.25, "boundary points per collocation point (batches, "
                                      "checks, head solves) of a problem with boundary data",
                                      "boundary")
    boundary_rule: Optional[str] = option(
        None, "the boundary values' smoothing: the derivative rule's (same), a random frame's "
        "(frame: 2 d + 1 evaluations per point, exact to degree 3) or none (point: the network "
        "unsmoothed)", "boundary", choices=BOUNDARY_RULES,
        default_help="default: frame where it is as exact as the derivative rule's values "
        "and cheaper (radial, stein-mc), else same")
    boundary_steps: InitVar[Optional[int]] = None
    head_every: int = option(20, "iterations between head solves", "head")
    head_points: Optional[int] = option(
        None, "collocation points per head solve", "head", type=int,
        default_help=f"default: {HEAD_ROWS} per head parameter (width + 1); with --max-time, "
        "fewer where a solve would take more than a twentieth of it")
    ridge: float = option(1e-6, "ridge of the head solve", "head")
    seed: int = option(0, "seed", "optimisation")
    eval_every: int = option(20, "iterations between error evaluations", "output")
    eval_points: int = option(1000, "points of each evaluation (the curve)", "output")
    test_points: int = option(10000, "points of the final error", "output")
    max_time_s: Optional[float] = option(
        None, "stop after this much time, the final evaluation included",
        "budgets and stopping", flag="--max-time", metavar="SECONDS", aliases=("--time-limit",))
    backend: str = option("numba", "where forward passes run (onnxruntime: every forward "
                          "pass in an inference session)", "backend and scale-out",
                          choices=BACKENDS)
    ray: Optional[str] = option(
        None, "evaluate the body's RGE queries on Ray actors: a cluster's address, or none to "
        'start a local Ray instance (needs pip install "zotrain[distributed]")',
        "backend and scale-out", nargs="?", const="local", metavar="ADDRESS")
    workers: int = option(1, "Ray actors (with --ray)", "backend and scale-out", metavar="N")

    def __post_init__(self, window, check_points, boundary_steps):
        given = {k: v for k, v in (("window", window), ("check_points", check_points),
                                   ("boundary_steps", boundary_steps)) if v is not None}
        if self.body is None and given:  # options of the gauss-newton body name it
            self.body = "gauss-newton"
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
        flat = {"depth": 2, "body": "zo", "inputs": "coordinates", "boundary_rule": "same",
                "width": WIDTH, "rank": RANK, "points": POINTS,
                **flat}  # settings without them: that version's defaults
        body = flat["body"]
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

    def resolved(self, problem):
        """This configuration with what it leaves to the problem (None) set: the model
        (``depth``, ``body``, ``inputs``, ``width``, ``rank``) by ``default_model`` from
        ``problem``'s properties, the ``boundary_rule`` by ``default_boundary_rule``, then the
        ``points`` by ``default_points``; a copy."""
        rules = dict(zip(MODEL, default_model(problem, self.backend)))
        rules["boundary_rule"] = default_boundary_rule(problem.dim, self.method_for(problem),
                                                       self.samples)
        c = dataclasses.replace(self, **{k: v for k, v in rules.items()
                                         if getattr(self, k) is None})
        return c if c.points is not None else \
            dataclasses.replace(c, points=default_points(c, problem))

    def method_for(self, problem):
        """The derivative rule this configuration uses on ``problem``: its own, else the
        problem's, else ``default_method`` by dimension."""
        return self.derivatives or problem.method or default_method(problem.dim)

    @classmethod
    def for_problem(cls, problem, **options):
        """The configuration for ``problem``: the defaults (``default_model`` by its
        dimension), then the problem's ``recipe``, then ``options``."""
        known = cls.names()
        recipe = problem.recipe or {}
        for what, names in (("problem " + repr(problem.name) + "'s recipe", recipe),
                            ("for_problem", options)):
            unknown = sorted(set(names) - known)
            if unknown:
                raise ZotrainError(f"{what} names unknown training options "
                                   f"{', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return cls(**{**recipe, **options}).resolved(problem)

    @property
    def steps(self):
        """The iteration budget: ``iters``, else ``ITERS`` without a time limit and, with one,
        as many as it allows (``UNTIL_TIME``; the RGE steps' cosine learning-rate schedule
        then spans that many, so it stays near ``lr``).  Kept apart from ``iters`` so that
        a run directory records what was asked and its resume without ``--max-time`` stops."""
        if self.iters is not None:
            return self.iters
        return ITERS if self.max_time_s is None else UNTIL_TIME

    @property
    def window_size(self):
        return getattr(self.body, "window_size", 1)

    @property
    def check_size(self):
        return self.body.check_size(self.points) if hasattr(self.body, "check_size") else \
            min(self.points, bodies.CHECK_POINTS)

    def validate(self, problem):
        if None in [getattr(self, k) for k in MODEL + ("boundary_rule", "points")]:
            return self.resolved(problem).validate(problem)  # checked as it will train
        method = self.method_for(problem)
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
            if v is None and name in ("iters", "head_points"):  # by the time limit, the head
                continue
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
            if w is None and name == "boundary_weight":
                continue
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
