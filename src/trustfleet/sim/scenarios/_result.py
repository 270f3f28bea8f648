"""What a scenario stage returns, and the one boundary that turns any error into a failed stage.

A stage body looks at the fleet's real state and returns an :class:`Observed`: named checks
(all must hold) and details to show. :class:`Stage` runs a body, times it, and makes a
:class:`StageResult`; an error of any kind inside the body is a failed stage with a one-line
reason, never a traceback.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from trustfleet.errors import TrustFleetError

if TYPE_CHECKING:
    from trustfleet.sim.fleet import SimFleet

__all__ = ["Observed", "Stage", "StageResult", "one_line", "stage"]

_REASON_MAX_CHARS = 300


@dataclass(frozen=True)
class StageResult:
    """One stage's outcome.

    Attributes:
        name: The stage's name.
        ok: Whether every check held and nothing failed.
        reason: One line: ``"ok"``, the checks that did not hold, or the error.
        details: What the stage saw (JSON-ready).
        seconds: How long it took.
    """

    name: str
    ok: bool
    reason: str
    details: Mapping[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        """The stage as the demo's ``--json`` shows it (a failure's reason under ``error``)."""
        details = dict(self.details)
        if not self.ok:
            details.setdefault("error", self.reason)
        return {"name": self.name, "ok": self.ok, "seconds": self.seconds, "details": details}


@dataclass(frozen=True)
class Observed:
    """What a stage body found: named checks that must all hold, and details."""

    checks: Mapping[str, bool]
    details: Mapping[str, Any] = field(default_factory=dict)

    @property
    def failed(self) -> list[str]:
        """The names of the checks that did not hold."""
        return [name for name, held in self.checks.items() if not held]


def one_line(exc: BaseException) -> str:
    """A readable one-line account of an error (no traceback)."""
    if isinstance(exc, TrustFleetError):
        text = exc.one_line()
    elif isinstance(exc, subprocess.TimeoutExpired):
        text = f"{exc.cmd[1:3] if isinstance(exc.cmd, list) else exc.cmd} timed out"
    else:
        text = f"{type(exc).__name__}: {exc}"
    first = next((line for line in text.splitlines() if line.strip()), type(exc).__name__)
    return first.strip()[:_REASON_MAX_CHARS]


@dataclass(frozen=True)
class Stage:
    """A named stage: call it with a fleet to get its :class:`StageResult`."""

    name: str
    body: Callable[[SimFleet], Observed]

    def __call__(self, fleet: SimFleet) -> StageResult:
        """Run the body and judge it; any error is a failed stage with a one-line reason."""
        started = time.perf_counter()
        try:
            observed = self.body(fleet)
        except Exception as exc:  # the one boundary: a stage reports, it never raises
            seconds = round(time.perf_counter() - started, 3)
            return StageResult(self.name, False, one_line(exc), {"error": one_line(exc)}, seconds)
        seconds = round(time.perf_counter() - started, 3)
        failed = observed.failed
        reason = "ok" if not failed else "did not hold: " + "; ".join(failed)
        return StageResult(self.name, not failed, reason, dict(observed.details), seconds)


def stage(name: str) -> Callable[[Callable[[SimFleet], Observed]], Stage]:
    """Make a stage body a :class:`Stage` called ``name``."""

    def wrap(body: Callable[[SimFleet], Observed]) -> Stage:
        return Stage(name, body)

    return wrap
