"""Queries on Ray actors: bit-identical to one process, faults survived, bad input named.

Starts one local Ray instance (``num_cpus=2``) for the module; skipped where Ray is not
installed (the message a user gets then is tested in tests/test_distributed_errors.py)."""

import numpy as np
import pytest

ray = pytest.importorskip("ray")

from zotrain.base import ZotrainError  # noqa: E402
from zotrain.distributed import ModelObjectives, QueryPool  # noqa: E402
from zotrain.nn.activations import ReLU, Tanh  # noqa: E402
from zotrain.nn.layers import Dense, TTLinear  # noqa: E402
from zotrain.nn.sequential import Sequential  # noqa: E402
from zotrain.pinn import problems  # noqa: E402
from zotrain.pinn.train import PinnConfig, train_pinn  # noqa: E402
from zotrain.recipes.classification import ClassifierConfig, build_optimizer, build_step  # noqa: E402

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
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
    X = rng.standard_normal((100, model.in_features)).astype(np.float32)
    y = rng.integers(0, 4, 100)
    c = ClassifierConfig(**kw)
    c.validate()
    plan = build_step(c, model)
    opt = build_optimizer(c, plan, steps)
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
        return p, costs, pool
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
}


@pytest.mark.parametrize("case", list(CASES))
def test_query_parallel_parameters_are_bit_identical(case):
    if case == "rge-blas":
        from zotrain.distributed.pool import blas_threads

        if blas_threads() < 2:
            pytest.skip("one BLAS thread here: nothing thread-dependent to test")
    single, cost1, _ = train(**CASES[case])
    spread, cost2, pool = train(**CASES[case], ray="local", workers=2)
    np.testing.assert_array_equal(single, spread)
    assert cost1 == cost2  # forward passes and forward equivalents counted the same
    assert pool.bytes_sent > 0 and pool.replaced == 0


@pytest.mark.parametrize("case", ["rge", "local-weight"])
def test_a_killed_actor_is_replaced_and_the_run_continues_identically(case):
    single, _, _ = train(steps=4, **CASES[case])
    spread, _, pool = train(steps=4, kill=(2, 1), **CASES[case], ray="local", workers=2)
    assert pool.replaced == 1
    np.testing.assert_array_equal(single, spread)


def test_pinn_queries_on_ray_match_one_process(tmp_path):
    kw = dict(width=32, iters=2, points=8, head_points=128, head_every=2, eval_every=2,
              eval_points=50, test_points=100, queries=3)
    poisson = problems.get("poisson2d")
    one = train_pinn(poisson, PinnConfig(**kw), tmp_path / "one", progress=False)
    two = train_pinn(poisson, PinnConfig(**kw, ray="local", workers=2), tmp_path / "two",
                     progress=False)
    a, b = (np.load(tmp_path / d / "model.npz")["params"] for d in ("one", "two"))
    np.testing.assert_array_equal(a, b)
    assert one["forward_passes"] == two["forward_passes"]


@pytest.mark.parametrize("workers", [0, -1, 1.5, True])
def test_workers_must_be_a_positive_integer(workers):
    with pytest.raises(ZotrainError, match="workers must be an integer >= 1"):
        ClassifierConfig(evaluator="none", ray="local", workers=workers).validate()
    with pytest.raises(ZotrainError, match="--workers must be an integer >= 1"):
        QueryPool(ModelObjectives(deep()), workers)


def test_activity_perturbation_is_refused_with_the_reason():
    with pytest.raises(ZotrainError, match="activity perturbation evaluates"):
        ClassifierConfig(ray="local").validate()


class _StopAfterEpoch:
    def on_step(self, trainer, loss):
        pass

    def on_epoch(self, trainer, record):
        trainer.stop = "stopped by the test"


def test_checkpoint_and_resume_work_unchanged(mnist_dir, tmp_path):
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
    assert run(tmp_path / "ray", callbacks=[_StopAfterEpoch()], ray="local",
               workers=2)["epochs"] == 1
    assert run(tmp_path / "ray", resume=True, ray="local", workers=2)["epochs"] == 2
    a, b = (np.load(tmp_path / d / "model.npz")["params"] for d in ("one", "ray"))
    np.testing.assert_array_equal(a, b)
