"""Helpers for the ``server run`` lifecycle tests: a home, ``server run`` in its own session.

Every process is a :class:`~trustfleet.sim.process.ManagedProcess`, stopped by the process
group this kit started, never by name. Waits (:func:`wait_for`, i.e.
:func:`support.waiting.eventually`) are bounded and never asserted as durations.
"""

from __future__ import annotations

import json
import os
import socket
import ssl
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from support.server import TRUSTFLEET, init_home, override_settings
from support.waiting import eventually as wait_for
from trustfleet.sim.process import ManagedProcess, free_port

WAIT_S = 60.0


@dataclass
class Home:
    """An initialised server home and its two ports."""

    path: Path
    api_port: int
    mqtt_port: int

    @property
    def run_dir(self) -> Path:
        return self.path / "run"

    def children(self) -> dict[str, int]:
        """``name -> pid`` from the running server's children record (empty if none)."""
        try:
            doc = json.loads((self.run_dir / "children.json").read_text())
        except (OSError, ValueError):
            return {}
        return {str(e["name"]): int(e["pid"]) for e in doc["children"]}

    def get(self, path: str) -> httpx.Response:
        ctx = ssl.create_default_context(cafile=str(self.path / "public" / "ca-bundle.pem"))
        with httpx.Client(verify=ctx, timeout=10) as client:
            return client.get(f"https://localhost:{self.api_port}{path}")

    def events(self, type_: str) -> list[Any]:
        from trustfleet.services.runtime import Runtime
        from trustfleet.settings import load_server_settings

        rt = Runtime.open(load_server_settings(self.path))
        try:
            with rt.uow.begin(read_only=True) as tx:
                return tx.events.list(type=type_, limit=1000)
        finally:
            rt.close()


def make_home(tmp_path: Path, settings: Mapping[str, str] | None = None) -> Home:
    api_port, mqtt_port = free_port(), free_port()
    home = tmp_path / "home"
    init_home(home, port=api_port, mqtt_port=mqtt_port)
    override_settings(home, settings or {})
    return Home(path=home, api_port=api_port, mqtt_port=mqtt_port)


class Server(ManagedProcess):
    """``trustfleet server run --home HOME`` in a new session, started at once; output in
    ``log``; :meth:`stop` SIGTERMs its group, then SIGKILLs it after ``WAIT_S / 2``."""

    def __init__(self, home: Home, *extra: str, log: Path) -> None:
        argv = [TRUSTFLEET, "server", "run", "--home", home.path, *extra]
        super().__init__(argv, log=log, name="trustfleet server run")
        self.home = home
        self.start()

    def text(self) -> str:
        return self.log_text()

    def wait_serving(self) -> None:
        """Until the ready line is printed (the server is up), bounded."""
        wait_for(lambda: "serving" in self.text() or not self.running)
        assert self.running, self.text()

    def stop(self, *, timeout_s: float = WAIT_S / 2) -> int | None:
        """SIGTERM its whole group (pid-based), then SIGKILL; the exit code."""
        return super().stop(timeout_s=timeout_s)


@contextmanager
def serving(home: Home, *extra: str, log: Path) -> Iterator[Server]:
    server = Server(home, *extra, log=log)
    try:
        server.wait_serving()
        yield server
    finally:
        server.stop()


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            state = fh.read().rsplit(b")", 1)[-1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in (b"Z", b"X")


def session_pids(sid: int) -> list[int]:
    """Live processes of session ``sid`` (a server started by this kit leads its own)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.getsid(int(entry.name)) == sid and alive(int(entry.name)):
                    found.append(int(entry.name))
            except (ProcessLookupError, PermissionError):
                continue
    return found


@contextmanager
def listening(port: int, *, reuse_port: bool = False) -> Iterator[socket.socket]:
    """A TCP listener on 127.0.0.1:port (what takes a port in the tests).

    With ``reuse_port`` it is what a leftover HTTPS worker of a killed run looks like: a
    server binding with SO_REUSEPORT too would share the port with it.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(1)
    try:
        yield sock
    finally:
        sock.close()
