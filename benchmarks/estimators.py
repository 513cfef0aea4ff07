"""Estimators and evaluators on MNIST at an equal forward-pass budget.

Each configuration trains the default MNIST model (784 -> 1024 TT rank 8,
ReLU, Dense head trained with its exact local gradient) until it has spent
``--budget`` forward passes, then reports test accuracy, forward passes, wall
time and peak memory.  A forward pass is one evaluation of a (perturbed)
model on the minibatch; with feature reuse it may cost less than a full
forward (see docs/benchmarks.md).

Usage: python benchmarks/estimators.py [--data DIR] [--budget N] [--only NAME ...]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

ZO = ["--evaluator", "none"]
CONFIGS = {
    "rge-gauss-anti-group": ZO + ["--estimator", "rge"],
    "rge-rademacher-anti-group": ZO + ["--estimator", "rge", "--dist", "rademacher"],
    "rge-gauss-onesided-group": ZO + ["--estimator", "rge", "--one-sided"],
    "rge-gauss-anti-joint": ZO + ["--estimator", "rge", "--joint"],
    "cge-1%": ZO + ["--estimator", "cge", "--fraction", "0.01"],
    "hybrid-sign": ZO + ["--estimator", "hybrid", "--lr", "1e-4", "--fraction", "0.01"],
    "activity-local (default)": [],
}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=os.environ.get("ZOTRAIN_DATA", "../shared/data/mnist"))
    ap.add_argument("--budget", type=int, default=100_000, help="forward passes per run")
    ap.add_argument("--batch-size", type=int, default=100)
    ap.add_argument("--epochs", type=int, default=100, help="upper bound; the budget stops first")
    ap.add_argument("--only", nargs="*", help="run only these configurations")
    args = ap.parse_args()
    print(f"# budget {args.budget:,} forward passes, batch {args.batch_size}")
    print("| configuration | test acc | best test acc | epochs | forward passes | wall s | peak RSS MB |")
    print("|---|---|---|---|---|---|---|")
    for name, flags in CONFIGS.items():
        if args.only and name not in args.only:
            continue
        with tempfile.TemporaryDirectory() as out:
            cmd = [sys.executable, "-m", "zotrain.cli", "train", "mnist", "--data", args.data,
                   "--batch-size", str(args.batch_size), "--epochs", str(args.epochs),
                   "--budget", str(args.budget), "--out", out, "--quiet"] + flags
            t = time.perf_counter()
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)  # one process per run
            wall = time.perf_counter() - t
            with open(os.path.join(out, "metrics.json")) as f:
                m = json.load(f)
        print(f"| {name} | {m['test_accuracy']:.4f} | {m['best_test_accuracy']:.4f} "
              f"| {m['epochs']:.2f} | {m['forward_passes']:,} | {wall:.0f} "
              f"| {m['peak_rss_mb']:.0f} |", flush=True)
        print(f"<!-- {name}: zotrain train mnist {' '.join(flags)} -->", flush=True)


if __name__ == "__main__":
    main()
