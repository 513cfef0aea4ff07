"""Atomic files: checkpoints (parameters, optimizer state, progress) and JSON.

Every file is written to a temporary name in its directory and renamed into
place, so an interrupted run never leaves a half-written file behind.
"""

import json
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable or does not fit the run."""


def atomic_write(path, write):
    """Call ``write(file)`` on a temporary file next to ``path``, then rename it."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_json(path, obj):
    atomic_write(path, lambda f: f.write(json.dumps(obj, indent=2, default=_json_default).encode()))


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON-serialisable: {type(o).__name__}")


def tree_leaves(tree):
    """Leaves of a tree of tuples/NamedTuples, depth first."""
    if isinstance(tree, tuple):
        return [leaf for t in tree for leaf in tree_leaves(t)]
    return [tree]


def tree_replace(template, leaves):
    """``template`` with its leaves replaced, in order, by ``leaves``."""
    it = iter(leaves)

    def build(t):
        if isinstance(t, tuple):
            items = [build(x) for x in t]
            return type(t)(*items) if hasattr(t, "_fields") else tuple(items)
        leaf = next(it)
        return int(leaf) if isinstance(t, int) else np.asarray(leaf, dtype=np.asarray(t).dtype)

    return build(template)


def save_checkpoint(path, params, opt_state, meta):
    """Parameters, optimizer state and a JSON ``meta`` dict, in one ``.npz``."""
    arrays = {"params": np.asarray(params, np.float32),
              "meta": np.frombuffer(json.dumps(meta, default=_json_default).encode(), np.uint8)}
    for k, leaf in enumerate(tree_leaves(opt_state)):
        arrays[f"opt_{k}"] = np.asarray(leaf)
    atomic_write(path, lambda f: np.savez(f, **arrays))


def load_checkpoint(path, opt_template, n_params=None):
    """``(params, opt_state, meta)`` from ``save_checkpoint``; ``opt_template`` gives
    the optimizer state's structure (``optimizer.init(params)``), ``n_params`` (optional)
    the parameter count.  A file that is not
    such a checkpoint, holds a state of another shape, or holds NaN or inf is refused
    with a ``CheckpointError`` naming the file and the fault."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    template = tree_leaves(opt_template)
    try:
        with np.load(path) as z:
            params = z["params"]
            meta = json.loads(bytes(z["meta"]).decode())
            leaves = [z[f"opt_{k}"] for k in range(len(template))]
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise CheckpointError(f"checkpoint {path} is corrupted or incomplete ({e})") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"checkpoint {path}: its metadata is not a JSON object")
    if params.ndim != 1 or params.dtype.kind != "f":
        raise CheckpointError(f"checkpoint {path}: params must be a 1-D float vector, got "
                              f"{params.dtype} {params.shape}")
    if n_params is not None and params.shape != (n_params,):
        raise CheckpointError(f"checkpoint {path} holds {params.shape[0]} parameters; this "
                              f"run trains {n_params}")
    for k, (leaf, t) in enumerate(zip(leaves, template)):
        if np.shape(leaf) != np.shape(t):
            raise CheckpointError(f"checkpoint {path}: optimizer state opt_{k} has shape "
                                  f"{np.shape(leaf)}, this run's optimizer needs "
                                  f"{np.shape(t)}")
    for name, a in [("params", params)] + [(f"opt_{k}", v) for k, v in enumerate(leaves)]:
        if np.asarray(a).dtype.kind == "f" and not np.all(np.isfinite(a)):
            raise CheckpointError(f"checkpoint {path} holds NaN or inf in {name}: not a "
                                  "state to continue from")
    return params, tree_replace(opt_template, leaves), meta


def read_meta(path):
    """The JSON metadata of checkpoint ``path`` alone (a dict), or a ``CheckpointError``."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        with np.load(path) as z:
            meta = json.loads(bytes(z["meta"]).decode())
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise CheckpointError(f"checkpoint {path} is corrupted or incomplete ({e})") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"checkpoint {path}: its metadata is not a JSON object")
    return meta


def all_finite(params, opt_state=()):
    """Whether ``params`` and every floating leaf of ``opt_state`` are finite."""
    return all(np.all(np.isfinite(a)) for a in [params] + tree_leaves(opt_state)
               if np.asarray(a).dtype.kind == "f")
