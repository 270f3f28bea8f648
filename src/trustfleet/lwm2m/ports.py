"""What the LwM2M server needs from the rest of the service, as data and one port.

The protocol engine (``lwm2m/server.py``) knows CoAP, DTLS and LwM2M; everything it learns or
asks about a device goes through :class:`Lwm2mBackend`, implemented over the store, the tokens
and the audit log by ``services/lwm2m.py`` (a fake implements the same port in unit tests, never
as the only test). The methods are synchronous (the server calls them in a worker thread, except
:meth:`Lwm2mBackend.psk_credential`, called inside a handshake, which must stay fast).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal, Protocol

__all__ = [
    "BootstrapPlan",
    "Credential",
    "DeviceAccess",
    "FirmwareJob",
    "Lwm2mBackend",
    "PeerIdentity",
    "Purpose",
    "Reading",
    "Registration",
    "SecurityMode",
]

SecurityMode = Literal["psk", "cert"]
"""How a DTLS peer authenticated: a pre-shared key, or an LDevID from the device CA."""
Purpose = Literal["bootstrap", "dm"]
"""What a credential may do: only the bootstrap interface, or device management (registration)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PeerIdentity:
    """Who is at the other end of a DTLS session, as the handshake proved it.

    Attributes:
        mode: ``psk`` or ``cert``.
        identity: The PSK identity, or the certificate's subject CN (the device id).
        address: The peer's (host, port) as seen on the socket.
    """

    mode: SecurityMode
    identity: str
    address: tuple[str, int]


@dataclass(frozen=True, slots=True, kw_only=True)
class Credential:
    """A pre-shared key as the PSK callback needs it. ``key`` is never logged or shown.

    Attributes:
        identity: The PSK identity (at most 128 characters).
        device_id: The device it belongs to.
        purpose: ``bootstrap`` (factory credential: only /bs) or ``dm`` (written by bootstrap).
        key: The key bytes.
    """

    identity: str
    device_id: str
    purpose: Purpose
    key: bytes

    def __repr__(self) -> str:
        return (
            f"Credential(identity={self.identity!r}, device_id={self.device_id!r}, "
            f"purpose={self.purpose!r})"
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceAccess:
    """A device admitted for one request.

    Attributes:
        device_id: The device.
        model: Its hardware model (firmware releases are per model).
        purpose: What the credential it used may do.
        quarantined: Only registration and firmware update are allowed while set.
    """

    device_id: str
    model: str
    purpose: Purpose
    quarantined: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class BootstrapPlan:
    """What the bootstrap server writes into a device (Security object 0, Server object 1).

    Attributes:
        device_id: The device.
        server_uri: The device-management server, ``coaps://HOST:PORT``.
        short_server_id: Server object 1's Short Server ID (1..65534).
        lifetime_s: Server object 1's lifetime.
        binding: Server object 1's binding (``U``).
        mode: Security object 0's mode (``psk`` = 0, ``cert`` = 2).
        psk_identity: For ``psk``: the new device-management PSK identity (already stored).
        psk_key: For ``psk``: its key (written to the device once, never logged).
        server_certificate: For ``cert``: the DER certificate the device should trust.
    """

    device_id: str
    server_uri: str
    short_server_id: int
    lifetime_s: int
    binding: str
    mode: SecurityMode
    psk_identity: str | None = None
    psk_key: bytes | None = None
    server_certificate: bytes | None = None

    def __repr__(self) -> str:
        return (
            f"BootstrapPlan(device_id={self.device_id!r}, server_uri={self.server_uri!r}, "
            f"mode={self.mode!r}, psk_identity={self.psk_identity!r})"
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Registration:
    """A device's registration as the server holds it (register, update).

    Attributes:
        device_id: The device (the endpoint name must equal its id).
        endpoint: The endpoint client name (``ep``).
        location: The registration's location path, ``rd/<16 hex>``.
        lifetime_s: Granted lifetime (clamped to the settings' bounds).
        binding: ``U`` (UDP) or what the device sent (``b``).
        lwm2m_version: ``1.0``, ``1.1`` or ``1.2`` (``lwm2m``).
        objects: The object links it listed, e.g. ``("/1/0", "/3/0", "/5/0", "/3303/0")``.
        address: ``HOST:PORT`` it registered from.
        mode: How it authenticated.
        registered_at: When it (last) registered.
        updated_at: When it last registered or updated.
    """

    device_id: str
    endpoint: str
    location: str
    lifetime_s: int
    binding: str
    lwm2m_version: str
    objects: tuple[str, ...]
    address: str
    mode: SecurityMode
    registered_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class Reading:
    """One resource value a device reported (a read response or a notification).

    Attributes:
        path: ``/OBJECT/INSTANCE/RESOURCE``, e.g. ``/3303/0/5700``.
        value: The decoded value.
        unit: The SenML unit if it sent one (``Cel``), else None.
        time: The SenML time if it sent one, else None (the server's receive time is kept too).
    """

    path: str
    value: float | int | bool | str
    unit: str | None = None
    time: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class FirmwareJob:
    """A firmware update the server should deliver to a registered device (a campaign wave).

    The device gets ``package_uri``, which names the signed manifest (COSE_Sign1, ADR 0022); the
    manifest names the image's path, size and SHA-256; both are served by the LwM2M server over
    CoAP block-wise transfer (Block2) on the device's DTLS session.

    Attributes:
        device_id: The device.
        model: Its model.
        version: The release to install.
        campaign_id: The campaign that asked for it, if any.
        package_uri: ``coaps://HOST:PORT/fw/<model>/<version>/manifest``.
        manifest: The COSE_Sign1 manifest bytes.
        image: The image file on disk (read in blocks, never whole).
        image_size: Its size in bytes.
        image_sha256: Its SHA-256, lowercase hex.
    """

    device_id: str
    model: str
    version: str
    campaign_id: str | None
    package_uri: str
    manifest: bytes
    image: Path
    image_size: int
    image_sha256: str


class Lwm2mBackend(Protocol):
    """The service behind the LwM2M server (``services/lwm2m.py``)."""

    def psk_credential(self, identity: str) -> Credential | None:
        """The live credential with this identity, or None (unknown, revoked, decommissioned)."""
        ...

    def admit(
        self, peer: PeerIdentity, *, endpoint: str, purpose: Purpose, now: datetime
    ) -> DeviceAccess:
        """Whether ``peer`` may act as ``endpoint`` for ``purpose``.

        Raises:
            PermissionDenied: Unknown or revoked device, endpoint not the authenticated identity,
                a bootstrap credential used for registration (code ``lwm2m.*``).
        """
        ...

    def bootstrap_plan(self, access: DeviceAccess, *, now: datetime) -> BootstrapPlan:
        """Create (and store) the device-management credential bootstrap will write."""
        ...

    def record_registration(
        self, registration: Registration, *, previous: Registration | None, now: datetime
    ) -> None:
        """Store a registration or an update (an event when it is new or what it lists changed)."""
        ...

    def record_deregistration(
        self,
        device_id: str,
        *,
        reason: Literal["deregistered", "expired", "revoked", "quarantined"],
        now: datetime,
    ) -> None:
        """The registration ended."""
        ...

    def store_readings(self, device_id: str, readings: Sequence[Reading], *, now: datetime) -> int:
        """Store readings in the telemetry store; returns how many were stored."""
        ...

    def record_refusal(
        self, *, address: str, code: str, identity: str | None, detail: str, now: datetime
    ) -> None:
        """A refused handshake or request, into the security log (bounded per address and code)."""
        ...

    def firmware_job(self, device_id: str, *, now: datetime) -> FirmwareJob | None:
        """The firmware update waiting for this device, if any."""
        ...

    def firmware_package(self, model: str, version: str) -> FirmwareJob | None:
        """The manifest and image of a published release (for serving /fw/...), if any."""
        ...

    def record_firmware_state(
        self, device_id: str, *, version: str | None, state: int, result: int, now: datetime
    ) -> None:
        """Firmware Update object 5's State (/5/0/3) and Update Result (/5/0/5) as the device
        reported them; mapped to the campaign's per-device status."""
        ...

    def access_changes(self, cursor: int) -> tuple[list[str], int]:
        """Device ids whose access changed since ``cursor`` (revoked, decommissioned, quarantined
        or released from quarantine, credential replaced), and the new cursor (0: start now)."""
        ...
