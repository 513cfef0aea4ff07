"""What a device that runs only an inference engine needs to train a model itself.

``write_device_bundle(model, params, config, out_dir)`` writes:

* ``features.onnx``: inputs ``X`` and every parameter segment (graph inputs with
  the given values as defaults), outputs ``Y`` (logits) and ``features`` (the
  head's input, for the head's exact gradient);
* ``losses.onnx``: inputs ``P`` ``(Q, n_params)``, ``X``, ``target`` (int64 labels);
  output ``losses`` ``(Q,)``: the cross-entropies of Q parameter sets in one run;
* ``init.npy``: the parameter vector to start from (float32, layout order);
* ``recipe.json``: the layout (segment names, offsets, shapes, which are the
  head), the input normalisation and the training settings (queries, mu,
  learning rates, batch size, epochs, seed).

``examples/on_device_training.py`` trains from such a bundle with NumPy and
onnxruntime alone: weight-perturbation RGE on the body (directions regenerated
from (seed, step, query)), the exact head gradient from ``features``, Adam.
"""

import json
import os
from pathlib import Path

import numpy as np

from .onnx import ExportError, to_onnx, to_onnx_losses

#: the ``ClassifierConfig`` fields the on-device loop follows
RECIPE_FIELDS = ("queries", "mu", "lr", "head_lr", "batch_size", "epochs", "seed", "schedule")


def write_device_bundle(model, params, config, out_dir, *, mean=0.0, std=1.0):
    """Write the bundle for ``model`` starting at ``params``; ``config`` a
    ``ClassifierConfig`` (its RGE settings; ``mean``/``std`` normalise raw [0, 1] pixels).
    Returns the directory."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ExportError(f"{out} exists and is not a directory")
    if config.estimator != "rge" or not config.antithetic:
        raise ExportError("the on-device loop runs antithetic RGE (--estimator rge); got "
                          f"{config.estimator!r}{'' if config.antithetic else ' one-sided'}")
    out.mkdir(parents=True, exist_ok=True)
    head = {s.name for s in model.layout.of_layer(len(model.layers) - 1)}
    to_onnx(model, params, out / "features.onnx", trainable=True)
    to_onnx_losses(model, out / "losses.onnx")
    tmp = out / ".init.npy.tmp"
    with open(tmp, "wb") as f:
        np.save(f, np.asarray(params, np.float32))
    os.replace(tmp, out / "init.npy")
    recipe = {"segments": [{"name": s.name, "offset": s.offset, "size": s.size,
                            "shape": list(s.shape), "head": s.name in head} for s in model.layout],
              "n_params": model.n_params, "in_features": model.in_features,
              "classes": model.out_features, "mean": mean, "std": std,
              **{k: getattr(config, k) for k in RECIPE_FIELDS}}
    tmp = out / ".recipe.json.tmp"
    tmp.write_text(json.dumps(recipe, indent=1))
    os.replace(tmp, out / "recipe.json")
    return out
