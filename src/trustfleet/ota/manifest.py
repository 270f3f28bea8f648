"""The release manifest (``release.json``, schema ``trustfleet.release/1``; docs/ota.md).

A manifest is a TUF target of its own, so its bytes are covered by the targets signature. This
module parses it strictly (unknown fields, wrong types and oversize input are refused) and
renders it canonically (sorted keys, no whitespace), so the same manifest is the same bytes.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import partial
from typing import Any

from trustfleet.errors import InvalidInput
from trustfleet.ota import _strict_json
from trustfleet.ota.versions import Version, check_model, parse_version

__all__ = [
    "MAX_MANIFEST_BYTES",
    "SBOM_FORMATS",
    "SCHEMA",
    "BootSignature",
    "DeltaRef",
    "ImageRef",
    "Measurement",
    "ProvenanceRef",
    "ReleaseManifest",
    "SbomRef",
    "delta_target",
    "image_target",
    "manifest_target",
    "parse_manifest",
    "provenance_target",
    "render_manifest",
    "sbom_target",
]

SCHEMA = "trustfleet.release/1"
MAX_MANIFEST_BYTES = 64 * 1024
"""Bound on a manifest's size (a manifest lists a few deltas and measurements)."""

_MAX_DELTAS = 32
_MAX_MEASUREMENTS = 32
_HEX64 = re.compile(r"[0-9a-f]{64}")
_COMPONENT = re.compile(r"[a-z0-9_.-]{1,32}")
_MAX_TARGET_CHARS = 255
_MANIFEST_FIELDS = frozenset(
    "schema model version min_version created_at image boot deltas measurements".split()  # noqa: SIM905
)
"""The top-level fields (one string: a multi-line literal would hide lines from coverage)."""
_OPTIONAL_FIELDS = frozenset({"sbom", "provenance"})
"""Top-level fields a manifest may add (docs/supply-chain.md); absent in older releases."""
SBOM_FORMATS = ("cyclonedx", "spdx")
"""The SBOM formats a release may carry (JSON encodings of CycloneDX 1.4-1.6 and SPDX 2.2-2.3)."""
_SBOM_FILES = {"cyclonedx": "sbom.cdx.json", "spdx": "sbom.spdx.json"}
_MAX_COMPONENTS = 1 << 24


def manifest_target(model: str, version: str) -> str:
    """The TUF target path of a release's manifest."""
    return f"{model}/{version}/release.json"


def image_target(model: str, version: str) -> str:
    """The TUF target path of a release's full image."""
    return f"{model}/{version}/image.bin"


def sbom_target(model: str, version: str, sbom_format: str) -> str:
    """The TUF target path of a release's SBOM (``sbom.cdx.json`` or ``sbom.spdx.json``)."""
    return f"{model}/{version}/{_SBOM_FILES[sbom_format]}"


def provenance_target(model: str, version: str) -> str:
    """The TUF target path of a release's provenance: a DSSE envelope of an in-toto Statement."""
    return f"{model}/{version}/provenance.dsse.json"


def delta_target(model: str, version: str, from_version: str) -> str:
    """The TUF target path of the delta from ``from_version`` to ``version``."""
    return f"{model}/{version}/from-{from_version}.delta"


@dataclass(frozen=True, slots=True, kw_only=True)
class ImageRef:
    """The full image: its target path, length and SHA-256 (hex)."""

    target: str
    length: int
    sha256: str


@dataclass(frozen=True, slots=True, kw_only=True)
class BootSignature:
    """The boot chain's signature over the image (ECDSA P-256/SHA-256, DER) and its key."""

    key_sha256: str
    signature: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class DeltaRef:
    """A delta from an older release's image to this one."""

    target: str
    from_version: str
    from_sha256: str
    length: int
    sha256: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Measurement:
    """A reference measurement the boot chain produces for this release."""

    pcr: int
    component: str
    sha256: str


@dataclass(frozen=True, slots=True, kw_only=True)
class SbomRef:
    """The release's bill of materials: a TUF target of its own, bound here by its digest."""

    target: str
    format: str
    """One of :data:`SBOM_FORMATS`."""
    length: int
    sha256: str
    components: int
    """How many components (CycloneDX, nested ones included) or packages (SPDX) it lists."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ProvenanceRef:
    """The release's provenance: a DSSE envelope (in-toto Statement v1 with an SLSA Provenance
    v1 predicate whose subject is the image), signed by the release (TUF targets) key."""

    target: str
    length: int
    sha256: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ReleaseManifest:
    """A parsed release manifest (docs/ota.md)."""

    model: str
    version: str
    min_version: str
    created_at: datetime
    image: ImageRef
    boot: BootSignature
    deltas: tuple[DeltaRef, ...] = ()
    measurements: tuple[Measurement, ...] = field(default=())
    sbom: SbomRef | None = None
    provenance: ProvenanceRef | None = None

    @property
    def version_key(self) -> Version:
        """The version, parsed for comparison."""
        return parse_version(self.version)

    @property
    def min_version_key(self) -> Version:
        """The minimum installed version, parsed for comparison."""
        return parse_version(self.min_version)

    def with_deltas(self, deltas: tuple[DeltaRef, ...]) -> ReleaseManifest:
        """A copy listing ``deltas``."""
        return replace(self, deltas=deltas)

    def delta_from(self, version: str, image_sha256: str) -> DeltaRef | None:
        """The delta that applies to the image of ``version`` with that SHA-256, if listed."""
        for delta in self.deltas:
            if delta.from_version == version and delta.from_sha256 == image_sha256:
                return delta
        return None


def render_manifest(manifest: ReleaseManifest) -> bytes:
    """The canonical JSON bytes of a manifest."""
    created = manifest.created_at.astimezone(UTC).isoformat(timespec="seconds")
    doc: dict[str, Any] = {
        "schema": SCHEMA,
        "model": manifest.model,
        "version": manifest.version,
        "min_version": manifest.min_version,
        "created_at": created.replace("+00:00", "Z"),
        "image": {
            "target": manifest.image.target,
            "length": manifest.image.length,
            "sha256": manifest.image.sha256,
        },
        "boot": {
            "key_sha256": manifest.boot.key_sha256,
            "signature": base64.b64encode(manifest.boot.signature).decode("ascii"),
        },
        "deltas": [
            {
                "target": d.target,
                "from_version": d.from_version,
                "from_sha256": d.from_sha256,
                "length": d.length,
                "sha256": d.sha256,
            }
            for d in manifest.deltas
        ],
        "measurements": [
            {"pcr": m.pcr, "component": m.component, "sha256": m.sha256}
            for m in manifest.measurements
        ],
    }
    if manifest.sbom is not None:
        sbom = manifest.sbom
        doc["sbom"] = {
            "target": sbom.target,
            "format": sbom.format,
            "length": sbom.length,
            "sha256": sbom.sha256,
            "components": sbom.components,
        }
    if manifest.provenance is not None:
        prov = manifest.provenance
        doc["provenance"] = {"target": prov.target, "length": prov.length, "sha256": prov.sha256}
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode("utf-8")


def parse_manifest(data: bytes, *, max_bytes: int = MAX_MANIFEST_BYTES) -> ReleaseManifest:
    """Parse and check a manifest.

    Raises:
        InvalidInput: The bytes are not a valid ``trustfleet.release/1`` manifest
            (code ``ota.manifest.invalid``).
    """
    if len(data) > max_bytes:
        raise _bad(f"larger than {max_bytes} bytes")
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _bad("not UTF-8 JSON") from exc
    fields = _object(doc, "manifest", _MANIFEST_FIELDS, optional=_OPTIONAL_FIELDS)
    if fields["schema"] != SCHEMA:
        raise _bad(f"schema is not '{SCHEMA}'")
    version, min_version = fields["version"], fields["min_version"]
    try:
        model = check_model(fields["model"])
        version_key, min_version_key = parse_version(version), parse_version(min_version)
    except InvalidInput as exc:
        raise _bad(exc.message) from exc
    if min_version_key > version_key:
        raise _bad("min_version is above version")
    return ReleaseManifest(
        model=model,
        version=version,
        min_version=min_version,
        created_at=_timestamp(fields["created_at"]),
        image=_image(fields["image"]),
        boot=_boot(fields["boot"]),
        deltas=tuple(_delta(d) for d in _array(fields["deltas"], "deltas", _MAX_DELTAS)),
        measurements=tuple(
            _measurement(m)
            for m in _array(fields["measurements"], "measurements", _MAX_MEASUREMENTS)
        ),
        sbom=_sbom(fields["sbom"]) if "sbom" in fields else None,
        provenance=_provenance(fields["provenance"]) if "provenance" in fields else None,
    )


def _bad(why: str) -> InvalidInput:
    return InvalidInput(
        f"release manifest refused: {why}",
        hint="rebuild the release with 'trustfleet release build'",
        code="ota.manifest.invalid",
    )


_object = partial(_strict_json.fields, bad=_bad)
"""``value`` as an object with all of ``keys`` and besides them only ``optional`` ones."""


def _array(value: Any, name: str, limit: int) -> list[Any]:
    if not isinstance(value, list) or len(value) > limit:
        raise _bad(f"'{name}' must be a list of at most {limit} items")
    return value


def _hex64(value: Any, name: str) -> str:
    if not isinstance(value, str) or _HEX64.fullmatch(value) is None:
        raise _bad(f"'{name}' must be 64 lowercase hex digits")
    return value


def _count(value: Any, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 1 << 40:
        raise _bad(f"'{name}' must be a non-negative integer")
    return value


def _target(value: Any, name: str) -> str:
    ok = isinstance(value, str) and 0 < len(value) <= _MAX_TARGET_CHARS
    if not ok or value.startswith("/") or ".." in value.split("/"):
        raise _bad(f"'{name}' is not a target path")
    return str(value)


def _version(value: Any, name: str) -> str:
    try:
        parse_version(value)
    except InvalidInput as exc:
        raise _bad(f"'{name}': {exc.message}") from exc
    return str(value)


def _timestamp(value: Any) -> datetime:
    try:
        when = datetime.fromisoformat(str(value))  # Python 3.11 reads a trailing "Z"
    except ValueError as exc:
        raise _bad("'created_at' is not an ISO 8601 time") from exc
    if when.tzinfo is None:
        raise _bad("'created_at' has no time zone")
    return when.astimezone(UTC)


def _image(value: Any) -> ImageRef:
    doc = _object(value, "image", {"target", "length", "sha256"})
    return ImageRef(
        target=_target(doc["target"], "image.target"),
        length=_count(doc["length"], "image.length"),
        sha256=_hex64(doc["sha256"], "image.sha256"),
    )


def _boot(value: Any) -> BootSignature:
    doc = _object(value, "boot", {"key_sha256", "signature"})
    try:
        signature = base64.b64decode(str(doc["signature"]), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise _bad("'boot.signature' is not base64") from exc
    if not 8 <= len(signature) <= 160:
        raise _bad("'boot.signature' has an impossible length")
    return BootSignature(
        key_sha256=_hex64(doc["key_sha256"], "boot.key_sha256"), signature=signature
    )


def _delta(value: Any) -> DeltaRef:
    doc = _object(value, "delta", {"target", "from_version", "from_sha256", "length", "sha256"})
    return DeltaRef(
        target=_target(doc["target"], "delta.target"),
        from_version=_version(doc["from_version"], "delta.from_version"),
        from_sha256=_hex64(doc["from_sha256"], "delta.from_sha256"),
        length=_count(doc["length"], "delta.length"),
        sha256=_hex64(doc["sha256"], "delta.sha256"),
    )


def _measurement(value: Any) -> Measurement:
    doc = _object(value, "measurement", {"pcr", "component", "sha256"})
    pcr = doc["pcr"]
    if not isinstance(pcr, int) or isinstance(pcr, bool) or not 0 <= pcr <= 23:
        raise _bad("'measurement.pcr' must be 0-23")
    component = doc["component"]
    if not isinstance(component, str) or _COMPONENT.fullmatch(component) is None:
        raise _bad("'measurement.component' is not a component name")
    return Measurement(pcr=pcr, component=component, sha256=_hex64(doc["sha256"], "sha256"))


def _sbom(value: Any) -> SbomRef:
    doc = _object(value, "sbom", {"target", "format", "length", "sha256", "components"})
    if doc["format"] not in SBOM_FORMATS:
        raise _bad(f"'sbom.format' must be one of {list(SBOM_FORMATS)}")
    components = _count(doc["components"], "sbom.components")
    if components > _MAX_COMPONENTS:
        raise _bad("'sbom.components' is too large")
    return SbomRef(
        target=_target(doc["target"], "sbom.target"),
        format=str(doc["format"]),
        length=_count(doc["length"], "sbom.length"),
        sha256=_hex64(doc["sha256"], "sbom.sha256"),
        components=components,
    )


def _provenance(value: Any) -> ProvenanceRef:
    doc = _object(value, "provenance", {"target", "length", "sha256"})
    return ProvenanceRef(
        target=_target(doc["target"], "provenance.target"),
        length=_count(doc["length"], "provenance.length"),
        sha256=_hex64(doc["sha256"], "provenance.sha256"),
    )
