"""Layers: parameter shapes, initialisation and the many-parameter-set forward.

A layer holds no parameters.  It declares named parameter segments and
evaluates ``forward_many(H, P, offsets, act)``: ``H`` is ``(QH, B, in)`` with
QH = 1 (shared input) or Q, ``P`` is ``(Q, n_params)`` and ``offsets`` maps
the layer's segment names to their offsets in a row of ``P``.  Linear layers
apply the activation layer that follows them (``act``, or None) in the same pass.
Activations live in ``zotrain.nn.activations``.  ``register_layer`` makes a
layer type known to ``Sequential.from_spec`` and to ONNX export.
"""

import math

import numpy as np

from zotrain.kernels import elementwise
from zotrain.kernels.tt import tt_contract_many
from zotrain.nn import tt_split
from zotrain.nn.tt import TTMatrixShape, balanced_modes, factor_modes, random_tt_matrix

#: BLAS reaches about this many times the FLOP rate of the contraction
#: kernel (measured by benchmarks/forward.py: ~200 against ~40-70 GFLOP/s).
BLAS_ADVANTAGE = 3.0


def _buffer(scratch, key, shape):
    """A float32 array of ``shape``: reused from ``scratch`` (a dict) when given."""
    if scratch is None:
        return np.empty(shape, np.float32)
    buf = scratch.get(key)
    if buf is None or buf.shape != shape:
        buf = scratch[key] = np.empty(shape, np.float32)
    return buf


def _scalar(act):
    """The jitted scalar function of an activation layer (identity for None)."""
    return elementwise.IDENTITY if act is None else act.scalar


#: layer type name -> class: what ``Sequential.from_spec`` and export know
LAYERS = {}


def register_layer(cls):
    """Class decorator: make a layer type known by its class name (specs, export)."""
    LAYERS[cls.__name__] = cls
    return cls


def _positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


@register_layer
class Dense:
    """``Y = X @ W + b`` with ``W`` of shape ``(in_features, out_features)``."""

    def __init__(self, in_features, out_features, *, bias=True):
        self.in_features = _positive_int("in_features", in_features)
        self.out_features = _positive_int("out_features", out_features)
        self.bias = bool(bias)

    def param_shapes(self):
        shapes = [("weight", (self.in_features, self.out_features))]
        return shapes + ([("bias", (self.out_features,))] if self.bias else [])

    def init_params(self, rng):
        std = math.sqrt(2.0 / self.in_features)
        w = (rng.standard_normal((self.in_features, self.out_features)) * std).astype(np.float32)
        return [w] + ([np.zeros(self.out_features, np.float32)] if self.bias else [])

    def forward_many(self, H, P, offsets, act=None, scratch=None):
        Q = P.shape[0]
        off = offsets["weight"]
        W = P[:, off:off + self.in_features * self.out_features].reshape(
            Q, self.in_features, self.out_features)
        Y = np.matmul(H, W, out=_buffer(scratch, "Y", (Q, H.shape[1], self.out_features)))
        return elementwise.bias_activation_many(Y, P, offsets.get("bias", -1), _scalar(act))

    def flops(self, batch):
        return 2 * batch * self.in_features * self.out_features

    def spec(self):
        return {"type": "Dense", "in_features": self.in_features,
                "out_features": self.out_features, "bias": self.bias}

    def __repr__(self):
        return f"Dense({self.in_features}, {self.out_features}, bias={self.bias})"


@register_layer
class TTLinear:
    """A linear layer whose weight is a TT-matrix (see ``zotrain.nn.tt``).

    ``in_modes``/``out_modes`` default to a balanced factorisation; ``rank`` is an
    int or the full rank tuple ``(1, r_1, ..., 1)``.  The forward runs one of three
    algorithms, whichever the FLOP cost model prefers (``method="auto"``; a method's
    name forces it), none with an array of the dense size:

    * ``"dense"``: build the dense matrix a column slab at a time and multiply each
      slab with BLAS (``zotrain.nn.tt_split``; the dense FLOPs);
    * ``"contract"``: contract the cores with the input one by one (``kernels.tt``);
    * ``"halves"``: the input times the right half of the cores (BLAS; one product for
      all parameter sets when they share the input), then the left half per row
      (``tt_split.halves_forward``): for small ranks and a wide input.

    ``"lean"``, from an earlier release, is read as ``"auto"``.
    """

    METHODS = ("auto", "dense", "contract", "halves")

    def __init__(self, in_features, out_features, *, rank, in_modes=None, out_modes=None,
                 bias=True, method="auto"):
        self.in_features = _positive_int("in_features", in_features)
        self.out_features = _positive_int("out_features", out_features)
        if (in_modes is None) != (out_modes is None):
            d = len(in_modes if in_modes is not None else out_modes)
            in_modes = in_modes if in_modes is not None else factor_modes(self.in_features, d)
            out_modes = out_modes if out_modes is not None else factor_modes(self.out_features, d)
        elif in_modes is None:
            in_modes, out_modes = balanced_modes(self.in_features, self.out_features)
        self.shape = TTMatrixShape(in_modes, out_modes, rank)
        if self.shape.in_features != self.in_features:
            raise ValueError(f"in_modes {self.shape.in_modes} multiply to {self.shape.in_features}, "
                             f"expected in_features = {self.in_features}")
        if self.shape.out_features != self.out_features:
            raise ValueError(f"out_modes {self.shape.out_modes} multiply to "
                             f"{self.shape.out_features}, expected out_features = {self.out_features}")
        self.bias = bool(bias)
        method = "auto" if method == "lean" else method
        if method not in self.METHODS:
            raise ValueError(f"method must be one of {self.METHODS}, got {method!r}")
        self.method = method

    @property
    def ranks(self):
        return self.shape.ranks

    def param_shapes(self):
        shapes = [(f"core{k}", s) for k, s in enumerate(self.shape.core_shapes)]
        return shapes + ([("bias", (self.out_features,))] if self.bias else [])

    def init_params(self, rng):
        seed = int(rng.integers(2**63 - 1))
        cores = random_tt_matrix(self.shape.in_modes, self.shape.out_modes, self.shape.ranks,
                                 seed=seed)
        return cores + ([np.zeros(self.out_features, np.float32)] if self.bias else [])

    def meta(self, offsets):
        """The ``(d, 5)`` core table the kernels read."""
        return np.array([(offsets[f"core{k}"],) + s for k, s in enumerate(self.shape.core_shapes)],
                        dtype=np.int64)

    # -- cost model ---------------------------------------------------------
    def contraction_flops(self, batch):
        s, flops, left, rest = self.shape, 0, 1, self.in_features
        for k, (r0, i, o, r1) in enumerate(s.core_shapes):
            rest //= i
            flops += 2 * batch * left * rest * r0 * i * o * r1
            left *= o
        return flops

    def dense_build_flops(self, batch):
        """FLOPs of building the dense matrix by slabs for ``batch`` rows (the two
        halves, then ``L[:, e] @ R`` for every left output index ``e``)."""
        shapes = self.shape.core_shapes
        m = tt_split.split_point(shapes, tt_split.budget_for(self.in_features, batch))
        return (tt_split.halves_build_flops(shapes, m)
                + 2 * self.in_features * self.out_features * self.shape.ranks[m])

    def flops_dense(self, batch):
        return self.dense_build_flops(batch) + 2 * batch * self.in_features * self.out_features

    def algorithm(self, batch):
        """The forward's algorithm for ``batch`` rows: ``self.method`` unless ``"auto"``,
        else the cheapest by FLOPs, the dense product's divided by ``BLAS_ADVANTAGE``
        (``"halves"`` is counted at the kernel's rate: its BLAS product has a short inner
        dimension and a wide output, and runs far below BLAS's peak)."""
        if self.method != "auto":
            return self.method
        cost = {"dense": self.flops_dense(batch) / BLAS_ADVANTAGE,
                "contract": self.contraction_flops(batch), "halves": self.halves_flops(batch)}
        return min(cost, key=cost.get)

    def halves_flops(self, batch):
        return tt_split.halves_forward_flops(self.shape.core_shapes, batch)

    def flops(self, batch):
        return {"dense": self.flops_dense, "contract": self.contraction_flops,
                "halves": self.halves_flops}[self.algorithm(batch)](batch)

    def fuses_head(self, batch):
        """Whether ``forward_many`` can apply a dense layer after this one (and its
        activation) in the same pass: with the ``"halves"`` algorithm."""
        return self.algorithm(batch) == "halves"

    def forward_many(self, H, P, offsets, act=None, scratch=None, head=None):
        """``act(H @ W + b)`` for every set; with ``head`` = ``(dense layer, its offsets)``
        (only when ``fuses_head``) that layer's output instead, the activations never
        stored."""
        Q, B = P.shape[0], H.shape[1]
        algorithm = self.algorithm(B)
        cores = [P[:, offsets[f"core{k}"]:offsets[f"core{k}"] + math.prod(s)].reshape((Q,) + s)
                 for k, s in enumerate(self.shape.core_shapes)]
        if head is not None:
            if algorithm != "halves":
                raise ValueError(f"a dense head is fused only with the halves algorithm, not "
                                 f"{algorithm!r}")
            _, L, R = tt_split.halves(cores)
            return self._halves(L, R, H, np.empty((Q, B, head[0].out_features), np.float32),
                                scratch, self._head_args(P, offsets, act, *head))
        Y = _buffer(scratch, "Y", (Q, B, self.out_features))
        if algorithm == "contract":
            tt_contract_many(H, P, self.meta(offsets), Y)
        elif algorithm == "dense":
            budget = tt_split.budget_for(self.in_features, B)
            _, L, R = tt_split.halves(cores, budget)
            for q in range(Q):
                tt_split.slab_forward(L[q], R[q], H[q if H.shape[0] > 1 else 0], Y[q], budget)
        else:
            _, L, R = tt_split.halves(cores)
            self._halves(L, R, H, Y, scratch, None)
        return elementwise.bias_activation_many(Y, P, offsets.get("bias", -1), _scalar(act))

    @staticmethod
    def _halves(L, R, H, out, scratch, head):
        """``halves_forward`` (or ``halves_head``) of every set: one product for all when
        they share ``H``, else one per set."""
        sets = [slice(None)] if H.shape[0] == 1 else [slice(q, q + 1) for q in range(len(out))]
        for q, s in enumerate(sets):
            X = H[0] if H.shape[0] == 1 else H[q]
            if head is None:
                tt_split.halves_forward(L[s], R[s], X, out[s], scratch)
            else:
                part = tuple(a if callable(a) else a[s] for a in head)
                tt_split.halves_head(L[s], R[s], X, part, out[s], scratch)
        return out

    def _head_args(self, P, offsets, act, dense, dense_offsets):
        """``tt_left_head``'s ``(bias, act, Wt, head_bias)`` from the rows of ``P``."""
        Q, F, n = P.shape[0], self.out_features, dense.out_features
        zeros = np.zeros((Q, max(F, n)), np.float32)
        bias = P[:, offsets["bias"]:offsets["bias"] + F] if self.bias else zeros[:, :F]
        w = dense_offsets["weight"]
        Wt = P[:, w:w + F * n].reshape(Q, F, n).transpose(0, 2, 1)
        hb = P[:, dense_offsets["bias"]:dense_offsets["bias"] + n] if dense.bias else zeros[:, :n]
        return (np.ascontiguousarray(bias), _scalar(act), np.ascontiguousarray(Wt),
                np.ascontiguousarray(hb))

    def spec(self):
        s = self.shape
        return {"type": "TTLinear", "in_features": self.in_features,
                "out_features": self.out_features, "rank": list(s.ranks),
                "in_modes": list(s.in_modes), "out_modes": list(s.out_modes), "bias": self.bias,
                "method": self.method}

    def __repr__(self):
        s = self.shape
        return (f"TTLinear({self.in_features}, {self.out_features}, rank={s.ranks}, "
                f"in_modes={s.in_modes}, out_modes={s.out_modes}, bias={self.bias})")
