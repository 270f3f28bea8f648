"""Delivering the notifications outbox: signed webhooks and RFC 5424 syslog (UDP or TCP).

:func:`deliver_due` sends what is due, one attempt each; a failed attempt is retried after
``notify_backoff_s`` * 2^(attempts-1), at most ``notify_backoff_max_s``, and after
``notify_max_attempts`` the notification is ``failed`` (``monitor.notify.failed`` event). A
receiver's failure never raises out of it. Socket and HTTP errors are translated here, once.
"""

from __future__ import annotations

import http.client
import logging
import socket
import ssl
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final
from urllib.parse import urlsplit

from trustfleet.errors import InvalidInput, TrustFleetError, Unavailable
from trustfleet.fileio import read_bounded
from trustfleet.monitoring.notify_format import (
    SIGNATURE_HEADER,
    notice_from_json,
    syslog_message,
    webhook_signature,
)
from trustfleet.services.runtime import Runtime
from trustfleet.settings.monitoring import MonitoringSettings, SyslogSettings, WebhookSettings
from trustfleet.store import NotificationRecord

__all__ = [
    "MAX_RESPONSE_BYTES",
    "MAX_SECRET_BYTES",
    "DeliveryReport",
    "deliver_due",
    "retry_delay_s",
]

logger = logging.getLogger(__name__)

MAX_SECRET_BYTES: Final = 4096
"""Largest webhook secret file read."""
MAX_RESPONSE_BYTES: Final = 4096
"""Most of a webhook response read (it is only drained)."""


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    """What one :func:`deliver_due` call did.

    Attributes:
        sent: Notifications a receiver accepted.
        retrying: Attempts that failed and will be retried.
        failed: Notifications given up (max attempts, or no such receiver any more).
    """

    sent: int = 0
    retrying: int = 0
    failed: int = 0


def retry_delay_s(settings: MonitoringSettings, attempts: int) -> float:
    """The wait after the ``attempts``-th failed attempt: backoff * 2^(attempts-1), capped."""
    exponent = min(max(attempts - 1, 0), 60)
    return float(min(settings.notify_backoff_s * 2**exponent, settings.notify_backoff_max_s))


def deliver_due(rt: Runtime, *, now: datetime, max_items: int = 100) -> DeliveryReport:
    """Send the notifications due at ``now`` (at most ``max_items``), one attempt each.

    Args:
        rt: The runtime.
        now: The current time (due times and signatures use it).
        max_items: Most notifications tried in this call.

    Returns:
        Counts of sent, retrying and failed notifications.
    """
    with rt.uow.begin(read_only=True) as tx:
        due = tx.notifications.due(now=now, limit=max_items)
    sent = retrying = failed = 0
    for item in due:
        try:
            _send(rt, item, now=now)
        except TrustFleetError as exc:
            gone = exc.code == "monitor.notify.receiver"  # removed from the settings: no retry
            if _record_failure(rt, item, error=exc.one_line(), give_up=gone, now=now):
                failed += 1
            else:
                retrying += 1
            continue
        with rt.uow.begin() as tx:
            tx.notifications.mark_sent(item.id, attempts=item.attempts + 1, now=now)
        sent += 1
    if due:
        logger.info("notifications: %d sent, %d retrying, %d failed", sent, retrying, failed)
    return DeliveryReport(sent=sent, retrying=retrying, failed=failed)


def _record_failure(
    rt: Runtime, item: NotificationRecord, *, error: str, give_up: bool, now: datetime
) -> bool:
    """Schedule a retry, or give up; whether it was given up."""
    settings = rt.settings.monitoring
    attempts = item.attempts + 1
    final = give_up or attempts >= settings.notify_max_attempts
    logger.warning("notification %d to %s: attempt %d failed: %s", item.id, item.target,
                   attempts, error)  # fmt: skip
    with rt.uow.begin() as tx:
        if not final:
            at = now + timedelta(seconds=retry_delay_s(settings, attempts))
            tx.notifications.retry_at(item.id, attempts=attempts, at=at, error=error)
            return False
        tx.notifications.mark_failed(item.id, attempts=attempts, error=error)
        subject = "system"
        if item.alert_id is not None:
            alert = tx.alerts.get(item.alert_id)
            subject = f"device:{alert.device_id}" if alert else subject
        tx.events.append(
            type="monitor.notify.failed", actor="monitor", subject=subject,
            details={"notification": item.id, "alert": item.alert_id, "channel": item.channel,
                     "receiver": item.target, "attempts": attempts, "error": error[:300]},
            now=now, outcome="refused",
        )  # fmt: skip
    return True


def _send(rt: Runtime, item: NotificationRecord, *, now: datetime) -> None:
    monitoring = rt.settings.monitoring
    if item.channel == "webhook":
        hook = next((w for w in monitoring.webhooks if w.name == item.target), None)
        if hook is not None:
            secret = _secret(rt, hook)
            _post_webhook(hook, item.payload.encode(), secret=secret, now=now)
            return
    else:
        receiver = next((s for s in monitoring.syslog if s.name == item.target), None)
        if receiver is not None:
            message = syslog_message(
                notice_from_json(item.payload.encode()), hostname=socket.gethostname(),
                app_name=receiver.app_name, now=now,
            )  # fmt: skip
            _send_syslog(receiver, message)
            return
    raise Unavailable(f"no receiver {item.target!r} is configured", code="monitor.notify.receiver")


def _secret(rt: Runtime, hook: WebhookSettings) -> bytes:
    path = rt.settings.path(hook.secret_file)
    try:
        data = read_bounded(path, max_bytes=MAX_SECRET_BYTES) or b""
        if path.stat().st_mode & 0o077:
            logger.warning("the secret of webhook %r is readable by others: chmod 600 %s",
                           hook.name, path)  # fmt: skip
    except OSError as exc:
        raise Unavailable(
            f"cannot read the secret of webhook {hook.name!r}: {exc.strerror}",
            code="monitor.notify.secret",
        ) from exc
    secret = data.strip()
    if not secret:
        raise InvalidInput(
            f"the secret of webhook {hook.name!r} is empty or over {MAX_SECRET_BYTES} bytes",
            code="monitor.notify.secret",
        )
    return secret


def _connection(hook: WebhookSettings) -> tuple[http.client.HTTPConnection, str]:
    url = urlsplit(hook.url)
    host, port = url.hostname or "", url.port
    path = (url.path or "/") + (f"?{url.query}" if url.query else "")
    if url.scheme != "https":
        return http.client.HTTPConnection(host, port, timeout=hook.timeout_s), path
    context = ssl.create_default_context(cafile=hook.ca or None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return http.client.HTTPSConnection(host, port, timeout=hook.timeout_s, context=context), path


def _post_webhook(hook: WebhookSettings, body: bytes, *, secret: bytes, now: datetime) -> None:
    """One POST; a 2xx answer is success. No redirects are followed."""
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "trustfleet-notify",
        SIGNATURE_HEADER: webhook_signature(secret, body, timestamp=int(now.timestamp())),
    }
    try:
        conn, path = _connection(hook)
        try:
            conn.request("POST", path, body=body, headers=headers)
            response = conn.getresponse()
            response.read(MAX_RESPONSE_BYTES)
            status = response.status
        finally:
            conn.close()
    except (OSError, ValueError, http.client.HTTPException) as exc:  # ssl.SSLError is an OSError
        raise Unavailable(
            f"webhook {hook.name!r}: {type(exc).__name__}: {exc}"[:300], code="monitor.notify.http"
        ) from exc
    if not 200 <= status < 300:
        raise Unavailable(f"webhook {hook.name!r} answered {status}", code="monitor.notify.status")


def _send_syslog(receiver: SyslogSettings, message: bytes) -> None:
    """One message: a UDP datagram (RFC 5426) or an octet-counted TCP frame (RFC 6587 §3.4.1)."""
    try:
        if receiver.transport == "udp":
            family = socket.getaddrinfo(receiver.host, receiver.port, type=socket.SOCK_DGRAM)[0]
            with socket.socket(family[0], socket.SOCK_DGRAM) as sock:
                sock.settimeout(receiver.timeout_s)
                sock.sendto(message, family[4])
            return
        address = (receiver.host, receiver.port)
        with socket.create_connection(address, timeout=receiver.timeout_s) as sock:
            sock.sendall(f"{len(message)} ".encode() + message)
    except OSError as exc:
        raise Unavailable(
            f"syslog {receiver.name!r}: {type(exc).__name__}: {exc}"[:300],
            code="monitor.notify.syslog",
        ) from exc
