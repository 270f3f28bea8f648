"""A running server shared by the CLI end-to-end module; the device distribution's build and
venv (issue 17), built once per session for the tests that ask for them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from support.devicedist import device_dists, device_venv  # noqa: F401  # session fixtures
from support.server import RunningServer, running_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A real ``trustfleet server run`` on a fresh SQLite home, shared by the module."""
    with running_server(tmp_path_factory.mktemp("e2e-server")) as srv:
        yield srv
