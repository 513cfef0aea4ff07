import functools
import gzip
import hashlib
import http.server
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

from zotrain import data
from zotrain.data import DataError


def test_load_subset(mnist_dir):
    d = data.load_mnist(mnist_dir, download_missing=False)
    assert d.x_train.shape == (2000, 28, 28) and d.x_train.dtype == np.uint8
    assert d.y_train.shape == (2000,) and d.x_test.shape == (1000, 28, 28)
    assert set(np.unique(d.y_train)) == set(range(10))


def test_data_dir_resolution(monkeypatch, tmp_path, mnist_dir):
    assert data.resolve_data_dir(tmp_path) == tmp_path
    monkeypatch.setenv("ZOTRAIN_DATA", str(mnist_dir))
    assert data.resolve_data_dir() == mnist_dir
    assert len(data.load_mnist(download_missing=False).x_test) == 1000
    monkeypatch.delenv("ZOTRAIN_DATA")
    assert data.resolve_data_dir() == data.SHIPPED_DIR  # an empty cache: the shipped copy
    cache = tmp_path / "cache" / "zotrain" / "mnist"
    cache.mkdir(parents=True)
    for f in mnist_dir.glob("*.gz"):
        (cache / f.name).write_bytes(f.read_bytes())
    assert data.resolve_data_dir() == cache  # a complete cache comes first


def test_mnist_loads_with_no_network_from_the_shipped_copy(monkeypatch):
    """A fresh machine offline: no --data, no ZOTRAIN_DATA, an empty cache."""
    def offline(*a, **k):
        raise AssertionError("tried the network")

    monkeypatch.setattr(data.urllib.request, "urlopen", offline)
    d = data.load_mnist()
    assert d.x_train.shape == (60000, 28, 28) and d.x_test.shape == (10000, 28, 28)
    assert np.bincount(d.y_test).tolist()[:3] == [980, 1135, 1032]  # the original test set


def test_a_damaged_shipped_copy_is_named(monkeypatch, tmp_path):
    for f in data.SHIPPED_DIR.glob("*.gz"):
        (tmp_path / f.name).write_bytes(f.read_bytes())
    raw = bytearray((tmp_path / "t10k-labels-idx1-ubyte.gz").read_bytes())
    raw[-5] ^= 0xFF
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(bytes(raw))
    monkeypatch.setattr(data, "SHIPPED_DIR", tmp_path)
    with pytest.raises(data.DataError, match="t10k-labels-idx1-ubyte.gz does not match its "
                                             "checksum"):
        data.load_mnist()


def test_raw_files_read(tmp_path, mnist_dir):
    for f in mnist_dir.glob("*.gz"):
        (tmp_path / f.name[:-3]).write_bytes(gzip.decompress(f.read_bytes()))
    raw = data.load_mnist(tmp_path, download_missing=False)
    gz = data.load_mnist(mnist_dir, download_missing=False)
    assert np.array_equal(raw.x_train, gz.x_train) and np.array_equal(raw.y_test, gz.y_test)


def test_normalize_and_minibatches(mnist_dir):
    d = data.load_mnist(mnist_dir, download_missing=False)
    X = data.normalize(d.x_train)
    assert X.shape == (2000, 784) and X.dtype == np.float32
    assert abs(X.mean()) < 0.1 and abs(X.std() - 1) < 0.1
    batches = list(data.minibatches(X, d.y_train, 300, seed=1, epoch=0))
    assert len(batches) == 6 and all(len(b[0]) == 300 for b in batches)
    again = list(data.minibatches(X, d.y_train, 300, seed=1, epoch=0))
    assert all(np.array_equal(a[0], b[0]) for a, b in zip(batches, again))
    other = list(data.minibatches(X, d.y_train, 300, seed=1, epoch=1))
    assert not np.array_equal(batches[0][1], other[0][1])
    full = list(data.minibatches(X, d.y_train, 300, seed=1, drop_last=False))
    assert sum(len(b[1]) for b in full) == 2000
    assert sorted(np.concatenate([b[1] for b in full])) == sorted(d.y_train)
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        next(data.minibatches(X, d.y_train, 0, seed=1))


def _copy(src, dst):
    dst.mkdir(exist_ok=True)
    for f in src.glob("*.gz"):
        shutil.copy(f, dst / f.name)
    return dst


def test_truncated_idx(tmp_path, mnist_dir):
    d = _copy(mnist_dir, tmp_path / "d")
    raw = gzip.decompress((d / "t10k-labels-idx1-ubyte.gz").read_bytes())
    (d / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(raw[:-10]))
    with pytest.raises(DataError, match="t10k-labels.*truncated or corrupted"):
        data.load_mnist(d, download_missing=False)
    (d / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(raw[:6]))
    with pytest.raises(DataError, match="truncated IDX header"):
        data.load_mnist(d, download_missing=False)
    (d / "t10k-labels-idx1-ubyte.gz").write_bytes((d / "t10k-labels-idx1-ubyte.gz").read_bytes()[:15])
    with pytest.raises(DataError, match="cannot be read"):
        data.load_mnist(d, download_missing=False)


def test_wrong_magic(tmp_path, mnist_dir):
    d = _copy(mnist_dir, tmp_path / "d")
    raw = bytearray(gzip.decompress((d / "train-images-idx3-ubyte.gz").read_bytes()))
    raw[3] = 0x09
    (d / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(bytes(raw)))
    with pytest.raises(DataError, match="wrong magic number 0x00000809"):
        data.load_mnist(d, download_missing=False)


def test_mismatched_counts(tmp_path, mnist_dir):
    d = _copy(mnist_dir, tmp_path / "d")
    shutil.copy(d / "t10k-labels-idx1-ubyte.gz", d / "train-labels-idx1-ubyte.gz")
    with pytest.raises(DataError, match="train split .* 2000 images but 1000 labels"):
        data.load_mnist(d, download_missing=False)


def test_missing_files_no_network(tmp_path):
    # a mirror that refuses at once stands in for having no network
    with pytest.raises(DataError) as e:
        data.load_mnist(tmp_path / "empty", mirrors=["http://127.0.0.1:9/"])
    msg = str(e.value)
    assert "MNIST files missing" in msg and "--data DIR" in msg and "ZOTRAIN_DATA" in msg
    assert "Download failed" in msg
    with pytest.raises(DataError, match="MNIST files missing .* Download them"):
        data.load_mnist(tmp_path / "empty", download_missing=False)


def test_data_dir_is_a_file(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(DataError, match="is not a directory"):
        data.load_mnist(tmp_path / "f", download_missing=False)


@pytest.fixture
def mirror(mnist_dir):
    """A loopback HTTP server that serves the test subset."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(mnist_dir))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


def test_download_checks_sha256(tmp_path, mnist_dir, mirror, monkeypatch):
    sums = {f.name: {hashlib.sha256(f.read_bytes()).hexdigest()} for f in mnist_dir.glob("*.gz")}
    monkeypatch.setattr(data, "SHA256", sums)
    d = data.load_mnist(tmp_path / "dl", mirrors=["http://127.0.0.1:9/", mirror])
    assert d.x_train.shape == (2000, 28, 28)
    assert sorted(p.name for p in (tmp_path / "dl").iterdir()) == sorted(sums)  # no partial files left
    # a mirror whose file does not match the checksum is refused
    monkeypatch.setattr(data, "SHA256", {name: {"0" * 64} for name in sums})
    with pytest.raises(DataError, match="matches no known checksum"):
        data.load_mnist(tmp_path / "dl2", mirrors=[mirror])
    assert not any((tmp_path / "dl2").iterdir())


def test_a_file_matching_any_known_checksum_is_accepted(tmp_path, mnist_dir, mirror, monkeypatch):
    """A file may have several accepted checksums (the original and a rebuild)."""
    sums = {f.name: {"0" * 64, hashlib.sha256(f.read_bytes()).hexdigest(), "f" * 64}
            for f in mnist_dir.glob("*.gz")}
    monkeypatch.setattr(data, "SHA256", sums)
    assert data.load_mnist(tmp_path / "dl", mirrors=[mirror]).x_test.shape == (1000, 28, 28)


SHARED_MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"


@pytest.mark.parametrize("directory", [SHARED_MNIST, data.SHIPPED_DIR], ids=["shared", "shipped"])
def test_the_shared_and_shipped_mnist_files_have_known_checksums(directory):
    if not directory.is_dir():
        pytest.skip(f"no {directory}")
    for name, known in data.SHA256.items():
        digest = hashlib.sha256((directory / name).read_bytes()).hexdigest()
        assert digest in known, name
