"""What a person sees of a run: no progress frames in a file or pipe, no ``None`` fields,
the command that continues an interrupted run, a time limit that bounds the final
evaluation too."""

import json
import subprocess
import sys
import time

import numpy as np
import pytest

from zotrain import cli
from zotrain.pinn import problems
from zotrain.pinn.train import PinnConfig, train_pinn
from zotrain.recipes.classification import ClassificationTask


def _npz(path):
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((600, 16)).astype(np.float32), np.arange(600) % 4
    np.savez(path, x_train=X[:500], y_train=y[:500], x_test=X[500:], y_test=y[500:])
    return path


def test_piped_output_holds_no_progress_frames(tmp_path):
    npz = _npz(tmp_path / "d.npz")
    r = subprocess.run([sys.executable, "-m", "zotrain.cli", "train", "npz", str(npz),
                        "--epochs", "2", "--hidden", "16", "--rank", "2", "--batch-size", "50",
                        "--out", str(tmp_path / "r")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "\r" not in r.stderr + r.stdout and "%|" not in r.stderr  # no bar frames
    assert r.stdout.count("test_accuracy=") == 2  # one line per evaluation, on stdout


def test_evaluation_lines_leave_out_empty_fields(tmp_path, capsys):
    assert cli.main(["pinn", "poisson2d", "--iters", "1", "--eval-every", "1", "--width", "16",
                     "--head-points", "64", "--eval-points", "50", "--test-points", "50",
                     "--out", str(tmp_path / "p")]) == 0
    out = capsys.readouterr().out
    assert "epoch=0 step=0 " in out and "None" not in out


def test_an_interrupted_run_prints_the_command_that_continues_it(tmp_path, monkeypatch,
                                                                 capsys):
    npz, out = _npz(tmp_path / "d.npz"), tmp_path / "r"
    real = ClassificationTask.step

    def interrupt_at_13(self, params, batch, *, seed, step):
        if step == 13:
            raise KeyboardInterrupt
        return real(self, params, batch, seed=seed, step=step)

    monkeypatch.setattr(ClassificationTask, "step", interrupt_at_13)
    args = ["--hidden", "16", "--rank", "2", "--batch-size", "50", "--quiet"]
    assert cli.main(["train", "npz", str(npz), "--epochs", "3", "--out", str(out)] + args) == 130
    captured = capsys.readouterr()
    assert f"continue with: zotrain train npz {npz} --resume {out}" in captured.err
    assert "after 1.62 epochs" in captured.out  # 13 steps of 8 an epoch
    monkeypatch.setattr(ClassificationTask, "step", real)
    assert cli.main(["train", "npz", str(npz), "--resume", str(out), "--quiet"]) == 0
    assert json.loads((out / "metrics.json").read_text())["steps"] == 24


def test_the_time_limit_bounds_the_final_evaluation_too(tmp_path):
    """A final error over 200,000 points would take far longer than the limit: it is taken
    on as many points as fit, and metrics.json says so."""
    c = PinnConfig(width=32, iters=10 ** 6, points=16, head_points=128, head_every=5,
                   eval_every=5, eval_points=200, test_points=200_000, max_time_s=4.0)
    t0 = time.perf_counter()
    m = train_pinn(problems.get("poisson2d"), c, tmp_path, progress=False)
    wall = time.perf_counter() - t0
    assert m["stopped"] == "time limit" and 200 <= m["test_points"] < 200_000
    assert "to end within max_time_s 4" in m["note"]
    assert m["wall_time_s"] <= 4.0 * 1.25 and wall <= 4.0 * 1.25 + 3.0  # plots, files


def test_a_pinn_time_limit_bounds_the_whole_run_head_solves_included(tmp_path, capsys):
    """hjb20d with the defaults: its head solve on 4,104 points of 883 evaluations each would
    alone exceed a short limit; head solves are sized to the limit, and the run (start
    evaluation, steps, head solves, final evaluation) ends within it; the summary says what
    the time went to."""
    limit = 30.0
    t0 = time.perf_counter()
    assert cli.main(["pinn", "hjb20d", "--max-time", str(limit), "--out", str(tmp_path),
                     "--quiet"]) == 0
    wall = time.perf_counter() - t0
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert m["stopped"] == "time limit" and m["wall_time_s"] <= limit * 1.1
    assert wall <= limit * 1.1 + 3.0  # plots, files
    assert set(m["time_s"]) == {"steps", "hooks", "evaluations"}
    assert sum(m["time_s"].values()) == pytest.approx(m["wall_time_s"], abs=0.05)
    assert "s steps" in capsys.readouterr().out
