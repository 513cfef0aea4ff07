"""The public entry points under bad input: NaN, inf, huge, empty, wrong-dtype and
non-contiguous arrays.  Each call ends in a ``ValueError`` (``ZotrainError``,
``DataError``, ``ExportError`` ...) with a message, or in a correct result: the same as for
the clean float32 array, or NaN where NaN went in.  Never another exception, a crash or a
hang (every call runs under an alarm)."""

import signal
import warnings

import numpy as np
import pytest

from zotrain import ClassifierConfig, Dataset, Dense, ReLU, Sequential, TTLinear, Tanh
from zotrain import train_classifier
from zotrain.export import to_onnx
from zotrain.pinn import Problem

RNG = np.random.default_rng(7)
X = RNG.standard_normal((6, 16)).astype(np.float32)
Y = np.arange(6) % 4


def model(act=ReLU):
    return Sequential([TTLinear(16, 12, rank=2, in_modes=(4, 4), out_modes=(3, 4)), act(),
                       Dense(12, 4)])


def outcome(call, seconds=60):
    """``("error", message)`` for a ValueError, ``("ok", result)`` otherwise; any other
    exception fails the test, and so does a call running past ``seconds``."""
    def alarm(*_):
        raise TimeoutError(f"no answer within {seconds} s")

    old = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(seconds)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return "ok", call()
    except ValueError as e:
        assert str(e).strip(), "an error without a message"
        return "error", str(e)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def corrupt(a, kind):
    a = np.asarray(a)
    return {
        "nan": lambda: np.where(np.arange(a.size).reshape(a.shape) == 1, np.nan, a),
        "inf": lambda: np.where(np.arange(a.size).reshape(a.shape) == 1, -np.inf, a),
        "huge": lambda: a.astype(np.float64) * 1e300,
        "empty": lambda: a[:0],
        "complex": lambda: a.astype(complex),
        "text": lambda: a.astype(str),
        "object": lambda: a.astype(object),
        "none": lambda: None,
        "scalar": lambda: np.float32(1.0),
        "transposed": lambda: a.T,
        "extra-axis": lambda: a[None],
    }[kind]()


SAME = {  # variants that must give the clean array's result exactly
    "float64": lambda a: np.asarray(a, np.float64),
    "fortran": np.asfortranarray,
    "strided": lambda a: np.repeat(a, 2, axis=-1)[..., ::2],
    "list": lambda a: np.asarray(a).tolist(),
}
BAD = ["nan", "inf", "huge", "empty", "complex", "text", "object", "none", "scalar",
       "transposed", "extra-axis"]


@pytest.mark.parametrize("act", [ReLU, Tanh])
@pytest.mark.parametrize("kind", BAD)
def test_model_inputs(act, kind):
    m = model(act)
    p = m.init(0)
    for call in (lambda x: m.apply(p, x), lambda x: m.apply_many(p[None], x),
                 lambda x: m.loss_many(p[None], x, Y)):
        status, _ = outcome(lambda: call(corrupt(X, kind)))
        assert status == "error", kind  # every bad input is refused by name


@pytest.mark.parametrize("kind", list(SAME))
def test_model_inputs_in_other_layouts_give_the_same_result(kind):
    m = model()
    p = m.init(0)
    P = np.stack([p, m.init(1)])
    for got, want in ((m.apply(p, SAME[kind](X)), m.apply(p, X)),
                      (m.apply(SAME[kind](p), X), m.apply(p, X)),
                      (m.apply_many(SAME[kind](P), X), m.apply_many(P, X)),
                      (m.loss_many(SAME[kind](P), SAME[kind](X), Y), m.loss_many(P, X, Y))):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("act", [ReLU, Tanh])
@pytest.mark.parametrize("kind", [k for k in BAD if k not in ("transposed", "extra-axis")])
def test_model_parameters(act, kind):
    m = model(act)
    p = m.init(0)
    for call in (lambda q: m.apply(q, X), lambda q: m.apply_many(np.atleast_2d(q), X),
                 lambda q: m.loss_many(np.atleast_2d(q), X, Y)):
        status, result = outcome(lambda: call(corrupt(p, kind)))
        if kind in ("nan", "inf", "huge"):  # a correct result: NaN or inf never hidden
            assert status == "ok" and not np.all(np.isfinite(result)), kind
        else:
            assert status == "error", kind


@pytest.mark.parametrize("kind", ["float", "negative", "too-large", "short", "text", "nan"])
def test_model_targets(kind):
    m = model()
    y = {"float": Y.astype(float), "negative": Y - 1, "too-large": Y + 4, "short": Y[:-1],
         "text": Y.astype(str), "nan": np.where(Y == 0, np.nan, Y)}[kind]
    assert outcome(lambda: m.loss_many(m.init(0)[None], X, y))[0] == "error"


@pytest.mark.parametrize("kind", BAD + ["float-labels"])
@pytest.mark.parametrize("which", ["x_train", "y_train", "x_test", "y_test"])
def test_dataset_from_arrays(kind, which):
    arrays = dict(x_train=X, y_train=Y, x_test=X[:3], y_test=Y[:3])
    if kind == "float-labels":
        if which.startswith("x"):
            return
        arrays[which] = np.asarray(arrays[which], float) + 0.5
    elif not (which.startswith("y") and kind == "transposed"):  # a 1-D transpose is itself
        arrays[which] = corrupt(arrays[which], kind)
    else:
        return
    status, _ = outcome(lambda: Dataset.from_arrays(**arrays))
    if which.startswith("x") and kind == "transposed":  # (16, 6): a width mismatch
        assert status == "error"
    else:
        assert status == "error", (which, kind)


@pytest.mark.parametrize("kind", list(SAME))
def test_dataset_from_arrays_in_other_layouts(kind):
    d = Dataset.from_arrays(SAME[kind](X), Y, SAME[kind](X[:3]), Y[:3])
    np.testing.assert_array_equal(d.x_train, X)
    assert d.x_train.flags.c_contiguous and d.x_train.dtype == np.float32


def _problem(**change):
    base = dict(name="fuzz", dim=2, time_index=None, lower=(0.0, 0.0), upper=(1.0, 1.0),
                residual=lambda x, u, grad, lap, u_t: u - lap,
                boundary=lambda x: x[:, 0] * x[:, 1])
    return Problem(**dict(base, **change))


@pytest.mark.parametrize("change", [
    dict(lower=(np.nan, 0.0)), dict(upper=(np.inf, 1.0)), dict(lower=(1e308, 0), upper=(-1e308, 1)),
    dict(dim=0, lower=(), upper=()), dict(dim=2.5), dict(dim="2"), dict(lower=(0.0,)),
    dict(lower="ab"), dict(residual=None), dict(residual=lambda x, u, g, l, t: u[:, None]),
    dict(residual=lambda x, u, g, l, t: u * np.nan), dict(boundary=lambda x: x),
    dict(boundary=lambda x: np.full(len(x), np.inf)), dict(time_index=7), dict(name=""),
], ids=str)
def test_problems(change):
    """(A problem checks its functions on a few points: ``Problem.check``, which training
    calls first.)"""
    assert outcome(lambda: _problem(**change).check())[0] == "error"


@pytest.mark.parametrize("change", [
    dict(epochs=0), dict(epochs=1.5), dict(batch_size=-1), dict(batch_size=10 ** 6),
    dict(lr=float("nan")), dict(lr=float("inf")), dict(mu="a"), dict(queries=0),
    dict(seed=-1), dict(seed="0"), dict(train_limit=0), dict(val_size=-3),
    dict(evaluator="nonsense"), dict(estimator="adam"), dict(optimizer="lbfgs"),
], ids=str)
def test_train_classifier_settings(tmp_path, change):
    data = Dataset.from_arrays(np.tile(X, (20, 1)), np.tile(Y, 20), X, Y)
    c = ClassifierConfig(**dict(dict(epochs=1, batch_size=20), **change))
    assert outcome(lambda: train_classifier(model(), data, c, tmp_path, progress=False))[0] \
        == "error"
    assert not list(tmp_path.iterdir())  # nothing written for a refused run


def test_train_classifier_on_data_of_another_width_or_more_classes(tmp_path):
    wide = Dataset.from_arrays(RNG.standard_normal((60, 17)), np.arange(60) % 4,
                               RNG.standard_normal((6, 17)), Y)
    many = Dataset.from_arrays(np.tile(X, (10, 1)), np.arange(60) % 6, X, Y)
    for data in (wide, many):
        assert outcome(lambda: train_classifier(model(), data, ClassifierConfig(epochs=1),
                                                tmp_path, progress=False))[0] == "error"


@pytest.mark.parametrize("kind", [k for k in BAD if k != "transposed"])
def test_export(tmp_path, kind):
    m = model()
    status, _ = outcome(lambda: to_onnx(m, corrupt(m.init(0), kind), tmp_path / "m.onnx"))
    assert status == "error", kind
    assert not (tmp_path / "m.onnx").exists()


def test_export_to_a_missing_directory(tmp_path):
    m = model()
    assert outcome(lambda: to_onnx(m, m.init(0), tmp_path / "no" / "m.onnx"))[0] == "error"
