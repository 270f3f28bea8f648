"""PostgreSQL stores in backups: ``pg_dump --format=custom`` out, ``pg_restore`` in.

The client binaries are PostgreSQL's own (Debian's ``postgresql-client``), found like the test
support finds the server's: ``$TF_PG_BINDIR``, then ``/usr/lib/postgresql/<newest>/bin``, then
``$PATH``. The connection comes from the store URL: host, port, user and database as a libpq
connection string (no password in it); the password, if the URL has one, goes into a
``0600`` passfile in a private (``0700``) temporary folder named by ``PGPASSFILE``, so it is
never on a command line. ``pg_dump`` reads the whole database in one repeatable-read
transaction (one snapshot). ``pg_restore`` loads a dump into an EMPTY database in one
transaction (``--single-transaction --exit-on-error``), without the source's owners and
grants (``--no-owner --no-privileges``: the target URL's user owns what it restores).
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final

from psycopg.conninfo import make_conninfo
from sqlalchemy import text
from sqlalchemy.engine import URL, make_url

from trustfleet.errors import Config, Conflict, InvalidInput
from trustfleet.fileio import PRIVATE_FILE_MODE
from trustfleet.store import create_engine

__all__ = [
    "DUMP_NAME",
    "check_empty",
    "is_postgres",
    "pg_dump",
    "pg_restore",
    "pg_tool",
]

DUMP_NAME: Final = "trustfleet.pgdump"
"""The dump's file name (in a backup: ``db/trustfleet.pgdump``; in a pre-migration copy)."""

_TIMEOUT_S: Final = 6 * 3600
_ERR_CHARS: Final = 600


def is_postgres(url: str) -> bool:
    """Whether a store URL names PostgreSQL."""
    return make_url(url).drivername.split("+")[0] in ("postgresql", "postgres")


def pg_tool(name: str) -> Path:
    """The path of a PostgreSQL client binary (``pg_dump``, ``pg_restore``).

    Raises:
        Config: Not found (code ``backup.pg.missing``).
    """
    candidates: list[Path] = []
    if os.environ.get("TF_PG_BINDIR"):
        candidates.append(Path(os.environ["TF_PG_BINDIR"]))
    versions = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"),
        key=lambda p: int(Path(p).parent.name) if Path(p).parent.name.isdigit() else 0,
        reverse=True,
    )
    candidates.extend(Path(p) for p in versions)
    for bindir in candidates:
        if (bindir / name).is_file() and os.access(bindir / name, os.X_OK):
            return bindir / name
    on_path = shutil.which(name)
    if on_path:
        return Path(on_path)
    raise Config(
        f"{name} not found: a PostgreSQL store is backed up with PostgreSQL's client tools",
        hint="install postgresql-client (the major version of the server or newer) or set "
        "TF_PG_BINDIR",
        code="backup.pg.missing",
    )  # fmt: skip


def _conninfo(url: URL) -> str:
    """A libpq connection string for ``url``, without its password."""
    params: dict[str, str] = {}
    for key, value in url.query.items():
        params[key] = value if isinstance(value, str) else value[-1]
    if url.host:
        params["host"] = url.host
    if url.port:
        params["port"] = str(url.port)
    if url.username:
        params["user"] = url.username
    params["dbname"] = url.database or ""
    return make_conninfo("", **params)


def _escape(field: str) -> str:
    return field.replace("\\", "\\\\").replace(":", "\\:")


@contextmanager
def _environment(url: URL) -> Iterator[dict[str, str]]:
    """The child's environment: with a password, ``PGPASSFILE`` (0600, in a private folder)."""
    env = dict(os.environ)
    if url.password is None:
        yield env
        return
    env.pop("PGPASSWORD", None)
    with tempfile.TemporaryDirectory(prefix="tf-pg-") as folder:
        os.chmod(folder, 0o700)
        passfile = Path(folder) / "pgpass"
        fd = os.open(passfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(f"*:*:*:*:{_escape(str(url.password))}\n")
        env["PGPASSFILE"] = str(passfile)
        yield env


def _run(argv: list[str], env: dict[str, str], *, code: str) -> None:
    try:
        result = subprocess.run(
            argv, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
            errors="replace", timeout=_TIMEOUT_S, check=False,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise Config(f"{Path(argv[0]).name} failed: {exc}", code=code) from exc
    if result.returncode != 0:
        detail = " ".join(result.stderr.split())[-_ERR_CHARS:]
        raise Config(
            f"{Path(argv[0]).name} failed ({result.returncode}): {detail}",
            hint="check the store URL, that the server is reachable and the client tools' "
            "version (not older than the server)",
            code=code,
        )  # fmt: skip


def pg_dump(url: str, dest: Path) -> None:
    """Dump the database of ``url`` into the new file ``dest`` (custom format, 0600).

    Raises:
        Config: ``pg_dump`` is missing or failed (code ``backup.pg.dump``).
    """
    parsed = make_url(url)
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, PRIVATE_FILE_MODE)
    os.close(fd)
    argv = [
        str(pg_tool("pg_dump")), "--format=custom", "--no-password",
        f"--file={dest}", f"--dbname={_conninfo(parsed)}",
    ]  # fmt: skip
    with _environment(parsed) as env:
        _run(argv, env, code="backup.pg.dump")
    os.chmod(dest, PRIVATE_FILE_MODE)


def check_empty(url: str) -> None:
    """Refuse a target database that holds tables (restore never merges into a store).

    Raises:
        InvalidInput: Not a PostgreSQL URL (code ``restore.store.invalid``).
        Conflict: The database has tables (code ``restore.store.not_empty``).
        Unavailable: It cannot be reached.
    """
    if not is_postgres(url):
        raise InvalidInput(
            "--store-url must name a PostgreSQL database (postgresql+psycopg://…)",
            hint="create an empty database and give its URL", code="restore.store.invalid",
        )  # fmt: skip
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            count = connection.execute(
                text(
                    "SELECT count(*) FROM information_schema.tables WHERE table_schema "
                    "NOT IN ('pg_catalog', 'information_schema')"
                )
            ).scalar_one()
    finally:
        engine.dispose()
    if count:
        raise Conflict(
            f"the database {make_url(url).database} holds {count} tables; restore needs an "
            "empty database",
            hint="create a new database (CREATE DATABASE …) and give its URL",
            code="restore.store.not_empty",
        )  # fmt: skip


def pg_restore(url: str, dump: Path) -> None:
    """Load ``dump`` into the empty database of ``url`` in one transaction.

    Raises:
        Config: ``pg_restore`` is missing or failed (code ``restore.pg.failed``).
    """
    parsed = make_url(url)
    argv = [
        str(pg_tool("pg_restore")), "--no-password", "--single-transaction", "--exit-on-error",
        "--no-owner", "--no-privileges", f"--dbname={_conninfo(parsed)}", str(dump),
    ]  # fmt: skip
    with _environment(parsed) as env:
        _run(argv, env, code="restore.pg.failed")
