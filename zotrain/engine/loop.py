"""The one training loop: any task, any step rule, any optimizer.

``Engine(task, optimizer, ...)`` runs epochs of the task's batches (seeded
minibatches for classification, seeded collocation points for a PINN).  Each
step asks the task for its update (``zotrain.base.StepResult``), applies the
optimizer and any parameters the step solved for itself, checks that loss and
parameters stay finite, calls the task's ``after_step`` hook (the PINN head
solve), commits the step (its ``commit``) and calls the callbacks, and stops on a time or forward-pass
budget or a callback's request.  Each epoch it evaluates the task, logs, and
writes ``checkpoint.npz`` and ``model.npz`` atomically.

* Resume is bit for bit: batch order and perturbation directions are pure
  functions of (seed, epoch, step), and the checkpoint holds the parameters,
  the optimizer state, the history and the task's own state.  A checkpoint
  made with other settings (other than those in ``resumable``) is refused.
* A run whose loss, parameters or optimizer state stop being finite (after the
  update and after every task hook) raises ``DivergenceError``; its last good
  checkpoint stays on disk, and no non-finite state is ever written.
* A new run refuses an ``out_dir`` that holds a run unless ``overwrite=True``;
  ``config.json`` (the run's settings) is written when a run starts and when a
  resume has been accepted, never by a refused one.
* Ctrl-C (``KeyboardInterrupt``) checkpoints the last completed step and
  ends the run with ``stopped = "interrupted"``; no signal handler is
  installed, so the engine runs on any thread.
"""

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from zotrain.base import NO_COST, Task, ZotrainError, require
from zotrain.engine.callbacks import JsonlLog, ProgressBar
from zotrain.engine import rundir
from zotrain.engine.checkpoint import CheckpointError, all_finite, load_checkpoint, \
    read_meta, save_checkpoint
from zotrain.engine.memory import peak_rss_mb


class DivergenceError(RuntimeError):
    """The loss or the parameters became NaN or inf."""


@dataclass
class History:
    """What the run has done so far; saved in every checkpoint."""

    epoch: int = 0  # completed epochs
    batch: int = 0  # batches done in the current epoch
    step: int = 0
    forward_passes: float = 0
    forward_equivalents: float = 0.0
    wall_time_s: float = 0.0
    records: list = field(default_factory=list)
    hooks_s: float = 0.0  # of wall_time_s: the task's hooks (a PINN's head solves)
    evaluations_s: float = 0.0  # of wall_time_s: evaluations, the final one included

    def spend(self, cost, seconds):
        self.forward_passes += cost.passes
        self.forward_equivalents += cost.equivalents
        self.wall_time_s += seconds


def _positive(name, value, integer=False):
    bad = isinstance(value, bool) or (integer and not isinstance(value, (int, np.integer)))
    if value is not None and (bad or not value > 0):
        raise ZotrainError(f"{name} must be {'an integer ' if integer else ''}> 0, got {value!r}")


def _with_last(items):
    """``(index, item, is_last)`` over an iterable, one item of lookahead."""
    it, end = iter(items), object()
    cur, i = next(it, end), 0
    while cur is not end:
        nxt = next(it, end)
        yield i, cur, nxt is end
        cur, i = nxt, i + 1


class Engine:
    """Train ``task`` with ``optimizer`` (an ``optim`` pair); see the module doc.

    ``out_dir`` (optional) receives ``checkpoint.npz``, ``model.npz``,
    ``log.jsonl``, ``metrics.json`` and ``curves.png``; ``config`` (a dict) is
    stored with every checkpoint and compared on resume, except its keys in
    ``resumable``.  ``callbacks`` receive ``on_step(engine, loss)`` and
    ``on_epoch(engine, record)`` and may set ``engine.stop`` to a reason.
    ``evaluate_at_start`` adds a record of the untrained parameters.  ``overwrite``
    lets a new run replace the run already in ``out_dir`` (otherwise refused)."""

    def __init__(self, task, optimizer, *, epochs, seed, out_dir=None, config=None,
                 resumable=(), callbacks=(), progress=True, log_every=50, max_time_s=None,
                 max_forward_passes=None, max_forward_equivalents=None,
                 evaluate_at_start=False, total_steps=None, overwrite=False):
        require(task, Task, "the task")
        if not (callable(getattr(optimizer, "init", None)) and
                callable(getattr(optimizer, "update", None))):
            raise ZotrainError(f"the optimizer ({type(optimizer).__name__}) must be an "
                               "(init, update) pair, as zotrain.optim builds")
        _positive("epochs", epochs, integer=True)
        _positive("the time limit", max_time_s)
        _positive("the forward-pass budget", max_forward_passes)
        _positive("the forward-pass-equivalent budget", max_forward_equivalents)
        self.task, self.optimizer, self.epochs, self.seed = task, optimizer, epochs, seed
        self.out = Path(out_dir) if out_dir is not None else None
        self.config, self.resumable = dict(config or {}), set(resumable)
        self.max_time_s, self.max_forward_passes = max_time_s, max_forward_passes
        self.max_forward_equivalents = max_forward_equivalents
        self.evaluate_at_start, self.overwrite = evaluate_at_start, overwrite
        self.callbacks = list(callbacks)
        self.progress = ProgressBar(total_steps, disable=not progress)
        if self.out is not None:
            self.callbacks.insert(0, JsonlLog(self.out / "log.jsonl", every=log_every))
        self.callbacks.insert(0, self.progress)
        self.history, self.stop = History(), None
        self.eval_s = 0.0  # the last evaluation's time
        self.hook_s = 0.0  # the longest after-step (or start) hook's time: a stop runs one
        self.step_s = 0.0  # the last step's time
        self.params = self.opt_state = None

    # -- state ---------------------------------------------------------------------
    def start(self, params=None):
        """Begin from ``params`` (default ``task.init(seed)``)."""
        self._prepare_dir()
        params = self.task.init(self.seed) if params is None else params
        self.params = np.asarray(params, np.float32).copy()
        self.opt_state = self.optimizer.init(self.params)
        self.history = History()
        if self.evaluate_at_start:
            self._evaluate(loss=None)  # counts its own time
        t0 = time.perf_counter()
        self.params, cost = self._hook("on_start", self.params)
        self._check_finite(0.0, self.params, self.opt_state, "the task's on_start hook")
        self.history.spend(cost, time.perf_counter() - t0)
        self.history.hooks_s += time.perf_counter() - t0
        self.hook_s = time.perf_counter() - t0
        self._write_config()
        self.save()

    def resume(self):
        """Continue from ``out_dir/checkpoint.npz``."""
        if self.out is None:
            raise CheckpointError("cannot resume without an output directory")
        path = self.out / "checkpoint.npz"
        meta = read_meta(path)  # the settings first: a run of others is named as such
        old = meta.get("config", {})
        old = {k: v for k, v in (old if isinstance(old, dict) else {}).items()
               if k not in self.resumable}
        new = {k: v for k, v in self.config.items() if k not in self.resumable}
        if old != new:
            diff = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
            raise CheckpointError(f"the checkpoint in {self.out} was made with other settings: "
                                  f"{', '.join(diff)}")
        template = self.optimizer.init(np.zeros(self.task.n_params, np.float32))
        params, opt_state, meta = load_checkpoint(path, template, self.task.n_params)
        try:
            history = History(**meta["history"])
        except (KeyError, TypeError) as e:
            raise CheckpointError(f"checkpoint {path} holds no valid run history (metadata "
                                  f"'history': {type(e).__name__} {e})") from None
        if hasattr(self.task, "load_state"):
            self.task.load_state(meta.get("task_state"))
        self.params, self.opt_state, self.history = params, opt_state, history
        self._write_config()  # the resume is accepted: record its settings (budgets may differ)

    def _hook(self, name, params, **kw):
        """The task's optional hook ``name`` (``zotrain.base.TaskHooks``): ``(params,
        Cost)``; nothing for a task without it."""
        hook = getattr(self.task, name, None)
        return (params, NO_COST) if hook is None else hook(params, **kw)

    def _save_model(self):
        if hasattr(self.task, "save_model"):
            self.task.save_model(self.out / rundir.MODEL, self.params)

    def _write_config(self):
        if self.out is not None:
            rundir.write_settings(self.out, self.config)

    def save(self):
        """Write the checkpoint and the model; a non-finite state is never written."""
        if self.out is None:
            return
        if not all_finite(self.params, self.opt_state):
            raise DivergenceError(f"refusing to save a non-finite state to {self.out}; the "
                                  "last good checkpoint is kept")
        meta = {"history": vars(self.history), "config": self.config,
                "task_state": self.task.state() if hasattr(self.task, "state") else None}
        save_checkpoint(self.out / "checkpoint.npz", self.params, self.opt_state, meta)
        self._save_model()

    def _prepare_dir(self):
        if self.out is None:
            return
        held = [n for n in rundir.RUN_FILES if (self.out / n).exists()]
        if held and not self.overwrite:
            raise ZotrainError(f"{self.out} already holds a run ({', '.join(held)}); resume it, "
                               "choose another output directory, or overwrite it (--overwrite, "
                               "overwrite=True)")
        try:
            self.out.mkdir(parents=True, exist_ok=True)
            for n in held:
                (self.out / n).unlink()
            probe = self.out / ".zotrain-write-test"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as e:
            raise ZotrainError(f"output directory {self.out} is not writable "
                               f"({e.strerror})") from None

    # -- the loop -----------------------------------------------------------------------
    def run(self, *, resume=False):
        """Train until ``epochs`` are done, a budget or a callback stops the run, or
        Ctrl-C; then write the metrics.  Returns the metrics dict."""
        if resume:
            self.resume()
        elif self.params is None:
            self.start()
        try:
            while self.history.epoch < self.epochs and self.stop is None:
                self._epoch()
        except KeyboardInterrupt:
            self.stop = "interrupted"
            self.save()  # the last completed step
        finally:
            self.progress.close()
        return self.finish()

    def _epoch(self):
        h = self.history
        last_epoch = h.epoch + 1 == self.epochs
        loss = None
        for b, batch, is_last in _with_last(self.task.batches(h.epoch, self.seed)):
            if b < h.batch:  # resuming inside an epoch
                continue
            t0 = time.perf_counter()
            out = self.task.step(self.params, batch, seed=self.seed, step=h.step)
            params, opt_state = self.optimizer.update(out.grad, self.opt_state, self.params)
            if out.assign is not None:  # parameters the step solved for itself
                cols, values = out.assign
                params = np.array(params, np.float32, copy=True)
                params[cols] = values
            self._check_finite(out.loss, params, opt_state, "the update")
            self.step_s = time.perf_counter() - t0
            self._check_budgets(h.wall_time_s + self.step_s, out.cost)
            t_hook = time.perf_counter()
            params, hook_cost = self._hook(
                "after_step", params, step=h.step,
                last=self.stop is not None or (is_last and last_epoch))
            self.hook_s = max(self.hook_s, time.perf_counter() - t_hook)
            h.hooks_s += time.perf_counter() - t_hook
            self._check_finite(out.loss, params, opt_state, "the task's after_step hook")
            # commit in one assignment each: an interrupt never sees half a step
            self.params, self.opt_state = params, opt_state
            if out.commit is not None:
                out.commit(params)
            h.step, h.batch, loss = h.step + 1, b + 1, out.loss
            h.spend(out.cost + hook_cost, time.perf_counter() - t0)
            for cb in self.callbacks:
                cb.on_step(self, loss)
            if self.stop is not None:
                break
        if self.stop is None:
            h.epoch, h.batch = h.epoch + 1, 0
        self._evaluate(loss)
        self.save()

    def _check_finite(self, loss, params, opt_state, after):
        finite = all_finite(params, opt_state)
        if math.isfinite(loss) and finite:
            return
        good = self.history.records[-1]["step"] if self.history.records else None
        where = f" in {self.out}" if self.out is not None else ""
        raise DivergenceError(
            f"training diverged at step {self.history.step + 1}: loss {loss}"
            f"{'' if finite else ', non-finite parameters or optimizer state'}; the last good "
            f"state ({'step ' + str(good) if good is not None else 'none yet'}) is kept{where}. "
            f"{'' if after == 'the update' else f'It became non-finite in {after}. '}"
            "Lower the learning rate or mu.")

    def _check_budgets(self, wall, cost):
        h = self.history
        # the time limit bounds the whole run: stop when this step's hook if it is due (the
        # task's ``hook_due``), the next step (at the last one's time), the hook the last
        # step runs (a PINN's head solve; each at the longest's) and the evaluations still
        # to come (the task's ``evaluations_after_stop``, default the epoch's, at the last
        # one's) would not end within it
        due = getattr(self.task, "hook_due", None)
        hooks = 1 + bool(due is not None and due(h.step))
        reserve = self.step_s + self.hook_s * hooks + \
            self.eval_s * getattr(self.task, "evaluations_after_stop", 1)
        if self.max_time_s is not None and wall + reserve >= self.max_time_s:
            self.stop = self.stop or "time limit"
        if self.max_forward_passes is not None and \
                h.forward_passes + cost.passes >= self.max_forward_passes:
            self.stop = self.stop or "forward-pass budget"
        if self.max_forward_equivalents is not None and \
                h.forward_equivalents + cost.equivalents >= self.max_forward_equivalents:
            self.stop = self.stop or "forward-pass-equivalent budget"

    def _evaluate(self, loss):
        t0 = time.perf_counter()
        h = self.history
        record = {"epoch": h.epoch, "step": h.step, "loss": loss,
                  "forward_passes": _round(h.forward_passes),
                  "forward_equivalents": round(h.forward_equivalents, 1)}
        record.update(self.task.evaluate(self.params))
        self.eval_s = time.perf_counter() - t0
        h.wall_time_s += self.eval_s
        h.evaluations_s += self.eval_s
        record["wall_time_s"] = round(h.wall_time_s, 3)
        h.records.append(record)
        if hasattr(self.task, "observe"):
            self.task.observe(h.epoch, record)
        for cb in self.callbacks:
            cb.on_epoch(self, record)

    def finish(self):
        """The run's metrics (written to ``metrics.json``), model and plots."""
        h = self.history
        t0 = time.perf_counter()
        metrics = dict(self.task.summary(self.params, h.records))
        h.wall_time_s += time.perf_counter() - t0  # the final evaluation counts
        h.evaluations_s += time.perf_counter() - t0
        metrics.update({
            "steps": h.step, "forward_passes": _round(h.forward_passes),
            "forward_equivalents": round(h.forward_equivalents, 1),
            "wall_time_s": round(h.wall_time_s, 2), "peak_rss_mb": peak_rss_mb(),
            "time_s": {"steps": round(h.wall_time_s - h.hooks_s - h.evaluations_s, 2),
                       "hooks": round(h.hooks_s, 2), "evaluations": round(h.evaluations_s, 2)},
            "stopped": self.stop or "completed", "config": self.config, "history": h.records})
        if self.out is not None:
            rundir.write_json(self.out / "metrics.json", metrics)
            if not all_finite(self.params):  # never reached: every step is checked
                raise DivergenceError(f"refusing to save a non-finite model to {self.out}")
            self._save_model()
            if hasattr(self.task, "plot"):
                self.task.plot(self.out / "curves.png", self.params, h.records)
        return metrics


def _round(x):
    return x if isinstance(x, (int, np.integer)) else round(float(x), 2)

