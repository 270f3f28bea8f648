"""Property tests (Hypothesis): generated adversarial payloads on every device-writable topic go
through the real ingest worker on a real store (SQLite and PostgreSQL). The worker never
raises, and every valid neighbour in the same batch is stored (issue 9 §1, finding 4).

The payloads mix huge and tiny numbers, odd and out-of-range timestamps, unicode (lone
surrogates spelled as JSON escapes, NUL, bidi controls), deep nesting, wrong types, extra
fields and raw bytes. Evidence may name one of the bad device's open challenges, so the
attestation verifier and its verdict, quarantine and event writes run too.
"""

from __future__ import annotations

import base64
import itertools
import json
import secrets
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from support.ingestworker import WorkerKit, telemetry, worker_kit
from trustfleet.ota.campaign_rules import REPORT_STATES
from trustfleet.store import (
    AttestationKeyRecord,
    ChallengeRecord,
    NewCampaignDevice,
    UnitOfWork,
)

pytestmark = pytest.mark.integration

GOOD, BAD = "dev-good0001", "dev-bad00001"
KINDS = ["telemetry", "events", "cmd/result", "ota/status", "attest/evidence"]
CHALLENGES = [f"ch-{i:04d}" for i in range(300)]
CAMPAIGNS = [f"cmp-{i:03d}" for i in range(50)]
EXAMPLES = {"sqlite": 120, "postgresql": 40}
"""Examples per topic and backend (each is one batch through the worker)."""

ODD_TEXT = [
    "",
    "\x00",
    "a\x00b",
    "\u202e",
    "\ufeff",
    "\U0001d518\U0001d52b\u00e9\u4e2d",
    "x" * 300,
    "0001-01-01T00:00:00+01:00",
    "9999-12-31T23:59:59-01:00",
    "0001-01-01T00:00:00-23:59",
    "2026-02-30T00:00:00Z",
    "2026-06-01T12:00:00",
    "now",
    "$SURROGATE$",
]
ODD_NUMBERS = [0, -1, 2**63 - 1, 2**63, -(2**63) - 1, 10**30, 1e22, 1e308, -1e308, 5e-324, -0.0]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from(ODD_NUMBERS),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=24),
    st.sampled_from(ODD_TEXT),
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=16,
)
timestamps = st.one_of(
    st.sampled_from(["$NOW$", "$NOW$", "$PAST$", "$FUTURE$"]),
    st.datetimes(
        min_value=datetime(1, 1, 1),  # the timezone comes next
        max_value=datetime(9999, 12, 31, 23, 59, 59),
        timezones=st.builds(
            timezone, st.timedeltas(min_value=timedelta(hours=-23), max_value=timedelta(hours=23))
        ),
    ).map(datetime.isoformat),
    json_values,
)
metrics = st.one_of(
    st.dictionaries(st.text(max_size=70), scalars, max_size=20),
    st.builds(
        lambda n, v: {f"m{i:03d}{'x' * 50}": v for i in range(n)},
        st.integers(0, 300),
        st.sampled_from(ODD_NUMBERS),
    ),
    json_values,
)
b64 = st.binary(max_size=300).map(lambda b: base64.b64encode(b).decode())
FIELD_VALUES: dict[str, Any] = {
    "ts": timestamps,
    "seq": st.one_of(st.integers(min_value=-5, max_value=2**64), json_values),
    "boot": st.one_of(st.text(max_size=40), st.sampled_from(["b00t", "x" * 33]), json_values),
    "metrics": metrics,
    "type": st.one_of(st.sampled_from(["heartbeat", "agent.started"]), json_values),
    "details": json_values,
    "id": st.one_of(st.sampled_from(CHALLENGES), json_values),
    "ok": st.one_of(st.booleans(), json_values),
    "result": json_values,
    "state": st.one_of(st.sampled_from(sorted(REPORT_STATES)), json_values),
    "campaign": st.one_of(st.text(max_size=300), json_values),
    "version": st.one_of(st.sampled_from(["1.0.0", "999999999.0.0", "1.0"]), json_values),
    "from_version": json_values,
    "bytes": st.one_of(st.integers(min_value=-1, max_value=2**64), json_values),
    "total": json_values,
    "delta": json_values,
    "reason": st.one_of(st.text(max_size=300), json_values),
    "code": json_values,
    "quote": st.one_of(b64, json_values),
    "signature": st.one_of(b64, json_values),
    "eventlog": st.one_of(b64, json_values),
    "release": json_values,
    "slot": json_values,
}
bodies = st.builds(
    lambda fields, extra: {**extra, **fields},
    st.fixed_dictionaries({}, optional=FIELD_VALUES),
    st.dictionaries(st.text(max_size=10), json_values, max_size=3),
)
numbers = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(ODD_NUMBERS[:2] + ODD_NUMBERS[6:]),
)
KIND_FIELDS: dict[str, dict[str, Any]] = {
    "telemetry": {
        "metrics": st.one_of(
            st.dictionaries(st.text(min_size=1, max_size=64), numbers, max_size=40),
            metrics,
        )
    },
    "events": {"type": st.text(max_size=40), "details": json_values},
    "cmd/result": {"id": st.text(max_size=40), "ok": st.booleans(), "result": json_values},
    "ota/status": {
        "state": st.sampled_from(sorted(REPORT_STATES)),
        "campaign": st.one_of(st.sampled_from(CAMPAIGNS), st.text(min_size=1, max_size=256)),
        "version": st.sampled_from(["1.0.0", "999999999.0.0", "2.0.0"]),
        "bytes": st.integers(min_value=0, max_value=2**63 - 1),
        "reason": st.text(min_size=1, max_size=256),
    },
    "attest/evidence": {
        "id": st.sampled_from(CHALLENGES),
        "quote": b64,
        "signature": b64,
        "eventlog": b64,
        "release": json_values,
        "slot": json_values,
    },
}


def _near_valid(kind: str) -> st.SearchStrategy[dict[str, Any]]:
    """A body that passes (or nearly passes) the contract, with adversarial content."""
    required = {"ts": st.just("$NOW$"), "seq": st.integers(min_value=0, max_value=2**63 - 1)}
    optional = {"boot": st.from_regex(r"[A-Za-z0-9_-]{1,32}", fullmatch=True), **FIELD_VALUES}
    fields = KIND_FIELDS[kind]
    return st.builds(
        lambda base, extra: {**extra, **base},
        st.fixed_dictionaries(
            {**required, **fields},
            optional={k: v for k, v in optional.items() if k not in fields and k not in required},
        )
        if kind != "attest/evidence"
        else st.fixed_dictionaries(fields),
        st.dictionaries(st.text(max_size=10), json_values, max_size=3),
    )


def payloads(kind: str) -> st.SearchStrategy[tuple[str, Any]]:
    """Generated payloads for a topic: near-valid ones, arbitrary ones, raw and deep ones."""
    return st.one_of(
        st.tuples(st.sampled_from(["utf8", "ascii"]), _near_valid(kind)),
        st.tuples(st.sampled_from(["utf8", "ascii", "surrogate"]), bodies),
        st.tuples(st.just("raw"), st.binary(max_size=64)),
        st.tuples(st.just("deep"), st.integers(min_value=1, max_value=20_000)),
    )


def _render(payload: tuple[str, Any], now: datetime) -> bytes:
    how, value = payload
    if how == "raw":
        return bytes(value)
    if how == "deep":
        return (
            b'{"ts":"'
            + now.isoformat().encode()
            + b'","seq":1,"x":'
            + b"[" * value
            + b"]" * value
            + b"}"
        )
    text = json.dumps(value, ensure_ascii=how == "ascii")
    text = (
        text.replace('"$NOW$"', json.dumps(now.isoformat()))
        .replace('"$PAST$"', json.dumps((now - timedelta(days=400)).isoformat()))
        .replace('"$FUTURE$"', json.dumps((now + timedelta(days=2)).isoformat()))
        .replace("$SURROGATE$", "\\ud800")
    )
    if how == "surrogate" and text.startswith("{") and len(text) > 2:
        text = '{"\\udfff":"\\ud800",' + text[1:]
    return text.encode("utf-8", "surrogatepass")


def _seed_attestation(uow: UnitOfWork, now: datetime) -> None:
    """An AK and open challenges for the bad device, so evidence reaches the verifier."""
    pem = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    with uow.begin() as tx:
        tx.attestation.put_key(
            AttestationKeyRecord(
                device_id=BAD, ak_public=b"\x00\x01", ak_public_pem=pem.decode(),
                ak_name="000b" + "00" * 32, ek_public=b"\x00\x01", ek_certificate=b"\x30\x00",
                activated_at=now,
            )
        )  # fmt: skip
        for cid in CHALLENGES:
            tx.attestation.add_challenge(
                ChallengeRecord(
                    id=cid, device_id=BAD, nonce=secrets.token_bytes(32), pcrs=(0, 4, 9, 10),
                    trigger="schedule", issued_at=now, expires_at=now + timedelta(hours=1),
                    used_at=None, outcome=None,
                )
            )  # fmt: skip


def _seed_campaigns(uow: UnitOfWork, now: datetime) -> None:
    """Running campaigns with the bad device in flight, so reports move real campaign rows."""
    with uow.begin() as tx:
        for cid in CAMPAIGNS:
            tx.campaigns.add(
                id=cid, model="m", version="2.0.0", waves=[1.0], max_failure_rate=0.5,
                device_timeout_s=3600, now=now,
            )  # fmt: skip
            tx.campaigns.add_devices(cid, [NewCampaignDevice(BAD, 1, "notified")], now=now)


def _good_count(kit: WorkerKit) -> int:
    with kit.uow.begin(read_only=True) as tx:
        return tx.telemetry.count(device_id=GOOD)


@pytest.mark.parametrize("kind", KINDS)
def test_generated_payloads_never_end_the_worker_and_neighbours_are_stored(
    kind: str, db_url: str, tmp_path: Path
) -> None:
    backend = "postgresql" if db_url.startswith("postgresql") else "sqlite"
    with worker_kit(tmp_path, db_url) as kit:
        _seed_attestation(kit.uow, datetime.now(UTC))
        _seed_campaigns(kit.uow, datetime.now(UTC))
        seqs = itertools.count()

        @settings(
            max_examples=EXAMPLES[backend],
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        )
        @given(generated=st.lists(payloads(kind), min_size=1, max_size=4))
        def one_batch(generated: list[tuple[str, Any]]) -> None:
            now = datetime.now(UTC)
            before = _good_count(kit)
            good = [telemetry(GOOD, next(seqs), now=now) for _ in range(3)]
            bad = [(f"tf/v1/d/{BAD}/{kind}", _render(p, now)) for p in generated]
            kit.feed(good[0], *bad, good[1], good[2])  # raises if the worker would die
            assert _good_count(kit) == before + 3
            assert kit.worker.counters.failed_batches == 0

        one_batch()
        counters = kit.worker.counters
        with kit.uow.begin(read_only=True) as tx:
            moved = sum(tx.campaigns.device(c, BAD).state != "notified" for c in CAMPAIGNS)  # type: ignore[union-attr]
        print(kind, backend, counters, f"{moved} campaign rows moved")  # shown with -s
        assert counters.received > 0
