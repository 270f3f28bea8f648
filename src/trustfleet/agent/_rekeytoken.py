"""The token side of a re-key: the new key beside the old one, then the switch, crash-safely.

The identity key's label never changes (``[identity] key`` in device.toml names it, and the
MQTT link, EST, the updater and the AK enrollment all read it). A re-key generates the new key
under ``<label>.next``; once its certificate is on disk as ``<ldevid>.next`` (the *pending*
file), :func:`finish_pending` switches:

1. ``<label>`` → ``<label>.old`` (skipped once ``<label>`` already holds the new key),
2. ``<label>.next`` → ``<label>``,
3. destroy ``<label>.old``,
4. record the new key's SPKI fingerprint (``identity-key.json``),
5. replace the LDevID with the pending file (the pending file is gone: the switch is done).

Every step is idempotent and recognisable from the token's labels and public keys, so a crash
anywhere is finished by the next start (:func:`finish_pending` first thing): the pending file
exists until step 5, and the new key is the one whose public key its certificate holds. Before
the pending file exists nothing of the old identity has changed (docs/lifecycle.md).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from trustfleet.agent._tls import TokenKey, token_key
from trustfleet.agent.rekey import KEY_STATE_FILE, pending_path
from trustfleet.agent.settings import DeviceSettings
from trustfleet.errors import Config, NotFound
from trustfleet.fileio import write_atomic
from trustfleet.keystore import (
    TokenSession,
    destroy_key_pair,
    open_token,
    private_key_labels,
    rename_key_pair,
)

__all__ = ["discard_next_key", "finish_pending", "generate_next_key", "next_key"]

logger = logging.getLogger(__name__)

_MAX_CERT_BYTES = 64 * 1024
_CURVES = {"secp256r1": "P-256", "secp384r1": "P-384"}


def next_key(key: TokenKey) -> TokenKey:
    """The same token and PIN, the label of a re-key's new key (``<label>.next``)."""
    label = key.label + ".next"
    uri = dataclasses.replace(key.uri, object=label, id=None)
    return dataclasses.replace(key, uri=uri, label=label)


def _open(key: TokenKey) -> TokenSession:
    return open_token(module=key.module, label=key.token, pin=key.pin, conf=key.conf)


def _public_der(public: ec.EllipticCurvePublicKey | object) -> bytes:
    if not isinstance(public, ec.EllipticCurvePublicKey):
        return b""
    return public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _key_der(session: TokenSession, label: str) -> bytes:
    try:
        private = session.ec_private_key(label=label)
    except NotFound:
        return b""
    return _public_der(private.public_key())


def generate_next_key(settings: DeviceSettings) -> TokenKey:
    """Generate the new key (``<label>.next``, same curve as the identity key) in the token.

    Leftovers of an interrupted earlier re-key (``.next``, ``.old``) are destroyed first.
    Call it only with no pending file (:func:`finish_pending` ran).

    Raises:
        Conflict: The token is busy (an awscrt session is still logged in): retry.
        NotFound: The identity key is missing.
    """
    key = token_key(settings)
    fresh = next_key(key)
    with _open(key) as session:
        for stale in (fresh.label, key.label + ".old"):
            destroy_key_pair(session, stale)
        current = session.ec_private_key(label=key.label)
        curve = _CURVES.get(current.curve.name, "P-256")
        session.generate_ec_key(fresh.label, curve=curve)
    return fresh


def discard_next_key(settings: DeviceSettings) -> None:
    """Destroy an unused new key after a failed re-key (the old identity stays as it was).

    Raises:
        Conflict: The token is busy: retry.
    """
    key = token_key(settings)
    with _open(key) as session:
        destroy_key_pair(session, next_key(key).label)


def finish_pending(settings: DeviceSettings) -> x509.Certificate | None:
    """Finish a re-key whose new LDevID is pending (the steps in the module docstring).

    Returns:
        The new LDevID, or None when nothing was pending (the cost is one ``stat``).

    Raises:
        Config: The pending certificate certifies none of the token's keys (it is set aside
            as ``<ldevid>.next.bad``; the old identity is untouched).
        Conflict: The token is busy: retry.
    """
    pending = pending_path(settings)
    if not pending.is_file():
        return None
    try:
        cert: x509.Certificate | None = x509.load_pem_x509_certificate(
            pending.read_bytes()[:_MAX_CERT_BYTES]
        )
    except ValueError:
        cert = None
    want = _public_der(cert.public_key()) if cert is not None else b""
    key = token_key(settings)
    with _open(key) as session:
        switched = _switch(session, key.label, want)
    if cert is None or not switched:
        os.replace(pending, pending.with_name(pending.name + ".bad"))
        raise Config(
            f"{pending} is no certificate for a key in token '{key.token}'",
            hint="the device keeps its old identity; re-key it again",
            code="agent.rekey.pending_mismatch",
        )
    _record_key(settings, want)
    os.replace(pending, settings.path(settings.identity.ldevid))
    logger.info("re-key finished: LDevID serial %x is in use", cert.serial_number)
    return cert


def _switch(session: TokenSession, label: str, want: bytes) -> bool:
    """Steps 1-3: the key whose public key is ``want`` ends as ``label``, the others gone.

    Returns False (and keeps, or puts back, the old key as ``label``) when no key is ``want``.
    """
    fresh, old = label + ".next", label + ".old"
    if not want or _key_der(session, label) != want:
        if not want or _key_der(session, fresh) != want:
            if label not in private_key_labels(session) and old in private_key_labels(session):
                rename_key_pair(session, old, label)  # undo step 1: the old identity stays
            return False
        destroy_key_pair(session, old)
        if label in private_key_labels(session):
            rename_key_pair(session, label, old)
        rename_key_pair(session, fresh, label)
    destroy_key_pair(session, old)
    destroy_key_pair(session, fresh)
    return True


def _record_key(settings: DeviceSettings, spki_der: bytes) -> None:
    document = {"spki_sha256": hashlib.sha256(spki_der).hexdigest()}
    write_atomic(settings.directory / KEY_STATE_FILE, json.dumps(document).encode())
