"""Ceremonies: what needs the offline root (the root CA key, the TUF root keys).

The offline folder (``server init --offline DIR``) stands for removable media the custodians
keep; each of its tokens has its own PIN, which only its custodian knows. A ceremony is given
the folder and the PINs of the custodians present (:class:`CeremonyKeys`), checks the
threshold (:func:`present_tokens`), signs, and records who took part as the security event
``ceremony.<kind>`` in the same transaction as what it changed (:func:`record_ceremony`).

Nothing online needs the offline folder: ``server run`` serves the root CRL as stored
(docs/lifecycle.md, "Offline root and ceremonies"; ADR 0019).
"""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes

from trustfleet.audit.context import current_operator
from trustfleet.errors import InvalidInput
from trustfleet.keystore import PinSource, Pkcs11Uri, open_key
from trustfleet.pki import (
    DEVICE_CA,
    MANUFACTURING_CA,
    IssuerContext,
    RevokedEntry,
    build_crl,
    issue_ca,
)
from trustfleet.services._offline import ROOT_CA_TOKEN, OfflineFolder, module_of
from trustfleet.services.revocation import crl_entries
from trustfleet.services.runtime import Runtime
from trustfleet.settings import ServerSettings
from trustfleet.store import Transaction

__all__ = [
    "ROOT_CA_TOKEN",
    "CeremonyKeys",
    "find_offline_folder",
    "issue_intermediate",
    "parse_pin_files",
    "present_tokens",
    "read_pin_file",
    "record_ceremony",
    "regenerate_root_crl",
    "root_ca",
    "root_crl_der",
    "sign_root_crl",
]

_KIND = re.compile(r"[a-z][a-z0-9_]{0,30}")
_TOKEN_LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,31}")  # a PKCS#11 label is 32 bytes
_CA_NAMES = {"manufacturing": "Manufacturing CA", "device": "Device CA"}
_PROFILES = {"manufacturing": MANUFACTURING_CA, "device": DEVICE_CA}


@dataclass(frozen=True)
class CeremonyKeys:
    """What the custodians brought: the offline folder and their PINs.

    Attributes:
        offline: The offline folder.
        pins: Token label → PIN, for the custodians present (never shown by ``repr``).
    """

    offline: Path
    pins: Mapping[str, str] = field(repr=False)

    @property
    def tokens(self) -> list[str]:
        """The labels of the tokens whose PIN was given, sorted."""
        return sorted(self.pins)

    def pin(self, token: str) -> str:
        """The PIN of ``token``.

        Raises:
            InvalidInput: It was not given (code ``ceremony.pin.missing``).
        """
        pin = self.pins.get(token)
        if pin is None:
            raise InvalidInput(
                f"this ceremony needs the PIN of token '{token}'",
                hint=f"its custodian enters it, or pass --pin-file {token}=PATH",
                code="ceremony.pin.missing",
            )
        return pin


def parse_pin_files(specs: Sequence[str]) -> dict[str, Path]:
    """Parse ``--pin-file TOKEN=PATH`` options (pure).

    Raises:
        InvalidInput: A spec is not ``TOKEN=PATH``, names a malformed token label, or names a
            token twice (code ``ceremony.pin_file``).
    """
    files: dict[str, Path] = {}
    for spec in specs:
        token, sep, path = spec.partition("=")
        if not sep or not path or not _TOKEN_LABEL.fullmatch(token):
            raise InvalidInput(
                f"--pin-file {spec[:80]!r} is not TOKEN=PATH",
                hint="e.g. --pin-file tf-tuf-root-1=/media/custodian1/pin",
                code="ceremony.pin_file",
            )
        if token in files:
            raise InvalidInput(f"--pin-file names token '{token}' twice", code="ceremony.pin_file")
        files[token] = Path(path).expanduser()
    return files


def read_pin_file(path: Path) -> str:
    """A custodian's PIN from a file: regular, mode 0600 (or stricter), at most 4 KiB,
    one line.

    Raises:
        Config: Missing, open to group or others, too large, empty or not UTF-8.
    """
    return PinSource(kind="file", location=str(path.expanduser().absolute())).read()


def find_offline_folder(path: Path) -> Path:
    """The offline folder at ``path``, checked before any custodian types a PIN.

    Raises:
        Unavailable: It is not there (code ``ceremony.offline.missing``).
    """
    return OfflineFolder.open(path).path


def present_tokens(keys: CeremonyKeys, *, tokens: Sequence[str], threshold: int) -> list[str]:
    """The tokens of ``tokens`` whose custodian is present, if at least ``threshold`` are.

    Pure: it only checks which PINs were given (a wrong PIN fails at login).

    Raises:
        InvalidInput: Fewer than ``threshold``; the message names the missing tokens
            (code ``ceremony.threshold``).
    """
    present = [token for token in tokens if token in keys.pins]
    if len(present) < threshold:
        missing = [token for token in tokens if token not in keys.pins]
        raise InvalidInput(
            f"{len(present)} of {len(tokens)} custodian PINs given, {threshold} needed; "
            f"missing: {', '.join(missing)}",
            hint="each missing custodian enters a PIN, or pass --pin-file TOKEN=PATH",
            code="ceremony.threshold",
        )
    return present


@contextmanager
def root_ca(settings: ServerSettings, keys: CeremonyKeys) -> Iterator[IssuerContext]:
    """The root CA's signing context, its key in the offline token ``tf-root``.

    The process must hold no session on a home token meanwhile (``rt.release_keys()``).

    Raises:
        Unavailable: The offline folder is missing (code ``ceremony.offline.missing``).
        InvalidInput: The PIN of ``tf-root`` was not given.
        PermissionDenied: The PIN is wrong (code ``keystore.login``).
        NotFound: The folder has no such token or key.
    """
    folder = OfflineFolder.open(keys.offline)
    uri = Pkcs11Uri.parse(settings.ca["root"].key)
    token = uri.token or ROOT_CA_TOKEN
    target = Pkcs11Uri(token=token, object=uri.object, type="private")
    key = open_key(target, pin=keys.pin(token), module=module_of(settings), conf=folder.conf)
    try:
        cert_path = settings.path(settings.ca["root"].cert)
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        yield IssuerContext(cert=cert, key=key, crl_url=settings.crl_url("root"), ocsp_url=None)
    finally:
        key.close()


def issue_intermediate(
    settings: ServerSettings,
    keys: CeremonyKeys,
    *,
    kind: Literal["device", "manufacturing"],
    name: str,
    public_key: CertificatePublicKeyTypes,
    now: datetime,
) -> x509.Certificate:
    """A new manufacturing or device CA certificate signed by the root (a ceremony).

    Records nothing: the caller (rollover) registers the CA and calls :func:`record_ceremony`.

    Args:
        settings: The home's settings.
        keys: The offline folder and the PIN of ``tf-root``.
        kind: ``device`` or ``manufacturing``.
        name: The CA's name (``device-2``…), in its common name after the first generation.
        public_key: The new CA's public key (its private key is in a home token).
        now: The signing time; valid ``[lifecycle] intermediate_validity_days``.
    """
    org = settings.pki.organization
    suffix = "" if name == kind else f" {name.removeprefix(kind + '-')}"
    with root_ca(settings, keys) as root:
        return issue_ca(
            issuer=root,
            public_key=public_key,
            common_name=f"{org} {_CA_NAMES[kind]}{suffix}",
            organization=org,
            profile=_PROFILES[kind],
            now=now,
            validity=timedelta(days=settings.lifecycle.intermediate_validity_days),
        )


def root_crl_der(
    root: IssuerContext, *, revoked: Sequence[RevokedEntry], number: int, now: datetime,
    validity_days: int,
) -> bytes:  # fmt: skip
    """A root CRL signed by ``root``, DER."""
    crl = build_crl(
        issuer=root, revoked=revoked, crl_number=number, now=now,
        next_update=now + timedelta(days=validity_days),
    )  # fmt: skip
    return crl.public_bytes(serialization.Encoding.DER)


def regenerate_root_crl(
    tx: Transaction, settings: ServerSettings, keys: CeremonyKeys, *, now: datetime
) -> bytes:
    """Sign the root's next CRL and store it, inside the caller's transaction.

    Lists every certificate the root issued that is revoked (intermediate CAs); valid
    ``[lifecycle] root_crl_validity_days``. Writes no event (see :func:`sign_root_crl`).
    """
    validity_days = settings.lifecycle.root_crl_validity_days
    revoked = crl_entries(tx, "root", lifetime=timedelta(days=validity_days), now=now)
    number = tx.crls.next_number("root")
    with root_ca(settings, keys) as root:
        der = root_crl_der(
            root, revoked=revoked, number=number, now=now, validity_days=validity_days
        )
    tx.crls.put(
        issuer="root", crl_number=number, this_update=now,
        next_update=now + timedelta(days=validity_days), der=der,
    )  # fmt: skip
    return der


def sign_root_crl(rt: Runtime, keys: CeremonyKeys, *, now: datetime) -> bytes:
    """Re-sign the root CRL in a ceremony and store it (``trustfleet ca crl-root``).

    Writes the event ``ceremony.crl_root`` in the same transaction.

    Returns:
        The new CRL, DER.
    """
    rt.release_keys()  # the offline configuration becomes active in this process
    with rt.uow.begin() as tx:
        der = regenerate_root_crl(tx, rt.settings, keys, now=now)
        crl = x509.load_der_x509_crl(der)
        record_ceremony(
            tx, kind="crl_root", custodians=[ROOT_CA_TOKEN], now=now,
            details={
                "crl_number": _crl_number(crl),
                "next_update": crl.next_update_utc,
                "revoked": [format(entry.serial_number, "x") for entry in crl],
            },
        )  # fmt: skip
    return der


def _crl_number(crl: x509.CertificateRevocationList) -> int:
    return crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number


def record_ceremony(
    tx: Transaction,
    *,
    kind: str,
    custodians: Sequence[str],
    details: Mapping[str, Any],
    now: datetime,
) -> None:
    """Write the security event ``ceremony.<kind>`` in the caller's transaction.

    Args:
        tx: The transaction of what the ceremony changed.
        kind: ``crl_root``, ``rotate_root``, ``rotate_online``, ``intermediate``…
        custodians: The labels of the tokens whose PINs took part.
        details: What was signed (serials, versions, key ids); datetimes become ISO text.
        now: When.
    """
    if not _KIND.fullmatch(kind):
        raise InvalidInput(f"'{kind}' is not a ceremony kind", code="ceremony.kind")
    operator = current_operator()
    tx.events.append(
        type=f"ceremony.{kind}",
        actor=operator,
        subject=f"ceremony:{kind}",
        details={
            "custodians": sorted(custodians),
            "operator": operator,
            "host": socket.gethostname(),
            **{k: v.isoformat() if isinstance(v, datetime) else v for k, v in details.items()},
        },
        now=now,
    )
