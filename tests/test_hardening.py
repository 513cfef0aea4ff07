"""The reproductions of the hardening review, each now a clear error or a correct result:
nothing trusted from a run directory, NaN never hidden or saved, malformed files named,
runs never lost silently, settings validated by one rule."""

import json
from pathlib import Path

import numpy as np
import pytest

import zotrain
from zotrain import cli
from zotrain.base import ZotrainError
from zotrain.data import DataError, Dataset, load_npz
from zotrain.engine.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from zotrain.engine.loop import DivergenceError, Engine
from zotrain.engine.rundir import RunDirError, load_model as load_run_model
from zotrain.nn import activations, architectures
from zotrain.nn.layers import LAYERS
from zotrain.recipes.classification import ClassifierConfig, train_classifier


def small_data(n=300, features=16, classes=4, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, features)).astype(np.float32)
    y = np.arange(n) % classes
    return X, y


def write_npz(path, **kw):
    X, y = small_data(**kw)
    np.savez(path, x_train=X[:250], y_train=y[:250], x_test=X[250:], y_test=y[250:])
    return path


def train_cli(task, file, *options):
    """``zotrain train`` of a small model; the options given come last (and win)."""
    return cli.main(["train", task, str(file), "--quiet", "--batch-size", "50", "--hidden",
                     "16", "--rank", "2", *map(str, options)])


def files_of(d):
    return {p.name: p.read_bytes() for p in Path(d).iterdir() if p.is_file()}


# -- NaN and inf: never hidden ------------------------------------------------------------
ACTIVATIONS = [c for c in LAYERS.values() if isinstance(c, type) and
               issubclass(c, activations.Activation) and c is not activations.Activation]


@pytest.mark.parametrize("act", ACTIVATIONS, ids=lambda c: c.__name__)
def test_every_activation_kernel_propagates_nan_and_inf_as_its_reference(act):
    from zotrain.kernels import elementwise

    x = np.array([np.nan, np.inf, -np.inf, 0.5, -0.5], np.float32)
    with np.errstate(invalid="ignore"):
        ref = act.reference(x.astype(np.float64))
    Y = elementwise.bias_activation_many(x.reshape(1, 1, -1).copy(),
                                         np.zeros((1, 1), np.float32), -1, act.scalar)[0, 0]
    scalar = np.array([act.scalar(float(v)) for v in x])
    for got in (Y, scalar):
        np.testing.assert_array_equal(np.isnan(got), np.isnan(ref))
        np.testing.assert_allclose(got[~np.isnan(ref)], ref[~np.isnan(ref)], rtol=1e-6)


@pytest.mark.parametrize("act", ACTIVATIONS, ids=lambda c: c.__name__)
def test_onnx_forms_of_the_activations_agree_on_nan_and_inf(tmp_path, act):
    import onnxruntime as ort

    from zotrain.export.onnx import to_onnx
    from zotrain.nn.layers import Dense
    from zotrain.nn.sequential import Sequential

    model = Sequential([Dense(1, 1, bias=False), act()])
    path = to_onnx(model, np.ones(1, np.float32), tmp_path / "a.onnx")  # the identity, then act
    x = np.array([[np.nan], [np.inf], [-np.inf], [0.5], [-0.5]], np.float32)
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(
        None, {"X": x})[0][:, 0]
    with np.errstate(invalid="ignore"):
        ref = act.reference(x[:, 0].astype(np.float64))
    np.testing.assert_array_equal(np.isnan(got), np.isnan(ref))
    np.testing.assert_allclose(got[~np.isnan(ref)], ref[~np.isnan(ref)], rtol=1e-6)


def test_overflowing_relu_parameters_give_a_non_finite_loss():
    """The review's reproduction: 1e18-scaled parameters gave log(3), a plausible loss."""
    m = architectures.classifier(16, 3, rank=2, depth=1, hidden=16)
    p = m.init(0) * np.float32(1e18)
    X, y = small_data(n=20, classes=3)
    assert not np.isfinite(m.loss_many(p[None], X, y)).any()
    p[3] = np.nan
    assert not np.isfinite(m.loss_many(p[None], X, y)).any()


def test_sin_is_exact_up_to_its_limit_and_nan_beyond():
    from zotrain.kernels import elementwise as e

    lim = e.SIN_LIMIT
    inside = np.array([0.0, 1.0, -3.0, 1e3, lim, -lim, np.nextafter(np.float32(lim), 0)],
                      np.float32)
    for v in inside:
        assert abs(e.sin32(v) - np.sin(np.float64(v))) < 1.5e-7, v
        assert abs(e.SIN(float(v)) - np.sin(np.float64(v))) < 1e-10, v
    for v in (np.nextafter(np.float32(lim), np.float32(np.inf)), 1e9, -1e10, np.inf, np.nan):
        assert np.isnan(e.sin32(np.float32(v))) and np.isnan(e.SIN(float(v))), v


# -- the engine never keeps or writes a non-finite state -----------------------------------
class HookTask:
    """A task whose after_step hook returns NaN parameters at ``bad_step``."""

    n_params = 3

    def __init__(self, bad_step):
        self.bad_step = bad_step

    def init(self, seed):
        return np.ones(3, np.float32)

    def batches(self, epoch, seed):
        return range(2)

    def step(self, params, batch, *, seed, step):
        from zotrain.base import Cost, StepResult

        return StepResult(grad=np.full(3, 0.1, np.float32), loss=1.0, cost=Cost(1, 1.0))

    def on_start(self, params):
        from zotrain.base import NO_COST

        return params, NO_COST

    def after_step(self, params, *, step, last):
        from zotrain.base import NO_COST

        return (params * np.nan if step == self.bad_step else params), NO_COST

    def evaluate(self, params):
        return {}

    def summary(self, params, records):
        return {}

    def save_model(self, path, params):
        np.save(path.with_suffix(".npy"), params)


def test_a_hook_that_makes_nan_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path):
    from zotrain import optim

    engine = Engine(HookTask(bad_step=3), optim.sgd(0.1), epochs=5, seed=0, out_dir=tmp_path,
                    progress=False)
    with pytest.raises(DivergenceError, match="after_step hook"):
        engine.run()
    params, _, meta = load_checkpoint(tmp_path / "checkpoint.npz",
                                      optim.sgd(0.1).init(np.zeros(3, np.float32)))
    assert np.isfinite(params).all() and meta["history"]["step"] == 2
    engine.params = engine.params * np.nan  # and save() refuses outright
    with pytest.raises(DivergenceError, match="refusing to save a non-finite state"):
        engine.save()
    assert meta == load_checkpoint(tmp_path / "checkpoint.npz",
                                   optim.sgd(0.1).init(np.zeros(3, np.float32)))[2]


def _checkpoint(tmp_path, **change):
    from zotrain import optim

    opt = optim.adam(1e-3)
    p = np.ones(5, np.float32)
    state = opt.init(p)
    meta = {"history": {"epoch": 1, "step": 3}, "config": {}}
    meta.update(change.pop("meta", {}))
    if "params" in change:
        p = change.pop("params")
    if change.pop("short_state", False):
        from zotrain.engine.checkpoint import tree_leaves, tree_replace

        state = tree_replace(state, [np.asarray(x)[:2] if np.ndim(x) else x
                                     for x in tree_leaves(state)])
    save_checkpoint(tmp_path / "checkpoint.npz", p, state, meta)
    return opt


@pytest.mark.parametrize("case,match", [
    (dict(params=np.array([1, np.nan, 1, 1, 1], np.float32)), "holds NaN or inf in params"),
    (dict(short_state=True), r"optimizer state opt_\d has shape \(2,\)"),
])
def test_malformed_checkpoints_are_refused_with_the_file_named(tmp_path, case, match):
    opt = _checkpoint(tmp_path, **case)
    with pytest.raises(CheckpointError, match=match) as e:
        load_checkpoint(tmp_path / "checkpoint.npz", opt.init(np.zeros(5, np.float32)))
    assert str(tmp_path / "checkpoint.npz") in str(e.value)


def test_a_checkpoint_without_history_is_named_on_resume(tmp_path):
    from zotrain import optim

    save_checkpoint(tmp_path / "checkpoint.npz", np.ones(3, np.float32),
                    optim.sgd(0.1).init(np.ones(3, np.float32)), {"config": {}})
    engine = Engine(HookTask(bad_step=-1), optim.sgd(0.1), epochs=2, seed=0,
                    out_dir=tmp_path, progress=False)
    with pytest.raises(CheckpointError, match="checkpoint.npz holds no valid run history"):
        engine.run(resume=True)


def test_a_model_file_with_an_unknown_spec_key_or_nan_is_named(tmp_path, capsys):
    from zotrain.engine.rundir import save_model

    model = architectures.classifier(16, 4, rank=2, depth=1, hidden=16)
    params = model.init(0)
    save_model(tmp_path / "model.npz", model, params, {})
    with np.load(tmp_path / "model.npz") as z:
        entries = dict(z)
    spec = json.loads(str(entries["spec"]))
    spec[0]["colour"] = "red"
    np.savez(tmp_path / "model.npz", **dict(entries, spec=json.dumps(spec)))
    with pytest.raises(RunDirError, match=r"spec\[0\] \(TTLinear\).*colour"):
        load_run_model(tmp_path / "model.npz")
    assert cli.main(["export", str(tmp_path)]) == 2
    assert "colour" in capsys.readouterr().err
    bad = params.copy()
    bad[0] = np.inf
    save_model(tmp_path / "model.npz", model, bad, {})
    with pytest.raises(RunDirError, match="non-finite"):
        load_run_model(tmp_path / "model.npz")


# -- runs are never lost silently ----------------------------------------------------------
def test_a_new_run_into_an_existing_run_is_refused_unless_overwrite(tmp_path):
    X, y = small_data()
    data = Dataset.from_arrays(X[:250], y[:250], X[250:], y[250:])
    model = architectures.classifier(16, 4, rank=2, depth=1, hidden=16)
    c = ClassifierConfig(epochs=1, batch_size=50)
    train_classifier(model, data, c, tmp_path, progress=False)
    before = files_of(tmp_path)
    with pytest.raises(ZotrainError, match="already holds a run"):
        train_classifier(model, data, c, tmp_path, progress=False)
    assert files_of(tmp_path) == before
    m = train_classifier(model, data, ClassifierConfig(epochs=1, batch_size=50, seed=1),
                         tmp_path, progress=False, overwrite=True)
    assert json.loads((tmp_path / "config.json").read_text())["seed"] == 1
    assert m["config"]["seed"] == 1


def test_default_run_names_tell_runs_apart_and_a_second_run_is_refused(tmp_path, monkeypatch,
                                                                       capsys):
    monkeypatch.chdir(tmp_path)
    npz = write_npz(tmp_path / "d.npz")
    assert train_cli("npz", npz, "--epochs", "1") == 0
    assert train_cli("npz", npz, "--epochs", "1", "--preset", "tiny", "--max-params",
                     "100000") == 0
    assert cli.main(["train", "npz", str(npz), "--quiet", "--epochs", "1", "--batch-size",
                     "50", "--hidden", "16", "--rank", "3"]) == 0
    names = sorted(p.name for p in (tmp_path / "runs").iterdir())
    assert names == ["d-mlp-r2-h16-local-seed0", "d-mlp-r3-h16-local-seed0",
                     "d-tiny-r2-h16-local-seed0"]
    capsys.readouterr()
    assert train_cli("npz", npz, "--epochs", "1") == 2
    assert "already holds a run" in capsys.readouterr().err
    assert train_cli("npz", npz, "--epochs", "1", "--overwrite") == 0


def test_resume_refuses_changed_settings_by_name_and_changes_no_file(tmp_path, capsys):
    npz, other = write_npz(tmp_path / "d.npz"), write_npz(tmp_path / "e.npz", seed=1)
    out = tmp_path / "run"
    assert train_cli("npz", npz, "--epochs", "1", "--out", out) == 0
    before = files_of(out)
    for change, name in ((["--lr", "0.1"], "lr"), (["--rank", "4"], "rank"),
                         (["--model", "deep"], "model"), (["--evaluator", "none"], "evaluator")):
        capsys.readouterr()
        assert cli.main(["train", "npz", str(npz), "--resume", str(out), "--quiet",
                         "--epochs", "2", *change]) == 2
        err = capsys.readouterr().err
        assert f"cannot resume {out} with other settings: {name}" in err, err
    assert cli.main(["train", "mnist", "--resume", str(out), "--quiet"]) == 2
    assert "dataset 'npz' -> 'mnist'" in capsys.readouterr().err
    assert cli.main(["train", "npz", str(other), "--resume", str(out), "--quiet",
                     "--epochs", "2"]) == 2  # another file's data: its fingerprint differs
    assert "data_digest" in capsys.readouterr().err
    assert files_of(out) == before  # a refused resume changes no file
    assert cli.main(["train", "npz", str(npz), "--resume", str(out), "--quiet",
                     "--epochs", "2", "--time-limit", "600"]) == 0  # budgets may change
    assert json.loads((out / "config.json").read_text())["epochs"] == 2


def test_resume_never_connects_where_the_run_directory_says(tmp_path, monkeypatch, capsys):
    """The review's reproduction: "ray": "127.0.0.1:1" in a copied run's config.json."""
    import zotrain.distributed

    def refuse(*a, **k):
        raise AssertionError("resume tried to start or join a Ray cluster")

    monkeypatch.setattr(zotrain.distributed, "QueryPool", refuse)
    npz, out = write_npz(tmp_path / "d.npz"), tmp_path / "run"
    assert train_cli("npz", npz, "--epochs", "1", "--out", out, "--evaluator", "none",
                     "--queries", "2") == 0
    run = json.loads((out / "config.json").read_text())
    (out / "config.json").write_text(json.dumps(dict(run, ray="127.0.0.1:1", workers=4)))
    capsys.readouterr()
    assert cli.main(["train", "npz", str(npz), "--resume", str(out), "--epochs", "2"]) == 0
    assert "the run used --ray 127.0.0.1:1" in capsys.readouterr().err
    assert json.loads((out / "config.json").read_text())["ray"] is None


def test_pinn_resume_never_connects_where_the_model_file_says(tmp_path, monkeypatch, capsys):
    import zotrain.distributed
    from zotrain.engine.checkpoint import atomic_write

    monkeypatch.setattr(zotrain.distributed, "QueryPool", lambda *a, **k: (_ for _ in ()).throw(
        AssertionError("resume tried to start or join a Ray cluster")))
    out = tmp_path / "run"
    args = ["--width", "16", "--points", "8", "--head-points", "64", "--eval-points", "50",
            "--test-points", "50", "--eval-every", "1", "--quiet"]
    assert cli.main(["pinn", "poisson2d", "--iters", "1", "--out", str(out), *args]) == 0
    with np.load(out / "model.npz") as z:
        entries = dict(z)
    config = json.loads(str(entries["config"]))
    entries["config"] = json.dumps(dict(config, ray="127.0.0.1:1", workers=3))
    atomic_write(out / "model.npz", lambda f: np.savez(f, **entries))
    assert cli.main(["pinn", "poisson2d", "--resume", str(out), "--iters", "2", "--quiet"]) == 0


# -- settings validated by one rule -----------------------------------------------------
@pytest.mark.parametrize("option,value,match", [
    ("--rank", "0", "--rank must be an integer >= 1, got 0"),
    ("--hidden", "0", "--hidden must be an integer >= 1, got 0"),
    ("--train-limit", "0", "train_limit must be an integer >= 1"),
    ("--max-params", "0", "--max-params must be an integer >= 1"),
    ("--patience", "0", "patience must be an integer >= 1"),
    ("--lr", "nan", "lr must be > 0 and finite, got nan"),
    ("--mu", "inf", "mu must be > 0 and finite, got inf"),
    ("--time-limit", "-5", "the time limit must be > 0"),
    ("--lam", "-1", "lam (lambda) must be >= 0 and finite"),
])
def test_zero_and_nonsense_are_refused_not_replaced_by_defaults(tmp_path, capsys, option,
                                                                value, match):
    npz = write_npz(tmp_path / "d.npz")
    assert train_cli("npz", npz, "--out", tmp_path / "r", option, value) == 2
    assert match in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_a_model_the_machine_cannot_hold_is_refused_before_allocation(tmp_path, capsys):
    npz = write_npz(tmp_path / "d.npz", features=784)
    assert cli.main(["train", "npz", str(npz), "--rank", "100000", "--quiet", "--out",
                     str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "parameters: training them needs at least" in err and "GiB" in err


def test_labels_with_gaps_are_refused_unless_the_classes_are_given(tmp_path):
    X, y = small_data(classes=4)
    y = y.copy()
    y[7] = 17
    with pytest.raises(DataError, match=r"no training example has class 4, 5, 6, 7, 8, 9, 10, "
                                         r"11, 12, 13, \.\.\. \(13 of 18 classes missing\)"):
        Dataset.from_arrays(X[:250], y[:250], X[250:], y[250:])
    d = Dataset.from_arrays(X[:250], y[:250], X[250:], y[250:], n_classes=18)
    assert d.n_classes == 18
    with pytest.raises(DataError, match=r"label 17 is outside \[0, 10\)"):
        Dataset.from_arrays(X[:250], y[:250], X[250:], y[250:], n_classes=10)
    np.savez(tmp_path / "g.npz", x_train=X[:250], y_train=y[:250], x_test=X[250:],
             y_test=y[250:], n_classes=18)
    assert load_npz(tmp_path / "g.npz").n_classes == 18


def test_a_file_that_is_not_an_npz_says_so_without_pickle_advice(tmp_path):
    (tmp_path / "x.npz").write_text("x_train,y_train\n1,2\n")
    with pytest.raises(DataError, match="is not an .npz archive") as e:
        load_npz(tmp_path / "x.npz")
    assert "pickle" not in str(e.value)


# -- README and package agree ---------------------------------------------------------
def test_one_version_number():
    from importlib.metadata import version

    assert version("zotrain") == zotrain.__version__
    pyproject = (Path(__file__).parents[1] / "pyproject.toml").read_text()
    assert 'version = "' not in pyproject  # written once, in zotrain/__init__.py
