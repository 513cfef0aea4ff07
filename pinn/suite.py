"""A seeded family of PDE instances with curved exact solutions: the generalisation suite.

``instance(family, seed)`` draws one ``Problem`` from the seed (dimension, directions,
weights, coefficients, data); no instance is tuned for.  Tune on ``SPLITS["dev"]``,
report ``SPLITS["test"]`` (``python benchmarks/pinn.py suite --split test``).

* ``hjb``: ``u_t + Lap u - lam |grad u|^2 + c0 = 0`` on ``[0, 1]^d x [0, 1]``, d in
  10-100, the operator of the HJB-20d benchmark; exact by Cole-Hopf,
  ``u = -ln(sum_k w_k exp(-lam s_k.x + lam^2 |s_k|^2 (1 - t))) / lam + c0 (1 - t)`` (three
  random directions ``s_k``); terminal data by hard constraint ``g(x) + (1 - t) nn``,
  the exact solution on the space faces as boundary data.
* ``allen-cahn``: ``u_t = nu Lap u + u - u^3 + f`` on ``[0, 1]^d x [0, 1]``, d in 5-20,
  manufactured ``u = sum_k w_k exp(-b_k t) sin(s_k.x + p_k)``; initial data by hard
  constraint ``u(0, x) + t nn``, boundary data on the faces.
* ``poisson``: ``Lap u + f = 0`` on ``[0, 1]^d``, d in 5-20, manufactured
  ``u = sum_k w_k sin(s_k.x + p_k)``; Dirichlet data on the faces.
* ``heat``: ``u_t = Lap u`` on all of R^d, d in 10-100, ``u = sum_k w_k exp(-|s_k|^2 t)
  cos(s_k.x + p_k)``; initial data by hard constraint ``u(0, x) + t nn``, no boundary
  data: points where ``x_0 + sqrt(2 t) xi`` goes from ``x_0 = (1/2, ..., 1/2)``.

Every function works on NumPy arrays (complex ones too: the residual's partials and
the constraint's derivatives are taken by complex step) and on PyTorch tensors (the
first-order baseline of ``benchmarks/pinn.py``).
"""

import sys

import numpy as np

from .problem import Problem

SPLITS = {"dev": (0, 1, 2, 3, 4, 5), "test": (100, 101)}
K = 3  # directions per instance


def _xp(x):
    """NumPy for arrays, PyTorch for tensors (never imported here)."""
    return np if isinstance(x, np.ndarray) else sys.modules["torch"]


def _c(x, value):
    """``value`` as a constant beside ``x`` (a NumPy array, or a tensor of x's dtype)."""
    value = np.asarray(value, np.float64)
    return value if isinstance(x, np.ndarray) else sys.modules["torch"].as_tensor(
        value, dtype=x.dtype)


def _directions(rng, d, low, high):
    """``K`` random directions ``(K, d)`` of lengths uniform in ``[low, high]``."""
    v = rng.standard_normal((K, d))
    return rng.uniform(low, high, K)[:, None] * v / np.linalg.norm(v, axis=1, keepdims=True)


def _hjb(seed):
    rng = np.random.default_rng([seed, 1])
    d = int(rng.choice([10, 20, 50, 100]))
    lam = float(10 ** rng.uniform(-1, 0))
    S = _directions(rng, d, 1.0, 3.0)
    w = rng.uniform(0.5, 1.5, K)
    c0 = float(rng.uniform(0, 2))
    sq = np.sum(S ** 2, axis=1)

    def log_sum(x, tau):  # ln sum_k w_k exp(-lam s_k.x + lam^2 |s_k|^2 tau), tau = 1 - t
        xp = _xp(x)
        e = -lam * (x[:, :d] @ _c(x, S.T)) + _c(x, lam ** 2 * sq) * tau[:, None]
        return xp.log(xp.exp(e) @ _c(x, w))

    def g(x):
        return -log_sum(x, 0 * x[:, d]) / lam

    def exact(x):
        e = -lam * (x[:, :d] @ S.T) + lam ** 2 * sq * (1 - x[:, d])[:, None]
        top = e.max(axis=1)
        ls = top + np.log(np.exp(e - top[:, None]) @ w)
        return -ls / lam + c0 * (1 - x[:, d])

    return Problem(f"hjb{d}d-s{seed}", d + 1, d, (0.0,) * (d + 1), (1.0,) * (d + 1),
                   residual=lambda x, u, grad, lap, u_t:
                   u_t + lap - lam * (grad[:, :d] ** 2).sum(1) + c0,
                   exact=exact, transform=lambda x, nn: g(x) + (1 - x[:, d]) * nn,
                   boundary=exact)


def _sines(x, S, phase, w, amp=None, fn="sin"):
    """``sum_k w_k amp_k sin(s_k.x + p_k)`` (or cos), ``amp`` ``(B, K)`` or None."""
    xp = _xp(x)
    d = S.shape[1]
    v = getattr(xp, fn)(x[:, :d] @ _c(x, S.T) + _c(x, phase))
    return (v if amp is None else v * amp) @ _c(x, w)


def _allen_cahn(seed):
    rng = np.random.default_rng([seed, 2])
    d = int(rng.choice([5, 10, 20]))
    nu = float(rng.uniform(0.05, 0.2))
    S = _directions(rng, d, 1.0, 3.0)
    phase, w, b = rng.uniform(0, 2 * np.pi, K), rng.uniform(0.3, 0.7, K), rng.uniform(0, 1, K)
    sq = np.sum(S ** 2, axis=1)

    def decay(x):
        return _xp(x).exp(-x[:, d:d + 1] * _c(x, b))  # (B, K)

    def exact(x):
        return _sines(x, S, phase, w, decay(x))

    def source(x):  # u_t - nu Lap u - u + u^3 of the exact solution
        u = exact(x)
        return _sines(x, S, phase, w * (-b + nu * sq), decay(x)) - u + u ** 3

    return Problem(f"allen-cahn{d}d-s{seed}", d + 1, d, (0.0,) * (d + 1), (1.0,) * (d + 1),
                   residual=lambda x, u, grad, lap, u_t:
                   u_t - nu * lap - u + u ** 3 - source(x),
                   exact=exact, transform=lambda x, nn: _sines(x, S, phase, w) + x[:, d] * nn,
                   boundary=exact)


def _poisson(seed):
    rng = np.random.default_rng([seed, 3])
    d = int(rng.choice([5, 10, 20]))
    S = _directions(rng, d, 1.0, 3.0)
    phase, w = rng.uniform(0, 2 * np.pi, K), rng.uniform(0.3, 0.7, K)
    sq = np.sum(S ** 2, axis=1)

    def exact(x):
        return _sines(x, S, phase, w)

    return Problem(f"poisson{d}d-s{seed}", d, None, (0.0,) * d, (1.0,) * d,
                   residual=lambda x, u, grad, lap, u_t: lap + _sines(x, S, phase, w * sq),
                   exact=exact, boundary=exact)


def _heat(seed):
    rng = np.random.default_rng([seed, 4])
    d = int(rng.choice([10, 20, 50, 100]))
    S = _directions(rng, d, 0.5, 1.5)
    phase, w = rng.uniform(0, 2 * np.pi, K), rng.uniform(0.3, 0.7, K)
    sq = np.sum(S ** 2, axis=1)

    def exact(x):
        return _sines(x, S, phase, w, _xp(x).exp(-x[:, d:d + 1] * _c(x, sq)), "cos")

    def sampler(n, rng):
        t = rng.random(n)
        return np.column_stack([0.5 + np.sqrt(2 * t)[:, None] * rng.standard_normal((n, d)), t])

    return Problem(f"heat{d}d-s{seed}", d + 1, d, (-1.5,) * d + (0.0,), (2.5,) * d + (1.0,),
                   residual=lambda x, u, grad, lap, u_t: u_t - lap, exact=exact,
                   transform=lambda x, nn: _sines(x, S, phase, w, fn="cos") + x[:, d] * nn,
                   whole_space=True, sampler=sampler)


FAMILIES = {"hjb": _hjb, "allen-cahn": _allen_cahn, "poisson": _poisson, "heat": _heat}


def instance(family, seed):
    """The ``Problem`` of ``family`` drawn from ``seed``."""
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; known: {', '.join(FAMILIES)}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    return FAMILIES[family](int(seed))


def cases(split):
    """``(family, seed)`` of every instance of ``split`` (``"dev"`` or ``"test"``)."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; known: {', '.join(SPLITS)}")
    return [(f, s) for f in FAMILIES for s in SPLITS[split]]


def instances(split):
    """Every family's instances of ``split``."""
    return [instance(f, s) for f, s in cases(split)]
