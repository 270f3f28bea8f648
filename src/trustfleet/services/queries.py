"""Read queries for operators: pages of devices, releases, campaigns and attestation state.

Every function opens one read-only transaction and returns frozen records, so a caller (the
CLI, later the operator API) never opens a transaction itself. Lists come in pages: a
:class:`Page` holds at most ``limit`` items and a ``next_cursor`` when more exist (an opaque
string to pass back as ``cursor``); nothing stops silently at the store's largest page.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Generic, TypeVar, cast

from trustfleet.errors import InvalidInput, NotFound
from trustfleet.services._campaign_ids import require_campaign
from trustfleet.store import MAX_LIST_LIMIT

if TYPE_CHECKING:
    from trustfleet.services.runtime import Runtime
    from trustfleet.store import (
        AttestationKeyRecord,
        AttestationResultRecord,
        CampaignDeviceRecord,
        CampaignRecord,
        CertificateRecord,
        DeviceRecord,
        DeviceState,
        QuarantineRecord,
        ReleaseRecord,
        Transaction,
    )

__all__ = [
    "MAX_CURSOR_CHARS",
    "AttestationOverview",
    "AttestationStatus",
    "DeviceDetail",
    "Page",
    "attestation_overview",
    "attestation_result",
    "attestation_status",
    "campaign_devices",
    "device_detail",
    "list_campaigns",
    "list_devices",
    "list_releases",
    "parse_cursor",
    "published_release",
]

T = TypeVar("T")
MAX_CURSOR_CHARS: Final = 12
"""Longest cursor accepted (a cursor is an offset in decimal)."""


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a list; ``next_cursor`` is None on the last page."""

    items: tuple[T, ...]
    next_cursor: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceDetail:
    """A device and its certificates."""

    device: DeviceRecord
    certificates: tuple[CertificateRecord, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class AttestationStatus:
    """A device's attestation key, its last verdicts (newest first) and its quarantine."""

    device: DeviceRecord
    key: AttestationKeyRecord | None
    results: tuple[AttestationResultRecord, ...]
    quarantine: QuarantineRecord | None


@dataclass(frozen=True, slots=True, kw_only=True)
class AttestationOverview:
    """One row of ``attest list``: whether the device has an AK, its last verdict, quarantine."""

    device_id: str
    has_key: bool
    last: AttestationResultRecord | None
    quarantine: QuarantineRecord | None


def parse_cursor(cursor: str | None) -> int:
    """The offset a cursor stands for (0 without one).

    Raises:
        InvalidInput: The cursor is not one a page gave out (code ``query.bad_cursor``).
    """
    if cursor is None:
        return 0
    text = cursor.strip()
    if not text.isdigit() or len(text) > MAX_CURSOR_CHARS or not text.isascii():
        raise InvalidInput(
            f"'{cursor[: MAX_CURSOR_CHARS + 4]}' is not a cursor",
            hint="pass the next_cursor a previous page printed",
            code="query.bad_cursor",
        )
    return int(text)


def _page(
    tx: Transaction, fetch: Callable[[Transaction, int, int], list[T]], *, limit: int, offset: int
) -> Page[T]:
    items = fetch(tx, limit, offset)
    more = len(items) == limit and bool(fetch(tx, 1, offset + limit))
    return Page(tuple(items), str(offset + limit) if more else None)


def _all(tx: Transaction, fetch: Callable[[Transaction, int, int], list[T]]) -> Iterator[T]:
    """Every row, page by page (for internal uses that need all of them)."""
    offset = 0
    while True:
        items = fetch(tx, MAX_LIST_LIMIT, offset)
        yield from items
        if len(items) < MAX_LIST_LIMIT:
            return
        offset += MAX_LIST_LIMIT


def list_devices(
    rt: Runtime, *, state: str | None = None, limit: int, cursor: str | None = None
) -> Page[DeviceRecord]:
    """A page of devices ordered by id, optionally only those in one state.

    Raises:
        InvalidInput: A bad cursor or limit, or an unknown state.
    """
    offset = parse_cursor(cursor)
    only = cast("DeviceState | None", state)  # the store matches it as text
    with rt.uow.begin(read_only=True) as tx:
        return _page(
            tx, lambda t, n, o: t.devices.list(limit=n, offset=o, state=only),
            limit=limit, offset=offset,
        )  # fmt: skip


def device_detail(rt: Runtime, device_id: str) -> DeviceDetail:
    """A device and its certificates.

    Raises:
        NotFound: No such device.
    """
    with rt.uow.begin(read_only=True) as tx:
        device = tx.devices.require(device_id)
        certs = tx.certificates.list_for_device(device_id)
    return DeviceDetail(device=device, certificates=tuple(certs))


def list_releases(
    rt: Runtime, *, model: str | None = None, limit: int, cursor: str | None = None
) -> Page[ReleaseRecord]:
    """A page of published releases, newest version first (of one model, or all).

    Raises:
        InvalidInput: A bad cursor or limit.
    """
    offset = parse_cursor(cursor)
    with rt.uow.begin(read_only=True) as tx:
        return _page(
            tx, lambda t, n, o: t.releases.list(model=model, limit=n, offset=o),
            limit=limit, offset=offset,
        )  # fmt: skip


def published_release(rt: Runtime, *, model: str, version: str) -> ReleaseRecord:
    """A published release.

    Raises:
        NotFound: The model has no published release of that version.
    """
    with rt.uow.begin(read_only=True) as tx:
        record = tx.releases.get(model=model, version=version)
    if record is None:
        raise NotFound(f"no published release {model} {version}", code="ota.release.not_found")
    return record


def list_campaigns(rt: Runtime, *, limit: int, cursor: str | None = None) -> Page[CampaignRecord]:
    """A page of campaigns, newest first.

    Raises:
        InvalidInput: A bad cursor or limit.
    """
    offset = parse_cursor(cursor)
    with rt.uow.begin(read_only=True) as tx:
        return _page(
            tx, lambda t, n, o: t.campaigns.list(limit=n, offset=o), limit=limit, offset=offset
        )


def campaign_devices(
    rt: Runtime, campaign_id: str, *, limit: int, cursor: str | None = None
) -> Page[CampaignDeviceRecord]:
    """A page of one campaign's devices, by wave and id.

    Raises:
        NotFound: There is no such campaign.
        InvalidInput: A bad cursor or limit.
    """
    offset = parse_cursor(cursor)
    with rt.uow.begin(read_only=True) as tx:
        found = require_campaign(tx, campaign_id).id
        return _page(
            tx, lambda t, n, o: t.campaigns.devices(found, limit=n, offset=o),
            limit=limit, offset=offset,
        )  # fmt: skip


def attestation_status(rt: Runtime, device_id: str, *, limit: int) -> AttestationStatus:
    """A device's attestation key, its last ``limit`` verdicts and its quarantine.

    Raises:
        NotFound: No such device.
    """
    with rt.uow.begin(read_only=True) as tx:
        device = tx.devices.require(device_id)
        return AttestationStatus(
            device=device,
            key=tx.attestation.get_key(device_id),
            results=tuple(tx.attestation.results(device_id, limit=limit)),
            quarantine=tx.attestation.quarantine(device_id),
        )


def attestation_result(rt: Runtime, challenge_id: str) -> AttestationResultRecord | None:
    """The verdict on a challenge, if the device has answered it."""
    with rt.uow.begin(read_only=True) as tx:
        return tx.attestation.result_for(challenge_id)


def attestation_overview(
    rt: Runtime, *, only_quarantined: bool, limit: int, cursor: str | None = None
) -> Page[AttestationOverview]:
    """A page of devices with an attestation key or in quarantine, ordered by id.

    Without ``only_quarantined`` the candidates are every quarantined device, every device
    with an AK and every enrolled device (all pages of each); devices without an AK that are
    not quarantined are left out.

    Raises:
        InvalidInput: A bad cursor or limit.
    """
    offset = parse_cursor(cursor)
    with rt.uow.begin(read_only=True) as tx:
        quarantines = {
            q.device_id: q
            for q in _all(tx, lambda t, n, o: t.attestation.quarantined(limit=n, offset=o))
        }
        ids = set(quarantines) if only_quarantined else _candidates(tx, set(quarantines))
        rows = []
        for device_id in sorted(ids):
            key = tx.attestation.get_key(device_id)
            if key is not None or device_id in quarantines:
                rows.append((device_id, key is not None))
        chosen = rows[offset : offset + limit]
        page = tuple(
            AttestationOverview(
                device_id=device_id,
                has_key=has_key,
                last=next(iter(tx.attestation.results(device_id, limit=1)), None),
                quarantine=quarantines.get(device_id),
            )
            for device_id, has_key in chosen
        )
    more = offset + limit < len(rows)
    return Page(page, str(offset + limit) if more else None)


def _enrolled(tx: Transaction, limit: int, offset: int) -> list[DeviceRecord]:
    return tx.devices.list(limit=limit, offset=offset, state="enrolled")


def _candidates(tx: Transaction, ids: set[str]) -> set[str]:
    """``ids`` and every device with an AK or enrolled (all pages)."""
    ids |= set(_all(tx, lambda t, n, o: list(t.attestation.last_challenges(limit=n, offset=o))))
    return ids | {d.id for d in _all(tx, _enrolled)}
