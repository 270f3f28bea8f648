"""A server home opened in-process, and devices registered in it, for the service tests.

:func:`opened_home` makes a home with ``init_server_home`` and opens its :class:`Runtime`;
:func:`csr` and :func:`new_idevid` make a device's CSR and its IDevID through the factory's
own service function (``sign_csr``), as the factory line does.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from trustfleet.services.factory import sign_csr
from trustfleet.services.home import HomeOptions, init_server_home
from trustfleet.services.runtime import Runtime
from trustfleet.settings import load_server_settings

__all__ = ["csr", "home_runtime", "new_idevid", "opened_home"]


@contextmanager
def opened_home(home: Path, *, organization: str, now: datetime) -> Iterator[Runtime]:
    """A new server home in ``home`` (made at ``now``), opened; closed when the block ends."""
    options = HomeOptions(
        organization=organization, pins_out=home.parent / f"{home.name}-offline-pins"
    )
    init_server_home(home, options=options, now=now)
    runtime = Runtime.open(load_server_settings(home))
    try:
        yield runtime
    finally:
        runtime.close()


def home_runtime(
    factory: pytest.TempPathFactory, name: str, *, organization: str, now: datetime
) -> Iterator[Runtime]:
    """The body of a module's ``rt`` fixture: a new home under ``factory``'s folder ``name``,
    opened for the module (``yield from home_runtime(...)``)."""
    with opened_home(factory.mktemp(name) / "home", organization=organization, now=now) as rt:
        yield rt


def csr(
    key: ec.EllipticCurvePrivateKey,
    common_name: str,
    *,
    encoding: serialization.Encoding = serialization.Encoding.PEM,
) -> bytes:
    """A CSR for ``common_name`` signed by ``key`` (PEM unless told)."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    request = x509.CertificateSigningRequestBuilder().subject_name(name).sign(key, hashes.SHA256())
    return request.public_bytes(encoding)


def new_idevid(
    rt: Runtime, device_id: str, *, model: str, now: datetime
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A new P-256 key and the IDevID the factory signs for it (``device_id`` as its CN)."""
    key = ec.generate_private_key(ec.SECP256R1())
    made = sign_csr(rt, csr_bytes=csr(key, device_id), model=model, now=now)
    return key, made.certificate
