"""Event log parsing (bounds, strictness) and replay."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trustfleet.attestation import (
    EventLogEntry,
    composite_digest,
    eventlog_to_json,
    extend,
    parse_eventlog,
    replay,
)
from trustfleet.attestation.eventlog import ZERO_PCR
from trustfleet.errors import InvalidInput

GOOD = {"pcr": 9, "type": "EV_IPL", "digest": "ab" * 32, "component": "image", "detail": "a"}


def parse(value: object) -> tuple[EventLogEntry, ...]:
    return parse_eventlog(value, max_entries=64, max_string_chars=256)


def test_a_good_entry_parses() -> None:
    (entry,) = parse([GOOD])
    assert entry == EventLogEntry(
        pcr=9, type="EV_IPL", digest=b"\xab" * 32, component="image", detail="a"
    )
    assert parse([{k: v for k, v in GOOD.items() if k != "detail"}])[0].detail == ""


_PCR = "event log entry 0: 'pcr' must be an integer 0-23"
_DIGEST = "event log entry 0: 'digest' must be 64 hex digits (SHA-256)"


def _string(key: str) -> str:
    return f"event log entry 0: '{key}' must be a string of 1-256 characters"


def _without(key: str, **changes: object) -> dict[str, object]:
    return {k: v for k, v in {**GOOD, **changes}.items() if k != key}


# (id, log, the exact message): the message names the first rule the entry breaks.
BAD: list[tuple[str, Any, str]] = [
    ("not-a-list", {"pcr": 9}, "the event log is not a JSON array"),
    ("not-a-list-int", 5, "the event log is not a JSON array"),
    ("not-a-list-empty-dict", {}, "the event log is not a JSON array"),
    ("entry-not-object", [1], "event log entry 0: not an object"),
    ("unknown-key", [{**GOOD, "extra": 1}], "event log entry 0: unknown keys"),
    ("unknown-key-replacing-detail", [_without("detail", x="")], "event log entry 0: unknown keys"),
    ("digest-missing", [_without("digest")], "event log entry 0: 'digest' is required"),
    ("pcr-negative", [{**GOOD, "pcr": -1}], _PCR),
    ("pcr-24", [{**GOOD, "pcr": 24}], _PCR),
    ("pcr-bool", [{**GOOD, "pcr": True}], _PCR),
    ("pcr-float", [{**GOOD, "pcr": 9.0}], _PCR),
    ("pcr-missing", [_without("pcr")], _PCR),
    ("type-empty", [{**GOOD, "type": ""}], _string("type")),
    ("type-missing", [_without("type")], _string("type")),
    ("type-not-string", [{**GOOD, "type": 1}], _string("type")),
    ("type-too-long", [{**GOOD, "type": "x" * 257}], _string("type")),
    ("component-empty", [{**GOOD, "component": ""}], _string("component")),
    ("component-missing", [_without("component")], _string("component")),
    ("component-too-long", [{**GOOD, "component": "x" * 257}], _string("component")),
    ("detail-too-long", [{**GOOD, "detail": "x" * 257}], _string("detail")),
    ("detail-not-string", [{**GOOD, "detail": 5}], _string("detail")),
    # Entries whose only fault is the digest: every other field is valid at its bound.
    ("digest-short", [{**GOOD, "digest": "ab" * 31}], _DIGEST),
    ("digest-long", [{**GOOD, "digest": "ab" * 33}], _DIGEST),
    ("digest-not-hex", [{**GOOD, "digest": "zz" * 32}], _DIGEST),
    ("digest-with-spaces", [{**GOOD, "digest": "ab " * 21 + "a"}], _DIGEST),
    ("digest-whitespace-short", [{**GOOD, "digest": "ab" * 31 + "  "}], _DIGEST),
    ("digest-not-string", [{**GOOD, "digest": 7}], _DIGEST),
    ("digest-bad-pcr-0", [{**GOOD, "pcr": 0, "digest": "zz" * 32}], _DIGEST),
    ("digest-bad-pcr-23", [{**GOOD, "pcr": 23, "digest": "zz" * 32}], _DIGEST),
    ("digest-bad-detail-empty", [{**GOOD, "detail": "", "digest": "zz" * 32}], _DIGEST),
    ("digest-bad-no-detail", [_without("detail", digest="zz" * 32)], _DIGEST),
    (
        "digest-bad-strings-at-bound",
        [{**GOOD, "type": "t" * 256, "component": "c" * 256, "detail": "d" * 256, "digest": ""}],
        _DIGEST,
    ),
    (
        "second-entry",
        [GOOD, {**GOOD, "type": ""}],
        "event log entry 1: 'type' must be a string of 1-256 characters",
    ),
    ("too-many-entries", [GOOD] * 65, "the event log has 65 entries, over 64"),
]


@pytest.mark.parametrize(("value", "message"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_logs_are_refused_with_the_rule_they_break(value: object, message: str) -> None:
    with pytest.raises(InvalidInput) as info:
        parse(value)
    assert info.value.code == "attestation.evidence.malformed"
    assert str(info.value) == message


def test_every_field_at_its_bounds_parses() -> None:
    low = {"pcr": 0, "type": "t", "digest": "00" * 32, "component": "c", "detail": ""}
    high = {
        "pcr": 23,
        "type": "t" * 256,
        "digest": "FF" * 32,
        "component": "c" * 256,
        "detail": "d" * 256,
    }
    assert parse([low, high]) == (
        EventLogEntry(0, "t", bytes(32), "c", ""),
        EventLogEntry(23, "t" * 256, b"\xff" * 32, "c" * 256, "d" * 256),
    )


def test_exactly_max_entries_parse() -> None:
    assert parse([GOOD] * 64) == (parse([GOOD])[0],) * 64
    assert parse([]) == ()


def test_an_entry_made_without_detail_has_empty_detail() -> None:
    entry = EventLogEntry(9, "EV_IPL", bytes(32), "image")
    assert entry.detail == ""
    assert eventlog_to_json([entry])[0]["detail"] == ""


def test_extend_is_sha256_of_old_value_and_digest() -> None:
    digest = hashlib.sha256(b"rom").digest()
    assert extend(ZERO_PCR, digest) == hashlib.sha256(bytes(32) + digest).digest()


def test_replay_extends_in_order_and_skips_other_pcrs() -> None:
    a, b = hashlib.sha256(b"a").digest(), hashlib.sha256(b"b").digest()
    log = [
        EventLogEntry(pcr=9, type="EV_IPL", digest=a, component="image"),
        EventLogEntry(pcr=7, type="EV_IPL", digest=a, component="other"),
        EventLogEntry(pcr=9, type="EV_IPL", digest=b, component="image"),
    ]
    values = replay(log, pcrs=[0, 9])
    assert values == {0: ZERO_PCR, 9: extend(extend(ZERO_PCR, a), b)}
    assert composite_digest(values, [0, 9]) == hashlib.sha256(ZERO_PCR + values[9]).digest()
    # Order matters: swapping the two extends of PCR 9 changes it.
    assert replay([log[2], log[0]], pcrs=[9]) != {9: values[9]}


_entries = st.lists(
    st.builds(
        EventLogEntry,
        pcr=st.integers(0, 23),
        type=st.text(min_size=1, max_size=20),
        digest=st.binary(min_size=32, max_size=32),
        component=st.text(min_size=1, max_size=20),
        detail=st.text(max_size=40),
    ),
    max_size=10,
)


@given(_entries)
def test_json_round_trip(entries: list[EventLogEntry]) -> None:
    assert parse(eventlog_to_json(entries)) == tuple(entries)
