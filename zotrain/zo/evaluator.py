"""The hybrid ZO/local evaluator: block-local losses, exact local heads, forward backward-links.

A model ``[block_0, ..., block_{K-1}, output layer]`` is split into blocks of
consecutive layers.  Every block but the last gets an auxiliary linear
softmax head on its output; the last block's head is the model's output
layer.  One call of ``Evaluator.evaluate`` returns an update direction for
every parameter segment, tagged with how it was obtained:

* ``exact-head``: a head's exact cross-entropy gradient, from its own input
  and softmax (a local rule: nothing is differentiated through the network);
* ``zo:<estimator>`` (weight perturbation): any registered estimator against
  the block's local loss, evaluated from the block's cached clean input, so a
  query costs one block and one head forward (plus the linked blocks);
* ``activity``: coordinate-wise perturbation of the block's pre-activations
  (one estimate per example, exact up to O(mu^2), every query evaluated
  incrementally) turned into the layer's update by its own input
  (``zotrain.zo.local_rule``).

With a backward-link horizon ``m`` block k's loss is
``L_k + lam * sum_{j=1..m} L_{k+j}``: its perturbed output also runs forward
through the next m blocks and their heads (BackLink's limited error
propagation, with forward passes only).  ``m = 0`` is greedy local training;
one block spanning the whole body is global ZO.

Optional prototype targets (``proto > 0``) add ``proto/2 * |n(h_b) - p_{y_b}|^2``
to block k's loss, where ``n`` normalises a block output to unit length and
``p_c`` is a running mean of the normalised features of class c at the next
block's output (at the block's own output for the last block): a feedback
target with a closed-form gradient in ``h``, no backward path.
"""

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from zotrain.kernels import elementwise
from zotrain.kernels.activity import activity_cge_head, activity_cge_link, activity_cge_link_relu
from zotrain.kernels.losses import XENT
from zotrain.nn.layers import Dense, TTLinear
from zotrain.zo.local_rule import layer_gradient
from zotrain.nn.sequential import Layout, Segment, Sequential
from zotrain.zo.objective import ModelObjective
from zotrain.nn.tt import tt_matrix_to_dense

MODES = ("activity", "weight")


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
        self._validate()
        self.bodies = [Sequential(model.layers[a:b]) for a, b in plan.blocks]
        self.body_offsets = [min(s.offset for s in model.layout if a <= s.layer < b)
                             for a, b in plan.blocks]
        segs, off = list(model.layout), model.n_params
        self.heads = []
        for k, body in enumerate(self.bodies[:-1]):
            head = Sequential([plan.heads[k] if plan.heads else Dense(body.out_features, n_classes)])
            if head.in_features != body.out_features or head.out_features != n_classes:
                raise ValueError(f"the head of block {k} maps {head.in_features} -> "
                                 f"{head.out_features} features, but block {k} outputs "
                                 f"{body.out_features} and there are {n_classes} classes")
            for s in head.layout:
                segs.append(Segment(f"aux{k}.{s.local}", s.shape, off + s.offset, None, s.local))
            self.heads.append((head, off))
            off += head.n_params
        out_layer = len(model.layers) - 1
        self.heads.append((Sequential([model.layers[out_layer]]),
                           model.layout[f"{out_layer}.weight"].offset))
        self.layout = Layout(segs)
        self.prototypes = None  # per block (n_classes, features), once seen

    def _validate(self):
        p, model = self.plan, self.model
        n = len(model.layers)
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
        if p.mode == "weight" and p.estimator is None:
            raise ValueError("weight mode needs an estimator")
        if p.mode == "activity":
            for a, b in p.blocks:
                lin = [i for i in range(a, b) if model.layers[i].in_features is not None]
                if len(lin) != 1:
                    raise ValueError(f"activity mode needs one linear layer per block; block "
                                     f"({a}, {b}) has {len(lin)}")
            if p.link > 1:
                raise ValueError(f"activity mode supports link m <= 1, got {p.link}")

    # -- parameters --------------------------------------------------------------
    @property
    def n_params(self):
        return self.layout.n_params

    def init(self, seed):
        """Model parameters followed by the auxiliary heads' parameters."""
        parts = [self.model.init(seed)]
        for k, (head, _) in enumerate(self.heads[:-1]):
            parts.append(head.init([seed, 1 + k]))
        return np.concatenate(parts).astype(np.float32)

    def _body_params(self, params, k):
        return params[self.body_offsets[k]:self.body_offsets[k] + self.bodies[k].n_params]

    def _head_params(self, params, k):
        head, off = self.heads[k]
        return params[off:off + head.n_params]

    def _global_name(self, k, name):
        """The model's name of segment ``name`` of block k's body."""
        s = self.bodies[k].layout[name]
        return f"{self.plan.blocks[k][0] + s.layer}.{s.local}"

    # -- one evaluation ------------------------------------------------------------
    def evaluate(self, params, X, labels, *, seed, step):
        params = np.asarray(params, np.float32)
        X = np.ascontiguousarray(X, np.float32)
        labels = np.asarray(labels, np.int64)
        grad = np.zeros(self.n_params, np.float32)
        how, passes, counts = {}, 0, []
        outs, cache = self._clean_forward(params, X)
        flops = sum(b.flops() for b in self.bodies) + sum(h.flops() for h, _ in self.heads)
        block_losses = []
        for k in range(len(self.bodies)):  # each costs about one forward of its head
            flops += self.heads[k][0].flops()
            loss, hg = self._head_gradient(params, k, outs[k + 1], labels)
            block_losses.append(loss)
            self._put(grad, how, self._head_segments(k), hg, "exact-head")
        if self.plan.proto > 0:
            self._update_prototypes(outs, labels)
        for k in range(len(self.bodies)):
            if self.plan.mode == "activity":
                g, n, c = self._activity(params, k, outs, cache, labels)
                tag = "activity"
            else:
                g, n, c = self._weight(params, k, outs, labels, seed, step)
                tag = f"zo:{type(self.plan.estimator).__name__.lower()}"
            g = {self._global_name(k, name): v for name, v in g.items()}
            self._put(grad, how, {name: self.model.layout[name] for name in g}, g, tag)
            passes += n
            counts.append(c)
            flops += c.pop("flops")
        return Evaluation(grad, how, block_losses, passes, {"per_block": counts},
                          flops / self.model.flops())

    def _put(self, grad, how, segments, values, tag):
        for name, seg in segments.items():
            grad[seg.slice] = np.asarray(values[name]).ravel()
            how[name] = tag

    def _head_segments(self, k):
        head, off = self.heads[k]
        return {s.name: s for s in self.layout if off <= s.offset < off + head.n_params}

    def _clean_forward(self, params, X):
        """Block outputs ``outs[k]`` (input of block k, (B, F)) and, per linear layer,
        its input and pre-activation."""
        outs, cache = [X], {}
        for k, body in enumerate(self.bodies):
            layers, H = body.linear_cache(self._body_params(params, k), outs[-1][None])
            cache.update({(k, i): (Hin[0], Z[0]) for i, (Hin, Z) in layers.items()})
            outs.append(H[0])
        return outs, cache

    def _head_gradient(self, params, k, h, labels):
        head, _ = self.heads[k]
        obj = ModelObjective(head, h, labels)
        g, names, loss = obj.head_gradient(self._head_params(params, k))
        segs = self._head_segments(k)
        named = {name: g[head.layout[f"0.{s.local}"].slice] for name, s in segs.items()}
        return loss, named

    # -- block bodies -------------------------------------------------------------------
    def _tail(self, params, k, labels, counter):
        """Block k's local loss from its output h ``(Q, B, F)``: its head, plus lam times
        the heads of the next ``link`` blocks, the output run forward through them."""
        targets = np.zeros((1, 1))
        last = len(self.bodies) - 1

        def head_loss(j, H):
            head, _ = self.heads[j]
            P = np.tile(self._head_params(params, j), (H.shape[0], 1))
            counter["head_forwards"] += H.shape[0]
            counter["flops"] += H.shape[0] * head.flops()
            return head.loss_from(P, H, 0, labels, targets, XENT)

        def tail(H):
            total = head_loss(k, H)
            if self.plan.proto > 0 and self.prototypes is not None:
                u = H / (np.linalg.norm(H, axis=2, keepdims=True) + 1e-12)
                r = u - self.prototypes[k][labels][None]
                total = total + 0.5 * self.plan.proto * np.mean(np.sum(r * r, axis=2), axis=1)
            for j in range(k + 1, min(k + self.plan.link, last) + 1):
                body = self.bodies[j]
                P = np.tile(self._body_params(params, j), (H.shape[0], 1))
                H = body.forward_from(P, H, 0, len(body.layers), fresh_last=True)
                counter["block_forwards"] += H.shape[0]
                counter["flops"] += H.shape[0] * body.flops()
                total = total + self.plan.lam * head_loss(j, H)
            return total

        return tail

    def _weight(self, params, k, outs, labels, seed, step):
        counter = {"block_forwards": 0, "head_forwards": 0, "flops": 0.0}
        body = self.bodies[k]
        obj = ModelObjective(body, outs[k], labels, tail=self._tail(params, k, labels, counter))
        est = self.plan.estimator.estimate(obj, self._body_params(params, k), body.layout.names,
                                           seed=seed, step=step)
        counter["block_forwards"] += obj.forward_passes
        counter["flops"] += obj.flops
        g = {s.name: est.grad[s.slice] for s in body.layout}
        return g, est.forward_passes, counter

    def _activity(self, params, k, outs, cache, labels):
        body, p = self.bodies[k], self.plan
        i = body.linear_index()[0]
        Xin, Z = cache[(k, i)]
        act = body.activation_scalar(i)
        B = Z.shape[0]
        Wh, bh = self._head_dense(params, k)
        D, _ = activity_cge_head(Z, act, Wh, bh, labels, p.mu, 1.0 / B)
        F = Z.shape[1]
        # counted as if each query ran the whole head (and linked block): an upper bound,
        # the kernels evaluate each one-unit change incrementally
        counter = {"block_forwards": 0, "head_forwards": 2 * F,
                   "flops": 2 * F * self.heads[k][0].flops()}
        if p.link >= 1 and k + 1 < len(self.bodies):
            nb = self.bodies[k + 1]
            j = nb.linear_index()[0]
            Wn = self._dense_weight(nb, j, self._body_params(params, k + 1))
            Wh2, bh2 = self._head_dense(params, k + 1)
            Zn = cache[(k + 1, j)][1]
            act_n = nb.activation_scalar(j)
            if act_n is elementwise.RELU:
                V = np.matmul(Wn, (Zn > 0)[:, :, None] * Wh2[None])
                D += p.lam * activity_cge_link_relu(Z, act, Wn, Zn, V, Wh2, bh2, labels, p.mu,
                                                    1.0 / B)
            else:
                D += p.lam * activity_cge_link(Z, act, Wn, Zn, act_n, Wh2, bh2, labels, p.mu,
                                               1.0 / B)
            counter["block_forwards"] += 2 * F
            counter["head_forwards"] += 2 * F
            counter["flops"] += 2 * F * (nb.flops() + self.heads[k + 1][0].flops())
        if p.proto > 0:
            D += self._proto_activity_grad(k, Z, act, outs[k + 1], labels)
        g = layer_gradient(body, i, self._body_params(params, k), Xin, D)
        counter["flops"] += body.flops(i, i + 1)  # X^T D: one product of the layer's size
        return g, 2 * F, counter

    def _head_dense(self, params, k):
        head, _ = self.heads[k]
        hp = head.unflatten(self._head_params(params, k))
        bias = hp.get("0.bias", np.zeros(head.out_features, np.float32))
        return hp["0.weight"], bias.astype(np.float64)

    @staticmethod
    def _dense_weight(body, i, params):
        layer = body.layers[i]
        arrays = body.unflatten(params)
        if isinstance(layer, TTLinear):
            W = tt_matrix_to_dense([arrays[s.name] for s in body.layout.of_layer(i)
                                    if s.local != "bias"])
        else:
            W = arrays[f"{i}.weight"]
        return np.ascontiguousarray(W, np.float32)

    # -- prototype targets --------------------------------------------------------------
    def _update_prototypes(self, outs, labels):
        K = len(self.bodies)
        if self.prototypes is None:
            self.prototypes = [np.zeros((self.n_classes, outs[k + 1].shape[1])) for k in range(K)]
        for k in range(K):
            src = outs[min(k + 2, K)]  # the next block's features (own for the last)
            if src.shape[1] != outs[k + 1].shape[1]:
                continue
            n = _normalise(src)
            for c in range(self.n_classes):
                sel = labels == c
                if sel.any():
                    m = self.plan.proto_momentum
                    self.prototypes[k][c] = m * self.prototypes[k][c] + (1 - m) * n[sel].mean(0)

    def _proto_activity_grad(self, k, Z, act, h, labels):
        """Closed form of d/dh of proto/2 |n(h) - p_y|^2, times act'(Z) (central difference)."""
        h = np.asarray(h, np.float64)
        norm = np.linalg.norm(h, axis=1, keepdims=True) + 1e-12
        u = h / norm
        r = u - self.prototypes[k][labels]
        gh = (r - u * np.sum(u * r, axis=1, keepdims=True)) / norm
        mu = self.plan.mu
        Zp = elementwise.bias_activation_many((Z + mu)[None].astype(np.float32), np.zeros((1, 1),
                                              np.float32), -1, act)[0]
        Zm = elementwise.bias_activation_many((Z - mu)[None].astype(np.float32), np.zeros((1, 1),
                                              np.float32), -1, act)[0]
        slope = (Zp.astype(np.float64) - Zm) / (2 * mu)
        return (self.plan.proto * gh * slope / Z.shape[0]).astype(np.float32)

    def state(self):
        return {"prototypes": [p.tolist() for p in self.prototypes] if self.prototypes else []}

    def load_state(self, state):
        if state.get("prototypes"):
            self.prototypes = [np.asarray(p) for p in state["prototypes"]]


def _normalise(h):
    h = np.asarray(h, np.float64)
    return h / (np.linalg.norm(h, axis=1, keepdims=True) + 1e-12)

