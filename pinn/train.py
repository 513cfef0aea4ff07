"""The backpropagation-free PINN recipe behind ``zotrain pinn PROBLEM``.

Each iteration draws ``points`` fresh collocation points (seeded by the
iteration) and takes one zeroth-order step on the body (every layer but the
last): RGE queries of the PINN loss, each a batched forward of the perturbed
network on all shifted inputs (``zotrain.pinn.loss``), and Adam.  Before the
first iteration, after every ``head_every``-th and after the last, the last
(Dense) layer is solved: one ridge-regularised Gauss-Newton step from the
exact head Jacobian, built from the features entering the head at
``head_points`` collocation points (forward passes only; see
``PinnLoss.head_jacobian``).  ``--head zo`` trains the head with the body by
RGE instead.  A problem with boundary data (heat100d) adds the mean squared
boundary error on a quarter as many boundary points.

A forward pass is one parameter set evaluated on ``points`` collocation points
(each point is ``M`` network evaluations: the rule's shifted inputs).  The
relative L2 error is measured on 10,000 uniform test points with the smoothed
predictor the model is deployed with.  ``DIR/checkpoint.npz`` and
``DIR/model.npz`` are written atomically at every evaluation, so a diverging
run stops with its last good state, and ``resume`` continues bit-identically.
"""

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from zotrain import optim
from zotrain.nn import architectures
from zotrain.zo import estimators
from zotrain.engine.checkpoint import CheckpointError, atomic_write, load_checkpoint, save_checkpoint, \
    write_json
from zotrain.zo.objective import FunctionObjective
from zotrain.pinn import problems
from zotrain.pinn.derivatives import METHODS
from zotrain.pinn.loss import PinnLoss
from zotrain.engine.loop import DivergenceError

HEADS = ("gauss-newton", "zo")
BACKENDS = ("numba", "onnxruntime")
_RESUMABLE = {"iters", "max_time_s", "eval_every", "backend"}  # may change on resume


@dataclass
class PinnConfig:
    problem: str = "hjb20d"
    iters: int = 100
    derivatives: Optional[str] = None  # the problem's default rule
    level: int = 3  # Smolyak level (sparse-grid)
    samples: int = 441  # Monte-Carlo draws (stein-mc): 2 * 441 + 1 = 883 evaluations per point
    sigma: Optional[float] = None  # smoothing, in box widths; the problem's default
    width: int = 512
    rank: int = 2
    points: int = 64  # collocation points per iteration
    queries: int = 4  # RGE queries (antithetic: 2 forward passes each)
    mu: float = 1e-2
    lr: float = 1e-3
    head: str = "gauss-newton"
    head_every: int = 20
    head_points: int = 4096
    ridge: float = 1e-6
    seed: int = 0
    eval_every: int = 20
    eval_points: int = 1000  # for the curve; the final error uses test_points
    test_points: int = 10000
    max_time_s: Optional[float] = None
    backend: str = "numba"  # or "onnxruntime": every forward pass in an inference session

    def validate(self):
        p = problems.get(self.problem)
        method = self.derivatives or p.method
        if method not in METHODS:
            raise ValueError(f"unknown derivative method {method!r}; known: {', '.join(METHODS)}")
        if self.backend not in BACKENDS:
            raise ValueError(f"unknown backend {self.backend!r}; known: {', '.join(BACKENDS)}")
        if self.head not in HEADS:
            raise ValueError(f"unknown head training {self.head!r}; known: {', '.join(HEADS)}")
        for name in ("iters", "points", "queries", "level", "samples", "width", "rank",
                     "head_every", "head_points", "eval_every", "eval_points", "test_points"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
        for name in ("sigma", "mu", "lr", "max_time_s"):
            v = getattr(self, name)
            if v is not None and not v > 0:
                raise ValueError(f"{name} must be > 0, got {v!r}")
        if not self.ridge >= 0:
            raise ValueError(f"ridge must be >= 0, got {self.ridge!r}")


def build(c):
    """``(problem, model, loss)`` of a configuration."""
    problem = problems.get(c.problem)
    model = architectures.pinn_mlp(in_features=problem.dim, width=c.width, rank=c.rank)
    network = None
    if c.backend == "onnxruntime":
        from zotrain.export.runtime import OrtNetwork

        network = OrtNetwork(model)
    loss = PinnLoss(model, problem, sigma=c.sigma, method=c.derivatives, level=c.level,
                    samples=c.samples, seed=c.seed, network=network)
    return problem, model, loss


def init_params(model, problem, seed):
    """``model.init(seed)``, with the first layer's frequencies scaled by ``problem.omega``
    and, when scaled, its biases spread over [-pi, pi] (SIREN-style random Fourier
    features for low-dimensional problems)."""
    params = model.init(seed)
    if problem.omega != 1.0:
        first = [s for s in model.layout if s.name.startswith("0.")]
        params[first[0].offset:first[0].offset + first[0].size] *= problem.omega
        bias = [s for s in first if s.name == "0.bias"]
        if bias:
            b = bias[0]
            rng = np.random.default_rng([seed, 7])
            params[b.offset:b.offset + b.size] = rng.uniform(-np.pi, np.pi, b.size)
    return params


def rel_l2(loss, params, n, seed):
    """Relative L2 error of the smoothed predictor on ``n`` uniform points."""
    x = loss.problem.sample(n, seed)
    exact = loss.problem.exact(x)
    return float(np.linalg.norm(loss.predict(params, x) - exact) / np.linalg.norm(exact))


def _optimizer(c, model, loss):
    body = np.ones(model.n_params, bool)
    if c.head == "gauss-newton":
        body[loss.head_slice()] = False
    return optim.adam(optim.cosine(c.lr, c.iters)), body


def _save(out, model, params, state, meta):
    save_checkpoint(out / "checkpoint.npz", params, state, meta)
    atomic_write(out / "model.npz", lambda f: np.savez(
        f, params=params, spec=json.dumps(model.spec()), config=json.dumps(meta["config"])))


def _resume(out, config, state):
    params, state, meta = load_checkpoint(out / "checkpoint.npz", state)
    old = {k: v for k, v in meta["config"].items() if k not in _RESUMABLE}
    new = {k: v for k, v in config.items() if k not in _RESUMABLE}
    if old != new:
        diff = sorted(k for k in new if old.get(k) != new[k])
        raise CheckpointError(f"the checkpoint in {out} was made with other settings: "
                              f"{', '.join(diff)}")
    return params, state, meta


def run(c, out_dir, progress=True, resume=False):
    """Train, evaluate and write the run's files; returns the metrics dict.

    Raises ``DivergenceError`` (last good state kept in ``out_dir``) on a
    non-finite loss; on ``KeyboardInterrupt`` the last completed iteration is
    checkpointed first.  ``resume`` continues from ``out_dir/checkpoint.npz``."""
    c.validate()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    problem, model, loss = build(c)
    opt, body = _optimizer(c, model, loss)
    names = [s.name for s in model.layout if body[s.offset:s.offset + s.size].all()]
    est = estimators.rge(c.queries, c.mu, per_group=False)
    params = init_params(model, problem, c.seed)
    state = opt.init(params)
    config = dataclasses.asdict(c)
    meta = {"iter": 0, "forward_passes": 0.0, "history": [], "config": config,
            "wall_time_s": 0.0}
    if resume:
        params, state, meta = _resume(out, config, state)
        meta["config"] = config

    def boundary_points(n, seed):  # a quarter as many as interior points
        return None if problem.boundary is None else \
            problem.sample_boundary(max(1, n // 4), seed)

    def solve_head(params, it):
        if c.head != "gauss-newton":
            return params
        return loss.solve_head(params, problem.sample(c.head_points, [c.seed, it, 1]), c.ridge,
                               boundary_points(c.head_points, [c.seed, it, 1]))

    log = open(out / "log.jsonl", "a" if resume else "w")
    if not resume:  # the untrained error starts the curve
        rec = {"iter": 0, "loss": None, "rel_l2": rel_l2(loss, params, c.eval_points, 1),
               "forward_passes": 0, "wall_time_s": 0.0}
        meta["history"].append(rec)
        log.write(json.dumps(rec) + "\n")
    t0 = time.perf_counter() - meta["wall_time_s"]
    done = (params, state, dict(meta, history=list(meta["history"])))  # last completed
    try:
        for it in range(meta["iter"] + 1, c.iters + 1):
            before = loss.point_forwards
            if it == 1:
                params = solve_head(params, 0)
            x = problem.sample(c.points, [c.seed, it])
            xb = boundary_points(c.points, [c.seed, it])
            e = est.estimate(FunctionObjective(lambda P: loss(P, x, xb), model.layout), params,
                             names, seed=c.seed, step=it)
            if not np.isfinite(e.loss) or not np.all(np.isfinite(e.grad)):
                good = meta["history"][-1]["iter"] if meta["history"] else None
                raise DivergenceError(
                    f"the PINN loss became {e.loss} at iteration {it}; the last good state "
                    f"({'iteration ' + str(good) if good else 'none yet'}) is kept in {out}")
            params, state = opt.update(np.where(body, e.grad, 0).astype(np.float32), state,
                                       params)
            timed_out = c.max_time_s is not None and time.perf_counter() - t0 > c.max_time_s
            last = it == c.iters or timed_out
            if it % c.head_every == 0 or last:
                params = solve_head(params, it)
            meta["iter"] = it
            meta["forward_passes"] += (loss.point_forwards - before) / c.points
            meta["wall_time_s"] = round(time.perf_counter() - t0, 2)
            if it % c.eval_every == 0 or last:
                rec = {"iter": it, "loss": e.loss,
                       "rel_l2": rel_l2(loss, params, c.eval_points, 1),
                       "forward_passes": round(meta["forward_passes"], 2),
                       "wall_time_s": meta["wall_time_s"]}
                meta["history"].append(rec)
                log.write(json.dumps(rec) + "\n")
                log.flush()
                _save(out, model, params, state, meta)
                if progress:
                    print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                   for k, v in rec.items()), flush=True)
            done = (params, state, dict(meta, history=list(meta["history"])))
            if timed_out:
                break
    except KeyboardInterrupt:
        _save(out, model, *done)
        print(f"interrupted: iteration {done[2]['iter']} saved in {out}; continue with --resume",
              flush=True)
        raise
    finally:
        log.close()
    metrics = {"rel_l2": rel_l2(loss, params, c.test_points, 12345), "iters": meta["iter"],
               "forward_passes": round(meta["forward_passes"], 2),
               "network_evaluations": int(round(meta["forward_passes"] * c.points *
                                                loss.evaluations)),
               "evaluations_per_point": loss.evaluations, "wall_time_s": meta["wall_time_s"],
               "trainable_params": model.n_params, "dense_params": model.dense_params,
               "sigma": loss.sigma, "derivatives": loss.method,
               "config": config, "history": meta["history"]}
    write_json(out / "metrics.json", metrics)
    _plots(out, loss, params, problem, meta["history"])
    return metrics


def _plots(out, loss, params, problem, history):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    s = np.linspace(0, 1, 200)[:, None]
    lo, hi = np.asarray(problem.lower), np.asarray(problem.upper)
    x = lo + s * (hi - lo)  # the diagonal of the domain
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    a.plot(s[:, 0], problem.exact(x), label="exact")
    a.plot(s[:, 0], loss.predict(params, x), "--", label="smoothed network")
    a.set_xlabel("position along the domain's diagonal")
    a.legend()
    b.semilogy([r["iter"] for r in history], [r["rel_l2"] for r in history], marker="o")
    b.set_xlabel("iteration")
    b.set_ylabel("relative L2 error")
    fig.tight_layout()
    atomic_write(out / "curves.png", lambda f: fig.savefig(f, format="png", dpi=100))
    plt.close(fig)
