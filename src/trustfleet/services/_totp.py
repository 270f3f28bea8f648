"""TOTP (RFC 6238) with pyotp: 160-bit base32 seeds, 30 s steps, 6 digits, ±1 step accepted.

A code is accepted once: the caller stores the step it matched (``totp_last_step``) and refuses
that step and every earlier one afterwards.
"""

from __future__ import annotations

import hmac
from datetime import datetime
from typing import Final

import pyotp

__all__ = ["DIGITS", "STEP_S", "WINDOW_STEPS", "matching_step", "new_secret", "provisioning_uri"]

STEP_S: Final = 30
DIGITS: Final = 6
WINDOW_STEPS: Final = 1
_SECRET_CHARS: Final = 32  # base32: 5 bits a character, 160 bits


def new_secret() -> str:
    """A new random seed: 160 bits, base32 (32 characters)."""
    return pyotp.random_base32(length=_SECRET_CHARS)


def provisioning_uri(secret: str, *, login: str, issuer: str) -> str:
    """The ``otpauth://totp/...`` URI an authenticator app scans."""
    return pyotp.TOTP(secret, digits=DIGITS, interval=STEP_S).provisioning_uri(
        name=login, issuer_name=issuer
    )


def matching_step(secret: str, code: str, *, now: datetime, after: int | None = None) -> int | None:
    """The time step (within ±1 of ``now``'s) whose code is ``code``, or None.

    Args:
        secret: The base32 seed.
        code: What the operator typed (6 digits; surrounding spaces ignored).
        now: The current time.
        after: The last step already used: it and earlier steps never match (no replay).
    """
    typed = code.strip()
    if len(typed) != DIGITS or not typed.isdigit() or not typed.isascii():
        return None
    totp = pyotp.TOTP(secret, digits=DIGITS, interval=STEP_S)
    current = int(now.timestamp()) // STEP_S
    for step in range(current - WINDOW_STEPS, current + WINDOW_STEPS + 1):
        if after is not None and step <= after:
            continue
        if hmac.compare_digest(totp.at(step * STEP_S), typed):
            return step
    return None
