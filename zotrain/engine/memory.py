"""Peak memory of this process, measured portably."""

import sys


def peak_rss_mb():
    """Peak resident set size in MB, or None where the platform does not report it.

    ``ru_maxrss`` is in kilobytes on Linux and in bytes on macOS; Windows has no
    ``resource`` module."""
    try:
        import resource
    except ImportError:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (2 ** 20 if sys.platform == "darwin" else 2 ** 10), 1)
