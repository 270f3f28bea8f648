"""The LwM2M backend (:class:`~trustfleet.lwm2m.ports.Lwm2mBackend`) over the store, the
``tf-service`` token and the security log (docs/lwm2m.md, ADR 0022).

Typical use::

    with lwm2m_backend(settings) as backend:
        server = Lwm2mServer(settings, backend=backend)
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Literal

from trustfleet.errors import PermissionDenied, TrustFleetError
from trustfleet.lwm2m.ports import (
    BootstrapPlan,
    Credential,
    DeviceAccess,
    FirmwareJob,
    PeerIdentity,
    Purpose,
    Reading,
    Registration,
)
from trustfleet.ota.campaign_rules import IN_FLIGHT_STATES
from trustfleet.ota.manifest import image_target
from trustfleet.ota.status_report import OtaStatus
from trustfleet.services._campaign_reports import apply_ota_reports
from trustfleet.services._lwm2m_psk import PskVault
from trustfleet.services._lwm2m_records import (
    create_credential,
    end_credentials,
    registration_summary,
    server_uri,
)
from trustfleet.services._lwm2m_rules import ACCESS_EVENT_TYPES, campaign_state, metric_name
from trustfleet.services._ota_keys import SERVICE_TOKEN, open_home_token, repo_files
from trustfleet.services.refusals import Refusal, RefusalPolicy, RefusalRecorder
from trustfleet.services.runtime import Runtime
from trustfleet.settings import ServerSettings
from trustfleet.store import JSON, NewTelemetry

__all__ = [
    "ServiceLwm2mBackend",
    "create_credential",
    "end_credentials",
    "lwm2m_backend",
    "registration_summary",
    "server_uri",
]

logger = logging.getLogger(__name__)

_LIVE_STATES = ("manufactured", "enrolled")
_MAX_ACCESS_EVENTS = 1000


def _deny(code: str, message: str) -> PermissionDenied:
    return PermissionDenied(message, code=f"lwm2m.admit.{code}")


@dataclass
class ServiceLwm2mBackend:
    """The LwM2M backend of one home. Thread-safe (one transaction per call)."""

    rt: Runtime
    vault: PskVault
    refusals: RefusalRecorder

    @property
    def _settings(self) -> ServerSettings:
        return self.rt.settings

    def psk_credential(self, identity: str) -> Credential | None:
        """The live credential with this identity, or None."""
        if not identity or len(identity) > 128:
            return None
        with self.rt.uow.begin(read_only=True) as tx:
            record = tx.lwm2m.credential(identity)
            if record is None or record.ended_at is not None:
                return None
            device = tx.devices.get(record.device_id)
        if device is None or device.state not in _LIVE_STATES:
            return None
        try:
            key = self.vault.decrypt(
                record.ciphertext,
                nonce=record.nonce,
                identity=identity,
                device_id=record.device_id,
            )
        except TrustFleetError:
            logger.warning("the stored PSK of identity %r does not decrypt", identity)
            return None
        purpose: Purpose = "dm" if record.purpose == "dm" else "bootstrap"
        return Credential(identity=identity, device_id=record.device_id, purpose=purpose, key=key)

    def admit(
        self, peer: PeerIdentity, *, endpoint: str, purpose: Purpose, now: datetime
    ) -> DeviceAccess:
        """Whether ``peer`` may act as ``endpoint`` for ``purpose`` (see the port)."""
        with self.rt.uow.begin(read_only=True) as tx:
            if peer.mode == "psk":
                record = tx.lwm2m.credential(peer.identity)
                if record is None:
                    raise _deny("unknown", "unknown PSK identity")
                if record.ended_at is not None:
                    raise _deny("revoked", "the credential has ended")
                device_id, used = record.device_id, record.purpose
            else:
                device_id, used = peer.identity, "dm"
            device = tx.devices.get(device_id)
            quarantined = device is not None and tx.attestation.quarantine(device_id) is not None
        if device is None:
            raise _deny("unknown", "unknown device")
        if device.state not in _LIVE_STATES:
            raise _deny("revoked", f"device is {device.state}")
        if device.protocol != "lwm2m":
            raise _deny("not_lwm2m", "the device does not use LwM2M")
        if endpoint != device_id:
            raise _deny("endpoint_mismatch", "the endpoint name is not the authenticated device")
        if purpose == "dm" and used != "dm":
            raise _deny("bootstrap_only", "a bootstrap credential cannot register")
        return DeviceAccess(
            device_id=device_id,
            model=device.model,
            purpose="dm" if used == "dm" else "bootstrap",
            quarantined=quarantined,
        )

    def bootstrap_plan(self, access: DeviceAccess, *, now: datetime) -> BootstrapPlan:
        """End the device's old ``dm`` credential and create the one bootstrap writes."""
        lw = self._settings.lwm2m
        with self.rt.uow.begin() as tx:
            ended = end_credentials(
                tx, access.device_id, reason="replaced", now=now, purposes=("dm",)
            )
            identity, key = create_credential(
                tx,
                self.vault,
                device_id=access.device_id,
                purpose="dm",
                size_bytes=lw.psk_bytes,
                now=now,
            )
        self.vault.forget(ended)
        return BootstrapPlan(
            device_id=access.device_id,
            server_uri=server_uri(self._settings),
            short_server_id=1,
            lifetime_s=lw.default_lifetime_s,
            binding="U",
            mode="psk",
            psk_identity=identity,
            psk_key=key,
        )

    def record_registration(
        self, registration: Registration, *, previous: Registration | None, now: datetime
    ) -> None:
        """Store a registration or update; an event when new or when its objects changed."""
        r = registration
        with self.rt.uow.begin() as tx:
            tx.lwm2m.put_registration(
                device_id=r.device_id,
                endpoint=r.endpoint,
                location=r.location,
                lifetime_s=r.lifetime_s,
                binding=r.binding,
                lwm2m_version=r.lwm2m_version,
                objects=r.objects,
                address=r.address,
                mode=r.mode,
                registered_at=r.registered_at,
                updated_at=r.updated_at,
            )
            tx.devices.mark_seen({r.device_id: now})
            details: dict[str, JSON] = {
                "location": r.location,
                "lifetime_s": r.lifetime_s,
                "mode": r.mode,
                "objects": list(r.objects[:32]),
                "address": r.address,
            }
            if previous is None or previous.location != r.location:
                tx.events.append(
                    type="lwm2m.registered",
                    actor=f"device:{r.device_id}",
                    subject=f"device:{r.device_id}",
                    details=details,
                    now=now,
                )
            elif previous.objects != r.objects or previous.lifetime_s != r.lifetime_s:
                tx.events.append(
                    type="lwm2m.registration.changed",
                    actor=f"device:{r.device_id}",
                    subject=f"device:{r.device_id}",
                    details=details,
                    now=now,
                )

    def record_deregistration(
        self,
        device_id: str,
        *,
        reason: Literal["deregistered", "expired", "revoked", "quarantined"],
        now: datetime,
    ) -> None:
        """The registration ended (an ``lwm2m.deregistered`` event with the reason)."""
        with self.rt.uow.begin() as tx:
            if tx.lwm2m.end_registration(device_id, reason=reason, now=now):
                tx.events.append(
                    type="lwm2m.deregistered",
                    actor="system",
                    subject=f"device:{device_id}",
                    details={"reason": reason},
                    now=now,
                )

    def store_readings(self, device_id: str, readings: Sequence[Reading], *, now: datetime) -> int:
        """Store readings as one telemetry row (metric names from the paths)."""
        metrics: dict[str, float | int | bool | str] = {}
        device_ts: datetime | None = None
        for reading in readings[:256]:
            name = metric_name(reading.path)
            if name is None or (isinstance(reading.value, str) and len(reading.value) > 256):
                continue
            metrics[name] = reading.value
            if reading.time is not None and reading.time.tzinfo is not None:
                device_ts = reading.time
        if not metrics:
            return 0
        with self.rt.uow.begin() as tx:
            tx.telemetry.add_many(
                [
                    NewTelemetry(
                        device_id=device_id,
                        received_at=now,
                        device_ts=device_ts,
                        seq=None,
                        metrics=metrics,
                        boot=None,
                    )
                ]
            )
            tx.devices.mark_seen({device_id: now})
        return len(metrics)

    def record_refusal(
        self, *, address: str, code: str, identity: str | None, detail: str, now: datetime
    ) -> None:
        """A refused handshake or request, aggregated per address and code."""
        refusal = Refusal(
            type="lwm2m.refused",
            actor="anonymous",
            subject=f"lwm2m:{identity or 'unknown'}"[:128],
            code=code,
            at=now,
            details={"code": code, "detail": detail[:200]},
            source=address,
        )
        self.refusals.record(self.rt, refusal)

    def firmware_job(self, device_id: str, *, now: datetime) -> FirmwareJob | None:
        """The release a running campaign notified this device of, with its signed manifest."""
        with self.rt.uow.begin(read_only=True) as tx:
            found = tx.lwm2m.firmware_campaign(device_id, states=sorted(IN_FLIGHT_STATES))
            device = tx.devices.get(device_id)
        if found is None or device is None:
            return None
        campaign_id, version, _state = found
        job = self.firmware_package(device.model, version)
        if job is None:
            return None
        return replace(job, device_id=device_id, campaign_id=campaign_id)

    def firmware_package(self, model: str, version: str) -> FirmwareJob | None:
        """The signed manifest and image of a published release (None: unknown or unsigned)."""
        with self.rt.uow.begin(read_only=True) as tx:
            release = tx.releases.get(model=model, version=version)
            manifest = tx.lwm2m.manifest(model=model, version=version)
        if release is None or manifest is None:
            return None
        image = repo_files(self._settings).target_file(
            image_target(model, version), release.image_sha256
        )
        return FirmwareJob(
            device_id="", model=model, version=version, campaign_id=None,
            package_uri=f"{server_uri(self._settings)}/fw/{model}/{version}/manifest",
            manifest=manifest.manifest, image=image, image_size=release.image_length,
            image_sha256=release.image_sha256,
        )  # fmt: skip

    def record_firmware_state(
        self, device_id: str, *, version: str | None, state: int, result: int, now: datetime
    ) -> None:
        """Store object 5's State and Update Result; move the device's campaign row."""
        with self.rt.uow.begin() as tx:
            tx.lwm2m.set_firmware(device_id, state=state, result=result, version=version)
            found = tx.lwm2m.firmware_campaign(device_id, states=sorted(IN_FLIGHT_STATES))
            if found is None:
                return
            campaign_id, target, _row_state = found
            moved, reason = campaign_state(
                state=state, result=result, version=version, target=target
            )
            if moved == "notified":
                return
            report = OtaStatus(
                state=moved, campaign=campaign_id,
                version=version if moved == "committed" else None,
                reason=reason, code=None if reason is None else f"lwm2m.firmware.{reason}",
            )  # fmt: skip
            apply_ota_reports(tx, [(device_id, report)], now=now)

    def access_changes(self, cursor: int) -> tuple[list[str], int]:
        """Devices whose access changed since ``cursor`` (a security-log event id)."""
        with self.rt.uow.begin(read_only=True) as tx:
            if cursor <= 0:
                return [], tx.events.last_id()
            events = tx.events.list(
                after_id=cursor, type=ACCESS_EVENT_TYPES, limit=_MAX_ACCESS_EVENTS
            )
        if not events:
            return [], cursor
        ids = sorted(
            {e.subject.removeprefix("device:") for e in events if e.subject.startswith("device:")}
        )
        self.vault.forget()
        return ids, events[-1].id


@contextlib.contextmanager
def lwm2m_backend(settings: ServerSettings) -> Iterator[ServiceLwm2mBackend]:
    """The backend of a home: its store and a session on ``tf-service`` (closed on exit)."""
    rt = Runtime.open(settings)
    try:
        with open_home_token(settings, SERVICE_TOKEN) as token:
            api = settings.api
            policy = RefusalPolicy(
                window_s=api.refusal_window_s,
                burst=api.refusal_burst,
                max_keys=api.refusal_max_keys,
            )
            recorder = RefusalRecorder(policy)
            yield ServiceLwm2mBackend(rt=rt, vault=PskVault(token), refusals=recorder)
            recorder.flush(rt, now=datetime.now().astimezone(), everything=True)
    finally:
        rt.close()
