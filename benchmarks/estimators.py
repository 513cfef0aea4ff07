"""Estimators on MNIST at an equal forward-pass budget.

Each configuration trains the default MNIST model (784 -> 1024 TT rank 8,
ReLU, Dense head trained with its exact local gradient) until it has spent
``--budget`` forward passes, then reports test accuracy, forward passes, wall
time and peak memory.  A forward pass is one evaluation of a (perturbed)
model on the minibatch; with feature reuse it may cost far less than a full
forward (see docs/benchmarks.md).

Usage: python benchmarks/estimators.py [--data DIR] [--budget N] [--only NAME ...]
"""

from _runner import budget_main

ZO = ["--evaluator", "none"]
CONFIGS = {
    "rge gaussian antithetic, per group": ZO + ["--estimator", "rge"],
    "rge rademacher antithetic, per group": ZO + ["--estimator", "rge", "--dist", "rademacher"],
    "rge gaussian one-sided, per group": ZO + ["--estimator", "rge", "--one-sided"],
    "rge gaussian antithetic, joint": ZO + ["--estimator", "rge", "--joint"],
    "cge, 1% of coordinates per step": ZO + ["--estimator", "cge", "--fraction", "0.01"],
    "hybrid: rge + sign, then coordinate sign": ZO + ["--estimator", "hybrid", "--lr", "1e-4",
                                                      "--fraction", "0.01"],
    "activity perturbation, local (default)": [],
}


def main():
    budget_main(__doc__, CONFIGS, [], "MNIST model")


if __name__ == "__main__":
    main()
