"""Issue 9 section 8: devices that cannot take a release are left out (with the reason), not
counted as failures; a halted campaign is retried once the cause is fixed; ids by prefix."""

from __future__ import annotations

import pytest
from campaignkit import RELEASE, Clock, Sent, seed
from test_campaign_engine import _create, _events, _report, _states

from trustfleet.errors import Conflict, InvalidInput, NotFound
from trustfleet.ota.campaign_rules import Target, classify_target
from trustfleet.services.campaigns import campaign_status, pause, resume, retry, tick
from trustfleet.services.runtime import Runtime

pytestmark = pytest.mark.integration

NO_BOOT_CHAIN = {"reason": "this device has no A/B boot chain", "code": "ota.no_boot_chain"}

CLASSIFY_CASES = {
    "unknown-firmware-updates": (None, None, "update", None),
    "older-firmware-updates": ((1, 5, 0), None, "update", None),
    "same-version-is-up-to-date": ((2, 0, 0), None, "up_to_date", None),
    "newer-is-up-to-date": ((3, 0, 0), None, "up_to_date", None),
    "below-min-version-left-out":
        ((0, 9, 0), None, "exclude", "campaign.excluded.below_min_version"),
    "refused-no-boot-chain-left-out": (
        None, ("cmp-x", "no A/B boot chain", "ota.no_boot_chain"), "exclude",
        "campaign.excluded.no_boot_chain",
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", list(CLASSIFY_CASES.values()), ids=list(CLASSIFY_CASES))
def test_classify_target(case: tuple[object, ...]) -> None:
    firmware, refusal, action, code = case
    decision = classify_target(
        firmware=firmware,  # type: ignore[arg-type]  # table of typed values
        version=(2, 0, 0),
        min_version=(1, 0, 0),
        refusal=refusal,  # type: ignore[arg-type]  # table of typed values
    )
    assert isinstance(decision, Target)
    assert (decision.action, decision.code) == (action, code)
    assert (decision.reason is not None) == (action == "exclude")


def test_no_boot_chain_refusal_is_left_out_not_a_failure(crt: Runtime, clock: Clock) -> None:
    """Old code: every device refused, failure rate 100 %, the campaign halted."""
    ids = seed(crt, clock.now, count=4)
    campaign = _create(crt, clock, waves=(50, 100), max_failure_rate=0.05)
    sent = Sent()
    tick(crt, now=clock.now, send=sent)
    for device_id in sent.devices:
        _report(crt, clock, device_id, campaign.id, "refused", **NO_BOOT_CHAIN)
    tick(crt, now=clock.advance(1), send=sent)
    for device_id in sent.devices[2:]:
        _report(crt, clock, device_id, campaign.id, "refused", **NO_BOOT_CHAIN)
    tick(crt, now=clock.advance(1), send=sent)
    status = campaign_status(crt, campaign.id)
    assert status.campaign.state == "completed", status.campaign.reason
    assert status.failures == 0 and status.failure_rate is None
    left_out = {d.device_id: d for d in status.devices if d.wave == 0}
    assert set(left_out) == set(ids)
    assert all(d.code == "ota.no_boot_chain" and "boot chain" in (d.reason or "")
               for d in left_out.values())  # fmt: skip


def test_next_campaign_leaves_them_out_at_creation(crt: Runtime, clock: Clock) -> None:
    ids = seed(crt, clock.now, count=3)
    first = _create(crt, clock, waves=(100,))
    sent = Sent()
    tick(crt, now=clock.now, send=sent)
    _report(crt, clock, ids[0], first.id, "refused", **NO_BOOT_CHAIN)
    clock.advance(60)
    second = _create(crt, clock, waves=(100,))
    status = campaign_status(crt, second.id)
    rows = {d.device_id: d for d in status.devices}
    assert (rows[ids[0]].wave, rows[ids[0]].code) == (0, "campaign.excluded.no_boot_chain")
    assert first.id in (rows[ids[0]].reason or "")
    assert {rows[i].wave for i in ids[1:]} == {1}
    (created,) = [e for e in _events(crt, "campaign.created") if e.subject.endswith(second.id)]
    assert created.details["excluded"] == 1
    # Listed by the operator, the device is targeted again (the cause may have been fixed).
    third = _create(crt, clock, waves=(100,), devices=[ids[0]])
    assert _states(crt, third.id) == {ids[0]: "pending"}


def test_below_min_version_is_left_out(crt: Runtime, clock: Clock) -> None:
    ids = seed(crt, clock.now, count=2, firmware={0: "0.5.0"})
    campaign = _create(crt, clock, waves=(100,))
    rows = {d.device_id: d for d in campaign_status(crt, campaign.id).devices}
    assert (rows[ids[0]].wave, rows[ids[0]].code) == (0, "campaign.excluded.below_min_version")
    assert rows[ids[1]].wave == 1


def test_halted_campaign_is_retried_once_the_cause_is_fixed(crt: Runtime, clock: Clock) -> None:
    """Old code: a halted campaign could only be aborted ('resume' refused it)."""
    seed(crt, clock.now, count=4)
    campaign = _create(crt, clock, waves=(50, 100), max_failure_rate=0.1)
    sent = Sent()
    tick(crt, now=clock.now, send=sent)
    for device_id in sent.devices:
        _report(crt, clock, device_id, campaign.id, "failed", reason="disk full", code="ota.io")
    tick(crt, now=clock.advance(1), send=sent)
    assert campaign_status(crt, campaign.id).campaign.state == "halted"
    with pytest.raises(Conflict) as info:
        resume(crt, campaign.id, now=clock.now)
    assert "campaign retry" in (info.value.hint or "")
    retried = retry(crt, campaign.id[:10], now=clock.advance(1))
    assert (retried.state, retried.current_wave) == ("running", 1)
    assert "2 failed device(s) retried" in (retried.reason or "")
    again = Sent()
    tick(crt, now=clock.advance(1), send=again)
    assert sorted(again.devices) == sorted(sent.devices)  # the failed ones, notified again
    for device_id in again.devices:
        _report(crt, clock, device_id, campaign.id, "committed", version=RELEASE)
    tick(crt, now=clock.advance(1), send=again)
    for device_id in again.devices[2:]:
        _report(crt, clock, device_id, campaign.id, "committed", version=RELEASE)
    tick(crt, now=clock.advance(1), send=again)
    final = campaign_status(crt, campaign.id)
    assert final.campaign.state == "completed" and final.failures == 0
    assert "campaign.retried" in [e.type for e in _events(crt, "campaign.")]
    with pytest.raises(Conflict) as nothing:
        retry(crt, campaign.id, now=clock.now)
    assert nothing.value.code == "campaign.retry.none"


ID_CASES = {
    "full-id": (lambda cid: cid, None),
    "unique-prefix": (lambda cid: cid[:12], None),
    "too-short-prefix": (lambda cid: cid[:5], NotFound),
    "unknown-prefix": (lambda cid: "cmp-zzzzzzzz", NotFound),
}


@pytest.mark.parametrize("case", list(ID_CASES.values()), ids=list(ID_CASES))
def test_campaign_ids_by_unique_prefix(crt: Runtime, clock: Clock, case: tuple) -> None:  # type: ignore[type-arg]
    seed(crt, clock.now, count=2)
    campaign = _create(crt, clock, waves=(100,))
    typed, error = case
    if error is None:
        assert pause(crt, typed(campaign.id), now=clock.now).id == campaign.id
    else:
        with pytest.raises(error):
            pause(crt, typed(campaign.id), now=clock.now)


def test_ambiguous_prefix_is_refused(crt: Runtime, clock: Clock) -> None:
    with crt.uow.begin() as tx:
        for cid in ("cmp-abcdef01", "cmp-abcdef02"):
            tx.campaigns.add(
                id=cid, model="sim-v1", version=RELEASE, waves=(100.0,), max_failure_rate=0.1,
                device_timeout_s=60, state="completed", reason=None, now=clock.now,
            )  # fmt: skip
    with pytest.raises(InvalidInput) as info:
        campaign_status(crt, "cmp-abcdef")
    assert info.value.code == "campaign.ambiguous"
    assert campaign_status(crt, "cmp-abcdef02").campaign.id == "cmp-abcdef02"
