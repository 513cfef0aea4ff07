"""Forward-only classification of any ``Sequential`` on any data, as a task on the engine.

``train_classifier(model, data, config, out_dir)`` trains ``model`` (ending in
a Dense output layer) on a ``zotrain.data.Dataset`` with the step rule the
config names (a registered estimator with an exact head, or the hybrid
ZO/local evaluator) and writes ``metrics.json``, ``model.npz``,
``log.jsonl``, ``checkpoint.npz`` and, with matplotlib, ``curves.png``.
``ClassifierConfig``'s defaults are the best MNIST configuration measured so
far (docs/benchmarks.md).
"""

import dataclasses
from dataclasses import dataclass
from typing import NamedTuple, Optional

import numpy as np

from zotrain import optim
from zotrain.base import Network, ZotrainError, require
from zotrain.data import minibatches
from zotrain.engine.callbacks import EarlyStopping
from zotrain.engine.rundir import save_model
from zotrain.engine.loop import Engine
from zotrain.engine.memory import check_fits
from zotrain.engine.plots import save_figure
from zotrain.nn import architectures, losses
from zotrain.recipes.presets import PRESETS
from zotrain.options import option
from zotrain.zo import estimators
from zotrain.zo.objective import DIST
from zotrain.zo.evaluator import Evaluator, Plan, blocks_of, whole_body
from zotrain.zo.steps import EvaluatorStep, ZOStep

EVALUATORS = ("none", "global", "local")
#: settings that may change when a run is resumed
RESUMABLE = ("epochs", "time_limit_s", "max_forward_passes", "max_forward_equivalents",
             "patience", "data", "ray", "workers", "transport", "backend")


@dataclass
class ModelOptions:
    """The classifier's architecture on the command line (``zotrain train``, ``zotrain
    device``): a run records them beside its ``ClassifierConfig``."""

    preset: Optional[str] = option(
        None, "a named recipe whose settings the other options override: " + "; ".join(
            f"{k} ({v['about']})" for k, v in PRESETS.items()), "model", choices=tuple(PRESETS))
    model: str = option("mlp", "architecture: mlp (one TT hidden layer; 'mnist' is its old "
                        "name) or deep (three)", "model", choices=tuple(architectures.DEPTHS))
    rank: int = option(16, "TT rank", "model")
    hidden: int = option(1024, "hidden width", "model", flag="--width", metavar="WIDTH",
                         aliases=("--hidden",))
    max_params: Optional[int] = option(None, "refuse a model with more than N parameters (a "
                                       "preset sets its own budget)", "model", metavar="N")


@dataclass
class ClassifierConfig:
    """How ``train_classifier`` trains; each field carries its ``zotrain train`` flag and
    help (``zotrain.options``)."""

    evaluator: str = option("local", "none (an estimator on the whole body and an exact "
                            "head), global or local (blocks with exact local heads)",
                            "evaluator", choices=EVALUATORS)
    perturb: str = option("activity", "local evaluator: perturb the block's activity or its "
                          "weights", "evaluator", choices=("activity", "weight"))
    link: int = option(0, "backward-link horizon m: blocks also see the losses of the next m",
                       "evaluator")
    lam: float = option(1.0, "weight of the linked losses", "evaluator")
    proto: float = option(0.0, "prototype-target weight", "evaluator")
    epochs: int = option(10, "epochs", "budgets and stopping")
    batch_size: int = option(100, "minibatch size", "optimisation")
    estimator: str = option("rge", "a registered estimator; built in: rge, cge, zo_sign_cd, "
                            "hybrid", "estimator")
    queries: int = option(20, "queries N per step", "estimator")
    mu: float = option(1e-3, "smoothing / step of the estimator", "estimator")
    dist: str = option("gaussian", "direction distribution", "estimator",
                       choices=tuple(DIST))
    antithetic: bool = option(True, "one-sided RGE differences (default antithetic)",
                              "estimator", negate="--one-sided")
    per_group: bool = option(True, "perturb all segments at once (default: one segment per "
                             "query)", "estimator", negate="--joint")
    fraction: float = option(0.01, "CGE/coordinate descent: coordinates visited per step",
                             "estimator")
    optimizer: str = option("adam", "optimizer of the ZO parameters", "optimisation",
                            choices=tuple(optim.OPTIMIZERS))
    lr: float = option(1e-3, "learning rate of the ZO parameters", "optimisation")
    head_lr: float = option(1e-3, "learning rate of the head", "optimisation")
    schedule: str = option("cosine", "learning-rate schedule (cosine: decay to 0 over the "
                           "planned epochs)", "optimisation", choices=("constant", "cosine"))
    exact_head: bool = option(True, "train the head with the body's estimator instead of "
                              "its exact gradient", "optimisation", negate="--no-exact-head")
    seed: int = option(0, "seed", "optimisation")
    val_size: int = option(5000, "training examples held out for validation", "data")
    patience: Optional[int] = option(None, "early stopping: epochs without a better "
                                     "validation loss", "budgets and stopping")
    backend: str = option("numba", "where forward passes run (onnxruntime: with --evaluator "
                          "none)", "backend and scale-out", choices=("numba", "onnxruntime"))
    time_limit_s: Optional[float] = option(
        None, "stop after this much time, the final evaluation included",
        "budgets and stopping", flag="--max-time", metavar="SECONDS", aliases=("--time-limit",))
    max_forward_passes: Optional[int] = option(
        None, "stop after N forward passes (queries, however partial)", "budgets and stopping",
        flag="--budget", metavar="N")
    max_forward_equivalents: Optional[float] = option(
        None, "stop after N forward-pass equivalents: the FLOPs of the layers the queries ran, "
        "over those of one full forward", "budgets and stopping", flag="--budget-equivalents",
        metavar="N")
    train_limit: Optional[int] = option(None, "train on the first N examples only", "data",
                                        metavar="N")
    ray: Optional[str] = option(
        None, "evaluate the weight-perturbation queries (--evaluator none or global, or "
        "--perturb weight) on Ray actors: a cluster's address, or none to start a local Ray "
        'instance (needs pip install "zotrain[distributed]")', "backend and scale-out",
        nargs="?", const="local", metavar="ADDRESS")
    workers: int = option(1, "Ray actors", "backend and scale-out", metavar="N")
    block_parallel: bool = option(False, "with --ray and --evaluator local: each block trains "
                                  "on its own actor at the same time, on the features the "
                                  "block below produced one step earlier",
                                  "backend and scale-out")
    transport: str = option("auto", "with --ray and --evaluator none: send the parameters with "
                            "each step's queries (params), or have each actor replay the "
                            "updates from the step's losses and seeds (replay); auto measures "
                            "both on the first steps and keeps the faster",
                            "backend and scale-out", choices=("auto", "params", "replay"))

    def validate(self):
        for name in ("queries", "epochs", "batch_size"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ZotrainError(f"{name} must be an integer >= 1, got {v!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ZotrainError(f"seed must be an integer >= 0, got {self.seed!r}")
        for name in ("train_limit", "patience"):  # None: no limit
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise ZotrainError(f"{name} must be an integer >= 1 (or None), got {v!r}")
        if isinstance(self.val_size, bool) or not isinstance(self.val_size, int) or \
                self.val_size < 0:
            raise ZotrainError(f"val_size must be an integer >= 0, got {self.val_size!r}")
        for name in ("mu", "lr", "head_lr"):
            v = getattr(self, name)
            if isinstance(v, bool) or not (isinstance(v, (int, float)) and np.isfinite(v) and
                                           v > 0):
                raise ZotrainError(f"{name} must be > 0 and finite, got {v!r}")
        for name, label in (("lam", "lam (lambda)"), ("proto", "proto")):
            v = getattr(self, name)
            if isinstance(v, bool) or not (isinstance(v, (int, float)) and np.isfinite(v) and
                                           v >= 0):
                raise ZotrainError(f"{label} must be >= 0 and finite, got {v!r}")
        choices = {"backend": ("numba", "onnxruntime"), "schedule": ("constant", "cosine"),
                   "evaluator": EVALUATORS, "perturb": ("activity", "weight")}
        for name, known in choices.items():
            if getattr(self, name) not in known:
                raise ZotrainError(f"unknown {name} {getattr(self, name)!r}; known: "
                                   f"{', '.join(known)}")
        if isinstance(self.workers, bool) or not isinstance(self.workers, int) or \
                self.workers < 1:
            raise ZotrainError(f"workers must be an integer >= 1, got {self.workers!r}")
        if self.block_parallel and (self.ray is None or self.evaluator != "local" or
                                    self.proto > 0):
            raise ZotrainError("--block-parallel trains the local evaluator's blocks on Ray "
                               "actors: it needs --ray and --evaluator local, without --proto")
        if self.ray is not None and not self.block_parallel and (
                self.backend != "numba" or (self.evaluator == "local" and
                                            self.perturb == "activity")):
            raise ZotrainError("--ray distributes weight-perturbation queries (--evaluator none "
                               "or global, or --perturb weight) on the numba backend; activity "
                               "perturbation evaluates its per-unit queries incrementally in "
                               "one kernel (--block-parallel distributes its blocks instead)")
        if self.backend == "onnxruntime" and self.evaluator != "none":
            raise ZotrainError("the onnxruntime backend runs weight-perturbation estimators on "
                               "whole-model forwards: use it with --evaluator none")
        from zotrain.distributed.pool import check_address  # no Ray imported
        from zotrain.distributed.replay import TRANSPORTS

        if self.ray is not None and self.ray != "local":
            check_address(self.ray)

        if self.transport not in TRANSPORTS:
            raise ZotrainError(f"unknown transport {self.transport!r}; known: "
                               f"{', '.join(TRANSPORTS)}")
        if self.transport == "replay" and (self.ray is None or self.evaluator != "none"):
            raise ZotrainError("--transport replay replays whole-model updates on the actors: "
                               "it needs --ray and --evaluator none (block queries send their "
                               "block's input each step anyway)")
        if isinstance(self.link, bool) or not isinstance(self.link, int) or self.link < 0:
            raise ZotrainError(f"link (m) must be an integer >= 0, got {self.link!r}")
        if self.optimizer not in optim.OPTIMIZERS:
            raise ZotrainError(f"unknown optimizer {self.optimizer!r}; known: "
                               f"{', '.join(optim.OPTIMIZERS)}")
        estimators.get(self.estimator, self.options())  # unknown names list the known ones

    def options(self):
        return estimators.Options(self.queries, self.mu, self.dist, self.antithetic,
                                  self.per_group, self.fraction)


class Split(NamedTuple):
    x: np.ndarray
    y: np.ndarray


class StepPlan(NamedTuple):
    """The step rule, the trained vector's layout, the segments updated by exact
    head gradients, the initialiser of the trained vector, and whether the ZO
    parameters are updated by a registered estimator (weight perturbation)."""

    rule: object
    layout: object
    head_names: list
    init: object
    estimator: object
    pool: object = None  # the zotrain.distributed.QueryPool evaluating its queries, if any


def build_step(c, model):
    """The ``StepPlan`` of config ``c`` for ``model``; a Ray pool it started is shut down
    again if building the rest fails."""
    pools = []
    try:
        return _build_step(c, model, pools)
    except BaseException:
        for pool in pools:
            pool.shutdown()
        raise


def _build_step(c, model, pools):
    out = len(model.layers) - 1
    est = estimators.get(c.estimator, c.options())
    if c.evaluator == "none":
        head = [s.name for s in model.layout.of_layer(out)] if c.exact_head else []
        zo_names = [n for n in model.layout.names if n not in head]
        make, pool = None, None
        if c.backend == "onnxruntime":
            from zotrain.export.runtime import OrtBackend

            make = OrtBackend(model).objective
        rule = ZOStep(model, est, zo_names, c.exact_head)
        if c.ray is not None and c.transport == "params":
            from zotrain.distributed import ModelObjectives, pool_objectives

            pool = _pool(c, ModelObjectives(model), pools)
            make = pool_objectives(pool, model)
        elif c.ray is not None:  # replay, or auto: measure both
            from zotrain.distributed.replay import ReplayedStep, ReplicaObjectives

            pool = _pool(c, ReplicaObjectives(model, rule.loss, est, zo_names, c.exact_head),
                         pools)
            rule = ReplayedStep(rule, pool, c.transport)
        if make is not None:
            rule = dataclasses.replace(rule, make_objective=make)
        return StepPlan(rule, model.layout, head, model.init, est, pool)
    blocks = whole_body(model) if c.evaluator == "global" else blocks_of(model)
    mode = "weight" if c.evaluator == "global" else c.perturb
    plan = Plan(blocks, mode=mode, estimator=est, link=c.link, lam=c.lam, mu=c.mu, proto=c.proto)
    ev = Evaluator(model, plan, model.out_features)
    heads = [s.name for s in ev.layout if s.layer is None or s.layer == out]
    rule, pool = EvaluatorStep(ev), None
    if c.block_parallel:
        from zotrain.distributed.blocks import BlockEvaluators, BlockParallelStep

        pool = _pool(c, BlockEvaluators(model, plan, model.out_features), pools)
        rule = BlockParallelStep(ev, pool)
    elif c.ray is not None:
        from zotrain.distributed import BlockObjectives

        pool = ev.strategy.pool = _pool(c, BlockObjectives(model, plan, model.out_features),
                                        pools)
    return StepPlan(rule, ev.layout, heads, ev.init, est if mode == "weight" else None, pool)


def _pool(c, factory, pools):
    from zotrain.distributed import QueryPool

    pools.append(QueryPool(factory, c.workers, None if c.ray == "local" else c.ray))
    return pools[-1]


def build_optimizer(c, plan, total_steps):
    """Heads by Adam; the ZO parameters by the configured optimizer, or by the sign rule
    when the estimator that updates them declares ``update_rule == "sign"``."""
    zo = np.ones(plan.layout.n_params, bool)
    for name in plan.head_names:
        zo[plan.layout[name].slice] = False
    sched = (lambda lr: optim.cosine(lr, total_steps)) if c.schedule == "cosine" else \
        (lambda lr: lr)
    sign = plan.estimator is not None and plan.estimator.update_rule == "sign"
    return optim.partition({"zo": optim.get("sign" if sign else c.optimizer, sched(c.lr)),
                            "head": optim.adam(sched(c.head_lr))}, {"zo": zo, "head": ~zo})


def accuracy_and_loss(model, params, split, chunk=2000):
    """Accuracy and mean cross-entropy of ``params`` on ``split``."""
    correct, loss = 0, 0.0
    for i in range(0, len(split.y), chunk):
        out = model.apply(params, split.x[i:i + chunk])
        y = split.y[i:i + chunk]
        loss += float(np.sum(losses.xent(out, y)))
        correct += int(np.sum(out.argmax(axis=1) == y))
    return correct / len(split.y), loss / len(split.y)


class ClassificationTask:
    """Minibatches of ``train``, a step rule, accuracy and loss on ``val`` and ``test``."""

    def __init__(self, model, plan, train, val, test, *, batch_size, config):
        self.model, self.plan, self.config = model, plan, config
        self.train, self.val, self.test, self.batch_size = train, val, test, batch_size
        self.n_params = plan.layout.n_params
        self.steps_per_epoch = max(1, len(train.y) // batch_size)
        self.steps_done = 0  # the last step taken (an interrupted run has no record of it)

    def init(self, seed):
        return self.plan.init(seed)

    def batches(self, epoch, seed):
        return minibatches(self.train.x, self.train.y, self.batch_size, seed=seed, epoch=epoch)

    def step(self, params, batch, *, seed, step):
        self.steps_done = step + 1
        return self.plan.rule(params, *batch, seed=seed, step=step)

    def evaluate(self, params):
        record = {}
        for name, split in (("val", self.val), ("test", self.test)):
            if split is not None and len(split.y):
                acc, loss = accuracy_and_loss(self.model, params[:self.model.n_params], split)
                record[f"{name}_accuracy"], record[f"{name}_loss"] = acc, loss
        return record

    def observe(self, epoch, record):
        if "val_loss" in record:
            self.plan.rule.observe(epoch, record["val_loss"])

    def state(self):
        return self.plan.rule.state()

    def load_state(self, state):
        self.plan.rule.load_state(state)

    def summary(self, params, records):
        recs = [r for r in records if "test_accuracy" in r]
        best_val = max(recs, key=lambda r: r.get("val_accuracy", 0)) if recs else {}
        steps = max(records[-1]["step"] if records else 0, self.steps_done)
        return {"test_accuracy": recs[-1]["test_accuracy"] if recs else None,
                "best_test_accuracy": max(r["test_accuracy"] for r in recs) if recs else None,
                "test_accuracy_at_best_val": best_val.get("test_accuracy"),
                "epochs": round(steps / self.steps_per_epoch, 4),
                "trainable_params": self.model.n_params, "dense_params": self.model.dense_params,
                **(self.plan.rule.summary() if hasattr(self.plan.rule, "summary") else {})}

    def save_model(self, path, params):
        save_model(path, self.model, params[:self.model.n_params], self.config)

    def plot(self, path, params, records):
        """Loss and accuracy against forward passes: the training minibatch's loss at each
        evaluation, validation and test; the majority class's share as the trivial
        baseline."""
        recs = [r for r in records if "test_accuracy" in r]
        if not recs:
            return
        fp = [r["forward_passes"] for r in recs]
        majority = np.bincount(self.test.y).max() / len(self.test.y)

        def draw(axes):
            loss, acc = axes
            for key, label in (("loss", "training (last minibatch)"), ("val_loss", "validation"),
                               ("test_loss", "test")):
                if any(r.get(key) is not None for r in recs):
                    loss.plot(fp, [r.get(key) for r in recs], marker="o", label=label)
            loss.set_ylabel("cross-entropy (nats)")
            for key, label in (("val_accuracy", "validation"), ("test_accuracy", "test")):
                acc.plot(fp, [r.get(key) for r in recs], marker="o", label=label)
            acc.axhline(majority, color="grey", ls=":", label=f"majority class ({majority:.2f})")
            acc.set_ylabel("accuracy (fraction correct)")
            for ax, title in ((loss, "loss"), (acc, "accuracy")):
                ax.set_xlabel("forward passes")
                ax.set_title(title)
                ax.legend()
                ax.grid(alpha=0.3)

        save_figure(path, draw)


def validation_size(n, val_size):
    """Examples held out for validation from ``n`` training examples: the last
    ``val_size``, at most a fifth."""
    return min(val_size, n // 5)


def splits(data, config):
    """Train, validation (the last ``val_size`` training examples, at most a fifth) and
    test splits of a ``Dataset``."""
    x, y = data.x_train, data.y_train
    if config.train_limit:
        x, y = x[:config.train_limit], y[:config.train_limit]
    n_val = validation_size(len(y), config.val_size)
    return (Split(x[:len(y) - n_val], y[:len(y) - n_val]), Split(x[len(y) - n_val:],
                                                                   y[len(y) - n_val:]),
            Split(data.x_test, data.y_test))


def train_classifier(model, data, config=None, out_dir=None, *, resume=False, progress=True,
                     callbacks=(), run_config=None, overwrite=False):
    """Train ``model`` on ``data`` (a ``Dataset``) forward-only; returns the metrics.

    A new run into an ``out_dir`` that holds one is refused unless ``overwrite``;
    ``resume`` continues it (its settings must match, budgets aside).  A Ray pool the
    config asks for is shut down on every exit.

    ``run_config`` (a dict) is stored with the config in every checkpoint and
    ``model.npz`` (the CLI records the data set and architecture names there)."""
    require(model, Network, "the model")
    c = config or ClassifierConfig()
    c.validate()
    data.check(model)
    train, val, test = splits(data, c)
    if len(train.y) < c.batch_size:
        raise ZotrainError(f"batch_size {c.batch_size} exceeds the {len(train.y)} training "
                           "examples")
    check_fits(model.n_params)
    plan = build_step(c, model)
    try:
        return _train(model, plan, (train, val, test), c, out_dir, resume=resume,
                      progress=progress, callbacks=callbacks, run_config=run_config,
                      overwrite=overwrite)
    finally:
        model.release_buffers()
        if plan.pool is not None:
            plan.pool.shutdown()


def _train(model, plan, data, c, out_dir, *, resume, progress, callbacks, run_config,
           overwrite):
    train, val, test = data
    full = dict(run_config or {}, **dataclasses.asdict(c))
    task = ClassificationTask(model, plan, train, val, test, batch_size=c.batch_size,
                              config=full)
    total = c.epochs * task.steps_per_epoch
    cbs = list(callbacks) + ([EarlyStopping(c.patience)] if c.patience else [])
    optimizer = build_optimizer(c, plan, total)
    if hasattr(plan.rule, "wrap_optimizer"):  # updates replayed on Ray actors
        optimizer = plan.rule.wrap_optimizer(optimizer)
    engine = Engine(task, optimizer, epochs=c.epochs, seed=c.seed,
                    out_dir=out_dir, config=full, resumable=RESUMABLE, callbacks=cbs,
                    progress=progress, max_time_s=c.time_limit_s,
                    max_forward_passes=c.max_forward_passes,
                    max_forward_equivalents=c.max_forward_equivalents, total_steps=total,
                    overwrite=overwrite)
    return engine.run(resume=resume)
