"""``server restore``: a backup unpacked into a new server home, checked before it is kept.

The new folder must be new or empty; on any failure (wrong passphrase, a changed or cut file, a
bad entry) nothing of it is left. Every file and folder gets the mode recorded in the backup
(those of docs/architecture.md, "A server home"). Paths in ``trustfleet.toml`` are relative to
the home, so they stay right; what held the old home's absolute path is written again: the
SoftHSM2 configuration (its token folder) and an absolute SQLite ``[store] url``. A backup of a
PostgreSQL store holds a ``pg_dump`` (``db/trustfleet.pgdump``): it is loaded with
``pg_restore`` into the EMPTY database named by ``store_url`` (required; a database with tables
is refused before anything is unpacked), ``[store] url`` is set to it and the dump is removed
from the new home. The restore is recorded as a ``server.restored`` security event in the
restored store.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO, Final

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from trustfleet.audit.context import current_operator
from trustfleet.errors import Conflict, InvalidInput
from trustfleet.fileio import DIR_MODE, PRIVATE_DIR_MODE, make_dirs, removed_on_failure
from trustfleet.keystore import softhsm_token_dir, write_softhsm_conf
from trustfleet.services.backup import sqlite_path
from trustfleet.services.backup_archive import ArchiveLimits, ArchiveReader, check_path
from trustfleet.services.backup_crypto import decrypt_chunks, read_header
from trustfleet.services.backup_pg import check_empty, pg_restore
from trustfleet.settings import load_server_settings, update_server_settings
from trustfleet.store import UnitOfWork, create_engine

__all__ = ["RestoreReport", "restore_backup"]

logger = logging.getLogger(__name__)

_MAX_BACKUP_BYTES: Final = 512 << 30


@dataclass(frozen=True)
class RestoreReport:
    """A restored home.

    Attributes:
        home: The new home.
        files: Files restored.
        bytes: Their total size.
        meta: The backup's manifest metadata (created_at, source_home, schema_revision…).
    """

    home: Path
    files: int
    bytes: int
    meta: dict[str, Any]


def _check_new_home(home: Path) -> bool:
    """Whether ``home`` must be created (False: an empty folder was given)."""
    if home.is_symlink() or (home.exists() and not home.is_dir()):
        raise InvalidInput(
            f"{home} is {'a symbolic link' if home.is_symlink() else 'not a folder'}",
            hint="give a new folder to restore into", code="restore.home.invalid",
        )  # fmt: skip
    if home.exists() and any(home.iterdir()):
        raise Conflict(
            f"{home} exists and is not empty; restore never overwrites a home",
            hint="give a new folder", code="restore.home.not_empty",
        )  # fmt: skip
    return not home.exists()


def _open_backup(source: Path) -> BinaryIO:
    try:
        fd = os.open(source, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise InvalidInput(
            f"cannot read {source}: {exc.strerror or exc}", hint="give the backup file",
            code="restore.source.invalid",
        ) from exc  # fmt: skip
    handle = os.fdopen(fd, "rb")
    size = os.fstat(fd).st_size
    if not os.path.isfile(source) or size > _MAX_BACKUP_BYTES:
        handle.close()
        raise InvalidInput(
            f"{source} is not a regular file of at most {_MAX_BACKUP_BYTES >> 30} GiB",
            hint="give the backup file", code="restore.source.invalid",
        )  # fmt: skip
    return handle


def restore_backup(
    source: Path,
    *,
    home: Path,
    passphrase: bytes | None = None,
    identity: X25519PrivateKey | None = None,
    now: datetime,
    limits: ArchiveLimits | None = None,
    progress: Callable[[int, int], None] | None = None,
    store_url: str | None = None,
) -> RestoreReport:
    """Unpack the backup ``source`` into the new folder ``home``.

    Args:
        store_url: An EMPTY PostgreSQL database for a backup of a PostgreSQL store (required
            for one, refused for a SQLite one).

    Raises:
        Conflict: ``home`` is not empty; the ``store_url`` database has tables.
        InvalidInput: A wrong kind of key, a malformed file or entry, an unsafe path or mode;
            ``store_url`` missing for a PostgreSQL backup (``restore.store_url.missing``) or
            given for a SQLite one (``restore.store_url.unexpected``).
        VerificationFailed: Wrong passphrase or identity, a changed or cut file.
        Config: ``pg_restore`` is missing or failed.
    """
    created = _check_new_home(home)
    if store_url is not None:
        check_empty(store_url)
    with _open_backup(source) as stream:
        total = os.fstat(stream.fileno()).st_size
        header = read_header(stream)
        chunks = decrypt_chunks(stream, header, passphrase=passphrase, identity=identity)
        first = next(chunks)  # the key is checked before anything is created
        make_dirs(home, mode=PRIVATE_DIR_MODE)
        with removed_on_failure(home, created=created):
            done = 0

            def advance(size: int) -> None:
                nonlocal done
                done += size
                if progress is not None:
                    progress(min(done, total), total)

            reader = ArchiveReader(home, limits=limits or ArchiveLimits(), progress=advance)
            restored = reader.extract(_prepend(first, chunks))
            os.chmod(home, DIR_MODE)
            meta = dict(restored.meta)
            _load_store(home, meta, store_url)
            _fix_paths(home, meta)
            _record(home, meta, now=now)
    logger.info("restored %s into %s", source, home)
    return RestoreReport(home=home, files=restored.files, bytes=restored.total_bytes, meta=meta)


def _prepend(first: bytes, rest: Any) -> Any:
    yield first
    yield from rest


def _fix_paths(home: Path, meta: dict[str, Any]) -> None:
    """Write again what held the old home's absolute path; check the new home loads."""
    settings = load_server_settings(home)
    conf = settings.path(settings.keystore.softhsm_conf)
    old_home = str(meta.get("source_home") or "")
    if old_home and conf.is_file() and conf.is_relative_to(home):
        token_dir = softhsm_token_dir(conf)
        if token_dir is not None and token_dir.is_relative_to(old_home):
            write_softhsm_conf(conf, token_dir=home / token_dir.relative_to(old_home))
    store_rel = str(meta.get("store_path") or "db/trustfleet.sqlite3")
    if meta.get("store") == "postgresql":
        pass  # [store] url set by _load_store
    elif sqlite_path(settings).resolve() != (home / store_rel).resolve():
        update_server_settings(home, {"store": {"url": f"sqlite:///{store_rel}"}})
    (home / "run").mkdir(mode=PRIVATE_DIR_MODE, exist_ok=True)


def _load_store(home: Path, meta: dict[str, Any], store_url: str | None) -> None:
    """A PostgreSQL backup: its dump loaded into ``store_url``, ``[store] url`` set to it."""
    if meta.get("store") != "postgresql":
        if store_url is not None:
            raise InvalidInput(
                "this backup holds a SQLite store; --store-url is for a PostgreSQL one",
                hint="restore without --store-url", code="restore.store_url.unexpected",
            )  # fmt: skip
        return
    if store_url is None:
        raise InvalidInput(
            "this backup holds a PostgreSQL store: give the empty database to restore it into",
            hint="create an empty database, then add --store-url postgresql+psycopg://USER@HOST/DB",
            code="restore.store_url.missing",
        )  # fmt: skip
    dump = home / check_path(str(meta.get("store_path") or "db/trustfleet.pgdump"))
    check_empty(store_url)  # again: it may have been filled while the files were unpacked
    pg_restore(store_url, dump)
    update_server_settings(home, {"store": {"url": store_url}})
    dump.unlink()


def _record(home: Path, meta: dict[str, Any], *, now: datetime) -> None:
    settings = load_server_settings(home)
    engine = create_engine(settings.store_url())
    try:
        with UnitOfWork(engine).begin() as tx:
            tx.events.append(
                type="server.restored",
                actor=current_operator(),
                subject="server",
                details={
                    "backup_created_at": str(meta.get("created_at", ""))[:40],
                    "source_home": str(meta.get("source_home", ""))[:300],
                    "schema_revision": str(meta.get("schema_revision", ""))[:40],
                },
                now=now,
            )
    finally:
        engine.dispose()
