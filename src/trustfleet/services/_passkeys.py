"""WebAuthn (passkeys) through py_webauthn: options for the browser and verification of its
answers. The one place that calls the library; its errors become
:class:`~trustfleet.errors.VerificationFailed`.

The relying party is the console's host: RP id = the host of ``[api] public_url``, expected
origin = its ``scheme://host[:port]`` (a default port left out, as browsers send it). User
verification is preferred, not required; attestation is "none" (any authenticator).
"""

from __future__ import annotations

from typing import Final
from urllib.parse import urlsplit

import webauthn
from webauthn.helpers import exceptions as webauthn_errors
from webauthn.helpers import parse_authentication_credential_json
from webauthn.helpers.structs import (
    AttestationConveyancePreference,
    AuthenticatorSelectionCriteria,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from trustfleet.errors import InvalidInput, VerificationFailed

__all__ = [
    "MAX_CREDENTIAL_JSON_CHARS",
    "Registered",
    "authentication_options",
    "credential_id_of",
    "registration_options",
    "relying_party",
    "verify_authentication",
    "verify_registration",
]

MAX_CREDENTIAL_JSON_CHARS: Final = 64 * 1024
_DEFAULT_PORTS: Final = {"https": 443, "http": 80}
_TIMEOUT_MS: Final = 120_000

Registered = tuple[bytes, bytes, int]
"""A verified registration: credential id, COSE public key, signature counter."""


def relying_party(public_url: str) -> tuple[str, str]:
    """The RP id and the expected origin of ``public_url``."""
    parts = urlsplit(public_url)
    host = parts.hostname or "localhost"
    shown = f"[{host}]" if ":" in host else host
    port = parts.port
    if port is None or port == _DEFAULT_PORTS.get(parts.scheme):
        return host, f"{parts.scheme}://{shown}"
    return host, f"{parts.scheme}://{shown}:{port}"


def _bounded(credential_json: str) -> str:
    if len(credential_json) > MAX_CREDENTIAL_JSON_CHARS:
        raise InvalidInput("the passkey answer is too large", code="auth.passkey.too_large")
    return credential_json


def registration_options(
    *, rp_id: str, rp_name: str, user_id: bytes, user_name: str, exclude: list[bytes]
) -> tuple[str, bytes]:
    """Options for ``navigator.credentials.create`` (JSON) and their challenge."""
    options = webauthn.generate_registration_options(
        rp_id=rp_id,
        rp_name=rp_name,
        user_id=user_id,
        user_name=user_name,
        timeout=_TIMEOUT_MS,
        attestation=AttestationConveyancePreference.NONE,
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.PREFERRED,
            user_verification=UserVerificationRequirement.PREFERRED,
        ),
        exclude_credentials=[PublicKeyCredentialDescriptor(id=c) for c in exclude],
    )
    return webauthn.options_to_json(options), options.challenge


def verify_registration(
    credential_json: str, *, challenge: bytes, rp_id: str, origin: str
) -> Registered:
    """Verify the answer of ``navigator.credentials.create``.

    Raises:
        VerificationFailed: It does not verify (code ``auth.passkey.invalid``).
        InvalidInput: It is too large.
    """
    try:
        verified = webauthn.verify_registration_response(
            credential=_bounded(credential_json), expected_challenge=challenge,
            expected_rp_id=rp_id, expected_origin=origin,
        )  # fmt: skip
    except (webauthn_errors.WebAuthnException, ValueError, KeyError, TypeError) as exc:
        raise VerificationFailed(
            "the passkey registration did not verify", code="auth.passkey.invalid"
        ) from exc
    return verified.credential_id, verified.credential_public_key, verified.sign_count


def authentication_options(*, rp_id: str, allow: list[bytes]) -> tuple[str, bytes]:
    """Options for ``navigator.credentials.get`` (JSON) and their challenge."""
    options = webauthn.generate_authentication_options(
        rp_id=rp_id,
        timeout=_TIMEOUT_MS,
        allow_credentials=[PublicKeyCredentialDescriptor(id=c) for c in allow],
        user_verification=UserVerificationRequirement.PREFERRED,
    )
    return webauthn.options_to_json(options), options.challenge


def credential_id_of(credential_json: str) -> bytes | None:
    """The credential id an answer of ``navigator.credentials.get`` names, or None."""
    try:
        return parse_authentication_credential_json(_bounded(credential_json)).raw_id
    except (webauthn_errors.WebAuthnException, ValueError, KeyError, TypeError):
        return None


def verify_authentication(
    credential_json: str, *, challenge: bytes, rp_id: str, origin: str, public_key: bytes,
    sign_count: int,
) -> int:  # fmt: skip
    """Verify the answer of ``navigator.credentials.get``; return the new signature counter.

    Raises:
        VerificationFailed: It does not verify (code ``auth.passkey.invalid``), or its counter
            did not grow (a cloned authenticator or a replay: ``auth.passkey.sign_count``).
        InvalidInput: It is too large.
    """
    try:
        verified = webauthn.verify_authentication_response(
            credential=_bounded(credential_json), expected_challenge=challenge,
            expected_rp_id=rp_id, expected_origin=origin, credential_public_key=public_key,
            credential_current_sign_count=sign_count,
        )  # fmt: skip
    except (webauthn_errors.WebAuthnException, ValueError, KeyError, TypeError) as exc:
        code = "auth.passkey.sign_count" if "sign count" in str(exc) else "auth.passkey.invalid"
        raise VerificationFailed("the passkey did not verify", code=code) from exc
    return verified.new_sign_count
