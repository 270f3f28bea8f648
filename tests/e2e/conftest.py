"""A running server shared by the CLI end-to-end module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from support.server import RunningServer, running_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A real ``trustfleet server run`` on a fresh SQLite home, shared by the module."""
    with running_server(tmp_path_factory.mktemp("e2e-server")) as srv:
        yield srv
