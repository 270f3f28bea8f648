"""Repository of the LwM2M tables: PSK credentials (ciphertext), registrations, manifests."""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import func, select

from trustfleet.store import _validate as check
from trustfleet.store._lwm2m_models import (
    Lwm2mCredentialRow,
    Lwm2mManifestRow,
    Lwm2mRegistrationRow,
)
from trustfleet.store._models import CampaignDeviceRow, CampaignRow
from trustfleet.store._rows import record_of
from trustfleet.store._session import SessionHandle, insert
from trustfleet.store.lwm2m_records import (
    LWM2M_MODES,
    LWM2M_PURPOSES,
    Lwm2mCredentialRecord,
    Lwm2mManifestRecord,
    Lwm2mRegistrationRecord,
)

__all__ = ["Lwm2mRepository"]

MAX_OBJECT_LINKS = 256
"""Most object links stored for one registration (the server bounds them first)."""


def _credential(row: Lwm2mCredentialRow) -> Lwm2mCredentialRecord:
    return record_of(
        Lwm2mCredentialRecord, row, ciphertext=bytes(row.ciphertext), nonce=bytes(row.nonce)
    )


def _registration(row: Lwm2mRegistrationRow) -> Lwm2mRegistrationRecord:
    return record_of(Lwm2mRegistrationRecord, row, objects=tuple(row.objects))


def _manifest(row: Lwm2mManifestRow) -> Lwm2mManifestRecord:
    return record_of(Lwm2mManifestRecord, row, manifest=bytes(row.manifest))


class Lwm2mRepository:
    """LwM2M credentials, registrations and manifests, within one transaction (``tx.lwm2m``)."""

    def __init__(self, handle: SessionHandle) -> None:
        self._handle = handle

    # -- credentials ---------------------------------------------------------------------------

    def add_credential(
        self,
        *,
        identity: str,
        device_id: str,
        purpose: str,
        ciphertext: bytes,
        nonce: bytes,
        now: datetime,
    ) -> Lwm2mCredentialRecord:
        """Store a credential's ciphertext.

        Raises:
            Conflict: The identity exists, or the device does not.
            InvalidInput: A value is malformed.
        """
        row = Lwm2mCredentialRow(
            identity=check.text(identity, name="PSK identity", max_chars=128),
            device_id=device_id,
            purpose=check.one_of(purpose, LWM2M_PURPOSES, name="purpose"),
            ciphertext=ciphertext,
            nonce=nonce,
            created_at=check.aware(now, name="now"),
        )
        insert(
            self._handle.session,
            row,
            duplicate=f"PSK identity {identity!r} exists",
            missing_reference=f"device {device_id!r} not found",
        )
        return _credential(row)

    def credential(self, identity: str) -> Lwm2mCredentialRecord | None:
        """The credential with this identity (live or ended), or None."""
        row = self._handle.session.get(Lwm2mCredentialRow, identity)
        return None if row is None else _credential(row)

    def credentials(self, device_id: str) -> builtins.list[Lwm2mCredentialRecord]:
        """Every credential of a device, oldest first."""
        query = (
            select(Lwm2mCredentialRow)
            .where(Lwm2mCredentialRow.device_id == device_id)
            .order_by(Lwm2mCredentialRow.created_at, Lwm2mCredentialRow.identity)
        )
        return [_credential(row) for row in self._handle.session.scalars(query)]

    def end_credentials(
        self,
        device_id: str,
        *,
        reason: str,
        now: datetime,
        purposes: Sequence[str] = LWM2M_PURPOSES,
    ) -> builtins.list[str]:
        """End a device's live credentials (of the given purposes); returns their identities."""
        now = check.aware(now, name="now")
        query = (
            select(Lwm2mCredentialRow)
            .where(Lwm2mCredentialRow.device_id == device_id)
            .where(Lwm2mCredentialRow.ended_at.is_(None))
            .where(Lwm2mCredentialRow.purpose.in_(list(purposes)))
            .with_for_update()
        )
        ended = []
        for row in self._handle.session.scalars(query):
            row.ended_at = now
            row.end_reason = check.text(reason, name="end reason", max_chars=64)
            ended.append(row.identity)
        self._handle.session.flush()
        return sorted(ended)

    # -- registrations -------------------------------------------------------------------------

    def registration(self, device_id: str) -> Lwm2mRegistrationRecord | None:
        """The device's registration (live or ended), or None."""
        row = self._handle.session.get(Lwm2mRegistrationRow, device_id)
        return None if row is None else _registration(row)

    def put_registration(
        self,
        *,
        device_id: str,
        endpoint: str,
        location: str,
        lifetime_s: int,
        binding: str,
        lwm2m_version: str,
        objects: Sequence[str],
        address: str,
        mode: str,
        registered_at: datetime,
        updated_at: datetime,
    ) -> Lwm2mRegistrationRecord:
        """Create or replace the device's registration (its firmware fields are kept)."""
        if len(objects) > MAX_OBJECT_LINKS:
            objects = objects[:MAX_OBJECT_LINKS]
        session = self._handle.session
        row = session.get(Lwm2mRegistrationRow, device_id, with_for_update=True)
        if row is None:
            row = Lwm2mRegistrationRow(device_id=device_id)
            session.add(row)
        row.endpoint = check.text(endpoint, name="endpoint", max_chars=64)
        row.location = check.text(location, name="location", max_chars=64)
        row.lifetime_s = lifetime_s
        row.binding = check.text(binding, name="binding", max_chars=8)
        row.lwm2m_version = check.text(lwm2m_version, name="LwM2M version", max_chars=8)
        row.objects = [check.text(o, name="object link", max_chars=64) for o in objects]
        row.address = check.text(address, name="address", max_chars=64)
        row.mode = check.one_of(mode, LWM2M_MODES, name="mode")
        row.registered_at = check.aware(registered_at, name="registered_at")
        row.updated_at = check.aware(updated_at, name="updated_at")
        row.expires_at = row.updated_at + timedelta(seconds=lifetime_s)
        row.ended_at = None
        row.end_reason = None
        session.flush()
        return _registration(row)

    def end_registration(self, device_id: str, *, reason: str, now: datetime) -> bool:
        """Mark the device's live registration ended; False if it had none."""
        row = self._handle.session.get(Lwm2mRegistrationRow, device_id, with_for_update=True)
        if row is None or row.ended_at is not None:
            return False
        row.ended_at = check.aware(now, name="now")
        row.end_reason = check.text(reason, name="end reason", max_chars=16)
        self._handle.session.flush()
        return True

    def set_firmware(
        self, device_id: str, *, state: int, result: int, version: str | None
    ) -> Lwm2mRegistrationRecord | None:
        """Record object 5's state and result (and version) on the registration, if any."""
        row = self._handle.session.get(Lwm2mRegistrationRow, device_id, with_for_update=True)
        if row is None:
            return None
        row.firmware_state = state
        row.firmware_result = result
        if version is not None:
            row.firmware_version = check.text(version, name="firmware version", max_chars=32)
        self._handle.session.flush()
        return _registration(row)

    def firmware_campaign(
        self, device_id: str, *, states: Sequence[str]
    ) -> tuple[str, str, str] | None:
        """The running campaign whose row of this device is in one of ``states``, as
        (campaign id, version, row state); the newest such campaign."""
        c, cd = CampaignRow.__table__.c, CampaignDeviceRow.__table__.c
        query = (
            select(c.id, c.version, cd.state)
            .select_from(
                CampaignDeviceRow.__table__.join(CampaignRow.__table__, cd.campaign_id == c.id)
            )
            .where(cd.device_id == device_id, c.state == "running", cd.state.in_(list(states)))
            .order_by(c.created_at.desc())
            .limit(1)
        )
        row = self._handle.session.execute(query).first()
        return None if row is None else (str(row[0]), str(row[1]), str(row[2]))

    # -- manifests -----------------------------------------------------------------------------

    def next_sequence(self, model: str) -> int:
        """The next manifest sequence number of a model (1 for its first)."""
        query = select(func.max(Lwm2mManifestRow.sequence)).where(Lwm2mManifestRow.model == model)
        return int(self._handle.session.scalar(query) or 0) + 1

    def add_manifest(
        self, *, model: str, version: str, sequence: int, manifest: bytes, now: datetime
    ) -> Lwm2mManifestRecord:
        """Store a release's signed manifest.

        Raises:
            Conflict: The release has one, or the sequence is taken.
        """
        row = Lwm2mManifestRow(
            model=model,
            version=version,
            sequence=sequence,
            manifest=manifest,
            created_at=check.aware(now, name="now"),
        )
        insert(self._handle.session, row, duplicate=f"release {model} {version} has a manifest")
        return _manifest(row)

    def manifest(self, *, model: str, version: str) -> Lwm2mManifestRecord | None:
        """The manifest of a release, or None."""
        row = self._handle.session.get(Lwm2mManifestRow, (model, version))
        return None if row is None else _manifest(row)
