import numpy as np
import pytest

from zotrain import optim


def run(opt, grads, x0):
    x, state = x0.copy(), opt.init(x0)
    for g in grads:
        x, state = opt.update(g, state, x)
    return x, state


def test_sgd_and_sign(rng):
    x0 = rng.standard_normal(5).astype(np.float32)
    g = rng.standard_normal(5).astype(np.float32)
    x, s = run(optim.sgd(0.1), [g, g], x0)
    np.testing.assert_allclose(x, x0 - 0.2 * g, rtol=1e-6)
    assert s.count == 2
    x, _ = run(optim.sign(0.5), [g], x0)
    np.testing.assert_allclose(x, x0 - 0.5 * np.sign(g), rtol=1e-6)


def test_momentum_matches_reference(rng):
    x0 = rng.standard_normal(4).astype(np.float32)
    grads = [rng.standard_normal(4).astype(np.float32) for _ in range(3)]
    x, v = x0.astype(np.float64), np.zeros(4)
    for g in grads:
        v = 0.9 * v + g
        x = x - 0.1 * v
    got, _ = run(optim.momentum(0.1, 0.9), grads, x0)
    np.testing.assert_allclose(got, x, rtol=1e-5)


def test_adam_matches_reference(rng):
    x0 = rng.standard_normal(4).astype(np.float32)
    grads = [rng.standard_normal(4).astype(np.float32) for _ in range(5)]
    x, m, v = x0.astype(np.float64), np.zeros(4), np.zeros(4)
    for t, g in enumerate(grads, start=1):
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g * g
        x = x - 0.01 * (m / (1 - 0.9 ** t)) / (np.sqrt(v / (1 - 0.999 ** t)) + 1e-8)
    got, state = run(optim.adam(0.01), grads, x0)
    np.testing.assert_allclose(got, x, rtol=1e-5)
    assert state.count == 5


def test_adam_minimises_a_quadratic():
    x = np.array([3.0, -2.0], np.float32)
    opt = optim.adam(0.1)
    state = opt.init(x)
    for _ in range(300):
        x, state = opt.update(2 * x, state, x)
    assert np.abs(x).max() < 0.05


def test_schedules():
    assert optim.constant(0.3)(100) == 0.3
    s = optim.step_decay(1.0, every=10, factor=0.5)
    assert s(9) == 1.0 and s(10) == 0.5 and s(25) == 0.25
    assert optim.exponential(2.0, 0.5)(3) == pytest.approx(0.25)
    c = optim.cosine(1.0, 100, final=0.1)
    assert c(0) == pytest.approx(1.0) and c(50) == pytest.approx(0.55) and c(100) == pytest.approx(0.1)
    assert c(500) == pytest.approx(0.1)
    x, _ = run(optim.sgd(optim.step_decay(1.0, 1, 0.5)), [np.ones(1, np.float32)] * 2,
               np.zeros(1, np.float32))
    assert x[0] == pytest.approx(-1.5)


def test_partition(rng):
    x0 = rng.standard_normal(6).astype(np.float32)
    g = np.ones(6, np.float32)
    mask = np.array([1, 1, 1, 0, 0, 0], bool)
    opt = optim.partition({"a": optim.sgd(0.1), "b": optim.sign(1.0)}, {"a": mask, "b": ~mask})
    x, _ = run(opt, [g], x0)
    np.testing.assert_allclose(x[:3], x0[:3] - 0.1, rtol=1e-6)
    np.testing.assert_allclose(x[3:], x0[3:] - 1.0, rtol=1e-6)
    with pytest.raises(ValueError, match="exactly once"):
        optim.partition({"a": optim.sgd(0.1)}, {"a": mask})


@pytest.mark.parametrize("factory", [optim.sgd, optim.momentum, optim.adam, optim.sign])
@pytest.mark.parametrize("lr", [0, -0.1, float("nan")])
def test_bad_learning_rate(factory, lr):
    with pytest.raises(ValueError, match="learning rate must be > 0"):
        factory(lr)


def test_unknown_optimizer():
    with pytest.raises(ValueError, match="unknown optimizer 'rmsprop'; known optimizers: sgd"):
        optim.get("rmsprop", 0.1)


def test_partition_keeps_each_optimizers_own_coordinates_and_reads_full_size_states(rng):
    """Adam on a partition: the same steps as one Adam on each part alone; its state holds
    only the part's coordinates; a full-size state (an older checkpoint's) is read too."""
    n = 9
    mask = np.zeros(n, bool)
    mask[[1, 4, 5]] = True
    opt = optim.partition({"a": optim.adam(0.1), "b": optim.adam(0.01)}, {"a": mask, "b": ~mask})
    alone = {"a": optim.adam(0.1), "b": optim.adam(0.01)}
    params = rng.standard_normal(n).astype(np.float32)
    state = opt.init(params)
    assert [len(s.m) for s in state.states] == [3, 6]
    old = optim.PartitionState(tuple(optim.AdamState(0, np.zeros(n, np.float32),
                                                     np.zeros(n, np.float32)) for _ in "ab"))
    p_old = params.copy()
    parts = {"a": (params[mask], alone["a"].init(params[mask])),
             "b": (params[~mask], alone["b"].init(params[~mask]))}
    for _ in range(3):
        g = rng.standard_normal(n).astype(np.float32)
        params, state = opt.update(g, state, params)
        p_old, old = opt.update(g, old, p_old)
        for label, m in (("a", mask), ("b", ~mask)):
            p, s = parts[label]
            parts[label] = alone[label].update(g[m], s, p)
            np.testing.assert_array_equal(params[m], parts[label][0])
    np.testing.assert_array_equal(p_old, params)
