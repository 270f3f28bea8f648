"""Helpers for the ``server run`` lifecycle tests: a home, ``server run`` in its own session.

Every process is stopped by the pid (or process group) this kit started, never by name. Waits
are bounded by :data:`WAIT_S` and never asserted as durations.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from support.server import TRUSTFLEET, free_port, init_home, override_settings

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


class Server:
    """``trustfleet server run --home HOME`` in a new session; output in a log file."""

    def __init__(self, home: Home, *extra: str, log: Path) -> None:
        self.home = home
        self.log = log
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                [str(TRUSTFLEET), "server", "run", "--home", str(home.path), *extra],
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_serving(self) -> None:
        """Until the ready line is printed (the server is up), bounded."""
        wait_for(lambda: "serving" in self.text() or self.proc.poll() is not None)
        assert self.proc.poll() is None, self.text()

    def stop(self) -> int | None:
        """SIGTERM its whole group (pid-based), then SIGKILL; the exit code."""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if self.proc.poll() is not None:
                break
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.proc.wait(WAIT_S / 2)
            except subprocess.TimeoutExpired:
                continue
        return self.proc.poll()


@contextmanager
def serving(home: Home, *extra: str, log: Path) -> Iterator[Server]:
    server = Server(home, *extra, log=log)
    try:
        server.wait_serving()
        yield server
    finally:
        server.stop()


def wait_for(predicate: Callable[[], bool], *, timeout_s: float = WAIT_S) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


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
