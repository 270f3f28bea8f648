"""Asking the witnesses to cosign the audit log's newest checkpoint (C2SP tlog-witness).

For each witness in ``[audit] witnesses``: send the newest checkpoint with a consistency proof
from the last one it cosigned; a 409 tells the size it has, and the request is sent once more
from there. A returned cosignature is verified with the witness's key before it is kept; the
checkpoint file is then published again with it. A refusal (a witness that saw a different
tree: split view; a bad proof; a forged log signature) is a security event, recorded once per
witness and kind of refusal while it lasts.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from trustfleet.audit.note import (
    NoteSignature,
    Verifier,
    parse_note,
    parse_verifier_key,
    verify_note,
    with_signatures,
)
from trustfleet.audit.tiles import consistency_proof
from trustfleet.errors import TrustFleetError, VerificationFailed
from trustfleet.fileio import write_atomic
from trustfleet.services.audit import current_note, publish_dir, tile_reader
from trustfleet.services.runtime import Runtime
from trustfleet.services.witness_client import WitnessRefusal, request_cosignature
from trustfleet.settings.operations import WitnessSettings
from trustfleet.store import Transaction

__all__ = ["gather_cosignatures"]

logger = logging.getLogger(__name__)

_REFUSED = "audit.witness_refused"


@dataclass(frozen=True)
class _Target:
    size: int
    note: bytes  # the log's signature only


def gather_cosignatures(rt: Runtime, *, now: datetime) -> int:
    """Ask each witness that has not cosigned the newest checkpoint; return how many did."""
    if not rt.settings.audit.witnesses:
        return 0
    with rt.uow.begin(read_only=True) as tx:
        latest = tx.audit.latest_checkpoint()
        if latest is None:
            return 0
        target = _Target(size=latest.size, note=latest.note)
        last = {w.key: tx.audit.last_cosigned(parse_verifier_key(w.key).name)
                for w in rt.settings.audit.witnesses}  # fmt: skip
    added = 0
    for witness in rt.settings.audit.witnesses:
        if last[witness.key] >= target.size:
            continue
        try:
            added += _ask(rt, witness, target=target, old_size=last[witness.key], now=now)
        except TrustFleetError as exc:
            logger.warning("witness %s: %s", witness.url, exc.one_line())
    if added:
        write_atomic(publish_dir(rt) / "checkpoint", current_note(rt))
    return added


def _proof(rt: Runtime, *, old_size: int, new_size: int) -> list[bytes]:
    if old_size in (0, new_size):
        return []
    with rt.uow.begin(read_only=True) as tx:
        return consistency_proof(old_size=old_size, new_size=new_size, read_tile=tile_reader(tx))


def _ask(
    rt: Runtime, witness: WitnessSettings, *, target: _Target, old_size: int, now: datetime
) -> int:
    verifier = parse_verifier_key(witness.key)
    ca = rt.settings.path(witness.ca) if witness.ca else None
    answer: list[NoteSignature] | WitnessRefusal = WitnessRefusal(status=0, reason="")
    for _attempt in range(2):
        answer = request_cosignature(
            witness.url, old_size=old_size, note=target.note, ca_file=ca,
            proof=_proof(rt, old_size=old_size, new_size=target.size),
            timeout_s=rt.settings.audit.witness_timeout_s,
        )  # fmt: skip
        if not (isinstance(answer, WitnessRefusal) and answer.status == 409):
            break
        if answer.size is None or answer.size > target.size or answer.size == old_size:
            break
        old_size = answer.size  # the witness told us what it has: prove from there
    if isinstance(answer, WitnessRefusal):
        _record_refusal(rt, witness, verifier, answer, size=target.size, now=now)
        return 0
    return _keep(rt, verifier, answer, target=target, now=now)


def _keep(
    rt: Runtime,
    verifier: Verifier,
    signatures: list[NoteSignature],
    *,
    target: _Target,
    now: datetime,
) -> int:
    mine = [s for s in signatures if s.name == verifier.name and s.key_id == verifier.key_id]
    if not mine:
        raise VerificationFailed(
            f"witness {verifier.name} answered without a cosignature by its configured key",
            hint="check [audit] witnesses key against 'trustfleet witness init' output",
            code="audit.witness_key",
        )
    verify_note(with_signatures(parse_note(target.note), mine), verifiers=[verifier])
    with rt.uow.begin() as tx:
        tx.audit.add_cosignature(
            size=target.size, witness=verifier.name, line=mine[0].line(), now=now
        )
    return 1


def _record_refusal(
    rt: Runtime,
    witness: WitnessSettings,
    verifier: Verifier,
    refusal: WitnessRefusal,
    *,
    size: int,
    now: datetime,
) -> None:
    subject = f"witness:{verifier.name}"[:128]
    logger.warning("witness %s refused checkpoint %d: %d %s", verifier.name, size,
                   refusal.status, refusal.reason)  # fmt: skip
    with rt.uow.begin() as tx:
        if _already_recorded(tx, subject, verifier.name, refusal):
            return
        tx.events.append(
            type=_REFUSED,
            actor="system",
            subject=subject,
            details={"url": witness.url, "status": refusal.status, "reason": refusal.reason,
                     "size": size, "witness_size": refusal.size},
            now=now,
            outcome="refused",
        )  # fmt: skip


def _already_recorded(tx: Transaction, subject: str, name: str, refusal: WitnessRefusal) -> bool:
    """The same refusal is already the newest one, and the witness has cosigned nothing since:
    recorded once while it lasts (from the store, so every process and restart agrees)."""
    last = tx.events.last_about(subject, types=(_REFUSED,))
    if last is None or (last.details.get("status"), last.details.get("reason")) != (
        refusal.status, refusal.reason,
    ):  # fmt: skip
        return False
    refused_at = last.details.get("size")
    return isinstance(refused_at, int) and refused_at > tx.audit.last_cosigned(name)
