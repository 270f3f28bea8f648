"""Building and publishing releases (``release build``, ``release publish``)."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from trustfleet.audit.context import current_operator
from trustfleet.errors import Config, Conflict, NotFound, VerificationFailed
from trustfleet.fileio import (
    PRIVATE_DIR_MODE,
    PRIVATE_FILE_MODE,
    copy_atomic,
    make_dirs,
    write_atomic,
)
from trustfleet.ota import RepoFiles, hash_file
from trustfleet.ota.manifest import (
    DeltaRef,
    ReleaseManifest,
    delta_target,
    manifest_target,
    parse_manifest,
    render_manifest,
)
from trustfleet.ota.release import build_manifest, verify_boot_signature
from trustfleet.ota.repository import RepoState, TargetFile, add_targets, make_target
from trustfleet.ota.versions import check_model, parse_version
from trustfleet.services._ota_keys import (
    BOOT_KEY_LABEL,
    BOOT_KEY_PEM,
    RELEASE_TOKEN,
    KeyRef,
    load_key_map,
    open_signers,
    open_token_key,
    repo_files,
)
from trustfleet.services._ota_state import expiry_of, load_state, write_state
from trustfleet.services._ota_supply import (
    attest_release,
    published_details,
    stage_attestations,
    staged_attestations,
)
from trustfleet.services.lwm2m_manifests import open_targets_key, store_release_manifest
from trustfleet.services.runtime import Runtime
from trustfleet.settings import ServerSettings
from trustfleet.store import MAX_LIST_LIMIT, ReleaseRecord

_MakeDelta = Callable[[Path, Path, Path], Any]
_make_delta: _MakeDelta | None
try:  # the delta encoder is built in parallel; publishing without it makes no deltas
    from trustfleet.ota.delta import make_delta as _make_delta
except ImportError:  # pragma: no cover - only while ota.delta is missing
    _make_delta = None

__all__ = ["build_release", "publish_release", "staged_dir", "with_targets"]

logger = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]
"""``on_progress(what, done, total)``, called while deltas are computed."""


def staged_dir(rt: Runtime, *, model: str, version: str) -> Path:
    """Where ``release build`` stages a release: ``HOME/ota/staging/<model>/<version>/``.

    Staged firmware is not published yet: the staging folders are 0700, their files 0600.
    """
    check_model(model)
    parse_version(version)
    return rt.settings.path(rt.settings.ota.staging_dir) / model / version


def _private_staging(rt: Runtime, staged: Path) -> None:
    staging = rt.settings.path(rt.settings.ota.staging_dir)
    make_dirs(staged, mode=PRIVATE_DIR_MODE)
    for folder in (staging, staged.parent, staged):  # folders made before they were private
        if folder.stat().st_mode & 0o077:
            folder.chmod(PRIVATE_DIR_MODE)


def _published(rt: Runtime, model: str) -> list[ReleaseRecord]:
    with rt.uow.begin(read_only=True) as tx:
        return tx.releases.list(model=model, limit=MAX_LIST_LIMIT)


def _refuse_published(rt: Runtime, model: str, version: str) -> list[ReleaseRecord]:
    published = _published(rt, model)
    if any(r.version == version for r in published):
        raise Conflict(
            f"release {model} {version} is published already",
            hint="build a new version; published releases never change",
            code="ota.release.exists",
        )
    return published


def build_release(
    rt: Runtime,
    *,
    image: Path,
    version: str,
    model: str,
    min_version: str | None,
    now: datetime,
    sbom: Path | None = None,
    materials: Sequence[str] = (),
) -> ReleaseManifest:
    """Sign an image with the boot key and stage it with its manifest, SBOM and provenance.

    The staged folder holds ``image.bin``, ``release.json`` (naming the SBOM and provenance
    by digest), ``sbom.cdx.json`` or ``sbom.spdx.json`` and ``provenance.dsse.json`` (a DSSE
    envelope signed by the TUF targets key in the release token), all 0600. No deltas yet.

    Args:
        rt: The server home's runtime.
        image: The full image file.
        version: The release's version.
        model: The hardware model.
        min_version: The lowest installed version it may go over (default: the lowest
            published version of the model, or ``version`` for the first release).
        now: The build time.
        sbom: The SBOM of a real image (CycloneDX or SPDX JSON); a simulated image brings
            its component list.
        materials: Further build inputs recorded in the provenance, ``URI=sha256:HEX``.

    Returns:
        The staged manifest.

    Raises:
        InvalidInput: Bad version, model or image; a real image without SBOM
            (``ota.sbom.required``), an invalid SBOM (``ota.sbom.invalid``) or material.
        NotFound: No image file.
        Conflict: The version is published already (code ``ota.release.exists``).
        VerificationFailed: ``[supply_chain] builder_id`` is not allowed for the model
            (``release.provenance.builder``).
    """
    staged = staged_dir(rt, model=model, version=version)
    published = _refuse_published(rt, model, version)
    if min_version is None:
        versions = [parse_version(r.version) for r in published] + [parse_version(version)]
        min_version = ".".join(str(p) for p in min(versions))
    key = open_token_key(rt.settings, KeyRef(token=RELEASE_TOKEN, label=BOOT_KEY_LABEL))
    try:
        manifest = build_manifest(
            image=image,
            model=model,
            version=version,
            min_version=min_version,
            boot_key=key,
            max_image_bytes=rt.settings.ota.max_image_bytes,
            now=now,
        )
    finally:
        key.close()
    made = attest_release(
        rt.settings, manifest=manifest, image=image, sbom=sbom, materials=materials, now=now
    )
    manifest = replace(manifest, sbom=made.sbom_ref, provenance=made.provenance_ref)
    _private_staging(rt, staged)
    copy_atomic(image, staged / "image.bin", mode=PRIVATE_FILE_MODE)
    stage_attestations(staged, made)
    write_atomic(staged / "release.json", render_manifest(manifest), mode=PRIVATE_FILE_MODE)
    logger.info("staged release %s %s in %s", model, version, staged)
    return manifest


def _load_staged(
    rt: Runtime, model: str, version: str
) -> tuple[ReleaseManifest, Path, list[tuple[str, str, int, bytes]]]:
    staged = staged_dir(rt, model=model, version=version)
    try:
        manifest = parse_manifest((staged / "release.json").read_bytes())
    except FileNotFoundError as exc:
        raise NotFound(
            f"release {model} {version} was not built",
            hint=f"run 'trustfleet release build --version {version} --image FILE' first",
            code="ota.release.not_staged",
        ) from exc
    image = staged / "image.bin"
    length, digest = hash_file(image, max_bytes=rt.settings.ota.max_image_bytes)
    if (length, digest) != (manifest.image.length, manifest.image.sha256) or (
        manifest.model,
        manifest.version,
    ) != (model, version):
        raise VerificationFailed(
            f"the staged release {model} {version} changed since it was built",
            hint="build it again",
            code="ota.release.staged_changed",
        )
    pem = rt.settings.path(BOOT_KEY_PEM).read_bytes()
    public = serialization.load_pem_public_key(pem)
    if not isinstance(public, ec.EllipticCurvePublicKey):
        raise Config("public/boot-key.pem is not an EC key", code="ota.boot_key.invalid")
    verify_boot_signature(manifest, public_key=public)
    chain = rt.settings.supply_chain
    limit = max(chain.max_sbom_bytes, chain.max_provenance_bytes)
    return manifest, image, staged_attestations(staged, manifest, max_bytes=limit)


def _make_deltas(
    rt: Runtime,
    *,
    manifest: ReleaseManifest,
    image: Path,
    previous: list[ReleaseRecord],
    on_progress: Progress | None,
) -> list[tuple[DeltaRef, Path]]:
    make_delta = _make_delta
    if make_delta is None:
        logger.warning("ota.delta is not available: publishing without deltas")
        return []
    files = repo_files(rt.settings)
    made: list[tuple[DeltaRef, Path]] = []
    for done, old in enumerate(previous):
        if on_progress is not None:
            on_progress(f"delta from {old.version}", done, len(previous))
        old_image = files.target_file(f"{old.model}/{old.version}/image.bin", old.image_sha256)
        out = image.parent / f"from-{old.version}.delta"
        info = make_delta(old_image, image, out)
        out.chmod(PRIVATE_FILE_MODE)
        target = delta_target(manifest.model, manifest.version, old.version)
        ref = DeltaRef(
            target=target,
            from_version=old.version,
            from_sha256=info.old_sha256,
            length=info.length,
            sha256=info.sha256,
        )
        made.append((ref, out))
    if on_progress is not None:
        on_progress("deltas done", len(previous), len(previous))
    return made


def publish_release(
    rt: Runtime,
    *,
    model: str,
    version: str,
    now: datetime,
    on_progress: Progress | None = None,
) -> ReleaseRecord:
    """Publish a staged release: deltas, targets, new targets/snapshot/timestamp, store row.

    Deltas are made from the previous ``[ota] delta_from_previous`` published releases of the
    model (lower versions). Target files are content-addressed and written first; the store
    row, the ``release.published`` event and the metadata (timestamp last) are written in one
    transaction block, so a failure leaves no half-published release.

    Raises:
        NotFound: The release was not built. Conflict: It is published already.
        VerificationFailed: The staged files changed since the build.
    """
    manifest, image, attested = _load_staged(rt, model, version)
    published = _refuse_published(rt, model, version)
    lower = [r for r in published if parse_version(r.version) < manifest.version_key]
    previous = lower[: rt.settings.ota.delta_from_previous]
    deltas = _make_deltas(
        rt, manifest=manifest, image=image, previous=previous, on_progress=on_progress
    )
    manifest = manifest.with_deltas(tuple(ref for ref, _ in deltas))
    manifest_bytes = render_manifest(manifest)
    files = repo_files(rt.settings)
    base = {"model": model, "version": version}
    targets = [
        make_target(
            manifest.image.target,
            length=manifest.image.length,
            sha256=manifest.image.sha256,
            custom={"kind": "image", **base},
        )
    ]
    files.put_target(manifest.image.target, sha256=manifest.image.sha256, source=image)
    for ref, path in deltas:
        files.put_target(ref.target, sha256=ref.sha256, source=path)
        custom = {"kind": "delta", **base, "from_version": ref.from_version}
        targets.append(make_target(ref.target, length=ref.length, sha256=ref.sha256, custom=custom))
    targets += _attested_targets(files, attested, base)
    digest = hashlib.sha256(manifest_bytes).hexdigest()
    target = manifest_target(model, version)
    files.put_target(target, sha256=digest, source=manifest_bytes)
    targets.append(
        make_target(
            target, length=len(manifest_bytes), sha256=digest, custom={"kind": "manifest", **base}
        )
    )
    supply = published_details(manifest, attested)
    return _commit_release(
        rt,
        manifest=manifest,
        manifest_bytes=manifest_bytes,
        targets=targets,
        supply=supply,
        now=now,
    )


def _attested_targets(
    files: RepoFiles, attested: list[tuple[str, str, int, bytes]], base: dict[str, str]
) -> list[TargetFile]:
    """Store the SBOM and provenance as target files; their TUF target descriptions."""
    targets = []
    for kind, name, length, data in attested:
        sha = hashlib.sha256(data).hexdigest()
        files.put_target(name, sha256=sha, source=data)
        targets.append(make_target(name, length=length, sha256=sha, custom={"kind": kind, **base}))
    return targets


def with_targets(
    settings: ServerSettings, files: RepoFiles, targets: list[TargetFile], *, now: datetime
) -> RepoState:
    """The repository with ``targets`` added: new targets, snapshot and timestamp, signed.

    The caller holds ``files.locked()`` and writes the result (:func:`write_state`).
    """
    state = load_state(files)
    roles = state.root.signed.roles
    keyids = [roles[r].keyids[0] for r in ("targets", "snapshot", "timestamp")]
    with open_signers(settings, keyids, load_key_map(settings)) as signers:
        return add_targets(
            state,
            targets=targets,
            signers={"targets": [signers[0]], "snapshot": [signers[1]], "timestamp": [signers[2]]},
            expiry=expiry_of(settings.ota),
            now=now,
        )


def _commit_release(
    rt: Runtime,
    *,
    manifest: ReleaseManifest,
    manifest_bytes: bytes,
    targets: list[TargetFile],
    supply: dict[str, Any],
    now: datetime,
) -> ReleaseRecord:
    settings, files = rt.settings, repo_files(rt.settings)
    with files.locked():
        new = with_targets(settings, files, targets, now=now)
        with open_targets_key(settings) as targets_key, rt.uow.begin() as tx:
            store_release_manifest(  # for LwM2M devices (ADR 0022)
                tx,
                targets_key,
                model=manifest.model,
                version=manifest.version,
                image_sha256=manifest.image.sha256,
                image_size=manifest.image.length,
                now=now,
            )
            record = tx.releases.add(
                model=manifest.model,
                version=manifest.version,
                min_version=manifest.min_version,
                image_sha256=manifest.image.sha256,
                image_length=manifest.image.length,
                manifest=manifest_bytes,
                targets_version=new.targets.signed.version,
                now=now,
            )
            tx.events.append(
                type="release.published",
                actor=current_operator(),
                subject=f"release:{manifest.model}/{manifest.version}",
                details={
                    "model": manifest.model,
                    "version": manifest.version,
                    "min_version": manifest.min_version,
                    "image_sha256": manifest.image.sha256,
                    "image_length": manifest.image.length,
                    "deltas": [d.from_version for d in manifest.deltas],
                    "targets_version": new.targets.signed.version,
                    **supply,
                },
                now=now,
            )
            write_state(settings, files, new, ["targets", "snapshot", "timestamp"])
    logger.info("published release %s %s", manifest.model, manifest.version)
    return record
