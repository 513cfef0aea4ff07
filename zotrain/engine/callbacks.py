"""Trainer callbacks: progress bar, JSON-lines log, early stopping."""

import json
import math
import time
from pathlib import Path


class ProgressBar:
    """A tqdm bar over steps showing the loss, the last accuracy and forward passes per second."""

    def __init__(self, total_steps, disable=False):
        from tqdm import tqdm

        self.bar = tqdm(total=total_steps, unit="step", disable=disable, dynamic_ncols=True)
        self.acc = None
        self._t0, self._f0 = time.perf_counter(), None

    def on_step(self, trainer, loss):
        h = trainer.history
        if self._f0 is None:
            self._f0, self.bar.n = h.forward_passes, h.step - 1
        rate = (h.forward_passes - self._f0) / max(time.perf_counter() - self._t0, 1e-9)
        post = {"loss": f"{loss:.4f}", "fwd/s": f"{rate:,.0f}"}
        if self.acc is not None:
            post["acc"] = f"{self.acc:.4f}"
        self.bar.set_postfix(post, refresh=False)
        self.bar.update(1)

    def on_epoch(self, trainer, record):
        self.acc = record.get("test_accuracy", record.get("val_accuracy"))
        self.bar.write(" ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}"
                                for k, v in record.items()))

    def close(self):
        self.bar.close()


class JsonlLog:
    """Appends one JSON line per epoch (and every ``every`` steps) to ``path``."""

    def __init__(self, path, every=50):
        self.path, self.every = Path(path), every

    def _write(self, obj):
        with open(self.path, "a") as f:
            f.write(json.dumps(obj) + "\n")

    def on_step(self, trainer, loss):
        h = trainer.history
        if self.every and h.step % self.every == 0:
            self._write({"step": h.step, "loss": loss, "forward_passes": h.forward_passes,
                         "wall_time_s": round(h.wall_time_s, 3)})

    def on_epoch(self, trainer, record):
        self._write(dict(record, kind="epoch"))


class EarlyStopping:
    """Stops when the validation loss has not improved for ``patience`` epochs."""

    def __init__(self, patience, key="val_loss"):
        if patience < 1:
            raise ValueError(f"patience must be >= 1, got {patience}")
        self.patience, self.key, self.best, self.stale = patience, key, math.inf, 0

    def on_step(self, trainer, loss):
        pass

    def on_epoch(self, trainer, record):
        value = record.get(self.key)
        if value is None:
            return
        if value < self.best:
            self.best, self.stale = value, 0
        else:
            self.stale += 1
            if self.stale >= self.patience:
                trainer.stop = f"early stopping: {self.key} did not improve for {self.patience} epochs"
