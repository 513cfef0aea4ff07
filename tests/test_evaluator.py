"""The hybrid ZO/local evaluator."""

import numpy as np
import pytest

from zotrain import GELU, Dense, ReLU, Sequential, Tanh, TTLinear
from zotrain.zo import estimators
from zotrain.zo.evaluator import Evaluator, Plan, blocks_of, whole_body
from zotrain.zo.steps import ZOStep
from tests import reference


def deep(width=12, act=ReLU):
    return Sequential([
        TTLinear(16, width, rank=2, in_modes=(4, 4), out_modes=(3, 4)), act(),
        TTLinear(width, width, rank=2, in_modes=(3, 4), out_modes=(3, 4)), act(),
        Dense(width, width), act(),
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
        # each evaluation: its head, and `linked` further blocks with their heads; each
        # query also runs this block (the clean run is the evaluator's clean forward's)
        assert c["head_forwards"] == evaluations * (1 + linked)
        assert c["block_forwards"] == queries + evaluations * linked


def test_global_plan_reproduces_the_plain_estimator(batch):
    X, y = batch
    model = deep()
    est = estimators.rge(6, 1e-3)
    ev = Evaluator(model, Plan(whole_body(model), mode="weight", estimator=est), 4)
    p = ev.init(0)
    assert ev.n_params == model.n_params
    out = ev.evaluate(p, X, y, seed=5, step=2)
    body = [n for n in model.layout.names if not n.startswith("6.")]
    grad, loss, passes = ZOStep(model, est, body)(p, X, y, seed=5, step=2)[:3]
    np.testing.assert_array_equal(out.grad, grad)
    assert out.block_losses[-1] == pytest.approx(loss)


def reference_local_loss(ev, q, X, y, k, link=0, lam=1.0, means=None, proto=0.0):
    """Block k's local loss in float64, layer by layer: its head's cross-entropy, lam times
    the next ``link`` heads' on the output run on through their blocks, and the prototype
    term ``proto/2 * mean_b |h_b/|h_b| - means[y_b]|^2``."""
    blocks = ev.blocks
    h = np.asarray(X, np.float64)
    for j in range(k + 1):
        h = reference.forward(blocks.bodies[j], blocks.body_params(q, j), h)

    def head(j, h):
        return reference.xent(reference.forward(blocks.heads[j][0], blocks.head_params(q, j), h), y)

    total = head(k, h)
    if means is not None:
        r = h / np.linalg.norm(h, axis=1, keepdims=True) - means[y]
        total += 0.5 * proto * np.mean(np.sum(r * r, axis=1))
    for j in range(k + 1, min(k + link, len(blocks) - 1) + 1):
        h = reference.forward(blocks.bodies[j], blocks.body_params(q, j), h)
        total += lam * head(j, h)
    return total


def assert_matches_finite_differences(ev, grad, q, names, loss, rel, entries=5):
    q = q.astype(np.float64)
    for name in names:
        seg = ev.layout[name]
        for j in range(0, seg.size, max(1, seg.size // entries)):
            e = np.zeros_like(q)
            e[seg.offset + j] = 1e-6
            num = (loss(q + e) - loss(q - e)) / 2e-6
            assert grad[seg.offset + j] == pytest.approx(num, rel=rel, abs=1e-5), (name, j)


@pytest.mark.parametrize("lam", [1.0, 0.3])
def test_activity_link_gradient_matches_finite_differences(batch, lam):
    """m = 1: block k's update is the gradient of L_k + lam * L_{k+1}; the last block has
    nothing to link to, so its update is its greedy one."""
    X, y = batch
    model = deep()
    ev = Evaluator(model, Plan(blocks_of(model), link=1, lam=lam, mu=1e-4), 4)
    p = ev.init(3)
    out = ev.evaluate(p, X, y, seed=0, step=0)
    for k, names in enumerate([("0.core0", "0.core1", "0.bias"), ("2.core0", "2.bias"),
                               ("4.weight", "4.bias")]):
        assert_matches_finite_differences(
            ev, out.grad, p, names, lambda q: reference_local_loss(ev, q, X, y, k, 1, lam),
            rel=1e-3)


def test_prototypes_update_towards_the_next_blocks_class_means(batch):
    X, y = batch
    model = deep()
    ev = Evaluator(model, Plan(blocks_of(model), proto=1.0, proto_momentum=0.75), 4)
    p = ev.init(0)
    ev.evaluate(p, X, y, seed=0, step=0)
    h = [np.asarray(X, np.float64)]
    for j in range(3):
        h.append(reference.forward(ev.blocks.bodies[j], ev.blocks.body_params(p, j), h[-1]))
    for k in range(3):
        src = h[min(k + 2, 3)]
        n = src / np.linalg.norm(src, axis=1, keepdims=True)
        for c in range(4):
            expected = 0.25 * n[y == c].mean(0) if (y == c).any() else np.zeros(12)
            np.testing.assert_allclose(ev.prototypes.means[k][c], expected, atol=1e-6)
    assert len(ev.state()["prototypes"]) == 3


@pytest.mark.parametrize("mode", ["activity", "weight"])
def test_prototype_term_matches_finite_differences(batch, mode):
    """The update of every block with prototype targets is the gradient of its head loss
    plus the prototype term (weight mode: a full coordinate-wise estimate, float32).  Tanh:
    the term has no gradient where a ReLU block outputs a zero row."""
    X, y = batch
    model = deep(act=Tanh)
    # mu 3e-3: the float32 rounding of a central difference at 1e-3 is ~1.5e-5 here, above
    # the 1e-5 tolerance on some entries (checked on every entry and three batches)
    est = estimators.get("cge", estimators.Options(mu=3e-3, fraction=1.0))
    plan = Plan(blocks_of(model), mode=mode, estimator=est, proto=0.7, mu=1e-4)
    ev = Evaluator(model, plan, 4)
    p = ev.init(5)
    ev.evaluate(p, X, y, seed=0, step=0)  # the prototypes now hold class means
    out = ev.evaluate(p, X, y, seed=0, step=1)  # and move once more before the update
    means = ev.prototypes.means
    for k, names in enumerate([("0.core0", "0.bias"), ("2.core1",), ("4.weight", "4.bias")]):
        assert_matches_finite_differences(
            ev, out.grad, p, names,
            lambda q: reference_local_loss(ev, q, X, y, k, means=means[k], proto=0.7),
            rel=1e-3 if mode == "activity" else 3e-3)


@pytest.mark.parametrize("act", [Tanh(), GELU()])
def test_prototype_activity_gradient_matches_finite_differences(act, rng):
    from zotrain.zo.prototypes import Prototypes

    B, F = 7, 5
    Z = rng.standard_normal((B, F))
    labels = rng.integers(0, 3, B)
    proto = Prototypes(0.8, 0.9, 3)
    proto.means = [rng.standard_normal((3, F))]

    def term(Z):
        h = act.reference(Z)
        r = h / np.linalg.norm(h, axis=1, keepdims=True) - proto.means[0][labels]
        return 0.4 * np.mean(np.sum(r * r, axis=1))

    h = act.reference(Z)
    g = proto.activity_grad(0, Z.astype(np.float32), act.scalar, h, labels, 1e-3)
    num = np.zeros_like(Z)
    for idx in np.ndindex(Z.shape):
        e = np.zeros_like(Z)
        e[idx] = 1e-6
        num[idx] = (term(Z + e) - term(Z - e)) / 2e-6
    np.testing.assert_allclose(g, num, rtol=1e-3, atol=1e-5)


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
    heads = [h.flops() for h, _ in ev.blocks.heads]
    clean = sum(b.flops() for b in ev.blocks.bodies) + sum(heads)
    body = sum(c["head_forwards"] * h for c, h in zip(counts, heads))
    assert out.forward_equivalents * full > clean + body  # plus the block queries
    assert out.forward_equivalents < out.forward_passes  # each query is a fraction of a pass
    # the global plan counts like the plain ZO step's objective
    g = Evaluator(model, Plan(whole_body(model), mode="weight", estimator=rge(2, 1e-2)), 3)
    ge = g.evaluate(g.init(0), X, y, seed=0, step=0)
    assert ge.forward_equivalents > 1.0
    step = ZOStep(model, rge(2, 1e-2), [n for n in model.layout.names if not n.startswith("4.")])
    cost = step(model.init(0), X, y, seed=0, step=0).cost
    assert 0 < cost.equivalents <= cost.passes
