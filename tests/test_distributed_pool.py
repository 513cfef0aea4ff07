"""The Ray pool's safety: a local instance listens on loopback only and is shut down with
the pool, a query that keeps killing its worker or never answers fails the step with a
message, and a run that fails after its pool started leaves no Ray behind.  Each test starts
(and stops) its own local instance."""

import os
import time
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray")

from zotrain.base import ZotrainError  # noqa: E402
from zotrain.data import Dataset  # noqa: E402
from zotrain.distributed import QueryPool  # noqa: E402
from zotrain.nn.activations import ReLU  # noqa: E402
from zotrain.nn.layers import Dense, TTLinear  # noqa: E402
from zotrain.nn.sequential import Sequential  # noqa: E402
from zotrain.recipes.classification import ClassifierConfig, train_classifier  # noqa: E402

pytestmark = pytest.mark.ray


@pytest.fixture(autouse=True)
def no_ray_running():
    if ray.is_initialized():
        ray.shutdown()
    yield
    if ray.is_initialized():
        ray.shutdown()


class Misbehaving:
    """A factory whose objective dies or hangs on request."""

    def __call__(self, *args):
        return self, None

    def die(self):
        os._exit(1)

    def hang(self):
        time.sleep(60)

    def answer(self):
        return 42


def _descendants(pid):
    children = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(d.name))
    out, todo = set(), [pid]
    while todo:
        p = todo.pop()
        for c in children.get(p, []):
            if c not in out:
                out.add(c)
                todo.append(c)
    return out


def _listening(pids):
    """``(address, port)`` of every TCP socket in LISTEN state held by ``pids``."""
    inodes = set()
    for pid in pids:
        try:
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
        except OSError:
            continue
    found = []
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        for line in Path(table).read_text().splitlines()[1:]:
            f = line.split()
            if f[3] == "0A" and f[9] in inodes:  # 0A: LISTEN
                addr, port = f[1].split(":")
                found.append((addr, int(port, 16)))
    return found


LOOPBACK = {"0100007F",  # 127.0.0.1 (little-endian hex)
            "0000000000000000FFFF00000100007F",  # ::ffff:127.0.0.1
            "00000000000000000000000001000000"}  # ::1


def test_a_local_instance_listens_on_loopback_only_and_stops_with_the_pool():
    pool = QueryPool(Misbehaving(), 1)
    pool.step()
    assert pool.call_each("answer", [()]) == [42]
    sockets = _listening(_descendants(os.getpid()) | {os.getpid()})
    assert sockets, "found no listening socket of the Ray processes"
    assert all(addr in LOOPBACK for addr, _ in sockets), sockets
    pool.shutdown()
    assert not ray.is_initialized()


def test_a_query_that_keeps_killing_its_worker_fails_the_step():
    pool = QueryPool(Misbehaving(), 1, max_retries=1)
    try:
        pool.step()
        with pytest.raises(ZotrainError, match="killed its Ray worker 2 times"):
            pool.call_each("die", [()])
        assert pool.replaced == 1
    finally:
        pool.shutdown()


def test_a_result_that_never_comes_fails_after_the_timeout():
    pool = QueryPool(Misbehaving(), 1, call_timeout_s=2)
    try:
        pool.step()
        t0 = time.perf_counter()
        with pytest.raises(ZotrainError, match="gave no result within 2 s"):
            pool.call_each("hang", [()])
        assert time.perf_counter() - t0 < 20
    finally:
        pool.shutdown()


def test_a_run_that_fails_after_its_pool_started_leaves_no_ray(tmp_path):
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((300, 16)).astype(np.float32), rng.integers(0, 4, 300)
    data = Dataset.from_arrays(X[:250], y[:250], X[250:], y[250:])
    model = Sequential([TTLinear(16, 12, rank=2, in_modes=(4, 4), out_modes=(3, 4)), ReLU(),
                        Dense(12, 4)])
    (tmp_path / "metrics.json").write_text("{}")  # a run is there: the engine refuses
    c = ClassifierConfig(evaluator="none", ray="local", transport="params", epochs=1,
                         batch_size=50)
    with pytest.raises(ZotrainError, match="already holds a run"):
        train_classifier(model, data, c, tmp_path, progress=False)
    assert not ray.is_initialized()
