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


BAD: list[tuple[str, Any]] = [
    ("not-a-list", {"pcr": 9}),
    ("entry-not-object", [1]),
    ("unknown-key", [{**GOOD, "extra": 1}]),
    ("pcr-negative", [{**GOOD, "pcr": -1}]),
    ("pcr-24", [{**GOOD, "pcr": 24}]),
    ("pcr-bool", [{**GOOD, "pcr": True}]),
    ("pcr-float", [{**GOOD, "pcr": 9.0}]),
    ("digest-short", [{**GOOD, "digest": "ab" * 31}]),
    ("digest-not-hex", [{**GOOD, "digest": "zz" * 32}]),
    ("digest-with-spaces", [{**GOOD, "digest": "ab " * 21 + "a"}]),
    ("digest-missing", [{k: v for k, v in GOOD.items() if k != "digest"}]),
    ("type-empty", [{**GOOD, "type": ""}]),
    ("component-missing", [{k: v for k, v in GOOD.items() if k != "component"}]),
    ("detail-too-long", [{**GOOD, "detail": "x" * 257}]),
    ("detail-not-string", [{**GOOD, "detail": 5}]),
    ("too-many-entries", [GOOD] * 65),
]


@pytest.mark.parametrize("value", [b[1] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_logs_are_refused(value: object) -> None:
    with pytest.raises(InvalidInput) as info:
        parse(value)
    assert info.value.code == "attestation.evidence.malformed"


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
