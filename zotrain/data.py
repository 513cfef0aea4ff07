"""Data sets: ``Dataset`` (any arrays), MNIST and Fashion-MNIST (IDX files), ``.npz``
files, normalisation and seeded minibatches.

``load_dataset(name, data_dir)`` resolves the CLI's names: ``mnist`` (downloaded
when missing), ``fashion-mnist`` (Debian's ``dataset-fashion-mnist`` package
installs it in ``/usr/share/datasets/fashion-mnist``), or an ``.npz`` file with
arrays ``x_train``, ``y_train``, ``x_test``, ``y_test``.

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
import zipfile
from pathlib import Path
from typing import NamedTuple, Optional

import numpy as np

FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}

#: accepted sha256 of each ``.gz`` file.  The training images also accept the
#: rebuilt copy shipped with the package (one grey level apart, ``_data/mnist/README.md``).
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


#: the copy of MNIST shipped with the package (``zotrain/_data/mnist``)
SHIPPED_DIR = Path(__file__).resolve().parent / "_data" / "mnist"


def _complete(directory):
    return all(_find(Path(directory), stem) is not None for stem in FILES.values())


def resolve_data_dir(data_dir=None):
    """The data directory: argument, then ``ZOTRAIN_DATA``, then the user cache if it holds
    the four files, then the copy shipped with the package (then the cache, to download
    into)."""
    if data_dir is not None:
        return Path(data_dir)
    env = os.environ.get("ZOTRAIN_DATA")
    if env:
        return Path(env)
    cache = default_data_dir()
    return SHIPPED_DIR if not _complete(cache) and _complete(SHIPPED_DIR) else cache


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
    if directory == SHIPPED_DIR:
        _check_shipped()
    return _load_idx_dir(directory, _how_to_get,
                         (lambda name: download(name, directory, mirrors))
                         if download_missing else None)


def _check_shipped():
    """The shipped files' checksums (as a download's): a damaged installation is named."""
    for stem in FILES.values():
        path = SHIPPED_DIR / (stem + ".gz")
        if _sha256(path) not in SHA256[path.name]:
            raise DataError(f"{path} does not match its checksum: the installation is "
                            "damaged; reinstall zotrain or give --data DIR")


def _load_idx_dir(directory, how_to_get, fetch):
    """The four IDX files of an MNIST-format directory; ``fetch(name)`` gets a missing
    one (None: ``how_to_get(directory, missing)`` is the error)."""
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise DataError(f"data directory {directory} is not a directory")
    paths, missing = {}, []
    for key, stem in FILES.items():
        paths[key] = _find(directory, stem)
        if paths[key] is None:
            missing.append(stem + ".gz")
    if missing and fetch is None:
        raise DataError(how_to_get(directory, missing))
    for name in missing:
        try:
            fetch(name)
        except DataError as e:
            raise DataError(how_to_get(directory, missing) + f"\nDownload failed: {e}") from None
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


#: where Debian's dataset-fashion-mnist package puts the files
FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")


def _fashion_how_to_get(directory, missing):
    return (f"Fashion-MNIST files missing in {directory}: {', '.join(missing)}. On Debian or "
            "Ubuntu: `apt-get install dataset-fashion-mnist` (installs them in "
            f"{FASHION_DIR}); or point --data DIR at a directory with the four IDX files.")


def load_fashion_mnist(data_dir=None):
    """Fashion-MNIST (same IDX format as MNIST) from ``data_dir`` or Debian's package."""
    return _load_idx_dir(Path(data_dir) if data_dir else FASHION_DIR, _fashion_how_to_get, None)


class Dataset(NamedTuple):
    """Training and test arrays: ``x`` ``(n, features)`` float32, ``y`` ``(n,)`` integer
    class labels; ``classes`` the number of classes when it was given explicitly."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: Optional[int] = None

    @classmethod
    def from_arrays(cls, x_train, y_train, x_test, y_test, *, name="data", n_classes=None):
        """Check and convert: 2-D finite float32 inputs of one width, int64 labels >= 0.

        Without ``n_classes`` the classes are 0..max label, and each must occur among the
        training labels (a stray label 17 among 0-3 would otherwise make an 18-class
        head); with it, labels must lie in [0, n_classes)."""
        xs, ys = [], []
        for split, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
            x = np.asarray(x)
            if x.ndim != 2 or len(x) < 1 or x.shape[1] < 1:
                raise DataError(f"{name}: x_{split} must be 2-D (examples, features) with at "
                                f"least one example and one feature, got shape {x.shape}")
            if not np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.complexfloating) \
                    or not np.all(np.isfinite(x)):
                raise DataError(f"{name}: x_{split} must hold finite numbers (real, no NaN or "
                                f"inf), got {x.dtype}")
            if np.issubdtype(x.dtype, np.floating) and np.abs(x).max() > np.finfo(np.float32).max:
                raise DataError(f"{name}: x_{split} holds values beyond float32's range")
            y = np.asarray(y)
            if y.shape != (len(x),) or not np.issubdtype(y.dtype, np.integer) or y.min() < 0:
                raise DataError(f"{name}: y_{split} must be {len(x)} integer class labels >= 0, "
                                f"got {y.dtype} {y.shape}")
            xs.append(np.ascontiguousarray(x, np.float32))
            ys.append(y.astype(np.int64))
        if xs[0].shape[1] != xs[1].shape[1]:
            raise DataError(f"{name}: x_train has {xs[0].shape[1]} features, x_test "
                            f"{xs[1].shape[1]}")
        _check_classes(name, ys[0], ys[1], n_classes)
        return cls(xs[0], ys[0], xs[1], ys[1], None if n_classes is None else int(n_classes))

    @property
    def n_features(self):
        return self.x_train.shape[1]

    @property
    def n_classes(self):
        if self.classes is not None:
            return self.classes
        return int(max(self.y_train.max(), self.y_test.max())) + 1

    def digest(self):
        """A short fingerprint of the arrays: a resumed run checks it trains on the same data
        wherever the files now are."""
        h = hashlib.sha256()
        for a in (self.x_train, self.y_train, self.x_test, self.y_test):
            h.update(str(a.shape).encode())
            h.update(np.ascontiguousarray(a).tobytes())
        return h.hexdigest()[:16]

    def check(self, model):
        """Raise unless ``model`` maps this data's width to at least its classes."""
        if model.in_features != self.n_features:
            raise DataError(f"the model takes {model.in_features} features, the data have "
                            f"{self.n_features}")
        if model.out_features < self.n_classes:
            raise DataError(f"the model has {model.out_features} outputs, the data "
                            f"{self.n_classes} classes")


def _check_classes(name, y_train, y_test, n_classes):
    if n_classes is not None:
        if isinstance(n_classes, bool) or not isinstance(n_classes, (int, np.integer)) or \
                n_classes < 2:
            raise DataError(f"{name}: n_classes must be an integer >= 2, got {n_classes!r}")
        top = int(max(y_train.max(), y_test.max()))
        if top >= n_classes:
            raise DataError(f"{name}: label {top} is outside [0, {n_classes}) (n_classes="
                            f"{n_classes})")
        return
    top = int(max(y_train.max(), y_test.max()))
    missing = sorted(set(range(top + 1)) - set(np.unique(y_train).tolist()))
    if missing:
        shown = ", ".join(map(str, missing[:10])) + (", ..." if len(missing) > 10 else "")
        raise DataError(f"{name}: labels run 0..{top} but no training example has class "
                        f"{shown} ({len(missing)} of {top + 1} classes missing); fix the "
                        "labels, or give the number of classes explicitly (n_classes=, or "
                        "an n_classes entry in the .npz)")


def load_npz(path):
    """A ``Dataset`` from an ``.npz`` file with ``x_train``, ``y_train``, ``x_test``, ``y_test``
    (inputs of any shape are flattened per example) and optionally ``n_classes``."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"no data file at {path}")
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic != b"PK\x03\x04":  # every .npz is a zip archive
        raise DataError(f"{path} is not an .npz archive (NumPy's np.savez writes one)")
    keys = ("x_train", "y_train", "x_test", "y_test")
    try:
        with np.load(path, allow_pickle=False) as z:
            files = z.files
            arrays = [z[k] for k in keys if k in files]
            n_classes = z["n_classes"] if "n_classes" in files else None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise DataError(f"{path} is not a readable .npz file ({e})") from None
    missing = [k for k in keys if k not in files]
    if missing:
        raise DataError(f"{path} lacks the arrays {', '.join(missing)} (has {', '.join(files)})")
    for i in (0, 2):
        arrays[i] = arrays[i].reshape(len(arrays[i]), -1) if arrays[i].ndim > 2 else arrays[i]
    if n_classes is not None:
        if n_classes.shape != () or not np.issubdtype(n_classes.dtype, np.integer):
            raise DataError(f"{path}: n_classes must be one integer, got {n_classes.dtype} "
                            f"{n_classes.shape}")
        n_classes = int(n_classes)
    return Dataset.from_arrays(*arrays, name=str(path), n_classes=n_classes)


def _idx_dataset(d):
    return Dataset(normalize(d.x_train), d.y_train.astype(np.int64), normalize(d.x_test),
                   d.y_test.astype(np.int64))


DATASETS = ("mnist", "fashion-mnist", "npz")


def load_dataset(name, source=None):
    """``mnist`` (``source``: data directory), ``fashion-mnist`` (directory, default
    Debian's) or ``npz`` (``source``: the file)."""
    if name == "mnist":
        if source is not None and not Path(source).is_dir():
            raise DataError(f"data directory {source} does not exist; create it (the MNIST "
                            "files are then downloaded into it) or omit --data to use "
                            "$ZOTRAIN_DATA or the cache")
        return _idx_dataset(load_mnist(source))
    if name == "fashion-mnist":
        return _idx_dataset(load_fashion_mnist(source))
    if name == "npz":
        if source is None:
            raise DataError("npz needs a file: zotrain train npz FILE")
        return load_npz(source)
    raise DataError(f"unknown data set {name!r}; known: {', '.join(DATASETS)}")


def input_scaling(dataset):
    """``(mean, std)`` with which a data set's inputs were standardised for training (MNIST's
    and Fashion-MNIST's pixels in [0, 1]: ``MEAN``, ``STD``; an npz file's: as given)."""
    return (MEAN, STD) if dataset in ("mnist", "fashion-mnist") else (0.0, 1.0)


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
