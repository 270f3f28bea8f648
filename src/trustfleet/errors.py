"""The one error hierarchy of TrustFleet.

Every error a user can cause or meet is a :class:`TrustFleetError` of one category. The API maps
the category to an HTTP status (see :data:`HTTP_STATUS`), the CLI to an exit code (see
:data:`EXIT_CODE`) and prints the message and the hint on one line. Third-party exceptions are
translated once, in the adapter that calls the library, with ``raise ... from exc``.

Messages never contain PINs, keys, tokens, nonces or passwords.
"""

from __future__ import annotations

__all__ = [
    "EXIT_CODE",
    "HTTP_STATUS",
    "Config",
    "Conflict",
    "InvalidInput",
    "NotFound",
    "PermissionDenied",
    "TrustFleetError",
    "Unauthenticated",
    "Unavailable",
    "VerificationFailed",
    "exit_code_for",
    "status_for",
]


class TrustFleetError(Exception):
    """Root of every TrustFleet error.

    Args:
        message: What went wrong, in one sentence a user can read.
        hint: What to do about it (optional).
        code: A stable dotted code such as ``est.csr.subject_mismatch`` (optional).
    """

    category = "error"

    def __init__(self, message: str, *, hint: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.code = code

    def one_line(self) -> str:
        """The message and the hint as one readable line."""
        text = self.message.rstrip(".")
        if self.hint:
            return f"{text}. Hint: {self.hint}"
        return f"{text}."


class InvalidInput(TrustFleetError):
    """The input is malformed, too large, or breaks a policy."""

    category = "invalid_input"


class VerificationFailed(TrustFleetError):
    """A signature, certificate, proof or measurement did not verify."""

    category = "verification_failed"


class NotFound(TrustFleetError):
    """The thing named does not exist."""

    category = "not_found"


class Conflict(TrustFleetError):
    """The request conflicts with the current state (exists already, wrong state)."""

    category = "conflict"


class PermissionDenied(TrustFleetError):
    """The caller is not allowed to do this (missing, unknown or revoked credential)."""

    category = "permission_denied"


class Unauthenticated(PermissionDenied):
    """No credential, or one that is unknown, expired or revoked (HTTP 401)."""

    category = "unauthenticated"


class Unavailable(TrustFleetError):
    """A dependency (token, database, broker) cannot be reached right now."""

    category = "unavailable"


class Config(TrustFleetError):
    """The configuration is missing, wrong or inconsistent."""

    category = "config"


HTTP_STATUS: dict[type[TrustFleetError], int] = {
    InvalidInput: 400,
    VerificationFailed: 400,
    Unauthenticated: 401,
    PermissionDenied: 403,
    NotFound: 404,
    Conflict: 409,
    Unavailable: 503,
    Config: 500,
    TrustFleetError: 500,
}

EXIT_CODE: dict[type[TrustFleetError], int] = {
    InvalidInput: 2,
    Config: 3,
    NotFound: 4,
    Conflict: 5,
    PermissionDenied: 6,
    VerificationFailed: 7,
    Unavailable: 8,
    TrustFleetError: 1,
}


def status_for(error: TrustFleetError) -> int:
    """The HTTP status of an error's category."""
    for cls in type(error).__mro__:
        if cls in HTTP_STATUS:
            return HTTP_STATUS[cls]
    return 500


def exit_code_for(error: TrustFleetError) -> int:
    """The CLI exit code of an error's category."""
    for cls in type(error).__mro__:
        if cls in EXIT_CODE:
            return EXIT_CODE[cls]
    return 1
