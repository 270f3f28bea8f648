"""What ``release build`` records about how a release was built: its SBOM and signed provenance.

A simulated image (:mod:`trustfleet.ota.simimage`) brings its own component list, which becomes
a CycloneDX 1.6 SBOM; a real image needs an SBOM supplied with ``--sbom`` (CycloneDX 1.4-1.6
or SPDX 2.2-2.3 JSON), checked structurally (:func:`trustfleet.ota.sbom.check_sbom`) and, for
CycloneDX, by cyclonedx-python-lib's JSON schema validator. The provenance is an in-toto
Statement v1 with an SLSA Provenance v1 predicate, in a DSSE envelope signed by the TUF
targets key inside the release token (the key never leaves it).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from trustfleet import product_version
from trustfleet.errors import InvalidInput, NotFound, VerificationFailed
from trustfleet.fileio import PRIVATE_FILE_MODE, read_bounded, write_atomic
from trustfleet.ota.dsse import parse_envelope, render_envelope, sign_envelope
from trustfleet.ota.manifest import (
    ProvenanceRef,
    ReleaseManifest,
    SbomRef,
    provenance_target,
    sbom_target,
)
from trustfleet.ota.provenance import (
    BUILD_TYPE,
    Material,
    Provenance,
    parse_material,
    parse_statement,
    render_statement,
)
from trustfleet.ota.sbom import SbomInfo, check_sbom, cyclonedx_for_image
from trustfleet.ota.simimage import read_components
from trustfleet.services._ota_keys import load_key_map, open_signers, repo_files
from trustfleet.services._ota_state import load_state
from trustfleet.settings import ServerSettings

__all__ = [
    "ReleaseAttestations",
    "attest_release",
    "published_details",
    "stage_attestations",
    "staged_attestations",
]

_MAX_BUILDER_CHARS = 256
_CDX_SCHEMAS = {"1.4": "V1_4", "1.5": "V1_5", "1.6": "V1_6"}


@dataclass(frozen=True)
class ReleaseAttestations:
    """The SBOM and provenance of a release, as bytes to stage and references for its manifest."""

    sbom: bytes
    sbom_ref: SbomRef
    sbom_info: SbomInfo
    provenance: bytes
    provenance_ref: ProvenanceRef
    statement: Provenance


def _builder_id(settings: ServerSettings, model: str) -> str:
    builder = settings.supply_chain.builder_id
    if not 0 < len(builder) <= _MAX_BUILDER_CHARS:
        raise InvalidInput(
            f"[supply_chain] builder_id must have 1-{_MAX_BUILDER_CHARS} characters",
            hint="set [supply_chain] builder_id to a URI naming your build system",
            code="ota.provenance.builder_id",
        )
    allowed = settings.supply_chain.builders_for(model)
    if allowed and builder not in allowed:
        raise VerificationFailed(
            f"builder {builder} is not allowed for model {model}",
            hint="build on an allowed builder, or add MODEL=URI to [supply_chain] allowed_builders",
            code="release.provenance.builder",
        )
    return builder


def _validate_cyclonedx(data: bytes, spec_version: str) -> None:
    """cyclonedx-python-lib's JSON schema validation (its errors translated here, once)."""
    schema = _CDX_SCHEMAS.get(spec_version)
    if schema is None:
        raise _bad_sbom(f"CycloneDX {spec_version} is not supported")
    # Imported here, not at the top: jsonschema's format checkers (rfc3987_syntax builds a
    # grammar) cost seconds of CPU at import, and every `server run` child and CLI command
    # imports this module (docs/benchmarks.md, "start-up").
    from cyclonedx.schema import SchemaVersion  # noqa: PLC0415
    from cyclonedx.validation.json import JsonStrictValidator  # noqa: PLC0415

    error = JsonStrictValidator(SchemaVersion[schema]).validate_str(data.decode("utf-8"))
    if error is not None:
        raise _bad_sbom(f"the CycloneDX schema refuses it: {str(error.data)[:200]}")


def _bad_sbom(why: str) -> InvalidInput:
    return InvalidInput(
        f"SBOM refused: {why}",
        hint="give a CycloneDX 1.4-1.6 or SPDX 2.2-2.3 JSON document",
        code="ota.sbom.invalid",
    )


def _read_sbom(path: Path, *, max_bytes: int) -> bytes:
    try:
        data = read_bounded(path, max_bytes=max_bytes)
    except FileNotFoundError as exc:
        raise NotFound(
            f"no SBOM file {path}", hint="check the --sbom path", code="ota.sbom.missing"
        ) from exc
    except OSError as exc:
        raise InvalidInput(
            f"cannot read {path}: {exc.strerror}",
            hint="give a readable CycloneDX or SPDX JSON file",
            code="ota.sbom.invalid",
        ) from exc
    if data is None:
        raise _bad_sbom(f"larger than [supply_chain] max_sbom_bytes ({max_bytes})")
    return data


def _sbom(
    settings: ServerSettings,
    *,
    manifest: ReleaseManifest,
    image: Path,
    sbom: Path | None,
    now: datetime,
) -> tuple[bytes, SbomInfo]:
    chain = settings.supply_chain
    if sbom is None:
        components = read_components(image, max_bytes=settings.ota.max_image_bytes)
        if components is None:
            raise InvalidInput(
                f"{image.name} is not a simulated image: its SBOM must be supplied",
                hint="give its CycloneDX or SPDX JSON SBOM with --sbom FILE",
                code="ota.sbom.required",
            )
        data = cyclonedx_for_image(
            model=manifest.model,
            version=manifest.version,
            image_sha256=manifest.image.sha256,
            image_length=manifest.image.length,
            components=components,
            timestamp=now,
            product_version=product_version(),
        )
    else:
        data = _read_sbom(sbom, max_bytes=chain.max_sbom_bytes)
    info = check_sbom(
        data, max_bytes=chain.max_sbom_bytes, max_components=chain.max_sbom_components
    )
    if info.format == "cyclonedx":
        _validate_cyclonedx(data, info.spec_version)
    return data, info


def _materials(
    settings: ServerSettings,
    *,
    image_name: str,
    manifest: ReleaseManifest,
    sbom: tuple[str, bytes],
    extra: Sequence[str],
) -> tuple[Material, ...]:
    limit = settings.supply_chain.max_materials
    if len(extra) > limit:
        raise InvalidInput(
            f"{len(extra)} materials, more than [supply_chain] max_materials ({limit})",
            code="ota.provenance.material",
        )
    given = tuple(parse_material(text) for text in extra)
    return (
        Material(uri=f"file:{image_name}", sha256=manifest.image.sha256),
        Material(uri=f"file:{sbom[0]}", sha256=hashlib.sha256(sbom[1]).hexdigest()),
        *given,
    )


def _sign(settings: ServerSettings, statement: bytes) -> bytes:
    state = load_state(repo_files(settings))
    keyid = state.root.signed.roles["targets"].keyids[0]
    with open_signers(settings, [keyid], load_key_map(settings)) as signers:
        return render_envelope(sign_envelope(statement, signer=signers[0]))


def attest_release(
    settings: ServerSettings,
    *,
    manifest: ReleaseManifest,
    image: Path,
    sbom: Path | None,
    materials: Sequence[str],
    now: datetime,
) -> ReleaseAttestations:
    """The SBOM and the signed provenance of a release being built.

    Args:
        settings: The home's settings (``[supply_chain]``, ``[ota]``).
        manifest: The release's manifest so far (image digest, model, version).
        image: The image file as given to ``release build``.
        sbom: The SBOM file supplied for a real image (None: read the simulated image's list).
        materials: Further inputs as ``URI=sha256:HEX``.
        now: The build time.

    Raises:
        InvalidInput: A real image without SBOM (``ota.sbom.required``), an invalid SBOM
            (``ota.sbom.invalid``), a bad material or builder id.
        VerificationFailed: The builder is not allowed for the model
            (``release.provenance.builder``).
    """
    builder = _builder_id(settings, manifest.model)
    sbom_bytes, info = _sbom(settings, manifest=manifest, image=image, sbom=sbom, now=now)
    sbom_path = sbom_target(manifest.model, manifest.version, info.format)
    sbom_name = sbom.name if sbom is not None else sbom_path
    statement = Provenance(
        subject_name=manifest.image.target,
        subject_sha256=manifest.image.sha256,
        builder_id=builder,
        build_type=BUILD_TYPE,
        parameters=_parameters(manifest, image_name=image.name, sbom_format=info.format),
        materials=_materials(
            settings,
            image_name=image.name,
            manifest=manifest,
            sbom=(sbom_name, sbom_bytes),
            extra=materials,
        ),
        invocation_id=f"urn:uuid:{uuid.uuid4()}",
        started_on=now,
        finished_on=now,
        builder_version=product_version(),
    )
    envelope = _sign(settings, render_statement(statement))
    return _attestations(manifest, sbom=(sbom_bytes, info), envelope=envelope, statement=statement)


def _attestations(
    manifest: ReleaseManifest,
    *,
    sbom: tuple[bytes, SbomInfo],
    envelope: bytes,
    statement: Provenance,
) -> ReleaseAttestations:
    sbom_bytes, info = sbom
    return ReleaseAttestations(
        sbom=sbom_bytes,
        sbom_ref=SbomRef(
            target=sbom_target(manifest.model, manifest.version, info.format),
            format=info.format,
            length=len(sbom_bytes),
            sha256=hashlib.sha256(sbom_bytes).hexdigest(),
            components=info.components,
        ),
        sbom_info=info,
        provenance=envelope,
        provenance_ref=ProvenanceRef(
            target=provenance_target(manifest.model, manifest.version),
            length=len(envelope),
            sha256=hashlib.sha256(envelope).hexdigest(),
        ),
        statement=statement,
    )


def _parameters(
    manifest: ReleaseManifest, *, image_name: str, sbom_format: str
) -> Mapping[str, str]:
    return {
        "model": manifest.model,
        "version": manifest.version,
        "min_version": manifest.min_version,
        "image": image_name,
        "sbom_format": sbom_format,
    }


def stage_attestations(staged: Path, made: ReleaseAttestations) -> None:
    """Write the SBOM and provenance next to the staged image (0600), dropping stale ones."""
    for name in ("sbom.cdx.json", "sbom.spdx.json", "provenance.dsse.json"):
        (staged / name).unlink(missing_ok=True)
    write_atomic(staged / _name(made.sbom_ref.target), made.sbom, mode=PRIVATE_FILE_MODE)
    write_atomic(
        staged / _name(made.provenance_ref.target), made.provenance, mode=PRIVATE_FILE_MODE
    )


def _name(target: str) -> str:
    return target.rsplit("/", 1)[-1]


def staged_attestations(
    staged: Path, manifest: ReleaseManifest, *, max_bytes: int
) -> list[tuple[str, str, int, bytes]]:
    """The staged SBOM and provenance as ``(kind, target, length, bytes)``, checked against the
    manifest's digests (a release built before issue 17 has neither).

    Raises:
        VerificationFailed: A staged file is missing or changed since the build
            (code ``ota.release.staged_changed``).
    """
    refs: list[tuple[str, SbomRef | ProvenanceRef]] = []
    if manifest.sbom is not None:
        refs.append(("sbom", manifest.sbom))
    if manifest.provenance is not None:
        refs.append(("provenance", manifest.provenance))
    out = []
    for kind, ref in refs:
        try:
            with (staged / _name(ref.target)).open("rb") as fh:
                data = fh.read(max_bytes + 1)
        except FileNotFoundError:
            data = b""
        if len(data) != ref.length or hashlib.sha256(data).hexdigest() != ref.sha256:
            raise VerificationFailed(
                f"the staged {kind} of {manifest.model} {manifest.version} changed since it "
                "was built",
                hint="build it again",
                code="ota.release.staged_changed",
            )
        out.append((kind, ref.target, ref.length, data))
    return out


def published_details(
    manifest: ReleaseManifest, attested: Sequence[tuple[str, str, int, bytes]]
) -> dict[str, Any]:
    """The ``release.published`` event details of a release's SBOM and provenance (if any)."""
    details: dict[str, Any] = {}
    if manifest.sbom is not None:
        details |= {
            "sbom_sha256": manifest.sbom.sha256,
            "sbom_format": manifest.sbom.format,
            "sbom_components": manifest.sbom.components,
        }
    for kind, _target, length, data in attested:
        if kind == "provenance" and manifest.provenance is not None:
            envelope = parse_envelope(data, max_bytes=length)
            statement = parse_statement(envelope.payload, max_bytes=length)
            details |= {
                "provenance_sha256": manifest.provenance.sha256,
                "builder_id": statement.builder_id,
            }
    return details
