"""What a user gets from --ray where Ray is missing or the cluster cannot be reached
(no Ray instance is started here)."""

import sys

import pytest

from zotrain.base import ZotrainError
from zotrain.cli import main


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


@pytest.mark.parametrize("address,match", [("127.0.0.1:1", "cannot reach a Ray cluster"),
                                           ("no-port", "must be HOST:PORT")])
def test_an_unreachable_cluster_is_named(address, match):
    pytest.importorskip("ray")
    from zotrain.distributed import ModelObjectives, QueryPool
    from zotrain import mnist_mlp

    import ray

    if ray.is_initialized():  # an instance from another test module: nothing to connect
        pytest.skip("a Ray instance is already running in this process")
    with pytest.raises(ZotrainError, match=match):
        QueryPool(ModelObjectives(mnist_mlp()), 1, address=address)
