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


def physical_memory_bytes():
    """This machine's physical memory in bytes, or None where it cannot be read."""
    import os

    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


#: float32 vectors of the parameters' size a training step holds at once: the parameters,
#: the update, Adam's two moments, the optimizer's new state and a checkpoint's copy
TRAINING_COPIES = 8


def check_fits(n_params, what="the model"):
    """Refuse (``ZotrainError``, with the parameter count) a model whose training state alone
    would exceed this machine's memory, before anything of its size is allocated."""
    from zotrain.base import ZotrainError

    need, have = 4 * TRAINING_COPIES * int(n_params), physical_memory_bytes()
    if have is not None and need > have:
        raise ZotrainError(f"{what} has {int(n_params):,} parameters: training them needs at "
                           f"least {need / 2 ** 30:,.1f} GiB, more than this machine's "
                           f"{have / 2 ** 30:,.1f} GiB; lower the rank or the width")
