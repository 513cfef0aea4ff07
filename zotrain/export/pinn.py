"""ONNX export of a PINN's smoothed predictor: the model that was trained and evaluated.

``to_onnx_pinn(loss, params, path)`` writes ``u = f(x)``: input ``x``
``(batch, d)`` in the problem's coordinates, output ``u`` ``(batch,)``.  The
graph maps ``x`` to box coordinates, adds the rule's shifts ``sigma z_m`` (the
origin and both signs of every node: ``M`` per point), runs the network on all
``batch * M`` shifted inputs, after the run's input map (``zotrain.pinn.inputs``;
TT layers factorised, as ``zotrain.export``), sums with the rule's weights,
``N_sigma(x) = sum_m w_m N(x + sigma (upper - lower) z_m)``, and applies the problem's
hard constraint to the sum: ``u = a(x) + c(x) N_sigma(x)``.

A problem's hard constraint is exported by its own ``transform_onnx(g, xs)``:
ONNX nodes of ``(a, c)`` with ``transform(x, nn) = a + c nn`` at points ``xs``
``(batch, M, d)``, here ``M = 1`` (``zotrain.pinn.problems``; a test checks each
against ``PinnLoss.predict``).  A problem with a transform but no
``transform_onnx`` is refused with its name.
"""

import numpy as np

from zotrain.export.onnx import ExportError, Graph, check_exportable, check_finite_params, \
    forward_nodes, write_model
from zotrain.pinn import inputs as input_map


def export_pinn_run(problem, run_dir, path=None):
    """Write the smoothed predictor of a run of ``problem`` (any ``zotrain.pinn.Problem``,
    built in or the user's) saved in ``run_dir`` as ONNX; default ``run_dir/model.onnx``.
    Returns the path."""
    from pathlib import Path

    from zotrain.pinn.train import load_run

    loss, params = load_run(problem, run_dir)
    return to_onnx_pinn(loss, params, Path(path) if path else Path(run_dir) / "model.onnx")


def to_onnx_pinn(loss, params, path):
    """Write ``loss``'s smoothed predictor (``PinnLoss.predict``) as ONNX; returns the path."""
    from onnx import TensorProto, numpy_helper

    model, problem = loss.model, loss.problem
    if problem.transform is not None and problem.transform_onnx is None:
        raise ExportError(f"problem {problem.name!r} has a hard constraint (transform) but no "
                          "ONNX form of it: give the Problem a transform_onnx(g, xs) that "
                          "returns the nodes (a, c) of transform(x, nn) = a + c * nn")
    check_exportable(model)
    g = Graph()
    for name, value in model.unflatten(check_finite_params(model, params)).items():
        g.inits.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
    d = problem.dim
    z = np.asarray(loss.stein.nodes)
    shifts = loss.sigma * np.concatenate([np.zeros((1, d)), z, -z])  # (M, d)
    weights = loss.op[0][:, None]  # (M, 1): u = values @ op[0]
    lo, width = loss.lower, loss.width
    y = g.op("Div", [g.op("Sub", ["x", g.const(lo, np.float32)]), g.const(width, np.float32)])
    ys = g.op("Add", [g.op("Unsqueeze", [y, g.const([1])]), g.const(shifts, np.float32)])
    rows = input_map.onnx(loss.inputs, g, g.op("Reshape", [ys, g.const([-1, d])]), d,
                          problem.time_index)
    nn, _ = forward_nodes(g, model, rows, lambda n: n, False)
    nn = g.op("Reshape", [nn, g.const([-1, len(shifts)])])  # (batch, M)
    u = g.op("MatMul", [nn, g.const(weights, np.float32)])  # (batch, 1)
    if problem.transform is not None:
        a, c = problem.transform_onnx(g, g.op("Unsqueeze", ["x", g.const([1])]))
        u = g.op("Mul", [u, c])
        if a is not None:
            u = g.op("Add", [u, a])
    g.nodes.append(g.h.make_node("Reshape", [u, g.const([-1])], ["u"]))
    return write_model(g, [g.h.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", d])],
                   [g.h.make_tensor_value_info("u", TensorProto.FLOAT, ["batch"])], path)
