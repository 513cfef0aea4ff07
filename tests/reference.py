"""Slow, obvious NumPy references that the kernels are compared against."""

import string

import numpy as np

from zotrain.nn.activations import Activation, ReLU, Sin, Tanh
from zotrain.nn.layers import Dense, TTLinear

ACTIVATIONS = {ReLU: lambda x: np.maximum(x, 0.0), Tanh: np.tanh, Sin: np.sin}


def tt_dense(cores):
    """Dense matrix of a TT-matrix by one einsum over all cores (float64)."""
    d = len(cores)
    letters = iter(string.ascii_letters)
    ranks = [next(letters) for _ in range(d + 1)]
    ins = [next(letters) for _ in range(d)]
    outs = [next(letters) for _ in range(d)]
    terms = [ranks[k] + ins[k] + outs[k] + ranks[k + 1] for k in range(d)]
    spec = ",".join(terms) + "->" + ranks[0] + "".join(ins) + "".join(outs) + ranks[d]
    full = np.einsum(spec, *[np.asarray(c, np.float64) for c in cores])
    n_in = int(np.prod([c.shape[1] for c in cores]))
    return full.reshape(n_in, -1)


def forward(model, params, X):
    """The model's output for one parameter vector, layer by layer, float64."""
    arrays = model.unflatten(params)
    H = np.asarray(X, np.float64)
    for i, layer in enumerate(model.layers):
        if isinstance(layer, Activation):
            H = ACTIVATIONS.get(type(layer), layer.reference)(H)
            continue
        if isinstance(layer, TTLinear):
            W = tt_dense([arrays[f"{i}.core{k}"] for k in range(layer.shape.n_modes)])
        else:
            assert isinstance(layer, Dense)
            W = arrays[f"{i}.weight"].astype(np.float64)
        H = H @ W
        if layer.bias:
            H = H + arrays[f"{i}.bias"]
    return H


def xent(logits, labels):
    """Mean softmax cross-entropy, one row at a time."""
    total = 0.0
    for z, y in zip(np.asarray(logits, np.float64), labels):
        total += np.log(np.sum(np.exp(z - z.max()))) + z.max() - z[y]
    return total / len(labels)


def mse(outputs, targets):
    return float(np.mean((np.asarray(outputs, np.float64) - targets) ** 2))
