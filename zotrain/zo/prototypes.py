"""Prototype targets: a feedback term with a closed-form gradient, no backward path.

Block k's loss gains ``weight/2 * mean_b |n(h_b) - p_{y_b}|^2``, where ``n``
normalises a block output to unit length and ``p_c`` is a running mean of the
normalised features of class c at the next block's output (at the block's own
output for the last block).
"""

import numpy as np

from zotrain.zo.local_rule import activation_slope


def normalise(h):
    h = np.asarray(h, np.float64)
    return h / (np.linalg.norm(h, axis=1, keepdims=True) + 1e-12)


class Prototypes:
    def __init__(self, weight, momentum, n_classes):
        self.weight, self.momentum, self.n_classes = weight, momentum, n_classes
        self.means = None  # per block (n_classes, features), once seen

    def update(self, outs, labels):
        """Move the class means towards this minibatch's features (``outs`` as
        ``Blocks.clean_forward`` returns them)."""
        K = len(outs) - 1
        if self.means is None:
            self.means = [np.zeros((self.n_classes, outs[k + 1].shape[1])) for k in range(K)]
        m = self.momentum
        for k in range(K):
            src = outs[min(k + 2, K)]
            if src.shape[1] != outs[k + 1].shape[1]:
                continue
            n = normalise(src)
            for c in range(self.n_classes):
                sel = labels == c
                if sel.any():
                    self.means[k][c] = m * self.means[k][c] + (1 - m) * n[sel].mean(0)

    def loss(self, k, H, labels):
        """The term for block k's outputs ``H`` ``(Q, B, F)``: one value per query."""
        u = H / (np.linalg.norm(H, axis=2, keepdims=True) + 1e-12)
        r = u - self.means[k][labels][None]
        return 0.5 * self.weight * np.mean(np.sum(r * r, axis=2), axis=1)

    def activity_grad(self, k, Z, act, h, labels, mu):
        """d(term)/dZ for ``h = act(Z)`` ``(B, F)``: the closed form in ``h`` times
        ``act'(Z)`` by a central difference of step ``mu``."""
        h = np.asarray(h, np.float64)
        norm = np.linalg.norm(h, axis=1, keepdims=True) + 1e-12
        u = h / norm
        r = u - self.means[k][labels]
        gh = (r - u * np.sum(u * r, axis=1, keepdims=True)) / norm
        return (self.weight * gh * activation_slope(Z, act, mu) / Z.shape[0]).astype(np.float32)

    def state(self):
        return [p.tolist() for p in self.means] if self.means else []

    def load_state(self, means):
        if means:
            self.means = [np.asarray(p) for p in means]
