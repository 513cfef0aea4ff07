"""Replaying updates on the actors: queries sent as seeds and scalars, no parameters.

In the ``"params"`` transport every query call carries the parameters (the
model's 162 KB for the default MNIST model, per call and actor).  In the
``"replay"`` transport each actor keeps a replica of the parameters and of the
optimizer state and advances it itself: after a step the driver sends the
step's query losses (the scalars; the actor's directions come from (seed,
step, query) as on the driver), the estimator's state and a digest of the
parameters the driver's optimizer produced.  The actor runs the same step rule
on its own objective of that minibatch with the recorded losses in place of
its queries (the clean loss and the exact head gradient it computes itself:
they are pure functions of the minibatch and the parameters), applies the same
optimizer, and compares digests.  A replica that does not match (a bug, an
actor that replaced a dead one, parameters changed outside the optimizer, a
resumed run) is sent the driver's parameters and state in full, so the queries
are always evaluated at the driver's parameters: a replayed run is
bit-identical to the one-process run, and ``pool.resyncs`` counts the
repairs (0 in a healthy run: tested).

``"auto"`` measures both: steps 1-3 in ``params``, 5-7 in ``replay`` (steps
0 and 4 warm up and synchronise), then keeps the faster transport by median
step time (``ReplayedStep.measured``).  Either choice gives the same
parameters.
"""

import hashlib
import statistics
import time
from dataclasses import replace

import numpy as np

from zotrain.distributed import ModelObjectives
from zotrain.distributed.objective import RemoteObjective
from zotrain.optim import Optimizer
from zotrain.zo.objective import ModelObjective
from zotrain.zo.steps import ZOStep

TRANSPORTS = ("auto", "params", "replay")
PROBE = 3  # timed steps per transport in "auto"


def digest(params):
    return hashlib.blake2b(np.ascontiguousarray(params, np.float32).tobytes(),
                           digest_size=16).digest()


class _Replayed:
    """An actor's objective of a past step whose queries return the driver's record."""

    def __init__(self, objective, record):
        self.objective, self.record = objective, list(record)

    def __getattr__(self, name):  # loss, head_gradient, layout, n_params, ...
        return getattr(self.objective, name)

    def _next(self, method):
        if not self.record or self.record[0][0] != method:
            raise RuntimeError(f"replay out of step: {method} called, record holds "
                               f"{self.record[0][0] if self.record else 'nothing'}")
        return self.record.pop(0)[1]

    def __call__(self, P):
        return self._next("__call__")

    def segment_losses(self, *args):
        return self._next("segment_losses")

    def segment_losses_explicit(self, *args):
        return self._next("segment_losses_explicit")


class ReplicaObjectives(ModelObjectives):
    """The actor's factory in the replay transport: the step's objective (as
    ``ModelObjectives``) plus the replica of the parameters and the optimizer state,
    advanced by ``receive``."""

    def __init__(self, model, loss, estimator, zo_names, exact_head):
        super().__init__(model, loss)
        self.estimator, self.zo_names, self.exact_head = estimator, zo_names, exact_head
        self.params = self.state = self.optimizer = self.last = None

    def __getstate__(self):
        return dict(super().__getstate__(), params=None, state=None, optimizer=None, last=None)

    def __call__(self, X, y):
        objective, account = super().__call__(X, y)
        self.last = objective
        return objective, account

    def receive(self, kind, *args):
        """``("sync", params, state, optimizer)`` or ``("replay", seed, step, record,
        rule_state, digest)``; True when the replica then holds the driver's parameters."""
        if kind == "sync":
            self.params, self.state, self.optimizer = args
            return True
        seed, step, record, rule_state, expected = args
        if self.params is None or self.last is None:
            return False  # a new actor: it needs the parameters in full
        replayed = _Replayed(self.last, record)
        rule = ZOStep(self.model, self.estimator, self.zo_names, self.exact_head, self.loss,
                      make_objective=lambda X, y: replayed)
        rule.load_state(rule_state)
        out = rule(self.params, None, None, seed=seed, step=step)
        self.params, self.state = self.optimizer.update(out.grad, self.state, self.params)
        if replayed.record or digest(self.params) != expected:
            self.params = None
            return False
        return True


class ReplayedStep:
    """``rule`` (a ``ZOStep``) with its queries on ``pool`` (an actor pool of
    ``ReplicaObjectives``) in ``transport`` (see the module docstring).  Use the
    optimizer returned by ``wrap_optimizer``: its updates are what the actors replay."""

    def __init__(self, rule, pool, transport="auto"):
        if transport not in TRANSPORTS:
            raise ValueError(f"unknown transport {transport!r}; known: {', '.join(TRANSPORTS)}")
        self.rule, self.pool, self.transport = rule, pool, transport
        self.optimizer = None
        self.calls = 0
        self.replicating = False  # the actors hold (or are sent) ``committed``
        self.committed = None  # the parameters the driver's last update produced
        self.pending = None  # (seed, step, record) of the step in flight
        self.measured = {"params": [], "replay": []}  # step seconds, probe steps
        self.step_bytes = {"params": [], "replay": []}
        self.choice = None if transport == "auto" else transport

    def wrap_optimizer(self, optimizer):
        """``optimizer`` whose every update is also sent to the actors."""
        self.optimizer = optimizer

        def update(grad, state, params):
            params, state = optimizer.update(grad, state, params)
            self._commit(params, state)
            return params, state

        return Optimizer(optimizer.init, update)

    def __call__(self, params, X, y, *, seed, step):
        if self.optimizer is None:
            raise RuntimeError("ReplayedStep needs its optimizer: use wrap_optimizer()")
        t0, sent0 = time.perf_counter(), self.pool.bytes_sent
        replica = self.replicating and np.array_equal(params, self.committed)
        if self.replicating and not replica:  # changed outside the optimizer, or resumed
            self.replicating = False
        self.pool.step(X, y)
        record = []
        objective = RemoteObjective(ModelObjective(self.rule.model, X, y, self.rule.loss),
                                    self.pool, record=record, replica=replica)
        rule = replace(self.rule, make_objective=lambda X, y: objective)
        out = rule(params, X, y, seed=seed, step=step)
        self.pending = (seed, step, record)
        mode = "replay" if replica else "params"
        if self.transport == "auto" and self.calls in _probe_steps(mode):
            self.measured[mode].append(time.perf_counter() - t0)
        self.step_bytes[mode].append(self.pool.bytes_sent - sent0)
        self.calls += 1
        return out

    def _wants_replay(self):
        """Whether the next step runs replicated (decided after ``self.calls`` steps)."""
        if self.choice is None:
            if self.calls < PROBE + 1:
                return False
            if self.calls < 2 * PROBE + 2:
                return True
            self.choice = min(("params", "replay"),
                              key=lambda m: statistics.median(self.measured[m]))
        return self.choice == "replay"

    def _commit(self, params, state):
        self.committed = params
        if not self._wants_replay():
            self.replicating = False
            self.pool.set_replica(None, None)
            return
        if self.replicating and self.pending is not None:
            seed, step, record = self.pending
            message = ("replay", seed, step, record, self.rule.state(), digest(params))
        else:
            message = ("sync", params, state, self.optimizer)
        self.pending = None
        self.replicating = True
        self.pool.set_replica(message, ("sync", params, state, self.optimizer))

    def summary(self):
        """The transport used and, after ``auto``'s probe, the median step times."""
        out = {"transport": self.choice or self.transport}
        for mode in ("params", "replay"):
            if self.measured[mode]:
                out[f"{mode}_step_ms"] = round(1e3 * statistics.median(self.measured[mode]), 1)
        return out

    # the step rule's hooks (checkpointed state, the estimator's schedule)
    def state(self):
        return self.rule.state()

    def load_state(self, state):
        self.rule.load_state(state)

    def observe(self, epoch, val_loss):
        self.rule.observe(epoch, val_loss)


def _probe_steps(mode):
    return range(1, PROBE + 1) if mode == "params" else range(PROBE + 2, 2 * PROBE + 2)
