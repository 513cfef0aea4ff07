"""What a user gets from --ray where Ray is missing or the cluster cannot be reached, and
the checks of Ray settings (no Ray instance is started here; these run without Ray)."""

import sys

import pytest

from zotrain.base import ZotrainError
from zotrain.cli import main
from zotrain.distributed import ModelObjectives, QueryPool
from zotrain.nn.activations import ReLU
from zotrain.nn.layers import Dense, TTLinear
from zotrain.nn.sequential import Sequential
from zotrain.recipes.classification import ClassifierConfig


def deep():
    return Sequential([TTLinear(16, 12, rank=2, in_modes=(4, 4), out_modes=(3, 4)), ReLU(),
                       Dense(12, 4)])


def test_ray_not_installed_tells_how_to_install(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    from zotrain.distributed import ModelObjectives, QueryPool
    from zotrain import mnist_mlp

    with pytest.raises(ZotrainError, match=r'pip install "zotrain\[distributed\]"'):
        QueryPool(ModelObjectives(mnist_mlp()), 2)
    code = main(["train", "mnist", "--data", "tests/data/mnist", "--evaluator", "none",
                 "--ray", "--workers", "2", "--epochs", "1", "--out", str(tmp_path / "r"),
                 "--quiet"])
    assert code != 0
    assert 'pip install "zotrain[distributed]"' in capsys.readouterr().err


def test_an_unreachable_cluster_is_named():
    pytest.importorskip("ray")
    from zotrain import mnist_mlp

    import ray

    if ray.is_initialized():  # an instance from another test module: nothing to connect
        pytest.skip("a Ray instance is already running in this process")
    with pytest.raises(ZotrainError, match="cannot reach a Ray cluster"):
        QueryPool(ModelObjectives(mnist_mlp()), 1, address="127.0.0.1:1")


@pytest.mark.parametrize("address,match", [
    ("no-port", "must be HOST:PORT"), ("host:0", "must be HOST:PORT"),
    ("host:99999", "must be HOST:PORT"), ("auto", "from a file it leaves in /tmp")])
def test_bad_addresses_are_refused_before_ray_is_imported(monkeypatch, address, match):
    monkeypatch.setitem(sys.modules, "ray", None)  # importing Ray would fail the test
    with pytest.raises(ZotrainError, match=match):
        QueryPool(ModelObjectives(deep()), 1, address=address)
    with pytest.raises(ZotrainError, match=match):
        ClassifierConfig(evaluator="none", ray=address).validate()
    from zotrain.pinn.train import PinnConfig
    from zotrain.pinn import problems

    with pytest.raises(ZotrainError, match=match):
        PinnConfig(ray=address).validate(problems.get("poisson2d"))


@pytest.mark.parametrize("kw,match", [(dict(call_timeout_s=0), "call_timeout_s"),
                                      (dict(timeout_s=-1), "timeout_s"),
                                      (dict(max_retries=-1), "max_retries"),
                                      (dict(max_retries=1.5), "max_retries")])
def test_bad_pool_limits_are_named(monkeypatch, kw, match):
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ZotrainError, match=match):
        QueryPool(ModelObjectives(deep()), 1, **kw)


@pytest.mark.parametrize("workers", [0, -1, 1.5, True])
def test_workers_must_be_a_positive_integer(workers):
    with pytest.raises(ZotrainError, match="workers must be an integer >= 1"):
        ClassifierConfig(evaluator="none", ray="local", workers=workers).validate()
    with pytest.raises(ZotrainError, match="--workers must be an integer >= 1"):
        QueryPool(ModelObjectives(deep()), workers)


def test_activity_perturbation_is_refused_with_the_reason():
    with pytest.raises(ZotrainError, match="activity perturbation evaluates"):
        ClassifierConfig(ray="local").validate()


def test_bad_transports_are_named():
    with pytest.raises(ZotrainError, match="unknown transport 'seeds'"):
        ClassifierConfig(evaluator="none", ray="local", transport="seeds").validate()
    with pytest.raises(ZotrainError, match="--transport replay .* needs --ray and --evaluator "
                                           "none"):
        ClassifierConfig(perturb="weight", ray="local", transport="replay").validate()


def test_block_parallel_needs_ray_the_local_evaluator_and_no_prototypes():
    for kw in (dict(), dict(ray="local", evaluator="none"), dict(ray="local", proto=0.5)):
        with pytest.raises(ZotrainError, match="--block-parallel trains the local"):
            ClassifierConfig(block_parallel=True, **kw).validate()
