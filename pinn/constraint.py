"""A problem's hard constraint, exact for the predictor: ``u(x) = a(x) + c(x) N_sigma(x)``.

``transform(x, nn) = a(x) + c(x) nn`` is applied to the *smoothed* network ``N_sigma``,
not at the shifted inputs: the predictor the user gets meets the constraint exactly
(where ``c = 0``, ``u = a``), and ``a`` and ``c`` carry no smoothing bias.  The fields
the residual sees (value, gradient, Laplacian, Hessian) are the product rule's:

    grad u = grad a + N grad c + c grad N
    Lap u  = Lap a + N Lap c + 2 grad c . grad N + c Lap N   (over the space coordinates)
    u_ij   = a_ij + N c_ij + c_i N_j + c_j N_i + c N_ij

with ``N``'s fields from the Stein rule and ``a``'s and ``c``'s by complex step in
float64 (first derivatives exact; second ones along ``h e^{i pi / 4}`` steps, error
``O(h^4)``, no cancellation of ``f(x)``).  The transform must therefore be analytic in
``x`` (no ``abs``, ``maximum``, comparisons or casts to float); ``HardConstraint``
checks it against central differences once and names the problem when it is not.

``HardConstraint(problem, width, hessian)``: ``affine(x)`` gives ``(a, c)``,
``fields(x)`` their rows in ``stein_operator``'s layout, ``apply(A, C, N)`` the
constrained fields (affine in ``N``), ``adjoint(C, dU)`` the transpose of its linear
part (the residual's partials in ``U`` become partials in ``N``).
"""

import warnings

import numpy as np

from .problem import ProblemError

_ROWS_PER_CALL = 1 << 16  # complex points per call of the transform (memory bound)
_W = np.exp(0.25j * np.pi)  # the second-derivative step's direction in the complex plane


class HardConstraint:
    def __init__(self, problem, width=None, hessian=None):
        """``width`` (per coordinate, default 1) scales the second-derivative steps;
        ``hessian`` (None, "diagonal", "full") which Hessian rows ``fields`` holds."""
        self.problem = problem
        self.transform = problem.transform
        self.dim, self.time_index, self.hessian = problem.dim, problem.time_index, hessian
        self.h = 1e-3 * (np.ones(self.dim) if width is None else np.asarray(width, np.float64))
        self.space = np.array([i != self.time_index for i in range(self.dim)], np.float64)
        if self.active:
            self._check_analytic(problem.sample(4, 17))

    @property
    def active(self):
        return self.transform is not None

    def affine(self, x):
        """``(a, c)`` ``(B,)`` each at the points ``x`` ``(B, d)``."""
        if not self.active:
            return np.zeros(len(x)), np.ones(len(x))
        a = np.asarray(self.transform(x, np.zeros(len(x))))
        return a, np.asarray(self.transform(x, np.ones(len(x)))) - a

    def _ac(self, z):
        """``a`` and ``c`` at complex points ``z`` ``(N, d)``, in chunks: ``(2, N)``."""
        out = np.empty((2, len(z)), np.complex128)
        for i in range(0, len(z), _ROWS_PER_CALL):
            zc = z[i:i + _ROWS_PER_CALL]
            a = np.asarray(self.transform(zc, np.zeros(len(zc))), np.complex128)
            out[0, i:i + len(zc)] = a
            out[1, i:i + len(zc)] = np.asarray(self.transform(zc, np.ones(len(zc)))) - a
        return out

    def _steps(self):
        """The second-derivative step vectors ``(S, d)``: ``h_i e_i``, then (full Hessian)
        ``h_i e_i + h_j e_j`` for ``i < j``."""
        steps = [np.diag(self.h)]
        if self.hessian == "full":
            i, j = np.triu_indices(self.dim, 1)
            pair = np.zeros((len(i), self.dim))
            pair[np.arange(len(i)), i] = self.h[i]
            pair[np.arange(len(i)), j] = self.h[j]
            steps.append(pair)
        return np.concatenate(steps)

    def derivatives(self, x):
        """``(value, grad, diag, full)`` of ``a`` and ``c`` at ``x`` ``(B, d)``: ``(2, B)``,
        ``(2, B, d)``, the second derivatives' diagonal ``(2, B, d)`` and, for a full
        Hessian only, all of them ``(2, B, d, d)`` (else None)."""
        x = np.asarray(x, np.float64)
        B, d = x.shape
        value = np.stack(self.affine(x))
        first = x[:, None, :] + 1e-30j * np.eye(d)[None]
        grad = self._ac(first.reshape(-1, d)).imag.reshape(2, B, d) / 1e-30
        S = self._steps()
        z = x[:, None, :] + _W * np.concatenate([S, -S])[None]  # (B, 2S, d)
        f = self._ac(z.reshape(-1, d)).reshape(2, B, 2, len(S))
        fss = (f[:, :, 0] + f[:, :, 1]).imag  # (2, B, S): s^T Hess s, error O(|s|^4)
        diag = fss[:, :, :d] / self.h ** 2
        full = None
        if self.hessian == "full":
            i, j = np.triu_indices(d, 1)
            full = np.zeros((2, B, d, d))
            full[:, :, np.arange(d), np.arange(d)] = diag
            full[:, :, i, j] = full[:, :, j, i] = (
                fss[:, :, d:] - diag[:, :, i] * self.h[i] ** 2 - diag[:, :, j] * self.h[j] ** 2
            ) / (2 * self.h[i] * self.h[j])
        return value, grad, diag, full

    def fields(self, x):
        """``(A, C)``: the rows of ``a`` and ``c`` ``(B, R)`` each in ``stein_operator``'s
        layout (value, gradient, Laplacian over space, then the Hessian's diagonal or
        all of it)."""
        value, grad, diag, full = self.derivatives(x)
        rows = [value[..., None], grad, (diag @ self.space)[..., None]]
        if self.hessian == "diagonal":
            rows.append(diag)
        elif self.hessian == "full":
            rows.append(full.reshape(2, len(x), -1))
        A, C = np.concatenate(rows, axis=2)
        return A, C

    def apply(self, A, C, N):
        """The constrained fields ``U`` ``(..., B, R)`` from the network's ``N``."""
        d = self.dim
        U = A + C[:, :1] * N
        U[..., 1:] += C[:, 1:] * N[..., :1]
        gC, gN = C[:, 1:d + 1], N[..., 1:d + 1]
        U[..., d + 1] += 2 * np.sum(gC * gN * self.space, axis=-1)
        if self.hessian == "diagonal":
            U[..., d + 2:] += 2 * gC * gN
        elif self.hessian == "full":
            cross = gC[:, :, None] * gN[..., None, :]
            U[..., d + 2:] += (cross + np.swapaxes(cross, -1, -2)).reshape(U[..., d + 2:].shape)
        return U

    def adjoint(self, C, dU):
        """The transpose of ``apply``'s linear part: partials in ``N`` ``(B, R)`` from
        partials in ``U`` ``(B, R)``."""
        d = self.dim
        dN = C[:, :1] * dU
        dN[:, 0] += np.sum(C[:, 1:] * dU[:, 1:], axis=1)
        gC = C[:, 1:d + 1]
        dN[:, 1:d + 1] += 2 * gC * self.space * dU[:, d + 1:d + 2]
        if self.hessian == "diagonal":
            dN[:, 1:d + 1] += 2 * gC * dU[:, d + 2:]
        elif self.hessian == "full":
            H = dU[:, d + 2:].reshape(-1, d, d)
            dN[:, 1:d + 1] += np.einsum("bij,bi->bj", H + np.swapaxes(H, 1, 2), gC)
        return dN

    def _check_analytic(self, x):
        """Refuse a transform whose complex-step derivatives are not its derivatives."""
        name = self.problem.name
        why = ("its derivatives are taken by complex step: write it with analytic "
               "operations only (no abs, maximum, comparisons or casts to float)")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", np.exceptions.ComplexWarning)
                _, grad, diag, _ = self.derivatives(x)
        except Exception as e:
            raise ProblemError(f"problem {name!r}: transform(x, nn) failed on complex x "
                               f"({type(e).__name__}: {e}); {why}") from e
        h = 0.1 * self.h  # central differences in float64: rounding ~1e-12, truncation ~1e-8
        for i in range(self.dim):
            e = np.zeros(self.dim)
            e[i] = h[i]
            up, mid, down = (np.stack(self.affine(x + s * e)) for s in (1, 0, -1))
            size = (1.0 + np.abs(mid).max()) / (1e3 * self.h[i])  # |f| per box width
            if not (np.allclose(grad[..., i], (up - down) / (2 * h[i]), rtol=1e-4,
                                atol=1e-5 * size) and
                    np.allclose(diag[..., i], (up - 2 * mid + down) / h[i] ** 2,
                                rtol=1e-3, atol=1e-3 * size / (1e3 * self.h[i]))):
                raise ProblemError(f"problem {name!r}: transform(x, nn)'s complex-step "
                                   f"derivative along input {i} disagrees with its finite "
                                   f"differences; {why}")
