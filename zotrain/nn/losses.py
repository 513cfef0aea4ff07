"""Softmax cross-entropy and mean squared error, written once (float64).

The fused Numba path for a final Dense layer is ``zotrain.kernels.losses``;
these are the NumPy forms every other place uses (evaluation, exact head
gradients, the onnxruntime objective, unfused tails).
"""

import numpy as np


def log_softmax(logits):
    """Log-probabilities over the last axis."""
    Z = np.asarray(logits, np.float64)
    m = Z.max(axis=-1, keepdims=True)
    return Z - (np.log(np.exp(Z - m).sum(axis=-1, keepdims=True)) + m)


def xent(logits, labels):
    """Per-example cross-entropy ``(..., B)`` of logits ``(..., B, C)`` against int labels
    ``(B,)``."""
    logp = log_softmax(logits)
    idx = np.broadcast_to(np.asarray(labels)[:, None], logp.shape[:-1] + (1,))
    return -np.take_along_axis(logp, idx, axis=-1)[..., 0]


def xent_grad(logits, labels):
    """``d xent / d logits`` per example: ``softmax(logits) - onehot(labels)`` ``(B, C)``."""
    Z = np.asarray(logits, np.float64)
    G = np.exp(Z - Z.max(axis=1, keepdims=True))
    G /= G.sum(axis=1, keepdims=True)
    G[np.arange(G.shape[0]), labels] -= 1.0
    return G


def mse(outputs, targets):
    """Per-example mean squared error over outputs ``(..., B)``."""
    return ((np.asarray(outputs, np.float64) - targets) ** 2).mean(axis=-1)
