"""One home, one server: the home's lock, and what a killed ``server run`` left behind.

``server run`` holds ``HOME/run/server.lock`` (0600, ``flock``) for its whole life, taken
before it writes anything; a second one is refused with the holder's pid. Children die with
the parent through ``PR_SET_PDEATHSIG``, but a child that changed its uid (Mosquitto dropping
privileges) loses that, so the parent also records its children in ``HOME/run/children.json``
(pid, start time, name). A new run, once it holds the lock (so the recorder is dead), stops
each recorded process that still is that very process (same start time) and still works for
this home (its command line or environment names it) — never anything by name.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import time
from pathlib import Path
from typing import Final

from trustfleet.errors import Config
from trustfleet.fileio import write_atomic
from trustfleet.processes import (
    HeldLock,
    ProcessIdentity,
    hold_exclusive,
    identity_of,
    names_folder,
)
from trustfleet.server._readiness import RUN_DIR

__all__ = ["ChildRecord", "hold_home", "run_dir", "stop_leftovers"]

logger = logging.getLogger(__name__)

LOCK_FILE: Final = "server.lock"
CHILDREN_FILE: Final = "children.json"
_MAX_RECORD_BYTES: Final = 256 * 1024
_POLL_S: Final = 0.05


def run_dir(home: Path) -> Path:
    """``HOME/run`` (0700): the lock, the children record, the status file.

    Raises:
        Config: The folder cannot be created or made private.
    """
    path = home / RUN_DIR
    try:
        path.mkdir(mode=0o700, exist_ok=True)
        os.chmod(path, 0o700)
    except OSError as exc:
        raise Config(
            f"cannot prepare {path}: {exc.strerror}",
            hint="check that the home is a folder this user may write",
            code="server.home.run_dir",
        ) from exc
    return path


def hold_home(home: Path) -> HeldLock:
    """Take the home's server lock.

    Raises:
        Conflict: Another ``server run`` serves this home (the message names its pid).
    """
    return hold_exclusive(
        run_dir(home) / LOCK_FILE,
        what=f"the server home {home}",
        hint="another 'trustfleet server run' serves it; stop that one first",
        code="server.home.locked",
    )


class ChildRecord:
    """The record of a run's children in ``HOME/run/children.json`` (rewritten on change)."""

    def __init__(self, home: Path) -> None:
        self.path = run_dir(home) / CHILDREN_FILE
        self._last: list[tuple[str, int]] | None = None

    def update(self, children: list[tuple[str, int]]) -> None:
        """Record ``(name, pid)`` of the children alive now, if that changed."""
        if children == self._last:
            return
        entries = []
        for name, pid in children:
            ident = identity_of(pid)
            if ident is not None:
                entries.append({"name": name, "pid": pid, "start_ticks": ident.start_ticks})
        doc = {"server_pid": os.getpid(), "children": entries}
        write_atomic(self.path, json.dumps(doc, sort_keys=True).encode(), mode=0o600)
        self._last = list(children)

    def clear(self) -> None:
        """After a clean stop: nothing is left."""
        self.path.unlink(missing_ok=True)


def stop_leftovers(home: Path, *, timeout_s: float) -> list[str]:
    """Stop what a killed run of ``home`` left running; the names of what was stopped.

    Call only while holding the home's lock.
    """
    path = run_dir(home) / CHILDREN_FILE
    found = [
        (name, ident)
        for name, ident in _recorded(path)
        if ident.alive() and names_folder(ident.pid, home)
    ]
    for name, ident in found:
        logger.warning("stopping %s (pid %d) left by a previous run", name, ident.pid)
        _signal(ident, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while any(ident.alive() for _n, ident in found) and time.monotonic() < deadline:
        time.sleep(_POLL_S)
    for _name, ident in found:
        if ident.alive():
            _signal(ident, signal.SIGKILL)
    path.unlink(missing_ok=True)
    return [name for name, _ident in found]


def _signal(ident: ProcessIdentity, sig: signal.Signals) -> None:
    if ident.alive():  # checked again right before: the pid may have been reused meanwhile
        try:
            os.kill(ident.pid, sig)
        except (ProcessLookupError, PermissionError) as exc:
            logger.warning("cannot signal pid %d: %s", ident.pid, exc)


def _recorded(path: Path) -> list[tuple[str, ProcessIdentity]]:
    try:
        with path.open("rb") as fh:
            doc = json.loads(fh.read(_MAX_RECORD_BYTES))
        entries = doc["children"]
        return [
            (
                str(e["name"])[:64],
                ProcessIdentity(pid=int(e["pid"]), start_ticks=int(e["start_ticks"])),
            )
            for e in entries
            if int(e["pid"]) > 1
        ]
    except FileNotFoundError:
        return []
    except (OSError, ValueError, KeyError, TypeError) as exc:
        logger.warning("ignoring an unreadable %s: %s", path, exc)
        return []
