"""Trainer: resume, interruption, divergence, the CLI's outputs and bad input."""

import json
import os
import signal

import numpy as np
import pytest

from zotrain import cli
from zotrain.engine.checkpoint import CheckpointError, load_checkpoint
from zotrain.recipes.classification import MnistConfig, run
from zotrain.engine.loop import DivergenceError, Split, Trainer


def config(mnist_dir, **kw):
    base = dict(data=str(mnist_dir), batch_size=200, epochs=2, val_size=400, queries=4)
    base.update(kw)
    return MnistConfig(**base)


def final_params(out):
    with np.load(out / "model.npz") as z:
        return z["params"]


class StopAfterEpoch:
    def on_step(self, trainer, loss):
        pass

    def on_epoch(self, trainer, record):
        trainer.stop = "stopped by the test"


@pytest.mark.parametrize("evaluator", ["local", "none"])
def test_resume_is_bit_identical(mnist_dir, tmp_path, evaluator, monkeypatch):
    """2 epochs in one run equal 1 epoch, stop, resume for 1."""
    import zotrain.recipes.classification as recipe

    c = config(mnist_dir, evaluator=evaluator)
    run(c, tmp_path / "full", progress=False)
    real = recipe.JsonlLog
    monkeypatch.setattr(recipe, "JsonlLog", lambda path: _Both(real(path), StopAfterEpoch()))
    m = run(c, tmp_path / "half", progress=False)
    assert m["epochs"] == 1 and m["stopped"] == "stopped by the test"
    monkeypatch.setattr(recipe, "JsonlLog", real)
    metrics = run(c, tmp_path / "half", resume=True, progress=False)
    assert metrics["epochs"] == 2
    assert np.array_equal(final_params(tmp_path / "full"), final_params(tmp_path / "half"))


class Interrupt:
    """Sends SIGINT to this process at a given step, as Ctrl-C would."""

    def __init__(self, at):
        self.at = at

    def on_step(self, trainer, loss):
        if trainer.history.step == self.at:
            os.kill(os.getpid(), signal.SIGINT)

    def on_epoch(self, trainer, record):
        pass


def test_sigint_leaves_a_valid_checkpoint_and_resumes(mnist_dir, tmp_path, monkeypatch):
    import zotrain.recipes.classification as recipe

    real = recipe.JsonlLog
    monkeypatch.setattr(recipe, "JsonlLog", lambda path: _Both(real(path), Interrupt(3)))
    m = run(config(mnist_dir), tmp_path / "a", progress=False)
    assert m["stopped"] == "interrupted" and m["steps"] == 3
    monkeypatch.setattr(recipe, "JsonlLog", real)
    run(config(mnist_dir), tmp_path / "a", resume=True, progress=False)
    run(config(mnist_dir), tmp_path / "b", progress=False)
    assert np.array_equal(final_params(tmp_path / "a"), final_params(tmp_path / "b"))


class _Both:
    def __init__(self, *cbs):
        self.cbs = cbs

    def on_step(self, trainer, loss):
        for cb in self.cbs:
            cb.on_step(trainer, loss)

    def on_epoch(self, trainer, record):
        for cb in self.cbs:
            cb.on_epoch(trainer, record)


def test_divergence_stops_and_keeps_last_good_checkpoint(mnist_dir, tmp_path):
    c = config(mnist_dir, evaluator="none", lr=1e9, head_lr=1e9, epochs=3)
    with pytest.raises(DivergenceError, match="training diverged at epoch 1.*last good checkpoint"):
        run(c, tmp_path / "d", progress=False)
    from zotrain import optim
    params, _, meta = load_checkpoint(tmp_path / "d" / "checkpoint.npz", optim.partition(
        {"zo": optim.adam(1.0), "head": optim.adam(1.0)},
        {"zo": np.ones(params_size(), bool), "head": np.zeros(params_size(), bool)}).init(
        np.zeros(params_size(), np.float32)))
    assert np.all(np.isfinite(params)) and meta["history"]["step"] == 0


def params_size():
    from zotrain.nn import architectures as models
    return models.mnist_mlp(rank=MnistConfig().rank).n_params


def test_cli_writes_the_run_files(mnist_dir, tmp_path, capsys):
    out = tmp_path / "run"
    rc = cli.main(["train", "mnist", "--data", str(mnist_dir), "--epochs", "2", "--batch-size",
                   "100", "--out", str(out), "--quiet", "--seed", "3"])
    assert rc == 0
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("test_accuracy", "best_test_accuracy", "epochs", "forward_passes", "wall_time_s",
                "trainable_params", "dense_params", "peak_rss_mb", "config"):
        assert key in metrics
    from zotrain.nn import architectures as models
    n = models.mnist_mlp(rank=MnistConfig().rank).n_params
    assert metrics["config"]["seed"] == 3 and metrics["trainable_params"] == n
    assert 0.6 < metrics["test_accuracy"] <= 1  # two epochs on 1,600 images learn something
    lines = [json.loads(l) for l in (out / "log.jsonl").read_text().splitlines()]
    assert lines[-1]["kind"] == "epoch"
    with np.load(out / "model.npz") as z:
        assert z["params"].shape == (n,) and json.loads(str(z["spec"]))[0]["type"] == "TTLinear"
    assert (out / "curves.png").stat().st_size > 1000
    assert "test accuracy" in capsys.readouterr().out


@pytest.mark.parametrize("args,msg", [
    (["--estimator", "magic", "--evaluator", "none"], "unknown estimator 'magic'; known estimators: rge, cge"),
    (["--queries", "0"], "queries must be an integer >= 1"),
    (["--mu", "0"], "mu must be > 0"),
    (["--lr", "-1"], "lr must be > 0"),
    (["--link", "-1"], "link \\(m\\) must be an integer >= 0"),
    (["--lam", "-1"], "lam \\(lambda\\) must be >= 0"),
    (["--evaluator", "magic"], "unknown evaluator 'magic'"),
    (["--budget-equivalents", "0"], "forward-pass-equivalent budget must be > 0"),
    (["--budget", "-5"], "forward-pass budget must be > 0"),
])
def test_cli_bad_arguments(mnist_dir, tmp_path, capsys, args, msg):
    rc = cli.main(["train", "mnist", "--data", str(mnist_dir), "--out", str(tmp_path / "o"),
                   "--quiet"] + args)
    assert rc == 2
    import re
    assert re.search(msg, capsys.readouterr().err)


def test_missing_data_directory(tmp_path, capsys):
    rc = cli.main(["train", "mnist", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "o"),
                   "--quiet"])
    assert rc == 2 and "data directory" in capsys.readouterr().err


def test_unwritable_output_directory(mnist_dir, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    rc = cli.main(["train", "mnist", "--data", str(mnist_dir), "--out", str(blocker / "run"),
                   "--quiet"])
    assert rc == 2 and "is not writable" in capsys.readouterr().err


def test_resume_without_or_with_corrupted_checkpoint(mnist_dir, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli.main(["train", "mnist", "--resume", str(empty), "--quiet"]) == 2
    assert "cannot resume" in capsys.readouterr().err
    with pytest.raises(CheckpointError, match="holds no checkpoint.npz"):
        run(config(mnist_dir), empty, resume=True, progress=False)
    run(config(mnist_dir, epochs=1), tmp_path / "r", progress=False)
    (tmp_path / "r" / "checkpoint.npz").write_bytes(b"PK\x03\x04 garbage")
    assert cli.main(["train", "mnist", "--resume", str(tmp_path / "r"), "--epochs", "2",
                     "--quiet"]) == 2
    assert "corrupted" in capsys.readouterr().err


def test_nan_in_data_is_refused(mnist_dir):
    from zotrain import optim
    from zotrain.nn import architectures as models
    from zotrain.zo.estimators import rge
    from zotrain.engine.loop import ZOStep
    model = models.mnist_mlp()
    bad = Split(np.full((4, 784), np.nan, np.float32), np.zeros(4, np.int64))
    with pytest.raises(ValueError, match="the train data contain NaN or inf"):
        Trainer(model, ZOStep(model, rge(2), ["0.bias"]), optim.sgd(0.1), bad, None, None,
                epochs=1, batch_size=2, seed=0)
