from pathlib import Path

import numpy as np
import pytest

DATA = Path(__file__).parent / "data" / "mnist"


@pytest.fixture
def mnist_dir():
    return DATA


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


@pytest.fixture(autouse=True)
def _no_user_data(monkeypatch, tmp_path):
    """Tests never read the user's data directory or cache."""
    monkeypatch.delenv("ZOTRAIN_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
