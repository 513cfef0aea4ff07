"""The run directory: the one module that reads and writes a run's settings and model.

A run directory (``zotrain train``, ``zotrain pinn``, ``train_classifier``,
``train_pinn``) holds ``config.json`` (the run's settings), ``model.npz`` (parameters,
layout, architecture and the settings again), ``checkpoint.npz``
(``zotrain.engine.checkpoint``), ``metrics.json``, ``log.jsonl`` and ``curves.png``.
Training, resume, ``load_run``, the command line and export all read them here; every
fault is a ``RunDirError`` naming the file.
"""

import json
import zipfile
from pathlib import Path

import numpy as np

from zotrain.engine.checkpoint import atomic_write, write_json, _json_default

CONFIG, MODEL, CHECKPOINT = "config.json", "model.npz", "checkpoint.npz"
#: the files of a run; a new run refuses a directory holding any of them
RUN_FILES = (CHECKPOINT, MODEL, "metrics.json", CONFIG, "log.jsonl", "curves.png")


class RunDirError(ValueError):
    """A run directory's file is missing, unreadable or not what zotrain wrote."""


def write_settings(run_dir, settings):
    """``config.json``, atomically."""
    write_json(Path(run_dir) / CONFIG, settings)


def settings(run_dir):
    """The settings a run was trained with: its ``config.json``, else (runs that wrote
    none) the ones stored in its ``model.npz``."""
    run_dir = Path(run_dir)
    path = run_dir / CONFIG
    if path.is_file():
        try:
            value = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise RunDirError(f"{path} is not readable JSON ({e})") from None
        if not isinstance(value, dict):
            raise RunDirError(f"{path} does not hold a run's settings (a JSON object)")
        return value
    return model_settings(run_dir / MODEL)


def model_settings(path):
    """The settings stored in a ``model.npz`` (``{}`` where it holds none)."""
    path = Path(path)
    if not path.is_file():
        raise RunDirError(f"no model file at {path} (train first)")
    try:
        with np.load(path, allow_pickle=False) as z:
            value = json.loads(str(z["config"])) if "config" in z.files else {}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise RunDirError(f"{path} is corrupted or not a zotrain model file ({e})") from None
    if not isinstance(value, dict):
        raise RunDirError(f"{path}: its settings are not a JSON object")
    return value


def save_model(path, model, params, config, **extra):
    """A trained model's file: parameters, layout, architecture and the run's config
    (plus ``extra`` JSON-serialisable entries), written atomically."""
    entries = {"params": np.asarray(params, np.float32),
               "layout": json.dumps(model.layout.to_dict()), "spec": json.dumps(model.spec()),
               "config": json.dumps(config, default=_json_default)}
    entries.update({k: json.dumps(v, default=_json_default) for k, v in extra.items()})
    atomic_write(path, lambda f: np.savez(f, **entries))


def load_model(path):
    """``(model, params)`` from a run's ``model.npz`` (or the run directory holding it);
    refused unless the parameters are the architecture's count of finite floats."""
    from zotrain.nn.sequential import Sequential

    path = Path(path)
    if path.is_dir():
        path = path / MODEL
    if not path.is_file():
        raise RunDirError(f"no model file at {path} (train with `zotrain train` first)")
    try:
        with np.load(path, allow_pickle=False) as z:
            params, spec = z["params"], json.loads(str(z["spec"]))
        model = Sequential.from_spec(spec)
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise RunDirError(f"{path} is corrupted or not a zotrain model file ({e})") from None
    if params.shape != (model.n_params,):
        raise RunDirError(f"{path} holds {params.shape} parameters but its architecture needs "
                          f"{model.n_params}")
    if params.dtype.kind != "f" or not np.all(np.isfinite(params)):
        raise RunDirError(f"{path} holds non-finite (NaN or inf) or non-float parameters: not "
                          "a trained model")
    return model, params
