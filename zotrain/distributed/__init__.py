"""Zeroth-order queries on a Ray cluster (``pip install "zotrain[distributed]"``).

A step's queries are independent forward passes: ``QueryPool`` keeps Ray actors
that hold the model, receive each step's minibatch once through Ray's object
store, and evaluate ranges of queries from the parameters and the query
counters (directions are regenerated from (seed, step, query) on the actor).
``RemoteObjective`` presents them to any registered estimator as an ordinary
objective, so a distributed step is bit-identical to the single-process one.

    pool = QueryPool(ModelObjectives(model), workers=2)   # a local Ray instance, 2 actors
    step = ZOStep(model, est, names, make_objective=pool_objectives(pool, model))

``zotrain.distributed.replay`` sends seeds and scalars instead of the parameters:
each actor keeps a replica and replays every update (``--transport replay``).

The package imports Ray only when a pool starts; without Ray,
``QueryPool`` raises an error telling how to install it.
"""

from zotrain.distributed.objective import RemoteObjective
from zotrain.distributed.pool import QueryPool, import_ray
from zotrain.zo.cost import CostAccount
from zotrain.zo.objective import ModelObjective


class _ShipsModel:
    """Sent to an actor as the model's spec (``Sequential.spec``), rebuilt there."""

    def __getstate__(self):
        return dict(self.__dict__, model=self.model.spec())

    def __setstate__(self, state):
        from zotrain.nn.sequential import Sequential

        self.__dict__.update(state, model=Sequential.from_spec(state["model"]))


class ModelObjectives(_ShipsModel):
    """Factory of a model's objective on one minibatch (what a ``ZOStep`` queries)."""

    def __init__(self, model, loss="xent"):
        self.model, self.loss = model, loss

    def __call__(self, X, y):
        return ModelObjective(self.model, X, y, self.loss), None


class EvaluatorFactory(_ShipsModel):
    """A factory that builds the driver's evaluator (same model, plan, classes) once, on
    the actor that unpickles it."""

    def __init__(self, model, plan, n_classes):
        self.model, self.plan, self.n_classes = model, plan, n_classes
        self._evaluator = None

    def __getstate__(self):
        return dict(super().__getstate__(), _evaluator=None)

    def evaluator(self):
        if self._evaluator is None:
            from zotrain.zo.evaluator import Evaluator

            self._evaluator = Evaluator(self.model, self.plan, self.n_classes)
        return self._evaluator


class BlockObjectives(EvaluatorFactory):
    """Factory of block k's local objective in the evaluator's weight mode: per block
    query, the block's objective with its local loss (head, linked blocks, prototypes as
    of this step)."""

    def __call__(self, params, k, X, labels, prototypes):
        ev = self.evaluator()
        if ev.prototypes is not None:
            ev.prototypes.means = prototypes
        account = CostAccount()
        return ev.strategy.objective(params, k, X, labels, account), account


def pool_objectives(pool, model, loss="xent"):
    """``make_objective(X, y)`` for ``ZOStep``: the driver's objective with its queries on
    ``pool`` (started with ``ModelObjectives(model, loss)``)."""

    def make(X, y):
        pool.step(X, y)
        return RemoteObjective(ModelObjective(model, X, y, loss), pool)

    return make


__all__ = ["BlockObjectives", "EvaluatorFactory", "ModelObjectives", "QueryPool", "RemoteObjective", "import_ray",
           "pool_objectives"]
