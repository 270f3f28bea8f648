"""The structural checks of :func:`trustfleet.ota.sbom.check_sbom`, one per format.

Each checker raises :class:`SbomError` naming the first problem with its JSON path
(``components[3].name is missing``); ``check_sbom`` turns it into ``InvalidInput``. Standard
library only (devices import this).
"""

from __future__ import annotations

import re
import uuid
from typing import Any

__all__ = ["COMPONENT_TYPES", "SbomError", "check_cyclonedx", "check_spdx"]

_TYPES_14 = frozenset(
    "application framework library container operating-system device firmware file".split()  # noqa: SIM905
)
_TYPES_15 = _TYPES_14 | {"platform", "device-driver", "machine-learning-model", "data"}
COMPONENT_TYPES = {"1.4": _TYPES_14, "1.5": _TYPES_15, "1.6": _TYPES_15 | {"cryptographic-asset"}}
"""CycloneDX ``component.type`` values per spec version."""

_MAX_DEPTH = 32
"""Deepest nesting of CycloneDX components."""
_MAX_STRING = 4096
_SPDX_VERSIONS = {"SPDX-2.2": "2.2", "SPDX-2.3": "2.3"}
_SPDX_ID = re.compile(r"SPDXRef-[A-Za-z0-9.-]+")
_SPDX_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z")
_CREATORS = ("Person: ", "Organization: ", "Tool: ")
_HEX = re.compile(r"[0-9a-fA-F]+")


class SbomError(ValueError):
    """The first structural problem found in an SBOM."""


def _string(doc: dict[str, Any], key: str, path: str, *, required: bool = True) -> str | None:
    if key not in doc:
        if required:
            raise SbomError(f"{path}.{key} is missing")
        return None
    value = doc[key]
    if not isinstance(value, str) or len(value) > _MAX_STRING:
        raise SbomError(f"{path}.{key} is not a string of at most {_MAX_STRING} characters")
    return value


def _object(value: Any, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise SbomError(f"{path} is not an object")
    return value


def _array(doc: dict[str, Any], key: str, path: str) -> list[Any]:
    value = doc.get(key, [])
    if not isinstance(value, list):
        raise SbomError(f"{path}{key} is not an array")
    return value


def check_cyclonedx(doc: dict[str, Any], *, max_components: int) -> tuple[str, int, str]:
    """Check a CycloneDX JSON document (1.4-1.6).

    Returns:
        The spec version, the component count (nested included; not metadata.component) and
        the serial number (empty when absent).

    Raises:
        SbomError: The first problem found.
    """
    if doc.get("bomFormat") != "CycloneDX":
        raise SbomError("bomFormat is not 'CycloneDX'")
    spec = doc.get("specVersion")
    if not isinstance(spec, str) or spec not in COMPONENT_TYPES:
        raise SbomError(f"specVersion must be one of {sorted(COMPONENT_TYPES)}")
    serial = _string(doc, "serialNumber", "bom", required=False) or ""
    if serial:
        _serial(serial)
    version = doc.get("version", 1)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise SbomError("version must be an integer of at least 1")
    refs: set[str] = set()
    metadata = _object(doc.get("metadata", {}), "metadata")
    if "component" in metadata:
        _component(metadata["component"], "metadata.component", spec, refs)
    count = 0
    stack = [(item, f"components[{i}]", 1) for i, item in enumerate(_array(doc, "components", ""))]
    stack.reverse()
    while stack:
        item, path, depth = stack.pop()
        count += 1
        if count > max_components:
            raise SbomError(f"lists more than {max_components} components")
        comp = _component(item, path, spec, refs)
        nested = _array(comp, "components", f"{path}.")
        if nested and depth >= _MAX_DEPTH:
            raise SbomError(f"{path}.components nest deeper than {_MAX_DEPTH} levels")
        stack.extend(
            (sub, f"{path}.components[{j}]", depth + 1)
            for j, sub in reversed(list(enumerate(nested)))
        )
    return str(spec), count, serial


def _serial(serial: str) -> None:
    try:
        ok = serial.startswith("urn:uuid:") and str(uuid.UUID(serial[9:])) == serial[9:].lower()
    except ValueError:
        ok = False
    if not ok:
        raise SbomError("serialNumber is not a urn:uuid: URN")


def _component(value: Any, path: str, spec: str, refs: set[str]) -> dict[str, Any]:
    comp = _object(value, path)
    kind = _string(comp, "type", path)
    if kind not in COMPONENT_TYPES[spec]:
        raise SbomError(f"{path}.type '{str(kind)[:40]}' is not a CycloneDX {spec} type")
    _string(comp, "name", path)
    _string(comp, "version", path, required=False)
    _string(comp, "purl", path, required=False)
    ref = _string(comp, "bom-ref", path, required=False)
    if ref is not None:
        if ref in refs:
            raise SbomError(f"{path}.bom-ref '{ref[:80]}' is not unique")
        refs.add(ref)
    for index, entry in enumerate(_array(comp, "hashes", f"{path}.")):
        where = f"{path}.hashes[{index}]"
        hashed = _object(entry, where)
        _string(hashed, "alg", where)
        content = _string(hashed, "content", where)
        if _HEX.fullmatch(str(content)) is None:
            raise SbomError(f"{where}.content is not hex")
    return comp


def check_spdx(doc: dict[str, Any], *, max_packages: int) -> tuple[str, int, str]:
    """Check an SPDX JSON document (2.2 or 2.3).

    Returns:
        The spec version (``2.3``), the package count and the document namespace.

    Raises:
        SbomError: The first problem found.
    """
    spec = _SPDX_VERSIONS.get(str(doc.get("spdxVersion")))
    if spec is None:
        raise SbomError(f"spdxVersion must be one of {sorted(_SPDX_VERSIONS)}")
    if doc.get("dataLicense") != "CC0-1.0":
        raise SbomError("dataLicense is not 'CC0-1.0'")
    if doc.get("SPDXID") != "SPDXRef-DOCUMENT":
        raise SbomError("SPDXID is not 'SPDXRef-DOCUMENT'")
    if not _string(doc, "name", "document"):
        raise SbomError("document.name is empty")
    namespace = str(_string(doc, "documentNamespace", "document"))
    if ":" not in namespace or "#" in namespace:
        raise SbomError("documentNamespace is not a URI without '#'")
    _creation(_object(doc.get("creationInfo"), "creationInfo"))
    packages = _array(doc, "packages", "")
    if len(packages) > max_packages:
        raise SbomError(f"lists more than {max_packages} packages")
    ids: set[str] = set()
    for index, value in enumerate(packages):
        path = f"packages[{index}]"
        package = _object(value, path)
        spdx_id = str(_string(package, "SPDXID", path))
        if _SPDX_ID.fullmatch(spdx_id) is None:
            raise SbomError(f"{path}.SPDXID is not 'SPDXRef-' and letters, digits, '.', '-'")
        if spdx_id in ids:
            raise SbomError(f"{path}.SPDXID '{spdx_id[:80]}' is not unique")
        ids.add(spdx_id)
        _string(package, "name", path)
        if not _string(package, "downloadLocation", path):
            raise SbomError(f"{path}.downloadLocation is empty")
    return spec, len(packages), namespace


def _creation(info: dict[str, Any]) -> None:
    created = str(_string(info, "created", "creationInfo"))
    if _SPDX_TIME.fullmatch(created) is None:
        raise SbomError("creationInfo.created is not YYYY-MM-DDThh:mm:ssZ")
    creators = _array(info, "creators", "creationInfo.")
    if not creators:
        raise SbomError("creationInfo.creators is missing or empty")
    for index, creator in enumerate(creators):
        if not isinstance(creator, str) or not creator.startswith(_CREATORS):
            raise SbomError(
                f"creationInfo.creators[{index}] is not 'Person: ', 'Organization: ' or 'Tool: '"
            )
