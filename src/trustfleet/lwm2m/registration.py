"""Pure rules of the LwM2M registration interface (OMA LwM2M 1.1 Core TS 6.2, Transport TS 6.2).

Register (``POST /rd?ep=&lt=&lwm2m=&b=``), Update (``POST /rd/<id>``) and De-register
(``DELETE /rd/<id>``): query parsing, the lifetime clamp, location ids, expiry, and the bounded
in-memory table the server keeps. No I/O; time is a parameter.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Final

from trustfleet.errors import InvalidInput, NotFound, PermissionDenied, Unavailable
from trustfleet.lwm2m.ports import Registration, SecurityMode

__all__ = [
    "LOCATION_PREFIX",
    "LifetimeBounds",
    "RegisterQuery",
    "RegistrationTable",
    "UpdateQuery",
    "clamp_lifetime",
    "expiry_grace_s",
    "is_expired",
    "location_of",
    "new_location",
    "object_paths",
    "parse_register_query",
    "parse_update_query",
]

LOCATION_PREFIX: Final = "rd"
"""The registration interface's root: registrations live at ``/rd/<16 hex>``."""
_ENDPOINT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")
_LOCATION_ID = re.compile(r"[0-9a-f]{16}")
_VERSIONS: Final = frozenset({"1.0", "1.1", "1.2"})
_BINDING = re.compile(r"[UTSNQ]{1,4}")
_OBJECT_PATH = re.compile(r"/(\d{1,5})(?:/(\d{1,5}))?")
_MAX_QUERY_ITEMS: Final = 16
_MAX_LIFETIME_DIGITS: Final = 10


@dataclass(frozen=True, slots=True)
class LifetimeBounds:
    """The lifetime clamp: ``[lwm2m] min_lifetime_s``, ``max_lifetime_s``,
    ``default_lifetime_s``."""

    min_s: int
    max_s: int
    default_s: int


@dataclass(frozen=True, slots=True, kw_only=True)
class RegisterQuery:
    """The query of a Register request.

    Attributes:
        endpoint: ``ep``, the endpoint client name (must equal the admitted device's id).
        lifetime_s: ``lt`` as sent, or None.
        lwm2m_version: ``lwm2m`` (``1.0`` if absent, as the TS says).
        binding: ``b`` (``U`` if absent).
        queue_mode: ``Q`` was sent (1.1 queue mode).
    """

    endpoint: str
    lifetime_s: int | None
    lwm2m_version: str
    binding: str
    queue_mode: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class UpdateQuery:
    """The query of an Update request: only what changed is sent."""

    lifetime_s: int | None
    binding: str | None


def _pairs(query: Sequence[str]) -> Iterator[tuple[str, str | None]]:
    if len(query) > _MAX_QUERY_ITEMS:
        raise InvalidInput("Too many query parameters.", code="lwm2m.rd.query")
    for item in query:
        name, sep, value = item.partition("=")
        yield name, (value if sep else None)


def _lifetime(value: str | None) -> int:
    if value is None or not value.isascii() or not value.isdigit():
        raise InvalidInput("The lifetime 'lt' is not a number.", code="lwm2m.rd.lifetime")
    if len(value) > _MAX_LIFETIME_DIGITS:
        raise InvalidInput("The lifetime 'lt' is too large.", code="lwm2m.rd.lifetime")
    return int(value)


def _binding(value: str | None) -> str:
    if value is None or not _BINDING.fullmatch(value):
        raise InvalidInput("The binding 'b' is not one LwM2M knows.", code="lwm2m.rd.binding")
    return value


def parse_register_query(query: Sequence[str]) -> RegisterQuery:
    """The Register query (``ep`` required; ``lt``, ``lwm2m``, ``b``, ``Q`` optional).

    Unknown parameters (``sms``, ``apn``, ...) are ignored, as the TS allows.

    Raises:
        InvalidInput: No or a malformed ``ep``, a malformed ``lt``/``b``, an unknown version,
            a repeated parameter (code ``lwm2m.rd.*``).
    """
    seen: dict[str, str | None] = {}
    for name, value in _pairs(query):
        if name in seen:
            raise InvalidInput(f"The parameter {name!r} is repeated.", code="lwm2m.rd.query")
        seen[name] = value
    endpoint = seen.get("ep")
    if endpoint is None or not _ENDPOINT.fullmatch(endpoint):
        raise InvalidInput("The endpoint name 'ep' is missing or malformed.", code="lwm2m.rd.ep")
    version = seen.get("lwm2m", "1.0") or ""
    if version not in _VERSIONS:
        raise InvalidInput("The LwM2M version is not 1.0, 1.1 or 1.2.", code="lwm2m.rd.version")
    return RegisterQuery(
        endpoint=endpoint,
        lifetime_s=_lifetime(seen["lt"]) if "lt" in seen else None,
        lwm2m_version=version,
        binding=_binding(seen["b"]) if "b" in seen else "U",
        queue_mode="Q" in seen,
    )


def parse_update_query(query: Sequence[str]) -> UpdateQuery:
    """The Update query (``lt``, ``b``; others ignored).

    Raises:
        InvalidInput: A malformed ``lt`` or ``b`` (code ``lwm2m.rd.*``).
    """
    lifetime: int | None = None
    binding: str | None = None
    for name, value in _pairs(query):
        if name == "lt":
            lifetime = _lifetime(value)
        elif name == "b":
            binding = _binding(value)
    return UpdateQuery(lifetime_s=lifetime, binding=binding)


def clamp_lifetime(requested_s: int | None, bounds: LifetimeBounds) -> int:
    """The granted lifetime: the default if none was asked, else clamped to the bounds."""
    if requested_s is None:
        requested_s = bounds.default_s
    return max(bounds.min_s, min(bounds.max_s, requested_s))


def new_location(token: Callable[[int], str] = secrets.token_hex) -> str:
    """A fresh registration location, ``rd/<16 lowercase hex>``."""
    return f"{LOCATION_PREFIX}/{token(8)}"


def location_of(path: Sequence[str]) -> str | None:
    """The location named by a request's Uri-Path (``("rd", "<16 hex>")``), or None."""
    if len(path) == 2 and path[0] == LOCATION_PREFIX and _LOCATION_ID.fullmatch(path[1]):
        return f"{LOCATION_PREFIX}/{path[1]}"
    return None


def object_paths(links: Sequence[str], *, max_links: int) -> tuple[str, ...]:
    """The object and instance paths of a registration's links (``/3/0``, ``/3303``).

    The root link (``</>``, with ``rt="oma.lwm2m"``) and links with an alternate root path are
    skipped; object 0 (Security) is never listed by a client, and is dropped if it is.

    Raises:
        InvalidInput: More links than ``max_links``, or a link that is not an object path
            (code ``lwm2m.rd.links``).
    """
    if len(links) > max_links:
        raise InvalidInput("The registration lists too many objects.", code="lwm2m.rd.links")
    paths: list[str] = []
    for link in links:
        if link == "/":
            continue
        match = _OBJECT_PATH.fullmatch(link)
        if match is None:
            raise InvalidInput("A registration link is not an object path.", code="lwm2m.rd.links")
        if int(match.group(1)) == 0 or int(match.group(1)) > 65_534:
            continue
        paths.append(link)
    return tuple(dict.fromkeys(paths))


def expiry_grace_s(*, ack_timeout_s: float, max_retransmit: int) -> float:
    """The grace after a lifetime before a registration is dropped: RFC 7252 MAX_TRANSMIT_WAIT
    (an Update sent at the last moment may still be retransmitted that long)."""
    return float(ack_timeout_s * ((1 << (max_retransmit + 1)) - 1) * 1.5)


def is_expired(registration: Registration, *, now: datetime, grace_s: float) -> bool:
    """Whether the registration's lifetime (plus the grace) has passed since its last update."""
    deadline = registration.updated_at + timedelta(seconds=registration.lifetime_s + grace_s)
    return now > deadline


class RegistrationTable:
    """The registrations the server holds, bounded; one per device, found by location or device.

    Args:
        max_registrations: ``[lwm2m] max_registrations``.
        location: Makes a fresh location (tests inject one).
    """

    def __init__(
        self, *, max_registrations: int, location: Callable[[], str] = new_location
    ) -> None:
        self._max = max_registrations
        self._location = location
        self._by_device: dict[str, Registration] = {}
        self._by_location: dict[str, str] = {}

    def __len__(self) -> int:
        return len(self._by_device)

    def __iter__(self) -> Iterator[Registration]:
        return iter(list(self._by_device.values()))

    def get(self, device_id: str) -> Registration | None:
        """The device's registration, if any."""
        return self._by_device.get(device_id)

    def register(
        self,
        *,
        device_id: str,
        query: RegisterQuery,
        objects: tuple[str, ...],
        lifetime_s: int,
        address: str,
        mode: SecurityMode,
        now: datetime,
    ) -> tuple[Registration, Registration | None]:
        """Register (again): a new location; a previous registration of the device is replaced.

        Returns:
            The registration and the one it replaced (None if new).

        Raises:
            Unavailable: The table is full (code ``lwm2m.rd.full``; CoAP 5.03).
        """
        previous = self._by_device.get(device_id)
        if previous is None and len(self._by_device) >= self._max:
            raise Unavailable("Too many registrations.", code="lwm2m.rd.full")
        if previous is not None:
            self._by_location.pop(previous.location, None)
        location = self._location()
        while location in self._by_location:
            location = self._location()
        registration = Registration(
            device_id=device_id,
            endpoint=query.endpoint,
            location=location,
            lifetime_s=lifetime_s,
            binding=query.binding,
            lwm2m_version=query.lwm2m_version,
            objects=objects,
            address=address,
            mode=mode,
            registered_at=now,
            updated_at=now,
        )
        self._by_device[device_id] = registration
        self._by_location[location] = device_id
        return registration, previous

    def at(self, location: str) -> Registration | None:
        """The registration at ``location``, whoever owns it."""
        owner = self._by_location.get(location)
        return self._by_device.get(owner) if owner is not None else None

    def owned(self, location: str, *, device_id: str) -> Registration:
        """The registration at ``location``, which must belong to ``device_id``.

        Raises:
            NotFound: No registration there (code ``lwm2m.rd.unknown``; CoAP 4.04).
            PermissionDenied: Another device's registration (code ``lwm2m.rd.not_owner``; 4.03).
        """
        owner = self._by_location.get(location)
        if owner is None:
            raise NotFound("No registration at this location.", code="lwm2m.rd.unknown")
        if owner != device_id:
            raise PermissionDenied("Another device's registration.", code="lwm2m.rd.not_owner")
        return self._by_device[owner]

    def update(
        self,
        location: str,
        *,
        device_id: str,
        lifetime_s: int | None,
        binding: str | None,
        objects: tuple[str, ...] | None,
        address: str,
        now: datetime,
    ) -> tuple[Registration, Registration]:
        """Update: refresh ``updated_at`` and what was sent. Returns (new, previous).

        Raises:
            NotFound: No registration there.
            PermissionDenied: Another device's registration.
        """
        previous = self.owned(location, device_id=device_id)
        current = replace(
            previous,
            lifetime_s=previous.lifetime_s if lifetime_s is None else lifetime_s,
            binding=previous.binding if binding is None else binding,
            objects=previous.objects if objects is None else objects,
            address=address,
            updated_at=now,
        )
        self._by_device[device_id] = current
        return current, previous

    def remove(self, device_id: str) -> Registration | None:
        """Drop the device's registration; the one dropped, if any."""
        registration = self._by_device.pop(device_id, None)
        if registration is not None:
            self._by_location.pop(registration.location, None)
        return registration

    def expired(self, *, now: datetime, grace_s: float) -> list[Registration]:
        """The registrations whose lifetime has passed (not removed: the caller removes them)."""
        return [r for r in self._by_device.values() if is_expired(r, now=now, grace_s=grace_s)]
