"""Supervising the child processes of ``server run`` (HTTPS, ingest, campaigns, attest) by pid.

A dead child is restarted after a backoff (:mod:`trustfleet.server._restarts`); a kind of
worker that keeps dying is reported (``health``), retried slowly and never makes the service
exit. Every child starts with SIGINT blocked, moves to its own process group (a Ctrl-C in the
terminal reaches the parent only, which stops the children in order) and is SIGKILLed when
the supervisor dies, even by ``kill -9`` (:func:`trustfleet.processes.die_with_process`; and
:func:`~trustfleet.processes.die_with_parent` for its parent, multiprocessing's fork server).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.context import ForkServerContext, ForkServerProcess
from typing import Any

from trustfleet.errors import TrustFleetError
from trustfleet.processes import die_with_parent, die_with_process
from trustfleet.server._restarts import Crash, KindRestarts, RestartPolicy

__all__ = ["KindHealth", "ProcessSpec", "Supervisor"]

logger = logging.getLogger(__name__)

OnChange = Callable[[str, str, Crash | None], None]
"""Called as ``(kind, "degraded" | "recovered", crash)`` when a kind changes state."""


@dataclass(frozen=True)
class ProcessSpec:
    """One child process: a name ``kind#index``, a spawn target and its arguments.

    ``ready`` (a ``multiprocessing.Event``, optional) is cleared when the child restarts, so
    a readiness flag the child sets never outlives it.
    """

    name: str
    target: Callable[..., Any]
    args: tuple[Any, ...]
    ready: Any = None

    @property
    def kind(self) -> str:
        """The kind of worker (the name before ``#``)."""
        return self.name.split("#")[0]


@dataclass(frozen=True)
class KindHealth:
    """One kind of worker now: processes alive of all, crash-looping or not, restarts."""

    kind: str
    alive: int
    total: int
    crashlooping: bool
    restarts: int

    @property
    def up(self) -> bool:
        """All of its processes run and it is not crash-looping."""
        return self.alive == self.total and not self.crashlooping


@dataclass
class _Child:
    spec: ProcessSpec
    proc: ForkServerProcess | None
    up_since: float
    restart_at: float | None = None


def _child_main(target: Callable[..., Any], args: tuple[Any, ...], parent_pid: int) -> None:
    """First code of every child (SIGINT still blocked, inherited from the parent).

    A :class:`TrustFleetError` (a setting that makes the worker fail) is one line on stderr
    and exit status 1: the supervisor restarts it, and the log is not a wall of tracebacks.
    """
    os.setpgid(0, 0)
    # SIGKILL: with the supervisor gone a graceful stop has no one to report to, and one that
    # hangs (an MQTT client waiting for a broker that died too) must not keep the process.
    # The parent is multiprocessing's fork server, which outlives the supervisor while any
    # child holds its "alive" pipe: each child watches the supervisor itself, and the fork
    # server then sees its pipe close and exits.
    die_with_parent(parent_pid=os.getppid(), sig=signal.SIGKILL)
    die_with_process(parent_pid, sig=signal.SIGKILL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a pending Ctrl-C is dropped, not raised
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    try:
        target(*args)
    except TrustFleetError as exc:
        name = multiprocessing.current_process().name
        print(f"error: {name} (pid {os.getpid()}): {exc.one_line()}", file=sys.stderr)
        sys.exit(1)


class Supervisor:
    """Starts children, restarts those that die (backoff, budget), stops all by pid.

    Children are forked by multiprocessing's fork server (a fresh interpreter started on the
    first child, single-threaded, that imports ``preload`` once): a child starts in a fraction
    of the time a spawned one needs to import the product again, and never inherits the
    supervisor's threads.

    Args:
        policy: Restart backoff and budget.
        preload: Modules the fork server imports before forking (the children's targets).
        stop_timeout_s: How long ``stop`` waits after SIGTERM before SIGKILL.
        on_change: Told when a kind becomes crash-looping or recovers.
        clock: Monotonic seconds.
    """

    def __init__(
        self,
        policy: RestartPolicy,
        *,
        preload: Sequence[str] = (),
        stop_timeout_s: float = 5.0,
        on_change: OnChange | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ctx: ForkServerContext = multiprocessing.get_context("forkserver")
        if preload:
            self.ctx.set_forkserver_preload(list(preload))
        self._policy = policy
        self._stop_timeout_s = stop_timeout_s
        self._on_change = on_change or (lambda _kind, _change, _crash: None)
        self._clock = clock
        self._children: list[_Child] = []
        self._kinds: dict[str, KindRestarts] = {}

    def start(self, spec: ProcessSpec) -> None:
        """Start one child."""
        self._kinds.setdefault(spec.kind, KindRestarts(self._policy))
        self._children.append(_Child(spec, self._spawn(spec), up_since=self._clock()))

    def _spawn(self, spec: ProcessSpec) -> ForkServerProcess:
        proc = self.ctx.Process(
            target=_child_main, args=(spec.target, spec.args, os.getpid()), daemon=True,
            name=spec.name,
        )  # fmt: skip
        old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            proc.start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)
        logger.info("%s started (pid %s)", spec.name, proc.pid)
        return proc

    @property
    def pids(self) -> list[int]:
        """The pids of the children alive now."""
        return [pid for _name, pid in self.children()]

    def children(self) -> list[tuple[str, int]]:
        """``(name, pid)`` of every child alive now."""
        return [
            (c.spec.name, c.proc.pid)
            for c in self._children
            if c.proc is not None and c.proc.pid is not None and c.proc.is_alive()
        ]

    def check(self) -> None:
        """Note the children that died, restart those whose backoff is over; never gives up."""
        now = self._clock()
        for child in self._children:
            kind = self._kinds[child.spec.kind]
            if child.proc is not None and child.proc.is_alive():
                if kind.recovered(now, up_since=child.up_since):
                    logger.warning("%s workers recovered", child.spec.kind)
                    self._on_change(child.spec.kind, "recovered", None)
                continue
            if child.restart_at is None:
                self._died(child, kind, now)
            elif now >= child.restart_at:
                child.proc = self._spawn(child.spec)
                child.up_since, child.restart_at = now, None

    def _died(self, child: _Child, kind: KindRestarts, now: float) -> None:
        proc = child.proc
        code = proc.exitcode if proc is not None else None
        if proc is not None:
            proc.join(timeout=0)
        if child.spec.ready is not None:
            child.spec.ready.clear()
        crash = kind.crashed(now)
        child.proc, child.restart_at = None, now + crash.delay_s
        logger.warning(
            "%s exited with %s; restarting in %.1f s (%d crash(es) in %.0f s)",
            child.spec.name, code, crash.delay_s, crash.crashes_in_window, self._policy.window_s,
        )  # fmt: skip
        if crash.change is not None:
            logger.error("%s workers keep dying; the service is degraded", child.spec.kind)
            self._on_change(child.spec.kind, crash.change, crash)

    def health(self) -> list[KindHealth]:
        """Each kind of worker now, in start order."""
        seen: dict[str, list[_Child]] = {}
        for child in self._children:
            seen.setdefault(child.spec.kind, []).append(child)
        return [
            KindHealth(
                kind=name,
                alive=sum(1 for c in group if c.proc is not None and c.proc.is_alive()),
                total=len(group),
                crashlooping=self._kinds[name].crashlooping,
                restarts=self._kinds[name].total,
            )
            for name, group in seen.items()
        ]

    def stop(self) -> int:
        """SIGTERM every child, wait, then SIGKILL what is left; how many were running."""
        running = [c.proc for c in self._children if c.proc is not None and c.proc.is_alive()]
        for proc in running:
            if proc.pid is not None:
                try:
                    os.kill(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    continue
        deadline = time.monotonic() + self._stop_timeout_s
        for proc in running:
            proc.join(timeout=max(0.0, deadline - time.monotonic()))
            if proc.is_alive():
                logger.warning("%s (pid %s) did not stop; killing it", proc.name, proc.pid)
                proc.kill()
                proc.join(timeout=self._stop_timeout_s)
        return len(running)
