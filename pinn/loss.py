"""The PINN loss of many parameter sets: one ``apply_many`` on all shifted inputs.

The network sees box coordinates ``y = (x - lower) / (upper - lower)`` in
[0, 1]^d, and the Gaussian smoothing acts there: ``u_sigma(x) =
E[u(x + sigma (upper - lower) z)]``; derivatives are returned in ``x``.  For
collocation points ``x`` ``(B, d)`` and a Stein rule of ``M`` evaluations per
point, the network runs once on the ``B M`` shifted inputs for all Q
parameter sets; the hard constraint (if any) is applied at every shifted
input, so the smoothed function is that of the constrained network; the Stein
forms give u, grad u, Laplacian u and u_t, and the loss is the mean squared
residual.

``head_jacobian`` is the exact Jacobian of the residuals with respect to the
last (Dense) layer, from the features entering it at the shifted inputs: the
output is affine in the head, the hard constraint is affine in the output,
the Stein forms are linear, and the residual's own partial derivatives are
taken by complex step.  No derivative of the network is taken.
``head_gradient`` and ``solve_head`` (one ridge-regularised Gauss-Newton
step, damped when the residual is not affine in its fields) build on it;
``hidden_layer_gradient`` carries the same exact sensitivity one activation
further down, to the last hidden layer's local rule.
"""

import math
import warnings

import numpy as np

from zotrain.nn.layers import Dense

from . import inputs as input_map
from .derivatives import SteinRule, check_points, check_sigma, frame_rule, rule, \
    shifted_inputs, split_fields, stein_operator, value_weights

_CHUNK_ROWS = 1 << 17  # network evaluations per forward call (memory bound)
BOUNDARY_RULES = ("same", "frame", "point")  # the boundary values' rule: the derivative
# rule's, frame_rule's (2 d + 1 evaluations per boundary point, exact to degree 3), or none (the
# unsmoothed network: 1 evaluation, off from u_sigma by about sigma^2 / 2 times its Laplacian)


class PinnLoss:
    def __init__(self, model, problem, *, sigma=None, method=None, level=3, samples=441, seed=0,
                 network=None, inputs="coordinates", boundary_weight=1.0, boundary_rule="same"):
        """``sigma`` and ``method`` default to the problem's (``Problem.sigma``/``.method``).
        ``network`` runs the forward passes: anything with the model's ``apply_many(P, X)``
        and ``features(params, X)`` (default: the model itself, on Numba kernels; see
        ``zotrain.export.runtime.OrtNetwork`` for onnxruntime).  ``inputs`` is what the
        network sees of a point (``zotrain.pinn.inputs``).  ``boundary_weight`` multiplies
        the mean squared boundary error in the loss (its rows by its square root).
        ``boundary_rule`` smooths the values at boundary points: ``"same"`` (the derivative
        rule's u form), ``"frame"`` (``derivatives.frame_rule``: 2 d + 1 evaluations per
        point instead of the derivative rule's, exact to degree 3 like it; boundary data
        need u, not its derivatives) or ``"point"`` (the network unsmoothed, one
        evaluation: a fit of the boundary data that ignores the smoothing)."""
        if boundary_rule not in BOUNDARY_RULES:
            raise ValueError(f"boundary_rule must be one of {BOUNDARY_RULES}, got "
                             f"{boundary_rule!r}")
        if not (isinstance(boundary_weight, (int, float, np.floating)) and
                not isinstance(boundary_weight, bool) and 0 < boundary_weight < np.inf):
            raise ValueError(f"boundary_weight must be a finite number > 0, got "
                             f"{boundary_weight!r}")
        self.boundary_weight = float(boundary_weight)
        self._root_weight = math.sqrt(self.boundary_weight)
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
        self.method = problem.method if method is None else method
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
        self.point_forwards = 0  # network evaluations / evaluations, times parameter sets
        self.residual_is_affine = self._affine_in_fields()
        self._one_call = self._transform_takes_complex()

    def _affine_in_fields(self, n=4):
        """Whether the residual is affine in its fields (then the head solve is exact)."""
        x = self.problem.sample(n, 11)
        rng = np.random.default_rng(12)
        f1, f2 = (rng.standard_normal((n, self.op.shape[0])) for _ in range(2))
        r = [self._residual(x, f) for f in (f1, f2, f1 + f2, np.zeros_like(f1))]
        return bool(np.allclose(r[2] - r[3], (r[0] - r[3]) + (r[1] - r[3]), rtol=1e-9, atol=1e-9))

    def _transform_takes_complex(self, n=8):
        """Whether ``transform(x, 1j)`` gives ``a + 1j c`` (``transform(x, nn) = a + c nn``):
        then ``_affine`` calls the user's transform once instead of twice."""
        t = self.problem.transform
        if t is None:
            return False
        x = self.problem.sample(n, 13)
        a, c = self._affine_two_calls(x)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                v = np.asarray(t(x, np.full(n, 1j)))
        except Exception:  # a transform that refuses complex numbers: two calls
            return False
        tol = 1e-9 * (1.0 + np.max(np.abs(a)))  # the two-call c carries a's rounding
        return bool(v.shape == (n,) and np.iscomplexobj(v) and
                    np.allclose(v.real, a, rtol=0, atol=tol) and
                    np.allclose(v.imag, c, rtol=0, atol=tol))

    @property
    def evaluations(self):
        """Network evaluations per collocation point and parameter set."""
        return self.stein.evaluations

    def _shifted(self, x, boundary=False):
        """Shifted inputs in box coordinates ``(B, M, d)`` and in ``x``, of the boundary
        rule for boundary points."""
        x = check_points(x, self.problem.dim)
        y = shifted_inputs((x - self.lower) / self.width, self.sigma,
                           self.boundary_stein if boundary else self.stein)
        return y, self.lower + self.width * y

    def _chunk(self, chunk, boundary):
        """Points per forward for ``chunk`` points' worth of the derivative rule's
        evaluations."""
        if not boundary:
            return chunk
        return max(1, chunk * self.evaluations // self.boundary_stein.evaluations)

    def _count(self, y, sets=1):
        """Add the network evaluations at shifted inputs ``y`` ``(B, M, d)`` for ``sets``
        parameter sets to ``point_forwards``, in collocation points of the derivative rule."""
        self.point_forwards += sets * y.shape[0] * y.shape[1] / self.evaluations

    def _affine(self, xs):
        """The hard constraint as ``a + c * nn`` at the points ``xs`` ``(N, d)``."""
        t = self.problem.transform
        if t is None:
            return np.zeros(len(xs)), np.ones(len(xs))
        if self._one_call:
            v = t(xs, np.full(len(xs), 1j))
            return v.real, v.imag
        return self._affine_two_calls(xs)

    def _affine_two_calls(self, xs):
        t = self.problem.transform
        a = t(xs, np.zeros(len(xs)))
        return a, t(xs, np.ones(len(xs))) - a

    def _residual(self, x, fields):
        """The residual ``(B,)`` from the rows of ``stein_operator`` ``(B, rows)``."""
        p = self.problem
        return p.residual_of(x, split_fields(fields, p.time_index, p.hessian))

    def values(self, P, x, boundary=False):
        """The constrained network at every shifted input (of the boundary rule for
        boundary points): ``(Q, B, M)`` float64."""
        P = np.atleast_2d(P)
        y, xs = self._shifted(x, boundary)
        d = y.shape[2]
        rows = input_map.apply(self.inputs, y.reshape(-1, d))
        per_call = max(1, _CHUNK_ROWS // len(rows))  # bounds the activations' memory
        nn = np.concatenate([self.network.apply_many(P[i:i + per_call], rows)[..., 0]
                             for i in range(0, len(P), per_call)])
        self._count(y, len(P))
        a, c = self._affine(xs.reshape(-1, d))
        return (a + c * nn.astype(np.float64)).reshape((len(P),) + y.shape[:2])

    def derivatives(self, P, x):
        """Smoothed u, grad, Laplacian, u_t for each of the Q sets: fields ``(Q * B, ...)``."""
        v = self.values(P, x)
        return split_fields(v.reshape(-1, v.shape[2]) @ self.op.T, self.problem.time_index,
                            self.problem.hessian)

    def __call__(self, P, x, xb=None):
        """Mean squared residual ``(Q,)`` of each parameter set at ``x``, plus the mean
        squared boundary error at ``xb`` for a problem with boundary data."""
        x = check_points(x, self.problem.dim)
        v = self.values(P, x)
        out = np.array([np.mean(self._residual(x, vq @ self.op.T) ** 2) for vq in v])
        if xb is not None and self.problem.boundary is not None:
            xb = check_points(xb, self.problem.dim)
            out += np.mean(self._residuals(xb, self.values(P, xb, True), True) ** 2, axis=1)
        return out

    def head_slice(self):
        """The last (Dense) layer's weight and bias: a slice of the flat parameters."""
        m = self.model
        head = m.layers[-1]
        if not isinstance(head, Dense):
            raise ValueError(f"the head needs a Dense last layer, got {type(head).__name__}")
        segs = m.layout.of_layer(len(m.layers) - 1)
        return slice(segs[0].offset, segs[-1].offset + segs[-1].size)

    def _head_inputs(self, params, x, chunk, boundary=False):
        """Per chunk of the points ``x``: ``(points, F, a, c)`` with ``F`` ``(B, M, P)`` the
        head's inputs at the chunk's shifted points (the last hidden features and a 1 for
        the bias; one forward) and ``u = a + c nn`` the hard constraint there."""
        P = self.head_slice().stop - self.head_slice().start
        chunk = self._chunk(chunk, boundary)
        for i in range(0, len(x), chunk):
            xc = x[i:i + chunk]
            y, xs = self._shifted(xc, boundary)
            B, M, d = y.shape
            H = self.network.features(params, input_map.apply(self.inputs, y.reshape(-1, d)))
            self._count(y)
            F = np.ones((B * M, P))
            F[:, :H.shape[1]] = H
            a, c = self._affine(xs.reshape(-1, d))
            yield xc, F.reshape(B, M, P), a.reshape(B, M), c.reshape(B, M)

    def head_jacobian(self, params, x, chunk=16, boundary=False):
        """``(r, J)``: residuals ``(B,)`` of ``params`` at ``x`` and their exact Jacobian
        ``(B, P)`` in the head's P parameters (weight then bias), from one forward.
        With ``boundary``, the boundary errors ``u_sigma(x) - g(x)`` instead."""
        x = check_points(x, self.problem.dim)
        theta = np.asarray(params[self.head_slice()], np.float64)
        rs, Js = [], []
        for xc, F, a, c in self._head_inputs(params, x, chunk, boundary):
            r, dr = self._residuals_and_partials(xc, a + c * (F @ theta), boundary)
            rs.append(r)
            Js.append(np.matmul((dr * c)[:, None, :], F)[:, 0])  # d r_b / d head
        return np.concatenate(rs), np.concatenate(Js)

    def head_losses(self, params, heads, x, xb=None, chunk=16):
        """The loss at ``x`` (and ``xb``) of ``params`` with each of the ``heads`` ``(K, P)``
        in place of its head, from one forward over the points (the head is linear)."""
        heads = np.asarray(heads, np.float64)
        out = np.zeros(len(heads))
        parts = [(check_points(x, self.problem.dim), False)] if len(x) else []
        if xb is not None and self.problem.boundary is not None:
            parts.append((check_points(xb, self.problem.dim), True))
        for pts, boundary in parts:
            for xc, F, a, c in self._head_inputs(params, pts, chunk, boundary):
                V = a[..., None] + c[..., None] * (F @ heads.T)  # (B, M, K)
                for k in range(len(heads)):
                    out[k] += np.sum(self._residuals(xc, V[..., k], boundary) ** 2) / len(pts)
        return out

    def _residuals(self, x, values, boundary):
        """Residuals ``(B,)`` (or boundary errors, times the square root of the boundary
        weight) of the smoothed values ``(B, M)`` (or ``(Q, B, M)`` for boundary errors)."""
        if boundary:
            return self._root_weight * (values @ self.boundary_u - self.problem.boundary(x))
        return self._residual(x, values @ self.op.T)

    def _residuals_and_partials(self, x, values, boundary):
        """Residuals ``(B,)`` (or boundary errors) of the smoothed values ``(B, M)`` and
        their partials in those values ``(B, M)``: the Stein rows, and the residual's own
        partials in its fields by complex step (exact when it is analytic), every field's
        step in one call of the residual."""
        if boundary:
            return self._residuals(x, values, True), np.broadcast_to(
                self._root_weight * self.boundary_u, values.shape)
        fields = values @ self.op.T
        B, n = fields.shape
        stepped = fields[None] + 1e-30j * np.eye(n)[:, None, :]  # (n, B, n)
        dr = self._residual(np.tile(x, (n, 1)), stepped.reshape(n * B, n)).imag.reshape(n, B).T \
            / 1e-30
        return self._residual(x, fields), dr @ self.op

    def _layer_sensitivities(self, params, x, xb, mu, chunk):
        """Per chunk of the points ``x`` (then of the boundary points ``xb``, if the problem
        has boundary data): ``(n, r, X, D, H, g)`` with ``n`` the part's number of points,
        ``r`` ``(B,)`` the residuals (or boundary errors), ``X`` ``(B M, in)`` the last
        hidden linear layer's input at the shifted points, ``D`` ``(B M, out)`` float32 the
        sensitivity of each point's residual to that layer's pre-activations ``Z`` (rows of
        point ``b`` belong to ``r_b`` alone), ``H`` the head's input features and ``g``
        ``(B, M)`` = ``d r_b / d nn`` at each shifted input.  The sensitivity to the head's
        input is exact (the head is linear); through the activation it takes the
        activation's exact slope (``Activation.derivative``), or a central difference of
        step ``mu`` for an activation without one.  One forward."""
        from zotrain.zo.local_rule import activation_slope

        model = self.model
        i = model.linear_index()[-2]
        act = model.activation_scalar(i)
        exact = getattr(model.fused_activation(i), "derivative", None)
        w = model.unflatten(params)[f"{len(model.layers) - 1}.weight"][:, 0].astype(np.float32)
        parts = [(check_points(x, self.problem.dim), False)]
        if xb is not None and self.problem.boundary is not None:
            parts.append((check_points(xb, self.problem.dim), True))
        for pts, boundary in parts:
            step = self._chunk(chunk, boundary)
            for s in range(0, len(pts), step):
                xc = pts[s:s + step]
                y, xs = self._shifted(xc, boundary)
                B, M, d = y.shape
                rows = input_map.apply(self.inputs, y.reshape(-1, d))
                cache, out = model.linear_cache(params, rows[None])
                self._count(y)
                X, Z = cache[i][0][0], cache[i][1][0]
                a, c = self._affine(xs.reshape(-1, d))
                values = (a + c * out[0, :, 0].astype(np.float64)).reshape(B, M)
                r, dr = self._residuals_and_partials(xc, values, boundary)
                g = dr * c.reshape(B, M)
                D = g.reshape(-1, 1).astype(np.float32) * w[None]
                D *= activation_slope(Z, act, mu, exact)
                yield len(pts), r, X, D, cache[len(model.layers) - 1][0][0], g

    def hidden_layer_gradient(self, params, x, xb=None, mu=1e-3, chunk=8):
        """``(loss, grad)``: the loss at ``x`` (and ``xb``) and its gradient with respect to
        the last hidden linear layer (zero elsewhere), by a local rule and forward passes
        only.  The loss is a linear functional of the network outputs at the shifted
        inputs, so its sensitivity to the head's input features is exact (the head is
        linear); through the layer's activation it becomes ``D = dL/dZ`` by the
        activation's slope (``_layer_sensitivities``), and the layer's update is
        ``X^T D`` from its own input ``X`` (``zotrain.zo.local_rule``)."""
        from zotrain.zo.local_rule import LayerGradient

        model = self.model
        i = model.linear_index()[-2]
        acc, loss = LayerGradient(model, i, params), 0.0
        for n, r, X, D, _, _ in self._layer_sensitivities(params, x, xb, mu, chunk):
            loss += float(np.sum(r ** 2)) / n
            M = len(X) // len(r)
            acc.add(X, D * np.repeat((2.0 / n) * r, M).astype(np.float32)[:, None])
        grad = np.zeros(model.n_params, np.float32)
        for name, value in acc.result().items():
            grad[model.layout[name].slice] = np.asarray(value).ravel()
        return loss, grad

    def body_columns(self):
        """Flat indices of the parameters ``body_jacobian`` covers: the last hidden linear
        layer's segments (layout order), then the head's."""
        m = self.model
        segs = m.layout.of_layer(m.linear_index()[-2])
        h = self.head_slice()
        return np.concatenate([np.arange(s.offset, s.offset + s.size) for s in segs] +
                              [np.arange(h.start, h.stop)])

    def body_jacobian(self, params, x, xb=None, mu=1e-3, chunk=8):
        """``(r, J)``: the residuals at ``x`` (then the boundary errors at ``xb``), each
        part scaled by ``1 / sqrt(its number of points)`` so that ``|r|^2`` is the loss,
        and their Jacobian ``(rows, len(body_columns()))`` in the last hidden linear
        layer's and the head's parameters.  The head's columns are exact; the layer's
        are the local rule per point: the sensitivity of point ``b``'s residual to the
        layer's pre-activations (``_layer_sensitivities``) times the layer's own input
        at that point's shifted inputs, projected onto the layer's parameters, all points
        of a chunk at once (``zotrain.zo.local_rule.LayerGradient.grouped``).  Forward
        passes only."""
        from zotrain.zo.local_rule import LayerGradient

        model = self.model
        i = model.linear_index()[-2]
        segs = model.layout.of_layer(i)
        acc = LayerGradient(model, i, params)
        rs, Js = [], []
        for n, r, X, D, H, g in self._layer_sensitivities(params, x, xb, mu, chunk):
            B, M = g.shape
            J = np.empty((B, sum(s.size for s in segs) + H.shape[1] + 1))
            J[:, -1] = g.sum(axis=1)  # the head's bias
            J[:, -H.shape[1] - 1:-1] = np.matmul(g[:, None, :], H.reshape(B, M, -1))[:, 0]
            got = acc.grouped(X, D, B)  # point b's rows: the b-th block of M
            J[:, :-H.shape[1] - 1] = np.concatenate([got[s.name].reshape(B, -1) for s in segs],
                                                    axis=1)
            scale = 1.0 / math.sqrt(n)
            rs.append(scale * r)
            Js.append(scale * J)
        return np.concatenate(rs), np.concatenate(Js)

    def gauss_newton_body(self, params, x, xb=None, check=None, damping=1e-3,
                          factors=(0.1, 1.0, 10.0, 100.0)):
        """One Levenberg-Marquardt step on the last hidden layer and the head together for
        the loss at ``x`` (and ``xb``): ``(new params, damping, loss before)``, the step
        being ``lm_step``'s on ``body_jacobian``'s rows."""
        r, J = self.body_jacobian(params, x, xb)
        new, damping = self.lm_step(params, r, J, check or (x, xb), damping, factors)
        return new, damping, float(r @ r)

    def lm_step(self, params, r, J, check, damping, factors=(0.1, 1.0, 10.0, 100.0)):
        """A Levenberg-Marquardt step on ``body_columns()`` for the rows ``r`` ``(R,)`` and
        their Jacobian ``J`` ``(R, columns)``: ``(new params, damping)``.  ``J``'s columns
        are scaled to unit norm (so the layer's and the head's parameters are damped
        alike); the step for each damping ``damping * f`` (``f`` in ``factors``) is solved
        in whichever of the row or the column space is smaller.  The candidates are
        compared, with the parameters before, by their loss at ``check`` (``(points,
        boundary points)``, fresh ones against fitting the rows' noise), all in one
        batched forward: the lowest is taken if it is below the parameters' own (its
        damping is returned), else nothing changes and the damping grows 10x beyond the
        largest.  The damping is capped at the trace of the scaled normal matrix (its
        number of non-zero columns): beyond it every step is already a plain gradient
        step, and more damping only shrinks it until float32 parameters stop moving,
        which, with the check loss then unchanged, would refuse every later step."""
        cols = self.body_columns()
        norm = np.linalg.norm(J, axis=0)
        cap = float(max(1, np.count_nonzero(norm)))
        norm[norm == 0] = 1.0
        Js = J / norm
        rows, n = Js.shape
        lams = [min(damping, cap) * f for f in factors]
        if rows < n:
            K = Js @ Js.T
            steps = [-(Js.T @ np.linalg.solve(K + lam * np.eye(rows), r)) for lam in lams]
        else:
            K, g = Js.T @ Js, Js.T @ r
            steps = [-np.linalg.solve(K + lam * np.eye(n), g) for lam in lams]
        P = np.repeat(np.asarray(params, np.float32)[None], len(lams) + 1, axis=0)
        P[1:, cols] = (np.asarray(params, np.float64)[cols] + np.array(steps) / norm)
        losses = self.losses(P, *check)
        losses[~np.isfinite(losses)] = np.inf  # a step that overflows is never taken
        best = int(np.argmin(losses[1:]))
        if not losses[1 + best] < losses[0]:
            return P[0], min(lams[-1] * 10.0, cap)
        return P[1 + best], lams[best]

    def head_gradient(self, params, x):
        """``(loss, grad)``: the loss of ``params`` at ``x`` and its exact gradient with
        respect to the head (zero elsewhere)."""
        r, J = self.head_jacobian(params, x)
        grad = np.zeros(self.model.n_params, np.float32)
        grad[self.head_slice()] = 2.0 * (r @ J) / len(r)
        return float(np.mean(r ** 2)), grad

    def solve_head(self, params, x, ridge, xb=None, tries=6):
        """One Gauss-Newton step on the head for the loss at ``x`` (and ``xb``) plus
        ``ridge |head|^2``: new parameters.  Exact when the residual is affine in its
        fields; otherwise (``|grad u|^2`` terms) the step is damped Levenberg-Marquardt
        style: the first of ``tries`` dampings (0, then trace(A)/P times 1, 10, 100, ...)
        whose loss does not rise, else no change.  The loss before and the losses of
        every damped step come from the Jacobian's pass and one more forward over the
        points (the head is linear in the features)."""
        head = self.head_slice()
        theta = np.asarray(params[head], np.float64)
        A, g = ridge * np.eye(len(theta)), ridge * theta
        base = ridge * float(theta @ theta)
        parts = [(x, False)] if len(x) else []
        if xb is not None and self.problem.boundary is not None:
            parts.append((xb, True))
        for pts, boundary in parts:
            r, J = self.head_jacobian(params, pts, boundary=boundary)
            A += J.T @ J / len(r)
            g += J.T @ r / len(r)
            base += float(np.mean(r ** 2))

        def with_head(h):
            new = np.array(params, np.float32, copy=True)
            new[head] = h
            return new

        if self.residual_is_affine:
            return with_head(theta - np.linalg.solve(A, g))
        unit = np.trace(A) / len(theta)
        heads = np.array([theta - np.linalg.solve(A + lam * np.eye(len(theta)), g) for lam in
                          [0.0] + [unit * 10.0 ** k for k in range(tries - 1)]])
        # the candidates as float32 parameters, the way the network will hold them
        heads = heads.astype(np.float32).astype(np.float64)
        losses = self.head_losses(params, heads, x, xb) + ridge * np.sum(heads ** 2, axis=1)
        for h, value in zip(heads, losses):
            if value <= base:
                return with_head(h)
        return np.array(params, np.float32, copy=True)

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
            step = self._chunk(step, True)
            err = (self._residuals(xb[i:i + step], self.values(P, xb[i:i + step], True), True)
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
        return np.concatenate(out) if out else np.zeros(0)
