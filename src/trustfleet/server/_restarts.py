"""When to restart a dead worker, and when a kind of worker is crash-looping (pure, no I/O).

One :class:`KindRestarts` per kind of worker (``ingest``, ``https``, …). Every crash inside
the window doubles the backoff (bounded); more crashes than the budget inside the window make
the kind *crash-looping*. It stays so until one of its processes has stayed up for a whole
window: the service never gives up on a kind (it retries at the longest backoff), and never
exits because of one.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Literal

from trustfleet.settings import SupervisionSettings

__all__ = ["Crash", "KindRestarts", "RestartPolicy"]


@dataclass(frozen=True)
class RestartPolicy:
    """The bounds of restarting, from ``[supervision]``."""

    backoff_s: float
    backoff_max_s: float
    budget: int
    window_s: float

    @classmethod
    def from_settings(cls, sup: SupervisionSettings) -> RestartPolicy:
        """The policy of a home's ``[supervision]`` section."""
        return cls(
            backoff_s=sup.restart_backoff_s,
            backoff_max_s=sup.restart_backoff_max_s,
            budget=sup.restart_budget,
            window_s=sup.restart_window_s,
        )


@dataclass(frozen=True)
class Crash:
    """What one crash means: wait ``delay_s`` before the restart; a state change, if any."""

    delay_s: float
    crashes_in_window: int
    change: Literal["degraded"] | None


class KindRestarts:
    """The crash history of one kind of worker.

    Args:
        policy: Backoff and budget.
    """

    def __init__(self, policy: RestartPolicy) -> None:
        self.policy = policy
        self.crashlooping = False
        self.total = 0
        self._crashes: deque[float] = deque()

    def crashed(self, now: float) -> Crash:
        """Record a crash at monotonic time ``now``."""
        self._crashes.append(now)
        self._prune(now)
        self.total += 1
        count = len(self._crashes)
        change: Literal["degraded"] | None = None
        if count > self.policy.budget and not self.crashlooping:
            self.crashlooping = True
            change = "degraded"
        if self.crashlooping:
            delay = self.policy.backoff_max_s
        else:
            delay = min(self.policy.backoff_s * 2 ** (count - 1), self.policy.backoff_max_s)
        return Crash(delay_s=delay, crashes_in_window=count, change=change)

    def recovered(self, now: float, *, up_since: float) -> bool:
        """Whether a crash-looping kind just recovered: its oldest process is up a whole window."""
        if not self.crashlooping or now - up_since < self.policy.window_s:
            return False
        self.crashlooping = False
        self._crashes.clear()
        return True

    def crashes_in_window(self, now: float) -> int:
        """Crashes inside the window ending at ``now``."""
        self._prune(now)
        return len(self._crashes)

    def _prune(self, now: float) -> None:
        while self._crashes and now - self._crashes[0] > self.policy.window_s:
            self._crashes.popleft()
