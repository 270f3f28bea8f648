"""The expiry watch: gather what expires in a home, judge it, raise notices once.

Gathered (:func:`collect_expiries`): every trusted CA certificate (``tx.cas.trusted``; the
file ``[ca.<name>] cert``, else ``public/<name>-ca.pem``), each of those CAs as OCSP signer
(each CA signs its own OCSP answers, RFC 6960 §4.2.2.2, so its certificate bounds them), each
CA's current CRL ``nextUpdate`` (``tx.crls``), the TLS server certificates
(``tls/api-chain.pem``, ``tls/broker-chain.pem``) and the service's MQTT certificate, the TUF
root, targets, snapshot and timestamp ``expires``, and how many valid device certificates
(LDevIDs) are inside their warning window (as one count). Judged by
:func:`~trustfleet.services.expiry_rules.lifecycle_expiries`.

:func:`watch_expiries` (``server run``'s parent, every ``[lifecycle] expiry_check_s``) writes
a ``lifecycle.expiry`` security event once per subject and level (``tx.expiry_notices``) and
queues a notice to every configured monitoring receiver. The outbox is delivered by
``monitor#0`` (when ``[monitoring] enabled``). Alerts belong to a device, so no alert is
raised: the notice has the alert notice's shape with ``alert_id`` 0 and ``device_id``
``server``.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Final

from cryptography import x509

from trustfleet.errors import TrustFleetError
from trustfleet.monitoring.notify_format import AlertNotice, webhook_body
from trustfleet.services._alert_actions import receiver_channels
from trustfleet.services._ota_keys import repo_files
from trustfleet.services._ota_state import expiry_of, load_state
from trustfleet.services.expiry_rules import (
    ExpiryItem,
    ExpirySubject,
    lifecycle_expiries,
    notices_due,
    worst_level,
)
from trustfleet.services.runtime import Runtime
from trustfleet.settings import ServerSettings
from trustfleet.store import Transaction

__all__ = ["collect_expiries", "watch_expiries", "worst_level"]

logger = logging.getLogger(__name__)

_SEVERITY: Final = {"warning": "medium", "critical": "high", "expired": "critical"}
_MAX_CERT_BYTES: Final = 64 * 1024
_TUF_ROLES: Final = ("root", "targets", "snapshot", "timestamp")


def _cert(settings: ServerSettings, relative: str) -> x509.Certificate | None:
    path = settings.path(relative)
    try:
        data = path.read_bytes()[:_MAX_CERT_BYTES]
        return x509.load_pem_x509_certificate(data)
    except (OSError, ValueError) as exc:
        logger.warning("expiry watch: cannot read %s: %s", path, exc)
        return None


def _ca_cert_path(settings: ServerSettings, name: str) -> str:
    return settings.ca[name].cert if name in settings.ca else f"public/{name}-ca.pem"


def _ca_names(tx: Transaction, settings: ServerSettings) -> list[str]:
    names = [ca.name for kind in ("root", "manufacturing", "device") for ca in tx.cas.trusted(kind)]
    return names or list(settings.ca)


def _ca_subjects(tx: Transaction, settings: ServerSettings) -> Iterator[ExpirySubject]:
    for name in _ca_names(tx, settings):
        cert = _cert(settings, _ca_cert_path(settings, name))
        if cert is not None:
            start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
            yield ExpirySubject(f"cert:{name}", "cert", end, start)
            if name != "root":  # the root signs no OCSP answers
                yield ExpirySubject(f"ocsp:{name}", "ocsp-signing", end, start)
        crl = tx.crls.get(name)
        if crl is not None:
            yield ExpirySubject(f"crl:{name}", "crl", crl.next_update, crl.this_update)


def _tls_subjects(settings: ServerSettings) -> Iterator[ExpirySubject]:
    for name, relative in (
        ("api", settings.api.tls_cert),
        ("broker", settings.broker.tls_cert),
        ("svc-ingest", settings.broker.service_cert),
    ):
        cert = _cert(settings, relative)  # a chain: the server's certificate comes first
        if cert is not None:
            end, start = cert.not_valid_after_utc, cert.not_valid_before_utc
            yield ExpirySubject(f"tls:{name}", "tls", end, start)


def _tuf_subjects(settings: ServerSettings) -> Iterator[ExpirySubject]:
    files = repo_files(settings)
    if not files.exists():
        return
    try:
        state = load_state(files)
    except (TrustFleetError, ValueError) as exc:
        logger.warning("expiry watch: cannot read the TUF metadata: %s", exc)
        return
    lifetimes = expiry_of(settings.ota)
    for role in _TUF_ROLES:
        expires = getattr(state, role).signed.expires
        yield ExpirySubject(f"tuf:{role}", "tuf", expires, expires - getattr(lifetimes, role))


def _device_subject(
    tx: Transaction, settings: ServerSettings, *, now: datetime
) -> ExpirySubject | None:
    """The valid LDevIDs inside their window, as one count (the soonest ``not_after``)."""
    lifetime = timedelta(days=settings.pki.ldevid_validity_days)
    window = min(timedelta(days=settings.lifecycle.expiry_warn_days), lifetime / 5)
    count, soonest = tx.certificates.expiring(kind="ldevid", before=now + window)
    if not count or soonest is None:
        return None
    return ExpirySubject("devices:ldevid", "cert", soonest, soonest - lifetime, count=count)


def collect_expiries(rt: Runtime, *, now: datetime) -> list[ExpiryItem]:
    """Everything of the home that expires, with its level at ``now``, most urgent first."""
    settings = rt.settings
    with rt.uow.begin(read_only=True) as tx:
        subjects = [*_ca_subjects(tx, settings)]
        device = _device_subject(tx, settings, now=now)
    subjects += [*_tls_subjects(settings), *_tuf_subjects(settings)]
    if device is not None:
        subjects.append(device)
    warn = timedelta(days=settings.lifecycle.expiry_warn_days)
    return lifecycle_expiries(subjects, now=now, warn=warn)


def watch_expiries(rt: Runtime, *, now: datetime) -> list[ExpiryItem]:
    """Raise what is newly due: an event per subject and level, and notices; one transaction.

    Returns:
        The items a notice was raised for.
    """
    items = collect_expiries(rt, now=now)
    with rt.uow.begin() as tx:
        raised = {}
        for item in items:
            notice = tx.expiry_notices.get(item.subject) if item.level != "ok" else None
            if notice is not None:
                raised[item.subject] = (notice.not_after, str(notice.level))
        due = notices_due(items, raised)
        for item in due:
            tx.expiry_notices.put(
                subject=item.subject, not_after=item.not_after, level=item.level, now=now
            )
            tx.events.append(
                type="lifecycle.expiry", actor="system", subject=item.subject,
                details={**item.document(), "left": item.left_text()}, now=now,
            )  # fmt: skip
            _queue(tx, rt.settings, item, now=now)
    for item in due:
        logger.warning("%s (%s) %s: %s left", item.subject, item.kind, item.level, item.left_text())
    return due


def _queue(tx: Transaction, settings: ServerSettings, item: ExpiryItem, *, now: datetime) -> None:
    for name, channel in receiver_channels(settings.monitoring).items():
        notice = AlertNotice(
            event_id=secrets.token_hex(16), alert_id=0, device_id="server",
            kind="lifecycle.expiry", severity=_SEVERITY[item.level],  # type: ignore[arg-type]
            state="open",
            summary=f"{item.subject} ({item.kind}) {item.level}: {item.left_text()} left",
            evidence=item.document(), first_seen=now, last_seen=now, created_at=now,
        )  # fmt: skip
        payload = webhook_body(notice).decode()
        tx.notifications.add(alert_id=None, channel=channel, target=name, payload=payload, now=now)
