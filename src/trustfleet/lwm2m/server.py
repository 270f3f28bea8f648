"""The LwM2M server: DTLS + CoAP + the LwM2M interfaces over a :class:`Lwm2mBackend`.

Bootstrap (``POST /bs``, then Delete/Write/Bootstrap-Finish), registration (``/rd``), device
management (read, write, execute, observe; notifications stored as readings), firmware update
(object 5 pull: Package URI, State/Update Result observed, Update executed; packages served
block-wise under ``/fw/``), quarantine and revocation. docs/lwm2m.md, "LwM2M server".

Errors of a request are mapped to a CoAP code at one place (:func:`_coap_code`); backend calls
run in a worker thread except the PSK lookup, which runs inside the handshake.
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

from trustfleet.errors import (
    InvalidInput,
    NotFound,
    PermissionDenied,
    TrustFleetError,
    Unavailable,
)
from trustfleet.lwm2m import content
from trustfleet.lwm2m._blockwise import block_slice, etag_for, read_block
from trustfleet.lwm2m._exchange import Address, BlockAssembler, Exchange, ExchangeConfig
from trustfleet.lwm2m._firmware_driver import FirmwareDriver
from trustfleet.lwm2m.bootstrap import BootstrapStep, bootstrap_steps
from trustfleet.lwm2m.coap import Code, Message, MessageType, Option, request, response_to
from trustfleet.lwm2m.dtls import DtlsServer, DtlsServerConfig
from trustfleet.lwm2m.links import parse_links
from trustfleet.lwm2m.ports import DeviceAccess, Lwm2mBackend, PeerIdentity, Reading
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


_CODE_BY_ERROR: Final[dict[str, int]] = {
    "lwm2m.coap.too_large": Code.REQUEST_ENTITY_TOO_LARGE,
    "lwm2m.coap.incomplete": Code.REQUEST_ENTITY_INCOMPLETE,
}
_CODE_BY_CATEGORY: Final[tuple[tuple[type[TrustFleetError], int], ...]] = (
    (PermissionDenied, Code.FORBIDDEN),
    (NotFound, Code.NOT_FOUND),
    (Unavailable, Code.SERVICE_UNAVAILABLE),
    (InvalidInput, Code.BAD_REQUEST),
)


def _respond(
    req: Message,
    code: int,
    *,
    payload: bytes = b"",
    options: Sequence[tuple[int, bytes]] = (),
    content_format: int | None = None,
) -> Message:
    """The response to a device's request: piggybacked on the ACK of a CON request, a NON
    response to a NON request (its message id is assigned by the message layer)."""
    return response_to(
        req, code, payload=payload, options=options, content_format=content_format,
        message_id=None if req.type == MessageType.CON else 0,
    )  # fmt: skip


def _coap_code(exc: TrustFleetError) -> int:
    """The one mapping of errors to CoAP response codes."""
    if exc.code in _CODE_BY_ERROR:
        return _CODE_BY_ERROR[exc.code]
    for category, code in _CODE_BY_CATEGORY:
        if isinstance(exc, category):
            return code
    return Code.INTERNAL_SERVER_ERROR


@dataclass(slots=True)
class _Rate:
    """A token bucket for one device's notifications."""

    tokens: float
    at_s: float


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
            on_refusal=self._on_refusal,
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
        self._access: dict[str, DeviceAccess] = {}
        self._address: dict[str, Address] = {}
        self._rates: dict[str, _Rate] = {}
        self._quarantine_noted: set[str] = set()
        self._finishing: set[tuple[Address, str]] = set()
        """Bootstrap sessions (address, PSK identity) Bootstrap-Finish was sent on: their
        requests are not answered (the session is about to close, see ``_run_bootstrap``)."""
        self._tasks: set[asyncio.Task[None]] = set()
        self._cursor = 0
        self._trust_files = tuple(
            path for path in (dtls.crl_file, dtls.ca_file) if path is not None
        )
        self._trust_stamp = self._stamp_trust()
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

    def _on_refusal(
        self, address: tuple[str, int], code: str, identity: str | None, detail: str
    ) -> None:
        self._refuse(address, code, identity, detail)

    def _refuse(self, address: Address, code: str, identity: str | None, detail: str) -> None:
        self.stats.refused[code] = self.stats.refused.get(code, 0) + 1
        try:
            self._backend.record_refusal(
                address=f"{address[0]}:{address[1]}",
                code=code,
                identity=identity,
                detail=detail,
                now=self._now(),
            )
        except TrustFleetError as exc:
            logger.warning("cannot record a refusal: %s", exc.one_line())

    # -- requests from devices ----------------------------------------------------------------
    async def _handle(self, address: Address, message: Message) -> Message | None:
        self.stats.requests += 1
        peer = self._dtls.peer(address)
        if peer is None or (address, peer.identity) in self._finishing:
            return None
        if message.unknown_critical(_KNOWN_OPTIONS):
            return _respond(message, Code.BAD_OPTION)
        try:
            return await self._route(peer, message)
        except TrustFleetError as exc:
            if isinstance(exc, PermissionDenied):
                self._refuse(address, exc.code or "lwm2m.denied", peer.identity, exc.message)
            return _respond(message, _coap_code(exc))

    async def _route(self, peer: PeerIdentity, message: Message) -> Message:
        path, method = message.uri_path(), message.code
        location = location_of(path)
        if path in (("bs",), ("rd",)) and method == Code.POST:
            entry = self._bootstrap_request if path == ("bs",) else self._register
            return await entry(peer, message)
        if location is not None and method == Code.POST:
            return await self._update(peer, message, location)
        if location is not None and method == Code.DELETE:
            return await self._deregister(peer, message, location)
        if len(path) == 4 and path[0] == "fw" and path[3] in ("manifest", "image"):
            if method == Code.GET:
                return await self._serve_firmware(peer, message, path[1], path[2], path[3])
            location = "fw"
        if path in (("bs",), ("rd",)) or location is not None:
            return _respond(message, Code.METHOD_NOT_ALLOWED)
        return _respond(message, Code.NOT_FOUND)

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

    async def _bootstrap_request(self, peer: PeerIdentity, message: Message) -> Message:
        endpoint = next((q[3:] for q in message.uri_query() if q.startswith("ep=")), None)
        if not endpoint:
            raise InvalidInput("Bootstrap-Request without 'ep'.", code="lwm2m.bs.ep")
        now = self._now()
        access = await asyncio.to_thread(
            self._backend.admit, peer, endpoint=endpoint, purpose="bootstrap", now=now
        )
        plan = await asyncio.to_thread(self._backend.bootstrap_plan, access, now=now)
        steps = bootstrap_steps(plan)
        self._spawn(self._run_bootstrap(peer, access.device_id, steps))
        return _respond(message, Code.CHANGED)

    async def _run_bootstrap(
        self, peer: PeerIdentity, device_id: str, steps: Sequence[BootstrapStep]
    ) -> None:
        await asyncio.sleep(0)  # the 2.04 goes first
        address = peer.address
        session = (address, peer.identity)
        try:
            await self._bootstrap_steps(address, device_id, steps, session=session)
        finally:
            self._finishing.discard(session)

    async def _bootstrap_steps(
        self,
        address: Address,
        device_id: str,
        steps: Sequence[BootstrapStep],
        *,
        session: tuple[Address, str],
    ) -> None:
        for step in steps:
            if step.method == "finish":
                # From here on the client may send its Register at once, over this (bootstrap)
                # session; it is left unanswered, and its retransmission over the next session
                # (with the credential just written) is handled as a new request.
                self._finishing.add(session)
            try:
                answer = await self._exchange.request(address, self._bootstrap_message(step))
            except TrustFleetError as exc:
                logger.warning("bootstrap of %s stopped: %s", device_id, exc.one_line())
                return
            if answer.code not in (Code.DELETED, Code.CHANGED, Code.CREATED):
                if step.method == "delete":
                    continue  # nothing to delete: fine
                logger.warning("bootstrap of %s: %s answered %s", device_id, step.path, answer.code)
                return
        # Bootstrap-Finish acknowledged: end the bootstrap session, so that the device's next
        # handshake (to the device-management server, which may be this same address) uses the
        # credential just written; a client that kept the session would otherwise register
        # with its bootstrap credential, which is refused (Wakaama/tinydtls does that).
        self._dtls.close_peers(lambda peer: peer.address == address)
        self._exchange.forget_peer(address)

    def _bootstrap_message(self, step: BootstrapStep) -> Message:
        if step.method == "delete":
            return request(Code.DELETE, path=step.path, message_id=0)
        if step.method == "finish":
            return request(Code.POST, path=step.path, message_id=0)
        values = [content.Value(path=f"{step.path}/{rid}", value=v) for rid, v in step.resources]
        payload = content.encode_values(
            values, content_format=content.LWM2M_TLV, base_path=step.path
        )
        return request(
            Code.PUT,
            path=step.path,
            message_id=0,
            payload=payload,
            content_format=content.LWM2M_TLV,
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
        self._access[access.device_id] = access
        self._move(access.device_id, peer.address, again=True)
        await asyncio.to_thread(
            self._backend.record_registration, registration, previous=previous, now=now
        )
        self._spawn(self._after_registration(access.device_id))
        options = [
            (int(Option.LOCATION_PATH), part.encode()) for part in registration.location.split("/")
        ]
        return _respond(message, Code.CREATED, options=options)

    def _move(self, device_id: str, address: Address, *, again: bool) -> bool:
        """Record the device's address; its observations at an old address (or all of them when
        it registers again: the client forgets them, Core TS 6.2.1) are dropped. True if moved."""
        old = self._address.get(device_id)
        if old is not None and (old != address or again):
            self._exchange.cancel_observations(old)
        self._address[device_id] = address
        return old != address

    def _continue(self, message: Message) -> Message:
        block = message.block1()
        assert block is not None  # noqa: S101  # only called while blocks are coming
        return _respond(message, Code.CONTINUE, options=[(int(Option.BLOCK1), block.encode())])

    async def _admitted_owner(self, peer: PeerIdentity, location: str) -> DeviceAccess:
        registration = self._table.at(location)
        if registration is None:
            raise NotFound("No registration at this location.", code="lwm2m.rd.unknown")
        access = await asyncio.to_thread(
            self._backend.admit, peer, endpoint=registration.endpoint, purpose="dm", now=self._now()
        )
        self._table.owned(location, device_id=access.device_id)
        self._access[access.device_id] = access
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
        moved = self._move(access.device_id, peer.address, again=False)
        await asyncio.to_thread(
            self._backend.record_registration, current, previous=previous, now=now
        )
        if moved or objects is not None:
            self._spawn(self._after_registration(access.device_id))
        return _respond(message, Code.CHANGED)

    async def _deregister(self, peer: PeerIdentity, message: Message, location: str) -> Message:
        access = await self._admitted_owner(peer, location)
        await self._drop(access.device_id, reason="deregistered")
        return _respond(message, Code.DELETED)

    async def _drop(self, device_id: str, *, reason: _DropReason) -> None:
        if self._table.remove(device_id) is None:
            return
        address = self._address.pop(device_id, None)
        if address is not None:
            self._exchange.cancel_observations(address)
        self._access.pop(device_id, None)
        self._rates.pop(device_id, None)
        self._quarantine_noted.discard(device_id)
        self._firmware.dropped(device_id)
        await asyncio.to_thread(
            self._backend.record_deregistration,
            device_id,
            reason=reason,
            now=self._now(),
        )

    async def _serve_firmware(
        self, peer: PeerIdentity, message: Message, model: str, version: str, part: str
    ) -> Message:
        device = next((d for d, a in self._address.items() if a == peer.address), None)
        if device is None:
            raise PermissionDenied("Firmware only for registered devices.", code="lwm2m.fw.denied")
        job = await asyncio.to_thread(self._backend.firmware_package, model, version)
        if job is None:
            raise NotFound("No such firmware package.", code="lwm2m.fw.unknown")
        block = message.block2()
        if part == "manifest":
            piece = block_slice(block, total=len(job.manifest), block_size=self._cfg.block_size)
            data = job.manifest[piece.offset : piece.offset + piece.length]
            etag = etag_for(job.manifest)
        else:
            piece = block_slice(block, total=job.image_size, block_size=self._cfg.block_size)
            data = await asyncio.to_thread(read_block, job.image, piece)
            etag = etag_for(job.image_sha256)
        return _respond(
            message,
            Code.CONTENT,
            payload=data,
            options=piece.options(etag=etag),
            content_format=content.OPAQUE,
        )

    # -- device management (server-initiated) ---------------------------------------------------
    def _device_address(self, device_id: str, path: str) -> Address:
        """The registered device's address; a quarantined device only for object 5.

        Raises:
            NotFound: Not registered (code ``lwm2m.device.unregistered``).
            PermissionDenied: Quarantined and ``path`` is not the firmware object
                (code ``lwm2m.device.quarantined``).
        """
        address = self._address.get(device_id)
        if address is None:
            raise NotFound("The device is not registered.", code="lwm2m.device.unregistered")
        access = self._access.get(device_id)
        if access is not None and access.quarantined and not path.startswith("/5/"):
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
            self._device_address(device_id, path),
            request(Code.GET, path=path, message_id=0),
        )
        return self._values(answer, path)

    def _values(self, answer: Message, path: str) -> tuple[content.Value, ...]:
        if answer.code != Code.CONTENT:
            raise NotFound(
                f"The device answered {answer.code} for {path}.", code="lwm2m.device.read"
            )
        fmt = answer.content_format()
        return content.decode_values(
            answer.payload, content_format=content.TEXT if fmt is None else fmt, base_path=path
        )

    async def write(self, device_id: str, path: str, values: Sequence[content.Value]) -> None:
        """Write (replace) resources of a registered device, in TLV.

        Raises:
            NotFound: Not registered. Unavailable: No answer. InvalidInput: The device refused.
        """
        payload = content.encode_values(values, content_format=content.LWM2M_TLV, base_path=path)
        answer = await self._exchange.request(
            self._device_address(device_id, path),
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
            self._device_address(device_id, path),
            request(Code.POST, path=path, message_id=0, payload=arguments),
        )
        if answer.code != Code.CHANGED:
            raise InvalidInput(
                f"The device answered {answer.code} to execute.", code="lwm2m.device.execute"
            )

    async def observe(self, device_id: str, path: str) -> tuple[content.Value, ...]:
        """Observe a path; its current values, and every notification goes to the store."""
        address = self._device_address(device_id, path)

        def notify(_address: Address, message: Message) -> None:
            self._notified(device_id, path, message)

        answer = await self._exchange.request(
            address,
            request(Code.GET, path=path, message_id=0, options=[(int(Option.OBSERVE), b"")]),
            observe=notify,
        )
        return self._values(answer, path)

    async def _after_registration(self, device_id: str) -> None:
        registration = self._table.get(device_id)
        access = self._access.get(device_id)
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
        self._store(device_id, await self.read(device_id, path))

    async def _observe_and_store(self, device_id: str, path: str) -> None:
        self._store(device_id, await self.observe(device_id, path))

    def _allowed(self, device_id: str) -> bool:
        rate = self._rates.setdefault(
            device_id, _Rate(self._cfg.max_notifications_per_s, self._clock())
        )
        now_s = self._clock()
        limit = self._cfg.max_notifications_per_s
        rate.tokens = min(limit, rate.tokens + (now_s - rate.at_s) * limit)
        rate.at_s = now_s
        if rate.tokens < 1:
            return False
        rate.tokens -= 1
        return True

    def _notified(self, device_id: str, path: str, message: Message) -> None:
        try:
            values = self._values(message, path)
        except TrustFleetError:
            self.stats.notifications_dropped += 1
            return
        if path.startswith("/5/"):
            self._firmware.report(device_id, values)
            return
        access = self._access.get(device_id)
        if access is not None and access.quarantined:
            self._quarantine_drop(device_id)
            return
        if access is None or not self._allowed(device_id):
            self.stats.notifications_dropped += 1
            return
        self._store(device_id, values)

    def _quarantine_drop(self, device_id: str) -> None:
        """A quarantined device's notification is not stored; the first one of each
        registration says so in the security log (the backend bounds refusals too)."""
        self.stats.notifications_dropped += 1
        if device_id in self._quarantine_noted:
            return
        self._quarantine_noted.add(device_id)
        address = self._address.get(device_id)
        if address is not None:
            self._refuse(
                address, "lwm2m.quarantine.notification", device_id,
                "notifications of a quarantined device are not stored",
            )  # fmt: skip

    def _store(self, device_id: str, values: Sequence[content.Value]) -> None:
        readings = [
            Reading(
                path=v.path,
                value=v.value,
                unit=v.unit,
                time=datetime.fromtimestamp(v.time, UTC) if v.time is not None else None,
            )
            for v in values
            if not isinstance(v.value, bytes)
        ]
        if not readings:
            return
        try:
            self.stats.readings_stored += self._backend.store_readings(
                device_id, readings, now=self._now()
            )
        except TrustFleetError as exc:
            logger.warning("lwm2m: readings of %s not stored: %s", device_id, exc.one_line())

    async def _firmware_check(self) -> None:
        await self._firmware.check(list(self._table))

    # -- housekeeping: expiry and revocation ------------------------------------------------------
    def _stamp_trust(self) -> tuple[int, ...]:
        """The trust files' modification times (-1: absent), to notice a new CRL or CA."""
        stamps = []
        for path in self._trust_files:
            try:
                stamps.append(path.stat().st_mtime_ns)
            except OSError:
                stamps.append(-1)
        return tuple(stamps)

    def _reload_trust_if_changed(self) -> None:
        """A new CRL (a revocation) or CA file: new handshakes check against it."""
        stamp = self._stamp_trust()
        if stamp == self._trust_stamp:
            return
        try:
            self._dtls.reload_trust()
        except TrustFleetError as exc:  # half-written file: the next tick retries
            logger.warning("lwm2m: device trust not reloaded: %s", exc.one_line())
            return
        self._trust_stamp = stamp

    async def _housekeeping(self) -> None:
        self._reload_trust_if_changed()
        now = self._now()
        for registration in self._table.expired(now=now, grace_s=self._grace_s):
            await self._drop(registration.device_id, reason="expired")
        changed, self._cursor = await asyncio.to_thread(self._backend.access_changes, self._cursor)
        for device_id in changed:
            await self._recheck(device_id)

    async def _recheck(self, device_id: str) -> None:
        registration = self._table.get(device_id)
        address = self._address.get(device_id)
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
                self._access[device_id] = access
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
