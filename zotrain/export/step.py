"""A training step of the activity-perturbation recipe as one ONNX inference graph.

``to_onnx_step(model, config, total_steps, path)`` writes ``step.onnx``: inputs

* ``params`` ``(n,)`` float32: the trainable vector in the evaluator's layout (the
  model's parameters, then each auxiliary head's: ``Evaluator.init``);
* ``m``, ``v`` ``(n,)`` float32: Adam's moments; ``step`` () int64: the steps done;
* ``X`` ``(batch, in)`` float32: raw inputs (the normalisation ``(X - mean) / std`` is a
  node of the graph); ``target`` ``(batch,)`` int64 labels;

and outputs ``params_out``, ``m_out``, ``v_out`` and ``loss`` (the minibatch's mean
cross-entropy of the model's output, before the step).  One ``session.run`` is one
step of what ``zotrain train`` runs by default (``--evaluator local --perturb
activity``): per block (one linear layer, its activation and a linear head),

1. the head's exact cross-entropy gradient from its input and softmax;
2. ``D = dL/dZ`` of the block's pre-activations by activity perturbation: each unit's
   pre-activation moved by +-mu, the head's loss of each moved example evaluated
   from the clean logits (a ``(batch, units, classes)`` tensor), central differences;
3. the layer's own update from its input and ``D`` (``X^T D``; for a TT layer each
   core's share, contracted core by core from ``X`` and ``D`` with no dense matrix);

then Adam with the cosine (or constant) rate on the body and the heads, as
``zotrain.recipes.classification.build_optimizer`` sets them up.  Only operators of the
default ONNX domain at opset 17, in float32: onnxruntime and ``onnx.reference`` both
run it.  The head's moved losses are formed from the small moves themselves (a series
in the moves, see ``_Step.activity``), so float32 keeps the differences that the
float64 kernel computes.
"""

import numpy as np

from zotrain.nn.activations import Activation
from zotrain.nn.layers import Dense, TTLinear
from zotrain.zo.blocks import Blocks
from zotrain.zo.evaluator import blocks_of

from .onnx import ExportError, Graph, scaled_input, write_model
from .tt_graph import TTNodes

ADAM = dict(b1=0.9, b2=0.999, eps=1e-8)  # optim.adam's defaults, which the recipe uses
#: moments of the head's weights in a moved loss's series, and the largest move |delta w|
#: for which that series is exact to float32 rounding (the 9th term is 3e-9 of the first)
TERMS, MAX_MOVE = 8, 0.5
#: inputs and outputs of every step graph
INPUTS = ("params", "m", "v", "step", "X", "target")
OUTPUTS = ("params_out", "m_out", "v_out", "loss")


def check_step_model(model, config):
    """Raise ``ExportError`` naming what the step graph cannot express: a layer that is
    not Dense, TTLinear or an activation with an ONNX form; a block that is not one
    linear layer followed by an activation; a recipe other than activity perturbation
    with exact heads, no link, no prototypes and Adam."""
    c = config
    for name, ok, want in (("evaluator", c.evaluator == "local", "local"),
                           ("perturb", c.perturb == "activity", "activity"),
                           ("link", c.link == 0, "0"), ("proto", c.proto == 0, "0"),
                           ("optimizer", c.optimizer == "adam", "adam"),
                           ("exact_head", c.exact_head, "True")):
        if not ok:
            raise ExportError(f"the step graph runs the activity recipe (--evaluator local "
                              f"--perturb activity, no link or prototypes, Adam): {name} must "
                              f"be {want}, got {getattr(c, name)!r}")
    layers = model.layers
    if not isinstance(layers[-1], Dense):
        raise ExportError(f"the step graph needs a model ending in a Dense head, got "
                          f"{layers[-1]!r}")
    for i, layer in enumerate(layers):
        if isinstance(layer, TTLinear) and layer.shape.n_modes < 2:
            raise ExportError(f"layer {i} ({layer!r}) is a TT layer of one core, a dense "
                              "matrix: use Dense for it")
    for a, b in blocks_of(model):
        kinds = layers[a:b]
        if not (len(kinds) == 2 and isinstance(kinds[0], (Dense, TTLinear)) and
                isinstance(kinds[1], Activation)):
            raise ExportError(f"layers {a}..{b - 1} ({', '.join(map(repr, kinds))}): the step "
                              "graph needs each hidden block to be one Dense or TTLinear layer "
                              "followed by one activation")


def to_onnx_step(model, config, total_steps, path, *, mean=0.0, std=1.0, n_classes=None):
    """Write the step graph of ``model`` trained by ``config`` (a ``ClassifierConfig``)
    over ``total_steps`` steps (the cosine schedule's length) to ``path``; inputs are
    normalised as ``(X - mean) / std`` inside.  Returns the path."""
    from onnx import TensorProto

    check_step_model(model, config)
    if isinstance(total_steps, bool) or not isinstance(total_steps, (int, np.integer)) or \
            total_steps < 1:
        raise ExportError(f"total_steps must be an integer >= 1, got {total_steps!r}")
    classes = n_classes or model.out_features
    blocks = Blocks(model, blocks_of(model), classes)
    s = _Step(Graph(), model, blocks, config, classes)
    X = scaled_input(s.g, "X", mean, std)
    grads, loss = s.gradients(X)
    new = s.adam(grads, int(total_steps))
    s.g.nodes.append(s.g.h.make_node("Identity", [s.guard(loss)], ["loss"]))
    n = blocks.layout.n_params
    f32 = TensorProto.FLOAT
    vi = s.g.h.make_tensor_value_info
    inputs = [vi("params", f32, [n]), vi("m", f32, [n]), vi("v", f32, [n]),
              vi("step", TensorProto.INT64, []), vi("X", f32, ["batch", model.in_features]),
              vi("target", TensorProto.INT64, ["batch"])]
    for name, node in zip(("params_out", "m_out", "v_out"), new):
        s.g.nodes.append(s.g.h.make_node("Identity", [node], [name]))
    outputs = [vi("params_out", f32, [n]), vi("m_out", f32, [n]), vi("v_out", f32, [n]),
               vi("loss", f32, [])]
    return write_model(s.g, inputs, outputs, path)


class _Step:
    """The step's nodes; ``g`` the graph under construction."""

    def __init__(self, g, model, blocks, config, classes):
        self.g, self.model, self.blocks, self.c, self.classes = g, model, blocks, config, classes
        self.layout = blocks.layout
        self.moves, self.weights = [], []  # per block: max |delta| (two signs), max |W|

    def f(self, value):
        return self.g.const(value, np.float32)

    def i(self, value):
        return self.g.const(value, np.int64)

    def segment(self, name):
        s = self.layout[name]
        flat = self.g.op("Slice", ["params", self.i([s.offset]), self.i([s.offset + s.size]),
                                   self.i([0])])
        return self.g.op("Reshape", [flat, self.i(list(s.shape))])

    def gradients(self, X):
        """``({segment name: gradient node}, loss node)`` of one minibatch."""
        g, grads = self.g, {}
        onehot = g.op("OneHot", ["target", self.i(self.classes), self.f([0.0, 1.0])],
                      axis=-1)
        inv_b = g.op("Reciprocal", [g.op("Cast", [g.op("Shape", [X], start=0, end=1)],
                                         to=1)])  # 1 / batch, shape (1,)
        H, loss = X, None
        for k, (a, _) in enumerate(self.blocks.ranges):
            layer, act = self.model.layers[a], self.model.layers[a + 1]
            Z, body = self.linear(a, layer, H)
            Hk = act.onnx(g, Z)
            W, b, names = self.head(k)
            logits = g.op("Add", [g.op("MatMul", [Hk, W]), b])
            p = g.op("Softmax", [logits], axis=1)
            err = g.op("Mul", [g.op("Sub", [p, onehot]), inv_b])  # dL/dlogits
            grads[names[0]] = g.op("MatMul", [g.op("Transpose", [Hk], perm=[1, 0]), err])
            grads[names[1]] = g.op("ReduceSum", [err, self.i([0])], keepdims=0)
            D = self.activity(Z, Hk, act, W, p, onehot, inv_b)
            grads.update(body(D))
            if k == len(self.blocks) - 1:
                logp = g.op("LogSoftmax", [logits], axis=1)
                loss = g.op("Neg", [g.op("ReduceMean", [g.op("ReduceSum", [
                    g.op("Mul", [logp, onehot]), self.i([1])], keepdims=0)], keepdims=0)])
            H = Hk
        return grads, loss

    def head(self, k):
        """Block k's head ``(W, b, (weight name, bias name))``."""
        names = sorted(self.blocks.head_segments(k), key=lambda n: self.layout[n].offset)
        weight = next(n for n in names if n.endswith("weight"))
        bias = next((n for n in names if n.endswith("bias")), None)
        if bias is None:
            raise ExportError(f"the head of block {k} has no bias; the step graph needs one")
        return self.segment(weight), self.segment(bias), (weight, bias)

    def linear(self, i, layer, H):
        """Layer ``i``'s pre-activations and a function from ``D = dL/dZ`` to its
        segments' gradients."""
        g = self.g
        if isinstance(layer, Dense):
            W = self.segment(f"{i}.weight")
            Z = g.op("MatMul", [H, W])
            names = [f"{i}.weight"]

            def body(D):
                out = {names[0]: g.op("MatMul", [g.op("Transpose", [H], perm=[1, 0]), D])}
                return self._bias_grad(i, layer, D, out)
        else:
            tt = TTNodes(g, layer, [self.segment(f"{i}.core{k}")
                                    for k in range(layer.shape.n_modes)])
            Z = tt.forward(H)

            def body(D):
                return self._bias_grad(i, layer, D, {f"{i}.core{k}": v for k, v in
                                                     enumerate(tt.core_gradients(D))})
        if layer.bias:
            Z = g.op("Add", [Z, self.segment(f"{i}.bias")])
        return Z, body

    def _bias_grad(self, i, layer, D, out):
        if layer.bias:
            out[f"{i}.bias"] = self.g.op("ReduceSum", [D, self.i([0])], keepdims=0)
        return out

    def activity(self, Z, Hk, act, W, p, onehot, inv_b):
        """``D = dL/dZ`` by central differences of the head's loss with each unit's
        pre-activation moved by +-mu, one example at a time.  Moving unit j's activation
        by ``delta`` moves the logits by ``a = delta W[j]``, and the example's loss by
        ``log(sum_c p_c exp(a_c)) - a_y = log1p(t) - a_y`` with
        ``t = sum_k delta^k / k! sum_c p_c W[j, c]^k``: the moments of the head's
        weights under the softmax ``p`` (``TERMS`` of them, one small product each), so
        no ``(batch, units, classes)`` tensor is formed.  Exact to float32 rounding while
        ``|a| <= MAX_MOVE``; beyond it the loss output is NaN (the loop stops)."""
        g, mu = self.g, float(self.c.mu)
        Wt = g.op("Transpose", [W], perm=[1, 0])  # (C, F)
        wy = g.op("MatMul", [onehot, Wt])  # (B, F): W[j, y_b]
        moments = [g.op("MatMul", [p, Wt if k == 1 else g.op("Pow", [Wt, self.f(float(k))])])
                   for k in range(1, TERMS + 1)]
        moved = []
        for sign in (1.0, -1.0):
            delta = g.op("Sub", [act.onnx(g, g.op("Add", [Z, self.f(sign * mu)])), Hk])
            t = moments[-1]  # Horner: M1 + d/2 (M2 + d/3 (M3 + ...)), times d
            for k in range(TERMS - 1, 0, -1):
                t = g.op("Add", [moments[k - 1], g.op("Mul", [t, g.op(
                    "Mul", [delta, self.f(1.0 / (k + 1))])])])
            t = g.op("Mul", [t, delta])
            moved.append(g.op("Sub", [self.log1p(t), g.op("Mul", [delta, wy])]))
            self.moves.append(g.op("ReduceMax", [g.op("Abs", [delta])], keepdims=0))
        self.weights.append(g.op("ReduceMax", [g.op("Abs", [W])], keepdims=0))
        diff = g.op("Sub", moved)
        return g.op("Mul", [diff, g.op("Mul", [inv_b, self.f(1.0 / (2.0 * mu))])])

    def guard(self, loss):
        """``loss``, or NaN where a move ``|delta W|`` exceeded ``MAX_MOVE``."""
        g = self.g
        worst = self.f(0.0)
        for k, w in enumerate(self.weights):
            for d in self.moves[2 * k:2 * k + 2]:
                worst = g.op("Max", [worst, g.op("Mul", [d, w])])
        ok = g.op("LessOrEqual", [worst, self.f(MAX_MOVE)])
        return g.op("Where", [ok, loss, self.f(np.nan)])

    def log1p(self, x, small=0.05):
        """``log(1 + x)``: its series to x^7 where |x| < ``small`` (relative error < 2e-10),
        else ``Log(1 + x)``."""
        g = self.g
        acc = self.f(1 / 7)
        for c in (-1 / 6, 1 / 5, -1 / 4, 1 / 3, -1 / 2, 1.0):
            acc = g.op("Add", [g.op("Mul", [acc, x]), self.f(c)])
        series = g.op("Mul", [acc, x])
        direct = g.op("Log", [g.op("Add", [x, self.f(1.0)])])
        return g.op("Where", [g.op("Less", [g.op("Abs", [x]), self.f(small)]), series, direct])

    def adam(self, grads, total):
        """``(params, m, v)`` after Adam with the scheduled rates (body: ``lr``, heads:
        ``head_lr``)."""
        g, c = self.g, self.c
        missing = [s.name for s in self.layout if s.name not in grads]
        if missing:
            raise ExportError(f"the step graph has no gradient for {', '.join(missing)}")
        flat = [g.op("Reshape", [grads[s.name], self.i([-1])])
                for s in sorted(self.layout, key=lambda s: s.offset)]
        grad = g.op("Concat", flat, axis=0)
        heads = np.zeros(self.layout.n_params, np.float32)
        for k in range(len(self.blocks)):
            for name in self.blocks.head_segments(k):
                heads[self.layout[name].slice] = 1.0
        count = g.op("Cast", ["step"], to=1)  # steps done: the schedule's count
        t = g.op("Add", [count, self.f(1.0)])
        lr = g.op("Add", [g.op("Mul", [self.f(heads), self.schedule(c.head_lr, count, total)]),
                          g.op("Mul", [self.f(1.0 - heads), self.schedule(c.lr, count, total)])])
        b1, b2, eps = ADAM["b1"], ADAM["b2"], ADAM["eps"]
        m = g.op("Add", [g.op("Mul", ["m", self.f(b1)]), g.op("Mul", [grad, self.f(1 - b1)])])
        v = g.op("Add", [g.op("Mul", ["v", self.f(b2)]),
                         g.op("Mul", [g.op("Mul", [grad, grad]), self.f(1 - b2)])])
        corr1 = g.op("Sub", [self.f(1.0), g.op("Pow", [self.f(b1), t])])
        corr2 = g.op("Sub", [self.f(1.0), g.op("Pow", [self.f(b2), t])])
        den = g.op("Add", [g.op("Sqrt", [g.op("Div", [v, corr2])]), self.f(eps)])
        step = g.op("Div", [g.op("Mul", [g.op("Div", [m, corr1]), lr]), den])
        return g.op("Sub", ["params", step]), m, v

    def schedule(self, value, count, total):
        """The learning rate after ``count`` steps: cosine decay to 0 over ``total`` steps
        (``optim.cosine``), or constant."""
        g = self.g
        if self.c.schedule != "cosine":
            return self.f(value)
        frac = g.op("Div", [g.op("Min", [count, self.f(float(total))]), self.f(float(total))])
        cos = g.op("Cos", [g.op("Mul", [frac, self.f(np.pi)])])
        return g.op("Mul", [g.op("Add", [cos, self.f(1.0)]), self.f(0.5 * value)])
