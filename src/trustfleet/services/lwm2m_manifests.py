"""Firmware manifests for LwM2M devices: COSE_Sign1 (ADR 0022) signed at ``release publish`` by
the TUF targets key in ``tf-release``, with a per-model sequence number from the store.

Every published release gets one (it is cheap); a device checks it with the public key the
factory wrote into its folder (``lwm2m-manifest-key.pem``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Literal

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from trustfleet.errors import Config
from trustfleet.keystore import Pkcs11EcPrivateKey
from trustfleet.lwm2m.manifest import Manifest, sign_manifest
from trustfleet.services._ota_keys import load_key_map, open_token_key, repo_files
from trustfleet.services._ota_state import load_state
from trustfleet.settings import ServerSettings
from trustfleet.store import Lwm2mManifestRecord, Transaction

__all__ = [
    "MANIFEST_KEY_FILE",
    "image_path",
    "manifest_public_key_pem",
    "open_targets_key",
    "store_release_manifest",
]

MANIFEST_KEY_FILE = "lwm2m-manifest-key.pem"
"""The device folder's copy of the public key manifests are signed with."""


def image_path(model: str, version: str) -> str:
    """The CoAP path the LwM2M server serves a release's image at."""
    return f"/fw/{model}/{version}/image"


@contextmanager
def open_targets_key(settings: ServerSettings) -> Iterator[Pkcs11EcPrivateKey]:
    """The TUF targets key of the home (in ``tf-release``), closed on exit.

    Raises:
        NotFound: The home has no OTA repository.
        Config: The key map does not know the targets key.
    """
    state = load_state(repo_files(settings))
    keyid = state.root.signed.roles["targets"].keyids[0]
    ref = load_key_map(settings).get(keyid)
    if ref is None:
        raise Config("no token key is recorded for the TUF targets key", code="ota.key.unknown")
    key = open_token_key(settings, ref)
    try:
        yield key
    finally:
        key.close()


def manifest_public_key_pem(settings: ServerSettings) -> bytes:
    """The PEM public key devices verify manifests with (the targets key's)."""
    with open_targets_key(settings) as key:
        public = key.public_key()
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _algorithm(
    key: ec.EllipticCurvePrivateKey,
) -> tuple[Literal["ES256", "ES384"], hashes.HashAlgorithm]:
    if isinstance(key.curve, ec.SECP384R1):
        return "ES384", hashes.SHA384()
    if isinstance(key.curve, ec.SECP256R1):
        return "ES256", hashes.SHA256()
    raise Config(f"the targets key's curve {key.curve.name} signs no COSE manifest")


def store_release_manifest(
    tx: Transaction,
    key: ec.EllipticCurvePrivateKey,
    *,
    model: str,
    version: str,
    image_sha256: str,
    image_size: int,
    now: datetime,
) -> Lwm2mManifestRecord:
    """Sign a release's manifest with the next sequence number of its model and store it."""
    algorithm, digest = _algorithm(key)
    spki = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    manifest = Manifest(
        model=model,
        version=version,
        sequence=tx.lwm2m.next_sequence(model),
        image_path=image_path(model, version),
        image_size=image_size,
        image_sha256=image_sha256,
    )
    signed = sign_manifest(
        manifest,
        sign=lambda data: key.sign(data, ec.ECDSA(digest)),
        algorithm=algorithm,
        key_id=hashlib.sha256(spki).digest(),
    )
    return tx.lwm2m.add_manifest(
        model=model, version=version, sequence=manifest.sequence, manifest=signed, now=now
    )
