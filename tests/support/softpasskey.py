"""A software WebAuthn authenticator for tests: an EC P-256 key, "none" attestation, and the
clientDataJSON, authenticatorData and signature built by hand as a browser and a security key
would (W3C WebAuthn Level 3, sections 6.1 and 6.5)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import struct
from typing import Any

import cbor2
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

__all__ = ["SoftPasskey", "b64url"]

_UP, _UV, _AT = 0x01, 0x04, 0x40


def b64url(data: bytes) -> str:
    """Unpadded base64url, as WebAuthn's JSON uses."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class SoftPasskey:
    """One credential on a software authenticator, used from ``origin``."""

    def __init__(self, *, origin: str, sign_count: int = 0) -> None:
        self.origin = origin
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.credential_id = os.urandom(16)
        self.sign_count = sign_count

    def _cose_key(self) -> bytes:
        numbers = self.key.public_key().public_numbers()
        return cbor2.dumps(
            {
                1: 2,
                3: -7,
                -1: 1,
                -2: numbers.x.to_bytes(32, "big"),
                -3: numbers.y.to_bytes(32, "big"),
            }
        )

    def _client_data(self, kind: str, challenge: str, origin: str | None) -> bytes:
        return json.dumps(
            {"type": kind, "challenge": challenge, "origin": origin or self.origin,
             "crossOrigin": False},
        ).encode()  # fmt: skip

    def create(self, options_json: str, *, origin: str | None = None) -> str:
        """The answer of ``navigator.credentials.create`` to ``options_json``."""
        options: dict[str, Any] = json.loads(options_json)
        rp_hash = hashlib.sha256(options["rp"]["id"].encode()).digest()
        attested = (
            bytes(16) + struct.pack(">H", len(self.credential_id)) + self.credential_id
            + self._cose_key()
        )  # fmt: skip
        auth_data = (
            rp_hash + bytes([_UP | _UV | _AT]) + struct.pack(">I", self.sign_count) + attested
        )
        attestation = cbor2.dumps({"fmt": "none", "attStmt": {}, "authData": auth_data})
        client_data = self._client_data("webauthn.create", options["challenge"], origin)
        return json.dumps({
            "id": b64url(self.credential_id), "rawId": b64url(self.credential_id),
            "type": "public-key", "clientExtensionResults": {},
            "response": {"clientDataJSON": b64url(client_data),
                         "attestationObject": b64url(attestation), "transports": ["internal"]},
        })  # fmt: skip

    def get(
        self, options_json: str, *, origin: str | None = None, advance: bool = True,
        rp_id: str | None = None,
    ) -> str:  # fmt: skip
        """The answer of ``navigator.credentials.get``; ``advance=False`` repeats the last
        signature counter (a cloned authenticator)."""
        options: dict[str, Any] = json.loads(options_json)
        if advance:
            self.sign_count += 1
        rp_hash = hashlib.sha256((rp_id or options["rpId"]).encode()).digest()
        auth_data = rp_hash + bytes([_UP | _UV]) + struct.pack(">I", self.sign_count)
        client_data = self._client_data("webauthn.get", options["challenge"], origin)
        signed = auth_data + hashlib.sha256(client_data).digest()
        signature = self.key.sign(signed, ec.ECDSA(hashes.SHA256()))
        return json.dumps({
            "id": b64url(self.credential_id), "rawId": b64url(self.credential_id),
            "type": "public-key", "clientExtensionResults": {},
            "response": {"clientDataJSON": b64url(client_data),
                         "authenticatorData": b64url(auth_data),
                         "signature": b64url(signature), "userHandle": None},
        })  # fmt: skip
