"""The hybrid ZO/local evaluator: block-local losses, exact local heads, forward backward-links.

A model ``[block_0, ..., block_{K-1}, output layer]`` is split into blocks of
consecutive layers.  Every block but the last gets an auxiliary linear
softmax head on its output; the last block's head is the model's output
layer.  One call of ``Evaluator.evaluate`` returns an update direction for
every parameter segment, tagged with how it was obtained:

* ``exact-head``: a head's exact cross-entropy gradient, from its own input
  and softmax (a local rule: nothing is differentiated through the network);
* ``zo:<estimator>`` (weight perturbation) or ``activity`` (activity
  perturbation): the block's own parameters, by the plan's strategy
  (``zotrain.zo.strategies``) against the block's local loss.

With a backward-link horizon ``m`` block k's loss is
``L_k + lam * sum_{j=1..m} L_{k+j}``: its perturbed output also runs forward
through the next m blocks and their heads (BackLink's limited error
propagation, with forward passes only).  ``m = 0`` is greedy local training;
one block spanning the whole body is global ZO.

Optional prototype targets (``proto > 0``, ``zotrain.zo.prototypes``) add a
feedback term with a closed-form gradient to every block's loss.  Blocks and
heads are ``zotrain.zo.blocks``; what each block ran is counted by a
``zotrain.zo.cost.CostAccount``.
"""

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from zotrain.nn.layers import Dense
from zotrain.zo.blocks import Blocks
from zotrain.zo.objective import ModelObjective
from zotrain.zo.prototypes import Prototypes
from zotrain.zo.strategies import STRATEGIES

MODES = tuple(STRATEGIES)


@dataclass(frozen=True)
class Plan:
    """How to train each block: ``blocks`` are ``(start, stop)`` layer ranges."""

    blocks: tuple
    mode: str = "activity"
    estimator: object = None  # weight mode
    link: int = 0
    lam: float = 1.0
    mu: float = 1e-3  # activity perturbation size
    proto: float = 0.0
    proto_momentum: float = 0.9
    heads: tuple = None  # auxiliary heads (Dense), one per block but the last; default built


class Evaluation(NamedTuple):
    grad: np.ndarray  # full trainable vector (model + auxiliary heads)
    how: dict  # segment name -> how its update was obtained
    block_losses: list  # local loss of each block's head (clean parameters)
    forward_passes: int
    counts: dict  # block and head forwards per block
    forward_equivalents: float = 0.0  # FLOPs run over one full forward (``Sequential.flops``)


def blocks_of(model):
    """One block per linear layer (with the activation after it), the output layer excluded."""
    lin = model.linear_index()[:-1]
    return tuple((i, lin[j + 1] if j + 1 < len(lin) else len(model.layers) - 1)
                 for j, i in enumerate(lin))


def whole_body(model):
    """One block spanning every layer but the output layer: global ZO."""
    return ((0, len(model.layers) - 1),)


class Evaluator:
    def __init__(self, model, plan, n_classes):
        self.model, self.plan, self.n_classes = model, plan, n_classes
        _validate(model, plan)
        self.blocks = Blocks(model, plan.blocks, n_classes, plan.heads)
        self.layout, self.n_params = self.blocks.layout, self.blocks.layout.n_params
        self.prototypes = (Prototypes(plan.proto, plan.proto_momentum, n_classes)
                           if plan.proto > 0 else None)
        self.strategy = STRATEGIES[plan.mode](self.blocks, plan, self.prototypes)

    def init(self, seed):
        """Model parameters followed by the auxiliary heads' parameters."""
        return self.blocks.init(seed)

    def evaluate(self, params, X, labels, *, seed, step):
        params, X, labels = _inputs(params, X, labels)
        blocks = self.blocks
        grad = np.zeros(self.n_params, np.float32)
        how, passes, counts = {}, 0, []
        outs, cache = blocks.clean_forward(params, X)
        flops = sum(b.flops() for b in blocks.bodies) + sum(h.flops() for h, _ in blocks.heads)
        block_losses = []
        for k in range(len(blocks)):  # each costs about one forward of its head
            loss, f = self._head(params, k, outs, labels, grad, how)
            block_losses.append(loss)
            flops += f
        if self.prototypes is not None:
            self.prototypes.update(outs, labels)
        elif self.strategy.tag == "activity":
            outs[-1] = None  # the last block's output fed the heads only: free it
        for k in range(len(blocks)):
            n, account = self._body(params, k, outs, cache, labels, seed, step, grad, how)
            passes += n
            counts.append(account.counts())
            flops += account.flops
        return Evaluation(grad, how, block_losses, passes, {"per_block": counts},
                          flops / self.model.flops())

    def evaluate_block(self, params, k, X, labels, *, seed, step):
        """Block k's update alone, from its own input ``X`` (what the block below output,
        possibly for an earlier minibatch): ``(grad, loss, forward passes, forward
        equivalents, output)`` with ``grad`` zero outside block k's body and head and
        ``output`` the block's clean output (the next block's input).  What
        block-parallel training runs on each worker; no prototypes."""
        if self.prototypes is not None:
            raise ValueError("evaluate_block does not support prototype targets")
        params, X, labels = _inputs(params, X, labels)
        grad, how = np.zeros(self.n_params, np.float32), {}
        outs, cache = self.blocks.clean_forward(params, X, start=k)
        flops = sum(b.flops() for b in self.blocks.bodies[k:]) + self.blocks.heads[k][0].flops()
        loss, f = self._head(params, k, outs, labels, grad, how)
        n, account = self._body(params, k, outs, cache, labels, seed, step, grad, how)
        return grad, loss, n, (flops + f + account.flops) / self.model.flops(), outs[k + 1]

    def _head(self, params, k, outs, labels, grad, how):
        """Block k's head: its exact gradient into ``grad``; ``(loss, FLOPs)``."""
        blocks = self.blocks
        head, _ = blocks.heads[k]
        g, _, loss = ModelObjective(head, outs[k + 1], labels).head_gradient(
            blocks.head_params(params, k))
        for name, s in blocks.head_segments(k).items():
            grad[s.slice] = g[head.layout[f"0.{s.local}"].slice]
            how[name] = "exact-head"
        return loss, head.flops()

    def _body(self, params, k, outs, cache, labels, seed, step, grad, how):
        """Block k's own parameters by the strategy, into ``grad``; ``(passes, account)``."""
        g, n, account = self.strategy(params, k, outs, cache, labels, seed=seed, step=step)
        for name, (s, value) in self.blocks.model_segments(k, g).items():
            grad[s.slice] = np.asarray(value).ravel()
            how[name] = self.strategy.tag
        return n, account

    def state(self):
        return {"prototypes": self.prototypes.state() if self.prototypes else []}

    def load_state(self, state):
        if state.get("prototypes") and self.prototypes is not None:
            self.prototypes.load_state(state["prototypes"])


def _inputs(params, X, labels):
    return (np.asarray(params, np.float32), np.ascontiguousarray(X, np.float32),
            np.asarray(labels, np.int64))


def _validate(model, plan):
    p, n = plan, len(model.layers)
    if p.mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {p.mode!r}")
    if isinstance(p.link, bool) or not isinstance(p.link, int) or p.link < 0:
        raise ValueError(f"link (m) must be an integer >= 0, got {p.link!r}")
    if not p.lam >= 0:
        raise ValueError(f"lam (lambda) must be >= 0, got {p.lam!r}")
    if not isinstance(model.layers[-1], Dense):
        raise ValueError(f"the model must end in a Dense output layer, got {model.layers[-1]!r}")
    prev = 0
    for a, b in p.blocks:
        if not (0 <= a < b <= n - 1):
            raise ValueError(f"block ({a}, {b}) lies outside the model's body: layers 0..{n - 1} "
                             f"with the output layer {n - 1} excluded")
        if a < prev:
            raise ValueError(f"block ({a}, {b}) overlaps the block before it (which ends at {prev})")
        if not any(model.layers[i].in_features is not None for i in range(a, b)):
            raise ValueError(f"block ({a}, {b}) holds no Dense or TTLinear layer")
        prev = b
    if not p.blocks or p.blocks[-1][1] != n - 1 or p.blocks[0][0] != 0 or any(
            p.blocks[j][1] != p.blocks[j + 1][0] for j in range(len(p.blocks) - 1)):
        raise ValueError(f"blocks {p.blocks} must cover layers 0..{n - 2} without gaps")
    if p.heads is not None and len(p.heads) != len(p.blocks) - 1:
        raise ValueError(f"heads must hold one Dense head per block but the last "
                         f"({len(p.blocks) - 1}), got {len(p.heads)}")
    STRATEGIES[p.mode].check(model, p)
