"""How a PINN's body is trained: one strategy object per way, owning its options, their
checks and its state (the optax and evosax way).

* ``RGE()``: every body layer by zeroth-order RGE steps (``PinnConfig.queries``, ``mu``);
* ``Local()``: the last hidden layer by the local rule with the exact head-side
  sensitivity (``solvers.hidden_layer_gradient``), RGE below it;
* ``GaussNewton(window=4, check_points=None, boundary_steps=0)``: the last hidden layer
  and the head by one Levenberg-Marquardt step per iteration on the rows of the last
  ``window`` batches (``solvers.lm_step``, its damping adapted and checkpointed), judged at
  ``check_points`` fresh points; the first ``boundary_steps`` fit the unsmoothed network to
  the boundary data alone; RGE below;
* ``Frozen()``: the random features stay (the baseline).

``get(name, **options)`` builds one by its ``--body`` name; an option of another body is
refused with the name of the body that has it.  A body's ``update`` returns the step's
``BodyUpdate``: a gradient to add, the loss it computed, parameters it solved for and its
state change, which the engine applies through ``StepResult``.
"""

from dataclasses import dataclass, field, fields
from typing import Callable, NamedTuple, Optional

import numpy as np

from zotrain.base import ZotrainError
from zotrain.options import option

from . import solvers
from .lm_window import JacobianWindow

WINDOW = 4  # the gauss-newton body's default window
CHECK_POINTS = 1024  # at most this many check points by default (five forwards of each)


class BodyUpdate(NamedTuple):
    grad: Optional[np.ndarray] = None  # added to the RGE step's gradient
    loss: Optional[float] = None
    assign: Optional[tuple] = None  # (indices, values) solved for by the body
    commit: Optional[Callable] = None  # the body's state change, given the final params


@dataclass
class RGE:
    name = "zo"
    trains_last_hidden = False
    frozen = False

    def check(self, config, problem):
        pass

    def start(self, task):
        pass

    def update(self, task, params, x, xb, it):
        return BodyUpdate()

    def fits_boundary(self, it):
        """Whether iteration ``it``'s step and head solve fit the boundary data alone."""
        return False

    def state(self):
        return None

    def load_state(self, task, state):
        pass


@dataclass
class Frozen(RGE):
    name = "frozen"
    frozen = True


@dataclass
class Local(RGE):
    name = "local"
    trains_last_hidden = True

    def check(self, config, problem):
        if config.backend != "numba":
            raise ZotrainError(f"body {self.name!r} needs the numba backend (it reads the "
                               "layer's input and pre-activations); on onnxruntime, train "
                               "the body with --body zo (RGE) or keep it with --body frozen")

    def update(self, task, params, x, xb, it):
        loss, grad = solvers.hidden_layer_gradient(task.loss, params, x, xb)
        return BodyUpdate(grad=grad, loss=loss)


@dataclass
class GaussNewton(Local):
    window: Optional[int] = option(
        None, "solve each step on the rows of this many latest batches (1: the batch alone; "
        "see zotrain.pinn.lm_window)", "body gauss-newton", default_help=f"default {WINDOW}")
    check_points: Optional[int] = option(
        None, "fresh points judging each step's candidates", "body gauss-newton",
        default_help=f"default: the batch's points, at most {CHECK_POINTS}")
    boundary_steps: int = option(0, "the first N steps fit the unsmoothed network to the "
                                 "boundary data alone, the PDE's steps follow",
                                 "body gauss-newton")
    name = "gauss-newton"
    damping: float = field(default=1e-3, init=False, repr=False, compare=False)

    @property
    def window_size(self):
        return WINDOW if self.window is None else self.window

    def check_size(self, points):
        return min(points, CHECK_POINTS) if self.check_points is None else self.check_points

    def check(self, config, problem):
        super().check(config, problem)
        if config.head != "gauss-newton":
            raise ZotrainError("body 'gauss-newton' solves the head with the last hidden "
                               f"layer; it needs head 'gauss-newton', not {config.head!r}")
        for name in ("window", "check_points"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise ZotrainError(f"{name} must be an integer >= 1, got {v!r}")
        b = self.boundary_steps
        if isinstance(b, bool) or not isinstance(b, int) or b < 0:
            raise ZotrainError(f"boundary_steps must be an integer >= 0, got {b!r}")
        if b and problem.boundary is None:
            raise ZotrainError(f"boundary_steps {b}: problem {problem.name!r} has no boundary "
                               "data to fit")

    def __getstate__(self):  # the options only: a config sent to Ray actors carries no state
        return {name: getattr(self, name) for name in options_of(type(self))}

    def __setstate__(self, state):
        self.__init__(**state)

    def start(self, task):
        """The state of a run: the damping, the window of rows, the boundary steps' loss."""
        self.damping = 1e-3
        self.columns = solvers.body_columns(task.loss)
        self.rows = JacobianWindow(self.window_size, self.columns)
        self.fit = task.make_fit() if self.boundary_steps else None

    def update(self, task, params, x, xb, it):
        n = self.check_size(len(x))
        c = task.c
        check = (task.problem.sample(n, [c.seed, it, 2]), task.boundary_points(n, [c.seed, it, 2]))
        if self.fits_boundary(it):  # the boundary data alone, outside the window
            r, J = solvers.body_jacobian(self.fit, params, x[:0], xb)
            new, damping = solvers.lm_step(self.fit, params, r, J, (x[:0], check[1]),
                                           self.damping)
            kept = None
        else:
            r, J = solvers.body_jacobian(task.loss, params, x, xb)
            new, damping = solvers.lm_step(task.loss, params, *self.rows.rows(r, J), check,
                                           self.damping)
            kept = (it, params, r, J)

        def commit(final):  # once the step's parameters are final (after the head solve)
            self.damping = damping
            if kept is not None:
                self.rows.add(*kept, final)

        return BodyUpdate(loss=float(r @ r), assign=(self.columns, new[self.columns]),
                          commit=commit)

    def fits_boundary(self, it):
        """Whether iteration ``it``'s step and head solve fit the boundary data alone."""
        return self.fit is not None and it <= self.boundary_steps

    def state(self):
        return {"damping": self.damping, "window": self.rows.state()}

    def load_state(self, task, state):
        if state and "damping" in state:
            self.damping = float(state["damping"])
        if state and state.get("window"):
            def jacobian(it, params):
                return solvers.body_jacobian(task.loss, params, *task.batch(it)[1:])[1]

            self.rows.load(state["window"], jacobian)


BODIES = {cls.name: cls for cls in (RGE, Local, GaussNewton, Frozen)}


def options_of(cls):
    return [f.name for f in fields(cls) if f.init]


def get(name, **options):
    """The body named ``name`` (``--body``) with ``options``; one it does not take is refused
    naming the body that does."""
    if name not in BODIES:
        raise ZotrainError(f"unknown body training {name!r}; known: {', '.join(BODIES)}")
    cls = BODIES[name]
    for key in options:
        if key not in options_of(cls):
            owners = [b for b, c in BODIES.items() if key in options_of(c)]
            raise ZotrainError(f"{key} is an option of body {' or '.join(map(repr, owners))}, "
                               f"not of body {name!r}")
    return cls(**options)
