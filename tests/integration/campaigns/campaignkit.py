"""Fixtures of the campaign tests.

* ``crt`` (function): a :class:`~trustfleet.services.runtime.Runtime` over a migrated store,
  once on SQLite and once on PostgreSQL (``db_url``), with settings made in memory (no key is
  ever opened: campaigns use only the store).
* ``clock``: a settable, timezone-aware clock.

The real broker-and-ingest loop's fixture is in loopkit.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from trustfleet.services.runtime import Runtime
from trustfleet.settings import CampaignSettings, CaSettings, ServerSettings
from trustfleet.store import UnitOfWork, create_engine, migrate

MODEL = "sim-v1"
OTHER_MODEL = "other-v1"
RELEASE = "2.0.0"


@dataclass
class Clock:
    """A clock the test moves by hand."""

    now: datetime

    def advance(self, seconds: float) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime(2026, 11, 22, 12, 0, tzinfo=UTC))


def make_runtime(url: str, home: Path, *, max_notify: int = 500) -> Runtime:
    engine = create_engine(url)
    migrate(engine)
    ca = {n: CaSettings(key="pkcs11:token=unused", cert="unused.pem") for n in
          ("root", "manufacturing", "device")}  # fmt: skip
    settings = ServerSettings(
        home=home, ca=ca, campaigns=CampaignSettings(max_notify_per_tick=max_notify)
    )
    return Runtime(settings=settings, engine=engine, uow=UnitOfWork(engine))


@pytest.fixture
def crt(db_url: str, tmp_path: Path) -> Iterator[Runtime]:
    rt = make_runtime(db_url, tmp_path)
    try:
        yield rt
    finally:
        rt.close()


def seed(
    rt: Runtime,
    now: datetime,
    *,
    count: int,
    model: str = MODEL,
    prefix: str = "dev",
    firmware: dict[int, str] | None = None,
    release: bool = True,
) -> list[str]:
    """``count`` enrolled devices (some at a firmware version) and the release of ``model``."""
    ids = [f"{prefix}-{i:06d}" for i in range(count)]
    with rt.uow.begin() as tx:
        for i, device_id in enumerate(ids):
            tx.devices.add(id=device_id, model=model, state="enrolled", now=now)
            if firmware and i in firmware:
                tx.devices.set_firmware_version(device_id, firmware[i], now=now)
        if release and tx.releases.get(model=model, version=RELEASE) is None:
            tx.releases.add(
                model=model, version=RELEASE, min_version="1.0.0", image_sha256="a" * 64,
                image_length=1, manifest=b"{}", targets_version=1, now=now,
            )  # fmt: skip
    return ids


class Sent:
    """A ``send`` for :func:`tick` that records what it was asked to send."""

    def __init__(self, *, fail: bool = False) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.fail = fail

    def __call__(self, device_id: str, args: dict[str, Any]) -> None:
        if self.fail:
            from trustfleet.errors import Unavailable

            raise Unavailable("broker down (test)", code="mqtt.unavailable")
        self.calls.append((device_id, args))

    @property
    def devices(self) -> list[str]:
        return [d for d, _ in self.calls]
