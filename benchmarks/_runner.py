"""Shared by the benchmark scripts: best-of timing, and running ``zotrain train
mnist`` once per configuration, each in its own process (so peak memory is per
run), printing one markdown row per run."""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

def best_time(fn, repeats):
    """Fastest of ``repeats`` calls after a warm-up (compiles kernels, fills buffers):
    the least disturbed by other load on a shared machine."""
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


HEADER = ("| configuration | test acc | best test acc | epochs | forward passes "
          "| forward-pass equivalents | wall s | peak RSS MB |\n|---|---|---|---|---|---|---|---|")


def run_table(configs, common, only=None):
    print(HEADER, flush=True)
    results = {}
    for name, flags in configs.items():
        if only and name not in only:
            continue
        with tempfile.TemporaryDirectory() as out:
            cmd = [sys.executable, "-m", "zotrain.cli", "train", "mnist", "--out", out,
                   "--quiet"] + common + flags
            t = time.perf_counter()
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
            wall = time.perf_counter() - t
            with open(os.path.join(out, "metrics.json")) as f:
                m = json.load(f)
        results[name] = m
        print(f"| {name} | {m['test_accuracy']:.4f} | {m['best_test_accuracy']:.4f} "
              f"| {m['epochs']:.2f} | {m['forward_passes']:,} "
              f"| {m.get('forward_equivalents', float('nan')):,.0f} | {wall:.0f} "
              f"| {m['peak_rss_mb']:.0f} |", flush=True)
    print("\nflags per configuration (after `zotrain train mnist " + " ".join(common) + "`):")
    for name, flags in configs.items():
        if not only or name in only:
            print(f"- {name}: `{' '.join(flags) or '(defaults)'}`")
    return results


def budget_main(doc, configs, extra_flags, title):
    """The command line shared by the budget benchmarks: parse, then ``run_table``."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--data", default=os.environ.get("ZOTRAIN_DATA", "../shared/data/mnist"))
    ap.add_argument("--budget", type=int, default=40_000, help="forward passes per run")
    ap.add_argument("--equivalents", action="store_true",
                    help="the budget counts forward-pass equivalents (FLOPs) instead")
    ap.add_argument("--batch-size", type=int, default=100)
    ap.add_argument("--epochs", type=int, default=30, help="upper bound; the budget stops first")
    ap.add_argument("--only", nargs="*", help="run only these configurations")
    args = ap.parse_args()
    unit = "forward-pass equivalents" if args.equivalents else "forward passes"
    print(f"# {title}, budget {args.budget:,} {unit}, batch {args.batch_size}")
    common = ["--data", args.data, "--schedule", "constant", "--batch-size",
              str(args.batch_size), "--epochs", str(args.epochs),
              "--budget-equivalents" if args.equivalents else "--budget", str(args.budget)]
    return run_table(configs, common + extra_flags, args.only)
