"""Ablation of the hybrid ZO/local evaluator on the deep MNIST model.

784 -> 1024 -> 1024 -> 1024 -> 10 (three TT layers in three blocks, Dense
head): global ZO against block-local training with backward links m = 0, 1,
2, weight against activity perturbation, with and without prototype targets,
each stopped at the same forward-pass budget.

Usage: python benchmarks/ablation.py [--data DIR] [--budget N] [--only NAME ...]
"""

import argparse
import os

from _runner import run_table

W = ["--perturb", "weight", "--estimator", "rge"]
CONFIGS = {
    "global ZO (rge, exact output head)": ["--evaluator", "global", "--estimator", "rge"],
    "local weight m=0": ["--evaluator", "local"] + W + ["--link", "0"],
    "local weight m=1": ["--evaluator", "local"] + W + ["--link", "1"],
    "local weight m=2": ["--evaluator", "local"] + W + ["--link", "2"],
    "local activity m=0": ["--evaluator", "local", "--link", "0"],
    "local activity m=1": ["--evaluator", "local", "--link", "1"],
    "local activity m=1 + prototypes": ["--evaluator", "local", "--link", "1", "--proto", "0.1"],
}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=os.environ.get("ZOTRAIN_DATA", "../shared/data/mnist"))
    ap.add_argument("--budget", type=int, default=300_000, help="forward passes per run")
    ap.add_argument("--batch-size", type=int, default=100)
    ap.add_argument("--epochs", type=int, default=30, help="upper bound; the budget stops first")
    ap.add_argument("--only", nargs="*", help="run only these configurations")
    args = ap.parse_args()
    print(f"# deep model, budget {args.budget:,} forward passes, batch {args.batch_size}")
    run_table(CONFIGS, ["--data", args.data, "--model", "deep", "--schedule", "constant",
                        "--batch-size",
                        str(args.batch_size), "--epochs", str(args.epochs), "--budget",
                        str(args.budget)], args.only)


if __name__ == "__main__":
    main()
