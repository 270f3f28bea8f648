"""A PEP 427 wheel writer that gives the same bytes for the same inputs.

Every entry is dated SOURCE_DATE_EPOCH (clamped to 1980, the zip format's first date), has mode
0644, is deflated at one fixed level and comes in sorted order with the ``.dist-info`` files last
and RECORD the very last entry. Core metadata 2.4 (METADATA), WHEEL, entry_points.txt, RECORD
(``sha256=`` urlsafe base64 without padding, PEP 376/PEP 627).
"""

from __future__ import annotations

import base64
import hashlib
import io
import re
import time
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["WheelSpec", "build_wheel", "normalized_name", "wheel_filename"]

_TAG = "py3-none-any"
_LEVEL = 9
_ZIP_MIN_EPOCH = 315532800


@dataclass(frozen=True)
class WheelSpec:
    """What goes into one wheel (files as (archive path, bytes))."""

    name: str
    version: str
    summary: str
    description: str
    requires: tuple[str, ...]
    scripts: tuple[tuple[str, str], ...]
    files: tuple[tuple[str, bytes], ...]


def normalized_name(name: str) -> str:
    """The distribution name as wheel file names and .dist-info folders spell it."""
    return re.sub(r"[-_.]+", "_", name).lower()


def wheel_filename(name: str, version: str) -> str:
    """``<name>-<version>-py3-none-any.whl``."""
    return f"{normalized_name(name)}-{version}-{_TAG}.whl"


def _metadata(spec: WheelSpec) -> bytes:
    lines = [
        "Metadata-Version: 2.4",
        f"Name: {spec.name}",
        f"Version: {spec.version}",
        f"Summary: {spec.summary}",
        "License-Expression: Apache-2.0",
        "Requires-Python: >=3.11",
        *(f"Requires-Dist: {r}" for r in spec.requires),
        "Description-Content-Type: text/markdown",
    ]
    return ("\n".join(lines) + "\n\n" + spec.description.rstrip("\n") + "\n").encode()


def _wheel_file() -> bytes:
    return (
        f"Wheel-Version: 1.0\nGenerator: trustfleet-build (packaging/build.py)\n"
        f"Root-Is-Purelib: true\nTag: {_TAG}\n"
    ).encode()


def _entry_points(scripts: Sequence[tuple[str, str]]) -> bytes:
    body = "".join(f"{name} = {target}\n" for name, target in sorted(scripts))
    return f"[console_scripts]\n{body}".encode()


def _record_line(path: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{path},sha256={digest},{len(data)}"


def _zipinfo(path: str, epoch: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(path, date_time=time.gmtime(max(epoch, _ZIP_MIN_EPOCH))[:6])
    info.external_attr = (0o100644 & 0xFFFF) << 16
    info.create_system = 3  # Unix, so the mode above is read
    info.compress_type = zipfile.ZIP_DEFLATED
    return info


def build_wheel(spec: WheelSpec, *, epoch: int) -> bytes:
    """The wheel's bytes; same spec and epoch, same bytes."""
    info_dir = f"{normalized_name(spec.name)}-{spec.version}.dist-info"
    payload = sorted(spec.files)
    meta = [
        (f"{info_dir}/METADATA", _metadata(spec)),
        (f"{info_dir}/WHEEL", _wheel_file()),
    ]
    if spec.scripts:
        meta.append((f"{info_dir}/entry_points.txt", _entry_points(spec.scripts)))
    entries = payload + sorted(meta)
    names = [p for p, _ in entries]
    if len(set(names)) != len(names) or any(p.startswith(info_dir) for p, _ in payload):
        raise ValueError(f"{spec.name}: duplicate or reserved paths in the wheel")
    record_path = f"{info_dir}/RECORD"
    record = "".join(_record_line(p, d) + "\n" for p, d in entries) + f"{record_path},,\n"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for path, data in [*entries, (record_path, record.encode())]:
            zf.writestr(_zipinfo(path, epoch), data, compresslevel=_LEVEL)
    return buffer.getvalue()
