"""The engine and its contracts: import side effects, resume, budgets, callbacks, the
estimator and layer registries, the own-data example and ``zotrain train npz``."""

import json
import os
import runpy
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import zotrain as zt
from zotrain import cli
from zotrain.base import NO_COST, Cost, StepResult
from zotrain.engine.callbacks import EarlyStopping, JsonlLog
from zotrain.engine.loop import DivergenceError, Engine

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("timeout", [None, "28"])
def test_import_sets_only_openblas_thread_timeout_and_no_signals(timeout):
    """Importing zotrain sets OPENBLAS_THREAD_TIMEOUT (before numpy loads) unless it is set,
    and nothing else: no other variable, no signal handler, no plotting backend."""
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_THREAD_TIMEOUT"}
    if timeout is not None:
        env["OPENBLAS_THREAD_TIMEOUT"] = timeout
    code = """if True:
        import os, signal, json, sys
        env = dict(os.environ)
        h = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
        class Spy:  # the variable as numpy starts to load
            at_numpy = "numpy not loaded"
            def find_spec(self, name, path=None, target=None):
                if name == "numpy" and Spy.at_numpy == "numpy not loaded":
                    Spy.at_numpy = os.environ.get("OPENBLAS_THREAD_TIMEOUT")
        sys.meta_path.insert(0, Spy())
        import zotrain, zotrain.pinn, zotrain.export.runtime
        from zotrain.kernels import config
        changed = {k: v for k, v in os.environ.items() if env.get(k) != v}
        print(json.dumps([changed, sorted(set(env) - set(os.environ)), Spy.at_numpy,
                          h == {s: signal.getsignal(s) for s in h},
                          "matplotlib.pyplot" in sys.modules]))
    """
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                       env=env)
    from zotrain.kernels.config import BLAS_THREAD_TIMEOUT

    value = timeout or str(BLAS_THREAD_TIMEOUT)
    changed = {} if timeout else {"OPENBLAS_THREAD_TIMEOUT": value}
    assert json.loads(r.stdout) == [changed, [], value, True, False]


class Quadratic:
    """A task whose exact gradient is known: loss |params - target|^2 / 2 on seeded noise."""

    def __init__(self, n=6, batches=4, nan_at=None):
        self.n_params, self.n_batches, self.nan_at = n, batches, nan_at
        self.target = np.arange(n, dtype=np.float32)
        self.hooks = []

    def init(self, seed):
        return np.zeros(self.n_params, np.float32)

    def batches(self, epoch, seed):
        for b in range(self.n_batches):
            yield np.random.default_rng([seed, epoch, b]).standard_normal(self.n_params) * 0.01

    def step(self, params, batch, *, seed, step):
        loss = float(0.5 * np.sum((params - self.target) ** 2))
        if self.nan_at is not None and step >= self.nan_at:
            loss = float("nan")
        return StepResult((params - self.target + batch).astype(np.float32), loss, Cost(3, 1.5))

    def on_start(self, params):
        return params, NO_COST

    def after_step(self, params, *, step, last):
        self.hooks.append((step, last))
        return params, Cost(1, 1.0)

    def evaluate(self, params):
        return {"distance": float(np.linalg.norm(params - self.target))}

    def observe(self, epoch, record):
        pass

    def state(self):
        return {"hooks": len(self.hooks)}

    def load_state(self, state):
        pass

    def summary(self, params, records):
        return {"distance": records[-1]["distance"]}

    def save_model(self, path, params):
        np.save(str(path) + ".npy", params)

    def plot(self, path, params, records):
        pass


def engine(task, out=None, **kw):
    return Engine(task, zt.optim.sgd(0.3), epochs=kw.pop("epochs", 3), seed=1, out_dir=out,
                  progress=False, **kw)


def test_engine_converges_counts_and_calls_the_hooks():
    task = Quadratic()
    m = engine(task).run()
    assert m["distance"] < 0.05 * np.linalg.norm(task.target)
    assert m["steps"] == 12 and m["forward_passes"] == 12 * 4  # step + hook
    assert m["forward_equivalents"] == pytest.approx(12 * 2.5)
    assert [last for _, last in task.hooks] == [False] * 11 + [True]


def test_engine_resume_mid_epoch_is_bit_identical(tmp_path):
    whole = engine(Quadratic(), tmp_path / "a").run()

    class StopAt:
        def on_step(self, eng, loss):
            if eng.history.step == 6:
                raise KeyboardInterrupt

        def on_epoch(self, eng, record):
            pass

    half = engine(Quadratic(), tmp_path / "b", callbacks=[StopAt()]).run()
    assert half["stopped"] == "interrupted" and half["steps"] == 6
    resumed = engine(Quadratic(), tmp_path / "b").run(resume=True)
    a, b = (np.load(tmp_path / d / "model.npz.npy") for d in ("a", "b"))
    assert np.array_equal(a, b) and resumed["distance"] == whole["distance"]


@pytest.mark.parametrize("kw,reason,steps", [
    ({"max_forward_passes": 10}, "forward-pass budget", 3),  # 2 steps: 8 passes, 3rd: 11
    ({"max_forward_equivalents": 6.0}, "forward-pass-equivalent budget", 3),
])
def test_budgets_stop_the_run_and_the_last_step_knows(kw, reason, steps):
    task = Quadratic()
    m = engine(task, **kw).run()
    assert m["stopped"] == reason and m["steps"] == steps and task.hooks[-1] == (steps - 1, True)


def test_a_time_limit_keeps_time_for_a_due_hook_and_the_last_one():
    """A hook that takes 0.2 s every second step and at the last: a step that passes the
    time check runs its own hook, then the next step the last one; both fit in the limit."""
    import time

    class SlowHooks(Quadratic):
        def hook_due(self, step):
            return step % 2 == 1

        def after_step(self, params, *, step, last):
            if self.hook_due(step) or last:
                time.sleep(0.2)
            return super().after_step(params, step=step, last=last)

    task = SlowHooks()
    m = engine(task, epochs=10 ** 4, max_time_s=1.9).run()
    assert m["stopped"] == "time limit" and task.hooks[-1][1] and m["steps"] > 4
    assert m["wall_time_s"] <= 1.9


def test_divergence_keeps_the_last_good_state(tmp_path):
    with pytest.raises(DivergenceError, match="diverged at step 6: loss nan; the last good "
                                              "state \\(step 4\\)"):
        engine(Quadratic(nan_at=5), tmp_path).run()
    from zotrain.engine.checkpoint import load_checkpoint
    params, _, meta = load_checkpoint(tmp_path / "checkpoint.npz", ())
    assert meta["history"]["step"] == 4 and np.all(np.isfinite(params))


@pytest.mark.parametrize("kw,msg", [({"epochs": 0}, "epochs must be an integer > 0"),
                                    ({"max_time_s": -1}, "time limit must be > 0")])
def test_engine_bad_settings(kw, msg):
    with pytest.raises(ValueError, match=msg):
        engine(Quadratic(), **kw)


def test_callbacks_log_and_stop(tmp_path):
    log = tmp_path / "log.jsonl"
    stop = EarlyStopping(2, key="distance")
    eng = engine(Quadratic(), epochs=6, callbacks=[JsonlLog(log, every=2), stop])
    eng.task.evaluate = lambda params: {"distance": 1.0}  # never improves
    m = eng.run()
    assert m["stopped"] == "early stopping: distance did not improve for 2 evaluations"
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    evals = [r for r in lines if r["kind"] == "eval"]
    assert len(evals) == 3 and [r["step"] for r in lines if r["kind"] == "step"] == [2, 4, 6,
                                                                                     8, 10, 12]
    with pytest.raises(ValueError, match="patience must be an integer >= 1"):
        EarlyStopping(0)


def test_a_registered_estimator_trains_through_the_cli(tmp_path, monkeypatch):
    calls = []

    class Counting(zt.estimators.RGE):
        def estimate(self, objective, params, names, *, seed, step):
            calls.append(step)
            return super().estimate(objective, params, names, seed=seed, step=step)

    monkeypatch.setattr(zt.estimators, "ESTIMATORS", dict(zt.estimators.ESTIMATORS))  # undone
    zt.estimators.register("counting", lambda o: Counting(o.queries, o.mu))
    path = synthetic_npz(tmp_path)
    assert cli.main(["train", "npz", str(path), "--estimator", "counting", "--evaluator", "none",
                     "--epochs", "1", "--rank", "2", "--queries", "2", "--batch-size", "50",
                     "--out", str(tmp_path / "run"), "--quiet"]) == 0
    assert calls == list(range(len(calls))) and len(calls) == (400 - 400 // 5) // 50  # val split
    assert json.loads((tmp_path / "run" / "config.json").read_text())["estimator"] == "counting"


def test_sign_estimators_are_updated_by_the_sign_rule(tmp_path):
    from zotrain.recipes.classification import build_optimizer, build_step

    model = zt.Sequential([zt.TTLinear(16, 16, rank=2), zt.ReLU(), zt.Dense(16, 3)])
    for evaluator, perturb in (("none", "activity"), ("local", "weight")):
        c = zt.ClassifierConfig(estimator="zo_sign_cd", evaluator=evaluator, perturb=perturb,
                                lr=0.5, fraction=1.0)
        plan = build_step(c, model)
        opt = build_optimizer(c, plan, 10)
        grad = np.full(plan.layout.n_params, 1e-6, np.float32)
        params = plan.init(0)
        new, _ = opt.update(grad, opt.init(params), params)
        zo = np.ones(plan.layout.n_params, bool)
        for name in plan.head_names:
            zo[plan.layout[name].slice] = False
        np.testing.assert_allclose((params - new)[zo], 0.5, rtol=1e-5)  # a sign step of lr


def synthetic_npz(tmp_path, n=500, d=12, classes=3):
    rng = np.random.default_rng(5)
    X = rng.standard_normal((n, d)).astype(np.float32)
    y = np.argmax(X[:, :classes], axis=1)
    path = tmp_path / "syn.npz"
    np.savez(path, x_train=X[:400], y_train=y[:400], x_test=X[400:], y_test=y[400:])
    return path


def test_train_npz_learns_with_width_and_classes_from_the_data(tmp_path, capsys):
    path = synthetic_npz(tmp_path)
    out = tmp_path / "run"
    assert cli.main(["train", "npz", str(path), "--epochs", "8", "--rank", "4", "--batch-size",
                     "40", "--lr", "0.01", "--head-lr", "0.01", "--out", str(out),
                     "--quiet"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["test_accuracy"] > 0.7  # chance is 1/3
    with np.load(out / "model.npz") as z:
        spec = json.loads(str(z["spec"]))
    assert spec[0]["in_features"] == 12 and spec[-1]["out_features"] == 3
    assert cli.main(["train", "npz", "--quiet"]) == 2
    assert "npz takes a FILE" in capsys.readouterr().err


def test_the_own_data_example_trains(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["own_data.py", str(tmp_path / "run"), "3"])
    runpy.run_path(str(ROOT / "examples" / "own_data.py"), run_name="__main__")
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert m["test_accuracy"] > 0.5 and (tmp_path / "run" / "checkpoint.npz").is_file()
    assert "test accuracy" in capsys.readouterr().out
    assert len((ROOT / "examples" / "own_data.py").read_text().splitlines()) <= 16


def test_a_task_needs_only_the_contract_and_its_missing_members_are_named(tmp_path):
    """The five members every task has (``zotrain.base.Task``); the hooks are optional."""
    from zotrain import optim
    from zotrain.base import NO_COST, StepResult, ZotrainError

    class Minimal:
        n_params = 2

        def init(self, seed):
            return np.ones(2, np.float32)

        def batches(self, epoch, seed):
            return range(3)

        def step(self, params, batch, *, seed, step):
            return StepResult(params.copy(), float(params @ params), NO_COST)

        def evaluate(self, params):
            return {"norm": float(np.linalg.norm(params))}

        def summary(self, params, records):
            return {"norm": records[-1]["norm"]}

    m = Engine(Minimal(), optim.sgd(0.1), epochs=2, seed=0, out_dir=tmp_path,
               progress=False).run()
    assert m["norm"] == pytest.approx(np.sqrt(2) * 0.9 ** 6, rel=1e-6) and m["steps"] == 6
    with pytest.raises(ZotrainError, match="must be an \\(init, update\\) pair"):
        Engine(Minimal(), "adam", epochs=1, seed=0)
    del Minimal.summary, Minimal.evaluate
    with pytest.raises(ZotrainError, match=r"the task \(Minimal\) lacks evaluate, summary "
                                           r"\(zotrain.base.Task\)"):
        Engine(Minimal(), optim.sgd(0.1), epochs=1, seed=0)
