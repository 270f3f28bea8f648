"""The attestation service's pure rules: misses in a row, schedule jitter, auto-release,
reference values from release manifests."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta

import pytest

from trustfleet import __version__
from trustfleet.attestation import AttestationFacts, Finding, Verdict, measure_identity
from trustfleet.services._attestation_policy import (
    consecutive_misses,
    findings_json,
    may_auto_release,
    model_reference,
    next_due,
    reference_set,
)

T0 = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("outcomes", "expected"),
    [
        ([], 0),
        (["missed"], 1),
        (["missed", "missed", "passed", "missed"], 2),
        ([None, "missed", "missed"], 2),
        (["failed", "missed"], 0),
        (["passed"], 0),
        ([None, None], 0),
    ],
    ids=["none", "one", "broken-by-pass", "open-newest-skipped", "failed-first", "pass", "open"],
)
def test_consecutive_misses(outcomes: list[str | None], expected: int) -> None:
    assert consecutive_misses(outcomes) == expected


def test_never_challenged_is_due_now() -> None:
    assert next_due("dev-1", None, interval_s=600, jitter_fraction=0.1) is None


def test_jitter_stays_within_bounds_and_spreads_devices() -> None:
    dues = [next_due(f"dev-{i:04d}", T0, interval_s=600, jitter_fraction=0.1) for i in range(500)]
    offsets = [(d - T0).total_seconds() for d in dues if d is not None]
    assert min(offsets) >= 540 and max(offsets) <= 660
    assert max(offsets) - min(offsets) > 60  # not all at once
    again = next_due("dev-0001", T0, interval_s=600, jitter_fraction=0.1)
    assert again == dues[1]  # every process computes the same schedule


def test_no_jitter_is_exact() -> None:
    assert next_due("d", T0, interval_s=600, jitter_fraction=0.0) == T0 + timedelta(seconds=600)


def _verdict(*, ok: bool, release: str | None) -> Verdict:
    findings = (
        ()
        if ok
        else (
            Finding(
                code="attestation.quote.signature",
                severity="error",
                message="bad",
                context={"digest": b"\x01"},
            ),
        )
    )
    return Verdict(
        ok=ok,
        device_id="d",
        challenge_id="c",
        findings=findings,
        facts=AttestationFacts(release=release),
    )


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({}, True),
        ({"verdict": _verdict(ok=False, release="2.0.0")}, False),
        ({"auto_release": False}, False),
        ({"quarantined_by": "operator:cli"}, False),
        ({"quarantine_release": "2.0.1"}, False),
        ({"quarantine_release": "1.9.9"}, True),
        ({"quarantine_release": None}, True),
        ({"verdict": _verdict(ok=True, release=None)}, False),
    ],
    ids=[
        "newer-release",
        "failed",
        "policy-off",
        "operator-imposed",
        "older-than-quarantine",
        "same-or-newer",
        "quarantined-on-unknown-image",
        "no-measured-release",
    ],
)
def test_auto_release_rule(kwargs: dict[str, object], expected: bool) -> None:
    args: dict[str, object] = {
        "verdict": _verdict(ok=True, release="2.0.0"),
        "auto_release": True,
        "quarantined_by": "system",
        "quarantine_release": "1.0.0",
    }
    args.update(kwargs)
    assert may_auto_release(**args) is expected  # type: ignore[arg-type]


def _manifest(model: str, version: str, image: bytes) -> bytes:
    digest = hashlib.sha256(image).hexdigest()
    return json.dumps(
        {
            "schema": "trustfleet.release/1",
            "model": model,
            "version": version,
            "measurements": [{"pcr": 9, "component": "image", "sha256": digest}],
        }
    ).encode()


def test_reference_set_from_manifests() -> None:
    refs = reference_set(
        "sim-v1",
        [
            _manifest("sim-v1", "1.0.0", b"one"),
            _manifest("sim-v1", "2.0.0", b"two"),
            _manifest("other", "9.0.0", b"three"),
            b"not json",
        ],
    )
    assert refs.match_image("sim-v1", hashlib.sha256(b"two").digest(), None) == "2.0.0"
    assert refs.match_image("sim-v1", hashlib.sha256(b"three").digest(), None) is None
    model = refs.models["sim-v1"]
    assert measure_identity("trustfleet-sim-rom/sim-v1/1") in model.rom
    assert measure_identity(f"trustfleet-agent/{__version__}") in model.agent
    assert model_reference("other").rom != model.rom


def test_findings_json_has_no_bytes() -> None:
    doc = findings_json(_verdict(ok=False, release=None))
    assert doc == [
        {
            "code": "attestation.quote.signature",
            "severity": "error",
            "message": "bad",
            "context": {"digest": "01"},
        }
    ]
    json.dumps(doc)
