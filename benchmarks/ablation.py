"""Ablation of the hybrid ZO/local evaluator on the deep MNIST model.

784 -> 1024 -> 1024 -> 1024 -> 10 (three TT layers in three blocks, Dense
head): global ZO against block-local training with backward links m = 0, 1,
2, weight against activity perturbation, with and without prototype targets,
each stopped at the same forward-pass budget.

Usage: python benchmarks/ablation.py [--data DIR] [--budget N] [--only NAME ...]
"""

from _runner import budget_main

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
    budget_main(__doc__, CONFIGS, ["--model", "deep"], "deep model")


if __name__ == "__main__":
    main()
