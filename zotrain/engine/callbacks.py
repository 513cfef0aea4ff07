"""Engine callbacks: progress bar, JSON-lines log, early stopping.

A callback has ``on_step(engine, loss)`` and ``on_epoch(engine, record)``; it
reads ``engine.history`` and may set ``engine.stop`` to a reason string.
"""

import json
import math
import sys
import time
from pathlib import Path


class ProgressBar:
    """Progress of a run on ``stream`` (standard error): on a terminal a tqdm bar over steps
    showing the loss, the last evaluation and forward passes per second; elsewhere (a file,
    a pipe) a plain line every ``every_s`` seconds instead, never a carriage return.  One
    line per evaluation on standard output."""

    def __init__(self, total_steps=None, disable=False, stream=None, every_s=30.0):
        self.total, self.disable, self.bar = total_steps, disable, None
        self.stream, self.every_s = stream or sys.stderr, every_s
        self.terminal = bool(getattr(self.stream, "isatty", lambda: False)())
        self.acc = None
        self._t0, self._f0, self._last = time.perf_counter(), None, None

    def _open(self, start):
        from tqdm import tqdm

        self.bar = tqdm(total=self.total, initial=start, unit="step", disable=self.disable,
                        dynamic_ncols=True, file=self.stream)

    def _post(self, loss, rate):
        post = {"loss": f"{loss:.4g}", "fwd/s": f"{rate:,.0f}"}
        if self.acc is not None:
            post["eval"] = f"{self.acc:.4g}"
        return post

    def on_step(self, engine, loss):
        if self.disable:
            return
        h = engine.history
        if self._f0 is None:
            self._t0, self._f0, self._last = time.perf_counter(), h.forward_passes, 0.0
            if self.terminal:
                self._open(h.step - 1)
        now = time.perf_counter()
        rate = (h.forward_passes - self._f0) / max(now - self._t0, 1e-9)
        self._loss, self._rate = loss, rate
        if self.terminal:
            self.bar.set_postfix(self._post(loss, rate), refresh=False)
            self.bar.update(1)
        elif now - self._t0 - self._last >= self.every_s:
            self._last = now - self._t0
            total = f"/{self.total}" if self.total else ""
            self._print(f"step {h.step}{total} " + " ".join(
                f"{k}={v}" for k, v in self._post(loss, rate).items()))

    def _print(self, line, stream=None):
        stream = stream or self.stream
        if self.bar is not None:
            self.bar.write(line, file=stream)
        else:
            print(line, file=stream, flush=True)

    def on_epoch(self, engine, record):
        self.acc = next((record[k] for k in ("test_accuracy", "val_accuracy", "rel_l2",
                                             "residual_loss") if record.get(k) is not None), None)
        if self.disable:
            return
        if self.bar is not None and self._f0 is not None:  # the bar shows this evaluation now
            self.bar.set_postfix(self._post(self._loss, self._rate))
        self._print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                             for k, v in record.items() if v is not None), sys.stdout)

    def close(self):
        if self.bar is not None:
            self.bar.close()


class JsonlLog:
    """Appends one JSON line per evaluation (``kind: eval``) and every ``every`` steps
    (``kind: step``) to ``path``."""

    def __init__(self, path, every=50):
        self.path, self.every = Path(path), every

    def _write(self, obj):
        with open(self.path, "a") as f:
            f.write(json.dumps(obj) + "\n")

    def on_step(self, engine, loss):
        h = engine.history
        if self.every and h.step % self.every == 0:
            self._write({"kind": "step", "step": h.step, "loss": loss,
                         "forward_passes": h.forward_passes,
                         "wall_time_s": round(h.wall_time_s, 3)})

    def on_epoch(self, engine, record):
        self._write(dict(record, kind="eval"))


class EarlyStopping:
    """Stops when ``key`` (default the validation loss) has not improved for
    ``patience`` evaluations."""

    def __init__(self, patience, key="val_loss"):
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 1:
            raise ValueError(f"patience must be an integer >= 1, got {patience!r}")
        self.patience, self.key, self.best, self.stale = patience, key, math.inf, 0

    def on_step(self, engine, loss):
        pass

    def on_epoch(self, engine, record):
        value = record.get(self.key)
        if value is None:
            return
        if value < self.best:
            self.best, self.stale = value, 0
        else:
            self.stale += 1
            if self.stale >= self.patience:
                engine.stop = (f"early stopping: {self.key} did not improve for "
                               f"{self.patience} evaluations")
