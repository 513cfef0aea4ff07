"""A training backend on onnxruntime: every forward pass runs in an inference session.

The model is exported twice (``zotrain.export``): the Q-batched loss graph
evaluates all perturbed parameter sets of a query batch in one
``session.run``, and the trainable single-set graph gives the clean output and
the output layer's input for the exact head gradient.  The estimator and the
optimizer stay in zotrain; only forward evaluations cross into the runtime.
"""

import tempfile
from pathlib import Path

import numpy as np

from zotrain.kernels.losses import XENT
from zotrain.nn import losses
from zotrain.nn.sequential import LOSSES, as_input
from zotrain.zo.objective import WholeModelQueries, OfModel, exact_head_gradient


def _sessions(model, threads, **graphs):
    """onnxruntime sessions of the named exports (``name=writer(model, path)``)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3  # parameters as inputs with defaults are intended
    if threads:
        opts.intra_op_num_threads = threads
    out = {}
    with tempfile.TemporaryDirectory() as d:
        for name, write in graphs.items():
            write(model, Path(d) / f"{name}.onnx")
            out[name] = ort.InferenceSession(str(Path(d) / f"{name}.onnx"), opts,
                                             providers=["CPUExecutionProvider"])
    return out


def _trainable(model, path):
    from zotrain.export.onnx import to_onnx

    return to_onnx(model, model.init(0), path, trainable=True)


class OrtBackend:
    """Sessions for ``model`` (built once); ``objective(X, y)`` makes per-minibatch objectives."""

    def __init__(self, model, loss="xent", threads=None):
        from zotrain.export.onnx import to_onnx_losses

        self.model, self.loss = model, loss
        s = _sessions(model, threads, losses=lambda m, p: to_onnx_losses(m, p, loss),
                      single=_trainable)
        self.losses, self.single = s["losses"], s["single"]

    def objective(self, X, y):
        return OrtObjective(self, X, y)


class OrtNetwork:
    """The model's ``apply_many`` and ``features`` run by onnxruntime sessions (the
    Q-batched and the trainable exports): the network interface of ``PinnLoss``."""

    def __init__(self, model, threads=None):
        from zotrain.export.onnx import to_onnx_outputs

        self.model = model
        s = _sessions(model, threads, outputs=to_onnx_outputs, single=_trainable)
        self.outputs, self.single = s["outputs"], s["single"]

    def apply_many(self, P, X):
        P = self.model.check_many(P)
        X = as_input(X, self.model.in_features)
        return self.outputs.run(None, {"P": P, "X": X})[0]

    def features(self, params, X):
        feeds = {"X": as_input(X, self.model.in_features)}
        feeds.update(self.model.unflatten(params))
        return self.single.run(["features"], feeds)[0]


class OrtObjective(OfModel, WholeModelQueries):  # flops = None: a runtime reports none
    """The objective interface of ``zotrain.zo.objective.ModelObjective``, on onnxruntime.

    Perturbed queries are whole-model evaluations (an inference runtime has no
    feature reuse), batched per call."""

    def __init__(self, backend, X, target):
        self.backend, self.model = backend, backend.model
        self.X = as_input(X, self.model.in_features)
        self.kind = LOSSES[backend.loss]
        self.labels, self.targets = self.model.check_target(target, self.X.shape[0],
                                                             backend.loss)
        self.target = self.labels if self.kind == XENT else self.targets.astype(np.float32)
        self.forward_passes = 0
        self._base_params = self._base = None

    def __call__(self, P):
        P = self.model.check_many(P)
        self.forward_passes += P.shape[0]
        out = self.backend.losses.run(None, {"P": P, "X": self.X, "target": self.target})[0]
        return out.astype(np.float64)

    def base(self, params):
        params = np.ascontiguousarray(params, dtype=np.float32)
        if self._base is None or not np.array_equal(params, self._base_params):
            feeds = {"X": self.X}
            feeds.update(self.model.unflatten(params))
            Y, features = self.backend.single.run(None, feeds)
            self.forward_passes += 1
            self._base_params, self._base = params.copy(), (Y, features)
        return self._base

    def loss(self, params):
        Y = self.base(params)[0]
        per_example = losses.xent(Y, self.labels) if self.kind == XENT else \
            losses.mse(Y, self.targets)
        return float(np.mean(per_example))

    def head_gradient(self, params):
        Y, features = self.base(params)
        grad, names = exact_head_gradient(self.model, features, Y, self.labels, self.targets,
                                          self.kind)
        return grad, names, self.loss(params)
