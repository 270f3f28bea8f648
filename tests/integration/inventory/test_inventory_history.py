"""fleet_summary and a device's history (certificates, telemetry, events, verdicts), stored."""

from __future__ import annotations

from datetime import timedelta

import pytest
from inventorykit import BY_ID, FLEET, NOW, Fleet

from trustfleet.errors import InvalidInput, NotFound
from trustfleet.services import inventory as inv
from trustfleet.store import NewTelemetry

A1, A2 = "dev-a0000001", "dev-a0000002"


@pytest.fixture
def busy(fleet: Fleet) -> Fleet:
    """The fleet with enrollments, other events and telemetry over the last day."""
    events = [
        ("device.reenrolled", A1, NOW - timedelta(hours=26), "ok"),  # before the 24 hours
        ("device.enrolled", A1, NOW - timedelta(hours=2), "ok"),  # 10:30
        ("device.enrolled", A2, NOW - timedelta(minutes=30), "ok"),  # 12:00
        ("device.revoked", A2, NOW - timedelta(minutes=20), "ok"),
        ("device_x.enrolled", A2, NOW - timedelta(minutes=15), "refused"),
        ("certificate.issued", A1, NOW - timedelta(minutes=10), "ok"),
    ]
    with fleet.uow.begin() as tx:
        for type_, dev, at, outcome in events:
            tx.events.append(
                type=type_, actor="system", subject=f"device:{dev}", details={}, now=at,
                outcome=outcome,
            )  # fmt: skip
        tx.telemetry.add_many([
            NewTelemetry(device_id=A1, received_at=NOW - timedelta(minutes=m), device_ts=None,
                         seq=i, metrics={"t": i}, boot="b")
            for i, m in enumerate((60, 59, 10, 60 * 30))
        ])  # fmt: skip
    return fleet


def test_summary_counts_the_fleet(busy: Fleet) -> None:
    s = inv.fleet_summary(busy.rt, now=NOW)
    assert s.devices == len(FLEET)
    assert s.by_state == {
        state: sum(d.state == state for d in FLEET)
        for state in ("manufactured", "enrolled", "revoked", "decommissioned")
    }
    assert s.by_firmware == (("2.0", 3), ("1.0", 2), ("1.1", 2), (None, 2))
    assert (s.attestation_ok, s.attestation_failed, s.attestation_none) == tuple(
        sum(d.attestation == a for d in FLEET) for a in ("ok", "failed", "none")
    )
    assert s.online == sum(d.online for d in FLEET)
    assert s.quarantined == sum(d.quarantined for d in FLEET)
    assert s.certs_expiring == 1  # dev-a0000002's; the revoked and the expired ones do not count
    assert [e.type for e in s.recent_events][:2] == ["certificate.issued", "device_x.enrolled"]
    assert len(s.recent_events) == 6


def test_summary_hours_are_the_last_24_ending_with_the_current_one(busy: Fleet) -> None:
    s = inv.fleet_summary(busy.rt, now=NOW)
    hours = [h.start for h in s.enrollments_per_hour]
    assert len(hours) == 24 and hours[-1] == NOW.replace(minute=0)
    assert [h.start for h in s.telemetry_per_hour] == hours
    enrolled = [h.count for h in s.enrollments_per_hour]
    assert enrolled[-1] == 1 and enrolled[-3] == 1 and sum(enrolled) == 2
    telemetry = [h.count for h in s.telemetry_per_hour]
    assert telemetry[-1] == 1 and telemetry[-2] == 2 and sum(telemetry) == 3


def test_device_history_is_newest_first_and_paged(busy: Fleet) -> None:
    certs = inv.device_certificates(busy.rt, "dev-b0000005", limit=1)
    assert certs.next_cursor == "1" and certs.items[0].status == "valid"
    rest = inv.device_certificates(busy.rt, "dev-b0000005", limit=1, cursor=certs.next_cursor)
    assert rest.next_cursor is None and rest.items[0].status == "revoked"
    rows = inv.device_telemetry(busy.rt, A1, limit=10).items
    assert [r.seq for r in rows] == [2, 1, 0, 3]
    window = inv.device_telemetry(
        busy.rt, A1, since=NOW - timedelta(minutes=60), until=NOW - timedelta(minutes=10), limit=10
    )
    assert [r.seq for r in window.items] == [1, 0]
    verdicts = inv.attestation_history(busy.rt, A2, limit=10).items
    assert [v.ok for v in verdicts] == [False, True]
    events = inv.device_events(busy.rt, A2, limit=2)
    assert [e.type for e in events.items] == ["device_x.enrolled", "device.revoked"]
    assert events.next_cursor == "2"


@pytest.mark.parametrize(
    "call",
    [
        lambda rt: inv.device_certificates(rt, "dev-nope0001", limit=1),
        lambda rt: inv.device_telemetry(rt, "dev-nope0001", limit=1),
        lambda rt: inv.device_events(rt, "dev-nope0001", limit=1),
        lambda rt: inv.attestation_history(rt, "dev-nope0001", limit=1),
        lambda rt: inv.list_enrollments(rt, device_id="dev-nope0001", limit=1),
    ],
)
def test_history_of_an_unknown_device_is_not_found(fleet: Fleet, call: object) -> None:
    with pytest.raises(NotFound):
        call(fleet.rt)  # type: ignore[operator]


def test_events_filter_by_prefix_actor_subject_outcome_and_time(busy: Fleet) -> None:
    def types(**kw: object) -> list[str]:
        return [e.type for e in inv.list_events(busy.rt, limit=50, **kw).items]  # type: ignore[arg-type]

    assert types(type_prefix="device.") == [
        "device.revoked", "device.enrolled", "device.enrolled", "device.reenrolled",
    ]  # fmt: skip
    assert types(type_prefix="device_") == ["device_x.enrolled"]  # "_" is no wildcard
    assert types(outcome="refused") == ["device_x.enrolled"]
    assert types(subject=f"device:{A1}", sort="id") == [
        "device.reenrolled", "device.enrolled", "certificate.issued",
    ]  # fmt: skip
    assert types(actor="nobody") == []
    assert types(since=NOW - timedelta(minutes=20), until=NOW - timedelta(minutes=10)) == [
        "device_x.enrolled", "device.revoked",
    ]  # fmt: skip
    with pytest.raises(InvalidInput):
        types(sort="time")
    with pytest.raises(InvalidInput):
        types(outcome="maybe")


def test_enrollments_are_the_enrolled_and_reenrolled_events(busy: Fleet) -> None:
    every = inv.list_enrollments(busy.rt, limit=50).items
    assert [(e.type, e.subject) for e in every] == [
        ("device.enrolled", f"device:{A2}"),
        ("device.enrolled", f"device:{A1}"),
        ("device.reenrolled", f"device:{A1}"),
    ]
    mine = inv.list_enrollments(busy.rt, device_id=A1, limit=1)
    assert mine.next_cursor == "1" and mine.items[0].type == "device.enrolled"
    assert BY_ID[A1].state == "enrolled"
