"""Block-parallel local training: each block of the local evaluator on its own Ray actor.

With block-local losses a block's update needs only its own input, not the
blocks above it (and, with a link horizon m, the next m blocks' forward), so
the blocks can update at the same time on different workers, each on the
features the block below produced **one step earlier** (a pipeline): at step t
block 0 trains on minibatch t, block k on minibatch t - k, its input computed
by block k-1 at step t-1 with that step's parameters.  The first K-1 steps fill
the pipeline (block k starts at step k).  The parameters stay on the driver,
updated by its optimizer as in the sequential schedule; each step sends them
to every actor once.  The staleness is exactly this schedule:
``BlockParallelStep.reference`` runs it in one process, and a distributed run
equals it to the bit (tested).  The pipeline's in-flight features are not
checkpointed: a resumed run refills it.
"""

import math

import numpy as np

from zotrain.base import Cost, StepResult
from zotrain.distributed import EvaluatorFactory
from zotrain.zo.steps import EvaluatorStep


class BlockEvaluators(EvaluatorFactory):
    """Factory of the block worker on an actor: the evaluator bound to a step's
    parameters."""

    def __call__(self, params):
        return _Bound(self.evaluator(), params), None


class _Bound:
    def __init__(self, evaluator, params):
        self.evaluator, self.params = evaluator, params

    def block(self, k, X, labels, seed, step):
        return self.evaluator.evaluate_block(self.params, k, X, labels, seed=seed, step=step)


class BlockParallelStep(EvaluatorStep):
    """The step rule of block-parallel training (see the module docstring); ``pool`` is
    None to run the same schedule in this process (the reference).  State, hooks and
    checkpointed state are the evaluator's (``EvaluatorStep``)."""

    def __init__(self, evaluator, pool=None):
        if evaluator.prototypes is not None:
            raise ValueError("block-parallel training does not support prototype targets "
                             "(--proto): their class means are shared by every block")
        self.evaluator, self.pool = evaluator, pool
        self.inputs = [None] * len(evaluator.blocks)  # (features, labels) waiting per block

    def __call__(self, params, X, y, *, seed, step):
        self.inputs[0] = (np.asarray(X, np.float32), np.asarray(y))
        work = [(k, *self.inputs[k]) for k in range(len(self.inputs)) if self.inputs[k] is not None]
        if self.pool is not None:
            self.pool.step(np.asarray(params, np.float32))
            results = self.pool.call_each("block", [(k, Xk, yk, seed, step)
                                                    for k, Xk, yk in work])
        else:
            results = [self.evaluator.evaluate_block(params, k, Xk, yk, seed=seed, step=step)
                       for k, Xk, yk in work]
        grad = np.zeros(self.evaluator.n_params, np.float32)
        passes, equivalents, loss = 0, 0.0, math.nan
        nxt = [None] * len(self.inputs)
        for (k, _, yk), (g, loss_k, n, eq, out) in zip(work, results):
            grad += g  # the blocks' segments do not overlap
            passes += n
            equivalents += eq
            loss = loss_k  # the deepest block that ran
            if k + 1 < len(nxt):
                nxt[k + 1] = (out, yk)
        self.inputs = nxt
        return StepResult(grad, float(loss), Cost(passes, equivalents))
