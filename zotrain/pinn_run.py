"""The backpropagation-free PINN recipe behind ``zotrain pinn PROBLEM``.

Each iteration draws fresh collocation points (seeded by the iteration), the
ZO estimator queries the PINN loss of perturbed parameter sets (every query a
batched forward on all shifted inputs of ``zotrain.pinn.loss``), and Adam
applies the estimate.  The relative L2 error is measured on 10,000 uniform
test points with the smoothed predictor the model is deployed with.
"""

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from zotrain import estimators, models, optim
from zotrain.checkpoint import atomic_write, write_json
from zotrain.objective import FunctionObjective
from zotrain.pinn import problems
from zotrain.pinn.loss import PinnLoss

METHODS = ("sparse-grid", "stein-mc")


@dataclass
class PinnConfig:
    problem: str = "hjb20d"
    iters: int = 2000
    derivatives: str = "sparse-grid"
    level: int = 2
    samples: int = 43  # Monte-Carlo nodes (the sparse grid's count in 21-D at level 2)
    sigma: float = 0.05
    width: int = 512
    rank: int = 2
    points: int = 64  # collocation points per iteration
    queries: int = 20
    mu: float = 1e-2
    lr: float = 2e-3
    seed: int = 0
    eval_every: int = 100
    test_points: int = 10000

    def validate(self):
        problems.get(self.problem)
        if self.derivatives not in METHODS:
            raise ValueError(f"unknown derivative method {self.derivatives!r}; known: "
                             f"{', '.join(METHODS)}")
        for name in ("iters", "points", "queries", "level", "samples", "width", "rank"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
        for name in ("sigma", "mu", "lr"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")


def rel_l2(loss, params, problem, n, seed):
    x = problem.sample(n, seed)
    pred = np.concatenate([loss.predict(params, x[i:i + 500]) for i in range(0, n, 500)])
    exact = problem.exact(x)
    return float(np.linalg.norm(pred - exact) / np.linalg.norm(exact))


def run(c, out_dir, progress=True):
    c.validate()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    problem = problems.get(c.problem)
    model = models.pinn_mlp(in_features=problem.dim, width=c.width, rank=c.rank)
    loss = PinnLoss(model, problem, sigma=c.sigma, method=c.derivatives, level=c.level,
                    samples=c.samples, seed=c.seed)
    est = estimators.rge(c.queries, c.mu)
    opt = optim.adam(optim.cosine(c.lr, c.iters))
    params = model.init(c.seed)
    state = opt.init(params)
    history, passes, t0 = [], 0, time.perf_counter()
    log = open(out / "log.jsonl", "w")
    for it in range(1, c.iters + 1):
        x = problem.sample(c.points, seed=[c.seed, it])
        obj = FunctionObjective(lambda P: loss(P, x), model.layout)
        e = est.estimate(obj, params, model.layout.names, seed=c.seed, step=it)
        passes += e.forward_passes
        if not np.isfinite(e.loss):
            raise FloatingPointError(f"PINN loss became {e.loss} at iteration {it}")
        params, state = opt.update(e.grad, state, params)
        if it % c.eval_every == 0 or it == c.iters:
            rec = {"iter": it, "loss": e.loss, "rel_l2": rel_l2(loss, params, problem, 2000, 1),
                   "forward_passes": passes, "wall_time_s": round(time.perf_counter() - t0, 2)}
            history.append(rec)
            log.write(json.dumps(rec) + "\n")
            log.flush()
            if progress:
                print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                               for k, v in rec.items()), flush=True)
    log.close()
    metrics = {"rel_l2": rel_l2(loss, params, problem, c.test_points, 12345),
               "forward_passes": passes, "wall_time_s": round(time.perf_counter() - t0, 2),
               "trainable_params": model.n_params, "dense_params": model.dense_params,
               "config": dataclasses.asdict(c), "history": history}
    write_json(out / "metrics.json", metrics)
    atomic_write(out / "model.npz", lambda f: np.savez(
        f, params=params, spec=json.dumps(model.spec()), config=json.dumps(metrics["config"])))
    _plots(out, loss, params, problem, history)
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
