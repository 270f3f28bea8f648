"""The device's TLS client context: mutual TLS 1.3 with the identity key inside its token.

Shared by the EST client and the MQTT link. awscrt (s2n) performs the handshake and asks the
PKCS#11 module to sign, so the key never leaves the token.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from awscrt import io as crt_io

from trustfleet.agent.settings import DeviceSettings
from trustfleet.keystore import PinSource, Pkcs11Uri, find_module

__all__ = ["TokenKey", "client_tls_context", "token_key"]


@dataclass(frozen=True)
class TokenKey:
    """Where the identity key is, and the PIN that unlocks it (never shown)."""

    uri: Pkcs11Uri
    module: Path
    conf: Path
    token: str
    label: str
    pin: str

    def __repr__(self) -> str:  # never show the PIN
        return f"TokenKey(token={self.token!r}, label={self.label!r})"


def token_key(settings: DeviceSettings) -> TokenKey:
    """Resolve the identity key's module, configuration, labels and PIN from the settings.

    Raises:
        InvalidInput: The key URI or its PIN source is malformed.
        Config: The PIN file is missing, unsafe (group/other access) or empty.
    """
    uri = Pkcs11Uri.parse(settings.identity.key)
    pin = PinSource.parse(uri.pin_source or "", base_dir=settings.directory).read()
    return TokenKey(
        uri=uri,
        module=find_module(settings.identity.module or None),
        conf=settings.path(settings.identity.softhsm_conf),
        token=uri.token or "",
        label=uri.object or "",
        pin=pin,
    )


def client_tls_context(
    settings: DeviceSettings, *, client_cert: Path, key: TokenKey
) -> crt_io.ClientTlsContext:
    """An awscrt client TLS context presenting ``client_cert`` with the key in the token.

    Args:
        settings: The device's settings (for the trust bundle).
        client_cert: The IDevID or LDevID (PEM) whose key is ``key``.
        key: The identity key in the token.

    Returns:
        The context; it trusts only the device's bundle.
    """
    # SoftHSM2 reads SOFTHSM2_CONF when awscrt initialises the module (if the keystore has
    # initialised it already for this device, awscrt reuses that).
    os.environ["SOFTHSM2_CONF"] = str(key.conf)
    lib = crt_io.Pkcs11Lib(file=str(key.module))
    opts = crt_io.TlsContextOptions.create_client_with_mtls_pkcs11(
        pkcs11_lib=lib,
        user_pin=key.pin,
        token_label=key.token,
        private_key_label=key.label,
        cert_file_path=str(client_cert),
    )
    opts.override_default_trust_store_from_path(
        None, str(settings.path(settings.server.trust_bundle))
    )
    # awscrt (s2n) refuses min_tls_ver=TLSv1_3 on Linux; the PQ_DEFAULT policy negotiates
    # TLS 1.3, and the service and the broker accept nothing older anyway.
    opts.cipher_pref = crt_io.TlsCipherPref.PQ_DEFAULT
    return crt_io.ClientTlsContext(opts)
