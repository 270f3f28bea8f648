"""Resumable, verified download of one TUF target into ``<sha256>.part`` then ``.verified``.

The partial file keeps what arrived before a cut; the next attempt asks for the rest with
``Range``. Whatever the server does, the partial never grows past the TUF-verified length, and
the file becomes ``.verified`` only after its length and SHA-256 (and any other hash TUF
lists) match. A partial whose hash is wrong at the end is deleted.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from tuf.api import exceptions

from trustfleet.agent.updater._tuferrors import translate
from trustfleet.agent.updater.fetcher import RangedBody, RangeFetcher
from trustfleet.errors import Unavailable, VerificationFailed

__all__ = ["Expected", "download_resumable"]

logger = logging.getLogger(__name__)

Progress = Callable[[int, int], None]
_READ_BYTES = 1 << 20


@dataclass(frozen=True)
class Expected:
    """What TUF says the file is: its length and hashes (hex, by algorithm name)."""

    name: str
    length: int
    sha256: str
    other_hashes: Mapping[str, str]


def download_resumable(
    fetcher: RangeFetcher,
    *,
    url: str,
    expected: Expected,
    directory: Path,
    attempts: int,
    progress: Progress | None = None,
) -> Path:
    """Download ``url`` into ``directory/<sha256>.verified`` (or find it there already).

    Args:
        fetcher: A fetcher with ``fetch_from``.
        url: Where the target is (hash-prefixed name).
        expected: Length and hashes from verified TUF metadata.
        directory: Where ``.part`` and ``.verified`` files live.
        attempts: Connections tried before giving up (each resumes where the last stopped).
        progress: Called with (bytes held, total) after each chunk.

    Returns:
        The verified file.

    Raises:
        VerificationFailed: ``ota.tuf.length`` (the server sent more than the length) or
            ``ota.tuf.hash``; the partial is deleted in both cases.
        Unavailable: ``ota.tuf.unavailable`` after ``attempts`` cut or failed connections
            (the partial is kept for the next call).
    """
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / f"{expected.sha256}.verified"
    if final.is_file():
        if _matches(final, expected):
            return final
        final.unlink()
    part = directory / f"{expected.sha256}.part"
    last: Unavailable | None = None
    for attempt in range(1, max(1, attempts) + 1):
        try:
            _fill(fetcher, url=url, part=part, expected=expected, progress=progress)
            break
        except Unavailable as exc:
            last = exc
            logger.info("download of %s cut (attempt %d): %s", expected.name, attempt, exc.code)
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
    _fsync_dir(directory)
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
    if path.stat().st_size != expected.length:
        return False
    digests = {"sha256": hashlib.sha256()}
    for algorithm in expected.other_hashes:
        try:
            digests[algorithm] = hashlib.new(algorithm)
        except ValueError:
            return False  # an algorithm we cannot check is not a match
    with path.open("rb") as source:
        while block := source.read(_READ_BYTES):
            for digest in digests.values():
                digest.update(block)
    wanted = {"sha256": expected.sha256, **expected.other_hashes}
    return all(digests[name].hexdigest() == value for name, value in wanted.items())


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
