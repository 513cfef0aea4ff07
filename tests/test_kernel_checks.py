"""Every public kernel entry refuses bad shapes and dtypes with a message naming the argument
(before the jitted code could read or write out of bounds)."""

import numpy as np
import pytest

from zotrain.kernels import activity, elementwise, losses, random, tt

f32, f64, i64 = np.float32, np.float64, np.int64


def z(shape, dtype=f32):
    return np.zeros(shape, dtype)


META = np.array([[0, 1, 2, 3, 2], [12, 2, 2, 2, 1]], i64)  # 4 -> 6, 20 values
P = z((3, 20))
RELU = elementwise.RELU
LABELS = np.array([0, 1], i64)
# tt_left_head's arguments after XRt (1, 1, 4, 3, 2): Lt, bias, act, Wt, head_bias, out
HEAD = (z((1, 3, 5)), z((1, 20)), elementwise.SIN, z((1, 1, 20)), z((1, 1)), z((1, 2, 1)))

BAD = [
    ("meta", lambda: tt.tt_contract_many(z((1, 5, 4)), P, META.astype(np.int32), z((3, 5, 6)))),
    ("core 1 at 12 of shape \\(2, 2, 2, 1\\)", lambda: tt.tt_contract_many(
        z((1, 5, 4)), z((3, 19)), META, z((3, 5, 6)))),
    ("core 1 starts with rank 2", lambda: tt.tt_contract_many(
        z((1, 5, 4)), P, np.array([[0, 1, 2, 3, 1], [6, 2, 2, 2, 1]], i64), z((3, 5, 6)))),
    ("H", lambda: tt.tt_contract_many(z((1, 5, 4), f64), P, META, z((3, 5, 6)))),
    ("do not fit", lambda: tt.tt_contract_many(z((2, 5, 4)), P, META, z((3, 5, 6)))),
    ("do not fit", lambda: tt.tt_contract_many(z((1, 5, 4)), P, META, z((3, 5, 7)))),
    ("chunk must be", lambda: tt.tt_contract_many(z((1, 5, 4)), P, META, z((3, 5, 6)), 0)),
    ("XR", lambda: tt.tt_left_apply(z((2, 3, 1, 1, 4), f64), z((1, 3, 5)), z((1, 2, 5, 4)))),
    ("XR", lambda: tt.tt_left_apply(z((2, 3, 4)), z((1, 3, 5)), z((1, 2, 5, 4)))),
    ("Lt", lambda: tt.tt_left_apply(z((2, 3, 1, 1, 4)), z((1, 5, 3)).transpose(0, 2, 1),
                                    z((1, 2, 5, 4)))),
    ("do not fit", lambda: tt.tt_left_apply(z((2, 3, 1, 1, 4)), z((1, 2, 5)), z((1, 2, 5, 4)))),
    ("do not fit", lambda: tt.tt_left_apply(z((2, 3, 1, 1, 4)), z((1, 3, 5)), z((1, 2, 5, 3)))),
    ("do not fit", lambda: tt.tt_left_apply(z((2, 3, 1, 1, 4)), z((1, 3, 5)), z((2, 2, 5, 4)))),
    ("row0 must be an integer in \\[0, 1\\]", lambda: tt.tt_left_apply(
        z((2, 3, 1, 1, 4)), z((1, 3, 5)), z((1, 3, 5, 4)), 2)),
    ("chunk must be", lambda: tt.tt_left_apply(z((2, 3, 1, 1, 4)), z((1, 3, 5)),
                                               z((1, 2, 5, 4)), 0, 0)),
    ("XRt", lambda: tt.tt_left_head(z((1, 1, 4, 3, 2), f64), *HEAD)),
    ("Wt", lambda: tt.tt_left_head(z((1, 1, 4, 3, 2)), *HEAD[:3], z((1, 20)), *HEAD[4:])),
    ("do not fit", lambda: tt.tt_left_head(z((1, 1, 4, 3, 2)), z((1, 2, 5)), *HEAD[1:])),
    ("do not fit", lambda: tt.tt_left_head(z((1, 1, 4, 3, 2)), *HEAD[:3], z((1, 1, 21)),
                                           *HEAD[4:])),
    ("do not fit", lambda: tt.tt_left_head(z((1, 1, 4, 3, 2)), *HEAD[:5], z((1, 2, 2)))),
    ("row0 must be", lambda: tt.tt_left_head(z((1, 1, 4, 3, 2)), *HEAD, -1)),
    ("chunk must be", lambda: tt.tt_left_head(z((1, 1, 4, 3, 2)), *HEAD, 0, 1.5)),
    ("Y must be float32", lambda: elementwise.bias_activation_many(z((2, 3, 4), f64), P, -1, RELU)),
    ("holds no bias", lambda: elementwise.bias_activation_many(z((2, 3, 4)), P, 17, RELU)),
    ("H holds 2 inputs", lambda: losses.dense_loss_many(z((2, 5, 4)), P, 0, -1, 3, losses.XENT,
                                                        z(5, i64), None, 8)),
    ("hold no \\(4, 3\\) layer", lambda: losses.dense_loss_many(
        z((1, 5, 4)), P, 9, -1, 3, losses.XENT, z(5, i64), None, 8)),
    ("labels must be 5 classes", lambda: losses.dense_loss_many(
        z((1, 5, 4)), P, 0, -1, 3, losses.XENT, np.full(5, 3, i64), None, 8)),
    ("targets must be", lambda: losses.dense_loss_many(z((1, 5, 4)), P, 0, -1, 3, losses.MSE,
                                                       None, z((5, 2), f64), 8)),
    ("queries must be int64", lambda: random.directions(0, 0, z(3, np.int32), 4, random.GAUSSIAN)),
    ("dist must be", lambda: random.directions(0, 0, z(3, i64), 4, 7)),
    ("must lie within 20", lambda: random.perturb_into(
        z((1, 20)), z(20), np.array([10], i64), np.array([11], i64), 0, 0, z(1, i64), z(1, f64),
        random.GAUSSIAN)),
    ("do not agree", lambda: random.perturb_into(
        z((2, 20)), z(20), np.array([0], i64), np.array([4], i64), 0, 0, z(1, i64), z(1, f64),
        random.GAUSSIAN)),
    ("block >= 1", lambda: random.accumulate(
        z(20), np.array([0], i64), np.array([4], i64), 0, 0, z(2, i64), z(2, f64),
        random.GAUSSIAN, 0)),
    ("labels hold 2 examples", lambda: activity.activity_cge_head(
        z((3, 4)), RELU, z((4, 2)), z(2, f64), LABELS, 1e-3, 1.0)),
    ("head bias has 3 entries", lambda: activity.activity_cge_head(
        z((2, 4)), RELU, z((4, 2)), z(3, f64), LABELS, 1e-3, 1.0)),
    ("labels must lie in", lambda: activity.activity_cge_head(
        z((2, 4)), RELU, z((4, 2)), z(2, f64), np.array([0, 2], i64), 1e-3, 1.0)),
    ("does not take Z's 4 features", lambda: activity.activity_cge_head(
        z((2, 4)), RELU, z((5, 2)), z(2, f64), LABELS, 1e-3, 1.0)),
    ("shapes do not chain", lambda: activity.activity_cge_link(
        z((2, 4)), RELU, z((4, 3)), z((2, 5)), RELU, z((3, 2)), z(2, f64), LABELS, 1e-3, 1.0)),
    ("V must be", lambda: activity.activity_cge_link_relu(
        z((2, 4)), RELU, z((4, 3)), z((2, 3)), z((2, 4, 3)), z((3, 2)), z(2, f64), LABELS, 1e-3,
        1.0)),
]


@pytest.mark.parametrize("match,call", BAD, ids=[m for m, _ in BAD])
def test_bad_kernel_arguments_are_named(match, call):
    with pytest.raises(ValueError, match=match):
        call()


def test_the_table_runs_when_the_arguments_are_right():
    """The same calls with fitting arguments pass the checks (so each case above fails for
    the one thing it breaks) and compute: outputs start as NaN and must come back written
    with what zero inputs give (zeros; log 3 for three zero logits)."""
    def nan(shape):
        return np.full(shape, np.nan, f32)

    out = nan((3, 5, 6))
    np.testing.assert_array_equal(tt.tt_contract_many(z((1, 5, 4)), P, META, out), 0)
    Y = nan((1, 3, 5, 4))
    tt.tt_left_apply(z((2, 3, 1, 1, 4)), z((1, 3, 5)), Y, 1, 1)
    assert np.isnan(Y[:, 0]).all() and (Y[:, 1:] == 0).all()  # rows from row0 = 1 only
    head_out = nan((1, 2, 1))
    tt.tt_left_head(z((1, 1, 4, 3, 2)), *HEAD[:-1], head_out, 0, 1)
    np.testing.assert_array_equal(head_out, 0)
    for sign in (-1, 1):
        Yb = np.full((2, 3, 4), sign, f32)
        assert elementwise.bias_activation_many(Yb, P[:2], 16, RELU) is Yb
        np.testing.assert_array_equal(Yb, max(sign, 0))
    np.testing.assert_allclose(losses.dense_loss_many(z((1, 5, 4)), P, 0, 12, 3, losses.XENT,
                                                      z(5, i64), None, 8), np.log(3))
    Pp, base = nan((1, 20)), np.arange(20, dtype=f32)
    random.perturb_into(Pp, base, np.array([10], i64), np.array([10], i64), 0, 0, z(1, i64),
                        z(1, f64), random.GAUSSIAN)
    np.testing.assert_array_equal(Pp[0], base)  # scale 0: the parameters themselves
    D = activity.activity_cge_link_relu(z((2, 4)), RELU, z((4, 3)), z((2, 3)), z((2, 4, 2)),
                                        z((3, 2)), z(2, f64), LABELS, 1e-3, 1.0)
    assert D.shape == (2, 4) and not D.any()


def test_kernels_taking_a_function_are_not_cached_on_disk():
    """Numba keys such a signature by the function object: a disk cache never hits in a new
    process and its stale index entries later fail to save (numba issue #9348)."""
    import inspect

    from numba.core.dispatcher import Dispatcher

    takes_function = []
    for module in (activity, elementwise, losses, random, tt):
        for name, obj in vars(module).items():
            if isinstance(obj, Dispatcher) and (
                    {"act", "act_n", "moved_loss"} & set(inspect.signature(obj.py_func).parameters)
                    or name == "_linked_moved_loss"):  # its ctx tuple holds act_n
                takes_function.append(name)
                assert type(obj._cache).__name__ == "NullCache", name
    assert {"_bias_act_many", "_activity_cge_head", "_central_row"} <= set(takes_function)
