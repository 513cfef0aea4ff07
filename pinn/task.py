"""The PINN as a task on ``zotrain.engine``: collocation points per iteration, RGE steps
on what no solver updates, the body's own update (``zotrain.pinn.bodies``), the head solved
as the engine's ``on_start``/``after_step`` hooks, the error (or the losses) per
evaluation."""

import time

import numpy as np

from zotrain.base import NO_COST, Cost, StepResult
from zotrain.engine.plots import save_figure
from zotrain.engine.rundir import save_model
from zotrain.zo import estimators
from zotrain.zo.objective import FunctionObjective

from zotrain.nn import architectures

from . import inputs as input_map
from . import solvers
from .config import HEAD_ROWS, random_phases
from .loss import PinnLoss


def build(c, problem, account=None):
    """``(model, loss)`` of a configuration for ``problem``; ``account`` (a
    ``CostAccount``) counts the loss's network evaluations."""
    c = c.resolved(problem)
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


def init_params(model, problem, seed, phases=False):
    """``model.init(seed)`` with the first layer's frequencies scaled by ``problem.omega``
    and, where ``phases`` (``config.random_phases``) or scaled, its biases spread over
    [-pi, pi] (the random phases of random Fourier features, Rahimi and Recht 2007).  With
    zero biases a network of Sin layers is odd about its inputs' origin, the box's lower
    corner: its even part is its head's bias, and every even derivative, the Laplacian
    included, vanishes at that corner."""
    params = model.init(seed)
    first = model.layout.of_layer(0)
    if problem.omega != 1.0:
        params[first[0].slice] *= problem.omega
    if phases or problem.omega != 1.0:
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


def trivial_rel_l2(problem, n, seed):
    """Relative L2 error of network output 0 (the hard constraint alone, if any) on ``n``
    points: the trivial baseline."""
    x = problem.sample(n, seed)
    u = problem.transform(x, np.zeros(n)) if problem.transform is not None else np.zeros(n)
    exact = problem.exact(x)
    return float(np.linalg.norm(u - exact) / np.linalg.norm(exact))


def evaluate(loss, params, n, seed):
    """``rel_l2`` when the problem has an exact solution, else ``residual_losses``."""
    if loss.problem.exact is not None:
        return {"rel_l2": rel_l2(loss, params, n, seed)}
    return residual_losses(loss, params, n, seed)


#: with ``max_time_s``, the largest share of it one head solve may take (``head_points``)
HEAD_SHARE = 0.05


class PinnTask:
    """Collocation points per iteration, RGE steps on the body, exact head solves as the
    engine's ``on_start``/``after_step`` hooks, the error (or the losses) per evaluation."""

    def __init__(self, problem, model, loss, config, run_config):
        config = config.resolved(problem)
        self.problem, self.model, self.loss, self.c = problem, model, loss, config
        self.run_config, self.body = run_config, config.body
        self.n_params = model.n_params
        self.local = model.linear_index()[-2] if self.body.trains_last_hidden else None
        self.by_rge = np.ones(model.n_params, bool)  # what the RGE step updates
        if config.head == "gauss-newton":
            self.by_rge[loss.head_slice()] = False
        if self.body.frozen:
            self.by_rge[:loss.head_slice().start] = False
        for s in model.layout.of_layer(self.local) if self.local is not None else ():
            self.by_rge[s.slice] = False
        self.names = [s.name for s in model.layout if self.by_rge[s.slice].all()]
        self.solve_seconds = None  # a head solve's per collocation point, with max_time_s
        self.estimator = estimators.rge(config.queries, config.mu, per_group=False)
        self.body.start(self)
        self.pool = None  # a zotrain.distributed.QueryPool of PinnObjectives, if any
        if config.ray is not None and self.names:
            from zotrain.distributed import QueryPool

            self.pool = QueryPool(PinnObjectives(problem, config), config.workers,
                                  None if config.ray == "local" else config.ray)

    def make_fit(self):
        """The loss of the boundary steps: the unsmoothed network at boundary points."""
        return make_loss(self.c, self.problem, self.model, self.loss.network, "point",
                         self.loss.account)

    def init(self, seed):
        return init_params(self.model, self.problem, seed,
                           random_phases(self.c, self.problem))

    def boundary_points(self, n, seed):  # boundary_fraction as many as interior points
        return None if self.problem.boundary is None else \
            self.problem.sample_boundary(max(1, round(n * self.c.boundary_fraction)), seed)

    def batch(self, it, seed=None):
        seed = self.c.seed if seed is None else seed
        return it, self.problem.sample(self.c.points, [seed, it]), \
            self.boundary_points(self.c.points, [seed, it])

    def batches(self, epoch, seed):
        c = self.c
        for it in range(epoch * c.eval_every + 1, min((epoch + 1) * c.eval_every, c.steps) + 1):
            yield self.batch(it, seed)

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
        body = self.body.update(self, params, x, xb, it)
        if body.grad is not None:
            grad += body.grad
        loss = body.loss if loss is None else loss
        if loss is None:
            loss = float(self.loss(np.asarray(params)[None], x, xb)[0])
        return StepResult(grad, loss, self._spent(before), body.assign, body.commit)

    def head_points(self, params):
        """``head_points``, else ``HEAD_ROWS`` per head parameter (a least-squares fit on
        fewer fits noise); with ``max_time_s``, at most as many as let a solve take
        ``HEAD_SHARE`` of it, by the last solve's time per point (before the first: three
        forwards of each point, timed after one to compile), and at least twice the head's
        parameters where that takes at most 5 ``HEAD_SHARE``."""
        c, head = self.c, self.loss.head_slice()
        size = head.stop - head.start
        n = c.head_points or HEAD_ROWS * size
        if c.max_time_s is None:
            return n
        if self.solve_seconds is None:
            x = self.problem.sample(c.points, [c.seed, 0, 2])
            self.loss.predict(params, x[:1])
            t0 = time.perf_counter()
            self.loss.predict(params, x)
            self.solve_seconds = 3.0 * (time.perf_counter() - t0) / c.points

        def fit(share):
            return int(share * c.max_time_s / self.solve_seconds)

        return min(n, max(fit(HEAD_SHARE), min(2 * size, fit(5 * HEAD_SHARE))))

    def _solve_head(self, params, it):
        c = self.c
        if c.head != "gauss-newton":
            return params, NO_COST
        before = self._forwards()
        n = self.head_points(params)
        x = self.problem.sample(n, [c.seed, it, 1])
        xb = self.boundary_points(n, [c.seed, it, 1])
        if self.body.fits_boundary(it):
            params = solvers.solve_head(self.body.fit, params, x[:0], c.ridge, xb)
        else:
            t0 = time.perf_counter()
            params = solvers.solve_head(self.loss, params, x, c.ridge, xb)
            self.solve_seconds = (time.perf_counter() - t0) / n
        return params, self._spent(before)

    def on_start(self, params):
        return self._solve_head(params, 0)

    def hook_due(self, step):  # a head solve, every ``head_every`` iterations
        return self.c.head == "gauss-newton" and (step + 1) % self.c.head_every == 0

    def after_step(self, params, *, step, last):
        if self.hook_due(step) or last:
            return self._solve_head(params, step + 1)
        return params, NO_COST

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
        return {"body": self.body.state(), "boundary_weight": self.loss.boundary_weight}

    def load_state(self, state):
        if isinstance(state, dict) and "boundary_weight" in state:
            self.loss.set_boundary_weight(state["boundary_weight"])
            state = state["body"]
        self.body.load_state(self, state)  # a run of an older version: the body's alone

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
                    sigma=loss.sigma, derivatives=loss.method,
                    **({"boundary_weight": loss.boundary_weight}
                       if self.problem.boundary is not None else {}))

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
            b.semilogy([r["step"] for r in records], [r[key] for r in records], marker="o",
                       label="smoothed network")
            if key == "rel_l2":  # the trivial solution: network output 0
                b.axhline(trivial_rel_l2(self.problem, 1000, 12345), ls=":", color="gray",
                          label="network output 0" + (" (the hard constraint alone)"
                                                      if self.loss.constraint.active else ""))
                b.legend()
            b.set_xlabel("iteration")
            b.set_ylabel("relative L2 error" if key == "rel_l2" else "mean squared residual")

        save_figure(path, draw)
