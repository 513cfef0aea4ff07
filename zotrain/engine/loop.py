"""The training loop: seeded minibatches, a step rule, evaluation, callbacks, checkpoints.

The loop owns no mathematics: a *step rule* turns a minibatch objective into
a gradient estimate (``ZOStep``: a registered estimator for some segments and
the exact local gradient of the output layer for the head), and an optimizer
applies it.  Each epoch it evaluates, logs, and writes a checkpoint
atomically; a run resumes from a checkpoint bit for bit (minibatch order and
perturbation directions are pure functions of the seed, the epoch and the
step), and a run whose loss or parameters stop being finite stops with a
clear message and keeps its last good checkpoint.
"""

import math
import signal
import time
from typing import NamedTuple
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from zotrain.engine.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from zotrain.data import minibatches
from zotrain.zo.objective import ModelObjective


class DivergenceError(RuntimeError):
    """The loss or the parameters became NaN or inf."""


class Cost(NamedTuple):
    """What a step spent: forward passes (queries, however partial) and forward-pass
    equivalents (the FLOPs of the layers they ran over those of one full forward)."""

    passes: int
    equivalents: float


@dataclass
class ZOStep:
    """Zeroth-order estimate for ``zo_names``, exact local gradient for the head."""

    model: object
    estimator: object
    zo_names: list
    exact_head: bool = True
    loss: str = "xent"
    make_objective: object = None  # (X, y) -> objective; default a ModelObjective (Numba)

    def __call__(self, params, X, y, *, seed, step):
        objective = (self.make_objective(X, y) if self.make_objective is not None
                     else ModelObjective(self.model, X, y, self.loss))
        est = self.estimator.estimate(objective, params, self.zo_names, seed=seed, step=step)
        grad = est.grad
        if self.exact_head:
            head, names, _ = objective.head_gradient(params)
            for name in names:
                s = objective.layout[name]
                grad[s.offset:s.offset + s.size] = head[s.offset:s.offset + s.size]
        flops = getattr(objective, "flops", None)
        if flops is None:
            equivalents = objective.forward_passes
        else:  # the exact head gradient costs about one forward of the head
            head = self.model.flops(len(self.model.layers) - 1) if self.exact_head else 0.0
            equivalents = (flops + head) / self.model.flops()
        return grad, est.loss, Cost(objective.forward_passes, equivalents)

    def state(self):
        return self.estimator.state()

    def load_state(self, state):
        self.estimator.load_state(state)

    def observe(self, epoch, val_loss):
        self.estimator.observe(epoch, val_loss)


@dataclass
class EvaluatorStep:
    """The hybrid ZO/local evaluator's update (``zotrain.zo.evaluator``); the loss
    reported is the last block's (the model's own)."""

    evaluator: object

    def __call__(self, params, X, y, *, seed, step):
        ev = self.evaluator.evaluate(params, X, y, seed=seed, step=step)
        return ev.grad, ev.block_losses[-1], Cost(ev.forward_passes, ev.forward_equivalents)

    def state(self):
        return self.evaluator.state()

    def load_state(self, state):
        if state:
            self.evaluator.load_state(state)

    def observe(self, epoch, val_loss):
        pass


@dataclass
class Split:
    x: np.ndarray
    y: np.ndarray


@dataclass
class History:
    """What the run has done so far; saved in every checkpoint."""

    epoch: int = 0  # completed epochs
    batch: int = 0  # batches done in the current epoch
    step: int = 0
    forward_passes: int = 0
    forward_equivalents: float = 0.0
    wall_time_s: float = 0.0
    records: list = field(default_factory=list)


def accuracy_and_loss(model, params, split, chunk=2000):
    """Accuracy and mean cross-entropy of ``params`` on ``split``."""
    correct, loss = 0, 0.0
    for i in range(0, len(split.y), chunk):
        out = model.apply(params, split.x[i:i + chunk]).astype(np.float64)
        y = split.y[i:i + chunk]
        m = out.max(axis=1, keepdims=True)
        lse = np.log(np.exp(out - m).sum(axis=1)) + m[:, 0]
        loss += float(np.sum(lse - out[np.arange(len(y)), y]))
        correct += int(np.sum(out.argmax(axis=1) == y))
    return correct / len(split.y), loss / len(split.y)


class Trainer:
    """Train ``model`` from ``params`` with ``step_rule`` and ``optimizer``.

    ``step_rule(params, X, y, seed=, step=)`` returns ``(grad, loss, cost)``, ``cost`` a
    ``Cost`` or a number of forward passes;
    ``n_trainable`` is the length of the trained vector when it holds more than
    the model's parameters (auxiliary heads).

    ``callbacks`` receive ``on_step(trainer, loss)`` and ``on_epoch(trainer, record)``
    and may set ``trainer.stop`` to a reason string.
    """

    def __init__(self, model, step_rule, optimizer, train, val, test, *, epochs, batch_size,
                 seed, n_trainable=None, checkpoint=None, callbacks=(), max_time_s=None,
                 max_forward_passes=None, max_forward_equivalents=None):
        if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
            raise ValueError(f"epochs must be an integer >= 1, got {epochs!r}")
        for name, split in (("train", train), ("val", val), ("test", test)):
            if split is not None and not np.all(np.isfinite(split.x)):
                raise ValueError(f"the {name} data contain NaN or inf values")
        for name, v in (("forward-pass budget", max_forward_passes),
                        ("forward-pass-equivalent budget", max_forward_equivalents)):
            if v is not None and not v > 0:
                raise ValueError(f"the {name} must be > 0, got {v!r}")
        self.model, self.step_rule, self.optimizer = model, step_rule, optimizer
        self.train_split, self.val, self.test = train, val, test
        self.epochs, self.batch_size, self.seed = epochs, batch_size, seed
        self.n_trainable = n_trainable or model.n_params
        self.checkpoint = Path(checkpoint) if checkpoint else None
        self.callbacks, self.max_time_s = list(callbacks), max_time_s
        self.max_forward_passes = max_forward_passes
        self.max_forward_equivalents = max_forward_equivalents
        self.history, self.stop = History(), None
        self.params = self.opt_state = None

    # -- state ----------------------------------------------------------------
    @property
    def model_params(self):
        """The model's own parameters (the trainable vector may append auxiliary heads)."""
        return self.params[:self.model.n_params]

    def start(self, params):
        self.params = np.asarray(params, np.float32).copy()
        self.opt_state = self.optimizer.init(self.params)
        self.history = History()
        self.save()

    def resume(self, path):
        params, opt_state, meta = load_checkpoint(path, self.optimizer.init(
            np.zeros(self.n_trainable, np.float32)))
        if params.shape != (self.n_trainable,) or meta.get("layout") != \
                self.model.layout.to_dict():
            raise CheckpointError(f"checkpoint {path} holds a different model "
                                  f"({params.shape[0]} parameters)")
        self.params, self.opt_state = params, opt_state
        self.history = History(**meta["history"])
        self.step_rule.load_state(meta.get("step_state"))

    def save(self):
        if self.checkpoint is None:
            return
        meta = {"history": vars(self.history), "layout": self.model.layout.to_dict(),
                "step_state": self.step_rule.state()}
        save_checkpoint(self.checkpoint, self.params, self.opt_state, meta)

    # -- the loop ---------------------------------------------------------------
    def run(self):
        """Train until ``epochs`` are done, a callback stops, or time runs out.
        SIGINT saves a checkpoint at the current step and stops."""
        previous = signal.getsignal(signal.SIGINT)
        signal.signal(signal.SIGINT, self._interrupt)
        try:
            while self.history.epoch < self.epochs and self.stop is None:
                self._epoch()
        finally:
            signal.signal(signal.SIGINT, previous)
        return self.history

    def _interrupt(self, signum, frame):
        self.stop = "interrupted"

    def _epoch(self):
        h = self.history
        batches = minibatches(self.train_split.x, self.train_split.y, self.batch_size,
                              seed=self.seed, epoch=h.epoch)
        for b, (xb, yb) in enumerate(batches):
            if b < h.batch:  # resuming inside an epoch
                continue
            t0 = time.perf_counter()
            grad, loss, cost = self.step_rule(self.params, xb, yb, seed=self.seed, step=h.step)
            if not isinstance(cost, Cost):
                cost = Cost(cost, float(cost))
            params, opt_state = self.optimizer.update(grad, self.opt_state, self.params)
            if not (math.isfinite(loss) and np.all(np.isfinite(params))):
                raise DivergenceError(
                    f"training diverged at epoch {h.epoch + 1}, step {h.step}: loss {loss}"
                    f"{'' if np.all(np.isfinite(params)) else ', non-finite parameters'}; the last "
                    f"good checkpoint is kept" + (f" at {self.checkpoint}" if self.checkpoint else "")
                    + ". Lower the learning rate or mu.")
            self.params, self.opt_state = params, opt_state
            h.step, h.batch = h.step + 1, b + 1
            h.forward_passes += cost.passes
            h.forward_equivalents += cost.equivalents
            h.wall_time_s += time.perf_counter() - t0
            for cb in self.callbacks:
                cb.on_step(self, loss)
            if self.max_time_s is not None and h.wall_time_s >= self.max_time_s:
                self.stop = self.stop or "time limit"
            if self.max_forward_passes is not None and h.forward_passes >= self.max_forward_passes:
                self.stop = self.stop or "forward-pass budget"
            if self.max_forward_equivalents is not None and \
                    h.forward_equivalents >= self.max_forward_equivalents:
                self.stop = self.stop or "forward-pass-equivalent budget"
            if self.stop is not None:
                break
        if self.stop is None:
            h.epoch, h.batch = h.epoch + 1, 0
        self._evaluate()
        self.save()

    def _evaluate(self):
        t0 = time.perf_counter()
        h = self.history
        record = {"epoch": h.epoch + h.batch / max(1, len(self.train_split.y) // self.batch_size),
                  "step": h.step, "forward_passes": h.forward_passes,
                  "forward_equivalents": round(h.forward_equivalents, 1),
                  "wall_time_s": round(h.wall_time_s, 3)}
        for name, split in (("val", self.val), ("test", self.test)):
            if split is not None and len(split.y):
                acc, loss = accuracy_and_loss(self.model, self.model_params, split)
                record[f"{name}_accuracy"], record[f"{name}_loss"] = acc, loss
        h.wall_time_s += time.perf_counter() - t0
        record["wall_time_s"] = round(h.wall_time_s, 3)
        h.records.append(record)
        if "val_loss" in record:
            self.step_rule.observe(h.epoch, record["val_loss"])
        for cb in self.callbacks:
            cb.on_epoch(self, record)
