"""Every kernel against its slow NumPy reference, on random inputs of several shapes."""

import numpy as np
import pytest

from zotrain.kernels import elementwise
from zotrain.kernels.losses import MSE, XENT, dense_loss_many
from zotrain.kernels.tt import contraction_work, tt_contract_many, tt_left_apply, tt_left_head
from zotrain.nn.tt import random_tt_matrix
from tests import reference
from tests.test_tt import random_shape


def rel_err(a, b):
    return np.abs(np.asarray(a, np.float64) - b).max() / max(np.abs(b).max(), 1e-30)


def pack(core_sets):
    """Flatten Q lists of cores into P (Q, n) and the kernels' core table."""
    P = np.stack([np.concatenate([c.ravel() for c in cores]) for cores in core_sets])
    P = P.astype(np.float32)
    sizes = [c.size for c in core_sets[0]]
    offsets = np.cumsum([0] + sizes)[:-1]
    meta = np.array([(off,) + c.shape for off, c in zip(offsets, core_sets[0])], np.int64)
    return P, meta


def random_cores(rng, Q):
    in_modes, out_modes, ranks = random_shape(rng)
    seed = int(rng.integers(1 << 30))
    sets = [random_tt_matrix(in_modes, out_modes, ranks, seed=seed + q) for q in range(Q)]
    return sets, int(np.prod(in_modes)), int(np.prod(out_modes))


@pytest.mark.parametrize("case", range(10))
@pytest.mark.parametrize("shared", [True, False])
def test_tt_contract_many(case, shared):
    rng = np.random.default_rng(50 + case)
    Q = 3
    sets, n_in, n_out = random_cores(rng, Q)
    P, meta = pack(sets)
    B = int(rng.integers(1, 40))
    H = rng.standard_normal((1 if shared else Q, B, n_in)).astype(np.float32)
    for chunk in (None, 1, 3, 64):
        Y = tt_contract_many(H, P, meta, np.empty((Q, B, n_out), np.float32), chunk)
        for q in range(Q):
            ref = H[0 if shared else q].astype(np.float64) @ reference.tt_dense(sets[q])
            assert rel_err(Y[q], ref) < 1e-5


def _left_case(rng):
    """A random left-half problem: XR ``(B, A, Q, R, G)``, Lt ``(Q, A R, E)``, and the
    product ``Z[q, b, e, g] = sum_{a, r} Lt[q, a R + r, e] XR[b, a, q, r, g]`` in float64."""
    B, A, Q, R, G, E = (int(v) for v in rng.integers(1, [40, 5, 4, 4, 35, 9]))
    XR = rng.standard_normal((B, A, Q, R, G)).astype(np.float32)
    Lt = rng.standard_normal((Q, A * R, E)).astype(np.float32)
    Z = np.einsum("qke,bkqg->qbeg", Lt.astype(np.float64),
                  XR.transpose(0, 1, 3, 2, 4).reshape(B, A * R, Q, G).astype(np.float64))
    return XR, Lt, Z


@pytest.mark.parametrize("case", range(8))
def test_tt_left_apply(case):
    """Every set's left half on every row against einsum in float64: every chunk size,
    written at an offset into a larger output (rows outside it untouched)."""
    rng = np.random.default_rng(300 + case)
    XR, Lt, Z = _left_case(rng)
    (B, _, Q, _, G), E = XR.shape, Lt.shape[2]
    for chunk, row0 in ((1, 0), (3, 2), (16, 5), (1000, 1)):
        Y = np.full((Q, B + 6, E, G), np.nan, np.float32)
        assert tt_left_apply(XR, Lt, Y, row0, chunk) is Y
        assert rel_err(Y[:, row0:row0 + B], Z) < 1e-5
        assert np.isnan(Y[:, :row0]).all() and np.isnan(Y[:, row0 + B:]).all()


@pytest.mark.parametrize("case", range(8))
@pytest.mark.parametrize("act,fn", [(elementwise.SIN, np.sin), (elementwise.TANH, np.tanh),
                                    (elementwise.RELU, lambda x: np.maximum(x, 0))])
def test_tt_left_head(case, act, fn):
    """The left half, bias, activation and a dense head in one pass against the three
    steps in float64: one and several head outputs, every chunk size, an offset."""
    rng = np.random.default_rng(700 + case)
    XR, Lt, Z = _left_case(rng)
    (B, A, Q, R, G), E = XR.shape, Lt.shape[2]
    XRt = np.ascontiguousarray(XR.transpose(2, 3, 4, 1, 0))  # (Q, R, G, A, B): rows last
    bias = rng.standard_normal((Q, E * G)).astype(np.float32)
    for n_out in (1, 3):
        Wt = rng.standard_normal((Q, n_out, E * G)).astype(np.float32)
        hb = rng.standard_normal((Q, n_out)).astype(np.float32)
        ref = np.einsum("qbf,qjf->qbj", fn(Z.reshape(Q, B, E * G) + bias[:, None]), Wt) \
            + hb[:, None]
        scale = np.abs(Wt).sum(-1).max()  # the head sums E G terms: errors scale with |W|_1
        for chunk, row0 in ((1, 0), (7, 3), (128, 1)):
            out = np.full((Q, B + 4, n_out), np.nan, np.float32)
            assert tt_left_head(XRt, Lt, bias, act, Wt, hb, out, row0, chunk) is out
            assert np.abs(out[:, row0:row0 + B] - ref).max() < 2e-6 * scale
            assert np.isnan(out[:, :row0]).all() and np.isnan(out[:, row0 + B:]).all()


@pytest.mark.parametrize("limit", [1.0, 4.0, 100.0, 1e4, 1e5])
def test_sin32_is_within_its_stated_error(limit, rng):
    """The float32 sine against float64 ``np.sin`` on |x| <= limit: within 1.5e-7 (float32
    rounding alone is up to 3e-8); through ``bias_activation_many`` with and without a bias."""
    x = rng.uniform(-limit, limit, (3, 211, 97)).astype(np.float32)
    P = np.zeros((1, 97), np.float32)
    for off in (-1, 0):
        y = elementwise.bias_activation_many(x.copy(), P, off, elementwise.SIN)
        assert np.abs(y - np.sin(x.astype(np.float64))).max() < 1.5e-7


@pytest.mark.parametrize("case", range(10))
def test_contraction_work_is_the_largest_intermediate(case):
    rng = np.random.default_rng(80 + case)
    sets, n_in, _ = random_cores(rng, 1)
    H = rng.standard_normal((2, n_in))
    Y, largest = reference.tt_contract_steps(H, sets[0])
    np.testing.assert_allclose(Y, H @ reference.tt_dense(sets[0]), rtol=1e-10, atol=1e-10)
    assert contraction_work(pack(sets)[1]) == largest


@pytest.mark.parametrize("act,fn", [(elementwise.RELU, lambda x: np.maximum(x, 0)),
                                    (elementwise.TANH, np.tanh), (elementwise.SIN, np.sin),
                                    (elementwise.IDENTITY, lambda x: x)])
@pytest.mark.parametrize("shape", [(1, 1, 1), (3, 17, 5), (2, 4, 64)])
def test_bias_activation_many(act, fn, shape, rng):
    Q, B, F = shape
    Y = rng.standard_normal(shape).astype(np.float32)
    P = rng.standard_normal((Q, F + 3)).astype(np.float32)
    with_bias = elementwise.bias_activation_many(Y.copy(), P, 3, act)
    np.testing.assert_allclose(with_bias, fn(Y + P[:, None, 3:]), rtol=1e-6, atol=1e-6)
    no_bias = elementwise.bias_activation_many(Y.copy(), P, -1, act)
    np.testing.assert_allclose(no_bias, fn(Y), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("shape", [(1, 1, 3, 2), (3, 37, 20, 10), (2, 130, 7, 1)])
@pytest.mark.parametrize("shared", [True, False])
@pytest.mark.parametrize("bias", [True, False])
def test_dense_loss_many(shape, shared, bias, rng):
    Q, B, F, C = shape
    H = rng.standard_normal((1 if shared else Q, B, F)).astype(np.float32)
    P = rng.standard_normal((Q, 5 + F * C + C)).astype(np.float32)
    labels = rng.integers(0, C, B)
    targets = rng.standard_normal((B, C))
    b_off = 5 + F * C if bias else -1
    for chunk in (1, 64):
        xe = dense_loss_many(H, P, 5, b_off, C, XENT, labels, np.zeros((1, 1)), chunk)
        se = dense_loss_many(H, P, 5, b_off, C, MSE, np.zeros(1, np.int64), targets, chunk)
        for q in range(Q):
            W = P[q, 5:5 + F * C].reshape(F, C).astype(np.float64)
            Z = H[0 if shared else q] @ W + (P[q, b_off:b_off + C] if bias else 0.0)
            assert xe[q] == pytest.approx(reference.xent(Z, labels), rel=1e-5)
            assert se[q] == pytest.approx(reference.mse(Z, targets), rel=1e-5)
