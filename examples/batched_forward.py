"""Evaluate many perturbed copies of a TT-compressed MNIST model in one call.

This is the hot path of zeroth-order training: the base parameters and 2N
perturbed copies are evaluated on the same minibatch.

    python examples/batched_forward.py [--data DIR]
"""

import argparse
import time

import numpy as np

import zotrain
from zotrain.data import load_mnist, normalize

ap = argparse.ArgumentParser()
ap.add_argument("--data", help="MNIST directory (default: $ZOTRAIN_DATA or the user cache)")
args = ap.parse_args()

mnist = load_mnist(args.data)
X, y = normalize(mnist.x_test[:500]), mnist.y_test[:500].astype(np.int64)

model = zotrain.mnist_mlp()
params = model.init(seed=0)
print(f"{model.n_params} trainable parameters ({model.dense_params} dense)")

N, mu = 20, 1e-3
rng = np.random.default_rng(1)
U = rng.standard_normal((N, params.size)).astype(np.float32)
P = np.concatenate([params[None], params + mu * U, params - mu * U])  # 2N + 1 sets
t = time.perf_counter()
losses = model.loss_many(P, X, y)
print(f"{len(P)} losses in {1e3 * (time.perf_counter() - t):.0f} ms; base loss {losses[0]:.4f}")
# the antithetic estimate of the directional derivatives along each U[i]
slopes = (losses[1:N + 1] - losses[N + 1:]) / (2 * mu)
print("directional derivatives:", np.round(slopes[:5], 4))
