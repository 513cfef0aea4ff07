"""zotrain: forward-only training of tensor-train compressed networks."""

from zotrain.nn.layers import Dense
from zotrain.nn.layers import ReLU
from zotrain.nn.layers import Sin
from zotrain.nn.layers import Tanh
from zotrain.nn.layers import TTLinear
from zotrain.nn.sequential import Layout
from zotrain.nn.sequential import Sequential
from zotrain.nn.architectures import mnist_deep
from zotrain.nn.architectures import mnist_mlp
from zotrain.nn.architectures import pinn_mlp

__version__ = "0.1.0"
