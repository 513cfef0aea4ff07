"""Activity-perturbation kernels and the local rule against NumPy references."""

import numpy as np
import pytest

from zotrain.kernels import elementwise as E
from zotrain.kernels.activity import activity_cge_head, activity_cge_link, activity_cge_link_relu
from zotrain.zo.local_rule import tt_core_gradients
from zotrain.nn.tt import random_tt_matrix, tt_matrix_to_dense
from tests import reference

ACTS = {E.RELU: lambda x: np.maximum(x, 0), E.TANH: np.tanh, E.SIN: np.sin, E.IDENTITY: lambda x: x}


def per_example_xent(logits, y):
    m = logits.max(axis=-1, keepdims=True)
    return np.log(np.exp(logits - m).sum(-1)) + m[..., 0] - np.take_along_axis(
        logits, y[..., None], -1)[..., 0]


def reference_head(Z, act, W, b, y, mu, scale):
    """Perturb each (example, unit) of Z and rerun act + head in full."""
    f = ACTS[act]
    B, F = Z.shape
    D = np.zeros((B, F))
    for j in range(F):
        e = np.zeros(F)
        e[j] = mu
        lp = per_example_xent(f(Z + e) @ W + b, y)
        lm = per_example_xent(f(Z - e) @ W + b, y)
        D[:, j] = (lp - lm) / (2 * mu) * scale
    return D


@pytest.mark.parametrize("act", list(ACTS))
@pytest.mark.parametrize("shape", [(1, 1, 2), (5, 7, 3), (17, 12, 10)])
def test_activity_cge_head(act, shape, rng):
    B, F, C = shape
    Z = rng.standard_normal((B, F)).astype(np.float32)
    W = rng.standard_normal((F, C)).astype(np.float32)
    b = rng.standard_normal(C)
    y = rng.integers(0, C, B)
    D, losses = activity_cge_head(Z, act, W, b, y, 1e-3, 0.5)
    np.testing.assert_allclose(D, reference_head(Z.astype(np.float64), act, W, b, y, 1e-3, 0.5),
                               rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(losses, per_example_xent(ACTS[act](Z.astype(np.float64)) @ W + b, y),
                               rtol=1e-6)


@pytest.mark.parametrize("act", [E.RELU, E.TANH])
@pytest.mark.parametrize("shape", [(1, 2, 3, 2), (6, 5, 7, 4)])
def test_activity_cge_link(act, shape, rng):
    B, F, Fn, C = shape
    Z = rng.standard_normal((B, F)).astype(np.float32)
    Wn = rng.standard_normal((F, Fn)).astype(np.float32)
    bn = rng.standard_normal(Fn)
    Zn = (ACTS[act](Z.astype(np.float64)) @ Wn + bn).astype(np.float32)
    Wh = rng.standard_normal((Fn, C)).astype(np.float32)
    bh = rng.standard_normal(C)
    y = rng.integers(0, C, B)
    mu = 1e-3
    D = activity_cge_link(Z, act, Wn, Zn, act, Wh, bh, y, mu, 1.0)
    f = ACTS[act]
    ref = np.zeros((B, F))
    for j in range(F):
        e = np.zeros(F)
        e[j] = mu
        lp = per_example_xent(f(f(Z + e) @ Wn + bn) @ Wh + bh, y)
        lm = per_example_xent(f(f(Z - e) @ Wn + bn) @ Wh + bh, y)
        ref[:, j] = (lp - lm) / (2 * mu)
    np.testing.assert_allclose(D, ref, rtol=1e-3, atol=1e-5)
    if act == E.RELU:  # the fast path gives the same losses
        V = np.matmul(Wn, (Zn > 0)[:, :, None] * Wh[None])
        fast = activity_cge_link_relu(Z, act, Wn, Zn, V, Wh, bh, y, mu, 1.0)
        np.testing.assert_allclose(fast, D, rtol=1e-4, atol=1e-6)


def test_relu_link_handles_units_at_the_kink(rng):
    """Next-block pre-activations within mu * |w| of zero switch under the perturbation."""
    B, F, Fn, C = 3, 4, 6, 3
    Z = np.abs(rng.standard_normal((B, F))).astype(np.float32) + 0.1
    Wn = rng.standard_normal((F, Fn)).astype(np.float32)
    Zn = rng.standard_normal((B, Fn)).astype(np.float32)
    Zn[:, :3] = np.float32(1e-4) * np.sign(Zn[:, :3])  # right at the kink for mu = 1e-3
    Wh = rng.standard_normal((Fn, C)).astype(np.float32)
    bh = rng.standard_normal(C)
    y = rng.integers(0, C, B)
    V = np.matmul(Wn, (Zn > 0)[:, :, None] * Wh[None])
    fast = activity_cge_link_relu(Z, E.RELU, Wn, Zn, V, Wh, bh, y, 1e-3, 1.0)
    slow = activity_cge_link(Z, E.RELU, Wn, Zn, E.RELU, Wh, bh, y, 1e-3, 1.0)
    np.testing.assert_allclose(fast, slow, rtol=1e-5, atol=1e-7)


def test_activity_estimate_is_the_exact_derivative(rng):
    """With tanh (smooth) the coordinate estimate is the analytic dL/dZ up to O(mu^2)."""
    B, F, C = 4, 6, 3
    Z = rng.standard_normal((B, F)).astype(np.float32)
    W = rng.standard_normal((F, C)).astype(np.float32)
    b = np.zeros(C)
    y = rng.integers(0, C, B)
    D, _ = activity_cge_head(Z, E.TANH, W, b, y, 1e-4, 1.0)
    H = np.tanh(Z.astype(np.float64))
    P = np.exp(H @ W)
    P /= P.sum(1, keepdims=True)
    P[np.arange(B), y] -= 1
    exact = (P @ W.T.astype(np.float64)) * (1 - H ** 2)
    np.testing.assert_allclose(D, exact, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("case", range(5))
def test_tt_core_gradients_match_finite_differences(case):
    rng = np.random.default_rng(case)
    d = int(rng.integers(1, 5))
    in_modes = tuple(int(m) for m in rng.integers(1, 4, d))
    out_modes = tuple(int(m) for m in rng.integers(1, 4, d))
    ranks = (1,) + tuple(int(r) for r in rng.integers(1, 4, d - 1)) + (1,)
    cores = random_tt_matrix(in_modes, out_modes, ranks, seed=case, dtype=np.float64)
    M = rng.standard_normal(tt_matrix_to_dense(cores).shape)
    grads = tt_core_gradients(cores, M)
    for k, core in enumerate(cores):
        num = np.zeros_like(core)
        for idx in np.ndindex(core.shape):
            cp = [c.copy() for c in cores]
            cp[k][idx] += 1e-6
            fp = np.sum(M * reference.tt_dense(cp))
            cp[k][idx] -= 2e-6
            num[idx] = (fp - np.sum(M * reference.tt_dense(cp))) / 2e-6
        np.testing.assert_allclose(grads[k], num, rtol=1e-6, atol=1e-7)
