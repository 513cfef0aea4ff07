"""Reference architectures."""

from zotrain.nn.layers import Dense, ReLU, Sin, TTLinear
from zotrain.nn.sequential import Sequential


def mnist_mlp(rank=8):
    """784 -> 1024 TT-matrix layer (modes (4,7,7,4) x (4,8,8,4)), ReLU, Dense 1024 -> 10."""
    return Sequential([
        TTLinear(784, 1024, rank=rank, in_modes=(4, 7, 7, 4), out_modes=(4, 8, 8, 4)),
        ReLU(),
        Dense(1024, 10),
    ])


def pinn_mlp(in_features=21, width=512, rank=2):
    """in -> width -> width -> 1 with Sin activations; the first two layers TT-matrix."""
    return Sequential([
        TTLinear(in_features, width, rank=rank),
        Sin(),
        TTLinear(width, width, rank=rank),
        Sin(),
        Dense(width, 1),
    ])


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
