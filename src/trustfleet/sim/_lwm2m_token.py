"""The simulated LwM2M device's secure storage: PSKs as secret-key objects in its SoftHSM2 token.

A constrained device keeps its pre-shared keys in secure storage it can read itself; here that is
the device's own token (label ``[lwm2m] psk_label`` for the factory credential, ``<label>-dm`` for
the one the bootstrap server wrote), through the keystore's readable secrets
(``TokenSession.read_secret``/``replace_secret``). Keys are never logged nor written anywhere
else.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from trustfleet.configfile.device import DeviceSettings
from trustfleet.errors import NotFound
from trustfleet.keystore import PinSource, Pkcs11Uri, TokenSession, find_module, open_token

__all__ = ["DeviceToken", "device_token"]

DM_SUFFIX = "-dm"


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class DeviceToken:
    """Where the device's token is and how to log in (the PIN is read on demand)."""

    module: Path
    conf: Path
    label: str
    key_uri: str
    """The identity key's URI with an absolute ``pin-source`` (for the DTLS client's engine)."""
    pin_source: PinSource

    def _session(self) -> TokenSession:
        return open_token(
            module=self.module, label=self.label, pin=self.pin_source.read(), conf=self.conf
        )

    def read_psk(self, label: str) -> bytes:
        """The value of the secret-key object ``label``.

        Raises:
            NotFound: No such object.
            Unavailable: The token cannot be opened.
        """
        with self._session() as session:
            return session.read_secret(label)

    def store_psk(self, label: str, value: bytes) -> None:
        """Replace the secret-key object ``label`` with ``value`` (private to the token user)."""
        with self._session() as session:
            session.replace_secret(label, value)


def device_token(settings: DeviceSettings) -> DeviceToken:
    """The device token described by ``[identity]`` of device.toml."""
    identity = settings.identity
    uri = Pkcs11Uri.parse(identity.key)
    if uri.token is None or uri.pin_source is None:
        raise NotFound(
            "the identity key URI names no token or no pin-source", code="lwm2m.device.token"
        )
    pin_source = PinSource.parse(uri.pin_source, base_dir=settings.directory)
    absolute = dataclasses.replace(uri, pin_source=f"{pin_source.kind}:{pin_source.location}")
    return DeviceToken(
        module=find_module(identity.module or None),
        conf=settings.path(identity.softhsm_conf),
        label=uri.token,
        key_uri=str(absolute),
        pin_source=pin_source,
    )
