"""Reference measurements: what a good boot of each model extends into each PCR.

``rom``, ``bootloader`` and ``agent`` values are published per model by the service; ``image``
values come from release manifests (docs/ota.md, ``measurements``). Which of those releases a
given device may run is the device's business (:class:`~.verify.DeviceAttestationState`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final

from trustfleet.errors import InvalidInput

__all__ = [
    "COMPONENT_PCR",
    "DEFAULT_PCRS",
    "MODEL_COMPONENTS",
    "SIM_AGENT_IDENTITY",
    "SIM_BOOTLOADER_IDENTITY",
    "SIM_ROM_IDENTITY",
    "ModelReference",
    "ReferenceSet",
    "ReleaseReference",
    "measure_identity",
    "release_reference_from_manifest",
]

COMPONENT_PCR: Final[Mapping[str, int]] = MappingProxyType(
    {"rom": 0, "bootloader": 4, "image": 9, "agent": 10}
)
"""The PCR each boot component is measured into (docs/attestation.md)."""
DEFAULT_PCRS: Final = (0, 4, 9, 10)
"""The PCRs a challenge asks to be quoted."""
MODEL_COMPONENTS: Final = ("rom", "bootloader", "agent")
"""The components whose reference values are published per model (``image`` is per release)."""

SIM_ROM_IDENTITY: Final = "trustfleet-sim-rom/{model}/1"
"""The simulated boot ROM's identity; its SHA-256 is what the ROM extends into PCR 0."""
SIM_BOOTLOADER_IDENTITY: Final = "trustfleet-sim-boot/{model}/1"
"""The simulated bootloader's identity; the ROM extends its SHA-256 into PCR 4."""
SIM_AGENT_IDENTITY: Final = "trustfleet-agent/{version}"
"""The agent's identity (package version); the image extends its SHA-256 into PCR 10.

One definition for both sides: the device's boot chain measures these, the service publishes
their digests as the per-model reference values."""

_BAD_MANIFEST: Final = "attestation.reference.invalid"


def measure_identity(identity: str) -> bytes:
    """The measurement of a boot stage named by an identity string: SHA-256 of its UTF-8."""
    return hashlib.sha256(identity.encode("utf-8")).digest()


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelReference:
    """The good digests of a model's fixed boot stages (several while a change rolls out).

    Attributes:
        model: The hardware model.
        rom: Good ROM digests.
        bootloader: Good bootloader digests.
        agent: Good agent digests.
    """

    model: str
    rom: frozenset[bytes]
    bootloader: frozenset[bytes]
    agent: frozenset[bytes]

    def digests(self, component: str) -> frozenset[bytes]:
        """The good digests of ``rom``, ``bootloader`` or ``agent`` (empty for others)."""
        if component == "rom":
            return self.rom
        if component == "bootloader":
            return self.bootloader
        if component == "agent":
            return self.agent
        return frozenset()


@dataclass(frozen=True, slots=True, kw_only=True)
class ReleaseReference:
    """The image measurement of one release.

    Attributes:
        model: The model the release is for.
        version: ``MAJOR.MINOR.PATCH``.
        image_sha256: SHA-256 of the release's ``image.bin`` (what PCR 9 is extended with).
    """

    model: str
    version: str
    image_sha256: bytes


def _version_key(version: str) -> tuple[int, ...]:
    parts = version.split(".")
    return tuple(int(p) if p.isdigit() else -1 for p in parts)


@dataclass(frozen=True, slots=True, kw_only=True)
class ReferenceSet:
    """Every reference value the verifier knows, indexed for lookups per verification.

    Build it once (for example when releases are published) and share it between
    verifications; it is immutable.

    Attributes:
        models: Per model, the fixed-stage digests.
        releases: Every published release.
    """

    models: Mapping[str, ModelReference]
    releases: tuple[ReleaseReference, ...] = ()
    _images: Mapping[tuple[str, bytes], tuple[str, ...]] = field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        index: dict[tuple[str, bytes], list[str]] = {}
        for rel in self.releases:
            index.setdefault((rel.model, rel.image_sha256), []).append(rel.version)
        frozen = {
            key: tuple(sorted(versions, key=_version_key, reverse=True))
            for key, versions in index.items()
        }
        object.__setattr__(self, "models", MappingProxyType(dict(self.models)))
        object.__setattr__(self, "_images", MappingProxyType(frozen))

    @classmethod
    def build(
        cls, *, models: Iterable[ModelReference], releases: Iterable[ReleaseReference] = ()
    ) -> ReferenceSet:
        """A reference set from model and release references."""
        return cls(models={m.model: m for m in models}, releases=tuple(releases))

    def image_releases(self, model: str, digest: bytes) -> tuple[str, ...]:
        """The versions of ``model`` whose image has this digest, newest first."""
        return self._images.get((model, digest), ())

    def match_image(self, model: str, digest: bytes, allowed: frozenset[str] | None) -> str | None:
        """The newest release of ``model`` whose image has this digest, if any.

        Args:
            model: The device's model.
            digest: The measured image digest.
            allowed: The releases the device may run (``None``: any published release).
        """
        for version in self._images.get((model, digest), ()):
            if allowed is None or version in allowed:
                return version
        return None


def _bad(message: str) -> InvalidInput:
    return InvalidInput(
        f"release manifest: {message}",
        hint="use a manifest written by 'trustfleet release build' (docs/ota.md)",
        code=_BAD_MANIFEST,
    )


def release_reference_from_manifest(manifest: Mapping[str, Any]) -> ReleaseReference:
    """The image reference of a release, from its decoded ``release.json`` (docs/ota.md).

    Args:
        manifest: The decoded manifest (already verified through TUF by the caller).

    Returns:
        The release reference (the ``image`` measurement for PCR 9).

    Raises:
        InvalidInput: The manifest lacks a model, a version or exactly one well-formed
            ``image`` measurement on PCR 9 (``attestation.reference.invalid``).
    """
    model, version = manifest.get("model"), manifest.get("version")
    if not isinstance(model, str) or not isinstance(version, str):
        raise _bad("'model' and 'version' must be strings")
    measurements = manifest.get("measurements")
    if not isinstance(measurements, list):
        raise _bad("'measurements' must be a list")
    images = [m for m in measurements if isinstance(m, dict) and m.get("component") == "image"]
    if len(images) != 1 or images[0].get("pcr") != COMPONENT_PCR["image"]:
        raise _bad("there must be exactly one 'image' measurement, on PCR 9")
    hexdigest = images[0].get("sha256")
    digest = b""
    if isinstance(hexdigest, str) and len(hexdigest) == 64:
        try:
            digest = bytes.fromhex(hexdigest)
        except ValueError:
            digest = b""
    if len(digest) != 32:
        raise _bad("the image 'sha256' must be 64 hex digits")
    return ReleaseReference(model=model, version=version, image_sha256=digest)
