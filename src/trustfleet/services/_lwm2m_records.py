"""LwM2M records of the service: PSK credentials (create, end), the server URI devices reach,
a device's registration as ``device show`` presents it."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from trustfleet.lwm2m.ports import Purpose
from trustfleet.services._lwm2m_psk import PskVault, new_psk
from trustfleet.services.runtime import Runtime
from trustfleet.settings import ServerSettings
from trustfleet.store import Transaction

__all__ = ["create_credential", "end_credentials", "registration_summary", "server_uri"]


def create_credential(
    tx: Transaction,
    vault: PskVault,
    *,
    device_id: str,
    purpose: Purpose,
    size_bytes: int,
    now: datetime,
    key: bytes | None = None,
) -> tuple[str, bytes]:
    """Create a device's PSK credential (ciphertext in the store; event without key material).

    The bootstrap credential's identity is the device id, a ``dm`` one's ``<device-id>:dm``
    (``<device-id>:dm<n>`` after the first, so an ended identity is never reused).

    Args:
        tx: The open transaction.
        vault: Encrypts the key in ``tf-service``.
        device_id: The device.
        purpose: ``bootstrap`` or ``dm``.
        size_bytes: Size of a new key.
        now: The current time.
        key: The key to store (the factory made it first), else a new one.

    Returns:
        The identity and the key (to hand to the device once).
    """
    identity = device_id if purpose == "bootstrap" else f"{device_id}:dm"
    taken = {c.identity for c in tx.lwm2m.credentials(device_id)}
    n = 1
    while identity in taken:
        n += 1
        identity = f"{device_id}:dm{n}"
    key = new_psk(size_bytes) if key is None else key
    nonce, ciphertext = vault.encrypt(key, identity=identity, device_id=device_id)
    tx.lwm2m.add_credential(
        identity=identity,
        device_id=device_id,
        purpose=purpose,
        ciphertext=ciphertext,
        nonce=nonce,
        now=now,
    )
    tx.events.append(
        type="lwm2m.credential.created",
        actor="system",
        subject=f"device:{device_id}",
        details={"identity": identity, "purpose": purpose},
        now=now,
    )
    return identity, key


def end_credentials(
    tx: Transaction,
    device_id: str,
    *,
    reason: str,
    now: datetime,
    purposes: Sequence[Purpose] = ("bootstrap", "dm"),
) -> list[str]:
    """End a device's live PSK credentials (one ``lwm2m.credential.ended`` event each)."""
    ended = tx.lwm2m.end_credentials(device_id, reason=reason, now=now, purposes=purposes)
    for identity in ended:
        tx.events.append(
            type="lwm2m.credential.ended",
            actor="system",
            subject=f"device:{device_id}",
            details={"identity": identity, "reason": reason},
            now=now,
        )
    return ended


def registration_summary(rt: Runtime, device_id: str) -> dict[str, Any] | None:
    """A device's LwM2M registration for ``device show`` (None if it never registered)."""
    with rt.uow.begin(read_only=True) as tx:
        r = tx.lwm2m.registration(device_id)
    if r is None:
        return None
    return {
        "status": "ended" if r.ended_at else "registered",
        "end_reason": r.end_reason,
        "location": r.location,
        "lifetime_s": r.lifetime_s,
        "binding": r.binding,
        "lwm2m_version": r.lwm2m_version,
        "objects": list(r.objects),
        "address": r.address,
        "mode": r.mode,
        "registered_at": r.registered_at.isoformat(),
        "updated_at": r.updated_at.isoformat(),
        "expires_at": r.expires_at.isoformat(),
        "firmware": {
            "state": r.firmware_state,
            "result": r.firmware_result,
            "version": r.firmware_version,
        },
    }


def server_uri(settings: ServerSettings) -> str:
    """``coaps://HOST:PORT`` of the device-management server as devices reach it."""
    lw = settings.lwm2m
    host = lw.public_host or lw.host
    if ":" in host:
        host = f"[{host}]"
    return f"coaps://{host}:{lw.port}"
