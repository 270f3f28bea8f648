"""The simulated LwM2M device's secure storage: PSKs as secret-key objects in its SoftHSM2 token.

A constrained device keeps its pre-shared keys in secure storage it can read itself; here that is
the device's own token (label ``[lwm2m] psk_label`` for the factory credential, ``<label>-dm`` for
the one the bootstrap server wrote). Keys are never logged nor written anywhere else.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pkcs11
import pkcs11.exceptions as p11e
from pkcs11 import Attribute, KeyType, ObjectClass

from trustfleet.configfile.device import DeviceSettings
from trustfleet.errors import NotFound, Unavailable
from trustfleet.keystore import PinSource, Pkcs11Uri, find_module

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

    def _session(self) -> pkcs11.Session:
        os.environ["SOFTHSM2_CONF"] = str(self.conf)
        try:
            token = pkcs11.lib(str(self.module)).get_token(token_label=self.label)
            return token.open(user_pin=self.pin_source.read(), rw=True)
        except (p11e.PKCS11Error, RuntimeError) as exc:
            raise Unavailable(
                f"cannot open the device token '{self.label}'", code="lwm2m.device.token"
            ) from exc

    def read_psk(self, label: str) -> bytes:
        """The value of the secret-key object ``label``.

        Raises:
            NotFound: No such object.
            Unavailable: The token cannot be opened.
        """
        with self._session() as session:
            try:
                key = session.get_key(object_class=ObjectClass.SECRET_KEY, label=label)
                return bytes(key[Attribute.VALUE])
            except (p11e.NoSuchKey, p11e.MultipleObjectsReturned) as exc:
                raise NotFound(
                    f"no single pre-shared key '{label}' in the device token",
                    code="lwm2m.device.psk_missing",
                ) from exc
            except p11e.PKCS11Error as exc:
                raise Unavailable(f"cannot read '{label}'", code="lwm2m.device.token") from exc

    def store_psk(self, label: str, value: bytes) -> None:
        """Replace the secret-key object ``label`` with ``value`` (private to the token user)."""
        with self._session() as session:
            try:
                for old in session.get_objects(
                    {Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.LABEL: label}
                ):
                    old.destroy()
                session.create_object(
                    {
                        Attribute.CLASS: ObjectClass.SECRET_KEY,
                        Attribute.KEY_TYPE: KeyType.GENERIC_SECRET,
                        Attribute.TOKEN: True,
                        Attribute.PRIVATE: True,
                        Attribute.SENSITIVE: False,
                        Attribute.EXTRACTABLE: True,
                        Attribute.LABEL: label,
                        Attribute.VALUE: value,
                    }
                )
            except p11e.PKCS11Error as exc:
                raise Unavailable(f"cannot store '{label}'", code="lwm2m.device.token") from exc


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
