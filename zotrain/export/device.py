"""What a device that runs only an inference engine needs to train a model itself.

``write_device_bundle(model, config, out_dir, train_examples=...)`` writes:

* ``step.onnx``: one training step of the activity-perturbation recipe that ``zotrain
  train`` runs, as one graph (``zotrain.export.step``): parameters, Adam's moments, the
  step counter and a minibatch in; the new parameters, moments and the minibatch loss
  out;
* ``features.onnx``: inputs ``X`` and every model parameter segment (graph inputs with
  the start values as defaults), outputs ``Y`` (logits) and ``features`` (the head's
  input): evaluation, and the exact head gradient of the black-box mode;
* ``losses.onnx``: inputs ``P`` ``(Q, n_model)``, ``X``, ``target``; output ``losses``
  ``(Q,)``: the black-box mode's whole-model forwards (weight-perturbation RGE);
* ``init.npy``: the vector to start from (float32, in the step graph's layout: the
  model's parameters, then each auxiliary head's; the black-box mode uses the first
  ``n_model``);
* ``recipe.json``: the layout, the training settings and the schedule's length.

Every graph takes the inputs as the data set has them (MNIST: pixels in [0, 1]) and
normalises them itself.  ``examples/on_device_training.py`` runs either mode with NumPy
and onnxruntime alone.
"""

import json
from pathlib import Path

import numpy as np

from zotrain.engine.checkpoint import atomic_write
from zotrain.zo.blocks import Blocks
from zotrain.zo.evaluator import blocks_of

from .onnx import ExportError, to_onnx, to_onnx_losses
from .step import check_step_model, to_onnx_step

#: the ``ClassifierConfig`` fields the on-device loop follows
RECIPE_FIELDS = ("queries", "mu", "lr", "head_lr", "batch_size", "epochs", "seed", "schedule",
                 "val_size")
FILES = ("step.onnx", "features.onnx", "losses.onnx", "init.npy", "recipe.json")


def steps_per_epoch(train_examples, config):
    """The steps of an epoch over ``train_examples`` examples, validation held out as
    ``zotrain train`` holds it (the last ``val_size``, at most a fifth)."""
    from zotrain.recipes.classification import validation_size

    n = train_examples - validation_size(train_examples, config.val_size)
    return max(1, n // config.batch_size)


def write_device_bundle(model, config, out_dir, *, train_examples, mean=0.0, std=1.0,
                        overwrite=False):
    """Write the bundle for ``model`` trained by ``config`` (a ``ClassifierConfig`` of the
    activity recipe; its RGE settings serve the black-box mode) on ``train_examples``
    training examples (the schedule's length follows); inputs normalised as
    ``(X - mean) / std`` inside the graphs.  A directory holding a bundle is refused
    unless ``overwrite``.  Returns the directory."""
    check_step_model(model, config)
    if config.estimator != "rge" or not config.antithetic:
        raise ExportError("the black-box mode runs antithetic RGE (--estimator rge); got "
                          f"{config.estimator!r}{'' if config.antithetic else ' one-sided'}")
    if isinstance(train_examples, bool) or not isinstance(train_examples, int) or \
            train_examples < config.batch_size:
        raise ExportError(f"train_examples must be an integer >= the batch size "
                          f"{config.batch_size}, got {train_examples!r}")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ExportError(f"{out} exists and is not a directory")
    held = [f for f in FILES + ("trained.npy", "checkpoint.npz") if (out / f).exists()]
    if held and not overwrite:
        raise ExportError(f"{out} already holds a bundle ({', '.join(held)}); choose another "
                          "directory or overwrite it (--overwrite)")
    out.mkdir(parents=True, exist_ok=True)
    blocks = Blocks(model, blocks_of(model), model.out_features)
    params = blocks.init(config.seed)
    per_epoch = steps_per_epoch(train_examples, config)
    total = config.epochs * per_epoch
    to_onnx_step(model, config, total, out / "step.onnx", mean=mean, std=std)
    to_onnx(model, params[:model.n_params], out / "features.onnx", trainable=True, mean=mean,
            std=std)
    to_onnx_losses(model, out / "losses.onnx", mean=mean, std=std)
    atomic_write(out / "init.npy", lambda f: np.save(f, params))
    heads = {name for k in range(len(blocks)) for name in blocks.head_segments(k)}
    recipe = {"segments": [{"name": s.name, "offset": s.offset, "size": s.size,
                            "shape": list(s.shape), "head": s.name in heads,
                            "model": s.offset < model.n_params} for s in blocks.layout],
              "n_params": blocks.layout.n_params, "n_model": model.n_params,
              "in_features": model.in_features, "classes": model.out_features,
              "normalisation": {"mean": mean, "std": std, "inside_graphs": True},
              "train_examples": train_examples, "steps_per_epoch": per_epoch,
              "total_steps": total, **{k: getattr(config, k) for k in RECIPE_FIELDS}}
    atomic_write(out / "recipe.json", lambda f: f.write(json.dumps(recipe, indent=1).encode()))
    return out
