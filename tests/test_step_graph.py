"""The training step as one ONNX graph: the same parameters as zotrain's own step (to float32
rounding, several steps, two runtimes), standard operators only, and what it cannot express
named."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx.reference import ReferenceEvaluator

from zotrain import GELU, Dense, ReLU, Sequential, Sin, Tanh, TTLinear
from zotrain.export.onnx import ExportError
from zotrain.export.step import INPUTS, OUTPUTS, to_onnx_step
from zotrain.recipes.classification import ClassifierConfig, build_optimizer, build_step

MODELS = {
    "tt-relu": lambda: Sequential([TTLinear(16, 12, rank=2, in_modes=(4, 4), out_modes=(3, 4)),
                                   ReLU(), Dense(12, 4)]),
    "tt-tanh-tt-relu": lambda: Sequential([
        TTLinear(24, 12, rank=3, in_modes=(2, 3, 4), out_modes=(3, 2, 2)), Tanh(),
        TTLinear(12, 12, rank=2, in_modes=(3, 4), out_modes=(4, 3)), ReLU(), Dense(12, 5)]),
    "tt-sin": lambda: Sequential([TTLinear(16, 20, rank=4, in_modes=(2, 2, 2, 2),
                                           out_modes=(5, 2, 2, 1)), Sin(), Dense(20, 3)]),
    "dense-gelu": lambda: Sequential([Dense(16, 10), GELU(), Dense(10, 4)]),
}


class Runtime:
    def __init__(self, kind, path):
        self.kind = kind
        self.run = (ReferenceEvaluator(str(path)).run if kind == "reference" else
                    ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run)


CASES = [(name, 1e-3) for name in MODELS] + [("tt-tanh-tt-relu", 0.05), ("tt-sin", 0.05)]


@pytest.mark.parametrize("runtime", ["onnxruntime", "reference"])
@pytest.mark.parametrize("name,mu", CASES)
def test_the_step_graph_is_zotrains_step(tmp_path, name, mu, runtime):
    """Parameters over four steps, and the gradient itself: Adam's first moment after the
    first step is 0.1 times it (the update alone would not show a gradient's scale)."""
    model = MODELS[name]()
    rng = np.random.default_rng(len(name))
    c = ClassifierConfig(lr=3e-3, head_lr=2e-3, seed=1, mu=mu)
    plan = build_step(c, model)
    total = 7
    opt = build_optimizer(c, plan, total)
    mean, std = 0.3, 0.7
    graph = Runtime(runtime, to_onnx_step(model, c, total, tmp_path / "s.onnx", mean=mean,
                                          std=std))
    p = plan.init(c.seed)
    state = opt.init(p)
    q, m, v = p.copy(), np.zeros_like(p), np.zeros_like(p)
    for step in range(4):
        X = rng.random((16, model.in_features)).astype(np.float32)
        y = rng.integers(0, model.out_features, 16)
        out = plan.rule(p, ((X - mean) / std).astype(np.float32), y, seed=c.seed, step=step)
        p, state = opt.update(out.grad, state, p)
        q, m, v, loss = graph.run(None, {"params": q, "m": m, "v": v, "target": y,
                                         "step": np.array(step, np.int64), "X": X})
        assert loss == pytest.approx(out.loss, rel=1e-5)
        np.testing.assert_allclose(q, p, rtol=1e-5, atol=2e-6)
        if step == 0:
            np.testing.assert_allclose(m / 0.1, out.grad, rtol=1e-4,
                                       atol=1e-4 * np.abs(out.grad).max())
    assert np.abs(p - plan.init(c.seed)).max() > 3e-3  # the steps moved the parameters


def test_device_graphs_use_standard_operators_only(tmp_path):
    from zotrain.export.device import FILES, write_device_bundle

    model = MODELS["tt-tanh-tt-relu"]()
    write_device_bundle(model, ClassifierConfig(), tmp_path, train_examples=500)
    for name in FILES:
        if name.endswith(".onnx"):
            m = onnx.load(str(tmp_path / name))
            assert [(o.domain, o.version) for o in m.opset_import] == [("", 17)], name
            assert {n.domain for n in m.graph.node} <= {""}, name
    m = onnx.load(str(tmp_path / "step.onnx"))
    assert [i.name for i in m.graph.input] == list(INPUTS)
    assert [o.name for o in m.graph.output] == list(OUTPUTS)


@pytest.mark.parametrize("model,config,match", [
    (lambda: Sequential([TTLinear(16, 12, rank=2, in_modes=(4, 4), out_modes=(3, 4)),
                         Dense(12, 4)]), {}, r"layers 0\.\.0 .*one Dense or TTLinear layer "
                                              "followed by one activation"),
    (lambda: Sequential([Dense(16, 8), ReLU(), Dense(8, 4), ReLU()]), {},
     "needs a model ending in a Dense head"),
    (lambda: Sequential([TTLinear(16, 12, rank=1, in_modes=(16,), out_modes=(12,)), ReLU(),
                         Dense(12, 4)]), {}, "layer 0 .* a TT layer of one core"),
    (MODELS["tt-relu"], dict(perturb="weight"), "perturb must be activity"),
    (MODELS["tt-tanh-tt-relu"], dict(link=1), "link must be 0"),
    (MODELS["tt-relu"], dict(optimizer="sgd"), "optimizer must be adam"),
    (MODELS["tt-relu"], dict(evaluator="none"), "evaluator must be local"),
])
def test_what_the_step_graph_cannot_express_is_named(tmp_path, model, config, match):
    with pytest.raises(ExportError, match=match):
        to_onnx_step(model(), ClassifierConfig(**config), 10, tmp_path / "s.onnx")
    assert not (tmp_path / "s.onnx").exists()


def test_a_move_beyond_the_series_range_gives_a_nan_loss(tmp_path):
    """The moved losses' series is exact while |delta w| <= 0.5: beyond, NaN, never a
    silently wrong step."""
    model = MODELS["tt-relu"]()
    c = ClassifierConfig(mu=1.0)
    session = ort.InferenceSession(str(to_onnx_step(model, c, 10, tmp_path / "s.onnx")),
                                   providers=["CPUExecutionProvider"])
    p = build_step(c, model).init(0)
    feeds = {"params": p, "m": np.zeros_like(p), "v": np.zeros_like(p),
             "step": np.array(0, np.int64), "X": np.ones((4, 16), np.float32),
             "target": np.arange(4)}
    assert np.isnan(session.run(["loss"], feeds)[0])
    head = model.layout["2.weight"]
    p[head.slice] *= 1e-3  # small head weights: every move within range again
    assert np.isfinite(session.run(["loss"], dict(feeds, params=p))[0])
