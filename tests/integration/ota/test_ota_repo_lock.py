"""Issue 9 §6, finding 3: a held repository lock never hangs the timestamp refresh.

The lock is held by a real ``flock`` process. ``server run``'s refresh thread logs a clear
``ota.repo.locked`` warning after ``[ota] lock_timeout_s``, retries every ``timestamp_check_s``
and refreshes the timestamp once the lock is free.
"""

from __future__ import annotations

import json
import logging
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from support.locks import hold_lock
from support.server import init_home
from support.waiting import eventually
from trustfleet.errors import Unavailable
from trustfleet.server._runloop import _refresh_timestamp_forever
from trustfleet.services.ota import refresh_timestamp_if_due
from trustfleet.services.runtime import Runtime
from trustfleet.settings import load_server_settings
from trustfleet.sim.process import free_port

WAIT_S = 60.0
"""Bound of every wait below (a liveness guard, not a timing assertion)."""


def _timestamp_version(home: Path) -> int:
    doc = json.loads((home / "ota" / "repo" / "metadata" / "timestamp.json").read_bytes())
    version: int = doc["signed"]["version"]
    return version


@pytest.fixture
def runtime(tmp_path: Path) -> Runtime:
    home = tmp_path / "home"
    init_home(home, port=free_port())
    config = home / "trustfleet.toml"
    text = config.read_text(encoding="utf-8")
    text = text.replace("lock_timeout_s = 30.0", "lock_timeout_s = 0.2")
    text = text.replace("timestamp_check_s = 60.0", "timestamp_check_s = 0.1")
    config.write_text(text, encoding="utf-8")
    rt = Runtime.open(load_server_settings(home))
    # A timestamp signed 23 h ago (real time) expires in 1 h: inside the 6 h refresh margin.
    refresh_timestamp_if_due(rt, now=datetime.now(UTC) - timedelta(hours=23), force=True)
    return rt


def test_lock_wait_bounded_service(runtime: Runtime) -> None:
    """The use case raises Unavailable (ota.repo.locked) instead of waiting forever."""
    home = runtime.settings.home
    holder = hold_lock(home / "ota" / "repo" / ".lock")
    outcome: list[BaseException | bool] = []

    def attempt() -> None:
        try:
            outcome.append(refresh_timestamp_if_due(runtime, now=datetime.now(UTC)))
        except Unavailable as exc:
            outcome.append(exc)

    worker = threading.Thread(target=attempt, daemon=True)
    try:
        worker.start()
        worker.join(WAIT_S)
    finally:
        holder.stop()
        runtime.close()
    assert not worker.is_alive(), "the refresh waited for the lock without bound"
    (error,) = outcome
    assert isinstance(error, Unavailable)
    assert error.code == "ota.repo.locked"


def test_refresh_thread_retries_and_logs(
    runtime: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    """server run's refresh thread logs each locked attempt, retries, then refreshes."""
    home = runtime.settings.home
    before = _timestamp_version(home)
    holder = hold_lock(home / "ota" / "repo" / ".lock")
    stopping = threading.Event()
    thread = threading.Thread(
        target=_refresh_timestamp_forever, args=(runtime, stopping), daemon=True
    )
    caplog.set_level(logging.WARNING, logger="trustfleet.server._runloop")
    try:
        thread.start()
        assert eventually(
            lambda: sum("stayed locked" in r.getMessage() for r in caplog.records) >= 2,
            timeout_s=WAIT_S,
            poll_s=0.05,
        ), "no retried, logged refusal while locked"
        assert _timestamp_version(home) == before
        holder.stop()
        assert eventually(
            lambda: _timestamp_version(home) != before, timeout_s=WAIT_S, poll_s=0.05
        ), "the timestamp was not refreshed once free"
    finally:
        stopping.set()
        thread.join(WAIT_S)
        holder.stop()
        runtime.close()
    assert not thread.is_alive()
