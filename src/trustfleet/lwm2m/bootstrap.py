"""Pure: a :class:`~trustfleet.lwm2m.ports.BootstrapPlan` as the ordered requests the bootstrap
server sends (OMA LwM2M 1.1 Core TS 6.1.7, Transport TS 6.1).

After a device's ``POST /bs?ep=NAME`` (answered 2.04), the server sends, each a confirmable
request waiting for its answer before the next:

1. Delete ``/0`` and Delete ``/1`` (the client keeps its own bootstrap-server Security instance,
   as the TS requires and Wakaama's ``object_security.c`` does);
2. Write ``/0/1``: the DM server's Security instance (server URI, not a bootstrap server,
   security mode, PSK identity and key or the server certificate, Short Server ID);
3. Write ``/1/0``: its Server instance (Short Server ID, lifetime, notification storing,
   binding);
4. ``POST /bs``: Bootstrap-Finish.

The payloads are resources, encoded in TLV by the server (``content.encode_values``). No I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from trustfleet.errors import InvalidInput
from trustfleet.lwm2m.ports import BootstrapPlan

__all__ = [
    "DM_SECURITY_INSTANCE",
    "DM_SERVER_INSTANCE",
    "BootstrapStep",
    "ResourceValue",
    "bootstrap_steps",
]

DM_SECURITY_INSTANCE: Final = 1
"""Security object 0's instance written for the DM server (0 stays the bootstrap server's)."""
DM_SERVER_INSTANCE: Final = 0
"""Server object 1's instance written for the DM server."""
_MODE_NUMBER: Final = {"psk": 0, "cert": 2}
"""Security Mode (resource 0/x/2): 0 pre-shared key, 2 certificate."""

ResourceValue = int | bool | str | bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class BootstrapStep:
    """One request of the bootstrap sequence.

    Attributes:
        method: ``delete``, ``write`` (PUT, replace) or ``finish`` (POST /bs).
        path: The LwM2M path (``/0``, ``/0/1``, ``/bs``).
        resources: For writes, (resource id, value) in resource id order; may hold a key, so
            never shown in a repr.
    """

    method: Literal["delete", "write", "finish"]
    path: str
    resources: tuple[tuple[int, ResourceValue], ...] = ()

    def __repr__(self) -> str:
        ids = [rid for rid, _ in self.resources]
        return f"BootstrapStep(method={self.method!r}, path={self.path!r}, resources={ids})"


def _security(plan: BootstrapPlan) -> tuple[tuple[int, ResourceValue], ...]:
    if not plan.server_uri.startswith("coaps://"):
        raise InvalidInput("The DM server URI is not coaps://.", code="lwm2m.bootstrap.uri")
    if not 1 <= plan.short_server_id <= 65_534:
        raise InvalidInput("The Short Server ID is out of range.", code="lwm2m.bootstrap.ssid")
    resources: list[tuple[int, ResourceValue]] = [
        (0, plan.server_uri),
        (1, False),
        (2, _MODE_NUMBER[plan.mode]),
    ]
    if plan.mode == "psk":
        if not plan.psk_identity or not plan.psk_key:
            raise InvalidInput("A PSK plan lacks its identity or key.", code="lwm2m.bootstrap.psk")
        resources += [(3, plan.psk_identity.encode()), (4, b""), (5, plan.psk_key)]
    else:
        if not plan.server_certificate:
            raise InvalidInput(
                "A certificate plan lacks the server certificate.", code="lwm2m.bootstrap.cert"
            )
        resources += [(4, plan.server_certificate)]
    resources.append((10, plan.short_server_id))
    return tuple(resources)


def _server(plan: BootstrapPlan) -> tuple[tuple[int, ResourceValue], ...]:
    if plan.lifetime_s <= 0:
        raise InvalidInput("The lifetime is not positive.", code="lwm2m.bootstrap.lifetime")
    return ((0, plan.short_server_id), (1, plan.lifetime_s), (6, False), (7, plan.binding))


def bootstrap_steps(plan: BootstrapPlan) -> tuple[BootstrapStep, ...]:
    """The ordered requests that provision ``plan`` into a device.

    Raises:
        InvalidInput: The plan is incomplete or out of range (code ``lwm2m.bootstrap.*``).
    """
    return (
        BootstrapStep(method="delete", path="/0"),
        BootstrapStep(method="delete", path="/1"),
        BootstrapStep(method="write", path=f"/0/{DM_SECURITY_INSTANCE}", resources=_security(plan)),
        BootstrapStep(method="write", path=f"/1/{DM_SERVER_INSTANCE}", resources=_server(plan)),
        BootstrapStep(method="finish", path="/bs"),
    )
