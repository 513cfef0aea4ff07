"""ONNX export: the model's forward for inference-only devices, and trainable graphs.

* ``to_onnx(model, params, path)``: input ``X`` ``(batch, in)``, output ``Y``.
  TT layers stay factorised (a Reshape and an Einsum per core, never the
  dense matrix), dense layers are MatMul + Add, activations Relu/Tanh/Sin, and
  the batch dimension is dynamic.
* ``to_onnx(..., trainable=True)``: every parameter segment is a graph input
  whose default (an initializer of the same name) is the trained value, and a
  second output ``features`` holds the output layer's input (what an exact
  head gradient needs).
* ``to_onnx_losses(model, path)``: inputs ``P`` ``(Q, n_params)``, ``X`` and
  ``target``; output ``losses`` ``(Q,)``: the losses of Q parameter sets in
  one ``session.run``, for zeroth-order training driven by an inference runtime.

Opset 17; the IR version is set to one onnxruntime reads (onnx 1.23 writes
IR 14 by default, which onnxruntime 1.31 refuses).
"""

import os
from pathlib import Path

import numpy as np

from zotrain.engine.rundir import load_model as load_run_model  # noqa: F401 (its old name)
from zotrain.nn.activations import Activation
from zotrain.nn.layers import Dense, TTLinear

OPSET = 17
IR_VERSION = 10


class ExportError(ValueError):
    """The model or the destination cannot be exported."""


class Graph:
    """A small builder of ONNX nodes with unique names: ``op(type, inputs, **attrs)``
    returns the new node's output name, ``const(value, dtype)`` an initializer's."""

    def __init__(self):
        from onnx import helper

        self.h, self.nodes, self.inits, self.n = helper, [], [], 0

    def name(self, prefix):
        self.n += 1
        return f"{prefix}_{self.n}"

    def op(self, op_type, inputs, **attrs):
        out = self.name(op_type.lower())
        self.nodes.append(self.h.make_node(op_type, list(inputs), [out], **attrs))
        return out

    def const(self, value, dtype=np.int64, name=None):
        from onnx import numpy_helper

        name = name or self.name("const")
        self.inits.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name


def scaled_input(g, X, mean=0.0, std=1.0):
    """``(X - mean) / std`` as nodes of ``g`` (``X`` itself for 0 and 1): the graphs take the
    inputs as the user has them (pixels in [0, 1] for MNIST) and normalise inside."""
    if not (np.isfinite(mean) and np.isfinite(std) and std > 0):
        raise ExportError(f"the input scaling needs a finite mean and std > 0, got {mean}, {std}")
    if mean == 0.0 and std == 1.0:
        return X
    return g.op("Div", [g.op("Sub", [X, g.const(mean, np.float32)]), g.const(std, np.float32)])


def check_exportable(model):
    """Raise ``ExportError`` naming the first layer with no ONNX form."""
    for i, layer in enumerate(model.layers):
        if not isinstance(layer, (Dense, TTLinear, Activation)):
            raise ExportError(f"layer {i} ({layer!r}) has no ONNX export; supported: Dense, "
                              f"TTLinear and activations (zotrain.nn.activations)")


def _tt(g, H, cores, layer, batched):
    """TT contraction, one Einsum per core.  ``H`` is ``(b, in)`` (``batched``:
    ``(q, b, in)`` or, with ``batched == "shared"``, ``(b, in)`` against Q cores)."""
    s = layer.shape
    lead = [0, 0] if batched is True else [0]
    left, rest = 1, s.in_features
    T = H
    for k, (r0, i, o, r1) in enumerate(s.core_shapes):
        rest //= i
        T = g.op("Reshape", [T, g.const(lead + [left, r0, i, rest])])
        if batched is True:
            eq = "qblrim,qrios->qblosm"
        elif batched == "shared":  # one input, Q sets of cores: Q appears here
            eq, batched, lead = "blrim,qrios->qblosm", True, [0, 0]
        else:
            eq = "blrim,rios->blosm"
        T = g.op("Einsum", [T, cores[k]], equation=eq)
        left *= o
    return g.op("Reshape", [T, g.const(lead + [s.out_features])])


def forward_nodes(g, model, X, segment, batched):
    """The model's forward as nodes of ``g`` from input node ``X``: ``(output, features)``; ``segment(name)`` gives a segment's tensor name."""
    H, features = X, None
    mode = "shared" if batched else False
    for i, layer in enumerate(model.layers):
        if i == len(model.layers) - 1:
            features = H
        if isinstance(layer, Activation):
            H = layer.onnx(g, H)
            continue
        if isinstance(layer, TTLinear):
            cores = [segment(f"{i}.core{k}") for k in range(layer.shape.n_modes)]
            H = _tt(g, H, cores, layer, mode)
        else:
            H = g.op("MatMul", [H, segment(f"{i}.weight")])
        if layer.bias:
            b = segment(f"{i}.bias")
            if batched:
                b = g.op("Unsqueeze", [b, g.const([1])])
            H = g.op("Add", [H, b])
        if batched:
            mode = True
    return H, features


def write_model(g, inputs, outputs, path):
    """Check ``g`` with these graph inputs and outputs and save it atomically to ``path``."""
    import onnx

    graph = g.h.make_graph(g.nodes, "zotrain", inputs, outputs, g.inits)
    m = g.h.make_model(graph, opset_imports=[g.h.make_opsetid("", OPSET)],
                       producer_name="zotrain")
    m.ir_version = IR_VERSION
    onnx.checker.check_model(m)
    m = onnx.shape_inference.infer_shapes(m, strict_mode=True)
    path = Path(path)
    if not path.parent.is_dir():
        raise ExportError(f"cannot write {path}: directory {path.parent} does not exist")
    tmp = path.with_name(f".{path.name}.tmp")
    onnx.save(m, tmp)
    os.replace(tmp, path)
    return path


def check_finite_params(model, params):
    """``params`` as float32, refused (``ExportError``) unless they are the model's count of
    finite real numbers: NaN or inf is no trained model to deploy."""
    params = np.asarray(model._check_params(params), np.float32)
    if not np.all(np.isfinite(params)):
        raise ExportError("the parameters hold NaN or inf (or values beyond float32's range): "
                          "refusing to export a diverged model")
    return params


def to_onnx(model, params, path, *, trainable=False, mean=0.0, std=1.0):
    """Write the model's forward as ONNX (see the module doc), its input ``X`` scaled as
    ``(X - mean) / std`` inside (zotrain's MNIST runs: ``zotrain.data.MEAN``, ``STD``, so
    the graph takes pixels in [0, 1]); returns the path."""
    from onnx import TensorProto, numpy_helper

    check_exportable(model)
    arrays = model.unflatten(check_finite_params(model, params))
    g = Graph()
    X = "X"
    inputs = [g.h.make_tensor_value_info(X, TensorProto.FLOAT, ["batch", model.in_features])]
    for name, value in arrays.items():
        g.inits.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        if trainable:
            inputs.append(g.h.make_tensor_value_info(name, TensorProto.FLOAT, list(value.shape)))
    Y, features = forward_nodes(g, model, scaled_input(g, X, mean, std), lambda name: name,
                                batched=False)
    g.nodes.append(g.h.make_node("Identity", [Y], ["Y"]))
    outputs = [g.h.make_tensor_value_info("Y", TensorProto.FLOAT, ["batch", model.out_features])]
    if trainable:
        g.nodes.append(g.h.make_node("Identity", [features], ["features"]))
        outputs.append(g.h.make_tensor_value_info(
            "features", TensorProto.FLOAT, ["batch", model.layers[-1].in_features]))
    return write_model(g, inputs, outputs, path)


def _q_batched(model, mean=0.0, std=1.0):
    """A graph with inputs ``P`` ``(Q, n_params)`` and ``X``, and the node of the
    outputs ``(Q, batch, out)`` of the Q parameter sets."""
    from onnx import TensorProto

    check_exportable(model)
    g = Graph()
    inputs = [g.h.make_tensor_value_info("P", TensorProto.FLOAT, ["Q", model.n_params]),
              g.h.make_tensor_value_info("X", TensorProto.FLOAT, ["batch", model.in_features])]

    def segment(name):
        s = model.layout[name]
        flat = g.op("Slice", ["P", g.const([s.offset]), g.const([s.offset + s.size]),
                              g.const([1])])
        return g.op("Reshape", [flat, g.const([-1] + list(s.shape))])

    Y, _ = forward_nodes(g, model, scaled_input(g, "X", mean, std), segment, batched=True)
    return g, inputs, Y


def to_onnx_outputs(model, path, *, mean=0.0, std=1.0):
    """Write the Q-batched forward: ``Y = f(P, X)`` ``(Q, batch, out)``."""
    from onnx import TensorProto

    g, inputs, Y = _q_batched(model, mean, std)
    g.nodes.append(g.h.make_node("Identity", [Y], ["Y"]))
    return write_model(g, inputs, [g.h.make_tensor_value_info(
        "Y", TensorProto.FLOAT, ["Q", "batch", model.out_features])], path)


def to_onnx_losses(model, path, loss="xent", *, mean=0.0, std=1.0):
    """Write the Q-batched loss graph: ``losses = f(P, X, target)`` (see the module doc)."""
    from onnx import TensorProto

    if loss not in ("xent", "mse"):
        raise ExportError(f"loss must be 'xent' or 'mse', got {loss!r}")
    g, inputs, Y = _q_batched(model, mean, std)  # Y: (Q, batch, out)
    if loss == "xent":
        inputs.append(g.h.make_tensor_value_info("target", TensorProto.INT64, ["batch"]))
        logp = g.op("LogSoftmax", [Y], axis=2)
        depth = g.const(model.out_features)
        onehot = g.op("OneHot", ["target", depth, g.const([0.0, 1.0], np.float32)], axis=-1)
        picked = g.op("ReduceSum", [g.op("Mul", [logp, onehot]), g.const([2])], keepdims=0)
        per_set = g.op("Neg", [g.op("ReduceMean", [picked], axes=[1], keepdims=0)])
    else:
        inputs.append(g.h.make_tensor_value_info("target", TensorProto.FLOAT,
                                                 ["batch", model.out_features]))
        d = g.op("Sub", [Y, "target"])
        per_set = g.op("ReduceMean", [g.op("Mul", [d, d])], axes=[1, 2], keepdims=0)
    g.nodes.append(g.h.make_node("Identity", [per_set], ["losses"]))
    outputs = [g.h.make_tensor_value_info("losses", TensorProto.FLOAT, ["Q"])]
    return write_model(g, inputs, outputs, path)
