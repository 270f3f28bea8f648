"""Login throttling and lockout: failures counted per ``login:<name>`` and per ``addr:<ip>``.

After ``[operators] max_failures`` failures within ``failure_window_s`` a key is locked for
``lockout_s``; while it is locked every login under it fails (even with the right password).
A success clears the login's key (not the address's: one right password from an address does
not excuse the guesses it made at other logins).
"""

from __future__ import annotations

import ipaddress
import re
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Final

from trustfleet.store import ThrottleRecord

if TYPE_CHECKING:
    from trustfleet.settings.sections import OperatorSettings
    from trustfleet.store import Transaction

__all__ = [
    "LOGIN_PATTERN",
    "address_of",
    "after_failure",
    "is_locked",
    "keys_for",
    "locked_keys",
    "printable",
    "record_failure",
    "shown_login",
]

_MAX_KEY_CHARS = 128
LOGIN_PATTERN: Final = re.compile(r"[a-z][a-z0-9._-]{0,63}")
"""A login: lower case letter, then up to 63 lower case letters, digits, '.', '_', '-'."""


def shown_login(login: str) -> str:
    """``login`` where it may be written (a key, an event), or ``(malformed)`` for a name no
    operator can have (any length, control characters)."""
    return login if LOGIN_PATTERN.fullmatch(login) else "(malformed)"


def printable(text: str, *, max_chars: int = 256) -> str:
    """``text`` cut to ``max_chars`` with every control character replaced by '?'."""
    return "".join(c if c.isprintable() else "?" for c in text[:max_chars])


def address_of(origin: str) -> str:
    """The client address in an origin such as ``"https POST /console/login from 10.0.0.7:5123"``
    (the port left out), or the origin itself when it names none."""
    text = printable(origin).rsplit(" from ", 1)[-1].strip()
    host = text
    if text.startswith("["):  # [v6]:port
        host = text[1 : text.find("]")] if "]" in text else text
    elif text.count(":") == 1:  # v4:port or name:port
        host = text.split(":", 1)[0]
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return host[:100]


def keys_for(login: str, origin: str) -> tuple[str, str]:
    """The throttle keys of a login attempt: ``login:<name>`` and ``addr:<ip>``."""
    return (f"login:{shown_login(login)}", f"addr:{address_of(origin)}"[:_MAX_KEY_CHARS])


def is_locked(record: ThrottleRecord | None, *, now: datetime) -> bool:
    """Whether a key is locked at ``now``."""
    return record is not None and record.locked_until is not None and now < record.locked_until


def after_failure(
    record: ThrottleRecord | None, key: str, *, settings: OperatorSettings, now: datetime
) -> ThrottleRecord:
    """The state of ``key`` after one more failure at ``now``.

    A failure outside the window (or after a lockout ended) starts a new window with one
    failure; the ``max_failures``-th failure in a window locks the key for ``lockout_s``.
    """
    window = timedelta(seconds=settings.failure_window_s)
    fresh = (
        record is None
        or now - record.window_started_at >= window
        or (record.locked_until is not None and now >= record.locked_until)
    )
    failures = 1 if fresh or record is None else record.failures + 1
    started = now if fresh or record is None else record.window_started_at
    locked_until = record.locked_until if record is not None and not fresh else None
    if failures >= settings.max_failures:
        locked_until = now + timedelta(seconds=settings.lockout_s)
    return ThrottleRecord(
        key=key, failures=failures, window_started_at=started, locked_until=locked_until
    )


def locked_keys(tx: Transaction, keys: tuple[str, ...], *, now: datetime) -> list[str]:
    """Those of ``keys`` that are locked at ``now``."""
    return [key for key in keys if is_locked(tx.operators.throttle(key), now=now)]


def record_failure(
    tx: Transaction, keys: tuple[str, ...], *, settings: OperatorSettings, now: datetime
) -> None:
    """Count one failure under each of ``keys``."""
    for key in keys:
        tx.operators.put_throttle(
            after_failure(
                tx.operators.throttle(key, for_update=True), key, settings=settings, now=now
            )
        )
