"""Signed firmware manifests for LwM2M devices: COSE_Sign1 (RFC 9052) over a SUIT-style payload.

Envelope: CBOR tag 18 ``[protected, unprotected, payload, signature]`` with the protected header
``{1: alg, 4: kid}`` (alg -7 ES256 on P-256, -35 ES384 on P-384), an empty unprotected header and
the raw ``r || s`` signature over the ``Sig_structure``
``["Signature1", protected, h'', payload]``.

Payload: a CBOR map with integer keys (inspired by SUIT, RFC 9124, not SUIT itself):

====  ====================  ===========================================================
key   name                  value
====  ====================  ===========================================================
1     manifest version      1
2     sequence number       unsigned; monotonic per model (anti-rollback)
3     model                 text, the device model
4     version               text, the release version
5     image path            text, the CoAP path of the image under ``/fw/``
6     image size            unsigned, bytes
7     image digest          byte string, SHA-256 of the image (32 bytes)
====  ====================  ===========================================================

:func:`verify_manifest` is pure; it raises :class:`~trustfleet.errors.VerificationFailed` with
the codes ``lwm2m.manifest.too_large``, ``.malformed``, ``.signature``, ``.model`` and
``.rollback``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from trustfleet.errors import VerificationFailed
from trustfleet.lwm2m import _cbor

__all__ = ["MANIFEST_VERSION", "Manifest", "sig_structure", "sign_manifest", "verify_manifest"]

MANIFEST_VERSION = 1
COSE_SIGN1_TAG = 18
_ALGORITHMS: dict[str, tuple[int, hashes.HashAlgorithm, int, str]] = {
    "ES256": (-7, hashes.SHA256(), 32, "secp256r1"),
    "ES384": (-35, hashes.SHA384(), 48, "secp384r1"),
}
_BY_ID = {alg_id: name for name, (alg_id, _, _, _) in _ALGORITHMS.items()}
_IMAGE_PATH = re.compile(r"/fw(?:/[A-Za-z0-9_\-.]+)+")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_MAX_TEXT = 255


@dataclass(frozen=True, slots=True, kw_only=True)
class Manifest:
    """What a manifest says about one firmware image."""

    model: str
    version: str
    sequence: int
    image_path: str
    image_size: int
    image_sha256: str  # lowercase hex


def _fail(what: str, message: str) -> VerificationFailed:
    return VerificationFailed(
        f"Firmware manifest refused: {message}", code=f"lwm2m.manifest.{what}"
    )


def _payload(manifest: Manifest) -> bytes:
    if not _HEX64.fullmatch(manifest.image_sha256) or not _IMAGE_PATH.fullmatch(
        manifest.image_path
    ):
        raise ValueError("image_sha256 is 64 lowercase hex digits, image_path a path under /fw/")
    return _cbor.dumps(
        {
            1: MANIFEST_VERSION,
            2: manifest.sequence,
            3: manifest.model,
            4: manifest.version,
            5: manifest.image_path,
            6: manifest.image_size,
            7: bytes.fromhex(manifest.image_sha256),
        }
    )


def sig_structure(protected: bytes, payload: bytes) -> bytes:
    """The COSE ``Sig_structure`` of a COSE_Sign1 (RFC 9052 §4.4), no external AAD."""
    return _cbor.dumps(["Signature1", protected, b"", payload])


def sign_manifest(
    manifest: Manifest,
    *,
    sign: Callable[[bytes], bytes],
    algorithm: Literal["ES256", "ES384"],
    key_id: bytes,
) -> bytes:
    """Sign a manifest as a tagged COSE_Sign1.

    Args:
        manifest: What to sign.
        sign: Signs the bytes given with ECDSA and the algorithm's hash (SHA-256 for ES256,
            SHA-384 for ES384) and returns a DER signature (a PKCS#11 key or a software key).
        algorithm: ``ES256`` or ``ES384``.
        key_id: The ``kid`` header (e.g. the key's SHA-256 fingerprint).

    Returns:
        The COSE_Sign1 bytes.
    """
    alg_id, _, size, _ = _ALGORITHMS[algorithm]
    protected = _cbor.dumps({1: alg_id, 4: key_id})
    payload = _payload(manifest)
    r, s = decode_dss_signature(sign(sig_structure(protected, payload)))
    signature = r.to_bytes(size, "big") + s.to_bytes(size, "big")
    return _cbor.dumps(_cbor.Tag(COSE_SIGN1_TAG, [protected, {}, payload, signature]))


def _envelope(data: bytes) -> tuple[bytes, dict[object, object], bytes, bytes]:
    try:
        outer = _cbor.loads(data, max_depth=4, max_items=64)
    except _cbor.CborError as exc:
        raise _fail("malformed", "not CBOR") from exc
    if not isinstance(outer, _cbor.Tag) or outer.tag != COSE_SIGN1_TAG:
        raise _fail("malformed", "not a tagged COSE_Sign1")
    body = outer.value
    if not isinstance(body, list) or len(body) != 4:
        raise _fail("malformed", "not a COSE_Sign1 array")
    protected, unprotected, payload, signature = body
    if not (
        isinstance(protected, bytes)
        and unprotected == {}
        and isinstance(payload, bytes)
        and isinstance(signature, bytes)
    ):
        raise _fail("malformed", "bad COSE_Sign1 fields")
    try:
        header = _cbor.loads(protected, max_depth=1, max_items=8)
    except _cbor.CborError as exc:
        raise _fail("malformed", "protected header is not CBOR") from exc
    if not isinstance(header, dict) or set(header) != {1, 4} or not isinstance(header[4], bytes):
        raise _fail("malformed", "protected header is not {alg, kid}")
    return protected, header, payload, signature


def _check_signature(
    protected: bytes, header: dict[object, object], payload: bytes, signature: bytes, key: object
) -> None:
    name = _BY_ID.get(header[1]) if isinstance(header[1], int) else None
    if name is None:
        raise _fail("signature", "unsupported algorithm")
    _, hash_alg, size, curve = _ALGORITHMS[name]
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != curve:
        raise _fail("signature", "the algorithm does not match the key")
    if len(signature) != 2 * size:
        raise _fail("signature", "signature length")
    der = encode_dss_signature(
        int.from_bytes(signature[:size], "big"), int.from_bytes(signature[size:], "big")
    )
    try:
        key.verify(der, sig_structure(protected, payload), ec.ECDSA(hash_alg))
    except InvalidSignature as exc:
        raise _fail("signature", "bad signature") from exc


def _uint(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _fail("malformed", "payload value is not an unsigned integer")
    return value


def _text(value: object) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= _MAX_TEXT:
        raise _fail("malformed", "payload value is not a short text")
    return value


def _manifest(payload: bytes) -> Manifest:
    try:
        fields = _cbor.loads(payload, max_depth=1, max_items=16)
    except _cbor.CborError as exc:
        raise _fail("malformed", "payload is not CBOR") from exc
    if not isinstance(fields, dict) or set(fields) != set(range(1, 8)):
        raise _fail("malformed", "payload keys")
    if _uint(fields[1]) != MANIFEST_VERSION:
        raise _fail("malformed", "unknown manifest version")
    path, digest = _text(fields[5]), fields[7]
    if not _IMAGE_PATH.fullmatch(path) or not isinstance(digest, bytes) or len(digest) != 32:
        raise _fail("malformed", "image path or digest")
    return Manifest(
        model=_text(fields[3]),
        version=_text(fields[4]),
        sequence=_uint(fields[2]),
        image_path=path,
        image_size=_uint(fields[6]),
        image_sha256=digest.hex(),
    )


def verify_manifest(
    data: bytes,
    *,
    public_key: ec.EllipticCurvePublicKey,
    model: str,
    min_sequence: int,
    max_bytes: int,
) -> Manifest:
    """Verify a COSE_Sign1 manifest for a device.

    Args:
        data: The manifest as downloaded.
        public_key: The manifest key the device trusts (P-256 for ES256, P-384 for ES384).
        model: The device's model; the manifest must name it.
        min_sequence: The lowest sequence number accepted (the device's last one, or one more
            to refuse a re-install).
        max_bytes: The largest manifest accepted.

    Returns:
        The manifest.

    Raises:
        VerificationFailed: ``lwm2m.manifest.too_large``, ``.malformed``, ``.signature``,
            ``.model`` or ``.rollback``.
    """
    if len(data) > max_bytes:
        raise _fail("too_large", f"larger than {max_bytes} bytes")
    protected, header, payload, signature = _envelope(data)
    _check_signature(protected, header, payload, signature, public_key)
    manifest = _manifest(payload)
    if manifest.model != model:
        raise _fail("model", "it is for another model")
    if manifest.sequence < min_sequence:
        raise _fail("rollback", "its sequence number is lower than the device's")
    return manifest
