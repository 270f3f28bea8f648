"""Remote attestation as use cases: AK enrollment, challenges, verdicts, quarantine.

The contract is docs/attestation.md. The verifier (:func:`trustfleet.attestation.verify_evidence`)
is pure; this module feeds it from the store and acts on its verdict in one transaction:
the challenge is taken (single use, a conditional UPDATE), the verdict stored with its
findings, and the policy applied — a failure quarantines the device, a pass may release it
(:func:`~trustfleet.services._attestation_policy.may_auto_release`). Every quarantine change
writes its security event in the same transaction. The broker follows the store (``server
run``'s broker side), so any process on any host may quarantine or release.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final, Protocol

from trustfleet.attestation import (
    DEFAULT_PCRS,
    Challenge,
    ClockInfo,
    DeviceAttestationState,
    ReferenceSet,
    Verdict,
    encode_challenge,
    verify_evidence,
)
from trustfleet.attestation.credential import parse_public, tpm_name
from trustfleet.attestation.tpmstructs import qualified_name
from trustfleet.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from trustfleet.services._attestation_ak import (
    ak_activate_request,
    ak_enroll_request,
    begin_ak_enrollment,
    finish_ak_enrollment,
    load_manufacturer_cas,
)
from trustfleet.services._attestation_policy import (
    findings_json,
    may_auto_release,
    verifier_policy,
)
from trustfleet.services._attestation_policy import reference_set as _reference_set
from trustfleet.services._attestation_quarantine import (
    event,
    lift_quarantine,
    quarantine,
    quarantine_in,
    sweep_missed,
)
from trustfleet.services.runtime import Runtime
from trustfleet.settings import ServerSettings
from trustfleet.store import (
    MAX_LIST_LIMIT,
    AttestationKeyRecord,
    ChallengeRecord,
    ChallengeTrigger,
    DeviceRecord,
    Transaction,
    UnitOfWork,
)
from trustfleet.wire import device_topic, parse_device_topic

__all__ = [
    "EVIDENCE_TOPIC_SUFFIX",
    "StoreContext",
    "ak_activate_request",
    "ak_enroll_request",
    "authenticate_device",
    "begin_ak_enrollment",
    "challenge_message",
    "evidence_device",
    "finish_ak_enrollment",
    "handle_evidence",
    "issue_challenge",
    "lift_quarantine",
    "load_manufacturer_cas",
    "quarantine",
    "reference_set",
    "sweep_missed",
]

logger = logging.getLogger(__name__)

EVIDENCE_TOPIC_SUFFIX: Final = "attest/evidence"
_MAX_CHALLENGE_ID_CHARS: Final = 40
_TPM_RH_ENDORSEMENT: Final = b"\x40\x00\x00\x0b"


class StoreContext(Protocol):
    """What evidence handling needs: the home's settings and the store (a ``Runtime`` has both)."""

    @property
    def settings(self) -> ServerSettings:
        """The server home's settings."""

    @property
    def uow(self) -> UnitOfWork:
        """The store."""


def _pem_fingerprint(pem: str) -> str:
    body = "".join(line for line in pem.splitlines() if line and not line.startswith("-----"))
    return hashlib.sha256(base64.b64decode(body)).hexdigest()


def authenticate_device(rt: Runtime, client_cert_pem: str | None, *, now: datetime) -> DeviceRecord:
    """The enrolled device whose LDevID was presented on the TLS connection.

    Raises:
        PermissionDenied: No certificate, or not a valid LDevID of an enrolled device
            (one error, ``attestation.auth``; the TLS layer already checked the chain).
    """
    if client_cert_pem:
        with rt.uow.begin(read_only=True) as tx:
            cert = tx.certificates.get_by_sha256(_pem_fingerprint(client_cert_pem))
            device = tx.devices.get(cert.device_id) if cert and cert.device_id else None
        if (
            cert is not None
            and device is not None
            and cert.kind == "ldevid"
            and cert.status == "valid"
            and cert.not_before <= now <= cert.not_after
            and device.state == "enrolled"
        ):
            return device
    raise PermissionDenied(
        "attestation needs the device's current operational certificate (LDevID)",
        hint="connect with the LDevID the service issued to the device",
        code="attestation.auth",
    )


# -- challenges ------------------------------------------------------------------------------


def issue_challenge(
    rt: Runtime, *, device_id: str, now: datetime, trigger: ChallengeTrigger = "operator"
) -> Challenge:
    """Store a fresh challenge for a device (publish it with :func:`challenge_message`).

    Raises:
        NotFound: No such device, or it has no AK (``attestation.ak.missing``).
        Conflict: The device is not enrolled (``attestation.device.state``).
    """
    settings = rt.settings.attestation
    record = ChallengeRecord(
        id=secrets.token_hex(16),
        device_id=device_id,
        nonce=secrets.token_bytes(32),
        pcrs=DEFAULT_PCRS,
        trigger=trigger,
        issued_at=now,
        expires_at=now + timedelta(seconds=settings.response_timeout_s),
        used_at=None,
        outcome=None,
    )
    with rt.uow.begin() as tx:
        device = tx.devices.require(device_id)
        if device.state != "enrolled":
            raise Conflict(
                f"device '{device_id}' is {device.state}", code="attestation.device.state"
            )
        if tx.attestation.get_key(device_id) is None:
            raise NotFound(
                f"device '{device_id}' has no attestation key",
                hint="the device binds its AK with POST /attest/v1/ak after enrollment",
                code="attestation.ak.missing",
            )
        tx.attestation.add_challenge(record)
    return _challenge(record)


def _challenge(record: ChallengeRecord) -> Challenge:
    return Challenge(
        id=record.id,
        nonce=record.nonce,
        issued_at=record.issued_at,
        pcrs=record.pcrs,
        used=record.used_at is not None,
    )


def challenge_message(device_id: str, challenge: Challenge) -> tuple[str, bytes]:
    """The MQTT topic and payload of a challenge (publish with QoS 1)."""
    return device_topic(device_id, "attest/challenge"), encode_challenge(challenge)


# -- evidence --------------------------------------------------------------------------------


def evidence_device(topic: str) -> str | None:
    """The device id of an evidence topic (``…/<id>/attest/evidence``), else None."""
    parsed = parse_device_topic(topic)
    return parsed[0] if parsed and parsed[1] == EVIDENCE_TOPIC_SUFFIX else None


def _challenge_id(payload: bytes, *, max_bytes: int) -> str:
    bad = InvalidInput(
        "the evidence names no challenge", code="attestation.evidence.unattributable"
    )
    if len(payload) > max_bytes:
        raise bad
    try:
        doc = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise bad from exc
    value = doc.get("id") if isinstance(doc, dict) else None
    if not isinstance(value, str) or not 0 < len(value) <= _MAX_CHALLENGE_ID_CHARS:
        raise bad
    return value


@dataclass(frozen=True)
class _Context:
    challenge: ChallengeRecord
    device: DeviceRecord
    key: AttestationKeyRecord
    last_clock: ClockInfo | None
    references: ReferenceSet
    quarantined: bool


def _load_context(rt: StoreContext, device_id: str, challenge_id: str) -> _Context:
    with rt.uow.begin(read_only=True) as tx:
        challenge = tx.attestation.get_challenge(challenge_id)
        if challenge is None or challenge.device_id != device_id:
            raise InvalidInput(
                "the evidence answers no challenge of this device",
                code="attestation.challenge.unknown",
            )
        if tx.attestation.result_for(challenge_id) is not None or challenge.outcome == "missed":
            raise Conflict(
                "the challenge is already closed (a duplicate or late delivery)",
                code="attestation.challenge.closed",
            )
        device = tx.devices.require(device_id)
        key = tx.attestation.get_key(device_id)
        if key is None:
            raise NotFound(f"device '{device_id}' has no AK", code="attestation.ak.missing")
        last = tx.attestation.last_passed(device_id)
        references = _references(tx, device.model)
        quarantined = tx.attestation.quarantine(device_id) is not None
    clock = None
    if last is not None and None not in (last.clock, last.reset_count, last.restart_count):
        clock = ClockInfo(
            clock=last.clock or 0,
            reset_count=last.reset_count or 0,
            restart_count=last.restart_count or 0,
            safe=True,
        )
    return _Context(challenge, device, key, clock, references, quarantined)


def _ak_qualified_name(key: AttestationKeyRecord) -> bytes | None:
    """The AK's qualified name (a child of the EK, a primary of the endorsement hierarchy)."""
    try:
        ek = parse_public(key.ek_public)
    except InvalidInput:
        return None
    if ek.name_alg != 0x000B:
        return None
    ek_qualified = qualified_name(_TPM_RH_ENDORSEMENT, tpm_name(ek))
    return qualified_name(ek_qualified, bytes.fromhex(key.ak_name))


def handle_evidence(rt: StoreContext, *, device_id: str, payload: bytes, now: datetime) -> Verdict:
    """Verify a device's evidence, store the verdict and apply the quarantine policy.

    Args:
        rt: The runtime (or anything with the settings and the store).
        device_id: The device (from the topic; the broker's ACL ties it to the sender).
        payload: The evidence (docs/attestation.md).
        now: The receiving time.

    Returns:
        The verdict.

    Raises:
        InvalidInput: The payload names no challenge of this device (nothing is stored).
        Conflict: The challenge was already answered or closed as missed (a duplicate or
            late delivery; nothing is stored).
        NotFound: The device or its AK is unknown.
    """
    settings = rt.settings.attestation
    ctx = _load_context(
        rt, device_id, _challenge_id(payload, max_bytes=settings.max_evidence_bytes)
    )
    state = DeviceAttestationState(
        device_id=device_id,
        model=ctx.device.model,
        ak_public_key=ctx.key.ak_public_pem.encode("ascii"),
        ak_qualified_name=_ak_qualified_name(ctx.key),
        last_clock=ctx.last_clock,
        # A boot challenge follows the device's own boot announcement; a quarantined device
        # cannot announce (its events topic is closed) but must reboot to heal by an update.
        reboot_announced=ctx.challenge.trigger == "boot" or ctx.quarantined,
    )
    verdict = verify_evidence(
        payload,
        challenge=_challenge(ctx.challenge),
        device=state,
        references=ctx.references,
        policy=verifier_policy(settings),
        now=now,
    )
    with rt.uow.begin() as tx:
        if not tx.attestation.use_challenge(ctx.challenge.id, now=now):
            raise Conflict("the challenge was taken meanwhile", code="attestation.challenge.closed")
        _store_verdict(tx, verdict, now=now)
        _apply_policy(rt, tx, verdict, device=ctx.device, now=now)
    logger.info(
        "attestation of %s: %s %s", device_id, "pass" if verdict.ok else "FAIL", verdict.codes
    )
    return verdict


def _store_verdict(tx: Transaction, verdict: Verdict, *, now: datetime) -> None:
    info = verdict.facts.clock_info
    tx.attestation.close_challenge(verdict.challenge_id, "passed" if verdict.ok else "failed")
    tx.attestation.add_result(
        device_id=verdict.device_id,
        challenge_id=verdict.challenge_id,
        verified_at=now,
        ok=verdict.ok,
        findings=findings_json(verdict),
        release=verdict.facts.release if verdict.ok else None,
        clock=(info.clock, info.reset_count, info.restart_count) if info else None,
    )


def _apply_policy(
    rt: StoreContext, tx: Transaction, verdict: Verdict, *, device: DeviceRecord, now: datetime
) -> None:
    device_id = device.id
    current = tx.attestation.quarantine(device_id)
    if not verdict.ok:
        codes = [f.code for f in verdict.errors]
        event(
            tx,
            "attestation.failed",
            device_id,
            {"challenge": verdict.challenge_id, "codes": codes},
            now,
        )
        if current is None:
            quarantine_in(
                tx,
                device,
                reason="attestation failed: " + ", ".join(codes),
                actor="system",
                now=now,
            )
        return
    if current is not None and may_auto_release(
        verdict=verdict,
        auto_release=rt.settings.attestation.auto_release,
        quarantined_by=current.by,
        quarantine_release=current.release,
    ):
        tx.attestation.clear_quarantine(device_id, now=now)
        details = {
            "by": "system",
            "release": verdict.facts.release,
            "challenge": verdict.challenge_id,
        }
        event(tx, "device.released", device_id, details, now)


def reference_set(rt: Runtime, model: str) -> ReferenceSet:
    """The reference values of a model: its fixed boot stages and its published releases."""
    with rt.uow.begin(read_only=True) as tx:
        return _references(tx, model)


_MAX_CACHED_MODELS = 64
_REFERENCES: dict[str, tuple[int | None, ReferenceSet]] = {}
"""Per model: the newest release id it was built from, and the reference set (a cache of
immutable published data, so every verification does not re-read and re-parse every manifest)."""


def _references(tx: Transaction, model: str) -> ReferenceSet:
    stamp = tx.releases.newest_id(model)
    cached = _REFERENCES.get(model)
    if cached is not None and cached[0] == stamp:
        return cached[1]
    manifests = [r.manifest for r in tx.releases.list(model=model, limit=MAX_LIST_LIMIT)]
    references = _reference_set(model, manifests)
    if len(_REFERENCES) >= _MAX_CACHED_MODELS:
        _REFERENCES.clear()
    _REFERENCES[model] = (stamp, references)
    return references
