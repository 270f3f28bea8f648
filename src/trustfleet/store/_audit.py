"""Repository of the audit log's Merkle tree: hash tiles, signed checkpoints, cosignatures."""

from __future__ import annotations

import builtins
from collections.abc import Iterable, Mapping
from datetime import datetime

from sqlalchemy import func, select, tuple_

from trustfleet.store import _validate as check
from trustfleet.store._models import AuditCheckpointRow, AuditCosignatureRow, AuditTileRow
from trustfleet.store._rows import record_of
from trustfleet.store._session import SessionHandle
from trustfleet.store.records import AuditCheckpointRecord

__all__ = ["AuditRepository"]


class AuditRepository:
    """The audit log's tree within one transaction. Get it as ``tx.audit``.

    Entries are the security events themselves (``tx.events``); this holds what is derived from
    them and signed: the hash tiles (level, index) -> 32-byte hashes, and the checkpoints.
    """

    def __init__(self, handle: SessionHandle) -> None:
        self._handle = handle

    def lock(self) -> None:
        """Take the integrator's lock until the transaction ends (one integrator at a time).

        SQLite: a writing transaction already holds the database's write lock. PostgreSQL: an
        EXCLUSIVE table lock on ``audit_checkpoints`` (plain reads are not blocked).
        """
        session = self._handle.session
        if session.get_bind().dialect.name == "postgresql":
            session.connection().exec_driver_sql("LOCK TABLE audit_checkpoints IN EXCLUSIVE MODE")

    def tiles(self, keys: Iterable[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
        """The stored tiles among ``keys`` ((level, index) pairs); absent ones are left out."""
        wanted = list(set(keys))
        out: dict[tuple[int, int], bytes] = {}
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            query = select(AuditTileRow.level, AuditTileRow.idx, AuditTileRow.hashes).where(
                tuple_(AuditTileRow.level, AuditTileRow.idx).in_(chunk)
            )
            for level, idx, hashes in self._handle.session.execute(query):
                out[(level, idx)] = bytes(hashes)
        return out

    def put_tiles(self, tiles: Mapping[tuple[int, int], bytes]) -> None:
        """Store tiles (new ones, or a grown right-most tile)."""
        session = self._handle.session
        for (level, idx), hashes in tiles.items():
            session.merge(AuditTileRow(level=level, idx=idx, hashes=hashes))
        session.flush()

    def latest_checkpoint(self) -> AuditCheckpointRecord | None:
        """The newest (largest) checkpoint, or None before the first."""
        query = select(AuditCheckpointRow).order_by(AuditCheckpointRow.size.desc()).limit(1)
        row = self._handle.session.scalars(query).first()
        return None if row is None else record_of(AuditCheckpointRecord, row)

    def checkpoint(self, size: int) -> AuditCheckpointRecord | None:
        """The checkpoint of the tree of ``size`` entries, if one was signed."""
        row = self._handle.session.get(AuditCheckpointRow, size)
        return None if row is None else record_of(AuditCheckpointRecord, row)

    def add_checkpoint(
        self, *, size: int, root: bytes, note: bytes, signed_at: datetime
    ) -> AuditCheckpointRecord:
        """Store a signed checkpoint (append-only: triggers refuse UPDATE and DELETE)."""
        row = AuditCheckpointRow(
            size=size, root=root, note=note, signed_at=check.aware(signed_at, name="signed_at")
        )
        self._handle.session.add(row)
        self._handle.session.flush()
        return record_of(AuditCheckpointRecord, row)

    def add_cosignature(self, *, size: int, witness: str, line: str, now: datetime) -> None:
        """Keep a witness's cosignature line of the checkpoint of ``size`` (once per witness)."""
        session = self._handle.session
        if session.get(AuditCosignatureRow, (size, witness)) is None:
            session.add(
                AuditCosignatureRow(
                    size=size, witness=witness, line=line, received_at=check.aware(now, name="now")
                )
            )
            session.flush()

    def last_cosigned(self, witness: str) -> int:
        """The size of the newest checkpoint ``witness`` cosigned (0: none)."""
        query = select(func.max(AuditCosignatureRow.size)).where(
            AuditCosignatureRow.witness == witness
        )
        return self._handle.session.scalar(query) or 0

    def cosignatures(self, size: int) -> builtins.list[str]:
        """The witnesses' cosignature lines of the checkpoint of ``size``, by witness name."""
        query = (
            select(AuditCosignatureRow.line)
            .where(AuditCosignatureRow.size == size)
            .order_by(AuditCosignatureRow.witness)
        )
        return list(self._handle.session.scalars(query))
