"""Small JSON state files of the device, written crash-safely (:mod:`trustfleet.fileio`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from trustfleet.fileio import fsync_dir, write_atomic

__all__ = ["fsync_dir", "read_json", "write_atomic", "write_json"]


def write_json(path: Path, document: dict[str, Any]) -> None:
    """:func:`write_atomic` of a JSON object (sorted keys, one line)."""
    data = json.dumps(document, sort_keys=True, separators=(",", ":")).encode("utf-8")
    write_atomic(path, data + b"\n")


def read_json(path: Path, *, max_bytes: int) -> dict[str, Any] | None:
    """A JSON object from ``path``; None if the file is missing, too large or not an object."""
    try:
        with path.open("rb") as fh:
            data = fh.read(max_bytes + 1)
    except FileNotFoundError:
        return None
    if len(data) > max_bytes:
        return None
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    return doc if isinstance(doc, dict) else None
