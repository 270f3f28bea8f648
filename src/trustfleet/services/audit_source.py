"""Reading a published audit log (C2SP tlog-tiles) from a folder or over HTTPS, bounded.

What an auditor outside the service points ``trustfleet audit verify --tiles`` at: a copy of
``audit/log`` (rsync, a backup) or the service's ``https://…/audit/log``.
"""

from __future__ import annotations

import ssl
import urllib.error
import urllib.request
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

from trustfleet.audit.tiles import TILE_WIDTH, ReadTile, entries_path, tile_path, tile_width
from trustfleet.errors import InvalidInput, NotFound, Unavailable
from trustfleet.fileio import read_bounded

__all__ = ["MAX_FILE_BYTES", "LogSource"]

MAX_FILE_BYTES: Final = 4 * 1024 * 1024
"""The largest file read: a full entry bundle is at most 256 entries of 64 KiB (16 MiB) in
theory; TrustFleet's entries are far smaller, and a bundle past this bound is refused."""
_TIMEOUT_S: Final = 30.0


class LogSource:
    """A published log: ``read("tile/0/000")`` returns that file's bytes.

    Args:
        location: A folder, or an ``https://`` URL (the log's prefix, e.g.
            ``https://fleet.example:8443/audit/log``).
        ca_file: For https: the CA bundle to trust (e.g. the home's public/ca-bundle.pem).
    """

    def __init__(self, location: str, *, ca_file: Path | None = None) -> None:
        self.location = location
        parts = urlsplit(location)
        self._url = location.rstrip("/") if parts.scheme == "https" else None
        if parts.scheme not in ("", "https"):
            raise InvalidInput(
                f"{location!r}: a published log is a folder or an https:// URL",
                hint="e.g. --tiles ./audit-copy or --tiles https://fleet.example:8443/audit/log",
            )
        self._dir = None if self._url else Path(location)
        self._context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)

    def read(self, relative: str) -> bytes:
        """One file of the log.

        Raises:
            NotFound: The file is not there.
            Unavailable: It cannot be read, or it is larger than :data:`MAX_FILE_BYTES`.
        """
        return self._fetch(relative) if self._url else self._open(relative)

    def _open(self, relative: str) -> bytes:
        assert self._dir is not None  # noqa: S101  # set when there is no URL
        path = self._dir / relative
        try:
            data = read_bounded(path, max_bytes=MAX_FILE_BYTES)
        except FileNotFoundError:
            raise NotFound(f"{path} is missing from the published log") from None
        except OSError as exc:
            raise Unavailable(f"cannot read {path}: {exc.strerror or exc}") from None
        if data is None:
            raise Unavailable(f"{relative} is larger than {MAX_FILE_BYTES} bytes")
        return data

    def _fetch(self, relative: str) -> bytes:
        url = f"{self._url}/{relative}"
        context = self._context
        try:
            with urllib.request.urlopen(url, timeout=_TIMEOUT_S, context=context) as answer:  # noqa: S310
                data: bytes = answer.read(MAX_FILE_BYTES + 1)
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                raise NotFound(f"{url} is missing from the published log") from None
            raise Unavailable(f"{url}: HTTP {exc.code}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise Unavailable(f"cannot fetch {url}: {exc}") from None
        if len(data) > MAX_FILE_BYTES:
            raise Unavailable(f"{relative} is larger than {MAX_FILE_BYTES} bytes")
        return data

    def tile_reader(self, size: int) -> ReadTile:
        """A :data:`ReadTile` over this log's hash tiles as published for a tree of ``size``."""

        def read(level: int, index: int) -> bytes:
            width = tile_width(level=level, index=index, size=size)
            return self.read(tile_path(level, index, width or TILE_WIDTH))

        return read

    def entry_bundle(self, index: int, *, size: int) -> bytes:
        """The entry bundle ``index`` as published for a tree of ``size``."""
        width = min(TILE_WIDTH, size - index * TILE_WIDTH)
        return self.read(entries_path(index, width))
