"""Figures written as PNG without pyplot: no backend is switched, no global state."""

from zotrain.engine.checkpoint import atomic_write


def save_figure(path, draw, ncols=2, size=(10, 4)):
    """Call ``draw(axes)`` on a new figure of ``ncols`` axes and write it to ``path``
    atomically; does nothing without matplotlib (``pip install zotrain[plot]``)."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        return False
    fig = Figure(figsize=size)
    axes = fig.subplots(1, ncols)
    draw(axes)
    fig.tight_layout()
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=100))
    return True
