"""Shared fixtures."""

from pathlib import Path

import pytest
from synthetic import make_dataset


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    return make_dataset(tmp_path / "data")
