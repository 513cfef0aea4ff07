"""ONNX export: a model's forward with its TT layers kept factorised, trainable graphs whose
parameters are inputs, and the graph of the losses of Q parameter sets
(``zotrain.export.int8``, ``.device`` and ``.pinn`` hold the int8 model, the device bundle
and the PINN predictor)."""

from zotrain.export.onnx import ExportError
from zotrain.export.onnx import load_run_model
from zotrain.export.onnx import to_onnx
from zotrain.export.onnx import to_onnx_losses
from zotrain.export.onnx import to_onnx_outputs

__all__ = ["ExportError", "load_run_model", "to_onnx", "to_onnx_losses", "to_onnx_outputs"]
