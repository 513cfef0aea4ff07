"""Slow, obvious NumPy references that the kernels are compared against."""

import math
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


def tt_core_gradients_dense(cores, M):
    """``d <M, W(cores)> / d core_k`` for every k by brute force: ``W`` is linear in each
    core, so each entry is ``<M, W>`` with that core replaced by a unit tensor."""
    grads = []
    for k, core in enumerate(cores):
        g = np.zeros(core.shape)
        for idx in np.ndindex(core.shape):
            unit = np.zeros(core.shape)
            unit[idx] = 1.0
            g[idx] = np.sum(M * tt_dense(cores[:k] + [unit] + cores[k + 1:]))
        grads.append(g)
    return grads


def tt_contract_steps(H, cores):
    """``H @ W`` contracted core by core in float64, each intermediate laid out per row as
    ``(outputs so far, rank, inputs left)``; also returns the largest intermediate per row."""
    B = H.shape[0]
    T = np.asarray(H, np.float64).reshape(B, 1, 1, -1)
    largest = T[0].size
    for c in cores:
        r0, i, o, r1 = c.shape
        _, left, _, rest = T.shape
        T = np.einsum("blrim,rios->blosm", T.reshape(B, left, r0, i, rest // i),
                      np.asarray(c, np.float64))
        T = T.reshape(B, left * o, r1, rest // i)
        largest = max(largest, T[0].size)
    return T.reshape(B, -1), largest


_MASK = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15


def splitmix64(z):
    """SplitMix64's output for state ``z`` (Steele, Lea and Flood, 2014), Python integers."""
    z = (z + _GOLDEN) & _MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
    return z ^ (z >> 31)


def direction(seed, step, query, n, dist):
    """Direction ``query`` of ``(seed, step)`` as ``zotrain.kernels.random`` documents it:
    key = h(h(h(seed) ^ step) ^ query); entry j from h(key + c * golden) for counters c
    (Rademacher: the top bit of counter j; Gaussian: Box-Muller on the 53-bit uniforms of
    counters 2m and 2m + 1, cos for even j, sin for odd); sphere: the Gaussian scaled to
    norm sqrt(n)."""
    key = splitmix64(splitmix64(splitmix64(seed) ^ step) ^ query)

    def bits(c):
        return splitmix64((key + c * _GOLDEN) & _MASK)

    def uniform(c):
        return ((bits(c) >> 11) + 0.5) / 2.0 ** 53

    u = np.empty(n)
    for j in range(n):
        if dist == "rademacher":
            u[j] = -1.0 if bits(j) >> 63 else 1.0
        else:
            m = j // 2
            r = math.sqrt(-2.0 * math.log(uniform(2 * m)))
            angle = 2.0 * math.pi * uniform(2 * m + 1)
            u[j] = r * (math.cos(angle) if j % 2 == 0 else math.sin(angle))
    if dist == "sphere":
        u *= math.sqrt(n / np.sum(u * u))
    return u


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


def constrained_fields(problem, x, n, grad, lap, hess=None, h=1e-4):
    """The fields of ``u = a + c N`` at the points ``x`` from the network's ``N``, ``grad``,
    ``lap`` (and ``hess``: ``(B, d)`` diagonal or ``(B, d, d)``), term by term, with
    ``a`` and ``c`` (``problem.transform(x, nn) = a + c nn``) differentiated by central
    differences in float64 (step ``h`` times the box's width): ``(u, grad, lap, hess)``."""
    d = problem.dim
    w = np.asarray(problem.upper, float) - np.asarray(problem.lower, float)

    def ac(p):
        a = problem.transform(p[None], np.zeros(1))[0]
        return np.array([a, problem.transform(p[None], np.ones(1))[0] - a])

    out_u, out_g, out_l, out_h = [], [], [], []
    for b in range(len(x)):
        f0 = ac(x[b])
        g = np.zeros((2, d))
        H = np.zeros((2, d, d))
        for i in range(d):
            ei = np.zeros(d)
            ei[i] = h * w[i]
            g[:, i] = (ac(x[b] + ei) - ac(x[b] - ei)) / (2 * ei[i])
            for j in range(d):
                ej = np.zeros(d)
                ej[j] = h * w[j]
                H[:, i, j] = (ac(x[b] + ei + ej) - ac(x[b] + ei - ej) - ac(x[b] - ei + ej) +
                              ac(x[b] - ei - ej)) / (4 * ei[i] * ej[j])
        (a, c), (ga, gc), (Ha, Hc) = f0, g, H
        N, gN = n[b], grad[b]
        out_u.append(a + c * N)
        out_g.append(ga + N * gc + c * gN)
        lap_u = 0.0
        for i in range(d):
            if i != problem.time_index:
                lap_u += Ha[i, i] + N * Hc[i, i] + 2 * gc[i] * gN[i]
        out_l.append(lap_u + c * lap[b])
        if hess is not None:
            HN = hess[b] if hess.ndim == 3 else np.diag(hess[b])
            Hu = Ha + N * Hc + np.outer(gc, gN) + np.outer(gN, gc) + c * HN
            out_h.append(Hu if hess.ndim == 3 else np.diag(Hu))
    return (np.array(out_u), np.array(out_g), np.array(out_l),
            np.array(out_h) if hess is not None else None)
