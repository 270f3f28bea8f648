"""Repository of update campaigns and the state of each of their devices."""

from __future__ import annotations

import builtins
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy import func, select, update

from trustfleet.errors import NotFound
from trustfleet.store import _validate as check
from trustfleet.store._models import CampaignDeviceRow, CampaignRow, DeviceRow
from trustfleet.store._rows import record_of
from trustfleet.store._session import SessionHandle, insert
from trustfleet.store.records import (
    CAMPAIGN_DEVICE_STATES,
    CAMPAIGN_STATES,
    CampaignDeviceRecord,
    CampaignDeviceState,
    CampaignRecord,
    CampaignState,
)

__all__ = ["CampaignRepository", "NewCampaignDevice"]

_INSERT_CHUNK = 500


@dataclass(frozen=True, slots=True)
class NewCampaignDevice:
    """A target device of a new campaign: its wave and initial state."""

    device_id: str
    wave: int
    state: CampaignDeviceState = "pending"
    reason: str | None = None
    code: str | None = None


def _record(row: CampaignRow) -> CampaignRecord:
    return record_of(CampaignRecord, row, waves=tuple(float(w) for w in row.waves))


def _device_record(row: Any) -> CampaignDeviceRecord:
    return record_of(CampaignDeviceRecord, row)


def _bounded(value: str | None, *, max_chars: int) -> str | None:
    return None if value is None else value[:max_chars]


class CampaignRepository:
    """Campaigns, within one transaction. Get it as ``tx.campaigns``.

    The ``lock`` methods take the campaign's row lock on PostgreSQL (``FOR UPDATE``); on
    SQLite every writing transaction already holds the database's write lock.
    """

    def __init__(self, handle: SessionHandle) -> None:
        self._handle = handle

    @property
    def _cd(self) -> sa.Table:
        return cast(sa.Table, CampaignDeviceRow.__table__)

    def add(
        self,
        *,
        id: str,
        model: str,
        version: str,
        waves: Sequence[float],
        max_failure_rate: float,
        device_timeout_s: int,
        state: CampaignState = "running",
        current_wave: int = 1,
        reason: str | None = None,
        now: datetime,
    ) -> CampaignRecord:
        """Record a new campaign (the services layer has checked the rules).

        Raises:
            Conflict: A campaign with this id exists.
            InvalidInput: A value is malformed.
        """
        now = check.aware(now, name="now")
        row = CampaignRow(
            id=check.text(id, name="campaign id", max_chars=40),
            model=check.text(model, name="model", max_chars=64),
            version=check.text(version, name="version", max_chars=32),
            waves=[float(w) for w in waves],
            max_failure_rate=float(max_failure_rate),
            device_timeout_s=int(device_timeout_s),
            state=check.one_of(state, CAMPAIGN_STATES, name="state"),
            current_wave=current_wave,
            reason=_bounded(reason, max_chars=512),
            created_at=now,
            updated_at=now,
        )
        insert(self._handle.session, row, duplicate=f"campaign {id!r} already exists")
        return _record(row)

    def add_devices(
        self, campaign_id: str, devices: Sequence[NewCampaignDevice], *, now: datetime
    ) -> int:
        """Add the target devices of a campaign (bulk). Returns how many."""
        now = check.aware(now, name="now")
        rows = [
            {
                "campaign_id": campaign_id,
                "device_id": d.device_id,
                "wave": d.wave,
                "state": check.one_of(d.state, CAMPAIGN_DEVICE_STATES, name="state"),
                "reason": _bounded(d.reason, max_chars=256),
                "code": _bounded(d.code, max_chars=256),
                "updated_at": now,
            }
            for d in devices
        ]
        conn = self._handle.session.connection()
        for start in range(0, len(rows), _INSERT_CHUNK):
            conn.execute(self._cd.insert(), rows[start : start + _INSERT_CHUNK])
        return len(rows)

    def target_facts(self, device_ids: Sequence[str]) -> dict[str, tuple[str, str, str | None]]:
        """``(model, state, firmware_version)`` of each listed device that exists."""
        facts: dict[str, tuple[str, str, str | None]] = {}
        for start in range(0, len(device_ids), _INSERT_CHUNK):
            chunk = list(device_ids[start : start + _INSERT_CHUNK])
            query = select(
                DeviceRow.id, DeviceRow.model, DeviceRow.state, DeviceRow.firmware_version
            ).where(DeviceRow.id.in_(chunk))
            for id_, model, state, firmware in self._handle.session.execute(query):
                facts[id_] = (model, state, firmware)
        return facts

    def enrolled_devices(self, model: str, *, limit: int) -> dict[str, str | None]:
        """Every enrolled device of a model (at most ``limit``) and its firmware version."""
        query = (
            select(DeviceRow.id, DeviceRow.firmware_version)
            .where(DeviceRow.model == model, DeviceRow.state == "enrolled")
            .order_by(DeviceRow.id)
            .limit(limit)
        )
        return {row.id: row.firmware_version for row in self._handle.session.execute(query)}

    def get(self, id: str) -> CampaignRecord | None:
        """The campaign with this id, or None."""
        row = self._handle.session.get(CampaignRow, id)
        return None if row is None else _record(row)

    def require(self, id: str) -> CampaignRecord:
        """The campaign with this id.

        Raises:
            NotFound: There is none.
        """
        record = self.get(id)
        if record is None:
            raise _not_found(id)
        return record

    def lock(self, id: str, *, skip_locked: bool = False) -> CampaignRecord | None:
        """The campaign with its row lock held until the transaction ends, or None.

        Args:
            id: The campaign.
            skip_locked: Return None instead of waiting when another transaction holds it.
        """
        query = select(CampaignRow).where(CampaignRow.id == id)
        query = query.with_for_update(skip_locked=skip_locked).execution_options(
            populate_existing=True
        )
        row = self._handle.session.scalars(query).one_or_none()
        return None if row is None else _record(row)

    def list(
        self, *, state: CampaignState | None = None, limit: int = 100, offset: int = 0
    ) -> builtins.list[CampaignRecord]:
        """Campaigns, newest first, optionally only those in one state (``offset``: skipped)."""
        limit, offset = check.page(limit=limit, offset=offset)
        query = select(CampaignRow).order_by(CampaignRow.created_at.desc(), CampaignRow.id)
        if state is not None:
            query = query.where(CampaignRow.state == state)
        query = query.limit(limit).offset(offset)
        return [_record(row) for row in self._handle.session.scalars(query)]

    def set_state(
        self,
        id: str,
        state: CampaignState,
        *,
        now: datetime,
        current_wave: int | None = None,
        reason: str | None = None,
    ) -> CampaignRecord:
        """Move a campaign to a state (and wave); the services layer decides which moves.

        Raises:
            NotFound: There is no such campaign.
        """
        check.one_of(state, CAMPAIGN_STATES, name="state")
        session = self._handle.session
        row = session.get(CampaignRow, id, with_for_update=True)
        if row is None:
            raise _not_found(id)
        row.state = state
        row.updated_at = check.aware(now, name="now")
        if current_wave is not None:
            row.current_wave = current_wave
        if reason is not None:
            row.reason = reason[:512]
        session.flush()
        return _record(row)

    def counts(self, campaign_id: str) -> dict[tuple[int, str], int]:
        """Devices per ``(wave, state)`` of one campaign."""
        cd = self._cd
        query = (
            select(cd.c.wave, cd.c.state, func.count())
            .where(cd.c.campaign_id == campaign_id)
            .group_by(cd.c.wave, cd.c.state)
        )
        rows = self._handle.session.connection().execute(query)
        return {(wave, state): n for wave, state, n in rows}

    def devices(
        self,
        campaign_id: str,
        *,
        limit: int = 100,
        offset: int = 0,
        states: Iterable[str] | None = None,
    ) -> builtins.list[CampaignDeviceRecord]:
        """A campaign's devices by wave and id, optionally only in some states."""
        limit, offset = check.page(limit=limit, offset=offset)
        cd = self._cd
        query = select(cd).where(cd.c.campaign_id == campaign_id)
        if states is not None:
            query = query.where(cd.c.state.in_(sorted(set(states))))
        query = query.order_by(cd.c.wave, cd.c.device_id).limit(limit).offset(offset)
        return [_device_record(r) for r in self._handle.session.connection().execute(query)]

    def device(self, campaign_id: str, device_id: str) -> CampaignDeviceRecord | None:
        """One device's row in a campaign, or None."""
        cd = self._cd
        query = select(cd).where(cd.c.campaign_id == campaign_id, cd.c.device_id == device_id)
        row = self._handle.session.connection().execute(query).one_or_none()
        return None if row is None else _device_record(row)

    def pending(self, campaign_id: str, *, wave: int, limit: int) -> builtins.list[str]:
        """Up to ``limit`` devices of a wave not yet notified, by id."""
        cd = self._cd
        query = (
            select(cd.c.device_id)
            .where(cd.c.campaign_id == campaign_id, cd.c.wave == wave, cd.c.state == "pending")
            .order_by(cd.c.device_id)
            .limit(limit)
        )
        return list(self._handle.session.connection().execute(query).scalars())

    def mark_notified(self, campaign_id: str, device_ids: Sequence[str], *, now: datetime) -> int:
        """Move pending devices to ``notified`` at ``now``. Returns how many moved."""
        if not device_ids:
            return 0
        cd = self._cd
        statement = (
            update(cd)
            .where(cd.c.campaign_id == campaign_id, cd.c.state == "pending")
            .where(cd.c.device_id.in_(list(device_ids)))
            .values(state="notified", notified_at=now, updated_at=now)
        )
        result = self._handle.session.connection().execute(statement)
        return int(result.rowcount)

    def time_out(
        self,
        campaign_id: str,
        *,
        states: Iterable[str],
        notified_before: datetime,
        reason: str,
        now: datetime,
    ) -> int:
        """Move devices in ``states`` notified before a time to ``timed_out``. Returns how many."""
        cd = self._cd
        statement = (
            update(cd)
            .where(cd.c.campaign_id == campaign_id, cd.c.state.in_(sorted(set(states))))
            .where(cd.c.notified_at < check.aware(notified_before, name="notified_before"))
            .values(state="timed_out", reason=reason[:256], code="campaign.timeout", updated_at=now)
        )
        return int(self._handle.session.connection().execute(statement).rowcount)

    def restart_clock(self, campaign_id: str, *, states: Iterable[str], now: datetime) -> int:
        """Set ``notified_at`` of devices in ``states`` to ``now`` (their timeout restarts)."""
        cd = self._cd
        statement = (
            update(cd)
            .where(cd.c.campaign_id == campaign_id, cd.c.state.in_(sorted(set(states))))
            .values(notified_at=check.aware(now, name="now"))
        )
        return int(self._handle.session.connection().execute(statement).rowcount)

    def update_device(
        self,
        campaign_id: str,
        device_id: str,
        *,
        state: CampaignDeviceState,
        bytes: int | None,
        total: int | None,
        delta: bool | None,
        reason: str | None,
        code: str | None,
        now: datetime,
    ) -> None:
        """Set one device's update state and progress (the services layer keeps the order)."""
        self._set_device(
            campaign_id,
            device_id,
            values={
                "state": check.one_of(state, CAMPAIGN_DEVICE_STATES, name="state"),
                "bytes": bytes,
                "total": total,
                "delta": delta,
            },
            reason=reason,
            code=code,
            now=now,
        )

    def exclude_device(
        self, campaign_id: str, device_id: str, *, reason: str, code: str, now: datetime
    ) -> None:
        """Move one device to wave 0 as ``refused``: left out, never counted as a failure."""
        self._set_device(
            campaign_id,
            device_id,
            values={"wave": 0, "state": "refused"},
            reason=reason,
            code=code,
            now=now,
        )

    def _set_device(
        self,
        campaign_id: str,
        device_id: str,
        *,
        values: dict[str, Any],
        reason: str | None,
        code: str | None,
        now: datetime,
    ) -> None:
        """Update one device's row: ``values``, its reason and code (bounded) and the time."""
        cd = self._cd
        statement = (
            update(cd)
            .where(cd.c.campaign_id == campaign_id, cd.c.device_id == device_id)
            .values(
                **values,
                reason=_bounded(reason, max_chars=256),
                code=_bounded(code, max_chars=256),
                updated_at=check.aware(now, name="now"),
            )
        )
        self._handle.session.connection().execute(statement)

    def reset_devices(self, campaign_id: str, *, states: Iterable[str], now: datetime) -> int:
        """Move devices of waves 1.. in ``states`` back to ``pending``. Returns how many."""
        cd = self._cd
        statement = (
            update(cd)
            .where(cd.c.campaign_id == campaign_id, cd.c.wave >= 1)
            .where(cd.c.state.in_(sorted(set(states))))
            .values(
                state="pending", bytes=None, total=None, delta=None, reason=None, code=None,
                notified_at=None, updated_at=check.aware(now, name="now"),
            )
        )  # fmt: skip
        return int(self._handle.session.connection().execute(statement).rowcount)

    def lowest_wave(self, campaign_id: str, *, state: str) -> int | None:
        """The lowest wave 1.. that has a device in ``state``, or None."""
        cd = self._cd
        query = select(func.min(cd.c.wave)).where(
            cd.c.campaign_id == campaign_id, cd.c.wave >= 1, cd.c.state == state
        )
        value = self._handle.session.connection().execute(query).scalar()
        return None if value is None else int(value)

    def last_codes(
        self, device_ids: Sequence[str], *, codes: Iterable[str]
    ) -> dict[str, tuple[str, str | None, str]]:
        """For each listed device, its newest campaign row with one of ``codes``.

        Returns:
            ``{device_id: (campaign_id, reason, code)}`` for the devices that have one.
        """
        cd, wanted = self._cd, sorted(set(codes))
        found: dict[str, tuple[str, str | None, str, datetime]] = {}
        for start in range(0, len(device_ids), _INSERT_CHUNK):
            chunk = list(device_ids[start : start + _INSERT_CHUNK])
            query = select(
                cd.c.device_id, cd.c.campaign_id, cd.c.reason, cd.c.code, cd.c.updated_at
            ).where(cd.c.device_id.in_(chunk), cd.c.code.in_(wanted))
            for (
                device_id,
                campaign_id,
                reason,
                code,
                at,
            ) in self._handle.session.connection().execute(query):
                if device_id not in found or at > found[device_id][3]:
                    found[device_id] = (campaign_id, reason, code, at)
        return {d: (c, r, k) for d, (c, r, k, _at) in found.items()}


def _not_found(id: str) -> NotFound:
    return NotFound(f"campaign {id[:40]!r} not found", code="store.campaign.not_found")
