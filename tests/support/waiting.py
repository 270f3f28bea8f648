"""Bounded waits for tests, on the harness's one poll loop (`trustfleet.sim.process.wait_until`).

* :func:`wait_for` returns the first truthy value of a check, or fails the test naming what it
  waited for;
* :func:`eventually` answers whether a check became true, for ``assert eventually(...)``;
* :func:`logged` is a common check: whether a log file got a line since an offset.

The bounds only stop a test that would hang; no test asserts how long a wait took.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from trustfleet.errors import Unavailable
from trustfleet.sim.process import wait_until

__all__ = ["WAIT_S", "eventually", "logged", "wait_for"]

T = TypeVar("T")

WAIT_S = 60.0
POLL_S = 0.1


def wait_for(
    check: Callable[[], T | None], *, what: str, timeout_s: float = WAIT_S, poll_s: float = POLL_S
) -> T:
    """Poll ``check`` until it returns something truthy, and return that.

    Raises:
        AssertionError: Nothing truthy within ``timeout_s`` (the message names ``what``).
    """
    try:
        return wait_until(check, timeout_s=timeout_s, what=what, poll_s=poll_s)
    except Unavailable as exc:
        raise AssertionError(f"timed out waiting for {exc}") from None


def eventually(
    check: Callable[[], object], *, timeout_s: float = WAIT_S, poll_s: float = POLL_S
) -> bool:
    """Whether ``check`` returns something truthy within ``timeout_s``."""
    try:
        wait_until(check, timeout_s=timeout_s, what="a condition", poll_s=poll_s)
    except Unavailable:
        return False
    return True


def logged(log: Path, *needles: str, after: int = 0) -> bool:
    """Whether ``log`` holds one of ``needles`` past its first ``after`` bytes."""
    with log.open("rb") as handle:
        handle.seek(after)
        text = handle.read().decode(errors="replace")
    return any(needle in text for needle in needles)
