"""services.metrics.collect: the fleet's numbers from SQL aggregates, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import cast

import pytest

from trustfleet.services.metrics import collect
from trustfleet.services.runtime import Runtime
from trustfleet.store import NewCampaignDevice, UnitOfWork, create_engine, migrate

pytestmark = pytest.mark.integration

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
ONLINE_WINDOW_S = 120.0


@pytest.fixture
def rt(db_url: str) -> Iterator[Runtime]:
    engine = create_engine(db_url)
    migrate(engine)
    uow = UnitOfWork(engine)
    settings = SimpleNamespace(api=SimpleNamespace(online_window_s=ONLINE_WINDOW_S))
    try:
        yield cast(Runtime, SimpleNamespace(uow=uow, settings=settings))
    finally:
        engine.dispose()


def _fleet(rt: Runtime) -> None:
    with rt.uow.begin() as tx:
        for i, state in enumerate(("enrolled", "enrolled", "enrolled", "manufactured", "revoked")):
            tx.devices.add(id=f"dev-{i:05d}", model="m", state=state, now=NOW - timedelta(days=9))
        tx.devices.mark_seen({"dev-00000": NOW - timedelta(seconds=10)})
        tx.devices.mark_seen({"dev-00001": NOW - timedelta(hours=1)})
        tx.attestation.set_quarantine("dev-00002", at=NOW, reason="test", by="system", release=None)
        for i, (ok, hours) in enumerate(((True, 1), (False, 2), (True, 30))):
            tx.attestation.add_result(
                device_id="dev-00000", challenge_id=f"c{i}", ok=ok, findings=[],
                verified_at=NOW - timedelta(hours=hours), release=None, clock=None,
            )  # fmt: skip
        for kind in ("device.enrolled", "device.enrolled", "device.revoked", "ingest.rejected"):
            tx.events.append(type=kind, actor="system", subject="device:x", details={}, now=NOW)
        for cid, state in (("c-run", "running"), ("c-done", "completed")):
            tx.campaigns.add(
                id=cid, model="m", version="1.0.0", waves=(100.0,), max_failure_rate=0.5,
                device_timeout_s=60, state=state, reason=None, now=NOW,
            )  # fmt: skip
            tx.campaigns.add_devices(
                cid, [NewCampaignDevice(device_id="dev-00000", wave=1)], now=NOW
            )


def test_collect_counts_the_fleet(rt: Runtime) -> None:
    _fleet(rt)
    found = collect(rt, now=NOW)
    assert found.devices_by_state == {
        "manufactured": 1, "enrolled": 3, "revoked": 1, "decommissioned": 0
    }  # fmt: skip
    assert found.online == 1 and found.quarantined == 1
    assert found.attestations == {"ok": 1, "failed": 1}  # the 30 h old verdict is out
    assert found.events["enrollments"] == 2 and found.events["revocations"] == 1
    assert found.events["ingest_rejections"] == 1 and found.events["reenrollments"] == 0
    assert found.campaign_devices_by_state["pending"] == 1  # the completed campaign's is not
    assert found.events_total == 4 and found.audit_log_size == 0


def test_collect_on_an_empty_store(rt: Runtime) -> None:
    found = collect(rt, now=NOW)
    assert set(found.devices_by_state.values()) == {0} and found.online == 0
    assert found.attestations == {"ok": 0, "failed": 0} and found.events_total == 0
