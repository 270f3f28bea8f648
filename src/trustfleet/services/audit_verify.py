"""``trustfleet audit verify``: checkpoints, proofs, consistency, a published log, the whole store.

Each check adds lines to an :class:`AuditReport`: what was verified (``checks``) and what is
wrong (``findings``, each naming what changed). The pure parts are in :mod:`trustfleet.audit`;
this module reads files, a published log (:class:`LogSource`) or the store, and reports.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from trustfleet.audit.checkpoint import Checkpoint, parse_checkpoint
from trustfleet.audit.entry import decode_entry
from trustfleet.audit.logcheck import Finding, check_entries
from trustfleet.audit.merkle import ProofError, leaf_hash, verify_consistency, verify_inclusion
from trustfleet.audit.note import Verifier, parse_note, verify_note
from trustfleet.audit.proof_file import TlogProof
from trustfleet.audit.tiles import (
    TILE_WIDTH,
    ReadTile,
    consistency_proof,
    decode_entry_bundle,
    verify_tiles,
)
from trustfleet.errors import TrustFleetError
from trustfleet.services.audit import current_note, publish_dir, tile_reader
from trustfleet.services.audit_source import LogSource
from trustfleet.services.runtime import Runtime

__all__ = [
    "AuditReport",
    "check_checkpoint",
    "check_consistency",
    "check_proof",
    "check_published",
    "check_store",
    "safe_reader",
]

_ENTRY_BATCH = 10_000


@dataclass
class AuditReport:
    """What a verification checked and found.

    Attributes:
        checks: One line per thing verified.
        findings: What is wrong; empty when everything verified.
        checkpoint: The checkpoint verified last (origin, size, root), if any.
    """

    checks: list[str] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    checkpoint: Checkpoint | None = None

    @property
    def ok(self) -> bool:
        """Whether nothing is wrong."""
        return not self.findings

    def fail(self, kind: str, message: str, entries: tuple[int, ...] = ()) -> None:
        """Add a finding."""
        self.findings.append(Finding(kind, message, entries))

    def to_json(self) -> dict[str, Any]:
        """The report as a JSON document."""
        cp = self.checkpoint
        return {
            "ok": self.ok,
            "checkpoint": None if cp is None
            else {"origin": cp.origin, "size": cp.size, "root": cp.root.hex()},
            "checks": self.checks,
            "findings": [
                {"kind": f.kind, "message": f.message, "entries": list(f.entries)}
                for f in self.findings
            ],
        }  # fmt: skip


def check_checkpoint(
    report: AuditReport,
    note: bytes,
    *,
    log: Verifier,
    witnesses: Sequence[Verifier] = (),
    min_witnesses: int = 0,
    what: str = "checkpoint",
) -> Checkpoint | None:
    """Verify a signed checkpoint: the log's signature, its origin, the witnesses' cosignatures."""
    try:
        parsed = parse_note(note)
        verify_note(parsed, verifiers=[log])
        checkpoint = parse_checkpoint(parsed.text)
    except TrustFleetError as exc:
        report.fail("signature", f"{what} is not a valid checkpoint signed by {log.name}: {exc}")
        return None
    if checkpoint.origin != log.name:
        report.fail("signature", f"{what} is for log {checkpoint.origin!r}, not {log.name!r}")
        return None
    report.checks.append(f"{what}: size {checkpoint.size}, signed by {log.name}")
    cosigned = []
    for witness in witnesses:
        try:
            verify_note(parsed, verifiers=[witness])
            cosigned.append(witness.name)
        except TrustFleetError as exc:
            report.checks.append(f"{what}: no valid cosignature by {witness.name} ({exc})")
    if cosigned:
        report.checks.append(f"{what}: cosigned by {', '.join(cosigned)}")
    if len(cosigned) < min_witnesses:
        report.fail(
            "witnesses",
            f"{what} has {len(cosigned)} valid cosignature(s), {min_witnesses} required",
        )
    report.checkpoint = checkpoint
    return checkpoint


def check_proof(
    report: AuditReport,
    data: bytes,
    *,
    log: Verifier,
    witnesses: Sequence[Verifier] = (),
    min_witnesses: int = 0,
    entry: bytes | None = None,
) -> None:
    """Verify a tlog-proof file: its checkpoint, then the entry's inclusion in it."""
    proof = TlogProof.parse(data)
    checkpoint = check_checkpoint(
        report, proof.note, log=log, witnesses=witnesses, min_witnesses=min_witnesses
    )
    entry = entry if entry is not None else proof.extra
    if checkpoint is None or entry is None:
        if entry is None:
            report.fail("proof", "the proof carries no entry: give it with --entry FILE")
        return
    try:
        verify_inclusion(
            leaf=leaf_hash(entry), index=proof.index, size=checkpoint.size,
            proof=proof.hashes, root=checkpoint.root,
        )  # fmt: skip
        event = decode_entry(entry, id=proof.index + 1)
    except TrustFleetError as exc:
        report.fail("proof", f"entry at index {proof.index} is not in the checkpoint's tree: {exc}")
        return
    report.checks.append(
        f"entry {event.id} ({event.type} by {event.actor} about {event.subject}) is in the log"
    )


def check_consistency(
    report: AuditReport, old: Checkpoint, new: Checkpoint, *, read_tile: ReadTile | None
) -> None:
    """Verify that ``new`` extends ``old`` (append-only), with a proof from ``new``'s tiles."""
    if new.size < old.size:
        report.fail("rollback", f"rollback: a checkpoint of size {old.size} was seen, "
                                f"now the log shows size {new.size}")  # fmt: skip
        return
    if new.size == old.size:
        if new.root != old.root:
            report.fail("split_view", f"split view: two checkpoints of size {new.size} "
                                      "with different roots")  # fmt: skip
        else:
            report.checks.append(f"the checkpoint seen before (size {old.size}) is the same")
        return
    try:
        proof = [] if old.size == 0 or read_tile is None else consistency_proof(
            old_size=old.size, new_size=new.size, read_tile=read_tile
        )  # fmt: skip
        verify_consistency(old_size=old.size, new_size=new.size, old_root=old.root,
                           new_root=new.root, proof=proof)  # fmt: skip
    except TrustFleetError as exc:
        report.fail("inconsistent", f"the log of size {new.size} does not extend the checkpoint "
                                    f"of size {old.size} seen before: {exc}")  # fmt: skip
        return
    report.checks.append(f"size {new.size} extends the checkpoint of size {old.size} seen before")


def check_published(
    report: AuditReport,
    source: LogSource,
    *,
    log: Verifier,
    witnesses: Sequence[Verifier] = (),
    min_witnesses: int = 0,
    seen: bytes | None = None,
) -> None:
    """Verify a published log: checkpoint, every tile, every entry, and the one seen before."""
    checkpoint = check_checkpoint(
        report, source.read("checkpoint"), log=log, witnesses=witnesses,
        min_witnesses=min_witnesses,
    )  # fmt: skip
    if checkpoint is None:
        return
    read = source.tile_reader(checkpoint.size)
    try:
        verify_tiles(size=checkpoint.size, root=checkpoint.root, read_tile=read)
    except TrustFleetError as exc:
        report.fail("tiles", f"published tiles do not match the checkpoint: {exc}")
        return
    report.checks.append(f"tiles of {source.location} lead to the checkpoint's root")
    result = check_entries(
        size=checkpoint.size, root=checkpoint.root, read_tile=read,
        entries=_published_entries(report, source, size=checkpoint.size),
    )  # fmt: skip
    report.findings.extend(result.findings)
    report.checks.append(f"{result.checked} published entries match the tree")
    if seen is not None:
        _check_seen(report, seen, checkpoint, log=log, read_tile=read)


def _published_entries(
    report: AuditReport, source: LogSource, *, size: int
) -> Iterator[tuple[int, bytes]]:
    for index in range(0, (size + TILE_WIDTH - 1) // TILE_WIDTH):
        try:
            bundle = decode_entry_bundle(source.entry_bundle(index, size=size))
        except TrustFleetError as exc:
            report.fail("entries", f"entry bundle {index}: {exc}")
            continue
        for offset, data in enumerate(bundle):
            yield index * TILE_WIDTH + offset + 1, data


def _check_seen(
    report: AuditReport, seen: bytes, current: Checkpoint, *, log: Verifier, read_tile: ReadTile
) -> None:
    old = check_checkpoint(report, seen, log=log, what="checkpoint seen before")
    if old is not None:
        report.checkpoint = current
        check_consistency(report, old, current, read_tile=read_tile)


def check_store(
    report: AuditReport,
    rt: Runtime,
    *,
    log: Verifier,
    witnesses: Sequence[Verifier] = (),
    seen: bytes | None = None,
) -> None:
    """Verify the whole log against the store: checkpoint, tiles, every event, published copy."""
    checkpoint = check_checkpoint(report, current_note(rt), log=log, witnesses=witnesses)
    if checkpoint is None:
        return
    with rt.uow.begin(read_only=True) as tx:
        read = tile_reader(tx)
        result = check_entries(
            size=checkpoint.size, root=checkpoint.root, read_tile=safe_reader(read),
            entries=_store_entries(tx),
        )  # fmt: skip
        report.findings.extend(result.findings)
        if result.intact:
            report.checks.append(
                f"all {result.checked} logged events in the store match the tree"
                + (f" ({result.pending} newer, not yet in a checkpoint)" if result.pending else "")
            )
        if seen is not None:
            _check_seen(report, seen, checkpoint, log=log, read_tile=safe_reader(read))
        _compare_published(report, rt, checkpoint, log=log, read_tile=safe_reader(read))


def safe_reader(read: ReadTile) -> ReadTile:
    """A reader whose missing tile is a ProofError (so it becomes a finding, not a crash)."""

    def wrapped(level: int, index: int) -> bytes:
        try:
            return read(level, index)
        except TrustFleetError as exc:
            raise ProofError(str(exc)) from None

    return wrapped


def _store_entries(tx: Any) -> Iterator[tuple[int, bytes]]:
    after = 0
    while True:
        batch = tx.events.entries(after_id=after, limit=_ENTRY_BATCH)
        if not batch:
            return
        yield from batch
        after = batch[-1][0]


def _compare_published(
    report: AuditReport, rt: Runtime, checkpoint: Checkpoint, *, log: Verifier, read_tile: ReadTile
) -> None:
    """The published copy must verify on its own and be a prefix of the store's log."""
    base = publish_dir(rt)
    if not (base / "checkpoint").exists():
        report.checks.append(f"no published copy at {base} (nothing compared)")
        return
    copy = AuditReport()
    try:
        check_published(copy, LogSource(str(base)), log=log)
    except TrustFleetError as exc:
        copy.fail("published", str(exc))
    for finding in copy.findings:
        report.fail(finding.kind, f"published copy {base}: {finding.message}", finding.entries)
    if copy.ok and copy.checkpoint is not None:
        check_consistency(report, copy.checkpoint, checkpoint, read_tile=read_tile)
        report.checks.append(f"the published copy at {base} verifies (size {copy.checkpoint.size})")
