"""SBOM values (api.md §3). STAND-IN until branch l17/attest lands: take theirs on merge."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Component"]


@dataclass(frozen=True, kw_only=True)
class Component:
    """One component of an image's bill of materials."""

    name: str
    version: str
    purl: str
    sha256: str | None = None
    kind: str = "library"
