"""Decommission with wipe evidence (docs/lifecycle.md, "Decommission and wipe evidence").

:func:`request_decommission` records a pending decommission with a fresh 256-bit nonce and the
``decommission`` command in one transaction, then publishes the command. The device wipes
itself and answers with evidence signed by its identity key; the ingest workers store that
answer in the command's row, and ``server run``'s parent (the process that signs CRLs) calls
:func:`sweep`: :func:`receive_evidence` checks each new answer with the pure verifier
(:func:`trustfleet.attestation.wipe.verify_wipe_evidence`) and, if it holds, revokes every
certificate of the device ``cessationOfOperation`` (RFC 5280 §5.3.1) with the CRLs reissued in
the same transaction, makes the device ``decommissioned`` and records the evidence
(``verified``). Refused evidence leaves the request pending (the operator may send it again);
:func:`expire_overdue` ends a request past its deadline the same way, but ``unverified`` with
the reason. :func:`decommission_offline` does that at once for a device known to be gone.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from cryptography import x509

from trustfleet.attestation.wipe import verify_wipe_evidence
from trustfleet.errors import Conflict, InvalidInput, NotFound, TrustFleetError, Unavailable
from trustfleet.services.revocation import revoke_all_certificates
from trustfleet.services.runtime import Runtime
from trustfleet.services.service_mqtt import OneShotServiceMqtt, ServiceMqtt
from trustfleet.store import Transaction
from trustfleet.store.lifecycle_records import DECOMMISSION_STATE_VALUES, DecommissionRecord
from trustfleet.wire import device_topic, encode_command

__all__ = [
    "COMMAND",
    "REASON",
    "REFUSED_EVENT",
    "DecommissionSent",
    "SweepOutcome",
    "decommission_offline",
    "expire_overdue",
    "get_decommission",
    "list_decommissions",
    "receive_evidence",
    "request_decommission",
    "sweep",
]

logger = logging.getLogger(__name__)

COMMAND: Final = "decommission"
REASON: Final = "cessationOfOperation"
"""RFC 5280 §5.3.1: the certificates are no longer needed; nothing was compromised."""
NONCE_BYTES: Final = 32
REFUSED_EVENT: Final = "device.decommission.evidence_refused"
_ANSWERS_LOOKED_AT: Final = 20
MAX_REASON_CHARS: Final = 300
"""What the store keeps of an unverified decommission's reason."""


@dataclass(frozen=True, slots=True)
class DecommissionSent:
    """A decommission request and the command that carries it."""

    decommission: DecommissionRecord
    command_id: str


@dataclass(frozen=True, slots=True)
class SweepOutcome:
    """What one :func:`sweep` did: devices verified, evidence refused, requests expired."""

    verified: tuple[str, ...] = ()
    refused: tuple[str, ...] = ()
    expired: tuple[str, ...] = ()


def _subject(device_id: str) -> str:
    return f"device:{device_id}"


def request_decommission(
    rt: Runtime,
    client: ServiceMqtt | None,
    device_id: str,
    *,
    actor: str,
    now: datetime,
) -> DecommissionSent:
    """Ask an enrolled device to wipe itself and prove it (or ask again, same nonce).

    Args:
        rt: The runtime (store only).
        client: The service MQTT client that publishes the command (None: a one-shot one;
            either logs in to the service token through awscrt, so call this from a process
            that does not log in to it through python-pkcs11).
        device_id: The device.
        actor: Who asks (an operator, or ``system``).
        now: The current time (timezone-aware).

    Returns:
        The pending decommission and the command's id.

    Raises:
        NotFound: No such device.
        Conflict: The device is not enrolled (``decommission.not_enrolled``: use the offline
            path) or already decommissioned (``decommission.done``).
        Unavailable: The broker did not take the command (the request stays pending; send
            it again, or it ends unverified at its deadline).
    """
    topic = device_topic(device_id, "cmd")  # InvalidInput for an id no device can have
    deadline = now + timedelta(seconds=rt.settings.lifecycle.decommission_timeout_s)
    with rt.uow.begin() as tx:
        device = tx.devices.require(device_id)
        record = tx.decommissions.get(device_id)
        if device.state == "decommissioned" or (record and record.state != "pending"):
            raise Conflict(f"device '{device_id}' is already decommissioned",
                           hint=f"see 'trustfleet device show {device_id}'",
                           code="decommission.done")  # fmt: skip
        if device.state != "enrolled":
            raise Conflict(
                f"device '{device_id}' is {device.state}: it cannot receive the command",
                hint=f"'trustfleet device decommission {device_id} --offline' retires it "
                "without wipe evidence",
                code="decommission.not_enrolled",
            )
        if record is None:
            record = tx.decommissions.add(
                device_id=device_id, nonce=secrets.token_hex(NONCE_BYTES),
                requested_by=actor[:64], deadline=deadline, now=now,
            )  # fmt: skip
        args = {"nonce": record.nonce}
        command_id, payload = encode_command(COMMAND, args)
        tx.commands.add(id=command_id, device_id=device_id, name=COMMAND, args=args,
                        actor=actor, now=now)  # fmt: skip
        tx.events.append(
            type="device.decommission.requested", actor=actor, subject=_subject(device_id),
            details={"command": command_id, "deadline": record.deadline.isoformat()}, now=now,
        )  # fmt: skip
    try:
        (client or OneShotServiceMqtt(rt.settings)).publish(
            topic, payload, what=f"'decommission' to {device_id}"
        )
    except Unavailable as exc:
        with rt.uow.begin() as tx:
            tx.commands.mark_failed(command_id, reason=exc.message)
        raise
    logger.info("asked %s to decommission itself (command %s)", device_id, command_id)
    return DecommissionSent(decommission=record, command_id=command_id)


def _retire(rt: Runtime, tx: Transaction, device_id: str, *, now: datetime) -> list[str]:
    """Revoke every valid certificate ``cessationOfOperation``, reissue the CRLs, mark the
    device decommissioned; the revoked ``issuer:serial`` names."""
    revoked = revoke_all_certificates(
        rt, tx, device_id, reason=REASON, state="decommissioned", now=now
    )
    return [f"{r.issuer}:{r.serial}" for r in revoked]


def _finish(
    rt: Runtime,
    tx: Transaction,
    device_id: str,
    *,
    evidence: Mapping[str, Any] | None,
    reason: str | None,
    actor: str,
    now: datetime,
) -> DecommissionRecord:
    serials = _retire(rt, tx, device_id, now=now)
    verified = reason is None
    record = tx.decommissions.complete(
        device_id, state="verified" if verified else "unverified", evidence=evidence,
        reason=None if reason is None else reason[:MAX_REASON_CHARS], now=now,
    )  # fmt: skip
    details: dict[str, Any] = {"verified": verified, "reason": REASON, "serials": serials}
    if reason is not None:
        details["unverified_reason"] = reason[:MAX_REASON_CHARS]
    tx.events.append(type="device.decommissioned", actor=actor, subject=_subject(device_id),
                     details=details, now=now)  # fmt: skip
    return record


def _current_ldevid(tx: Transaction, device_id: str) -> x509.Certificate | None:
    valid = [
        rec
        for rec in tx.certificates.list_for_device(device_id)
        if rec.kind == "ldevid" and rec.status == "valid"
    ]
    return x509.load_der_x509_certificate(valid[-1].der) if valid else None


def receive_evidence(
    rt: Runtime,
    *,
    device_id: str,
    command_id: str,
    result: Mapping[str, Any],
    now: datetime,
) -> DecommissionRecord | None:
    """Check a device's answer to its ``decommission`` command; retire it if it holds.

    Args:
        rt: The runtime (signs CRLs: a process that logs in through python-pkcs11).
        device_id: The device that answered.
        command_id: The command it answered (named in a refusal event).
        result: The stored result (``{"evidence": {...}}``).
        now: The current time.

    Returns:
        The verified decommission, or None if the evidence was refused (a
        ``device.decommission.evidence_refused`` event says why; the request stays pending).

    Raises:
        NotFound: The device has no pending decommission.
    """
    with rt.uow.begin() as tx:
        record = tx.decommissions.get(device_id)
        if record is None or record.state != "pending":
            raise NotFound(f"device '{device_id}' has no pending decommission")
        evidence = result.get("evidence")
        certificate = _current_ldevid(tx, device_id)
        key = tx.attestation.get_key(device_id)
        if not isinstance(evidence, Mapping) or certificate is None:
            why = "no LDevID on record" if certificate is None else "no evidence in the answer"
            codes, reason = ["wipe.evidence.malformed"], why
        else:
            verdict = verify_wipe_evidence(
                evidence, certificate=certificate, device_id=device_id, nonce=record.nonce,
                now=now, ak_name=None if key is None else key.ak_name,
            )  # fmt: skip
            if verdict.ok:
                done = _finish(rt, tx, device_id, evidence=evidence, reason=None,
                               actor=_subject(device_id), now=now)  # fmt: skip
                logger.info("device %s decommissioned with verified wipe evidence", device_id)
                return done
            codes, reason = list(verdict.codes), verdict.reason()
        tx.events.append(
            type=REFUSED_EVENT, actor=_subject(device_id), subject=_subject(device_id),
            details={"command": command_id, "codes": codes, "reason": reason[:MAX_REASON_CHARS]},
            now=now, outcome="refused",
        )  # fmt: skip
    logger.warning("wipe evidence of %s refused: %s", device_id, reason)
    return None


def _refusals(tx: Transaction, device_id: str) -> dict[str, str]:
    """The device's refused answers: command id → reason."""
    events = tx.events.list(type=REFUSED_EVENT, subject=_subject(device_id), limit=100)
    return {str(e.details.get("command")): str(e.details.get("reason", "")) for e in events}


def _new_answers(rt: Runtime) -> list[tuple[str, str, Mapping[str, Any]]]:
    """``(device, command, result)`` of decommission answers not yet checked."""
    found = []
    with rt.uow.begin(read_only=True) as tx:
        for record in tx.decommissions.list(state="pending", limit=1000):
            refused = _refusals(tx, record.device_id)
            commands = tx.commands.page_for_device(record.device_id, limit=_ANSWERS_LOOKED_AT)
            found += [
                (record.device_id, cmd.id, cmd.result or {})
                for cmd in reversed(commands)  # the oldest answer first
                if cmd.name == COMMAND
                and cmd.state == "answered"
                and cmd.id not in refused
                and cmd.args.get("nonce") == record.nonce
            ]
    return found


def expire_overdue(rt: Runtime, *, now: datetime) -> list[str]:
    """End pending decommissions past their deadline: ``unverified``, the device retired.

    Returns:
        The devices decommissioned unverified.
    """
    with rt.uow.begin(read_only=True) as tx:
        overdue = [r.device_id for r in tx.decommissions.overdue(now=now)]
    done = []
    for device_id in overdue:
        try:
            with rt.uow.begin() as tx:
                last = list(_refusals(tx, device_id).values())
                reason = ("no wipe evidence by the deadline (device offline?)" if not last
                          else f"wipe evidence refused: {last[-1]}")  # fmt: skip
                _finish(rt, tx, device_id, evidence=None, reason=reason, actor="system",
                        now=now)  # fmt: skip
        except Conflict:
            continue  # another process ended it meanwhile
        except TrustFleetError as exc:  # one bad row must not hold the others back
            logger.error("could not end the decommission of %s: %s", device_id, exc.one_line())
            continue
        logger.warning("device %s decommissioned unverified: %s", device_id, reason)
        done.append(device_id)
    return done


def sweep(rt: Runtime, *, now: datetime) -> SweepOutcome:
    """Check new answers, then expire overdue requests (``server run``'s parent, each poll)."""
    verified: list[str] = []
    refused: list[str] = []
    for device_id, command_id, result in _new_answers(rt):
        try:
            done = receive_evidence(rt, device_id=device_id, command_id=command_id,
                                    result=result, now=now)  # fmt: skip
        except (NotFound, Conflict):
            continue
        except TrustFleetError as exc:  # one bad answer must not hold the others back
            logger.error("could not check the evidence of %s: %s", device_id, exc.one_line())
            continue
        (verified if done is not None else refused).append(device_id)
    expired = expire_overdue(rt, now=now)
    return SweepOutcome(verified=tuple(verified), refused=tuple(refused), expired=tuple(expired))


def decommission_offline(
    rt: Runtime, device_id: str, *, actor: str, now: datetime, reason: str | None = None
) -> DecommissionRecord:
    """Retire a device known to be gone, at once: ``decommissioned (unverified)``.

    Raises:
        NotFound: No such device.
        Conflict: It is already decommissioned (``decommission.done``).
    """
    why = reason or "declared offline by the operator: no wipe evidence"
    with rt.uow.begin() as tx:
        device = tx.devices.require(device_id)
        record = tx.decommissions.get(device_id)
        if device.state == "decommissioned" or (record and record.state != "pending"):
            raise Conflict(f"device '{device_id}' is already decommissioned",
                           code="decommission.done")  # fmt: skip
        if record is None:
            tx.decommissions.add(device_id=device_id, nonce=secrets.token_hex(NONCE_BYTES),
                                 requested_by=actor[:64], deadline=now, now=now)  # fmt: skip
        return _finish(rt, tx, device_id, evidence=None, reason=why, actor=actor, now=now)


def get_decommission(rt: Runtime, device_id: str) -> DecommissionRecord:
    """The device's decommission.

    Raises:
        NotFound: It has none (``decommission.not_found``).
    """
    with rt.uow.begin(read_only=True) as tx:
        record = tx.decommissions.get(device_id)
    if record is None:
        raise NotFound(f"device '{device_id}' is not being decommissioned",
                       code="decommission.not_found")  # fmt: skip
    return record


def list_decommissions(
    rt: Runtime, *, state: str | None = None, limit: int = 100
) -> list[DecommissionRecord]:
    """Decommissions, newest request first, in one state if asked.

    Raises:
        InvalidInput: An unknown state.
    """
    if state is not None and state not in DECOMMISSION_STATE_VALUES:
        raise InvalidInput(f"unknown decommission state {state[:32]!r}",
                           hint="one of: " + ", ".join(DECOMMISSION_STATE_VALUES),
                           code="decommission.state")  # fmt: skip
    with rt.uow.begin(read_only=True) as tx:
        return tx.decommissions.list(state=state, limit=limit)
