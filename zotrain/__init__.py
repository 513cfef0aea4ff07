"""zotrain: forward-only training of tensor-train compressed networks."""

from zotrain.layers import Dense
from zotrain.layers import ReLU
from zotrain.layers import Sin
from zotrain.layers import Tanh
from zotrain.layers import TTLinear
from zotrain.model import Layout
from zotrain.model import Sequential
from zotrain.models import mnist_deep
from zotrain.models import mnist_mlp
from zotrain.models import pinn_mlp

__version__ = "0.1.0"
