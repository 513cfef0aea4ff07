"""The objective's feature-reuse fast path and exact head gradient."""

import numpy as np
import pytest

from zotrain import Dense, ReLU, Sequential, Sin, Tanh, TTLinear
from zotrain.kernels import random as R
from zotrain.zo.objective import ModelObjective
from tests import reference


def models():
    yield Sequential([TTLinear(24, 16, rank=3, in_modes=(2, 3, 4), out_modes=(2, 2, 4)), ReLU(),
                      Dense(16, 5)])
    yield Sequential([TTLinear(12, 20, rank=2, bias=False), Tanh(), TTLinear(20, 8, rank=2),
                      Sin(), Dense(8, 3, bias=False)])
    yield Sequential([Dense(10, 6), ReLU(), TTLinear(6, 6, rank=2, method="contract"), Dense(6, 4)])


@pytest.mark.parametrize("model", list(models()), ids=["tt", "tt2", "dense-first"])
def test_segment_losses_equal_full_forwards(model, rng):
    p = model.init(0) + 0.1 * rng.standard_normal(model.n_params).astype(np.float32)
    X = rng.standard_normal((13, model.in_features)).astype(np.float32)
    y = rng.integers(0, model.out_features, 13)
    obj = ModelObjective(model, X, y)
    queries = np.array([0, 0, 3, 3, 1])
    scales = np.array([0.05, -0.05, 0.05, -0.05, 0.2])
    for seg in model.layout:
        fast = obj.segment_losses(p, seg.name, 4, 9, queries, scales, R.GAUSSIAN)
        P = R.perturb_into(np.empty((5, p.size), np.float32), p, np.array([seg.offset]),
                           np.array([seg.size]), 4, 9, queries, scales, R.GAUSSIAN)
        full = obj(P)
        np.testing.assert_allclose(fast, full, rtol=2e-5, atol=1e-6, err_msg=seg.name)
        for q in range(5):
            ref = reference.xent(reference.forward(model, P[q], X), y)
            assert fast[q] == pytest.approx(ref, rel=1e-4)


@pytest.mark.parametrize("stream", [1, 2, 3, 4])
def test_streamed_queries_equal_one_batch(stream, rng, monkeypatch):
    """Queries evaluated in groups of ``STREAM`` sets (a step's working set near one
    forward's) give bit for bit the losses of one batch of all of them."""
    from zotrain.zo import objective

    model = next(models())
    p = model.init(0)
    X = rng.standard_normal((13, model.in_features)).astype(np.float32)
    y = rng.integers(0, model.out_features, 13)
    queries = np.array([0, 0, 3, 3, 1, 1, 7, 7, 2])
    scales = np.array([0.05, -0.05, 0.05, -0.05, 0.2, -0.2, 0.1, -0.1, 0.3])
    P = R.perturb_into(np.empty((9, p.size), np.float32), p, np.array([0]),
                       np.array([p.size]), 4, 9, queries, scales, R.GAUSSIAN)
    results = []
    for size in (10 ** 6, stream):
        monkeypatch.setattr(objective, "STREAM", size)
        obj = ModelObjective(model, X, y)
        results.append([obj(P)] + [obj.segment_losses(p, s.name, 4, 9, queries, scales,
                                                       R.GAUSSIAN) for s in model.layout])
    for batched, streamed in zip(*results):
        assert np.array_equal(batched, streamed)


def test_forward_passes_are_counted(rng):
    model = next(models())
    p = model.init(0)
    X = rng.standard_normal((5, 24)).astype(np.float32)
    obj = ModelObjective(model, X, rng.integers(0, 5, 5))
    obj.loss(p)
    obj.loss(p)  # cached
    assert obj.forward_passes == 1
    obj(np.stack([p, p, p]))
    obj.segment_losses(p, "0.core1", 0, 0, np.array([0, 0]), np.array([0.1, -0.1]), R.GAUSSIAN)
    assert obj.forward_passes == 1 + 3 + 2


def _head_loss64(H, W, b, y):
    return reference.xent(H @ W + b, y)


@pytest.mark.parametrize("loss", ["xent", "mse"])
def test_head_gradient_matches_reference_and_finite_differences(loss, rng):
    model = next(models())
    p = model.init(1) + 0.1 * rng.standard_normal(model.n_params).astype(np.float32)
    X = rng.standard_normal((9, 24)).astype(np.float32)
    target = rng.integers(0, 5, 9) if loss == "xent" else rng.standard_normal((9, 5))
    obj = ModelObjective(model, X, target, loss)
    grad, names, _ = obj.head_gradient(p)
    assert names == ["2.weight", "2.bias"]
    arrays = model.unflatten(p)
    d = {k: v.astype(np.float64) for k, v in arrays.items()}
    W = reference.tt_dense([d["0.core0"], d["0.core1"], d["0.core2"]])
    H = np.maximum(X @ W + d["0.bias"], 0)
    W2, b2 = d["2.weight"], d["2.bias"]
    if loss == "xent":
        f = lambda W2, b2: _head_loss64(H, W2, b2, target)  # noqa: E731
        Pm = np.exp(H @ W2 + b2 - (H @ W2 + b2).max(1, keepdims=True))
        Pm /= Pm.sum(1, keepdims=True)
        Pm[np.arange(9), target] -= 1
        G = Pm / 9
    else:
        f = lambda W2, b2: reference.mse(H @ W2 + b2, target)  # noqa: E731
        G = 2 * (H @ W2 + b2 - target) / (9 * 5)
    gw = grad[model.layout["2.weight"].offset:][:80].reshape(16, 5)
    gb = grad[model.layout["2.bias"].offset:][:5]
    np.testing.assert_allclose(gw, H.T @ G, rtol=1e-4, atol=1e-6)  # NumPy reference
    num_w = np.zeros_like(W2)
    for idx in np.ndindex(W2.shape):
        e = np.zeros_like(W2)
        e[idx] = 1e-6
        num_w[idx] = (f(W2 + e, b2) - f(W2 - e, b2)) / 2e-6
    num_b = np.array([(f(W2, b2 + 1e-6 * np.eye(5)[j]) - f(W2, b2 - 1e-6 * np.eye(5)[j])) / 2e-6
                      for j in range(5)])
    assert np.abs(gw - num_w).max() / np.abs(num_w).max() < 1e-4
    assert np.abs(gb - num_b).max() / np.abs(num_b).max() < 1e-4
    assert not grad[:model.layout["2.weight"].offset].any()


def test_head_gradient_needs_a_dense_output(rng):
    model = Sequential([Dense(4, 3), Tanh()])
    obj = ModelObjective(model, np.zeros((2, 4), np.float32), np.array([0, 1]))
    with pytest.raises(ValueError, match="ends in a Dense layer"):
        obj.head_gradient(model.init(0))
