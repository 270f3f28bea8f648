"""Resumable, verified download of one TUF target into ``<hash>.part`` then ``.verified``.

The partial file keeps what arrived before a cut; the next attempt asks for the rest with
``Range``. Whatever the server does, the partial never grows past the TUF-verified length, and
the file becomes ``.verified`` only after its length and *every* hash TUF lists match. A
partial whose hash is wrong at the end is deleted.

Files are named by the strongest listed hash (:data:`NAMING_HASHES`: SHA-256 when listed, as
the TrustFleet repository always does, else SHA-512, …); the TUF specification allows any
algorithm in ``hashes``. A listed algorithm this device cannot compute is a refusal, never
skipped.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import random
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuf.api import exceptions

from trustfleet.agent.updater._tuferrors import translate
from trustfleet.agent.updater.fetcher import RangedBody, RangeFetcher
from trustfleet.errors import Unavailable, VerificationFailed
from trustfleet.fileio import fsync_dir

__all__ = ["NAMING_HASHES", "Expected", "download_resumable", "naming_hash", "new_digest"]

logger = logging.getLogger(__name__)

Progress = Callable[[int, int], None]
_READ_BYTES = 1 << 20


NAMING_HASHES: tuple[str, ...] = (
    "sha256",
    "sha512",
    "sha384",
    "sha3_512",
    "sha3_384",
    "sha3_256",
    "blake2b",
    "blake2b-256",
)
"""Algorithms that may name a download, in order of preference (SHA-256 first)."""

_HEX = re.compile(r"[0-9a-f]{64,128}")


def new_digest(algorithm: str) -> Any:  # hashlib has no public digest type
    """A hashlib object for a TUF hash name (python-tuf's ``blake2b-256`` included).

    Raises:
        ValueError: hashlib does not know the algorithm.
    """
    if algorithm == "blake2b-256":
        return hashlib.blake2b(digest_size=32)
    return hashlib.new(algorithm)


def naming_hash(hashes: Mapping[str, str]) -> tuple[str, str] | None:
    """The listed ``(algorithm, hex)`` that names the download, or None if none may.

    The first of :data:`NAMING_HASHES` that is listed with a lowercase hex value of 64 to 128
    digits (the value becomes part of a file name and a URL, so nothing else is accepted).
    """
    for algorithm in NAMING_HASHES:
        value = hashes.get(algorithm)
        if value is not None and _HEX.fullmatch(value):
            return algorithm, value
    return None


@dataclass(frozen=True)
class Expected:
    """What TUF says the file is: its length and hashes (hex, by algorithm name).

    ``sha256`` is empty when TUF lists no SHA-256; ``other_hashes`` holds every other
    listed hash. All of them are checked.
    """

    name: str
    length: int
    sha256: str
    other_hashes: Mapping[str, str]

    @property
    def hashes(self) -> dict[str, str]:
        """Every listed hash, by algorithm name."""
        listed = dict(self.other_hashes)
        if self.sha256:
            listed["sha256"] = self.sha256
        return listed

    def file_stem(self) -> str:
        """The hex digest that names the partial and verified files.

        Raises:
            VerificationFailed: No listed hash may name a file (``ota.tuf.hash``).
        """
        named = naming_hash(self.hashes)
        if named is None:
            raise VerificationFailed(
                f"{self.name}: TUF lists no hash this device accepts ({', '.join(NAMING_HASHES)})",
                hint="list a sha256 (or sha512) hash for every target",
                code="ota.tuf.hash",
            )
        return named[1]


_MAX_BACKOFF_S = 8.0


def download_resumable(
    fetcher: RangeFetcher,
    *,
    url: str,
    expected: Expected,
    directory: Path,
    attempts: int,
    progress: Progress | None = None,
    backoff_s: float = 0.5,
    sleep: Callable[[float], None] = time.sleep,
) -> Path:
    """Download ``url`` into ``directory/<hash>.verified`` (or find it there already).

    Args:
        fetcher: A fetcher with ``fetch_from``.
        url: Where the target is (hash-prefixed name).
        expected: Length and hashes from verified TUF metadata.
        directory: Where ``.part`` and ``.verified`` files live.
        attempts: Connections tried before giving up (each resumes where the last stopped).
        progress: Called with (bytes held, total) after each chunk.
        backoff_s: Wait before the second attempt; doubles per attempt (at most
            ``_MAX_BACKOFF_S``), with ±50 % jitter so that a fleet cut off together does not
            come back together.
        sleep: How to wait (tests pass a recorder).

    Returns:
        The verified file.

    Raises:
        VerificationFailed: ``ota.tuf.length`` (the server sent more than the length) or
            ``ota.tuf.hash`` (a mismatch, or no hash that may name the file); the partial is
            deleted in both cases.
        Unavailable: ``ota.tuf.unavailable`` after ``attempts`` cut or failed connections
            (the partial is kept for the next call).
    """
    stem = expected.file_stem()
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / f"{stem}.verified"
    if final.is_file():
        if _matches(final, expected):
            return final
        final.unlink()
    part = directory / f"{stem}.part"
    last: Unavailable | None = None
    for attempt in range(1, max(1, attempts) + 1):
        try:
            _fill(fetcher, url=url, part=part, expected=expected, progress=progress)
            break
        except Unavailable as exc:
            last = exc
            logger.info("download of %s cut (attempt %d): %s", expected.name, attempt, exc.code)
            if attempt < attempts and backoff_s > 0:
                delay = min(backoff_s * 2 ** (attempt - 1), _MAX_BACKOFF_S)
                sleep(delay * random.uniform(0.5, 1.5))  # noqa: S311  # jitter, not a secret
    else:
        assert last is not None  # noqa: S101  # the loop ran at least once
        raise last
    if not _matches(part, expected):
        part.unlink()
        raise VerificationFailed(
            f"{expected.name}: the downloaded bytes do not match the TUF-verified hash",
            hint="the partial download was deleted; the repository or the path may be attacked",
            code="ota.tuf.hash",
        )
    os.replace(part, final)
    with contextlib.suppress(OSError):
        fsync_dir(directory)
    return final


def _fill(
    fetcher: RangeFetcher, *, url: str, part: Path, expected: Expected, progress: Progress | None
) -> None:
    """Bring ``part`` to ``expected.length`` bytes (raises Unavailable if the body is cut)."""
    held = part.stat().st_size if part.exists() else 0
    if held > expected.length:
        part.unlink()
        held = 0
    if held == expected.length:
        return
    try:
        body = fetcher.fetch_from(url, held)
    except exceptions.DownloadError as exc:
        raise translate(exc, doing=f"downloading {expected.name}") from exc
    if body.start == 0 and held:
        logger.info("%s: the server ignored the range; starting over", expected.name)
    try:
        held = _write(body, part=part, expected=expected, progress=progress)
    except exceptions.DownloadLengthMismatchError as exc:
        part.unlink(missing_ok=True)
        raise translate(exc, doing=f"downloading {expected.name}") from exc
    except exceptions.DownloadError as exc:
        raise translate(exc, doing=f"downloading {expected.name}") from exc
    finally:
        body.close()
    if held != expected.length:
        raise Unavailable(
            f"downloading {expected.name}: the body ended after {held} of {expected.length} bytes",
            hint="retry later; the download resumes where it stopped",
            code="ota.tuf.unavailable",
        )


def _write(body: RangedBody, *, part: Path, expected: Expected, progress: Progress | None) -> int:
    """Write ``body`` at its offset into ``part``; never past ``expected.length``."""
    with part.open("r+b" if part.exists() else "wb") as out:
        out.seek(body.start)
        out.truncate()
        held = body.start
        try:
            for chunk in body:
                if held + len(chunk) > expected.length:
                    raise exceptions.DownloadLengthMismatchError(
                        f"more than the {expected.length} bytes TUF lists"
                    )
                out.write(chunk)
                held += len(chunk)
                if progress is not None:
                    progress(held, expected.length)
        finally:
            out.flush()
            os.fsync(out.fileno())
    return held


def _matches(path: Path, expected: Expected) -> bool:
    """Whether ``path`` has the length and every hash TUF lists (an unknown one never matches)."""
    if path.stat().st_size != expected.length:
        return False
    wanted = expected.hashes
    try:
        digests = {algorithm: new_digest(algorithm) for algorithm in wanted}
    except (ValueError, TypeError):
        return False  # an algorithm we cannot check is not a match
    if not digests:
        return False
    with path.open("rb") as source:
        while block := source.read(_READ_BYTES):
            for digest in digests.values():
                digest.update(block)
    return all(digests[name].hexdigest() == value for name, value in wanted.items())
