"""A problem's hard constraint ``transform(x, nn) = a(x) + c(x) nn`` in its affine form.

``HardConstraint(problem).affine(xs)`` gives ``(a, c)`` at points ``xs`` ``(N, d)``:
``(0, 1)`` without a transform; one call of the user's transform where it takes complex
``nn`` (``transform(x, 1j) = a + 1j c``, checked once on a few points), else two calls.
"""

import warnings

import numpy as np


class HardConstraint:
    def __init__(self, problem, n=8):
        self.transform = problem.transform
        self.one_call = False
        if self.transform is not None:
            self.one_call = self._takes_complex(problem.sample(n, 13))

    def _takes_complex(self, x):
        """Whether ``transform(x, 1j)`` gives ``a + 1j c`` on the points ``x``."""
        a, c = self._two_calls(x)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                v = np.asarray(self.transform(x, np.full(len(x), 1j)))
        except Exception:  # a transform that refuses complex numbers: two calls
            return False
        tol = 1e-9 * (1.0 + np.max(np.abs(a)))  # the two-call c carries a's rounding
        return bool(v.shape == (len(x),) and np.iscomplexobj(v) and
                    np.allclose(v.real, a, rtol=0, atol=tol) and
                    np.allclose(v.imag, c, rtol=0, atol=tol))

    def affine(self, xs):
        """``(a, c)`` at the points ``xs`` ``(N, d)``."""
        if self.transform is None:
            return np.zeros(len(xs)), np.ones(len(xs))
        if self.one_call:
            v = self.transform(xs, np.full(len(xs), 1j))
            return v.real, v.imag
        return self._two_calls(xs)

    def _two_calls(self, xs):
        a = self.transform(xs, np.zeros(len(xs)))
        return a, self.transform(xs, np.ones(len(xs))) - a
