"""A boot key in memory and release manifests signed with it, for tests of the device side.

Test devices get this key's SHA-256 as their fused boot key; the product's own boot key lives
in the release token (tests that need it publish through ``trustfleet release``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from trustfleet.ota.manifest import (
    BootSignature,
    DeltaRef,
    ImageRef,
    Measurement,
    ReleaseManifest,
    delta_target,
    image_target,
    render_manifest,
)

__all__ = ["NOW", "SHA_A", "SHA_B", "SHA_C", "BootKey", "manifest_for", "sample_manifest"]

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
SHA_A, SHA_B, SHA_C = "a" * 64, "b" * 64, "c" * 64


@dataclass
class BootKey:
    """A P-256 boot key in memory."""

    key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )

    @property
    def pem(self) -> bytes:
        return self.key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    @property
    def sha256(self) -> str:
        der = self.key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return hashlib.sha256(der).hexdigest()

    def sign(self, data: bytes) -> bytes:
        return self.key.sign(data, ec.ECDSA(hashes.SHA256()))


def manifest_for(
    key: BootKey,
    image: bytes,
    *,
    version: str,
    model: str,
    min_version: str = "0.0.1",
    deltas: tuple[DeltaRef, ...] = (),
    signature: bytes | None = None,
) -> bytes:
    """The canonical manifest of ``image`` as release ``version``, boot-signed by ``key``."""
    digest = hashlib.sha256(image).hexdigest()
    return render_manifest(
        ReleaseManifest(
            model=model,
            version=version,
            min_version=min_version,
            created_at=NOW,
            image=ImageRef(target=image_target(model, version), length=len(image), sha256=digest),
            boot=BootSignature(key_sha256=key.sha256, signature=signature or key.sign(image)),
            deltas=deltas,
            measurements=(Measurement(pcr=9, component="image", sha256=digest),),
        )
    )


def sample_manifest(**changes: Any) -> ReleaseManifest:
    """A well-formed manifest (``sim-v1`` 2.0.0, one delta from 1.0.0, made at :data:`NOW`)
    with the given fields replaced; no key signed it (the digests are ``SHA_A``/``B``/``C``)."""
    fields: dict[str, Any] = {
        "model": "sim-v1",
        "version": "2.0.0",
        "min_version": "1.0.0",
        "created_at": NOW,
        "image": ImageRef(target=image_target("sim-v1", "2.0.0"), length=1 << 20, sha256=SHA_A),
        "boot": BootSignature(key_sha256=SHA_B, signature=b"\x30" * 70),
        "deltas": (
            DeltaRef(
                target=delta_target("sim-v1", "2.0.0", "1.0.0"),
                from_version="1.0.0",
                from_sha256=SHA_C,
                length=123,
                sha256=SHA_B,
            ),
        ),
        "measurements": (Measurement(pcr=9, component="image", sha256=SHA_A),),
    }
    fields.update(changes)
    return ReleaseManifest(**fields)
