"""Service-side signals per device and window (issue 13 §1), stored as ``source="service"``
metrics windows (docs/monitoring.md "Service-side signals").

Two writers, one record per (device, ``service``, window end) — the table's unique key makes a
window's record written once, whoever comes first:

* :func:`record_broker_stats` (the ingest workers, as soon as the broker's guard plugin
  publishes a window's chunk on ``tf/v1/s/broker/stats``): every device the broker saw, its
  counters merged with what the security log says of it in that window;
* :func:`collect_service_windows` (the monitor, each service window, ``grace_s`` after a window
  ended): the devices the broker did not report but the security log names (enrollment
  refusals, failed attestations, missed challenges). Its progress is the ``service-windows``
  cursor (the last window end built, in Unix seconds), so a window is built once; each call
  builds at most ``max_windows`` windows and reads at most ``max_events`` events per window.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from trustfleet.errors import InvalidInput
from trustfleet.monitoring import MetricsRecord
from trustfleet.monitoring.service_window import (
    STORE_SIGNAL_TYPES,
    BrokerCounters,
    BrokerStats,
    StoreSignals,
    closed_ends,
    count_store_signals,
    decode_broker_stats,
    merge_counters,
    service_record,
)
from trustfleet.services.attestation import StoreContext
from trustfleet.store import MAX_LIST_LIMIT, Transaction
from trustfleet.wire import DEVICE_ID_PATTERN, MAX_BROKER_STATS_BYTES

__all__ = [
    "CURSOR",
    "DEFAULT_GRACE_S",
    "DEFAULT_MAX_EVENTS",
    "DEFAULT_MAX_WINDOWS",
    "collect_service_windows",
    "decode_chunks",
    "ingest_broker_stats",
    "record_broker_stats",
]

logger = logging.getLogger(__name__)

CURSOR: Final = "service-windows"
"""The ``monitor_cursor`` row: the end (Unix seconds) of the last window built."""
DEFAULT_GRACE_S: Final = 5.0
"""How long after a window's end the broker's chunks may still arrive before it is built."""
DEFAULT_MAX_WINDOWS: Final = 10
"""Windows built per call at most (a monitor that was down catches up on the newest only)."""
DEFAULT_MAX_EVENTS: Final = 10_000
"""Security events read per window at most (refusals are already throttled at the source)."""
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)

_Key = tuple[datetime, int]  # window end, interval


def decode_chunks(payloads: Iterable[bytes]) -> list[BrokerStats]:
    """The valid statistics chunks among ``payloads`` (a refused one is logged and skipped)."""
    chunks: list[BrokerStats] = []
    for payload in payloads:
        try:
            chunks.append(
                decode_broker_stats(
                    payload, max_bytes=MAX_BROKER_STATS_BYTES, device_id_pattern=DEVICE_ID_PATTERN
                )
            )
        except InvalidInput as exc:
            logger.warning("broker statistics chunk refused: %s", exc.one_line())
    return chunks


def _group(chunks: Sequence[BrokerStats]) -> dict[_Key, dict[str, BrokerCounters]]:
    """Per window, each device's counters summed over chunks (several broker runs)."""
    windows: dict[_Key, dict[str, BrokerCounters]] = {}
    for chunk in chunks:
        devices = windows.setdefault((chunk.end, chunk.interval_s), {})
        for device_id, counters in chunk.devices.items():
            seen = devices.get(device_id)
            devices[device_id] = counters if seen is None else merge_counters(seen, counters)
    return windows


def _events(
    tx: Transaction, *, start: datetime, end: datetime, max_events: int
) -> list[tuple[str, str, Any]]:
    """The security events of ``STORE_SIGNAL_TYPES`` in ``[start, end)``, at most
    ``max_events`` (in pages by id)."""
    found: list[tuple[str, str, Any]] = []
    after = 0
    while len(found) < max_events:
        page = tx.events.list(
            after_id=after,
            limit=min(MAX_LIST_LIMIT, max_events - len(found)),
            type=STORE_SIGNAL_TYPES,
            since=start,
            until=end,
        )
        found += [(e.type, e.subject, e.details) for e in page]
        if len(page) < MAX_LIST_LIMIT:
            break
        after = page[-1].id
    if len(found) >= max_events:
        logger.warning("service window %s: more than %d events, the rest skipped", end, max_events)
    return found


def _known(tx: Transaction, device_ids: Iterable[str]) -> set[str]:
    """The devices of ``device_ids`` the inventory holds (others cannot have a window)."""
    wanted = sorted(set(device_ids))
    known: set[str] = set()
    for i in range(0, len(wanted), MAX_LIST_LIMIT):
        known |= set(tx.devices.states(wanted[i : i + MAX_LIST_LIMIT]))
    return known


def _records(
    *,
    end: datetime,
    interval_s: int,
    broker: dict[str, BrokerCounters],
    store: dict[str, StoreSignals],
    devices: Iterable[str],
) -> list[MetricsRecord]:
    return [
        service_record(
            device_id,
            model="",  # the store joins the model on read
            end=end,
            interval_s=interval_s,
            broker=broker.get(device_id),
            store=store.get(device_id),
        )
        for device_id in sorted(devices)
    ]


def record_broker_stats(
    rt: StoreContext,
    chunks: Sequence[BrokerStats],
    *,
    now: datetime,
    max_events: int = DEFAULT_MAX_EVENTS,
) -> int:
    """Store the service windows of the devices in the broker's statistics chunks.

    Each device's broker counters are merged with the security log's signals of that window.
    Devices the inventory does not hold are skipped; a window already stored for a device is
    kept (so a redelivered chunk changes nothing).

    Args:
        rt: The store and settings.
        chunks: Decoded chunks (:func:`~trustfleet.monitoring.service_window.decode_broker_stats`).
        now: When they were received.
        max_events: Bound on the security events read per window.

    Returns:
        How many windows were stored.
    """
    stored = 0
    for (end, interval_s), broker in _group(chunks).items():
        start = end - timedelta(seconds=interval_s)
        with rt.uow.begin() as tx:
            known = _known(tx, broker)
            store = count_store_signals(_events(tx, start=start, end=end, max_events=max_events))
            records = _records(
                end=end, interval_s=interval_s, broker=broker, store=store, devices=known
            )
            added = tx.monitor_metrics.add_many(records, received_at=now)
        stored += added
        if added < len(records):  # redelivered, or built already by collect_service_windows
            logger.info("service window %s: %d devices already stored", end, len(records) - added)
        if len(known) < len(broker):
            logger.info("broker statistics of %d unknown devices skipped", len(broker) - len(known))
    return stored


def ingest_broker_stats(rt: StoreContext, payloads: Sequence[bytes], *, now: datetime) -> int:
    """Decode the broker's statistics chunks (refused ones are logged and skipped) and store
    their windows (:func:`record_broker_stats`). Returns how many windows were stored.

    Raises:
        Unavailable: The store is down (the chunks are to be redelivered).
    """
    return record_broker_stats(rt, decode_chunks(payloads), now=now)


def collect_service_windows(
    rt: StoreContext,
    *,
    now: datetime,
    grace_s: float = DEFAULT_GRACE_S,
    max_windows: int = DEFAULT_MAX_WINDOWS,
    max_events: int = DEFAULT_MAX_EVENTS,
) -> int:
    """Build the service windows that ended, from the security log, for devices the broker
    did not report (those it reported were stored by :func:`record_broker_stats`).

    Windows are ``[monitoring] service_window_s`` long and end on multiples of it (Unix
    time). Idempotent: the ``service-windows`` cursor holds the last window built, and a
    window stored already for a device is kept.

    Args:
        rt: The store and settings.
        now: The current time.
        grace_s: How long after its end a window is left to the broker's chunks.
        max_windows: Windows built in this call at most (the newest, if more are due).
        max_events: Security events read per window at most.

    Returns:
        How many windows (device records) were stored.
    """
    interval_s = rt.settings.monitoring.service_window_s
    step = timedelta(seconds=interval_s)
    stored = 0
    with rt.uow.begin() as tx:
        done = tx.monitor_metrics.cursor(CURSOR)
        after = _EPOCH + timedelta(seconds=done) if done else None
        ends = closed_ends(
            after=after, now=now, interval_s=interval_s, grace_s=grace_s, max_windows=max_windows
        )
        for end in ends:
            store = count_store_signals(
                _events(tx, start=end - step, end=end, max_events=max_events)
            )
            records = _records(
                end=end, interval_s=interval_s, broker={}, store=store, devices=_known(tx, store)
            )
            stored += tx.monitor_metrics.add_many(records, received_at=now)
        if ends:
            last = int((ends[-1] - _EPOCH).total_seconds())
            tx.monitor_metrics.set_cursor(CURSOR, last, now=now)
    return stored
