"""Activity-perturbation kernels and the local rule against NumPy references."""

import numpy as np
import pytest

from zotrain.kernels import elementwise as E
from zotrain.kernels.activity import activity_cge_head, activity_cge_link, activity_cge_link_relu
from zotrain.nn import tt_split
from zotrain.zo.local_rule import LayerGradient, layer_gradient
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


def _random_cores(rng, seed, max_mode=4, max_rank=4):
    d = int(rng.integers(1, 5))
    in_modes = tuple(int(m) for m in rng.integers(1, max_mode + 1, d))
    out_modes = tuple(int(m) for m in rng.integers(1, max_mode + 1, d))
    ranks = (1,) + tuple(int(r) for r in rng.integers(1, max_rank + 1, d - 1)) + (1,)
    return random_tt_matrix(in_modes, out_modes, ranks, seed=seed, dtype=np.float64)


def test_dense_projection_reference_matches_finite_differences():
    rng = np.random.default_rng(0)
    cores = _random_cores(rng, 0, max_mode=3, max_rank=3)
    M = rng.standard_normal(tt_matrix_to_dense(cores).shape)
    grads = reference.tt_core_gradients_dense(cores, M)
    for k, core in enumerate(cores):
        num = np.zeros_like(core)
        for idx in np.ndindex(core.shape):
            cp = [c.copy() for c in cores]
            cp[k][idx] += 1e-6
            fp = np.sum(M * reference.tt_dense(cp))
            cp[k][idx] -= 2e-6
            num[idx] = (fp - np.sum(M * reference.tt_dense(cp))) / 2e-6
        np.testing.assert_allclose(grads[k], num, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("case", range(12))
def test_tt_core_gradients_from_inputs_equal_the_dense_projection(case):
    """From (X, D) by column slabs (any split, any slab group) = X^T D projected onto the
    cores (float64); the projection itself against the brute-force reference."""
    rng = np.random.default_rng(case)
    cores = _random_cores(rng, case)
    n_in, n_out = tt_matrix_to_dense(cores).shape
    B = int(rng.integers(1, 9))
    X, D = rng.standard_normal((B, n_in)), rng.standard_normal((B, n_out))
    expected = reference.tt_core_gradients_dense(cores, X.T @ D)
    for budget in (None, 1, 7, 10**9):  # narrowest slabs one at a time ... one slab
        for g, e in zip(tt_split.core_gradients(cores, X, D, budget), expected):
            np.testing.assert_allclose(g, e, rtol=1e-10, atol=1e-12)
    for g, e in zip(tt_split.tt_core_gradients(cores, X.T @ D), expected):
        np.testing.assert_allclose(g, e, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("case", range(12))
def test_slab_forward_equals_the_dense_product(case):
    rng = np.random.default_rng(100 + case)
    cores = _random_cores(rng, case)
    W = reference.tt_dense(cores)
    X = rng.standard_normal((int(rng.integers(1, 9)), W.shape[0]))
    for budget in (None, 1, 7, 10**9):
        np.testing.assert_allclose(tt_split.forward(cores, X, budget), X @ W, rtol=1e-10,
                                   atol=1e-12)


@pytest.mark.parametrize("case", range(12))
def test_halves_forward_equals_the_dense_product(case):
    """X times the right half, then the left half: every split point, passes of a few rows."""
    rng = np.random.default_rng(400 + case)
    cores = _random_cores(rng, 400 + case)
    W = reference.tt_dense(cores)
    X = rng.standard_normal((int(rng.integers(1, 30)), W.shape[0])).astype(np.float32)
    for m in range(len(cores) + 1):
        L, R = tt_split.left_product(cores[:m]), tt_split.right_product(cores[m:])
        for floats in (1, 50, tt_split.HALVES_FLOATS):
            out = np.full((1, len(X), W.shape[1]), np.nan, np.float32)
            with pytest.MonkeyPatch.context() as mp:
                mp.setattr(tt_split, "HALVES_FLOATS", floats)
                tt_split.halves_forward(L[None], R[None], X, out, {})
            np.testing.assert_allclose(out[0], X.astype(np.float64) @ W, rtol=1e-4,
                                       atol=1e-5 * np.abs(W).sum(0).max() * np.abs(X).max())
    with pytest.raises(ValueError, match="C-contiguous out"):  # a strided view of 3 rows
        tt_split.halves_forward(L[None], R[None], np.zeros((3, W.shape[0]), np.float32),
                                np.empty((1, 3, 2 * W.shape[1]), np.float32)[:, :, ::2])


def _core_sets(rng, seed, Q):
    """Q random core sets of one random TT shape (float64), and each set's dense matrix."""
    first = _random_cores(rng, seed)
    shapes = [c.shape for c in first]
    sets = [first] + [[rng.standard_normal(s) / np.sqrt(s[0] * s[1]) for s in shapes]
                      for _ in range(Q - 1)]
    return sets, [reference.tt_dense(c) for c in sets]


@pytest.mark.parametrize("case", range(8))
def test_stacked_halves_are_each_sets_halves(case):
    """Cores stacked over sets give stacked halves: each the set's own products, at every
    split (the left half of no cores broadcast over the sets)."""
    rng = np.random.default_rng(450 + case)
    sets, _ = _core_sets(rng, 450 + case, 3)
    stacked = [np.stack(c) for c in zip(*sets)]
    for budget in (None, 1, 10**6):
        m, L, R = tt_split.halves(stacked, budget)
        assert L.shape[0] == R.shape[0] == 3
        for q, cores in enumerate(sets):
            m_q, L_q, R_q = tt_split.halves(cores, budget)
            assert m_q == m
            np.testing.assert_allclose(L[q], L_q, rtol=1e-12, atol=1e-12)
            np.testing.assert_allclose(R[q], R_q, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("case", range(8))
@pytest.mark.parametrize("act,fn", [(E.SIN, np.sin), (E.TANH, np.tanh)])
def test_halves_for_many_sets_equal_each_dense_product(case, act, fn):
    """Q sets on one input: one product for all (``halves_forward``), and the same with the
    bias, activation and a dense head fused (``halves_head``), in passes of a few rows,
    against each set's dense matrix in float64."""
    rng = np.random.default_rng(500 + case)
    Q = int(rng.integers(1, 5))
    sets, dense = _core_sets(rng, 500 + case, Q)
    _, L, R = tt_split.halves([np.stack(c) for c in zip(*sets)])
    n_in, n_out = dense[0].shape
    X = rng.standard_normal((int(rng.integers(1, 30)), n_in)).astype(np.float32)
    Xd = X.astype(np.float64)
    bias = rng.standard_normal((Q, n_out)).astype(np.float32)
    Vt = rng.standard_normal((Q, 2, n_out)).astype(np.float32)
    c = rng.standard_normal((Q, 2)).astype(np.float32)
    for floats in (1, 50, 1 << 22):
        out = np.full((Q, len(X), n_out), np.nan, np.float32)
        head = np.full((Q, len(X), 2), np.nan, np.float32)
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(tt_split, "HALVES_FLOATS", floats)
            mp.setattr(tt_split, "HEAD_FLOATS", floats)
            tt_split.halves_forward(L, R, X, out, {})
            tt_split.halves_head(L, R, X, (bias, act, Vt, c), head, {})
        for q in range(Q):
            Z = Xd @ dense[q]
            scale = np.abs(dense[q]).sum(0).max() * np.abs(X).max()
            np.testing.assert_allclose(out[q], Z, rtol=1e-4, atol=1e-5 * scale)
            ref = fn(Z + bias[q]) @ Vt[q].T + c[q]
            np.testing.assert_allclose(head[q], ref, rtol=1e-4,
                                       atol=1e-5 * (1 + scale) * np.abs(Vt[q]).sum(1).max())


def test_halves_split_has_the_fewest_flops():
    """forward_split_point minimises 2 r (in out_R + in_L out) per row: (4,4,4,8) rank 2
    splits in the middle; its FLOPs are those of the two products, counted by brute force."""
    shapes = [(1, 4, 4, 2), (2, 4, 4, 2), (2, 4, 4, 2), (2, 8, 8, 1)]
    assert tt_split.forward_split_point(shapes) == 2
    assert tt_split.forward_split_point([(1, 5, 7, 1)]) == 0
    # X (B, 16, 32) @ R (32, 2*32) then the left half (16*2 -> 16) on (B, 32) blocks
    per_row = 2 * (16 * 32 * 64) + 2 * (32 * 16 * 32)
    # halves: core0 (1 x 32); (16 x 2) @ core1 (2 x 32); core3 (128 x 1); core2 (32 x 2) @ (2 x 64)
    build = 2 * (32 + 16 * 2 * 32 + 128 + 32 * 2 * 64)
    assert tt_split.halves_forward_flops(shapes, 10) == 10 * per_row + build


@pytest.mark.parametrize("method", ["dense", "contract", "halves"])
def test_tt_layer_training_allocates_nothing_of_the_dense_size(method):
    """A 4096 x 4096 TT layer (dense: 64 MiB in float32): its forward on a batch of 64 (by
    slabs or by the contraction kernel) and its local-rule gradient each allocate under a
    fifth of the dense matrix (the dense X^T D or the dense weight alone would be all of
    it)."""
    import tracemalloc

    from zotrain.nn.layers import TTLinear
    from zotrain.nn.sequential import Sequential

    model = Sequential([TTLinear(4096, 4096, rank=8, in_modes=(8, 8, 8, 8),
                                 out_modes=(8, 8, 8, 8), method=method)])
    params = model.init(0)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((64, 4096)).astype(np.float32)
    D = rng.standard_normal((64, 4096)).astype(np.float32)
    dense_bytes = 4096 * 4096 * 4
    model.apply(params, X)  # compile first: Numba's compiler allocates too, unrelated to
    layer_gradient(model, 0, params, X, D)  # the layer (a fresh checkout has no kernel cache)
    tracemalloc.start()
    try:
        Y = model.apply(params, X)
        _, forward_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        grads = layer_gradient(model, 0, params, X, D)
        _, gradient_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert max(forward_peak, gradient_peak) < dense_bytes / 5, (forward_peak, gradient_peak)
    cores = [model.unflatten(params)[f"0.core{k}"].astype(np.float64) for k in range(4)]
    Xd = X.astype(np.float64)
    np.testing.assert_allclose(Y, tt_split.forward(cores, Xd), rtol=1e-3,
                               atol=1e-3 * np.abs(Y).max())
    expected = tt_split.core_gradients(cores, Xd, D.astype(np.float64))
    for k in range(4):
        np.testing.assert_allclose(grads[f"0.core{k}"], expected[k], rtol=2e-3,
                                   atol=2e-3 * np.abs(expected[k]).max())


def _tt_dense_model_cases(seed, rows):
    """A TT layer and a Dense layer: ``(model, params, [(layer index, X, D)])`` with
    ``rows`` random rows of each layer's input ``X`` and pre-activation gradient ``D``."""
    from zotrain.nn.layers import Dense, TTLinear
    from zotrain.nn.sequential import Sequential

    model = Sequential([TTLinear(12, 8, rank=3, in_modes=(3, 4), out_modes=(2, 4)),
                        Dense(8, 3)])
    rng = np.random.default_rng(seed)
    cases = [(i, rng.standard_normal((rows, n_in)).astype(np.float32),
              rng.standard_normal((rows, n_out)).astype(np.float32))
             for i, (n_in, n_out) in enumerate([(12, 8), (8, 3)])]
    return model, model.init(seed), cases


def test_layer_gradient_accumulated_over_chunks_equals_one_batch():
    model, params, cases = _tt_dense_model_cases(2, 10)
    for i, X, D in cases:
        whole = layer_gradient(model, i, params, X, D)
        acc = LayerGradient(model, i, params)
        for s in (0, 3, 7):
            acc.add(X[s:s + {0: 3, 3: 4, 7: 3}[s]], D[s:s + {0: 3, 3: 4, 7: 3}[s]])
        parts = acc.result()
        assert parts.keys() == whole.keys()
        for name in whole:
            np.testing.assert_allclose(parts[name], whole[name], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("rows,method", [(3, "contract"), (40, "dense"), (3, "auto")])
def test_layer_gradient_of_a_tt_layer_by_either_path(rows, method):
    """Whatever the layer's forward method and the rows, the cores get the projection of
    X^T D and the bias the sum of D."""
    from zotrain.nn.layers import TTLinear
    from zotrain.nn.sequential import Sequential

    model = Sequential([TTLinear(12, 8, rank=3, in_modes=(3, 4), out_modes=(2, 4),
                                 method=method)])
    params = model.init(1)
    rng = np.random.default_rng(rows)
    X = rng.standard_normal((rows, 12)).astype(np.float32)
    D = rng.standard_normal((rows, 8)).astype(np.float32)
    g = layer_gradient(model, 0, params, X, D)
    arrays = model.unflatten(params)
    cores = [arrays[f"0.core{k}"].astype(np.float64) for k in range(2)]
    expected = reference.tt_core_gradients_dense(cores, X.T.astype(np.float64) @ D)
    for k in range(2):
        np.testing.assert_allclose(g[f"0.core{k}"], expected[k], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(g["0.bias"], D.sum(0), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("case", range(8))
def test_grouped_gradients_equal_each_groups_dense_projection(case):
    """One gradient per block of rows (any split, any cores): each block's X^T D projected
    onto the cores by the brute-force reference (float64)."""
    rng = np.random.default_rng(300 + case)
    cores = _random_cores(rng, case)
    n_in, n_out = tt_matrix_to_dense(cores).shape
    groups, n = int(rng.integers(1, 5)), int(rng.integers(1, 6))
    X = rng.standard_normal((groups * n, n_in))
    D = rng.standard_normal((groups * n, n_out))
    for budget in (1, 10**9):
        m, L, R = tt_split.halves(cores, budget)
        got = tt_split.project(cores, m, *tt_split.grouped_gradients(L, R, X, D, groups))
        for b in range(groups):
            rows = slice(b * n, (b + 1) * n)
            expected = reference.tt_core_gradients_dense(cores, X[rows].T @ D[rows])
            for g, e in zip(got, expected):
                assert g.shape == (groups,) + e.shape
                np.testing.assert_allclose(g[b], e, rtol=1e-10, atol=1e-12)


def test_layer_gradient_grouped_equals_one_gradient_per_group():
    """``LayerGradient.grouped`` of a TT and a Dense layer: block b's entries are the
    gradient of block b's rows alone; rows that do not split into equal blocks are
    refused."""
    model, params, cases = _tt_dense_model_cases(4, 15)
    for i, X, D in cases:
        got = LayerGradient(model, i, params).grouped(X, D, 3)
        for b in range(3):
            one = layer_gradient(model, i, params, X[5 * b:5 * b + 5], D[5 * b:5 * b + 5])
            assert got.keys() == one.keys()
            for name in one:
                np.testing.assert_allclose(got[name][b], one[name], rtol=1e-4, atol=1e-5)
        for groups in (0, 4):
            with pytest.raises(ValueError, match=f"15 rows of X and 15 of D do not make "
                               f"{groups} equal groups"):
                LayerGradient(model, i, params).grouped(X, D, groups)
