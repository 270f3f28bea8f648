"""A throwaway PostgreSQL cluster for tests, started from the server binaries on this host.

The cluster lives in a temporary directory owned by the ``postgres`` OS user (initdb refuses
to run as root, so when the tests run as root every server command goes through
``runuser -u postgres --``). It listens on a free loopback port and a private socket
directory, with fsync off, and is stopped by its data directory, never by process name.
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from trustfleet.sim.process import free_port, wait_until

START_TIMEOUT_S = 60
STOP_TIMEOUT_S = 60
SERVICE_USER = "postgres"


class PostgresUnavailable(RuntimeError):
    """PostgreSQL cannot be run on this host (the message says why)."""


def find_bindir() -> Path:
    """The directory holding ``initdb`` and ``pg_ctl``.

    Looks at ``$TF_PG_BINDIR``, then ``/usr/lib/postgresql/<newest>/bin``, then ``$PATH``.

    Raises:
        PostgresUnavailable: No PostgreSQL server binaries were found.
    """
    candidates: list[Path] = []
    if os.environ.get("TF_PG_BINDIR"):
        candidates.append(Path(os.environ["TF_PG_BINDIR"]))
    versions = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name), reverse=True
    )
    candidates.extend(Path(p) for p in versions)
    on_path = shutil.which("pg_ctl")
    if on_path:
        candidates.append(Path(on_path).parent)
    for bindir in candidates:
        if (bindir / "initdb").is_file() and (bindir / "pg_ctl").is_file():
            return bindir
    raise PostgresUnavailable(
        "PostgreSQL server binaries (initdb, pg_ctl) not found; install postgresql or set "
        "TF_PG_BINDIR"
    )


@dataclass
class PostgresCluster:
    """A running cluster. Use :func:`running_cluster` to get one."""

    bindir: Path
    root: Path
    port: int

    @property
    def data_dir(self) -> Path:
        """The cluster's data directory."""
        return self.root / "data"

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the ``postgres`` database as the ``postgres`` superuser."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def conninfo(self, dbname: str = "postgres") -> str:
        """libpq connection string for ``dbname``."""
        return f"host=127.0.0.1 port={self.port} user=postgres dbname={dbname}"

    def create_database(self) -> str:
        """Create an empty database with a random name and return its name."""
        name = f"tf_{secrets.token_hex(6)}"
        with psycopg.connect(self.conninfo(), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return name

    def drop_database(self, name: str) -> None:
        """Drop a database, disconnecting whoever still uses it."""
        with psycopg.connect(self.conninfo(), autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )

    def log_tail(self, max_chars: int = 4000) -> str:
        """The end of the server log, for failure messages."""
        try:
            return (self.root / "server.log").read_text(errors="replace")[-max_chars:]
        except OSError:
            return "(no server log)"


def _as_service_user(argv: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return argv
    runuser = shutil.which("runuser")
    if runuser is None:
        raise PostgresUnavailable("running as root but runuser(1) is missing")
    return [runuser, "-u", SERVICE_USER, "--", *argv]


def _run(argv: list[str], *, timeout_s: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        _as_service_user(argv),
        check=False,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        stdin=subprocess.DEVNULL,
    )


def _make_root() -> Path:
    root = Path(tempfile.mkdtemp(prefix="tf-pg-"))
    if os.geteuid() == 0:
        try:
            user = pwd.getpwnam(SERVICE_USER)
        except KeyError as exc:
            shutil.rmtree(root)
            raise PostgresUnavailable(
                f"running as root but there is no {SERVICE_USER!r} OS user"
            ) from exc
        os.chown(root, user.pw_uid, user.pw_gid)
    return root


def _start(cluster: PostgresCluster) -> None:
    options = (
        f"-k {cluster.root} -p {cluster.port} -c listen_addresses=127.0.0.1 -c fsync=off "
        "-c full_page_writes=off -c synchronous_commit=off"
    )
    result = _run(
        [
            str(cluster.bindir / "pg_ctl"),
            "-D", str(cluster.data_dir),
            "-l", str(cluster.root / "server.log"),
            "-o", options,
            "-w", "-t", str(START_TIMEOUT_S),
            "start",
        ],
        timeout_s=START_TIMEOUT_S + 10,
    )  # fmt: skip
    if result.returncode != 0:
        raise RuntimeError(
            f"pg_ctl start failed ({result.returncode}): {result.stderr}\n{cluster.log_tail()}"
        )
    wait_until(
        lambda: _accepts(cluster),
        timeout_s=START_TIMEOUT_S,
        what=f"PostgreSQL on port {cluster.port}",
        poll_s=0.1,
    )


def _accepts(cluster: PostgresCluster) -> bool:
    try:
        with psycopg.connect(cluster.conninfo(), connect_timeout=2) as conn:
            conn.execute("SELECT 1")
    except psycopg.OperationalError:
        return False
    return True


def _stop(cluster: PostgresCluster) -> None:
    _run(
        [str(cluster.bindir / "pg_ctl"), "-D", str(cluster.data_dir), "-m", "fast", "-w",
         "-t", str(STOP_TIMEOUT_S), "stop"],
        timeout_s=STOP_TIMEOUT_S + 10,
    )  # fmt: skip


def restart(cluster: PostgresCluster) -> None:
    """Stop the server (fast shutdown: every session ends) and start it again on its port."""
    _stop(cluster)
    _start(cluster)


@contextmanager
def running_cluster() -> Iterator[PostgresCluster]:
    """Create, start, and afterwards stop and delete a throwaway cluster.

    Raises:
        PostgresUnavailable: PostgreSQL cannot be run on this host.
        RuntimeError: initdb or the server failed (the message holds their output).
    """
    bindir = find_bindir()
    root = _make_root()
    try:
        cluster = PostgresCluster(bindir=bindir, root=root, port=free_port())
        result = _run(
            [str(bindir / "initdb"), "-D", str(cluster.data_dir), "-A", "trust", "-U",
             "postgres", "-E", "UTF8", "--no-sync", "--locale=C"],
            timeout_s=120,
        )  # fmt: skip
        if result.returncode != 0:
            raise RuntimeError(f"initdb failed ({result.returncode}): {result.stderr}")
        for attempt in range(3):  # the free port may be taken before the server binds it
            try:
                _start(cluster)
                break
            except RuntimeError:
                if attempt == 2:
                    raise
                cluster.port = free_port()
        try:
            yield cluster
        finally:
            _stop(cluster)
    finally:
        shutil.rmtree(root, ignore_errors=True)
