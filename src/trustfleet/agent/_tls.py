"""The device's TLS client context: mutual TLS 1.3 with the identity key inside its token.

Shared by the EST client and the MQTT link. awscrt (s2n) performs the handshake and asks the
PKCS#11 module to sign, so the key never leaves the token.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from awscrt import io as crt_io

from trustfleet.agent.platform.devfolder import follow_folder
from trustfleet.agent.settings import DeviceSettings
from trustfleet.keystore import PinSource, Pkcs11Uri, find_module, token_tls_context

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
        Config: The PIN file is missing, unsafe (group/other access) or empty, or the
            folder's SoftHSM2 configuration cannot follow a moved folder.
    """
    uri = Pkcs11Uri.parse(settings.identity.key)
    pin = PinSource.parse(uri.pin_source or "", base_dir=settings.directory).read()
    conf = settings.path(settings.identity.softhsm_conf)
    follow_folder(conf, settings.directory)  # a moved or copied folder uses its own token
    return TokenKey(
        uri=uri,
        module=find_module(settings.identity.module or None),
        conf=conf,
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
    return token_tls_context(
        module=key.module,
        conf=key.conf,
        token=key.token,
        key_label=key.label,
        pin=key.pin,
        cert=client_cert,
        trust=settings.path(settings.server.trust_bundle),
    )
