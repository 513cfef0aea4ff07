"""The classification recipe on the engine: resume, interruption, divergence, the CLI's
outputs and bad input."""

import json
import os
import signal

import numpy as np
import pytest

from zotrain import cli
from zotrain.data import DataError, Dataset, load_dataset
from zotrain.engine.checkpoint import CheckpointError, load_checkpoint
from zotrain.engine.loop import DivergenceError
from zotrain.nn import architectures
from zotrain.recipes.classification import ClassifierConfig, train_classifier


def config(mnist_dir, **kw):
    base = dict(batch_size=200, epochs=2, val_size=400, queries=4)
    base.update(kw)
    return ClassifierConfig(**base)


def run(c, out, *, mnist_dir, resume=False, callbacks=()):
    model = architectures.mnist_mlp(rank=16)
    return train_classifier(model, load_dataset("mnist", mnist_dir), c, out, resume=resume,
                            progress=False, callbacks=callbacks)


def final_params(out):
    with np.load(out / "model.npz") as z:
        return z["params"]


class StopAfterEpoch:
    def on_step(self, trainer, loss):
        pass

    def on_epoch(self, trainer, record):
        trainer.stop = "stopped by the test"


@pytest.mark.parametrize("evaluator", ["local", "none"])
def test_resume_is_bit_identical(mnist_dir, tmp_path, evaluator):
    """2 epochs in one run equal 1 epoch, stop, resume for 1."""
    c = config(mnist_dir, evaluator=evaluator)
    run(c, tmp_path / "full", mnist_dir=mnist_dir)
    m = run(c, tmp_path / "half", mnist_dir=mnist_dir, callbacks=[StopAfterEpoch()])
    assert m["epochs"] == 1 and m["stopped"] == "stopped by the test"
    metrics = run(c, tmp_path / "half", mnist_dir=mnist_dir, resume=True)
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


def test_sigint_leaves_a_valid_checkpoint_and_resumes(mnist_dir, tmp_path):
    # Python's own Ctrl-C handler, as in a terminal (a shell's background job ignores SIGINT)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        m = run(config(mnist_dir), tmp_path / "a", mnist_dir=mnist_dir, callbacks=[Interrupt(3)])
        handler = signal.getsignal(signal.SIGINT)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert m["stopped"] == "interrupted" and m["steps"] == 3
    assert handler is signal.default_int_handler  # the engine installs no handler
    run(config(mnist_dir), tmp_path / "a", mnist_dir=mnist_dir, resume=True)
    run(config(mnist_dir), tmp_path / "b", mnist_dir=mnist_dir)
    assert np.array_equal(final_params(tmp_path / "a"), final_params(tmp_path / "b"))


def test_divergence_stops_and_keeps_last_good_checkpoint(mnist_dir, tmp_path):
    c = config(mnist_dir, evaluator="none", lr=1e9, head_lr=1e9, epochs=3)
    with pytest.raises(DivergenceError, match="diverged at step \\d+.*last good state \\(none yet"):
        run(c, tmp_path / "d", mnist_dir=mnist_dir)
    from zotrain.recipes.classification import build_optimizer, build_step

    plan = build_step(c, architectures.mnist_mlp(rank=16))
    template = build_optimizer(c, plan, 1).init(np.zeros(plan.layout.n_params, np.float32))
    params, _, meta = load_checkpoint(tmp_path / "d" / "checkpoint.npz", template)
    assert np.all(np.isfinite(params)) and meta["history"]["step"] == 0


def test_cli_writes_the_run_files(mnist_dir, tmp_path, capsys):
    out = tmp_path / "run"
    rc = cli.main(["train", "mnist", "--data", str(mnist_dir), "--epochs", "2", "--batch-size",
                   "100", "--out", str(out), "--quiet", "--seed", "3"])
    assert rc == 0
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("test_accuracy", "best_test_accuracy", "epochs", "forward_passes", "wall_time_s",
                "trainable_params", "dense_params", "peak_rss_mb", "config"):
        assert key in metrics
    n = architectures.mnist_mlp(rank=16).n_params
    assert metrics["config"]["seed"] == 3 and metrics["trainable_params"] == n
    assert 0.6 < metrics["test_accuracy"] <= 1  # two epochs on 1,600 images learn something
    lines = [json.loads(l) for l in (out / "log.jsonl").read_text().splitlines()]
    assert lines[-1]["kind"] == "eval" and lines[-1]["test_accuracy"] == metrics["test_accuracy"]
    with np.load(out / "model.npz") as z:
        assert z["params"].shape == (n,) and json.loads(str(z["spec"]))[0]["type"] == "TTLinear"
    assert (out / "curves.png").stat().st_size > 1000
    assert "test accuracy" in capsys.readouterr().out


@pytest.mark.parametrize("args,msg", [
    (["--estimator", "magic", "--evaluator", "none"], "unknown estimator 'magic'; known estimators: rge, cge, zo_sign_cd, hybrid"),
    (["--queries", "0"], "queries must be an integer >= 1"),
    (["--mu", "0"], "mu must be > 0"),
    (["--lr", "-1"], "lr must be > 0"),
    (["--link", "-1"], "link \\(m\\) must be an integer >= 0"),
    (["--lam", "-1"], "lam \\(lambda\\) must be >= 0"),
    (["--evaluator", "magic"], "--evaluator: invalid choice: 'magic'"),  # argparse's choices
    (["--budget-equivalents", "0"], "forward-pass-equivalent budget must be > 0"),
    (["--budget", "-5"], "forward-pass budget must be > 0"),
])
def test_cli_bad_arguments(mnist_dir, tmp_path, capsys, args, msg):
    try:
        rc = cli.main(["train", "mnist", "--data", str(mnist_dir), "--out", str(tmp_path / "o"),
                       "--quiet"] + args)
    except SystemExit as e:  # a value outside an option's choices
        rc = e.code
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
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        run(config(mnist_dir), empty, mnist_dir=mnist_dir, resume=True)
    assert cli.main(["train", "mnist", "--data", str(mnist_dir), "--epochs", "1", "--out",
                     str(tmp_path / "r"), "--quiet"]) == 0
    (tmp_path / "r" / "checkpoint.npz").write_bytes(b"PK\x03\x04 garbage")
    assert cli.main(["train", "mnist", "--resume", str(tmp_path / "r"), "--epochs", "2",
                     "--quiet"]) == 2
    assert "corrupted" in capsys.readouterr().err


def test_bad_data_is_refused(tmp_path):
    x = np.zeros((4, 784), np.float32)
    with pytest.raises(DataError, match="x_train must hold finite numbers"):
        Dataset.from_arrays(np.full((4, 784), np.nan), np.zeros(4, int), x, np.zeros(4, int))
    with pytest.raises(DataError, match="y_test must be 4 integer class labels"):
        Dataset.from_arrays(x, np.zeros(4, int), x, np.zeros(3, int))
    with pytest.raises(DataError, match="the model takes 784 features, the data have 5"):
        train_classifier(architectures.mnist_mlp(), Dataset.from_arrays(
            np.zeros((4, 5)), np.zeros(4, int), np.zeros((4, 5)), np.zeros(4, int)))
    np.savez(tmp_path / "bad.npz", x_train=x, y_train=np.zeros(4, int))
    with pytest.raises(DataError, match="lacks the arrays x_test, y_test"):
        load_dataset("npz", tmp_path / "bad.npz")


def test_old_cli_settings_resume_and_change_is_refused(mnist_dir, tmp_path, capsys):
    out = tmp_path / "r"
    assert cli.main(["train", "mnist", "--data", str(mnist_dir), "--epochs", "1", "--out",
                     str(out), "--quiet", "--model", "mnist", "--rank", "4", "--train-limit",
                     "600", "--batch-size", "100"]) == 0
    c = json.loads((out / "config.json").read_text())
    c["lr"] = 0.5
    (out / "config.json").write_text(json.dumps(c))
    assert cli.main(["train", "mnist", "--resume", str(out), "--epochs", "2", "--quiet"]) == 2
    assert "made with other settings: lr" in capsys.readouterr().err
