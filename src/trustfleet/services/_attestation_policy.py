"""The attestation service's rules, as pure functions: schedule, misses, auto-release, references.

Nothing here reads the store, a clock or a file; :mod:`trustfleet.services.attestation`
feeds these functions and acts on what they return.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from trustfleet import product_version
from trustfleet.attestation import (
    AttestationPolicy,
    ModelReference,
    ReferenceSet,
    ReleaseReference,
    Verdict,
    measure_identity,
    release_reference_from_manifest,
)
from trustfleet.attestation.reference import (
    SIM_AGENT_IDENTITY,
    SIM_BOOTLOADER_IDENTITY,
    SIM_ROM_IDENTITY,
)
from trustfleet.errors import InvalidInput
from trustfleet.ota.versions import parse_version
from trustfleet.settings import AttestationSettings

__all__ = [
    "SIM_AGENT_IDENTITY",
    "SIM_BOOTLOADER_IDENTITY",
    "SIM_ROM_IDENTITY",
    "consecutive_misses",
    "findings_json",
    "may_auto_release",
    "model_reference",
    "next_due",
    "reference_set",
    "verifier_policy",
]


def model_reference(model: str, *, agent_versions: Iterable[str] | None = None) -> ModelReference:
    """The reference digests of a model's fixed boot stages (the simulated platform).

    These are what the service publishes per model for ``rom``, ``bootloader`` and ``agent``
    (docs/attestation.md): SHA-256 of the identity strings above, which the simulated boot
    chain measures. A hardware model would list its vendor's published digests instead.

    Args:
        model: The hardware model.
        agent_versions: The agent versions accepted (default: this package's version).
    """
    versions = tuple(agent_versions) if agent_versions is not None else (product_version(),)
    return ModelReference(
        model=model,
        rom=frozenset({measure_identity(SIM_ROM_IDENTITY.format(model=model))}),
        bootloader=frozenset({measure_identity(SIM_BOOTLOADER_IDENTITY.format(model=model))}),
        agent=frozenset(measure_identity(SIM_AGENT_IDENTITY.format(version=v)) for v in versions),
    )


def reference_set(model: str, manifests: Iterable[bytes]) -> ReferenceSet:
    """Reference values of one model: its fixed stages and the images of its releases.

    Args:
        model: The hardware model.
        manifests: The canonical ``release.json`` bytes of its published releases; one that
            does not parse or names another model is skipped.
    """
    releases: list[ReleaseReference] = []
    for raw in manifests:
        try:
            ref = release_reference_from_manifest(json.loads(raw))
        except (ValueError, InvalidInput, AttributeError):
            continue
        if ref.model == model:
            releases.append(ref)
    return ReferenceSet.build(models=[model_reference(model)], releases=releases)


def verifier_policy(settings: AttestationSettings) -> AttestationPolicy:
    """The verifier's bounds from the ``[attestation]`` settings."""
    return AttestationPolicy(
        max_evidence_bytes=settings.max_evidence_bytes, max_age_s=settings.nonce_max_age_s
    )


def consecutive_misses(outcomes: Sequence[str | None]) -> int:
    """How many of a device's newest challenges in a row were missed.

    Args:
        outcomes: Outcomes, newest first; still-open challenges (None) are skipped.
    """
    count = 0
    for outcome in outcomes:
        if outcome is None:
            continue
        if outcome != "missed":
            break
        count += 1
    return count


def _jitter(device_id: str, last: datetime) -> float:
    """A value in [-1, 1] fixed per device and challenge (every process computes the same)."""
    digest = hashlib.sha256(f"{device_id}|{last.isoformat()}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / float(2**64 - 1) * 2.0 - 1.0


def next_due(
    device_id: str, last: datetime | None, *, interval_s: float, jitter_fraction: float
) -> datetime | None:
    """When a device's next scheduled challenge is due (None: due now, never challenged).

    The interval is stretched or shrunk by up to ``jitter_fraction`` so that devices enrolled
    together do not all answer at once.
    """
    if last is None:
        return None
    factor = 1.0 + jitter_fraction * _jitter(device_id, last)
    return last + timedelta(seconds=interval_s * factor)


def _version_tuple(version: str | None) -> tuple[int, ...] | None:
    if version is None:
        return None
    try:
        return tuple(parse_version(version))
    except InvalidInput:
        return None


def may_auto_release(
    *,
    verdict: Verdict,
    auto_release: bool,
    quarantined_by: str,
    quarantine_release: str | None,
) -> bool:
    """Whether a passing attestation lifts a quarantine by itself.

    The rule: the policy allows it (``auto_release``), the service imposed the quarantine
    (an operator's is lifted only by an operator), the verdict passed, its measured image is
    a published release of the model, and that release is at least the one the device ran
    when it was quarantined (unknown: any published release).
    """
    if not (auto_release and verdict.ok and quarantined_by == "system"):
        return False
    measured = _version_tuple(verdict.facts.release)
    if measured is None:
        return False
    floor = _version_tuple(quarantine_release)
    return floor is None or measured >= floor


def findings_json(verdict: Verdict) -> list[dict[str, Any]]:
    """The findings of a verdict as JSON objects (what the store and the CLI show)."""
    return [
        {
            "code": f.code,
            "severity": f.severity,
            "message": f.message,
            "context": _plain(f.context),
        }
        for f in verdict.findings
    ]


def _plain(context: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in context.items():
        if isinstance(value, bytes):
            out[key] = value.hex()
        elif isinstance(value, tuple | list):
            out[key] = [v.hex() if isinstance(v, bytes) else v for v in value]
        else:
            out[key] = value
    return out
