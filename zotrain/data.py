"""MNIST: IDX reading, locating or downloading the files, normalisation, minibatches.

The data directory is, in order: the ``data_dir`` argument (``--data DIR``),
the ``ZOTRAIN_DATA`` environment variable, or a per-user cache directory
(``$XDG_CACHE_HOME/zotrain/mnist``, by default ``~/.cache/zotrain/mnist``).
Each of the four files may be gzip-compressed (``.gz``) or raw.  Missing
files are downloaded from the standard mirrors and their sha256 checked.
"""

import gzip
import hashlib
import os
import shutil
import struct
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import NamedTuple

import numpy as np

FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}

#: accepted sha256 of each ``.gz`` file.  The training images also accept the
#: rebuilt copy shipped in the project's shared data (one grey level apart).
SHA256 = {
    "train-images-idx3-ubyte.gz": {
        "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        "28e64139e98e2e0cfa58b8096026f82f5b3e0020c462ece2a1860a78d1311413",
    },
    "train-labels-idx1-ubyte.gz": {"3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"},
    "t10k-images-idx3-ubyte.gz": {"8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"},
    "t10k-labels-idx1-ubyte.gz": {"f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"},
}

MIRRORS = [
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
]

#: pixel mean and standard deviation of the MNIST training set (in [0, 1])
MEAN, STD = 0.1307, 0.3081

_MAGIC = {0x00000801: 1, 0x00000803: 3}


class DataError(ValueError):
    """A data file or directory is missing, truncated or malformed."""


class MNIST(NamedTuple):
    x_train: np.ndarray  # (60000, 28, 28) uint8
    y_train: np.ndarray  # (60000,) uint8
    x_test: np.ndarray
    y_test: np.ndarray


def default_data_dir():
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "zotrain" / "mnist"


def resolve_data_dir(data_dir=None):
    """The data directory: argument, then ``ZOTRAIN_DATA``, then the user cache."""
    if data_dir is not None:
        return Path(data_dir)
    env = os.environ.get("ZOTRAIN_DATA")
    return Path(env) if env else default_data_dir()


def read_idx(path):
    """Read an IDX file (gzip or raw) into an array, checking magic number and size."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        raise DataError(f"{path}: cannot be read as {'gzip' if opener is gzip.open else 'raw'} "
                        f"IDX ({e}); delete it to download it again") from None
    if len(raw) < 4:
        raise DataError(f"{path}: truncated IDX file ({len(raw)} bytes, no header)")
    magic = struct.unpack(">I", raw[:4])[0]
    if magic not in _MAGIC:
        raise DataError(f"{path}: wrong magic number 0x{magic:08x}, expected 0x00000801 (labels) "
                        f"or 0x00000803 (images)")
    ndim = _MAGIC[magic]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated IDX header ({len(raw)} bytes, expected {header})")
    dims = struct.unpack(">" + "I" * ndim, raw[4:header])
    expected = header + int(np.prod(dims))
    if len(raw) != expected:
        raise DataError(f"{path}: IDX size is {len(raw)} bytes but its header {dims} implies "
                        f"{expected} (truncated or corrupted file)")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _find(directory, stem):
    for name in (stem + ".gz", stem):
        if (directory / name).is_file():
            return directory / name
    return None


def _sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def download(name, directory, mirrors=None, timeout=30):
    """Fetch ``name`` (a ``.gz`` file) into ``directory`` from the first mirror that
    answers, check its sha256, and move it into place atomically."""
    directory.mkdir(parents=True, exist_ok=True)
    errors = []
    for base in mirrors or MIRRORS:
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{name}.", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(base + name, timeout=timeout) as r:
                shutil.copyfileobj(r, out)
            digest = _sha256(tmp)
            if digest not in SHA256[name]:
                errors.append(f"{base}{name}: sha256 {digest} matches no known checksum")
                continue
            os.replace(tmp, directory / name)
            return directory / name
        except (urllib.error.URLError, OSError, ValueError) as e:
            errors.append(f"{base}{name}: {e}")
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    raise DataError(f"could not download {name} into {directory}:\n  " + "\n  ".join(errors))


def _how_to_get(directory, missing):
    return (f"MNIST files missing in {directory}: {', '.join(missing)}. Download them "
            f"(e.g. from {MIRRORS[0]}) into that directory, or point --data DIR or the "
            "ZOTRAIN_DATA variable at a directory that holds the four IDX files "
            "(train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
            "t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz).")


def load_mnist(data_dir=None, *, download_missing=True, mirrors=None):
    """Load MNIST as uint8 arrays, downloading missing files when allowed."""
    directory = resolve_data_dir(data_dir)
    if directory.exists() and not directory.is_dir():
        raise DataError(f"data directory {directory} is not a directory")
    paths, missing = {}, []
    for key, stem in FILES.items():
        paths[key] = _find(directory, stem)
        if paths[key] is None:
            missing.append(stem + ".gz")
    if missing and not download_missing:
        raise DataError(_how_to_get(directory, missing))
    for name in missing:
        try:
            download(name, directory, mirrors)
        except DataError as e:
            raise DataError(_how_to_get(directory, missing) + f"\nDownload failed: {e}") from None
    arrays = {key: read_idx(paths[key] or _find(directory, stem)) for key, stem in FILES.items()}
    for split in ("train", "test"):
        x, y = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if x.ndim != 3 or x.shape[1:] != (28, 28):
            raise DataError(f"{split} images in {directory} have shape {x.shape}, expected (n, 28, 28)")
        if y.ndim != 1 or y.shape[0] != x.shape[0]:
            raise DataError(f"{split} split in {directory} has {x.shape[0]} images but "
                            f"{y.shape[0] if y.ndim == 1 else y.shape} labels")
        if y.size and y.max() > 9:
            raise DataError(f"{split} labels in {directory} must be 0..9, found {y.max()}")
    return MNIST(arrays["train_images"], arrays["train_labels"],
                 arrays["test_images"], arrays["test_labels"])


def normalize(images):
    """uint8 images ``(n, 28, 28)`` to float32 ``(n, 784)``, standardised with MNIST's mean and std."""
    images = np.asarray(images)
    x = images.reshape(images.shape[0], -1).astype(np.float32) / 255.0
    return (x - MEAN) / STD


def minibatches(X, y, batch_size, *, seed, epoch=0, drop_last=True):
    """Yield ``(X_batch, y_batch)`` in an order fixed by ``(seed, epoch)``."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    n = len(X)
    if len(y) != n:
        raise ValueError(f"X has {n} rows but y has {len(y)}")
    order = np.random.default_rng([seed, epoch]).permutation(n)
    stop = n - n % batch_size if drop_last and n >= batch_size else n
    for start in range(0, stop, batch_size):
        idx = np.sort(order[start:start + batch_size])
        yield X[idx], y[idx]
