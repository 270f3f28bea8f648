"""Who acts and from where, for the security events a process appends (the audit log's entries).

An entry point sets it once (the CLI: the operator's login and host; the EST endpoint: the
client's address) and every event appended within records it, without each service passing it
along. Light on purpose: the CLI imports it before anything heavy.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

__all__ = ["current_operator", "current_origin", "event_context"]

_ORIGIN: ContextVar[str | None] = ContextVar("trustfleet_event_origin", default=None)
_OPERATOR: ContextVar[str | None] = ContextVar("trustfleet_event_operator", default=None)


def current_origin() -> str:
    """Where the events appended now come from: set by :func:`event_origin`, else this process."""
    origin = _ORIGIN.get()
    return (
        origin if origin is not None else f"process host={socket.gethostname()} pid={os.getpid()}"
    )


def current_operator() -> str:
    """The operator acting now (set by :func:`event_context`), for operator actions' events."""
    return _OPERATOR.get() or "operator:unknown"


@contextmanager
def event_context(*, origin: str, operator: str | None = None) -> Iterator[None]:
    """Within: events record ``origin`` ("cli host=… pid=…", "est 10.0.0.7", …) and operator
    actions name ``operator`` ("operator:alice@ops1") as their actor."""
    tokens = (_ORIGIN.set(origin[:256]), _OPERATOR.set(operator[:128] if operator else None))
    try:
        yield
    finally:
        _ORIGIN.reset(tokens[0])
        _OPERATOR.reset(tokens[1])
