"""The firmware driver reads and records object 5 of a device without a job once after it
registers (Wakaama's stub firmware object: State read and recorded, no campaign needed)."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Sequence
from datetime import UTC, datetime
from typing import Any

import pytest

from support import aio
from trustfleet.errors import Unavailable
from trustfleet.lwm2m import content
from trustfleet.lwm2m._firmware_driver import FirmwareDriver
from trustfleet.lwm2m.ports import Registration

NOW = datetime(2026, 1, 1, tzinfo=UTC)
REG = Registration(
    device_id="dev-1", endpoint="dev-1", location="rd/0000000000000001", lifetime_s=60,
    binding="U", lwm2m_version="1.1", objects=("/3/0", "/5/0"), address="127.0.0.1:1",
    mode="psk", registered_at=NOW, updated_at=NOW,
)  # fmt: skip


class Fakes:
    def __init__(self, values: dict[str, object], *, job: Any = None) -> None:
        self.values = values
        self.job = job
        self.reads: list[str] = []
        self.recorded: list[tuple[str, str | None, int, int]] = []

    async def read(self, device_id: str, path: str) -> tuple[content.Value, ...]:
        self.reads.append(path)
        if path not in self.values:
            raise Unavailable("no answer", code="lwm2m.coap.timeout")
        return (content.Value(path=path, value=self.values[path]),)  # type: ignore[arg-type]

    async def write(self, device_id: str, path: str, values: Sequence[content.Value]) -> None:
        raise AssertionError("no job: nothing written")

    async def observe(self, device_id: str, path: str) -> tuple[content.Value, ...]:
        raise AssertionError("no job: nothing observed")

    async def execute(self, device_id: str, path: str, *, arguments: bytes = b"") -> None:
        raise AssertionError("no job: nothing executed")

    def firmware_job(self, device_id: str, *, now: datetime) -> Any:
        return self.job

    def record_firmware_state(
        self, device_id: str, *, version: str | None, state: int, result: int, now: datetime
    ) -> None:
        self.recorded.append((device_id, version, state, result))


def _run(fakes: Fakes, *, registered: bool) -> None:
    async def scenario() -> None:
        tasks: list[asyncio.Task[None]] = []

        def spawn(coro: Coroutine[object, object, None]) -> None:
            tasks.append(asyncio.get_running_loop().create_task(coro))

        driver = FirmwareDriver(fakes, fakes, spawn=spawn, now=lambda: NOW)  # type: ignore[arg-type]
        if registered:
            driver.registered("dev-1")
        await driver.check([REG])
        await driver.check([REG])  # once per registration
        await asyncio.gather(*tasks)

    aio.run(scenario())


def test_state_read_and_recorded_once_after_registration() -> None:
    fakes = Fakes({"/5/0/3": 1, "/5/0/5": 0})
    _run(fakes, registered=True)
    assert fakes.recorded == [("dev-1", None, 1, 0)]
    assert fakes.reads == ["/5/0/3", "/5/0/5"]


@pytest.mark.parametrize(
    ("values", "registered"),
    [
        ({"/5/0/3": 1, "/5/0/5": 0}, False),
        ({"/5/0/3": 9, "/5/0/5": 0}, True),
        ({"/5/0/3": 1, "/5/0/5": 77}, True),
        ({"/5/0/3": "x", "/5/0/5": 0}, True),
        ({"/5/0/5": 0}, True),
    ],
    ids=["not-registered", "state-out-of-range", "result-out-of-range", "state-not-int",
         "state-unanswered"],
)  # fmt: skip
def test_nothing_recorded(values: dict[str, object], registered: bool) -> None:
    fakes = Fakes(values)
    _run(fakes, registered=registered)
    assert fakes.recorded == []
