"""The parent of ``server run`` notices rotated TLS files and makes its servers load them.

``trustfleet server rotate-tls`` (any process) only writes files (services/tls_rotation.py);
every ``[broker] revocation_poll_s`` the parent compares their identity (inode, size, mtime)
with what it saw: a new broker chain or key is installed in Mosquitto (SIGHUP: its listener
loads the certificate again, live connections stay); a new API chain, key or CA bundle makes
each HTTPS worker, one after the other, build a new TLS context (SIGHUP, handled in
``_https_worker``). A failed reload is retried at the next poll.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from trustfleet.errors import TrustFleetError
from trustfleet.server._broker_side import BrokerSide
from trustfleet.server._supervise import Supervisor
from trustfleet.settings import ServerSettings

__all__ = ["TlsWatch"]

logger = logging.getLogger(__name__)

_Stamp = tuple[tuple[int, int, int], ...]


def _stamp(paths: Sequence[Path]) -> _Stamp:
    stamps = []
    for path in paths:
        try:
            st = path.stat()
        except OSError:
            stamps.append((0, 0, 0))
            continue
        stamps.append((st.st_ino, st.st_size, st.st_mtime_ns))
    return tuple(stamps)


class TlsWatch:
    """Follows the API's and the broker's TLS files and reloads them where they are served."""

    def __init__(self, settings: ServerSettings, side: BrokerSide, supervisor: Supervisor) -> None:
        self._interval_s = settings.broker.revocation_poll_s
        self._api = [
            settings.path(settings.api.tls_cert),
            settings.path(settings.api.tls_key),
            settings.path("public/ca-bundle.pem"),
        ]
        self._broker = [
            settings.path(settings.broker.tls_cert),
            settings.path(settings.broker.tls_key),
        ]
        self._side, self._supervisor = side, supervisor
        self._seen = {"api": _stamp(self._api), "broker": _stamp(self._broker)}
        self._next = 0.0

    def tick(self) -> None:
        """Reload what changed since the last look (at most every poll interval)."""
        now = time.monotonic()
        if now < self._next:
            return
        self._next = now + self._interval_s
        self._follow("api", self._api, self._reload_https)
        if self._side.running:
            self._follow("broker", self._broker, self._side.broker.reload_tls)

    def _follow(self, name: str, paths: Sequence[Path], reload: Callable[[], None]) -> None:
        stamp = _stamp(paths)
        if stamp == self._seen[name]:
            return
        try:
            reload()
        except TrustFleetError as exc:
            logger.warning("%s TLS files not reloaded (will retry): %s", name, exc.one_line())
            return
        self._seen[name] = stamp
        logger.info("%s TLS files reloaded", name)

    def _reload_https(self) -> None:
        for child, pid in self._supervisor.children():
            if child.startswith("https#"):
                try:
                    os.kill(pid, signal.SIGHUP)
                except ProcessLookupError:
                    continue  # it died: the supervisor starts a new one with the new files
