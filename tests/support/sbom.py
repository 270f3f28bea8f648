"""Small, valid SBOM documents for tests that build releases from non-simulated images."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["cyclonedx_doc", "spdx_doc", "write_sbom"]


def cyclonedx_doc(*, components: int = 2, name: str = "firmware") -> dict[str, Any]:
    """A CycloneDX 1.6 JSON SBOM listing ``components`` libraries."""
    return {
        "bomFormat": "CycloneDX",
        "specVersion": "1.6",
        "serialNumber": "urn:uuid:3e671687-395b-41f5-a30f-a58921a69b79",
        "version": 1,
        "metadata": {"component": {"type": "firmware", "name": name, "bom-ref": "fw"}},
        "components": [
            {"type": "library", "name": f"lib{i}", "version": "1.0", "bom-ref": f"c{i}"}
            for i in range(components)
        ],
    }


def spdx_doc(*, packages: int = 2) -> dict[str, Any]:
    """An SPDX 2.3 JSON document listing ``packages`` packages."""
    return {
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": "firmware",
        "documentNamespace": "https://example.com/spdx/firmware-1",
        "creationInfo": {"created": "2026-01-01T00:00:00Z", "creators": ["Tool: test"]},
        "packages": [
            {"SPDXID": f"SPDXRef-p{i}", "name": f"pkg{i}", "downloadLocation": "NOASSERTION"}
            for i in range(packages)
        ],
    }


def write_sbom(path: Path, doc: dict[str, Any] | None = None) -> Path:
    """Write ``doc`` (default: a small CycloneDX SBOM) as JSON to ``path``."""
    path.write_text(json.dumps(doc if doc is not None else cyclonedx_doc()))
    return path
