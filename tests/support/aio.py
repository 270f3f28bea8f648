"""Run a coroutine to completion from a test, whatever this thread already runs.

A session-scoped Playwright browser (the console suites, sync API) leaves an event loop
running in the worker's main thread for the rest of the session, and then ``asyncio.run``
refuses ("cannot be called from a running event loop") in every later test of that worker.
:func:`run` runs the coroutine on a fresh loop in a thread of its own, so a test's outcome does
not depend on which suites ran before it in the same worker.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

__all__ = ["in_thread", "run"]

T = TypeVar("T")


def in_thread(fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` in a new thread (no event loop running there); its result, or its
    exception re-raised here. For code that calls ``asyncio.run`` itself (a ``main``)."""
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["value"] = fn(*args)
        except BaseException as exc:  # handed to the test's thread as it is
            outcome["error"] = exc

    thread = threading.Thread(target=target, name="test-asyncio", daemon=True)
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]  # type: ignore[no-any-return]  # T of fn


def run(coro: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(coro)`` in a new thread; its result, or its exception re-raised here."""
    return in_thread(asyncio.run, coro)
