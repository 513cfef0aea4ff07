"""Reference architectures."""

from zotrain.nn.activations import ReLU, Sin
from zotrain.nn.layers import Dense, TTLinear
from zotrain.nn.sequential import Sequential


def mnist_mlp(rank=8):
    """784 -> 1024 TT-matrix layer (modes (4,7,7,4) x (4,8,8,4)), ReLU, Dense 1024 -> 10."""
    return Sequential([
        TTLinear(784, 1024, rank=rank, in_modes=(4, 7, 7, 4), out_modes=(4, 8, 8, 4)),
        ReLU(),
        Dense(1024, 10),
    ])


def pinn_mlp(in_features=21, width=512, rank=2, depth=2):
    """in -> width (-> width ...) -> 1: ``depth`` TT-matrix layers with Sin activations and
    a Dense head."""
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
        raise ValueError(f"depth must be an integer >= 1, got {depth!r}")
    layers, n = [], in_features
    for _ in range(depth):
        layers += [TTLinear(n, width, rank=rank), Sin()]
        n = width
    return Sequential(layers + [Dense(width, 1)])


def mnist_deep(rank=8):
    """784 -> 1024 -> 1024 -> 1024 -> 10: three TT-matrix layers (ReLU) and a Dense head."""
    return Sequential([
        TTLinear(784, 1024, rank=rank, in_modes=(4, 7, 7, 4), out_modes=(4, 8, 8, 4)),
        ReLU(),
        TTLinear(1024, 1024, rank=rank, in_modes=(4, 8, 8, 4), out_modes=(4, 8, 8, 4)),
        ReLU(),
        TTLinear(1024, 1024, rank=rank, in_modes=(4, 8, 8, 4), out_modes=(4, 8, 8, 4)),
        ReLU(),
        Dense(1024, 10),
    ])


def classifier(in_features, n_classes, *, rank=8, depth=1, hidden=1024):
    """``depth`` TT-matrix layers of width ``hidden`` (ReLU) and a Dense head: the MNIST
    models (``mnist_mlp``, ``mnist_deep``) for 784 inputs and 10 classes, balanced
    TT modes for any other width."""
    if (in_features, n_classes, hidden) == (784, 10, 1024) and depth in (1, 3):
        return (mnist_mlp if depth == 1 else mnist_deep)(rank=rank)
    return _classifier(in_features, n_classes, rank, depth, hidden)


def _classifier(in_features, n_classes, rank, depth, hidden):
    layers, width = [], in_features
    for _ in range(depth):
        layers += [TTLinear(width, hidden, rank=rank), ReLU()]
        width = hidden
    return Sequential(layers + [Dense(width, n_classes)])


#: architectures of ``zotrain train --model`` (name -> depth); "mnist" is "mlp"'s old name
DEPTHS = {"mlp": 1, "mnist": 1, "deep": 3}
