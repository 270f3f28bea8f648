"""The registered devices as the LwM2M server reaches them: where each is, what it may do, its
notification budget, and the device-management operations on it (read, write, execute, observe;
OMA LwM2M 1.1 Core TS 6.3 and 6.4).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from trustfleet.errors import InvalidInput, NotFound, PermissionDenied
from trustfleet.lwm2m import content
from trustfleet.lwm2m._exchange import Address, Exchange
from trustfleet.lwm2m.coap import Code, Message, Option, request
from trustfleet.lwm2m.ports import DeviceAccess, Reading

__all__ = ["DeviceManagement", "decode_answer", "readings_of"]


@dataclass(slots=True)
class _Rate:
    """A token bucket for one device's notifications."""

    tokens: float
    at_s: float


def decode_answer(answer: Message, path: str) -> tuple[content.Value, ...]:
    """The values of a device's 2.05 answer (or notification) for ``path``.

    Raises:
        NotFound: Another code (code ``lwm2m.device.read``).
        InvalidInput: A payload that does not decode.
    """
    if answer.code != Code.CONTENT:
        raise NotFound(f"The device answered {answer.code} for {path}.", code="lwm2m.device.read")
    fmt = answer.content_format()
    return content.decode_values(
        answer.payload, content_format=content.TEXT if fmt is None else fmt, base_path=path
    )


def readings_of(values: Sequence[content.Value]) -> list[Reading]:
    """The values a device reported as readings for the store (opaque values are not)."""
    return [
        Reading(
            path=v.path,
            value=v.value,
            unit=v.unit,
            time=datetime.fromtimestamp(v.time, UTC) if v.time is not None else None,
        )
        for v in values
        if not isinstance(v.value, bytes)
    ]


class DeviceManagement:
    """Registered devices' addresses and access, and the server's requests to them.

    Args:
        exchange: The CoAP message layer.
        max_notifications_per_s: Each device's notification budget (a token bucket).
        clock: Monotonic seconds.
    """

    def __init__(
        self, exchange: Exchange, *, max_notifications_per_s: float, clock: Callable[[], float]
    ) -> None:
        self._exchange = exchange
        self._limit = max_notifications_per_s
        self._clock = clock
        self.address: dict[str, Address] = {}
        self.access: dict[str, DeviceAccess] = {}
        self._rates: dict[str, _Rate] = {}
        self._noted: set[str] = set()

    def move(self, device_id: str, address: Address, *, again: bool) -> bool:
        """Record the device's address; its observations at an old address (or all of them when
        it registers again: the client forgets them, Core TS 6.2.1) are dropped. True if moved."""
        old = self.address.get(device_id)
        if old is not None and (old != address or again):
            self._exchange.cancel_observations(old)
        self.address[device_id] = address
        return old != address

    def at(self, address: Address) -> str | None:
        """The registered device at ``address``, if any."""
        return next((d for d, a in self.address.items() if a == address), None)

    def forget(self, device_id: str) -> None:
        """The registration ended: its observations, access and budgets go."""
        address = self.address.pop(device_id, None)
        if address is not None:
            self._exchange.cancel_observations(address)
        self.access.pop(device_id, None)
        self._rates.pop(device_id, None)
        self._noted.discard(device_id)

    def quarantined(self, device_id: str) -> bool:
        """Whether the device is admitted under quarantine."""
        access = self.access.get(device_id)
        return access is not None and access.quarantined

    def first_note(self, device_id: str) -> bool:
        """True the first time per registration (one security event, not one per message)."""
        if device_id in self._noted:
            return False
        self._noted.add(device_id)
        return True

    def allowed(self, device_id: str) -> bool:
        """Whether a notification of the device fits its budget (and take it)."""
        now_s = self._clock()
        rate = self._rates.setdefault(device_id, _Rate(self._limit, now_s))
        rate.tokens = min(self._limit, rate.tokens + (now_s - rate.at_s) * self._limit)
        rate.at_s = now_s
        if rate.tokens < 1:
            return False
        rate.tokens -= 1
        return True

    def target(self, device_id: str, path: str) -> Address:
        """The registered device's address; a quarantined device only for object 5.

        Raises:
            NotFound: Not registered (code ``lwm2m.device.unregistered``).
            PermissionDenied: Quarantined and ``path`` is not the firmware object
                (code ``lwm2m.device.quarantined``).
        """
        address = self.address.get(device_id)
        if address is None:
            raise NotFound("The device is not registered.", code="lwm2m.device.unregistered")
        if self.quarantined(device_id) and not path.startswith("/5/"):
            raise PermissionDenied(
                "The device is quarantined: only registration and firmware update.",
                code="lwm2m.device.quarantined",
            )
        return address

    async def read(self, device_id: str, path: str) -> tuple[content.Value, ...]:
        """Read a path of a registered device (``/3/0``, ``/3303/0/5700``).

        Raises:
            NotFound: Not registered, or the device answered 4.04.
            Unavailable: No answer.
            InvalidInput: An answer that does not decode.
        """
        answer = await self._exchange.request(
            self.target(device_id, path), request(Code.GET, path=path, message_id=0)
        )
        return decode_answer(answer, path)

    async def write(self, device_id: str, path: str, values: Sequence[content.Value]) -> None:
        """Write (replace) resources of a registered device, in TLV.

        Raises:
            NotFound: Not registered. Unavailable: No answer. InvalidInput: The device refused.
        """
        payload = content.encode_values(values, content_format=content.LWM2M_TLV, base_path=path)
        answer = await self._exchange.request(
            self.target(device_id, path),
            request(
                Code.PUT, path=path, message_id=0, payload=payload, content_format=content.LWM2M_TLV
            ),
        )
        if answer.code != Code.CHANGED:
            raise InvalidInput(
                f"The device answered {answer.code} to a write.", code="lwm2m.device.write"
            )

    async def execute(self, device_id: str, path: str, *, arguments: bytes = b"") -> None:
        """Execute a resource (``/3/0/4`` reboot, ``/5/0/2`` update).

        Raises:
            NotFound: Not registered. Unavailable: No answer. InvalidInput: The device refused.
        """
        answer = await self._exchange.request(
            self.target(device_id, path),
            request(Code.POST, path=path, message_id=0, payload=arguments),
        )
        if answer.code != Code.CHANGED:
            raise InvalidInput(
                f"The device answered {answer.code} to execute.", code="lwm2m.device.execute"
            )

    async def observe(
        self, device_id: str, path: str, *, on_notify: Callable[[Message], None]
    ) -> tuple[content.Value, ...]:
        """Observe a path; its current values; each notification goes to ``on_notify``."""
        answer = await self._exchange.request(
            self.target(device_id, path),
            request(Code.GET, path=path, message_id=0, options=[(int(Option.OBSERVE), b"")]),
            observe=lambda _address, message: on_notify(message),
        )
        return decode_answer(answer, path)
