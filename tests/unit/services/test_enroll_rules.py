"""The pure enrollment rules (issue 9 §4): who may get a new LDevID, as a table and invariants."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trustfleet.errors import PermissionDenied
from trustfleet.services._enroll_rules import ReopenGrant, check_enrollment, current_ldevid
from trustfleet.store.records import CertificateRecord, DeviceRecord

NOW = datetime.now(UTC)
DEVICE = "dev-rules-0001"


def _cert(
    id_: int, kind: str, *, status: str = "valid", reason: str | None = None, expired: bool = False
) -> CertificateRecord:
    start = NOW - timedelta(days=40 if expired else 1)
    return CertificateRecord(
        id=id_, issuer="device" if kind == "ldevid" else "manufacturing", serial=format(id_, "x"),
        kind=kind, device_id=DEVICE, subject=f"CN={DEVICE}", not_before=start,  # type: ignore[arg-type]
        not_after=start + timedelta(days=30), sha256=f"{id_:064x}", der=b"\x30",
        status=status, revoked_at=NOW if status == "revoked" else None,  # type: ignore[arg-type]
        revocation_reason=reason, created_at=start,
    )  # fmt: skip


def _device(state: str) -> DeviceRecord:
    return DeviceRecord(
        id=DEVICE, model="m", state=state, created_at=NOW, updated_at=NOW,  # type: ignore[arg-type]
        last_seen_at=None, firmware_version=None,
    )  # fmt: skip


IDEVID = _cert(1, "idevid")
OLD = _cert(2, "ldevid", status="revoked", reason="superseded")
CURRENT = _cert(3, "ldevid")
CERTS = (IDEVID, OLD, CURRENT)
REOPEN = ReopenGrant(event_id=7, expires_at=NOW + timedelta(hours=1))

# (mode, presented, device state, the device's certificates, re-open) -> refusal code or None
CASES = {
    "first-enrollment": ("enroll", IDEVID, "manufactured", (IDEVID,), None, None),
    "idevid-again-enrolled": ("enroll", IDEVID, "enrolled", CERTS, None,
                              "est.auth.already_enrolled"),
    "idevid-again-reopened": ("enroll", IDEVID, "enrolled", CERTS, REOPEN, None),
    "renew-current": ("reenroll", CURRENT, "enrolled", CERTS, None, None),
    "renew-superseded": ("reenroll", OLD, "enrolled", CERTS, None, "est.auth.superseded"),
    "renew-superseded-even-reopened": ("reenroll", OLD, "enrolled", CERTS, REOPEN,
                                       "est.auth.superseded"),
    "renew-older-valid": ("reenroll", _cert(2, "ldevid"), "enrolled",
                          (IDEVID, _cert(2, "ldevid"), CURRENT), None, "est.auth.not_current"),
    "renew-revoked": ("reenroll", _cert(3, "ldevid", status="revoked", reason="keyCompromise"),
                      "revoked", CERTS, None, "est.auth.revoked"),
    "renew-expired": ("reenroll", _cert(3, "ldevid", expired=True), "enrolled",
                      (IDEVID, _cert(3, "ldevid", expired=True)), None, "est.auth.expired"),
    "idevid-on-reenroll": ("reenroll", IDEVID, "enrolled", CERTS, None, "est.auth.unknown"),
    "ldevid-on-enroll": ("enroll", CURRENT, "enrolled", CERTS, REOPEN, "est.auth.unknown"),
    "decommissioned-reopened": ("enroll", IDEVID, "decommissioned", CERTS, REOPEN,
                                "est.auth.state"),
    "unknown-certificate": ("enroll", None, "enrolled", (), None, "est.auth.unknown"),
}  # fmt: skip


@pytest.mark.parametrize("name", list(CASES), ids=list(CASES))
def test_enrollment_rules(name: str) -> None:
    mode, presented, state, certs, reopen, code = CASES[name]
    device = _device(state) if presented is not None else None
    kwargs = {"mode": mode, "presented": presented, "device": device, "certificates": certs}
    if code is None:
        assert check_enrollment(**kwargs, reopen=reopen, now=NOW) == device  # type: ignore[arg-type]
        return
    with pytest.raises(PermissionDenied) as info:
        check_enrollment(**kwargs, reopen=reopen, now=NOW)  # type: ignore[arg-type]
    assert info.value.code == code


@given(
    statuses=st.lists(st.sampled_from(["valid", "revoked"]), min_size=1, max_size=8),
    pick=st.integers(min_value=0, max_value=7),
)
def test_only_the_newest_valid_ldevid_renews(statuses: list[str], pick: int) -> None:
    ldevids = [
        _cert(10 + i, "ldevid", status=s, reason="superseded" if s == "revoked" else None)
        for i, s in enumerate(statuses)
    ]
    certs = (IDEVID, *ldevids)
    presented = certs[1 + pick % len(statuses)]
    try:
        check_enrollment(mode="reenroll", presented=presented, device=_device("enrolled"),
                         certificates=certs, reopen=None, now=NOW)  # fmt: skip
        admitted = True
    except PermissionDenied:
        admitted = False
    assert admitted == (presented == current_ldevid(certs))


def _renew_with_window(not_before: datetime, not_after: datetime) -> DeviceRecord:
    """Renew with the current LDevID whose validity window is [not_before, not_after]."""
    presented = dataclasses.replace(CURRENT, not_before=not_before, not_after=not_after)
    return check_enrollment(
        mode="reenroll", presented=presented, device=_device("enrolled"),
        certificates=(IDEVID, presented), reopen=None, now=NOW,
    )  # fmt: skip


TICK = timedelta(microseconds=1)


def test_certificate_valid_from_exactly_now_may_enroll() -> None:
    assert _renew_with_window(NOW, NOW + timedelta(days=30)).state == "enrolled"


def test_certificate_valid_until_exactly_now_may_enroll() -> None:
    assert _renew_with_window(NOW - timedelta(days=30), NOW).state == "enrolled"


@pytest.mark.parametrize(
    ("not_before", "not_after"),
    [(NOW + TICK, NOW + timedelta(days=30)), (NOW - timedelta(days=30), NOW - TICK)],
    ids=["not-yet-valid-by-one-tick", "expired-by-one-tick"],
)
def test_certificate_outside_its_window_by_one_tick_is_expired(
    not_before: datetime, not_after: datetime
) -> None:
    with pytest.raises(PermissionDenied) as info:
        _renew_with_window(not_before, not_after)
    assert info.value.code == "est.auth.expired"


def test_reopen_grant_is_immutable() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        REOPEN.expires_at = NOW + timedelta(days=365)  # type: ignore[misc]
    assert REOPEN.expires_at == NOW + timedelta(hours=1)
