"""A pool of Ray actors that evaluate queries of objectives they build themselves.

Each actor holds a ``factory`` (sent once, when the actor starts): a function of
a step's arguments (the minibatch, the block's input, the collocation points)
that returns ``(objective, account)`` on the actor.  Per step the driver puts
those arguments in Ray's object store once (``QueryPool.step``); an actor
fetches them once and builds its objective; then each query call sends only what
the queries need (parameters and seeds, or parameter rows) and gets losses
back.  An actor that dies is replaced, given the step's arguments again, and
its calls re-run: the results are the same, since every query is a pure
function of what it is sent.
"""

import os
import pickle
import socket

import numpy as np

from zotrain.base import ZotrainError
from zotrain.distributed.objective import REPLICA

INSTALL = 'pip install "zotrain[distributed]"'


def import_ray():
    """The ``ray`` module, or a ZotrainError telling how to install it."""
    try:
        import ray
    except ImportError:
        raise ZotrainError(f"--ray needs Ray, which is not installed; install it with "
                           f"{INSTALL}") from None
    return ray


def blas_threads():
    """The BLAS thread count of this process, as OpenBLAS chooses it: its environment
    variables, else the CPUs this process may run on."""
    for var in ("OPENBLAS_NUM_THREADS", "GOTO_NUM_THREADS", "OMP_NUM_THREADS"):
        value = os.environ.get(var, "")
        if value.isdigit() and int(value) > 0:
            return int(value)
    return len(os.sched_getaffinity(0))


def _check_reachable(address, timeout_s):
    """Refuse quickly an address with nothing listening (Ray itself waits minutes)."""
    if address == "auto":
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise ZotrainError(f"--ray address must be HOST:PORT, ray://HOST:PORT or auto, got "
                           f"{address!r}")
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as e:
        raise ZotrainError(f"cannot reach a Ray cluster at {address!r} "
                           f"({e.strerror or e}); start one with `ray start --head` or omit "
                           "the address to start a local instance") from None


def _nbytes(value):
    from ray import cloudpickle  # what Ray sends: functions (an optimizer) included

    return len(cloudpickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))


def _numbers(account):
    """The numeric counters of an account object (None: no account)."""
    if account is None:
        return None
    return {k: v for k, v in vars(account).items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)}


class _Worker:
    """The actor: builds the step's objective from the factory and runs query calls."""

    def __init__(self, factory):
        self.factory, self.key, self.objective, self.account = factory, None, None, None

    def ready(self):
        return os.getpid()

    def prepare(self, key, args, message=None):
        """Build step ``key``'s objective, after applying ``message`` (the replay transport's
        update of the factory's replica); returns whether the replica is in step (None:
        no replica)."""
        in_step = None if message is None else self.factory.receive(*message)
        self.key = key
        self.objective, self.account = self.factory(*args)
        return in_step

    def receive(self, message):
        return self.factory.receive(*message)

    def _check(self, key):
        if key != self.key:
            raise RuntimeError(f"worker holds step {self.key}, asked for {key}")

    def call(self, key, method, args):
        """``method(*args)`` of the step's object, its result returned as it is."""
        self._check(key)
        return getattr(self.objective, method)(*args)

    def run(self, key, method, params, args):
        self._check(key)
        obj = self.objective
        if isinstance(params, str) and params == REPLICA:  # the replay transport
            params = self.factory.params
            args = tuple(params if isinstance(a, str) and a == REPLICA else a for a in args)
        if params is not None and hasattr(obj, "base"):
            obj.base(params)  # the clean forward, as the driver's own objective has it
        passes, flops = obj.forward_passes, getattr(obj, "flops", None)
        counts = _numbers(self.account)
        losses = getattr(obj, method)(*args)
        flops = None if flops is None else obj.flops - flops
        if counts:  # what the queries added to the counters of the account (the block's
            # cost account, the PINN loss's point-forward count)
            counts = {k: v - counts[k] for k, v in _numbers(self.account).items()
                      if v != counts[k]}
        return np.asarray(losses), obj.forward_passes - passes, flops, counts


class QueryPool:
    """``workers`` Ray actors each holding ``factory`` (see the module docstring).

    ``address``: a Ray cluster to join (``"auto"``, ``"ray://host:port"`` or
    ``"host:port"``); None starts a local Ray instance with ``workers`` CPUs.
    ``timeout_s`` bounds the wait for the cluster and for the actors to start."""

    def __init__(self, factory, workers, address=None, timeout_s=60.0):
        if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 1:
            raise ZotrainError(f"--workers must be an integer >= 1, got {workers!r}")
        ray = self.ray = import_ray()
        self.factory, self.n = factory, int(workers)
        if not ray.is_initialized():
            if address is not None:
                _check_reachable(address, min(timeout_s, 10.0))
            try:
                if address is None:
                    ray.init(num_cpus=self.n, include_dashboard=False, log_to_driver=False,
                             configure_logging=False)
                else:
                    ray.init(address=address, include_dashboard=False, log_to_driver=False,
                             configure_logging=False)
            except (ConnectionError, RuntimeError, ValueError, TimeoutError) as e:
                raise ZotrainError(f"cannot reach a Ray cluster at {address!r} ({e})") from None
        threads = str(blas_threads())  # OpenBLAS products differ with the thread count:
        # the actors use the driver's, so that a query's loss is the driver's to the bit
        self.remote_class = ray.remote(num_cpus=1, max_restarts=0, runtime_env={"env_vars": {
            "OPENBLAS_NUM_THREADS": threads, "OMP_NUM_THREADS": threads}})(_Worker)
        self.timeout_s = timeout_s
        self.actors = [self._start() for _ in range(self.n)]
        self.step_key, self.step_ref = None, None
        self.bytes_sent = 0  # step arguments (once per step and actor) and query calls
        self.replaced = 0
        self.message = self.message_ref = self.resync = None  # the replay transport's
        self.resyncs = 0  # replicas sent in full because they were not in step

    def _start(self):
        actor = self.remote_class.remote(self.factory)
        try:
            self.ray.get(actor.ready.remote(), timeout=self.timeout_s)
        except self.ray.exceptions.GetTimeoutError:
            raise ZotrainError(f"a Ray worker did not start within {self.timeout_s:.0f} s "
                               "(does the cluster have a free CPU?)") from None
        return actor

    def set_replica(self, message, resync):
        """The replay transport: ``message`` goes to every actor with the next step (its
        factory's ``receive`` advances the replica), ``resync`` to an actor whose replica
        is then not in step.  None, None: no replica."""
        self.message, self.resync = message, resync
        self.message_ref = None if message is None else self.ray.put(message)

    def step(self, *args):
        """Send this step's arguments (once) and have every actor build its objective."""
        key = (self.step_key or 0) + 1
        self.step_key, self.step_ref = key, self.ray.put(args)
        self.bytes_sent += self.n * (_nbytes(args) + (0 if self.message is None else
                                                      _nbytes(self.message)))
        in_step = self._wait([(w, w, self._prepare(w)) for w in range(self.n)],
                             lambda w, _: self._prepare(w))
        self.message = self.message_ref = None  # applied: a new actor needs the resync
        for w, ok in enumerate(in_step):
            if ok is False:
                self.resyncs += 1
                self._resync(w)

    def _prepare(self, w):
        return self.actors[w].prepare.remote(self.step_key, self.step_ref, self.message_ref)

    def _resync(self, w):
        self.bytes_sent += _nbytes(self.resync)
        self._wait([(w, w, self.actors[w].receive.remote(self.resync))],
                   lambda w, _: self.actors[w].receive.remote(self.resync))

    def _replace(self, w):
        try:
            self.ray.kill(self.actors[w])
        except Exception:  # noqa: BLE001 - already gone
            pass
        self.actors[w] = self._start()
        self.replaced += 1
        self.ray.get(self._prepare(w))
        if self.resync is not None and self.message is None:  # past this step's prepare
            self._resync(w)

    def _wait(self, calls, resubmit):
        """Results of ``calls`` ``[(worker, item, ref)]`` in order; a call whose actor died
        is re-run (``resubmit(worker, item)``) on a replacement actor."""
        out = []
        for w, item, ref in calls:
            while True:
                try:
                    out.append(self.ray.get(ref))
                    break
                except self.ray.exceptions.RayActorError:
                    self._replace(w)
                    ref = resubmit(w, item)
        return out

    def map(self, method, params, chunks):
        """Run ``method(*chunk)`` on the step's objective, chunk ``i`` on actor ``i % n``;
        returns the per-chunk ``(losses, passes, flops, counts)``."""
        refs = []
        for i, args in enumerate(chunks):
            w = i % self.n
            self.bytes_sent += _nbytes((method, params, args))
            refs.append((w, args, self.actors[w].run.remote(self.step_key, method, params, args)))
        return self._wait(refs, lambda w, args: self.actors[w].run.remote(
            self.step_key, method, params, args))

    def call_each(self, method, chunks):
        """``method(*chunk)`` of the step's object, chunk ``i`` on actor ``i % n``; the
        results in order."""
        refs = []
        for i, args in enumerate(chunks):
            w = i % self.n
            self.bytes_sent += _nbytes((method, args))
            refs.append((w, args, self.actors[w].call.remote(self.step_key, method, args)))
        return self._wait(refs, lambda w, args: self.actors[w].call.remote(
            self.step_key, method, args))

    def kill(self, worker):
        """Kill one actor (for fault-injection tests)."""
        self.ray.kill(self.actors[worker])

    def shutdown(self):
        for a in self.actors:
            try:
                self.ray.kill(a)
            except Exception:  # noqa: BLE001
                pass
        self.actors = []
