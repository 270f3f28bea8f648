"""Pure bootstrap steps and the object 5 firmware state machine."""

from __future__ import annotations

from dataclasses import replace

import pytest

from trustfleet.errors import InvalidInput
from trustfleet.lwm2m import firmware
from trustfleet.lwm2m.bootstrap import bootstrap_steps
from trustfleet.lwm2m.firmware import FirmwareProgress, Result, State
from trustfleet.lwm2m.ports import BootstrapPlan

PLAN = BootstrapPlan(
    device_id="dev-00000001",
    server_uri="coaps://127.0.0.1:5684",
    short_server_id=1,
    lifetime_s=300,
    binding="U",
    mode="psk",
    psk_identity="dev-00000001:dm",
    psk_key=b"\x01" * 16,
)


def test_steps_in_order() -> None:
    steps = bootstrap_steps(PLAN)
    assert [(s.method, s.path) for s in steps] == [
        ("delete", "/0"), ("delete", "/1"), ("write", "/0/1"), ("write", "/1/0"), ("finish", "/bs"),
    ]  # fmt: skip
    security = dict(steps[2].resources)
    assert security[0] == PLAN.server_uri and security[2] == 0 and security[10] == 1
    assert security[3] == b"dev-00000001:dm" and security[5] == PLAN.psk_key
    assert dict(steps[3].resources) == {0: 1, 1: 300, 6: False, 7: "U"}


def test_no_key_in_repr() -> None:
    text = repr(bootstrap_steps(PLAN))
    assert "\\x01" not in text and "dm" not in text


def test_cert_plan() -> None:
    plan = replace(PLAN, mode="cert", psk_identity=None, psk_key=None, server_certificate=b"DER")
    security = dict(bootstrap_steps(plan)[2].resources)
    assert security[2] == 2 and security[4] == b"DER" and 5 not in security


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"server_uri": "coap://x"}, "lwm2m.bootstrap.uri"),
        ({"short_server_id": 0}, "lwm2m.bootstrap.ssid"),
        ({"short_server_id": 65_535}, "lwm2m.bootstrap.ssid"),
        ({"psk_key": None}, "lwm2m.bootstrap.psk"),
        ({"psk_identity": ""}, "lwm2m.bootstrap.psk"),
        ({"mode": "cert"}, "lwm2m.bootstrap.cert"),
        ({"lifetime_s": 0}, "lwm2m.bootstrap.lifetime"),
    ],
    ids=["plain-coap", "ssid-0", "ssid-65535", "no-key", "no-identity", "cert-no-cert", "lt-0"],
)
def test_bad_plans(change: dict[str, object], code: str) -> None:
    with pytest.raises(InvalidInput) as info:
        bootstrap_steps(replace(PLAN, **change))  # type: ignore[arg-type]  # a table of fields
    assert info.value.code == code


def _after(*reports: tuple[str, int], executed: bool = False) -> FirmwareProgress:
    progress = FirmwareProgress(version="1.2.0", executed=executed)
    for path, value in reports:
        progress = firmware.apply(progress, path=path, value=value)
    return progress


@pytest.mark.parametrize(
    ("reports", "executed", "action", "campaign"),
    [
        ((), False, "wait", "notified"),
        (((firmware.STATE, 1),), False, "wait", "downloading"),
        (((firmware.STATE, 2),), False, "execute", "downloading"),
        (((firmware.STATE, 2),), True, "wait", "installing"),
        (((firmware.STATE, 3),), True, "wait", "installing"),
        (((firmware.STATE, 0), (firmware.UPDATE_RESULT, 1)), True, "succeeded", "committed"),
        (((firmware.UPDATE_RESULT, 1),), False, "wait", "notified"),
        (((firmware.UPDATE_RESULT, 5),), False, "failed", "refused"),
        (((firmware.UPDATE_RESULT, 4),), False, "failed", "failed"),
        (((firmware.UPDATE_RESULT, 8),), True, "failed", "failed"),
    ],
    ids=[
        "idle", "downloading", "downloaded", "executed", "updating", "success",
        "stale-success-before-execute", "integrity-failure", "connection-lost", "update-failed",
    ],
)  # fmt: skip
def test_firmware_machine(
    reports: tuple[tuple[str, int], ...], executed: bool, action: str, campaign: str
) -> None:
    progress = _after(*reports, executed=executed)
    assert firmware.next_action(progress) == action
    assert firmware.campaign_state(progress) == campaign


@pytest.mark.parametrize(
    ("path", "value"),
    [(firmware.STATE, 4), (firmware.STATE, -1), (firmware.UPDATE_RESULT, 10),
     (firmware.STATE, True), (firmware.STATE, "2"), ("/5/0/7", 1)],
    ids=["state-4", "state-negative", "result-10", "bool", "string", "other-resource"],
)  # fmt: skip
def test_firmware_values_refused(path: str, value: object) -> None:
    with pytest.raises(InvalidInput):
        firmware.apply(FirmwareProgress(version="1"), path=path, value=value)


def test_enums() -> None:
    assert State.DOWNLOADED == 2 and Result.INTEGRITY_FAILED == 5
