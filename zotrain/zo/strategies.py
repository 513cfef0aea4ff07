"""How one block's own parameters get their update: the evaluator's two strategies.

* ``WeightStrategy``: any registered estimator against the block's local loss,
  evaluated from the block's cached clean input, so a query costs one block and
  one head forward (plus the linked blocks).
* ``ActivityStrategy``: coordinate-wise perturbation of the block's
  pre-activations (one estimate per example, exact up to O(mu^2), every query
  evaluated incrementally by ``zotrain.kernels.activity``), turned into the
  layer's update by its own input (``zotrain.zo.local_rule``).

A strategy is called with the clean parameters, the block index, the clean
block outputs and linear-layer cache (``Blocks.clean_forward``), the labels and
the counters; it returns ``({body segment name: update}, forward passes,
CostAccount)``.  Block k's local loss is ``L_k + lam * sum_{j=1..link} L_{k+j}``
(plus the prototype term).
"""

import numpy as np

from zotrain.kernels import elementwise
from zotrain.kernels.activity import activity_cge_head, activity_cge_link, activity_cge_link_relu
from zotrain.kernels.losses import XENT
from zotrain.zo.cost import CostAccount
from zotrain.zo.local_rule import layer_gradient
from zotrain.zo.objective import ModelObjective


class WeightStrategy:
    def __init__(self, blocks, plan, prototypes):
        self.blocks, self.plan, self.prototypes = blocks, plan, prototypes
        self.tag = f"zo:{type(plan.estimator).__name__.lower()}"
        self.pool = None  # a zotrain.distributed.QueryPool of BlockObjectives, if any

    @staticmethod
    def check(model, plan):
        if plan.estimator is None:
            raise ValueError("weight mode needs an estimator")

    def objective(self, params, k, X, labels, account):
        """Block k's objective on its input ``X``: its local loss as the tail."""
        return ModelObjective(self.blocks.bodies[k], X, labels,
                              tail=self._tail(params, k, labels, account))

    def __call__(self, params, k, outs, cache, labels, *, seed, step):
        account = CostAccount()
        body = self.blocks.bodies[k]
        obj = self.objective(params, k, outs[k], labels, account)
        bp = self.blocks.body_params(params, k)
        lin = body.linear_index()  # the evaluator's clean forward is the objective's own
        obj.prime(bp, {i: cache[(k, i)][0][None] for i in lin},
                  {i: cache[(k, i)][1][None] for i in lin}, outs[k + 1][None])
        if self.pool is not None:
            self.pool.step(params, k, outs[k], labels,
                           list(self.prototypes.means) if self.prototypes else None)
            obj = self.pool.remote(obj, account)
        est = self.plan.estimator.estimate(obj, bp, body.layout.names, seed=seed, step=step)
        account.block_forwards += obj.forward_passes
        account.flops += obj.flops
        return {s.name: est.grad[s.slice] for s in body.layout}, est.forward_passes, account

    def _tail(self, params, k, labels, account):
        """Block k's local loss from its outputs ``H`` ``(Q, B, F)``: its head, plus lam
        times the heads of the next ``link`` blocks, ``H`` run forward through them."""
        blocks, targets = self.blocks, np.zeros((1, 1))
        last = len(blocks) - 1

        def head_loss(j, H):
            head, _ = blocks.heads[j]
            P = np.tile(blocks.head_params(params, j), (H.shape[0], 1))
            account.heads(H.shape[0], head)
            return head.loss_from(P, H, 0, labels, targets, XENT)

        def tail(H):
            total = head_loss(k, H)
            if self.prototypes is not None:
                total = total + self.prototypes.loss(k, H, labels)
            for j in range(k + 1, min(k + self.plan.link, last) + 1):
                body = blocks.bodies[j]
                P = np.tile(blocks.body_params(params, j), (H.shape[0], 1))
                H = body.forward_from(P, H, 0, len(body.layers), fresh_last=True)
                account.blocks(H.shape[0], body)
                total = total + self.plan.lam * head_loss(j, H)
            return total

        return tail


class ActivityStrategy:
    tag = "activity"

    def __init__(self, blocks, plan, prototypes):
        self.blocks, self.plan, self.prototypes = blocks, plan, prototypes

    @staticmethod
    def check(model, plan):
        for a, b in plan.blocks:
            lin = [i for i in range(a, b) if model.layers[i].in_features is not None]
            if len(lin) != 1:
                raise ValueError(f"activity mode needs one linear layer per block; block "
                                 f"({a}, {b}) has {len(lin)}")
        if plan.link > 1:
            raise ValueError(f"activity mode supports link m <= 1, got {plan.link}")

    def __call__(self, params, k, outs, cache, labels, *, seed, step):
        blocks, p = self.blocks, self.plan
        body = blocks.bodies[k]
        i = body.linear_index()[0]
        Xin, Z = cache.pop((k, i))  # Z is dropped once D is formed (see below)
        act = body.activation_scalar(i)
        B, F = Z.shape
        Wh, bh = blocks.head_dense(params, k)
        D, _ = activity_cge_head(Z, act, Wh, bh, labels, p.mu, 1.0 / B)
        # counted as if each query ran the whole head (and linked block): an upper bound,
        # the kernels evaluate each one-unit change incrementally
        account = CostAccount()
        account.heads(2 * F, blocks.heads[k][0])
        if p.link >= 1 and k + 1 < len(blocks):
            D += p.lam * self._link(params, k, Z, act, cache, labels)
            account.blocks(2 * F, blocks.bodies[k + 1])
            account.heads(2 * F, blocks.heads[k + 1][0])
        if self.prototypes is not None:
            D += self.prototypes.activity_grad(k, Z, act, outs[k + 1], labels, p.mu)
        del Z  # the local rule needs the layer's input and D only: one activation-sized
        # array less held while it runs
        g = layer_gradient(body, i, blocks.body_params(params, k), Xin, D)
        account.flops += body.flops(i, i + 1)  # X^T D: one product of the layer's size
        return g, 2 * F, account

    def _link(self, params, k, Z, act, cache, labels):
        """dL_{k+1}/dZ of block k's pre-activations, through the next block's layer."""
        blocks, p = self.blocks, self.plan
        nb = blocks.bodies[k + 1]
        j = nb.linear_index()[0]
        Wn = blocks.dense_weight(params, k + 1, j)
        Wh2, bh2 = blocks.head_dense(params, k + 1)
        Zn = cache[(k + 1, j)][1]
        act_n = nb.activation_scalar(j)
        scale = 1.0 / Z.shape[0]
        if act_n is elementwise.RELU:
            V = np.matmul(Wn, (Zn > 0)[:, :, None] * Wh2[None])
            return activity_cge_link_relu(Z, act, Wn, Zn, V, Wh2, bh2, labels, p.mu, scale)
        return activity_cge_link(Z, act, Wn, Zn, act_n, Wh2, bh2, labels, p.mu, scale)


STRATEGIES = {"activity": ActivityStrategy, "weight": WeightStrategy}
