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

import numpy as np

from zotrain.nn.layers import Dense

from .derivatives import check_points, check_sigma, rule, shifted_inputs, split_fields, \
    stein_operator

_CHUNK_ROWS = 1 << 17  # network evaluations per forward call (memory bound)


class PinnLoss:
    def __init__(self, model, problem, *, sigma=None, method=None, level=3, samples=441, seed=0,
                 network=None):
        """``sigma`` and ``method`` default to the problem's (``Problem.sigma``/``.method``).
        ``network`` runs the forward passes: anything with the model's ``apply_many(P, X)``
        and ``features(params, X)`` (default: the model itself, on Numba kernels; see
        ``zotrain.export.runtime.OrtNetwork`` for onnxruntime)."""
        if model.in_features != problem.dim or model.out_features != 1:
            raise ValueError(f"the model maps {model.in_features} -> {model.out_features}; "
                             f"{problem.name} needs {problem.dim} -> 1")
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
        self.point_forwards = 0  # collocation points times parameter sets evaluated
        self.residual_is_affine = self._affine_in_fields()

    def _affine_in_fields(self, n=4):
        """Whether the residual is affine in its fields (then the head solve is exact)."""
        x = self.problem.sample(n, 11)
        rng = np.random.default_rng(12)
        f1, f2 = (rng.standard_normal((n, self.op.shape[0])) for _ in range(2))
        r = [self._residual(x, f) for f in (f1, f2, f1 + f2, np.zeros_like(f1))]
        return bool(np.allclose(r[2] - r[3], (r[0] - r[3]) + (r[1] - r[3]), rtol=1e-9, atol=1e-9))

    @property
    def evaluations(self):
        """Network evaluations per collocation point and parameter set."""
        return self.stein.evaluations

    def _shifted(self, x):
        """Shifted inputs in box coordinates ``(B, M, d)`` and in ``x``."""
        x = check_points(x, self.problem.dim)
        y = shifted_inputs((x - self.lower) / self.width, self.sigma, self.stein)
        return y, self.lower + self.width * y

    def _affine(self, xs):
        """The hard constraint as ``a + c * nn`` at the points ``xs`` ``(N, d)``."""
        t = self.problem.transform
        if t is None:
            return np.zeros(len(xs)), np.ones(len(xs))
        a = t(xs, np.zeros(len(xs)))
        return a, t(xs, np.ones(len(xs))) - a

    def _residual(self, x, fields):
        """The residual ``(B,)`` from the rows of ``stein_operator`` ``(B, rows)``."""
        p = self.problem
        return p.residual_of(x, split_fields(fields, p.time_index, p.hessian))

    def values(self, P, x):
        """The constrained network at every shifted input: ``(Q, B, M)`` float64."""
        P = np.atleast_2d(P)
        y, xs = self._shifted(x)
        d = y.shape[2]
        rows = y.reshape(-1, d).astype(np.float32)
        per_call = max(1, _CHUNK_ROWS // len(rows))  # bounds the activations' memory
        nn = np.concatenate([self.network.apply_many(P[i:i + per_call], rows)[..., 0]
                             for i in range(0, len(P), per_call)])
        self.point_forwards += len(P) * len(y)
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
            g = self.problem.boundary(check_points(xb, self.problem.dim))
            out += np.mean((self.values(P, xb) @ self.op[0] - g) ** 2, axis=1)
        return out

    def head_slice(self):
        """The last (Dense) layer's weight and bias: a slice of the flat parameters."""
        m = self.model
        head = m.layers[-1]
        if not isinstance(head, Dense):
            raise ValueError(f"the head needs a Dense last layer, got {type(head).__name__}")
        segs = m.layout.of_layer(len(m.layers) - 1)
        return slice(segs[0].offset, segs[-1].offset + segs[-1].size)

    def _head_inputs(self, params, x, chunk):
        """Per chunk of the points ``x``: ``(points, F, a, c)`` with ``F`` ``(B, M, P)`` the
        head's inputs at the chunk's shifted points (the last hidden features and a 1 for
        the bias; one forward) and ``u = a + c nn`` the hard constraint there."""
        P = self.head_slice().stop - self.head_slice().start
        for i in range(0, len(x), chunk):
            xc = x[i:i + chunk]
            y, xs = self._shifted(xc)
            B, M, d = y.shape
            H = self.network.features(params, y.reshape(-1, d).astype(np.float32))
            self.point_forwards += B
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
        for xc, F, a, c in self._head_inputs(params, x, chunk):
            r, dr = self._residuals_and_partials(xc, a + c * (F @ theta), boundary)
            rs.append(r)
            Js.append(np.matmul((dr * c)[:, None, :], F)[:, 0])  # d r_b / d head
        return np.concatenate(rs), np.concatenate(Js)

    def head_losses(self, params, heads, x, xb=None, chunk=16):
        """The loss at ``x`` (and ``xb``) of ``params`` with each of the ``heads`` ``(K, P)``
        in place of its head, from one forward over the points (the head is linear)."""
        heads = np.asarray(heads, np.float64)
        out = np.zeros(len(heads))
        parts = [(check_points(x, self.problem.dim), False)]
        if xb is not None and self.problem.boundary is not None:
            parts.append((check_points(xb, self.problem.dim), True))
        for pts, boundary in parts:
            for xc, F, a, c in self._head_inputs(params, pts, chunk):
                V = a[..., None] + c[..., None] * (F @ heads.T)  # (B, M, K)
                for k in range(len(heads)):
                    out[k] += np.sum(self._residuals(xc, V[..., k], boundary) ** 2) / len(pts)
        return out

    def _residuals(self, x, values, boundary):
        """Residuals ``(B,)`` (or boundary errors) of the smoothed values ``(B, M)``."""
        if boundary:
            return values @ self.op[0] - self.problem.boundary(x)
        return self._residual(x, values @ self.op.T)

    def _residuals_and_partials(self, x, values, boundary):
        """Residuals ``(B,)`` (or boundary errors) of the smoothed values ``(B, M)`` and
        their partials in those values ``(B, M)``: the Stein rows, and the residual's own
        partials in its fields by complex step (exact when it is analytic), every field's
        step in one call of the residual."""
        if boundary:
            return self._residuals(x, values, True), np.broadcast_to(self.op[0], values.shape)
        fields = values @ self.op.T
        B, n = fields.shape
        stepped = fields[None] + 1e-30j * np.eye(n)[:, None, :]  # (n, B, n)
        dr = self._residual(np.tile(x, (n, 1)), stepped.reshape(n * B, n)).imag.reshape(n, B).T \
            / 1e-30
        return self._residual(x, fields), dr @ self.op

    def hidden_layer_gradient(self, params, x, xb=None, mu=1e-3, chunk=8):
        """``(loss, grad)``: the loss at ``x`` (and ``xb``) and its gradient with respect to
        the last hidden linear layer (zero elsewhere), by a local rule and forward passes
        only.  The loss is a linear functional of the network outputs at the shifted
        inputs, so its sensitivity to the head's input features is exact (the head is
        linear); through the layer's activation it becomes ``D = dL/dZ`` by a central
        difference of the activation (step ``mu``), and the layer's update is
        ``X^T D`` from its own input ``X`` (``zotrain.zo.local_rule``)."""
        from zotrain.zo.local_rule import LayerGradient, activation_slope

        model = self.model
        i = model.linear_index()[-2]
        act = model.activation_scalar(i)
        w = model.unflatten(params)[f"{len(model.layers) - 1}.weight"][:, 0].astype(np.float64)
        parts = [(check_points(x, self.problem.dim), False)]
        if xb is not None and self.problem.boundary is not None:
            parts.append((check_points(xb, self.problem.dim), True))
        acc, loss = LayerGradient(model, i, params), 0.0
        for pts, boundary in parts:
            for s in range(0, len(pts), chunk):
                xc = pts[s:s + chunk]
                y, xs = self._shifted(xc)
                B, M, d = y.shape
                cache, out = model.linear_cache(params, y.reshape(1, -1, d).astype(np.float32))
                self.point_forwards += B
                X, Z = cache[i][0][0], cache[i][1][0]
                a, c = self._affine(xs.reshape(-1, d))
                values = (a + c * out[0, :, 0].astype(np.float64)).reshape(B, M)
                r, dr = self._residuals_and_partials(xc, values, boundary)
                loss += float(np.sum(r ** 2)) / len(pts)
                g = 2.0 * r[:, None] * dr * c.reshape(B, M)  # d(sum_b r_b^2) / d nn
                slope = activation_slope(Z, act, mu)
                D = ((g.reshape(-1, 1) / len(pts)) * w[None] * slope).astype(np.float32)
                acc.add(X, D)
        grad = np.zeros(model.n_params, np.float32)
        for name, value in acc.result().items():
            grad[model.layout[name].slice] = np.asarray(value).ravel()
        return loss, grad

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
        parts = [(x, False)]
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

    def mean_loss(self, params, x, xb=None):
        """The loss of one parameter vector at many points, in chunks of bounded memory."""
        step = max(1, _CHUNK_ROWS // self.evaluations)
        p = np.asarray(params, np.float32)[None]
        total = sum(len(x[i:i + step]) * self(p, x[i:i + step])[0] for i in range(0, len(x), step))
        out = total / len(x)
        if xb is not None and self.problem.boundary is not None:
            u = self.predict(params, xb)
            out += float(np.mean((u - self.problem.boundary(check_points(xb, self.problem.dim)))
                                 ** 2))
        return float(out)

    def predict(self, params, x):
        """The smoothed predictor the model is deployed with: ``u_sigma(x)`` ``(B,)``."""
        x = check_points(x, self.problem.dim)
        step = max(1, _CHUNK_ROWS // self.evaluations)
        out = [self.values(np.asarray(params)[None], x[i:i + step])[0] @ self.op[0]
               for i in range(0, len(x), step)]
        return np.concatenate(out) if out else np.zeros(0)
