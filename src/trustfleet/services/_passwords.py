"""Operator passwords: argon2id hashes (argon2-cffi), bounded input, one-time passwords.

Parameters come from ``[operators]`` (RFC 9106's second recommended option by default). A login
for an unknown name verifies against a dummy hash made with the same parameters, so it takes as
long as a wrong password and fails the same way.
"""

from __future__ import annotations

import contextlib
import secrets
from functools import lru_cache
from typing import Final

from argon2 import PasswordHasher, Type
from argon2 import exceptions as argon2_errors

from trustfleet.errors import InvalidInput
from trustfleet.settings.sections import OperatorSettings

__all__ = [
    "MAX_PASSWORD_CHARS",
    "MIN_PASSWORD_CHARS",
    "check_new_password",
    "dummy_verify",
    "generate_password",
    "hash_password",
    "needs_rehash",
    "verify_password",
]

MIN_PASSWORD_CHARS: Final = 12
MAX_PASSWORD_CHARS: Final = 256


@lru_cache(maxsize=8)
def _hasher(time_cost: int, memory_kib: int, parallelism: int) -> PasswordHasher:
    return PasswordHasher(
        time_cost=time_cost, memory_cost=memory_kib, parallelism=parallelism,
        hash_len=32, salt_len=16, type=Type.ID,
    )  # fmt: skip


def _of(settings: OperatorSettings) -> PasswordHasher:
    return _hasher(
        settings.argon2_time_cost, settings.argon2_memory_kib, settings.argon2_parallelism
    )


@lru_cache(maxsize=8)
def _dummy_hash(time_cost: int, memory_kib: int, parallelism: int) -> str:
    return _hasher(time_cost, memory_kib, parallelism).hash(secrets.token_urlsafe(24))


def check_new_password(password: str) -> str:
    """``password`` if it may be set: 12 to 256 characters, no control characters.

    Raises:
        InvalidInput: It is too short, too long or has control characters (code
            ``operator.password.weak``).
    """
    if not MIN_PASSWORD_CHARS <= len(password) <= MAX_PASSWORD_CHARS or any(
        ord(c) < 32 or ord(c) == 127 for c in password
    ):
        raise InvalidInput(
            f"a password must be {MIN_PASSWORD_CHARS} to {MAX_PASSWORD_CHARS} characters "
            "without control characters",
            hint="choose a passphrase of several words",
            code="operator.password.weak",
        )
    return password


def hash_password(settings: OperatorSettings, password: str) -> str:
    """The argon2id hash (PHC string) of an already checked password."""
    return _of(settings).hash(password)


def verify_password(settings: OperatorSettings, password_hash: str, password: str) -> bool:
    """Whether ``password`` matches ``password_hash`` (an over-long password never does)."""
    if len(password) > MAX_PASSWORD_CHARS:
        dummy_verify(settings)
        return False
    try:
        return _of(settings).verify(password_hash, password)
    except (argon2_errors.VerificationError, argon2_errors.InvalidHashError):
        return False


def dummy_verify(settings: OperatorSettings) -> None:
    """Spend the time of one verification (for a login that does not exist)."""
    params = (settings.argon2_time_cost, settings.argon2_memory_kib, settings.argon2_parallelism)
    with contextlib.suppress(argon2_errors.VerificationError):
        _hasher(*params).verify(_dummy_hash(*params), "not the password")


def needs_rehash(settings: OperatorSettings, password_hash: str) -> bool:
    """Whether a stored hash was made with other parameters than the current ones."""
    try:
        return _of(settings).check_needs_rehash(password_hash)
    except argon2_errors.InvalidHashError:
        return True


def generate_password() -> str:
    """A one-time password: 20 URL-safe characters (120 bits)."""
    return secrets.token_urlsafe(15)
