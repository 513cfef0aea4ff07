"""Engine callbacks: progress bar, JSON-lines log, early stopping.

A callback has ``on_step(engine, loss)`` and ``on_epoch(engine, record)``; it
reads ``engine.history`` and may set ``engine.stop`` to a reason string.
"""

import json
import math
import time
from pathlib import Path


class ProgressBar:
    """A tqdm bar over steps showing the loss, the last accuracy (or error) and forward
    passes per second, and one line per evaluation."""

    def __init__(self, total_steps=None, disable=False):
        self.total, self.disable, self.bar = total_steps, disable, None
        self.acc = None
        self._t0, self._f0 = time.perf_counter(), None

    def _open(self, start):
        from tqdm import tqdm

        self.bar = tqdm(total=self.total, initial=start, unit="step", disable=self.disable,
                        dynamic_ncols=True)

    def on_step(self, engine, loss):
        h = engine.history
        if self.bar is None:
            self._open(h.step - 1)
            self._t0, self._f0 = time.perf_counter(), h.forward_passes
        rate = (h.forward_passes - self._f0) / max(time.perf_counter() - self._t0, 1e-9)
        post = {"loss": f"{loss:.4g}", "fwd/s": f"{rate:,.0f}"}
        if self.acc is not None:
            post["eval"] = f"{self.acc:.4g}"
        self.bar.set_postfix(post, refresh=False)
        self.bar.update(1)

    def on_epoch(self, engine, record):
        self.acc = next((record[k] for k in ("test_accuracy", "val_accuracy", "rel_l2",
                                             "residual_loss") if record.get(k) is not None), None)
        if self.disable:
            return
        line = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                        for k, v in record.items())
        if self.bar is None:
            print(line, flush=True)
        else:
            self.bar.write(line)

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
