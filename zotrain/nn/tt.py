"""The TT-matrix format, as free functions in the style of tensorly.

A TT-matrix with ``d`` cores represents a dense ``(prod(in_modes),
prod(out_modes))`` matrix ``W``; core ``k`` has shape ``(r_k, in_k, out_k,
r_{k+1})`` with ``r_0 = r_d = 1``.  Rows of ``W`` are input features and
columns output features (``Y = X @ W``), each indexed row-major over its
modes, first mode most significant, as ``tensorly.tt_matrix.tt_matrix_to_matrix``.
"""

import math

import numpy as np

__all__ = [
    "TTMatrixShape",
    "validate_tt_matrix",
    "validate_tt_ranks",
    "factor_modes",
    "balanced_modes",
    "random_tt_matrix",
    "tt_matrix_to_dense",
    "dense_to_tt_matrix",
    "to_tensorly",
    "from_tensorly",
    "tt_matrix_n_params",
    "compression_ratio",
]


def _prime_factors(n):
    out, p = [], 2
    while p * p <= n:
        while n % p == 0:
            out.append(p)
            n //= p
        p += 1
    if n > 1:
        out.append(n)
    return out


def factor_modes(n, d):
    """Split ``n`` into ``d`` integer modes whose product is ``n``, as equal as possible:
    of all such splits, the one whose largest mode is smallest (then its second largest,
    and so on).  Modes are returned in ascending order; modes of 1 pad a short
    factorisation (a prime ``n`` gives ``(1, ..., 1, n)``)."""
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    if not isinstance(d, (int, np.integer)) or d < 1:
        raise ValueError(f"d (number of modes) must be a positive integer, got {d!r}")
    return min(_ascending_splits(int(n), int(d), 1), key=lambda m: m[::-1])


def _ascending_splits(n, d, smallest):
    """Every ``(m_1 <= ... <= m_d)`` with product ``n`` and ``m_1 >= smallest``."""
    if d == 1:
        if n >= smallest:
            yield (n,)
        return
    a = smallest
    while a ** d <= n:
        if n % a == 0:
            for rest in _ascending_splits(n // a, d - 1, a):
                yield (a,) + rest
        a += 1


def balanced_modes(in_features, out_features, max_modes=4):
    """Default modes of a TT layer: as many as the smaller feature count's
    prime factors allow, between 2 and ``max_modes``."""
    n_factors = min(len(_prime_factors(in_features)), len(_prime_factors(out_features)))
    d = min(max_modes, max(2, n_factors))
    return factor_modes(in_features, d), factor_modes(out_features, d)


def validate_tt_ranks(ranks, n_modes):
    """Return the full rank tuple ``(1, r_1, ..., r_{d-1}, 1)``.

    ``ranks`` is an int (every inner rank) or a sequence of length ``d + 1``
    whose first and last entries are 1.
    """
    if isinstance(ranks, (int, np.integer)) and not isinstance(ranks, bool):
        if ranks < 1:
            raise ValueError(f"rank must be >= 1, got {ranks}")
        return (1,) + (int(ranks),) * (n_modes - 1) + (1,)
    try:
        ranks = tuple(int(r) for r in ranks)
    except (TypeError, ValueError):
        raise ValueError(f"ranks must be an int or a sequence of ints, got {ranks!r}") from None
    if len(ranks) != n_modes + 1:
        raise ValueError(
            f"ranks must have length n_modes + 1 = {n_modes + 1} (r_0 .. r_d), got {len(ranks)}: {ranks}")
    if min(ranks) < 1:
        raise ValueError(f"ranks must all be >= 1, got {ranks}")
    if ranks[0] != 1 or ranks[-1] != 1:
        raise ValueError(f"ranks must start and end with 1 (r_0 = r_d = 1), got {ranks}")
    return ranks


def _check_modes(name, modes, features=None):
    try:
        modes = tuple(int(m) for m in modes)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a sequence of ints, got {modes!r}") from None
    if not modes or min(modes) < 1:
        raise ValueError(f"{name} must be a non-empty sequence of positive ints, got {modes}")
    if features is not None and math.prod(modes) != features:
        raise ValueError(
            f"{name} {modes} multiply to {math.prod(modes)}, expected the feature count {features}")
    return modes


class TTMatrixShape:
    """Modes and ranks of a TT-matrix: the shapes of its cores, written once."""

    def __init__(self, in_modes, out_modes, ranks):
        self.in_modes = _check_modes("in_modes", in_modes)
        self.out_modes = _check_modes("out_modes", out_modes)
        if len(self.in_modes) != len(self.out_modes):
            raise ValueError(
                f"in_modes {self.in_modes} and out_modes {self.out_modes} must have the same length")
        self.ranks = validate_tt_ranks(ranks, len(self.in_modes))

    @property
    def n_modes(self):
        return len(self.in_modes)

    @property
    def in_features(self):
        return math.prod(self.in_modes)

    @property
    def out_features(self):
        return math.prod(self.out_modes)

    @property
    def core_shapes(self):
        r = self.ranks
        return [(r[k], self.in_modes[k], self.out_modes[k], r[k + 1]) for k in range(self.n_modes)]

    @property
    def n_params(self):
        return sum(math.prod(s) for s in self.core_shapes)

    def __repr__(self):
        return f"TTMatrixShape(in_modes={self.in_modes}, out_modes={self.out_modes}, ranks={self.ranks})"


def validate_tt_matrix(cores):
    """Check that ``cores`` chain into a TT-matrix; return its ``TTMatrixShape``."""
    cores = list(cores)
    if not cores:
        raise ValueError("cores must be a non-empty list of 4-D arrays")
    for k, c in enumerate(cores):
        if np.ndim(c) != 4:
            raise ValueError(f"core {k} must be 4-D (r_k, in_k, out_k, r_k+1), got shape {np.shape(c)}")
    for k in range(1, len(cores)):
        if cores[k].shape[0] != cores[k - 1].shape[3]:
            raise ValueError(
                f"core {k} has left rank {cores[k].shape[0]} but core {k - 1} has right rank "
                f"{cores[k - 1].shape[3]}")
    ranks = [c.shape[0] for c in cores] + [cores[-1].shape[3]]
    return TTMatrixShape([c.shape[1] for c in cores], [c.shape[2] for c in cores], ranks)


def random_tt_matrix(in_modes, out_modes, ranks, *, std=None, seed, dtype=np.float32):
    """Random cores whose dense matrix has entries of standard deviation ``std``.

    Each core entry is N(0, s^2) with the same ``s``; an entry of the dense
    matrix is a sum of ``prod(r_1..r_{d-1})`` uncorrelated products of ``d``
    entries, so ``s = (std^2 / prod(r))^(1 / 2d)``.  ``std`` defaults to He
    initialisation, ``sqrt(2 / in_features)``.
    """
    shape = TTMatrixShape(in_modes, out_modes, ranks)
    if std is None:
        std = math.sqrt(2.0 / shape.in_features)
    if not std > 0:
        raise ValueError(f"std must be > 0, got {std}")
    inner = math.prod(shape.ranks[1:-1])
    s = (std ** 2 / inner) ** (1.0 / (2 * shape.n_modes))
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal(cs) * s).astype(dtype) for cs in shape.core_shapes]


def tt_matrix_to_dense(cores):
    """The dense ``(in_features, out_features)`` matrix of a TT-matrix (NumPy)."""
    shape = validate_tt_matrix(cores)
    dt = np.result_type(*cores)
    left = np.ones((1, 1, 1), dtype=dt)  # (rows so far, cols so far, rank)
    for c in cores:
        left = np.einsum("abr,rios->aibos", left, c)
        a, i, b, o, s = left.shape
        left = left.reshape(a * i, b * o, s)
    return left.reshape(shape.in_features, shape.out_features)


def dense_to_tt_matrix(W, in_modes, out_modes, ranks):
    """TT-SVD of a dense ``(in_features, out_features)`` matrix, via tensorly."""
    from tensorly.decomposition import tensor_train_matrix

    W = np.asarray(W)
    if W.ndim != 2:
        raise ValueError(f"W must be a 2-D matrix, got shape {W.shape}")
    shape = TTMatrixShape(in_modes, out_modes, ranks)
    if W.shape != (shape.in_features, shape.out_features):
        raise ValueError(
            f"W has shape {W.shape}, but the modes give ({shape.in_features}, {shape.out_features})")
    tensor = W.reshape(shape.in_modes + shape.out_modes)
    tt = tensor_train_matrix(tensor, list(shape.ranks))
    return [np.asarray(c, dtype=W.dtype) for c in tt.factors]


def to_tensorly(cores):
    """Wrap cores as a ``tensorly.tt_matrix.TTMatrix`` (same core layout)."""
    from tensorly.tt_matrix import TTMatrix

    validate_tt_matrix(cores)
    return TTMatrix([np.asarray(c) for c in cores])


def from_tensorly(tt_matrix):
    """Cores of a ``tensorly.tt_matrix.TTMatrix`` (or list of factors)."""
    factors = getattr(tt_matrix, "factors", tt_matrix)
    cores = [np.asarray(c) for c in factors]
    validate_tt_matrix(cores)
    return cores


def tt_matrix_n_params(in_modes, out_modes, ranks):
    """Number of entries in the cores."""
    return TTMatrixShape(in_modes, out_modes, ranks).n_params


def compression_ratio(in_modes, out_modes, ranks):
    """Dense matrix entries divided by TT core entries."""
    shape = TTMatrixShape(in_modes, out_modes, ranks)
    return shape.in_features * shape.out_features / shape.n_params
