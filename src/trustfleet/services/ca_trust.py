"""Which device CAs the broker trusts, with their CRLs, from the CA registry (``tx.cas``).

The broker side of ``server run`` polls :func:`trust_version` every ``[broker]
revocation_poll_s`` (one small read) and, when it changed (a CA made, activated, retired, or a
CRL reissued), installs :func:`device_trust` (broker/_trust.py; docs/lifecycle.md).
"""

from __future__ import annotations

from datetime import datetime

from trustfleet.broker import BrokerCa
from trustfleet.services.revocation import current_crl
from trustfleet.services.runtime import Runtime

__all__ = ["TrustVersion", "device_trust", "trust_version"]

TrustVersion = tuple[tuple[str, str, int | None], ...]
"""``(name, state, CRL number)`` of every device CA: equal versions, equal trust files."""


def trust_version(rt: Runtime) -> TrustVersion:
    """What decides the broker's trust files now.

    Raises:
        Unavailable: The store cannot be reached.
    """
    with rt.uow.begin(read_only=True) as tx:
        return tuple(
            (ca.name, ca.state, tx.crls.number(ca.name)) for ca in tx.cas.list(kind="device")
        )


def device_trust(rt: Runtime, *, now: datetime) -> list[BrokerCa]:
    """Every device CA with its current CRL (a retired one: its final CRL, not trusted).

    Raises:
        NotFound: A registered CA has no certificate in the home.
        Unavailable: The store cannot be reached.
    """
    with rt.uow.begin(read_only=True) as tx:
        cas = tx.cas.list(kind="device")
    return [
        BrokerCa(
            cert=rt.ca_certificate(ca.name),
            crl_der=current_crl(rt, ca.name, now=now),
            trusted=ca.state != "retired",
        )
        for ca in cas
    ]
