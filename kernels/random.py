"""Counter-based random directions: a pure function of (seed, step, query, index).

Every entry of a perturbation direction is derived by hashing its counter
(SplitMix64's finaliser), so the estimator and the update regenerate the same
direction without storing it, and the result never depends on the number of
threads or the order of work.

Distributions (``dist``): ``GAUSSIAN`` (N(0, 1) entries), ``RADEMACHER``
(+-1), ``SPHERE`` (uniform on the sphere of radius sqrt(n), so that
``E[u u^T] = I`` as for the other two).
"""

import numpy as np
from numba import njit, prange

from .config import PARALLEL, SERIAL, check_array, prepare_threads

GAUSSIAN = 0
RADEMACHER = 1
SPHERE = 2

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_TWO_PI = 2.0 * np.pi


@njit(**SERIAL)
def _mix(z):
    z = z + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


@njit(**SERIAL)
def direction_key(seed, step, query):
    """The hash key of one direction."""
    k = _mix(np.uint64(seed))
    k = _mix(k ^ np.uint64(step))
    return _mix(k ^ np.uint64(query))


@njit(**SERIAL)
def _uniform(key, counter):
    """Uniform in (0, 1) with 53 random bits."""
    h = _mix(key + np.uint64(counter) * _GOLDEN)
    return (np.float64(h >> np.uint64(11)) + 0.5) * (1.0 / 9007199254740992.0)


@njit(**SERIAL)
def _entry(key, j, dist):
    """Entry ``j`` of the direction with hash ``key`` (before sphere scaling)."""
    if dist == RADEMACHER:
        h = _mix(key + np.uint64(j) * _GOLDEN)
        return 1.0 if (h >> np.uint64(63)) == np.uint64(0) else -1.0
    # Box-Muller: entries 2m and 2m+1 share one pair of uniforms
    m = j // 2
    u1 = _uniform(key, 2 * m)
    u2 = _uniform(key, 2 * m + 1)
    r = np.sqrt(-2.0 * np.log(u1))
    return r * np.cos(_TWO_PI * u2) if j % 2 == 0 else r * np.sin(_TWO_PI * u2)


@njit(**SERIAL)
def _fill(out, key, dist):
    n = out.shape[0]
    s = 0.0
    for j in range(n):
        e = _entry(key, j, dist)
        out[j] = e
        s += e * e
    if dist == SPHERE:
        scale = np.sqrt(n / s) if s > 0 else 0.0
        for j in range(n):
            out[j] = np.float32(np.float64(out[j]) * scale)


@njit(**PARALLEL)
def _directions(seed, step, queries, n, dist):
    """Directions ``(len(queries), n)`` float32 for the given query indices."""
    U = np.empty((queries.shape[0], n), dtype=np.float32)
    for i in prange(queries.shape[0]):
        _fill(U[i], direction_key(seed, step, queries[i]), dist)
    return U


@njit(**SERIAL)
def _fill_segments(row, params, offsets, sizes, key, dist, scale):
    """``row = params``, then ``scale * u`` added over the concatenated segments."""
    row[:] = params
    n = 0
    for g in range(offsets.shape[0]):
        n += sizes[g]
    u = np.empty(n, dtype=np.float32)
    _fill(u, key, dist)
    j = 0
    for g in range(offsets.shape[0]):
        seg = row[offsets[g]:offsets[g] + sizes[g]]
        for t in range(sizes[g]):
            seg[t] += scale * u[j]
            j += 1


@njit(**PARALLEL)
def _perturb_into(P, params, offsets, sizes, seed, step, queries, scales, dist):
    """``P[i] = params + scales[i] * u_i`` on the given segments, unchanged elsewhere.

    ``u_i`` is the direction of query ``queries[i]`` over the concatenation of
    the segments ``params[offsets[g]:offsets[g] + sizes[g]]``.
    """
    for i in prange(P.shape[0]):
        _fill_segments(P[i], params, offsets, sizes, direction_key(seed, step, queries[i]), dist,
                       np.float32(scales[i]))
    return P


@njit(**PARALLEL)
def _accumulate(grad, offsets, sizes, seed, step, queries, coeffs, dist, block):
    """``grad += sum_i coeffs[i] * u_i`` on the segments, regenerating each ``u_i``.

    Work is split over blocks of ``block`` coordinates of the concatenated
    segments; within a block the queries are summed in their given order, so
    the result is the same for any thread count.  Sphere directions need
    their norm, so each is regenerated whole once to scale it.
    """
    nq = queries.shape[0]
    size = 0
    for g in range(offsets.shape[0]):
        size += sizes[g]
    where = np.empty(size, dtype=np.int64)  # concatenated index -> parameter index
    j = 0
    for g in range(offsets.shape[0]):
        for t in range(sizes[g]):
            where[j] = offsets[g] + t
            j += 1
    norms = np.ones(nq, dtype=np.float64)
    if dist == SPHERE:
        for i in prange(nq):
            key = direction_key(seed, step, queries[i])
            s = 0.0
            for j in range(size):
                e = _entry(key, j, GAUSSIAN)
                s += e * e
            norms[i] = np.sqrt(size / s) if s > 0 else 0.0
    inner = GAUSSIAN if dist == SPHERE else dist
    nblocks = (size + block - 1) // block
    for b in prange(nblocks):
        j0 = b * block
        j1 = min(size, j0 + block)
        acc = np.zeros(j1 - j0, dtype=np.float64)
        for i in range(nq):
            key = direction_key(seed, step, queries[i])
            c = coeffs[i] * norms[i]
            for j in range(j0, j1):
                acc[j - j0] += c * _entry(key, j, inner)
        for j in range(j0, j1):
            grad[where[j]] += acc[j - j0]
    return grad


def _check_segments(offsets, sizes, length):
    check_array("offsets", offsets, np.int64, 1)
    check_array("sizes", sizes, np.int64, 1)
    if offsets.shape != sizes.shape or (offsets.size and (
            offsets.min() < 0 or sizes.min() < 0 or (offsets + sizes).max() > length)):
        raise ValueError(f"segments (offsets {offsets}, sizes {sizes}) must lie within "
                         f"{length} parameters")


def _check_dist(dist):
    if dist not in (GAUSSIAN, RADEMACHER, SPHERE):
        raise ValueError(f"dist must be GAUSSIAN, RADEMACHER or SPHERE, got {dist!r}")


def directions(seed, step, queries, n, dist):
    """Directions ``(len(queries), n)`` float32 for the given query indices (int64)."""
    check_array("queries", queries, np.int64, 1)
    _check_dist(dist)
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    prepare_threads()
    return _directions(seed, step, queries, n, dist)


def perturb_into(P, params, offsets, sizes, seed, step, queries, scales, dist):
    """``P[i] = params + scales[i] * u_i`` on the given segments, unchanged elsewhere.

    ``u_i`` is the direction of query ``queries[i]`` over the concatenation of
    the segments ``params[offsets[g]:offsets[g] + sizes[g]]``."""
    check_array("P", P, np.float32, 2)
    check_array("params", params, np.float32, 1)
    check_array("queries", queries, np.int64, 1)
    check_array("scales", scales, np.float64, 1)
    _check_segments(offsets, sizes, params.shape[0])
    _check_dist(dist)
    if P.shape[1] != params.shape[0] or not P.shape[0] == queries.shape[0] == scales.shape[0]:
        raise ValueError(f"P {P.shape}, params {params.shape}, queries {queries.shape} and "
                         f"scales {scales.shape} do not agree")
    prepare_threads()
    return _perturb_into(P, params, offsets, sizes, seed, step, queries, scales, dist)


def accumulate(grad, offsets, sizes, seed, step, queries, coeffs, dist, block):
    """``grad += sum_i coeffs[i] * u_i`` on the segments, regenerating each ``u_i``
    (see ``_accumulate``)."""
    check_array("grad", grad, np.float32, 1)
    check_array("queries", queries, np.int64, 1)
    check_array("coeffs", coeffs, np.float64, 1)
    _check_segments(offsets, sizes, grad.shape[0])
    _check_dist(dist)
    if queries.shape != coeffs.shape or block < 1:
        raise ValueError(f"queries {queries.shape} and coeffs {coeffs.shape} must agree, "
                         f"block >= 1 (got {block})")
    prepare_threads()
    return _accumulate(grad, offsets, sizes, seed, step, queries, coeffs, dist, block)
