"""Sequential models over one flat float32 parameter vector.

A model owns a ``Layout``: named segments (``"0.core1"``, ``"2.weight"``,
``"2.bias"``, ...) with shapes and offsets.  Estimators, optimizers and
checkpoints see the flat vector and the segment names, never layer objects.
"""

import math
import threading
from typing import NamedTuple, Optional

import numpy as np

from zotrain.kernels import elementwise
from zotrain.kernels.losses import MSE, XENT, dense_loss_many
from zotrain.nn import losses
from zotrain.nn.activations import Activation
from zotrain.nn.layers import LAYERS, Dense

LOSSES = {"xent": XENT, "mse": MSE}
#: scratch buffers a model keeps between forwards, over all threads and layers
SCRATCH_LIMIT_BYTES = 1 << 30


class Segment(NamedTuple):
    """One named block of the flat vector: ``name`` is ``"{layer}.{local}"`` for a
    model's own segments (``"0.core1"``, ``"2.bias"``); ``layer`` is None for
    segments that belong to no layer of the model (auxiliary heads)."""

    name: str
    shape: tuple
    offset: int
    layer: Optional[int] = None
    local: Optional[str] = None

    @property
    def size(self):
        return math.prod(self.shape)

    @property
    def slice(self):
        """Where the segment lies in the flat vector: ``params[seg.slice]``."""
        return slice(self.offset, self.offset + self.size)


class Layout:
    """Named segments of a flat parameter vector, in layer order."""

    def __init__(self, segments):
        self.segments = tuple(segments)
        self._by_name = {s.name: s for s in self.segments}
        self.n_params = sum(s.size for s in self.segments)

    def __getitem__(self, name):
        return self._by_name[name]

    def __iter__(self):
        return iter(self.segments)

    def __len__(self):
        return len(self.segments)

    @property
    def names(self):
        return [s.name for s in self.segments]

    def of_layer(self, i):
        """The segments of layer ``i``, in order."""
        return [s for s in self.segments if s.layer == i]

    def to_dict(self):
        return [{"name": s.name, "shape": list(s.shape), "offset": s.offset} for s in self.segments]


def real_numbers(name, a):
    """``a`` as an array, refused unless it holds real numbers (ints, floats or bools: not
    complex, text or Python objects, which a float32 cast would silently mangle)."""
    a = np.asarray(a)
    if a.dtype.kind not in "biuf":
        raise ValueError(f"{name} must hold real numbers, got dtype {a.dtype}")
    return a


def as_input(X, in_features):
    X = real_numbers("X", X)
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D (batch, {in_features}), got ndim {X.ndim} (shape {X.shape})")
    if X.shape[1] != in_features:
        raise ValueError(f"X has width {X.shape[1]}, expected in_features = {in_features}")
    if X.shape[0] < 1:
        raise ValueError("X must hold at least one example")
    X32 = np.ascontiguousarray(X, dtype=np.float32)
    if not np.isfinite(X32).all():
        beyond = np.isfinite(X).all()  # finite, but not in float32
        raise ValueError("X contains non-finite values (NaN or inf)" if not beyond else
                         "X holds values beyond float32's range (|x| > 3.4e38)")
    return X32


class Sequential:
    """Layers applied in order; parameters live in one flat float32 vector."""

    def __init__(self, layers):
        self.layers = list(layers)
        if not self.layers:
            raise ValueError("layers must be a non-empty list")
        width, segments, offset = None, [], 0
        for i, layer in enumerate(self.layers):
            if not hasattr(layer, "forward_many"):
                raise ValueError(f"layers[{i}] is not a zotrain layer: {layer!r}")
            if layer.in_features is not None:
                if width is not None and layer.in_features != width:
                    raise ValueError(f"layers[{i}] ({layer!r}) takes {layer.in_features} features, "
                                     f"but the layer before it gives {width}")
                width = layer.out_features
            for name, shape in layer.param_shapes():
                segments.append(Segment(f"{i}.{name}", tuple(shape), offset, i, name))
                offset += math.prod(shape)
        linear = [layer for layer in self.layers if layer.in_features is not None]
        if not linear:
            raise ValueError("a model needs at least one Dense or TTLinear layer")
        self.in_features = linear[0].in_features
        self.out_features = linear[-1].out_features
        self.layout = Layout(segments)
        self._pool, self._pool_lock = {}, threading.Lock()

    @property
    def n_params(self):
        return self.layout.n_params

    @property
    def dense_params(self):
        """Parameters of the same architecture with dense weight matrices."""
        return sum(l.in_features * l.out_features + (l.out_features if l.bias else 0)
                   for l in self.layers if l.in_features is not None)

    def flops(self, start=0, stop=None):
        """Multiply-adds x 2 per example of layers [start, stop), each linear layer
        counted as its dense-equivalent product (the unit of forward-pass equivalents)."""
        return float(sum(2 * l.in_features * l.out_features
                         for l in self.layers[start:stop] if l.in_features is not None))

    def offsets(self, i):
        """Offsets of layer ``i``'s segments by local name (``{"core0": 0, "bias": 96}``)."""
        return {s.local: s.offset for s in self.layout.of_layer(i)}

    def init(self, seed):
        """A fresh parameter vector (1-D float32); the same seed gives the same vector."""
        rng = np.random.default_rng(seed)
        parts = []
        for layer in self.layers:
            parts.extend(np.asarray(p, np.float32).ravel() for p in layer.init_params(rng))
        return np.concatenate(parts).astype(np.float32)

    def unflatten(self, params):
        """Name -> array (in layer order; TT cores shaped ``(r_k, in_k, out_k, r_k+1)``)."""
        params = self._check_params(params)
        return {s.name: params[s.slice].reshape(s.shape) for s in self.layout}

    def flatten(self, arrays):
        """Inverse of ``unflatten``."""
        missing = set(self.layout.names) - set(arrays)
        if missing:
            raise ValueError(f"arrays is missing segments {sorted(missing)}")
        flat = np.empty(self.n_params, np.float32)
        for s in self.layout:
            a = np.asarray(arrays[s.name])
            if a.shape != s.shape:
                raise ValueError(f"segment {s.name} must have shape {s.shape}, got {a.shape}")
            flat[s.slice] = a.ravel()
        return flat

    def _check_params(self, params):
        params = real_numbers("params", params)
        if params.ndim != 1 or params.shape[0] != self.n_params:
            raise ValueError(f"params must be 1-D with n_params = {self.n_params} entries, "
                             f"got shape {params.shape}")
        return params

    def check_many(self, P):
        P = real_numbers("P", P)
        if P.ndim != 2 or P.shape[1] != self.n_params:
            raise ValueError(f"P must be 2-D (Q, n_params = {self.n_params}), got shape {P.shape}")
        if P.shape[0] < 1:
            raise ValueError("P must hold at least one parameter set")
        return np.ascontiguousarray(P, dtype=np.float32)

    def _scratch(self, i):
        """Reusable buffers of layer ``i`` for this thread (fresh 100 MB arrays page-fault
        on every call); None, so that the caller allocates, once the pool holds
        ``SCRATCH_LIMIT_BYTES``.  ``release_buffers`` frees them."""
        key = (threading.get_ident(), i)
        with self._pool_lock:
            if key not in self._pool and sum(b.nbytes for d in self._pool.values()
                                             for b in d.values()) > SCRATCH_LIMIT_BYTES:
                return None
            return self._pool.setdefault(key, {})

    def release_buffers(self):
        """Free every scratch buffer (they are re-made on the next forward)."""
        with self._pool_lock:
            self._pool.clear()

    def linear_index(self):
        """Indices of the linear (Dense/TTLinear) layers, in order."""
        return [i for i, layer in enumerate(self.layers) if layer.in_features is not None]

    def fused_activation(self, i):
        """The activation layer fused into linear layer ``i`` (None if none follows)."""
        nxt = self.layers[i + 1] if i + 1 < len(self.layers) else None
        return nxt if isinstance(nxt, Activation) else None

    def activation_scalar(self, i):
        """The jitted scalar function of ``fused_activation(i)`` (identity for None)."""
        act = self.fused_activation(i)
        return elementwise.IDENTITY if act is None else act.scalar

    def forward_from(self, P, H, start, stop, fresh_last=True):
        """Run layers [start, stop) on all Q sets from input ``H`` ``(QH, B, F)``.

        Activations are fused into the linear layer before them, and a last dense layer
        into a TT layer before it when it can (``TTLinear.fuses_head``).  Intermediate
        activations live in reused per-thread buffers; the output of the last
        layer is a fresh array when ``fresh_last``.
        """
        i = start
        while i < stop:
            layer, step = self.layers[i], self._step(i, stop)
            act = self.layers[i + 1] if step == 2 else None
            if self._fuses_head(i, step, stop, H.shape[1]):
                # the last dense layer in the same pass: the activations never stored
                return layer.forward_many(H, P, self.offsets(i), act, self._scratch(i),
                                          head=(self.layers[i + step], self.offsets(i + step)))
            scratch = None if (fresh_last and i + step >= stop) else self._scratch(i)
            H = layer.forward_many(H, P, self.offsets(i), act, scratch)
            i += step
        return H

    def _step(self, i, stop):
        """2 when layer ``i`` is linear and an activation follows it before ``stop`` (the
        two run as one), else 1."""
        return 2 if (self.layers[i].in_features is not None and i + 1 < stop
                     and isinstance(self.layers[i + 1], Activation)) else 1

    def _fuses_head(self, i, step, stop, batch):
        """Whether layer ``i`` (``step`` layers with its activation) runs the last layer
        in [i, stop), a dense one, in its own pass (``TTLinear.fuses_head``)."""
        layer = self.layers[i]
        return (i + step + 1 == stop and isinstance(self.layers[i + step], Dense)
                and hasattr(layer, "fuses_head") and layer.fuses_head(batch))

    def linear_cache(self, params, H):
        """One parameter set's forward from input ``H`` ``(1, B, F)``, keeping for each
        linear layer ``i`` its input and pre-activation: ``({i: (input, Z)}, output)``.
        (Layers are taken as linear layers each followed by at most one activation.)"""
        P = np.asarray(params, np.float32)[None]
        cache = {}
        for i in self.linear_index():
            Z = self.layers[i].forward_many(H, P, self.offsets(i), None)
            cache[i] = (H, Z)
            H = elementwise.bias_activation_many(Z.copy(), P, -1, self.activation_scalar(i))
        return cache, H

    def loss_from(self, P, H, start, labels, targets, kind):
        """Per-set losses of layers [start, end) from input ``H``; fused with a last Dense
        layer (or that layer with the TT layer before it, when it fuses a head).
        ``labels``/``targets`` as ``check_target``."""
        last = self.layers[-1]
        n = len(self.layers)
        fused = any(self._fuses_head(i, self._step(i, n), n, H.shape[1])
                    for i in (n - 3, n - 2) if i >= start)
        if isinstance(last, Dense) and start <= n - 1 and not fused:
            H = self.forward_from(P, H, start, n - 1, fresh_last=False)
            off = self.offsets(n - 1)
            return dense_loss_many(H, P, off["weight"], off.get("bias", -1), last.out_features,
                                   kind, labels, targets, 64)
        Y = self.forward_from(P, H, start, n, fresh_last=False)
        per_example = losses.xent(Y, labels) if kind == XENT else losses.mse(Y, targets[None])
        return per_example.mean(axis=1)

    def apply_many(self, P, X):
        """Outputs of Q parameter sets on one batch: ``(Q, batch, out_features)``."""
        P = self.check_many(P)
        X = as_input(X, self.in_features)
        return self.forward_from(P, X[None], 0, len(self.layers))

    def features(self, params, X):
        """The last layer's input for one parameter vector: ``(batch, in_features of the
        last layer)`` (what an exact head gradient or solve needs)."""
        params = self._check_params(params)
        X = as_input(X, self.in_features)
        return self.forward_from(params[None], X[None], 0, len(self.layers) - 1)[0]

    def apply(self, params, X):
        """Output ``(batch, out_features)`` of one parameter vector."""
        params = self._check_params(params)
        return self.apply_many(params[None], X)[0]

    def loss_many(self, P, X, target, loss="xent"):
        """Mean loss over the batch for each of the Q parameter sets: ``(Q,)`` float64.

        ``loss`` is ``"xent"`` (softmax cross-entropy; ``target`` holds int class
        labels ``(batch,)``) or ``"mse"`` (``target`` is ``(batch, out_features)``).
        When the model ends in a ``Dense`` layer the loss is fused with it and
        the ``(Q, batch, out)`` outputs are never materialised.
        """
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {sorted(LOSSES)}, got {loss!r}")
        P = self.check_many(P)
        X = as_input(X, self.in_features)
        labels, targets = self.check_target(target, X.shape[0], loss)
        return self.loss_from(P, X[None], 0, labels, targets, LOSSES[loss])

    def check_target(self, target, batch, loss):
        target = np.asarray(target)
        if loss == "xent":
            if target.shape != (batch,) or not np.issubdtype(target.dtype, np.integer):
                raise ValueError(f"target must be int class labels of shape ({batch},), "
                                 f"got {target.dtype} {target.shape}")
            if target.min() < 0 or target.max() >= self.out_features:
                raise ValueError(f"labels must lie in [0, {self.out_features}), "
                                 f"got range [{target.min()}, {target.max()}]")
            return target.astype(np.int64), np.zeros((1, 1), np.float64)
        if target.shape != (batch, self.out_features):
            raise ValueError(f"target must have shape ({batch}, {self.out_features}), "
                             f"got {target.shape}")
        if not np.isfinite(target).all():
            raise ValueError("target contains non-finite values (NaN or inf)")
        return np.zeros(1, np.int64), np.ascontiguousarray(target, dtype=np.float64)

    def spec(self):
        """A JSON-serialisable description of the architecture (see ``from_spec``)."""
        return [layer.spec() for layer in self.layers]

    @classmethod
    def from_spec(cls, spec):
        """Rebuild a model from ``spec()``."""
        if not isinstance(spec, list) or not spec:
            raise ValueError(f"a model spec is a non-empty list of layers, got "
                             f"{type(spec).__name__}")
        built = []
        for i, entry in enumerate(spec):
            if not isinstance(entry, dict):
                raise ValueError(f"spec[{i}] must be an object with a 'type', got {entry!r}")
            entry = dict(entry)
            kind = entry.pop("type", None)
            if kind not in LAYERS:
                raise ValueError(f"spec[{i}] has unknown layer type {kind!r}; known: "
                                 f"{sorted(LAYERS)}")
            try:
                built.append(LAYERS[kind](**entry))
            except TypeError as e:  # an unknown or missing key
                raise ValueError(f"spec[{i}] ({kind}): {e}") from None
        return cls(built)

    def __repr__(self):
        inner = ",\n  ".join(repr(l) for l in self.layers)
        return f"Sequential([\n  {inner}\n])"
