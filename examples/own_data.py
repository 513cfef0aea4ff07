"""Train a TT classifier forward-only on your own arrays, with checkpoints and metrics."""
import sys

import numpy as np

import zotrain as zt

rng = np.random.default_rng(0)
X = rng.standard_normal((3000, 64)).astype(np.float32)        # your inputs (n, features)
y = (X[:, :8].sum(1) > 0).astype(int) + 2 * (X[:, 8] > 0.5)    # your labels 0..C-1
data = zt.Dataset.from_arrays(X[:2500], y[:2500], X[2500:], y[2500:])
model = zt.Sequential([zt.TTLinear(64, 256, rank=4), zt.ReLU(), zt.Dense(256, data.n_classes)])
config = zt.ClassifierConfig(epochs=int(sys.argv[2]) if len(sys.argv) > 2 else 5, lr=1e-2, head_lr=1e-2)
out = sys.argv[1] if len(sys.argv) > 1 else "runs/own-data"    # checkpoint.npz, metrics.json, ...
metrics = zt.train_classifier(model, data, config, out)        # resume=True continues the run
print(f"test accuracy {metrics['test_accuracy']:.3f}, majority class {np.bincount(y[2500:]).max() / 500:.3f}")
