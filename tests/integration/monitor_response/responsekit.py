"""Helpers of the monitoring response tests: the shared time and re-configured runtimes."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

from trustfleet.services.runtime import Runtime
from trustfleet.settings.monitoring import MonitoringSettings

__all__ = ["T0", "configured"]

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


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
