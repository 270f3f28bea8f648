"""The LwM2M server: DTLS + CoAP + the LwM2M interfaces over a :class:`Lwm2mBackend`.

Bootstrap (``POST /bs``, then Delete/Write/Bootstrap-Finish), registration (``/rd``), device
management (read, write, execute, observe; notifications stored as readings), firmware update
(object 5 pull: Package URI, State/Update Result observed, Update executed; packages served
block-wise under ``/fw/``), quarantine and revocation. docs/lwm2m.md, "LwM2M server".

The parts: the bootstrap interface (``_bootstrap_flow.py``), the devices and the operations on
them (``_devices.py``), firmware jobs and packages (``_firmware_driver.py``), the message layer
(``_exchange.py``). Errors of a request are mapped to a CoAP code at one place
(``_responses.coap_code``); backend calls run in a worker thread except the PSK lookup, which
runs inside the handshake.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Final, Literal

from trustfleet.errors import InvalidInput, NotFound, PermissionDenied, TrustFleetError
from trustfleet.lwm2m import content
from trustfleet.lwm2m._bootstrap_flow import BootstrapFlow
from trustfleet.lwm2m._devices import DeviceManagement, decode_answer, readings_of
from trustfleet.lwm2m._exchange import Address, BlockAssembler, Exchange, ExchangeConfig
from trustfleet.lwm2m._firmware_driver import FirmwareDriver
from trustfleet.lwm2m._responses import coap_code, respond
from trustfleet.lwm2m.coap import Code, Message, Option
from trustfleet.lwm2m.dtls import DtlsServer, DtlsServerConfig
from trustfleet.lwm2m.links import parse_links
from trustfleet.lwm2m.ports import DeviceAccess, Lwm2mBackend, PeerIdentity
from trustfleet.lwm2m.registration import (
    LifetimeBounds,
    RegistrationTable,
    clamp_lifetime,
    expiry_grace_s,
    location_of,
    object_paths,
    parse_register_query,
    parse_update_query,
)
from trustfleet.settings.lwm2m import Lwm2mSettings

__all__ = ["Lwm2mServer", "ServerStats"]

logger = logging.getLogger(__name__)

_KNOWN_OPTIONS: Final = frozenset(int(o) for o in Option)
_DEVICE_PATH: Final = "/3/0"
_DropReason = Literal["deregistered", "expired", "revoked", "quarantined"]


@dataclass(slots=True)
class ServerStats:
    """What the server counted (besides the DTLS and message-layer counters)."""

    requests: int = 0
    refused: dict[str, int] = field(default_factory=dict)
    readings_stored: int = 0
    notifications_dropped: int = 0


class Lwm2mServer:
    """The LwM2M 1.1 server of ``lwm2m#0``.

    Args:
        settings: ``[lwm2m]``.
        backend: The service behind it.
        dtls: The DTLS endpoint (``DtlsServerConfig.from_settings``: ``[lwm2m]`` and the
            broker's device trust files).
        clock: Monotonic seconds (message layer, rates).
        now: Wall-clock time for the backend's records.
    """

    def __init__(
        self,
        settings: Lwm2mSettings,
        backend: Lwm2mBackend,
        *,
        dtls: DtlsServerConfig,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        cfg = settings
        self._cfg = cfg
        self._backend = backend
        self._clock = clock
        self._now = now
        self._dtls = DtlsServer(
            dtls,
            psk_lookup=self._psk,
            on_record=self._on_record,
            on_refusal=self._refuse,
            clock=clock,
        )
        self._exchange = Exchange(
            ExchangeConfig(
                ack_timeout_s=cfg.ack_timeout_s,
                max_retransmit=cfg.max_retransmit,
                exchange_lifetime_s=cfg.exchange_lifetime_s,
                max_payload_bytes=cfg.max_payload_bytes,
            ),
            send=self._dtls.send,
            handler=self._handle,
            clock=clock,
        )
        self._blocks = BlockAssembler(
            max_payload_bytes=cfg.max_payload_bytes,
            max_entries=max(16, min(cfg.max_peers, 4096)),
            lifetime_s=cfg.exchange_lifetime_s,
        )
        self._table = RegistrationTable(max_registrations=cfg.max_registrations)
        self._bounds = LifetimeBounds(
            cfg.min_lifetime_s, cfg.max_lifetime_s, cfg.default_lifetime_s
        )
        self._grace_s = expiry_grace_s(
            ack_timeout_s=cfg.ack_timeout_s, max_retransmit=cfg.max_retransmit
        )
        self._devices = DeviceManagement(
            self._exchange, max_notifications_per_s=cfg.max_notifications_per_s, clock=clock
        )
        self._tasks: set[asyncio.Task[None]] = set()
        self._cursor = 0
        self._bootstrap = BootstrapFlow(
            exchange=self._exchange, dtls=self._dtls, backend=backend, spawn=self._spawn, now=now
        )
        self._firmware = FirmwareDriver(self, backend, spawn=self._spawn, now=now)
        self.stats = ServerStats()
        self.address: Address | None = None

    # -- lifecycle ----------------------------------------------------------------------------
    async def start(self) -> Address:
        """Bind the DTLS endpoint and start the housekeeping loops; the bound address."""
        self.address = await self._dtls.start()
        self._cursor = (await asyncio.to_thread(self._backend.access_changes, 0))[1]
        self._spawn(self._every(self._cfg.revocation_poll_s, self._housekeeping))
        self._spawn(self._every(self._cfg.firmware_check_s, self._firmware_check))
        return self.address

    async def close(self) -> None:
        """Stop the loops, close every session (close_notify) and the socket."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._exchange.close()
        await self._dtls.close()

    def _spawn(self, coro: Coroutine[object, object, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _every(
        self, period_s: float, step: Callable[[], Coroutine[object, object, None]]
    ) -> None:
        while True:
            await asyncio.sleep(period_s)
            try:
                await step()
            except TrustFleetError as exc:
                logger.warning("lwm2m: %s", exc.one_line())

    def registrations(self) -> list[str]:
        """The device ids registered now."""
        return [r.device_id for r in self._table]

    def dtls_stats(self) -> object:
        """The DTLS server's counters."""
        return self._dtls.stats()

    # -- DTLS hooks ---------------------------------------------------------------------------
    def _psk(self, identity: str) -> bytes | None:
        credential = self._backend.psk_credential(identity)
        return credential.key if credential is not None else None

    def _on_record(self, peer: PeerIdentity, data: bytes) -> None:
        self._exchange.receive(peer.address, data)

    def _refuse(self, address: Address, code: str, identity: str | None, detail: str) -> None:
        """A refusal seen in a callback (the DTLS handshake's): recorded in the security log
        off the event loop (a store write must not hold up other devices)."""
        self._spawn(self._record_refusal(address, code, identity, detail))

    async def _record_refusal(
        self, address: Address, code: str, identity: str | None, detail: str
    ) -> None:
        self.stats.refused[code] = self.stats.refused.get(code, 0) + 1
        now = self._now()
        try:
            await asyncio.to_thread(
                self._backend.record_refusal,
                address=f"{address[0]}:{address[1]}",
                code=code,
                identity=identity,
                detail=detail,
                now=now,
            )
        except TrustFleetError as exc:
            logger.warning("cannot record a refusal: %s", exc.one_line())

    # -- requests from devices ----------------------------------------------------------------
    async def _handle(self, address: Address, message: Message) -> Message | None:
        self.stats.requests += 1
        peer = self._dtls.peer(address)
        if peer is None or self._bootstrap.finishing((address, peer.identity)):
            return None
        if message.unknown_critical(_KNOWN_OPTIONS):
            return respond(message, Code.BAD_OPTION)
        try:
            return await self._route(peer, message)
        except TrustFleetError as exc:
            if isinstance(exc, PermissionDenied):
                # recorded before the answer leaves, like the other security events
                await self._record_refusal(
                    address, exc.code or "lwm2m.denied", peer.identity, exc.message
                )
            return respond(message, coap_code(exc))

    async def _route(self, peer: PeerIdentity, message: Message) -> Message:
        path, method = message.uri_path(), message.code
        location = location_of(path)
        if path in (("bs",), ("rd",)) and method == Code.POST:
            entry = self._bootstrap.request if path == ("bs",) else self._register
            return await entry(peer, message)
        if location is not None and method == Code.POST:
            return await self._update(peer, message, location)
        if location is not None and method == Code.DELETE:
            return await self._deregister(peer, message, location)
        if len(path) == 4 and path[0] == "fw" and path[3] in ("manifest", "image"):
            if method == Code.GET:
                if self._devices.at(peer.address) is None:
                    raise PermissionDenied(
                        "Firmware only for registered devices.", code="lwm2m.fw.denied"
                    )
                return await self._firmware.serve(
                    message, model=path[1], version=path[2], part=path[3],
                    block_size=self._cfg.block_size,
                )  # fmt: skip
            location = "fw"
        if path in (("bs",), ("rd",)) or location is not None:
            return respond(message, Code.METHOD_NOT_ALLOWED)
        return respond(message, Code.NOT_FOUND)

    async def _payload(self, peer: PeerIdentity, message: Message) -> bytes | None:
        """The whole payload (Block1 assembled), or None while blocks are still coming."""
        block = message.block1()
        if block is None:
            if len(message.payload) > self._cfg.max_payload_bytes:
                raise InvalidInput("The payload is too large.", code="lwm2m.coap.too_large")
            return message.payload
        return self._blocks.add(
            peer.address,
            message.uri_path() + message.uri_query(),
            num=block.num,
            size=block.size,
            more=block.more,
            payload=message.payload,
            now=self._clock(),
        )

    async def _register(self, peer: PeerIdentity, message: Message) -> Message:
        query = parse_register_query(message.uri_query())
        payload = await self._payload(peer, message)
        if payload is None:
            return self._continue(message)
        links = parse_links(payload, max_links=self._cfg.max_object_links + 1)
        objects = object_paths([link.path for link in links], max_links=self._cfg.max_object_links)
        now = self._now()
        access = await asyncio.to_thread(
            self._backend.admit, peer, endpoint=query.endpoint, purpose="dm", now=now
        )
        registration, previous = self._table.register(
            device_id=access.device_id,
            query=query,
            objects=objects,
            lifetime_s=clamp_lifetime(query.lifetime_s, self._bounds),
            address=f"{peer.address[0]}:{peer.address[1]}",
            mode=peer.mode,
            now=now,
        )
        self._devices.access[access.device_id] = access
        self._devices.move(access.device_id, peer.address, again=True)
        await asyncio.to_thread(
            self._backend.record_registration, registration, previous=previous, now=now
        )
        self._spawn(self._after_registration(access.device_id))
        options = [
            (int(Option.LOCATION_PATH), part.encode()) for part in registration.location.split("/")
        ]
        return respond(message, Code.CREATED, options=options)

    def _continue(self, message: Message) -> Message:
        block = message.block1()
        assert block is not None  # noqa: S101  # only called while blocks are coming
        return respond(message, Code.CONTINUE, options=[(int(Option.BLOCK1), block.encode())])

    async def _admitted_owner(self, peer: PeerIdentity, location: str) -> DeviceAccess:
        registration = self._table.at(location)
        if registration is None:
            raise NotFound("No registration at this location.", code="lwm2m.rd.unknown")
        access = await asyncio.to_thread(
            self._backend.admit, peer, endpoint=registration.endpoint, purpose="dm", now=self._now()
        )
        self._table.owned(location, device_id=access.device_id)
        self._devices.access[access.device_id] = access
        return access

    async def _update(self, peer: PeerIdentity, message: Message, location: str) -> Message:
        query = parse_update_query(message.uri_query())
        payload = await self._payload(peer, message)
        if payload is None:
            return self._continue(message)
        access = await self._admitted_owner(peer, location)
        objects = None
        if payload:
            links = parse_links(payload, max_links=self._cfg.max_object_links + 1)
            objects = object_paths([k.path for k in links], max_links=self._cfg.max_object_links)
        now = self._now()
        current, previous = self._table.update(
            location,
            device_id=access.device_id,
            lifetime_s=None
            if query.lifetime_s is None
            else clamp_lifetime(query.lifetime_s, self._bounds),
            binding=query.binding,
            objects=objects,
            address=f"{peer.address[0]}:{peer.address[1]}",
            now=now,
        )
        moved = self._devices.move(access.device_id, peer.address, again=False)
        await asyncio.to_thread(
            self._backend.record_registration, current, previous=previous, now=now
        )
        if moved or objects is not None:
            self._spawn(self._after_registration(access.device_id))
        return respond(message, Code.CHANGED)

    async def _deregister(self, peer: PeerIdentity, message: Message, location: str) -> Message:
        access = await self._admitted_owner(peer, location)
        await self._drop(access.device_id, reason="deregistered")
        return respond(message, Code.DELETED)

    async def _drop(self, device_id: str, *, reason: _DropReason) -> None:
        if self._table.remove(device_id) is None:
            return
        self._devices.forget(device_id)
        self._firmware.dropped(device_id)
        await asyncio.to_thread(
            self._backend.record_deregistration,
            device_id,
            reason=reason,
            now=self._now(),
        )

    # -- device management (server-initiated; the operations are DeviceManagement's) ---------
    async def read(self, device_id: str, path: str) -> tuple[content.Value, ...]:
        """Read a path of a registered device (see :meth:`DeviceManagement.read`)."""
        return await self._devices.read(device_id, path)

    async def write(self, device_id: str, path: str, values: Sequence[content.Value]) -> None:
        """Write resources of a registered device (see :meth:`DeviceManagement.write`)."""
        await self._devices.write(device_id, path, values)

    async def execute(self, device_id: str, path: str, *, arguments: bytes = b"") -> None:
        """Execute a resource (see :meth:`DeviceManagement.execute`)."""
        await self._devices.execute(device_id, path, arguments=arguments)

    async def observe(self, device_id: str, path: str) -> tuple[content.Value, ...]:
        """Observe a path; its current values, and every notification goes to the store."""
        return await self._devices.observe(
            device_id, path, on_notify=partial(self._notified, device_id, path)
        )

    async def _after_registration(self, device_id: str) -> None:
        registration = self._table.get(device_id)
        access = self._devices.access.get(device_id)
        if registration is None or access is None:
            return
        listed = {p.split("/")[1] for p in registration.objects}
        steps: list[Callable[[], Coroutine[object, object, None]]] = []
        if not access.quarantined:
            steps.append(lambda: self._read_and_store(device_id, _DEVICE_PATH))
            steps += [
                partial(self._observe_and_store, device_id, path)
                for path in self._cfg.observe
                if path.split("/")[1] in listed
            ]
        if self._firmware.active(device_id):
            steps.append(lambda: self._firmware.observe(device_id))
        elif "5" in listed:
            self._firmware.registered(device_id)  # its State is read at the next check
        for step in steps:  # one refused path (Wakaama: 4.04 for /3303) does not stop the others
            try:
                await step()
            except TrustFleetError as exc:
                logger.warning("lwm2m: device %s: %s", device_id, exc.one_line())

    async def _read_and_store(self, device_id: str, path: str) -> None:
        await self._store(device_id, await self.read(device_id, path))

    async def _observe_and_store(self, device_id: str, path: str) -> None:
        await self._store(device_id, await self.observe(device_id, path))

    def _notified(self, device_id: str, path: str, message: Message) -> None:
        try:
            values = decode_answer(message, path)
        except TrustFleetError:
            self.stats.notifications_dropped += 1
            return
        if path.startswith("/5/"):
            self._firmware.report(device_id, values)
            return
        if self._devices.quarantined(device_id):
            self._quarantine_drop(device_id)
            return
        if device_id not in self._devices.access or not self._devices.allowed(device_id):
            self.stats.notifications_dropped += 1
            return
        self._spawn(self._store(device_id, values))  # the store write off the event loop

    def _quarantine_drop(self, device_id: str) -> None:
        """A quarantined device's notification is not stored; the first one of each
        registration says so in the security log (the backend bounds refusals too)."""
        self.stats.notifications_dropped += 1
        if not self._devices.first_note(device_id):
            return
        address = self._devices.address.get(device_id)
        if address is not None:
            self._refuse(
                address, "lwm2m.quarantine.notification", device_id,
                "notifications of a quarantined device are not stored",
            )  # fmt: skip

    async def _store(self, device_id: str, values: Sequence[content.Value]) -> None:
        readings = readings_of(values)
        if not readings:
            return
        try:
            self.stats.readings_stored += await asyncio.to_thread(
                self._backend.store_readings, device_id, readings, now=self._now()
            )
        except TrustFleetError as exc:
            logger.warning("lwm2m: readings of %s not stored: %s", device_id, exc.one_line())

    async def _firmware_check(self) -> None:
        await self._firmware.check(list(self._table))

    # -- housekeeping: expiry and revocation ------------------------------------------------------
    async def _housekeeping(self) -> None:
        self._dtls.reload_trust_if_changed()  # a revocation's new CRL, for new handshakes
        now = self._now()
        for registration in self._table.expired(now=now, grace_s=self._grace_s):
            await self._drop(registration.device_id, reason="expired")
        changed, self._cursor = await asyncio.to_thread(self._backend.access_changes, self._cursor)
        for device_id in changed:
            await self._recheck(device_id)

    async def _recheck(self, device_id: str) -> None:
        registration = self._table.get(device_id)
        address = self._devices.address.get(device_id)
        peer = self._dtls.peer(address) if address is not None else None
        if registration is not None and peer is not None:
            try:
                access = await asyncio.to_thread(
                    self._backend.admit,
                    peer,
                    endpoint=registration.endpoint,
                    purpose="dm",
                    now=self._now(),
                )
            except PermissionDenied:
                pass
            else:
                self._devices.access[device_id] = access
                return
        closed = self._dtls.close_peers(
            lambda p: (
                p.identity == device_id
                or p.identity.startswith(f"{device_id}:")
                or p.address == address
            )
        )
        if address is not None:
            self._exchange.forget_peer(address)
        logger.info("lwm2m: access of %s ended; %d sessions closed", device_id, closed)
        await self._drop(device_id, reason="revoked")
