"""int8 deployment: ``to_onnx_int8(model, params, path, calibration)``.

The model is first written as a float graph whose every weight is a MatMul
operand: a TT layer contracts core by core as Transpose, Reshape and a MatMul
with the core reshaped to ``(r_k * in_k, out_k * r_{k+1})``, never the dense
matrix.  onnxruntime's static quantizer (``onnxruntime.quantization``) then
writes it in QDQ form: int8 weights with one symmetric scale per output column
(per channel), int8 activations with per-tensor scales calibrated on the given
inputs (a few training batches).  Weights use 7 bits of the 8 (``reduce_range``):
on x86 CPUs without VNNI, onnxruntime's integer MatMul sums pairs of u8 x s8
products in int16 and saturates on full-range weights (measured: outputs 20
grid steps off); with 7-bit weights it agrees with the QDQ arithmetic to one
step (tests/test_int8.py).  The file holds the int8 weights only;
onnxruntime runs the MatMuls in integer arithmetic where its CPU kernels can.
"""

import logging
import os
import tempfile
from pathlib import Path

import numpy as np

from zotrain.nn.activations import Activation
from zotrain.nn.layers import Dense, TTLinear

from .onnx import (ExportError, Graph, check_exportable, check_finite_params, scaled_input,
                   write_model)


def _tt_matmuls(g, H, cores, layer):
    """TT contraction with one MatMul per core; ``H`` is ``(b, in)``, ``cores`` are the
    initializer names of the cores reshaped to matrices."""
    s = layer.shape
    left, rest = 1, s.in_features
    T = H
    for k, (r0, i, o, r1) in enumerate(s.core_shapes):
        rest //= i
        T = g.op("Reshape", [T, g.const([0, left, r0 * i, rest])])
        T = g.op("Transpose", [T], perm=[0, 1, 3, 2])  # (b, left, rest, r0 i)
        T = g.op("MatMul", [T, cores[k]])  # (b, left, rest, o r1)
        T = g.op("Reshape", [T, g.const([0, left, rest, o, r1])])
        T = g.op("Transpose", [T], perm=[0, 1, 3, 4, 2])  # (b, left, o, r1, rest)
        left *= o
    return g.op("Reshape", [T, g.const([0, s.out_features])])


def to_onnx_matmul(model, params, path, *, mean=0.0, std=1.0):
    """The model's forward as ONNX with every weight a MatMul operand (input ``X``, scaled
    as ``(X - mean) / std`` inside; output ``Y``): the float graph that ``to_onnx_int8``
    quantizes."""
    from onnx import TensorProto, numpy_helper

    check_exportable(model)
    arrays = model.unflatten(check_finite_params(model, params))
    g = Graph()

    def init(name, value):
        g.inits.append(numpy_helper.from_array(np.ascontiguousarray(value, np.float32), name))
        return name

    H = scaled_input(g, "X", mean, std)
    for i, layer in enumerate(model.layers):
        if isinstance(layer, Activation):
            H = layer.onnx(g, H)
            continue
        if isinstance(layer, TTLinear):
            cores = [init(f"{i}.core{k}", arrays[f"{i}.core{k}"].reshape(r0 * n, o * r1))
                     for k, (r0, n, o, r1) in enumerate(layer.shape.core_shapes)]
            H = _tt_matmuls(g, H, cores, layer)
        elif isinstance(layer, Dense):
            H = g.op("MatMul", [H, init(f"{i}.weight", arrays[f"{i}.weight"])])
        if layer.bias:
            H = g.op("Add", [H, init(f"{i}.bias", arrays[f"{i}.bias"])])
    g.nodes.append(g.h.make_node("Identity", [H], ["Y"]))
    inputs = [g.h.make_tensor_value_info("X", TensorProto.FLOAT, ["batch", model.in_features])]
    outputs = [g.h.make_tensor_value_info("Y", TensorProto.FLOAT, ["batch", model.out_features])]
    return write_model(g, inputs, outputs, path)


def _check_calibration(model, calibration):
    if calibration is None:
        raise ExportError("int8 export needs calibration inputs (a few training batches) to "
                          "set the activation scales; none were given")
    X = np.asarray(calibration)
    if X.ndim != 2 or X.shape[1] != model.in_features or len(X) == 0:
        raise ExportError(f"calibration inputs must be (N >= 1, {model.in_features}), got "
                          f"{X.shape}")
    if not np.all(np.isfinite(X)):
        raise ExportError("calibration inputs contain non-finite values")
    return X.astype(np.float32)


def to_onnx_int8(model, params, path, calibration, *, batch=100, mean=0.0, std=1.0):
    """Write the model quantized to int8 (QDQ, per-channel weights, activations calibrated
    on ``calibration`` ``(N, in)``, inputs as the graph takes them, fed in batches of
    ``batch``; the input scaled as ``(X - mean) / std`` inside); returns the path."""
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType,
                                          quantize_static)

    X = _check_calibration(model, calibration)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter([{"X": X[s:s + batch]} for s in range(0, len(X), batch)])

        def get_next(self):
            return next(self.batches, None)

    path = Path(path)
    if not path.parent.is_dir():
        raise ExportError(f"cannot write {path}: directory {path.parent} does not exist")
    with tempfile.TemporaryDirectory() as d:
        float_path = to_onnx_matmul(model, params, Path(d) / "float.onnx", mean=mean, std=std)
        tmp = Path(d) / "int8.onnx"
        root = logging.getLogger()  # the quantizer advises pre-processing on the root logger
        level = root.level
        root.setLevel(logging.ERROR)
        try:
            quantize_static(str(float_path), str(tmp), Reader(), quant_format=QuantFormat.QDQ,
                            per_channel=True, weight_type=QuantType.QInt8,
                            activation_type=QuantType.QInt8, op_types_to_quantize=["MatMul"],
                            reduce_range=True)
        finally:
            root.setLevel(level)
        staged = path.with_name(f".{path.name}.tmp")
        staged.write_bytes(tmp.read_bytes())
        os.replace(staged, path)
    return path
