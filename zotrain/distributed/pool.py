"""A pool of Ray actors that evaluate queries of objectives they build themselves.

Each actor holds a ``factory`` (sent once, when the actor starts): a function of
a step's arguments (the minibatch, the block's input, the collocation points)
that returns ``(objective, account)`` on the actor.  Per step the driver puts
those arguments in Ray's object store once (``QueryPool.step``); an actor
fetches them once and builds its objective; then each query call sends only what
the queries need (parameters and seeds, or parameter rows) and gets losses
back.  An actor that dies is replaced, given the step's arguments again, and
its calls re-run: the results are the same, since every query is a pure
function of what it is sent; a call whose actor dies ``max_retries`` times fails
the step with a ``ZotrainError``, and so does a call with no result within
``call_timeout_s``.

Where it connects is only what the caller names: a ``HOST:PORT`` (or
``ray://HOST:PORT``) address, or ``None`` for a new local instance that listens
on the loopback interface only (never ``RAY_ADDRESS`` or the file a running
cluster leaves in /tmp: ``address="local"``).  The pool shuts down the Ray
instance it started.
"""

import os
import pickle
import socket

import numpy as np

from zotrain.base import ZotrainError
from zotrain.distributed.objective import REPLICA, RemoteObjective

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


def check_address(address):
    """``(host, port)`` of a cluster address ``HOST:PORT`` or ``ray://HOST:PORT``; anything
    else (``auto`` too: Ray would read the address from a file) is refused."""
    if not isinstance(address, str):
        raise ZotrainError(f"--ray address must be HOST:PORT, got {address!r}")
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if address == "auto":
        raise ZotrainError("--ray auto is not supported: Ray would take the cluster's address "
                           "from a file it leaves in /tmp; give the address, HOST:PORT")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ZotrainError(f"--ray address must be HOST:PORT or ray://HOST:PORT, got "
                           f"{address!r}")
    return host, int(port)


def _check_reachable(address, timeout_s):
    """Refuse quickly an address with nothing listening (Ray itself waits minutes)."""
    host, port = check_address(address)
    try:
        socket.create_connection((host, port), timeout=timeout_s).close()
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

    ``address``: a Ray cluster to join (``"ray://host:port"`` or ``"host:port"``); None
    starts a local Ray instance with ``workers`` CPUs on the loopback interface.
    ``timeout_s`` bounds the wait for the cluster and for the actors to start,
    ``call_timeout_s`` the wait for any one result; a call is re-run on a new actor at most
    ``max_retries`` times."""

    def __init__(self, factory, workers, address=None, timeout_s=60.0, call_timeout_s=600.0,
                 max_retries=2):
        if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 1:
            raise ZotrainError(f"--workers must be an integer >= 1, got {workers!r}")
        for name, v in (("timeout_s", timeout_s), ("call_timeout_s", call_timeout_s)):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
                raise ZotrainError(f"{name} must be a number > 0, got {v!r}")
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
            raise ZotrainError(f"max_retries must be an integer >= 0, got {max_retries!r}")
        if address is not None:
            check_address(address)
        ray = self.ray = import_ray()
        self.factory, self.n, self.actors = factory, int(workers), []
        self.call_timeout_s, self.max_retries = float(call_timeout_s), max_retries
        self.owns_ray = not ray.is_initialized()
        if self.owns_ray:
            _init_ray(ray, address, self.n, timeout_s)
        try:
            self._start_actors(timeout_s)
        except BaseException:
            self.shutdown()
            raise

    def _start_actors(self, timeout_s):
        ray = self.ray
        threads = str(blas_threads())  # OpenBLAS products differ with the thread count:
        # the actors use the driver's, so that a query's loss is the driver's to the bit
        self.remote_class = ray.remote(num_cpus=1, max_restarts=0, runtime_env={"env_vars": {
            "OPENBLAS_NUM_THREADS": threads, "OMP_NUM_THREADS": threads}})(_Worker)
        self.timeout_s = timeout_s
        self.step_key, self.step_ref = None, None
        self.bytes_sent = 0  # step arguments (once per step and actor) and query calls
        self.replaced = 0
        self.message = self.message_ref = self.resync = None  # the replay transport's
        self.resyncs = 0  # replicas sent in full because they were not in step
        for _ in range(self.n):  # one at a time: a failed start leaves the others listed
            self.actors.append(self._start())

    def _start(self):
        actor = self.remote_class.remote(self.factory)
        try:
            self.ray.get(actor.ready.remote(), timeout=self.timeout_s)
        except self.ray.exceptions.GetTimeoutError:
            raise ZotrainError(f"a Ray worker did not start within {self.timeout_s:.0f} s "
                               "(does the cluster have a free CPU?)") from None
        return actor

    def remote(self, objective, account=None):
        """``objective`` (the driver's, for this step) with its queries run on the actors:
        what a caller wraps without importing this package's objective module."""
        return RemoteObjective(objective, self, account)

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
        self.ray.get(self._prepare(w), timeout=self.call_timeout_s)
        if self.resync is not None and self.message is None:  # past this step's prepare
            self._resync(w)

    def _wait(self, calls, resubmit):
        """Results of ``calls`` ``[(worker, item, ref)]`` in order; a call whose actor died
        is re-run (``resubmit(worker, item)``) on a replacement actor, at most
        ``max_retries`` times."""
        out = []
        for w, item, ref in calls:
            for attempt in range(self.max_retries + 1):
                try:
                    out.append(self.ray.get(ref, timeout=self.call_timeout_s))
                    break
                except self.ray.exceptions.GetTimeoutError:
                    raise ZotrainError(f"Ray worker {w} gave no result within "
                                       f"{self.call_timeout_s:.0f} s") from None
                except self.ray.exceptions.RayActorError:
                    if attempt == self.max_retries:
                        raise ZotrainError(
                            f"a query killed its Ray worker {self.max_retries + 1} times (worker "
                            f"{w}); the step fails rather than retry forever") from None
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
        """Kill the actors, and stop the Ray instance if this pool started it."""
        for a in self.actors:
            try:
                self.ray.kill(a)
            except Exception:  # noqa: BLE001
                pass
        self.actors = []
        if self.owns_ray and self.ray.is_initialized():
            self.ray.shutdown()
        self.owns_ray = False


def start_local_ray(n_cpus):
    """Start a local Ray instance with ``n_cpus`` CPUs on the loopback interface (what a
    pool without an address does)."""
    _init_ray(import_ray(), None, n_cpus, 60.0)


def _init_ray(ray, address, n, timeout_s):
    """Join the cluster at ``address``, or start a local instance (None) that listens on the
    loopback interface only."""
    if address is not None:
        _check_reachable(address, min(timeout_s, 10.0))
    try:
        if address is None:
            from ray._private import ray_constants

            # a node whose IP is the loopback one binds every server to 127.0.0.1 (Ray
            # otherwise listens on all interfaces); the driver's setting reaches the
            # processes it starts through their command lines
            ray_constants.ENABLE_RAY_CLUSTER = False
            ray.init(address="local", num_cpus=n, include_dashboard=False,
                     log_to_driver=False, configure_logging=False)
        else:
            ray.init(address=address, include_dashboard=False, log_to_driver=False,
                     configure_logging=False)
    except (ConnectionError, RuntimeError, ValueError, TimeoutError) as e:
        raise ZotrainError(f"cannot reach a Ray cluster at {address!r} ({e})") from None
