"""ONNX export of a PINN's smoothed predictor: the model that was trained and evaluated.

``to_onnx_pinn(loss, params, path)`` writes ``u = f(x)``: input ``x``
``(batch, d)`` in the problem's coordinates, output ``u`` ``(batch,)``.  The
graph maps ``x`` to box coordinates, adds the rule's shifts ``sigma z_m`` (the
origin and both signs of every node: ``M`` per point), runs the network on all
``batch * M`` shifted inputs (TT layers factorised, as ``zotrain.export``),
applies the problem's hard constraint at every shifted input, and sums with
the rule's weights: ``u_sigma(x) = sum_m w_m u(x + sigma (upper - lower) z_m)``.

The hard constraints are rebuilt here from ONNX operators, one builder per
problem (a test checks each against ``PinnLoss.predict``).
"""

import numpy as np

from zotrain.export.onnx import ExportError, _check_model, _finish, _forward, _Graph
from zotrain.pinn.problems import _BS, BS_ANSATZ


def _column(g, xs, i):
    return g.op("Gather", [xs, g.const(i)], axis=2)  # (batch, M)


def _columns(g, xs, stop):
    return g.op("Slice", [xs, g.const([0]), g.const([stop]), g.const([2])])


def _scalar(g, v):
    return g.const(v, np.float32)


def _hjb20d(g, xs):
    a = g.op("ReduceSum", [_columns(g, xs, 20), g.const([2])], keepdims=0)
    return a, g.op("Sub", [_scalar(g, 1.0), _column(g, xs, 20)])


def _poisson2d(g, xs):
    x0, x1 = _column(g, xs, 0), _column(g, xs, 1)
    one = _scalar(g, 1.0)
    c = g.op("Mul", [g.op("Mul", [x0, g.op("Sub", [one, x0])]),
                     g.op("Mul", [x1, g.op("Sub", [one, x1])])])
    return None, c


def _heat100d(g, xs):
    a = g.op("ReduceMean", [g.op("Sin", [_columns(g, xs, 100)])], axes=[2], keepdims=0)
    return a, _column(g, xs, 100)


def _black_scholes(g, xs):
    K, r, T = _BS["K"], _BS["r"], _BS["T"]
    S_max, eps, scale = BS_ANSATZ["S_max"], BS_ANSATZ["eps"], BS_ANSATZ["scale"]
    S, t = _column(g, xs, 0), _column(g, xs, 1)

    def payoff(node):
        z = g.op("Div", [g.op("Sub", [node, _scalar(g, K)]), _scalar(g, eps)])
        return g.op("Mul", [g.op("Softplus", [z]), _scalar(g, eps)])

    tau = g.op("Sub", [_scalar(g, T), t])
    q = g.op("Div", [S, _scalar(g, S_max)])
    pay_max = eps * np.logaddexp(0.0, (S_max - K) / eps)
    disc = g.op("Mul", [_scalar(g, K), g.op("Exp", [g.op("Mul", [_scalar(g, -r), tau])])])
    edge = g.op("Sub", [_scalar(g, S_max - pay_max), disc])
    a = g.op("Add", [payoff(S), g.op("Mul", [q, edge])])
    c = g.op("Mul", [g.op("Mul", [tau, q]),
                     g.op("Mul", [g.op("Sub", [_scalar(g, 1.0), q]), _scalar(g, scale)])])
    return a, c


_CONSTRAINTS = {"hjb20d": _hjb20d, "poisson2d": _poisson2d, "heat100d": _heat100d,
                "black-scholes": _black_scholes}


def to_onnx_pinn(loss, params, path):
    """Write ``loss``'s smoothed predictor (``PinnLoss.predict``) as ONNX; returns the path."""
    from onnx import TensorProto, numpy_helper

    model, problem = loss.model, loss.problem
    if problem.transform is not None and problem.name not in _CONSTRAINTS:
        raise ExportError(f"no ONNX form of the hard constraint of {problem.name!r}; known: "
                          f"{', '.join(_CONSTRAINTS)}")
    _check_model(model)
    g = _Graph()
    for name, value in model.unflatten(np.asarray(params, np.float32)).items():
        g.inits.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
    d = problem.dim
    z = np.asarray(loss.stein.nodes)
    shifts = loss.sigma * np.concatenate([np.zeros((1, d)), z, -z])  # (M, d)
    weights = loss.op[0][:, None]  # (M, 1): u = values @ op[0]
    lo, width = loss.lower, loss.width
    y = g.op("Div", [g.op("Sub", ["x", g.const(lo, np.float32)]), g.const(width, np.float32)])
    ys = g.op("Add", [g.op("Unsqueeze", [y, g.const([1])]), g.const(shifts, np.float32)])
    nn, _ = _forward(g, model, g.op("Reshape", [ys, g.const([-1, d])]), lambda n: n, False)
    nn = g.op("Reshape", [nn, g.const([-1, len(shifts)])])  # (batch, M)
    if problem.transform is not None:
        xs = g.op("Add", [g.op("Mul", [ys, g.const(width, np.float32)]),
                          g.const(lo, np.float32)])
        a, c = _CONSTRAINTS[problem.name](g, xs)
        nn = g.op("Mul", [nn, c])
        if a is not None:
            nn = g.op("Add", [nn, a])
    u = g.op("MatMul", [nn, g.const(weights, np.float32)])
    g.nodes.append(g.h.make_node("Reshape", [u, g.const([-1])], ["u"]))
    return _finish(g, [g.h.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", d])],
                   [g.h.make_tensor_value_info("u", TensorProto.FLOAT, ["batch"])], path)
