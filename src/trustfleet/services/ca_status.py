"""What ``trustfleet ca status`` shows: every CA of the home, its state, certificate and CRL.

Read-only; needs no token and no offline folder.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from cryptography import x509

from trustfleet.services.runtime import Runtime

__all__ = ["CaStatus", "ca_status"]


@dataclass(frozen=True, slots=True, kw_only=True)
class CaStatus:
    """One CA as ``ca status`` shows it.

    Attributes:
        name: Its name (``root``, ``device``, ``device-2``…).
        kind: ``root``, ``manufacturing`` or ``device``.
        state: ``active``, ``standby``, ``retiring`` or ``retired``.
        offline: Whether its key signs only in a ceremony.
        subject: Its certificate's subject (None: no certificate in the home's config).
        not_after: Its certificate's expiry.
        crl_number: Its current CRL's number (None: none yet).
        crl_next_update: Its current CRL's nextUpdate.
    """

    name: str
    kind: str
    state: str
    offline: bool
    subject: str | None
    not_after: datetime | None
    crl_number: int | None
    crl_next_update: datetime | None

    def to_json(self) -> dict[str, Any]:
        """JSON-ready (times as ISO 8601)."""
        return {
            key: value.isoformat() if isinstance(value, datetime) else value
            for key, value in asdict(self).items()
        }


def _certificate(rt: Runtime, name: str) -> x509.Certificate | None:
    if name not in rt.settings.ca:
        return None
    try:
        return rt.ca_certificate(name)
    except (OSError, ValueError):
        return None


def ca_status(rt: Runtime) -> list[CaStatus]:
    """Every CA of ``tx.cas`` (oldest first) with its certificate and CRL."""
    with rt.uow.begin(read_only=True) as tx:
        rows = [(ca, tx.crls.get(ca.name)) for ca in tx.cas.list()]
    result = []
    for ca, crl in rows:
        cert = _certificate(rt, ca.name)
        result.append(
            CaStatus(
                name=ca.name,
                kind=ca.kind,
                state=ca.state,
                offline=ca.name in rt.settings.ca and rt.is_offline(ca.name),
                subject=cert.subject.rfc4514_string() if cert else None,
                not_after=cert.not_valid_after_utc if cert else None,
                crl_number=crl.crl_number if crl else None,
                crl_next_update=crl.next_update if crl else None,
            )
        )
    return result
