"""The hybrid ZO/local evaluator."""

import numpy as np
import pytest

from zotrain import Dense, ReLU, Sequential, TTLinear
from zotrain.zo import estimators
from zotrain.zo.evaluator import Evaluator, Plan, blocks_of, whole_body
from zotrain.zo.steps import ZOStep
from tests import reference


def deep(width=12):
    return Sequential([
        TTLinear(16, width, rank=2, in_modes=(4, 4), out_modes=(3, 4)), ReLU(),
        TTLinear(width, width, rank=2, in_modes=(3, 4), out_modes=(3, 4)), ReLU(),
        Dense(width, width), ReLU(),
        Dense(width, 4),
    ])


@pytest.fixture
def batch(rng):
    return rng.standard_normal((11, 16)).astype(np.float32), rng.integers(0, 4, 11)


def test_blocks_and_heads():
    model = deep()
    assert blocks_of(model) == ((0, 2), (2, 4), (4, 6))
    assert whole_body(model) == ((0, 6),)
    ev = Evaluator(model, Plan(blocks_of(model)), 4)
    assert ev.n_params == model.n_params + 2 * (12 * 4 + 4)
    assert [n for n in ev.layout.names if n.startswith("aux")] == \
        ["aux0.weight", "aux0.bias", "aux1.weight", "aux1.bias"]


def test_head_gradients_exact(batch):
    X, y = batch
    model = deep()
    ev = Evaluator(model, Plan(blocks_of(model)), 4)
    p = ev.init(0)
    out = ev.evaluate(p, X, y, seed=0, step=0)
    arr = model.unflatten(p[:model.n_params])
    h1 = np.maximum(X @ reference.tt_dense([arr["0.core0"], arr["0.core1"]]) + arr["0.bias"], 0)
    W = p[ev.layout["aux0.weight"].offset:][:48].reshape(12, 4).astype(np.float64)
    b = p[ev.layout["aux0.bias"].offset:][:4].astype(np.float64)
    f = lambda W, b: reference.xent(h1 @ W + b, y)  # noqa: E731
    assert out.block_losses[0] == pytest.approx(f(W, b), rel=1e-5)
    g = out.grad[ev.layout["aux0.weight"].offset:][:48].reshape(12, 4)
    num = np.zeros_like(W)
    for idx in np.ndindex(W.shape):
        e = np.zeros_like(W)
        e[idx] = 1e-6
        num[idx] = (f(W + e, b) - f(W - e, b)) / 2e-6
    assert np.abs(g - num).max() / np.abs(num).max() < 1e-4
    assert out.how["aux0.weight"] == "exact-head" and out.how["6.bias"] == "exact-head"
    assert out.how["0.core1"] == "activity"


def test_activity_local_gradient_matches_finite_differences(batch):
    """Greedy (m = 0) activity update of block 0 = gradient of block 0's head loss."""
    X, y = batch
    model = deep()
    ev = Evaluator(model, Plan(blocks_of(model), mu=1e-4), 4)
    p = ev.init(3)
    out = ev.evaluate(p, X, y, seed=0, step=0)
    aux = p[ev.layout["aux0.weight"].offset:][:48].reshape(12, 4).astype(np.float64)
    auxb = p[ev.layout["aux0.bias"].offset:][:4].astype(np.float64)

    def local_loss(q):
        arr = model.unflatten(q[:model.n_params])
        h = np.maximum(X @ reference.tt_dense([arr["0.core0"], arr["0.core1"]]) + arr["0.bias"], 0)
        return reference.xent(h @ aux + auxb, y)

    q = p.astype(np.float64)
    for name in ("0.core0", "0.core1", "0.bias"):
        seg = ev.layout[name]
        for j in range(0, seg.size, max(1, seg.size // 5)):
            e = np.zeros_like(q)
            e[seg.offset + j] = 1e-6
            num = (local_loss(q + e) - local_loss(q - e)) / 2e-6
            assert out.grad[seg.offset + j] == pytest.approx(num, rel=1e-3, abs=1e-6), name


@pytest.mark.parametrize("link", [0, 1, 2])
def test_forward_count_per_block_query(batch, link):
    X, y = batch
    model = deep()
    est = estimators.rge(4, 1e-3, per_group=False)
    ev = Evaluator(model, Plan(blocks_of(model), mode="weight", estimator=est, link=link), 4)
    out = ev.evaluate(ev.init(0), X, y, seed=1, step=0)
    K = 3
    for k, c in enumerate(out.counts["per_block"]):
        linked = min(link, K - 1 - k)
        queries = 2 * 4  # antithetic, joint
        evaluations = queries + 1  # plus the clean loss
        # each evaluation: this block, its head, and `linked` further blocks with their heads
        assert c["head_forwards"] == evaluations * (1 + linked)
        assert c["block_forwards"] == evaluations * (1 + linked)


def test_global_plan_reproduces_the_plain_estimator(batch):
    X, y = batch
    model = deep()
    est = estimators.rge(6, 1e-3)
    ev = Evaluator(model, Plan(whole_body(model), mode="weight", estimator=est), 4)
    p = ev.init(0)
    assert ev.n_params == model.n_params
    out = ev.evaluate(p, X, y, seed=5, step=2)
    body = [n for n in model.layout.names if not n.startswith("6.")]
    grad, loss, passes = ZOStep(model, est, body)(p, X, y, seed=5, step=2)
    np.testing.assert_array_equal(out.grad, grad)
    assert out.block_losses[-1] == pytest.approx(loss)


def test_link_changes_the_update(batch):
    X, y = batch
    model = deep()
    g = [Evaluator(model, Plan(blocks_of(model), link=m), 4).evaluate(
        Evaluator(model, Plan(blocks_of(model)), 4).init(0), X, y, seed=0, step=0).grad
        for m in (0, 1)]
    seg = model.layout["0.core0"]
    last = model.layout["4.weight"]
    assert not np.allclose(g[0][seg.offset:seg.offset + seg.size],
                           g[1][seg.offset:seg.offset + seg.size])
    # the last block has nothing to link to
    np.testing.assert_array_equal(g[0][last.offset:last.offset + last.size],
                                  g[1][last.offset:last.offset + last.size])


def test_prototypes_add_a_term(batch):
    X, y = batch
    model = deep()
    ev0 = Evaluator(model, Plan(blocks_of(model)), 4)
    ev1 = Evaluator(model, Plan(blocks_of(model), proto=1.0), 4)
    p = ev0.init(0)
    g0 = ev0.evaluate(p, X, y, seed=0, step=0).grad
    g1 = ev1.evaluate(p, X, y, seed=0, step=0).grad
    assert not np.allclose(g0, g1)
    assert len(ev1.state()["prototypes"]) == 3


def test_bad_plans():
    model = deep()
    n = len(model.layers)
    with pytest.raises(ValueError, match="lies outside the model's body"):
        Evaluator(model, Plan(((0, 2), (2, n))), 4)
    with pytest.raises(ValueError, match="overlaps the block before it"):
        Evaluator(model, Plan(((0, 4), (2, 6))), 4)
    with pytest.raises(ValueError, match="without gaps"):
        Evaluator(model, Plan(((0, 2), (4, 6))), 4)
    with pytest.raises(ValueError, match="link \\(m\\) must be an integer >= 0"):
        Evaluator(model, Plan(blocks_of(model), link=-1), 4)
    with pytest.raises(ValueError, match="lam \\(lambda\\) must be >= 0"):
        Evaluator(model, Plan(blocks_of(model), lam=-0.5), 4)
    with pytest.raises(ValueError, match="mode must be one of"):
        Evaluator(model, Plan(blocks_of(model), mode="backprop"), 4)
    with pytest.raises(ValueError, match="one linear layer per block"):
        Evaluator(model, Plan(((0, 4), (4, 6))), 4)


def test_head_size_mismatch():
    model = deep()
    heads = (Dense(12, 4), Dense(10, 4))
    with pytest.raises(ValueError, match="the head of block 1 maps 10 -> 4 features, but block 1 "
                       "outputs 12"):
        Evaluator(model, Plan(blocks_of(model), heads=heads), 4)
    with pytest.raises(ValueError, match="one Dense head per block but the last"):
        Evaluator(model, Plan(blocks_of(model), heads=heads[:1]), 4)
    ok = Evaluator(model, Plan(blocks_of(model), heads=(Dense(12, 4), Dense(12, 4, bias=False))), 4)
    assert "aux1.bias" not in ok.layout.names


def test_unknown_evaluator_name():
    from zotrain.recipes.classification import ClassifierConfig
    with pytest.raises(ValueError, match="unknown evaluator .magic.; known: none, "
                       "global, local"):
        ClassifierConfig(evaluator="magic").validate()


def test_forward_equivalents_weigh_each_query_by_the_flops_it_runs(rng):
    from zotrain.zo.objective import ModelObjective

    rge = estimators.rge
    model = Sequential([TTLinear(12, 16, rank=2), ReLU(), TTLinear(16, 16, rank=2), ReLU(),
                        Dense(16, 3)])
    full = model.flops()
    assert full == 2 * (12 * 16 + 16 * 16 + 16 * 3)
    X, y = rng.standard_normal((8, 12)).astype(np.float32), rng.integers(0, 3, 8)
    # a query on a core of the second layer reruns that layer and the rest only
    obj = ModelObjective(model, X, y)
    p = model.init(0)
    obj.segment_losses(p, "2.core0", 0, 0, np.arange(3), np.ones(3), "gaussian")
    assert obj.flops == full + 3 * model.flops(2, 3) + 3 * model.flops(4)  # J, then the head
    # local weight perturbation, m = 0: the clean forward (blocks and every head), then
    # per block its queries on the block (with feature reuse) and its own head
    ev = Evaluator(model, Plan(blocks_of(model), mode="weight", estimator=rge(2, 1e-2)), 3)
    out = ev.evaluate(ev.init(0), X, y, seed=0, step=0)
    counts = out.counts["per_block"]
    heads = [h.flops() for h, _ in ev.heads]
    clean = sum(b.flops() for b in ev.bodies) + sum(heads)
    body = sum(c["head_forwards"] * h for c, h in zip(counts, heads))
    assert out.forward_equivalents * full > clean + body  # plus the block queries
    assert out.forward_equivalents < out.forward_passes  # each query is a fraction of a pass
    # the global plan counts like the plain ZO step's objective
    g = Evaluator(model, Plan(whole_body(model), mode="weight", estimator=rge(2, 1e-2)), 3)
    ge = g.evaluate(g.init(0), X, y, seed=0, step=0)
    assert ge.forward_equivalents > 1.0
    step = ZOStep(model, rge(2, 1e-2), [n for n in model.layout.names if not n.startswith("4.")])
    _, _, cost = step(model.init(0), X, y, seed=0, step=0)
    assert 0 < cost.equivalents <= cost.passes
