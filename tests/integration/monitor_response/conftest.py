"""One real server home (SoftHSM2 CAs, SQLite) shared by the module, re-configured per test."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from support.runtimes import home_runtime
from trustfleet.services.runtime import Runtime
from trustfleet.settings.monitoring import MonitoringSettings

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def home_rt(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runtime]:
    yield from home_runtime(tmp_path_factory, "monitor", organization="Monitor Test", now=T0)


def configured(rt: Runtime, *, playbook: str | None = None, **monitoring: Any) -> Runtime:
    """The same home and store with other ``[monitoring]`` settings (and playbook text)."""
    values = dict(monitoring)
    if playbook is not None:
        name = f"playbook-{abs(hash(playbook)) % 10**8}.toml"
        rt.settings.path(name).write_text(playbook)
        values["playbooks"] = name
    settings = rt.settings.model_copy(
        update={"monitoring": MonitoringSettings.model_validate(values)}
    )
    return dataclasses.replace(rt, settings=settings)
