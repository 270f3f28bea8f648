"""One running server per test module: EST tests use unique device ids and do not interfere."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from support.server import RunningServer, running_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A real ``trustfleet server run`` on a fresh SQLite home, shared by the module."""
    with running_server(tmp_path_factory.mktemp("est-server")) as srv:
        yield srv


@pytest.fixture
def work(tmp_path: Path) -> Path:
    """A scratch directory for keys, CSRs and responses (0700)."""
    tmp_path.chmod(0o700)
    return tmp_path
