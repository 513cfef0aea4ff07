"""The PINN recipe on the engine: it learns, resumes bit-identically, and keeps its last
good state."""

import json

import numpy as np
import pytest

from zotrain.engine.checkpoint import CheckpointError
from zotrain.engine.loop import DivergenceError
from zotrain.pinn import problems, solvers, suite
from zotrain.pinn.config import random_phases
from zotrain.pinn.loss import PinnLoss
from zotrain.pinn.train import PinnConfig, build, init_params, rel_l2, train_pinn
from zotrain.zo import estimators

POISSON = problems.get("poisson2d")


def gauss_newton_body(loss, params, x, xb, check, damping):
    """One Levenberg-Marquardt step on the body's rows: ``(new, damping, loss before)``."""
    r, J = solvers.body_jacobian(loss, params, x, xb)
    new, damping = solvers.lm_step(loss, params, r, J, check or (x, xb), damping)
    return new, damping, float(r @ r)


def small(**kw):
    base = dict(width=64, iters=6, points=16, head_points=256, head_every=3, eval_every=3,
                eval_points=200, test_points=500)
    base.update(kw)
    return PinnConfig(**base)


def run(c, out, resume=False, problem=POISSON):
    return train_pinn(problem, c, out, resume=resume, progress=False)


def test_training_solves_poisson_far_below_the_untrained_error(tmp_path):
    """Below the frozen random-feature body too, 4x (5-D Poisson, 16 features: trained
    8.9e-2, frozen 0.39; 3.7-4.4x over seeds 0-2): the body's training, not only the head
    solve, is what is tested.  (On poisson2d at width 64 the random features with random
    phases, 5.4e-4, beat the LM-trained body, 1.4e-3, in 6 iterations.)"""
    problem = suite.instance("poisson", 3)
    sizes = dict(depth=1, width=16, iters=12, points=64, head_points=1024)
    c = small(body="gauss-newton", **sizes)
    model, loss = build(c, problem)
    untrained = rel_l2(loss, init_params(model, problem, 0), 500, 12345)
    m = run(c, tmp_path, problem=problem)
    frozen = run(small(body="frozen", **sizes), tmp_path / "frozen", problem=problem)
    assert untrained > 0.5
    assert m["rel_l2"] < min(frozen["rel_l2"] / 3, 0.15)
    assert m["forward_passes"] > 0 and m["trainable_params"] == model.n_params
    for name in ("metrics.json", "model.npz", "checkpoint.npz", "log.jsonl"):
        assert (tmp_path / name).exists()
    log = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if r["kind"] == "eval"] == [0, 3, 6, 9, 12]
    assert log[0]["rel_l2"] == pytest.approx(untrained, rel=0.3)  # the curve starts untrained


def test_zo_head_trains_everything_by_rge(tmp_path):
    """``head="zo"``: one step is Adam on the RGE estimate of the whole vector (head
    included) at that step's collocation points, with no head solve before or after.  The
    expectation is computed here by hand from the loss alone: the antithetic RGE formula
    over the counter-based Gaussian directions, then Adam's first step."""
    from zotrain.kernels import random as krandom

    c = small(head="zo", iters=1, eval_every=1, queries=3)
    model, loss = build(c, POISSON)
    p0 = init_params(model, POISSON, c.seed, random_phases(c.resolved(POISSON), POISSON))
    run(c, tmp_path)
    x = POISSON.sample(c.points, [c.seed, 1])
    xb = POISSON.sample_boundary(c.points // 4, [c.seed, 1])
    U = krandom.directions(c.seed, 1, np.arange(c.queries, dtype=np.int64), p0.size,
                           krandom.GAUSSIAN).astype(np.float64)
    g = np.zeros(p0.size)
    for u in U:
        plus, minus = (p0 + np.float32(s * c.mu) * u.astype(np.float32) for s in (1, -1))
        lp, lm = loss(np.stack([plus, minus]), x, xb)
        g += (lp - lm) / (2 * c.mu * c.queries) * u
    g = g.astype(np.float32).astype(np.float64)
    expected = p0 - c.lr * g / (np.abs(g) + 1e-8)  # Adam's first step, bias-corrected
    with np.load(tmp_path / "model.npz") as z:
        np.testing.assert_allclose(z["params"], expected, rtol=1e-5, atol=1e-8)
    assert (expected != p0)[loss.head_slice()].all()


@pytest.mark.parametrize("body,window,problem", [
    ("zo", None, "poisson2d"), ("local", None, "poisson2d"), ("gauss-newton", 1, "poisson2d"),
    ("gauss-newton", 3, "poisson2d"), ("zo", None, "poisson:101")])
def test_interrupt_then_resume_equals_one_run(tmp_path, monkeypatch, body, window, problem):
    """(gauss-newton: its adapted damping is part of the checkpoint, and with a window the
    kept batches, whose Jacobians the resumed run recomputes; the suite's 5-D Poisson
    problem has boundary data: the adaptive boundary weight of the last head solve is part
    of the checkpoint)"""
    options = {} if window is None else {"window": window}
    problem = suite.instance("poisson", 101) if problem == "poisson:101" else \
        problems.get(problem)
    whole = run(small(body=body, **options), tmp_path / "a", problem=problem)
    real = estimators.RGE.estimate

    def stop_at_5(self, objective, params, names, *, seed, step):
        if step == 5:
            raise KeyboardInterrupt
        return real(self, objective, params, names, seed=seed, step=step)

    monkeypatch.setattr(estimators.RGE, "estimate", stop_at_5)
    stopped = run(small(body=body, **options), tmp_path / "b", problem=problem)
    assert stopped["stopped"] == "interrupted"
    with np.load(tmp_path / "b" / "checkpoint.npz") as z:
        meta = json.loads(bytes(z["meta"]).decode())
    assert meta["history"]["step"] == 4
    if body == "gauss-newton":  # iterations 3 and 4 kept, with the parameters they were at
        assert [b["it"] for b in meta["task_state"]["body"]["window"]] == [3, 4][:window - 1]
    monkeypatch.setattr(estimators.RGE, "estimate", real)
    resumed = run(small(body=body, **options), tmp_path / "b", resume=True, problem=problem)
    if problem.boundary is not None:  # set by the solve at step 3
        assert meta["task_state"]["boundary_weight"] not in (None, 1.0)
    with np.load(tmp_path / "a" / "model.npz") as a, np.load(tmp_path / "b" / "model.npz") as b:
        np.testing.assert_array_equal(a["params"], b["params"])
    assert resumed["rel_l2"] == whole["rel_l2"]
    assert resumed["forward_passes"] == whole["forward_passes"]


def test_resume_rejects_other_settings_and_missing_checkpoints(tmp_path):
    run(small(iters=3), tmp_path)
    with pytest.raises(CheckpointError, match="other settings: width"):
        run(small(width=32), tmp_path, resume=True)
    with pytest.raises(CheckpointError, match="no checkpoint"):
        run(small(), tmp_path / "empty", resume=True)
    (tmp_path / "checkpoint.npz").write_bytes(b"not a zip")
    with pytest.raises(CheckpointError, match="corrupted"):
        run(small(), tmp_path, resume=True)


def test_divergence_stops_and_keeps_the_last_good_state(tmp_path, monkeypatch):
    real = PinnLoss.__call__
    calls = {"n": 0}

    def nan_later(self, P, x, xb=None):
        calls["n"] += 1
        out = real(self, P, x, xb)
        return out * np.nan if calls["n"] > 4 * 2 else out  # base + perturbed sets per step

    monkeypatch.setattr(PinnLoss, "__call__", nan_later)
    with pytest.raises(DivergenceError, match="step 5: loss nan.*; the last good state \\(step 3\\)"):
        run(small(), tmp_path)
    with np.load(tmp_path / "checkpoint.npz") as z:
        assert json.loads(bytes(z["meta"]).decode())["history"]["step"] == 3
        assert np.all(np.isfinite(z["params"]))


@pytest.mark.parametrize("field,value,msg", [
    ("head", "lstsq", "unknown head training 'lstsq'"),
    ("points", 0, "points must be an integer >= 1"),
    ("iters", 0, "iters must be an integer >= 1, got 0"),
    ("iters", 2.5, "iters must be an integer >= 1, got 2.5"),
    ("ridge", -1.0, "ridge must be >= 0"),
    ("derivatives", "autodiff", "unknown derivative method 'autodiff'"),
    ("sigma", 0.0, "sigma must be > 0"),
    ("inputs", "cubic", "unknown network inputs 'cubic'"),
    ("boundary_weight", 0.0, "boundary_weight must be a finite number > 0, got 0.0"),
    ("boundary_weight", float("inf"), "boundary_weight must be a finite number > 0, got inf"),
    ("boundary_weight", float("nan"), "boundary_weight must be a finite number > 0, got nan"),
    ("boundary_fraction", -0.5, "boundary_fraction must be a finite number > 0, got -0.5"),
    ("boundary_rule", "degree5", "boundary_rule must be one of same, frame, point, got .degree5."),
])
def test_bad_config(field, value, msg, tmp_path):
    with pytest.raises(ValueError, match=msg):
        run(small(**{field: value}), tmp_path)


@pytest.mark.parametrize("options,msg", [
    (dict(window=0), "window must be an integer >= 1"),
    (dict(check_points=0), "check_points must be an integer >= 1"),
    (dict(boundary_steps=-1), "boundary_steps must be an integer >= 0, got -1"),
    (dict(boundary_steps=2.0), "boundary_steps must be an integer >= 0, got 2.0"),
    (dict(head="zo"), "body 'gauss-newton' solves the head .* needs head 'gauss-newton'"),
    (dict(backend="onnxruntime"), "body 'gauss-newton' needs the numba backend"),
])
def test_a_body_checks_its_own_options(options, msg, tmp_path):
    with pytest.raises(ValueError, match=msg):
        run(small(body="gauss-newton", **options), tmp_path)


def test_each_bodys_options_are_refused_on_every_other_body():
    """A body owns its options: given with another body, they are refused naming the body
    that has them, before anything runs."""
    from zotrain.pinn import bodies

    for name, cls in bodies.BODIES.items():
        for option in bodies.options_of(cls):
            for other in set(bodies.BODIES) - {name}:
                if option in bodies.options_of(bodies.BODIES[other]):
                    continue
                with pytest.raises(ValueError, match=f"{option} is an option of body "
                                                     f"'{name}', not of body '{other}'"):
                    PinnConfig(body=other, **{option: 2})
    assert bodies.options_of(bodies.GaussNewton) == ["window", "check_points", "boundary_steps"]
    with pytest.raises(ValueError, match="give window to the body object"):
        PinnConfig(body=bodies.GaussNewton(), window=2)


def test_the_built_in_recipes_hold_sizes_and_budgets_only():
    """A built-in problem's recipe names no method option (body, inputs, boundary handling,
    derivative rule ...): those come from the defaults' rules, whatever the problem."""
    from zotrain.pinn import problems

    sizes = {"points", "iters", "max_time_s", "head_every", "head_points", "eval_every",
             "eval_points", "test_points", "boundary_fraction"}
    for name in problems.PROBLEMS:
        recipe = problems.get(name).recipe or {}
        assert set(recipe) <= sizes, (name, sorted(set(recipe) - sizes))


def test_the_model_left_to_the_defaults_is_set_by_the_problems_properties():
    """depth, body, inputs, width, rank and boundary rule unset: two layers of width 2,048
    trained by RGE on the coordinates up to LOW_DIM inputs (width 512 beyond), rank 2; one
    layer of rank 8 by LM steps on the coordinates up to HIGH_DIM, but the RGE layers where
    the loss leaves the solution free (all of R^d, no face data: hjb20d); the LM layer on
    each coordinate and its square beyond; what is given wins, options of the gauss-newton
    body name it, the RGE layers serve where the backend cannot run the LM steps, and one
    configuration serves problems of any size unchanged."""
    import dataclasses

    from zotrain.pinn import problems, suite
    from zotrain.pinn.config import HIGH_DIM, LOW_DIM, solution_free

    low, mid, high = (suite.instance("poisson", 101), suite.instance("allen-cahn", 1),
                      suite.instance("hjb", 0))
    free = problems.get("hjb20d")
    assert low.dim <= LOW_DIM < mid.dim <= HIGH_DIM < high.dim
    assert LOW_DIM < free.dim <= HIGH_DIM
    assert (solution_free(free), solution_free(mid), solution_free(low)) == (True, False, False)
    # with face data, or on a bounded box, the same problem is not free
    assert not solution_free(dataclasses.replace(free, boundary=free.exact))
    assert not solution_free(dataclasses.replace(free, whole_space=False))
    c = PinnConfig()
    for problem, depth, body, inputs, width, rank, n_in in (
            (low, 2, "zo", "coordinates", 2048, 2, low.dim),
            (mid, 1, "gauss-newton", "coordinates", 512, 8, mid.dim),
            (free, 2, "zo", "coordinates", 512, 2, free.dim),
            (high, 1, "gauss-newton", "quadratic", 512, 2, 2 * high.dim),
            (low, 2, "zo", "coordinates", 2048, 2, low.dim)):
        r = c.resolved(problem)
        assert (r.depth, r.body.name, r.inputs, r.width, r.rank) == \
            (depth, body, inputs, width, rank)
        model = build(c, problem)[0]
        assert (PinnConfig.for_problem(problem).depth, model.n_params, model.in_features) == \
            (depth, build(r, problem)[0].n_params, n_in)
        assert model.n_params != build(dataclasses.replace(r, width=width // 2),
                                       problem)[0].n_params  # the width is the model's
    assert (c.depth, c.body, c.inputs, c.width, c.rank, c.points) == (None,) * 6
    assert PinnConfig(width=64).resolved(low).width == 64
    assert PinnConfig(depth=3, body="local").resolved(high).depth == 3
    assert PinnConfig(body="zo").resolved(high).body.name == "zo"
    assert PinnConfig(inputs="quadratic").resolved(high).inputs == "quadratic"
    # boundary values by the frame rule where the derivative rule's (radial beyond 25
    # inputs) are exact to degree 3 too, at more evaluations: 2 samples + 1 > 2 dim + 1
    assert (c.resolved(low).boundary_rule, c.resolved(high).boundary_rule) == ("same", "frame")
    assert PinnConfig(samples=high.dim).resolved(high).boundary_rule == "same"
    assert PinnConfig(derivatives="degree5").resolved(high).boundary_rule == "same"
    assert PinnConfig(boundary_rule="point").resolved(high).boundary_rule == "point"
    assert PinnConfig(window=2).resolved(low).body.window == 2
    old = PinnConfig.from_settings({"width": 8})  # a run's settings from before the options
    assert (old.depth, old.body.name, old.inputs, old.boundary_rule, old.width, old.rank,
            old.points) == (2, "zo", "coordinates", "same", 8, 2, 64)
    assert PinnConfig.from_settings({}).resolved(low).width == 512  # that version's width
    with pytest.raises(ValueError, match="depth must be an integer >= 1, got 0"):
        PinnConfig(depth=0).validate(high)  # validate checks the model it resolves to
    # on onnxruntime, which cannot run the LM steps, the model left unset is the RGE layers
    for problem in (mid, high):
        r = PinnConfig(backend="onnxruntime").resolved(problem)
        assert (r.depth, r.body.name, r.inputs) == (2, "zo", c.resolved(problem).inputs)
        PinnConfig(backend="onnxruntime").validate(problem)
    with pytest.raises(ValueError, match="needs the numba backend"):
        PinnConfig(backend="onnxruntime", window=2).validate(high)


def test_without_iters_a_time_limit_sets_how_many(tmp_path):
    """iters unset: 100 iterations without a time limit, as many as it allows with one (the
    run stops on the time, not at 100); the run directory records iters unset, so a resume
    without --max-time stops; a given iters wins."""
    from zotrain.pinn.config import ITERS, UNTIL_TIME

    assert (PinnConfig().steps, PinnConfig(max_time_s=9).steps) == (ITERS, UNTIL_TIME)
    assert PinnConfig(iters=7, max_time_s=9).steps == 7
    c = small(iters=None, max_time_s=10.0, eval_every=50, head_every=50)
    m = run(c, tmp_path)
    assert m["iters"] > ITERS and m["stopped"] == "time limit", m
    with open(tmp_path / "config.json") as f:
        assert json.load(f)["iters"] is None
    again = run(small(iters=None, eval_every=50, head_every=50), tmp_path, resume=True)
    assert again["iters"] == m["iters"]  # resumed without a time limit: 100, long passed


def test_the_head_is_solved_on_points_by_its_size_and_the_time_limit(monkeypatch):
    """head_points unset: HEAD_ROWS points per head parameter (width + 1); a given number
    wins. With a time limit: fewer where a solve would take more than HEAD_SHARE of it (at
    the last solve's time per point), but twice the head's parameters where that fits in 5
    shares; the time per point is measured by each solve."""
    from zotrain.pinn.config import HEAD_ROWS
    from zotrain.pinn.task import HEAD_SHARE, PinnTask

    model, loss = build(small(), POISSON)
    params = init_params(model, POISSON, 0)

    def task(**kw):
        return PinnTask(POISSON, model, loss, small(**{"head_points": None, **kw}), {})

    head = 64 + 1
    assert task().head_points(params) == HEAD_ROWS * head
    assert task(head_points=100).head_points(params) == 100
    for bad in (0, -5, 2.5, True):  # unset is the rule; a given number must be a count
        with pytest.raises(ValueError, match=f"head_points must be an integer >= 1, got {bad!r}"):
            small(head_points=bad).validate(POISSON)
    unset = small(head_points=None).resolved(POISSON)
    assert PinnConfig.from_settings(unset.settings()).head_points is None
    t = task(max_time_s=100.0)

    def points(per_share):  # the head points when one share of the time fits ``per_share``
        t.solve_seconds = HEAD_SHARE * 100.0 / (per_share + 0.1)
        return t.head_points(params)

    assert points(1000) == HEAD_ROWS * head  # all of them fit: the rule's number
    assert points(300) == 300  # one share's worth
    assert points(50) == 2 * head  # twice the head: 130 points in 5 shares (250 fit)
    assert points(20) == 100  # twice the head does not fit in 5 shares: what does
    fresh = task(max_time_s=100.0)
    n = fresh.head_points(params)  # before any solve: three forwards a point, measured
    assert fresh.solve_seconds > 0 and 1 <= n <= HEAD_ROWS * head
    seen = []
    monkeypatch.setattr(solvers, "solve_head", lambda loss, p, x, *a: seen.append(len(x)) or p)
    fresh.solve_seconds = HEAD_SHARE * 100.0 / 300.1
    fresh._solve_head(params, 1)
    assert seen == [300] and fresh.solve_seconds != HEAD_SHARE * 100.0 / 300.1  # measured


def test_the_lm_steps_get_at_least_as_many_rows_as_unknowns():
    """points unset: POINTS for the RGE bodies; for the gauss-newton body, the fewest
    (up to the boundary points' rounding) that give the window (each batch's points and
    boundary points) as many rows as the step has columns, counted on the loss the run
    builds; a given number wins, and a run directory from before the rule resumes with
    its own."""
    import dataclasses
    import math

    from zotrain.pinn.config import POINTS
    from zotrain.pinn.task import PinnTask

    mid = suite.instance("allen-cahn", 1)  # 11 inputs, face data: the LM model
    free = dataclasses.replace(mid, boundary=None, whole_space=True,
                               transform=mid.transform)
    for problem, fraction in ((mid, 0.25), (free, 0.25), (mid, 1.0)):
        for window in (None, 2):
            c = PinnConfig.for_problem(problem, boundary_fraction=fraction, window=window,
                                       body="gauss-newton", depth=1)
            fraction = fraction if problem.boundary is not None else 0.0
            model, loss = build(c, problem)
            columns = len(solvers.body_columns(loss))
            task = PinnTask(problem, model, loss, c, {})
            _, x, xb = task.batch(1)
            rows = c.window_size * (len(x) + (0 if xb is None else len(xb)))
            assert rows >= columns  # and no more than rounding needs:
            assert c.points <= math.ceil(columns / c.window_size / (1 + fraction)) + 1
            assert c.window_size * POINTS * (1 + fraction) < columns  # POINTS would not do
    assert PinnConfig.for_problem(mid, points=32).points == 32
    assert PinnConfig.for_problem(suite.instance("poisson", 101)).points == POINTS  # RGE
    assert PinnConfig.for_problem(mid, body="zo").points == POINTS
    assert PinnConfig.from_settings({"body": "gauss-newton"}).points == POINTS


@pytest.mark.parametrize("options,msg", [
    (dict(window=0), "window must be an integer >= 1"),
    (dict(width=0), "width must be an integer >= 1, got 0"),
    (dict(width="512"), "width must be an integer >= 1, got '512'"),
    (dict(rank=0), "rank must be an integer >= 1, got 0"),
    (dict(depth=0), "depth must be an integer >= 1, got 0"),
    (dict(inputs="x"), "unknown network inputs 'x'"),
    (dict(boundary_fraction=-1.0), "boundary_fraction must be a finite number > 0, got -1.0"),
])
def test_a_bad_option_the_points_rule_reads_is_refused_by_name(options, msg):
    """points unset on the LM model: the rule reads the model's and the boundary's options,
    so a bad one is named by validate, not lost in the rule's arithmetic."""
    c = PinnConfig(**options)
    with pytest.raises(ValueError, match=msg):
        c.validate(suite.instance("allen-cahn", 1))


def test_the_first_layers_phases_are_random_so_the_network_is_not_odd():
    """Zero first-layer biases make a network of Sin layers odd about its inputs' origin (the
    box's lower corner): every even derivative vanishes there, the Laplacian included.  Where
    the random features stay (``random_phases``), the biases are spread over [-pi, pi] by the
    seed, so the even part is as large as the odd; the LM steps' layer and a problem whose
    solution is free keep zero biases."""
    assert random_phases(small().resolved(POISSON), POISSON)
    assert random_phases(small(body="frozen").resolved(POISSON), POISSON)
    assert not random_phases(small(body="gauss-newton").resolved(POISSON), POISSON)
    hjb = problems.get("hjb20d")  # on all of R^20, no boundary data
    assert not random_phases(small().resolved(hjb), hjb)
    model, _ = build(small(), POISSON)
    bias = [s.slice for s in model.layout.of_layer(0) if s.local == "bias"][0]
    assert not init_params(model, POISSON, 0)[bias].any()
    p0, p1 = init_params(model, POISSON, 0, True), init_params(model, POISSON, 1, True)
    assert np.array_equal(p0, init_params(model, POISSON, 0, True))
    assert not np.array_equal(p0[bias], p1[bias])
    b = np.sort(p0[bias])
    assert -np.pi <= b[0] and b[-1] <= np.pi
    assert np.abs(b - np.linspace(-np.pi, np.pi, len(b))).max() < 1.0  # spread, not clumped
    y = np.random.default_rng(0).random((200, 2)).astype(np.float32)
    for params in (p0, p1):
        up, down = model.apply(params, y)[:, 0], model.apply(params, -y)[:, 0]
        head_bias = params[model.layout.of_layer(len(model.layers) - 1)[-1].slice][0]
        even, odd = up + down - 2 * head_bias, up - down
        assert np.linalg.norm(even) > 0.3 * np.linalg.norm(odd)


@pytest.mark.parametrize("body,moved", [("frozen", set()), ("local", {0, 2}), ("zo", {0, 2}),
                                        ("gauss-newton", {0, 2})])
def test_body_training_modes_move_what_they_claim(tmp_path, body, moved):
    c = small(body=body, iters=2, eval_every=2, head_every=100)  # the head solved at start/end
    model, _ = build(c, POISSON)
    run(c, tmp_path)
    with np.load(tmp_path / "checkpoint.npz") as z:
        params = z["params"]
    start = init_params(model, POISSON, 0, random_phases(c.resolved(POISSON), POISSON))
    changed = {s.layer for s in model.layout if not np.array_equal(params[s.slice], start[s.slice])}
    assert changed - {4} == moved and 4 in changed


def test_local_body_steps_lower_the_loss_at_fixed_head():
    """One local-rule step (plain gradient step) on a fixed head lowers the loss."""
    c = small(body="local")
    model, loss = build(c, POISSON)
    params = solvers.solve_head(loss, init_params(model, POISSON, 0), POISSON.sample(256, 1), 1e-6)
    x = POISSON.sample(32, 2)
    value, grad = solvers.hidden_layer_gradient(loss, params, x)
    lr = 1e-2 * value / float(grad @ grad)  # a short step along -grad
    assert loss((params - lr * grad)[None].astype(np.float32), x)[0] < value


def test_gauss_newton_body_lowers_the_loss_at_fresh_points_or_changes_nothing(monkeypatch):
    """One Levenberg-Marquardt step moves only the last hidden layer and the head, and
    lowers the loss at the check points; when no candidate does, nothing moves and the
    damping grows past the largest tried."""
    c = small(body="gauss-newton")
    model, loss = build(c, POISSON)
    # from the initial parameters, far above the loss's float32 noise: after a head solve
    # (loss 1.7e-2) float32 rounding alone (another BLAS call's) decided whether a step
    # was taken, and the two evaluations of the loss differed by 2e-4 relative
    params = init_params(model, POISSON, 0)
    x, check = POISSON.sample(48, 2), (POISSON.sample(48, 3), None)
    new, damping, before = gauss_newton_body(loss, params, x, None, check, damping=1e-2)
    assert before == pytest.approx(loss.mean_loss(params, x), rel=1e-4)
    moved = np.flatnonzero(new != params)
    assert set(moved) <= set(solvers.body_columns(loss)) and len(moved) > 0
    assert loss.mean_loss(new, *check) < loss.mean_loss(params, *check)
    assert damping in [1e-2 * f for f in (0.1, 1.0, 10.0, 100.0)]
    real = PinnLoss.losses
    monkeypatch.setattr(PinnLoss, "losses",  # every candidate worse than the parameters
                        lambda self, P, *a: np.arange(len(P)) + real(self, P[:1], *a)[0])
    same, damping, _ = gauss_newton_body(loss, params, x, None, check, damping=1e-2)
    np.testing.assert_array_equal(same, params)
    assert damping == pytest.approx(1e-2 * 100.0 * 10.0)


def test_gauss_newton_damping_is_capped_so_a_refused_run_can_recover(monkeypatch):
    """Refusals grow the damping 1000x; uncapped it reached 1e56 in 30 iterations on
    heat100d, where the steps no longer move float32 parameters and every later step is
    refused.  Capped at the scaled normal matrix's trace (its number of non-zero
    columns), a step from an absurd damping still lowers the loss at the check points,
    and a refusal never returns more than the cap."""
    c = small(body="gauss-newton")
    model, loss = build(c, POISSON)
    params = init_params(model, POISSON, 0)
    x, check = POISSON.sample(48, 2), (POISSON.sample(48, 3), None)
    _, J = solvers.body_jacobian(loss, params, x)
    cap = np.count_nonzero(np.linalg.norm(J, axis=0))
    assert cap > 100
    new, damping, _ = gauss_newton_body(loss, params, x, None, check, damping=1e60)
    assert loss.mean_loss(new, *check) < loss.mean_loss(params, *check)
    assert damping in [cap * f for f in (0.1, 1.0, 10.0, 100.0)]
    real = PinnLoss.losses
    monkeypatch.setattr(PinnLoss, "losses",  # every candidate worse than the parameters
                        lambda self, P, *a: np.arange(len(P)) + real(self, P[:1], *a)[0])
    for start in (1e60, float(cap), cap / 10.0):
        same, damping, _ = gauss_newton_body(loss, params, x, None, check, damping=start)
        np.testing.assert_array_equal(same, params)
        assert damping == pytest.approx(cap)


def test_a_window_solves_earlier_batches_carried_to_the_current_parameters():
    """The window's rows are each batch's, weighted so that ``|r|^2`` is the batches' mean
    loss; after a change of the parameters, a kept batch's residuals are carried by its
    Jacobian, to first order: far closer to the residuals recomputed there than the
    residuals left where they were."""
    from zotrain.pinn.lm_window import JacobianWindow

    c = small(body="gauss-newton", window=3)
    model, loss = build(c, POISSON)
    params = solvers.solve_head(loss, init_params(model, POISSON, 0), POISSON.sample(256, 1), 1e-6)
    cols = solvers.body_columns(loss)
    window = JacobianWindow(3, cols)
    xs = [POISSON.sample(32, [0, k]) for k in range(3)]
    rng = np.random.default_rng(0)
    for k, x in enumerate(xs[:2]):
        r, J = solvers.body_jacobian(loss, params, x)
        moved = params.copy()
        moved[cols] += 1e-3 * rng.standard_normal(len(cols)) * np.abs(params[cols]).mean()
        window.add(k, params, r, J, moved)
        params = moved
    assert [b.it for b in window.batches] == [0, 1]
    r_new, J_new = solvers.body_jacobian(loss, params, xs[2])
    R, JJ = window.rows(r_new, J_new)
    assert R.shape == (96,) and JJ.shape == (96, len(cols))
    np.testing.assert_allclose(JJ[64:], J_new / np.sqrt(3))
    for b, x in zip(window.batches, xs):
        true = solvers.body_jacobian(loss, params, x)[0]
        stale = solvers.body_jacobian(loss, b.params, x)[0]
        assert np.linalg.norm(b.r - true) < 0.1 * np.linalg.norm(stale - true)
    assert R @ R == pytest.approx(np.mean([loss.mean_loss(params, x) for x in xs]), rel=1e-2)
    two = JacobianWindow(2, cols)  # keeps one batch only
    for k in range(3):
        two.add(k, params, r_new, J_new, params)
    assert [b.it for b in two.batches] == [2]
    one = JacobianWindow(1, cols)
    one.add(0, params, r_new, J_new, params)
    assert one.batches == [] and one.rows(r_new, J_new)[0] is not r_new


def test_bad_body_settings(tmp_path):
    with pytest.raises(ValueError, match="unknown body training 'backprop'; known: zo, local, "
                       "gauss-newton, frozen"):
        run(small(body="backprop"), tmp_path)
    for body in ("local", "gauss-newton"):
        with pytest.raises(ValueError, match=f"body '{body}' needs the numba backend"):
            run(small(body=body, backend="onnxruntime"), tmp_path)
    with pytest.raises(ValueError, match="body 'gauss-newton' solves the head .* needs head "
                       "'gauss-newton', not 'zo'"):
        run(small(body="gauss-newton", head="zo"), tmp_path)


@pytest.mark.parametrize("check_points,cap,expected", [(None, 1024, 16), (None, 8, 8),
                                                       (5, 8, 5)])
def test_gauss_newton_steps_are_judged_at_check_points(tmp_path, monkeypatch, check_points,
                                                       cap, expected):
    """The candidates are judged at ``check_points`` fresh points; by default as many as
    the batch, at most ``CHECK_POINTS``."""
    from zotrain.pinn import bodies

    seen = []
    real = solvers.lm_step

    def lm_step(loss, params, r, J, check, *a, **kw):
        seen.append(len(check[0]))
        return real(loss, params, r, J, check, *a, **kw)

    monkeypatch.setattr(solvers, "lm_step", lm_step)
    monkeypatch.setattr(bodies, "CHECK_POINTS", cap)
    run(small(body="gauss-newton", iters=2, check_points=check_points), tmp_path)
    assert seen == [expected, expected]


@pytest.mark.parametrize("fraction,expected", [(None, (4, 4, 64)), (0.5, (8, 8, 128)),
                                               (2.0, (32, 32, 512))])
def test_boundary_points_per_collocation_point(tmp_path, monkeypatch, fraction, expected):
    """Batches, checks and head solves take ``boundary_fraction`` boundary points per
    collocation point (a quarter by default)."""
    from zotrain.pinn import problems

    seen = []
    jacobian, step, head = solvers.body_jacobian, solvers.lm_step, solvers.solve_head

    def body_jacobian(loss, params, x, xb=None, *a, **kw):
        seen.append(("batch", len(xb)))
        return jacobian(loss, params, x, xb, *a, **kw)

    def lm_step(loss, params, r, J, check, *a, **kw):
        seen.append(("check", len(check[1])))
        return step(loss, params, r, J, check, *a, **kw)

    def solve_head(loss, params, x, ridge, xb=None, *a, **kw):
        seen.append(("head", len(xb)))
        return head(loss, params, x, ridge, xb, *a, **kw)

    monkeypatch.setattr(solvers, "body_jacobian", body_jacobian)
    monkeypatch.setattr(solvers, "lm_step", lm_step)
    monkeypatch.setattr(solvers, "solve_head", solve_head)
    options = {} if fraction is None else {"boundary_fraction": fraction}
    run(small(body="gauss-newton", depth=1, iters=1, head_every=1, width=16, **options),
        tmp_path, problem=problems.get("hjb100d"))
    batch, check, head_n = expected
    assert ("batch", batch) in seen and ("check", check) in seen and ("head", head_n) in seen
    assert {n for what, n in seen if what == "batch"} == {batch}


def test_boundary_steps_fit_the_boundary_data_alone():
    """``boundary_steps``: the first steps are Levenberg-Marquardt steps on the unsmoothed
    network's boundary errors alone (one evaluation per boundary point, judged on boundary
    check points only, kept out of the window): each leaves the parameters or lowers that
    check loss; the PDE's steps follow, with the window."""
    from zotrain.pinn import Problem
    from zotrain.pinn.train import PinnTask

    exact = lambda x: np.exp(x[:, 0]) * np.sin(x[:, 1])  # noqa: E731  harmonic
    laplace = Problem("laplace2d", 2, None, (0.0, 0.0), (1.0, 1.0),
                      residual=lambda x, u, grad, lap, u_t: lap, exact=exact, boundary=exact,
                      sigma=0.05, method="sparse-grid")
    c = small(body="gauss-newton", depth=1, boundary_steps=2, iters=3, window=2, points=64,
              boundary_fraction=4.0)
    c.validate(laplace)
    model, loss = build(c, laplace)
    task = PinnTask(laplace, model, loss, c, {})
    params, _ = task.on_start(task.init(c.seed))
    fit = PinnLoss(model, laplace, boundary_rule="point")
    assert fit.boundary_stein.evaluations == 1
    none, moved = np.zeros((0, 2)), 0
    for step, batch in enumerate(task.batches(0, c.seed)):
        it, x, xb = batch
        res = task.step(params, batch, seed=c.seed, step=step)
        new = params.copy()  # as the engine does: the step's own parameters, the hook, commit
        new[res.assign[0]] = res.assign[1]
        new, _ = task.after_step(new, step=step, last=False)
        res.commit(new)
        if it <= 2:
            r, _ = solvers.body_jacobian(fit, params, none, xb)
            assert res.loss == pytest.approx(float(r @ r), rel=1e-9)
            check_b = task.boundary_points(c.check_size, [c.seed, it, 2])
            assert res.cost.passes == pytest.approx((len(xb) + 5 * len(check_b)) /
                                                    loss.evaluations / c.points)
            before, after = (fit.losses(p[None], none, check_b)[0] for p in (params, new))
            assert after < before or np.array_equal(new, params)
            moved += not np.array_equal(new, params)
        else:
            assert res.cost.passes > len(x) / c.points  # the interior rows' forwards
        assert len(task.body.rows.batches) == (it > 2)
        params = new
    assert moved


def test_boundary_steps_need_boundary_data(tmp_path):
    with pytest.raises(ValueError, match="boundary_steps 2: problem 'hjb20d' has no boundary "
                                         "data to fit"):
        run(small(body="gauss-newton", boundary_steps=2), tmp_path, problem=problems.get("hjb20d"))


def test_a_run_from_before_the_constraint_moved_is_refused_by_name(tmp_path):
    """Runs of a problem with a hard constraint record how their predictor is built; one
    without the record (made when the constraint was applied at the shifted inputs) is
    refused on resume and on load, naming the run and what to do."""
    from zotrain.base import ZotrainError
    from zotrain.pinn.train import CONSTRAINT, check_constraint

    from zotrain.pinn.train import load_run

    hjb = problems.get("hjb20d")
    tiny = dict(width=8, points=4, head_points=16, head_every=1, eval_every=1, eval_points=10,
                test_points=10)
    train_pinn(hjb, small(iters=2, **tiny), tmp_path, progress=False)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["constraint"] == CONSTRAINT
    load_run(hjb, tmp_path)  # this version's run loads
    del config["constraint"]
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ZotrainError, match="trained by an older zotrain.*train it again"):
        train_pinn(hjb, small(iters=4, **tiny), tmp_path, resume=True, progress=False)
    with pytest.raises(ZotrainError, match=f"{tmp_path} was trained by an older zotrain"):
        check_constraint(config, hjb, tmp_path)
    check_constraint(config, problems.get("hjb100d"), tmp_path)  # no constraint: no change
