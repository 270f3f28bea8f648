"""The audit log's integrator: security events into the Merkle tree, signed checkpoints, tiles.

Every state change commits with its security event (the entry) in one transaction. Integration
follows within ``[audit] interval_s``: :func:`integrate` takes the integrator lock, hashes the
events after the last checkpoint into the tree's tiles, signs the new checkpoint with the log key
(Ed25519, inside the service token) and stores tiles and checkpoint in one transaction. Then
:func:`publish` writes the new tiles, entry bundles and checkpoint under ``[audit] publish_dir``
(C2SP tlog-tiles; the checkpoint file last, so a reader never sees a checkpoint whose tiles are
not there yet), and :func:`gather_cosignatures` asks the witnesses to cosign (C2SP tlog-witness).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from trustfleet.audit.checkpoint import Checkpoint, parse_checkpoint
from trustfleet.audit.context import current_operator
from trustfleet.audit.merkle import leaf_hash
from trustfleet.audit.note import (
    ED25519,
    MAX_NOTE_BYTES,
    format_note,
    parse_note,
    sign_note,
    verifier_key,
)
from trustfleet.audit.proof_file import TlogProof
from trustfleet.audit.tiles import (
    TILE_WIDTH,
    ReadTile,
    append_leaves,
    encode_entry_bundle,
    entries_path,
    inclusion_proof,
    tile_path,
)
from trustfleet.errors import NotFound, TrustFleetError, VerificationFailed
from trustfleet.fileio import DIR_MODE, make_dirs, read_bounded, sync_filesystem, write_atomic
from trustfleet.services.queries import Page, parse_cursor
from trustfleet.services.runtime import Runtime
from trustfleet.store import SecurityEventRecord, Transaction

__all__ = [
    "Integrated",
    "current_note",
    "integrate",
    "list_entries",
    "log_verifier_key",
    "on_each",
    "prove_entry",
    "publish",
    "publish_dir",
    "record_refused_command",
    "tile_reader",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Integrated:
    """One new checkpoint.

    Attributes:
        old_size: The tree's size before.
        checkpoint: The new checkpoint.
        note: Its signed note (the log's signature only).
        entries: The bytes of the entries it added (ids ``old_size + 1`` on), as hashed.
    """

    old_size: int
    checkpoint: Checkpoint
    note: bytes
    entries: tuple[bytes, ...] = field(default=(), repr=False)


def record_refused_command(
    rt: Runtime, *, command: str, error: TrustFleetError, now: datetime
) -> None:
    """Record an operator command the service refused (``operator.refused``, outcome refused).

    Never raises: when even this cannot be written (the store is down), the command's own
    error is what the operator must see.
    """
    try:
        with rt.uow.begin() as tx:
            tx.events.append(
                type="operator.refused",
                actor=current_operator(),
                subject=f"command:{command or 'trustfleet'}"[:128],
                details={"error": error.one_line()[:1000], "code": error.code or "",
                         "category": type(error).__name__},
                now=now,
                outcome="refused",
            )  # fmt: skip
    except TrustFleetError as exc:
        logger.info("could not record the refused command %r: %s", command, exc.one_line())


def log_verifier_key(rt: Runtime) -> str:
    """The log's verifier key as text (signed-note vkey: Ed25519, named after the origin)."""
    return verifier_key(rt.settings.audit.origin, ED25519, rt.audit_key().public_bytes_raw())


def list_entries(
    rt: Runtime,
    *,
    actor: str | None = None,
    device: str | None = None,
    kind: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int,
    cursor: str | None = None,
) -> Page[SecurityEventRecord]:
    """One page of the log's entries, oldest first; the cursor is the last id shown."""
    after = parse_cursor(cursor)
    with rt.uow.begin(read_only=True) as tx:
        items = tx.events.list(
            after_id=after, limit=limit, type=kind, actor=actor, device=device,
            since=since, until=until,
        )  # fmt: skip
    more = str(items[-1].id) if len(items) == limit else None
    return Page(items=tuple(items), next_cursor=more)


def prove_entry(rt: Runtime, entry_id: int, *, size: int | None = None) -> TlogProof:
    """An inclusion proof of entry ``entry_id`` in the newest checkpoint (or the one of ``size``).

    Raises:
        NotFound: No such checkpoint, or the entry is not in it yet.
    """
    note = current_note(rt, size=size)
    checkpoint = parse_checkpoint(parse_note(note).text)
    if entry_id > checkpoint.size:
        raise NotFound(
            f"entry {entry_id} is not in the checkpoint of size {checkpoint.size} yet",
            hint="wait for the next checkpoint (about a second) or run "
            "'trustfleet audit checkpoint --now'",
        )
    with rt.uow.begin(read_only=True) as tx:
        hashes = inclusion_proof(
            index=entry_id - 1, size=checkpoint.size, read_tile=tile_reader(tx)
        )
        found = tx.events.entries(after_id=entry_id - 1, limit=1)
    entry = found[0][1] if found and found[0][0] == entry_id else None
    return TlogProof(index=entry_id - 1, hashes=tuple(hashes), note=note, extra=entry)


def tile_reader(tx: Transaction) -> ReadTile:
    """A :data:`ReadTile` over the store's tiles (cached for the transaction)."""
    cache: dict[tuple[int, int], bytes] = {}

    def read(level: int, index: int) -> bytes:
        key = (level, index)
        if key not in cache:
            found = tx.audit.tiles([key])
            if key not in found:
                raise NotFound(f"audit tile {tile_path(level, index)} is not in the store")
            cache[key] = found[key]
        return cache[key]

    return read


def integrate(rt: Runtime, *, now: datetime) -> Integrated | None:
    """Add the events after the last checkpoint to the tree and sign a checkpoint.

    The new tree is computed and signed on a read snapshot, so appenders are not held up while
    entries are read and hashed; the write transaction (the integrator lock) only checks that
    no other integrator got there first and stores the tiles and the checkpoint.

    Returns:
        The new checkpoint, or None when no event arrived since the last one (or another
        integrator stored this one first).

    Raises:
        Unavailable: The store or the token cannot be reached (nothing is changed).
        VerificationFailed: An event id is missing (``audit.entry_missing``).
    """
    settings = rt.settings.audit
    with rt.uow.begin(read_only=True) as tx:  # one snapshot: a prefix of the commit order
        latest = tx.audit.latest_checkpoint()
        old_size = latest.size if latest else 0
        entries = tx.events.entries(after_id=old_size, limit=settings.batch_max)
        if not entries:
            return None
        _check_dense(entries, after=old_size)
        update = append_leaves(
            size=old_size,
            read_tile=tile_reader(tx),
            leaf_hashes=[leaf_hash(data) for _, data in entries],
        )
    checkpoint = Checkpoint(origin=settings.origin, size=update.size, root=update.root)
    note = format_note(sign_note(checkpoint.text(), name=settings.origin, signer=rt.audit_key()))
    with rt.uow.begin() as tx:
        tx.audit.lock()
        now_latest = tx.audit.latest_checkpoint()
        if (now_latest.size if now_latest else 0) != old_size:
            return None  # another integrator (another server) extended the tree meanwhile
        tx.audit.put_tiles(update.tiles)
        tx.audit.add_checkpoint(size=update.size, root=update.root, note=note, signed_at=now)
    added = tuple(data for _, data in entries)
    return Integrated(old_size=old_size, checkpoint=checkpoint, note=note, entries=added)


def _check_dense(entries: list[tuple[int, bytes]], *, after: int) -> None:
    """Entry ids must follow the tree (id = leaf index + 1): a gap means a deleted event."""
    last_id = entries[-1][0]
    if last_id != after + len(entries):
        have = {entry_id for entry_id, _ in entries}
        gap = next(i for i in range(after + 1, last_id + 1) if i not in have)
        raise VerificationFailed(
            f"security event {gap} is missing from the store; the audit log cannot go on",
            hint="see 'trustfleet audit verify --home DIR': events are never deleted",
            code="audit.entry_missing",
        )


def current_note(rt: Runtime, *, size: int | None = None) -> bytes:
    """The signed checkpoint (latest, or of ``size``) with the witnesses' cosignatures."""
    with rt.uow.begin(read_only=True) as tx:
        record = tx.audit.latest_checkpoint() if size is None else tx.audit.checkpoint(size)
        if record is None:
            raise NotFound(
                "the audit log has no checkpoint yet" if size is None
                else f"the audit log has no checkpoint of size {size}",
                hint="'trustfleet server run' makes them; or 'trustfleet audit checkpoint --now'",
            )  # fmt: skip
        lines = tx.audit.cosignatures(record.size)
    return record.note + "".join(lines).encode("utf-8")


def publish_dir(rt: Runtime) -> Path:
    """Where the log is published as tlog-tiles."""
    return rt.settings.path(rt.settings.audit.publish_dir)


def publish(rt: Runtime, *, from_size: int = 0, entries: Sequence[bytes] = ()) -> int:
    """Write the tiles and entry bundles past ``from_size``, then the checkpoint file.

    ``from_size`` 0 re-publishes everything (``trustfleet audit publish``: repairs a damaged
    copy). ``entries``: the bytes of the entries from ``from_size + 1`` on that the caller
    already holds (:func:`on_each`: those just integrated), not read from the store again.
    Returns the published size.
    """
    base = publish_dir(rt)
    make_dirs(base, mode=DIR_MODE)
    note = current_note(rt)
    size = parse_checkpoint(parse_note(note).text).size
    with rt.uow.begin(read_only=True) as tx:
        read = tile_reader(tx)
        _write_hash_tiles(base, read=read, from_size=from_size, size=size)
        _write_entry_bundles(base, tx=tx, from_size=from_size, size=size, known=entries)
    sync_filesystem(base)  # every tile and bundle on disk before the checkpoint naming them
    write_atomic(base / "checkpoint", note)
    return size


def _write(base: Path, relative: str, data: bytes) -> None:
    path = base / relative
    make_dirs(path.parent, mode=DIR_MODE)
    write_atomic(path, data, sync=False)  # publish syncs them all at once


def _write_hash_tiles(base: Path, *, read: ReadTile, from_size: int, size: int) -> None:
    level, first, last = 0, from_size, size  # leaves [first, last) changed at this level
    while last > 0:
        for index in range(first // TILE_WIDTH, (last - 1) // TILE_WIDTH + 1):
            width = min(TILE_WIDTH, last - index * TILE_WIDTH)
            _write(base, tile_path(level, index, width), read(level, index)[: 32 * width])
        level, first, last = level + 1, first // TILE_WIDTH, last // TILE_WIDTH


def _write_entry_bundles(
    base: Path, *, tx: Transaction, from_size: int, size: int, known: Sequence[bytes]
) -> None:
    for index in range(from_size // TILE_WIDTH, (size - 1) // TILE_WIDTH + 1 if size else 0):
        start = index * TILE_WIDTH
        width = min(TILE_WIDTH, size - start)
        bundle = _bundle(tx, start, start + width, known_from=from_size, known=known)
        _write(base, entries_path(index, width), encode_entry_bundle(bundle))


def _bundle(
    tx: Transaction, start: int, end: int, *, known_from: int, known: Sequence[bytes]
) -> list[bytes]:
    """The entries at leaf indexes ``[start, end)``: from ``known`` (indexes ``known_from``
    on) where it has them, from the store before and after."""
    low, high = max(start, known_from), min(end, known_from + len(known))
    if low >= high:
        return _stored(tx, start, end)
    held = list(known[low - known_from : high - known_from])
    return _stored(tx, start, low) + held + _stored(tx, high, end)


def _stored(tx: Transaction, start: int, end: int) -> list[bytes]:
    """The stored entries at leaf indexes ``[start, end)`` (ids ``start + 1`` to ``end``)."""
    if start >= end:
        return []
    return [data for _, data in tx.events.entries(after_id=start, limit=end - start)]


def _published_size(base: Path) -> int:
    """The size of the checkpoint file in the published folder (0: none, or unreadable)."""
    try:
        note = read_bounded(base / "checkpoint", max_bytes=MAX_NOTE_BYTES)
        return parse_checkpoint(parse_note(note).text).size if note is not None else 0
    except (OSError, TrustFleetError):
        return 0


def _latest_size(rt: Runtime) -> int:
    with rt.uow.begin(read_only=True) as tx:
        latest = tx.audit.latest_checkpoint()
    return latest.size if latest else 0


def on_each(rt: Runtime, *, now: Callable[[], datetime]) -> Integrated | None:
    """One round of the sequencer: integrate, then publish what the published folder lacks.

    The folder is brought up to the newest checkpoint from what it holds (its own checkpoint
    file), not from the previous checkpoint in the store: a round that stopped between the
    store's commit and the publication (a crash) is made good by the next one.
    """
    done = integrate(rt, now=now())
    published = _published_size(publish_dir(rt))
    if done is not None:
        start = min(done.old_size, published)
        publish(rt, from_size=start, entries=done.entries if start == done.old_size else ())
        logger.info("audit checkpoint %d (+%d)", done.checkpoint.size,
                    done.checkpoint.size - done.old_size)  # fmt: skip
    elif published < _latest_size(rt):
        publish(rt, from_size=published)
    return done
