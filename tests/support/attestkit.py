"""Release attestations for tests: a sample provenance and a whole published release in memory.

:func:`release_files` builds what ``release build`` + ``publish`` make of one image (manifest,
CycloneDX SBOM, DSSE provenance signed by a release key) and the TUF targets entries that list
them, so the release-chain verifier can be tested without a repository.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

from securesystemslib.signer import Signer

from support.releasekit import NOW, SHA_A, BootKey, manifest_for
from trustfleet.ota.dsse import render_envelope, sign_envelope
from trustfleet.ota.manifest import (
    ProvenanceRef,
    SbomRef,
    image_target,
    parse_manifest,
    provenance_target,
    render_manifest,
    sbom_target,
)
from trustfleet.ota.provenance import BUILD_TYPE, Material, Provenance, render_statement
from trustfleet.ota.release_verify import TargetDigest, VerifyLimits
from trustfleet.ota.sbom import Component, cyclonedx_for_image

__all__ = ["BUILDER", "LIMITS", "Release", "release_files", "sample_provenance"]

BUILDER = "urn:trustfleet:builder:release-cli"
LIMITS = VerifyLimits(
    max_manifest_bytes=64 * 1024,
    max_sbom_bytes=1 << 20,
    max_sbom_components=1000,
    max_provenance_bytes=256 * 1024,
)


def sample_provenance(**changes: Any) -> Provenance:
    """A provenance of image ``SHA_A`` by :data:`BUILDER`; ``changes`` replace fields."""
    provenance = Provenance(
        subject_name="image.bin",
        subject_sha256=SHA_A,
        builder_id=BUILDER,
        build_type=BUILD_TYPE,
        parameters={"model": "m", "version": "1.0.0", "min_version": "0.0.1"},
        materials=(Material("file:image.bin", SHA_A),),
        invocation_id="urn:uuid:00000000-0000-4000-8000-000000000001",
        started_on=NOW,
        finished_on=NOW + timedelta(seconds=3),
        builder_version="0.17.0",
    )
    return replace(provenance, **changes)


@dataclass
class Release:
    """A published release in memory: TUF targets entries and the fetched files by path."""

    model: str
    version: str
    image: bytes
    targets: dict[str, TargetDigest] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)

    def put(self, path: str, data: bytes, *, listed: bool = True, fetched: bool = True) -> None:
        """Add a target (listed with its digest) and its fetched bytes."""
        if listed:
            self.targets[path] = TargetDigest(len(data), hashlib.sha256(data).hexdigest())
        if fetched:
            self.files[path] = data


def _ref_of(path: str, data: bytes) -> tuple[str, int, str]:
    return path, len(data), hashlib.sha256(data).hexdigest()


def release_files(
    signer: Signer,
    *,
    model: str = "m",
    version: str = "1.0.0",
    image: bytes | None = None,
    builder: str = BUILDER,
    components: int = 3,
    subject_sha256: str | None = None,
    envelope_edit: Callable[[bytes], bytes] | None = None,
    declared_components: int | None = None,
    with_sbom: bool = True,
    with_provenance: bool = True,
    statement_edit: Callable[[bytes], bytes] | None = None,
    declared_format: str = "cyclonedx",
) -> Release:
    """A release of ``image`` (default: bytes naming the version), intact unless told.

    Args:
        signer: Signs the provenance (the release key, or another key for a tamper case).
        model: The model.
        version: The version.
        image: The image bytes.
        builder: The builder id the provenance names.
        components: How many components the SBOM lists.
        subject_sha256: The provenance's subject (default: the image's digest).
        envelope_edit: Edits the signed envelope's bytes before the manifest binds them.
        declared_components: The count the manifest claims (default: ``components``).
        with_sbom: Whether the manifest names an SBOM.
        with_provenance: Whether the manifest names a provenance.
        statement_edit: Edits the statement's bytes before they are signed.
        declared_format: The SBOM format the manifest claims (the file is CycloneDX).
    """
    image = image if image is not None else f"image of {model} {version}".encode()
    digest = hashlib.sha256(image).hexdigest()
    sbom = cyclonedx_for_image(
        model=model,
        version=version,
        image_sha256=digest,
        image_length=len(image),
        components=[
            Component(name=f"pkg{i}", version="1.0", purl=f"pkg:generic/pkg{i}@1.0")
            for i in range(components)
        ],
        timestamp=NOW,
        product_version="0.17.0",
    )
    statement = render_statement(
        sample_provenance(
            subject_sha256=subject_sha256 or digest,
            builder_id=builder,
            parameters={"model": model, "version": version},
            materials=(Material("file:image.bin", digest),),
        )
    )
    if statement_edit is not None:
        statement = statement_edit(statement)
    envelope = render_envelope(sign_envelope(statement, signer=signer))
    if envelope_edit is not None:
        envelope = envelope_edit(envelope)
    plain = parse_manifest(manifest_for(BootKey(), image, version=version, model=model))
    sbom_path, sbom_len, sbom_sha = _ref_of(sbom_target(model, version, "cyclonedx"), sbom)
    prov_path, prov_len, prov_sha = _ref_of(provenance_target(model, version), envelope)
    sbom_ref = SbomRef(
        target=sbom_path,
        format=declared_format,
        length=sbom_len,
        sha256=sbom_sha,
        components=components if declared_components is None else declared_components,
    )
    manifest = replace(
        plain,
        sbom=sbom_ref if with_sbom else None,
        provenance=(
            ProvenanceRef(target=prov_path, length=prov_len, sha256=prov_sha)
            if with_provenance
            else None
        ),
    )
    release = Release(model=model, version=version, image=image)
    release.put(image_target(model, version), image, fetched=False)
    release.put(f"{model}/{version}/release.json", render_manifest(manifest))
    release.put(sbom_path, sbom)
    release.put(prov_path, envelope)
    return release
