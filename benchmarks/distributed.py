"""Queries on Ray actors against one process: step time, queries/s, bytes per step, and
a scaling model.

Usage: python benchmarks/distributed.py [--data DIR] [--steps 10] [--workers 1 2]
       [--project 8 64 512]

Two settings: MNIST (the default model, ``--evaluator none``: RGE, antithetic
queries split over the segments, exact head; each segment's queries are sent
as parameters plus query counters) and HJB-20d (the PINN recipe's body RGE,
joint queries: parameter rows are sent).  Each is timed in one process at two
query counts (the slope is the per-query cost ``t_query``, the intercept the
driver's own ``t_driver``), and with Ray at two worker counts, the same steps
from the same seed (the parameters are checked bit-identical); MNIST also in the
replay transport (actors keep a replica and replay each update from the step's
losses; no parameters sent).  The scaling
model ``T(W) = t_driver + ceil(N / W) t_query + t_fixed + W t_actor`` takes
``t_fixed`` (a step's round trips) and ``t_actor`` (the driver's cost per
actor: pickling and sending) from the two Ray runs' excess over the
computation.
"""

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))


def mnist_rule(data_dir, queries, ray=None, workers=1, transport="params"):
    from zotrain.data import load_dataset
    from zotrain.nn import architectures
    from zotrain.recipes.classification import ClassifierConfig, build_optimizer, build_step

    data = load_dataset("mnist", data_dir)
    model = architectures.classifier(784, 10, rank=16, depth=1, hidden=1024)
    c = ClassifierConfig(evaluator="none", queries=queries, ray=ray, workers=workers,
                         transport=transport)
    plan = build_step(c, model)
    opt = build_optimizer(c, plan, 1000)
    if hasattr(plan.rule, "wrap_optimizer"):  # the replay transport
        opt = plan.rule.wrap_optimizer(opt)

    def batch(s):
        return data.x_train[s * 100:(s + 1) * 100], data.y_train[s * 100:(s + 1) * 100]

    return plan, opt, batch, 2 * queries


def hjb_task(queries, ray=None, workers=1):
    from zotrain.pinn import problems
    from zotrain.pinn.train import PinnConfig, PinnTask, build

    problem = problems.get("hjb20d")
    c = PinnConfig(queries=queries, ray=ray, workers=workers)
    model, loss = build(c, problem)
    return PinnTask(problem, model, loss, c, {}), 2 * c.queries


def time_steps(step, steps):
    """Median seconds of ``steps`` calls of ``step(s)`` after 2 warm-up calls."""
    times = []
    for s in range(steps + 2):
        t = time.perf_counter()
        step(s)
        times.append(time.perf_counter() - t)
    return float(np.median(times[2:]))


def run_mnist(data_dir, steps, queries, ray, workers, transport="params"):
    plan, opt, batch, n = mnist_rule(data_dir, queries, ray, workers, transport)
    return _timed(lambda p, s: plan.rule(p, *batch(s), seed=0, step=s), plan.init(0), opt,
                  steps, plan.pool, n, getattr(plan.rule, "step_bytes", {}).get(transport))


def run_hjb(steps, queries, ray, workers):
    from zotrain import optim

    task, n = hjb_task(queries, ray, workers)
    batches = list(task.batches(0, 0))
    return _timed(lambda p, s: task.step(p, batches[s % len(batches)], seed=0, step=s),
                  task.init(0), optim.adam(1e-3), steps, task.pool, n)


def _timed(rule, params, opt, steps, pool, n, step_bytes=None):
    """``(median step seconds, queries, bytes sent per step, final parameters)``; the bytes
    are the median of ``step_bytes`` (a list the rule fills per step) if given, else the
    mean over all steps."""
    state = {"p": params, "o": opt.init(params)}

    def step(s):
        r = rule(state["p"], s)
        state["p"], state["o"] = opt.update(r.grad, state["o"], state["p"])

    t = time_steps(step, steps)
    sent = pool.bytes_sent / (steps + 2) if pool else 0.0
    if step_bytes:
        sent = float(np.median(step_bytes))
    if pool:
        pool.shutdown()
    return t, n, sent, state["p"]


#: query calls per step and floats sent per call (the parameters): MNIST's RGE queries go
#: per segment (4 cores and a bias) with the body's parameters; the PINN's as one call of
#: parameter rows (2 x 4 queries x its parameters)
CALLS = {"MNIST (default model, RGE)": (5, 40_458), "HJB-20d (PINN body RGE)": (1, 8 * 2_369)}


def submit_cost(ray, floats, calls=200):
    """Seconds the driver spends per call handing ``floats`` float32 values to an actor
    and taking its reply (the calls pipelined: no waiting on the actor)."""
    @ray.remote(num_cpus=0)
    class Echo:
        def f(self, x):
            return 0

    actor = Echo.remote()
    payload = np.zeros(floats, np.float32)
    ray.get(actor.f.remote(payload))
    t = time.perf_counter()
    ray.get([actor.f.remote(payload) for _ in range(calls)])
    ray.kill(actor)
    return (time.perf_counter() - t) / calls


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=None)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--workers", type=int, nargs=2, default=[1, 2])
    ap.add_argument("--project", type=int, nargs="+", default=[8, 64, 512])
    a = ap.parse_args()
    import ray

    ray.init(num_cpus=max(a.workers), include_dashboard=False, log_to_driver=False,
             configure_logging=False)
    settings = {"MNIST (default model, RGE)": (
        lambda q, r, w, t="params": run_mnist(a.data, a.steps, q, r, w, t), (20, 40),
        ("params", "replay")),
        "HJB-20d (PINN body RGE)": (lambda q, r, w, t="params": run_hjb(a.steps, q, r, w),
                                    (4, 8), ("params",))}
    print("| setting | run | transport | queries N | step ms | queries/s | bytes sent per step "
          "| parameters equal |")
    print("|---|---|---|---|---|---|---|---|")
    models = {}
    for name, (fn, (q1, q2), transports) in settings.items():
        single = {}
        for q in (q1, q2):
            t, n, _, p1 = fn(q, None, 1)
            single[n] = (t, p1)
            print(f"| {name} | one process | - | {n} | {1e3 * t:.1f} | {n / t:,.0f} | 0 | - |")
        n1, n2 = sorted(single)
        t_query = (single[n2][0] - single[n1][0]) / (n2 - n1)
        t_driver = single[n1][0] - n1 * t_query
        for transport in transports:
            for w in a.workers:
                t, n, sent, p = fn(q1, "local", w, transport)
                print(f"| {name} | Ray, {w} worker{'s' * (w > 1)} | {transport} | {n} | "
                      f"{1e3 * t:.1f} | {n / t:,.0f} | {sent:,.0f} | "
                      f"{np.array_equal(p, single[n1][1])} |")
                if w == 1:
                    excess = t - t_driver - n * t_query
            calls, size = CALLS[name]
            # replay: a call carries the query counters and scales, not the parameters
            t_actor = calls * submit_cost(ray, size if transport == "params" else 64)
            models[f"{name}, {transport}"] = (n1, t_query, t_driver,
                                              max(excess - t_actor, 0.0), t_actor)
    print()
    print("Scaling model T(W) = t_driver + ceil(N/W) t_query + t_fixed + W t_actor "
          "(t_query, t_driver: slope and intercept of the one-process step against N; "
          "t_actor: the driver's cost of a step's calls to one actor, measured; t_fixed: the "
          "rest of the one-worker run's excess):")
    print()
    print("| setting | N | t_query ms | t_driver ms | t_fixed ms | t_actor ms | "
          + " | ".join(f"steps/s at {w}" for w in a.project) + " | crossover W |")
    print("|---|---|---|---|---|---|" + "---|" * len(a.project) + "---|")
    for name, (n, t_query, t_driver, fixed, per_actor) in models.items():
        proj = [1.0 / (t_driver + math.ceil(n / w) * t_query + fixed + w * per_actor)
                for w in a.project]
        cross = math.sqrt(n * t_query / per_actor)
        print(f"| {name} | {n} | {1e3 * t_query:.2f} | {1e3 * t_driver:.1f} | "
              f"{1e3 * fixed:.1f} | {1e3 * per_actor:.1f} | "
              + " | ".join(f"{x:.2f}" for x in proj) + f" | {cross:.1f} |")
    ray.shutdown()


if __name__ == "__main__":
    main()
