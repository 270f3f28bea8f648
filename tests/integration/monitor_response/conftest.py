"""One real server home (SoftHSM2 CAs, SQLite) shared by the module, re-configured per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from responsekit import T0

from support.runtimes import home_runtime
from trustfleet.services.runtime import Runtime


@pytest.fixture(scope="module")
def home_rt(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runtime]:
    yield from home_runtime(tmp_path_factory, "monitor", organization="Monitor Test", now=T0)
