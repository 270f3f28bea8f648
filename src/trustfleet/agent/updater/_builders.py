"""The device's builder policy: install only releases built by an allowed builder.

With ``[ota] allowed_builders`` non-empty (written by the factory from the server's
``[supply_chain] allowed_builders`` of the model, docs/supply-chain.md), a release is installed
only when, in this order:

1. its TUF-verified manifest names a provenance (``release.provenance.missing``);
2. the provenance is no larger than ``[ota] max_provenance_bytes``
   (``release.provenance.too_large``) and is listed in the TUF targets with the manifest's
   length and SHA-256 (``release.provenance.missing`` when unlisted,
   ``release.provenance.digest`` when different); python-tuf checks the downloaded bytes;
3. its DSSE envelope verifies with a key of the TUF targets role of the device's TRUSTED root
   (``release.provenance.signature``), its in-toto Statement parses
   (``release.provenance.invalid``), its subject is this manifest's image
   (``release.provenance.subject``) and its builder is an allowed one
   (``release.provenance.builder``).

Every failed check is a refusal (nothing is downloaded into a slot); a repository that cannot
be reached is a failure (the next attempt retries). Without a policy nothing is fetched.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from trustfleet.agent.updater._targets import Refusal, Repository
from trustfleet.errors import InvalidInput, VerificationFailed
from trustfleet.ota.manifest import ReleaseManifest

if TYPE_CHECKING:
    from securesystemslib.signer import Key  # type: ignore[attr-defined]  # re-exported

__all__ = ["check_builder", "provenance_refusal"]


def _refused(code: str, reason: str) -> Refusal:
    return Refusal(state="refused", reason=reason, code=code)


def provenance_refusal(
    envelope: bytes | None,
    *,
    manifest: ReleaseManifest,
    keys: Mapping[str, Key],
    allowed_builders: Sequence[str],
    max_bytes: int,
) -> Refusal | None:
    """Whether the builder policy refuses ``manifest`` given its provenance ``envelope`` (pure).

    Args:
        envelope: The provenance's TUF-verified bytes (None: the release names none).
        manifest: The TUF-verified release manifest.
        keys: The TUF targets role's keys (keyid → key) from the trusted root.
        allowed_builders: ``[ota] allowed_builders``; empty: no policy, nothing refused.
        max_bytes: ``[ota] max_provenance_bytes``.

    Returns:
        None when the release may be installed, else the refusal with its
        ``release.provenance.*`` code.
    """
    if not allowed_builders:
        return None
    if manifest.provenance is None or envelope is None:
        return _refused(
            "release.provenance.missing",
            f"release {manifest.version} carries no provenance and this device accepts only "
            "releases built by an allowed builder",
        )
    from trustfleet.ota.release_verify import check_provenance  # noqa: PLC0415  # policy only

    try:
        check_provenance(
            envelope,
            image_sha256=manifest.image.sha256,
            keys=keys,
            allowed_builders=allowed_builders,
            max_bytes=max_bytes,
        )
    except (VerificationFailed, InvalidInput) as exc:
        return _refused(exc.code or "release.provenance.invalid", exc.message)
    return None


def check_builder(
    repo: Repository,
    manifest: ReleaseManifest,
    *,
    allowed_builders: Sequence[str],
    max_bytes: int,
) -> Refusal | None:
    """Fetch the release's provenance through TUF and apply :func:`provenance_refusal`.

    Nothing is fetched when ``allowed_builders`` is empty or the manifest names no provenance.

    Raises:
        VerificationFailed: The downloaded bytes differ from the TUF metadata (``ota.tuf.*``).
        Unavailable: The repository could not be read.
    """
    ref = manifest.provenance
    if not allowed_builders or ref is None:
        return provenance_refusal(
            None, manifest=manifest, keys={}, allowed_builders=allowed_builders, max_bytes=max_bytes
        )
    if ref.length > max_bytes:
        why = f"the provenance is {ref.length} bytes, more than the {max_bytes} this device reads"
        return _refused("release.provenance.too_large", why)
    target = repo.target(ref.target)
    if target is None:
        return _refused("release.provenance.missing", f"{ref.target} is not a TUF target")
    if target.length != ref.length or target.sha256 != ref.sha256:
        why = f"{ref.target} is listed in the TUF targets unlike the manifest describes it"
        return _refused("release.provenance.digest", why)
    with repo.download(target).open("rb") as fh:
        envelope = fh.read(max_bytes + 1)
    return provenance_refusal(
        envelope,
        manifest=manifest,
        keys=repo.targets_keys(),
        allowed_builders=allowed_builders,
        max_bytes=max_bytes,
    )
