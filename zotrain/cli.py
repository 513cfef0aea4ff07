"""The ``zotrain`` command line."""

import argparse
import dataclasses
import sys
from pathlib import Path


from zotrain import options
from zotrain.nn import architectures
from zotrain.recipes.classification import ModelOptions
from zotrain.recipes.presets import PRESETS


def _cmd_data(args):
    from zotrain.data import DataError, load_mnist, resolve_data_dir

    try:
        d = load_mnist(args.data, download_missing=not args.no_download)
    except DataError as e:
        print(f"zotrain data: {e}", file=sys.stderr)
        return 2
    print(f"MNIST in {resolve_data_dir(args.data)}: {len(d.x_train)} training and "
          f"{len(d.x_test)} test images")
    return 0


def _cmd_models(args):
    for name, factory in (("mnist", architectures.mnist_mlp), ("pinn", architectures.pinn_mlp)):
        m = factory()
        print(f"{name}: {m.n_params} trainable parameters, {m.dense_params} dense "
              f"({m.dense_params / m.n_params:.0f}x compression)\n{m}\n")
    for name, p in PRESETS.items():
        m = _budgeted_model(784, 10, p, name)
        print(f"--preset {name} (MNIST): {m.n_params} trainable parameters "
              f"({4 * m.n_params:,} bytes in float32), {m.dense_params} dense\n{m}\n")
    return 0


#: what a ``zotrain train`` run records beside its ClassifierConfig (config.json)
RUN_KEYS = ("dataset", "data", "model", "rank", "hidden", "max_params", "preset")
#: the classifier's architecture when no option or preset names it
MODEL_DEFAULTS = {k: getattr(ModelOptions, k) for k in ("model", "rank", "hidden")}
#: arguments that say what to do with a run, not how to train it
NOT_SETTINGS = {"command", "func", "task", "file", "out", "resume", "quiet", "overwrite"}


def _cmd_train(args):
    from zotrain.data import load_dataset
    from zotrain.recipes.classification import ClassifierConfig, train_classifier

    fields, out = {f.name for f in dataclasses.fields(ClassifierConfig)}, None
    try:
        if args.resume:
            out = Path(args.resume)
            run = _resumed_run(args, out)
        else:
            run = _new_run(args, fields)
            out = Path(args.out or f"runs/{_run_name(run)}")
        data = load_dataset(run["dataset"], run["data"])
        model = _budgeted_model(data.n_features, data.n_classes, run, run.get("preset"))
        config = ClassifierConfig(**{k: v for k, v in run.items() if k in fields})
        config.validate()
        extra = {k: run.get(k) for k in RUN_KEYS}
        if not args.resume or "data_digest" in run:  # (runs before 0.2 did not record it)
            extra["data_digest"] = data.digest()
        metrics = train_classifier(model, data, config, out, resume=bool(args.resume),
                                   progress=not args.quiet, run_config=extra,
                                   overwrite=args.overwrite)
    except Exception as e:  # noqa: BLE001 - every known failure becomes a one-line message
        return _report("train", e, f"{_resume_command(args)} --resume {out}"
                       if out is not None else None)
    return _finished(metrics, out, f"test accuracy {metrics['test_accuracy']:.4f} (best "
                     f"{metrics['best_test_accuracy']:.4f}) after {metrics['epochs']:.2f} epochs",
                     _resume_command(args))


def _new_run(args, fields):
    from zotrain.recipes.classification import ClassifierConfig

    if (args.task == "npz") != (args.file is not None):
        raise ValueError("npz takes a FILE (zotrain train npz data.npz); mnist and "
                         "fashion-mnist take none (use --data DIR)")
    given = _with_preset(args)
    return dict(dataclasses.asdict(ClassifierConfig(**{k: v for k, v in given.items()
                                                       if k in fields})),
                dataset=args.task, data=args.file or args.data,
                **{k: given.get(k, v) for k, v in MODEL_DEFAULTS.items()},
                max_params=given.get("max_params"),
                preset=args.preset)


def _resumed_run(args, out):
    """The settings of the run in ``out`` (its config.json), with the budgets given now; any
    other setting given that differs is refused by name.  Where the run's queries went
    (``ray``, ``workers``) is shown, never used: only ``--ray`` given now connects."""
    from zotrain.recipes.classification import RESUMABLE

    from zotrain.engine import rundir

    if not (out / rundir.CONFIG).is_file():
        raise ValueError(f"cannot resume: {out} holds no config.json (not a zotrain train run)")
    run = rundir.settings(out)
    if "dataset" not in run:
        raise ValueError(f"cannot resume: {out / rundir.CONFIG} does not hold a zotrain train "
                         "run's settings")
    given = {k: v for k, v in vars(args).items() if v is not None and k not in NOT_SETTINGS}
    given.update(dataset=args.task, **({"data": args.file} if args.file else {}))
    changed = sorted(k for k, v in given.items() if k not in RESUMABLE and run.get(k) != v)
    if changed:
        raise ValueError(f"cannot resume {out} with other settings: " + ", ".join(
            f"{k} {run.get(k)!r} -> {given[k]!r}" for k in changed) + " (only budgets, time "
            "limits, the data's location, the backend and Ray may change; start a new run "
            "with --out)")
    stored = {k: run.get(k) for k in ("ray", "workers", "transport")}
    run.update(ray=args.ray, workers=args.workers or 1, transport=args.transport or "auto")
    if stored["ray"] is not None and args.ray is None and not args.quiet:
        print(f"the run used --ray {stored['ray']} --workers {stored['workers']}; resuming in "
              "this process (give --ray again to use a cluster)", file=sys.stderr)
    run.update({k: v for k, v in given.items() if k in RESUMABLE and k not in
                ("ray", "workers", "transport")})
    if run.get("block_parallel") and args.ray is None:
        raise ValueError(f"{out} trained its blocks on Ray actors (--block-parallel); resume it "
                         "with --ray given again")
    return run


def _with_preset(args):
    """The options given, over the named preset's settings."""
    if args.preset is not None and args.preset not in PRESETS:
        raise ValueError(f"unknown preset {args.preset!r}; known: {', '.join(PRESETS)}")
    return dict(PRESETS.get(args.preset, {}),
                **{k: v for k, v in vars(args).items() if v is not None})


def _budgeted_model(n_features, n_classes, settings, preset):
    """The classifier ``settings`` name (model, rank, hidden), refused when over its
    parameter budget (``max_params``: a preset's or ``--max-params``) or over what this
    machine can train, before anything of its size is allocated."""
    from zotrain.engine.memory import check_fits

    name = settings.get("model", "mlp")
    if name not in architectures.DEPTHS:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(architectures.DEPTHS)}")
    for key in ("rank", "hidden", "max_params"):
        v = settings.get(key)
        if (v is not None or key != "max_params") and (
                isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise ValueError(f"--{key.replace('_', '-')} must be an integer >= 1, got {v!r}")
    rank, hidden = settings["rank"], settings["hidden"]
    model = architectures.classifier(n_features, n_classes, rank=rank,
                                     depth=architectures.DEPTHS[name], hidden=hidden)
    budget = settings.get("max_params")
    if budget is not None and model.n_params > budget:
        what = f"preset {preset!r}" if preset else "--max-params"
        raise ValueError(f"{what} allows at most {budget:,} parameters, but --rank {rank} "
                         f"--hidden {hidden} gives {model.n_params:,}; lower the rank or the "
                         "hidden width")
    check_fits(model.n_params, f"--model {name} --rank {rank} --hidden {hidden}")
    return model


def _finished(metrics, out, result, resume):
    """Print a run's result; for an interrupted run the command that continues it, and
    exit code 130 (as a shell would)."""
    spent = metrics.get("time_s", {})
    parts = [f"{spent.get(k, 0):.0f} s {what}" for k, what in (
        ("steps", "steps"), ("hooks", "head solves"), ("evaluations", "evaluations"))
        if k != "hooks" or spent.get(k, 0) >= 0.5]
    print(f"{result}, {metrics['forward_passes']:,.0f} forward passes, "
          f"{metrics['wall_time_s']:.0f} s ({', '.join(parts)}); {metrics['stopped']}. "
          f"Files in {out}")
    if metrics["stopped"] != "interrupted":
        return 0
    print(f"interrupted after step {metrics['steps']}; continue with: {resume} --resume "
          f"{out}", file=sys.stderr)
    return 130


def _resume_command(args):
    """The command that resumes this run (its settings come from the run directory)."""
    if args.command == "pinn":
        return f"zotrain pinn {args.problem}"
    return f"zotrain train {args.task}" + (f" {args.file}" if args.file else "")


def _run_name(run):
    """DATA-ARCHITECTURE-EVALUATOR-seedS: the preset's name or the model with the rank and
    width where they are not the defaults."""
    data = Path(run["data"]).stem if run["dataset"] == "npz" else run["dataset"]
    if run.get("preset"):
        arch = run["preset"]
        base = PRESETS[run["preset"]]
    else:
        arch = "mlp" if run["model"] in ("mlp", "mnist") else run["model"]
        base = MODEL_DEFAULTS
    arch += "".join(f"-{p}{run[k]}" for k, p in (("rank", "r"), ("hidden", "h"))
                    if run[k] != base.get(k))
    return f"{data}-{arch}-{run['evaluator']}-seed{run['seed']}"


def _fail(command, message, code=2):
    print(f"zotrain {command}: {message}", file=sys.stderr)
    return code


def _report(command, error, resume=None):
    """Exit codes: 3 for a diverged run, 2 for bad input; anything else is a bug: re-raised."""
    from zotrain.engine.loop import DivergenceError

    if isinstance(error, DivergenceError):
        hint = "" if resume is None else (
            f" To continue from it: {resume}; with the same settings it diverges again, so "
            "rather start a new run with a lower --lr (--out NEW_DIR).")
        return _fail(command, f"{error}{hint}", 3)
    if isinstance(error, (ValueError, OSError)):  # CheckpointError, DataError, ExportError...
        return _fail(command, error)
    raise error


def _add_train(sub):
    from zotrain.recipes.classification import ClassifierConfig

    p = sub.add_parser("train", help="train a classifier with forward passes only",
                       description="Train with zeroth-order estimates and exact local heads; "
                       "writes metrics.json, model.npz, log.jsonl, checkpoint.npz, curves.png. "
                       "The input width and the number of classes come from the data.")
    p.add_argument("task", choices=["mnist", "fashion-mnist", "npz"],
                   help="mnist (shipped with zotrain), fashion-mnist (apt-get install "
                   "dataset-fashion-mnist) or npz FILE (x_train, y_train, x_test, y_test)")
    p.add_argument("file", nargs="?", help="the .npz file (npz only)")
    groups = {"data": p.add_argument_group("data")}
    groups["data"].add_argument("--data", metavar="DIR", help="data directory (default: "
                                "$ZOTRAIN_DATA, the cache or the copy shipped with zotrain for "
                                "mnist, /usr/share/datasets/fashion-mnist for fashion-mnist)")
    _add_model(p, groups)
    options.add_options(p, ClassifierConfig, groups=groups)
    _add_output(p, groups, "runs/DATA-MODEL-EVALUATOR-seedS, the model with its rank and width "
                "where they are not the defaults, or the preset's name", "continue the run in "
                "DIR (--epochs sets the new total)")
    p.set_defaults(func=_cmd_train)


def _add_model(p, groups, only=None):
    """The classifier's architecture options (``ModelOptions``: the model's, not training
    settings)."""
    from zotrain.recipes.classification import ModelOptions

    options.add_options(p, ModelOptions, only=only, groups=groups)


def _add_output(p, groups, default_out, resume_help):
    g = groups["output"] if "output" in groups else p.add_argument_group("output")
    g.add_argument("--out", metavar="DIR", help=f"output directory (default {default_out}); "
                   "an existing run is refused unless --overwrite")
    g.add_argument("--resume", metavar="DIR", help=resume_help)
    g.add_argument("--overwrite", action="store_true", help="replace the run already in the "
                   "output directory (refused otherwise)")
    g.add_argument("--quiet", action="store_true", help="no progress output")


def _cmd_export(args):
    from zotrain.engine import rundir
    from zotrain.export.onnx import ExportError, to_onnx

    from zotrain.data import input_scaling

    run_dir = Path(args.run_dir)
    try:
        model, params = rundir.load_model(run_dir)
        mean, std = input_scaling(rundir.model_settings(run_dir / rundir.MODEL).get("dataset"))
        out = Path(args.out) if args.out else run_dir / (
            "model.trainable.onnx" if args.trainable else "model.onnx")
        pinn = None if args.trainable else _pinn_loss_of_run(run_dir)
        if args.int8:
            from zotrain.export.int8 import to_onnx_int8

            if args.trainable or pinn is not None:
                raise ExportError("--int8 exports a classifier's inference graph (not "
                                  "--trainable, not a PINN run)")
            out = Path(args.out) if args.out else run_dir / "model.int8.onnx"
            to_onnx_int8(model, params, out, _calibration(run_dir, args) * std + mean,
                         mean=mean, std=std)
        elif pinn is not None:
            from zotrain.export.pinn import to_onnx_pinn

            to_onnx_pinn(pinn, params, out)
        else:
            to_onnx(model, params, out, trainable=args.trainable, mean=mean, std=std)
    except Exception as e:  # noqa: BLE001
        return _report("export", e)
    kind = "int8 inference" if args.int8 else "trainable" if args.trainable else \
        "smoothed PINN predictor" if pinn is not None else "inference"
    print(f"wrote {out} ({out.stat().st_size:,} bytes; {model.n_params:,} parameters, "
          f"{kind} graph)")
    return 0


def _calibration(run_dir, args):
    """The first ``args.calibration`` training inputs of the run's data set (``--data``
    overrides where the run found it)."""
    from zotrain.data import load_dataset
    from zotrain.export.onnx import ExportError

    if args.calibration < 1:
        raise ExportError(f"--calibration must be >= 1, got {args.calibration}")
    from zotrain.engine import rundir

    config = rundir.model_settings(run_dir / rundir.MODEL)
    dataset, source = config.get("dataset"), args.data or config.get("data")
    if dataset is None:
        raise ExportError(f"{run_dir} does not name its training data, so --int8 has no "
                          "calibration inputs; quantize from Python with "
                          "zotrain.export.int8.to_onnx_int8(model, params, path, calibration)")
    try:
        x = load_dataset(dataset, source).x_train
    except ValueError as e:
        raise ExportError(f"--int8 needs calibration inputs from the run's {dataset} training "
                          f"data, which cannot be loaded ({e}); give --data DIR") from None
    return x[:args.calibration]


def _pinn_loss_of_run(run_dir):
    """The ``PinnLoss`` of a ``zotrain pinn`` run; None for other runs."""
    from zotrain.export.onnx import ExportError
    from zotrain.pinn import problems
    from zotrain.pinn.train import load_run, run_problem_name

    name = run_problem_name(run_dir)
    if name is None:
        return None
    if name not in problems.PROBLEMS:
        raise ExportError(f"{run_dir} holds a run of problem {name!r}, which zotrain does not "
                          "ship; export it from Python with the Problem object: "
                          f"zotrain.export.pinn.export_pinn_run(problem, {str(run_dir)!r})")
    return load_run(problems.get(name), run_dir)[0]  # a name resolves to an object here


def _cmd_device(args):
    from zotrain.data import MEAN, STD
    from zotrain.export.device import write_device_bundle
    from zotrain.recipes.classification import ClassifierConfig

    fields = {f.name for f in dataclasses.fields(ClassifierConfig)}
    try:
        given = dict(MODEL_DEFAULTS, **_with_preset(args))
        config = ClassifierConfig(**{k: v for k, v in given.items() if k in fields})
        config.validate()
        model = _budgeted_model(784, 10, given, args.preset)
        out = write_device_bundle(model, config, args.out_dir, mean=MEAN, std=STD,
                                  train_examples=args.train_examples,
                                  overwrite=args.overwrite)
    except Exception as e:  # noqa: BLE001
        return _report("device", e)
    print(f"wrote {out}: step.onnx, features.onnx, losses.onnx, init.npy, recipe.json "
          f"({model.n_params:,} parameters); train with python examples/on_device_training.py "
          f"{out} MNIST_DIR")
    return 0


def _add_device(sub):
    from zotrain.recipes.classification import ClassifierConfig

    p = sub.add_parser("device", help="write what a device with only an inference runtime "
                       "needs to train an MNIST model itself",
                       description="Writes DIR/step.onnx (one training step of the recipe "
                       "zotrain train runs: activity perturbation, exact heads, Adam), "
                       "features.onnx and losses.onnx (evaluation and the black-box mode), "
                       "init.npy and recipe.json, for examples/on_device_training.py (NumPy "
                       "+ onnxruntime). The graphs take pixels in [0, 1].")
    p.add_argument("out_dir", metavar="DIR")
    groups = {}
    _add_model(p, groups, only=("preset", "model", "rank", "hidden"))
    options.add_options(p, ClassifierConfig, groups=groups, only=(
        "mu", "queries", "lr", "head_lr", "schedule", "batch_size", "epochs", "seed"))
    p.add_argument("--train-examples", type=int, default=60000, metavar="N",
                   help="training examples on the device, validation included (default "
                   "60000, MNIST's): the cosine schedule's length follows")
    p.add_argument("--overwrite", action="store_true", help="replace a bundle already in DIR")
    p.set_defaults(func=_cmd_device)


def _add_export(sub):
    p = sub.add_parser("export", help="write a trained model as ONNX",
                       description="Export RUN_DIR/model.npz (from zotrain train) as ONNX: TT "
                       "layers stay factorised; --trainable makes the parameters graph inputs. "
                       "The graph takes the inputs as the data set has them (MNIST: pixels "
                       "in [0, 1]; the normalisation is inside). A `zotrain pinn` run exports "
                       "its smoothed predictor u_sigma(x).")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--out", metavar="FILE", help="default RUN_DIR/model.onnx")
    p.add_argument("--trainable", action="store_true",
                   help="parameters as graph inputs (trained values as defaults)")
    p.add_argument("--int8", action="store_true", help="quantize to int8 (QDQ, per-channel "
                   "weights, activations calibrated on training inputs); default "
                   "RUN_DIR/model.int8.onnx")
    p.add_argument("--calibration", type=int, default=500, metavar="N",
                   help="training inputs that calibrate --int8 (default 500)")
    p.add_argument("--data", metavar="DIR", help="where the run's data set is, for --int8 "
                   "(default: where the run found it)")
    p.set_defaults(func=_cmd_export)


def _cmd_pinn(args):
    from zotrain.pinn import problems
    from zotrain.pinn.train import PinnConfig, run_config, train_pinn

    names = PinnConfig.names()
    given = {k: v for k, v in vars(args).items() if k in names and v is not None}
    out = None
    try:
        problem = problems.get(args.problem)
        if args.resume:  # the run's own settings (recipe or not), then the options given
            saved = run_config(args.resume, problem)
            if saved.get("ray") is not None and args.ray is None and not args.quiet:
                print(f"the run used --ray {saved['ray']} --workers {saved.get('workers')}; "
                      "resuming in this process (give --ray again to use a cluster)",
                      file=sys.stderr)
            saved = dict(saved, ray=None, workers=1)  # where it connects: only what is given
            config = PinnConfig.from_settings({**saved, **given})
            taken = {}
        elif args.no_recipe:
            config, taken = PinnConfig(**given), {}
        else:
            config = PinnConfig.for_problem(problem, **given)
            taken = {k: v for k, v in (problem.recipe or {}).items() if k not in given}
        if taken and not args.quiet:
            print(f"{problem.name}'s recipe: " + " ".join(
                f"--{k.replace('_', '-')} {v}" for k, v in taken.items()))
        out = Path(args.resume or args.out or f"runs/pinn-{args.problem}-seed{config.seed}")
        metrics = train_pinn(problem, config, out, progress=not args.quiet,
                             resume=args.resume is not None, overwrite=args.overwrite)
    except Exception as e:  # noqa: BLE001
        return _report("pinn", e, f"{_resume_command(args)} --resume {out}" if out else None)
    error = (f"relative L2 error {metrics['rel_l2']:.3e}" if "rel_l2" in metrics else
             f"mean squared residual {metrics['residual_loss']:.3e}")
    return _finished(metrics, out, f"{error} after {metrics['iters']} iterations",
                     _resume_command(args))


def _add_pinn(sub):
    from dataclasses import fields

    from zotrain.pinn import bodies
    from zotrain.pinn.problems import PROBLEMS
    from zotrain.pinn.train import PinnConfig

    p = sub.add_parser("pinn", help="train a physics-informed network with forward passes only",
                       description="Stein derivatives of the Gaussian-smoothed network from "
                       "function values on a sparse grid (or Monte Carlo); zeroth-order steps "
                       "on the TT body and an exact Gauss-Newton solve of the linear head "
                       "(beyond 25 inputs: one hidden layer trained with the head by "
                       "Levenberg-Marquardt steps, on the coordinates and their radius). "
                       "Writes metrics.json, model.npz, checkpoint.npz, log.jsonl, "
                       "curves.png. A problem may carry a recipe (heat100d, bsb100d and "
                       "hjb100d do: sizes and budgets); it replaces the defaults below, and "
                       "the options given replace it.")
    p.add_argument("problem", help=f"one of {', '.join(PROBLEMS)}")
    groups = {}
    body = [(f.name, f.default, f.type, f.metadata) for f in fields(bodies.GaussNewton)]
    options.add_options(p, PinnConfig, groups=groups, extra=body)
    p.add_argument("--no-recipe", action="store_true",
                   help="ignore the problem's recipe: train with the defaults")
    _add_output(p, groups, "runs/pinn-PROBLEM-seedS", "continue the run in DIR with the "
                "settings it was started with (--iters, --max-time and the backend may change; "
                "--ray only where given again)")
    p.set_defaults(func=_cmd_pinn)


def build_parser():
    parser = argparse.ArgumentParser(
        prog="zotrain",
        description="Forward-only (backpropagation-free) training of tensor-train networks.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    p = sub.add_parser("data", help="locate, download and check the MNIST files")
    p.add_argument("--data", metavar="DIR", help="data directory (default: $ZOTRAIN_DATA or "
                   "the user cache)")
    p.add_argument("--no-download", action="store_true", help="fail instead of downloading")
    p.set_defaults(func=_cmd_data)
    p = sub.add_parser("models", help="print the reference architectures and their sizes")
    p.set_defaults(func=_cmd_models)
    _add_train(sub)
    _add_export(sub)
    _add_device(sub)
    _add_pinn(sub)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
