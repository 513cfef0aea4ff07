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
step) build on it.
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
        self.stein = rule(problem.dim, self.method, level=level, samples=samples, seed=seed)
        self.lower = np.asarray(problem.lower, np.float64)
        self.width = np.asarray(problem.upper, np.float64) - self.lower
        self.op = stein_operator(sigma, self.stein, problem.time_index, self.width,
                                 problem.hessian)
        self.point_forwards = 0  # collocation points times parameter sets evaluated

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

    def head_jacobian(self, params, x, chunk=16, boundary=False):
        """``(r, J)``: residuals ``(B,)`` of ``params`` at ``x`` and their exact Jacobian
        ``(B, P)`` in the head's P parameters (weight then bias), from one forward.
        With ``boundary``, the boundary errors ``u_sigma(x) - g(x)`` instead."""
        x = check_points(x, self.problem.dim)
        if len(x) > chunk:
            parts = [self.head_jacobian(params, x[i:i + chunk], chunk, boundary)
                     for i in range(0, len(x), chunk)]
            return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
        head = self.head_slice()
        y, xs = self._shifted(x)
        B, M, d = y.shape
        H = self.network.features(params, y.reshape(-1, d).astype(np.float32))
        self.point_forwards += B
        F = np.ones((B * M, head.stop - head.start))
        F[:, :H.shape[1]] = H
        a, c = self._affine(xs.reshape(-1, d))
        values = (a + c * (F @ np.asarray(params[head], np.float64))).reshape(B, M)
        if boundary:
            r = values @ self.op[0] - self.problem.boundary(x)
            alpha = self.op[0][None] * c.reshape(B, M)
        else:
            fields = values @ self.op.T
            r = self._residual(x, fields)
            # the residual's partials in its fields by complex step (exact when it is analytic),
            # every field's step in one call of the residual
            n = fields.shape[1]
            stepped = fields[None] + 1e-30j * np.eye(n)[:, None, :]  # (n, B, n)
            dr = self._residual(np.tile(x, (n, 1)), stepped.reshape(n * B, n)).imag.reshape(n, B).T \
                / 1e-30
            alpha = (dr @ self.op) * c.reshape(B, M)  # d r_b / d (network output at node m)
        return r, np.matmul(alpha[:, None, :], F.reshape(B, M, -1))[:, 0]

    def head_gradient(self, params, x):
        """``(loss, grad)``: the loss of ``params`` at ``x`` and its exact gradient with
        respect to the head (zero elsewhere)."""
        r, J = self.head_jacobian(params, x)
        grad = np.zeros(self.model.n_params, np.float32)
        grad[self.head_slice()] = 2.0 * (r @ J) / len(r)
        return float(np.mean(r ** 2)), grad

    def solve_head(self, params, x, ridge, xb=None):
        """One Gauss-Newton step on the head for the loss at ``x`` (and ``xb``) plus
        ``ridge |head|^2`` (exact for residuals affine in the head): new parameters."""
        head = self.head_slice()
        theta = np.asarray(params[head], np.float64)
        A, g = ridge * np.eye(len(theta)), ridge * theta
        parts = [(x, False)]
        if xb is not None and self.problem.boundary is not None:
            parts.append((xb, True))
        for pts, boundary in parts:
            r, J = self.head_jacobian(params, pts, boundary=boundary)
            A += J.T @ J / len(r)
            g += J.T @ r / len(r)
        new = np.array(params, np.float32, copy=True)
        new[head] = theta - np.linalg.solve(A, g)
        return new

    def predict(self, params, x):
        """The smoothed predictor the model is deployed with: ``u_sigma(x)`` ``(B,)``."""
        x = check_points(x, self.problem.dim)
        step = max(1, _CHUNK_ROWS // self.evaluations)
        out = [self.values(np.asarray(params)[None], x[i:i + step])[0] @ self.op[0]
               for i in range(0, len(x), step)]
        return np.concatenate(out) if out else np.zeros(0)
