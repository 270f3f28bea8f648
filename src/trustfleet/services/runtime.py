"""One process's handles on a server home: the store and the CA keys in their tokens."""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography import x509
from sqlalchemy import Engine

from trustfleet.errors import NotFound, Unavailable
from trustfleet.keystore import PinSource, Pkcs11Uri, find_module, open_ed25519_key, open_key
from trustfleet.pki import IssuerContext
from trustfleet.settings import CaSettings, ServerSettings, load_server_settings
from trustfleet.store import UnitOfWork, create_engine

if TYPE_CHECKING:
    from trustfleet.errors import NotFound
from trustfleet.keystore import Pkcs11Ed25519Key

__all__ = ["Runtime", "ca_kind"]

_OCSP_KINDS = ("device", "manufacturing")
_CA_NAME = re.compile(r"(root|manufacturing|device)(-[1-9][0-9]{0,5})?")


def ca_kind(name: str) -> str:
    """The kind of a CA from its name: ``device-2`` is a device CA (docs/lifecycle.md)."""
    return name.split("-", 1)[0]


@dataclass
class Runtime:
    """The store and the CAs of one server home, opened once per process.

    CA keys are opened on first use, so a process that never signs with a CA never logs in to
    its token. The root CA is offline: only a ceremony signs with it.
    """

    settings: ServerSettings
    engine: Engine
    uow: UnitOfWork
    _issuers: dict[str, IssuerContext] = field(default_factory=dict)
    _audit_key: Pkcs11Ed25519Key | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def open(cls, settings: ServerSettings) -> Runtime:
        """Open the store of a home (keys are opened lazily)."""
        engine = create_engine(settings.store_url())
        return cls(settings=settings, engine=engine, uow=UnitOfWork(engine))

    @property
    def module(self) -> Path:
        """The PKCS#11 module of this home."""
        return find_module(self.settings.keystore.module or None)

    @property
    def softhsm_conf(self) -> Path | None:
        """The SoftHSM2 configuration of this home, if it has one."""
        conf = self.settings.keystore.softhsm_conf
        return self.settings.path(conf) if conf else None

    def ca_certificate(self, name: str) -> x509.Certificate:
        """The certificate of a CA, from the home's public folder.

        Raises:
            NotFound: No CA of that name in trustfleet.toml, even after reading it again.
        """
        path = self.settings.path(self._ca_settings(name).cert)
        return x509.load_pem_x509_certificate(path.read_bytes())

    def _ca_settings(self, name: str) -> CaSettings:
        """A CA's section, reading trustfleet.toml again for a CA made since this process
        started (a rollover in another process)."""
        if name not in self.settings.ca:
            if not _CA_NAME.fullmatch(name):  # no file read for a name from a bad request
                raise NotFound(f"no CA named '{name}'", hint="see 'trustfleet ca status'")
            fresh = load_server_settings(self.settings.home)
            if name not in fresh.ca:
                raise NotFound(f"no CA named '{name}'", hint="see 'trustfleet ca status'")
            self.settings = fresh
        return self.settings.ca[name]

    def _key_uri(self, text: str) -> tuple[Pkcs11Uri, str]:
        """A key's RFC 7512 URI from the settings, and the PIN its pin-source names."""
        uri = Pkcs11Uri.parse(text)
        return uri, PinSource.parse(uri.pin_source or "", base_dir=self.settings.home).read()

    def is_offline(self, name: str) -> bool:
        """Whether CA ``name`` is offline: its key URI names no ``pin-source`` (its PIN is with
        custodians; it signs only in a ceremony, ``trustfleet.services.ceremony``)."""
        return Pkcs11Uri.parse(self._ca_settings(name).key).pin_source is None

    def issuer(self, name: str) -> IssuerContext:
        """The signing context of a CA; its key stays in its token.

        Raises:
            Unavailable: The CA is offline (code ``ca.offline``).
        """
        if self.is_offline(name):
            raise Unavailable(
                f"the {name} CA is offline; run a ceremony",
                hint="its key signs only in a ceremony with the offline folder "
                "(see 'trustfleet ca --help')",
                code="ca.offline",
            )
        with self._lock:
            if name not in self._issuers:
                uri, pin = self._key_uri(self._ca_settings(name).key)
                key = open_key(uri, pin=pin, module=self.module, conf=self.softhsm_conf)
                self._issuers[name] = IssuerContext(
                    cert=self.ca_certificate(name),
                    key=key,
                    crl_url=self.settings.crl_url(name),
                    # The CAs the OCSP responder answers for (revocation.OCSP_ISSUERS).
                    ocsp_url=self.settings.ocsp_url() if ca_kind(name) in _OCSP_KINDS else None,
                )
            return self._issuers[name]

    def audit_key(self) -> Pkcs11Ed25519Key:
        """The audit log's checkpoint key (Ed25519); it stays in its token."""
        with self._lock:
            if self._audit_key is None:
                uri, pin = self._key_uri(self.settings.audit.key)
                self._audit_key = open_ed25519_key(
                    uri, pin=pin, module=self.module, conf=self.softhsm_conf
                )
            return self._audit_key

    def release_keys(self) -> None:
        """Close the CA key sessions; keys are opened again on next use.

        Needed before this process touches another SoftHSM2 configuration (device tokens),
        because one process has one active configuration (ADR 0002).
        """
        with self._lock:
            issuers, self._issuers = self._issuers, {}
            audit_key, self._audit_key = self._audit_key, None
        if audit_key is not None:
            audit_key.close()
        for ctx in issuers.values():
            close = getattr(ctx.key, "close", None)
            if close is not None:
                close()

    def close(self) -> None:
        """Close the key sessions and release the store's connections."""
        self.release_keys()
        self.engine.dispose()
