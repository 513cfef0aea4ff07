"""Time of one training step (step rule + optimizer update) of the MNIST recipes.

Usage: python benchmarks/steps.py [--data DIR] [--steps 20] [--stream 4]
       [--cases tiny-activity tiny-weight default-activity default-weight deep-link]

Median over ``--steps`` steps after 5 warm-up steps, batch 100, consecutive MNIST
training batches, seed 0.  Uses only the public recipe API, so the same script
times an older checkout (``PYTHONPATH=OLD python benchmarks/steps.py``) for a
side-by-side comparison.
"""

import argparse
import time

import numpy as np

CASES = {  # hidden width, rank, depth, config
    "tiny-activity": (256, 10, 1, {}),
    "tiny-weight": (256, 10, 1, {"perturb": "weight"}),
    "default-activity": (1024, 16, 1, {}),
    "default-weight": (1024, 16, 1, {"perturb": "weight"}),
    "deep-link": (1024, 16, 3, {"link": 1}),
}


def main():
    from zotrain.data import load_dataset
    from zotrain.nn import architectures
    from zotrain.recipes.classification import ClassifierConfig, build_optimizer, build_step
    from zotrain.zo import objective

    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=None)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--stream", type=int, default=None, help="zotrain.zo.objective.STREAM")
    ap.add_argument("--cases", nargs="+", default=list(CASES))
    a = ap.parse_args()
    if a.stream:
        objective.STREAM = a.stream
    data = load_dataset("mnist", a.data)
    print("| case | median step ms |")
    print("|---|---|")
    for name in a.cases:
        hidden, rank, depth, kw = CASES[name]
        model = architectures.classifier(784, 10, rank=rank, depth=depth, hidden=hidden)
        c = ClassifierConfig(batch_size=100, **kw)
        plan = build_step(c, model)
        opt = build_optimizer(c, plan, 1000)
        params = plan.init(0)
        state = opt.init(params)
        times = []
        for s in range(a.steps + 5):
            X, y = data.x_train[s * 100:(s + 1) * 100], data.y_train[s * 100:(s + 1) * 100]
            t = time.perf_counter()
            r = plan.rule(params, X, y, seed=0, step=s)
            params, state = opt.update(r.grad, state, params)
            times.append(time.perf_counter() - t)
        print(f"| {name} | {1e3 * np.median(times[5:]):.1f} |", flush=True)


if __name__ == "__main__":
    main()
