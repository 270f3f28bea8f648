"""Records of the LwM2M tables (migration 0011): credentials, registrations, manifests."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Final

__all__ = [
    "LWM2M_MODES",
    "LWM2M_PURPOSES",
    "Lwm2mCredentialRecord",
    "Lwm2mManifestRecord",
    "Lwm2mRegistrationRecord",
]

LWM2M_PURPOSES: Final[tuple[str, ...]] = ("bootstrap", "dm")
"""What a PSK credential may do."""
LWM2M_MODES: Final[tuple[str, ...]] = ("psk", "cert")
"""How a registered device authenticated."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Lwm2mCredentialRecord:
    """A stored pre-shared key: its ciphertext only (the key is decrypted in the token).

    Attributes:
        identity: The PSK identity.
        device_id: The device it belongs to.
        purpose: ``bootstrap`` or ``dm``.
        ciphertext: AES-256-GCM ciphertext with its tag.
        nonce: The 12-byte GCM nonce.
        created_at: When it was created.
        ended_at: When it ended (replaced, revoked, decommissioned), if it did.
        end_reason: Why it ended.
    """

    identity: str
    device_id: str
    purpose: str
    ciphertext: bytes
    nonce: bytes
    created_at: datetime
    ended_at: datetime | None = None
    end_reason: str | None = None

    def __repr__(self) -> str:
        return (
            f"Lwm2mCredentialRecord(identity={self.identity!r}, device_id={self.device_id!r}, "
            f"purpose={self.purpose!r}, ended_at={self.ended_at!r})"
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Lwm2mRegistrationRecord:
    """A device's last LwM2M registration and the firmware object's state it reported.

    Attributes:
        device_id: The device.
        endpoint: Its endpoint client name.
        location: ``rd/<hex>``.
        lifetime_s: Granted lifetime.
        binding: Binding mode.
        lwm2m_version: Version it registered with.
        objects: Object links it listed.
        address: ``HOST:PORT`` it registered from.
        mode: ``psk`` or ``cert``.
        registered_at: When it (last) registered.
        updated_at: When it last registered or updated.
        expires_at: ``updated_at + lifetime_s``.
        ended_at: When the registration ended, if it did.
        end_reason: ``deregistered``, ``expired``, ``revoked`` or ``quarantined``.
        firmware_state: Object 5 State (/5/0/3) last reported.
        firmware_result: Object 5 Update Result (/5/0/5) last reported.
        firmware_version: The firmware version it last reported.
    """

    device_id: str
    endpoint: str
    location: str
    lifetime_s: int
    binding: str
    lwm2m_version: str
    objects: tuple[str, ...]
    address: str
    mode: str
    registered_at: datetime
    updated_at: datetime
    expires_at: datetime
    ended_at: datetime | None = None
    end_reason: str | None = None
    firmware_state: int | None = None
    firmware_result: int | None = None
    firmware_version: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Lwm2mManifestRecord:
    """The signed firmware manifest of one release.

    Attributes:
        model: The release's model.
        version: Its version.
        sequence: The per-model sequence number (anti-rollback).
        manifest: The COSE_Sign1 bytes.
        created_at: When it was signed.
    """

    model: str
    version: str
    sequence: int
    manifest: bytes
    created_at: datetime
