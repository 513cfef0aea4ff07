"""The backpropagation-free PINN recipe: a task on ``zotrain.engine`` (``zotrain pinn``).

``train_pinn(problem, config, out_dir)`` trains on any ``Problem`` object.

Each iteration draws ``points`` fresh collocation points (seeded by the
iteration) and takes one zeroth-order step on the body (every layer but the
last): RGE queries of the PINN loss, each a batched forward of the perturbed
network on all shifted inputs (``zotrain.pinn.loss``), and Adam.  Before the
first iteration, after every ``head_every``-th and after the last, the last
(Dense) layer is solved: one ridge-regularised Gauss-Newton step from the
exact head Jacobian, built from the features entering the head at
``head_points`` collocation points (forward passes only; see
``zotrain.pinn.solvers.head_jacobian``).  ``--head zo`` trains the head with the body by
RGE instead.  ``--body local`` updates the last hidden layer by a local rule
with the exact head-side sensitivity (``solvers.hidden_layer_gradient``) and
RGE below it (with ``--depth 1``, one TT hidden layer, that is the whole body,
trained by its exact gradient); ``--body gauss-newton`` takes a
Levenberg-Marquardt step each iteration on the last hidden layer and the head
together, from the per-point Jacobian of the same local rule
(``solvers.lm_step``; its damping adapts and is checkpointed), RGE below;
each step solves the rows of the last ``window`` batches together (default 4;
``zotrain.pinn.lm_window``); ``--body frozen`` keeps the random features (the
baseline).  A problem with boundary data (heat100d) adds the mean squared
boundary error on a quarter as many boundary points.

A forward pass is one parameter set evaluated on ``points`` collocation points
(each point is ``M`` network evaluations: the rule's shifted inputs).  The
relative L2 error is measured on 10,000 uniform test points with the smoothed
predictor the model is deployed with.  ``DIR/checkpoint.npz`` and
``DIR/model.npz`` are written atomically at every evaluation (every
``eval_every`` iterations: one engine epoch), so a diverging run stops with its
last good state, and ``resume`` continues bit-identically.
"""

import math
from pathlib import Path

from zotrain import optim
from zotrain.base import ZotrainError
from zotrain.engine import rundir
from zotrain.engine.loop import Engine
from zotrain.engine.memory import check_fits

from .bodies import BODIES, CHECK_POINTS, WINDOW  # noqa: F401  (their names here before)
from .config import BACKENDS, HEADS, RESUMABLE, PinnConfig  # noqa: F401
from .task import (PinnObjectives, PinnTask, build, evaluate, init_params,  # noqa: F401
                   make_loss, pinn_objective, rel_l2, residual_losses)


#: how a run with a hard constraint builds its predictor (its run directory records it):
#: ``a + c N_sigma``, the constraint on the smoothed network; runs before zotrain 0.3 applied
#: it at the shifted inputs, so their parameters give another function
CONSTRAINT = "on the smoothed network"


def check_constraint(config, problem, run_dir):
    """Refuse a run of a problem with a hard constraint made by a zotrain whose predictor
    differs (a ZotrainError naming the run)."""
    if problem.transform is not None and config.get("constraint") != CONSTRAINT:
        raise ZotrainError(f"{run_dir} was trained by an older zotrain, which applied "
                           f"{problem.name!r}'s hard constraint before smoothing the network; "
                           "its parameters do not give this version's predictor "
                           "(a + c N_sigma): train it again")


def run_config(run_dir, problem=None):
    """The settings a run directory was trained with (``zotrain.engine.rundir``); with
    ``problem``, refused unless the run is of that problem."""
    config = rundir.model_settings(Path(run_dir) / rundir.MODEL)
    if problem is not None and config.get("problem") != problem.name:
        raise ZotrainError(f"{run_dir} holds a run of problem {config.get('problem')!r}, "
                           f"not {problem.name!r}")
    return config


def run_problem_name(run_dir):
    """The problem a run directory was trained on (None for a classification run)."""
    return run_config(run_dir).get("problem")


def load_run(problem, run_dir):
    """``(loss, params)`` of a run of ``problem`` saved in ``run_dir`` (its ``model.npz``):
    the smoothed predictor is ``loss.predict(params, x)``."""
    config = run_config(run_dir, problem)
    check_constraint(config, problem, run_dir)
    model, params = rundir.load_model(run_dir)
    c = PinnConfig.from_settings(config)
    c.backend, c.ray = "numba", None  # nothing read from a file decides where to connect
    return build(c, problem)[1], params


def train_pinn(problem, config=None, out_dir=None, *, resume=False, progress=True,
               callbacks=(), overwrite=False):
    """Train a PINN for ``problem`` (a ``zotrain.pinn.Problem``) forward-only and write the
    run's files; returns the metrics dict.  ``config`` defaults to
    ``PinnConfig.for_problem(problem)`` (the problem's recipe).  Raises
    ``DivergenceError`` (last good state kept in ``out_dir``) on a non-finite loss; Ctrl-C
    checkpoints the last completed iteration.  ``resume`` continues from
    ``out_dir/checkpoint.npz``; a new run into an ``out_dir`` holding one is refused unless
    ``overwrite``."""
    c = (config or PinnConfig.for_problem(problem)).resolved(problem)
    c.validate(problem)
    model, loss = build(c, problem)
    run_config = dict(c.settings(), problem=problem.name)
    if problem.transform is not None:
        run_config["constraint"] = CONSTRAINT
        if resume and out_dir is not None and (Path(out_dir) / rundir.CONFIG).is_file():
            check_constraint(rundir.settings(out_dir), problem, out_dir)  # else: the
            # engine names what is missing
    check_fits(model.n_params)
    task = PinnTask(problem, model, loss, c, run_config)
    try:
        engine = Engine(task, optim.adam(optim.cosine(c.lr, c.steps)),
                        epochs=math.ceil(c.steps / c.eval_every), seed=c.seed, out_dir=out_dir,
                        config=run_config, resumable=RESUMABLE, callbacks=callbacks,
                        progress=progress, log_every=0, max_time_s=c.max_time_s,
                        evaluate_at_start=True, overwrite=overwrite,
                        total_steps=c.iters if c.max_time_s is not None else c.steps)
        return engine.run(resume=resume)
    finally:
        model.release_buffers()
        if task.pool is not None:
            task.pool.shutdown()
