"""Your own PDE, forward-only: -Lap u + u = f on the unit 4-cube, u given on its faces.

The exact solution u = exp(-|x - 1/2|^2) sets f and the boundary data and measures the
error; without ``exact`` a run reports its residual and boundary losses instead.
Run: python examples/own_pde.py [OUT_DIR]  (writes metrics.json, model.npz, model.onnx)."""
import sys

import numpy as np

from zotrain.export.pinn import export_pinn_run
from zotrain.pinn import PinnConfig, Problem, train_pinn


def exact(x):
    return np.exp(-np.sum((x - 0.5) ** 2, axis=1))


def source(x):  # -Lap u + u of the exact solution
    return (2 * 4 + 1 - 4 * np.sum((x - 0.5) ** 2, axis=1)) * exact(x)


problem = Problem("reaction-diffusion-4d", dim=4, time_index=None, lower=(0.0,) * 4,
                  upper=(1.0,) * 4, residual=lambda x, u, grad, lap, u_t: u - lap - source(x),
                  exact=exact, boundary=exact, sigma=0.01, method="sparse-grid")
out = sys.argv[1] if len(sys.argv) > 1 else "runs/own-pde"
metrics = train_pinn(problem, PinnConfig(iters=int(sys.argv[2]) if len(sys.argv) > 2 else 40), out)
print(f"relative L2 error {metrics['rel_l2']:.2e}; ONNX predictor {export_pinn_run(problem, out)}")
