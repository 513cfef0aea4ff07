"""PINN benchmarks: Stein rules at equal evaluations, BP-free training per problem,
and a first-order (autodiff) reference.

Usage:
  python benchmarks/pinn.py derivatives [--dims 5 21] [--sigma 0.1] [--seeds 20]
  python benchmarks/pinn.py train PROBLEM [-- zotrain pinn flags, e.g. --max-time S]
  python benchmarks/pinn.py first-order PROBLEM [--max-time S] [--batch B] [--lr LR] [--depth D]
      [--rank R] [--inputs I] [--supervised]
  python benchmarks/pinn.py backends PROBLEM [-- extra zotrain pinn flags]
  python benchmarks/pinn.py bodies [--max-time S] [--bodies frozen,local,zo] PROBLEM [flags]
  python benchmarks/pinn.py gn-step PROBLEM [--points N] [--derivatives RULE] [--inputs I]
      [--check-points N]
  python benchmarks/pinn.py suite [--split dev|test] [--minutes M] [--only NAME ...]
      [--options JSON] [--baselines frozen,first-order,trivial]

``suite`` trains ``train_pinn(problem)`` with the defaults (``--options`` adds
``PinnConfig`` fields: development only) on every instance of the generalisation suite's
split (``zotrain.pinn.suite``), each in its own process for ``--minutes`` (default 10),
beside the frozen-body run and the first-order PyTorch PINN of the same architecture
(``first-order``, Adam on autodiff derivatives) of the same budget, and the trivial
solution (the network output 0, under the hard constraint if any); peak memory per run.

``derivatives`` compares the Stein estimates of grad and Laplacian of smoothed
test functions (closed form: for f = sin(a.x) + exp(b.x), u_sigma = sin(a.x)
exp(-sigma^2 |a|^2 / 2) + exp(b.x + sigma^2 |b|^2 / 2)) on Smolyak level 3,
the degree-5 rule, the randomised radial-spherical rule, and Monte Carlo with
the same number of evaluations as each (mean over seeds), with the function values in float64 and rounded to float32 (as
the network computes them).  ``train`` runs ``zotrain pinn`` in its own
process and prints its error curve.  ``first-order`` trains the same TT
architecture (same initialisation and hard constraints) with Adam on exact
autodiff derivatives of the unsmoothed network (PyTorch, CPU; zotrain never
imports it) for a wall-time budget; with ``--supervised`` it fits the exact
solution instead of the PDE (no PINN: how well the architecture can represent
the answer in that time).  ``backends`` trains the same
configuration (same seed) on the Numba and the onnxruntime backends.
"""

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

from zotrain.pinn import problems, solvers, suite as pde_suite
from zotrain.pinn.config import random_phases
from zotrain.pinn.derivatives import rule, smoothed_derivatives
from zotrain.pinn.inputs import INPUTS
from zotrain.pinn.task import trivial_rel_l2
from zotrain.pinn.train import PinnConfig, build, init_params


def test_function(d, sigma, seed):
    rng = np.random.default_rng(seed)
    a, b = rng.standard_normal(d) * 1.5 / np.sqrt(d), rng.standard_normal(d) * 0.5 / np.sqrt(d)
    sa, sb = math.exp(-sigma ** 2 * (a @ a) / 2), math.exp(sigma ** 2 * (b @ b) / 2)

    def f(X):
        return np.sin(X @ a) + np.exp(X @ b)

    def exact(x):
        s, e = np.sin(x @ a) * sa, np.exp(x @ b) * sb
        grad = np.cos(x @ a)[:, None] * sa * a + e[:, None] * b
        return grad, -(a @ a) * s + (b @ b) * e

    return f, exact


def derivatives(args):
    print("| dim | rule | evaluations per point | grad rel. error (f64) | Laplacian rel. error "
          "(f64) | grad (f32 values) | Laplacian (f32 values) |\n|---|---|---|---|---|---|---|")
    for d in args.dims:
        x = np.random.default_rng(0).random((64, d))
        f, exact = test_function(d, args.sigma, 1)
        g_ex, l_ex = exact(x)
        rules = {"Smolyak level 3": [rule(d, "sparse-grid", level=3)],
                 "degree-5": [rule(d, "degree5")]}
        k = (rules["Smolyak level 3"][0].evaluations - 1) // 2
        rules[f"Monte Carlo, {k} antithetic draws (mean of {args.seeds} seeds)"] = \
            [rule(d, "stein-mc", samples=k, seed=s) for s in range(args.seeds)]
        for blocks in (1, 4):  # radial-spherical, and Monte Carlo at its evaluations
            rad = [rule(d, "radial", samples=blocks * 2 * d, seed=s) for s in range(args.seeds)]
            rules[f"radial-spherical, {blocks} block(s) (mean of {args.seeds} seeds)"] = rad
            k = (rad[0].evaluations - 1) // 2
            rules[f"Monte Carlo, {k} antithetic draws (mean of {args.seeds} seeds)"] = \
                [rule(d, "stein-mc", samples=k, seed=s) for s in range(args.seeds)]
        for name, rs in rules.items():
            errs = []
            for r in rs:
                row = []
                for f32 in (False, True):
                    g = (lambda X: f(X).astype(np.float32).astype(np.float64)) if f32 else f
                    out = smoothed_derivatives(g, x, args.sigma, r)
                    row += [np.linalg.norm(out.grad - g_ex) / np.linalg.norm(g_ex),
                            np.linalg.norm(out.lap - l_ex) / np.linalg.norm(l_ex)]
                errs.append(row)
            e = np.mean(errs, axis=0)
            print(f"| {d} | {name} | {rs[0].evaluations} | {e[0]:.2e} | {e[1]:.2e} | {e[2]:.2e} "
                  f"| {e[3]:.2e} |", flush=True)


def _run(problem, flags):
    """``zotrain pinn`` in its own process: ``(metrics, wall seconds of the command)``."""
    with tempfile.TemporaryDirectory() as out:
        cmd = [sys.executable, "-m", "zotrain.cli", "pinn", problem, "--out", out,
               "--quiet"] + flags
        t = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - t
        with open(os.path.join(out, "metrics.json")) as f:
            return json.load(f), wall


def backends(args):
    print(f"# zotrain pinn {args.problem} {' '.join(args.flags)}, same seed on both backends")
    print("| backend | rel. L2 | forward passes | train s |\n|---|---|---|---|")
    times = {}
    for backend in ("numba", "onnxruntime"):
        m, _ = _run(args.problem, args.flags + ["--backend", backend])
        times[backend] = m["wall_time_s"]
        print(f"| {backend} | {m['rel_l2']:.3e} | {m['forward_passes']:,.0f} "
              f"| {m['wall_time_s']:.1f} |", flush=True)
    print(f"\nonnxruntime / Numba training time: {times['onnxruntime'] / times['numba']:.1f}x")


def train(args):
    m, wall = _run(args.problem, args.flags)
    print(f"# zotrain pinn {args.problem} {' '.join(args.flags)}: {m['trainable_params']} params, "
          f"{m['derivatives']} ({m['evaluations_per_point']} evaluations per point), sigma "
          f"{m['sigma']}")
    print("| iteration | forward passes | train s | rel. L2 (1,000 pts) |\n|---|---|---|---|")
    for r in m["history"]:
        print(f"| {r['step']} | {r['forward_passes']:,.0f} | {r['wall_time_s']:.0f} "
              f"| {r['rel_l2']:.2e} |")
    print(f"\nfinal: rel. L2 **{m['rel_l2']:.2e}** on 10,000 points; {m['iters']} iterations, "
          f"{m['forward_passes']:,.0f} forward passes, {m['network_evaluations']:,} network "
          f"evaluations, {m['wall_time_s']:.0f} s training, {wall:.0f} s for the whole command")


def bodies(args):
    """Trained body against frozen random features (same head solves, same wall time), and
    two trivial solutions: the network output 0 (under the hard constraint, if any) and the
    best constant (the exact solution's mean on the test points)."""
    from zotrain.pinn.train import load_run

    problem = problems.get(args.problem)
    print(f"# zotrain pinn {args.problem} --max-time {args.max_time} {' '.join(args.flags)}")
    print("| body | rel. L2 (10,000 pts) | u(0, 0) | forward passes | iterations | train s |"
          "\n|---|---|---|---|---|---|")
    origin = np.zeros((1, problem.dim))
    for body in args.bodies:
        with tempfile.TemporaryDirectory() as out:
            cmd = [sys.executable, "-m", "zotrain.cli", "pinn", args.problem, "--out", out,
                   "--quiet", "--body", body, "--max-time", str(args.max_time)] + args.flags
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
            with open(os.path.join(out, "metrics.json")) as f:
                m = json.load(f)
            loss, params = load_run(problem, out)
            u0 = loss.predict(params, origin)[0]
        print(f"| {body} | {m['rel_l2']:.3e} | {u0:.4f} | {m['forward_passes']:,.0f} "
              f"| {m['iters']} | {m['wall_time_s']:.0f} |", flush=True)
    x = problem.sample(10000, 12345)
    exact = problem.exact(x)
    constant = np.linalg.norm(exact - exact.mean()) / np.linalg.norm(exact)
    print(f"\ntrivial solutions: network output 0 (under the hard constraint, if any): rel. L2 "
          f"{trivial_rel_l2(problem, 10000, 12345):.3e} (unsmoothed); the "
          f"best constant: {constant:.3e}; exact u(0, 0) = {problem.exact(origin)[0]:.4f}")


def gn_step(args):
    """Seconds per Levenberg-Marquardt step of ``--body gauss-newton`` at ``--depth 1``: the
    Jacobian, then the step (four candidates judged at ``--check-points`` fresh points),
    after one warm-up step.  Uses only what older checkouts have, so ``PYTHONPATH=OLD``
    times an older version side by side."""
    problem = problems.get(args.problem)
    c = PinnConfig(depth=1, points=args.points, derivatives=args.derivatives, inputs=args.inputs)
    model, loss = build(c, problem)
    params = init_params(model, problem, 0)

    def boundary(n, seed):
        return problem.sample_boundary(max(1, n // 4), seed) if problem.boundary else None

    xb = boundary(args.points, 1)
    params = solvers.solve_head(loss, params, problem.sample(1024, 1), 1e-6, xb)
    n = min(args.points, args.check_points)
    x, check = problem.sample(args.points, 2), (problem.sample(n, 3), boundary(n, 3))
    damping, times = 1e-3, []
    for _ in range(args.repeats + 1):
        t = time.perf_counter()
        r, J = solvers.body_jacobian(loss, params, x, xb)
        t1 = time.perf_counter()
        params, damping = solvers.lm_step(loss, params, r, J, check, damping)
        times.append((t1 - t, time.perf_counter() - t1))
    jac, step = np.mean(times[1:], axis=0)
    print(f"{args.problem}, {args.points} points (+ {0 if xb is None else len(xb)} boundary), "
          f"{loss.evaluations} evaluations per point, inputs {args.inputs}, {n} check points: "
          f"Jacobian {jac:.2f} s, step {step:.2f} s, {jac + step:.2f} s in all (mean of "
          f"{args.repeats}; warm-up {sum(times[0]):.2f} s)")


def _problem(name):
    """A built-in problem by name, or a suite instance as ``FAMILY:SEED``."""
    if ":" in name:
        family, seed = name.split(":")
        return pde_suite.instance(family, int(seed))
    return problems.get(name)


def _torch_problem(problem):
    """Hard constraint and residual of a problem, in torch: the suite's own functions (they
    take tensors), the built-ins' mirrored from pinn/problems.py."""
    import torch

    name = problem.name
    if name not in problems.PROBLEMS:
        return problem.transform or (lambda x, nn: nn), problem.residual

    if name == "hjb20d":
        d = 20
        return (lambda x, nn: x[:, :d].sum(1) + (1 - x[:, d]) * nn,
                lambda x, u, g, lap, ut: ut + lap - 0.05 * (g[:, :d] ** 2).sum(1) + 2)
    if name == "poisson2d":
        pi = math.pi
        return (lambda x, nn: x[:, 0] * (1 - x[:, 0]) * x[:, 1] * (1 - x[:, 1]) * nn,
                lambda x, u, g, lap, ut: lap + 2 * pi ** 2 * torch.sin(pi * x[:, 0]) *
                torch.sin(pi * x[:, 1]))
    if name == "heat100d":
        d = 100
        return (lambda x, nn: torch.sin(x[:, :d]).mean(1) + x[:, d] * nn,
                lambda x, u, g, lap, ut: ut - lap)
    if name == "bsb100d":
        d, r, s, T = 100, 0.05, 0.4, 1.0
        return (lambda x, nn: (x[:, :d] ** 2).sum(1) + (T - x[:, d]) * nn,
                lambda x, u, g, lap, ut, hess: ut + 0.5 * s ** 2 * (x[:, :d] ** 2 * hess).sum(1)
                - r * (u - (x[:, :d] * g[:, :d]).sum(1)))
    if name == "hjb100d":  # terminal condition as data (problem.boundary), no constraint
        d = 100
        return (lambda x, nn: nn, lambda x, u, g, lap, ut: ut + lap - (g[:, :d] ** 2).sum(1))
    if name == "black-scholes":
        K, r, s, smax = 100.0, 0.05, 0.2, 200.0

        def payoff(S):
            return torch.nn.functional.softplus(S - K)

        def transform(x, nn):
            S, t = x[:, 0], x[:, 1]
            q = S / smax
            edge = smax - K * torch.exp(-r * (1 - t)) - payoff(torch.tensor(smax))
            return payoff(S) + q * edge + (1 - t) * q * (1 - q) * 40.0 * nn

        return (transform, lambda x, u, g, lap, ut: ut + 0.5 * s ** 2 * x[:, 0] ** 2 * lap +
                r * x[:, 0] * g[:, 0] - r * u)
    raise ValueError(name)


def first_order(args):
    import torch
    from torch_baselines import torch_model

    torch.manual_seed(0)
    problem = _problem(args.problem)
    c = PinnConfig.for_problem(problem, **{k: v for k, v in (
        ("depth", args.depth), ("rank", args.rank), ("inputs", args.inputs)) if v is not None})
    model, loss = build(c, problem)
    arrays, forward = torch_model(model, init_params(
        model, problem, 0, random_phases(c, problem)))
    transform, residual = _torch_problem(problem)
    lo = torch.tensor(np.asarray(problem.lower, np.float32))
    width = torch.tensor(np.asarray(problem.upper, np.float32) - np.asarray(problem.lower,
                                                                             np.float32))
    ti, dim = problem.time_index, problem.dim
    space = [i for i in range(dim) if i != ti]

    def radius(y):
        centred = y[:, space] - 0.5
        return torch.cat([y, 4 * (centred * centred).mean(1, keepdim=True)], 1)

    net_inputs = {"coordinates": lambda y: y,  # zotrain.pinn.inputs, in torch
                  "radius": radius, "quadratic": lambda y: torch.cat([y, y * y], 1)}[c.inputs]

    def u_of(x):
        return transform(x, forward(net_inputs((x - lo) / width))[:, 0])

    def loss_of(x):
        if args.supervised:  # the exact solution as the target: what the architecture can fit
            target = torch.tensor(problem.exact(x.numpy().astype(np.float64)), dtype=torch.float32)
            return ((u_of(x) - target) ** 2).mean()
        x = x.requires_grad_(True)
        u = u_of(x)
        g, = torch.autograd.grad(u.sum(), x, create_graph=True)
        diag = torch.stack([torch.autograd.grad(g[:, i].sum(), x, create_graph=True)[0][:, i]
                            for i in space], 1)
        fields = (x, u, g, diag.sum(1), g[:, ti] if ti is not None else None)
        if problem.hessian == "diagonal":
            fields += (diag,)
        out = (residual(*fields) ** 2).mean()
        if problem.boundary is not None:
            xb = torch.tensor(problem.sample_boundary(max(1, len(x) // 4), seed=[7, step]),
                              dtype=torch.float32)
            gb = torch.tensor(problem.boundary(xb.numpy().astype(np.float64)),
                              dtype=torch.float32)
            out = out + ((u_of(xb) - gb) ** 2).mean()
        return out

    def rel(n, seed):
        x = problem.sample(n, seed)
        with torch.no_grad():
            pred = torch.cat([u_of(torch.tensor(x[i:i + 2000], dtype=torch.float32))
                              for i in range(0, n, 2000)]).double().numpy()
        ex = problem.exact(x)
        return float(np.linalg.norm(pred - ex) / np.linalg.norm(ex))

    if args.lm:
        return supervised_lm(args, problem, arrays, forward, transform, net_inputs, lo, width)
    opt = torch.optim.Adam(arrays.values(), lr=args.lr)
    print(f"# first-order (autodiff) {args.problem}"
          + (", SUPERVISED by the exact solution (a capacity reference, not a PINN)"
             if args.supervised else "")
          + f": {model.n_params} params, rank {c.rank}, depth {c.depth}, inputs {c.inputs}, "
          f"Adam {args.lr}, "
          f"batch {args.batch}, {args.max_time:.0f} s budget, {torch.get_num_threads()} threads")
    print("| step | train s | rel. L2 (1,000 pts) |\n|---|---|---|")
    t0, step, next_report = time.perf_counter(), 0, 1
    while time.perf_counter() - t0 < args.max_time:
        step += 1
        x = torch.tensor(problem.sample(args.batch, seed=[0, step]), dtype=torch.float32)
        value = loss_of(x)
        opt.zero_grad()
        value.backward()
        opt.step()
        if step == next_report:
            print(f"| {step} | {time.perf_counter() - t0:.0f} | {rel(1000, 1):.2e} |", flush=True)
            next_report *= 2
    print(f"\nfinal after {step} steps, {time.perf_counter() - t0:.0f} s: rel. L2 "
          f"**{rel(10000, 12345):.2e}** on 10,000 points (unsmoothed network)")
    if args.problem == "hjb100d":
        with torch.no_grad():
            u00 = float(u_of(torch.zeros((1, dim)))[0])
        print(f"u(0, 0) = {u00:.4f} (reference 4.5901)")


def supervised_lm(args, problem, arrays, forward, transform, net_inputs, lo, width):
    """Levenberg-Marquardt on the exact solution (float64; each step's Jacobian on
    ``args.lm`` fresh points by ``torch.func``, damping scaled by the normal matrix's
    diagonal, raised 4x until the batch's loss falls): what a second-order method with
    enough rows per step makes of the architecture."""
    import torch

    torch.set_default_dtype(torch.float64)  # the dense TT build starts from torch.ones
    names = list(arrays)
    shapes = [arrays[k].shape for k in names]
    theta = torch.cat([arrays[k].detach().double().reshape(-1) for k in names])
    lo, width = lo.double(), width.double()

    def u_of(th, x):
        parts = torch.split(th, [int(np.prod(s)) for s in shapes])
        t = {k: v.reshape(s) for k, v, s in zip(names, parts, shapes)}
        return transform(x, forward(net_inputs((x - lo) / width), t)[:, 0])

    one = torch.func.grad(lambda th, xi: u_of(th, xi[None])[0])
    x_test = problem.sample(10000, 12345)
    ex = torch.tensor(problem.exact(x_test))
    x_test = torch.tensor(x_test)

    def rel(th):
        with torch.no_grad():
            return float(torch.linalg.norm(u_of(th, x_test) - ex) / torch.linalg.norm(ex))

    print(f"# supervised Levenberg-Marquardt {args.problem} (a capacity reference, not a PINN): "
          f"{theta.numel()} params, {args.lm} fresh points per step, {args.max_time:.0f} s budget")
    print("| step | train s | batch loss before | after | rel. L2 (10,000 pts) |\n"
          "|---|---|---|---|---|")
    lam, t0, step = 1e-3, time.perf_counter(), 0
    while time.perf_counter() - t0 < args.max_time:
        step += 1
        xn = problem.sample(args.lm, seed=[3, step])
        x, y = torch.tensor(xn), torch.tensor(problem.exact(xn))
        r = u_of(theta, x) - y
        J = torch.func.vmap(one, in_dims=(None, 0), chunk_size=256)(theta, x)
        A, g = J.T @ J, J.T @ r
        diag, before, after = torch.diagonal(A).clone() + 1e-12, float((r ** 2).mean()), None
        for _ in range(10):
            trial = theta - torch.linalg.solve(A + lam * torch.diag(diag), g)
            with torch.no_grad():
                after = float(((u_of(trial, x) - y) ** 2).mean())
            if after < before:
                theta, lam = trial, max(lam / 3, 1e-9)
                break
            lam *= 4
        print(f"| {step} | {time.perf_counter() - t0:.0f} | {before:.3e} | {after:.3e} | "
              f"{rel(theta):.3e} |", flush=True)
    print(f"\nfinal after {step} steps, {time.perf_counter() - t0:.0f} s: rel. L2 "
          f"**{rel(theta):.3e}** on 10,000 points")


def _suite_run(args):
    """One suite instance in this process; prints one JSON line."""
    import resource

    from zotrain.pinn.train import train_pinn

    problem = pde_suite.instance(args.family, args.seed)
    c = PinnConfig.for_problem(problem, max_time_s=args.minutes * 60.0,
                               **json.loads(args.options))
    with tempfile.TemporaryDirectory() as out:
        m = train_pinn(problem, c, out, progress=False)
    print(json.dumps(dict(rel_l2=m["rel_l2"], iters=m["history"][-1]["step"] if m["history"]
                          else 0, wall=m["wall_time_s"], derivatives=m["derivatives"],
                          peak_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)))


def suite(args):
    chosen = [(f, s, pde_suite.instance(f, s)) for f, s in pde_suite.cases(args.split)]
    chosen = [c for c in chosen if not args.only or c[2].name in args.only]
    opts = json.loads(args.options)
    print(f"# PINN suite, split {args.split}: train_pinn(problem{', ' + str(opts) if opts else ''})"
          f", {args.minutes:g} min each, one process per run, seed 0")
    print("| instance | rel. L2 | iterations | frozen body | first-order (PyTorch) "
          "| trivial (NN = 0) | rule | peak MB |\n|---|---|---|---|---|---|---|---|", flush=True)
    for family, seed, p in chosen:
        runs = {}
        for body in ["default"] + (["frozen"] if "frozen" in args.baselines else []):
            o = dict(opts) if body == "default" else {**opts, "body": "frozen"}
            cmd = [sys.executable, __file__, "suite-run", family, str(seed), "--minutes",
                   str(args.minutes), "--options", json.dumps(o)]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            runs[body] = json.loads(out.strip().splitlines()[-1])
        first = "-"
        if "first-order" in args.baselines:
            cmd = [sys.executable, __file__, "first-order", f"{family}:{seed}", "--max-time",
                   str(args.minutes * 60)]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            first = out.split("rel. L2 **")[1].split("**")[0]
        d, f = runs["default"], runs.get("frozen")
        print(f"| {p.name} | **{d['rel_l2']:.2e}** | {d['iters']} | "
              f"{f['rel_l2']:.2e} | " if f else f"| {p.name} | **{d['rel_l2']:.2e}** | "
              f"{d['iters']} | - | ", end="")
        print(f"{first} | {trivial_rel_l2(p, 10000, 12345):.2e} | {d['derivatives']} | "
              f"{d['peak_mb']:.0f} |", flush=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("derivatives")
    p.add_argument("--dims", type=int, nargs="+", default=[5, 21])
    p.add_argument("--sigma", type=float, default=0.1)
    p.add_argument("--seeds", type=int, default=20)
    p = sub.add_parser("train")
    p.add_argument("problem", choices=sorted(problems.PROBLEMS))
    p.add_argument("flags", nargs=argparse.REMAINDER)
    p = sub.add_parser("backends")
    p.add_argument("problem", choices=sorted(problems.PROBLEMS))
    p.add_argument("flags", nargs=argparse.REMAINDER)
    p = sub.add_parser("bodies")
    p.add_argument("problem", choices=sorted(problems.PROBLEMS))
    p.add_argument("--max-time", type=float, default=300.0)
    p.add_argument("--bodies", type=lambda v: v.split(","), default=["frozen", "local", "zo"],
                   help="comma-separated (default frozen,local,zo)")
    p.add_argument("flags", nargs=argparse.REMAINDER)
    p = sub.add_parser("gn-step")
    p.add_argument("problem", choices=sorted(problems.PROBLEMS))
    p.add_argument("--points", type=int, default=256)
    p.add_argument("--derivatives", help="derivative rule (default the problem's)")
    p.add_argument("--inputs", default="coordinates", choices=tuple(INPUTS))
    p.add_argument("--check-points", type=int, default=1024,
                   help="fresh points judging the candidates, at most --points (default 1024)")
    p.add_argument("--repeats", type=int, default=3)
    p = sub.add_parser("first-order")
    p.add_argument("problem", help="a built-in problem, or a suite instance as FAMILY:SEED")
    p.add_argument("--max-time", type=float, default=300.0)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--depth", type=int, help="TT hidden layers (default as zotrain pinn)")
    p.add_argument("--rank", type=int, help="TT rank (default as zotrain pinn)")
    p.add_argument("--inputs", choices=tuple(INPUTS),
                   help="the network's inputs (default as zotrain pinn)")
    p.add_argument("--supervised", action="store_true",
                   help="fit the exact solution instead of the PDE (the architecture's capacity)")
    p.add_argument("--lm", type=int, metavar="POINTS",
                   help="with --supervised: Levenberg-Marquardt steps on POINTS fresh points "
                        "each instead of Adam")
    p = sub.add_parser("suite")
    p.add_argument("--split", default="test", choices=tuple(pde_suite.SPLITS))
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--only", nargs="+", help="instance names (default every one of the split)")
    p.add_argument("--options", default="{}", help="extra PinnConfig fields as JSON (dev only)")
    p.add_argument("--baselines", type=lambda v: v.split(","),
                   default=["frozen", "first-order", "trivial"])
    p = sub.add_parser("suite-run")
    p.add_argument("family", choices=tuple(pde_suite.FAMILIES))
    p.add_argument("seed", type=int)
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--options", default="{}")
    args = ap.parse_args(argv)
    if args.cmd == "first-order" and args.supervised and _problem(args.problem).exact is None:
        ap.error(f"--supervised needs an exact solution, which {args.problem} does not have")
    if args.cmd == "first-order" and args.lm is not None and (not args.supervised or args.lm < 1):
        ap.error("--lm POINTS (>= 1) goes with --supervised")
    if hasattr(args, "flags"):
        args.flags = [f for f in args.flags if f != "--"]
    {"derivatives": derivatives, "train": train, "first-order": first_order,
     "backends": backends, "bodies": bodies, "gn-step": gn_step, "suite": suite,
     "suite-run": _suite_run}[args.cmd](args)


if __name__ == "__main__":
    main()
