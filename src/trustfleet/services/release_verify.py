"""Verify a published release offline: TUF metadata → manifest → image → SBOM → provenance.

An auditor needs only a copy of the published repository folder (``metadata/`` and
``targets/``) and a TUF root they trust. python-tuf's ngclient ``Updater`` does the TUF part,
exactly as a device does: the root chain from the trusted root (every rotation), then the
timestamp, snapshot and targets, each checked for signatures, versions, expiry and length/hash
against its parent — through a local ``FetcherInterface`` that reads the folder with bounds.
The stored image is hashed (streamed) against its TUF digest. The bytes of the manifest, SBOM
and provenance targets and the digests the verified targets metadata lists for them then go to
the pure verifier
(:func:`trustfleet.ota.release_verify.verify_release_chain`), with the keys of the targets role
of the verified root as the release keys (the provenance is signed by the targets key).
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path, PurePosixPath
from typing import Any

from securesystemslib.signer import Key  # type: ignore[attr-defined]  # re-exported, no __all__
from tuf.api import exceptions
from tuf.api.metadata import Metadata, Root  # type: ignore[attr-defined]  # re-exported, no __all__
from tuf.ngclient.config import UpdaterConfig
from tuf.ngclient.fetcher import FetcherInterface
from tuf.ngclient.updater import Updater

from trustfleet.errors import InvalidInput, NotFound
from trustfleet.ota import RepoFiles, hash_file
from trustfleet.ota.manifest import (
    MAX_MANIFEST_BYTES,
    SBOM_FORMATS,
    image_target,
    manifest_target,
    provenance_target,
    sbom_target,
)
from trustfleet.ota.release_verify import (
    ReleaseFinding,
    ReleaseVerdict,
    TargetDigest,
    VerifyLimits,
    verify_release_chain,
)
from trustfleet.ota.versions import check_model, parse_version
from trustfleet.services._ota_keys import PUBLIC_ROOT, repo_files
from trustfleet.services.runtime import Runtime
from trustfleet.settings import ServerSettings
from trustfleet.settings.supply_chain import SupplyChainSettings

__all__ = [
    "CHECKS",
    "checks_of",
    "default_limits",
    "limits_of",
    "verify_home_release",
    "verify_published_release",
]

_SCHEME = "local"
_CHUNK = 64 * 1024
_MAX_ROOT_BYTES = 512 * 1024
_MAX_METADATA_BYTES = 16 << 20


class _FolderFetcher(FetcherInterface):
    """Serve ``local:/metadata/…`` and ``local:/targets/…`` from a repository folder."""

    def __init__(self, root: Path) -> None:
        self._root = root.resolve()

    def _fetch(self, url: str) -> Iterator[bytes]:
        prefix = f"{_SCHEME}:/"
        rel = PurePosixPath(url.removeprefix(prefix))
        if not url.startswith(prefix) or ".." in rel.parts or rel.is_absolute():
            raise exceptions.DownloadHTTPError(f"{url} is not in the repository", 404)
        path = self._root.joinpath(*rel.parts)
        try:
            fh = path.open("rb")
        except OSError as exc:
            raise exceptions.DownloadHTTPError(f"{rel} is missing", 404) from exc
        return self._chunks(fh)

    @staticmethod
    def _chunks(fh: Any) -> Iterator[bytes]:
        with fh:  # ngclient stops reading past its length bound
            while chunk := fh.read(_CHUNK):
                yield chunk


def limits_of(settings: ServerSettings) -> VerifyLimits:
    """The verifier's bounds from a home's ``[supply_chain]`` settings."""
    chain = settings.supply_chain
    return VerifyLimits(
        max_manifest_bytes=MAX_MANIFEST_BYTES,
        max_sbom_bytes=chain.max_sbom_bytes,
        max_sbom_components=chain.max_sbom_components,
        max_provenance_bytes=chain.max_provenance_bytes,
    )


def default_limits() -> VerifyLimits:
    """The verifier's bounds for a repository verified without a home (the defaults)."""
    chain = SupplyChainSettings()
    return VerifyLimits(
        max_manifest_bytes=MAX_MANIFEST_BYTES,
        max_sbom_bytes=chain.max_sbom_bytes,
        max_sbom_components=chain.max_sbom_components,
        max_provenance_bytes=chain.max_provenance_bytes,
    )


def _refused(model: str, version: str, code: str, message: str) -> ReleaseVerdict:
    return ReleaseVerdict(
        model=model,
        version=version,
        findings=(ReleaseFinding(code=code, message=message),),
        image_sha256=None,
        sbom=None,
        provenance=None,
        signed_by=(),
    )


def _release_paths(model: str, version: str) -> list[str]:
    paths = [manifest_target(model, version), image_target(model, version)]
    paths += [sbom_target(model, version, fmt) for fmt in SBOM_FORMATS]
    return [*paths, provenance_target(model, version)]


def _read_target(repo: Path, path: str, digest: TargetDigest, *, max_bytes: int) -> bytes:
    """The stored bytes of a target (hash-prefixed name), at most ``max_bytes`` + 1."""
    try:
        with RepoFiles(repo).target_file(path, digest.sha256).open("rb") as fh:
            return fh.read(max_bytes + 1)
    except OSError:
        return b""  # the chain verifier reports it as a digest mismatch


def _trusted(
    repo: Path, trusted_root: bytes, paths: Sequence[str]
) -> tuple[dict[str, TargetDigest], dict[str, Key]]:
    """Refresh TUF metadata from the folder; the listed paths' digests and the targets keys."""
    config = UpdaterConfig(root_max_length=_MAX_ROOT_BYTES, targets_max_length=_MAX_METADATA_BYTES)
    with tempfile.TemporaryDirectory(prefix="tf-verify-") as cache:
        updater = Updater(
            cache,
            f"{_SCHEME}:/metadata/",
            target_base_url=f"{_SCHEME}:/targets/",
            fetcher=_FolderFetcher(repo),
            config=config,
            bootstrap=trusted_root,
        )
        updater.refresh()
        digests: dict[str, TargetDigest] = {}
        for path in paths:
            info = updater.get_targetinfo(path)
            if info is not None and "sha256" in info.hashes:
                digests[path] = TargetDigest(length=info.length, sha256=info.hashes["sha256"])
        root: Metadata[Root] = Metadata[Root].from_bytes((Path(cache) / "root.json").read_bytes())
    keys = {k: root.signed.keys[k] for k in root.signed.roles["targets"].keyids}
    return digests, keys


def _check_root(data: bytes) -> None:
    """Refuse a trusted root that is not TUF root metadata (a usage error, not a finding)."""
    try:
        Metadata[Root].from_bytes(data)
    except (exceptions.RepositoryError, ValueError, KeyError, TypeError) as exc:
        raise InvalidInput(
            f"the trusted root is not TUF root metadata: {str(exc)[:120]}",
            hint="give the TUF root you trust, e.g. HOME/public/tuf-root.json",
            code="release.verify.root",
        ) from exc


def verify_published_release(
    *,
    repo: Path,
    trusted_root: bytes,
    model: str,
    version: str,
    allowed_builders: Sequence[str] = (),
    limits: VerifyLimits,
) -> ReleaseVerdict:
    """Verify a release from a repository folder and a trusted TUF root, offline.

    Args:
        repo: The repository folder (``metadata/``, ``targets/``).
        trusted_root: A TUF root the verifier trusts (any earlier version works: the root
            chain is followed from it).
        model: The hardware model.
        version: The release's version.
        allowed_builders: Builders the provenance may name (empty: any).
        limits: Size and count bounds.

    Returns:
        The verdict; a TUF refusal is the one finding ``release.tuf.metadata``.

    Raises:
        InvalidInput: A bad model or version, a trusted root that is not TUF root metadata
            (``release.verify.root``), or no repository folder (``release.repo.missing``).
    """
    check_model(model)
    parse_version(version)
    _check_root(trusted_root)
    if not (repo / "metadata").is_dir():
        raise InvalidInput(
            f"{repo} is not a TUF repository folder (no metadata/)",
            hint="give the published repository folder (HOME/ota/repo)",
            code="release.repo.missing",
        )
    try:
        digests, keys = _trusted(repo, trusted_root, _release_paths(model, version))
    except (exceptions.RepositoryError, exceptions.DownloadError, ValueError) as exc:
        why = f"TUF refused the repository's metadata: {type(exc).__name__}: {exc}"
        return _refused(model, version, "release.tuf.metadata", why[:300])
    bound = max(limits.max_manifest_bytes, limits.max_sbom_bytes, limits.max_provenance_bytes)
    files = {
        path: _read_target(repo, path, digest, max_bytes=bound)
        for path, digest in digests.items()
        if path != image_target(model, version)
    }
    verdict = verify_release_chain(
        model=model,
        version=version,
        targets=digests,
        files=files,
        release_keys=keys,
        allowed_builders=allowed_builders,
        limits=limits,
    )
    image = image_target(model, version)
    stored = _image_finding(repo, image, digests[image]) if image in digests else None
    return verdict if stored is None else replace(verdict, findings=(*verdict.findings, stored))


def _image_finding(repo: Path, path: str, digest: TargetDigest) -> ReleaseFinding | None:
    """The stored image's bytes against its TUF digest (streamed, at most its listed length)."""
    try:
        stored = hash_file(
            RepoFiles(repo).target_file(path, digest.sha256), max_bytes=digest.length
        )
    except (NotFound, OSError):
        return ReleaseFinding("release.image.digest", f"{path} is missing from the repository")
    except InvalidInput:  # not a regular file, or longer than TUF lists
        stored = None
    if stored != (digest.length, digest.sha256):
        return ReleaseFinding(
            "release.image.digest", f"the stored {path} does not match its TUF target digest"
        )
    return None


def verify_home_release(rt: Runtime, *, model: str, version: str) -> ReleaseVerdict:
    """Verify a release of this home's repository, trusting the home's published TUF root."""
    settings = rt.settings
    try:
        trusted_root = settings.path(PUBLIC_ROOT).read_bytes()
    except OSError as exc:
        raise NotFound(
            f"the home has no {PUBLIC_ROOT}",
            hint="create the OTA repository with 'trustfleet ota init'",
            code="ota.repo.missing",
        ) from exc
    return verify_published_release(
        repo=repo_files(settings).root,
        trusted_root=trusted_root,
        model=model,
        version=version,
        allowed_builders=settings.supply_chain.builders_for(model),
        limits=limits_of(settings),
    )


CHECKS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("TUF metadata", ("release.tuf.",)),
    ("manifest", ("release.manifest.",)),
    ("image digest", ("release.image.",)),
    ("SBOM", ("release.sbom.",)),
    (
        "provenance signature",
        tuple(f"release.provenance.{w}" for w in ("missing", "digest", "invalid", "signature")),
    ),
    ("provenance subject", ("release.provenance.subject",)),
    ("provenance builder", ("release.provenance.builder",)),
)
"""The rows of ``release verify``: a check's name and the finding codes that refuse it."""

_GATES = {"manifest": "TUF metadata", "image digest": "manifest", "SBOM": "manifest"}
_GATES |= {"provenance signature": "manifest", "provenance subject": "provenance signature"}
_GATES |= {"provenance builder": "provenance subject"}


def checks_of(verdict: ReleaseVerdict) -> list[tuple[str, str, str]]:
    """The verdict as ``release verify``'s table: ``(check, status, reason)`` per check.

    ``status`` is ``ok``, ``refused`` (reason: the findings' messages) or ``not checked``
    (a check it depends on was refused).
    """
    rows: list[tuple[str, str, str]] = []
    status: dict[str, str] = {}
    for name, codes in CHECKS:
        found = [f for f in verdict.findings if f.code.startswith(codes)]
        gate = _GATES.get(name)
        if gate == "manifest":  # a manifest of another version is refused, yet read on
            gated = verdict.image_sha256 is None
        else:
            gated = gate is not None and status.get(gate) != "ok"
        if found:
            status[name] = "refused"
            reason = "; ".join(f"{f.code}: {f.message}" for f in found)
        elif gated:
            status[name], reason = "not checked", f"needs {gate}"
        else:
            status[name], reason = "ok", ""
        rows.append((name, status[name], reason))
    return rows
