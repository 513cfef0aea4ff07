"""The backpropagation-free PINN recipe: a task on ``zotrain.engine`` (``zotrain pinn``).

``train_pinn(problem, config, out_dir)`` trains on any ``Problem`` object.

Each iteration draws ``points`` fresh collocation points (seeded by the
iteration) and takes one zeroth-order step on the body (every layer but the
last): RGE queries of the PINN loss, each a batched forward of the perturbed
network on all shifted inputs (``zotrain.pinn.loss``), and Adam.  Before the
first iteration, after every ``head_every``-th and after the last, the last
(Dense) layer is solved: one ridge-regularised Gauss-Newton step from the
exact head Jacobian, built from the features entering the head at
``head_points`` collocation points (forward passes only; see
``zotrain.pinn.solvers.head_jacobian``).  ``--head zo`` trains the head with the body by
RGE instead.  ``--body local`` updates the last hidden layer by a local rule
with the exact head-side sensitivity (``solvers.hidden_layer_gradient``) and
RGE below it (with ``--depth 1``, one TT hidden layer, that is the whole body,
trained by its exact gradient); ``--body gauss-newton`` takes a
Levenberg-Marquardt step each iteration on the last hidden layer and the head
together, from the per-point Jacobian of the same local rule
(``solvers.lm_step``; its damping adapts and is checkpointed), RGE below;
each step solves the rows of the last ``window`` batches together (default 4;
``zotrain.pinn.lm_window``); ``--body frozen`` keeps the random features (the
baseline).  A problem with boundary data (heat100d) adds the mean squared
boundary error on a quarter as many boundary points.

A forward pass is one parameter set evaluated on ``points`` collocation points
(each point is ``M`` network evaluations: the rule's shifted inputs).  The
relative L2 error is measured on 10,000 uniform test points with the smoothed
predictor the model is deployed with.  ``DIR/checkpoint.npz`` and
``DIR/model.npz`` are written atomically at every evaluation (every
``eval_every`` iterations: one engine epoch), so a diverging run stops with its
last good state, and ``resume`` continues bit-identically.
"""

import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from zotrain import optim
from zotrain.base import NO_COST, Cost, StepResult, ZotrainError
from zotrain.engine import rundir
from zotrain.engine.rundir import save_model
from zotrain.engine.loop import Engine
from zotrain.engine.memory import check_fits
from zotrain.engine.plots import save_figure
from zotrain.nn import architectures
from zotrain.zo import estimators
from zotrain.zo.objective import FunctionObjective

from . import inputs as input_map
from .derivatives import METHODS
from . import solvers
from .lm_window import JacobianWindow
from .loss import BOUNDARY_RULES, PinnLoss

HEADS = ("gauss-newton", "zo")
BODIES = ("zo", "local", "gauss-newton", "frozen")
BACKENDS = ("numba", "onnxruntime")
WINDOW = 4  # the gauss-newton body's default window
CHECK_POINTS = 1024  # at most this many check points by default (five forwards of each)
RESUMABLE = ("iters", "max_time_s", "backend", "ray", "workers")  # may change on resume


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
    body: str = "zo"  # zo: RGE on every body layer; local: the last hidden layer by the
    # local rule (exact head side), RGE on the layers below; gauss-newton: the last hidden
    # layer and the head by Levenberg-Marquardt steps on the local rule's Jacobian, RGE on
    # the layers below; frozen: random features
    window: Optional[int] = None  # gauss-newton body: Levenberg-Marquardt on the rows of
    # the last `window` batches (default WINDOW); other bodies: 1
    check_points: Optional[int] = None  # gauss-newton body: fresh points judging each step's
    # candidates (default: points, at most CHECK_POINTS)
    boundary_weight: float = 1.0  # multiplies the mean squared boundary error in the loss
    boundary_fraction: float = 0.25  # boundary points per collocation point (batches, checks,
    # head solves) of a problem with boundary data
    boundary_rule: str = "same"  # the boundary values' smoothing rule: the derivative rule's
    # ("same"), a random frame's ("frame": 2 d + 1 evaluations per point, exact to degree 3) or
    # none ("point": the network's own value)
    boundary_steps: int = 0  # gauss-newton body: the first steps and head solves fit the
    # unsmoothed network to the boundary data alone (one evaluation per boundary point), then
    # the PDE's steps
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

    @classmethod
    def names(cls):
        """The names of the training options."""
        return {f.name for f in dataclasses.fields(cls)}

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
        if self.window is None:
            return WINDOW if self.body == "gauss-newton" else 1
        return self.window

    @property
    def check_size(self):
        return min(self.points, CHECK_POINTS) if self.check_points is None else self.check_points

    def validate(self, problem):
        method = self.derivatives or problem.method
        if method not in METHODS:
            raise ZotrainError(f"unknown derivative method {method!r}; known: {', '.join(METHODS)}")
        input_map.check(self.inputs)
        if self.backend not in BACKENDS:
            raise ZotrainError(f"unknown backend {self.backend!r}; known: {', '.join(BACKENDS)}")
        if self.head not in HEADS:
            raise ZotrainError(f"unknown head training {self.head!r}; known: {', '.join(HEADS)}")
        if self.body not in BODIES:
            raise ZotrainError(f"unknown body training {self.body!r}; known: {', '.join(BODIES)}")
        if self.body in ("local", "gauss-newton") and self.backend != "numba":
            raise ZotrainError(f"body {self.body!r} needs the numba backend (it reads the "
                               "layer's input and pre-activations)")
        if self.body == "gauss-newton" and self.head != "gauss-newton":
            raise ZotrainError("body 'gauss-newton' solves the head with the last hidden "
                               "layer; it needs head 'gauss-newton', not " + repr(self.head))
        for name in ("iters", "points", "queries", "level", "samples", "width", "rank", "depth",
                     "head_every", "head_points", "eval_every", "eval_points", "test_points") \
                + tuple(n for n in ("window", "check_points") if getattr(self, n) is not None):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ZotrainError(f"{name} must be an integer >= 1, got {v!r}")
        if self.window_size != 1 and self.body != "gauss-newton":
            raise ZotrainError(f"window {self.window!r} needs body 'gauss-newton' (it keeps "
                               "earlier batches' Levenberg-Marquardt rows), not "
                               + repr(self.body))
        if self.check_points is not None and self.body != "gauss-newton":
            raise ZotrainError(f"check_points {self.check_points!r} needs body 'gauss-newton' "
                               "(they judge its steps), not " + repr(self.body))
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
        b = self.boundary_steps
        if isinstance(b, bool) or not isinstance(b, int) or b < 0:
            raise ZotrainError(f"boundary_steps must be an integer >= 0, got {b!r}")
        if b and self.body != "gauss-newton":
            raise ZotrainError(f"boundary_steps {b} needs body 'gauss-newton' (they are its "
                               f"steps), not {self.body!r}")
        if b and problem.boundary is None:
            raise ZotrainError(f"boundary_steps {b}: problem {problem.name!r} has no boundary "
                               "data to fit")
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


def build(c, problem, account=None):
    """``(model, loss)`` of a configuration for ``problem``; ``account`` (a
    ``CostAccount``) counts the loss's network evaluations."""
    model = architectures.pinn_mlp(in_features=input_map.width(c.inputs, problem.dim),
                                   width=c.width, rank=c.rank, depth=c.depth)
    network = None
    if c.backend == "onnxruntime":
        from zotrain.export.runtime import OrtNetwork

        network = OrtNetwork(model)
    return model, make_loss(c, problem, model, network, account=account)


def make_loss(c, problem, model, network=None, boundary_rule=None, account=None):
    """The ``PinnLoss`` of a configuration (``boundary_rule`` instead of its own, if given)."""
    return PinnLoss(model, problem, sigma=c.sigma, method=c.derivatives, level=c.level,
                    samples=c.samples, seed=c.seed, network=network, inputs=c.inputs,
                    boundary_weight=c.boundary_weight,
                    boundary_rule=boundary_rule or c.boundary_rule, account=account)


def pinn_objective(loss, layout, x, xb):
    """The PINN loss at the points ``x`` (and boundary points ``xb``) as an objective."""
    return FunctionObjective(lambda P: loss(P, x, xb), layout)


class PinnObjectives:
    """Factory of the PINN objective on one iteration's points, for a Ray actor: sent as
    the problem and the configuration, the model and loss rebuilt there."""

    def __init__(self, problem, config):
        self.problem, self.config, self.built = problem, config, None

    def __getstate__(self):
        return {"problem": self.problem, "config": self.config}

    def __setstate__(self, state):
        self.__init__(state["problem"], state["config"])

    def __call__(self, x, xb):
        if self.built is None:
            self.built = build(self.config, self.problem)
        model, loss = self.built
        return pinn_objective(loss, model.layout, x, xb), loss.account


def init_params(model, problem, seed):
    """``model.init(seed)``, with the first layer's frequencies scaled by ``problem.omega``
    and, when scaled, its biases spread over [-pi, pi] (SIREN-style random Fourier
    features for low-dimensional problems)."""
    params = model.init(seed)
    if problem.omega != 1.0:
        first = model.layout.of_layer(0)
        params[first[0].slice] *= problem.omega
        for b in first:
            if b.local == "bias":
                rng = np.random.default_rng([seed, 7])
                params[b.slice] = rng.uniform(-np.pi, np.pi, b.size)
    return params


def rel_l2(loss, params, n, seed):
    """Relative L2 error of the smoothed predictor on ``n`` uniform points."""
    x = loss.problem.sample(n, seed)
    exact = loss.problem.exact(x)
    return float(np.linalg.norm(loss.predict(params, x) - exact) / np.linalg.norm(exact))


def residual_losses(loss, params, n, seed):
    """Without an exact solution: the mean squared residual of the smoothed predictor on
    ``n`` uniform points (and its mean squared boundary error on a quarter as many)."""
    problem = loss.problem
    out = {"residual_loss": loss.mean_loss(params, problem.sample(n, seed))}
    if problem.boundary is not None:
        xb = problem.sample_boundary(max(1, n // 4), seed)
        out["boundary_loss"] = float(np.mean((loss.predict(params, xb) - problem.boundary(xb)) ** 2))
    return out


def evaluate(loss, params, n, seed):
    """``rel_l2`` when the problem has an exact solution, else ``residual_losses``."""
    if loss.problem.exact is not None:
        return {"rel_l2": rel_l2(loss, params, n, seed)}
    return residual_losses(loss, params, n, seed)


class PinnTask:
    """Collocation points per iteration, RGE steps on the body, exact head solves as the
    engine's ``on_start``/``after_step`` hooks, the error (or the losses) per evaluation."""

    def __init__(self, problem, model, loss, config, run_config):
        self.problem, self.model, self.loss, self.c = problem, model, loss, config
        self.run_config = run_config
        self.n_params = model.n_params
        self.local = model.linear_index()[-2] if config.body in ("local", "gauss-newton") \
            else None
        self.damping = 1e-3  # Levenberg-Marquardt (body gauss-newton)
        self.body_cols = self.window = None
        if config.body == "gauss-newton":
            self.body_cols = solvers.body_columns(loss)
            self.window = JacobianWindow(config.window_size, self.body_cols)
        self.fit = None  # the boundary steps' loss: the unsmoothed network at boundary points
        if config.boundary_steps:
            self.fit = make_loss(config, problem, model, loss.network, "point", loss.account)
        self.by_rge = np.ones(model.n_params, bool)  # what the RGE step updates
        if config.head == "gauss-newton":
            self.by_rge[loss.head_slice()] = False
        if config.body == "frozen":
            self.by_rge[:loss.head_slice().start] = False
        for s in model.layout.of_layer(self.local) if self.local is not None else ():
            self.by_rge[s.slice] = False
        self.names = [s.name for s in model.layout if self.by_rge[s.slice].all()]
        self.estimator = estimators.rge(config.queries, config.mu, per_group=False)
        self.pool = None  # a zotrain.distributed.QueryPool of PinnObjectives, if any
        if config.ray is not None and self.names:
            from zotrain.distributed import QueryPool

            self.pool = QueryPool(PinnObjectives(problem, config), config.workers,
                                  None if config.ray == "local" else config.ray)

    def init(self, seed):
        return init_params(self.model, self.problem, seed)

    def _boundary_points(self, n, seed):  # boundary_fraction as many as interior points
        return None if self.problem.boundary is None else \
            self.problem.sample_boundary(max(1, round(n * self.c.boundary_fraction)), seed)

    def _batch(self, it, seed):
        return it, self.problem.sample(self.c.points, [seed, it]), \
            self._boundary_points(self.c.points, [seed, it])

    def batches(self, epoch, seed):
        c = self.c
        for it in range(epoch * c.eval_every + 1, min((epoch + 1) * c.eval_every, c.iters) + 1):
            yield self._batch(it, seed)

    def _boundary_step(self, it):
        """Whether iteration ``it``'s step and head solve fit the boundary data alone."""
        return self.fit is not None and it <= self.c.boundary_steps

    def _forwards(self):  # in collocation points of the derivative rule
        return self.loss.account.points

    def _spent(self, before):
        passes = (self._forwards() - before) / self.c.points
        return Cost(passes, passes)

    def step(self, params, batch, *, seed, step):
        it, x, xb = batch
        before = self._forwards()
        grad = np.zeros(self.n_params, np.float32)
        loss = None
        if self.names:
            objective = pinn_objective(self.loss, self.model.layout, x, xb)
            if self.pool is not None:
                self.pool.step(x, xb)
                objective = self.pool.remote(objective, self.loss.account)
            e = self.estimator.estimate(objective, params, self.names, seed=seed, step=it)
            grad, loss = np.where(self.by_rge, e.grad, 0).astype(np.float32), e.loss
        assign = commit = None
        if self.c.body == "gauss-newton":  # set after the optimizer's update
            n = self.c.check_size
            check = (self.problem.sample(n, [self.c.seed, it, 2]),
                     self._boundary_points(n, [self.c.seed, it, 2]))
            if self._boundary_step(it):  # the boundary data alone, outside the window
                r, J = solvers.body_jacobian(self.fit, params, x[:0], xb)
                new, damping = solvers.lm_step(self.fit, params, r, J, (x[:0], check[1]),
                                               self.damping)
                kept = None
            else:
                r, J = solvers.body_jacobian(self.loss, params, x, xb)
                new, damping = solvers.lm_step(self.loss, params, *self.window.rows(r, J),
                                               check, self.damping)
                kept = (it, params, r, J)
            assign, commit = (self.body_cols, new[self.body_cols]), self._commit(damping, kept)
            loss = float(r @ r) if loss is None else loss
        elif self.local is not None:
            local_loss, g = solvers.hidden_layer_gradient(self.loss, params, x, xb)
            grad += g
            loss = local_loss if loss is None else loss
        if loss is None:
            loss = float(self.loss(np.asarray(params)[None], x, xb)[0])
        return StepResult(grad, loss, self._spent(before), assign, commit)

    def _commit(self, damping, kept):
        """The Levenberg-Marquardt step's state change, made once its parameters are final
        (after the head solve): the damping, and the batch's rows into the window."""
        def commit(params):
            self.damping = damping
            if kept is not None:
                self.window.add(*kept, params)

        return commit

    def _solve_head(self, params, it):
        c = self.c
        if c.head != "gauss-newton":
            return params, NO_COST
        before = self._forwards()
        x = self.problem.sample(c.head_points, [c.seed, it, 1])
        xb = self._boundary_points(c.head_points, [c.seed, it, 1])
        if self._boundary_step(it):
            params = solvers.solve_head(self.fit, params, x[:0], c.ridge, xb)
        else:
            params = solvers.solve_head(self.loss, params, x, c.ridge, xb)
        return params, self._spent(before)

    def on_start(self, params):
        return self._solve_head(params, 0)

    def after_step(self, params, *, step, last):
        it, cost = step + 1, NO_COST
        if it % self.c.head_every == 0 or last:
            params, cost = self._solve_head(params, it)
        return params, cost

    #: evaluations still to come when the engine stops on the time limit: the epoch's and
    #: the final one (at least as many points), which the engine keeps time for
    evaluations_after_stop = 2

    def evaluate(self, params, n=None, seed=1):
        n = n or self.c.eval_points
        t0 = time.perf_counter()
        out = evaluate(self.loss, params, n, seed)
        self.seconds_per_point = (time.perf_counter() - t0) / n
        return out

    def _final_points(self, records):
        """``test_points``, or as many as fit in what ``max_time_s`` leaves (at least
        ``eval_points``), measured by the last evaluation's time per point."""
        c, n = self.c, self.c.test_points
        per_point = getattr(self, "seconds_per_point", None)
        if c.max_time_s is None or per_point is None or not records:
            return n
        left = c.max_time_s - records[-1]["wall_time_s"]
        return max(min(c.eval_points, n), min(n, int(left / per_point)))

    def state(self):
        if self.c.body != "gauss-newton":
            return None
        return {"damping": self.damping, "window": self.window.state()}

    def load_state(self, state):
        if state and "damping" in state:
            self.damping = float(state["damping"])
        if state and state.get("window"):
            def jacobian(it, params):
                return solvers.body_jacobian(self.loss, params,
                                             *self._batch(it, self.c.seed)[1:])[1]

            self.window.load(state["window"], jacobian)

    def summary(self, params, records):
        c, loss = self.c, self.loss
        steps = records[-1]["step"] if records else 0
        fp = records[-1]["forward_passes"] if records else 0
        n = self._final_points(records)
        note = {} if n == c.test_points else {"note": f"the final error on {n} points, not "
                                              f"test_points {c.test_points}, to end within "
                                              f"max_time_s {c.max_time_s:g}"}
        return dict(self.evaluate(params, n, 12345), test_points=n, **note, iters=steps,
                    network_evaluations=int(round(fp * c.points * loss.evaluations)),
                    evaluations_per_point=loss.evaluations,
                    trainable_params=self.model.n_params, dense_params=self.model.dense_params,
                    sigma=loss.sigma, derivatives=loss.method)

    def save_model(self, path, params):
        save_model(path, self.model, params, self.run_config)

    def plot(self, path, params, records):
        s = np.linspace(0, 1, 200)[:, None]
        lo, hi = np.asarray(self.problem.lower), np.asarray(self.problem.upper)
        x = lo + s * (hi - lo)  # the diagonal of the domain

        key = "rel_l2" if self.problem.exact is not None else "residual_loss"

        def draw(axes):
            a, b = axes
            if self.problem.exact is not None:
                a.plot(s[:, 0], self.problem.exact(x), label="exact")
            a.plot(s[:, 0], self.loss.predict(params, x), "--", label="smoothed network")
            a.set_xlabel("position along the domain's diagonal")
            a.legend()
            b.semilogy([r["step"] for r in records], [r[key] for r in records], marker="o")
            b.set_xlabel("iteration")
            b.set_ylabel("relative L2 error" if key == "rel_l2" else "mean squared residual")

        save_figure(path, draw)


def run_config(run_dir, problem=None):
    """The settings a run directory was trained with (``zotrain.engine.rundir``); with
    ``problem``, refused unless the run is of that problem."""
    config = rundir.model_settings(Path(run_dir) / rundir.MODEL)
    if problem is not None and config.get("problem") != problem.name:
        raise ZotrainError(f"{run_dir} holds a run of problem {config.get('problem')!r}, "
                           f"not {problem.name!r}")
    return config


def run_problem_name(run_dir):
    """The problem a run directory was trained on (None for a classification run)."""
    return run_config(run_dir).get("problem")


def load_run(problem, run_dir):
    """``(loss, params)`` of a run of ``problem`` saved in ``run_dir`` (its ``model.npz``):
    the smoothed predictor is ``loss.predict(params, x)``."""
    config = run_config(run_dir, problem)
    model, params = rundir.load_model(run_dir)
    known = PinnConfig.names()
    c = PinnConfig(**{k: v for k, v in config.items() if k in known})
    c.backend, c.ray = "numba", None  # nothing read from a file decides where to connect
    return build(c, problem)[1], params


def train_pinn(problem, config=None, out_dir=None, *, resume=False, progress=True,
               callbacks=(), overwrite=False):
    """Train a PINN for ``problem`` (a ``zotrain.pinn.Problem``) forward-only and write the
    run's files; returns the metrics dict.  ``config`` defaults to
    ``PinnConfig.for_problem(problem)`` (the problem's recipe).  Raises
    ``DivergenceError`` (last good state kept in ``out_dir``) on a non-finite loss; Ctrl-C
    checkpoints the last completed iteration.  ``resume`` continues from
    ``out_dir/checkpoint.npz``; a new run into an ``out_dir`` holding one is refused unless
    ``overwrite``."""
    c = config or PinnConfig.for_problem(problem)
    c.validate(problem)
    model, loss = build(c, problem)
    run_config = dict(dataclasses.asdict(c), problem=problem.name)
    check_fits(model.n_params)
    task = PinnTask(problem, model, loss, c, run_config)
    try:
        engine = Engine(task, optim.adam(optim.cosine(c.lr, c.iters)),
                        epochs=math.ceil(c.iters / c.eval_every), seed=c.seed, out_dir=out_dir,
                        config=run_config, resumable=RESUMABLE, callbacks=callbacks,
                        progress=progress, log_every=0, max_time_s=c.max_time_s,
                        evaluate_at_start=True, total_steps=c.iters, overwrite=overwrite)
        return engine.run(resume=resume)
    finally:
        model.release_buffers()
        if task.pool is not None:
            task.pool.shutdown()
