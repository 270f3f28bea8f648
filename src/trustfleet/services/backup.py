"""``server backup``: one encrypted file holding a server home, consistent while it runs.

What goes in, in this order (so that what is copied later never refers to what is missing):
the audit log's tiles (before the store: the store's events are a superset of the tiles), a
snapshot of the store (SQLite: the online backup API, one read transaction while writers go
on; PostgreSQL: ``pg_dump --format=custom``, one repeatable-read transaction, stored as
``db/trustfleet.pgdump``), the OTA folder with the TUF repository (holding its writers'
``flock``), the tokens (holding ``tokens/softhsm2.conf.lock``, the lock every process holds
while it logs in), then everything else: configuration, secrets, public, tls, broker
configuration, tpm-vendor.
Left out: ``run/`` and ``broker/run/`` (what processes write while they run), the store's
own files (replaced by the snapshot), the ``[lifecycle] backup_dir``, dotfiles (locks and
temporaries), links, sockets and devices (named in the report). The offline folder of the
root keys is not in the home and not in a backup (custodians keep it).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import stat
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO, Final

from sqlalchemy.engine import make_url

from trustfleet import product_version
from trustfleet.audit.context import current_operator
from trustfleet.errors import Config, InvalidInput
from trustfleet.fileio import PRIVATE_FILE_MODE, fsync_dir
from trustfleet.keystore import conf_lock
from trustfleet.services._ota_keys import repo_files
from trustfleet.services.backup_archive import ArchiveWriter
from trustfleet.services.backup_crypto import BackupKey, EncryptingWriter
from trustfleet.services.backup_pg import DUMP_NAME, is_postgres, pg_dump
from trustfleet.services.runtime import Runtime
from trustfleet.settings import ServerSettings
from trustfleet.store import schema_revision

__all__ = ["BackupReport", "sqlite_path", "sqlite_snapshot", "take_backup"]

logger = logging.getLogger(__name__)

Progress = Callable[[int, int], None]
"""Called with (bytes done, bytes expected)."""

_SKIPPED_DIRS: Final = ("run", "broker/run")
_FIRST: Final = ("audit", "db", "ota", "tokens")  # the order of the consistent parts


@dataclass(frozen=True)
class BackupReport:
    """What a backup holds.

    Attributes:
        out: The file written.
        files: Files in it.
        bytes: Their total size (plaintext).
        schema_revision: The store's schema revision (Alembic).
        skipped: Paths left out because they are links, sockets or devices.
        kdf: How the file key is made: ``scrypt`` (passphrase) or ``x25519`` (recipient).
    """

    out: Path
    files: int
    bytes: int
    schema_revision: str
    skipped: tuple[str, ...] = ()
    kdf: str = ""


def sqlite_path(settings: ServerSettings) -> Path:
    """The SQLite file of a home (a PostgreSQL store has none).

    Raises:
        Config: The store is not SQLite (code ``backup.store.unsupported``).
    """
    url = make_url(settings.store_url())
    if not url.drivername.startswith("sqlite") or not url.database:
        raise Config(
            f"the store is {url.drivername.split('+')[0]}, not a SQLite file",
            hint="a PostgreSQL store is copied with pg_dump (services.backup_pg)",
            code="backup.store.unsupported",
        )
    return Path(url.database)


def sqlite_snapshot(source: Path, dest: Path) -> str:
    """Copy a live SQLite store with its online backup API (consistent; writers go on).

    Returns:
        The snapshot's schema revision (``""`` if it has none).
    """
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=30)
    try:
        fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, PRIVATE_FILE_MODE)
        os.close(fd)
        dst = sqlite3.connect(dest)
        try:
            src.backup(dst)
            dst.execute("PRAGMA journal_mode = DELETE")  # one self-contained file
            row = dst.execute(
                "SELECT version_num FROM alembic_version"
                if _has_table(dst, "alembic_version")
                else "SELECT ''"
            ).fetchone()
        finally:
            dst.close()
    finally:
        src.close()
    return str(row[0]) if row else ""


def _has_table(db: sqlite3.Connection, name: str) -> bool:
    query = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?"
    return db.execute(query, (name,)).fetchone() is not None


@dataclass
class _Walk:
    """Adds a home's folders and files to an archive, counting and skipping as it goes."""

    home: Path
    writer: ArchiveWriter
    exclude: set[str]
    progress: Callable[[int], None]
    skipped: list[str] = field(default_factory=list)
    added_dirs: set[str] = field(default_factory=set)

    def tree(self, rel: str) -> None:
        """``rel`` (a folder or file of the home) and everything below it."""
        path = self.home / rel
        st = os.lstat(path)
        if stat.S_ISDIR(st.st_mode):
            self.folder(rel, st.st_mode)
            for child in sorted(os.listdir(path)):
                child_rel = f"{rel}/{child}"
                if child.startswith(".") or child_rel in self.exclude:
                    continue
                self.tree(child_rel)
        elif stat.S_ISREG(st.st_mode):
            self.file(rel, path)
        else:
            self.skipped.append(rel)

    def folder(self, rel: str, mode: int) -> None:
        if rel not in self.added_dirs:
            self.writer.add_dir(rel, mode=mode)
            self.added_dirs.add(rel)

    def file(self, rel: str, path: Path) -> None:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        with os.fdopen(fd, "rb") as source:
            st = os.fstat(source.fileno())
            self.writer.add_file(rel, source, size=st.st_size, mode=st.st_mode)
        self.progress(st.st_size)


def _estimate(home: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(home):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_size
    return total


@contextlib.contextmanager
def _output(out: Path) -> Iterator[BinaryIO]:
    """A new private file beside ``out``, renamed over it only when complete."""
    if out.is_symlink() or out.is_dir():
        raise InvalidInput(
            f"{out} is a link or a folder", hint="give a new file name", code="backup.out.invalid"
        )
    if not out.parent.is_dir():
        raise InvalidInput(
            f"the folder {out.parent} does not exist", hint="create it first",
            code="backup.out.invalid",
        )  # fmt: skip
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, PRIVATE_FILE_MODE)
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, out)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(out.parent)


def take_backup(
    rt: Runtime,
    *,
    out: Path,
    key: BackupKey,
    now: datetime,
    progress: Progress | None = None,
) -> BackupReport:
    """Write an encrypted backup of ``settings.home`` to ``out`` (0600, atomically).

    Args:
        rt: The home's runtime (its settings; the ``server.backup`` event goes to its store).
        out: The backup file (replaced only when complete).
        key: The file key (:func:`key_for_passphrase` or :func:`key_for_recipient`).
        now: Recorded in the manifest.
        progress: Called as bytes are added.

    Raises:
        Config: PostgreSQL without ``pg_dump``, or ``pg_dump`` failed.
        InvalidInput: ``out`` is unusable, or a file changed size while it was read.
        Unavailable: The TUF repository stayed locked.
    """
    settings = rt.settings
    home = settings.home.resolve()
    snapshot, db_rel, tmp_parent = _snapshot_of(rt, home)
    expected, done = _estimate(home), 0

    def advance(size: int) -> None:
        nonlocal done
        done += size
        if progress is not None:
            progress(done, max(expected, done))

    exclude = {*_SKIPPED_DIRS, db_rel, f"{db_rel}-wal", f"{db_rel}-shm", f"{db_rel}-journal"}
    backups = settings.path(settings.lifecycle.backup_dir).resolve()
    if backups.is_relative_to(home):
        exclude.add(str(backups.relative_to(home)))
    out_abs = out.resolve()
    if out_abs.is_relative_to(home):
        exclude.add(str(out_abs.relative_to(home)))
    with (
        _output(out) as handle,
        tempfile.TemporaryDirectory(dir=tmp_parent, prefix=".backup-") as tmp,
    ):
        os.chmod(tmp, 0o700)
        sink = EncryptingWriter(handle, key)
        walk = _Walk(home, ArchiveWriter(sink), exclude, advance)
        revision = _add_consistent(settings, walk, snapshot, db_rel=db_rel, tmp=Path(tmp))
        for name in sorted(os.listdir(home)):
            if name not in _FIRST and not name.startswith(".") and name not in exclude:
                walk.tree(name)
        walk.writer.finish(_meta(settings, db_rel=db_rel, revision=revision, now=now))
        sink.close()
    files = walk.writer.file_count
    logger.info("backup of %s written to %s (%d files)", home, out, files)
    report = BackupReport(
        out=out_abs, files=files, bytes=walk.writer.bytes_written, schema_revision=revision,
        skipped=tuple(walk.skipped), kdf=str(key.header["kdf"]["name"]),
    )  # fmt: skip
    _record(rt, report, now=now)
    return report


def _record(rt: Runtime, report: BackupReport, *, now: datetime) -> None:
    with rt.uow.begin() as tx:
        tx.events.append(
            type="server.backup.taken",
            actor=current_operator(),
            subject="server",
            details={
                "out": str(report.out)[:300], "files": report.files, "bytes": report.bytes,
                "schema_revision": report.schema_revision, "encryption": report.kdf,
            },
            now=now,
        )  # fmt: skip


def _snapshot_of(rt: Runtime, home: Path) -> tuple[Callable[[Path], str], str, Path]:
    """How the store is copied (into a path; returns its revision), where it goes, a tmp parent."""
    url = rt.settings.store_url()
    if is_postgres(url):

        def dump(dest: Path) -> str:
            revision = schema_revision(rt.engine) or ""  # migrations run only at start
            pg_dump(url, dest)
            return revision

        return dump, f"db/{DUMP_NAME}", home
    db = sqlite_path(rt.settings).resolve()
    db_rel = str(db.relative_to(home)) if db.is_relative_to(home) else "db/trustfleet.sqlite3"
    return (lambda dest: sqlite_snapshot(db, dest)), db_rel, db.parent


def _add_consistent(
    settings: ServerSettings,
    walk: _Walk,
    take: Callable[[Path], str],
    *,
    db_rel: str,
    tmp: Path,
) -> str:
    """The audit log, the store's snapshot, the OTA folder and the tokens, in that order."""
    home = walk.home
    if (home / "audit").is_dir():
        walk.tree("audit")
    snapshot = tmp / "store.snapshot"
    revision = take(snapshot)
    parent = ""
    for part in db_rel.split("/")[:-1]:
        parent = f"{parent}/{part}" if parent else part
        walk.folder(parent, os.lstat(home / parent).st_mode if (home / parent).is_dir() else 0o700)
    walk.file(db_rel, snapshot)
    if (home / "db").is_dir():
        walk.tree("db")
    if (home / "ota").is_dir():
        files = repo_files(settings)
        with files.locked() if files.exists() else contextlib.nullcontext():
            walk.tree("ota")
    conf = settings.path(settings.keystore.softhsm_conf)
    if (home / "tokens").is_dir():
        with conf_lock(conf if conf.exists() else None):
            walk.tree("tokens")
    return revision


def _meta(settings: ServerSettings, *, db_rel: str, revision: str, now: datetime) -> dict[str, Any]:
    return {
        "created_at": now.isoformat(),
        "trustfleet_version": product_version(),
        "source_home": str(settings.home.resolve()),
        "store": "postgresql" if db_rel.endswith(DUMP_NAME) else "sqlite",
        "store_path": db_rel,
        "schema_revision": revision,
        "public_url": settings.api.public_url,
    }
