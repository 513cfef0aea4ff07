import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import zotrain
from zotrain import Dense, ReLU, Sequential, Sin, Tanh, TTLinear
from tests import reference
from tests.test_tt import random_shape

ACTS = [ReLU, Tanh, Sin]


def rel_err(a, b):
    return np.abs(np.asarray(a, np.float64) - b).max() / max(np.abs(b).max(), 1e-30)


def random_model(rng, method):
    in_modes, out_modes, ranks = random_shape(rng)
    n_in, n_out = int(np.prod(in_modes)), int(np.prod(out_modes))
    act = ACTS[int(rng.integers(3))]
    layers = [TTLinear(n_in, n_out, rank=ranks, in_modes=in_modes, out_modes=out_modes,
                       bias=bool(rng.integers(2)), method=method), act()]
    if rng.integers(2):  # a second TT layer fed by per-set activations
        i2, o2, r2 = random_shape(rng)
        o2 = o2[:len(i2)]
        from zotrain.nn.tt import factor_modes
        i2 = factor_modes(n_out, len(i2))
        layers += [TTLinear(n_out, int(np.prod(o2)), rank=r2, in_modes=i2, out_modes=o2,
                            bias=bool(rng.integers(2)), method=method), ACTS[int(rng.integers(3))]()]
        n_out = int(np.prod(o2))
    layers.append(Dense(n_out, int(rng.integers(1, 12)), bias=bool(rng.integers(2))))
    return Sequential(layers)


@pytest.mark.parametrize("method", ["dense", "contract", "halves", "auto"])
@pytest.mark.parametrize("case", range(8))
def test_apply_many_matches_reference(method, case):
    rng = np.random.default_rng(1000 * case + len(method))
    model = random_model(rng, method)
    Q, B = int(rng.integers(1, 5)), int(rng.integers(1, 30))
    P = np.stack([model.init(seed) for seed in range(Q)])
    P[:, :] += rng.standard_normal(P.shape).astype(np.float32) * 0.1  # non-zero biases
    X = rng.standard_normal((B, model.in_features)).astype(np.float32)
    Y = model.apply_many(P, X)
    assert Y.shape == (Q, B, model.out_features) and Y.dtype == np.float32
    for q in range(Q):
        ref = reference.forward(model, P[q], X)
        assert rel_err(Y[q], ref) < 1e-5
        assert rel_err(model.apply(P[q], X), ref) < 1e-5


@pytest.mark.parametrize("method", ["auto", "halves"])  # halves: the head fused with it
@pytest.mark.parametrize("case", range(4))
def test_loss_many_matches_reference(case, method):
    rng = np.random.default_rng(7 + case)
    model = random_model(rng, method)
    Q, B = 3, int(rng.integers(1, 100))
    P = np.stack([model.init(s) for s in range(Q)])
    X = rng.standard_normal((B, model.in_features)).astype(np.float32)
    labels = rng.integers(0, model.out_features, B)
    targets = rng.standard_normal((B, model.out_features))
    xe, se = model.loss_many(P, X, labels), model.loss_many(P, X, targets, loss="mse")
    assert xe.shape == se.shape == (Q,)
    for q in range(Q):
        out = reference.forward(model, P[q], X)
        assert xe[q] == pytest.approx(reference.xent(out, labels), rel=1e-5)
        assert se[q] == pytest.approx(reference.mse(out, targets), rel=1e-5)


def test_loss_many_without_final_dense(rng):
    model = Sequential([Dense(6, 4), Tanh()])
    P = np.stack([model.init(s) for s in range(2)])
    X = rng.standard_normal((9, 6)).astype(np.float32)
    labels = rng.integers(0, 4, 9)
    for q in range(2):
        out = reference.forward(model, P[q], X)
        assert model.loss_many(P, X, labels)[q] == pytest.approx(reference.xent(out, labels), rel=1e-5)


def test_reference_models():
    m = zotrain.mnist_mlp()
    assert (m.in_features, m.out_features) == (784, 10)
    assert m.layers[0].algorithm(500) == "dense"  # rank 8, width 1024: BLAS wins
    old = TTLinear(784, 1024, rank=8, in_modes=(4, 7, 7, 4), out_modes=(4, 8, 8, 4),
                   method="lean")  # an earlier release's name: every method is lean now
    assert old.method == "auto" and old.algorithm(500) == "dense"
    p = zotrain.pinn_mlp()
    assert (p.in_features, p.out_features) == (21, 1)
    assert p.layers[2].algorithm(500) == "contract"  # rank 2, four cores: contraction wins
    # rank 2, two cores, a wide input (heat100d's body): the input times the right half
    assert TTLinear(202, 512, rank=2).algorithm(500) == "halves"
    assert 1500 < p.n_params < 3000 and p.dense_params == 274433


def test_layout_and_unflatten():
    model = zotrain.mnist_mlp()
    params = model.init(0)
    assert params.dtype == np.float32 and params.shape == (model.n_params,)
    arrays = model.unflatten(params)
    assert list(arrays) == ["0.core0", "0.core1", "0.core2", "0.core3", "0.bias",
                            "2.weight", "2.bias"]
    assert arrays["0.core1"].shape == (8, 7, 8, 8)
    assert arrays["2.weight"].shape == (1024, 10)
    seg = model.layout["2.weight"]
    assert np.array_equal(params[seg.offset:seg.offset + seg.size], arrays["2.weight"].ravel())
    assert np.array_equal(model.flatten(arrays), params)


def test_same_seed_same_parameters_and_outputs(rng):
    model = zotrain.mnist_mlp()
    a, b, c = model.init(5), model.init(5), model.init(6)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    X = rng.standard_normal((20, 784)).astype(np.float32)
    assert np.array_equal(model.apply(a, X), model.apply(b, X))


THREAD_SCRIPT = """
import sys, numpy as np, zotrain
rng = np.random.default_rng(0)
out = {}
for name, model in (("mnist", zotrain.mnist_mlp()), ("pinn", zotrain.pinn_mlp()),
                    ("pinn100", zotrain.pinn_mlp(in_features=202, depth=1))):
    p = model.init(1)
    P = p + 0.01 * rng.standard_normal((5, p.size)).astype(np.float32)
    X = rng.standard_normal((67, model.in_features)).astype(np.float32)
    out[name] = model.apply_many(P, X)
    out[name + "_one"] = model.apply(p, X)
    target = rng.integers(0, model.out_features, 67) if name == "mnist" else rng.standard_normal((67, 1))
    out[name + "_loss"] = model.loss_many(P, X, target, "xent" if name == "mnist" else "mse")
np.savez(sys.argv[1], **out)
"""


def test_outputs_do_not_depend_on_thread_count(tmp_path):
    results = []
    for threads in ("1", "2"):
        path = tmp_path / f"out{threads}.npz"
        env = dict(os.environ, NUMBA_NUM_THREADS=threads)
        subprocess.run([sys.executable, "-c", THREAD_SCRIPT, str(path)], check=True, env=env,
                       cwd=Path(__file__).parent.parent)
        results.append(np.load(path))
    for key in results[0].files:
        assert np.array_equal(results[0][key], results[1][key]), key


# -- bad input ---------------------------------------------------------------

def test_bad_modes_product():
    with pytest.raises(ValueError, match=r"in_modes \(4, 7, 7\) multiply to 196, expected in_features = 784"):
        TTLinear(784, 1024, rank=2, in_modes=(4, 7, 7), out_modes=(4, 16, 16))
    with pytest.raises(ValueError, match="out_modes .* expected out_features = 1000"):
        TTLinear(784, 1000, rank=2, in_modes=(4, 7, 7, 4), out_modes=(4, 8, 8, 4))


def test_bad_ranks_in_layer():
    with pytest.raises(ValueError, match="rank must be >= 1"):
        TTLinear(16, 16, rank=0)
    with pytest.raises(ValueError, match="length n_modes"):
        TTLinear(16, 16, rank=(1, 2, 2, 1), in_modes=(4, 4), out_modes=(4, 4))


def test_bad_layer_arguments():
    with pytest.raises(ValueError, match="in_features must be a positive integer"):
        Dense(0, 3)
    with pytest.raises(ValueError, match="method must be one of"):
        TTLinear(16, 16, rank=2, method="fast")
    with pytest.raises(ValueError, match=r"layers\[2\] .* takes 5 features, but the layer before it gives 4"):
        Sequential([Dense(3, 4), ReLU(), Dense(5, 2)])
    with pytest.raises(ValueError, match="non-empty"):
        Sequential([])


@pytest.fixture
def small():
    model = Sequential([TTLinear(12, 8, rank=2), ReLU(), Dense(8, 3)])
    return model, model.init(0)


def test_bad_X(small):
    model, p = small
    with pytest.raises(ValueError, match="X has width 5, expected in_features = 12"):
        model.apply(p, np.zeros((4, 5), np.float32))
    with pytest.raises(ValueError, match="X must be 2-D .* got ndim 1"):
        model.apply(p, np.zeros(12, np.float32))
    with pytest.raises(ValueError, match="X must be 2-D .* got ndim 3"):
        model.apply_many(p[None], np.zeros((2, 3, 12), np.float32))
    bad = np.zeros((4, 12), np.float32)
    bad[1, 3] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        model.apply(p, bad)
    bad[1, 3] = np.inf
    with pytest.raises(ValueError, match="non-finite"):
        model.loss_many(p[None], bad, np.zeros(4, int))


def test_bad_P(small):
    model, p = small
    n = model.n_params
    with pytest.raises(ValueError, match=rf"P must be 2-D \(Q, n_params = {n}\), got shape \(2, {n + 1}\)"):
        model.apply_many(np.zeros((2, n + 1), np.float32), np.zeros((1, 12), np.float32))
    with pytest.raises(ValueError, match="P must be 2-D"):
        model.apply_many(p, np.zeros((1, 12), np.float32))
    with pytest.raises(ValueError, match=f"params must be 1-D with n_params = {n}"):
        model.apply(p[:-1], np.zeros((1, 12), np.float32))
    with pytest.raises(ValueError, match="at least one parameter set"):
        model.apply_many(np.zeros((0, n), np.float32), np.zeros((1, 12), np.float32))


def test_bad_targets(small):
    model, p = small
    X = np.zeros((4, 12), np.float32)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):
        model.loss_many(p[None], X, np.array([0, 1, 2, 3]))
    with pytest.raises(ValueError, match="int class labels of shape"):
        model.loss_many(p[None], X, np.zeros(4))
    with pytest.raises(ValueError, match=r"target must have shape \(4, 3\)"):
        model.loss_many(p[None], X, np.zeros((4, 2)), loss="mse")
    with pytest.raises(ValueError, match="loss must be one of"):
        model.loss_many(p[None], X, np.zeros(4, int), loss="hinge")


def test_pinn_mlp_depth():
    one = zotrain.pinn_mlp(in_features=5, width=8, depth=1)
    three = zotrain.pinn_mlp(in_features=5, width=8, depth=3)
    assert [type(l).__name__ for l in one.layers] == ["TTLinear", "Sin", "Dense"]
    assert len(three.layers) == 7 and three.layers[4].in_features == 8
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="depth must be an integer >= 1"):
            zotrain.pinn_mlp(depth=bad)
