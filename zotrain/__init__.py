"""zotrain: forward-only training of tensor-train compressed networks.

The public API; the architecture is in the README ("Architecture")."""

from zotrain.kernels import config as _config  # noqa: F401  (first: sets OpenBLAS's thread
# timeout before numpy loads; zotrain.kernels.config says why)
from zotrain import optim
from zotrain.base import Cost
from zotrain.base import ZotrainError
from zotrain.data import Dataset
from zotrain.data import load_dataset
from zotrain.engine.callbacks import EarlyStopping
from zotrain.engine.loop import DivergenceError
from zotrain.engine.loop import Engine
from zotrain.nn import tt
from zotrain.nn.activations import GELU
from zotrain.nn.activations import Activation
from zotrain.nn.activations import ReLU
from zotrain.nn.activations import Sin
from zotrain.nn.activations import Tanh
from zotrain.nn.architectures import mnist_deep
from zotrain.nn.architectures import mnist_mlp
from zotrain.nn.architectures import pinn_mlp
from zotrain.nn.layers import Dense
from zotrain.nn.layers import TTLinear
from zotrain.nn.layers import register_layer
from zotrain.nn.sequential import Layout
from zotrain.nn.sequential import Sequential
from zotrain.recipes.classification import ClassifierConfig
from zotrain.recipes.classification import train_classifier
from zotrain.zo import estimators

__version__ = "0.2.0"
