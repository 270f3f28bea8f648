"""LwM2M 1.1 over CoAP and DTLS 1.2 for constrained devices (docs/lwm2m.md).

Pure protocol parts (CoAP codec, content formats, registration, bootstrap, firmware object
rules) and the asyncio server over one UDP socket; what it needs from the store goes through
:class:`~trustfleet.lwm2m.ports.Lwm2mBackend` (``services/lwm2m.py``).
"""

from __future__ import annotations

from trustfleet.lwm2m.ports import (
    BootstrapPlan,
    Credential,
    DeviceAccess,
    FirmwareJob,
    Lwm2mBackend,
    PeerIdentity,
    Reading,
    Registration,
)

__all__ = [
    "BootstrapPlan",
    "Credential",
    "DeviceAccess",
    "FirmwareJob",
    "Lwm2mBackend",
    "PeerIdentity",
    "Reading",
    "Registration",
]
