"""The checks of a device's ``ota/status`` report (``ota/status_report.py``): every bound,
every field, every refusal."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from trustfleet.errors import InvalidInput
from trustfleet.ota.campaign_rules import REPORT_STATES
from trustfleet.ota.status_report import (
    MAX_REPORT_NUMBER,
    MAX_REPORT_TEXT_CHARS,
    OtaStatus,
    parse_ota_status,
)


def _refused(**fields: Any) -> None:
    body = {"state": "downloading", **fields}
    with pytest.raises(InvalidInput) as info:
        parse_ota_status(body)
    assert info.value.code == "ingest.field"


def test_the_bounds_are_text_256_and_number_bigint() -> None:
    assert MAX_REPORT_TEXT_CHARS == 256
    assert MAX_REPORT_NUMBER == 2**63 - 1


def test_every_field_is_returned_as_sent() -> None:
    status = parse_ota_status(
        {
            "state": "downloading",
            "campaign": "cmp-1",
            "version": "2.10.3",
            "from_version": "1.0.0",
            "bytes": 5,
            "total": 10,
            "delta": True,
            "reason": "disk full",
            "code": "ota.no_space",
        }
    )
    assert status == OtaStatus(
        state="downloading",
        campaign="cmp-1",
        version="2.10.3",
        from_version="1.0.0",
        bytes=5,
        total=10,
        delta=True,
        reason="disk full",
        code="ota.no_space",
    )


def test_a_bare_state_leaves_every_other_field_none() -> None:
    assert parse_ota_status({"state": "committed"}) == OtaStatus(state="committed")


@pytest.mark.parametrize("state", sorted(REPORT_STATES))
def test_every_report_state_is_accepted(state: str) -> None:
    assert parse_ota_status({"state": state}).state == state


@pytest.mark.parametrize("state", [None, 3, "", "pending", "notified", "timed_out", "exploded"])
def test_a_missing_unknown_or_service_only_state_is_refused(state: object) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_ota_status({"state": state})
    assert info.value.code == "ingest.field"


@pytest.mark.parametrize("name", ["campaign", "reason", "code"])
def test_text_of_1_and_of_256_characters_is_accepted(name: str) -> None:
    assert getattr(parse_ota_status({"state": "failed", name: "x"}), name) == "x"
    longest = "y" * MAX_REPORT_TEXT_CHARS
    assert getattr(parse_ota_status({"state": "failed", name: longest}), name) == longest


@pytest.mark.parametrize("name", ["campaign", "reason", "code"])
@pytest.mark.parametrize(
    "value",
    ["", "y" * (MAX_REPORT_TEXT_CHARS + 1), "a\x00b", "\ud800", "a\udfff", 7, b"bytes", ["x"]],
    ids=["empty", "257-chars", "nul", "high-surrogate", "low-surrogate", "int", "bytes", "list"],
)
def test_text_that_is_empty_too_long_nul_unstorable_or_not_a_string_is_refused(
    name: str, value: object
) -> None:
    _refused(**{name: value})


@pytest.mark.parametrize("name", ["campaign", "reason", "code"])
def test_text_beyond_the_basic_plane_is_accepted(name: str) -> None:
    text = "\U0001f600 \ud7ff\ue000 \U0010ffff"  # around the surrogate block
    assert getattr(parse_ota_status({"state": "failed", name: text}), name) == text


@pytest.mark.parametrize("name", ["version", "from_version"])
@pytest.mark.parametrize("value", ["0.0.0", "1.2.3", "999999999.0.999999999"])
def test_a_major_minor_patch_version_is_accepted(name: str, value: str) -> None:
    assert getattr(parse_ota_status({"state": "installing", name: value}), name) == value


@pytest.mark.parametrize("name", ["version", "from_version"])
@pytest.mark.parametrize("value", ["2.0", "01.0.0", "1.0.0-rc1", "1000000000.0.0", "", "\ud800", 2])
def test_a_version_that_is_not_major_minor_patch_is_refused(name: str, value: object) -> None:
    _refused(**{name: value})


@pytest.mark.parametrize("name", ["bytes", "total"])
@pytest.mark.parametrize("value", [0, 1, MAX_REPORT_NUMBER])
def test_counts_from_0_to_the_bigint_bound_are_accepted(name: str, value: int) -> None:
    assert getattr(parse_ota_status({"state": "downloading", name: value}), name) == value


@pytest.mark.parametrize("name", ["bytes", "total"])
@pytest.mark.parametrize("value", [-1, MAX_REPORT_NUMBER + 1, True, False, 1.0, "5"])
def test_counts_negative_over_the_bound_or_not_integers_are_refused(
    name: str, value: object
) -> None:
    _refused(**{name: value})


@pytest.mark.parametrize("value", [True, False])
def test_delta_is_a_boolean(value: bool) -> None:
    assert parse_ota_status({"state": "downloading", "delta": value}).delta is value


@pytest.mark.parametrize("value", [0, 1, "true", "yes"])
def test_a_delta_that_is_not_a_boolean_is_refused(value: object) -> None:
    _refused(delta=value)


def test_a_report_is_an_immutable_keyword_only_value() -> None:
    status = parse_ota_status({"state": "committed"})
    with pytest.raises(dataclasses.FrozenInstanceError):
        status.state = "failed"  # type: ignore[misc]
    assert not hasattr(status, "__dict__")  # slots: no stray attributes
    with pytest.raises(TypeError):
        OtaStatus("committed")  # type: ignore[misc]
