"""The contracts of zotrain, declared once (in the style of optax's ``base.py``).

Everything that trains goes through these; a user's own layer, estimator or
task satisfies the same Protocol as the built-in ones and flows through the
same code.  Implementations live in ``zotrain.nn`` (layers, networks),
``zotrain.zo`` (objectives, estimators, step rules), ``zotrain.recipes`` and
``zotrain.pinn.train`` (tasks); ``zotrain.engine`` runs a task.
"""

from typing import Any, Callable, Iterable, NamedTuple, Optional, Protocol, runtime_checkable

import numpy as np


class ZotrainError(ValueError):
    """Base class of the package's own errors: bad input named with what was expected."""


class Cost(NamedTuple):
    """What a step spent: forward passes (queries, however partial) and forward-pass
    equivalents (the FLOPs of the layers they ran over those of one full forward)."""

    passes: float
    equivalents: float

    def __add__(self, other):
        return Cost(self.passes + other.passes, self.equivalents + other.equivalents)


NO_COST = Cost(0, 0.0)


class Estimate(NamedTuple):
    grad: np.ndarray  # float32, full parameter size, zero outside the estimated segments
    loss: float  # loss at the clean parameters
    forward_passes: int  # perturbed or clean models evaluated


@runtime_checkable
class Layer(Protocol):
    """Declares named parameter segments and evaluates many parameter sets at once.

    ``forward_many(H, P, offsets, act, scratch)``: ``H`` ``(1 or Q, B, in)``, ``P``
    ``(Q, n_params)``, ``offsets`` the layer's segment offsets in a row of ``P``;
    linear layers fuse the activation ``act`` that follows them."""

    in_features: Optional[int]
    out_features: Optional[int]

    def param_shapes(self) -> list: ...

    def init_params(self, rng) -> list: ...

    def forward_many(self, H, P, offsets, act=None, scratch=None) -> np.ndarray: ...

    def spec(self) -> dict: ...


@runtime_checkable
class Network(Protocol):
    """What a loss needs of a model: outputs of Q parameter sets, and the features
    entering the output layer (``Sequential``, or an onnxruntime session)."""

    def apply_many(self, P, X) -> np.ndarray: ...

    def features(self, params, X) -> np.ndarray: ...


@runtime_checkable
class Objective(Protocol):
    """A loss of many parameter sets on one minibatch: what estimators query.

    ``segment_losses`` perturbs one segment by counter-based directions
    (``zotrain.kernels.random``), ``segment_losses_explicit`` by given ones;
    both let an objective reuse the clean forward (feature reuse)."""

    forward_passes: int

    @property
    def n_params(self) -> int: ...

    @property
    def layout(self): ...

    def __call__(self, P) -> np.ndarray: ...

    def loss(self, params) -> float: ...

    def segment_losses(self, params, name, seed, step, queries, scales, dist) -> np.ndarray: ...

    def segment_losses_explicit(self, params, name, U, which, scales) -> np.ndarray: ...


@runtime_checkable
class Estimator(Protocol):
    """Maps an objective to a gradient estimate over the named segments.

    ``update_rule`` names the optimizer its estimate is meant for (``"adam"``
    for unbiased gradient estimates, ``"sign"`` for sign-coded steps); the
    hooks let schedules change with training and survive a checkpoint."""

    update_rule: str

    def estimate(self, objective, params, names, *, seed, step) -> Estimate: ...

    def observe(self, epoch, val_loss) -> None: ...

    def state(self) -> Any: ...

    def load_state(self, state) -> None: ...


class StepResult(NamedTuple):
    """A step's update: ``grad`` for the optimizer; optionally ``assign`` ``(indices,
    values)``, parameters the step solved for itself (set after the optimizer's update),
    and ``commit(params)``, the step's own state change, which the engine calls once the
    step's parameters are final (after the task's ``after_step`` hook)."""

    grad: np.ndarray
    loss: float
    cost: Cost
    assign: Optional[tuple] = None
    commit: Optional[Callable] = None


@runtime_checkable
class StepRule(Protocol):
    """Turns parameters and a minibatch into an update direction (``StepResult``)."""

    def __call__(self, params, X, y, *, seed, step) -> StepResult: ...

    def state(self) -> Any: ...

    def load_state(self, state) -> None: ...

    def observe(self, epoch, val_loss) -> None: ...


@runtime_checkable
class Task(Protocol):
    """What ``zotrain.engine.Engine`` trains: classification and PINNs are tasks.

    The engine owns the loop, the optimizer update, budgets, checkpoints,
    resume, the divergence stop, interrupts and callbacks; a task owns the
    mathematics: its batches, its step and its evaluation.  These are what every task
    has; ``TaskHooks`` lists what a task may add."""

    n_params: int

    def init(self, seed) -> np.ndarray: ...

    def batches(self, epoch, seed) -> Iterable: ...

    def step(self, params, batch, *, seed, step) -> StepResult: ...

    def evaluate(self, params) -> dict: ...

    def summary(self, params, records) -> dict: ...


class TaskHooks(Protocol):
    """Optional: a task defines those it needs, the engine does nothing for the others.

    ``on_start``/``after_step`` return ``(params, Cost)`` (the PINN's head solve);
    ``observe`` sees each evaluation record; ``state``/``load_state`` go into the
    checkpoint; ``save_model`` and ``plot`` write the run's files;
    ``evaluations_after_stop`` (default 1) is how many evaluations the task runs after
    a time limit stops it, which the limit keeps time for; ``hook_due(step)`` (default
    False) whether ``after_step`` does its work at ``step`` when it is not the last, which
    the limit keeps time for beside the last one's."""

    evaluations_after_stop: int

    def hook_due(self, step) -> bool: ...

    def on_start(self, params) -> tuple: ...

    def after_step(self, params, *, step, last) -> tuple: ...

    def observe(self, epoch, record) -> None: ...

    def state(self) -> Any: ...

    def load_state(self, state) -> None: ...

    def save_model(self, path, params) -> None: ...

    def plot(self, path, params, records) -> None: ...


def require(obj, protocol, what):
    """``obj``, refused (``ZotrainError``) unless it has every member of ``protocol``: the
    message names ``what`` and the members missing."""
    members = [m for m in dir(protocol) if not m.startswith("_")]
    members += [m for m in getattr(protocol, "__annotations__", {}) if m not in members]
    missing = sorted(m for m in members if not hasattr(obj, m))
    if missing:
        raise ZotrainError(f"{what} ({type(obj).__name__}) lacks {', '.join(missing)} "
                           f"(zotrain.base.{protocol.__name__})")
    return obj
