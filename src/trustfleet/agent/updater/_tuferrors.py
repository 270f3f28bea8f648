"""python-tuf and securesystemslib exceptions, translated once into TrustFleet errors.

Codes (all ``VerificationFailed`` unless said otherwise):

* ``ota.tuf.expired`` — root, timestamp, snapshot or targets is expired (freeze attack).
* ``ota.tuf.signature`` — too few valid signatures from the delegated keys.
* ``ota.tuf.rollback`` — a version lower than the trusted one (or a replayed older root).
* ``ota.tuf.mismatch`` — a version other than the one the trusted parent lists
  (mix-and-match).
* ``ota.tuf.length`` / ``ota.tuf.hash`` — wrong length (or endless data) / wrong hash.
* ``ota.tuf.invalid`` — malformed metadata, wrong type, missing entries.
* ``ota.tuf.unavailable`` (``Unavailable``) — the repository could not be read.
* ``ota.tuf.storage`` (``Unavailable``) — the trusted metadata could not be read or written.
"""

from __future__ import annotations

import re

from securesystemslib.exceptions import Error as SslibError
from tuf.api import exceptions

from trustfleet.errors import TrustFleetError, Unavailable, VerificationFailed

__all__ = ["translate"]

_HINT_ATTACK = "the repository may be attacked or misconfigured; nothing unverified was kept"
_HINT_RETRY = "retry later; nothing unverified was kept"
_LISTED_VERSION_DROPPED = re.compile(r"^Expected \S+\.json version ")
_ROOT_VERSION = re.compile(r"^Expected root version (\d+) instead got version (\d+)")


def translate(exc: BaseException, *, doing: str) -> TrustFleetError:
    """The TrustFleet error for an exception raised by ngclient (or a fetcher).

    Args:
        exc: What python-tuf, securesystemslib, a fetcher or the file system raised.
        doing: What the client was doing, for the message (``refreshing metadata``).

    Returns:
        The error to raise (``raise translate(exc, doing=...) from exc``).
    """
    inner = _own_error(exc)
    if inner is not None:
        return inner
    detail = str(exc) or exc.__class__.__name__
    if isinstance(exc, exceptions.DownloadLengthMismatchError):
        return _refused("length", f"{doing}: the server sent more than allowed ({detail})")
    if isinstance(exc, exceptions.DownloadError):
        if isinstance(exc, exceptions.DownloadHTTPError):
            detail = f"the repository answered HTTP {exc.status_code}"
        return Unavailable(f"{doing}: {detail}", hint=_HINT_RETRY, code="ota.tuf.unavailable")
    if isinstance(exc, exceptions.RepositoryError):
        return _refused(_repository_code(exc), f"{doing}: {detail}")
    if isinstance(exc, OSError):
        return Unavailable(
            f"{doing}: cannot use the trusted metadata store: {detail}",
            hint="check the device's tuf/ directory (permissions, free space)",
            code="ota.tuf.storage",
        )
    return _refused("signature" if isinstance(exc, SslibError) else "invalid", f"{doing}: {detail}")


_BY_TYPE: tuple[tuple[type[exceptions.RepositoryError], str], ...] = (
    (exceptions.ExpiredMetadataError, "expired"),
    (exceptions.UnsignedMetadataError, "signature"),
)


def _repository_code(exc: exceptions.RepositoryError) -> str:
    text = str(exc)
    for kind, code in _BY_TYPE:
        if isinstance(exc, kind):
            return code
    if isinstance(exc, exceptions.LengthOrHashMismatchError):
        return "length" if "length" in text else "hash"
    if isinstance(exc, exceptions.BadVersionNumberError):
        return _version_code(text)
    return "invalid"


def _version_code(text: str) -> str:
    root = _ROOT_VERSION.match(text)
    if root is not None:
        return "rollback" if int(root.group(2)) < int(root.group(1)) else "mismatch"
    if "must be >=" in text or _LISTED_VERSION_DROPPED.match(text):
        return "rollback"
    return "mismatch"


def _refused(what: str, message: str) -> VerificationFailed:
    return VerificationFailed(message, hint=_HINT_ATTACK, code=f"ota.tuf.{what}")


def _own_error(exc: BaseException) -> TrustFleetError | None:
    """A TrustFleet error a fetcher raised (ngclient wraps it in a DownloadError)."""
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return None
        if isinstance(seen, TrustFleetError):
            return seen
        seen = seen.__cause__
    return None
