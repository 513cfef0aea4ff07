"""Queries on Ray actors: bit-identical to one process, faults survived, bad input named.

Starts one local Ray instance (``num_cpus=2``) for the module; skipped where Ray is not
installed (the message a user gets then is tested in tests/test_distributed_errors.py)."""

import numpy as np
import pytest

ray = pytest.importorskip("ray")

from zotrain.distributed.pool import start_local_ray  # noqa: E402
from zotrain.nn.activations import ReLU, Tanh  # noqa: E402
from zotrain.nn.layers import Dense, TTLinear  # noqa: E402
from zotrain.nn.sequential import Sequential  # noqa: E402
from zotrain.pinn import problems  # noqa: E402
from zotrain.pinn.train import PinnConfig, train_pinn  # noqa: E402
from zotrain.recipes.classification import ClassifierConfig, build_optimizer, build_step  # noqa: E402
from tests.test_train import StopAfterEpoch  # noqa: E402

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    start_local_ray(2)
    yield
    ray.shutdown()


def deep(act=ReLU):
    return Sequential([TTLinear(16, 12, rank=2, in_modes=(4, 4), out_modes=(3, 4)), act(),
                       TTLinear(12, 12, rank=2, in_modes=(3, 4), out_modes=(3, 4)), act(),
                       Dense(12, 4)])


def wide():
    """BLAS-sized products (the slab forward), where OpenBLAS's result depends on its
    thread count: the actors must use the driver's."""
    return Sequential([TTLinear(784, 256, rank=4, in_modes=(4, 4, 7, 7),
                                out_modes=(4, 4, 4, 4), method="dense"), ReLU(),
                       Dense(256, 4)])


def train(steps=3, kill=None, **kw):
    """Parameters and costs after ``steps`` steps of the config ``kw`` on a fixed batch;
    ``kill=(step, worker)`` kills that actor after the step's arguments reached it."""
    rng = np.random.default_rng(0)
    model = wide() if kw.pop("wide", False) else deep(Tanh if kw.get("proto") else ReLU)
    if "ray" not in kw:
        kw.pop("transport", None)  # one process: nothing to transport
    X = rng.standard_normal((100, model.in_features)).astype(np.float32)
    y = rng.integers(0, 4, 100)
    c = ClassifierConfig(**kw)
    c.validate()
    plan = build_step(c, model)
    opt = build_optimizer(c, plan, steps)
    if hasattr(plan.rule, "wrap_optimizer"):  # the replay transport sends each update
        opt = plan.rule.wrap_optimizer(opt)
    p = plan.init(0)
    state = opt.init(p)
    costs = []
    pool = plan.pool
    try:
        if kill is not None:
            step_of, original = {"n": 0}, pool.step

            def step_then_kill(*args):
                original(*args)
                step_of["n"] += 1
                if step_of["n"] == kill[0]:
                    pool.kill(kill[1])  # dies between receiving the step and its queries

            pool.step = step_then_kill
        for s in range(steps):
            r = plan.rule(p, X, y, seed=3, step=s)
            p, state = opt.update(r.grad, state, p)
            costs.append(r.cost)
        return p, costs, plan
    finally:
        if pool is not None:
            pool.shutdown()


CASES = {
    "rge": dict(evaluator="none", estimator="rge", queries=6),
    "cge": dict(evaluator="none", estimator="cge", fraction=0.3),
    "local-weight": dict(evaluator="local", perturb="weight", estimator="rge", queries=5,
                         link=1, proto=0.5),
    "local-weight-cge": dict(evaluator="local", perturb="weight", estimator="cge",
                             fraction=0.5),
    "rge-blas": dict(evaluator="none", estimator="rge", queries=4, wide=True),
    "rge-replay": dict(evaluator="none", estimator="rge", queries=6, transport="replay"),
    "cge-replay": dict(evaluator="none", estimator="cge", fraction=0.3, transport="replay"),
    "rge-blas-replay": dict(evaluator="none", estimator="rge", queries=4, wide=True,
                            transport="replay"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_query_parallel_parameters_are_bit_identical(case):
    if case.startswith("rge-blas"):
        from zotrain.distributed.pool import blas_threads

        if blas_threads() < 2:
            pytest.skip("one BLAS thread here: nothing thread-dependent to test")
    single, cost1, _ = train(**CASES[case])
    spread, cost2, plan = train(**CASES[case], ray="local", workers=2)
    pool = plan.pool
    np.testing.assert_array_equal(single, spread)
    assert cost1 == cost2  # forward passes and forward equivalents counted the same
    assert pool.bytes_sent > 0 and pool.replaced == 0
    assert pool.resyncs == 0  # replayed updates matched the driver's to the bit
    if "replay" in case:  # step 0 sends the parameters, step 1 the replica (parameters,
        # optimizer state and the optimizer), step 2 a replay: losses, no parameters
        sent = plan.rule.step_bytes
        assert len(sent["params"]) == 1 and len(sent["replay"]) == 2
        assert sent["replay"][-1] < sent["params"][0]


@pytest.mark.parametrize("case", ["rge", "local-weight", "rge-replay"])
def test_a_killed_actor_is_replaced_and_the_run_continues_identically(case):
    single, _, _ = train(steps=4, **CASES[case])
    spread, _, plan = train(steps=4, kill=(2, 1), **CASES[case], ray="local", workers=2)
    assert plan.pool.replaced == 1
    np.testing.assert_array_equal(single, spread)


def test_auto_transport_measures_both_then_keeps_one_with_the_same_parameters():
    case = dict(evaluator="none", estimator="rge", queries=6)
    single, _, _ = train(steps=10, **case)
    spread, _, plan = train(steps=10, **case, ray="local", workers=2, transport="auto")
    np.testing.assert_array_equal(single, spread)
    rule = plan.rule
    assert [len(rule.measured[m]) for m in ("params", "replay")] == [3, 3]
    assert rule.choice in ("params", "replay") and plan.pool.resyncs == 0
    assert rule.summary()["transport"] == rule.choice


def test_replicas_out_of_step_are_repaired_and_the_run_stays_identical(monkeypatch):
    """Parameters changed outside the optimizer (as a task's after-step hook may) are
    sent in full; a replica whose digest does not match is sent the driver's state."""
    from zotrain.distributed import replay

    def run(ray_on, steps=5):
        rng = np.random.default_rng(0)
        model = deep()
        X = rng.standard_normal((100, 16)).astype(np.float32)
        y = rng.integers(0, 4, 100)
        c = ClassifierConfig(evaluator="none", estimator="rge", queries=4,
                             **(dict(ray="local", workers=2, transport="replay") if ray_on
                                else {}))
        plan = build_step(c, model)
        opt = build_optimizer(c, plan, steps)
        if ray_on:
            opt = plan.rule.wrap_optimizer(opt)
        p = plan.init(0)
        state = opt.init(p)
        try:
            for s in range(steps):
                p, state = opt.update(plan.rule(p, X, y, seed=1, step=s).grad, state, p)
                if s == 2:
                    p = p.copy()
                    p[-1] += 0.5  # a hook moved the head's bias
            return p, plan.pool
        finally:
            if plan.pool is not None:
                plan.pool.shutdown()

    single, _ = run(False)
    spread, pool = run(True)
    np.testing.assert_array_equal(single, spread)
    assert pool.resyncs == 0
    monkeypatch.setattr(replay, "digest", lambda params: b"not the actors' digest")
    spread, pool = run(True)
    np.testing.assert_array_equal(single, spread)
    assert pool.resyncs > 0  # every replayed step repaired, the run unchanged


@pytest.mark.parametrize("body", [dict(), dict(body="gauss-newton", window=2, iters=3)])
def test_pinn_queries_on_ray_match_one_process(tmp_path, body):
    """(with a gauss-newton body, the config sent to the actors carries no body state)"""
    kw = dict(dict(width=32, iters=2, points=8, head_points=128, head_every=2, eval_every=2,
                   eval_points=50, test_points=100, queries=3), **body)
    poisson = problems.get("poisson2d")
    one = train_pinn(poisson, PinnConfig(**kw), tmp_path / "one", progress=False)
    two = train_pinn(poisson, PinnConfig(**kw, ray="local", workers=2), tmp_path / "two",
                     progress=False)
    a, b = (np.load(tmp_path / d / "model.npz")["params"] for d in ("one", "two"))
    np.testing.assert_array_equal(a, b)
    assert one["forward_passes"] == two["forward_passes"]


@pytest.mark.parametrize("transport", ["params", "replay"])
def test_checkpoint_and_resume_work_unchanged(mnist_dir, tmp_path, transport):
    """One process for 2 epochs = Ray for 1 epoch, stop, resume on Ray (new actors) for 1."""
    from zotrain.data import load_dataset
    from zotrain.nn import architectures
    from zotrain.recipes.classification import train_classifier

    data = load_dataset("mnist", mnist_dir)

    def run(out, resume=False, callbacks=(), **kw):
        c = ClassifierConfig(evaluator="none", batch_size=200, epochs=2, val_size=400,
                             queries=4, **kw)
        model = architectures.classifier(784, 10, rank=4, depth=1, hidden=64)
        return train_classifier(model, data, c, out, resume=resume, progress=False,
                                callbacks=callbacks)

    run(tmp_path / "one")
    ray_on = dict(ray="local", workers=2, transport=transport)
    assert run(tmp_path / "ray", callbacks=[StopAfterEpoch()], **ray_on)["epochs"] == 1
    metrics = run(tmp_path / "ray", resume=True, **ray_on)
    assert metrics["epochs"] == 2
    assert metrics.get("transport", "params") == transport  # replay: ReplayedStep.summary
    a, b = (np.load(tmp_path / d / "model.npz")["params"] for d in ("one", "ray"))
    np.testing.assert_array_equal(a, b)


def _block_run(steps, ray_on, perturb, link):
    """Parameters and per-step gradients of ``steps`` block-parallel steps (on Ray or the
    in-process reference schedule) on fixed minibatches."""
    from zotrain.distributed.blocks import BlockParallelStep

    rng = np.random.default_rng(1)
    batches = [(rng.standard_normal((40, 16)).astype(np.float32), rng.integers(0, 4, 40))
               for _ in range(steps)]
    kw = dict(evaluator="local", perturb=perturb, link=link, estimator="rge", queries=4)
    c = ClassifierConfig(**kw, ray="local" if ray_on else None, workers=2,
                         block_parallel=ray_on)
    c.validate()
    model = deep()
    plan = build_step(c, model)
    if not ray_on:  # the same schedule in this process
        plan = plan._replace(rule=BlockParallelStep(plan.rule.evaluator))
    opt = build_optimizer(c, plan, steps)
    if hasattr(plan.rule, "wrap_optimizer"):  # the replay transport sends each update
        opt = plan.rule.wrap_optimizer(opt)
    p = plan.init(0)
    state, grads = opt.init(p), []
    try:
        for s, (X, y) in enumerate(batches):
            r = plan.rule(p, X, y, seed=2, step=s)
            grads.append(r.grad)
            p, state = opt.update(r.grad, state, p)
        return p, grads, batches, plan
    finally:
        if plan.pool is not None:
            plan.pool.shutdown()


@pytest.mark.parametrize("perturb,link", [("activity", 1), ("weight", 0)])
def test_block_parallel_on_ray_equals_its_schedule_in_one_process(perturb, link):
    here, _, _, _ = _block_run(4, False, perturb, link)
    there, _, _, plan = _block_run(4, True, perturb, link)
    np.testing.assert_array_equal(here, there)
    assert plan.pool.bytes_sent > 0


def test_block_parallel_staleness_is_one_step_per_block():
    """Step 0 updates block 0 only; at step 1 block 1 trains on what block 0 output at
    step 0 (minibatch 0, step-0 parameters), with the step-1 parameters."""
    from zotrain.distributed.blocks import BlockParallelStep

    p_end, grads, batches, plan = _block_run(2, False, "activity", 0)
    ev = plan.rule.evaluator
    segs = {k: [s for s in ev.layout if s.layer is not None and
                ev.blocks.ranges[k][0] <= s.layer < ev.blocks.ranges[k][1]]
            for k in range(len(ev.blocks))}
    assert any(grads[0][s.slice].any() for s in segs[0])
    assert not any(grads[0][s.slice].any() for k in range(1, len(segs)) for s in segs[k])
    # rebuild step 1's block-1 update by hand
    c = ClassifierConfig(evaluator="local", perturb="activity", estimator="rge", queries=4)
    opt = build_optimizer(c, plan, 2)
    p0 = plan.init(0)
    p1, _ = opt.update(grads[0], opt.init(p0), p0)
    (X0, y0), _ = batches
    h1 = ev.evaluate_block(p0, 0, X0, y0, seed=2, step=0)[4]
    g1 = ev.evaluate_block(p1, 1, h1, y0, seed=2, step=1)[0]
    for s in segs[1]:
        np.testing.assert_array_equal(grads[1][s.slice], g1[s.slice])
    assert isinstance(plan.rule, BlockParallelStep)
