"""A user's own PDE through the public API only: train, resume in a new process, export;
and the problem checks that name what is wrong."""

import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from zotrain import cli
from zotrain.export.pinn import export_pinn_run
from zotrain.pinn import PinnConfig, Problem, ProblemError, load_run, train_pinn
from zotrain.pinn.config import default_model
from tests.own_problem import poisson3d

ROOT = Path(__file__).resolve().parents[1]


def small(**kw):
    base = dict(width=64, iters=6, points=16, head_points=512, head_every=3, eval_every=3,
                eval_points=300, test_points=1000)
    return PinnConfig(**dict(base, **kw))


def trained(**kw):
    """A width where the body's training matters (at width 64 random features and the head
    solve alone reach 2.4e-3): 1.0e-2 trained against 2.8e-2 frozen."""
    return small(**dict(dict(width=16, depth=1, body="gauss-newton"), **kw))


def test_own_problem_trains_resumes_in_a_new_process_and_exports(tmp_path):
    problem = poisson3d()
    whole = train_pinn(problem, trained(), tmp_path / "whole", progress=False)
    frozen = train_pinn(problem, trained(body="frozen"), tmp_path / "frozen", progress=False)
    untrained = [json.loads(line) for line in (tmp_path / "whole" / "log.jsonl").open()][0]
    assert whole["rel_l2"] < frozen["rel_l2"] / 2 < 0.05 < untrained["rel_l2"]
    # a first process stops after its first evaluation (Ctrl-C), a second resumes
    script = ("import sys; from tests.own_problem import poisson3d; "
              "from tests.test_own_problem import trained; from zotrain.pinn import train_pinn\n"
              "class Stop:\n"
              "    def on_epoch(self, engine, record):\n"
              "        if record['step'] == 3: raise KeyboardInterrupt\n"
              "    def __getattr__(self, name): return lambda *a, **k: None\n"
              "train_pinn(poisson3d(), trained(), sys.argv[1], resume=sys.argv[2] == '1', "
              "progress=False, callbacks=[Stop()] if sys.argv[2] == '0' else [])\n")
    for resume in ("0", "1"):
        r = subprocess.run([sys.executable, "-c", script, str(tmp_path / "split"), resume],
                           cwd=ROOT, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
    with np.load(tmp_path / "whole" / "model.npz") as a, \
            np.load(tmp_path / "split" / "model.npz") as b:
        np.testing.assert_array_equal(a["params"], b["params"])
    # the smoothed predictor with the user's constraint, in onnxruntime
    path = export_pinn_run(problem, tmp_path / "split")
    loss, params = load_run(problem, tmp_path / "split")
    x = problem.sample(40, 9)
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(
        None, {"x": x.astype(np.float32)})[0]
    np.testing.assert_allclose(got, loss.predict(params, x), atol=1e-5, rtol=0)
    assert np.abs(got - problem.exact(x)).max() < 0.1
    # the command line knows no such problem and says how to export it
    assert cli.main(["export", str(tmp_path / "split")]) == 2


def test_without_an_exact_solution_the_losses_are_reported(tmp_path):
    m = train_pinn(poisson3d(with_exact=False), small(iters=3), tmp_path, progress=False)
    assert "rel_l2" not in m
    log = [json.loads(line) for line in (tmp_path / "log.jsonl").open()]
    assert log[-1]["residual_loss"] < 0.01 * log[0]["residual_loss"]
    assert m["residual_loss"] == pytest.approx(log[-1]["residual_loss"], rel=0.5)


def test_a_run_of_another_problem_is_refused(tmp_path):
    train_pinn(poisson3d(), small(iters=1, eval_every=1), tmp_path, progress=False)
    from zotrain.pinn import problems
    with pytest.raises(ValueError, match="holds a run of problem 'my-poisson3d', not 'poisson2d'"):
        load_run(problems.get("poisson2d"), tmp_path)


def declare(**kw):
    base = dict(name="mine", dim=2, time_index=None, lower=(0.0, 0.0), upper=(1.0, 1.0),
                residual=lambda x, u, grad, lap, u_t: lap + 1.0,
                transform=lambda x, nn: x[:, 0] * (1 - x[:, 0]) * x[:, 1] * (1 - x[:, 1]) * nn)
    return Problem(**dict(base, **kw))


@pytest.mark.parametrize("kw,match", [
    (dict(lower=(0.0, 1.0)), "problem 'mine': the domain is empty along input 1: lower 1.0 >= "
                             "upper 1.0"),
    (dict(upper=(1.0,)), "problem 'mine': lower and upper must hold dim = 2 numbers"),
    (dict(time_index=2), "problem 'mine': time_index must be None or in 0..1"),
    (dict(residual="lap"), "problem 'mine': residual must be callable"),
    (dict(dim=0), "problem 'mine': dim must be an integer >= 1"),
])
def test_bad_declarations_name_the_problem(kw, match):
    with pytest.raises(ProblemError, match=match):
        declare(**kw)


@pytest.mark.parametrize("kw,match", [
    (dict(residual=lambda x, u, grad, lap, u_t: (lap + 1.0)[:, None]),
     "problem 'mine': residual must return one value per point, shape \\(8,\\) for 8 points; "
     "got \\(8, 1\\)"),
    (dict(transform=lambda x, nn: x[:, 0] * nn ** 2),
     "problem 'mine': transform\\(x, nn\\) must be affine in nn"),
    (dict(exact=lambda x: x), "problem 'mine': exact must return one value per point"),
    (dict(residual=lambda x, u, grad, lap, u_t: np.log(lap - 10.0)),
     "problem 'mine': residual returned non-finite values"),
])
def test_bad_functions_name_the_problem(kw, match):
    with pytest.raises(ProblemError, match=match), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        declare(**kw).check()
    with pytest.raises(ProblemError, match=match), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        train_pinn(declare(**kw), small(iters=1), None, progress=False)


def test_a_diffusive_problem_without_boundary_conditions_gets_a_warning():
    with pytest.warns(UserWarning, match="problem 'mine': the residual has a Laplacian term"):
        declare(transform=None).check()
    with pytest.warns(UserWarning, match="not well posed"):  # c(x) != 0 on the boundary
        declare(transform=lambda x, nn: 1.0 + x[:, 0] * nn).check()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        declare().check()  # the constraint vanishes on the boundary
        declare(transform=None, boundary=lambda x: np.zeros(len(x))).check()
        declare(transform=None, whole_space=True).check()
        declare(transform=None, residual=lambda x, u, grad, lap, u_t: u - 1.0).check()


def test_the_own_pde_example_runs(tmp_path):
    r = subprocess.run([sys.executable, str(ROOT / "examples" / "own_pde.py"), str(tmp_path), "2"],
                       cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    error = float(r.stdout.split("relative L2 error ")[1].split(";")[0])
    assert error == pytest.approx(json.loads((tmp_path / "metrics.json").read_text())["rel_l2"],
                                  rel=1e-2)
    assert error < 0.05 and (tmp_path / "model.onnx").stat().st_size > 0


def test_a_sampler_draws_the_points_and_is_checked():
    p = declare(sampler=lambda n, rng: 0.5 + 0.1 * rng.standard_normal((n, 2)))
    x = p.sample(1000, 0)
    assert abs(x.mean() - 0.5) < 0.01 and 0.09 < x.std() < 0.11
    with pytest.raises(ProblemError, match="problem 'mine': sampler must return 8 finite points "
                       "of dim 2, got \\(8, 3\\)"):
        declare(sampler=lambda n, rng: np.zeros((n, 3))).check()


def test_a_boundary_sampler_draws_the_boundary_points_and_is_checked():
    def circle(n, rng):  # a curved boundary inside the box
        a = 2 * np.pi * rng.random(n)
        return 0.5 + 0.25 * np.column_stack([np.cos(a), np.sin(a)])

    p = declare(transform=None, boundary=lambda x: np.zeros(len(x)), boundary_sampler=circle)
    xb = p.sample_boundary(500, [3, 1])
    np.testing.assert_allclose(np.linalg.norm(xb - 0.5, axis=1), 0.25)
    np.testing.assert_array_equal(xb, p.sample_boundary(500, [3, 1]))  # seeded
    assert not np.array_equal(xb, p.sample_boundary(500, [3, 2]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        p.check()
    with pytest.raises(ProblemError, match="problem 'mine': boundary_sampler draws the points "
                       "of boundary data, but boundary .* is not given"):
        declare(boundary_sampler=circle)
    with pytest.raises(ProblemError, match="problem 'mine': boundary_sampler must return 8 "
                       "finite points of dim 2, got \\(8, 1\\)"):
        declare(transform=None, boundary=lambda x: np.zeros(len(x)),
                boundary_sampler=lambda n, rng: np.zeros((n, 1))).check()


@pytest.mark.parametrize("inputs,width", [("quadratic", 6), ("radius", 4)])
def test_the_inputs_are_kept_by_the_run_and_its_export(inputs, width, tmp_path):
    problem = poisson3d()
    train_pinn(problem, small(iters=3, inputs=inputs), tmp_path, progress=False)
    loss, params = load_run(problem, tmp_path)
    assert loss.inputs == inputs and loss.model.in_features == width
    x = problem.sample(40, 9)
    got = ort.InferenceSession(str(export_pinn_run(problem, tmp_path)),
                               providers=["CPUExecutionProvider"]).run(
        None, {"x": x.astype(np.float32)})[0]
    np.testing.assert_allclose(got, loss.predict(params, x), atol=1e-5, rtol=0)
    assert np.abs(got - problem.exact(x)).max() < 0.1


def test_a_problem_recipe_is_the_starting_configuration(tmp_path, capsys, monkeypatch):
    import dataclasses

    from zotrain.pinn import problems

    recipe = dict(width=24, depth=1, iters=2, points=8, head_points=128, eval_every=2,
                  eval_points=100, test_points=200)
    problem = dataclasses.replace(poisson3d(), recipe=recipe)
    c = PinnConfig.for_problem(problem, width=32)
    assert (c.width, c.depth, c.points) == (32, 1, 8)  # the options given win
    assert c.rank == default_model(problem)[4]  # and what neither names keeps its default
    train_pinn(problem, None, tmp_path / "api", progress=False)
    loss, _ = load_run(problem, tmp_path / "api")
    assert [layer.out_features for layer in loss.model.layers[:-1:2]] == [24]
    # the command line takes it too, says which options came from it, and the given win
    monkeypatch.setitem(problems.PROBLEMS, problem.name, lambda: problem)
    assert cli.main(["pinn", problem.name, "--out", str(tmp_path / "cli"), "--width", "16"]) == 0
    out = capsys.readouterr().out
    assert "my-poisson3d's recipe: --depth 1 --iters 2 --points 8" in out and "--width" not in out
    loss, _ = load_run(problem, tmp_path / "cli")
    assert [layer.out_features for layer in loss.model.layers[:-1:2]] == [16]
    assert cli.main(["pinn", problem.name, "--out", str(tmp_path / "none"), "--no-recipe",
                     "--width", "8", "--iters", "1", "--points", "4", "--head-points", "32",
                     "--eval-points", "20", "--test-points", "20"]) == 0
    assert "'s recipe:" not in capsys.readouterr().out
    loss, _ = load_run(problem, tmp_path / "none")
    depth = default_model(problem)[0]
    assert len(loss.model.layers[:-1:2]) == depth  # the default, not the recipe's


@pytest.mark.parametrize("name", ["heat100d", "bsb100d", "hjb100d"])
def test_the_built_in_recipes_are_valid_configurations(name):
    from zotrain.pinn import problems

    problem = problems.get(name)
    c = PinnConfig.for_problem(problem)
    c.validate(problem)
    assert {k: c.settings()[k] for k in problem.recipe} == problem.recipe


def test_a_bad_recipe_names_the_problem():
    with pytest.raises(ProblemError, match="problem 'mine': recipe must be a dict of training "
                       "options by name, got \\['depth'\\]"):
        declare(recipe=["depth"])
    with pytest.raises(ValueError, match="problem 'mine''s recipe names unknown training "
                       "options deep; known: .*depth"):
        PinnConfig.for_problem(declare(recipe=dict(deep=1)))
    with pytest.raises(ValueError, match="for_problem names unknown training options wdth"):
        PinnConfig.for_problem(declare(), wdth=3)


def test_resume_takes_the_runs_own_settings(tmp_path, capsys, monkeypatch):
    """A run started with --no-recipe (or any options) resumes from its directory alone;
    a run of another problem is refused by name."""
    import dataclasses

    from zotrain.pinn import problems

    problem = dataclasses.replace(poisson3d(), recipe=dict(depth=1, width=24))
    monkeypatch.setitem(problems.PROBLEMS, problem.name, lambda: problem)
    run = tmp_path / "run"
    small = ["--points", "4", "--head-points", "32", "--eval-every", "1", "--eval-points", "20",
             "--test-points", "20"]
    assert cli.main(["pinn", problem.name, "--out", str(run), "--no-recipe", "--width", "8",
                     "--iters", "1"] + small) == 0
    capsys.readouterr()
    assert cli.main(["pinn", problem.name, "--resume", str(run), "--iters", "2"]) == 0
    assert "'s recipe:" not in capsys.readouterr().out
    loss, _ = load_run(problem, run)
    depth = default_model(problem)[0]
    assert [layer.out_features for layer in loss.model.layers[:-1:2]] == [8] * depth
    assert [r["step"] for r in map(json.loads, (run / "log.jsonl").read_text().splitlines())
            if r.get("kind") == "eval"][-1] == 2
    other = dataclasses.replace(problem, name="other-poisson3d")
    monkeypatch.setitem(problems.PROBLEMS, other.name, lambda: other)
    assert cli.main(["pinn", other.name, "--resume", str(run), "--iters", "3"]) == 2
    assert "holds a run of problem 'my-poisson3d', not 'other-poisson3d'" in capsys.readouterr().err


def test_the_built_in_recipes_hold_only_sizes_and_budgets():
    """The method (model, body, boundary handling and weights, derivative rule) comes from
    the defaults and their rules over the problem; a built-in's recipe sizes it.  One
    method option is left, named here: heat100d's inputs (each coordinate and its square;
    docs/benchmarks.md)."""
    from zotrain.pinn import problems

    sizes = {"points", "iters", "head_every", "head_points", "boundary_fraction",
             "eval_every", "eval_points", "test_points", "max_time_s"}
    left = {"heat100d": {"inputs"}}
    for name in problems.PROBLEMS:
        recipe = problems.get(name).recipe or {}
        assert set(recipe) <= sizes | left.get(name, set()), (name, recipe)
