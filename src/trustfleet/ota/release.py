"""Building a release: the image's length, SHA-256, boot signature and reference measurements.

The boot signature is ECDSA P-256/SHA-256 (DER) over the image bytes, made by the ``boot`` key;
devices hold the SHA-256 of that key's SubjectPublicKeyInfo DER in their fuses. The image is
read in chunks and signed as a pre-hashed digest, so a large image never sits in memory.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, utils

from trustfleet.errors import InvalidInput, VerificationFailed
from trustfleet.ota._repofiles import hash_file
from trustfleet.ota.manifest import (
    BootSignature,
    ImageRef,
    Measurement,
    ReleaseManifest,
    image_target,
)
from trustfleet.ota.versions import check_model, parse_version

__all__ = ["IMAGE_PCR", "boot_key_sha256", "build_manifest", "verify_boot_signature"]

IMAGE_PCR = 9
"""The PCR the boot chain extends with the image's SHA-256 (component ``image``)."""


def boot_key_sha256(public_key: ec.EllipticCurvePublicKey) -> str:
    """SHA-256 (hex) over a boot key's SubjectPublicKeyInfo DER (what a device fuses)."""
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()


def _check_boot_key(public_key: ec.EllipticCurvePublicKey) -> None:
    if not isinstance(public_key.curve, ec.SECP256R1):
        raise InvalidInput(
            f"the boot key must be ECDSA P-256, not {public_key.curve.name}",
            code="ota.boot_key.curve",
        )


def build_manifest(
    *,
    image: Path,
    model: str,
    version: str,
    min_version: str,
    boot_key: ec.EllipticCurvePrivateKey,
    max_image_bytes: int,
    now: datetime,
) -> ReleaseManifest:
    """The manifest of a release (without deltas: they are added when it is published).

    Args:
        image: The full image file.
        model: The hardware model.
        version: The release's version.
        min_version: The lowest installed version it may be installed over.
        boot_key: The boot signing key (in the release token).
        max_image_bytes: Larger images are refused.
        now: The build time (``created_at``).

    Returns:
        The manifest, with boot signature and the image measurement.

    Raises:
        InvalidInput: A bad model or version, ``min_version`` above ``version``, a missing,
            irregular or oversize image, or a boot key not on P-256.
        NotFound: The image file does not exist.
    """
    check_model(model)
    if parse_version(min_version) > parse_version(version):
        raise InvalidInput(
            f"min_version {min_version} is above version {version}",
            hint="the minimum installed version must not exceed the release's own",
            code="ota.release.min_version",
        )
    _check_boot_key(boot_key.public_key())
    length, digest = hash_file(image, max_bytes=max_image_bytes)
    if length == 0:
        raise InvalidInput(f"{image} is empty", code="ota.image.empty")
    signature = boot_key.sign(bytes.fromhex(digest), ec.ECDSA(utils.Prehashed(hashes.SHA256())))
    return ReleaseManifest(
        model=model,
        version=version,
        min_version=min_version,
        created_at=now,
        image=ImageRef(target=image_target(model, version), length=length, sha256=digest),
        boot=BootSignature(key_sha256=boot_key_sha256(boot_key.public_key()), signature=signature),
        measurements=(Measurement(pcr=IMAGE_PCR, component="image", sha256=digest),),
    )


def verify_boot_signature(
    manifest: ReleaseManifest, *, public_key: ec.EllipticCurvePublicKey
) -> None:
    """Check the manifest's boot signature over its image digest with ``public_key``.

    Raises:
        VerificationFailed: Another key, or the signature does not verify
            (code ``ota.boot.signature``).
    """
    if manifest.boot.key_sha256 != boot_key_sha256(public_key):
        raise VerificationFailed(
            "the release was signed by another boot key", code="ota.boot.signature"
        )
    try:
        public_key.verify(
            manifest.boot.signature,
            bytes.fromhex(manifest.image.sha256),
            ec.ECDSA(utils.Prehashed(hashes.SHA256())),
        )
    except InvalidSignature as exc:
        raise VerificationFailed(
            "the boot signature does not verify", code="ota.boot.signature"
        ) from exc
