"""Software bills of materials: structural checks (CycloneDX, SPDX) and the image's CycloneDX.

:func:`check_sbom` reads CycloneDX JSON 1.4-1.6 or SPDX JSON 2.2/2.3 and checks what each spec
requires (docs/supply-chain.md, Formats), counts the components (CycloneDX, nested included) or
packages (SPDX) and bounds size, count and depth. It is structural, not a schema validation:
it imports nothing outside the standard library (this module ships on devices).

:func:`cyclonedx_for_image` writes the CycloneDX 1.6 SBOM of a simulated image, deterministic:
the same inputs give the same bytes.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from trustfleet.errors import InvalidInput
from trustfleet.ota import _strict_json
from trustfleet.ota._sbom_formats import COMPONENT_TYPES, SbomError, check_cyclonedx, check_spdx

__all__ = ["Component", "SbomInfo", "check_sbom", "cyclonedx_for_image"]

_SERIAL_NAMESPACE = uuid.UUID("6ba7b811-9dad-11d1-80b4-00c04fd430c8")  # uuid.NAMESPACE_URL


@dataclass(frozen=True, slots=True, kw_only=True)
class Component:
    """A component of an image: name, version, package URL, optional SHA-256, CycloneDX type."""

    name: str
    version: str
    purl: str
    sha256: str | None = None
    kind: str = "library"


@dataclass(frozen=True, slots=True, kw_only=True)
class SbomInfo:
    """What :func:`check_sbom` found: format (``cyclonedx``/``spdx``), its version, the count
    of components (CycloneDX, nested included) or packages (SPDX), and the document's serial
    (CycloneDX ``serialNumber`` or SPDX ``documentNamespace``; empty when absent)."""

    format: str
    spec_version: str
    components: int
    serial: str


def check_sbom(data: bytes, *, max_bytes: int, max_components: int) -> SbomInfo:
    """Check an SBOM's structure and count its components.

    Args:
        data: The SBOM's bytes (CycloneDX JSON 1.4-1.6 or SPDX JSON 2.2/2.3).
        max_bytes: The largest SBOM accepted.
        max_components: The most components (or packages) accepted.

    Returns:
        The format, spec version, component count and serial.

    Raises:
        InvalidInput: Oversize, not JSON, neither format, or the first structural problem
            found, e.g. ``components[3].name is missing`` (code ``ota.sbom.invalid``).
    """
    doc = _strict_json.load(data, max_bytes=max_bytes, bad=_bad)
    if not isinstance(doc, dict):
        raise _bad("the document is not a JSON object")
    try:
        if "bomFormat" in doc:
            spec, count, serial = check_cyclonedx(doc, max_components=max_components)
            return SbomInfo(format="cyclonedx", spec_version=spec, components=count, serial=serial)
        if "spdxVersion" in doc:
            spec, count, serial = check_spdx(doc, max_packages=max_components)
            return SbomInfo(format="spdx", spec_version=spec, components=count, serial=serial)
    except SbomError as exc:  # the checkers name the problem
        raise _bad(str(exc)) from exc
    raise _bad("neither CycloneDX ('bomFormat') nor SPDX ('spdxVersion') JSON")


def cyclonedx_for_image(
    *,
    model: str,
    version: str,
    image_sha256: str,
    image_length: int,
    components: Sequence[Component],
    timestamp: datetime,
    product_version: str,
) -> bytes:
    """The CycloneDX 1.6 JSON SBOM of an image, deterministic.

    ``serialNumber`` is a UUID v5 of model, version and image digest; ``metadata.component``
    is the image (type ``firmware``, its SHA-256); ``metadata.tools`` names trustfleet and
    ``product_version``; components are sorted, each ``bom-ref`` its purl (or name@version).

    Args:
        model: The device model.
        version: The release version.
        image_sha256: The image's SHA-256 (hex).
        image_length: The image's length in bytes.
        components: What the image contains.
        timestamp: The SBOM's time (the release's build time).
        product_version: TrustFleet's version.

    Returns:
        Canonical JSON bytes (sorted keys, compact).

    Raises:
        InvalidInput: A component has an unknown type or two components share a bom-ref
            (code ``ota.sbom.invalid``).
    """
    serial = uuid.uuid5(_SERIAL_NAMESPACE, f"urn:trustfleet:sbom:{model}/{version}/{image_sha256}")
    image = _image_component(model, version, image_sha256, image_length)
    entries = _components(components, taken=image["bom-ref"])
    doc: dict[str, Any] = {
        "bomFormat": "CycloneDX",
        "specVersion": "1.6",
        "serialNumber": f"urn:uuid:{serial}",
        "version": 1,
        "metadata": {
            "timestamp": timestamp.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "tools": {
                "components": [
                    {"type": "application", "name": "trustfleet", "version": product_version}
                ]
            },
            "component": image,
        },
        "components": entries,
        "dependencies": [
            {"ref": image["bom-ref"], "dependsOn": [e["bom-ref"] for e in entries]},
            *({"ref": e["bom-ref"]} for e in entries),
        ],
    }
    return _strict_json.dumps(doc)


def _image_component(model: str, version: str, sha256: str, length: int) -> dict[str, Any]:
    return {
        "type": "firmware",
        "bom-ref": f"urn:trustfleet:image:{model}:{version}",
        "name": model,
        "version": version,
        "hashes": [{"alg": "SHA-256", "content": sha256}],
        "properties": [{"name": "trustfleet:image:length", "value": str(length)}],
    }


def _components(components: Sequence[Component], *, taken: str) -> list[dict[str, Any]]:
    entries: dict[str, dict[str, Any]] = {taken: {}}
    for comp in sorted(set(components), key=lambda c: (c.name, c.version, c.purl, c.kind)):
        if comp.kind not in COMPONENT_TYPES["1.6"]:
            raise _bad(f"component '{comp.name[:60]}' has the unknown type '{comp.kind[:40]}'")
        ref = comp.purl or f"{comp.name}@{comp.version}"
        if ref in entries:
            raise _bad(f"two components share the bom-ref '{ref[:80]}'")
        entry: dict[str, Any] = {"type": comp.kind, "bom-ref": ref, "name": comp.name}
        if comp.version:
            entry["version"] = comp.version
        if comp.purl:
            entry["purl"] = comp.purl
        if comp.sha256 is not None:
            entry["hashes"] = [{"alg": "SHA-256", "content": comp.sha256}]
        entries[ref] = entry
    del entries[taken]
    return list(entries.values())


def _bad(why: str) -> InvalidInput:
    return InvalidInput(
        f"SBOM refused: {why}",
        hint="supply CycloneDX JSON 1.4-1.6 or SPDX JSON 2.2/2.3",
        code="ota.sbom.invalid",
    )
