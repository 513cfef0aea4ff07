"""The one place where Numba kernel flags are set.

`fastmath` allows fused multiply-add and reciprocal tricks but not
reassociation: every kernel keeps a fixed summation order, so results do not
depend on the number of threads.  Set ``ZOTRAIN_NUMBA_CACHE=0`` to disable the
on-disk cache (for example on a read-only installation).
"""

import os

# Numba's OpenMP workers spin after a parallel region and then fight BLAS's
# threads for the two cores: a TT layer alternates the two, and spinning made
# a single-set forward 3x slower here (benchmarks/forward.py).  Must be set
# before libgomp starts; a value the user set wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

_cache = os.environ.get("ZOTRAIN_NUMBA_CACHE", "1") != "0"

#: flags of serial kernels
SERIAL = dict(cache=_cache, nogil=True, fastmath={"contract", "arcp", "nsz"})
#: flags of kernels that parallelise with ``numba.prange``
PARALLEL = dict(SERIAL, parallel=True)

#: largest number of float32 values a contraction work item keeps per buffer
#: (sizes the batch chunks so that intermediates stay in the L2 cache)
WORK_ITEM_FLOATS = 1 << 16
