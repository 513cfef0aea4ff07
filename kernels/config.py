"""The one place where Numba kernel flags, the thread policy and argument checks live.

`fastmath` allows fused multiply-add and reciprocal tricks but not
reassociation: every kernel keeps a fixed summation order, so results do not
depend on the number of threads.  Set ``ZOTRAIN_NUMBA_CACHE=0`` to disable the
on-disk cache (for example on a read-only installation).

Importing this module (``import zotrain`` does it first) sets one environment
variable unless it is set: ``OPENBLAS_THREAD_TIMEOUT`` to ``BLAS_THREAD_TIMEOUT``.
OpenBLAS's threads otherwise spin for 2^28 cycles (~0.1 s) after each product,
and a Numba kernel right after a product shares a core with them: the rank-2
PINN forward ran 1.5-1.7x slower (docs/benchmarks.md, "OpenBLAS's spinning
threads").  OpenBLAS reads the variable when numpy loads, so it acts in a process
that imports zotrain before numpy (the ``zotrain`` command) and in the child
processes of any that imports zotrain.  ``prepare_threads``
runs before the first kernel launch (every public kernel wrapper calls it):
Numba's OpenMP workers spin after a parallel region and then fight BLAS's
threads for the cores (a TT layer alternates the two; spinning made a
single-set forward 3x slower here, benchmarks/forward.py), so unless the user
chose a policy, ``OMP_WAIT_POLICY`` is set to ``THREAD_WAIT_POLICY`` before
the thread pool starts.  Set ``THREAD_WAIT_POLICY = None`` (or
``OMP_WAIT_POLICY`` yourself) to keep your own.
"""

import os

#: log2 of the CPU cycles OpenBLAS's threads spin after a product before they sleep
#: (OpenBLAS's own default: 28); set in the environment at import unless set there
BLAS_THREAD_TIMEOUT = 20
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", str(BLAS_THREAD_TIMEOUT))

import numpy as np  # noqa: E402  (after the variable: OpenBLAS reads it when numpy loads)

_cache = os.environ.get("ZOTRAIN_NUMBA_CACHE", "1") != "0"

#: flags of serial kernels
SERIAL = dict(cache=_cache, nogil=True, fastmath={"contract", "arcp", "nsz"})
#: flags of kernels that parallelise with ``numba.prange``
PARALLEL = dict(SERIAL, parallel=True)
#: flags of kernels that take a jitted function (an activation) as an argument: never
#: cached on disk.  Numba keys such a signature by the function object, so a cached
#: entry never matches in a new process (each process compiles anyway), and the stale
#: entries it leaves in the cache index make a later save fail with "ReferenceError:
#: underlying object has vanished" (numba issue #9348).
SERIAL_FN = dict(SERIAL, cache=False)
PARALLEL_FN = dict(PARALLEL, cache=False)

#: largest number of float32 values a contraction work item keeps per buffer
#: (sizes the batch chunks so that intermediates stay in the L2 cache)
WORK_ITEM_FLOATS = 1 << 16

#: the OpenMP wait policy set before Numba's thread pool starts (None: leave it)
THREAD_WAIT_POLICY = "PASSIVE"
_prepared = False


def prepare_threads():
    """Choose the thread wait policy once, before the first parallel kernel runs."""
    global _prepared
    if _prepared:
        return
    _prepared = True
    if THREAD_WAIT_POLICY is not None:
        os.environ.setdefault("OMP_WAIT_POLICY", THREAD_WAIT_POLICY)


def check_array(name, a, dtype, ndim, contiguous=False):
    """Raise a ValueError naming ``name`` unless ``a`` is an ndarray of ``dtype`` and
    ``ndim`` dimensions (C-contiguous when asked)."""
    if not isinstance(a, np.ndarray):
        raise ValueError(f"{name} must be a numpy array, got {type(a).__name__}")
    if a.dtype != dtype or a.ndim != ndim:
        raise ValueError(f"{name} must be {np.dtype(dtype).name} with {ndim} dimensions, got "
                         f"{a.dtype} {a.shape}")
    if contiguous and not a.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous")
    return a
