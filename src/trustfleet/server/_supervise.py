"""Supervising the child processes of ``server run`` (HTTPS and ingest workers) by pid."""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.context import SpawnContext, SpawnProcess
from typing import Any, Final

__all__ = ["ProcessSpec", "Supervisor"]

logger = logging.getLogger(__name__)

MAX_RESTARTS: Final = 5
"""Restarts in a row (of one kind) before the service gives up."""
STOP_TIMEOUT_S: Final = 5.0


@dataclass(frozen=True)
class ProcessSpec:
    """One child process: a name for logs, a spawn target and its arguments."""

    name: str
    target: Callable[..., Any]
    args: tuple[Any, ...]


class Supervisor:
    """Starts children (spawn), restarts those that die (bounded), stops all by pid."""

    def __init__(self) -> None:
        self.ctx: SpawnContext = multiprocessing.get_context("spawn")
        self._specs: list[ProcessSpec] = []
        self._procs: list[SpawnProcess] = []
        self._restarts: dict[str, int] = {}

    def start(self, spec: ProcessSpec) -> None:
        """Start one child."""
        proc = self.ctx.Process(target=spec.target, args=spec.args, daemon=True, name=spec.name)
        proc.start()
        self._specs.append(spec)
        self._procs.append(proc)
        logger.info("%s started (pid %s)", spec.name, proc.pid)

    @property
    def pids(self) -> list[int]:
        """The pids of the children alive now."""
        return [p.pid for p in self._procs if p.pid is not None and p.is_alive()]

    def check(self) -> bool:
        """Restart every child that died; False once one kind keeps dying."""
        for i, proc in enumerate(self._procs):
            if proc.is_alive():
                continue
            spec = self._specs[i]
            kind = spec.name.split("#")[0]
            self._restarts[kind] = self._restarts.get(kind, 0) + 1
            if self._restarts[kind] > MAX_RESTARTS:
                logger.error("%s workers keep dying; giving up", kind)
                return False
            logger.warning(
                "%s (pid %s) exited with %s; restarting", spec.name, proc.pid, proc.exitcode
            )
            proc.join(timeout=0)
            self._procs[i] = self.ctx.Process(
                target=spec.target, args=spec.args, daemon=True, name=spec.name
            )
            self._procs[i].start()
        return True

    def stop(self) -> None:
        """SIGTERM every child, wait, then SIGKILL what is left."""
        for proc in self._procs:
            if proc.is_alive() and proc.pid is not None:
                os.kill(proc.pid, signal.SIGTERM)
        for proc in self._procs:
            proc.join(timeout=STOP_TIMEOUT_S)
            if proc.is_alive():
                logger.warning("%s (pid %s) did not stop; killing it", proc.name, proc.pid)
                proc.kill()
                proc.join(timeout=STOP_TIMEOUT_S)
