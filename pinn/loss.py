"""The PINN loss of many parameter sets: one ``apply_many`` on all shifted inputs.

The network sees box coordinates ``y = (x - lower) / (upper - lower)`` in [0, 1]^d, and
the Gaussian smoothing acts there: ``u_sigma(x) = E[u(x + sigma (upper - lower) z)]``;
derivatives are returned in ``x``.  For collocation points ``x`` ``(B, d)`` and a Stein
rule of ``M`` evaluations per point, the network runs once on the ``B M`` shifted inputs
for all Q parameter sets; the Stein forms give the smoothed network's value and
derivatives, the hard constraint (if any) is applied to them (``u = a + c N_sigma``, by
the product rule: ``zotrain.pinn.constraint``), and the loss is the mean squared
residual.  The solvers built on it (head solve, body Jacobian, Levenberg-Marquardt
step, local rule) are functions in ``zotrain.pinn.solvers``; the network evaluations
are counted in the ``CostAccount`` the loss is given (``account.points``).
"""

import math

import numpy as np

from zotrain.nn.layers import Dense
from zotrain.zo.cost import CostAccount

from . import inputs as input_map
from .constraint import HardConstraint
from .derivatives import SteinRule, check_points, check_sigma, default_method, frame_rule, \
    rule, shifted_inputs, split_fields, stein_operator, value_weights

_CHUNK_ROWS = 1 << 17  # network evaluations per forward call (memory bound)
#: the boundary values' smoothing: the derivative rule's u form, ``frame_rule``'s (2 d + 1
#: evaluations, exact to degree 3), or none (the network itself, one evaluation)
BOUNDARY_RULES = ("same", "frame", "point")


def check_boundary(rule, weight):
    """Refuse a boundary rule or weight ``PinnLoss`` does not take (``ValueError``); a
    weight of None is adaptive."""
    if rule not in BOUNDARY_RULES:
        raise ValueError(f"boundary_rule must be one of {', '.join(BOUNDARY_RULES)}, got "
                         f"{rule!r}")
    if weight is None:
        return
    if isinstance(weight, bool) or not isinstance(weight, (int, float, np.floating)) or \
            not 0 < weight < np.inf:
        raise ValueError(f"boundary_weight must be a finite number > 0, got {weight!r}")


class PinnLoss:
    def __init__(self, model, problem, *, sigma=None, method=None, level=3, samples=441, seed=0,
                 network=None, inputs="coordinates", boundary_weight=None, boundary_rule="same",
                 account=None):
        """``sigma``, ``method`` default to the problem's; ``network`` runs the forwards
        (anything with ``apply_many(P, X)`` and ``features(params, X)``: the model, or
        ``zotrain.export.runtime.OrtNetwork``); ``inputs``: ``zotrain.pinn.inputs``;
        ``boundary_weight`` multiplies the mean squared boundary error (None: adaptive,
        starting at 1 and set by each head solve, ``solvers.ntk_weight``); ``boundary_rule``
        smooths boundary values (``BOUNDARY_RULES``); ``account`` counts evaluations."""
        check_boundary(boundary_rule, boundary_weight)
        self.adaptive = boundary_weight is None
        self.set_boundary_weight(1.0 if self.adaptive else boundary_weight)
        n_in = input_map.width(inputs, problem.dim)
        if model.in_features != n_in or model.out_features != 1:
            raise ValueError(f"the model maps {model.in_features} -> {model.out_features}; "
                             f"{problem.name} needs {n_in} -> 1 (inputs {inputs!r})")
        self.inputs = inputs
        problem.check()
        sigma = problem.sigma if sigma is None else sigma
        check_sigma(sigma)
        self.model, self.problem, self.sigma = model, problem, sigma
        self.network = model if network is None else network
        self.method = method or problem.method or default_method(problem.dim)
        self.stein = rule(problem.dim, self.method, level=level, samples=samples, seed=seed,
                          time_index=problem.time_index)
        self.lower = np.asarray(problem.lower, np.float64)
        self.width = np.asarray(problem.upper, np.float64) - self.lower
        self.op = stein_operator(sigma, self.stein, problem.time_index, self.width,
                                 problem.hessian)
        self.boundary_stein = self.stein  # "same"
        if boundary_rule == "frame":
            self.boundary_stein = frame_rule(problem.dim, seed)
        elif boundary_rule == "point":
            self.boundary_stein = SteinRule(np.zeros((0, problem.dim)), np.zeros(0), 1.0)
        self.boundary_u = value_weights(self.boundary_stein)
        self.account = CostAccount() if account is None else account
        self.residual_is_affine = self._affine_in_fields()
        self.constraint = HardConstraint(problem, self.width, problem.hessian)

    def set_boundary_weight(self, weight):
        """The weight of the mean squared boundary error from now on."""
        self.boundary_weight = float(weight)
        self.root_weight = math.sqrt(self.boundary_weight)

    def _affine_in_fields(self, n=4):
        """Whether the residual is affine in its fields (then the head solve is exact)."""
        x = self.problem.sample(n, 11)
        rng = np.random.default_rng(12)
        f1, f2 = (rng.standard_normal((n, self.op.shape[0])) for _ in range(2))
        r = [self.residual(x, f) for f in (f1, f2, f1 + f2, np.zeros_like(f1))]
        return bool(np.allclose(r[2] - r[3], (r[0] - r[3]) + (r[1] - r[3]), rtol=1e-9, atol=1e-9))

    @property
    def evaluations(self):
        """Network evaluations per collocation point and parameter set."""
        return self.stein.evaluations

    def shifted(self, x, boundary=False):
        """Shifted inputs in box coordinates ``(B, M, d)``, of the boundary rule for
        boundary points."""
        x = check_points(x, self.problem.dim)
        return shifted_inputs((x - self.lower) / self.width, self.sigma,
                              self.boundary_stein if boundary else self.stein)

    def chunk_points(self, chunk, boundary):
        """Points per forward for ``chunk`` points' worth of the derivative rule's
        evaluations."""
        if not boundary:
            return chunk
        return max(1, chunk * self.evaluations // self.boundary_stein.evaluations)

    def count(self, y, sets=1):
        """Count the network evaluations at shifted inputs ``y`` ``(B, M, d)`` for ``sets``
        parameter sets, in collocation points of the derivative rule."""
        self.account.points += sets * y.shape[0] * y.shape[1] / self.evaluations

    def residual(self, x, fields):
        """The residual ``(B,)`` from the rows of ``stein_operator`` ``(B, rows)``."""
        p = self.problem
        return p.residual_of(x, split_fields(fields, p.time_index, p.hessian))

    def network_inputs(self, y):
        """What the network sees ``(N, width)`` of shifted box coordinates ``y`` ``(..., d)``
        (``zotrain.pinn.inputs``)."""
        return input_map.apply(self.inputs, y.reshape(-1, y.shape[-1]), self.problem.time_index)

    def values(self, P, x, boundary=False):
        """The network at every shifted input (of the boundary rule for boundary points):
        ``(Q, B, M)`` float64."""
        P = np.atleast_2d(P)
        y = self.shifted(x, boundary)
        rows = self.network_inputs(y)
        per_call = max(1, _CHUNK_ROWS // len(rows))  # bounds the activations' memory
        nn = np.concatenate([self.network.apply_many(P[i:i + per_call], rows)[..., 0]
                             for i in range(0, len(P), per_call)])
        self.count(y, len(P))
        return nn.astype(np.float64).reshape((len(P),) + y.shape[:2])

    def constraint_at(self, x, boundary=False):
        """What ``residuals`` needs of the hard constraint at ``x``: ``(a, c)`` at boundary
        points, the rows ``(A, C)`` of their fields at collocation points; None without
        one."""
        if not self.constraint.active:
            return None
        return self.constraint.affine(x) if boundary else self.constraint.fields(x)

    def fields(self, x, values, constraint=None):
        """The rows of ``stein_operator`` for the predictor ``u = a + c N_sigma`` at ``x``
        from the network's ``values`` ``(..., B, M)``: ``(..., B, rows)``."""
        N = values @ self.op.T
        if not self.constraint.active:
            return N
        A, C = self.constraint_at(x) if constraint is None else constraint
        return self.constraint.apply(A, C, N)

    def __call__(self, P, x, xb=None):
        """Mean squared residual ``(Q,)`` of each parameter set at ``x``, plus the mean
        squared boundary error at ``xb`` for a problem with boundary data."""
        x = check_points(x, self.problem.dim)
        v = self.values(P, x)
        cx = self.constraint_at(x)
        out = np.array([np.mean(self.residuals(x, vq, False, cx) ** 2) for vq in v])
        if xb is not None and self.problem.boundary is not None:
            xb = check_points(xb, self.problem.dim)
            out += np.mean(self.residuals(xb, self.values(P, xb, True), True) ** 2, axis=1)
        return out

    def head_slice(self):
        """The last (Dense) layer's weight and bias: a slice of the flat parameters."""
        m = self.model
        head = m.layers[-1]
        if not isinstance(head, Dense):
            raise ValueError(f"the head needs a Dense last layer, got {type(head).__name__}")
        segs = m.layout.of_layer(len(m.layers) - 1)
        return slice(segs[0].offset, segs[-1].offset + segs[-1].size)

    def residuals(self, x, values, boundary, constraint=None):
        """Residuals ``(B,)`` (or boundary errors, times the square root of the boundary
        weight) of the network's values ``(B, M)`` (or ``(Q, B, M)`` for boundary errors);
        ``constraint``: ``constraint_at(x, boundary)``, computed when not given."""
        if boundary:
            u = values @ self.boundary_u
            if self.constraint.active:
                a, c = self.constraint_at(x, True) if constraint is None else constraint
                u = a + c * u
            return self.root_weight * (u - self.problem.boundary(x))
        return self.residual(x, self.fields(x, values, constraint))

    def losses(self, P, x, xb=None):
        """The loss ``(Q,)`` of each parameter set at many points (and boundary points), in
        chunks of points of bounded memory."""
        P = np.atleast_2d(np.asarray(P, np.float32))
        step = max(1, _CHUNK_ROWS // self.evaluations)
        x = check_points(x, self.problem.dim)
        out = np.zeros(len(P))
        if len(x):
            out += sum(len(x[i:i + step]) * self(P, x[i:i + step])
                       for i in range(0, len(x), step)) / len(x)
        if xb is not None and self.problem.boundary is not None:
            xb = check_points(xb, self.problem.dim)
            step = self.chunk_points(step, True)
            err = (self.residuals(xb[i:i + step], self.values(P, xb[i:i + step], True), True)
                   for i in range(0, len(xb), step))
            out = out + sum(np.sum(e ** 2, axis=1) for e in err) / len(xb)
        return out

    def mean_loss(self, params, x, xb=None):
        """The loss of one parameter vector at many points, in chunks of bounded memory."""
        return float(self.losses(np.asarray(params)[None], x, xb)[0])

    def predict(self, params, x):
        """The smoothed predictor the model is deployed with: ``u_sigma(x)`` ``(B,)``."""
        x = check_points(x, self.problem.dim)
        step = max(1, _CHUNK_ROWS // self.evaluations)
        out = [self.values(np.asarray(params)[None], x[i:i + step])[0] @ self.op[0]
               for i in range(0, len(x), step)]
        n = np.concatenate(out) if out else np.zeros(0)
        a, c = self.constraint.affine(x)
        return a + c * n if self.constraint.active else n
