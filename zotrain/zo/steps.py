"""Step rules: parameters and a minibatch in, an update direction out (``base.StepRule``).

* ``ZOStep``: a registered estimator over chosen segments (the whole body)
  and the exact local gradient of the output layer.
* ``EvaluatorStep``: the hybrid ZO/local evaluator (``zotrain.zo.evaluator``).
"""

from dataclasses import dataclass

from zotrain.base import Cost, StepResult
from zotrain.zo.objective import ModelObjective


@dataclass
class ZOStep:
    """Zeroth-order estimate for ``zo_names``, exact local gradient for the head."""

    model: object
    estimator: object
    zo_names: list
    exact_head: bool = True
    loss: str = "xent"
    make_objective: object = None  # (X, y) -> objective; default a ModelObjective (Numba)

    def __call__(self, params, X, y, *, seed, step):
        objective = (self.make_objective(X, y) if self.make_objective is not None
                     else ModelObjective(self.model, X, y, self.loss))
        est = self.estimator.estimate(objective, params, self.zo_names, seed=seed, step=step)
        grad = est.grad
        if self.exact_head:
            head, names, _ = objective.head_gradient(params)
            for name in names:
                s = objective.layout[name].slice
                grad[s] = head[s]
        if objective.flops is None:  # a runtime that reports no FLOPs: passes
            equivalents = objective.forward_passes
        else:  # the exact head gradient costs about one forward of the head
            head = self.model.flops(len(self.model.layers) - 1) if self.exact_head else 0.0
            equivalents = (objective.flops + head) / self.model.flops()
        return StepResult(grad, est.loss, Cost(objective.forward_passes, equivalents))

    def state(self):
        return self.estimator.state()

    def load_state(self, state):
        self.estimator.load_state(state)

    def observe(self, epoch, val_loss):
        self.estimator.observe(epoch, val_loss)


@dataclass
class EvaluatorStep:
    """The hybrid ZO/local evaluator's update; the loss reported is the last block's
    (the model's own)."""

    evaluator: object

    def __call__(self, params, X, y, *, seed, step):
        ev = self.evaluator.evaluate(params, X, y, seed=seed, step=step)
        return StepResult(ev.grad, ev.block_losses[-1],
                          Cost(ev.forward_passes, ev.forward_equivalents))

    def state(self):
        return self.evaluator.state()

    def load_state(self, state):
        if state:
            self.evaluator.load_state(state)

    def observe(self, epoch, val_loss):
        pass
