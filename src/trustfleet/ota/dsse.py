"""DSSE v1 envelopes (Dead Simple Signing Envelope, github.com/secure-systems-lab/dsse).

An envelope carries a payload, its type and signatures over the pre-authentication encoding
(PAE) of both, so a signature over one payload type can never be read as another. TrustFleet
signs release provenance with the TUF targets key through a securesystemslib ``Signer`` (our
:class:`~trustfleet.ota.signer.Pkcs11Signer`: ECDSA P-256, DER) and verifies with
securesystemslib ``Key.verify_signature``; its exceptions are translated in :func:`_verifies`.

The JSON form is the standard one (``payload`` and ``sig`` base64, ``payloadType``, ``keyid``),
rendered with sorted keys and no whitespace; securesystemslib's ``dsse.Envelope`` and in-toto
read it.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from securesystemslib.exceptions import UnverifiedSignatureError
from securesystemslib.signer import Key, Signature, Signer  # type: ignore[attr-defined]  # re-exported, no __all__

from trustfleet.errors import Config, InvalidInput, VerificationFailed
from trustfleet.ota import _strict_json

__all__ = [
    "PAYLOAD_TYPE",
    "Envelope",
    "EnvelopeSignature",
    "pae",
    "parse_envelope",
    "render_envelope",
    "sign_envelope",
    "verify_envelope",
]

PAYLOAD_TYPE = "application/vnd.in-toto+json"
"""The payload type of an in-toto Statement (in-toto attestation framework, DSSE binding)."""

_MAX_SIGNATURES = 16
_MAX_KEYID_CHARS = 256
_MAX_TYPE_CHARS = 256
_MAX_SIG_BYTES = 1024
_B64 = re.compile(r"[A-Za-z0-9+/_-]*={0,2}")


@dataclass(frozen=True, slots=True)
class EnvelopeSignature:
    """One signature of an envelope: the signing key's id (may be empty) and the raw bytes."""

    keyid: str
    sig: bytes


@dataclass(frozen=True, slots=True)
class Envelope:
    """A DSSE envelope: payload, payload type and signatures over their PAE."""

    payload_type: str
    payload: bytes
    signatures: tuple[EnvelopeSignature, ...]


def pae(payload_type: str, payload: bytes) -> bytes:
    """The DSSE v1 pre-authentication encoding: what a signature covers.

    ``"DSSEv1" SP LEN(type) SP type SP LEN(payload) SP payload``, lengths as ASCII decimals of
    byte counts.

    Args:
        payload_type: The payload's type (a media type or URI).
        payload: The payload bytes.

    Returns:
        The bytes to sign and verify.
    """
    kind = payload_type.encode("utf-8")
    return b"DSSEv1 %d %b %d %b" % (len(kind), kind, len(payload), payload)


def sign_envelope(payload: bytes, *, signer: Signer, payload_type: str = PAYLOAD_TYPE) -> Envelope:
    """Sign ``payload`` into a one-signature envelope.

    Args:
        payload: The payload (an in-toto Statement's JSON bytes).
        signer: A securesystemslib signer (hex signature), e.g. ``Pkcs11Signer``.
        payload_type: The payload's type.

    Returns:
        The envelope.

    Raises:
        Config: The signer returned a signature that is not hex (code ``ota.dsse.signer``).
    """
    signature = signer.sign(pae(payload_type, payload))
    try:
        raw = bytes.fromhex(signature.signature)
    except ValueError as exc:
        raise Config(
            "the signer returned a signature that is not hex",
            hint="use a securesystemslib signer such as Pkcs11Signer",
            code="ota.dsse.signer",
        ) from exc
    return Envelope(payload_type, payload, (EnvelopeSignature(signature.keyid, raw),))


def render_envelope(env: Envelope) -> bytes:
    """The standard DSSE JSON of an envelope: sorted keys, compact, base64 with padding."""
    signatures = [
        {"keyid": s.keyid, "sig": base64.b64encode(s.sig).decode("ascii")} for s in env.signatures
    ]
    doc = {
        "payload": base64.b64encode(env.payload).decode("ascii"),
        "payloadType": env.payload_type,
        "signatures": signatures,
    }
    return _strict_json.dumps(doc)


def parse_envelope(data: bytes, *, max_bytes: int) -> Envelope:
    """Parse a DSSE envelope (JSON), strictly and within bounds.

    Base64 may be standard or URL-safe, padded or not (as the DSSE spec asks of readers).

    Args:
        data: The envelope's bytes.
        max_bytes: The largest envelope accepted.

    Returns:
        The envelope (its signatures not yet verified).

    Raises:
        InvalidInput: Oversize, not JSON, unknown or missing fields, bad base64, more than
            16 signatures (code ``ota.dsse.invalid``).
    """
    doc = _strict_json.load(data, max_bytes=max_bytes, bad=_bad)
    _strict_json.fields(doc, "envelope", {"payload", "payloadType", "signatures"}, bad=_bad)
    payload_type = doc["payloadType"]
    if not isinstance(payload_type, str) or not 0 < len(payload_type) <= _MAX_TYPE_CHARS:
        raise _bad("'payloadType' must be a non-empty string")
    raw = doc["signatures"]
    if not isinstance(raw, list) or not 0 < len(raw) <= _MAX_SIGNATURES:
        raise _bad(f"'signatures' must list 1 to {_MAX_SIGNATURES} signatures")
    return Envelope(
        payload_type, _b64(doc["payload"], "payload"), tuple(_signature(s) for s in raw)
    )


def verify_envelope(
    env: Envelope, *, keys: Mapping[str, Key], threshold: int = 1
) -> tuple[str, ...]:
    """Verify an envelope's signatures over its PAE.

    Only signatures whose keyid names a key of ``keys`` count, each key once. A signature
    without a keyid (optional in DSSE) is tried against every key not yet counted.

    Args:
        env: The envelope.
        keys: Trusted keys by key id.
        threshold: How many distinct keys must have signed (at least 1).

    Returns:
        The key ids whose signatures verified, in envelope order.

    Raises:
        InvalidInput: ``threshold`` is below 1 (code ``ota.dsse.threshold``).
        VerificationFailed: Fewer than ``threshold`` trusted keys signed (code
            ``ota.dsse.signature``).
    """
    if threshold < 1:
        raise InvalidInput(
            "a DSSE threshold must be at least 1",
            hint="ask for one signature or more",
            code="ota.dsse.threshold",
        )
    message = pae(env.payload_type, env.payload)
    verified: list[str] = []
    for signature in env.signatures:
        candidates = [signature.keyid] if signature.keyid else list(keys)
        keyid = _verified_by(keys, [k for k in candidates if k not in verified], signature, message)
        if keyid is not None:
            verified.append(keyid)
    if len(verified) < threshold:
        raise VerificationFailed(
            f"the envelope carries {len(verified)} valid signature(s) by trusted keys,"
            f" {threshold} needed",
            hint="the envelope was edited or signed by another key",
            code="ota.dsse.signature",
        )
    return tuple(verified)


def _verified_by(
    keys: Mapping[str, Key], keyids: list[str], signature: EnvelopeSignature, message: bytes
) -> str | None:
    """The first of ``keyids`` whose trusted key verifies ``signature`` over ``message``.

    The one place securesystemslib's verification errors are translated. A key whose own id
    is not the one it is trusted as (a mis-built key map) verifies nothing.
    """
    for keyid in (k for k in keyids if k in keys):
        try:
            keys[keyid].verify_signature(Signature(keyid, signature.sig.hex()), message)
        except UnverifiedSignatureError:  # VerificationError is a subclass
            continue
        return keyid
    return None


def _bad(why: str) -> InvalidInput:
    return InvalidInput(
        f"DSSE envelope refused: {why}",
        hint="the envelope must be DSSE JSON as 'trustfleet release build' writes it",
        code="ota.dsse.invalid",
    )


def _b64(value: Any, name: str) -> bytes:
    """Standard or URL-safe base64, padded or not (the alphabet checked by :data:`_B64`)."""
    if not isinstance(value, str) or _B64.fullmatch(value) is None:
        raise _bad(f"'{name}' is not base64")
    text = value.rstrip("=").replace("-", "+").replace("_", "/")
    try:
        return base64.b64decode(text.ljust(len(text) + -len(text) % 4, "="))
    except (binascii.Error, ValueError) as exc:
        raise _bad(f"'{name}' is not base64") from exc


def _signature(value: Any) -> EnvelopeSignature:
    doc = _strict_json.fields(value, "signature", {"sig"}, {"keyid"}, bad=_bad)
    keyid = doc.get("keyid", "")
    if not isinstance(keyid, str) or len(keyid) > _MAX_KEYID_CHARS:
        raise _bad("'keyid' must be a string")
    sig = _b64(doc["sig"], "sig")
    if not 0 < len(sig) <= _MAX_SIG_BYTES:
        raise _bad("'sig' has an impossible length")
    return EnvelopeSignature(keyid, sig)
