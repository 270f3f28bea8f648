"""Wipe evidence: what a decommissioned device destroyed, signed by its identity key (pure).

The agent builds the document (:func:`unsigned_evidence`), signs :func:`signing_input` with its
identity key right before destroying that key, and returns it as the result of the
``decommission`` command. The service checks it with :func:`verify_wipe_evidence` against the
device's current LDevID, the nonce it sent and ``now`` (docs/lifecycle.md, "Decommission and
wipe evidence").

Canonical encoding: the document without ``signature``, as JSON with sorted keys, no
whitespace and ASCII escapes (``json.dumps(sort_keys=True, separators=(",", ":"))``). The
evidence holds only objects, arrays, ASCII strings, integers and booleans (no floats), for
which this is byte-identical to RFC 8785 (JCS). The signed bytes are
``b"trustfleet-wipe-evidence/1\\n" + canonical`` (a context string: no other signature of the
identity key can be replayed as wipe evidence). The signature is ECDSA (P-256 with SHA-256,
P-384 with SHA-384), DER, base64 (RFC 4648 §4).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from trustfleet.attestation.findings import Finding

__all__ = [
    "ALL_WIPE_CODES",
    "EVIDENCE_VERSION",
    "MAX_EVIDENCE_BYTES",
    "SIGNING_CONTEXT",
    "WipeVerdict",
    "canonical_bytes",
    "signature_hash",
    "signing_input",
    "spki_sha256",
    "unsigned_evidence",
    "verify_wipe_evidence",
]

EVIDENCE_VERSION: Final = 1
MAX_EVIDENCE_BYTES: Final = 8 * 1024
"""Bound on the canonical encoding of one evidence document (the store keeps up to 16 KiB)."""
MAX_ITEMS: Final = 32
"""Bound on each list of destroyed things."""
MAX_TEXT_CHARS: Final = 256
"""Bound on each string."""
MAX_FUTURE_SKEW: Final = timedelta(minutes=5)
"""How far ahead of the server's clock the agent's time may be."""
MAX_AGE: Final = timedelta(days=31)
"""How far behind: no evidence can be older than the longest decommission timeout."""
SIGNING_CONTEXT: Final = b"trustfleet-wipe-evidence/1\n"

MALFORMED: Final = "wipe.evidence.malformed"
"""Not an object of the contract (types, sizes, version, missing fields)."""
DEVICE_MISMATCH: Final = "wipe.device.mismatch"
"""The evidence or the certificate names another device."""
NONCE_MISMATCH: Final = "wipe.nonce.mismatch"
"""The evidence does not carry the nonce of this decommission (replayed or forged)."""
SIGNATURE: Final = "wipe.signature"
"""The signature does not verify with the device's LDevID key."""
KEY_UNSUPPORTED: Final = "wipe.key.unsupported"
"""The LDevID key is not an ECDSA P-256/P-384 key."""
IDENTITY_NOT_DESTROYED: Final = "wipe.identity.not_destroyed"
"""The identity key (the LDevID's) is not among the destroyed token keys."""
AK_NOT_DESTROYED: Final = "wipe.ak.not_destroyed"
"""The device had an AK on record and the evidence does not destroy that AK."""
TIME_RANGE: Final = "wipe.time.range"
"""The agent's time is too far from the server's."""
CLOCK_UNSAFE: Final = "wipe.tpm_clock.unsafe"
"""The TPM says its clock may have been reported higher before (warning)."""

ALL_WIPE_CODES: Final = frozenset(
    {
        MALFORMED,
        DEVICE_MISMATCH,
        NONCE_MISMATCH,
        SIGNATURE,
        KEY_UNSUPPORTED,
        IDENTITY_NOT_DESTROYED,
        AK_NOT_DESTROYED,
        TIME_RANGE,
        CLOCK_UNSAFE,
    }
)

_HEX = re.compile(r"[0-9a-f]{1,128}")
_TOP_KEYS: Final = frozenset(
    {"v", "device_id", "nonce", "agent_time", "tpm_clock", "destroyed", "signature"}
)
_DESTROYED_KEYS: Final = frozenset({"token_keys", "ak", "sealed"})
_CLOCK_KEYS: Final = frozenset({"clock", "reset_count", "restart_count", "safe"})


@dataclass(frozen=True, slots=True, kw_only=True)
class WipeVerdict:
    """The result of checking one piece of wipe evidence.

    Attributes:
        ok: No ``error`` finding.
        findings: Every problem found, in the order checked.
    """

    ok: bool
    findings: tuple[Finding, ...] = field(default=())

    @property
    def codes(self) -> tuple[str, ...]:
        """The codes of the findings, in order."""
        return tuple(f.code for f in self.findings)

    def reason(self) -> str:
        """One line naming the failed checks (empty when ok)."""
        return "; ".join(f"{f.code}: {f.message}" for f in self.findings if f.severity == "error")


def canonical_bytes(document: Mapping[str, Any]) -> bytes:
    """The canonical encoding of ``document`` without its ``signature`` member.

    Raises:
        ValueError: The document holds a float or a value JSON cannot encode.
    """
    unsigned = {k: v for k, v in document.items() if k != "signature"}
    _no_floats(unsigned, depth=0)
    text = json.dumps(unsigned, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return text.encode("ascii")


def signing_input(document: Mapping[str, Any]) -> bytes:
    """What the identity key signs: the context string, then :func:`canonical_bytes`."""
    return SIGNING_CONTEXT + canonical_bytes(document)


def spki_sha256(public_key: ec.EllipticCurvePublicKey | Any) -> str:
    """Hex SHA-256 of a public key's DER SubjectPublicKeyInfo (how evidence names keys)."""
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()


def signature_hash(curve: ec.EllipticCurve) -> hashes.HashAlgorithm:
    """The hash the evidence signature uses with a key on ``curve``.

    Raises:
        ValueError: Not P-256 or P-384.
    """
    if isinstance(curve, ec.SECP256R1):
        return hashes.SHA256()
    if isinstance(curve, ec.SECP384R1):
        return hashes.SHA384()
    raise ValueError(f"unsupported curve {curve.name}")


def unsigned_evidence(
    *,
    device_id: str,
    nonce: str,
    agent_time: datetime,
    tpm_clock: Mapping[str, Any] | None,
    token_keys: list[dict[str, str]],
    ak: Mapping[str, str] | None,
    sealed: list[str],
) -> dict[str, Any]:
    """The evidence document before its signature (the agent adds ``signature``).

    Args:
        device_id: The device.
        nonce: The server's nonce (hex), as received.
        agent_time: The agent's clock (timezone-aware).
        tpm_clock: ``{"clock", "reset_count", "restart_count", "safe"}`` from TPM2_ReadClock,
            or None without a TPM.
        token_keys: ``[{"label", "spki_sha256"}]`` of every key destroyed in the token.
        ak: ``{"handle": "0x…", "name": hex}`` of the evicted AK, or None.
        sealed: What was crypto-erased (``tpm-clear``, file names under the device folder).
    """
    return {
        "v": EVIDENCE_VERSION,
        "device_id": device_id,
        "nonce": nonce,
        "agent_time": agent_time.isoformat(timespec="seconds"),
        "tpm_clock": None if tpm_clock is None else dict(tpm_clock),
        "destroyed": {"token_keys": token_keys, "ak": None if ak is None else dict(ak),
                      "sealed": sealed},
    }  # fmt: skip


def _no_floats(value: Any, *, depth: int) -> None:
    if depth > 6:
        raise ValueError("nested too deeply")
    if isinstance(value, float):
        raise ValueError("wipe evidence holds no floats")
    if isinstance(value, Mapping):
        for item in value.values():
            _no_floats(item, depth=depth + 1)
    elif isinstance(value, list):
        for item in value:
            _no_floats(item, depth=depth + 1)


class _Malformed(ValueError):
    pass


def _text(value: Any, what: str, *, pattern: re.Pattern[str] | None = None) -> str:
    if not isinstance(value, str) or not value or len(value) > MAX_TEXT_CHARS:
        raise _Malformed(f"'{what}' must be text of 1 to {MAX_TEXT_CHARS} characters")
    if not value.isascii() or (pattern is not None and not pattern.fullmatch(value)):
        raise _Malformed(f"'{what}' is not in its format")
    return value


def _count(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**64:
        raise _Malformed(f"'{what}' must be an unsigned 64-bit integer")
    return value


def _object(value: Any, what: str, keys: frozenset[str]) -> Mapping[str, Any]:
    if not isinstance(value, Mapping) or set(value) - keys:
        raise _Malformed(f"'{what}' must be an object with only {sorted(keys)}")
    return value


def _list(value: Any, what: str) -> list[Any]:
    if not isinstance(value, list) or len(value) > MAX_ITEMS:
        raise _Malformed(f"'{what}' must be a list of at most {MAX_ITEMS}")
    return value


@dataclass(frozen=True, slots=True)
class _Parsed:
    device_id: str
    nonce: str
    agent_time: datetime
    clock_safe: bool | None
    token_keys: frozenset[str]
    ak_name: str | None
    signature: bytes


def _parse(evidence: Mapping[str, Any]) -> _Parsed:
    """Check the shape of the evidence (every bound); raise _Malformed with the reason."""
    doc = _object(evidence, "evidence", _TOP_KEYS)
    if doc.get("v") != EVIDENCE_VERSION or isinstance(doc.get("v"), bool):
        raise _Malformed(f"'v' must be {EVIDENCE_VERSION}")
    try:
        size = len(canonical_bytes(doc))
    except (ValueError, TypeError, RecursionError) as exc:
        raise _Malformed(f"not canonical JSON: {exc}") from exc
    if size > MAX_EVIDENCE_BYTES:
        raise _Malformed(f"the evidence is over {MAX_EVIDENCE_BYTES} bytes")
    try:
        agent_time = datetime.fromisoformat(_text(doc.get("agent_time"), "agent_time"))
    except ValueError as exc:
        raise _Malformed("'agent_time' is not an ISO 8601 time") from exc
    if agent_time.tzinfo is None:
        raise _Malformed("'agent_time' has no time zone")
    clock = doc.get("tpm_clock")
    safe: bool | None = None
    if clock is not None:
        clock = _object(clock, "tpm_clock", _CLOCK_KEYS)
        for key in ("clock", "reset_count", "restart_count"):
            _count(clock.get(key), f"tpm_clock.{key}")
        if not isinstance(clock.get("safe"), bool):
            raise _Malformed("'tpm_clock.safe' must be a boolean")
        safe = clock["safe"]
    destroyed = _object(doc.get("destroyed"), "destroyed", _DESTROYED_KEYS)
    keys = set()
    for raw in _list(destroyed.get("token_keys"), "destroyed.token_keys"):
        item = _object(raw, "destroyed.token_keys[]", frozenset({"label", "spki_sha256"}))
        _text(item.get("label"), "destroyed.token_keys[].label")
        keys.add(_text(item.get("spki_sha256"), "spki_sha256", pattern=_HEX))
    ak = destroyed.get("ak")
    ak_name = None
    if ak is not None:
        ak = _object(ak, "destroyed.ak", frozenset({"handle", "name"}))
        _text(ak.get("handle"), "destroyed.ak.handle")
        ak_name = _text(ak.get("name"), "destroyed.ak.name", pattern=_HEX)
    for item in _list(destroyed.get("sealed"), "destroyed.sealed"):
        _text(item, "destroyed.sealed[]")
    try:
        signature = base64.b64decode(_text(doc.get("signature"), "signature"), validate=True)
    except binascii.Error as exc:
        raise _Malformed("'signature' is not base64") from exc
    return _Parsed(
        device_id=_text(doc.get("device_id"), "device_id"),
        nonce=_text(doc.get("nonce"), "nonce", pattern=_HEX),
        agent_time=agent_time,
        clock_safe=safe,
        token_keys=frozenset(keys),
        ak_name=ak_name,
        signature=signature,
    )


def _error(code: str, message: str, **context: Any) -> Finding:
    return Finding(code=code, severity="error", message=message, context=context)


def _certificate_findings(certificate: x509.Certificate, device_id: str) -> list[Finding]:
    names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if [n.value for n in names] != [device_id]:
        return [_error(DEVICE_MISMATCH, "the certificate is not the device's")]
    key = certificate.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(
        key.curve, ec.SECP256R1 | ec.SECP384R1
    ):
        return [_error(KEY_UNSUPPORTED, "wipe evidence needs an ECDSA P-256 or P-384 LDevID")]
    return []


def _signature_ok(
    evidence: Mapping[str, Any], parsed: _Parsed, key: ec.EllipticCurvePublicKey
) -> bool:
    try:
        key.verify(parsed.signature, signing_input(evidence), ec.ECDSA(signature_hash(key.curve)))
    except (InvalidSignature, ValueError):
        return False
    return True


def verify_wipe_evidence(
    evidence: Mapping[str, Any],
    *,
    certificate: x509.Certificate,
    device_id: str,
    nonce: str,
    now: datetime,
    ak_name: str | None = None,
) -> WipeVerdict:
    """Check wipe evidence against the device's current LDevID and the decommission's nonce.

    Args:
        evidence: The document the agent returned (parsed JSON).
        certificate: The device's current LDevID (from the store).
        device_id: The device being decommissioned.
        nonce: The nonce the server sent (hex).
        now: The receiving time (timezone-aware).
        ak_name: The device's AK name on record (hex), if it has one: the evidence must
            name it as evicted.

    Returns:
        The verdict; ``ok`` only if the signature verifies and every check passes.
    """
    try:
        parsed = _parse(evidence)
    except _Malformed as exc:
        return WipeVerdict(ok=False, findings=(_error(MALFORMED, str(exc)),))
    findings = _certificate_findings(certificate, device_id)
    key = certificate.public_key()
    if not findings and isinstance(key, ec.EllipticCurvePublicKey):
        if not _signature_ok(evidence, parsed, key):
            findings.append(_error(SIGNATURE, "the signature does not verify with the LDevID"))
        if spki_sha256(key) not in parsed.token_keys:
            findings.append(
                _error(IDENTITY_NOT_DESTROYED, "the identity key is not among the destroyed keys")
            )
    if parsed.device_id != device_id:
        findings.append(_error(DEVICE_MISMATCH, "the evidence names another device"))
    if not hmac.compare_digest(parsed.nonce.encode(), nonce.lower().encode()):
        findings.append(_error(NONCE_MISMATCH, "the evidence does not carry this request's nonce"))
    if ak_name is not None and not hmac.compare_digest(
        (parsed.ak_name or "").encode(), ak_name.lower().encode()
    ):
        findings.append(_error(AK_NOT_DESTROYED, "the AK on record was not evicted"))
    if not now - MAX_AGE <= parsed.agent_time <= now + MAX_FUTURE_SKEW:
        findings.append(
            _error(TIME_RANGE, "the agent's time is too far from the server's",
                   agent_time=parsed.agent_time.isoformat())
        )  # fmt: skip
    if parsed.clock_safe is False:
        findings.append(
            Finding(code=CLOCK_UNSAFE, severity="warning",
                    message="the TPM clock is not marked safe")
        )  # fmt: skip
    ok = not any(f.severity == "error" for f in findings)
    return WipeVerdict(ok=ok, findings=tuple(findings))
