"""The release-chain verifier: a release's manifest, SBOM and provenance against TUF targets.

Pure: the caller brings what TRUSTED TUF targets metadata lists (:class:`TargetDigest` by
path), the bytes fetched for the manifest, SBOM and provenance paths, and the release (TUF
targets) keys. :func:`verify_release_chain` collects every finding into a
:class:`ReleaseVerdict`; :func:`check_provenance` is the one check a device runs before it
installs an image (docs/supply-chain.md).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from securesystemslib.signer import Key  # type: ignore[attr-defined]  # re-exported, no __all__

from trustfleet.errors import InvalidInput, VerificationFailed
from trustfleet.ota.dsse import PAYLOAD_TYPE, parse_envelope, verify_envelope
from trustfleet.ota.manifest import ReleaseManifest, manifest_target, parse_manifest
from trustfleet.ota.provenance import Provenance, parse_statement
from trustfleet.ota.sbom import SbomInfo, check_sbom

__all__ = [
    "ReleaseFinding",
    "ReleaseVerdict",
    "TargetDigest",
    "VerifyLimits",
    "check_provenance",
    "verify_release_chain",
]


@dataclass(frozen=True, slots=True)
class TargetDigest:
    """What trusted TUF targets metadata lists for a path: length and SHA-256 (hex)."""

    length: int
    sha256: str


@dataclass(frozen=True, slots=True)
class VerifyLimits:
    """Bounds on what the verifier reads (from ``[ota]`` and ``[supply_chain]`` settings)."""

    max_manifest_bytes: int
    max_sbom_bytes: int
    max_sbom_components: int
    max_provenance_bytes: int


@dataclass(frozen=True, slots=True)
class ReleaseFinding:
    """One problem found: a stable dotted code (``release.sbom.digest``) and a message."""

    code: str
    message: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ReleaseVerdict:
    """The outcome of :func:`verify_release_chain`: findings and what was verified."""

    model: str
    version: str
    findings: tuple[ReleaseFinding, ...]
    image_sha256: str | None
    """The image digest the (TUF-consistent) manifest names; None without a valid manifest."""
    sbom: SbomInfo | None
    """The SBOM's summary, when it was fetched, bound and well formed."""
    provenance: Provenance | None
    """The provenance, when its signature, subject and builder verified."""
    signed_by: tuple[str, ...]
    """The release key ids that signed the provenance."""

    @property
    def ok(self) -> bool:
        """Whether no finding was made."""
        return not self.findings


def check_provenance(
    envelope: bytes,
    *,
    image_sha256: str,
    keys: Mapping[str, Key],
    allowed_builders: Sequence[str] = (),
    max_bytes: int,
) -> Provenance:
    """Check a release's provenance envelope for an image (what a device runs).

    Args:
        envelope: The DSSE envelope's bytes (fetched through TUF).
        image_sha256: The image's SHA-256 (hex) from the trusted manifest.
        keys: The release (TUF targets) keys by key id.
        allowed_builders: Builder ids accepted; empty accepts any builder.
        max_bytes: The largest envelope accepted.

    Returns:
        The verified provenance.

    Raises:
        InvalidInput: The envelope or its statement is malformed (code
            ``release.provenance.invalid``).
        VerificationFailed: Not signed by one of ``keys`` or edited
            (``release.provenance.signature``), about another image
            (``release.provenance.subject``), by a builder not allowed
            (``release.provenance.builder``).
    """
    return _check_provenance(
        envelope,
        image_sha256=image_sha256,
        keys=keys,
        allowed_builders=allowed_builders,
        max_bytes=max_bytes,
    )[0]


def _check_provenance(
    envelope: bytes,
    *,
    image_sha256: str,
    keys: Mapping[str, Key],
    allowed_builders: Sequence[str],
    max_bytes: int,
) -> tuple[Provenance, tuple[str, ...]]:
    try:
        env = parse_envelope(envelope, max_bytes=max_bytes)
    except InvalidInput as exc:
        raise _invalid(exc.message) from exc
    if env.payload_type != PAYLOAD_TYPE:
        raise _invalid(f"the envelope's payloadType is not '{PAYLOAD_TYPE}'")
    try:
        signed_by = verify_envelope(env, keys=keys, threshold=1)
    except VerificationFailed as exc:
        raise VerificationFailed(
            f"provenance refused: {exc.message}",
            hint="the provenance must be signed by the release (TUF targets) key, unedited",
            code="release.provenance.signature",
        ) from exc
    try:
        provenance = parse_statement(env.payload, max_bytes=max_bytes)
    except InvalidInput as exc:
        raise _invalid(exc.message) from exc
    _check_policy(provenance, image_sha256=image_sha256, allowed_builders=allowed_builders)
    return provenance, signed_by


def _check_policy(
    provenance: Provenance, *, image_sha256: str, allowed_builders: Sequence[str]
) -> None:
    """Refuse a verified provenance about another image or by a builder not allowed."""
    if provenance.subject_sha256 != image_sha256:
        raise VerificationFailed(
            f"provenance refused: its subject is the image {provenance.subject_sha256[:16]}…,"
            f" not {image_sha256[:16]}…",
            hint="the provenance belongs to another image; rebuild the release",
            code="release.provenance.subject",
        )
    if allowed_builders and provenance.builder_id not in allowed_builders:
        raise VerificationFailed(
            f"provenance refused: builder '{provenance.builder_id[:120]}' is not allowed",
            hint="build with an allowed builder ([supply_chain] allowed_builders)",
            code="release.provenance.builder",
        )


def _invalid(why: str) -> InvalidInput:
    return InvalidInput(
        f"provenance refused: {why}",
        hint="rebuild the release with 'trustfleet release build'",
        code="release.provenance.invalid",
    )


def verify_release_chain(
    *,
    model: str,
    version: str,
    targets: Mapping[str, TargetDigest],
    files: Mapping[str, bytes],
    release_keys: Mapping[str, Key],
    allowed_builders: Sequence[str] = (),
    limits: VerifyLimits,
) -> ReleaseVerdict:
    """Verify a release's manifest, image entry, SBOM and provenance; collect every finding.

    Args:
        model: The device model.
        version: The release version.
        targets: What trusted TUF targets metadata lists, by target path.
        files: The bytes fetched for the manifest, SBOM and provenance paths.
        release_keys: The release (TUF targets) keys by key id.
        allowed_builders: Builder ids accepted; empty accepts any builder.
        limits: Size and count bounds.

    Returns:
        The verdict; ``ok`` when nothing was found. Codes: ``release.manifest.missing|digest|
        invalid|mismatch``, ``release.image.digest``, ``release.sbom.missing|digest|invalid|
        count``, ``release.provenance.missing|digest|invalid|signature|subject|builder``.
    """
    run = _Run(targets=targets, files=files)
    manifest = run.manifest(model, version, limits)
    if manifest is None:
        return run.verdict(model, version)
    run.image(manifest)
    run.sbom(manifest, limits)
    run.provenance(manifest, release_keys, allowed_builders, limits)
    return run.verdict(model, version, image_sha256=manifest.image.sha256)


class _Run:
    """One verification's state: the inputs and the findings so far."""

    def __init__(self, *, targets: Mapping[str, TargetDigest], files: Mapping[str, bytes]):
        self.targets, self.files = targets, files
        self.findings: list[ReleaseFinding] = []
        self.sbom_info: SbomInfo | None = None
        self.prov: Provenance | None = None
        self.signed_by: tuple[str, ...] = ()

    def _finding(self, code: str, message: str) -> None:
        self.findings.append(ReleaseFinding(code, message))

    def verdict(
        self, model: str, version: str, *, image_sha256: str | None = None
    ) -> ReleaseVerdict:
        return ReleaseVerdict(
            model=model,
            version=version,
            findings=tuple(self.findings),
            image_sha256=image_sha256,
            sbom=self.sbom_info,
            provenance=self.prov,
            signed_by=self.signed_by,
        )

    def fetched(
        self, path: str, kind: str, *, bound: tuple[int, str] | None = None
    ) -> bytes | None:
        """The bytes of ``path`` if TUF lists it, they were fetched and match TUF (and the
        manifest's ``bound`` length and digest); else a finding and None."""
        listed, data = self.targets.get(path), self.files.get(path)
        if listed is None or data is None:
            self._finding(
                f"release.{kind}.missing",
                f"{path} is not listed in the TUF targets"
                if listed is None
                else f"{path} was not fetched",
            )
            return None
        digest = hashlib.sha256(data).hexdigest()
        if (len(data), digest) != (listed.length, listed.sha256):
            self._finding(f"release.{kind}.digest", f"{path} does not match its TUF target digest")
            return None
        if bound is not None and (len(data), digest) != bound:
            self._finding(f"release.{kind}.digest", f"{path} is not the one the manifest names")
            return None
        return data

    def manifest(self, model: str, version: str, limits: VerifyLimits) -> ReleaseManifest | None:
        data = self.fetched(manifest_target(model, version), "manifest")
        if data is None:
            return None
        try:
            manifest = parse_manifest(data, max_bytes=limits.max_manifest_bytes)
        except InvalidInput as exc:
            self._finding("release.manifest.invalid", exc.message)
            return None
        if (manifest.model, manifest.version) != (model, version):
            self._finding(
                "release.manifest.mismatch",
                f"the manifest is for {manifest.model} {manifest.version}, not {model} {version}",
            )
        return manifest

    def image(self, manifest: ReleaseManifest) -> None:
        ref = manifest.image
        listed = self.targets.get(ref.target)
        if listed is None or (listed.length, listed.sha256) != (ref.length, ref.sha256):
            self._finding(
                "release.image.digest",
                f"the manifest's image {ref.target} does not match its TUF target",
            )

    def sbom(self, manifest: ReleaseManifest, limits: VerifyLimits) -> None:
        ref = manifest.sbom
        if ref is None:
            self._finding("release.sbom.missing", "the manifest names no SBOM")
            return
        data = self.fetched(ref.target, "sbom", bound=(ref.length, ref.sha256))
        if data is None:
            return
        try:
            info = check_sbom(
                data, max_bytes=limits.max_sbom_bytes, max_components=limits.max_sbom_components
            )
        except InvalidInput as exc:
            self._finding("release.sbom.invalid", exc.message)
            return
        if info.format != ref.format:
            self._finding("release.sbom.invalid", f"the SBOM is {info.format}, not {ref.format}")
            return
        if info.components != ref.components:
            self._finding(
                "release.sbom.count",
                f"the SBOM lists {info.components} components, the manifest {ref.components}",
            )
            return
        self.sbom_info = info

    def provenance(
        self,
        manifest: ReleaseManifest,
        keys: Mapping[str, Key],
        allowed_builders: Sequence[str],
        limits: VerifyLimits,
    ) -> None:
        ref = manifest.provenance
        if ref is None:
            self._finding("release.provenance.missing", "the manifest names no provenance")
            return
        data = self.fetched(ref.target, "provenance", bound=(ref.length, ref.sha256))
        if data is None:
            return
        try:
            self.prov, self.signed_by = _check_provenance(
                data,
                image_sha256=manifest.image.sha256,
                keys=keys,
                allowed_builders=allowed_builders,
                max_bytes=limits.max_provenance_bytes,
            )
        except (InvalidInput, VerificationFailed) as exc:
            self._finding(str(exc.code), exc.message)  # _check_provenance's errors carry codes
