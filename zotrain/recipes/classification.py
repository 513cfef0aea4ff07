"""The backpropagation-free MNIST recipe behind ``zotrain train mnist``.

``MnistConfig``'s defaults are the best configuration measured so far (see
docs/benchmarks.md).  ``run(config, out_dir)`` writes ``metrics.json``,
``model.npz``, ``log.jsonl``, ``checkpoint.npz`` and, with matplotlib,
``curves.png``.
"""

import dataclasses
import json
import resource
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from zotrain import optim
from zotrain.nn import architectures
from zotrain.zo import estimators
from zotrain.engine.callbacks import EarlyStopping, JsonlLog, ProgressBar
from zotrain.engine.checkpoint import CheckpointError, atomic_write, write_json
from zotrain.data import DataError, load_mnist, normalize
from zotrain.zo.evaluator import Evaluator, Plan, blocks_of, whole_body
from zotrain.engine.loop import EvaluatorStep, Split, Trainer, ZOStep


@dataclass
class MnistConfig:
    data: str = None
    model: str = "mnist"
    rank: int = 16
    evaluator: str = "local"  # none (plain estimator + exact head), global, local
    perturb: str = "activity"  # local evaluator: activity or weight perturbation
    link: int = 0
    lam: float = 1.0
    proto: float = 0.0
    epochs: int = 10
    batch_size: int = 100
    estimator: str = "rge"
    queries: int = 20
    mu: float = 1e-3
    dist: str = "gaussian"
    antithetic: bool = True
    per_group: bool = True
    fraction: float = 0.01  # CGE: coordinates visited per step
    optimizer: str = "adam"
    lr: float = 1e-3
    head_lr: float = 1e-3
    schedule: str = "cosine"  # constant or cosine (decay to 0 over the planned epochs)
    exact_head: bool = True
    seed: int = 0
    val_size: int = 5000
    patience: int = None
    backend: str = "numba"  # or onnxruntime: every forward pass in an inference session
    time_limit_s: float = None
    max_forward_passes: int = None  # stop once this many forward passes are spent
    max_forward_equivalents: float = None  # or this many full-forward equivalents (FLOPs)
    train_limit: int = None  # use only the first N training images (quick runs, tests)

    def validate(self):
        if self.estimator not in estimators.ESTIMATORS:
            raise ValueError(f"unknown estimator {self.estimator!r}; known estimators: "
                             f"{', '.join(estimators.ESTIMATORS)}")
        for name in ("queries", "epochs", "batch_size", "rank"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
        for name in ("mu", "lr", "head_lr"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and np.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be > 0, got {v!r}")
        if self.model not in MODELS:
            raise ValueError(f"unknown model {self.model!r}; known models: {', '.join(MODELS)}")
        if self.backend not in ("numba", "onnxruntime"):
            raise ValueError(f"backend must be 'numba' or 'onnxruntime', got {self.backend!r}")
        if self.backend == "onnxruntime" and self.evaluator != "none":
            raise ValueError("the onnxruntime backend runs weight-perturbation estimators on "
                             "whole-model forwards: use it with --evaluator none")
        if self.schedule not in ("constant", "cosine"):
            raise ValueError(f"schedule must be 'constant' or 'cosine', got {self.schedule!r}")
        if self.evaluator not in EVALUATORS:
            raise ValueError(f"unknown evaluator {self.evaluator!r}; known evaluators: "
                             f"{', '.join(EVALUATORS)}")
        if self.perturb not in ("activity", "weight"):
            raise ValueError(f"perturb must be 'activity' or 'weight', got {self.perturb!r}")
        if isinstance(self.link, bool) or not isinstance(self.link, int) or self.link < 0:
            raise ValueError(f"link (m) must be an integer >= 0, got {self.link!r}")
        if not (isinstance(self.lam, (int, float)) and self.lam >= 0):
            raise ValueError(f"lam (lambda) must be >= 0, got {self.lam!r}")


MODELS = {"mnist": lambda c: architectures.mnist_mlp(rank=c.rank),
          "deep": lambda c: architectures.mnist_deep(rank=c.rank)}
EVALUATORS = ("none", "global", "local")


def build_estimator(c):
    if c.estimator == "rge":
        return estimators.rge(c.queries, c.mu, dist=c.dist, antithetic=c.antithetic,
                              per_group=c.per_group)
    if c.estimator == "cge":
        return estimators.cge(c.mu, fraction=c.fraction)
    if c.estimator == "zo_sign_cd":
        return estimators.zo_sign_cd(c.mu, prob=c.fraction)
    return estimators.hybrid(c.queries, c.mu, eta=c.mu, prob=c.fraction, dist=c.dist)


def build_step(c, model):
    """The step rule, the trained vector's layout, the segments updated with exact head
    gradients, and the function that initialises the trained vector from a seed."""
    out = len(model.layers) - 1
    if c.evaluator == "none":
        head = [n for n in model.layout.names if n.startswith(f"{out}.")] if c.exact_head else []
        zo_names = [n for n in model.layout.names if n not in head]
        make = None
        if c.backend == "onnxruntime":
            from zotrain.export.runtime import OrtBackend
            make = OrtBackend(model).objective
        return (ZOStep(model, build_estimator(c), zo_names, c.exact_head, make_objective=make),
                model.layout, head, model.init)
    blocks = whole_body(model) if c.evaluator == "global" else blocks_of(model)
    mode = "weight" if c.evaluator == "global" else c.perturb
    plan = Plan(blocks, mode=mode, estimator=build_estimator(c), link=c.link, lam=c.lam, mu=c.mu,
                proto=c.proto)
    ev = Evaluator(model, plan, 10)
    heads = [n for n in ev.layout.names if n.startswith("aux") or n.startswith(f"{out}.")]
    return EvaluatorStep(ev), ev.layout, heads, ev.init


def build_optimizer(c, layout, head_names, total_steps):
    zo = np.ones(layout.n_params, bool)
    for name in head_names:
        s = layout[name]
        zo[s.offset:s.offset + s.size] = False
    sched = (lambda lr: optim.cosine(lr, total_steps)) if c.schedule == "cosine" else \
        (lambda lr: lr)
    rule = "sign" if c.estimator in ("zo_sign_cd", "hybrid") and c.evaluator == "none" \
        else c.optimizer
    return optim.partition({"zo": optim.get(rule, sched(c.lr)),
                            "head": optim.adam(sched(c.head_lr))}, {"zo": zo, "head": ~zo})


def load_splits(c):
    if c.data is not None and not Path(c.data).is_dir():
        raise DataError(f"data directory {c.data} does not exist; create it (the MNIST files are "
                        "then downloaded into it) or omit --data to use $ZOTRAIN_DATA or the cache")
    d = load_mnist(c.data)
    x, y = normalize(d.x_train), d.y_train.astype(np.int64)
    if c.train_limit:
        x, y = x[:c.train_limit], y[:c.train_limit]
    n_val = min(c.val_size, len(y) // 5)
    train = Split(x[:len(y) - n_val], y[:len(y) - n_val])
    val = Split(x[len(y) - n_val:], y[len(y) - n_val:])
    return train, val, Split(normalize(d.x_test), d.y_test.astype(np.int64))


def _check_writable(out):
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".zotrain-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise ValueError(f"output directory {out} is not writable ({e.strerror})") from None


def run(config, out_dir, *, resume=False, progress=True):
    """Train (or resume, from ``out_dir/checkpoint.npz``) and write the run's files."""
    config.validate()
    out = Path(out_dir)
    _check_writable(out)
    if resume and not (out / "checkpoint.npz").is_file():
        raise CheckpointError(f"cannot resume: {out} holds no checkpoint.npz")
    model = MODELS[config.model](config)
    train, val, test = load_splits(config)
    rule, layout, head_names, init = build_step(config, model)
    steps_per_epoch = len(train.y) // config.batch_size
    bar = ProgressBar(config.epochs * steps_per_epoch, disable=not progress)
    callbacks = [bar, JsonlLog(out / "log.jsonl")]
    if config.patience:
        callbacks.append(EarlyStopping(config.patience))
    optimizer = build_optimizer(config, layout, head_names, config.epochs * steps_per_epoch)
    trainer = Trainer(model, rule, optimizer, train, val, test,
                      epochs=config.epochs, batch_size=config.batch_size, seed=config.seed,
                      n_trainable=layout.n_params, checkpoint=out / "checkpoint.npz",
                      callbacks=callbacks, max_time_s=config.time_limit_s,
                      max_forward_passes=config.max_forward_passes,
                      max_forward_equivalents=config.max_forward_equivalents)
    if resume:
        trainer.resume(out / "checkpoint.npz")
    else:
        trainer.start(init(config.seed))
    write_json(out / "config.json", dataclasses.asdict(config))
    try:
        trainer.run()
    finally:
        bar.close()
    return _finish(trainer, model, config, out)


def _finish(trainer, model, config, out):
    h = trainer.history
    recs = [r for r in h.records if "test_accuracy" in r]
    best_val = max(recs, key=lambda r: r.get("val_accuracy", 0)) if recs else {}
    metrics = {
        "test_accuracy": recs[-1]["test_accuracy"] if recs else None,
        "best_test_accuracy": max(r["test_accuracy"] for r in recs) if recs else None,
        "test_accuracy_at_best_val": best_val.get("test_accuracy"),
        "epochs": h.epoch + h.batch / max(1, len(trainer.train_split.y) // config.batch_size),
        "steps": h.step,
        "forward_passes": h.forward_passes,
        "forward_equivalents": round(h.forward_equivalents, 1),
        "wall_time_s": round(h.wall_time_s, 2),
        "trainable_params": model.n_params,
        "dense_params": model.dense_params,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "stopped": trainer.stop or "completed",
        "config": dataclasses.asdict(config),
        "history": h.records,
    }
    write_json(out / "metrics.json", metrics)
    save_model(out / "model.npz", model, trainer.model_params, dataclasses.asdict(config))
    plot_curves(out / "curves.png", h.records)
    return metrics


def save_model(path, model, params, config):
    """Parameters, layout, architecture and config, atomically."""
    def write(f):
        np.savez(f, params=params, layout=json.dumps(model.layout.to_dict()),
                 spec=json.dumps(model.spec()), config=json.dumps(config))
    atomic_write(path, write)


def plot_curves(path, records):
    """Loss and accuracy against forward passes; skipped without matplotlib."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    recs = [r for r in records if "test_accuracy" in r]
    if not recs:
        return
    fp = [r["forward_passes"] for r in recs]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    for key in ("val_loss", "test_loss"):
        a.plot(fp, [r.get(key) for r in recs], marker="o", label=key)
    for key in ("val_accuracy", "test_accuracy"):
        b.plot(fp, [r.get(key) for r in recs], marker="o", label=key)
    for ax, title in ((a, "loss"), (b, "accuracy")):
        ax.set_xlabel("forward passes")
        ax.set_title(title)
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=100))
    plt.close(fig)
