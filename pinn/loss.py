"""The PINN loss of many parameter sets: one ``apply_many`` on all shifted inputs.

For collocation points ``x`` ``(B, d)`` and a rule of K nodes, the network runs
once on the ``B (2K + 1)`` shifted inputs for all Q parameter sets; the hard
constraint (if any) is applied at every shifted input, so the smoothed
function is that of the constrained network; the Stein forms give u, grad u,
Laplacian u and u_t, and the loss is the mean squared residual.
"""

import numpy as np

from .derivatives import from_values, rule, shifted_inputs


class PinnLoss:
    def __init__(self, model, problem, *, sigma=0.1, method="sparse-grid", level=3, samples=64,
                 seed=0):
        if model.in_features != problem.dim or model.out_features != 1:
            raise ValueError(f"the model maps {model.in_features} -> {model.out_features}; "
                             f"{problem.name} needs {problem.dim} -> 1")
        if not sigma > 0:
            raise ValueError(f"sigma must be > 0, got {sigma!r}")
        self.model, self.problem, self.sigma = model, problem, sigma
        self.nodes, self.weights = rule(problem.dim, method, level=level, samples=samples,
                                        seed=seed)

    def _network(self, P, pts):
        nn = self.model.apply_many(P, pts.astype(np.float32))[..., 0].astype(np.float64)
        t = self.problem.transform
        return t(pts, nn) if t is not None else nn  # (Q, N)

    def derivatives(self, P, x):
        """Smoothed u, grad, Laplacian, u_t for each of the Q sets: fields ``(Q * B, ...)``."""
        x = np.asarray(x, np.float64)
        if x.ndim != 2 or x.shape[1] != self.problem.dim:
            raise ValueError(f"collocation points must be (B, {self.problem.dim}), got {x.shape}")
        pts = shifted_inputs(x, self.sigma, self.nodes)  # (B, 2K+1, d)
        values = self._network(P, pts.reshape(-1, x.shape[1]))
        values = values.reshape(-1, pts.shape[1])  # (Q * B, 2K+1)
        return from_values(values, self.sigma, self.nodes, self.weights, self.problem.time_index)

    def __call__(self, P, x):
        """Mean squared residual ``(Q,)`` of each parameter set at ``x``."""
        P = np.atleast_2d(P)
        d = self.derivatives(P, x)
        xq = np.tile(np.asarray(x, np.float64), (P.shape[0], 1))
        r = self.problem.residual(xq, d.u, d.grad, d.lap, d.u_t)
        return np.mean(r.reshape(P.shape[0], -1) ** 2, axis=1)

    def predict(self, params, x):
        """The smoothed predictor the model is deployed with: ``u_sigma(x)`` ``(B,)``."""
        return self.derivatives(np.asarray(params)[None], x).u
