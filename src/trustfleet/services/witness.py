"""The witness's service: its state per log, its key, its alerts (c2sp.org/tlog-witness).

:class:`Witness` answers ``add-checkpoint`` requests with :func:`trustfleet.audit.witness.review`
and keeps, per log origin, the last checkpoint it cosigned in ``state/<sha256(origin)>.json``
(written atomically before the answer). Checking a request against that record and replacing
it happen under one lock, and ``witness serve`` holds the home's lock file, so no two requests
can both advance a log (the race the specification describes). A split view or a failed proof
of a checkpoint the log signed appends a record to ``alerts.jsonl`` and is logged: it is the
witness's security event, evidence that the log showed two histories.

A corrupt state file stops the witness: forgetting a log's state would let it accept a rollback.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Protocol

from trustfleet.audit import (
    ED25519,
    Note,
    RawSigner,
    Verifier,
    format_note,
    parse_checkpoint,
    parse_note,
    parse_verifier_key,
)
from trustfleet.audit.witness import (
    Cosigned,
    Decision,
    Outcome,
    cosign_checkpoint,
    format_signature_lines,
    review,
)
from trustfleet.errors import Config, InvalidInput
from trustfleet.fileio import PRIVATE_FILE_MODE, fsync_dir, read_bounded, write_atomic
from trustfleet.keystore import PinSource, Pkcs11Uri, find_module, open_ed25519_key
from trustfleet.settings.witness import WitnessHomeSettings, load_witness_settings

__all__ = [
    "ALERTS_FILE",
    "SIZE_CONTENT_TYPE",
    "ClosableSigner",
    "Witness",
    "WitnessReply",
    "load_state",
    "log_verifiers",
    "origin_hash",
    "witness_alerts",
    "witness_status",
]

logger = logging.getLogger(__name__)

ALERTS_FILE: Final = "alerts.jsonl"
SIZE_CONTENT_TYPE: Final = "text/x.tlog.size"
_TEXT: Final = "text/plain; charset=utf-8"
_STATE_DIR: Final = "state"
_MAX_STATE_BYTES: Final = 256 * 1024


@dataclass(frozen=True)
class WitnessReply:
    """The HTTP answer to one request.

    Attributes:
        status: The HTTP status.
        body: The body (cosignature lines, the size for 409, else the reason).
        content_type: Its media type.
        outcome: The decision's outcome.
    """

    status: int
    body: bytes
    content_type: str
    outcome: Outcome


def origin_hash(origin: str) -> str:
    """The lowercase hex SHA-256 of a log origin (the state file's and the URL's name)."""
    return hashlib.sha256(origin.encode("utf-8")).hexdigest()


class ClosableSigner(RawSigner, Protocol):
    """The witness's key: signs, and closes its token session."""

    def close(self) -> None:
        """Close the key's session."""
        ...


class Witness:
    """An open witness: its settings, the logs' keys, its state and its token key.

    Use :meth:`open`; close it when done (it holds a token session).
    """

    def __init__(
        self,
        settings: WitnessHomeSettings,
        *,
        signer: ClosableSigner,
        logs: Mapping[str, Sequence[Verifier]],
    ) -> None:
        self.settings = settings
        self._signer = signer
        self._logs = logs
        self._latest = load_state(settings)
        self._lock = threading.Lock()

    @classmethod
    def open(cls, settings: WitnessHomeSettings) -> Witness:
        """Load the logs' keys and the state, and open the witness's key in its token.

        Raises:
            InvalidInput: A log key is malformed.
            Config: A state file is malformed.
            NotFound, PermissionDenied, Unavailable: The token or key cannot be opened.
        """
        logs = log_verifiers(settings.logs)
        uri = Pkcs11Uri.parse(settings.key)
        pin = PinSource.parse(uri.pin_source or "", base_dir=settings.home).read()
        signer = open_ed25519_key(
            uri,
            pin=pin,
            module=find_module(settings.keystore.module or None),
            conf=settings.path(settings.keystore.softhsm_conf),
        )
        return cls(settings, signer=signer, logs=logs)

    def close(self) -> None:
        """Close the token session."""
        self._signer.close()

    def add_checkpoint(self, body: bytes, *, now: datetime) -> WitnessReply:
        """Answer an ``add-checkpoint`` request body (cosign, or refuse with the reason)."""
        with self._lock:
            decision = review(
                body,
                logs=self._logs,
                latest=self._latest,
                max_bytes=self.settings.max_body_bytes,
            )
            if decision.outcome is Outcome.COSIGN:
                signature, record = cosign_checkpoint(
                    decision,
                    name=self.settings.name,
                    signer=self._signer,
                    timestamp_s=max(int(now.timestamp()), 1),
                )
                _save_record(self.settings, record)  # persisted before the answer
                self._latest[record.checkpoint.origin] = record
                logger.info(
                    "cosigned %s at size %d", record.checkpoint.origin, record.checkpoint.size
                )
                return WitnessReply(
                    200, format_signature_lines([signature]), _TEXT, decision.outcome
                )
            if decision.evidence is not None:
                _alert(self.settings, decision, now=now)
        return _refusal(decision)

    def checkpoint(self, hashed_origin: str) -> bytes | None:
        """The cosigned note of the log whose origin hashes to ``hashed_origin``, if any."""
        with self._lock:
            for origin, record in self._latest.items():
                if origin_hash(origin) == hashed_origin:
                    return format_note(record.note)
        return None


def _refusal(decision: Decision) -> WitnessReply:
    if decision.outcome is Outcome.SIZE_MISMATCH:
        body = f"{decision.known_size}\n".encode()
        return WitnessReply(decision.status, body, SIZE_CONTENT_TYPE, decision.outcome)
    logger.info("refused a checkpoint (%s): %s", decision.outcome, decision.reason)
    return WitnessReply(decision.status, f"{decision.reason}\n".encode(), _TEXT, decision.outcome)


def log_verifiers(vkeys: Sequence[str]) -> dict[str, list[Verifier]]:
    """The logs' Ed25519 keys by origin (a log's origin is its key's name).

    Raises:
        InvalidInput: No key, or a key is malformed or not an Ed25519 note key.
    """
    if not vkeys:
        raise InvalidInput("a witness needs at least one log key", hint="give --log VKEY")
    logs: dict[str, list[Verifier]] = {}
    for vkey in vkeys:
        try:
            verifier = parse_verifier_key(vkey)
        except InvalidInput as exc:
            exc.hint = exc.hint or "give each log's checkpoint verifier key 'name+keyid+base64'"
            raise
        if verifier.key_type != ED25519:
            raise InvalidInput(
                f"log key {verifier.name!r} is not an Ed25519 note key",
                hint="give the log's checkpoint verifier key (type 0x01)",
            )
        logs.setdefault(verifier.name, []).append(verifier)
    return logs


def load_state(settings: WitnessHomeSettings) -> dict[str, Cosigned]:
    """The last cosigned checkpoint of each log, from ``state/``.

    Raises:
        Config: A state file is unreadable or malformed (the witness must not forget a log).
    """
    records: dict[str, Cosigned] = {}
    folder = settings.path(_STATE_DIR)
    for path in sorted(folder.glob("*.json")):
        record = _read_record(path)
        records[record.checkpoint.origin] = record
    return records


def _read_record(path: Path) -> Cosigned:
    try:
        raw = read_bounded(path, max_bytes=_MAX_STATE_BYTES)
        if raw is None:
            raise InvalidInput("larger than a record can be")
        data = json.loads(raw)
        note = parse_note(str(data["note"]).encode("utf-8"))
        checkpoint = parse_checkpoint(note.text)
        time_s = int(data["cosigned_at_s"])
    except (OSError, ValueError, KeyError, TypeError, InvalidInput) as exc:
        raise Config(
            f"witness state {path} is unreadable or malformed: {exc}",
            hint="restore it from a backup; never delete it (the witness would accept a rollback)",
        ) from exc
    if path.stem != origin_hash(checkpoint.origin):
        raise Config(f"witness state {path} holds another log's checkpoint")
    return Cosigned(checkpoint=checkpoint, note=note, time_s=time_s)


def _record_document(record: Cosigned) -> dict[str, Any]:
    checkpoint = record.checkpoint
    return {
        "origin": checkpoint.origin,
        "size": checkpoint.size,
        "root": _b64(checkpoint.root),
        "cosigned_at": _iso(record.time_s),
        "cosigned_at_s": record.time_s,
        "note": format_note(record.note).decode("utf-8"),
    }


def _save_record(settings: WitnessHomeSettings, record: Cosigned) -> None:
    path = settings.path(_STATE_DIR) / f"{origin_hash(record.checkpoint.origin)}.json"
    document = json.dumps(_record_document(record), indent=2, sort_keys=True) + "\n"
    write_atomic(path, document.encode("utf-8"), mode=PRIVATE_FILE_MODE)


def _alert(settings: WitnessHomeSettings, decision: Decision, *, now: datetime) -> None:
    """Append the evidence of a split view or a failed proof to ``alerts.jsonl``, durably."""
    evidence = decision.evidence
    if evidence is None:
        return
    record = {
        "time": now.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "origin": evidence.origin,
        "outcome": str(decision.outcome),
        "reason": evidence.reason,
        "cosigned": _note_text(evidence.cosigned),
        "submitted": _note_text(evidence.submitted),
    }
    logger.warning("ALERT %s for log %s: %s", decision.outcome, evidence.origin, evidence.reason)
    line = (json.dumps(record, sort_keys=True, separators=(",", ":")) + "\n").encode("utf-8")
    path = settings.path(ALERTS_FILE)
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(path, flags, PRIVATE_FILE_MODE)
    try:
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)
    fsync_dir(path.parent)


def _note_text(note: Note | None) -> str | None:
    return None if note is None else format_note(note).decode("utf-8")


def witness_status(home: Path) -> list[dict[str, Any]]:
    """Per log the witness has cosigned: origin, size, root, when (no token needed).

    Raises:
        Config: The home or a state file is missing or malformed.
    """
    settings = load_witness_settings(home)
    documents = [_record_document(r) for r in load_state(settings).values()]
    for document in documents:
        del document["note"]
    return sorted(documents, key=lambda d: str(d["origin"]))


def witness_alerts(home: Path) -> list[dict[str, Any]]:
    """The alert records, oldest first.

    Raises:
        Config: The home is missing or the alerts file is unreadable or malformed.
    """
    settings = load_witness_settings(home)
    path = settings.path(ALERTS_FILE)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError) as exc:
        raise Config(f"cannot read {path}: {exc}") from exc
    try:
        return [json.loads(line) for line in lines if line.strip()]
    except ValueError as exc:
        raise Config(f"{path} has a malformed record: {exc}") from exc


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _iso(time_s: int) -> str:
    return datetime.fromtimestamp(time_s, UTC).isoformat().replace("+00:00", "Z")
