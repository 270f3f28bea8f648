"""Software-key client identities for tests that act as the fleet service on the broker.

The service's real identity key lives in the service token; tests that drive the broker with
mosquitto clients need a key file, so they get a second service certificate issued the same way
(`pki.issue_service_certificate`, device CA, in a child process: one SoftHSM2 configuration per
process, see ADR 0002).
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from pathlib import Path

from support.scripts import run_script

__all__ = [
    "SERVICE_CN",
    "Identity",
    "issue_software_service_identity",
    "mqtt_client_id",
    "mqtt_client_id_for_cert",
    "service_identity",
]

SERVICE_CN = "svc.ingest"
"""The service identity of a test home (the default of ``[broker] service_identity``)."""


_DEVICE_ID = re.compile(r"[a-z0-9-]{8,64}")  # trustfleet.pki.DEVICE_ID_PATTERN


def mqtt_client_id(cn: str) -> str:
    """The MQTT client id the broker accepts for a certificate CN (docs/mqtt.md).

    A device's client id is its id; a service's is ``<CN>-<suffix>`` (a new suffix per call,
    so several connections of one service never take each other over).
    """
    return cn if _DEVICE_ID.fullmatch(cn) else f"{cn}-{secrets.token_hex(4)}"


def mqtt_client_id_for_cert(cert: Path) -> str:
    """:func:`mqtt_client_id` for the CN of the (first) certificate in a PEM file."""
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    leaf = x509.load_pem_x509_certificate(cert.read_bytes())
    cn = leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    return mqtt_client_id(str(cn))


@dataclass(frozen=True)
class Identity:
    """A client certificate and its software key (and the name the broker sees)."""

    name: str
    cert: Path
    key: Path


_SCRIPT = r"""
import json, sys
from datetime import UTC, datetime
from dataclasses import dataclass
from pathlib import Path
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from trustfleet.pki import issue_service_certificate
from trustfleet.services.runtime import Runtime
from trustfleet.settings import load_server_settings

a = json.loads(sys.argv[1])
rt = Runtime.open(load_server_settings(Path(a["home"])))
key = ec.generate_private_key(ec.SECP256R1())
cert = issue_service_certificate(
    issuer=rt.issuer("device"), public_key=key.public_key(), identity=a["cn"],
    organization=rt.settings.pki.organization, now=datetime.now(UTC),
)
Path(a["key"]).write_bytes(key.private_bytes(serialization.Encoding.PEM,
    serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
Path(a["cert"]).write_bytes(cert.public_bytes(serialization.Encoding.PEM))
rt.close()
"""


def issue_software_service_identity(home: Path, *, cn: str, cert: Path, key: Path) -> None:
    """Write ``cert`` and ``key`` (mode 0600): a service client certificate named ``cn``."""
    args = {"home": str(home), "cn": cn, "cert": str(cert), "key": str(key)}
    run_script(_SCRIPT, args)
    key.chmod(0o600)


def service_identity(home: Path, work: Path) -> Identity:
    """A software-key service identity of ``home``, its files in ``work``."""
    cert, key = work / "service.pem", work / "service.key"
    issue_software_service_identity(home, cn=SERVICE_CN, cert=cert, key=key)
    return Identity(SERVICE_CN, cert, key)
