"""Backpropagation-free MNIST with the public API (forward passes only).

The TT-compressed model's body learns from coordinate-wise activity
perturbation against its head's loss, the head from its exact local
gradient; nothing is differentiated through the network.

    python examples/mnist_bp_free.py [--data DIR] [--epochs N]
"""

import argparse

import numpy as np

import zotrain
from zotrain import optim
from zotrain.data import load_mnist, minibatches, normalize
from zotrain.zo.evaluator import Evaluator, Plan, blocks_of

ap = argparse.ArgumentParser()
ap.add_argument("--data", help="MNIST directory (default: $ZOTRAIN_DATA or the user cache)")
ap.add_argument("--epochs", type=int, default=2)
args = ap.parse_args()

mnist = load_mnist(args.data)
X, y = normalize(mnist.x_train), mnist.y_train.astype(np.int64)
X_test, y_test = normalize(mnist.x_test), mnist.y_test.astype(np.int64)

model = zotrain.mnist_mlp()  # 784 -> 1024 TT (rank 8), ReLU, Dense 1024 -> 10
evaluator = Evaluator(model, Plan(blocks_of(model), mode="activity"), n_classes=10)
params = evaluator.init(seed=0)
opt = optim.adam(1e-3)
state = opt.init(params)
print(f"{model.n_params:,} trainable parameters ({model.dense_params:,} dense)")

step = 0
for epoch in range(args.epochs):
    for xb, yb in minibatches(X, y, 100, seed=0, epoch=epoch):
        out = evaluator.evaluate(params, xb, yb, seed=0, step=step)
        params, state = opt.update(out.grad, state, params)
        step += 1
    logits = model.apply(params[:model.n_params], X_test)
    print(f"epoch {epoch + 1}: test accuracy {np.mean(logits.argmax(1) == y_test):.4f}")
