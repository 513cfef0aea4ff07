"""A model cut into blocks of consecutive layers, each block with a linear head.

Every block but the last gets an auxiliary ``Dense`` head on its output, whose
parameters follow the model's in the trainable vector; the last block's head
is the model's output layer.
"""

import numpy as np

from zotrain.nn.layers import Dense, TTLinear
from zotrain.nn.sequential import Layout, Segment, Sequential
from zotrain.nn.tt import tt_matrix_to_dense


class Blocks:
    def __init__(self, model, ranges, n_classes, heads=None):
        self.model, self.ranges = model, ranges
        self.bodies = [Sequential(model.layers[a:b]) for a, b in ranges]
        self.body_offsets = [min(s.offset for s in model.layout if a <= s.layer < b)
                             for a, b in ranges]
        segs, off = list(model.layout), model.n_params
        self.heads = []  # (head, offset of its parameters)
        for k, body in enumerate(self.bodies[:-1]):
            head = Sequential([heads[k] if heads else Dense(body.out_features, n_classes)])
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

    def __len__(self):
        return len(self.bodies)

    def init(self, seed):
        """Model parameters followed by the auxiliary heads' parameters."""
        parts = [self.model.init(seed)]
        for k, (head, _) in enumerate(self.heads[:-1]):
            parts.append(head.init([seed, 1 + k]))
        return np.concatenate(parts).astype(np.float32)

    def body_params(self, params, k):
        return params[self.body_offsets[k]:self.body_offsets[k] + self.bodies[k].n_params]

    def head_params(self, params, k):
        head, off = self.heads[k]
        return params[off:off + head.n_params]

    def head_segments(self, k):
        """Block k's head segments by their names in the trainable vector."""
        head, off = self.heads[k]
        return {s.name: s for s in self.layout if off <= s.offset < off + head.n_params}

    def model_segments(self, k, named):
        """``{body name: value}`` of block k to ``{model name: (segment, value)}``."""
        out = {}
        for name, value in named.items():
            s = self.bodies[k].layout[name]
            full = f"{self.ranges[k][0] + s.layer}.{s.local}"
            out[full] = (self.model.layout[full], value)
        return out

    def clean_forward(self, params, X, start=0):
        """Block inputs and outputs ``outs[k]`` ((B, F), ``outs[start] = X``, None before
        it) and, per block from ``start`` and linear layer, that layer's input and
        pre-activation."""
        outs, cache = [None] * start + [X], {}
        for k, body in enumerate(self.bodies[start:], start):
            layers, H = body.linear_cache(self.body_params(params, k), outs[-1][None])
            cache.update({(k, i): (Hin[0], Z[0]) for i, (Hin, Z) in layers.items()})
            outs.append(H[0])
        return outs, cache

    def head_dense(self, params, k):
        """Block k's head as ``(W, b)`` (a zero bias when it has none)."""
        head, _ = self.heads[k]
        hp = head.unflatten(self.head_params(params, k))
        bias = hp.get("0.bias", np.zeros(head.out_features, np.float32))
        return hp["0.weight"], bias.astype(np.float64)

    def dense_weight(self, params, k, i):
        """The dense weight matrix of layer ``i`` of block k's body."""
        body = self.bodies[k]
        arrays = body.unflatten(self.body_params(params, k))
        if isinstance(body.layers[i], TTLinear):
            W = tt_matrix_to_dense([arrays[s.name] for s in body.layout.of_layer(i)
                                    if s.local != "bias"])
        else:
            W = arrays[f"{i}.weight"]
        return np.ascontiguousarray(W, np.float32)
